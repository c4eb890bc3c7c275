"""The Linux backend's figures (a benchmark, not a test; root).

    .venv/bin/python bench/linux_bench.py                        # 1-3 below
    .venv/bin/python bench/linux_bench.py --updown 7             # 4 only: seed 000 up and down, 7 times
    .venv/bin/python bench/linux_bench.py --updown 7 --compare /tmp/before/src   # 4, against another tree

4. Seed 000 (planned once per run, outside the timing) brought up (``realize``: namespaces, private
   OVS, wires, the plan applied, metadata, the guest by DHCP) and torn down (``down``), ``--updown N``
   times; each run in a fresh process (``--compare SRC``: alternating with the same run importing
   neutrino from the source tree SRC, e.g. ``git archive <commit> src | tar -x -C /tmp/before``).
   Printed per run and as medians: wall time up and down, the CPU time of the bench process and of
   the commands it ran (``os.times``: reaped children only, so not the daemons it leaves running),
   and the commands run during the bring-up, by tool (every ``subprocess.run`` and ``Popen``).

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

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

from neutrino.deploy import bring_up
from neutrino.linux import netns as netns_lib
from neutrino.linux.fabric import Guest
from neutrino.linux.realize import Realized, down, realize
from neutrino.linux.records import guest_ns
from neutrino.linux.runner import run, tool_of, wait_for
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


def updown_once() -> dict[str, Any]:
    """One seed-000 bring-up and teardown in this process, as JSON-able figures."""
    counts: dict[str, int] = {}
    real_init = subprocess.Popen.__init__  # subprocess.run starts a Popen too: every command counted once

    def counting_init(self: subprocess.Popen[Any], args: Any, *a: Any, **kw: Any) -> None:
        tool = tool_of(list(args)) if isinstance(args, (list, tuple)) else str(args)
        counts[tool] = counts.get(tool, 0) + 1
        real_init(self, args, *a, **kw)

    with tempfile.TemporaryDirectory(prefix="ntb") as tmp:
        state = pathlib.Path(tmp)
        result = bring_up(ROOT / "examples" / "seed000.yaml", state=state / "plan", keep=False)
        specs = guests_of(result.cloud, {h.name: h for h in result.hosts})
        guests = tuple(Guest(g.name, g.host, g.device, g.mac, str(g.fixed_ip) if g.fixed_ip else None) for g in specs)
        subprocess.Popen.__init__ = counting_init  # type: ignore[method-assign]
        c0, t0 = os.times(), time.monotonic()
        try:
            r = realize(result.hosts, result.cloud.deployment, prefix=PREFIX, state_dir=state, guests=guests)
            up, c1 = time.monotonic() - t0, os.times()
            subprocess.Popen.__init__ = real_init  # type: ignore[method-assign]
            leases = r.leases()
        finally:
            subprocess.Popen.__init__ = real_init  # type: ignore[method-assign]
            t1 = time.monotonic()
            down(PREFIX, state)
            dn = time.monotonic() - t1
    return {"up": up, "down": dn, "cpu_self": (c1.user + c1.system) - (c0.user + c0.system),
            "cpu_children": (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system),
            "commands": counts, "leases": sum(v is not None for v in leases.values())}


def _child(src: pathlib.Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the metadata service's imports compiled once, not every start
    out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True)
    doc: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return doc


def bench_updown(runs: int, compare: pathlib.Path | None) -> None:
    trees = [("this tree", ROOT / "src")] + ([("compared", compare)] if compare else [])
    got: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    print(f"seed000 up and down on the Linux backend, {runs} runs" + (f", alternating with {compare}" if compare else ""))
    print("tree        run   up s  down s  cpu self s  cpu commands s  commands (up)  leases")
    for i in range(runs):
        for name, src in trees:
            doc = _child(src)
            got[name].append(doc)
            print(f"{name:10s} {i + 1:4d} {doc['up']:6.3f} {doc['down']:7.3f} {doc['cpu_self']:11.3f} "
                  f"{doc['cpu_children']:15.3f} {sum(doc['commands'].values()):14d}  {doc['leases']}")
    for name, docs in got.items():
        med = {k: statistics.median(d[k] for d in docs) for k in ("up", "down", "cpu_self", "cpu_children")}
        counts = docs[-1]["commands"]
        print(f"\n{name}: median up {med['up']:.3f} s, down {med['down']:.3f} s, cpu {med['cpu_self']:.3f} s "
              f"(self) + {med['cpu_children']:.3f} s (commands); {sum(counts.values())} commands during up:")
        print("  " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--updown", type=int, metavar="N", help="only seed 000 up and down, N times")
    ap.add_argument("--compare", type=pathlib.Path, metavar="SRC", help="alternate with the tree SRC (with --updown)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(updown_once()))
        return
    if args.updown:
        bench_updown(args.updown, args.compare)
        return
    bench_seeds()
    bench_instances()
    bench_throughput()


if __name__ == "__main__":
    main()
