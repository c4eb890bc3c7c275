"""The Compute (Nova v2.1, microversion 2.1) and Image (Glance v2) subsets the openstack CLI needs for
``server create/list/show/delete``. Errors use Nova's bodies (``itemNotFound``, ``badRequest``...)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from neutrino.api.common import base_url, json_response, read_json
from neutrino.errors import Conflict, InvalidInput, NeutrinoError, NotFound
from neutrino.services import instances
from neutrino.services.cloud import Cloud
from neutrino.services.core import Context

NOVA_VERSION = {"id": "v2.1", "status": "CURRENT", "version": "2.1", "min_version": "2.1",
                "updated": "2013-07-23T11:33:21Z"}


def nova_error(e: NeutrinoError | Exception) -> Response:
    if isinstance(e, NotFound):
        return json_response({"itemNotFound": {"code": 404, "message": str(e)}}, 404)
    if isinstance(e, Conflict):
        return json_response({"conflictingRequest": {"code": 409, "message": str(e)}}, 409)
    if isinstance(e, InvalidInput):
        return json_response({"badRequest": {"code": 400, "message": str(e)}}, 400)
    return json_response({"computeFault": {"code": 500, "message": "Unexpected API Error."}}, 500)


def _flavor(base: str, f: instances.Flavor) -> dict[str, Any]:
    return {"id": f.id, "name": f.name, "ram": f.ram, "vcpus": f.vcpus, "disk": f.disk, "swap": "",
            "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False, "os-flavor-access:is_public": True,
            "rxtx_factor": 1.0, "links": [{"rel": "self", "href": f"{base}/compute/v2.1/flavors/{f.id}"}]}


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


class ComputeAPI:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    async def handle(self, request: Request, parts: list[str], ctx: Context) -> Response:
        """``parts`` follow ``/compute``."""
        base = base_url(request)
        version = {**NOVA_VERSION, "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}]}
        if not parts:
            return json_response({"versions": [version]})
        if parts[0] != "v2.1":
            return nova_error(NotFound("The resource could not be found."))
        rest = parts[1:]
        if rest and rest[0] == ctx.project_id:
            rest = rest[1:]
        if not rest:
            return json_response({"version": version})
        try:
            return await self._route(request, rest, ctx, base)
        except NeutrinoError as e:
            return nova_error(e)

    async def _route(self, request: Request, rest: list[str], ctx: Context, base: str) -> Response:
        method = request.method
        head = rest[0]
        if head == "flavors":
            if len(rest) == 1 or rest[1] == "detail":
                return json_response({"flavors": [_flavor(base, f) for f in instances.FLAVORS]})
            return json_response({"flavor": _flavor(base, instances.flavor(rest[1]))})
        if head == "images":
            if len(rest) == 1 or rest[1] == "detail":
                return json_response({"images": [{"id": i.id, "name": i.name, "status": "ACTIVE", "links": []}
                                                 for i in instances.IMAGES]})
            i = instances.image(rest[1])
            return json_response({"image": {"id": i.id, "name": i.name, "status": "ACTIVE", "links": []}})
        if head == "os-availability-zone":
            return json_response({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True},
                                                            "hosts": None}]})
        if head == "limits":
            return json_response({"limits": {"rate": [], "absolute": {"maxTotalInstances": 1000,
                                                                      "totalInstancesUsed": 0}}})
        if head != "servers":
            raise NotFound("The resource could not be found.")
        if len(rest) == 1:
            if method == "POST":
                body = await read_json(request)
                with self.cloud.write(ctx) as tx:
                    created = instances.create_server(tx, body)
                return json_response({"server": _links(base, created)}, 202)
            if method == "GET":
                with self.cloud.read(ctx) as tx:
                    servers = instances.list_servers(tx, request.query_params.get("name"))
                return json_response({"servers": [_links(base, {"id": s["id"], "name": s["name"]})
                                                  for s in servers]})
            return json_response({"error": "method not allowed"}, 405)
        if rest[1] == "detail" and len(rest) == 2:
            with self.cloud.read(ctx) as tx:
                servers = instances.list_servers(tx, request.query_params.get("name"))
            return json_response({"servers": [_links(base, s) for s in servers]})
        sid = rest[1]
        if len(rest) == 2:
            if method == "GET":
                with self.cloud.read(ctx) as tx:
                    return json_response({"server": _links(base, instances.get_server(tx, sid))})
            if method == "DELETE":
                with self.cloud.write(ctx) as tx:
                    instances.delete_server(tx, sid)
                return json_response(None, 204)
        if len(rest) == 3 and rest[2] == "os-interface" and method == "GET":
            with self.cloud.read(ctx) as tx:
                server = instances.get_server(tx, sid)
            return json_response({"interfaceAttachments": [
                {"mac_addr": a["OS-EXT-IPS-MAC:mac_addr"], "fixed_ips": [{"ip_address": a["addr"]}]}
                for addrs in server["addresses"].values() for a in addrs if a["OS-EXT-IPS:type"] == "fixed"]})
        raise NotFound("The resource could not be found.")


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
