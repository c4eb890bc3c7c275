"""A port create asking for addresses (``fixed_ips`` with ``ip_address``) checks them in the network's
statement (api17, ``ports._NETWORK_HEAD_ASKED``) instead of a statement of its own: on PostgreSQL it
is then two round trips, as a create without them (the COMMIT goes with the insert).

- Through the service layer and the API, such creates are two round trips each.
- An address in use is refused as before and leaves nothing written; the next create is two round
  trips again.
- Random walks of creates (free, taken and repeated addresses, by address or by subnet and address,
  outside the network, not addresses at all, several per port) and deletes (which drop a subnet's
  scan start) give the same answers and errors as the same walk with the check made the old way
  (``_asked`` giving nothing: IPAM looks each address up itself), on SQLite and on PostgreSQL, and
  PostgreSQL's are SQLite's.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from neutrino.db.session import Database
from neutrino.errors import Conflict, NeutrinoError
from neutrino.scenarios.model import default_scenario
from neutrino.services import networks, ports, quotas
from neutrino.services.cloud import Cloud, prepare
from neutrino.services.core import Context
from tests.api.api_helpers import PgCluster
from tests.api.test_api14_folds import (
    _counts,
    _create,
    _lock_free,
    _round_trips,
    _traced,
    _url,
    api_on_a_network,
    delete_or_create,
    namer,
)


def _networked(cloud: Cloud, ctx: Context) -> tuple[str, str, str]:
    """A network with two IPv4 subnets (10.17.0.0/24, 10.17.1.0/24), no port quota: their ids."""
    with cloud.write(ctx) as tx:
        quotas.update(tx, ctx.project_id, {"port": -1})
        net = networks.create_network(tx, prepare("network", {"name": "api17"}))["id"]
        subs = [networks.create_subnet(tx, prepare("subnet", {"network_id": net, "ip_version": 4,
                                                              "cidr": f"10.17.{i}.0/24"}))["id"] for i in (0, 1)]
    return net, subs[0], subs[1]


def _statements(db: Database) -> list[str]:
    """A list that the statements sent on ``db``'s connections are appended to (SQLAlchemy's and ``Raw``'s)."""
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda _c, _cur, sql, *_a: seen.append(sql))
    return seen


@pytest.mark.postgres
def test_a_create_asking_for_addresses_is_two_round_trips(pg_cloud: Cloud) -> None:
    admin = pg_cloud.admin_context()
    net, sub, sub2 = _networked(pg_cloud, admin)
    _create(pg_cloud, admin, {"network_id": net})  # the first makes the DHCP port (10.17.0.2, 10.17.1.2); 10.17.0.3
    pg_cloud.db.engine.dispose()
    asks = [[{"ip_address": "10.17.0.50"}], [{"subnet_id": sub, "ip_address": "10.17.0.51"}],
            [{"ip_address": "10.17.1.9"}, {"subnet_id": sub, "ip_address": "10.17.0.52"}],
            [{"subnet_id": sub2}, {"ip_address": "10.17.0.53"}], [{"ip_address": "10.17.0.4"}]]
    with _traced(pg_cloud.db) as sent:
        made = [_create(pg_cloud, admin, {"network_id": net, "fixed_ips": a}) for a in asks]
    assert _round_trips(sent) == 2 * len(asks), sent
    assert [[f["ip_address"] for f in p["fixed_ips"]] for p in made] == [
        ["10.17.0.50"], ["10.17.0.51"], ["10.17.1.9", "10.17.0.52"], ["10.17.1.3", "10.17.0.53"], ["10.17.0.4"]]
    with pg_cloud.read(admin) as tx:
        for p in made:
            assert ports.get_port(tx, p["id"]) == p
    assert _lock_free(str(pg_cloud.db.url))


@pytest.mark.postgres
def test_an_address_in_use_is_refused_and_writes_nothing(pg_cloud: Cloud) -> None:
    admin = pg_cloud.admin_context()
    net, sub, _ = _networked(pg_cloud, admin)
    _create(pg_cloud, admin, {"network_id": net})
    for _ in range(3):  # the scan start moves past the first addresses: they are looked up by the statement
        _create(pg_cloud, admin, {"network_id": net})
    taken = _create(pg_cloud, admin, {"network_id": net, "fixed_ips": [{"ip_address": "10.17.0.60"}]})
    before = _counts(pg_cloud)
    for ask in ([{"ip_address": "10.17.0.60"}], [{"ip_address": "10.17.0.61"}, {"ip_address": "10.17.0.60"}],
                [{"ip_address": "10.17.0.2"}]):
        with pytest.raises(Conflict) as e:
            _create(pg_cloud, admin, {"network_id": net, "fixed_ips": ask})
        assert e.value.neutron_type == "IpAddressAlreadyAllocated"
        assert _counts(pg_cloud) == before
        assert _lock_free(str(pg_cloud.db.url))
    with _traced(pg_cloud.db) as sent:
        again = _create(pg_cloud, admin, {"network_id": net, "fixed_ips": [{"ip_address": "10.17.0.61"}]})
    assert _round_trips(sent) == 2, sent
    assert again["fixed_ips"] == [{"subnet_id": sub, "ip_address": "10.17.0.61"}]
    assert taken["fixed_ips"] == [{"subnet_id": sub, "ip_address": "10.17.0.60"}]


