"""PostgreSQL's port create in two round trips (api14, ``neutrino.db.pg``): BEGIN and the writer lock
go with the network's statement, COMMIT with the insert.

- A create is two round trips (counted in libpq's own trace of the connection: each ``Query`` or
  ``Sync`` the client sends is one), through the service layer and through the API; a seeded cloud
  (whose ids are numbered by a statement before the network's) still works, in more.
- Each way a create fails (a network that does not exist, the quota, a MAC in use, an exception in
  Python between the two round trips, an error inside either simple query, the lock not granted)
  rolls back whole: no port, address or count left, the writer lock free for another connection,
  and the next create on the same connection succeeds in two round trips again. So does a create
  after psycopg deallocated every prepared statement of the connection (it does when it rolls back).
- Nothing can run in a transaction after its COMMIT went with the insert: a statement is refused.
- Two servers (two ``Database`` objects) creating on one network at once stay serialised: no
  address or MAC given twice.
- The same sequence of creates and failures gives the same answers and errors as on SQLite.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, func, select

from neutrino.db import models
from neutrino.db.pg import ADVISORY_KEY
from neutrino.db.session import Database, raw
from neutrino.errors import Conflict, NeutrinoError, NotFound
from neutrino.scenarios.model import default_scenario
from neutrino.services import networks, ports, quotas
from neutrino.services.cloud import Cloud, prepare
from neutrino.services.core import Context
from tests.api.api_helpers import PgCluster, app_headers, fresh_database

pytestmark = pytest.mark.postgres


def _url(pg: PgCluster, tmp: Path) -> str:
    return fresh_database(pg.url, f"api14_{uuid.uuid4().hex[:12]}", tmp)


@pytest.fixture
def cloud(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[Cloud]:
    db = Database(_url(pg_cluster, tmp_path))
    try:
        yield Cloud(db, default_scenario())
    finally:
        db.dispose()


@contextlib.contextmanager
def _traced(db: Database) -> Iterator[list[str]]:
    """libpq's trace of every connection checked out meanwhile (its client messages are flushed as
    they are sent); the lines the client sent, once the block ends. The kept writer (api15) is given
    back to the pool first and last, so that the block's writes check theirs out and in."""
    db._drop_writer()
    fd, path = tempfile.mkstemp(prefix="api14-trace-")
    sent: list[str] = []

    def out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.pgconn.trace(os.dup(fd))

    def back(dbapi_conn: Any, _record: Any) -> None:
        if dbapi_conn is not None:
            dbapi_conn.pgconn.untrace()

    event.listen(db.engine, "checkout", out)
    event.listen(db.engine, "checkin", back)
    try:
        yield sent
    finally:
        db._drop_writer()
        event.remove(db.engine, "checkout", out)
        event.remove(db.engine, "checkin", back)
        os.close(fd)
        sent.extend(line for line in Path(path).read_text().splitlines() if line.split("\t")[1:2] == ["F"])
        os.unlink(path)


def _round_trips(sent: list[str]) -> int:
    """Client messages that end a round trip: a simple query, or the Sync after extended-protocol ones."""
    return sum(1 for line in sent if line.split("\t")[3:4] in (["Query"], ["Sync"]))


def _network(cloud: Cloud, ctx: Context, cidr: str = "10.14.0.0/24") -> tuple[str, str]:
    with cloud.write(ctx) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "api14"}))
        sub = networks.create_subnet(tx, prepare("subnet", {"network_id": net["id"], "ip_version": 4,
                                                            "cidr": cidr}))
    return net["id"], sub["id"]


