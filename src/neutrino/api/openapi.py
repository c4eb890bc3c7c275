"""The OpenAPI 3.1 document of neutrino's API, generated from what the server routes on.

- Neutron: one path pair per collection of ``neutron.COLLECTIONS``, whose request bodies come from
  the attribute tables (``services.attributes.RESOURCES``: each converter carries the schema of
  what it accepts), plus tags, router interfaces, extensions, agents, quotas and the empty
  collections.
- Identity: ``identity.ROUTES``.
- Compute: ``compute.ROUTES``, with Nova's own request schemas (``novaschema``) at microversion 2.74.

Served at ``/openapi.json``; ``docs/openapi.json`` keeps a copy (a test holds the two equal):

    python -m neutrino.api.openapi > docs/openapi.json
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from typing import Any

from neutrino.api import compute, identity, listing, neutron
from neutrino.services import attributes, quotas
from neutrino.services.attributes import (
    NAME_PATTERN,
    PRINTABLE_PATTERN,
    Resource,
    list_of,
    schema_of,
    to_cidr,
)

TITLE = "neutrino: Neutron v2.0, Keystone v3 and the Nova v2.1 subset"

NEUTRON_ERROR = {"type": "object", "required": ["NeutronError"], "properties": {"NeutronError": {
    "type": "object", "required": ["type", "message", "detail"],
    "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "string"}}}}}
NOVA_FAULT = {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}}}
KEYSTONE_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message", "title"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "title": {"type": "string"}}}}}

_PATTERNS = {
    "name": NAME_PATTERN,
    "az_name": r"^[^:\s][^:]*$",
    "cidr": r"^[0-9a-fA-F.:]+/[0-9]{1,3}$",
    "base64": r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
}


def to_31(schema: Any) -> Any:
    """A schema written for neutrino's validators, as OpenAPI 3.1 (JSON Schema 2020-12) says it:
    ``nullable`` becomes a ``null`` type, formats that are neutrino's or Nova's own become patterns."""
    if isinstance(schema, list):
        return [to_31(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_31(v) if k in ("items", "additionalProperties", "not") else v for k, v in schema.items()}
    for key in ("properties", "patternProperties"):
        if key in out:
            out[key] = {k: to_31(v) for k, v in out[key].items()}
    for key in ("oneOf", "anyOf", "allOf"):
        if key in out:
            out[key] = [to_31(s) for s in out[key]]
    fmt = out.get("format")
    if fmt in _PATTERNS:
        out.pop("format")
        out.setdefault("pattern", _PATTERNS[fmt])
    elif fmt == "ip":
        out.pop("format")
        out["anyOf"] = [{"format": "ipv4"}, {"format": "ipv6"}]
    elif fmt == "printable":
        out.pop("format")
        out.setdefault("pattern", PRINTABLE_PATTERN)
    if out.pop("nullable", False):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        elif isinstance(t, list):
            out["type"] = [*t, *([] if "null" in t else ["null"])]
        elif "enum" in out:
            if None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            return {"anyOf": [out, {"type": "null"}]}
    return out


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


ERROR_TEXT = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
              406: "Microversion not supported", 409: "Conflict", 412: "Revision constraint failed",
              413: "Request body too large", 414: "Request URI too long", 503: "Unavailable"}
ERROR_SCHEMAS = {"neutron": "NeutronError", "nova": "NovaFault", "keystone": "KeystoneError"}


def _responses(ok: int, service: str, codes: tuple[int, ...], ok_text: str = "Success") -> dict[str, Any]:
    out: dict[str, Any] = {str(ok): {"description": ok_text}}
    for c in codes:
        out[str(c)] = {"$ref": f"#/components/responses/{service}-{c}"}
    return out


def _error_responses() -> dict[str, Any]:
    """One response per service and error status, shared by the operations."""
    out: dict[str, Any] = {}
    for service, schema in ERROR_SCHEMAS.items():
        for code, text in ERROR_TEXT.items():
            ref = schema if service != "nova" or code != 401 else "KeystoneError"  # keystonemiddleware's 401
            out[f"{service}-{code}"] = {"description": text,
                                        **_json({"$ref": f"#/components/schemas/{ref}"})}
    return out


def _op(summary: str, tag: str, ok: int, service: str, codes: tuple[int, ...], *,
        body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
        required_body: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag],
                          "operationId": "", "responses": _responses(ok, service, codes)}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": required_body, **_json(to_31(body))}
    return op


def _path_params(path: str) -> list[dict[str, Any]]:
    return [{"name": seg[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for seg in path.split("/") if seg.startswith("{")]


def _query(names: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names]


# -- Neutron ------------------------------------------------------------------------------------

NEUTRON_CODES = (400, 401, 404, 405, 409, 413, 414)


def resource_schema(res: Resource, *, create: bool) -> dict[str, Any]:
    """The attributes a POST (``create``) or a PUT of ``res`` takes, from its attribute table."""
    props: dict[str, Any] = {}
    required = []
    for name, attr in res.attrs.items():
        if (create and not attr.post) or (not create and not attr.put):
            continue
        props[name] = schema_of(attr.convert)
        if create and attr.required:
            required.append(name)
    if create:
        props["project_id"] = {"type": "string", "maxLength": 64}
        props["tenant_id"] = {"type": "string", "maxLength": 64}
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _scheduling_and_forwarding(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The sub-resources: the agents' networks and routers (agent scheduling) and a floating IP's
    port forwardings."""
    e = "neutron"
    for kind, sub, key in (("DHCP", "dhcp-networks", "network_id"), ("L3", "l3-routers", "router_id")):
        p = f"/v2.0/agents/{{agent_id}}/{sub}"
        body = {"type": "object", "required": [key], "properties": {key: {"type": "string", "format": "uuid"}}}
        what = "networks" if kind == "DHCP" else "routers"
        paths[p] = {"get": _op(f"The {what} a {kind} agent hosts", "neutron", 200, e, NEUTRON_CODES,
                               params=_path_params(p)),
                    "post": _op(f"Schedule a {what[:-1]} to a {kind} agent", "neutron", 201, e, NEUTRON_CODES,
                                params=_path_params(p), body=body)}
        item = f"{p}/{{{key}}}"
        paths[item] = {"delete": _op(f"Remove a {what[:-1]} from a {kind} agent", "neutron", 204, e,
                                     NEUTRON_CODES, params=_path_params(item))}
    for p, what in (("/v2.0/networks/{network_id}/dhcp-agents", "The DHCP agents hosting a network"),
                    ("/v2.0/routers/{router_id}/l3-agents", "The L3 agents hosting a router")):
        paths[p] = {"get": _op(what, "neutron", 200, e, NEUTRON_CODES, params=_path_params(p))}
    res = attributes.PORT_FORWARDING
    schemas["port_forwarding-create"] = to_31(resource_schema(res, create=True))
    schemas["port_forwarding-update"] = to_31(resource_schema(res, create=False))
    coll = "/v2.0/floatingips/{floatingip_id}/port_forwardings"
    item = coll + "/{port_forwarding_id}"

    def wrapped(kind: str) -> dict[str, Any]:
        return {"type": "object", "required": ["port_forwarding"], "properties": {
            "port_forwarding": {"$ref": f"#/components/schemas/port_forwarding-{kind}"}}, "additionalProperties": False}
    paths[coll] = {"get": _op("A floating IP's port forwardings", "neutron", 200, e, NEUTRON_CODES,
                              params=_path_params(coll) + _query(("fields", "id", "external_port", "protocol",
                                                                  "internal_port_id", "description"))),
                   "post": _op("Create a port forwarding", "neutron", 201, e, NEUTRON_CODES,
                               params=_path_params(coll), body=wrapped("create"))}
    paths[item] = {"get": _op("Show a port forwarding", "neutron", 200, e, NEUTRON_CODES, params=_path_params(item)),
                   "put": _op("Update a port forwarding", "neutron", 200, e, NEUTRON_CODES,
                              params=_path_params(item), body=wrapped("update")),
                   "delete": _op("Delete a port forwarding", "neutron", 204, e, NEUTRON_CODES,
                                 params=_path_params(item))}


