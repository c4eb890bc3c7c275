"""OpenFlow match fields in ovs-ofctl syntax: typed fields, a parser, and OVS's canonical printer.

The printer follows ``match_format`` in Open vSwitch's ``lib/match.c``: fields in OVS's own order,
``dl_type``/``nw_proto`` folded into the ``ip``/``tcp``/``icmp6``… shorthands, VLAN matches shown as
``dl_vlan``/``dl_vlan_pcp`` when they can be, masked IPs as CIDR, MACs lower-case.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from neutrino.host.openflow_fields import (
    Kind,
    Mac,
    Port,
    field_info,
    format_port,
    parse_int,
    parse_port,
)

__all__ = [
    "CtState", "EthMatch", "FlagsMatch", "InPort", "IntMatch", "IPv4Match", "IPv6Match", "MatchField",
    "Proto", "ProtoMatch", "VlanTci", "DlVlan", "DlVlanPcp", "format_match", "parse_match_field",
]


class Proto(enum.Enum):
    """The protocol shorthands of ovs-ofctl: an Ethernet type and, for some, an IP protocol."""

    IP = "ip"
    IPV6 = "ipv6"
    ICMP = "icmp"
    ICMP6 = "icmp6"
    TCP = "tcp"
    TCP6 = "tcp6"
    UDP = "udp"
    UDP6 = "udp6"
    SCTP = "sctp"
    SCTP6 = "sctp6"
    ARP = "arp"
    RARP = "rarp"
    MPLS = "mpls"
    MPLSM = "mplsm"

    @property
    def dl_type(self) -> int:
        return _PROTO_TYPES[self][0]

    @property
    def nw_proto(self) -> int | None:
        return _PROTO_TYPES[self][1]


ETH_IP, ETH_IPV6, ETH_ARP, ETH_RARP = 0x0800, 0x86DD, 0x0806, 0x8035
_PROTO_TYPES: dict[Proto, tuple[int, int | None]] = {
    Proto.IP: (ETH_IP, None), Proto.IPV6: (ETH_IPV6, None),
    Proto.ICMP: (ETH_IP, 1), Proto.ICMP6: (ETH_IPV6, 58),
    Proto.TCP: (ETH_IP, 6), Proto.TCP6: (ETH_IPV6, 6),
    Proto.UDP: (ETH_IP, 17), Proto.UDP6: (ETH_IPV6, 17),
    Proto.SCTP: (ETH_IP, 132), Proto.SCTP6: (ETH_IPV6, 132),
    Proto.ARP: (ETH_ARP, None), Proto.RARP: (ETH_RARP, None),
    Proto.MPLS: (0x8847, None), Proto.MPLSM: (0x8848, None),
}
_SHORTHAND = {v: k for k, v in _PROTO_TYPES.items()}


@dataclass(frozen=True, slots=True)
class ProtoMatch:
    """``ip``, ``tcp6``, ``arp``…"""

    proto: Proto


@dataclass(frozen=True, slots=True)
class InPort:
    """``in_port=N``, ``in_port=LOCAL`` or ``in_port=NAME``."""

    port: Port


@dataclass(frozen=True, slots=True)
class EthMatch:
    """An Ethernet address field (``dl_src``, ``dl_dst``, ``arp_sha``, ``arp_tha``, ``nd_sll``, ``nd_tll``)."""

    field: str
    mac: Mac
    mask: Mac | None = None


@dataclass(frozen=True, slots=True)
class IPv4Match:
    """An IPv4 field (``nw_src``, ``nw_dst``, ``arp_spa``, ``arp_tpa``, ``tun_src``…) with its mask."""

    field: str
    address: ipaddress.IPv4Address
    mask: ipaddress.IPv4Address | None = None

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        """The matched prefix, when the mask is a CIDR mask."""
        mask = int(self.mask) if self.mask is not None else 0xFFFFFFFF
        try:
            return ipaddress.IPv4Network((int(self.address) & mask, str(ipaddress.IPv4Address(mask))))
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class IPv6Match:
    """An IPv6 field (``ipv6_src``, ``ipv6_dst``, ``nd_target``…) with its mask."""

    field: str
    address: ipaddress.IPv6Address
    mask: ipaddress.IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class DlVlan:
    """``dl_vlan=VID`` (a tagged frame with that VLAN ID; 0xffff means untagged)."""

    vid: int


@dataclass(frozen=True, slots=True)
class DlVlanPcp:
    """``dl_vlan_pcp=PCP``."""

    pcp: int


@dataclass(frozen=True, slots=True)
class VlanTci:
    """``vlan_tci=V[/M]`` (``vlan_vid``/``vlan_pcp`` OXM matches are kept here too, with ``field``)."""

    value: int
    mask: int | None = None
    field: str = "vlan_tci"


@dataclass(frozen=True, slots=True)
class IntMatch:
    """Any integer field: tun_id, reg0-15, metadata, ct_zone, ct_mark, tp_src, icmp_type, nw_proto…

    ``field`` is the name OVS prints in a match (``tp_dst`` for ``tcp_dst``).
    """

    field: str
    value: int
    mask: int | None = None


class CtFlag(enum.IntFlag):
    """Connection-tracking state bits, in OVS's bit order."""

    new = 0x01
    est = 0x02
    rel = 0x04
    rpl = 0x08
    inv = 0x10
    trk = 0x20
    snat = 0x40
    dnat = 0x80