def _create(cloud: Cloud, ctx: Context, body: dict[str, Any], attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A port made as the API's single create makes it (the quota read with the network)."""
    attrs = prepare("port", body) if attrs is None else attrs
    with cloud.write(ctx) as tx:
        return ports.create_port(tx, attrs, quota_project=attrs.get("project_id", ctx.project_id), last=True)


def delete_or_create(cloud: Cloud, ctx: Context, rng: Any, made: list[str], out: list[Any], named: Callable[[Any], Any],
                     delete_chance: float, body: Callable[[], dict[str, Any]]) -> None:
    """One step of a random walk of creates and deletes (api17's, review16's): with ``delete_chance``
    one of the ports ``made`` is deleted, else a port is made from ``body()``; the outcome (the port
    or the error, named by ``named``) is appended to ``out``."""
    if made and rng.random() < delete_chance:
        pid = made.pop(rng.randrange(len(made)))
        with cloud.write(ctx) as tx:
            ports.delete_port(tx, pid, last=True)
        out.append(("deleted", named(pid)))
        return
    try:
        p = _create(cloud, ctx, body())
    except (NeutrinoError, ValueError) as e:
        out.append((type(e).__name__, getattr(e, "neutron_type", None), named(str(e))))
        return
    made.append(p["id"])
    out.append(named(p))


def _counts(cloud: Cloud) -> tuple[int, int, int, int]:
    """Ports, addresses, the admin project's kept port count and the creation sequence's counter."""
    with cloud.read(cloud.admin_context()) as tx:
        s = tx.session
        return (s.scalar(select(func.count()).select_from(models.Port)) or 0,
                s.scalar(select(func.count()).select_from(models.IPAllocation)) or 0,
                s.scalar(select(func.sum(models.PortUsage.ports))) or 0,
                s.scalar(select(models.Counter.value).where(models.Counter.name == "created_seq")) or 0)


def _lock_free(url: str) -> bool:
    """Whether another connection can take the writer lock now (and gives it back)."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        got = c.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()
        assert got is not None
        if got[0]:
            c.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
        return bool(got[0])


def test_a_create_is_two_round_trips(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, sub = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net})  # the first makes the DHCP port (more statements)
    cloud.db.engine.dispose()  # one connection from here on
    with _traced(cloud.db) as sent:
        made = [_create(cloud, admin, {"network_id": net, "name": f"p{i}"}) for i in range(5)]
    assert _round_trips(sent) == 10, sent
    queries = [line for line in sent if "\tQuery\t" in line]
    assert all("BEGIN; SELECT pg_advisory_xact_lock" in q for q in queries[0::2]), queries
    assert all(q.rstrip('"').endswith("; COMMIT") for q in queries[1::2]), queries
    with cloud.read(admin) as tx:
        for p in made:
            assert ports.get_port(tx, p["id"]) == p
    assert len({p["mac_address"] for p in made}) == 5
    assert [p["fixed_ips"][0]["subnet_id"] for p in made] == [sub] * 5
    assert _lock_free(str(cloud.db.url))


@contextlib.contextmanager
def api_on_a_network(pg_cluster: PgCluster, tmp_path: Path, cidr: str) -> Iterator[tuple[Any, dict[str, str], str, Database]]:
    """The API server's app on a fresh PostgreSQL database (Keystone tokens) with a network and a
    subnet of ``cidr``: a client, its headers, the network's id and the server's database."""
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app

    application, _ = make_app(_url(pg_cluster, tmp_path), None, "keystone", None)
    db = application.state.cloud.db
    try:
        with TestClient(application) as c:
            h = app_headers(c)
            net = c.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=h).json()["network"]
            c.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": cidr, "ip_version": 4}},
                   headers=h)
            yield c, h, net["id"], db
    finally:
        db.dispose()


def test_the_api_create_is_two_round_trips(pg_cluster: PgCluster, tmp_path: Path) -> None:
    with api_on_a_network(pg_cluster, tmp_path, "10.14.1.0/24") as (c, h, net, db):
        c.post("/v2.0/ports", json={"port": {"network_id": net}}, headers=h)
        with _traced(db) as sent:
            r = c.post("/v2.0/ports", json={"port": {"network_id": net, "name": "api"}}, headers=h)
        assert r.status_code == 201, r.text
        assert _round_trips(sent) == 2, sent
        got = c.get(f"/v2.0/ports/{r.json()['port']['id']}", headers=h).json()["port"]
        assert got == r.json()["port"]


def test_a_seeded_cloud_begins_before_its_first_numbering(pg_cluster: PgCluster, tmp_path: Path) -> None:
    db = Database(_url(pg_cluster, tmp_path))
    try:
        cloud = Cloud(db, default_scenario(), seed="api14")
        admin = cloud.admin_context()
        net, _ = _network(cloud, admin)
        _create(cloud, admin, {"network_id": net})
        with _traced(db) as sent:
            p = _create(cloud, admin, {"network_id": net})
        # BEGIN and the lock, then the MAC's and the id's numbers, the network, the insert, COMMIT
        assert _round_trips(sent) > 2
        assert "BEGIN; SELECT pg_advisory_xact_lock" in [x for x in sent if "\tQuery\t" in x][0]
        with cloud.read(admin) as tx:
            assert ports.get_port(tx, p["id"]) == p
    finally:
        db.dispose()


FIRSTS: dict[str, Callable[[Any], Any]] = {
    "an ORM read": lambda tx: tx.session.get(models.Network, str(uuid.uuid4())),
    "a Core statement": lambda tx: tx.session.connection().execute(select(func.count()).select_from(models.Port)),
    "a Raw statement": lambda tx: raw(tx.session).scalar("SELECT count(*) FROM ports"),
    "the driver": lambda tx: tx.session.connection().connection.driver_connection.execute("SELECT 1"),
    "the ORM's flush": lambda tx: quotas.update(tx, tx.ctx.project_id, {"network": 50}),
}


@pytest.mark.parametrize("first", list(FIRSTS))
def test_any_first_statement_goes_after_begin_and_the_lock(cloud: Cloud, first: str) -> None:
    admin = cloud.admin_context()
    url = str(cloud.db.url)
    with _traced(cloud.db) as kept, cloud.write(admin) as tx:
        assert _lock_free(url)  # begun: nothing sent yet
        FIRSTS[first](tx)
        assert not _lock_free(url)  # BEGIN and the lock went first
    assert _lock_free(url)
    with _traced(cloud.db) as dropped, pytest.raises(RuntimeError), cloud.write(admin) as tx:
        FIRSTS[first](tx)
        raise RuntimeError("rolled back")
    begin = f'"BEGIN; SELECT pg_advisory_xact_lock({ADVISORY_KEY})"'
    for sent, end in ((kept, "COMMIT"), (dropped, "ROLLBACK")):
        messages = [line.split("\t")[3:5] for line in sent]
        assert messages[0] == ["Query", " " + begin], sent
        assert ["Query", f' "{end}"'] in messages, sent
    assert _lock_free(url)


def _fail_missing_network(cloud: Cloud, ctx: Context, net: str, mac: str,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotFound, match="Network .* could not be found"):
        _create(cloud, ctx, {"network_id": str(uuid.uuid4())})


def _fail_quota(cloud: Cloud, ctx: Context, net: str, mac: str, monkeypatch: pytest.MonkeyPatch) -> None:
    used = _counts(cloud)[2]
    with cloud.write(ctx) as tx:
        quotas.update(tx, ctx.project_id, {"port": used})
    try:
        with pytest.raises(Conflict, match=r"Quota exceeded for resources: \['port'\]"):
            _create(cloud, ctx, {"network_id": net})
    finally:
        with cloud.write(ctx) as tx:
            quotas.update(tx, ctx.project_id, {"port": -1})


def _fail_mac(cloud: Cloud, ctx: Context, net: str, mac: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Conflict, match="The mac address .* is in use"):
        _create(cloud, ctx, {"network_id": net, "mac_address": mac})


def _fail_in_python(cloud: Cloud, ctx: Context, net: str, mac: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any) -> Any:
        raise RuntimeError("boom between the round trips")
    with monkeypatch.context() as m:
        m.setattr(ports, "_binding", boom)
        with pytest.raises(RuntimeError, match="boom"):
            _create(cloud, ctx, {"network_id": net})


def _fail_in_the_insert(cloud: Cloud, ctx: Context, net: str, mac: str, monkeypatch: pytest.MonkeyPatch) -> None:
    attrs = prepare("port", {"network_id": net})
    attrs["device_id"] = "d" * 300  # past the column's 255: refused by the server, inside the insert's query
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        _create(cloud, ctx, {}, attrs)


def _fail_in_the_opening(cloud: Cloud, ctx: Context, net: str, mac: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = str(cloud.db.url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_KEY,))
        with cloud.db.engine.connect() as c:  # the next create's connection: it waits 0.2 s at most
            c.connection.driver_connection.execute("SET lock_timeout = '200ms'")  # type: ignore[union-attr]
        try:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                _create(cloud, ctx, {"network_id": net})
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
    with cloud.db.engine.connect() as c:
        c.connection.driver_connection.execute("RESET lock_timeout")  # type: ignore[union-attr]


def _fail_after_statements(cloud: Cloud, ctx: Context, net: str, mac: str,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that ran a (psycopg-prepared) statement and failed: psycopg rolls back and deallocates
    every prepared statement of the connection, this module's too."""
    with pytest.raises(RuntimeError, match="after a statement"), cloud.write(ctx) as tx:
        assert raw(tx.session).scalar("SELECT count(*) FROM ports") >= 1
        raise RuntimeError("after a statement")
    with cloud.db.engine.connect() as c:  # (outside a transaction)
        left = c.connection.driver_connection.execute(  # type: ignore[union-attr]
            "SELECT name FROM pg_prepared_statements WHERE name LIKE 'neutrino%'").fetchall()
    assert left == []  # the next create finds its statement gone


FAILURES: dict[str, Callable[[Cloud, Context, str, str, pytest.MonkeyPatch], None]] = {
    "missing network": _fail_missing_network, "quota": _fail_quota, "mac in use": _fail_mac,
    "python between the round trips": _fail_in_python, "error in the insert's query": _fail_in_the_insert,
    "lock not granted in the opening query": _fail_in_the_opening,
    "statements deallocated": _fail_after_statements,
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_create_rolls_back_and_the_next_one_succeeds(cloud: Cloud, failure: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin)
    first = _create(cloud, admin, {"network_id": net})
    _create(cloud, admin, {"network_id": net})
    monkeypatch.setattr(cloud.db, "_keep_writer", False)  # each write checks its connection out (seen below)
    cloud.db._drop_writer()
    cloud.db.engine.dispose()
    drivers: set[int] = set()
    event.listen(cloud.db.engine, "checkout", lambda c, _r, _p: drivers.add(id(c)))
    _create(cloud, admin, {"network_id": net})  # the connection has both statements prepared
    before = _counts(cloud)
    FAILURES[failure](cloud, admin, net, first["mac_address"], monkeypatch)
    assert _counts(cloud) == before
    assert _lock_free(str(cloud.db.url))
    again = _create(cloud, admin, {"network_id": net, "name": "again"})
    with _traced(cloud.db) as sent:
        last = _create(cloud, admin, {"network_id": net, "name": "last"})
    assert _round_trips(sent) == 2, sent
    assert len(drivers) == 1  # every step on the one connection
    assert _counts(cloud)[:3] == (before[0] + 2, before[1] + 2, before[2] + 2)
    with cloud.read(admin) as tx:
        assert ports.get_port(tx, again["id"]) == again
        assert ports.get_port(tx, last["id"]) == last
        taken = [p["fixed_ips"][0]["ip_address"] for p in ports.list_ports(tx, {"network_id": [net]})]
    assert len(taken) == len(set(taken))
    assert _lock_free(str(cloud.db.url))


def test_nothing_runs_after_the_commit_went_with_the_insert(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net})
    attrs = prepare("port", {"network_id": net})
    with pytest.raises(psycopg.ProgrammingError, match="after the write transaction was committed"), \
            cloud.write(admin) as tx:
        p = ports.create_port(tx, attrs, quota_project=admin.project_id, last=True)
        raw(tx.session).scalar("SELECT count(*) FROM ports")
    with cloud.read(admin) as tx:  # committed with the insert: the statement after it never ran
        assert ports.get_port(tx, p["id"]) == p
    assert _lock_free(str(cloud.db.url))
    _create(cloud, admin, {"network_id": net})


def test_a_create_not_said_to_be_last_keeps_its_transaction_open(cloud: Cloud) -> None:
    """Without ``last`` (the quota read with the network all the same) nothing commits with the
    insert: a statement after it runs in the transaction and sees the port."""
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net})
    attrs = prepare("port", {"network_id": net})
    with cloud.write(admin) as tx:
        p = ports.create_port(tx, attrs, quota_project=admin.project_id)
        seen = raw(tx.session).scalar("SELECT count(*) FROM ports WHERE id = ?", (p["id"],))
    assert seen == 1
    with cloud.read(admin) as tx:
        assert ports.get_port(tx, p["id"]) == p
    assert _lock_free(str(cloud.db.url))


