"""The simulator's figures (a benchmark, not a test).

    .venv/bin/python bench/sim_bench.py            # everything (brings up a 200-instance cloud: minutes)
    .venv/bin/python bench/sim_bench.py --quick    # seed 000 and the 100-instance cloud only
    .venv/bin/python bench/sim_bench.py --boot 25,100,1000   # only boot times, for these cloud sizes

Times are CPU seconds of this process (``time.process_time``: the other load on a shared machine
inflates wall time far more), wall time alongside, and for the traces the Python function calls
one makes (cProfile's count: the steadiest measure on a busy machine).

Brings up seed 000 and generated VXLAN clouds (5 computes, 4 networks behind one router, 25 to
200 instances) through the API in a temporary state directory, then:

- traces per second on seed 000 and the 100-instance cloud: instance to the internet (through
  SNAT), instance to instance, and the outside to a floating IP;
- boot time (every guest's DHCP exchange through the plumbing) for 25, 50, 100 and 200 guests (or
  the sizes ``--boot`` gives), and the same with every flooded copy followed
  (``World.flood_pruning = False``; not for more than 200 guests, where it takes minutes);
- keeping a booted world: save and load times and file size for seed 000 and 200 instances, and
  what a CLI ``ping`` pays: load, then one probe (the first probe unpickles the elements it
  crosses);
- refresh: one server added to the 200-instance cloud, converged on the simulator in memory and
  on a world loaded from its file.

Before the world could live between commands (the code of commit 79caef4, the same clouds, this
2-CPU machine), boot took 0.37 s, 1.4 s, 5.8 s and 33 s for 25, 50, 100 and 200 guests: every
guest's DHCP broadcasts visited every other guest's port of its network, and each visit scanned
the host's firewall rules, the bridge's flows and the namespace's links linearly. A CLI ping
booted the whole cloud again.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import statistics
import sys
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


def rate(label: str, fn, n: int, rounds: int = 5) -> None:  # type: ignore[no-untyped-def]
    """``n`` traces in ``rounds`` rounds: the median round's CPU time per trace (and wall time)."""
    cpu, wall = [], []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(n // rounds):
            fn()
        cpu.append((time.process_time() - start_cpu) / (n // rounds))
        wall.append((time.perf_counter() - start) / (n // rounds))
    each = statistics.median(cpu)
    print(f"  {label:<44} {1 / each:8.0f} traces/s  ({each * 1000:.3f} ms CPU each, "
          f"{statistics.median(wall) * 1000:.3f} ms wall, {calls(fn):,.0f} function calls)")


def calls(fn, n: int = 20) -> float:  # type: ignore[no-untyped-def]
    """The Python function calls one ``fn()`` makes (cProfile's count, which the machine's load
    does not change), over ``n`` more runs."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    return pstats.Stats(prof).total_calls / n  # type: ignore[attr-defined,no-any-return]


def timed(fn):  # type: ignore[no-untyped-def]
    """``fn()`` and the CPU seconds it took."""
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def with_server(cloud, like: str, name: str):  # type: ignore[no-untyped-def]
    """``cloud`` with one more server on ``like``'s network, host and groups (a new port and MAC)."""
    base_srv = next(s for s in cloud.servers if s.name == like)
    base = cloud.port(base_srv.port_ids[0])
    pid, sid = "0000beef-1111-4222-8333-000000000001", "0000beef-5555-4666-8777-000000000001"
    used = {f.ip_address for p in cloud.ports for f in p.fixed_ips}
    ip = next(a for a in (ipaddress.ip_address(int(base.fixed_ips[0].ip_address) + k) for k in range(1, 250))
              if a not in used)
    port = dataclasses.replace(base, id=pid, mac_address="fa:16:3e:be:ef:01", device_id=sid,
                               fixed_ips=(dataclasses.replace(base.fixed_ips[0], ip_address=ip),))
    server = dataclasses.replace(base_srv, id=sid, name=name, port_ids=(pid,))
    return dataclasses.replace(cloud, ports=(*cloud.ports, port), servers=(*cloud.servers, server), _index={})


def traces_per_second(name: str, result, dst_vm: str | None) -> None:  # type: ignore[no-untyped-def]
    from neutrino.sim.cloud import world_of

    world = world_of(result.cloud, result.hosts)
    leases, took = timed(world.boot)
    src = "cirros" if dst_vm is None else "vm0"
    for dst in ("8.8.8.8", *([dst_vm] if dst_vm else [])):
        assert world.probe(src, dst).delivered, f"{src} cannot reach {dst}"
    fip = next(str(f.floating_ip_address) for f in result.cloud.floating_ips)
    print(f"{name}: {len(leases)} guests booted by DHCP in {took:.2f} s "
          f"({sum(1 for v in leases.values() if v)} got addresses)")
    rate(f"{src} -> 8.8.8.8 (icmp, SNAT)", lambda w=world, s=src: w.probe(s, "8.8.8.8"), 300)
    if dst_vm:
        rate(f"{src} -> {dst_vm} (icmp, across a tunnel)", lambda w=world, s=src, d=dst_vm: w.probe(s, d), 300)
    rate(f"outside -> {fip} tcp/22", lambda w=world, f=fip: w.probe("outside", f, proto="tcp", dport=22), 300)


def boot_times(clouds: dict[int, object]) -> None:
    from neutrino.sim.cloud import world_of

    print("boot: every guest's DHCP exchange, CPU time (best of 2; 'every copy': flood_pruning off)")
    for n, result in clouds.items():
        row = []
        for pruning in (True, False) if n <= 200 else (True,):
            best = None
            for _ in range(2 if n <= 100 else 1):
                world = world_of(result.cloud, result.hosts)  # type: ignore[attr-defined]
                world.flood_pruning = pruning
                leases, took = timed(world.boot)
                assert all(leases.values())
                best = took if best is None else min(best, took)
            row.append(best)
        every = f"   every copy: {row[1]:6.2f} s ({row[1] / n * 1000:5.1f} ms a guest)" if len(row) > 1 else ""
        print(f"  {n:>4} guests: {row[0]:6.2f} s ({row[0] / n * 1000:5.1f} ms a guest){every}")


def keeping(name: str, result, tmp: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    from neutrino.sim.cloud import world_of
    from neutrino.sim.keep import load_world, save_world

    world = world_of(result.cloud, result.hosts)
    world.boot()
    src = sorted(world.guests)[0]
    path = tmp / f"{name.replace(' ', '-')}.world"
    size, first = timed(lambda: save_world(world, path))
    _, again = timed(lambda: save_world(world, path))
    loads, probes = [], []
    for _ in range(3):
        loaded, took = timed(lambda: load_world(path))
        trace, probe = timed(lambda w=loaded: w.probe(src, "8.8.8.8"))
        loads.append(took)
        probes.append(probe)
    assert trace == world.probe(src, "8.8.8.8"), "a loaded world traces differently"
    print(f"{name}: saved in {first:.2f} s (again {again:.2f} s), {size / 1e6:.1f} MB; loaded in "
          f"{min(loads) * 1000:.0f} ms, then {src} -> 8.8.8.8 in {min(probes) * 1000:.0f} ms "
          f"(load + first probe {min(a + b for a, b in zip(loads, probes, strict=True)) * 1000:.0f} ms)")


def refreshing(result, tmp: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    from neutrino.plan import plan_cloud
    from neutrino.sim.cloud import refresh_world, world_of
    from neutrino.sim.keep import load_world, save_world

    before, hosts = result.cloud, result.hosts
    after = with_server(before, "vm7", "vm-new")
    plan_after, planned = timed(lambda: plan_cloud(after))
    old = {h.name: h for h in hosts}
    changed = [h for h in plan_after if old.get(h.name) != h]
    world = world_of(before, hosts)
    world.boot()
    path = tmp / "refresh.world"
    save_world(world, path)
    done, in_memory = timed(lambda: refresh_world(world, after, changed))
    loaded = load_world(path)
    _, from_file = timed(lambda: refresh_world(loaded, after, changed))
    _, saved = timed(lambda: save_world(loaded, path))
    fresh = world_of(after, plan_after)
    fresh.boot()
    expected = fresh.probe("vm-new", "vm0")
    for w in (world, loaded):
        assert w.probe("vm-new", "vm0") == expected, "a refreshed world traces differently"
    print(f"refresh, one server added to {len(before.servers)} ({', '.join(h.name for h in changed)} re-planned "
          f"in {planned:.1f} s): booted {dict(done.booted)}")
    print(f"  in memory {in_memory * 1000:.0f} ms; on a loaded world {from_file * 1000:.0f} ms, "
          f"saved again in {saved:.2f} s")


def main() -> None:
    from neutrino.deploy import bring_up

    quick = "--quick" in sys.argv
    boot_only = None
    if "--boot" in sys.argv:
        boot_only = tuple(int(n) for n in sys.argv[sys.argv.index("--boot") + 1].split(","))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = pathlib.Path(tmpdir)
        os.environ["NEUTRINO_STATE"] = tmpdir
        clouds = {}
        for n in boot_only or ((100,) if quick else (25, 50, 100, 200)):
            path = tmp / f"big{n}.yaml"
            # 4 networks of a /24 each hold up to 252 instances apiece
            big_scenario(path, n_servers=n, n_nets=max(4, -(-n // 250)))
            start = time.perf_counter()
            clouds[n] = bring_up(path, state=tmp / f"up{n}", keep=False)
            print(f"{n} instances: up through the API and planned in {time.perf_counter() - start:.1f} s (wall)")
        if boot_only:
            boot_times(clouds)
            return
        seed, _ = timed(lambda: bring_up(ROOT / "examples" / "seed000.yaml", state=tmp / "seed000", keep=False))
        traces_per_second("seed 000", seed, None)
        traces_per_second("100 instances", clouds[100], "vm4")
        boot_times(clouds)
        keeping("seed 000", seed, tmp)
        biggest = max(clouds)
        keeping(f"{biggest} instances", clouds[biggest], tmp)
        refreshing(clouds[biggest], tmp)


if __name__ == "__main__":
    main()
