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
current packet, up to 64 deep; output to the input port needs ``IN_PORT``. Conntrack runs on the
bridge's own :class:`~neutrino.sim.conntrack.Conntrack` (the datapath's, kept across packets, one
table for every zone): ``ct(zone=…)`` looks the IPv4 packet up and sets ``ct_state`` (``+trk`` with
``+new``/``+est``/``+rel``/``+inv`` and ``+rpl`` for the reply direction), ``ct_zone``, ``ct_mark``
and ``ct_label``; ``commit`` confirms the connection and runs ``exec(set_field:…->ct_mark|ct_label)``
on it; ``nat`` applies the connection's bindings; ``table=N`` continues in N with those fields (at
once rather than after the flow's remaining actions: recirculation); ``ct_clear`` empties the fields.
``conjunction(ID,K/N)`` flows take part in lookups as OVS's classifier does: when every dimension of
an id has a matching flow at the best priority, the lookup is repeated with ``conj_id=ID``. A bridge with
no flows and ``fail_mode`` other than ``secure`` behaves as NORMAL (standalone). Timeouts never fire
(there is no clock). Outputs to tunnel ports carry the tunnel metadata (``tun_id``, the tunnel
addresses from the packet or the interface options); other outputs carry none, as OVS clears it
crossing a patch port.
"""

from __future__ import annotations

import bisect
import dataclasses
import pickle
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, NamedTuple

from neutrino.errors import InvalidInput
from neutrino.host.fastnew import maker
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
    new_flow,
)
from neutrino.host.openflow_actions import Nat, format_action
from neutrino.host.openflow_fields import FieldInfo, Kind, Mac, field_info, value_to_int
from neutrino.host.ovsdb import Bridge, Interface, Port
from neutrino.sim.conntrack import Connection, Conntrack, CtRef, Direction, Manip
from neutrino.sim.conntrack import CtState as ConnState
from neutrino.sim.ovs_normal import (
    OFPP_LOCAL,
    TUNNEL_TYPES,
    MacTable,
    PortIndex,
    PortKind,
    SimPort,
    Unfollowed,
    normal,
)
from neutrino.sim.packets import (
    ARP,
    ICMP,
    TCP,
    UDP,
    Dot1Q,
    Ethernet,
    HashKept,
    IPv4,
    Raw,
    network_layer,
    pop_vlan,
    push_vlan,
)
from neutrino.sim.trace import Step, StepKind, new_step

__all__ = ["MAX_RESUBMIT_DEPTH", "Emit", "Meta", "OvsBridgeSim", "Result"]

MAX_RESUBMIT_DEPTH = 64
"""OVS's limit on nested resubmits (``MAX_DEPTH`` in ofproto-dpif-xlate.c); past it the packet drops."""
_OXM_LOCAL = 0xFFFFFFFE
_CT_TRK, _CT_NEW, _CT_EST, _CT_REL, _CT_INV = 0x20, 0x01, 0x02, 0x04, 0x10
_CT_RPL, _CT_SNAT, _CT_DNAT = 0x08, 0x40, 0x80


@dataclass(frozen=True, slots=True)
class Meta(HashKept):
    """The packet metadata OpenFlow sees besides the frame: tunnel fields, registers (``reg0``… in
    order; missing ones are 0), ``metadata``, ``pkt_mark`` and the conntrack fields. It keeps its
    hash (the dataclass's hash of its fields, computed once: a bridge hashes it with every frame
    it remembers; not a field, so neither compared nor pickled)."""

    tun_id: int | None = None
    tun_src: IPv4Address | None = None
    tun_dst: IPv4Address | None = None
    registers: tuple[int, ...] = ()
    metadata: int = 0
    pkt_mark: int = 0
    ct_state: int = 0
    ct_zone: int = 0
    ct_mark: int = 0
    ct_label: int = 0

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            h = hash((self.tun_id, self.tun_src, self.tun_dst, self.registers, self.metadata, self.pkt_mark,
                      self.ct_state, self.ct_zone, self.ct_mark, self.ct_label))
            object.__setattr__(self, "_hash", h)
            return h


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
    pruned: int = 0  # flooded copies left out: the caller said it would not follow them

    @property
    def dropped(self) -> bool:
        return not self.outputs and not self.pruned

    @property
    def ports(self) -> tuple[str, ...]:
        return tuple(e.port for e in self.outputs)


# ``Emit(port, frame, meta)`` and ``Result(outputs, steps, pruned)`` made fast (every field, in
# order): a boot makes some 46,000 copies and 32,000 results, each bridge pass one or more
_new_emit: Callable[..., Emit] = maker(Emit)
_new_result: Callable[..., Result] = maker(Result)


# --- the packet being processed --------------------------------------------------------------------


class _Ctx:
    """The mutable view of the packet during one translation (OVS's ``struct flow``)."""

    __slots__ = ("frame", "in_port", "tun_id", "tun_src", "tun_dst", "regs", "metadata", "pkt_mark",
                 "ct_state", "ct_zone", "ct_mark", "ct_label", "conj_id", "ct_pending", "deep", "src", "dst")

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
        self.ct_label = meta.ct_label
        self.conj_id = 0
        self.ct_pending: dict[int, CtRef] = {}  # the packet's unconfirmed connection per zone
        self.deep = False  # something read (or wrote) more of the packet than its Ethernet header and tags
        self.src = False  # something but NORMAL read (or wrote) the Ethernet source
        self.dst = False  # something but NORMAL read (or wrote) the Ethernet destination


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
    return Ethernet(dst=frame.dst, src=frame.src, type=frame.type,
                    payload=Dot1Q(vid=vid, pcp=pcp, dei=tag.dei, type=tag.type, payload=tag.payload))


def _ip(ctx: _Ctx) -> IPv4 | None:
    ctx.deep = True
    p = network_layer(ctx.frame)
    return p if isinstance(p, IPv4) else None


def _arp(ctx: _Ctx) -> ARP | None:
    ctx.deep = True
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


_IPV4_FIELDS: dict[str, Callable[[IPv4], int]] = {
    "ip_src": lambda l3: int(l3.src), "ip_dst": lambda l3: int(l3.dst), "nw_proto": lambda l3: l3.proto,
    "nw_tos": lambda l3: l3.tos & 0xFC, "ip_dscp": lambda l3: l3.tos >> 2, "nw_ecn": lambda l3: l3.tos & 3,
    "nw_ttl": lambda l3: l3.ttl,
}
"""The IPv4 header's fields :func:`_get_l3` reads, by name."""


_ARP_ONLY = frozenset({"arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"})
"""Fields only an ARP packet has: absent from an IPv4 packet whatever it holds."""


def _get_l3(ctx: _Ctx, name: str) -> int | None:
    l3 = network_layer(ctx.frame)
    if isinstance(l3, IPv4):
        if name in _ARP_ONLY:
            return None  # (what the packet's class alone says: no read of its contents)
        ctx.deep = True
        get = _IPV4_FIELDS.get(name)
        if get is not None:
            return get(l3)
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
        ctx.deep = True
        return {"ip_src": int(l3.psrc), "ip_dst": int(l3.pdst), "arp_spa": int(l3.psrc), "arp_tpa": int(l3.pdst),
                "nw_proto": l3.op & 0xFF, "arp_op": l3.op, "arp_sha": l3.hwsrc.value,
                "arp_tha": l3.hwdst.value}.get(name)
    return None


_META_FIELDS = {"tun_id", "tun_src", "tun_dst", "metadata", "pkt_mark", "ct_state", "ct_zone", "ct_mark", "ct_label",
                "conj_id"}


def _get(ctx: _Ctx, name: str) -> int | None:
    """Field ``name`` (OVS's canonical name, :attr:`FieldInfo.name`) of the packet; None when absent."""
    f = ctx.frame
    if name == "eth_src":
        ctx.src = True
        return f.src.value
    if name == "eth_dst":
        ctx.dst = True
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
    ctx.deep = True
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
        ctx.src = True
        ctx.frame = dataclasses.replace(f, src=Mac(v))
    elif name == "eth_dst":
        ctx.dst = True
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


_BITS: dict[Subfield, tuple[FieldInfo, int, int]] = {}


def _bits(sf: Subfield) -> tuple[FieldInfo, int, int]:
    """The field, offset and width subfield ``sf`` names (worked out once per subfield value: a
    subfield is immutable, and the fields' table never changes)."""
    got = _BITS.get(sf)
    if got is not None:
        return got
    info = sf.info
    bits = sf.bits()
    if info is None or bits is None:
        raise InvalidInput(f"unknown field {sf.field!r}")
    got = _BITS[sf] = (info, bits[0], bits[1])
    return got


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


_Part = tuple[str, int | None, int | None]
"""One indexable test of a flow: field ``name`` (as :func:`_get` reads it), masked with ``mask``
(None: exact), equal to ``value`` (None: never, e.g. ``in_port`` naming a port the bridge lacks)."""


def _index_parts(f: MatchField, port_number: Callable[[PortName | ReservedPort | int], int | None]
                 ) -> tuple[_Part, ...] | None:
    """The tests of match field ``f`` as exact (masked) field values, or None when ``f`` is not an
    equality (tcp flags, fragments, ct_state, IPv6): the same tests :func:`_compile_match` builds."""
    if isinstance(f, ProtoMatch):
        parts: tuple[_Part, ...] = (("eth_type", None, f.proto.dl_type),)
        return parts if f.proto.nw_proto is None else (*parts, ("nw_proto", None, f.proto.nw_proto))
    if isinstance(f, InPort):
        return (("in_port", None, port_number(f.port)),)
    if isinstance(f, EthMatch | IPv4Match):
        info = field_info(f.field)
        value = f.mac.value if isinstance(f, EthMatch) else int(f.address)
        mask = None if f.mask is None else (f.mask.value if isinstance(f.mask, Mac) else int(f.mask))
        return (_part(info.name if info else f.field, value, mask),)
    if isinstance(f, DlVlan):
        if f.vid == 0xFFFF:
            return (("vlan_tci", None, 0),)
        return (_part("vlan_tci", 0x1000 | (f.vid & 0xFFF), 0x1FFF),)
    if isinstance(f, DlVlanPcp):
        return (_part("vlan_tci", 0x1000 | ((f.pcp & 7) << 13), 0xF000),)
    if isinstance(f, VlanTci):
        if f.field == "vlan_tci":
            return (_part("vlan_tci", f.value, 0xFFFF if f.mask is None else f.mask),)
        if f.field == "vlan_vid":
            return (_part("vlan_tci", f.value, 0x1FFF if f.mask is None else f.mask & 0x1FFF),)
        return (_part("vlan_tci", 0x1000 | ((f.value & 7) << 13), 0xF000),)
    if isinstance(f, IntMatch):
        info = field_info(f.field)
        return (_part(info.name if info else f.field, f.value, f.mask),)
    return None


def _part(name: str, value: int, mask: int | None) -> _Part:
    return (name, mask, value if mask is None else value & mask)


