"""The Compute (Nova v2.1, microversions 2.1 to 2.74) and Image (Glance v2) subsets the openstack CLI
and openstacksdk use: servers (create with ``--host`` from 2.74, show, list, update, delete),
security groups and interfaces of a server, console output, flavors, availability zones,
hypervisors, compute services and limits.

The microversion comes from ``OpenStack-API-Version: compute X.Y`` or
``X-OpenStack-Nova-API-Version: X.Y`` (``latest`` for 2.74; none for 2.1); every response says
which one answered. Bodies are checked against Nova's own schemas (``novaschema``) and errors use
Nova's bodies (``itemNotFound``, ``badRequest``, ``forbidden``, ``conflictingRequest``...).

``ROUTES`` is the routing table: the request is matched against it (404 for no path, 405 for a
path without the method) and ``neutrino.api.openapi`` documents it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from neutrino.api import novaschema
from neutrino.api.common import (
    MethodNotAllowed,
    NotAcceptable,
    base_url,
    error_for,
    json_response,
    nova_fault,
    read_json,
)
from neutrino.errors import InvalidInput, NeutrinoError, NotAuthorized, NotFound
from neutrino.services import instances
from neutrino.services.attributes import is_uuid
from neutrino.services.cloud import Cloud
from neutrino.services.core import Context

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 74)
VERSION_HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"


def _vstr(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


NOVA_VERSION = {"id": "v2.1", "status": "CURRENT", "version": _vstr(MAX_VERSION), "min_version": _vstr(MIN_VERSION),
                "updated": "2013-07-23T11:33:21Z",
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}


def nova_error(e: NeutrinoError | Exception) -> Response:
    if isinstance(e, NeutrinoError):
        return error_for("nova", e)
    return error_for("nova", NeutrinoError("unexpected"))


def requested_version(request: Request) -> tuple[int, int]:
    """The microversion asked for (2.1 when none), as microversion-parse reads the headers."""
    raw: str | None = None
    header = request.headers.get(VERSION_HEADER.lower())
    if header is not None:
        for part in header.split(","):
            words = part.strip().split()
            if len(words) == 2 and words[0].lower() == "compute":
                raw = words[1]
    if raw is None:
        raw = request.headers.get(LEGACY_HEADER.lower())
    if raw is None:
        return MIN_VERSION
    raw = raw.strip()
    if raw.lower() == "latest":
        return MAX_VERSION
    m = re.fullmatch(r"([1-9]\d{0,3})\.(0|[1-9]\d{0,3})", raw)
    if not m:
        raise InvalidInput(f"API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum.")
    v = (int(m.group(1)), int(m.group(2)))
    if not MIN_VERSION <= v <= MAX_VERSION:
        raise NotAcceptable(f"Version {raw} is not supported by the API. Minimum is {_vstr(MIN_VERSION)} and "
                            f"maximum is {_vstr(MAX_VERSION)}.")
    return v


def version_headers(v: tuple[int, int]) -> dict[str, str]:
    return {VERSION_HEADER: f"compute {_vstr(v)}", LEGACY_HEADER: _vstr(v),
            "Vary": f"{VERSION_HEADER}, {LEGACY_HEADER}"}


@dataclass(frozen=True)
class Op:
    """One route of the compute API (path below ``/compute/v2.1``)."""

    method: str
    path: str
    handler: str
    summary: str
    status: int = 200
    body: dict[str, Any] | None = None
    query: tuple[str, ...] = ()
    admin: bool = False
    segments: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(p for p in self.path.split("/") if p))

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        out: dict[str, str] = {}
        for seg, part in zip(self.segments, parts, strict=True):
            if seg.startswith("{"):
                out[seg[1:-1]] = part
            elif seg != part:
                return None
        return out


_SERVER_LIST_QUERY = ("name", "status", "host", "flavor", "image", "ip", "all_tenants", "project_id", "tenant_id",
                      "limit", "marker")

ROUTES: tuple[Op, ...] = (
    Op("GET", "/os-aggregates", "aggregates", "Host aggregates (none)", admin=True),
    Op("GET", "/", "version", "This version of the API (v2.1, microversions 2.1 to 2.74)"),
    Op("GET", "/flavors", "flavors", "Flavors", query=("is_public", "minRam", "minDisk", "limit", "marker")),
    Op("GET", "/flavors/detail", "flavors", "Flavors with details",
       query=("is_public", "minRam", "minDisk", "limit", "marker")),
    Op("GET", "/flavors/{flavor_id}", "flavor", "A flavor"),
    Op("GET", "/flavors/{flavor_id}/os-extra_specs", "flavor_extra_specs", "A flavor's extra specs"),
    Op("GET", "/images", "images", "Images (the image proxy)"),
    Op("GET", "/images/detail", "images", "Images with details (the image proxy)"),
    Op("GET", "/images/{image_id}", "image", "An image (the image proxy)"),
    Op("GET", "/os-availability-zone", "zones", "Availability zones"),
    Op("GET", "/os-availability-zone/detail", "zones_detail", "Availability zones with their hosts and services",
       admin=True),
    Op("GET", "/limits", "limits", "Absolute limits"),
    Op("GET", "/os-hypervisors", "hypervisors", "Hypervisors", query=("hypervisor_hostname_pattern",
                                                                       "with_servers", "limit", "marker"),
       admin=True),
    Op("GET", "/os-hypervisors/detail", "hypervisors_detail", "Hypervisors with details",
       query=("hypervisor_hostname_pattern", "with_servers", "limit", "marker"), admin=True),
    Op("GET", "/os-hypervisors/statistics", "hypervisor_statistics", "Hypervisor statistics", admin=True),
    Op("GET", "/os-hypervisors/{hypervisor_id}", "hypervisor", "A hypervisor", query=("with_servers",),
       admin=True),
    Op("GET", "/os-hypervisors/{hypervisor_id}/uptime", "hypervisor_uptime", "A hypervisor's uptime", admin=True),
    Op("GET", "/os-services", "services", "Compute services", query=("host", "binary"), admin=True),
    Op("GET", "/servers", "servers", "Servers", query=_SERVER_LIST_QUERY),
    Op("POST", "/servers", "create_server", "Create a server", status=202,
       body=novaschema.server_create(MAX_VERSION)),
    Op("GET", "/servers/detail", "servers_detail", "Servers with details", query=_SERVER_LIST_QUERY),
    Op("GET", "/servers/{server_id}", "server", "A server"),
    Op("PUT", "/servers/{server_id}", "update_server", "Update a server",
       body=novaschema.server_update(MAX_VERSION)),
    Op("DELETE", "/servers/{server_id}", "delete_server", "Delete a server", status=204),
    Op("POST", "/servers/{server_id}/action", "action",
       "A server action: addSecurityGroup, removeSecurityGroup, os-getConsoleOutput", status=202,
       body={"oneOf": [novaschema.add_security_group, novaschema.remove_security_group,
                       novaschema.console_output]}),
    Op("GET", "/servers/{server_id}/os-security-groups", "server_groups", "A server's security groups"),
    Op("GET", "/servers/{server_id}/ips", "server_ips", "A server's addresses"),
    Op("GET", "/servers/{server_id}/ips/{network_label}", "server_ips_on", "A server's addresses on a network"),
    Op("GET", "/servers/{server_id}/metadata", "server_metadata", "A server's metadata"),
    Op("GET", "/servers/{server_id}/os-interface", "interfaces", "A server's interfaces"),
    Op("POST", "/servers/{server_id}/os-interface", "attach_interface", "Attach an interface (a port or a network)",
       body=novaschema.interface_create),
    Op("GET", "/servers/{server_id}/os-interface/{port_id}", "interface", "One interface of a server"),
    Op("DELETE", "/servers/{server_id}/os-interface/{port_id}", "detach_interface", "Detach an interface",
       status=202),
)


def _flavor(base: str, f: instances.Flavor, v: tuple[int, int]) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": f.id, "name": f.name, "ram": f.ram, "vcpus": f.vcpus, "disk": f.disk, "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False, "os-flavor-access:is_public": True,
        "rxtx_factor": 1.0, "links": [{"rel": "self", "href": f"{base}/compute/v2.1/flavors/{f.id}"},
                                      {"rel": "bookmark", "href": f"{base}/compute/flavors/{f.id}"}]}
    if v >= (2, 55):
        d["description"] = None
    if v >= (2, 61):
        d["extra_specs"] = {}
    return d


def _image(base: str, i: instances.Image) -> dict[str, Any]:
    return {"id": i.id, "name": i.name, "status": "active", "visibility": "public", "container_format":
            i.container_format, "disk_format": i.disk_format, "min_disk": i.min_disk, "min_ram": i.min_ram,
            "size": i.size, "owner": None, "protected": False, "tags": [], "os_hidden": False,
            "checksum": None, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "self": f"/v2/images/{i.id}", "file": f"/v2/images/{i.id}/file", "schema": "/v2/schemas/image"}


def _links(base: str, server: dict[str, Any]) -> dict[str, Any]:
    sid = server["id"]
    server["links"] = [{"rel": "self", "href": f"{base}/compute/v2.1/servers/{sid}"},
                       {"rel": "bookmark", "href": f"{base}/compute/servers/{sid}"}]
    return server


_ADMIN_ONLY = ("OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:hypervisor_hostname", "OS-EXT-SRV-ATTR:instance_name")


def server_at(base: str, s: dict[str, Any], v: tuple[int, int], ctx: Context, *, show: bool = False
              ) -> dict[str, Any]:
    """A server as microversion ``v`` shows it."""
    out = dict(s)
    description = out.pop("description", None)
    fault = out.get("fault")
    if fault is not None and not ctx.is_admin and fault["code"] == 500:  # Nova's _get_fault
        out["fault"] = {k: x for k, x in fault.items() if k != "details"}
    if not ctx.is_admin:
        for k in _ADMIN_ONLY:
            out.pop(k, None)
    elif v >= (2, 3):
        out.update({"OS-EXT-SRV-ATTR:reservation_id": f"r-{s['id'][:8]}", "OS-EXT-SRV-ATTR:launch_index": 0,
                    "OS-EXT-SRV-ATTR:hostname": re.sub(r"[^a-z0-9-]", "-", s["name"].lower())[:63].strip("-")
                    or "server", "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
                    "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda", "OS-EXT-SRV-ATTR:user_data": None})
    if v >= (2, 9):
        out["locked"] = False
    if v >= (2, 16) and ctx.is_admin:
        out["host_status"] = "UP" if s["OS-EXT-SRV-ATTR:host"] else ""  # HostStatus.NONE: no host
    if v >= (2, 19):
        out["description"] = description
    if v >= (2, 26):
        out["tags"] = []
    if v >= (2, 47):
        f = next((f for f in instances.FLAVORS if f.id == s["flavor"]["id"]), None)
        out["flavor"] = {"vcpus": f.vcpus if f else 0, "ram": f.ram if f else 0, "disk": f.disk if f else 0,
                         "ephemeral": 0, "swap": 0, "original_name": f.name if f else s["flavor"]["id"],
                         "extra_specs": {}}
    if v >= (2, 63):
        out["trusted_image_certificates"] = None
    if v >= (2, 71) and show:
        out["server_groups"] = []
    if v >= (2, 73):
        out["locked_reason"] = None
    return _links(base, out)


def _now() -> str:
    """A service's last heartbeat, as Nova prints it: now (every service is up)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _bool_param(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "t", "yes", "y", "on")