def _neutron(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    e = "neutron"
    paths["/"] = {"get": _op("Neutron API versions", "neutron", 200, e, (405,))}
    paths["/v2.0"] = {"get": _op("Neutron v2.0 resources", "neutron", 200, e, (401, 405))}
    list_params = _query(("fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse", "tags", "tags-any",
                          "not-tags", "not-tags-any"))
    for name, coll in neutron.COLLECTIONS.items():
        res = coll.resource
        schemas[f"{res.singular}-create"] = to_31(resource_schema(res, create=True))
        schemas[f"{res.singular}-update"] = to_31(resource_schema(res, create=False))
        create_ref = {"$ref": f"#/components/schemas/{res.singular}-create"}
        single = {"type": "object", "required": [res.singular], "properties": {res.singular: create_ref},
                  "additionalProperties": False}
        bulk = {"type": "object", "required": [res.plural], "properties": {res.plural: {
            "type": "array", "minItems": 1, "items": {"type": "object", "required": [res.singular],
                                                      "properties": {res.singular: create_ref},
                                                      "additionalProperties": False}}},
            "additionalProperties": False}
        filters = sorted((res.known() | neutron._extra_filters(name)) - listing.RESERVED)
        paths[f"/v2.0/{name}"] = {
            "get": _op(f"List {res.plural}", "neutron", 200, e, NEUTRON_CODES,
                       params=list_params + _query(filters)),
            "post": _op(f"Create a {res.singular} (or several: {{\"{res.plural}\": [...]}})", "neutron", 201, e,
                        NEUTRON_CODES + (403, 503), body={"oneOf": [single, bulk]}),
        }
        item = f"/v2.0/{name}/{{{res.singular}_id}}"
        idp = _path_params(item)
        if_match = [{"name": "If-Match", "in": "header", "required": False,
                     "schema": {"type": "string", "pattern": "^revision_number=[0-9]+$"}}]
        paths[item] = {
            "get": _op(f"Show a {res.singular}", "neutron", 200, e, NEUTRON_CODES, params=idp + _query(("fields",))),
            "put": _op(f"Update a {res.singular}", "neutron", 200, e, NEUTRON_CODES + (412,), params=idp + if_match,
                       body={"type": "object", "required": [res.singular], "properties": {
                           res.singular: {"$ref": f"#/components/schemas/{res.singular}-update"}},
                             "additionalProperties": False}),
            "delete": _op(f"Delete a {res.singular}", "neutron", 204, e, NEUTRON_CODES + (412,),
                          params=idp + if_match),
        }
        if name in ("networks", "subnets", "ports", "routers", "floatingips", "security-groups", "subnetpools"):
            tags = f"{item}/tags"
            tag_list = {"type": "object", "required": ["tags"], "properties": {"tags": {
                "type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^,]*$"},
                "maxItems": 50}}}
            paths[tags] = {"get": _op(f"A {res.singular}'s tags", "neutron", 200, e, NEUTRON_CODES, params=idp),
                           "put": _op(f"Replace a {res.singular}'s tags", "neutron", 200, e, NEUTRON_CODES,
                                      params=idp, body=tag_list),
                           "delete": _op(f"Remove every tag of a {res.singular}", "neutron", 204, e, NEUTRON_CODES,
                                         params=idp)}
            tp = _path_params(f"{tags}/{{tag}}")
            paths[f"{tags}/{{tag}}"] = {
                "get": _op("Whether the tag is set (204) or not (404)", "neutron", 204, e, NEUTRON_CODES, params=tp),
                "put": _op("Add a tag", "neutron", 201, e, NEUTRON_CODES, params=tp),
                "delete": _op("Remove a tag", "neutron", 204, e, NEUTRON_CODES, params=tp)}
    iface = {"type": "object", "properties": {"subnet_id": {"type": "string", "format": "uuid"},
                                              "port_id": {"type": "string", "format": "uuid"}}}
    for action in ("add_router_interface", "remove_router_interface"):
        p = f"/v2.0/routers/{{router_id}}/{action}"
        paths[p] = {"put": _op(action.replace("_", " ").capitalize(), "neutron", 200, e, NEUTRON_CODES,
                               params=_path_params(p), body=iface)}
    paths["/v2.0/extensions"] = {"get": _op("Extensions", "neutron", 200, e, (401, 405))}
    paths["/v2.0/extensions/{alias}"] = {"get": _op("An extension", "neutron", 200, e, (401, 404, 405),
                                                    params=_path_params("/{alias}"))}
    paths["/v2.0/availability_zones"] = {"get": _op("Availability zones", "neutron", 200, e, (401, 405))}
    prefixes = {"type": "object", "required": ["prefixes"], "properties": {"prefixes": schema_of(list_of(to_cidr))}}
    for action in ("add_prefixes", "remove_prefixes"):
        p = f"/v2.0/subnetpools/{{subnetpool_id}}/{action}"
        paths[p] = {"put": _op(action.replace("_", " ").capitalize() + " of a subnet pool", "neutron", 200, e,
                               NEUTRON_CODES, params=_path_params(p), body=prefixes)}
    paths["/v2.0/network-ip-availabilities"] = {"get": _op(
        "Networks' IP availability (admin only)", "neutron", 200, e, (401, 405), params=_query(
            ("fields", "network_id", "network_name", "project_id", "tenant_id", "ip_version")))}
    paths["/v2.0/network-ip-availabilities/{network_id}"] = {"get": _op(
        "A network's IP availability (admin only)", "neutron", 200, e, (401, 404, 405),
        params=_path_params("/{network_id}") + _query(("fields",)))}
    paths["/v2.0/agents"] = {"get": _op("Agents", "neutron", 200, e, NEUTRON_CODES, params=_query(
        ("fields", "sort_key", "sort_dir", "limit", "id", "agent_type", "binary", "topic", "host", "admin_state_up",
         "alive", "availability_zone", "description")))}
    ap = _path_params("/{agent_id}")
    paths["/v2.0/agents/{agent_id}"] = {
        "get": _op("An agent", "neutron", 200, e, NEUTRON_CODES, params=ap),
        "put": _op("Update an agent", "neutron", 200, e, NEUTRON_CODES, params=ap, body={
            "type": "object", "required": ["agent"], "properties": {"agent": {"type": "object", "properties": {
                k: schema_of(c) for k, c in neutron.AGENT_ATTRS.items()}, "additionalProperties": False}}}),
        "delete": _op("Delete an agent", "neutron", 204, e, NEUTRON_CODES, params=ap)}
    _scheduling_and_forwarding(paths, schemas)
    paths["/v2.0/quotas"] = {"get": _op("Projects with quotas set", "neutron", 200, e, (401, 405))}
    qp = _path_params("/{project_id}")
    quota = {"type": "object", "required": ["quota"], "properties": {"quota": {
        "type": "object", "properties": {k: schema_of(neutron.QUOTA_VALUE) for k in quotas.DEFAULTS},
        "additionalProperties": False}}}
    paths["/v2.0/quotas/{project_id}"] = {
        "get": _op("A project's quotas", "neutron", 200, e, NEUTRON_CODES, params=qp),
        "put": _op("Set a project's quotas", "neutron", 200, e, NEUTRON_CODES, params=qp, body=quota),
        "delete": _op("Reset a project's quotas", "neutron", 204, e, NEUTRON_CODES, params=qp)}
    paths["/v2.0/quotas/{project_id}/details"] = {"get": _op("A project's quotas and usage", "neutron", 200, e,
                                                             NEUTRON_CODES, params=qp)}
    paths["/v2.0/quotas/{project_id}/default"] = {"get": _op("The default quotas", "neutron", 200, e,
                                                             NEUTRON_CODES, params=qp)}


