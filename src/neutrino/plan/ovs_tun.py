"""The tunnel bridge: br-tun's tunnel ports and flows, in both layouts.

MODERN (reference §3): tables 0/2/3/4/6/10/20/21/22 with the learn action, one flood flow per local
VLAN to that network's tunnel ports sorted by ofport; with l2population tunnel ports exist only
towards hosts that share a network with this one, the flood lists hold only those, table 20 gets a
static flow per remote port MAC and (``arp_responder``) table 21 an ARP reply per remote IPv4
address. Tunnel ports are ``vxlan-<%08x>``/``gre-<%08x>`` of the remote IP, towards the other hosts
in the order of their tunnel IPs (the server's endpoint table order).

GRIZZLY (seed 000, §3.5): table 0 only: per local VLAN ``priority=4`` out (set_tunnel, NORMAL) and a
``priority=3`` multicast in, one ``priority=3`` unicast in per *local* port MAC, and ``priority=1
drop``. Tunnel ports are named ``gre-<endpoint id>``; the server numbered endpoints as agents
registered, which the snapshot does not record, so the id is the host's 1-based position among the
tunnel hosts sorted by name (seed 000: ``compute`` 1, ``network`` 2, so compute's port is ``gre-2``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TypeVar

from neutrino.host import ovsdb
from neutrino.plan import dvr, naming
from neutrino.plan.ovs_int import (
    LocalVlan,
    Ofports,
    OvsContext,
    PlannedFlow,
    PlannedPort,
    PlugPort,
    bridge_port,
    device_mac,
    live_plugs,
    lvid_of,
    planned_flow,
)
from neutrino.scenarios.model import Host

T = naming.TunBrTable
BUILDER_PORTS = "tun_bridge_ports"
BUILDER_FLOWS = "tun_bridge_flows"
BUILDER_NETWORK = "tun_network_flows"
BUILDER_L2POP = "tun_l2pop_flows"
BUILDER_LOCAL_MAC = "tun_local_mac_flows"
_T = TypeVar("_T")


def _cached(ctx: OvsContext, key: tuple[object, ...], make: Callable[[], _T]) -> _T:
    """A fact about the whole snapshot, computed once and kept in its (immutable) look-up index."""
    cache = ctx.cloud._index
    hit = cache.get(key)  # type: ignore[call-overload]
    if hit is None:
        hit = cache[key] = make()  # type: ignore[index]
    return hit  # type: ignore[no-any-return]


def _all_tunnel_hosts(ctx: OvsContext) -> tuple[Host, ...]:
    hosts = [h for h in ctx.cloud.deployment.hosts if h.tunnel_ip is not None]
    return tuple(sorted(hosts, key=lambda h: (h.tunnel_ip.version if h.tunnel_ip else 0, int(h.tunnel_ip or 0))))


def _tunnel_hosts(ctx: OvsContext) -> list[Host]:
    """Every other host with a tunnel IP (IPv4 before IPv6, each by address)."""
    hosts = _cached(ctx, ("@tunnel_hosts",), lambda: _all_tunnel_hosts(ctx))
    me = ctx.host.name
    return [h for h in hosts if h.name != me]


def endpoint_id(ctx: OvsContext, host: Host) -> int:
    """Grizzly's tunnel endpoint id of ``host`` (see the module docstring)."""
    names = sorted(h.name for h in ctx.cloud.deployment.hosts if h.tunnel_ip is not None)
    return names.index(host.name) + 1


def _remote_plugs(ctx: OvsContext, host: Host) -> tuple[PlugPort, ...]:
    return live_plugs(ctx, host)


def _by_network(ctx: OvsContext) -> dict[str, dict[str, list[PlugPort]]]:
    """network id -> host name -> that host's live br-int ports on the network (snapshot order),
    for every host of the deployment: computed once per snapshot, profile and external bridge."""
    def make() -> dict[str, dict[str, list[PlugPort]]]:
        out: dict[str, dict[str, list[PlugPort]]] = {}
        for h in ctx.cloud.deployment.hosts:
            for p in live_plugs(ctx, h):
                out.setdefault(p.network.id, {}).setdefault(h.name, []).append(p)
        return out
    return _cached(ctx, ("@live_by_network", ctx.prof, ctx.external_bridge), make)


def _sharing_hosts(ctx: OvsContext, network_type: str, vlans: tuple[LocalVlan, ...]) -> set[str]:
    """With l2pop: the hosts with a live port on one of our networks of ``network_type``."""
    by_net = _by_network(ctx)
    out: set[str] = set()
    for v in vlans:
        if v.segment.network_type == network_type:
            out.update(by_net.get(v.network_id, {}))
    return out


