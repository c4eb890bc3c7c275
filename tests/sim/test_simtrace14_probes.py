"""Issue #17, the simulator's fourteenth round (simtrace14): a repeated probe's work per hop made
cheaper. An OVS bridge answers the very frame and metadata objects it answered from its memory
before from that entry, found by the frame's id (``OvsBridgeSim.process``); netfilter's traverse
follows the very packet and context objects it carried before hook by hook (``_traversed``); a
guest keeps its lease's address object and answers any ICMP frame object it answered before
with the same reply; the world remembers, per packet object, what a packet delivered back to a
namespace says (``World._delivered``); plus calls inlined (no behaviour of their own).

These tests hold random sequences of probes on seed 000 and on a 100-instance cloud to a world
whose every memory is wiped before every probe, and pin each shortcut against the work done
without it: dropping the port from the bridge's check, the MAC table's count from it, running
the hooks on the traverse's shortcut, the context from its key, or the lease from the guest's
address memory makes them fail."""

from __future__ import annotations

import pathlib
import pickle
import random
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest
import yaml

from neutrino.host.iptables import parse_save
from neutrino.plan import plan_cloud
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim.cloud import world_of
from neutrino.sim.conntrack import Conntrack
from neutrino.sim.guest import Guest, Lease
from neutrino.sim.netfilter import FORWARD_PATH, Netfilter, NfVerdict
from neutrino.sim.ovs import OvsBridgeSim
from neutrino.sim.packets import (
    TCP,
    Ethernet,
    ICMPType,
    IPv4,
    TCPFlag,
    UnreachCode,
    echo_request,
    icmp_error,
    ip,
    mac,
)
from neutrino.sim.trace import render, to_json
from neutrino.sim.world import World
from tests.sim.conftest import brought_up
from tests.sim.test_sim6_memories import RULES, _tcp_exchange


def _wipe(world: World) -> None:
    """Every memory a probe reads, forgotten: the world's hops, contexts, transmits and packets'
    answers; the IP stacks', Linux bridges', OVS bridges', netfilters' and guests' memories."""
    world._forget_hops()
    for st in world._stacks.loaded().values():
        st._again.clear()
    for lbr in world._lbr.loaded().values():
        lbr._seen.clear()
    for sim in world._ovs.loaded().values():
        sim._memo.clear()
        sim._memo_l2.clear()
    for nf in world._nf.loaded().values():
        if nf is not None:
            for memory in (nf._hooks, nf._fast, nf._after, nf._walked, nf._traversed, nf._runs):
                memory.clear()
    for g in world.guests.values():
        g._echoes.clear()
        g._pings.clear()
        g._ip_of = None


def _rendered(trace: Any) -> tuple[str, str, str]:  # noqa: ANN401
    return render(trace, "detailed"), render(trace, "summary"), to_json(trace)


def _state(world: World) -> tuple[object, ...]:
    """What probes leave behind: connection tables, neighbours, MAC tables, learned flows."""
    cts = {k: nf.conntrack.dump() for k, nf in world._nf.loaded().items() if nf is not None}
    neigh = {k: st.neighbours() for k, st in world._stacks.loaded().items()}
    bridges = {k: (s.mac_table, s.learned_flows) for k, s in world._ovs.loaded().items()}
    guests = {n: sorted(map(str, g._neigh)) for n, g in world.guests.items()}
    return cts, neigh, bridges, guests


def _run_both(world: World, reference: World, probes: list[tuple[str, str, dict[str, Any]]], seed: int,
              n: int) -> list[Any]:
    rng = random.Random(seed)
    traces = []
    for _ in range(n):
        src, dst, kw = rng.choice(probes)
        got = world.probe(src, dst, **kw)
        _wipe(reference)
        want = reference.probe(src, dst, **kw)
        assert _rendered(got) == _rendered(want), (src, dst, kw)
        traces.append(got)
    assert _state(world) == _state(reference)
    return traces


