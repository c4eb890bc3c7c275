"""The integration bridge: which ports an OVS agent plugs into br-int, their local VLANs, br-int's flows.

This module also holds what the other OVS planner modules share: the planning context
(:class:`OvsContext`), the planned items (:class:`PlannedPort`, :class:`PlannedFlow`) and the
OpenFlow port numbers (:class:`Ofports`).

Local VLANs are handed out as the agent does (reference §2.1): 1, 2, 3… in the order networks get
their first *live* port on the host, ports taken in the snapshot's (creation) order, one per
(network, segment). A port that is administratively down, or an agent's device (DHCP, router) whose
binding failed (ML2 found no segment this host's OVS agent reaches: ``get_device_details`` gives the
agent nothing), is the agent's ``port_dead``: tag 4095 and a ``priority=2,in_port=N actions=drop``
flow, and it takes no VLAN. An instance port whose binding failed is not plugged at all (Nova refuses
a ``binding_failed`` VIF before it plugs anything). The plan depends on the cloud
alone: a network that goes away gives its VLAN number to the next one (the live agent would keep
numbers sticky until it restarts).

>>> from neutrino.services.snapshot import CloudSnapshot
>>> from neutrino.scenarios.model import Deployment, Host
>>> ctx = OvsContext.make(CloudSnapshot(Deployment()), Host("c1", frozenset({"compute"})))
>>> local_vlans(ctx)
()
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field, replace
from enum import Enum

from neutrino.errors import ParseError, PlanError
from neutrino.host import ovsdb
from neutrino.host.fastnew import maker
from neutrino.host.openflow import Action, Flow, format_add_flow, make_flow, new_flow, parse_flow
from neutrino.host.openflow import _match_field as _match_field
from neutrino.host.openflow_fields import Mac
from neutrino.host.openflow_match import EthMatch, IPv4Match, IPv6Match, MatchField, format_match
from neutrino.host.state import Origin
from neutrino.plan import dvr, naming
from neutrino.plan.generation import Generation, Profile, profile
from neutrino.plan.generation import device_mac as device_mac
from neutrino.plan.generation import device_macs as device_macs
from neutrino.plan.l3_ha import ports_plugged_on
from neutrino.plan.ovs_kept import Kept
from neutrino.scenarios.model import Host
from neutrino.services.snapshot import BINDING_FAILED, CloudSnapshot, Network, Port, Segment

T = naming.IntBrTable
#: ``Origin(kind, item, obj, builder)``, made about twice as fast (:mod:`neutrino.host.fastnew`): a
#: plan holds one per flow
new_origin = maker(Origin)
TUNNEL_TYPES = ("gre", "vxlan")
PROVIDER_TYPES = ("flat", "vlan")
CONTROLLER = "tcp:127.0.0.1:6633"
MANAGER = "ptcp:6640:127.0.0.1"
PROTOCOLS = ("OpenFlow10", "OpenFlow13", "OpenFlow14")
OVS_SYSTEM = "ovs-system"
#: encapsulation overhead per tunnel type on top of the outer IP header (reference §5.3)
ENCAP_OVERHEAD = {"vxlan": 30, "gre": 22, "geneve": 30}


class PlugKind(Enum):
    """How a Neutron port reaches Open vSwitch on its host."""

    VM_HYBRID = "vm-hybrid"  # tap → qbr → qvb/qvo; qvo on br-int (os-vif ovs_hybrid_plug)
    VM = "vm"  # the VM's tap directly on br-int
    DHCP = "dhcp"  # the DHCP agent's device (tap… on br-int)
    ROUTER = "router"  # a router interface (qr-…; Grizzly: its veth peer tap…)
    GATEWAY = "gateway"  # a router gateway (qg-…; on br-ex with external_network_bridge)
    SNAT = "snat"  # a DVR router's SNAT port (sg-…, in the snat- namespace)
    FIP_GATEWAY = "fip-gateway"  # a DVR host's floating-IP gateway (fg-…, in the fip- namespace)
    HA = "ha"  # an HA router's ha-… device (its keepalived's VRRP link)


@dataclass(frozen=True, slots=True)
class OvsContext:
    """Everything the OVS planners look at, besides the cloud itself."""

    cloud: CloudSnapshot
    host: Host
    prof: Profile
    cookie: int = 0
    datapath_type: str = "system"
    arp_responder: bool = False
    uplinks: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def make(cloud: CloudSnapshot, host: Host | str, generation: Generation | Profile = Generation.MODERN,
             *, cookie: int = 0, datapath_type: str = "system", arp_responder: bool = False,
             uplinks: tuple[tuple[str, str], ...] = ()) -> OvsContext:
        if isinstance(host, str):
            host = cloud.deployment.host(host) or Host(host, frozenset())
        return OvsContext(cloud, host, profile(generation), cookie, datapath_type, arp_responder, uplinks)

    @property
    def modern(self) -> bool:
        return self.prof.modern

    @property
    def tunnel_types(self) -> tuple[str, ...]:
        """The agent's ``tunnel_types``: the tenant network types that tunnel (none without a tunnel IP)."""
        if self.host.tunnel_ip is None:
            return ()
        return tuple(t for t in self.cloud.deployment.tenant_network_types if t in TUNNEL_TYPES)

    @property
    def tunneling(self) -> bool:
        return bool(self.tunnel_types)

    @property
    def physical_bridges(self) -> tuple[tuple[str, str], ...]:
        """``bridge_mappings`` as (physical network, bridge), in the host's order."""
        return self.host.bridge_mappings

    @property
    def external_bridge(self) -> str:
        """The legacy ``external_network_bridge`` the L3 agent plugs gateways into ("" in provider mode)."""
        return self.cloud.deployment.external_network_bridge

    def for_host(self, host: Host) -> OvsContext:
        return replace(self, host=host)


