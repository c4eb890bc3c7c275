"""Issue #17, the simulator's third round: what each element now remembers gives what working it
out again gives, character for character. A bridge keeps a learned flow that is learned again
exactly as it is (and with it the results it remembered); netfilter replays a whole hook's run
whose connection is as that run found and left it; an IP stack remembers its routing decisions;
frames and wire ends keep their hash. The traces themselves are compared with the code before by
the seed, answer and view tests and by ``bench/sim_compare.py``; these tests pin each mechanism,
each against the same work done without it."""

from __future__ import annotations

import pickle
from ipaddress import IPv4Address
from typing import Any

import pytest

from neutrino.host.iptables import parse_save
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim.cloud import world_of
from neutrino.sim.ipstack import IpStack, RouteDecision
from neutrino.sim.netfilter import FORWARD_PATH, Hook, HookCtx, HookResult, Netfilter
from neutrino.sim.ovs import Meta, OvsBridgeSim
from neutrino.sim.packets import ICMP, TCP, Dot1Q, Ethernet, IPv4, echo_request, ip, mac, push_vlan
from neutrino.sim.topology import End, Kind
from neutrino.sim.trace import render, to_json

# -- a learned flow learned again -----------------------------------------------------------------

OTHER_VM = mac("fa:16:3e:99:88:01")


def _tun(with_second_tunnel: bool = False) -> OvsBridgeSim:
    from neutrino.host.openflow import parse_dump_flows
    from neutrino.host.ovsdb import Bridge, Interface, Port
    from tests.sim.test_ovs_sim import BR_TUN

    ports = [Port("br-tun", (Interface("br-tun", "internal"),)),
             Port("patch-int", (Interface("patch-int", "patch", (("peer", "patch-tun"),)),)),
             Port("vxlan-c0a80002", (Interface("vxlan-c0a80002", "vxlan", (
                 ("in_key", "flow"), ("local_ip", "192.168.0.1"), ("out_key", "flow"),
                 ("remote_ip", "192.168.0.2"))),))]
    flows = BR_TUN
    if with_second_tunnel:
        ports.append(Port("vxlan-c0a80003", (Interface("vxlan-c0a80003", "vxlan", (
            ("in_key", "flow"), ("local_ip", "192.168.0.1"), ("out_key", "flow"),
            ("remote_ip", "192.168.0.3"))),)))
        flows += " priority=1,in_port=3 actions=resubmit(,4)\n"
    return OvsBridgeSim(Bridge("br-tun", fail_mode="secure", ports=tuple(ports)), parse_dump_flows(flows), None)


def _inbound(src: Any, port: str = "vxlan-c0a80002") -> tuple[str, Ethernet, Meta]:  # noqa: ANN401
    from tests.sim.test_ovs_sim import P_MAC, ping

    return port, ping(src, P_MAC), Meta(tun_id=0x64)


def _outbound(dst: Any) -> tuple[str, Ethernet, Meta]:  # noqa: ANN401
    from tests.sim.test_ovs_sim import P_MAC, ping

    return "patch-int", push_vlan(ping(P_MAC, dst), 1), Meta()


def _state(sim: OvsBridgeSim) -> tuple[Any, ...]:  # noqa: ANN401
    """Everything of a bridge's flow tables a lookup or a dump reads, in order."""
    return (tuple(sim.flows(t) for t in sorted(sim._tables)), sim.learned_flows,
            tuple(sim._live_installs()), sim.mac_table)


def _always_installed(sim: OvsBridgeSim) -> OvsBridgeSim:
    """The bridge as it was before: every learn action installs its flow again (it never finds
    one it learned to keep)."""
    original = sim._learn

    def learn(flow: Any, run: Any) -> str:  # noqa: ANN401
        sim._relearn.clear()
        return original(flow, run)

    sim._learn = learn  # type: ignore[method-assign]
    return sim


def _outcome(r: Any) -> tuple[Any, ...]:  # noqa: ANN401
    return tuple((e.port, e.frame, e.meta) for e in r.outputs), r.steps, r.pruned


