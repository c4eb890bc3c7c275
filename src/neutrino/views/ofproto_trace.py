"""``ovs-appctl ofproto/trace BRIDGE FLOW``, answered by the simulator's OpenFlow interpreter.

The packet FLOW describes (OVS's syntax: ``in_port=1,dl_vlan=1,icmp,nw_src=...``; fields left out
are zero, as in OVS) goes through :class:`~neutrino.sim.ovs.OvsBridgeSim`, recorded as OVS's tracer
records it (``ofproto/ofproto-dpif-trace.c``, ``ofproto-dpif-xlate.c``): a tree of bridge, table,
action and detail nodes, patch ports followed into the peer bridge, then printed the way
``oftrace_node_print_details`` prints it (four spaces a level; the last node of a list, when it is a
table or a bridge, stays at its parent's level). Below the tree: the final flow, a megaflow and the
datapath actions, numbered as ``ovs-dpctl show`` numbers the host's datapath ports (``--names``:
by name). The bridges start from what the world learned (its MAC tables, its learned flows) when a
world is given, and the trace changes nothing in it.

What is OVS's and what is not: the tables visited, the flows and their actions, NORMAL's decision
(``forwarding to learned port`` / ``no learned MAC for destination, flooding``) and the datapath
actions (VLAN pushes and pops, outputs, the kernel tunnel's ``set(tunnel(...))``) follow OVS for a
kernel datapath. A ``ct()`` leaves the packet untracked after a datapath ``ct(...)``; one with
``table=N`` forks it (``recirc(0xK)``), and each fork is traced after the pass that made it, under
OVS's banner, thawed at table N as ``trk|new`` in its zone (OVS's default without ``--ct-next``).
The megaflow is an approximation (the fields the visited flows and NORMAL looked
at): OVS's own wildcarding depends on its classifier's staged lookups.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from neutrino.errors import InvalidInput, NotFound
from neutrino.host.openflow import Action, Flow, Output, ReservedPort
from neutrino.host.openflow_actions import Ct, Load, SetField, format_action
from neutrino.host.openflow_fields import Mac, field_info, port_name_text, value_to_int
from neutrino.host.openflow_match import format_match
from neutrino.host.ovs_datapath import datapaths_of
from neutrino.host.ovsdb import Bridge, Interface, OvsdbShow, Port
from neutrino.host.state import HostState
from neutrino.sim.ovs import (
    _CT_EST,
    _CT_INV,
    _CT_NEW,
    _CT_REL,
    _CT_TRK,
    MAX_RESUBMIT_DEPTH,
    Meta,
    OvsBridgeSim,
    _bits,
    _Ctx,
    _Loop,
    _Run,
)
from neutrino.sim.ovs_normal import OFPP_LOCAL, PortKind, SimPort
from neutrino.sim.packets import (
    ARP,
    ICMP,
    TCP,
    UDP,
    VXLAN_PORT,
    Dot1Q,
    Ethernet,
    IPv4,
    TCPFlag,
    network_layer,
    push_vlan,
)
from neutrino.sim.trace import StepKind

__all__ = ["TraceRequest", "parse_trace_args", "ofproto_trace"]

# --- the tree OVS prints ---------------------------------------------------------------------------

BRIDGE, TABLE, ACTION, DETAIL, WARN, ERROR = "bridge", "table", "action", "detail", "warn", "error"
_TERMINAL = frozenset({ACTION, DETAIL, WARN, ERROR})


@dataclass
class Node:
    kind: str
    text: str
    subs: list[Node] = field(default_factory=list)


def print_nodes(nodes: Sequence[Node], level: int = 0) -> str:
    """``oftrace_node_print_details``: a node is indented ``(level + more) * 4`` where ``more`` is
    whether it is not the last of its list or is terminal; its children go ``more`` twice deeper."""
    out: list[str] = []
    for i, n in enumerate(nodes):
        if n.kind == BRIDGE:
            out.append("\n")
        more = 1 if (i < len(nodes) - 1 or n.kind in _TERMINAL) else 0
        pad = " " * ((level + more) * 4)
        if n.kind == DETAIL:
            out.append(f"{pad} -> {n.text}\n")
        elif n.kind == WARN:
            out.append(f"{pad} >> {n.text}\n")
        elif n.kind == ERROR:
            out.append(f"{pad} >>>> {n.text} <<<<\n")
        elif n.kind == BRIDGE:
            out.append(f"{pad}{n.text}\n{pad}{'-' * len(n.text)}\n")
        else:
            out.append(f"{pad}{n.text}\n")
        out.append(print_nodes(n.subs, level + 2 * more))
    return "".join(out)


# --- the request -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceRequest:
    bridge: str
    flow: str
    names: bool = False
    generate: bool = False


def parse_trace_args(args: Sequence[str]) -> TraceRequest:
    """``ofproto/trace`` 's arguments after the command: ``[-generate] [--names] BRIDGE FLOW``."""
    names = generate = False
    rest: list[str] = []
    for a in args:
        if a in ("-generate", "--generate"):
            generate = True
        elif a in ("-names", "--names"):
            names = True
        elif a in ("--no-names", "-no-names"):
            names = False
        elif a.startswith("-"):
            raise InvalidInput(f"{a}: unknown option\novs-appctl: ovs-vswitchd: server returned an error")
        else:
            rest.append(a)
    if len(rest) == 1:
        raise InvalidInput(f"{rest[0]}: a datapath flow is not understood here: give BRIDGE FLOW")
    if len(rest) != 2:
        raise InvalidInput("Syntax error\novs-appctl: ovs-vswitchd: server returned an error")
    return TraceRequest(rest[0], rest[1], names, generate)


