"""A private Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) inside one namespace.

Each simulated host gets its own: its own database, sockets and run directory, so nothing touches
a system-wide Open vSwitch, and every bridge's devices live inside the host's namespace. Processes
are ended by the PIDs recorded at start, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from neutrino.errors import ApplyError
from neutrino.linux.runner import Result, run, wait_for

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
OVS_DAEMONS = ("ovsdb-server", "ovs-vswitchd")  # in the order they start (and PIDs are recorded)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its reaper counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _ended(pid: int) -> Callable[[], bool]:
    return lambda: not _pid_alive(pid)


@dataclass
class OvsInstance:
    """Open vSwitch run from ``rundir`` inside namespace ``netns``."""

    netns: str
    rundir: str
    pids: list[int] = field(default_factory=list)

    @property
    def db_sock(self) -> str:
        return os.path.join(self.rundir, "db.sock")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "OVS_RUNDIR": self.rundir, "OVS_DBDIR": self.rundir, "OVS_LOGDIR": self.rundir,
                "OVS_SYSCONFDIR": self.rundir, "OVS_PKGDATADIR": "/usr/share/openvswitch"}

    @property
    def db_file(self) -> str:
        return os.path.join(self.rundir, "conf.db")

    def start(self, init: Sequence[str] = ()) -> None:
        self.start_db(init)
        self.start_switch()

    def start_db(self, init: Sequence[str] = ()) -> int:
        """ovsdb-server on ``conf.db`` in the run directory (created, and initialised, when missing);
        returns its PID. Run again after a crash it serves the same database file. ``init``: more
        ``ovs-vsctl`` commands for the initialising transaction (``--`` first), so that
        ``ovs-vswitchd`` finds them as it starts."""
        os.makedirs(self.rundir, exist_ok=True)
        if not os.path.exists(self.db_file):
            run(["ovsdb-tool", "create", self.db_file, SCHEMA])
        p = self.rundir
        self._clear_pid("ovsdb-server.pid")
        run(["ovsdb-server", self.db_file, f"--remote=punix:{self.db_sock}", f"--pidfile={p}/ovsdb-server.pid",
             f"--unixctl={p}/ovsdb-server.ctl", f"--log-file={p}/ovsdb-server.log", "--detach", "--no-chdir"],
            netns=self.netns, env=self.env)
        pid = self._record_pid("ovsdb-server.pid")
        self.vsctl("--no-wait", "init", *init)
        return pid

    def start_switch(self) -> int:
        """ovs-vswitchd on this instance's database; returns its PID. Run again after a crash it makes
        the bridges and ports the database holds (flows are the caller's to put back)."""
        p = self.rundir
        self._clear_pid("ovs-vswitchd.pid")
        run(["ovs-vswitchd", f"unix:{self.db_sock}", f"--pidfile={p}/ovs-vswitchd.pid",
             f"--unixctl={p}/ovs-vswitchd.ctl", f"--log-file={p}/ovs-vswitchd.log", "--detach", "--no-chdir",
             "-vconsole:off"], netns=self.netns, env=self.env)
        return self._record_pid("ovs-vswitchd.pid")

    def pid_of(self, daemon: str) -> int | None:
        """The PID ``daemon``'s pid file names when that process runs and is ``daemon`` (a stale pid
        file, a dead or a recycled PID give ``None``)."""
        path = os.path.join(self.rundir, f"{daemon}.pid")
        try:
            with open(path) as fh:
                text = fh.read().strip()
            if not text.isdigit():
                return None
            with open(f"/proc/{text}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            return None
        pid = int(text)
        return pid if comm == daemon[:15] and _pid_alive(pid) else None

    def _clear_pid(self, name: str) -> None:
        """A stale pid file (the daemon was killed) goes before a restart, so the new one is awaited."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.rundir, name))

    def _record_pid(self, name: str) -> int:
        path = os.path.join(self.rundir, name)
        wait_for(lambda: os.path.exists(path), timeout=10, what=path)
        with open(path) as fh:
            pid = int(fh.read().strip())
        self.pids.append(pid)
        return pid

    def stop(self) -> None:
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for pid in self.pids:
            try:
                wait_for(_ended(pid), timeout=10, what=f"pid {pid} to exit")
            except Exception:
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()

    def vsctl(self, *args: str, check: bool = True) -> Result:
        # the clients talk to the daemons over unix sockets (paths, not the network): no need to
        # enter the namespace (``ip netns exec`` would cost an exec and a mount namespace per call)
        return run(["ovs-vsctl", f"--db=unix:{self.db_sock}", "--timeout=10", *args], env=self.env, check=check)

    def ofctl(self, command: str, bridge: str, *args: str, options: Sequence[str] = (), check: bool = True,
              input: str | None = None) -> Result:
        """``ovs-ofctl COMMAND BRIDGE ARGS`` talking to this instance's bridge socket."""
        target = os.path.join(self.rundir, f"{bridge}.mgmt")
        if not os.path.exists(target):
            raise ApplyError(f"no management socket for bridge {bridge} in {self.rundir}")
        return run(["ovs-ofctl", *options, command, f"unix:{target}", *args], env=self.env, check=check, input=input)
