"""Migration 9: the servers' ``fault`` column (Nova's latest instance fault). A version-8 database
with servers is upgraded in place: the column is added, every server keeps its row and has no
fault; a new database has the column from the start; migrating again changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import inspect, text

from neutrino.db import models
from neutrino.db.session import Database
from neutrino.services.cloud import Cloud
from tests.api.api_helpers import cloud_on_fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Cloud]:
    yield from cloud_on_fresh_database(request, tmp_path, "v9")


def _columns(db: Database) -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns("servers")}


def _servers(db: Database) -> list[tuple[Any, ...]]:
    with db.engine.connect() as c:
        return [tuple(r) for r in c.execute(text("SELECT id, name, status, host FROM servers ORDER BY id")).all()]


def test_a_version_8_database_with_servers_gets_the_fault_column(cloud: Cloud) -> None:
    assert models.SCHEMA_VERSION == 9 and cloud.db.schema_version() == 9
    assert "fault" in _columns(cloud.db)  # a new database has it
    with cloud.db.engine.begin() as c:
        for n, status in enumerate(("ACTIVE", "SHUTOFF")):
            c.execute(text("INSERT INTO servers (id, name, project_id, description, created_at, updated_at, "
                           "revision_number, tags, created_seq, user_id, flavor_id, image_id, host, status, "
                           "availability_zone, created_port_ids, security_group_names, fault) VALUES "
                           "(:id, :name, 'p', '', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z', 0, '[]', "
                           ":seq, 'u', 'f', 'i', 'compute1', :status, 'nova', '[]', '[]', NULL)"),
                      {"id": f"0000000{n}-0000-4000-8000-000000000000", "name": f"vm{n}", "seq": 100 + n,
                       "status": status})
        c.execute(text("ALTER TABLE servers DROP COLUMN fault"))  # back to version 8
        c.execute(text("DELETE FROM neutrino_schema WHERE version >= 9"))
    url = cloud.db.url
    cloud.db.dispose()
    old = Database(url, migrate=False)
    assert old.schema_version() == 8 and "fault" not in _columns(old)
    before = _servers(old)
    old.dispose()
    db = Database(url)
    try:
        assert db.schema_version() == 9 and "fault" in _columns(db)
        assert _servers(db) == before and len(before) == 2  # every row kept
        with db.engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM servers WHERE fault IS NULL")).scalar() == 2
        assert db.migrate() == 9  # opening it again changes nothing
    finally:
        db.dispose()
