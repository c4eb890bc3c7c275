"""OpenFlow field vocabulary shared by matches and actions: names, widths, value formats, MACs, ports.

Facts (names, aliases, NXM/OXM names, widths, how OVS prints each value) come from Open vSwitch's
``include/openvswitch/meta-flow.h`` field documentation; the code is ours.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from dataclasses import dataclass

__all__ = [
    "FieldInfo", "Kind", "Mac", "PortName", "ReservedPort", "Port", "Subfield",
    "field_info", "format_port", "format_subfield", "format_value", "parse_int", "parse_port",
    "parse_subfield", "split_top", "value_to_int",
]


class Kind(enum.Enum):
    """How OVS prints a field's value."""

    DEC = "decimal"
    HEX = "hexadecimal"
    MAC = "ethernet"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    PORT = "port"
    CT_STATE = "ct_state"
    FRAG = "frag"
    TCP_FLAGS = "tcp_flags"


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One OVS field: ``name`` is OVS's own (``eth_src``), ``match_name`` the one ``match_format``
    prints (``dl_src``), ``nxm``/``oxm`` the header names used in subfield syntax (``NXM_OF_ETH_SRC``)."""

    name: str
    n_bits: int
    kind: Kind
    match_name: str
    nxm: str | None = None
    oxm: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def subfield_name(self) -> str:
        """The name OVS prints in ``FIELD[..]`` syntax: NXM name, else OXM name, else its own."""
        return self.nxm or self.oxm or self.name


def _f(name: str, bits: int, kind: Kind, match_name: str | None = None, nxm: str | None = None,
       oxm: str | None = None, aliases: tuple[str, ...] = ()) -> FieldInfo:
    return FieldInfo(name, bits, kind, match_name or name, nxm, oxm, aliases)


D, H, M, V4, V6 = Kind.DEC, Kind.HEX, Kind.MAC, Kind.IPV4, Kind.IPV6
_FIELDS: tuple[FieldInfo, ...] = (
    _f("dp_hash", 32, H, nxm="NXM_NX_DP_HASH"),
    _f("recirc_id", 32, H, nxm="NXM_NX_RECIRC_ID"),
    _f("conj_id", 32, D, nxm="NXM_NX_CONJ_ID"),
    _f("tun_id", 64, H, nxm="NXM_NX_TUN_ID", oxm="OXM_OF_TUNNEL_ID", aliases=("tunnel_id",)),
    _f("tun_src", 32, V4, nxm="NXM_NX_TUN_IPV4_SRC"),
    _f("tun_dst", 32, V4, nxm="NXM_NX_TUN_IPV4_DST"),
    _f("tun_ipv6_src", 128, V6, nxm="NXM_NX_TUN_IPV6_SRC"),
    _f("tun_ipv6_dst", 128, V6, nxm="NXM_NX_TUN_IPV6_DST"),
    _f("tun_gbp_id", 16, D, nxm="NXM_NX_TUN_GBP_ID"),
    _f("tun_gbp_flags", 8, H, nxm="NXM_NX_TUN_GBP_FLAGS"),
    _f("tun_tos", 8, D),
    _f("tun_ttl", 8, D),
    _f("metadata", 64, H, oxm="OXM_OF_METADATA"),
    _f("in_port", 16, Kind.PORT, nxm="NXM_OF_IN_PORT"),
    _f("in_port_oxm", 32, Kind.PORT, oxm="OXM_OF_IN_PORT"),
    _f("actset_output", 32, Kind.PORT, oxm="ONFOXM_ET_ACTSET_OUTPUT"),
    _f("skb_priority", 32, H),
    _f("pkt_mark", 32, H, nxm="NXM_NX_PKT_MARK"),
    _f("ct_state", 32, Kind.CT_STATE, nxm="NXM_NX_CT_STATE"),
    _f("ct_zone", 16, D, nxm="NXM_NX_CT_ZONE"),
    _f("ct_mark", 32, H, nxm="NXM_NX_CT_MARK"),
    _f("ct_label", 128, H, nxm="NXM_NX_CT_LABEL"),
    _f("ct_nw_proto", 8, D, nxm="NXM_NX_CT_NW_PROTO"),
    _f("ct_nw_src", 32, V4, nxm="NXM_NX_CT_NW_SRC"),
    _f("ct_nw_dst", 32, V4, nxm="NXM_NX_CT_NW_DST"),
    _f("ct_ipv6_src", 128, V6, nxm="NXM_NX_CT_IPV6_SRC"),
    _f("ct_ipv6_dst", 128, V6, nxm="NXM_NX_CT_IPV6_DST"),
    _f("ct_tp_src", 16, D, nxm="NXM_NX_CT_TP_SRC"),
    _f("ct_tp_dst", 16, D, nxm="NXM_NX_CT_TP_DST"),
    _f("eth_src", 48, M, "dl_src", "NXM_OF_ETH_SRC", "OXM_OF_ETH_SRC", ("dl_src",)),
    _f("eth_dst", 48, M, "dl_dst", "NXM_OF_ETH_DST", "OXM_OF_ETH_DST", ("dl_dst",)),
    _f("eth_type", 16, H, "dl_type", "NXM_OF_ETH_TYPE", "OXM_OF_ETH_TYPE", ("dl_type",)),
    _f("vlan_tci", 16, H, nxm="NXM_OF_VLAN_TCI"),
    _f("dl_vlan", 12, D),
    _f("vlan_vid", 12, D, oxm="OXM_OF_VLAN_VID"),
    _f("dl_vlan_pcp", 3, D),
    _f("vlan_pcp", 3, D, oxm="OXM_OF_VLAN_PCP"),
    _f("mpls_label", 20, D, oxm="OXM_OF_MPLS_LABEL"),
    _f("mpls_tc", 3, D, oxm="OXM_OF_MPLS_TC"),
    _f("mpls_bos", 1, D, oxm="OXM_OF_MPLS_BOS"),
    _f("mpls_ttl", 8, D, nxm="NXM_NX_MPLS_TTL"),
    _f("ip_src", 32, V4, "nw_src", "NXM_OF_IP_SRC", "OXM_OF_IPV4_SRC", ("nw_src", "ipv4_src")),
    _f("ip_dst", 32, V4, "nw_dst", "NXM_OF_IP_DST", "OXM_OF_IPV4_DST", ("nw_dst", "ipv4_dst")),
    _f("ipv6_src", 128, V6, nxm="NXM_NX_IPV6_SRC", oxm="OXM_OF_IPV6_SRC"),
    _f("ipv6_dst", 128, V6, nxm="NXM_NX_IPV6_DST", oxm="OXM_OF_IPV6_DST"),
    _f("ipv6_label", 20, H, nxm="NXM_NX_IPV6_LABEL", oxm="OXM_OF_IPV6_FLABEL"),
    _f("nw_proto", 8, D, nxm="NXM_OF_IP_PROTO", oxm="OXM_OF_IP_PROTO", aliases=("ip_proto",)),
    _f("nw_tos", 8, D, nxm="NXM_OF_IP_TOS"),
    _f("ip_dscp", 6, D, oxm="OXM_OF_IP_DSCP"),
    _f("nw_ecn", 2, D, nxm="NXM_NX_IP_ECN", oxm="OXM_OF_IP_ECN", aliases=("ip_ecn",)),
    _f("nw_ttl", 8, D, nxm="NXM_NX_IP_TTL"),
    _f("ip_frag", 2, Kind.FRAG, "nw_frag", "NXM_NX_IP_FRAG", aliases=("nw_frag",)),
    _f("arp_op", 16, D, nxm="NXM_OF_ARP_OP", oxm="OXM_OF_ARP_OP"),
    _f("arp_spa", 32, V4, nxm="NXM_OF_ARP_SPA", oxm="OXM_OF_ARP_SPA"),
    _f("arp_tpa", 32, V4, nxm="NXM_OF_ARP_TPA", oxm="OXM_OF_ARP_TPA"),
    _f("arp_sha", 48, M, nxm="NXM_NX_ARP_SHA", oxm="OXM_OF_ARP_SHA"),
    _f("arp_tha", 48, M, nxm="NXM_NX_ARP_THA", oxm="OXM_OF_ARP_THA"),
    _f("tcp_src", 16, D, "tp_src", "NXM_OF_TCP_SRC", "OXM_OF_TCP_SRC", ("tp_src",)),
    _f("tcp_dst", 16, D, "tp_dst", "NXM_OF_TCP_DST", "OXM_OF_TCP_DST", ("tp_dst",)),
    _f("tcp_flags", 12, Kind.TCP_FLAGS, nxm="NXM_NX_TCP_FLAGS", oxm="ONFOXM_ET_TCP_FLAGS"),
    _f("udp_src", 16, D, "tp_src", "NXM_OF_UDP_SRC", "OXM_OF_UDP_SRC"),
    _f("udp_dst", 16, D, "tp_dst", "NXM_OF_UDP_DST", "OXM_OF_UDP_DST"),
    _f("sctp_src", 16, D, "tp_src", oxm="OXM_OF_SCTP_SRC"),
    _f("sctp_dst", 16, D, "tp_dst", oxm="OXM_OF_SCTP_DST"),
    _f("icmp_type", 8, D, nxm="NXM_OF_ICMP_TYPE", oxm="OXM_OF_ICMPV4_TYPE", aliases=("icmpv4_type",)),
    _f("icmp_code", 8, D, nxm="NXM_OF_ICMP_CODE", oxm="OXM_OF_ICMPV4_CODE", aliases=("icmpv4_code",)),
    _f("icmpv6_type", 8, D, "icmp_type", "NXM_NX_ICMPV6_TYPE", "OXM_OF_ICMPV6_TYPE"),
    _f("icmpv6_code", 8, D, "icmp_code", "NXM_NX_ICMPV6_CODE", "OXM_OF_ICMPV6_CODE"),
    _f("nd_target", 128, V6, nxm="NXM_NX_ND_TARGET", oxm="OXM_OF_IPV6_ND_TARGET"),
    _f("nd_sll", 48, M, nxm="NXM_NX_ND_SLL", oxm="OXM_OF_IPV6_ND_SLL"),
    _f("nd_tll", 48, M, nxm="NXM_NX_ND_TLL", oxm="OXM_OF_IPV6_ND_TLL"),
    *(_f(f"reg{i}", 32, H, nxm=f"NXM_NX_REG{i}") for i in range(16)),
    *(_f(f"xreg{i}", 64, H, oxm=f"OXM_OF_PKT_REG{i}") for i in range(8)),
    *(_f(f"xxreg{i}", 128, H, nxm=f"NXM_NX_XXREG{i}") for i in range(4)),
)

_BY_NAME: dict[str, FieldInfo] = {}
for _info in _FIELDS:
    for _key in (_info.name, *_info.aliases, _info.nxm, _info.oxm):
        if _key:
            _BY_NAME.setdefault(_key.lower() if _key.islower() else _key, _info)
# tp_src/tp_dst are the TCP fields' aliases in OVS; the match printer picks the name by protocol.


def field_info(name: str) -> FieldInfo | None:
    """The field called ``name`` (OVS name, alias, NXM or OXM name), or None."""
    return _BY_NAME.get(name) or _BY_NAME.get(name.lower())


def parse_int(text: str) -> int:
    """An OVS integer: decimal, or hex with ``0x``. Raises ValueError."""
    t = text.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", t):
        return int(t, 16)
    if re.fullmatch(r"[0-9]+", t):
        return int(t, 10)
    raise ValueError(f"not an integer: {text!r}")


_MAC = re.compile(r"[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}")
_MAC_PAIRS = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


@dataclass(frozen=True, slots=True, order=True)
class Mac:
    """An Ethernet address; prints lower-case with colons, as OVS does."""

    value: int

    @classmethod
    def parse(cls, text: str) -> Mac:
        """Parse ``aa:bb:cc:dd:ee:ff`` (any case). Raises ValueError."""
        if _MAC_PAIRS.fullmatch(text):  # (the common case: six pairs of digits, read whole)
            return cls(int(text.replace(":", ""), 16))
        if not _MAC.fullmatch(text):
            raise ValueError(f"not a MAC address: {text!r}")
        return cls(int("".join(p.zfill(2) for p in text.split(":")), 16))

    def __str__(self) -> str:
        value = self.value
        if 0 <= value < 1 << 48:  # (the common case, in one call: planners print MACs by the hundred thousand)
            return value.to_bytes(6, "big").hex(":")
        h = f"{value:012x}"
        return ":".join(h[i:i + 2] for i in range(0, 12, 2))


class ReservedPort(enum.Enum):
    """OpenFlow's reserved port names, as OVS prints them."""

    IN_PORT = "IN_PORT"
    TABLE = "TABLE"
    NORMAL = "NORMAL"
    FLOOD = "FLOOD"
    ALL = "ALL"
    CONTROLLER = "CONTROLLER"
    LOCAL = "LOCAL"
    ANY = "ANY"


