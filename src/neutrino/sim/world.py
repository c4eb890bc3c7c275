"""The simulator: a cloud's hosts, their wiring, guests and the outside world, and a loop that
moves frames through them, recording every decision.

``World`` interprets exactly the host states (planned or imported): each namespace is an
:class:`IpStack` with its :class:`Netfilter`, each OVS bridge an :class:`OvsBridgeSim`, each Linux
bridge a :class:`LinuxBridgeSim`, each dnsmasq a :class:`DhcpServer`, each instance a
:class:`Guest`. Frames move along the wires of :mod:`neutrino.sim.topology`; tunnel ports
encapsulate into the remote host. ``boot()`` runs every guest's DHCP client; ``probe()`` sends one
packet (ICMP echo, a TCP SYN, a UDP datagram or an HTTP GET to the metadata address) and returns
its :class:`Trace`, with the reply's.

Order inside a namespace is the kernel's: PREROUTING, the input route, then INPUT and local
delivery or FORWARD, POSTROUTING and neighbour resolution; locally generated packets go OUTPUT,
POSTROUTING. Bridged IPv4 between Linux bridge ports goes through PREROUTING, FORWARD and
POSTROUTING of the host's root namespace with physdev matches (br_netfilter).

Physical segments (:mod:`neutrino.sim.topology`) are learning switches, one per VLAN: a frame a
host sends on its NIC reaches the other hosts' NICs of that segment; a VLAN device
(``vlan100@eth0``) pushes its 802.1Q tag onto the trunk and only the other hosts' devices of the
same VLAN receive the frame, the tag popped (the kernel's VLAN sub-interface). ``uplinks`` put
the outside world on a segment: the upstream gateway of the hosts' default route, with the
internet behind it when its address is globally routable (a private gateway, such as a
VirtualBox host-only network's, routes nowhere).

``probe("host:<name>", dst)`` sends from a host's root namespace (OUTPUT, POSTROUTING); a DROP in
OUTPUT ends it the way the kernel does, with ``sendmsg: Operation not permitted``.

A probe's packet can be given field by field, as ``ofproto/trace`` takes a flow: a spoofed source
address or MAC from an instance (the anti-spoofing rules and flows see exactly that), the
destination MAC, the source port, TCP flags (a segment without SYN meets conntrack's loose pick-up
or INVALID state, and the peer's reset), or a frame injected where it enters any device of any
host (``at="network:patch-int"``), tagged. ``proto="arp"`` traces an instance's ARP request and
the reply, ``proto="dhcp"`` its DISCOVER and the OFFERs (the instance's lease is left as it was).

A world lives between commands: it pickles (:mod:`neutrino.sim.keep` saves it to a file, each
element on its own, and a loaded world unpickles only the elements packets reach), and
:meth:`World.refresh` applies a change to the cloud in place, keeping what the world learned
(:func:`neutrino.sim.cloud.refresh_world` from a new snapshot).
"""

from __future__ import annotations

import difflib
import ipaddress
import pickle
import re
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface
from typing import TypeVar

from neutrino.collector import paused
from neutrino.errors import InvalidInput, NeutrinoError
from neutrino.host.bridge import BridgeInfo
from neutrino.host.iproute_link import Address, Link, LinkKind, OperState
from neutrino.host.iproute_route import Route
from neutrino.host.ofctl_show import OfPort
from neutrino.host.ovsdb import Bridge, Interface, OvsdbShow, Port
from neutrino.host.state import ROOT, HostState, NamespaceState
from neutrino.host.sysctl import Sysctl
from neutrino.sim.conntrack import CtRef, CtState
from neutrino.sim.guest import LISTENING as GUEST_LISTENING
from neutrino.sim.guest import PARAMS as GUEST_PARAMS
from neutrino.sim.guest import DhcpState, Guest, reset_for
from neutrino.sim.ipstack import Action, IpStack, RouteDecision, Unreachable
from neutrino.sim.linuxbridge import LinuxBridgeSim, PortInfo
from neutrino.sim.netfilter import FORWARD_PATH, Hook, HookCtx, Netfilter, NfVerdict
from neutrino.sim.ovs import Meta, OvsBridgeSim
from neutrino.sim.ovs_normal import Kept, Unfollowed
from neutrino.sim.packets import (
    ARP,
    BROADCAST,
    DHCP,
    ENCAP_IP_OVERHEAD,
    ICMP,
    TCP,
    UDP,
    ARPOp,
    DHCPMessageType,
    Dot1Q,
    Ethernet,
    ICMPType,
    IPv4,
    Mac,
    Raw,
    TCPFlag,
    UnreachCode,
    arp_request,
    dhcp_client_frame,
    echo_reply,
    echo_request,
    frame_length,
    icmp_error,
    ip_length,
    l3_length,
    ping_data,
    pop_vlan,
    push_vlan,
    summary,
    vlan_ids,
    with_,
)
from neutrino.sim.services import DhcpServer, MetadataEndpoint, MetadataInstance, http_get_path
from neutrino.sim.topology import End, Kind, Topology, Tunnel, build, rewire, unwire
from neutrino.sim.trace import (
    UNFORMATTED,
    DropReason,
    Hop,
    Step,
    StepKind,
    Trace,
    Verdict,
    VerdictKind,
    new_hop,
)

K = TypeVar("K")
V = TypeVar("V")

OUTSIDE = "outside"  # the outside world's namespace and host name
INTERNET = "internet"
HOST_PREFIX = "host:"  # probe("host:controller-1", ...): from a host's root namespace
WIRE = "wire"  # the host name of a physical segment's hops
MAX_EVENTS = 5000
METADATA_PORTS = (9697, 8775)  # neutron's proxy in the router (REDIRECTed from :80), nova-api


@dataclass(frozen=True, slots=True)
class GuestSpec:
    """An instance: its server name, host, the tap/vnet device on the host, MAC and fixed IP."""

    name: str
    host: str
    device: str
    mac: str
    fixed_ip: IPv4Address | None = None
    instance_number: int = 1


def _lead_external(externals: tuple[ExternalNet, ...], ext: ExternalNet) -> ExternalNet | None:
    """The first of the externals sharing ``ext``'s gateway, when there are several (else None)."""
    same = [e for e in externals if e.gateway == ext.gateway]
    return same[0] if len(same) > 1 else None


@dataclass(frozen=True, slots=True)
class ExternalNet:
    """The outside world as seen from a cloud: a gateway address on the external subnet, reached
    through ``bridge`` of ``host`` (the network host's br-ex)."""

    host: str
    bridge: str
    gateway: IPv4Interface


@dataclass(frozen=True, slots=True)
class Uplink:
    """The outside world on a physical segment (the hosts' public NICs): the upstream ``gateway``
    of their default route; ``internet``: whether anything routes beyond it (and back);
    ``on_link``: networks the gateway reaches on the segment itself (floating IP pools held as
    /32s on the hosts' public NICs)."""

    segment: str
    gateway: IPv4Interface
    internet: bool = True
    on_link: tuple[ipaddress.IPv4Network, ...] = ()


_PLAIN = Meta()
"""What a frame carries besides itself when nothing was set (a Meta is immutable: one will do)."""


@dataclass(slots=True)
class _Event:
    end: End
    frame: Ethernet
    meta: Meta = _PLAIN


_Out = tuple["End", "Tunnel | None", "End | None", "Step | None", "Meta | None"]
"""Where a bridge's copy out of a port goes: the port's end; for a tunnel port the tunnel, the far
bridge's port (None: no host at the endpoint), the ENCAP step (or the DROP step) and the far end's
metadata; for another port, its peer (None: unwired)."""


@dataclass(slots=True)
class _Done:
    """A bridge hop the world worked out from an OVS bridge's result, kept to be replayed when the
    bridge gives the same result object again (its remembered result for an equal frame on the
    same port with equal metadata): the hop record, the events the outputs became, and what
    following the probe reads of the frame. ``steps`` and ``outputs`` are the result's own
    tuples, held so that their ids (the memory's key) are never reused while it is kept."""

    steps: tuple[Step, ...]
    outputs: tuple[object, ...]
    pruned: int
    end: End
    hop: Hop
    events: tuple[_Event, ...]
    frame: Ethernet  # the frame untagged (an ARP or DHCP goal reads it)
    info: _FollowInfo
    drops: tuple[tuple[str, Step], ...]


_DONE_MAX = 4096  # hops remembered per world (then it starts again)
_NOWHERE = -1  # (:meth:`World._unfollowed`: a port leading nowhere, in place of a guest's MAC: no MAC is negative)


@dataclass
class _Run:
    """The bookkeeping of one probe: the hops seen, and whether the packets we follow arrived."""

    hops: list[Hop] = field(default_factory=list)
    side: list[Hop] = field(default_factory=list)  # ARP and other helper traffic
    delivered_at: str = ""
    replied: bool = False
    reply_start: int = -1
    drops: list[tuple[str, Step]] = field(default_factory=list)
    errno: str = ""  # what the local sender's system call returned, when it failed
    sender: str = ""  # the guest that sent the probe
    failed: str = ""  # the answer that came back says the exchange failed (a reset, an ICMP error)
    answer: str = ""  # what the answer said (an ARP reply's MAC, a DHCP offer's address)
    aliases: set[tuple[int, int]] = field(default_factory=set)  # the probe's key as a NAT remapped it
    size: int | None = None  # the probe was given a size (``probe(size=...)``): devices' MTUs are checked
    local_mtu: int = 0  # the sender's own device's MTU, when the sized packet was larger (EMSGSIZE)

    def follows(self, key: tuple[int, int] | None, goal: tuple[int, int] | None) -> bool:
        """Whether a packet with flow ``key`` belongs to the probe (whose key is ``goal``)."""
        return goal is not None and key is not None and (key == goal or key in self.aliases)

    def follows_frame(self, frame: Ethernet, goal: tuple[int, int] | None) -> bool:
        """Whether ``frame`` belongs to the probe: by its flow key, or as :func:`_follows` says."""
        if goal is None:
            return False
        if goal[0] < 0:  # an ARP or DHCP exchange: no flow key is ever one of these goals
            return _follows(frame, goal)
        ip4 = _ip(frame)
        if ip4 is None:
            return False
        if _ports_follow(ip4, goal):
            return True
        key = _ip_flow_key(ip4)
        return key is not None and (key == goal or key in self.aliases)

    def follows_info(self, info: _FollowInfo, frame: Ethernet, goal: tuple[int, int] | None) -> bool:
        """:meth:`follows_frame` of ``frame`` (untagged), from its :func:`_follow_info` ``info``."""
        if goal is None:
            return False
        if goal[0] < 0:
            return _follows(frame, goal)
        return self.follows_key(info, goal)

    def follows_key(self, info: _FollowInfo, goal: tuple[int, int]) -> bool:
        """:meth:`follows_info` for a flow-key goal (not an ARP or DHCP exchange's)."""
        if info is None:
            return False
        ports, key = info
        if ports is not None and ports[0] == goal[0] and (ports[1] == goal[1] or ports[2] == goal[1]):
            return True
        return key is not None and (key == goal or key in self.aliases)

    def translated(self, before: IPv4, after: IPv4, goal: tuple[int, int] | None) -> None:
        """A NAT rewrote ``before`` into ``after``: when it was the probe's and the rewrite changed
        its id or port (a source binding that would clash with another connection), follow the new key."""
        if after is before or goal is None:
            return
        kb = _kept_flow_key(before)
        ka = _kept_flow_key(after)
        if ka is not None and ka != kb and self.follows(kb, goal):
            self.aliases.add(ka)


_FollowInfo = tuple[tuple[int, int, int] | None, tuple[int, int] | None] | None
"""What :meth:`_Run.follows_frame` reads of a frame for a flow-key goal (None: no IP packet):
the protocol and ports :func:`_ports_follow` compares (TCP or UDP, or those an ICMP error
quotes), and the flow key (:func:`_ip_flow_key`)."""


def _follow_info(frame: Ethernet) -> _FollowInfo:
    """:data:`_FollowInfo` of ``frame`` (untagged): worked out once, compared with any goal."""
    ip4 = _ip(frame)
    if ip4 is None:
        return None
    inner = ip4
    p = inner.payload
    while isinstance(p, ICMP) and p.type in (ICMPType.DEST_UNREACH, ICMPType.TIME_EXCEEDED) \
            and isinstance(p.payload, IPv4):
        inner = p.payload
        p = inner.payload
    ports: tuple[int, int, int] | None = None
    if isinstance(p, TCP):
        ports = (6, p.sport, p.dport)
    elif isinstance(p, UDP) and not isinstance(p.payload, DHCP):
        ports = (17, p.sport, p.dport)
    return ports, _ip_flow_key(ip4)


_SYN, _ACK, _RST = int(TCPFlag.SYN), int(TCPFlag.ACK), int(TCPFlag.RST)  # (ints: an IntFlag's & is Python code)


def _is_request(frame: Ethernet, goal: tuple[int, int] | None,
                aliases: Collection[tuple[int, int]] = ()) -> bool:
    """Whether ``frame`` is the probe's request (not its answer): an echo request, a TCP SYN or
    segment from the probe's source port, a UDP datagram from it."""
    ip4 = _ip(frame)
    if ip4 is None or goal is None:
        return False
    p = ip4.payload
    if isinstance(p, ICMP):
        return bool(p.type == ICMPType.ECHO_REQUEST)
    if isinstance(p, TCP):  # a SYN, whatever port a SNAT with --random-fully gave it; or from our port
        flags = int(p.flags)  # (as an int: an IntFlag's & is Python code)
        return bool((flags & _SYN and not flags & _ACK) or p.sport == goal[1]
                    or (6, p.sport) in aliases)
    if isinstance(p, UDP):
        return bool(p.sport == goal[1] or (17, p.sport) in aliases)
    return False


REFUSED = "refused: "  # marks a failure that is a TCP reset


def _failure_of(packet: IPv4) -> str:
    """What an answer reaching the sender says about the exchange: '' when it succeeded."""
    p = packet.payload
    if isinstance(p, TCP) and int(p.flags) & _RST:  # (as ints: an IntFlag's & is Python code)
        return f"{REFUSED}{packet.src} answered tcp/{p.sport} with a reset (RST)"
    if isinstance(p, ICMP) and p.type == ICMPType.DEST_UNREACH and p.code == UnreachCode.FRAG_NEEDED:
        return f"ICMP fragmentation needed (type 3 code 4, next-hop MTU {p.mtu}) from {packet.src}"
    if isinstance(p, ICMP) and p.type == ICMPType.DEST_UNREACH:
        return f"ICMP destination unreachable (code {int(p.code)}) from {packet.src}"
    if isinstance(p, ICMP) and p.type == ICMPType.TIME_EXCEEDED:
        return f"ICMP time exceeded from {packet.src}"
    return ""


def _flow_key(frame: Ethernet) -> tuple[int, int] | None:
    """What identifies a probe's packets through NAT: the ICMP id or the TCP/UDP source port of
    the request (and the destination port of the reply)."""
    ip4 = _ip(frame)
    return None if ip4 is None else _ip_flow_key(ip4)


def _ip_flow_key(ip4: IPv4) -> tuple[int, int] | None:
    """:func:`_flow_key` of a frame carrying ``ip4``."""
    p = ip4.payload
    if isinstance(p, ICMP) and p.type in (ICMPType.DEST_UNREACH, ICMPType.TIME_EXCEEDED) \
            and isinstance(p.payload, IPv4):  # an error belongs to the flow it quotes
        return _ip_flow_key(p.payload)
    if isinstance(p, ICMP):
        return (1, p.id)
    if isinstance(p, TCP):
        return (6, p.sport if p.sport >= 30000 else p.dport)
    if isinstance(p, UDP) and not isinstance(p.payload, DHCP):
        return (17, p.sport if p.sport >= 30000 else p.dport)
    return None


def _kept_flow_key(ip4: IPv4) -> tuple[int, int] | None:
    """:func:`_ip_flow_key`, once per packet object (held: its id is the key)."""
    got = _FLOW_KEYS.get(id(ip4))
    if got is None or got[0] is not ip4:
        got = (ip4, _ip_flow_key(ip4))
        if len(_FLOW_KEYS) >= 4096:
            _FLOW_KEYS.clear()
        _FLOW_KEYS[id(ip4)] = got
    return got[1]


_FLOW_KEYS: dict[int, tuple[IPv4, tuple[int, int] | None]] = {}


ARP_GOAL = -1  # goal (ARP_GOAL, the target address): an ARP request for it and the replies
DHCP_GOAL = -2  # goal (DHCP_GOAL, xid): a client's DISCOVER and the servers' OFFERs


def _follows(frame: Ethernet, goal: tuple[int, int] | None) -> bool:
    """Whether ``frame`` belongs to the exchange the probe follows (``goal``) beyond its flow key:
    for TCP and UDP, a packet to or from the probe's port (or an ICMP error quoting one); for
    ARP, the request for the target address and the answers from it; for DHCP, the DISCOVER and
    the OFFERs of its xid."""
    if goal is None:
        return False
    if goal[0] == ARP_GOAL:
        arp = frame.payload
        return isinstance(arp, ARP) and int(arp.pdst if arp.op == ARPOp.REQUEST else arp.psrc) == goal[1]
    if goal[0] == DHCP_GOAL:
        msg = _dhcp_of(frame)
        return msg is not None and msg.xid == goal[1] and msg.message_type in (DHCPMessageType.DISCOVER,
                                                                              DHCPMessageType.OFFER)
    ip4 = _ip(frame)
    return ip4 is not None and _ports_follow(ip4, goal)


def _ports_follow(ip4: IPv4, goal: tuple[int, int]) -> bool:
    p = ip4.payload
    if isinstance(p, ICMP) and p.type in (ICMPType.DEST_UNREACH, ICMPType.TIME_EXCEEDED) \
            and isinstance(p.payload, IPv4):
        return _ports_follow(p.payload, goal)
    if isinstance(p, TCP) and goal[0] == 6:
        return goal[1] in (p.sport, p.dport)
    if isinstance(p, UDP) and goal[0] == 17 and not isinstance(p.payload, DHCP):
        return goal[1] in (p.sport, p.dport)
    return False


def _dhcp_of(frame: Ethernet) -> DHCP | None:
    ip4 = _ip(frame)
    udp = ip4.payload if ip4 is not None else None
    return udp.payload if isinstance(udp, UDP) and isinstance(udp.payload, DHCP) else None


def _ip(frame: Ethernet) -> IPv4 | None:
    p = frame.payload
    if type(p) is IPv4:  # (an untagged IP frame: no isinstance over the union)
        return p
    while p is not None and not isinstance(p, IPv4 | ARP):
        p = getattr(p, "payload", None)
    return p if isinstance(p, IPv4) else None


def _dhcp_client(frame: Ethernet) -> Mac | None:
    """The client hardware address of a DHCP client's message (to port 67) in ``frame``."""
    ip4 = _ip(frame)
    udp = ip4.payload if ip4 is not None else None
    if isinstance(udp, UDP) and udp.sport == 68 and udp.dport == 67 and isinstance(udp.payload, DHCP):
        return udp.payload.chaddr
    return None


_UNSEEN = object()


def _strip_vlans(frame: Ethernet) -> Ethernet:
    if type(frame.payload) is IPv4:  # (untagged: nothing to strip)
        return frame
    while isinstance(frame.payload, Dot1Q):
        frame = pop_vlan(frame)
    return frame


