"""Planning a large cloud (a benchmark, not a test).

    .venv/bin/python bench/plan_bench.py [HOSTS] [PORTS] [--memory] [--replan] [--growth]

Builds a snapshot directly (1,000 hosts and 10,000 instance ports by default: one network host,
the rest computes; 100 VXLAN networks with a /20 subnet each, a DHCP port per network, a router on
every network, the default security group with ssh and icmp open, l2population on as large clouds
run it) and times ``plan_host`` for every host. Prints the total and per-host figures (CPU time:
the machine may be shared). ``--growth``: the same at 1/10, 3/10 and the full size.
``--replan``: then add one port and re-plan only the hosts it affects on a fresh snapshot, with
every host of the previous one planned before in the same process (as the in-process agents have
them), as the agents do: ``hosts_affected_by_change`` (timed apart, not in the median) then
``plan_hosts(..., previous=before)``, three such changes, their median reported; alternating with
them three planned the old way (``hosts_affected_by_port``, ``plan_hosts`` without the previous
snapshot: the figure rounds 3-7 reported). A sample of the other hosts' plans is checked unchanged.
"""

from __future__ import annotations

import ipaddress
import sys
import time
import tracemalloc
import uuid

from neutrino.plan import hosts_affected_by_change, hosts_affected_by_port, plan_cloud, plan_host, plan_hosts
from neutrino.scenarios.model import Deployment, Host
from neutrino.services.snapshot import (
    CloudSnapshot,
    FixedIP,
    Network,
    Port,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Segment,
    Server,
    Subnet,
)

ip = ipaddress.ip_address


