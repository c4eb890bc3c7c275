"""An Open vSwitch bridge interpreter: OpenFlow tables, actions, learn and NORMAL, as OVS runs them.

:class:`OvsBridgeSim` holds one bridge (its OVSDB rows, its flows, its OpenFlow port numbers) and the
state OVS keeps at run time: the NORMAL MAC table and the flows ``learn`` installed. ``process``
moves one frame that arrived on a port through the pipeline and returns the copies sent out, with
the trace steps explaining each decision.

>>> from neutrino.host.openflow import parse_dump_flows
>>> from neutrino.host.ovsdb import Bridge, Interface, Port, Interface, Port
>>> from neutrino.sim.packets import arp_request, ip, mac, push_vlan
>>> br = Bridge("br-tun", ports=(Port("patch-int", (Interface("patch-int", "patch"),)),
...                              Port("gre-2", (Interface("gre-2", "gre"),))))
>>> sim = OvsBridgeSim(br, parse_dump_flows("priority=4,in_port=1,dl_vlan=1 actions=set_tunnel:0x2,NORMAL"), None)
>>> frame = push_vlan(arp_request(mac("fa:16:3e:00:00:01"), ip("10.0.0.3"), ip("10.0.0.4")), 1)
>>> [(e.port, e.meta.tun_id) for e in sim.process("patch-int", frame).outputs]
[('gre-2', 2)]

Semantics follow ``ofproto-dpif-xlate.c``: the highest-priority matching flow wins (ties: first in
the dump); a table miss drops, as OpenFlow 1.3+ bridges (Neutron's) do; actions change the packet
in place and ``output`` sends a copy as it is then; ``resubmit``/``goto_table`` recurse with the
current packet, up to 64 deep; output to the input port needs ``IN_PORT``. Conntrack is not modelled:
``ct(...)`` passes the packet through (``ct(table=N)`` continues in N as ``+trk+new``, at once
rather than after the flow's remaining actions). A bridge with
no flows and ``fail_mode`` other than ``secure`` behaves as NORMAL (standalone). Timeouts never fire
(there is no clock). Outputs to tunnel ports carry the tunnel metadata (``tun_id``, the tunnel
addresses from the packet or the interface options); other outputs carry none, as OVS clears it
crossing a patch port.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from neutrino.errors import InvalidInput
from neutrino.host.ofctl_show import OfctlShow
from neutrino.host.openflow import (
    DEFAULT_PRIORITY,
    Action,
    Controller,
    Ct,
    CtState,
    DlVlan,
    DlVlanPcp,
    EthMatch,
    FlagsMatch,
    Flow,
    FlowDump,
    GenericAction,
    GotoTable,
    InPort,
    IntMatch,
    IPv4Match,
    IPv6Match,
    Learn,
    LearnLoad,
    LearnMatch,
    LearnOutput,
    Load,
    MatchField,
    Move,
    Note,
    Output,
    PortName,
    ProtoMatch,
    PushVlan,
    ReservedPort,
    Resubmit,
    SetEthAddr,
    SetField,
    SetIPv4Addr,
    SetL4Port,
    SetTunnel,
    SetVlanPcp,
    SetVlanVid,
    StripVlan,
    Subfield,
    VlanTci,
    format_add_flow,
)
from neutrino.host.openflow_actions import format_action
from neutrino.host.openflow_fields import FieldInfo, Kind, Mac, field_info, value_to_int
from neutrino.host.ovsdb import Bridge, Interface, Port
from neutrino.sim.ovs_normal import OFPP_LOCAL, TUNNEL_TYPES, MacTable, PortKind, SimPort, normal
from neutrino.sim.packets import (
    ARP,
    ICMP,
    TCP,
    UDP,
    Dot1Q,
    Ethernet,
    IPv4,
    Raw,
    network_layer,
    pop_vlan,
    push_vlan,
)
from neutrino.sim.trace import Step, StepKind

__all__ = ["MAX_RESUBMIT_DEPTH", "Emit", "Meta", "OvsBridgeSim", "Result"]

MAX_RESUBMIT_DEPTH = 64
"""OVS's limit on nested resubmits (``MAX_DEPTH`` in ofproto-dpif-xlate.c); past it the packet drops."""
_OXM_LOCAL = 0xFFFFFFFE
_CT_TRK, _CT_NEW, _CT_EST, _CT_REL, _CT_INV = 0x20, 0x01, 0x02, 0x04, 0x10


@dataclass(frozen=True, slots=True)
class Meta:
    """The packet metadata OpenFlow sees besides the frame: tunnel fields, registers (``reg0``… in
    order; missing ones are 0), ``metadata``, ``pkt_mark`` and the conntrack fields."""

    tun_id: int | None = None
    tun_src: IPv4Address | None = None
    tun_dst: IPv4Address | None = None
    registers: tuple[int, ...] = ()
    metadata: int = 0
    pkt_mark: int = 0
    ct_state: int = 0
    ct_zone: int = 0
    ct_mark: int = 0


@dataclass(frozen=True, slots=True)
class Emit:
    """A copy of the packet sent out of ``port`` (a port name of the bridge)."""

    port: str
    frame: Ethernet
    meta: Meta = Meta()