class StaleWorld(NeutrinoError):
    """The world cannot stand for the cloud as it is now (a kept world of another format or code,
    a change it cannot apply in place): build it anew (:func:`~neutrino.sim.cloud.world_of`, then
    :meth:`World.boot`)."""


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What :meth:`World.refresh` did: the guests it booted (new ones, and those whose DHCP answer
    changed) with their addresses, the guests it dropped, and the hosts whose plumbing it replaced."""

    booted: tuple[tuple[str, str | None], ...] = ()
    dropped: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


class _Lazy(MutableMapping[K, V]):
    """A dict whose values may still be pickled bytes: each is unpickled when first asked for (a
    loaded world only unpickles the elements a probe goes through). ``settled``: values are not
    changed once set (a guest's boot hops), so their pickled form is kept for the next save."""

    def __init__(self, items: dict[K, V] | None = None, blobs: dict[K, bytes] | None = None, *,
                 settled: bool = False) -> None:
        self._items: dict[K, V] = items if items is not None else {}
        self._blobs: dict[K, bytes] = blobs if blobs is not None else {}
        self._settled = settled
        self._kept: dict[K, bytes] = {}

    def __getitem__(self, key: K) -> V:
        try:
            return self._items[key]
        except KeyError:
            blob = self._blobs.pop(key)  # KeyError when neither has it
            value: V = pickle.loads(blob)
            self._items[key] = value
            if self._settled:
                self._kept[key] = blob
            return value

    def __setitem__(self, key: K, value: V) -> None:
        self._blobs.pop(key, None)
        self._kept.pop(key, None)
        self._items[key] = value

    def __delitem__(self, key: K) -> None:
        self._kept.pop(key, None)
        if self._blobs.pop(key, None) is None:
            del self._items[key]
        else:
            self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._items or key in self._blobs

    def __iter__(self) -> Iterator[K]:
        yield from list(self._items)
        yield from [k for k in list(self._blobs) if k not in self._items]

    def __len__(self) -> int:
        return len(self._items) + len(self._blobs)

    def loaded(self) -> dict[K, V]:
        """The values unpickled so far."""
        return self._items

    def blobs(self) -> dict[K, bytes]:
        """Every value pickled (the ones never unpickled as they were read)."""
        out = dict(self._blobs)
        for k, v in self._items.items():
            blob = self._kept.get(k)
            if blob is None:
                blob = pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)
                if self._settled:
                    self._kept[k] = blob
            out[k] = blob
        return out


class _Absent(Mapping[str, HostState]):
    """The host states of a loaded world: their names only (its elements were saved built)."""

    def __init__(self, names: Iterable[str]) -> None:
        self._names = tuple(names)

    def __getitem__(self, key: str) -> HostState:
        if key in self._names:
            raise StaleWorld(f"this world was loaded from a file and does not hold host {key}'s state")
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def get(self, key: str, default: HostState | None = None) -> HostState | None:  # type: ignore[override]
        """The state if this world holds it (never raises)."""
        return self.known().get(key, default)

    def known(self) -> dict[str, HostState]:
        """The host states it does hold."""
        return {}


class _PartlyAbsent(_Absent):
    """A loaded world's host states after a refresh: the refreshed ones are known."""

    def __init__(self, names: Iterable[str], known: Mapping[str, HostState]) -> None:
        super().__init__(names)
        self._known = dict(known)

    def __getitem__(self, key: str) -> HostState:
        if key in self._known:
            return self._known[key]
        return super().__getitem__(key)

    def known(self) -> dict[str, HostState]:
        return self._known


@dataclass
class _Old:
    """A changed host's elements, taken out so the new ones can learn from them."""

    stacks: dict[tuple[str, str], IpStack] = field(default_factory=dict)
    nf: dict[tuple[str, str], Netfilter | None] = field(default_factory=dict)
    ovs: dict[tuple[str, str], OvsBridgeSim] = field(default_factory=dict)
    lbr: dict[tuple[str, str], LinuxBridgeSim] = field(default_factory=dict)
    dhcp: dict[tuple[str, str, str], DhcpServer] = field(default_factory=dict)


def _same_guest(a: GuestSpec | None, b: GuestSpec | None) -> bool:
    """The same instance on the same plumbing (its address and number may change: a changed
    address comes with a changed DHCP answer, which boots it again)."""
    return a is not None and b is not None and (a.host, a.device, a.mac) == (b.host, b.device, b.mac)


def _take(lazy: _Lazy[tuple[str, str], V], hosts: set[str]) -> dict[tuple[str, str], V]:
    """Remove and return the elements of ``hosts``."""
    out = {}
    for key in [k for k in lazy if k[0] in hosts]:
        out[key] = lazy[key]
        del lazy[key]
    return out


def _zone_moves(before: Mapping[str, int], after: Mapping[str, int]) -> dict[int, int | None]:
    """How conntrack zones move when ports are renumbered: old zone -> new zone (None: its port is
    gone). Zones no port names (0) stay."""
    moves: dict[int, int | None] = {}
    for dev, zone in before.items():
        new = after.get(dev)
        if moves.get(zone) is None:
            moves[zone] = new
    return {z: n for z, n in moves.items() if n != z}


_SAVED = ("specs", "network_hosts", "externals", "uplinks", "topo", "flood_pruning", "_seg_fdb", "guests",
          "_dhcp", "_dhcp_inputs", "_unbuilt", "_pending", "_guest_pending", "metadata", "underlay_mtu")


