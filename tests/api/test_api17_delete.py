"""A non-admin's port delete checks the policy on the port's head in the delete's own transaction
(api17, ``neutron._port_delete_check``) instead of in a read transaction before it: on PostgreSQL
the owner's delete is then two round trips, as an admin's (api16).

- A member deleting its own port through the API: two round trips, nothing read before.
- The same answers (status and body) as the check made before the transaction gave, in the same
  order: a port not found or not visible (404, before the revision is looked at), another project's
  port on a network the caller does not own (404: it is not visible), a port on the caller's own
  network (deleted: the network owner may), a wrong revision (412), a router's port (409), a port
  with a floating IP, a reader (403, nothing deleted); on SQLite and PostgreSQL alike, and the
  writer lock free after each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neutrino.db.session import Database
from tests.api.api_helpers import TWO_COMPUTES, PgCluster, app_auth, app_headers
from tests.api.test_api14_folds import _lock_free, _round_trips, _traced, _url, namer


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/api17.db"
    pg: PgCluster = request.getfixturevalue("pg_cluster")
    return _url(pg, tmp_path)


# an admin, a member of project demo and a reader of it
SCENARIO = TWO_COMPUTES + "    - {name: peek, password: secret, project: demo, roles: [reader]}\n"


def _app(url: str, tmp: Path) -> Iterator[tuple[Any, Database]]:
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app

    (tmp / "api17.yaml").write_text(SCENARIO)
    application, _ = make_app(url, str(tmp / "api17.yaml"), "keystone", None)
    db: Database = application.state.cloud.db
    try:
        with TestClient(application) as c:
            yield c, db
    finally:
        db.dispose()


def _post(c: Any, h: dict[str, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post(f"/v2.0/{path}", json=body, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _sequence(c: Any, url: str) -> list[Any]:
    """Deletes by a member of project demo (and one by a reader), each answer's status and body with
    ids, MACs and timestamps named by their first appearance; what is left of demo's network."""
    admin = app_headers(c)
    admin_project = app_auth(c).json()["token"]["project"]["id"]
    demo, peek = app_headers(c, "demo", "demo"), app_headers(c, "peek", "demo")
    named = namer()
    out: list[Any] = []

    def step(h: dict[str, str], pid: str, **headers: str) -> None:
        r = c.request("DELETE", f"/v2.0/ports/{pid}", headers={**h, **headers})
        out.append((r.status_code, named(r.json()) if r.content else None))
        if url.startswith("postgresql"):
            assert _lock_free(url)

    ext = _post(c, admin, "networks", {"network": {"name": "public", "router:external": True}})["network"]["id"]
    _post(c, admin, "subnets", {"subnet": {"network_id": ext, "ip_version": 4, "cidr": "172.24.17.0/24",
                                           "enable_dhcp": False}})
    net = _post(c, demo, "networks", {"network": {"name": "demo's"}})["network"]["id"]
    sub = _post(c, demo, "subnets", {"subnet": {"network_id": net, "ip_version": 4,
                                                "cidr": "10.17.0.0/24"}})["subnet"]["id"]
    hidden = _post(c, admin, "networks", {"network": {"name": "admin's"}})["network"]["id"]
    _post(c, admin, "subnets", {"subnet": {"network_id": hidden, "ip_version": 4, "cidr": "10.17.1.0/24"}})
    router = _post(c, demo, "routers", {"router": {"name": "r"}})["router"]["id"]
    r = c.put(f"/v2.0/routers/{router}/add_router_interface", json={"subnet_id": sub}, headers=demo)
    assert r.status_code == 200, r.text
    rport = r.json()["port_id"]
    r = c.put(f"/v2.0/routers/{router}", json={"router": {"external_gateway_info": {"network_id": ext}}},
              headers=admin)
    assert r.status_code == 200, r.text
    a, b, fipped = (_post(c, demo, "ports", {"port": {"network_id": net, "name": n}})["port"] for n in "abf")
    theirs = _post(c, admin, "ports", {"port": {"network_id": net, "project_id": admin_project}})["port"]
    invisible = _post(c, admin, "ports", {"port": {"network_id": hidden}})["port"]
    fip = _post(c, demo, "floatingips", {"floatingip": {"floating_network_id": ext,
                                                         "port_id": fipped["id"]}})["floatingip"]
    step(demo, str(uuid.uuid4()))
    step(demo, invisible["id"])
    step(demo, invisible["id"], **{"If-Match": "revision_number=9"})
    step(demo, a["id"], **{"If-Match": "revision_number=9"})
    step(peek, a["id"])
    step(demo, rport)
    step(demo, a["id"], **{"If-Match": f"revision_number={a['revision_number']}"})
    step(demo, a["id"])
    step(demo, theirs["id"])  # on demo's network: its owner may
    step(demo, fipped["id"])
    step(peek, b["id"])
    step(demo, b["id"])
    out.append(named(c.get(f"/v2.0/floatingips/{fip['id']}", headers=demo).json()))
    left = c.get(f"/v2.0/ports?network_id={net}", headers=admin).json()["ports"]
    out.append(named(sorted(left, key=lambda p: str(p["device_owner"]))))
    return out


def test_answers_as_before(url: str, tmp_path: Path) -> None:
    got = next(iter(_sequence(c, url) for c, _db in _app(url, tmp_path)))
    statuses = [x[0] for x in got[:-2]]
    assert statuses == [404, 404, 404, 412, 403, 409, 204, 404, 204, 204, 403, 204], got
    assert got[0][1]["NeutronError"]["type"] == "PortNotFound"
    assert got[4][1]["NeutronError"]["type"] == "PolicyNotAuthorized"
    assert got[5][1]["NeutronError"]["type"] == "ServicePortInUse"
    assert got[-2]["floatingip"]["port_id"] is None
    assert [p["device_owner"] for p in got[-1]] == ["network:dhcp", "network:router_interface"]


@pytest.mark.postgres
def test_sqlite_and_postgres_answer_the_same(pg_cluster: PgCluster, tmp_path: Path) -> None:
    urls = [_url(pg_cluster, tmp_path), f"sqlite:///{tmp_path}/api17_same.db"]
    got = [next(iter(_sequence(c, u) for c, _db in _app(u, tmp_path))) for u in urls]
    assert got[0] == got[1]


@pytest.mark.postgres
def test_a_member_s_delete_is_two_round_trips(pg_cluster: PgCluster, tmp_path: Path) -> None:
    for c, db in _app(_url(pg_cluster, tmp_path), tmp_path):
        demo = app_headers(c, "demo", "demo")
        net = _post(c, demo, "networks", {"network": {"name": "n"}})["network"]["id"]
        _post(c, demo, "subnets", {"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.17.5.0/24"}})
        made = [_post(c, demo, "ports", {"port": {"network_id": net}})["port"]["id"] for _ in range(3)]
        with _traced(db) as sent:
            r = c.delete(f"/v2.0/ports/{made[1]}", headers=demo)
        assert r.status_code == 204, r.text
        assert _round_trips(sent) == 2, sent
        assert c.get(f"/v2.0/ports/{made[1]}", headers=demo).status_code == 404
        assert c.get(f"/v2.0/ports/{made[2]}", headers=demo).status_code == 200