@pytest.mark.postgres
def test_the_api_create_asking_for_an_address_is_two_round_trips(pg_cluster: PgCluster, tmp_path: Path) -> None:
    with api_on_a_network(pg_cluster, tmp_path, "10.17.2.0/24") as (c, h, net, db):
        c.post("/v2.0/ports", json={"port": {"network_id": net}}, headers=h)
        with _traced(db) as sent:
            r = c.post("/v2.0/ports", json={"port": {"network_id": net, "fixed_ips": [
                {"ip_address": "10.17.2.77"}]}}, headers=h)
        assert r.status_code == 201, r.text
        assert _round_trips(sent) == 2, sent
        assert r.json()["port"]["fixed_ips"][0]["ip_address"] == "10.17.2.77"
        with _traced(db) as sent:
            r = c.post("/v2.0/ports", json={"port": {"network_id": net, "fixed_ips": [
                {"ip_address": "10.17.2.77"}]}}, headers=h)
        assert r.status_code == 409, r.text
        assert r.json()["NeutronError"]["type"] == "IpAddressAlreadyAllocated"


def _walk(cloud: Cloud, seed: int) -> tuple[list[Any], int]:
    """A random walk of creates asking for addresses, automatic creates and deletes on a new network:
    each answer with ids, MACs and timestamps named by their first appearance, or the error's type
    and message; and how many statements it sent."""
    rng = random.Random(seed)
    admin = cloud.admin_context()
    net, sub, sub2 = _networked(cloud, admin)
    seen = _statements(cloud.db)
    named = namer()
    out: list[Any] = []
    made: list[str] = []

    def address() -> str:
        return rng.choice(["10.17.0.", "10.17.1."]) + str(rng.randint(1, 24))

    def ask() -> dict[str, str]:
        kind = rng.randrange(8)
        if kind == 0:
            return {"subnet_id": rng.choice([sub, sub2])}
        if kind == 1:
            return {"subnet_id": rng.choice([sub, sub2]), "ip_address": address()}
        if kind == 2:
            return {"ip_address": rng.choice(["10.99.0.5", "10.17.0.07", "not-an-address", "10.17.0.255"])}
        return {"ip_address": address()}

    def body() -> dict[str, Any]:
        made_body: dict[str, Any] = {"network_id": net}
        if rng.random() < 0.8:
            made_body["fixed_ips"] = [ask() for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        return made_body

    for _ in range(60):
        delete_or_create(cloud, admin, rng, made, out, named, 0.25, body)
    with cloud.read(admin) as tx:
        out.append(named(ports.list_ports(tx, {"network_id": [net]})))
    return out, len(seen)


def _probed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old way: no address is looked up with the network; IPAM looks up each one itself."""
    monkeypatch.setattr(ports, "_asked", lambda _attrs: ())


@pytest.mark.parametrize("seed", [1, 2, 3, 4], ids=lambda s: f"seed{s}")
def test_sqlite_answers_as_before(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = [Database(f"sqlite:///{tmp_path}/{name}.db") for name in ("asked", "probed")]
    try:
        asked, asked_statements = _walk(Cloud(dbs[0], default_scenario()), seed)
        _probed(monkeypatch)
        probed, probed_statements = _walk(Cloud(dbs[1], default_scenario()), seed)
    finally:
        for db in dbs:
            db.dispose()
    assert asked == probed
    assert asked_statements < probed_statements  # the addresses' own look-ups are gone
    assert sum(1 for a in asked if isinstance(a, dict)) >= 10  # (the walk makes ports, not only errors)


@pytest.mark.postgres
@pytest.mark.parametrize("seed", [1, 2], ids=lambda s: f"seed{s}")
def test_postgres_answers_as_before_and_as_sqlite(seed: int, pg_cluster: PgCluster, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = [Database(_url(pg_cluster, tmp_path)), Database(f"sqlite:///{tmp_path}/lite.db"),
           Database(_url(pg_cluster, tmp_path))]
    try:
        asked, asked_statements = _walk(Cloud(dbs[0], default_scenario()), seed)
        lite, _ = _walk(Cloud(dbs[1], default_scenario()), seed)
        _probed(monkeypatch)
        probed, probed_statements = _walk(Cloud(dbs[2], default_scenario()), seed)
    finally:
        for db in dbs:
            db.dispose()
    assert asked == lite
    assert asked == probed
    assert asked_statements < probed_statements


def test_a_network_that_does_not_exist_is_not_found_first(tmp_path: Path) -> None:
    """An address asked for on a missing network: the network's error, as before (nothing is checked first)."""
    db = Database(f"sqlite:///{tmp_path}/missing.db")
    try:
        cloud = Cloud(db, default_scenario())
        missing = str(uuid.uuid4())
        with pytest.raises(NeutrinoError) as e:
            _create(cloud, cloud.admin_context(), {"network_id": missing, "fixed_ips": [{"ip_address": "10.17.0.5"}]})
        assert e.value.neutron_type == "NetworkNotFound"
    finally:
        db.dispose()
