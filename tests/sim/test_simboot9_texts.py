"""Round nine's boot speed-up gives what the plain interpretation gives (issue #17).

A netfilter rule's trace step (``netfilter._Compiled.step``, made once per compiled rule) no
longer formats the rule when it is made: its text is made when first read (``Step.later``),
from the rule it holds (immutable: the text is the same whenever it is made). Reading,
comparing, hashing, printing, ``replace`` and pickling a step see the made text. Over varied
sequences (rules that jump, return, mark, reject and accept, new and established connections,
replies, several rulesets; a world's boot, probes and refreshes with a guest added and one
removed) every result and every rendering equals what formatting each text at once gives; a
text made from the wrong rule (the chain's first instead of the rule's own) fails the comparison.
"""

from __future__ import annotations

import dataclasses
import pickle
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from neutrino.host.iptables import format_rule, parse_save
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim import netfilter, trace
from neutrino.sim.netfilter import FORWARD_PATH, LOCAL_IN_PATH, HookCtx, Netfilter
from neutrino.sim.packets import ICMP, TCP, UDP, IPv4, Raw, TCPFlag, ip
from neutrino.sim.trace import Step, StepKind
from tests.sim.test_living_world import with_servers
from tests.sim.test_simboot8_memories import _story


@contextmanager
def _eager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reference: every later step's text made when the step is made (as before this round)."""
    with monkeypatch.context() as m:
        def eager(cls: type[Step], kind: StepKind, make: Callable[[], str], detail: str = "", obj: str = "") -> Step:
            return cls(kind, make(), detail, obj)
        m.setattr(Step, "later", classmethod(eager))
        yield


def _unread(step: Step) -> bool:
    return type(trace._TEXT_SLOT.__get__(step, Step)) is trace._Later


# -- the step ------------------------------------------------------------------------------------

def test_a_later_step_is_a_step_with_that_text() -> None:
    calls: list[int] = []

    def make() -> str:
        calls.append(1)
        return "-A FORWARD -j ACCEPT"

    plain = Step(StepKind.RULE, "-A FORWARD -j ACCEPT", "[filter] ACCEPT", "sg")
    later = Step.later(StepKind.RULE, make, "[filter] ACCEPT", "sg")
    assert type(later) is Step and _unread(later) and not calls
    blob = pickle.dumps(later)  # pickling reads the text
    assert blob == pickle.dumps(plain) and calls == [1] and not _unread(later)
    assert later == plain and hash(later) == hash(plain) and repr(later) == repr(plain)
    assert pickle.loads(blob) == plain
    again = Step.later(StepKind.RULE, make, "[filter] ACCEPT", "sg")
    assert hash(again) == hash(plain) and again.text == plain.text and calls == [1, 1]
    assert again.text == plain.text and calls == [1, 1]  # made once
    moved = dataclasses.replace(Step.later(StepKind.RULE, make, "x"), detail="[filter] ACCEPT", obj="sg")
    assert moved == plain and not _unread(moved)
    other = Step.later(StepKind.RULE, lambda: "-A FORWARD -j DROP", "[filter] ACCEPT", "sg")
    assert other != plain
    hop = trace.Hop("h", "qbr", "tap", steps=(Step.later(StepKind.RULE, make, "d"),))
    assert pickle.loads(pickle.dumps(hop)).steps[0].text == "-A FORWARD -j ACCEPT"


# -- netfilter over varied sequences ---------------------------------------------------------------

_RULESETS = ('''*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i eth0 -j CT --zone 7
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -j MARK --set-xmark 0x1/0xffffffff
-A FORWARD -m mark --mark 0x1 -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:sg - [0:0]
:port-a - [0:0]
:port-b - [0:0]
-A INPUT -p udp -m udp --dport 67 -j ACCEPT
-A INPUT -p icmp -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -j sg
-A sg -i eth0 -j port-a
-A sg -i eth1 -j port-b
-A port-a -m state --state RELATED,ESTABLISHED -j RETURN
-A port-a -s 10.0.0.1/32 -p tcp -m tcp --dport 22 -j ACCEPT
-A port-a -p udp -m udp --sport 68 --dport 67 -j ACCEPT
-A port-a -m state --state INVALID -j DROP
-A port-a -j DROP
-A port-b -m state --state RELATED,ESTABLISHED -j ACCEPT
-A port-b -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A port-b -d 10.0.0.9/32 -j REJECT
-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 203.0.113.5/32 -j DNAT --to-destination 10.0.0.2
-A POSTROUTING -s 10.0.0.0/24 -o eth9 -j SNAT --to-source 203.0.113.1
COMMIT
''', '''*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:chk - [0:0]
-A INPUT -j chk
-A chk -s 10.0.0.3/32 -j RETURN
-A chk -s 10.0.0.4/32 -j RETURN
-A chk -s 10.0.0.5/32 -j RETURN
-A chk -s 10.0.0.6/32 -j RETURN
-A chk -p tcp -m tcp --tcp-flags SYN,RST,ACK SYN -j ACCEPT
-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A FORWARD -p udp -j DROP
COMMIT
''')