def test_a_flow_learned_again_as_it_was_answers_and_dumps_as_a_reinstalled_one() -> None:
    sequence = [_inbound(OTHER_VM), _inbound(mac("fa:16:3e:99:88:02")), _outbound(OTHER_VM),
                _inbound(OTHER_VM), _inbound(OTHER_VM), _outbound(OTHER_VM),
                _inbound(mac("fa:16:3e:99:88:02")), _outbound(mac("fa:16:3e:99:88:02")), _inbound(OTHER_VM),
                _outbound(OTHER_VM), _inbound(OTHER_VM)]
    kept, reinstalled = _tun(), _always_installed(_tun())
    for port, frame, meta in sequence:
        assert _outcome(kept.process(port, frame, meta)) == _outcome(reinstalled.process(port, frame, meta))
        assert _state(kept) == _state(reinstalled)
    assert kept._seq == reinstalled._seq  # a kept flow took the next install number, as a reinstalled one
    assert kept._version < reinstalled._version  # ... but the tables did not change


def test_results_stay_remembered_across_a_flow_learned_again() -> None:
    sim = _tun()
    out = _outbound(OTHER_VM)
    sim.process(*_inbound(OTHER_VM))  # learns the flow to OTHER_VM
    first = sim.process(*out)
    assert "learned flow" in first.steps[1].detail or any("learned flow" in s.detail for s in first.steps)
    again = [sim.process(*_inbound(OTHER_VM)) for _ in range(3)]
    assert again[0] == again[1] == again[2] and again[1] is not again[2]  # each one learned (again)
    assert sim.process(*out) is first  # the bridge's tables did not change: still remembered


def test_a_flow_learned_with_other_actions_replaces_the_old_one() -> None:
    sim = _tun(with_second_tunnel=True)
    sim.process(*_inbound(OTHER_VM))
    first = sim.process(*_outbound(OTHER_VM))
    assert [e.port for e in first.outputs] == ["vxlan-c0a80002"]
    version = sim._version
    sim.process(*_inbound(OTHER_VM, "vxlan-c0a80003"))  # the MAC moved to the other tunnel
    assert sim._version > version
    moved = sim.process(*_outbound(OTHER_VM))
    assert moved is not first and [e.port for e in moved.outputs] == ["vxlan-c0a80003"]


def test_a_flow_that_shares_its_priority_with_another_kind_of_flow_is_reinstalled() -> None:
    from neutrino.host.openflow import parse_flow

    sim, reference = _tun(), _always_installed(_tun())
    for s in (sim, reference):
        s.process(*_inbound(OTHER_VM))
        # a flow of the learned flows' priority matching other fields: a packet can match both,
        # so which one was installed last decides, and a flow learned again must move behind it
        s._install(parse_flow("table=20,priority=1,dl_vlan=1 actions=drop"))
    out = _outbound(OTHER_VM)
    before = sim.process(*out)  # the learned flow, installed first, wins the tie: remembered
    assert [e.port for e in before.outputs] == ["vxlan-c0a80002"] and _outcome(before) == _outcome(
        reference.process(*out))
    version = sim._version
    assert _outcome(sim.process(*_inbound(OTHER_VM))) == _outcome(reference.process(*_inbound(OTHER_VM)))
    after = sim.process(*out)  # now the drop flow is the earlier one
    assert after.outputs == () and _outcome(after) == _outcome(reference.process(*out))
    assert sim._version > version  # installed again: the tables' order changed
    assert _state(sim) == _state(reference)


def test_a_bridge_keeps_nothing_of_its_relearning_when_pickled() -> None:
    sim = _tun()
    for _ in range(2):
        sim.process(*_inbound(OTHER_VM))
    assert sim._relearn
    loaded = pickle.loads(pickle.dumps(sim))
    assert loaded._relearn == {} and loaded._alone == {}
    assert _state(loaded) == _state(sim)
    assert _outcome(loaded.process(*_inbound(OTHER_VM))) == _outcome(sim.process(*_inbound(OTHER_VM)))
    assert _state(loaded) == _state(sim)


# -- a hook's run remembered -----------------------------------------------------------------------