_REST: dict[MatchField, Matcher] = {}


def _no_port(port: PortName | ReservedPort | int) -> int | None:
    return None


def _rest_matcher(f: MatchField) -> Matcher:
    """The test of a match field that is not an equality (no port numbers involved), compiled once."""
    got = _REST.get(f)
    if got is None:
        got = _REST[f] = _compile_match(f, _no_port)
    return got


def _same(kept: object, new: object) -> bool:
    if isinstance(kept, bytes):
        return kept == pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL)
    return kept == new


def _pickled(obj: object) -> bytes:
    return obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


class _Compiled:
    """A flow ready for lookup: its equality tests split into the subtable signature ``sig``
    (field, mask) and the values ``key``, its other tests in ``rest``, its place ``seq`` among the
    bridge's flows (ties in priority go to the earlier one). The flow itself (kept pickled in a
    saved bridge) and its text (``ovs-ofctl add-flow`` form) are read when it matches."""

    __slots__ = ("_flow", "_blob", "priority", "sig", "key", "rest", "learned", "seq", "_text", "_actions", "_head")

    def __init__(self, flow: Flow, port_number: Callable[[PortName | ReservedPort | int], int | None],
                 learned: bool = False, seq: int = 0) -> None:
        parts: list[_Part] = []
        rest: list[MatchField] = []
        for m in dict.fromkeys(flow.match):
            got = _index_parts(m, port_number)
            if got is None:
                _rest_matcher(m)  # raises on what the simulator cannot match
                rest.append(m)
            else:
                parts.extend(got)
        parts.sort(key=lambda p: (p[0], -1 if p[1] is None else p[1], -1 if p[2] is None else p[2]))
        self._flow: Flow | bytes = flow
        self._blob: bytes | None = None  # the flow pickled, once it was
        self.priority = flow.priority
        self.sig: tuple[tuple[str, int | None], ...] = tuple((n, m) for n, m, _ in parts)
        self.key: tuple[int | None, ...] = tuple(v for _, _, v in parts)
        self.rest: tuple[MatchField, ...] = tuple(rest)
        self.learned = learned
        self.seq = seq
        self._text: str | None = None
        self._actions: tuple[Action, ...] | None = None  # the flow's actions, once read
        self._head: Step | None = None  # its FLOW step before its actions ran (see OvsBridgeSim._table)

    @property
    def flow(self) -> Flow:
        f = self._flow
        if isinstance(f, bytes):
            loaded: Flow = pickle.loads(f)
            self._flow = f = loaded
        return f

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = format_add_flow(self.flow.without_stats())
        return self._text

    @property
    def actions(self) -> tuple[Action, ...]:
        got = self._actions
        if got is None:
            got = self._actions = tuple(self.flow.actions)
        return got

    def _format(self) -> str:
        return self.text

    def step(self, detail: str) -> Step:
        """A FLOW step for this flow with ``detail``. Its text is formatted when first read
        (:meth:`Step.later`) if it was not before: a boot meets each guest's own flows (its
        ports' in br-int, the flows br-tun learns of its MAC) with one or two packets whose hop
        records are mostly never read; formatting a flow is the same text whenever it is done
        (the flow is immutable)."""
        text = self._text
        if text is None:
            return Step.later(StepKind.FLOW, self._format, detail)
        return new_step(StepKind.FLOW, text, detail, "")

    @property
    def head(self) -> Step:
        """The step a lookup that found this flow records before running its actions (replaced
        by the one with their effects when they are done): immutable, made once."""
        got = self._head
        if got is None:
            got = self._head = self.step("")
        return got

    def rest_matches(self, ctx: _Ctx) -> bool:
        return all(_rest_matcher(m)(ctx) for m in self.rest)

    def __getstate__(self) -> tuple[object, ...]:
        if self._blob is None:
            self._blob = _pickled(self._flow)
        return (self._blob, self.priority, self.sig, self.key, self.rest, self.learned, self.seq, self._text)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._blob, self.priority, self.sig, self.key, self.rest, self.learned, self.seq, self._text = state
        self._flow = self._blob
        self._actions = self._head = None


def _packet_key(sig: tuple[tuple[str, int | None], ...], ctx: _Ctx) -> tuple[int, ...] | None:
    out: list[int] = []
    for name, mask in sig:
        v = ctx.in_port if name == "in_port" else _get(ctx, name)
        if v is None:
            return None
        out.append(v if mask is None else v & mask)
    return tuple(out)


_Getter = Callable[[_Ctx], "int | None"]


def _getter(name: str) -> _Getter:
    """A function reading field ``name`` of the packet as :func:`_get` does (the common fields
    without its chain of name tests)."""
    if name == "in_port":
        return lambda ctx: ctx.in_port
    if name == "eth_src":
        def src(ctx: _Ctx) -> int:
            ctx.src = True
            return ctx.frame.src.value
        return src
    if name == "eth_dst":
        def dst(ctx: _Ctx) -> int:
            ctx.dst = True
            return ctx.frame.dst.value
        return dst
    if name == "eth_type":
        return lambda ctx: _dl_type(ctx.frame)
    if name == "vlan_tci":
        return lambda ctx: _tci(ctx.frame)
    if name == "tun_id":
        return lambda ctx: int(ctx.tun_id)
    if name == "metadata":
        return lambda ctx: int(ctx.metadata)
    if re.fullmatch(r"reg([0-9]|1[0-5])", name):
        i = int(name[3:])
        return lambda ctx: ctx.regs[i]
    return lambda ctx: _get(ctx, name)


_KeyFn = Callable[[_Ctx], "tuple[int, ...] | None"]
_KEYERS: dict[tuple[tuple[str, int | None], ...], _KeyFn] = {}


def _keyer(sig: tuple[tuple[str, int | None], ...]) -> _KeyFn:
    """:func:`_packet_key` for signature ``sig``, compiled once per signature (a signature is
    immutable: its field names and masks)."""
    got = _KEYERS.get(sig)
    if got is not None:
        return got
    getters = tuple((_getter(name), mask) for name, mask in sig)
    if len(getters) == 1:
        (g0, m0), = getters

        def key1(ctx: _Ctx) -> tuple[int, ...] | None:
            v = g0(ctx)
            if v is None:
                return None
            return (v if m0 is None else v & m0,)
        got = key1
    elif len(getters) == 2:
        (g0, m0), (g1, m1) = getters

        def key2(ctx: _Ctx) -> tuple[int, ...] | None:
            v = g0(ctx)
            if v is None:
                return None
            w = g1(ctx)
            if w is None:
                return None
            return (v if m0 is None else v & m0, w if m1 is None else w & m1)
        got = key2
    else:
        def keyn(ctx: _Ctx) -> tuple[int, ...] | None:
            out: list[int] = []
            for g, mask in getters:
                v = g(ctx)
                if v is None:
                    return None
                out.append(v if mask is None else v & mask)
            return tuple(out)
        got = keyn
    _KEYERS[sig] = got
    return got


def _rank(c: _Compiled) -> tuple[int, int]:
    return (-c.priority, c.seq)


class _Subtable:
    """The flows of one table sharing a signature, by key; each bucket in lookup order."""

    __slots__ = ("sig", "buckets", "top", "key", "at_type", "types")

    def __init__(self, sig: tuple[tuple[str, int | None], ...]) -> None:
        self.sig = sig
        self.buckets: dict[tuple[int | None, ...], list[_Compiled]] = {}
        self.top = -1  # the highest priority it ever held (an upper bound)
        self._derived()

    def _derived(self) -> None:
        """What is made again from the signature and buckets (not pickled): a packet's key in the
        subtable, and where the signature matches eth_type exactly, the eth_types its flows ever
        held (a superset of its buckets' values): a packet of another eth_type matches none of
        them, so the lookup skips the subtable without reading the packet's other fields (a
        subtable of ICMPv6 flows would read an IPv4 packet's ICMP type, for nothing)."""
        self.key = _keyer(self.sig)
        self.at_type = next((i for i, (name, mask) in enumerate(self.sig) if name == "eth_type" and mask is None), -1)
        self.types: set[int | None] | None = {k[self.at_type] for k in self.buckets} if self.at_type >= 0 else None

    def __getstate__(self) -> tuple[object, ...]:
        return (self.sig, self.buckets, self.top)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.sig, self.buckets, self.top = state
        self._derived()


class _Table:
    """One OpenFlow table as OVS's classifier holds it (tuple space search): flows grouped by the
    fields and masks they match on, hashed by the values. A lookup finds the same flow a scan in
    priority order (ties: the earlier flow) would: the best ``(-priority, seq)`` over subtables."""

    __slots__ = ("subtables", "order", "by_ident")

    def __init__(self) -> None:
        self.subtables: dict[tuple[tuple[str, int | None], ...], _Subtable] = {}
        self.order: list[_Subtable] = []
        self.by_ident: dict[tuple[int, tuple[tuple[str, int | None], ...], tuple[int | None, ...]],
                            list[_Compiled]] = {}

    def __getstate__(self) -> tuple[object, ...]:
        return (self.subtables, self.order, self.by_ident)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.subtables, self.order, self.by_ident = state

    def add(self, c: _Compiled) -> None:
        sub = self.subtables.get(c.sig)
        if sub is None:
            sub = self.subtables[c.sig] = _Subtable(c.sig)
            self.order.append(sub)
        bisect.insort(sub.buckets.setdefault(c.key, []), c, key=_rank)
        if sub.types is not None:
            sub.types.add(c.key[sub.at_type])
        if c.priority > sub.top:
            sub.top = c.priority
            self.order.sort(key=lambda t: -t.top)
        self.by_ident.setdefault((c.priority, c.sig, c.key), []).append(c)

    def remove_same(self, new: _Compiled) -> None:
        """Take out every flow with ``new``'s priority and match (a flow add replaces them)."""
        ident = (new.priority, new.sig, new.key)
        same = self.by_ident.get(ident)
        if not same:
            return
        match = frozenset(new.flow.match)
        gone = [c for c in same if frozenset(c.flow.match) == match]
        if not gone:
            return
        self.by_ident[ident] = [c for c in same if c not in gone]
        bucket = self.subtables[new.sig].buckets[new.key]
        bucket[:] = [c for c in bucket if c not in gone]

    def lookup(self, ctx: _Ctx) -> _Compiled | None:
        best: _Compiled | None = None
        best_rank = (1, 0)
        for sub in self.order:
            if best is not None and sub.top < best.priority:
                break
            if not sub.buckets:
                continue
            if sub.types is not None and _dl_type(ctx.frame) not in sub.types:
                continue
            key = sub.key(ctx)
            if key is None:
                continue
            for c in sub.buckets.get(key, ()):
                rank = (-c.priority, c.seq)
                if rank >= best_rank:
                    break
                if not c.rest or c.rest_matches(ctx):
                    best, best_rank = c, rank
                    break
        return best

    def flows(self) -> list[_Compiled]:
        """The live flows in lookup order."""
        return sorted((c for lst in self.by_ident.values() for c in lst), key=_rank)


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


