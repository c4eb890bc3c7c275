"""``ovs-vsctl show``: the OVSDB view of one host's Open vSwitch, parsed and printed as OVS prints it.

The layout is OVS's ``cmd_show`` (``lib/db-ctl-base.c``): the Open_vSwitch row's UUID, then its managers,
bridges (controllers, fail_mode, datapath_type, ports) and ``ovs_version``; ports show tag and trunks
and their interfaces; interfaces show type, options, error and bfd_status; only non-default columns
print. Strings follow ``ovsdb_atom_to_string``: bare when they look like identifiers, JSON-quoted
otherwise. OVS before 2.6 also quoted any string with a digit (``Port "qvo7c7ae61e-05"``); that is the
``legacy`` style. Excerpts (``grep`` output, ``.`` elision lines) parse with ``partial=True``.

>>> s = parse_vsctl_show('Bridge br-int\\n    Port "qvo7c7ae61e-05"\\n        tag: 1\\n', partial=True)
>>> print(format_vsctl_show(s), end="")
Bridge br-int
    Port qvo7c7ae61e-05
        tag: 1
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, overload

from neutrino.errors import ParseError

if TYPE_CHECKING:  # imported where a UUID is read (uuid imports platform: no need in every command)
    import uuid

__all__ = [
    "Bridge", "Column", "Controller", "Elided", "Interface", "Manager", "OvsdbShow", "Piece", "Port",
    "QuoteStyle", "VsctlShowExcerpt", "format_vsctl_show", "needs_quotes", "parse_vsctl_show", "quote",
    "ListRecord", "bridge_list_record", "format_vsctl_list", "list_value_optional", "list_value_set",
    "parse_list_optional", "parse_list_set", "parse_vsctl_list", "BRIDGE_COLUMNS", "bridge_list_columns",
]

Pairs = tuple[tuple[str, str], ...]


class QuoteStyle(enum.Enum):
    """How strings are quoted: OVS ≥ 2.6 (``modern``), older OVS (``legacy``), or as the text had it."""

    MODERN = "modern"
    LEGACY = "legacy"
    AS_PARSED = "as_parsed"


@dataclass(frozen=True, slots=True)
class Column:
    """A column line ``show`` printed that the model has no field for, kept verbatim (``name: value``)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Manager:
    """A Manager row: ``target`` and whether OVS is connected to it."""

    target: str
    is_connected: bool = False
    extra: tuple[Column, ...] = ()
    quoted: bool | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Controller:
    """A Controller row of a bridge."""

    target: str
    is_connected: bool = False
    extra: tuple[Column, ...] = ()
    quoted: bool | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Interface:
    """An Interface row: ``type`` (None for a system device), ``options`` in OVSDB's (sorted) order."""

    name: str
    type: str | None = None
    options: Pairs = ()
    error: str | None = None
    bfd_status: Pairs = ()
    extra: tuple[Column, ...] = ()
    quoted: bool | None = field(default=None, compare=False)

    def option(self, key: str) -> str | None:
        return next((v for k, v in self.options if k == key), None)


@dataclass(frozen=True, slots=True)
class Port:
    """A Port row. ``vlan_mode`` is part of the model but ``ovs-vsctl show`` does not print it."""

    name: str
    interfaces: tuple[Interface, ...] = ()
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    vlan_mode: str | None = None
    extra: tuple[Column, ...] = ()
    quoted: bool | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Bridge:
    """A Bridge row. ``datapath_id`` and ``protocols`` are kept for the host state; ``show`` prints neither."""

    name: str
    ports: tuple[Port, ...] = ()
    controllers: tuple[Controller, ...] = ()
    fail_mode: str | None = None
    datapath_type: str | None = None
    datapath_id: str | None = None
    protocols: tuple[str, ...] = ()
    extra: tuple[Column, ...] = ()
    quoted: bool | None = field(default=None, compare=False)

    def port(self, name: str) -> Port | None:
        return next((p for p in self.ports if p.name == name), None)


@dataclass(frozen=True, slots=True)
class OvsdbShow:
    """The whole ``ovs-vsctl show``: the Open_vSwitch row. Ports and bridges keep OVSDB's order."""

    uuid: uuid.UUID | None = None
    bridges: tuple[Bridge, ...] = ()
    managers: tuple[Manager, ...] = ()
    ovs_version: str | None = None
    extra: tuple[Column, ...] = ()
    style: QuoteStyle = QuoteStyle.MODERN

    def bridge(self, name: str) -> Bridge | None:
        return next((b for b in self.bridges if b.name == name), None)


