"""Engines, transactions and schema migrations.

``Database(url)`` opens SQLite (WAL, foreign keys on) or PostgreSQL and brings the schema up to
date. Writes are serialised: ``write()`` takes a process-wide lock and then the database's own
writer lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a transaction-scoped advisory lock), so
read-modify-write sequences (IPAM, revision numbers, segment allocation) never interleave, even
across server processes. ``read()`` gives a consistent snapshot (SQLite deferred transaction,
PostgreSQL REPEATABLE READ).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, delete, event, insert, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from neutrino.db import models

log = logging.getLogger(__name__)

_ADVISORY_KEY = 0x6E657574  # "neut"


def default_url() -> str:
    state = os.environ.get("NEUTRINO_STATE", "./state")
    return f"sqlite:///{os.path.join(state, 'neutrino.db')}"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = (
    (1, _migration_1), (2, _migration_2), (3, _migration_3), (4, _migration_4), (5, _migration_5))


class Database:
    """One database: its engine, the writer lock and the migrations."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = url or default_url()
        self.is_sqlite = self.url.startswith("sqlite")
        self._lock = threading.RLock()
        if self.is_sqlite:
            path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
            memory = path in ("", ":memory:")
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
            self.engine = create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
        if migrate:
            self.migrate()

    @staticmethod
    def _install_sqlite_hooks(engine: Engine, *, wal: bool) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if wal:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("writer") else "BEGIN")

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A serialised read-write transaction, committed on success and rolled back on error."""
        with self._lock, self.engine.connect() as conn:
            conn.info["writer"] = True
            try:
                with conn.begin():
                    if not self.is_sqlite:
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
                    session = Session(bind=conn, expire_on_commit=False, autoflush=True)
                    try:
                        yield session
                        session.flush()
                    finally:
                        session.close()
            finally:
                conn.info.pop("writer", None)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction over one consistent snapshot."""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                session = Session(bind=conn, expire_on_commit=False, autoflush=False)
                try:
                    yield session
                finally:
                    session.close()

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
        self.engine.dispose()
