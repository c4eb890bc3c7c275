"""The one way the Linux backend runs a command: an argv list, optionally inside a namespace.

Never a shell string. Failures raise :class:`ApplyError` with the command and its stderr.

``ip`` runs inside a namespace as ``ip -n NS …`` (it enters the namespace itself: one exec, where
``ip netns exec NS ip …`` is two); the tools that need only the network namespace through ``nsenter
--net`` (see :func:`full_argv`); every other tool through ``ip netns exec NS``. Every command run
here and every process started by :func:`start` is counted in :data:`TALLY` (by tool: how many, how
long; tests/linux/test_parallel_bringup.py holds seed 000's bring-up under a bound). :func:`parallel`
runs independent steps in threads (a host's plumbing beside another's), waits for all of them, and
raises the first failure.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TypeVar, cast

from neutrino.errors import ApplyError, ConvergenceTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Tally:
    """How many commands ran, by tool, and how long they took (wall time, summed over threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def add(self, tool: str, seconds: float) -> None:
        with self._lock:
            self.counts[tool] = self.counts.get(tool, 0) + 1
            self.seconds[tool] = self.seconds.get(tool, 0.0) + seconds

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.seconds.clear()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


TALLY = Tally()


def tool_of(argv: Sequence[str]) -> str:
    """What the tally files a command under: the tool, and the ``ip`` object (``ip -batch``, ``ip netns``)."""
    words = list(argv)
    if words[:3] == ["ip", "netns", "exec"]:
        words = words[4:]
    elif words[:2] == ["ip", "-n"]:
        words = ["ip", *words[3:]]
    elif words[:1] == ["nsenter"]:
        words = words[2:]
    if not words:
        return "?"
    if words[0] == "ip" and len(words) > 1:
        return f"ip {words[1]}"
    return words[0].rsplit("/", 1)[-1]


NETNS_DIR = "/var/run/netns"
# tools that need only the network namespace (netlink, ioctls on its sockets, /proc/sys/net, which
# shows the reader's namespace): entered with ``nsenter --net``, one exec without ``ip netns exec``'s
# private mount namespace and /sys remount
_NET_ONLY = frozenset({"ethtool", "sysctl", "iptables-save", "iptables-restore", "ping"})


def full_argv(argv: Sequence[str], netns: str | None) -> list[str]:
    """``argv`` as run inside ``netns``: ``ip -n NS …`` for ``ip`` itself (but its ``netns``
    commands), ``nsenter --net=…`` for the tools that need no more than the network namespace,
    ``ip netns exec NS …`` for everything else (``brctl`` reads /sys)."""
    if not netns:
        return list(argv)
    if argv and argv[0] == "ip" and (len(argv) < 2 or argv[1] != "netns"):
        return ["ip", "-n", netns, *argv[1:]]
    if argv and argv[0] in _NET_ONLY:
        return ["nsenter", f"--net={NETNS_DIR}/{netns}", *argv]
    return ["ip", "netns", "exec", netns, *argv]


def run(argv: Sequence[str], *, netns: str | None = None, check: bool = True, input: str | None = None,
        env: Mapping[str, str] | None = None, timeout: float = 60.0) -> Result:
    """Run ``argv`` (inside ``netns`` when given) and return its output."""
    full = full_argv(argv, netns)
    log.debug("run %s", " ".join(full))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(full, input=input, capture_output=True, text=True, env=dict(env) if env else None,
                              timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ApplyError(f"{full[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ApplyError(f"{' '.join(full)}: timed out after {timeout}s") from exc
    finally:
        TALLY.add(tool_of(full), time.monotonic() - t0)
    res = Result(tuple(full), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise ApplyError(f"{' '.join(full)}: exit {proc.returncode}: {proc.stderr.strip()[:500]}")
    return res


def start(argv: Sequence[str], netns: str, *, stdout: IO[bytes] | int = subprocess.DEVNULL,
          stderr: IO[bytes] | int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start a long-running process in ``netns`` (``ip netns exec`` execs it, so the PID is the
    process's own), in a session of its own; the caller records and reaps it."""
    full = ["ip", "netns", "exec", netns, *argv]
    log.debug("start %s", " ".join(full))
    TALLY.add(tool_of(full), 0.0)
    return subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True)


MAX_THREADS = 8  # a few commands at a time is where the gain is on a small machine


class _Steps:
    """The steps :func:`parallel` hands out, and who is running them."""

    def __init__(self, count: int) -> None:
        self.cond = threading.Condition()
        self.left = iter(range(count))
        self.stop = False
        self.active = 0  # threads that may still start a step

    def enter(self) -> bool:
        with self.cond:
            if self.stop:
                return False
            self.active += 1
            return True

    def take(self) -> int | None:
        with self.cond:
            return None if self.stop else next(self.left, None)

    def leave(self) -> None:
        with self.cond:
            self.active -= 1
            self.cond.notify_all()

    def halt(self) -> None:
        """No step starts from now on; returns once none runs."""
        with self.cond:
            self.stop = True
            self.cond.wait_for(lambda: self.active == 0)


def parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``fn`` over ``items`` in threads (up to :data:`MAX_THREADS` at once); waits for every one of
    them (nothing of theirs still runs when this returns or raises), then raises the first failure
    in ``items``' order, or returns the results in that order. Interrupted while it waits (Ctrl-C),
    it starts no more of them and waits for those running before it raises: whoever cleans up then
    (a bring-up tears down what it made) races none of them."""
    todo = list(items)
    if len(todo) <= 1:
        return [fn(x) for x in todo]
    results: list[R | None] = [None] * len(todo)
    failures: list[BaseException | None] = [None] * len(todo)
    steps = _Steps(len(todo))

    def worker() -> None:
        if not steps.enter():
            return
        try:
            while (i := steps.take()) is not None:
                try:
                    results[i] = fn(todo[i])
                except BaseException as exc:  # handed to the caller below
                    failures[i] = exc
        finally:
            steps.leave()

    threads = [threading.Thread(target=worker, name=f"neutrino-linux-{k}", daemon=True)
               for k in range(min(len(todo), MAX_THREADS))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    except BaseException as exc:
        while True:  # a thread half started sees the stop and runs nothing
            try:
                steps.halt()
                break
            except BaseException:  # interrupted again: still wait
                continue
        raise exc
    for failure in failures:
        if failure is not None:
            raise failure
    return cast("list[R]", results)


def _call(step: Callable[[], object]) -> object:
    return step()


def parallel_steps(steps: Iterable[Callable[[], object]]) -> None:
    """:func:`parallel` for steps of different kinds (each a callable without arguments)."""
    parallel(_call, steps)


def wait_for(predicate: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> None:
    """Poll ``predicate`` until it is true, or raise :class:`ConvergenceTimeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise ConvergenceTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
