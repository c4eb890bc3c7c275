"""PostgreSQL's port delete in two round trips (api16): BEGIN and the writer lock go with the port's
head (``ports._port_head`` as the transaction's opening statement), COMMIT with the ``DELETE`` when the
caller says the transaction does nothing more (``last=True``: the API's delete) and nothing ran in
between (no floating IP, forwarding or router owner to look at, no ORM).

- A delete is two round trips, through the service layer and through the API (counted in libpq's
  trace: ``tests.api.test_api14_folds``); without ``last`` it keeps its transaction open.
- Each way a delete fails (no such port, another project's port, the revision number, a router's port,
  an exception in Python between the two round trips, an error inside the ``DELETE``'s query) rolls
  back whole: the port and its addresses still there, the writer lock free, and the next delete on
  the same connection two round trips again.
- A port with a floating IP or a port forwarding is deleted as before (not folded): the floating IP
  disassociated, the forwarding gone.
- The same sequence of deletes and failures through the API answers as SQLite does.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from neutrino.db import models
from neutrino.db.session import Database, raw
from neutrino.errors import Conflict, NotFound, PreconditionFailed
from neutrino.scenarios.model import default_scenario
from neutrino.services import networks, ports, routers
from neutrino.services.cloud import Cloud, prepare
from neutrino.services.core import Context
from tests.api import test_api14_folds as api14
from tests.api.api_helpers import PgCluster, app_headers
from tests.api.test_api14_folds import (
    _counts,
    _create,
    _lock_free,
    _network,
    _round_trips,
    _traced,
    _url,
)

cloud = api14.cloud  # its fixture: a service-layer cloud on a PostgreSQL database of its own

pytestmark = pytest.mark.postgres


def _delete(cloud: Cloud, ctx: Context, pid: str, revision: int | None = None) -> None:
    """A port deleted as the API's delete deletes it (the transaction ends with it)."""
    with cloud.write(ctx) as tx:
        ports.delete_port(tx, pid, revision, last=True)


def _exists(cloud: Cloud, pid: str) -> bool:
    with cloud.read(cloud.admin_context()) as tx:
        return tx.session.scalar(select(models.Port.id).where(models.Port.id == pid)) is not None


def test_a_delete_is_two_round_trips(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin)
    made = [_create(cloud, admin, {"network_id": net, "name": f"p{i}"}) for i in range(6)]
    _delete(cloud, admin, made[0]["id"])  # (its statements prepared on the connection)
    cloud.db.engine.dispose()  # one connection from here on
    with _traced(cloud.db) as sent:
        for p in made[1:]:
            _delete(cloud, admin, p["id"])
    assert _round_trips(sent) == 10, sent
    queries = [line for line in sent if "\tQuery\t" in line]
    assert all("BEGIN; SELECT pg_advisory_xact_lock" in q and "EXECUTE" in q for q in queries[0::2]), queries
    assert all(q.rstrip('"').endswith("; COMMIT") for q in queries[1::2]), queries
    assert not any(_exists(cloud, p["id"]) for p in made)
    assert _counts(cloud)[:3] == (1, 1, 1)  # the DHCP port only
    assert _lock_free(str(cloud.db.url))


def test_a_delete_not_said_to_be_last_keeps_its_transaction_open(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin)
    p = _create(cloud, admin, {"network_id": net})
    with cloud.write(admin) as tx:
        ports.delete_port(tx, p["id"])
        seen = raw(tx.session).scalar("SELECT count(*) FROM ports WHERE id = ?", (p["id"],))
    assert seen == 0
    assert not _exists(cloud, p["id"])
    assert _lock_free(str(cloud.db.url))


def test_the_api_delete_is_two_round_trips(pg_cluster: PgCluster, tmp_path: Path) -> None:
    with api14.api_on_a_network(pg_cluster, tmp_path, "10.16.1.0/24") as (c, h, net, db):
        made = [c.post("/v2.0/ports", json={"port": {"network_id": net}}, headers=h).json()["port"]
                for _ in range(3)]
        pids = [p["id"] for p in made]
        assert c.delete(f"/v2.0/ports/{pids[0]}", headers=h).status_code == 204
        with _traced(db) as sent:
            r = c.delete(f"/v2.0/ports/{pids[1]}", headers=h)
        assert r.status_code == 204, r.text
        assert _round_trips(sent) == 2, sent
        with _traced(db) as sent:  # with the revision number: the same
            r = c.delete(f"/v2.0/ports/{pids[2]}", headers={**h, "If-Match": f"revision_number={made[2]['revision_number']}"})
        assert r.status_code == 204, r.text
        assert _round_trips(sent) == 2, sent
        assert c.get(f"/v2.0/ports/{pids[1]}", headers=h).status_code == 404
        assert c.get(f"/v2.0/ports/{pids[2]}", headers=h).status_code == 404


