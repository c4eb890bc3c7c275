"""A re-plan after one change, made with everything the planners keep from the plans before it, is
exactly a cold plan of the same snapshot (issue #17): for a port added, removed, moved to another
security group, turned down, and added where it brings new tunnels (which renumber later tunnel
ports), on a fresh snapshot (new objects, as the server loads them), with l2population on and off.
The hosts ``hosts_affected_by_change`` leaves out plan exactly as before."""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Callable

import pytest

import neutrino.host
import neutrino.plan
from neutrino.host.state import HostState
from neutrino.plan import InputsMemo, hosts_affected_by_change, l3, ovs, plan_cloud, plan_host, plan_hosts
from neutrino.plan.ovs_kept import Kept
from neutrino.services.snapshot import CloudSnapshot, Port, SecurityGroup, SecurityGroupRule
from tests.plan.benchmod import plan_bench


def forget_everything() -> int:
    """Drop every kept piece and cache of the planners and host models (every ``InputsMemo``,
    ``Kept`` and ``lru_cache`` at module level); how many dropped."""
    dropped = 0
    if neutrino.plan._LAST:  # each host's last plan (the patches')
        neutrino.plan._LAST.clear()
        dropped += 1
    for package in (neutrino.plan, neutrino.host):
        modules = [package] + [importlib.import_module(info.name)
                               for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")]
        for module in modules:  # (the package's own memos too: ``plan._NUMBERED``)
            for value in list(vars(module).values()):
                if isinstance(value, InputsMemo) and value.kept:
                    value.kept.clear()
                    dropped += 1
                elif isinstance(value, Kept) and value.items:
                    value.items.clear()
                    dropped += 1
                elif isinstance(value, functools._lru_cache_wrapper) and value.cache_info().currsize:
                    value.cache_clear()
                    dropped += 1
    return dropped


def fresh(cloud: CloudSnapshot, **tables: object) -> CloudSnapshot:
    """``cloud`` (with ``tables`` replaced) made of new objects throughout, as ``snapshot.load``
    gives them: nothing can be found again by identity."""
    fields = {f.name: getattr(cloud, f.name) for f in dataclasses.fields(cloud) if f.name != "_index"}
    fields.update(tables)
    return CloudSnapshot(**copy.deepcopy(fields))


def _build(hosts: int, ports: int, nets: int, *, l2population: bool = True) -> CloudSnapshot:
    cloud: CloudSnapshot = plan_bench().build(hosts, ports, nets)
    if not l2population:
        cloud = fresh(cloud, deployment=dataclasses.replace(cloud.deployment, l2population=False))
    return cloud


def _with_web_group(cloud: CloudSnapshot) -> CloudSnapshot:
    """A second group that lets the default group's members in (a remote-group rule)."""
    web = SecurityGroup("sg-web", "web", "demo", False, True, (
        SecurityGroupRule("w1", "sg-web", "ingress", "IPv4", "tcp", 80, 80, None, "sg-default"),))
    return fresh(cloud, security_groups=(*cloud.security_groups, web))


def _ports(cloud: CloudSnapshot, change: Callable[[list], list]) -> CloudSnapshot:  # type: ignore[type-arg]
    return fresh(cloud, ports=tuple(change(list(cloud.ports))))


def _new_port(cloud: CloudSnapshot, template: Port, network_id: str) -> Port:
    sub = cloud.subnets_of(network_id)[0]
    return dataclasses.replace(template, id="0000aaaa-0000-4000-8000-000000000001", network_id=network_id,
                               mac_address="fa:16:3e:7f:00:01", device_id="vm-new",
                               fixed_ips=(dataclasses.replace(template.fixed_ips[0], subnet_id=sub.id,
                                                              ip_address=sub.cidr[200]),))


def add_port(cloud: CloudSnapshot) -> CloudSnapshot:
    """A second port of a host on a network it has a port on (its local VLANs stay as they were;
    the hosts on the network get one more l2population flow)."""
    template = [p for p in cloud.ports if p.device_owner == "compute:nova"][4]
    return _ports(cloud, lambda ps: [*ps, _new_port(cloud, template, template.network_id)])


def add_port_with_new_tunnels(cloud: CloudSnapshot) -> CloudSnapshot:
    """A port of the first compute (the lowest tunnel IP but the network host's) on a network it
    had no port on, where a host shares no network with it: that host gets a tunnel to it, which
    takes the place of its tunnels to later hosts (renumbered)."""
    first = cloud.deployment.hosts[1].name
    template = next(p for p in cloud.ports if p.binding_host == first and p.device_owner == "compute:nova")
    mine = {p.network_id for p in cloud.ports_on_host(first)}

    def shares(host: str) -> bool:
        return bool(mine & {p.network_id for p in cloud.ports_on_host(host)})
    net = next(n for n in cloud.networks if n.id not in mine and any(
        not shares(p.binding_host) for p in cloud.ports_on_network(n.id) if p.device_owner == "compute:nova"))
    new = _new_port(cloud, template, net.id)
    return _ports(cloud, lambda ps: [*ps, new])


def remove_port(cloud: CloudSnapshot) -> CloudSnapshot:
    victim = [p for p in cloud.ports if p.device_owner == "compute:nova"][3]
    return _ports(cloud, lambda ps: [p for p in ps if p.id != victim.id])


def move_group(cloud: CloudSnapshot) -> CloudSnapshot:
    mover = [p for p in cloud.ports if p.device_owner == "compute:nova"][5]
    return _ports(cloud, lambda ps: [dataclasses.replace(p, security_group_ids=("sg-web",)) if p.id == mover.id
                                     else p for p in ps])


def port_down(cloud: CloudSnapshot) -> CloudSnapshot:
    """The last port (``add_port``'s, in the test) turned down: its host's local VLANs stay, a
    port of the host on the same network is still up."""
    downed = cloud.ports[-1]
    return _ports(cloud, lambda ps: [dataclasses.replace(p, admin_state_up=False) if p.id == downed.id
                                     else p for p in ps])


def _instance_ports(cloud: CloudSnapshot) -> int:
    return sum(p.device_owner == "compute:nova" for p in cloud.ports)


CHANGES = {"port added": add_port, "port added, new tunnels": add_port_with_new_tunnels,
           "port removed": remove_port, "group moved": move_group, "port down": port_down}


def _tunnel_ports(state: HostState) -> list[tuple[str, object]]:
    show = state.ovs.flows_of("br-tun")
    assert show is not None and show.ports is not None
    return [(p.name, p.number) for p in show.ports.ports if p.name.startswith("vxlan-")]


@pytest.mark.parametrize("l2population", [True, False])
@pytest.mark.parametrize("change", list(CHANGES))
def test_replanned_hosts_are_the_cold_plan(change: str, l2population: bool) -> None:
    sparse = change == "port added, new tunnels"  # hosts that share no network
    before = _with_web_group(_build(14, 40 if sparse else 70, 10 if sparse else 7, l2population=l2population))
    if change == "port down":
        before = add_port(before)
    after = CHANGES[change](before)
    names = [h.name for h in before.deployment.hosts]
    planned_before = {h.name: h for h in plan_cloud(before)}  # what the agents hold
    affected = hosts_affected_by_change(before, after)
    assert affected is not None and 1 <= len(affected) < len(names)
    replanned = plan_hosts(fresh(after), affected)
    assert forget_everything() > 10
    cold_cloud = fresh(after)
    cold = {n: plan_host(cold_cloud, n) for n in names}
    for name in names:
        if name in replanned:
            assert replanned[name] == cold[name], f"{change}: {name} re-planned differs from a cold plan"
            assert repr(replanned[name]) == repr(cold[name])
        else:
            assert planned_before[name] == cold[name], f"{change}: {name} changed but was not re-planned"
    assert any(replanned[n] != planned_before[n] for n in affected), "the change changed no plan"
    if sparse and l2population:  # some host got a tunnel, and its later tunnels were renumbered
        renumbered = [n for n in affected if len(_tunnel_ports(cold[n])) > len(_tunnel_ports(planned_before[n]))
                      and set(_tunnel_ports(planned_before[n])) - set(_tunnel_ports(cold[n]))]
        assert renumbered, "no tunnel port renumbered"


def test_kept_pieces_come_back_by_identity() -> None:
    """A re-plan of the same content from new objects gives back the kept pieces themselves (the
    host side, the ports' views, the assembled flows), and an unchanged host's whole plan is equal."""
    cloud = _build(8, 40, 4)
    first = {n: plan_host(cloud, n) for n in ("compute0001", "network")}
    sides = {n: ovs._KEPT_SIDES.kept[n][1] for n in first}
    views = {n: ovs._KEPT_OFPORTS.items[(n,)][1] for n in first}
    router = l3._PLANNED.kept[("network", "router-1")][1]
    again = fresh(cloud)
    for name, state in first.items():
        assert plan_host(again, name) == state
        assert ovs._KEPT_SIDES.kept[name][1] is sides[name]
        assert ovs._KEPT_OFPORTS.items[(name,)][1] is views[name]
    assert l3._PLANNED.kept[("network", "router-1")][1] is router
    # another cookie is another plan: nothing of the first comes back
    other = plan_host(fresh(cloud), "compute0001")
    assert ovs.plan_ovs(again, "compute0001", cookie=0x5) != ovs.plan_ovs(again, "compute0001")
    assert other == first["compute0001"]


def test_a_planned_batch_is_promoted_not_walked() -> None:
    """After a batch the collector is on again, nothing is left frozen, and what the batch made
    waits in the oldest generation (the young one is not holding the plans for a pass over them);
    with the collector off before, it stays off and its generations are left alone."""
    import gc

    cloud = _build(6, 30, 3)
    assert gc.isenabled()
    gc.collect()
    plan_cloud(cloud)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert gc.get_count()[0] < 700  # below the first generation's threshold: no pass is due
    gc.disable()
    try:
        plan_hosts(fresh(cloud), [h.name for h in cloud.deployment.hosts])
        assert not gc.isenabled() and gc.get_count()[0] > 700  # the batch's objects stay young
    finally:
        gc.enable()
