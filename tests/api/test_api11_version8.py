"""Migration 8 (api11) and the port create's single insert statement on PostgreSQL.

A version-7 database with ports is upgraded in place: on PostgreSQL the ports' index on ``network_id``
alone is replaced by one on (``device_owner``, ``network_id``), on SQLite the indexes stay; every row
is kept and the kept counters still equal what counting gives. On PostgreSQL, in a new database whose
tables were never analysed, the create's MAC check reads the unique (network, MAC) index instead of
scanning the network's ports. A port with several addresses and groups, written as one statement on
PostgreSQL, is whole, and moves the counters the triggers keep."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from neutrino.db import models
from neutrino.db.session import Database
from neutrino.services import networks, ports, securitygroups
from neutrino.services.cloud import Cloud, prepare
from tests.api.api_helpers import cloud_on_fresh_database
from tests.api.test_api9_version7 import counted_and_checked, indexes, port_freed_and_taken_again


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Cloud]:
    yield from cloud_on_fresh_database(request, tmp_path, "v8")


def _pg(db: Database) -> bool:
    return db.engine.dialect.name == "postgresql"


def _counted(db: Database) -> tuple[Any, ...]:
    """The ports and addresses, after checking that the kept counters are what counting gives."""
    with db.engine.connect() as c:
        rows = c.execute(text("SELECT id, project_id, network_id, mac_address, device_owner, created_seq "
                              "FROM ports ORDER BY id")).all()
        ips = c.execute(text("SELECT subnet_id, ip_address, port_id FROM ipallocations "
                             "ORDER BY subnet_id, ip_address")).all()
        counted = counted_and_checked(c)
    return tuple(rows), tuple(ips), counted


def _network(cloud: Cloud, cidr: str = "10.8.0.0/24") -> tuple[str, str]:
    with cloud.write(cloud.admin_context()) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "n"}))["id"]
        sub = networks.create_subnet(tx, prepare("subnet", {"network_id": net, "ip_version": 4, "cidr": cidr}))
    return net, sub["id"]


def test_a_version_7_database_with_ports_is_upgraded(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    pg = _pg(cloud.db)
    assert models.SCHEMA_VERSION == 9 and cloud.db.schema_version() == 9
    new = indexes(cloud.db, "ports")  # what a new database has
    if pg:
        assert "ix_ports_device_owner_network_id" in new and "ix_ports_network_id" not in new
    else:
        assert "ix_ports_network_id" in new and "ix_ports_device_owner_network_id" not in new
    net, _ = _network(cloud)
    made = []
    for project in ("p1", "p1", "p2", "p3"):
        with cloud.write(admin) as tx:
            made.append(ports.create_port(tx, prepare("port", {"network_id": net, "project_id": project}))["id"])
    with cloud.db.engine.begin() as c:  # back to version 7: the ports' indexes as version 7 made them
        if pg:
            c.execute(text("DROP INDEX ix_ports_device_owner_network_id"))
            c.execute(text("CREATE INDEX ix_ports_network_id ON ports (network_id)"))
        c.execute(text("DELETE FROM neutrino_schema WHERE version >= 8"))
    url = cloud.db.url
    cloud.db.dispose()
    old = Database(url, migrate=False)
    assert old.schema_version() == 7
    old_indexes = indexes(old, "ports")
    assert "ix_ports_network_id" in old_indexes and "ix_ports_device_owner_network_id" not in old_indexes
    before = _counted(old)
    old.dispose()
    db = Database(url)
    try:
        assert db.schema_version() == 9
        assert indexes(db, "ports") == new  # as a new database's
        assert _counted(db) == before  # every row kept, the counters still the counts
        assert before[2] == {"p1": 2, "p2": 1, "p3": 1, admin.project_id: 1}  # and the DHCP port
        upgraded, again = port_freed_and_taken_again(db, admin, net, made,
                                                     [ip for _, ip, pid in before[1] if pid == made[1]])
        with upgraded.write(admin) as tx:  # the MAC check still refuses a MAC taken on the network
            taken = again["mac_address"]
            with pytest.raises(Exception, match="MacAddressInUse|is in use"):
                ports.create_port(tx, prepare("port", {"network_id": net, "mac_address": taken}))
        rows, _, counted = _counted(db)
        assert counted == {"p1": 1, "p2": 2, "p3": 1, admin.project_id: 1}
        assert len(rows) == len(before[0])
        assert db.migrate() == 9  # opening it again changes nothing
        assert indexes(db, "ports") == new
    finally:
        db.dispose()


def _generic_plan(db: Database, sql: str, params: tuple[Any, ...]) -> str:
    """PostgreSQL's generic plan of ``sql`` (a prepared statement's plan once it is reused), run."""
    n = iter(range(1, 100))
    numbered = re.sub(r"\?", lambda _m: f"${next(n)}", sql)
    with db.engine.connect() as c:
        c.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        c.exec_driver_sql(f"PREPARE head AS {numbered}")
        args = ", ".join(psycopg.sql.quote(v) for v in params)  # (plain values: no % to escape)
        plan = "\n".join(r[0] for r in c.exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE head({args})").all())
        c.exec_driver_sql("DEALLOCATE head")
    return plan


@pytest.mark.postgres
@pytest.mark.parametrize("cloud", ["postgres"], indirect=True)
def test_the_mac_check_reads_the_unique_index_on_a_new_database(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, _ = _network(cloud)
    for _ in range(40):
        with cloud.write(admin) as tx:
            ports.create_port(tx, prepare("port", {"network_id": net}))
    with cloud.db.engine.connect() as c:  # never analysed: what made the planner pick the plain index
        assert c.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'ports'")).scalar() == -1
    mac = "fa:16:3e:08:08:08"
    plan = _generic_plan(cloud.db, ports._NETWORK_HEAD[True],
                         (admin.project_id, True, mac, admin.project_id, admin.project_id, net))
    assert "using uq_port_mac on ports m" in plan, plan
    assert "Filter: ((mac_address)::text = $3)" not in plan, plan  # (the scan of the network's ports)
    # the DHCP-port lookup reads its own index, not every port of the network
    assert "ix_ports_device_owner_network_id on ports p" in plan, plan


def test_a_port_with_several_addresses_and_groups_is_written_whole(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, sub = _network(cloud)
    with cloud.write(admin) as tx:
        sub2 = networks.create_subnet(tx, prepare("subnet", {"network_id": net, "ip_version": 4,
                                                             "cidr": "10.9.0.0/24"}))["id"]
        groups = [securitygroups.create_group(tx, prepare("security_group", {"name": f"g{i}"}))["id"]
                  for i in range(2)]
    with cloud.write(admin) as tx:
        first = ports.create_port(tx, prepare("port", {"network_id": net}))  # (makes the DHCP port)
    _, _, counted0 = _counted(cloud.db)
    with cloud.write(admin) as tx:
        made = ports.create_port(tx, prepare("port", {
            "network_id": net, "security_groups": groups,
            "fixed_ips": [{"subnet_id": sub}, {"subnet_id": sub2}, {"subnet_id": sub2, "ip_address": "10.9.0.77"}]}))
    assert made["security_groups"] == groups
    assert [(f["subnet_id"], f["ip_address"]) for f in made["fixed_ips"]] == [
        (sub, "10.8.0.4"), (sub2, "10.9.0.3"), (sub2, "10.9.0.77")]
    with cloud.read(admin) as tx:
        assert ports.get_port(tx, made["id"]) == made  # what create answered is what reading gives
    rows, ips, counted = _counted(cloud.db)
    assert counted[admin.project_id] == counted0[admin.project_id] + 1
    assert {r[:2] for r in ips if r[2] == made["id"]} == {(sub, "10.8.0.4"), (sub2, "10.9.0.3"), (sub2, "10.9.0.77")}
    seqs = {r[0]: r[5] for r in rows}
    assert seqs[made["id"]] == max(seqs.values())
    assert seqs[made["id"]] > seqs[first["id"]]
    with cloud.db.engine.connect() as c:
        kept = c.execute(text("SELECT value FROM neutrino_counters WHERE name = 'created_seq'")).scalar()
        bound = c.execute(text("SELECT security_group_id FROM port_security_groups WHERE port_id = :p ORDER BY seq"),
                          {"p": made["id"]}).scalars().all()
    assert kept == seqs[made["id"]] and bound == groups
