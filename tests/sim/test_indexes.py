"""The indexes that keep a packet's cost flat as a cloud grows give the answers a plain scan does:
OpenFlow tables looked up by hashing (tuple space search) pick the flow a priority-ordered scan
picks, learned flows replace identical ones, and netfilter skips runs of rules keyed on a value
(physdev ports, remote-group /32 sources) the packet cannot match, and only those. Each is also
pickled and loaded back."""

from __future__ import annotations

import pickle
import random
from ipaddress import IPv4Address

import pytest

from neutrino.host.iptables import format_rule, parse_save
from neutrino.host.openflow import format_add_flow, parse_dump_flows
from neutrino.host.ovsdb import Bridge, Interface, Port
from neutrino.sim.netfilter import Hook, HookCtx, Netfilter, NfVerdict
from neutrino.sim.ovs import Meta, OvsBridgeSim, _compile_match, _Ctx
from neutrino.sim.packets import TCP, UDP, Ethernet, IPv4, ip, mac, push_vlan
from neutrino.sim.trace import StepKind

PORTS = ("p1", "p2", "p3", "p4")
MACS = (mac("fa:16:3e:00:00:01"), mac("fa:16:3e:00:00:02"))


def bridge() -> Bridge:
    return Bridge("br-x", ports=tuple(Port(n, (Interface(n),)) for n in PORTS), fail_mode="secure")


def random_flow(rng: random.Random) -> str:
    parts = [f"priority={rng.choice((1, 2, 3))}"]
    if rng.random() < 0.5:
        parts.append(f"in_port={rng.randint(1, 3)}")
    if rng.random() < 0.4:
        parts.append(f"dl_vlan={rng.choice((1, 2))}")
    if rng.random() < 0.4:
        parts.append(f"dl_dst={rng.choice(MACS)}")
    if rng.random() < 0.5:
        parts.append(rng.choice(("ip", "tcp", "udp", "arp")))
        if parts[-1] != "arp" and rng.random() < 0.6:
            parts.append(f"nw_dst={rng.choice(('10.0.0.0/24', '10.0.0.5', '10.0.1.0/25'))}")
        if parts[-1] == "tcp" or (len(parts) > 1 and parts[-2] == "tcp" and rng.random() < 0.5):
            parts.append("tcp_flags=+syn")
    return ",".join(parts) + " actions=drop"


def random_frame(rng: random.Random) -> Ethernet:
    dst = rng.choice(MACS)
    l4 = TCP(sport=1000, dport=22, flags=rng.choice((0x02, 0x10))) if rng.random() < 0.5 else UDP(sport=1, dport=2)
    packet = IPv4(src=ip("10.9.9.9"), dst=rng.choice((ip("10.0.0.5"), ip("10.0.1.7"), ip("10.0.0.200"))),
                  payload=l4)
    frame = Ethernet(dst=dst, src=mac("fa:16:3e:00:00:09"), payload=packet)
    return push_vlan(frame, rng.choice((1, 2))) if rng.random() < 0.6 else frame


def scan(flows: list, frame: Ethernet, in_port: int) -> str | None:
    """The flow a scan in priority order (ties: the first in the dump) picks: the reference."""
    ctx = _Ctx(frame, in_port, Meta())
    numbers = {n: i for i, n in enumerate(PORTS, 1)}
    for f in sorted(flows, key=lambda f: -f.priority):  # stable: dump order among equal priorities
        if all(_compile_match(m, lambda p: numbers.get(getattr(p, "name", ""), p))(ctx) for m in f.match):
            return format_add_flow(f.without_stats())
    return None


@pytest.mark.parametrize("seed", range(6))
def test_a_hashed_lookup_picks_the_flow_a_scan_picks(seed: int) -> None:
    rng = random.Random(seed)
    dump = parse_dump_flows("\n".join(random_flow(rng) for _ in range(40)))
    sim = OvsBridgeSim(bridge(), dump, None)
    loaded = pickle.loads(pickle.dumps(sim))
    hits = 0
    for _ in range(150):
        frame, port = random_frame(rng), rng.randint(1, 3)
        want = scan(list(dump.flows), frame, port)
        for s in (sim, loaded):
            got = [st.text for st in s.process(PORTS[port - 1], frame).steps if st.kind is StepKind.FLOW]
            assert got == ([want] if want else []), (want, got)
        hits += want is not None
    assert hits > 50
    assert [format_add_flow(f) for f in sim.flows(0)] == [format_add_flow(f) for f in sorted(
        dump.flows, key=lambda f: -f.priority)]


def test_a_learned_flow_replaces_an_identical_one_and_keeps_its_place_in_learning_order() -> None:
    dump = parse_dump_flows(
        "table=0,priority=1 actions=learn(table=20,priority=1,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
        "output:NXM_OF_IN_PORT[]),resubmit(,20)\n"
        "table=20,priority=1,dl_dst=fa:16:3e:00:00:01 actions=drop\n"
        "table=20,priority=0 actions=drop\n")
    sim = OvsBridgeSim(bridge(), dump, None)
    a = Ethernet(dst=MACS[1], src=MACS[0], payload=IPv4(src=ip("1.1.1.1"), dst=ip("2.2.2.2")))
    b = Ethernet(dst=MACS[0], src=MACS[1], payload=IPv4(src=ip("2.2.2.2"), dst=ip("1.1.1.1")))
    sim.process("p2", a)  # learns MACS[0] -> output:2, replacing the static drop flow for it
    sim.process("p3", b)
    sim.process("p1", a)  # re-learned on port 1: replaced again, still first in learning order
    assert [format_add_flow(f) for f in sim.learned_flows] == [
        "table=20,priority=1,dl_dst=fa:16:3e:00:00:01 actions=output:1",
        "table=20,priority=1,dl_dst=fa:16:3e:00:00:02 actions=output:3"]
    # the static flow for :01 was replaced; the re-learned flow went last among its priority
    assert [format_add_flow(f) for f in sim.flows(20)] == [
        "table=20,priority=1,dl_dst=fa:16:3e:00:00:02 actions=output:3",
        "table=20,priority=1,dl_dst=fa:16:3e:00:00:01 actions=output:1", "table=20,priority=0 actions=drop"]
    out = sim.process("p4", b)
    assert [e.port for e in out.outputs] == ["p1"]
    loaded = pickle.loads(pickle.dumps(sim))
    assert loaded.learned_flows == sim.learned_flows and loaded.flows(20) == sim.flows(20)
    assert [e.port for e in loaded.process("p4", b).outputs] == ["p1"]


