"""Round eighteen's boot speed-up (issue #17) gives what the work it skips gives.

Four shortcuts. (1) A boot asks no bridge for its memory of whole inputs and keeps no hop for
the world to replay (each guest's DHCP messages are its own: neither ever paid in a boot). (2) A
flow step's text is formatted when first read (most of a boot's hop records never are). (3) The
flow br-tun learns from a new MAC gets its text from another MAC's, the MAC put in its place,
when the learn action copies the whole source into a MAC match of its own (``_whole_mac_match``).
(4) The world's flood index for a guest's own port is built by comprehensions, MACs behind two
ports included. A 40-instance boot equals one with all four turned off (leases, hops and their
frames, MAC tables, learned flows and the flows in lookup order, every namespace's connections);
the learned texts equal the formatted ones for random MACs, and without the guard a learn that
also loads the source gives a wrong text; the flood index equals :meth:`World._not_for`'s answer
port by port.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from neutrino.host.openflow import Learn, format_add_flow
from neutrino.host.openflow_actions import parse_actions
from neutrino.host.openflow_fields import Mac
from neutrino.sim import ovs, trace
from neutrino.sim.guest import Guest
from neutrino.sim.ovs import OvsBridgeSim
from neutrino.sim.ovs_normal import Kept
from neutrino.sim.topology import End, Kind
from neutrino.sim.trace import Step, StepKind, new_step
from neutrino.sim.world import World, _new_bridge
from tests.sim import test_simboot8_memories
from tests.sim.test_simboot15_macs import _world_state, cloud40, world_of_cloud  # noqa: F401 - a fixture
from tests.sim.test_simboot16_dhcp_hooks import _namespace_tables

tunnel_world = test_simboot8_memories.tunnel_world  # (its fixture, this module's by this name: seed 001)

_BR_TUN = ("learn(table=20,hard_timeout=300,priority=1,cookie=0x9c7a,NXM_OF_VLAN_TCI[0..11],"
           "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
           "output:OXM_OF_IN_PORT[])")
_TWICE = "learn(table=21,priority=3,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_ETH_SRC[0..31]->NXM_NX_REG0[])"
_PART = "learn(table=22,priority=3,NXM_OF_ETH_DST[0..23]=NXM_OF_ETH_SRC[0..23],output:OXM_OF_IN_PORT[])"
_INTO_LOAD = "learn(table=23,priority=3,NXM_OF_VLAN_TCI[0..11],load:NXM_OF_ETH_SRC[]->NXM_NX_XXREG0[0..47])"


def _learn(text: str) -> Learn:
    (action,) = parse_actions(text)
    assert isinstance(action, Learn)
    return action


def _record(learn: Learn) -> ovs._SrcLearn:
    """The action as a run that read the source keeps it: fixed values for its other reads."""
    reads = tuple(7 + i for i in range(len(ovs._learn_sources(learn))))
    return ovs._SrcLearn(learn, reads, ovs._src_bits(learn))


def _macs(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    edges = [0, 0xFFFFFFFFFFFF, 0x010000000000, 0xFA163E000001, 0x000000000001]
    return edges + [rng.randrange(1 << 48) for _ in range(n)] + edges


def _check_texts(bridge: OvsBridgeSim, rec: ovs._SrcLearn, macs: list[int]) -> None:
    for src in macs:
        got = rec.learned(bridge, src, ovs._Run())
        assert got == f"learned {format_add_flow(rec.flow(src))}", Mac(src)


@contextmanager
def _formatted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """The flows the bridges' code formats (``ovs.format_add_flow``), in order."""
    made: list[object] = []

    def counted(flow: Any) -> str:  # noqa: ANN401
        made.append(flow)
        return format_add_flow(flow)
    with monkeypatch.context() as m:
        m.setattr(ovs, "format_add_flow", counted)
        yield made


