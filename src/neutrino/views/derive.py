"""One tool's view computed from another's: ``ifconfig`` from ``ip addr``, ``route -n`` from
``ip route``, ``arp -n`` from ``ip neigh`` (and back), as the kernel would show the same state."""

from __future__ import annotations

import ipaddress

from neutrino.host.iproute_link import Address, Link, LinkKind, OperState
from neutrino.host.iproute_route import Neighbour, Route, RoutingRule
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


# --- what the kernel makes of a namespace's links (for planned hosts, whose tables are not planned) ---

#: the rules every namespace starts with (``ip rule``; ``ip -6 rule`` has no ``default`` one)
DEFAULT_RULES = (RoutingRule(0, table="local"), RoutingRule(32766, table="main"),
                 RoutingRule(32767, table="default"))
DEFAULT_RULES_6 = DEFAULT_RULES[:2]


_ALL_ONES = ipaddress.IPv4Address("255.255.255.255")


def _is_up(link: Link) -> bool:
    return "UP" in (link.flags or ())


def kernel_routes(links: tuple[Link, ...]) -> tuple[Route, ...]:
    """The routes the kernel adds for the addresses of ``links`` (Linux 6.x): in ``main`` a connected
    route for each IPv4 prefix (``proto kernel scope link src ADDR``) and each IPv6 prefix (``proto
    kernel metric 256 pref medium``); in ``local`` the ``local`` and ``broadcast`` routes of each
    address and IPv6's ``multicast ff00::/8``. Only links that are up have routes. In the order
    ``ip route show table all`` lists them: main, then local, IPv4 before IPv6."""
    v4_main: list[Route] = []
    v4_local: list[Route] = []
    v6_main: list[Route] = []
    v6_local: list[Route] = []
    v6_mcast: list[Route] = []
    for lk in links:
        if not _is_up(lk):
            continue
        style = lk.style
        has_v6 = False
        for a in lk.addresses:
            iface = a.interface
            if isinstance(iface, ipaddress.IPv4Interface):
                net = iface.network
                if a.peer is not None:
                    v4_main.append(Route(a.peer.network, dev=lk.name, proto="kernel", scope="link", src=iface.ip,
                                         style=style))
                elif net.prefixlen < 32 and not (lk.name == "lo" and net.is_loopback):
                    v4_main.append(Route(net, dev=lk.name, proto="kernel", scope="link", src=iface.ip, style=style))
                if net.is_loopback and net.prefixlen < 32:
                    v4_local.append(Route(net, type="local", dev=lk.name, table="local", proto="kernel", scope="host",
                                          src=iface.ip, style=style))
                v4_local.append(Route(ipaddress.IPv4Network(iface.ip), type="local", dev=lk.name, table="local",
                                      proto="kernel", scope="host", src=iface.ip, style=style))
                # fib_add_ifaddr: the address's brd, and the prefix's broadcast address when it makes sense
                brds = {a.brd} if isinstance(a.brd, ipaddress.IPv4Address) and a.brd != _ALL_ONES else set()
                if net.prefixlen < 31 and "secondary" not in a.flags:
                    brds.add(net.broadcast_address)
                v4_local.extend(Route(ipaddress.IPv4Network(b), type="broadcast", dev=lk.name, table="local",
                                      proto="kernel", scope="link", src=iface.ip, style=style) for b in sorted(brds))
            else:
                has_v6 = True
                if iface.network.prefixlen < 128 and iface.ip != ipaddress.IPv6Address("::1"):
                    v6_main.append(Route(iface.network, dev=lk.name, proto="kernel", metric=256, pref="medium",
                                         style=style))
                v6_local.append(Route(ipaddress.IPv6Network(iface.ip), type="local", dev=lk.name, table="local",
                                      proto="kernel", metric=0, pref="medium", style=style))
        if has_v6 and lk.name != "lo":
            v6_mcast.append(Route(ipaddress.IPv6Network("ff00::/8"), type="multicast", dev=lk.name, table="local",
                                  proto="kernel", metric=256, pref="medium", style=style))
    v4_local.sort(key=lambda r: (r.dst.network_address if r.dst is not None else 0, r.type != "local"))
    v6_local.sort(key=lambda r: r.dst.network_address if r.dst is not None else 0)
    v4_main.sort(key=lambda r: r.dst.network_address if r.dst is not None else 0)
    v6_main.sort(key=lambda r: r.dst.network_address if r.dst is not None else 0)
    return (*v4_main, *v4_local, *_dedup(v6_main), *v6_local, *v6_mcast)


def _dedup(routes: list[Route]) -> list[Route]:
    seen: set[tuple[object, ...]] = set()
    out = []
    for r in routes:
        key = (r.dst, r.dev)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out
