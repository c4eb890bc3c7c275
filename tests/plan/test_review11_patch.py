"""Review of the patched re-plan (issue #17, replan9): ``plan_hosts(cloud, names, previous=before)``
builds a host's plan from its last one (``plan._LAST``, ``plan._patched``, ``ovs.replanned_flows``)
when the ports changed between the snapshots are on other hosts, none a ``network:`` port, none in a
group a rule names as remote: br-tun's flows re-planned and swapped in, the rest kept.

The earlier reviews' random walks (tests/plan/test_review9_carry.py) put every secured port in a group
that names itself as remote, so they almost never took the patch. Here the clouds' ports are mostly in
groups no rule names as remote (or have port security off), so most re-plans of the hosts beside a
change are patches; each test counts them (else it proves nothing). Every step of every walk is
compared, for every host, with a cold plan (``==`` and ``repr``; every kept piece cleared, a fresh
snapshot of new objects): long chains (up to 60 steps: patches of patches), two chains interleaved, a
``previous`` from the other chain, a snapshot planned twice, ``plan_ovs`` with the ARP responder or a
cookie run in between (it shares the kept pieces), statuses set as the agents set them
(``agent.with_statuses``), the agents' way (only the hosts ``hosts_affected_by_change`` names) and
every host; the OVS and the hybrid firewall, l2population on and off, VXLAN/GRE/VLAN mixes, the older
agents' layouts, DHCP served from a compute, allowed address pairs, port security off, ports moved,
unbound, down, their MACs, addresses, groups and networks changed.

Two guards are shown to matter (with them removed the same comparisons fail): re-planning br-tun's
flows at all, and keeping ``network:`` ports out of the patch (a DHCP port's address is in the
Grizzly hybrid firewall of every host with a secured port on its network)."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

import pytest

import neutrino.plan as plan
from neutrino.agent import with_statuses
from neutrino.host.state import HostState
from neutrino.plan import hosts_affected_by_change, plan_hosts
from neutrino.plan import ovs as plan_ovs_module
from neutrino.plan.ovs import plan_ovs
from neutrino.scenarios.model import Deployment, Host, VlanRange
from neutrino.services.snapshot import (
    AddressPair,
    CloudSnapshot,
    DhcpOpt,
    FixedIP,
    Network,
    Port,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Segment,
    Subnet,
)
from tests.plan import replan_kit
from tests.plan.test_replan8_previous import _cold, _differing, _names
from tests.plan.test_replan_kept import fresh
from tests.plan.test_review9_carry import _host

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
patched = replan_kit.patched


# -- clouds and changes ---------------------------------------------------------------------------

#: the groups a secured port is given: "plain" and "other" are named as remote by no rule (their
#: members' changes can be patched beside them), "web" names "app" as remote (an "app" member's
#: change cannot be patched)
GROUPS: tuple[tuple[str, ...], ...] = (("sg-plain",), ("sg-plain",), ("sg-plain",), ("sg-plain",), ("sg-other",),
                                       ("sg-plain", "sg-other"), ("sg-web",), ("sg-app",))


def _groups() -> tuple[SecurityGroup, ...]:
    def rule(rid: str, sg: str, direction: str, proto: str | None, lo: int | None, prefix: str | None = None,
             remote: str | None = None, ethertype: str = "IPv4") -> SecurityGroupRule:
        net = ipaddress.ip_network(prefix) if prefix else None
        return SecurityGroupRule(rid, sg, direction, ethertype, proto, lo, lo, net, remote)
    return (SecurityGroup("sg-plain", "plain", "demo", False, True, (
                rule("p1", "sg-plain", "ingress", "tcp", 22), rule("p2", "sg-plain", "egress", None, None),
                rule("p3", "sg-plain", "ingress", "icmp", None, "10.0.0.0/8"))),
            SecurityGroup("sg-other", "other", "demo", False, True, (
                rule("o1", "sg-other", "ingress", "tcp", 443, ethertype="IPv6"), rule("o2", "sg-other", "ingress",
                                                                                       "udp", 53))),
            SecurityGroup("sg-web", "web", "demo", False, True, (
                rule("w1", "sg-web", "ingress", "tcp", 80, remote="sg-app"), rule("w2", "sg-web", "egress", None,
                                                                                  None))),
            SecurityGroup("sg-app", "app", "demo", False, True, (rule("a1", "sg-app", "egress", None, None),)))


class _Maker:
    """Random clouds and changes from one seed, the ports mostly patchable beside them."""

    def __init__(self, seed: int, **deployment: object) -> None:
        self.rng = random.Random(seed)
        self.n = 1000
        self.deployment = deployment  # (fields fixed rather than drawn)

    def cloud(self) -> CloudSnapshot:
        rng = self.rng
        dvr = rng.random() < 0.1
        types = rng.choice([("vxlan",), ("gre",), ("vxlan", "gre"), ("vlan", "vxlan"), ("gre", "vlan"), ("vlan",)])
        generation = rng.choice(["modern"] * 6 + ["havana", "grizzly"])
        fw = rng.choice(["iptables_hybrid", "openvswitch"]) if generation == "modern" else "iptables_hybrid"
        dep = Deployment(tenant_network_types=types, network_vlan_ranges=(VlanRange("physnet1", 100, 199),),
                         l2population=rng.random() < 0.75, firewall_driver=fw, generation=generation,
                         router_distributed=dvr, hosts=tuple(_host(i, dvr) for i in range(rng.randint(3, 7))))
        dep = dataclasses.replace(dep, **self.deployment)  # type: ignore[arg-type]
        types = dep.tenant_network_types
        names = [h.name for h in dep.hosts]
        nets, subs, ports, qrs = [], [], [], []
        count = rng.randint(2, 4)
        for k in range(count):
            t = rng.choice(types)
            nid, sid, cidr = f"net-{k}", f"sub-{k}", ipaddress.ip_network(f"10.{k}.0.0/24")
            nets.append(Network(nid, f"net{k}", "demo", True, "ACTIVE", False, False, 1500 if t == "vlan" else 1450,
                                True, Segment(t, "physnet1" if t == "vlan" else None, 100 + k), (sid,)))
            subs.append(Subnet(sid, f"sub{k}", "demo", nid, 4, cidr, cidr[1], (), (), (), True, None, None))
            dhcp_host = "network" if rng.random() < 0.75 else rng.choice(names)  # (a compute's DHCP: not patched)
            ports.append(Port(f"dhcp-{k}", "", "demo", nid, f"fa:16:3e:00:00:{k:02x}", True, "ACTIVE",
                              f"dhcp-{nid}", "network:dhcp", (FixedIP(sid, cidr[2]),), (), False, (), dhcp_host, "ovs"))
            if rng.random() < 0.6:
                owner = "network:router_interface_distributed" if dep.router_distributed else "network:router_interface"
                ports.append(Port(f"qr-{k}", "", "demo", nid, f"fa:16:3e:01:00:{k:02x}", True, "ACTIVE", "router-1",
                                  owner, (FixedIP(sid, cidr[1]),), (), False, (), "network", "ovs"))
                qrs.append(f"qr-{k}")
        routers = (Router("router-1", "r1", "demo", True, "ACTIVE", "network", None, tuple(qrs), (),
                          distributed=dep.router_distributed),) if qrs else ()
        cloud = CloudSnapshot(dep, tuple(nets), tuple(subs), tuple(ports), routers, (), _groups(), ())
        for _ in range(rng.randint(4, 12)):
            cloud = self.add_port(cloud)
        return cloud

    def _address(self, cloud: CloudSnapshot, net: Network) -> FixedIP:
        used = {f.ip_address for p in cloud.ports for f in p.fixed_ips}
        cidr = cloud.subnet(net.subnet_ids[0]).cidr
        hi = min(250, cidr.num_addresses - 2)
        while (a := cidr[self.rng.randint(min(10, hi), hi)]) in used:
            pass
        return FixedIP(net.subnet_ids[0], a)

    @staticmethod
    def computes(cloud: CloudSnapshot) -> list[str]:
        return [h.name for h in cloud.deployment.hosts if h.has("compute")] or [cloud.deployment.hosts[0].name]

    @staticmethod
    def networks(cloud: CloudSnapshot) -> list[Network]:
        return [n for n in cloud.networks if n.subnet_ids and not n.external]

    def add_port(self, cloud: CloudSnapshot) -> CloudSnapshot:
        rng = self.rng
        net = rng.choice(self.networks(cloud))
        self.n += 1
        n = self.n
        host = rng.choice([*self.computes(cloud), "", "ghost"] if rng.random() < 0.05 else self.computes(cloud))
        secure = rng.random() < 0.85
        pairs = (AddressPair(ipaddress.ip_network(f"10.{rng.randint(0, 3)}.0.{rng.randint(100, 120)}/32"),
                             rng.choice(["", f"fa:16:3e:aa:00:{n % 256:02x}"])),) if secure and rng.random() < 0.3 else ()
        port = Port(f"port-{n:04d}", "", "demo", net.id, f"fa:16:3e:02:{n // 256 % 256:02x}:{n % 256:02x}",
                    rng.random() < 0.9, "ACTIVE", f"vm-{n}", "compute:nova", (self._address(cloud, net),),
                    rng.choice(GROUPS) if secure else (), secure, pairs, host, "ovs",
                    (("ovs_hybrid_plug", rng.random() < 0.8), ("port_filter", True)))
        ports = list(cloud.ports)
        ports.insert(rng.randint(0, len(ports)) if rng.random() < 0.1 else len(ports), port)
        return dataclasses.replace(cloud, ports=tuple(ports))

    def port_change(self, cloud: CloudSnapshot) -> tuple[str, CloudSnapshot]:
        rng = self.rng
        inst = [p for p in cloud.ports if p.is_instance_port]
        kind = rng.choice(["add", "add", "remove", "move", "move", "move", "mac", "ip", "admin", "pairs", "security",
                           "hybrid", "groups", "unbind", "status", "dhcp options", "network", "dhcp host", "two"])
        if not inst or kind == "add":
            return "add", self.add_port(cloud)
        v = rng.choice(inst)

        def altered(victim: Port, **kw: object) -> CloudSnapshot:
            return dataclasses.replace(cloud, ports=tuple(dataclasses.replace(p, **kw)  # type: ignore[arg-type]
                                                          if p is victim else p
                                                          for p in cloud.ports))
        if kind == "remove":
            return kind, dataclasses.replace(cloud, ports=tuple(p for p in cloud.ports if p is not v))
        if kind == "move":
            return kind, altered(v, binding_host=rng.choice(self.computes(cloud)))
        if kind == "mac":
            self.n += 1
            return kind, altered(v, mac_address=f"fa:16:3e:7e:{self.n // 256 % 256:02x}:{self.n % 256:02x}")
        if kind == "ip":
            return kind, altered(v, fixed_ips=(self._address(cloud, cloud.network(v.network_id)),))
        if kind == "network":
            net = rng.choice(self.networks(cloud))
            return kind, altered(v, network_id=net.id, fixed_ips=(self._address(cloud, net),))
        if kind == "admin":
            return kind, altered(v, admin_state_up=not v.admin_state_up)
        if kind == "pairs":
            if not v.port_security_enabled:
                return kind, cloud
            pairs = () if v.allowed_address_pairs else (AddressPair(ipaddress.ip_network("10.0.0.99/32"),
                                                                    rng.choice(["", "fa:16:3e:bb:bb:bb"])),)
            return kind, altered(v, allowed_address_pairs=pairs)
        if kind == "security":
            if v.port_security_enabled:
                return kind, altered(v, port_security_enabled=False, security_group_ids=(), allowed_address_pairs=())
            return kind, altered(v, port_security_enabled=True, security_group_ids=rng.choice(GROUPS))
        if kind == "groups":
            return kind, altered(v, security_group_ids=rng.choice(GROUPS)) if v.port_security_enabled else cloud
        if kind == "hybrid":
            return kind, altered(v, vif_details=(("ovs_hybrid_plug", not v.ovs_hybrid_plug), ("port_filter", True)))
        if kind == "status":
            return kind, altered(v, status="DOWN" if v.status == "ACTIVE" else "ACTIVE")
        if kind == "dhcp options":
            return kind, altered(v, extra_dhcp_opts=() if v.extra_dhcp_opts else (DhcpOpt("mtu", "1400", 4),))
        if kind == "unbind":
            return kind, altered(v, binding_host=rng.choice(["", "ghost"]))
        if kind == "two":
            first, once = self.port_change(cloud)
            second, twice = self.port_change(once)
            return f"{first} + {second}", twice
        dhcp = [p for p in cloud.ports if p.device_owner == "network:dhcp"]
        if not dhcp:  # (a host removed with them)
            return kind, cloud
        return kind, altered(rng.choice(dhcp), binding_host=rng.choice([h.name for h in cloud.deployment.hosts]))

    def other_change(self, cloud: CloudSnapshot) -> tuple[str, CloudSnapshot]:
        rng, dep = self.rng, cloud.deployment
        kind = rng.choice(["host added", "host removed", "l2population", "rule", "router down"])
        if kind == "host added":
            i = 1 + max((int(h.name[7:]) for h in dep.hosts if h.name.startswith("compute")), default=0)
            return kind, dataclasses.replace(cloud, deployment=dataclasses.replace(
                dep, hosts=(*dep.hosts, _host(i, dep.router_distributed))))
        if kind == "host removed":
            computes = [h for h in dep.hosts if h.has("compute")]
            if len(computes) < 2:
                return kind, cloud
            gone = rng.choice(computes)
            return kind, dataclasses.replace(cloud, ports=tuple(p for p in cloud.ports if p.binding_host != gone.name),
                                             deployment=dataclasses.replace(
                                                 dep, hosts=tuple(h for h in dep.hosts if h is not gone)))
        if kind == "l2population":
            return kind, dataclasses.replace(cloud, deployment=dataclasses.replace(
                dep, l2population=not dep.l2population))
        if kind == "rule":
            sg = cloud.security_groups[0]
            self.n += 1
            rule = SecurityGroupRule(f"rx{self.n}", sg.id, "ingress", "IPv4", "tcp", self.n, self.n, None, None)
            return kind, dataclasses.replace(cloud, security_groups=(
                dataclasses.replace(sg, rules=(*sg.rules, rule)), *cloud.security_groups[1:]))
        if not cloud.routers:
            return "nothing", cloud
        r = cloud.routers[0]
        return kind, dataclasses.replace(cloud, routers=(dataclasses.replace(r, admin_state_up=not r.admin_state_up),))


def _walk(maker: _Maker, steps: int, *, agents: bool, others: float = 0.06, between: float = 0.1) -> list[str]:
    """Two chains of snapshots from one random cloud (the first changed most), changed at random and
    planned with ``previous=`` (``agents``: at times only the hosts ``hosts_affected_by_change``
    names, the others kept; else every host); now and then the other chain's snapshot as
    ``previous``, a snapshot planned twice, ``plan_ovs`` with other arguments run on the snapshot
    about to be carried from, statuses set (``with_statuses``). Then every step compared with its
    cold plan: the steps that differ, described (the first three)."""
    rng = maker.rng
    start = maker.cloud()
    chains = [start, start if rng.random() < 0.5 else maker.port_change(start)[1]]
    last: list[CloudSnapshot | None] = [None, None]
    kept: list[dict[str, HostState]] = [{}, {}]
    done: list[tuple[str, CloudSnapshot, dict[str, HostState]]] = []
    for step in range(steps):
        c = rng.randrange(2) if rng.random() < 0.3 else 0
        roll = rng.random()
        if roll < 1 - others - 0.04:
            kind, now = maker.port_change(chains[c])
        elif roll < 1 - 0.04:
            kind, now = maker.other_change(chains[c])
        else:
            kind, now = "nothing", chains[c]
        snap, before = fresh(now), last[c]
        desc = f"step {step}, chain {c}: {kind}"
        if before is not None and rng.random() < between:
            for h in _names(before):
                if rng.random() < 0.5:
                    plan_ovs(before, h, arp_responder=rng.random() < 0.5, cookie=rng.choice([0, 7]))
            desc += " (plan_ovs with other arguments in between)"
        if before is None or set(kept[c]) != set(_names(snap)):
            planned = dict(plan_hosts(snap, _names(snap), previous=before))
        else:
            previous, other = before, last[1 - c]
            if rng.random() < 0.05 and other is not None:
                previous, desc = other, desc + " (previous: the other chain's)"
            touched = hosts_affected_by_change(before, snap)
            if touched is None or not agents or rng.random() < 0.4:
                planned = dict(plan_hosts(snap, _names(snap), previous=previous))
            else:
                replanned = plan_hosts(snap, touched, previous=previous)
                planned = {n: replanned.get(n, kept[c][n]) for n in _names(snap)}
            if rng.random() < 0.1:
                planned, desc = dict(plan_hosts(snap, _names(snap), previous=previous)), desc + " (planned twice)"
        kept[c] = planned
        done.append((desc, now, planned))
        if rng.random() < 0.3 and snap.ports:  # the snapshot with the statuses the agents reported
            victims = rng.sample(list(snap.ports), min(len(snap.ports), rng.randint(1, 3)))
            snap = with_statuses(snap, {v.id: rng.choice(["ACTIVE", "DOWN", "BUILD"]) for v in victims})
            now = dataclasses.replace(now, ports=snap.ports)
        chains[c], last[c] = now, snap
    out = []
    for desc, cloud, planned in done:
        differ = _differing(planned, _cold(cloud))
        if differ:
            out.append(f"{desc}: {differ}")
    return out[:3]


# -- the random walks -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [3, 13])
def test_random_walks_through_patches_equal_cold_plans(seed: int, patched: list[str]) -> None:
    """Random clouds, 24 changes each, as the agents plan them and every host at once. (In the review,
    260 seeds x 40 changes (3,500 patches), 60 trees of 40 snapshots (900), the examples with more
    ports, the benchmark's clouds, ``datapath_type="netdev"``, the planners' memos shrunk to 3 entries
    and two walks at once in two threads found no difference.)"""
    assert _walk(_Maker(seed), 24, agents=True) == []
    assert len(patched) >= 10, "the patch was hardly taken: the walk proves little"


@pytest.mark.parametrize(("deployment", "steps"), [
    ({"firewall_driver": "openvswitch", "generation": "modern", "l2population": True}, 50),
    ({"firewall_driver": "iptables_hybrid", "generation": "modern", "l2population": False,
      "tenant_network_types": ("gre", "vlan")}, 25),
    ({"firewall_driver": "iptables_hybrid", "generation": "grizzly", "l2population": True,
      "tenant_network_types": ("gre",)}, 20),
], ids=["ovs firewall", "hybrid, no l2population, gre+vlan", "grizzly"])
def test_long_chains_of_patches_of_patches(deployment: dict[str, object], steps: int, patched: list[str]) -> None:
    """Port changes one after the other (50 with the OVS firewall), every host planned with ``previous=``
    at each (each host's plan the patch of its patch, as long as the changes stay beside it)."""
    maker = _Maker(101, router_distributed=False, **deployment)
    assert _walk(maker, steps, agents=False, others=0.0, between=0.05) == []
    assert len(patched) >= steps // 2


@pytest.mark.parametrize("seed", [2])
def test_a_tree_of_snapshots_each_planned_with_an_earlier_previous(seed: int, patched: list[str]) -> None:
    """Each snapshot branches from a random earlier one (the last one half the time) and is planned
    with ``previous=`` its parent or any earlier snapshot (now and then none; at times the hosts
    ``hosts_affected_by_change`` names first, then all): the patch must hold whichever host's last plan
    it finds, on whichever branch."""
    maker = _Maker(seed)
    rng = maker.rng
    root = maker.cloud()
    snaps = [(root, fresh(root))]
    plan_hosts(snaps[0][1], _names(root))
    done = []
    for step in range(24):
        i = len(snaps) - 1 if rng.random() < 0.5 else rng.randrange(len(snaps))
        base, parent = snaps[i]
        kind, now = maker.port_change(base) if rng.random() < 0.93 else maker.other_change(base)
        snap = fresh(now)
        previous = parent if rng.random() < 0.6 else snaps[rng.randrange(len(snaps))][1]
        if rng.random() < 0.3:
            touched = hosts_affected_by_change(previous, snap)
            plan_hosts(snap, _names(snap) if touched is None else touched, previous=previous)
        planned = dict(plan_hosts(snap, _names(snap), previous=previous if rng.random() < 0.8 else None))
        done.append((f"step {step}: {kind}, from {i}", now, planned))
        if rng.random() < 0.2:
            snap = with_statuses(snap, {p.id: "DOWN" for p in rng.sample(list(snap.ports), 1)})
            now = dataclasses.replace(now, ports=snap.ports)
        snaps.append((now, snap))
    assert [f"{desc}: {d}" for desc, cloud, planned in done if (d := _differing(planned, _cold(cloud)))] == []
    assert len(patched) >= 5


# -- targeted cases -------------------------------------------------------------------------------

def _three_computes(firewall: str = "iptables_hybrid", generation: str = "modern") -> CloudSnapshot:
    """A network host (DHCP) and three computes on one VXLAN network with l2population; one
    port on each compute in "plain" (no remote group)."""
    dep = Deployment(tenant_network_types=("vxlan",), l2population=True, firewall_driver=firewall,
                     generation=generation, hosts=tuple(_host(i, False) for i in range(4)))
    cidr = ipaddress.ip_network("10.0.0.0/24")
    net = Network("net-0", "net0", "demo", True, "ACTIVE", False, False, 1450, True, Segment("vxlan", None, 100),
                  ("sub-0",))
    sub = Subnet("sub-0", "sub0", "demo", "net-0", 4, cidr, cidr[1], (), (), (), True, None, None)
    dhcp = Port("dhcp-0", "", "demo", "net-0", "fa:16:3e:00:00:00", True, "ACTIVE", "dhcp-net-0", "network:dhcp",
                (FixedIP("sub-0", cidr[2]),), (), False, (), "network", "ovs")
    ports = tuple(Port(f"port-{i}", "", "demo", "net-0", f"fa:16:3e:02:00:{i:02x}", True, "ACTIVE", f"vm-{i}",
                       "compute:nova", (FixedIP("sub-0", cidr[10 + i]),), ("sg-plain",), True, (), f"compute{i}",
                       "ovs", (("ovs_hybrid_plug", True), ("port_filter", True))) for i in (1, 2, 3))
    return CloudSnapshot(dep, (net,), (sub,), (dhcp, *ports), (), (), _groups(), ())


def _port(cloud: CloudSnapshot, pid: str, **kw: object) -> CloudSnapshot:
    return dataclasses.replace(cloud, ports=tuple(dataclasses.replace(p, **kw)  # type: ignore[arg-type]
                                                  if p.id == pid else p for p in cloud.ports))


def test_the_arp_responder_and_a_cookie_between_the_plan_and_its_patch(patched: list[str]) -> None:
    """``plan_ovs`` with the ARP responder and a cookie on the very snapshot (and hosts) whose plans
    would be patched next, and on the next snapshot before it is planned (they share the kept pieces
    with ``plan_host``): the plans equal the cold ones. (The kept host sides are then the other
    arguments': the patch is refused, a full plan made.)"""
    cloud = _three_computes()
    before = fresh(cloud)
    plan_hosts(before, _names(cloud))
    plan_ovs(before, "compute1", arp_responder=True, cookie=5)
    plan_ovs(before, "compute2", cookie=9)
    after_cloud = _port(cloud, "port-3", mac_address="fa:16:3e:7e:00:01")
    after = fresh(after_cloud)
    plan_ovs(after, "compute1", arp_responder=True)
    planned = dict(plan_hosts(after, _names(cloud), previous=before))
    assert _differing(planned, _cold(after_cloud)) == []
    assert "compute3" not in patched


def test_a_statuses_snapshot_planned_then_patched(patched: list[str]) -> None:
    """``with_statuses`` carries from the snapshot it came from and vouches for a patch: the hosts
    beside the port whose status changed, planned on it, are patches; a change on top patched again
    (the status's own host too now); each equal to its cold plan."""
    cloud = _three_computes("openvswitch")
    before = fresh(cloud)
    plan_hosts(before, _names(cloud))
    statused = with_statuses(before, {"port-1": "DOWN"})
    on_statused = dict(plan_hosts(statused, _names(cloud)))
    assert set(patched) >= {"compute2", "compute3"}
    nxt = _port(dataclasses.replace(cloud, ports=statused.ports), "port-3", mac_address="fa:16:3e:7e:00:01")
    after = fresh(nxt)
    planned = dict(plan_hosts(after, _names(cloud), previous=statused))
    assert patched.count("compute1") == 1  # (its own port's status changed, then beside port-3's new MAC)
    assert patched.count("compute2") == 2
    assert _differing(on_statused, _cold(dataclasses.replace(cloud, ports=statused.ports))) == []
    assert _differing(planned, _cold(nxt)) == []


@pytest.mark.parametrize("guard", ["br-tun re-planned", "network: ports"])
def test_the_guards_are_what_keeps_the_walks_exact(guard: str, monkeypatch: pytest.MonkeyPatch,
                                                   patched: list[str]) -> None:
    """With br-tun's flows taken from the last plan (not re-planned), a MAC changed on compute3 leaves
    compute1's l2population flow stale; with ``network:`` ports let into the patch, a DHCP port's new
    address leaves the computes' Grizzly firewalls (which let its replies in) stale. Both caught."""
    if guard == "br-tun re-planned":
        real = plan_ovs_module.replanned_flows

        def stale(cloud: CloudSnapshot, host: Host, last: plan_ovs_module.OvsParts, **kw: object
                  ) -> plan_ovs_module.OvsParts | None:
            got = real(cloud, host, last, **kw)  # type: ignore[arg-type]
            return None if got is None else last
        monkeypatch.setattr(plan_ovs_module, "replanned_flows", stale)
        cloud = _three_computes()
        change = _port(cloud, "port-3", mac_address="fa:16:3e:7e:00:01")
    else:
        monkeypatch.setattr(plan, "_patchable", lambda _cloud, ports: not any(
            p.security_group_ids for p in ports))  # (the "network:" check dropped)
        cloud = _three_computes(generation="grizzly")
        change = _port(cloud, "dhcp-0", fixed_ips=(FixedIP("sub-0", ipaddress.ip_address("10.0.0.3")),))
    before = fresh(cloud)
    plan_hosts(before, _names(cloud))
    planned = dict(plan_hosts(fresh(change), _names(cloud), previous=before))
    assert patched
    assert _differing(planned, _cold(change)) != []
