"""The Linux backend's figures (a benchmark, not a test; root).

    .venv/bin/python bench/linux_bench.py

1. Each seed scenario brought up from nothing (namespaces, private OVS, wires, dnsmasq, guests by
   DHCP) and torn down, timed.
2. Time per additional instance wired: seed 000 with 1, 5 and 10 instances (generated YAML).
3. VM-to-VM throughput, a fixed 200 MB sent with a Python socket sender/receiver run in the guests'
   namespaces (busybox has no iperf): across seed 001's VXLAN tunnel (compute01 to compute02,
   through both hosts' hybrid plugs, br-int and br-tun on the userspace datapath) beside a plain veth
   pair between two namespaces. (Seed 001's security group admits no tcp: the run inserts an
   ACCEPT for port 5001 in both compute hosts' FORWARD chains, inside their namespaces.)
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile
import time

import yaml

from neutrino.deploy import bring_up
from neutrino.linux import netns as netns_lib
from neutrino.linux.fabric import Guest
from neutrino.linux.realize import Realized, down, realize
from neutrino.linux.records import guest_ns
from neutrino.linux.runner import run, wait_for
from neutrino.sim.cloud import guests_of

ROOT = pathlib.Path(__file__).resolve().parents[1]
PREFIX = "ntb"
BYTES = 200 * 1000 * 1000

RECEIVER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0; t0 = time.monotonic()
while True:
    b = c.recv(1 << 20)
    if not b: break
    n += len(b)
print(n, time.monotonic() - t0, flush=True)
"""
SENDER = """
import socket, sys
n = int(sys.argv[2]); buf = b"x" * (1 << 20)
s = socket.create_connection((sys.argv[1], 5001))
while n > 0:
    k = min(n, len(buf)); s.sendall(buf[:k]); n -= k
s.close()
"""


def _up(path: pathlib.Path, state: pathlib.Path) -> tuple[Realized, float, float]:
    t0 = time.monotonic()
    result = bring_up(path, state=state / "plan", keep=False)
    plan = time.monotonic() - t0
    specs = guests_of(result.cloud, {h.name: h for h in result.hosts})
    guests = tuple(Guest(g.name, g.host, g.device, g.mac, str(g.fixed_ip) if g.fixed_ip else None) for g in specs)
    t0 = time.monotonic()
    r = realize(result.hosts, result.cloud.deployment, prefix=PREFIX, state_dir=state, guests=guests)
    return r, plan, time.monotonic() - t0


def bench_seeds() -> None:
    print("seed       plan s   up s   down s  instances  leases")
    for seed in ("000", "001", "002", "003", "004"):
        with tempfile.TemporaryDirectory(prefix="ntb") as tmp:
            state = pathlib.Path(tmp)
            try:
                r, plan, up = _up(ROOT / "examples" / f"seed{seed}.yaml", state)
                leases = r.leases()
                got = sum(v is not None for v in leases.values())
            finally:
                t0 = time.monotonic()
                down(PREFIX, state)
                dn = time.monotonic() - t0
            print(f"seed{seed}   {plan:6.2f} {up:6.2f} {dn:8.2f} {len(leases):10d}  {got}/{len(leases)}")


def scaled(path: pathlib.Path, n: int) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "seed000.yaml").read_text())
    doc["resources"]["servers"] = [{"name": f"vm{i}", "image": "cirros", "flavor": "1", "networks": ["private"],
                                    "host": "compute"} for i in range(n)]
    doc["resources"].pop("floating_ips", None)
    path.write_text(yaml.safe_dump(doc))


def bench_instances() -> None:
    print("\ninstances  up s   per instance s (over the 1-instance cloud)")
    base = None
    for n in (1, 5, 10):
        with tempfile.TemporaryDirectory(prefix="ntb") as tmp:
            state = pathlib.Path(tmp)
            path = state / f"scaled{n}.yaml"
            scaled(path, n)
            try:
                r, _, up = _up(path, state)
                assert all(v is not None for v in r.leases().values())
            finally:
                down(PREFIX, state)
        base = up if base is None else base
        extra = f"{(up - base) / (n - 1):.3f}" if n > 1 else "-"
        print(f"{n:9d} {up:6.2f}   {extra}")


def throughput(src_ns: str, dst_ns: str, dst_ip: str) -> float:
    """MB/s for BYTES sent from ``src_ns`` to ``dst_ip`` (in ``dst_ns``)."""
    recv = subprocess.Popen(["ip", "netns", "exec", dst_ns, sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert recv.stdout is not None
        assert recv.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        run([sys.executable, "-c", SENDER, dst_ip, str(BYTES)], netns=src_ns, timeout=120)
        out = recv.stdout.readline().split()
        recv.wait(timeout=30)
        elapsed = time.monotonic() - t0
        assert int(out[0]) == BYTES, out
        return BYTES / elapsed / 1e6
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()


def bench_throughput() -> None:
    print(f"\nthroughput, {BYTES // 1_000_000} MB, Python sockets")
    a, b = f"{PREFIX}-veth-a", f"{PREFIX}-veth-b"
    try:
        for ns in (a, b):
            netns_lib.add(ns)
        run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b], netns=a)
        run(["ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"], netns=a)
        run(["ip", "link", "set", "eth0", "up"], netns=a)
        run(["ip", "addr", "add", "192.0.2.2/24", "dev", "eth0"], netns=b)
        run(["ip", "link", "set", "eth0", "up"], netns=b)
        wait_for(lambda: run(["ping", "-c1", "-W1", "192.0.2.2"], netns=a, check=False).returncode == 0,
                 timeout=10, what="the veth pair to pass traffic")
        print(f"  plain veth pair                  {throughput(a, b, '192.0.2.2'):8.1f} MB/s")
    finally:
        for ns in (a, b):
            netns_lib.delete(ns)
    with tempfile.TemporaryDirectory(prefix="ntb") as tmp:
        state = pathlib.Path(tmp)
        try:
            r, _, _ = _up(ROOT / "examples" / "seed001.yaml", state)
            leases = r.leases()
            src = next(g for g in r.guests if g.host == "compute01" and str(g.ip).startswith("10.11.11."))
            dst = next(g for g in r.guests if g.host == "compute02" and str(g.ip).startswith("10.11.11."))
            ip = leases[dst.server]
            assert ip is not None
            # seed 001's security group "bare" lets no tcp in: open the benchmark's port (and its
            # replies) at both hosts' hybrid plugs, in their own namespaces, for this run only
            for host in ("compute01", "compute02"):
                for direction in ("--dport", "--sport"):
                    r.exec(host, ["iptables", "-I", "FORWARD", "1", "-p", "tcp", direction, "5001", "-j", "ACCEPT"])
            mbs = throughput(guest_ns(PREFIX, src.server), guest_ns(PREFIX, dst.server), str(ip.ip))
            print(f"  VXLAN, {src.server} -> {dst.server} (seed001) {mbs:8.1f} MB/s")
        finally:
            down(PREFIX, state)


def main() -> None:
    bench_seeds()
    bench_instances()
    bench_throughput()


if __name__ == "__main__":
    main()