class World:
    def __init__(self, hosts: tuple[HostState, ...], *, tunnel_ips: dict[str, IPv4Address] | None = None,
                 guests: tuple[GuestSpec, ...] = (), externals: tuple[ExternalNet, ...] = (),
                 network_hosts: frozenset[str] = frozenset(), uplinks: tuple[Uplink, ...] = (),
                 underlay_mtu: int = 1500) -> None:
        self.specs = {g.name: g for g in guests}
        self.underlay_mtu = underlay_mtu  # the hosts' physical network, where no device of theirs says
        self.network_hosts = network_hosts
        self.externals = externals
        self.uplinks = {_uplink_dev(u): u for u in uplinks}
        self._raw: Mapping[str, HostState] = {h.name: h for h in hosts}  # as given (before the outside port)
        host_list = [self._effective(h) for h in hosts]
        if externals or uplinks:
            host_list.append(self._outside_host(externals, uplinks))
        dev_guests = {(g.host, g.device): g.name for g in guests}
        self.topo: Topology = build(tuple(host_list), tunnel_ips=dict(tunnel_ips or {}), guests=dev_guests)
        self._wire_outside()
        self.flood_pruning = True  # see _not_for; False follows every flooded copy (as before)
        self._attached: dict[End, str | None] = {}
        self._pruners: dict[tuple[str, str], Unfollowed] = {}
        self._forget_hops()
        self._by_name: dict[str, tuple[HostState, dict[str, Link], dict[str, BridgeInfo]]] = {}
        self._seg_fdb: dict[tuple[str, int | None], dict[Mac, End]] = {}
        self._ns_addrs: dict[tuple[str, str], tuple[frozenset[IPv4Address], tuple[tuple[str, IPv4Address], ...]]] = {}
        self._root_addrs: dict[str, frozenset[IPv4Address]] = {}
        self._boot_hops: _Lazy[str, list[Hop]] = _Lazy(settled=True)
        self.hosts: Mapping[str, HostState] = {h.name: h for h in host_list}
        self.guests = {g.name: Guest(g.name, Mac.parse(g.mac)) for g in guests}
        self._stacks: _Lazy[tuple[str, str], IpStack] = _Lazy()
        self._nf: _Lazy[tuple[str, str], Netfilter | None] = _Lazy()
        self._ovs: _Lazy[tuple[str, str], OvsBridgeSim] = _Lazy()
        self._lbr: _Lazy[tuple[str, str], LinuxBridgeSim] = _Lazy()
        self._dhcp: dict[tuple[str, str, str], DhcpServer] = {}
        self._dhcp_inputs: dict[tuple[str, str, str], tuple[object, ...]] = {}  # what each was read from
        self._unbuilt: dict[tuple[str, str, str], str] = {}  # elements that could not be built, and why
        self._pending: dict[tuple[str, str, IPv4Address], list[Ethernet]] = {}
        self._guest_pending: dict[tuple[str, IPv4Address], list[Ethernet]] = {}
        self.metadata = MetadataEndpoint(MetadataInstance(g.fixed_ip, g.instance_number, g.name)
                                         for g in guests if g.fixed_ip is not None)
        for h in self.hosts.values():
            self._find_dhcp_servers(h)

    @property
    def boot_hops(self) -> MutableMapping[str, list[Hop]]:
        """Per guest, the hops its DHCP exchange took (see :meth:`boot`)."""
        return self._boot_hops

    # ---------------------------------------------------------------------------- saving

    def __getstate__(self) -> dict[str, object]:
        """Every element built (a loaded world then needs no host state) and pickled on its own,
        so that loading unpickles only what a probe goes through (see :mod:`neutrino.sim.keep`)."""
        self.build_all()
        state: dict[str, object] = {k: self.__dict__[k] for k in _SAVED}
        state["hosts"] = tuple(self.hosts)
        for name in ("_stacks", "_nf", "_ovs", "_lbr", "_boot_hops"):
            lazy = self.__dict__[name]
            state[name] = lazy.blobs()
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        for k in _SAVED:
            setattr(self, k, state[k])
        self._raw = _Absent(state["hosts"])  # type: ignore[arg-type]
        self.hosts = _Absent(state["hosts"])  # type: ignore[arg-type]
        for name in ("_stacks", "_nf", "_ovs", "_lbr", "_boot_hops"):
            setattr(self, name, _Lazy(blobs=state[name], settled=name == "_boot_hops"))  # type: ignore[arg-type]
        self._attached = {}
        self._pruners = {}
        self._forget_hops()
        self._by_name = {}
        self._ns_addrs = {}
        self._root_addrs = {}

    def build_all(self) -> None:
        """Build every element now (each namespace's IP stack and netfilter, each bridge): what a
        saved world must hold, since it keeps no host states."""
        states = self.hosts.known() if isinstance(self.hosts, _Absent) else self.hosts
        for h in states.values():
            self._build_host(h)

    def _build_host(self, h: HostState) -> None:
        """Build ``h``'s elements; one the simulator cannot build is noted, to fail the same way
        when a loaded world reaches it."""
        todo: list[tuple[str, str, Callable[[str, str], object]]] = []
        for ns in sorted({ROOT, *(n.name for n in h.namespaces)}):
            todo += [("stack", ns, self.stack), ("netfilter", ns, self.netfilter)]
        todo += [("bridge", br.name, self.bridge) for br in _ovs_bridges(h)]
        todo += [("linux_bridge", lbr.name, self.linux_bridge) for lbr in h.linux_bridges or ()]
        for kind, name, build_one in todo:
            try:
                build_one(h.name, name)
            except (NeutrinoError, ValueError, StopIteration) as exc:
                self._unbuilt[(kind, h.name, name)] = f"{h.name} {name}: {exc}"

    def _cannot_build(self, kind: str, host: str, name: str) -> None:
        why = self._unbuilt.get((kind, host, name))
        if why is not None:
            raise InvalidInput(why)

    # ---------------------------------------------------------------------------- the world

    def _effective(self, host: HostState) -> HostState:
        """The host as the simulator runs it: with the outside world's port on its br-ex."""
        return self._with_outside_port(host, self.externals) if self.externals else host

    def _wire_outside(self, rewired: Iterable[str] | None = None) -> None:
        """Wire the outside world to the external bridges and segments (of the ``rewired`` hosts)."""
        again = None if rewired is None else set(rewired)
        for ext in self.externals:
            if again is None or ext.host in again or OUTSIDE in again:
                port = End(Kind.OVS, ext.host, ext.bridge, f"{OUTSIDE}-{ext.host}"[:15])
                lead = _lead_external(self.externals, ext)
                if lead is None:
                    self.topo.connect(port, End(Kind.NS, OUTSIDE, ROOT, f"ext-{ext.host}"[:15]))
                    continue
                # several hosts on one external network (DVR's fip- namespaces): one segment
                segment = f"external-{ext.gateway.network}"
                self.topo.plug(segment, port, ext.host, port.port)
                self.topo.plug(segment, End(Kind.NS, OUTSIDE, ROOT, f"ext-{lead.host}"[:15]), OUTSIDE,
                               f"ext-{lead.host}"[:15])
        if again is None or OUTSIDE in again:
            for dev, up in self.uplinks.items():
                self.topo.plug(up.segment, End(Kind.NS, OUTSIDE, ROOT, dev), OUTSIDE, dev)

    def _with_outside_port(self, host: HostState, externals: tuple[ExternalNet, ...]) -> HostState:
        wanted = [e for e in externals if e.host == host.name]
        show = host.ovs.show
        if not wanted or not isinstance(show, OvsdbShow):
            return host
        bridges = []
        ovs = host.ovs
        for br in show.bridges:
            if any(e.bridge == br.name for e in wanted):
                name = f"{OUTSIDE}-{host.name}"[:15]
                br = replace(br, ports=(*br.ports, Port(name, (Interface(name),))))
                flows = ovs.flows_of(br.name)
                if flows is not None and flows.ports is not None:  # give the new port an OpenFlow number
                    numbers = [p.number for p in flows.ports.ports if isinstance(p.number, int)]
                    extra = OfPort(max(numbers, default=0) + 1, name, Mac(0x02005E0000FF))
                    ovs = ovs.with_bridge(replace(flows, ports=replace(flows.ports,
                                                                       ports=(*flows.ports.ports, extra))))
            bridges.append(br)
        return replace(host, ovs=replace(ovs, show=replace(show, bridges=tuple(bridges))))

    def _outside_host(self, externals: tuple[ExternalNet, ...], uplinks: tuple[Uplink, ...] = ()) -> HostState:
        links = []
        externals = tuple(e for e in externals if _lead_external(externals, e) in (None, e))
        for i, e in enumerate(externals):
            name = f"ext-{e.host}"[:15]
            links.append(Link(i + 2, name, flags=("BROADCAST", "MULTICAST", "UP", "LOWER_UP"), mtu=1500,
                              state=OperState.UP, link_type="ether", mac=f"02:00:5e:00:00:{i + 1:02x}",
                              brd="ff:ff:ff:ff:ff:ff", addresses=(Address(e.gateway, "global"),),
                              kind=LinkKind.VETH))
        routes = [Route(e.gateway.network, dev=f"ext-{e.host}"[:15], proto="kernel", scope="link",
                        src=e.gateway.ip) for e in externals]
        for i, u in enumerate(uplinks):
            name = _uplink_dev(u)
            links.append(Link(len(links) + 2, name, flags=("BROADCAST", "MULTICAST", "UP", "LOWER_UP"), mtu=1500,
                              state=OperState.UP, link_type="ether", mac=f"02:00:5e:00:01:{i + 1:02x}",
                              brd="ff:ff:ff:ff:ff:ff", addresses=(Address(u.gateway, "global"),),
                              kind=LinkKind.VETH))
            routes.append(Route(u.gateway.network, dev=name, proto="kernel", scope="link", src=u.gateway.ip))
            routes.extend(Route(net, dev=name, scope="link") for net in u.on_link if net != u.gateway.network)
        ns = NamespaceState(ROOT, links=tuple(links), routes=tuple(routes),
                            sysctls=(Sysctl("net.ipv4.ip_forward", "1"),))
        return HostState(OUTSIDE, namespaces=(ns,))

    def _find_dhcp_servers(self, host: HostState,
                           before: Mapping[tuple[str, str, str], DhcpServer] | None = None) -> None:
        """The dnsmasq servers of ``host``; one read from the same process, files and device as a
        server of ``before`` is that server."""
        for proc in host.processes or ():
            opts = proc.options
            for ns in host.namespaces:
                dev = opts.interface
                if dev is None and opts.listen_addresses:
                    listen = opts.listen_addresses
                    dev = next((lk.name for lk in ns.links or () for a in lk.addresses
                                if a.interface.ip in listen), None)
                elif dev is None and ns.name.startswith("qdhcp-") and ns.name[6:] in (opts.pid_file or ""):
                    # today's agent runs dnsmasq with --bind-dynamic and no --interface: the
                    # namespace is the network's (its id is in the pid file path), the device its one
                    dev = next((lk.name for lk in ns.links or () if lk.name != "lo"), None)
                if dev is None or ns.link(dev) is None:
                    continue
                key = (host.name, ns.name, dev)
                inputs = (proc, ns.link(dev), tuple(f for f in host.files if f.path in (opts.hostsfile, opts.optsfile)))
                known = self._dhcp_inputs.get(key)
                if known is not None and known[0] == inputs and before is not None and key in before:
                    self._dhcp[key] = before[key]  # read from the same process, files and device
                    continue
                try:
                    server = DhcpServer.from_state(proc, host.files, ns, interface=dev)
                except InvalidInput:
                    continue
                self._dhcp[key] = server
                self._dhcp_inputs[key] = (inputs,)

    def stack(self, host: str, ns: str) -> IpStack:
        key = (host, ns)
        got = self._stacks._items.get(key)  # built (or unpickled) already: the common case
        if got is not None:
            return got
        if key not in self._stacks:
            self._cannot_build("stack", host, ns)
            self._stacks[key] = _new_stack(self.hosts[host], ns)
        return self._stacks[key]

    def netfilter(self, host: str, ns: str) -> Netfilter | None:
        key = (host, ns)
        got = self._nf._items.get(key, _UNSEEN)
        if got is not _UNSEEN:
            return got  # type: ignore[return-value]
        if key not in self._nf:
            self._cannot_build("netfilter", host, ns)
            state = self.hosts[host].namespace(ns)
            self._nf[key] = Netfilter(state.iptables) if state is not None and state.iptables else None
        return self._nf[key]

    def bridge(self, host: str, name: str) -> OvsBridgeSim:
        key = (host, name)
        got = self._ovs._items.get(key)
        if got is not None:
            return got
        if key not in self._ovs:
            self._cannot_build("bridge", host, name)
            self._ovs[key] = _new_bridge(self.hosts[host], name)
        return self._ovs[key]

    def _lbr_inputs(self, h: HostState) -> tuple[dict[str, Link], dict[str, BridgeInfo]]:
        """``h``'s root links and its Linux bridges, by name: worked out once per host state (a
        host state never changes; a new one, after a refresh, is another object)."""
        got = self._by_name.get(h.name)
        if got is None or got[0] is not h:
            root = h.namespace(ROOT)
            links = {lk.name: lk for lk in root.links or ()} if root is not None else {}
            infos: dict[str, BridgeInfo] = {}
            for b in h.linux_bridges or ():
                infos.setdefault(b.name, b)
            got = self._by_name[h.name] = (h, links, infos)
        return got[1], got[2]

    def linux_bridge(self, host: str, name: str) -> LinuxBridgeSim:
        key = (host, name)
        got = self._lbr._items.get(key)  # built (or unpickled) already: the common case
        if got is not None:
            return got
        if key not in self._lbr:
            self._cannot_build("linux_bridge", host, name)
            h = self.hosts[host]
            links, infos = self._lbr_inputs(h)
            self._lbr[key] = _new_linux_bridge(h, name, links, infos.get(name))
        return self._lbr[key]

    # ---------------------------------------------------------------------------- the loop

    def _forget_hops(self) -> None:
        """Drop what the world remembers of its hops (:class:`_Done`, and each end's host label and
        diagram letter): they read the wiring, the network hosts, the guests and ``flood_pruning``."""
        self._done: dict[tuple[int, int], _Done | tuple[tuple[Step, ...], tuple[object, ...]]] = {}
        self._outs: dict[tuple[str, str, str, int | None], _Out] = {}
        self._where: dict[int, tuple[End, str, str]] = {}
        self._ctxs: dict[tuple[object, ...], tuple[CtRef | None, HookCtx]] = {}
        self._sent: dict[int, tuple[object, tuple[_Event, ...]]] = {}
        self._lbr_peers: dict[tuple[str, str, str], End | None | object] = {}
        self._infos: dict[int, tuple[Ethernet, Ethernet, _FollowInfo]] = {}
        self._readdressed: dict[int, tuple[Ethernet, Mac, Ethernet]] = {}
        self._locals: dict[int, tuple[IPv4, _Event]] = {}
        self._answers: dict[int, tuple[IPv4, Step, str, _FollowInfo, tuple[IPv4, ...]]] = {}
        self._delivered: dict[int, tuple[IPv4, _FollowInfo, str, Step]] = {}
        self._nowhere: dict[tuple[str, str], Unfollowed] = {}  # (:meth:`_unfollowed`'s with ``nowhere``)
        self._wiring: tuple[Topology, int, frozenset[str], bool] | None = None

    def _check_wiring(self) -> None:
        """Forget the hops when what they read has changed since the last run: another topology
        object or a change to it (:attr:`Topology.version`), other network hosts, ``flood_pruning``
        turned (a refresh forgets them itself, for the guests and elements it replaces)."""
        w = self._wiring
        topo = self.topo
        if w is None or w[0] is not topo or w[1] != topo.version or w[2] is not self.network_hosts \
                or w[3] != self.flood_pruning:
            self._forget_hops()
            self._wiring = (topo, topo.version, self.network_hosts, self.flood_pruning)

    def _run(self, events: deque[_Event], run: _Run, goal: tuple[int, int] | None, target: str) -> None:
        self._check_wiring()
        count = 0
        while events:
            ev = events.popleft()
            while True:
                count += 1
                if count > MAX_EVENTS:
                    run.drops.append(("", Step(StepKind.DROP, "", "loop: too many frames")))
                    return
                kind = ev.end.kind  # (:meth:`_step`, inline: one call less per hop)
                out: Sequence[_Event]
                if kind is Kind.OVS:
                    out = self._at_ovs(ev, run, goal)
                elif kind is Kind.NS:
                    out = self._at_namespace(ev, run, goal, target)
                elif kind is Kind.LBR:
                    out = self._at_linux_bridge(ev, run, goal)
                elif kind is Kind.GUEST:
                    out = self._at_guest(ev, run, goal, target)
                else:
                    out = self._step(ev, run, goal, target)
                if not out:
                    break
                if not events:  # one event to carry on with and none waiting (a probe's path, mostly):
                    try:  # it is the next, as through the queue, without the queue's two calls
                        (ev,) = out
                    except ValueError:  # several
                        events.extend(out)
                        break
                    continue
                events.extend(out)
                break

    def _hop(self, run: _Run, ev: _Event, element: str, steps: list[Step], goal: tuple[int, int] | None) -> Hop:
        end = ev.end
        where = self._where.get(id(end))
        if where is None or where[0] is not end:  # the host label and the diagram letter: the wiring's,
            host = end.host or (WIRE if end.kind is Kind.SEGMENT else end.element)  # remembered per end (held)
            peer = self.topo.peer(end)
            where = (end, host, _letter(end, host in self.network_hosts, peer.element if peer else ""))
            if len(self._where) >= _DONE_MAX:
                self._where.clear()
            self._where[id(end)] = where
        host = where[1]
        frame = ev.frame
        # (:meth:`Hop.entered`'s hop, made without that method's call)
        hop = new_hop(host, element or "root", end.port, where[2], UNFORMATTED, tuple(steps), frame, "")
        if goal is None:  # (a boot's: nothing is followed)
            followed = False
        elif goal[0] < 0:
            followed = _follows(_strip_vlans(frame), goal)
        else:  # (:meth:`_Run.follows_key`, inline, on what it reads of the frame: once per frame object)
            seen = self._infos.get(id(frame))
            if seen is None or seen[0] is not frame:
                seen = self._frame_info(frame)
            info = seen[2]
            followed = info is not None and (
                (info[0] is not None and info[0][0] == goal[0] and (info[0][1] == goal[1] or info[0][2] == goal[1]))
                or (info[1] is not None and (info[1] == goal or info[1] in run.aliases)))
        (run.hops if followed else run.side).append(hop)
        if followed:
            for st in steps:
                if st.kind is StepKind.DROP:
                    run.drops.append((f"{host} {element or 'root'}", st))
        return hop

    def _frame_info(self, frame: Ethernet) -> tuple[Ethernet, Ethernet, _FollowInfo]:
        """``frame``, untagged, and what following the probe reads of it (:func:`_follow_info`):
        worked out once per frame object (held: its id is the key)."""
        seen = self._infos.get(id(frame))
        if seen is None or seen[0] is not frame:
            bare = _strip_vlans(frame)
            if len(self._infos) >= _DONE_MAX:
                self._infos.clear()
            seen = self._infos[id(frame)] = (frame, bare, _follow_info(bare))
        return seen

    def _replay(self, run: _Run, done: _Done, goal: tuple[int, int] | None) -> list[_Event]:
        """A remembered bridge hop again: its record where :meth:`_hop` puts it, its events."""
        if goal is None:
            followed = False
        elif goal[0] < 0:
            followed = _follows(done.frame, goal)
        else:  # (:meth:`_Run.follows_key`, inline)
            info = done.info
            if info is None:
                followed = False
            else:
                ports, key = info
                followed = (ports is not None and ports[0] == goal[0] and (ports[1] == goal[1] or ports[2] == goal[1])) \
                    or (key is not None and (key == goal or key in run.aliases))
        if followed:
            run.hops.append(done.hop)
            if done.drops:
                run.drops.extend(done.drops)
        else:
            run.side.append(done.hop)
        return list(done.events)

    def _send_from(self, end: End, frame: Ethernet, meta: Meta | None = None) -> list[_Event]:
        peer = self.topo.peer(end)
        if peer is None:
            return []
        return [_Event(peer, frame, meta if meta is not None else _PLAIN)]

    def _step(self, ev: _Event, run: _Run, goal: tuple[int, int] | None, target: str) -> list[_Event]:
        kind = ev.end.kind
        if kind is Kind.OVS:
            return self._at_ovs(ev, run, goal)
        if kind is Kind.LBR:
            return self._at_linux_bridge(ev, run, goal)
        if kind is Kind.GUEST:
            return self._at_guest(ev, run, goal, target)
        if kind is Kind.NS:
            return self._at_namespace(ev, run, goal, target)
        if kind is Kind.SEGMENT:
            return self._at_segment(ev, run, goal)
        return []

    def _at_segment(self, ev: _Event, run: _Run, goal: tuple[int, int] | None) -> list[_Event]:
        """A frame a host put on a physical segment: a learning switch per VLAN between the hosts'
        NICs; a VLAN device's frames are tagged onto the trunk and popped at the far VLAN device."""
        nic = self.topo.nics[ev.end]
        seg = ev.end.element
        frame = ev.frame
        steps: list[Step] = []
        if nic.vlan is not None:
            frame = push_vlan(frame, nic.vlan)
            steps.append(Step(StepKind.DEVICE, f"{nic.dev}@{seg}", f"802.1Q tag {nic.vlan} pushed onto {seg}"))
        tags = vlan_ids(frame)
        vid = tags[0] if tags else None
        fdb = self._seg_fdb.setdefault((seg, vid), {})
        if not (frame.src.value >> 40) & 1:
            fdb[frame.src] = ev.end
        ends: dict[str, list[End]] = {}
        for e in self.topo.segments.get(seg, ()):
            if self.topo.nics[e].host != nic.host:
                ends.setdefault(self.topo.nics[e].host, []).append(e)
        known = fdb.get(frame.dst) if frame.dst != BROADCAST and not (frame.dst.value >> 40) & 1 else None
        if known is not None and self.topo.nics[known].host != nic.host:
            hosts = [self.topo.nics[known].host]
            how = f"{frame.dst} learned on {known.port}"
        else:
            hosts = sorted(ends)
            how = f"{frame.dst}: flooded" if hosts else f"{frame.dst}: no other host on {seg}"
        out: list[_Event] = []
        reached: list[str] = []
        for h in hosts:
            rcv = next((e for e in ends.get(h, ()) if self.topo.nics[e].vlan == vid), None)
            trunk = None
            if rcv is None and vid is not None:  # an OVS bridge's NIC (br-ethX's uplink) takes every tag
                trunk = next((e for e in ends.get(h, ()) if self.topo.nics[e].vlan is None
                              and (peer := self.topo.peer(e)) is not None and peer.kind is Kind.OVS), None)
            if trunk is not None:
                reached.append(f"{trunk.port} (trunk, tag {vid} kept)")
                out.extend(self._send_from(trunk, frame))
                continue
            if rcv is None:
                reached.append(f"{h} has no vlan{vid} on {seg}: dropped" if vid is not None
                               else f"{h}: no untagged device on {seg}")
                continue
            f = pop_vlan(frame) if vid is not None else frame
            reached.append(f"{rcv.port}" + (f" (tag {vid} popped)" if vid is not None else ""))
            out.extend(self._send_from(rcv, f))
        what = f"vlan {vid}" if vid is not None else "untagged"
        steps.append(Step(StepKind.NORMAL, f"{seg} switch ({what})", f"{how} -> " + (", ".join(reached) or "none")))
        self._hop(run, ev, seg, steps, goal)
        return out

    def _at_ovs(self, ev: _Event, run: _Run, goal: tuple[int, int] | None) -> list[_Event]:
        sim = self._ovs._items.get((ev.end.host, ev.end.element))
        if sim is None:
            sim = self.bridge(ev.end.host, ev.end.element)
        # a boot (nothing followed: ``goal`` None): a fresh world's first boot sends each guest's
        # own DHCP messages once, so no bridge meets an equal frame again nor hands back a result
        # object it gave before. A boot again (or after DHCP probes) would meet some (review20:
        # seed001, 8-216 kept hops a boot), but the header memory answers those about as cheaply,
        # so neither the bridge's memory of whole inputs nor the hops kept for :meth:`_replay` are
        # asked or filled in any boot; the answers are the same either way
        boot = goal is None
        unfollowed = None
        if self.flood_pruning and ev.frame.dst.value == BROADCAST.value:  # (MACs as numbers: Mac's == is
            # Python code; :meth:`_unfollowed`'s kept answer looked up inline)
            if boot and run.size is None:  # (no MTU checked: a copy into a port leading nowhere does nothing)
                unfollowed = self._nowhere.get((ev.end.host, ev.end.element)) \
                    or self._unfollowed(ev.end.host, ev.end.element, nowhere=True)
            else:
                unfollowed = self._pruners.get((ev.end.host, ev.end.element)) \
                    or self._unfollowed(ev.end.host, ev.end.element)
        res = sim.process(ev.end.port, ev.frame, ev.meta, unfollowed=unfollowed, remember=not boot)
        again = False  # the bridge gave this very result before (it remembered it): keep the hop
        seen = self._done.get((id(res.steps), id(res.outputs))) if run.size is None and res.steps and not boot \
            else None
        if seen is not None:
            if type(seen) is _Done:
                if seen.steps is res.steps and seen.outputs is res.outputs and seen.pruned == res.pruned \
                        and (seen.end is ev.end or seen.end == ev.end):
                    return self._replay(run, seen, goal)
            else:  # (the very steps and outputs seen once before: a bridge's remembered result)
                again = seen[0] is res.steps and seen[1] is res.outputs  # type: ignore[index]
        steps = list(res.steps)
        out: list[_Event] = []
        outs = self._outs
        host, element = ev.end.host, ev.end.element
        for emit in res.outputs:
            o = outs.get((host, element, emit.port, emit.meta.tun_id))
            if o is None:
                o = self._out_of(host, element, emit.port, emit.meta)
            here, tun, far, step, far_meta = o
            if tun is not None:
                assert step is not None
                steps.append(step)
                if far is None:
                    continue
                if run.size is not None and (drop := self._underlay_check(tun, emit.frame, emit.meta)) is not None:
                    steps.append(drop)
                    continue
                assert far_meta is not None
                out.append(_Event(far, emit.frame, far_meta))
                continue
            if self.flood_pruning and emit.frame.dst.value == BROADCAST.value and self._not_for(here, emit.frame):
                continue  # (:meth:`_not_for`'s first test inline: most copies are unicasts)
            if run.size is not None and (drop := self._ovs_mtu_check(here, emit.frame)) is not None:
                steps.append(drop)
                continue
            if far is not None:  # (the port's peer)
                out.append(_Event(far, emit.frame, _PLAIN))
        if not res.outputs and not res.pruned and any(st.kind is StepKind.DROP for st in steps):
            mismatch = _segment_mismatch(sim, ev)
            if mismatch is not None:
                steps.append(mismatch)
        hop = self._hop(run, ev, ev.end.element, steps, goal)
        if run.size is None and res.steps and not boot:  # (a sized probe's checks read MTUs: not kept)
            self._keep(res.steps, res.outputs, res.pruned, ev, hop, out, again)
        return out

    def _out_of(self, host: str, element: str, port: str, meta: Meta) -> _Out:
        """Where a bridge's copy out of ``port`` with ``meta`` goes (see :data:`_Out`): worked
        out once per port and tunnel key, for the wiring as it is (:meth:`_forget_hops` forgets it
        with the wiring's other memories)."""
        here = End(Kind.OVS, host, element, port)
        tun = self.topo.tunnel_at(here)
        got: _Out
        if tun is None:
            got = (here, None, self.topo.peer(here), None, None)
        else:
            far = self.topo.tunnel_to(tun)
            if far is None:
                got = (here, tun, None, Step(StepKind.DROP, port, f"no host at tunnel endpoint {tun.remote_ip}"), None)
            else:
                got = (here, tun, End(Kind.OVS, far.host, far.bridge, far.port), self._encap_step(tun, far, meta),
                       Meta(tun_id=meta.tun_id, tun_src=self._v4(tun.local_ip or self.topo.tunnel_ips.get(tun.host)),
                            tun_dst=self._v4(tun.remote_ip)))
        if len(self._outs) >= _DONE_MAX:
            self._outs.clear()
        self._outs[(host, element, port, meta.tun_id)] = got
        return got

    def _keep(self, steps: tuple[Step, ...], outputs: tuple[object, ...], pruned: int, ev: _Event, hop: Hop,
              events: list[_Event], again: bool) -> None:
        """Remember a bridge hop worked out from a result (``steps``, ``outputs``): the first time a
        result is seen only its steps and outputs are noted (most results are fresh, never seen
        again: a boot's); the second time (``again``) the whole hop, for :meth:`_replay`. Keyed by
        both tuples' ids (held): a bridge's result remembered by a frame's header has the same
        steps with new outputs."""
        done = self._done
        if len(done) >= _DONE_MAX:
            done.clear()
        if not again:
            done.setdefault((id(steps), id(outputs)), (steps, outputs))
            return
        frame = _strip_vlans(ev.frame)
        drops = tuple((f"{hop.host} {hop.element}", st) for st in hop.steps if st.kind is StepKind.DROP)
        done[(id(steps), id(outputs))] = _Done(steps, outputs, pruned, ev.end, hop, tuple(events), frame,
                                               _follow_info(frame), drops)

    # ---------------------------------------------------------------------------- MTUs

    def _dev_mtu(self, host: str, ns: str, dev: str) -> int | None:
        """The MTU ``ip link`` gives device ``dev`` of namespace ``ns`` on ``host`` (None: unknown)."""
        try:
            lk = self.stack(host, ns).links.get(dev)
        except (KeyError, NeutrinoError):
            return None
        return lk.mtu if lk is not None and lk.mtu else None

    def _ovs_port_mtu(self, here: End) -> int | None:
        """The MTU of the device behind OVS port ``here``: the host's device of that name (a veth
        end such as qvo…), else the namespace device it leads to (an internal port moved into a
        router or DHCP namespace). None for a patch port (no device) and when nothing says."""
        peer = self.topo.peer(here)
        if peer is not None and peer.kind is Kind.OVS:
            return None
        mtu = self._dev_mtu(here.host, ROOT, here.port)
        if mtu is None and peer is not None and peer.kind is Kind.NS:
            mtu = self._dev_mtu(peer.host, peer.element, peer.port)
        return mtu

    def _ovs_mtu_check(self, here: End, frame: Ethernet) -> Step | None:
        """The datapath's check on output (``ovs_vport_send``): a packet longer than the port's
        MTU (not counting the Ethernet header and a VLAN tag) is dropped, silently."""
        mtu = self._ovs_port_mtu(here)
        size = l3_length(frame)
        if mtu is None or size <= mtu:
            return None
        return Step(StepKind.DROP, f"mtu {mtu} dev {here.port}",
                    f"frame of {frame_length(frame)} bytes ({size} of IP) larger than {here.port}'s MTU {mtu}: "
                    "dropped (silently: no ICMP error)")

    def _lbr_mtu_check(self, host: str, port: str, frame: Ethernet) -> Step | None:
        """A Linux bridge's check on output (``br_dev_queue_push_xmit``, ``is_skb_forwardable``): a
        frame longer than the port's MTU plus its Ethernet header and 4 bytes (room for a VLAN
        tag) is dropped, silently."""
        mtu = self._dev_mtu(host, ROOT, port)
        length = frame_length(frame)
        if mtu is None or length <= mtu + 18:
            return None
        return Step(StepKind.DROP, f"mtu {mtu} dev {port}",
                    f"frame of {length} bytes ({l3_length(frame)} of IP) larger than {port}'s MTU {mtu}: "
                    "dropped (silently: no ICMP error)")

    def _underlay(self, tun: Tunnel) -> tuple[int, str]:
        """The MTU the encapsulated packet meets, and the device: the one the host's routes send
        the tunnel's remote address out of, else the physical network's (:attr:`underlay_mtu`,
        no device: '')."""
        remote = tun.remote_ip
        if isinstance(remote, IPv4Address):
            try:
                st = self.stack(tun.host, ROOT)
                decision = st.route(remote)
            except (KeyError, NeutrinoError):
                decision = None
            if isinstance(decision, RouteDecision) and not decision.local:
                lk = st.links.get(decision.dev)
                if lk is not None and lk.mtu:
                    return lk.mtu, decision.dev
        return self.underlay_mtu, ""

    def _underlay_check(self, tun: Tunnel, frame: Ethernet, meta: Meta) -> Step | None:
        """A tunnel port's packet: the inner frame plus the tunnel's headers must fit the
        underlay's MTU; OVS's tunnels set DF on the outer packet, so a larger one is dropped (the
        kernel's ICMP error goes to the host itself, never to the instance)."""
        overhead = ENCAP_IP_OVERHEAD.get(tun.type)
        if overhead is None:
            return None
        mtu, dev = self._underlay(tun)
        outer = frame_length(frame) + overhead
        if outer <= mtu:
            return None
        inner = l3_length(frame)
        fits = mtu - overhead - (frame_length(frame) - inner)
        where = f"dev {dev}" if dev else "underlay"
        return Step(StepKind.DROP, f"mtu {mtu} {where}",
                    f"{tun.type.upper()} packet of {outer} bytes ({inner}-byte inner packet + {outer - inner} bytes "
                    f"of tunnel headers) larger than the underlay's MTU {mtu} "
                    f"({dev or 'the physical network: physical_mtu'}): dropped (silently: no "
                    f"ICMP error reaches the sender); packets of up to {fits} bytes fit through {tun.port}"
                    + (f" (key {meta.tun_id:#x})" if meta.tun_id is not None else ""))

    def _not_for(self, out: End, frame: Ethernet) -> bool:
        """Whether the copy of ``frame`` a bridge floods out of ``out`` needs no following: a DHCP
        client's broadcast (DISCOVER, REQUEST) going into another guest's attachment (its tap, or
        its firewall bridge). That guest's udhcpc ignores it (a hybrid firewall drops it before);
        the only state the copy can leave on the way, a conntrack entry for 0.0.0.0:68 >
        255.255.255.255:67 on that host in that port's zone, the guest's own DHCP exchange leaves
        too. So the world after :meth:`boot`, and every probe after it, are what following every
        copy gives (``flood_pruning = False`` does; tests/sim/test_living_world.py compares);
        only :attr:`boot_hops` no longer lists these copies. Not following them keeps a guest's
        boot from growing with the number of guests sharing its network."""
        if frame.dst.value != BROADCAST.value or not self.flood_pruning:  # (Mac's == is Python code)
            return False
        guest = self._attachment(out)
        if guest is None:
            return False
        chaddr = _dhcp_client(frame)
        return chaddr is not None and chaddr != self.guests[guest].mac

    def _unfollowed(self, host: str, bridge: str, *, nowhere: bool = False) -> Unfollowed:
        """:meth:`_not_for`, asked by bridge ``bridge`` of ``host`` for the copies it is about to
        flood (so that a DHCP broadcast's copies into the other guests' ports are never built):
        once per flood, the guest behind each port looked up once per port. A copy's tag changes
        nothing :meth:`_not_for` reads (the destination MAC, the DHCP message).

        ``nowhere``: a DHCP broadcast's copies into ports that lead nowhere (no tunnel, nothing
        wired: br-int's own LOCAL port on every compute) are left out too. :meth:`_at_ovs` drops
        such a copy without a trace unless a sized probe checks its MTU, so a boot (which checks
        none) asks this one: NORMAL floods each broadcast's copy to br-int's LOCAL port on every
        br-int pass, 12,000 copies built and dropped in a 1,000-guest boot. It reads the wiring, so
        it is kept with the hops (:meth:`_forget_hops`)."""
        pruners = self._nowhere if nowhere else self._pruners
        got = pruners.get((host, bridge))
        if got is not None:
            return got
        macs: dict[str, int | None] = {}  # per port: the MAC (as a number) of the guest it leads to, or None
        # (or _NOWHERE: a port leading nowhere, with ``nowhere``: no guest's MAC, so never followed)
        # per flooded ports' tuple (held, so its id is not reused while here): the positions of the
        # ports that lead to no guest, and those of the guests' ports by the guest's MAC
        floods: dict[int, tuple[tuple[str, ...], tuple[int, ...], dict[int, tuple[int, ...]]]] = {}

        def mac_at(port: str) -> int | None:
            end = End(Kind.OVS, host, bridge, port)
            guest = self._attachment(end)
            if guest is not None:
                mac: int | None = self.guests[guest].mac.value
            elif nowhere and self._leads_nowhere(end):
                mac = _NOWHERE
            else:
                mac = None
            macs[port] = mac
            return mac

        def unfollowed(frame: Ethernet, ports: Sequence[str]) -> Collection[str]:
            if frame.dst.value != BROADCAST.value or not self.flood_pruning:
                return ()
            chaddr = _dhcp_client(frame)
            if chaddr is None:
                return ()
            want = chaddr.value  # (MACs compared as numbers: Mac's == is Python code)
            if type(ports) is not tuple:
                return {port for port in ports
                        if (mac := macs[port] if port in macs else mac_at(port)) is not None and mac != want}
            got = floods.get(id(ports))
            if got is None or got[0] is not ports:  # (a guest's own port floods to a tuple of its own:
                vals = [macs[p] if p in macs else mac_at(p) for p in ports]  # comprehensions, not a loop)
                fixed = tuple([i for i, mac in enumerate(vals) if mac is None])
                same: dict[int, tuple[int, ...]] = {mac: (i,) for i, mac in enumerate(vals) if mac is not None}
                if len(same) + len(fixed) != len(vals):  # a MAC behind two ports
                    same = {}
                    for i, mac in enumerate(vals):
                        if mac is not None:
                            same[mac] = same.get(mac, ()) + (i,)
                if len(floods) >= 4096:
                    floods.clear()
                got = floods[id(ports)] = (ports, fixed, same)
            names, kept, by_mac = got
            mine = by_mac.get(want)
            return Kept(names, kept if mine is None else tuple(sorted(kept + mine)))

        pruners[(host, bridge)] = unfollowed
        return unfollowed

    def _leads_nowhere(self, end: End) -> bool:
        """Whether a copy out of bridge port ``end`` goes nowhere (:meth:`_out_of`: no tunnel and
        nothing wired to it)."""
        return self.topo.tunnel_at(end) is None and self.topo.peer(end) is None

    def _attachment(self, end: End) -> str | None:
        """The guest a bridge port leads to and to nothing else: the port of its tap (or vnet), or
        the br-int port of its hybrid firewall bridge (qvo → qbr, whose other ports are the
        guest's tap)."""
        got = self._attached.get(end, _UNSEEN)  # (once: an End's hash is Python code)
        if got is not _UNSEEN:
            return got  # type: ignore[return-value]
        found: str | None = None
        peer = self.topo.peer(end)
        if peer is not None and peer.kind is Kind.GUEST:
            found = peer.element if peer.element in self.guests else None
        elif peer is not None and peer.kind is Kind.LBR and end.kind is Kind.OVS:
            ports = self.linux_bridge(peer.host, peer.element).ports
            behind = {self.topo.peer(End(Kind.LBR, peer.host, peer.element, p)) for p in ports if p != peer.port}
            names = {e.element for e in behind if e is not None and e.kind is Kind.GUEST}
            if len(names) == 1 and all(e is not None and e.kind is Kind.GUEST for e in behind):
                found = next(iter(names))
                found = found if found in self.guests else None
        self._attached[end] = found
        return found

    @staticmethod
    def _v4(ip: object) -> IPv4Address | None:
        return ip if isinstance(ip, IPv4Address) else None

    def _encap_step(self, tun: Tunnel, far: Tunnel, meta: Meta) -> Step:
        key = f"key {meta.tun_id:#x}" if meta.tun_id is not None else "no key"
        local = tun.local_ip or self.topo.tunnel_ips.get(tun.host)
        return Step(StepKind.ENCAP, f"{tun.port} ({tun.type})",
                    f"{tun.type.upper()} {local} > {tun.remote_ip}, {key}, to {far.host} {far.bridge} {far.port}")

    def _at_linux_bridge(self, ev: _Event, run: _Run, goal: tuple[int, int] | None) -> list[_Event]:
        host, name = ev.end.host, ev.end.element
        sim = self._lbr._items.get((host, name))  # (:meth:`linux_bridge`'s common case, inline)
        if sim is None:
            sim = self.linux_bridge(host, name)
        # the bridge's own device transmits (the IP stack's frames), or a port receives
        res = sim.send(ev.frame) if ev.end.port == name else sim.receive(ev.end.port, ev.frame)
        steps = [res.step]
        out: list[_Event] = []
        nf_got = self._nf._items.get((host, ROOT), _UNSEEN)  # (:meth:`netfilter`'s common case, inline)
        nf: Netfilter | None = self.netfilter(host, ROOT) if nf_got is _UNSEEN else nf_got  # type: ignore[assignment]
        ip4 = ev.frame.payload if type(ev.frame.payload) is IPv4 else _ip(ev.frame)  # (:func:`_ip`'s common case)
        for port in res.ports:
            frame = ev.frame
            # (:meth:`_not_for` answers no for a frame not broadcast: asked only for one, MACs as numbers)
            if res.flooded and frame.dst.value == BROADCAST.value \
                    and self._not_for(End(Kind.LBR, host, name, port), frame):
                continue
            if res.netfilter and nf is not None and ip4 is not None:
                ckey = (host, name, ev.end.port, port, ev.frame.src.value)
                known = self._ctxs.get(ckey)
                if known is None:  # the same (immutable) context for the same ports and MAC
                    known = self._ctxs[ckey] = (None, HookCtx(
                        in_dev=name, out_dev=name, physdev_in=ev.end.port, physdev_out=port,
                        physdev_is_bridged=True, src_mac=ev.frame.src, local_addrs=self._local_addrs(host)))
                ctx = known[1]
                verdict = nf.traverse(FORWARD_PATH, ip4, ctx)
                steps.extend(verdict.steps)
                if verdict.verdict is not NfVerdict.ACCEPT:  # (not .accepted: a property's call)
                    continue
                if frame.payload is not verdict.packet:  # (:func:`_replace_ip`: unchanged, the frame itself)
                    frame = _replace_ip(frame, verdict.packet)
            if run.size is not None and (drop := self._lbr_mtu_check(host, port, frame)) is not None:
                steps.append(drop)
                continue
            pkey = (host, name, port)
            peer = self._lbr_peers.get(pkey, _UNSEEN)
            if peer is _UNSEEN:  # the wiring's: remembered per port, forgotten with the hops
                peer = self._lbr_peers[pkey] = self.topo.peer(End(Kind.LBR, host, name, port))
            if peer is not None:
                out.append(_Event(peer, frame))  # type: ignore[arg-type]
        if res.up:
            out.append(_Event(End(Kind.NS, host, ROOT, name), ev.frame))
        self._hop(run, ev, name, steps, goal)
        return out

    def _at_guest(self, ev: _Event, run: _Run, goal: tuple[int, int] | None, target: str) -> list[_Event]:
        guest = self.guests[ev.end.element]
        seen = self._frame_info(ev.frame)
        frame = seen[1]
        reply = guest.receive(frame)
        steps = [reply.step]
        if goal is not None and goal[0] < 0:
            self._l2_exchange(ev, frame, reply.frames, steps, run, goal)
        elif goal is not None and run.follows_key(seen[2], goal):
            ip4 = _ip(frame)
            if ip4 is not None and (own := guest.ip) is not None and ip4.dst == own:
                # the request reaching the target, or (an address behind NAT, e.g. a floating IP)
                # the first guest it reaches, the sender itself included (its own floating IP,
                # hairpinned by the router); any other packet of the flow is the answer
                request = _is_request(frame, goal, run.aliases)
                if request and not run.delivered_at and (ev.end.element == target or not target):
                    run.delivered_at = f"{ev.end.host} {guest.name}"
                    steps.append(Step(StepKind.DELIVER, guest.name, f"{guest.name} received it"))
                    run.reply_start = len(run.hops) + 1
                elif not request:
                    run.replied = True
                    run.failed = run.failed or _failure_of(ip4)
                    steps.append(Step(StepKind.DELIVER, guest.name, "the reply reached the sender"))
        self._hop(run, ev, guest.name, steps, goal)
        out = []
        for f in reply.frames:
            ip_out = f.payload
            if isinstance(ip_out, IPv4) and not (f.dst.value >> 40) & 1:
                # the guest routes its answer itself: on-link, or to its default gateway (which
                # need not be the router the request came through: seed 003's asymmetric routes)
                hop = guest.next_hop(ip_out.dst)
                hw = guest.resolve(hop) if hop is not None else None
                if hop is not None and hw is None:
                    first = (guest.name, hop) not in self._guest_pending
                    self._guest_pending.setdefault((guest.name, hop), []).append(f)
                    if first:
                        out.extend(self._send_from(ev.end, guest.arp_request_for(hop)))
                    continue
                if hw is not None:
                    f = self._to_mac(f, hw)
            out.extend(self._send_from(ev.end, f))
        # frames the guest was holding until it learned a neighbour
        arp = frame.payload
        if isinstance(arp, ARP):
            for f in self._guest_pending.pop((guest.name, arp.psrc), []):
                hw = guest.resolve(arp.psrc)
                if hw is not None:
                    out.extend(self._send_from(ev.end, replace(f, dst=hw)))
        return out

    def _to_mac(self, frame: Ethernet, hw: Mac) -> Ethernet:
        """``frame`` sent to ``hw``: the same object for the same frame and MAC objects (both
        held), so the elements after find it by identity."""
        got = self._readdressed.get(id(frame))
        if got is not None and got[0] is frame and got[1] is hw:
            return got[2]
        out = replace(frame, dst=hw)
        if len(self._readdressed) >= _DONE_MAX:
            self._readdressed.clear()
        self._readdressed[id(frame)] = (frame, hw, out)
        return out

    def _l2_exchange(self, ev: _Event, frame: Ethernet, answers: tuple[Ethernet, ...], steps: list[Step],
                     run: _Run, goal: tuple[int, int]) -> None:
        """An ARP or DHCP probe's frame at a guest: the target answering the request, or the
        answer reaching the sender (an ARP reply, a DHCP offer it takes)."""
        if not _follows(frame, goal):
            return
        guest = self.guests[ev.end.element]
        took = steps[0].kind is not StepKind.DROP
        arp = frame.payload
        if isinstance(arp, ARP):
            if arp.op == ARPOp.REQUEST and answers and not run.delivered_at:
                run.delivered_at = f"{ev.end.host} {guest.name}"
            elif arp.op == ARPOp.REPLY and took and ev.end.element == run.sender and not run.replied:
                self._answered(run, steps, guest.name, f"{arp.psrc} is-at {arp.hwsrc}")
            return
        msg = _dhcp_of(frame)
        ip4 = _ip(frame)
        if msg is not None and ip4 is not None and msg.message_type == DHCPMessageType.OFFER and took \
                and ev.end.element == run.sender and not run.replied:
            self._answered(run, steps, guest.name, f"{msg.yiaddr} offered by {msg.server_id or ip4.src}")

    @staticmethod
    def _answered(run: _Run, steps: list[Step], who: str, answer: str) -> None:
        run.replied = True
        run.answer = answer
        steps.append(Step(StepKind.DELIVER, who, f"the answer reached the sender: {answer}"))

    def _local_addrs(self, host: str) -> frozenset[IPv4Address]:
        """The root namespace's own addresses (they never change: the same set object every
        time, which netfilter's remembered hook runs name by identity)."""
        got = self._root_addrs.get(host)
        if got is None:
            got = self._root_addrs[host] = frozenset(self.stack(host, ROOT).local_addresses())
        return got

    def _ctx_of(self, host: str, ns: str, *, in_dev: str | None = None, out_dev: str | None = None,
                src_mac: Mac | None = None, mark: int = 0, ct: CtRef | None = None) -> HookCtx:
        """:meth:`_ctx` with these fields, the same (immutable) object for the same arguments (the
        same ``ct`` object: held, compared by identity): netfilter's remembered runs then find
        their context by identity. Forgotten with the hops (a refresh drops the addresses)."""
        key = (host, ns, in_dev, out_dev, None if src_mac is None else src_mac.value, mark, id(ct))
        got = self._ctxs.get(key)
        if got is not None and got[0] is ct:
            return got[1]
        ctx = self._ctx(host, ns, in_dev=in_dev, out_dev=out_dev, src_mac=src_mac, mark=mark, ct=ct)
        if len(self._ctxs) >= _DONE_MAX:
            self._ctxs.clear()
        self._ctxs[key] = (ct, ctx)
        return ctx

    def _ctx(self, host: str, ns: str, **kw: object) -> HookCtx:
        st = self.stack(host, ns)
        addrs = self._ns_addrs.get((host, ns))
        if addrs is None:  # a namespace's addresses never change: computed once
            devs = tuple((d, a) for d in st.links for a in [next(iter(st.addresses(d)), None)] if a is not None)
            addrs = self._ns_addrs[(host, ns)] = (
                frozenset(st.local_addresses()),
                tuple((d, a.ip if isinstance(a, IPv4Interface) else a) for d, a in devs))
        return HookCtx(local_addrs=addrs[0], dev_addrs=addrs[1], **kw)  # type: ignore[arg-type]

    def _at_namespace(self, ev: _Event, run: _Run, goal: tuple[int, int] | None, target: str) -> list[_Event]:
        host, ns, dev = ev.end.host, ev.end.element, ev.end.port
        st = self._stacks._items.get((host, ns))  # (:meth:`stack`'s common case, inline)
        if st is None:
            st = self.stack(host, ns)
        frame = ev.frame
        if type(frame.payload) is not IPv4:  # (:func:`_strip_vlans`, for a frame that may be tagged)
            frame = _strip_vlans(frame)
        d = st.ingress(dev, frame)
        steps = list(d.steps)
        out: list[_Event] = []
        if d.action is Action.ARP_REPLY or d.action is Action.LEARNED:
            if goal is not None and goal[0] == ARP_GOAL and _follows(frame, goal) and isinstance(frame.payload, ARP):
                if d.action is Action.ARP_REPLY and not run.delivered_at:
                    run.delivered_at = f"{host}/{ns or 'root'}"
                elif frame.payload.op == ARPOp.REPLY and not run.sender and not run.replied \
                        and st.is_local(frame.payload.pdst):
                    self._answered(run, steps, ns or "root", f"{frame.payload.psrc} is-at {frame.payload.hwsrc}")
            for odev, f in d.frames:
                out.extend(self._send_from(End(Kind.NS, host, ns, odev), f))
            arp = frame.payload
            if isinstance(arp, ARP):
                for f in self._pending.pop((host, ns, arp.psrc), []):
                    hw = arp.hwsrc
                    out.extend(self._send_from(End(Kind.NS, host, ns, dev), replace(f, dst=hw)))
            self._hop(run, ev, ns, steps, goal)
            return out
        packet = d.packet
        if packet is None:
            self._hop(run, ev, ns, steps, goal)
            return out
        # DHCP requests to a dnsmasq listening on this device
        dhcp = self._dhcp.get((host, ns, dev))
        if dhcp is not None and isinstance(packet.payload, UDP) and packet.payload.dport == 67:
            rep = dhcp.handle(frame)
            steps.append(rep.step)
            if rep.frame is not None and goal is not None and goal[0] == DHCP_GOAL and _follows(frame, goal) \
                    and not run.delivered_at:
                run.delivered_at = f"{host}/{ns or 'root'}"
            if rep.frame is not None:
                out.extend(self._send_from(ev.end, rep.frame))
            self._hop(run, ev, ns, steps, goal)
            return out
        nf_got = self._nf._items.get((host, ns), _UNSEEN)  # (:meth:`netfilter`'s common case, inline)
        nf: Netfilter | None = self.netfilter(host, ns) if nf_got is _UNSEEN else nf_got  # type: ignore[assignment]
        mark = 0
        ct = None
        if nf is not None:
            res = nf.hook(Hook.PREROUTING, packet, self._ctx_of(host, ns, in_dev=dev, src_mac=frame.src))
            steps.extend(res.steps)
            if res.verdict is not NfVerdict.ACCEPT:  # (not .accepted: a property's call)
                self._hop(run, ev, ns, steps, goal)
                return out
            if res.packet is not packet:
                run.translated(packet, res.packet, goal)
            packet, mark, ct = res.packet, res.mark, res.ct
        decision = st.route_input(dev, packet, mark=mark)
        uplink = self.uplinks.get(dev) if host == OUTSIDE else None
        if uplink is not None and (isinstance(decision, Unreachable) or not decision.local) \
                and not (isinstance(decision, RouteDecision) and decision.route.dst is not None
                         and decision.route.dst.prefixlen > 0):
            out.extend(self._beyond_uplink(uplink, ev, packet, steps, run, goal, target))
            return out
        if host == OUTSIDE and uplink is None and (isinstance(decision, Unreachable) or not decision.local):
            if not _on_the_internet(packet.dst):  # a private address: no router beyond the gateway knows it
                steps.append(Step(StepKind.DROP, f"no route to {packet.dst} beyond the external gateway",
                                  f"{packet.dst} is a private address: nothing on the internet answers it"))
                self._hop(run, ev, INTERNET, steps, goal)
                return out
            replies = self._internet(packet, steps, run, goal, target)  # beyond the gateway
            self._hop(run, ev, INTERNET, steps, goal)
            for rp in replies:
                out.extend(self._send_local(host, ns, rp, run, goal))
            return out
        if isinstance(decision, Unreachable):
            steps.append(decision.step)
            steps.append(Step(StepKind.DROP, str(packet.dst), f"no route: {decision.reason}"))
            self._hop(run, ev, ns, steps, goal)
            return out
        steps.append(decision.step)
        if decision.local:
            if nf is not None:
                res = nf.hook(Hook.INPUT, packet, self._ctx_of(host, ns, in_dev=dev, src_mac=frame.src, mark=mark,
                                                               ct=ct))
                steps.extend(res.steps)
                if res.verdict is not NfVerdict.ACCEPT:  # (not .accepted: a property's call)
                    self._hop(run, ev, ns, steps, goal)
                    return out
                if res.packet is not packet:
                    run.translated(packet, res.packet, goal)
                packet = res.packet
            replies = self._local_delivery(host, ns, packet, steps, run, goal, target)
            self._hop(run, ev, ns, steps, goal)
            for rp in replies:
                out.extend(self._send_local(host, ns, rp, run, goal))
            return out
        fwd, err = st.forward(dev, packet, decision)
        if fwd is None:
            if err is not None:
                steps.extend(err.steps)
            self._hop(run, ev, ns, steps, goal)
            if err is not None and err.reason == "MTU":  # fragmentation needed, back to the sender
                # the error carries the packet's connection (icmp_send's nf_ct_attach), confirmed
                # or not, so a NAT is undone in it (a floating IP's DNAT: it comes from the floating IP)
                related = CtRef(ct.conn, ct.direction.other, CtState.RELATED, ct.zone) \
                    if ct is not None and ct.conn is not None else None
                for _, f in err.frames:
                    if isinstance(f.payload, IPv4):
                        out.extend(self._send_local(host, ns, f.payload, run, goal, related=related))
            return out
        if nf is not None:
            res = nf.traverse((Hook.FORWARD, Hook.POSTROUTING), fwd,
                              self._ctx_of(host, ns, in_dev=dev, out_dev=decision.dev, src_mac=frame.src, mark=mark,
                                           ct=ct))
            steps.extend(res.steps)
            if res.verdict is not NfVerdict.ACCEPT:  # (not .accepted: a property's call)
                self._hop(run, ev, ns, steps, goal)
                return out
            if res.packet is not fwd:
                run.translated(fwd, res.packet, goal)
            fwd = res.packet
        out.extend(self._transmit(host, ns, decision, fwd, steps, st))
        self._hop(run, ev, ns, steps, goal)
        return out

    def _beyond_uplink(self, uplink: Uplink, ev: _Event, packet: IPv4, steps: list[Step], run: _Run,
                       goal: tuple[int, int] | None, target: str) -> list[_Event]:
        """A packet the upstream gateway must route off its segment: to the internet (which
        answers), nowhere (a gateway on a private network), or back as ICMP host unreachable
        (a private destination no upstream router knows)."""
        gw = uplink.gateway
        if not uplink.internet:
            steps.append(Step(StepKind.DROP, f"no route to {packet.dst} from {gw.ip}",
                              f"{gw.network} is not globally routable (a host-only network): nothing beyond "
                              f"{gw.ip} carries {packet.src} > {packet.dst}, and nothing routes a reply back "
                              f"to {packet.src}"))
            self._hop(run, ev, ROOT, steps, goal)
            return []
        if not _on_the_internet(packet.dst):
            steps.append(Step(StepKind.DROP, f"no route to {packet.dst} from {gw.ip}",
                              f"{packet.dst} is a private address no upstream router knows: host unreachable "
                              f"(ICMP type 3 code 1 back to {packet.src})"))
            self._hop(run, ev, ROOT, steps, goal)
            err = IPv4(src=gw.ip, dst=packet.src, payload=icmp_error(ICMPType.DEST_UNREACH, UnreachCode.HOST,
                                                                     packet))
            if isinstance(packet.payload, ICMP) and packet.payload.type not in (ICMPType.ECHO_REQUEST,
                                                                                ICMPType.ECHO_REPLY):
                return []
            return self._send_local(OUTSIDE, ROOT, err, run, goal)
        replies = self._internet(packet, steps, run, goal, target)
        self._hop(run, ev, INTERNET, steps, goal)
        out: list[_Event] = []
        for rp in replies:
            out.extend(self._send_local(OUTSIDE, ROOT, rp, run, goal))
        return out

    def _transmit(self, host: str, ns: str, decision: RouteDecision, packet: IPv4, steps: list[Step],
                  st: IpStack | None = None) -> list[_Event]:
        """``packet`` out of namespace ``ns`` (whose IP stack is ``st``, when the caller has it)."""
        if st is None:
            st = self.stack(host, ns)
        tx = st.transmit(decision, packet)
        steps.append(tx.step)
        if not tx.arp:  # the same transmit (the stack's remembered one) goes to the same peer
            got = self._sent.get(id(tx))
            if got is not None and got[0] is tx:
                return list(got[1])
            sent = self._send_from(End(Kind.NS, host, ns, tx.dev), tx.frame)
            if len(self._sent) >= _DONE_MAX:
                self._sent.clear()
            self._sent[id(tx)] = (tx, tuple(sent))
            return sent
        end = End(Kind.NS, host, ns, tx.dev)
        if tx.arp:
            key = (host, ns, tx.next_hop)
            first = key not in self._pending
            frame_of_packet = Ethernet(dst=Mac(0), src=st.mac_of(tx.dev) or Mac(0), payload=packet)
            self._pending.setdefault(key, []).append(frame_of_packet)
            return self._send_from(end, tx.frame) if first else []
        return self._send_from(end, tx.frame)

    def _send_local(self, host: str, ns: str, packet: IPv4, run: _Run, goal: tuple[int, int] | None, *,
                    origin: bool = False, check_mtu: bool = False, related: CtRef | None = None) -> list[_Event]:
        """A packet the namespace itself sends: the output route, OUTPUT and POSTROUTING.
        ``origin``: the probe's own request, whose system call fails when it cannot leave (also
        when, sized, it is larger than the out device's MTU: EMSGSIZE, before any hook);
        ``check_mtu``: that check alone. ``related``: the conntrack attachment the packet (an ICMP
        error about a forwarded one) starts with."""
        st = self.stack(host, ns)
        steps: list[Step] = []
        decision = st.route_from(packet)
        if isinstance(decision, Unreachable):
            steps.append(decision.step)
            if origin:
                run.errno = decision.errno
                steps.append(Step(StepKind.DROP, f"no route to {packet.dst}", f"sendmsg: {decision.errno}"))
            self._hop_local(run, host, ns, packet, steps, goal)
            return []
        steps.append(decision.step)
        if (origin or check_mtu) and run.size is not None:
            mtu = self._dev_mtu(host, ns, decision.dev)
            length = ip_length(packet)
            if mtu is not None and length > mtu:
                run.errno, run.local_mtu = "Message too long", mtu
                steps.append(_local_error_step(length, decision.dev, mtu))
                self._hop_local(run, host, ns, packet, steps, goal)
                return []
        nf = self.netfilter(host, ns)
        if nf is not None:
            res = nf.traverse((Hook.OUTPUT, Hook.POSTROUTING), packet,
                              self._ctx_of(host, ns, out_dev=decision.dev, ct=related))
            steps.extend(res.steps)
            if res.verdict is not NfVerdict.ACCEPT:  # (not .accepted: a property's call)
                if origin:
                    run.errno = "Operation not permitted"  # NF_DROP on ip_local_out: -EPERM
                self._hop_local(run, host, ns, packet, steps, goal)
                return []
            if res.packet is not packet:
                run.translated(packet, res.packet, goal)
            packet = res.packet
        out = self._transmit(host, ns, decision, packet, steps, st)
        self._hop_local(run, host, ns, packet, steps, goal)
        return out

    def _hop_local(self, run: _Run, host: str, ns: str, packet: IPv4, steps: list[Step],
                   goal: tuple[int, int] | None) -> None:
        got = self._locals.get(id(packet))
        if got is None or got[0] is not packet:  # the same frame and end for the same packet (held)
            got = (packet, _Event(End(Kind.NS, host, ns, "(local)"), Ethernet(dst=Mac(0), src=Mac(0), payload=packet)))
            if len(self._locals) >= _DONE_MAX:
                self._locals.clear()
            self._locals[id(packet)] = got
        ev = got[1]
        if ev.end.host != host or ev.end.element != ns:  # the same packet sent from another namespace
            ev = _Event(End(Kind.NS, host, ns, "(local)"), ev.frame)
        self._hop(run, ev, ns, steps, goal)

    def _local_delivery(self, host: str, ns: str, packet: IPv4, steps: list[Step], run: _Run,
                        goal: tuple[int, int] | None, target: str) -> list[IPv4]:
        """A packet for one of the namespace's addresses: the kernel answers pings, the metadata
        proxy answers HTTP on its port, other ports reset."""
        here = f"{host}/{ns or 'root'}"
        followed = False
        if goal is not None and goal[0] >= 0:  # (none is followed in a boot: nothing of it is read)
            got = self._delivered.get(id(packet))
            if got is None or got[0] is not packet:  # (:meth:`_delivered_of`: once per packet object)
                got = self._delivered_of(packet)
            followed = run.follows_key(got[1], goal)
            if followed and run.delivered_at and target != here:
                run.replied = True
                run.failed = run.failed or got[2]
                steps.append(got[3])
                return []
        p = packet.payload
        if followed and not run.delivered_at and isinstance(p, ICMP) and p.type == ICMPType.DEST_UNREACH \
                and p.code == UnreachCode.FRAG_NEEDED:  # the sender learns its packet was too big
            run.replied = True
            run.failed = run.failed or _failure_of(packet)
            steps.append(Step(StepKind.DELIVER, str(packet.dst), f"the ICMP error reached the sender: {run.failed}"))
            return []
        if followed and not run.delivered_at:
            run.delivered_at = here
            run.reply_start = len(run.hops) + 1
        if isinstance(p, ICMP) and p.type == ICMPType.ECHO_REQUEST:
            steps.append(Step(StepKind.REPLY, "icmp echo", f"{ns or host} answers the ping"))
            rep = echo_reply(Ethernet(dst=Mac(0), src=Mac(0), payload=packet))
            return [rep.payload] if isinstance(rep.payload, IPv4) else []
        if isinstance(p, TCP) and p.flags & TCPFlag.SYN and not p.flags & TCPFlag.ACK:
            if p.dport in METADATA_PORTS and (ns.startswith("qrouter-") or p.dport == 8775):
                steps.append(Step(StepKind.REPLY, f"tcp/{p.dport}", "the metadata proxy accepts the connection"))
                return [_tcp_reply(packet, TCPFlag.SYN | TCPFlag.ACK)]
            steps.append(Step(StepKind.REPLY, f"tcp/{p.dport}", "nothing listens: reset"))
            return [_tcp_reply(packet, TCPFlag.RST | TCPFlag.ACK)]
        if isinstance(p, TCP) and followed and not isinstance(p.payload, Raw):
            # a segment of no connection (an ACK, a FIN, a SYN-ACK): the kernel resets (RFC 793)
            listening = p.dport in METADATA_PORTS and (ns.startswith("qrouter-") or p.dport == 8775)
            seg = reset_for(p, listening=listening)
            if seg is not None:
                steps.append(Step(StepKind.REPLY, f"tcp/{p.dport}", "no connection: reset"))
                return [IPv4(src=packet.dst, dst=packet.src, ttl=64, payload=seg)]
        if isinstance(p, TCP) and isinstance(p.payload, Raw):
            path = http_get_path(p.payload.data)
            if path is not None:
                resp = self.metadata.get(packet.src, path)
                steps.append(Step(StepKind.REPLY, f"GET {path}", f"metadata: {resp.status}"))
                return [_tcp_reply(packet, TCPFlag.ACK | TCPFlag.PSH, resp.to_bytes())]
        steps.append(Step(StepKind.DELIVER, str(packet.dst), "delivered to the namespace"))
        return []

    def _delivered_of(self, packet: IPv4) -> tuple[IPv4, _FollowInfo, str, Step]:
        """What :meth:`_local_delivery` reads of ``packet`` to tell whether it is the probe's answer
        reaching the sender, remembered by the packet (held: its id is the key; each is a function
        of the packet alone): what following it reads (:func:`_follow_info`, which
        :meth:`_Run.follows_key` compares as :meth:`_Run.follows_frame` does), what it says of the
        exchange (:func:`_failure_of`) and the step saying it reached the sender."""
        got = (packet, _follow_info(Ethernet(dst=Mac(0), src=Mac(0), payload=packet)), _failure_of(packet),
               Step(StepKind.DELIVER, str(packet.dst), "the reply reached the sender"))
        if len(self._delivered) >= _DONE_MAX:
            self._delivered.clear()
        self._delivered[id(packet)] = got
        return got

    def _internet(self, packet: IPv4, steps: list[Step], run: _Run, goal: tuple[int, int] | None,
                  target: str) -> list[IPv4]:
        got = self._answers.get(id(packet))
        if got is None or got[0] is not packet:  # the same packet (object) is answered the same
            got = self._answers_of(packet)
        if goal is not None and goal[0] >= 0 and not run.delivered_at and run.follows_key(got[3], goal):
            run.delivered_at = got[2]
            run.reply_start = len(run.hops) + 1
        steps.append(got[1])
        return list(got[4])

    def _answers_of(self, packet: IPv4) -> tuple[IPv4, Step, str, _FollowInfo, tuple[IPv4, ...]]:
        """What the internet makes of ``packet`` (:meth:`_internet`), remembered by the packet
        (held): its step, where it was delivered, what following it reads, and the answers (a
        function of the packet alone)."""
        p = packet.payload
        answers: tuple[IPv4, ...] = ()
        if isinstance(p, ICMP) and p.type == ICMPType.ECHO_REQUEST:
            rep = echo_reply(Ethernet(dst=Mac(0), src=Mac(0), payload=packet))
            answers = (rep.payload,) if isinstance(rep.payload, IPv4) else ()
        elif isinstance(p, TCP) and p.flags & TCPFlag.SYN:
            answers = (_tcp_reply(packet, TCPFlag.SYN | TCPFlag.ACK),)
        got = (packet, Step(StepKind.DELIVER, str(packet.dst), f"reached {packet.dst} on the internet"),
               f"{INTERNET} {packet.dst}", _follow_info(Ethernet(dst=Mac(0), src=Mac(0), payload=packet)), answers)
        if len(self._answers) >= _DONE_MAX:
            self._answers.clear()
        self._answers[id(packet)] = got
        return got

    # ---------------------------------------------------------------------------- entry points

    def _probe_from_outside(self, dst: str, *, proto: str, dport: int, ident: int, size: int | None = None) -> Trace:
        if not self.externals:
            raise InvalidInput("this cloud has no external network to come from")
        try:
            dst_ip = _ip_address(dst)
        except ValueError:
            raise InvalidInput(f"{dst!r}: from the outside, give an address (a floating IP)") from None
        if not isinstance(dst_ip, IPv4Address):
            raise InvalidInput(f"{dst!r} is not an IPv4 address")
        ext = next((e for e in self.externals if dst_ip in e.gateway.network), self.externals[0])
        src_ip = ext.gateway.ip
        if proto not in ("icmp", "tcp"):
            raise InvalidInput(f"from the outside: icmp or tcp, not {proto!r}")
        goal = (1, ident) if proto == "icmp" else (6, ident)
        key = (proto, src_ip, dst_ip, ident, dport)
        packet = _OUTSIDE_PACKETS.get(key)  # the same (immutable) packet for the same probe
        if packet is None:
            if proto == "icmp":
                packet = IPv4(src=src_ip, dst=dst_ip, ttl=64,
                              payload=ICMP(type=ICMPType.ECHO_REQUEST, id=ident, seq=1))
            else:
                packet = IPv4(src=src_ip, dst=dst_ip, ttl=64,
                              payload=TCP(sport=ident, dport=dport, seq=1, flags=TCPFlag.SYN))
            if len(_OUTSIDE_PACKETS) >= 4096:
                _OUTSIDE_PACKETS.clear()
            _OUTSIDE_PACKETS[key] = packet
        run = _Run(size=size)
        packet = _sized_packet(packet, size)
        events = deque(self._send_local(OUTSIDE, ROOT, packet, run, goal, check_mtu=size is not None))
        # a floating IP is no guest's own address: the first guest the request reaches is its target
        self._run(events, run, goal, self._target_of(dst_ip))
        trace = _verdict(run, str(dst_ip))
        if run.errno:
            trace = replace(trace, verdict=replace(trace.verdict, detail=_local_error(proto, run)))
        return _with_size(trace, packet, size)

    def _target_of(self, ip: IPv4Address) -> str:
        want = ip._ip  # type: ignore[attr-defined]
        for n, g in self.guests.items():
            # a lease's address compared by its integer slot: no Python-level __int__/__eq__ per guest
            lease = g.lease
            if lease is not None and lease.address._ip == want:  # type: ignore[attr-defined]
                return n
        return ""

    def boot(self, only: Iterable[str] | None = None) -> dict[str, str | None]:
        """Every guest (or the ``only`` ones, in the world's order) runs its DHCP client through
        the plumbing; returns each guest's address. :attr:`boot_hops` keeps, per guest, the hops
        its DHCP exchange took. The DISCOVER is sent; the loop carries the rest (the guest answers
        the OFFER with its REQUEST and binds on the ACK)."""
        chosen = None if only is None else set(only)
        with paused():
            for name, guest in self.guests.items():
                if chosen is not None and name not in chosen:
                    continue
                spec = self.specs[name]
                hops: list[Hop] = []
                self.boot_hops[name] = hops
                events = deque(self._send_from(End(Kind.GUEST, spec.host, name, "eth0"), guest.discover()))
                self._run(events, _Run(side=hops), None, name)
        return {n: (str(g.address) if g.address else None) for n, g in self.guests.items()}

    # ---------------------------------------------------------------------------- refresh

    def refresh(self, hosts: Iterable[HostState] = (), *, guests: Iterable[GuestSpec] | None = None,
                externals: Iterable[ExternalNet] | None = None, uplinks: Iterable[Uplink] | None = None,
                tunnel_ips: Mapping[str, IPv4Address] | None = None, network_hosts: frozenset[str] | None = None,
                gone: Iterable[str] = ()) -> Refreshed:
        """Apply a change: ``hosts`` are the new states of the hosts that changed (others keep
        theirs, untouched), ``guests`` the instances now (None: the same), ``gone`` hosts that no
        longer exist; ``externals``, ``uplinks``, ``tunnel_ips`` and ``network_hosts`` as for the
        constructor (None: unchanged).

        What was booted stays booted: a changed host's elements are built from its new state and
        take over what the old ones learned (MAC tables and learned flows on ports that remain,
        neighbours on devices that remain, conntrack entries moved with their ports' zones, MAC
        entries and learned flows moved with their networks' local VLANs when the planner
        renumbered them); new guests boot, removed ones go (with what was learned of their MACs
        and addresses), and guests whose DHCP answer changed boot again. A refreshed world that
        has not been probed traces as one built and booted from scratch, but for what a host new to
        a network would have learned of the guests booted there before it joined: a world built
        anew boots them with that host already on the network (their DHCP broadcasts reach its
        br-int, which learns their MACs), the refreshed one as real hosts saw it, before (a trace
        there then says "broadcast" where the other says "learned ... at patch-tun"). Raises
        :class:`StaleWorld` when a change cannot be followed (one local VLAN split in two) or needs
        a host state the world no longer holds (a loaded world): build the world anew then."""
        with paused():
            return self._refresh({h.name: h for h in hosts}, guests, externals, uplinks, tunnel_ips, network_hosts,
                                 set(gone))

    def _refresh(self, given: dict[str, HostState], guests: Iterable[GuestSpec] | None,
                 externals: Iterable[ExternalNet] | None, uplinks: Iterable[Uplink] | None,
                 tunnel_ips: Mapping[str, IPv4Address] | None, network_hosts: frozenset[str] | None,
                 gone_set: set[str]) -> Refreshed:
        new_specs = {g.name: g for g in guests} if guests is not None else dict(self.specs)
        removed = [n for n, g in self.specs.items() if not _same_guest(g, new_specs.get(n))]
        added = [n for n, g in new_specs.items() if not _same_guest(self.specs.get(n), g)]
        new_ext = tuple(externals) if externals is not None else self.externals
        new_up = tuple(uplinks) if uplinks is not None else tuple(self.uplinks.values())
        outside_changed = new_ext != self.externals or new_up != tuple(self.uplinks.values())
        guests_moved = {self.specs[n].host for n in removed} | {new_specs[n].host for n in added}
        ext_moved = {e.host for e in (*self.externals, *new_ext)} if new_ext != self.externals else set()
        touched = (set(given) | guests_moved | ext_moved) - gone_set
        raw: dict[str, HostState] = {}
        for name in touched:
            if name in given:
                raw[name] = given[name]
            elif name in self._raw:
                raw[name] = self._raw[name]  # StaleWorld from a loaded world
        if not raw and not gone_set and not outside_changed and not removed and not added:
            self._retarget(tunnel_ips, network_hosts)
            return Refreshed()
        states = {n: self._with_outside_port(h, new_ext) if new_ext else h for n, h in raw.items()}
        if new_ext or new_up:
            if outside_changed or OUTSIDE not in self.hosts:
                states[OUTSIDE] = self._outside_host(new_ext, new_up)
        elif OUTSIDE in self.hosts:
            gone_set.add(OUTSIDE)
        for n in [n for n in states if n != OUTSIDE and n in self.hosts and n not in guests_moved
                  and n not in ext_moved and self._raw.get(n) is raw[n]]:
            del states[n]  # given as it was
        vlans = self._vlan_moves(states)  # may refuse: nothing is changed yet
        self._retarget(tunnel_ips, network_hosts)
        self.externals = new_ext
        self.uplinks = {_uplink_dev(u): u for u in new_up}
        # take the changed hosts out, keeping their elements to learn from
        old = self._take_out(set(states) | gone_set)
        dropped_macs = {self.guests[n].mac for n in removed}
        dropped_ips = {ip for n in removed for ip in (self.guests[n].ip, self.specs[n].fixed_ip) if ip is not None}
        for n in removed:
            self.guests.pop(n, None)
            self.boot_hops.pop(n, None)
            for key in [k for k in self._guest_pending if k[0] == n]:
                del self._guest_pending[key]
        self.specs = new_specs
        self.guests = {n: (self.guests[n] if n in self.guests else Guest(n, Mac.parse(g.mac)))
                       for n, g in new_specs.items()}
        hosts_now = {k: v for k, v in self.hosts.items() if k not in states and k not in gone_set} \
            if not isinstance(self.hosts, _Absent) else None
        if hosts_now is not None:
            hosts_now.update(states)
            self.hosts = hosts_now
            self._raw = {k: v for k, v in self._raw.items() if k not in gone_set} | raw
        else:
            assert isinstance(self.hosts, _Absent) and isinstance(self._raw, _Absent)
            names = [k for k in self.hosts if k not in gone_set]
            self.hosts = _PartlyAbsent(names + [n for n in states if n not in names],
                                       {k: v for k, v in self.hosts.known().items() if k not in gone_set} | states)
            self._raw = _PartlyAbsent([n for n in names if n != OUTSIDE] + [n for n in raw if n not in names],
                                      {k: v for k, v in self._raw.known().items() if k not in gone_set} | raw)
        rewire(self.topo, tuple(states.values()), {(g.host, g.device): g.name for g in new_specs.values()})
        self._wire_outside(states)
        self._attached.clear()
        self._pruners.clear()
        self._forget_hops()
        live = set(self.topo.nics)
        for fdb in self._seg_fdb.values():
            for mac in [m for m, e in fdb.items() if e not in live]:
                del fdb[mac]
        for h in states.values():
            self._find_dhcp_servers(h, old.dhcp)
            self._rebuild(h, old, vlans.get(h.name, {}))
        reboot = self._dhcp_changed(old.dhcp, states)
        self._forget(dropped_macs, dropped_ips)
        self.metadata = MetadataEndpoint(MetadataInstance(g.fixed_ip, g.instance_number, g.name)
                                         for g in new_specs.values() if g.fixed_ip is not None)
        again = [n for n in self.guests if n in added or n in reboot]
        for n in again:
            if n not in added:
                self.guests[n] = Guest(n, Mac.parse(new_specs[n].mac))
        self._pruners.clear()  # they index the guests' ports by the guests' MACs
        self._forget_hops()
        self.boot(again)
        return Refreshed(tuple((n, str(self.guests[n].address) if self.guests[n].address else None) for n in again),
                         tuple(removed), tuple(sorted(states)))

    def _retarget(self, tunnel_ips: Mapping[str, IPv4Address] | None, network_hosts: frozenset[str] | None) -> None:
        if network_hosts is not None:
            self.network_hosts = network_hosts
        if tunnel_ips is not None and dict(tunnel_ips) != self.topo.tunnel_ips:
            self.topo.tunnel_ips = dict(tunnel_ips)
            self.topo.changed()

    def _vlan_moves(self, states: Mapping[str, HostState]) -> dict[str, dict[int, int | None]]:
        """Per changed host, how its local VLANs were renumbered (old -> new; None: that network
        left the host), read from the tags of the ports its bridges keep. Learned MACs and flows
        are keyed on them. Raises :class:`StaleWorld` when one old VLAN splits into several."""
        out: dict[str, dict[int, int | None]] = {}
        for name, h in states.items():
            moves: dict[int, int | None] = {}
            seen: dict[int, int | None] = {}
            for br in _ovs_bridges(h):
                if (name, br.name) not in self._ovs:
                    continue
                now = {p.name: p.tag for p in br.ports}
                for port in self.bridge(name, br.name).ports:
                    if port.tag is None:
                        continue
                    new = now.get(port.name)
                    if port.tag in seen and seen[port.tag] is not None and new is not None and seen[port.tag] != new:
                        raise StaleWorld(f"{name} {br.name}: the ports of VLAN {port.tag} now have VLANs "
                                         f"{seen[port.tag]} and {new}: the learned state cannot follow")
                    if new is not None or port.tag not in seen:
                        seen[port.tag] = new
            moves = {old: new for old, new in seen.items() if new != old}
            if moves:
                out[name] = moves
        return out

    def _take_out(self, names: set[str]) -> _Old:
        out = _Old(_take(self._stacks, names), _take(self._nf, names), _take(self._ovs, names),
                   _take(self._lbr, names))
        for dkey in [k for k in self._dhcp if k[0] in names]:
            out.dhcp[dkey] = self._dhcp.pop(dkey)
        self._forget_hops()  # (the hook contexts hold the addresses dropped here)
        for akey in [k for k in self._ns_addrs if k[0] in names]:
            del self._ns_addrs[akey]
        for name in names:
            self._root_addrs.pop(name, None)
        for ukey in [k for k in self._unbuilt if k[1] in names]:
            del self._unbuilt[ukey]
        for pkey in [k for k in self._pending if k[0] in names]:
            del self._pending[pkey]
        for name in names:
            unwire(self.topo, name)
        return out

    def _rebuild(self, h: HostState, old: _Old, vlans: Mapping[int, int | None]) -> None:
        """Build ``h``'s elements that existed before, taking over what the old ones learned
        (moved to the renumbered local ``vlans``)."""
        name = h.name
        namespaces = {ns.name: ns for ns in h.namespaces}
        for (host, ns), st in old.stacks.items():
            if host != name or (ns not in namespaces and ns != ROOT):
                continue
            new = _new_stack(h, ns)
            for (dev, addr), hw in st.learned().items():
                if dev in new.links:
                    new.learn(dev, addr, hw)
            self._stacks[(name, ns)] = new
        for (host, ns), nf in old.nf.items():
            state = namespaces.get(ns)
            if host != name or nf is None or state is None or not state.iptables:
                continue
            if state.iptables is nf.ruleset_if_held():
                self._nf[(name, ns)] = nf
                continue
            new_nf = Netfilter(state.iptables, nf.conntrack, previous=nf)
            moves = _zone_moves(nf.zones(), new_nf.zones())
            if moves:
                new_nf.conntrack.rezone(moves)
            self._nf[(name, ns)] = new_nf
        bridges = {b.name: b for b in _ovs_bridges(h)}
        for (host, br), sim in old.ovs.items():
            if host != name or br not in bridges:
                continue
            flows = h.ovs.flows_of(br)
            dump, show = (flows.flows, flows.ports) if flows is not None else (None, None)
            if not vlans and sim.built_from(bridges[br], dump, show):
                self._ovs[(name, br)] = sim  # the same rows and flows: kept as it is
                continue
            fresh = OvsBridgeSim(bridges[br], dump, show)
            fresh.take_over(sim, vlans)
            self._ovs[(name, br)] = fresh
        lbrs = {b.name: b for b in h.linux_bridges or ()}
        root = h.namespace(ROOT)
        links = {lk.name: lk for lk in root.links or ()} if root is not None else {}
        for (host, br), lsim in old.lbr.items():
            if host != name or br not in lbrs:
                continue
            new_l = _new_linux_bridge(h, br, links)
            if new_l.info == lsim.info and new_l.port_info == lsim.port_info:
                self._lbr[(name, br)] = lsim  # the same ports: kept as it is
                continue
            new_l.take_over(lsim)
            self._lbr[(name, br)] = new_l

    def _dhcp_changed(self, before: Mapping[tuple[str, str, str], DhcpServer],
                      states: Mapping[str, HostState]) -> set[str]:
        """The guests whose DHCP answer differs now (a changed host entry, or changed options)."""
        by_mac = {g.mac: n for n, g in self.guests.items()}
        out: set[str] = set()
        for key in set(before) | {k for k in self._dhcp if k[0] in states}:
            a, b = before.get(key), self._dhcp.get(key)
            if a == b:
                continue
            if a is None or b is None or replace(a, hosts=()) != replace(b, hosts=()):
                macs = {Mac.parse(h.mac) for srv in (a, b) if srv is not None for h in srv.hosts}
            else:
                macs = {Mac.parse(h.mac) for h in set(a.hosts) ^ set(b.hosts)}
            out |= {by_mac[m] for m in macs if m in by_mac}
        return out

    def _forget(self, macs: set[Mac], addresses: set[IPv4Address]) -> None:
        """Drop what the elements learned of removed guests: their ``macs`` and the connections of
        their ``addresses`` (their DHCP exchange's)."""
        for nf in self._nf.loaded().values():
            if nf is not None and addresses:
                nf.conntrack.forget(addresses)
        if not macs:
            return
        for sim in self._ovs.loaded().values():
            sim.forget(macs)
        for lsim in self._lbr.loaded().values():
            lsim.forget(macs)
        for st in self._stacks.loaded().values():
            st.forget(macs)
        for g in self.guests.values():
            g.forget(macs)
        for fdb in self._seg_fdb.values():
            for m in macs & set(fdb):
                del fdb[m]

    def _probe_from_host(self, name: str, dst: str, *, proto: str, dport: int, ident: int,
                         size: int | None = None) -> Trace:
        """``ping``/``nc`` run in a host's root namespace: the output route picks the source,
        then OUTPUT and POSTROUTING; a DROP there fails the system call (EPERM)."""
        if name not in self.hosts or name == OUTSIDE:
            raise InvalidInput(f"no host named {name!r} (hosts: {', '.join(sorted(set(self.hosts) - {OUTSIDE}))})")
        dst_ip = self._address_of(dst)
        st = self.stack(name, ROOT)
        decision = st.route(dst_ip)
        tool = "ping" if proto == "icmp" else "connect"
        if isinstance(decision, Unreachable):
            hop = Hop(name, "root", "(local)", steps=(decision.step,))
            return Trace((hop,), Verdict(VerdictKind.DROPPED, DropReason.NO_ROUTE, f"{name} root",
                                         detail=f"{tool}: {decision.errno}"))
        src_ip = decision.src or IPv4Address(0)
        if proto == "icmp":
            packet = IPv4(src=src_ip, dst=dst_ip, ttl=64, payload=ICMP(type=ICMPType.ECHO_REQUEST, id=ident, seq=1))
            goal = (1, ident)
        elif proto == "tcp":
            packet = IPv4(src=src_ip, dst=dst_ip, ttl=64, payload=TCP(sport=ident, dport=dport, seq=1,
                                                                      flags=TCPFlag.SYN))
            goal = (6, ident)
        else:
            raise InvalidInput(f"from a host: icmp or tcp, not {proto!r}")
        target = dst if dst in self.guests else self._target_of(dst_ip)
        run = _Run(size=size)
        packet = _sized_packet(packet, size)
        events = deque(self._send_local(name, ROOT, packet, run, goal, origin=True))
        self._run(events, run, goal, target)
        trace = _verdict(run, target or str(dst_ip))
        if run.local_mtu:
            return _with_size(replace(trace, verdict=replace(trace.verdict, detail=_local_error(proto, run))),
                              packet, size)
        if size is not None:
            trace = _with_size(trace, packet, size)
        if run.errno:
            call = "sendmsg" if proto == "icmp" else "connect"
            v = trace.verdict
            trace = replace(trace, verdict=replace(v, detail=f"{tool}: {call}: {run.errno} ({v.detail})"
                                                   if tool == "ping" else f"{call}: {run.errno} ({v.detail})"))
        return trace

    def _address_of(self, dst: str) -> IPv4Address:
        try:
            dst_ip = self.guests[dst].ip if dst in self.guests else _ip_address(dst)
        except ValueError:
            raise InvalidInput(f"{dst!r} is neither an instance nor an IP address") from None
        if not isinstance(dst_ip, IPv4Address):
            raise InvalidInput(f"{dst!r} is not an IPv4 address or an instance with one")
        return dst_ip

    def probe(self, src: str, dst: str, *, proto: str = "icmp", dport: int = 22, ident: int = 41000,
              src_ip: str | IPv4Address | None = None, src_mac: str | Mac | None = None,
              dst_mac: str | Mac | None = None, sport: int | None = None, tcp_flags: str | None = None,
              at: str | None = None, vlan: int | None = None, size: int | None = None) -> Trace:
        """One packet from ``src`` to ``dst`` (a guest name or an IP address), traced, with its
        reply. ``src`` is a guest's name, ``outside``, or ``host:<name>`` for a host's root
        namespace.

        ``proto``: icmp (an echo request), tcp (a SYN), udp, http (a GET to the metadata
        address), arp (the instance's request for ``dst``, an address, and the reply: success when
        the MAC reached it) or dhcp (the instance's DISCOVER to dnsmasq and the OFFER back; ``dst``
        is not used). The packet can be given field by field (as ``ofproto/trace`` takes a flow):
        ``src_ip`` and ``src_mac`` (spoofed: the anti-spoofing rules and flows see them),
        ``dst_mac`` (no ARP then), ``sport``, ``tcp_flags`` (tcpdump's letters: S, SA or S., R,
        F, PA...; a segment without SYN meets conntrack and the peer as it is), and ``at``:
        ``HOST:DEVICE`` (or ``HOST:ELEMENT:DEVICE``) injects the frame where it enters that
        device's bridge (or namespace), tagged ``vlan`` when given; ``src`` is then an instance
        (its MAC and address are the defaults) or an address.

        ``size``: the ICMP echo data's length as ``ping -s`` takes it (or the TCP or UDP
        payload's), the packet sent with DF set (``ping -M do``). Every device then checks it
        against its MTU as the kernel does: the sender's own device first (``ping: local error:
        message too long, mtu=M``), an OVS or Linux bridge port drops a larger frame silently, a
        tunnel's packet with its headers must fit the underlay's MTU, a router answers a larger
        packet with ICMP fragmentation needed; each ends the trace with :attr:`DropReason.MTU`.
        None: no MTU is checked (nor is anything printed of sizes)."""
        self._check_wiring()  # (before any hop: a probe from the outside or a host records one before its run)
        if size is not None:
            if proto not in ("icmp", "tcp", "udp"):
                raise InvalidInput(f"--size: only with --proto icmp, tcp or udp (not {proto})")
            biggest = 65495 if proto == "tcp" else 65507
            if not 0 <= size <= biggest:
                raise InvalidInput(f"--size {size}: a {proto} payload is 0 to {biggest} bytes")
        if proto not in PROTOCOLS:
            raise InvalidInput(f"unknown protocol {proto!r} ({', '.join(PROTOCOLS[:-1])} or {PROTOCOLS[-1]})")
        if not 1 <= dport <= 65535:
            raise InvalidInput(f"--dport {dport}: a port is a number from 1 to 65535")
        if src_ip is None and src_mac is None and dst_mac is None and sport is None and tcp_flags is None \
                and at is None and vlan is None:  # nothing given (what packet_spec makes of it: no field)
            pk, given = _NO_SPEC, False
        else:
            pk = packet_spec(proto, src_ip=src_ip, src_mac=src_mac, dst_mac=dst_mac, sport=sport,
                             tcp_flags=tcp_flags, at=at, vlan=vlan)
            given = pk.given()
        if pk.at is not None or proto in L2_PROTOCOLS:
            return self._probe_exact(src, dst, proto, dport, ident, pk, size)
        if given and (src == OUTSIDE or src.startswith(HOST_PREFIX)):
            raise InvalidInput(f"{src}: the packet's fields can be given from an instance, or with --at")
        if src == OUTSIDE:
            return self._probe_from_outside(dst, proto=proto, dport=dport, ident=ident, size=size)
        if src.startswith(HOST_PREFIX):
            return self._probe_from_host(src[len(HOST_PREFIX):], dst, proto=proto, dport=dport, ident=ident,
                                         size=size)
        spec = self.specs.get(src)
        if spec is None:
            raise InvalidInput(f"no instance named {src!r}")
        guest = self.guests[src]
        own = guest.ip
        if own is None:
            raise InvalidInput(f"{src} has no address: its DHCP got no answer ('neutrino diagnose {src} - --proto "
                               "dhcp' says why)")
        dst_ip = self._address_of(dst)
        target = dst if dst in self.guests else self._target_of(dst_ip)
        if dst_ip == own:
            if given:
                raise InvalidInput(f"{dst_ip} is {src}'s own address: the packet never leaves it (over lo, "
                                   "nothing of it can be given)")
            return _loopback(spec.host, src, dst_ip, proto=proto, dport=dport)
        hop = guest.next_hop(dst_ip)
        if hop is None:
            raise InvalidInput(f"{src} has no route to {dst_ip}")
        placeholder = Mac(0)
        port = pk.sport if pk.sport is not None else ident
        if proto == "icmp":
            frame = guest.ping(dst_ip, dst_mac=placeholder, id=ident)
            goal = (1, ident)
        elif proto == "tcp":
            if pk.flags is None:
                frame = guest.tcp_syn(dst_ip, dport, dst_mac=placeholder, sport=port)
            else:
                frame = guest.tcp_segment(dst_ip, dport, dst_mac=placeholder, sport=port, flags=pk.flags)
            goal = (6, port)
        elif proto == "http":
            frame = guest.http_get("/latest/meta-data/instance-id", dst_mac=placeholder, dst=dst_ip, sport=port)
            goal = (6, port)
        elif proto == "udp":
            src_ip_ = guest.ip
            assert src_ip_ is not None
            frame = Ethernet(dst=placeholder, src=guest.mac,
                             payload=IPv4(src=src_ip_, dst=dst_ip, ttl=64,
                                          payload=UDP(sport=port, dport=dport, payload=Raw(data=b"neutrino"))))
            goal = (17, port)
        else:
            raise InvalidInput(f"unknown protocol {proto!r} (icmp, tcp, udp or http)")
        if given:
            frame = pk.spoof(frame)
        end = End(Kind.GUEST, spec.host, src, "eth0")
        run = _Run(sender=src, size=size)
        if size is not None:
            frame = _sized_frame(frame, size)
            length = ip_length(frame.payload) if isinstance(frame.payload, IPv4) else 0
            if length > guest.mtu:  # the guest's kernel refuses it: nothing leaves eth0, not even ARP
                run.local_mtu = guest.mtu
                refused = Hop(spec.host, src, "eth0", packet=summary(frame),
                              steps=(_local_error_step(length, "eth0", guest.mtu),), frame=frame)
                verdict = Verdict(VerdictKind.DROPPED, DropReason.MTU, f"{spec.host} {src}",
                                  detail=_local_error(proto, run))
                told = _described(frame, proto, pk) if given else ()
                return _with_size(Trace((refused,), verdict, packet=told), frame.payload, size)
        events: deque[_Event] = deque()
        hw = pk.dst_mac or guest.resolve(hop)
        if hw is None:
            self._guest_pending.setdefault((src, hop), []).append(frame)
            events.extend(self._send_from(end, guest.arp_request_for(hop)))
        else:
            events.extend(self._send_from(end, self._to_mac(frame, hw)))
        self._run(events, run, goal, target)
        told = _described(replace(frame, dst=hw or guest.resolve(hop) or frame.dst), proto, pk) if given else ()
        if hw is None and guest.resolve(hop) is None:
            return Trace(tuple(run.hops), Verdict(VerdictKind.DROPPED, DropReason.ARP_UNANSWERED, f"{spec.host} {src}",
                                                   detail=f"no answer to ARP for {hop}"), forks=_side(run), packet=told)
        # (the target's text is read only when the request was not delivered)
        trace = _verdict(run, target or ("" if run.delivered_at else str(dst_ip)))
        if told:  # (the verdict's trace has no packet fields: replacing them with none would copy it equal)
            trace = replace(trace, packet=told)
        if proto == "udp" and trace.reply is not None and not trace.reply.delivered and not trace.reply.hops:
            trace = replace(trace, reply=None)  # a datagram expects no answer
        if size is not None and isinstance(frame.payload, IPv4):
            trace = _with_size(trace, frame.payload, size)
        return trace

    # ------------------------------------------------------------------ packets given field by field

    def _probe_exact(self, src: str, dst: str, proto: str, dport: int, ident: int, pk: PacketSpec,
                     size: int | None = None) -> Trace:
        """An ARP or DHCP exchange, or a packet injected at a device (``pk.at``)."""
        guest: Guest | None = None
        spec = self.specs.get(src)
        if spec is not None:
            guest = self.guests[src]
        elif pk.at is None:
            raise InvalidInput(f"no instance named {src!r}" + (" (--proto arp and dhcp start at an instance, "
                                                               "or at a device with --at)"))
        start = self._end_at(pk.at) if pk.at is not None else None
        s_ip: IPv4Address | None = pk.src_ip
        if s_ip is None and guest is not None:
            s_ip = guest.ip
        if s_ip is None and guest is None and proto != "dhcp":
            s_ip = self._address_of(src)
        s_mac = pk.src_mac or (guest.mac if guest is not None else self._mac_of(s_ip) if s_ip is not None else None)
        if s_mac is None:
            raise InvalidInput(f"nothing in this cloud holds {s_ip or src}: give the source MAC (--src-mac)")
        if proto == "dhcp":
            return self._probe_dhcp(src, guest, start, s_mac, pk)
        if s_ip is None:
            raise InvalidInput(f"{src} has no address (did DHCP work?): give the source address (--src-ip)")
        dst_ip = self._address_of(dst)
        if proto == "arp":
            return self._probe_arp(src, guest, start, s_mac, s_ip, dst_ip, pk)
        assert start is not None and pk.at is not None
        target = dst if dst in self.guests else self._target_of(dst_ip)
        d_mac = pk.dst_mac
        if d_mac is None:
            via = guest.next_hop(dst_ip) if guest is not None and guest.ip is not None else None
            d_mac = self._mac_of(via or dst_ip)
            if d_mac is None:
                raise InvalidInput(f"nothing in this cloud holds {via or dst_ip}: give the destination MAC (--dst-mac)")
        port = pk.sport if pk.sport is not None else ident
        frame, goal = _frame(proto, s_mac, d_mac, s_ip, dst_ip, dport, port, ident, pk.flags)
        if size is not None:
            frame = _sized_frame(frame, size)
        if guest is not None and proto in ("tcp", "http"):
            guest.opened(dst_ip, 80 if proto == "http" else dport, port)
        if pk.vlan is not None:
            frame = push_vlan(frame, pk.vlan)
        run = _Run(sender=src if guest is not None else "", size=size)
        self._run(deque([_Event(start, frame)]), run, goal, target)
        trace = replace(_verdict(run, target or str(dst_ip)), packet=_described(frame, proto, pk, start))
        if proto == "udp" and trace.reply is not None and not trace.reply.delivered and not trace.reply.hops:
            trace = replace(trace, reply=None)
        ip4 = _ip(frame)
        if size is not None and ip4 is not None:
            trace = _with_size(trace, ip4, size)
        return trace

    def _end_at(self, at: str) -> End:
        """The end ``HOST:DEVICE`` (or ``HOST:ELEMENT:DEVICE``) names: where a frame enters the
        bridge that device is a port of (or, for a namespace's own device, the namespace)."""
        parts = at.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidInput(f"--at {at}: give HOST:DEVICE or HOST:ELEMENT:DEVICE (e.g. network:patch-int)")
        host, dev = parts[0], parts[-1]
        element = parts[1] if len(parts) == 3 else None
        if host not in self.hosts or host == OUTSIDE:
            raise InvalidInput(f"--at {at}: no host named {host!r} "
                               f"(hosts: {', '.join(sorted(set(self.hosts) - {OUTSIDE}))})")
        ends = {e for e in self.topo.wires if e.host == host and e.kind in (Kind.OVS, Kind.LBR, Kind.NS)}
        ends |= {End(Kind.OVS, t.host, t.bridge, t.port) for t in self.topo.tunnels if t.host == host}
        order = {Kind.OVS: 0, Kind.LBR: 1, Kind.NS: 2}
        found = sorted((e for e in ends if e.port == dev and (element is None or e.element == element
                                                               or (element == "root" and e.element == ROOT))),
                       key=lambda e: (order[e.kind], e.element))
        if not found:
            names = sorted({e.port for e in ends})
            close = difflib.get_close_matches(dev, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            where = f"{element} of {host}" if element else host
            raise InvalidInput(f"--at {at}: {where} has no device {dev!r} wired to anything{hint}")
        return found[0]

    def _mac_of(self, addr: IPv4Address) -> Mac | None:
        """The MAC of the guest or namespace device holding ``addr``."""
        for g in self.guests.values():
            if g.ip == addr:
                return g.mac
        states = self.hosts.known() if isinstance(self.hosts, _Absent) else self.hosts
        keys = set(self._stacks) | {(h.name, ns.name) for h in states.values() for ns in (*h.namespaces,)}
        for host, ns in sorted(keys):
            st = self.stack(host, ns)
            for dev in st.links:
                if any(a.ip == addr for a in st.addresses(dev)):
                    return st.mac_of(dev)
        return None

    def _probe_arp(self, src: str, guest: Guest | None, start: End | None, s_mac: Mac, s_ip: IPv4Address,
                   target: IPv4Address, pk: PacketSpec) -> Trace:
        """The ARP request for ``target`` and its answer: success when the reply reached the sender."""
        if guest is not None and target == guest.ip:
            raise InvalidInput(f"{target} is {src}'s own address: it asks nobody for it")
        frame = arp_request(s_mac, s_ip, target)
        if pk.dst_mac is not None:
            frame = replace(frame, dst=pk.dst_mac)
        if pk.vlan is not None:
            frame = push_vlan(frame, pk.vlan)
        goal = (ARP_GOAL, int(target))
        run = _Run(sender=src if guest is not None else "")
        where = self._sender_where(src, start)
        if start is None:
            assert guest is not None
            events = deque(self._send_from(End(Kind.GUEST, self.specs[src].host, src, "eth0"), frame))
        else:
            events = deque([_Event(start, frame)])
        self._run(events, run, goal, "")
        told = _described(frame, "arp", pk, start)

        def of(op: ARPOp) -> tuple[Hop, ...]:
            return tuple(h for h in run.hops if isinstance(h.frame, Ethernet)
                         and isinstance((a := _strip_vlans(h.frame).payload), ARP) and a.op == op)

        asked, answered = of(ARPOp.REQUEST), of(ARPOp.REPLY)
        if run.delivered_at or answered:
            at_ = run.delivered_at or "the network (an ARP responder)"
            if run.replied:
                reply = Trace(answered, Verdict(VerdictKind.DELIVERED, where="the sender", detail=run.answer))
            else:
                reply = Trace(answered, _dropped(_Run(drops=_drops(answered)), "the sender", reply=True))
            return Trace(asked, Verdict(VerdictKind.DELIVERED, where=at_), reply=reply, forks=_side(run), packet=told)
        for d in _drops(asked):
            v = _dropped(_Run(drops=[d]), str(target))
            if v.reason in (DropReason.ANTI_SPOOFING, DropReason.SECURITY_GROUP):
                return Trace(asked, v, forks=_side(run), packet=told)
        return Trace(asked, Verdict(VerdictKind.DROPPED, DropReason.ARP_UNANSWERED, where,
                                    detail=f"no answer to ARP for {target}"), forks=_side(run), packet=told)

    def _sender_where(self, src: str, start: End | None) -> str:
        if start is not None:
            return f"{start.host} {start.element or 'root'}"
        return f"{self.specs[src].host} {src}"

    def _probe_dhcp(self, src: str, guest: Guest | None, start: End | None, s_mac: Mac, pk: PacketSpec) -> Trace:
        """The client's DISCOVER to the DHCP servers and their OFFERs: success when an offer reached
        it (the address offered is the answer). The client's guest state is left as it was."""
        xid = guest.xid if guest is not None and s_mac == guest.mac else s_mac.value & 0xFFFFFFFF
        msg = DHCP(xid=xid, chaddr=s_mac, message_type=DHCPMessageType.DISCOVER,
                   client_id=b"\x01" + s_mac.value.to_bytes(6, "big"), param_request_list=GUEST_PARAMS)
        frame = dhcp_client_frame(msg, dst_mac=pk.dst_mac or BROADCAST)
        if pk.vlan is not None:
            frame = push_vlan(frame, pk.vlan)
        goal = (DHCP_GOAL, xid)
        run = _Run(sender=src if guest is not None else "")
        kept = guest.__dict__.copy() if guest is not None else None
        console = list(guest.console) if guest is not None else []
        if guest is not None:
            guest.state = DhcpState.SELECTING  # udhcpc again: it takes the offer
        try:
            if start is None:
                assert guest is not None
                events = deque(self._send_from(End(Kind.GUEST, self.specs[src].host, src, "eth0"), frame))
            else:
                events = deque([_Event(start, frame)])
            self._run(events, run, goal, "")
        finally:
            if guest is not None and kept is not None:
                guest.__dict__.clear()
                guest.__dict__.update(kept)
                guest.console = console
        told = _described(frame, "dhcp", pk, start)

        def of(kind: DHCPMessageType) -> tuple[Hop, ...]:
            return tuple(h for h in run.hops if isinstance(h.frame, Ethernet)
                         and (m := _dhcp_of(_strip_vlans(h.frame))) is not None and m.message_type == kind)

        asked, offered = of(DHCPMessageType.DISCOVER), of(DHCPMessageType.OFFER)
        if run.delivered_at:
            if run.replied:
                reply = Trace(offered, Verdict(VerdictKind.DELIVERED, where="the sender", detail=run.answer))
            else:
                reply = Trace(offered, _dropped(_Run(drops=_drops(offered)), "the sender", reply=True))
            return Trace(asked, Verdict(VerdictKind.DELIVERED, where=run.delivered_at), reply=reply,
                         forks=_side(run), packet=told)
        drops = _drops(asked)
        served = [d for d in drops if d[1].text.startswith("dnsmasq")]
        if served or drops:
            return Trace(asked, _dropped(_Run(drops=served[-1:] or drops), "a DHCP server"), forks=_side(run),
                         packet=told)
        return Trace(asked, Verdict(VerdictKind.DROPPED, DropReason.NO_REPLY, self._sender_where(src, start),
                                    detail="no DHCP server answered the DISCOVER"), forks=_side(run), packet=told)


def _ovs_bridges(h: HostState) -> tuple[Bridge, ...]:
    show = h.ovs.show
    return show.bridges if isinstance(show, OvsdbShow) else (show.bridges() if show else ())


def _new_stack(h: HostState, ns: str) -> IpStack:
    return IpStack(h.namespace(ns) or NamespaceState(ns))


def _new_bridge(h: HostState, name: str) -> OvsBridgeSim:
    br: Bridge = next(b for b in _ovs_bridges(h) if b.name == name)
    flows = h.ovs.flows_of(name)
    return OvsBridgeSim(br, flows.flows if flows else None, flows.ports if flows else None)


def _new_linux_bridge(h: HostState, name: str, links: Mapping[str, Link] | None = None,
                      info: BridgeInfo | None = None) -> LinuxBridgeSim:
    """Linux bridge ``name`` of ``h`` (``links``: the root namespace's links by name, ``info``: the
    bridge's row, if at hand)."""
    if info is None:
        info = next(b for b in h.linux_bridges or () if b.name == name)
    if links is None:
        root = h.namespace(ROOT)
        links = {lk.name: lk for lk in root.links or ()} if root is not None else {}
    ports = {}
    for dev in info.interfaces:
        lk = links.get(dev)
        ports[dev] = PortInfo(Mac.parse(lk.mac) if lk is not None and lk.mac else None)
    return LinuxBridgeSim(info, ports)


def _letter(end: End, network_host: bool, peer_element: str = "") -> str:
    """:func:`diagram_letter`, remembered by its arguments (it reads nothing else)."""
    got = _LETTERS.get((end, network_host, peer_element))
    if got is None:
        got = diagram_letter(end, network_host, peer_element)
        if len(_LETTERS) >= 65536:
            _LETTERS.clear()
        _LETTERS[(end, network_host, peer_element)] = got
    return got


_LETTERS: dict[tuple[End, bool, str], str] = {}


def _uplink_dev(u: Uplink) -> str:
    return f"up-{u.segment}"[:15]


def diagram_letter(end: End, network_host: bool, peer_element: str = "") -> str:
    """The letter the seeds' diagrams give the device a packet enters by (seed 000's section
    titles: instance A,B,C; br-int D,E; br-tun F,G; the network host's br-tun H,I; router M,N;
    external K,L; DHCP O,P; and J, the one they leave out, for the network host's br-int, whose
    section has no letters — seed 001's Figure 2 uses the same letters)."""
    dev, element = end.port, end.element
    if end.kind is Kind.GUEST:
        return ""
    if end.kind is Kind.LBR:
        if not element.startswith("qbr"):
            return ""  # the seeds' letters are for the firewall bridge; nova-network bridges have none
        return {"tap": "A", "qvb": "C"}.get(dev[:3], "B")
    if end.kind is Kind.OVS:
        if dev.startswith("qvo"):
            return "D"
        if dev == "patch-tun":  # the network host's br-int has the one letter the titles leave out
            return "J" if network_host else "E"
        if dev == "patch-int":
            return "I" if network_host else "F"
        if dev.startswith(("gre-", "vxlan-", "geneve-")):
            return "H" if network_host else "G"
        if dev.startswith("qg-") or (element == "br-ex" and dev.startswith("tap")):
            return "L"
        if dev.startswith("qr-") or (dev.startswith("tap") and peer_element.startswith("qrouter-")):
            return "M"
        if dev.startswith("tap") and peer_element.startswith("qdhcp-"):
            return "O"
        return ""
    if dev.startswith("qr-"):
        return "N"
    if dev.startswith("qg-"):
        return "K"
    if element.startswith("qdhcp-"):
        return "P"
    return ""


_DOCUMENTATION = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))


