"""One ``neutrino agent`` per host, each its own process in its own network namespace, fed by a
``neutrino server`` on PostgreSQL over veth links, converge the real hosts when a server is created
and deleted with the ``openstack`` CLI.

The lab (namespaces ``nt-ag<pid>-...``, made and removed by this test): ``-srv`` holds a Linux bridge
with the server's address; ``-cli`` (where ``openstack`` and ``neutrino up`` run), ``-network`` and
``-compute`` (where the agents run) each have a veth into it, addresses in 10.250.0.0/24. Processes
enter their namespace with ``nsenter --net`` (only the network namespace, so the namespaces the Linux
backend makes are seen by every process). The server, ``neutrino up`` and the test reach PostgreSQL
(the private cluster of ``tests/api/api_helpers.py``, a database of this test's own) over its Unix
socket. Seed 000 is brought up for real with ``neutrino up --backend linux --db``; the server runs
with ``--no-agents``, so every port status comes from the agent processes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from neutrino.db.session import Database
from neutrino.linux import netns as netns_lib
from neutrino.linux import session
from neutrino.linux.apply import ip_batch
from neutrino.linux.readback import HostDiff
from neutrino.linux.realize import attach
from neutrino.linux.records import Record, guest_ns, host_ns, namespaces_named
from neutrino.linux.runner import run
from neutrino.plan import naming, plan_host
from neutrino.services.snapshot import CloudSnapshot, load
from tests.api.api_helpers import OPENSTACK, PgCluster, pg_cluster, wait_until  # noqa: F401 (a fixture)

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
SEED000 = ROOT / "examples" / "seed000.yaml"
NEUTRINO = str(Path(sys.executable).parent / "neutrino")
NET = "10.250.0"
SERVER_IP = f"{NET}.1"
PORT = 9696
HOSTS = ("network", "compute")


def _pings(netns: str, ip: str) -> bool:
    return run(["ping", "-c", "1", "-W", "1", ip], netns=netns, check=False).returncode == 0


def root_view() -> dict[str, str]:
    """The root namespace's links, routes and iptables (which nothing here may change)."""
    return {" ".join(argv): run(argv).stdout
            for argv in (["ip", "-o", "link"], ["ip", "route"], ["iptables-save"])}


