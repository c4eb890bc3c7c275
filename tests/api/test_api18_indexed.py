"""A write transaction's opening and closing statements on PostgreSQL (the port create's network
statement and insert, the port delete's head and ``DELETE``: ``pg.opening``, ``pg.closing``) are
planned with sequential scans off (api18), and only they.

- The opening simple query sets ``enable_seqscan`` off for its ``EXECUTE`` and back right after, the
  closing one for its ``EXECUTE`` before the ``COMMIT``, in the same round trips: a create and a
  delete are still two round trips each, and a statement after the opening one in the same
  transaction is planned with the session's setting.
- Once the tables were analysed while small (autovacuum does so early in a database's life), the
  kept generic plan of the network statement still reads every table by index. The same statement
  prepared the old way plans sequential scans there: a create then read every address 16 times.
- Creates and their failures, made after such an ANALYZE, answer as on SQLite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neutrino.db import pg
from neutrino.db.session import Database, raw
from neutrino.scenarios.model import default_scenario
from neutrino.services import ports
from neutrino.services.cloud import Cloud, prepare
from tests.api.test_api14_folds import _create, _network, _round_trips, _sequence, _traced

pytestmark = pytest.mark.postgres


def _writer(db: Database) -> Any:
    """The kept writer's psycopg connection (a ``pg.PgConnection``)."""
    assert db._writer is not None
    return db._writer.connection.driver_connection


def test_the_opening_query_sets_and_puts_back_the_setting(pg_cloud: Cloud) -> None:
    admin = pg_cloud.admin_context()
    net, _ = _network(pg_cloud, admin)
    _create(pg_cloud, admin, {"network_id": net})  # the first makes the DHCP port (more statements)
    pg_cloud.db.engine.dispose()
    with _traced(pg_cloud.db) as sent:
        made = [_create(pg_cloud, admin, {"network_id": net, "name": f"p{i}"})["id"] for i in range(3)]
        for pid in made[:2]:
            with pg_cloud.write(admin) as tx:
                ports.delete_port(tx, pid, last=True)
    assert _round_trips(sent) == 10, sent
    queries = [line for line in sent if "\tQuery\t" in line]
    openings, closings = queries[0::2], queries[1::2]
    assert len(openings) == len(closings) == 5
    assert all("; SET LOCAL enable_seqscan = off; EXECUTE " in q and
               q.rstrip('"').endswith("; SELECT set_config('enable_seqscan', "
                                      "current_setting('neutrino.enable_seqscan'), true)") for q in openings), openings
    assert all("SET LOCAL enable_seqscan = off; EXECUTE " in q and q.rstrip('"').endswith("; COMMIT")
               for q in closings), closings
    # a create not said to be last: the statements after its opening one see the session's setting
    with pg_cloud.write(admin) as tx:
        ports.create_port(tx, prepare("port", {"network_id": net}), quota_project=admin.project_id)
        assert raw(tx.session).scalar("SHOW enable_seqscan") == "on"
    assert _writer(pg_cloud.db).execute("SHOW enable_seqscan").fetchone()[0] == "on"


def _explain_generic(conn: Any, name: str, args: bytes, *, indexed: bool = False) -> str:
    """The generic plan of the prepared statement ``name``: the kept one while it is valid, else one
    made now (``indexed``: with sequential scans off, as ``pg.opening`` plans)."""
    with conn.transaction():
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        if indexed:  # (a plan made again meanwhile would not be the kept one: made as the kept one is)
            conn.execute("SET LOCAL enable_seqscan = off")
        rows = conn.execute(b"EXPLAIN (COSTS OFF) EXECUTE " + name.encode() + b"(" + args + b")").fetchall()
    return "\n".join(r[0] for r in rows)


def test_after_an_analyze_of_small_tables_the_network_statement_reads_by_index(pg_cloud: Cloud) -> None:
    admin = pg_cloud.admin_context()
    net, _ = _network(pg_cloud, admin, "10.18.0.0/24")
    with pg_cloud.db.engine.connect() as c:  # no autovacuum of its own between this test's steps
        for table in ("ports", "ipallocations", "ipam_next", "subnets", "networks", "security_groups", "quotas",
                      "port_usage"):
            c.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        c.commit()
    for i in range(30):
        _create(pg_cloud, admin, {"network_id": net, "name": f"p{i}"})
    with pg_cloud.db.engine.connect() as c:
        c.exec_driver_sql("ANALYZE")
        c.commit()
    for i in range(8):  # the plan made again, with the new statistics
        _create(pg_cloud, admin, {"network_id": net, "name": f"q{i}"})
    conn = _writer(pg_cloud.db)
    sql = pg.dollars(ports._NETWORK_HEAD[True])
    name = conn.neutrino.names[sql].decode()
    params = (admin.project_id, True, "fa:16:3e:00:00:01", admin.project_id, admin.project_id, net)
    args = conn.neutrino.literals(conn, params)
    kept = _explain_generic(conn, name, args, indexed=True)
    assert "Seq Scan" not in kept, kept
    assert "Index Only Scan using ipallocations_pkey on ipallocations t" in kept, kept
    # the same statement prepared the old way (the session's setting): sequential scans
    conn.execute(f"PREPARE api18_old AS {sql}")
    try:
        old = _explain_generic(conn, "api18_old", args)
    finally:
        conn.execute("DEALLOCATE api18_old")
    assert "Seq Scan on ipallocations t" in old, old


def test_answers_after_an_analyze_are_sqlite_s(pg_cloud: Cloud, tmp_path: Path) -> None:
    with pg_cloud.db.engine.connect() as c:
        c.exec_driver_sql("ANALYZE")  # statistics of empty tables: the planner's smallest
        c.commit()
    lite = Database(f"sqlite:///{tmp_path}/api18.db")
    try:
        assert _sequence(pg_cloud) == _sequence(Cloud(lite, default_scenario()))
    finally:
        lite.dispose()

