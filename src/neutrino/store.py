"""Where neutrino keeps hosts between commands: ``$NEUTRINO_STATE`` (default ``./state``).

An imported host is kept as the captures it came from (``hosts/<name>/captures/``), verbatim, and
read back through the same importer, so what ``exec`` answers never depends on a second format.
Writes go to a temporary directory renamed into place: a failed import leaves nothing behind.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

from neutrino.errors import InvalidInput, NotFound
from neutrino.host.state import HostState
from neutrino.ingest.captures import read_capture_dir


def state_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("NEUTRINO_STATE") or "state")


def hosts_dir() -> pathlib.Path:
    return state_dir() / "hosts"


def _valid_name(name: str) -> str:
    if not name or "/" in name or name.startswith(".") or len(name) > 64:
        raise InvalidInput(f"{name!r} is not a valid host name")
    return name


def import_host(directory: str | pathlib.Path, name: str) -> HostState:
    """Read ``directory`` as host ``name`` and keep it (replacing an earlier host of that name)."""
    _valid_name(name)
    state = read_capture_dir(directory, name)  # raises before anything is written
    dest = hosts_dir() / name
    hosts_dir().mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}.", dir=hosts_dir()))
    try:
        shutil.copytree(directory, tmp / "captures")
        (tmp / "source").write_text(str(pathlib.Path(directory).resolve()) + "\n")
        if dest.exists():
            old = dest.with_name(f".{name}.old")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return state


def load_host(name: str) -> HostState:
    path = hosts_dir() / _valid_name(name) / "captures"
    if not path.is_dir():
        known = ", ".join(list_hosts()) or "none"
        raise NotFound(f"no host {name!r} (known hosts: {known})")
    return read_capture_dir(path, name)


def list_hosts() -> list[str]:
    if not hosts_dir().is_dir():
        return []
    return sorted(p.name for p in hosts_dir().iterdir() if p.is_dir() and not p.name.startswith("."))


def remove_host(name: str) -> None:
    path = hosts_dir() / _valid_name(name)
    if not path.is_dir():
        raise NotFound(f"no host {name!r}")
    shutil.rmtree(path)
