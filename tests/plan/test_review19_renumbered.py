"""Review 19 (issue #17) of replan18: a host whose br-tun tunnel list grew or shrank after a change
elsewhere is patched from its last plan (``ovs.replanned_flows`` gives ``planned_ovs``'s pieces with
a new ports view, ``plan._patched`` puts the new OVSDB view, ``ofctl show`` and origins into the
last state and keeps the rest).

replan18's own tests walk VXLAN clouds with l2population. Here, on one small cloud of a network
host and six computes, the layouts its path must hold on: the OVS firewall (br-int's flows by port
number) and the hybrid one, VXLAN, GRE and provider VLAN networks on the same hosts (br-eth1's
ports beside br-tun's tunnels), l2population off and the older agents' layouts (tunnels to every
tunnel host: the path never taken), the network host (DHCP and a router: its other planners run
again) and DVR hosts (planned in full). The changes: one tunnel gained, several at once, one lost,
gained on one type and lost on another in one change, a tunnel gained beside a change of the host's
own port, a host new to a provider network only, and chains of them (each host's plan the patch of
its patch). Each test counts the path taken (else it proves nothing) and compares every host with a
cold plan (``==`` and ``repr``: the origins ``neutrino`` shows are in it); and the simulator's
world, refreshed with the patched plans, traces as when refreshed with the cold ones.

(In the review, beside these: ``_walk`` of tests/plan/test_review11_patch.py over 110 random clouds
(176 renumbered re-plans), 60 without l2population on VXLAN and GRE, 40 with the OVS firewall on
VXLAN, GRE and VLAN (116), 40 of Grizzly GRE, 30 steps each; chains of 40 port changes on the bench
cloud, both firewalls, three seeds (376): no step differed from its cold plan. Mutations caught: the
ports' origins of before kept, the last ports view remembered for the next patch, the OVSDB view
and ``ofctl show`` of before kept.)"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable

import pytest

from neutrino.host.state import HostState
from neutrino.plan import hosts_affected_by_change, plan_hosts
from neutrino.scenarios.model import Deployment, VlanRange
from neutrino.services.snapshot import CloudSnapshot, FixedIP, Network, Port, Router, Segment, Server, Subnet
from neutrino.sim.cloud import refresh_world, world_of
from neutrino.sim.world import World
from tests.plan import replan_kit, test_replan18_renumbered
from tests.plan.test_replan8_previous import _cold, _differing, _names
from tests.plan.test_replan_kept import fresh
from tests.plan.test_review9_carry import _host
from tests.plan.test_review11_patch import _groups
from tests.sim.test_living_world import probes

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
patched = replan_kit.patched


renumbered = test_replan18_renumbered.renumbered  # (the hosts replan18's path made: the shared fixture)


# -- the cloud and its changes --------------------------------------------------------------------

#: the networks: (type, the computes with a port there); the network host serves DHCP on each and
#: routes the first two
NETS: tuple[tuple[str, tuple[int, ...]], ...] = (("vxlan", (1, 2, 3)), ("gre", (2, 4)), ("vlan", (1, 5)),
                                                 ("vxlan", (3, 5)))


def _with_uplinks(cloud: CloudSnapshot, uplinks: tuple[tuple[str, str], ...]) -> CloudSnapshot:
    """``cloud`` with every host's ``uplinks`` (the NICs plugged into its physical bridges) replaced:
    without one, ``br-eth1`` reaches no other host and the VLAN network's guests get no DHCP answer."""
    dep = cloud.deployment
    hosts = tuple(dataclasses.replace(h, uplinks=uplinks) for h in dep.hosts)
    return dataclasses.replace(cloud, deployment=dataclasses.replace(dep, hosts=hosts))