def _router_port(cloud: Cloud, ctx: Context, sub: str) -> str:
    with cloud.write(ctx) as tx:
        r = routers.create_router(tx, prepare("router", {"name": "r16"}))
        got = routers.add_interface(tx, r["id"], {"subnet_id": sub})
    pid: str = got["port_id"]
    return pid


def _fail(cloud: Cloud, admin: Context, victim: str, router_port: str, failure: str,
          monkeypatch: pytest.MonkeyPatch) -> None:
    if failure == "no such port":
        with pytest.raises(NotFound):
            _delete(cloud, admin, str(uuid.uuid4()))
    elif failure == "another project's":
        with pytest.raises(NotFound):
            _delete(cloud, Context("demo", "demo", False, ("member",)), victim)
    elif failure == "revision number":
        with pytest.raises(PreconditionFailed):
            _delete(cloud, admin, victim, 7)
    elif failure == "router port":
        with pytest.raises(Conflict):
            _delete(cloud, admin, router_port)
    elif failure == "exception in Python":
        def boom(*_args: Any) -> None:
            raise RuntimeError("boom")
        monkeypatch.setattr(ports, "check_revision", boom)
        with pytest.raises(RuntimeError, match="boom"):
            _delete(cloud, admin, victim)
        monkeypatch.undo()
    elif failure == "error in the DELETE":
        monkeypatch.setattr(ports, "_DELETE", "DELETE FROM ports WHERE id = ? AND length(id) / 0 = 1")
        with pytest.raises(Exception, match="division by zero"):
            _delete(cloud, admin, victim)
        monkeypatch.undo()
    else:
        raise AssertionError(failure)


FAILURES = ("no such port", "another project's", "revision number", "router port", "exception in Python",
            "error in the DELETE")


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_delete_rolls_back_and_the_next_one_is_two_round_trips(
        cloud: Cloud, failure: str, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = cloud.admin_context()
    net, sub = _network(cloud, admin)
    router_port = _router_port(cloud, admin, sub)
    victim = _create(cloud, admin, {"network_id": net, "name": "victim"})
    made = [_create(cloud, admin, {"network_id": net}) for _ in range(3)]
    monkeypatch.setattr(cloud.db, "_keep_writer", False)  # each write checks its connection out (seen below)
    cloud.db._drop_writer()
    cloud.db.engine.dispose()
    drivers: set[int] = set()
    event.listen(cloud.db.engine, "checkout", lambda c, _r, _p: drivers.add(id(c)))
    _delete(cloud, admin, made[0]["id"])  # the connection has both statements prepared
    before = _counts(cloud)
    _fail(cloud, admin, victim["id"], router_port, failure, monkeypatch)
    monkeypatch.setattr(cloud.db, "_keep_writer", False)
    assert _counts(cloud) == before
    assert _exists(cloud, victim["id"]) and _exists(cloud, router_port)
    assert _lock_free(str(cloud.db.url))
    _delete(cloud, admin, made[1]["id"])
    with _traced(cloud.db) as sent:
        _delete(cloud, admin, made[2]["id"])
    assert _round_trips(sent) == 2, sent
    assert len(drivers) == 1  # every step on the one connection
    assert _counts(cloud)[:2] == (before[0] - 2, before[1] - 2)
    with cloud.read(admin) as tx:
        assert ports.get_port(tx, victim["id"]) == victim
    assert _lock_free(str(cloud.db.url))


def _sequence(c: Any) -> list[Any]:
    """Deletes through the API (admin) and what they leave: each answer's status and body, ids, MACs and
    timestamps named by their first appearance; floating IPs and port forwardings pointing at ports."""
    h = app_headers(c)
    named = api14.namer()

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = c.post(f"/v2.0/{path}", json=body, headers=h)
        assert r.status_code == 201, r.text
        return dict(r.json())

    out: list[Any] = []

    def step(method: str, path: str, **headers: str) -> None:
        r = c.request(method, f"/v2.0/{path}", headers={**h, **headers})
        out.append((method, r.status_code, named(r.json()) if r.content else None))

    ext = post("networks", {"network": {"name": "public", "router:external": True}})["network"]["id"]
    post("subnets", {"subnet": {"network_id": ext, "ip_version": 4, "cidr": "172.24.16.0/24", "enable_dhcp": False}})
    net = post("networks", {"network": {"name": "private"}})["network"]["id"]
    sub = post("subnets", {"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.16.0.0/24"}})["subnet"]["id"]
    router = post("routers", {"router": {"name": "r", "external_gateway_info": {"network_id": ext}}})["router"]["id"]
    r = c.put(f"/v2.0/routers/{router}/add_router_interface", json={"subnet_id": sub}, headers=h)
    assert r.status_code == 200, r.text
    rport = r.json()["port_id"]
    a, b, with_fip, with_pf, e = (post("ports", {"port": {"network_id": net, "name": n}})["port"]
                                  for n in ("a", "b", "fip", "pf", "e"))
    fip = post("floatingips", {"floatingip": {"floating_network_id": ext, "port_id": with_fip["id"]}})["floatingip"]
    pf_fip = post("floatingips", {"floatingip": {"floating_network_id": ext}})["floatingip"]
    post(f"floatingips/{pf_fip['id']}/port_forwardings", {"port_forwarding": {
        "internal_port_id": with_pf["id"], "internal_ip_address": with_pf["fixed_ips"][0]["ip_address"],
        "internal_port": 22, "external_port": 2222, "protocol": "tcp"}})
    step("DELETE", f"ports/{uuid.uuid4()}")
    step("DELETE", f"ports/{a['id']}", **{"If-Match": "revision_number=9"})
    step("DELETE", f"ports/{rport}")
    step("DELETE", f"ports/{with_fip['id']}")
    step("GET", f"floatingips/{fip['id']}")
    step("DELETE", f"ports/{with_pf['id']}")
    step("GET", f"floatingips/{pf_fip['id']}/port_forwardings")
    step("DELETE", f"ports/{a['id']}", **{"If-Match": f"revision_number={a['revision_number']}"})
    step("DELETE", f"ports/{a['id']}")
    step("DELETE", f"ports/{b['id']}")
    step("DELETE", f"ports/{e['id']}", **{"If-Match": "revision_number=x"})
    step("DELETE", f"ports/{e['id']}")
    step("GET", f"ports?network_id={net}")
    step("GET", f"routers/{router}")
    return out


