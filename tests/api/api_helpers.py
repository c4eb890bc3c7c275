"""Helpers and fixtures: a real neutrino server on loopback (per database), the openstack CLI, openstacksdk, httpx.

The database is parametrized: SQLite always; PostgreSQL when running as root with the PostgreSQL 15
binaries present (a private cluster in a temp dir on a free loopback port, stopped by PID). In CI as
root, PostgreSQL must run: a missing prerequisite fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from tests.cloud_setup import ADMIN_AND_DEMO

if TYPE_CHECKING:
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
OPENSTACK = str(VENV_BIN / "openstack")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
IS_ROOT = os.geteuid() == 0
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


# -- PostgreSQL ---------------------------------------------------------------------------------

@dataclass
class PgCluster:
    datadir: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


def pg_start() -> PgCluster:
    base = Path(tempfile.mkdtemp(prefix="neutrino-pg-", dir="/tmp"))
    os.chmod(base, 0o755)
    datadir = base / "data"
    datadir.mkdir()
    shutil.chown(datadir, "postgres", "postgres")
    run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, str(PG_BIN / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)
    port = free_port()
    subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-l", str(datadir / "log"), "-w",
                    "-o", f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off "
                          f"-c max_connections=60", "start"], check=True, capture_output=True)
    pid = int((datadir / "postmaster.pid").read_text().split()[0])
    return PgCluster(datadir, port, pid)


def pg_stop(pg: PgCluster) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pg.pid, signal.SIGINT)  # fast shutdown

    def gone() -> bool:
        try:
            os.kill(pg.pid, 0)
        except ProcessLookupError:
            return True
        return False
    try:
        wait_until(gone, 20, "postgres to stop")
    except TimeoutError:
        os.kill(pg.pid, signal.SIGKILL)
    shutil.rmtree(pg.datadir.parent, ignore_errors=True)


def pg_available() -> str | None:
    if not IS_ROOT:
        return "needs root to run a private PostgreSQL"
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL binaries missing in {PG_BIN}"
    if shutil.which("runuser") is None:
        return "runuser missing"
    return None


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    why = pg_available()
    if why:
        if IN_CI and IS_ROOT:
            pytest.fail(f"CI as root must run PostgreSQL: {why}")
        pytest.skip(why)
    pg = pg_start()
    try:
        yield pg
    finally:
        pg_stop(pg)


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('state')}/neutrino.db"
    pg: PgCluster = request.getfixturevalue("pg_cluster")
    return pg.url


# -- the server ---------------------------------------------------------------------------------

@dataclass
class Server:
    base: str
    clouds_yaml: Path
    proc: subprocess.Popen[bytes]
    log: Path
    _token: str | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        for k in list(env):
            if k.startswith("OS_") and k != "OS_CLIENT_CONFIG_FILE":
                del env[k]
        return env

    def token(self) -> str:
        if self._token is None:
            r = httpx.post(f"{self.base}/identity/v3/auth/tokens", json={"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"name": "Default"}, "password": "secret"}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
            assert r.status_code == 201, r.text
            self._token = r.headers["X-Subject-Token"]
        return self._token

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.base}/v2.0", headers={"X-Auth-Token": self.token()}, timeout=30)

    def osc(self, *args: str, check: bool = True) -> Any:
        """Run the real openstack CLI; returns parsed JSON for ``-f json``, else stdout."""
        p = subprocess.run([OPENSTACK, "--os-cloud", "neutrino", *args], env=self.env(), capture_output=True,
                           text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"openstack {' '.join(args)} failed ({p.returncode}):\n{p.stderr}\n"
                                 f"server log tail:\n{self.log.read_text()[-3000:]}")
        if not check:
            return p
        return json.loads(p.stdout) if "json" in args else p.stdout


def start_server(tmp: Path, db: str, *, auth: str = "keystone", scenario: Path | None = None) -> Server:
    port = free_port()
    clouds = tmp / "clouds.yaml"
    log = tmp / "server.log"
    cmd = [sys.executable, "-m", "neutrino.api.serve", "--port", str(port), "--db", db, "--auth", auth,
           "--clouds-yaml", str(clouds)]
    if scenario is not None:
        cmd += ["--scenario", str(scenario)]
    env = dict(os.environ, NEUTRINO_STATE=str(tmp / "state"))
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()}")
        try:
            return httpx.get(base + "/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    wait_until(ready, 30, "the neutrino server to answer")
    return Server(base, clouds, proc, log)


def stop_server(s: Server) -> None:
    stop_process(s.proc)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """End a server or agent this test started: SIGINT, as a user's ^C, then SIGKILL after ``timeout``."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


