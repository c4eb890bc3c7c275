"""Review probes of migration 6's kept values (``port_usage``, ``ipam_next``, the ``ports_view``
marker and the listing it keys), through changes the commit's own tests do not make:

- the kept listing against the generic path (``ports.list_ports``, encoded as the API does) after
  tags, a status written by the realizers, binding/extra DHCP options/address pairs/port security
  updates, a group taken off, a subnet's and a network's delete (their DHCP port going with them);
- IPAM's lowest free address on a stateful IPv6 subnet, across two IPv4 subnets (the first full,
  then an address freed in it), after pools grown below the scan start and put back, and after a
  port update releasing an address;
- the quota check against ``count(*)`` once ports went by cascades;
- migration 6 run again on a migrated database (its docstring: "re-running it re-makes the
  triggers and recounts"): the same triggers, no duplicates, counts exact; a version-5 database
  upgraded on SQLite and on PostgreSQL;
- over HTTP, a member's ``GET /ports`` (kept) against the generic (sorted) listing after the admin's
  changes, and the port quota.

One finding, ``test_a_listing_after_a_backup_is_restored_into_the_live_database`` (FAILS until fixed):
the SQLite ``ports_view`` marker only counts, so a database put back to an earlier state (an online
restore of a backup) repeats numbers that a kept listing of the discarded history is keyed by.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from neutrino.db import models
from neutrino.db.session import Database, _migration_6
from neutrino.errors import Conflict
from neutrino.scenarios.model import default_scenario
from neutrino.services import ipam, networks, ports, quotas, securitygroups, tags
from neutrino.services.cloud import Cloud, prepare
from neutrino.services.core import Context
from tests.api.api_helpers import cloud_on_fresh_database, fresh_database, ok

ALICE = Context("alice-project", "alice", False, ("member", "reader"))


@pytest.fixture
def cloud(tmp_path: Any) -> Iterator[Cloud]:
    db = Database(fresh_database("sqlite://", f"review_{uuid.uuid4().hex[:12]}", tmp_path))
    try:
        yield Cloud(db, default_scenario())
    finally:
        db.dispose()


def _network(cloud: Cloud, ctx: Context, *subnets: dict[str, Any]) -> tuple[str, list[str]]:
    with cloud.write(ctx) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "review"}))
        subs = [networks.create_subnet(tx, prepare("subnet", {"network_id": net["id"], **s}))["id"]
                for s in subnets]
    return net["id"], subs


def _create(cloud: Cloud, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    with cloud.write(ctx) as tx:
        return ports.create_port(tx, prepare("port", body))


def _kept(cloud: Cloud, ctx: Context) -> list[bytes]:
    with cloud.read(ctx) as tx:
        return [data for _, data in ports.list_ports_json(tx, {}, None, frozenset())]


def _generic(cloud: Cloud, ctx: Context) -> list[bytes]:
    """The generic path's answer, encoded as the API encodes a port."""
    with cloud.read(ctx) as tx:
        return [json.dumps(v, separators=(",", ":")).encode() for v in ports.list_ports(tx, {})]


def _lowest_free(cloud: Cloud, subnet_id: str) -> str | None:
    with cloud.read(cloud.admin_context()) as tx:
        s = tx.session.get(models.Subnet, subnet_id)
        return ipam.next_free(s, ipam.allocated(tx, subnet_id))


def _usage_is_count(cloud: Cloud) -> dict[str, int]:
    with cloud.db.engine.connect() as c:
        counted: dict[str, int] = dict(c.execute(text("SELECT project_id, count(*) FROM ports GROUP BY project_id")).all())
        kept = {p: n for p, n in c.execute(text("SELECT project_id, ports FROM port_usage")).all() if n}
    assert kept == counted
    return kept


V4 = {"ip_version": 4, "cidr": "10.7.0.0/24"}


