"""Issue #17, nineteenth re-plan round (replan19): a spliced host's flood flow for the changed
network, when a changed port's host joins or leaves the network, is its last flood flow with that
host's tunnel port put in or taken out (``ovs_tun._flood_edited``), not made again from the
network's hosts.

The edited flow is the one ``_flood_flow`` makes for the ports then flooded (``==`` and its
add-flow text), on random port sets; the edit is really taken on the bench cloud, for a host
joining and for one leaving, and every host then equals its cold plan (``==``, ``repr``); random
walks (ports and hosts added and removed, tunnels growing and shrinking) equal their cold plans
with the edit taken. Mutations that make a re-plan differ: the ports leaving ignored, the ports
joining ignored."""

from __future__ import annotations

import random
from typing import Any

import pytest

from neutrino.plan import ovs_tun
from neutrino.plan.ovs_int import PlannedFlow
from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit
from tests.plan.test_replan8_previous import CHANGES, _as_the_agents, _cold, _differing
from tests.plan.test_review11_patch import _Maker, _walk

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud

JOINING = "port added, host new to the network"
LEAVING = "a host's only port on a network removed"


@pytest.fixture
def edited(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Each flood flow edited (``_flood_edited`` gave a flow): how many ports joined and left."""
    out: list[tuple[int, int]] = []
    real = ovs_tun._flood_edited

    def counting(flood: PlannedFlow, key: int, joined: list[int], left: list[int]) -> PlannedFlow | None:
        got = real(flood, key, joined, left)
        if got is not None:
            out.append((len(joined), len(left)))
        return got

    monkeypatch.setattr(ovs_tun, "_flood_edited", counting)
    return out


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed{s}")
def test_the_edited_flood_flow_is_the_one_made_for_the_ports(seed: int) -> None:
    rng = random.Random(seed)
    lvid, key, cookie, obj = rng.randint(1, 4094), rng.randint(1, 1 << 20), rng.choice([0, 0x1234]), "network n"
    was = sorted(rng.sample(range(2, 300), rng.randint(1, 40)))
    left = rng.sample(was, rng.randint(0, min(3, len(was))))
    joined = rng.sample(sorted(set(range(2, 300)) - set(was)), rng.randint(0 if left else 1, 3))
    now = sorted((set(was) - set(left)) | set(joined))
    flood = ovs_tun._flood_flow(lvid, key, tuple(was), obj, cookie)
    got = ovs_tun._flood_edited(flood, key, joined, left)
    if not now:
        assert got is None
        return
    made = ovs_tun._flood_flow(lvid, key, tuple(now), obj, cookie)
    assert got is not None and got is not made
    assert got == made and got.text == made.text and repr(got) == repr(made)


def test_an_edit_that_does_not_fit_the_flow_is_refused() -> None:
    """A port leaving that the flow does not flood to, or one joining that it does: no answer (the
    caller plans br-tun's flows again)."""
    flood = ovs_tun._flood_flow(5, 77, (3, 9, 12), "network n", 0)
    assert ovs_tun._flood_edited(flood, 77, [], [4]) is None
    assert ovs_tun._flood_edited(flood, 77, [9], []) is None
    assert ovs_tun._flood_edited(flood, 78, [4], []) is None  # (another tunnel key: not this flow's load)


@pytest.mark.parametrize("change", [JOINING, LEAVING], ids=["joining", "leaving"])
def test_the_edit_is_taken_and_equals_a_cold_plan(cloud: CloudSnapshot, change: str,
                                                  edited: list[tuple[int, int]]) -> None:
    planned, _kept, _before, after = _as_the_agents(cloud, CHANGES[change])
    cold = _cold(after)
    assert _differing(planned, cold) == []
    assert all(repr(planned[h]) == repr(cold[h]) for h in planned)
    assert edited, "the flood flow was never edited: the test proves nothing"
    assert all(e == ((1, 0) if change == JOINING else (0, 1)) for e in edited)


@pytest.mark.parametrize("seed", [1, 2, 5], ids=lambda s: f"seed{s}")
def test_random_walks_equal_cold_plans(seed: int, edited: list[tuple[int, int]]) -> None:
    """replan18's random walks (vxlan, l2population; ports added, removed, moved, unbound; hosts
    added and removed), 60 steps: every step equals its cold plan, with flood flows edited on the
    way (7-18 times in these walks)."""
    assert _walk(_Maker(seed, l2population=True, tenant_network_types=("vxlan",)), 60, agents=True) == []
    assert len(edited) >= 4, "the edit was hardly taken: the walk proves little"


@pytest.mark.parametrize("ignored", ["left", "joined"])
def test_a_port_ignored_is_seen(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch, ignored: str) -> None:
    """Mutations: the edit made without the ports leaving (or joining); the spliced hosts' flood
    flows then still (or never) flood to the changed host, and the re-plan differs."""
    real = ovs_tun._flood_edited

    def partial(flood: PlannedFlow, key: int, joined: list[int], left: list[int]) -> Any:
        return real(flood, key, [] if ignored == "joined" else joined, [] if ignored == "left" else left)

    monkeypatch.setattr(ovs_tun, "_flood_edited", partial)
    planned, _kept, _before, after = _as_the_agents(cloud, CHANGES[LEAVING if ignored == "left" else JOINING])
    assert _differing(planned, _cold(after)) != []