def test_answers_are_sqlite_s(pg_cluster: PgCluster, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app

    got = []
    for url in (_url(pg_cluster, tmp_path), f"sqlite:///{tmp_path}/api16.db"):
        application, _ = make_app(url, None, "keystone", None)
        db: Database = application.state.cloud.db
        try:
            with TestClient(application) as c:
                got.append(_sequence(c))
            assert _lock_free(url) if url.startswith("postgresql") else True
        finally:
            db.dispose()
    assert got[0] == got[1]
    statuses = [s for _m, s, _b in got[0]]
    assert statuses == [404, 412, 409, 204, 200, 204, 200, 204, 404, 204, 400, 204, 200, 200], got[0]
    fip_after = got[0][4][2]["floatingip"]
    assert fip_after["port_id"] is None and fip_after["status"] == "DOWN"
    assert got[0][6][2] == {"port_forwardings": []}


def test_a_seeded_database_deletes_the_same(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """A cloud made with a seed (ids numbered by statements of their own) deletes in two round trips
    all the same: the head is still the transaction's first statement."""
    db = Database(_url(pg_cluster, tmp_path))
    try:
        cloud = Cloud(db, default_scenario(), seed="api16")
        admin = cloud.admin_context()
        net, _ = _network(cloud, admin)
        made = [_create(cloud, admin, {"network_id": net}) for _ in range(2)]
        _delete(cloud, admin, made[0]["id"])
        with _traced(db) as sent:
            _delete(cloud, admin, made[1]["id"])
        assert _round_trips(sent) == 2, sent
        with cloud.read(admin) as tx:
            assert [p["id"] for p in ports.list_ports(tx, {"network_id": [net]})] == \
                [p.id for p in tx.session.scalars(select(models.Port).where(models.Port.network_id == net))]
            assert networks.get_network(tx, net)["id"] == net
    finally:
        db.dispose()


def test_a_network_owner_s_delete_is_not_folded(cloud: Cloud) -> None:
    """The network's owner deleting another project's port on it: the network is read through the ORM
    between the head and the ``DELETE`` (``_network_owner_sees``), so COMMIT goes on its own; the port
    is gone all the same, and the next delete is folded again."""
    admin = cloud.admin_context()
    demo = Context("demo", "demo", False, ("member",))
    with cloud.write(demo) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "demo's"}))["id"]
        networks.create_subnet(tx, prepare("subnet", {"network_id": net, "ip_version": 4, "cidr": "10.16.9.0/24"}))
    theirs = [_create(cloud, admin, {"network_id": net, "project_id": "admin"}) for _ in range(3)]
    _delete(cloud, admin, theirs[0]["id"])
    with _traced(cloud.db) as sent:
        _delete(cloud, demo, theirs[1]["id"])
    queries = [line for line in sent if "\tQuery\t" in line]
    assert not any("; COMMIT" in q for q in queries), sent
    assert queries[-1].rstrip('"').endswith('"COMMIT'), sent
    assert _round_trips(sent) > 2
    assert not _exists(cloud, theirs[1]["id"])
    assert _lock_free(str(cloud.db.url))
    with _traced(cloud.db) as sent:
        _delete(cloud, admin, theirs[2]["id"])
    assert _round_trips(sent) == 2, sent
    assert not _exists(cloud, theirs[2]["id"])
