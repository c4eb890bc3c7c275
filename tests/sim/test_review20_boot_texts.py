"""review20: guards for simboot18 (a boot skips the bridges' memory of whole inputs and the world's
kept hops; flow step texts formatted when read; a whole-MAC learn's text by substitution).

- Learn actions that copy the whole source into a MAC match of their own, with other parts that
  print a MAC too (a constant MAC match, a MAC read from the packet, ``arp_tha``, ``nd_sll``), a
  cookie, timeouts, table 0, default priority: every learned text equals the flow formatted, when
  the first MAC met is the one printed elsewhere in the flow too (the split waits for a MAC that
  occurs once) and when later MACs are.
- A flow learned again as an equal but distinct object gives the kept text and is learned again
  (``_learn``'s identity test is only a shortcut).
- Re-boots, where equal DHCP frames do come back (a boot after DHCP probes with flood pruning off,
  a second boot, a partial one, a refresh's re-boot) equal a world's that asks and fills every
  memory and formats every text at once: leases, hops, bridges' flows and MAC tables, conntrack,
  probes. The reference world did replay kept hops in those boots (the memory was used there).
- A booted world saved before any hop text was read pickles the texts, not the deferred makers.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Mapping
from typing import Any

import pytest

from neutrino.host.openflow import Learn, format_add_flow
from neutrino.host.openflow_actions import parse_actions
from neutrino.plan import plan_cloud
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim import ovs, trace
from neutrino.sim.cloud import refresh_world, world_of
from neutrino.sim.ovs import OvsBridgeSim
from neutrino.sim.trace import Hop, Step, StepKind
from neutrino.sim.world import World, _new_bridge
from tests.sim.conftest import brought_up
from tests.sim.test_living_world import add_server
from tests.sim.test_simboot8_memories import SEED001, _world_state
from tests.sim.test_simboot18_boot import _nothing_skipped

_COLLIDE = 0xFA163E000001  # printed elsewhere in some of the flows below

_LEARNS = {
    "const-src-match": "learn(table=20,priority=1,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],dl_src=fa:16:3e:00:00:01,"
                       "output:OXM_OF_IN_PORT[])",
    "cookie-timeouts-table0": "learn(table=0,idle_timeout=10,hard_timeout=300,fin_idle_timeout=5,fin_hard_timeout=7,"
                              "priority=32768,cookie=0xfa163e000001,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
                              "load:0xfa163e000001->NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[])",
    "match-src-itself": "learn(table=21,priority=2,NXM_OF_ETH_SRC[],NXM_OF_VLAN_TCI[0..11],load:0->NXM_OF_VLAN_TCI[])",
    "arp-const-tha": "learn(table=22,dl_type=0x806,NXM_NX_ARP_SHA[]=NXM_OF_ETH_SRC[],arp_tha=fa:16:3e:00:00:01,"
                     "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[])",
    "read-tha-too": "learn(table=24,dl_type=0x806,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],NXM_NX_ARP_THA[],"
                    "output:NXM_OF_IN_PORT[])",
    "nd-sll": "learn(table=23,priority=9,NXM_NX_ND_SLL[]=NXM_OF_ETH_SRC[],dl_type=0x86dd,nw_proto=58,icmp_type=135,"
              "output:NXM_OF_IN_PORT[])",
}


def _learn(text: str) -> Learn:
    (action,) = parse_actions(text)
    assert isinstance(action, Learn)
    return action


@pytest.fixture(scope="module")
def seed1_cloud(tmp_path_factory: pytest.TempPathFactory) -> CloudSnapshot:
    return brought_up(SEED001, tmp_path_factory, "review20-seed1")


def _br_tun(world: World) -> OvsBridgeSim:
    host = next(h for h in world.hosts.values() if h.ovs is not None and h.ovs.flows_of("br-tun") is not None)
    return _new_bridge(host, "br-tun")


@pytest.mark.parametrize("name", list(_LEARNS))
def test_whole_mac_learn_texts_equal_the_formatted_flows(seed1_cloud: CloudSnapshot, name: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ovs, "_TEXTS", {})
    bridge = _br_tun(world_of(seed1_cloud, plan_cloud(seed1_cloud)))
    learn = _learn(_LEARNS[name])
    reads = tuple(7 + i for i in range(len(ovs._learn_sources(learn))))
    rec = ovs._SrcLearn(learn, reads, ovs._src_bits(learn))
    assert rec.around is None  # (each of these copies the whole source into a MAC match of its own)
    rng = random.Random(20)
    # the MAC printed elsewhere first (twice in the text: the split waits), the other reads' values
    # as MACs (a fixed arp_tha equal to a later source), edges, random ones, and all of them again
    macs = [_COLLIDE, _COLLIDE, *reads, 0, (1 << 48) - 1, 0x010000000000]
    macs += [rng.randrange(1 << 48) for _ in range(80)]
    macs += macs[:8]
    for src in macs:
        got = rec.learned(bridge, src, ovs._Run())
        assert got == f"learned {format_add_flow(rec.flow(src))}", (name, hex(src))
    assert rec.around  # (split, from a MAC that occurred once)


def test_an_equal_flow_learned_again_as_another_object(seed1_cloud: CloudSnapshot) -> None:
    bridge = _br_tun(world_of(seed1_cloud, plan_cloud(seed1_cloud)))
    learn = _learn(_LEARNS["const-src-match"])
    first, second = ovs._learned_flow(learn, (5, 3)), ovs._learned_flow(learn, (5, 3))
    assert first == second and first is not second
    text = bridge._learn(first, ovs._Run())
    run = ovs._Run()
    assert bridge._learn(second, run) == text == f"learned {format_add_flow(second)}"
    assert len(run.relearned) == 1 and run.relearned[0].flow is first  # (learned again: not installed twice)


def _unread(boot_hops: Mapping[str, list[Hop]]) -> int:
    """The steps of these hops whose text was not made yet."""
    return sum(1 for hops in boot_hops.values() for hop in hops for st in hop.steps
               if type(trace._TEXT_SLOT.__get__(st, Step)) is trace._Later)


def _story(cloud: CloudSnapshot, replays: list[int]) -> list[tuple[str, object]]:
    """Boots where equal DHCP frames come back: after DHCP probes (flood pruning off), again,
    half again, after a refresh; probes after them. ``replays``: kept hops replayed per boot."""
    out: list[tuple[str, object]] = []
    world = world_of(cloud, plan_cloud(cloud))
    world.flood_pruning = False
    guests = sorted(world.guests)
    replay = World._replay
    count = [0]

    def counted(self: World, *args: Any) -> Any:  # noqa: ANN401
        count[0] += 1
        return replay(self, *args)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(World, "_replay", counted)
        for _ in range(2):
            for g in guests:
                out.append((f"dhcp {g}", world.probe(g, "", proto="dhcp")))
        for label, only in (("boot", None), ("again", None), ("half", guests[::2])):
            count[0] = 0
            out.append((label, sorted(world.boot(only).items())))
            replays.append(count[0])
            out.append((f"{label} state", _world_state(world)))
        for g in guests[:3]:
            out.append((f"{g}>8.8.8.8", world.probe(g, "8.8.8.8")))
        bigger = add_server(cloud, "vm9", 9)
        count[0] = 0
        out.append(("refresh", refresh_world(world, bigger, plan_cloud(bigger))))
        replays.append(count[0])
        out.append(("refresh state", _world_state(world)))
        out.append(("vm9>vm1", world.probe("vm9", "vm1")))
    return out


_FOLLOWS_NOTHING = (-3, 0)  # a goal no frame belongs to (neither ARP's nor DHCP's, no port)


def test_reboots_equal_a_world_asking_every_memory(seed1_cloud: CloudSnapshot,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    replays: list[int] = []
    got = _story(seed1_cloud, replays)
    assert replays == [0, 0, 0, 0]  # (a boot keeps and replays no hop)
    reference: list[int] = []
    at_ovs = World._at_ovs
    with _nothing_skipped(monkeypatch), monkeypatch.context() as m:
        # the tree before: a boot's bridge hops asked and filled the memories as a probe's do
        m.setattr(World, "_at_ovs", lambda self, ev, run, goal: at_ovs(self, ev, run, goal or _FOLLOWS_NOTHING))
        want = _story(seed1_cloud, reference)
    assert reference[0] > 0 and reference[1] > 0  # (there, the memories answered those boots)
    assert [k for k, _ in got] == [k for k, _ in want]
    for (k, a), (_, b) in zip(got, want, strict=True):
        assert a == b, k


def test_a_world_saved_before_its_texts_are_read_pickles_the_texts(seed1_cloud: CloudSnapshot,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    world = world_of(seed1_cloud, plan_cloud(seed1_cloud))
    world.boot()
    assert _unread(world.boot_hops) > 0
    hops_blob = pickle.dumps(world.boot_hops)  # (hops alone first: the world's save builds every element)
    loaded = pickle.loads(pickle.dumps(world))
    alone = pickle.loads(hops_blob)
    assert _unread(loaded.boot_hops) == 0 and _unread(alone) == 0
    assert all(type(trace._TEXT_SLOT.__get__(st, Step)) is str
               for hops in alone.values() for hop in hops for st in hop.steps)
    with _nothing_skipped(monkeypatch):
        plain = world_of(seed1_cloud, plan_cloud(seed1_cloud))
        plain.boot()
    want = {g: [str(h) for h in hs] for g, hs in plain.boot_hops.items()}
    assert {g: [str(h) for h in hs] for g, hs in loaded.boot_hops.items()} == want
    assert {g: [str(h) for h in hs] for g, hs in alone.items()} == want
    assert sum(1 for hs in plain.boot_hops.values() for h in hs for st in h.steps if st.kind is StepKind.FLOW) > 0
