"""Read one host's captured command outputs into a :class:`HostState`.

A capture directory holds one file per command. The command is the file's first line when it
starts with ``$ `` (``$ ip netns exec qrouter-X ip route``); otherwise it is the file name without
its extension, with ``_`` standing for spaces (``ovs-ofctl_dump-flows_br-tun.txt``). Captures may be
partial (``| grep`` output, ``.`` lines): those are read leniently and remembered as partial.
Anything malformed raises a :class:`ParseError` naming the file and line; since the state is
built in memory and only returned when every file was read, nothing half-imported is kept.
"""

from __future__ import annotations

import contextlib
import contextvars
import pathlib
import re
from collections.abc import Iterator
from dataclasses import replace

from neutrino.errors import InvalidInput, ParseError
from neutrino.host import iptables as ipt
from neutrino.host.bridge import parse_brctl_show, parse_brctl_show_partial
from neutrino.host.iproute import is_elision
from neutrino.host.iproute_link import (
    Link,
    parse_ip_addr,
    parse_ip_addr_oneline,
    parse_ip_addr_partial,
    parse_ip_link,
    parse_ip_link_oneline,
)
from neutrino.host.iproute_route import (
    Route,
    parse_ip_neigh,
    parse_ip_netns,
    parse_ip_route,
    parse_ip_route_partial,
    parse_ip_rule,
)
from neutrino.host.iptables_listing import parse_listing
from neutrino.host.nettools import parse_arp_n, parse_ifconfig, parse_ifconfig_partial, parse_route_n
from neutrino.host.ofctl_show import parse_ofctl_show
from neutrino.host.openflow import parse_dump_flows
from neutrino.host.ovsdb import (
    OvsdbShow,
    parse_list_optional,
    parse_list_set,
    parse_vsctl_list,
    parse_vsctl_show,
)
from neutrino.host.state import BridgeFlows, FileState, HostState, NamespaceState
from neutrino.host.sysctl import parse_sysctls
from neutrino.ingest.commands import Command, View, parse_command
from neutrino.ingest.legacy import (
    is_classic_ifconfig,
    normalise_elisions,
    parse_classic_ifconfig,
    parse_ps_dnsmasq,
    strip_annotations,
    unwrap_flows,
)

_NOTES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("neutrino_ingest_notes", default=None)


@contextlib.contextmanager
def collecting_notes() -> Iterator[list[str]]:
    """Within this block, what the importer read leniently (wrapped lines joined, written
    elisions, cut listings) is added to the list it yields, one line each."""
    notes: list[str] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)


def _note(source: str, text: str) -> None:
    notes = _NOTES.get()
    if notes is not None:
        notes.append(f"{source}: {text}")



def command_of(path: pathlib.Path, text: str) -> tuple[Command, str, int]:
    """The command a capture file holds, its output, and how many lines precede the output."""
    first, _, rest = text.partition("\n")
    if first.startswith("$ "):
        return parse_command(first[2:]), rest, 1
    return parse_command(path.stem.replace("_", " ")), text, 0


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_partial(cmd: Command, text: str) -> bool:
    """Whether a capture was cut: filtered by ``grep``, holding elision lines, or (for
    ``ovs-vsctl show``) starting somewhere inside the tree rather than at the switch's UUID."""
    lines = [line for line in text.splitlines() if line.strip()]
    if cmd.greps or any(is_elision(line) for line in lines):
        return True
    if cmd.view is View.IPTABLES_SAVE and _uncommitted(lines):
        return True
    return cmd.view is View.VSCTL_SHOW and bool(lines) and not _UUID.match(lines[0].strip())


def _uncommitted(lines: list[str]) -> bool:
    """Whether an ``iptables-save`` listing stops inside a table (before its ``COMMIT``)."""
    open_table = False
    for line in lines:
        if line.startswith("*"):
            open_table = True
        elif line.strip() == "COMMIT":
            open_table = False
    return open_table


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")


