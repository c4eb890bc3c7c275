"""A topology diagram of the kept hosts, in Graphviz's DOT language (``neutrino diagram``).

Each host is a box holding its Open vSwitch bridges, Linux bridges and devices; each network
namespace (``qrouter-…``, ``qdhcp-…``) is a box inside its host. Edges are what joins devices: a
bridge's ports, a Linux bridge's interfaces, a veth pair (``qvb``/``qvo``, or a root-namespace
``tap…`` and the ``qr-``/``qg-``/``ns-`` device of the same port in a namespace), a patch port and
its peer, and the tunnels between hosts (a GRE/VXLAN port's ``remote_ip`` is the other host's
``local_ip``, or the end whose own ``remote_ip`` points back). An instance's device carries the
port's address when the host shows it (:func:`neutrino.views.easyovs.port_addresses`).

Devices carry the letters of seed 000's diagram ("Networking in too much detail"): A, B, C the
instance's tap, firewall bridge and qvb; D, E br-int's qvo and patch-tun; F, G br-tun's patch-int
and tunnel on the compute host; H, I the network host's tunnel and patch-int; J its br-int's
patch-tun; K, L the router's gateway device and its br-ex end; M, N the router's interface on
br-int and in the namespace; O, P the DHCP server's device on br-int and in its namespace. These
are the simulator's letters (``sim/world.py`` ``diagram_letter``), computed here from the device
names alone, and J, which the seed's figure gives the network host's patch-tun.

:func:`render` runs Graphviz's ``dot`` (Debian's ``graphviz`` package) for SVG or PNG.

Traced packets (``neutrino diagram --trace SRC DST``) are drawn over the hosts: an edge from each
hop's device to the next one's, numbered (``1``, ``2``… forward, ``r1``, ``r2``… the reply), the
forward path and the reply each in its colour (:data:`TRACE_COLOURS`), the devices they entered
outlined in it, a note with the trace's title and outcome where it starts, and where a packet was
dropped a red octagon saying why (``dropped: security group``). A guest's hop is its instance's node
(named after the instance), the outside a node of its own.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from neutrino.errors import InvalidInput
from neutrino.host.ovsdb import Bridge, OvsdbShow
from neutrino.host.state import ROOT, HostState
from neutrino.sim.trace import Hop, Trace, VerdictKind
from neutrino.views.easyovs import port_addresses

_ID = re.compile(r"^(qvo|qvb|tap|qr-|qg-|ns-|qbr)([0-9a-f]{8}-[0-9a-f]{2})$")
_TUNNELS = ("gre", "vxlan", "geneve", "stt")


def network_host(host: HostState) -> bool:
    """A host with router or DHCP namespaces (seed 000's "network host")."""
    return any(n.startswith(("qrouter-", "qdhcp-", "snat-")) for n in host.namespace_names())


def letter(host: HostState, bridge: str, device: str, namespace: str = ROOT, peer_namespace: str = "") -> str:
    """Seed 000's letter for ``device`` (on ``bridge``, or in ``namespace``), or ``""``."""
    net = network_host(host)
    prefix = device[:3]
    if bridge.startswith("qbr") and namespace == ROOT:
        return {"tap": "A", "qvb": "C"}.get(prefix, "B" if device == bridge else "")
    if bridge:
        if prefix == "qvo":
            return "D"
        if device == "patch-tun":
            return "J" if net else "E"
        if device == "patch-int":
            return "I" if net else "F"
        if device.startswith(tuple(f"{t}-" for t in _TUNNELS)):
            return "H" if net else "G"
        if prefix == "qg-" or (bridge == "br-ex" and prefix == "tap"):
            return "L"
        if prefix == "qr-" or (prefix == "tap" and peer_namespace.startswith("qrouter-")):
            return "M"
        if prefix == "tap" and peer_namespace.startswith("qdhcp-"):
            return "O"
        return ""
    if prefix == "qr-":
        return "N"
    if prefix == "qg-":
        return "K"
    if namespace.startswith("qdhcp-") and device != "lo":
        return "P"
    return ""


@dataclass
class _Graph:
    lines: list[str] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)  # node id -> its label

    def node(self, nid: str, label: str, indent: str, **attrs: str) -> None:
        if nid in self.nodes:
            return
        self.nodes[nid] = label
        extra = "".join(f", {k}={_q(v)}" for k, v in attrs.items())
        self.lines.append(f"{indent}{_q(nid)} [label={_q(label)}{extra}];")

    def edge(self, a: str, b: str, **attrs: str) -> None:
        extra = ", ".join(f"{k}={_q(v)}" for k, v in attrs.items())
        self.edges.append(f"  {_q(a)} -- {_q(b)}" + (f" [{extra}]" if extra else "") + ";")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _bridges(host: HostState) -> tuple[Bridge, ...]:
    show = host.ovs.show
    if show is None:
        return ()
    return show.bridges if isinstance(show, OvsdbShow) else show.bridges()


