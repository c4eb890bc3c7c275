"""Round six's speed-ups give what the code before them gives (issue #17).

- ``World._unfollowed`` answers a DHCP flood from an index per flooded ports' tuple (the ports
  that lead to no guest, the guests' ports by the guest's MAC) instead of testing every port:
  the same ports left out as the per-port test, and NORMAL the same copies, sentence and count,
  for every guest's DHCP message, a stranger's, every VLAN and input port, tuples and lists; the
  answer follows a guest's MAC changed by a refresh.
- ``Netfilter.traverse`` hands back the result (and the next hook's context) it made before
  when every hook's run is replayed, and ``Netfilter.hook`` finds the run remembered for the
  very packet and context objects without keying them: over varied sequences the results and
  connection tables equal a netfilter's whose memories are wiped before every call, and a
  context differing only in its mark (the same packet object) is not given the other's run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest

from neutrino.host.iptables import parse_save
from neutrino.plan import plan_cloud
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim.cloud import refresh_world, world_of
from neutrino.sim.conntrack import Conntrack
from neutrino.sim.guest import Guest
from neutrino.sim.netfilter import FORWARD_PATH, Hook, HookCtx, HookResult, Netfilter, NfVerdict
from neutrino.sim.ovs_normal import Kept, MacTable, normal
from neutrino.sim.packets import TCP, UDP, Ethernet, IPv4, TCPFlag, ip, mac
from neutrino.sim.topology import End, Kind
from neutrino.sim.world import World, _dhcp_client
from tests.sim.test_living_world import with_servers

# -- the DHCP flood pruning index ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed0_five(seed0_cloud: CloudSnapshot) -> CloudSnapshot:
    """Seed 000 with four more instances next to ``cirros`` (one br-int, five guest ports)."""
    return with_servers(seed0_cloud, 4)


def _reference(world: World, host: str, bridge: str, frame: Ethernet, names: Sequence[str]) -> set[str]:
    """The per-port test the index replaced: a port is left out when it leads to a guest whose MAC
    is not the DHCP client's."""
    chaddr = _dhcp_client(frame)
    if chaddr is None or frame.dst.value != 0xFFFFFFFFFFFF:
        return set()
    out = set()
    for port in names:
        guest = world._attachment(End(Kind.OVS, host, bridge, port))
        if guest is not None and world.guests[guest].mac.value != chaddr.value:
            out.add(port)
    return out


def _guest_bridge(world: World) -> tuple[str, str]:
    """The (host, bridge) whose ports lead to the most guests."""
    best: tuple[int, tuple[str, str]] = (0, ("", ""))
    for (host, bridge) in world._ovs.loaded():
        sim = world.bridge(host, bridge)
        n = sum(world._attachment(End(Kind.OVS, host, bridge, p.name)) is not None for p in sim._port_index.ports)
        best = max(best, (n, (host, bridge)))
    assert best[0] >= 5, best
    return best[1]


def _check_floods(world: World, host: str, bridge: str, macs: Sequence[str]) -> int:
    """Every DHCP message of ``macs`` flooded from every port on every VLAN: the pruner's answer
    and NORMAL's copies against the per-port test's. Returns how many floods left ports out."""
    sim = world.bridge(host, bridge)
    index = sim._port_index
    pruner = world._unfollowed(host, bridge)
    frames = [Guest("g", mac(m)).discover() for m in macs]
    frames.append(Ethernet(dst=mac("ff:ff:ff:ff:ff:ff"), src=mac(macs[0]),
                           payload=IPv4(src=ip("0.0.0.0"), dst=ip("255.255.255.255"), payload=UDP(sport=53, dport=67))))
    vlans = sorted({v for p in index.ports for v in range(1, 4095) if p.carries(v)} & set(range(1, 50)))
    assert vlans
    pruned = 0
    for _ in range(2):  # the second time from the index made the first time
        for vlan in vlans:
            for in_port in index.carrying(vlan):
                names = index.flood(vlan, in_port.name)[1]
                for frame in frames:
                    want = _reference(world, host, bridge, frame, names)
                    for offered in (names, list(names)):
                        got = pruner(frame, offered)
                        assert set(got) == want and len(got) == len(want)
                        assert all((n in got) == (n in want) for n in names)
                    pruned += bool(want)
                    a = normal(index, in_port, frame, MacTable(), unfollowed=pruner)
                    b = normal(index, in_port, frame, MacTable(),
                               unfollowed=lambda f, n: _reference(world, host, bridge, f, n))
                    assert a == b
    return pruned


