"""OpenFlow actions in ovs-ofctl syntax: typed actions, a parser and OVS's canonical printer.

Spellings follow ``lib/ofp-actions.c`` and ``lib/learn.c`` of Open vSwitch (``output:1``, ``NORMAL``,
``resubmit(,10)``, ``load:0x64->NXM_NX_TUN_ID[]``, ``learn(table=20,…)``). An action this module does
not know is kept verbatim as :class:`GenericAction`.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from neutrino.host.openflow_fields import (
    Kind,
    Mac,
    Port,
    ReservedPort,
    Subfield,
    field_info,
    format_port,
    format_subfield,
    format_value,
    parse_int,
    parse_port,
    parse_subfield,
    split_top,
    value_to_int,
)
from neutrino.host.openflow_learn import Learn, LearnLoad, LearnMatch, LearnOutput, format_learn, parse_learn

__all__ = [
    "Action", "Controller", "Ct", "GenericAction", "GotoTable", "Learn", "LearnLoad", "LearnMatch",
    "LearnOutput", "Load", "Move", "Nat", "Note", "Output", "PushVlan", "Resubmit", "SetEthAddr",
    "SetField", "SetIPv4Addr", "SetL4Port", "SetTunnel", "SetVlanPcp", "SetVlanVid", "StripVlan",
    "format_action", "format_actions", "parse_actions",
]


@dataclass(frozen=True, slots=True)
class Output:
    """``output:N``/``output:NAME``, or a reserved port (``NORMAL``, ``LOCAL``, ``IN_PORT``, ``FLOOD``,
    ``ALL``, ``CONTROLLER:LEN``)."""

    port: Port
    max_len: int | None = None


@dataclass(frozen=True, slots=True)
class SetVlanVid:
    """``mod_vlan_vid:VID`` (pushes a tag if needed) or ``set_vlan_vid:VID`` (``push=False``)."""

    vid: int
    push: bool = True


@dataclass(frozen=True, slots=True)
class SetVlanPcp:
    """``mod_vlan_pcp:PCP`` / ``set_vlan_pcp:PCP``."""

    pcp: int
    push: bool = True


@dataclass(frozen=True, slots=True)
class StripVlan:
    """``strip_vlan`` (OpenFlow 1.0 spelling) or ``pop_vlan`` (1.1+)."""

    pop_spelling: bool = False


@dataclass(frozen=True, slots=True)
class PushVlan:
    """``push_vlan:0x8100``."""

    ethertype: int = 0x8100


@dataclass(frozen=True, slots=True)
class SetTunnel:
    """``set_tunnel:0x2`` / ``set_tunnel64:0x…``."""

    tun_id: int
    wide: bool = False


@dataclass(frozen=True, slots=True)
class Resubmit:
    """``resubmit(PORT,TABLE)``, ``resubmit(,TABLE)`` or ``resubmit:PORT``. None means IN_PORT / this table."""

    port: Port | None = None
    table: int | None = None
    ct: bool = False


@dataclass(frozen=True, slots=True)
class GotoTable:
    """``goto_table:N`` (an OpenFlow 1.1+ instruction)."""

    table: int


@dataclass(frozen=True, slots=True)
class Load:
    """``load:VALUE->FIELD[range]``."""

    value: int
    dst: Subfield


@dataclass(frozen=True, slots=True)
class Move:
    """``move:SRC[range]->DST[range]``."""

    src: Subfield
    dst: Subfield


@dataclass(frozen=True, slots=True)
class SetField:
    """``set_field:VALUE[/MASK]->FIELD``; ``value``/``mask`` are kept as OVS prints them."""

    field: str
    value: str
    mask: str | None = None

    def int_value(self) -> int:
        """The value as an integer (MACs and IP addresses included)."""
        return value_to_int(self.value)


@dataclass(frozen=True, slots=True)
class SetEthAddr:
    """``mod_dl_src:MAC`` / ``mod_dl_dst:MAC`` (``field`` is ``dl_src`` or ``dl_dst``)."""

    field: str
    mac: Mac


@dataclass(frozen=True, slots=True)
class SetIPv4Addr:
    """``mod_nw_src:IP`` / ``mod_nw_dst:IP``."""

    field: str
    address: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class SetL4Port:
    """``mod_tp_src:N`` / ``mod_tp_dst:N``."""

    field: str
    port: int


@dataclass(frozen=True, slots=True)
class Controller:
    """``controller(reason=…,max_len=…,id=…,userdata=…,pause,meter_id=…)``."""

    max_len: int | None = None
    reason: str | None = None
    controller_id: int | None = None
    userdata: str | None = None
    pause: bool = False
    meter_id: int | None = None


@dataclass(frozen=True, slots=True)
class Nat:
    """``nat`` or ``nat(src|dst=ADDR[-ADDR][:PORT[-PORT]],persistent,hash,random)`` inside ``ct``."""

    kind: str | None = None
    addr_min: str | None = None
    addr_max: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ct:
    """``ct(commit,force,table=N,zone=N|zone=FIELD[..],nat(…),exec(…),alg=…)``."""

    commit: bool = False
    force: bool = False
    table: int | None = None
    zone: int | Subfield | None = None
    nat: Nat | None = None
    exec_: tuple[Action, ...] = ()
    alg: str | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """``note:01.02.03`` (the bytes; OVS pads what it stores to fill 8-byte units)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class GenericAction:
    """An action this module does not model, kept exactly as written (``dec_ttl``, ``enqueue:1:2``…)."""

    text: str


