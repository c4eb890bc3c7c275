"""Round twenty-one's boot speed-up (issue #17): a boot builds no copy that leads nowhere.

NORMAL floods each guest's DHCP broadcast to br-int's own LOCAL port on every compute it
crosses, and :meth:`World._at_ovs` drops that copy at once (no tunnel, nothing wired to the
port). A boot's pruner (``World._unfollowed(..., nowhere=True)``) leaves such copies out, as it
leaves out the copies into other guests' ports. :meth:`World._leads_nowhere` is where
:meth:`World._out_of` sends nothing; a boot that builds no copy into a LOCAL port equals one that
builds every copy (leases, hops and their frames and steps' texts, MAC tables, learned flows,
flows in lookup order, every namespace's connections), in random batches; a guard that takes
wired ports for dead ends loses the guests behind them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from neutrino.sim.ovs import OvsBridgeSim
from neutrino.sim.topology import End, Kind
from neutrino.sim.world import _PLAIN, World
from tests.sim.test_simboot15_macs import (  # noqa: F401 - cloud40: a fixture
    _bridge_names,
    _world_state,
    cloud40,
    world_of_cloud,
)
from tests.sim.test_simboot16_dhcp_hooks import _namespace_tables


@contextmanager
def _counting_local_copies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the bridges that built a copy into their own LOCAL port (one per copy)."""
    emit = OvsBridgeSim._emit
    local: list[str] = []

    def counting(self: OvsBridgeSim, ctx: Any, port: Any, run: Any, frame: Any = None) -> None:  # noqa: ANN401
        if port.name == self.bridge.name:
            local.append(self.bridge.name)
        emit(self, ctx, port, run, frame)

    with monkeypatch.context() as m:
        m.setattr(OvsBridgeSim, "_emit", counting)
        yield local


def _steps(world: World) -> list[list[tuple[object, str, str]]]:
    return [[(st.kind, st.text, st.detail) for h in hops for st in h.steps] for hops in world.boot_hops.values()]


def test_nowhere_is_where_a_copy_goes_nowhere(cloud40: Any) -> None:  # noqa: ANN401, F811
    """Every port of every bridge: it leads nowhere exactly when :meth:`World._out_of` gives no
    tunnel and no far end; each compute's br-int LOCAL port is one, no tunnel port is."""
    world = world_of_cloud(cloud40)
    nowhere = []
    for host, bridge in _bridge_names(world):
        for port in world.bridge(host, bridge).ports:
            end = End(Kind.OVS, host, bridge, port.name)
            _, tun, far, _, _ = world._out_of(host, bridge, port.name, _PLAIN)
            assert world._leads_nowhere(end) == (tun is None and far is None), end
            if world._leads_nowhere(end):
                nowhere.append((host, bridge, port.name))
    computes = {h for h, b in _bridge_names(world) if b == "br-int"} - set(world.network_hosts)
    assert {(h, "br-int", "br-int") for h in computes} <= set(nowhere)
    assert not [n for n in nowhere if n[2].startswith(("vxlan-", "gre-", "patch-"))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_boot_equals_one_that_builds_every_copy(cloud40: Any, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN401, F811
                                                  seed: int) -> None:
    """The guests booted in the same random batches: leases, every hop (its frame and its steps'
    texts), MAC tables, learned flows, the flows in lookup order and every namespace's connection
    table equal a boot that builds every flooded copy. The boot builds no copy into a LOCAL port;
    the full one builds more than one per guest."""
    rng = random.Random(seed)
    names = list(world_of_cloud(cloud40).guests)
    rng.shuffle(names)
    cuts = sorted(rng.sample(range(1, len(names)), 2))
    batches = [names[:cuts[0]], names[cuts[0]:cuts[1]], names[cuts[1]:]]
    world = world_of_cloud(cloud40)
    with _counting_local_copies(monkeypatch) as local:
        leases = [world.boot(only=b) for b in batches]
    assert all(leases[-1].values()) and len(leases[-1]) == 40
    assert local == []
    full = world_of_cloud(cloud40)
    with monkeypatch.context() as m, _counting_local_copies(monkeypatch) as full_local:
        m.setattr(World, "_leads_nowhere", lambda self, end: False)
        assert [full.boot(only=b) for b in batches] == leases
    assert len(full_local) > 40 and set(full_local) == {"br-int"}
    assert _world_state(world) == _world_state(full)
    assert _namespace_tables(world) == _namespace_tables(full)
    assert _steps(world) == _steps(full)


def test_wired_ports_taken_for_dead_ends_lose_the_guests_behind_them(cloud40: Any,  # noqa: ANN401, F811
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard without its wiring test (every port but a tunnel's taken for a dead end): the
    DHCP broadcasts no longer reach br-tun through the patch ports, so guests go without a lease."""
    full = world_of_cloud(cloud40)
    with monkeypatch.context() as m:
        m.setattr(World, "_leads_nowhere", lambda self, end: False)
        leases = full.boot()
    assert all(leases.values())
    world = world_of_cloud(cloud40)
    monkeypatch.setattr(World, "_leads_nowhere", lambda self, end: self.topo.tunnel_at(end) is None)
    assert world.boot() != leases
