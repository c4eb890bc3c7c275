"""What the database's triggers keep (migration 6) stays exact, on SQLite and PostgreSQL:

- ``port_usage`` is each project's ``count(*)`` of ports after every kind of change: the create's SQL
  inserts, the ORM's ports (DHCP, router interfaces), deletes by SQL and by the ORM, a network's
  delete taking its DHCP port, a port moved to another project, a rolled-back create; and the quota
  check refuses on it.
- ``ipam_next`` (where IPAM's lowest-free scan may start) never changes the address a port gets: a
  random mix of automatic and explicit addresses, deletes, address updates and pool changes, each
  automatic create compared with the lowest free address read in full just before.
- The port listing kept by the ``ports_view`` marker follows every change of what a port's view
  reads (the port, its addresses, its groups, a network's owner), made here or by another process;
  a listing inside a write transaction (which may be rolled back) is never kept.
- A port numbered in its insert continues the creation sequence as ``next_seq`` would have.
- A version-5 database is upgraded: counts filled from the ports it has, triggers in place.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from neutrino.db import models
from neutrino.db.session import Database
from neutrino.errors import Conflict, InvalidInput
from neutrino.scenarios.model import default_scenario
from neutrino.services import ipam, networks, ports, quotas, routers, securitygroups
from neutrino.services.cloud import Cloud, prepare
from neutrino.services.core import Context
from tests.api.api_helpers import cloud_on_fresh_database

ALICE = Context("alice-project", "alice", False, ("member", "reader"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Cloud]:
    yield from cloud_on_fresh_database(request, tmp_path, "kept")


def _network(cloud: Cloud, ctx: Context, cidr: str = "10.9.0.0/24", **subnet: Any) -> tuple[str, str]:
    with cloud.write(ctx) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "kept"}))
        sub = networks.create_subnet(tx, prepare("subnet", {"network_id": net["id"], "ip_version": 4,
                                                            "cidr": cidr, **subnet}))
    return net["id"], sub["id"]


def _create(cloud: Cloud, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    with cloud.write(ctx) as tx:
        return ports.create_port(tx, prepare("port", body))


def _usage_is_count(cloud: Cloud) -> dict[str, int]:
    with cloud.db.engine.connect() as c:
        counted = dict(c.execute(text("SELECT project_id, count(*) FROM ports GROUP BY project_id")).all())
        kept = {p: n for p, n in c.execute(text("SELECT project_id, ports FROM port_usage")).all() if n}
    assert kept == counted
    return kept


def test_port_usage_is_the_count_of_ports_whatever_changes_them(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, sub = _network(cloud, admin)
    alice_net, _ = _network(cloud, ALICE, "10.8.0.0/24")
    vm = _create(cloud, admin, {"network_id": net, "device_owner": "compute:nova"})  # and the DHCP port (ORM)
    mine = [_create(cloud, ALICE, {"network_id": alice_net, "device_owner": "compute:nova"}) for _ in range(3)]
    _create(cloud, admin, {"network_id": net, "project_id": "bob-project"})
    assert _usage_is_count(cloud)[ALICE.project_id] == 4  # three and the DHCP port of alice's network
    with cloud.write(admin) as tx:  # a router interface: a port made by the ORM
        router = routers.create_router(tx, prepare("router", {"name": "r"}))
        routers.add_interface(tx, router["id"], {"subnet_id": sub})
    _usage_is_count(cloud)
    with pytest.raises(RuntimeError), cloud.write(admin) as tx:  # rolled back: counted neither way
        ports.create_port(tx, prepare("port", {"network_id": net}))
        raise RuntimeError("roll back")
    _usage_is_count(cloud)
    with cloud.write(ALICE) as tx:
        ports.delete_port(tx, mine[0]["id"])  # the SQL delete
    with cloud.write(admin) as tx:
        routers.remove_interface(tx, router["id"], {"subnet_id": sub})  # an ORM delete
        tx.session.get(models.Port, vm["id"]).project_id = "carol-project"  # moved to another project
    assert _usage_is_count(cloud)["carol-project"] == 1
    with cloud.write(ALICE) as tx:
        for p in mine[1:]:
            ports.delete_port(tx, p["id"])
        networks.delete_network(tx, alice_net)  # takes its DHCP port
    assert ALICE.project_id not in _usage_is_count(cloud)
    # the quota check counts with it: at the limit, the next one is refused
    for _ in range(2):
        _create(cloud, admin, {"network_id": net, "project_id": ALICE.project_id})
    with cloud.write(admin) as tx:
        quotas.update(tx, ALICE.project_id, {"port": 2})
    with pytest.raises(Conflict, match="Quota exceeded for resources: \\['port'\\]"), cloud.write(ALICE) as tx:
        quotas.check(tx, ALICE.project_id, "port")
    with cloud.write(ALICE) as tx:
        quotas.check(tx, "dave-project", "port")  # a project without ports: none used
        assert quotas.details(tx, ALICE.project_id)["port"]["used"] == 2
    assert _usage_is_count(cloud)[ALICE.project_id] == 2


def test_ports_numbered_in_their_insert_continue_the_creation_sequence(cloud: Cloud) -> None:
    """The API's create numbers a port in its insert and a trigger moves the counter on: the numbers
    run on without a gap or a repeat across creates by the ORM (networks, the DHCP port) and by SQL."""
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin)
    made = [_create(cloud, admin, {"network_id": net, "device_owner": "compute:nova"})["id"]]  # and the DHCP port
    _network(cloud, admin, "10.7.0.0/24")
    made += [_create(cloud, admin, {"network_id": net})["id"] for _ in range(3)]
    with pytest.raises(RuntimeError), cloud.write(admin) as tx:  # rolled back: its number is given back
        ports.create_port(tx, prepare("port", {"network_id": net}))
        raise RuntimeError("roll back")
    made.append(_create(cloud, admin, {"network_id": net})["id"])
    with cloud.db.engine.connect() as c:
        numbers = sorted(n for t in ("networks", "subnets", "ports", "security_groups", "security_group_rules")
                         for (n,) in c.execute(text(f"SELECT created_seq FROM {t}")).all())
        counter = c.execute(text("SELECT value FROM neutrino_counters WHERE name = 'created_seq'")).scalar()
        mine = [c.execute(text("SELECT created_seq FROM ports WHERE id = :i"), {"i": i}).scalar() for i in made]
    assert numbers == list(range(1, len(numbers) + 1)) and counter == len(numbers)
    assert mine == sorted(mine) and mine[-1] == counter


def _lowest_free(cloud: Cloud, subnet_id: str) -> str | None:
    """The reference: the lowest free address from every taken one, read in full."""
    with cloud.read(cloud.admin_context()) as tx:
        s = tx.session.get(models.Subnet, subnet_id)
        return ipam.next_free(s, ipam.allocated(tx, subnet_id))


def test_the_scan_start_never_changes_the_address_a_port_gets(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    # two pools, the higher one first: the scan goes in the pools' order
    pools = [{"start": "10.9.0.40", "end": "10.9.0.52"}, {"start": "10.9.0.2", "end": "10.9.0.30"}]
    net, sub = _network(cloud, admin, "10.9.0.0/26", allocation_pools=pools)
    rng = random.Random(17)
    live: list[dict[str, Any]] = []
    automatic = 0
    for step in range(160):
        op = rng.random()
        if op < 0.55:
            expected = _lowest_free(cloud, sub)
            if expected is None:
                with pytest.raises(Conflict, match="No more IP addresses"):
                    _create(cloud, admin, {"network_id": net})
                continue
            body: dict[str, Any] = {"network_id": net}
            if rng.random() < 0.2:
                body["fixed_ips"] = [{"subnet_id": sub}]
            got = _create(cloud, admin, body)
            assert got["fixed_ips"][0]["ip_address"] == expected, step
            live.append(got)
            automatic += 1
        elif op < 0.7:
            ip = f"10.9.0.{rng.randint(2, 62)}"
            try:
                live.append(_create(cloud, admin, {"network_id": net, "fixed_ips": [{"ip_address": ip}]}))
            except Conflict as e:
                assert "already allocated" in str(e)
        elif op < 0.85 and live:
            with cloud.write(admin) as tx:
                ports.delete_port(tx, live.pop(rng.randrange(len(live)))["id"])
        elif op < 0.93 and live:
            p = rng.choice(live)
            # a port's address changed: the ORM updates its allocations
            with contextlib.suppress(Conflict), cloud.write(admin) as tx:
                ports.update_port(tx, p["id"], {"fixed_ips": [{"ip_address": f"10.9.0.{rng.randint(2, 62)}"}]})
        else:
            end = rng.choice(["10.9.0.30", "10.9.0.35", "10.9.0.33"])
            # (refused when the pool would leave out an allocated address, or the like)
            with contextlib.suppress(Conflict, InvalidInput), cloud.write(admin) as tx:
                networks.update_subnet(tx, sub, {"allocation_pools": [pools[0], {"start": "10.9.0.2", "end": end}]})
    assert automatic > 40
    with cloud.db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM ipam_next")).scalar() in (0, 1)


def _listing(cloud: Cloud, ctx: Context) -> list[tuple[str, bytes]]:
    with cloud.read(ctx) as tx:
        return ports.list_ports_json(tx, {}, None, frozenset())


def _fresh(cloud: Cloud, ctx: Context) -> list[tuple[str, bytes]]:
    with cloud.read(ctx) as tx:
        return ports._list_ports_json(tx, {}, None, frozenset())


def _other_process(cloud: Cloud, sql: str) -> None:
    url = cloud.db.url.replace("postgresql://", "postgresql+psycopg://", 1)
    code = ("import sqlalchemy, sys\n"
            "e = sqlalchemy.create_engine(sys.argv[1])\n"
            "with e.begin() as c:\n"
            "    c.exec_driver_sql(sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", code, url, sql], check=True, timeout=60)


def test_a_kept_listing_follows_every_change_of_what_it_shows(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, sub = _network(cloud, admin)
    alice_net, _ = _network(cloud, ALICE, "10.8.0.0/24")
    with cloud.write(admin) as tx:
        group = securitygroups.create_group(tx, prepare("security_group", {"name": "g"}))["id"]
    one = _create(cloud, admin, {"network_id": net, "name": "one"})
    theirs = _create(cloud, admin, {"network_id": alice_net, "project_id": "bob-project"})
    seen = _listing(cloud, admin)
    assert seen == _fresh(cloud, admin) and _listing(cloud, admin) == seen  # kept: the same answer

    def changed(what: str, ctx: Context = admin) -> None:
        nonlocal seen
        now = _listing(cloud, ctx)
        assert now != seen, what
        assert now == _fresh(cloud, ctx), what
        seen = now

    with cloud.write(admin) as tx:
        ports.update_port(tx, one["id"], {"name": "renamed"})
    changed("a port's row")
    with cloud.write(admin) as tx:
        ports.update_port(tx, one["id"], {"fixed_ips": [{"subnet_id": sub, "ip_address": "10.9.0.99"}]})
    changed("its addresses")
    with cloud.write(admin) as tx:
        ports.update_port(tx, one["id"], {"security_groups": [group]})
    changed("its groups")
    _create(cloud, admin, {"network_id": net})
    changed("a new port")
    with cloud.write(admin) as tx:
        ports.delete_port(tx, one["id"])
    changed("a deleted port")
    _other_process(cloud, f"UPDATE ports SET name = 'elsewhere' WHERE id = '{theirs['id']}'")
    changed("a port changed by another process")
    _other_process(cloud, f"UPDATE ipallocations SET ip_address = '10.8.0.250' WHERE port_id = '{theirs['id']}'")
    changed("an address changed by another process")
    # alice sees bob's port on her network; not once the network is another project's
    seen = _listing(cloud, ALICE)
    assert [pid for pid, _ in seen if pid == theirs["id"]]
    with cloud.write(admin) as tx:
        tx.session.get(models.Network, alice_net).project_id = "erin-project"
    changed("a network's owner", ALICE)
    assert not [pid for pid, _ in seen if pid == theirs["id"]]
    # a listing in a write transaction that is rolled back is not kept for the next one
    before = _listing(cloud, admin)
    with pytest.raises(RuntimeError), cloud.write(admin) as tx:
        _create_in(tx, net, "ghost")
        assert any(b'"ghost"' in data for _, data in ports.list_ports_json(tx, {}, None, frozenset()))
        raise RuntimeError("roll back")
    real = _create(cloud, admin, {"network_id": net, "name": "real"})
    after = _listing(cloud, admin)
    assert after == _fresh(cloud, admin) and after != before
    assert [pid for pid, data in after if b'"ghost"' in data] == [] and real["id"] in dict(after)


def _create_in(tx: Any, net: str, name: str) -> None:
    ports.create_port(tx, prepare("port", {"network_id": net, "name": name}))


def test_a_version_5_database_gets_the_counters(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/v5.db"
    cloud = Cloud(Database(url), default_scenario())
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin)
    for project in ("p1", "p1", "p2"):
        _create(cloud, admin, {"network_id": net, "project_id": project})
    with cloud.db.engine.begin() as c:  # back to version 5: no triggers, no tables of version 6
        for (name,) in c.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all():
            c.execute(text(f"DROP TRIGGER {name}"))
        for table in ("port_usage", "ipam_next", "neutrino_markers"):
            c.execute(text(f"DROP TABLE {table}"))
        c.execute(text("DELETE FROM neutrino_schema WHERE version >= 6"))
    cloud.db.dispose()
    old = Database(url, migrate=False)
    assert old.schema_version() == 5
    old.dispose()
    db = Database(url)
    assert db.schema_version() == models.SCHEMA_VERSION == 9
    cloud = Cloud(db, default_scenario())
    assert _usage_is_count(cloud) == {"p1": 2, "p2": 1, admin.project_id: 1}  # and the DHCP port
    first = _listing(cloud, admin)
    _create(cloud, admin, {"network_id": net, "project_id": "p2"})
    assert _usage_is_count(cloud)["p2"] == 2
    assert len(_listing(cloud, admin)) == len(first) + 1
    db.dispose()