Action = (Output | SetVlanVid | SetVlanPcp | StripVlan | PushVlan | SetTunnel | Resubmit | GotoTable | Load
          | Move | SetField | SetEthAddr | SetIPv4Addr | SetL4Port | Controller | Ct | Note | Learn
          | GenericAction)


# ---------------------------------------------------------------------------------------------------
# Parsing


def _paren_args(text: str, name: str) -> str | None:
    if text.startswith(name + "(") and text.endswith(")"):
        return text[len(name) + 1:-1]
    return None


_SIMPLE_OUTPUTS = {"NORMAL", "FLOOD", "ALL", "LOCAL", "IN_PORT", "TABLE"}


_NAT_RANGE = re.compile(r"(?P<amin>\[[^\]]+\]|[^-:\[]+)(?:-(?P<amax>\[[^\]]+\]|[^-:\[]+))?"
                        r"(?::(?P<pmin>\d+)(?:-(?P<pmax>\d+))?)?")


def _parse_nat(text: str) -> Nat:
    if text == "nat":
        return Nat()
    args = _paren_args(text, "nat")
    if args is None:
        raise ValueError(f"bad nat: {text!r}")
    kind = None
    amin = amax = None
    pmin = pmax = None
    flags: list[str] = []
    for item in split_top(args):
        if item in ("src", "dst"):
            kind = item
        elif item.startswith(("src=", "dst=")):
            kind = item[:3]
            m = _NAT_RANGE.fullmatch(item[4:])
            if not m:
                raise ValueError(f"bad nat range: {item!r}")
            amin, amax = m.group("amin"), m.group("amax")
            pmin = int(m.group("pmin")) if m.group("pmin") else None
            pmax = int(m.group("pmax")) if m.group("pmax") else None
        elif item in ("persistent", "hash", "random"):
            flags.append(item)
        else:
            raise ValueError(f"bad nat argument: {item!r}")
    order = ("persistent", "hash", "random")
    return Nat(kind, amin, amax, pmin, pmax, tuple(f for f in order if f in flags))


def _parse_ct(args: str) -> Ct:
    commit = force = False
    table = None
    zone: int | Subfield | None = None
    nat = None
    exec_: tuple[Action, ...] = ()
    alg = None
    for item in split_top(args):
        if item == "commit":
            commit = True
        elif item == "force":
            force = True
        elif item.startswith("table="):
            table = parse_int(item[6:])
        elif item.startswith("zone="):
            zone = parse_subfield(item[5:]) if "[" in item else parse_int(item[5:])
        elif item == "nat" or item.startswith("nat("):
            nat = _parse_nat(item)
        elif item.startswith("exec(") and item.endswith(")"):
            exec_ = parse_actions(item[5:-1])
        elif item.startswith("alg="):
            alg = item[4:]
        elif item:
            raise ValueError(f"bad ct argument: {item!r}")
    return Ct(commit, force, table, zone, nat, exec_, alg)


def _parse_controller(args: str) -> Controller:
    kw: dict[str, str] = {}
    pause = False
    for item in split_top(args):
        if item == "pause":
            pause = True
            continue
        name, eq, value = item.partition("=")
        if not eq or name not in ("reason", "max_len", "id", "userdata", "meter_id"):
            if item.isdigit() and not kw:
                kw["max_len"] = item
                continue
            raise ValueError(f"bad controller argument: {item!r}")
        kw[name] = value
    return Controller(max_len=int(kw["max_len"]) if "max_len" in kw else None, reason=kw.get("reason"),
                      controller_id=int(kw["id"]) if "id" in kw else None, userdata=kw.get("userdata"),
                      pause=pause, meter_id=int(kw["meter_id"]) if "meter_id" in kw else None)


