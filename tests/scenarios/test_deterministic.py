"""Deterministic ids, MACs and plans.

A scenario brought up twice (its seed is a hash of the file) gives the same ids, MACs and plans; a
server given no seed still makes random ones; a seeded stream skips values that are taken; objects
made within the same second list and snapshot in the order they were made.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete

from neutrino.api.serve import make_app
from neutrino.cli import build_parser, main
from neutrino.db import models
from neutrino.db.session import Database
from neutrino.deploy import bring_up
from neutrino.scenarios.model import default_scenario
from neutrino.services import core, ports, routers
from neutrino.services.cloud import Cloud, networks, prepare
from neutrino.services.ids import IdGenerator, seed_of_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCENARIOS = [EXAMPLES / f"seed00{n}.yaml" for n in range(5)]
MAC = re.compile(r"\bfa:16:3e(?::[0-9a-f]{2}){3}\b")


def _plan(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["plan", str(path)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_plan_prints_the_same_text_twice(path, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    first, second = _plan(path, capsys), _plan(path, capsys)
    assert first.count("==================== host ") == len(bring_up_hosts(path))
    assert MAC.search(first), "the plan shows generated MACs, so equality is not trivial"
    assert first == second


def bring_up_hosts(path: Path) -> list[str]:
    from neutrino.scenarios.model import load_scenario

    return [h.name for h in load_scenario(path).deployment.hosts]


def _up(path: Path, state: Path):
    return bring_up(path, state=state, keep=False).cloud


@pytest.mark.parametrize("path", [SCENARIOS[0], SCENARIOS[3]], ids=lambda p: p.stem)
def test_two_bring_ups_give_equal_snapshots(path, tmp_path):
    a, b = _up(path, tmp_path / "a"), _up(path, tmp_path / "b")
    assert a.ports and a.networks
    assert a == b
    assert [p.id for p in a.ports] == [p.id for p in b.ports]
    assert [p.mac_address for p in a.ports] == [p.mac_address for p in b.ports]
    every_id = [x.id for coll in (a.networks, a.subnets, a.ports, a.routers, a.floating_ips,
                                  a.security_groups, a.servers) for x in coll]
    assert len(set(every_id)) == len(every_id)
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in every_id)
    for net in a.networks:
        macs = [p.mac_address for p in a.ports_on_network(net.id)]
        assert len(set(macs)) == len(macs)
        assert all(MAC.fullmatch(m) for m in macs)


def test_an_edited_scenario_keeps_the_ids_of_what_it_made_before(tmp_path):
    """Two versions of a scenario diff cleanly: a comment changes nothing, a rule added at the end
    changes only what follows it; another seed gives other ids."""
    text = SCENARIOS[0].read_text()
    commented = tmp_path / "seed000-commented.yaml"
    commented.write_text(text + "# one more comment\n")
    assert seed_of_file(commented) == seed_of_file(SCENARIOS[0])
    a, b = _up(SCENARIOS[0], tmp_path / "a"), _up(commented, tmp_path / "b")
    assert a.networks == b.networks and a.ports == b.ports
    reseeded = tmp_path / "seed000-reseeded.yaml"
    assert "\nseed: 0\n" in text
    reseeded.write_text(text.replace("\nseed: 0\n", "\nseed: 42\n"))
    c = _up(reseeded, tmp_path / "c")
    assert [n.name for n in a.networks] == [n.name for n in c.networks]
    assert not {p.id for p in a.ports} & {p.id for p in c.ports}


def _server_ids(tmp_path: Path, name: str, seed: str | None) -> tuple[str, str, str]:
    """Through the HTTP API of ``make_app``: a network, a subnet and a port; their ids and the MAC."""
    app, _ = make_app(f"sqlite:///{tmp_path / name}.db", None, "noauth", seed)

    async def calls() -> tuple[str, str, str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://neutrino") as c:
            net = await c.post("/v2.0/networks", json={"network": {"name": "private"}})
            assert net.status_code == 201, net.text
            nid = net.json()["network"]["id"]
            sub = await c.post("/v2.0/subnets", json={"subnet": {"network_id": nid, "cidr": "10.1.0.0/24",
                                                                 "ip_version": 4}})
            assert sub.status_code == 201, sub.text
            port = await c.post("/v2.0/ports", json={"port": {"network_id": nid}})
            assert port.status_code == 201, port.text
            return nid, port.json()["port"]["id"], port.json()["port"]["mac_address"]

    return asyncio.run(calls())


def test_a_server_without_a_seed_makes_different_ids_on_each_run(tmp_path):
    first, second = _server_ids(tmp_path, "r1", None), _server_ids(tmp_path, "r2", None)
    assert first[0] != second[0] and first[1] != second[1]
    assert first[2] != second[2]  # MACs are random too (1 chance in 2**24 to match)
    seeded = _server_ids(tmp_path, "s1", "abc"), _server_ids(tmp_path, "s2", "abc")
    assert seeded[0] == seeded[1]
    assert _server_ids(tmp_path, "t1", "abd") != seeded[0]
    assert all(MAC.fullmatch(x[2]) for x in (first, second, *seeded))


def test_server_takes_a_deterministic_flag():
    parser = build_parser()
    assert parser.parse_args(["server"]).deterministic is None
    assert parser.parse_args(["server", "--deterministic", "my seed"]).deterministic == "my seed"


# -- in-process clouds ------------------------------------------------------------------------------

def _cloud(seed: str | None = None) -> Cloud:
    return Cloud(Database("sqlite://"), default_scenario(), seed=seed)


def _net(cloud: Cloud, name: str, cidr: str, *, dhcp: bool = True) -> tuple[str, str]:
    with cloud.write(cloud.admin_context()) as tx:
        net = networks.create_network(tx, prepare("network", {"name": name}))
        sub = networks.create_subnet(tx, prepare("subnet", {"network_id": net["id"], "ip_version": 4,
                                                            "cidr": cidr, "enable_dhcp": dhcp, "name": name}))
    return net["id"], sub["id"]


def _port(cloud: Cloud, network_id: str, **extra: object) -> dict[str, object]:
    with cloud.write(cloud.admin_context()) as tx:
        return ports.create_port(tx, prepare("port", {"network_id": network_id, **extra}))


def test_a_taken_mac_is_skipped_for_the_streams_next_value():
    a = _cloud("collide")
    net_a, _ = _net(a, "n", "10.0.0.0/24", dhcp=False)
    m1, m2 = _port(a, net_a)["mac_address"], _port(a, net_a)["mac_address"]
    assert m1 != m2
    b = _cloud("collide")
    net_b, _ = _net(b, "n", "10.0.0.0/24", dhcp=False)
    assert net_b == net_a
    assert _port(b, net_b, mac_address=m1)["mac_address"] == m1  # taken by hand: the stream's first value
    assert _port(b, net_b)["mac_address"] == m2  # so the next port gets the stream's next one


def test_a_taken_id_is_skipped_for_the_streams_next_value():
    fresh = _cloud("ids")
    expected = [_net(fresh, f"n{i}", f"10.{i}.0.0/24")[0] for i in range(2)]
    restarted = _cloud("ids")
    first, _ = _net(restarted, "n0", "10.0.0.0/24")
    assert first == expected[0]
    with restarted.db.write() as s:  # the stream starts over, as if its position had been lost
        s.execute(delete(models.Counter).where(models.Counter.name == "id:networks"))
    second, _ = _net(restarted, "n1", "10.1.0.0/24")
    assert second == expected[1] != first


def test_a_rolled_back_request_gives_its_values_back():
    a, b = _cloud("rollback"), _cloud("rollback")
    with pytest.raises(RuntimeError), a.write(a.admin_context()) as tx:
        networks.create_network(tx, prepare("network", {"name": "lost"}))
        raise RuntimeError("the request fails after making its network")
    assert _net(a, "kept", "10.0.0.0/24") == _net(b, "kept", "10.0.0.0/24")


def test_seeded_ids_are_version_4_uuids_and_macs_are_neutrons():
    gen = IdGenerator("x")
    ids = {gen._uuid("id:ports", n) for n in range(1, 2000)}
    assert len(ids) == 1999
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert all(MAC.fullmatch(gen._mac(n)) for n in range(1, 100))


@pytest.mark.parametrize("seed", [None, "same-second"])
def test_objects_made_within_one_second_list_in_creation_order(seed, monkeypatch):
    monkeypatch.setattr(core, "timestamp", lambda: "2024-01-01T00:00:00Z")
    cloud = _cloud(seed)
    names = [f"net{i:02d}" for i in range(12)]
    made = [_net(cloud, name, f"10.{i}.0.0/24") for i, name in enumerate(names)]
    port_ids = [_port(cloud, net_id, name=f"port-{i}")["id"] for i, (net_id, _) in enumerate(made)]
    with cloud.write(cloud.admin_context()) as tx:
        router_ids = [routers.create_router(tx, prepare("router", {"name": f"r{i}"}))["id"] for i in range(6)]
    assert sorted(port_ids) != port_ids or sorted(router_ids) != router_ids  # id order is not creation order

    with cloud.read(cloud.admin_context()) as tx:
        assert [n["name"] for n in networks.list_networks(tx, {})] == names
        assert [s["name"] for s in networks.list_subnets(tx, {})] == names
        listed = [p["id"] for p in ports.list_ports(tx, {}) if p["device_owner"] == ""]
        assert listed == port_ids
        assert [r["id"] for r in routers.list_routers(tx, {})] == router_ids
    snap = cloud.snapshot()
    assert [n.name for n in snap.networks] == names
    assert [s.name for s in snap.subnets] == names
    assert [p.id for p in snap.ports if p.device_owner == ""] == port_ids
    assert [r.id for r in snap.routers] == router_ids
    assert [sid for n in snap.networks for sid in n.subnet_ids] == [sid for _, sid in made]