# --- planned items -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PlannedPort:
    """A Port row to put on ``bridge``; ``local`` is the bridge's own internal port (OpenFlow LOCAL)."""

    bridge: str
    row: ovsdb.Port
    obj: str
    builder: str
    local: bool = False
    mac: Mac | None = None  # the device's MAC when a planner knows it (``ovs-ofctl show`` addr)


#: ``PlannedPort(*every_field)``, ``ovsdb.Port(*every_field)`` and ``ovsdb.Interface(*every_field)``,
#: made about twice as fast: a host has a tunnel port per remote host
new_planned_port = maker(PlannedPort)
new_port_row = maker(ovsdb.Port)
new_interface = maker(ovsdb.Interface)


@dataclass(frozen=True, slots=True)
class PlannedFlow:
    """A flow for ``bridge``, its add-flow text and why it exists."""

    bridge: str
    flow: Flow
    obj: str
    builder: str
    text: str = field(default="", compare=False)  # format_add_flow(flow), as the origin names it

    def __post_init__(self) -> None:
        if not self.text:
            object.__setattr__(self, "text", format_add_flow(self.flow))


#: ``PlannedFlow(bridge, flow, obj, builder, text)`` with its ``text`` given, made about twice as fast
new_planned_flow = maker(PlannedFlow, post_init_needed=False)


@dataclass(frozen=True, slots=True)
class FlowBatch:
    """Flows for ``bridge`` planned together (l2population's per remote host), with their
    origins in the same order: what a :class:`PlannedFlow` holds, without an object per flow."""

    bridge: str
    flows: tuple[Flow, ...]
    origins: tuple[Origin, ...]


def planned_flow(ctx: OvsContext, bridge: str, text: str, obj: str, builder: str) -> PlannedFlow:
    """Parse ``text`` (add-flow form) and stamp it with the agent's cookie."""
    return _planned(bridge, text, obj, builder, ctx.cookie)


@functools.lru_cache(maxsize=1 << 17)
def _planned(bridge: str, text: str, obj: str, builder: str, cookie: int) -> PlannedFlow:
    """(Kept by all it is made from: a re-plan finds the very objects of the host's flows that did
    not change, which the kept plans compare by identity.)"""
    flow, canonical = _planned_flow(text, builder, cookie)
    return new_planned_flow(bridge, flow, obj, builder, canonical)


@functools.lru_cache(maxsize=1 << 17)
def _planned_flow(text: str, builder: str, cookie: int) -> tuple[Flow, str]:
    """The flow of ``text`` and its add-flow text (kept by all it is made from, which is not the
    object it is planned for: the same line on every host, and a re-plan's, is made once)."""
    head, sep, actions = text.partition(" actions=")
    if sep and actions and "actions=" not in head and text == text.strip() and actions == actions.strip():
        # the match and the actions separately: each recurs far more often than the whole line
        # (a remote port's MAC on every host sharing its network, an output on every host)
        try:
            hflow, htext = _head(head, builder, cookie)
            acts, atext = _parsed_actions(actions, builder)
        except ParseError:
            pass  # parsed whole below, to say what is wrong with the whole line
        else:
            return new_flow(hflow.match, acts, hflow.table, hflow.priority, hflow.cookie, hflow.cookie_mask,
                            hflow.idle_timeout, hflow.hard_timeout, hflow.importance, hflow.flags,
                            hflow.stats), htext + atext
    return _parsed_flow(text, builder, cookie)


