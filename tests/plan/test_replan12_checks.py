"""Issue #17, twelfth round (replan12): two checks of a patched host made cheaper, exactly.

- ``ovs.replanned_flows`` takes the local VLANs of the host's last plan when its plugged ports are
  the very tuple of that plan (carried by ``carry_from``): ``local_vlans`` reads nothing else.
- ``ovs_tun._derived_tunnels`` looks, on a changed network, only at the changed ports' hosts (the
  only ones that can join or leave it in a ports-only change) instead of every host on it.

Every kind of change planned the agents' way equals a cold plan; the shortcuts are really taken;
the reduced tunnel check agrees with the full one on every host asked; and with the changed
ports' hosts left out of the record (the shortcut applied where it must not look away), a
re-plan differs from the cold plan."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import neutrino.plan as plan
from neutrino.plan import hosts_affected_by_change, ovs, ovs_tun, plan_hosts
from neutrino.plan.generation import PROFILES
from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit
from tests.plan.test_replan6_carried import _first_removed
from tests.plan.test_replan8_previous import (
    CHANGES,
    _added_known_host,
    _added_new_host_on_net,
    _as_the_agents,
    _cold,
    _differing,
    _names,
)
from tests.plan.test_replan_kept import fresh

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud
patched = replan_kit.patched


@pytest.fixture
def vlans_asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts ``ovs.local_vlans`` was asked about, in order."""
    asked: list[str] = []
    real = ovs.local_vlans

    def counting(ctx: ovs.OvsContext) -> tuple[ovs.LocalVlan, ...]:
        asked.append(ctx.host.name)
        return real(ctx)

    monkeypatch.setattr(ovs, "local_vlans", counting)
    return asked


