"""Review17 of simboot16 (a DHCP message's netfilter hook run remembered by its headers).

- A run whose ``-m mac`` test read a missing Ethernet source (``HookCtx.src_mac`` None) was
  remembered under the key of a run that read no MAC (``(headers, None)``): the next message with
  the same headers and a source MAC the rule names got the remembered verdict. Fixed: such a run is
  not remembered. The world gives every received packet its frame's source, so a boot did not meet
  this; a caller of ``Netfilter.hook`` did.
- Guards: random DHCP-like sequences through rules that read conntrack states and connection marks
  (``-m state``, ``-m conntrack --ctstate/--ctdir``, ``-m connmark``, ``CONNMARK --save-mark``,
  ``--restore-mark`` and a ``--set-xmark`` that flips a bit each time), ``-m comment``, ``-m limit``, ``-m addrtype``, ``NOTRACK``, with the
  connection table flushed, a connection removed or the zones moved between messages (a REQUEST
  replayed after the DISCOVER's connection expired), give what walking every rule gives: each
  result and the table after it. Mutations caught: leaving out the found-connection check
  (``seen.index``) or ``settled`` (a run that flipped its connection's mark replayed).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from neutrino.host.iptables import parse_save
from neutrino.sim import netfilter
from neutrino.sim.conntrack import Conntrack
from neutrino.sim.netfilter import FORWARD_PATH, Hook, HookCtx, Netfilter, NfVerdict
from neutrino.sim.packets import UDP, IPv4, Raw, ip, mac
from tests.sim.test_simboot16_dhcp_hooks import _Plain, _replays_counted, _table


def _discover(data: bytes) -> IPv4:
    return IPv4(src=ip("0.0.0.0"), dst=ip("255.255.255.255"), payload=UDP(sport=68, dport=67, payload=Raw(data=data)))


def test_a_mac_read_without_a_source_mac_is_not_replayed_for_one_with_a_mac() -> None:
    rs = parse_save("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m mac --mac-source fa:16:3e:00:00:01 -j DROP\nCOMMIT\n")
    mine, plain = Netfilter(rs, Conntrack()), _Plain(rs, Conntrack())
    steps = [HookCtx(in_dev="eth0", src_mac=mac("fa:16:3e:00:00:02")),  # makes and confirms the connection
             HookCtx(in_dev="eth0"),  # no source MAC: the rule reads it (no match), the run is settled
             HookCtx(in_dev="eth0", src_mac=mac("fa:16:3e:00:00:01"))]  # the MAC the rule drops
    for i, ctx in enumerate(steps):
        pkt = _discover(bytes([i]) * 300)
        got, want = mine.hook(Hook.INPUT, pkt, ctx), plain.hook(Hook.INPUT, pkt, ctx)
        assert got == want, i
    assert want.verdict is NfVerdict.DROP


RULES = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i eth2 -j CT --zone 5
-A PREROUTING -i eth4 -j NOTRACK
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -m comment --comment "restore" -j CONNMARK --restore-mark --nfmask 0xffff --ctmask 0xffff
-A PREROUTING -i eth0 -m mac --mac-source fa:16:3e:00:00:01 -m state --state NEW -j MARK --set-xmark 0x4/0xffff
-A PREROUTING -m mark --mark 0x4/0xffff -j CONNMARK --save-mark --nfmask 0xffff --ctmask 0xffff
-A INPUT -m conntrack --ctstate NEW -m conntrack --ctdir ORIGINAL -j MARK --set-xmark 0x10/0x10
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m state --state INVALID -j DROP
-A INPUT -m mac --mac-source fa:16:3e:00:00:06 -j CONNMARK --set-xmark 0x10000/0x0
-A INPUT -m connmark --mark 0x10000/0x10000 -m mac --mac-source fa:16:3e:00:00:06 -j DROP
-A INPUT -m state --state RELATED,ESTABLISHED -m limit --limit 5/sec -j ACCEPT
-A INPUT -m connmark --mark 0x4/0xffff -m mac --mac-source fa:16:3e:00:00:02 -j DROP
-A INPUT -m connmark --mark 0x4/0xffff -j ACCEPT
-A INPUT -m addrtype --dst-type BROADCAST -m mac --mac-source fa:16:3e:00:00:03 -j DROP
-A INPUT -m state --state UNTRACKED -m mac --mac-source fa:16:3e:00:00:04 -j DROP
-A INPUT -p udp -m udp --sport 68 --dport 67 -m state --state NEW -j ACCEPT
-A INPUT -m mark --mark 0x10/0x10 -j ACCEPT
-A FORWARD -m state --state ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate NEW -m mac --mac-source fa:16:3e:00:00:05 -j DROP
-A FORWARD -p udp -m udp --dport 67 -j ACCEPT
COMMIT
"""

