"""Network namespaces that neutrino creates and owns (always with a prefix it chose)."""

from __future__ import annotations

import os

from neutrino.linux.runner import run

NETNS_DIR = "/var/run/netns"


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def add(name: str) -> None:
    """Create namespace ``name`` with its loopback up."""
    run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], netns=name)


def delete(name: str) -> None:
    if exists(name):
        run(["ip", "netns", "delete", name], check=False)


def pids(name: str) -> list[int]:
    """PIDs of processes living in namespace ``name``."""
    res = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]
