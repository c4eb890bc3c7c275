"""Where a real deployment's captures are, and which host each belongs to.

``neutrino import PATH`` takes any of:

* one host's captures: a folder of capture files (what :mod:`neutrino.ingest.captures` reads);
* a sosreport (a folder holding ``sos_commands/``): the files of ``sos_commands/networking``
  (``namespaces/NS/`` included), ``sos_commands/openvswitch``, ``sos_commands/firewall_tables``
  and ``sos_commands/process`` whose command neutrino reads. sos names each file by its command,
  every run of characters other than letters, digits, ``-`` and ``.`` made ``_`` and ``/`` made
  ``.`` (``Plugin._mangle_command`` in sos); what sos's networking and openvswitch plugins run is
  ``ip -o addr``, ``ip -d address``, ``ip route show table all``, ``ip -4 rule list``,
  ``ip netns``, ``ip netns exec NS ip -d address show`` ..., ``ovs-vsctl -t 5 show``,
  ``ovs-ofctl dump-flows BR``, ``ovs-ofctl show BR`` (and the same with ``-O OpenFlow1x``, not
  read: the plain ones say the same). The host is named by the sosreport's ``hostname`` file,
  else by its folder;
* a deployment: a folder holding one sub-folder (or ``.tar.gz``) per host, each host named by its
  folder (or archive, without ``.tar.gz``);
* a ``.tar.gz`` (``.tgz``, ``.tar``, ``.tar.xz``, ``.tar.bz2``) of any of these, as ``neutrino
  collect`` packs one (``HOST/`` inside ``HOST.tar.gz``).

Each host is staged as a flat folder of capture files, which is what the store keeps.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field

from neutrino.errors import InvalidInput
from neutrino.ingest.commands import View, parse_command

_ARCHIVE = re.compile(r"\.(tar\.gz|tgz|tar|tar\.xz|txz|tar\.bz2|tbz2)$")
_SOS_DIRS = ("networking", "openvswitch", "firewall_tables", "process")
_SOS_VIEWS = {View.VSCTL_SHOW, View.OFCTL_DUMP_FLOWS, View.OFCTL_SHOW, View.IPTABLES_SAVE, View.IP_NETNS,
              View.IP_ADDR, View.IP_LINK, View.IP_ROUTE, View.IP_RULE, View.IP_NEIGH, View.IFCONFIG, View.ROUTE_N,
              View.BRCTL_SHOW, View.PS, View.SYSCTL}
_SOS_PS = {"aux", "auxww", "auxwww", "-ef", "-fe", "-efww", "ax", "axww", "axwww"}


@dataclass
class StagedHost:
    """One host found under the imported path: its name, the flat folder of its captures, and
    where it came from."""

    name: str
    captures: pathlib.Path
    origin: str
    kind: str = "captures"  # "captures" or "sosreport"
    renames: dict[str, str] = field(default_factory=dict)  # a staged file's path -> the file it came from


@dataclass
class Staging:
    hosts: list[StagedHost] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _temps: list[pathlib.Path] = field(default_factory=list)

    def temp(self) -> pathlib.Path:
        path = pathlib.Path(tempfile.mkdtemp(prefix="neutrino-import-"))
        self._temps.append(path)
        return path

    def cleanup(self) -> None:
        for path in self._temps:
            shutil.rmtree(path, ignore_errors=True)
        self._temps.clear()


def is_archive(path: pathlib.Path) -> bool:
    return path.is_file() and bool(_ARCHIVE.search(path.name))


def archive_stem(path: pathlib.Path) -> str:
    return _ARCHIVE.sub("", path.name)


def _visible(d: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in d.iterdir() if not p.name.startswith("."))


def is_sosreport(d: pathlib.Path) -> bool:
    return (d / "sos_commands").is_dir()


def is_host_dir(d: pathlib.Path) -> bool:
    """A sosreport, or a folder of capture files (with no sub-folder or archive beside them: a
    folder holding those is a deployment, its loose files notes about it)."""
    if is_sosreport(d):
        return True
    inside = _visible(d)
    return any(p.is_file() for p in inside) and not any(p.is_dir() or is_archive(p) for p in inside)


def _extract(archive: pathlib.Path, staging: Staging) -> pathlib.Path:
    dest = staging.temp()
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")  # no absolute paths, no '..', no devices, no links out
    except tarfile.FilterError as exc:
        raise InvalidInput(f"{archive}: refused: {exc} (an archive of captures holds plain files and folders "
                           "inside it)") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"{archive}: not a readable tar archive ({first.rstrip(':')})") from None
    return dest


def _sos_command(name: str) -> str:
    """The command a sosreport file holds, from its name (spaces as ``_``, ``/`` as ``.``);
    ``ovs-vsctl``'s timeout option is dropped."""
    text = name.replace("_", " ")
    text = re.sub(r"^(ovs-vsctl|ovs-ofctl|ovs-appctl) (?:-t \d+|--timeout=\d+) ", r"\1 ", text)
    return text


