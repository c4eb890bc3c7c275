"""Round seventeen's boot speed-up gives what compiling each rule on its own gives (issue #17).

A rule's option tests are shared by every rule with the same option under the same module, in
every netfilter (``netfilter._OPTION_TESTS``), and a chain holds its ruleset's rules without
copying them. Random rulesets over options that differ only in their module (``-m mark`` and
``-m connmark --mark``, ``-m state`` and ``-m conntrack --ctstate``), their negation or their
port give, on random packets, what a netfilter whose every option test is made afresh gives:
every result, step and the connection table after each. One test found under another module's
key fails that comparison. Compiling many ports' rules makes each distinct option's test once.
A world's boot equals one whose option tests are all made afresh.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from neutrino.host.iptables import Match, Option, Rule, TableName, parse_save
from neutrino.sim import netfilter
from neutrino.sim.conntrack import Conntrack
from neutrino.sim.netfilter import FORWARD_PATH, Hook, HookCtx, Netfilter
from neutrino.sim.packets import TCP, UDP, IPv4, Raw, TCPFlag, ip, mac
from tests.sim.test_simboot15_macs import _world_state, cloud40, world_of_cloud  # noqa: F401 - a fixture
from tests.sim.test_simboot16_dhcp_hooks import _table

# each a rule's matches; some differ from another only in the module, the negation or a value
_MATCHES = (
    "-m mark --mark 0x1/0xf", "-m connmark --mark 0x1/0xf", "-m mark ! --mark 0x1/0xf",
    "-m state --state NEW", "-m conntrack --ctstate NEW", "-m state ! --state NEW",
    "-m state --state RELATED,ESTABLISHED", "-m conntrack --ctstate RELATED,ESTABLISHED",
    "-p udp -m udp --dport 67", "-p udp -m udp --sport 67", "-p tcp -m tcp --dport 67",
    "-p udp -m udp ! --dport 67", "-p tcp -m tcp --dport 22", "-p tcp -m multiport --dports 22,80",
    "-m physdev --physdev-in tapA --physdev-is-bridged", "-m physdev --physdev-in tapB",
    "-m physdev --physdev-out tapA --physdev-is-bridged", "-m physdev ! --physdev-is-bridged",
    "-m physdev --physdev-out tapB", "-m mac --mac-source fa:16:3e:00:00:01",
    "-m mac ! --mac-source fa:16:3e:00:00:01", "-m comment --comment \"Set zone for A\"",
    "-s 10.0.0.2/32", "-d 10.0.0.5/32", "-i eth0", "-o eth1", "",
)
_TARGETS = ("-j ACCEPT", "-j DROP", "-j RETURN", "-j sg", "-j MARK --set-xmark 0x1/0xf",
            "-j CONNMARK --save-mark --nfmask 0xf --ctmask 0xf", "")
_CHAINS = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "mangle": ("PREROUTING", "FORWARD", "POSTROUTING")}


def _ruleset_text(rng: random.Random) -> str:
    out = ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           "-A PREROUTING -m physdev --physdev-in tapA -j CT --zone 4", "COMMIT"]
    for table, builtins in _CHAINS.items():
        out.append(f"*{table}")
        out += [f":{c} ACCEPT [0:0]" for c in builtins] + [":sg - [0:0]"]
        for chain in (*builtins, "sg"):
            for _ in range(rng.randrange(2, 9)):
                target = rng.choice(_TARGETS)
                if chain == "sg" and target == "-j sg":
                    target = "-j RETURN"
                if table == "filter" and target.startswith(("-j MARK", "-j CONNMARK")):
                    target = "-j DROP"
                parts = [rng.choice(_MATCHES) for _ in range(rng.randrange(1, 3))]
                out.append(" ".join(x for x in (f"-A {chain}", *parts, target) if x))
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _packet(rng: random.Random) -> IPv4:
    src, dst = rng.choice(((ip("10.0.0.2"), ip("10.0.0.5")), (ip("10.0.0.5"), ip("10.0.0.2")),
                           (ip("10.0.0.3"), ip("10.0.0.9"))))
    sport, dport = rng.choice(((68, 67), (67, 68), (40000, 22), (22, 40000), (40001, 80)))
    if rng.random() < 0.5:
        l4: UDP | TCP = UDP(sport=sport, dport=dport, payload=Raw(data=b"x"))
    else:
        l4 = TCP(sport=sport, dport=dport, flags=TCPFlag(rng.choice((0x02, 0x12, 0x10))))
    return IPv4(src=src, dst=dst, payload=l4)


def _context(rng: random.Random, path: tuple[Hook, ...]) -> HookCtx:
    if path[0] is Hook.OUTPUT:
        return HookCtx(out_dev=rng.choice(("eth0", "eth1")), mark=rng.choice((0, 1)))
    bridged = rng.random() < 0.6
    return HookCtx(in_dev=rng.choice(("eth0", "eth1", "qbrA")), out_dev="eth1" if path == FORWARD_PATH else None,
                   physdev_in=rng.choice(("tapA", "tapB", None)) if bridged else None,
                   physdev_out=rng.choice(("tapA", "tapB", None)) if bridged else None,
                   physdev_is_bridged=bridged and rng.random() < 0.5,
                   src_mac=mac(f"fa:16:3e:00:00:{rng.randrange(3):02x}"),
                   mark=rng.choice((0, 1, 0x11)), connmark=rng.choice((0, 1)))


_PATHS = ((Hook.PREROUTING, Hook.INPUT), FORWARD_PATH, (Hook.OUTPUT, Hook.POSTROUTING))


class _Forgetful(dict[tuple[str, Option], tuple[Any, ...]]):
    """A table of option tests that keeps none: every rule's tests made afresh (the tree before)."""

    def __setitem__(self, key: tuple[str, Option], value: tuple[Any, ...]) -> None:
        return None


