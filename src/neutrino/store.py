"""Where neutrino keeps hosts between commands: ``$NEUTRINO_STATE`` (default ``./state``).

A host is kept as captures (``hosts/<name>/captures/``), read back through the same importer, so
what ``exec`` answers never depends on a second format. An imported host keeps the captures it came
from, verbatim; a host neutrino made is written out by :func:`neutrino.views.export.captures_of`,
in the forms of the tools' output that carry everything the host state knows, so that it loads
back equal. Beside the captures:

* ``origins.json``: why each planned item exists;
* ``unprinted.json``: what no tool prints: how each namespace's iptables prints (``iptables_dialect``,
  which the rules show only through a MAC match or a version header) and which captures were cut
  (``partial``);
* ``cache.pickle``: the host as last read, keyed by a hash of the files above and of the code that
  reads them. It is rewritten on save and import, and ignored (and rebuilt) when stale or unreadable:
  the captures stay the source of truth.

Writes go to a temporary directory renamed into place: a failed import or save leaves nothing behind,
and a save whose captures do not read back fails before anything is replaced.
"""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import operator
import os
import pathlib
import pickle
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from neutrino.errors import InvalidInput, NotFound
from neutrino.host.state import HostState, NamespaceState, Origin

# shutil and tempfile are imported where a host is written: a command that only reads needs neither;
# hashlib where the host cache is keyed (a trace that finds its world kept reads no host)

if TYPE_CHECKING:
    from neutrino.ingest.layout import StagedHost

CAPTURES = "captures"
ORIGINS = "origins.json"
UNPRINTED = "unprinted.json"
CACHE = "cache.pickle"
_CACHE_FORMAT = b"neutrino-host-cache-1: constructor arguments"


def state_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("NEUTRINO_STATE") or "state")


def hosts_dir() -> pathlib.Path:
    return state_dir() / "hosts"


def _valid_name(name: str) -> str:
    if not name or "/" in name or name.startswith(".") or len(name) > 64:
        raise InvalidInput(f"{name!r} is not a valid host name")
    return name


IMPORTED = "imported.json"


def host_kind(name: str) -> str | None:
    """``"imported"`` for a host read from a real deployment's captures, ``"planned"`` for one
    neutrino made, ``None`` when there is no such host."""
    host_dir = hosts_dir() / name
    if not (host_dir / CAPTURES).is_dir():
        return None
    return "imported" if (host_dir / IMPORTED).is_file() or (host_dir / "source").is_file() else "planned"


@dataclasses.dataclass(frozen=True)
class Imported:
    """What one ``neutrino import`` kept: each host (in the order found) and what was read leniently."""

    hosts: tuple[HostState, ...]
    notes: tuple[str, ...]
    deployment: str


def import_hosts(path: str | pathlib.Path, host: str | None = None, *, replace: bool = False) -> Imported:
    """Read every host under ``path`` (one host's captures, a sosreport, a folder of one sub-folder
    per host, or a tar archive of any of these: :mod:`neutrino.ingest.layout`) and keep them as
    imported hosts. A host of the same name already kept (planned or imported) is refused unless
    ``replace``; any refusal or unreadable capture keeps nothing."""
    import shutil
    import tempfile

    from neutrino.ingest.captures import collecting_notes, read_capture_dir
    from neutrino.ingest.layout import stage

    staging = stage(path, host)
    try:
        for h in staging.hosts:
            _valid_name(h.name)
        states: list[HostState] = []
        with collecting_notes() as notes:
            for h in staging.hosts:
                try:
                    states.append(read_capture_dir(h.captures, h.name))  # raises before anything is written
                except InvalidInput as exc:
                    if h.captures == pathlib.Path(h.origin):
                        raise
                    raise InvalidInput(_where(str(exc), staging.hosts)) from None
        notes = [_where(n, staging.hosts) for n in notes]
        taken = [(h.name, host_kind(h.name)) for h in staging.hosts if host_kind(h.name) is not None]
        if taken and not replace:
            listed = ", ".join(f"{n!r} ({kind})" for n, kind in taken)
            raise InvalidInput(f"already kept: host {listed}; use --replace to overwrite")
        deployment = pathlib.Path(path).resolve().name
        hosts_dir().mkdir(parents=True, exist_ok=True)
        temps: list[tuple[pathlib.Path, str]] = []
        try:
            for h, state in zip(staging.hosts, states, strict=True):
                tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{h.name}.", dir=hosts_dir()))
                temps.append((tmp, h.name))
                shutil.copytree(h.captures, tmp / CAPTURES)
                (tmp / "source").write_text(h.origin + "\n")
                (tmp / IMPORTED).write_text(json.dumps({"deployment": deployment, "source": h.origin,
                                                        "layout": h.kind}, indent=1) + "\n")
                _write_cache(tmp, state)
            for tmp, name in temps:
                _swap_into_place(tmp, hosts_dir() / name)
        except BaseException:
            for tmp, _ in temps:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Imported(tuple(states), tuple(staging.notes) + tuple(notes), deployment)
    finally:
        staging.cleanup()