# --- the flow --------------------------------------------------------------------------------------

_PROTOCOLS: dict[str, tuple[int, int | None]] = {
    "ip": (0x0800, None), "ipv4": (0x0800, None), "icmp": (0x0800, 1), "tcp": (0x0800, 6),
    "udp": (0x0800, 17), "arp": (0x0806, None), "eth": (0, None),
}


@dataclass
class _Spec:
    """What FLOW says, field by field (OVS's ``struct flow``: what is not said is zero)."""

    in_port: str = ""
    dl_src: Mac = Mac(0)
    dl_dst: Mac = Mac(0)
    dl_type: int = 0
    vlan_tci: int = 0
    nw_src: IPv4Address = IPv4Address(0)
    nw_dst: IPv4Address = IPv4Address(0)
    nw_proto: int = 0
    nw_tos: int = 0
    nw_ttl: int = 0
    tp_src: int = 0
    tp_dst: int = 0
    tcp_flags: int = 0
    arp_sha: Mac = Mac(0)
    arp_tha: Mac = Mac(0)
    tun_id: int | None = None
    tun_src: IPv4Address | None = None
    tun_dst: IPv4Address | None = None
    regs: dict[int, int] = field(default_factory=dict)
    metadata: int = 0
    pkt_mark: int = 0


def _int(text: str) -> int:
    return int(text, 0)


def _bad(flow: str, why: str) -> InvalidInput:
    return InvalidInput(f"Bad openflow flow syntax: {flow}: {why}\n"
                        "ovs-appctl: ovs-vswitchd: server returned an error")


def _parse_flow(text: str) -> _Spec:
    s = _Spec()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        value = value.strip().strip('"')
        try:
            if not eq:
                if key not in _PROTOCOLS:
                    raise _bad(text, f"unknown keyword {key}")
                s.dl_type, proto = _PROTOCOLS[key]
                if proto is not None:
                    s.nw_proto = proto
                continue
            if key == "in_port":
                s.in_port = value
            elif key in ("dl_src", "eth_src"):
                s.dl_src = Mac.parse(value)
            elif key in ("dl_dst", "eth_dst"):
                s.dl_dst = Mac.parse(value)
            elif key in ("dl_type", "eth_type"):
                s.dl_type = _int(value)
            elif key in ("dl_vlan", "vlan_vid"):
                vid = _int(value) & 0xFFF
                s.vlan_tci = (s.vlan_tci & 0xE000) | 0x1000 | vid
            elif key == "dl_vlan_pcp":
                s.vlan_tci = (s.vlan_tci & 0x1FFF) | 0x1000 | ((_int(value) & 7) << 13)
            elif key == "vlan_tci":
                s.vlan_tci = _int(value.split("/")[0])
            elif key in ("nw_src", "ip_src", "arp_spa"):
                s.nw_src = IPv4Address(value)
            elif key in ("nw_dst", "ip_dst", "arp_tpa"):
                s.nw_dst = IPv4Address(value)
            elif key in ("nw_proto", "ip_proto", "arp_op"):
                s.nw_proto = _int(value)
            elif key == "nw_tos":
                s.nw_tos = _int(value)
            elif key == "nw_ttl":
                s.nw_ttl = _int(value)
            elif key in ("tp_src", "tcp_src", "udp_src", "icmp_type"):
                s.tp_src = _int(value)
            elif key in ("tp_dst", "tcp_dst", "udp_dst", "icmp_code"):
                s.tp_dst = _int(value)
            elif key == "tcp_flags":
                s.tcp_flags = _int(value)
            elif key == "arp_sha":
                s.arp_sha = Mac.parse(value)
            elif key == "arp_tha":
                s.arp_tha = Mac.parse(value)
            elif key in ("tun_id", "tunnel_id"):
                s.tun_id = _int(value)
            elif key == "tun_src":
                s.tun_src = IPv4Address(value)
            elif key == "tun_dst":
                s.tun_dst = IPv4Address(value)
            elif key.startswith("reg") and key[3:].isdigit() and int(key[3:]) < 16:
                s.regs[int(key[3:])] = _int(value)
            elif key == "metadata":
                s.metadata = _int(value)
            elif key == "pkt_mark":
                s.pkt_mark = _int(value)
            else:
                raise _bad(text, f"unknown or unsupported field {key}")
        except ValueError as exc:
            raise _bad(text, f"{value}: {exc}") from None
    return s