def _dev_label(name: str, mark: str, extra: str = "") -> str:
    return (f"({mark}) " if mark else "") + name + (f"\n{extra}" if extra else "")


def _host_graph(g: _Graph, host: HostState) -> list[tuple[str, str, str, str]]:
    """Draw ``host`` into ``g``; return its tunnel ends (node, type, local_ip, remote_ip)."""
    h = host.name
    ns_of: dict[str, str] = {}  # device -> namespace, for devices inside a namespace
    for ns in host.namespaces:
        if ns.name != ROOT:
            for lk in ns.links or ():
                if lk.name != "lo":
                    ns_of[lk.name] = ns.name
    by_id = {m.group(2): (dev, nsn) for dev, nsn in ns_of.items() if (m := _ID.match(dev))}
    addrs = port_addresses(host)
    tunnels: list[tuple[str, str, str, str]] = []

    def nid(device: str) -> str:
        return f"{h}/{device}"

    g.lines.append(f"  subgraph {_q('cluster_' + h)} {{")
    g.lines.append(f"    label={_q('host ' + h + (' (network)' if network_host(host) else ''))}; style=rounded;"
                   " color=gray40; fontname=Helvetica;")
    pending_ns: dict[str, list[tuple[str, str, int | None]]] = {}
    for br in _bridges(host):
        g.node(nid(br.name), f"OVS bridge\n{br.name}", "    ", shape="box", style="filled,bold",
               fillcolor="lightsteelblue1")
        for port in br.ports:
            if port.name == br.name:
                continue
            iface = port.interfaces[0] if port.interfaces else None
            kind = iface.type if iface is not None else None
            m = _ID.match(port.name)
            peer_ns = by_id.get(m.group(2), ("", ""))[1] if m else ""
            mark = letter(host, br.name, port.name, ROOT, peer_ns)
            extra = f"tag {port.tag}" if port.tag is not None else ""
            if kind in _TUNNELS and iface is not None:
                extra = f"{kind} to {iface.option('remote_ip') or '?'}"
                tunnels.append((nid(port.name), kind, iface.option("local_ip") or "", iface.option("remote_ip") or ""))
            if port.name in ns_of:  # an internal port moved into a namespace: drawn there
                pending_ns.setdefault(ns_of[port.name], []).append((port.name, br.name, port.tag))
                continue
            g.node(nid(port.name), _dev_label(port.name, mark, extra), "    ", shape="ellipse")
            g.edge(nid(br.name), nid(port.name))
            if kind == "patch" and iface is not None and iface.option("peer"):
                peer = iface.option("peer") or ""
                if port.name < peer:
                    g.edge(nid(port.name), nid(peer), style="dashed", label="patch")
    for lb in host.linux_bridges or ():
        g.node(nid(lb.name), _dev_label(lb.name, letter(host, lb.name, lb.name), "Linux bridge"), "    ",
               shape="box", style="filled", fillcolor="lightyellow")
        for dev in lb.interfaces:
            g.node(nid(dev), _dev_label(dev, letter(host, lb.name, dev)), "    ", shape="ellipse")
            g.edge(nid(lb.name), nid(dev))
            m = _ID.match(dev)
            if dev.startswith("tap") and m:
                ip, mac = addrs.get(m.group(2), ("", ""))
                vm = nid("vm-" + m.group(2))
                g.node(vm, "instance\n" + " ".join(x for x in (ip, mac) if x), "    ", shape="component",
                       style="filled", fillcolor="honeydew")
                g.edge(vm, nid(dev), label="eth0")
    root = host.namespace(ROOT)
    for lk in root.links or () if root is not None else ():
        if lk.peer and lk.name.startswith("qvb") and lk.peer.startswith("qvo"):
            g.edge(nid(lk.name), nid(lk.peer), label="veth")
    for ns in host.namespaces:
        if ns.name == ROOT:
            continue
        g.lines.append(f"    subgraph {_q('cluster_' + h + '/' + ns.name)} {{")
        g.lines.append(f"      label={_q('namespace ' + ns.name)}; style=dashed; color=gray50;")
        for lk in ns.links or ():
            if lk.name == "lo":
                continue
            addr = next((f"{a.interface}" for a in lk.addresses if a.interface.version == 4), "")
            g.node(nid(lk.name), _dev_label(lk.name, letter(host, "", lk.name, ns.name), addr), "      ",
                   shape="ellipse")
        g.lines.append("    }")
        for dev, br_name, tag in pending_ns.get(ns.name, []):
            mark = letter(host, br_name, dev, ROOT, ns.name)
            g.edge(nid(br_name), nid(dev), label="internal" + (f", tag {tag}" if tag is not None else "")
                   + (f" ({mark})" if mark else ""))
    for ident, (dev, _ns) in by_id.items():  # veth pairs: tap<id> in the root namespace, qr-/qg-/ns-<id> inside
        root_dev = next((p.name for br in _bridges(host) for p in br.ports
                         if p.name.endswith(ident) and p.name not in ns_of), None)
        if root_dev is not None:
            g.edge(nid(root_dev), nid(dev), label="veth")
    g.lines.append("  }")
    return tunnels


