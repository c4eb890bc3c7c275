"""net-tools 2.10's languages: ``ifconfig``, ``route -n`` and ``arp -n``.

Formats follow net-tools' ``lib/interface.c`` (``ife_print_long``), ``lib/inet_gr.c`` and
``arp.c``. Counters are kept, so a parsed ``ifconfig`` renders back with the same numbers; the
human size in ``bytes N (86.8 GiB)`` is computed the way net-tools does (tenths, truncated, unit
chosen when the count is strictly above 1024**k).

>>> human_bytes(93216606173), human_bytes(1250), human_bytes(446)
('86.8 GiB', '1.2 KiB', '446.0 B')
>>> r = parse_route_n('''Kernel IP routing table
... Destination     Gateway         Genmask         Flags Metric Ref    Use Iface
... 0.0.0.0         10.0.0.1        0.0.0.0         UG    0      0        0 eth0
... ''')
>>> str(r[0].gateway), r[0].flags, r[0].iface
('10.0.0.1', 'UG', 'eth0')
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from neutrino.errors import ParseError
from neutrino.host.iproute import Partial, Skipped, is_elision
from neutrino.host.iproute_route import Neighbour

# --- ifconfig ------------------------------------------------------------------------------

IFF_FLAGS = (  # net-tools' print order, with the kernel's IFF_* bits
    ("UP", 0x1), ("BROADCAST", 0x2), ("DEBUG", 0x4), ("LOOPBACK", 0x8), ("POINTOPOINT", 0x10),
    ("NOTRAILERS", 0x20), ("RUNNING", 0x40), ("NOARP", 0x80), ("PROMISC", 0x100), ("ALLMULTI", 0x200),
    ("SLAVE", 0x800), ("MASTER", 0x400), ("MULTICAST", 0x1000), ("DYNAMIC", 0x8000),
)
_UNITS = ((1125899906842624, "PiB"), (1099511627776, "TiB"), (1073741824, "GiB"), (1048576, "MiB"),
          (1024, "KiB"))


def human_bytes(n: int) -> str:
    """net-tools' ``(86.8 GiB)`` text for a byte count (truncating to tenths)."""
    tenths, unit = n * 10, "B"
    for size, name in _UNITS:
        if n > size:
            tenths, unit = n * 10 // size, name
            break
    return f"{tenths // 10}.{tenths % 10} {unit}"


def ifconfig_flag_names(flags: int) -> tuple[str, ...]:
    return tuple(name for name, bit in IFF_FLAGS if flags & bit)


@dataclass(frozen=True, slots=True)
class IfconfigInet6:
    address: ipaddress.IPv6Address
    prefixlen: int
    scopeid: int

    @property
    def scope_names(self) -> tuple[str, ...]:
        scope = self.scopeid
        names = []
        if scope & 0x80:
            names.append("compat")
            scope -= 0x80
        if scope == 0:
            names.append("global")
        for bit, name in ((0x20, "link"), (0x40, "site"), (0x10, "host")):
            if scope & bit:
                names.append(name)
        return tuple(names)


@dataclass(frozen=True, slots=True)
class IfconfigStats:
    rx_packets: int
    rx_bytes: int
    rx_errors: int
    rx_dropped: int
    rx_overruns: int
    rx_frame: int
    tx_packets: int
    tx_bytes: int
    tx_errors: int
    tx_dropped: int
    tx_overruns: int
    tx_carrier: int
    tx_collisions: int


@dataclass(frozen=True, slots=True)
class IfconfigInterface:
    """One ``ifconfig`` block. ``flags`` is the numeric value; its names are derived."""

    name: str
    flags: int
    mtu: int
    inet: ipaddress.IPv4Address | None = None
    netmask: ipaddress.IPv4Address | None = None
    broadcast: ipaddress.IPv4Address | None = None
    destination: ipaddress.IPv4Address | None = None
    inet6: tuple[IfconfigInet6, ...] = ()
    hw_name: str = "ether"
    hwaddr: str | None = None
    txqueuelen: int | None = None
    hw_title: str = "Ethernet"
    stats: IfconfigStats | None = None

    @property
    def flag_names(self) -> tuple[str, ...]:
        return ifconfig_flag_names(self.flags)

    @property
    def ipv4_interface(self) -> ipaddress.IPv4Interface | None:
        if self.inet is None or self.netmask is None:
            return None
        return ipaddress.IPv4Interface(f"{self.inet}/{self.netmask}")


