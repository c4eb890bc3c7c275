"""Review 14 (issue #17, api12): ``Database.write()`` on the kept SQLite writer (``db.session._Write``)
against what a fresh connection reads: a write that fails midway (the body's error, the database's
own), a write after a failed one (the kept writer replaced), reads during a write (this process's
and another process's, which holds its snapshot while the writer commits and the WAL grows), two
threads' read-modify-write writes, on a SQLite file and in memory. Oracle: the rows a fresh
``sqlite3`` connection reads, a fresh ``BEGIN IMMEDIATE`` that gets the lock at once (none left
held), the next write going through.

A wrong answer this review found, fixed since: on the kept writer, ``session.commit()`` inside a
write ended the driver's transaction, so what the body ran after it was autocommitted statement by
statement and survived the write's error, while on a connection of its own (SQLite in memory, a
write nested in another, PostgreSQL) it committed nothing. A write's session now refuses a commit
in the body, on every path (``db.session._WriteSession``).
"""

from __future__ import annotations

import select
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import exc, text
from sqlalchemy.exc import IntegrityError

from neutrino.db.session import SQLITE_WAL_AUTOCHECKPOINT, Database, raw

_INSERT = "INSERT INTO neutrino_markers (name, value) VALUES (?, ?)"


def _fresh_names(path: Path) -> set[str]:
    """The review's markers as a fresh connection reads them."""
    c = sqlite3.connect(path, timeout=0)
    try:
        return {r[0] for r in c.execute("SELECT name FROM neutrino_markers WHERE name LIKE 'r14-%'")}
    finally:
        c.close()


def _no_lock_held(path: Path) -> bool:
    """Whether a fresh connection gets the write lock at once."""
    c = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        c.execute("BEGIN IMMEDIATE")
        c.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        c.close()


def _names(db: Database) -> set[str]:
    with db.read() as s:
        return {str(n) for n in s.scalars(text("SELECT name FROM neutrino_markers WHERE name LIKE 'r14-%'"))}


