"""Issue #17, the simulator's fifth round: the world remembers a bridge hop's whole outcome (its
record and the events it sends on) for a result the bridge gives again, each end's host label and
diagram letter, the hook contexts it builds, and where a transmit goes; an IP stack hands back
the same forwarded packet and transmit for the same packet and decision; a Linux bridge its
decision for the same port and MACs. These tests pin each against the same work done without it
(and fail when a part of a key or an invalidation is dropped)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest

from neutrino.host.bridge import BridgeInfo
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim.cloud import world_of
from neutrino.sim.ipstack import IpStack, RouteDecision
from neutrino.sim.linuxbridge import LinuxBridgeSim, PortInfo
from neutrino.sim.packets import Ethernet, echo_request, ip, mac
from neutrino.sim.trace import render, to_json
from neutrino.sim.world import World, _Done


def _forget_the_world_s(world: World) -> None:
    """What this round added, wiped: the world's hops, contexts and transmits, the stacks'
    forwarded packets and transmits, the Linux bridges' decisions."""
    world._forget_hops()
    for st in world._stacks.loaded().values():
        st._again.clear()
    for lbr in world._lbr.loaded().values():
        lbr._seen.clear()


def _same(a: Any, b: Any) -> None:  # noqa: ANN401
    assert render(a, "detailed") == render(b, "detailed")
    assert render(a, "summary") == render(b, "summary")
    assert to_json(a) == to_json(b)


@pytest.fixture(scope="module")
def seed0_hosts(seed0_cloud: CloudSnapshot) -> tuple[Any, ...]:
    from neutrino.plan import plan_cloud

    return tuple(plan_cloud(seed0_cloud))


def _probes(cloud: CloudSnapshot) -> list[tuple[str, str, dict[str, Any]]]:
    fip = next(str(f.floating_ip_address) for f in cloud.floating_ips)
    return [("cirros", "8.8.8.8", {}), ("outside", fip, {"proto": "tcp", "dport": 22}),
            ("cirros", "8.8.8.8", {}), ("outside", fip, {}), ("cirros", "8.8.8.8", {"proto": "udp", "dport": 53}),
            ("cirros", "8.8.8.8", {"proto": "tcp", "dport": 80}), ("cirros", "8.8.8.8", {"size": 1400}),
            ("outside", fip, {"proto": "tcp", "dport": 23}), ("cirros", "8.8.8.8", {"ident": 41001}),
            ("cirros", "8.8.8.8", {"proto": "http"}), ("cirros", "8.8.8.8", {"size": 1600}),
            ("outside", fip, {"proto": "tcp", "dport": 22})]


def test_probes_trace_the_same_with_and_without_the_hops_remembered(seed0_cloud: CloudSnapshot,
                                                                    seed0_hosts: tuple[Any, ...]) -> None:
    remembering, forgetting = world_of(seed0_cloud, seed0_hosts), world_of(seed0_cloud, seed0_hosts)
    assert remembering.boot() == forgetting.boot()
    for _ in range(3):
        for src, dst, kw in _probes(seed0_cloud):
            _forget_the_world_s(forgetting)
            _same(remembering.probe(src, dst, **kw), forgetting.probe(src, dst, **kw))
    for (host, ns), nf in remembering._nf.loaded().items():
        other = forgetting.netfilter(host, ns)
        assert (nf.conntrack.dump() if nf else "") == (other.conntrack.dump() if other else "")
    for key, st in remembering._stacks.loaded().items():
        assert st.neighbours() == forgetting.stack(*key).neighbours()
    # the mechanism ran: bridge hops were replayed, so the same record objects are in two traces
    assert any(isinstance(d, _Done) for d in remembering._done.values())
    a, b = remembering.probe("cirros", "8.8.8.8"), remembering.probe("cirros", "8.8.8.8")
    shared = sum(1 for x, y in zip(a.hops, b.hops, strict=True) if x is y)
    assert shared >= 5 and a == b


def test_a_bridge_hop_is_replayed_only_for_the_very_result_it_was_made_from(seed0_cloud: CloudSnapshot,
                                                                            seed0_hosts: tuple[Any, ...]) -> None:
    world = world_of(seed0_cloud, seed0_hosts)
    world.boot()
    world.probe("cirros", "8.8.8.8")
    world.probe("cirros", "8.8.8.8")
    first = world.probe("cirros", "8.8.8.8")
    # a bridge that forgets its results gives new (equal) ones: the hops are made again, equal
    for sim in world._ovs.loaded().values():
        sim._memo.clear()
    again = world.probe("cirros", "8.8.8.8")
    _same(first, again)
    assert not any(x is y for x, y in zip(first.hops, again.hops, strict=True) if x.element.startswith("br-"))