def test_the_flood_index_leaves_out_what_the_per_port_test_does(seed0_five: CloudSnapshot) -> None:
    hosts = tuple(plan_cloud(seed0_five))
    world = world_of(seed0_five, hosts)
    world.boot()
    host, bridge = _guest_bridge(world)
    macs = [str(g.mac) for g in world.guests.values()] + ["fa:16:3e:99:99:99"]
    assert _check_floods(world, host, bridge, macs) > 0
    # the MAC is part of the answer: two guests' messages over the same ports leave out different ports
    names = next(world.bridge(host, bridge)._port_index.flood(v, p.name)[1]
                 for v in range(1, 4095) for p in world.bridge(host, bridge)._port_index.carrying(v)
                 if p.name.startswith("patch"))
    pruner = world._unfollowed(host, bridge)
    a, b = (pruner(Guest("g", world.guests[n].mac).discover(), names) for n in ("vm1", "vm2"))
    assert set(a) != set(b) and isinstance(a, Kept)
    # and pruning off: nothing left out
    world.flood_pruning = False
    assert not pruner(Guest("g", world.guests["vm1"].mac).discover(), names)


def test_the_flood_index_follows_a_guest_mac_changed_by_a_refresh(seed0_five: CloudSnapshot) -> None:
    hosts = tuple(plan_cloud(seed0_five))
    world = world_of(seed0_five, hosts)
    world.boot()
    host, bridge = _guest_bridge(world)
    old = str(world.guests["vm2"].mac)
    _check_floods(world, host, bridge, [old])
    srv = next(s for s in seed0_five.servers if s.name == "vm2")
    new_mac = "fa:16:3e:77:00:02"
    ports = tuple(replace(p, mac_address=new_mac) if p.id in srv.port_ids else p for p in seed0_five.ports)
    changed = replace(seed0_five, ports=ports, _index={})
    refresh_world(world, changed, tuple(plan_cloud(changed)))
    assert str(world.guests["vm2"].mac) == new_mac
    host, bridge = _guest_bridge(world)
    assert _check_floods(world, host, bridge, [old, new_mac, str(world.guests["vm1"].mac)]) > 0


def test_kept_is_the_set_of_names_at_no_kept_position() -> None:
    names = ("a", "b", "c", "d")
    k = Kept(names, (0, 2))
    assert set(k) == {"b", "d"} and len(k) == 2 and "b" in k and "a" not in k and "z" not in k
    assert set(Kept(names, ())) == set(names) and not Kept(names, (0, 1, 2, 3))


# -- netfilter's traverse and hook memories -------------------------------------------------------------