class ComputeAPI:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    async def handle(self, request: Request, parts: list[str], ctx: Context) -> Response:
        """``parts`` follow ``/compute``."""
        base = base_url(request)
        version = {**NOVA_VERSION, "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}]}
        if not parts:
            if request.method not in ("GET", "HEAD"):
                return nova_fault(405, "The method specified is not allowed for this resource.")
            return json_response({"versions": [version]})
        if parts[0] != "v2.1":
            return nova_fault(404, "The resource could not be found.")
        rest = parts[1:]
        if rest and rest[0] == ctx.project_id:
            rest = rest[1:]
        try:
            v = requested_version(request)
        except NeutrinoError as e:
            return nova_error(e)
        headers = version_headers(v)
        try:
            resp = await self._route(request, rest, ctx, base, v, version)
        except NeutrinoError as e:
            resp = nova_error(e)
        resp.headers.update(headers)
        return resp

    async def _route(self, request: Request, rest: list[str], ctx: Context, base: str, v: tuple[int, int],
                     version: dict[str, Any]) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        found = [(op, params) for op in ROUTES if (params := op.match(rest)) is not None]
        if not found:
            raise NotFound("The resource could not be found.")
        op, params = next(((op, p) for op, p in found if op.method == method), (None, {}))
        if op is None:
            raise MethodNotAllowed("The method specified is not allowed for this resource.")
        if op.admin and not ctx.is_admin:
            raise NotAuthorized(f"Policy doesn't allow os_compute_api:{op.handler} to be performed.")
        if op.handler == "version":
            return json_response({"version": version})
        handler = getattr(self, "_" + op.handler)
        return await handler(request, ctx, base, v, **params)  # type: ignore[no-any-return]

    # -- catalogue ------------------------------------------------------------------------------

    async def _flavors(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        detail = request.url.path.rstrip("/").endswith("detail")
        out = []
        for f in instances.FLAVORS:
            d = _flavor(base, f, v)
            out.append(d if detail else {"id": d["id"], "name": d["name"], "links": d["links"],
                                         **({"description": None} if v >= (2, 55) else {})})
        return json_response({"flavors": out})

    async def _flavor(self, request: Request, ctx: Context, base: str, v: tuple[int, int], flavor_id: str
                      ) -> Response:
        return json_response({"flavor": _flavor(base, instances.flavor(flavor_id), v)})

    async def _flavor_extra_specs(self, request: Request, ctx: Context, base: str, v: tuple[int, int],
                                  flavor_id: str) -> Response:
        instances.flavor(flavor_id)
        return json_response({"extra_specs": {}})

    async def _images(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        return json_response({"images": [{"id": i.id, "name": i.name, "status": "ACTIVE", "links": []}
                                         for i in instances.IMAGES]})

    async def _image(self, request: Request, ctx: Context, base: str, v: tuple[int, int], image_id: str
                     ) -> Response:
        i = instances.image(image_id)
        return json_response({"image": {"id": i.id, "name": i.name, "status": "ACTIVE", "links": []}})

    async def _zones(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        return json_response({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True},
                                                        "hosts": None}]})

    async def _zones_detail(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        with self.cloud.read(ctx) as tx:
            computes = instances.compute_hosts(tx)
            controllers = instances.controller_hosts(tx)
        up = {"available": True, "active": True, "updated_at": _now()}
        zones: list[dict[str, Any]] = []
        if controllers:
            zones.append({"zoneName": "internal", "zoneState": {"available": True},
                          "hosts": {h.name: {"nova-scheduler": dict(up), "nova-conductor": dict(up)}
                                    for h in controllers}})
        zones.append({"zoneName": "nova", "zoneState": {"available": True},
                      "hosts": {h.name: {"nova-compute": dict(up)} for h in computes} or None})
        return json_response({"availabilityZoneInfo": zones})

    async def _limits(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        with self.cloud.read(ctx) as tx:
            servers = instances.list_servers(tx)
        flavors = [instances.flavor(s["flavor"]["id"]) for s in servers
                   if any(f.id == s["flavor"]["id"] for f in instances.FLAVORS)]
        used_cores, used_ram = sum(f.vcpus for f in flavors), sum(f.ram for f in flavors)
        absolute: dict[str, Any] = {"maxTotalInstances": instances.MAX_INSTANCES, "totalInstancesUsed": len(servers),
                                    "maxTotalCores": 20 * instances.MAX_INSTANCES, "totalCoresUsed": used_cores,
                                    "maxTotalRAMSize": 51200 * instances.MAX_INSTANCES, "totalRAMUsed": used_ram,
                                    "maxServerMeta": 128, "maxImageMeta": 128, "maxPersonality": 5,
                                    "maxPersonalitySize": 10240, "maxTotalKeypairs": 100, "maxServerGroups": 10,
                                    "maxServerGroupMembers": 10, "totalServerGroupsUsed": 0}
        if v >= (2, 36):
            for k in ("maxPersonality", "maxPersonalitySize"):
                absolute.pop(k)
        return json_response({"limits": {"rate": [], "absolute": absolute}})

    # -- hypervisors and services -----------------------------------------------------------------

    async def _aggregates(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        return json_response({"aggregates": []})

    def _hypervisor_view(self, h: Any, index: int, usage: dict[str, int], v: tuple[int, int], detail: bool,
                    servers: list[dict[str, str]] | None) -> dict[str, Any]:
        uuids = v >= (2, 53)
        d: dict[str, Any] = {"id": instances.host_id(h.name, "hypervisor") if uuids else index,
                             "hypervisor_hostname": h.name, "state": "up", "status": "enabled"}
        if detail:
            d.update({
                "hypervisor_type": "QEMU", "hypervisor_version": 6002000,
                "host_ip": str(h.management_ip) if h.management_ip else "127.0.0.1",
                "service": {"id": instances.host_id(h.name, "nova-compute") if uuids else index,
                            "host": h.name, "disabled_reason": None},
                "vcpus": instances.HOST_VCPUS, "memory_mb": instances.HOST_MEMORY_MB,
                "local_gb": instances.HOST_DISK_GB, "vcpus_used": usage["vcpus_used"],
                "memory_mb_used": usage["memory_mb_used"], "local_gb_used": usage["local_gb_used"],
                "free_ram_mb": instances.HOST_MEMORY_MB - usage["memory_mb_used"],
                "free_disk_gb": instances.HOST_DISK_GB - usage["local_gb_used"], "current_workload": 0,
                "running_vms": usage["running_vms"],
                "disk_available_least": instances.HOST_DISK_GB - usage["local_gb_used"],
            })
            cpu = {"arch": "x86_64", "model": "Haswell-noTSX-IBRS", "vendor": "Intel",
                   "topology": {"cells": 1, "sockets": 1, "cores": instances.HOST_VCPUS // 2, "threads": 2},
                   "features": ["vmx", "sse4.2", "avx2"]}
            d["cpu_info"] = cpu if v >= (2, 28) else str(cpu).replace("'", '"')
        if servers:
            d["servers"] = servers
        return d

    def _hypervisor_list(self, request: Request, ctx: Context, v: tuple[int, int], detail: bool) -> Response:
        q = request.query_params
        pattern = q.get("hypervisor_hostname_pattern")
        with_servers = _bool_param(q.get("with_servers"))
        with self.cloud.read(ctx) as tx:
            hosts = list(enumerate(instances.compute_hosts(tx), start=1))
            usage = instances.hypervisor_usage(tx)
            on = {h.name: instances.servers_on(tx, h.name) for _, h in hosts} if with_servers else {}
        if pattern is not None:
            hosts = [(i, h) for i, h in hosts if pattern in h.name]
            if not hosts:
                raise NotFound(f"No hypervisor matching '{pattern}' could be found.")
        out = [self._hypervisor_view(h, i, usage[h.name], v, detail, on.get(h.name)) for i, h in hosts]
        return json_response({"hypervisors": out})

    async def _hypervisors(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        return self._hypervisor_list(request, ctx, v, detail=False)

    async def _hypervisors_detail(self, request: Request, ctx: Context, base: str, v: tuple[int, int]
                                  ) -> Response:
        return self._hypervisor_list(request, ctx, v, detail=True)

    def _find_hypervisor(self, ctx: Context, v: tuple[int, int], hypervisor_id: str) -> tuple[int, Any]:
        with self.cloud.read(ctx) as tx:
            hosts = list(enumerate(instances.compute_hosts(tx), start=1))
        for i, h in hosts:
            if hypervisor_id == (instances.host_id(h.name, "hypervisor") if v >= (2, 53) else str(i)):
                return i, h
        if v >= (2, 53):
            raise NotFound(f"Compute host {hypervisor_id} could not be found.") if \
                is_uuid(hypervisor_id) else InvalidInput(f"Invalid uuid {hypervisor_id}")
        raise NotFound(f"Compute host {hypervisor_id} could not be found.")

    async def _hypervisor(self, request: Request, ctx: Context, base: str, v: tuple[int, int],
                          hypervisor_id: str) -> Response:
        i, h = self._find_hypervisor(ctx, v, hypervisor_id)
        with self.cloud.read(ctx) as tx:
            usage = instances.hypervisor_usage(tx)[h.name]
            on = instances.servers_on(tx, h.name) if _bool_param(request.query_params.get("with_servers")) else None
        return json_response({"hypervisor": self._hypervisor_view(h, i, usage, v, True, on)})

    async def _hypervisor_uptime(self, request: Request, ctx: Context, base: str, v: tuple[int, int],
                                 hypervisor_id: str) -> Response:
        i, h = self._find_hypervisor(ctx, v, hypervisor_id)
        d = self._hypervisor_view(h, i, {}, v, False, None)
        d["uptime"] = " 08:32:11 up 93 days, 18:25, 12 users,  load average: 0.20, 0.12, 0.14"
        return json_response({"hypervisor": d})

    async def _hypervisor_statistics(self, request: Request, ctx: Context, base: str, v: tuple[int, int]
                                     ) -> Response:
        with self.cloud.read(ctx) as tx:
            usage = instances.hypervisor_usage(tx)
        n = len(usage)
        tot = {k: sum(u[k] for u in usage.values()) for k in ("running_vms", "vcpus_used", "memory_mb_used",
                                                               "local_gb_used")}
        return json_response({"hypervisor_statistics": {
            "count": n, "vcpus": n * instances.HOST_VCPUS, "memory_mb": n * instances.HOST_MEMORY_MB,
            "local_gb": n * instances.HOST_DISK_GB, **tot,
            "free_ram_mb": n * instances.HOST_MEMORY_MB - tot["memory_mb_used"],
            "free_disk_gb": n * instances.HOST_DISK_GB - tot["local_gb_used"], "current_workload": 0,
            "disk_available_least": n * instances.HOST_DISK_GB - tot["local_gb_used"]}})

    async def _services(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        host = request.query_params.get("host")
        binary = request.query_params.get("binary")
        with self.cloud.read(ctx) as tx:
            rows = [(h.name, b, "internal") for h in instances.controller_hosts(tx)
                    for b in ("nova-scheduler", "nova-conductor")]
            rows += [(h.name, "nova-compute", "nova") for h in instances.compute_hosts(tx)]
        out = []
        for n, (name, b, zone) in enumerate(rows, start=1):
            if (host is not None and name != host) or (binary is not None and b != binary):
                continue
            d: dict[str, Any] = {"id": instances.host_id(name, b) if v >= (2, 53) else n, "binary": b, "host": name,
                                 "zone": zone, "status": "enabled", "state": "up", "updated_at": _now(),
                                 "disabled_reason": None}
            if v >= (2, 11):
                d["forced_down"] = False
            out.append(d)
        return json_response({"services": out})

    # -- servers --------------------------------------------------------------------------------

    def _list_filters(self, request: Request, ctx: Context) -> dict[str, Any]:
        q = request.query_params
        f: dict[str, Any] = {k: q.get(k) for k in ("name", "status", "host", "flavor", "image", "ip")}
        if f["name"] is not None:
            try:
                re.compile(f["name"])
            except re.error:
                raise InvalidInput(f"Invalid input for query parameters name. Value: {[f['name']]}. "
                                   f"'{f['name']}' is not a 'regex'") from None
        if f["host"] is not None and not ctx.is_admin:
            f["host"] = None
        all_tenants = q.get("all_tenants")
        f["all_tenants"] = all_tenants is not None and (all_tenants == "" or _bool_param(all_tenants))
        f["project_id"] = q.get("project_id") or q.get("tenant_id")
        limit = q.get("limit")
        if limit is not None:
            if not re.fullmatch(r"[0-9]{1,10}", limit):
                raise InvalidInput(f"Invalid input for query parameters limit. Value: {[limit]}. '{limit}' does not "
                                   "match '^[0-9]*$'")
            f["limit"] = int(limit)
        f["marker"] = q.get("marker")
        return f

    def _page(self, servers: list[dict[str, Any]], f: dict[str, Any]) -> list[dict[str, Any]]:
        marker = f.get("marker")
        if marker is not None:
            idx = next((i for i, s in enumerate(servers) if s["id"] == marker), None)
            if idx is None:
                raise InvalidInput(f"marker [{marker}] not found")
            servers = servers[idx + 1:]
        if f.get("limit") is not None:
            servers = servers[:min(f["limit"], 1000)]
        return servers

    async def _servers(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        f = self._list_filters(request, ctx)
        with self.cloud.read(ctx) as tx:
            servers = self._page(instances.list_servers(tx, f), f)
        return json_response({"servers": [_links(base, {"id": s["id"], "name": s["name"]}) for s in servers]})

    async def _servers_detail(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        f = self._list_filters(request, ctx)
        with self.cloud.read(ctx) as tx:
            servers = self._page(instances.list_servers(tx, f), f)
        return json_response({"servers": [server_at(base, s, v, ctx) for s in servers]})

    async def _server(self, request: Request, ctx: Context, base: str, v: tuple[int, int], server_id: str
                      ) -> Response:
        with self.cloud.read(ctx) as tx:
            s = instances.get_server(tx, server_id)
        return json_response({"server": server_at(base, s, v, ctx, show=True)})

    async def _create_server(self, request: Request, ctx: Context, base: str, v: tuple[int, int]) -> Response:
        body = await read_json(request)
        server = body.get("server") if isinstance(body, dict) else None
        if v < (2, 37) and isinstance(server, dict) and server.get("networks") in ("auto", "none"):
            # before 2.37 Nova takes a list only; neutrino's scenarios say "none" at any version
            novaschema.validate(novaschema.server_create(v), {**body, "server": {
                k: x for k, x in server.items() if k != "networks"}})
        else:
            novaschema.validate(novaschema.server_create(v), body)
        if v < (2, 19):
            body["server"].pop("description", None)
        with self.cloud.write(ctx) as tx:
            created = instances.create_server(tx, body)
        if _bool_param(str(body["server"].get("return_reservation_id", ""))):
            return json_response({"reservation_id": f"r-{created['id'][:8]}"}, 202)
        server = _links(base, created)
        return json_response({"server": server}, 202, {"Location": server["links"][0]["href"]})

    async def _update_server(self, request: Request, ctx: Context, base: str, v: tuple[int, int], server_id: str
                             ) -> Response:
        body = await read_json(request)
        novaschema.validate(novaschema.server_update(v), body)
        with self.cloud.write(ctx) as tx:
            s = instances.update_server(tx, server_id, body["server"])
        return json_response({"server": server_at(base, s, v, ctx, show=True)})

    async def _delete_server(self, request: Request, ctx: Context, base: str, v: tuple[int, int], server_id: str
                             ) -> Response:
        with self.cloud.write(ctx) as tx:
            instances.delete_server(tx, server_id)
        return json_response(None, 204)

    async def _action(self, request: Request, ctx: Context, base: str, v: tuple[int, int], server_id: str
                      ) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict) or len(body) != 1:
            raise InvalidInput("Malformed request body")
        action = next(iter(body))
        schema = novaschema.ACTIONS.get(action)
        if schema is None:
            raise InvalidInput(f"There is no such action: {action}")
        novaschema.validate(schema, body)
        if action in ("addSecurityGroup", "removeSecurityGroup"):
            name = body[action]["name"]
            if not name.strip():
                raise InvalidInput("Security group name cannot be empty")
            with self.cloud.write(ctx) as tx:
                if action == "addSecurityGroup":
                    instances.add_security_group(tx, server_id, name)
                else:
                    instances.remove_security_group(tx, server_id, name)
            return json_response(None, 202)
        length = body[action].get("length")
        with self.cloud.read(ctx) as tx:
            out = instances.console_output(tx, server_id, None if length is None else int(length))
        return json_response({"output": out})

    async def _server_groups(self, request: Request, ctx: Context, base: str, v: tuple[int, int], server_id: str
                             ) -> Response:
        with self.cloud.read(ctx) as tx:
            groups = [{"id": g.id, "name": g.name, "description": g.description, "tenant_id": g.project_id,
                       "rules": []} for g in instances.server_security_groups(tx, server_id)]
        return json_response({"security_groups": groups})

    async def _server_ips(self, request: Request, ctx: Context, base: str, v: tuple[int, int], server_id: str
                          ) -> Response:
        with self.cloud.read(ctx) as tx:
            s = instances.get_server(tx, server_id)
        return json_response({"addresses": {k: [{"version": a["version"], "addr": a["addr"]} for a in addrs]
                                            for k, addrs in s["addresses"].items()}})

    async def _server_ips_on(self, request: Request, ctx: Context, base: str, v: tuple[int, int], server_id: str,
                             network_label: str) -> Response:
        with self.cloud.read(ctx) as tx:
            s = instances.get_server(tx, server_id)
        if network_label not in s["addresses"]:
            raise NotFound("Instance is not a member of specified network")
        return json_response({network_label: [{"version": a["version"], "addr": a["addr"]}
                                              for a in s["addresses"][network_label]]})

    async def _server_metadata(self, request: Request, ctx: Context, base: str, v: tuple[int, int],
                               server_id: str) -> Response:
        with self.cloud.read(ctx) as tx:
            instances.get_server_row(tx, server_id)
        return json_response({"metadata": {}})

    async def _interfaces(self, request: Request, ctx: Context, base: str, v: tuple[int, int], server_id: str
                          ) -> Response:
        with self.cloud.read(ctx) as tx:
            return json_response({"interfaceAttachments": instances.list_interfaces(tx, server_id)})

    async def _interface(self, request: Request, ctx: Context, base: str, v: tuple[int, int], server_id: str,
                         port_id: str) -> Response:
        with self.cloud.read(ctx) as tx:
            return json_response({"interfaceAttachment": instances.get_interface(tx, server_id, port_id)})

    async def _attach_interface(self, request: Request, ctx: Context, base: str, v: tuple[int, int],
                                server_id: str) -> Response:
        body = await read_json(request, required=False) or {}
        novaschema.validate(novaschema.interface_create, body)
        if "tag" in body.get("interfaceAttachment", {}) and v < (2, 49):
            raise InvalidInput("Invalid input for field/attribute interfaceAttachment. Additional properties are "
                               "not allowed ('tag' was unexpected)")
        att = body.get("interfaceAttachment", {})
        ips = att.get("fixed_ips") or []
        with self.cloud.write(ctx) as tx:
            out = instances.attach_interface(tx, server_id, att.get("net_id"), att.get("port_id"),
                                             ips[0]["ip_address"] if ips else None)
        return json_response({"interfaceAttachment": out})

    async def _detach_interface(self, request: Request, ctx: Context, base: str, v: tuple[int, int],
                                server_id: str, port_id: str) -> Response:
        with self.cloud.write(ctx) as tx:
            instances.detach_interface(tx, server_id, port_id)
        return json_response(None, 202)


class VolumeAPI:
    """Only Cinder's version discovery, for clients without a catalog (``--auth noauth``), which look
    for every service at its endpoint override: there are no volumes (404 for anything else)."""

    async def handle(self, request: Request, parts: list[str]) -> Response:
        """``parts`` follow ``/volume``."""
        base = base_url(request)
        v3 = {"id": "v3.0", "status": "CURRENT", "version": "3.0", "min_version": "3.0",
              "updated": "2023-07-17T00:00:00Z", "links": [{"rel": "self", "href": f"{base}/volume/v3/"}],
              "media-types": [{"base": "application/json",
                               "type": "application/vnd.openstack.volume+json;version=3"}]}
        if request.method not in ("GET", "HEAD"):
            return nova_fault(405, "The method specified is not allowed for this resource.")
        if not parts:
            return json_response({"versions": [v3]}, 300)
        if parts == ["v3"]:
            return json_response({"versions": [v3]})
        return nova_fault(404, "The resource could not be found.")


class ImageAPI:
    async def handle(self, request: Request, parts: list[str]) -> Response:
        """``parts`` follow ``/image``."""
        base = base_url(request)
        if not parts:
            return json_response({"versions": [{"id": "v2.16", "status": "CURRENT",
                                                 "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}]})
        if parts[0] != "v2" or len(parts) < 2 or parts[1] != "images":
            return json_response({"error": "not found"}, 404) if parts[:1] != ["v2"] or len(parts) > 1 else \
                json_response({"versions": []})
        if len(parts) == 2:
            images = list(instances.IMAGES)
            name = request.query_params.get("name")
            if name is not None:
                images = [i for i in images if i.name == name]
            ident = request.query_params.get("id")
            if ident is not None:
                wanted = ident.removeprefix("in:").split(",")
                images = [i for i in images if i.id in wanted]
            return json_response({"images": [_image(base, i) for i in images], "first": "/v2/images",
                                  "schema": "/v2/schemas/images"})
        try:
            return json_response(_image(base, instances.image(parts[2])))
        except NotFound:
            return Response(f"No image found with ID {parts[2]}", status_code=404, media_type="text/plain")