def test_two_servers_creating_at_once_stay_serialised(pg_cluster: PgCluster, tmp_path: Path) -> None:
    url = _url(pg_cluster, tmp_path)
    dbs = [Database(url), Database(url, migrate=False)]
    try:
        clouds = [Cloud(db, default_scenario()) for db in dbs]
        admin = clouds[0].admin_context()
        net, _ = _network(clouds[0], admin, "10.14.2.0/24")
        _create(clouds[0], admin, {"network_id": net})
        made: list[dict[str, Any]] = []
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def run(c: Cloud) -> None:
            try:
                start.wait(10)
                for _ in range(25):
                    made.append(_create(c, admin, {"network_id": net}))
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(c,)) for c in clouds]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert len(made) == 50
        assert len({p["fixed_ips"][0]["ip_address"] for p in made}) == 50
        assert len({p["mac_address"] for p in made}) == 50
        with clouds[1].read(admin) as tx:
            listed = ports.list_ports(tx, {"network_id": [net]})
        assert len(listed) == 52  # the DHCP port and the first
        assert len({p["fixed_ips"][0]["ip_address"] for p in listed}) == 52
        assert _lock_free(url)
    finally:
        for db in dbs:
            db.dispose()


_RANDOM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|fa:16:3e(?::[0-9a-f]{2}){3}")


