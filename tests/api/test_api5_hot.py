"""The create path's lighter pieces: the SQLite writer connection kept between write transactions,
ids and request ids without the UUID object, the timestamp formatted once per second."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from neutrino.api.common import parse_json
from neutrino.db.session import Database, now
from neutrino.errors import InvalidInput
from neutrino.services.ids import RANDOM, random_uuid


def _count(db: Database) -> int:
    with db.read() as s:
        return int(s.execute(text("SELECT count(*) FROM neutrino_markers WHERE name LIKE 'api5-%'")).scalar_one())


def test_kept_writer_commits_rolls_back_and_leaves_reads_alone(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/w.db")
    try:
        drivers = set()
        for i in range(3):
            with db.write() as s:
                conn = s.info["neutrino_conn"]
                drivers.add(id(conn.connection.driver_connection))
                s.execute(text("INSERT INTO neutrino_markers (name, value) VALUES (:n, 1)"), {"n": f"api5-{i}"})
        assert len(drivers) == 1  # one connection for every write
        assert _count(db) == 3
        with pytest.raises(RuntimeError), db.write() as s:
            s.execute(text("INSERT INTO neutrino_markers (name, value) VALUES ('api5-x', 1)"))
            raise RuntimeError("boom")
        assert _count(db) == 3  # rolled back
        with db.read() as s:  # a read never runs on a connection marked as the writer
            assert not s.info["neutrino_conn"].info.get("writer")
        with db.write() as s:  # the next write after a failure works
            s.execute(text("INSERT INTO neutrino_markers (name, value) VALUES ('api5-y', 1)"))
            assert s.info["neutrino_conn"].info.get("writer") is True
        assert _count(db) == 4
        # writes from several threads stay serialised on the kept connection
        errors: list[BaseException] = []

        def writer(k: int) -> None:
            try:
                for j in range(10):
                    with db.write() as s:
                        s.execute(text("INSERT INTO neutrino_markers (name, value) VALUES (:n, 1)"),
                                  {"n": f"api5-t{k}-{j}"})
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors and _count(db) == 44
    finally:
        db.dispose()
    assert db.engine.pool.checkedout() == 0  # dispose gives the kept connection back


def test_random_uuid_is_a_uuid4() -> None:
    seen = {random_uuid() for _ in range(3000)}
    assert len(seen) == 3000
    for v in seen:
        u = uuid.UUID(v)
        assert str(u) == v and u.version == 4 and u.variant == uuid.RFC_4122
    assert {v[19] for v in seen} == set("89ab")  # the variant's free bits vary
    assert {v[14] for v in seen} == {"4"} and len({v[15] for v in seen}) == 16  # the version, then random
    mac = RANDOM.new_mac(None)  # type: ignore[arg-type]  # random MACs read no session
    assert mac.startswith("fa:16:3e:") and len(mac) == 17 and int(mac[9:].replace(":", ""), 16) >= 0


def test_now_is_the_current_second() -> None:
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    for _ in range(3):
        before = datetime.now(UTC).strftime(fmt)
        got = now()
        after = datetime.now(UTC).strftime(fmt)
        assert before <= got <= after and len(got) == 20


@pytest.mark.parametrize("raw, expected", [
    (b'{"port": {"name": "x"}}', {"port": {"name": "x"}}),
    ('{"a": [1, 2.5]}'.encode("utf-16"), {"a": [1, 2.5]}),
    (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),
    (b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001F600"}),
])
def test_parse_json_reads_what_json_loads_reads(raw: bytes, expected: object) -> None:
    assert parse_json(raw) == expected


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b"{", b'{"a": "\\ud800"}', b"\xff\xfe\x00"])
def test_parse_json_refuses_what_it_refused(raw: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_json(raw)


@pytest.mark.parametrize("data, status", [({"port": {"id": "x", "n": [1, None]}}, 201), ([], 200), ({"a": "é"}, 409)])
def test_json_response_headers_as_starlette_writes_them(data: object, status: int) -> None:
    from starlette.responses import Response

    from neutrino.api.common import dumps, encoded_response, json_response

    for fast in (json_response(data, status), encoded_response(dumps(data), status)):
        rid = fast.headers["x-openstack-request-id"]
        assert rid.startswith("req-") and uuid.UUID(rid[4:]).version == 4
        generic = Response(dumps(data), status_code=status, media_type="application/json",
                           headers={"X-Openstack-Request-Id": rid})
        assert (fast.status_code, fast.body, fast.raw_headers) == (generic.status_code, generic.body,
                                                                    generic.raw_headers)
        assert fast.media_type == generic.media_type and fast.background is None
    plain = json_response(None, 204)
    assert plain.status_code == 204 and plain.body == b"" and b"content-type" not in dict(plain.raw_headers)
