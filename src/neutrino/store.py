"""Where neutrino keeps hosts between commands: ``$NEUTRINO_STATE`` (default ``./state``).

An imported host is kept as the captures it came from (``hosts/<name>/captures/``), verbatim, and
read back through the same importer, so what ``exec`` answers never depends on a second format.
Writes go to a temporary directory renamed into place: a failed import leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile

from neutrino.errors import InvalidInput, NotFound
from neutrino.host.state import HostState, Origin
from neutrino.ingest.captures import read_capture_dir
from neutrino.views.export import captures_of


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
        _swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return state


def save_host(state: HostState) -> None:
    """Keep a host that neutrino made (planned or read back): its captures, and why each item
    exists (``origins.json``), replacing an earlier host of that name."""
    name = _valid_name(state.name)
    hosts_dir().mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}.", dir=hosts_dir()))
    try:
        cap = tmp / "captures"
        cap.mkdir()
        for i, (command, text) in enumerate(captures_of(state)):
            (cap / f"{i:03d}.txt").write_text(f"$ {command}\n{text}")
        (tmp / "origins.json").write_text(json.dumps([dataclasses.asdict(o) for o in state.origins], indent=0))
        _swap_into_place(tmp, hosts_dir() / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: pathlib.Path, dest: pathlib.Path) -> None:
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old)
    else:
        tmp.rename(dest)


def load_host(name: str) -> HostState:
    path = hosts_dir() / _valid_name(name) / "captures"
    if not path.is_dir():
        known = ", ".join(list_hosts()) or "none"
        raise NotFound(f"no host {name!r} (known hosts: {known})")
    state = read_capture_dir(path, name)
    origins = path.parent / "origins.json"
    if origins.is_file():
        state = dataclasses.replace(state, origins=tuple(Origin(**o) for o in json.loads(origins.read_text())))
    return state


def list_hosts() -> list[str]:
    if not hosts_dir().is_dir():
        return []
    return sorted(p.name for p in hosts_dir().iterdir() if p.is_dir() and not p.name.startswith("."))


def remove_host(name: str) -> None:
    path = hosts_dir() / _valid_name(name)
    if not path.is_dir():
        raise NotFound(f"no host {name!r}")
    shutil.rmtree(path)