@dataclass
class Lab:
    tmp: Path
    tag: str
    db_url: str
    made: list[str] = field(default_factory=list)  # namespaces, recorded before each is made
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # what this test started, by name

    @property
    def up_state(self) -> Path:
        return self.tmp / "up-state"

    @property
    def clouds(self) -> Path:
        return self.tmp / "clouds.yaml"

    def ns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def build(self) -> None:
        srv = self.ns("srv")
        self.made.append(srv)
        netns_lib.add(srv)
        ip_batch(srv, ["link add br0 type bridge", f"addr add {SERVER_IP}/24 dev br0", "link set br0 up"])
        for i, name in enumerate(("cli", *HOSTS), start=2):
            ns = self.ns(name)
            self.made.append(ns)
            netns_lib.add(ns)
            run(["ip", "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns],
                netns=srv)
            ip_batch(srv, [f"link set v{i} master br0", f"link set v{i} up"])
            ip_batch(ns, [f"addr add {NET}.{i}/24 dev eth0", "link set eth0 up"])
        for name in ("cli", *HOSTS):
            wait_until(functools.partial(_pings, self.ns(name), SERVER_IP), 20, f"{name} to reach the server")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(OS_CLIENT_CONFIG_FILE=str(self.clouds), OS_CLOUD="neutrino", **extra)
        return env

    def argv_in(self, name: str, *argv: str) -> list[str]:
        """``argv`` run in the lab namespace ``name`` (its network namespace only)."""
        return ["nsenter", f"--net={netns_lib.NETNS_DIR}/{self.ns(name)}", "--", *argv]

    def start(self, what: str, where: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{what}.log").open("wb") as log:
            proc = subprocess.Popen(self.argv_in(where, *argv), env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[what] = proc
        return proc

    def log(self, what: str) -> str:
        path = self.tmp / f"{what}.log"
        return path.read_text() if path.exists() else ""

    def alive(self, what: str) -> None:
        proc = self.procs[what]
        assert proc.poll() is None, f"{what} exited ({proc.returncode}):\n{self.log(what)[-3000:]}"

    def osc(self, *args: str) -> Any:
        p = subprocess.run(self.argv_in("cli", OPENSTACK, *args), env=self.env(), capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, \
            f"openstack {' '.join(args)}: {p.stderr}\nserver:\n{self.log('server')[-3000:]}"
        return json.loads(p.stdout) if "json" in args and p.stdout.strip() else p.stdout

    def stop(self, what: str, sig: int, timeout: float) -> int | None:
        """End a process this test started, by its PID: ``sig``, then SIGKILL after ``timeout``."""
        proc = self.procs.get(what)
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode


@pytest.fixture
def lab(tmp_path: Path, pg_cluster: PgCluster) -> Iterator[Lab]:  # noqa: F811 (the fixture imported above)
    import sqlalchemy

    tag = f"nt-ag{os.getpid()}"
    dbname = f"nt_agents_{os.getpid()}"
    def socket_url(db: str) -> str:  # over the cluster's Unix socket: no TCP, in any network namespace
        return f"postgresql+psycopg://postgres@/{db}?host={pg_cluster.datadir}&port={pg_cluster.port}"

    admin = sqlalchemy.create_engine(socket_url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {dbname}")
        c.exec_driver_sql(f"CREATE DATABASE {dbname}")
    url = socket_url(dbname)
    lab = Lab(tmp_path, tag, url)
    before = root_view()
    problems: list[str] = []

    def cleanly(what: str, fn: Any, *args: Any) -> None:  # every step runs, whatever failed before
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - reported after the rest is cleaned up
            problems.append(f"{what}: {type(e).__name__}: {e}")

    def down() -> None:
        if lab.up_state.exists():
            p = subprocess.run([NEUTRINO, "down"], env=lab.env(NEUTRINO_STATE=str(lab.up_state)),
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr

    def drop() -> None:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        admin.dispose()

    try:
        lab.build()
        yield lab
    finally:
        for what in [w for w in lab.procs if w.startswith("agent-")]:
            cleanly(what, lab.stop, what, signal.SIGTERM, 20)
        cleanly("server", lab.stop, "server", signal.SIGINT, 15)
        cleanly("neutrino down", down)
        for ns in reversed(lab.made):
            cleanly(f"delete {ns}", netns_lib.delete, ns)
        cleanly("drop the database", drop)
    assert not problems, problems
    assert not [ns for ns in lab.made if netns_lib.exists(ns)]
    assert root_view() == before


def _snapshot(db: Database) -> CloudSnapshot:
    with db.read() as s:
        return load(s)


def _diffs(state: Path, snap: CloudSnapshot) -> dict[str, HostDiff]:
    """Each host's real state (read back) against its plan from ``snap``."""
    prefix = session.prefix_of(state)
    out = {}
    for host in HOSTS:
        planned = plan_host(snap, host)
        realized = attach((planned,), snap.deployment, prefix=prefix, state_dir=state,
                          guests=session.guests_for(snap, (planned,)))
        out[host] = realized.diff(host)
    return out


def _wait_converged(state: Path, db: Database, timeout: float, what: str) -> None:
    """Until every host read back equals its plan from the database as it is now."""
    why: list[str] = []

    def converged() -> bool:
        why[:] = [d.summary() for d in _diffs(state, _snapshot(db)).values() if not d.empty]
        return not why
    try:
        wait_until(converged, timeout, what)
    except TimeoutError as e:
        raise AssertionError(f"{e}; still different: {why}") from None


def test_one_agent_process_per_host_converges_its_host(lab: Lab) -> None:
    started = time.monotonic()
    up = subprocess.run(lab.argv_in("cli", NEUTRINO, "up", str(SEED000), "--backend", "linux",
                                    "--db", lab.db_url),
                        env=lab.env(NEUTRINO_STATE=str(lab.up_state)), capture_output=True, text=True,
                        timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    prefix = session.prefix_of(lab.up_state)
    assert all(netns_lib.exists(host_ns(prefix, h)) for h in HOSTS)

    lab.start("server", "srv", [NEUTRINO, "server", "--host", SERVER_IP, "--port", str(PORT),
                                "--db", lab.db_url, "--scenario", str(SEED000), "--no-agents",
                                "--clouds-yaml", str(lab.clouds)],
              lab.env(NEUTRINO_STATE=str(lab.tmp / "server-state")))
    listening = f"{SERVER_IP}:{PORT} "

    def serving() -> bool:
        lab.alive("server")
        return lab.clouds.exists() and listening in run(["ss", "-ltnH"], netns=lab.ns("srv")).stdout
    wait_until(serving, 60, "the server to listen inside its namespace")

    for host in HOSTS:
        lab.start(f"agent-{host}", host, [NEUTRINO, "agent", "--host", host,
                                          "--server", f"http://{SERVER_IP}:{PORT}",
                                          "--backend", "linux", "--poll", "20"],
                  lab.env(NEUTRINO_STATE=str(lab.up_state)))
    for host in HOSTS:
        def first_pass(host: str = host) -> bool:
            lab.alive(f"agent-{host}")
            return f"{host}: converged generation" in lab.log(f"agent-{host}")
        wait_until(first_pass, 60, f"the {host} agent's first pass")

    db = Database(lab.db_url)
    try:
        _wait_converged(lab.up_state, db, 60, "the hosts to match the plan")

        # a server created with the openstack CLI: the compute agent wires and boots it, the network
        # agent serves its lease, the compute agent reports its port ACTIVE
        created = lab.osc("server", "create", "--image", "cirros", "--flavor", "1", "--network", "private",
                          "vm2", "-f", "json")
        port = next(p for p in _snapshot(db).ports if p.device_id == created["id"])
        assert port.binding_host == "compute"

        def active() -> bool:
            for what in lab.procs:
                lab.alive(what)
            return next(p for p in _snapshot(db).ports if p.id == port.id).status == "ACTIVE"
        wait_until(active, 60, "the agents to report the new port ACTIVE")
        _wait_converged(lab.up_state, db, 60, "every host to converge")
        assert [p["Status"] for p in lab.osc("port", "list", "--server", "vm2", "-f", "json")] == ["ACTIVE"]
        vm = guest_ns(prefix, "vm2")
        fixed = str(port.fixed_ips[0].ip_address)
        wait_until(lambda: f"inet {fixed}/" in run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
                                                    netns=vm, check=False).stdout, 30, "vm2's DHCP lease")
        wait_until(functools.partial(_pings, vm, "10.1.0.1"), 20, "vm2 to reach its router")
        tap = naming.tap_device(port.id)  # the port's firewall rules match its tap
        assert tap in run(["iptables-save"], netns=host_ns(prefix, "compute")).stdout

        # deleted with the CLI: the port goes, and the compute agent removes its flows and rules
        lab.osc("server", "delete", "vm2")
        wait_until(lambda: all(p.id != port.id for p in _snapshot(db).ports), 30, "the port to go")
        _wait_converged(lab.up_state, db, 60, "every host to converge again")
        assert tap not in run(["iptables-save"], netns=host_ns(prefix, "compute")).stdout
        assert lab.osc("port", "list", "--device-id", created["id"], "-f", "json") == []
        # what the compute agent made is in the shared record, so 'neutrino down' removes it
        record = Record.load(prefix, lab.up_state)
        assert vm in record.namespaces
        assert {p.what for p in record.processes if p.netns == vm} >= {"guest httpd",
                                                                       "guest sshd stand-in (nc)"}
    finally:
        db.engine.dispose()

    for host in HOSTS:  # SIGTERM ends each agent cleanly, at once
        ended = time.monotonic()
        assert lab.stop(f"agent-{host}", signal.SIGTERM, 20) == 0, lab.log(f"agent-{host}")
        assert time.monotonic() - ended < 15
        text = lab.log(f"agent-{host}")
        assert f"{host}: stopped" in text and "Traceback" not in text, text
    assert namespaces_named(prefix)  # the cloud is still up: only 'neutrino down' removes it
    assert time.monotonic() - started < 240


def test_writers_of_one_record_lose_nothing(tmp_path: Path) -> None:
    """Each agent process loads the shared record and adds what it makes: every addition survives."""
    import threading

    prefix = "ntzz99"
    Record.load(prefix, tmp_path).save()

    def writer(n: int) -> None:
        rec = Record.load(prefix, tmp_path)  # each its own copy, loaded before the others write
        for i in range(25):
            rec.add_namespace(f"{prefix}-vm-w{n}-{i}")
        rec.add_process(os.getpid(), f"writer {n}", f"{prefix}-vm-w{n}-0")

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=60)
    rec = Record.load(prefix, tmp_path)
    assert sorted(rec.namespaces) == sorted(f"{prefix}-vm-w{n}-{i}" for n in range(4) for i in range(25))
    assert sorted(p.what for p in rec.processes) == [f"writer {n}" for n in range(4)]
    assert not any(netns_lib.exists(ns) for ns in rec.namespaces)  # names only: nothing was made