def diagram_dot(hosts: list[HostState], traces: Sequence[tuple[str, Trace]] = ()) -> str:
    """The DOT text of ``hosts`` and the tunnels between them; with ``traces`` (each a title such as
    ``cirros -> 8.8.8.8 icmp`` and its :class:`~neutrino.sim.trace.Trace`), each traced path drawn
    over it (:func:`_overlay`)."""
    if not hosts:
        raise InvalidInput("no hosts to draw: bring a cloud up (neutrino up) or import a host first")
    g = _Graph()
    g.lines += ["graph neutrino {", '  graph [rankdir=LR, fontname=Helvetica, fontsize=12, nodesep=0.3, '
                'ranksep=0.6, labelloc=t, label="neutrino: hosts, namespaces, bridges and devices '
                '(letters: seed 000)"];', "  node [fontname=Helvetica, fontsize=10];",
                "  edge [fontname=Helvetica, fontsize=8, color=gray30];"]
    ends: list[tuple[str, str, str, str]] = []
    for host in hosts:
        ends.extend(_host_graph(g, host))
    ips = _tunnel_ips(ends)
    seen: set[frozenset[str]] = set()
    for a, kind, _local_a, remote_a in ends:
        for b, kind_b, _local_b, remote_b in ends:
            host_a, host_b = a.split("/")[0], b.split("/")[0]
            if host_a == host_b or kind != kind_b:
                continue
            key = frozenset((a, b))
            if remote_a == ips.get(host_b) and remote_b == ips.get(host_a) and key not in seen:
                seen.add(key)
                g.edge(a, b, style="bold", color="darkorange3", label=f"{kind.upper()} tunnel")
    for n, (title, trace) in enumerate(traces):
        _overlay(g, {h.name for h in hosts}, n, title, trace)
    return "\n".join(g.lines + g.edges + ["}"]) + "\n"


#: each trace's (forward, reply) colours, in the order the traces are given (SVG's colour names, which
#: Graphviz's SVG keeps as they are)
TRACE_COLOURS = (("royalblue", "forestgreen"), ("darkorchid", "darkorange"), ("teal", "olivedrab"),
                 ("maroon", "goldenrod"))
DROP_COLOUR = "red"
OUTSIDE_NODE = "outside"


def _hop_node(g: _Graph, drawn: set[str], hops: tuple[Hop, ...], i: int) -> str:
    """The node a hop entered: its device's; the instance's for a guest (its port's id is on the
    tap next to it); the bridge's for a device the plan does not hold (the simulator's wire to the
    outside on br-ex); the outside's; else a node made for it."""
    hop = hops[i]
    if hop.host not in drawn:
        if hop.host == OUTSIDE_NODE:
            g.node(OUTSIDE_NODE, "the outside\n(external network, internet)", "  ", shape="box3d",
                   style="filled", fillcolor="whitesmoke")
            return OUTSIDE_NODE
        nid = f"host {hop.host}"
        g.node(nid, f"host {hop.host}\n(not drawn)", "  ", shape="box", style="dashed")
        return nid
    device = f"{hop.host}/{hop.device}"
    if device in g.nodes:
        return device
    for j in sorted(range(len(hops)), key=lambda j: abs(j - i)):  # a guest: the instance of the tap nearest
        m = _ID.match(hops[j].device)
        if j != i and hops[j].host == hop.host and m and hop.device.startswith("eth"):
            vm = f"{hop.host}/vm-{m.group(2)}"
            if vm in g.nodes:
                return vm
    element = f"{hop.host}/{hop.element}"
    if element in g.nodes:
        return element
    g.node(device, _dev_label(hop.device, hop.letter, f"{hop.element} on host {hop.host}"), "  ", shape="ellipse",
           style="dashed")
    return device