@dataclass(frozen=True, slots=True)
class Result:
    outputs: tuple[Emit, ...]
    steps: tuple[Step, ...]

    @property
    def dropped(self) -> bool:
        return not self.outputs

    @property
    def ports(self) -> tuple[str, ...]:
        return tuple(e.port for e in self.outputs)


# --- the packet being processed --------------------------------------------------------------------


class _Ctx:
    """The mutable view of the packet during one translation (OVS's ``struct flow``)."""

    __slots__ = ("frame", "in_port", "tun_id", "tun_src", "tun_dst", "regs", "metadata", "pkt_mark",
                 "ct_state", "ct_zone", "ct_mark")

    def __init__(self, frame: Ethernet, in_port: int, meta: Meta) -> None:
        self.frame = frame
        self.in_port = in_port
        self.tun_id = meta.tun_id or 0
        self.tun_src = int(meta.tun_src) if meta.tun_src is not None else 0
        self.tun_dst = int(meta.tun_dst) if meta.tun_dst is not None else 0
        self.regs = [*meta.registers[:16], *([0] * (16 - min(16, len(meta.registers))))]
        self.metadata = meta.metadata
        self.pkt_mark = meta.pkt_mark
        self.ct_state = meta.ct_state
        self.ct_zone = meta.ct_zone
        self.ct_mark = meta.ct_mark


def _tci(frame: Ethernet) -> int:
    p = frame.payload
    if isinstance(p, Dot1Q):
        return ((p.pcp & 7) << 13) | 0x1000 | (p.vid & 0xFFF)
    return 0


def _dl_type(frame: Ethernet) -> int:
    t, p = frame.type, frame.payload
    while isinstance(p, Dot1Q):
        t, p = p.type, p.payload
    return t


def _replace_l3(frame: Ethernet, new: ARP | IPv4) -> Ethernet:
    def walk(p: Dot1Q | ARP | IPv4 | Raw | None) -> Dot1Q | ARP | IPv4:
        if isinstance(p, Dot1Q):
            return dataclasses.replace(p, payload=walk(p.payload))
        return new

    return dataclasses.replace(frame, payload=walk(frame.payload))


def _set_tci(frame: Ethernet, tci: int) -> Ethernet:
    """Write the 802.1Q TCI the OVS way: the CFI bit (0x1000) means "tagged"; without it the tag goes."""
    tag = frame.payload if isinstance(frame.payload, Dot1Q) else None
    if not tci & 0x1000:
        return pop_vlan(frame) if tag is not None else frame
    vid, pcp = tci & 0xFFF, (tci >> 13) & 7
    if tag is None:
        return push_vlan(frame, vid, pcp=pcp)
    return dataclasses.replace(frame, payload=dataclasses.replace(tag, vid=vid, pcp=pcp))


def _ip(ctx: _Ctx) -> IPv4 | None:
    p = network_layer(ctx.frame)
    return p if isinstance(p, IPv4) else None


def _arp(ctx: _Ctx) -> ARP | None:
    p = network_layer(ctx.frame)
    return p if isinstance(p, ARP) else None


def _get_tp(ctx: _Ctx, dst: bool) -> int | None:
    ip4 = _ip(ctx)
    if ip4 is None or ip4.frag:
        return None
    l4 = ip4.payload
    if isinstance(l4, TCP | UDP):
        return l4.dport if dst else l4.sport
    if isinstance(l4, ICMP):
        return l4.code if dst else l4.type
    return None


def _get_l3(ctx: _Ctx, name: str) -> int | None:
    l3 = network_layer(ctx.frame)
    if isinstance(l3, IPv4):
        value = {"ip_src": int(l3.src), "ip_dst": int(l3.dst), "nw_proto": l3.proto, "nw_tos": l3.tos & 0xFC,
                 "ip_dscp": l3.tos >> 2, "nw_ecn": l3.tos & 3, "nw_ttl": l3.ttl}.get(name)
        if value is not None:
            return value
        if name in ("icmp_type", "icmp_code"):
            return _get_tp(ctx, name == "icmp_code") if isinstance(l3.payload, ICMP) else None
        if name.endswith("_src") or name.endswith("_dst"):
            proto = name.split("_")[0]
            l4 = l3.payload
            if (proto == "tcp" and isinstance(l4, TCP)) or (proto == "udp" and isinstance(l4, UDP)):
                return _get_tp(ctx, name.endswith("_dst"))
            if proto == "tcp" and isinstance(l4, UDP | ICMP):
                return _get_tp(ctx, name.endswith("_dst"))  # tp_src/tp_dst: whatever L4 header there is
        return None
    if isinstance(l3, ARP):
        return {"ip_src": int(l3.psrc), "ip_dst": int(l3.pdst), "arp_spa": int(l3.psrc), "arp_tpa": int(l3.pdst),
                "nw_proto": l3.op & 0xFF, "arp_op": l3.op, "arp_sha": l3.hwsrc.value,
                "arp_tha": l3.hwdst.value}.get(name)
    return None


_META_FIELDS = {"tun_id", "tun_src", "tun_dst", "metadata", "pkt_mark", "ct_state", "ct_zone", "ct_mark"}