def templated_flow(ctx: OvsContext, bridge: str, before: str, name: str, value: str, actions: str, obj: str,
                   builder: str, item: MatchField | None = None) -> PlannedFlow:
    """``planned_flow(ctx, bridge, f"{before}{name}={value} actions={actions}", obj, builder)`` for a
    line whose one varying item (:data:`_VARYING`: a MAC or an address) ends its match: the head
    from its template (parsed once per ``before``), nothing parsed or searched per line. ``item``:
    the match item ``name=value`` parses to, when the caller has it (an address's
    ``IPv4Match``/``IPv6Match`` without a mask, ``value`` being ``str`` of the address); else it
    is parsed from ``value``, once per value."""
    template = _end_template(before, name, builder, ctx.cookie)
    if template is not None:
        try:
            acts, atext = _parsed_actions(actions, builder)
        except ParseError:
            acts, atext = (), ""  # parsed whole below, to say what is wrong
        got = template.fill(value, acts, item) if atext and actions == actions.strip() else None
        if got is not None:
            return new_planned_flow(bridge, got[0], obj, builder, got[1] + atext)
    return planned_flow(ctx, bridge, f"{before}{name}={value} actions={actions}", obj, builder)


@functools.lru_cache(maxsize=1 << 14)
def _end_template(before: str, name: str, builder: str, cookie: int) -> HeadTemplate | None:
    """The template of ``before`` + ``name=<value>`` (None if ``before`` has a varying item of its own)."""
    return head_template(before, name, "", builder, cookie) if _VARYING.search(before) is None else None


#: the match items that vary per port in flows that are otherwise alike on a host (a remote port's
#: MAC, a local port's MAC, IPv4 and IPv6 addresses), each with a stand-in value of its kind
_STAND_INS = {"dl_dst": "02:00:5e:00:53:ff", "dl_src": "02:00:5e:00:53:ff", "arp_spa": "192.0.2.255",
              "arp_tpa": "192.0.2.255", "nd_target": "2001:db8::53:ff"}
_VARYING = re.compile(r"(?:^|,)(dl_dst|dl_src|arp_spa|arp_tpa|nd_target)=([^,\s]+)(?=,|$)")


@dataclass(frozen=True, slots=True)
class HeadTemplate:
    """A flow's match part with one item left open (``field``): parsed once with a stand-in value.
    ``flow`` holds the stand-in between the items ``prefix`` and ``suffix``; the add-flow text is
    ``before`` + the value's text + ``after`` (which ends with ``actions=``)."""

    flow: Flow
    field: str
    prefix: tuple[MatchField, ...]
    suffix: tuple[MatchField, ...]
    before: str
    after: str

    def fill(self, value: str, actions: tuple[Action, ...], item: MatchField | None = None
             ) -> tuple[Flow, str] | None:
        """The flow with ``value`` in the open item and ``actions``, and its head's text (None when
        ``value`` does not print as written: the caller parses the whole line instead). ``item``:
        the open item itself, if the caller made it (``value`` is then what it prints as)."""
        if item is None:
            try:
                item, text = _match_item(self.field, value)
            except ValueError:
                return None
            if text != value:
                return None
        t = self.flow
        return (make_flow(self.prefix + (item,) + self.suffix, actions, t.table, t.priority, t.cookie, t.cookie_mask,
                          t.idle_timeout, t.hard_timeout, t.importance, t.flags, t.stats),
                self.before + value + self.after)


@functools.lru_cache(maxsize=1 << 16)
def _match_item(field: str, value: str) -> tuple[MatchField, str]:
    """One match item and its value as OVS prints it (a port's MAC or address: on every host alike)."""
    item = _match_field(field, value)
    if isinstance(item, EthMatch) and item.mask is None:  # as format_match prints them, without its
        return item, str(item.mac)  # set-up
    if isinstance(item, IPv4Match | IPv6Match) and item.mask is None:
        return item, str(item.address)
    name, _, text = format_match((item,)).partition("=")
    return item, text if name == field else ""


@functools.lru_cache(maxsize=1 << 14)
def head_template(before: str, field: str, after: str, builder: str, cookie: int) -> HeadTemplate | None:
    """The template of the head ``before`` + ``field=<value>`` + ``after`` (add-flow syntax, no
    actions); None when the stand-in would not be found again (the caller parses plainly)."""
    stand_in = _STAND_INS[field]
    head = f"{before}{field}={stand_in}{after}"
    flow, text = _parsed_head(head, builder, cookie)
    item = _match_field(field, stand_in)
    key = f"{field}={stand_in}"
    if flow.match.count(item) != 1 or text.count(key) != 1 or _match_item(field, stand_in)[1] != stand_in:
        return None
    pre, _, post = text.partition(key)
    i = flow.match.index(item)
    return HeadTemplate(flow, field, flow.match[:i], flow.match[i + 1:], f"{pre}{field}=", post)


