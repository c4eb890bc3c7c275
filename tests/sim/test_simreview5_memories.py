"""Review of the simulator's fifth round of memories (commit afb52d8): the world's replayed bridge
hops, host labels, hook contexts and transmits, the IP stacks' remembered ingress, routes,
forwards and transmits, the Linux bridges' decisions, the guests' echo frames and replies.

Each test runs one sequence of user actions on a world as it is and on an identical world whose
memories (those, and the guests') are wiped before every probe, and compares every trace
(detailed, summary, JSON) and what the worlds learned. The sequences mix what a user does:
varied probes (ICMP, TCP with flags, UDP, HTTP, ARP, DHCP, from the outside and from hosts,
injected at devices with tags and destination MACs, spoofed sources that move a MAC, sized
ones), refreshes after API changes (a server added or deleted, a rule deleted), flood pruning
turned off and on, a world kept and loaded back. No stale answer was found: these are guards."""

from __future__ import annotations

import pathlib
import random
from dataclasses import replace
from typing import Any

import pytest

from neutrino.errors import NeutrinoError
from neutrino.plan import plan_cloud
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim.cloud import refresh_world, world_of
from neutrino.sim.keep import load_world, save_world
from neutrino.sim.topology import Kind
from neutrino.sim.trace import render, to_json
from neutrino.sim.world import World, _Done
from tests.sim.conftest import brought_up
from tests.sim.test_living_world import add_server, delete_server

SEED003 = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed003.yaml"


# -- clouds -----------------------------------------------------------------------------------------

def _delete_rule(cloud: CloudSnapshot, protocol: str | None, port: int | None) -> CloudSnapshot:
    groups = tuple(replace(g, rules=tuple(r for r in g.rules if not (
        r.direction == "ingress" and r.protocol == protocol and r.port_range_min == port)))
        for g in cloud.security_groups)
    return replace(cloud, security_groups=groups, _index={})


@pytest.fixture(scope="module")
def seed0_more(seed0_cloud: CloudSnapshot) -> CloudSnapshot:
    """Seed 000 with a second instance next to ``cirros`` (east-west traffic, a MAC to move)."""
    return add_server(seed0_cloud, "vm1", 1)


@pytest.fixture(scope="module")
def seed3_cloud(tmp_path_factory: pytest.TempPathFactory) -> CloudSnapshot:
    """Seed 003 (nova-network: Linux bridges that learn, a physical segment between hosts)."""
    return brought_up(SEED003, tmp_path_factory, "simreview5-seed3")


# -- the comparison ---------------------------------------------------------------------------------

def _wipe(world: World) -> None:
    """Every memory commit afb52d8 added, forgotten: the world's hops, labels, contexts, transmits,
    the stacks' remembered ingress/routes/forwards/transmits, the Linux bridges' decisions, and
    the guests' echo requests and replies."""
    world._forget_hops()
    for st in world._stacks.loaded().values():
        st._again.clear()
    for lbr in world._lbr.loaded().values():
        lbr._seen.clear()
    for g in world.guests.values():
        g._echoes.clear()
        g._pings.clear()


def _learned(world: World) -> dict[object, object]:
    """What the world learned: leases, guests' neighbours, MAC tables, Linux bridge FDBs, IP
    neighbours, conntrack tables."""
    out: dict[object, object] = {}
    for n, g in sorted(world.guests.items()):
        out[("guest", n)] = (str(g.address), sorted((str(a), str(m)) for a, m in g._neigh.items()))
    for key in sorted(world._ovs.loaded()):
        out[("fdb", key)] = sorted((v, m.value, p) for v, m, p in world._ovs[key].mac_table)
    for key in sorted(world._lbr.loaded()):
        out[("lbr", key)] = world._lbr[key].fdb()
    for key in sorted(world._stacks.loaded()):
        out[("neigh", key)] = world._stacks[key].neighbours()
    for key, nf in sorted(world._nf.loaded().items()):
        out[("ct", key)] = nf.conntrack.dump() if nf is not None else ""
    out["segments"] = sorted((k, sorted((m.value, str(e)) for m, e in fdb.items()))
                             for k, fdb in world._seg_fdb.items())
    return out


