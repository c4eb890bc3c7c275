"""Round sixteen's boot speed-up gives what walking the rules gives (issue #17).

``Netfilter.hook`` remembers a DHCP message's hook run by the message's headers (every IPv4
field but the payload, the UDP ports), its context, and the Ethernet source only where a
``-m mac`` rule read it; a run that read past the headers (``-m length``), emitted a packet
(REJECT) or rewrote the packet (NAT) is not remembered. Random sequences of DHCP-like messages
(varied payloads and sources, through rules that read the MAC, the length, marks, zones, NAT and
REJECT) give what a netfilter that remembers nothing gives: every result and the connection
table after each. A key that leaves out a field the rules read, or a MAC read not noticed, fails
the comparison. A world's boot equals a boot whose netfilters remember no DHCP run, and the
router's namespace's runs are replayed across guests. Bridged DHCP (the hybrid firewall's, through
each port's own chains) is walked and not remembered.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from neutrino.host.iptables import parse_save
from neutrino.sim import netfilter
from neutrino.sim.conntrack import Conntrack
from neutrino.sim.netfilter import FORWARD_PATH, Hook, HookCtx, HookResult, Netfilter
from neutrino.sim.packets import UDP, IPv4, Raw, ip, mac
from neutrino.sim.world import World
from tests.sim.test_simboot15_macs import _world_state, cloud40, world_of_cloud  # noqa: F401 - a fixture

RULES = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i eth2 -j CT --zone 5
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth0 -m mac --mac-source fa:16:3e:00:00:01 -j MARK --set-xmark 0x4/0xffffffff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.0.0.0/24 -o eth1 -j SNAT --to-source 192.0.2.10
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m mac --mac-source fa:16:3e:00:00:02 -j DROP
-A INPUT -i eth3 -m length --length 0:330 -j DROP
-A INPUT -m mark --mark 0x4 -j ACCEPT
-A INPUT -s 10.0.0.9/32 -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p udp -m udp --sport 68 --dport 67 -j ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m mac --mac-source fa:16:3e:00:00:03 -j DROP
-A FORWARD -o eth2 -m mark --mark 0x4 -j DROP
-A FORWARD -p udp -m udp --dport 68 -j ACCEPT
-A FORWARD -p udp -m udp --sport 68 -m state --state NEW -j ACCEPT
COMMIT
"""

_PATHS = ((Hook.PREROUTING, Hook.INPUT), FORWARD_PATH, (Hook.PREROUTING,), (Hook.OUTPUT, Hook.POSTROUTING))


class _Plain(Netfilter):
    """A netfilter that walks every hook (a subclass: :meth:`Netfilter.hook` remembers nothing for it)."""


def _message(rng: random.Random) -> IPv4:
    """A DHCP-like message: a client's broadcast or a server's answer (or a stray one from an
    address a rule rejects), with a payload of varied length and bytes, as every guest's differs."""
    src, dst = rng.choice(((ip("0.0.0.0"), ip("255.255.255.255")), (ip("10.0.0.2"), ip("10.0.0.5")),
                           (ip("10.0.0.2"), ip("255.255.255.255")), (ip("10.0.0.9"), ip("10.0.0.2")),
                           (ip("10.0.0.5"), ip("10.0.0.2"))))
    sport, dport = rng.choice(((68, 67), (67, 68), (67, 67)))
    data = bytes(rng.randrange(256) for _ in range(rng.choice((240, 260, 300, 320, 340))))
    return IPv4(src=src, dst=dst, ttl=rng.choice((64, 64, 1)), payload=UDP(sport=sport, dport=dport, payload=Raw(data=data)))


def _context(rng: random.Random, path: tuple[Hook, ...]) -> HookCtx:
    if path[0] is Hook.OUTPUT:
        return HookCtx(out_dev=rng.choice(("eth0", "eth1")))
    src_mac = mac(f"fa:16:3e:00:00:{rng.randrange(6):02x}")
    if path == FORWARD_PATH:
        return HookCtx(in_dev="eth0", out_dev=rng.choice(("eth1", "eth2")), src_mac=src_mac, mark=rng.choice((0, 0, 4)))
    return HookCtx(in_dev=rng.choice(("eth0", "eth0", "eth2", "eth3")), src_mac=src_mac, connmark=rng.choice((0, 7)))


def _drive(seed: int, n: int = 400) -> int:
    """The same random DHCP-like sequence through a netfilter and through one that walks every
    hook; the first difference raises AssertionError. Returns how many hook runs were replayed."""
    rng = random.Random(seed)
    rs = parse_save(RULES)
    mine, plain = Netfilter(rs, Conntrack()), _Plain(rs, Conntrack())
    messages = [_message(rng) for _ in range(12)]
    with _replays_counted() as replayed:
        for _ in range(n):
            path = rng.choice(_PATHS)
            pkt = rng.choice(messages) if rng.random() < 0.3 else _message(rng)
            ctx = _context(rng, path)
            got, want = mine.traverse(path, pkt, ctx), plain.traverse(path, pkt, ctx)
            assert got == want, (pkt, ctx, path)
            assert _table(mine.conntrack) == _table(plain.conntrack)
    return len(replayed)


@contextmanager
def _replays_counted() -> Iterator[list[HookResult]]:
    """The results of DHCP hooks answered without walking the rules, gathered while inside."""
    replayed: list[HookResult] = []
    walk, dhcp = Netfilter._hook_pkt, Netfilter._dhcp_hook
    walked = [0]

    def counting_walk(self: Netfilter, *args: Any) -> Any:  # noqa: ANN401
        walked[0] += 1
        return walk(self, *args)

    def counting_dhcp(self: Netfilter, *args: Any) -> HookResult:  # noqa: ANN401
        before = walked[0]
        res = dhcp(self, *args)
        if walked[0] == before:
            replayed.append(res)
        return res

    with _patched(Netfilter, "_hook_pkt", counting_walk), _patched(Netfilter, "_dhcp_hook", counting_dhcp):
        yield replayed


