"""Issue #17, replan18: a host whose tunnel list a change elsewhere grew or shrank (a host new to, or
gone from, one of its networks: every later tunnel port renumbered) is patched from its last plan
rather than planned in full. ``ovs.replanned_flows`` plans its OVS pieces as ``planned_ovs`` would
from the very plugged ports, local VLANs and host side it checked (``ovs._parts``: the new ports
view, every bridge's flows), and ``plan._patched`` puts the new OVSDB view, ``ofctl show`` of each
bridge, ports' and flows' origins in the last state; the firewall, L3 and DHCP planners are not run
again.

Each test counts the path taken (else it proves nothing) and compares with cold plans; the guard is
shown to matter: a patch that keeps the last ports view when the tunnels changed differs from the
cold plan."""

from __future__ import annotations

import dataclasses

import pytest

import neutrino.plan as plan
import neutrino.plan.ovs as ovs
from neutrino.host.state import HostState
from neutrino.plan import hosts_affected_by_change, plan_hosts
from neutrino.plan.generation import PROFILES
from neutrino.scenarios.model import Host
from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit
from tests.plan.test_replan8_previous import CHANGES, _cold, _differing, _names
from tests.plan.test_replan_kept import fresh
from tests.plan.test_review11_patch import _Maker, _walk

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud
patched = replan_kit.patched


@pytest.fixture
def renumbered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts whose OVS pieces ``replanned_flows`` made with other tunnel ports than their last
    plan's (the new path), in order."""
    out: list[str] = []
    real = ovs.replanned_flows

    def counting(cloud: CloudSnapshot, host: Host, last: ovs.OvsParts, **kw: object) -> ovs.OvsParts | None:
        got = real(cloud, host, last, **kw)  # type: ignore[arg-type]
        if got is not None and got.tun_ports != last.tun_ports:
            out.append(host.name)
        return got

    monkeypatch.setattr(ovs, "replanned_flows", counting)
    return out


def _as_the_agents(cloud: CloudSnapshot, change: str) -> tuple[dict[str, HostState], CloudSnapshot]:
    """Every host planned on a fresh ``cloud``, then the change planned as the agents do (the
    touched hosts with ``previous=``, the others kept): every host's plan and the snapshot after."""
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))
    after = CHANGES[change](cloud)
    touched = hosts_affected_by_change(before, after)
    assert touched is not None
    plans.update(plan_hosts(after, touched, previous=before))
    return plans, after


@pytest.mark.parametrize("change", ["port added, host new to the network", "a host's only port on a network removed"],
                         ids=str)
def test_hosts_whose_tunnels_changed_are_patched(cloud: CloudSnapshot, change: str, renumbered: list[str],
                                                 patched: list[str]) -> None:
    """The bench cloud: a host joining a network gives some of the network's hosts a new tunnel, one
    leaving its last shared network takes one away; those hosts are patched with their new ports
    view (not planned in full), and every host equals its cold plan (``==`` and ``repr``)."""
    plans, after = _as_the_agents(cloud, change)
    assert renumbered, "no host's tunnels changed: the test proves nothing"
    assert set(renumbered) <= set(patched)
    cold = _cold(after)
    assert _differing(plans, cold) == []
    assert all(repr(plans[h]) == repr(cold[h]) for h in renumbered)


def test_the_renumbered_pieces_are_those_of_a_plan_in_full(cloud: CloudSnapshot, renumbered: list[str]) -> None:
    """The OVS pieces the new path gives equal those ``planned_ovs`` makes of the same snapshot with
    everything kept forgotten (the ports view, every bridge's flows and their origins)."""
    _plans, after = _as_the_agents(cloud, "port added, host new to the network")
    assert renumbered
    got = {h: plan._LAST[h].parts for h in renumbered}
    replan_kit.forget_all()
    cold = fresh(after)
    for h in renumbered:
        me = next(x for x in cold.deployment.hosts if x.name == h)
        _frag, full = ovs.planned_ovs(cold, me, generation=PROFILES[cold.deployment.generation], uplinks=me.uplinks)
        assert got[h].view == full.view and got[h].tun == full.tun
        assert got[h].flows.dumps == full.flows.dumps and got[h].flows.origins == full.flows.origins


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_walks_with_tunnels_growing_and_shrinking_equal_cold_plans(seed: int, renumbered: list[str]) -> None:
    """The review's random walks (ports added, removed, moved, unbound; hosts added and removed;
    other changes; the agents' way and every host, statuses, two chains): every step equals its
    cold plan, and hosts were patched with changed tunnels many times."""
    assert _walk(_Maker(seed, l2population=True, tenant_network_types=("vxlan",)), 30, agents=True) == []
    assert len(renumbered) >= 5, "the new path was hardly taken: the walk proves little"


def test_the_last_ports_view_kept_is_caught(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch,
                                            renumbered: list[str]) -> None:
    """Mutation: a host whose tunnels changed patched with its last ports view (the OVSDB view,
    ``ofctl show`` and the ports' origins of before): its new tunnel port and the moved numbers are
    missing, and the re-plan differs from the cold plan."""
    real = ovs.replanned_flows

    def stale_view(cloud: CloudSnapshot, host: Host, last: ovs.OvsParts, **kw: object) -> ovs.OvsParts | None:
        got = real(cloud, host, last, **kw)  # type: ignore[arg-type]
        return dataclasses.replace(got, view=last.view) if got is not None and got.view is not last.view else got

    monkeypatch.setattr(ovs, "replanned_flows", stale_view)
    plans, after = _as_the_agents(cloud, "port added, host new to the network")
    assert renumbered
    assert _differing(plans, _cold(after)) != []