def _frame(s: _Spec) -> Ethernet:
    l3: ARP | IPv4 | None = None
    if s.dl_type == 0x0806:
        l3 = ARP(op=s.nw_proto, hwsrc=s.arp_sha, psrc=s.nw_src, hwdst=s.arp_tha, pdst=s.nw_dst)
    elif s.dl_type == 0x0800:
        l4: ICMP | TCP | UDP | None = None
        if s.nw_proto == 1:
            l4 = ICMP(type=s.tp_src, code=s.tp_dst)
        elif s.nw_proto == 6:
            l4 = TCP(sport=s.tp_src, dport=s.tp_dst, flags=TCPFlag(s.tcp_flags & 0xFFF))
        elif s.nw_proto == 17:
            l4 = UDP(sport=s.tp_src, dport=s.tp_dst)
        l3 = IPv4(src=s.nw_src, dst=s.nw_dst, ttl=s.nw_ttl, tos=s.nw_tos, proto=s.nw_proto, payload=l4)
    elif s.dl_type not in (0,):
        raise InvalidInput(f"ofproto/trace: dl_type {s.dl_type:#06x} is not modelled by the simulator")
    frame = Ethernet(dst=s.dl_dst, src=s.dl_src, type=s.dl_type, payload=l3)
    if s.vlan_tci & 0x1000:
        frame = push_vlan(frame, s.vlan_tci & 0xFFF, pcp=(s.vlan_tci >> 13) & 7)
    return frame


def _tci(frame: Ethernet) -> int:
    p = frame.payload
    return ((p.pcp & 7) << 13) | 0x1000 | (p.vid & 0xFFF) if isinstance(p, Dot1Q) else 0


def _ethertype(frame: Ethernet) -> int:
    t, p = frame.type, frame.payload
    while isinstance(p, Dot1Q):
        t, p = p.type, p.payload
    return t


def flow_text(frame: Ethernet, in_port: str, meta: Meta) -> str:
    """``flow_format`` of the packet: the protocol's keyword, registers, tunnel, in_port, VLAN,
    MACs, then the L3 and L4 fields (every one, zeros included)."""
    parts: list[str] = []
    l3 = network_layer(frame)
    etype = _ethertype(frame)
    if isinstance(l3, IPv4):
        parts.append({1: "icmp", 6: "tcp", 17: "udp"}.get(l3.proto, "ip"))
    elif isinstance(l3, ARP):
        parts.append("arp")
    parts.extend(f"reg{i}={v:#x}" for i, v in enumerate(meta.registers) if v)
    if meta.tun_id is not None and (meta.tun_id or meta.tun_src or meta.tun_dst):
        parts.append(f"tun_id={meta.tun_id:#x}")
    if meta.tun_src is not None:
        parts.append(f"tun_src={meta.tun_src}")
    if meta.tun_dst is not None:
        parts.append(f"tun_dst={meta.tun_dst}")
    if meta.metadata:
        parts.append(f"metadata={meta.metadata:#x}")
    if meta.pkt_mark:
        parts.append(f"pkt_mark={meta.pkt_mark:#x}")
    parts.append(f"in_port={in_port}")
    tci = _tci(frame)
    if tci:
        inner = frame.payload.payload if isinstance(frame.payload, Dot1Q) else None
        parts.append(f"dl_vlan={tci & 0xFFF},dl_vlan_pcp={tci >> 13}")
        parts.append(f"vlan_tci1={_tci(Ethernet(payload=inner)) if isinstance(inner, Dot1Q) else 0:#06x}")
    else:
        parts.append("vlan_tci=0x0000")
    parts.append(f"dl_src={frame.src},dl_dst={frame.dst}")
    if isinstance(l3, IPv4):
        parts.append(f"nw_src={l3.src},nw_dst={l3.dst}")
        if l3.proto not in (1, 6, 17):
            parts.append(f"nw_proto={l3.proto}")
        parts.append(f"nw_tos={l3.tos & 0xFC},nw_ecn={l3.tos & 3},nw_ttl={l3.ttl},nw_frag=no")
        l4 = l3.payload
        if isinstance(l4, ICMP):
            parts.append(f"icmp_type={l4.type},icmp_code={l4.code}")
        elif isinstance(l4, TCP):
            parts.append(f"tp_src={l4.sport},tp_dst={l4.dport},tcp_flags={_tcp_flags(int(l4.flags))}")
        elif isinstance(l4, UDP):
            parts.append(f"tp_src={l4.sport},tp_dst={l4.dport}")
    elif isinstance(l3, ARP):
        parts.append(f"arp_spa={l3.psrc},arp_tpa={l3.pdst},arp_op={l3.op},arp_sha={l3.hwsrc},arp_tha={l3.hwdst}")
    else:
        parts.append(f"dl_type={etype:#06x}")
    return ",".join(parts)