def _head(head: str, builder: str, cookie: int) -> tuple[Flow, str]:
    """:func:`_parsed_head`, with one varying item (a MAC or an address: :data:`_VARYING`) parsed as
    a template: the heads that differ only by it share one parse, its own item and text are put in
    the stand-in's place."""
    found = _VARYING.findall(head)
    if len(found) == 1:
        field, value = found[0]
        m = _VARYING.search(head)
        assert m is not None
        template = head_template(head[:m.start(1)], field, head[m.end(2):], builder, cookie)
        got = template.fill(value, ()) if template is not None else None
        if got is not None:
            return got[0], got[1]
    return _parsed_head(head, builder, cookie)


@functools.lru_cache(maxsize=1 << 17)
def _parsed_head(head: str, builder: str, cookie: int) -> tuple[Flow, str]:
    """A flow's match part, parsed with no actions, and its add-flow text up to ``actions=``."""
    flow, text = _parsed_flow(f"{head} actions=drop", builder, cookie)
    assert text.endswith("actions=drop") and not flow.actions
    return flow, text[:-len("drop")]


@functools.lru_cache(maxsize=1 << 16)
def _parsed_actions(actions: str, builder: str) -> tuple[tuple[Action, ...], str]:
    flow, text = _parsed_flow(f"actions={actions}", builder, 0)
    return flow.actions, text[len("actions="):]


@functools.lru_cache(maxsize=1 << 17)
def _parsed_flow(text: str, builder: str, cookie: int) -> tuple[Flow, str]:
    """Flows are immutable and parsing is pure: a re-plan after a change (and every host with the
    same line) parses and formats each line once."""
    flow = parse_flow(text, source=builder)
    if flow.cookie != cookie:
        flow = replace(flow, cookie=cookie)
    return flow, format_add_flow(flow)