# patterns are compiled where used (re keeps them): importing the module compiles none
_IF_HEAD = r"^(\S+): flags=(\d+)<([A-Z,]*)>  mtu (\d+)\s*$"
_IF_INET = r"^inet (\S+)  netmask (\S+)(?:  broadcast (\S+))?(?:  destination (\S+))?\s*$"
_IF_INET6 = r"^inet6 (\S+)  prefixlen (\d+)  scopeid 0x([0-9a-f]+)<[a-z,]*>\s*$"
_IF_HW = r"^(\S+)(?: (\S+))?(?:  txqueuelen (\d+))?  \((.*)\)\s*$"
_IF_RXP = r"^RX packets (\d+)  bytes (\d+) \(\d+\.\d [KMGTPE]?i?B\)\s*$"
_IF_RXE = r"^RX errors (\d+)  dropped (\d+)  overruns (\d+)  frame (\d+)\s*$"
_IF_TXP = r"^TX packets (\d+)  bytes (\d+) \(\d+\.\d [KMGTPE]?i?B\)\s*$"
_IF_TXE = r"^TX errors (\d+)  dropped (\d+) overruns (\d+)  carrier (\d+)  collisions (\d+)\s*$"


def _ifconfig(text: str, source: str, skipped: list[Skipped] | None) -> tuple[IfconfigInterface, ...]:
    out: list[IfconfigInterface] = []
    cur: dict[str, object] | None = None
    stats: list[int] = []
    inet6: list[IfconfigInet6] = []

    def finish() -> None:
        nonlocal cur, stats, inet6
        if cur is not None:
            st = IfconfigStats(*stats) if len(stats) == 13 else None
            out.append(IfconfigInterface(inet6=tuple(inet6), stats=st, **cur))  # type: ignore[arg-type]
        cur, stats, inet6 = None, [], []

    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if skipped is not None and is_elision(line):
            skipped.append(Skipped(n, line))
            continue
        body = line.strip()
        try:
            if not line[0].isspace():
                finish()
                m = re.compile(_IF_HEAD).match(line)
                if not m:
                    raise ParseError("'NAME: flags=N<...>  mtu M'", text=line, line=n, source=source)
                name, flags, names, mtu = m.groups()
                if ",".join(ifconfig_flag_names(int(flags))) != names:
                    raise ParseError(f"flag names matching flags={flags}", text=line, line=n, source=source)
                cur = {"name": name, "flags": int(flags), "mtu": int(mtu)}
                continue
            if cur is None:
                raise ParseError("an interface header first", text=line, line=n, source=source)
            if (m := re.compile(_IF_INET).match(body)) is not None:
                a, mask, brd, dst = m.groups()
                cur["inet"] = ipaddress.IPv4Address(a)
                cur["netmask"] = ipaddress.IPv4Address(mask)
                cur["broadcast"] = ipaddress.IPv4Address(brd) if brd else None
                cur["destination"] = ipaddress.IPv4Address(dst) if dst else None
            elif (m := re.compile(_IF_INET6).match(body)) is not None:
                inet6.append(IfconfigInet6(ipaddress.IPv6Address(m.group(1)), int(m.group(2)), int(m.group(3), 16)))
            elif (m := re.compile(_IF_RXP).match(body) or re.compile(_IF_RXE).match(body)
                  or re.compile(_IF_TXP).match(body) or re.compile(_IF_TXE).match(body)) is not None:
                stats.extend(int(g) for g in m.groups())
            elif (m := re.compile(_IF_HW).match(body)) is not None:
                hw, addr, qlen, title = m.groups()
                cur.update(hw_name=hw, hwaddr=addr, txqueuelen=int(qlen) if qlen else None, hw_title=title)
            else:
                raise ParseError("an inet, inet6, hardware, RX or TX line", text=line, line=n, source=source)
        except (ParseError, ValueError) as exc:
            err = exc if isinstance(exc, ParseError) else ParseError(
                "valid addresses", text=line, line=n, source=source)
            if skipped is None:
                raise err from None
            skipped.append(Skipped(n, line))
    finish()
    return tuple(out)


