"""Issue #17, ninth round (replan9): a host whose plan on the previous snapshot is known and whose
only difference on the next one can be br-tun's flows (a port added, removed, moved or changed on
another host, on a network it shares) is planned by patching its last plan (``plan._patched``):
its flows joined again with br-tun's re-planned, the rest of its state kept.

Every kind of change planned the agents' way (and every host planned with ``previous=``) equals a
cold plan; the patch really is taken for the port changes (else this proves nothing); and with the
guard that keeps it from a change the firewall of other hosts reads (a remote group's members)
removed, a re-plan differs from the cold plan."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

import neutrino.plan as plan
from neutrino.host.state import HostState
from neutrino.plan import hosts_affected_by_change, plan_hosts
from neutrino.services.snapshot import CloudSnapshot, Port, SecurityGroupRule
from tests.plan.benchmod import plan_bench
from tests.plan.test_replan8_previous import (
    CHANGES,
    _added_known_host,
    _added_new_host_on_net,
    _as_the_agents,
    _cold,
    _differing,
    _names,
    _new_port,
)
from tests.plan.test_replan_kept import forget_everything, fresh

#: the changes that are ports alone, none of them a router's or DHCP's: the patch must be taken
PATCHED = ("port added, host new to the network", "port added, host known", "port removed",
           "a host's only port on a network removed", "port moved", "MAC and address changed", "port down")


@pytest.fixture(scope="module")
def cloud() -> CloudSnapshot:
    return plan_bench().build(12, 30, 8)  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _cleared() -> Iterator[None]:
    forget_everything()
    plan._LAST.clear()
    yield
    forget_everything()
    plan._LAST.clear()


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts planned by a patch (``plan._patched`` returned a state)."""
    out: list[str] = []
    real = plan._patched

    def counting(cloud: CloudSnapshot, me: object, *args: object) -> HostState | None:
        state = real(cloud, me, *args)  # type: ignore[arg-type]
        if state is not None:
            out.append(state.name)
        return state

    monkeypatch.setattr(plan, "_patched", counting)
    return out


@pytest.mark.parametrize("change", list(CHANGES), ids=str)
def test_the_agents_replan_equals_a_cold_plan(cloud: CloudSnapshot, change: str, patched: list[str]) -> None:
    planned, _kept, _before, after = _as_the_agents(cloud, CHANGES[change])
    assert _differing(planned, _cold(after)) == []
    if change in PATCHED:
        assert patched, "the patch was never taken"


@pytest.mark.parametrize("change", list(CHANGES), ids=str)
def test_every_host_replanned_with_previous_equals_a_cold_plan(cloud: CloudSnapshot, change: str,
                                                                patched: list[str]) -> None:
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    after = CHANGES[change](cloud)
    planned = plan_hosts(after, _names(after), previous=before)
    assert _differing(planned, _cold(after)) == []
    if change in PATCHED:
        assert patched
        changed_hosts = {p.binding_host for p in (*before.ports, *after.ports)} - {
            p.binding_host for p in before.ports if p in after.ports}
        assert not set(patched) & changed_hosts  # (a changed port's own host is never patched)


def test_a_patched_host_really_changed(cloud: CloudSnapshot, patched: list[str]) -> None:
    """A port added on a network: the hosts sharing it are patched, their br-tun flows (and only
    theirs) differ from the last plan, and equal the cold plan's."""
    before = fresh(cloud)
    kept = plan_hosts(before, _names(before))
    after = _added_known_host(cloud)
    touched = hosts_affected_by_change(before, after)
    assert touched is not None
    planned = plan_hosts(after, touched, previous=before)
    cold = _cold(after)
    moved = [h for h in patched if planned[h] != kept[h]]
    assert moved, "no patched host changed: the test proves nothing"
    for h in moved:
        assert planned[h] == cold[h] and repr(planned[h]) == repr(cold[h])
        old, new = kept[h].ovs, planned[h].ovs
        assert old.flows_of("br-tun") != new.flows_of("br-tun")
        assert old.flows_of("br-int") == new.flows_of("br-int") and old.show == new.show
        assert kept[h].namespaces == planned[h].namespaces


def test_changes_in_a_row_patched_from_patches(cloud: CloudSnapshot, patched: list[str]) -> None:
    """Patches of patches: several port changes one after the other, every host planned each time
    with the previous snapshot (the whole sequence first, as a living agent does), then each step
    compared with its cold plan."""
    current = cloud
    before = fresh(current)
    plan_hosts(before, _names(before))
    steps: list[Callable[[CloudSnapshot], CloudSnapshot]] = [
        _added_new_host_on_net, _added_known_host, CHANGES["port moved"], CHANGES["port removed"],
        CHANGES["port down"]]
    done: list[tuple[CloudSnapshot, dict[str, HostState], int]] = []
    for change in steps:
        current = change(current)
        after = fresh(current)
        done.append((after, plan_hosts(after, _names(after), previous=before), len(patched)))
        before = after
    assert done[-1][2] > done[0][2] > 0  # (patched in the later steps too: patches of patches)
    for after, planned, _n in done:
        assert _differing(planned, _cold(after)) == []


def _with_remote_group(cloud: CloudSnapshot) -> CloudSnapshot:
    """The group's members may reach each other (a rule naming the group as remote)."""
    sg = cloud.security_groups[0]
    rule = SecurityGroupRule("r-remote", sg.id, "ingress", "IPv4", "tcp", 8080, 8080, None, sg.id)
    return fresh(cloud, security_groups=(dataclasses.replace(sg, rules=(*sg.rules, rule)),))


def _port_added(cloud: CloudSnapshot) -> CloudSnapshot:
    host = next(p.binding_host for p in cloud.ports if p.device_owner == "compute:nova"
                and p.network_id == cloud.networks[3].id)
    port: Port = _new_port(cloud, 3, host)
    return fresh(cloud, ports=(*cloud.ports, port))


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "guard removed"])
def test_a_remote_group_member_added_is_not_patched(cloud: CloudSnapshot, guarded: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A port added to a group another rule names as remote changes every member host's firewall:
    the patch must not be taken there (with the guard removed, a re-plan differs from the cold
    plan: the guard is what keeps it exact)."""
    if not guarded:
        monkeypatch.setattr(plan, "_patchable", lambda _cloud, _ports: True)
    base = _with_remote_group(cloud)
    before = fresh(base)
    plan_hosts(before, _names(before))
    after = _port_added(base)
    planned = plan_hosts(after, _names(after), previous=before)
    differing = _differing(planned, _cold(after))
    if guarded:
        assert differing == []
    else:
        assert differing, "the guard changes nothing: the test proves nothing"


def test_the_patch_is_not_taken_from_another_snapshot(cloud: CloudSnapshot, patched: list[str]) -> None:
    """A host last planned on a snapshot other than ``previous`` is planned in full."""
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    other = fresh(cloud)
    plan_hosts(other, _names(other)[:3])  # (their last plans now on ``other``)
    after = _added_known_host(cloud)
    planned = plan_hosts(after, _names(after), previous=before)
    assert not set(patched) & set(_names(after)[:3])
    assert _differing(planned, _cold(after)) == []
