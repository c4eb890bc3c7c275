"""Round nineteen's cheaper pieces of the hybrid firewall's bridged hooks give what they gave (issue #17).

- A plain ``--physdev-in/out NAME`` test compares the port with the name itself, and
  ``--physdev-is-bridged`` reads the context once: on random ports, contexts and negations each
  answers what xt_physdev's rule (:meth:`Interface.matches`, the bridged check) answers, and a
  plain name never calls :meth:`Interface.matches` (a wildcard still does).
- A connection's SNAT/DNAT bits compare the reply with the original's inverse field by field,
  without making it: on random TCP, UDP and ICMP connections, bound or not, each equals the
  comparison with :meth:`Tuple.inverse`.
- A chain's policy step is made once: every packet its policy decides gets that step, equal to
  the one made afresh, and another chain's, table's or policy's differs.
- Chain runs are keyed by the enums' values: runs that differ only in the conntrack state or
  direction get different keys, and the remembered runs give what walks give.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from neutrino.host.iptables import Interface, Option, Rule, TableName, parse_save
from neutrino.sim import netfilter
from neutrino.sim.conntrack import Connection, Conntrack, CtRef, CtState, Direction, Manip, Tuple
from neutrino.sim.netfilter import FORWARD_PATH, Hook, HookCtx, Netfilter
from neutrino.sim.packets import ICMP, TCP, UDP, IPv4, TCPFlag, ip
from neutrino.sim.trace import Step, StepKind

_PORTS = ("tapa1", "tapa2", "qvba1", "tapa", "", "tapa1x")


def _ctx(rng: random.Random) -> HookCtx:
    pick: Callable[[], str | None] = lambda: rng.choice((None, *_PORTS))  # noqa: E731 - a local picker
    return HookCtx(physdev_in=pick(), physdev_out=pick(), physdev_is_bridged=rng.random() < 0.5)


def _reference(name: str, value: str, negated: bool, ctx: HookCtx) -> bool:
    """xt_physdev as the rule says it (the round before's test, written out)."""
    bridged = ctx.physdev_in is not None or ctx.physdev_out is not None
    if not bridged:
        return negated
    if name == "physdev-is-bridged":
        return (ctx.physdev_is_bridged or ctx.physdev_out is not None) != negated
    got = ctx.physdev_in if name == "physdev-in" else ctx.physdev_out
    return Interface(value).matches(got or "") != negated


def _pkt(ctx: HookCtx) -> netfilter._Pkt:
    return netfilter._Pkt(IPv4(src=ip("10.0.0.1"), dst=ip("10.0.0.2"), payload=UDP(sport=68, dport=67)),
                          ctx, 0, None, 0)


_RULE = parse_save("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j ACCEPT\nCOMMIT\n").tables[0].chains[0].rules[0]


@pytest.mark.parametrize("seed", range(4))
def test_physdev_tests_answer_as_the_rule_says(seed: int) -> None:
    rng = random.Random(seed)
    options = [Option(name, (value,) if name != "physdev-is-bridged" else (), negated)
               for name in ("physdev-in", "physdev-out", "physdev-is-bridged")
               for value in ("tapa1", "qvba1", "tapa+", "tap+", "", "tapa1x")
               for negated in (False, True)]
    compared = differ_in_out = 0
    for o in options:
        test = netfilter._physdev_option(_RULE, o)
        for _ in range(60):
            ctx = _ctx(rng)
            assert test(_pkt(ctx)) == _reference(o.name, o.value, o.negated, ctx), (o, ctx)
            compared += 1
            if o.name == "physdev-in" and (ctx.physdev_in or "") != (ctx.physdev_out or ""):
                # the test reading the other port would answer otherwise here
                differ_in_out += _reference("physdev-out", o.value, o.negated, ctx) != _reference(
                    o.name, o.value, o.negated, ctx)
    assert compared == len(options) * 60 and differ_in_out > 20


def test_a_plain_port_name_is_compared_without_interface_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = Interface.matches

    def counted(self: Interface, device: str) -> bool:
        calls.append(self.name)
        return real(self, device)

    monkeypatch.setattr(Interface, "matches", counted)
    ctx = HookCtx(physdev_in="tapa1", physdev_out="qvba1")
    for negated in (False, True):
        plain = netfilter._physdev_option(_RULE, Option("physdev-in", ("tapa1",), negated))
        wild = netfilter._physdev_option(_RULE, Option("physdev-out", ("qvb+",), negated))
        assert plain(_pkt(ctx)) is (not negated) and wild(_pkt(ctx)) is (not negated)
    assert calls == ["qvb+", "qvb+"]  # only the wildcards asked


def _inverse_snat(c: Connection) -> bool:
    inv = c.original.inverse()
    if c.original.proto != 1:
        return (c.reply.dst, c.reply.dport) != (inv.dst, inv.dport)
    return (c.reply.dst, c.reply.sport) != (inv.dst, inv.sport)


def _inverse_dnat(c: Connection) -> bool:
    inv = c.original.inverse()
    if c.original.proto == 1:
        return c.reply.src != inv.src
    return (c.reply.src, c.reply.sport) != (inv.src, inv.sport)


@pytest.mark.parametrize("seed", range(3))
def test_nat_bits_equal_the_inverse_comparison(seed: int) -> None:
    rng = random.Random(seed)
    addrs = [ip(f"10.0.0.{i}") for i in range(1, 5)]
    seen = {(False, False): 0, (True, False): 0, (False, True): 0, (True, True): 0}
    for _ in range(400):
        proto = rng.choice((1, 6, 17))
        src, dst = rng.choice(addrs), rng.choice(addrs)
        if proto == 1:
            payload: ICMP | TCP | UDP = ICMP(type=rng.choice((8, 13)), id=rng.randrange(4))
        elif proto == 6:
            payload = TCP(sport=rng.randrange(1, 4), dport=rng.randrange(1, 4), flags=TCPFlag.SYN)
        else:
            payload = UDP(sport=rng.randrange(1, 4), dport=rng.randrange(1, 4))
        table = Conntrack()
        ref = table.lookup(IPv4(src=src, dst=dst, payload=payload))
        conn = ref.conn
        assert conn is not None
        for manip in (Manip.SRC, Manip.DST):
            if rng.random() < 0.5:  # a binding to another (or the same) address and port
                table.bind(conn, manip, rng.choice(addrs), rng.choice((None, 1, 2, 3)))
        if rng.random() < 0.2:  # a reply tuple that differs only in the ICMP type, or only in a port
            conn.reply = Tuple(conn.reply.proto, conn.reply.src, conn.reply.dst, conn.reply.sport,
                               conn.reply.dport + 1)
        assert (conn.snat, conn.dnat) == (_inverse_snat(conn), _inverse_dnat(conn)), conn
        seen[(conn.snat, conn.dnat)] += 1
    assert all(n > 10 for n in seen.values()), seen


_POLICIES = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -j ACCEPT
COMMIT
*raw
:PREROUTING DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -j ACCEPT
COMMIT
"""


def test_a_policy_step_is_made_once_per_chain_and_equals_a_fresh_one() -> None:
    nf = Netfilter(parse_save(_POLICIES), Conntrack())
    icmp = IPv4(src=ip("10.0.0.1"), dst=ip("10.0.0.2"), payload=ICMP(type=8, id=1))
    steps = []
    for i in range(3):
        res = nf.traverse(FORWARD_PATH, IPv4(src=ip("10.0.0.1"), dst=ip("10.0.0.2"), payload=ICMP(type=8, id=i)),
                          HookCtx(in_dev="a", out_dev="b"))
        assert res.verdict is netfilter.NfVerdict.DROP
        steps.append([s for s in res.steps if s.kind is StepKind.POLICY])
    # raw PREROUTING drops first: its policy, the same object every time
    fresh = Step(StepKind.POLICY, "-P PREROUTING DROP", "[raw] policy")
    assert all(s == [fresh] and s[0] is steps[0][0] for s in steps)
    assert nf.hook(Hook.INPUT, icmp, HookCtx()).steps[-2:] == (
        Step(StepKind.POLICY, "-P INPUT DROP", "[filter] policy"), Step(StepKind.DROP, "", "dropped in INPUT"))
    out = nf.hook(Hook.OUTPUT, icmp, HookCtx())
    assert [s for s in out.steps if s.kind is StepKind.POLICY] == [
        Step(StepKind.POLICY, "-P OUTPUT ACCEPT", "[filter] policy")]  # filter's accepting policy is a step
    chains = {k: c.policy_step for k, c in nf._compiled.items() if c.policy_step is not None}
    assert len(chains) == len(set(map(id, chains.values()))) == len({s.text + s.detail for s in chains.values()}) == 3


def _key(state: CtState, direction: Direction, hook: Hook = Hook.FORWARD) -> tuple[object, ...]:
    conn = Connection(1, 0, Tuple(17, ip("10.0.0.1"), ip("10.0.0.2"), 1, 2), Tuple(17, ip("10.0.0.2"),
                                                                                 ip("10.0.0.1"), 2, 1))
    p = _pkt(HookCtx(in_dev="a"))
    p.ct = CtRef(conn, direction, state)
    return netfilter._run_key(TableName.FILTER, hook, p)


def test_chain_run_keys_tell_states_directions_and_hooks_apart() -> None:
    keys = {_key(s, d, h) for s in CtState for d in Direction for h in Hook}
    assert len(keys) == len(CtState) * len(Direction) * len(Hook)
    assert _key(CtState.NEW, Direction.REPLY) == _key(CtState.NEW, Direction.REPLY)


def test_remembered_runs_give_what_walks_give() -> None:
    text = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m state --state ESTABLISHED -j ACCEPT
-A FORWARD -m state --state NEW -p udp -m udp --dport 53 -j ACCEPT
-A FORWARD -m conntrack --ctdir REPLY -j DROP
COMMIT
"""

    class Walker(Netfilter):  # remembers no chain run (nor, a subclass, any hook run)
        def _run(self, table: TableName, hook: Hook, p: netfilter._Pkt) -> tuple[
                netfilter.NfVerdict | None, Rule | None]:
            verdict, rule, _ = self._walk(table, hook, p)
            return verdict, rule

    walks, every = Netfilter(parse_save(text), Conntrack()), Walker(parse_save(text), Conntrack())
    walked = []
    real = walks._walk

    def counted(table: TableName, hook: Hook, p: netfilter._Pkt) -> tuple[
            netfilter.NfVerdict | None, Rule | None, bool]:
        walked.append(table)
        return real(table, hook, p)

    walks._walk = counted  # type: ignore[method-assign]
    rng = random.Random(7)
    hosts = [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]
    for i in range(300):
        a, b = rng.sample(hosts, 2)
        pkt = IPv4(src=a, dst=b, payload=UDP(sport=rng.choice((53, 1000)), dport=rng.choice((53, 1000))), id=i % 3)
        ctx = HookCtx(in_dev="a", out_dev="b")
        got, want = walks.traverse(FORWARD_PATH, pkt, ctx), every.traverse(FORWARD_PATH, pkt, ctx)
        assert (got.verdict, got.steps, got.state, got.rule) == (want.verdict, want.steps, want.state, want.rule)
        assert walks.conntrack.dump() == every.conntrack.dump()
    assert walks._runs and len(walked) < 1050  # of up to 2,100 table runs (7 a traverse), most replayed