@dataclass(frozen=True, slots=True)
class PortName:
    """A port given by name (``in_port=patch-int``), resolved by OVS against the bridge."""

    name: str

    def __str__(self) -> str:
        return self.name


Port = int | ReservedPort | PortName


def parse_port(text: str) -> Port:
    """An OpenFlow port: a number, a reserved name (any case, as OVS accepts) or a port name."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    up = t.upper()
    if up in ReservedPort.__members__:
        return ReservedPort[up]
    if up == "NONE":
        return ReservedPort.ANY
    if len(t) >= 2 and t[0] == t[-1] == '"':
        t = t[1:-1]
    if not t or any(c in t for c in " ,()="):
        raise ValueError(f"not a port: {text!r}")
    return PortName(t)


def port_name_text(name: str) -> str:
    """A port name as OVS prints it (lib/namemap.c): bare when it is a letter followed by letters
    and digits, else quoted as a JSON string (``"patch-int"``, ``"tap61e31514-15"``)."""
    if name[:1].isascii() and name[:1].isalpha() and all(c.isascii() and c.isalnum() for c in name[1:]):
        return name
    return json.dumps(name)


def format_port(port: Port) -> str:
    if isinstance(port, ReservedPort):
        return port.value
    if isinstance(port, PortName):
        return port_name_text(port.name)
    return str(port)


@dataclass(frozen=True, slots=True)
class Subfield:
    """``FIELD[]``, ``FIELD[N]`` or ``FIELD[A..B]``: bits ``start..end`` of a field.

    ``field`` keeps the name as written; ``start``/``end`` are None for the whole field (``[]``).
    """

    field: str
    start: int | None = None
    end: int | None = None

    @property
    def info(self) -> FieldInfo | None:
        return field_info(self.field)

    def bits(self) -> tuple[int, int] | None:
        """(offset, n_bits), or None when the field is unknown and the range is ``[]``."""
        if self.start is not None and self.end is not None:
            return self.start, self.end - self.start + 1
        info = self.info
        return (0, info.n_bits) if info else None


_SUBFIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(?:(\d+)(?:\.\.(\d+))?)?\]")


def parse_subfield(text: str) -> Subfield:
    """Parse ``NXM_OF_VLAN_TCI[0..11]``; raises ValueError."""
    m = _SUBFIELD.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a subfield: {text!r}")
    name, a, b = m.groups()
    if a is None:
        return Subfield(name)
    start = int(a)
    end = int(b) if b is not None else start
    if end < start:
        raise ValueError(f"subfield range reversed: {text!r}")
    return Subfield(name, start, end)


def format_subfield(sf: Subfield) -> str:
    """OVS's form: the field's NXM (else OXM) name; ``[]`` when the range covers the whole field."""
    info = sf.info
    name = info.subfield_name if info else sf.field
    if sf.start is None or sf.end is None:
        return f"{name}[]"
    if info and sf.start == 0 and sf.end == info.n_bits - 1:
        return f"{name}[]"
    if sf.start == sf.end:
        return f"{name}[{sf.start}]"
    return f"{name}[{sf.start}..{sf.end}]"


def format_value(info: FieldInfo | None, value: int) -> str:
    """An integer value printed the way OVS prints that field (decimal or hex)."""
    if info is not None and info.kind is Kind.DEC:
        return str(value)
    if info is not None and info.kind is Kind.MAC:
        return str(Mac(value))
    if info is not None and info.kind is Kind.IPV4:
        return str(ipaddress.IPv4Address(value))
    if info is not None and info.kind is Kind.IPV6:
        return str(ipaddress.IPv6Address(value))
    return f"{value:#x}"


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and brackets. Raises ValueError when they do not balance."""
    if not any(b in text for b in "()[]{}"):
        return text.split(sep)
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for c in text:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in {text!r}")
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    if depth:
        raise ValueError(f"unbalanced parentheses in {text!r}")
    parts.append("".join(cur))
    return parts


def value_to_int(text: str) -> int:
    """An integer, a MAC or an IP address as an integer. Raises ValueError."""
    try:
        return parse_int(text)
    except ValueError:
        pass
    try:
        return Mac.parse(text).value
    except ValueError:
        pass
    return int(ipaddress.ip_address(text))