def _overlay(g: _Graph, drawn: set[str], n: int, title: str, trace: Trace) -> None:
    """One trace over the diagram: an edge between the devices of consecutive hops, numbered, in
    the forward colour (the reply's in the reply colour), every device it entered outlined, each
    instance it names labelled with its name, and where it was dropped a red node saying why."""
    forward, back = TRACE_COLOURS[n % len(TRACE_COLOURS)]
    tag = f"trace {n + 1}" if n else "trace"
    start = f"{tag}: start"
    verdict = _verdict_text(trace)
    g.node(start, f"{tag}: {title}\n{verdict}", "  ", shape="note", style="filled", fillcolor="white",
           color=forward, fontcolor=forward)
    legs: list[tuple[Trace, str, str]] = [(trace, forward, "")]
    if trace.reply is not None:
        legs.append((trace.reply, back, "r"))
    for leg, colour, prefix in legs:
        hops = leg.hops
        nodes = [_hop_node(g, drawn, hops, i) for i in range(len(hops))]
        for i, (hop, nid) in enumerate(zip(hops, nodes, strict=True)):
            _name_guest(g, hop, nid)
            g.lines.append(f"  {_q(nid)} [color={_q(colour)}, penwidth=2.5];")
            before = nodes[i - 1] if i else (_source(g, hop, start) if not prefix else "")
            if before and before != nid:
                g.edge(before, nid, color=colour, fontcolor=colour, penwidth="2.5", dir="forward",
                       constraint="false", label=f"{prefix}{i + 1}")
        if leg.verdict.kind is VerdictKind.DROPPED:
            reason = leg.verdict.reason.value if leg.verdict.reason is not None else "no reason given"
            drop = f"{tag}: dropped{' (reply)' if prefix else ''}"
            g.node(drop, f"dropped: {reason}" + (f"\nat {leg.verdict.where}" if leg.verdict.where else ""), "  ",
                   shape="octagon", style="filled", fillcolor="mistyrose", color=DROP_COLOUR, fontcolor=DROP_COLOUR,
                   penwidth="3")
            if nodes:
                g.lines.append(f"  {_q(nodes[-1])} [color={_q(DROP_COLOUR)}, penwidth=3.5];")
                g.edge(nodes[-1], drop, color=DROP_COLOUR, penwidth="3", style="dashed", constraint="false",
                       label="dropped here")


def _source(g: _Graph, first: Hop, start: str) -> str:
    """Where the forward path starts: the instance whose tap the first hop is (tied to the trace's
    note), else the note itself."""
    m = _ID.match(first.device)
    vm = f"{first.host}/vm-{m.group(2)}" if m and first.device.startswith("tap") else ""
    if vm not in g.nodes:
        return start
    g.edge(start, vm, style="dotted", constraint="false")
    return vm


def _name_guest(g: _Graph, hop: Hop, nid: str) -> None:
    """An instance's node, labelled with the instance's name the trace gives (its element)."""
    label = g.nodes.get(nid, "")
    if label.startswith("instance\n") and hop.element not in ("", "root"):
        named = f"instance {hop.element}\n" + label.split("\n", 1)[1]
        g.nodes[nid] = named
        g.lines.append(f"  {_q(nid)} [label={_q(named)}];")


def _verdict_text(trace: Trace) -> str:
    failure = trace.failure
    if failure is None:
        return "delivered" + (", the answer came back" if trace.reply is not None else "")
    where = "the reply " if failure is not trace.verdict else ""
    return f"{where}dropped: {failure.reason.value if failure.reason else 'no reply'}"


def _tunnel_ips(ends: list[tuple[str, str, str, str]]) -> dict[str, str]:
    """Each host's tunnel address: its ports' ``local_ip``, else the one address the other hosts'
    tunnels point at that its own do not."""
    hosts = {e[0].split("/")[0] for e in ends}
    ips: dict[str, str] = {}
    for h in hosts:
        mine = [e for e in ends if e[0].split("/")[0] == h]
        local = next((e[2] for e in mine if e[2]), "")
        if local:
            ips[h] = local
            continue
        others = {e[3] for e in ends if e[0].split("/")[0] != h and e[3]}
        candidates = others - {e[3] for e in mine}
        if len(candidates) == 1:
            ips[h] = candidates.pop()
    return ips


def render(dot: str, fmt: str) -> bytes:
    """``dot``'s output in ``fmt`` (``svg`` or ``png``), from Graphviz's ``dot`` program."""
    exe = shutil.which("dot")
    if exe is None:
        raise InvalidInput(f"drawing {fmt} needs Graphviz's dot program (Debian: apt-get install graphviz); "
                           "--format dot prints the graph's text")
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise InvalidInput(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout
