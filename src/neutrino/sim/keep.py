"""A booted :class:`~neutrino.sim.world.World` kept in a file between commands.

    save_world(world, path, tag=stamp)      # after boot() or refresh()
    world = load_world(path, tag=stamp)     # raises WorldFileError (a StaleWorld): build it anew

The file is a header line (magic, format version, a fingerprint of the simulator's code and the
Python version, the caller's ``tag``, the payload's length and checksum) and a pickle of the world.
Pickling builds every element of the world first (each namespace's IP stack and netfilter, each
bridge) and pickles each one on its own, a netfilter each rule on its own: loading unpickles the
world's wiring, guests and DHCP servers, and an element only when a packet reaches it, a rule
only when a packet is matched against it. A loaded world traces exactly as the saved one did
(leases, ARP and FDB state, learned flows, conntrack), and can be refreshed (it no longer holds
the hosts' states: a refresh that needs an unchanged host's state raises StaleWorld).

Any file that cannot stand for the world (missing, written by another format or another version
of this code, for another ``tag``, truncated or corrupt) raises :class:`WorldFileError`: the caller
catches it (or :class:`~neutrino.sim.world.StaleWorld`) and boots the world anew.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import zlib
from pathlib import Path

from neutrino.sim.world import StaleWorld, World

__all__ = ["FORMAT", "WorldFileError", "code_fingerprint", "load_world", "save_world"]

MAGIC = b"neutrino-world "
FORMAT = 1
"""The file layout's version; a file of another one is refused."""

_FINGERPRINT: str | None = None


class WorldFileError(StaleWorld):
    """The file does not hold a world this code can use: boot the world anew."""


def code_fingerprint() -> str:
    """What identifies the code a pickled world depends on (the simulator and the host model) and
    the Python version: a world saved by other code is never loaded.

    The code is known by each source file's name, size, modification and change times and inode
    (as :mod:`neutrino.store` knows the code of its host cache, and Python its ``.pyc`` files, by
    size and time): any write to a file changes its times, and a file copied or put back changes
    its change time (which no tool sets), so a world kept by code since edited, copied from another
    tree or checked out again is not loaded. The text itself is the fingerprint (no digest, so no
    two versions can share one). Reading and hashing the sources themselves (~0.8 MB) was ~4% of
    every ``neutrino trace``."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import neutrino.host
        import neutrino.sim

        parts = [f"python {sys.version_info[0]}.{sys.version_info[1]}"]
        for package in (neutrino.sim, neutrino.host):
            root = Path(package.__file__ or "").resolve().parent
            parts.append(str(root))
            for src in sorted(root.glob("*.py")):
                st = src.stat()
                parts.append(f"{src.name} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}")
        _FINGERPRINT = "; ".join(parts)
    return _FINGERPRINT


def save_world(world: World, path: str | os.PathLike[str], *, tag: str = "") -> int:
    """Write ``world`` to ``path`` (atomically: a reader sees the old file or the new one);
    ``tag`` is what :func:`load_world` will ask for (e.g. a stamp of the hosts it stands for).
    Returns the file's size."""
    payload = pickle.dumps(world, protocol=pickle.HIGHEST_PROTOCOL)
    header = {"format": FORMAT, "code": code_fingerprint(), "tag": tag, "size": len(payload),
              "crc32": zlib.crc32(payload)}
    data = MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload
    import tempfile  # here: loading a world (every trace) does not need it

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)


def load_world(path: str | os.PathLike[str], *, tag: str | None = None) -> World:
    """The world saved in ``path``. ``tag``: refuse a file saved with another tag. Raises
    :class:`WorldFileError` for a missing, stale (other format, code or tag) or corrupt file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WorldFileError(f"{path}: cannot read the kept world ({exc.strerror or exc})") from exc
    if not data.startswith(MAGIC):
        raise WorldFileError(f"{path}: not a kept world")
    line_end = data.find(b"\n")
    try:
        header = json.loads(data[len(MAGIC):line_end])
    except ValueError:
        raise WorldFileError(f"{path}: the kept world's header is unreadable") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else None
        raise WorldFileError(f"{path}: a kept world of format {got}, this code reads format {FORMAT}")
    if header.get("code") != code_fingerprint():
        raise WorldFileError(f"{path}: kept by another version of the simulator")
    if tag is not None and header.get("tag") != tag:
        raise WorldFileError(f"{path}: kept for {header.get('tag')!r}, not {tag!r} (the hosts changed since)")
    payload = memoryview(data)[line_end + 1:]
    if len(payload) != header.get("size") or zlib.crc32(payload) != header.get("crc32"):
        raise WorldFileError(f"{path}: the kept world is truncated or corrupt")
    try:
        world = pickle.loads(payload)
    except Exception as exc:  # noqa: BLE001 - whatever unpickling raises, the file is unusable
        raise WorldFileError(f"{path}: the kept world cannot be loaded ({type(exc).__name__}: {exc})") from exc
    if not isinstance(world, World):
        raise WorldFileError(f"{path}: holds a {type(world).__name__}, not a world")
    return world
