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

import functools
import operator
import uuid

from neutrino.host import ovsdb
from neutrino.host.ofctl_show import OfctlShow, OfPort
from neutrino.host.openflow import Flow, FlowDump, format_add_flow
from neutrino.host.openflow_fields import ReservedPort
from neutrino.host.state import ROOT, BridgeFlows, HostState, NamespaceState, Origin, OvsState
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
    PlannedPort,
    device_mac,
    int_bridge_flows,
    int_bridge_ports,
    local_vlans,
    plugged_ports,
)
from neutrino.plan.ovs_kept import Kept
from neutrino.plan.ovs_phys import phys_bridge_flows, phys_bridge_ports
from neutrino.plan.ovs_tun import tun_bridge_flows, tun_bridge_ports
from neutrino.plan.vif import hybrid_plug
from neutrino.scenarios.model import Host
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
    """
    ctx = ovs_context(cloud, host, generation=generation, cookie=cookie, datapath_type=datapath_type,
                      arp_responder=arp_responder, uplinks=uplinks)
    plugs = plugged_ports(ctx)
    vlans = local_vlans(ctx)
    ports = (*int_bridge_ports(ctx, plugs, vlans), *tun_bridge_ports(ctx, vlans), *phys_bridge_ports(ctx, plugs))
    ofports = Ofports.number(ports)
    flows = (*int_bridge_flows(ctx, plugs, vlans, ofports), *ovs_firewall_flows(ctx, plugs, vlans, ofports),
             *tun_bridge_flows(ctx, plugs, vlans, ofports),
             *phys_bridge_flows(ctx, plugs, vlans, ofports))
    links, brctl, link_origins = hybrid_plug(ctx, plugs)
    show = _show(ctx, ports)
    by_bridge: dict[str, list[Flow]] = {}
    flow_origins: list[Origin] = []
    for f in flows:
        if isinstance(f, FlowBatch):
            by_bridge.setdefault(f.bridge, []).extend(f.flows)
            flow_origins += f.origins
        else:
            by_bridge.setdefault(f.bridge, []).append(f.flow)
            flow_origins.append(Origin("flow", f.text, f.obj, f.builder))
    bridges = tuple(_bridge_flows(ctx, br.name, ports, by_bridge.get(br.name, []), ofports) for br in show.bridges)
    origins = (*(Origin("bridge", br.name, f"host {ctx.host.name}", "plan_ovs") for br in show.bridges),
               *(_port_origin(p.row.name, p.obj, p.builder) for p in ports),
               *flow_origins,
               *link_origins)
    namespaces = (NamespaceState(ROOT, links=links),) if links else ()
    return HostState(ctx.host.name, namespaces=namespaces, ovs=OvsState(show, bridges),
                     linux_bridges=brctl if brctl else None, origins=origins)


def _show(ctx: OvsContext, ports: tuple[PlannedPort, ...]) -> ovsdb.OvsdbShow:
    names = list(dict.fromkeys(p.bridge for p in ports))
    modern = ctx.modern
    bridges = []
    for name in names:
        rows = tuple(p.row for p in ports if p.bridge == name)
        if modern:
            bridges.append(ovsdb.Bridge(name, rows, (ovsdb.Controller(CONTROLLER, True),), "secure",
                                        ctx.datapath_type, protocols=PROTOCOLS))
        else:
            bridges.append(ovsdb.Bridge(name, rows))
    ident = uuid.uuid5(uuid.NAMESPACE_DNS, f"{ctx.host.name}.open-vswitch.neutrino")
    return ovsdb.OvsdbShow(ident, tuple(bridges), (ovsdb.Manager(MANAGER, True),) if modern else (),
                           style=ovsdb.QuoteStyle.MODERN if modern else ovsdb.QuoteStyle.LEGACY)


_TABLE, _PRIORITY = operator.attrgetter("table"), operator.attrgetter("priority")


@functools.lru_cache(maxsize=1 << 16)
def _port_origin(name: str, obj: str, builder: str) -> Origin:
    """(A tunnel port's origin is the same on every host with a tunnel to that host: made once.)"""
    return Origin("port", name, obj, builder)


#: (host, bridge) -> the bridge's ``ovs-ofctl show`` ports, kept while its planned ports are the same
_KEPT_OFPORTS: Kept[tuple[OfPort, ...]] = Kept()


def _bridge_flows(ctx: OvsContext, bridge: str, ports: tuple[PlannedPort, ...], flows: list[Flow],
                  ofports: Ofports) -> BridgeFlows:
    """One bridge's flows (by table, then priority, highest first, as a dump reads; ties in planned
    order: both sorts are stable) and port numbers."""
    mine = sorted(sorted(flows, key=_PRIORITY, reverse=True), key=_TABLE)
    own = tuple(p for p in ports if p.bridge == bridge)
    local = next(p for p in own if p.local)
    local_mac = local.mac or device_mac(ctx.host.name, bridge)

    def make() -> tuple[OfPort, ...]:  # numbered by the bridge's own ports alone (Ofports.number)
        of = [OfPort(ofports.of(bridge, p.row.name), p.row.name,
                     p.mac or device_mac(ctx.host.name, bridge, p.row.name)) for p in own if not p.local]
        return (*of, OfPort(ReservedPort.LOCAL, bridge, local_mac))
    modern = ctx.modern
    show = OfctlShow(dpid=local_mac.value, n_tables=254, n_buffers=0 if modern else 256, capabilities=CAPABILITIES,
                     actions=ACTIONS_MODERN if modern else ACTIONS_LEGACY,
                     ports=_KEPT_OFPORTS.get((ctx.host.name, bridge), own, make))
    return BridgeFlows(bridge, FlowDump(tuple(mine)), show)