SCENARIO = ROOT / "examples" / "seed000.yaml"

# A controller and two compute hosts, an admin and a member of another project (for the compute tests).
TWO_COMPUTES = """\
name: two-computes
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:1000"], flat_networks: [provider],
             firewall_driver: iptables_hybrid, generation: modern}
hosts:
  - {name: controller, roles: [controller, network], management_ip: 10.0.0.1, tunnel_ip: 10.0.0.1,
     bridge_mappings: {provider: br-ex}}
  - {name: compute1, roles: [compute], management_ip: 10.0.0.11, tunnel_ip: 10.0.0.11}
  - {name: compute2, roles: [compute], management_ip: 10.0.0.12, tunnel_ip: 10.0.0.12}
""" + ADMIN_AND_DEMO


def two_computes(tmp: Path) -> Path:
    """``TWO_COMPUTES`` written to a file in ``tmp``."""
    path = tmp / "two-computes.yaml"
    path.write_text(TWO_COMPUTES)
    return path


def fresh_database(db_url: str, name: str, tmp: Path) -> str:
    """A new, empty database for one module's server: a file on SQLite, a database of its own in the
    cluster on PostgreSQL."""
    if not db_url.startswith("postgresql"):
        return f"sqlite:///{tmp}/{name}.db"
    import sqlalchemy
    eng = sqlalchemy.create_engine(db_url)
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    eng.dispose()
    return db_url.rsplit("/", 1)[0] + "/" + name


def cloud_on_fresh_database(request: pytest.FixtureRequest, tmp_path: Path, prefix: str,
                            postgres: bool | None = None) -> Iterator[Any]:
    """A service-layer cloud (the default scenario) on a database of its own: a SQLite file, or a
    database in the session's cluster when ``postgres``, or when it is not given and ``request.param``
    is "postgres" (for a parametrised fixture)."""
    import uuid

    from neutrino.db.session import Database
    from neutrino.scenarios.model import default_scenario
    from neutrino.services.cloud import Cloud

    if postgres is None:
        postgres = request.param == "postgres"
    base = request.getfixturevalue("pg_cluster").url if postgres else "sqlite://"
    db = Database(fresh_database(base, f"{prefix}_{uuid.uuid4().hex[:12]}", tmp_path))
    try:
        yield Cloud(db, default_scenario())
    finally:
        db.dispose()


@pytest.fixture
def pg_cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A service-layer cloud (the default scenario) on a database of its own in the session's
    PostgreSQL cluster."""
    yield from cloud_on_fresh_database(request, tmp_path, "pg", postgres=True)


@pytest.fixture(scope="session")
def server(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if db_url.startswith("postgresql"):
        import sqlalchemy
        eng = sqlalchemy.create_engine(db_url)
        with eng.begin() as c:
            c.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        eng.dispose()
    s = start_server(tmp_path_factory.mktemp("server"), db_url, scenario=SCENARIO)
    try:
        yield s
    finally:
        stop_server(s)


# -- error bodies -----------------------------------------------------------------------------

NOVA_FAULTS = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 405: "badMethod", 409: "conflictingRequest",
               413: "overLimit"}


def shape_problem(path: str, status: int, body: Any) -> str | None:
    """Why an error body is not in the shape of the service at ``path`` (None when it is)."""
    head = path.lstrip("/").split("/", 1)[0]
    if head == "identity" or (head == "compute" and status == 401):
        err = body.get("error") if isinstance(body, dict) else None
        if not (isinstance(err, dict) and err.get("code") == status and isinstance(err.get("message"), str)
                and isinstance(err.get("title"), str) and set(body) == {"error"}):
            return "not Keystone's {'error': {code, title, message}}"
        return None
    if head == "compute":
        if not (isinstance(body, dict) and len(body) == 1):
            return "not one Nova fault"
        name, fault = next(iter(body.items()))
        if name != NOVA_FAULTS.get(status, "computeFault") or not isinstance(fault, dict) or \
                fault.get("code") != status or not isinstance(fault.get("message"), str) or not fault["message"]:
            return f"not Nova's {NOVA_FAULTS.get(status, 'computeFault')} fault"
        return None
    err = body.get("NeutronError") if isinstance(body, dict) else None
    if not (isinstance(err, dict) and isinstance(err.get("type"), str) and isinstance(err.get("message"), str)
            and err.get("message") and err.get("detail") == "" and set(body) == {"NeutronError"}):
        return "not Neutron's {'NeutronError': {type, message, detail}}"
    return None


def password_auth(user: str, project: str, password: str = "secret") -> dict[str, Any]:
    """The body of a Keystone password authentication of ``user`` scoped to ``project`` (both in the
    Default domain)."""
    return {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}


def password_token(base: str, user: str, project: str, password: str = "secret") -> str:
    """A Keystone token for ``user`` scoped to ``project`` (both in the Default domain)."""
    r = httpx.post(f"{base}/identity/v3/auth/tokens", json=password_auth(user, project, password))
    assert r.status_code == 201, r.text
    return r.headers["X-Subject-Token"]


def app_auth(c: TestClient, user: str = "admin", project: str = "admin") -> httpx.Response:
    """Keystone's answer (201 asserted) to ``user``'s password on ``project``, from an in-process app."""
    r = c.post("/identity/v3/auth/tokens", json=password_auth(user, project))
    assert r.status_code == 201, r.text
    return r


def app_headers(c: TestClient, user: str = "admin", project: str = "admin") -> dict[str, str]:
    """The headers that carry ``user``'s token on ``project``, from an in-process app."""
    return {"X-Auth-Token": app_auth(c, user, project).headers["X-Subject-Token"]}