def _shares(ctx: OvsContext, host: Host, network_type: str, vlans: tuple[LocalVlan, ...]) -> bool:
    """With l2pop: whether ``host`` has a live port on one of our networks of ``network_type``."""
    return host.name in _sharing_hosts(ctx, network_type, vlans)


def tunnel_port_name(ctx: OvsContext, network_type: str, host: Host) -> str:
    if ctx.modern:
        names: dict[tuple[str, str], str] = _cached(ctx, ("@tunnel_port_names",), dict)
        name = names.get((network_type, host.name))
        if name is None:  # every host names its tunnel to ``host`` alike: named once per snapshot
            name = names[(network_type, host.name)] = naming.tunnel_port(network_type, str(host.tunnel_ip))
        return name
    return naming.legacy_tunnel_port(endpoint_id(ctx, host), network_type)


def _tunnel_obj(ctx: OvsContext, host: Host) -> str:
    """``tunnel to <host> (<tunnel ip>)``: the object of a tunnel port and its flow."""
    objs: dict[str, str] = _cached(ctx, ("@tunnel_objs",), dict)
    obj = objs.get(host.name)
    if obj is None:
        obj = objs[host.name] = f"tunnel to {host.name} ({host.tunnel_ip})"
    return obj


def tunnels(ctx: OvsContext, vlans: tuple[LocalVlan, ...]) -> tuple[tuple[str, Host, str], ...]:
    """(network type, remote host, port name) of every tunnel port on the host."""
    global _LAST_TUNNELS
    key = (ctx.host.name, ctx.host.tunnel_ip, ctx.prof, ctx.tunnel_types, vlans)
    cloud, last_key, last = _LAST_TUNNELS
    if cloud is ctx.cloud and last_key == key:  # the ports' and the flows' planners ask in turn
        return last
    out = _tunnels(ctx, vlans)
    _LAST_TUNNELS = (ctx.cloud, key, out)
    return out


_LAST_TUNNELS: tuple[object, object, tuple[tuple[str, Host, str], ...]] = (None, None, ())


def _tunnels(ctx: OvsContext, vlans: tuple[LocalVlan, ...]) -> tuple[tuple[str, Host, str], ...]:
    out = []
    l2pop = ctx.cloud.deployment.l2population and ctx.modern
    hosts = _tunnel_hosts(ctx)
    for t in ctx.tunnel_types:
        sharing = _sharing_hosts(ctx, t, vlans) if l2pop else None
        for h in hosts:
            if sharing is not None and h.name not in sharing:
                continue
            out.append((t, h, tunnel_port_name(ctx, t, h)))
    return tuple(out)


def _ip_text(ctx: OvsContext, host: Host) -> str:
    texts: dict[str, str] = _cached(ctx, ("@tunnel_ip_texts",), dict)
    text = texts.get(host.name)
    if text is None:
        text = texts[host.name] = str(host.tunnel_ip)
    return text


def _tunnel_interface(ctx: OvsContext, network_type: str, name: str, remote: Host) -> ovsdb.Interface:
    local = _ip_text(ctx, ctx.host)
    remote_ip = _ip_text(ctx, remote)
    if ctx.modern:
        kind = network_type
        if network_type == "gre" and isinstance(ctx.host.tunnel_ip, ipaddress.IPv6Address):
            kind = "ip6gre"
        options = (("df_default", "true"), ("egress_pkt_mark", "0"), ("in_key", "flow"), ("local_ip", local),
                   ("out_key", "flow"), ("remote_ip", remote_ip))
        return ovsdb.Interface(name, kind, options)
    return ovsdb.Interface(name, network_type, (("in_key", "flow"), ("out_key", "flow"), ("remote_ip", remote_ip)))


def tun_bridge_ports(ctx: OvsContext, vlans: tuple[LocalVlan, ...]) -> tuple[PlannedPort, ...]:
    """br-tun: its own port, patch-int (ofport 1), then the tunnel ports."""
    if not ctx.tunneling:
        return ()
    br = naming.BR_TUN
    out = [PlannedPort(br, bridge_port(br), f"host {ctx.host.name}", BUILDER_PORTS, local=True,
                       mac=device_mac(ctx.host.name, br)),
           PlannedPort(br, ovsdb.Port(naming.PATCH_INT, (ovsdb.Interface(
               naming.PATCH_INT, "patch", (("peer", naming.PATCH_TUN),)),)), "agent tunnel bridge", BUILDER_PORTS,
               mac=device_mac(ctx.host.name, br, naming.PATCH_INT))]
    for t, h, name in tunnels(ctx, vlans):
        out.append(PlannedPort(br, ovsdb.Port(name, (_tunnel_interface(ctx, t, name, h),)),
                               _tunnel_obj(ctx, h), BUILDER_PORTS,
                               mac=device_mac(ctx.host.name, br, name)))
    return tuple(out)