def _parse_one_text(text: str) -> Action:
    t = text.strip()
    name, colon, arg = t.partition(":")
    if t.upper() in _SIMPLE_OUTPUTS:
        return Output(ReservedPort[t.upper()])
    if t.upper() == "CONTROLLER":
        return Output(ReservedPort.CONTROLLER)
    if colon and name.upper() == "CONTROLLER":
        return Output(ReservedPort.CONTROLLER, int(arg))
    if t.isdigit():
        return Output(int(t))
    if colon and name == "output":
        if arg.upper().startswith("CONTROLLER"):
            return _parse_one(arg)
        if "[" in arg:
            return GenericAction(t)
        return Output(parse_port(arg))
    if colon and name in ("mod_vlan_vid", "set_vlan_vid"):
        return SetVlanVid(parse_int(arg), push=name == "mod_vlan_vid")
    if colon and name in ("mod_vlan_pcp", "set_vlan_pcp"):
        return SetVlanPcp(parse_int(arg), push=name == "mod_vlan_pcp")
    if t in ("strip_vlan", "pop_vlan"):
        return StripVlan(pop_spelling=t == "pop_vlan")
    if colon and name == "push_vlan":
        return PushVlan(parse_int(arg))
    if colon and name in ("set_tunnel", "set_tunnel64"):
        return SetTunnel(parse_int(arg), wide=name == "set_tunnel64")
    if colon and name == "goto_table":
        return GotoTable(parse_int(arg))
    if colon and name == "resubmit":
        return Resubmit(port=parse_port(arg))
    args = _paren_args(t, "resubmit")
    if args is not None:
        parts = args.split(",")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "ct"):
            raise ValueError(f"resubmit needs (PORT,TABLE): {t!r}")
        port = parse_port(parts[0]) if parts[0] else None
        if port == ReservedPort.IN_PORT:
            port = None
        table = parse_int(parts[1]) if parts[1] else None
        return Resubmit(port=port, table=table, ct=len(parts) == 3)
    if colon and name == "load":
        value, arrow, dst = arg.partition("->")
        if not arrow:
            raise ValueError(f"load needs VALUE->FIELD: {t!r}")
        return Load(parse_int(value), parse_subfield(dst))
    if colon and name == "move":
        src, arrow, dst = arg.partition("->")
        if not arrow:
            raise ValueError(f"move needs SRC->DST: {t!r}")
        return Move(parse_subfield(src), parse_subfield(dst))
    if colon and name == "set_field":
        value, arrow, fieldname = arg.rpartition("->")
        if not arrow or field_info(fieldname) is None:
            raise ValueError(f"set_field needs VALUE->FIELD: {t!r}")
        v, slash, m = value.partition("/")
        value_to_int(v)
        return SetField(fieldname, v, m if slash else None)
    if colon and name in ("mod_dl_src", "mod_dl_dst"):
        return SetEthAddr(name[4:], Mac.parse(arg))
    if colon and name in ("mod_nw_src", "mod_nw_dst"):
        return SetIPv4Addr(name[4:], ipaddress.IPv4Address(arg))
    if colon and name in ("mod_tp_src", "mod_tp_dst"):
        return SetL4Port(name[4:], parse_int(arg))
    if colon and name == "note":
        if not re.fullmatch(r"([0-9a-fA-F]{2}\.?)*", arg):
            raise ValueError(f"note needs hex bytes: {t!r}")
        return Note(bytes.fromhex(arg.replace(".", "")))
    args = _paren_args(t, "controller")
    if args is not None:
        return _parse_controller(args)
    args = _paren_args(t, "ct")
    if args is not None:
        return _parse_ct(args)
    if t == "ct":
        return Ct()
    args = _paren_args(t, "learn")
    if args is not None:
        return parse_learn(args)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*([:(].*)?", t, re.S):
        raise ValueError(f"not an action: {t!r}")
    return GenericAction(t)


#: one action's parse depends on its text alone (actions are immutable): the same items recur in
#: every flow of a bridge and on every host, so each is parsed once
_parse_one = functools.lru_cache(maxsize=1 << 16)(_parse_one_text)


def parse_actions(text: str) -> tuple[Action, ...]:
    """Parse the text after ``actions=``. ``drop`` (or nothing) is the empty tuple. Raises ValueError."""
    t = text.strip()
    if t in ("drop", ""):
        return ()
    out: list[Action] = []
    for item in split_top(t):
        if not item.strip():
            raise ValueError(f"empty action in {text!r}")
        if item.strip() == "drop":
            continue
        out.append(_parse_one(item))
    return tuple(out)


# ---------------------------------------------------------------------------------------------------
# Printing


def _hex0(value: int) -> str:
    return f"{value:#x}" if value else "0"


def _fmt_nat(n: Nat) -> str:
    if n.kind is None:
        return "nat"
    s = n.kind
    extra: list[str] = []
    if n.addr_min is not None:
        s += f"={n.addr_min}"
        if n.addr_max and n.addr_max != n.addr_min:
            s += f"-{n.addr_max}"
        if n.port_min:
            s += f":{n.port_min}"
            if n.port_max and n.port_max != n.port_min:
                s += f"-{n.port_max}"
        extra = list(n.flags)
    return f"nat({','.join([s, *extra])})"


def _fmt_ct(a: Ct) -> str:
    parts: list[str] = []
    if a.commit:
        parts.append("commit")
    if a.force:
        parts.append("force")
    if a.table is not None:
        parts.append(f"table={a.table}")
    if isinstance(a.zone, Subfield):
        parts.append(f"zone={format_subfield(a.zone)}")
    elif a.zone:
        parts.append(f"zone={a.zone}")
    if a.nat is not None:
        parts.append(_fmt_nat(a.nat))
    if a.exec_:
        parts.append(f"exec({format_actions(a.exec_)})")
    if a.alg is not None:
        parts.append(f"alg={a.alg}")
    return f"ct({','.join(parts)})"


def _fmt_controller(a: Controller) -> str:
    if (a.reason in (None, "action") and not a.controller_id and a.userdata is None and not a.pause
            and a.meter_id is None):
        return f"CONTROLLER:{65535 if a.max_len is None else a.max_len}"
    parts: list[str] = []
    if a.reason not in (None, "action"):
        parts.append(f"reason={a.reason}")
    if a.max_len is not None and a.max_len != 65535:
        parts.append(f"max_len={a.max_len}")
    if a.controller_id:
        parts.append(f"id={a.controller_id}")
    if a.userdata is not None:
        parts.append(f"userdata={a.userdata}")
    if a.pause:
        parts.append("pause")
    if a.meter_id is not None:
        parts.append(f"meter_id={a.meter_id}")
    return f"controller({','.join(parts)})"


def _fmt_set_field(a: SetField) -> str:
    info = field_info(a.field)
    name = info.name if info else a.field
    value = a.value
    if info is not None and info.kind in (Kind.MAC, Kind.DEC, Kind.HEX, Kind.IPV4, Kind.IPV6):
        with contextlib.suppress(ValueError):
            value = format_value(info, value_to_int(a.value))
    if a.mask is not None:
        value += f"/{a.mask}"
    return f"set_field:{value}->{name}"


def format_action(a: Action) -> str:
    """One action as OVS prints it."""
    if isinstance(a, Output):
        if a.port == ReservedPort.CONTROLLER:
            return f"CONTROLLER:{65535 if a.max_len is None else a.max_len}"
        if isinstance(a.port, ReservedPort):
            return str(a.port.value)
        return f"output:{format_port(a.port)}"
    if isinstance(a, SetVlanVid):
        return f"{'mod' if a.push else 'set'}_vlan_vid:{a.vid}"
    if isinstance(a, SetVlanPcp):
        return f"{'mod' if a.push else 'set'}_vlan_pcp:{a.pcp}"
    if isinstance(a, StripVlan):
        return "pop_vlan" if a.pop_spelling else "strip_vlan"
    if isinstance(a, PushVlan):
        return f"push_vlan:{a.ethertype:#x}"
    if isinstance(a, SetTunnel):
        wide = a.wide or a.tun_id > 0xFFFFFFFF
        return f"set_tunnel{'64' if wide else ''}:{_hex0(a.tun_id)}"
    if isinstance(a, Resubmit):
        if a.port is not None and a.table is None and not a.ct:
            return f"resubmit:{format_port(a.port)}"
        port = format_port(a.port) if a.port is not None else ""
        table = str(a.table) if a.table is not None else ""
        return f"resubmit({port},{table}{',ct' if a.ct else ''})"
    if isinstance(a, GotoTable):
        return f"goto_table:{a.table}"
    if isinstance(a, Load):
        return f"load:{_hex0(a.value)}->{format_subfield(a.dst)}"
    if isinstance(a, Move):
        return f"move:{format_subfield(a.src)}->{format_subfield(a.dst)}"
    if isinstance(a, SetField):
        return _fmt_set_field(a)
    if isinstance(a, SetEthAddr):
        return f"mod_{a.field}:{a.mac}"
    if isinstance(a, SetIPv4Addr):
        return f"mod_{a.field}:{a.address}"
    if isinstance(a, SetL4Port):
        return f"mod_{a.field}:{a.port}"
    if isinstance(a, Controller):
        return _fmt_controller(a)
    if isinstance(a, Ct):
        return _fmt_ct(a)
    if isinstance(a, Note):
        return "note:" + ".".join(f"{b:02x}" for b in a.data)
    if isinstance(a, Learn):
        return format_learn(a)
    return a.text


#: formatting is pure too, and actions are hashable: each distinct action is formatted once
_format_action_cached = functools.lru_cache(maxsize=1 << 16)(format_action)


def format_actions(actions: Sequence[Action]) -> str:
    """The action list as OVS prints it; the empty list is ``drop``."""
    if not actions:
        return "drop"
    return ",".join([_format_action_cached(a) for a in actions])
