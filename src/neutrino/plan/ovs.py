"""The Open vSwitch agent of one host (and the os-vif hybrid plug), as a pure function.

``plan_ovs(cloud, host)`` returns the host-state fragment the OVS agent and os-vif make: the OVSDB
view (``ovs-vsctl show``), each bridge's flows and ``ovs-ofctl show`` port numbers, the hybrid
plug's links in the root namespace and its Linux bridges (``brctl show``), and an :class:`Origin`
for every port, flow and link. Two layouts (``generation``): ``GRIZZLY`` (seed 000: single-table
br-tun, ``gre-<n>`` ports, no controller or fail mode, legacy quoting) and ``MODERN`` (reference §2–5).
A :class:`~neutrino.plan.generation.Profile` may mix them (seed 002's Havana: Grizzly flows, OVS
internal ports: ``replace(profile(Generation.GRIZZLY), use_veth=False)``).

The pieces: :mod:`neutrino.plan.ovs_int` (plugged ports, local VLANs, br-int),
:mod:`neutrino.plan.ovs_tun` (br-tun), :mod:`neutrino.plan.ovs_phys` (br-ex, br-eth0…),
:mod:`neutrino.plan.vif` (tap/qbr/qvb/qvo).

Not planned here: the devices inside qrouter-/qdhcp- namespaces (and, with ``ovs_use_veth``, their
root-namespace ``tap…`` veth ends), which belong to the L3 and DHCP planners; OVS only holds their
Port rows.

>>> from neutrino.services.snapshot import CloudSnapshot
>>> from neutrino.scenarios.model import Deployment, Host
>>> host = Host("c1", frozenset({"compute"}))
>>> state = plan_ovs(CloudSnapshot(Deployment(hosts=(host,))), host)
>>> [b.name for b in state.ovs.show.bridges]
['br-int']
>>> [format_add_flow(f) for f in state.ovs.flows_of("br-int").flows.flows][:2]
['priority=65535,dl_vlan=4095 actions=drop', 'priority=0 actions=resubmit(,58)']
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
import uuid
from dataclasses import dataclass, replace

from neutrino.host import ovsdb
from neutrino.host.bridge import BridgeInfo
from neutrino.host.fastnew import maker
from neutrino.host.iproute_link import Link
from neutrino.host.ofctl_show import OfctlShow, OfPort
from neutrino.host.openflow import Flow, FlowDump, format_add_flow
from neutrino.host.openflow_fields import ReservedPort
from neutrino.host.state import ROOT, BridgeFlows, HostState, NamespaceState, Origin, OvsState
from neutrino.plan import InputsMemo, dvr, naming
from neutrino.plan.generation import Generation, Profile
from neutrino.plan.ovs_firewall import ovs_firewall_flows
from neutrino.plan.ovs_int import (
    CONTROLLER,
    MANAGER,
    PROTOCOLS,
    FlowBatch,
    LocalVlan,
    Ofports,
    OvsContext,
    PlannedFlow,
    PlannedPort,
    PlugPort,
    device_mac,
    int_bridge_flows,
    int_bridge_ports,
    local_vlans,
    new_origin,
    plugged_ports,
)
from neutrino.plan.ovs_kept import Kept
from neutrino.plan.ovs_phys import phys_bridge_flows, phys_bridge_ports
from neutrino.plan.ovs_tun import spliced, spliced_network, tun_bridge_flows, tun_bridge_ports
from neutrino.plan.vif import hybrid_plug
from neutrino.scenarios.model import Deployment, Host
from neutrino.services.snapshot import CloudSnapshot

__all__ = ["Generation", "LocalVlan", "OvsContext", "format_add_flow", "local_vlans", "plan_ovs",
           "ovs_context"]

CAPABILITIES = ("FLOW_STATS", "TABLE_STATS", "PORT_STATS", "QUEUE_STATS", "ARP_MATCH_IP")
#: OpenFlow 1.0 actions as ``ovs-ofctl show`` lists them: OVS 1.x (seed 000) and 3.x
ACTIONS_LEGACY = ("OUTPUT", "SET_VLAN_VID", "SET_VLAN_PCP", "STRIP_VLAN", "SET_DL_SRC", "SET_DL_DST", "SET_NW_SRC",
                  "SET_NW_DST", "SET_NW_TOS", "SET_TP_SRC", "SET_TP_DST", "ENQUEUE")
ACTIONS_MODERN = ("output", "enqueue", "set_vlan_vid", "set_vlan_pcp", "strip_vlan", "mod_dl_src", "mod_dl_dst",
                  "mod_nw_src", "mod_nw_dst", "mod_nw_tos", "mod_tp_src", "mod_tp_dst")


def ovs_context(cloud: CloudSnapshot, host: Host | str, *, generation: Generation | Profile = Generation.MODERN,
                cookie: int = 0, datapath_type: str = "system", arp_responder: bool = False,
                uplinks: tuple[tuple[str, str], ...] = ()) -> OvsContext:
    return OvsContext.make(cloud, host, generation, cookie=cookie, datapath_type=datapath_type,
                           arp_responder=arp_responder, uplinks=uplinks)


def plan_ovs(cloud: CloudSnapshot, host: Host | str, *, generation: Generation | Profile = Generation.MODERN,
             cookie: int = 0, datapath_type: str = "system", arp_responder: bool = False,
             uplinks: tuple[tuple[str, str], ...] = ()) -> HostState:
    """The OVS agent's and os-vif's plumbing on ``host``.

    ``cookie``: the agent's flow cookie (modern agents pick one at random; it is an input here).
    ``datapath_type``: ``system`` as on the seeds' hosts, ``netdev`` for the userspace datapath.
    ``arp_responder``: the agent option (takes effect with l2population). ``uplinks``: (bridge, NIC)
    pairs for the physical bridges' uplink ports (seed 002's ``("br-eth0", "eth0")``).

    Assembled from kept pieces where their inputs did not change (issue #17: a re-plan after one
    change remakes only what it touches): the host's own side (br-int's ports and flows, the
    hybrid plug), the port numbers with the OVSDB and ``ofctl show`` views, and each bridge's
    flows in dump order, joined per table and priority from the planned pieces (see
    :func:`_assembled`).
    """
    return planned_ovs(cloud, host, generation=generation, cookie=cookie, datapath_type=datapath_type,
                       arp_responder=arp_responder, uplinks=uplinks)[0]


@dataclass(frozen=True, slots=True)
class OvsParts:
    """What a host's OVS plan was assembled from (:func:`planned_ovs`), for :func:`replanned_flows`:
    its plugged ports, local VLANs, host side, br-tun's and the physical bridges' ports, the ports
    view, the flows' pieces (the OVS firewall's, br-tun's, the physical bridges') and the flows."""

    plugs: tuple[PlugPort, ...]
    vlans: tuple[LocalVlan, ...]
    own: _HostSide
    tun_ports: tuple[PlannedPort, ...]
    phys_ports: tuple[PlannedPort, ...]
    view: _PortsView
    fw: tuple[PlannedFlow, ...]
    tun: tuple[PlannedFlow | FlowBatch, ...]
    phys: tuple[PlannedFlow | FlowBatch, ...]
    flows: _Flows


def planned_ovs(cloud: CloudSnapshot, host: Host | str, *, generation: Generation | Profile = Generation.MODERN,
                cookie: int = 0, datapath_type: str = "system", arp_responder: bool = False,
                uplinks: tuple[tuple[str, str], ...] = ()) -> tuple[HostState, OvsParts]:
    """:func:`plan_ovs`, with what it was assembled from."""
    ctx = ovs_context(cloud, host, generation=generation, cookie=cookie, datapath_type=datapath_type,
                      arp_responder=arp_responder, uplinks=uplinks)
    plugs = plugged_ports(ctx)
    vlans = local_vlans(ctx)
    own = _host_side(ctx, plugs, vlans)
    parts = _parts(ctx, plugs, vlans, own, tun_bridge_ports(ctx, vlans), phys_bridge_ports(ctx, plugs))
    return ovs_fragment(ctx.host.name, parts), parts


def _parts(ctx: OvsContext, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...], own: _HostSide,
           tun_ports: tuple[PlannedPort, ...], phys_ports: tuple[PlannedPort, ...]) -> OvsParts:
    """:func:`planned_ovs`'s pieces from its host's plugged ports, local VLANs, host side and
    bridges' ports: the ports view and port numbers, then every bridge's flows, joined."""
    ports = (*own.ports, *tun_ports, *phys_ports)
    view = _KEPT_OFPORTS.get((ctx.host.name,), (ctx.host.name, ctx.prof, ctx.datapath_type, ports),
                             lambda: _ports_view(ctx, ports))
    ofports = view.ofports
    fw = ovs_firewall_flows(ctx, plugs, vlans, ofports)
    tun = tun_bridge_flows(ctx, plugs, vlans, ofports)
    phys = phys_bridge_flows(ctx, plugs, vlans, ofports)
    flows = _flows(ctx.host.name, (own, *fw, *tun, *phys))
    return OvsParts(plugs, vlans, own, tun_ports, phys_ports, view, fw, tun, phys, flows)


def ovs_fragment(host: str, parts: OvsParts) -> HostState:
    """The host-state fragment :func:`planned_ovs` makes of its pieces (also of the pieces
    :func:`replanned_flows` gives: the same fragment as a plan in full would make)."""
    view, flows = parts.view, parts.flows
    bridges = tuple(BridgeFlows(name, flows.dumps.get(name, _NO_FLOWS), show)
                    for name, show in view.ofctl)
    links, brctl, link_origins = parts.own.plug
    namespaces = (NamespaceState(ROOT, links=links),) if links else ()
    return HostState(host, namespaces=namespaces, ovs=OvsState(view.show, bridges),
                     linux_bridges=brctl if brctl else None,
                     origins=(*view.origins, *flows.origins, *link_origins))


def replanned_flows(cloud: CloudSnapshot, host: Host, last: OvsParts, *, generation: Profile,
                    datapath_type: str, uplinks: tuple[tuple[str, str], ...], since: object = None
                    ) -> OvsParts | None:
    """The host's OVS plan on ``cloud`` when all it is made of but br-tun's flows is what ``last``
    (its plan with the same arguments on another snapshot) was made of, as :func:`planned_ovs`
    would assemble it (the same pieces in the same order): the pieces compared are the plugged ports,
    the local VLANs, the host side (the very kept one), br-tun's and the physical bridges' ports
    (hence the same ports view and port numbers), the OVS firewall's and the physical bridges'
    flows; br-tun's flows are planned again and all flows joined. When only br-tun's ports differ
    (tunnels gained or lost, every later port renumbered: issue #17, replan18), the pieces are
    :func:`planned_ovs`'s from the very plugged ports, local VLANs and host side checked here (a new
    ports view, every bridge's flows). None when any other piece differs (the caller plans the
    host in full). ``since``: the tag of the snapshot ``last`` was planned on
    when ``cloud`` was carried from it (:func:`ovs_tun.carry_index`): then br-tun's flows are, where
    that can be told, the last ones with the changed network's edited (:func:`_spliced`)."""
    ctx = ovs_context(cloud, host, generation=generation, datapath_type=datapath_type, uplinks=uplinks)
    plugs = plugged_ports(ctx)
    if plugs is last.plugs:  # (the very ports, carried: :func:`local_vlans` reads nothing else)
        vlans = last.vlans
    elif plugs != last.plugs:
        return None
    else:
        vlans = local_vlans(ctx)
        if vlans != last.vlans:
            return None
    own = _host_side(ctx, plugs, vlans)
    if own is not last.own:  # (a host side planned on the whole snapshot, DVR's, is never the same object)
        return None
    if phys_bridge_ports(ctx, plugs) != last.phys_ports:
        return None
    tun_ports = tun_bridge_ports(ctx, vlans)
    if tun_ports != last.tun_ports:  # (tunnels gained or lost: every port number after them moves)
        return _parts(ctx, plugs, vlans, own, tun_ports, last.phys_ports)
    ofports = last.view.ofports
    fw = ovs_firewall_flows(ctx, plugs, vlans, ofports)
    phys = phys_bridge_flows(ctx, plugs, vlans, ofports)
    if fw != last.fw or phys != last.phys:
        return None
    if since is not None:
        done = _spliced(ctx, vlans, last, own, fw, since)
        if done is not None:
            return done
    tun = tun_bridge_flows(ctx, plugs, vlans, ofports)
    parts = (own, *fw, *tun, *phys)
    if all(map(operator.is_, tun, last.tun)) and len(tun) == len(last.tun):
        return last  # (the very pieces: the very flows)
    # joined from the last assembly's sections, and kept as :func:`_flows` keeps them (not compared
    # first with the kept pieces: br-tun's changed network's are new objects, compared flow by flow)
    flows = _assembled(parts, last.flows.sections)
    _KEPT_FLOWS.put(host.name, parts, flows)
    return replace(last, tun=tun, flows=flows)