@dataclass(frozen=True, slots=True)
class CtState:
    """``ct_state=+trk+est-new`` (value and mask over :class:`CtFlag` bits)."""

    value: int
    mask: int

    def required(self) -> tuple[tuple[bool, CtFlag], ...]:
        """The constrained flags, each with whether it must be set."""
        return tuple((bool(self.value & f), f) for f in CtFlag if self.mask & f)


@dataclass(frozen=True, slots=True)
class FlagsMatch:
    """Fields whose value is a word or flag expression kept as written (``nw_frag=later``, ``tcp_flags=+syn``)."""

    field: str
    text: str


MatchField = (ProtoMatch | InPort | EthMatch | IPv4Match | IPv6Match | DlVlan | DlVlanPcp | VlanTci | IntMatch
              | CtState | FlagsMatch)


def _split_mask(text: str) -> tuple[str, str | None]:
    if "/" in text:
        v, m = text.split("/", 1)
        return v, m
    return text, None


def _parse_ct_state(text: str) -> CtState:
    value, mask_text = _split_mask(text)
    if value and value[0] in "+-":
        val = mask = 0
        rest = value
        while rest:
            sign, rest = rest[0], rest[1:]
            if sign not in "+-":
                raise ValueError(f"ct_state flags need + or -: {text!r}")
            end = min([i for i in (rest.find("+"), rest.find("-")) if i >= 0] or [len(rest)])
            name, rest = rest[:end], rest[end:]
            if name not in CtFlag.__members__:
                raise ValueError(f"unknown ct_state flag {name!r}")
            bit = int(CtFlag[name])
            mask |= bit
            if sign == "+":
                val |= bit
        return CtState(val, mask)
    if mask_text is not None:
        return CtState(parse_int(value), parse_int(mask_text))
    val = 0
    if value != "0":
        for name in value.split("|"):
            if name not in CtFlag.__members__:
                val |= parse_int(name)
            else:
                val |= int(CtFlag[name])
    return CtState(val, 0xFF)