def _on_the_internet(addr: IPv4Address) -> bool:
    """Public addresses, and the documentation ranges that stand for the outside world here (a
    function of the address alone: answered once per address, by its integer)."""
    got = _INTERNET.get(addr._ip)  # type: ignore[attr-defined]
    if got is None:
        got = addr.is_global or any(addr in n for n in _DOCUMENTATION)
        if len(_INTERNET) >= 4096:
            _INTERNET.clear()
        _INTERNET[addr._ip] = got  # type: ignore[attr-defined]
    return got


_INTERNET: dict[int, bool] = {}


def _side(run: _Run) -> tuple[Trace, ...]:
    if not run.side:
        return ()
    return (Trace(tuple(run.side), Verdict(VerdictKind.DELIVERED, detail="ARP and other frames")),)


def _verdict(run: _Run, target: str) -> Trace:
    hops = tuple(run.hops)
    if run.delivered_at:
        request = hops[:run.reply_start] if run.reply_start > 0 else hops
        reply_hops = hops[len(request):]
        if run.replied and run.failed:
            reason = DropReason.REFUSED if run.failed.startswith(REFUSED) else DropReason.UNREACHABLE
            reply_verdict = Verdict(VerdictKind.DROPPED, reason, "the sender",
                                    detail=run.failed.removeprefix(REFUSED))
        elif run.replied:
            reply_verdict = Verdict(VerdictKind.DELIVERED, where="the sender")
        else:
            reply_verdict = _dropped(run, "the sender (no reply came back)", reply=True)
        reply = Trace(reply_hops, reply_verdict)
        return Trace(request, Verdict(VerdictKind.DELIVERED, where=run.delivered_at), reply=reply, forks=_side(run))
    verdict = _dropped(run, target)
    if verdict.reason is DropReason.MTU and run.failed:
        verdict = replace(verdict, detail=f"{verdict.detail}; the sender got {run.failed}")
    return Trace(hops, verdict, forks=_side(run))