def parse_ifconfig(text: str, *, source: str = "<string>") -> tuple[IfconfigInterface, ...]:
    """Parse ``ifconfig``/``ifconfig -a`` output (net-tools 2.x format)."""
    return _ifconfig(text, source, None)


def parse_ifconfig_partial(text: str, *, source: str = "<string>") -> Partial[IfconfigInterface]:
    skipped: list[Skipped] = []
    return Partial(_ifconfig(text, source, skipped), tuple(skipped))


def format_ifconfig_interface(ifc: IfconfigInterface) -> str:
    out = [f"{ifc.name}: flags={ifc.flags}<{','.join(ifc.flag_names)}>  mtu {ifc.mtu}"]
    if ifc.inet is not None:
        s = f"        inet {ifc.inet}  netmask {ifc.netmask}"
        if ifc.broadcast is not None:
            s += f"  broadcast {ifc.broadcast}"
        if ifc.destination is not None:
            s += f"  destination {ifc.destination}"
        out.append(s)
    for a in ifc.inet6:
        out.append(f"        inet6 {a.address}  prefixlen {a.prefixlen}  scopeid 0x{a.scopeid:x}"
                   f"<{','.join(a.scope_names)}>")
    s = f"        {ifc.hw_name}" + (f" {ifc.hwaddr}" if ifc.hwaddr is not None else "")
    if ifc.txqueuelen is not None:
        s += f"  txqueuelen {ifc.txqueuelen}"
    out.append(s + f"  ({ifc.hw_title})")
    st = ifc.stats
    if st is not None:
        out.append(f"        RX packets {st.rx_packets}  bytes {st.rx_bytes} ({human_bytes(st.rx_bytes)})")
        out.append(f"        RX errors {st.rx_errors}  dropped {st.rx_dropped}  overruns {st.rx_overruns}"
                   f"  frame {st.rx_frame}")
        out.append(f"        TX packets {st.tx_packets}  bytes {st.tx_bytes} ({human_bytes(st.tx_bytes)})")
        out.append(f"        TX errors {st.tx_errors}  dropped {st.tx_dropped} overruns {st.tx_overruns}"
                   f"  carrier {st.tx_carrier}  collisions {st.tx_collisions}")
    return "\n".join(out) + "\n\n"


def format_ifconfig(interfaces: tuple[IfconfigInterface, ...] | list[IfconfigInterface]) -> str:
    return "".join(format_ifconfig_interface(i) for i in interfaces)


# --- route -n ------------------------------------------------------------------------------