def _get(ctx: _Ctx, name: str) -> int | None:
    """Field ``name`` (OVS's canonical name, :attr:`FieldInfo.name`) of the packet; None when absent."""
    f = ctx.frame
    if name == "eth_src":
        return f.src.value
    if name == "eth_dst":
        return f.dst.value
    if name == "eth_type":
        return _dl_type(f)
    if name == "vlan_tci":
        return _tci(f)
    if name == "vlan_vid":
        return _tci(f) & 0x1FFF
    if name == "dl_vlan":
        return _tci(f) & 0xFFF
    if name in ("vlan_pcp", "dl_vlan_pcp"):
        return _tci(f) >> 13
    if name in _META_FIELDS:
        return int(getattr(ctx, name))
    if name == "in_port":
        return ctx.in_port
    if name == "in_port_oxm":
        return _OXM_LOCAL if ctx.in_port == OFPP_LOCAL else ctx.in_port
    if name.startswith("reg"):
        return ctx.regs[int(name[3:])]
    if name.startswith("xreg"):
        i = int(name[4:]) * 2
        return (ctx.regs[i] << 32) | ctx.regs[i + 1]
    if name.startswith("xxreg"):
        i = int(name[5:]) * 4
        return (ctx.regs[i] << 96) | (ctx.regs[i + 1] << 64) | (ctx.regs[i + 2] << 32) | ctx.regs[i + 3]
    return _get_l3(ctx, name)


def _set_l3(ctx: _Ctx, name: str, v: int) -> bool:
    l3 = network_layer(ctx.frame)
    new: ARP | IPv4 | None = None
    if isinstance(l3, ARP):
        arp_fields: dict[str, Callable[[], ARP]] = {
            "arp_op": lambda: dataclasses.replace(l3, op=v),
            "arp_spa": lambda: dataclasses.replace(l3, psrc=IPv4Address(v)),
            "ip_src": lambda: dataclasses.replace(l3, psrc=IPv4Address(v)),
            "arp_tpa": lambda: dataclasses.replace(l3, pdst=IPv4Address(v)),
            "ip_dst": lambda: dataclasses.replace(l3, pdst=IPv4Address(v)),
            "arp_sha": lambda: dataclasses.replace(l3, hwsrc=Mac(v)),
            "arp_tha": lambda: dataclasses.replace(l3, hwdst=Mac(v)),
        }
        make = arp_fields.get(name)
        new = make() if make is not None else None
    elif isinstance(l3, IPv4):
        ip_fields: dict[str, Callable[[], IPv4]] = {
            "ip_src": lambda: dataclasses.replace(l3, src=IPv4Address(v)),
            "ip_dst": lambda: dataclasses.replace(l3, dst=IPv4Address(v)),
            "nw_tos": lambda: dataclasses.replace(l3, tos=(v & 0xFC) | (l3.tos & 3)),
            "ip_dscp": lambda: dataclasses.replace(l3, tos=((v & 0x3F) << 2) | (l3.tos & 3)),
            "nw_ecn": lambda: dataclasses.replace(l3, tos=(l3.tos & 0xFC) | (v & 3)),
            "nw_ttl": lambda: dataclasses.replace(l3, ttl=v & 0xFF),
        }
        make4 = ip_fields.get(name)
        if make4 is not None:
            new = make4()
        else:
            l4 = l3.payload
            dst = name.endswith("_dst") or name == "icmp_code"
            if isinstance(l4, TCP | UDP) and name in ("tcp_src", "tcp_dst", "udp_src", "udp_dst"):
                l4n: TCP | UDP | ICMP = (dataclasses.replace(l4, dport=v) if dst
                                         else dataclasses.replace(l4, sport=v))
                new = dataclasses.replace(l3, payload=l4n)
            elif isinstance(l4, ICMP) and name in ("icmp_type", "icmp_code", "tcp_src", "tcp_dst"):
                l4n = dataclasses.replace(l4, code=v) if dst else dataclasses.replace(l4, type=v)
                new = dataclasses.replace(l3, payload=l4n)
    if new is None:
        return False
    ctx.frame = _replace_l3(ctx.frame, new)
    return True


def _set(ctx: _Ctx, name: str, v: int) -> bool:
    """Write field ``name``; False when the packet does not have it."""
    f = ctx.frame
    if name == "eth_src":
        ctx.frame = dataclasses.replace(f, src=Mac(v))
    elif name == "eth_dst":
        ctx.frame = dataclasses.replace(f, dst=Mac(v))
    elif name == "vlan_tci":
        ctx.frame = _set_tci(f, v)
    elif name in ("vlan_vid", "dl_vlan"):
        ctx.frame = _set_tci(f, (_tci(f) & 0xE000) | 0x1000 | (v & 0xFFF))
    elif name in ("vlan_pcp", "dl_vlan_pcp"):
        ctx.frame = _set_tci(f, (_tci(f) & 0x1FFF) | 0x1000 | ((v & 7) << 13))
    elif name in _META_FIELDS:
        setattr(ctx, name, v)
    elif name in ("in_port", "in_port_oxm"):
        ctx.in_port = OFPP_LOCAL if v == _OXM_LOCAL else v
    elif name.startswith("reg"):
        ctx.regs[int(name[3:])] = v & 0xFFFFFFFF
    elif name.startswith("xreg"):
        i = int(name[4:]) * 2
        ctx.regs[i], ctx.regs[i + 1] = (v >> 32) & 0xFFFFFFFF, v & 0xFFFFFFFF
    elif name.startswith("xxreg"):
        i = int(name[5:]) * 4
        for k in range(4):
            ctx.regs[i + k] = (v >> (96 - 32 * k)) & 0xFFFFFFFF
    else:
        return _set_l3(ctx, name, v)
    return True