@dataclass(frozen=True, slots=True)
class Ofports:
    """OpenFlow port numbers: on each bridge 1, 2, 3… in the order its ports were added."""

    numbers: tuple[tuple[str, str, int], ...]
    _by_name: dict[tuple[str, str], int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # the first number of a (bridge, name) counts, as with setdefault: read in reverse, it is written last
        self._by_name.update({(b, n): num for b, n, num in reversed(self.numbers)})

    @staticmethod
    def number(ports: tuple[PlannedPort, ...]) -> Ofports:
        out: list[tuple[str, str, int]] = []
        counters: dict[str, int] = {}
        for p in ports:
            if p.local:
                continue
            bridge = p.bridge
            n = counters[bridge] = counters.get(bridge, 0) + 1
            out.append((bridge, p.row.name, n))
        return Ofports(tuple(out))

    def of(self, bridge: str, name: str) -> int:
        num = self._by_name.get((bridge, name))
        if num is None:
            raise PlanError(f"no port {name} on {bridge}")
        return num

    def numbers_of(self, bridge: str) -> dict[str, int]:
        """Port name -> number on ``bridge`` (for a planner that asks for hundreds: one look-up each)."""
        out: dict[str, int] = {}
        for b, n, num in self.numbers:
            if b == bridge:
                out.setdefault(n, num)
        return out


# --- local VLANs and plugged ports ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LocalVlan:
    network_id: str
    segment: Segment
    lvid: int




@dataclass(frozen=True, slots=True)
class PlugPort:
    """A Neutron port as it sits on one of the host's bridges."""

    port: Port
    network: Network
    kind: PlugKind
    bridge: str
    name: str  # the OVS port (and interface) name
    iface_type: str | None  # "internal" for OVS internal ports, None for system devices

    @property
    def on_br_int(self) -> bool:
        return self.bridge == naming.BR_INT

    @property
    def alive(self) -> bool:
        return self.port.admin_state_up and self.port.vif_type != BINDING_FAILED


def plug_kind(port: Port) -> PlugKind | None:
    if port.is_instance_port:
        return PlugKind.VM_HYBRID if port.ovs_hybrid_plug else PlugKind.VM
    return {"network:dhcp": PlugKind.DHCP, "network:router_interface": PlugKind.ROUTER,
            "network:router_gateway": PlugKind.GATEWAY, "network:router_ha_interface": PlugKind.HA,
            "network:router_interface_distributed": PlugKind.ROUTER,
            "network:ha_router_replicated_interface": PlugKind.ROUTER, dvr.SNAT_OWNER: PlugKind.SNAT,
            dvr.FIP_GATEWAY_OWNER: PlugKind.FIP_GATEWAY}.get(port.device_owner)


def _agent_device(ctx: OvsContext, kind: PlugKind, port_id: str) -> tuple[str, str | None]:
    """The OVS port of an agent device: the device itself as an internal port, or (``ovs_use_veth``,
    Grizzly) the ``tap…`` end of its veth pair."""
    if kind is PlugKind.DHCP:
        dev = naming.dhcp_device(port_id, use_veth=ctx.prof.use_veth)
    elif kind is PlugKind.ROUTER:
        dev = naming.router_internal_device(port_id)
    elif kind is PlugKind.SNAT:
        dev = naming.snat_internal_device(port_id)
    elif kind is PlugKind.FIP_GATEWAY:
        dev = naming.fip_gateway_device(port_id)
    elif kind is PlugKind.HA:
        dev = naming.ha_device(port_id)
    else:
        dev = naming.router_gateway_device(port_id)
    if ctx.prof.use_veth:
        return naming.ovs_veth_peer(dev), None
    return dev, "internal"


def plugged_ports(ctx: OvsContext) -> tuple[PlugPort, ...]:
    """The host's Neutron ports on its OVS bridges, in the snapshot's order.

    Remembered in the (immutable) snapshot's look-up index: with l2population every host asks
    this of every other host, and the answer depends only on the snapshot, the host and the profile.
    """
    key = ("@plugged", ctx.host.name, ctx.prof, ctx.external_bridge)
    cache = ctx.cloud._index
    hit = cache.get(key)  # type: ignore[call-overload]
    if hit is None:
        hit = cache[key] = _plugged_ports(ctx)  # type: ignore[index]
    return hit  # type: ignore[no-any-return]


def live_plugs(ctx: OvsContext, host: Host) -> tuple[PlugPort, ...]:
    """``host``'s live ports on br-int (what l2population tells the other hosts about), remembered
    in the snapshot's index like :func:`plugged_ports`."""
    key = ("@live", host.name, ctx.prof, ctx.external_bridge)
    cache = ctx.cloud._index
    hit = cache.get(key)  # type: ignore[call-overload]
    if hit is None:
        hit = cache[key] = tuple(p for p in plugged_ports(ctx.for_host(host)) if p.on_br_int and p.alive)  # type: ignore[index]
    return hit  # type: ignore[no-any-return]


def _has_distributed_routers(cloud: CloudSnapshot) -> bool:
    key = ("@has_distributed_routers",)
    hit = cloud._index.get(key)  # type: ignore[call-overload]
    if hit is None:
        hit = cloud._index[key] = bool(dvr.distributed_routers(cloud))  # type: ignore[index]
    return hit  # type: ignore[no-any-return]


def _plugged_ports(ctx: OvsContext) -> tuple[PlugPort, ...]:
    out: list[PlugPort] = []
    ports = ports_plugged_on(ctx.cloud, ctx.host.name)  # bound here, and HA routers' ports
    distributed: frozenset[str] = frozenset()
    if ctx.modern and _has_distributed_routers(ctx.cloud):
        distributed = dvr.interface_ports_on(ctx.cloud, ctx.host.name)
    if distributed:  # a DVR router's qr- ports are on every host it lives on, in the snapshot's order
        mine = {p.id for p in ports} | distributed
        ports = tuple(p for p in ctx.cloud.ports if p.id in mine)
    for port in ports:
        kind = plug_kind(port)
        if kind is None or port.is_instance_port and port.vif_type == BINDING_FAILED:
            continue
        try:
            network = ctx.cloud.network(port.network_id)
        except KeyError:
            continue
        bridge = naming.BR_INT
        if kind is PlugKind.VM_HYBRID:
            name, itype = naming.qvo_device(port.id), None
        elif kind is PlugKind.VM:
            name, itype = naming.tap_device(port.id), None
        else:
            name, itype = _agent_device(ctx, kind, port.id)
            if kind in (PlugKind.GATEWAY, PlugKind.FIP_GATEWAY) and ctx.external_bridge:
                bridge = ctx.external_bridge
        out.append(PlugPort(port, network, kind, bridge, name, itype))
    return tuple(out)


def _vlan_key(p: PlugPort) -> tuple[str, Segment]:
    return (p.network.id, p.network.segment)


def local_vlans(ctx: OvsContext) -> tuple[LocalVlan, ...]:
    """The host's local VLANs: 1, 2, 3… by first live br-int port, one per (network, segment)."""
    seen: dict[tuple[str, Segment], int] = {}
    for p in plugged_ports(ctx):
        if p.on_br_int and p.alive and _vlan_key(p) not in seen:
            seen[_vlan_key(p)] = len(seen) + 1
    return tuple(LocalVlan(net, seg, lvid) for (net, seg), lvid in seen.items())


def lvid_of(vlans: tuple[LocalVlan, ...], p: PlugPort) -> int | None:
    return next((v.lvid for v in vlans if (v.network_id, v.segment) == _vlan_key(p)), None)


def network_mtu(ctx: OvsContext, network: Network) -> int:
    """The network's MTU: as the server stored it, else as ML2 computes it (reference §5.3).
    Agents before Kilo set no MTU at all: every device kept the kernel's 1500 (seeds 000, 002)."""
    if not ctx.modern:
        return 1500
    if network.mtu:
        return network.mtu
    phys = ctx.cloud.deployment.physical_mtu
    kind = network.segment.network_type
    if kind in ENCAP_OVERHEAD:
        ip_header = 40 if isinstance(ctx.host.tunnel_ip, ipaddress.IPv6Address) else 20
        return phys - ip_header - ENCAP_OVERHEAD[kind]
    return phys


# --- br-int ports and flows ----------------------------------------------------------------------

BUILDER_PORTS = "int_bridge_ports"
BUILDER_FLOWS = "int_bridge_flows"
BUILDER_PROVIDER = "int_provider_flows"
BUILDER_SPOOF = "int_anti_spoof_flows"
BUILDER_DEAD = "int_dead_port_flows"


def _patch(name: str, peer: str) -> ovsdb.Port:
    return ovsdb.Port(name, (ovsdb.Interface(name, "patch", (("peer", peer),)),))


def bridge_port(bridge: str) -> ovsdb.Port:
    return ovsdb.Port(bridge, (ovsdb.Interface(bridge, "internal"),))


def int_bridge_ports(ctx: OvsContext, plugs: tuple[PlugPort, ...],
                     vlans: tuple[LocalVlan, ...]) -> tuple[PlannedPort, ...]:
    """br-int's ports in the order they are added: its own, the patches the agent adds at start
    (modern: patch-tun then int-<phys>; Grizzly set up the physical bridges first), then devices."""
    br = naming.BR_INT
    out = [PlannedPort(br, bridge_port(br), f"host {ctx.host.name}", BUILDER_PORTS, local=True,
                       mac=device_mac(ctx.host.name, br))]
    tun = [PlannedPort(br, _patch(naming.PATCH_TUN, naming.PATCH_INT), "agent tunnel bridge", BUILDER_PORTS,
                       mac=device_mac(ctx.host.name, br, naming.PATCH_TUN))] if ctx.tunneling else []
    phys = [PlannedPort(br, _patch(naming.int_patch_port(b), naming.phy_patch_port(b)), f"physical network {net}",
                        BUILDER_PORTS, mac=device_mac(ctx.host.name, br, naming.int_patch_port(b)))
            for net, b in ctx.physical_bridges]
    out += (tun + phys) if ctx.modern else (phys + tun)
    for p in plugs:
        if not p.on_br_int:
            continue
        tag = lvid_of(vlans, p) if p.alive else naming.DEAD_VLAN_TAG
        mac = device_mac(ctx.host.name, p.name) if p.kind is PlugKind.VM_HYBRID else None
        row = ovsdb.Port(p.name, (ovsdb.Interface(p.name, p.iface_type),), tag=tag)
        out.append(PlannedPort(br, row, f"port {p.port.id}", BUILDER_PORTS, mac=mac))
    return tuple(out)


def int_bridge_flows(ctx: OvsContext, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...],
                     ofports: Ofports) -> tuple[PlannedFlow, ...]:
    """br-int's flows: the default pipeline, provider VLAN translation, dead ports, anti-spoofing."""
    br = naming.BR_INT
    agent = f"agent {ctx.host.name}"
    out: list[PlannedFlow] = []

    def add(text: str, obj: str, builder: str) -> None:
        out.append(planned_flow(ctx, br, text, obj, builder))

    if ctx.modern:
        add(f"priority=65535,dl_vlan={naming.DEAD_VLAN_TAG} actions=drop", agent, BUILDER_FLOWS)
        add(f"priority=0 actions=resubmit(,{T.PACKET_RATE_LIMIT:d})", agent, BUILDER_FLOWS)
        add(f"table={T.CANARY_TABLE:d},priority=0 actions=drop", agent, BUILDER_FLOWS)
        add(f"table={T.ARP_SPOOF_TABLE:d},priority=0 actions=drop", agent, BUILDER_FLOWS)
        for t in (T.LOCAL_EGRESS_TABLE, T.LOCAL_IP_TABLE):
            add(f"table={t:d},priority=0 actions=resubmit(,{T.PACKET_RATE_LIMIT:d})", agent, BUILDER_FLOWS)
        add(f"table={T.PACKET_RATE_LIMIT:d},priority=0 actions=resubmit(,{T.BANDWIDTH_RATE_LIMIT:d})", agent,
            BUILDER_FLOWS)
        add(f"table={T.BANDWIDTH_RATE_LIMIT:d},priority=0 actions=resubmit(,{T.TRANSIENT_TABLE:d})", agent,
            BUILDER_FLOWS)
        add(f"table={T.TRANSIENT_TABLE:d},priority=1 actions=NORMAL", agent, BUILDER_FLOWS)
        add(f"table={T.TRANSIENT_EGRESS_TABLE:d},priority=3 actions=NORMAL", agent, BUILDER_FLOWS)
    else:
        add("priority=1 actions=NORMAL", agent, BUILDER_FLOWS)
    for net, bridge in ctx.physical_bridges:
        add(f"priority=2,in_port={ofports.of(br, naming.int_patch_port(bridge))} actions=drop",
            f"physical network {net}", BUILDER_PROVIDER)
    out += provider_flows(ctx, vlans, ofports)
    for p in plugs:
        if p.on_br_int and not p.alive:
            add(f"priority=2,in_port={ofports.of(br, p.name)} actions=drop", f"port {p.port.id}", BUILDER_DEAD)
    if ctx.modern and ctx.cloud.deployment.firewall_driver != "openvswitch":
        for p in plugs:
            if p.on_br_int and p.alive:
                out += anti_spoof_flows(ctx, p, ofports.of(br, p.name))
    if ctx.modern and dvr.flows_enabled(ctx.cloud, ctx.host.name, ctx.tunneling):  # DVR (plan/dvr.py)
        out += [planned_flow(ctx, br, t, o, b) for t, o, b in
                dvr.int_flow_texts(ctx.cloud, ctx.host.name, plugs, vlans, lambda n: ofports.of(br, n))]
    return tuple(out)