_TCP_FLAG_NAMES = ((0x001, "fin"), (0x002, "syn"), (0x004, "rst"), (0x008, "psh"), (0x010, "ack"),
                   (0x020, "urg"), (0x040, "ece"), (0x080, "cwr"), (0x100, "ns"))


def _tcp_flags(flags: int) -> str:
    if not flags:
        return "0"
    return "+".join(n for bit, n in _TCP_FLAG_NAMES if flags & bit)


# --- the recording interpreter ---------------------------------------------------------------------


@dataclass
class _Out:
    """One copy that left the datapath: the port (a datapath port's name), the frame, tunnel metadata."""

    port: SimPort
    bridge: str
    frame: Ethernet
    meta: Meta


@dataclass(frozen=True, slots=True)
class _DpAction:
    """A datapath action that is not an output (``ct(...)``, ``recirc(...)``), in its place."""

    text: str


@dataclass
class _Recirc:
    """A ``ct(table=N)``'s fork: the packet as it left conntrack, resumed at ``table`` after the
    pass that forked it (OVS's frozen state, thawed)."""

    ident: int
    bridge: _TracingBridge
    in_port: str
    table: int
    frame: Ethernet
    meta: Meta


class _Recorder:
    def __init__(self, bridges: Callable[[str], _TracingBridge | None], peers: Mapping[tuple[str, str], tuple[str, str]]
                 ) -> None:
        self.bridges = bridges
        self.peers = peers  # (bridge, patch port) -> (peer bridge, peer port)
        self.stack: list[list[Node]] = []
        self.outputs: list[_Out | _DpAction] = []
        self.recircs: list[_Recirc] = []  # shared by the passes: the forks still to trace
        self.ct_match = ""  # the first ct_state a visited flow matched (the resumed pass's megaflow)
        self.looked_at: dict[str, None] = {}  # match fields the visited flows tested (for the megaflow)
        self.normal = False
        self.depth = 0
        self.traced: dict[int, int] = {}  # id(run) -> how many of its outputs were sent on

    @property
    def here(self) -> list[Node]:
        return self.stack[-1]


_IN_PORT = re.compile(r"(\bin_port=)(\d+)\b")
_OUTPUT = re.compile(r"^(output:)(\d+)$")


