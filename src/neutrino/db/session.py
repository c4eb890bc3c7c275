"""Engines, transactions and schema migrations.

``Database(url)`` opens SQLite (WAL, foreign keys on) or PostgreSQL and brings the schema up to
date. Writes are serialised: ``write()`` takes a process-wide lock and then the database's own
writer lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a transaction-scoped advisory lock, sent with
``BEGIN`` before or with the transaction's first statement: ``neutrino.db.pg``), so
read-modify-write sequences (IPAM, revision numbers, segment allocation) never interleave, even
across server processes. ``read()`` gives a consistent snapshot (SQLite deferred transaction,
PostgreSQL REPEATABLE READ).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, delete, event, exc, insert, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from neutrino.db import models

log = logging.getLogger(__name__)


def default_url() -> str:
    state = os.environ.get("NEUTRINO_STATE", "./state")
    return f"sqlite:///{os.path.join(state, 'neutrino.db')}"


_NOW: tuple[int, str] = (-1, "")  # the second last formatted, and its text


def now() -> str:
    """The current UTC time to the second, as ``datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")``
    (formatted once per second)."""
    global _NOW
    second = int(time.time())
    cached = _NOW
    if cached[0] != second:
        cached = _NOW = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return cached[1]


def _migration_1(conn: Connection) -> None:
    """Baseline schema (version 1). Later versions must add explicit ALTERs here, never edit this."""
    models.Base.metadata.create_all(conn, tables=[t for t in models.Base.metadata.sorted_tables
                                                  if t.name != "neutrino_schema"])


# the tables with standard attributes, in the order migration 2 breaks ties between them
SEQUENCED_TABLES = ("networks", "subnets", "security_groups", "security_group_rules", "ports", "routers",
                    "floatingips", "servers")


def _migration_2(conn: Connection) -> None:
    """Version 2: a creation sequence (``created_seq``) on every table with standard attributes and
    the ``neutrino_counters`` table that numbers it (and holds the seeded id and MAC streams).

    Existing rows are numbered in the order they were listed before: by ``created_at``, then by the
    order the table already kept (subnets' ``created_seq``, rules' ``seq``), then by id. Written to
    also run on a database whose baseline already has the columns (migration 1 creates the current
    models' tables)."""
    counters: Any = models.Counter.__table__
    counters.create(conn, checkfirst=True)
    insp = inspect(conn)
    rows: list[tuple[str, int, int, str, str]] = []
    for rank, table in enumerate(SEQUENCED_TABLES):
        if "created_seq" not in {c["name"] for c in insp.get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN created_seq INTEGER NOT NULL DEFAULT 0"))
        kept = {"subnets": "created_seq", "security_group_rules": "seq"}.get(table, "0")
        for rid, created, order in conn.execute(text(f"SELECT id, created_at, {kept} FROM {table}")):
            rows.append((created or "", int(order or 0), rank, rid, table))
    rows.sort()
    for n, (_created, _order, _rank, rid, table) in enumerate(rows, 1):
        conn.execute(text(f"UPDATE {table} SET created_seq = :n WHERE id = :id"), {"n": n, "id": rid})
    conn.execute(delete(counters).where(counters.c.name == "created_seq"))
    conn.execute(insert(counters).values(name="created_seq", value=len(rows)))


KEYSTONE_TABLES = ("keystone_domains", "keystone_projects", "keystone_users", "keystone_roles",
                   "keystone_assignments")


def _migration_3(conn: Connection) -> None:
    """Version 3: Keystone's domains, projects, users, roles and role assignments, managed through the
    Identity API (the scenario's identity section fills them on first start). ``checkfirst``: a
    baseline made by migration 1 from today's models already has them."""
    for name in KEYSTONE_TABLES:
        models.Base.metadata.tables[name].create(conn, checkfirst=True)


SUBNETPOOL_TABLES = ("address_scopes", "subnetpools")


def _migration_4(conn: Connection) -> None:
    """Version 4: subnet pools and address scopes, and the subnet's ``subnetpool_id`` (the pool it
    was allocated from). ``checkfirst`` and the column test: a baseline made by migration 1 from
    today's models already has them."""
    for name in SUBNETPOOL_TABLES:
        models.Base.metadata.tables[name].create(conn, checkfirst=True)
    if "subnetpool_id" not in {c["name"] for c in inspect(conn).get_columns("subnets")}:
        conn.execute(text("ALTER TABLE subnets ADD COLUMN subnetpool_id VARCHAR(36)"))
        conn.execute(text("CREATE INDEX ix_subnets_subnetpool_id ON subnets (subnetpool_id)"))


MIGRATION_5_TABLES = ("rbac_policies", "portforwardings", "router_l3_bindings", "network_dhcp_bindings")
_ROUTER_COLUMNS_5 = (("distributed", "BOOLEAN NOT NULL DEFAULT FALSE"), ("ha", "BOOLEAN NOT NULL DEFAULT FALSE"),
                     ("ha_vr_id", "INTEGER NOT NULL DEFAULT 0"))


def _migration_5(conn: Connection) -> None:
    """Version 5: RBAC policies, floating-IP port forwardings, the L3 and DHCP agents' bindings
    (which host serves which router and network) and the routers' ``distributed``, ``ha`` and
    ``ha_vr_id``. ``checkfirst`` and the column test: a baseline made by migration 1 from today's
    models already has them."""
    for name in MIGRATION_5_TABLES:
        models.Base.metadata.tables[name].create(conn, checkfirst=True)
    have = {c["name"] for c in inspect(conn).get_columns("routers")}
    for column, ddl in _ROUTER_COLUMNS_5:
        if column not in have:
            conn.execute(text(f"ALTER TABLE routers ADD COLUMN {column} {ddl}"))
    # networks made shared or external before RBAC: the wildcard policies Neutron keeps for them
    policies: Any = models.RbacPolicy.__table__
    kept = {(r.object_id, r.action) for r in conn.execute(select(policies.c.object_id, policies.c.action)
                                                           .where(policies.c.target_tenant == "*"))}
    for nid, project, shared, external in conn.execute(text(
            "SELECT id, project_id, shared, external FROM networks ORDER BY created_seq, id")):
        for action, on in (("access_as_shared", shared), ("access_as_external", external)):
            if on and (nid, action) not in kept:
                conn.execute(insert(policies).values(
                    id=str(uuid.uuid4()), created_seq=0, project_id=project, object_type="network", object_id=nid,
                    action=action, target_tenant="*", is_default=False))


MIGRATION_6_TABLES = ("port_usage", "ipam_next", "neutrino_markers")
PORTS_VIEW = "ports_view"  # the change marker of what a port's view reads (see ``ChangeMarker``)
# a fresh random value, not value + 1: a database put back to an earlier state (a backup restored while
# the server runs) and then changed otherwise must not come back to a value a kept listing was made at
_BUMP = f"UPDATE neutrino_markers SET value = random() WHERE name = '{PORTS_VIEW}'"
_USAGE_UP = ("INSERT INTO port_usage (project_id, ports) VALUES (NEW.project_id, 1) "
             "ON CONFLICT (project_id) DO UPDATE SET ports = port_usage.ports + 1")
_USAGE_DOWN = "UPDATE port_usage SET ports = ports - 1 WHERE project_id = OLD.project_id"
_FORGET_NEXT = "DELETE FROM ipam_next WHERE subnet_id = OLD.subnet_id"
# a port numbered in its insert (the API's create) moves the creation sequence's counter on to it
_SEQ_PAST = "NEW.created_seq > COALESCE((SELECT value FROM neutrino_counters WHERE name = 'created_seq'), 0)"
_SEQ_MOVE = ("INSERT INTO neutrino_counters (name, value) VALUES ('created_seq', NEW.created_seq) "
             "ON CONFLICT (name) DO UPDATE SET value = excluded.value")

# SQLite: row triggers (one program each, run inside the statement that fires them)
_SQLITE_TRIGGERS = {
    "neutrino_ports_ins": f"AFTER INSERT ON ports BEGIN {_USAGE_UP}; {_BUMP}; END",
    "neutrino_ports_del": f"AFTER DELETE ON ports BEGIN {_USAGE_DOWN}; {_BUMP}; END",
    "neutrino_ports_upd": f"AFTER UPDATE ON ports BEGIN {_BUMP}; END",
    "neutrino_created_seq": f"AFTER INSERT ON ports WHEN {_SEQ_PAST} BEGIN {_SEQ_MOVE}; END",
    "neutrino_ports_move": "AFTER UPDATE OF project_id ON ports WHEN OLD.project_id IS NOT NEW.project_id "
                           f"BEGIN {_USAGE_DOWN}; {_USAGE_UP}; END",
    "neutrino_ipallocations_ins": f"AFTER INSERT ON ipallocations BEGIN {_BUMP}; END",
    "neutrino_ipallocations_del": f"AFTER DELETE ON ipallocations BEGIN {_FORGET_NEXT}; {_BUMP}; END",
    "neutrino_ipallocations_upd": f"AFTER UPDATE ON ipallocations BEGIN {_FORGET_NEXT}; {_BUMP}; END",
    "neutrino_port_groups_ins": f"AFTER INSERT ON port_security_groups BEGIN {_BUMP}; END",
    "neutrino_port_groups_del": f"AFTER DELETE ON port_security_groups BEGIN {_BUMP}; END",
    "neutrino_port_groups_upd": f"AFTER UPDATE ON port_security_groups BEGIN {_BUMP}; END",
    "neutrino_networks_ins": f"AFTER INSERT ON networks BEGIN {_BUMP}; END",
    "neutrino_networks_del": f"AFTER DELETE ON networks BEGIN {_BUMP}; END",
    "neutrino_networks_owner": f"AFTER UPDATE OF project_id ON networks BEGIN {_BUMP}; END",
}

# PostgreSQL: one row function on ports (usage, and the creation sequence on insert; plain UPDATEs,
# cheaper there than an upsert, inserting only a missing row), IPAM's per row on ipallocations. No
# change marker: a listing there is keyed by its transaction's snapshot (``pg_current_snapshot()``,
# which differs once any transaction commits), so PostgreSQL pays nothing per write for it.
_PG_PORTS_ROW = """BEGIN
  IF TG_OP = 'UPDATE' AND NEW.project_id IS NOT DISTINCT FROM OLD.project_id THEN RETURN NULL; END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE port_usage SET ports = ports - 1 WHERE project_id = OLD.project_id;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    UPDATE port_usage SET ports = ports + 1 WHERE project_id = NEW.project_id;
    IF NOT FOUND THEN INSERT INTO port_usage (project_id, ports) VALUES (NEW.project_id, 1); END IF;
  END IF;
  IF TG_OP = 'INSERT' THEN
    UPDATE neutrino_counters SET value = NEW.created_seq WHERE name = 'created_seq' AND value < NEW.created_seq;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM neutrino_counters WHERE name = 'created_seq') THEN
      INSERT INTO neutrino_counters (name, value) VALUES ('created_seq', NEW.created_seq);
    END IF;
  END IF;
  RETURN NULL;
END"""
_PG_FUNCTIONS = {
    "neutrino_ports_row": _PG_PORTS_ROW,
    "neutrino_forget_next": f"BEGIN {_FORGET_NEXT}; RETURN NULL; END",
}
_PG_TRIGGERS = (  # (name, table, when, each, function)
    ("neutrino_ports_row", "ports", "AFTER INSERT OR UPDATE OF project_id OR DELETE", "FOR EACH ROW",
     "neutrino_ports_row"),
    ("neutrino_forget_next", "ipallocations", "AFTER UPDATE OR DELETE", "FOR EACH ROW", "neutrino_forget_next"),
)


def _migration_6(conn: Connection) -> None:
    """Version 6: what the port create and listing read instead of scanning, kept by triggers in the
    transaction of every change whatever makes it (the ORM, SQL text, a cascade): each project's port
    count (``port_usage``, filled from ``count(*)``), where IPAM's scan of a subnet may start
    (``ipam_next``, empty: the next create scans and writes it), on SQLite the ``ports_view`` change
    marker (starting at a random value), and the creation sequence's counter moved on by a port
    numbered in its insert. Re-running it re-makes the triggers and recounts."""
    for name in MIGRATION_6_TABLES:
        models.Base.metadata.tables[name].create(conn, checkfirst=True)
    conn.exec_driver_sql("DELETE FROM port_usage")
    conn.exec_driver_sql("INSERT INTO port_usage (project_id, ports) SELECT project_id, count(*) FROM ports "
                         "GROUP BY project_id")
    conn.exec_driver_sql("DELETE FROM ipam_next")
    conn.exec_driver_sql(f"DELETE FROM neutrino_markers WHERE name = '{PORTS_VIEW}'")
    conn.exec_driver_sql(f"INSERT INTO neutrino_markers (name, value) VALUES ('{PORTS_VIEW}', "
                         f"{secrets.randbits(40)})")
    if conn.dialect.name == "postgresql":
        for fn, body in _PG_FUNCTIONS.items():
            conn.exec_driver_sql(f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                                 f"{body} $$")
        for name, table, when, each, fn in _PG_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            conn.exec_driver_sql(f"CREATE TRIGGER {name} {when} ON {table} {each} EXECUTE FUNCTION {fn}()")
    else:
        for name, body in _SQLITE_TRIGGERS.items():
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE TRIGGER {name} {body}")


def _migration_7(conn: Connection) -> None:
    """Version 7: the addresses' index on ``network_id`` dropped. No statement filters, joins or sorts
    addresses by their network (they are read by subnet and address, or by port), and every port
    create wrote it: a B-tree page more in each create's commit. (A database made at version 7 never
    had it.)"""
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_ipallocations_network_id")


def _migration_8(conn: Connection) -> None:
    """Version 8, PostgreSQL only: the ports' index on ``network_id`` replaced by one on
    (``device_owner``, ``network_id``), the DHCP-port lookup's (see ``models.Port``), so that the
    create's MAC check reads ``uq_port_mac`` whatever the planner's statistics (never analysed, it
    scanned every port of the network in the plain index). Lookups by network alone read
    ``uq_port_mac``'s first column. (A database made at version 8 never had the plain index there.)"""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_ports_network_id")
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_ports_device_owner_network_id "
                             "ON ports (device_owner, network_id)")


def _migration_9(conn: Connection) -> None:
    """Version 9: the servers' ``fault`` (Nova's latest instance fault, shown while a server is in
    ERROR). The column test: a baseline made by migration 1 from today's models already has it."""
    if "fault" not in {c["name"] for c in inspect(conn).get_columns("servers")}:
        conn.execute(text("ALTER TABLE servers ADD COLUMN fault JSON"))


MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = (
    (1, _migration_1), (2, _migration_2), (3, _migration_3), (4, _migration_4), (5, _migration_5),
    (6, _migration_6), (7, _migration_7), (8, _migration_8), (9, _migration_9))


class Raw:
    """The transaction's own DB-API connection (sqlite3 or psycopg), for the hot paths' statements
    written once as SQL text: no statement to build, no cache key, no result machinery per call.

    The SQL uses ``?`` placeholders (sqlite3's qmark style) and no ``%``; for psycopg each text is
    rewritten once to ``%s`` and run as a server-side prepared statement. Values go to the driver as
    they are: booleans read back from SQLite are integers, JSON columns are written as their text
    (``json.dumps``, as SQLAlchemy's JSON type writes them) and read as stored (cast to text when the
    caller wants the same value on both databases). Statements run inside the caller's transaction,
    after any pending ORM changes are flushed (``raw(session)`` flushes, as autoflush would)."""

    __slots__ = ("_conn", "_pg", "_cur", "_seen")

    _PG_TEXT: dict[str, str] = {}
    _PG_TOGETHER: dict[tuple[tuple[str, int], ...], str] = {}  # ``write_all(together=True)``'s, by shape

    def __init__(self, dbapi_conn: Any, postgres: bool, seen: Connection | None = None) -> None:
        self._conn = dbapi_conn
        self._pg = postgres
        self._cur: Any = dbapi_conn.cursor() if postgres else None  # psycopg: one cursor for all (a third cheaper)
        self._seen = seen  # a connection with before_cursor_execute listeners: they see these statements too

    def _tell(self, sql: str, params: Any, many: bool) -> None:
        if self._seen is not None:
            self._seen.dispatch.before_cursor_execute(self._seen, self._cur, sql, params, None, many)

    @property
    def postgres(self) -> bool:
        return self._pg

    def _text(self, sql: str) -> str:
        text_ = self._PG_TEXT.get(sql)
        if text_ is None:
            text_ = self._PG_TEXT[sql] = sql.replace("?", "%s")
        return text_

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        """A cursor over the statement's rows, to be read before the next statement (psycopg's
        cursor is the connection's one)."""
        self._tell(sql, params, False)
        if self._pg:
            return self._cur.execute(self._text(sql), params, prepare=True)
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.write_all([(sql, rows)])

    def all_opening(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        """``all``, for a statement that may be the first of its transaction: on PostgreSQL, when it
        is the first of a write transaction, the transaction's deferred BEGIN and writer lock go in
        the same round trip (``pg.opening``), and a ``write_all(..., closing=True)`` right after it
        may commit in its own."""
        if self._pg:
            self._tell(sql, params, False)
            from neutrino.db import pg
            rows = pg.opening(self._cur, sql, params)
            if rows is not None:
                return rows
            return list(self._cur.execute(self._text(sql), params, prepare=True).fetchall())
        return self.all(sql, params)

    def write_all(self, statements: list[tuple[str, list[tuple[Any, ...]]]], *, together: bool = False,
                  closing: bool = False) -> None:
        """Each statement once per row of its (``INSERT``, ``UPDATE``, ``DELETE``: no rows back), in
        order; on PostgreSQL all in one round trip (a pipeline). ``together``: on PostgreSQL, as one
        statement instead (each but the last a data-modifying ``WITH`` part: one execution, no
        pipeline), for statements none of which reads or changes a row another writes (they all see
        the snapshot before any of them; row triggers and foreign-key checks still run after each
        row, at the statement's end). ``closing`` (with ``together``): the caller writes nothing more
        in this transaction; on PostgreSQL, right after ``all_opening`` began it, the transaction is
        committed in the same round trip (``pg.closing``), and then takes no further statement."""
        for sql, rows in statements:
            self._tell(sql, rows, len(rows) > 1)
        if not self._pg:
            for sql, rows in statements:
                if len(rows) == 1:
                    self._conn.execute(sql, rows[0])
                else:
                    self._conn.executemany(sql, rows)
            return
        if together:
            shape = tuple((sql, len(rows)) for sql, rows in statements)
            text_ = self._PG_TOGETHER.get(shape)
            if text_ is None:
                parts = [sql for sql, n in shape for _ in range(n)]
                head = ", ".join(f"w{i} AS ({p})" for i, p in enumerate(parts[:-1]))
                text_ = self._PG_TOGETHER[shape] = f"WITH {head} {parts[-1]}" if head else parts[-1]
            values = [v for _sql, rows in statements for row in rows for v in row]
            if closing:
                from neutrino.db import pg
                if pg.closing(self._cur, text_, values):
                    return
            self._cur.execute(self._text(text_), values, prepare=True)
            return
        with self._conn.pipeline():
            for sql, rows in statements:
                for row in rows:
                    self._cur.execute(self._text(sql), row, prepare=True)

    def scalar(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        """The first column of the first row, or None (every row read: the statement is done, as an
        ``UPDATE ... RETURNING`` must be before its transaction commits)."""
        rows = self.execute(sql, params).fetchall()
        return rows[0][0] if rows else None

    def one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        """The first row, or None."""
        rows = self.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        return list(self.execute(sql, params).fetchall())


def raw(session: Session, *, flush: bool = True) -> Raw:
    """The session's transaction as a :class:`Raw` connection (kept in ``session.info`` for the
    session's life: the same connection and transaction). Pending ORM changes are flushed first
    unless ``flush`` is false (for what ran on the Core connection before, without a flush)."""
    # (``dirty``, the costliest to ask, holds objects of the identity map only)
    if flush and (session.new or session.deleted or (session.identity_map and session.dirty)):
        session.flush()
    r: Raw | None = session.info.get("neutrino_raw")
    if r is None:
        conn = session_connection(session)
        r = session.info["neutrino_raw"] = Raw(conn.connection.driver_connection, conn.dialect.name == "postgresql",
                                               conn if conn.dispatch.before_cursor_execute else None)
    return r


def session_connection(session: Session) -> Connection:
    """The transaction's connection as ``Database`` gave it (the one ``session.connection()`` returns,
    without beginning the ORM's own transaction bookkeeping for it)."""
    conn: Connection = session.info.get("neutrino_conn") or session.connection()
    return conn


def _close(session: Session) -> None:
    """``session.close()``, unless the session holds nothing to release: no ORM transaction (the hot
    paths' statements go to the connection ``Database`` gave it), no object, nothing pending."""
    if session.in_transaction() or session.identity_map or session.new or session.deleted:
        session.close()


# The page size of a new SQLite database (an existing one keeps its own: SQLite changes it only by
# rewriting the whole file, VACUUM outside WAL mode). A commit writes every page it changed, whole and
# checksummed, to the WAL: a port's create changes ~16-20 pages (the ports table and its five indexes,
# the addresses' and the groups' tables and indexes, the three rows the triggers keep), each by a few
# hundred bytes. 2 KiB pages against SQLite's 4 KiB: a create's statements and commit 165-171 ->
# 146-155 us of CPU, a full read of the ports, addresses and groups the same (3.8-3.9 ms at ~850
# ports); 1 KiB pages write no less and read 5% slower. A row longer than a page's share continues on
# overflow pages, as it did past 4 KiB. (SQLite's online backup copies pages: into a live WAL
# database, only from one with the same page size.)
SQLITE_PAGE_SIZE = 2048

# The WAL's length, in pages, past which a commit checkpoints it (copies the pages back into the
# database file, syncing the WAL and the file; SQLite's default is 1,000). A checkpoint writes each page the
# WAL holds once, however many commits changed it (the counters, the tail of the ports table and of
# the ordered indexes: most of a create's 16-20 pages), so fewer checkpoints write fewer pages per
# create: 4,000 (an 8 MiB WAL at 2 KiB pages, a checkpoint every ~250 creates) against 1,000, the
# create's CPU including its share of the checkpoints ~30 us less (bench/README.md, api12); more
# than 4,000 measured no less. With synchronous=NORMAL the WAL is synced at checkpoints: a power
# loss (not a process crash) can lose the commits since the last one, as before, only more of them.
SQLITE_WAL_AUTOCHECKPOINT = 4000


class _WriteSession(Session):
    """A write transaction's session: its body does not commit it (``Database.write`` commits when
    it ends). On the kept SQLite writer a ``commit()`` would end the driver's transaction and leave
    the rest of the body autocommitted statement by statement; on a connection of its own it would
    commit nothing: refused on both, the same way."""

    def commit(self) -> None:
        if self.info.get("neutrino_body"):
            raise exc.InvalidRequestError("a write transaction commits when Database.write() ends, not in its body")
        super().commit()


class _Write:
    """``Database.write()``. On the kept SQLite writer (``_keep_writer``, no write open), one object
    does what three nested generators did (the lock, the kept connection, the driver's transaction):
    the transaction is begun and committed on the driver (SQLAlchemy's transaction around the hot
    paths' statements cost ~30 us of CPU for nothing: an empty write transaction 36 -> 6 us). The ORM,
    or a Core statement on the connection, that needs a connection begins SQLAlchemy's own
    transaction on it, which the begin hook finds already open on the driver (``neutrino_begun``):
    that is committed (or rolled back) through SQLAlchemy, then the driver's. An error rolls back
    both and gives the connection back to the pool (which resets it): the next write takes a fresh
    one, as every write did before, so an error leaves nothing behind. Any other write goes to
    ``Database._write_on_new_connection``.

    PostgreSQL keeps its writer the same way (api15: an empty write's pool checkout and checkin, its
    ``Connection``, ``Session`` and begin/commit events were ~65 us of CPU): the transaction is begun
    on the driver as the begin hook begins it (``PgState.begin``: BEGIN and the writer lock go with the
    first statement, ``pg``), committed by psycopg (which sends nothing when the server reports the
    connection idle: nothing sent, or ``pg.closing`` committed). The kept connection is pinged when it
    has been idle for more than ``PING_AFTER`` seconds, as the pool's checkout pings, and replaced
    when lost (``Database._pg_writer_alive``); a rollback that fails (the connection lost) discards it
    and the write's own error is raised."""

    __slots__ = ("_db", "_conn", "_driver", "_session", "_other")

    def __init__(self, db: Database) -> None:
        self._db = db

    def __enter__(self) -> Session:
        db = self._db
        db._lock.acquire()
        try:
            if not db._keep_writer or db._writing:
                self._other: AbstractContextManager[Session] | None = db._write_on_new_connection()
                return self._other.__enter__()
            self._other = None
            writer = db._writer  # made on first use, and again after an error or a lost connection
            if writer is not None and not db.is_sqlite:
                writer = db._pg_writer_alive(writer)
            if writer is None or writer.closed or writer.invalidated:
                writer = db.engine.connect()  # (the pool's checkout pings a connection idle too long)
                writer.info["writer"] = True
                db._writer = writer
            conn: Connection = writer
            self._conn = conn
            db._writing += 1
            conn.info["neutrino_begun"] = True
            try:
                driver: Any = conn.connection.driver_connection
                self._driver = driver
                if db.is_sqlite:
                    driver.execute("BEGIN IMMEDIATE")
                else:  # BEGIN and the writer lock go with the first statement (``pg``), as the begin hook's
                    driver.neutrino.begin(True)
                # one session for the kept connection's transactions (a closed session is as a new
                # one; making and collecting one is ~15 us), and one ``Raw`` while the connection, its
                # driver connection and whether it has statement listeners stay the same (all a
                # ``Raw`` depends on: one made for other listeners is made again)
                session = db._writer_session
                if session is None or session.info.get("neutrino_conn") is not conn:
                    session = db._writer_session = _WriteSession(bind=conn, expire_on_commit=False, autoflush=True)
                    session.info["neutrino_conn"] = conn
                seen = bool(conn.dispatch.before_cursor_execute)
                kept = db._writer_raw
                if kept is None or kept[0] is not conn or kept[1] is not driver or kept[2] is not seen:
                    kept = db._writer_raw = (conn, driver, seen, Raw(driver, not db.is_sqlite, conn if seen else None))
                session.info["neutrino_raw"] = kept[3]
                session.info["neutrino_body"] = True
                self._session = session
                return session
            except BaseException:
                conn.info.pop("neutrino_begun", None)
                if not db.is_sqlite and not conn.invalidated:
                    conn.connection.driver_connection.neutrino.end()  # type: ignore[union-attr]
                db._writing -= 1
                raise
        except BaseException:
            try:
                if self._other is None:
                    db._drop_writer()
            finally:
                db._lock.release()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None, tb: Any) -> bool | None:
        try:
            if self._other is not None:
                return self._other.__exit__(exc_type, error, tb)
            if exc_type is not None:
                self._roll_back()
                return None
            conn, session = self._conn, self._session
            session.info["neutrino_body"] = False
            try:
                session.flush()
                if session.in_transaction():
                    session.commit()
                if conn.in_transaction():
                    conn.commit()
                self._driver.commit()  # (PostgreSQL: nothing sent when the server says idle)
            except BaseException:
                self._roll_back()
                raise
            try:
                _close(session)
            except BaseException:
                self._done()
                self._db._drop_writer()
                raise
            self._done()
            return None
        finally:
            self._db._lock.release()

    def _done(self) -> None:
        db = self._db
        self._conn.info.pop("neutrino_begun", None)
        if not db.is_sqlite:
            self._driver.neutrino.end()
            db._writer_used = time.monotonic()
        db._writing -= 1

    def _roll_back(self) -> None:
        """Roll the ORM's transaction, SQLAlchemy's and the driver's back; the connection goes back to
        the pool."""
        db, conn, session = self._db, self._conn, self._session
        db._writer_session = None
        lost = False
        try:
            try:
                session.close()
                if conn.in_transaction():
                    conn.rollback()
            finally:
                self._driver.rollback()
        except Exception:
            if db.is_sqlite:
                raise
            lost = True  # PostgreSQL: the connection is gone (the write's own error is the one raised)
        finally:
            if not db.is_sqlite:
                self._driver.neutrino.rolled_back()  # (said loudly when ``pg.closing`` committed it)
            self._done()
            db._drop_writer(invalidate=lost)


PING_AFTER = 1.0  # seconds a pooled PostgreSQL connection may sit idle before it is pinged on checkout
_PG_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ"


class Database:
    """One database: its engine, the writer lock and the migrations."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = url or default_url()
        self.is_sqlite = self.url.startswith("sqlite")
        self._lock = threading.RLock()
        # SQLite on a file, and PostgreSQL: one connection kept for the writes (serialised by ``_lock``
        # anyway), so that a write transaction does not check a connection out of the pool and set it
        # up anew (PostgreSQL: an empty write 74 -> 8 us of CPU, bench/README.md api15)
        self._keep_writer = not self.is_sqlite
        self._writer: Connection | None = None
        self._writer_used = 0.0  # PostgreSQL: when the kept writer's last transaction ended (``_pg_writer_alive``)
        self._writer_session: Session | None = None  # the session of the kept writer's transactions
        self._writing = 0  # write transactions open (a nested one takes its own connection)
        self._writer_raw: tuple[Connection, Any, bool, Raw] | None = None  # ``_Write``'s
        if self.is_sqlite:
            path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
            memory = path in ("", ":memory:")
            self._keep_writer = not memory
            if not memory:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
            if memory:
                kwargs["poolclass"] = StaticPool
            self.engine: Engine = create_engine(self.url, **kwargs)
            self._install_sqlite_hooks(self.engine, wal=not memory)
        else:
            url = self.url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            # the driver in autocommit: the "begin" hook issues BEGIN itself, with the writer lock in
            # the same round trip (psycopg still sends COMMIT/ROLLBACK for an open transaction)
            self.engine = create_engine(url, pool_size=10, max_overflow=10, isolation_level="AUTOCOMMIT")
            self._install_postgres_hooks(self.engine)
        if migrate:
            self.migrate()

    @staticmethod
    def _install_sqlite_hooks(engine: Engine, *, wal: bool) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if wal:
                # a new database's page size (before WAL, which fixes it): see ``SQLITE_PAGE_SIZE``
                cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.info.get("neutrino_begun"):  # ``_Write`` began it on the driver
                return
            # on the driver: SQLAlchemy's execution machinery (a third of an empty transaction) is of no use
            conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                "BEGIN IMMEDIATE" if conn.info.get("writer") else "BEGIN")

    @staticmethod
    def _install_postgres_hooks(engine: Engine) -> None:
        from neutrino.db import pg  # (psycopg: imported when a PostgreSQL engine is made)

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            return pg.connect(*cargs, **cparams)  # psycopg's connection with ``pg``'s state and cursors

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.info.get("neutrino_begun"):  # ``_Write`` began it on the kept writer
                return
            driver: Any = conn.connection.driver_connection
            if conn.info.get("writer"):
                # BEGIN and the writer lock go with the transaction's first statement (``pg``): in
                # its round trip when it is ``Raw.all_opening``'s, else in one of their own before it
                driver.neutrino.begin(True)
            else:
                driver.neutrino.begin(False)
                driver.execute(_PG_BEGIN_READ)  # on the driver, as SQLite's

        @event.listens_for(engine, "commit")
        def _on_end(conn: Connection) -> None:
            if not conn.invalidated:
                conn.connection.driver_connection.neutrino.end()  # type: ignore[union-attr]

        @event.listens_for(engine, "rollback")
        def _on_rollback(conn: Connection) -> None:
            if not conn.invalidated:
                conn.connection.driver_connection.neutrino.rolled_back()  # type: ignore[union-attr]

        @event.listens_for(engine, "checkout")
        def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            """The pool's pre-ping, for a connection idle for more than ``PING_AFTER`` seconds only (a
            dead one is replaced, as ``pool_pre_ping`` does): one round trip less per transaction."""
            used = record.info.get("neutrino_used")
            if used is not None and time.monotonic() - used > PING_AFTER:
                try:
                    dbapi_conn.execute("SELECT 1")
                except Exception as e:
                    raise exc.DisconnectionError(f"connection lost: {e}") from e

        @event.listens_for(engine, "checkin")
        def _on_checkin(dbapi_conn: Any, record: Any) -> None:
            record.info["neutrino_used"] = time.monotonic()
            if dbapi_conn is not None:
                dbapi_conn.neutrino.end()

    # -- transactions -------------------------------------------------------------------------

    def write(self) -> AbstractContextManager[Session]:
        """A serialised read-write transaction, committed on success and rolled back on error."""
        return _Write(self)

    @contextmanager
    def _write_on_new_connection(self) -> Iterator[Session]:
        """``write`` on a connection of its own (PostgreSQL, SQLite in memory, or a write nested in
        another), under ``_lock``, which ``_Write`` holds."""
        with self.engine.connect() as conn:
            conn.info["writer"] = True
            try:
                with self._transaction(conn) as session:
                    yield session
            finally:
                conn.info.pop("writer", None)

    @contextmanager
    def _transaction(self, conn: Connection) -> Iterator[Session]:
        self._writing += 1
        try:
            with conn.begin():  # the hooks: BEGIN IMMEDIATE, or BEGIN and the advisory lock
                session = _WriteSession(bind=conn, expire_on_commit=False, autoflush=True)
                session.info["neutrino_conn"] = conn
                session.info["neutrino_body"] = True  # (never committed: the connection's transaction is)
                try:
                    yield session
                    session.flush()
                finally:
                    _close(session)
        finally:
            self._writing -= 1

    def _drop_writer(self, *, invalidate: bool = False) -> None:
        """The kept writer closed: back in the pool, or (``invalidate``, or its PostgreSQL connection
        lost) discarded."""
        conn, self._writer = self._writer, None
        if conn is not None:
            try:
                if not conn.invalidated and not conn.closed:
                    if invalidate or getattr(conn.connection.driver_connection, "broken", False):
                        conn.invalidate()
                    else:
                        conn.info.pop("writer", None)  # back in the pool, it may serve a read
            finally:
                conn.close()

    def _pg_writer_alive(self, writer: Connection) -> Connection | None:
        """The kept PostgreSQL writer, or None (dropped) when its connection is lost: pinged, as the
        pool's checkout pings (``_on_checkout``), when idle for more than ``PING_AFTER`` seconds (the
        server restarted, or closed it as idle)."""
        if writer.closed or writer.invalidated:
            self._drop_writer()
            return None
        driver: Any = writer.connection.driver_connection
        if driver.broken:
            self._drop_writer(invalidate=True)
            return None
        if time.monotonic() - self._writer_used > PING_AFTER:
            try:
                driver.execute("SELECT 1")
            except Exception as e:
                log.info("the kept writer connection was lost (%s): replaced", e)
                self._drop_writer(invalidate=True)
                return None
        return writer

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction over one consistent snapshot."""
        # the hooks begin it: BEGIN (PostgreSQL: BEGIN ISOLATION LEVEL REPEATABLE READ)
        with self.engine.connect() as conn, conn.begin():
            session = Session(bind=conn, expire_on_commit=False, autoflush=False)
            session.info["neutrino_conn"] = conn
            try:
                yield session
            finally:
                _close(session)

    # -- schema ---------------------------------------------------------------------------------

    def schema_version(self) -> int:
        if not inspect(self.engine).has_table("neutrino_schema"):
            return 0
        with self.read() as s:
            versions = s.scalars(select(models.SchemaVersion.version)).all()
        return max(versions, default=0)

    def migrate(self) -> int:
        """Apply every migration newer than the database; returns the resulting version."""
        with self.write() as s:
            conn = s.connection()
            models.SchemaVersion.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
            current = max(s.scalars(select(models.SchemaVersion.version)).all(), default=0)
            for version, step in MIGRATIONS:
                if version > current:
                    log.info("applying schema migration %d", version)
                    step(conn)
                    s.add(models.SchemaVersion(version=version, applied_at=now()))
                    current = version
        return current

    def dispose(self) -> None:
        with self._lock:
            self._drop_writer()
        self.engine.dispose()
