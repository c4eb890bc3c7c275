"""The simulator's booted world, kept in the state folder between commands.

``trace`` and ``ping`` run against the world as the agents left it (leases, ARP and FDB state)
instead of booting the whole cloud again. The agents refresh it in place after each change and
publish it (:func:`publish`); the file format is :mod:`neutrino.sim.keep`'s.

The world file is tagged with the state folder's *stamp*, which changes whenever the hosts change:
a world booted from hosts that have since changed is never used (a trace that raced a change saves
a world nobody will load). A world is saved only as booted or refreshed, never after a probe (a
probe leaves ARP and conntrack state behind).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

    from neutrino.services.snapshot import CloudSnapshot
    from neutrino.sim.world import World

# logging, tempfile and uuid are imported where used: a trace that finds its world kept needs none of them


def _log() -> logging.Logger:
    import logging

    return logging.getLogger(__name__)


def _world_path(state: Path) -> Path:
    return state / "world.pickle"


def _stamp_path(state: Path) -> Path:
    return state / "world.stamp"


def _cloud_path(state: Path) -> Path:
    return state / "world.cloud.pickle"


def _keep_cloud(state: Path, cloud: CloudSnapshot, tag: str) -> None:
    """Keep the snapshot the world was built from beside it (same tag), so a command that names the
    objects of a trace reads it without the database and its ORM.

    A snapshot pickles without what the planners cached in it (``CloudSnapshot.__getstate__``: their
    look-ups are keyed and valued by the planners' own types), so that reading it back imports the
    snapshot's classes and not the planners'."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".world.cloud.", dir=state)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump((tag, cloud), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, _cloud_path(state))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def kept_cloud(state: Path) -> CloudSnapshot | None:
    """The snapshot the kept world stands for, when it still does (else None: read the database)."""
    try:
        with _cloud_path(state).open("rb") as f:
            tag, cloud = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
        return None
    return cloud if tag and tag == stamp(state) else None


def stamp(state: Path) -> str:
    try:
        return _stamp_path(state).read_text().strip()
    except FileNotFoundError:
        return ""


def _write_stamp(state: Path, value: str) -> None:
    import tempfile

    state.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".world.stamp.", dir=state)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(value)
        os.replace(tmp, _stamp_path(state))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def invalidate(state: Path) -> None:
    """The hosts changed and nobody refreshed the world: no kept world stands for them any more."""
    import uuid

    _write_stamp(state, uuid.uuid4().hex)
    _world_path(state).unlink(missing_ok=True)
    _cloud_path(state).unlink(missing_ok=True)


def publish(state: Path, world: World, cloud: CloudSnapshot | None = None) -> None:
    """Keep ``world`` as the one that stands for the hosts now kept (the agents, after a pass), and
    ``cloud``, the snapshot it was planned from."""
    import uuid

    from neutrino.sim.keep import save_world

    tag = uuid.uuid4().hex
    save_world(world, _world_path(state), tag=tag)
    if cloud is not None:
        _keep_cloud(state, cloud, tag)
    else:
        _cloud_path(state).unlink(missing_ok=True)
    _write_stamp(state, tag)


def load(state: Path) -> World | None:
    """The kept world if it stands for the hosts as they are now, else None."""
    from neutrino.sim.keep import load_world
    from neutrino.sim.world import StaleWorld

    path = _world_path(state)
    if not path.exists():
        return None
    try:
        return load_world(path, tag=stamp(state))
    except StaleWorld as exc:
        _log().info("kept world not used (%s); booting the cloud again", exc)
        return None


def booted_world(state: Path) -> World:
    """The world ``trace`` and ``ping`` run against: the kept one, or the cloud booted anew (and kept).
    A change the server's agents are still converging is waited for first."""
    from neutrino.convergence import pending, wait_converged

    if pending(state):  # asked first: with no server converging, what waits (the Linux runner) is not imported
        wait_converged(state)
    world = load(state)
    if world is not None:
        return world
    from neutrino.deploy import load_cloud
    from neutrino.sim.cloud import world_of
    from neutrino.sim.keep import save_world

    tag = stamp(state)
    cloud, hosts = load_cloud(state)
    world = world_of(cloud, hosts)
    world.boot()
    if tag == stamp(state):  # the hosts did not change while it booted
        try:
            save_world(world, _world_path(state), tag=tag)
            _keep_cloud(state, cloud, tag)
        except OSError as exc:
            _log().warning("could not keep the booted world: %s", exc)
    return world


def imported_hosts(state: Path) -> list[str]:
    """The names of the state folder's imported hosts (``neutrino import``)."""
    hosts = state / "hosts"
    if not hosts.is_dir():
        return []
    return sorted(p.name for p in hosts.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and ((p / "imported.json").is_file() or (p / "source").is_file()) and (p / "captures").is_dir())


def uses_imported(state: Path, chosen: bool = False) -> bool:
    """Whether ``trace``, ``ping``, ``matrix`` and ``diagnose`` run on the imported hosts: when chosen
    (``--imported``), or when the state folder holds imported hosts and no cloud."""
    return chosen or (not (state / "cloud.json").is_file() and bool(imported_hosts(state)))  # deploy.holds_cloud


def imported_world(state: Path, assume: Iterable[str] = ()) -> World:
    """The world of the state folder's imported hosts, read from their captures alone
    (:func:`neutrino.sim.imported.world_from_captures`), booted (each instance's DHCP exchange)."""
    from neutrino import store
    from neutrino.errors import InvalidInput, NotFound
    from neutrino.sim.imported import world_from_captures

    names = imported_hosts(state)
    if not names:
        raise NotFound("no imported hosts here: run 'neutrino import DIR' first")
    if state.resolve() != store.state_dir().resolve():
        raise InvalidInput(f"{state}: the imported hosts are read from the state folder in use ({store.state_dir()})")
    hosts = tuple(store.load_host(n) for n in names)
    world = world_from_captures(hosts, assume=tuple(assume))
    world.boot()
    return world