def _learn_sources(learn: Learn) -> list[Subfield]:
    """The subfields ``learn`` reads of the packet, in its specs' order (each one's bits worked
    out here, in the order reading them would: an unknown field raises as building the flow does)."""
    out: list[Subfield] = []
    for spec in learn.specs:
        if isinstance(spec, LearnMatch):
            _bits(spec.dst)
            if spec.value is None:
                out.append(spec.src if spec.src is not None else spec.dst)
                _bits(out[-1])
        elif isinstance(spec, LearnLoad):
            if spec.value is None and spec.src is not None:
                out.append(spec.src)
                _bits(spec.src)
        elif isinstance(spec, LearnOutput):
            out.append(spec.src)
            _bits(spec.src)
    return out


def _learn_reads(ctx: _Ctx, learn: Learn) -> tuple[int, ...]:
    """The packet's values ``learn`` copies into the flow it installs, in its specs' order (an
    absent field reads as 0): with ``learn`` itself, all the flow depends on."""
    return tuple(_read_sub(ctx, sf) or 0 for sf in _learn_sources(learn))


def _src_bits(learn: Learn) -> tuple[tuple[int, int, int], ...]:
    """Which of ``learn``'s reads (:func:`_learn_reads`) are bits of the Ethernet source: each
    one's position among the reads, offset and width (it reads ``(src >> offset) & mask``)."""
    out = []
    for i, sf in enumerate(_learn_sources(learn)):
        info, off, n = _bits(sf)
        if info.name == "eth_src":
            out.append((i, off, n))
    return tuple(out)


class _SrcLearn:
    """A ``learn`` action of a run that read the Ethernet source (and nothing before it read or
    wrote the source): what it read (``reads``; the positions ``bits`` from the source), and
    where its effect's text is in the run's steps (the flow step at ``slot``: the flow's text,
    the "learned flow: " prefix, every action's effect, this one's at ``at``). The run is the
    same for a frame with another source but for this action's flow and that text (see
    :class:`_L2Seen`)."""

    __slots__ = ("learn", "reads", "bits", "slot", "flow_text", "prefix", "effects", "at", "around", "mac_at", "like")

    def __init__(self, learn: Learn, reads: tuple[int, ...], bits: tuple[tuple[int, int, int], ...]) -> None:
        self.learn = learn  # (held: the id in _LEARNED's key is not reused while here)
        self.reads = reads
        self.bits = bits
        self.slot = -1
        self.flow_text = ""
        self.prefix = ""
        self.effects: tuple[str, ...] = ()
        self.at = -1
        # the learned text before and after the learned MAC (see learned): None until known, ()
        # when the source is not copied whole into a MAC match of its own
        self.around: tuple[str, ...] | None = None if _whole_mac_match(learn, bits) else ()
        # when it is so copied: where that match sits in the flows it learns (else -1), and a
        # flow it learned with that place and the read it takes (None until one is learned),
        # for the next flows (see flow)
        self.mac_at = -1 if self.around == () else _mac_match_at(learn, bits[0][0])
        self.like: tuple[Flow, int, int] | None = None

    def flow(self, src: int) -> Flow:
        """The flow this action learns from a frame with source MAC ``src``. When the action
        copies the whole source into a MAC match of its own, the flows it learns differ in that
        match alone (the other reads are this run's): a new one is an earlier one with the match
        for the new MAC put in its place, not worked out from the specs again."""
        reads = list(self.reads)
        for i, off, n in self.bits:
            reads[i] = (src >> off) & ((1 << n) - 1)
        if self.mac_at < 0:
            return _learned_of(self.learn, tuple(reads))
        like = self.like
        flow = _learned_of(self.learn, tuple(reads), like)
        if like is None:
            self.like = (flow, self.mac_at, self.bits[0][0])
        return flow

    def learned(self, bridge: OvsBridgeSim, src: int, run: _Run) -> str:
        """The action run again for a frame with source MAC ``src``: its flow learned by
        ``bridge`` (:meth:`OvsBridgeSim._learn`), and its effect's text. When the action copies
        the whole source into a MAC match (br-tun's ``NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]``),
        the flows it learns differ in that match alone, and a flow's text is its fields' texts
        in an order that does not depend on their values, the MAC's being the MAC as it prints:
        so the text for a new MAC is the text for another with the MAC put in its place (split
        once, where the MAC occurs exactly once), not the new flow formatted again."""
        flow = self.flow(src)
        around = self.around
        if around:
            got = _TEXTS.get(id(flow))
            if got is None or got[0] is not flow:
                _keep_text(flow, f"{around[0]}{Mac(src & _MAC_BITS)}{around[1]}")
            return bridge._learn(flow, run)
        text = bridge._learn(flow, run)
        if around is None:
            mac = str(Mac(src & _MAC_BITS))
            at = text.find(mac)
            if at >= 0 and text.find(mac, at + 1) < 0:
                self.around = (text[:at], text[at + len(mac):])
        return text


_MAC_BITS = (1 << 48) - 1


def _whole_mac_match(learn: Learn, bits: tuple[tuple[int, int, int], ...]) -> bool:
    """Whether ``learn``'s one read of the source (``bits``: :func:`_src_bits`) is all 48 bits,
    copied into all of a MAC field that no other spec matches on (the learned flow then holds
    the source as a whole MAC match, and nothing else of it)."""
    if len(bits) != 1 or bits[0][1:] != (0, 48):
        return False
    target: LearnMatch | None = None
    fields: list[str] = []
    i = 0
    for spec in learn.specs:  # (which spec takes which read: as _learned_flow takes them)
        if isinstance(spec, LearnMatch):
            fields.append(_bits(spec.dst)[0].name)
            if spec.value is None:
                if i == bits[0][0]:
                    target = spec
                i += 1
        elif isinstance(spec, LearnLoad):
            if spec.value is None and spec.src is not None:
                if i == bits[0][0]:
                    return False
                i += 1
        elif isinstance(spec, LearnOutput):
            if i == bits[0][0]:
                return False
            i += 1
    if target is None:
        return False
    info, off, n = _bits(target.dst)
    return info.kind is Kind.MAC and info.n_bits == 48 and off == 0 and n == 48 and fields.count(info.name) == 1


def _mac_match_at(learn: Learn, read: int) -> int:
    """Where the match that ``learn`` copies its read ``read`` into (:func:`_learn_reads`) sits
    among the matches of the flows it learns (its fields in the order their specs first name
    them, as :func:`_learned_flow` makes them); -1 when a load or an output takes that read."""
    names: dict[str, None] = {}
    at = -1
    i = 0
    for spec in learn.specs:
        if isinstance(spec, LearnMatch):
            name = _bits(spec.dst)[0].name
            names.setdefault(name, None)
            if spec.value is None:
                if i == read:
                    at = list(names).index(name)
                i += 1
        elif isinstance(spec, LearnLoad):
            if spec.value is None and spec.src is not None:
                i += 1
        elif isinstance(spec, LearnOutput):
            i += 1
    return at


def _learned_flow(learn: Learn, reads: Sequence[int]) -> Flow:
    """The flow ``learn`` installs given the values :func:`_learn_reads` read (``lib/learn.c``'s
    ``learn_execute``)."""
    fields: dict[str, tuple[FieldInfo, int, int]] = {}
    actions: list[Action] = []
    it = iter(reads)
    for spec in learn.specs:
        if isinstance(spec, LearnMatch):
            info, off, n = _bits(spec.dst)
            v = value_to_int(spec.value) if spec.value is not None else next(it)
            m = ((1 << n) - 1) << off
            _, old_v, old_m = fields.get(info.name, (info, 0, 0))
            fields[info.name] = (info, (old_v & ~m) | ((v << off) & m), old_m | m)
        elif isinstance(spec, LearnLoad):
            lv = spec.value if spec.value is not None else (next(it) if spec.src is not None else 0)
            actions.append(Load(lv or 0, spec.dst))
        elif isinstance(spec, LearnOutput):
            port = next(it)
            actions.append(Output(ReservedPort.LOCAL if port in (OFPP_LOCAL, _OXM_LOCAL) else port))
    match = tuple(_learned_match(info, v, m) for info, v, m in fields.values())
    return Flow(match=match, actions=tuple(actions), table=learn.table,
                priority=DEFAULT_PRIORITY if learn.priority is None else learn.priority,
                cookie=learn.cookie or 0, idle_timeout=learn.idle_timeout or 0,
                hard_timeout=learn.hard_timeout or 0)


def _learn_flow(ctx: _Ctx, learn: Learn) -> Flow:
    """The flow ``learn`` installs for the current packet."""
    return _learned_flow(learn, _learn_reads(ctx, learn))


_LearnKey = tuple[int, int, frozenset[MatchField]]
_LEARNED: dict[tuple[int, tuple[int, ...]], tuple[Learn, Flow]] = {}
"""Flows learned, by the ``learn`` action (its id: the action is held in the value, so the id is
not reused while the entry lives) and the values it read: the flow is immutable and a function of
those alone."""
_LEARN_KEYS: dict[int, tuple[Flow, _LearnKey]] = {}
"""Those flows' keys among learned flows (table, priority, match), by the flow's id (the flow is
held in the value). Both hold at most :data:`_LEARNED_MAX` entries (then start again)."""
_LEARNED_MAX = 4096


def _learned(ctx: _Ctx, learn: Learn) -> Flow:
    """:func:`_learn_flow`, made once per action and values read (br-tun learns the same flow
    again from every packet out of a tunnel)."""
    return _learned_of(learn, _learn_reads(ctx, learn))


def _learned_of(learn: Learn, reads: tuple[int, ...], like: tuple[Flow, int, int] | None = None) -> Flow:
    """The flow ``learn`` installs given the values it read (:func:`_learned`). ``like``: a flow
    it learned from values that differ from ``reads`` only in the one read it copies whole into a
    MAC match, where that match sits in it and which read that is (:meth:`_SrcLearn.flow`): the
    new flow is that one with the match's MAC replaced."""
    key = (id(learn), reads)
    got = _LEARNED.get(key)
    if got is None or got[0] is not learn:
        if like is None:
            flow = _learned_flow(learn, reads)
        else:
            old, k, i = like
            m: EthMatch = old.match[k]  # type: ignore[assignment]
            flow = new_flow(old.match[:k] + (EthMatch(m.field, Mac(reads[i])),) + old.match[k + 1:],
                            old.actions, old.table, old.priority, old.cookie, old.cookie_mask,
                            old.idle_timeout, old.hard_timeout, old.importance, old.flags, old.stats)
        if len(_LEARNED) >= _LEARNED_MAX:
            _LEARNED.clear()
            _LEARN_KEYS.clear()
        got = _LEARNED[key] = (learn, flow)
        _LEARN_KEYS[id(flow)] = (flow, (flow.table, flow.priority, frozenset(flow.match)))
    return got[1]


