"""Round five's boot speed-ups give what the code before them gives (issue #17).

- An OpenFlow subtable reads a packet's key with a function compiled once per signature
  (``ovs._keyer``) instead of :func:`ovs._get`'s chain of name tests: the same key for every field
  and mask, and a table lookup picks the flow a plain priority-ordered scan of the compiled match
  tests picks, over random tables and packets (hypothesis).
- Actions run through a handler per action class (``ovs._ACTIONS``): a plain bridge and a subclass
  (which goes through ``_action`` for every action, as ofproto/trace's recorder does) give equal
  results for flows using every modelled action.
- NORMAL floods from a per-(VLAN, input port) list kept in the port index: the same copies,
  sentence and ports offered to ``unfollowed`` as a fresh index's.
- netfilter looks a hook's first chain and a jump's target chain up once: the same verdicts and
  steps as fresh netfilters, over random packets.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neutrino.host.iptables import parse_save
from neutrino.host.openflow import Output, ReservedPort, parse_dump_flows
from neutrino.host.ovsdb import Bridge, Interface, Port
from neutrino.sim import ovs
from neutrino.sim.netfilter import Hook, HookCtx, Netfilter
from neutrino.sim.ovs import Meta, OvsBridgeSim, _compile_match, _Ctx, _get, _getter, _keyer, _packet_key
from neutrino.sim.ovs_normal import MacTable, PortIndex, PortKind, SimPort, normal
from neutrino.sim.packets import ARP, ICMP, TCP, UDP, Ethernet, IPv4, ip, mac, push_vlan

MACS = (mac("fa:16:3e:00:00:01"), mac("fa:16:3e:00:00:02"), mac("ff:ff:ff:ff:ff:ff"), mac("01:00:5e:00:00:01"))
ADDRS = (ip("10.0.0.5"), ip("10.0.1.7"), ip("10.0.0.200"), ip("0.0.0.0"), ip("255.255.255.255"))
FIELDS = ("in_port", "eth_src", "eth_dst", "eth_type", "vlan_tci", "vlan_vid", "dl_vlan", "tun_id", "metadata",
          "pkt_mark", "ct_state", "reg0", "reg5", "reg15", "xreg1", "nw_proto", "ip_src", "ip_dst", "nw_ttl",
          "nw_tos", "tcp_src", "tcp_dst", "udp_dst", "icmp_type", "arp_op", "arp_spa", "arp_tpa", "arp_sha")


@st.composite
def frames(draw: st.DrawFn) -> Ethernet:
    kind = draw(st.sampled_from(("udp", "tcp", "icmp", "arp")))
    src, dst = draw(st.sampled_from(MACS)), draw(st.sampled_from(MACS))
    a, b = draw(st.sampled_from(ADDRS)), draw(st.sampled_from(ADDRS))
    if kind == "arp":
        frame = Ethernet(dst=dst, src=src, payload=ARP(op=draw(st.sampled_from((1, 2))), hwsrc=src, psrc=a,
                                                       pdst=b))
    else:
        l4: TCP | UDP | ICMP = (UDP(sport=draw(st.sampled_from((67, 68, 53))), dport=draw(st.sampled_from((67, 68))))
                                if kind == "udp" else TCP(sport=1000, dport=draw(st.sampled_from((22, 80))))
                                if kind == "tcp" else ICMP(type=8))
        frame = Ethernet(dst=dst, src=src, payload=IPv4(src=a, dst=b, ttl=draw(st.sampled_from((1, 64))), payload=l4))
    for vid in draw(st.lists(st.sampled_from((1, 2, 4094)), max_size=2)):
        frame = push_vlan(frame, vid, pcp=draw(st.sampled_from((0, 5))))
    return frame


@st.composite
def contexts(draw: st.DrawFn) -> _Ctx:
    regs = tuple(draw(st.lists(st.sampled_from((0, 1, 7, 0xFFFFFFFF)), max_size=16)))
    meta = Meta(tun_id=draw(st.sampled_from((None, 0, 0x64, 0x65))), registers=regs,
                metadata=draw(st.sampled_from((0, 3))), pkt_mark=draw(st.sampled_from((0, 1))),
                ct_state=draw(st.sampled_from((0, 0x21, 0x22))))
    return _Ctx(draw(frames()), draw(st.sampled_from((1, 2, 3, 0xFFFE))), meta)


signatures = st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from((None, 0xFF, 0x1000, 0xFFF, 0x010000000000))),
                      min_size=1, max_size=4).map(tuple)


@settings(max_examples=200, deadline=None)
@given(sig=signatures, ctx=contexts())
def test_a_compiled_key_is_the_key_the_field_reader_gives(sig: tuple[tuple[str, int | None], ...],
                                                         ctx: _Ctx) -> None:
    assert _keyer(sig)(ctx) == _packet_key(sig, ctx)
    for name, _ in sig:
        assert _getter(name)(ctx) == _get(ctx, name)


def test_a_wrong_getter_would_be_seen() -> None:
    """The comparison above can fail: the source and destination MACs differ in these packets."""
    ctx = _Ctx(Ethernet(dst=MACS[0], src=MACS[1], payload=IPv4(src=ADDRS[0], dst=ADDRS[1], payload=ICMP())), 1,
               Meta(tun_id=5, registers=(1, 2, 3, 4, 5, 6)))
    assert _getter("eth_src")(ctx) != _get(ctx, "eth_dst")
    assert _keyer((("reg5", None),))(ctx) == (6,) != _keyer((("reg4", None),))(ctx)
    assert _keyer((("tun_id", None), ("in_port", None)))(ctx) == (5, 1)
    assert _keyer((("eth_type", None), ("nw_proto", None), ("ip_dst", 0xFFFFFF00)))(ctx) == (
        0x800, 1, int(ADDRS[1]) & 0xFFFFFF00)
    assert _keyer((("udp_dst", None),))(ctx) is None  # an ICMP packet has no UDP port


PORTS = ("p1", "p2", "p3", "p4")


def _bridge() -> Bridge:
    return Bridge("br-x", ports=tuple(Port(n, (Interface(n),)) for n in PORTS), fail_mode="secure")


@st.composite
def flow_texts(draw: st.DrawFn) -> str:
    parts = [f"priority={draw(st.sampled_from((1, 2, 3)))}"]
    if draw(st.booleans()):
        parts.append(f"in_port={draw(st.integers(1, 3))}")
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(("dl_vlan=1", "dl_vlan=2", "vlan_tci=0x0000/0x1fff"))))
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(("dl_dst=fa:16:3e:00:00:01", "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00",
                                           "dl_src=fa:16:3e:00:00:02"))))
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(("tun_id=0x64", "reg5=0x7", "metadata=0x3"))))
    proto = draw(st.sampled_from(("", "ip", "udp", "tcp", "arp")))
    if proto:
        parts.append(proto)
        if proto in ("ip", "udp", "tcp") and draw(st.booleans()):
            parts.append(draw(st.sampled_from(("nw_dst=10.0.0.0/24", "nw_dst=10.0.0.5", "nw_src=10.0.1.0/25"))))
        if proto == "udp" and draw(st.booleans()):
            parts.append("udp_dst=67")
        if proto == "tcp" and draw(st.booleans()):
            parts.append("tcp_flags=+syn")
        if proto == "arp" and draw(st.booleans()):
            parts.append("arp_tpa=10.0.0.5")
    return ",".join(parts) + " actions=drop"


def _scan(sim: OvsBridgeSim, flows: list[Any], ctx: _Ctx) -> str | None:
    """The reference: the first flow, in priority order (ties: the first in the dump), whose every
    match field's own test passes."""
    ranked = sorted(enumerate(flows), key=lambda kv: (-kv[1].priority, kv[0]))
    for _, f in ranked:
        if all(_compile_match(m, sim._number)(ctx) for m in f.match):
            return str(f.priority) + repr(sorted(map(repr, f.match)))
    return None