class _TracingBridge(OvsBridgeSim):
    """An :class:`OvsBridgeSim` that reports each table, action and NORMAL decision to a recorder."""

    rec: _Recorder
    top_ctx: Any = None
    names: bool = False  # --names: ports by name in the tables' matches and outputs, as OVS prints them
    track_connections = False  # as OVS's trace: each ct() continues as trk|new (no --ct-next here)

    def _named(self, text: str, pattern: re.Pattern[str]) -> str:
        if not self.names:
            return text
        by_number = {p.number: p for p in self._by_name.values()}
        return pattern.sub(lambda m: m.group(1) + _port_text(by_number.get(int(m.group(2))), True)
                           if int(m.group(2)) in by_number else m.group(0), text)

    def _table(self, ctx: Any, table: int, run: Any, depth: int) -> None:  # noqa: ANN401 - the sim's types
        if self.top_ctx is None:
            self.top_ctx = ctx
        c = self._lookup(table, ctx)
        if c is None:
            node = Node(TABLE, f"{table:2d}. No match.")
            self.rec.here.append(node)
            node.subs.append(Node(ACTION, "drop"))
            super()._table(ctx, table, run, depth)
            return
        flow: Flow = c.flow
        head = f"{table:2d}. "
        m = self._named(format_match(flow.match), _IN_PORT)
        text = head + m + (", " if m else "") + f"priority {flow.priority}"
        if flow.cookie:
            text += f", cookie {flow.cookie:#x}"
        node = Node(TABLE, text)
        self.rec.here.append(node)
        for mf in flow.match:
            said = format_match((mf,))
            self.rec.looked_at[said.split("=", 1)[0]] = None
            if said.startswith("ct_state=") and not self.rec.ct_match:
                self.rec.ct_match = said
        self.rec.stack.append(node.subs)
        try:
            if not flow.actions:
                node.subs.append(Node(ACTION, "drop"))
            super()._table(ctx, table, run, depth)
        finally:
            self.rec.stack.pop()

    def _action(self, a: Action, ctx: Any, run: Any, depth: int, table: int) -> str:  # noqa: ANN401
        self.rec.here.append(Node(ACTION, self._named(format_action(a), _OUTPUT)))
        said = super()._action(a, ctx, run, depth, table)
        if isinstance(a, Output) and a.port is not ReservedPort.NORMAL and said.endswith(
                ": no such port, nothing sent"):
            self.rec.here.append(Node(WARN, "Nonexistent output port"))
        self._follow(run)
        return said

    def _ct_untracked(self, a: Ct, ctx: Any, run: Any, depth: int, zone: int) -> str:  # noqa: ANN401
        """``ct()`` as OVS's translation reports it: the packet leaves the pipeline untracked (its
        conntrack fields cleared) after a datapath ``ct(...)``; with ``table=N`` a fork of it is
        frozen, to be resumed at table N after this pass as ``trk|new`` (no ``--ct-next`` here)."""
        here = self.rec.here
        here.append(Node(ACTION, "drop"))
        if a.table is not None:
            here.append(Node(DETAIL, "A clone of the packet is forked to recirculate. The forked pipeline will "
                                     f"be resumed at table {a.table}."))
        here.append(Node(DETAIL, "Sets the packet to an untracked state, and clears all the conntrack fields."))
        self.rec.outputs.append(_DpAction(_dp_ct(a, zone)))
        if a.table is not None:
            ident = len(self.rec.recircs) + 1
            self.rec.outputs.append(_DpAction(f"recirc({ident:#x})"))
            by_number = {p.number: p for p in self._by_name.values()}
            port = by_number.get(ctx.in_port)
            state = ctx.ct_state if ctx.ct_state & (_CT_NEW | _CT_EST | _CT_REL | _CT_INV) else _CT_NEW
            meta = Meta(tun_id=ctx.tun_id or None, registers=_registers(ctx.regs), metadata=ctx.metadata,
                        pkt_mark=ctx.pkt_mark, ct_state=state | _CT_TRK, ct_zone=zone)
            if port is not None:
                self.rec.recircs.append(_Recirc(ident, self, port.name, a.table, ctx.frame, meta))
        ctx.ct_state = ctx.ct_zone = ctx.ct_mark = ctx.ct_label = 0
        return "ct: the packet goes on untracked" + (f", a fork resumes at table {a.table}" if a.table else "")

    def resume(self, r: _Recirc) -> None:
        """Trace the fork ``r`` froze, from its table."""
        port = self._by_name[r.in_port]
        ctx = _Ctx(r.frame, port.number, r.meta)
        run = _Run()
        self.top_ctx = ctx
        try:
            self._table(ctx, r.table, run, 0)
        except _Loop:
            self.rec.here.append(Node(ERROR, f"over max translation depth {MAX_RESUBMIT_DEPTH}"))

    def _follow(self, run: Any) -> None:  # noqa: ANN401
        """Send on the copies not sent on yet: a patch port's into its peer bridge (traced there),
        the others out of the datapath."""
        emitted = run.outputs[self.rec.traced.get(id(run), 0):]
        self.rec.traced[id(run)] = len(run.outputs)
        if len(emitted) > 1:  # a flood: OVS goes through the ports in the order they were added,
            #                   the bridge's own port first
            emitted = sorted(emitted, key=lambda e: self._by_name[e.port].number != OFPP_LOCAL)
        for e in emitted:
            port = self._by_name[e.port]
            if port.kind is PortKind.PATCH:
                peer = self.rec.peers.get((self.bridge.name, port.name))
                other = self.rec.bridges(peer[0]) if peer is not None else None
                if peer is None or other is None:
                    self.rec.here.append(Node(WARN, f"patch port {port.name} has no peer"))
                    continue
                node = Node(BRIDGE, f'bridge("{peer[0]}")')
                self.rec.here.append(node)
                self.rec.stack.append(node.subs)
                self.rec.depth += 1
                try:
                    if self.rec.depth > 64:
                        node.subs.append(Node(ERROR, "over max translation depth 64"))
                    else:
                        other.rec = self.rec
                        other.process(peer[1], e.frame, Meta())
                finally:
                    self.rec.depth -= 1
                    self.rec.stack.pop()
                continue
            if port.kind is PortKind.TUNNEL:
                self.rec.here.append(Node(DETAIL, "output to kernel tunnel"))
            self.rec.outputs.append(_Out(port, self.bridge.name, e.frame, e.meta))

    def _normal(self, ctx: Any, run: Any, why: str | None) -> None:  # noqa: ANN401
        first_step = len(run.steps)
        super()._normal(ctx, run, why)
        for st in run.steps[first_step:]:
            if st.kind is StepKind.NORMAL:
                self.rec.normal = True
                self.rec.here.extend(_normal_nodes(st.detail))
        if why is not None:  # standalone (no flows): NORMAL for every packet, no action to follow it
            self._follow(run)


def _normal_nodes(detail: str) -> list[Node]:
    """What OVS's ``xlate_normal`` reports for the simulator's NORMAL decision."""
    last = detail.split("; ")[-1]
    if last.endswith(": forwarded"):
        return [Node(DETAIL, "forwarding to learned port")]
    if ": flooded to " in last or last.endswith("no other port in the VLAN, dropped"):
        return [Node(DETAIL, "no learned MAC for destination, flooding")]
    if "is on the input port" in last:
        return [Node(DETAIL, "learned port is input port, dropping")]
    if last.startswith("dropped: "):
        return [Node(WARN, last.removeprefix("dropped: ") + ", dropping")]
    return [Node(DETAIL, last)]