_TEXTS: dict[int, tuple[Flow, str]] = {}
"""The step text of a flow installed by a learn action (``learned`` and the flow as ``ovs-ofctl
add-flow`` prints it), by the flow's id (the flow is held in the value, so the id is not reused
while the entry lives): the flow is immutable, and bridges sharing a learn action learn the very
flow objects of :data:`_LEARNED`. At most :data:`_LEARNED_MAX` entries (then it starts again)."""


def _keep_text(flow: Flow, text: str) -> None:
    if len(_TEXTS) >= _LEARNED_MAX:
        _TEXTS.clear()
    _TEXTS[id(flow)] = (flow, text)


def _learned_text(flow: Flow) -> str:
    """``flow``'s text as a learn action's effect: formatted once per flow object."""
    got = _TEXTS.get(id(flow))
    if got is not None and got[0] is flow:
        return got[1]
    text = f"learned {format_add_flow(flow)}"
    _keep_text(flow, text)
    return text


def _learn_key(flow: Flow) -> _LearnKey:
    """``flow``'s key among a bridge's learned flows: its table, priority and match fields."""
    got = _LEARN_KEYS.get(id(flow))
    if got is not None and got[0] is flow:
        return got[1]
    return (flow.table, flow.priority, frozenset(flow.match))


# --- the interpreter -------------------------------------------------------------------------------


class _Loop(Exception):
    pass


class _Run:
    """What one ``process`` call accumulates."""

    __slots__ = ("outputs", "steps", "miss", "drop_flow", "pruned", "unfollowed", "volatile", "relearned", "tables",
                 "learns", "normals", "normal", "ended", "src_learns", "pending")

    def __init__(self, unfollowed: Unfollowed | None = None) -> None:
        self.outputs: list[Emit] = []
        self.steps: list[Step] = []
        self.miss: int | None = None
        self.drop_flow: str | None = None
        self.pruned = 0
        self.unfollowed = unfollowed
        self.volatile = False  # a ct() ran: the result depends on (and changed) the conntrack table
        self.relearned: list[_Compiled] = []  # learned flows learned again as they were (see _learn)
        self.tables: list[int] = []  # the tables it looked up, in order
        self.learns: list[Flow] = []  # the flows its learn actions learned, in order
        self.normals = 0  # how many times NORMAL ran
        self.normal: _NormalAt | None = None  # where NORMAL ran (the first time) and where it left the run
        self.ended = 0  # the steps when the pipeline ended (before the drop step :meth:`_finish` may add)
        self.src_learns: dict[int, _SrcLearn] = {}  # by position in learns: the ones that read the source
        self.pending: list[_SrcLearn] = []  # those whose flow step is not made yet (see _table)


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


_NO_META = Meta()  # what a copy out of a port that is no tunnel carries (a Meta is immutable)
_MEMO_SIZE = 1024  # results a bridge remembers (then it starts again)
_Known = tuple[int, int, "Result", tuple["_Compiled", ...]]
"""A remembered result (:meth:`OvsBridgeSim.process`): the MAC table's change count and the
bridge's version it holds for, the result, and the flows its learn actions learned again."""


class _NormalAt(NamedTuple):
    """Where NORMAL ran in a run (the first time): the run's steps, outputs and pruned copies
    before it, the packet as it stood (frame, input port, tunnel key and destination, which the
    copies it sends read), its reason; and the steps, outputs and pruned copies after it."""

    steps: int
    outputs: int
    pruned: int
    frame: Ethernet
    in_port: int
    tun_id: int
    tun_dst: int
    why: str | None
    steps_after: int
    outputs_after: int
    pruned_after: int


def _header_key(frame: Ethernet) -> tuple[tuple[object, ...], tuple[object, ...]] | None:
    """A frame's Ethernet header and 802.1Q tags as values but for the source MAC (the MACs as
    numbers), the destination first, with the class of what follows them; and the frame's nodes,
    outermost first (the frame, each tag, what follows). None for a frame with no payload."""
    values: list[object] = [frame.dst.value, frame.type]
    nodes: list[object] = [frame]
    p: object = frame.payload
    while type(p) is Dot1Q:
        values += (p.vid, p.pcp, p.dei, p.type)
        nodes.append(p)
        p = p.payload
    if p is None:
        return None
    values.append(type(p))
    nodes.append(p)
    return tuple(values), tuple(nodes)


class _L2Seen:
    """A bridge's run for a frame that read and wrote nothing beyond its Ethernet header and tags
    (no L3 field matched, loaded, learned or set; no ct()): any frame with the same header values
    on the same port, with the same metadata, goes the same way while the tables it looked up are
    unchanged (``tables``: their versions, bumped by each learned flow installed in them; a reset,
    forget or take-over forgets every entry). Each MAC, the source and the destination, is in the
    key only when something other than NORMAL read or wrote it (``_Ctx.src``, ``_Ctx.dst``), or
    NORMAL's result is kept (a plain one, below): a unicast to a new guest's MAC through flows
    that read no MAC (br-int's, br-tun's from a tunnel) is replayed, NORMAL run again on it.

    Two kinds. A *plain* one (``normal`` None) keeps the result: its steps are the same (every
    text in them was made from the header, the metadata and the flows), and, when NORMAL ran in
    it, the MAC table must be unchanged too (``fdb_changes``) and no pruning rule was consulted.
    A *switched* one is a run whose pipeline ended in NORMAL (nothing but NORMAL's own step,
    copies and pruned count came after it): it keeps the steps, outputs and pruned count before
    NORMAL and the packet NORMAL saw, and NORMAL runs again on the new packet (learning its
    source, reading the MAC table and the caller's pruning rule as it would), then the drop step
    when nothing was sent, as :meth:`OvsBridgeSim._finish` adds it. Either way the flows its
    learn actions learned are learned again (into no table it looked up: checked when kept), in
    order, and each output frame is rebuilt around the new frame's payload, reusing the new
    frame's own nodes and MACs where the old output held the old frame's (as the interpretation
    does, passing on what it does not change). Only kept when every output holds the old frame's
    payload object itself."""

    __slots__ = ("fdb_changes", "tables", "result", "learns", "nodes", "ids", "normal", "drop_flow", "miss", "version")

    def __init__(self, fdb_changes: int | None, tables: tuple[tuple[int, int], ...], result: Result,
                 learns: tuple[Flow | _SrcLearn, ...], nodes: tuple[object, ...], normal: _NormalAt | None,
                 drop_flow: str | None, miss: int | None) -> None:
        self.fdb_changes = fdb_changes  # None: it does not depend on the MAC table
        self.tables = tables  # the tables the run looked up, with their versions then
        self.result = result
        self.learns = learns  # the flows its learn actions learned (into no table it looked up), or the
        # action and what it read where it read the source (the flow learned again from the new frame's)
        self.nodes = nodes  # the old frame's nodes (held: their ids are not reused while here)
        self.ids = tuple(map(id, nodes))
        self.normal = normal
        self.drop_flow = drop_flow
        self.miss = miss
        # the bridge's version (:meth:`OvsBridgeSim._forget_results` bumps it at every install) at
        # which ``tables`` were last found as they were: at that version they still are
        self.version = -1

    @classmethod
    def of(cls, nodes: tuple[object, ...], result: Result, run: _Run, fdb_changes: int,
           tables: tuple[tuple[int, int], ...]) -> _L2Seen | None:
        inner = nodes[-1]
        for emit in result.outputs:
            p: object = emit.frame.payload
            while type(p) is Dot1Q:
                p = p.payload
            if p is not inner:
                return None
        at = run.normal
        src = run.src_learns
        learns = tuple(src.get(i, f) for i, f in enumerate(run.learns)) if src else tuple(run.learns)
        if run.normals == 0:
            return cls(None, tables, result, learns, nodes, None, None, None)
        if run.normals == 1 and at is not None and at.steps_after == run.ended \
                and at.outputs_after == len(result.outputs) and at.pruned_after == result.pruned:
            return cls(None, tables, result, learns, nodes, at, run.drop_flow, run.miss)
        if run.unfollowed is None:
            return cls(fdb_changes, tables, result, learns, nodes, None, None, None)
        return None

    def again(self, bridge: OvsBridgeSim, frame: Ethernet, nodes: tuple[object, ...],
              unfollowed: Unfollowed | None) -> tuple[Result, list[_Compiled]]:
        """The result for ``frame`` (whose header key is this one's), and the learned flows its
        learn actions learned again as they were."""
        r = self.result
        steps = r.steps
        texts: list[tuple[_SrcLearn, str]] = []
        relearned: list[_Compiled] = []
        if self.learns:
            learned = _Run()
            relearned = learned.relearned
            for item in self.learns:  # its learn actions again, as they would run (learned again as
                if isinstance(item, _SrcLearn):  # they are, or installed where they are gone)
                    texts.append((item, item.learned(bridge, frame.src.value, learned)))
                else:
                    bridge._learn(item, learned)
        if texts:  # the flow steps of learn actions that read the source: with the new flow's text
            made_steps = list(steps)
            effects: dict[int, list[str]] = {}
            for item, text in texts:
                effects.setdefault(item.slot, list(item.effects))[item.at] = text
            for item, _ in texts:
                made_steps[item.slot] = new_step(StepKind.FLOW, item.flow_text,
                                                 item.prefix + "; ".join(effects[item.slot]), "")
            steps = tuple(made_steps)
        at = self.normal
        if at is None and not r.outputs:  # (new steps: the world replays a whole hop, the old
            return Result((), tuple(list(steps)), r.pruned), relearned  # frame's, for the
            # very steps and outputs it saw)
        old_frame = self.nodes[0]
        assert type(old_frame) is Ethernet
        if at is not None and not at.outputs and at.frame is old_frame:
            # (NORMAL saw the frame as it came in and nothing was sent before it: a remote br-int
            # pass of a broadcast. No frame to rebuild)
            return self._switched(bridge, frame, steps, [], unfollowed), relearned
        same = dict(zip(self.ids, nodes, strict=True))  # (the old nodes by id: the new frame's in their place)
        # the MACs by role: the old frame's destination and source may be one object, whose copies
        # are the new frame's destination where they are destinations and its source where sources
        macs = (old_frame.dst, frame.dst, old_frame.src, frame.src)
        made: dict[int, Ethernet] = {}

        def rebuilt(f: Ethernet) -> Ethernet:
            new = made.get(id(f))
            if new is None:
                built = _rewrap(f, same, macs)
                assert type(built) is Ethernet
                new = made[id(f)] = built
            return new

        if at is None:
            return _new_result(tuple([_new_emit(e.port, rebuilt(e.frame), e.meta) for e in r.outputs]), steps,
                               r.pruned), relearned  # (a list: a generator resumes once per output)
        outputs = [_new_emit(e.port, rebuilt(e.frame), e.meta) for e in r.outputs[:at.outputs]]
        return self._switched(bridge, frame if at.frame is old_frame else rebuilt(at.frame), steps, outputs,
                              unfollowed), relearned

    def _switched(self, bridge: OvsBridgeSim, seen: Ethernet, steps: tuple[Step, ...], outputs: list[Emit],
                  unfollowed: Unfollowed | None) -> Result:
        """A switched run again: its ``steps`` and ``outputs`` before NORMAL (the new frame's),
        then NORMAL run on ``seen`` (the new packet as NORMAL sees it)."""
        at = self.normal
        assert at is not None
        run = _Run(unfollowed)
        run.steps = list(steps[:at.steps])
        run.outputs = outputs
        run.pruned = at.pruned
        run.drop_flow, run.miss = self.drop_flow, self.miss
        ctx = _Ctx(seen, at.in_port, _NO_META)
        ctx.tun_id, ctx.tun_dst = at.tun_id, at.tun_dst
        bridge._switch(ctx, run, at.why)
        return bridge._finish(run)