def _bits(sf: Subfield) -> tuple[FieldInfo, int, int]:
    info = sf.info
    bits = sf.bits()
    if info is None or bits is None:
        raise InvalidInput(f"unknown field {sf.field!r}")
    return info, bits[0], bits[1]


def _read_sub(ctx: _Ctx, sf: Subfield) -> int | None:
    info, off, n = _bits(sf)
    v = _get(ctx, info.name)
    return None if v is None else (v >> off) & ((1 << n) - 1)


def _write_sub(ctx: _Ctx, sf: Subfield, value: int) -> bool:
    info, off, n = _bits(sf)
    cur = _get(ctx, info.name)
    if cur is None:
        return False
    m = ((1 << n) - 1) << off
    return _set(ctx, info.name, (cur & ~m) | ((value << off) & m))


# --- matching --------------------------------------------------------------------------------------

Matcher = Callable[[_Ctx], bool]


def _masked(name: str, value: int, mask: int | None) -> Matcher:
    if mask is None:
        def exact(ctx: _Ctx) -> bool:
            return _get(ctx, name) == value
        return exact
    want = value & mask

    def masked(ctx: _Ctx) -> bool:
        v = _get(ctx, name)
        return v is not None and v & mask == want
    return masked


def _frag_matcher(text: str) -> Matcher:
    def is_frag(ctx: _Ctx) -> tuple[bool, bool] | None:
        ip4 = _ip(ctx)
        if ip4 is None:
            return None
        return (ip4.mf or ip4.frag > 0), ip4.frag > 0

    def m(ctx: _Ctx) -> bool:
        state = is_frag(ctx)
        if state is None:
            return False
        frag, later = state
        return {"no": not frag, "yes": frag, "first": frag and not later, "later": later,
                "not_later": not later}.get(text, False)
    return m


def _tcp_flags_matcher(text: str) -> Matcher:
    names = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20, "ece": 0x40,
             "cwr": 0x80, "ns": 0x100}
    value = mask = 0
    if text[:1] in "+-":
        rest = text
        while rest:
            sign, rest = rest[0], rest[1:]
            end = min([i for i in (rest.find("+"), rest.find("-")) if i >= 0] or [len(rest)])
            bit = names[rest[:end]]
            rest = rest[end:]
            mask |= bit
            value |= bit if sign == "+" else 0
    else:
        v, _, m = text.partition("/")
        value, mask = int(v, 0), int(m, 0) if m else 0xFFF

    def match(ctx: _Ctx) -> bool:
        ip4 = _ip(ctx)
        return ip4 is not None and isinstance(ip4.payload, TCP) and int(ip4.payload.flags) & mask == value & mask
    return match


def _compile_match(f: MatchField, port_number: Callable[[PortName | ReservedPort | int], int | None]) -> Matcher:
    if isinstance(f, ProtoMatch):
        dl_type, nw_proto = f.proto.dl_type, f.proto.nw_proto

        def proto(ctx: _Ctx) -> bool:
            if _dl_type(ctx.frame) != dl_type:
                return False
            return nw_proto is None or _get(ctx, "nw_proto") == nw_proto
        return proto
    if isinstance(f, InPort):
        number = port_number(f.port)
        return lambda ctx: ctx.in_port == number
    if isinstance(f, EthMatch | IPv4Match):
        info = field_info(f.field)
        name = info.name if info else f.field
        value = f.mac.value if isinstance(f, EthMatch) else int(f.address)
        mask = None if f.mask is None else (f.mask.value if isinstance(f.mask, Mac) else int(f.mask))
        return _masked(name, value, mask)
    if isinstance(f, IPv6Match):
        return lambda ctx: False  # the simulator's packets carry no IPv6
    if isinstance(f, DlVlan):
        if f.vid == 0xFFFF:
            return lambda ctx: _tci(ctx.frame) == 0
        return _masked("vlan_tci", 0x1000 | (f.vid & 0xFFF), 0x1FFF)
    if isinstance(f, DlVlanPcp):
        return _masked("vlan_tci", 0x1000 | ((f.pcp & 7) << 13), 0xF000)
    if isinstance(f, VlanTci):
        if f.field == "vlan_tci":
            return _masked("vlan_tci", f.value, 0xFFFF if f.mask is None else f.mask)
        if f.field == "vlan_vid":
            return _masked("vlan_tci", f.value, 0x1FFF if f.mask is None else f.mask & 0x1FFF)
        return _masked("vlan_tci", 0x1000 | ((f.value & 7) << 13), 0xF000)
    if isinstance(f, IntMatch):
        info = field_info(f.field)
        name = info.name if info else f.field
        return _masked(name, f.value, f.mask)
    if isinstance(f, CtState):
        value, mask = f.value, f.mask
        return lambda ctx: ctx.ct_state & mask == value & mask
    if isinstance(f, FlagsMatch):
        if f.field == "nw_frag":
            return _frag_matcher(f.text)
        return _tcp_flags_matcher(f.text)
    raise InvalidInput(f"unsupported match field {f!r}")