def _cloud(*, firewall: str = "openvswitch", generation: str = "modern", l2population: bool = True,
           types: tuple[str, ...] = ("vxlan", "gre", "vlan"), dvr: bool = False) -> CloudSnapshot:
    """A network host and six computes (compute6 on no network yet), the networks of :data:`NETS`
    of the deployment's ``types`` (a VLAN one on ``physnet1``, every host's ``br-eth1``)."""
    dep = Deployment(tenant_network_types=types, network_vlan_ranges=(VlanRange("physnet1", 100, 199),),
                     l2population=l2population, firewall_driver=firewall, generation=generation,
                     router_distributed=dvr, hosts=tuple(_host(i, dvr) for i in range(7)))
    nets, subs, ports, qrs = [], [], [], []
    for k, (t, computes) in enumerate(NETS):
        if t not in types:
            continue
        nid, sid, cidr = f"net-{k}", f"sub-{k}", ipaddress.ip_network(f"10.{k}.0.0/24")
        nets.append(Network(nid, f"net{k}", "demo", True, "ACTIVE", False, False, 1500 if t == "vlan" else 1450,
                            True, Segment(t, "physnet1" if t == "vlan" else None, 100 + k), (sid,)))
        subs.append(Subnet(sid, f"sub{k}", "demo", nid, 4, cidr, cidr[1], (), (), (), True, None, None))
        ports.append(Port(f"dhcp-{k}", "", "demo", nid, f"fa:16:3e:00:00:{k:02x}", True, "ACTIVE", f"dhcp-{nid}",
                          "network:dhcp", (FixedIP(sid, cidr[2]),), (), False, (), "network", "ovs"))
        if k < 2:
            owner = "network:router_interface_distributed" if dvr else "network:router_interface"
            ports.append(Port(f"qr-{k}", "", "demo", nid, f"fa:16:3e:01:00:{k:02x}", True, "ACTIVE", "router-1",
                              owner, (FixedIP(sid, cidr[1]),), (), False, (), "network", "ovs"))
            qrs.append(f"qr-{k}")
        ports += [_port(firewall, k, i, i) for i in computes]
    routers = (Router("router-1", "r1", "demo", True, "ACTIVE", "network", None, tuple(qrs), (),
                      distributed=dvr),) if qrs else ()
    return CloudSnapshot(dep, tuple(nets), tuple(subs), tuple(ports), routers, (), _groups(), ())


def _port(firewall: str, k: int, i: int, n: int) -> Port:
    """Port ``n`` on network ``k``, bound to compute ``i``, in "plain" (a group no rule names as
    remote: the hosts beside it may be patched)."""
    hybrid = firewall == "iptables_hybrid"
    return Port(f"port-{k}-{n}", "", "demo", f"net-{k}", f"fa:16:3e:02:{k:02x}:{n:02x}", True, "ACTIVE", f"vm-{n}",
                "compute:nova", (FixedIP(f"sub-{k}", ipaddress.ip_network(f"10.{k}.0.0/24")[10 + n]),),
                ("sg-plain",), True, (), f"compute{i}", "ovs", (("ovs_hybrid_plug", hybrid), ("port_filter", True)))


def _on(cloud: CloudSnapshot, k: int) -> set[str]:
    return {p.binding_host for p in cloud.ports if p.network_id == f"net-{k}"}


def _added(cloud: CloudSnapshot, k: int, computes: tuple[int, ...]) -> CloudSnapshot:
    """A port on network ``k`` on each of ``computes`` (numbered after every port of the cloud)."""
    firewall = cloud.deployment.firewall_driver
    n = 1 + max(int(p.id.rsplit("-", 1)[1]) for p in cloud.ports if p.id.startswith("port-"))
    new = tuple(_port(firewall, k, i, n + j) for j, i in enumerate(computes))
    return dataclasses.replace(cloud, ports=(*cloud.ports, *new))


def _removed(cloud: CloudSnapshot, k: int, compute: int) -> CloudSnapshot:
    """Compute ``compute``'s ports on network ``k`` removed (it leaves the network)."""
    return dataclasses.replace(cloud, ports=tuple(p for p in cloud.ports if not (
        p.network_id == f"net-{k}" and p.binding_host == f"compute{compute}")))


def _mac(cloud: CloudSnapshot, pid: str) -> CloudSnapshot:
    return dataclasses.replace(cloud, ports=tuple(dataclasses.replace(p, mac_address="fa:16:3e:7e:00:01")
                                                  if p.id == pid else p for p in cloud.ports))


CHANGES: dict[str, Callable[[CloudSnapshot], CloudSnapshot]] = {
    "one tunnel gained": lambda c: _added(c, 0, (4,)),
    "several tunnels gained at once": lambda c: _added(c, 0, (4, 6)),
    "a tunnel gained on each of two networks": lambda c: _added(_added(c, 0, (6,)), 1, (6,)),
    "one tunnel lost": lambda c: _removed(c, 0, 1),
    "gained on gre, lost on vxlan": lambda c: _added(_removed(c, 0, 3), 1, (3,)),
    "gained beside a change of the host's own port": lambda c: _mac(_added(c, 0, (6,)), "port-0-2"),
    "a host new to a provider network only": lambda c: _added(c, 2, (6,)),
}


def _as_the_agents(cloud: CloudSnapshot, after_cloud: CloudSnapshot, *, every_host: bool = False
                   ) -> dict[str, HostState]:
    """Every host planned on a fresh ``cloud``, then ``after_cloud`` planned as the agents do (the
    hosts ``hosts_affected_by_change`` names with ``previous=``, the others kept), or every host
    with ``previous=``."""
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))
    after = fresh(after_cloud)
    touched = hosts_affected_by_change(before, after)
    assert touched is not None
    plans.update(plan_hosts(after, _names(after) if every_host else touched, previous=before))
    return plans