RULES = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x2/0xffffffff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.0.0.0/24 -o eth1 -j SNAT --to-source 192.0.2.10
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m mark --mark 0x1 -j DROP
-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT
-A FORWARD -p udp -j REJECT --reject-with icmp-port-unreachable
COMMIT
"""


def _wipe(nf: Netfilter) -> None:
    nf._hooks.clear()
    nf._fast.clear()
    nf._after.clear()
    nf._walked.clear()
    nf._runs.clear()


def _sequence(rng: random.Random, n: int) -> list[tuple[IPv4, HookCtx, tuple[Hook, ...]]]:
    """Packets of a few connections both ways, repeated as the same objects or equal copies, with
    contexts that differ in their mark, devices or connmark."""
    a, b, out = ip("10.0.0.5"), ip("10.0.1.7"), ip("203.0.113.9")
    pkts = []
    for src, dst in ((a, b), (a, out)):
        for dport in (22, 80, 23):
            fwd = TCP(sport=40000 + dport, dport=dport, flags=TCPFlag.SYN)
            pkts.append(IPv4(src=src, dst=dst, payload=fwd))
            pkts.append(IPv4(src=dst, dst=src, payload=TCP(sport=dport, dport=40000 + dport,
                                                           flags=TCPFlag.SYN | TCPFlag.ACK)))
            pkts.append(IPv4(src=src, dst=dst, payload=replace(fwd, flags=TCPFlag.ACK)))
        pkts.append(IPv4(src=src, dst=dst, payload=UDP(sport=5000, dport=53)))
    ctxs = [HookCtx(in_dev="eth0", out_dev="eth1"), HookCtx(in_dev="eth0", out_dev="eth2"),
            HookCtx(in_dev="eth0", out_dev="eth1", mark=1), HookCtx(in_dev="eth0", out_dev="eth1", connmark=3)]
    paths = (FORWARD_PATH, (Hook.FORWARD, Hook.POSTROUTING), (Hook.PREROUTING,))
    seq = []
    for i in range(n):
        p = pkts[min(i // 3, len(pkts) - 1)] if i < 3 * len(pkts) and rng.random() < 0.5 else rng.choice(pkts)
        if rng.random() < 0.3:
            p = replace(p)  # an equal copy, not the same object
        c = rng.choice(ctxs)
        if rng.random() < 0.3:
            c = replace(c)
        seq.append((p, c, rng.choice(paths)))
    return seq


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_traverse_and_hook_give_what_a_wiped_netfilter_gives(seed: int) -> None:
    rs = parse_save(RULES)
    mine, wiped = Netfilter(rs, Conntrack()), Netfilter(rs, Conntrack())
    again = 0
    last: dict[tuple[int, int, tuple[Hook, ...]], HookResult] = {}
    for pkt, ctx, path in _sequence(random.Random(seed), 300):
        _wipe(wiped)
        got, want = mine.traverse(path, pkt, ctx), wiped.traverse(path, pkt, ctx)
        assert got == want, (pkt, ctx, path)
        assert mine.conntrack.dump() == wiped.conntrack.dump()
        key = (id(pkt), id(ctx), path)
        again += last.get(key) is got
        last[key] = got
    assert again > 0  # some traverses handed back the very result made before


def _tcp_exchange() -> tuple[HookCtx, IPv4, IPv4, IPv4]:
    """A forwarding context (not SNATed: the reply is to the guest's own address) and a TCP
    exchange's SYN, SYN-ACK and ACK through it."""
    ctx = HookCtx(in_dev="eth0", out_dev="eth2")
    syn = IPv4(src=ip("10.0.0.5"), dst=ip("10.0.1.7"), payload=TCP(sport=4000, dport=22, flags=TCPFlag.SYN))
    reply = IPv4(src=ip("10.0.1.7"), dst=ip("10.0.0.5"),
                 payload=TCP(sport=22, dport=4000, flags=TCPFlag.SYN | TCPFlag.ACK))
    return ctx, syn, reply, replace(syn, payload=replace(syn.payload, flags=TCPFlag.ACK))


def test_a_traverse_replayed_hands_back_the_same_result() -> None:
    nf = Netfilter(parse_save(RULES), Conntrack())
    ctx, syn, reply, ack = _tcp_exchange()
    nf.traverse(FORWARD_PATH, syn, ctx)
    nf.traverse(FORWARD_PATH, reply, ctx)
    first = nf.traverse(FORWARD_PATH, ack, ctx)
    nf.traverse(FORWARD_PATH, ack, ctx)  # the connection settles (established, then unchanged)
    second = nf.traverse(FORWARD_PATH, ack, ctx)
    assert nf.traverse(FORWARD_PATH, ack, ctx) is second and second == first and second.accepted
    # the same packet object in a context marked 1 is dropped: the hook's memory by objects holds the context
    marked = replace(ctx, mark=1)
    dropped = nf.traverse(FORWARD_PATH, ack, marked)
    assert dropped.verdict is NfVerdict.DROP and nf.traverse(FORWARD_PATH, ack, marked) == dropped
    assert nf.traverse(FORWARD_PATH, ack, ctx) is second


def test_the_hook_memory_by_objects_is_dropped_with_the_run_it_names() -> None:
    nf = Netfilter(parse_save(RULES), Conntrack())
    ctx, syn, reply, ack = _tcp_exchange()
    for p in (syn, reply, ack, ack):
        nf.traverse(FORWARD_PATH, p, ctx)
    assert nf._fast
    before = nf.traverse(FORWARD_PATH, ack, ctx)
    nf._hooks.clear()  # as at the bound: the objects' entries no longer name a remembered run
    after = nf.traverse(FORWARD_PATH, ack, ctx)
    assert after == before and after is not before  # run again, not replayed from a dropped run
    _, _, hashed, seen = nf._fast[(Hook.PREROUTING.value, id(ack), id(ctx))]
    assert nf._hooks[hashed] is seen  # the objects' entry names the run now remembered