ROUTE_N_TITLE = "Kernel IP routing table"
ROUTE_N_HEADER = "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface"


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One row of ``route -n``. A reject route (flags ``!``) has ``gateway``/``ref``/``iface``
    ``None`` (printed as ``-``)."""

    destination: ipaddress.IPv4Address
    gateway: ipaddress.IPv4Address | None
    genmask: ipaddress.IPv4Address
    flags: str
    metric: int
    ref: int | None
    use: int
    iface: str | None

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.destination}/{self.genmask}")


def _route_n(text: str, source: str, skipped: list[Skipped] | None) -> tuple[RouteEntry, ...]:
    out: list[RouteEntry] = []
    for n, line in enumerate(text.splitlines(), start=1):
        body = line.strip()
        if not body or body == ROUTE_N_TITLE or body.split() == ROUTE_N_HEADER.split():
            continue
        if skipped is not None and is_elision(line):
            skipped.append(Skipped(n, line))
            continue
        toks = body.split()
        try:
            if len(toks) != 8:
                raise ParseError("8 columns: Destination Gateway Genmask Flags Metric Ref Use Iface",
                                 text=line, line=n, source=source)
            dst, gw, mask, flags, metric, ref, use, iface = toks
            out.append(RouteEntry(
                ipaddress.IPv4Address(dst), None if gw == "-" else ipaddress.IPv4Address(gw),
                ipaddress.IPv4Address(mask), flags, int(metric), None if ref == "-" else int(ref), int(use),
                None if iface == "-" else iface))
        except (ParseError, ValueError) as exc:
            err = exc if isinstance(exc, ParseError) else ParseError(
                "IPv4 addresses and numbers in a route -n row", text=line, line=n, source=source)
            if skipped is None:
                raise err from None
            skipped.append(Skipped(n, line))
    return tuple(out)


def parse_route_n(text: str, *, source: str = "<string>") -> tuple[RouteEntry, ...]:
    """Parse ``route -n`` output (the title and header lines are optional)."""
    return _route_n(text, source, None)


def parse_route_n_partial(text: str, *, source: str = "<string>") -> Partial[RouteEntry]:
    skipped: list[Skipped] = []
    return Partial(_route_n(text, source, skipped), tuple(skipped))


def format_route_entry(r: RouteEntry) -> str:
    if r.gateway is None:  # reject route
        return f"{str(r.destination):<15} -               {str(r.genmask):<15} {r.flags:<5} {r.metric:<6} -  {r.use:>7} -"
    return (f"{str(r.destination):<15} {str(r.gateway):<15} {str(r.genmask):<15} {r.flags:<5} {r.metric:<6} "
            f"{r.ref if r.ref is not None else 0:<2} {r.use:>7} {r.iface}")


def format_route_n(routes: tuple[RouteEntry, ...] | list[RouteEntry]) -> str:
    return ROUTE_N_TITLE + "\n" + ROUTE_N_HEADER + "\n" + "".join(format_route_entry(r) + "\n" for r in routes)


# --- arp -n --------------------------------------------------------------------------------

ARP_HEADER = "Address                  HWtype  HWaddress           Flags Mask            Iface"


@dataclass(frozen=True, slots=True)
class ArpEntry:
    """One row of ``arp -n``; ``hwaddr`` ``None`` is ``(incomplete)``. Flags: C complete,
    M permanent, P published."""

    address: ipaddress.IPv4Address
    hwtype: str | None
    hwaddr: str | None
    flags: str
    mask: str
    iface: str

    def neighbour(self) -> Neighbour:
        """The ``ip neigh`` view of this entry."""
        states = ("PERMANENT",) if "M" in self.flags else ("INCOMPLETE",) if self.hwaddr is None else ()
        return Neighbour(address=self.address, dev=self.iface, lladdr=self.hwaddr, states=states)




def parse_arp_n(text: str, *, source: str = "<string>") -> tuple[ArpEntry, ...]:
    """Parse ``arp -n`` output."""
    out: list[ArpEntry] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.split() == ARP_HEADER.split():
            continue
        addr_col, rest = line[:25], line[25:]
        try:
            address = ipaddress.IPv4Address(addr_col.strip())
        except ValueError:
            raise ParseError("an IPv4 address in the Address column", text=line, line=n, source=source) from None
        hwtype = rest[0:8].strip() or None
        hw = rest[8:28].strip()
        flags = rest[28:34].strip()
        mask = rest[34:49].strip()
        iface = rest[50:].strip()
        if not iface or (hw != "(incomplete)" and not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", hw)):
            raise ParseError("'Address HWtype HWaddress Flags Mask Iface' columns", text=line, line=n,
                             source=source)
        out.append(ArpEntry(address, hwtype, None if hw == "(incomplete)" else hw, flags, mask, iface))
    return tuple(out)


def format_arp_entry(e: ArpEntry) -> str:
    hw = e.hwaddr if e.hwaddr is not None else "(incomplete)"
    return f"{str(e.address):<23.23}  {e.hwtype or '':<8.8}{hw:<20.20}{e.flags:<6.6}{e.mask:<15.15} {e.iface}"


def format_arp_n(entries: tuple[ArpEntry, ...] | list[ArpEntry]) -> str:
    if not entries:
        return ""
    return ARP_HEADER + "\n" + "".join(format_arp_entry(e) + "\n" for e in entries)