def _br_tun(world: World) -> OvsBridgeSim:
    host = next(h for h in world.hosts.values() if h.ovs is not None and h.ovs.flows_of("br-tun") is not None)
    return _new_bridge(host, "br-tun")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_learned_flows_text_from_another_macs_is_the_formatted_one(tunnel_world: World, seed: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """br-tun's learn action: every MAC's text (new flows and flows learned again) equals the
    flow formatted; only the first MAC's flow was formatted, the others' texts come from its."""
    monkeypatch.setattr(ovs, "_TEXTS", {})
    bridge = _br_tun(tunnel_world)
    rec = _record(_learn(_BR_TUN))
    with _formatted(monkeypatch) as made:
        _check_texts(bridge, rec, _macs(seed, 200))
    assert rec.around and made == [rec.flow(0)]


@pytest.mark.parametrize("text", [_TWICE, _PART, _INTO_LOAD], ids=["twice", "part", "into-load"])
def test_a_learn_not_copying_the_whole_source_into_one_mac_match_formats_each_flow(
        tunnel_world: World, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ovs, "_TEXTS", {})
    bridge = _br_tun(tunnel_world)
    rec = _record(_learn(text))
    assert rec.around == ()  # (the guard: never split)
    macs = _macs(3, 60)
    with _formatted(monkeypatch) as made:
        _check_texts(bridge, rec, macs)
    assert len(made) == len({m & ((1 << 24) - 1) if text == _PART else m for m in macs})  # (each flow once)


def test_without_the_guard_a_learn_loading_the_source_too_gets_a_wrong_text(tunnel_world: World,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ovs, "_whole_mac_match", lambda learn, bits: True)
    bridge = _br_tun(tunnel_world)
    rec = _record(_learn(_TWICE))
    with pytest.raises(AssertionError):
        _check_texts(bridge, rec, _macs(4, 20))


# -- a world's boot ----------------------------------------------------------------------------------------


@contextmanager
def _nothing_skipped(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A world whose boot asks the bridges' memory of whole inputs (and fills it), formats every
    flow step's text at once and every learned flow's anew."""
    process = OvsBridgeSim.process
    with monkeypatch.context() as m:
        m.setattr(OvsBridgeSim, "process", lambda self, *a, remember=True, **k: process(self, *a, **k))
        m.setattr(ovs._Compiled, "step", lambda self, detail: new_step(StepKind.FLOW, self.text, detail, ""))
        m.setattr(ovs._SrcLearn, "learned", lambda self, bridge, src, run: bridge._learn(self.flow(src), run))
        m.setattr(ovs, "_learned_text", lambda flow: f"learned {format_add_flow(flow)}")
        yield


def _unformatted(world: World) -> int:
    """The flow steps of the boot's hops whose text was not read yet."""
    return sum(1 for hops in world.boot_hops.values() for hop in hops for st in hop.steps
               if st.kind is StepKind.FLOW and type(trace._TEXT_SLOT.__get__(st, Step)) is trace._Later)


def test_a_boot_equals_one_that_skips_nothing(cloud40: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN401, F811
    """Leases, every hop (and the frame each met), MAC tables, learned flows, the flows in lookup
    order and every namespace's connection table equal a boot's that skips nothing; the boot
    left no whole input in any bridge's memory and no hop to replay, and most of its flow steps'
    texts unformatted until read."""
    world = world_of_cloud(cloud40)
    names = list(world.guests)
    world.boot(only=names[:20])  # (one guest on each network of each compute: the runs the others replay)
    installs: list[object] = []
    install = OvsBridgeSim._install
    with _formatted(monkeypatch) as made, monkeypatch.context() as m:
        m.setattr(OvsBridgeSim, "_install", lambda self, flow: installs.append(flow) or install(self, flow))
        leases = world.boot(only=names[20:])
    assert len(leases) == 40 and all(leases.values())
    assert not world._done
    assert all(not any(isinstance(k, tuple) for k in world.bridge(h, b)._memo)
               for h, b in test_simboot8_memories._bridges(world))
    ids = {id(f) for f in installs}
    formatted = sum(1 for f in made if id(f) in ids)
    assert len(installs) >= 20 * 4 and formatted * 4 < len(installs)  # (a DISCOVER learned by 4 hosts' br-tun, or 5)
    assert _unformatted(world) >= 40  # (each guest's own port's flows, at least)
    with _nothing_skipped(monkeypatch):
        plain = world_of_cloud(cloud40)
        plain.boot(only=names[:20])
        assert plain.boot(only=names[20:]) == leases
        assert _unformatted(plain) == 0
    assert _world_state(world) == _world_state(plain)
    assert _namespace_tables(world) == _namespace_tables(plain)
    assert _unformatted(world) == 0  # (compared: every text read)


def test_the_flood_index_answers_as_not_for_does(cloud40: Any) -> None:  # noqa: ANN401, F811
    """For random flooded port lists of every compute's br-int (a guest's MAC behind two ports
    too), and DHCP broadcasts from every guest and from an unknown MAC: the copies the index
    keeps are those :meth:`World._not_for` follows."""
    world = world_of_cloud(cloud40)
    world.boot()
    rng = random.Random(18)
    hosts = sorted({spec.host for spec in world.specs.values()})
    for host in hosts:
        mine = [n for n, spec in world.specs.items() if spec.host == host]
        world.guests[mine[1]].mac = world.guests[mine[0]].mac  # (two ports, one MAC)
        world._pruners.clear()
        ports = [p.name for p in world.bridge(host, "br-int").ports]
        unfollowed = world._unfollowed(host, "br-int")
        frames = [world.guests[n].discover() for n in mine] + [Guest("x", Mac(0xFA163EFFFFFF)).discover()]
        for _ in range(30):
            names = tuple(rng.sample(ports, rng.randrange(1, len(ports) + 1)))
            for frame in frames:
                got = unfollowed(frame, names)
                assert type(got) is Kept and got.names is names
                want = {p for p in names if world._not_for(End(Kind.OVS, host, "br-int", p), frame)}
                assert set(got) == want
                assert set(unfollowed(frame, list(names))) == want  # (not a tuple: the set's way)
