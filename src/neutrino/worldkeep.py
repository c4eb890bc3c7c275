"""The simulator's booted world, kept in the state folder between commands.

``trace`` and ``ping`` run against the world as the agents left it (leases, ARP and FDB state)
instead of booting the whole cloud again. The world file is tagged with the state folder's
*stamp*, which the agents change whenever the hosts change: a world booted from hosts that have
since changed is never used (a trace that raced a change saves a world nobody will load).
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = 1


def _world_path(state: Path) -> Path:
    return state / "world.pickle"


def _stamp_path(state: Path) -> Path:
    return state / "world.stamp"


def stamp(state: Path) -> str:
    try:
        return _stamp_path(state).read_text().strip()
    except FileNotFoundError:
        return ""


def invalidate(state: Path) -> None:
    """The hosts changed: no kept world stands for them any more."""
    state.mkdir(parents=True, exist_ok=True)
    _atomic_write(_stamp_path(state), uuid.uuid4().hex.encode())
    _world_path(state).unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(state: Path) -> Any | None:
    """The kept world if it stands for the hosts as they are now, else None."""
    try:
        doc = pickle.loads(_world_path(state).read_bytes())
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a stale or broken file is rebuilt, never trusted
        log.warning("kept world unreadable; booting the cloud again")
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("stamp") != stamp(state):
        return None
    return doc["world"]


def save(state: Path, world: Any, tag: str) -> None:
    """Keep ``world``, booted from the hosts as they were when the stamp was ``tag``."""
    if tag != stamp(state):
        return  # the hosts changed while it booted
    _atomic_write(_world_path(state), pickle.dumps({"format": FORMAT, "stamp": tag, "world": world},
                                                   protocol=pickle.HIGHEST_PROTOCOL))


def booted_world(state: Path) -> Any:
    """The world ``trace`` and ``ping`` run against: the kept one, or the cloud booted anew (and kept).
    A change the server's agents are still converging is waited for first."""
    from neutrino.convergence import wait_converged

    wait_converged(state)
    world = load(state)
    if world is not None:
        return world
    from neutrino.deploy import load_cloud
    from neutrino.sim.cloud import world_of

    tag = stamp(state)
    cloud, hosts = load_cloud(state)
    world = world_of(cloud, hosts)
    world.boot()
    try:
        save(state, world, tag)
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
        log.warning("could not keep the booted world: %s", exc)
    return world
