"""Neutron's agents for one cloud: told of every API change, they re-plan the hosts and converge them.

The server records intent; after each committed change (:class:`neutrino.services.changes.ChangeFeed`)
the agents take a fresh snapshot, plan the hosts the change touches (pure; every host after a change
to anything but ports), and for the hosts whose plan changed:
keep them in the state folder (what ``neutrino exec`` answers), refresh the simulator's kept world
(what ``trace`` and ``ping`` run against), and, when the Linux backend is up, make the real hosts
match (``neutrino.linux.session.sync``). Then they report ports ACTIVE when wired and DOWN when not,
as the OVS agent does. Like Neutron's ``rpc_loop``, a pass that fails sets a resync flag and the
next pass reconciles everything again.

    agents = Agents(cloud, state_dir)      # in-process, the default
    agents.start()                          # a thread that waits on the change feed
    ...                                     # API changes
    agents.wait(timeout=10)                 # converged up to the latest change
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from neutrino import store
from neutrino.convergence import mark as _mark
from neutrino.errors import NeutrinoError, NotFound
from neutrino.host.state import HostState
from neutrino.plan import carry_from, hosts_affected_by_change, plan_cloud, plan_hosts, same_plans
from neutrino.services.cloud import Cloud
from neutrino.services.dvr import DISTRIBUTED
from neutrino.services.snapshot import BINDING_FAILED, CloudSnapshot

if TYPE_CHECKING:
    from neutrino.sim.world import World

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pass:
    """What one convergence pass did."""

    generation: int
    replanned: tuple[str, ...]  # hosts whose plan changed (kept again, world refreshed)
    ports: int  # ports whose status changed
    linux: tuple[str, ...]  # what the Linux backend changed, one line each
    seconds: float


def wired_status(cloud: CloudSnapshot, hosts: tuple[HostState, ...]) -> dict[str, str]:
    """The status each bound port should have: ACTIVE when its host is planned (its plumbing exists)
    and it is administratively up, DOWN otherwise, and DOWN when its binding failed (ML2 gives the OVS
    agent no details of it, ``get_device_details``: the agent treats it as dead and never reports it
    up). A distributed router's interface is bound per host (ML2's distributed bindings, one per host
    that serves the router): ACTIVE when any planned host has its ``qr-`` device and it is up, as
    ML2's ``generate_distributed_port_status`` makes it from those bindings. Other unbound ports are
    left as they are."""
    planned = {h.name for h in hosts}
    out = {p.id: "ACTIVE" if p.binding_host in planned and p.admin_state_up and p.vif_type != BINDING_FAILED
           else "DOWN" for p in cloud.ports if p.binding_host}
    distributed = [p for p in cloud.ports if p.vif_type == DISTRIBUTED and not p.binding_host]
    if distributed:
        wired = {(ns.name, link.name) for h in hosts for ns in h.namespaces if ns.name.startswith("qrouter-")
                 for link in ns.links or ()}
        for p in distributed:
            up = p.admin_state_up and (f"qrouter-{p.device_id}", f"qr-{p.id[:11]}") in wired
            out[p.id] = "ACTIVE" if up else "DOWN"
    return out


def report_ports(services: Cloud, cloud: CloudSnapshot, hosts: tuple[HostState, ...]) -> int:
    """Set the ports whose status differs from :func:`wired_status`; how many changed."""
    changed = 0
    by_id = {p.id: p for p in cloud.ports}
    for pid, want in wired_status(cloud, hosts).items():
        if by_id[pid].status != want:
            try:
                services.set_port_status(pid, want)
            except NotFound:  # deleted since the snapshot: as ML2's update_port_status, leave it
                continue
            changed += 1
    return changed


def with_statuses(cloud: CloudSnapshot, statuses: dict[str, str]) -> CloudSnapshot:
    """``cloud`` with its ports' statuses set as ``statuses`` says (what :func:`report_ports` wrote)."""
    ports = tuple(replace(p, status=statuses.get(p.id, p.status)) for p in cloud.ports)
    out = replace(cloud, ports=ports, _index={})
    # what the planners made of ``cloud`` is carried to it, but for the networks of the ports whose
    # status changed (it is the snapshot the next pass compares with and carries from: issue #17)
    carry_from(cloud, out, changed=[(p.id, p, q) for p, q in zip(cloud.ports, ports, strict=True)
                                    if p.status != q.status])
    same_plans(cloud, out)  # (no planner reads a status: the hosts' plans on ``cloud`` may be patched)
    return out


