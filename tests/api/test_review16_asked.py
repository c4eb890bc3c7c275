"""Review16 of api17: a port create asking for addresses checks them in the network's statement
(``ports._NETWORK_HEAD_ASKED``: the asked addresses, as the body's validation wrote them, looked up
in each subnet with a scan start and then taken as known by IPAM). api17's own walks use two IPv4
subnets; these use a network of an IPv4 subnet, a DHCPv6-stateful subnet and a SLAAC one, with
addresses asked in other spellings (upper case, leading zeros, spelled-out zero groups), the same
address twice in one request, by address alone and by subnet and address, among each subnet's first
twelve (so some are the next one the scan gives), and automatic creates between (which move the scan
start). Each walk gives the same answers, errors and ports (the clouds seeded: their MACs, and with
them the SLAAC addresses, are the same) as the same walk with each address looked up by IPAM itself
(``_asked`` giving nothing: the way before api17), on SQLite; and on PostgreSQL as on SQLite.
Mutation caught (tried in the review): the asked addresses never found taken by the statement but
still taken as checked, the walk's insert of a taken address fails (IntegrityError).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from neutrino.db.session import Database
from neutrino.scenarios.model import default_scenario
from neutrino.services import networks, ports, quotas
from neutrino.services.cloud import Cloud, prepare
from tests.api.api_helpers import PgCluster
from tests.api.test_api14_folds import _url, delete_or_create, namer


def _dual_stack(cloud: Cloud) -> tuple[str, str, str, str]:
    """A network with 10.16.0.0/24, 2001:db8:16::/64 (DHCPv6 stateful) and 2001:db8:17::/64 (SLAAC),
    no port quota: the network's and the subnets' ids."""
    admin = cloud.admin_context()
    with cloud.write(admin) as tx:
        quotas.update(tx, admin.project_id, {"port": -1})
        net = networks.create_network(tx, prepare("network", {"name": "review16"}))["id"]
        v4 = networks.create_subnet(tx, prepare("subnet", {"network_id": net, "ip_version": 4,
                                                           "cidr": "10.16.0.0/24"}))["id"]
        v6 = networks.create_subnet(tx, prepare("subnet", {
            "network_id": net, "ip_version": 6, "cidr": "2001:db8:16::/64",
            "ipv6_address_mode": "dhcpv6-stateful", "ipv6_ra_mode": "dhcpv6-stateful"}))["id"]
        slaac = networks.create_subnet(tx, prepare("subnet", {
            "network_id": net, "ip_version": 6, "cidr": "2001:db8:17::/64",
            "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}))["id"]
    return net, v4, v6, slaac


def _spelled(rng: random.Random, n: int, v6: bool) -> str:
    """Address ``n`` of the IPv4 or the stateful IPv6 subnet, in one of its spellings."""
    if not v6:
        return f"10.16.0.{n}"
    return rng.choice([f"2001:db8:16::{n:x}", f"2001:DB8:16::{n:X}", f"2001:db8:16:0:0:0:0:{n:04x}",
                       f"2001:0db8:0016::{n:x}"])


def _walk(cloud: Cloud, seed: int) -> list[Any]:
    """Creates asking for addresses (several spellings, duplicates, by subnet), automatic creates and
    deletes: each answer with ids, MACs and timestamps named, or the error's type and message."""
    rng = random.Random(seed)
    admin = cloud.admin_context()
    net, v4, v6, slaac = _dual_stack(cloud)
    named: Callable[[Any], Any] = namer()
    out: list[Any] = []
    made: list[str] = []

    def ask() -> dict[str, str]:
        is_v6 = rng.random() < 0.5
        ip = _spelled(rng, rng.randint(1, 12), is_v6)
        kind = rng.randrange(6)
        if kind == 0:
            return {"subnet_id": rng.choice([v4, v6, slaac])}
        if kind == 1:
            return {"subnet_id": v6 if is_v6 else v4, "ip_address": ip}
        if kind == 2:
            return {"subnet_id": slaac, "ip_address": "2001:db8:17::5"}
        return {"ip_address": ip}

    def body() -> dict[str, Any]:
        made_body: dict[str, Any] = {"network_id": net}
        if rng.random() < 0.75:
            asks = [ask() for _ in range(rng.choice([1, 1, 2, 3]))]
            if rng.random() < 0.15:
                asks.append(dict(asks[0]))  # the same address (or subnet) twice in one request
            made_body["fixed_ips"] = asks
        return made_body

    for _ in range(50):
        delete_or_create(cloud, admin, rng, made, out, named, 0.2, body)
    with cloud.read(admin) as tx:
        out.append(named(ports.list_ports(tx, {"network_id": [net]})))
    return out


def _probed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The way before api17: no address looked up with the network; IPAM looks up each one itself."""
    monkeypatch.setattr(ports, "_asked", lambda _attrs: ())


@pytest.mark.parametrize("seed", [1, 2, 3], ids=lambda s: f"seed{s}")
def test_dual_stack_walks_answer_as_before(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = [Database(f"sqlite:///{tmp_path}/{name}.db") for name in ("asked", "probed")]
    looked_up: list[tuple[str, ...]] = []  # the addresses each create looked up with its network
    real = ports._asked

    def counted(attrs: dict[str, Any]) -> tuple[str, ...]:
        got = real(attrs)
        looked_up.append(got)
        return got

    try:
        with monkeypatch.context() as m:
            m.setattr(ports, "_asked", counted)
            asked = _walk(Cloud(dbs[0], default_scenario(), seed="review16"), seed)
        _probed(monkeypatch)
        probed = _walk(Cloud(dbs[1], default_scenario(), seed="review16"), seed)
    finally:
        for db in dbs:
            db.dispose()
    assert asked == probed
    made = [a for a in asked if isinstance(a, dict)]
    refused = [a for a in asked if isinstance(a, tuple) and a[1] == "IpAddressAlreadyAllocated"]
    assert len(made) >= 10 and len(refused) >= 3  # (the walk makes ports and meets taken addresses)
    assert any(":" in str(f["ip_address"]) for p in made for f in p["fixed_ips"])  # (IPv6 addresses given)
    assert sum(1 for got in looked_up if any(":" in ip for ip in got)) >= 10  # (IPv6 addresses looked up with the network)


@pytest.mark.postgres
def test_dual_stack_walk_on_postgres_answers_as_on_sqlite(pg_cluster: PgCluster, tmp_path: Path) -> None:
    dbs = [Database(_url(pg_cluster, tmp_path)), Database(f"sqlite:///{tmp_path}/lite.db")]
    try:
        pg = _walk(Cloud(dbs[0], default_scenario(), seed="review16"), 4)
        lite = _walk(Cloud(dbs[1], default_scenario(), seed="review16"), 4)
    finally:
        for db in dbs:
            db.dispose()
    assert pg == lite
