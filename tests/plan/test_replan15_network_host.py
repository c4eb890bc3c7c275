"""Issue #17, replan15: the network host re-planned piece by piece. Its last plan holds the L3 and
DHCP planners' fragments, so it cannot be patched whole (a port added changes its dnsmasq hosts
file); but its OVS side, hundreds of tunnels, is made from its last plan's pieces as the other
hosts' is (``plan._replanned``, ``ovs.replanned_flows``) and merged with the other planners'
fragments, planned again (``plan._patched``, the hosts that are not ``whole``). Two facts the
network host reads are kept too: which networks each host serves (``dhcp.carry_index``, when no
DHCP port changed) and each namespace as numbered (``plan._NUMBERED``, by the namespace as planned).

Each test counts the new path taken (else it proves nothing) and compares every host with a cold
plan; the guards are shown to matter: with every last plan taken as ``whole``, or the served
networks carried across a DHCP port's move, the re-plans differ from the cold plans."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import neutrino.plan as plan
from neutrino.host.state import HostState, NamespaceState
from neutrino.plan import dhcp, hosts_affected_by_change, ovs, plan_hosts
from neutrino.plan.generation import Profile
from neutrino.scenarios.model import Host
from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit
from tests.plan.test_replan8_previous import CHANGES, _cold, _differing, _names
from tests.plan.test_replan9_patch import PATCHED
from tests.plan.test_replan_kept import fresh
from tests.plan.test_review11_patch import _Maker, _port, _three_computes, _walk

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud
patched = replan_kit.patched


@pytest.fixture
def merged_again(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts whose planners' fragments were merged again around an OVS side made from their
    last plan (``plan._merged`` given the OVS pieces), in order."""
    out: list[str] = []
    real = plan._merged

    def counting(cloud: CloudSnapshot, host: Host | str, gen: Profile, datapath_type: str,
                 ovs_parts: ovs.OvsParts | None = None) -> tuple[HostState, ovs.OvsParts, bool]:
        if ovs_parts is not None:
            out.append(host if isinstance(host, str) else host.name)
        return real(cloud, host, gen, datapath_type, ovs_parts)

    monkeypatch.setattr(plan, "_merged", counting)
    return out


@pytest.fixture
def planned_in_full(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts whose OVS side was planned in full (``ovs.planned_ovs``), in order."""
    out: list[str] = []
    real = ovs.planned_ovs

    def counting(cloud: CloudSnapshot, host: Host | str, **kw: Any) -> tuple[HostState, ovs.OvsParts]:
        out.append(host if isinstance(host, str) else host.name)
        return real(cloud, host, **kw)

    monkeypatch.setattr(ovs, "planned_ovs", counting)
    return out


def _as_the_agents(cloud: CloudSnapshot, change: str, counted: list[str] | None = None
                   ) -> tuple[dict[str, HostState], CloudSnapshot, tuple[str, ...]]:
    """Every host planned on a fresh ``cloud``; then the change, the hosts it touches planned with
    ``previous=`` (the others kept): every host's plan, the snapshot after, the hosts touched.
    ``counted``: a list the fixtures fill, cleared between the two."""
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))
    if counted is not None:
        counted.clear()
    after = CHANGES[change](cloud)
    touched = hosts_affected_by_change(before, after)
    assert touched is not None
    plans.update(plan_hosts(after, touched, previous=before))
    return plans, after, touched


@pytest.mark.parametrize("change", PATCHED, ids=str)
def test_the_network_host_s_ovs_side_comes_from_its_last_plan(cloud: CloudSnapshot, change: str,
                                                              merged_again: list[str],
                                                              planned_in_full: list[str]) -> None:
    """The bench cloud (its network host serves DHCP on every network and routes them): after each
    port change the network host's OVS side is not planned again but made from its last plan, and
    every host equals its cold plan."""
    plans, after, touched = _as_the_agents(cloud, change, planned_in_full)
    assert "network" in touched
    assert merged_again == ["network"]
    assert "network" not in planned_in_full
    assert _differing(plans, _cold(after)) == []


@pytest.mark.parametrize("seed", [5, 21])
def test_random_walks_with_the_network_host_merged_again_equal_cold_plans(seed: int, merged_again: list[str],
                                                                        patched: list[str]) -> None:
    """The review's random walks (clouds whose DHCP is mostly on the network host, routers there,
    DVR now and then, both firewalls, the older agents; ports changed in every way, the agents'
    way and every host, statuses reported, two chains): every step equals its cold plan, and the
    network host was merged again many times."""
    assert _walk(_Maker(seed), 30, agents=True) == []
    assert merged_again.count("network") >= 8, "the new path was hardly taken: the walk proves little"
    assert set(merged_again) <= set(patched)  # (the merge is :func:`plan._patched`'s answer)


def test_every_last_plan_taken_whole_is_caught(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: the network host's last plan taken as the OVS and firewall planners' alone (its state
    patched in br-tun's flows only): its dnsmasq hosts file misses the port added, and the re-plan
    differs from the cold plan there."""
    real = plan._remember

    def all_whole(name: str, planned: plan._Planned | None) -> None:
        real(name, None if planned is None else dataclasses.replace(planned, whole=True))

    monkeypatch.setattr(plan, "_remember", all_whole)
    plans, after, _touched = _as_the_agents(cloud, "port added, host known")
    assert "network" in _differing(plans, _cold(after))