# ---------------------------------------------------------------------------- sizes (MTU)

def _sized_packet(packet: IPv4, size: int | None) -> IPv4:
    """``packet`` carrying ``size`` bytes (the echo data as ``ping -s`` lays it out, or the TCP or
    UDP payload), with DF set (``ping -M do``); as it is when ``size`` is None."""
    if size is None:
        return packet
    p = packet.payload
    if isinstance(p, ICMP):
        p = with_(p, payload=Raw(data=ping_data(size)) if size else None)
    elif isinstance(p, TCP | UDP):
        p = with_(p, payload=Raw(data=bytes(size)) if size else None)
    out: IPv4 = with_(packet, df=True, payload=p)
    return out


def _sized_frame(frame: Ethernet, size: int) -> Ethernet:
    if isinstance(frame.payload, IPv4):
        out: Ethernet = with_(frame, payload=_sized_packet(frame.payload, size))
        return out
    return frame


def _with_size(trace: Trace, packet: object, size: int | None) -> Trace:
    """``trace`` whose ``packet`` also says the size asked for and the IP packet's length."""
    if size is None or not isinstance(packet, IPv4):
        return trace
    return replace(trace, packet=(*trace.packet, ("size", str(size)), ("ip_length", str(ip_length(packet))),
                                  ("df", "set")))