def _spliced(ctx: OvsContext, vlans: tuple[LocalVlan, ...], last: OvsParts, own: _HostSide,
             fw: tuple[PlannedFlow, ...], since: object) -> OvsParts | None:
    """:func:`replanned_flows`' answer made from the last one in proportion to the change (issue
    #17, replan13), when :func:`ovs_tun.spliced_network` tells br-tun's changed network's batch
    and flood flow (the other pieces are the last ones): the batch's edits are made in br-tun's
    last dump and in the flows' origins, where :func:`_assembled` put its flows (the dump is by
    table and priority, ties in the pieces' order; the origins in the pieces' order), and its
    flood flow replaced where it was. None when that cannot be told (the caller plans br-tun's
    flows again)."""
    got = spliced_network(ctx, vlans, last.view.ofports, last.tun, since)
    if got is None:
        return None
    at, batch, flood, flows_edits, origins_edits = got
    was_batch, was_flood = last.tun[at], last.tun[at + 1]
    if not isinstance(was_batch, FlowBatch) or not isinstance(was_flood, PlannedFlow):
        return None
    flows, sections, br = last.flows, last.flows.sections, naming.BR_TUN
    kept = sections.get(id(was_batch))
    if kept is None or kept[0] is not was_batch or len(kept[1].runs) != 1 or kept[1].runs[0][0] != br:
        return None
    kb = kept[1].runs[0][1]  # the batch's (table, -priority): l2population's unicast flows
    kf = (was_flood.flow.table, -was_flood.flow.priority)
    if (was_flood.bridge != br or kf == kb or kf != (flood.flow.table, -flood.flow.priority)
            or any((f.table, -f.priority) != kb for _p, _n, new in flows_edits for f in new)):
        return None
    # what the pieces before the batch put before it: in the origins, and in br-tun's two runs
    n_origins = n_b = n_f = 0
    for part in (own, *fw, *last.tun[:at]):
        if type(part) is PlannedFlow:
            n_origins += 1
            if part.bridge == br:
                key = (part.flow.table, -part.flow.priority)
                n_b += key == kb
                n_f += key == kf
            continue
        sec = sections.get(id(part))
        if sec is None or sec[0] is not part:
            return None
        n_origins += len(sec[1].origins)
        for rbr, key, run in sec[1].runs:
            if rbr == br:
                if key == kb:
                    n_b += len(run)
                elif key == kf:
                    n_f += len(run)
    dump = flows.dumps[br].flows
    b = bisect.bisect_left(dump, kb, key=_dump_key) + n_b
    f = bisect.bisect_left(dump, kf, key=_dump_key) + n_f
    old = was_batch.flows
    if (not old or b + len(old) > len(dump) or f >= len(dump) or dump[b] is not old[0]
            or dump[b + len(old) - 1] is not old[-1] or dump[f] is not was_flood.flow):
        return None  # (not where the assembly put them: never seen)
    o = n_origins + len(was_batch.origins)  # (the flood flow's origin)
    dump_edits = [(b + pos, n, new) for pos, n, new in flows_edits]
    origin_edits = [(n_origins + pos, n, new) for pos, n, new in origins_edits]
    if flood is not was_flood:
        dump_edits.append((f, 1, (flood.flow,)))
        origin_edits.append((o, 1, (new_origin("flow", flood.text, flood.obj, flood.builder),)))
    dump_edits.sort(key=_FIRST_ITEM)  # (stable: edits at one place stay in order)
    origin_edits.sort(key=_FIRST_ITEM)
    dumps = dict(flows.dumps)
    dumps[br] = FlowDump(spliced(dump, dump_edits))
    known = dict(sections)
    del known[id(was_batch)]
    known[id(batch)] = (batch, _Section(((br, kb, batch.flows),), batch.origins))
    joined = _Flows(dumps, spliced(flows.origins, origin_edits), known)
    tun = (*last.tun[:at], batch, flood, *last.tun[at + 2:])
    _KEPT_FLOWS.put(ctx.host.name, (own, *fw, *tun, *last.phys), joined)
    return replace(last, tun=tun, flows=joined)