# --- datapath actions ------------------------------------------------------------------------------


_CT_FLAG_NAMES = ((0x01, "new"), (0x02, "est"), (0x04, "rel"), (0x08, "rpl"), (0x10, "inv"), (0x20, "trk"),
                  (0x40, "snat"), (0x80, "dnat"))


def _registers(regs: Sequence[int]) -> tuple[int, ...]:
    return tuple(regs[:max((i + 1 for i, v in enumerate(regs) if v), default=0)])


def _dp_ct(a: Ct, zone: int) -> str:
    """The datapath's ``ct(...)`` for the OpenFlow action: commit, the zone's number, the mark an
    ``exec`` sets (value/mask), nat."""
    parts = ["commit"] if a.commit else []
    if zone:
        parts.append(f"zone={zone}")
    for x in a.exec_ if a.commit else ():
        if isinstance(x, SetField) and x.field == "ct_mark":
            mask = value_to_int(x.mask) if x.mask is not None else 0xFFFFFFFF
            parts.append(f"mark={value_to_int(x.value) & mask:#x}/{mask:#x}")
        elif isinstance(x, Load) and field_info(x.dst.field) is not None:
            info, off, n = _bits(x.dst)
            if info.name == "ct_mark":
                mask = ((1 << n) - 1) << off
                parts.append(f"mark={(x.value << off) & mask:#x}/{mask:#x}")
    if a.nat is not None:
        parts.append("nat")
    return f"ct({','.join(parts)})" if parts else "ct"


def _ct_prefix(ident: int, state: int, zone: int, mark: int) -> str:
    """What a resumed pass's flow says first: its recirculation id and conntrack fields."""
    parts = [f"recirc_id={ident:#x}"]
    if state:
        parts.append("ct_state=" + "|".join(n for bit, n in _CT_FLAG_NAMES if state & bit))
    if zone:
        parts.append(f"ct_zone={zone}")
    if mark:
        parts.append(f"ct_mark={mark:#x}")
    return ",".join(parts) + ",eth,"


def _dp_numbers(show: OvsdbShow | None) -> dict[str, int]:
    if show is None:
        return {}
    bridges = show.bridges if isinstance(show, OvsdbShow) else ()
    return {p.name: p.number for dp in datapaths_of(tuple(bridges)) for p in dp.ports}


_TUNNEL_DEV = {"gre": "gre_sys", "vxlan": "vxlan_sys_4789", "geneve": "genev_sys_6081"}


def _tunnel_type(bridges: Mapping[str, Bridge], bridge: str, port: str) -> str:
    b = bridges.get(bridge)
    row = b.port(port) if b is not None else None
    iface = next(iter(row.interfaces), None) if row is not None else None
    return iface.type if iface is not None and iface.type else "gre"


def _datapath_actions(start: Ethernet, outs: Sequence[_Out | _DpAction], numbers: Mapping[str, int],
                      bridges: Mapping[str, Bridge], names: bool) -> str:
    if not outs:
        return "drop"
    acts: list[str] = []
    cur = start
    cur_tunnel: str | None = None

    def port_ref(name: str) -> str:
        if names or name not in numbers:
            return name
        return str(numbers[name])

    for o in outs:
        if isinstance(o, _DpAction):
            acts.append(o.text)
            continue
        before, after = _tci(cur), _tci(o.frame)
        if before != after:
            if before:
                acts.append("pop_vlan")
            if after:
                acts.append(f"push_vlan(vid={after & 0xFFF},pcp={after >> 13})")
        if (cur.src, cur.dst) != (o.frame.src, o.frame.dst):
            acts.append(f"set(eth(src={o.frame.src},dst={o.frame.dst}))")
        a3, b3 = network_layer(cur), network_layer(o.frame)
        if isinstance(a3, IPv4) and isinstance(b3, IPv4):
            changed = [f"{k}={getattr(b3, k)}" for k in ("src", "dst", "ttl") if getattr(a3, k) != getattr(b3, k)]
            if changed:
                acts.append(f"set(ipv4({','.join(changed)}))")
        cur = o.frame
        if o.port.kind is PortKind.TUNNEL:
            kind = _tunnel_type(bridges, o.bridge, o.port.name)
            parts = []
            if o.meta.tun_id is not None:
                parts.append(f"tun_id={o.meta.tun_id:#x}")
            if o.meta.tun_src is not None:
                parts.append(f"src={o.meta.tun_src}")
            if o.meta.tun_dst is not None:
                parts.append(f"dst={o.meta.tun_dst}")
            parts.append("ttl=64")
            if kind == "vxlan":
                parts.append(f"tp_dst={VXLAN_PORT}")
            flags = "df|key" if o.meta.tun_id is not None else "df"
            tunnel = f"set(tunnel({','.join(parts)},flags({flags})))"
            if tunnel != cur_tunnel:
                acts.append(tunnel)
                cur_tunnel = tunnel
            acts.append(port_ref(_TUNNEL_DEV.get(kind, f"{kind}_sys")))
            continue
        name = o.bridge if o.port.number == OFPP_LOCAL else o.port.name
        acts.append(port_ref(name))
    return ",".join(acts)