@dataclass(frozen=True, slots=True)
class _Compiled:
    flow: Flow
    matchers: tuple[Matcher, ...]
    text: str
    learned: bool = False

    def matches(self, ctx: _Ctx) -> bool:
        return all(m(ctx) for m in self.matchers)


# --- learn -----------------------------------------------------------------------------------------


def _learned_match(info: FieldInfo, value: int, mask: int) -> MatchField:
    full = (1 << info.n_bits) - 1
    m = None if mask == full else mask
    if info.name in ("vlan_tci", "vlan_vid"):
        return VlanTci(value, m, info.name)
    if info.kind is Kind.MAC:
        return EthMatch(info.match_name, Mac(value), None if m is None else Mac(m))
    if info.kind is Kind.IPV4:
        return IPv4Match(info.match_name, IPv4Address(value), None if m is None else IPv4Address(m))
    if info.kind is Kind.PORT:
        return InPort(OFPP_LOCAL if value == _OXM_LOCAL else value)
    return IntMatch(info.match_name, value, m)


def _learn_flow(ctx: _Ctx, learn: Learn) -> Flow:
    """The flow ``learn`` installs for the current packet (``lib/learn.c``'s ``learn_execute``)."""
    fields: dict[str, tuple[FieldInfo, int, int]] = {}
    actions: list[Action] = []
    for spec in learn.specs:
        if isinstance(spec, LearnMatch):
            info, off, n = _bits(spec.dst)
            if spec.value is not None:
                v = value_to_int(spec.value)
            else:
                v = _read_sub(ctx, spec.src if spec.src is not None else spec.dst) or 0
            m = ((1 << n) - 1) << off
            _, old_v, old_m = fields.get(info.name, (info, 0, 0))
            fields[info.name] = (info, (old_v & ~m) | ((v << off) & m), old_m | m)
        elif isinstance(spec, LearnLoad):
            lv = spec.value if spec.value is not None else (
                _read_sub(ctx, spec.src) if spec.src is not None else 0)
            actions.append(Load(lv or 0, spec.dst))
        elif isinstance(spec, LearnOutput):
            port = _read_sub(ctx, spec.src) or 0
            actions.append(Output(ReservedPort.LOCAL if port in (OFPP_LOCAL, _OXM_LOCAL) else port))
    match = tuple(_learned_match(info, v, m) for info, v, m in fields.values())
    return Flow(match=match, actions=tuple(actions), table=learn.table,
                priority=DEFAULT_PRIORITY if learn.priority is None else learn.priority,
                cookie=learn.cookie or 0, idle_timeout=learn.idle_timeout or 0,
                hard_timeout=learn.hard_timeout or 0)


# --- the interpreter -------------------------------------------------------------------------------


class _Loop(Exception):
    pass


class _Run:
    """What one ``process`` call accumulates."""

    __slots__ = ("outputs", "steps", "miss", "drop_flow")

    def __init__(self) -> None:
        self.outputs: list[Emit] = []
        self.steps: list[Step] = []
        self.miss: int | None = None
        self.drop_flow: str | None = None


def _sim_ports(bridge: Bridge, show: OfctlShow | None) -> tuple[SimPort, ...]:
    rows: dict[str, tuple[Port | None, Interface | None]] = {}
    for row in bridge.ports:
        if not row.interfaces:
            rows[row.name] = (row, None)
        for one in row.interfaces:
            rows[one.name] = (row, one)
    numbered: list[tuple[str, int]] = []
    if show is not None:
        numbered = [(p.name, OFPP_LOCAL if isinstance(p.number, ReservedPort) else p.number) for p in show.ports]
    else:
        n = 0
        for name in rows:
            if name == bridge.name:
                numbered.append((name, OFPP_LOCAL))
            else:
                n += 1
                numbered.append((name, n))
    out: list[SimPort] = []
    for name, number in numbered:
        port, iface = rows.get(name, (None, None))
        itype = iface.type if iface is not None else None
        kind = (PortKind.PATCH if itype == "patch" else PortKind.TUNNEL if itype in TUNNEL_TYPES
                else PortKind.INTERNAL if itype == "internal" or number == OFPP_LOCAL else PortKind.SYSTEM)
        out.append(SimPort(name, number, kind, tag=port.tag if port else None,
                           trunks=port.trunks if port else (), vlan_mode=port.vlan_mode if port else None,
                           options=iface.options if iface is not None else ()))
    return tuple(sorted(out, key=lambda p: p.number))


