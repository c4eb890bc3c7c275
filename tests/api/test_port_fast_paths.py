"""Issue #17's port fast paths answer byte for byte what the generic paths answer.

- ``GET /v2.0/ports`` (no fields, tags or sorting) is spliced from each port's JSON, encoded by orjson
  where that gives json.dumps's bytes: the body is exactly ``json.dumps`` of the views the ORM path
  gives (non-ASCII text, DEL, floats with a negative exponent, integers past 64 bits, tags, address
  pairs, several addresses and groups), for the admin and for a member (binding attributes hidden),
  whole or paged (the same ports and links as the generic path sorting by id).
- A port's JSON kept from an earlier listing is never served once the port changed (name, tags,
  addresses, status), nor once it is gone.
- A create answers what reading the port back answers; the checks keep their order (network not
  found before anything else, a taken MAC, over quota).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from neutrino.api import policy
from neutrino.services import ports
from neutrino.services.core import Context
from tests.api.api_helpers import AppUser, fresh_database

SCENARIO = """\
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:1000"]}
hosts:
  - {name: controller, roles: [controller, network, compute], management_ip: 10.0.0.1, tunnel_ip: 10.0.0.1}
identity:
  projects: [admin, alpha]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
    - {name: anna, password: secret, project: alpha, roles: [member, reader]}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The API in process on a SQLite file, or on a database of its own in the session's cluster."""
    from neutrino.api.serve import make_app

    base = request.getfixturevalue("pg_cluster").url if request.param == "postgres" else "sqlite://"
    url = fresh_database(base, f"fast_{uuid.uuid4().hex[:12]}", tmp_path)
    (tmp_path / "fast.yaml").write_text(SCENARIO)
    application, _ = make_app(url, str(tmp_path / "fast.yaml"), "keystone")
    try:
        with TestClient(application) as c:
            yield c
    finally:
        application.state.cloud.db.dispose()


def _ctx(user: AppUser) -> Context:
    admin = user.project == AppUser(user.c, "admin", "admin").project
    return Context(user.project, "", admin, ("admin", "member", "reader") if admin else ("member", "reader"))


def _expected(user: AppUser, **filters: list[str]) -> bytes:
    """``json.dumps`` of the views the ORM path gives, as the generic listing shows them to ``user``."""
    cloud = user.c.app.state.cloud  # type: ignore[attr-defined]
    ctx = _ctx(user)
    with cloud.read(ctx) as tx:
        views = ports.list_ports(tx, dict(filters))
    shown = [policy.visible_attrs(ctx, "port", v) for v in views]
    return json.dumps({"ports": shown}, separators=(",", ":")).encode()


def _listing(user: AppUser, query: str = "") -> bytes:
    r = user.c.get("/v2.0/ports" + query, headers=user.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.content


def _setup(c: TestClient) -> tuple[AppUser, AppUser, str, list[dict[str, Any]]]:
    admin, anna = AppUser(c, "admin", "admin"), AppUser(c, "anna", "alpha")
    net = anna.call("POST", "/networks", {"network": {"name": "fast"}}, 201)["network"]["id"]
    sub = anna.call("POST", "/subnets", {"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.7.0.0/24"}},
                    201)["subnet"]["id"]
    anna.call("POST", "/subnets", {"subnet": {"network_id": net, "ip_version": 6, "cidr": "fd00:7::/64"}}, 201)
    extra = anna.call("POST", "/security-groups", {"security_group": {"name": "extra"}}, 201)["security_group"]["id"]
    bodies: list[dict[str, Any]] = [
        {"network_id": net, "name": "caf\u00e9 \u2603", "description": "del\x7fhere"},
        {"network_id": net, "name": "vm", "device_owner": "compute:nova", "device_id": str(uuid.uuid4()),
         "binding:host_id": "controller", "project_id": anna.project,
         "allowed_address_pairs": [{"ip_address": "10.7.0.200"}],
         "extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400"}]},
        {"network_id": net, "fixed_ips": [{"subnet_id": sub, "ip_address": "10.7.0.77"}, {"subnet_id": sub}],
         "security_groups": [extra]},
        {"network_id": net, "port_security_enabled": False, "admin_state_up": False},
    ]
    made = [(admin if "project_id" in b else anna).call("POST", "/ports", {"port": b}, 201)["port"] for b in bodies]
    floats = admin.call("POST", "/ports", {"port": {
        "network_id": net, "project_id": anna.project, "name": "floats",
        "binding:profile": {"tiny": 1e-07, "half": 0.5, "big": 2 ** 70, "neg": -3.25e-12}}}, 201)["port"]
    made.append(floats)
    admin.call("PUT", f"/ports/{made[0]['id']}/tags", {"tags": ["red", "bl\u00fce"]}, 200)
    return admin, anna, net, made