def _where(text: str, hosts: Sequence[StagedHost]) -> str:
    """``text`` naming the files it names where they came from rather than where they were staged."""
    for h in hosts:
        for staged, original in h.renames.items():  # a staged file starts with a '$ COMMAND' line the original lacks
            at = re.search(re.escape(staged) + r":(\d+)", text)
            if at:
                text = text.replace(at.group(0), f"{original}:{int(at.group(1)) - 1}")
            text = text.replace(staged, original)
        if str(h.captures) != h.origin:
            text = text.replace(str(h.captures), h.origin)
    return text


def import_host(directory: str | pathlib.Path, name: str, *, replace: bool = True) -> HostState:
    """Read ``directory`` (one host's captures, or a deployment holding host ``name``) as host
    ``name`` and keep it; an earlier host of that name is replaced unless ``replace`` is false."""
    return import_hosts(directory, name, replace=replace).hosts[0]


def save_host(state: HostState) -> None:
    """Keep a host that neutrino made (planned or read back): its captures, why each item exists
    (``origins.json``) and what no tool prints (``unprinted.json``), replacing an earlier host of
    that name."""
    import shutil
    import tempfile

    from neutrino.views.export import captures_of

    name = _valid_name(state.name)
    hosts_dir().mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}.", dir=hosts_dir()))
    try:
        cap = tmp / CAPTURES
        cap.mkdir()
        for i, (command, text) in enumerate(captures_of(state)):
            (cap / f"{i:03d}.txt").write_text(f"$ {command}\n{text}")
        (tmp / ORIGINS).write_text(json.dumps([dataclasses.asdict(o) for o in state.origins], indent=0))
        (tmp / UNPRINTED).write_text(json.dumps(_unprinted(state), indent=1, sort_keys=True) + "\n")
        _write_cache(tmp, _read(tmp, name))  # what the captures give back, not what was handed in
        _swap_into_place(tmp, hosts_dir() / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _unprinted(state: HostState) -> dict[str, Any]:
    doc: dict[str, Any] = {"iptables_dialect": {ns.name: ns.iptables_dialect for ns in state.namespaces},
                           "partial": list(state.partial)}
    origins = _rule_origins(state)
    if origins is not None:
        doc["rule_origins"] = origins
    return doc


def _rule_origins(state: HostState) -> dict[str, Any] | None:
    """Why each iptables rule exists (``Rule.origin``: what a trace names as a rule's object), which
    ``iptables-save`` does not print: per namespace and ``table/chain``, one index per rule, in the
    chain's order, into a list of the distinct texts (the first is ``""``). None when no rule has one."""
    texts: dict[str, int] = {"": 0}
    namespaces: dict[str, dict[str, list[int]]] = {}
    for ns in state.namespaces:
        if ns.iptables is None:
            continue
        for table in ns.iptables.tables:
            for chain in table.chains:
                if any(r.origin for r in chain.rules):
                    namespaces.setdefault(ns.name, {})[f"{table.name}/{chain.name}"] = [
                        texts.setdefault(r.origin, len(texts)) for r in chain.rules]
    return {"texts": list(texts), "namespaces": namespaces} if namespaces else None


def _apply_rule_origins(ns: NamespaceState, texts: list[str], chains: dict[str, list[int]]) -> NamespaceState:
    """``ns`` with its rules' origins put back; a chain whose rules were not read back one for one
    (a capture edited by hand) keeps none."""
    if ns.iptables is None:
        return ns
    tables = []
    for table in ns.iptables.tables:
        new_chains = []
        for chain in table.chains:
            kept = chains.get(f"{table.name}/{chain.name}")
            if kept is not None and len(kept) == len(chain.rules):
                chain = dataclasses.replace(chain, rules=tuple(
                    dataclasses.replace(r, origin=texts[i]) if i else r for r, i in zip(chain.rules, kept, strict=True)))
            new_chains.append(chain)
        tables.append(dataclasses.replace(table, chains=tuple(new_chains)))
    return dataclasses.replace(ns, iptables=dataclasses.replace(ns.iptables, tables=tuple(tables)))


def _apply_unprinted(state: HostState, doc: dict[str, Any]) -> HostState:
    dialects = doc.get("iptables_dialect", {})
    origins = doc.get("rule_origins") or {"texts": [""], "namespaces": {}}
    namespaces = []
    for ns in state.namespaces:
        if ns.name in dialects:
            ns = dataclasses.replace(ns, iptables_dialect=dialects[ns.name])
        if ns.name in origins["namespaces"]:
            ns = _apply_rule_origins(ns, origins["texts"], origins["namespaces"][ns.name])
        namespaces.append(ns)
    partial = tuple(doc["partial"]) if "partial" in doc else state.partial
    return dataclasses.replace(state, namespaces=tuple(namespaces), partial=partial)


def _swap_into_place(tmp: pathlib.Path, dest: pathlib.Path) -> None:
    import shutil

    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old)
    else:
        tmp.rename(dest)


