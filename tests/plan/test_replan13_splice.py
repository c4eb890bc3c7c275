"""Issue #17, thirteenth round (replan13): a patched host whose last plan is on the very snapshot
the fresh one was carried from takes br-tun's flows from that plan with only the change's edits
made (``ovs._spliced``, ``ovs_tun.spliced_network``): the changed network's l2population flows
towards the changed ports' hosts replaced in its batch, in br-tun's dump and in the origins, and
its flood flow when one of those hosts joins or leaves the network; nothing planned again.

Every kind of change planned the agents' way (and every host with ``previous=``, and changes in a
row, and other deployments) equals a cold plan, ``==`` and ``repr``; the splice is really taken
(counted: on every patched host for a port added on a network), and not where it must not be.
Mutations that apply it where it must not be make a re-plan differ from the cold plan: the one-
network guard widened (a change touching two of a host's networks, only the first edited), the
snapshot guard lying (what was kept of another snapshot taken as the one planned on), the flood
flow kept when a host joins the network, the old snapshot's hosts read from the new one."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

import neutrino.plan as plan
from neutrino.host.state import HostState
from neutrino.plan import carry_from, hosts_affected_by_change, ovs, ovs_tun, plan_hosts
from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit
from tests.plan.test_replan6_carried import _instance_ports
from tests.plan.test_replan8_previous import (
    CHANGES,
    VARIANTS,
    _added_known_host,
    _added_new_host_on_net,
    _as_the_agents,
    _cold,
    _differing,
    _names,
    _new_port,
)
from tests.plan.test_replan9_patch import PATCHED
from tests.plan.test_replan12_chain import _in_a_row
from tests.plan.test_replan_kept import fresh

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud
patched = replan_kit.patched


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts whose OVS plan was spliced (``ovs._spliced`` gave an answer), in order."""
    out: list[str] = []
    real = ovs._spliced

    def counting(ctx: ovs.OvsContext, *args: Any) -> ovs.OvsParts | None:
        got = real(ctx, *args)
        if got is not None:
            out.append(ctx.host.name)
        return got

    monkeypatch.setattr(ovs, "_spliced", counting)
    return out


@pytest.mark.parametrize("change", list(CHANGES), ids=str)
def test_the_agents_replan_equals_a_cold_plan(cloud: CloudSnapshot, change: str, patched: list[str],
                                              spliced: list[str]) -> None:
    planned, _kept, _before, after = _as_the_agents(cloud, CHANGES[change])
    assert _differing(planned, _cold(after)) == []
    if change in PATCHED:  # (ports alone changed: every host was planned on the snapshot before)
        assert spliced, "the splice was never taken"
        assert set(spliced) <= set(patched)
    else:
        assert spliced == []


@pytest.mark.parametrize("change", PATCHED, ids=str)
def test_every_host_with_previous_equals_a_cold_plan(cloud: CloudSnapshot, change: str, spliced: list[str]) -> None:
    """(Every host, the ones the change does not touch too: none of them spliced, nothing of theirs changed.)"""
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    after = CHANGES[change](cloud)
    touched = hosts_affected_by_change(before, after)
    planned = plan_hosts(after, _names(after), previous=before)
    assert _differing(planned, _cold(after)) == []
    assert spliced and touched is not None and set(spliced) <= set(touched)


def test_a_port_added_is_spliced_on_every_patched_host(cloud: CloudSnapshot, patched: list[str],
                                                        spliced: list[str]) -> None:
    """One port added where its host has a port already: every host patched shares the network and
    nothing else changed for it, so each is spliced, and its br-tun flows really changed (only they)."""
    before = fresh(cloud)
    kept = plan_hosts(before, _names(before))
    after = _added_known_host(cloud)
    touched = hosts_affected_by_change(before, after)
    assert touched is not None
    planned = plan_hosts(after, touched, previous=before)
    cold = _cold(after)
    assert patched and spliced == patched
    for h in spliced:
        assert planned[h] == cold[h] and repr(planned[h]) == repr(cold[h])
        assert kept[h].ovs.flows_of("br-tun") != planned[h].ovs.flows_of("br-tun")
        assert kept[h].ovs.flows_of("br-int") == planned[h].ovs.flows_of("br-int")
        assert kept[h].origins != planned[h].origins


