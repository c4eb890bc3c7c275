"""The agents' API (``/neutrino/v1``) over real HTTP, and ``neutrino agent --backend sim`` against it.

One server for the module (``--no-agents``: the only agents are the ones the tests start), on
SQLite, with seed 000's deployment, its resources created through the API, and a non-admin user.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from neutrino.errors import InvalidInput, NotFound
from neutrino.plan import naming, plan_host
from neutrino.remote_agent import Credentials, HostAgent, Server, credentials
from neutrino.scenarios.model import load_scenario
from neutrino.services.instances import IMAGES
from neutrino.services.snapshot import CloudSnapshot
from neutrino.services.wire import snapshot_from_json
from tests.api.api_helpers import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
SEED000 = ROOT / "examples" / "seed000.yaml"
NEUTRINO = str(Path(sys.executable).parent / "neutrino")


@dataclass
class Served:
    base: str
    db: str
    clouds_yaml: Path
    proc: subprocess.Popen[bytes]
    log: Path
    admin: str
    demo: str

    def http(self, token: str | None = None, timeout: float = 30) -> httpx.Client:
        headers = {"X-Auth-Token": token} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        with self.http(self.admin) as c:
            return c.get(path, **kw)

    def generation(self) -> int:
        r = self.get("/neutrino/v1/changes", params={"after": 0, "timeout": 0})
        assert r.status_code == 200, r.text
        return int(r.json()["generation"])

    def snapshot(self) -> CloudSnapshot:
        from neutrino.db.session import Database
        from neutrino.services.snapshot import load

        db = Database(self.db)
        with db.read() as s:
            return load(s)

    def port(self, port_id: str) -> dict[str, Any]:
        r = self.get(f"/v2.0/ports/{port_id}")
        assert r.status_code == 200, r.text
        port: dict[str, Any] = r.json()["port"]
        return port


def _token(base: str, user: str, password: str, project: str) -> str:
    r = httpx.post(f"{base}/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}})
    assert r.status_code == 201, r.text
    return r.headers["X-Subject-Token"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from neutrino.scenarios.resources import apply_scenario_resources

    tmp = tmp_path_factory.mktemp("agentapi")
    doc = yaml.safe_load(SEED000.read_text())
    doc["identity"]["users"].append({"name": "demo", "password": "demo-secret", "project": "demo",
                                     "roles": ["member", "reader"]})
    scenario_path = tmp / "scenario.yaml"
    scenario_path.write_text(yaml.safe_dump(doc))
    db = f"sqlite:///{tmp / 'cloud.db'}"
    port = free_port()
    clouds = tmp / "clouds.yaml"
    log = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["NEUTRINO_STATE"] = str(tmp / "server-state")
    proc = subprocess.Popen([sys.executable, "-m", "neutrino.api.serve", "--port", str(port), "--db", db,
                             "--scenario", str(scenario_path), "--clouds-yaml", str(clouds), "--no-agents"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(base + "/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, 30, "the server to answer")
        apply_scenario_resources(load_scenario(scenario_path), base)
        yield Served(base, db, clouds, proc, log, _token(base, "admin", "secret", "admin"),
                     _token(base, "demo", "demo-secret", "demo"))
    finally:
        stop_process(proc, timeout=15)


def _neutron_error(r: httpx.Response, status: int, kind: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"NeutronError"} and set(body["NeutronError"]) == {"type", "message", "detail"}, body
    assert body["NeutronError"]["type"] == kind, body


# -- who may ask ----------------------------------------------------------------------------------

def test_only_admin_tokens_are_served(served: Served) -> None:
    port_id = served.snapshot().ports[0].id
    status = served.port(port_id)["status"]
    calls = (("GET", "/neutrino/v1/snapshot", None), ("GET", "/neutrino/v1/changes?after=0&timeout=0", None),
             ("PUT", f"/neutrino/v1/ports/{port_id}/status", {"status": "DOWN"}))
    with served.http(served.demo) as demo:
        assert demo.get("/v2.0/networks").status_code == 200  # the token is good: it is not an admin's
        for method, path, body in calls:
            _neutron_error(demo.request(method, path, json=body), 403, "PolicyNotAuthorized")
    with served.http() as anonymous:
        for method, path, body in calls:
            _neutron_error(anonymous.request(method, path, json=body), 401, "HTTPUnauthorized")
    with served.http("not-a-token") as forged:
        _neutron_error(forged.get("/neutrino/v1/snapshot"), 401, "HTTPUnauthorized")
    assert served.port(port_id)["status"] == status  # nothing above changed it
    with served.http(served.admin) as admin:
        _neutron_error(admin.get("/neutrino/v1/nothing"), 404, "HTTPNotFound")
        _neutron_error(admin.get("/neutrino/v2/snapshot"), 404, "HTTPNotFound")
        _neutron_error(admin.post("/neutrino/v1/snapshot", json={}), 405, "HTTPMethodNotAllowed")


# -- the snapshot ----------------------------------------------------------------------------------

def test_the_snapshot_round_trips(served: Served) -> None:
    before = served.generation()
    r = served.get("/neutrino/v1/snapshot")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"generation", "snapshot"} and doc["generation"] == before
    snap = snapshot_from_json(doc["snapshot"])
    assert snap == served.snapshot()  # what the server's planners would see, from its database
    assert {s.name for s in snap.servers} >= {"cirros"}
    for host in ("network", "compute"):
        assert plan_host(snap, host) == plan_host(served.snapshot(), host)


# -- the long-poll ---------------------------------------------------------------------------------

def _poll(served: Served, after: int, timeout: float, out: dict[str, Any]) -> None:
    with served.http(served.admin, timeout=timeout + 30) as c:
        r = c.get("/neutrino/v1/changes", params={"after": after, "timeout": timeout})
    out["response"] = r
    out["at"] = time.monotonic()


def test_the_long_poll_returns_promptly_after_a_change(served: Served) -> None:
    gen = served.generation()
    out: dict[str, Any] = {}
    waiter = threading.Thread(target=_poll, args=(served, gen, 30, out))
    waiter.start()
    waiter.join(timeout=1.0)
    assert waiter.is_alive(), "the long-poll answered before anything changed"
    with served.http(served.admin) as c:
        changed = time.monotonic()
        r = c.post("/v2.0/networks", json={"network": {"name": "poll-me"}})
        assert r.status_code == 201, r.text
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert out["response"].status_code == 200, out["response"].text
    assert out["response"].json()["generation"] > gen
    assert out["at"] - changed < 3.0


def test_the_long_poll_returns_after_its_timeout_when_nothing_changes(served: Served) -> None:
    gen = served.generation()
    started = time.monotonic()
    r = served.get("/neutrino/v1/changes", params={"after": gen, "timeout": 1.5})
    waited = time.monotonic() - started
    assert r.status_code == 200 and r.json() == {"generation": gen}
    assert 1.4 <= waited < 6, waited
    # a generation ahead of the server's (the server started again since): answered at once
    started = time.monotonic()
    r = served.get("/neutrino/v1/changes", params={"after": gen + 100, "timeout": 30})
    assert r.json() == {"generation": gen} and time.monotonic() - started < 3


def test_long_polls_do_not_hold_up_the_server(served: Served) -> None:
    gen = served.generation()
    outs: list[dict[str, Any]] = [{} for _ in range(4)]
    waiters = [threading.Thread(target=_poll, args=(served, gen, 2.5, o)) for o in outs]
    for w in waiters:
        w.start()
    try:
        started = time.monotonic()
        r = served.get("/v2.0/networks")
        assert r.status_code == 200 and time.monotonic() - started < 2
        assert all(w.is_alive() for w in waiters)
    finally:
        for w in waiters:
            w.join(timeout=20)
    assert all(o["response"].json() == {"generation": gen} for o in outs)


def test_bad_long_poll_queries_are_refused(served: Served) -> None:
    for params in ({}, {"after": "x"}, {"after": 0, "timeout": "soon"}, {"after": 0, "timeout": -1},
                   {"after": 0, "timeout": "nan"}):
        _neutron_error(served.get("/neutrino/v1/changes", params=params), 400, "HTTPBadRequest")


# -- port status -----------------------------------------------------------------------------------

def test_port_status_is_set_without_announcing_a_change(served: Served) -> None:
    port = next(p for p in served.snapshot().ports if p.binding_host == "compute")
    gen = served.generation()
    with served.http(served.admin) as c:
        for status in ("DOWN", "ACTIVE"):
            r = c.put(f"/neutrino/v1/ports/{port.id}/status", json={"status": status})
            assert r.status_code == 200, r.text
            assert r.json()["port"]["id"] == port.id and r.json()["port"]["status"] == status
            assert served.port(port.id)["status"] == status
        _neutron_error(c.put(f"/neutrino/v1/ports/{port.id}/status", json={"status": "BROKEN"}), 400,
                       "HTTPBadRequest")
        _neutron_error(c.put(f"/neutrino/v1/ports/{port.id}/status", json={}), 400, "HTTPBadRequest")
        _neutron_error(c.put(f"/neutrino/v1/ports/{port.id}/status", content=b"{"), 400,
                       "MalformedRequestBody")
        r = c.put("/neutrino/v1/ports/00000000-0000-0000-0000-000000000000/status", json={"status": "DOWN"})
        assert r.status_code == 404 and "NeutronError" in r.json()
    assert served.generation() == gen  # the agents' own reports wake no agent


# -- credentials -----------------------------------------------------------------------------------

def test_credentials_come_from_clouds_yaml_or_the_environment(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {
        "neutrino": {"auth": {"auth_url": "http://192.0.2.1:9696/identity", "username": "admin",
                              "password": "secret", "project_name": "admin", "user_domain_name": "Default",
                              "project_domain_name": "Default"}},
        "open": {"auth_type": "none", "auth": {"endpoint": "http://192.0.2.1:9696/"}}}}))
    env = {"OS_CLIENT_CONFIG_FILE": str(clouds)}
    want = Credentials("http://192.0.2.1:9696/identity", "admin", "secret", "admin")
    assert credentials("http://192.0.2.1:9696", environ=env) == want
    assert credentials("http://192.0.2.1:9696", "neutrino", environ=env) == want
    assert credentials("http://x", environ={**env, "OS_CLOUD": "open"}) == Credentials(None)
    assert credentials("http://x", "open", environ=env) == Credentials(None)
    from_env = {"OS_USERNAME": "ops", "OS_PASSWORD": "pw", "OS_PROJECT_NAME": "admin"}
    assert credentials("http://192.0.2.9:9696", environ=from_env) == Credentials(
        "http://192.0.2.9:9696/identity", "ops", "pw", "admin")
    with pytest.raises(NotFound, match="no cloud 'missing'"):
        credentials("http://x", "missing", environ=env)
    clouds.write_text(yaml.safe_dump({"clouds": {"neutrino": {"auth": {"token": "t"}}}}))
    with pytest.raises(InvalidInput, match="password authentication"):
        credentials("http://x", environ=env)


# -- the agent's client and loop, in this process -------------------------------------------------

def _server(served: Served) -> Server:
    env = {"OS_CLIENT_CONFIG_FILE": str(served.clouds_yaml)}
    return Server(served.base, credentials(served.base, environ=env))


def test_a_refused_token_is_asked_for_again(served: Served) -> None:
    server = _server(served)
    server._token = "expired-or-from-before-a-restart"
    generation, snap = server.snapshot()
    assert generation == served.generation() and snap == served.snapshot()
    assert server._token not in (None, "expired-or-from-before-a-restart")


def test_a_server_that_started_again_is_resynced_with(served: Served, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    agent = HostAgent(_server(served), "compute", state=tmp_path, poll=5)
    first = agent.run_once()
    assert first.replanned and not agent.resync and agent.generation == served.generation()
    assert agent.run_once().replanned is False  # nothing changed: nothing kept again
    agent.generation += 1000  # as if the server had counted further before it started again
    started = time.monotonic()
    assert agent._changed() and agent.resync  # answered at once, and the next pass resyncs
    assert time.monotonic() - started < 3


# -- neutrino agent --backend sim ------------------------------------------------------------------

def _agent_env(served: Served, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(NEUTRINO_STATE=str(state), OS_CLIENT_CONFIG_FILE=str(served.clouds_yaml))
    return env


def _kept(state: Path, host: str) -> Any:
    """The host as the agent kept it in its own state folder (``neutrino exec`` reads the same)."""
    from neutrino import store

    saved = os.environ.get("NEUTRINO_STATE")
    os.environ["NEUTRINO_STATE"] = str(state)
    try:
        return store.load_host(host)
    finally:
        if saved is None:
            del os.environ["NEUTRINO_STATE"]
        else:
            os.environ["NEUTRINO_STATE"] = saved


def test_agent_once_keeps_its_host_and_reports_its_ports(served: Served, tmp_path: Path) -> None:
    compute = [p for p in served.snapshot().ports if p.binding_host == "compute"]
    others = {p.id: p.status for p in served.snapshot().ports if p.binding_host != "compute"}
    with served.http(served.admin) as c:
        for p in compute:
            assert c.put(f"/neutrino/v1/ports/{p.id}/status", json={"status": "DOWN"}).status_code == 200
    state = tmp_path / "agent-state"
    run = subprocess.run([NEUTRINO, "agent", "--host", "compute", "--server", served.base, "--once"],
                         env=_agent_env(served, state), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "compute: converged generation" in run.stderr
    snap = served.snapshot()
    assert _kept(state, "compute") == plan_host(snap, "compute")
    assert not (state / "hosts" / "network").exists()  # its own host only
    assert {p.status for p in snap.ports if p.binding_host == "compute"} == {"ACTIVE"}
    assert {p.id: p.status for p in snap.ports if p.binding_host != "compute"} == others


def test_agent_refuses_a_host_the_cloud_does_not_have(served: Served, tmp_path: Path) -> None:
    run = subprocess.run([NEUTRINO, "agent", "--host", "nowhere", "--server", served.base, "--once"],
                         env=_agent_env(served, tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1].startswith("neutrino: host 'nowhere' is not in the cloud's deployment")


def test_agent_once_fails_when_the_server_is_away(served: Served, tmp_path: Path) -> None:
    away = f"http://127.0.0.1:{free_port()}"
    no_clouds = {**_agent_env(served, tmp_path), "OS_CLIENT_CONFIG_FILE": str(tmp_path / "c.yaml")}
    run = subprocess.run([NEUTRINO, "agent", "--host", "compute", "--server", away, "--once",
                          "--os-cloud", "x"], env=no_clouds, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "no cloud 'x'" in run.stderr  # credentials first
    env = {**_agent_env(served, tmp_path), "OS_AUTH_TYPE": "none"}
    run = subprocess.run([NEUTRINO, "agent", "--host", "compute", "--server", away, "--once"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "pass failed" in run.stderr


def test_agent_follows_changes_and_ends_on_sigterm(served: Served, tmp_path: Path) -> None:
    state = tmp_path / "agent-state"
    log = tmp_path / "agent.log"
    proc = subprocess.Popen([NEUTRINO, "agent", "--host", "compute", "--server", served.base, "--poll", "20"],
                            env=_agent_env(served, state), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server_id = None
    try:
        def alive() -> None:
            assert proc.poll() is None, log.read_text()

        def kept_has(device: str) -> bool:
            alive()
            try:
                host = _kept(state, "compute")
            except Exception:  # noqa: BLE001 - not kept yet
                return False
            return any(lk.name == device for ns in host.namespaces for lk in ns.links or ())

        wait_until(lambda: (alive(), (state / "hosts" / "compute").is_dir())[1], 30, "the agent's first pass")
        private = next(n for n in served.snapshot().networks if n.name == "private")
        with served.http(served.admin) as c:
            r = c.post("/compute/v2.1/servers", json={"server": {
                "name": "vm-agent", "imageRef": IMAGES[0].id, "flavorRef": "1",
                "networks": [{"uuid": private.id}], "availability_zone": "nova:compute"}})
            assert r.status_code == 202, r.text
            server_id = r.json()["server"]["id"]
        port = next(p for p in served.snapshot().ports if p.device_id == server_id)
        tap = naming.tap_device(port.id)
        wait_until(lambda: kept_has(tap), 30, f"the agent to keep compute with {tap}")
        wait_until(lambda: served.port(port.id)["status"] == "ACTIVE", 30,
                   "the agent to report the port ACTIVE")
        with served.http(served.admin) as c:
            assert c.delete(f"/compute/v2.1/servers/{server_id}").status_code == 204
        server_id = None
        wait_until(lambda: not kept_has(tap), 30, f"the agent to keep compute without {tap}")
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()
        assert time.monotonic() - stopped < 5  # the long-poll was cut short
        text = log.read_text()
        assert "compute: stopped" in text and "Traceback" not in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server_id is not None:
            with served.http(served.admin) as c:
                c.delete(f"/compute/v2.1/servers/{server_id}")