def _read(host_dir: pathlib.Path, name: str) -> HostState:
    """Host ``name`` from the files of ``host_dir``: the captures, then what is kept beside them."""
    from neutrino.ingest.captures import read_capture_dir

    state = read_capture_dir(host_dir / CAPTURES, name)
    origins = host_dir / ORIGINS
    if origins.is_file():
        kept = json.loads(origins.read_text())
        state = dataclasses.replace(state, origins=tuple(Origin(**o) for o in kept))
    unprinted = host_dir / UNPRINTED
    if unprinted.is_file():
        state = _apply_unprinted(state, json.loads(unprinted.read_text()))
    return state


def _code_fingerprint() -> bytes:
    """The size and time of every module that reads captures into a host state: a cache made by
    other code is stale."""
    import hashlib

    import neutrino.host
    import neutrino.ingest

    h = hashlib.sha256(_CACHE_FORMAT)
    for pkg in (neutrino.host, neutrino.ingest):
        for path in sorted(pathlib.Path(next(iter(pkg.__path__))).glob("*.py")):
            st = path.stat()
            h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    st = pathlib.Path(__file__).stat()
    h.update(f"store:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.digest()


_FINGERPRINT: bytes | None = None


def _key(host_dir: pathlib.Path, name: str) -> str:
    """A hash of everything :func:`_read` reads (the files it reads, in the order it reads them),
    of the host's name and of the code."""
    import hashlib

    global _FINGERPRINT
    if _FINGERPRINT is None:
        _FINGERPRINT = _code_fingerprint()
    h = hashlib.sha256(_FINGERPRINT)
    h.update(name.encode() + b"\0")
    cap = host_dir / CAPTURES
    for path in sorted(p for p in cap.iterdir() if p.is_file() and not p.name.startswith(".")):
        data = path.read_bytes()
        h.update(f"{CAPTURES}/{path.name}\0{len(data)}\0".encode() + data)
    for side in (ORIGINS, UNPRINTED):
        path = host_dir / side
        if path.is_file():
            data = path.read_bytes()
            h.update(f"{side}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


class _Pickler(pickle.Pickler):
    """Pickles the model's dataclasses as their constructor's arguments, and addresses as numbers:
    that loads twice as fast as the dataclasses' own ``__setstate__`` (which looks their fields
    up for every object) and ``ipaddress``'s (which parses a string)."""

    #: per dataclass, its fields' values as a tuple (one C call), or None for other classes
    _getters: dict[type, Callable[[Any], tuple[Any, ...]] | None] = {}

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        try:
            get = self._getters[cls]
        except KeyError:
            get = self._getters[cls] = _fields_getter(cls)
        if get is not None:
            return cls, get(obj)
        if cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
            return cls, (int(obj),)
        if cls in (ipaddress.IPv4Interface, ipaddress.IPv6Interface):
            return cls, ((int(obj.ip), obj.network.prefixlen),)
        if cls in (ipaddress.IPv4Network, ipaddress.IPv6Network):
            return cls, ((int(obj.network_address), obj.prefixlen),)
        return NotImplemented


def _fields_getter(cls: type) -> Callable[[Any], tuple[Any, ...]] | None:
    """For a dataclass whose fields are all its constructor's arguments: a function giving those
    arguments' values in order (an ``attrgetter``, which returns a bare value for one name)."""
    if not dataclasses.is_dataclass(cls) or not all(f.init for f in dataclasses.fields(cls)):
        return None
    names = tuple(f.name for f in dataclasses.fields(cls))
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        return lambda obj: (one(obj),)
    return operator.attrgetter(*names)


def _write_cache(host_dir: pathlib.Path, state: HostState) -> None:
    """Keep ``state`` as read from ``host_dir``'s files; a cache that cannot be written is no loss."""
    import tempfile

    try:
        buf = io.BytesIO()
        _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump((_key(host_dir, state.name), state))
        blob = buf.getvalue()
        fd, tmp = tempfile.mkstemp(prefix=f".{CACHE}.", dir=host_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, host_dir / CACHE)
    except OSError:
        pass


def _cached(host_dir: pathlib.Path, name: str) -> HostState | None:
    """The cached host when the cache is there, readable and made from the files as they are now."""
    path = host_dir / CACHE
    try:
        key, state = pickle.loads(path.read_bytes())
    except Exception:  # missing, truncated, or written by other code: read the captures instead
        return None
    if not isinstance(state, HostState) or state.name != name or key != _key(host_dir, name):
        return None
    return state


def load_host(name: str) -> HostState:
    host_dir = hosts_dir() / _valid_name(name)
    if not (host_dir / CAPTURES).is_dir():
        known = ", ".join(list_hosts()) or "none"
        raise NotFound(f"no host {name!r} (known hosts: {known})")
    state = _cached(host_dir, name)
    if state is None:
        state = _read(host_dir, name)
        _write_cache(host_dir, state)
    return state


def list_hosts() -> list[str]:
    if not hosts_dir().is_dir():
        return []
    return sorted(p.name for p in hosts_dir().iterdir() if p.is_dir() and not p.name.startswith("."))


def remove_host(name: str) -> None:
    path = hosts_dir() / _valid_name(name)
    if not path.is_dir():
        raise NotFound(f"no host {name!r}")
    import shutil

    shutil.rmtree(path)
