"""Round eleven's boot speed-up gives what the plain interpretation gives (issue #17).

A bridge run whose only read of the Ethernet source was a ``learn`` action's (br-tun learning
the MAC of every frame out of a tunnel) is remembered by its header without the source
(``ovs._SrcLearn``): replayed for a frame from another MAC, the action learns that MAC's flow
(the reads it kept, the source's bits taken from the new frame) and its flow step gets that
flow's text. Over varied sequences (many source MACs, broadcasts and unicasts, tunnel keys,
tags, pruning rules, MACs forgotten, resets) every result, learned flow, flow order and MAC
table equals a bridge's that interprets every frame; taking the source's bits out of the kept
reads, or keeping the old flow step, makes the comparison fail. A world's boot, probes and
refreshes (guests added and removed, a security-group rule removed) equal a world's whose
learn actions keep the source in the key as before.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from neutrino.host.openflow import Learn
from neutrino.plan import plan_cloud
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim import ovs
from neutrino.sim.cloud import refresh_world, world_of
from neutrino.sim.ovs import Meta, OvsBridgeSim, Result
from neutrino.sim.ovs_normal import PortKind
from neutrino.sim.packets import UDP, Ethernet, IPv4, Raw, arp_request, ip, mac, push_vlan
from neutrino.sim.world import World
from tests.sim import test_simboot8_memories
from tests.sim.conftest import brought_up
from tests.sim.test_living_world import add_server, delete_rule, delete_server, with_servers
from tests.sim.test_simboot8_memories import SEED001, _bridges, _pair, _payload_rule, _state, _world_state

tunnel_world = test_simboot8_memories.tunnel_world  # (its fixture, this module's by this name: seed 001)

_REPLAYED: list[int] = []  # per header-memory answer: how many learn actions it learned from the new source


@pytest.fixture(autouse=True)
def _count_replays(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    again = ovs._L2Seen.again

    def counted(self: ovs._L2Seen, *args: Any) -> tuple[Result, list[Any]]:
        _REPLAYED.append(sum(1 for x in self.learns if type(x) is ovs._SrcLearn))
        return again(self, *args)
    monkeypatch.setattr(ovs._L2Seen, "again", counted)
    _REPLAYED.clear()
    yield
    _REPLAYED.clear()


def _frame(rng: random.Random, n_macs: int, vlans: list[int]) -> Ethernet:
    """A DHCP-like broadcast (varied payload), a unicast or an ARP request, from one of
    ``n_macs`` MACs (most of them new to the bridge for a while), tagged or not."""
    src = mac(f"fa:16:3e:01:{rng.randrange(n_macs) >> 8:02x}:{rng.randrange(n_macs) & 255:02x}")
    kind = rng.randrange(4)
    if kind <= 1:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
        frame = Ethernet(dst=mac("ff:ff:ff:ff:ff:ff"), src=src, payload=IPv4(
            src=ip("0.0.0.0"), dst=ip("255.255.255.255"), proto=17,
            payload=UDP(sport=68, dport=67, payload=Raw(data=body))))
    elif kind == 2:
        frame = Ethernet(dst=mac(f"fa:16:3e:01:00:{rng.randrange(4):02x}"), src=src, payload=IPv4(
            src=ip("10.0.0.5"), dst=ip("10.0.0.6"), proto=17, payload=UDP(sport=68, dport=67, payload=Raw(data=b"x"))))
    else:
        frame = arp_request(src, ip(f"10.0.0.{rng.randrange(2, 6)}"), ip("10.0.0.1"))
    if vlans and rng.random() < 0.3:
        frame = push_vlan(frame, rng.choice(vlans))
    return frame


def _drive(mem: OvsBridgeSim, plain: OvsBridgeSim, seed: int, n: int = 300, n_macs: int = 60) -> None:
    """The same random sequence into both bridges, mostly out of tunnels; the first difference
    raises AssertionError."""
    rng = random.Random(seed)
    ports = [p.name for p in mem.ports]
    tunnels = [p.name for p in mem.ports if p.kind is PortKind.TUNNEL]
    vlans = sorted({p.tag for p in mem.ports if p.tag} | {1})
    tun_ids = sorted({int(x, 16) for lst in mem._static.values() for c in lst
                      for x in re.findall(r"tun_id=(0x[0-9a-f]+)", c.text)}) or [1]
    for i in range(n):
        port = rng.choice(tunnels) if tunnels and rng.random() < 0.8 else rng.choice(ports)
        frame = _frame(rng, n_macs, vlans)
        meta = Meta(tun_id=rng.choice(tun_ids[:3])) if port in tunnels else None
        rule = _payload_rule if rng.random() < 0.5 and frame.dst.value == 0xFFFFFFFFFFFF else None
        a = mem.process(port, frame, meta, unfollowed=rule)
        b = plain.process(port, frame, meta, unfollowed=rule)
        assert a == b, (i, port, frame, a, b)
        assert tuple(e.frame for e in a.outputs) == tuple(e.frame for e in b.outputs), i
        if i % 20 == 0:
            assert _state(mem) == _state(plain), i
        r = rng.random()
        if r < 0.01:
            mem.reset()
            plain.reset()
        elif r < 0.04:
            gone = [frame.src]
            mem.forget(gone)
            plain.forget(gone)
    assert _state(mem) == _state(plain)


def _tunnel_bridges(world: World) -> list[tuple[str, str]]:
    return [(h, b) for h, b in _bridges(world) if b == "br-tun"]


def test_a_learn_from_another_source_replays_as_interpreting_gives(tunnel_world: World) -> None:
    bridges = _tunnel_bridges(tunnel_world)
    assert len(bridges) >= 2
    for k, (host, name) in enumerate(bridges):
        for seed in range(2):
            mem, plain = _pair(tunnel_world, host, name)
            _drive(mem, plain, seed=10 * k + seed)
    assert sum(1 for n in _REPLAYED if n) > 100  # runs with a learn from a new source were replayed


def test_the_source_bits_and_the_flow_step_are_needed(tunnel_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the source's bits in the kept reads the replay learns the old MAC's flow; with
    the old flow step kept the step names it: either way the comparison fails."""
    host, name = _tunnel_bridges(tunnel_world)[0]
    monkeypatch.setattr(ovs, "_src_bits", lambda learn: ())
    with pytest.raises(AssertionError):
        mem, plain = _pair(tunnel_world, host, name)
        _drive(mem, plain, seed=1)
    monkeypatch.undo()

    again = ovs._L2Seen.again

    def old_steps(self: ovs._L2Seen, bridge: OvsBridgeSim, frame: Ethernet, *rest: Any) -> tuple[Result, list[Any]]:
        res, relearned = again(self, bridge, frame, *rest)
        return Result(res.outputs, self.result.steps if self.normal is None else res.steps, res.pruned), relearned
    monkeypatch.setattr(ovs._L2Seen, "again", old_steps)
    with pytest.raises(AssertionError):
        mem, plain = _pair(tunnel_world, host, name)
        _drive(mem, plain, seed=2)