ROUTER = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 203.0.113.20/32 -j DNAT --to-destination 10.0.0.6
-A POSTROUTING -s 10.0.0.6/32 -o qg -j SNAT --to-source 203.0.113.20
-A POSTROUTING -s 10.0.0.0/24 -o qg -j SNAT --to-source 203.0.113.10
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffff --ctmask 0xffff
-A PREROUTING -i qr -m mark --mark 0x0/0xffff -j MARK --set-xmark 0x1/0xffff
-A PREROUTING -j CONNMARK --save-mark --nfmask 0xffff --ctmask 0xffff
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m state --state INVALID -j DROP
-A FORWARD -p tcp --dport 23 -j REJECT --reject-with icmp-port-unreachable
-A FORWARD -j ACCEPT
COMMIT
"""

INSIDE, OUT = ip("10.0.0.5"), ip("8.8.8.8")


class _Plain(Netfilter):
    """A netfilter that works every hook out (a subclass: no hook run is remembered)."""


def _ping(src: IPv4Address, dst: IPv4Address, reply: bool = False) -> IPv4:
    return IPv4(src=src, dst=dst, payload=ICMP(type=0 if reply else 8, id=7, seq=1))


def _tcp(src: IPv4Address, dst: IPv4Address, sport: int, dport: int, flags: int) -> IPv4:
    return IPv4(src=src, dst=dst, payload=TCP(sport=sport, dport=dport, flags=flags))


LOCAL = frozenset({ip("10.0.0.1"), ip("203.0.113.10")})
DEVS = (("qr", ip("10.0.0.1")), ("qg", ip("203.0.113.10")))
OUTWARD = HookCtx(in_dev="qr", out_dev="qg", local_addrs=LOCAL, dev_addrs=DEVS)
INWARD = HookCtx(in_dev="qg", out_dev="qr", local_addrs=LOCAL, dev_addrs=DEVS)

# out and back, again and again (the later ones meet what the first left), a TCP exchange and its
# reset, a rejected port, a floating IP's DNAT; each repeated so that runs can be replayed
TRAFFIC: list[tuple[IPv4, HookCtx]] = [
    *[(p, c) for _ in range(4) for p, c in ((_ping(INSIDE, OUT), OUTWARD), (_ping(OUT, ip("203.0.113.10"), True),
                                                                          INWARD))],
    *[(_tcp(INSIDE, OUT, 40000, 80, f), OUTWARD) for f in (2, 2, 0x10, 0x10, 0x10)],
    *[(_tcp(OUT, ip("203.0.113.10"), 80, 40000, f), INWARD) for f in (0x12, 0x12, 0x10)],
    *[(_tcp(INSIDE, OUT, 40000, 80, f), OUTWARD) for f in (0x10, 0x10, 0x14, 0x10, 0x10, 2, 2)],
    *[(_tcp(INSIDE, OUT, 40001, 23, 2), OUTWARD) for _ in range(3)],
    *[(p, c) for _ in range(3) for p, c in ((_ping(OUT, ip("203.0.113.20")), INWARD),
                                            (_ping(ip("10.0.0.6"), OUT, True), OUTWARD))],
]


def _seen(res: HookResult) -> tuple[Any, ...]:  # noqa: ANN401
    ct = res.ct
    conn = ct.conn if ct is not None else None
    return (res.verdict, res.packet, res.mark, res.steps, res.rule, res.emit, res.notes,
            None if ct is None else (ct.state, ct.direction, ct.zone),
            None if conn is None else (conn.id, conn.text(), conn.confirmed, sorted(m.value for m in conn.nat_done)))


def _counted(nf: Netfilter) -> list[Hook]:
    runs: list[Hook] = []
    original = nf._hook

    def hook(h: Hook, pkt: IPv4, ctx: HookCtx) -> Any:  # noqa: ANN401
        runs.append(h)
        return original(h, pkt, ctx)

    nf._hook = hook  # type: ignore[method-assign]
    return runs


def _drive(nf: Netfilter, traffic: list[tuple[IPv4, HookCtx]]) -> list[tuple[Any, ...]]:
    return [_seen(nf.traverse(FORWARD_PATH, pkt, ctx)) for pkt, ctx in traffic]


def test_a_hook_s_run_is_replayed_only_where_working_it_out_gives_the_same() -> None:
    remembering, plain = Netfilter(parse_save(ROUTER)), _Plain(parse_save(ROUTER))
    runs = _counted(remembering)
    assert _drive(remembering, TRAFFIC) == _drive(plain, TRAFFIC)
    assert remembering.conntrack.dump() == plain.conntrack.dump()
    assert len(runs) <= 3 * len(TRAFFIC) - 20  # the repeated packets' hooks were replayed (23 of 96)
    # the table emptied (a refresh, conntrack -F): every packet meets conntrack afresh
    remembering.conntrack.clear()
    plain.conntrack.clear()
    assert _drive(remembering, TRAFFIC) == _drive(plain, TRAFFIC)
    assert remembering.conntrack.dump() == plain.conntrack.dump()


def test_a_connection_that_changed_is_worked_out_again() -> None:
    nf = Netfilter(parse_save(ROUTER))
    runs = _counted(nf)
    syn = _tcp(INSIDE, OUT, 40000, 80, 2)
    for _ in range(3):
        nf.traverse(FORWARD_PATH, syn, OUTWARD)
    n = len(runs)
    nf.traverse(FORWARD_PATH, syn, OUTWARD)
    assert len(runs) == n  # the SYN again, on a connection in SYN_SENT it leaves so: replayed
    conn = next(iter(nf.conntrack))
    conn.mark = 0x5  # anything a rule reads of the connection makes the next run a new one
    res = nf.traverse(FORWARD_PATH, syn, OUTWARD)
    assert len(runs) > n and res.mark == 0x5
    assert _seen(res) == _seen(_Plain_with(nf).traverse(FORWARD_PATH, syn, OUTWARD))


def _Plain_with(nf: Netfilter) -> _Plain:  # noqa: N802
    """A netfilter with a copy of ``nf``'s connections that remembers no hook run."""
    return _Plain(parse_save(ROUTER), nf.conntrack.clone())