def test_the_kept_listing_is_the_generic_one_after_every_kind_of_port_change(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, (sub,) = _network(cloud, admin, V4)
    other, (other_sub,) = _network(cloud, admin, {"ip_version": 4, "cidr": "10.6.0.0/24"})
    with cloud.write(admin) as tx:
        group = securitygroups.create_group(tx, prepare("security_group", {"name": "g"}))["id"]
    one = _create(cloud, admin, {"network_id": net, "name": "one", "security_groups": [group]})
    _create(cloud, admin, {"network_id": other, "name": "elsewhere"})
    seen = _kept(cloud, admin)
    assert seen == _generic(cloud, admin) and _kept(cloud, admin) == seen

    def changed(what: str) -> None:
        nonlocal seen
        now = _kept(cloud, admin)
        assert now == _generic(cloud, admin), what
        assert now != seen, what
        seen = now

    with cloud.write(admin) as tx:
        tags.add(tx, "ports", one["id"], "red")
    changed("a tag")
    cloud.set_port_status(one["id"], "ACTIVE")
    changed("the status the realizers write")
    changes: tuple[dict[str, Any], ...] = (
        {"binding:host_id": "compute-9"}, {"extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400"}]},
        {"allowed_address_pairs": [{"ip_address": "10.7.0.200"}]}, {"admin_state_up": False},
        {"security_groups": []}, {"allowed_address_pairs": []}, {"port_security_enabled": False})
    for attrs in changes:
        with cloud.write(admin) as tx:
            ports.update_port(tx, one["id"], prepare("port", attrs, create=False))
        changed(f"an update of {sorted(attrs)}")
    with cloud.write(admin) as tx:
        securitygroups.delete_group(tx, group)
    assert _kept(cloud, admin) == _generic(cloud, admin)
    with cloud.write(admin) as tx:
        ports.delete_port(tx, one["id"])
    changed("a deleted port")
    with cloud.write(admin) as tx:
        for p in ports.list_ports(tx, {"network_id": [other]}):
            if p["device_owner"] != "network:dhcp":
                ports.delete_port(tx, p["id"])
    changed("the other network's port deleted")
    with cloud.write(admin) as tx:
        networks.delete_subnet(tx, other_sub)
    assert _kept(cloud, admin) == _generic(cloud, admin)
    with cloud.write(admin) as tx:
        networks.delete_network(tx, other)
    assert _kept(cloud, admin) == _generic(cloud, admin)
    assert not any(b'"elsewhere"' in d for d in _kept(cloud, admin))
    _usage_is_count(cloud)