def provider_flows(ctx: OvsContext, vlans: tuple[LocalVlan, ...], ofports: Ofports) -> tuple[PlannedFlow, ...]:
    """br-int's half of the provider VLAN translation (reference §4): traffic from ``int-<br>``
    with the segment's VLAN (flat: untagged) gets the local VLAN."""
    out: list[PlannedFlow] = []
    mappings = dict(ctx.physical_bridges)
    for v in vlans:
        seg = v.segment
        bridge = mappings.get(seg.physical_network or "")
        if seg.network_type not in PROVIDER_TYPES or bridge is None:
            continue
        port = ofports.of(naming.BR_INT, naming.int_patch_port(bridge))
        match = "vlan_tci=0x0000/0x1fff" if seg.network_type == "flat" else f"dl_vlan={seg.segmentation_id}"
        if not ctx.modern and seg.network_type == "flat":
            match = "dl_vlan=0xffff"
        then = f"resubmit(,{T.PACKET_RATE_LIMIT:d})" if ctx.modern else "NORMAL"
        out.append(planned_flow(ctx, naming.BR_INT, f"priority=3,in_port={port},{match} "
                                f"actions=mod_vlan_vid:{v.lvid},{then}", f"network {v.network_id}", BUILDER_PROVIDER))
    return tuple(out)


