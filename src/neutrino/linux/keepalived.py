"""keepalived for HA routers on the Linux backend (Debian's ``/usr/sbin/keepalived``).

Each planned ``<state_path>/ha_confs/<router>/keepalived.conf`` (written by the file reconciler at
its real path under the host's workdir) gets one keepalived in that router's ``qrouter-``
namespace, as Neutron's agent runs it (``keepalived -P -f CONF -p PIDFILE -r PIDFILE-vrrp``), kept in
the foreground (``-n``) as our child so that its PID is recorded at once and teardown stops it by
PID; its console log (``-l -D``) goes to ``keepalived.log`` beside the configuration and says which
state the instance entered.

Every instance starts BACKUP with ``nopreempt``: the first to become MASTER keeps the VIPs. So the
planned master (the binding whose ``ha_state`` is ``active``) is started first and waited for until
it is MASTER; then the others start and stay BACKUP. ``neutrino failover`` stops a keepalived by its
PID (it removes its VIPs as it exits) and waits for a backup to enter MASTER and take them; the
stopped instances are listed in the state folder (:mod:`neutrino.sim.vrrp`), and a ``sync`` does not
start them again until ``--restore``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from neutrino.errors import Conflict
from neutrino.host.state import HostState
from neutrino.linux.records import CHILDREN, Record, proc_start_time, record_path
from neutrino.linux.runner import start as start_process
from neutrino.linux.runner import wait_for
from neutrino.plan import naming
from neutrino.sim.vrrp import load_stopped

if TYPE_CHECKING:
    from neutrino.linux.realize import Realized

KEEPALIVED = "/usr/sbin/keepalived"
_CONF = re.compile(r"/ha_confs/([0-9a-f-]{36})/keepalived\.conf$")
_STATE_LINE = re.compile(r"\((VR_\d+)\) Entering (MASTER|BACKUP|FAULT) STATE")
MASTER_TIMEOUT = 40.0  # 3 adverts of 2 s and the skew, plus the time keepalived takes to start


@dataclass(frozen=True, slots=True)
class Planned:
    """One planned keepalived: its host, router, configuration (planned path) and whether the plan
    makes it the master."""

    host: str
    router_id: str
    conf: str
    master: bool

    @property
    def namespace(self) -> str:
        return naming.router_namespace(self.router_id)

    @property
    def what(self) -> str:
        return f"keepalived {self.host} {self.router_id}"


def planned(hosts: tuple[HostState, ...] | list[HostState]) -> list[Planned]:
    out = []
    for h in hosts:
        texts = {f.path: f.text for f in h.files}
        for path in texts:
            m = _CONF.search(path)
            if m is None:
                continue
            state = texts.get(path.rsplit("/", 1)[0] + "/state", "")
            out.append(Planned(h.name, m.group(1), path, state.strip() == "primary"))
    return out


def workdir(state: Path, prefix: str, host: str) -> Path:
    return state / "linux" / prefix / host


def real_conf(state: Path, prefix: str, p: Planned) -> Path:
    return workdir(state, prefix, p.host) / "files" / p.conf.lstrip("/")


def log_path(state: Path, prefix: str, p: Planned) -> Path:
    return real_conf(state, prefix, p).parent / "keepalived.log"


def argv(state: Path, prefix: str, p: Planned) -> list[str]:
    conf = real_conf(state, prefix, p)
    pid = conf.parent.parent / f"{p.router_id}.pid"
    return [KEEPALIVED, "-P", "-n", "-l", "-D", "-f", str(conf), "-p", str(pid), "-r", f"{pid}-vrrp"]


def _alive(pid: int, start: int | None) -> bool:
    return start is not None and proc_start_time(pid) == start


def running_pid(record: Record, p: Planned) -> int | None:
    for r in reversed(record.processes):
        if r.what == p.what and _alive(r.pid, r.start):
            return r.pid
    return None


def last_state(state: Path, prefix: str, p: Planned) -> str | None:
    """The state keepalived last said it entered (MASTER, BACKUP, FAULT), from its log."""
    try:
        text = log_path(state, prefix, p).read_text(errors="replace")
    except FileNotFoundError:
        return None
    found = _STATE_LINE.findall(text)
    return found[-1][1] if found else None


def _loaded_copy(state: Path, prefix: str, p: Planned) -> Path:
    return real_conf(state, prefix, p).with_name("keepalived.conf.loaded")


def _reload_if_changed(record: Record, state: Path, prefix: str, p: Planned) -> int | None:
    """SIGHUP a running keepalived whose configuration changed since it read it (a floating IP or
    an interface added), as the agent's ``reload_cfg`` does; the PID when it was signalled."""
    pid = running_pid(record, p)
    conf, loaded = real_conf(state, prefix, p), _loaded_copy(state, prefix, p)
    if pid is None or not conf.is_file():
        return None
    text = conf.read_text()
    if loaded.is_file() and loaded.read_text() == text:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGHUP)
    loaded.write_text(text)
    return pid