@settings(max_examples=80, deadline=None)
@given(texts=st.lists(flow_texts(), min_size=1, max_size=25), ctxs=st.lists(contexts(), min_size=1, max_size=8))
def test_a_table_lookup_picks_the_flow_a_plain_scan_picks(texts: list[str], ctxs: list[_Ctx]) -> None:
    dump = parse_dump_flows("\n".join(f" table=0, {t}" for t in texts))
    sim = OvsBridgeSim(_bridge(), dump, None)
    for ctx in ctxs:
        ctx.in_port = ctx.in_port if ctx.in_port in (1, 2, 3) else 4
        got = sim._lookup(0, ctx)
        want = _scan(sim, list(dump.flows), ctx)
        assert (None if got is None else str(got.priority) + repr(sorted(map(repr, got.flow.match)))) == want


def test_a_wrong_key_makes_the_lookup_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup reads its key through the subtable's compiled function: a wrong one is seen."""
    dump = parse_dump_flows(" table=0, priority=5,dl_dst=fa:16:3e:00:00:01 actions=drop\n")
    ctx = _Ctx(Ethernet(dst=MACS[0], src=MACS[1], payload=IPv4(src=ADDRS[0], dst=ADDRS[1], payload=ICMP())), 1,
               Meta())
    assert OvsBridgeSim(_bridge(), dump, None)._lookup(0, ctx) is not None
    monkeypatch.setattr(ovs, "_KEYERS", {})
    monkeypatch.setattr(ovs, "_getter", lambda name: lambda c: c.frame.src.value)  # eth_dst read as eth_src
    assert OvsBridgeSim(_bridge(), dump, None)._lookup(0, ctx) is None