def test_listing_is_byte_for_byte_the_generic_answer(app: TestClient) -> None:
    admin, anna, net, made = _setup(app)
    for user in (admin, anna):
        first = _listing(user)
        assert first == _expected(user)
        assert _listing(user) == first  # the second answer, from the kept JSON, is the same bytes
    body = json.loads(_listing(admin))["ports"]
    assert {p["id"] for p in made} <= {p["id"] for p in body}
    floats = next(p for p in body if p["name"] == "floats")
    assert floats["binding:profile"] == {"tiny": 1e-07, "half": 0.5, "big": 2 ** 70, "neg": -3.25e-12}
    assert b'"tiny":1e-07' in _listing(admin)  # json.dumps's float, not orjson's 1e-7
    assert b"caf\\u00e9 \\u2603" in _listing(anna) and b"del\\u007fhere" in _listing(anna)
    seen_by_anna = json.loads(_listing(anna))["ports"]
    assert seen_by_anna and all("binding:host_id" not in p for p in seen_by_anna)
    assert "binding:host_id" in body[0]
    on_net = _listing(admin, f"?network_id={net}&device_owner=compute:nova")
    assert on_net == _expected(admin, network_id=[net], device_owner=["compute:nova"])
    assert [p["name"] for p in json.loads(on_net)["ports"]] == ["vm"]


def test_pages_are_the_generic_pages(app: TestClient) -> None:
    admin, anna, _, _ = _setup(app)
    for user in (admin, anna):
        generic = _listing(user, "?sort_key=id")  # sorting: the generic path
        everything = json.loads(generic)["ports"]
        assert len(everything) >= 6
        fast = _listing(user, "?limit=1000")
        assert fast.startswith(generic[:-1] + b',"ports_links":[')
        marker = everything[1]["id"]
        page = json.loads(_listing(user, f"?limit=2&marker={marker}"))
        assert [p["id"] for p in page["ports"]] == [p["id"] for p in everything[2:4]]
        assert [link["rel"] for link in page["ports_links"]] == ["next", "previous"]
        assert page["ports_links"][0]["href"].endswith(f"limit=2&marker={everything[3]['id']}")
        back = json.loads(_listing(user, f"?limit=2&marker={everything[4]['id']}&page_reverse=True"))
        assert [p["id"] for p in back["ports"]] == [p["id"] for p in everything[2:4]]
    missing = str(uuid.uuid4())
    r = admin.c.get(f"/v2.0/ports?limit=2&marker={missing}", headers=admin.headers)
    assert r.status_code == 404 and r.json()["NeutronError"]["type"] == "PortNotFound"


def test_a_changed_port_is_never_served_from_its_old_json(app: TestClient) -> None:
    admin, anna, _, made = _setup(app)
    before = _listing(admin)
    port = made[1]["id"]
    admin.call("PUT", f"/ports/{port}", {"port": {"name": "renamed"}}, 200)
    admin.call("PUT", f"/ports/{made[2]['id']}/tags", {"tags": ["new"]}, 200)
    admin.call("PUT", f"/ports/{made[3]['id']}", {"port": {"fixed_ips": []}}, 200)
    admin.call("DELETE", f"/ports/{made[4]['id']}", None, 204)
    after = _listing(admin)
    assert after != before and after == _expected(admin)
    shown = {p["id"]: p for p in json.loads(after)["ports"]}
    assert shown[port]["name"] == "renamed" and shown[made[2]["id"]]["tags"] == ["new"]
    assert shown[made[3]["id"]]["fixed_ips"] == [] and made[4]["id"] not in shown
    assert _listing(anna) == _expected(anna)


def test_create_answers_what_reading_gives_and_keeps_the_checks(app: TestClient) -> None:
    admin, anna, net, made = _setup(app)
    for p in made:
        assert anna.call("GET", f"/ports/{p['id']}", None, 200)["port"] == policy.visible_attrs(
            _ctx(anna), "port", admin.call("GET", f"/ports/{p['id']}", None, 200)["port"])
    created = admin.call("POST", "/ports", {"port": {"network_id": net, "name": "x"}}, 201)["port"]
    assert created == admin.call("GET", f"/ports/{created['id']}", None, 200)["port"]
    assert created["revision_number"] == 1 and created["status"] == "DOWN"
    missing = str(uuid.uuid4())
    err = admin.error("POST", "/ports", {"port": {"network_id": missing, "mac_address": created["mac_address"]}},
                      404)
    assert err["type"] == "NetworkNotFound" and missing in err["message"]
    err = admin.error("POST", "/ports", {"port": {"network_id": net, "mac_address": created["mac_address"]}}, 409)
    assert err["type"] == "MacAddressInUse"
    admin.call("PUT", f"/quotas/{anna.project}", {"quota": {"port": 6}}, 200)  # what it uses
    err = anna.error("POST", "/ports", {"port": {"network_id": missing}}, 409)
    assert err["type"] == "OverQuota"  # the quota first, as Neutron: before the network is looked up