def test_a_host_joining_the_network_changes_the_flood_flow(cloud: CloudSnapshot, spliced: list[str]) -> None:
    """A port added on a host new to the network, which the spliced hosts already tunnel to: their
    flood flow for the network gains it (the splice's second edit)."""
    before = fresh(cloud)
    kept = plan_hosts(before, _names(before))
    after = _added_new_host_on_net(cloud)
    planned = plan_hosts(after, _names(after), previous=before)
    assert spliced
    net = after.networks[2].id
    floods = [h for h in spliced if _flood_flows(kept[h]) != _flood_flows(planned[h])]
    assert floods, "no spliced host's flood flow changed: the test proves nothing"
    assert _differing(planned, _cold(after)) == []
    assert all(any(net in o.obj for o in planned[h].origins if o.obj.startswith("network")) for h in floods)


def _flood_flows(state: HostState) -> list[object]:
    return [f for f in state.ovs.flows_of("br-tun").flows.flows if f.table == 22 and f.priority == 1]


def test_changes_in_a_row_splice_from_splices(cloud: CloudSnapshot, spliced: list[str]) -> None:
    """Changes one after the other, planned the agents' way: hosts spliced in a step are spliced
    again in a later one (from the spliced plan), and every step equals its cold plan."""
    steps: list[Callable[[CloudSnapshot], CloudSnapshot]] = [
        _added_known_host, _added_new_host_on_net, CHANGES["port moved"], CHANGES["port removed"],
        CHANGES["MAC and address changed"], CHANGES["port down"]]
    counts: list[int] = []
    real = plan_hosts

    def counting(*args: Any, **kwargs: Any) -> dict[str, HostState]:
        got = real(*args, **kwargs)
        counts.append(len(spliced))
        return got

    done = _in_a_row_counted(cloud, steps, counting)
    assert len(set(spliced)) < len(spliced), "no host spliced twice: the test proves nothing"
    assert counts[-1] > counts[1] > counts[0]
    for after, planned in done:
        assert _differing(planned, _cold(after)) == []


def _in_a_row_counted(cloud: CloudSnapshot, steps: list[Callable[[CloudSnapshot], CloudSnapshot]],
                      counting: Callable[..., dict[str, HostState]]) -> list[tuple[CloudSnapshot, dict[str, HostState]]]:
    """``test_replan12_chain._in_a_row`` with its ``plan_hosts`` counted."""
    import tests.plan.test_replan12_chain as chain

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chain, "plan_hosts", counting)
        return _in_a_row(cloud, steps)


@pytest.mark.parametrize("variant", list(VARIANTS), ids=str)
@pytest.mark.parametrize("change", ["port added, host new to the network", "port moved"], ids=str)
def test_other_deployments(cloud: CloudSnapshot, variant: str, change: str, spliced: list[str]) -> None:
    """The same with l2population off and the older layouts (never spliced) and with the OVS
    firewall (its flows on br-int before br-tun's pieces: spliced)."""
    other = fresh(cloud, deployment=dataclasses.replace(cloud.deployment, **VARIANTS[variant]))  # type: ignore[arg-type]
    planned, _kept, _before, after = _as_the_agents(other, CHANGES[change])
    assert _differing(planned, _cold(after)) == []
    assert bool(spliced) == (variant == "openvswitch firewall")


# --- where the splice must not be taken, and mutations that take it there -----------------------

def _two_networks(cloud: CloudSnapshot) -> tuple[CloudSnapshot, str]:
    """Two ports added at once, on two networks, each on a host already there, and a third host on
    both networks (the one to look at): the change touches two of its networks."""
    ports = _instance_ports(cloud)
    on: dict[str, set[str]] = {}
    for p in ports:
        on.setdefault(p.network_id, set()).add(p.binding_host)
    nets = [n.id for n in cloud.networks]
    for a in range(len(nets)):
        for b in range(a + 1, len(nets)):
            both = on.get(nets[a], set()) & on.get(nets[b], set())
            for ha in sorted(on.get(nets[a], set())):
                for hb in sorted(on.get(nets[b], set())):
                    third = sorted(both - {ha, hb})
                    if third:
                        new = (dataclasses.replace(_new_port(cloud, a, ha, 5), network_id=nets[a]),
                               dataclasses.replace(_new_port(cloud, b, hb, 6), network_id=nets[b]))
                        return fresh(cloud, ports=(*cloud.ports, *new)), third[0]
    raise AssertionError("no host on two networks with other hosts on each: the test proves nothing")