@dataclass(frozen=True, slots=True)
class Elided:
    """A line of a single ``.`` (or ``...``) standing for cut output."""

    text: str = "."


Record = OvsdbShow | Manager | Bridge | Controller | Port | Interface


@dataclass(frozen=True, slots=True)
class Piece:
    """One top-level item of an excerpt, printed at indentation ``level`` (4 spaces each)."""

    level: int
    item: Record | Column | Elided


@dataclass(frozen=True, slots=True)
class VsctlShowExcerpt:
    """A partial capture: what survived a ``grep`` or an author's cut, in order."""

    pieces: tuple[Piece, ...]
    style: QuoteStyle = QuoteStyle.MODERN

    def bridges(self) -> tuple[Bridge, ...]:
        return tuple(x for x in self._walk() if isinstance(x, Bridge))

    def ports(self) -> tuple[Port, ...]:
        return tuple(x for x in self._walk() if isinstance(x, Port))

    def _walk(self) -> list[object]:
        out: list[object] = []

        def visit(x: object) -> None:
            out.append(x)
            children: tuple[object, ...] = ()
            if isinstance(x, OvsdbShow):
                children = (*x.managers, *x.bridges)
            elif isinstance(x, Bridge):
                children = (*x.controllers, *x.ports)
            elif isinstance(x, Port):
                children = x.interfaces
            for c in children:
                visit(c)

        for p in self.pieces:
            visit(p.item)
        return out


# ---------------------------------------------------------------------------------------------------
# Strings, the OVSDB way


def needs_quotes(s: str, style: QuoteStyle = QuoteStyle.MODERN) -> bool:
    """Whether OVS prints ``s`` quoted: anything but an identifier-like word (letters, digits, ``_-.``,
    starting with a letter or ``_``), ``true``/``false``, and (modern) UUIDs; legacy also quotes digits."""
    if not s or not (s[0].isascii() and (s[0].isalpha() or s[0] == "_")):
        return True
    legacy = style is QuoteStyle.LEGACY
    for c in s[1:]:
        ok = c.isascii() and (c.isalpha() or c in "_-." or (c.isdigit() and not legacy))
        if not ok:
            return True
    if s in ("true", "false"):
        return True
    if not legacy:
        from uuid import UUID

        try:
            UUID(s)
            return len(s) == 36
        except ValueError:
            pass
    return False


def quote(s: str, style: QuoteStyle = QuoteStyle.MODERN) -> str:
    """``s`` as ``ovsdb_atom_to_string`` prints a string atom."""
    return json.dumps(s, ensure_ascii=False) if needs_quotes(s, style) else s


def _scan_atom(text: str, pos: int) -> tuple[str, bool, int]:
    """One atom at ``pos``: (value, was_quoted, next position)."""
    if pos < len(text) and text[pos] == '"':
        dec = json.JSONDecoder()
        value, end = dec.raw_decode(text, pos)
        if not isinstance(value, str):
            raise ValueError("a string")
        return value, True, end
    m = re.compile(r"[^,=\s\]\}\"]+").match(text, pos)
    if not m:
        raise ValueError("a value")
    return m.group(0), False, m.end()


def _parse_atom(text: str) -> tuple[str, bool]:
    value, quoted, end = _scan_atom(text, 0)
    if end != len(text):
        raise ValueError("a single value")
    return value, quoted


def _parse_map(text: str) -> Pairs:
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError("a map like {key=value, …}")
    body, pos, out = text[1:-1], 0, []
    while pos < len(body):
        k, _, pos = _scan_atom(body, pos)
        if pos >= len(body) or body[pos] != "=":
            raise ValueError("'=' in a map entry")
        v, _, pos = _scan_atom(body, pos + 1)
        out.append((k, v))
        if body.startswith(", ", pos):
            pos += 2
        elif pos != len(body):
            raise ValueError("', ' between map entries")
    return tuple(out)


def _parse_set_of_ints(text: str) -> tuple[int, ...]:
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return tuple(int(x) for x in inner.split(", ")) if inner else ()
    return (int(text),)


def _fmt_map(pairs: Pairs, style: QuoteStyle) -> str:
    return "{" + ", ".join(f"{quote(k, style)}={quote(v, style)}" for k, v in pairs) + "}"