def _rewrap(node: object, same: dict[int, object], macs: tuple[Mac, Mac, Mac, Mac]) -> object:
    got = same.get(id(node))
    if got is not None:
        return got
    if type(node) is Dot1Q:
        return Dot1Q(vid=node.vid, pcp=node.pcp, dei=node.dei, type=node.type,
                     payload=_rewrap(node.payload, same, macs))  # type: ignore[arg-type]
    assert type(node) is Ethernet, "an output holds the old frame's payload (checked when kept)"
    old_dst, new_dst, old_src, new_src = macs
    return Ethernet(dst=new_dst if node.dst is old_dst else node.dst, src=new_src if node.src is old_src else node.src,
                    type=node.type, payload=_rewrap(node.payload, same, macs))  # type: ignore[arg-type]


_TUNNEL_OPTIONS: dict[SimPort, tuple[int | None, IPv4Address | None, IPv4Address | None]] = {}


def _tunnel_options(port: SimPort) -> tuple[int | None, IPv4Address | None, IPv4Address | None]:
    """A tunnel port's fixed key (None: the packet's ``tun_id``, ``key=flow``), remote and local
    addresses (None: from the flow, or none), read from its options once per port (a port is
    immutable and compares by value, so equal ports share the answer)."""
    got = _TUNNEL_OPTIONS.get(port)
    if got is None:
        key = port.option("key") or port.option("out_key")
        remote, local = port.option("remote_ip"), port.option("local_ip")
        got = (None if key is None or key == "flow" else value_to_int(key),
               IPv4Address(remote) if remote not in (None, "flow") else None,
               IPv4Address(local) if local not in (None, "flow") else None)
        if len(_TUNNEL_OPTIONS) >= 4096:
            _TUNNEL_OPTIONS.clear()
        _TUNNEL_OPTIONS[port] = got
    return got


def _describe_tci(before: Ethernet, after: Ethernet) -> str:
    b, a = _tci(before), _tci(after)
    if b == a:  # mod_vlan_vid to the VID the frame already carries (a provider VLAN equal to the local one)
        return f"set VLAN {a & 0xFFF} (it already was)" if a & 0x1000 else "no VLAN tag: no change"
    if not a & 0x1000:
        return f"stripped VLAN {b & 0xFFF}"
    if not b & 0x1000:
        return f"pushed VLAN {a & 0xFFF}"
    return f"VLAN {b & 0xFFF} -> {a & 0xFFF}"


def _renumber(flow: Flow, numbers: Mapping[int, int | None], vlans: Mapping[int, int | None]) -> Flow | None:
    """``flow`` with OpenFlow port numbers moved (``in_port`` matches, ``output`` actions) and the
    VLAN it matches on moved; None when it names a port or a VLAN that is gone."""
    if all(n == o for o, n in numbers.items()) and not vlans:
        return flow
    match: list[MatchField] = []
    for m in flow.match:
        if isinstance(m, InPort) and isinstance(m.port, int) and m.port in numbers:
            new = numbers[m.port]
            if new is None:
                return None
            m = dataclasses.replace(m, port=new)
        elif isinstance(m, VlanTci | DlVlan) and vlans:
            vid = m.vid if isinstance(m, DlVlan) else m.value & 0xFFF
            covered = isinstance(m, DlVlan) or (m.field in ("vlan_tci", "vlan_vid")
                                                 and (m.mask is None or m.mask & 0xFFF == 0xFFF))
            if covered and vid in vlans:
                now = vlans[vid]
                if now is None:
                    return None
                m = dataclasses.replace(m, vid=now) if isinstance(m, DlVlan) else \
                    dataclasses.replace(m, value=(m.value & ~0xFFF) | now)
        match.append(m)
    actions: list[Action] = []
    for a in flow.actions:
        if isinstance(a, Output) and isinstance(a.port, int) and a.port in numbers:
            new = numbers[a.port]
            if new is None:
                return None
            a = dataclasses.replace(a, port=new)
        actions.append(a)
    return dataclasses.replace(flow, match=tuple(match), actions=tuple(actions))