def tun_bridge_flows(ctx: OvsContext, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...],
                     ofports: Ofports) -> tuple[PlannedFlow, ...]:
    if not ctx.tunneling:
        return ()
    if ctx.modern and dvr.flows_enabled(ctx.cloud, ctx.host.name, ctx.tunneling):  # DVR (plan/dvr.py)
        br, patch = naming.BR_TUN, ofports.of(naming.BR_TUN, naming.PATCH_INT)
        return _modern_flows(ctx, vlans, ofports, dvr_on=True) + tuple(
            planned_flow(ctx, br, t, o, b) for t, o, b in dvr.tun_flow_texts(ctx.cloud, ctx.host.name, plugs,
                                                                             vlans, patch))
    if ctx.modern:
        return _modern_flows(ctx, vlans, ofports)
    return _grizzly_flows(ctx, plugs, vlans, ofports)


def _grizzly_flows(ctx: OvsContext, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...],
                   ofports: Ofports) -> tuple[PlannedFlow, ...]:
    br = naming.BR_TUN
    patch = ofports.of(br, naming.PATCH_INT)
    out = [planned_flow(ctx, br, "priority=1 actions=drop", f"agent {ctx.host.name}", BUILDER_FLOWS)]
    for v in vlans:
        if v.segment.network_type not in ctx.tunnel_types:
            continue
        key, obj = v.segment.segmentation_id or 0, f"network {v.network_id}"
        out.append(planned_flow(ctx, br, f"priority=4,in_port={patch},dl_vlan={v.lvid} "
                                f"actions=set_tunnel:{key:#x},NORMAL", obj, BUILDER_NETWORK))
        out.append(planned_flow(ctx, br, f"priority=3,tun_id={key:#x},dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 "
                                f"actions=mod_vlan_vid:{v.lvid},output:{patch}", obj, BUILDER_NETWORK))
        for p in plugs:
            if p.on_br_int and p.alive and lvid_of(vlans, p) == v.lvid:
                out.append(planned_flow(ctx, br, f"priority=3,tun_id={key:#x},dl_dst={p.port.mac_address.lower()} "
                                        f"actions=mod_vlan_vid:{v.lvid},NORMAL", f"port {p.port.id}",
                                        BUILDER_LOCAL_MAC))
    return tuple(out)


def _learn(ctx: OvsContext, patch: int) -> str:
    cookie = f"cookie={ctx.cookie:#x}," if ctx.cookie else ""
    return (f"learn(table={T.UCAST_TO_TUN:d},hard_timeout=300,priority=1,{cookie}NXM_OF_VLAN_TCI[0..11],"
            "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
            f"output:OXM_OF_IN_PORT[]),output:{patch}")


def _arp_reply(mac: str, ip: ipaddress.IPv4Address) -> str:
    m = mac.lower()
    return ("load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
            f"move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:{int(m.replace(':', ''), 16):#x}->NXM_NX_ARP_SHA[],"
            f"load:{int(ip):#x}->NXM_OF_ARP_SPA[],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:{m},IN_PORT")


