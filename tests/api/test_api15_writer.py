"""PostgreSQL's kept writer connection (api15, ``Database._keep_writer``): the writes, serialised by
``Database._lock`` anyway, go to one connection kept checked out, as SQLite's have since api9.

- The kept connection serves write after write (one backend), and a create is still BEGIN and the
  lock with the network's statement, COMMIT with the insert.
- An error in a write (in Python, or from the server) rolls it back whole: nothing left, the lock
  free, and the next write goes through.
- A kept connection killed from the server side (``pg_terminate_backend``) is replaced: found dead by
  the ping after ``PING_AFTER`` seconds idle (the next write succeeds, one row, no duplicate), or by
  the write that uses it (that write fails whole; the next succeeds on a new connection).
- A nested write takes a connection of its own; two threads' read-modify-writes lose no update; a
  read during a write is on another connection, REPEATABLE READ, and does not see the write;
  ``Database.dispose()`` closes the kept connection; ``before_cursor_execute`` listeners still see
  the writes' statements.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import event, exc

from neutrino.db import session as db_session
from neutrino.db.session import Database, raw
from neutrino.services.cloud import Cloud
from tests.api.test_api14_folds import _counts, _create, _lock_free, _network, cloud  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres

_INSERT = "INSERT INTO neutrino_markers (name, value) VALUES (?, ?)"


def _pid(db: Database) -> int:
    """The backend serving a write transaction (its first statement: BEGIN and the lock go with it)."""
    with db.write() as s:
        return int(raw(s).scalar("SELECT pg_backend_pid()"))


def _markers(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {str(n): int(v) for n, v in raw(s).all("SELECT name, value FROM neutrino_markers "
                                                      "WHERE name LIKE ?", ("a15-%",))}


def _plain(db: Database) -> str:
    return str(db.url).replace("postgresql+psycopg://", "postgresql://")


def _backends(db: Database) -> set[int]:
    """The backends connected to the database, other than the asking one."""
    with psycopg.connect(_plain(db), autocommit=True) as c:
        return {int(r[0]) for r in c.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                             "AND pid <> pg_backend_pid()")}


def _wait(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.01)


def _kill(db: Database, pid: int) -> None:
    with psycopg.connect(_plain(db), autocommit=True) as c:
        got = c.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        assert got == (True,)
    _wait(lambda: pid not in _backends(db), "the killed backend to go")


def test_the_kept_connection_serves_write_after_write(cloud: Cloud) -> None:  # noqa: F811
    db, admin = cloud.db, cloud.admin_context()
    assert db._keep_writer
    net, _ = _network(cloud, admin)
    pids = set()
    for i in range(3):
        _create(cloud, admin, {"network_id": net, "name": f"k{i}"})
        pids.add(_pid(db))
        with db.write():  # an empty write: nothing sent
            pass
        assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # the kept writer only
    assert len(pids) == 1
    assert db._writer is not None and not db._writer.closed
    assert _counts(cloud)[:3] == (4, 4, 4)  # (the first create made the network's DHCP port)
    assert _lock_free(str(db.url))


def test_an_error_rolls_back_and_the_next_write_goes_through(cloud: Cloud) -> None:  # noqa: F811
    db = cloud.db
    with pytest.raises(KeyError), db.write() as s:
        raw(s).execute(_INSERT, ("a15-python", 1))
        raise KeyError("body")
    assert _lock_free(str(db.url))
    with db.write() as s:
        raw(s).execute(_INSERT, ("a15-dup", 1))
    with pytest.raises(psycopg.errors.UniqueViolation), db.write() as s:
        raw(s).execute(_INSERT, ("a15-before-dup", 1))
        raw(s).execute(_INSERT, ("a15-dup", 2))
    assert _lock_free(str(db.url))
    assert db._writing == 0
    with db.write() as s:
        raw(s).execute(_INSERT, ("a15-after", 1))
    assert _markers(db) == {"a15-dup": 1, "a15-after": 1}
    assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    assert _lock_free(str(db.url))


def test_a_killed_connection_is_found_by_the_ping_and_replaced(cloud: Cloud,  # noqa: F811
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    db, admin = cloud.db, cloud.admin_context()
    net, _ = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net})
    before = _counts(cloud)
    pid = _pid(db)
    _kill(db, pid)
    monkeypatch.setattr(db_session, "PING_AFTER", 0.0)  # (as if idle for longer than PING_AFTER)
    made = _create(cloud, admin, {"network_id": net, "name": "after the kill"})
    assert _counts(cloud)[:3] == (before[0] + 1, before[1] + 1, before[2] + 1)  # one port, no duplicate
    assert _pid(db) != pid
    with cloud.read(admin) as tx:
        from neutrino.services import ports
        assert ports.get_port(tx, made["id"]) == made
        assert [p["name"] for p in ports.list_ports(tx, {"network_id": [net]})].count("after the kill") == 1
    assert _lock_free(str(db.url))


def test_a_killed_connection_fails_the_write_using_it_and_is_replaced(cloud: Cloud,  # noqa: F811
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db, admin = cloud.db, cloud.admin_context()
    net, _ = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net})
    monkeypatch.setattr(db_session, "PING_AFTER", 3600.0)  # no ping: the write finds it dead
    before = _counts(cloud)
    pid = _pid(db)
    _kill(db, pid)
    with pytest.raises((psycopg.OperationalError, exc.DBAPIError)):
        _create(cloud, admin, {"network_id": net, "name": "lost"})
    assert db._writer is None and db._writing == 0
    made = _create(cloud, admin, {"network_id": net, "name": "next"})
    assert _counts(cloud)[:3] == (before[0] + 1, before[1] + 1, before[2] + 1)
    with cloud.read(admin) as tx:
        from neutrino.services import ports
        assert [p["name"] for p in ports.list_ports(tx, {"network_id": [net]})].count("lost") == 0
        assert ports.get_port(tx, made["id"]) == made
    assert _pid(db) != pid
    assert _lock_free(str(db.url))


def test_a_nested_write_takes_a_connection_of_its_own(cloud: Cloud) -> None:  # noqa: F811
    db = cloud.db
    kept = _pid(db)
    with db.write() as outer:  # nothing sent yet: the lock not taken, the inner write can take it
        with db.write() as inner:
            inner_pid = int(raw(inner).scalar("SELECT pg_backend_pid()"))
            raw(inner).execute(_INSERT, ("a15-inner", 1))
        assert _markers(db) == {"a15-inner": 1}  # committed on its own
        assert int(raw(outer).scalar("SELECT pg_backend_pid()")) == kept
        raw(outer).execute(_INSERT, ("a15-outer", 1))
    assert inner_pid != kept
    assert _markers(db) == {"a15-inner": 1, "a15-outer": 1}
    assert _pid(db) == kept
    assert _lock_free(str(db.url))


def test_two_threads_read_modify_write_without_losing_an_update(cloud: Cloud) -> None:  # noqa: F811
    db = cloud.db
    with db.write() as s:
        raw(s).execute(_INSERT, ("a15-counter", 0))
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(40):
                with db.write() as s:
                    r = raw(s)
                    v = int(r.scalar("SELECT value FROM neutrino_markers WHERE name = 'a15-counter'"))
                    r.execute("UPDATE neutrino_markers SET value = ? WHERE name = 'a15-counter'", (v + 1,))
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=bump) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert _markers(db) == {"a15-counter": 80}
    assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]


def test_a_read_during_a_write_is_on_its_own_repeatable_read_connection(cloud: Cloud) -> None:  # noqa: F811
    db = cloud.db
    with db.write() as s:
        writer = int(raw(s).scalar("SELECT pg_backend_pid()"))
        raw(s).execute(_INSERT, ("a15-unseen", 1))
        with db.read() as r:
            assert int(raw(r).scalar("SELECT pg_backend_pid()")) != writer
            assert raw(r).scalar("SHOW transaction_isolation") == "repeatable read"
            assert raw(r).scalar("SELECT count(*) FROM neutrino_markers WHERE name = 'a15-unseen'") == 0
    assert _markers(db) == {"a15-unseen": 1}


def test_dispose_closes_the_kept_connection(cloud: Cloud) -> None:  # noqa: F811
    db = cloud.db
    pid = _pid(db)
    assert pid in _backends(db)
    db.dispose()
    assert db._writer is None
    _wait(lambda: pid not in _backends(db), "the kept writer's backend to go")
    with db.write() as s:  # usable again: a new connection
        raw(s).execute(_INSERT, ("a15-after-dispose", 1))
    assert _markers(db) == {"a15-after-dispose": 1}
    assert _pid(db) != pid


def test_statement_listeners_still_see_the_writes(cloud: Cloud) -> None:  # noqa: F811
    db, admin = cloud.db, cloud.admin_context()
    net, _ = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net})
    seen: list[str] = []

    def listen(_conn: object, _cur: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    pid = _pid(db)
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        _create(cloud, admin, {"network_id": net, "name": "seen"})
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert any(s.startswith("INSERT INTO ports") or "INSERT INTO ports" in s for s in seen), seen
    assert _pid(db) == pid  # on the kept writer
    seen.clear()
    _create(cloud, admin, {"network_id": net, "name": "unseen"})
    assert seen == []
