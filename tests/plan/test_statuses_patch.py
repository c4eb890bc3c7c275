"""The agents' statuses snapshot keeps the patched re-plan (issue #17; found by review11 and replan12).

After a pass that reports ports' statuses, the in-process agents keep ``with_statuses(snap, ...)``:
a new snapshot, the one the next pass compares with and carries from. The hosts' last plans are on
``snap``. No planner reads a port's status, so ``with_statuses`` records (``plan.same_plans``) that
every host's plan is the same on both, and the next pass patches the hosts beside its change as
it would have without the statuses. Checked here: the two snapshots' cold plans are equal for every
host (the fact recorded); a change after the statuses, planned the agents' way, patches hosts and
equals the cold plan; without the record, no host is patched (what the living agents did)."""

from __future__ import annotations

import pytest

from neutrino.agent import with_statuses
from neutrino.plan import hosts_affected_by_change, plan_hosts
from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit
from tests.plan.test_replan8_previous import _added_known_host, _cold, _differing, _names
from tests.plan.test_replan_kept import fresh

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud
patched = replan_kit.patched


def _flipped(cloud: CloudSnapshot) -> dict[str, str]:
    return {p.id: "DOWN" if p.status == "ACTIVE" else "ACTIVE" for p in cloud.ports}


def test_no_planner_reads_a_status(cloud: CloudSnapshot) -> None:
    before = fresh(cloud)
    after = with_statuses(before, _flipped(before))
    assert all(p.status != q.status for p, q in zip(before.ports, after.ports, strict=True))
    assert _differing(_cold(after), _cold(before)) == []


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "record dropped"])
def test_a_change_after_statuses_patches_and_equals_the_cold_plan(
        cloud: CloudSnapshot, patched: list[str], monkeypatch: pytest.MonkeyPatch, recorded: bool) -> None:
    if not recorded:
        monkeypatch.setattr("neutrino.agent.same_plans", lambda _before, _after: None)
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))
    first = before.ports[0]  # a pass reports the statuses that changed: the ports it wired
    reported = with_statuses(before, {first.id: _flipped(before)[first.id]})  # as ``Agents.converge`` keeps it
    after = _added_known_host(reported)
    touched = hosts_affected_by_change(reported, after)
    assert touched is not None and len(touched) > 1
    plans.update(plan_hosts(after, touched, previous=reported))
    if recorded:
        assert patched, "no host patched after the statuses: the test proves nothing"
        assert first.binding_host not in patched  # (its plugged ports hold the port with its new status)
    else:
        assert patched == []  # every host planned in full, as the living agents did before
    assert _differing(plans, _cold(after)) == []
