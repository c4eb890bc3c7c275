"""Round nine of issue #17 (api9): the request's own work made lighter, with the same answers.

- ``app.url_path`` is ``request.url.path`` (Starlette's URL, made from the scope) for every path and
  Host header, odd ones included (they take Starlette's URL itself).
- A token's context is made once and given again for the same token; a new token (another user, other
  roles) gets its own, a revoked or expired one none.
- SQLite's kept writer begins and commits on the driver, with one session for its transactions: what
  the ORM and the hot paths' statements write in one transaction is committed together, or rolled
  back together on an error (the next write then works); a statement listener added between two
  writes sees the second's statements; no row object stays in the session after a write.
"""

from __future__ import annotations

import random
import sqlite3
import time
from typing import Any

import pytest
from sqlalchemy import event, select, text
from starlette.requests import Request

from neutrino.api.app import url_path
from neutrino.api.identity import Auth, Token
from neutrino.db import models
from neutrino.db.session import Database, raw
from neutrino.scenarios.model import default_scenario
from neutrino.services import networks, ports
from neutrino.services.cloud import Cloud, prepare


def _scope(path: str, host: bytes | None, server: tuple[str, int] | None, query: bytes = b"") -> dict[str, Any]:
    headers = [(b"host", host)] if host is not None else []
    return {"type": "http", "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode("utf-8", "replace"),
            "query_string": query, "root_path": "", "headers": headers + [(b"accept", b"*/*")], "server": server}


PATHS = ["/", "/v2.0/ports", "//v2.0//ports/", "/v2.0/ports.json", "/v2.0/ports/a?b", "/v2.0/ports/a#b",
         "/v2.0/a\\b", "/v2.0/a\tb", "/v2.0/a\nb", "/v2.0/a\rb", "/v2.0/é/ü", "/v2.0/%3F", "v2.0/ports", "",
         "/v2.0/a b", "/v2.0/a;b=c", "/v2.0/@x", "/v2.0/[x]", "///", "/v2.0/\x00"]
HOSTS: list[bytes | None] = [None, b"localhost", b"127.0.0.1:9696", b"[::1]:9696", b"ex.com:80", b"a/b", b"a?b", b"a#b",
                             b"user@host", b"[bad", b"h\xc3\xa9", b"", b"h:99999", b"h:x", b"a b", b"h%41"]
SERVERS: list[tuple[str, int] | None] = [("127.0.0.1", 9696), ("::1", 80), None]


def test_url_path_is_starlettes_for_every_path_and_host() -> None:
    rng = random.Random(9)
    cases = [(p, h, s) for p in PATHS for h in HOSTS for s in SERVERS]
    alphabet = "/a?#\\\t\n\r%é:@[] .;"
    cases += [("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))), rng.choice(HOSTS), rng.choice(SERVERS))
              for _ in range(2000)]
    fast = 0
    for path, host, server in cases:
        try:
            want: str | None = Request(_scope(path, host, server)).url.path
        except Exception:  # Starlette's URL refuses it: so must url_path (it makes the same URL)
            want = None
        try:
            got: str | None = url_path(Request(_scope(path, host, server)))
        except Exception:
            got = None
        assert got == want, (path, host, server)
        fast += got == path
    assert fast > 100  # the plain cases (most requests) are answered from the scope


def _token(tid: str, roles: tuple[tuple[str, str], ...], project: str | None = "p1",
           expires: float | None = None) -> Token:
    now = time.time()
    return Token(tid, "u1", "user", {"id": "default"}, project, "proj", {"id": "default"}, roles,
                 expires if expires is not None else now + 3600, now, ("password",))


def _request(tok: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/v2.0/ports", "headers": [(b"x-auth-token", tok.encode())],
                    "query_string": b""})