_FIRST_ITEM = operator.itemgetter(0)


def _dump_key(flow: Flow) -> tuple[int, int]:
    """Where a dump puts a flow: by table, then priority, highest first."""
    return flow.table, -flow.priority


@dataclass(frozen=True, slots=True)
class _HostSide:
    """What a host's OVS plan is made of that depends on the host alone (its deployment entry and
    options, its plugged ports and local VLANs), not on the rest of the cloud: br-int's ports and
    flows and the hybrid plug (links, ``brctl`` rows, their origins)."""

    ports: tuple[PlannedPort, ...]
    flows: tuple[PlannedFlow, ...]
    plug: tuple[tuple[Link, ...], tuple[BridgeInfo, ...], tuple[Origin, ...]]


#: the deployment, the host, the agent's options, its plugged ports and local VLANs
_SideInputs = tuple[Deployment, Host, Profile, int, str, bool, tuple[tuple[str, str], ...],
                    tuple[PlugPort, ...], tuple[LocalVlan, ...]]

#: per host: its :class:`_HostSide`, kept while its inputs (:data:`_SideInputs`) are equal
_KEPT_SIDES: InputsMemo[_SideInputs, _HostSide | None] = InputsMemo()


def _host_side(ctx: OvsContext, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...]) -> _HostSide:
    """br-int's ports and flows and the hybrid plug, kept by :data:`_KEPT_SIDES`: computed from a
    snapshot holding only the deployment (the other hosts left out, see :func:`_deployment_alone`),
    so they can read nothing the key does not hold. A host whose OVS agent routes distributed
    (DVR: br-int's flows read the routers and their ports) is planned on the whole snapshot."""
    inputs: _SideInputs = (_deployment_alone(ctx.cloud), ctx.host, ctx.prof, ctx.cookie, ctx.datapath_type,
                           ctx.arp_responder, ctx.uplinks, plugs, vlans)
    side = _KEPT_SIDES.get(ctx.host.name, inputs, _side_of)
    return side if side is not None else _side(ctx, plugs, vlans)