def parse_match_field(name: str, value: str | None) -> MatchField:
    """One ``name=value`` match item (or a bare shorthand such as ``tcp``). Raises ValueError."""
    if value is None:
        try:
            return ProtoMatch(Proto(name))
        except ValueError:
            raise ValueError(f"unknown match field {name!r}") from None
    if name == "in_port":
        return InPort(parse_port(value))
    if name == "dl_vlan":
        return DlVlan(parse_int(value))
    if name == "dl_vlan_pcp":
        return DlVlanPcp(parse_int(value))
    if name == "ct_state":
        return _parse_ct_state(value)
    info = field_info(name)
    if info is None or name.isupper():
        raise ValueError(f"unknown match field {name!r}")
    v, m = _split_mask(value)
    if info.name in ("vlan_tci", "vlan_vid", "vlan_pcp"):
        return VlanTci(parse_int(v), parse_int(m) if m is not None else None, info.name)
    if info.kind is Kind.MAC:
        return EthMatch(info.match_name, Mac.parse(v), Mac.parse(m) if m is not None else None)
    if info.kind is Kind.IPV4:
        if m is not None and m.isdigit():
            net = ipaddress.IPv4Network(f"0.0.0.0/{m}")
            return IPv4Match(info.match_name, ipaddress.IPv4Address(v), net.netmask)
        return IPv4Match(info.match_name, ipaddress.IPv4Address(v),
                         ipaddress.IPv4Address(m) if m is not None else None)
    if info.kind is Kind.IPV6:
        if m is not None and m.isdigit():
            net6 = ipaddress.IPv6Network(f"::/{m}")
            return IPv6Match(info.match_name, ipaddress.IPv6Address(v), net6.netmask)
        return IPv6Match(info.match_name, ipaddress.IPv6Address(v),
                         ipaddress.IPv6Address(m) if m is not None else None)
    if info.kind in (Kind.FRAG, Kind.TCP_FLAGS):
        return FlagsMatch(info.match_name, value)
    if info.kind is Kind.PORT:
        return InPort(parse_port(value))
    return IntMatch(info.match_name, parse_int(v), parse_int(m) if m is not None else None)


# ---------------------------------------------------------------------------------------------------
# The canonical printer


_ORDER = [
    "pkt_mark", "recirc_id", "dp_hash", "conj_id", "skb_priority", "actset_output",
    "ct_state", "ct_zone", "ct_mark", "ct_label", "ct_nw_src", "ct_ipv6_src", "ct_nw_dst", "ct_ipv6_dst",
    "ct_nw_proto", "ct_tp_src", "ct_tp_dst", "<proto>",
    *(f"reg{i}" for i in range(16)), *(f"xreg{i}" for i in range(8)), *(f"xxreg{i}" for i in range(4)),
    "tun_id", "tun_src", "tun_dst", "tun_ipv6_src", "tun_ipv6_dst", "tun_gbp_id", "tun_gbp_flags", "tun_tos",
    "tun_ttl", "metadata", "in_port", "<vlan>", "dl_src", "dl_dst", "dl_type",
    "ipv6_src", "ipv6_dst", "ipv6_label", "arp_spa", "arp_tpa", "nw_src", "nw_dst", "nw_proto", "arp_op",
    "arp_sha", "arp_tha", "nw_tos", "ip_dscp", "nw_ecn", "nw_ttl", "mpls_label", "mpls_tc", "mpls_ttl",
    "mpls_bos", "nw_frag", "icmp_type", "icmp_code", "nd_target", "nd_sll", "nd_tll", "tp_src", "tp_dst",
    "tcp_flags",
]
_RANK = {name: i for i, name in enumerate(_ORDER)}
_HEX32 = {"pkt_mark", "recirc_id", "dp_hash", "ct_mark", *(f"reg{i}" for i in range(16))}
_HEX64 = {"tun_id", "metadata", *(f"xreg{i}" for i in range(8))}
_DEC16_MASKED = {"ct_zone", "tp_src", "tp_dst", "arp_op", "ct_tp_src", "ct_tp_dst", "tun_gbp_id", "dl_type"}
_DEC8_MASKED = {"nw_proto", "icmp_type", "icmp_code", "nw_ttl", "nw_tos", "nw_ecn", "ip_dscp", "ct_nw_proto"}
_FULL = {8: 0xFF, 16: 0xFFFF, 32: 0xFFFFFFFF, 64: (1 << 64) - 1}


