"""PostgreSQL's write transactions in fewer round trips (imported only when a PostgreSQL engine is made).

A write transaction begins with ``BEGIN`` and the writer lock (``pg_advisory_xact_lock``). The engine's
"begin" hook no longer sends them: it marks the connection (``PgConnection.neutrino``, a ``PgState``)
as having them pending, and they go to the server with the transaction's first statement:

- through any cursor of the connection (SQLAlchemy's, the ORM's, ``Raw``'s, ``Connection.execute``,
  a server-side cursor): ``PgCursor`` sends ``BEGIN`` and the lock first, in one round trip of their
  own, as the hook did (two statements of a pipeline inside one), then the statement;
- or in the same round trip as the statement, by ``opening``: one simple query ``BEGIN; SELECT
  pg_advisory_xact_lock(k); SELECT set_config(...); SET LOCAL enable_seqscan = off; EXECUTE
  <name>(<literals>); SELECT set_config(...)`` (the port create's network statement, the port delete's
  head; the settings: see ``_INDEXED``).

``closing`` then sends a write and ``COMMIT`` as one simple query (``SET LOCAL enable_seqscan = off;
EXECUTE <name>(...); COMMIT``),
only when the transaction's opening statement was the last thing sent on the connection (nothing
ran in between) and the caller says nothing more is written in the transaction. psycopg's
``commit()``, which SQLAlchemy calls at the transaction's end, sends nothing on a connection the
server reports idle (psycopg 3.3 ``_commit_gen``), nor does the pool's rollback; a statement that
would still go to the database in that transaction is refused (``PgCursor``), never run outside it.

A simple query takes no bind parameters: each statement is ``PREPARE``d once per connection under a
name of this module's own (``neutrino_<n>``, never reused on a connection; psycopg's are ``_pg3_<n>``)
and executed with its values written as literals by psycopg itself (a ``Transformer`` of the
connection: its adapters and encoding, fixed when it connected). Which statements a connection has
is known as follows. ``PREPARE`` is not transactional (it stays when its transaction rolls back).
Nothing deallocates a statement of ours but psycopg's ``DEALLOCATE ALL`` (when it rolls back a
transaction, or sees a ``DROP``/``ALTER``/... result, with statements of its own prepared), which
deallocates all of them, the opening statement's too; a new connection has none. So:

- the opening statement's ``EXECUTE`` succeeding proves the connection still has every statement
  prepared after it; when it fails because the statement is gone, the transaction holds only the
  lock (nothing else was sent in it): it is rolled back and the query sent again with the
  ``PREPARE`` (every name is then forgotten and prepared again when used);
- a statement is recorded as prepared only once its query succeeded, and every name is forgotten
  when a query of this module fails (a statement may then be left prepared under a name no longer
  used: never a name used twice);
- ``closing`` runs only right after a successful ``opening`` of the same transaction, so the
  statement it executes by name is one prepared after the opening statement, or prepared in its own
  query.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Self

import psycopg
from psycopg import errors as pg_errors
from psycopg.abc import Params, Query
from psycopg.adapt import Transformer
from psycopg.copy import Copy, Writer
from psycopg.pq import PipelineStatus

log = logging.getLogger(__name__)

ADVISORY_KEY = 0x6E657574  # "neut"
BEGIN_WRITE = f"BEGIN; SELECT pg_advisory_xact_lock({ADVISORY_KEY})"
_BEGIN_WRITE = BEGIN_WRITE.encode()
_LOCK = f"SELECT pg_advisory_xact_lock({ADVISORY_KEY})".encode()
# The statements ``opening`` and ``closing`` send are planned with sequential scans off, and only
# they (the setting is the transaction's: put back to the session's own right after the opening one,
# kept for that in a placeholder setting of the transaction, ``neutrino.enable_seqscan``: ``SET LOCAL
# ... TO DEFAULT`` would put back the reset value, not a session-level ``SET``'s; and gone with the
# COMMIT after the closing one). Each of their reads is a lookup by key (a port, the
# network's subnets, its DHCP port, a MAC, each address looked ahead; the foreign-key checks and
# cascades of the insert and the delete), which an index answers in a few pages whatever the
# table's size. A prepared statement's generic plan is made from the statistics of the moment and
# kept until the next ANALYZE: once autovacuum has analysed the tables while small (early in a
# database's life), PostgreSQL planned sequential scans there, and a create read every address 16
# times over (the lookahead), more with each port, until the next ANALYZE (a create's backend CPU
# 0.7 -> 1.6 ms over 600 ports). ``SET LOCAL`` in the same simple query: no round trip more, and no
# other statement of the transaction planned under it.
_INDEXED = b"SET LOCAL enable_seqscan = off; EXECUTE "
_OPENING_INDEXED = (b"SELECT set_config('neutrino.enable_seqscan', current_setting('enable_seqscan'), true); "
                    + _INDEXED)
_OPENING_INDEXED_END = b"; SELECT set_config('enable_seqscan', current_setting('neutrino.enable_seqscan'), true)"


class PgState:
    """A connection's write transaction as far as this module knows it.

    ``pending``: begun, BEGIN and the lock not sent yet. ``quiet``: the opening statement (``opening``)
    was the last thing sent. ``done``: committed by ``closing``, the transaction not ended yet.
    ``watch``: any of the three (what ``PgCursor`` checks per statement). ``names``: the statements
    prepared, by their SQL text (``$n`` placeholders); ``made``: names given so far."""

    __slots__ = ("pending", "quiet", "done", "watch", "names", "made", "_literal")

    def __init__(self) -> None:
        self.pending = self.quiet = self.done = self.watch = False
        self.names: dict[str, bytes] = {}
        self.made = 0
        self._literal: Any = None

    def begin(self, pending: bool) -> None:
        """A transaction begins (``pending``: a write, its BEGIN and lock deferred)."""
        self.pending = self.watch = pending
        self.quiet = self.done = False

    def end(self) -> None:
        """The transaction ends (committed, rolled back or given back to the pool)."""
        self.pending = self.quiet = self.done = self.watch = False

    def rolled_back(self) -> None:
        """The transaction ends by a rollback: when ``closing`` had committed it already (the caller
        broke its word that nothing more would happen in it, or an exception came from outside),
        nothing is rolled back: said loudly, as the write's own error goes on up."""
        if self.done:
            log.error("a write failed after its transaction was committed with its last statement "
                      "(create_port or delete_port with last=True): what that statement wrote stays")
        self.end()

    def before(self, cur: psycopg.Cursor[Any] | psycopg.ServerCursor[Any]) -> None:
        """What goes before a statement sent on ``cur``: nothing after ``closing`` committed; the
        deferred BEGIN and lock (in their own round trip: one simple query, or two statements of a
        pipeline)."""
        if self.done:
            raise psycopg.ProgrammingError("a statement after the write transaction was committed")
        self.quiet = self.watch = False
        if self.pending:
            self.pending = False
            conn = cur.connection
            if conn.pgconn.pipeline_status == PipelineStatus.OFF:
                conn.execute(_BEGIN_WRITE, prepare=False)  # what the begin hook sent before
            else:  # (a simple query cannot go in a pipeline)
                conn.execute(b"BEGIN", prepare=False)
                conn.execute(_LOCK, prepare=False)

    def literals(self, conn: psycopg.Connection[Any], values: Iterable[Any]) -> bytes:
        """``values`` as SQL literals, separated by commas (psycopg's quoting for the connection)."""
        literal = self._literal
        if literal is None:
            literal = self._literal = Transformer.from_context(conn).as_literal
        return b",".join([literal(v) for v in values])

    def name(self, text: str) -> tuple[bytes, bytes]:
        """The name ``text`` is prepared under on the connection, and the ``PREPARE`` to send before
        its first use (b"" when prepared already)."""
        name = self.names.get(text)
        if name is not None:
            return name, b""
        self.made += 1
        name = f"neutrino_{self.made}".encode()
        return name, b"PREPARE " + name + b" AS " + text.encode() + b"; "