def test_a_change_of_network_hosts_or_wiring_forgets_the_hops(seed0_cloud: CloudSnapshot,
                                                              seed0_hosts: tuple[Any, ...]) -> None:
    """The letters read the network hosts; the events the wiring (``Topology.version``)."""
    world = world_of(seed0_cloud, seed0_hosts)
    world.boot()
    for _ in range(2):
        world.probe("cirros", "8.8.8.8")
    world.network_hosts = frozenset()  # every host a compute now: the network host's letters change
    fresh = world_of(seed0_cloud, seed0_hosts)
    fresh.network_hosts = frozenset()
    fresh.boot()
    fresh.probe("cirros", "8.8.8.8")
    _same(world.probe("cirros", "8.8.8.8"), fresh.probe("cirros", "8.8.8.8"))
    # a change to the wiring (here the tunnel index rebuilt) forgets every hop before the next run
    world.probe("cirros", "8.8.8.8")
    before = {id(d) for d in world._done.values() if isinstance(d, _Done)}
    assert before
    version = world.topo.version
    world.topo.changed()
    assert world.topo.version > version
    world.probe("cirros", "8.8.8.8")
    assert not before & {id(d) for d in world._done.values() if isinstance(d, _Done)}
    assert not any(isinstance(d, _Done) for d in world._done.values())  # seen once since: noted only


def test_an_ip_stack_forwards_and_transmits_the_same_objects_until_its_neighbours_change() -> None:
    from neutrino.host.iproute_link import Address, Link, LinkKind, OperState
    from neutrino.host.iproute_route import Route
    from neutrino.host.state import NamespaceState
    from neutrino.host.sysctl import Sysctl

    links = tuple(Link(i + 2, f"eth{i}", flags=("UP",), mtu=1500, state=OperState.UP, link_type="ether",
                       mac=f"02:00:00:00:00:0{i + 1}", addresses=(Address(IPv4Interface(f"10.0.{i}.1/24"), "global"),),
                       kind=LinkKind.VETH) for i in range(2))
    routes = tuple(Route(IPv4Network(f"10.0.{i}.0/24"), dev=f"eth{i}", proto="kernel", scope="link",
                         src=IPv4Address(f"10.0.{i}.1"))
                   for i in range(2))
    st = IpStack(NamespaceState("r", links=links, routes=routes, sysctls=(Sysctl("net.ipv4.ip_forward", "1"),)))
    pkt = echo_request(mac("02:00:00:00:00:09"), mac("02:00:00:00:00:01"), ip("10.0.0.9"), ip("10.0.1.9")).payload
    assert pkt is not None
    d = st.route_input("eth0", pkt)  # type: ignore[arg-type]
    assert isinstance(d, RouteDecision)
    fwd, err = st.forward("eth0", pkt, d)  # type: ignore[arg-type]
    assert err is None and fwd is not None and fwd.ttl == pkt.ttl - 1  # type: ignore[union-attr]
    assert st.forward("eth0", pkt, d)[0] is fwd  # type: ignore[arg-type]
    first = st.transmit(d, fwd)
    assert first.arp and st.transmit(d, fwd).arp  # unknown neighbour: an ARP request each time
    st.learn("eth1", IPv4Address("10.0.1.9"), mac("02:00:00:00:00:aa"))
    known = st.transmit(d, fwd)
    assert not known.arp and known.frame.dst == mac("02:00:00:00:00:aa") and st.transmit(d, fwd) is known
    st.learn("eth1", IPv4Address("10.0.1.9"), mac("02:00:00:00:00:bb"))  # the neighbour moved
    moved = st.transmit(d, fwd)
    assert moved.frame.dst == mac("02:00:00:00:00:bb") and "02:00:00:00:00:bb" in moved.step.text
    st.forget({mac("02:00:00:00:00:bb")})
    assert st.transmit(d, fwd).arp
    import pickle

    assert "_again" not in pickle.loads(pickle.dumps(st)).__dict__ or not pickle.loads(pickle.dumps(st))._again


def _frame(src: str, dst: str) -> Ethernet:
    return echo_request(mac(src), mac(dst), ip("10.0.0.1"), ip("10.0.0.2"))


def test_a_linux_bridge_decides_as_a_fresh_one_over_learning_and_moves() -> None:
    info = BridgeInfo("br0", "8000.020000000001", False, interfaces=("p1", "p2", "p3"))
    ports = {p: PortInfo() for p in info.interfaces}
    keeping, fresh_state = LinuxBridgeSim(info, ports, ageing=300), LinuxBridgeSim(info, ports, ageing=300)
    a, b = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
    sequence = [("p1", a, b), ("p1", a, b), ("p2", b, a), ("p1", a, b), ("p1", a, b), ("p3", b, a),
                ("p1", a, b), ("p1", a, b), ("p2", a, b), ("p3", b, a), ("p2", a, b), ("p1", b, "ff:ff:ff:ff:ff:ff")]
    for port, src, dst in sequence:
        got = keeping.receive(port, _frame(src, dst))
        fresh_state._seen.clear()  # the same bridge, deciding afresh every time
        want = fresh_state.receive(port, _frame(src, dst))
        assert got == want, (port, src, dst)
    assert keeping.fdb() == fresh_state.fdb()
    # b moved p3 -> p1 last: a frame from p2 to b goes to p1, not to the p3 the decision
    # remembered for it just before would say
    assert keeping.receive("p2", _frame(a, b)).ports == ("p1",)
    keeping.forget({mac(b)})
    assert keeping.receive("p2", _frame(a, b)).flooded
    import pickle

    assert pickle.loads(pickle.dumps(keeping))._seen == {}