def _packet(rng: random.Random) -> IPv4:
    src, dst = ip(f"10.0.0.{rng.randint(1, 9)}"), rng.choice([ip("10.0.0.2"), ip("10.0.0.9"), ip("203.0.113.5")])
    kind = rng.randrange(4)
    if kind == 0:
        return IPv4(src=src, dst=dst, payload=TCP(sport=rng.choice([4000, 4001]), dport=rng.choice([22, 80]),
                                                  flags=rng.choice([TCPFlag.SYN, TCPFlag.ACK])))
    if kind == 1:
        return IPv4(src=src, dst=dst, payload=ICMP(type=rng.choice([0, 8]), id=rng.randint(1, 3)))
    if kind == 2:
        return IPv4(src=ip("0.0.0.0"), dst=ip("255.255.255.255"), payload=UDP(sport=68, dport=67, payload=Raw(
            data=bytes([rng.randrange(256)]) * 8)))
    return IPv4(src=src, dst=dst, payload=UDP(sport=rng.choice([53, 68, 5000]), dport=rng.choice([67, 53])))


def _drive(seed: int, n: int = 300) -> list[tuple[object, ...]]:
    """Random packets (and each accepted one's reply, sometimes) through fresh netfilters of each
    ruleset: every result with its steps rendered."""
    rng = random.Random(seed)
    nfs = [Netfilter(parse_save(text)) for text in _RULESETS]
    out: list[tuple[object, ...]] = []
    for _ in range(n):
        nf = rng.choice(nfs)
        pkt = _packet(rng)
        ctx = HookCtx(in_dev=rng.choice(["eth0", "eth1"]), out_dev=rng.choice(["eth1", "eth9"]))
        path = rng.choice([FORWARD_PATH, LOCAL_IN_PATH])
        for _ in range(rng.choice([1, 1, 2])):  # the same packet again: a remembered run replayed
            res = nf.traverse(path, pkt, ctx)
            out.append((res, [(s.kind, s.text, s.detail, s.obj) for s in res.steps], repr(res)))
        if res.accepted and rng.random() < 0.5:
            back = IPv4(src=res.packet.dst, dst=res.packet.src, payload=res.packet.payload)
            if isinstance(back.payload, TCP | UDP):
                back = dataclasses.replace(back, payload=dataclasses.replace(
                    back.payload, sport=back.payload.dport, dport=back.payload.sport))
            res = nf.traverse(path, back, HookCtx(in_dev=ctx.out_dev, out_dev=ctx.in_dev))
            out.append((res, [(s.kind, s.text, s.detail, s.obj) for s in res.steps], repr(res)))
    for nf in nfs:
        out.append((nf.conntrack.dump(),))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_netfilter_results_equal_formatting_at_once(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    with _eager(monkeypatch):
        expected = _drive(seed)
    got = _drive(seed)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a == b
    rules = [s for row in got if len(row) > 1 for s in row[0].steps if s.kind is StepKind.RULE]  # type: ignore[attr-defined]
    assert len(rules) > 100  # the sequences met many rules


def test_a_rule_step_is_made_unread_and_reads_as_its_rule() -> None:
    nf = Netfilter(parse_save(_RULESETS[0]))
    syn = IPv4(src=ip("10.0.0.1"), dst=ip("10.0.0.2"), payload=TCP(sport=4000, dport=22, flags=TCPFlag.SYN))
    res = nf.traverse(FORWARD_PATH, syn, HookCtx(in_dev="eth0", out_dev="eth1"))
    rule_steps = [s for s in res.steps if s.kind is StepKind.RULE]
    assert rule_steps and all(_unread(s) for s in rule_steps)  # nothing formatted them yet
    every = {format_rule(r) for t in nf.ruleset.tables for c in t.chains for r in c.rules}
    assert all(s.text in every for s in rule_steps)
    assert res.rule is not None and rule_steps[-1].text == format_rule(res.rule) \
        == "-A port-a -s 10.0.0.1/32 -p tcp -m tcp --dport 22 -j ACCEPT"
    assert not any(_unread(s) for s in rule_steps)


def test_a_text_from_the_wrong_rule_fails_the_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    with _eager(monkeypatch):
        expected = _drive(1, 120)
    with monkeypatch.context() as m:
        def chains_first(self: netfilter._Compiled) -> str:  # keyed by the chain, not the rule
            return f"-A {self.rule.chain} (the chain's first rule)"
        m.setattr(netfilter._Compiled, "_format", chains_first)
        wrong = _drive(1, 120)
    assert wrong != expected


# -- a world -----------------------------------------------------------------------------------------

def test_a_world_boots_probes_and_refreshes_as_formatting_at_once(
        seed0_cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = with_servers(seed0_cloud, 3)
    with _eager(monkeypatch):
        expected = list(_story(cloud))
    made: list[Any] = []
    later: Callable[..., Step] = Step.later

    def counted(*args: Any, **kw: Any) -> Step:
        step = later(*args, **kw)
        made.append(step)
        return step
    monkeypatch.setattr(Step, "later", counted)
    got = list(_story(cloud))
    assert [k for k, _ in got] == [k for k, _ in expected]
    for (k, a), (_, b) in zip(got, expected, strict=True):
        assert a == b, k
        if k != "hops pickled":  # (a mapping object's default repr)
            assert repr(a) == repr(b), k
    assert made  # the rules' steps were made later