class PgCursor(psycopg.Cursor[Any]):
    """psycopg's cursor, sending a write transaction's deferred BEGIN and lock before its first
    statement (see ``PgState.before``)."""

    __slots__ = ("_neutrino",)

    def __init__(self, connection: psycopg.Connection[Any], *, row_factory: Any = None) -> None:
        super().__init__(connection, row_factory=row_factory)
        self._neutrino: PgState = connection.neutrino  # type: ignore[attr-defined]

    def execute(self, query: Query, params: Params | None = None, *, prepare: bool | None = None,
                binary: bool | None = None) -> Self:
        if self._neutrino.watch:
            self._neutrino.before(self)
        return super().execute(query, params, prepare=prepare, binary=binary)  # type: ignore[arg-type, misc]

    def executemany(self, query: Query, params_seq: Iterable[Params], *, returning: bool = False) -> None:
        if self._neutrino.watch:
            self._neutrino.before(self)
        super().executemany(query, params_seq, returning=returning)

    def stream(self, query: Query, params: Params | None = None, *, binary: bool | None = None,
               size: int = 1) -> Iterator[Any]:
        if self._neutrino.watch:
            self._neutrino.before(self)
        return super().stream(query, params, binary=binary, size=size)

    @contextmanager
    def copy(self, statement: Query, params: Params | None = None, *, writer: Writer | None = None
             ) -> Iterator[Copy]:
        if self._neutrino.watch:
            self._neutrino.before(self)
        with super().copy(statement, params, writer=writer) as copy:
            yield copy