def _modern_flows(ctx: OvsContext, vlans: tuple[LocalVlan, ...], ofports: Ofports, *,
                  dvr_on: bool = False) -> tuple[PlannedFlow, ...]:
    br = naming.BR_TUN
    patch = ofports.of(br, naming.PATCH_INT)
    agent = f"agent {ctx.host.name}"
    l2pop = ctx.cloud.deployment.l2population
    responder = ctx.arp_responder and l2pop
    ports = tunnels(ctx, vlans)
    position = {(pt, h.name): i for i, (pt, h, _name) in enumerate(ports)}
    texts: list[tuple[str, str, str]] = [
        (f"priority=1,in_port={patch} actions=resubmit(,{T.DVR_PROCESS if dvr_on else T.PATCH_LV_TO_TUN:d})",
         agent, BUILDER_FLOWS),
        ("priority=0 actions=drop", agent, BUILDER_FLOWS)]
    for t, h, name in ports:
        texts.append((f"priority=1,in_port={ofports.of(br, name)} actions=resubmit(,{naming.TUN_TO_LV_TABLE[t]:d})",
                      _tunnel_obj(ctx, h), BUILDER_FLOWS))
    if responder:
        texts.append((f"table={T.PATCH_LV_TO_TUN:d},priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff "
                      f"actions=resubmit(,{T.ARP_RESPONDER:d})", agent, BUILDER_FLOWS))
    texts += [
        (f"table={T.PATCH_LV_TO_TUN:d},priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 "
         f"actions=resubmit(,{T.UCAST_TO_TUN:d})", agent, BUILDER_FLOWS),
        (f"table={T.PATCH_LV_TO_TUN:d},priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 "
         f"actions=resubmit(,{T.FLOOD_TO_TUN:d})", agent, BUILDER_FLOWS)]
    for table in (T.GRE_TUN_TO_LV, T.VXLAN_TUN_TO_LV, T.GENEVE_TUN_TO_LV):
        texts.append((f"table={table:d},priority=0 actions=drop", agent, BUILDER_FLOWS))
    learn = _learn(ctx, patch)
    texts.append((f"table={T.LEARN_FROM_TUN:d},priority=1 actions={learn}", agent, BUILDER_FLOWS))
    for match in ("arp,arp_tha=ff:ff:ff:ff:ff:ff", "icmp6,icmp_type=134", "icmp6,icmp_type=136"):
        texts.append((f"table={T.LEARN_FROM_TUN:d},priority=2,{match} actions={learn}", agent, BUILDER_FLOWS))
    texts += [(f"table={T.UCAST_TO_TUN:d},priority=0 actions=resubmit(,{T.FLOOD_TO_TUN:d})", agent, BUILDER_FLOWS),
              (f"table={T.ARP_RESPONDER:d},priority=0 actions=resubmit(,{T.FLOOD_TO_TUN:d})", agent, BUILDER_FLOWS),
              (f"table={T.FLOOD_TO_TUN:d},priority=0 actions=drop", agent, BUILDER_FLOWS)]
    for v in vlans:
        t = v.segment.network_type
        if t not in ctx.tunnel_types:
            continue
        key, obj = v.segment.segmentation_id or 0, f"network {v.network_id}"
        texts.append((f"table={naming.TUN_TO_LV_TABLE[t]:d},priority=1,tun_id={key:#x} "
                      f"actions=mod_vlan_vid:{v.lvid},resubmit(,{T.DVR_NOT_LEARN if dvr_on else T.LEARN_FROM_TUN:d})",
                      obj, BUILDER_NETWORK))
        flood: list[int] = []
        if not l2pop:
            flood = [ofports.of(br, name) for pt, _h, name in ports if pt == t]
        on_net = _by_network(ctx).get(v.network_id, {}) if l2pop else {}
        # with l2pop, the tunnels of this type towards hosts with live ports on the network, in
        # the tunnel ports' order
        for pos in sorted(position[(t, hn)] for hn in on_net if (t, hn) in position):
            _pt, h, name = ports[pos]
            remote = on_net[h.name]
            out_port = ofports.of(br, name)
            flood.append(out_port)
            for p in remote:
                mac = p.port.mac_address.lower()
                texts.append((f"table={T.UCAST_TO_TUN:d},priority=2,dl_vlan={v.lvid},dl_dst={mac} "
                              f"actions=strip_vlan,load:{key:#x}->NXM_NX_TUN_ID[],output:{out_port}",
                              f"port {p.port.id}", BUILDER_L2POP))
                if not responder:
                    continue
                for fip in p.port.fixed_ips:
                    if isinstance(fip.ip_address, ipaddress.IPv4Address):
                        texts.append((f"table={T.ARP_RESPONDER:d},priority=1,arp,dl_vlan={v.lvid},"
                                      f"arp_tpa={fip.ip_address} actions={_arp_reply(mac, fip.ip_address)}",
                                      f"port {p.port.id}", BUILDER_L2POP))
        if flood:
            outputs = ",".join(f"output:{n}" for n in sorted(flood))
            texts.append((f"table={T.FLOOD_TO_TUN:d},priority=1,dl_vlan={v.lvid} "
                          f"actions=strip_vlan,load:{key:#x}->NXM_NX_TUN_ID[],{outputs}", obj, BUILDER_NETWORK))
    return tuple(planned_flow(ctx, br, text, obj, b) for text, obj, b in texts)


__all__ = ["endpoint_id", "tun_bridge_flows", "tun_bridge_ports", "tunnel_port_name", "tunnels"]