LAYOUTS: dict[str, dict[str, object]] = {
    "ovs firewall": {},
    "hybrid firewall": {"firewall": "iptables_hybrid"},
    "hybrid firewall, gre and vlan": {"firewall": "iptables_hybrid", "types": ("gre", "vlan")},
    "ovs firewall, no l2population": {"l2population": False},
    "havana": {"firewall": "iptables_hybrid", "generation": "havana"},
}


def _tunnels_follow_ports(layout: dict[str, object]) -> bool:
    """Whether a host's tunnels are those to the hosts sharing its networks (the modern agents with
    l2population), else to every tunnel host (a port change elsewhere never changes them)."""
    return layout.get("l2population", True) is True and layout.get("generation", "modern") == "modern"


def _types(layout: dict[str, object]) -> tuple[str, ...]:
    """The layout's tenant network types (:func:`_cloud`'s default when it does not say)."""
    types = layout.get("types", ("vxlan", "gre", "vlan"))
    assert isinstance(types, tuple)
    return types


def _applies(layout: dict[str, object], change: str) -> bool:
    """Whether ``change`` can change some host's tunnels in ``layout`` (its networks exist)."""
    types = _types(layout)
    needs = {"one tunnel gained": {"vxlan"}, "several tunnels gained at once": {"vxlan"},
             "a tunnel gained on each of two networks": {"vxlan", "gre"}, "one tunnel lost": {"vxlan"},
             "gained on gre, lost on vxlan": {"vxlan", "gre"},
             "gained beside a change of the host's own port": {"vxlan"},
             "a host new to a provider network only": {"vlan"}}[change]
    return needs <= set(types)


CASES = [(lay, ch) for lay in LAYOUTS for ch in CHANGES if _applies(LAYOUTS[lay], ch)]


@pytest.mark.parametrize(("layout", "change"), CASES, ids=[f"{lay}: {ch}" for lay, ch in CASES])
def test_tunnels_gained_and_lost_equal_cold_plans(layout: str, change: str, renumbered: list[str],
                                                  patched: list[str]) -> None:
    """The change planned as the agents do, then (on a fresh start) every host with ``previous=``:
    every host equals its cold plan. Where the change gives a host beside it other tunnels, that
    host took replan18's path (and was patched); without l2population, or with the older agents'
    layouts, a host's tunnels are to every tunnel host and the path is never taken."""
    cloud = _cloud(**LAYOUTS[layout])  # type: ignore[arg-type]
    after = CHANGES[change](cloud)
    cold = _cold(after)
    for every_host in (False, True):
        replan_kit.forget_all()
        renumbered.clear()
        patched.clear()
        plans = _as_the_agents(cloud, after, every_host=every_host)
        assert _differing(plans, cold) == []
        if not _tunnels_follow_ports(LAYOUTS[layout]) or change == "a host new to a provider network only":
            assert renumbered == []  # (no tunnel: br-eth1 is the provider network's way out)
            continue
        assert renumbered, "no host took the renumbered path: the case proves nothing"
        assert set(renumbered) <= set(patched)
        if change == "gained beside a change of the host's own port":
            assert "compute2" not in renumbered  # (its own port changed: planned in full)


def test_dvr_hosts_are_planned_in_full_and_equal_cold_plans(renumbered: list[str]) -> None:
    """DVR: br-int's flows read the routers (the host side is planned on the whole snapshot, never
    the very kept one), so a DVR compute whose tunnels changed is planned in full; every host still
    equals its cold plan."""
    cloud = _cloud(firewall="iptables_hybrid", dvr=True)
    for change in ("one tunnel gained", "one tunnel lost", "several tunnels gained at once"):
        after = CHANGES[change](cloud)
        replan_kit.forget_all()
        assert _differing(_as_the_agents(cloud, after, every_host=True), _cold(after)) == []
    assert renumbered == []


def test_the_network_host_is_merged_again_with_its_new_ports_view(renumbered: list[str],
                                                                  patched: list[str]) -> None:
    """The network host (DHCP and a router on the VXLAN network) gains a tunnel to compute6: its
    plan is remade with the other planners run again (not ``whole``) and the new OVS pieces; it
    equals its cold plan, and its ``ofctl show`` of br-tun lists the new tunnel."""
    cloud = _cloud()
    after = _added(cloud, 0, (6,))
    plans = _as_the_agents(cloud, after)
    assert "network" in renumbered and "network" in patched
    cold = _cold(after)
    assert _differing(plans, cold) == []
    before = _cold(cloud)["network"].ovs.flows_of("br-tun")
    now = plans["network"].ovs.flows_of("br-tun")
    assert before is not None and now is not None and before.ports is not None and now.ports is not None
    assert len(now.ports.ports) == len(before.ports.ports) + 1