def _megaflow(spec_frame: Ethernet, in_port: str, looked_at: Mapping[str, None], normal: bool,
              meta: Meta) -> str:
    l3 = network_layer(spec_frame)
    parts = ["recirc_id=0", "eth"]
    if isinstance(l3, IPv4):
        parts.append("ip")
    elif isinstance(l3, ARP):
        parts.append("arp")
    if "tun_id" in looked_at and meta.tun_id is not None:
        parts.append(f"tun_id={meta.tun_id:#x}")
    parts.append(f"in_port={in_port}")
    tci = _tci(spec_frame)
    if normal or "dl_vlan" in looked_at or "vlan_tci" in looked_at:
        if tci:
            parts.append(f"dl_vlan={tci & 0xFFF}")
        elif normal:
            parts.append("vlan_tci=0x0000/0x1fff")
    if normal or "dl_src" in looked_at:
        parts.append(f"dl_src={spec_frame.src}")
    if normal or "dl_dst" in looked_at:
        parts.append(f"dl_dst={spec_frame.dst}")
    if not isinstance(l3, IPv4 | ARP):
        parts.append(f"dl_type={_ethertype(spec_frame):#06x}")
    if isinstance(l3, IPv4):
        for key, value in (("nw_src", l3.src), ("nw_dst", l3.dst)):
            if key in looked_at:
                parts.append(f"{key}={value}")
        parts.append("nw_frag=no")
    return ",".join(parts)


# --- the command -----------------------------------------------------------------------------------


def _ovs_bridges(host: HostState) -> dict[str, Bridge]:
    """The host's bridges; one a partial capture's ``ovs-vsctl show`` left out but whose flows were
    captured is made up from its ``ovs-ofctl show`` ports (their types unknown: patch ports are then
    not followed)."""
    show = host.ovs.show
    if show is None:
        return {}
    bridges = {b.name: b for b in (show.bridges if isinstance(show, OvsdbShow) else show.bridges())}
    for bf in host.ovs.bridges:
        if bf.bridge not in bridges and bf.flows is not None:
            names = [p.name for p in bf.ports.ports] if bf.ports is not None else []
            bridges[bf.bridge] = Bridge(bf.bridge, ports=tuple(
                Port(n, (Interface(n, "internal" if n == bf.bridge else None),)) for n in names))
    return bridges


def _patch_peers(bridges: Mapping[str, Bridge]) -> dict[tuple[str, str], tuple[str, str]]:
    where = {p.name: b.name for b in bridges.values() for p in b.ports}
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for b in bridges.values():
        for p in b.ports:
            for i in p.interfaces:
                if i.type == "patch":
                    peer = dict(i.options).get("peer")
                    if peer is not None and peer in where:
                        out[(b.name, p.name)] = (where[peer], peer)
    return out