def read_capture_text(path: pathlib.Path) -> str:
    """A capture's text: UTF-8 without NUL or other control characters (tab and line ends aside);
    anything else is refused with the file and line, as no tool prints it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InvalidInput(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column})") from None
    for n, line_text in enumerate(text.split("\n"), 1):
        m = _CONTROL.search(line_text.rstrip("\r"))
        if m:
            raise InvalidInput(f"{path}:{n}: control character U+{ord(m.group()):04X} at column {m.start() + 1}: "
                               "not the output of a command")
    return text


def read_capture_dir(directory: str | pathlib.Path, host: str) -> HostState:
    """Every capture in ``directory`` (files in name order) read into one host state."""
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise InvalidInput(f"{root}: not a directory of captures")
    state = HostState(name=host)
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InvalidInput(f"{root}: no capture files in it")
    for path in files:
        text = read_capture_text(path)
        try:
            cmd, body, offset = command_of(path, text)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: {exc}") from exc
        try:
            state = apply_capture(state, cmd, body, source=str(path))
        except ParseError as exc:
            raise exc.located(str(path), offset) from None
    return state


def apply_capture(state: HostState, cmd: Command, text: str, *, source: str = "<string>") -> HostState:
    """``state`` with what ``text``, the output of ``cmd``, says about the host."""
    text, written = normalise_elisions(text)
    if written:
        _note(source, f"{written} elision line(s) such as '(...)' read as cuts")
    text, annotated = strip_annotations(text)
    if annotated:
        _note(source, f"{annotated} note(s) written after a line ('<-- ...') left out")
    if cmd.view is View.OFCTL_DUMP_FLOWS:
        text, wrapped = unwrap_flows(text, source=source)
        if wrapped:
            _note(source, f"{wrapped} wrapped line(s) joined back to their flow")
    partial = is_partial(cmd, text)
    if cmd.view is View.IPTABLES_SAVE and _uncommitted(text.splitlines()):
        _note(source, "the listing stops before COMMIT: read as cut")
    if partial:
        state = replace(state, partial=(*state.partial, cmd.text or cmd.view.value))
    v = cmd.view
    if v is View.VSCTL_SHOW:
        show = parse_vsctl_show(text, source, partial=True) if partial else parse_vsctl_show(text, source)
        return replace(state, ovs=replace(state.ovs, show=show))
    if v is View.VSCTL_LIST:
        return _apply_vsctl_list(state, cmd, text, source)
    if v is View.OFCTL_DUMP_FLOWS:
        dump = parse_dump_flows(text, source)
        old = state.ovs.flows_of(cmd.target) or BridgeFlows(cmd.target)
        return replace(state, ovs=state.ovs.with_bridge(replace(old, flows=dump)))
    if v is View.OFCTL_SHOW:
        ports = parse_ofctl_show(text, source)
        old = state.ovs.flows_of(cmd.target) or BridgeFlows(cmd.target)
        return replace(state, ovs=state.ovs.with_bridge(replace(old, ports=ports)))
    if v is View.IP_NETNS:
        return replace(state, netns_list=parse_ip_netns(text, source=source))
    if v is View.BRCTL_SHOW:
        bridges = parse_brctl_show_partial(text, source=source).items if partial else parse_brctl_show(
            text, source=source)
        return replace(state, linux_bridges=bridges)
    if v is View.PS:
        procs, notes = parse_ps_dnsmasq(text, source=source)  # -fe, aux or ax; wrapped lines joined
        for note in notes:
            _note(source, note)
        return replace(state, processes=(*(state.processes or ()), *procs))
    if v is View.CAT:
        files = tuple(f for f in state.files if f.path != cmd.target)
        return replace(state, files=(*files, FileState(cmd.target, text)))
    ns = state.namespace(cmd.netns) or NamespaceState(cmd.netns)
    return state.with_namespace(_apply_ns(ns, cmd, text, partial, source))


def _apply_vsctl_list(state: HostState, cmd: Command, text: str, source: str) -> HostState:
    """``ovs-vsctl list Bridge``: the columns ``show`` does not print (``protocols``, ``datapath_id``)
    of the bridges an earlier ``ovs-vsctl show`` capture gave; other tables and columns are not kept."""
    records = parse_vsctl_list("\n".join("" if is_elision(ln) else ln for ln in text.splitlines()), source)
    show = state.ovs.show
    if cmd.table.lower() != "bridge" or not isinstance(show, OvsdbShow):
        return state
    bridges = list(show.bridges)
    for rec in records:
        cols = dict(rec)
        try:
            name = parse_list_optional(cols.get("name", "[]"))
            kw: dict[str, object] = {}
            if "protocols" in cols:
                kw["protocols"] = parse_list_set(cols["protocols"])
            if "datapath_id" in cols:
                kw["datapath_id"] = parse_list_optional(cols["datapath_id"])
        except ValueError as exc:
            raise ParseError(f"OVSDB values in a Bridge record ({exc})", source=source) from None
        for i, br in enumerate(bridges):
            if br.name == name:
                bridges[i] = replace(br, **kw)  # type: ignore[arg-type]
    return replace(state, ovs=replace(state.ovs, show=replace(show, bridges=tuple(bridges))))


def _merge_links(old: tuple[Link, ...] | None, new: tuple[Link, ...], *, keep_addresses: bool) -> tuple[Link, ...]:
    """``new`` links, keeping the addresses already known when ``new`` came from ``ip link``, and
    the links of ``old`` that ``new`` does not mention."""
    by_name = {lk.name: lk for lk in old or ()}
    merged: list[Link] = []
    for lk in new:
        prev = by_name.pop(lk.name, None)
        if keep_addresses and prev is not None and not lk.addresses:
            lk = replace(lk, addresses=prev.addresses)
        merged.append(lk)
    merged.extend(by_name.values())
    return tuple(sorted(merged, key=lambda lk: lk.index))


def _one_family(ns: NamespaceState, links: tuple[Link, ...], cmd: Command) -> tuple[Link, ...]:
    """``ip -4 addr``/``ip -6 addr`` print one family's addresses (and not the link layer): each
    device keeps what was known of it, its other family's addresses included."""
    family = 6 if "-6" in cmd.options else 4 if "-4" in cmd.options else 0
    if not family:
        return links
    out: list[Link] = []
    for lk in links:
        known = ns.link(lk.name)
        if known is None:
            out.append(lk)
            continue
        others = tuple(a for a in known.addresses if a.interface.version != family)
        # iproute2 dumps IPv4 (AF_INET) before IPv6 (AF_INET6)
        merged = sorted((*others, *lk.addresses), key=lambda a: a.interface.version)
        out.append(replace(known, addresses=tuple(merged)))
    return tuple(out)


