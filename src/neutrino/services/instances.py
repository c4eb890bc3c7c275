"""Compute: flavors, the built-in images, servers, and scheduling onto compute hosts.

A server is placed on the compute host with the fewest servers (ties by host order in the
deployment; ``availability_zone: nova:<host>`` or, from microversion 2.74, ``host`` forces a host,
for admins only). Its ports are created or adopted the way Nova does it: device_id = server id,
device_owner = compute:<az>, binding:host_id = host. Interfaces attached later follow the same
rules; a port Nova created is deleted when it is detached (or the server deleted), a port the
caller brought is only unbound. Security groups are added to and removed from every port of the
server, as Nova's ``addSecurityGroup``/``removeSecurityGroup`` do through Neutron.

A port that fails to bind on the host (``binding:vif_type`` ``binding_failed``) fails the build there,
as Nova's compute raises ``PortBindingFailed`` and reschedules: the server's ports are released and
the next of the scheduler's hosts is tried (the pick and its alternates, ``MAX_ATTEMPTS`` in all; a
host forced with ``nova:<host>`` is tried alone). When none binds, the server is ERROR, without a
host, with the instance fault Nova records (:func:`_build_fault`). The Nova read is Train (20.0.0),
the release whose microversions (up to 2.79) include the 2.1 to 2.74 the compute API serves.

Request bodies reach this module already checked against Nova's JSON schemas
(``neutrino.api.novaschemas``); what is checked here is what needs the database.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from neutrino.db import models
from neutrino.errors import Conflict, InvalidInput, NeutrinoError, NotAuthorized, NotFound
from neutrino.scenarios.model import Host
from neutrino.services import rbac
from neutrino.services.attributes import is_uuid
from neutrino.services.core import Tx, bump, stamp_new, timestamp
from neutrino.services.networks import get_network_row
from neutrino.services.ports import (
    bind,
    delete_port,
    ensure_dhcp_port,
    get_port_row,
    make_port,
    set_security_groups,
)
from neutrino.services.securitygroups import ensure_default_group
from neutrino.services.snapshot import BINDING_FAILED

MAX_INSTANCES = 1000  # per project, as GET /limits says
MAX_ATTEMPTS = 3  # nova.conf [scheduler] max_attempts: the hosts one build may try
_NOVA_PROFILE_KEYS = ("pci_vendor_info", "pci_slot", "allocation")  # what _unbind_ports takes out of a profile


@dataclass(frozen=True, slots=True)
class Flavor:
    id: str
    name: str
    ram: int
    vcpus: int
    disk: int


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    name: str
    size: int
    disk_format: str = "qcow2"
    container_format: str = "bare"
    min_disk: int = 0
    min_ram: int = 0


FLAVORS = (Flavor("1", "m1.tiny", 512, 1, 1), Flavor("2", "m1.small", 2048, 1, 20),
           Flavor("3", "m1.medium", 4096, 2, 40), Flavor("4", "m1.large", 8192, 4, 80),
           Flavor("5", "m1.xlarge", 16384, 8, 160), Flavor("42", "m1.nano", 128, 1, 1))
IMAGES = (Image(str(uuid.uuid5(uuid.NAMESPACE_DNS, "image.cirros.neutrino")), "cirros", 21430272),)

# What each compute host offers (the hypervisors' view).
HOST_VCPUS = 16
HOST_MEMORY_MB = 32768
HOST_DISK_GB = 400


def flavor(ref: str) -> Flavor:
    f = next((f for f in FLAVORS if f.id == str(ref) or f.name == str(ref)), None)
    if f is None:
        raise NotFound(f"Flavor {ref} could not be found.")
    return f


def image(ref: str) -> Image:
    i = next((i for i in IMAGES if i.id == ref), None)
    if i is None:
        raise NotFound(f"Image {ref} could not be found.")
    return i


def _forbidden(rule: str) -> NotAuthorized:
    return NotAuthorized(f"Policy doesn't allow {rule} to be performed.")


def _schedule(tx: Tx, az: str | None, requested_host: str | None, count: int = 1) -> tuple[list[list[str]], bool]:
    """For each of the ``count`` servers of a request, the hosts its build may try, best first, and
    whether a failed build may go to the next one. The scheduler picks every server's host first, each
    pick claiming its place (the host with the fewest servers, ties in the deployment's order), then
    gives every server the same alternates: the hosts least loaded after those claims that no server
    of the request was given (Nova's ``_get_alternate_hosts``), up to ``MAX_ATTEMPTS`` hosts in all.
    No retry for a host forced with ``nova:<host>`` (Nova's ``populate_retry`` gives no retry to a
    single forced host); a host asked for with ``host`` (2.74, a requested destination) has no
    alternate, but the build is retried (and finds none)."""
    computes = tx.deployment.hosts_with("compute")
    if not computes:
        raise Conflict("No valid host was found. There are not enough hosts available.")
    forced = None
    if az and ":" in az:
        zone, _, rest = az.partition(":")
        forced = rest.split(":", 1)[0] or None
        if zone and zone != "nova":
            raise InvalidInput("The requested availability zone is not available")
        if forced is not None:
            if not tx.ctx.is_admin:
                raise _forbidden("os_compute_api:servers:create:forced_host")
            if requested_host is not None:
                raise InvalidInput("One mechanism with host and/or hypervisor_hostname and another mechanism "
                                   "with zone:host:node are mutually exclusive.")
    elif az and az != "nova":
        raise InvalidInput("The requested availability zone is not available")
    host = forced or requested_host
    if host is not None:
        if not any(h.name == host for h in computes):
            if forced is not None:
                raise InvalidInput(f"No valid host was found. Host {host} is not a compute host of the "
                                   "deployment.")
            raise InvalidInput(f"Compute host {host} could not be found.")
        return [[host]] * count, forced is None
    load = dict(tx.session.execute(select(models.Server.host, func.count()).group_by(models.Server.host)).all())
    names = [h.name for h in computes]
    picked: list[str] = []
    for _ in range(count):
        pick = min(names, key=lambda n: load.get(n, 0))
        picked.append(pick)
        load[pick] = load.get(pick, 0) + 1
    alternates = [n for n in sorted(names, key=lambda n: load.get(n, 0)) if n not in picked][:MAX_ATTEMPTS - 1]
    return [[pick, *alternates] for pick in picked], True


def _find_group(tx: Tx, name: str) -> models.SecurityGroup | None:
    """A security group the caller's project may use, by id or name (as Nova looks it up in Neutron):
    its own, or one shared with it by an RBAC policy."""
    shared = rbac.groups_shared_with_caller(tx)
    q = select(models.SecurityGroup).where((models.SecurityGroup.project_id == tx.ctx.project_id)
                                           | models.SecurityGroup.id.in_(shared))
    g = tx.session.get(models.SecurityGroup, name) if is_uuid(name) else None
    if g is not None and (tx.ctx.is_admin or g.project_id == tx.ctx.project_id or g.id in shared):
        return g
    found = tx.session.scalars(q.where(models.SecurityGroup.name == name)).all()
    if len(found) > 1:
        raise Conflict(f"Multiple security_group matches found for name '{name}', use an ID to be more "
                       "specific.")
    return found[0] if found else None


def _resolve_groups(tx: Tx, refs: list[Any]) -> list[str]:
    out: list[str] = []
    for ref in refs:
        name = ref.get("name") if isinstance(ref, dict) else ref
        if not isinstance(name, str):
            raise InvalidInput("Invalid input for field/attribute security_groups.")
        if not name:
            continue
        g = _find_group(tx, name)
        if g is None:
            raise InvalidInput(f"Security group {name} not found for project {tx.ctx.project_id}.")
        if g.id not in out:
            out.append(g.id)
    return out


def _auto_networks(tx: Tx) -> list[dict[str, Any]]:
    """The project's networks and those shared with it (Nova asks Neutron for ``shared=True``, which
    a network shared with the project by an RBAC policy is, to that project)."""
    nets = tx.session.scalars(select(models.Network).where(models.Network.external.is_(False))).all()
    mine = [n for n in nets if n.project_id == tx.ctx.project_id or rbac.network_shared_with_caller(tx, n)]
    return [{"uuid": n.id} for n in sorted(mine, key=lambda n: n.created_seq)]


def _requested_networks(tx: Tx, requested: Any) -> list[dict[str, Any]]:
    """The networks of a create request as a list of ``{uuid|port, fixed_ip}`` items (before 2.37 an
    empty or missing list means every network of the project, as does ``auto``)."""
    if requested in (None, "auto") or requested == []:
        return _auto_networks(tx)
    if requested == "none":
        return []
    if not isinstance(requested, list):
        raise InvalidInput("Bad networks format")
    ports: list[str] = []
    for item in requested:
        if not isinstance(item, dict):
            raise InvalidInput("Bad networks format")
        port = item.get("port")
        if port:
            if port in ports:
                raise InvalidInput(f"Port ID '{port}' was specified twice: you cannot attach a port multiple "
                                   "times.")
            if item.get("fixed_ip") is not None:
                raise InvalidInput(f"Specified Fixed IP '{item['fixed_ip']}' cannot be used with port "
                                   f"'{port}': the two cannot be specified together.")
            ports.append(port)
            continue
        if "uuid" not in item:
            raise InvalidInput("Bad network format: missing 'uuid'")
        if not is_uuid(item["uuid"]):
            raise InvalidInput(f"Bad networks format: network uuid is not in proper format ({item['uuid']})")
    return list(requested)


def _check_addressable(tx: Tx, requested: list[dict[str, Any]]) -> None:
    """Nova's ``validate_networks``, before anything is scheduled: an instance needs an address on each
    network it asks for (a network without a subnet, a port without a fixed IP: 400). Unknown networks
    and ports are answered where they are plugged, as before."""
    for item in requested:
        if item.get("port"):
            port = tx.session.get(models.Port, str(item["port"]))
            if port is not None and not port.fixed_ips:
                raise InvalidInput(f"Port {port.id} requires a FixedIP in order to be used.")
        elif item.get("uuid"):
            network = tx.session.get(models.Network, str(item["uuid"]))
            if network is not None and not network.subnets:
                raise InvalidInput(f"Network {network.id} requires a subnet in order to boot instances on.")


def _port_error(e: NeutrinoError, net_id: str, ip: str | None, server_id: str) -> NeutrinoError:
    """Neutron's refusal of a port as Nova reports it."""
    kind = e.neutron_type or ""
    if kind == "IpAddressAlreadyAllocated" and ip:
        return InvalidInput(f"Fixed IP address {ip} is already in use on instance {server_id}.")
    if kind == "IpAddressGenerationFailure":
        return InvalidInput(f"No fixed IP addresses available for network: {net_id}")
    if isinstance(e, (Conflict, NotFound)):
        return InvalidInput(str(e))
    return e


def _plug(tx: Tx, server: models.Server, item: dict[str, Any], groups: list[str], created: list[str]) -> str:
    """Create or adopt one port for ``server`` (one item of ``networks`` or of an interface attach);
    returns its id."""
    owner = f"compute:{server.availability_zone}"
    if item.get("port"):
        try:
            port = get_port_row(tx, str(item["port"]))
        except NotFound:
            raise NotFound(f"Port {item['port']} could not be found.") from None
        if port.device_id:
            raise Conflict(f"Port {port.id} is still in use.")
        port.device_id, port.device_owner, port.binding_host_id = server.id, owner, server.host
        bind(tx, port, get_network_row(tx, port.network_id))
        bump(port)
        tx.session.flush()
        network = get_network_row(tx, port.network_id)
        ensure_dhcp_port(tx, network)
        return port.id
    net_id = str(item["uuid"])
    try:
        network = get_network_row(tx, net_id)
    except NotFound:
        raise NotFound(f"Network {net_id} could not be found.") from None
    if network.external and not tx.ctx.is_admin:
        raise NotAuthorized(f"It is not allowed to create an interface on external network {net_id}")
    attrs: dict[str, Any] = {"device_id": server.id, "device_owner": owner, "binding:host_id": server.host}
    ip = item.get("fixed_ip")
    if ip:
        attrs["fixed_ips"] = [{"ip_address": str(ipaddress.ip_address(ip))}]
    if groups and network.port_security_enabled:
        attrs["security_groups"] = groups
    try:
        port = make_port(tx, network, tx.ctx.project_id, attrs)
    except (Conflict, NotFound, InvalidInput) as e:
        raise _port_error(e, net_id, ip, server.id) from None
    created.append(port.id)
    ensure_dhcp_port(tx, network)
    return port.id


def _build(tx: Tx, server: models.Server, requested: list[dict[str, Any]], groups: list[str]) -> str | None:
    """Plug the server's ports on its host (every item, so that a refused one answers the request as
    before); the first port that failed to bind there (Nova's ``PortBindingFailed``), or None."""
    created: list[str] = []
    plugged = []
    for item in requested:
        try:
            plugged.append(_plug(tx, server, item, groups, created))
        except NotFound as e:  # Nova's create answers an unknown network or port with 400
            raise InvalidInput(str(e)) from None
    server.created_port_ids = created
    for pid in plugged:
        port = tx.session.get(models.Port, pid)
        if port is not None and port.binding_vif_type == BINDING_FAILED:  # as ports.bind leaves it
            return pid
    return None


# The tracebacks Nova keeps as a fault's details (code 500; shown to admins): the last exception's
# frames in Train's source, as Python 3.6 prints a call written over several lines (at its last
# line). For the compute's RescheduledException the chained PortBindingFailed (raised deep in the
# driver's spawn) is left out.
_TRACEBACK = "Traceback (most recent call last):\n"
_FRAME = '  File "/usr/lib/python3/dist-packages/nova/{}.py", line {}, in {}\n    {}\n'


def _build_fault(server_id: str, port_id: str, tried: int, retry: bool) -> dict[str, Any]:
    """The instance fault of a build that no host could bind ``port_id`` for (its last try).

    Without retry (a forced host) the compute records the ``RescheduledException`` it raised with its
    reason as the message (``_do_build_and_run_instance``). Otherwise the conductor's reschedule fails
    with ``MaxRetriesExceeded`` (``build_instances``): "Exhausted all hosts" when the alternates ran
    out first, else "Exceeded max scheduling attempts" (``populate_retry``) with the last reason.
    Both are code 500, so their details (the traceback) are for admins only."""
    reason = f"Binding failed for port {port_id}, please check neutron logs for more information."
    if not retry:
        message = reason
        frames = (_FRAME.format("compute/manager", 2046, "_do_build_and_run_instance",
                                "filter_properties, request_spec)")
                  + _FRAME.format("compute/manager", 2420, "_build_and_run_instance",
                                  "instance_uuid=instance.uuid, reason=six.text_type(e))"))
        last = f"nova.exception.RescheduledException: Build of instance {server_id} was re-scheduled: {reason}"
    else:
        if tried < MAX_ATTEMPTS:
            message = ("Exceeded maximum number of retries. Exhausted all hosts available for retrying build "
                       f"failures for instance {server_id}.")
            frames = _FRAME.format("conductor/manager", 651, "build_instances",
                                   "raise exception.MaxRetriesExceeded(reason=msg)")
        else:
            message = (f"Exceeded maximum number of retries. Exceeded max scheduling attempts {MAX_ATTEMPTS} "
                       f"for instance {server_id}. Last exception: {reason}")
            frames = (_FRAME.format("conductor/manager", 637, "build_instances",
                                    "filter_properties, instances[0].uuid)")
                      + _FRAME.format("scheduler/utils", 895, "populate_retry",
                                      "raise exception.MaxRetriesExceeded(reason=msg)"))
        last = f"nova.exception.MaxRetriesExceeded: {message}"
    return {"code": 500, "message": message, "details": f"{_TRACEBACK}{frames}{last}\n", "created": timestamp()}


def create_server(tx: Tx, body: dict[str, Any]) -> dict[str, Any]:
    """Create the server(s) of a create request already checked against Nova's schema. Returns the
    first server's create view."""
    s = body["server"]
    name = s["name"]
    img_ref = s.get("imageRef", "")
    if not img_ref:
        raise InvalidInput("Can not find requested image")
    try:
        img = image(str(img_ref))
    except NotFound:
        raise InvalidInput("Can not find requested image") from None
    try:
        flv = flavor(str(s["flavorRef"]))
    except NotFound as e:
        raise InvalidInput(str(e)) from None
    requested_host = s.get("host") or s.get("hypervisor_hostname")
    if requested_host is not None:
        if not tx.ctx.is_admin:
            raise _forbidden("compute:servers:create:requested_destination")
        if s.get("host") and s.get("hypervisor_hostname") and s["host"] != s["hypervisor_hostname"]:
            raise InvalidInput(f"Compute host {s['hypervisor_hostname']} could not be found.")
    min_count = int(s.get("min_count", 1))
    max_count = int(s.get("max_count", min_count))
    if min_count > max_count:
        raise InvalidInput("min_count must be <= max_count")
    used = int(tx.session.scalar(select(func.count()).select_from(models.Server).where(
        models.Server.project_id == tx.ctx.project_id)) or 0)
    if used + min_count > MAX_INSTANCES:
        raise NotAuthorized(f"Quota exceeded for instances: Requested {min_count}, but already used {used} of "
                            f"{MAX_INSTANCES} instances")
    count = min(max_count, MAX_INSTANCES - used)
    az = s.get("availability_zone")
    groups = _resolve_groups(tx, s.get("security_groups") or [])
    ensure_default_group(tx, tx.ctx.project_id)
    requested = _requested_networks(tx, s.get("networks"))
    _check_addressable(tx, requested)
    if count > 1 and any(item.get("port") or item.get("fixed_ip") for item in requested):
        raise InvalidInput("Unable to launch multiple instances with a single configured port ID or fixed IP. "
                           "Please launch your instance one by one with different ports or fixed IPs.")
    first: dict[str, Any] | None = None
    schedule, retry = _schedule(tx, az if isinstance(az, str) else None, requested_host, count)
    for n, hosts in enumerate(schedule):
        server = models.Server(name=name if count == 1 else f"{name}-{n + 1}", user_id=tx.ctx.user_id,
                               flavor_id=flv.id, image_id=img.id, host=hosts[0], status="ACTIVE",
                               availability_zone="nova", created_port_ids=[], security_group_names=[],
                               key_name=s.get("key_name"), description=s.get("description") or "")
        stamp_new(tx, server, tx.ctx.project_id, revision=0)
        for host in hosts:
            server.host = host
            unbound = _build(tx, server, requested, groups)
            if unbound is None:
                break
            _release_all(tx, server)  # the failed build's deallocate_for_instance, before the next host
        if unbound is not None:  # as Nova leaves a build no host took: no host (nor zone), ERROR
            server.host, server.availability_zone, server.status = "", "", "ERROR"
            server.fault = _build_fault(server.id, unbound, len(hosts), retry)
        server.security_group_names = [g.name for g in (tx.session.get(models.SecurityGroup, i) for i in groups)
                                       if g is not None] or ["default"]
        tx.session.add(server)
        tx.session.flush()
        if first is None:
            first = {"id": server.id, "OS-DCF:diskConfig": "MANUAL", "adminPass": s.get("adminPass") or
                     uuid.uuid4().hex[:12], "security_groups": [{"name": n} for n in server.security_group_names]}
    assert first is not None
    return first


def update_server(tx: Tx, server_id: str, attrs: dict[str, Any]) -> dict[str, Any]:
    s = get_server_row(tx, server_id)
    if "name" in attrs:
        s.name = attrs["name"]
    if "description" in attrs:
        s.description = attrs["description"] or ""
    s.revision_number = (s.revision_number or 0) + 1
    s.updated_at = timestamp()
    tx.session.flush()
    return get_server(tx, server_id)


def get_server_row(tx: Tx, server_id: str) -> models.Server:
    s = tx.session.get(models.Server, server_id)
    if s is None or not (tx.ctx.is_admin or s.project_id == tx.ctx.project_id):
        raise NotFound(f"Instance {server_id} could not be found.")
    return s


def _ports_of(tx: Tx, server_ids: list[str]) -> list[models.Port]:
    if not server_ids:
        return []
    return list(tx.session.scalars(select(models.Port).options(selectinload(models.Port.fixed_ips),
                                                              selectinload(models.Port.sg_bindings))
                                   .where(models.Port.device_id.in_(server_ids))
                                   .order_by(models.Port.created_seq)).all())


def server_view(tx: Tx, servers: list[models.Server]) -> list[dict[str, Any]]:
    """Servers with their ports' addresses (fixed and floating), keyed by network name, and the
    security groups of their ports."""
    ports = _ports_of(tx, [s.id for s in servers])
    net_ids = {p.network_id for p in ports}
    nets = {n.id: n.name for n in tx.session.scalars(select(models.Network)
                                                     .where(models.Network.id.in_(net_ids))).all()} if net_ids else {}
    pids = [p.id for p in ports]
    fips = tx.session.scalars(select(models.FloatingIP).where(models.FloatingIP.port_id.in_(pids))).all() \
        if pids else []
    group_ids = {b.security_group_id for p in ports for b in p.sg_bindings}
    group_names = {g.id: g.name for g in tx.session.scalars(select(models.SecurityGroup).where(
        models.SecurityGroup.id.in_(group_ids))).all()} if group_ids else {}
    out = []
    for s in servers:
        addresses: dict[str, list[dict[str, Any]]] = {}
        mine = [p for p in ports if p.device_id == s.id]
        for p in mine:
            label = nets.get(p.network_id, p.network_id)
            for a in p.fixed_ips:
                addr = ipaddress.ip_address(a.ip_address)
                addresses.setdefault(label, []).append({"version": addr.version, "addr": a.ip_address,
                                                        "OS-EXT-IPS:type": "fixed",
                                                        "OS-EXT-IPS-MAC:mac_addr": p.mac_address})
                for f in fips:
                    if f.port_id == p.id and f.fixed_ip_address == a.ip_address:
                        addresses[label].append({"version": 4, "addr": f.floating_ip_address,
                                                 "OS-EXT-IPS:type": "floating",
                                                 "OS-EXT-IPS-MAC:mac_addr": p.mac_address})
        names: list[str] = []
        for p in mine:
            for b in p.sg_bindings:
                n = group_names.get(b.security_group_id)
                if n is not None and n not in names:
                    names.append(n)
        if not mine:
            names = list(s.security_group_names or [])
        view: dict[str, Any] = {
            "id": s.id, "name": s.name, "status": s.status, "tenant_id": s.project_id, "user_id": s.user_id,
            "image": {"id": s.image_id, "links": []}, "flavor": {"id": s.flavor_id, "links": []},
            "addresses": addresses, "created": s.created_at, "updated": s.updated_at,
            "hostId": uuid.uuid5(uuid.NAMESPACE_DNS, s.project_id + s.host).hex, "key_name": s.key_name,
            "metadata": {}, "accessIPv4": "", "accessIPv6": "", "progress": 0,
            "OS-EXT-STS:vm_state": "active" if s.status == "ACTIVE" else s.status.lower(),
            "OS-EXT-STS:task_state": None, "OS-EXT-STS:power_state": 1,
            "OS-EXT-AZ:availability_zone": s.availability_zone, "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-SRV-ATTR:host": s.host, "OS-EXT-SRV-ATTR:hypervisor_hostname": s.host,
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{s.id[:8]}",
            "OS-SRV-USG:launched_at": s.created_at, "OS-SRV-USG:terminated_at": None,
            "config_drive": "", "security_groups": [{"name": n} for n in names],
            "os-extended-volumes:volumes_attached": [], "links": [], "description": s.description or None,
        }
        if s.status == "ERROR":
            _failed_build_view(view, s, bool(mine))
        out.append(view)
    return out


def _failed_build_view(view: dict[str, Any], s: models.Server, has_ports: bool) -> None:
    """What Nova's server view shows of a build that failed (``views/servers.py`` ``show``): no host
    (an empty ``hostId``), never launched nor powered (NOSTATE), no ``progress`` (not a progress
    status), security groups only from ports (none left), and the fault (``_get_fault``: code,
    created, message, details; the API drops the details where Nova hides them)."""
    view.update({"hostId": "", "OS-EXT-STS:power_state": 0, "OS-EXT-SRV-ATTR:host": None,
                 "OS-EXT-SRV-ATTR:hypervisor_hostname": None, "OS-SRV-USG:launched_at": None})
    del view["progress"]
    if not has_ports:
        del view["security_groups"]
    if s.fault:
        view["fault"] = {k: s.fault[k] for k in ("code", "created", "message", "details")}


def _name_matcher(pattern: str) -> Any:
    """Nova filters ``name`` as a regular expression (searched, not anchored). Patterns that use more
    than ``. * ^ $`` are matched as literal text, so that no pattern can take exponential time."""
    if re.fullmatch(r"[^()\[\]{}|+?\\]*", pattern):
        try:
            rx = re.compile(pattern)
            return lambda name: rx.search(name) is not None
        except re.error:
            pass
    return lambda name: pattern in name


def list_servers(tx: Tx, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Servers visible to the caller: the project's own, or every project's for an admin asking
    ``all_tenants``; ``filters``: name (regex), status, host, flavor, image, project_id, ip."""
    f = filters or {}
    q = select(models.Server)
    project = f.get("project_id")
    if not tx.ctx.is_admin or (not f.get("all_tenants") and project is None):
        q = q.where(models.Server.project_id == (project if tx.ctx.is_admin and project else tx.ctx.project_id))
    elif project is not None:
        q = q.where(models.Server.project_id == project)
    for key, col in (("status", models.Server.status), ("host", models.Server.host),
                     ("flavor", models.Server.flavor_id), ("image", models.Server.image_id)):
        if f.get(key) is not None:
            q = q.where(col == (f[key].upper() if key == "status" else f[key]))
    rows = list(tx.session.scalars(q.order_by(models.Server.created_seq)).all())
    if f.get("name"):
        match = _name_matcher(f["name"])
        rows = [r for r in rows if match(r.name)]
    views = server_view(tx, rows)
    if f.get("ip"):
        match = _name_matcher(f["ip"])
        views = [v for v in views if any(match(a["addr"]) for addrs in v["addresses"].values() for a in addrs)]
    return views


def get_server(tx: Tx, server_id: str) -> dict[str, Any]:
    return server_view(tx, [get_server_row(tx, server_id)])[0]


def _release(tx: Tx, s: models.Server, p: models.Port) -> None:
    """Take a port off a server: delete it if Nova made it, else unbind it."""
    if p.id in (s.created_port_ids or []):
        delete_port(tx, p.id, internal=True)
        s.created_port_ids = [i for i in s.created_port_ids if i != p.id]
    else:  # Nova's _unbind_ports: the profile keeps all but what Nova put there for PCI and placement
        p.device_id, p.device_owner, p.binding_host_id = "", "", ""
        p.binding_profile = {k: v for k, v in (p.binding_profile or {}).items() if k not in _NOVA_PROFILE_KEYS}
        p.status = "DOWN"
        bind(tx, p, get_network_row(tx, p.network_id))
        bump(p)


def _release_all(tx: Tx, s: models.Server) -> None:
    """Take every port off the server (Nova's ``deallocate_for_instance``)."""
    for p in tx.session.scalars(select(models.Port).where(models.Port.device_id == s.id)).all():
        _release(tx, s, p)


def delete_server(tx: Tx, server_id: str) -> None:
    s = get_server_row(tx, server_id)
    _release_all(tx, s)
    tx.session.delete(s)
    s.updated_at = timestamp()


# -- security groups of a server ---------------------------------------------------------------

def _server_ports(tx: Tx, s: models.Server) -> list[models.Port]:
    return _ports_of(tx, [s.id])


def _server_group_ports(tx: Tx, server_id: str, name: str
                        ) -> tuple[models.Server, models.SecurityGroup, list[models.Port]]:
    """The server, the group ``name`` of the caller's project, and the server's ports (Nova's
    errors when either is missing)."""
    s = get_server_row(tx, server_id)
    g = _find_group(tx, name)
    if g is None:
        raise NotFound(f"Security group {name} is not found for project {tx.ctx.project_id}")
    ports = _server_ports(tx, s)
    if not ports:
        raise NotFound(f"instance_id {s.id} could not be found as device id on any ports")
    return s, g, ports


def add_security_group(tx: Tx, server_id: str, name: str) -> None:
    """``addSecurityGroup``: the group joins every port of the server."""
    s, g, ports = _server_group_ports(tx, server_id, name)
    for p in ports:
        if not p.port_security_enabled or not p.fixed_ips:
            raise InvalidInput("Network requires port_security_enabled and subnet associated in order to apply "
                               "security groups.")
        current = [b.security_group_id for b in p.sg_bindings]
        if g.id not in current:
            set_security_groups(tx, p, [*current, g.id])
            bump(p)
    if g.name not in (s.security_group_names or []):
        s.security_group_names = [*(s.security_group_names or []), g.name]
    tx.session.flush()


def remove_security_group(tx: Tx, server_id: str, name: str) -> None:
    """``removeSecurityGroup``: the group leaves every port of the server that has it."""
    s, g, ports = _server_group_ports(tx, server_id, name)
    found = False
    for p in ports:
        current = [b.security_group_id for b in p.sg_bindings]
        if g.id in current:
            set_security_groups(tx, p, [i for i in current if i != g.id])
            bump(p)
            found = True
    if not found:
        raise NotFound(f"Security group {name} not associated with the instance {s.id}")
    s.security_group_names = [n for n in (s.security_group_names or []) if n != g.name]
    tx.session.flush()


def server_security_groups(tx: Tx, server_id: str) -> list[models.SecurityGroup]:
    s = get_server_row(tx, server_id)
    ids: list[str] = []
    for p in _server_ports(tx, s):
        for b in p.sg_bindings:
            if b.security_group_id not in ids:
                ids.append(b.security_group_id)
    return [g for g in (tx.session.get(models.SecurityGroup, i) for i in ids) if g is not None]


# -- interfaces --------------------------------------------------------------------------------

def interface_view(p: models.Port) -> dict[str, Any]:
    return {"net_id": p.network_id, "port_id": p.id, "mac_addr": p.mac_address, "port_state": p.status,
            "fixed_ips": [{"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in p.fixed_ips]}


def list_interfaces(tx: Tx, server_id: str) -> list[dict[str, Any]]:
    s = get_server_row(tx, server_id)
    return [interface_view(p) for p in _server_ports(tx, s)]


def get_interface(tx: Tx, server_id: str, port_id: str) -> dict[str, Any]:
    s = get_server_row(tx, server_id)
    p = tx.session.get(models.Port, port_id)
    if p is None or p.device_id != s.id:
        raise NotFound(f"Instance {s.id} does not have a port with id {port_id}")
    return interface_view(get_port_row(tx, port_id))


def _check_built(s: models.Server, action: str) -> None:
    """Nova's ``check_instance_state`` for interface changes (vm_state active, paused or stopped): a
    server whose build failed is in ERROR (409, ``raise_http_conflict_for_instance_invalid_state``)."""
    if s.status == "ERROR":
        raise Conflict(f"Cannot '{action}' instance {s.id} while it is in vm_state error")


def attach_interface(tx: Tx, server_id: str, net_id: str | None, port_id: str | None, ip: str | None
                     ) -> dict[str, Any]:
    """``POST /servers/{id}/os-interface``: a new port on ``net_id`` (with ``ip``), the port
    ``port_id``, or with neither a port on the project's only network."""
    s = get_server_row(tx, server_id)
    if net_id and port_id:
        raise InvalidInput("Must not input both network_id and port_id")
    if ip and not net_id:
        raise InvalidInput("Must input network_id when request IP address")
    _check_built(s, "attach_interface")
    if not net_id and not port_id:
        nets = _auto_networks(tx)
        if not nets:
            raise InvalidInput(f"Failed to allocate the network(s) with error No network(s) available, not "
                               f"rescheduling for instance {s.id}.")
        if len(nets) > 1:
            raise Conflict("Multiple possible networks found, use a Network ID to be more specific.")
        net_id = nets[0]["uuid"]
    created = list(s.created_port_ids or [])
    groups = [g.id for g in server_security_groups(tx, server_id)]
    item: dict[str, Any] = {"port": port_id} if port_id else {"uuid": net_id, "fixed_ip": ip}
    try:
        pid = _plug(tx, s, item, groups, created)
    except InvalidInput as e:
        if port_id is None and "is already in use on instance" in str(e):
            raise Conflict(str(e)) from None
        raise
    s.created_port_ids = created
    tx.session.flush()
    return interface_view(get_port_row(tx, pid))


def detach_interface(tx: Tx, server_id: str, port_id: str) -> None:
    s = get_server_row(tx, server_id)
    _check_built(s, "detach_interface")
    p = tx.session.get(models.Port, port_id)
    if p is None or p.device_id != s.id:
        raise NotFound(f"Port {port_id} is not attached")
    _release(tx, s, p)
    tx.session.flush()


# -- console, hypervisors, services ------------------------------------------------------------

_CIRROS = r"""  ____               ____  ____
 / __/ __ ____ ____ / __ \/ __/
/ /__ / // __// __// /_/ /\ \
\___//_//_/  /_/   \____/___/
   http://cirros-cloud.net
"""


def console_output(tx: Tx, server_id: str, length: int | None) -> str:
    """The guest's serial console: a cirros boot as the server's ports make it (its addresses and
    MACs), the last ``length`` lines (all for None or -1)."""
    s = get_server_row(tx, server_id)
    if not s.host:  # check_instance_host: a build no host took has no console
        raise Conflict(f"Instance {s.id} is not ready")
    view = server_view(tx, [s])[0]
    lines = [f"[    0.000000] Linux version 5.15.0-71-generic (buildd@lcy02-amd64-039) #78-Ubuntu SMP {s.created_at}",
             "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=LABEL=cirros-rootfs ro console=tty1 "
             "console=ttyS0",
             f"[    0.000000] DMI: OpenStack Foundation OpenStack Nova, BIOS 1.15.0-1 04/01/2014 ({s.host})",
             "Starting network: udhcpc: started, v1.36.1"]
    n = 0
    for addrs in view["addresses"].values():
        for a in addrs:
            if a["OS-EXT-IPS:type"] == "fixed" and a["version"] == 4:
                lines += [f"udhcpc: broadcasting discover (eth{n}, {a['OS-EXT-IPS-MAC:mac_addr']})",
                          f"udhcpc: lease of {a['addr']} obtained from DHCP, lease time 86400"]
                n += 1
    lines.append("OK")
    lines.append("checking http://169.254.169.254/2009-04-04/instance-id")
    lines.append(f"successful after 1/20 tries: up 3.21. iid={view['OS-EXT-SRV-ATTR:instance_name']}")
    lines.append("=== network info ===")
    n = 0
    for addrs in view["addresses"].values():
        for a in addrs:
            if a["OS-EXT-IPS:type"] == "fixed":
                lines.append(f"if-info: eth{n},up,{a['addr']},{24 if a['version'] == 4 else 64},,")
                n += 1
    lines += ["=== cirros: current=0.6.2 uptime=4.02 ===", *_CIRROS.splitlines(), "",
              "login as 'cirros' user. default password: 'gocubsgo'. use 'sudo' for root.", f"{s.name} login: "]
    if length is not None and length >= 0:
        lines = lines[len(lines) - length:] if length else []
    return "\n".join(lines) + ("\n" if lines else "")


def compute_hosts(tx: Tx) -> tuple[Host, ...]:
    return tx.deployment.hosts_with("compute")


def host_id(name: str, kind: str) -> str:
    """A stable UUID for a host's hypervisor or service (microversion 2.53 and later)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{kind}.{name}.neutrino"))


def hypervisor_usage(tx: Tx) -> dict[str, dict[str, int]]:
    """Per compute host: servers, vCPUs, RAM and disk in use (from the servers' flavors)."""
    usage = {h.name: {"running_vms": 0, "vcpus_used": 0, "memory_mb_used": 512, "local_gb_used": 0}
             for h in compute_hosts(tx)}
    for host, flavor_id in tx.session.execute(select(models.Server.host, models.Server.flavor_id)).all():
        if host not in usage:
            continue
        f = next((f for f in FLAVORS if f.id == flavor_id), None)
        u = usage[host]
        u["running_vms"] += 1
        if f is not None:
            u["vcpus_used"] += f.vcpus
            u["memory_mb_used"] += f.ram
            u["local_gb_used"] += f.disk
    return usage


def servers_on(tx: Tx, host: str) -> list[dict[str, str]]:
    return [{"name": n, "uuid": i} for i, n in tx.session.execute(
        select(models.Server.id, models.Server.name).where(models.Server.host == host)
        .order_by(models.Server.created_seq)).all()]


def controller_hosts(tx: Tx) -> tuple[Host, ...]:
    hosts = tx.deployment.hosts_with("controller") or tx.deployment.hosts_with("network")
    return hosts or compute_hosts(tx)[:1]
