"""Review of simboot20 (issue #17) past a first boot: its memories (the options resolved per named
tags, the header memory's tables checked once per bridge version) in a world that lives on.

simboot20's tests compare one boot with a boot that checks everything. Here, on the 40-instance
VXLAN cloud, a booted world is pickled and loaded (the memories are not pickled: they must be
made again right), then booted again (the bridges' tables now hold learned flows, and every
guest's DHCP meets the memories' entries again), and probed: pings and TCP between guests on one
host and across hosts, a DHCP probe, an ARP probe, a frame to an unknown MAC (NORMAL floods it:
no DHCP pruning then), each with its reply. Every answer, leases and traces (``repr``: every hop,
frame and step), and the bridges' MAC tables and learned flows afterwards, equal those of the same
story in a world that resolves every client's options with all its tags and checks every header
memory entry's tables at every replay (simboot20's reference). (This cloud's options name no
port's tag and its guests stay where they are, so the two shortcuts' mutants, simboot20's, give
this story unchanged: they are caught by test_simboot20_pieces and test_review22_dhcp; this test
guards the memories' life past a boot: a load, a second boot, probes.)"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from neutrino.sim import services
from neutrino.sim.world import World
from tests.sim.test_simboot8_memories import _state
from tests.sim.test_simboot15_macs import (  # noqa: F401 - cloud40: a fixture
    _bridge_names,
    cloud40,
    world_of_cloud,
)
from tests.sim.test_simboot16_dhcp_hooks import _namespace_tables
from tests.sim.test_simboot20_pieces import _checking_everything


def _story(world: World) -> list[str]:
    """A booted world pickled and loaded, booted again and probed: what each step answered."""
    bridges = _bridge_names(world)  # (a loaded world holds no host's state to list them by)
    world = pickle.loads(pickle.dumps(world))
    out = [repr(world.boot())]
    names = sorted(world.guests)
    hosts = {n: world.specs[n].host for n in names}
    a = names[0]
    same = next(n for n in names[1:] if hosts[n] == hosts[a])
    far = next(n for n in names[1:] if hosts[n] != hosts[a])
    for src, dst in ((a, same), (a, far), (far, a), (same, far)):
        out.append(repr(world.probe(src, dst)))
        out.append(repr(world.probe(src, dst, proto="tcp", dport=22)))
    out.append(repr(world.probe(far, a, proto="dhcp")))
    prefix = str(world.guests[a].ip).rsplit(".", 1)[0]
    guest_ip = next(str(world.guests[n].ip) for n in names[1:] if str(world.guests[n].ip).startswith(prefix + "."))
    out.append(repr(world.probe(a, guest_ip, proto="arp")))
    out.append(repr(world.probe(a, guest_ip, dst_mac="fa:16:3e:ee:ee:ee")))
    out.append(repr(world.boot(only=[a, far])))
    out.append(repr([(h, b, _state(world.bridge(h, b))) for h, b in bridges]))
    out.append(repr(_namespace_tables(world)))
    return out


def test_a_loaded_world_booted_again_and_probed_equals_one_that_checks_everything(
        cloud40: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN401, F811
    services._RESOLVED.clear()
    services._OPTIONS.clear()
    world = world_of_cloud(cloud40)
    leases = world.boot()
    assert len(leases) == 40 and all(leases.values())
    got = _story(world)
    with _checking_everything(monkeypatch):
        plain = world_of_cloud(cloud40)
        assert plain.boot() == leases
        want = _story(plain)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, k
    assert all("VerdictKind.DELIVERED" in got[k] for k in (1, 3, 5, 7, 9))  # (the pings and the DHCP probe)
    assert "VerdictKind.DELIVERED" in got[10]  # (the ARP probe: answered on the guests' network)