class OvsBridgeSim:
    """One Open vSwitch bridge, interpreted. ``ports`` (``ovs-ofctl show``) gives the OpenFlow port
    numbers; without it the bridge's ports are numbered from 1 in the order the Bridge lists them,
    the bridge's own port being ``LOCAL``."""

    #: False: ``ct`` looks nothing up and the packet continues as ``+trk+new`` (or the state it came
    #: with), as ``ovs-appctl ofproto/trace`` does without ``--ct-next``
    track_connections: bool = True

    def __init__(self, bridge: Bridge, flows: FlowDump | None, ports: OfctlShow | None) -> None:
        self._bridge: Bridge | bytes = bridge
        self._dump: FlowDump | bytes | None = flows
        self._show: OfctlShow | bytes | None = ports
        self.ports = _sim_ports(bridge, ports)
        self._port_index = PortIndex(self.ports)
        self._by_name = {p.name: p for p in self.ports}
        self._by_number = {p.number: p for p in self.ports}
        static = flows.flows if flows is not None else ()
        self._static: dict[int, list[_Compiled]] = {}
        for seq, f in enumerate(static):  # dump order: among equal priorities the first one wins
            self._static.setdefault(f.table, []).append(_Compiled(f, self._number, seq=seq))
        self._n_static = len(static)
        self._standalone = not static and bridge.fail_mode != "secure"
        self._fdb = MacTable()
        self._learned: dict[tuple[int, int, frozenset[MatchField]], Flow] = {}
        self._learned_saved: bytes | None = None  # a loaded bridge's learned flows, unpickled when asked
        self._tables: dict[int, _Table] = {}
        self._seq = 0
        self.conntrack = Conntrack()
        self._conj_tables = frozenset(t for t, lst in self._static.items() if any(_conjunctions(c) for c in lst))
        # results by input (port, frame, metadata), and by the very frame object (its id: see process)
        self._memo: dict[tuple[str, Ethernet, Meta] | int, _Known | tuple[Ethernet, Meta | None, str, _Known]] = {}
        self._memo_l2: dict[tuple[object, ...], dict[tuple[object, int | None], _L2Seen]] = {}
        self._l2_size = 0  # the entries in _memo_l2 (it is emptied at _MEMO_SIZE)
        self._tversions: dict[int, int] = {}  # per table, its flows changed this many times (see _L2Seen)
        self._version = 0
        self._relearn: dict[tuple[int, int, frozenset[MatchField]], tuple[_Compiled, str]] = {}
        self._alone: dict[tuple[int, int, tuple[tuple[str, int | None], ...]], bool] = {}
        self.reset()

    @property
    def bridge(self) -> Bridge:
        """The bridge's OVSDB row."""
        if isinstance(self._bridge, bytes):
            self._bridge = pickle.loads(self._bridge)
        return self._bridge  # type: ignore[return-value]

    # -- state --------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget learned MACs, learned flows and tracked connections."""
        self._forget_results()
        self.conntrack.clear()
        self._fdb.clear()
        self._learned.clear()
        self._learned_saved = None
        self._tables = {}
        for t, lst in self._static.items():
            table = self._tables[t] = _Table()
            for c in lst:
                table.add(c)
        self._seq = self._n_static

    def __getstate__(self) -> dict[str, object]:
        """The compiled tables as they are (learned flows in place); rows and flows stay pickled
        until asked for, so a loaded bridge does no work before a packet reaches it."""
        learned = self._learned_saved if not self._learned else pickle.dumps(
            self._learned_map(), protocol=pickle.HIGHEST_PROTOCOL)
        return {"bridge": _pickled(self._bridge), "dump": _pickled(self._dump), "show": _pickled(self._show),
                "ports": self.ports, "static": self._static, "n_static": self._n_static, "tables": self._tables,
                "seq": self._seq, "standalone": self._standalone, "fdb": self._fdb, "learned": learned,
                "conntrack": self.conntrack, "conj_tables": self._conj_tables}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._bridge = state["bridge"]  # type: ignore[assignment]
        self._dump = state["dump"]  # type: ignore[assignment]
        self._show = state["show"]  # type: ignore[assignment]
        self.ports = state["ports"]  # type: ignore[assignment]
        self._port_index = PortIndex(self.ports)
        self._by_name = {p.name: p for p in self.ports}
        self._by_number = {p.number: p for p in self.ports}
        self._static = state["static"]  # type: ignore[assignment]
        self._n_static = state["n_static"]  # type: ignore[assignment]
        self._tables = state["tables"]  # type: ignore[assignment]
        self._seq = state["seq"]  # type: ignore[assignment]
        self._standalone = state["standalone"]  # type: ignore[assignment]
        self._fdb = state["fdb"]  # type: ignore[assignment]
        self._learned = {}
        self._learned_saved = state["learned"]  # type: ignore[assignment]
        self.conntrack = state.get("conntrack") or Conntrack()  # type: ignore[assignment]
        self._conj_tables = state.get("conj_tables") or frozenset()  # type: ignore[assignment]
        self._memo = {}
        self._memo_l2 = {}
        self._l2_size = 0
        self._tversions = {}
        self._version = 0
        self._relearn = {}
        self._alone = {}

    def _learned_map(self) -> dict[tuple[int, int, frozenset[MatchField]], Flow]:
        if self._learned_saved is not None:
            merged: dict[tuple[int, int, frozenset[MatchField]], Flow] = pickle.loads(self._learned_saved)
            for k, v in self._learned.items():  # learned since loading: a re-learned flow keeps its place
                merged[k] = v
            self._learned, self._learned_saved = merged, None
        return self._learned

    def _live_installs(self) -> list[Flow]:
        """The learned flows in their tables, in the order they were (last) installed."""
        live = [c for t in self._tables.values() for c in t.flows() if c.learned]
        return [c.flow for c in sorted(live, key=lambda c: c.seq)]

    def built_from(self, bridge: Bridge, flows: FlowDump | None, ports: OfctlShow | None) -> bool:
        """Whether this bridge was built from these rows, flows and port numbers (a loaded one
        compares their pickled forms: equal bytes are equal rows, different ones are taken as
        different)."""
        return all(_same(mine, theirs) for mine, theirs in ((self._bridge, bridge), (self._show, ports),
                                                           (self._dump, flows)))

    def take_over(self, old: OvsBridgeSim, vlans: Mapping[int, int | None] | None = None) -> None:
        """Keep what ``old`` (this bridge before a change) learned: MAC entries on ports it still
        has, and learned flows, their port numbers translated by port name (a flow naming a port
        that is gone is dropped). ``vlans``: the host's local VLANs renumbered (old -> new, None:
        gone), which MAC entries and the VLAN a learned flow matches on follow."""
        moves = dict(vlans or {})
        self._forget_results()
        self.conntrack = old.conntrack.clone()
        if moves:
            self.conntrack.rezone(moves)  # the firewall's zones are the local VLANs
        for vlan, mac, port in old.mac_table:
            now = moves.get(vlan, vlan)
            if port in self._by_name and now is not None:
                self._fdb.learn(now, mac, port)
        numbers: dict[int, int | None] = {}
        for p in old.ports:
            here = self._by_name.get(p.name)
            numbers[p.number] = here.number if here is not None else None
        for flow in old._live_installs():
            moved = _renumber(flow, numbers, moves)
            if moved is not None:
                self._install(moved)

    def forget(self, macs: Collection[Mac]) -> None:
        """Drop MAC entries and learned flows of ``macs`` (instances that are gone)."""
        self._forget_results()
        self._fdb.forget(macs)
        learned = self._learned_map()
        for key, flow in list(learned.items()):
            if any(isinstance(m, EthMatch) and m.mask is None and m.mac in macs for m in flow.match):
                del learned[key]
                table = self._tables.get(flow.table)
                if table is not None:
                    table.remove_same(self._compile(flow, learned=True))

    @property
    def learned_flows(self) -> tuple[Flow, ...]:
        """The flows ``learn`` installed, in learning order (a re-learned flow keeps its place)."""
        return tuple(self._learned_map().values())

    @property
    def mac_table(self) -> tuple[tuple[int, Mac, str], ...]:
        """NORMAL's learned ``(vlan, mac, port)`` entries."""
        return self._fdb.entries()

    def flows(self, table: int) -> tuple[Flow, ...]:
        """The live flows of ``table`` (learned ones included) in lookup order."""
        t = self._tables.get(table)
        return tuple(c.flow for c in t.flows()) if t is not None else ()

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
        return _Compiled(flow, self._number, learned, self._seq)

    def _forget_results(self, installed: _Compiled | None = None) -> None:
        """The flow tables (or everything) changed: no remembered result holds any more.
        ``installed``: the change is that flow's install (see :meth:`_is_alone`)."""
        self._version += 1
        self._memo.clear()
        if installed is None:  # a reset, forget or take_over: what _learn kept goes too
            self._alone.clear()
            self._relearn.clear()
            self._memo_l2.clear()
            self._l2_size = 0
        else:  # (a remembered header's result holds while the tables it looked up are unchanged)
            self._tversions[installed.flow.table] = self._tversions.get(installed.flow.table, 0) + 1

    def _install(self, flow: Flow) -> _Compiled:
        self._learned[_learn_key(flow)] = flow
        table = self._tables.get(flow.table)
        if table is None:
            table = self._tables[flow.table] = _Table()
        c = self._compile(flow, learned=True)
        self._forget_results(c)
        table.remove_same(c)
        table.add(c)
        self._seq += 1
        for k in [k for k in self._alone if k[0] == flow.table and k[1] == c.priority]:
            # a flow of that priority came in: the signature is no longer alone when the new flow
            # has another one, or shares its values with another flow of that priority
            if k[2] != c.sig or sum(1 for x in table.subtables[c.sig].buckets[c.key] if x.priority == c.priority) > 1:
                self._alone[k] = False
        return c

    def _learn(self, flow: Flow, run: _Run) -> str:
        """``learn`` installs ``flow``, and its step's text. A flow learned again exactly as it is
        (the same match, priority, actions, cookie and timeouts; br-tun learns a remote MAC from
        every packet out of a tunnel) is not replaced: it takes the next install number, as the
        replaced one would, when no other flow of its priority in its table could match a packet
        it matches (each is in its subtable under another key: :meth:`_is_alone`). Its place
        among flows of its priority then decides no lookup, so the flow tables answer every packet
        as before and the bridge's remembered results still hold; ``learned_flows``, the tables'
        order and :meth:`_live_installs` are what a replacement gives."""
        run.learns.append(flow)
        key = _learn_key(flow)
        got = self._relearn.get(key)
        if got is not None:
            c, known = got
            table = self._tables.get(flow.table)
            if table is not None and (c.flow is flow or c.flow == flow) and self._is_alone(flow.table, table, c) and any(
                    x is c for x in table.by_ident.get((c.priority, c.sig, c.key), ())):
                c.seq = self._seq
                self._seq += 1
                run.relearned.append(c)
                return known
        c = self._install(flow)
        text = _learned_text(flow)
        self._relearn[key] = (c, text)
        return text

    def _is_alone(self, number: int, table: _Table, c: _Compiled) -> bool:
        """Whether every flow of ``c``'s priority in ``table`` matches the fields ``c`` matches,
        with the same masks, and no two share their values: no packet matches two of them, so
        their order (install numbers) decides nothing. Worked out once per signature, kept up to
        date by each install (:meth:`_install`), forgotten by a reset, forget or take_over."""
        k = (number, c.priority, c.sig)
        got = self._alone.get(k)
        if got is None:
            got = True
            for sub in table.order:
                if sub.top < c.priority:
                    break  # the subtables by their highest priority, highest first
                for bucket in sub.buckets.values():
                    n = sum(1 for x in bucket if x.priority == c.priority)
                    if n > 1 or (n and sub.sig != c.sig):
                        got = False
                        break
                if not got:
                    break
            self._alone[k] = got
        return got

    # -- processing ---------------------------------------------------------------------------------

    def process(self, in_port: str, frame: Ethernet, meta: Meta | None = None, *,
                unfollowed: Unfollowed | None = None, remember: bool = True) -> Result:
        """Run ``frame``, arrived on port ``in_port`` with ``meta``, through the bridge.
        ``unfollowed``: says which copies NORMAL floods the caller would not follow; they are
        left out of the outputs (and counted in :attr:`Result.pruned`). ``remember`` False: the
        caller will seldom send an equal frame again (a boot: each guest's DHCP messages are its
        own; only a boot again or after probes meets some), so the memory of whole inputs is
        neither asked nor filled (hashing the frame and storing its result would hardly pay); the header memory (:class:`_L2Seen`) is used as
        ever. The result is the same either way: that memory only hands back a result equal to
        the one worked out."""
        if unfollowed is None and remember:
            # the very frame and metadata objects met on this port before and answered from the
            # memory: that answer's entry, found without building and hashing the key (the
            # frame's and the metadata's hashes are Python code). It sits in the memory itself,
            # under the frame's id (an int: no input key is one), so whatever empties the memory
            # drops it; it holds the frame (its id is not reused while it is there) and is
            # checked as a lookup checks its entry. An input's entry is only replaced when it no
            # longer holds (or is gone), so one that still holds is the one under the key.
            hit = self._memo.get(id(frame))
            if hit is not None and hit[0] is frame and hit[1] is meta and hit[2] == in_port:
                entry: _Known = hit[3]
                if entry[0] == self._fdb.changes and entry[1] == self._version:
                    if not entry[3]:
                        return entry[2]
                    self._numbered_again(entry[3])
                    r = entry[2]
                    return Result(r.outputs, r.steps, r.pruned)
        given = meta
        port = self._by_name.get(in_port)
        if port is None:
            raise InvalidInput(f"bridge {self.bridge.name} has no port {in_port!r}")
        meta = meta or _NO_META
        key = (in_port, frame, meta)
        fdb_changes, version = self._fdb.changes, self._version
        if type(self) is not OvsBridgeSim:  # a subclass (ofproto/trace's recorder) sees every translation
            return self._process(port, frame, meta, unfollowed)[0]
        if unfollowed is None and remember:
            try:
                known: _Known | None = self._memo.get(key)  # type: ignore[assignment]
            except TypeError:  # a frame holding something unhashable: not remembered
                return self._process(port, frame, meta, unfollowed)[0]
            if known is not None and known[0] == fdb_changes and known[1] == version:
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[id(frame)] = (frame, given, in_port, known)  # (see above)
                if not known[3]:
                    return known[2]
                self._numbered_again(known[3])
                r = known[2]
                return Result(r.outputs, r.steps, r.pruned)
        hk = _header_key(frame)
        if hk is None:
            return self._process(port, frame, meta, unfollowed)[0]
        values = hk[0]
        bare = (in_port, values[1:], meta, unfollowed is None)  # (the header but its destination)
        dst, src = values[0], frame.src.value
        tv = self._tversions
        memo = self._memo_l2
        by_macs = memo.get(bare)  # (the entries under it by the MACs they read: None where not read)
        for k in () if by_macs is None else ((None, None), (dst, None), (None, src), (dst, src)):
            seen = by_macs.get(k)  # type: ignore[union-attr]
            if seen is None or (seen.fdb_changes is not None and seen.fdb_changes != fdb_changes):
                continue
            if seen.version != version:  # (the tables it looked up, checked once per bridge version)
                for t, n in seen.tables:
                    if tv.get(t, 0) != n:
                        break
                else:
                    seen.version = version
            if seen.version == version:
                res, relearned = seen.again(self, frame, hk[1], unfollowed)
                if unfollowed is None and remember and self._fdb.changes == fdb_changes \
                        and self._version == version:
                    if len(self._memo) >= _MEMO_SIZE:  # (the very result object for this very input again:
                        self._memo.clear()  # the world replays its whole hop for it)
                    self._memo[key] = (fdb_changes, version, res, tuple(relearned))
                return res
        result = self._process(port, frame, meta, unfollowed)
        run = result[2]
        if result[1] and self._fdb.changes == fdb_changes and self._version == version and unfollowed is None \
                and remember:
            # no ct(), no new learned flow, no MAC learned: the same packet on the same port gives
            # the same result until the flows or the MAC table change (the key is the whole input)
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = (fdb_changes, version, result[0], tuple(run.relearned))
        if result[1] and not result[3].deep:
            # nothing read or wrote more than the Ethernet header and tags: see _L2Seen
            tables = tuple((t, tv.get(t, 0)) for t in dict.fromkeys(run.tables))
            looked = {t for t, _ in tables}
            if not any(f.table in looked for f in run.learns):
                got = _L2Seen.of(hk[1], result[0], run, fdb_changes, tables)
                if got is not None:
                    if got.fdb_changes is not None and self._fdb.changes != fdb_changes:
                        return result[0]  # (it learned a MAC: its NORMAL step says so)
                    if self._l2_size >= _MEMO_SIZE:
                        memo.clear()
                        self._l2_size = 0
                    kept = run.normals > 0 and got.normal is None  # (NORMAL's step names both MACs)
                    macs = (dst if result[3].dst or kept else None, src if result[3].src or kept else None)
                    entries = memo.setdefault(bare, {})
                    if macs not in entries:
                        self._l2_size += 1
                    got.version = self._version
                    entries[macs] = got
        return result[0]

    def _numbered_again(self, relearned: tuple[_Compiled, ...]) -> None:
        """A remembered run's learn actions again: the flows they learned take the next numbers."""
        for c in relearned:
            c.seq = self._seq
            self._seq += 1

    def _process(self, port: SimPort, frame: Ethernet, meta: Meta,
                 unfollowed: Unfollowed | None) -> tuple[Result, bool, _Run, _Ctx]:
        """:meth:`process`'s work: the result, whether it may be remembered (no ct() ran), the run
        (the flows its learn actions learned again as they were, :meth:`_learn`; the tables it
        looked up; where NORMAL ran) and the packet's context (what was read of it:
        ``_Ctx.deep``, ``_Ctx.src``)."""
        ctx = _Ctx(frame, port.number, meta)
        run = _Run(unfollowed)
        if self._standalone:
            self._normal(ctx, run, "no flows and fail_mode is not secure: standalone switching")
        else:
            try:
                self._table(ctx, 0, run, 0)
            except _Loop:
                run.outputs.clear()
                run.pruned = 0
                run.steps.append(Step(StepKind.DROP, "resubmit loop",
                                      f"loop: resubmit depth exceeded {MAX_RESUBMIT_DEPTH}; the packet is dropped"))
                ctx.deep = True  # (not remembered by its header)
                return Result((), tuple(run.steps)), not run.volatile, run, ctx
        run.ended = len(run.steps)
        return self._finish(run), not run.volatile, run, ctx

    @staticmethod
    def _finish(run: _Run) -> Result:
        """The result of a run whose pipeline ended: with the drop step when it sent nothing."""
        if not run.outputs and not run.pruned:
            if run.drop_flow is not None:
                run.steps.append(Step(StepKind.DROP, run.drop_flow, "explicit drop"))
            elif run.miss is not None:
                run.steps.append(Step(StepKind.DROP, f"table={run.miss}",
                                      f"no flow matched in table {run.miss} (a table miss drops, "
                                      "as on OpenFlow 1.3+ bridges)"))
            elif not any(s.kind is StepKind.DROP for s in run.steps):
                run.steps.append(Step(StepKind.DROP, "", "no output action"))
        return _new_result(tuple(run.outputs), tuple(run.steps), run.pruned)

    def _lookup(self, table: int, ctx: _Ctx) -> _Compiled | None:
        t = self._tables.get(table)
        if t is None:
            return None
        if table not in self._conj_tables:
            return t.lookup(ctx)
        return self._conj_lookup(t, ctx)

    def _conj_lookup(self, t: _Table, ctx: _Ctx) -> _Compiled | None:
        """A lookup in a table with ``conjunction`` flows (OVS's classifier, ``find_conjunctive_match``):
        the best matching flow wins unless, at a priority at least as high, every dimension of a
        conjunction has a matching flow; then the lookup is done again with ``conj_id`` set."""
        ctx.conj_id = 0
        best: _Compiled | None = None
        dims: dict[int, dict[int, set[int]]] = {}  # priority -> conj id -> dimensions matched
        needed: dict[int, int] = {}
        for c in t.flows():
            if best is not None and c.priority < best.priority:
                break
            if _packet_key(c.sig, ctx) != c.key or (c.rest and not c.rest_matches(ctx)):
                continue
            conj = _conjunctions(c)
            if not conj:
                if best is None:
                    best = c
                continue
            for cid, k, n in conj:
                dims.setdefault(c.priority, {}).setdefault(cid, set()).add(k)
                needed[cid] = n
        floor = best.priority if best is not None else -1
        for prio in sorted(dims, reverse=True):
            if prio < floor:
                break
            done = sorted(cid for cid, ks in dims[prio].items() if len(ks) >= needed[cid])
            for cid in done:
                ctx.conj_id = cid
                for c in t.flows():
                    if c.priority < floor:
                        break
                    if (IntMatch("conj_id", cid) in c.flow.match and _packet_key(c.sig, ctx) == c.key
                            and (not c.rest or c.rest_matches(ctx))):
                        return c
            ctx.conj_id = 0
        return best

    def _table(self, ctx: _Ctx, table: int, run: _Run, depth: int) -> None:
        if depth > MAX_RESUBMIT_DEPTH:
            raise _Loop
        run.tables.append(table)
        pending = len(run.pending)  # (the learn actions of this table's flow come after these)
        c = self._lookup(table, ctx)
        if c is None:
            run.miss = table
            return
        slot = len(run.steps)
        steps = run.steps
        steps.append(c.head)
        actions = c.actions
        if not actions:
            run.drop_flow = c.text
            steps[slot] = c.step(("learned flow: " if c.learned else "") + "drop")
            return
        if type(self) is OvsBridgeSim:  # each action's handler by its class, without _action's call
            get = _ACTIONS.get
            effects = [(get(type(a)) or OvsBridgeSim._action)(self, a, ctx, run, depth, table) for a in actions]
        else:  # a subclass (ofproto/trace's recorder) sees every action
            effects = self._apply(actions, ctx, run, depth, table)
        prefix = "learned flow: " if c.learned else ""
        steps[slot] = c.step(prefix + "; ".join(effects))
        if len(run.pending) > pending:  # where its learn actions that read the source are (see _SrcLearn)
            j = -1
            for rec in run.pending[pending:]:
                j = next(k for k in range(j + 1, len(actions)) if actions[k] is rec.learn)
                rec.slot, rec.flow_text, rec.prefix, rec.effects, rec.at = slot, c.text, prefix, tuple(effects), j
            del run.pending[pending:]

    def _emit(self, ctx: _Ctx, port: SimPort, run: _Run, frame: Ethernet | None = None) -> None:
        meta = _NO_META
        if port.kind is PortKind.TUNNEL:
            key, remote, local = _tunnel_options(port)
            tun_id = ctx.tun_id if key is None else key
            tun_dst = remote if remote is not None else (IPv4Address(ctx.tun_dst) if ctx.tun_dst else None)
            meta = Meta(tun_id=tun_id, tun_src=local, tun_dst=tun_dst)
        run.outputs.append(_new_emit(port.name, ctx.frame if frame is None else frame, meta))

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
        run.normals += 1
        start = (len(run.steps), len(run.outputs), run.pruned, ctx.frame, ctx.in_port, ctx.tun_id, ctx.tun_dst, why)
        self._switch(ctx, run, why)
        if run.normals == 1:
            run.normal = _NormalAt(*start, len(run.steps), len(run.outputs), run.pruned)

    def _switch(self, ctx: _Ctx, run: _Run, why: str | None) -> None:
        in_port = self._by_number.get(ctx.in_port)
        if in_port is None:
            run.steps.append(Step(StepKind.NORMAL, "NORMAL", "dropped: the input port is not a port of the bridge"))
            return
        copies, detail, pruned = normal(self._port_index, in_port, ctx.frame, self._fdb, unfollowed=run.unfollowed)
        run.pruned += pruned
        for port, frame in copies:
            self._emit(ctx, port, run, frame)
        run.steps.append(new_step(StepKind.NORMAL, "NORMAL", f"{why}; {detail}" if why else detail, ""))

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
        """Run action ``a``: its handler by the action's class (:data:`_ACTIONS`), and its effect as text."""
        handler = _ACTIONS.get(type(a))
        if handler is not None:
            return handler(self, a, ctx, run, depth, table)
        for cls, h in _ACTIONS.items():  # (a subclass of an action class: the first that fits, as before)
            if isinstance(a, cls):
                return h(self, a, ctx, run, depth, table)
        if isinstance(a, GenericAction) and a.text == "ct_clear":
            ctx.ct_state = ctx.ct_zone = ctx.ct_mark = ctx.ct_label = 0
            ctx.ct_pending = {}
            return "ct_clear: the packet's conntrack fields are cleared (untracked again)"
        if isinstance(a, GenericAction) and _CONJUNCTION.fullmatch(a.text):
            return f"{a.text}: one dimension of a conjunctive match (it has no effect when run)"
        if isinstance(a, GenericAction) and a.text == "dec_ttl":
            ip4 = _ip(ctx)
            if ip4 is None:
                return "dec_ttl: not IP, no change"
            if ip4.ttl <= 1:
                return self._controller(run)
            _set(ctx, "nw_ttl", ip4.ttl - 1)
            return f"TTL {ip4.ttl} -> {ip4.ttl - 1}"
        return f"{format_action(a)}: not modelled, ignored"

    # One method per action class (see _ACTIONS): each returns the action's effect as text.

    def _a_output(self, a: Output, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        return self._output(ctx, a.port, run)

    def _a_set_vlan_vid(self, a: SetVlanVid, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
        tci = _tci(before)
        if not tci & 0x1000 and not a.push:
            return "set_vlan_vid on an untagged frame: no change"
        ctx.frame = _set_tci(before, (tci & 0xE000) | 0x1000 | (a.vid & 0xFFF))
        return _describe_tci(before, ctx.frame)

    def _a_set_vlan_pcp(self, a: SetVlanPcp, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
        tci = _tci(before)
        if not tci & 0x1000 and not a.push:
            return "set_vlan_pcp on an untagged frame: no change"
        ctx.frame = _set_tci(before, (tci & 0x1FFF) | 0x1000 | ((a.pcp & 7) << 13))
        return f"VLAN priority {a.pcp}"

    def _a_strip_vlan(self, a: StripVlan, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
        if not isinstance(before.payload, Dot1Q):
            return "strip_vlan on an untagged frame: no change"
        ctx.frame = pop_vlan(before)
        return _describe_tci(before, ctx.frame)

    def _a_push_vlan(self, a: PushVlan, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
        tci = _tci(before)
        ctx.frame = push_vlan(before, tci & 0xFFF, pcp=tci >> 13 if tci else 0)
        return f"pushed a VLAN tag (VID {tci & 0xFFF})"

    def _a_set_tunnel(self, a: SetTunnel, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        ctx.tun_id = a.tun_id
        return f"tun_id={a.tun_id:#x}"

    def _a_resubmit(self, a: Resubmit | GotoTable, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        target = a.table if a.table is not None else table
        self._resubmit(ctx, target, a.port if isinstance(a, Resubmit) else None, run, depth)
        return f"resubmit to table {target}" if isinstance(a, Resubmit) else f"goto table {target}"

    def _a_load(self, a: Load, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
        ok = _write_sub(ctx, a.dst, a.value)
        return self._changed(a, before, ctx, ok)

    def _a_move(self, a: Move, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
        v = _read_sub(ctx, a.src)
        ok = v is not None and _write_sub(ctx, a.dst, v)
        return self._changed(a, before, ctx, ok)

    def _a_set_field(self, a: SetField, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
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

    def _a_set_eth(self, a: SetEthAddr, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        _set(ctx, "eth_src" if a.field == "dl_src" else "eth_dst", a.mac.value)
        return f"{a.field}={a.mac}"

    def _a_set_ipv4(self, a: SetIPv4Addr, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
        ok = _ip(ctx) is not None and _set(ctx, "ip_src" if a.field == "nw_src" else "ip_dst", int(a.address))
        return self._changed(a, before, ctx, ok)

    def _a_set_l4(self, a: SetL4Port, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        before = ctx.frame
        ok = _get_tp(ctx, a.field == "tp_dst") is not None and _set(
            ctx, "tcp_dst" if a.field == "tp_dst" else "tcp_src", a.port)
        return self._changed(a, before, ctx, ok)

    def _a_controller(self, a: Controller, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        return self._controller(run)

    def _a_ct(self, a: Ct, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        return self._ct(a, ctx, run, depth)

    def _a_note(self, a: Note, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        return "note (no effect)"

    def _a_learn(self, a: Learn, ctx: _Ctx, run: _Run, depth: int, table: int) -> str:
        if ctx.src:
            return self._learn(_learned(ctx, a), run)
        reads = _learn_reads(ctx, a)
        text = self._learn(_learned_of(a, reads), run)
        if ctx.src:  # it read the source (nothing did before): kept with what else it read, not
            ctx.src = False  # in the run's key (see _SrcLearn)
            rec = _SrcLearn(a, reads, _src_bits(a))
            run.src_learns[len(run.learns) - 1] = rec
            run.pending.append(rec)
        return text

    def _changed(self, a: Action, before: Ethernet, ctx: _Ctx, ok: bool) -> str:
        text = format_action(a)
        if not ok:
            return f"{text}: the packet has no such field, no change"
        if _tci(before) != _tci(ctx.frame):
            return _describe_tci(before, ctx.frame)
        return text

    def _ct(self, a: Ct, ctx: _Ctx, run: _Run, depth: int) -> str:
        """``ct(...)`` on the bridge's conntrack (see the module's docstring)."""
        run.volatile = True
        zone = a.zone if isinstance(a.zone, int) else (
            _read_sub(ctx, a.zone) or 0 if a.zone is not None else 0)
        if not self.track_connections:
            return self._ct_untracked(a, ctx, run, depth, zone)
        ip4 = _ip(ctx)
        if ip4 is None:
            state, ref = _CT_TRK | _CT_INV, None
            said = "not IPv4: tracked as invalid"
        else:
            ref = ctx.ct_pending.get(zone)
            if ref is None or ref.conn is None or ref.conn.confirmed:
                ref = self.conntrack.lookup(ip4, zone)
            state = _ct_bits(ref)
            said = _ct_words(state, zone)
        notes: list[str] = []
        if ref is not None and ref.conn is not None:
            conn = ref.conn
            if a.nat is not None and a.nat.kind and a.commit and not conn.confirmed and not conn.nat_done:
                notes.append(self._ct_bind(a.nat, conn))
            if a.nat is not None and conn.nat_done:
                notes.append(self._ct_nat(ctx, conn, ref.direction))
            if a.commit:
                if not conn.confirmed and ref.state is ConnState.NEW:
                    self.conntrack.confirm(ref)
                    notes.append("committed")
                for x in a.exec_:
                    notes.append(self._ct_exec(x, conn))
                ctx.ct_pending.pop(zone, None)
            elif not conn.confirmed:
                ctx.ct_pending[zone] = ref
        elif a.commit:
            notes.append("nothing to commit")
        where = f"; continues in table {a.table} (recirculation)" if a.table is not None else ""
        detail = said + ("; " + ", ".join(notes) if notes else "") + where
        run.steps.append(Step(StepKind.CONNTRACK, format_action(a), detail))
        mark = ref.conn.mark if ref is not None and ref.conn is not None else 0
        label = ref.conn.label if ref is not None and ref.conn is not None else 0
        if a.table is not None:
            saved = (ctx.ct_state, ctx.ct_zone, ctx.ct_mark, ctx.ct_label)
            ctx.ct_state, ctx.ct_zone, ctx.ct_mark, ctx.ct_label = state, zone, mark, label
            try:
                self._resubmit(ctx, a.table, None, run, depth)
            finally:
                ctx.ct_state, ctx.ct_zone, ctx.ct_mark, ctx.ct_label = saved
            return f"ct: {said}, continued in table {a.table}"
        return f"ct: {detail}"

    def _ct_untracked(self, a: Ct, ctx: _Ctx, run: _Run, depth: int, zone: int) -> str:
        state = ctx.ct_state
        if not state & (_CT_NEW | _CT_EST | _CT_REL | _CT_INV):
            state |= _CT_NEW
        state |= _CT_TRK
        where = f", continues in table {a.table}" if a.table is not None else ""
        run.steps.append(Step(StepKind.CONNTRACK, format_action(a),
                              f"no connection looked up: taken as {_ct_words(state, zone)}{where}"))
        if a.table is not None:
            ctx.ct_state, ctx.ct_zone = state, zone
            try:
                self._resubmit(ctx, a.table, None, run, depth)
            finally:
                ctx.ct_state = ctx.ct_zone = ctx.ct_mark = ctx.ct_label = 0
            return f"ct (untracked), continued in table {a.table}"
        return "ct (untracked): pass-through"

    def _ct_exec(self, x: Action, conn: Connection) -> str:
        if isinstance(x, SetField) and x.field in ("ct_mark", "ct_label"):
            v = value_to_int(x.value)
            m = value_to_int(x.mask) if x.mask is not None else (1 << (32 if x.field == "ct_mark" else 128)) - 1
            if x.field == "ct_mark":
                conn.mark = (conn.mark & ~m) | (v & m)
                return f"ct_mark={conn.mark:#x} on the connection"
            conn.label = (conn.label & ~m) | (v & m)
            return f"ct_label={conn.label:#x} on the connection"
        if isinstance(x, Load) and field_info(x.dst.field) is not None:
            info, off, n = _bits(x.dst)
            m = ((1 << n) - 1) << off
            if info.name == "ct_mark":
                conn.mark = (conn.mark & ~m) | ((x.value << off) & m)
                return f"ct_mark={conn.mark:#x} on the connection"
            if info.name == "ct_label":
                conn.label = (conn.label & ~m) | ((x.value << off) & m)
                return f"ct_label={conn.label:#x} on the connection"
        return f"{format_action(x)}: not a ct_mark/ct_label write, ignored"

    def _ct_bind(self, nat: Nat, conn: Connection) -> str:
        """``nat(src=…)``/``nat(dst=…)`` on a connection being committed: its binding (the range's
        first address and port)."""
        try:
            addr = IPv4Address(nat.addr_min or "")
        except ValueError:
            return f"nat: {nat.addr_min!r} is not an IPv4 address, no binding"
        manip = Manip.SRC if nat.kind == "src" else Manip.DST
        ports = (nat.port_min, nat.port_max or nat.port_min) if nat.port_min is not None else None
        self.conntrack.bind(conn, manip, addr, nat.port_min, ports)
        return f"{nat.kind} NAT to {addr}" + (f":{nat.port_min}" if nat.port_min is not None else "")

    def _ct_nat(self, ctx: _Ctx, conn: Connection, direction: Direction) -> str:
        """Apply the connection's NAT bindings to the packet (original direction: as bound; replies:
        undone)."""
        want = conn.tuple(direction.other).inverse()
        ip4 = _ip(ctx)
        if ip4 is None:
            return "nat: not IPv4"
        changed = []
        if int(ip4.src) != int(want.src):
            _set(ctx, "ip_src", int(want.src))
            changed.append(f"source {want.src}")
        if int(ip4.dst) != int(want.dst):
            _set(ctx, "ip_dst", int(want.dst))
            changed.append(f"destination {want.dst}")
        return "nat: " + (", ".join(changed) if changed else "no change")


_CONJUNCTION = re.compile(r"conjunction\((\d+),(\d+)/(\d+)\)")


_ActionFn = Callable[[OvsBridgeSim, Any, _Ctx, _Run, int, int], str]
_ACTIONS: dict[type, _ActionFn] = {
    Output: OvsBridgeSim._a_output,
    SetVlanVid: OvsBridgeSim._a_set_vlan_vid,
    SetVlanPcp: OvsBridgeSim._a_set_vlan_pcp,
    StripVlan: OvsBridgeSim._a_strip_vlan,
    PushVlan: OvsBridgeSim._a_push_vlan,
    SetTunnel: OvsBridgeSim._a_set_tunnel,
    Resubmit: OvsBridgeSim._a_resubmit,
    GotoTable: OvsBridgeSim._a_resubmit,
    Load: OvsBridgeSim._a_load,
    Move: OvsBridgeSim._a_move,
    SetField: OvsBridgeSim._a_set_field,
    SetEthAddr: OvsBridgeSim._a_set_eth,
    SetIPv4Addr: OvsBridgeSim._a_set_ipv4,
    SetL4Port: OvsBridgeSim._a_set_l4,
    Controller: OvsBridgeSim._a_controller,
    Ct: OvsBridgeSim._a_ct,
    Note: OvsBridgeSim._a_note,
    Learn: OvsBridgeSim._a_learn,
}
"""Each action class's handler, in the order the interpreter tested them (see ``_action``)."""


def _conjunctions(c: _Compiled) -> tuple[tuple[int, int, int], ...]:
    """The ``conjunction(ID,K/N)`` actions of a flow, as (id, k, n); empty for other flows."""
    out = []
    for a in c.flow.actions:
        if not isinstance(a, GenericAction):
            return ()
        m = _CONJUNCTION.fullmatch(a.text)
        if m is None:
            return ()
        out.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    return tuple(out)


def _ct_bits(ref: CtRef) -> int:
    """The ct_state bits OVS gives a packet conntrack classified as ``ref``."""
    bits = _CT_TRK
    if ref.state is ConnState.NEW:
        bits |= _CT_NEW
    elif ref.state is ConnState.ESTABLISHED:
        bits |= _CT_EST
    elif ref.state is ConnState.RELATED:
        bits |= _CT_REL
    elif ref.state is ConnState.INVALID:
        bits |= _CT_INV
    if ref.conn is not None and ref.direction is Direction.REPLY and ref.state is not ConnState.INVALID:
        bits |= _CT_RPL
    if ref.conn is not None and ref.conn.snat:
        bits |= _CT_SNAT
    if ref.conn is not None and ref.conn.dnat:
        bits |= _CT_DNAT
    return bits


def _ct_words(state: int, zone: int) -> str:
    names = [n for bit, n in ((_CT_NEW, "new"), (_CT_EST, "est"), (_CT_REL, "rel"), (_CT_RPL, "rpl"),
                              (_CT_INV, "inv"), (_CT_TRK, "trk"), (_CT_SNAT, "snat"), (_CT_DNAT, "dnat"))
             if state & bit]
    return "ct_state=" + "".join("+" + n for n in names) + f" in zone {zone}"