def test_the_served_networks_are_carried_unless_a_dhcp_port_changed(cloud: CloudSnapshot) -> None:
    """Which networks each host serves is the snapshot before's (the very table) after an instance
    port's change, made again after a DHCP port's."""
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    served = before._index["@dhcp_served_networks"]
    after = CHANGES["port added, host known"](cloud)
    plan_hosts(after, hosts_affected_by_change(before, after) or (), previous=before)
    assert after._index["@dhcp_served_networks"] is served
    dhcp_port = next(p for p in cloud.ports if p.device_owner == "network:dhcp")
    moved = _port(cloud, dhcp_port.id, binding_host="compute0001")
    again = fresh(moved)
    plan_hosts(again, _names(again), previous=before)
    assert again._index["@dhcp_served_networks"] is not served
    assert _differing(plan_hosts(again, _names(again)), _cold(moved)) == []


def test_the_served_networks_carried_across_a_dhcp_port_s_move_is_caught() -> None:
    """Mutation: the served networks carried though the DHCP port moved to another host (the
    changed ports withheld from ``dhcp.carry_index``): the network keeps being served where it was."""
    cloud = _three_computes()
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    moved = _port(cloud, "dhcp-0", binding_host="compute1")
    after = fresh(moved)
    dhcp.carry_index(before, after, {"net-0"})
    assert _differing(plan_hosts(after, _names(after)), _cold(moved)) != []


def test_a_namespace_numbered_again_only_when_it_changed(cloud: CloudSnapshot,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """After a port added, the network host's namespaces (a DHCP one per network, the router's) are
    its last plan's, numbered: none is numbered again but the added port's network's DHCP namespace
    (the DHCP planner made it anew: a namespace is kept by identity, review16); a change of the DHCP
    port's address numbers its network's namespace again (and nothing else of the network host), and
    both equal the cold plans."""
    numbered: list[str] = []
    real = plan._numbered_namespace

    def counting(ns: NamespaceState) -> NamespaceState:
        numbered.append(ns.name)
        return real(ns)

    monkeypatch.setattr(plan, "_numbered_namespace", counting)
    plan._NUMBERED.kept.clear()
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    assert len(numbered) > len(cloud.networks)
    numbered.clear()
    after = CHANGES["port added, host known"](cloud)
    planned = plan_hosts(after, ["network"], previous=before)
    added = next(p for p in after.ports if p.id not in {q.id for q in cloud.ports})
    assert numbered == [f"qdhcp-{added.network_id}"]
    numbered.clear()
    dhcp_port = next(p for p in cloud.ports if p.device_owner == "network:dhcp")
    address = dataclasses.replace(dhcp_port.fixed_ips[0], ip_address=dhcp_port.fixed_ips[0].ip_address + 1)
    readdressed = _port(after, dhcp_port.id, fixed_ips=(address,))
    again = plan_hosts(fresh(readdressed), ["network"], previous=after)
    assert numbered == [f"qdhcp-{dhcp_port.network_id}"]
    assert planned["network"] == _cold(after)["network"]
    assert again["network"] == _cold(readdressed)["network"]
