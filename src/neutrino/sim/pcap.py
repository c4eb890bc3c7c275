"""Classic libpcap files (LINKTYPE_ETHERNET): the simulator's packets out, and captures back in.

Timestamps are given, never read from a clock, so the same trace writes the same file.

>>> from neutrino.sim.packets import arp_request, mac, ip
>>> frame = arp_request(mac("fa:16:3e:00:00:01"), ip("10.0.0.1"), ip("10.0.0.2"))
>>> data = pcap_bytes([(1.5, frame)])
>>> (rec,) = read_pcap_bytes(data)
>>> rec.timestamp, rec.orig_len, rec.packet() == frame
(1.5, 60, True)
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, BinaryIO

from neutrino.errors import ParseError
from neutrino.host.openflow_fields import Mac
from neutrino.sim.packets import ZERO_MAC, Ethernet, encapsulate_gre, encapsulate_vxlan, from_bytes, to_bytes

if TYPE_CHECKING:
    from neutrino.sim.trace import Hop, Trace

LINKTYPE_ETHERNET = 1
MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
DEFAULT_SNAPLEN = 262144  # what tcpdump writes today


@dataclass(frozen=True, slots=True)
class PcapRecord:
    """One captured frame: when, the bytes kept, and the frame's length on the wire."""

    timestamp: float
    data: bytes
    orig_len: int

    def packet(self, *, verify: bool = False) -> Ethernet:
        """The frame parsed (see :func:`neutrino.sim.packets.from_bytes`)."""
        return from_bytes(self.data, verify=verify)


def timestamps(start: float = 0.0, step: float = 0.001) -> Iterator[float]:
    """``start``, ``start + step``, … : deterministic capture times."""
    n = 0
    while True:
        yield start + n * step
        n += 1


def _split(ts: float) -> tuple[int, int]:
    usec = round(ts * 1_000_000)
    if usec < 0:
        raise ValueError(f"negative timestamp {ts}")
    return usec // 1_000_000, usec % 1_000_000