@contextlib.contextmanager
def scenario_app(tmp: Path, name: str, scenario: str) -> Iterator[TestClient]:
    """The API in process (Starlette's test client, Keystone tokens) on ``scenario``'s text, written to
    ``tmp``/``name``.yaml, with a SQLite database of its own."""
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app

    (tmp / f"{name}.yaml").write_text(scenario)
    application, _ = make_app(f"sqlite:///{tmp}/{name}.db", str(tmp / f"{name}.yaml"), "keystone", name)
    with TestClient(application) as c:
        yield c


class AppUser:
    """A user of an in-process app (Starlette's test client) calling its Neutron API with a token."""

    def __init__(self, c: TestClient, name: str, project: str) -> None:
        r = app_auth(c, name, project)
        self.c = c
        self.headers = {"X-Auth-Token": r.headers["X-Subject-Token"]}
        self.project = r.json()["token"]["project"]["id"]

    def call(self, method: str, path: str, body: Any = None, status: int | None = None) -> Any:
        """The JSON answer (None when empty) of ``/v2.0`` + ``path``, its status asserted when given."""
        r = self.c.request(method, "/v2.0" + path, json=body, headers=self.headers)
        if status is not None:
            assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    def error(self, method: str, path: str, body: Any, status: int) -> dict[str, Any]:
        """The ``NeutronError`` of an answer with ``status``."""
        return dict(self.call(method, path, body, status)["NeutronError"])


@contextlib.contextmanager
def two_computes_server(tmp: Path, name: str) -> Iterator[Server]:
    """A server of its own on a SQLite database, with the two-computes scenario."""
    server = start_server(tmp, f"sqlite:///{tmp / (name + '.db')}", scenario=two_computes(tmp))
    try:
        yield server
    finally:
        stop_server(server)


@contextlib.contextmanager
def example_server(tmp: Path, example: str) -> Iterator[Server]:
    """A server of its own on a SQLite database, with examples/``example`` without its resources and
    with a second project ``demo`` and its member ``demo``."""
    doc = yaml.safe_load((ROOT / "examples" / example).read_text())
    doc["identity"]["projects"] = ["admin", "demo"]
    doc["identity"]["users"].append({"name": "demo", "password": "secret", "project": "demo",
                                     "roles": ["member", "reader"]})
    doc["resources"] = {}
    scenario = tmp / example
    scenario.write_text(yaml.safe_dump(doc))
    server = start_server(tmp, f"sqlite:///{tmp / (Path(example).stem + '.db')}", scenario=scenario)
    try:
        yield server
    finally:
        stop_server(server)


def user_client(s: Server, user: str, project: str) -> httpx.Client:
    """An HTTP client on the server's Neutron API with ``user``'s token on ``project``."""
    return httpx.Client(base_url=f"{s.base}/v2.0", headers={"X-Auth-Token": password_token(s.base, user, project)},
                        timeout=30)


def ok(r: httpx.Response, status: int | None = None) -> Any:
    """The response's JSON (None when empty), asserting its status (any 2xx when not given)."""
    assert r.status_code < 300 if status is None else r.status_code == status, (r.status_code, r.text)
    return r.json() if r.content else None
