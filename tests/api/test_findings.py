"""The fuzzer's findings (issue 16), kept as regression cases against a real server on SQLite and
PostgreSQL: each was a 500, a plain-text answer or an error in another service's shape; each is now
answered by the service asked, in its own shape, with the status given here.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.api_helpers import Server, shape_problem

MISSING = str(uuid.uuid4())
NESTED = b"[" * 1000 + b"]" * 1000
V274 = (("OpenStack-API-Version", "compute 2.74"),)


def nested_in(envelope: str, attr: str) -> bytes:
    """A body whose attribute holds 1,000 levels of lists."""
    return b'{"%s": {"%s": ' % (envelope.encode(), attr.encode()) + NESTED + b"}}"


def surrogate(envelope: str, attr: str, extra: str = "") -> bytes:
    """A body whose attribute is a lone surrogate (valid JSON, invalid Unicode)."""
    return ('{"' + envelope + '": {"' + attr + '": "a\\ud800b"' + extra + "}}").encode()


@dataclass(frozen=True)
class Finding:
    id: str
    method: str
    path: str  # may use {net}, {port}, {vm}, {sg}, {image}, {project}
    body: Any = None
    status: int = 400
    kind: str | None = None  # NeutronError type or Nova fault name (checked against the shape too)
    raw: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    says: str | None = None  # part of the message


def server(**kw: Any) -> dict[str, Any]:
    return {"server": {"name": "fd-vm", "imageRef": "{image}", "flavorRef": "1", "networks": [{"uuid": "{net}"}],
                       **kw}}


FINDINGS = [
    # ~1,000 levels of nesting: RecursionError 500s on every POST and PUT
    Finding("nested-network-post", "POST", "/v2.0/networks", raw=NESTED, kind="MalformedRequestBody"),
    Finding("nested-network-attr", "POST", "/v2.0/networks", raw=nested_in("network", "name"),
            kind="MalformedRequestBody", says="nested deeper than 32 levels"),
    Finding("nested-port-put", "PUT", "/v2.0/ports/{port}", raw=nested_in("port", "binding:profile"),
            kind="MalformedRequestBody"),
    Finding("nested-sg-post", "POST", "/v2.0/security-groups", raw=NESTED, kind="MalformedRequestBody"),
    Finding("nested-rule-post", "POST", "/v2.0/security-group-rules", raw=NESTED, kind="MalformedRequestBody"),
    Finding("nested-quota-put", "PUT", "/v2.0/quotas/{project}", raw=NESTED, kind="MalformedRequestBody"),
    Finding("nested-server-post", "POST", "/compute/v2.1/servers", raw=NESTED, kind="badRequest"),
    Finding("nested-server-put", "PUT", "/compute/v2.1/servers/{vm}", raw=nested_in("server", "name"),
            kind="badRequest"),
    Finding("nested-server-action", "POST", "/compute/v2.1/servers/{vm}/action", raw=NESTED, kind="badRequest"),
    Finding("nested-token-post", "POST", "/identity/v3/auth/tokens", raw=NESTED),
    # a lone surrogate in a name: UnicodeEncodeError 500s
    Finding("surrogate-network", "POST", "/v2.0/networks", raw=surrogate("network", "name"),
            kind="MalformedRequestBody", says="invalid Unicode"),
    Finding("surrogate-port", "POST", "/v2.0/ports", raw=surrogate("port", "name", ', "network_id": "{net}"'),
            kind="MalformedRequestBody"),
    Finding("surrogate-port-put", "PUT", "/v2.0/ports/{port}", raw=surrogate("port", "name"),
            kind="MalformedRequestBody"),
    Finding("surrogate-sg", "POST", "/v2.0/security-groups", raw=surrogate("security_group", "name"),
            kind="MalformedRequestBody"),
    Finding("surrogate-rule", "POST", "/v2.0/security-group-rules",
            raw=surrogate("security_group_rule", "description", ', "security_group_id": "{sg}", '
                                                                 '"direction": "ingress"'),
            kind="MalformedRequestBody"),
    Finding("surrogate-server", "POST", "/compute/v2.1/servers",
            raw=surrogate("server", "name", ', "imageRef": "{image}", "flavorRef": "1", "networks": "none"'),
            kind="badRequest"),
    Finding("surrogate-key", "POST", "/v2.0/networks", raw=b'{"network": {"\\udfff": 1}}', kind="MalformedRequestBody"),
    # a server's networks[].fixed_ip that is not an address: 500s
    Finding("fixed-ip-bogus", "POST", "/compute/v2.1/servers",
            server(networks=[{"uuid": "{net}", "fixed_ip": "bogus"}]), kind="badRequest", says="fixed_ip"),
    Finding("fixed-ip-cidr", "POST", "/compute/v2.1/servers",
            server(networks=[{"uuid": "{net}", "fixed_ip": "10.77.0.5/24"}]), kind="badRequest", says="fixed_ip"),
    Finding("fixed-ip-list", "POST", "/compute/v2.1/servers",
            server(networks=[{"uuid": "{net}", "fixed_ip": ["10.77.0.5"]}]), kind="badRequest", says="fixed_ip"),
    Finding("fixed-ip-2.74", "POST", "/compute/v2.1/servers",
            server(networks=[{"uuid": "{net}", "fixed_ip": "bogus"}]), kind="badRequest", headers=V274),
    # security_groups not a list, key_name of another type, description as a list: 500s
    Finding("sg-string", "POST", "/compute/v2.1/servers", server(security_groups="default"), kind="badRequest",
            says="security_groups"),
    Finding("sg-dict", "POST", "/compute/v2.1/servers", server(security_groups={"name": "default"}),
            kind="badRequest"),
    Finding("sg-names", "POST", "/compute/v2.1/servers", server(security_groups=["default"]), kind="badRequest"),
    Finding("key-huge-int", "POST", "/compute/v2.1/servers", server(key_name=10**30), kind="badRequest",
            says="key_name"),
    Finding("key-list", "POST", "/compute/v2.1/servers", server(key_name=["k"]), kind="badRequest"),
    Finding("key-dict", "POST", "/compute/v2.1/servers", server(key_name={"k": 1}), kind="badRequest"),
    Finding("key-true", "POST", "/compute/v2.1/servers", server(key_name=True), kind="badRequest",
            says="True is not of type 'string'"),
    Finding("description-list", "POST", "/compute/v2.1/servers", server(description=["d"]), kind="badRequest",
            headers=V274, says="description"),
    Finding("description-before-2.19", "POST", "/compute/v2.1/servers", server(description="d"), kind="badRequest",
            says="Additional properties are not allowed ('description' was unexpected)"),
    Finding("update-name-int", "PUT", "/compute/v2.1/servers/{vm}", {"server": {"name": 5}}, kind="badRequest"),
    # methods a path does not have: 405 {"error": ...}
    Finding("servers-put", "PUT", "/compute/v2.1/servers", {}, 405, "badMethod"),
    Finding("servers-delete", "DELETE", "/compute/v2.1/servers", None, 405, "badMethod"),
    Finding("servers-patch", "PATCH", "/compute/v2.1/servers", {}, 405, "badMethod"),
    Finding("server-post", "POST", "/compute/v2.1/servers/{vm}", {}, 405, "badMethod"),
    Finding("hypervisors-post", "POST", "/compute/v2.1/os-hypervisors", {}, 405, "badMethod"),
    Finding("identity-put", "PUT", "/identity/v3/projects", {}, 405),
    # compute errors in Nova's shape (they came in Neutron's)
    Finding("server-unknown", "GET", f"/compute/v2.1/servers/{MISSING}", None, 404, "itemNotFound",
            says=f"Instance {MISSING} could not be found."),
    Finding("compute-unknown-path", "GET", "/compute/v2.1/bogus", None, 404, "itemNotFound"),
    Finding("flavor-unknown", "GET", "/compute/v2.1/flavors/999", None, 404, "itemNotFound"),
    Finding("server-port-in-use", "POST", "/compute/v2.1/servers", server(networks=[{"port": "{port}"}]), 409,
            "conflictingRequest", says="is still in use"),
    Finding("server-flavor-unknown", "POST", "/compute/v2.1/servers", server(flavorRef="999"), kind="badRequest",
            says="Flavor 999 could not be found."),
    Finding("server-network-unknown", "POST", "/compute/v2.1/servers", server(networks=[{"uuid": MISSING}]),
            kind="badRequest", says=f"Network {MISSING} could not be found."),
    Finding("interface-network-unknown", "POST", "/compute/v2.1/servers/{vm}/os-interface",
            {"interfaceAttachment": {"net_id": MISSING}}, 404, "itemNotFound",
            says=f"Network {MISSING} could not be found."),
    Finding("server-host-unknown", "POST", "/compute/v2.1/servers", server(host="nowhere"), kind="badRequest",
            headers=V274, says="Compute host nowhere could not be found."),
    Finding("server-host-before-2.74", "POST", "/compute/v2.1/servers", server(host="compute"), kind="badRequest",
            says="Additional properties are not allowed ('host' was unexpected)"),
    Finding("action-unknown", "POST", "/compute/v2.1/servers/{vm}/action", {"reboot": {"type": "SOFT"}},
            kind="badRequest", says="There is no such action: reboot"),
    Finding("action-two-keys", "POST", "/compute/v2.1/servers/{vm}/action",
            {"addSecurityGroup": {"name": "x"}, "removeSecurityGroup": {"name": "x"}}, kind="badRequest"),
    Finding("add-sg-unknown", "POST", "/compute/v2.1/servers/{vm}/action", {"addSecurityGroup": {"name": "fd-none"}},
            404, "itemNotFound", says="Security group fd-none is not found"),
    Finding("add-sg-no-name", "POST", "/compute/v2.1/servers/{vm}/action", {"addSecurityGroup": {}},
            kind="badRequest", says="'name' is a required property"),
    Finding("remove-sg-absent", "POST", "/compute/v2.1/servers/{vm}/action",
            {"removeSecurityGroup": {"name": "{sg}"}}, 404, "itemNotFound", says="not associated with the instance"),
    Finding("console-length-bad", "POST", "/compute/v2.1/servers/{vm}/action",
            {"os-getConsoleOutput": {"length": "ten"}}, kind="badRequest"),
    Finding("interface-both", "POST", "/compute/v2.1/servers/{vm}/os-interface",
            {"interfaceAttachment": {"net_id": "{net}", "port_id": "{port}"}}, kind="badRequest",
            says="Must not input both network_id and port_id"),
    Finding("interface-absent", "DELETE", f"/compute/v2.1/servers/{{vm}}/os-interface/{MISSING}", None, 404,
            "itemNotFound", says="is not attached"),
    Finding("version-too-new", "GET", "/compute/v2.1/flavors", None, 406, "computeFault",
            headers=(("OpenStack-API-Version", "compute 2.99"),), says="maximum is 2.74"),
    Finding("version-garbage", "GET", "/compute/v2.1/flavors", None, 400, "badRequest",
            headers=(("X-OpenStack-Nova-API-Version", "two"),), says="is of invalid format"),
    # limits: body size (413), strings, NUL (PostgreSQL refuses it), numbers past the database's integers
    Finding("body-too-large", "POST", "/v2.0/networks", raw=b'{"network": {"name": "' + b"x" * 120000 + b'"}}',
            status=413, kind="HTTPRequestEntityTooLarge"),
    Finding("body-too-large-compute", "POST", "/compute/v2.1/servers", raw=b" " * 120000, status=413,
            kind="overLimit"),
    Finding("body-too-large-identity", "POST", "/identity/v3/auth/tokens", raw=b" " * 120000, status=413),
    Finding("string-too-long", "POST", "/v2.0/ports", raw=b'{"port": {"binding:profile": {"k": "'
            + b"x" * 70000 + b'"}}}', kind="MalformedRequestBody"),
    Finding("nul-in-name", "POST", "/v2.0/networks", {"network": {"name": "a\x00b"}}, kind="MalformedRequestBody"),
    Finding("nul-in-path", "GET", "/v2.0/networks/%00", None, 400, "HTTPBadRequest"),
    Finding("nul-in-query", "GET", "/v2.0/networks?name=%00", None, 400, "HTTPBadRequest"),
    Finding("nan", "POST", "/v2.0/networks", raw=b'{"network": {"mtu": NaN}}', kind="MalformedRequestBody"),
    Finding("mtu-huge", "POST", "/v2.0/networks", {"network": {"mtu": 10**20}}, kind="HTTPBadRequest",
            says="Invalid input for mtu"),
    Finding("segmentation-id-huge", "POST", "/v2.0/networks", {"network": {
        "provider:network_type": "gre", "provider:segmentation_id": 2**40}}, kind="HTTPBadRequest"),
    Finding("port-range-huge", "POST", "/v2.0/security-group-rules", {"security_group_rule": {
        "security_group_id": "{sg}", "direction": "ingress", "protocol": "tcp", "port_range_min": 10**12,
        "port_range_max": 10**12}}, kind="HTTPBadRequest", says="Invalid value for port"),
    Finding("quota-huge", "PUT", "/v2.0/quotas/{project}", {"quota": {"port": 10**15}}, kind="HTTPBadRequest"),
    Finding("quota-project-long", "PUT", "/v2.0/quotas/" + "p" * 100, {"quota": {"port": 5}},
            kind="HTTPBadRequest"),
    Finding("project-id-long", "POST", "/v2.0/networks", {"network": {"project_id": "p" * 100}},
            kind="HTTPBadRequest"),
    Finding("limit-huge", "GET", "/v2.0/networks?limit=99999999999999999999999", None, 200),
    Finding("limit-huge-ports", "GET", "/v2.0/ports?limit=99999999999999999999999&marker={port}", None, 200),
    Finding("name-trailing-space", "POST", "/v2.0/networks", {"network": {"name": "net "}}, kind="HTTPBadRequest",
            says="is not a valid string"),
    Finding("dhcp-opts-nested", "POST", "/v2.0/ports", {"port": {"network_id": "{net}", "extra_dhcp_opts": [
        {"opt_name": "mtu", "opt_value": {"deep": [1]}}]}}, kind="InvalidInput", says="No valid key specs matched for"),
    Finding("agent-description-list", "PUT", "/v2.0/agents/{agent}", {"agent": {"description": ["x"]}},
            kind="HTTPBadRequest"),
    Finding("auth-password-list", "POST", "/identity/v3/auth/tokens", {"auth": {"identity": {
        "methods": ["password"], "password": ["x"]}}}),
    Finding("auth-methods-string", "POST", "/identity/v3/auth/tokens", {"auth": {"identity": {
        "methods": "password"}}}),
]


@pytest.fixture(scope="module")
def ids(server: Server) -> Iterator[dict[str, str]]:
    with server.http() as h:
        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = h.post(path, json=body)
            assert r.status_code == 201, r.text
            return dict(next(iter(r.json().values())))
        t: dict[str, str] = {}
        t["net"] = post("/networks", {"network": {"name": "fd-net"}})["id"]
        post("/subnets", {"subnet": {"network_id": t["net"], "ip_version": 4, "cidr": "10.61.0.0/24"}})
        t["sg"] = post("/security-groups", {"security_group": {"name": "fd-sg"}})["id"]
        t["port"] = post("/ports", {"port": {"network_id": t["net"], "name": "fd-port"}})["id"]
        t["agent"] = h.get("/agents").json()["agents"][0]["id"]
        t["project"] = h.get("/networks/" + t["net"]).json()["network"]["project_id"]
    with httpx.Client(base_url=server.base, headers={"X-Auth-Token": server.token()}, timeout=30) as c:
        t["image"] = c.get("/image/v2/images").json()["images"][0]["id"]
        r = c.post("/compute/v2.1/servers", json=server_body(t))
        assert r.status_code == 202, r.text
        t["vm"] = r.json()["server"]["id"]
        c.post(f"/compute/v2.1/servers/{t['vm']}/os-interface", json={"interfaceAttachment": {"port_id": t["port"]}})
    yield t
    with httpx.Client(base_url=server.base, headers={"X-Auth-Token": server.token()}, timeout=30) as c:
        assert c.delete(f"/compute/v2.1/servers/{t['vm']}").status_code == 204


def server_body(t: dict[str, str]) -> dict[str, Any]:
    return {"server": {"name": "fd-base", "imageRef": t["image"], "flavorRef": "1", "networks": [{"uuid": t["net"]}]}}


def _fill(value: Any, t: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in t.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, bytes):
        return _fill(value.decode("latin-1"), t).encode("latin-1")
    if isinstance(value, dict):
        return {_fill(k, t): _fill(v, t) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, t) for v in value]
    return value


def test_findings_table() -> None:
    assert len(FINDINGS) >= 60
    assert len({f.id for f in FINDINGS}) == len(FINDINGS)


@pytest.mark.parametrize("f", FINDINGS, ids=[f.id for f in FINDINGS])
def test_finding(f: Finding, server: Server, ids: dict[str, str]) -> None:
    headers = {"X-Auth-Token": server.token(), "Content-Type": "application/json", **dict(f.headers)}
    content = _fill(f.raw, ids) if f.raw is not None else (
        None if f.body is None else json.dumps(_fill(f.body, ids)).encode())
    path = _fill(f.path, ids)
    r = httpx.request(f.method, f"{server.base}{path}", content=content, headers=headers, timeout=30)
    assert r.status_code == f.status, r.text[:500]
    assert "Traceback" not in r.text
    if f.status < 400:
        return
    body = r.json()
    assert shape_problem(path, r.status_code, body) is None, body
    if f.kind is not None:
        assert f.kind in (body.get("NeutronError", {}).get("type"), next(iter(body))), body
    if f.says is not None:
        assert f.says in r.text, r.text[:500]


@pytest.mark.parametrize("path", ["/v2.0/networks?name=", "/compute/v2.1/servers?name=", "/identity/v3/projects?name="])
@pytest.mark.parametrize("size", [70_000, 200_000])
def test_long_urls(path: str, size: int, server: Server) -> None:
    """URLs of 64 KiB and more: the HTTP server's plain-text 400 became a 414 in the service's shape."""
    status, headers, body = raw_get(server, f"{path}{'a' * size}")
    assert status == 414, body[:300]
    assert headers["content-type"] == "application/json"
    assert shape_problem(path, 414, json.loads(body)) is None, body[:300]


def test_malformed_request_line(server: Server) -> None:
    """What the HTTP parser refuses is answered in the shape of the service the path names."""
    status, headers, body = raw_get(server, "/compute/v2.1/servers", extra=b"Bad Header\r\n")
    assert status == 400 and headers["content-type"] == "application/json", body
    assert shape_problem("/compute", 400, json.loads(body)) is None, body


def raw_get(server: Server, path: str, extra: bytes = b"") -> tuple[int, dict[str, str], str]:
    """A GET over a plain socket (HTTP clients refuse to send URLs this long)."""
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: {server.token()}\r\n".encode() + extra +
                  b"Connection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body.decode()


def test_head_on_servers_is_get_without_a_body(server: Server) -> None:
    r = httpx.head(f"{server.base}/compute/v2.1/servers", headers={"X-Auth-Token": server.token()}, timeout=30)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["OpenStack-API-Version"] == "compute 2.1"
