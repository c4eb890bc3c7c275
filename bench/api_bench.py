"""Control-plane throughput: create, list and delete with 1 and 8 concurrent clients, router interface
add and floating-IP association latency, and the server's memory.

Starts a real server (uvicorn, SQLite WAL in a temp dir, Keystone auth) and drives it over HTTP:

    .venv/bin/python bench/api_bench.py [--ports 400] [--db URL]

Reference (real Neutron 29 on this 2-core machine): 9 ports/s with one client, ~18 ports/s with 8,
router interface add and floating-IP association 0.65-0.95 s each. The target is 15x on each.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

NEUTRON = {"port create 1 client": 9.0, "port create 8 clients": 18.0}
NEUTRON_LATENCY = 0.65  # s, the fastest of router interface add / FIP association


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(db: str | None, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "neutrino.api.serve", "--port", str(port), "--clouds-yaml", "none",
           "--db", db or f"sqlite:///{tmp}/bench.db"]
    with open(tmp / "log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start: " + (tmp / "log").read_text())


def token(base: str) -> tuple[str, str]:
    r = httpx.post(f"{base}/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": "secret"}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
    return r.headers["X-Subject-Token"], r.json()["token"]["project"]["id"]


class Lite:
    """A keep-alive HTTP/1.1 client on http.client: light, so the figures measure the server, not httpx."""

    def __init__(self, base: str, tok: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"X-Auth-Token": tok, "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.conn.request(method, "/v2.0" + path, body=None if body is None else json.dumps(body),
                          headers=self.headers)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None

    def __enter__(self) -> Lite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def run_parallel(clients: int, jobs: list[Any], fn: Callable[[Lite, Any], None], base: str,
                 tok: str) -> float:
    """Run fn(client, job) for every job over ``clients`` threads; returns elapsed seconds."""
    lock = threading.Lock()
    queue = list(reversed(jobs))
    errors: list[str] = []

    def worker() -> None:
        with Lite(base, tok) as c:
            while True:
                with lock:
                    if not queue:
                        return
                    job = queue.pop()
                try:
                    fn(c, job)
                except Exception as e:  # report, keep going
                    with lock:
                        errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} errors, first: {errors[0]}")
    return elapsed


def rss_mib(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    vals = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
            if line.startswith(("VmRSS", "VmHWM"))}
    return vals["VmRSS"] / 1024, vals["VmHWM"] / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=400, help="ports per create run")
    ap.add_argument("--ops", type=int, default=60, help="router interfaces / floating IPs to time")
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="neutrino-bench-"))
    proc, base = start(args.db, tmp)
    results: dict[str, float] = {}
    try:
        tok, project = token(base)
        h = httpx.Client(base_url=f"{base}/v2.0", headers={"X-Auth-Token": tok}, timeout=60)

        def ok(r: httpx.Response) -> dict[str, Any]:
            if r.status_code >= 300:
                raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}")
            return r.json() if r.content else {}

        ok(h.put(f"/quotas/{project}", json={"quota": {k: -1 for k in (
            "port", "network", "subnet", "router", "floatingip", "security_group", "security_group_rule")}}))
        net = ok(h.post("/networks", json={"network": {"name": "bench"}}))["network"]["id"]
        ok(h.post("/subnets", json={"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.128.0.0/16"}}))
        created: list[str] = []
        lock = threading.Lock()

        def expect(status: int, got: tuple[int, Any]) -> Any:
            if got[0] != status:
                raise RuntimeError(f"{got[0]} {str(got[1])[:300]}")
            return got[1]

        def create(c: Lite, _: Any) -> None:
            pid = expect(201, c.request("POST", "/ports", {"port": {"network_id": net}}))["port"]["id"]
            with lock:
                created.append(pid)

        def listing(c: Lite, _: Any) -> None:
            expect(200, c.request("GET", f"/ports?network_id={net}&limit=50"))

        def list_all(c: Lite, _: Any) -> None:
            expect(200, c.request("GET", "/ports"))

        def delete(c: Lite, pid: str) -> None:
            expect(204, c.request("DELETE", f"/ports/{pid}"))

        n = args.ports
        for clients in (1, 8):
            results[f"port create {clients} client{'s' if clients > 1 else ''}"] = \
                n / run_parallel(clients, list(range(n)), create, base, tok)
        for clients in (1, 8):
            results[f"port list (50/page) {clients} client{'s' if clients > 1 else ''}"] = \
                n / run_parallel(clients, list(range(n)), listing, base, tok)
        results[f"port list all (~{len(created)} ports) 1 client"] = \
            20 / run_parallel(1, list(range(20)), list_all, base, tok)
        half = len(created) // 2
        results["port delete 1 client"] = half / run_parallel(1, created[:half], delete, base, tok)
        results["port delete 8 clients"] = (len(created) - half) / run_parallel(8, created[half:], delete, base, tok)

        # router interface add and floating IP association, one at a time
        ext = ok(h.post("/networks", json={"network": {"name": "bench-ext", "router:external": True}}))["network"]["id"]
        ok(h.post("/subnets", json={"subnet": {"network_id": ext, "ip_version": 4, "cidr": "172.31.0.0/16",
                                               "enable_dhcp": False}}))
        router = ok(h.post("/routers", json={"router": {"name": "bench-r",
                                                        "external_gateway_info": {"network_id": ext}}}))["router"]["id"]
        subnets, vm_ports = [], []
        for i in range(args.ops):
            nid = ok(h.post("/networks", json={"network": {"name": f"bench-{i}"}}))["network"]["id"]
            subnets.append(ok(h.post("/subnets", json={"subnet": {"network_id": nid, "ip_version": 4,
                                                                  "cidr": f"10.{i // 200 + 1}.{i % 200}.0/24"}})
                              )["subnet"]["id"])
        lat_iface = []
        for s in subnets:
            t0 = time.perf_counter()
            ok(h.put(f"/routers/{router}/add_router_interface", json={"subnet_id": s}))
            lat_iface.append(time.perf_counter() - t0)
            vm_ports.append(ok(h.post("/ports", json={"port": {"network_id": ok(h.get(f"/subnets/{s}"))["subnet"][
                "network_id"], "device_owner": "compute:nova"}}))["port"]["id"])
        lat_fip = []
        for p in vm_ports:
            fip = ok(h.post("/floatingips", json={"floatingip": {"floating_network_id": ext}}))["floatingip"]["id"]
            t0 = time.perf_counter()
            ok(h.put(f"/floatingips/{fip}", json={"floatingip": {"port_id": p}}))
            lat_fip.append(time.perf_counter() - t0)
        rss, hwm = rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"neutrino control plane bench ({'SQLite WAL' if not args.db else args.db.split(':')[0]}, "
          f"{os.cpu_count()} CPUs, {args.ports} ports per run)")
    for k, v in results.items():
        ref = NEUTRON.get(k)
        extra = f"   {v / ref:5.1f}x Neutron ({ref:g}/s)" if ref else ""
        print(f"  {k:<40} {v:8.1f} /s{extra}")
    for name, lat in (("router interface add", lat_iface), ("floating IP associate", lat_fip)):
        med = statistics.median(lat)
        print(f"  {name:<40} {med * 1000:8.2f} ms median, {max(lat) * 1000:.2f} ms max"
              f"   {NEUTRON_LATENCY / med:5.0f}x Neutron (0.65-0.95 s)")
    print(f"  {'server memory':<40} {rss:8.1f} MiB RSS, {hwm:.1f} MiB peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