@contextmanager
def _afresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as m:
        m.setattr(netfilter, "_OPTION_TESTS", _Forgetful())
        yield


def _drive(seed: int, monkeypatch: pytest.MonkeyPatch, n: int = 150) -> None:
    """Random packets through a random ruleset twice: compiled with the shared tests, and
    compiled with every test made afresh. The first difference raises AssertionError."""
    rng = random.Random(seed)
    rs = parse_save(_ruleset_text(rng))
    mine = Netfilter(rs, Conntrack())
    mine.compile_all()
    with _afresh(monkeypatch):
        plain = Netfilter(rs, Conntrack())
        plain.compile_all()
    for _ in range(n):
        path = rng.choice(_PATHS)
        pkt, ctx = _packet(rng), _context(rng, path)
        assert mine.traverse(path, pkt, ctx) == plain.traverse(path, pkt, ctx), (seed, pkt, ctx, path)
        assert _table(mine.conntrack) == _table(plain.conntrack)


@pytest.mark.parametrize("seed", range(12), ids=lambda s: f"seed{s}")
def test_shared_option_tests_give_what_fresh_ones_give(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules compiled with tests shared across rules and netfilters (the table warm from the
    seeds before) decide every packet as rules compiled each with its own tests."""
    _drive(seed, monkeypatch)


def test_a_test_under_another_modules_key_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: ``-m connmark --mark`` given ``-m mark --mark``'s test (the same
    option, the key without its module) decides some packet otherwise."""
    opt = Option("mark", ("0x1/0xf",))
    wrong = netfilter._option_test(None, Match("mark", (opt,)), opt)  # type: ignore[arg-type]
    assert wrong is not None
    with monkeypatch.context() as m:
        table = dict(netfilter._OPTION_TESTS)
        table[("connmark", opt)] = (wrong,)
        m.setattr(netfilter, "_OPTION_TESTS", table)
        failed = 0
        for seed in range(12):
            try:
                _drive(seed, monkeypatch)
            except AssertionError:
                failed += 1
        assert failed > 0


def test_each_distinct_option_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fifty ports' rules (each port's ``--physdev-in`` in three tables, DHCP's ports, the
    bridged test and the state test in every port's rules): one test made per distinct option,
    the same object in every rule and netfilter that has it."""
    lines = {"raw": [], "nat": [], "filter": []}  # type: dict[str, list[str]]
    for k in range(50):
        lines["raw"].append(f"-A PREROUTING -m physdev --physdev-in tap{k} -m comment --comment \"zone {k}\" "
                            f"-j CT --zone {k + 1}")
        lines["nat"].append(f"-A PREROUTING -m physdev --physdev-in tap{k} -j ACCEPT")
        lines["filter"].append(f"-A FORWARD -m physdev --physdev-in tap{k} --physdev-is-bridged -j i{k}")
        lines["filter"].append(f"-A i{k} -m state --state RELATED,ESTABLISHED -j RETURN")
        lines["filter"].append(f"-A i{k} -d 10.0.{k}.2/32 -p udp -m udp --sport 67 --dport 68 -j RETURN")
    heads = {"raw": [":PREROUTING ACCEPT [0:0]"], "nat": [":PREROUTING ACCEPT [0:0]"],
             "filter": [":FORWARD ACCEPT [0:0]"] + [f":i{k} - [0:0]" for k in range(50)]}
    text = "".join(f"*{t}\n" + "\n".join(heads[t] + lines[t]) + "\nCOMMIT\n" for t in lines)
    made: list[tuple[str, Option]] = []
    real = netfilter._option_test

    def counted(rule: Any, m: Any, o: Option) -> Any:  # noqa: ANN401
        made.append((m.module, o))
        return real(rule, m, o)

    monkeypatch.setattr(netfilter, "_OPTION_TESTS", {})
    monkeypatch.setattr(netfilter, "_option_test", counted)
    first, second = Netfilter(parse_save(text)), Netfilter(parse_save(text))
    first.compile_all()
    second.compile_all()
    assert len(made) == len(set(made)) == 50 + 4  # each tap once; the bridged, state and two port tests
    for table, chain in ((TableName.RAW, "PREROUTING"), (TableName.FILTER, "i7")):
        a, b = first._chain(table, chain), second._chain(table, chain)
        assert a is not None and b is not None
        for i in range(len(a.rules)):
            # the option tests come last, after the protocol's and the addresses' own
            k = sum(len(m.options) for m in a.rule(i).matches if m.module != "comment")
            assert k > 0 and all(x is y for x, y in zip(a.at(i).tests[-k:], b.at(i).tests[-k:], strict=True))


def test_a_chain_holds_its_rules_uncopied_and_a_loaded_one_unpickles_in_place() -> None:
    """A chain holds the ruleset's own tuple of rules; a netfilter loaded from its pickle holds
    each rule pickled, unpickles the ones a packet reaches, and decides as the original."""
    rs = parse_save(_ruleset_text(random.Random(5)))
    nf = Netfilter(rs, Conntrack())
    chain = nf._chain(TableName.FILTER, "FORWARD")
    table = rs.find(TableName.FILTER)
    assert chain is not None and table is not None
    assert chain.rules is next(c for c in table.chains if c.name == "FORWARD").rules
    loaded: Netfilter = pickle.loads(pickle.dumps(nf))
    rng = random.Random(6)
    for _ in range(100):
        path = rng.choice(_PATHS)
        pkt, ctx = _packet(rng), _context(rng, path)
        assert loaded.traverse(path, pkt, ctx) == nf.traverse(path, pkt, ctx)
    held = loaded._chain(TableName.FILTER, "FORWARD")
    assert held is not None and any(isinstance(r, Rule) for r in held.rules)


def test_a_boot_equals_one_whose_option_tests_are_made_afresh(cloud40: Any,  # noqa: F811
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A 40-instance boot with shared option tests (the table emptied first) equals a boot whose
    every rule makes its own: leases, hops and their frames, MAC tables, learned flows."""
    monkeypatch.setattr(netfilter, "_OPTION_TESTS", {})
    world = world_of_cloud(cloud40)
    leases = world.boot()
    assert len(netfilter._OPTION_TESTS) > 0
    with _afresh(monkeypatch):
        plain = world_of_cloud(cloud40)
        plain_leases = plain.boot()
    assert leases == plain_leases and all(leases.values())
    assert _world_state(world) == _world_state(plain)
