"""Authorization as Keystone and today's Neutron/Nova default policy have it: a token is scoped only
to a project the user holds a role on, and the reader role reads but cannot create, change or delete
(the hole issue 19 found: any user could scope to any project, and a reader could write)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.api_helpers import start_server, stop_server

SCENARIO = """\
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan]}
hosts:
  - {name: controller, roles: [controller, network, compute], management_ip: 192.168.50.10, tunnel_ip: 192.168.50.10}
identity:
  projects: [admin, demo, other]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
    - {name: alice, password: a-secret, project: demo, roles: [member, reader]}
    - {name: rita, password: r-secret, project: demo, roles: [reader]}
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("authz")
    scenario = tmp / "authz.yaml"
    scenario.write_text(SCENARIO)
    server = start_server(tmp, f"sqlite:///{tmp / 'authz.db'}", scenario=scenario)
    try:
        yield server.base
    finally:
        stop_server(server)


def token(base: str, user: str, password: str, project: str) -> httpx.Response:
    return httpx.post(f"{base}/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}})


@pytest.mark.parametrize(("user", "password", "project", "status"), [
    ("alice", "a-secret", "demo", 201),
    ("alice", "a-secret", "other", 401),   # no role on 'other'
    ("rita", "r-secret", "admin", 401),
    ("admin", "secret", "other", 201),      # the cloud's admin
], ids=["own-project", "member-elsewhere", "reader-elsewhere", "admin-anywhere"])
def test_a_token_is_scoped_only_where_the_user_has_a_role(base: str, user, password, project, status) -> None:
    r = token(base, user, password, project)
    assert r.status_code == status, r.text
    if status == 401:
        assert r.json()["error"]["code"] == 401


def test_a_reader_reads_but_cannot_write(base: str) -> None:
    member = {"X-Auth-Token": token(base, "alice", "a-secret", "demo").headers["X-Subject-Token"]}
    reader = {"X-Auth-Token": token(base, "rita", "r-secret", "demo").headers["X-Subject-Token"]}
    made = httpx.post(f"{base}/v2.0/networks", json={"network": {"name": "mine"}}, headers=member)
    assert made.status_code == 201, made.text
    net = made.json()["network"]["id"]
    assert httpx.get(f"{base}/v2.0/networks/{net}", headers=reader).status_code == 200
    for method, url, body in (("POST", "/v2.0/networks", {"network": {"name": "nope"}}),
                              ("PUT", f"/v2.0/networks/{net}", {"network": {"name": "renamed"}}),
                              ("DELETE", f"/v2.0/networks/{net}", None)):
        r = httpx.request(method, base + url, json=body, headers=reader)
        assert r.status_code == 403, (method, r.text)
        assert "NeutronError" in r.json()
    r = httpx.post(f"{base}/compute/v2.1/servers", headers=reader, json={"server": {
        "name": "vm", "imageRef": "x", "flavorRef": "1", "networks": "none"}})
    assert r.status_code == 403 and "forbidden" in r.json(), r.text
    assert httpx.get(f"{base}/v2.0/networks/{net}", headers=member).json()["network"]["name"] == "mine"