def _side_of(inputs: _SideInputs) -> _HostSide | None:
    dep, host, prof, cookie, datapath_type, arp_responder, uplinks, plugs, vlans = inputs
    ctx = OvsContext(CloudSnapshot(replace(dep, hosts=(host,))), host, prof, cookie, datapath_type, arp_responder,
                     uplinks)
    if dvr.flows_enabled(ctx.cloud, host.name, ctx.tunneling):
        return None  # (the same inputs give None again: such a host never finds a kept side)
    return _side(ctx, plugs, vlans)


def _side(ctx: OvsContext, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...]) -> _HostSide:
    ports = int_bridge_ports(ctx, plugs, vlans)
    return _HostSide(ports, int_bridge_flows(ctx, plugs, vlans, Ofports.number(ports)), hybrid_plug(ctx, plugs))


def _deployment_alone(cloud: CloudSnapshot) -> Deployment:
    """The deployment without its hosts (once per snapshot): compared in a key in full, field by
    field, it costs a few microseconds; the hosts would cost a comparison each."""
    return cloud.cached("deployment_without_hosts", lambda c: replace(c.deployment, hosts=()))


@dataclass(frozen=True, slots=True)
class _PortsView:
    """What a host's planned ports give: OpenFlow port numbers, the OVSDB view, each bridge's
    ``ofctl show`` (in the view's bridge order), and the bridges' and ports' origins."""

    ofports: Ofports
    show: ovsdb.OvsdbShow
    ofctl: tuple[tuple[str, OfctlShow], ...]
    origins: tuple[Origin, ...]