@pytest.fixture(scope="module")
def seed0_pair(seed0_cloud: CloudSnapshot) -> tuple[World, World, str]:
    hosts = tuple(plan_cloud(seed0_cloud))
    a, b = world_of(seed0_cloud, hosts), world_of(seed0_cloud, hosts)
    assert a.boot() == b.boot()
    return a, b, next(str(f.floating_ip_address) for f in seed0_cloud.floating_ips)


def _cloud100(path: pathlib.Path) -> None:
    """100 instances on 5 computes and 4 VXLAN networks behind one router, vm0 with a floating IP
    (``bench/sim_bench.py``'s cloud)."""
    hosts = [{"name": "network", "roles": ["controller", "network"], "management_ip": "192.168.50.10",
              "tunnel_ip": "192.168.50.10"}]
    hosts += [{"name": f"compute{i}", "role": "compute", "management_ip": f"192.168.50.{20 + i}",
               "tunnel_ip": f"192.168.50.{20 + i}"} for i in range(5)]
    nets: list[dict[str, Any]] = [{"name": "public", "external": True, "subnets": [
        {"name": "public-subnet", "cidr": "203.0.113.0/24", "gateway": "203.0.113.1", "enable_dhcp": False}]}]
    nets += [{"name": f"net{k}", "subnets": [{"name": f"subnet{k}", "cidr": f"10.{k}.0.0/24"}]} for k in range(4)]
    doc = {"deployment": {"mechanism": "ml2_ovs", "tenant_network_types": ["vxlan"]}, "hosts": hosts,
           "resources": {
               "networks": nets,
               "routers": [{"name": "r1", "gateway": {"network": "public"},
                            "interfaces": [f"subnet{k}" for k in range(4)]}],
               "security_group_rules": [
                   {"group": "default", "direction": "ingress", "protocol": "icmp"},
                   {"group": "default", "direction": "ingress", "protocol": "tcp", "port_range": "22:22"}],
               "servers": [{"name": f"vm{i}", "image": "cirros", "flavor": "1", "networks": [f"net{i % 4}"],
                            "host": f"compute{i % 5}"} for i in range(100)],
               "floating_ips": [{"network": "public", "server": "vm0"}]}}
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture(scope="module")
def cloud100_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, World, str]:
    path = tmp_path_factory.mktemp("simtrace14-yaml") / "cloud100.yaml"
    _cloud100(path)
    cloud = brought_up(path, tmp_path_factory, "simtrace14-cloud100")
    hosts = tuple(plan_cloud(cloud))
    a, b = world_of(cloud, hosts), world_of(cloud, hosts)
    assert a.boot() == b.boot()
    return a, b, next(str(f.floating_ip_address) for f in cloud.floating_ips)


@pytest.mark.parametrize("seed", [1, 2])
def test_seed000_probes_trace_as_a_world_wiped_before_every_probe(seed0_pair: tuple[World, World, str],
                                                                 seed: int) -> None:
    world, reference, fip = seed0_pair
    probes: list[tuple[str, str, dict[str, Any]]] = [
        ("cirros", "8.8.8.8", {}), ("cirros", "8.8.8.8", {}), ("cirros", "8.8.8.8", {"ident": 41001}),
        ("outside", fip, {"proto": "tcp", "dport": 22}), ("outside", fip, {"proto": "tcp", "dport": 23}),
        ("outside", fip, {}), ("cirros", "8.8.8.8", {"proto": "tcp", "dport": 80}),
        ("cirros", "8.8.8.8", {"proto": "udp", "dport": 53}), ("cirros", "8.8.8.8", {"proto": "http"}),
        ("cirros", "8.8.8.8", {"size": 1400}), ("cirros", fip, {}), ("cirros", "10.1.0.1", {}),
        ("cirros", "8.8.8.8", {"src_ip": "10.1.0.99"}), ("cirros", "8.8.8.8", {"src_mac": "fa:16:3e:00:00:99"}),
        ("cirros", "10.1.0.1", {"proto": "arp"}), ("cirros", "8.8.8.8", {"proto": "tcp", "sport": 41000}),
    ]
    traces = _run_both(world, reference, probes, seed, 40)
    assert any(t.delivered for t in traces) and any(not t.succeeded for t in traces)
    # the shortcuts ran: a bridge answered a frame object by its id, a traverse by its objects,
    # the guest's address is its lease's, a delivered answer was read once
    assert any(isinstance(k, int) for sim in world._ovs.loaded().values() for k in sim._memo)
    assert any(nf is not None and nf._traversed for nf in world._nf.loaded().values())
    assert world.guests["cirros"]._ip_of is not None and world._delivered