def _local_error_step(length: int, dev: str, mtu: int) -> Step:
    return Step(StepKind.DROP, f"mtu {mtu} dev {dev}",
                f"a {length}-byte packet with DF set is larger than {dev}'s MTU {mtu}: the sender's own kernel "
                "refuses it (EMSGSIZE), nothing is sent")


def _local_error(proto: str, run: _Run) -> str:
    """What the sender is told when its own device's MTU is too small (``ping -M do``'s words)."""
    if proto == "icmp":
        return f"ping: local error: message too long, mtu={run.local_mtu}"
    return f"sendmsg: Message too long (EMSGSIZE): the device's MTU is {run.local_mtu}"


def _segment_mismatch(sim: OvsBridgeSim, ev: _Event) -> Step | None:
    """Why a bridge dropped a frame, when the reason is the network segment it came in: a tunnel
    key no flow of the bridge knows (while others are known), or a VLAN tag the flows for that
    in_port translate for other VLANs only. The two ends disagree on the network's segmentation
    (a VNI or VLAN mismatch), or this host has no port of that network."""
    from neutrino.host.openflow_match import DlVlan, InPort, IntMatch

    compiled = [c for lst in getattr(sim, "_static", {}).values() for c in lst]
    key = ev.meta.tun_id
    if key:
        known = sorted({m.value for c in compiled for m in c.flow.match
                        if isinstance(m, IntMatch) and m.field == "tun_id"})
        if known and key not in known:
            said = ", ".join(f"{k:#x}" for k in known)
            return Step(StepKind.DROP, f"tunnel key {key:#x}",
                        f"VNI mismatch: no flow of {ev.end.element} on {ev.end.host} knows tunnel key {key:#x} "
                        f"(it knows {said}): the sending host puts this network on another segment than this "
                        f"host does, or no port of the network is here")
    payload = ev.frame.payload
    if isinstance(payload, Dot1Q):
        number = next((p.number for p in sim.ports if p.name == ev.end.port), None)
        vids = sorted({m.vid for c in compiled if any(isinstance(m, InPort) and m.port in (number, ev.end.port)
                                                      for m in c.flow.match)
                       for m in c.flow.match if isinstance(m, DlVlan)})
        if vids and payload.vid not in vids:
            said = ", ".join(str(v) for v in vids)
            return Step(StepKind.DROP, f"VLAN {payload.vid}",
                        f"VLAN mismatch: {ev.end.element} on {ev.end.host} translates VLANs {said} from "
                        f"{ev.end.port} only: frames tagged {payload.vid} belong to no network this host has")
    return None