def _ports_view(ctx: OvsContext, ports: tuple[PlannedPort, ...]) -> _PortsView:
    """(Reads of ``ctx`` the host's name, the profile and the datapath type alone: the key.)"""
    ofports = Ofports.number(ports)
    by_bridge: dict[str, list[PlannedPort]] = {}  # each bridge's ports, bridges in order of first port
    for p in ports:
        own = by_bridge.get(p.bridge)
        if own is None:
            by_bridge[p.bridge] = [p]
        else:
            own.append(p)
    show = _show(ctx, by_bridge)
    ofctl = tuple((name, _ofctl_show(ctx, name, own, ofports)) for name, own in by_bridge.items())
    origins = (*(Origin("bridge", br.name, f"host {ctx.host.name}", "plan_ovs") for br in show.bridges),
               *(_port_origin(p.row.name, p.obj, p.builder) for p in ports))
    return _PortsView(ofports, show, ofctl, origins)


#: per host: its :class:`_PortsView`, kept while its planned ports are the same
_KEPT_OFPORTS: Kept[_PortsView] = Kept()


def _show(ctx: OvsContext, by_bridge: dict[str, list[PlannedPort]]) -> ovsdb.OvsdbShow:
    modern = ctx.modern
    bridges = []
    for name, own in by_bridge.items():
        rows = tuple(p.row for p in own)
        if modern:
            bridges.append(ovsdb.Bridge(name, rows, (ovsdb.Controller(CONTROLLER, True),), "secure",
                                        ctx.datapath_type, protocols=PROTOCOLS))
        else:
            bridges.append(ovsdb.Bridge(name, rows))
    ident = uuid.uuid5(uuid.NAMESPACE_DNS, f"{ctx.host.name}.open-vswitch.neutrino")
    return ovsdb.OvsdbShow(ident, tuple(bridges), (ovsdb.Manager(MANAGER, True),) if modern else (),
                           style=ovsdb.QuoteStyle.MODERN if modern else ovsdb.QuoteStyle.LEGACY)