@pytest.mark.parametrize("seed", [3])
def test_cloud100_probes_trace_as_a_world_wiped_before_every_probe(cloud100_pair: tuple[World, World, str],
                                                                  seed: int) -> None:
    world, reference, fip = cloud100_pair
    probes: list[tuple[str, str, dict[str, Any]]] = [
        ("vm0", "8.8.8.8", {}), ("vm0", "vm4", {}), ("vm0", "vm4", {}), ("outside", fip, {"proto": "tcp", "dport": 22}),
        ("outside", fip, {}), ("vm3", "vm7", {"proto": "tcp", "dport": 22}), ("vm5", "vm6", {"proto": "udp"}),
        ("vm1", "8.8.8.8", {"size": 1400}), ("vm2", "vm6", {"proto": "tcp", "dport": 80}), ("vm9", "vm0", {}),
        ("vm4", "vm0", {}), ("vm8", "8.8.8.8", {"proto": "tcp", "dport": 443}),
    ]
    _run_both(world, reference, probes, seed, 30)


# -- the shortcuts, each against the work done without it ----------------------------------------------

def test_a_bridge_answers_the_same_frame_object_by_port_and_mac_table(seed0_pair: tuple[World, World, str]) -> None:
    """The same frame object on another port, and after the MAC table changed, gets what a bridge
    without memories gets (dropping the port or the MAC table's count from the check fails this)."""
    world, _, _ = seed0_pair
    sim = world.bridge("compute", "br-int")
    fresh: OvsBridgeSim = pickle.loads(pickle.dumps(sim))  # the same tables and MAC table, no memories
    ports = [p.name for p in sim.ports if p.name.startswith("qvo")] or [p.name for p in sim.ports]
    port, other = ports[0], next(p.name for p in sim.ports if p.name not in (ports[0], "br-int"))
    stranger = mac("fa:16:3e:77:77:77")
    frame = echo_request(mac("fa:16:3e:30:80:d4"), stranger, ip("10.1.0.2"), ip("10.1.0.77"))

    def both(p: str, f: Ethernet) -> None:
        fresh._memo.clear()
        fresh._memo_l2.clear()
        assert sim.process(p, f) == fresh.process(p, f)

    for _ in range(3):
        both(port, frame)
    assert any(isinstance(k, int) for k in sim._memo)  # the frame object's entry
    both(other, frame)
    both(port, frame)
    # the stranger's MAC learned on the other port (in every VLAN the table holds): NORMAL sends
    # the frame there now, not flooded
    flooded = sim.process(port, frame)
    for vlan in {v for v, _, _ in sim._fdb.entries()}:
        for bridge in (sim, fresh):
            bridge._fdb.learn(vlan, stranger, other)
    both(port, frame)
    assert sim.process(port, frame) != flooded
    both(port, frame)


