"""Review16 of replan15: ``plan._NUMBERED`` now keeps each namespace as numbered under the namespace
as planned, compared with ``==``. A namespace's iptables rules compare without their ``origin``
(``Rule.origin`` is ``compare=False``: what a trace names as the rule's object), so a namespace whose
rules changed in their origins alone is found equal to the kept one and the kept one, with the old
origins, is returned: after a security group rule deleted and made again alike (a compute host's
root namespace), or a floating IP deleted and made again with the same addresses (the network host's
router namespace), the plan's rules name the deleted rule or floating IP (what a trace names as the
rule's object, and what ``store`` saves as why each rule exists). Before replan15 only the devices
were kept: the namespace's rules were always the ones just planned. Fixed: a numbered namespace is
kept for the very namespace object it was numbered from (``plan._kept_numbering``).

``forget_everything`` cleared the memos of ``neutrino.plan``'s submodules, not the package's own, so
a "cold" plan made after a plan in the same process reused the kept namespaces, and the re-plan
tests' cold plans could not see this; it now clears the package's own memos too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from neutrino.host.state import HostState
from neutrino.plan import plan_host
from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit
from tests.plan.test_l3 import seed001
from tests.plan.test_replan_kept import forget_everything, fresh

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud


@pytest.fixture(autouse=True)
def _numbered_cleared() -> Iterator[None]:
    """Every kept piece, the package's numbered namespaces too, dropped around each test."""
    forget_everything()
    yield
    forget_everything()


def _rule_origins(state: HostState) -> list[tuple[str, str, str]]:
    """Every iptables rule of every namespace: (namespace, rule chain, origin), in order."""
    return [(ns.name, r.chain, r.origin) for ns in state.namespaces if ns.iptables is not None
            for t in ns.iptables.tables for c in t.chains for r in c.rules]


def _truly_cold(cloud: CloudSnapshot, host: str) -> HostState:
    """``host``'s plan with every kept piece dropped, the package's numbered namespaces too."""
    forget_everything()
    return plan_host(fresh(cloud), host)


def _rule_renamed(cloud: CloudSnapshot) -> CloudSnapshot:
    """``cloud`` with its first security group's first rule replaced by the same rule under a new id
    (a rule deleted and created again alike): the iptables rules are the same, their origins not."""
    sg = cloud.security_groups[0]
    again = dataclasses.replace(sg.rules[0], id=f"{sg.rules[0].id}-again")
    return fresh(cloud, security_groups=(dataclasses.replace(sg, rules=(again, *sg.rules[1:])),
                                         *cloud.security_groups[1:]))


def _a_compute_host(cloud: CloudSnapshot) -> str:
    return next(p.binding_host for p in cloud.ports if p.binding_host and p.binding_host.startswith("compute"))


def test_the_cold_reference_sees_the_new_rule_id(cloud: CloudSnapshot) -> None:
    """Guard of the test itself: the renamed rule's id is in a truly cold plan's origins (the
    change is visible in the plan at all)."""
    after = _rule_renamed(cloud)
    host = _a_compute_host(cloud)
    new_id = after.security_groups[0].rules[0].id
    assert any(f"sg-rule {new_id} " in o for _ns, _c, o in _rule_origins(_truly_cold(after, host)))


def test_a_rule_renamed_is_named_anew_in_the_next_plan(cloud: CloudSnapshot) -> None:
    """A compute host planned (iptables_hybrid: its root namespace has devices and the firewall's
    rules), then planned on the snapshot where a security group rule was replaced by an identical
    one: its rules name the new rule, as a cold plan's do."""
    host = _a_compute_host(cloud)
    plan_host(fresh(cloud), host)
    after = _rule_renamed(cloud)
    planned = plan_host(after, host)
    cold = _truly_cold(after, host)
    assert _rule_origins(planned) == _rule_origins(cold)
    assert repr(planned) == repr(cold)


def _fip_made_again(cloud: CloudSnapshot) -> CloudSnapshot:
    """``cloud`` with its first floating IP deleted and made again with the same addresses (a new id)."""
    fip = cloud.floating_ips[0]
    return fresh(cloud, floating_ips=(dataclasses.replace(fip, id=f"{fip.id}-again"), *cloud.floating_ips[1:]))


def test_the_cold_router_namespace_names_the_new_floating_ip() -> None:
    """Guard of the test below: the new floating IP's id is in a truly cold plan's rule origins."""
    after = _fip_made_again(seed001())
    new_id = after.floating_ips[0].id
    assert any(o.startswith(f"floatingip {new_id} ") for _ns, _c, o in _rule_origins(_truly_cold(after, "controller")))


def test_a_floating_ip_made_again_is_named_anew_on_the_network_host() -> None:
    """Seed 001's network host (a router with eight floating IPs) planned, then planned on the snapshot
    where a floating IP was deleted and made again alike: its router namespace's NAT rules name the
    new floating IP, as a cold plan's do."""
    cloud = seed001()
    plan_host(fresh(cloud), "controller")
    after = _fip_made_again(cloud)
    planned = plan_host(after, "controller")
    cold = _truly_cold(after, "controller")
    assert _rule_origins(planned) == _rule_origins(cold)
    assert repr(planned) == repr(cold)
