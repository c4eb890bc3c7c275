"""Review17 of api18 (``pg.opening``'s and ``pg.closing``'s ``SET LOCAL enable_seqscan``).

- ``pg.opening`` puts the setting back with ``SET LOCAL enable_seqscan TO DEFAULT``: that is the
  session's *reset* value (the server's, the role's or database's, the connection's options), not
  the value the session had before. A session that ran ``SET enable_seqscan = off`` (a deployment's
  connect hook) had the rest of an opened transaction planned with sequential scans on: before
  api18 it kept its own setting. Fixed: the opening keeps the session's value in a placeholder
  setting of the transaction and puts it back from there.
- A role's or database's default (the reset value) is put back as it was (a guard: a hard-coded
  ``SET LOCAL enable_seqscan = on`` would fail it).
- Errors in the middle of the multi-statement queries (the opening ``EXECUTE`` failing, the closing
  insert's unique violation) leave the connection usable and the setting as the session had it
  once rolled back; the rows ``opening`` returns are the statement's whether or not ``PREPARE`` was
  sent, and after a ``DEALLOCATE ALL`` (the retry): guards on the ``nextset()`` count.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from neutrino.db import pg
from neutrino.db.session import Database, raw
from neutrino.scenarios.model import default_scenario
from neutrino.services import ports
from neutrino.services.cloud import Cloud, prepare
from tests.api.api_helpers import PgCluster, fresh_database
from tests.api.test_api14_folds import _create, _network

pytestmark = pytest.mark.postgres


def _url(pg_cluster: PgCluster, tmp_path: Path) -> str:
    return fresh_database(pg_cluster.url, f"review17_{uuid.uuid4().hex[:12]}", tmp_path)


def _driver_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def url(pg_cluster: PgCluster, tmp_path: Path) -> str:
    return _url(pg_cluster, tmp_path)


def _show_after_opening(cloud: Cloud, net: str) -> str:
    """``enable_seqscan`` as a statement after a port create's opening one sees it (the create not
    said to be last: the transaction goes on)."""
    admin = cloud.admin_context()
    with cloud.write(admin) as tx:
        ports.create_port(tx, prepare("port", {"network_id": net}), quota_project=admin.project_id)
        got = raw(tx.session).scalar("SHOW enable_seqscan")
    assert isinstance(got, str)
    return got


def test_a_session_level_setting_is_kept_after_the_opening_statement(url: str) -> None:
    db = Database(url)
    try:
        cloud = Cloud(db, default_scenario())
        net, _ = _network(cloud, cloud.admin_context(), "10.17.0.0/24")
        _create(cloud, cloud.admin_context(), {"network_id": net})  # (the DHCP port)

        def session_setting(dbapi_conn: Any, _record: Any) -> None:  # a deployment's connect hook
            dbapi_conn.execute("SET enable_seqscan = off")
            dbapi_conn.commit()

        event.listen(db.engine, "connect", session_setting)
        db._drop_writer()
        db.engine.dispose()
        with cloud.read(cloud.admin_context()) as tx:  # (the hook ran: the session's setting is off)
            assert raw(tx.session).scalar("SHOW enable_seqscan") == "off"
        assert _show_after_opening(cloud, net) == "off"
    finally:
        db.dispose()


def test_a_database_default_is_kept_after_the_opening_statement(url: str) -> None:
    db = Database(url)
    try:
        cloud = Cloud(db, default_scenario())
        net, _ = _network(cloud, cloud.admin_context(), "10.17.1.0/24")
        _create(cloud, cloud.admin_context(), {"network_id": net})
        assert _show_after_opening(cloud, net) == "on"
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(_driver_url(url), autocommit=True) as c:  # (not the engine: its hook begins)
            c.execute(f"ALTER DATABASE {name} SET enable_seqscan = off")
        db._drop_writer()
        db.engine.dispose()
        assert _show_after_opening(cloud, net) == "off"
    finally:
        db.dispose()


# -- pg.opening / pg.closing on a connection of their own -----------------------------------------

@pytest.fixture
def conn(url: str) -> Iterator[pg.PgConnection]:
    c = pg.connect(_driver_url(url))
    try:
        c.execute("CREATE TABLE r17 (k integer PRIMARY KEY, v text)")
        c.execute("INSERT INTO r17 VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        c.commit()
        yield c
    finally:
        c.close()


def _show(c: pg.PgConnection) -> str:
    row = c.execute("SHOW enable_seqscan").fetchone()
    assert row is not None
    return str(row[0])


_READ = "SELECT v FROM r17 WHERE k >= ? ORDER BY k"


def _opening(c: pg.PgConnection, sql: str, params: tuple[Any, ...]) -> list[Any] | None:
    c.neutrino.begin(True)
    return pg.opening(c.cursor(), sql, params)


def _end(c: pg.PgConnection, *, commit: bool) -> None:
    if commit:
        c.commit()
    else:
        c.rollback()
    c.neutrino.end()


def test_opening_rows_prepared_or_not_and_after_a_deallocate(conn: pg.PgConnection) -> None:
    """The rows are the statement's on its first use (PREPARE sent: 4 results before), its second
    (3 before), and after the server forgot it (the retry prepares it again); the setting is the
    session's after each (mutation: ``range(3 if prepare else 4)``, or one step fewer, fails)."""
    want = [("two",), ("three",)]
    for step in ("first", "prepared", "deallocated"):
        if step == "deallocated":
            conn.execute("DEALLOCATE ALL")
            conn.commit()
        assert _opening(conn, _READ, (2,)) == want, step
        assert _show(conn) == "on", step
        _end(conn, commit=True)
    assert _show(conn) == "on"


def test_a_failing_opening_or_closing_leaves_the_setting_and_the_connection(conn: pg.PgConnection) -> None:
    # the opening EXECUTE fails (a division by zero): the rest of the query is not run
    with pytest.raises(psycopg.errors.DivisionByZero):
        _opening(conn, "SELECT v FROM r17 WHERE k = 1 / ?", (0,))
    _end(conn, commit=False)
    assert _show(conn) == "on"
    # the closing insert fails (a unique violation): no COMMIT; the rollback puts the setting back
    assert _opening(conn, _READ, (3,)) == [("three",)]
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg.closing(conn.cursor(), "INSERT INTO r17 VALUES (?, ?)", [1, "again"])
    _end(conn, commit=False)
    assert _show(conn) == "on"
    # and the next transaction goes as the first did, committing its write with the closing query
    assert _opening(conn, _READ, (3,)) == [("three",)]
    assert pg.closing(conn.cursor(), "INSERT INTO r17 VALUES (?, ?)", [4, "four"]) is True
    _end(conn, commit=True)
    assert _show(conn) == "on"
    assert conn.execute("SELECT v FROM r17 WHERE k = 4").fetchall() == [("four",)]