# -- every action through its handler ------------------------------------------------------------------

ACTION_FLOWS = """\
 table=0, priority=10,in_port=1 actions=mod_vlan_vid:5,resubmit(,1)
 table=0, priority=10,in_port=2 actions=push_vlan:0x8100,set_field:7->vlan_vid,mod_vlan_pcp:3,goto_table:1
 table=0, priority=5 actions=note:00.01,load:0x9->NXM_NX_REG5[],move:NXM_OF_ETH_SRC[0..15]->NXM_NX_REG6[0..15],set_tunnel:0x64,resubmit(,2)
 table=1, priority=1 actions=strip_vlan,mod_dl_src:fa:16:3e:00:00:09,mod_nw_dst:10.0.0.9,mod_tp_dst:99,output:3
 table=2, priority=3,ip actions=dec_ttl,learn(table=9,priority=4,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_NX_REG5[]->NXM_NX_TUN_ID[],output:NXM_OF_IN_PORT[]),output:4,NORMAL
 table=2, priority=2,arp actions=CONTROLLER:65535,ct_clear,mod_dl_dst:fa:16:3e:00:00:01,output:in_port,LOCAL
 table=2, priority=1 actions=move:NXM_NX_REG5[]->NXM_OF_VLAN_TCI[0..11],output:99,drop
"""


class _Recording(OvsBridgeSim):
    """Every action through :meth:`_action` (the path a subclass takes), counted."""

    seen: list[str]

    def _action(self, a: Any, ctx: Any, run: Any, depth: int, table: int) -> str:  # noqa: ANN401
        self.seen.append(type(a).__name__)
        return super()._action(a, ctx, run, depth, table)


def _sims() -> tuple[OvsBridgeSim, _Recording]:
    dump = parse_dump_flows(ACTION_FLOWS)
    rec = _Recording(_bridge(), dump, None)
    rec.seen = []
    return OvsBridgeSim(_bridge(), dump, None), rec


@settings(max_examples=120, deadline=None)
@given(frame=frames(), port=st.sampled_from(PORTS), n=st.integers(1, 3))
def test_handlers_give_what_the_interpreter_gives(frame: Ethernet, port: str, n: int) -> None:
    plain, rec = _sims()
    for _ in range(n):  # again: learned flows, MACs learned by NORMAL, relearns
        a, b = plain.process(port, frame), rec.process(port, frame)
        assert a == b
    assert plain.learned_flows == rec.learned_flows and plain.mac_table == rec.mac_table
    assert rec.seen  # the subclass saw the actions one by one


