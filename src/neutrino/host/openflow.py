"""OpenFlow flows in ovs-ofctl syntax: the :class:`Flow` model, its parser and canonical formatters.

One parser reads both what planners write (the ``ovs-ofctl add-flow`` form) and what a host dumps
(``ovs-ofctl dump-flows`` lines and whole dumps, with or without the reply header); the formatters
print exactly what Open vSwitch 3.1 prints.

>>> f = parse_flow("table=4,priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)")
>>> format_add_flow(f)
'table=4,priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)'
>>> format_flow(f)
'table=4, priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)'
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from neutrino.errors import ParseError
from neutrino.host.fastnew import maker
from neutrino.host.openflow_actions import (
    Action,
    Controller,
    Ct,
    GenericAction,
    GotoTable,
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    Load,
    Move,
    Nat,
    Note,
    Output,
    PushVlan,
    Resubmit,
    SetEthAddr,
    SetField,
    SetIPv4Addr,
    SetL4Port,
    SetTunnel,
    SetVlanPcp,
    SetVlanVid,
    StripVlan,
    format_actions,
    parse_actions,
)
from neutrino.host.openflow_fields import Mac, PortName, ReservedPort, Subfield, parse_int
from neutrino.host.openflow_match import (
    CtState,
    DlVlan,
    DlVlanPcp,
    EthMatch,
    FlagsMatch,
    InPort,
    IntMatch,
    IPv4Match,
    IPv6Match,
    MatchField,
    Proto,
    ProtoMatch,
    VlanTci,
    format_match,
    parse_match_field,
)

__all__ = [
    # the model
    "Flow", "FlowStats", "FlowFlag", "FlowDump", "DumpHeader", "FlowTable", "DEFAULT_PRIORITY",
    # match fields
    "MatchField", "ProtoMatch", "Proto", "InPort", "EthMatch", "IPv4Match", "IPv6Match", "DlVlan", "DlVlanPcp",
    "VlanTci", "IntMatch", "CtState", "FlagsMatch",
    # actions
    "Action", "Output", "SetVlanVid", "SetVlanPcp", "StripVlan", "PushVlan", "SetTunnel", "Resubmit",
    "GotoTable", "Load", "Move", "SetField", "SetEthAddr", "SetIPv4Addr", "SetL4Port", "Controller", "Ct",
    "Nat", "Note", "Learn", "LearnMatch", "LearnLoad", "LearnOutput", "GenericAction",
    # values
    "Mac", "PortName", "ReservedPort", "Subfield",
    # functions
    "make_flow", "new_flow", "parse_flow", "parse_dump_flows", "format_flow", "format_add_flow", "format_dump_flows", "flow_tables",
    "sort_like_ofctl",
]

DEFAULT_PRIORITY = 32768


class FlowFlag(enum.Enum):
    """Flow-mod flags, in the order OVS prints them."""

    SEND_FLOW_REM = "send_flow_rem"
    CHECK_OVERLAP = "check_overlap"
    RESET_COUNTS = "reset_counts"
    NO_PACKET_COUNTS = "no_packet_counts"
    NO_BYTE_COUNTS = "no_byte_counts"
    ALLOW_HIDDEN_FIELDS = "allow_hidden_fields"
    NO_READONLY_TABLE = "no_readonly_table"


_FLAG_ORDER = list(FlowFlag)


@dataclass(frozen=True, slots=True)
class FlowStats:
    """The counters ``dump-flows`` prints. ``None`` counters print as ``?``; ages are optional."""

    duration_sec: int = 0
    duration_nsec: int = 0
    n_packets: int | None = 0
    n_bytes: int | None = 0
    idle_age: int | None = None
    hard_age: int | None = None

    @property
    def duration(self) -> float:
        return self.duration_sec + self.duration_nsec / 1e9


@dataclass(frozen=True, slots=True)
class Flow:
    """One OpenFlow flow: where it sits (table, priority), what it matches and what it does."""

    match: tuple[MatchField, ...] = ()
    actions: tuple[Action, ...] = ()
    table: int = 0
    priority: int = DEFAULT_PRIORITY
    cookie: int = 0
    cookie_mask: int | None = None
    idle_timeout: int = 0
    hard_timeout: int = 0
    importance: int = 0
    flags: tuple[FlowFlag, ...] = ()
    stats: FlowStats | None = None

    def without_stats(self) -> Flow:
        """The same flow with its counters dropped (what a planner would have written)."""
        return Flow(self.match, self.actions, self.table, self.priority, self.cookie, self.cookie_mask,
                    self.idle_timeout, self.hard_timeout, self.importance, self.flags, None)

    @property
    def is_drop(self) -> bool:
        return not self.actions


#: ``Flow(*every_field)`` (all eleven, in field order), made about twice as fast (:mod:`neutrino.host.fastnew`):
#: for planners that make flows by the million
new_flow: Callable[..., Flow] = maker(Flow)


def make_flow(match: tuple[MatchField, ...], actions: tuple[Action, ...], table: int, priority: int, cookie: int,
              cookie_mask: int | None = None, idle_timeout: int = 0, hard_timeout: int = 0, importance: int = 0,
              flags: tuple[FlowFlag, ...] = (), stats: FlowStats | None = None) -> Flow:
    """``Flow(...)`` for planners that make many flows: the same flow, made by :data:`new_flow`."""
    return new_flow(match, actions, table, priority, cookie, cookie_mask, idle_timeout, hard_timeout, importance,
                    flags, stats)


@dataclass(frozen=True, slots=True)
class DumpHeader:
    """A reply header line (``NXST_FLOW reply (xid=0x4):``) and how many flows came before it."""

    position: int
    text: str


@dataclass(frozen=True, slots=True)
class FlowDump:
    """A whole ``dump-flows`` output: its header line(s), kept verbatim, and the flows in printed order."""

    flows: tuple[Flow, ...] = ()
    headers: tuple[DumpHeader, ...] = ()

    @property
    def header(self) -> str | None:
        return self.headers[0].text if self.headers else None


@dataclass(frozen=True, slots=True)
class FlowTable:
    """The flows of one table, highest priority first (ties keep their dumped order)."""

    table: int
    flows: tuple[Flow, ...] = field(default=())


# ---------------------------------------------------------------------------------------------------
# Parsing

_DURATION = re.compile(r"(\d+)(?:\.(\d{1,9}))?s")
_HEADER = re.compile(r"(?:NXST_FLOW|OFPST_FLOW|OFPST\d*_FLOW|NXST_AGGREGATE) reply\b.*:.*")


def _parse_count(text: str) -> int | None:
    return None if text == "?" else int(text)


#: match items and action lists are immutable and depend on their text alone: the same ones recur
#: across a bridge's flows and every host's, so each is parsed once
_match_field = functools.lru_cache(maxsize=1 << 16)(parse_match_field)
_actions = functools.lru_cache(maxsize=1 << 17)(parse_actions)


def _parse_flow_text(text: str) -> Flow:
    body = text.strip()
    idx = body.find("actions=")
    if idx < 0:
        raise ValueError("'actions=' after the match")
    if idx > 0 and body[idx - 1] not in " ,\t":
        raise ValueError("'actions=' separated from the match by a space or comma")
    head, action_text = body[:idx], body[idx + len("actions="):]
    if not action_text.strip():
        raise ValueError("actions after 'actions='")
    kw: dict[str, object] = {}
    stats: dict[str, int | None] = {}
    match: list[MatchField] = []
    flags: set[FlowFlag] = set()
    for token in re.split(r"[,\s]+", head.strip()):
        if not token:
            continue
        name, eq, value = token.partition("=")
        if eq and not value:
            raise ValueError(f"a value for {name!r}")
        if name in ("table", "priority", "idle_timeout", "hard_timeout", "importance") and eq:
            kw[name] = parse_int(value)
        elif name == "cookie" and eq:
            c, _, m = value.partition("/")
            kw["cookie"] = parse_int(c)
            if m:
                kw["cookie_mask"] = parse_int(m)
        elif name == "duration" and eq:
            dm = _DURATION.fullmatch(value)
            if not dm:
                raise ValueError(f"a duration like 1.234s, not {value!r}")
            stats["duration_sec"] = int(dm.group(1))
            stats["duration_nsec"] = int((dm.group(2) or "0").ljust(9, "0"))
        elif name in ("n_packets", "n_bytes", "idle_age", "hard_age") and eq:
            stats[name] = _parse_count(value)
        elif not eq and token in FlowFlag._value2member_map_:
            flags.add(FlowFlag(token))
        else:
            try:
                match.append(_match_field(name, value if eq else None))
            except ValueError as exc:
                if str(exc).startswith("unknown match field"):
                    raise ValueError(f"a known match field, not {name!r}") from None
                raise ValueError(f"a valid value for {name} ({exc})") from None
    actions = _actions(action_text)
    fs = None
    if stats:
        fs = FlowStats(duration_sec=stats.get("duration_sec") or 0, duration_nsec=stats.get("duration_nsec") or 0,
                       n_packets=stats.get("n_packets", 0), n_bytes=stats.get("n_bytes", 0),
                       idle_age=stats.get("idle_age"), hard_age=stats.get("hard_age"))
    return Flow(match=tuple(match), actions=actions, table=int(str(kw.get("table", 0))),
                priority=int(str(kw.get("priority", DEFAULT_PRIORITY))), cookie=int(str(kw.get("cookie", 0))),
                cookie_mask=int(str(kw["cookie_mask"])) if "cookie_mask" in kw else None,
                idle_timeout=int(str(kw.get("idle_timeout", 0))), hard_timeout=int(str(kw.get("hard_timeout", 0))),
                importance=int(str(kw.get("importance", 0))),
                flags=tuple(f for f in _FLAG_ORDER if f in flags), stats=fs)


def parse_flow(text: str, *, source: str = "<string>", line: int = 1) -> Flow:
    """Parse one flow, in add-flow form or as a dump-flows line. Raises :class:`ParseError`."""
    try:
        return _parse_flow_text(text)
    except ParseError:
        raise
    except (ValueError, KeyError) as exc:
        msg = str(exc).strip("'\"") or "a flow"
        if not msg.startswith(("a ", "an ", "'", "actions")):
            msg = f"a valid flow ({msg})"
        raise ParseError(msg, text=text, line=line, source=source) from None


def parse_dump_flows(text: str, source: str = "<string>") -> FlowDump:
    """Parse a whole ``ovs-ofctl dump-flows`` output (header optional, blank lines ignored)."""
    flows: list[Flow] = []
    headers: list[DumpHeader] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        if _HEADER.fullmatch(line.strip()):
            headers.append(DumpHeader(len(flows), line.strip()))
            continue
        flows.append(parse_flow(line, source=source, line=n))
    return FlowDump(tuple(flows), tuple(headers))


# ---------------------------------------------------------------------------------------------------
# Formatting


def _fmt_duration(sec: int, nsec: int) -> str:
    if not nsec:
        return f"{sec}s"
    if nsec % 1_000_000 == 0:
        return f"{sec}.{nsec // 1_000_000:03d}s"
    return f"{sec}.{nsec:09d}".rstrip("0") + "s"


def _fmt_count(v: int | None) -> str:
    return "?" if v is None else str(v)


def format_flow(flow: Flow, *, stats: bool = True) -> str:
    """The flow as one ``ovs-ofctl dump-flows`` line (without the one-space indent OVS adds).

    With ``stats`` and counters present it is the default dump form; otherwise the ``--no-stats``
    form (cookie and table only when non-zero).
    """
    st = flow.stats if stats else None
    out: list[str] = []
    if st is not None or flow.cookie:
        out.append(f"cookie={flow.cookie:#x}, ")
    if st is not None:
        out.append(f"duration={_fmt_duration(st.duration_sec, st.duration_nsec)}, ")
    if st is not None or flow.table:
        out.append(f"table={flow.table}, ")
    if st is not None:
        out.append(f"n_packets={_fmt_count(st.n_packets)}, n_bytes={_fmt_count(st.n_bytes)}, ")
    if flow.idle_timeout:
        out.append(f"idle_timeout={flow.idle_timeout}, ")
    if flow.hard_timeout:
        out.append(f"hard_timeout={flow.hard_timeout}, ")
    out.extend(f"{f.value} " for f in flow.flags)
    if flow.importance:
        out.append(f"importance={flow.importance}, ")
    if st is not None and st.idle_age is not None:
        out.append(f"idle_age={st.idle_age}, ")
    if st is not None and st.hard_age is not None and st.hard_age != st.duration_sec:
        out.append(f"hard_age={st.hard_age}, ")
    m = format_match(flow.match, flow.priority)
    if m:
        out.append(m + " ")
    out.append("actions=" + format_actions(flow.actions))
    return "".join(out)


def format_add_flow(flow: Flow) -> str:
    """The flow in ``ovs-ofctl add-flow`` form: ``table=4,priority=1,tun_id=0x64 actions=…``."""
    parts: list[str] = []
    if flow.table:
        parts.append(f"table={flow.table}")
    if flow.cookie or flow.cookie_mask is not None:
        c = f"cookie={flow.cookie:#x}"
        if flow.cookie_mask is not None:
            c += f"/{flow.cookie_mask:#x}"
        parts.append(c)
    if flow.idle_timeout:
        parts.append(f"idle_timeout={flow.idle_timeout}")
    if flow.hard_timeout:
        parts.append(f"hard_timeout={flow.hard_timeout}")
    if flow.importance:
        parts.append(f"importance={flow.importance}")
    parts.extend(f.value for f in flow.flags)
    m = format_match(flow.match, flow.priority)
    if m:
        parts.append(m)
    head = ",".join(parts)
    return f"{head} actions={format_actions(flow.actions)}" if head else f"actions={format_actions(flow.actions)}"


def format_dump_flows(dump: FlowDump, *, stats: bool = True) -> str:
    """The whole dump as OVS prints it: header line(s), then one indented line per flow."""
    lines: list[str] = []
    headers = list(dump.headers)
    for i, flow in enumerate(dump.flows):
        while headers and headers[0].position <= i:
            lines.append(headers.pop(0).text)
        lines.append(" " + format_flow(flow, stats=stats))
    lines.extend(h.text for h in headers)
    return "\n".join(lines) + "\n" if lines else ""


def flow_tables(flows: Iterable[Flow]) -> tuple[FlowTable, ...]:
    """Group flows by table (ascending), each table highest priority first, ties in given order —
    the order a lookup considers them."""
    by_table: dict[int, list[Flow]] = {}
    for f in flows:
        by_table.setdefault(f.table, []).append(f)
    return tuple(FlowTable(t, tuple(sorted(fs, key=lambda f: -f.priority))) for t, fs in sorted(by_table.items()))


def sort_like_ofctl(flows: Sequence[Flow], *, reverse: bool = False) -> tuple[Flow, ...]:
    """What ``dump-flows --sort`` (ascending priority) or ``--rsort`` (``reverse``) prints: sorted by
    priority across all tables, stable. Plain ``dump-flows`` keeps OVS's own order; so does the parser."""
    return tuple(sorted(flows, key=lambda f: f.priority, reverse=reverse))
