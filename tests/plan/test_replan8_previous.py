"""Issue #17, eighth round (replan8): the agents hand the previous snapshot to ``plan_hosts``
(``previous=``), which carries into the fresh snapshot's index what the ports changed between them
leave as it was (``plan.carry_from``: br-tun's per-network facts and shared flows, each host's
tunnel list where its networks did not change or the change left its sharing hosts as they were,
the DHCP agent's per-network port facts).

Every kind of change is planned on top of a plan of the snapshot before and must equal a cold plan
of the snapshot after (everything kept cleared, new objects throughout), both for every host and for
the hosts ``hosts_affected_by_change`` names (the rest kept, as the agents do); a previous snapshot
that is not the one the change was measured from, or an unrelated one, must not give a wrong plan;
the facts must really be carried (else that proves nothing); and with the change's networks left
out of the carry, or the tunnel-list check dropped, some re-plan must differ from the cold plan."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterator

import pytest

from neutrino.host.state import HostState
from neutrino.plan import carry_from, hosts_affected_by_change, ovs_tun, plan_hosts
from neutrino.scenarios.model import Host
from neutrino.services.snapshot import (
    CloudSnapshot,
    FixedIP,
    Network,
    Port,
    Router,
    SecurityGroupRule,
    Segment,
    Subnet,
)
from tests.plan.benchmod import plan_bench
from tests.plan.test_replan6_carried import _first_removed, _instance_ports, _moved, _removed
from tests.plan.test_replan_kept import forget_everything, fresh


@pytest.fixture(scope="module")
def cloud() -> CloudSnapshot:
    return plan_bench().build(12, 30, 8)  # (sparse: hosts share a network with some others only)  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _cleared() -> Iterator[None]:
    forget_everything()
    yield
    forget_everything()


def _new_port(cloud: CloudSnapshot, net_index: int, host: str, n: int = 1) -> Port:
    net = cloud.networks[net_index]
    like = next(p for p in _instance_ports(cloud) if p.network_id == net.id)
    sub = like.fixed_ips[0].subnet_id
    return dataclasses.replace(like, id=f"0000aaaa-0000-4000-8000-{n:012x}", mac_address=f"fa:16:3e:7e:00:{n:02x}",
                               binding_host=host, device_id=f"vm-new-{n}",
                               fixed_ips=(FixedIP(sub, ipaddress.ip_address(f"10.0.47.{200 + n}")),))


def _added_new_host_on_net(cloud: CloudSnapshot) -> CloudSnapshot:
    """One more port, on network 2, on a host with no port there yet: the network's other hosts get
    a tunnel to it (and renumber their later tunnels)."""
    net = cloud.networks[2]
    on_net = {p.binding_host for p in cloud.ports if p.network_id == net.id}
    host = next(h.name for h in cloud.deployment.hosts[1:] if h.name not in on_net)
    return fresh(cloud, ports=(*cloud.ports, _new_port(cloud, 2, host)))


def _added_known_host(cloud: CloudSnapshot) -> CloudSnapshot:
    """One more port on network 3, on a host that has one there already (no new tunnel). (Its id is
    not ``_added_new_host_on_net``'s: in a row, they would give two ports one id.)"""
    host = next(p.binding_host for p in _instance_ports(cloud) if p.network_id == cloud.networks[3].id)
    return fresh(cloud, ports=(*cloud.ports, _new_port(cloud, 3, host, 2)))


def _addresses(cloud: CloudSnapshot) -> CloudSnapshot:
    victim = _instance_ports(cloud)[7]
    sub = victim.fixed_ips[0].subnet_id
    return fresh(cloud, ports=tuple(
        dataclasses.replace(p, mac_address="fa:16:3e:7e:00:99", fixed_ips=(FixedIP(sub, ipaddress.ip_address(
            str(p.fixed_ips[0].ip_address).rsplit(".", 1)[0] + ".250")),)) if p is victim else p
        for p in cloud.ports))


def _down(cloud: CloudSnapshot) -> CloudSnapshot:
    victim = _instance_ports(cloud)[9]
    return fresh(cloud, ports=tuple(dataclasses.replace(p, admin_state_up=False) if p is victim else p
                                    for p in cloud.ports))


def _network_added(cloud: CloudSnapshot) -> CloudSnapshot:
    """A new network with a subnet, a DHCP port and an instance port (not only ports: all re-planned)."""
    cidr = ipaddress.ip_network("10.99.0.0/24")
    net = Network("net-new", "netnew", "demo", True, "ACTIVE", False, False, 1450, True,
                  Segment("vxlan", None, 999), ("sub-new",))
    sub = Subnet("sub-new", "subnew", "demo", net.id, 4, cidr, cidr[1], (), (), (), True, None, None)
    dhcp = dataclasses.replace(cloud.ports[0], id="dhcp-new", network_id=net.id, mac_address="fa:16:3e:7e:01:01",
                               device_id="dhcp-x", fixed_ips=(FixedIP(sub.id, cidr[2]),))
    port = dataclasses.replace(_instance_ports(cloud)[0], id="port-new", network_id=net.id,
                               mac_address="fa:16:3e:7e:01:02", fixed_ips=(FixedIP(sub.id, cidr[10]),))
    return fresh(cloud, networks=(*cloud.networks, net), subnets=(*cloud.subnets, sub),
                 ports=(*cloud.ports, dhcp, port))


def _subnet_removed(cloud: CloudSnapshot) -> CloudSnapshot:
    """Network 6's ports and subnet gone, the network without subnets."""
    net = cloud.networks[6]
    return fresh(cloud, networks=tuple(dataclasses.replace(n, subnet_ids=()) if n is net else n
                                       for n in cloud.networks),
                 subnets=tuple(s for s in cloud.subnets if s.network_id != net.id),
                 ports=tuple(p for p in cloud.ports if p.network_id != net.id))


def _router_interface(cloud: CloudSnapshot) -> CloudSnapshot:
    """Network 4's router interface removed (the port and the router's list of interfaces)."""
    router = cloud.routers[0]
    qr = next(p for p in cloud.ports if p.device_owner == "network:router_interface"
              and p.network_id == cloud.networks[4].id)
    return fresh(cloud, ports=tuple(p for p in cloud.ports if p is not qr),
                 routers=(dataclasses.replace(router, interface_port_ids=tuple(
                     i for i in router.interface_port_ids if i != qr.id)),))


def _rule_added(cloud: CloudSnapshot) -> CloudSnapshot:
    sg = cloud.security_groups[0]
    rule = SecurityGroupRule("r9", sg.id, "ingress", "IPv4", "tcp", 80, 80, None, None)
    return fresh(cloud, security_groups=(dataclasses.replace(sg, rules=(*sg.rules, rule)),))


def _host_added(cloud: CloudSnapshot) -> CloudSnapshot:
    dep = cloud.deployment
    host = Host("compute9999", frozenset({"compute"}), ipaddress.ip_address("10.201.9.9"),
                ipaddress.ip_address("10.201.9.9"))
    return fresh(cloud, deployment=dataclasses.replace(dep, hosts=(*dep.hosts, host)),
                 ports=(*cloud.ports, _new_port(cloud, 1, "compute9999")))


def _ha_router(cloud: CloudSnapshot) -> CloudSnapshot:
    """The router made HA (its ports then plugged on each of its hosts): nothing per network is carried
    while it is, and a port change on top must still give the cold plan (see ``test_ha_router``)."""
    return fresh(cloud, routers=(dataclasses.replace(cloud.routers[0], ha=True),))


def _unchanged(cloud: CloudSnapshot) -> CloudSnapshot:
    return fresh(cloud)


CHANGES: dict[str, Callable[[CloudSnapshot], CloudSnapshot]] = {
    "port added, host new to the network": _added_new_host_on_net, "port added, host known": _added_known_host,
    "port removed": _removed, "a host's only port on a network removed": _first_removed, "port moved": _moved,
    "MAC and address changed": _addresses, "port down": _down, "network added": _network_added,
    "subnet removed": _subnet_removed, "router interface removed": _router_interface,
    "security group rule added": _rule_added, "host added": _host_added, "nothing (new objects)": _unchanged}


def _names(cloud: CloudSnapshot) -> list[str]:
    return [h.name for h in cloud.deployment.hosts]


def _cold(after: CloudSnapshot) -> dict[str, HostState]:
    forget_everything()
    return plan_hosts(fresh(after), _names(after))


def _differing(planned: dict[str, HostState], cold: dict[str, HostState]) -> list[str]:
    return [h for h in cold if planned.get(h) != cold[h] or repr(planned.get(h)) != repr(cold[h])]


def _as_the_agents(cloud: CloudSnapshot, change: Callable[[CloudSnapshot], CloudSnapshot]
                   ) -> tuple[dict[str, HostState], dict[str, HostState], CloudSnapshot, CloudSnapshot]:
    """Plan every host of the snapshot before; then, as ``agent._replan`` does, the hosts the change
    touches with ``previous=`` (all of them when more than ports changed), the others kept."""
    before = fresh(cloud)
    kept = plan_hosts(before, _names(before))
    after = change(cloud)
    touched = hosts_affected_by_change(before, after)
    fresh_plans = plan_hosts(after, _names(after) if touched is None else touched, previous=before)
    return {n: fresh_plans[n] if n in fresh_plans else kept[n] for n in _names(after)}, kept, before, after


@pytest.mark.parametrize("change", list(CHANGES), ids=str)
def test_the_agents_replan_equals_a_cold_plan(cloud: CloudSnapshot, change: str) -> None:
    planned, _kept, _before, after = _as_the_agents(cloud, CHANGES[change])
    assert _differing(planned, _cold(after)) == []


@pytest.mark.parametrize("change", list(CHANGES), ids=str)
def test_every_host_replanned_with_previous_equals_a_cold_plan(cloud: CloudSnapshot, change: str) -> None:
    """(Every host, not only the touched ones: the carried facts of the hosts the change did not
    touch are read too.)"""
    before = fresh(cloud)
    plan_hosts(before, _names(before))
    after = CHANGES[change](cloud)
    planned = plan_hosts(after, _names(after), previous=before)
    assert _differing(planned, _cold(after)) == []


def test_changes_in_a_row(cloud: CloudSnapshot) -> None:
    """Several port changes one after the other, each carried from the one before, some hosts planned
    only now and then (their facts carried through snapshots they were not planned in)."""
    snaps = [fresh(cloud)]
    plan_hosts(snaps[0], _names(cloud))
    current = cloud
    for change in (_added_new_host_on_net, _removed, _moved, _added_known_host, _first_removed, _addresses):
        current = change(current)
        after = fresh(current)
        touched = hosts_affected_by_change(snaps[-1], after)
        assert touched is not None
        plan_hosts(after, touched, previous=snaps[-1])
        snaps.append(after)
    last = snaps[-1]
    planned = plan_hosts(last, _names(last), previous=snaps[-2])
    assert _differing(planned, _cold(last)) == []


def test_ha_router(cloud: CloudSnapshot) -> None:
    """With an HA router (a host's plugged ports are not only its own) a port change is re-planned
    equal to the cold plan."""
    ha = _ha_router(cloud)
    before = fresh(ha)
    plan_hosts(before, _names(ha))
    after = _added_new_host_on_net(ha)
    planned = plan_hosts(after, _names(after), previous=before)
    assert _differing(planned, _cold(after)) == []


@pytest.mark.parametrize("which", ["another pair's change", "unrelated", "the snapshot itself", "never planned"])
def test_a_previous_that_is_not_the_one_measured_gives_the_cold_plan(cloud: CloudSnapshot, which: str) -> None:
    """``hosts_affected_by_change(a, after)`` remembers its answer under ``a``; handing another
    snapshot ``b`` as ``previous`` must compare ``b`` and ``after`` again, not use ``a``'s answer
    (``b`` differs from ``after`` on other networks), and an unrelated one (another deployment) or
    ``after`` itself must carry nothing wrong."""
    a = fresh(cloud)
    plan_hosts(a, _names(cloud))
    after = _added_new_host_on_net(cloud)
    hosts_affected_by_change(a, after)
    if which == "another pair's change":
        b = _first_removed(_removed(cloud))  # other networks than the one ``after`` changed
        plan_hosts(b, _names(cloud))
    elif which == "unrelated":
        b = plan_bench().build(9, 40, 4)
        plan_hosts(b, _names(b))
    elif which == "the snapshot itself":
        b = after
    else:
        b = _moved(cloud)
    planned = plan_hosts(after, _names(after), previous=b)
    assert _differing(planned, _cold(after)) == []


def test_the_facts_are_carried(cloud: CloudSnapshot) -> None:
    """After a port is added on a host the network already has, the fresh snapshot holds the very
    tunnel lists of the snapshot before (derived, not remade) and the per-network facts of the other
    networks; the changed network's are made again."""
    before = fresh(cloud)
    plan_hosts(before, _names(cloud))
    after = _added_known_host(cloud)
    touched = hosts_affected_by_change(before, after)
    assert touched is not None and carry_from(before, after)
    plan_hosts(after, touched)
    changed_net = cloud.networks[3].id
    old_tunnels = before._index[("@host_tunnels",)]
    new_tunnels = after._index[("@host_tunnels",)]
    assert set(touched) <= set(new_tunnels)
    assert all(new_tunnels[h].out is old_tunnels[h].out for h in new_tunnels)  # the same ports, derived
    tables = [slot for slot in after._index[("@tun_tables",)] if slot[0] == "@l2pop_contents"]
    assert tables
    for slot in tables:
        old, new = before._index[slot], after._index[slot]
        assert all(new[n] is old[n] for n in new if n != changed_net)
        assert changed_net in new and new[changed_net] != old[changed_net]
    facts_old, facts_new = before._index["@dhcp_facts"], after._index["@dhcp_facts"]
    assert all(facts_new[n] is facts_old[n] for n in facts_new if n != changed_net)
    assert facts_new[changed_net] != facts_old[changed_net]


def test_a_host_new_to_a_network_is_not_derived(cloud: CloudSnapshot) -> None:
    """When the change gives a host's network a host it shares no network with, its tunnels are
    made again (a new tunnel port), not taken from the snapshot before."""
    before = fresh(cloud)
    plan_hosts(before, _names(cloud))
    after = _added_new_host_on_net(cloud)
    touched = hosts_affected_by_change(before, after)
    assert touched is not None
    plan_hosts(after, touched, previous=before)
    old_tunnels, new_tunnels = before._index[("@host_tunnels",)], after._index[("@host_tunnels",)]
    assert any(new_tunnels[h].out != old_tunnels[h].out for h in touched)


def test_not_carried_when_more_than_ports_changed(cloud: CloudSnapshot) -> None:
    before = fresh(cloud)
    plan_hosts(before, _names(cloud))
    for change in (_network_added, _rule_added, _host_added, _router_interface):
        assert not carry_from(before, change(cloud))


@pytest.mark.parametrize("left_out", ["networks", "hosts"])
def test_the_change_left_out_is_seen(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch, left_out: str) -> None:
    """With the changed ports' networks (or their hosts) left out of the carry, the changed
    network's facts (or the port's host's plugged ports) are carried stale and the re-plan differs
    from the cold plan: the checks above would catch it."""
    real = ovs_tun.carry_index

    def blind(before: CloudSnapshot, after: CloudSnapshot, networks: set[str], hosts: set[str],
              planned: list[str]) -> None:
        real(before, after, set() if left_out == "networks" else networks,
             set() if left_out == "hosts" else hosts, planned)
    monkeypatch.setattr(ovs_tun, "carry_index", blind)
    planned, _kept, _before, after = _as_the_agents(cloud, _added_known_host)
    assert _differing(planned, _cold(after))


def test_the_tunnel_check_dropped_is_seen(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the derived tunnel list taken whatever the changed network's hosts (the check dropped), a
    port on a host new to the network gives its other hosts no tunnel to it: the re-plan differs."""
    def always(ctx: ovs_tun.OvsContext, key: tuple[object, ...], vlans: tuple[ovs_tun.LocalVlan, ...]
               ) -> ovs_tun._HostTunnels | None:
        before = ctx.cloud._index.get(("@tunnels_before",))  # type: ignore[call-overload]
        old = None if before is None else before[1].get(ctx.host.name)
        if old is None or old.key != key:
            return None
        got = ovs_tun._HostTunnels(key, old.out, old.sharing, old.networks)
        got.tkey, got.view = old.tkey, old.view
        return got
    monkeypatch.setattr(ovs_tun, "_derived_tunnels", always)
    planned, _kept, _before, after = _as_the_agents(cloud, _added_new_host_on_net)
    assert _differing(planned, _cold(after))


def test_a_router_is_kept_out_of_the_carry_check(cloud: CloudSnapshot) -> None:
    """(A router change is not only ports: ``carry_from`` refuses it, and the agents plan every host.)"""
    changed = fresh(cloud, routers=(dataclasses.replace(cloud.routers[0], name="renamed"),))
    assert hosts_affected_by_change(fresh(cloud), changed) is None
    assert isinstance(cloud.routers[0], Router)


def test_the_agents_statuses_snapshot_carries(cloud: CloudSnapshot) -> None:
    """``agent.with_statuses`` (the snapshot the next pass compares with) carries what the planners
    made of the snapshot it came from, but for the networks of the ports whose status changed; a
    change on top of it, planned with it as ``previous``, equals the cold plan."""
    from neutrino.agent import with_statuses

    before = fresh(cloud)
    plan_hosts(before, _names(cloud))
    victim = _instance_ports(cloud)[4]
    statused = with_statuses(before, {victim.id: "DOWN"})
    assert statused.port(victim.id).status == "DOWN"
    carried = statused._index[("@host_tunnels",)]
    assert carried and all(not e.networks.__contains__(victim.network_id) for e in carried.values())
    after = _added_new_host_on_net(fresh(statused))
    touched = hosts_affected_by_change(statused, after)
    assert touched is not None
    planned = plan_hosts(after, _names(after), previous=statused)
    assert _differing(planned, _cold(after)) == []


VARIANTS: dict[str, dict[str, object]] = {
    "l2population off": {"l2population": False}, "grizzly": {"generation": "grizzly"},
    "havana": {"generation": "havana"}, "openvswitch firewall": {"firewall_driver": "openvswitch"}}


@pytest.mark.parametrize("variant", list(VARIANTS), ids=str)
@pytest.mark.parametrize("change", ["port added, host new to the network", "a host's only port on a network removed",
                                    "port moved"], ids=str)
def test_other_deployments(cloud: CloudSnapshot, variant: str, change: str) -> None:
    """(The same, with l2population off, the older agents' layouts and the OVS firewall.)"""
    other = fresh(cloud, deployment=dataclasses.replace(cloud.deployment, **VARIANTS[variant]))  # type: ignore[arg-type]
    planned, _kept, _before, after = _as_the_agents(other, CHANGES[change])
    assert _differing(planned, _cold(after)) == []