def test_a_hook_run_is_remembered_for_the_context_objects_it_saw() -> None:
    nf = Netfilter(parse_save(ROUTER))
    runs = _counted(nf)
    ping = _ping(INSIDE, OUT)
    for _ in range(3):
        nf.traverse(FORWARD_PATH, ping, OUTWARD)
    n = len(runs)
    # an equal context made of other (equal) objects: the key names them by identity, so it is
    # worked out again, and gives the same
    assert _seen(nf.traverse(FORWARD_PATH, ping, OUTWARD)) and len(runs) == n  # replayed
    other = HookCtx(in_dev="qr", out_dev="qg", local_addrs=frozenset(set(LOCAL)), dev_addrs=tuple(list(DEVS)))
    assert other == OUTWARD and other.local_addrs is not LOCAL and other.dev_addrs is not DEVS
    assert _seen(nf.traverse(FORWARD_PATH, ping, other)) == _seen(nf.traverse(FORWARD_PATH, ping, OUTWARD))
    assert len(runs) > n


def test_a_kept_netfilter_keeps_no_hook_runs() -> None:
    nf = Netfilter(parse_save(ROUTER))
    _drive(nf, TRAFFIC)
    assert nf._hooks
    assert "_hooks" not in nf.__getstate__()
    loaded = pickle.loads(pickle.dumps(nf))
    assert loaded._hooks == {}
    assert loaded.conntrack.dump() == nf.conntrack.dump()
    assert _drive(loaded, TRAFFIC) == _drive(nf, TRAFFIC)


# -- routing decisions, hashes ----------------------------------------------------------------------

def test_an_ip_stack_remembers_its_decisions_by_their_inputs_and_keeps_none_of_them() -> None:
    from neutrino.host.iproute_link import parse_ip_addr
    from neutrino.host.iproute_route import parse_ip_route
    from neutrino.host.state import NamespaceState

    links = parse_ip_addr("2: qr-1: <BROADCAST,UP> mtu 1500 qdisc noqueue state UP group default qlen 1000\n"
                          "    link/ether fa:16:3e:00:00:01 brd ff:ff:ff:ff:ff:ff\n"
                          "    inet 10.0.0.1/24 brd 10.0.0.255 scope global qr-1\n"
                          "       valid_lft forever preferred_lft forever\n")
    routes = parse_ip_route("10.0.0.0/24 dev qr-1 proto kernel scope link src 10.0.0.1\n"
                            "default via 10.0.0.254 dev qr-1\n")
    st = IpStack(NamespaceState("qrouter-x", links=links, routes=routes))
    fresh = IpStack(NamespaceState("qrouter-x", links=links, routes=routes))
    first = st.route(OUT, src=INSIDE, iif="qr-1")
    assert not isinstance(first, RouteDecision)  # ip_forward is 0: not forwarding
    assert st.route(OUT, src=INSIDE, iif="qr-1") is first
    st.forwarding = fresh.forwarding = True
    now = st.route(OUT, src=INSIDE, iif="qr-1")
    assert isinstance(now, RouteDecision) and now == fresh.route(OUT, src=INSIDE, iif="qr-1")
    assert st.route(OUT) == fresh.route(OUT) and st.route(ip("10.0.0.9")) == fresh.route(ip("10.0.0.9"))
    assert "_decided" not in st.__getstate__()
    loaded = pickle.loads(pickle.dumps(st))
    assert loaded._decided == {} and loaded.route(OUT, src=INSIDE, iif="qr-1") == now
    old_state = st.__getstate__()  # as a world kept before stacks remembered anything
    older = IpStack.__new__(IpStack)
    older.__setstate__(old_state)
    assert older.route(OUT) == fresh.route(OUT)