# the end of a port's Havana-style s- chain (its (address, MAC) pairs allowed, the rest dropped)
_SPOOF_CHAIN_DROP = re.compile(r"^-A (quantum|neutron)-openvswi-s[0-9a-f-]{10} -j DROP$")


def _dropped(run: _Run, what: str, *, reply: bool = False) -> Verdict:
    if not run.drops:
        if reply:
            return Verdict(VerdictKind.DROPPED, DropReason.NO_REPLY, detail=f"nothing reached {what}")
        return Verdict(VerdictKind.DROPPED, DropReason.NO_ROUTE, detail=f"the packet never reached {what}")
    where, step = run.drops[-1]
    text = f"{step.text} {step.detail}"
    if step.text.split("[")[0] in SERVICES:
        return Verdict(VerdictKind.DROPPED, DropReason.IGNORED, where, step.obj,
                       f"{step.text} ignores it: {step.detail}")
    if step.text.startswith("mtu "):  # a device's MTU (see World._ovs_mtu_check and the others)
        reason = DropReason.MTU
    elif "sg-fallback" in text or "security" in step.obj or "sg-rule" in step.obj or (
            where.endswith(" br-int") and step.text.split(",")[0] == "table=93"):
        reason = DropReason.SECURITY_GROUP  # the ovs firewall's DROPPED_TRAFFIC_TABLE (93) too
    elif "--mac-source" in text or "! -s" in text or "IP/MAC" in text or _SPOOF_CHAIN_DROP.match(step.text) or (
            where.endswith(" br-int") and step.text.split(",")[0] in ("table=24", "table=25")):
        reason = DropReason.ANTI_SPOOFING  # br-int's ARP_SPOOF_TABLE (24) and MAC_SPOOF_TABLE (25) too
    elif "VNI mismatch" in text or "VLAN mismatch" in text:
        reason = DropReason.VLAN_MISMATCH
    elif "no flow matched" in text or "table miss" in text:
        reason = DropReason.NO_FLOW
    elif "explicit drop" in text or "actions=drop" in text:
        reason = DropReason.FLOW_DROP
    elif "no route" in text or "unreachable" in text.lower():
        reason = DropReason.NO_ROUTE
    elif step.text.startswith("-A") or step.text.startswith("-P"):
        reason = DropReason.FIREWALL
    else:
        reason = DropReason.NO_ROUTE
    said = f"{step.text}: {step.detail}" if step.text and step.detail else step.text or step.detail
    return Verdict(VerdictKind.DROPPED, reason, where, step.obj, said)