@pytest.mark.parametrize("layout", ["ovs firewall", "hybrid firewall", "hybrid firewall, gre and vlan"], ids=str)
def test_a_chain_of_tunnels_gained_and_lost(layout: str, renumbered: list[str], patched: list[str]) -> None:
    """Compute6 joins and leaves the networks one change at a time (and compute1 leaves and comes
    back): each snapshot planned as the agents do with ``previous=`` the one before, so a host's
    plan is the patch of a patch of its renumbered plan. Every step equals its cold plan."""
    kw = LAYOUTS[layout]
    k = 0 if "vxlan" in _types(kw) else 1  # (the first tunnelled network)
    firewall = str(kw.get("firewall", "openvswitch"))
    steps: list[Callable[[CloudSnapshot], CloudSnapshot]] = [
        lambda c: _added(c, k, (6,)), lambda c: _removed(c, k, 1 if k == 0 else 2),
        lambda c: _added(c, k, (4, 5) if k == 0 else (1, 3)), lambda c: _removed(c, k, 6),
        lambda c: _mac(c, [p.id for p in c.ports if p.network_id == f"net-{k}" and p.device_id.startswith("vm-")][-1]),
        lambda c: dataclasses.replace(c, ports=(*c.ports, _port(firewall, k, 1, 99))),
        lambda c: _removed(c, k, 4 if k == 0 else 1)]
    cloud = _cloud(**kw)  # type: ignore[arg-type]
    snap = fresh(cloud)
    kept = dict(plan_hosts(snap, _names(snap)))
    done = []
    for i, step in enumerate(steps):
        cloud = step(cloud)
        now = fresh(cloud)
        touched = hosts_affected_by_change(snap, now)
        assert touched is not None
        kept.update(plan_hosts(now, touched, previous=snap))
        done.append((f"step {i}", cloud, dict(kept)))
        snap = now
    assert replan_kit.cold_differences(done) == []
    assert len(renumbered) >= 5 and set(renumbered) <= set(patched)


# -- the simulator's world, refreshed with the patched plans ------------------------------------------

def _with_servers(cloud: CloudSnapshot) -> CloudSnapshot:
    """``cloud`` with an instance on each compute port (the simulator's guests)."""
    servers = tuple(Server(f"srv-{p.id}", f"vm-{p.id}", "demo", p.binding_host, "ACTIVE", "m1", "cirros", (p.id,))
                    for p in cloud.ports if p.device_owner == "compute:nova")
    return dataclasses.replace(cloud, servers=servers)


@pytest.mark.parametrize("probed", [False, True], ids=["not probed before", "probed before"])
@pytest.mark.parametrize("change", ["one tunnel gained", "one tunnel lost", "several tunnels gained at once"],
                         ids=str)
def test_a_world_refreshed_with_the_patched_plans_traces_as_with_cold_plans(change: str, probed: bool,
                                                                            renumbered: list[str]) -> None:
    """The living agents' way: a world booted on the plans before (``probed``: and probed, so its
    guests and bridges learn), refreshed with the hosts whose patched plan changed (their new br-tun
    port numbers: learned flows are renumbered by port name), against the same world refreshed with
    those hosts' cold plans: the same hosts given, the same guests' addresses, the same probes
    between every two guests. (A new port is a new instance's: it boots through the new tunnels,
    DHCP from the network host's; no planner reads the servers, so for the patch only ports
    changed.)"""
    base = _with_uplinks(_cloud(firewall="iptables_hybrid"), (("br-eth1", "eth1"),))  # (VLAN guests boot too)
    cloud, after = _with_servers(base), _with_servers(CHANGES[change](base))
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))

    def booted() -> World:
        w = world_of(before, tuple(plans.values()))
        w.boot()
        if probed:
            probes(w, before)
        return w

    world, reference = booted(), booted()
    now = fresh(after)
    touched = hosts_affected_by_change(before, now)
    assert touched is not None
    replanned = plan_hosts(now, touched, previous=before)
    assert renumbered
    changed = [h for n, h in replanned.items() if plans[n] != h]
    assert set(renumbered) <= {h.name for h in changed}
    cold = _cold(after)
    cold_changed = [cold[n] for n in _names(after) if cold[n] != plans[n]]
    assert {h.name for h in changed} == {h.name for h in cold_changed}
    refresh_world(world, now, changed)
    refresh_world(reference, fresh(after), cold_changed)
    assert {n: str(g.address) for n, g in world.guests.items()} == {
        n: str(g.address) for n, g in reference.guests.items()}
    assert any(g.address is not None for n, g in world.guests.items() if n not in {s.name for s in cloud.servers}) \
        or change == "one tunnel lost"
    assert probes(world, after) == probes(reference, after)
