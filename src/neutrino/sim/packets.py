"""Packets as cheap immutable values, with real bytes only at the edges.

Each header is a frozen, slotted dataclass whose fields all have defaults; an outer header holds
the inner one in ``payload`` and, left at :data:`AUTO`, fills in its own type field from it
(Ethernet and 802.1Q ``type``, IPv4 ``proto``, GRE ``proto``). Lengths and checksums are not
fields: :func:`to_bytes` computes them, :func:`from_bytes` reads them (and checks them on request).
MACs are :class:`~neutrino.host.openflow_fields.Mac` (the OpenFlow layer's type, so a flow's
``dl_src`` and a packet's ``src`` compare directly); addresses are :mod:`ipaddress` values.

>>> a, b = mac("fa:16:3e:00:00:01"), mac("fa:16:3e:00:00:02")
>>> ping = echo_request(a, b, ip("10.0.0.1"), ip("10.0.0.2"), id=1, seq=1)
>>> summary(ping)
'IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 1, length 64'
>>> hex(ping.type), ping.payload.proto
('0x800', 1)
>>> from_bytes(to_bytes(ping)) == ping
True
>>> summary(arp_request(a, ip("10.0.0.1"), ip("10.0.0.2")))
'ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28'

``from_bytes(to_bytes(p)) == p`` holds for every packet whose headers the parser recognises, with
two edge cases: a :class:`Raw` Ethernet payload short enough to be padded comes back with the
padding (serialise with ``pad=False``), and an ICMP error quoting more than
:data:`ICMP_QUOTE_MAX` bytes comes back with the quote as :class:`Raw`.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal

from neutrino.errors import InvalidInput, ParseError
from neutrino.host.openflow_fields import Mac as Mac  # re-exported: the packets' MAC type

AUTO = -1
"""Left in a type field (Ethernet/802.1Q ``type``, IPv4 ``proto``, GRE ``proto``), it is filled
in from the payload when the header is built: 0 for no payload; a :class:`Raw` payload needs
an explicit value."""

BROADCAST = Mac(0xFFFFFFFFFFFF)
ZERO_MAC = Mac(0)
ANY_IP = IPv4Address(0)
LIMITED_BROADCAST = IPv4Address(0xFFFFFFFF)

ETH_MIN_FRAME = 60
"""The shortest Ethernet frame without FCS; :func:`to_bytes` pads to it."""
ICMP_QUOTE_MAX = 548
"""The most of the offending datagram an ICMP error quotes (Linux: 576 − IP − ICMP headers)."""
VXLAN_PORT = 4789
BOOTP_MIN_LEN = 300
"""BOOTP messages are padded to this length, as dhclient, udhcpc and dnsmasq do."""
DHCP_MAGIC = b"\x63\x82\x53\x63"
PING_DATA = bytes(16) + bytes(range(0x10, 0x38))
"""56 bytes of echo data laid out like iputils ping's: a 16-byte timestamp (zeroed here, for
determinism) and then bytes 0x10, 0x11… (each byte is its own offset)."""


def mac(text: str) -> Mac:
    """``Mac`` from ``aa:bb:cc:dd:ee:ff`` (any case)."""
    return Mac.parse(text)


def ip(text: str) -> IPv4Address:
    """``IPv4Address`` from dotted quad."""
    return IPv4Address(text)


class EtherType(enum.IntEnum):
    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100
    QINQ = 0x88A8
    IPV6 = 0x86DD
    TEB = 0x6558
    """Transparent Ethernet Bridging: an Ethernet frame inside GRE (OVS's GRE ports)."""


class IPProto(enum.IntEnum):
    ICMP = 1
    TCP = 6
    UDP = 17
    GRE = 47


class ARPOp(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


class ICMPType(enum.IntEnum):
    ECHO_REPLY = 0
    DEST_UNREACH = 3
    SOURCE_QUENCH = 4
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAM_PROBLEM = 12


class UnreachCode(enum.IntEnum):
    NET = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3
    FRAG_NEEDED = 4
    SOURCE_ROUTE_FAILED = 5
    NET_UNKNOWN = 6
    HOST_UNKNOWN = 7
    HOST_ISOLATED = 8
    NET_PROHIBITED = 9
    HOST_PROHIBITED = 10
    NET_TOS = 11
    HOST_TOS = 12
    ADMIN_PROHIBITED = 13
    HOST_PRECEDENCE = 14
    PRECEDENCE_CUTOFF = 15


class TCPFlag(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


class BootOp(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


class DHCPMessageType(enum.IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


# --- the headers ---------------------------------------------------------------------------------

class HashKept:
    """A slot for a header's hash (not a dataclass field: not compared, not pickled). A frame is
    hashed by every element that remembers its decisions (a bridge by the frame, netfilter by the
    IP packet), and its fields' hashes are Python code (addresses, MACs): a header computes its
    own once, the dataclass's hash of its fields."""

    __slots__ = ("_hash",)
    _hash: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Raw:
    """Bytes no parser here understands, or application data."""

    data: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ethernet(HashKept):
    """An Ethernet II frame (no FCS). ``type`` is filled from the payload when left at AUTO."""

    dst: Mac = BROADCAST
    src: Mac = ZERO_MAC
    type: int = AUTO
    payload: Dot1Q | ARP | IPv4 | Raw | None = None

    def __post_init__(self) -> None:
        if self.type == AUTO:
            _set(self, "type", _ethertype(self.payload))

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            h = hash((self.dst, self.src, self.type, self.payload))
            _set(self, "_hash", h)
            return h


@dataclass(frozen=True, slots=True, kw_only=True)
class Dot1Q(HashKept):
    """An 802.1Q tag; ``type`` (AUTO: from the payload) is the ethertype after the tag.

    The tag's own TPID is the enclosing header's ``type`` (0x8100, or 0x88a8 for a QinQ outer tag).
    """

    vid: int = 0
    pcp: int = 0
    dei: bool = False
    type: int = AUTO
    payload: Dot1Q | ARP | IPv4 | Raw | None = None

    def __post_init__(self) -> None:
        if self.type == AUTO:
            _set(self, "type", _ethertype(self.payload))

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            h = hash((self.vid, self.pcp, self.dei, self.type, self.payload))
            _set(self, "_hash", h)
            return h


@dataclass(frozen=True, slots=True, kw_only=True)
class ARP:
    """ARP for IPv4 over Ethernet."""

    op: int = ARPOp.REQUEST
    hwsrc: Mac = ZERO_MAC
    psrc: IPv4Address = ANY_IP
    hwdst: Mac = ZERO_MAC
    pdst: IPv4Address = ANY_IP


@dataclass(frozen=True, slots=True, kw_only=True)
class IPv4(HashKept):
    """An IPv4 header. ``frag`` is the fragment offset in 8-byte units; ``options`` raw bytes."""

    src: IPv4Address = ANY_IP
    dst: IPv4Address = ANY_IP
    proto: int = AUTO
    ttl: int = 64
    id: int = 0
    df: bool = False
    mf: bool = False
    frag: int = 0
    tos: int = 0
    options: bytes = b""
    payload: ICMP | UDP | TCP | GRE | Raw | None = None

    def __post_init__(self) -> None:
        if self.proto == AUTO:
            _set(self, "proto", _ipproto(self.payload))

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            h = hash((self.src, self.dst, self.proto, self.ttl, self.id, self.df, self.mf, self.frag, self.tos,
                      self.options, self.payload))
            _set(self, "_hash", h)
            return h


@dataclass(frozen=True, slots=True, kw_only=True)
class ICMP:
    """ICMP. ``id``/``seq`` are the two 16-bit words after the checksum: the echo identifier and
    sequence, or for errors the "unused" word and (frag-needed) the next-hop MTU.

    An error's payload is the offending datagram as an :class:`IPv4`; :func:`to_bytes` quotes at
    most :data:`ICMP_QUOTE_MAX` bytes of it.
    """

    type: int = ICMPType.ECHO_REQUEST
    code: int = 0
    id: int = 0
    seq: int = 0
    payload: IPv4 | Raw | None = None

    @property
    def mtu(self) -> int:
        """The next-hop MTU of a "fragmentation needed" error."""
        return self.seq


@dataclass(frozen=True, slots=True, kw_only=True)
class UDP:
    sport: int = 0
    dport: int = 0
    payload: DHCP | VXLAN | Raw | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TCP:
    """TCP. ``options`` are the raw option bytes (padded with zeros to a multiple of 4 on build)."""

    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: TCPFlag = TCPFlag(0)
    window: int = 65535
    urgent: int = 0
    options: bytes = b""
    payload: Raw | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DHCP:
    """A BOOTP message with DHCP options; the options are typed fields, in build order.

    Options the fields do not cover travel in ``extra`` as ``(code, value)`` pairs.
    ``classless_routes`` is option 121 (RFC 3442), ``mtu`` option 26.
    """

    op: int = BootOp.REQUEST
    hops: int = 0
    xid: int = 0
    secs: int = 0
    broadcast: bool = False
    ciaddr: IPv4Address = ANY_IP
    yiaddr: IPv4Address = ANY_IP
    siaddr: IPv4Address = ANY_IP
    giaddr: IPv4Address = ANY_IP
    chaddr: Mac = ZERO_MAC
    sname: str = ""
    file: str = ""
    message_type: DHCPMessageType | None = None
    server_id: IPv4Address | None = None
    requested_ip: IPv4Address | None = None
    lease_time: int | None = None
    renewal_time: int | None = None
    rebinding_time: int | None = None
    subnet_mask: IPv4Address | None = None
    broadcast_address: IPv4Address | None = None
    router: tuple[IPv4Address, ...] = ()
    dns: tuple[IPv4Address, ...] = ()
    domain: str | None = None
    hostname: str | None = None
    mtu: int | None = None
    classless_routes: tuple[tuple[IPv4Network, IPv4Address], ...] = ()
    param_request_list: tuple[int, ...] = ()
    client_id: bytes | None = None
    extra: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GRE:
    """GRE (RFC 2890): an optional checksum, key and sequence number. ``proto`` (AUTO: from the
    payload) is 0x6558 for an Ethernet frame, as OVS's gre ports send, or 0x0800 for IPv4."""

    proto: int = AUTO
    key: int | None = None
    seq: int | None = None
    csum: bool = False
    payload: Ethernet | IPv4 | Raw | None = None

    def __post_init__(self) -> None:
        if self.proto == AUTO:
            _set(self, "proto", 0x6558 if type(self.payload) is Ethernet else _ethertype(self.payload))


@dataclass(frozen=True, slots=True, kw_only=True)
class VXLAN:
    """A VXLAN header (flags I set); it rides in UDP to port 4789."""

    vni: int = 0
    payload: Ethernet | None = None


Layer = Ethernet | Dot1Q | ARP | IPv4 | ICMP | UDP | TCP | DHCP | GRE | VXLAN | Raw

# Plain ints, so that a built header and a parsed one look alike in repr() too.
_ETHERTYPES: dict[type, int] = {IPv4: 0x0800, ARP: 0x0806, Dot1Q: 0x8100}
_IPPROTOS: dict[type, int] = {ICMP: 1, TCP: 6, UDP: 17, GRE: 47}


def _ethertype(payload: object) -> int:
    if payload is None:
        return 0
    t = _ETHERTYPES.get(type(payload))
    if t is None:
        raise InvalidInput(f"give an explicit type for a {type(payload).__name__} payload")
    return t


def _ipproto(payload: object) -> int:
    if payload is None:
        return 0
    p = _IPPROTOS.get(type(payload))
    if p is None:
        raise InvalidInput(f"give an explicit proto for a {type(payload).__name__} payload")
    return p


_AUTO_FIELD = {Ethernet: "type", Dot1Q: "type", IPv4: "proto", GRE: "proto"}


_INIT_FIELDS: dict[type, tuple[str, ...]] = {}


def _auto_value(cls: type, payload: object) -> int | None:
    """What ``cls(payload=payload)`` fills its automatic type field with (None: it cannot)."""
    try:
        if cls is GRE:
            return 0x6558 if type(payload) is Ethernet else _ethertype(payload)
        return _ipproto(payload) if cls is IPv4 else _ethertype(payload)
    except InvalidInput:
        return None


def with_(pkt: Any, **changes: Any) -> Any:
    """A copy of ``pkt`` with ``changes``. A new payload also renews a type field that was filled
    in automatically (an explicit, different type stays). (``dataclasses.replace``, without its
    walk over the class's fields on every call: the headers' fields are all init fields.)"""
    cls = type(pkt)
    field = _AUTO_FIELD.get(cls)
    if field is not None and "payload" in changes and field not in changes \
            and getattr(pkt, field) == _auto_value(cls, pkt.payload):
        changes[field] = AUTO
    names = _INIT_FIELDS.get(cls)
    if names is None:
        names = _INIT_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    for name in names:
        if name not in changes:
            changes[name] = getattr(pkt, name)
    return cls(**changes)


# --- building frames -----------------------------------------------------------------------------

def arp_request(hwsrc: Mac, psrc: IPv4Address, pdst: IPv4Address) -> Ethernet:
    """A broadcast "who-has ``pdst`` tell ``psrc``"."""
    return Ethernet(dst=BROADCAST, src=hwsrc, payload=ARP(op=ARPOp.REQUEST, hwsrc=hwsrc, psrc=psrc, pdst=pdst))


def arp_reply(hwsrc: Mac, psrc: IPv4Address, hwdst: Mac, pdst: IPv4Address) -> Ethernet:
    """``psrc`` is-at ``hwsrc``, sent to ``hwdst``."""
    return Ethernet(dst=hwdst, src=hwsrc,
                    payload=ARP(op=ARPOp.REPLY, hwsrc=hwsrc, psrc=psrc, hwdst=hwdst, pdst=pdst))


def echo_request(src_mac: Mac, dst_mac: Mac, src: IPv4Address, dst: IPv4Address, *, id: int = 1,
                 seq: int = 1, data: bytes = PING_DATA, ttl: int = 64) -> Ethernet:
    """An ICMP echo request as Linux ping sends it (DF set, 56 data bytes by default)."""
    icmp = ICMP(type=ICMPType.ECHO_REQUEST, id=id, seq=seq, payload=Raw(data=data) if data else None)
    return Ethernet(dst=dst_mac, src=src_mac, payload=IPv4(src=src, dst=dst, ttl=ttl, df=True, payload=icmp))


def echo_reply(request: Ethernet, *, src_mac: Mac | None = None, ttl: int = 64) -> Ethernet:
    """The reply to an echo request frame: addresses swapped, same id, seq and data."""
    ip4 = request.payload
    if not isinstance(ip4, IPv4) or not isinstance(ip4.payload, ICMP):
        raise InvalidInput("not an IPv4 ICMP frame")
    icmp = with_(ip4.payload, type=ICMPType.ECHO_REPLY, code=0)
    return Ethernet(dst=request.src, src=src_mac if src_mac is not None else request.dst,
                    payload=IPv4(src=ip4.dst, dst=ip4.src, ttl=ttl, df=ip4.df, payload=icmp))


def ping_data(size: int) -> bytes:
    """``size`` bytes of echo data as iputils ``ping -s size`` lays them out: a 16-byte timestamp
    (zeroed, for determinism) when there is room for it, then each byte its own offset
    (``ping_data(56) == PING_DATA``)."""
    head = min(size, 16)
    return bytes(head) + bytes(i & 0xFF for i in range(16, size))


ENCAP_IP_OVERHEAD = {"gre": 28, "vxlan": 36, "geneve": 36}
"""What a tunnel adds to the Ethernet frame it carries, outer IPv4 header included: GRE with a
key, as OVS's gre ports send (20 + 4 + 4); VXLAN and Geneve without options (20 + 8 + 8). With
the inner frame's own 14-byte header, the IP packet grows by 42 (GRE) and 50 (VXLAN): Neutron's
network MTU is the physical MTU less these."""


def ip_length(packet: IPv4) -> int:
    """The IPv4 packet's total length (header, options and payload), as its header says it."""
    return _length(packet)


def _length(p: Any) -> int:
    """``len(to_bytes(p))`` for a layer inside a frame (no padding), counted without building the
    bytes (no checksums) for the layers a trace forwards most: IPv4, ICMP, UDP, TCP, raw data;
    the others (DHCP, GRE, VXLAN, an inner frame) are built. Each count follows its builder below
    (tests/sim/test_packet_length.py holds them equal)."""
    t = type(p)
    if t is IPv4:
        return 20 + (len(p.options) + 3) // 4 * 4 + _length(p.payload)
    if t is ICMP:
        body = p.payload
        n = _length(body)
        return 8 + (min(n, ICMP_QUOTE_MAX) if type(body) is IPv4 else n)
    if t is UDP:
        return 8 + _length(p.payload)
    if t is TCP:
        return 20 + (len(p.options) + 3) // 4 * 4 + _length(p.payload)
    if t is Raw:
        return len(p.data)
    if p is None:
        return 0
    return len(_BUILDERS[t](p, None))


def l3_length(frame: Ethernet) -> int:
    """The length of what ``frame`` carries after its Ethernet header and any 802.1Q tags (what a
    device's MTU bounds)."""
    p: object = frame.payload
    while isinstance(p, Dot1Q):
        p = p.payload
    if p is None:
        return 0
    if isinstance(p, IPv4):
        return ip_length(p)
    if isinstance(p, ARP):
        return 28
    return len(to_bytes(p)) if isinstance(p, Raw) else 0


def frame_length(frame: Ethernet) -> int:
    """The frame's length without padding or FCS: 14 bytes of Ethernet header, 4 per 802.1Q tag,
    and its payload."""
    return 14 + 4 * len(vlan_ids(frame)) + l3_length(frame)


def icmp_error(type: int, code: int, original: IPv4, *, mtu: int = 0) -> ICMP:
    """An ICMP error quoting ``original`` (``mtu`` for ``FRAG_NEEDED``)."""
    return ICMP(type=type, code=code, seq=mtu, payload=original)


def udp_frame(src_mac: Mac, dst_mac: Mac, src: IPv4Address, dst: IPv4Address, sport: int, dport: int,
              payload: DHCP | VXLAN | Raw | None, *, ttl: int = 64, df: bool = False) -> Ethernet:
    """A UDP datagram in IPv4 in Ethernet."""
    return Ethernet(dst=dst_mac, src=src_mac, payload=IPv4(src=src, dst=dst, ttl=ttl, df=df,
                                                           payload=UDP(sport=sport, dport=dport, payload=payload)))


def dhcp_client_frame(dhcp: DHCP, *, src: IPv4Address = ANY_IP, dst: IPv4Address = LIMITED_BROADCAST,
                      dst_mac: Mac = BROADCAST) -> Ethernet:
    """A client's message, 0.0.0.0:68 → 255.255.255.255:67 from ``chaddr`` unless told otherwise."""
    return udp_frame(dhcp.chaddr, dst_mac, src, dst, 68, 67, dhcp)


def dhcp_server_frame(dhcp: DHCP, server_mac: Mac, server_ip: IPv4Address, *, broadcast: bool = False) -> Ethernet:
    """A server's reply to port 68: to ``yiaddr`` and ``chaddr``, or broadcast when asked."""
    dst_mac, dst = (BROADCAST, LIMITED_BROADCAST) if broadcast or dhcp.broadcast else (dhcp.chaddr, dhcp.yiaddr)
    return udp_frame(server_mac, dst_mac, server_ip, dst, 67, 68, dhcp)


# --- VLANs and tunnels ---------------------------------------------------------------------------

def push_vlan(frame: Ethernet, vid: int, *, pcp: int = 0) -> Ethernet:
    """Add an outermost 802.1Q tag (as OVS ``mod_vlan_vid`` on an untagged frame / ``push_vlan``)."""
    inner_type = frame.type
    tag = Dot1Q(vid=vid, pcp=pcp, type=inner_type, payload=frame.payload)
    return Ethernet(dst=frame.dst, src=frame.src, type=0x8100, payload=tag)


def pop_vlan(frame: Ethernet) -> Ethernet:
    """Remove the outermost tag (``strip_vlan``)."""
    tag = frame.payload
    if not isinstance(tag, Dot1Q):
        raise InvalidInput("frame has no 802.1Q tag")
    return Ethernet(dst=frame.dst, src=frame.src, type=tag.type, payload=tag.payload)


def vlan_ids(frame: Ethernet) -> tuple[int, ...]:
    """The VLAN ids of the frame's tags, outermost first."""
    out: list[int] = []
    p: object = frame.payload
    while isinstance(p, Dot1Q):
        out.append(p.vid)
        p = p.payload
    return tuple(out)


def network_layer(frame: Ethernet) -> ARP | IPv4 | Raw | None:
    """What follows the Ethernet header and any 802.1Q tags."""
    p = frame.payload
    while isinstance(p, Dot1Q):
        p = p.payload
    return p


def _flow_port(inner: Ethernet) -> int:
    """A source port from the inner flow, as tunnel endpoints pick one for ECMP (deterministic)."""
    key = struct.pack("!QQ", inner.src.value, inner.dst.value)
    l3 = network_layer(inner)
    if isinstance(l3, IPv4):
        key += l3.src.packed + l3.dst.packed + bytes((l3.proto & 0xFF,))
        l4 = l3.payload
        if isinstance(l4, UDP | TCP):
            key += struct.pack("!HH", l4.sport, l4.dport)
    return 32768 + zlib.crc32(key) % 28232


def encapsulate_vxlan(inner: Ethernet, *, src_mac: Mac, dst_mac: Mac, src: IPv4Address, dst: IPv4Address,
                      vni: int, sport: int | None = None, ttl: int = 64, df: bool = True) -> Ethernet:
    """``inner`` inside VXLAN/UDP 4789/IPv4/Ethernet; the UDP source port comes from the inner
    flow unless given. OVS sets DF on tunnel packets by default (``df_default=true``)."""
    vx = VXLAN(vni=vni, payload=inner)
    return udp_frame(src_mac, dst_mac, src, dst, _flow_port(inner) if sport is None else sport, VXLAN_PORT, vx,
                     ttl=ttl, df=df)


def encapsulate_gre(inner: Ethernet, *, src_mac: Mac, dst_mac: Mac, src: IPv4Address, dst: IPv4Address,
                    key: int | None, ttl: int = 64, df: bool = True) -> Ethernet:
    """``inner`` inside GRE (with ``key``, the tunnel id)/IPv4/Ethernet, as an OVS gre port sends it."""
    gre = GRE(key=key, payload=inner)
    return Ethernet(dst=dst_mac, src=src_mac, payload=IPv4(src=src, dst=dst, ttl=ttl, df=df, payload=gre))


@dataclass(frozen=True, slots=True)
class Tunnel:
    """What :func:`decapsulate` learnt from the outer headers."""

    kind: Literal["vxlan", "gre"]
    key: int | None  # the VNI or GRE key: OpenFlow's tun_id
    src: IPv4Address
    dst: IPv4Address


def decapsulate(frame: Ethernet) -> tuple[Tunnel, Ethernet]:
    """The tunnel and the inner frame of a VXLAN or GRE (Ethernet-carrying) frame."""
    l3 = network_layer(frame)
    if isinstance(l3, IPv4):
        l4 = l3.payload
        if isinstance(l4, UDP) and isinstance(l4.payload, VXLAN) and l4.payload.payload is not None:
            return Tunnel("vxlan", l4.payload.vni, l3.src, l3.dst), l4.payload.payload
        if isinstance(l4, GRE) and isinstance(l4.payload, Ethernet):
            return Tunnel("gre", l4.key, l3.src, l3.dst), l4.payload
    raise InvalidInput("not a VXLAN or GRE frame carrying Ethernet")


# --- bytes out -----------------------------------------------------------------------------------

def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``; 0 when ``data`` already holds a right one.

    The one's-complement sum of 16-bit words is the big integer ``data`` modulo 0xffff (since
    2**16 ≡ 1), with 0xffff standing in for a non-zero multiple.
    """
    if len(data) & 1:
        data += b"\0"
    v = int.from_bytes(data, "big")
    s = v % 0xFFFF
    if s == 0 and v:
        s = 0xFFFF
    return ~s & 0xFFFF


_Ctx = tuple[bytes, bytes] | None  # (src, dst) of the enclosing IPv4 header, for pseudo-headers


def _b_raw(p: Raw, ctx: _Ctx) -> bytes:
    return p.data


def _b_payload(p: Layer | None, ctx: _Ctx) -> bytes:
    return b"" if p is None else _BUILDERS[type(p)](p, ctx)


def _b_ethernet(p: Ethernet, ctx: _Ctx) -> bytes:
    return struct.pack("!6s6sH", p.dst.value.to_bytes(6, "big"), p.src.value.to_bytes(6, "big"), p.type) \
        + _b_payload(p.payload, None)


def _b_dot1q(p: Dot1Q, ctx: _Ctx) -> bytes:
    return struct.pack("!HH", (p.pcp << 13) | (p.dei << 12) | p.vid, p.type) + _b_payload(p.payload, None)


def _b_arp(p: ARP, ctx: _Ctx) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, EtherType.IPV4, 6, 4, p.op, p.hwsrc.value.to_bytes(6, "big"),
                       p.psrc.packed, p.hwdst.value.to_bytes(6, "big"), p.pdst.packed)


def _b_ipv4(p: IPv4, ctx: _Ctx) -> bytes:
    src, dst = p.src.packed, p.dst.packed
    body = _b_payload(p.payload, (src, dst))
    opts = p.options
    if len(opts) & 3:
        opts += bytes(4 - (len(opts) & 3))
    hlen = 20 + len(opts)
    frag = (p.df << 14) | (p.mf << 13) | p.frag
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | hlen >> 2, p.tos, hlen + len(body), p.id, frag, p.ttl, p.proto, 0,
                      src, dst) + opts
    return hdr[:10] + checksum(hdr).to_bytes(2, "big") + hdr[12:] + body


def _b_icmp(p: ICMP, ctx: _Ctx) -> bytes:
    body = _b_payload(p.payload, None)
    if isinstance(p.payload, IPv4):
        body = body[:ICMP_QUOTE_MAX]
    msg = struct.pack("!BBHHH", p.type, p.code, 0, p.id, p.seq) + body
    return msg[:2] + checksum(msg).to_bytes(2, "big") + msg[4:]


def _l4_checksum(ctx: _Ctx, proto: int, segment: bytes) -> int:
    if ctx is None:
        return 0
    return checksum(ctx[0] + ctx[1] + struct.pack("!HH", proto, len(segment)) + segment)


def _b_udp(p: UDP, ctx: _Ctx) -> bytes:
    body = _b_payload(p.payload, None)
    seg = struct.pack("!HHHH", p.sport, p.dport, 8 + len(body), 0) + body
    c = _l4_checksum(ctx, IPProto.UDP, seg)
    if ctx is not None and c == 0:
        c = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    return seg[:6] + c.to_bytes(2, "big") + seg[8:]


def _b_tcp(p: TCP, ctx: _Ctx) -> bytes:
    opts = p.options
    if len(opts) & 3:
        opts += bytes(4 - (len(opts) & 3))
    body = _b_payload(p.payload, None)
    off = (20 + len(opts)) >> 2
    seg = struct.pack("!HHIIBBHHH", p.sport, p.dport, p.seq, p.ack, off << 4, int(p.flags), p.window, 0,
                      p.urgent) + opts + body
    return seg[:16] + _l4_checksum(ctx, IPProto.TCP, seg).to_bytes(2, "big") + seg[18:]


def _b_gre(p: GRE, ctx: _Ctx) -> bytes:
    flags = (0x8000 if p.csum else 0) | (0x2000 if p.key is not None else 0) | (0x1000 if p.seq is not None else 0)
    hdr = struct.pack("!HH", flags, p.proto)
    if p.csum:
        hdr += bytes(4)
    if p.key is not None:
        hdr += p.key.to_bytes(4, "big")
    if p.seq is not None:
        hdr += p.seq.to_bytes(4, "big")
    msg = hdr + _b_payload(p.payload, None)
    if p.csum:
        msg = msg[:4] + checksum(msg).to_bytes(2, "big") + msg[6:]
    return msg


def _b_vxlan(p: VXLAN, ctx: _Ctx) -> bytes:
    return struct.pack("!II", 0x08000000, p.vni << 8) + _b_payload(p.payload, None)


def _opt(code: int, value: bytes) -> bytes:
    if len(value) > 255:
        raise InvalidInput(f"DHCP option {code} longer than 255 bytes")
    return bytes((code, len(value))) + value


def _classless(routes: tuple[tuple[IPv4Network, IPv4Address], ...]) -> bytes:
    out = b""
    for net, gw in routes:
        width = net.prefixlen
        out += bytes((width,)) + net.network_address.packed[:(width + 7) // 8] + gw.packed
    return out


_DHCP_BYTES: dict[int, tuple[DHCP, bytes]] = {}
"""The last messages serialised, by identity (a message crosses every hop of its path unchanged
and each hop's summary counts its bytes); the entry holds the message, so its id stays its own."""


def _b_dhcp(p: DHCP, ctx: _Ctx) -> bytes:
    got = _DHCP_BYTES.get(id(p))
    if got is not None and got[0] is p:
        return got[1]
    data = _dhcp_bytes(p)
    if len(_DHCP_BYTES) >= 64:
        _DHCP_BYTES.pop(next(iter(_DHCP_BYTES)))
    _DHCP_BYTES[id(p)] = (p, data)
    return data


def _dhcp_bytes(p: DHCP) -> bytes:
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", p.op, 1, 6, p.hops, p.xid, p.secs,
                       0x8000 if p.broadcast else 0, p.ciaddr.packed, p.yiaddr.packed, p.siaddr.packed,
                       p.giaddr.packed, p.chaddr.value.to_bytes(6, "big"), p.sname.encode(), p.file.encode())
    o = [DHCP_MAGIC]
    if p.message_type is not None:
        o.append(_opt(53, bytes((p.message_type,))))
    if p.server_id is not None:
        o.append(_opt(54, p.server_id.packed))
    if p.requested_ip is not None:
        o.append(_opt(50, p.requested_ip.packed))
    if p.lease_time is not None:
        o.append(_opt(51, p.lease_time.to_bytes(4, "big")))
    if p.renewal_time is not None:
        o.append(_opt(58, p.renewal_time.to_bytes(4, "big")))
    if p.rebinding_time is not None:
        o.append(_opt(59, p.rebinding_time.to_bytes(4, "big")))
    if p.subnet_mask is not None:
        o.append(_opt(1, p.subnet_mask.packed))
    if p.broadcast_address is not None:
        o.append(_opt(28, p.broadcast_address.packed))
    if p.router:
        o.append(_opt(3, b"".join(a.packed for a in p.router)))
    if p.dns:
        o.append(_opt(6, b"".join(a.packed for a in p.dns)))
    if p.domain is not None:
        o.append(_opt(15, p.domain.encode()))
    if p.hostname is not None:
        o.append(_opt(12, p.hostname.encode()))
    if p.mtu is not None:
        o.append(_opt(26, p.mtu.to_bytes(2, "big")))
    if p.classless_routes:
        o.append(_opt(121, _classless(p.classless_routes)))
    if p.param_request_list:
        o.append(_opt(55, bytes(p.param_request_list)))
    if p.client_id is not None:
        o.append(_opt(61, p.client_id))
    o.extend(_opt(code, value) for code, value in p.extra)
    o.append(b"\xff")
    msg = head + b"".join(o)
    if len(msg) < BOOTP_MIN_LEN:
        msg += bytes(BOOTP_MIN_LEN - len(msg))
    return msg


_BUILDERS: dict[type, Callable[[Any, _Ctx], bytes]] = {
    Ethernet: _b_ethernet, Dot1Q: _b_dot1q, ARP: _b_arp, IPv4: _b_ipv4, ICMP: _b_icmp, UDP: _b_udp,
    TCP: _b_tcp, DHCP: _b_dhcp, GRE: _b_gre, VXLAN: _b_vxlan, Raw: _b_raw,
}


def to_bytes(pkt: Layer, *, pad: bool = True) -> bytes:
    """The wire bytes of ``pkt``, with lengths and checksums; an Ethernet frame is padded with
    zeros to 60 bytes unless ``pad`` is false (as a capture on the sending host shows it).

    UDP and TCP checksums need the IPv4 pseudo-header, so a UDP or TCP header serialised on its own
    carries checksum 0.
    """
    data = _BUILDERS[type(pkt)](pkt, None)
    if pad and type(pkt) is Ethernet and len(data) < ETH_MIN_FRAME:
        data += bytes(ETH_MIN_FRAME - len(data))
    return data


# --- bytes in ------------------------------------------------------------------------------------

class _Short(Exception):
    pass


def _need(data: bytes, n: int) -> None:
    if len(data) < n:
        raise _Short


def _p_ethernet(data: bytes, verify: bool) -> Ethernet:
    _need(data, 14)
    dst, src, etype = struct.unpack_from("!6s6sH", data)
    return Ethernet(dst=Mac(int.from_bytes(dst, "big")), src=Mac(int.from_bytes(src, "big")), type=etype,
                    payload=_p_ethertype(etype, data[14:], verify))


def _p_ethertype(etype: int, data: bytes, verify: bool) -> Dot1Q | ARP | IPv4 | Raw | None:
    if not data:
        return None
    if etype == EtherType.IPV4:
        ipv4 = _p_ipv4(data, verify)
        if ipv4 is not None:
            return ipv4
    elif etype == EtherType.ARP:
        arp = _p_arp(data)
        if arp is not None:
            return arp
    elif etype in (EtherType.VLAN, EtherType.QINQ) and len(data) >= 4:
        tci, inner = struct.unpack_from("!HH", data)
        return Dot1Q(vid=tci & 0xFFF, pcp=tci >> 13, dei=bool(tci & 0x1000), type=inner,
                     payload=_p_ethertype(inner, data[4:], verify))
    return Raw(data=data)


def _p_arp(data: bytes) -> ARP | None:
    if len(data) < 28:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack_from("!HHBBH6s4s6s4s", data)
    if (htype, ptype, hlen, plen) != (1, EtherType.IPV4, 6, 4):
        return None
    return ARP(op=_enum(ARPOp, op), hwsrc=Mac(int.from_bytes(sha, "big")), psrc=IPv4Address(spa),
               hwdst=Mac(int.from_bytes(tha, "big")), pdst=IPv4Address(tpa))


def _enum(cls: type[enum.IntEnum], value: int) -> int:
    try:
        return cls(value)
    except ValueError:
        return value


def _bad(what: str, data: bytes) -> ParseError:
    return ParseError(f"a correct {what} checksum", text=data[:32].hex(), source="<packet>")


def _p_ipv4(data: bytes, verify: bool) -> IPv4 | None:
    if len(data) < 20:
        return None
    vihl, tos, total, ident, frag, ttl, proto, _c, src, dst = struct.unpack_from("!BBHHHBBH4s4s", data)
    hlen = (vihl & 0xF) * 4
    if vihl >> 4 != 4 or hlen < 20 or total < hlen or total > len(data):
        return None
    if verify and checksum(data[:hlen]):
        raise _bad("IPv4 header", data)
    s, d = IPv4Address(src), IPv4Address(dst)
    body = data[hlen:total]
    offset = frag & 0x1FFF
    mf = bool(frag & 0x2000)
    payload: ICMP | UDP | TCP | GRE | Raw | None
    if not body:
        payload = None
    elif offset or mf:
        payload = Raw(data=body)
    else:
        payload = _p_ipproto(proto, body, (src, dst), verify)
    return IPv4(src=s, dst=d, proto=proto, ttl=ttl, id=ident, df=bool(frag & 0x4000), mf=mf, frag=offset, tos=tos,
                options=data[20:hlen], payload=payload)


def _p_ipproto(proto: int, body: bytes, ctx: tuple[bytes, bytes], verify: bool) -> ICMP | UDP | TCP | GRE | Raw:
    try:
        if proto == IPProto.ICMP:
            return _p_icmp(body, verify)
        if proto == IPProto.UDP:
            return _p_udp(body, ctx, verify)
        if proto == IPProto.TCP:
            return _p_tcp(body, ctx, verify)
        if proto == IPProto.GRE:
            gre = _p_gre(body, verify)
            if gre is not None:
                return gre
    except _Short:
        pass
    return Raw(data=body)


_ICMP_ERRORS = frozenset({ICMPType.DEST_UNREACH, ICMPType.SOURCE_QUENCH, ICMPType.REDIRECT,
                          ICMPType.TIME_EXCEEDED, ICMPType.PARAM_PROBLEM})


def _p_icmp(data: bytes, verify: bool) -> ICMP:
    _need(data, 8)
    if verify and checksum(data):
        raise _bad("ICMP", data)
    t, code, _c, ident, seq = struct.unpack_from("!BBHHH", data)
    body = data[8:]
    payload: IPv4 | Raw | None = None
    if body:
        quote = _p_ipv4(body, False) if t in _ICMP_ERRORS else None
        payload = quote or Raw(data=body)
    return ICMP(type=_enum(ICMPType, t), code=code, id=ident, seq=seq, payload=payload)


def _p_udp(data: bytes, ctx: tuple[bytes, bytes], verify: bool) -> UDP:
    _need(data, 8)
    sport, dport, length, c = struct.unpack_from("!HHHH", data)
    if length < 8 or length > len(data):
        raise _Short
    seg = data[:length]
    if verify and c and _l4_checksum(ctx, IPProto.UDP, seg):
        raise _bad("UDP", data)
    body = seg[8:]
    payload: DHCP | VXLAN | Raw | None = None
    if body:
        if dport == VXLAN_PORT:
            payload = _p_vxlan(body, verify)
        elif {sport, dport} & {67, 68}:
            payload = _p_dhcp(body)
        payload = payload or Raw(data=body)
    return UDP(sport=sport, dport=dport, payload=payload)


def _p_tcp(data: bytes, ctx: tuple[bytes, bytes], verify: bool) -> TCP:
    _need(data, 20)
    sport, dport, seq, ack, off, flags, window, _c, urgent = struct.unpack_from("!HHIIBBHHH", data)
    hlen = (off >> 4) * 4
    if hlen < 20 or hlen > len(data):
        raise _Short
    if verify and _l4_checksum(ctx, IPProto.TCP, data):
        raise _bad("TCP", data)
    body = data[hlen:]
    return TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=TCPFlag(flags), window=window, urgent=urgent,
               options=data[20:hlen], payload=Raw(data=body) if body else None)


def _p_gre(data: bytes, verify: bool) -> GRE | None:
    _need(data, 4)
    flags, proto = struct.unpack_from("!HH", data)
    if flags & 0x4FF8 or flags & 0x7:  # routing present, reserved bits, or a version other than 0
        return None
    pos = 4
    csum = bool(flags & 0x8000)
    key = seq = None
    if csum:
        _need(data, pos + 4)
        if verify and checksum(data):
            raise _bad("GRE", data)
        pos += 4
    if flags & 0x2000:
        _need(data, pos + 4)
        key = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
    if flags & 0x1000:
        _need(data, pos + 4)
        seq = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
    body = data[pos:]
    payload: Ethernet | IPv4 | Raw | None = None
    if body:
        if proto == EtherType.TEB:
            try:
                payload = _p_ethernet(body, verify)
            except _Short:
                payload = Raw(data=body)
        elif proto == EtherType.IPV4:
            payload = _p_ipv4(body, verify) or Raw(data=body)
        else:
            payload = Raw(data=body)
    return GRE(proto=proto, key=key, seq=seq, csum=csum, payload=payload)


def _p_vxlan(data: bytes, verify: bool) -> VXLAN | None:
    if len(data) < 8:
        return None
    flags, vni = struct.unpack_from("!II", data)
    if flags != 0x08000000 or vni & 0xFF:
        return None
    inner = data[8:]
    try:
        return VXLAN(vni=vni >> 8, payload=_p_ethernet(inner, verify) if inner else None)
    except _Short:
        return None


def _p_dhcp(data: bytes) -> DHCP | None:
    if len(data) < 240 or data[236:240] != DHCP_MAGIC:
        return None
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, ch, sname, file) = struct.unpack_from(
        "!BBBBIHH4s4s4s4s16s64s128s", data)
    f: dict[str, Any] = {}
    extra: list[tuple[int, bytes]] = []
    pos, n = 240, len(data)
    while pos < n:
        code = data[pos]
        if code == 0:
            pos += 1
            continue
        if code == 255 or pos + 1 >= n:
            break
        length = data[pos + 1]
        v = data[pos + 2:pos + 2 + length]
        pos += 2 + length
        try:
            known = _dhcp_option(f, code, v)
        except (ValueError, IndexError, UnicodeDecodeError):
            known = False
        if not known:
            extra.append((code, v))
    return DHCP(op=_enum(BootOp, op), hops=hops, xid=xid, secs=secs, broadcast=bool(flags & 0x8000),
                ciaddr=IPv4Address(ci), yiaddr=IPv4Address(yi), siaddr=IPv4Address(si), giaddr=IPv4Address(gi),
                chaddr=Mac(int.from_bytes(ch[:6], "big")), sname=_cstr(sname), file=_cstr(file),
                extra=tuple(extra), **f)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("latin-1")


def _addrs(v: bytes) -> tuple[IPv4Address, ...]:
    if not v or len(v) % 4:
        raise ValueError
    return tuple(IPv4Address(v[i:i + 4]) for i in range(0, len(v), 4))


def _one_addr(v: bytes) -> IPv4Address:
    if len(v) != 4:
        raise ValueError
    return IPv4Address(v)


def _u32(v: bytes) -> int:
    if len(v) != 4:
        raise ValueError
    return int.from_bytes(v, "big")


def _routes(v: bytes) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    out = []
    i = 0
    while i < len(v):
        width = v[i]
        k = (width + 7) // 8
        if width > 32 or i + 1 + k + 4 > len(v):
            raise ValueError
        net = IPv4Network((int.from_bytes(v[i + 1:i + 1 + k] + bytes(4 - k), "big"), width))
        out.append((net, IPv4Address(v[i + 1 + k:i + 5 + k])))
        i += 5 + k
    if not out:
        raise ValueError
    return tuple(out)


_DHCP_OPTION_FIELDS = {
    53: "message_type", 54: "server_id", 50: "requested_ip", 51: "lease_time", 58: "renewal_time",
    59: "rebinding_time", 1: "subnet_mask", 28: "broadcast_address", 3: "router", 6: "dns", 15: "domain",
    12: "hostname", 26: "mtu", 121: "classless_routes", 55: "param_request_list", 61: "client_id",
}


def _dhcp_option(f: dict[str, Any], code: int, v: bytes) -> bool:
    """Store option ``code`` in ``f`` and say so; False for an option the fields do not model or
    one already seen (both go to ``extra``). Raises ValueError for a malformed value."""
    name = _DHCP_OPTION_FIELDS.get(code)
    if name is None or name in f:
        return False
    value: Any
    if code == 53:
        if len(v) != 1:
            raise ValueError
        value = DHCPMessageType(v[0])
    elif code in (54, 50, 1, 28):
        value = _one_addr(v)
    elif code in (51, 58, 59):
        value = _u32(v)
    elif code in (3, 6):
        value = _addrs(v)
    elif code in (15, 12):
        value = v.decode("utf-8")
    elif code == 26:
        if len(v) != 2:
            raise ValueError
        value = int.from_bytes(v, "big")
    elif code == 121:
        value = _routes(v)
    elif code == 55:
        value = tuple(v)
    else:
        value = v
    f[name] = value
    return True


def from_bytes(data: bytes, *, verify: bool = False) -> Ethernet:
    """Parse an Ethernet frame. Headers it does not know, and anything malformed, become
    :class:`Raw`; padding after an IPv4 datagram or ARP message is dropped. With ``verify``, a
    wrong IPv4, ICMP, UDP, TCP or GRE checksum raises ParseError."""
    try:
        return _p_ethernet(bytes(data), verify)
    except _Short:
        raise ParseError("an Ethernet frame of at least 14 bytes", text=bytes(data).hex(),
                         source="<packet>") from None


# --- text out ------------------------------------------------------------------------------------

_TCP_FLAG_CHARS = ((TCPFlag.FIN, "F"), (TCPFlag.SYN, "S"), (TCPFlag.RST, "R"), (TCPFlag.PSH, "P"),
                   (TCPFlag.ACK, "."), (TCPFlag.URG, "U"), (TCPFlag.ECE, "E"), (TCPFlag.CWR, "W"))

_UNREACH_TEXT = {
    UnreachCode.NET: "net {dst} unreachable",
    UnreachCode.HOST: "host {dst} unreachable",
    UnreachCode.SOURCE_ROUTE_FAILED: "{dst} unreachable - source route failed",
    UnreachCode.NET_UNKNOWN: "net {dst} unreachable - unknown",
    UnreachCode.HOST_UNKNOWN: "host {dst} unreachable - unknown",
    UnreachCode.HOST_ISOLATED: "{dst} unreachable - source host isolated",
    UnreachCode.NET_PROHIBITED: "net {dst} unreachable - admin prohibited",
    UnreachCode.HOST_PROHIBITED: "host {dst} unreachable - admin prohibited",
    UnreachCode.NET_TOS: "net {dst} unreachable - tos prohibited",
    UnreachCode.HOST_TOS: "host {dst} unreachable - tos prohibited",
    UnreachCode.ADMIN_PROHIBITED: "host {dst} unreachable - admin prohibited filter",
    UnreachCode.HOST_PRECEDENCE: "host {dst} unreachable - host precedence violation",
    UnreachCode.PRECEDENCE_CUTOFF: "host {dst} unreachable - precedence cutoff",
}


def _tcp_options_text(opts: bytes) -> str:
    out: list[str] = []
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            out.append("eol")
            break
        if kind == 1:
            out.append("nop")
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            out.append("bad opt")
            break
        ln = opts[i + 1]
        v = opts[i + 2:i + ln]
        if kind == 2 and ln == 4:
            out.append(f"mss {int.from_bytes(v, 'big')}")
        elif kind == 3 and ln == 3:
            out.append(f"wscale {v[0]}")
        elif kind == 4 and ln == 2:
            out.append("sackOK")
        elif kind == 8 and ln == 10:
            out.append(f"TS val {int.from_bytes(v[:4], 'big')} ecr {int.from_bytes(v[4:], 'big')}")
        else:
            out.append(f"unknown-{kind} 0x{v.hex()}" if v else f"unknown-{kind}")
        i += ln
    return ",".join(out)


def _icmp_text(p: ICMP, length: int) -> str:
    t, code = p.type, p.code
    if t in (ICMPType.ECHO_REQUEST, ICMPType.ECHO_REPLY):
        kind = "request" if t == ICMPType.ECHO_REQUEST else "reply"
        return f"ICMP echo {kind}, id {p.id}, seq {p.seq}, length {length}"
    orig = p.payload if isinstance(p.payload, IPv4) else None
    if t == ICMPType.DEST_UNREACH and orig is not None:
        if code == UnreachCode.PORT and isinstance(orig.payload, UDP | TCP):
            name = "udp" if isinstance(orig.payload, UDP) else "tcp"
            text = f"{orig.dst} {name} port {orig.payload.dport} unreachable"
        elif code == UnreachCode.PROTOCOL:
            text = f"{orig.dst} protocol {orig.proto} unreachable"
        elif code == UnreachCode.FRAG_NEEDED:
            text = f"{orig.dst} unreachable - need to frag (mtu {p.seq})"
        elif code in _UNREACH_TEXT:
            text = _UNREACH_TEXT[UnreachCode(code)].format(dst=orig.dst)
        else:
            text = f"{orig.dst} unreachable - #{code}"
        return f"ICMP {text}, length {length}"
    if t == ICMPType.TIME_EXCEEDED:
        text = "time exceeded in-transit" if code == 0 else "ip reassembly time exceeded"
        return f"ICMP {text}, length {length}"
    names: dict[int, str] = {ICMPType.DEST_UNREACH: "dest unreachable", ICMPType.REDIRECT: "redirect",
                             ICMPType.SOURCE_QUENCH: "source quench", ICMPType.PARAM_PROBLEM: "parameter problem"}
    return f"ICMP {names.get(t, f'type-#{t}')}, length {length}"


def _ip_text(p: IPv4, link: bool) -> str:
    """tcpdump's text for an IPv4 datagram; ``link``: after a link-level header (no "IP ")."""
    body_len = len(to_bytes(p.payload)) if p.payload is not None else 0
    ipw = "" if link else "IP "
    l4 = p.payload
    if isinstance(l4, UDP):
        head = f"{ipw}{p.src}.{l4.sport} > {p.dst}.{l4.dport}: "
        inner = l4.payload
        n = body_len - 8
        if isinstance(inner, DHCP):
            who = f"Request from {inner.chaddr}" if inner.op == BootOp.REQUEST else "Reply"
            return f"{head}BOOTP/DHCP, {who}, length {n}"
        if isinstance(inner, VXLAN):
            # tcpdump prints the inner frame on a line of its own; here it follows ": "
            rest = f": {_frame_text(inner.payload, link, False)}" if inner.payload is not None else ""
            return f"{head}VXLAN, flags [I] (0x08), vni {inner.vni}{rest}"
        return f"{head}UDP, length {n}"
    if isinstance(l4, TCP):
        head = f"{ipw}{p.src}.{l4.sport} > {p.dst}.{l4.dport}: "
        n = len(l4.payload.data) if l4.payload is not None else 0
        flags = "".join(c for f, c in _TCP_FLAG_CHARS if l4.flags & f) or "none"
        parts = [f"Flags [{flags}]"]
        if n:
            parts.append(f"seq {l4.seq}:{(l4.seq + n) & 0xFFFFFFFF}")
        elif l4.flags & (TCPFlag.SYN | TCPFlag.FIN | TCPFlag.RST):
            parts.append(f"seq {l4.seq}")
        if l4.flags & TCPFlag.ACK:
            parts.append(f"ack {l4.ack}")
        parts.append(f"win {l4.window}")
        if l4.flags & TCPFlag.URG:
            parts.append(f"urg {l4.urgent}")
        if l4.options:
            parts.append(f"options [{_tcp_options_text(l4.options)}]")
        parts.append(f"length {n}")
        return head + ", ".join(parts)
    head = f"{ipw}{p.src} > {p.dst}: "
    if isinstance(l4, ICMP):
        return head + _icmp_text(l4, body_len)
    if isinstance(l4, GRE):
        bits = ["GREv0"]
        if l4.csum:
            bits.append("off 0x0")  # the checksum bit brings the (unused) offset word along
        if l4.key is not None:
            bits.append(f"key=0x{l4.key:x}")
        if l4.seq is not None:
            bits.append(f"seq {l4.seq}")
        if link:
            bits.append(f"proto {_GRE_PROTO_NAMES.get(l4.proto, 'unknown')} (0x{l4.proto:04x})")
        bits.append(f"length {body_len}")
        text = head + ", ".join(bits)
        if isinstance(l4.payload, Ethernet):
            return f"{text}: {_frame_text(l4.payload, link, False)}"
        if isinstance(l4.payload, IPv4):
            return f"{text}: {_ip_text(l4.payload, link)}"
        return text
    return f"{head} ip-proto-{p.proto} {body_len}"


_GRE_PROTO_NAMES: dict[int, str] = {EtherType.TEB: "TEB", EtherType.IPV4: "IPv4"}


def _ethertype_name(t: int) -> str:
    names: dict[int, str] = {EtherType.IPV4: "IPv4", EtherType.ARP: "ARP", EtherType.VLAN: "802.1Q",
                             EtherType.IPV6: "IPv6", EtherType.QINQ: "802.1Q-QinQ"}
    return f"{names.get(t, 'Unknown')} (0x{t:04x})"


def _frame_text(frame: Ethernet, link: bool, pad: bool) -> str:
    """A frame as tcpdump prints it; with ``link`` (``-e``) after its Ethernet header, which
    tcpdump also prints for an ethertype it cannot decode."""
    n = len(to_bytes(frame, pad=pad))
    if not link:
        text = _l3_text(frame.payload, frame.type, n - 14, False, False)
        if text:
            return text
    head = f"{frame.src} > {frame.dst}, ethertype {_ethertype_name(frame.type)}, length {n}"
    text = _l3_text(frame.payload, frame.type, n - 14, True, True)
    return f"{head}: {text}" if text else head


def _l3_text(p: Dot1Q | ARP | IPv4 | Raw | None, etype: int, avail: int, bare: bool, link: bool) -> str:
    """What follows the Ethernet header. ``bare``: without the "IP "/"ARP, " word; ``link``: show
    802.1Q tags (without it tcpdump shows no tag, only the lengths reflect it)."""
    if isinstance(p, Dot1Q):
        text = _l3_text(p.payload, p.type, avail - 4, bare, link)
        if not link:
            return text
        return f"vlan {p.vid}, p {p.pcp}{', DEI' if p.dei else ''}, ethertype {_ethertype_name(p.type)}, {text}"
    if isinstance(p, ARP):
        word = "" if bare else "ARP, "
        if p.op == ARPOp.REQUEST:
            tha = f" ({p.hwdst})" if p.hwdst != ZERO_MAC else ""
            return f"{word}Request who-has {p.pdst}{tha} tell {p.psrc}, length {avail}"
        if p.op == ARPOp.REPLY:
            return f"{word}Reply {p.psrc} is-at {p.hwsrc}, length {avail}"
        return f"{word}op {p.op}, length {avail}"
    if isinstance(p, IPv4):
        return _ip_text(p, bare)
    return ""


def summary(pkt: Layer, *, pad: bool = False, link: bool = False) -> str:
    """One line, as ``tcpdump -n -S`` prints the packet (``-e`` too when ``link``: MACs,
    ethertypes, 802.1Q tags). ARP's ``length`` counts the bytes after the Ethernet header,
    padding included when ``pad`` is set (a frame received off the wire) and not otherwise (one
    captured on its sender, as in seed 004).

    Where tcpdump starts a new line (the frame inside VXLAN) this line goes on after ": ". Unlike
    tcpdump, UDP and TCP payloads other than DHCP and VXLAN are not decoded.
    """
    if isinstance(pkt, Ethernet):
        return _frame_text(pkt, link, pad)
    if isinstance(pkt, IPv4):
        return _ip_text(pkt, False)
    return show(pkt).splitlines()[0]


_FIELD_ENUMS: dict[tuple[type, str], type[enum.IntEnum]] = {
    (Ethernet, "type"): EtherType, (Dot1Q, "type"): EtherType, (GRE, "proto"): EtherType,
    (IPv4, "proto"): IPProto, (ICMP, "type"): ICMPType, (ARP, "op"): ARPOp, (DHCP, "op"): BootOp,
    (DHCP, "message_type"): DHCPMessageType,
}


def _fmt(cls: type, name: str, v: object) -> str:
    """A field's value for :func:`show`; the same for a built and a parsed packet."""
    if isinstance(v, enum.IntFlag):
        names = "|".join(m.name or "" for m in type(v) if m & v) or "none"
        return f"{int(v)} ({names})"
    named = _FIELD_ENUMS.get((cls, name))
    if named is not None and isinstance(v, int):
        number = f"0x{v:04x}" if named is EtherType else str(int(v))
        try:
            return f"{number} ({named(v).name})"
        except ValueError:
            return number
    if isinstance(v, bytes):
        return v.hex() if v else "''"
    if isinstance(v, tuple):
        return "[" + ", ".join(" via ".join(map(str, x)) if isinstance(x, tuple) else str(x) for x in v) + "]"
    return str(v)


def show(pkt: Layer) -> str:
    """A layered tree: one header per line, its fields indented below, the payload nested.

    >>> print(show(arp_request(mac("fa:16:3e:00:00:01"), ip("10.0.0.1"), ip("10.0.0.2"))))
    Ethernet
      dst: ff:ff:ff:ff:ff:ff
      src: fa:16:3e:00:00:01
      type: 0x0806 (ARP)
      ARP
        op: 1 (REQUEST)
        hwsrc: fa:16:3e:00:00:01
        psrc: 10.0.0.1
        hwdst: 00:00:00:00:00:00
        pdst: 10.0.0.2
    """
    lines: list[str] = []
    layer: Any = pkt
    depth = 0
    while layer is not None:
        pad = "  " * depth
        lines.append(pad + type(layer).__name__)
        nxt: Any = None
        for f in dataclasses.fields(layer):
            v = getattr(layer, f.name)
            if f.name == "payload":
                nxt = v
                continue
            if v is None or (f.name in ("extra", "options", "router", "dns", "classless_routes",
                                        "param_request_list") and not v):
                continue
            lines.append(f"{pad}  {f.name}: {_fmt(type(layer), f.name, v)}")
        layer = nxt
        depth += 1
    return "\n".join(lines)


def quoted_datagram(err: ICMP) -> IPv4 | None:
    """The offending datagram an ICMP error quotes, when it parsed as IPv4."""
    return err.payload if isinstance(err.payload, IPv4) else None
