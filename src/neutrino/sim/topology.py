"""How the devices of a cloud's hosts are wired together, read from their host states.

The simulator needs to know, for every place a frame can leave, where it arrives: the peer of a
veth, the namespace device behind an OVS internal port, the other end of a patch port, the bridge a
device is enslaved to, the guest behind a tap, the remote host of a tunnel port, and the physical
segments (the tenant/flat wire, the VLAN trunk, the external network) hosts share. All of it is
derived from the host states alone (device names, masters, OVS port types and options), so it
works the same for planned hosts and for hosts imported from a real deployment.

Physical segments: the hosts' root-namespace NICs of one name share one wire, the deployment's
convention (nova.conf's ``flat_interface``, ``vlan_interface`` and ``public_interface`` are
cloud-wide; so are Neutron's bridge mappings). A NIC is wired to a :attr:`Kind.SEGMENT` end named
``<host>:<dev>`` of the segment ``<dev>``; what it leads to on the host is the bridge port it is
enslaved to, or else the root namespace's IP stack. A VLAN device ``vlanNNN@eth0`` is an end of
segment ``eth0`` that tags with NNN (:attr:`Nic.vlan`): it sends tagged onto the trunk and
receives only frames tagged NNN, untagged.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from neutrino.host.iproute_link import Link, LinkKind
from neutrino.host.ovsdb import Bridge, OvsdbShow
from neutrino.host.state import ROOT, HostState
from neutrino.sim.packets import HashKept

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Kind(enum.Enum):
    NS = "ns"  # a device of a namespace's IP stack
    OVS = "ovs"  # a port of an Open vSwitch bridge
    LBR = "lbr"  # a port of a Linux bridge
    GUEST = "guest"  # an instance's eth0, behind its tap/vnet
    SEGMENT = "segment"  # a physical wire shared by hosts (element: its name)


@dataclass(frozen=True, slots=True, order=True)
class End(HashKept):
    """One end of a wire: ``host`` (empty for a segment), what it is, which element, which port."""

    kind: Kind
    host: str
    element: str  # namespace name ("" is root), bridge name, guest name, segment name
    port: str  # device or port name

    def __hash__(self) -> int:
        """The dataclass's hash (of the fields), computed once per end: the wires' ends are looked
        up on every hop (and the kind's hash, an enum's, is Python code)."""
        try:
            return self._hash
        except AttributeError:
            h = hash((self.kind, self.host, self.element, self.port))
            object.__setattr__(self, "_hash", h)
            return h

    def __str__(self) -> str:
        where = self.element or "root"
        return f"{self.host}/{where}/{self.port}" if self.host else f"{where}/{self.port}"


@dataclass(frozen=True, slots=True)
class Tunnel:
    """A tunnel port: its host, bridge and port, type, and the remote address it sends to."""

    host: str
    bridge: str
    port: str
    type: str
    local_ip: IPAddress | None
    remote_ip: IPAddress


@dataclass(frozen=True, slots=True)
class Nic:
    """A host's attachment to a physical segment: the device (``eth2``, ``vlan100``) and the 802.1Q
    tag it pushes and pops (``None``: untagged, the NIC itself)."""

    segment: str
    host: str
    dev: str
    vlan: int | None = None


@dataclass
class Topology:
    hosts: dict[str, HostState]
    wires: dict[End, End] = field(default_factory=dict)  # symmetric: a -> b and b -> a
    tunnels: list[Tunnel] = field(default_factory=list)
    tunnel_ips: dict[str, IPAddress] = field(default_factory=dict)  # host -> its tunnel address
    segments: dict[str, list[End]] = field(default_factory=dict)  # segment -> its ends (Kind.SEGMENT)
    nics: dict[End, Nic] = field(default_factory=dict)  # a segment end -> the host device behind it
    notes: list[str] = field(default_factory=list)  # what could not be wired, and why
    _by_port: dict[tuple[str, str, str], Tunnel] | None = field(default=None, repr=False, compare=False)
    _far: dict[tuple[str, str, str, IPAddress, str], Tunnel | None] = field(default_factory=dict, repr=False,
                                                                          compare=False)
    _tunnels_seen: int = field(default=-1, repr=False, compare=False)
    version = 0
    """Bumped by every change made through these methods (:meth:`connect`, :meth:`plug`,
    :meth:`changed`, :func:`unwire`, :func:`rewire`): what the world remembers of its hops reads
    the wiring and is dropped when this moves. Not a field: not compared, not pickled."""

    def __getstate__(self) -> dict[str, object]:
        """The wiring without the host states (what the wires were read from) or the indexes."""
        state = dict(self.__dict__)
        state.update(hosts={}, _by_port=None, _far={}, _tunnels_seen=-1)
        state.pop("version", None)
        return state

    def connect(self, a: End, b: End) -> None:
        self.wires[a] = b
        self.wires[b] = a
        self.version += 1

    def plug(self, segment: str, end: End, host: str, dev: str, vlan: int | None = None) -> End:
        """Attach ``end`` (a bridge port or an IP-stack device of ``host``) to ``segment`` through
        ``dev``; returns the segment's end."""
        here = End(Kind.SEGMENT, "", segment, f"{host}:{dev}")
        if here in self.nics:
            return here
        self.connect(end, here)
        self.segments.setdefault(segment, []).append(here)
        self.nics[here] = Nic(segment, host, dev, vlan)
        return here

    def peer(self, end: End) -> End | None:
        return self.wires.get(end)

    def _tunnel_index(self) -> dict[tuple[str, str, str], Tunnel]:
        if self._tunnels_seen != len(self.tunnels) or self._by_port is None:
            self._by_port = {}
            for t in self.tunnels:
                self._by_port.setdefault((t.host, t.bridge, t.port), t)
            self._far = {}
            self._tunnels_seen = len(self.tunnels)
        return self._by_port

    def tunnel_at(self, end: End) -> Tunnel | None:
        """The tunnel whose port ``end`` (an OVS bridge's port) is, if it is one."""
        return self._tunnel_index().get((end.host, end.element, end.port))

    def tunnel_to(self, tunnel: Tunnel) -> Tunnel | None:
        """The far end of ``tunnel``: the remote host's port of the same type pointing back at us."""
        self._tunnel_index()
        key = (tunnel.host, tunnel.bridge, tunnel.port, tunnel.remote_ip, tunnel.type)
        if key in self._far:
            return self._far[key]
        remote_host = next((h for h, ip in self.tunnel_ips.items() if ip == tunnel.remote_ip), None)
        far = None
        if remote_host is not None:
            back = self.tunnel_ips.get(tunnel.host) or tunnel.local_ip
            far = next((t for t in self.tunnels if t.host == remote_host and t.type == tunnel.type
                        and t.remote_ip == back), None)
        self._far[key] = far
        return far

    def changed(self) -> None:
        """Call after changing :attr:`tunnels` or :attr:`tunnel_ips` in place (the indexes are rebuilt)."""
        self._by_port = None
        self.version += 1


