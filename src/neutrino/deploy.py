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
from neutrino.errors import Conflict, ConvergenceTimeout, NotFound
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
    from neutrino.scenarios.model import default_scenario

    doc = cloud_record(state)
    return Cloud(Database(doc["db"]), load_scenario(doc["scenario"]) if doc.get("scenario") else default_scenario())


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


def failed_builds(state: Path | None = None) -> dict[str, str]:
    """The servers whose build failed (ERROR: no host took them, Nova gave their ports back), by name,
    with their fault's message: what a trace from or to one meets, and what ``up`` says of them."""
    from sqlalchemy import select

    from neutrino.db import models
    from neutrino.db.session import Database

    if not holds_cloud(state):
        return {}
    db = Database(cloud_record(state)["db"])
    try:
        with db.read() as s:
            rows = s.execute(select(models.Server.name, models.Server.fault)
                             .where(models.Server.status == "ERROR").order_by(models.Server.created_seq)).all()
    finally:
        db.dispose()
    return {name: (fault or {}).get("message", "") for name, fault in rows}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def holds_cloud(state: Path | None = None) -> bool:
    return ((state or store.state_dir()) / "cloud.json").is_file()


def cloud_record(state: Path | None = None) -> dict[str, str]:
    """The state folder's cloud: its scenario file and database URL."""
    record = (state or store.state_dir()) / "cloud.json"
    if not record.is_file():
        raise NotFound("no cloud is up here: run 'neutrino up SCENARIO' first")
    doc: dict[str, str] = json.loads(record.read_text())
    return doc


def tear_down_cloud(state: Path | None = None) -> None:
    """Remove the state folder's cloud: the Linux backend's hosts (if built), the planned hosts, the
    kept world and the database. Imported hosts stay."""
    from neutrino import worldkeep
    from neutrino.linux import session

    root = state or store.state_dir()
    planned: list[str] = []
    if holds_cloud(root):
        try:
            planned = [h.name for h in open_cloud(root).snapshot().deployment.hosts]
        except Exception:  # noqa: BLE001 - a broken database is removed all the same
            planned = []
    if (root / "linux").is_dir():
        session.tear_down(root)
    for name in planned:
        if name in store.list_hosts():
            store.remove_host(name)
    worldkeep.invalidate(root)
    (root / "cloud.json").unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root / 'cloud.db'}{suffix}").unlink(missing_ok=True)


def bring_up(scenario_path: str | Path, *, state: Path | None = None, keep: bool = True,
             replace: bool = False, db: str | None = None) -> UpResult:
    """Create ``scenario_path``'s cloud from nothing in the state folder and plan it. A folder that
    holds a cloud already is refused before anything is touched (``replace``: tear it down first);
    a bring-up that fails leaves the folder as it was. ``db``: the cloud's database URL (an empty
    PostgreSQL database, say, that a server elsewhere shares) instead of ``cloud.db`` in the folder."""
    import uvicorn

    from neutrino.api.serve import make_app
    from neutrino.services.ids import seed_of_file

    scenario = load_scenario(scenario_path)  # bad YAML fails here, before anything is made
    root = state or store.state_dir()
    imported = [h.name for h in scenario.deployment.hosts if keep and store.host_kind(h.name) == "imported"]
    if imported and not replace:
        raise Conflict(f"already kept: imported host{'s' if len(imported) > 1 else ''} {', '.join(imported)} "
                       f"(the scenario plans hosts of the same name{'s' if len(imported) > 1 else ''}); "
                       "'neutrino up --replace' overwrites them")
    if keep and holds_cloud(root):
        if not replace:
            raise Conflict(f"{root} holds a cloud already ({cloud_record(root).get('scenario', '?')}): "
                           "'neutrino up --replace' tears it down first, or set NEUTRINO_STATE to another folder")
        tear_down_cloud(root)
    for name in imported:  # --replace: the planned host takes the imported one's place
        store.remove_host(name)
    root.mkdir(parents=True, exist_ok=True)
    db_path = root.resolve() / "cloud.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_url = db or f"sqlite:///{db_path}"
    try:
        app, _ = make_app(db_url, str(scenario_path), "keystone", seed_of_file(scenario_path))
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
        finally:
            server.should_exit = True
            thread.join(timeout=10)
        services = app.state.cloud
        if keep:
            (root / "cloud.json").write_text(json.dumps({"scenario": str(Path(scenario_path).resolve()),
                                                         "db": db_url}))
            from neutrino.agent import Agents

            agents = Agents(services, root)
            agents.converge()  # the agents' first pass: hosts kept, ports reported
            hosts = agents.hosts
            cloud = services.snapshot()
        else:
            cloud = services.snapshot()
            hosts = plan_cloud(cloud)
    except BaseException:
        (root / "cloud.json").unlink(missing_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        raise
    return UpResult(str(scenario_path), hosts, db_url, cloud)