def _stage_sosreport(root: pathlib.Path, staging: Staging,
                     renames: dict[str, str]) -> tuple[pathlib.Path, str]:
    """The sosreport's captures neutrino reads, as ``$ COMMAND`` files in a flat folder, and the
    host's name (its ``hostname`` file, else the folder's name)."""
    out = staging.temp()
    read = skipped = 0
    for sub in _SOS_DIRS:
        base = root / "sos_commands" / sub
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")):
            text = _sos_command(path.name)
            try:
                cmd = parse_command(text)
            except InvalidInput:
                skipped += 1
                continue
            # sos also runs each ovs-ofctl command with -O OpenFlow1x: the plain one is kept
            if cmd.view not in _SOS_VIEWS or "-s" in cmd.options or "OF13" in cmd.options or cmd.greps or \
                    (cmd.view is View.PS and not cmd.options <= _SOS_PS) or \
                    (cmd.view is View.IP_NEIGH and cmd.target) or path.stat().st_size == 0:
                skipped += 1
                continue
            body = path.read_bytes()
            staged = out / f"{read:04d}_{path.name}"
            staged.write_bytes(f"$ {text}\n".encode() + body)
            renames[str(staged)] = str(path)
            read += 1
    if not read:
        raise InvalidInput(f"{root}: a sosreport, but none of its sos_commands files is one neutrino reads "
                           "(networking, openvswitch)")
    staging.notes.append(f"{root.name}: sosreport: {read} command outputs read, {skipped} others not read")
    name = root.name
    host_file = root / "hostname"
    if host_file.is_file():
        first = host_file.read_text(errors="replace").strip().splitlines()
        if first and first[0].strip():
            name = first[0].strip().split(".")[0]
    return out, name


def _host(d: pathlib.Path, name: str | None, staging: Staging, origin: str) -> StagedHost:
    if is_sosreport(d):
        renames: dict[str, str] = {}
        captures, sos_name = _stage_sosreport(d, staging, renames)
        return StagedHost(name or sos_name, captures, origin, "sosreport", renames)
    return StagedHost(name or d.name, d, origin)


def _unwrap(d: pathlib.Path) -> pathlib.Path:
    """A folder holding nothing but one folder that holds no captures stands for that folder
    (how a tar of a deployment folder extracts)."""
    while not is_host_dir(d):
        inner = _visible(d)
        if len(inner) == 1 and inner[0].is_dir() and not is_host_dir(inner[0]):
            d = inner[0]
        else:
            break
    return d


def stage(path: str | pathlib.Path, host: str | None = None) -> Staging:
    """Every host under ``path`` (see the module's text), staged; with ``host``, one host's
    captures are named ``host``, and of a deployment only the host of that name is taken.
    The caller calls :meth:`Staging.cleanup`."""
    root = pathlib.Path(path)
    if root.exists():
        root = root.resolve()
    staging = Staging()
    try:
        _stage(root, host, staging)
    except BaseException:
        staging.cleanup()
        raise
    return staging


def _stage(root: pathlib.Path, host: str | None, staging: Staging) -> None:
    if not root.exists():
        raise InvalidInput(f"{root}: no such file or directory")
    hint: str | None = None
    if root.is_file():
        if not is_archive(root):
            raise InvalidInput(f"{root}: not a directory of captures nor a .tar.gz of one")
        hint = archive_stem(root)
        top = _extract(root, staging)
    elif root.is_dir():
        top = root
    else:
        raise InvalidInput(f"{root}: not a directory of captures")
    extracted = top

    def origin(p: pathlib.Path) -> str:
        return f"{root}:{p.relative_to(extracted)}" if extracted != root else str(p)

    top = _unwrap(top)
    if is_host_dir(top):
        staging.hosts.append(_host(top, host or (hint if top != root else None), staging, str(root)))
        return
    members = [p for p in _visible(top) if p.is_dir() or is_archive(p)]
    if not members:
        raise InvalidInput(f"{root}: no capture files in it, nor one folder per host")
    loose = [p.name for p in _visible(top) if p.is_file() and not is_archive(p)]
    if loose:
        staging.notes.append(f"{origin(top)}: not read: {', '.join(loose)} (a deployment holds one folder or "
                             ".tar.gz per host)")
    for m in members:
        if m.is_dir():
            inner = _unwrap(m)
            if not is_host_dir(inner):
                raise InvalidInput(f"{m}: neither a host's captures (files) nor a sosreport")
            staged = _host(inner, None if is_sosreport(inner) else m.name, staging, origin(m))
        else:
            inner = _unwrap(_extract(m, staging))
            if not is_host_dir(inner):
                one = [p for p in _visible(inner) if p.is_dir()]
                if len(one) != 1 or not is_host_dir(one[0]):
                    raise InvalidInput(f"{m}: holds no host's captures (one folder of capture files or a sosreport)")
                inner = one[0]
            staged = _host(inner, None if is_sosreport(inner) else archive_stem(m), staging, origin(m))
        staging.hosts.append(staged)
    if host is not None:
        chosen = [h for h in staging.hosts if h.name == host]
        if not chosen and root.is_file() and len(staging.hosts) == 1:  # one host's archive: named by --host
            staging.hosts[0].name = host
            chosen = staging.hosts
        if not chosen:
            known = ", ".join(h.name for h in staging.hosts)
            raise InvalidInput(f"{root}: a deployment with no host {host!r} (its hosts: {known})")
        staging.hosts = chosen
    names = [h.name for h in staging.hosts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"{root}: two hosts named {dupes[0]!r}")