def namer() -> Callable[[Any], Any]:
    """A function giving an answer with its ids, MACs and timestamps named by their first appearance
    (they are random): two sequences' answers compare."""
    names: dict[str, str] = {}

    def named(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ("<time>" if k in ("created_at", "updated_at") else named(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [named(v) for v in value]
        if isinstance(value, str):
            return _RANDOM.sub(lambda m: names.setdefault(m.group(0), f"<{len(names)}>"), value)
        return value

    return named


def _sequence(cloud: Cloud) -> list[Any]:
    """Creates and failures on a new network; each answer with ids, MACs and timestamps named by
    their first appearance (they are random), or the error's type and message."""
    admin = cloud.admin_context()
    net, sub = _network(cloud, admin)
    named = namer()

    out: list[Any] = []

    def step(body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            p = _create(cloud, admin, {"network_id": net, **body})
        except (NotFound, Conflict) as e:
            out.append((type(e).__name__, e.neutron_type, named(str(e))))
            return None
        out.append(named(p))
        return p

    first = step({"name": "first"})
    assert first is not None
    step({"name": "second", "description": "d", "admin_state_up": False, "device_id": "dev", "binding:host_id": ""})
    step({"fixed_ips": [{"subnet_id": sub, "ip_address": "10.14.0.50"}]})
    step({"fixed_ips": [{"subnet_id": sub, "ip_address": "10.14.0.50"}]})  # in use
    step({"mac_address": first["mac_address"]})  # in use
    step({"mac_address": "fa:16:3e:14:14:14", "port_security_enabled": False})
    step({"allowed_address_pairs": [{"ip_address": "10.14.0.200"}]})
    step({"network_id": str(uuid.uuid4())})
    used = _counts(cloud)[2]
    with cloud.write(admin) as tx:
        quotas.update(tx, admin.project_id, {"port": used})
    step({"name": "over"})
    with cloud.write(admin) as tx:
        quotas.update(tx, admin.project_id, {"port": -1})
    for i in range(5):
        step({"name": f"more{i}"})
    with cloud.read(admin) as tx:
        out.append(named(ports.list_ports(tx, {"network_id": [net]})))
    return out


def test_answers_are_sqlite_s(cloud: Cloud, tmp_path: Path) -> None:
    lite = Database(f"sqlite:///{tmp_path}/api14.db")
    try:
        assert _sequence(cloud) == _sequence(Cloud(lite, default_scenario()))
    finally:
        lite.dispose()