def uid(kind: str, n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{kind}-{n}"))


def build(n_hosts: int, n_ports: int, n_nets: int = 100) -> CloudSnapshot:
    hosts = [Host("network", frozenset({"controller", "network"}), ip("10.200.0.1"), ip("10.200.0.1"))]
    hosts += [Host(f"compute{i:04d}", frozenset({"compute"}), ip(f"10.201.{i // 250}.{i % 250 + 1}"),
                   ip(f"10.201.{i // 250}.{i % 250 + 1}")) for i in range(n_hosts - 1)]
    dep = Deployment(tenant_network_types=("vxlan",), l2population=True, hosts=tuple(hosts))
    nets, subnets, ports, servers, routers = [], [], [], [], []
    sg = SecurityGroup("sg-default", "default", "demo", True, True, (
        SecurityGroupRule("r1", "sg-default", "ingress", "IPv4", "tcp", 22, 22, None, None),
        SecurityGroupRule("r2", "sg-default", "ingress", "IPv4", "icmp", None, None, None, None),
        SecurityGroupRule("r3", "sg-default", "egress", "IPv4", None, None, None, None, None)))
    details = (("ovs_hybrid_plug", True), ("port_filter", True))
    per_net = [0] * n_nets
    qr_ports = []
    for k in range(n_nets):
        nid, sid = uid("net", k), uid("subnet", k)
        cidr = ipaddress.ip_network(f"10.{k // 16}.{(k % 16) * 16}.0/20")
        nets.append(Network(nid, f"net{k}", "demo", True, "ACTIVE", False, False, 1450, True,
                            Segment("vxlan", None, 100 + k), (sid,)))
        subnets.append(Subnet(sid, f"subnet{k}", "demo", nid, 4, cidr, cidr[1], (), (), (), True, None, None))
        ports.append(Port(uid("dhcp", k), "", "demo", nid, f"fa:16:3e:00:{k // 256:02x}:{k % 256:02x}", True,
                          "ACTIVE", f"dhcp-{nid}", "network:dhcp", (FixedIP(sid, cidr[2]),), (), False, (),
                          "network", "ovs"))
        qr = Port(uid("qr", k), "", "demo", nid, f"fa:16:3e:01:{k // 256:02x}:{k % 256:02x}", True, "ACTIVE",
                  "router-1", "network:router_interface", (FixedIP(sid, cidr[1]),), (), False, (), "network",
                  "ovs")
        ports.append(qr)
        qr_ports.append(qr.id)
    routers.append(Router("router-1", "router1", "demo", True, "ACTIVE", "network", None, tuple(qr_ports), ()))
    for n in range(n_ports):
        k = n % n_nets
        per_net[k] += 1
        host = hosts[1 + n % (n_hosts - 1)].name
        pid = uid("port", n)
        addr = ipaddress.ip_network(f"10.{k // 16}.{(k % 16) * 16}.0/20")[10 + per_net[k]]
        ports.append(Port(pid, "", "demo", nets[k].id, f"fa:16:3e:{2 + n // 65536:02x}:{n // 256 % 256:02x}:"
                          f"{n % 256:02x}", True, "ACTIVE", uid("server", n), "compute:nova",
                          (FixedIP(subnets[k].id, addr),), ("sg-default",), True, (), host, "ovs", details))
        servers.append(Server(uid("server", n), f"vm{n}", "demo", host, "ACTIVE", "1", "cirros", (pid,)))
    return CloudSnapshot(dep, tuple(nets), tuple(subnets), tuple(ports), tuple(routers), (), (sg,),
                         tuple(servers))


def plan_all(cloud: CloudSnapshot) -> tuple[float, int, int]:
    """CPU seconds to plan every host (the machine may be shared: wall time would mislead), and the
    flows and rules planned."""
    t0 = time.process_time()
    states = plan_cloud(cloud)  # what the agents call: every host, with the garbage collector paused
    cpu = time.process_time() - t0
    flows = sum(len(b.flows.flows) for s in states for b in s.ovs.bridges if b.flows is not None)
    rules = sum(len(t.rules) for s in states for ns in s.namespaces if ns.iptables for t in ns.iptables.tables)
    return cpu, flows, rules


def replan_one_port(n_hosts: int, n_ports: int, *, planned: CloudSnapshot | None = None, changes: int = 3,
                    unchanged_sample: int = 20) -> None:
    """Re-plan after one port is added, as the in-process agents do: the previous snapshot's hosts
    were all planned before in this process (``planned``, or planned here first, untimed), then
    each change is a fresh snapshot (new objects, as ``snapshot.load`` gives) with one more port,
    ``hosts_affected_by_change(before, after)`` (timed apart) and ``plan_hosts(after, those,
    previous=before)`` (timed: the median). ``changes`` ports are added so, one after the other
    (each to another host and network), and as many again alternating with them planned the old
    way (``hosts_affected_by_port`` + ``plan_hosts`` without ``previous``: the old figure, each the
    first plan of its snapshot too); a sample of the other hosts' plans is checked unchanged."""
    before = planned if planned is not None else build(n_hosts, n_ports)
    if planned is None:
        for h in before.deployment.hosts:
            plan_host(before, h.name)
    times: list[float] = []
    diffs: list[float] = []
    olds: list[float] = []
    for k in range(1, 2 * changes + 1):
        after = build(n_hosts, n_ports + k)
        new = after.ports[-1]
        agents = k % 2 == 1
        if agents:  # what the in-process agents do: compare the snapshots, then plan handing over the previous
            t2 = time.process_time()
            by_change = hosts_affected_by_change(before, after)
            diffs.append(time.process_time() - t2)
            t0 = time.process_time()
            states = plan_hosts(after, by_change or (), previous=before)
            t1 = time.process_time()
            times.append(t1 - t0)
            affected = hosts_affected_by_port(after, new.id)
        else:  # the old figure: the port's hosts on the fresh snapshot, nothing handed over
            t0 = time.process_time()
            affected = hosts_affected_by_port(after, new.id)
            states = plan_hosts(after, affected)
            t1 = time.process_time()
            olds.append(t1 - t0)
            by_change = affected
        others = [h.name for h in after.deployment.hosts if h.name not in set(affected)]
        step = max(1, len(others) // unchanged_sample)
        sample = others[::step][:unchanged_sample]
        same = all(plan_host(before, n) == plan_host(after, n) for n in sample)
        changed = sum(plan_host(before, n) != states[n] for n in affected)
        print(f"re-plan after one port added (to {new.binding_host}, network {after.network(new.network_id).name}): "
              f"{len(affected)} of {n_hosts} hosts affected, planned in {(t1 - t0) * 1000:.1f} ms CPU "
              + ("(plan_hosts with previous=, as the agents call it" if agents else "(the old way")
              + f"; {changed} of them changed); "
              f"{len(sample)} unaffected hosts sampled: {'unchanged' if same else 'CHANGED'}"
              + (f"; hosts_affected_by_change (the agents' way) {diffs[-1] * 1000:.1f} ms CPU, "
                 f"{'the same hosts' if by_change == affected else 'OTHER HOSTS'}" if agents else ""))
        assert states[new.binding_host].name == new.binding_host and same and by_change == affected
        plan_hosts(after, affected)  # the checks planned ``before`` again: back to what the agents hold
        before = after
    print(f"re-plan: median {sorted(times)[len(times) // 2] * 1000:.1f} ms CPU of {changes} changes "
          f"(plan_hosts with previous=, as the agents call it; hosts_affected_by_change: median "
          f"{sorted(diffs)[len(diffs) // 2] * 1000:.1f} ms, not included)")
    print(f"re-plan the old way (no previous snapshot, as rounds 3-7 timed it): median "
          f"{sorted(olds)[len(olds) // 2] * 1000:.1f} ms CPU of {changes} changes")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n_hosts = int(args[0]) if args else 1000
    n_ports = int(args[1]) if len(args) > 1 else 10000
    if "--growth" in sys.argv:  # the same cloud at 1/10, 3/10 and full size
        for tenths in (1, 3, 10):
            h, p = max(2, n_hosts * tenths // 10), max(1, n_ports * tenths // 10)
            cpu, flows, rules = plan_all(grown := build(h, p))
            print(f"{h:>6} hosts {p:>7} ports: {cpu:6.1f} s CPU ({cpu / h * 1000:5.1f} ms per host); "
                  f"{flows} flows, {rules} iptables rules")
        if "--replan" in sys.argv:
            replan_one_port(n_hosts, n_ports, planned=grown)
        return
    t0 = time.perf_counter()
    cloud = build(n_hosts, n_ports)
    t1 = time.perf_counter()
    if "--memory" in sys.argv:  # tracing slows planning several times over
        tracemalloc.start()
    cpu, flows, rules = plan_all(cloud)
    t2 = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    print(f"snapshot: {n_hosts} hosts, {len(cloud.ports)} ports, {len(cloud.networks)} networks "
          f"(built in {t1 - t0:.1f} s)")
    print(f"planned every host in {cpu:.1f} s CPU, {t2 - t1:.1f} s wall ({cpu / n_hosts * 1000:.1f} ms CPU per host); "
          f"{flows} flows, {rules} iptables rules"
          + (f"; peak traced memory {peak / 2**20:.0f} MiB" if peak else ""))
    if "--replan" in sys.argv:
        replan_one_port(n_hosts, n_ports, planned=cloud)


if __name__ == "__main__":
    main()