def _apply_ns(ns: NamespaceState, cmd: Command, text: str, partial: bool, source: str) -> NamespaceState:
    v = cmd.view
    detailed = "-d" in cmd.options
    if v is View.IP_ADDR:
        if "-o" in cmd.options:
            entries = parse_ip_addr_oneline(text, source=source)
            grouped: dict[str, Link] = {}
            for e in entries:
                lk = grouped.get(e.ifname)
                if lk is None:
                    known = ns.link(e.ifname)
                    lk = replace(known, addresses=()) if known is not None else Link(
                        index=e.index, name=e.ifname, flags=None)
                grouped[e.ifname] = replace(lk, addresses=(*lk.addresses, e.address))
            return replace(ns, links=_merge_links(ns.links, _one_family(ns, tuple(grouped.values()), cmd),
                                                  keep_addresses=False))
        if partial:
            links = parse_ip_addr_partial(text, source=source, detailed=detailed).items
        else:
            links = parse_ip_addr(text, source=source, detailed=detailed)
        return replace(ns, links=_merge_links(ns.links, _one_family(ns, links, cmd), keep_addresses=False))
    if v is View.IP_LINK:
        links = parse_ip_link_oneline(text, source=source, detailed=detailed) if "-o" in cmd.options else \
            parse_ip_link(text, source=source, detailed=detailed)
        return replace(ns, links=_merge_links(ns.links, links, keep_addresses=True))
    if v is View.IP_ROUTE:
        routes = parse_ip_route_partial(text, source=source).items if partial else parse_ip_route(
            text, source=source)
        return replace(ns, routes=_merge_routes(ns.routes, routes, cmd))
    if v is View.IP_RULE:
        if "-6" in cmd.options:
            _note(source, "IPv6 rules (ip -6 rule) are not kept: a namespace keeps its IPv4 rules")
            return ns
        return replace(ns, rules=parse_ip_rule(text, source=source))
    if v is View.IP_NEIGH:
        found = parse_ip_neigh(text, source=source)
        family = 6 if "-6" in cmd.options else 4 if "-4" in cmd.options else 0
        if family:  # ip -4/-6 neigh printed one family: the other's entries stay
            found = (*(nb for nb in ns.neighbours or () if nb.address.version != family), *found)
        return replace(ns, neighbours=found)
    if v is View.IFCONFIG and is_classic_ifconfig(text):
        _note(source, "classic net-tools ifconfig (Link encap:) read")
        return replace(ns, ifconfig=parse_classic_ifconfig(text, source=source))
    if v is View.IFCONFIG:
        ifs = parse_ifconfig_partial(text, source=source).items if partial else parse_ifconfig(text, source=source)
        return replace(ns, ifconfig=ifs)
    if v is View.ROUTE_N:
        return replace(ns, route_n=parse_route_n(text, source=source))
    if v is View.ARP_N:
        return replace(ns, arp=parse_arp_n(text, source=source))
    if v is View.SYSCTL:
        return replace(ns, sysctls=parse_sysctls(text, source))
    if v in (View.IPTABLES_SAVE, View.IPTABLES_S, View.IPTABLES_L):
        return replace(ns, iptables=_merge_iptables(ns.iptables, cmd, text, partial, source),
                       iptables_dialect=_dialect(cmd, text) or ns.iptables_dialect)
    raise InvalidInput(f"{source}: cannot import the output of {cmd.text or v.value!r}")