def test_the_kept_listing_of_a_project_follows_ports_on_its_networks(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    alice_net, _ = _network(cloud, ALICE, {"ip_version": 4, "cidr": "10.5.0.0/24"})
    before = _kept(cloud, ALICE)
    theirs = _create(cloud, admin, {"network_id": alice_net, "project_id": "bob-project", "name": "bobs"})
    now = _kept(cloud, ALICE)
    assert now == _generic(cloud, ALICE) and len(now) == len(before) + 2  # and the DHCP port
    with cloud.write(admin) as tx:
        ports.update_port(tx, theirs["id"], prepare("port", {"name": "bobs-renamed"}, create=False))
    assert any(b'"bobs-renamed"' in d for d in _kept(cloud, ALICE))
    assert _kept(cloud, ALICE) == _generic(cloud, ALICE)


def test_ipv6_stateful_lowest_free_after_deletes(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, (sub,) = _network(cloud, admin, {"ip_version": 6, "cidr": "2001:db8:7::/64",
                                          "ipv6_address_mode": "dhcpv6-stateful",
                                          "ipv6_ra_mode": "dhcpv6-stateful"})
    made = []
    for _ in range(6):
        expected = _lowest_free(cloud, sub)
        got = _create(cloud, admin, {"network_id": net})
        assert got["fixed_ips"][0]["ip_address"] == expected
        made.append(got)
    with cloud.write(admin) as tx:
        ports.delete_port(tx, made[1]["id"])
    expected = _lowest_free(cloud, sub)
    assert expected == made[1]["fixed_ips"][0]["ip_address"]
    assert _create(cloud, admin, {"network_id": net})["fixed_ips"][0]["ip_address"] == expected


def test_two_ipv4_subnets_the_first_full_then_freed(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, (small, big) = _network(cloud, admin, {"ip_version": 4, "cidr": "10.4.0.0/29"},
                                 {"ip_version": 4, "cidr": "10.4.1.0/24"})
    made = []
    for _ in range(9):
        got = _create(cloud, admin, {"network_id": net})
        sid = got["fixed_ips"][0]["subnet_id"]
        made.append(got)
        assert sid in (small, big)
    assert _lowest_free(cloud, small) is None
    victim = next(p for p in made if p["fixed_ips"][0]["subnet_id"] == small and p["device_owner"] == "")
    with cloud.write(admin) as tx:
        ports.delete_port(tx, victim["id"])
    got = _create(cloud, admin, {"network_id": net})
    assert got["fixed_ips"][0] == victim["fixed_ips"][0]


def test_pools_grown_below_the_scan_start_and_put_back(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    a = [{"start": "10.3.0.10", "end": "10.3.0.40"}]
    b = [{"start": "10.3.0.2", "end": "10.3.0.5"}, {"start": "10.3.0.10", "end": "10.3.0.40"}]
    net, (sub,) = _network(cloud, admin, {"ip_version": 4, "cidr": "10.3.0.0/24", "allocation_pools": a})
    for _ in range(4):
        _create(cloud, admin, {"network_id": net})
    for pools in (b, a, b):
        with cloud.write(admin) as tx:
            networks.update_subnet(tx, sub, {"allocation_pools": pools})
        expected = _lowest_free(cloud, sub)
        assert _create(cloud, admin, {"network_id": net})["fixed_ips"][0]["ip_address"] == expected


def test_an_address_released_by_a_port_update_is_the_next_one_given(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, (sub,) = _network(cloud, admin, V4)
    made = [_create(cloud, admin, {"network_id": net}) for _ in range(4)]
    freed = made[1]["fixed_ips"][0]["ip_address"]
    with cloud.write(admin) as tx:
        ports.update_port(tx, made[1]["id"], prepare("port", {"fixed_ips": [{"ip_address": "10.7.0.250"}]},
                                                     create=False))
    assert _lowest_free(cloud, sub) == freed
    assert _create(cloud, admin, {"network_id": net})["fixed_ips"][0]["ip_address"] == freed
    # explicit addresses above the start, then one of them given back
    x = _create(cloud, admin, {"network_id": net, "fixed_ips": [{"ip_address": "10.7.0.9"}]})
    with cloud.write(admin) as tx:
        ports.update_port(tx, x["id"], prepare("port", {"fixed_ips": [{"subnet_id": sub}]}, create=False))
    expected = _lowest_free(cloud, sub)
    assert _create(cloud, admin, {"network_id": net})["fixed_ips"][0]["ip_address"] == expected


def test_the_quota_follows_ports_gone_by_cascades(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin, V4)
    with cloud.write(admin) as tx:
        quotas.update(tx, "q-project", {"port": 3})
    for _ in range(3):
        _create(cloud, admin, {"network_id": net, "project_id": "q-project"})
    with pytest.raises(Conflict), cloud.write(admin) as tx:
        quotas.check(tx, "q-project", "port")
    with cloud.write(admin) as tx:
        for p in ports.list_ports(tx, {"network_id": [net]}):
            if p["device_owner"] != "network:dhcp":
                ports.delete_port(tx, p["id"])
    assert "q-project" not in _usage_is_count(cloud)
    with cloud.write(admin) as tx:
        quotas.check(tx, "q-project", "port", 3)
    with cloud.write(admin) as tx:
        networks.delete_network(tx, net)  # takes the DHCP port (the admin's)
    assert admin.project_id not in _usage_is_count(cloud)


def test_migration_6_run_again_recounts_and_keeps_one_set_of_triggers(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, (sub,) = _network(cloud, admin, V4)
    for project in ("p1", "p1", "p2"):
        _create(cloud, admin, {"network_id": net, "project_id": project})

    def triggers() -> list[str]:
        with cloud.db.engine.connect() as c:
            return sorted(n for (n,) in c.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))

    before = triggers()
    with cloud.db.engine.begin() as c:
        _migration_6(c)
    assert triggers() == before
    assert _usage_is_count(cloud) == {"p1": 2, "p2": 1, admin.project_id: 1}
    expected = _lowest_free(cloud, sub)
    assert _create(cloud, admin, {"network_id": net, "project_id": "p2"})["fixed_ips"][0]["ip_address"] == expected
    assert _kept(cloud, admin) == _generic(cloud, admin)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_cloud(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Cloud]:
    yield from cloud_on_fresh_database(request, tmp_path, "review")


def test_lowest_free_across_v4_and_v6_subnets_under_random_changes(any_cloud: Cloud) -> None:
    """Two IPv4 subnets (small, so the first fills up) and a stateful IPv6 one: automatic creates
    (whole network or one subnet), explicit addresses, deletes, address updates back to automatic,
    pool changes; every automatic address is the lowest free one read in full just before."""
    import random
    cloud = any_cloud
    admin = cloud.admin_context()
    net, (a, b, v6) = _network(cloud, admin, {"ip_version": 4, "cidr": "10.2.0.0/28"},
                               {"ip_version": 4, "cidr": "10.2.1.0/28",
                                "allocation_pools": [{"start": "10.2.1.8", "end": "10.2.1.14"},
                                                     {"start": "10.2.1.2", "end": "10.2.1.5"}]},
                               {"ip_version": 6, "cidr": "2001:db8:2::/120", "ipv6_address_mode": "dhcpv6-stateful",
                                "ipv6_ra_mode": "dhcpv6-stateful"})
    rng = random.Random(5)
    live: list[str] = []
    checked = 0
    for step in range(220):
        op = rng.random()
        if op < 0.4:
            first = _lowest_free(cloud, a)
            expected4 = first if first is not None else _lowest_free(cloud, b)
            expected6 = _lowest_free(cloud, v6)
            if expected4 is None:
                with pytest.raises(Conflict):
                    _create(cloud, admin, {"network_id": net})
                continue
            got = {f["subnet_id"]: f["ip_address"] for f in _create(cloud, admin, {"network_id": net})["fixed_ips"]}
            assert got.get(a if first is not None else b) == expected4, step
            assert got.get(v6) == expected6, step
            checked += 1
        elif op < 0.55:
            sid = rng.choice((a, b, v6))
            expected = _lowest_free(cloud, sid)
            if expected is None:
                continue
            got_port = _create(cloud, admin, {"network_id": net, "fixed_ips": [{"subnet_id": sid}]})
            assert got_port["fixed_ips"] == [{"subnet_id": sid, "ip_address": expected}], step
            live.append(got_port["id"])
            checked += 1
            continue
        elif op < 0.65:
            ip = rng.choice((f"10.2.0.{rng.randint(1, 14)}", f"10.2.1.{rng.randint(2, 14)}",
                             f"2001:db8:2::{rng.randint(1, 40):x}"))
            with _suppress_conflict():
                live.append(_create(cloud, admin, {"network_id": net, "fixed_ips": [{"ip_address": ip}]})["id"])
            continue
        elif op < 0.8 and live:
            with cloud.write(admin) as tx:
                ports.delete_port(tx, live.pop(rng.randrange(len(live))))
            continue
        elif op < 0.9 and live:
            pid = rng.choice(live)
            sid = rng.choice((a, b, v6))
            with _suppress_conflict(), cloud.write(admin) as tx:  # its addresses: one automatic in sid
                ports.update_port(tx, pid, prepare("port", {"fixed_ips": [{"subnet_id": sid}]}, create=False))
            continue
        else:
            end = rng.choice(("10.2.1.5", "10.2.1.4", "10.2.1.3"))
            with _suppress_conflict(), cloud.write(admin) as tx:
                networks.update_subnet(tx, b, {"allocation_pools": [{"start": "10.2.1.8", "end": "10.2.1.14"},
                                                                    {"start": "10.2.1.2", "end": end}]})
            continue
        # keep whole-network ports around too, to be deleted later
        with cloud.read(admin) as tx:
            newest = ports.list_ports(tx, {"network_id": [net]})[-1]
        live.append(newest["id"])
    assert checked > 40
    _usage_is_count(cloud)
    assert _kept(cloud, admin) == _generic(cloud, admin)


def _suppress_conflict() -> Any:
    import contextlib

    from neutrino.errors import InvalidInput
    return contextlib.suppress(Conflict, InvalidInput)


def test_a_version_5_database_is_upgraded_on_both_databases(any_cloud: Cloud) -> None:
    """Back to version 5 (no tables, triggers or functions of version 6), then opened again: the
    counts are filled from the ports it has, the triggers keep them, and IPAM and the listing agree
    with the full reads."""
    cloud = any_cloud
    admin = cloud.admin_context()
    net, (sub,) = _network(cloud, admin, V4)
    made = [_create(cloud, admin, {"network_id": net, "project_id": p})["id"] for p in ("p1", "p1", "p2")]
    postgres = cloud.db.engine.dialect.name == "postgresql"
    with cloud.db.engine.begin() as c:
        if postgres:
            c.execute(text("DROP TRIGGER neutrino_ports_row ON ports"))
            c.execute(text("DROP TRIGGER neutrino_forget_next ON ipallocations"))
            c.execute(text("DROP FUNCTION neutrino_ports_row()"))
            c.execute(text("DROP FUNCTION neutrino_forget_next()"))
        else:
            for (name,) in c.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all():
                c.execute(text(f"DROP TRIGGER {name}"))
        for table in ("port_usage", "ipam_next", "neutrino_markers"):
            c.execute(text(f"DROP TABLE {table}"))
        c.execute(text("DELETE FROM neutrino_schema WHERE version >= 6"))
        # version 5 numbered the ports' creation by next_seq: the counter is where it was left
    url = cloud.db.url
    cloud.db.dispose()
    db = Database(url)
    try:
        assert db.schema_version() == 9
        upgraded = Cloud(db, default_scenario())
        assert _usage_is_count(upgraded) == {"p1": 2, "p2": 1, admin.project_id: 1}
        with upgraded.write(admin) as tx:
            ports.delete_port(tx, made[0])
        expected = _lowest_free(upgraded, sub)
        got = _create(upgraded, admin, {"network_id": net, "project_id": "p2"})
        assert got["fixed_ips"][0]["ip_address"] == expected
        assert _usage_is_count(upgraded) == {"p1": 1, "p2": 2, admin.project_id: 1}
        assert _kept(upgraded, admin) == _generic(upgraded, admin)
        with upgraded.read(admin) as tx:  # the new port after every older one (creation order)
            assert [p["id"] for p in ports.list_ports(tx, {})][-1] == got["id"]
    finally:
        db.dispose()


def _both(c: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """``GET /ports`` (the kept fast path) and the generic path's answer (sorted: not the fast path),
    read just before and just after it: the server's agents may set a port's status or binding
    between two requests, so the fast answer must be the database's state at one of those two
    moments (a stale kept answer is older than both); the one it should equal is returned."""
    def generic_now() -> dict[str, Any]:
        return {p["id"]: p for p in ok(c.get("/ports", params={"sort_key": "id", "sort_dir": "asc"}))["ports"]}

    before = generic_now()
    fast = {p["id"]: p for p in ok(c.get("/ports"))["ports"]}
    after = generic_now()
    return fast, (after if fast == after else before)


def test_over_http_the_kept_listing_and_the_quota_follow_the_admins_changes(
        admin: httpx.Client, demo: httpx.Client) -> None:
    net = ok(demo.post("/networks", json={"network": {"name": "review-http"}}))["network"]["id"]
    ok(demo.post("/subnets", json={"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.66.0.0/24"}}))
    mine = ok(demo.post("/ports", json={"port": {"network_id": net, "name": "mine"}}))["port"]
    fast, generic = _both(demo)
    assert fast == generic and mine["id"] in fast
    theirs = ok(admin.post("/ports", json={"port": {"network_id": net, "project_id": "someone-else",
                                                    "name": "theirs"}}))["port"]
    changes: list[tuple[str, dict[str, Any] | None]] = [
        (f"/ports/{theirs['id']}/tags/blue", None),
        (f"/ports/{theirs['id']}", {"port": {"binding:host_id": "compute-2"}}),
        (f"/ports/{mine['id']}", {"port": {"description": "by the admin"}}),
        (f"/ports/{theirs['id']}", {"port": {"fixed_ips": [{"ip_address": "10.66.0.77"}]}})]
    for path, body in changes:
        before, _ = _both(demo)
        ok(admin.put(path, json=body) if body is not None else admin.put(path))
        fast, generic = _both(demo)
        assert fast == generic and fast != before
    assert fast[theirs["id"]]["tags"] == ["blue"]
    assert fast[theirs["id"]]["fixed_ips"][0]["ip_address"] == "10.66.0.77"
    # the quota counts the project's ports whatever made them
    project = mine["project_id"]
    used = len([p for p in ok(admin.get("/ports"))["ports"] if p["project_id"] == project])
    ok(admin.put(f"/quotas/{project}", json={"quota": {"port": used + 1}}))
    try:
        ok(demo.post("/ports", json={"port": {"network_id": net}}))
        r = demo.post("/ports", json={"port": {"network_id": net}})
        assert r.status_code == 409, r.text
        ok(admin.delete(f"/ports/{mine['id']}"))
        ok(demo.post("/ports", json={"port": {"network_id": net}}))
    finally:
        ok(admin.put(f"/quotas/{project}", json={"quota": {"port": -1}}))


def test_a_listing_after_a_backup_is_restored_into_the_live_database(cloud: Cloud, tmp_path: Any) -> None:
    """Was a bug (found by review, fixed): the ``ports_view`` marker was a counter, so two histories
    from the same state got the same numbers; it now takes a fresh random value on each change. An operator restores a backup of the state folder's database while the server
    runs (SQLite's online backup, as ``sqlite3 cloud.db '.restore backup.db'`` does: every connection
    sees the restored file at once): the marker goes back to the backup's value, and the next change
    (one bump, as the change made after the backup was) brings it to the number a listing was kept
    under before the restore; that listing, of the lost history, is served instead of the database's."""
    import sqlite3

    admin = cloud.admin_context()
    net, _ = _network(cloud, admin, V4)
    port = _create(cloud, admin, {"network_id": net, "name": "original"})
    live = cloud.db.url.split(":///", 1)[1]
    backup = str(tmp_path / "backup.db")
    with sqlite3.connect(live) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)
    with cloud.write(admin) as tx:  # the history the restore undoes
        ports.update_port(tx, port["id"], prepare("port", {"name": "lost"}, create=False))
    assert any(b'"lost"' in d for d in _kept(cloud, admin))
    with sqlite3.connect(backup) as src, sqlite3.connect(live) as dst:  # the restore, online
        src.backup(dst)
    assert _kept(cloud, admin) == _generic(cloud, admin)  # the backup's state: kept before, still right
    with cloud.write(admin) as tx:  # the new history: one change, as the lost one
        ports.update_port(tx, port["id"], prepare("port", {"name": "kept"}, create=False))
    generic = _generic(cloud, admin)
    assert any(b'"kept"' in d for d in generic)
    assert _kept(cloud, admin) == generic