def test_a_tokens_context_is_kept_per_token() -> None:
    auth = Auth("keystone", default_scenario().identity)
    member = _token("t1", (("r1", "member"), ("r2", "reader")))
    auth.tokens["t1"] = member
    first = auth.context(_request("t1"))
    assert first is not None and (first.project_id, first.user_id, first.is_admin) == ("p1", "u1", False)
    assert first.roles == ("member", "reader")
    assert auth.context(_request("t1")) is first  # kept
    # the same id given to a token with other roles (re-issued): its own context, not the kept one
    auth.tokens["t1"] = _token("t1", (("r0", "admin"), ("r1", "member")))
    again = auth.context(_request("t1"))
    assert again is not None and again is not first and again.is_admin and again.roles == ("admin", "member")
    auth.tokens.pop("t1")  # revoked
    assert auth.context(_request("t1")) is None
    auth.tokens["t2"] = _token("t2", (("r1", "member"),), expires=time.time() - 1)  # expired
    assert auth.context(_request("t2")) is None
    auth.tokens["t3"] = _token("t3", (("r1", "member"),), project=None)  # unscoped
    assert auth.context(_request("t3")) is None
    for i in range(300):  # contexts of tokens since revoked do not pile up
        auth.tokens[f"x{i}"] = _token(f"x{i}", (("r1", "member"),))
        assert auth.context(_request(f"x{i}")) is not None
        auth.tokens.pop(f"x{i}")
    assert len(auth._contexts) <= 2 * len(auth.tokens) + 65


@pytest.fixture
def cloud(tmp_path: Any) -> Any:
    db = Database(f"sqlite:///{tmp_path}/w.db")
    yield Cloud(db, default_scenario())
    db.dispose()


def _network(cloud: Cloud) -> str:
    admin = cloud.admin_context()
    with cloud.write(admin) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "n"}))
        networks.create_subnet(tx, prepare("subnet", {"network_id": net["id"], "ip_version": 4, "cidr": "10.5.0.0/24"}))
    return str(net["id"])


def _count(cloud: Cloud, table: str) -> int:
    with cloud.db.read() as s:
        return int(s.scalar(text(f"SELECT count(*) FROM {table}")))


