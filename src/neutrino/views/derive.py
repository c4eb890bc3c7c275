"""One tool's view computed from another's: ``ifconfig`` from ``ip addr``, ``route -n`` from
``ip route``, ``arp -n`` from ``ip neigh`` (and back), as the kernel would show the same state."""

from __future__ import annotations

import ipaddress

from neutrino.host.iproute_link import Address, Link, LinkKind, OperState
from neutrino.host.iproute_route import Neighbour, Route
from neutrino.host.nettools import ArpEntry, IfconfigInet6, IfconfigInterface, IfconfigStats, RouteEntry

# net/if.h flag bits, as ifconfig prints them in flags=<N>
_IFF = {"UP": 0x1, "BROADCAST": 0x2, "DEBUG": 0x4, "LOOPBACK": 0x8, "POINTOPOINT": 0x10, "NOTRAILERS": 0x20,
        "RUNNING": 0x40, "NOARP": 0x80, "PROMISC": 0x100, "ALLMULTI": 0x200, "MASTER": 0x400, "SLAVE": 0x800,
        "MULTICAST": 0x1000}
_ZERO = IfconfigStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def _scopeid(addr: Address) -> int:
    return {"link": 0x20, "host": 0x10, "site": 0x40}.get(addr.scope, 0)


def ifconfig_of(link: Link) -> IfconfigInterface:
    """The ``ifconfig`` block of a link (counters are zero: ``ip addr`` carries none)."""
    names = set(link.flags or ())
    flags = sum(bit for name, bit in _IFF.items() if name in names)
    if "LOWER_UP" in names and "UP" in names:
        flags |= _IFF["RUNNING"]
    v4 = [a for a in link.addresses if a.interface.version == 4 and not a.secondary]
    inet = netmask = broadcast = None
    if v4:
        first = v4[0].interface
        assert isinstance(first, ipaddress.IPv4Interface)
        inet, netmask = first.ip, first.netmask
        brd = v4[0].brd
        broadcast = brd if isinstance(brd, ipaddress.IPv4Address) else None
    inet6 = tuple(IfconfigInet6(a.interface.ip, a.interface.network.prefixlen, _scopeid(a))
                  for a in link.addresses if isinstance(a.interface, ipaddress.IPv6Interface))
    loopback = link.link_type == "loopback" or link.kind is LinkKind.LOOPBACK or "LOOPBACK" in names
    return IfconfigInterface(
        name=link.name, flags=flags, mtu=link.mtu or 1500, inet=inet, netmask=netmask, broadcast=broadcast,
        inet6=inet6, hw_name="loop" if loopback else "ether", hwaddr=None if loopback else link.mac,
        txqueuelen=link.qlen if link.qlen is not None else 1000,
        hw_title="Local Loopback" if loopback else "Ethernet", stats=_ZERO)


def link_of(ifc: IfconfigInterface, index: int) -> Link:
    """The ``ip addr`` view of an ``ifconfig`` block (what ifconfig cannot tell stays unknown)."""
    names = ifc.flag_names
    flags: tuple[str, ...] = tuple(n for n in ("LOOPBACK", "BROADCAST", "POINTOPOINT", "MULTICAST", "NOARP",
                                               "PROMISC", "UP") if n in names)
    if "RUNNING" in names:
        flags = (*flags, "LOWER_UP")
    addrs: list[Address] = []
    v4 = ifc.ipv4_interface
    if v4 is not None:
        addrs.append(Address(v4, scope="host" if ifc.hw_name == "loop" else "global", brd=ifc.broadcast,
                             label=ifc.name))
    for a6 in ifc.inet6:
        scope = "link" if a6.scopeid & 0x20 else "host" if a6.scopeid & 0x10 else "global"
        addrs.append(Address(ipaddress.IPv6Interface(f"{a6.address}/{a6.prefixlen}"), scope=scope))
    loop = ifc.hw_name == "loop"
    return Link(index=index, name=ifc.name, flags=flags, mtu=ifc.mtu,
                state=OperState.UNKNOWN if loop else (OperState.UP if "RUNNING" in names else OperState.DOWN),
                qlen=ifc.txqueuelen, link_type="loopback" if loop else "ether",
                mac="00:00:00:00:00:00" if loop else ifc.hwaddr,
                brd="00:00:00:00:00:00" if loop else "ff:ff:ff:ff:ff:ff", addresses=tuple(addrs))


def route_n_of(routes: tuple[Route, ...]) -> tuple[RouteEntry, ...]:
    """``route -n`` rows for the IPv4 unicast routes of the main table."""
    out: list[RouteEntry] = []
    for r in routes:
        if r.table not in (None, "main") or (r.type not in (None, "unicast")) or r.dev is None:
            continue
        net = r.dst if r.dst is not None else ipaddress.IPv4Network("0.0.0.0/0")
        if not isinstance(net, ipaddress.IPv4Network):
            continue
        via = r.via if isinstance(r.via, ipaddress.IPv4Address) else None
        flags = "U" + ("G" if via is not None else "") + ("H" if net.prefixlen == 32 else "")
        out.append(RouteEntry(net.network_address, via or ipaddress.IPv4Address("0.0.0.0"), net.netmask, flags,
                              r.metric or 0, 0, 0, r.dev))
    return tuple(out)


def routes_of(entries: tuple[RouteEntry, ...]) -> tuple[Route, ...]:
    """The ``ip route`` view of ``route -n`` rows."""
    out: list[Route] = []
    for e in entries:
        net = e.network
        via = e.gateway if e.gateway is not None and "G" in e.flags else None
        out.append(Route(dst=None if net.prefixlen == 0 else net, via=via, dev=e.iface,
                         proto=None if via is not None or net.prefixlen == 0 else "kernel",
                         scope=None if via is not None or net.prefixlen == 0 else "link",
                         metric=e.metric or None))
    return tuple(out)


def arp_of(neighbours: tuple[Neighbour, ...]) -> tuple[ArpEntry, ...]:
    """``arp -n`` rows for the IPv4 neighbours."""
    out: list[ArpEntry] = []
    for nb in neighbours:
        if not isinstance(nb.address, ipaddress.IPv4Address) or nb.dev is None:
            continue
        if nb.lladdr is None:
            out.append(ArpEntry(nb.address, None, None, "", "", nb.dev))
            continue
        flags = "CM" if "PERMANENT" in nb.states else "C"
        out.append(ArpEntry(nb.address, "ether", nb.lladdr, flags, "", nb.dev))
    return tuple(out)