def test_netfilter_skips_only_rules_the_packet_cannot_match() -> None:
    members = [f"10.0.0.{i}" for i in range(2, 40)]
    lines = ["-A FORWARD -m physdev --physdev-out tapa --physdev-is-bridged -j c",
             *(f"-A FORWARD -m physdev --physdev-{way} tap{x} --physdev-is-bridged -j ACCEPT"
               for x in "bcdefg" for way in ("out", "in")),
             "-A FORWARD -j ACCEPT",
             "-A c -m state --state RELATED,ESTABLISHED -j RETURN",
             *(f"-A c -s {m}/32 -j RETURN" for m in members),
             "-A c -s 10.0.0.0/24 -p tcp -m tcp --dport 22 -j RETURN",
             "-A c -j DROP"]
    text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:c - [0:0]\n" \
           + "".join(line + "\n" for line in lines) + "COMMIT\n"
    into_a = HookCtx(in_dev="qbr", out_dev="qbr", physdev_in="qvb", physdev_out="tapa", physdev_is_bridged=True)
    for nf in (Netfilter(parse_save(text)), pickle.loads(pickle.dumps(Netfilter(parse_save(text))))):
        for src, dport, want, rule in (("10.0.0.30", 80, NfVerdict.ACCEPT, "-A FORWARD -j ACCEPT"),
                                       ("10.0.0.77", 22, NfVerdict.ACCEPT, "-A FORWARD -j ACCEPT"),
                                       ("10.0.0.77", 80, NfVerdict.DROP, "-A c -j DROP")):
            res = nf.hook(Hook.FORWARD, IPv4(src=ip(src), dst=ip("10.0.0.99"), payload=TCP(sport=1, dport=dport)),
                          into_a)
            texts = [s.text for s in res.steps if s.kind is StepKind.RULE]
            assert res.verdict is want and texts[-1].startswith(rule), texts
            returned = "-A c -s 10.0.0.30/32 -j RETURN" if src == "10.0.0.30" else (
                "-A c -s 10.0.0.0/24 -p tcp -m tcp --dport 22 -j RETURN" if dport == 22 else "-A c -j DROP")
            assert texts[:2] == ["-A FORWARD -m physdev --physdev-out tapa --physdev-is-bridged -j c", returned]
        out_e = HookCtx(in_dev="qbr", out_dev="qbr", physdev_in="qvb", physdev_out="tape", physdev_is_bridged=True)
        res = nf.hook(Hook.FORWARD, IPv4(src=ip("10.0.0.3"), dst=ip("10.0.0.99"), payload=UDP(sport=1, dport=2)),
                      out_e)
        assert res.accepted and format_rule(res.rule).startswith(  # type: ignore[arg-type]
            "-A FORWARD -m physdev --physdev-out tape")
        none = HookCtx(in_dev="qbr", out_dev="qbr", physdev_in="qvb", physdev_out="tapz", physdev_is_bridged=True)
        res = nf.hook(Hook.FORWARD, IPv4(src=ip("10.0.0.3"), dst=ip("10.0.0.99"), payload=UDP(sport=1, dport=2)),
                      none)
        assert res.accepted and [s.text for s in res.steps if s.kind is StepKind.RULE] == ["-A FORWARD -j ACCEPT"]


def test_a_loaded_netfilter_keeps_its_connections_and_zones() -> None:
    raw = ("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
           "-A PREROUTING -m physdev --physdev-in tapa -j CT --zone 4097\n"
           "-A PREROUTING -i qvbb -j CT --zone 4098\nCOMMIT\n")
    text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n" + raw
    nf = Netfilter(parse_save(text))
    ctx = HookCtx(in_dev="qbr", out_dev="qbr", physdev_in="tapa", physdev_out="qvba", physdev_is_bridged=True)
    assert nf.traverse((Hook.PREROUTING, Hook.FORWARD, Hook.POSTROUTING),
                       IPv4(src=ip("10.0.0.5"), dst=ip("10.0.0.6"), payload=UDP(sport=5, dport=6)), ctx).accepted
    assert nf.zones() == {"tapa": 4097, "qvbb": 4098}
    loaded = pickle.loads(pickle.dumps(nf))
    assert loaded.zones() == nf.zones() and loaded.conntrack.dump() == nf.conntrack.dump()
    assert [c.zone for c in loaded.conntrack] == [4097]
    assert loaded.ruleset == nf.ruleset
    loaded.conntrack.rezone({4097: 4098})
    assert [c.zone for c in loaded.conntrack] == [4098]
    loaded.conntrack.forget({IPv4Address("10.0.0.6")})
    assert len(loaded.conntrack) == 0
