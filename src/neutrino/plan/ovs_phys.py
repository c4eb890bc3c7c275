"""The physical bridges (``bridge_mappings``: br-ex, br-eth0…) and the legacy external bridge.

Each mapped bridge gets, in the order they were added, its own port, the uplink NIC when the caller
names one (the operator adds it before the agent starts: seed 002's ``eth0`` is ofport 1 of
br-eth0), then the ``phy-<bridge>`` patch to br-int. Flows (reference §4; Grizzly/Havana as seed
002's EasyOVS dumps show): ``NORMAL`` at the lowest priority (0 modern, 1 before), ``priority=2``
drop from the patch, and per provider network on that physical network ``priority=4`` from the
patch with the local VLAN → the segment's VLAN (``strip_vlan`` for flat).

With ``external_network_bridge`` set (legacy L3, seed 000) router gateways sit on that bridge
untagged; when it is not also a mapped bridge it is an operator bridge with OVS's default flow.
"""

from __future__ import annotations

from neutrino.host import ovsdb
from neutrino.plan import naming
from neutrino.plan.ovs_int import (
    PROVIDER_TYPES,
    LocalVlan,
    Ofports,
    OvsContext,
    PlannedFlow,
    PlannedPort,
    PlugPort,
    bridge_port,
    device_mac,
    planned_flow,
)

BUILDER_PORTS = "phys_bridge_ports"
BUILDER_FLOWS = "phys_bridge_flows"
BUILDER_PROVIDER = "phys_provider_flows"
BUILDER_GATEWAY = "external_bridge_ports"


def external_bridge_needed(ctx: OvsContext, plugs: tuple[PlugPort, ...]) -> bool:
    """Whether the host has a legacy external bridge that no mapping manages (it holds gateways)."""
    bridge = ctx.external_bridge
    mapped = {b for _, b in ctx.physical_bridges}
    return bool(bridge) and bridge not in mapped and any(p.bridge == bridge for p in plugs)


def phys_bridge_ports(ctx: OvsContext, plugs: tuple[PlugPort, ...]) -> tuple[PlannedPort, ...]:
    out: list[PlannedPort] = []
    uplinks = dict(ctx.uplinks)
    entries = list(ctx.physical_bridges)
    if external_bridge_needed(ctx, plugs):
        entries.append(("", ctx.external_bridge))
    for net, bridge in entries:
        obj = f"physical network {net}" if net else f"external bridge {bridge}"
        out.append(PlannedPort(bridge, bridge_port(bridge), obj, BUILDER_PORTS, local=True,
                               mac=device_mac(ctx.host.name, bridge)))
        nic = uplinks.get(bridge)
        if nic:
            out.append(PlannedPort(bridge, ovsdb.Port(nic, (ovsdb.Interface(nic),)), f"uplink of {bridge}",
                                   BUILDER_PORTS, mac=device_mac(ctx.host.name, nic)))
        if net:
            phy = naming.phy_patch_port(bridge)
            out.append(PlannedPort(bridge, ovsdb.Port(phy, (ovsdb.Interface(
                phy, "patch", (("peer", naming.int_patch_port(bridge)),)),)), obj, BUILDER_PORTS,
                mac=device_mac(ctx.host.name, bridge, phy)))
        for p in plugs:
            if p.bridge == bridge:
                row = ovsdb.Port(p.name, (ovsdb.Interface(p.name, p.iface_type),))
                out.append(PlannedPort(bridge, row, f"port {p.port.id}", BUILDER_GATEWAY))
    return tuple(out)


def phys_bridge_flows(ctx: OvsContext, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...],
                      ofports: Ofports) -> tuple[PlannedFlow, ...]:
    out: list[PlannedFlow] = []
    normal = "priority=0 actions=NORMAL" if ctx.modern else "priority=1 actions=NORMAL"
    for net, bridge in ctx.physical_bridges:
        obj = f"physical network {net}"
        phy = ofports.of(bridge, naming.phy_patch_port(bridge))
        out.append(planned_flow(ctx, bridge, normal, obj, BUILDER_FLOWS))
        out.append(planned_flow(ctx, bridge, f"priority=2,in_port={phy} actions=drop", obj, BUILDER_FLOWS))
        for v in vlans:
            seg = v.segment
            if seg.network_type not in PROVIDER_TYPES or seg.physical_network != net:
                continue
            then = "strip_vlan" if seg.network_type == "flat" else f"mod_vlan_vid:{seg.segmentation_id}"
            out.append(planned_flow(ctx, bridge, f"priority=4,in_port={phy},dl_vlan={v.lvid} actions={then},NORMAL",
                                    f"network {v.network_id}", BUILDER_PROVIDER))
    if external_bridge_needed(ctx, plugs):
        out.append(planned_flow(ctx, ctx.external_bridge, "priority=0 actions=NORMAL",
                                f"external bridge {ctx.external_bridge}", BUILDER_FLOWS))
    return tuple(out)