def _describe_tci(before: Ethernet, after: Ethernet) -> str:
    b, a = _tci(before), _tci(after)
    if b == a:
        return "VLAN unchanged"
    if not a & 0x1000:
        return f"stripped VLAN {b & 0xFFF}"
    if not b & 0x1000:
        return f"pushed VLAN {a & 0xFFF}"
    return f"VLAN {b & 0xFFF} -> {a & 0xFFF}"


class OvsBridgeSim:
    """One Open vSwitch bridge, interpreted. ``ports`` (``ovs-ofctl show``) gives the OpenFlow port
    numbers; without it the bridge's ports are numbered from 1 in the order the Bridge lists them,
    the bridge's own port being ``LOCAL``."""

    def __init__(self, bridge: Bridge, flows: FlowDump | None, ports: OfctlShow | None) -> None:
        self.bridge = bridge
        self.ports = _sim_ports(bridge, ports)
        self._by_name = {p.name: p for p in self.ports}
        self._by_number = {p.number: p for p in self.ports}
        static = flows.flows if flows is not None else ()
        self._static: dict[int, list[_Compiled]] = {}
        for f in static:
            self._static.setdefault(f.table, []).append(self._compile(f))
        for lst in self._static.values():
            lst.sort(key=lambda c: -c.flow.priority)
        self._standalone = not static and bridge.fail_mode != "secure"
        self._fdb = MacTable()
        self._learned: dict[tuple[int, int, frozenset[MatchField]], Flow] = {}
        self._tables: dict[int, list[_Compiled]] = {}
        self.reset()

    # -- state --------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget learned MACs and learned flows."""
        self._fdb.clear()
        self._learned.clear()
        self._tables = {t: list(lst) for t, lst in self._static.items()}

    @property
    def learned_flows(self) -> tuple[Flow, ...]:
        """The flows ``learn`` installed, in learning order (a re-learned flow keeps its place)."""
        return tuple(self._learned.values())

    @property
    def mac_table(self) -> tuple[tuple[int, Mac, str], ...]:
        """NORMAL's learned ``(vlan, mac, port)`` entries."""
        return self._fdb.entries()

    def flows(self, table: int) -> tuple[Flow, ...]:
        """The live flows of ``table`` (learned ones included) in lookup order."""
        return tuple(c.flow for c in self._tables.get(table, ()))

    def port_number(self, name: str) -> int:
        """The OpenFlow number of port ``name`` (``LOCAL`` is 0xfffe)."""
        port = self._by_name.get(name)
        if port is None:
            raise InvalidInput(f"bridge {self.bridge.name} has no port {name!r}")
        return port.number

    def _number(self, port: PortName | ReservedPort | int) -> int | None:
        if isinstance(port, int):
            return port
        if isinstance(port, PortName):
            p = self._by_name.get(port.name)
            return p.number if p is not None else None
        return OFPP_LOCAL if port is ReservedPort.LOCAL else None

    def _compile(self, flow: Flow, learned: bool = False) -> _Compiled:
        return _Compiled(flow, tuple(_compile_match(m, self._number) for m in flow.match),
                         format_add_flow(flow.without_stats()), learned)

    def _install(self, flow: Flow) -> None:
        key = (flow.table, flow.priority, frozenset(flow.match))
        self._learned[key] = flow
        table = [c for c in self._tables.get(flow.table, [])
                 if not (c.flow.priority == flow.priority and frozenset(c.flow.match) == key[2])]
        table.append(self._compile(flow, learned=True))
        table.sort(key=lambda c: -c.flow.priority)
        self._tables[flow.table] = table

    # -- processing ---------------------------------------------------------------------------------

    def process(self, in_port: str, frame: Ethernet, meta: Meta | None = None) -> Result:
        """Run ``frame``, arrived on port ``in_port`` with ``meta``, through the bridge."""
        port = self._by_name.get(in_port)
        if port is None:
            raise InvalidInput(f"bridge {self.bridge.name} has no port {in_port!r}")
        ctx = _Ctx(frame, port.number, meta or Meta())
        run = _Run()
        if self._standalone:
            self._normal(ctx, run, "no flows and fail_mode is not secure: standalone switching")
        else:
            try:
                self._table(ctx, 0, run, 0)
            except _Loop:
                run.outputs.clear()
                run.steps.append(Step(StepKind.DROP, "resubmit loop",
                                      f"loop: resubmit depth exceeded {MAX_RESUBMIT_DEPTH}; the packet is dropped"))
                return Result((), tuple(run.steps))
        if not run.outputs:
            if run.drop_flow is not None:
                run.steps.append(Step(StepKind.DROP, run.drop_flow, "explicit drop"))
            elif run.miss is not None:
                run.steps.append(Step(StepKind.DROP, f"table={run.miss}",
                                      f"no flow matched in table {run.miss} (a table miss drops, "
                                      "as on OpenFlow 1.3+ bridges)"))
            elif not any(s.kind is StepKind.DROP for s in run.steps):
                run.steps.append(Step(StepKind.DROP, "", "no output action"))
        return Result(tuple(run.outputs), tuple(run.steps))

    def _lookup(self, table: int, ctx: _Ctx) -> _Compiled | None:
        for c in self._tables.get(table, ()):
            if c.matches(ctx):
                return c
        return None

    def _table(self, ctx: _Ctx, table: int, run: _Run, depth: int) -> None:
        if depth > MAX_RESUBMIT_DEPTH:
            raise _Loop
        c = self._lookup(table, ctx)
        if c is None:
            run.miss = table
            return
        slot = len(run.steps)
        run.steps.append(Step(StepKind.FLOW, c.text))
        if not c.flow.actions:
            run.drop_flow = c.text
            run.steps[slot] = Step(StepKind.FLOW, c.text, ("learned flow: " if c.learned else "") + "drop")
            return
        effects = self._apply(c.flow.actions, ctx, run, depth, table)
        run.steps[slot] = Step(StepKind.FLOW, c.text, ("learned flow: " if c.learned else "") + "; ".join(effects))

    def _emit(self, ctx: _Ctx, port: SimPort, run: _Run, frame: Ethernet | None = None) -> None:
        meta = Meta()
        if port.kind is PortKind.TUNNEL:
            key = port.option("key") or port.option("out_key")
            tun_id = ctx.tun_id if key is None or key == "flow" else value_to_int(key)
            remote, local = port.option("remote_ip"), port.option("local_ip")
            tun_dst = IPv4Address(remote) if remote not in (None, "flow") else (
                IPv4Address(ctx.tun_dst) if ctx.tun_dst else None)
            tun_src = IPv4Address(local) if local not in (None, "flow") else None
            meta = Meta(tun_id=tun_id, tun_src=tun_src, tun_dst=tun_dst)
        run.outputs.append(Emit(port.name, ctx.frame if frame is None else frame, meta))

    def _output(self, ctx: _Ctx, port: int | PortName | ReservedPort, run: _Run) -> str:
        if isinstance(port, ReservedPort):
            if port is ReservedPort.IN_PORT:
                self._emit(ctx, self._by_number[ctx.in_port], run)
                return f"output to the input port {self._by_number[ctx.in_port].name}"
            if port is ReservedPort.LOCAL:
                local = self._by_number.get(OFPP_LOCAL)
                if local is None or local.number == ctx.in_port:
                    return "LOCAL: skipped (input port or no LOCAL port)"
                self._emit(ctx, local, run)
                return f"output to {local.name}"
            if port in (ReservedPort.FLOOD, ReservedPort.ALL):
                targets = [p for p in self.ports if p.number != ctx.in_port]
                for p in targets:
                    self._emit(ctx, p, run)
                return f"{port.value} to {', '.join(p.name for p in targets) or 'no port'}"
            if port is ReservedPort.NORMAL:
                self._normal(ctx, run, None)
                return "NORMAL"
            if port is ReservedPort.CONTROLLER:
                return self._controller(run)
            return f"output:{port.value} not modelled: ignored"
        number = self._number(port)
        target = self._by_number.get(number) if number is not None else None
        if target is None:
            return f"output to {port}: no such port, nothing sent"
        if target.number == ctx.in_port:
            return f"output to {target.name} skipped: it is the input port (OVS needs IN_PORT)"
        self._emit(ctx, target, run)
        return f"output to {target.name}"

    def _controller(self, run: _Run) -> str:
        run.steps.append(Step(StepKind.DROP, "CONTROLLER",
                              "sent to the controller: the simulator has none, so this copy is dropped"))
        return "to the controller (dropped)"

    def _normal(self, ctx: _Ctx, run: _Run, why: str | None) -> None:
        in_port = self._by_number.get(ctx.in_port)
        if in_port is None:
            run.steps.append(Step(StepKind.NORMAL, "NORMAL", "dropped: the input port is not a port of the bridge"))
            return
        copies, detail = normal(self.ports, in_port, ctx.frame, self._fdb)
        for port, frame in copies:
            self._emit(ctx, port, run, frame)
        run.steps.append(Step(StepKind.NORMAL, "NORMAL", f"{why}; {detail}" if why else detail))

    def _resubmit(self, ctx: _Ctx, table: int, port: int | PortName | ReservedPort | None, run: _Run,
                  depth: int) -> None:
        saved = ctx.in_port
        if port is not None:
            number = self._number(port)
            if number is not None:
                ctx.in_port = number
        try:
            self._table(ctx, table, run, depth + 1)
        finally:
            ctx.in_port = saved

    def _apply(self, actions: Sequence[Action], ctx: _Ctx, run: _Run, depth: int, table: int) -> list[str]:
        out: list[str] = []
        for a in actions:
            out.append(self._action(a, ctx, run, depth, table))
        return out

    def _action(self, a: Action, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
        if isinstance(a, Output):
            return self._output(ctx, a.port, run)
        if isinstance(a, SetVlanVid):
            tci = _tci(before)
            if not tci & 0x1000 and not a.push:
                return "set_vlan_vid on an untagged frame: no change"
            ctx.frame = _set_tci(before, (tci & 0xE000) | 0x1000 | (a.vid & 0xFFF))
            return _describe_tci(before, ctx.frame)
        if isinstance(a, SetVlanPcp):
            tci = _tci(before)
            if not tci & 0x1000 and not a.push:
                return "set_vlan_pcp on an untagged frame: no change"
            ctx.frame = _set_tci(before, (tci & 0x1FFF) | 0x1000 | ((a.pcp & 7) << 13))
            return f"VLAN priority {a.pcp}"
        if isinstance(a, StripVlan):
            if not isinstance(before.payload, Dot1Q):
                return "strip_vlan on an untagged frame: no change"
            ctx.frame = pop_vlan(before)
            return _describe_tci(before, ctx.frame)
        if isinstance(a, PushVlan):
            tci = _tci(before)
            ctx.frame = push_vlan(before, tci & 0xFFF, pcp=tci >> 13 if tci else 0)
            return f"pushed a VLAN tag (VID {tci & 0xFFF})"
        if isinstance(a, SetTunnel):
            ctx.tun_id = a.tun_id
            return f"tun_id={a.tun_id:#x}"
        if isinstance(a, Resubmit | GotoTable):
            target = a.table if a.table is not None else table
            self._resubmit(ctx, target, a.port if isinstance(a, Resubmit) else None, run, depth)
            return f"resubmit to table {target}" if isinstance(a, Resubmit) else f"goto table {target}"
        if isinstance(a, Load):
            ok = _write_sub(ctx, a.dst, a.value)
            return self._changed(a, before, ctx, ok)
        if isinstance(a, Move):
            v = _read_sub(ctx, a.src)
            ok = v is not None and _write_sub(ctx, a.dst, v)
            return self._changed(a, before, ctx, ok)
        if isinstance(a, SetField):
            info = field_info(a.field)
            if info is None:
                return f"{format_action(a)}: unknown field, ignored"
            v = value_to_int(a.value)
            cur = _get(ctx, info.name)
            ok = cur is not None
            if ok and cur is not None:
                new = v if a.mask is None else (cur & ~value_to_int(a.mask)) | (v & value_to_int(a.mask))
                if info.name == "vlan_vid":
                    new |= 0x1000
                ok = _set(ctx, info.name, new)
            return self._changed(a, before, ctx, ok)
        if isinstance(a, SetEthAddr):
            _set(ctx, "eth_src" if a.field == "dl_src" else "eth_dst", a.mac.value)
            return f"{a.field}={a.mac}"
        if isinstance(a, SetIPv4Addr):
            ok = _ip(ctx) is not None and _set(ctx, "ip_src" if a.field == "nw_src" else "ip_dst", int(a.address))
            return self._changed(a, before, ctx, ok)
        if isinstance(a, SetL4Port):
            ok = _get_tp(ctx, a.field == "tp_dst") is not None and _set(
                ctx, "tcp_dst" if a.field == "tp_dst" else "tcp_src", a.port)
            return self._changed(a, before, ctx, ok)
        if isinstance(a, Controller):
            return self._controller(run)
        if isinstance(a, Ct):
            return self._ct(a, ctx, run, depth)
        if isinstance(a, Note):
            return "note (no effect)"
        if isinstance(a, Learn):
            flow = _learn_flow(ctx, a)
            self._install(flow)
            return f"learned {format_add_flow(flow)}"
        if isinstance(a, GenericAction) and a.text == "dec_ttl":
            ip4 = _ip(ctx)
            if ip4 is None:
                return "dec_ttl: not IP, no change"
            if ip4.ttl <= 1:
                return self._controller(run)
            _set(ctx, "nw_ttl", ip4.ttl - 1)
            return f"TTL {ip4.ttl} -> {ip4.ttl - 1}"
        return f"{format_action(a)}: not modelled, ignored"

    def _changed(self, a: Action, before: Ethernet, ctx: _Ctx, ok: bool) -> str:
        text = format_action(a)
        if not ok:
            return f"{text}: the packet has no such field, no change"
        if _tci(before) != _tci(ctx.frame):
            return _describe_tci(before, ctx.frame)
        return text

    def _ct(self, a: Ct, ctx: _Ctx, run: _Run, depth: int) -> str:
        """Conntrack is not modelled. As in OVS, the ct_* fields are cleared for the rest of this pass;
        with ``table=N`` the packet continues in N (here at once, rather than after this flow's
        remaining actions) as a tracked connection: ``+trk`` and ``+new`` unless ``meta`` said
        otherwise."""
        state = ctx.ct_state
        if not state & (_CT_NEW | _CT_EST | _CT_REL | _CT_INV):
            state |= _CT_NEW
        state |= _CT_TRK
        zone = a.zone if isinstance(a.zone, int) else (
            _read_sub(ctx, a.zone) or 0 if a.zone is not None else 0)
        where = f", continues in table {a.table}" if a.table is not None else ""
        run.steps.append(Step(StepKind.CONNTRACK, format_action(a),
                              f"conntrack not modelled: passed through as ct_state={state:#x}, zone {zone}{where}"))
        if a.table is not None:
            ctx.ct_state, ctx.ct_zone = state, zone
            try:
                self._resubmit(ctx, a.table, None, run, depth)
            finally:
                ctx.ct_state = ctx.ct_zone = ctx.ct_mark = 0
            return f"ct (not modelled), continued in table {a.table}"
        ctx.ct_state = ctx.ct_zone = ctx.ct_mark = 0
        return "ct (not modelled): pass-through"