class PgServerCursor(psycopg.ServerCursor[Any]):
    """psycopg's server-side cursor, as ``PgCursor``."""

    def execute(self, query: Query, params: Params | None = None, *, binary: bool | None = None,
                **kwargs: Any) -> Self:
        state: PgState = self.connection.neutrino  # type: ignore[attr-defined]
        if state.watch:
            state.before(self)
        return super().execute(query, params, binary=binary, **kwargs)


class PgConnection(psycopg.Connection[Any]):
    """psycopg's connection with its ``PgState`` and cursors (made by the engine's ``do_connect``)."""

    neutrino: PgState


def connect(*cargs: Any, **cparams: Any) -> PgConnection:
    conn = PgConnection.connect(*cargs, **cparams)
    conn.neutrino = PgState()
    conn.cursor_factory = PgCursor
    conn.server_cursor_factory = PgServerCursor
    return conn


_PLACEHOLDER = re.compile(r"\?")
_DOLLARS: dict[str, str] = {}


def dollars(sql: str) -> str:
    """``sql`` (``?`` placeholders, none inside a literal: ``Raw``'s convention) with ``$1``, ``$2``..."""
    text = _DOLLARS.get(sql)
    if text is None:
        n = iter(range(1, sql.count("?") + 1))
        text = _DOLLARS[sql] = _PLACEHOLDER.sub(lambda _m: f"${next(n)}", sql)
    return text


def opening(cur: psycopg.Cursor[Any], sql: str, params: tuple[Any, ...] | list[Any]) -> list[Any] | None:
    """The rows of ``sql`` (``?`` placeholders) with ``params``, sent with the write transaction's
    deferred BEGIN and lock in one round trip; None (nothing sent) unless they are pending."""
    conn = cur.connection
    state: PgState = conn.neutrino  # type: ignore[attr-defined]
    if not state.pending or state.done or conn.pgconn.pipeline_status != PipelineStatus.OFF:
        return None
    text = dollars(sql)
    args = state.literals(conn, params)  # (before anything is sent: a value psycopg refuses sends nothing)
    for attempt in (1, 2):
        name, prepare = state.name(text)
        if prepare:  # a statement prepared anew: the others are vouched for by this one from now on
            state.names.clear()
        state.pending = state.watch = False
        try:
            psycopg.Cursor.execute(cur, prepare + _BEGIN_WRITE + b"; " + _OPENING_INDEXED + name + b"(" + args
                                   + b")" + _OPENING_INDEXED_END, prepare=False)
        except pg_errors.InvalidSqlStatementName:
            state.names.clear()
            if prepare or attempt == 2:
                raise
            # deallocated (psycopg's DEALLOCATE ALL): the transaction holds only the lock; again
            conn.rollback()
            state.pending = state.watch = True
            continue
        except BaseException:
            state.names.clear()
            raise
        if prepare:
            state.names[text] = name
        # the statement's rows: the results of PREPARE (when sent), BEGIN, the lock, the setting kept
        # and SET come before
        for _ in range(5 if prepare else 4):
            cur.nextset()
        rows = cur.fetchall()
        state.quiet = state.watch = True
        return rows
    raise AssertionError("unreachable")


def closing(cur: psycopg.Cursor[Any], sql: str, params: list[Any]) -> bool:
    """``sql`` (``?`` placeholders; no rows back) with ``params`` and then COMMIT, in one round trip,
    if the transaction's opening statement (``opening``) was the last thing sent; False (nothing
    sent) otherwise. The caller guarantees nothing more is written in the transaction: any statement
    after it is refused."""
    conn = cur.connection
    state: PgState = conn.neutrino  # type: ignore[attr-defined]
    if not state.quiet or state.pending or state.done or conn.pgconn.pipeline_status != PipelineStatus.OFF:
        return False
    args = state.literals(conn, params)
    name, prepare = state.name(dollars(sql))
    state.quiet = False
    try:
        psycopg.Cursor.execute(cur, prepare + _INDEXED + name + b"(" + args + b"); COMMIT", prepare=False)
    except BaseException:
        state.names.clear()
        state.watch = False
        raise
    if prepare:
        state.names[dollars(sql)] = name
    state.done = state.watch = True
    return True
