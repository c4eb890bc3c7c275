"""A living cloud's latencies (a benchmark, not a test).

    .venv/bin/python bench/living_bench.py [--linux]

For seed 000 and a generated 200-instance VXLAN cloud: ``neutrino up`` into a temporary state
folder, ``neutrino server`` on it, then
- from an API change (a security-group rule created, then deleted, over HTTP) to the agents
  having converged the hosts (the state folder's ``agents/converged`` mark catches up), median of 10;
  with ``--linux`` (root) the same with the cloud also built for real;
- one CLI ``neutrino ping`` in a new process (the user's wall time), split into start-up (the same
  process doing nothing but parse its arguments) and the rest (load the kept world and simulate).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from sim_bench import big_scenario  # noqa: E402

from neutrino.convergence import pending  # noqa: E402

NEUTRINO = str(pathlib.Path(sys.executable).parent / "neutrino")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wall(argv: list[str], env: dict[str, str], n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, scenario: pathlib.Path, src: str, linux: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = pathlib.Path(tmp) / "state"
        env = dict(os.environ, NEUTRINO_STATE=str(state))
        t0 = time.perf_counter()
        up = [NEUTRINO, "up", str(scenario)] + (["--backend", "linux"] if linux else [])
        subprocess.run(up, env=env, check=True, capture_output=True)
        print(f"{name}: neutrino up{' --backend linux' if linux else ''} {time.perf_counter() - t0:.1f} s")
        port = free_port()
        proc = subprocess.Popen([NEUTRINO, "server", "--port", str(port), "--clouds-yaml", "none"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(base + "/", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            while pending(state):
                time.sleep(0.01)
            r = httpx.post(f"{base}/identity/v3/auth/tokens", json={"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"name": "Default"}, "password": "secret"}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
            http = httpx.Client(base_url=f"{base}/v2.0", headers={"X-Auth-Token": r.headers["X-Subject-Token"]})
            sg = http.get("/security-groups", params={"name": "default"}).json()["security_groups"][0]["id"]

            def converged_after(fn) -> float:  # type: ignore[no-untyped-def]
                t = time.perf_counter()
                fn()
                while pending(state):
                    time.sleep(0.001)
                return time.perf_counter() - t

            lat = []
            for i in range(10):
                body = {"security_group_rule": {"security_group_id": sg, "direction": "ingress",
                                                "protocol": "tcp", "port_range_min": 1000 + i,
                                                "port_range_max": 1000 + i}}
                made: dict[str, str] = {}
                lat.append(converged_after(lambda b=body, m=made: m.update(
                    http.post("/security-group-rules", json=b).json()["security_group_rule"])))
                lat.append(converged_after(lambda m=made: http.delete(f"/security-group-rules/{m['id']}")))
            print(f"  API change -> hosts converged: median {statistics.median(lat) * 1000:.0f} ms, "
                  f"max {max(lat) * 1000:.0f} ms ({len(lat)} changes: a security-group rule, every host "
                  f"planned again)")
            # a port added and removed beside an instance's: only the hosts it touches are planned again
            model = http.get("/ports", params={"device_owner": "compute:nova"}).json()["ports"][0]
            lat = []
            for i in range(10):
                body = {"port": {"network_id": model["network_id"], "name": f"bench-{i}", "device_id": f"bench-{i}",
                                 "device_owner": "compute:nova", "binding:host_id": model["binding:host_id"]}}
                made = {}
                lat.append(converged_after(lambda b=body, m=made: m.update(http.post("/ports", json=b).json()["port"])))
                lat.append(converged_after(lambda m=made: http.delete(f"/ports/{m['id']}")))
            print(f"  port created or deleted -> hosts converged: median {statistics.median(lat) * 1000:.0f} ms, "
                  f"max {max(lat) * 1000:.0f} ms ({len(lat)} changes: only the hosts the port touches planned)")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        ping = [NEUTRINO, "ping", src, "8.8.8.8"]
        # as a user runs it: Python keeps the modules' bytecode (this sandbox's PYTHONDONTWRITEBYTECODE=1
        # would make every process compile them all again)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run(ping, env=env, capture_output=True, check=False)  # keeps the world, if it was not
        total = wall(ping, env)
        start = wall([sys.executable, "-c", "import neutrino.cli as c; c.build_parser().parse_args(['ping', 'a', 'b'])"],
                     env)
        print(f"  CLI ping: {total * 1000:.0f} ms wall (start-up {start * 1000:.0f} ms, "
              f"world and simulation {(total - start) * 1000:.0f} ms)")
        if linux:
            subprocess.run([NEUTRINO, "down"], env=env, check=False, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--linux", action="store_true", help="also build the clouds for real (root)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = pathlib.Path(tmp) / "big200.yaml"
        big_scenario(big, n_servers=200, n_computes=10)
        measure("seed 000", ROOT / "examples" / "seed000.yaml", "cirros", False)
        measure("200 instances", big, "vm0", False)
        if args.linux:
            measure("seed 000 (linux)", ROOT / "examples" / "seed000.yaml", "cirros", True)


if __name__ == "__main__":
    main()