# ---------------------------------------------------------------------------------------------------
# Parsing


@dataclass
class _Node:
    level: int
    line: int
    text: str
    kind: str  # uuid, Manager, Bridge, Controller, Port, Interface, column, elided
    name: str = ""
    value: str = ""
    children: list[_Node] | None = None


# patterns are compiled where used (re keeps them): importing the module compiles none
_RECORD = r"(Manager|Bridge|Controller|Port|Interface) (.+)"
_COLUMN = r"([a-z_][a-z0-9_]*): (.*)"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CHILD_KINDS = {"uuid": ("Manager", "Bridge"), "Bridge": ("Controller", "Port"), "Port": ("Interface",),
                "Manager": (), "Controller": (), "Interface": ()}


def _lex(text: str, source: str) -> list[_Node]:
    nodes = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if re.fullmatch(r"\.+|…", stripped):
            nodes.append(_Node(indent // 4, n, line, "elided", value=stripped))
            continue
        if indent % 4:
            raise ParseError("indentation in steps of 4 spaces", text=line, line=n, source=source)
        level = indent // 4
        if re.compile(_UUID).fullmatch(stripped):
            nodes.append(_Node(level, n, line, "uuid", value=stripped))
        elif m := re.compile(_RECORD).fullmatch(stripped):
            nodes.append(_Node(level, n, line, m.group(1), name=m.group(2)))
        elif m := re.compile(_COLUMN).fullmatch(stripped):
            nodes.append(_Node(level, n, line, "column", name=m.group(1), value=m.group(2)))
        else:
            raise ParseError("a UUID, 'Bridge|Port|Interface|Controller|Manager NAME' or 'column: value'",
                             text=line, line=n, source=source)
    return nodes


def _tree(nodes: list[_Node], source: str) -> list[_Node]:
    """Nest nodes by indentation; return the roots. A child must sit exactly one level deeper."""
    roots: list[_Node] = []
    stack: list[_Node] = []
    for node in nodes:
        while stack and stack[-1].level >= node.level:
            stack.pop()
        if node.kind == "elided":
            roots.append(node)
            stack.clear()
            continue
        if stack:
            parent = stack[-1]
            if node.level != parent.level + 1 or parent.kind in ("column",):
                raise ParseError(f"a line indented one level under {parent.kind} {parent.name}".strip(),
                                 text=node.text, line=node.line, source=source)
            if parent.children is None:
                parent.children = []
            parent.children.append(node)
        else:
            roots.append(node)
        if node.kind != "column":
            stack.append(node)
    return roots


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.quoted_digits = False
        self.bare_digits = False

    def err(self, node: _Node, expected: str) -> ParseError:
        return ParseError(expected, text=node.text, line=node.line, source=self.source)

    def name(self, node: _Node) -> tuple[str, bool]:
        try:
            value, quoted = _parse_atom(node.name)
        except ValueError:
            raise self.err(node, f"a {node.kind} name (a word or a quoted string)") from None
        self._note_style(value, quoted)
        return value, quoted

    def _note_style(self, value: str, quoted: bool) -> None:
        if any(c.isdigit() for c in value) and not needs_quotes(value, QuoteStyle.MODERN):
            if quoted:
                self.quoted_digits = True
            else:
                self.bare_digits = True

    def string(self, node: _Node) -> str:
        try:
            value, quoted = _parse_atom(node.value)
        except ValueError:
            raise self.err(node, f"a string value for {node.name}") from None
        self._note_style(value, quoted)
        return value

    def pairs(self, node: _Node) -> Pairs:
        try:
            pairs = _parse_map(node.value)
        except ValueError as exc:
            raise self.err(node, f"{exc} for {node.name}") from None
        for k, _v in pairs:
            self._note_style(k, False)
        for piece in re.findall(r'"[^"]*"|[^\s,{}=]+', node.value):
            if piece.startswith('"'):
                self._note_style(json.loads(piece), True)
        return pairs

    def children(self, node: _Node, kinds: tuple[str, ...]) -> list[_Node]:
        out = []
        for c in node.children or []:
            if c.kind != "column" and c.kind not in kinds:
                raise self.err(c, f"{' or '.join(kinds) or 'no record'} under {node.kind}")
            out.append(c)
        return out

    def bool_(self, node: _Node) -> bool:
        if node.value not in ("true", "false"):
            raise self.err(node, f"true or false for {node.name}")
        return node.value == "true"

    def build(self, node: _Node) -> Record | Column | Elided:
        if node.kind == "elided":
            return Elided(node.value)
        if node.kind == "column":
            return Column(node.name, node.value)
        kids = self.children(node, _CHILD_KINDS[node.kind])
        cols = [c for c in kids if c.kind == "column"]
        extra: list[Column] = []
        if node.kind == "uuid":
            managers, bridges, version = [], [], None
            for c in kids:
                if c.kind == "Manager":
                    managers.append(self.build(c))
                elif c.kind == "Bridge":
                    bridges.append(self.build(c))
                elif c.name == "ovs_version":
                    version = self.string(c)
                else:
                    extra.append(Column(c.name, c.value))
            from uuid import UUID

            return OvsdbShow(UUID(node.value), tuple(b for b in bridges if isinstance(b, Bridge)),
                             tuple(m for m in managers if isinstance(m, Manager)), version, tuple(extra))
        name, quoted = self.name(node)
        if node.kind in ("Manager", "Controller"):
            connected = False
            for c in cols:
                if c.name == "is_connected":
                    connected = self.bool_(c)
                else:
                    extra.append(Column(c.name, c.value))
            cls = Manager if node.kind == "Manager" else Controller
            return cls(name, connected, tuple(extra), quoted)
        if node.kind == "Interface":
            itype = error = None
            options: Pairs = ()
            bfd: Pairs = ()
            for c in cols:
                if c.name == "type":
                    itype = self.string(c)
                elif c.name == "options":
                    options = self.pairs(c)
                elif c.name == "error":
                    error = self.string(c)
                elif c.name == "bfd_status":
                    bfd = self.pairs(c)
                else:
                    extra.append(Column(c.name, c.value))
            return Interface(name, itype, options, error, bfd, tuple(extra), quoted)
        if node.kind == "Port":
            tag = None
            trunks: tuple[int, ...] = ()
            for c in cols:
                try:
                    if c.name == "tag":
                        tag = int(c.value)
                        continue
                    if c.name == "trunks":
                        trunks = _parse_set_of_ints(c.value)
                        continue
                except ValueError:
                    raise self.err(c, f"an integer (or [a, b]) for {c.name}") from None
                extra.append(Column(c.name, c.value))
            ifaces = tuple(i for i in (self.build(c) for c in kids if c.kind == "Interface")
                           if isinstance(i, Interface))
            return Port(name, ifaces, tag, trunks, None, tuple(extra), quoted)
        fail_mode = dp_type = None
        for c in cols:
            if c.name == "fail_mode":
                fail_mode = self.string(c)
            elif c.name == "datapath_type":
                dp_type = self.string(c)
            else:
                extra.append(Column(c.name, c.value))
        ctrls = tuple(x for x in (self.build(c) for c in kids if c.kind == "Controller")
                      if isinstance(x, Controller))
        ports = tuple(x for x in (self.build(c) for c in kids if c.kind == "Port") if isinstance(x, Port))
        return Bridge(name, ports, ctrls, fail_mode, dp_type, None, (), tuple(extra), quoted)

    @property
    def style(self) -> QuoteStyle:
        return QuoteStyle.LEGACY if self.quoted_digits and not self.bare_digits else QuoteStyle.MODERN


@overload
def parse_vsctl_show(text: str, source: str = ..., *, partial: Literal[False] = ...) -> OvsdbShow: ...


@overload
def parse_vsctl_show(text: str, source: str = ..., *, partial: Literal[True]) -> VsctlShowExcerpt: ...


@overload
def parse_vsctl_show(text: str, source: str = ..., *, partial: bool) -> OvsdbShow | VsctlShowExcerpt: ...


def parse_vsctl_show(text: str, source: str = "<string>", *, partial: bool = False) -> OvsdbShow | VsctlShowExcerpt:
    """Parse ``ovs-vsctl show`` output. Raises :class:`ParseError` naming the line and what was expected.

    Whole output gives an :class:`OvsdbShow`. With ``partial`` any excerpt is accepted (lines starting
    mid-structure, records without their parents, ``.`` lines) and a :class:`VsctlShowExcerpt` comes back.
    """
    nodes = _lex(text, source)
    roots = _tree(nodes, source)
    b = _Builder(source)
    if not partial:
        if not roots:
            raise ParseError("the Open_vSwitch UUID line", line=1, source=source)
        first = roots[0]
        if first.kind != "uuid" or first.level != 0:
            raise b.err(first, "the Open_vSwitch UUID on the first line (use partial=True for excerpts)")
        if len(roots) > 1:
            raise b.err(roots[1], "one Open_vSwitch record (use partial=True for excerpts)")
        show = b.build(first)
        assert isinstance(show, OvsdbShow)
        return OvsdbShow(show.uuid, show.bridges, show.managers, show.ovs_version, show.extra, b.style)
    pieces = []
    for r in roots:
        item = b.build(r)
        pieces.append(Piece(r.level, item))
    style = b.style
    pieces = [Piece(p.level, _with_style(p.item, style)) for p in pieces]
    return VsctlShowExcerpt(tuple(pieces), style)


def _with_style(item: Record | Column | Elided, style: QuoteStyle) -> Record | Column | Elided:
    if isinstance(item, OvsdbShow):
        return OvsdbShow(item.uuid, item.bridges, item.managers, item.ovs_version, item.extra, style)
    return item


# ---------------------------------------------------------------------------------------------------
# Formatting


class _Printer:
    def __init__(self, style: QuoteStyle, parsed_style: QuoteStyle) -> None:
        self.style = style
        self.value_style = parsed_style if style is QuoteStyle.AS_PARSED else style
        self.lines: list[str] = []

    def put(self, level: int, text: str) -> None:
        self.lines.append("    " * level + text)

    def name(self, kind: str, name: str, quoted: bool | None) -> str:
        if self.style is QuoteStyle.AS_PARSED and quoted is not None:
            return f"{kind} {json.dumps(name, ensure_ascii=False) if quoted else name}"
        return f"{kind} {quote(name, self.value_style)}"

    def extra(self, level: int, cols: tuple[Column, ...]) -> None:
        for c in cols:
            self.put(level, f"{c.name}: {c.value}")

    def item(self, level: int, x: Record | Column | Elided) -> None:
        s = self.value_style
        if isinstance(x, Elided):
            self.put(level, x.text)
        elif isinstance(x, Column):
            self.put(level, f"{x.name}: {x.value}")
        elif isinstance(x, OvsdbShow):
            self.put(level, str(x.uuid) if x.uuid else "")
            for m in x.managers:
                self.item(level + 1, m)
            for b in x.bridges:
                self.item(level + 1, b)
            if x.ovs_version is not None:
                self.put(level + 1, f"ovs_version: {quote(x.ovs_version, s)}")
            self.extra(level + 1, x.extra)
        elif isinstance(x, Manager | Controller):
            self.put(level, self.name(type(x).__name__, x.target, x.quoted))
            if x.is_connected:
                self.put(level + 1, "is_connected: true")
            self.extra(level + 1, x.extra)
        elif isinstance(x, Bridge):
            self.put(level, self.name("Bridge", x.name, x.quoted))
            for c in x.controllers:
                self.item(level + 1, c)
            if x.fail_mode is not None:
                self.put(level + 1, f"fail_mode: {quote(x.fail_mode, s)}")
            if x.datapath_type:
                self.put(level + 1, f"datapath_type: {quote(x.datapath_type, s)}")
            self.extra(level + 1, x.extra)
            for p in x.ports:
                self.item(level + 1, p)
        elif isinstance(x, Port):
            self.put(level, self.name("Port", x.name, x.quoted))
            if x.tag is not None:
                self.put(level + 1, f"tag: {x.tag}")
            if x.trunks:
                inner = ", ".join(str(t) for t in x.trunks)
                self.put(level + 1, f"trunks: [{inner}]")
            self.extra(level + 1, x.extra)
            for i in x.interfaces:
                self.item(level + 1, i)
        else:
            self.put(level, self.name("Interface", x.name, x.quoted))
            if x.type:
                self.put(level + 1, f"type: {quote(x.type, s)}")
            if x.options:
                self.put(level + 1, f"options: {_fmt_map(x.options, s)}")
            if x.error is not None:
                self.put(level + 1, f"error: {quote(x.error, s)}")
            if x.bfd_status:
                self.put(level + 1, f"bfd_status: {_fmt_map(x.bfd_status, s)}")
            self.extra(level + 1, x.extra)


def format_vsctl_show(state: OvsdbShow | VsctlShowExcerpt,
                      style: QuoteStyle | Literal["modern", "legacy", "as_parsed"] = "modern") -> str:
    """``ovs-vsctl show`` text for ``state``. ``modern`` quotes like OVS 3.x, ``legacy`` like OVS before
    2.6 (names with digits quoted), ``as_parsed`` keeps each name's quoting as read."""
    st = QuoteStyle(style)
    if isinstance(state, OvsdbShow):
        p = _Printer(st, state.style)
        p.item(0, state)
    else:
        p = _Printer(st, state.style)
        for piece in state.pieces:
            p.item(piece.level, piece.item)
    return "\n".join(p.lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# ovs-vsctl [--columns=...] list TABLE: what ``show`` leaves out (a bridge's protocols, datapath_id)

#: One record of ``ovs-vsctl list``: (column, value as printed), in the order printed.
ListRecord = tuple[tuple[str, str], ...]

_LIST_LINE = r"^([A-Za-z_][\w:-]*)\s*: ?(.*)$"


def parse_vsctl_list(text: str, source: str = "<string>") -> tuple[ListRecord, ...]:
    """``ovs-vsctl list TABLE`` output: ``column : value`` lines, records apart by a blank line."""
    records: list[ListRecord] = []
    cur: list[tuple[str, str]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if cur:
                records.append(tuple(cur))
            cur = []
            continue
        m = re.compile(_LIST_LINE).match(line.rstrip())
        if not m:
            raise ParseError("'column : value' (ovs-vsctl list)", text=line, line=n, source=source)
        cur.append((m.group(1), m.group(2)))
    if cur:
        records.append(tuple(cur))
    return tuple(records)


def format_vsctl_list(records: tuple[ListRecord, ...] | list[ListRecord]) -> str:
    """``ovs-vsctl list`` text: each column as ``%-20s: value``, a blank line between records."""
    return "\n".join("".join(f"{name:<20}: {value}\n" for name, value in rec) for rec in records)


def list_value_set(values: tuple[str, ...], style: QuoteStyle = QuoteStyle.MODERN) -> str:
    """A set of strings as ``ovs-vsctl list`` prints it: ``[OpenFlow10, OpenFlow13]``, ``[]``."""
    return "[" + ", ".join(quote(v, style) for v in values) + "]"


def list_value_optional(value: str | None, style: QuoteStyle = QuoteStyle.MODERN) -> str:
    """An optional string column (``datapath_id``): the string, or ``[]`` when it has none."""
    return "[]" if value is None else quote(value, style)


def parse_list_set(text: str) -> tuple[str, ...]:
    """The strings of a printed set (``[a, "b c"]``, ``[]``) or a single atom."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        return (_parse_atom(body)[0],)
    body, pos, out = body[1:-1], 0, []
    while pos < len(body):
        while pos < len(body) and body[pos] in " ,":
            pos += 1
        if pos >= len(body):
            break
        value, _, pos = _scan_atom(body, pos)
        out.append(value)
    return tuple(out)


def parse_list_optional(text: str) -> str | None:
    """An optional column's value: ``None`` for ``[]``."""
    values = parse_list_set(text)
    if len(values) > 1:
        raise ValueError("at most one value")
    return values[0] if values else None


def bridge_list_record(bridge: Bridge, style: QuoteStyle = QuoteStyle.MODERN) -> ListRecord:
    """What ``ovs-vsctl --columns=name,datapath_id,protocols list Bridge`` prints of ``bridge``."""
    return (("name", quote(bridge.name, style)),
            ("datapath_id", list_value_optional(bridge.datapath_id, style)),
            ("protocols", list_value_set(bridge.protocols, style)))


#: The Bridge columns a host state knows, as ``ovs-vsctl list`` prints them (its other columns hold
#: row UUIDs or state the model does not keep).
BRIDGE_COLUMNS = ("name", "datapath_id", "datapath_type", "fail_mode", "protocols")


def bridge_list_columns(bridge: Bridge, columns: tuple[str, ...],
                        style: QuoteStyle = QuoteStyle.MODERN) -> ListRecord:
    """What ``ovs-vsctl --columns=A,B list Bridge`` prints of ``bridge``, for columns of
    :data:`BRIDGE_COLUMNS` (``KeyError`` for another)."""
    values = {"name": quote(bridge.name, style),
              "datapath_id": list_value_optional(bridge.datapath_id, style),
              "datapath_type": quote(bridge.datapath_type or "", style),
              "fail_mode": list_value_optional(bridge.fail_mode, style),
              "protocols": list_value_set(bridge.protocols, style)}
    return tuple((c, values[c]) for c in columns)