def _outcome(world: World, src: str, dst: str, kw: dict[str, Any]) -> str:
    try:
        t = world.probe(src, dst, **kw)
    except NeutrinoError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "\n".join((render(t, "detailed"), render(t, "summary"), to_json(t)))


def _both(remembering: World, forgetting: World, src: str, dst: str, **kw: Any) -> str:  # noqa: ANN401
    _wipe(forgetting)
    a = _outcome(remembering, src, dst, kw)
    b = _outcome(forgetting, src, dst, kw)
    assert a == b, (src, dst, kw)
    return a


def _varied(world: World, cloud: CloudSnapshot, rng: random.Random, n: int) -> list[tuple[str, str, dict[str, Any]]]:
    """``n`` probes of every kind a user asks for, drawn by ``rng``."""
    guests = sorted(world.guests)
    fips = sorted(str(f.floating_ip_address) for f in cloud.floating_ips)
    addrs = sorted(str(g.ip) for g in world.guests.values() if g.ip is not None)
    macs = [str(world.guests[g].mac) for g in guests]
    hosts = sorted(h for h in world.hosts if h != "outside")
    ends = sorted({e for e in world.topo.wires if e.host and e.host != "outside"
                   and e.kind in (Kind.OVS, Kind.LBR, Kind.NS)}, key=str)
    out: list[tuple[str, str, dict[str, Any]]] = []
    for _ in range(n):
        roll = rng.random()
        src = rng.choice(guests)
        kw: dict[str, Any] = {}
        if roll < 0.12:  # a frame injected at a device, tagged or to a given MAC
            e = rng.choice(ends)
            kw = {"proto": rng.choice(["icmp", "tcp", "udp", "arp"]), "at": f"{e.host}:{e.element or 'root'}:{e.port}"}
            dst = rng.choice(addrs) if kw["proto"] == "arp" else rng.choice([*addrs, "8.8.8.8"])
            if rng.random() < 0.3:
                kw["vlan"] = rng.choice([1, 2, 100])
            if rng.random() < 0.5:
                kw["dst_mac"] = rng.choice(["ff:ff:ff:ff:ff:ff", *macs])
        elif roll < 0.22 and fips:
            src, dst = "outside", rng.choice(fips)
            kw = {"proto": rng.choice(["icmp", "tcp"]), "dport": rng.choice([22, 23, 80])}
        elif roll < 0.27:
            src, dst = "host:" + rng.choice(hosts), rng.choice([*addrs, "8.8.8.8"])
        else:
            dst = rng.choice([*guests, *addrs, *fips, "8.8.8.8", "169.254.169.254"])
            kw["proto"] = rng.choice(["icmp", "icmp", "tcp", "udp", "http", "arp", "dhcp"])
            if kw["proto"] == "arp":
                dst = rng.choice([*addrs, *(a.rsplit(".", 1)[0] + ".1" for a in addrs)])
            if kw["proto"] == "tcp":
                kw["dport"] = rng.choice([22, 23, 80])
                if rng.random() < 0.4:
                    kw["tcp_flags"] = rng.choice(["R", "SA", ".", "F", "PA", "S"])
            if kw["proto"] in ("tcp", "udp") and rng.random() < 0.3:
                kw["sport"] = rng.choice([40000, 40001, 33333])
            if kw["proto"] in ("icmp", "tcp", "udp") and rng.random() < 0.15:
                kw["src_mac"] = rng.choice(["fa:16:3e:00:00:77", *macs])  # a MAC moved to this port
            if kw["proto"] in ("icmp", "tcp", "udp") and rng.random() < 0.1:
                kw["src_ip"] = rng.choice([*addrs, "10.9.9.9"])
        if kw.get("proto", "icmp") in ("icmp", "tcp", "udp") and rng.random() < 0.1:
            kw["size"] = rng.choice([100, 1400, 1472, 1600])
        if kw.get("proto", "icmp") in ("icmp", "tcp") and "at" not in kw and rng.random() < 0.3:
            kw["ident"] = rng.choice([41000, 41001])
        out.append((src, dst, kw))
    return out


