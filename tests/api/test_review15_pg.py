"""Review 15 (issue #17): PostgreSQL's folded create (api14) and kept writer (api15) against what a
fresh connection reads. Sequences: a failed create (MAC in use, a missing network) followed on the
same kept connection by a write whose first statement is an ORM flush, one whose first is a Core
statement, one through ``Raw``, and a create; the connection killed between the create's two
round trips (by a statement listener seeing the insert); two ``Database`` objects creating on one
network from two threads; ``dispose()`` then reuse. Oracle: a fresh psycopg connection's rows,
``pg_locks`` (no advisory lock left), the next write succeeding.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, exc, text

from neutrino.db.pg import ADVISORY_KEY
from neutrino.db.session import Database, raw
from neutrino.errors import Conflict, NotFound
from neutrino.scenarios.model import default_scenario
from neutrino.services import networks
from neutrino.services.cloud import Cloud, prepare
from tests.api.test_api14_folds import _counts, _create, _network, _round_trips, _traced, cloud  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres


def _plain(db: Database) -> str:
    return str(db.url).replace("postgresql+psycopg://", "postgresql://")


def _fresh(db: Database, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(_plain(db), autocommit=True) as c:
        cur = c.execute(sql, params)
        return list(cur.fetchall()) if cur.description is not None else []


def _advisory_held(db: Database) -> int:
    return int(_fresh(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
                      (ADVISORY_KEY & 0xFFFFFFFF,))[0][0])


def _port_names(db: Database) -> set[str]:
    return {str(r[0]) for r in _fresh(db, "SELECT name FROM ports WHERE name LIKE %s", ("r15-%",))}


def test_a_failed_create_then_every_kind_of_write_on_the_kept_connection(cloud: Cloud) -> None:  # noqa: F811
    admin = cloud.admin_context()
    net, _sub = _network(cloud, admin)
    first = _create(cloud, admin, {"network_id": net, "name": "r15-a"})
    # (a name the server refuses: the insert that goes with COMMIT fails, after the network's statement)
    _fresh(cloud.db, "ALTER TABLE ports ADD CONSTRAINT r15_boom CHECK (name NOT LIKE 'r15-boom%%')")
    kinds = ["orm", "core", "raw", "create"]
    for i, kind in enumerate(kinds * 3):
        failure = i % 3
        with pytest.raises((Conflict, NotFound, psycopg.errors.CheckViolation)) as got:
            if failure == 0:
                _create(cloud, admin, {"network_id": net, "name": f"r15-bad{i}", "mac_address": first["mac_address"]})
            elif failure == 1:
                _create(cloud, admin, {"network_id": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "name": f"r15-bad{i}"})
            else:
                _create(cloud, admin, {"network_id": net, "name": f"r15-boom{i}"})
        assert got.type is (Conflict, NotFound, psycopg.errors.CheckViolation)[failure]
        assert _advisory_held(cloud.db) == 0
        if kind == "orm":
            with cloud.write(admin) as tx:
                networks.create_network(tx, prepare("network", {"name": f"r15-n{i}"}))
            assert _fresh(cloud.db, "SELECT count(*) FROM networks WHERE name = %s", (f"r15-n{i}",)) == [(1,)]
        elif kind == "core":
            with cloud.db.write() as s:
                s.execute(text("INSERT INTO neutrino_markers (name, value) VALUES (:n, 1)"), {"n": f"r15-m{i}"})
            assert _fresh(cloud.db, "SELECT count(*) FROM neutrino_markers WHERE name = %s", (f"r15-m{i}",)) == [(1,)]
        elif kind == "raw":
            with cloud.db.write() as s:
                raw(s).execute("INSERT INTO neutrino_markers (name, value) VALUES (?, 2)", (f"r15-r{i}",))
                assert _advisory_held(cloud.db) == 1  # (the oracle can see a held lock)
            assert _fresh(cloud.db, "SELECT count(*) FROM neutrino_markers WHERE name = %s", (f"r15-r{i}",)) == [(1,)]
        else:
            _create(cloud, admin, {"network_id": net, "name": f"r15-c{i}"})
        assert _advisory_held(cloud.db) == 0
    assert _port_names(cloud.db) == {"r15-a", "r15-c3", "r15-c7", "r15-c11"}
    ports_n, ips_n, _usage, _seq = _counts(cloud)
    assert (ports_n, ips_n) == (_fresh(cloud.db, "SELECT count(*) FROM ports")[0][0],
                                _fresh(cloud.db, "SELECT count(*) FROM ipallocations")[0][0])


def test_the_connection_killed_between_the_two_round_trips(cloud: Cloud) -> None:  # noqa: F811
    admin = cloud.admin_context()
    net, _sub = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net, "name": "r15-a"})
    killed: list[int] = []

    def kill(conn: Any, cursor: Any, statement: str, *_a: Any) -> None:
        if not killed and statement.lstrip().upper().startswith(("INSERT", "WITH")) and "ports" in statement:
            pid = cursor.connection.info.backend_pid
            killed.append(pid)
            _fresh(cloud.db, "SELECT pg_terminate_backend(%s)", (pid,))

    event.listen(cloud.db.engine, "before_cursor_execute", kill)
    try:
        with pytest.raises((psycopg.OperationalError, exc.OperationalError)):
            _create(cloud, admin, {"network_id": net, "name": "r15-killed"})
    finally:
        event.remove(cloud.db.engine, "before_cursor_execute", kill)
    assert killed
    assert "r15-killed" not in _port_names(cloud.db)
    _create(cloud, admin, {"network_id": net, "name": "r15-after"})
    assert _port_names(cloud.db) == {"r15-a", "r15-after"}
    assert _advisory_held(cloud.db) == 0


def test_two_databases_creating_at_once_stay_serialised(cloud: Cloud) -> None:  # noqa: F811
    admin = cloud.admin_context()
    net, _sub = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net, "name": "r15-a"})
    other_db = Database(cloud.db.url)
    other = Cloud(other_db, default_scenario())
    errors: list[BaseException] = []
    go = threading.Barrier(2, timeout=30)

    def run(c: Cloud, tag: str) -> None:
        try:
            go.wait()
            for i in range(15):
                _create(c, c.admin_context(), {"network_id": net, "name": f"r15-{tag}{i}"})
                if i % 5 == 4:
                    with c.write(c.admin_context()) as tx:
                        networks.create_network(tx, prepare("network", {"name": f"r15-{tag}n{i}"}))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=run, args=(c, t)) for c, t in ((cloud, "x"), (other, "y"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        rows = _fresh(cloud.db, "SELECT p.mac_address, a.ip_address FROM ports p JOIN ipallocations a "
                                "ON a.port_id = p.id WHERE p.network_id = %s", (net,))
        assert len(rows) == 32  # 31 ports + the DHCP port
        assert len({r[0] for r in rows}) == len(rows) and len({r[1] for r in rows}) == len(rows)
        assert _advisory_held(cloud.db) == 0
    finally:
        other_db.dispose()


def test_dispose_then_reuse(cloud: Cloud) -> None:  # noqa: F811
    admin = cloud.admin_context()
    net, _sub = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net, "name": "r15-a"})
    cloud.db.dispose()
    _create(cloud, admin, {"network_id": net, "name": "r15-b"})
    cloud.db.dispose()
    with cloud.write(admin) as tx:
        networks.create_network(tx, prepare("network", {"name": "r15-n"}))
    _create(cloud, admin, {"network_id": net, "name": "r15-c"})
    assert _port_names(cloud.db) == {"r15-a", "r15-b", "r15-c"}
    assert _advisory_held(cloud.db) == 0


def test_an_error_after_create_port_returns(cloud: Cloud, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """``create_port(..., last=True)`` commits with its insert on PostgreSQL: the caller's word that
    the write does nothing more. A write that fails after it anyway (``neutron.py``, the only caller,
    runs nothing after it; an asynchronous exception could) cannot take the port back: the error
    goes on up, and the rollback that undoes nothing says so in the log. (SQLite rolls it back.)"""
    from neutrino.services import ports
    admin = cloud.admin_context()
    net, _sub = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net, "name": "r15-a"})
    attrs = prepare("port", {"network_id": net, "name": "r15-late"})
    with caplog.at_level("ERROR", logger="neutrino.db.pg"), pytest.raises(RuntimeError), cloud.write(admin) as tx:
        ports.create_port(tx, attrs, quota_project=admin.project_id, last=True)
        raise RuntimeError("after the create")
    assert "r15-late" in _port_names(cloud.db)
    assert any("committed with its last statement" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("ERROR", logger="neutrino.db.pg"), pytest.raises(RuntimeError), cloud.write(admin) as tx:
        ports.create_port(tx, prepare("port", {"network_id": net, "name": "r15-kept"}), quota_project=admin.project_id)
        raise RuntimeError("after a create not said to be last")
    assert "r15-kept" not in _port_names(cloud.db)  # rolled back, and nothing to say
    assert not caplog.records
    _create(cloud, admin, {"network_id": net, "name": "r15-next"})
    assert "r15-next" in _port_names(cloud.db)


def test_a_folded_create_writes_awkward_values_as_given(cloud: Cloud) -> None:  # noqa: F811
    """Values written as literals in the folded create's simple query (``pg.closing``) read back as
    given: quotes, backslashes, percent and question marks, non-ASCII text, JSON, address pairs."""
    admin = cloud.admin_context()
    net, _sub = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net, "name": "r15-a"})  # (the DHCP port: the next ones fold)
    names = ["r15-it's", "r15-back\\slash\\\\", "r15-100% ?$1 %s", "r15-ünïcødé ☃", "r15-E'x'", "r15-$$x$$"]
    made = []
    for name in names:
        body: dict[str, Any] = {"network_id": net, "name": name, "description": name[::-1],
                                "binding:profile": {"k'\\": [name, 1, None, True]}}
        with _traced(cloud.db) as sent:
            made.append(_create(cloud, admin, body))
        assert _round_trips(sent) == 2, sent  # (folded: BEGIN with the network's, COMMIT with the insert)
    rows = _fresh(cloud.db, "SELECT name, description FROM ports WHERE name LIKE %s ORDER BY created_at",
                  ("r15-%",))
    assert [r[0] for r in rows] == ["r15-a", *names]
    assert [r[1] for r in rows[1:]] == [n[::-1] for n in names]
    with cloud.read(admin) as tx:
        from neutrino.services import ports
        for m, name in zip(made, names, strict=True):
            got = ports.get_port(tx, m["id"])
            assert got["name"] == name and got["binding:profile"] == {"k'\\": [name, 1, None, True]}
            assert got == m