@pytest.fixture(params=["file", "memory"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path}/r14.db" if request.param == "file" else "sqlite://"
    d = Database(url)
    request.addfinalizer(d.dispose)
    return d


def test_a_write_failing_midway_leaves_nothing_and_the_next_goes_through(db: Database, tmp_path: Path) -> None:
    with db.write() as s:
        raw(s).execute(_INSERT, ("r14-kept", 1))
    # the database's own error in the middle of the body (a duplicate key), after two statements
    with pytest.raises(sqlite3.IntegrityError), db.write() as s:
        r = raw(s)
        r.execute(_INSERT, ("r14-a", 1))
        s.execute(text("INSERT INTO neutrino_markers (name, value) VALUES ('r14-b', 1)"))
        r.execute(_INSERT, ("r14-kept", 2))
    # the body's error after ORM and Core statements
    with pytest.raises(KeyError), db.write() as s:
        s.execute(text("INSERT INTO neutrino_markers (name, value) VALUES ('r14-c', 1)"))
        raw(s).execute(_INSERT, ("r14-d", 1))
        raise KeyError("body")
    # the ORM's flush at the end failing (a duplicate key): the raw statement before it rolled back
    from neutrino.db import models
    with pytest.raises(IntegrityError), db.write() as s:
        raw(s).execute(_INSERT, ("r14-e", 1))
        s.add(models.ChangeMarker(name="r14-kept", value=3))
    assert db._writing == 0
    with db.write() as s:
        raw(s).execute(_INSERT, ("r14-after", 1))
    assert _names(db) == {"r14-kept", "r14-after"}
    if db._keep_writer:
        assert _fresh_names(tmp_path / "r14.db") == {"r14-kept", "r14-after"}
        assert _no_lock_held(tmp_path / "r14.db")
        assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # (the kept writer only)


def test_two_threads_read_modify_write_without_losing_an_update(db: Database, tmp_path: Path) -> None:
    with db.write() as s:
        raw(s).execute(_INSERT, ("r14-counter", 0))
    errors: list[BaseException] = []
    done: list[int] = []  # one entry per write that committed

    def bump(n: int) -> None:
        try:
            for i in range(n):
                try:
                    with db.write() as s:
                        r = raw(s)
                        v = r.scalar("SELECT value FROM neutrino_markers WHERE name = 'r14-counter'")
                        r.execute("UPDATE neutrino_markers SET value = ? WHERE name = 'r14-counter'", (v + 1,))
                        if i % 7 == 3:  # now and then a write that fails after its update
                            r.execute(_INSERT, ("r14-counter", 0))
                    done.append(1)
                except sqlite3.IntegrityError:
                    pass
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    with db.read() as s:
        value = s.scalar(text("SELECT value FROM neutrino_markers WHERE name = 'r14-counter'"))
    assert len(done) == 2 * (25 - 4)  # (i = 3, 10, 17, 24 failed in each thread)
    assert value == len(done)  # every committed increment counted, none of the failed ones
    if db._keep_writer:
        assert _no_lock_held(tmp_path / "r14.db")


def test_a_read_during_a_write_sees_what_was_committed_before_it(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/r14.db")
    path = tmp_path / "r14.db"
    try:
        with db.write() as s:
            raw(s).execute(_INSERT, ("r14-old", 1))
        with db.write() as s:
            raw(s).execute(_INSERT, ("r14-new", 1))
            s.execute(text("UPDATE neutrino_markers SET value = 2 WHERE name = 'r14-old'"))
            assert _names(db) == {"r14-old"}  # this process's read: the committed state
            assert _fresh_names(path) == {"r14-old"}
            assert not _no_lock_held(path)  # the write holds the lock while it is open
            with db.read() as r:
                assert r.scalar(text("SELECT value FROM neutrino_markers WHERE name = 'r14-old'")) == 1
        assert _fresh_names(path) == {"r14-old", "r14-new"} == _names(db)
        assert _no_lock_held(path)
    finally:
        db.dispose()


_READER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
c.execute("BEGIN")
n = c.execute("SELECT count(*) FROM neutrino_markers WHERE name LIKE 'r14-%'").fetchone()[0]
print(n, flush=True)
sys.stdin.readline()
m = c.execute("SELECT count(*) FROM neutrino_markers WHERE name LIKE 'r14-%'").fetchone()[0]
c.execute("COMMIT")
print(m, c.execute("SELECT count(*) FROM neutrino_markers WHERE name LIKE 'r14-%'").fetchone()[0], flush=True)
"""


def _line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the reader process said nothing"
    return proc.stdout.readline().strip()


def test_another_process_reading_during_the_writes_keeps_its_snapshot(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/r14.db")
    path = tmp_path / "r14.db"
    proc = None
    try:
        with db.write() as s:
            raw(s).execute(_INSERT, ("r14-0", 0))
            assert raw(s).scalar("PRAGMA wal_autocheckpoint") == SQLITE_WAL_AUTOCHECKPOINT
            assert raw(s).scalar("PRAGMA journal_mode") == "wal"
        proc = subprocess.Popen([sys.executable, "-c", _READER, str(path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert _line(proc) == "1"  # its read transaction is open
        for i in range(1, 60):
            with db.write() as s:
                raw(s).execute(_INSERT, (f"r14-{i}", i))
                raw(s).execute("UPDATE neutrino_markers SET value = value + 1 WHERE name = 'r14-0'")
        with db.write() as s:  # a checkpoint cannot pass the reader's snapshot: the writes go on
            raw(s).execute(_INSERT, ("r14-last", 0))
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert _line(proc) == "1 61"  # its snapshot held; then the fresh read sees every write
        assert proc.wait(20) == 0
        c = sqlite3.connect(path, timeout=0)
        try:
            busy, _log, _done = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0  # nobody holds the WAL: a full checkpoint goes through
            assert c.execute("SELECT value FROM neutrino_markers WHERE name = 'r14-0'").fetchone()[0] == 59
        finally:
            c.close()
        assert len(_fresh_names(path)) == 61 and _no_lock_held(path)
        with db.write() as s:
            raw(s).execute(_INSERT, ("r14-after-checkpoint", 0))
        assert len(_fresh_names(path)) == 62
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        db.dispose()


def test_a_commit_inside_a_write_does_not_break_the_write_in_two(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/r14.db")
    memory = Database("sqlite://")
    try:
        for d in (memory, db):
            after = False
            with pytest.raises(exc.InvalidRequestError, match="commits when Database.write"), d.write() as s:
                s.execute(text("INSERT INTO neutrino_markers (name, value) VALUES ('r14-before', 1)"))
                s.commit()  # refused: the write commits when it ends
                after = True
            assert not after
        assert _names(memory) == set()  # a connection of its own: the whole write rolled back
        assert _fresh_names(tmp_path / "r14.db") & {"r14-before", "r14-after"} == set()  # the kept writer: too
        for d in (memory, db):  # a write that does not commit in its body commits at its end
            with d.write() as s:
                s.execute(text("INSERT INTO neutrino_markers (name, value) VALUES ('r14-whole', 1)"))
        assert "r14-whole" in _names(memory) and "r14-whole" in _fresh_names(tmp_path / "r14.db")
    finally:
        db.dispose()
        memory.dispose()