@pytest.mark.parametrize("obj", [
    echo_request(mac("fa:16:3e:00:00:01"), mac("fa:16:3e:00:00:02"), ip("10.0.0.1"), ip("10.0.0.2")),
    push_vlan(echo_request(mac("fa:16:3e:00:00:01"), mac("fa:16:3e:00:00:02"), ip("10.0.0.1"), ip("10.0.0.2")), 7),
    _tcp(INSIDE, OUT, 1, 2, 2),
    End(Kind.OVS, "compute1", "br-int", "qvo1"),
])
def test_frames_and_wire_ends_hash_as_their_fields_and_pickle_without_it(obj: Any) -> None:  # noqa: ANN401
    import dataclasses

    fields = tuple(getattr(obj, f.name) for f in dataclasses.fields(obj) if f.compare)
    untouched = pickle.dumps(obj)
    assert hash(obj) == hash(fields) == hash(obj)  # the second time from the slot
    assert pickle.dumps(obj) == untouched  # the kept hash is not pickled
    loaded = pickle.loads(untouched)
    assert loaded == obj and hash(loaded) == hash(obj)
    for inner in (getattr(obj, "payload", None), getattr(getattr(obj, "payload", None), "payload", None)):
        if isinstance(inner, Dot1Q | IPv4):
            assert hash(inner) == hash(tuple(getattr(inner, f.name) for f in dataclasses.fields(inner)))


# -- a world's traces with and without what its elements remember ------------------------------------

def _forget_everything(world: Any) -> None:  # noqa: ANN401
    for sim in world._ovs.loaded().values():
        sim._memo.clear()
        sim._relearn.clear()
    for nf in world._nf.loaded().values():
        if nf is not None:
            nf._hooks.clear()
            nf._runs.clear()
    for st in world._stacks.loaded().values():
        st._decided.clear()


def test_probes_trace_the_same_with_and_without_what_the_elements_remember(seed0_cloud: CloudSnapshot) -> None:
    from neutrino.plan import plan_cloud

    hosts = plan_cloud(seed0_cloud)
    remembering, forgetting = world_of(seed0_cloud, hosts), world_of(seed0_cloud, hosts)
    remembering.boot()
    forgetting.boot()
    fip = next(str(f.floating_ip_address) for f in seed0_cloud.floating_ips)
    probes: list[tuple[str, str, dict[str, Any]]] = [
        ("cirros", "8.8.8.8", {}), ("outside", fip, {"proto": "tcp", "dport": 22}),
        ("outside", fip, {}), ("cirros", "8.8.8.8", {"proto": "tcp", "dport": 80}),
        ("outside", fip, {"proto": "tcp", "dport": 23})]
    for _ in range(3):
        for src, dst, kw in probes:
            _forget_everything(forgetting)
            a, b = remembering.probe(src, dst, **kw), forgetting.probe(src, dst, **kw)
            assert render(a, "detailed") == render(b, "detailed") and to_json(a) == to_json(b)
    for (host, ns), nf in remembering._nf.loaded().items():
        other = forgetting.netfilter(host, ns)
        assert (nf.conntrack.dump() if nf else "") == (other.conntrack.dump() if other else "")
    assert any(nf is not None and any(s.settled for s in nf._hooks.values())
               for nf in remembering._nf.loaded().values())
