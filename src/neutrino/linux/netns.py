"""Network namespaces that neutrino creates and owns (always with a prefix it chose)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from neutrino.linux.runner import NETNS_DIR, run

__all__ = ["NETNS_DIR", "add", "delete", "delete_all", "exists", "pids", "pids_of", "run_dir_mounted"]


def run_dir_mounted() -> bool:
    """Whether the namespaces' run directory is a mount point yet (the first ``ip netns add`` on a
    machine makes it one), from ``/proc/self/mountinfo``."""
    where = os.path.realpath(NETNS_DIR)
    try:
        with open("/proc/self/mountinfo") as fh:
            return any(len(f) > 4 and f[4] == where for f in (line.split() for line in fh))
    except OSError:
        return False


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def add(name: str, lines: Sequence[str] = ()) -> None:
    """Create namespace ``name`` with its loopback up, and then ``lines`` (``ip -batch`` lines) run
    there, in the same ``ip`` as the loopback."""
    run(["ip", "netns", "add", name])
    run(["ip", "-batch", "-"], netns=name, input="".join(f"{line}\n" for line in ["link set lo up", *lines]))


def delete(name: str) -> None:
    if exists(name):
        run(["ip", "netns", "delete", name], check=False)


def delete_all(names: list[str]) -> None:
    """Delete those of the namespaces ``names`` that exist, in that order, with one ``ip -batch``
    (``-force``: one that went meanwhile does not stop the others)."""
    lines = [f"netns delete {name}\n" for name in names if exists(name)]
    if lines:
        run(["ip", "-force", "-batch", "-"], input="".join(lines), check=False)


def pids(name: str) -> list[int]:
    """PIDs of processes living in namespace ``name``."""
    res = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def pids_of(names: list[str]) -> dict[str, list[int]]:
    """PIDs of the processes living in each of the namespaces ``names`` (those that exist), found
    as ``ip netns pids`` finds them (each ``/proc/PID/ns/net`` against the namespace's file, in
    ``/proc``'s order) in one pass over ``/proc`` for all of them."""
    keys: dict[tuple[int, int], str] = {}
    for name in names:
        try:
            st = os.stat(os.path.join(NETNS_DIR, name))
        except OSError:
            continue
        keys[(st.st_dev, st.st_ino)] = name
    out: dict[str, list[int]] = {name: [] for name in keys.values()}
    if not keys:
        return out
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # gone since, or a kernel thread
        owner = keys.get((st.st_dev, st.st_ino))
        if owner is not None:
            out[owner].append(int(entry))
    return out
