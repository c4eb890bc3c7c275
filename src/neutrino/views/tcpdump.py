"""``tcpdump -i DEV [-n] [-e] [-c N] [EXPRESSION]`` over a trace: the packets the trace sent through
DEV, as tcpdump 4.99 prints them.

A trace kept with :func:`keep_trace` (the last ``neutrino trace``) is what was on the wire; a device
saw a packet when the packet entered a hop through it or left towards a hop through it (a veth's
two ends, an OVS internal port and its namespace device, a physical NIC and its segment). Frames are
the ones :func:`neutrino.sim.pcap.wire_frames` gives (a tunnel's outer headers included), stamped as
the trace's pcap stamps them (``--pcap``: the n-th frame at n milliseconds), so the two agree.

stdout carries the packet lines; stderr the lines tcpdump writes there (``listening on DEV, link-type
EN10MB (Ethernet), snapshot length 262144 bytes``, then the counts).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING

from neutrino.errors import InvalidInput, NotFound
from neutrino.host.ovsdb import Bridge, OvsdbShow
from neutrino.sim.conntrack import Connection
from neutrino.sim.packets import ARP, TCP, UDP, Ethernet, IPv4, network_layer, summary, vlan_ids
from neutrino.sim.topology import End, Kind, Topology
from neutrino.sim.trace import Hop, Trace

if TYPE_CHECKING:
    from neutrino.host.state import HostState
    from neutrino.sim.world import World

__all__ = ["KeptTrace", "TcpdumpQuery", "keep_trace", "kept_trace", "mac_table", "parse_tcpdump_args", "tcpdump",
           "format_packets"]

_FILE = "last-trace.pickle"


@dataclass
class KeptTrace:
    """The last trace, the wiring it ran over, and the connection tables and (per host and bridge)
    the MAC tables it left behind: ``fdb`` rows are ``(OpenFlow port, VLAN, MAC)`` in learning order."""

    trace: Trace
    topo: Topology | None = None
    conntrack: dict[tuple[str, str], list[Connection]] = field(default_factory=dict)
    stamp: str = ""
    fdb: dict[tuple[str, str], list[tuple[int, int, str]]] = field(default_factory=dict)


def keep_trace(state: Path, trace: Trace, world: World | None = None) -> Path:
    """Keep ``trace`` (and, from ``world`` after the probe, its wiring and every namespace's
    connection table) as the one ``neutrino exec HOST -- tcpdump`` and ``conntrack -L`` answer from."""
    from neutrino import worldkeep

    kept = KeptTrace(trace, stamp=worldkeep.stamp(state))
    if world is not None:
        kept.topo = world.topo
        for host, ns in _namespaces_crossed(trace):
            try:
                nf = world.netfilter(host, ns)
            except Exception:  # noqa: BLE001 - not a namespace of that host (a bridge, a guest)
                continue
            if nf is not None:
                kept.conntrack[(host, ns)] = [replace(c, nat_done=set(c.nat_done)) for c in nf.conntrack.entries()]
        for host, element in _elements_crossed(trace):
            rows = mac_table(world, host, element)
            if rows is not None:
                kept.fdb[(host, element)] = rows
        for host in dict.fromkeys(h for h, _ in _elements_crossed(trace)):
            ovs = ovs_connections(world, host)
            if ovs:  # the kernel datapath's connections are the root namespace's (zone=N)
                kept.conntrack.setdefault((host, ""), []).extend(replace(c, nat_done=set(c.nat_done)) for c in ovs)
    state.mkdir(parents=True, exist_ok=True)
    # a name of its own (as tempfile.mkstemp makes, without importing tempfile in every trace)
    tmp = state / f".last-trace.{os.getpid()}.{os.urandom(6).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(kept, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, state / _FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return state / _FILE


def ovs_connections(world: World, host: str) -> list[Connection]:
    """The connections the OVS bridges of ``host`` track with ``ct()`` (the openvswitch firewall's):
    with the kernel datapath they are in the root namespace's table, each in its ``ct`` zone, which
    ``conntrack -L`` there lists along with the host's own."""
    state = world.hosts.get(host) if hasattr(world.hosts, "get") else None
    names = [br.name for br in _host_bridges(state)] if state is not None else []
    if not names:  # a loaded world holds its bridges built, not the host's state
        names = [name for (h, name) in getattr(world, "_ovs", {}) if h == host]
    out: list[Connection] = []
    for name in names:
        try:
            sim = world.bridge(host, name)
        except Exception:  # noqa: BLE001 - a bridge the world cannot build
            continue
        out.extend(sim.conntrack.entries())
    return out


def _host_bridges(state: HostState) -> tuple[Bridge, ...]:
    show = state.ovs.show
    if show is None:
        return ()
    return show.bridges if isinstance(show, OvsdbShow) else show.bridges()


def mac_table(world: World, host: str, bridge: str) -> list[tuple[int, int, str]] | None:
    """What OVS bridge ``bridge`` of ``host`` has learned in ``world`` (NORMAL's MAC table), as
    ``(OpenFlow port, VLAN, MAC)`` rows in learning order; None when ``world`` has no such bridge."""
    try:
        sim = world.bridge(host, bridge)
    except Exception:  # noqa: BLE001 - not a bridge (a namespace, a Linux bridge) or one it cannot build
        return None
    numbers = {p.name: p.number for p in sim.ports}
    return [(numbers[port], vlan, str(mac)) for vlan, mac, port in sim.mac_table if port in numbers]


def _elements_crossed(trace: Trace) -> list[tuple[str, str]]:
    """Every (host, element) a hop of the trace (its reply and forks included) went through."""
    seen: dict[tuple[str, str], None] = {}
    todo = [trace]
    while todo:
        t = todo.pop()
        seen.update(((hop.host, hop.element), None) for hop in t.hops)
        todo.extend(t.forks)
        if t.reply is not None:
            todo.append(t.reply)
    return list(seen)


def _namespaces_crossed(trace: Trace) -> list[tuple[str, str]]:
    """The (host, namespace) pairs whose connection tables the trace may have touched: the
    namespaces it entered, and each host's root namespace (bridged traffic's br_netfilter)."""
    seen: dict[tuple[str, str], None] = {}
    todo = [trace]
    while todo:
        t = todo.pop()
        for hop in t.hops:
            seen[(hop.host, "")] = None
            if hop.element != "root":
                seen[(hop.host, hop.element)] = None
        todo.extend(t.forks)
        if t.reply is not None:
            todo.append(t.reply)
    return list(seen)


def kept_trace(state: Path) -> KeptTrace | None:
    """The trace :func:`keep_trace` kept, if the hosts have not changed since (else None)."""
    from neutrino import worldkeep

    path = state / _FILE
    try:
        with open(path, "rb") as f:
            kept = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
        return None
    if not isinstance(kept, KeptTrace) or kept.stamp != worldkeep.stamp(state):
        return None
    return kept


# --- the command -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcpdumpQuery:
    device: str
    link: bool = False  # -e
    count: int | None = None  # -c N
    expression: tuple[str, ...] = ()


def parse_tcpdump_args(args: Sequence[str]) -> TcpdumpQuery:
    device = ""
    link = False
    count: int | None = None
    expr: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-i", "--interface") and i + 1 < len(args):
            device = args[i + 1]
            i += 2
            continue
        if a.startswith("-i") and len(a) > 2:
            device = a[2:]
        elif a == "-c" and i + 1 < len(args):
            try:
                count = int(args[i + 1])
            except ValueError:
                raise InvalidInput(f"tcpdump: invalid packet count {args[i + 1]}") from None
            i += 2
            continue
        elif a.startswith("-") and len(a) > 1:
            if a.endswith("i") and i + 1 < len(args):  # -ni DEV, -nei DEV
                device = args[i + 1]
                a = a[:-1]
                i += 1
            for ch in a[1:]:
                if ch == "e":
                    link = True
                elif ch in "nlSqtUK#":  # numeric, line-buffered, absolute seqs, quiet...: no change here
                    continue
                elif ch == "v":
                    raise InvalidInput("tcpdump -v: the verbose decoding is not answered (try -n -e)")
                elif ch == "w":
                    raise InvalidInput("tcpdump -w: write a trace's pcap with neutrino trace --pcap FILE")
                else:
                    raise InvalidInput(f"tcpdump: option -{ch} is not answered")
        else:
            expr.append(a)
        i += 1
    if not device:
        raise InvalidInput("tcpdump: give the device (-i DEV): neutrino answers for one device at a time")
    if device == "any":
        raise InvalidInput("tcpdump -i any is not answered: name a device")
    _filter(tuple(expr))  # reject what is not understood before anything is looked up
    return TcpdumpQuery(device, link, count, tuple(expr))


def _filter(expr: tuple[str, ...]) -> list[tuple[str, str]]:
    """A pcap-filter expression reduced to a conjunction of primitives: ``icmp``, ``arp``, ``ip``,
    ``tcp``, ``udp``, ``vlan [N]``, ``host A``, ``src [host] A``, ``dst [host] A``, ``port N``, joined
    by ``and``/``&&``."""
    words = [w for part in expr for w in part.replace("(", " ").replace(")", " ").split()]
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        w = words[i].lower()
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in ("and", "&&"):
            i += 1
            continue
        if w in ("or", "||", "not", "!"):
            raise InvalidInput(f"tcpdump: the filter's '{w}' is not answered (primitives joined by 'and' only)")
        if w in ("icmp", "arp", "ip", "tcp", "udp"):
            out.append((w, ""))
        elif w == "vlan":
            if nxt.isdigit():
                out.append(("vlan", nxt))
                i += 1
            else:
                out.append(("vlan", ""))
        elif w in ("host", "port") and nxt:
            out.append((w, nxt))
            i += 1
        elif w in ("src", "dst") and nxt:
            if nxt == "host" and i + 2 < len(words):
                nxt = words[i + 2]
                i += 1
            out.append((w, nxt))
            i += 1
        else:
            raise InvalidInput(f"tcpdump: syntax error in filter expression near '{words[i]}'")
        i += 1
    return out


def _l3(frame: Ethernet) -> IPv4 | ARP | None:
    """The packet a filter looks at: the inner one of a tunnel's frame is not (as in tcpdump)."""
    p = network_layer(frame)
    return p if isinstance(p, IPv4 | ARP) else None


def _passes(frame: Ethernet, prims: list[tuple[str, str]]) -> bool:
    l3 = _l3(frame)
    for what, arg in prims:
        if what == "arp":
            ok = isinstance(l3, ARP)
        elif what == "ip":
            ok = isinstance(l3, IPv4)
        elif what in ("icmp", "tcp", "udp"):
            ok = isinstance(l3, IPv4) and l3.proto == {"icmp": 1, "tcp": 6, "udp": 17}[what]
        elif what == "vlan":
            tags = vlan_ids(frame)
            ok = bool(tags) and (not arg or tags[0] == int(arg))
        elif what == "port":
            l4 = l3.payload if isinstance(l3, IPv4) else None
            ok = isinstance(l4, TCP | UDP) and arg.isdigit() and int(arg) in (l4.sport, l4.dport)
        else:
            try:
                addr = IPv4Address(arg)
            except ValueError:
                raise InvalidInput(f"tcpdump: can't resolve '{arg}' (neutrino does not resolve names)") from None
            if isinstance(l3, IPv4):
                ends = {"host": (l3.src, l3.dst), "src": (l3.src,), "dst": (l3.dst,)}[what]
            elif isinstance(l3, ARP):
                ends = {"host": (l3.psrc, l3.pdst), "src": (l3.psrc,), "dst": (l3.pdst,)}[what]
            else:
                ends = ()
            ok = addr in ends
        if not ok:
            return False
    return True


def _end_of(hop: Hop, topo: Topology | None) -> list[End]:
    """The wire ends the hop's device can be: where the frame entered."""
    element = "" if hop.element == "root" else hop.element
    ends = [End(k, hop.host, element, hop.device) for k in (Kind.OVS, Kind.LBR, Kind.NS, Kind.GUEST)]
    ends.append(End(Kind.SEGMENT, "", hop.element, hop.device))
    if topo is None:
        return ends[:3]
    return [e for e in ends if topo.peer(e) is not None]


def _devices(hop: Hop, topo: Topology | None) -> set[tuple[str, str]]:
    """The (host, device) pairs a frame entering ``hop`` crossed: the device it entered through and
    the one at the other end of that wire (a guest's own eth0 and the segment's own ends excepted)."""
    out: set[tuple[str, str]] = set()
    for e in _end_of(hop, topo):
        for end in (e, topo.peer(e) if topo is not None else None):
            if end is None:
                continue
            if end.kind is Kind.SEGMENT:
                nic = topo.nics.get(end) if topo is not None else None
                if nic is not None:
                    out.add((nic.host, nic.dev))
            elif end.kind is not Kind.GUEST:
                out.add((end.host, end.port))
    return out


def _stamp(ts: float) -> str:
    usec = round(ts * 1_000_000)
    sec, frac = divmod(usec, 1_000_000)
    return f"{sec // 3600 % 24:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.{frac:06d}"


def format_packets(records: Sequence[tuple[float, Ethernet]], *, link: bool) -> str:
    """tcpdump's lines (``-n``, and ``-e`` with ``link``) for ``(timestamp, frame)`` pairs."""
    return "".join(f"{_stamp(ts)} {summary(f, pad=True, link=link)}\n" for ts, f in records)


def _tunnelled(hop: Hop, frame: Ethernet) -> IPv4 | None:
    """The outer IP header of a frame that crossed a tunnel to ``hop`` (None for any other)."""
    if frame is hop.frame:
        return None
    outer = network_layer(frame)
    return outer if isinstance(outer, IPv4) else None


def captured(trace: Trace, topo: Topology | None, host: str, device: str,
             addresses: frozenset[IPv4Address] = frozenset()) -> list[tuple[float, Ethernet]]:
    """The trace's frames ``host``'s ``device`` saw, stamped as the trace's pcap stamps them.
    ``addresses``: the device's own; a tunnel's packets to or from one of them crossed it (the NIC
    that holds a host's tunnel endpoint), outer headers and all."""
    from neutrino.sim.pcap import wire_frames  # here: keeping a trace (every 'neutrino trace') does not

    out: list[tuple[float, Ethernet]] = []
    for n, (hop, frame) in enumerate(wire_frames(trace)):
        outer = _tunnelled(hop, frame)
        if outer is not None:
            if outer.src in addresses or outer.dst in addresses:
                out.append((n * 0.001, frame))
        elif (host, device) in _devices(hop, topo):
            out.append((n * 0.001, frame))
    return out


def tcpdump(trace: Trace, topo: Topology | None, host: str, q: TcpdumpQuery,
            addresses: frozenset[IPv4Address] = frozenset()) -> tuple[str, str]:
    """(stdout, stderr) of ``tcpdump`` run on ``host`` while ``trace`` went through (``addresses``:
    the device's, see :func:`captured`)."""
    prims = _filter(q.expression)
    seen = captured(trace, topo, host, q.device, addresses)
    shown = [(ts, f) for ts, f in seen if _passes(f, prims)]
    if q.count is not None:
        shown = shown[:q.count]
    err = ("tcpdump: verbose output suppressed, use -v[v]... for full protocol decode\n"
           f"listening on {q.device}, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n")
    err += (f"{len(shown)} packet{'s' if len(shown) != 1 else ''} captured\n"
            f"{len(seen)} packet{'s' if len(seen) != 1 else ''} received by filter\n"
            "0 packets dropped by kernel\n")
    return format_packets(shown, link=q.link), err


def no_such_device(device: str) -> NotFound:
    return NotFound(f"tcpdump: {device}: No such device exists\n(No such device exists)")