PROTOCOLS = ("icmp", "tcp", "udp", "http", "arp", "dhcp")


def _loopback(host: str, name: str, ip: IPv4Address, *, proto: str, dport: int) -> Trace:
    """An instance's packet to its own address: the guest's kernel takes it over ``lo`` and
    answers it itself (no frame leaves eth0, so no ARP)."""
    route = Step(StepKind.ROUTE, f"local {ip} dev lo table local proto kernel scope host src {ip}",
                 "local delivery (loopback)")
    port = 80 if proto == "http" else dport
    what = "icmp echo" if proto == "icmp" else f"{'udp' if proto == 'udp' else 'tcp'}/{port}"
    request = Hop(host, name, "lo", packet=f"{ip} > {ip} {what}",
                  steps=(route, Step(StepKind.DELIVER, name, f"{name} received it")))
    failed = ""
    if proto == "icmp":
        answer = Step(StepKind.REPLY, name, f"echo reply to {ip}")
    elif proto == "udp":
        answer = Step(StepKind.REPLY, name, f"udp port {port} unreachable")
        failed = f"ICMP destination unreachable (code 3) from {ip}"
    elif port in GUEST_LISTENING:
        answer = Step(StepKind.REPLY, name, f"SYN-ACK from port {port}")
    else:
        answer = Step(StepKind.REPLY, name, f"RST: nothing listens on port {port}")
        failed = f"{REFUSED}{ip} answered tcp/{port} with a reset (RST)"
    back = Hop(host, name, "lo", packet=f"{ip} > {ip} reply",
               steps=(answer, Step(StepKind.DELIVER, name, "the reply reached the sender")))
    if failed:
        reason = DropReason.REFUSED if failed.startswith(REFUSED) else DropReason.UNREACHABLE
        verdict = Verdict(VerdictKind.DROPPED, reason, "the sender", detail=failed.removeprefix(REFUSED))
    else:
        verdict = Verdict(VerdictKind.DELIVERED, where="the sender")
    return Trace((request,), Verdict(VerdictKind.DELIVERED, where=f"{host} {name}"),
                 reply=Trace((back,), verdict))


# ---------------------------------------------------------------------------- packets given field by field

L2_PROTOCOLS = ("arp", "dhcp")
_FLAG_LETTERS = {"F": TCPFlag.FIN, "S": TCPFlag.SYN, "R": TCPFlag.RST, "P": TCPFlag.PSH, "A": TCPFlag.ACK,
                 ".": TCPFlag.ACK, "U": TCPFlag.URG, "E": TCPFlag.ECE, "W": TCPFlag.CWR, "C": TCPFlag.CWR}
_FLAG_ORDER = ((TCPFlag.FIN, "F"), (TCPFlag.SYN, "S"), (TCPFlag.RST, "R"), (TCPFlag.PSH, "P"),
               (TCPFlag.ACK, "."), (TCPFlag.URG, "U"), (TCPFlag.ECE, "E"), (TCPFlag.CWR, "W"))


def parse_tcp_flags(text: str) -> TCPFlag:
    """TCP flags in tcpdump's letters (``S``, ``S.`` or ``SA``, ``R``, ``F.``, ``P.`` or ``PA``;
    ``A`` stands for ACK as ``.`` does, ``C`` for CWR as ``W`` does); ``none``: no flag."""
    if text.strip().lower() == "none":
        return TCPFlag(0)
    flags = TCPFlag(0)
    for ch in text.strip():
        flag = _FLAG_LETTERS.get(ch.upper())
        if flag is None:
            raise InvalidInput(f"--tcp-flags {text}: unknown flag {ch!r} (tcpdump's letters: S SYN, "
                               f". or A ACK, F FIN, R RST, P PSH, U URG, E ECE, W CWR; or none)")
        flags |= flag
    if not text.strip():
        raise InvalidInput("--tcp-flags: give the flags in tcpdump's letters (S, SA, R, F, PA...) or none")
    return flags


def tcp_flags_text(flags: TCPFlag) -> str:
    """tcpdump's letters for ``flags`` (``S.`` for a SYN-ACK), ``none`` for none."""
    return "".join(ch for f, ch in _FLAG_ORDER if flags & f) or "none"


def _parse_mac(option: str, value: str | Mac | None) -> Mac | None:
    if value is None or isinstance(value, Mac):
        return value
    try:
        return Mac.parse(value)
    except ValueError:
        raise InvalidInput(f"{option} {value}: not a MAC address (six hex bytes, aa:bb:cc:dd:ee:ff)") from None


def _parse_ip(option: str, value: str | IPv4Address | None) -> IPv4Address | None:
    if value is None or isinstance(value, IPv4Address):
        return value
    try:
        return IPv4Address(value)
    except ValueError:
        raise InvalidInput(f"{option} {value}: not an IPv4 address") from None


@dataclass(frozen=True, slots=True)
class PacketSpec:
    """The fields of a probe's packet given by hand (None: as the source would send it)."""

    src_ip: IPv4Address | None = None
    src_mac: Mac | None = None
    dst_mac: Mac | None = None
    sport: int | None = None
    flags: TCPFlag | None = None
    at: str | None = None
    vlan: int | None = None

    def given(self) -> bool:
        return not (self.src_ip is None and self.src_mac is None and self.dst_mac is None and self.sport is None
                    and self.flags is None and self.at is None and self.vlan is None)

    def spoof(self, frame: Ethernet) -> Ethernet:
        """``frame`` with the given source MAC and address."""
        if self.src_mac is not None:
            frame = with_(frame, src=self.src_mac)
        if self.src_ip is not None and isinstance(frame.payload, IPv4):
            frame = with_(frame, payload=with_(frame.payload, src=self.src_ip))
        return frame


_NO_SPEC = PacketSpec()  # (immutable: what packet_spec gives when no field is given)


def packet_spec(proto: str, *, src_ip: str | IPv4Address | None = None, src_mac: str | Mac | None = None,
                dst_mac: str | Mac | None = None, sport: int | None = None, tcp_flags: str | None = None,
                at: str | None = None, vlan: int | None = None) -> PacketSpec:
    """The fields given, checked: each malformed or out-of-range value, or one that does not go
    with ``proto``, raises :class:`InvalidInput` naming its option."""
    sip = _parse_ip("--src-ip", src_ip)
    smac = _parse_mac("--src-mac", src_mac)
    dmac = _parse_mac("--dst-mac", dst_mac)
    if sport is not None and not 1 <= sport <= 65535:
        raise InvalidInput(f"--sport {sport}: a port is a number from 1 to 65535")
    if vlan is not None and not 0 <= vlan <= 4095:
        raise InvalidInput(f"--vlan {vlan}: a VLAN id is a number from 0 to 4095")
    flags = parse_tcp_flags(tcp_flags) if tcp_flags is not None else None
    if flags is not None and proto != "tcp":
        raise InvalidInput(f"--tcp-flags: only with --proto tcp (not {proto})")
    if sport is not None and proto not in ("tcp", "udp", "http"):
        raise InvalidInput(f"--sport: only with --proto tcp, udp or http (not {proto})")
    if vlan is not None and at is None:
        raise InvalidInput("--vlan: a tag goes on a frame injected at a trunk or bridge port (give --at)")
    if sip is not None and proto == "dhcp":
        raise InvalidInput("--src-ip: a DHCP client sends from 0.0.0.0")
    return PacketSpec(sip, smac, dmac, sport, flags, at, vlan)


def _frame(proto: str, s_mac: Mac, d_mac: Mac, s_ip: IPv4Address, d_ip: IPv4Address, dport: int, port: int,
           ident: int, flags: TCPFlag | None) -> tuple[Ethernet, tuple[int, int]]:
    """The probe's frame, as a guest sends it (see :class:`Guest`), and the key that follows it."""
    if proto == "icmp":
        return echo_request(s_mac, d_mac, s_ip, d_ip, id=ident, seq=1), (1, ident)
    if proto == "tcp":
        f = flags if flags is not None else TCPFlag.SYN
        seg = TCP(sport=port, dport=dport, seq=1000, ack=1 if f & TCPFlag.ACK else 0, flags=f, window=64240)
        return Ethernet(dst=d_mac, src=s_mac, payload=IPv4(src=s_ip, dst=d_ip, df=True, payload=seg)), (6, port)
    if proto == "http":
        req = (f"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: {d_ip}\r\nUser-Agent: Wget\r\n"
               "Connection: close\r\n\r\n").encode()
        seg = TCP(sport=port, dport=80, seq=1001, ack=1, flags=TCPFlag.PSH | TCPFlag.ACK, payload=Raw(data=req))
        return Ethernet(dst=d_mac, src=s_mac, payload=IPv4(src=s_ip, dst=d_ip, df=True, payload=seg)), (6, port)
    return Ethernet(dst=d_mac, src=s_mac, payload=IPv4(src=s_ip, dst=d_ip, ttl=64, payload=UDP(
        sport=port, dport=dport, payload=Raw(data=b"neutrino")))), (17, port)


def _described(frame: Ethernet, proto: str, pk: PacketSpec, start: End | None = None) -> tuple[tuple[str, str], ...]:
    """The probe's packet field by field (what ``--json`` carries as ``packet``)."""
    out: list[tuple[str, str]] = []
    if start is not None:
        out.append(("at", f"{start.host}:{start.element or 'root'}:{start.port}"))
    tags = vlan_ids(frame)
    if tags:
        out.append(("vlan", str(tags[0])))
    f = _strip_vlans(frame)
    out += [("src_mac", str(f.src)), ("dst_mac", str(f.dst)), ("proto", proto)]
    p = f.payload
    if isinstance(p, ARP):
        return (*out, ("src_ip", str(p.psrc)), ("dst_ip", str(p.pdst)),
                ("arp", f"{'request' if p.op == ARPOp.REQUEST else 'reply'} who-has {p.pdst} tell {p.psrc}"))
    if not isinstance(p, IPv4):
        return tuple(out)
    out += [("src_ip", str(p.src)), ("dst_ip", str(p.dst))]
    l4 = p.payload
    if isinstance(l4, TCP):
        out += [("sport", str(l4.sport)), ("dport", str(l4.dport)), ("tcp_flags", tcp_flags_text(l4.flags))]
    elif isinstance(l4, UDP) and isinstance(l4.payload, DHCP):
        out += [("sport", str(l4.sport)), ("dport", str(l4.dport)),
                ("dhcp", f"DISCOVER xid {l4.payload.xid:#010x} chaddr {l4.payload.chaddr}")]
    elif isinstance(l4, UDP):
        out += [("sport", str(l4.sport)), ("dport", str(l4.dport))]
    elif isinstance(l4, ICMP):
        out += [("icmp", f"echo request id {l4.id} seq {l4.seq}")]
    return tuple(out)


def _drops(hops: Iterable[Hop]) -> list[tuple[str, Step]]:
    return [(f"{h.host} {h.element}", st) for h in hops for st in h.steps if st.kind is StepKind.DROP]


SERVICES = frozenset({"dnsmasq", "metadata", "metadata proxy"})  # a DROP step by a service, not the network


def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ipaddress.ip_address(text)``, parsed once per text (an address is immutable)."""
    got = _ADDRESSES.get(text)
    if got is None:
        got = ipaddress.ip_address(text)
        if len(_ADDRESSES) >= 4096:
            _ADDRESSES.clear()
        _ADDRESSES[text] = got
    return got


_ADDRESSES: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
_OUTSIDE_PACKETS: dict[tuple[object, ...], IPv4] = {}  # see World._probe_from_outside


def _replace_ip(frame: Ethernet, packet: IPv4) -> Ethernet:
    if frame.payload is packet:  # unchanged: the frame itself (a copy would be equal)
        return frame
    if isinstance(frame.payload, IPv4):
        out: Ethernet = with_(frame, payload=packet)
        return out
    return frame


def _tcp_reply(packet: IPv4, flags: TCPFlag, data: bytes = b"") -> IPv4:
    seg = packet.payload
    assert isinstance(seg, TCP)
    return IPv4(src=packet.dst, dst=packet.src, ttl=64,
                payload=TCP(sport=seg.dport, dport=seg.sport, seq=7000, ack=seg.seq + 1, flags=flags,
                            payload=Raw(data=data) if data else None))
