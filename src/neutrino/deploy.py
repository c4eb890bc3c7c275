"""Bring a scenario up: serve its API in-process, create its resources through that API, plan
every host, and keep the planned hosts so ``neutrino exec`` answers for them.

The server listens on a free loopback port only while the scenario is applied; the cloud's
database stays in the state directory (``cloud.db``) for later commands.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from neutrino import store
from neutrino.errors import ConvergenceTimeout, NotFound
from neutrino.host.state import HostState
from neutrino.linux.runner import wait_for
from neutrino.plan import plan_cloud
from neutrino.scenarios.model import load_scenario
from neutrino.scenarios.resources import apply_scenario_resources
from neutrino.services.cloud import Cloud
from neutrino.services.snapshot import CloudSnapshot


@dataclass(frozen=True)
class UpResult:
    scenario: str
    hosts: tuple[HostState, ...]
    db_url: str
    cloud: CloudSnapshot


def open_cloud(state: Path | None = None) -> Cloud:
    """The services over the database of the cloud the last ``neutrino up`` made here."""
    from neutrino.db.session import Database

    root = state or store.state_dir()
    record = root / "cloud.json"
    if not record.is_file():
        raise NotFound("no cloud is up here: run 'neutrino up SCENARIO' first")
    doc = json.loads(record.read_text())
    return Cloud(Database(doc["db"]), load_scenario(doc["scenario"]))


def load_cloud(state: Path | None = None) -> tuple[CloudSnapshot, tuple[HostState, ...]]:
    """The cloud the last ``neutrino up`` made, and its planned hosts (as kept)."""
    cloud = open_cloud(state).snapshot()
    hosts = tuple(store.load_host(h.name) for h in cloud.deployment.hosts)
    return cloud, hosts


def replan(state: Path | None = None) -> tuple[Cloud, CloudSnapshot, tuple[HostState, ...]]:
    """Plan the cloud again from its database as it is now (after API changes) and keep the hosts."""
    cloud = open_cloud(state)
    snap = cloud.snapshot()
    hosts = plan_cloud(snap)
    for h in hosts:
        store.save_host(h)
    return cloud, snap, hosts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bring_up(scenario_path: str | Path, *, state: Path | None = None, keep: bool = True) -> UpResult:
    """Create ``scenario_path``'s cloud from nothing and plan it."""
    import uvicorn

    from neutrino.api.serve import make_app

    scenario = load_scenario(scenario_path)  # bad YAML fails here, before anything is made
    root = state or store.state_dir()
    root.mkdir(parents=True, exist_ok=True)
    db_path = root / "cloud.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_url = f"sqlite:///{db_path}"
    app, _ = make_app(db_url, str(scenario_path), "keystone")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="neutrino-up-api", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout=30, what="the API server to start")
        if not server.started:
            raise ConvergenceTimeout("the API server did not start")
        apply_scenario_resources(scenario, f"http://127.0.0.1:{port}", auth="keystone")
        cloud = app.state.cloud.snapshot()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    hosts = plan_cloud(cloud)
    if keep:
        for h in hosts:
            store.save_host(h)
        (root / "cloud.json").write_text(json.dumps({"scenario": str(Path(scenario_path).resolve()),
                                                     "db": db_url}))
    return UpResult(str(scenario_path), hosts, db_url, cloud)