@functools.lru_cache(maxsize=1 << 16)
def _port_origin(name: str, obj: str, builder: str) -> Origin:
    """(A tunnel port's origin is the same on every host with a tunnel to that host: made once.)"""
    return Origin("port", name, obj, builder)


#: ``OfPort(number, name, addr)``, the other fields passed as their defaults, made without the frozen
#: ``__init__`` (:mod:`neutrino.host.fastnew`): a port per tunnel, by the hundred on each host
_new_ofport = maker(OfPort)


def _ofctl_show(ctx: OvsContext, bridge: str, own: list[PlannedPort], ofports: Ofports) -> OfctlShow:
    """One bridge's ``ovs-ofctl show`` (``own``: its ports): its ports by number, then LOCAL."""
    local = next(p for p in own if p.local)
    host, number = ctx.host.name, ofports.of
    local_mac = local.mac or device_mac(host, bridge)
    of = [_new_ofport(number(bridge, p.row.name), p.row.name, p.mac or device_mac(host, bridge, p.row.name),
                      (), (), (), (), (), (), 0, 0)  # (the defaults, in field order)
          for p in own if not p.local]
    modern = ctx.modern
    return OfctlShow(dpid=local_mac.value, n_tables=254, n_buffers=0 if modern else 256, capabilities=CAPABILITIES,
                     actions=ACTIONS_MODERN if modern else ACTIONS_LEGACY,
                     ports=(*of, OfPort(ReservedPort.LOCAL, bridge, local_mac)))


# --- the bridges' flows, in dump order -----------------------------------------------------------

_NO_FLOWS = FlowDump(())

#: a run of flows of one bridge, table and priority: the bridge, (table, -priority), the flows
_Run = tuple[str, tuple[int, int], tuple[Flow, ...]]


@dataclass(frozen=True, slots=True)
class _Section:
    """A planned piece (a flow, a batch, br-int's flows) as the assembly uses it: its flows in runs
    of one bridge, table and priority (in planned order), and their origins."""

    runs: tuple[_Run, ...]
    origins: tuple[Origin, ...]


_TABLE_PRIORITY = operator.attrgetter("table", "priority")