def test_a_traverse_follows_its_objects_as_working_every_hook_out_gives() -> None:
    """Random orders of a TCP exchange's packets (a reset removes the connection), in two contexts
    (one marked: dropped), give what a netfilter without the traverse's memory gives (not running
    the hooks on a remembered traverse, or keying it without the context, fails this)."""
    ctx, syn, reply, ack = _tcp_exchange()
    marked = replace(ctx, mark=1)
    rst = replace(syn, payload=replace(syn.payload, flags=TCPFlag.RST))
    rng = random.Random(14)
    nf, ref = Netfilter(parse_save(RULES), Conntrack()), Netfilter(parse_save(RULES), Conntrack())
    verdicts = set()
    for _ in range(300):
        p, c = rng.choice([(syn, ctx), (reply, ctx), (ack, ctx), (ack, ctx), (ack, marked), (rst, ctx), (syn, marked)])
        ref._traversed.clear()
        got, want = nf.traverse(FORWARD_PATH, p, c), ref.traverse(FORWARD_PATH, p, c)
        assert got == want
        assert nf.conntrack.dump() == ref.conntrack.dump()
        verdicts.add(got.verdict)
    assert verdicts == {NfVerdict.ACCEPT, NfVerdict.DROP} and nf._traversed
    # remembered in a context, asked in an equal one of another object: worked out (and equal)
    again = replace(ctx)
    assert nf.traverse(FORWARD_PATH, ack, again) == ref.traverse(FORWARD_PATH, ack, again)


def test_a_traverse_given_its_first_results_carries_on_as_one_that_ran_them() -> None:
    ctx, syn, reply, ack = _tcp_exchange()
    nf = Netfilter(parse_save(RULES), Conntrack())
    for p in (syn, reply, ack, ack, ack):
        first = nf.traverse(FORWARD_PATH, p, ctx)
    _, _, hooks, chain, combined = nf._traversed[(id(ack), id(ctx))]
    assert hooks == FORWARD_PATH and combined is first and [h for h, _, _ in chain] == list(FORWARD_PATH)
    assert nf._traverse(FORWARD_PATH, ack, ctx, [chain[0][1]]) == combined


def test_a_guest_s_address_is_its_lease_s_and_is_not_pickled() -> None:
    g = Guest("g", mac("fa:16:3e:00:00:01"))
    assert g.ip is None
    lease = Lease(IPv4Interface("10.0.0.5/24"), IPv4Address("10.0.0.2"), 86400, IPv4Address("10.0.0.1"), (),
                  None, None, None, ())
    g.lease = lease
    assert g.ip == IPv4Address("10.0.0.5") and g.ip is g.ip
    g.lease = replace(lease, address=IPv4Interface("10.0.0.6/24"))  # a new lease: its own address
    assert g.ip == IPv4Address("10.0.0.6")
    assert "_ip_of" not in g.__getstate__()
    loaded: Guest = pickle.loads(pickle.dumps(g))
    assert loaded._ip_of is None and loaded.ip == IPv4Address("10.0.0.6")
    g.lease = None
    assert g.ip is None


def test_a_guest_answers_an_icmp_frame_object_as_it_did_and_others_anew() -> None:
    g = Guest("g", mac("fa:16:3e:00:00:01"))
    g.lease = Lease(IPv4Interface("10.0.0.5/24"), IPv4Address("10.0.0.2"), 86400, IPv4Address("10.0.0.1"), (),
                    None, None, None, ())
    ping = echo_request(mac("fa:16:3e:00:00:09"), g.mac, ip("10.0.0.9"), ip("10.0.0.5"))
    syn = IPv4(src=ip("10.0.0.5"), dst=ip("10.0.0.9"), payload=TCP(sport=4000, dport=22, flags=TCPFlag.SYN))
    error = Ethernet(dst=g.mac, src=mac("fa:16:3e:00:00:09"),
                     payload=IPv4(src=ip("10.0.0.9"), dst=ip("10.0.0.5"), payload=icmp_error(ICMPType.DEST_UNREACH, UnreachCode.PORT, syn)))
    for frame in (ping, error):
        first = g.receive(frame)
        assert g.receive(frame) is first
        fresh = Guest("g", g.mac)
        fresh.lease = g.lease
        assert fresh.receive(frame) == first
    assert g.receive(ping).step.detail == "echo reply to 10.0.0.9"
    assert g.receive(error).step.detail.startswith("ICMP type 3 from 10.0.0.9")