_PATHS = ((Hook.PREROUTING, Hook.INPUT), FORWARD_PATH, (Hook.OUTPUT, Hook.POSTROUTING))


def _message(rng: random.Random) -> IPv4:
    """A client's broadcast, a unicast answer, a renewal's unicast, or a message with the
    broadcast's reply tuple (which makes the broadcast's connection ESTABLISHED: states change
    between replays); payloads vary as every guest's do."""
    src, dst, sport, dport = rng.choice(((ip("0.0.0.0"), ip("255.255.255.255"), 68, 67),
                                         (ip("10.0.0.2"), ip("10.0.0.5"), 67, 68),
                                         (ip("10.0.0.5"), ip("10.0.0.2"), 68, 67),
                                         (ip("255.255.255.255"), ip("0.0.0.0"), 67, 68)))
    data = bytes(rng.randrange(256) for _ in range(rng.choice((240, 300, 340))))
    return IPv4(src=src, dst=dst, payload=UDP(sport=sport, dport=dport, payload=Raw(data=data)))


def _context(rng: random.Random, path: tuple[Hook, ...]) -> HookCtx:
    if path[0] is Hook.OUTPUT:
        return HookCtx(out_dev="eth0")
    src_mac = mac(f"fa:16:3e:00:00:{rng.randrange(7):02x}")
    if path == FORWARD_PATH:
        return HookCtx(in_dev="eth0", out_dev="eth1", src_mac=src_mac)
    return HookCtx(in_dev=rng.choice(("eth0", "eth0", "eth2", "eth4")), src_mac=src_mac, connmark=rng.choice((0, 4)))


def _upset(rng: random.Random, tables: tuple[Conntrack, Conntrack]) -> None:
    """The same change to both tables: a flush (every connection expired), one connection removed
    (the oldest: expired), or zone 5's connections moved to zone 0 and back."""
    what = rng.choice(("flush", "remove", "rezone"))
    for table in tables:
        if what == "flush":
            table.clear()
        elif what == "remove":
            if table.entries():
                table.remove(table.entries()[0])
        else:
            table.rezone({5: 6})
            table.rezone({6: 5})


def _drive(seed: int, n: int = 500) -> int:
    rng = random.Random(seed)
    rs = parse_save(RULES)
    mine, plain = Netfilter(rs, Conntrack()), _Plain(rs, Conntrack())
    with _replays_counted() as replayed:
        for _ in range(n):
            if rng.random() < 0.08:
                _upset(rng, (mine.conntrack, plain.conntrack))
            path = rng.choice(_PATHS)
            pkt, ctx = _message(rng), _context(rng, path)
            got, want = mine.traverse(path, pkt, ctx), plain.traverse(path, pkt, ctx)
            assert got == want, (pkt, ctx, path)
            assert _table(mine.conntrack) == _table(plain.conntrack)
    return len(replayed)


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15, 16])
def test_states_marks_and_expiries_give_what_walking_gives(seed: int) -> None:
    assert _drive(seed) > 150  # and many runs were replayed


def _seen_without(field: str, value: Any) -> type:  # noqa: ANN401
    """``_Seen`` with one of the checks ``_dhcp_hook`` makes before a replay defeated."""

    class Loose(netfilter._Seen):
        __slots__ = ()

        def __getattribute__(self, name: str) -> Any:  # noqa: ANN401
            return value if name == field else object.__getattribute__(self, name)
    return Loose


@pytest.mark.parametrize(("field", "value"), [("index", None), ("settled", True)])
def test_a_replay_without_its_checks_is_wrong(field: str, value: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN401
    monkeypatch.setattr(netfilter, "_Seen", _seen_without(field, value))
    with pytest.raises(AssertionError):
        for seed in (11, 12, 13, 14, 15, 16):
            _drive(seed)