def _lla(mac: str) -> ipaddress.IPv6Address:
    """The EUI-64 link-local address of a MAC (``fe80::f816:3eff:fe11:2233``)."""
    return _lla_and_text(mac)[0]


#: a MAC as OVS prints it: six lower-case pairs of digits
_PLAIN_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def _lla_and_text(mac: str) -> tuple[ipaddress.IPv6Address, str]:
    """:func:`_lla` and its text (``str`` of it), both from the MAC's number: ``fe80:0:0:0:a:b:c:d``
    with ``b`` (``..ff``) and ``c`` (``fe..``) never zero, so the longest run of zeros is the three
    (four when ``a`` is zero) after ``fe80``, which the text leaves out as ``::``."""
    m = Mac.parse(mac).value
    iid = (((m >> 24) ^ 0x020000) << 40) | (0xFFFE << 24) | (m & 0xFFFFFF)
    a, b, c, d = iid >> 48, (iid >> 32) & 0xFFFF, (iid >> 16) & 0xFFFF, iid & 0xFFFF
    text = f"fe80::{a:x}:{b:x}:{c:x}:{d:x}" if a else f"fe80::{b:x}:{c:x}:{d:x}"
    return ipaddress.IPv6Address((0xFE80 << 112) | iid), text


def anti_spoof_flows(ctx: OvsContext, p: PlugPort, ofport: int) -> tuple[PlannedFlow, ...]:
    """ARP/NA/MAC anti-spoofing for a port with port security (reference §2.4): the table-0 diverts
    to 24/25 and the allows there. Trusted (``network:``) ports and ports without port security get
    none; an IPv4 /0 address pair turns off the ARP and NA protection."""
    port = p.port
    if port.device_owner.startswith("network:") or not port.port_security_enabled:
        return ()
    return _KEPT_SPOOF.get((ctx.host.name, port.id), (ofport, ctx.cookie, port.mac_address, port.fixed_ips,
                                                      port.allowed_address_pairs),
                           lambda: _anti_spoof_flows(ctx, port, ofport))


#: (host, port) -> the port's anti-spoofing flows, kept while what they are made of is the same
_KEPT_SPOOF: Kept[tuple[PlannedFlow, ...]] = Kept()