def _spawn(record: Record, state: Path, prefix: str, p: Planned, netns: str) -> int:
    conf = real_conf(state, prefix, p)
    if conf.is_file():
        _loaded_copy(state, prefix, p).write_text(conf.read_text())
    log = log_path(state, prefix, p)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = start_process(argv(state, prefix, p), netns, stdout=out, stderr=subprocess.STDOUT)
    CHILDREN[proc.pid] = proc
    record.add_process(proc.pid, p.what, netns)
    return proc.pid


def start(record: Record, state: Path, prefix: str, hosts: tuple[HostState, ...] | list[HostState],
          real_ns: dict[tuple[str, str], str], *, missing_only: bool = False) -> list[str]:
    """Start the planned keepalived instances that do not run (and were not stopped by a failover):
    each router's planned master first, waited for until it is MASTER, then its backups. Returns
    what was started, in words."""
    stopped = load_stopped(state)
    out: list[str] = []
    todo = []
    for p in planned(hosts):
        if p.host in stopped.get(p.router_id, ()):
            continue
        if running_pid(record, p) is None:
            todo.append(p)
        elif (pid := _reload_if_changed(record, state, prefix, p)) is not None:
            out.append(f"{p.host}: reloaded keepalived (pid {pid}, SIGHUP) in {p.namespace}: its configuration changed")
    for p in sorted(todo, key=lambda p: (p.router_id, not p.master)):
        netns = real_ns[(p.host, p.namespace)]
        pid = _spawn(record, state, prefix, p, netns)
        if p.master:
            wait_for(lambda p=p: last_state(state, prefix, p) == "MASTER", timeout=MASTER_TIMEOUT,  # type: ignore[misc]
                     what=f"keepalived of router {p.router_id} on {p.host} to become MASTER")
        verb = "restarted" if missing_only else "started"
        out.append(f"{p.host}: {verb} keepalived (pid {pid}) in {p.namespace}: {' '.join(argv(state, prefix, p))}")
    return out


def _record(state: Path) -> tuple[Record, str]:
    from neutrino.linux.session import prefix_of
    prefix = prefix_of(state)
    if not record_path(prefix, state).exists():
        raise Conflict("the Linux backend is not up here")
    return Record.load(prefix, state), prefix


def stop(state: Path, router_id: str, host: str) -> int:
    """Stop ``host``'s keepalived of ``router_id`` by its recorded PID (SIGTERM: it gives up its VIPs
    as it exits); returns the PID."""
    record, _prefix = _record(state)
    p = Planned(host, router_id, "", False)
    pid = running_pid(record, p)
    if pid is None:
        raise Conflict(f"keepalived of router {router_id} does not run on {host}")
    start_time = proc_start_time(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    child = CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=15)
    wait_for(lambda: not _alive(pid, start_time), timeout=15, what=f"keepalived (pid {pid}) to exit")
    return pid


def wait_master(state: Path, router_id: str, hosts: list[str], timeout: float = MASTER_TIMEOUT) -> str | None:
    """Wait until one of ``hosts``' keepalived of ``router_id`` says it is MASTER; which one did."""
    record, prefix = _record(state)
    cands = [Planned(h, router_id, naming.NEUTRON_STATE_PATH + f"/ha_confs/{router_id}/keepalived.conf", False)
             for h in hosts]
    deadline = time.monotonic() + timeout
    while True:
        for p in cands:
            if running_pid(record, p) is not None and last_state(state, prefix, p) == "MASTER":
                return p.host
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def start_for(realized: Realized, hosts: tuple[HostState, ...] | list[HostState], *,
              missing_only: bool = False) -> list[str]:
    """:func:`start` for a realized cloud (the namespaces as its places name them)."""
    real_ns = {(h, ns): real for h, place in realized.places.items() for ns, real in place.ns_real.items()}
    return start(realized.record, realized.state_dir, realized.prefix, hosts, real_ns, missing_only=missing_only)
