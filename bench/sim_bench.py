"""Traces per second on the simulator (a benchmark, not a test).

    .venv/bin/python bench/sim_bench.py

Brings up seed 000 and a generated 100-instance VXLAN cloud (5 computes, 4 networks behind one
router) through the API in a temporary state directory, boots every guest by DHCP through the
plumbing, then times probes: instance to the internet (through SNAT), instance to instance, and the
outside to a floating IP.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def big_scenario(path: pathlib.Path, n_servers: int = 100, n_computes: int = 5, n_nets: int = 4) -> None:
    hosts = [{"name": "network", "roles": ["controller", "network"], "management_ip": "192.168.50.10",
              "tunnel_ip": "192.168.50.10"}]
    hosts += [{"name": f"compute{i}", "role": "compute", "management_ip": f"192.168.50.{20 + i}",
               "tunnel_ip": f"192.168.50.{20 + i}"} for i in range(n_computes)]
    nets = [{"name": "public", "external": True,
             "subnets": [{"name": "public-subnet", "cidr": "203.0.113.0/24", "gateway": "203.0.113.1",
                          "enable_dhcp": False}]}]
    nets += [{"name": f"net{k}", "subnets": [{"name": f"subnet{k}", "cidr": f"10.{k}.0.0/24"}]}
             for k in range(n_nets)]
    doc = {
        "deployment": {"mechanism": "ml2_ovs", "tenant_network_types": ["vxlan"]},
        "hosts": hosts,
        "resources": {
            "networks": nets,
            "routers": [{"name": "r1", "gateway": {"network": "public"},
                         "interfaces": [f"subnet{k}" for k in range(n_nets)]}],
            "security_group_rules": [{"group": "default", "direction": "ingress", "protocol": "icmp"},
                                     {"group": "default", "direction": "ingress", "protocol": "tcp",
                                      "port_range": "22:22"}],
            "servers": [{"name": f"vm{i}", "image": "cirros", "flavor": "1", "networks": [f"net{i % n_nets}"],
                         "host": f"compute{i % n_computes}"} for i in range(n_servers)],
            "floating_ips": [{"network": "public", "server": "vm0"}],
        },
    }
    path.write_text(yaml.safe_dump(doc))


def rate(label: str, fn, n: int) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = time.perf_counter() - start
    print(f"  {label:<44} {n / elapsed:8.0f} traces/s  ({elapsed / n * 1000:.2f} ms each)")


def main() -> None:
    from neutrino.deploy import bring_up
    from neutrino.sim.cloud import world_of

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NEUTRINO_STATE"] = tmp
        big = pathlib.Path(tmp) / "big.yaml"
        big_scenario(big)
        for name, path, dst_vm in (("seed 000", ROOT / "examples" / "seed000.yaml", None),
                                   ("100 instances", big, "vm4")):
            t0 = time.perf_counter()
            result = bring_up(path, state=pathlib.Path(tmp) / name.replace(" ", "-"))
            t1 = time.perf_counter()
            world = world_of(result.cloud, result.hosts)
            leases = world.boot()
            t2 = time.perf_counter()
            src = "cirros" if dst_vm is None else "vm0"
            for dst in ("8.8.8.8", *([dst_vm] if dst_vm else [])):
                assert world.probe(src, dst).delivered, f"{src} cannot reach {dst}"
            fip = next(str(f.floating_ip_address) for f in result.cloud.floating_ips)
            print(f"{name}: up through the API and planned in {t1 - t0:.1f} s; {len(leases)} guests booted by DHCP "
                  f"in {t2 - t1:.2f} s ({sum(1 for v in leases.values() if v)} got addresses)")
            rate(f"{src} -> 8.8.8.8 (icmp, SNAT)", lambda w=world, s=src: w.probe(s, "8.8.8.8"), 300)
            if dst_vm:
                rate(f"{src} -> {dst_vm} (icmp, across a tunnel)",
                     lambda w=world, s=src, d=dst_vm: w.probe(s, d), 300)
            rate(f"outside -> {fip} tcp/22",
                 lambda w=world, f=fip: w.probe("outside", f, proto="tcp", dport=22), 300)


if __name__ == "__main__":
    main()
