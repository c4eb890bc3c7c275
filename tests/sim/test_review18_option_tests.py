"""Review of simboot17 (issue #17): option tests shared by (module, option) across rules and
netfilters. What a shared test compares with must come from the option alone; what differs
between worlds (ipsets by name, the namespace's own addresses) must be read from the packet's
context when the test runs. Each test compares the shared tests with tests made afresh (the tree
before) in two worlds that differ only in that state, and checks the worlds do answer differently
(else the comparison proves nothing). A kept test must not hold the rule it was first made for."""

from __future__ import annotations

import gc
import pickle
import random
from ipaddress import IPv4Network

import pytest

from neutrino.host.iptables import Rule, TableName, parse_save
from neutrino.sim import netfilter
from neutrino.sim.conntrack import Conntrack
from neutrino.sim.netfilter import Hook, HookCtx, IpSet, Netfilter
from neutrino.sim.packets import UDP, IPv4, Raw, ip
from tests.sim.test_simboot17_shared_tests import _afresh

_INPUT = (Hook.PREROUTING, Hook.INPUT)

_RULES = """*filter
:INPUT ACCEPT [0:0]
-A INPUT -m comment --comment "review18 guard" -m set --match-set NIPv4sg src -j DROP
-A INPUT -m addrtype ! --dst-type LOCAL -m limit --limit 1/min --limit-burst 1 -j REJECT
-A INPUT -m set ! --match-set NIPv4other dst -j ACCEPT
COMMIT
"""


def _net(addr: str) -> frozenset[IPv4Network]:
    return frozenset({IPv4Network(addr)})


def _worlds() -> tuple[HookCtx, HookCtx]:
    """Two namespaces' contexts: the same set names with other members, other local addresses."""
    one = HookCtx(in_dev="eth0", local_addrs=frozenset({ip("10.0.0.5")}),
                  ipsets=(IpSet("NIPv4sg", _net("10.0.0.2/32")), IpSet("NIPv4other", _net("10.0.0.9/32"))))
    two = HookCtx(in_dev="eth0", local_addrs=frozenset({ip("10.0.0.9")}),
                  ipsets=(IpSet("NIPv4sg", _net("10.0.0.3/32")), IpSet("NIPv4other", _net("10.0.0.5/32"))))
    return one, two


def _packets(rng: random.Random, n: int) -> list[IPv4]:
    addrs = [ip(f"10.0.0.{i}") for i in (2, 3, 5, 9)]
    return [IPv4(src=rng.choice(addrs), dst=rng.choice(addrs),
                 payload=UDP(sport=rng.randrange(1000, 1010), dport=53, payload=Raw(data=b"q"))) for _ in range(n)]


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed{s}")
def test_tests_shared_across_worlds_read_each_worlds_own_state(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A netfilter per world, all compiled from one ruleset with the tests shared, gives what the
    same compiled with every test afresh gives; and the two worlds disagree on some packet."""
    rs = parse_save(_RULES)
    shared = [Netfilter(rs, Conntrack()) for _ in range(2)]
    for nf in shared:
        nf.compile_all()
    with _afresh(monkeypatch):
        fresh = [Netfilter(rs, Conntrack()) for _ in range(2)]
        for nf in fresh:
            nf.compile_all()
    worlds = _worlds()
    differ = 0
    for pkt in _packets(random.Random(seed), 40):
        got = [shared[i].traverse(_INPUT, pkt, worlds[i]) for i in range(2)]
        assert got == [fresh[i].traverse(_INPUT, pkt, worlds[i]) for i in range(2)], pkt
        differ += got[0].verdict != got[1].verdict
    assert differ > 0


def test_a_limit_match_is_never_enforced_as_before() -> None:
    """``-m limit`` is skipped at compile time (simboot17); the tree before gave it no test either:
    a rule limited to one a minute, burst one, still matches every packet."""
    rs = parse_save(_RULES)
    nf = Netfilter(rs, Conntrack())
    ctx = _worlds()[0]
    pkt = IPv4(src=ip("10.0.0.3"), dst=ip("10.0.0.2"), payload=UDP(sport=1000, dport=53, payload=Raw(data=b"q")))
    rules = [nf.traverse(_INPUT, pkt, ctx).rule for _ in range(5)]
    assert all(r is not None and any(m.module == "limit" for m in r.matches) for r in rules)


def _cells(fn: object) -> list[object]:
    out = []
    for cell in getattr(fn, "__closure__", None) or ():
        out.append(cell.cell_contents)
    return out


def test_kept_tests_do_not_hold_their_first_rule() -> None:
    """The process-wide table outlives every netfilter: a kept test (or a function it closes
    over) holding a rule would keep rulesets alive, and its errors would name the wrong rule."""
    Netfilter(parse_save(_RULES), Conntrack()).compile_all()
    gc.collect()
    seen: list[object] = []
    todo: list[object] = [t for got in netfilter._OPTION_TESTS.values() for t in got]
    assert todo
    while todo:
        fn = todo.pop()
        if any(fn is s for s in seen):
            continue
        seen.append(fn)
        for v in _cells(fn):
            assert not isinstance(v, Rule), fn
            if callable(v):
                todo.append(v)


def test_a_loaded_chain_unpickled_in_place_pickles_again_as_saved() -> None:
    """A loaded chain's list of pickles becomes rules in place (simboot17: no copy). The list is
    the chain's own (unpickled from the saved bytes), so the netfilter pickles again to the very
    saved bytes, and two loads from one pickle decide alike and give the original ruleset."""
    rs = parse_save(_RULES)
    blob = pickle.dumps(Netfilter(rs, Conntrack()))
    first: Netfilter = pickle.loads(blob)
    second: Netfilter = pickle.loads(blob)
    ctx = _worlds()[0]
    for pkt in _packets(random.Random(7), 20):
        assert first.traverse(_INPUT, pkt, ctx) == second.traverse(_INPUT, pkt, ctx)
    held = first._chain(TableName.FILTER, "INPUT")
    assert held is not None and all(isinstance(r, Rule) for r in held.rules)
    assert pickle.loads(blob).__getstate__()["tables"] == first.__getstate__()["tables"]
    again: Netfilter = pickle.loads(pickle.dumps(first))
    assert again.ruleset == first.ruleset == rs