def _pair(cloud: CloudSnapshot) -> tuple[World, World]:
    hosts = tuple(plan_cloud(cloud))
    remembering, forgetting = world_of(cloud, hosts), world_of(cloud, hosts)
    assert remembering.boot() == forgetting.boot()
    return remembering, forgetting


# -- the tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["seed000", "seed003"])
def test_varied_probes_trace_as_without_the_memories(which: str, request: pytest.FixtureRequest) -> None:
    cloud: CloudSnapshot = request.getfixturevalue("seed0_more" if which == "seed000" else "seed3_cloud")
    remembering, forgetting = _pair(cloud)
    rng = random.Random(5)
    todo = _varied(remembering, cloud, rng, 70)
    outcomes = [_both(remembering, forgetting, src, dst, **kw) for src, dst, kw in todo]
    # the same probes again: now every memory has something to give back
    outcomes += [_both(remembering, forgetting, src, dst, **kw) for src, dst, kw in todo]
    _wipe(forgetting)
    assert _learned(remembering) == _learned(forgetting)
    # not vacuous: most probes got through to a trace, and the memories were used
    assert sum(1 for o in outcomes if not o.startswith(("InvalidInput", "NotFound"))) > len(outcomes) // 2
    assert any(st._again for st in remembering._stacks.loaded().values())
    if which == "seed000":
        assert any(isinstance(d, _Done) for d in remembering._done.values())
    else:
        assert any(lbr._seen for lbr in remembering._lbr.loaded().values())


def test_a_mac_moved_between_bridge_ports_and_back_traces_as_without_the_memories(seed3_cloud: CloudSnapshot) -> None:
    """nova-network's Linux bridges learn (ageing 300): a frame from one instance carrying
    another's MAC moves that MAC to its port; the other's own traffic moves it back. Traces to
    the moved MAC's owner follow each move (the remembered decisions are forgotten with it)."""
    remembering, forgetting = _pair(seed3_cloud)
    a, b = sorted(remembering.guests)[:2]
    b_mac = str(remembering.guests[b].mac)
    b_ip = str(remembering.guests[b].ip)
    first = _both(remembering, forgetting, a, b_ip)
    _both(remembering, forgetting, a, b_ip)
    _both(remembering, forgetting, a, "8.8.8.8", src_mac=b_mac)  # b's MAC now learned on a's port
    moved = _both(remembering, forgetting, a, b_ip)
    _both(remembering, forgetting, a, b_ip)
    _both(remembering, forgetting, b, "8.8.8.8")  # b talks: its MAC learned back on its port
    back = _both(remembering, forgetting, a, b_ip)
    again = _both(remembering, forgetting, a, b_ip)
    assert moved != first  # the move shows in the trace (so a stale decision would too)
    assert back == again
    _wipe(forgetting)
    assert _learned(remembering) == _learned(forgetting)


