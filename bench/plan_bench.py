"""Planning a large cloud (a benchmark, not a test).

    .venv/bin/python bench/plan_bench.py [HOSTS] [PORTS] [--memory]

Builds a snapshot directly (1,000 hosts and 10,000 instance ports by default: one network host,
the rest computes; 100 VXLAN networks with a /20 subnet each, a DHCP port per network, a router on
every network, the default security group with ssh and icmp open, l2population on as large clouds
run it) and times ``plan_host`` for every host. Prints the total and per-host figures.
"""

from __future__ import annotations

import ipaddress
import sys
import time
import tracemalloc
import uuid

from neutrino.plan import plan_host
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


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n_hosts = int(args[0]) if args else 1000
    n_ports = int(args[1]) if len(args) > 1 else 10000
    t0 = time.perf_counter()
    cloud = build(n_hosts, n_ports)
    t1 = time.perf_counter()
    if "--memory" in sys.argv:  # tracing slows planning several times over
        tracemalloc.start()
    flows = rules = 0
    for h in cloud.deployment.hosts:
        state = plan_host(cloud, h.name)
        flows += sum(len(b.flows.flows) for b in state.ovs.bridges if b.flows is not None)
        rules += sum(len(t.rules) for ns in state.namespaces if ns.iptables for t in ns.iptables.tables)
    t2 = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    print(f"snapshot: {n_hosts} hosts, {len(cloud.ports)} ports, {len(cloud.networks)} networks "
          f"(built in {t1 - t0:.1f} s)")
    print(f"planned every host in {t2 - t1:.1f} s ({(t2 - t1) / n_hosts * 1000:.1f} ms per host); "
          f"{flows} flows, {rules} iptables rules"
          + (f"; peak traced memory {peak / 2**20:.0f} MiB" if peak else ""))


if __name__ == "__main__":
    main()