def write_pcap(out: BinaryIO, records: Iterable[tuple[float, Ethernet | bytes]], *,
               snaplen: int = DEFAULT_SNAPLEN) -> int:
    """Write a microsecond-resolution little-endian pcap of ``(timestamp, frame)`` pairs to
    ``out``; frames are serialised (and padded to 60 bytes) by ``to_bytes``. Returns the count."""
    out.write(struct.pack("<IHHiIII", MAGIC_USEC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
    n = 0
    for ts, frame in records:
        data = frame if isinstance(frame, bytes | bytearray) else to_bytes(frame)
        sec, usec = _split(ts)
        kept = bytes(data[:snaplen])
        out.write(struct.pack("<IIII", sec, usec, len(kept), len(data)))
        out.write(kept)
        n += 1
    return n


def pcap_bytes(records: Iterable[tuple[float, Ethernet | bytes]], *, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    """The pcap file :func:`write_pcap` would write, as bytes."""
    buf = io.BytesIO()
    write_pcap(buf, records, snaplen=snaplen)
    return buf.getvalue()


def save_pcap(path: str | os.PathLike[str], records: Iterable[tuple[float, Ethernet | bytes]], *,
              snaplen: int = DEFAULT_SNAPLEN) -> int:
    """:func:`write_pcap` to a file at ``path``."""
    with open(path, "wb") as f:
        return write_pcap(f, records, snaplen=snaplen)


def read_pcap(src: BinaryIO, *, source: str = "<pcap>") -> Iterator[PcapRecord]:
    """The records of a classic pcap (either byte order, micro- or nanosecond timestamps).
    Raises ParseError for another format, another link type or a truncated file."""
    head = src.read(24)
    if len(head) < 24:
        raise ParseError("a pcap file header (24 bytes)", text=head.hex(), source=source)
    for order in "<>":
        magic = struct.unpack(order + "I", head[:4])[0]
        if magic in (MAGIC_USEC, MAGIC_NSEC):
            break
    else:
        raise ParseError("the pcap magic a1b2c3d4 or a1b23c4d (pcapng is not read)", text=head[:4].hex(),
                         source=source)
    scale = 1_000_000 if magic == MAGIC_USEC else 1_000_000_000
    _m, _major, _minor, _tz, _sig, _snap, linktype = struct.unpack(order + "IHHiIII", head)
    if linktype & 0xFFFF != LINKTYPE_ETHERNET:
        raise ParseError("LINKTYPE_ETHERNET (1)", text=str(linktype), source=source)
    rec_fmt = order + "IIII"
    n = 0
    while True:
        rh = src.read(16)
        if not rh:
            return
        n += 1
        if len(rh) < 16:
            raise ParseError(f"record header {n} (16 bytes)", text=rh.hex(), source=source)
        sec, frac, incl, orig = struct.unpack(rec_fmt, rh)
        data = src.read(incl)
        if len(data) < incl:
            raise ParseError(f"{incl} bytes of record {n}", text=data[:16].hex(), source=source)
        yield PcapRecord(sec + frac / scale, data, orig)


def read_pcap_bytes(data: bytes) -> list[PcapRecord]:
    """All records of a pcap held in memory."""
    return list(read_pcap(io.BytesIO(data)))


def load_pcap(path: str | os.PathLike[str]) -> list[PcapRecord]:
    """All records of the pcap file at ``path``."""
    with open(path, "rb") as f:
        return list(read_pcap(f, source=os.fspath(path)))


# --- a trace's packets as they were on the wire ----------------------------------------------------

_ENCAP = re.compile(r"(?P<kind>\w+) (?P<src>[0-9.]+) > (?P<dst>[0-9.]+), (?:key (?P<key>0x[0-9a-f]+)|no key), "
                    r"to (?P<host>\S+) (?P<bridge>\S+) (?P<port>\S+)$")


def underlay_mac(address: IPv4Address) -> Mac:
    """The MAC of the NIC that holds a host's tunnel address. Host states do not know it (neither
    plans nor the seeds' captures list that NIC), so it is made up, the same for the same address:
    52:54:00 (libvirt's prefix: the seeds' hosts are libvirt guests on 192.168.122.0/24) and the
    address's last three bytes."""
    return Mac(0x525400000000 | (int(address) & 0xFFFFFF))


def _tunnels(hop: Hop) -> dict[tuple[str, str, str], tuple[str, IPv4Address, IPv4Address, int | None]]:
    """Where the hop's tunnel ports sent the packet (the far host, bridge and port), and how."""
    from neutrino.sim.trace import StepKind

    out: dict[tuple[str, str, str], tuple[str, IPv4Address, IPv4Address, int | None]] = {}
    for st in hop.steps:
        if st.kind is not StepKind.ENCAP:
            continue
        m = _ENCAP.match(st.detail)
        if m is None:
            continue
        try:
            src, dst = IPv4Address(m["src"]), IPv4Address(m["dst"])
        except ValueError:
            continue
        key = int(m["key"], 16) if m["key"] else None
        out[(m["host"], m["bridge"], m["port"])] = (m["kind"].lower(), src, dst, key)
    return out


def on_the_wire(frame: Ethernet, kind: str, src: IPv4Address, dst: IPv4Address, key: int | None) -> Ethernet:
    """``frame`` inside the tunnel's outer headers, from the sending host's NIC to the receiving one's."""
    src_mac, dst_mac = underlay_mac(src), underlay_mac(dst)
    if kind == "vxlan":
        return encapsulate_vxlan(frame, src_mac=src_mac, dst_mac=dst_mac, src=src, dst=dst, vni=key or 0)
    return encapsulate_gre(frame, src_mac=src_mac, dst_mac=dst_mac, src=src, dst=dst, key=key)


def wire_frames(trace: Trace) -> list[tuple[Hop, Ethernet]]:
    """Each hop that a frame entered, with that frame as it was on the wire: a hop entered through a
    tunnel port carries the outer headers the previous hop's tunnel port put on; a hop whose frame
    has no MACs at all (the IP stack's own packet before it was sent, a ``(local)`` hop) is left
    out, since no device carried it. The request's hops, then the reply's."""
    out: list[tuple[Hop, Ethernet]] = []
    sent: dict[tuple[str, str, str], tuple[str, IPv4Address, IPv4Address, int | None]] = {}
    for hop in trace.hops:
        frame = hop.frame
        if isinstance(frame, Ethernet) and not (frame.src == ZERO_MAC and frame.dst == ZERO_MAC):
            tunnel = sent.get((hop.host, hop.element, hop.device))
            out.append((hop, on_the_wire(frame, *tunnel) if tunnel is not None else frame))
        sent = _tunnels(hop)
    if trace.reply is not None:
        out.extend(wire_frames(trace.reply))
    return out