@pytest.mark.parametrize("which", ["seed000", "seed003"])
def test_changes_refreshes_pruning_and_a_kept_world_trace_as_without_the_memories(
        which: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> None:
    """(With the world's invalidations taken out, i.e. no forgetting on refresh nor on a change
    of wiring or network hosts, seed 003's run here no longer traces, nor refreshes, the same.)"""
    cloud = request.getfixturevalue("seed0_more") if which == "seed000" \
        else add_server(request.getfixturevalue("seed3_cloud"), "vm1", 1)
    remembering, forgetting = _pair(cloud)
    rng = random.Random(17)
    worlds = [remembering, forgetting]

    def refresh(new: CloudSnapshot) -> None:
        old = {h.name: h for h in plan_cloud(cloud)}
        changed = [h for h in plan_cloud(new) if old.get(h.name) != h]
        assert refresh_world(worlds[0], new, changed) == refresh_world(worlds[1], new, changed)

    def some(n: int) -> None:
        for src, dst, kw in _varied(worlds[0], cloud, rng, n):
            _both(worlds[0], worlds[1], src, dst, **kw)

    some(25)
    for step in ("add", "rule22", "pruning", "keep", "rule-icmp", "delete", "pruning", "add again"):
        if step == "add":
            new = add_server(cloud, "vm9", 9)
        elif step == "add again":
            new = add_server(cloud, "vm8", 8)
        elif step == "rule22":
            new = _delete_rule(cloud, "tcp", 22)
        elif step == "rule-icmp":
            new = _delete_rule(cloud, "icmp", None)
        elif step == "delete":
            new = delete_server(cloud, "vm1")
        else:
            new = cloud
        if step == "pruning":
            for w in worlds:
                w.flood_pruning = not w.flood_pruning
        elif step == "keep":
            for i, w in enumerate(worlds):
                save_world(w, tmp_path / f"w{i}")
            worlds = [load_world(tmp_path / f"w{i}") for i in range(2)]
        else:
            refresh(new)
            cloud = new
        some(20)
    _wipe(worlds[1])
    assert _learned(worlds[0]) == _learned(worlds[1])
    assert sorted(worlds[0].guests) == sorted(s.name for s in cloud.servers)


def test_a_spoofed_arp_moves_a_router_s_neighbour_and_the_next_reply_follows(seed0_more: CloudSnapshot) -> None:
    """vm1's ARP claiming cirros's address teaches the router's qr- device the wrong MAC (seed 000,
    grizzly: no ARP spoofing protection): the reply to cirros's next ping goes to vm1. The router's
    remembered transmit of that very reply packet must not outlive the neighbour entry it read."""
    remembering, forgetting = _pair(seed0_more)
    cirros = remembering.guests["cirros"]
    assert cirros.lease is not None
    gateway = str(cirros.lease.router)
    before = [_both(remembering, forgetting, "cirros", "8.8.8.8") for _ in range(3)]
    _both(remembering, forgetting, "vm1", gateway, proto="arp", src_ip=str(cirros.ip))
    after = _both(remembering, forgetting, "cirros", "8.8.8.8")
    assert before[1] == before[2] and after != before[2]
    assert "vm1: 10.1.0.2 is not this guest's address" in after
    _both(remembering, forgetting, "cirros", gateway, proto="arp")  # cirros's own ARP puts it right
    assert _both(remembering, forgetting, "cirros", "8.8.8.8") == before[2]
    _wipe(forgetting)
    assert _learned(remembering) == _learned(forgetting)


def test_a_spoofed_arp_moves_a_guest_s_gateway_and_its_next_ping_follows(seed0_more: CloudSnapshot) -> None:
    """vm1's ARP request for cirros's address, claiming to be the gateway, teaches cirros the
    gateway's address at vm1's MAC (a guest learns the sender of a request for it): cirros's next
    ping leaves to vm1. Its echo request (remembered) readdressed to the gateway's MAC (also
    remembered, by the frame and the MAC object) must follow the new neighbour."""
    remembering, forgetting = _pair(seed0_more)
    cirros = remembering.guests["cirros"]
    assert cirros.lease is not None and cirros.ip is not None
    gateway = str(cirros.lease.router)
    before = [_both(remembering, forgetting, "cirros", "8.8.8.8") for _ in range(3)]
    _both(remembering, forgetting, "vm1", str(cirros.ip), proto="arp", src_ip=gateway)
    after = _both(remembering, forgetting, "cirros", "8.8.8.8")
    assert before[1] == before[2] and after != before[2]
    assert "vm1: 8.8.8.8 is not this guest's address" in after
    _both(remembering, forgetting, "cirros", gateway, proto="arp")  # the gateway's own answer puts it right
    assert _both(remembering, forgetting, "cirros", "8.8.8.8") == before[2]
    _wipe(forgetting)
    assert _learned(remembering) == _learned(forgetting)
