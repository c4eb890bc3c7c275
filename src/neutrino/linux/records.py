"""What the Linux backend made, written down *before* it is made, and the names it gives things.

Naming (a cloud run owns one short ``prefix``: ``nt`` and four characters of a hash of its state
directory's resolved path, e.g. ``nt4k2q``, see :func:`derive_prefix`)::

    host NAME                         -> namespace  <prefix>-<NAME>              (runs the host's private OVS)
    host NAME's planned namespace NS  -> namespace  <prefix>-<NAME>-<NS>         (nt1-network-qrouter-<uuid>)
    guest (instance) SERVER           -> namespace  <prefix>-vm-<SERVER>         (its eth0 is the tap's peer)
    underlay wire WIRE                -> namespace  <prefix>-net-<WIRE>          (mgmt: tunnel/management L2,
                                                                                  ext: external gateway and a
                                                                                  stand-in internet address)

Device names stay the plan's own (they fit 15 characters and live in the host's namespace, so two hosts
may both have ``br-int``), so the prefix only ever starts namespace names and run directories, never a
device name, and Linux's 15-character limit on interface names is not at stake. The record file
``$STATE/linux/<prefix>.json`` lists every namespace and OVS run directory before it is created and
every process the moment its PID is known (with its start time, so a recycled PID is never signalled);
:func:`teardown` removes exactly those, even after a crash.

Two state directories never share a prefix: a prefix is claimed machine-wide (:func:`claim_prefix`, a
file ``/run/neutrino/prefixes/<prefix>`` naming its state directory, made with ``O_EXCL``) before
anything carrying it is made, and released by :func:`teardown`; a state directory whose first
candidate is claimed by another one, or names namespaces it did not make, takes the next candidate.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from neutrino.errors import ConvergenceTimeout, InvalidInput
from neutrino.linux import netns as netns_lib
from neutrino.linux.runner import run, wait_for

IFNAMSIZ = 15
_PREFIX = re.compile(r"^nt[a-z0-9]{0,6}$")


def check_prefix(prefix: str) -> str:
    """A prefix is ``nt`` and up to six lowercase letters or digits (it starts every name made)."""
    if not _PREFIX.match(prefix):
        raise InvalidInput(f"{prefix!r} is not a valid prefix (nt followed by up to 6 of [a-z0-9])")
    return prefix


_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
CLAIMS = Path("/run/neutrino/prefixes")


def derive_prefix(state_dir: Path, attempt: int = 0) -> str:
    """``nt`` and four base-36 characters of a SHA-256 of ``state_dir``'s resolved path (and
    ``attempt``, when the first candidate is taken): short, stable for a folder, and well inside
    :func:`check_prefix`."""
    key = str(Path(state_dir).resolve()) + (f"#{attempt}" if attempt else "")
    n = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    chars = []
    for _ in range(4):
        n, r = divmod(n, 36)
        chars.append(_B36[r])
    return check_prefix("nt" + "".join(chars))


def _claim_file(prefix: str) -> Path:
    return CLAIMS / check_prefix(prefix)


def claim_owner(prefix: str) -> Path | None:
    """The state directory that holds ``prefix``, if any."""
    try:
        text = _claim_file(prefix).read_text().strip()
    except OSError:
        return None
    return Path(text) if text else None


def namespaces_named(prefix: str) -> list[str]:
    """The namespaces on this machine whose name carries ``prefix``."""
    try:
        names = os.listdir(netns_lib.NETNS_DIR)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(check_prefix(prefix) + "-"))


def claim_prefix(prefix: str, state_dir: Path) -> bool:
    """Hold ``prefix`` for ``state_dir`` (true), unless another state directory holds it (false). A
    claim whose state directory has no record of the prefix any more, and no namespace carrying the
    prefix left, is stale and taken over."""
    me = str(Path(state_dir).resolve())
    path = _claim_file(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = claim_owner(prefix)
            if owner is not None and str(owner) == me:
                return True
            if owner is not None and (record_path(prefix, owner).exists() or namespaces_named(prefix)):
                return False
            path.unlink(missing_ok=True)  # stale: its folder was removed without ``down``
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(me + "\n")
        return True
    return False


def release_prefix(prefix: str, state_dir: Path) -> None:
    """Give ``prefix`` up, if ``state_dir`` holds it."""
    owner = claim_owner(prefix)
    if owner is not None and str(owner) == str(Path(state_dir).resolve()):
        _claim_file(prefix).unlink(missing_ok=True)


def check_device(name: str) -> str:
    if not name or len(name) > IFNAMSIZ or "/" in name or " " in name:
        raise InvalidInput(f"{name!r} is not a valid device name (1-{IFNAMSIZ} characters)")
    return name


def host_ns(prefix: str, host: str) -> str:
    return f"{prefix}-{host}"


def planned_ns(prefix: str, host: str, ns: str) -> str:
    """The real namespace of host ``host``'s planned namespace ``ns`` (``""`` is the host's own)."""
    return host_ns(prefix, host) if not ns else f"{prefix}-{host}-{ns}"


def guest_ns(prefix: str, server: str) -> str:
    return f"{prefix}-vm-{server}"


def wire_ns(prefix: str, wire: str) -> str:
    return f"{prefix}-net-{wire}"


def record_path(prefix: str, state_dir: Path) -> Path:
    return Path(state_dir) / "linux" / f"{check_prefix(prefix)}.json"


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of ``/proc/PID/stat``); ``None``
    when there is no such process or it is a zombie."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # processes this Python process started, to reap


@dataclass
class ProcessRecord:
    pid: int
    start: int | None
    what: str
    netns: str


@dataclass
class Record:
    """The record file's content; every ``add_*`` writes the file before returning. Threads of one
    process (a bring-up builds hosts in parallel) may add at once: each change and its write are
    made under the record's lock."""

    prefix: str
    path: Path
    namespaces: list[str] = field(default_factory=list)
    rundirs: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    ns_map: dict[str, str] = field(default_factory=dict)  # "host/planned-ns" -> real namespace
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, prefix: str, state_dir: Path) -> Record:
        return cls._read(prefix, record_path(prefix, state_dir))

    @classmethod
    def _read(cls, prefix: str, path: Path) -> Record:
        rec = cls(prefix, path)
        if path.exists():
            doc = json.loads(path.read_text())
            rec.namespaces = list(doc.get("namespaces", []))
            rec.rundirs = list(doc.get("rundirs", []))
            rec.processes = [ProcessRecord(**p) for p in doc.get("processes", [])]
            rec.ns_map = dict(doc.get("ns_map", {}))
        return rec

    def save(self) -> None:
        """Write the record. Several processes may add to one record at once (``neutrino agent``, one
        per host, each recording what it makes): under an exclusive lock on the record's folder,
        what the file holds now is merged in first, so no process's entries are lost."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, _locked(self.path.parent):
            self._merge(Record._read(self.prefix, self.path))
            doc = {"prefix": self.prefix, "namespaces": self.namespaces, "rundirs": self.rundirs,
                   "processes": [asdict(p) for p in self.processes], "ns_map": self.ns_map}
            fd, tmp = tempfile.mkstemp(prefix=f".{self.prefix}.", dir=self.path.parent)
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)

    def _merge(self, disk: Record) -> None:
        """Take in what another process recorded since this one loaded the file (records only grow)."""
        self.namespaces = [*disk.namespaces, *(n for n in self.namespaces if n not in disk.namespaces)]
        self.rundirs = [*disk.rundirs, *(d for d in self.rundirs if d not in disk.rundirs)]
        self.processes = [*disk.processes, *(p for p in self.processes if p not in disk.processes)]
        self.ns_map = {**disk.ns_map, **self.ns_map}

    def add_namespace(self, name: str, *, planned: str | None = None) -> None:
        self.add_namespaces([(name, planned)])

    def add_namespaces(self, names: Iterable[tuple[str, str | None]]) -> None:
        """Several namespaces (each with its planned name, or ``None``) written down at once, in order."""
        todo = list(names)
        if not todo:
            return
        for name, _ in todo:
            if not name.startswith(self.prefix + "-"):
                raise InvalidInput(f"namespace {name!r} lacks the prefix {self.prefix!r}")
        with self._lock:
            for name, planned in todo:
                if name not in self.namespaces:
                    self.namespaces.append(name)
                if planned is not None:
                    self.ns_map[planned] = name
            self.save()

    def add_rundir(self, path: str) -> None:
        with self._lock:
            if path not in self.rundirs:
                self.rundirs.append(path)
                self.save()

    def add_process(self, pid: int, what: str, netns: str) -> None:
        with self._lock:
            self.processes.append(ProcessRecord(pid, proc_start_time(pid), what, netns))
            self.save()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` (the records' folder) for as long as the block runs."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _alive(p: ProcessRecord) -> bool:
    start = proc_start_time(p.pid)
    return start is not None and (p.start is None or start == p.start)


def _end_all(procs: list[ProcessRecord]) -> None:
    """SIGTERM to each of ``procs`` still alive (in that order), then wait for them all together;
    SIGKILL to any still there after five seconds."""
    alive = [p for p in procs if _alive(p)]
    for p in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)

    def ended() -> bool:
        return not any(_alive(p) for p in alive)

    what = ", ".join(f"pid {p.pid} ({p.what})" for p in alive)
    try:
        wait_for(ended, timeout=5, what=f"{what} to exit")
    except ConvergenceTimeout:
        for p in alive:
            if _alive(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
        wait_for(ended, timeout=5, what=f"{what} to die")


_PIDFILE_PROGRAMS = ("ovsdb-server", "ovs-vswitchd", "dnsmasq")


def _from_pid_files(rec: Record) -> list[ProcessRecord]:
    """Processes named by pid files in the recorded run directories (started, then a crash before
    their PID was recorded), when the PID is that program and lives in one of the recorded namespaces."""
    out: list[ProcessRecord] = []
    known = {p.pid for p in rec.processes}
    for d in rec.rundirs:
        for f in sorted(Path(d).glob("*pid*")) if Path(d).is_dir() else ():
            text = f.read_text().strip() if f.is_file() else ""
            if not text.isdigit() or int(text) in known:
                continue
            pid = int(text)
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm not in _PIDFILE_PROGRAMS:
                continue
            where = run(["ip", "netns", "identify", str(pid)], check=False).stdout.split()
            if where and where[0] in rec.namespaces:
                out.append(ProcessRecord(pid, proc_start_time(pid), comm, where[0]))
    return out


def _gone(name: str) -> bool:
    return not netns_lib.exists(name)


def teardown(prefix: str, state_dir: Path) -> None:
    """End every recorded process (by PID, checking its start time), delete every recorded namespace
    (guests and wires last) and the record file. Idempotent; safe after a crash."""
    rec = Record.load(prefix, Path(state_dir))
    procs = [*reversed(rec.processes), *_from_pid_files(rec)]
    _end_all(procs)  # all signalled first, then awaited together
    for p in procs:
        child = CHILDREN.pop(p.pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
    # never delete what the record does not own by name
    netns_lib.delete_all([name for name in reversed(rec.namespaces) if name.startswith(prefix + "-")])
    for name in rec.namespaces:
        if netns_lib.exists(name):
            wait_for(functools.partial(_gone, name), timeout=10, what=f"{name} to go")
    for d in rec.rundirs:  # OVS databases and sockets, dnsmasq pid files: all ours, all gone
        shutil.rmtree(d, ignore_errors=True)
        parent = Path(d).parent  # /run/neutrino/<prefix> when the state path was too long for sockets
        if parent.name == prefix and parent.parent == CLAIMS.parent:
            with contextlib.suppress(OSError):
                parent.rmdir()
    shutil.rmtree(rec.path.parent / prefix, ignore_errors=True)
    if rec.path.exists():
        rec.path.unlink()
    release_prefix(prefix, Path(state_dir))
