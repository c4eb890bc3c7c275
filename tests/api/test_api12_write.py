"""The kept SQLite writer's transaction as one object (``db.session._Write``): its ``Raw`` kept while
what it depends on stays the same, the lock and the counters given back on every way out; and new
SQLite databases' WAL checkpoint length."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from neutrino.db import models
from neutrino.db.session import SQLITE_WAL_AUTOCHECKPOINT, Database, raw


def _markers(db: Database) -> set[str]:
    with db.read() as s:
        return {str(n) for n in s.scalars(text("SELECT name FROM neutrino_markers WHERE name LIKE 'api12-%'"))}


def _write_from_another_thread(db: Database, name: str) -> bool:
    """Whether a write from another thread gets through within 10 s (the lock was given back)."""
    done = threading.Event()

    def run() -> None:
        with db.write() as s:
            raw(s).execute("INSERT INTO neutrino_markers (name, value) VALUES (?, 1)", (name,))
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    return done.is_set()


def test_the_wal_checkpoints_at_the_set_length(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/c.db")
    try:
        with db.write() as s:
            assert raw(s).scalar("PRAGMA wal_autocheckpoint") == SQLITE_WAL_AUTOCHECKPOINT == 4000
        with db.read() as s:
            assert s.scalar(text("PRAGMA wal_autocheckpoint")) == SQLITE_WAL_AUTOCHECKPOINT
            assert s.scalar(text("PRAGMA journal_mode")) == "wal"
    finally:
        db.dispose()


def test_the_kept_raw_follows_the_connection_and_its_listeners(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/c.db")
    try:
        made = []
        for _ in range(3):
            with db.write() as s:
                made.append(raw(s))
        assert made[0] is made[1] is made[2]  # one Raw for the kept connection's transactions
        seen: list[str] = []

        def count(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
            seen.append(statement)

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            with db.write() as s:
                listened = raw(s)
                listened.execute("INSERT INTO neutrino_markers (name, value) VALUES ('api12-a', 1)")
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert listened is not made[0] and any("api12-a" in x for x in seen)
        with db.write() as s:  # the listener gone: a Raw that tells no one
            quiet = raw(s)
            quiet.execute("INSERT INTO neutrino_markers (name, value) VALUES ('api12-b', 1)")
        assert quiet is not listened and not any("api12-b" in x for x in seen)
        with pytest.raises(RuntimeError), db.write() as s:  # an error gives the connection back
            raw(s).execute("INSERT INTO neutrino_markers (name, value) VALUES ('api12-gone', 1)")
            raise RuntimeError("refused")
        with db.write() as s:
            after = raw(s)
            after.execute("INSERT INTO neutrino_markers (name, value) VALUES ('api12-c', 1)")
        assert after is not quiet  # a fresh connection, a fresh Raw
        assert _markers(db) == {"api12-a", "api12-b", "api12-c"}
    finally:
        db.dispose()
    assert db.engine.pool.checkedout() == 0


def test_every_way_out_gives_the_lock_back(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/c.db")
    try:
        # the body's error: rolled back, the same exception raised on
        boom = RuntimeError("boom")
        with pytest.raises(RuntimeError) as caught, db.write() as s:
            raw(s).execute("INSERT INTO neutrino_markers (name, value) VALUES ('api12-x', 1)")
            raise boom
        assert caught.value is boom
        assert db._writing == 0 and _write_from_another_thread(db, "api12-t1")
        # the database's error in the commit's flush (a duplicate key of a pending ORM object): the
        # statements before it rolled back too
        with pytest.raises(IntegrityError, match="UNIQUE"), db.write() as s:
            raw(s).execute("INSERT INTO neutrino_markers (name, value) VALUES ('api12-y', 1)")
            s.add(models.ChangeMarker(name="api12-t1", value=2))
        assert db._writing == 0 and _write_from_another_thread(db, "api12-t2")
        # a write that commits: the counters back to none open, the lock given back
        with db.write() as s:
            raw(s).execute("INSERT INTO neutrino_markers (name, value) VALUES ('api12-o', 1)")
            assert db._writing == 1
        assert db._writing == 0 and _write_from_another_thread(db, "api12-t3")
        assert _markers(db) == {"api12-t1", "api12-t2", "api12-o", "api12-t3"}
    finally:
        db.dispose()
    assert db.engine.pool.checkedout() == 0