def ofproto_trace(host: HostState, req: TraceRequest, learned: Callable[[str], OvsBridgeSim | None] | None = None
                  ) -> str:
    """``ovs-appctl ofproto/trace`` on ``host``. ``learned(bridge)``: the world's bridge, whose MAC
    table and learned flows the trace starts from (None: a bridge that has learned nothing)."""
    bridges = _ovs_bridges(host)
    if req.bridge not in bridges:
        raise NotFound(f"{req.bridge}: unknown bridge\novs-appctl: ovs-vswitchd: server returned an error")
    made: dict[str, _TracingBridge] = {}

    def bridge(name: str) -> _TracingBridge | None:
        if name not in made:
            row = bridges.get(name)
            if row is None:
                return None
            flows = host.ovs.flows_of(name)
            sim = _TracingBridge(row, flows.flows if flows is not None else None,
                                 flows.ports if flows is not None else None)
            sim.names = req.names
            old = learned(name) if learned is not None else None
            if old is not None:
                sim.take_over(old)
            made[name] = sim
        return made[name]

    rec = _Recorder(bridge, _patch_peers(bridges))
    top = bridge(req.bridge)
    assert top is not None
    spec = _parse_flow(req.flow)
    port = _in_port(top, spec.in_port, req.flow)
    frame = _frame(spec)
    regs = tuple(spec.regs.get(i, 0) for i in range(max(spec.regs, default=-1) + 1))
    meta = Meta(tun_id=spec.tun_id, tun_src=spec.tun_src, tun_dst=spec.tun_dst, registers=regs,
                metadata=spec.metadata, pkt_mark=spec.pkt_mark)
    in_text = _port_text(port, req.names)
    first = flow_text(frame, in_text, meta)
    root = Node(BRIDGE, f'bridge("{req.bridge}")')
    rec.stack.append(root.subs)
    top.rec = rec
    if port is None:
        root.subs.append(Node(ERROR, f"received packet on unknown port {spec.in_port}"))
        root.subs.append(Node(WARN, "no input bundle, dropping"))
        final_frame, final_meta = frame, meta
    else:
        top.process(port.name, frame, meta)
        ctx = top.top_ctx
        final_frame = ctx.frame if ctx is not None else frame
        final_meta = meta if ctx is None else dataclasses.replace(
            meta, tun_id=ctx.tun_id if (ctx.tun_id or meta.tun_id is not None) else None,
            registers=tuple(ctx.regs[:max((i + 1 for i, v in enumerate(ctx.regs) if v), default=0)]),
            metadata=ctx.metadata, pkt_mark=ctx.pkt_mark)
    final = flow_text(final_frame, in_text, final_meta)
    numbers = _dp_numbers(host.ovs.show if isinstance(host.ovs.show, OvsdbShow) else None)
    out = [f"Flow: {first}\n", print_nodes([root])]
    out.append(f"\nFinal flow: {'unchanged' if final == first else final}\n")
    out.append(f"Megaflow: {_megaflow(frame, in_text, rec.looked_at, rec.normal, meta)}\n")
    out.append(f"Datapath actions: {_datapath_actions(frame, rec.outputs, numbers, bridges, req.names)}\n")
    done = 0
    while done < len(rec.recircs) and done < 64:  # each ct(table=N)'s fork, as OVS traces it after
        r = rec.recircs[done]
        done += 1
        out.append(_resumed(r, rec, bridge, numbers, bridges, req.names))
    return "".join(out)


_RULE = "=" * 79


def _resumed(r: _Recirc, first: _Recorder, bridge: Callable[[str], _TracingBridge | None],
             numbers: Mapping[str, int], bridges: Mapping[str, Bridge], names: bool) -> str:
    """One recirculation's trace: the banner, the thawed packet's flow, the tables from the one
    ``ct(table=N)`` named, its final flow, megaflow and datapath actions."""
    rec = _Recorder(bridge, first.peers)
    rec.recircs = first.recircs  # forks of forks are numbered on
    sim = r.bridge
    sim.rec, sim.top_ctx = rec, None
    port = sim._by_name[r.in_port]
    in_text = _port_text(port, names)
    head = Node(BRIDGE, f'bridge("{sim.bridge.name}")')
    thaw = Node(ACTION, "thaw", [Node(TABLE, f"Resuming from table {r.table}")])
    head.subs.append(thaw)
    rec.stack.append(head.subs)
    sim.resume(r)
    ctx = sim.top_ctx
    start = _ct_prefix(r.ident, r.meta.ct_state, r.meta.ct_zone, r.meta.ct_mark) + flow_text(r.frame, in_text, r.meta)
    if ctx is not None:
        meta = dataclasses.replace(r.meta, registers=_registers(ctx.regs), metadata=ctx.metadata,
                                   pkt_mark=ctx.pkt_mark)
        final = _ct_prefix(r.ident, ctx.ct_state, ctx.ct_zone, ctx.ct_mark) + flow_text(ctx.frame, in_text, meta)
    else:
        final = start
    megaflow = _megaflow(r.frame, in_text, rec.looked_at, rec.normal, r.meta).replace(
        "recirc_id=0,", f"recirc_id={r.ident:#x}," + (f"{rec.ct_match}," if rec.ct_match else ""), 1)
    return "".join([
        f"\n{_RULE}\nrecirc({r.ident:#x}) - resume conntrack with default ct_state=trk|new (use --ct-next to "
        f"customize)\n{_RULE}\n\n",
        f"Flow: {start}\n", print_nodes([head]),
        f"\nFinal flow: {'unchanged' if final == start else final}\n",
        f"Megaflow: {megaflow}\n",
        f"Datapath actions: {_datapath_actions(r.frame, rec.outputs, numbers, bridges, names)}\n"])


def _in_port(sim: OvsBridgeSim, text: str, flow: str) -> SimPort | None:
    if not text:
        return None
    by_name = {p.name: p for p in sim.ports}
    if text in by_name:
        return by_name[text]
    if text == "LOCAL":
        return next((p for p in sim.ports if p.number == OFPP_LOCAL), None)
    try:
        number = int(text, 0)
    except ValueError:
        raise _bad(flow, f"{text}: invalid or unknown port for in_port") from None
    return next((p for p in sim.ports if p.number == number), None)


def _port_text(port: SimPort | None, names: bool) -> str:
    if port is None:
        return "0"
    if port.number == OFPP_LOCAL:
        return "LOCAL"
    if names:
        return port_name_text(port.name)
    return str(port.number)