@pytest.fixture
def disagreements(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """(hosts where the reduced tunnel check and the full one (every host of a changed network,
    as before this round) disagree, hosts the check was asked about with a record to go by)."""
    wrong: list[str] = []
    asked: list[str] = []
    real = ovs_tun._derived_tunnels

    def both(ctx: ovs_tun.OvsContext, key: tuple[object, ...], vlans: tuple[ovs_tun.LocalVlan, ...]
             ) -> ovs_tun._HostTunnels | None:
        got = real(ctx, key, vlans)
        full = _full_check(ctx, key, vlans)
        if full is not None:
            asked.append(ctx.host.name)
            if full != (got is not None):
                wrong.append(ctx.host.name)
        return got

    monkeypatch.setattr(ovs_tun, "_derived_tunnels", both)
    return wrong, asked


def _full_check(ctx: ovs_tun.OvsContext, key: tuple[object, ...], vlans: tuple[ovs_tun.LocalVlan, ...]
                ) -> bool | None:
    """Whether the host's tunnels may be derived, by the full check (None: no record to go by)."""
    before = ctx.cloud._index.get(("@tunnels_before",))  # type: ignore[call-overload]
    if before is None:
        return None
    dirty, entries, by_nets = before[0], before[1], before[2]
    old = entries.get(ctx.host.name)
    old_by_net = by_nets.get((ctx.prof, ctx.external_bridge))
    if old is None or old.key != key or old.sharing is None or old_by_net is None:
        return None
    by_net = ovs_tun._by_network(ctx)
    for t, sharing in old.sharing.items():
        of_type = [v.network_id for v in vlans if v.segment.network_type == t]
        for n in of_type:
            if n not in dirty:
                continue
            now = by_net.get(n, {}).keys()
            if not now <= sharing:
                return False
            for gone in old_by_net.get(n, {}).keys() - now:
                if not any(gone in by_net.get(m, ()) for m in of_type):
                    return False
    return True


@pytest.mark.parametrize("change", list(CHANGES), ids=str)
def test_the_agents_replan_equals_a_cold_plan(cloud: CloudSnapshot, change: str,
                                               disagreements: tuple[list[str], list[str]]) -> None:
    planned, _kept, _before, after = _as_the_agents(cloud, CHANGES[change])
    assert _differing(planned, _cold(after)) == []
    assert disagreements[0] == []


@pytest.mark.parametrize("change", list(CHANGES), ids=str)
def test_every_host_with_previous_equals_a_cold_plan(cloud: CloudSnapshot, change: str,
                                                     disagreements: tuple[list[str], list[str]]) -> None:
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    after = CHANGES[change](cloud)
    planned = plan_hosts(after, _names(after), previous=before)
    assert _differing(planned, _cold(after)) == []
    assert disagreements[0] == []


@pytest.mark.parametrize("change", [_added_new_host_on_net, _added_known_host, _first_removed], ids=lambda f: f.__name__)
def test_the_tunnel_check_agrees_where_it_is_asked(cloud: CloudSnapshot, change: Callable[[CloudSnapshot], CloudSnapshot],
                                                   disagreements: tuple[list[str], list[str]]) -> None:
    """(The comparison above proves something: the check is asked, with a record, on these changes.)"""
    _as_the_agents(cloud, change)
    wrong, asked = disagreements
    assert asked and wrong == []


def test_the_vlans_shortcut_is_taken(cloud: CloudSnapshot, patched: list[str], vlans_asked: list[str]) -> None:
    """A patched host's local VLANs are its last plan's: ``local_vlans`` is not asked for it."""
    asked = vlans_asked
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    asked.clear()
    after = _added_known_host(cloud)
    touched = hosts_affected_by_change(before, after)
    assert touched is not None
    planned = plan_hosts(after, touched, previous=before)
    assert patched, "nothing patched: the test proves nothing"
    assert not set(patched) & set(asked)
    assert _differing(planned, {h: s for h, s in _cold(after).items() if h in planned}) == []


def test_the_vlans_shortcut_needs_the_very_ports(cloud: CloudSnapshot, vlans_asked: list[str]) -> None:
    """On a snapshot not carried from the last one (equal ports, other objects) the local VLANs are
    asked again, not the last plan's taken; and a host that lost its only port on a network gets no
    patch."""
    asked = vlans_asked
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    dep = cloud.deployment
    prof = PROFILES[dep.generation]
    host = dep.hosts[1]
    last = plan._LAST[host.name]
    asked.clear()
    again = ovs.replanned_flows(fresh(cloud), host, last.parts, generation=prof, datapath_type="system",
                                uplinks=host.uplinks)
    assert asked == [host.name] and again is not None and again.vlans == last.parts.vlans
    after = CHANGES["a host's only port on a network removed"](cloud)
    gone = {p.binding_host for p in before.ports if p not in after.ports}
    host = next(h for h in dep.hosts if h.name in gone)
    got = ovs.replanned_flows(after, host, plan._LAST[host.name].parts, generation=prof, datapath_type="system",
                              uplinks=host.uplinks)
    assert got is None
    state = plan_hosts(after, [host.name])[host.name]
    assert state == _cold(after)[host.name]


@pytest.mark.parametrize("change", [_added_new_host_on_net, _first_removed], ids=lambda f: f.__name__)
def test_the_changed_hosts_left_out_is_seen(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch,
                                            change: Callable[[CloudSnapshot], CloudSnapshot]) -> None:
    """Mutation: the record without the changed ports' hosts (the reduced check then looks at no
    host): a host new to a network (or one leaving its last shared network) gives the others no
    new tunnel (or keeps the old one), and the re-plan differs from the cold plan."""
    real = ovs_tun.carry_index

    def blind(before: CloudSnapshot, after: CloudSnapshot, *args: object, **kwargs: object) -> None:
        real(before, after, *args, **kwargs)  # type: ignore[arg-type]
        rec = after._index.get(("@tunnels_before",))  # type: ignore[call-overload]
        if rec is not None:
            after._index[("@tunnels_before",)] = (*rec[:3], frozenset())  # type: ignore[index]
    monkeypatch.setattr(ovs_tun, "carry_index", blind)
    planned, _kept, _before, after = _as_the_agents(cloud, change)
    assert _differing(planned, _cold(after))