def unwire(topo: Topology, host: str) -> None:
    """Take ``host`` out of ``topo``: its wires (and the other ends' wires to it), its tunnel ports
    and its attachments to segments."""
    for end in [e for e in topo.wires if e.host == host or (e.kind is Kind.SEGMENT and e in topo.nics
                                                              and topo.nics[e].host == host)]:
        other = topo.wires.pop(end, None)
        if other is not None and topo.wires.get(other) == end:
            del topo.wires[other]
    for seg, ends in list(topo.segments.items()):
        kept = [e for e in ends if topo.nics[e].host != host]
        for e in ends:
            if topo.nics[e].host == host:
                del topo.nics[e]
        if kept:
            topo.segments[seg] = kept
        else:
            del topo.segments[seg]
    topo.tunnels[:] = [t for t in topo.tunnels if t.host != host]
    topo.hosts.pop(host, None)
    topo.changed()


def rewire(topo: Topology, hosts: tuple[HostState, ...], guests: dict[tuple[str, str], str]) -> None:
    """Wire ``hosts`` (new, or taken out with :func:`unwire` first) into ``topo``."""
    for host in hosts:
        topo.hosts[host.name] = host
        _wire_host(topo, host, guests)
    for host in hosts:
        _wire_root_nics(topo, host)
    topo.changed()