@pytest.mark.parametrize("guard", ["kept", "widened"])
def test_a_change_on_two_of_a_hosts_networks_is_not_spliced(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch,
                                                           patched: list[str], spliced: list[str], guard: str) -> None:
    """Mutation "one-network guard widened": ``_touched_network`` giving the first of several
    touched networks; the host on both is spliced on the first alone and differs from the cold
    plan. Kept: it is patched (br-tun's flows planned again), not spliced, and equal."""
    if guard == "widened":
        def first(ctx: ovs_tun.OvsContext, vlans: tuple[ovs_tun.LocalVlan, ...], dirty: frozenset[str]
                  ) -> ovs_tun.LocalVlan | None:
            types = ctx.tunnel_types
            return next((v for v in vlans if v.network_id in dirty and v.segment.network_type in types), None)
        monkeypatch.setattr(ovs_tun, "_touched_network", first)
    changed, host = _two_networks(cloud)
    planned, _kept, _before, after = _as_the_agents(cloud, lambda _c: changed)
    differing = _differing(planned, _cold(after))
    if guard == "kept":
        assert differing == [] and host in patched and host not in spliced
    else:
        assert host in spliced and host in differing


@pytest.mark.parametrize("guard", ["kept", "lying"])
def test_what_was_kept_of_another_snapshot_is_not_spliced_from(cloud: CloudSnapshot, spliced: list[str],
                                                                 guard: str) -> None:
    """A fresh snapshot carried first from an older one (``carry_from(first, after)``: what is
    kept of br-tun's facts is the first's), then planned with the snapshot the hosts were planned
    on (``previous=second``): no host is spliced from the first's facts. Mutation "snapshot guard
    lying": the name kept beside those facts set to the second snapshot's; then the network's
    hosts and ports are read as they were on the first (a port moved from its last host to its
    first since), the edits land in the wrong places and the re-plan differs from the cold plan."""
    net = cloud.networks[0].id
    on_net = [p for p in _instance_ports(cloud) if p.network_id == net]
    rank = {h.name: int(h.tunnel_ip or 0) for h in cloud.deployment.hosts}
    on_net.sort(key=lambda p: rank[p.binding_host])
    victim, to = on_net[-1], on_net[0].binding_host
    first = fresh(cloud)
    plan_hosts(first, _names(first))
    second_cloud = fresh(cloud, ports=tuple(dataclasses.replace(p, binding_host=to) if p is victim else p
                                            for p in cloud.ports))
    second = fresh(second_cloud)
    plan_hosts(second, _names(second), previous=first)
    after = fresh(second_cloud)
    assert carry_from(first, after)
    if guard == "lying":
        after._index[("@tunnels_before_of",)] = plan._serial(second)  # type: ignore[index]
    before_count = len(spliced)
    planned = plan_hosts(after, _names(after), previous=second)
    differing = _differing(planned, _cold(after))
    if guard == "kept":
        assert differing == [] and len(spliced) == before_count
    else:
        assert len(spliced) > before_count and set(differing) & set(spliced[before_count:])


def test_the_flood_flow_kept_when_a_host_joins_is_seen(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch,
                                                       spliced: list[str]) -> None:
    """Mutation "flood flow kept": ``spliced_network``'s answer with the last flood flow; a host
    joining the network is then missing from the spliced hosts' flood lists."""
    real = ovs.spliced_network

    def stale(ctx: ovs.OvsContext, vlans: Any, ofports: Any, tun: Any, since: object) -> Any:
        got = real(ctx, vlans, ofports, tun, since)
        if got is None:
            return None
        at, batch, _flood, fe, oe = got
        return at, batch, tun[at + 1], fe, oe
    monkeypatch.setattr(ovs, "spliced_network", stale)
    planned, _kept, _before, after = _as_the_agents(cloud, _added_new_host_on_net)
    assert spliced and set(_differing(planned, _cold(after))) & set(spliced)


def test_the_old_hosts_read_from_the_new_snapshot_is_seen(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch,
                                                          spliced: list[str]) -> None:
    """Mutation "old hosts from the new snapshot": ``_old_ranks`` given the fresh snapshot's hosts
    of the network; a port moved between two hosts of the network keeps its count of ports, and
    the edits land in the wrong places."""
    real = ovs_tun._old_ranks

    def new_ones(ctx: ovs_tun.OvsContext, _old: Any, net: str, rank: Any) -> tuple[list[int], list[int]]:
        return real(ctx, ovs_tun._by_network(ctx), net, rank)
    monkeypatch.setattr(ovs_tun, "_old_ranks", new_ones)
    victim = _instance_ports(cloud)[5]
    on_net = sorted({p.binding_host for p in cloud.ports if p.network_id == victim.network_id} - {victim.binding_host})
    assert on_net
    moved = fresh(cloud, ports=tuple(dataclasses.replace(p, binding_host=on_net[-1]) if p is victim else p
                                     for p in cloud.ports))
    planned, _kept, _before, after = _as_the_agents(cloud, lambda _c: moved)
    assert spliced and set(_differing(planned, _cold(after))) & set(spliced)
