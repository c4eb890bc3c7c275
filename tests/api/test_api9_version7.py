"""Migration 7 (api9): a version-6 database with ports is upgraded in place: the addresses' index on
``network_id`` is gone, every row is kept, the kept counters still equal what counting gives, and
creating and deleting ports goes on as before (the new one gets the lowest free address)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, text

from neutrino.db import models
from neutrino.db.session import Database
from neutrino.scenarios.model import default_scenario
from neutrino.services import networks, ports
from neutrino.services.cloud import Cloud, prepare
from tests.api.api_helpers import cloud_on_fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Cloud]:
    yield from cloud_on_fresh_database(request, tmp_path, "v7")


def indexes(db: Database, table: str = "ipallocations") -> set[str]:
    """The names of ``table``'s indexes, on either database."""
    with db.engine.connect() as c:
        if db.engine.dialect.name == "postgresql":
            q = f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}'"
        else:
            q = f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}'"
        return {n for (n,) in c.execute(text(q)).all()}


def counted_and_checked(c: Connection) -> dict[str, int]:
    """The ports per project, after checking that the kept counters are what counting gives."""
    counted: dict[str, int] = dict(c.execute(text("SELECT project_id, count(*) FROM ports GROUP BY project_id")).all())
    kept = {p: n for p, n in c.execute(text("SELECT project_id, ports FROM port_usage")).all() if n}
    seq = c.execute(text("SELECT value FROM neutrino_counters WHERE name = 'created_seq'")).scalar()
    top = c.execute(text("SELECT max(created_seq) FROM ports")).scalar()
    assert kept == counted  # the kept usage is the count
    assert seq is not None and top is not None and seq >= top
    return counted


def _state(db: Database) -> tuple[Any, ...]:
    with db.engine.connect() as c:
        rows = c.execute(text("SELECT id, project_id, mac_address, created_seq FROM ports ORDER BY id")).all()
        ips = c.execute(text("SELECT subnet_id, ip_address, port_id, network_id FROM ipallocations "
                             "ORDER BY subnet_id, ip_address")).all()
        counted = counted_and_checked(c)
    return tuple(rows), tuple(ips), counted


def port_freed_and_taken_again(db: Database, admin: Any, net: str, made: list[str],
                               freed: list[str]) -> tuple[Cloud, dict[str, Any]]:
    """On an upgraded database: the second port made deleted, then a port created for ``p2``, which
    gets the lowest free address (the freed one, asserted); the cloud and that port."""
    upgraded = Cloud(db, default_scenario())
    with upgraded.write(admin) as tx:
        ports.delete_port(tx, made[1])
    with upgraded.write(admin) as tx:
        again = ports.create_port(tx, prepare("port", {"network_id": net, "project_id": "p2"}))
    assert [f["ip_address"] for f in again["fixed_ips"]] == freed  # the lowest free address: the freed one
    return upgraded, again


def test_a_version_6_database_with_ports_is_upgraded(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    assert models.SCHEMA_VERSION == 9 and cloud.db.schema_version() == 9
    assert "ix_ipallocations_network_id" not in indexes(cloud.db)  # a new database never had it
    with cloud.write(admin) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "n"}))["id"]
        sub = networks.create_subnet(tx, prepare("subnet", {"network_id": net, "ip_version": 4,
                                                            "cidr": "10.6.0.0/24"}))["id"]
    made = []
    for project in ("p1", "p1", "p2", "p3"):
        with cloud.write(admin) as tx:
            made.append(ports.create_port(tx, prepare("port", {"network_id": net, "project_id": project}))["id"])
    with cloud.db.engine.begin() as c:  # back to version 6: the index as version 6 made it
        c.execute(text("CREATE INDEX ix_ipallocations_network_id ON ipallocations (network_id)"))
        c.execute(text("DELETE FROM neutrino_schema WHERE version >= 7"))
    url = cloud.db.url
    cloud.db.dispose()
    old = Database(url, migrate=False)
    assert old.schema_version() == 6 and "ix_ipallocations_network_id" in indexes(old)
    before = _state(old)
    old.dispose()
    db = Database(url)
    try:
        assert db.schema_version() == 9
        assert "ix_ipallocations_network_id" not in indexes(db)
        assert _state(db) == before  # every row kept, the counters still the counts
        assert before[2] == {"p1": 2, "p2": 1, "p3": 1, admin.project_id: 1}  # and the DHCP port
        _, again = port_freed_and_taken_again(db, admin, net, made,
                                              [ip for _, ip, pid, _ in before[1] if pid == made[1]])
        assert again["fixed_ips"][0]["subnet_id"] == sub
        rows, _, counted = _state(db)
        assert counted == {"p1": 1, "p2": 2, "p3": 1, admin.project_id: 1}
        assert len(rows) == len(before[0])
        assert db.migrate() == 9  # opening it again changes nothing
    finally:
        db.dispose()
