"""Round twenty-two's boot speed-up (issue #17): a learned flow made from an earlier one.

br-tun's learn action copies a frame's whole source MAC into the ``dl_dst`` match of the flow it
learns; the other values it reads are the same for every guest behind one tunnel. So when a
header memory entry (:class:`neutrino.sim.ovs._SrcLearn`) runs the action again for a new MAC,
the flow is the one it learned before with that match's MAC replaced
(``_learned_of(..., like)``), not worked out from the action's specs again. The flows so made
equal the specs' (every learn action of the 40-instance cloud, random MACs); a boot in random
batches equals one that works out every flow from the specs (leases, hops and their frames and
steps' texts, MAC tables, learned flows, flows in lookup order, every namespace's connections),
and makes flows the short way.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from neutrino.host.openflow import Flow, Learn
from neutrino.sim import ovs
from neutrino.sim.world import World
from tests.sim.test_simboot15_macs import (  # noqa: F401 - cloud40: a fixture
    _bridge_names,
    _world_state,
    cloud40,
    world_of_cloud,
)
from tests.sim.test_simboot16_dhcp_hooks import _namespace_tables
from tests.sim.test_simboot21_nowhere import _steps


def _forget_learned() -> None:
    """Empty the module's memories of learned flows, so each world learns its own."""
    ovs._LEARNED.clear()
    ovs._LEARN_KEYS.clear()
    ovs._TEXTS.clear()


@contextmanager
def _counting(monkeypatch: pytest.MonkeyPatch, *, from_specs: bool) -> Iterator[dict[str, int]]:
    """Counts of the learned flows made from the specs and from an earlier flow; ``from_specs``:
    every one made from the specs (the earlier flow not handed on)."""
    learned_of, learned_flow = ovs._learned_of, ovs._learned_flow
    counts = {"specs": 0, "like": 0}

    def of(learn: Learn, reads: tuple[int, ...], like: Any = None) -> Flow:  # noqa: ANN401
        if from_specs:
            like = None
        made = ovs._LEARNED.get((id(learn), reads), (None,))[0] is not learn  # (not remembered)
        before = counts["specs"]
        flow = learned_of(learn, reads, like)
        if made and counts["specs"] == before:
            counts["like"] += 1
        return flow

    def flow_of(learn: Learn, reads: Any) -> Flow:  # noqa: ANN401
        counts["specs"] += 1
        return learned_flow(learn, reads)

    with monkeypatch.context() as m:
        m.setattr(ovs, "_learned_of", of)
        m.setattr(ovs, "_learned_flow", flow_of)
        yield counts


def _learns(world: World) -> list[Learn]:
    """Every learn action in the world's bridges' flows (each once)."""
    found: dict[int, Learn] = {}
    for host, name in _bridge_names(world):
        for table in world.bridge(host, name)._tables.values():
            for c in table.flows():
                for a in c.flow.actions:
                    if isinstance(a, Learn):
                        found.setdefault(id(a), a)
    return list(found.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flows_made_from_an_earlier_one_equal_the_specs(cloud40: Any, seed: int) -> None:  # noqa: ANN401, F811
    """Each learn action that copies the whole source into a MAC match: random reads for a first
    flow, then random MACs; the flow made from the first one equals the one the specs give (and
    a wrong match position gives another)."""
    rng = random.Random(seed)
    world = world_of_cloud(cloud40)
    learns = [a for a in _learns(world) if ovs._whole_mac_match(a, ovs._src_bits(a))]
    assert learns
    for learn in learns:
        bits = ovs._src_bits(learn)
        i = bits[0][0]
        n = len(ovs._learn_sources(learn))
        reads = tuple(rng.randrange(1 << 12) for _ in range(n))
        first = ovs._learned_flow(learn, reads)
        k = ovs._mac_match_at(learn, i)
        assert first.match[k] == ovs.EthMatch("dl_dst", ovs.Mac(reads[i]))
        for _ in range(20):
            mac = rng.randrange(1 << 48)
            new = reads[:i] + (mac,) + reads[i + 1:]
            _forget_learned()
            made = ovs._learned_of(learn, new, (first, k, i))
            assert made == ovs._learned_flow(learn, new)
            if len(first.match) > 1 and mac != reads[i]:
                _forget_learned()
                wrong = ovs._learned_of(learn, new, (first, (k + 1) % len(first.match), i))
                assert wrong != ovs._learned_flow(learn, new)
    _forget_learned()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_boot_equals_one_that_works_out_every_learned_flow(cloud40: Any, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN401, F811
                                                             seed: int) -> None:
    """The guests booted in the same random batches, learned flows made from earlier ones or all
    from the specs: leases, every hop (its frame and its steps' texts), MAC tables, learned flows,
    flows in lookup order and every namespace's connections are equal. The boot makes flows the
    short way, each in place of one the full boot makes from the specs."""
    rng = random.Random(seed)
    names = list(world_of_cloud(cloud40).guests)
    rng.shuffle(names)
    cuts = sorted(rng.sample(range(1, len(names)), 2))
    batches = [names[:cuts[0]], names[cuts[0]:cuts[1]], names[cuts[1]:]]
    _forget_learned()
    world = world_of_cloud(cloud40)
    with _counting(monkeypatch, from_specs=False) as fast:
        leases = [world.boot(only=b) for b in batches]
    assert all(leases[-1].values()) and len(leases[-1]) == 40
    _forget_learned()
    full = world_of_cloud(cloud40)
    with _counting(monkeypatch, from_specs=True) as slow:
        assert [full.boot(only=b) for b in batches] == leases
    _forget_learned()
    assert slow["like"] == 0 and fast["like"] > 0
    assert fast["specs"] + fast["like"] == slow["specs"]
    assert _world_state(world) == _world_state(full)
    assert _namespace_tables(world) == _namespace_tables(full)
    assert _steps(world) == _steps(full)