def _table(table: Conntrack) -> list[tuple[object, ...]]:
    return [(c.id, c.zone, c.original, c.reply, c.tcp_state, c.seen_reply, c.confirmed, c.mark, sorted(c.nat_done, key=str))
            for c in table.entries()]


@contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:  # noqa: ANN401
    old = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_dhcp_hooks_give_what_walking_every_rule_gives(seed: int) -> None:
    assert _drive(seed) > 100  # and many runs were replayed


def _without(index: int) -> Any:  # noqa: ANN401
    """``_dhcp_key`` with one of its fields left out (by position)."""
    key = netfilter._dhcp_key

    def mutated(hook: Hook, pkt: IPv4, ctx: HookCtx, l4: UDP) -> tuple[object, ...]:
        full = key(hook, pkt, ctx, l4)
        return full[:index] + full[index + 1:]
    return mutated


@pytest.mark.parametrize(("field", "index"), [("hook", 0), ("source address", 1), ("destination address", 2),
                                              ("source port", 11), ("destination port", 12), ("input device", 13),
                                              ("output device", 14), ("mark", 18)])
def test_a_key_without_a_field_the_rules_read_is_wrong(field: str, index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter, "_dhcp_key", _without(index))
    with pytest.raises(AssertionError):
        for seed in range(1, 6):
            _drive(seed)


def test_a_mac_read_not_noticed_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose rules read the source MAC, remembered as if they had not (every source one)."""

    class Blind(netfilter._Pkt):  # type: ignore[misc]
        __slots__ = ()

        @property  # type: ignore[misc]
        def read_mac(self) -> bool:
            return False

        @read_mac.setter
        def read_mac(self, value: bool) -> None:
            pass

    monkeypatch.setattr(netfilter, "_Pkt", Blind)
    with pytest.raises(AssertionError):
        for seed in range(1, 6):
            _drive(seed)


def test_the_key_reads_no_payload() -> None:
    """Two messages that differ in their payload alone have one key; in their headers, two."""
    a = IPv4(src=ip("0.0.0.0"), dst=ip("255.255.255.255"), payload=UDP(sport=68, dport=67, payload=Raw(data=b"x" * 300)))
    b = IPv4(src=ip("0.0.0.0"), dst=ip("255.255.255.255"), payload=UDP(sport=68, dport=67, payload=Raw(data=b"y" * 310)))
    c = IPv4(src=ip("0.0.0.0"), dst=ip("255.255.255.255"), id=7, payload=UDP(sport=68, dport=67, payload=Raw(data=b"x")))
    ctx = HookCtx(in_dev="eth0", src_mac=mac("fa:16:3e:00:00:01"))
    other = HookCtx(in_dev="eth0", src_mac=mac("fa:16:3e:00:00:02"))
    key = netfilter._dhcp_key
    assert key(Hook.INPUT, a, ctx, a.payload) == key(Hook.INPUT, b, other, b.payload)  # type: ignore[arg-type]
    assert key(Hook.INPUT, a, ctx, a.payload) != key(Hook.INPUT, c, ctx, c.payload)  # type: ignore[arg-type]


# -- a world's boot ----------------------------------------------------------------------------------------


def _namespace_tables(world: World) -> list[tuple[object, ...]]:
    return sorted((str(k), _table(nf.conntrack)) for k, nf in world._nf._items.items() if nf is not None)


def test_a_boot_equals_one_remembering_no_dhcp_run(cloud40: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN401, F811
    """A 40-instance boot: leases, every hop (and the frame each met), MAC tables, learned flows
    and every namespace's connection table equal a boot whose DHCP hooks all walk their rules;
    the router namespaces' DHCP hooks (every guest's broadcasts alike to them) were replayed."""
    world = world_of_cloud(cloud40)
    with _replays_counted() as replayed:
        leases = world.boot()
    assert len(leases) == 40 and all(leases.values())
    assert len(replayed) >= 40 * 2  # (of 40 guests x 2 messages x 2 hooks in a router's namespace, and more)
    with monkeypatch.context() as m:
        m.setattr(Netfilter, "_dhcp_hook", lambda self, hook, pkt, ctx, l4: self._hook(hook, pkt, ctx)[0])
        plain = world_of_cloud(cloud40)
        assert plain.boot() == leases
    assert _world_state(world) == _world_state(plain)
    assert _namespace_tables(world) == _namespace_tables(plain)


def test_bridged_dhcp_is_walked_and_not_remembered() -> None:
    """The hybrid firewall's bridged DHCP (each port's own chains and zone: never alike across
    guests) gives what walking gives and leaves no memory behind."""
    rs = parse_save(RULES)
    mine, plain = Netfilter(rs, Conntrack()), _Plain(rs, Conntrack())
    rng = random.Random(7)
    for _ in range(50):
        pkt = _message(rng)
        ctx = HookCtx(in_dev="br0", out_dev="br0", physdev_in="tap1", physdev_out="qvb1", physdev_is_bridged=True,
                      src_mac=mac("fa:16:3e:00:00:03"))
        assert mine.traverse(FORWARD_PATH, pkt, ctx) == plain.traverse(FORWARD_PATH, pkt, ctx)
        assert _table(mine.conntrack) == _table(plain.conntrack)
    assert not mine._dhcp