def test_a_guest_answers_the_same_frame_with_the_same_reply_and_still_learns_its_sender() -> None:
    from neutrino.sim.guest import Guest, Lease
    from neutrino.sim.packets import TCP, IPv4, TCPFlag

    g = Guest("vm", mac("fa:16:3e:00:00:01"))
    g.lease = Lease(IPv4Interface("10.0.0.5/24"), IPv4Address("10.0.0.2"), 86400, IPv4Address("10.0.0.1"),
                    (), None, None, None, ())
    router = mac("fa:16:3e:00:00:99")
    ping = echo_request(router, g.mac, ip("8.8.8.8"), ip("10.0.0.5"))
    syn = Ethernet(dst=g.mac, src=router, payload=IPv4(src=ip("8.8.8.8"), dst=ip("10.0.0.5"), payload=TCP(
        sport=41000, dport=22, seq=1, flags=TCPFlag.SYN)))
    for frame in (ping, syn):
        first = g.receive(frame)
        assert first.frames and g.resolve(IPv4Address("8.8.8.8")) == router
        g.forget({router})
        again = g.receive(frame)
        assert again is first  # the remembered answer ...
        assert g.resolve(IPv4Address("8.8.8.8")) == router  # ... and the sender learned again all the same
        fresh = Guest("vm", g.mac)
        fresh.lease = g.lease
        assert fresh.receive(frame) == first  # what a guest that never saw it answers
    # the same ping asked twice is the same frame object; another id is another frame
    assert g.ping(ip("8.8.8.8"), dst_mac=router, id=7) is g.ping(ip("8.8.8.8"), dst_mac=router, id=7)
    assert g.ping(ip("8.8.8.8"), dst_mac=router, id=8) != g.ping(ip("8.8.8.8"), dst_mac=router, id=7)
    import pickle

    back = pickle.loads(pickle.dumps(g))
    assert back._echoes == {} and back._pings == {} and "_echoes" not in g.__getstate__()


def test_an_ip_stack_s_remembered_input_route_follows_forwarding() -> None:
    from neutrino.host.iproute_link import Address, Link, LinkKind, OperState
    from neutrino.host.iproute_route import Route
    from neutrino.host.state import NamespaceState

    links = tuple(Link(i + 2, f"eth{i}", flags=("UP",), mtu=1500, state=OperState.UP, link_type="ether",
                       mac=f"02:00:00:00:00:0{i + 1}", addresses=(Address(IPv4Interface(f"10.0.{i}.1/24"), "global"),),
                       kind=LinkKind.VETH) for i in range(2))
    routes = tuple(Route(IPv4Network(f"10.0.{i}.0/24"), dev=f"eth{i}", proto="kernel", scope="link",
                         src=IPv4Address(f"10.0.{i}.1")) for i in range(2))
    st = IpStack(NamespaceState("r", links=links, routes=routes), forwarding=True)
    frame = echo_request(mac("02:00:00:00:00:09"), mac("02:00:00:00:00:01"), ip("10.0.0.9"), ip("10.0.1.9"))
    pkt = st.ingress("eth0", frame).packet
    assert pkt is not None and st.ingress("eth0", frame).packet is pkt
    routed = st.route_input("eth0", pkt)
    assert isinstance(routed, RouteDecision) and st.route_input("eth0", pkt) is routed
    st.forwarding = False
    refused = st.route_input("eth0", pkt)
    assert refused == IpStack(NamespaceState("r", links=links, routes=routes), forwarding=False).route_input("eth0", pkt)
    assert not isinstance(refused, RouteDecision) or refused != routed
    st.forwarding = True
    assert st.route_input("eth0", pkt) is routed
    assert st.route_from(pkt) == st.route(pkt.dst, src=pkt.src)


def test_a_sized_probe_works_every_bridge_hop_out(seed0_cloud: CloudSnapshot, seed0_hosts: tuple[Any, ...],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A sized probe's bridge hops check the ports' MTUs, which a remembered hop never did: even
    for the very frame an unsized probe sent (``size=56``: ping's default data), none is replayed."""
    world = world_of(seed0_cloud, seed0_hosts)
    world.boot()
    for _ in range(3):
        plain = world.probe("cirros", "8.8.8.8")
    replayed: list[object] = []
    real = World._replay

    def counting(self: World, run: Any, done: _Done, goal: Any) -> Any:  # noqa: ANN401
        replayed.append(done)
        return real(self, run, done, goal)

    monkeypatch.setattr(World, "_replay", counting)
    world.probe("cirros", "8.8.8.8")
    assert replayed  # (unsized: replayed)
    replayed.clear()
    sized = world.probe("cirros", "8.8.8.8", size=56)
    assert not replayed and sized.delivered and [h.element for h in sized.hops] == [h.element for h in plain.hops]
