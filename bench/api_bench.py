"""Control-plane throughput: create, list and delete with 1 and 8 concurrent clients, router interface
add and floating-IP association latency, and the server's memory.

Starts a real server (uvicorn, SQLite WAL in a temp dir, Keystone auth) and drives it over HTTP:

    .venv/bin/python bench/api_bench.py [--ports 500] [--repeat 5] [--db URL] [--agents]
    .venv/bin/python bench/api_bench.py --vs-postgres    # SQLite and PostgreSQL servers, batch for batch

Reference (real Neutron 29 on this 2-core machine): 9 ports/s with one client, ~18 ports/s with 8,
router interface add and floating-IP association 0.65-0.95 s each. The target is 15x on each. The
floor (bench/floor_app.py), the issue #17 targets and the latest figures: bench/README.md.
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
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: the tests' helpers
from tests.api.api_helpers import free_port, fresh_database, pg_start, pg_stop  # noqa: E402

NEUTRON = {"port create 1 client": 9.0, "port create 8 clients": 18.0}
NEUTRON_LATENCY = 0.65  # s, the fastest of router interface add / FIP association


def start(db: str | None, tmp: Path, *, agents: bool = False, floor: bool = False, src: str | None = None
          ) -> tuple[subprocess.Popen[bytes], str]:
    """neutrino's server (its own state folder in ``tmp``; the in-process agents only with ``agents``;
    ``src``: neutrino imported from that source tree instead), or with ``floor`` the floor app
    (bench/floor_app.py)."""
    port = free_port()
    if floor:
        cmd = [sys.executable, str(Path(__file__).with_name("floor_app.py")), "--port", str(port),
               "--db", str(tmp / "floor.db")]
    else:
        cmd = [sys.executable, "-m", "neutrino.api.serve", "--port", str(port), "--clouds-yaml", "none",
               "--db", db or f"sqlite:///{tmp}/bench.db"] + ([] if agents else ["--no-agents"])
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / ("floor.log" if floor else "log")
    env = {**os.environ, "NEUTRINO_STATE": str(tmp / "state")}
    if src:
        env["PYTHONPATH"] = src
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                if floor or httpx.get(base + "/", timeout=1).status_code == 200:
                    return proc, base
        except (OSError, httpx.HTTPError):
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start: " + log_path.read_text())


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
        status, data = self.request_raw(method, path, body)
        return status, json.loads(data) if data else None

    def request_raw(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """The status and the body's bytes, unparsed (read to the last byte)."""
        self.conn.request(method, "/v2.0" + path, body=None if body is None else json.dumps(body),
                          headers=self.headers)
        r = self.conn.getresponse()
        return r.status, r.read()

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


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used: per request, a figure the other load on a
    shared machine does not inflate the way it does wall-clock rates."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    vals = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
            if line.startswith(("VmRSS", "VmHWM"))}
    return vals["VmRSS"] / 1024, vals["VmHWM"] / 1024


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=500, help="ports per create run (two runs: 1 and 8 clients)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="the one-client create run in this many batches, alternating with the floor app's")
    ap.add_argument("--ops", type=int, default=60, help="router interfaces / floating IPs to time")
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    ap.add_argument("--postgres", action="store_true",
                    help="a private PostgreSQL 15 cluster for the run (as root; the API tests' setup)")
    ap.add_argument("--agents", action="store_true", help="run the server's in-process agents (re-planning "
                                                          "the hosts after every change) during the figures")
    ap.add_argument("--vs-postgres", action="store_true",
                    help="also run this tree on a private PostgreSQL 15 cluster (as root), alternating its create "
                         "batches, list timings, delete batches and batches of creates asking for an address with the "
                         "SQLite server's: the PostgreSQL/SQLite ratios from one run")
    ap.add_argument("--compare", metavar="SRC", default=None,
                    help="also run a neutrino imported from the source tree SRC (e.g. `git archive HEAD src | tar "
                         "-x -C /tmp/before`, then /tmp/before/src), alternating its create batches and list "
                         "timings with this one's (SQLite only)")
    ap.add_argument("--pg-compare", metavar="SRC", default=None,
                    help="with --vs-postgres: also a PostgreSQL server of the source tree SRC (a database of its "
                         "own in the same cluster), its create batches alternated with the others'")
    ap.add_argument("--pg-analyze", action="store_true",
                    help="with --vs-postgres: before the timed batches, 40 creates on each PostgreSQL server and an "
                         "ANALYZE of its database, as autovacuum makes early in a database's life (its plans then "
                         "made from the statistics of small tables)")
    args = ap.parse_args()
    if (args.pg_compare or args.pg_analyze) and not args.vs_postgres:
        raise SystemExit("--pg-compare and --pg-analyze go with --vs-postgres")
    tmp = Path(tempfile.mkdtemp(prefix="neutrino-bench-"))
    pg = None
    third: tuple[subprocess.Popen[bytes], str] | None = None
    if args.postgres:
        pg = pg_start()  # a private cluster, as the API tests run one
        args.db = pg.url
    proc, base = start(args.db, tmp, agents=args.agents)
    floor_proc, floor_base = start(None, tmp, floor=True)
    if args.vs_postgres and (args.compare or args.postgres):
        raise SystemExit("--vs-postgres runs SQLite against PostgreSQL: not with --compare or --postgres")
    pg_urls: list[str] = []  # the PostgreSQL servers' databases
    if args.vs_postgres:
        pg = pg_start()
        other = start(pg.url, tmp / "compare", agents=args.agents)
        pg_urls.append(pg.url)
        if args.pg_compare:
            pg_urls.append(fresh_database(pg.url, "pg_compared", tmp))
            third = start(pg_urls[-1], tmp / "compare2", agents=args.agents, src=args.pg_compare)
    else:
        other = start(None, tmp / "compare", agents=args.agents, src=args.compare) if args.compare else None
    label = "PostgreSQL" if args.vs_postgres else "compared tree"
    label2 = f"PostgreSQL, {args.pg_compare}"
    results: dict[str, float] = {}
    latencies: dict[str, float] = {}
    batches: dict[str, list[float]] = {"neutrino": [], "floor": []}
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

        def floor_create(c: Lite, _: Any) -> None:
            expect(201, c.request("POST", "/ports", {"port": {"network_id": net}}))

        def listing(c: Lite, _: Any) -> None:
            expect(200, c.request("GET", f"/ports?network_id={net}&limit=50"))

        def list_all(c: Lite, _: Any) -> None:
            expect(200, c.request("GET", "/ports"))

        def delete(c: Lite, pid: str) -> None:
            expect(204, c.request("DELETE", f"/ports/{pid}"))

        n = args.ports
        per = max(1, n // args.repeat)
        run_parallel(1, list(range(20)), floor_create, floor_base, tok)  # warm both up
        def prepared(base: str) -> tuple[str, str, str]:
            """Another server made ready as this one was: no port quota, a network and its subnet;
            its URL, a token and the network's id."""
            tok_, project_ = token(base)
            client = httpx.Client(base_url=f"{base}/v2.0", headers={"X-Auth-Token": tok_}, timeout=60)
            ok(client.put(f"/quotas/{project_}", json={"quota": {"port": -1}}))
            net_ = ok(client.post("/networks", json={"network": {"name": "bench"}}))["network"]["id"]
            ok(client.post("/subnets", json={"subnet": {"network_id": net_, "ip_version": 4, "cidr": "10.128.0.0/16"}}))
            return base, tok_, net_

        compare: tuple[str, str, str] | None = None
        other_created: list[str] = []
        if other is not None:
            compare = prepared(other[1])
            batches["compared"] = []
        compare2: tuple[str, str, str] | None = None
        third_created: list[str] = []
        if third is not None:
            compare2 = prepared(third[1])
            batches["compared2"] = []

        def third_create(c: Lite, _: Any) -> None:
            assert compare2 is not None
            pid = expect(201, c.request("POST", "/ports", {"port": {"network_id": compare2[2]}}))["port"]["id"]
            with lock:
                third_created.append(pid)

        def other_create(c: Lite, _: Any) -> None:
            assert compare is not None
            pid = expect(201, c.request("POST", "/ports", {"port": {"network_id": compare[2]}}))["port"]["id"]
            with lock:
                other_created.append(pid)

        if args.pg_analyze:
            if compare is not None:
                run_parallel(1, list(range(40)), other_create, compare[0], compare[1])
            if compare2 is not None:
                run_parallel(1, list(range(40)), third_create, compare2[0], compare2[1])
            for url in pg_urls:
                with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as pc:
                    pc.execute("ANALYZE")

        cpu: dict[str, float] = {}

        def batch(name: str, pid: int, fn: Callable[[Lite, Any], None], url: str, auth: str) -> None:
            c0 = cpu_s(pid)
            batches[name].append(per / run_parallel(1, list(range(per)), fn, url, auth))
            cpu[name] = cpu.get(name, 0.0) + cpu_s(pid) - c0

        for _ in range(args.repeat):
            batch("floor", floor_proc.pid, floor_create, floor_base, tok)
            batch("neutrino", proc.pid, create, base, tok)
            if compare is not None and other is not None:
                batch("compared", other[0].pid, other_create, compare[0], compare[1])
            if compare2 is not None and third is not None:
                batch("compared2", third[0].pid, third_create, compare2[0], compare2[1])
        for name, used in cpu.items():
            latencies[f"{ {'compared': label, 'compared2': label2}.get(name, name)}: server CPU per create"] = \
                used / (per * args.repeat)
        if compare is not None:
            results[f"{label}: port create 1 client"] = statistics.median(batches["compared"])
        if compare2 is not None:
            results[f"{label2}: port create 1 client"] = statistics.median(batches["compared2"])
        results["port create 1 client"] = statistics.median(batches["neutrino"])
        results["floor app create 1 client"] = statistics.median(batches["floor"])
        results["port create 8 clients"] = n / run_parallel(8, list(range(n)), create, base, tok)
        for clients in (1, 8):
            results[f"port list (50/page) {clients} client{'s' if clients > 1 else ''}"] = \
                n / run_parallel(clients, list(range(n)), listing, base, tok)
        parse_cpu: list[float] = []

        def timed_lists(targets: list[tuple[Lite, int, list[float], list[float]]], rounds: int,
                        change: Callable[[Lite], None] | None = None) -> int:
            """GET /ports ``rounds`` times on each target in turn, recording the wall time to the
            answer's last byte and the server's CPU seconds; the client's own parse of the answer
            (its CPU seconds) goes to ``parse_cpu``. ``change``: a request made (untimed) before each
            listing, so that no listing is one the server kept from the previous one."""
            got = 0
            for _ in range(rounds):
                for client, pid, walls, cpus in targets:
                    if change is not None:
                        change(client)
                    c0, t0 = cpu_s(pid), time.perf_counter()
                    status, data = client.request_raw("GET", "/ports")
                    walls.append(time.perf_counter() - t0)
                    cpus.append(cpu_s(pid) - c0)
                    p0 = time.process_time()
                    got = len(expect(200, (status, json.loads(data)))["ports"])
                    parse_cpu.append(time.process_time() - p0)
            return got

        def rename(c: Lite) -> None:
            expect(200, c.request("PUT", f"/ports/{created[0]}", {"port": {"name": f"n{time.perf_counter_ns()}"}}))

        mine_wall: list[float] = []
        mine_cpu: list[float] = []
        with Lite(base, tok) as c:
            listed = timed_lists([(c, proc.pid, mine_wall, mine_cpu)], 20)
            changed_wall: list[float] = []
            changed_cpu: list[float] = []
            timed_lists([(c, proc.pid, changed_wall, changed_cpu)], 10, rename)
        latencies[f"port list all ({listed} ports) after a change"] = statistics.median(changed_wall)
        latencies[f"server CPU per list all ({listed} ports) after a change"] = statistics.mean(changed_cpu)
        if compare is not None and other is not None:  # as many ports in the compared tree, then alternate
            run_parallel(1, list(range(max(0, listed - len(other_created) - 1))), other_create, compare[0],
                         compare[1])
            other_wall: list[float] = []
            other_cpu: list[float] = []
            mine_wall, mine_cpu = [], []
            with Lite(compare[0], compare[1]) as oc, Lite(base, tok) as c:
                got = timed_lists([(oc, other[0].pid, other_wall, other_cpu), (c, proc.pid, mine_wall, mine_cpu)],
                                  10)
            latencies[f"{label}: port list all ({got} ports)"] = statistics.median(other_wall)
            latencies[f"{label}: server CPU per list all ({got} ports)"] = statistics.mean(other_cpu)
        latencies[f"port list all ({listed} ports)"] = statistics.median(mine_wall)
        latencies[f"server CPU per list all ({listed} ports)"] = statistics.mean(mine_cpu)
        latencies[f"client CPU parsing a list all ({listed} ports)"] = statistics.median(parse_cpu)
        half = len(created) // 2
        if compare is not None and other is not None:  # alternate delete batches with the compared server
            dels: dict[str, list[float]] = {"neutrino": [], "compared": []}
            del_cpu = {"neutrino": 0.0, "compared": 0.0}
            count = min(half, len(other_created))
            step = max(1, count // args.repeat)
            for i in range(0, count - count % step, step):
                for name, pid, ids, url, auth in (("compared", other[0].pid, other_created, compare[0], compare[1]),
                                                  ("neutrino", proc.pid, created, base, tok)):
                    c0 = cpu_s(pid)
                    dels[name].append(step / run_parallel(1, ids[i:i + step], delete, url, auth))
                    del_cpu[name] += cpu_s(pid) - c0
            done = len(dels["neutrino"]) * step
            results["port delete 1 client"] = statistics.median(dels["neutrino"])
            results[f"{label}: port delete 1 client"] = statistics.median(dels["compared"])
            latencies["neutrino: server CPU per delete"] = del_cpu["neutrino"] / done
            latencies[f"{label}: server CPU per delete"] = del_cpu["compared"] / done
            batches["delete"] = dels["neutrino"]
            batches[f"{label} delete"] = dels["compared"]
            half = done
        else:
            results["port delete 1 client"] = half / run_parallel(1, created[:half], delete, base, tok)
        results["port delete 8 clients"] = (len(created) - half) / run_parallel(8, created[half:], delete, base, tok)
        if compare is not None and other is not None:  # creates asking for an address, batches alternated
            def asking(net_: str) -> Callable[[Lite, Any], None]:
                """A create on ``net_`` asking for the address numbered ``i`` from 10.128.200.2 (free:
                the automatic picks above stay below it)."""
                def fn(c: Lite, i: int) -> None:
                    expect(201, c.request("POST", "/ports", {"port": {"network_id": net_, "fixed_ips": [
                        {"ip_address": f"10.128.{200 + i // 250}.{i % 250 + 2}"}]}}))
                return fn

            asked: dict[str, list[float]] = {"neutrino": [], "compared": []}
            asked_cpu = {"neutrino": 0.0, "compared": 0.0}
            for n_batch in range(args.repeat):
                for name, pid, url, auth, net_ in (("compared", other[0].pid, *compare), ("neutrino", proc.pid, base, tok, net)):
                    c0 = cpu_s(pid)
                    asked[name].append(per / run_parallel(1, list(range(n_batch * per, (n_batch + 1) * per)), asking(net_), url, auth))
                    asked_cpu[name] += cpu_s(pid) - c0
            results["port create asking for an address 1 client"] = statistics.median(asked["neutrino"])
            results[f"{label}: port create asking for an address 1 client"] = statistics.median(asked["compared"])
            latencies["neutrino: server CPU per create asking for an address"] = asked_cpu["neutrino"] / (per * args.repeat)
            latencies[f"{label}: server CPU per create asking for an address"] = asked_cpu["compared"] / (per * args.repeat)

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
        stop(proc)
        stop(floor_proc)
        if other is not None:
            stop(other[0])
        if third is not None:
            stop(third[0])
        if pg is not None:
            pg_stop(pg)
    print(f"neutrino control plane bench ({'SQLite WAL' if not args.db else args.db.split(':')[0]}, "
          f"{os.cpu_count()} CPUs, {args.ports} ports per run, agents {'on' if args.agents else 'off'})")
    floor = results["floor app create 1 client"]
    for k, v in results.items():
        ref = NEUTRON.get(k)
        extra = f"   {v / ref:5.1f}x Neutron ({ref:g}/s)" if ref else ""
        if k == "port create 1 client":
            extra += f"   {v / floor:4.0%} of the floor"
        print(f"  {k:<40} {v:8.1f} /s{extra}")
    for lab in (label, label2) if args.vs_postgres else ():
        if f"{lab}: port create 1 client" in results:
            ratio = results["port create 1 client"] / results[f"{lab}: port create 1 client"]
            print(f"  {'SQLite/' + lab + ' create':<40} {ratio:8.2f} x (medians of the batches above)")
    if args.vs_postgres:
        ratio = results["port create asking for an address 1 client"] / \
            results[f"{label}: port create asking for an address 1 client"]
        print(f"  {'SQLite/' + label + ' create asking for an address':<40} {ratio:8.2f} x")
    print(f"  {'(batches, /s)':<40} " + "; ".join(f"{k} {' '.join(f'{x:.0f}' for x in v)}"
                                                       for k, v in batches.items()))
    for k, v in latencies.items():
        print(f"  {k:<40} {v * 1000:8.2f} ms {'mean' if 'CPU' in k else 'median'}")
    for name, lat in (("router interface add", lat_iface), ("floating IP associate", lat_fip)):
        med = statistics.median(lat)
        print(f"  {name:<40} {med * 1000:8.2f} ms median, {max(lat) * 1000:.2f} ms max"
              f"   {NEUTRON_LATENCY / med:5.0f}x Neutron (0.65-0.95 s)")
    print(f"  {'server memory':<40} {rss:8.1f} MiB RSS, {hwm:.1f} MiB peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