def test_the_orm_and_the_statements_commit_together(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net = _network(cloud)
    before = _count(cloud, "ports")
    with cloud.write(admin) as tx:
        made = ports.create_port(tx, prepare("port", {"network_id": net}))  # statements (and the DHCP port: ORM)
        tx.session.add(models.Quota(project_id="orm", resource="port", limit=7))  # the ORM, after the statements
        raw(tx.session).execute("UPDATE ports SET name = 'raw' WHERE id = ?", (made["id"],))  # flushes the ORM first
    assert _count(cloud, "ports") == before + 2  # the port and the network's DHCP port
    with cloud.db.read() as s:
        assert s.scalar(select(models.Port.name).where(models.Port.id == made["id"])) == "raw"
        assert s.scalar(select(models.Quota.limit).where(models.Quota.project_id == "orm")) == 7
    session = cloud.db._writer_session
    assert session is not None and not session.identity_map and not session.in_transaction()
    # a Core statement on the ORM's connection, then the hot path's statements
    with cloud.write(admin) as tx:
        tx.session.connection().execute(text("UPDATE ports SET description = 'core' WHERE id = :i"), {"i": made["id"]})
        ports.create_port(tx, prepare("port", {"network_id": net}))
    with cloud.db.read() as s:
        assert s.scalar(select(models.Port.description).where(models.Port.id == made["id"])) == "core"
    assert _count(cloud, "ports") == before + 3


def test_an_error_rolls_back_the_orm_and_the_statements(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net = _network(cloud)
    with cloud.write(admin) as tx:
        ports.create_port(tx, prepare("port", {"network_id": net}))
    before = (_count(cloud, "ports"), _count(cloud, "ipallocations"), _count(cloud, "quotas"))
    for orm_first in (True, False):
        with pytest.raises(RuntimeError), cloud.write(admin) as tx:
            if orm_first:
                tx.session.add(models.Quota(project_id="gone", resource="port", limit=1))
                tx.session.flush()
            made = ports.create_port(tx, prepare("port", {"network_id": net}))
            if not orm_first:
                tx.session.add(models.Quota(project_id=made["id"], resource="port", limit=1))
                tx.session.flush()
            raise RuntimeError("refused")
        assert (_count(cloud, "ports"), _count(cloud, "ipallocations"), _count(cloud, "quotas")) == before
        with cloud.write(admin) as tx:  # the next write works, on a fresh connection
            assert raw(tx.session).scalar("SELECT count(*) FROM ports") == before[0]
    # an error from the database itself (a duplicate key) too
    with pytest.raises(sqlite3.IntegrityError), cloud.write(admin) as tx:
        made = ports.create_port(tx, prepare("port", {"network_id": net}))
        dup = "INSERT INTO quotas (project_id, resource, \"limit\") VALUES (?, 'x', 1)"
        raw(tx.session).execute(dup, (made["id"],))
        raw(tx.session).execute(dup, (made["id"],))
    assert (_count(cloud, "ports"), _count(cloud, "ipallocations"), _count(cloud, "quotas")) == before


def test_a_listener_added_between_writes_sees_the_next_ones(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net = _network(cloud)
    with cloud.write(admin) as tx:
        ports.create_port(tx, prepare("port", {"network_id": net}))
    seen: list[str] = []

    def count(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(cloud.db.engine, "before_cursor_execute", count)
    try:
        with cloud.write(admin) as tx:
            ports.create_port(tx, prepare("port", {"network_id": net}))
    finally:
        event.remove(cloud.db.engine, "before_cursor_execute", count)
    assert any(s.startswith("INSERT INTO ports") for s in seen), seen
    assert 1 <= len(seen) <= 4


def _receiver(messages: list[dict[str, Any]]) -> Any:
    it = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(it)
    return receive


BODIES: list[list[dict[str, Any]]] = [
    [{"type": "http.request", "body": b'{"port": {}}', "more_body": False}],
    [{"type": "http.request", "body": b"", "more_body": False}],
    [{"type": "http.request"}],
    [{"type": "http.request", "body": b'{"a"', "more_body": True}, {"type": "http.request", "body": b"", "more_body": True},
     {"type": "other"}, {"type": "http.request", "body": b': 1}', "more_body": False}],
]


def test_read_limited_reads_what_starlette_reads() -> None:
    import asyncio

    from starlette.requests import ClientDisconnect

    from neutrino.api.common import MAX_BODY, RequestTooLarge, read_limited

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    for messages in BODIES:
        want = asyncio.run(Request(scope, _receiver(messages)).body())
        request = Request(scope, _receiver(messages))
        assert asyncio.run(read_limited(request)) == want
        assert asyncio.run(request.body()) == want  # kept: body() reads no more messages
        assert asyncio.run(read_limited(request)) == want
    half = b" " * (MAX_BODY // 2 + 1)
    with pytest.raises(RequestTooLarge):  # past the limit in chunks, no length given
        asyncio.run(read_limited(Request(scope, _receiver([{"type": "http.request", "body": half, "more_body": True}] * 3))))
    exact = [{"type": "http.request", "body": b"x" * (MAX_BODY - 1), "more_body": True},
             {"type": "http.request", "body": b"y", "more_body": False}]
    assert len(asyncio.run(read_limited(Request(scope, _receiver(exact))))) == MAX_BODY
    gone = Request(scope, _receiver([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]))
    with pytest.raises(ClientDisconnect):
        asyncio.run(read_limited(gone))
    assert gone._is_disconnected
    consumed = Request(scope, _receiver(BODIES[0]))
    asyncio.run(consumed.stream().__anext__())  # the whole body read by someone else, not kept
    with pytest.raises(RuntimeError):
        asyncio.run(read_limited(consumed))
