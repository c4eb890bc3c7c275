"""A private Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) inside one namespace.

Each simulated host gets its own: its own database, sockets and run directory, so nothing touches
a system-wide Open vSwitch, and every bridge's devices live inside the host's namespace. Processes
are ended by the PIDs recorded at start, never by name.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from neutrino.errors import ApplyError
from neutrino.linux.runner import Result, run, wait_for

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


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

    def start(self) -> None:
        os.makedirs(self.rundir, exist_ok=True)
        db = os.path.join(self.rundir, "conf.db")
        if not os.path.exists(db):
            run(["ovsdb-tool", "create", db, SCHEMA])
        p = self.rundir
        run(["ovsdb-server", db, f"--remote=punix:{self.db_sock}", f"--pidfile={p}/ovsdb-server.pid",
             f"--unixctl={p}/ovsdb-server.ctl", f"--log-file={p}/ovsdb-server.log", "--detach", "--no-chdir"],
            netns=self.netns, env=self.env)
        self._record_pid("ovsdb-server.pid")
        self.vsctl("--no-wait", "init")
        run(["ovs-vswitchd", f"unix:{self.db_sock}", f"--pidfile={p}/ovs-vswitchd.pid",
             f"--unixctl={p}/ovs-vswitchd.ctl", f"--log-file={p}/ovs-vswitchd.log", "--detach", "--no-chdir",
             "-vconsole:off"], netns=self.netns, env=self.env)
        self._record_pid("ovs-vswitchd.pid")

    def _record_pid(self, name: str) -> None:
        path = os.path.join(self.rundir, name)
        wait_for(lambda: os.path.exists(path), timeout=10, what=path)
        with open(path) as fh:
            self.pids.append(int(fh.read().strip()))

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
        return run(["ovs-vsctl", f"--db=unix:{self.db_sock}", "--timeout=10", *args], netns=self.netns,
                   env=self.env, check=check)

    def ofctl(self, command: str, bridge: str, *args: str, options: Sequence[str] = (), check: bool = True,
              input: str | None = None) -> Result:
        """``ovs-ofctl COMMAND BRIDGE ARGS`` talking to this instance's bridge socket."""
        target = os.path.join(self.rundir, f"{bridge}.mgmt")
        if not os.path.exists(target):
            raise ApplyError(f"no management socket for bridge {bridge} in {self.rundir}")
        return run(["ovs-ofctl", *options, command, f"unix:{target}", *args], netns=self.netns, env=self.env,
                   check=check, input=input)