# -- Identity and Compute -----------------------------------------------------------------------

def _identity(paths: dict[str, Any]) -> None:
    e = "keystone"
    for method, path, summary, body in identity.ROUTES:
        full = "/identity" + path.rstrip("/") if path != "/" else "/identity"
        ok = identity.OK_STATUS.get((method, path)) or {"POST": 201, "DELETE": 204}.get(
            method, 300 if path == "/" else 200)
        errors = (400, 401, 404, 405, 413, 414) if path in ("/", "/v3") or path.startswith("/v3/auth") \
            else (400, 401, 403, 404, 405, 409, 413, 414)
        op = _op(summary, "identity", ok, e, errors, body=body,
                 params=_path_params(path) or None)
        if path == "/v3/auth/tokens" and method != "POST":
            op["parameters"] = [{"name": "X-Subject-Token", "in": "header", "required": True,
                                 "schema": {"type": "string"}}]
        paths.setdefault(full, {})[method.lower()] = op


def _compute(paths: dict[str, Any]) -> None:
    e = "nova"
    version = {"name": "OpenStack-API-Version", "in": "header", "required": False,
               "schema": {"type": "string", "pattern": "^compute (latest|2\\.([1-9]|[1-6][0-9]|7[0-4]))$"},
               "description": "The microversion: compute 2.1 (default) to compute 2.74, or latest"}
    paths["/compute"] = {"get": _op("Compute API versions", "compute", 200, e, (405,))}
    for r in compute.ROUTES:
        full = "/compute/v2.1" + (r.path if r.path != "/" else "")
        codes = (400, 401, 403, 404, 405, 406, 409, 413, 414) if r.method != "GET" else (400, 401, 403, 404, 406)
        op = _op(r.summary + (" (admin)" if r.admin else ""), "compute", r.status, e, codes, body=r.body,
                 params=_path_params(r.path) + _query(r.query) + [version],
                 required_body=r.handler != "attach_interface")
        paths.setdefault(full, {})[r.method.lower()] = op


