"""Issue #17, twelfth round (replan12): a host the change before did not touch was last planned on an
older snapshot; ``hosts_affected_by_change`` records each answer (``plan._AFFECTED``), and such a host
is patched from that older plan when the chain of answers back to it never names it
(``plan._unaffected_since``): its plan is the same on every snapshot of the chain.

Changes in a row planned the agents' way equal cold plans and the shortcut is taken; a host that a
change touched but that was not planned again is not patched from its older plan (and with the
chain's affected sets ignored, the re-plan differs from the cold plan)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

import neutrino.plan as plan
from neutrino.host.state import HostState
from neutrino.plan import hosts_affected_by_change, plan_hosts
from neutrino.services.snapshot import CloudSnapshot, FixedIP, SecurityGroup, SecurityGroupRule
from tests.plan import replan_kit
from tests.plan.test_replan6_carried import _instance_ports
from tests.plan.test_replan8_previous import (
    CHANGES,
    _added_known_host,
    _added_new_host_on_net,
    _cold,
    _differing,
    _names,
    _new_port,
)
from tests.plan.test_replan_kept import fresh

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud
chained = replan_kit.chained


def _in_a_row(cloud: CloudSnapshot, steps: list[Callable[[CloudSnapshot], CloudSnapshot]]
              ) -> list[tuple[CloudSnapshot, dict[str, HostState]]]:
    """Every host planned first, then each change planned the agents' way (the touched hosts with
    ``previous=``, the others' plans kept); each step's whole plan."""
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))
    out = []
    current = cloud
    for step in steps:
        current = step(current)
        after = fresh(current)
        touched = hosts_affected_by_change(before, after)
        plans.update(plan_hosts(after, _names(after) if touched is None else touched, previous=before))
        out.append((after, dict(plans)))
        before = after
    return out


def test_changes_in_a_row_equal_cold_plans_and_the_chain_is_used(cloud: CloudSnapshot, chained: list[str]) -> None:
    done = _in_a_row(cloud, [_added_known_host, _added_new_host_on_net, CHANGES["port moved"],
                             CHANGES["port removed"], CHANGES["port down"]])
    assert chained, "no host patched from an older plan: the test proves nothing"
    for after, planned in done:
        assert _differing(planned, _cold(after)) == []


def _with_web_group(cloud: CloudSnapshot) -> tuple[CloudSnapshot, str, str]:
    """Two instance ports on two hosts in a group whose rule names it as remote (each host's
    firewall lists the other's address); (the cloud, the first port's host, the second port's id)."""
    ports = _instance_ports(cloud)
    first = ports[0]
    second = next(p for p in ports if p.binding_host != first.binding_host)
    web = SecurityGroup("sg-web", "web", "demo", True, True, (
        SecurityGroupRule("r-web", "sg-web", "ingress", "IPv4", "tcp", 80, 80, None, "sg-web"),))
    members = {first.id, second.id}
    out = fresh(cloud, ports=tuple(dataclasses.replace(p, security_group_ids=(*p.security_group_ids, "sg-web"))
                                   if p.id in members else p for p in cloud.ports),
                security_groups=(*cloud.security_groups, web))
    return out, first.binding_host, second.id


@pytest.mark.parametrize("ignored", [False, True], ids=["chain", "affected sets ignored"])
def test_a_touched_host_not_planned_again_is_not_patched_from_its_older_plan(
        cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch, ignored: bool) -> None:
    """Change A readdresses a port of the web group: the other member's host X is affected (its
    firewall), but the caller plans only the port's own host. Change B adds a port on a network X
    shares (default group only: patchable). X's last plan is the one before A: it must be planned
    in full. Mutation: with the chain's affected sets ignored, X is patched from that stale plan and
    its firewall lacks A's address: the re-plan differs from the cold plan."""
    if ignored:
        def blind(name: str, serial: int, now: int) -> bool:
            for _step in range(8):
                rec = plan._AFFECTED.get(now)
                if rec is None:
                    return False
                now = rec[0]
                if now == serial:
                    return True
            return False
        monkeypatch.setattr(plan, "_unaffected_since", blind)
    base, x, moved_id = _with_web_group(cloud)
    s0 = fresh(base)
    plans = dict(plan_hosts(s0, _names(s0)))
    victim = next(p for p in base.ports if p.id == moved_id)
    readdressed = dataclasses.replace(victim, fixed_ips=(FixedIP(victim.fixed_ips[0].subnet_id,
                                                                 victim.fixed_ips[0].ip_address + 100),))
    a = fresh(base, ports=tuple(readdressed if p.id == moved_id else p for p in base.ports))
    touched = hosts_affected_by_change(s0, a)
    assert touched is not None and x in touched and victim.binding_host in touched
    plans.update(plan_hosts(a, [victim.binding_host], previous=s0))  # (X not planned again)
    net = next(p.network_id for p in base.ports if p.binding_host == x and p.device_owner == "compute:nova")
    index = next(i for i, n in enumerate(base.networks) if n.id == net)
    other = next(p.binding_host for p in _instance_ports(a) if p.network_id == net and p.binding_host != x)
    added = dataclasses.replace(_new_port(a, index, other, 3), security_group_ids=("sg-default",))
    b = fresh(a, ports=(*a.ports, added))
    touched = hosts_affected_by_change(a, b)
    assert touched is not None and x in touched
    plans.update(plan_hosts(b, touched, previous=a))
    cold = _cold(b)
    if ignored:
        assert x in _differing(plans, cold), "the affected sets change nothing: the test proves nothing"
    else:
        assert _differing({x: plans[x]}, {x: cold[x]}) == []
