"""Issue #17, replan17: a namespace planned anew around the very devices last numbered takes them as
numbered (``plan._kept_numbering``). A host planned in full again after a change elsewhere (its
tunnel list grew: br-tun's ports renumbered) merges a new root namespace (the firewall's rules made
again) around its hybrid plug's kept links, the very tuple: the kernel's numbering, which reads the
devices alone, is not done again; the namespace's other fields are the new ones (review16: a
namespace is kept whole for the very object only).

Each test counts the path taken (else it proves nothing) and compares with cold plans; the guard is
shown to matter: a namespace taking the last numbered devices whenever one of its name was numbered
differs from the cold plan once its devices changed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

import neutrino.plan as plan
from neutrino.host.state import ROOT, NamespaceState
from neutrino.plan import hosts_affected_by_change, plan_hosts
from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit
from tests.plan.test_replan8_previous import CHANGES, _cold, _differing, _names
from tests.plan.test_replan9_patch import PATCHED
from tests.plan.test_replan_kept import fresh
from tests.plan.test_review11_patch import _Maker, _walk

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud


@pytest.fixture
def devices_kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """The (host, namespace) numbered by taking the devices last numbered (a new namespace around
    the very links tuple), in order."""
    out: list[tuple[str, str]] = []
    real = plan._kept_numbering

    def counting(host: str, ns: NamespaceState) -> NamespaceState:
        kept = plan._NUMBERED.kept.get((host, ns.name))
        if kept is not None and kept[0] is not ns and kept[0].links is ns.links:
            out.append((host, ns.name))
        return real(host, ns)

    monkeypatch.setattr(plan, "_kept_numbering", counting)
    yield out


@pytest.fixture
def numbered(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The namespaces numbered by the kernel's rules again (``plan._numbered_namespace``), by name."""
    out: list[tuple[str, ...]] = []
    real = plan._numbered_namespace

    def counting(ns: NamespaceState) -> NamespaceState:
        out.append((ns.name,))
        return real(ns)

    monkeypatch.setattr(plan, "_numbered_namespace", counting)
    return out


@pytest.mark.parametrize("change", PATCHED, ids=str)
def test_hosts_planned_again_keep_their_devices_numbering(cloud: CloudSnapshot, change: str,
                                                          devices_kept: list[tuple[str, str]],
                                                          numbered: list[tuple[str, ...]]) -> None:
    """The bench cloud, every host planned, then each port change with the touched hosts planned as
    the agents do: a root namespace is numbered again only on a host whose devices changed (a host
    with a port changed: the hybrid plug's links are new), every other root namespace planned again
    takes its devices as numbered, and every host equals its cold plan."""
    before = fresh(cloud)
    planned = dict(plan_hosts(before, _names(before)))
    devices_kept.clear()
    numbered.clear()
    after = CHANGES[change](cloud)
    touched = hosts_affected_by_change(before, after)
    assert touched is not None
    planned.update(plan_hosts(after, touched, previous=before))
    changed_hosts = {p.binding_host for p in (*before.ports, *after.ports)
                     if p not in before.ports or p not in after.ports}
    assert numbered.count((ROOT,)) <= len(changed_hosts)
    assert all(host not in changed_hosts or ns != ROOT for host, ns in devices_kept)
    assert _differing(planned, _cold(after)) == []


def test_a_port_added_reuses_the_numbering_of_hosts_planned_in_full(cloud: CloudSnapshot,
                                                                    devices_kept: list[tuple[str, str]]) -> None:
    """After a port added on a host new to the network, the affected hosts planned in full (the old
    way: no ``previous``; the agents' way patches the hosts whose tunnels grew since replan18), some
    root namespace takes its devices as numbered: the path is taken on the bench cloud."""
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    devices_kept.clear()
    after = CHANGES["port added, host new to the network"](cloud)
    planned = plan_hosts(after, hosts_affected_by_change(before, after) or ())
    assert any(ns == ROOT for _host, ns in devices_kept)
    assert all(planned[h] == _cold(after)[h] for h in planned)


@pytest.mark.parametrize("seed", [3, 17])
def test_random_walks_keeping_devices_numbering_equal_cold_plans(seed: int,
                                                                 devices_kept: list[tuple[str, str]]) -> None:
    """The review's random walks (ports changed in every way, other changes, the agents' way and
    every host, statuses, two chains): every step equals its cold plan, and devices were taken as
    numbered many times."""
    assert _walk(_Maker(seed), 30, agents=True) == []
    assert len(devices_kept) >= 10, "the new path was hardly taken: the walk proves little"


def test_devices_taken_without_the_identity_guard_is_caught(cloud: CloudSnapshot,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: a namespace takes the devices last numbered in a namespace of its name whatever its
    own devices are: after a port added, the port's host's root namespace lacks the new port's
    devices (or numbers them as before), and the re-plan differs from the cold plan."""

    def unguarded(host: str, ns: NamespaceState) -> NamespaceState:
        kept = plan._NUMBERED.kept.get((host, ns.name))
        if kept is not None:
            return dataclasses.replace(ns, links=kept[1].links)
        numbered = plan._numbered_namespace(ns)
        plan._NUMBERED.put((host, ns.name), ns, numbered)
        return numbered

    monkeypatch.setattr(plan, "_kept_numbering", unguarded)
    before = fresh(cloud)
    planned = dict(plan_hosts(before, _names(before)))
    after = CHANGES["port added, host new to the network"](cloud)
    planned.update(plan_hosts(after, hosts_affected_by_change(before, after) or (), previous=before))
    assert _differing(planned, _cold(after)) != []