def _route_family(r: Route) -> int:
    return r.dst.version if r.dst is not None else (r.via.version if r.via is not None else 4)


def _merge_routes(old: tuple[Route, ...] | None, new: tuple[Route, ...], cmd: Command) -> tuple[Route, ...]:
    """The routes known once ``cmd`` printed ``new``: ``ip route show table N`` prints one table
    without naming it, so its routes are named ``N`` and replace only that table's routes; the main
    table is ``None``; ``table all`` names each route's table and replaces every table. ``ip route``
    prints IPv4 only unless ``-6`` is given (``table all`` without ``-4``/``-6`` prints both), and
    replaces only the family it printed."""
    table = cmd.table
    every = table == "all"
    families = {6} if "-6" in cmd.options else {4} if ("-4" in cmd.options or not every) else {4, 6}
    if not every:
        name = None if table in ("", "main", "254") else table
        new = tuple(replace(r, table=name) if r.table is None else r for r in new)
    kept = tuple(r for r in old or () if _route_family(r) not in families or (not every and r.table != (
        None if table in ("", "main", "254") else table)))
    return (*kept, *new)


_GENERATED = re.compile(r"^# Generated by \S+ (v\d+\.\d+\.\d+)", re.M)
_NUMERIC_PROTO = re.compile(r"^\s*\d+[KMGT]?\s+\d+[KMGT]?\s+\S*\s+\d+\s+--", re.M)
_NUMERIC_PROTO_NO_V = re.compile(r"^\S+\s+\d+\s+--\s+\S+\s+\S+", re.M)  # iptables -L -n (no -v) under nft
_MAC = re.compile(r"(?:--mac-source|MAC) ([0-9A-Fa-f:]{17})")


def _dialect(cmd: Command, text: str) -> str | None:
    """Which iptables release printed ``text``, as far as the text tells."""
    m = _GENERATED.search(text)
    if m:
        return ipt.dialect_for_version(m.group(1)).name
    if cmd.view is View.IPTABLES_L and (_NUMERIC_PROTO.search(text) or
                                        "-v" not in cmd.options and _NUMERIC_PROTO_NO_V.search(text)):
        return ipt.V1_8_9.name
    mac = _MAC.search(text)
    if mac:
        return ipt.CLASSIC.name if mac.group(1).isupper() or not any(c.isalpha() for c in mac.group(1)) \
            else ipt.MODERN.name
    return None


def _merge_iptables(old: ipt.Ruleset | None, cmd: Command, text: str, partial: bool, source: str) -> ipt.Ruleset:
    ruleset = old or ipt.Ruleset()
    if cmd.view is View.IPTABLES_SAVE:
        new = ipt.parse_save(text, source=source, partial=True).value if partial else ipt.parse_save(
            text, source=source)
        for table in new.tables:
            ruleset = ruleset.with_table(table)
        return ruleset
    try:
        table_name = ipt.TableName(cmd.table or "filter")
    except ValueError:
        raise InvalidInput(f"{source}: no iptables table {cmd.table!r}") from None
    if cmd.view is View.IPTABLES_S:
        table = ipt.parse_rules(text, table=table_name, source=source, partial=True).value if partial else \
            ipt.parse_rules(text, table=table_name, source=source)
    else:
        table = parse_listing(text, table=table_name, source=source)
    existing = ruleset.find(table_name)
    if existing is None or not cmd.target:
        if existing is not None:  # a full listing of a table replaces what was known of it, chain by chain
            for chain in table.chains:
                existing = existing.with_chain(chain)
            return ruleset.with_table(existing)
        return ruleset.with_table(table)
    for chain in table.chains:
        existing = existing.with_chain(chain)
    return ruleset.with_table(existing)