def _old_learn(self: OvsBridgeSim, a: Any, ctx: Any, run: Any, depth: int, table: int) -> str:
    """Round ten's ``learn``: its read of the source puts the source in the run's key."""
    return self._learn(ovs._learned(ctx, a), run)


def _story(cloud: CloudSnapshot) -> Iterator[tuple[str, object]]:
    w = world_of(cloud, plan_cloud(cloud))
    yield "boot", sorted(w.boot().items())
    yield "state", _world_state(w)
    guests = sorted(w.guests)
    for src in guests[:3]:
        for dst in ("8.8.8.8", *guests):
            if dst != src:
                yield f"{src}>{dst}", w.probe(src, dst)
                yield f"{src}>{dst} tcp", w.probe(src, dst, proto="tcp", dport=22)
    bigger = with_servers(cloud, 3)
    bigger = add_server(bigger, "vm9", 9)
    yield "added", refresh_world(w, bigger, plan_cloud(bigger))
    yield "state+", _world_state(w)
    smaller = delete_rule(delete_server(bigger, "vm1"), "tcp", 22)
    yield "removed", refresh_world(w, smaller, plan_cloud(smaller))
    yield "state-", _world_state(w)
    yield "vm9>vm2", w.probe("vm9", "vm2")
    yield "vm9>vm2 tcp", w.probe("vm9", "vm2", proto="tcp", dport=22)


def test_a_world_boots_probes_and_refreshes_as_with_the_source_in_the_key(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = with_servers(brought_up(SEED001, tmp_path_factory, "simboot11-story"), 4)
    with monkeypatch.context() as m:
        m.setattr(OvsBridgeSim, "_a_learn", _old_learn)
        m.setitem(ovs._ACTIONS, Learn, _old_learn)
        expected = list(_story(cloud))
        assert not any(_REPLAYED)
    got = list(_story(cloud))
    assert [k for k, _ in got] == [k for k, _ in expected]
    for (k, a), (_, b) in zip(got, expected, strict=True):
        assert a == b, k
    assert any(_REPLAYED)  # the new memory answered runs in the world's boot