def test_every_modelled_action_class_has_its_handler_and_a_subclass_of_one_uses_it() -> None:
    plain, rec = _sims()
    frame = Ethernet(dst=MACS[0], src=MACS[1], payload=IPv4(src=ADDRS[0], dst=ADDRS[1], payload=UDP(sport=1, dport=2)))
    for port in PORTS:
        plain.process(port, frame)
        rec.process(port, frame)
    assert {"Output", "SetVlanVid", "SetVlanPcp", "StripVlan", "PushVlan", "SetTunnel", "Resubmit", "GotoTable",
            "Load", "Move", "SetField", "SetEthAddr", "SetIPv4Addr", "SetL4Port", "Note", "Learn",
            "GenericAction"} <= set(rec.seen)
    assert list(ovs._ACTIONS)[:3] == [ovs.Output, ovs.SetVlanVid, ovs.SetVlanPcp]

    class LoudOutput(Output):
        __slots__ = ()

    ctx = _Ctx(frame, 1, Meta())
    run = ovs._Run()
    said = plain._action(LoudOutput(ReservedPort.IN_PORT), ctx, run, 0, 0)
    assert said == "output to the input port p1" and [e.port for e in run.outputs] == ["p1"]


# -- NORMAL's flood list -------------------------------------------------------------------------------

def _ports(rng: random.Random) -> list[SimPort]:
    out = []
    for i in range(1, rng.randint(2, 12)):
        kind = rng.choice((PortKind.SYSTEM, PortKind.PATCH, PortKind.TUNNEL))
        tag = rng.choice((None, 1, 2)) if kind is PortKind.SYSTEM else None
        trunks = tuple(rng.sample((1, 2, 3), rng.randint(0, 2))) if tag is None and rng.random() < 0.3 else ()
        out.append(SimPort(f"port{i}", i, kind, tag, trunks))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_a_kept_flood_list_floods_what_a_fresh_index_floods(seed: int) -> None:
    rng = random.Random(seed)
    ports = _ports(rng)
    index = PortIndex(ports)
    kept_fdb, fresh_fdb = MacTable(), MacTable()
    for _ in range(30):
        in_port = rng.choice(ports)
        frame = Ethernet(dst=rng.choice(MACS), src=rng.choice(MACS[:2]),
                         payload=IPv4(src=ADDRS[0], dst=ADDRS[1], payload=ICMP()))
        if rng.random() < 0.5:
            frame = push_vlan(frame, rng.choice((1, 2, 3)))
        asked: list[tuple[str, ...]] = []
        skip = {p.name for p in ports if rng.random() < 0.3}

        def unfollowed(f: Ethernet, names: Any, asked: list[tuple[str, ...]] = asked,  # noqa: ANN401
                       skip: set[str] = skip) -> set[str]:
            asked.append(tuple(names))
            return skip
        got = normal(index, in_port, frame, kept_fdb, unfollowed=unfollowed)
        want = normal(PortIndex(ports), in_port, frame, fresh_fdb, unfollowed=unfollowed)
        assert got == want
        assert len(asked) in (0, 2) and (not asked or asked[0] == asked[1])
        if asked:  # the flood list: the VLAN's other ports in port order
            assert in_port.name not in asked[0]


# -- netfilter: chains looked up once ------------------------------------------------------------------

RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:a - [0:0]
:b - [0:0]
:c - [0:0]
-A FORWARD -i x1 -j a
-A FORWARD -i x2 -g b
-A FORWARD -p udp -j c
-A FORWARD -s 10.0.0.5/32 -j ACCEPT
-A a -p tcp --dport 22 -j ACCEPT
-A a -p udp -j b
-A a -j RETURN
-A b -d 10.0.1.0/24 -j DROP
-A b -p icmp -j ACCEPT
-A c -d 10.0.0.200/32 -j ACCEPT
-A c -j b
-A INPUT -i x1 -j b
-A INPUT -p tcp -j DROP
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -j NOTRACK
COMMIT
"""


@pytest.mark.parametrize("seed", range(10))
def test_netfilter_chains_looked_up_once_decide_as_a_fresh_netfilter(seed: int) -> None:
    rng = random.Random(seed)
    ruleset = parse_save(RULES)
    kept, fresh = Netfilter(ruleset), Netfilter(ruleset)
    verdicts = set()
    for _ in range(40):
        l4 = rng.choice((TCP(sport=5, dport=rng.choice((22, 80))), UDP(sport=5, dport=53), ICMP()))
        pkt = IPv4(src=rng.choice(ADDRS[:3]), dst=rng.choice(ADDRS[:3]), payload=l4)
        hook = rng.choice((Hook.FORWARD, Hook.INPUT, Hook.OUTPUT, Hook.PREROUTING))
        ctx = HookCtx(in_dev=rng.choice(("x1", "x2", "x3")), out_dev="y",
                      local_addrs=frozenset({IPv4Address("10.0.0.1")}))
        for memory in (fresh._starts, fresh._compiled, fresh._runs, fresh._hooks):  # looked up again
            memory.clear()
        got, want = kept.hook(hook, pkt, ctx), fresh.hook(hook, pkt, ctx)
        assert (got.verdict, got.steps, got.rule) == (want.verdict, want.steps, want.rule)
        verdicts.add((hook, got.verdict))
    assert len(verdicts) >= 4  # the packets took different paths through the chains


# -- dnsmasq: a client's options and the networks worked out once ----------------------------------------

def test_a_servers_answers_are_a_fresh_servers_for_every_host_and_differ_between_servers() -> None:
    import dataclasses
    from ipaddress import IPv4Network

    from neutrino.sim import services
    from tests.sim.test_dhcp_options import PORT, SUBNET, server

    lines = (f"tag:{SUBNET},option:dns-server,192.0.2.53\ntag:{SUBNET},option:router,10.0.0.1\n"
             f"tag:{PORT},option:router,10.0.0.254\ntag:{PORT},option:mtu,1400\n")
    srv, other = server(lines), server(f"tag:{SUBNET},option:router,10.0.0.9\n")
    answers = []
    for _ in range(2):  # the second time from memory
        for h in srv.hosts:
            fresh = dataclasses.replace(srv)  # an equal server: another object, nothing remembered
            assert srv.options_for(h) == fresh.options_for(h)
            answers.append(srv.options_for(h))
            assert other.options_for(h) != srv.options_for(h)  # not another server's answer
    assert answers[0] != answers[1] and answers[:2] == answers[2:]  # the port's router and MTU vs the subnet's
    assert answers[0].router == (IPv4Address("10.0.0.254"),) and answers[0].mtu == 1400
    for addr, mask in ((IPv4Address("10.0.0.7"), "255.255.255.0"), (IPv4Address("10.0.0.7"), IPv4Address("255.0.0.0")),
                       (IPv4Address("192.168.3.9"), "255.255.255.252")):
        assert services._net_of(addr, mask) == IPv4Network(f"{addr}/{mask}", strict=False)
    assert srv.network == IPv4Network("10.0.0.0/24") and srv._in_range(IPv4Address("10.0.0.10"))
    assert not srv._in_range(IPv4Address("10.0.0.255")) and not srv._in_range(IPv4Address("10.0.1.10"))


def test_meta_keeps_the_hash_of_its_fields_and_pickles_without_it() -> None:
    import dataclasses
    import pickle

    metas = [Meta(), Meta(tun_id=5), Meta(tun_id=5, tun_src=IPv4Address("192.168.0.1"), registers=(1, 2)),
             Meta(ct_state=0x21, ct_zone=3), Meta(registers=(1, 2))]
    for m in metas:
        fields = tuple(getattr(m, f.name) for f in dataclasses.fields(m))
        assert hash(m) == hash(fields) == hash(m)  # computed once, then kept: the same value
        blob = pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL)
        assert b"_hash" not in blob and pickle.loads(blob) == m and hash(pickle.loads(blob)) == hash(m)
    assert len({hash(m) for m in metas}) == len(metas) and len(set(metas)) == len(metas)