#: id of a batch or host side -> (the piece, its section): a host's are kept with its flows
#: (:class:`_Flows`) and looked up by the next assembly of the host. The piece is held, so its id
#: is not reused while the entry lives; pieces are immutable, so a section cannot go stale.
_Sections = dict[int, tuple[object, _Section]]

_Part = PlannedFlow | FlowBatch | _HostSide


def _section(part: FlowBatch | _HostSide) -> _Section:
    """A batch's or br-int's flows as runs."""
    if isinstance(part, FlowBatch):
        br, flows = part.bridge, part.flows
        keys = list(map(_TABLE_PRIORITY, flows))
        if keys and keys.count(keys[0]) == len(keys):  # one run (l2population's, the tunnels'): as it is
            table, priority = keys[0]
            return _Section(((br, (table, -priority), flows),), part.origins)
        return _Section(tuple((br, (table, -priority), tuple(run))
                              for (table, priority), run in itertools.groupby(flows, _TABLE_PRIORITY)),
                        part.origins)
    by_bridge, origins, _sections = _joined(part.flows, {})  # br-int's flows, joined once
    return _Section(tuple((br, k, tuple(v)) for br, runs in by_bridge.items() for k, v in runs.items()), origins)


def _joined(parts: tuple[_Part, ...], known: _Sections
            ) -> tuple[dict[str, dict[tuple[int, int], list[Flow]]], tuple[Origin, ...], _Sections]:
    """The pieces' flows by bridge, then by (table, -priority) in planned order, their origins, and
    the sections of the batches and host side among them (found in ``known`` by identity, else
    made)."""
    by_bridge: dict[str, dict[tuple[int, int], list[Flow]]] = {}
    origins: list[Origin] = []
    sections: _Sections = {}
    get = known.get
    for part in parts:
        if isinstance(part, PlannedFlow):  # one flow (made afresh by each plan: not worth keeping)
            f = part.flow
            runs = by_bridge.get(part.bridge)
            if runs is None:
                runs = by_bridge[part.bridge] = {}
            key = (f.table, -f.priority)
            have = runs.get(key)
            if have is None:
                runs[key] = [f]
            else:
                have.append(f)
            origins.append(new_origin("flow", part.text, part.obj, part.builder))
            continue
        got = get(id(part))
        if got is None or got[0] is not part:
            got = (part, _section(part))
        sections[id(part)] = got
        for br, key, flows in got[1].runs:
            runs = by_bridge.get(br)
            if runs is None:
                runs = by_bridge[br] = {}
            have = runs.get(key)
            if have is None:
                runs[key] = list(flows)
            else:
                have += flows
        origins += got[1].origins
    return by_bridge, tuple(origins), sections


@dataclass(frozen=True, slots=True)
class _Flows:
    """A host's flows: each bridge's dump and every flow's origin, in planned order, and the
    sections they were joined from (for the host's next assembly)."""

    dumps: dict[str, FlowDump]
    origins: tuple[Origin, ...]
    sections: _Sections


def _assembled(parts: tuple[_Part, ...], known: _Sections) -> _Flows:
    """Each bridge's flows as a dump lists them: by table, then priority (highest first), ties in
    planned order; the pieces' runs of one table and priority joined in that order (what sorting
    every flow by table and priority, stably, gives), with no pass per flow."""
    by_bridge, origins, sections = _joined(parts, known)
    dumps = {bridge: FlowDump(tuple(itertools.chain.from_iterable(runs[k] for k in sorted(runs))))
             for bridge, runs in by_bridge.items()}
    return _Flows(dumps, origins, sections)


def _flows(host: str, parts: tuple[_Part, ...]) -> _Flows:
    """The host's flows, kept whole while its pieces are the same; else joined, reusing the
    sections of its last assembly's pieces that are still among them."""
    last = _KEPT_FLOWS.kept.get(host)
    known = last[1].sections if last is not None else {}
    return _KEPT_FLOWS.get(host, parts, lambda p: _assembled(p, known))


#: per host: its flows, kept while the planned pieces are the same (mostly the very same objects,
#: which the comparison passes by identity)
_KEPT_FLOWS: InputsMemo[tuple[_Part, ...], _Flows] = InputsMemo()