def _links(host: HostState) -> dict[tuple[str, str], Link]:
    out = {}
    for ns in host.namespaces:
        for lk in ns.links or ():
            out[(ns.name, lk.name)] = lk
    return out


def _bridges(host: HostState) -> tuple[Bridge, ...]:
    show = host.ovs.show
    if isinstance(show, OvsdbShow):
        return show.bridges
    return show.bridges() if show is not None else ()


_VETH_PREFIXES = ("ns-", "qr-", "qg-")


def build(hosts: tuple[HostState, ...], *, tunnel_ips: dict[str, IPAddress] | None = None,
          guests: dict[tuple[str, str], str] | None = None) -> Topology:
    """Wire ``hosts`` together. ``tunnel_ips`` gives each host's tunnel address (the deployment's);
    ``guests`` maps (host, tap or vnet device) to the guest (server) behind it."""
    topo = Topology({h.name: h for h in hosts}, tunnel_ips=dict(tunnel_ips or {}))
    for host in hosts:
        _wire_host(topo, host, guests or {})
    for host in hosts:
        _wire_root_nics(topo, host)
    return topo


_PHYSICAL = ("eth", "em", "en", "bond")


def _vlan_id(lk: Link) -> int | None:
    if lk.details is not None and lk.details.vlan_id is not None:
        return lk.details.vlan_id
    digits = "".join(ch for ch in lk.name.split(".")[-1] if ch.isdigit())
    return int(digits) if digits and (lk.name.startswith("vlan") or "." in lk.name) else None


def _wire_root_nics(topo: Topology, host: HostState) -> None:
    """The root namespace's NICs (and VLAN devices) that are no bridge's port are devices of its
    IP stack on their segment (eth1, the management or public network)."""
    root = host.namespace(ROOT)
    if root is None:
        return
    for lk in root.links or ():
        if lk.master is not None or lk.link_type == "loopback":
            continue
        end = End(Kind.NS, host.name, ROOT, lk.name)
        if end in topo.wires:
            continue
        if lk.kind is LinkKind.VLAN and lk.peer:
            topo.plug(lk.peer, end, host.name, lk.name, _vlan_id(lk))
        elif lk.kind in (None, LinkKind.ETHER) and lk.name.startswith(_PHYSICAL):
            topo.plug(lk.name, end, host.name, lk.name)


def _wire_host(topo: Topology, host: HostState, guests: dict[tuple[str, str], str]) -> None:
    links = _links(host)
    names_in_ns = {name: ns for (ns, name) in links}
    bridges = _bridges(host)
    ovs_port_of: dict[str, str] = {}
    first_ovs: dict[str, str] = {}
    for br in bridges:
        for port in br.ports:
            ovs_port_of[port.name] = br.name
            first_ovs.setdefault(port.name, br.name)
    lbr_of: dict[str, str] = {}
    for lbr in host.linux_bridges or ():
        for dev in lbr.interfaces:
            lbr_of.setdefault(dev, lbr.name)
    on = _Owners(first_ovs, lbr_of)
    # OVS ports
    for br in bridges:
        for port in br.ports:
            here = End(Kind.OVS, host.name, br.name, port.name)
            iface = port.interfaces[0] if port.interfaces else None
            itype = iface.type if iface is not None else None
            if itype == "patch" and iface is not None:
                peer = iface.option("peer")
                other = ovs_port_of.get(peer or "")
                if peer and other:
                    topo.connect(here, End(Kind.OVS, host.name, other, peer))
                else:
                    topo.notes.append(f"{host.name}: patch port {port.name} has no peer {peer}")
            elif itype in ("gre", "vxlan", "geneve") and iface is not None:
                remote = iface.option("remote_ip")
                local = iface.option("local_ip")
                if remote is None:
                    continue
                topo.tunnels.append(Tunnel(host.name, br.name, port.name, itype, ipaddress.ip_address(local)
                                           if local else None, ipaddress.ip_address(remote)))
            elif port.name == br.name:
                continue  # the bridge's own LOCAL port: nothing planned behind it
            elif itype == "internal":
                ns = names_in_ns.get(port.name)
                if ns is not None and ns != ROOT:
                    topo.connect(here, End(Kind.NS, host.name, ns, port.name))
                elif ns == ROOT:
                    topo.connect(here, End(Kind.NS, host.name, ROOT, port.name))
            else:  # a system device: a veth end, a tap, or a physical NIC
                _wire_device(topo, host, links, here, port.name, guests, on)
    _wire_dvr_pairs(topo, host)
    # Linux bridges
    for lbr in host.linux_bridges or ():
        topo.connect(End(Kind.LBR, host.name, lbr.name, lbr.name), End(Kind.NS, host.name, ROOT, lbr.name))
        for dev in lbr.interfaces:
            _wire_device(topo, host, links, End(Kind.LBR, host.name, lbr.name, dev), dev, guests, on)


_RFP, _FPR = "rfp-", "fpr-"


def _wire_dvr_pairs(topo: Topology, host: HostState) -> None:
    """DVR's router/fip veth pairs: ``rfp-X`` in a qrouter- namespace and ``fpr-X`` in a fip-
    namespace of the same host are the two ends of one veth (Neutron's naming)."""
    fpr = {lk.name: ns.name for ns in host.namespaces for lk in ns.links or () if lk.name.startswith(_FPR)}
    if not fpr:
        return
    for ns in host.namespaces:
        for lk in ns.links or ():
            other = fpr.get(_FPR + lk.name[len(_RFP):]) if lk.name.startswith(_RFP) else None
            if other is not None:
                topo.connect(End(Kind.NS, host.name, ns.name, lk.name),
                             End(Kind.NS, host.name, other, _FPR + lk.name[len(_RFP):]))


@dataclass(frozen=True, slots=True)
class _Owners:
    """Which bridge each device of a host is a port of: OVS ports, Linux bridge ports (the first)."""

    ovs: dict[str, str]
    lbr: dict[str, str]


def _wire_device(topo: Topology, host: HostState, links: dict[tuple[str, str], Link], here: End, dev: str,
                 guests: dict[tuple[str, str], str], on: _Owners) -> None:
    """``here`` (a bridge port) holds root-namespace device ``dev``: wire it to what ``dev`` leads to."""
    guest = guests.get((host.name, dev))
    if guest is not None:
        topo.connect(here, End(Kind.GUEST, host.name, guest, "eth0"))
        return
    lk = links.get((ROOT, dev))
    # a veth shows its peer by name when both ends are in one namespace (``qvoX@qvbX``)
    if lk is not None and lk.kind in (LinkKind.VETH, None) and lk.peer and lk.peer != "NONE" \
            and not lk.peer.startswith("if") and (ROOT, lk.peer) in links:
        peer = lk.peer
        peer_lbr = on.lbr.get(peer)
        if peer_lbr is not None:
            topo.connect(here, End(Kind.LBR, host.name, peer_lbr, peer))
            return
        peer_ovs = on.ovs.get(peer)
        if peer_ovs is not None:
            topo.connect(here, End(Kind.OVS, host.name, peer_ovs, peer))
            return
    if dev.startswith("tap"):  # an agent's veth (Grizzly): tapX on the bridge, ns-X/qr-X/qg-X inside
        for ns in host.namespaces:
            for pre in _VETH_PREFIXES:
                inner = pre + dev[3:]
                if ns.name != ROOT and ns.link(inner) is not None:
                    topo.connect(here, End(Kind.NS, host.name, ns.name, inner))
                    return
    if lk is not None and lk.kind is LinkKind.VLAN and lk.peer:
        topo.plug(lk.peer, here, host.name, dev, _vlan_id(lk))  # tagged onto its parent's trunk
        return
    if dev.startswith(("eth", "em", "en", "bond")):
        topo.plug(dev, here, host.name, dev)
        return
    if dev.startswith(("tap", "vnet")):
        topo.notes.append(f"{host.name}: {dev} has no guest behind it")
        return
    topo.notes.append(f"{host.name}: cannot tell what {dev} on {here.element} leads to")
