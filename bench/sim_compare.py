"""Every rendering of many traces, and the state they leave, written out: run it against the code
before a speed change and after, and compare the two files (they must be equal to the byte).

    .venv/bin/python bench/sim_compare.py /tmp/after.txt --clouds /tmp/clouds.pkl
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/sim_compare.py /tmp/before.txt --clouds /tmp/clouds.pkl
    cmp /tmp/before.txt /tmp/after.txt

``--clouds FILE``: the planned clouds (seeds 000-004, the DVR, HA and OVS-firewall examples, a
40-instance VXLAN cloud) are brought up through the API once and kept in FILE (pickled cloud
snapshots and host states, which neither tree's simulator changes), so both runs read the same
inputs. Per world: boot (every guest's DHCP hops), then every guest to the internet (ICMP, three
times in a row: the later ones meet what the first left), to six other guests (ICMP, TCP/22,
closed TCP/80, UDP), HTTP to the metadata address, ARP for its gateway and DHCP, a sized ping;
from the outside to every floating IP (ICMP, TCP/22, TCP/80); each trace written detailed,
summary and as JSON. After the probes, every bridge's flows in lookup order (learned ones
included, as ``dump-flows`` lists them), its learned flows and MAC table, and every namespace's
connection table.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import sys
import tempfile
from ipaddress import ip_network

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEEDS = ("seed000", "seed001", "seed002", "seed003", "seed004", "dvr", "ha", "ovsfw")


def clouds(path: pathlib.Path | None) -> dict[str, tuple[object, object]]:
    if path is not None and path.exists():
        loaded: dict[str, tuple[object, object]] = pickle.loads(path.read_bytes())
        return loaded
    sys.path.insert(0, str(ROOT / "bench"))
    from sim_bench import big_scenario

    from neutrino.deploy import bring_up

    out: dict[str, tuple[object, object]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = pathlib.Path(tmpdir)
        os.environ["NEUTRINO_STATE"] = tmpdir
        for name in SEEDS:
            r = bring_up(ROOT / "examples" / f"{name}.yaml", state=tmp / name, keep=False)
            out[name] = (r.cloud, r.hosts)
        big_scenario(tmp / "big.yaml", n_servers=40)
        r = bring_up(tmp / "big.yaml", state=tmp / "big", keep=False)
        out["cloud40"] = (r.cloud, r.hosts)
    if path is not None:
        path.write_bytes(pickle.dumps(out))
    return out


def probes(world, cloud) -> list[tuple[str, dict[str, object]]]:  # type: ignore[no-untyped-def]
    guests = sorted(world.guests)
    out: list[tuple[str, dict[str, object]]] = []
    for i, g in enumerate(guests):
        for _ in range(3):
            out.append((g, {"dst": "8.8.8.8"}))
        others = [guests[(i + k) % len(guests)] for k in (1, 2, 3, 5, 8, 13) if len(guests) > 1]
        for o in dict.fromkeys(others):
            out.append((g, {"dst": o}))
            out.append((g, {"dst": o, "proto": "tcp", "dport": 22}))
            out.append((g, {"dst": o, "proto": "tcp", "dport": 80}))
            out.append((g, {"dst": o, "proto": "udp", "dport": 53}))
            out.append((g, {"dst": o}))
        out.append((g, {"dst": "169.254.169.254", "proto": "http"}))
        out.append((g, {"dst": "8.8.8.8", "size": 1400}))
        out.append((g, {"dst": "8.8.8.8", "proto": "tcp", "dport": 443}))
        ip = world.specs[g].fixed_ip
        if ip is not None:  # the first address of its subnet: the router's, usually
            out.append((g, {"dst": str(ip_network(f"{ip}/24", strict=False)[1]), "proto": "arp"}))
        out.append((g, {"dst": "", "proto": "dhcp"}))
    for f in cloud.floating_ips:
        if f.floating_ip_address is None:
            continue
        for kw in ({}, {"proto": "tcp", "dport": 22}, {"proto": "tcp", "dport": 80}, {}):
            out.append(("outside", {"dst": str(f.floating_ip_address), **kw}))
    return out


def main() -> None:
    from neutrino.errors import NeutrinoError
    from neutrino.sim.cloud import world_of
    from neutrino.sim.trace import render, to_json

    target = pathlib.Path(sys.argv[1])
    cache = pathlib.Path(sys.argv[sys.argv.index("--clouds") + 1]) if "--clouds" in sys.argv else None
    with target.open("w") as out:
        for name, (cloud, hosts) in clouds(cache).items():
            world = world_of(cloud, hosts)  # type: ignore[arg-type]
            leases = world.boot()
            out.write(f"##### {name}: {sorted(leases.items())}\n")
            for g in sorted(world.boot_hops):
                for hop in world.boot_hops[g]:
                    out.write(f"boot {g}: {hop}\n")
            n = 0
            for src, kw in probes(world, cloud):
                dst = str(kw.pop("dst"))
                try:
                    trace = world.probe(src, dst, **kw)  # type: ignore[arg-type]
                except NeutrinoError as e:
                    out.write(f"--- {src} {dst} {kw}: error {e}\n")
                    continue
                n += 1
                out.write(f"--- {src} {dst} {kw}\n")
                out.write(render(trace, "detailed"))
                out.write(render(trace, "summary"))
                out.write(to_json(trace) + "\n")
            for (host, br), sim in sorted(world._ovs.items()):
                out.write(f"bridge {host} {br}\n")
                for table in sorted(sim._tables):
                    for flow in sim.flows(table):
                        out.write(f"  {flow}\n")
                out.write(f"  learned {sim.learned_flows}\n  macs {sim.mac_table}\n")
                out.write(f"  ct {sim.conntrack.dump()}\n")
            for (host, ns), nf in sorted(world._nf.items()):
                if nf is not None:
                    out.write(f"conntrack {host} {ns}\n{nf.conntrack.dump()}")
            print(f"{name}: {n} traces", flush=True)


if __name__ == "__main__":
    main()