def _anti_spoof_flows(ctx: OvsContext, port: Port, ofport: int) -> tuple[PlannedFlow, ...]:
    obj, br = f"port {port.id}", naming.BR_INT
    # each address as its flows print it, with its match item when it is a plain address (the
    # item made from the address itself; a prefix's is parsed from its text)
    v4: dict[str, ipaddress.IPv4Address | None] = {}
    v6: dict[str, ipaddress.IPv6Address | None] = {}
    for fip in port.fixed_ips:
        ip = fip.ip_address
        if isinstance(ip, ipaddress.IPv4Address):
            v4.setdefault(str(ip), ip)
        else:
            v6.setdefault(str(ip), ip)
    pairs = port.allowed_address_pairs
    for pair in pairs:
        net = pair.ip_address
        whole = net.prefixlen == net.max_prefixlen
        text = str(net.network_address) if whole else str(net)
        if isinstance(net, ipaddress.IPv4Network):
            v4.setdefault(text, net.network_address if whole else None)
        else:
            v6.setdefault(text, net.network_address if whole else None)
    any_v4 = any(pr.ip_address.version == 4 and pr.ip_address.prefixlen == 0 for pr in pairs)
    any_v6 = any(pr.ip_address.version == 6 and pr.ip_address.prefixlen == 0 for pr in pairs)
    macs = [port.mac_address.lower()]
    if pairs:
        macs = list(dict.fromkeys(m.lower() for m in [port.mac_address] + [
            pr.mac_address for pr in pairs if pr.mac_address and pr.mac_address != port.mac_address]))
    na, arp, src, nd_before, spa_before, src_before = _spoof_kit(ofport, ctx.cookie)
    out: list[PlannedFlow] = []

    def add_templated(before: str, name: str, value: str, actions: str, item: MatchField | None = None) -> None:
        out.append(templated_flow(ctx, br, before, name, value, actions, obj, BUILDER_SPOOF, item))

    if not any_v4:
        out += (new_planned_flow(br, na[0], obj, BUILDER_SPOOF, na[1]),
                new_planned_flow(br, arp[0], obj, BUILDER_SPOOF, arp[1]))
        if not any_v6:
            targets: dict[str, ipaddress.IPv6Address | None] = {}
            for m in macs:
                lla, lla_text = _lla_and_text(m)
                targets.setdefault(lla_text, lla)
            for a, address in v6.items():
                if "/" not in a or not a.endswith("/0"):
                    targets.setdefault(a, address)
            for target, address in targets.items():
                add_templated(nd_before, "nd_target", target, f"resubmit(,{T.PACKET_RATE_LIMIT:d})",
                              None if address is None else IPv6Match("nd_target", address))
        for spa, address4 in v4.items():
            add_templated(spa_before, "arp_spa", spa, f"resubmit(,{T.MAC_SPOOF_TABLE:d})",
                          None if address4 is None else IPv4Match("arp_spa", address4))
    out.append(new_planned_flow(br, src[0], obj, BUILDER_SPOOF, src[1]))
    for mac in macs:
        # the MAC's item made from its number when it prints as written (else parsed from the text)
        add_templated(src_before, "dl_src", mac, f"resubmit(,{T.LOCAL_EGRESS_TABLE:d})",
                      EthMatch("dl_src", Mac(int(mac.replace(":", ""), 16))) if _PLAIN_MAC.fullmatch(mac) else None)
    return tuple(out)


@functools.lru_cache(maxsize=1 << 12)
def _spoof_kit(ofport: int, cookie: int) -> tuple[tuple[Flow, str], tuple[Flow, str], tuple[Flow, str], str, str, str]:
    """What the anti-spoofing flows of every port numbered ``ofport`` share (on every host alike):
    the flows (and add-flow texts) that name no address (the NA and ARP diverts to table 24, the
    divert to table 25) and the heads of the templated ones. (Kept by all it is made from.)"""
    return (_planned_flow(f"priority=10,icmp6,in_port={ofport},icmp_type=136 "
                          f"actions=resubmit(,{T.ARP_SPOOF_TABLE:d})", BUILDER_SPOOF, cookie),
            _planned_flow(f"priority=10,arp,in_port={ofport} actions=resubmit(,{T.ARP_SPOOF_TABLE:d})",
                          BUILDER_SPOOF, cookie),
            _planned_flow(f"priority=9,in_port={ofport} actions=resubmit(,{T.MAC_SPOOF_TABLE:d})", BUILDER_SPOOF,
                          cookie),
            f"table={T.ARP_SPOOF_TABLE:d},priority=2,icmp6,in_port={ofport},icmp_type=136,",
            f"table={T.ARP_SPOOF_TABLE:d},priority=2,arp,in_port={ofport},",
            f"table={T.MAC_SPOOF_TABLE:d},priority=2,in_port={ofport},")