@functools.lru_cache(maxsize=1)
def _document() -> str:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"NeutronError": NEUTRON_ERROR, "NovaFault": NOVA_FAULT, "KeystoneError": KEYSTONE_ERROR}
    _neutron(paths, schemas)
    _identity(paths)
    _compute(paths)
    paths["/openapi.json"] = {"get": {"summary": "This document", "tags": ["meta"], "security": [],
                                      "responses": {"200": {"description": "The OpenAPI document"}}}}
    for path, ops in paths.items():
        for method, op in ops.items():
            op["operationId"] = f"{method} {path}"
    doc = {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": "0.1.0",
                 "description": "Errors come in the shape of the service asked: NeutronError for Neutron, "
                                "Nova's faults (badRequest, itemNotFound, ...) for Compute, Keystone's error for "
                                "Identity and for a missing token in front of Compute."},
        "servers": [{"url": "http://127.0.0.1:9696"}],
        "tags": [{"name": "neutron"}, {"name": "identity"}, {"name": "compute"}, {"name": "meta"}],
        "security": [{"token": []}],
        "components": {
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
            "schemas": schemas,
            "responses": _error_responses(),
        },
        "paths": paths,
    }
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy)."""
    return copy.deepcopy(json.loads(_document()))


def text() -> str:
    """The document as ``docs/openapi.json`` keeps it."""
    return _document()


if __name__ == "__main__":
    sys.stdout.write(text())