class Agents:
    """Every host's agents, in one process, over one cloud and its state folder."""

    def __init__(self, services: Cloud, state: Path | None = None) -> None:
        self.services = services
        self.state = state or store.state_dir()
        self._kept: dict[str, HostState] | None = None  # the hosts as last kept (None: read them)
        self._snap: CloudSnapshot | None = None  # the snapshot they were planned from
        self._world: World | None = None  # the simulator's booted world, refreshed after each change
        self._done = 0
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.resync = True
        self.last: Pass | None = None
        self.errors: list[str] = []

    @property
    def hosts(self) -> tuple[HostState, ...]:
        """The hosts as the last pass planned them."""
        return tuple((self._kept or {}).values())

    # -- the loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.services.changes.listen(self._changed)
        _mark(self.state, "changed", self.services.changes.generation)  # the first pass is pending
        self._wake.set()  # converge once at start: the hosts may predate this process
        self._thread = threading.Thread(target=self._loop, name="neutrino-agents", daemon=True)
        self._thread.start()

    def _changed(self, generation: int) -> None:
        _mark(self.state, "changed", generation)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            generation = self.services.changes.generation
            try:
                self.converge()
            except Exception as exc:  # noqa: BLE001 - an agent survives a failed pass and resyncs
                log.exception("convergence pass failed; the next pass resyncs")
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self.resync = True
                _mark(self.state, "converged", generation)  # nobody waits on a pass that failed
                with self._cond:
                    self._cond.notify_all()

    def wait(self, generation: int | None = None, timeout: float = 30.0) -> bool:
        """Block until a pass has converged the cloud up to ``generation`` (default: the latest
        change); False on timeout."""
        want = self.services.changes.generation if generation is None else generation
        with self._cond:
            return self._cond.wait_for(lambda: self._done >= want, timeout=timeout)

    # -- one pass ---------------------------------------------------------------------------------

    def converge(self) -> Pass:
        """Re-plan from the database as it is now and converge what changed."""
        started = time.perf_counter()
        generation = self.services.changes.generation
        snap = self.services.snapshot()
        if not self.resync and self._kept is not None and snap == self._snap:
            result = Pass(generation, (), 0, (), time.perf_counter() - started)  # nothing the planners read
            self._finish(result)
            return result
        hosts = self._replan(snap)
        kept = self._load_kept(hosts) if self._kept is None or self.resync else self._kept
        changed = tuple(h for h in hosts if kept.get(h.name) != h)
        gone = set(kept) - {h.name for h in hosts}
        for h in changed:
            store.save_host(h)
        for name in gone:
            store.remove_host(name)
        if changed or gone or self.resync:
            self._refresh_world(snap, hosts, changed, gone)
        linux = self._converge_linux(changed, gone, (self.services, snap, hosts))
        ports = report_ports(self.services, snap, hosts)
        self._kept = {h.name: h for h in hosts}
        # the snapshot planned from, with the statuses just reported: a change committed meanwhile
        # (a router interface added during this pass) differs from it, so the next pass plans it
        self._snap = with_statuses(snap, wired_status(snap, hosts)) if ports else snap
        self.resync = False
        result = Pass(generation, tuple(h.name for h in changed), ports, linux,
                      time.perf_counter() - started)
        self._finish(result)
        return result

    def _replan(self, snap: CloudSnapshot) -> tuple[HostState, ...]:
        """Every host as planned from ``snap``: when only ports changed since the last pass, the
        hosts those ports touch are planned again and the others keep their plans (as Neutron's
        agents act only on the ports an RPC names); after anything else, or on a resync, all."""
        kept, before = self._kept, self._snap
        names = {h.name for h in snap.deployment.hosts}
        if not self.resync and kept is not None and before is not None and set(kept) == names:
            touched = hosts_affected_by_change(before, snap)
            if touched is not None:
                fresh = plan_hosts(snap, touched, previous=before)  # (what the change leaves is carried)
                return tuple(fresh[h.name] if h.name in fresh else kept[h.name] for h in snap.deployment.hosts)
        return plan_cloud(snap)

    def _finish(self, result: Pass) -> None:
        self.last = result
        with self._cond:
            self._done = max(self._done, result.generation)
            self._cond.notify_all()
        if self._thread is not None:
            _mark(self.state, "converged", result.generation)

    def _refresh_world(self, snap: CloudSnapshot, hosts: tuple[HostState, ...], changed: tuple[HostState, ...],
                       gone: set[str]) -> None:
        """Bring the simulator's world to the hosts as now planned, in place (new guests boot,
        learned state elsewhere stays), and keep it for ``trace``; boot it anew when it cannot be
        refreshed. If even that fails, the kept world is dropped, so commands boot their own."""
        from neutrino import worldkeep
        from neutrino.sim.cloud import refresh_world, world_of
        from neutrino.sim.world import StaleWorld

        world = None if self.resync else self._world
        if world is None and not self.resync:
            world = worldkeep.load(self.state)
        try:
            if world is not None:
                try:
                    refresh_world(world, snap, changed, gone=gone)
                except StaleWorld:
                    world = None
            if world is None:
                world = world_of(snap, hosts)
                world.boot()
            worldkeep.publish(self.state, world, snap)
            self._world = world
        except BaseException:
            self._world = None
            worldkeep.invalidate(self.state)
            raise

    def _load_kept(self, hosts: tuple[HostState, ...]) -> dict[str, HostState]:
        out: dict[str, HostState] = {}
        for h in hosts:
            try:
                out[h.name] = store.load_host(h.name)
            except (NeutrinoError, OSError):
                continue  # not kept yet, or unreadable: it is saved again
        return out

    def _converge_linux(self, changed: tuple[HostState, ...], gone: set[str],
                        planned: tuple[Cloud, CloudSnapshot, tuple[HostState, ...]]) -> tuple[str, ...]:
        from neutrino.linux import session

        if not session.is_up(self.state) or not (changed or gone or self.resync):
            return ()
        return tuple(line for line in session.sync(self.state, planned) if line != "no change")