def _fmt_int(field: str, value: int, mask: int | None) -> str:
    if field in _HEX32 or field in _HEX64 or field.startswith("xxreg"):
        s = f"{value:#x}"
        if mask is not None and mask != _FULL.get(64 if field in _HEX64 else 32):
            s += f"/{mask:#x}"
        return s
    if field == "dl_type":
        return f"0x{value:04x}"
    if field in _DEC16_MASKED:
        if mask is None or mask == 0xFFFF:
            return str(value)
        return f"{value:#x}/{mask:#x}"
    if field in _DEC8_MASKED:
        if mask is None or mask == 0xFF:
            return str(value)
        return f"0x{value:02x}/0x{mask:02x}"
    if field == "ipv6_label":
        s = f"0x{value:05x}"
        return s if mask is None or mask == 0xFFFFF else f"{s}/0x{mask:05x}"
    s = str(value) if mask is None else f"{value:#x}/{mask:#x}"
    return s


def _fmt_ipv4(m: IPv4Match) -> str:
    mask = int(m.mask) if m.mask is not None else 0xFFFFFFFF
    addr = ipaddress.IPv4Address(int(m.address) & mask)
    if mask == 0xFFFFFFFF:
        return str(addr)
    bits = bin(mask).count("1")
    if mask == (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF:
        return f"{addr}/{bits}"
    return f"{addr}/{ipaddress.IPv4Address(mask)}"


def _fmt_ipv6(m: IPv6Match) -> str:
    full = (1 << 128) - 1
    mask = int(m.mask) if m.mask is not None else full
    addr = ipaddress.IPv6Address(int(m.address) & mask)
    if mask == full:
        return str(addr)
    bits = bin(mask).count("1")
    if mask == (full << (128 - bits)) & full:
        return f"{addr}/{bits}"
    return f"{addr}/{ipaddress.IPv6Address(mask)}"


@functools.lru_cache(maxsize=1 << 16)
def _fmt_mac(m: EthMatch) -> str:
    """(Each MAC match formatted once: a port's MAC recurs in the flows of every host it shares a
    network with.)"""
    if m.mask is None or m.mask.value == 0xFFFFFFFFFFFF:
        return str(m.mac)
    return f"{m.mac}/{m.mask}"


def _fmt_ct_state(m: CtState) -> str:
    if m.mask == 0xFF:
        if not m.value:
            return "0"
        return "|".join(f.name or "" for f in CtFlag if m.value & f)
    return "".join(("+" if m.value & f else "-") + (f.name or "") for f in CtFlag if m.mask & f)


def _vlan_items(fields: Iterable[MatchField]) -> list[str]:
    tci = mask = 0
    seen = False
    for f in fields:
        if isinstance(f, DlVlan):
            seen = True
            if f.vid == 0xFFFF:
                tci, mask = 0, 0xFFFF
            else:
                tci = (tci & ~0x1FFF) | 0x1000 | (f.vid & 0xFFF)
                mask |= 0x1FFF
        elif isinstance(f, DlVlanPcp):
            seen = True
            tci = (tci & ~0xE000) | 0x1000 | ((f.pcp & 7) << 13)
            mask |= 0xF000
        elif isinstance(f, VlanTci):
            seen = True
            if f.field == "vlan_tci":
                m = 0xFFFF if f.mask is None else f.mask
                tci, mask = (tci & ~m) | (f.value & m), mask | m
            elif f.field == "vlan_vid":
                m = 0x1FFF if f.mask is None else f.mask & 0x1FFF
                tci, mask = (tci & ~m) | (f.value & m), mask | m
            else:
                tci = (tci & ~0xE000) | 0x1000 | ((f.value & 7) << 13)
                mask |= 0xF000
    if not seen or not mask:
        return []
    tci &= mask
    vid_mask, pcp_mask, cfi = mask & 0x0FFF, mask & 0xE000, mask & 0x1000
    if (cfi and tci & 0x1000 and vid_mask in (0, 0x0FFF) and pcp_mask in (0, 0xE000)
            and (vid_mask or pcp_mask)):
        out = []
        if vid_mask:
            out.append(f"dl_vlan={tci & 0xFFF}")
        if pcp_mask:
            out.append(f"dl_vlan_pcp={tci >> 13}")
        return out
    if mask == 0xFFFF:
        return [f"vlan_tci=0x{tci:04x}"]
    return [f"vlan_tci=0x{tci:04x}/0x{mask:04x}"]


def _effective_types(fields: Sequence[MatchField]) -> tuple[int | None, int | None]:
    dl_type = nw_proto = None
    for f in fields:
        if isinstance(f, ProtoMatch):
            dl_type = f.proto.dl_type
            if f.proto.nw_proto is not None:
                nw_proto = f.proto.nw_proto
        elif isinstance(f, IntMatch) and f.field == "dl_type":
            dl_type = f.value
        elif isinstance(f, IntMatch) and f.field == "nw_proto" and (f.mask is None or f.mask == 0xFF):
            nw_proto = f.value
    return dl_type, nw_proto


def format_match(fields: Sequence[MatchField], priority: int | None = None) -> str:
    """The match as OVS prints it (``priority=N,`` first unless it is None or the default 32768)."""
    dl_type, nw_proto = _effective_types(fields)
    items: list[tuple[int, int, str]] = []
    skip_proto = False
    shorthand = _SHORTHAND.get((dl_type, nw_proto)) if dl_type is not None else None
    if dl_type is not None and shorthand is None:
        shorthand = _SHORTHAND.get((dl_type, None))
    if shorthand is not None:
        skip_proto = shorthand.nw_proto is not None
        items.append((_RANK["<proto>"], 0, shorthand.value))
    vlan_done = False
    arp = dl_type in (ETH_ARP, ETH_RARP)
    for i, f in enumerate(fields):
        name: str
        text: str
        if isinstance(f, ProtoMatch):
            continue
        if isinstance(f, DlVlan | DlVlanPcp | VlanTci):
            if not vlan_done:
                vlan_done = True
                for j, t in enumerate(_vlan_items(fields)):
                    items.append((_RANK["<vlan>"], j, t))
            continue
        if isinstance(f, InPort):
            name, text = "in_port", format_port(f.port)
        elif isinstance(f, EthMatch):
            name, text = f.field, _fmt_mac(f)
        elif isinstance(f, IPv4Match):
            name, text = f.field, _fmt_ipv4(f)
            if arp and name in ("nw_src", "nw_dst"):
                name = "arp_spa" if name == "nw_src" else "arp_tpa"
        elif isinstance(f, IPv6Match):
            name, text = f.field, _fmt_ipv6(f)
        elif isinstance(f, CtState):
            name, text = "ct_state", _fmt_ct_state(f)
        elif isinstance(f, FlagsMatch):
            name, text = f.field, f.text
        else:
            name = f.field
            if name == "dl_type" and shorthand is not None:
                continue
            if name == "nw_proto" and skip_proto:
                continue
            if name == "nw_proto" and arp:
                name = "arp_op"
            if name in ("tp_src", "tp_dst") and nw_proto in (1, 58):
                name = "icmp_type" if name == "tp_src" else "icmp_code"
            text = _fmt_int(name, f.value, f.mask)
        items.append((_RANK.get(name, len(_ORDER)), i, f"{name}={text}"))
    items.sort(key=lambda t: (t[0], t[1]))
    parts = [t[2] for t in items]
    if priority is not None and priority != 32768:
        parts.insert(0, f"priority={priority}")
    return ",".join(parts)
