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

import bisect
import functools
import ipaddress
import itertools
import operator
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

from neutrino.host import ovsdb
from neutrino.host.openflow import Action, Flow, make_flow, new_flow
from neutrino.host.openflow_actions import Output
from neutrino.host.openflow_fields import Mac
from neutrino.host.openflow_match import EthMatch, MatchField
from neutrino.host.state import Origin
from neutrino.plan import InputsMemo, dvr, naming
from neutrino.plan.ovs_int import (
    FlowBatch,
    LocalVlan,
    Ofports,
    OvsContext,
    PlannedFlow,
    PlannedPort,
    PlugKind,
    PlugPort,
    _match_item,
    _parsed_actions,
    _parsed_flow,
    _parsed_head,
    _planned,
    bridge_port,
    device_mac,
    device_macs,
    head_template,
    live_plugs,
    lvid_of,
    new_interface,
    new_origin,
    new_planned_flow,
    new_planned_port,
    new_port_row,
    planned_flow,
    plug_kind,
)
from neutrino.plan.ovs_kept import Kept, content_id
from neutrino.scenarios.model import Host
from neutrino.services.snapshot import BINDING_FAILED, CloudSnapshot, Port

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


def _registered(ctx: OvsContext, slot: tuple[object, ...]) -> tuple[object, ...]:
    """``slot``, a table of per-network facts in the snapshot's index, listed there (under
    ``@tun_tables``) the first time it is asked for: :func:`carry_index` carries those tables."""
    index: dict[Any, Any] = ctx.cloud._index
    if slot not in index:
        tables: list[tuple[object, ...]] = index.setdefault(("@tun_tables",), [])
        if slot not in tables:
            tables.append(slot)
    return slot


def _per_network(ctx: OvsContext, kind: str, network_id: str, make: Callable[[], _T]) -> _T:
    """A fact about one network (and the profile and external bridge), computed once per snapshot
    from the network's live ports alone (``make``), in the index's table ``(kind, profile,
    external bridge)``."""
    index: dict[Any, Any] = ctx.cloud._index
    slot = (kind, ctx.prof, ctx.external_bridge)
    table: dict[str, _T] | None = index.get(slot)
    if table is None:
        table = index[_registered(ctx, slot)] = {}
    got = table.get(network_id)
    if got is None:
        got = table[network_id] = make()
    return got


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


def _by_network(ctx: OvsContext) -> dict[str, dict[str, list[Port]]]:
    """network id -> host name -> that host's live br-int ports on the network (snapshot order),
    for every host of the deployment: computed once per snapshot, profile and external bridge."""
    def make() -> dict[str, dict[str, list[Port]]]:
        out: dict[str, dict[str, list[Port]]] = {}
        cloud = ctx.cloud
        if _only_bound_ports(ctx):  # a host's ports are those bound to it: one pass over the ports
            return _bound_by_network(cloud, ctx.external_bridge, cloud.ports)
        for h in cloud.deployment.hosts:
            for p in live_plugs(ctx, h):
                out.setdefault(p.network.id, {}).setdefault(h.name, []).append(p.port)
        return out
    return _cached(ctx, _registered(ctx, ("@live_by_network", ctx.prof, ctx.external_bridge)), make)


def _bound_by_network(cloud: CloudSnapshot, external_bridge: str, ports: Iterable[Port]
                      ) -> dict[str, dict[str, list[Port]]]:
    """:func:`_by_network` of ``ports`` (the snapshot's, or one network's, in the snapshot's order)
    when every host's plugged ports are those bound to it."""
    out: dict[str, dict[str, list[Port]]] = {}
    hosts = {h.name for h in cloud.deployment.hosts}
    external = (PlugKind.GATEWAY, PlugKind.FIP_GATEWAY) if external_bridge else ()
    networks = {n.id for n in cloud.networks}
    for port in ports:
        if (port.binding_host in hosts and port.admin_state_up and port.vif_type != BINDING_FAILED
                and port.network_id in networks
                and (port.is_instance_port  # (plugged as a VM, hybrid or not: no need to ask which)
                     or (kind := plug_kind(port)) is not None and kind not in external)):
            out.setdefault(port.network_id, {}).setdefault(port.binding_host, []).append(port)
    return out


def _only_bound_ports(ctx: OvsContext) -> bool:
    """Whether every host's plugged ports are just the ports bound to it (as :func:`plugged_ports`
    finds them): no HA router (whose ports are plugged on each of its hosts) and no distributed one
    (whose interfaces are on every host it lives on)."""
    return _bound_only(ctx.cloud, ctx.modern)


def _bound_only(cloud: CloudSnapshot, modern: bool) -> bool:
    return not any(r.ha and r.admin_state_up for r in cloud.routers) and not (
        modern and dvr.distributed_routers(cloud))


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
            name = names[(network_type, host.name)] = _tunnel_port(network_type, str(host.tunnel_ip))
        return name
    return naming.legacy_tunnel_port(endpoint_id(ctx, host), network_type)


@functools.lru_cache(maxsize=1 << 14)
def _tunnel_port(network_type: str, remote_ip: str) -> str:
    """:func:`naming.tunnel_port`, a pure function of its two strings: a fresh snapshot names its
    tunnels without hashing the addresses again."""
    return naming.tunnel_port(network_type, remote_ip)


def _tunnel_obj(ctx: OvsContext, host: Host) -> str:
    """``tunnel to <host> (<tunnel ip>)``: the object of a tunnel port and its flow."""
    objs: dict[str, str] = _cached(ctx, ("@tunnel_objs",), dict)
    obj = objs.get(host.name)
    if obj is None:
        obj = objs[host.name] = f"tunnel to {host.name} ({host.tunnel_ip})"
    return obj


def _tunnel_objs(ctx: OvsContext, ports: tuple[tuple[str, Host, str], ...]) -> list[str]:
    """:func:`_tunnel_obj` of each tunnel's remote host (the snapshot's table looked up once)."""
    objs: dict[str, str] = _cached(ctx, ("@tunnel_objs",), dict)
    return [objs.get(h.name) or _tunnel_obj(ctx, h) for _t, h, _name in ports]


def tunnels(ctx: OvsContext, vlans: tuple[LocalVlan, ...]) -> tuple[tuple[str, Host, str], ...]:
    """(network type, remote host, port name) of every tunnel port on the host."""
    return _host_tunnels(ctx, vlans).out


class _HostTunnels:
    """A host's tunnel ports in one snapshot (its index's ``@host_tunnels``, by host name): what
    they were made from (``key``), the ports (:func:`tunnels`), with l2population the hosts sharing
    each tunnel type's networks (``sharing``, :func:`_sharing_hosts`), the networks the host's
    local VLANs are on, and what its ports' and flows' planners derive from the ports alone (made
    when first asked: the :func:`_tunnels_key`, and per :class:`Ofports` the numbers and layout)."""

    __slots__ = ("key", "out", "sharing", "networks", "tkey", "view", "ports")

    def __init__(self, key: tuple[object, ...], out: tuple[tuple[str, Host, str], ...],
                 sharing: dict[str, set[str]] | None, networks: frozenset[str]) -> None:
        self.key, self.out, self.sharing, self.networks = key, out, sharing, networks
        self.tkey: tuple[str, ...] | None = None
        self.view: _TunnelView | None = None
        #: (the host's tunnel IP, the profile, br-tun's planned ports) as :func:`tun_bridge_ports` last made them
        self.ports: tuple[str, object, tuple[PlannedPort, ...]] | None = None


_LAST_CLOUD: object = None

#: per :class:`Ofports` (held, compared by identity): the tunnel ports' numbers, each type's
#: remote host -> position, the remote hosts' names, and [the layout token, (cookie, the tunnel-in
#: flows)] (None: not made yet)
_TunnelView = tuple[Ofports, tuple[int, ...], dict[str, dict[str, int]], list[str], list[Any]]


def _host_tunnels(ctx: OvsContext, vlans: tuple[LocalVlan, ...]) -> _HostTunnels:
    global _LAST_CLOUD
    _LAST_CLOUD = ctx.cloud  # (the snapshot last asked about lives until the next, as it did before)
    per: dict[str, _HostTunnels] = _cached(ctx, ("@host_tunnels",), dict)
    host = ctx.host
    key = (host.name, host.tunnel_ip, ctx.prof, ctx.tunnel_types, ctx.external_bridge, vlans)
    got = per.get(host.name)
    if got is not None and got.key == key:  # (the ports' and the flows' planners ask in turn)
        return got
    got = _derived_tunnels(ctx, key, vlans)
    if got is None:
        out, sharing = _tunnels(ctx, vlans)
        got = _HostTunnels(key, out, sharing, frozenset(v.network_id for v in vlans))
    per[host.name] = got
    return got


def _derived_tunnels(ctx: OvsContext, key: tuple[object, ...], vlans: tuple[LocalVlan, ...]) -> _HostTunnels | None:
    """The host's tunnels in the snapshot it was planned in last, when this snapshot was carried
    from that one (:func:`carry_index`) and the networks that changed between them left the host's
    sharing hosts as they were: then its tunnel ports are the same (the very tuple, with what was
    derived from it). None when that cannot be told."""
    before: _Before | None = ctx.cloud._index.get(("@tunnels_before",))  # type: ignore[call-overload]
    if before is None:
        return None
    dirty, old_entries, old_by_nets, moved = before
    old = old_entries.get(ctx.host.name)
    old_by_net = old_by_nets.get((ctx.prof, ctx.external_bridge))
    if old is None or old.key != key or old.sharing is None or old_by_net is None:
        return None
    by_net = _by_network(ctx)
    # A network's hosts (:func:`_by_network`: every host's ports are its bound ones, else nothing
    # was carried) can differ between the two snapshots only by the changed ports' hosts (``moved``),
    # and the last snapshot's were all in ``sharing`` (exactly the hosts sharing the type's networks
    # there: an entry derived here keeps it so, as the checks below leave every sharing host sharing
    # and let none in): only those hosts are looked at (issue #17, replan12; it was every host of
    # the network, the same answer: tests/plan/test_replan12_checks.py compares the two).
    for t, sharing in old.sharing.items():
        of_type = [v.network_id for v in vlans if v.segment.network_type == t]
        for n in of_type:
            if n not in dirty:
                continue
            now = by_net.get(n, {})
            was = old_by_net.get(n, {})
            for h in moved:
                if h in now:
                    if h not in sharing:  # a host new to the network and to the others: a new tunnel
                        return None
                elif h in was and not any(h in by_net.get(m, ()) for m in of_type):  # shares no more
                    return None
    got = _HostTunnels(key, old.out, old.sharing, old.networks)
    got.tkey, got.view, got.ports = old.tkey, old.view, old.ports
    return got


#: what a snapshot carried from its predecessor (:func:`carry_index`) keeps of it for the hosts
#: whose networks changed: the networks that did, those hosts' :class:`_HostTunnels` there, the
#: predecessor's :func:`_by_network` per (profile, external bridge), and the changed ports' hosts
_Before = tuple[frozenset[str], dict[str, _HostTunnels], dict[tuple[object, str], dict[str, dict[str, list[Port]]]],
                frozenset[str]]


def _tunnels(ctx: OvsContext, vlans: tuple[LocalVlan, ...]
             ) -> tuple[tuple[tuple[str, Host, str], ...], dict[str, set[str]] | None]:
    out = []
    l2pop = ctx.cloud.deployment.l2population and ctx.modern
    rank = _tunnel_rank(ctx)
    hosts = _tunnel_hosts(ctx) if not l2pop or rank is None else []
    me = ctx.host.name
    shares: dict[str, set[str]] | None = {} if l2pop and rank is not None else None
    for t in ctx.tunnel_types:
        if shares is not None and rank is not None:  # the sharing hosts alone, in the tunnel hosts' order
            sharing = shares[t] = _sharing_hosts(ctx, t, vlans)
            found = sorted(rank[n] for n in sharing if n != me and n in rank)
            names: dict[tuple[str, str], str] = _cached(ctx, ("@tunnel_port_names",), dict)
            for _i, h in found:
                name = names.get((t, h.name))
                out.append((t, h, name if name is not None else tunnel_port_name(ctx, t, h)))
            continue
        sharing_or_none = _sharing_hosts(ctx, t, vlans) if l2pop else None
        for h in hosts:
            if sharing_or_none is not None and h.name not in sharing_or_none:
                continue
            out.append((t, h, tunnel_port_name(ctx, t, h)))
    return tuple(out), shares


def _tunnel_rank(ctx: OvsContext) -> dict[str, tuple[int, Host]] | None:
    """host name -> (its place among the tunnel hosts, the host); None if two share a name."""
    def make() -> dict[str, tuple[int, Host]] | None:
        hosts = _all_tunnel_hosts(ctx)
        rank = {h.name: (i, h) for i, h in enumerate(hosts)}
        return rank if len(rank) == len(hosts) else None
    return _cached(ctx, ("@tunnel_rank",), make)


def _ip_text(ctx: OvsContext, host: Host) -> str:
    texts: dict[str, str] = _cached(ctx, ("@tunnel_ip_texts",), dict)
    text = texts.get(host.name)
    if text is None:
        text = texts[host.name] = str(host.tunnel_ip)
    return text


def _tunnel_interface(modern: bool, local_v6: bool, network_type: str, name: str, local: str,
                      remote_ip: str) -> ovsdb.Interface:
    """The Interface row of a tunnel port from this host (IP ``local``, IPv6 or not) to ``remote_ip``."""
    if modern:
        kind = network_type
        if network_type == "gre" and local_v6:
            kind = "ip6gre"
        options = (("df_default", "true"), ("egress_pkt_mark", "0"), ("in_key", "flow"), ("local_ip", local),
                   ("out_key", "flow"), ("remote_ip", remote_ip))
        return new_interface(name, kind, options, None, (), (), None)
    return new_interface(name, network_type, (("in_key", "flow"), ("out_key", "flow"), ("remote_ip", remote_ip)),
                         None, (), (), None)


def tun_bridge_ports(ctx: OvsContext, vlans: tuple[LocalVlan, ...]) -> tuple[PlannedPort, ...]:
    """br-tun: its own port, patch-int (ofport 1), then the tunnel ports."""
    if not ctx.tunneling:
        return ()
    br = naming.BR_TUN
    entry = _host_tunnels(ctx, vlans)
    ports, local, prof = entry.out, _ip_text(ctx, ctx.host), ctx.prof
    done = entry.ports
    if done is not None and done[0] == local and (done[1] is prof or done[1] == prof):
        return done[2]  # (the host's tunnels and IP as when last asked: the very ports)

    def make() -> tuple[PlannedPort, ...]:  # (a port per remote host: made by the hundred on each host)
        me, local = ctx.host.name, _ip_text(ctx, ctx.host)
        modern, v6 = ctx.modern, isinstance(ctx.host.tunnel_ip, ipaddress.IPv6Address)
        texts: dict[str, str] = _cached(ctx, ("@tunnel_ip_texts",), dict)
        objs = _tunnel_objs(ctx, ports)
        # the host's last tunnel ports, by what each is made of besides the host's IP and profile
        # (type, name, object: the remote IP is in the last two): a host that gains or loses a
        # tunnel makes only that one (issue #17, replan8)
        last = _KEPT_TUNNEL_PORTS.items.get((me,))
        made: dict[tuple[object, ...], PlannedPort] = {}
        if last is not None and last[0][:2] == (local, ctx.prof):
            k = last[0]
            made = {k[i:i + 3]: p for i, p in zip(range(2, len(k), 3), last[1], strict=True)}
        todo = [name for (t, _h, name), obj in zip(ports, objs, strict=True) if (t, name, obj) not in made]
        macs = dict(zip(todo, device_macs((me, br), todo), strict=True))
        # the modern options but the remote IP, once for the host: (… ("local_ip", local), ("out_key", "flow"))
        head = _tunnel_interface(True, v6, "vxlan", "", local, "").options[:-1]
        out = []
        for (t, h, name), obj in zip(ports, objs, strict=True):
            again = made.get((t, name, obj))
            if again is not None:
                out.append(again)
                continue
            mac = macs[name]
            remote = texts.get(h.name) or _ip_text(ctx, h)
            if modern:
                iface = new_interface(name, "ip6gre" if t == "gre" and v6 else t, (*head, ("remote_ip", remote)),
                                      None, (), (), None)
            else:
                iface = _tunnel_interface(modern, v6, t, name, local, remote)
            out.append(new_planned_port(br, new_port_row(name, (iface,), None, (), None, (), None), obj,
                                        BUILDER_PORTS, False, mac))
        return tuple(out)
    made = (*_own_ports(ctx.host.name), *_KEPT_TUNNEL_PORTS.get((ctx.host.name,), (local, prof,
                                                                                  *_tunnels_key(ctx, ports)), make))
    entry.ports = (local, prof, made)
    return made


@functools.lru_cache(maxsize=1 << 14)
def _own_ports(host: str) -> tuple[PlannedPort, PlannedPort]:
    """br-tun's own port and patch-int (ofport 1) on ``host``."""
    br = naming.BR_TUN
    return (PlannedPort(br, bridge_port(br), f"host {host}", BUILDER_PORTS, local=True, mac=device_mac(host, br)),
            PlannedPort(br, ovsdb.Port(naming.PATCH_INT, (ovsdb.Interface(
                naming.PATCH_INT, "patch", (("peer", naming.PATCH_TUN),)),)), "agent tunnel bridge", BUILDER_PORTS,
                mac=device_mac(host, br, naming.PATCH_INT)))


def _tunnels_key(ctx: OvsContext, ports: tuple[tuple[str, Host, str], ...]) -> tuple[str, ...]:
    """What the host's tunnel ports are made of: type, name, remote host and IP of each (the
    strings the snapshot's index holds: a key per host costs references, not copies)."""
    per: dict[str, _HostTunnels] = _cached(ctx, ("@host_tunnels",), dict)
    entry = per.get(ctx.host.name)
    if entry is not None and entry.out is ports and entry.tkey is not None:  # (ports and flows ask in turn)
        return entry.tkey
    objs: dict[str, str] = _cached(ctx, ("@tunnel_objs",), dict)
    key = tuple(x for t, h, name in ports for x in (t, name, objs.get(h.name) or _tunnel_obj(ctx, h)))
    if entry is not None and entry.out is ports:
        entry.tkey = key
    return key


def tun_bridge_flows(ctx: OvsContext, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...],
                     ofports: Ofports) -> tuple[PlannedFlow | FlowBatch, ...]:
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


def _learn_action(patch: int, cookie_value: int) -> str:
    cookie = f"cookie={cookie_value:#x}," if cookie_value else ""
    return (f"learn(table={T.UCAST_TO_TUN:d},hard_timeout=300,priority=1,{cookie}NXM_OF_VLAN_TCI[0..11],"
            "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
            f"output:OXM_OF_IN_PORT[]),output:{patch}")


def _arp_reply(mac: str, ip: ipaddress.IPv4Address) -> str:
    m = mac.lower()
    return ("load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
            f"move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:{int(m.replace(':', ''), 16):#x}->NXM_NX_ARP_SHA[],"
            f"load:{int(ip):#x}->NXM_OF_ARP_SPA[],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:{m},IN_PORT")


def _modern_flows(ctx: OvsContext, vlans: tuple[LocalVlan, ...], ofports: Ofports, *,
                  dvr_on: bool = False) -> tuple[PlannedFlow | FlowBatch, ...]:
    br = naming.BR_TUN
    patch = ofports.of(br, naming.PATCH_INT)
    l2pop = ctx.cloud.deployment.l2population
    responder = ctx.arp_responder and l2pop
    entry = _host_tunnels(ctx, vlans)
    ports = entry.out
    view = entry.view
    if view is None or view[0] is not ofports:  # (kept with the host's tunnels while its port numbers are)
        view = entry.view = _tunnel_view(ctx, ports, ofports)
    _of, numbers, position, remote_names, layouts = view
    head, tail = _static_flows(ctx.host.name, patch, dvr_on, responder, ctx.cookie)
    texts: list[PlannedFlow | FlowBatch] = [*head]
    if ports:  # a flow per tunnel port, alike on every host but for the object it names
        def make() -> FlowBatch:
            made = [_tunnel_in(n, naming.TUN_TO_LV_TABLE[t], ctx.cookie, obj) for n, (t, _h, _name), obj in
                    zip(numbers, ports, _tunnel_objs(ctx, ports), strict=True)]
            return FlowBatch(br, tuple(map(_FIRST, made)), tuple(map(_SECOND, made)))
        tunnel_in = layouts[1] if layouts[1] is not None and layouts[1][0] == ctx.cookie else None
        if tunnel_in is None:  # (kept with the view: made of the cookie, the numbers and the ports alone)
            tunnel_in = layouts[1] = (ctx.cookie, _KEPT_TUNNEL_FLOWS.get(
                (ctx.host.name,), (ctx.cookie, *numbers, *_tunnels_key(ctx, ports)), make))
        texts.append(tunnel_in[1])
    texts += tail
    tunnel_types = ctx.tunnel_types
    for v in vlans:
        t = v.segment.network_type
        if t not in tunnel_types:
            continue
        key, obj = v.segment.segmentation_id or 0, f"network {v.network_id}"
        texts.append(_tun_id_flow(t, key, v.lvid, dvr_on, obj, ctx.cookie))
        if not l2pop:
            flood = [ofports.of(br, name) for pt, _h, name in ports if pt == t]
            remotes: list[tuple[int, str]] = []
            contents: tuple[int, ...] = ()
        elif not responder:  # the network's flows, kept per host and network while neither the host's
            # tunnel ports nor the network's hosts and ports change: one comparison of small numbers
            layout = layouts[0]
            if layout is None:  # a number for the host's tunnel ports (made when first needed)
                layout = layouts[0] = _token(("host", ctx.host.name),
                                             (*numbers, *_tunnels_key(ctx, ports), *remote_names))
            batch, flood_flow = _KEPT_NETWORK.get(
                (ctx.host.name, v.network_id), (v.lvid, key, ctx.cookie, t, layout, _network_token(ctx, v.network_id)),
                functools.partial(_network_flows, ctx, v, key, obj, position, numbers, remote_names, responder))
            if batch is not None:
                texts.append(batch)
            if flood_flow is not None:
                texts.append(flood_flow)
            continue
        else:
            flood, remotes, contents = _network_remotes(ctx, v, position, numbers, remote_names)
        if remotes:
            texts.append(_l2pop_flows_kept(ctx, v, key, remotes, contents, responder))
        if flood:
            texts.append(_flood_flow(v.lvid, key, tuple(sorted(flood)), obj, ctx.cookie))
    return tuple(texts)


def _tunnel_view(ctx: OvsContext, ports: tuple[tuple[str, Host, str], ...], ofports: Ofports) -> _TunnelView:
    """What the flows' planner reads of the host's tunnel ports numbered by ``ofports``: their
    numbers, each type's remote host -> position, the remote hosts' names (and a slot for the
    layout token)."""
    br = naming.BR_TUN
    position: dict[str, dict[str, int]] = {}  # network type -> remote host -> its tunnel port's position
    for i, (pt, h, _name) in enumerate(ports):
        position.setdefault(pt, {})[h.name] = i
    numbered = ofports.numbers_of(br)
    numbers = tuple(numbered.get(name) or ofports.of(br, name) for _t, _h, name in ports)
    return ofports, numbers, position, [h.name for _t, h, _name in ports], [None, None]


@functools.lru_cache(maxsize=1 << 14)
def _static_flows(host: str, patch: int, dvr_on: bool, responder: bool, cookie: int
                  ) -> tuple[tuple[PlannedFlow, ...], tuple[PlannedFlow, ...]]:
    """br-tun's flows that name the agent, before and after the tunnel ports' (a pure function of
    its values: the same on every re-plan of the host)."""
    agent = f"agent {host}"
    head = [f"priority=1,in_port={patch} actions=resubmit(,{T.DVR_PROCESS if dvr_on else T.PATCH_LV_TO_TUN:d})",
            "priority=0 actions=drop"]
    tail = []
    if responder:
        tail.append(f"table={T.PATCH_LV_TO_TUN:d},priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff "
                    f"actions=resubmit(,{T.ARP_RESPONDER:d})")
    tail += [f"table={T.PATCH_LV_TO_TUN:d},priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 "
             f"actions=resubmit(,{T.UCAST_TO_TUN:d})",
             f"table={T.PATCH_LV_TO_TUN:d},priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 "
             f"actions=resubmit(,{T.FLOOD_TO_TUN:d})"]
    for table in (T.GRE_TUN_TO_LV, T.VXLAN_TUN_TO_LV, T.GENEVE_TUN_TO_LV):
        tail.append(f"table={table:d},priority=0 actions=drop")
    learn = _learn_action(patch, cookie)
    tail.append(f"table={T.LEARN_FROM_TUN:d},priority=1 actions={learn}")
    for match in ("arp,arp_tha=ff:ff:ff:ff:ff:ff", "icmp6,icmp_type=134", "icmp6,icmp_type=136"):
        tail.append(f"table={T.LEARN_FROM_TUN:d},priority=2,{match} actions={learn}")
    tail += [f"table={T.UCAST_TO_TUN:d},priority=0 actions=resubmit(,{T.FLOOD_TO_TUN:d})",
             f"table={T.ARP_RESPONDER:d},priority=0 actions=resubmit(,{T.FLOOD_TO_TUN:d})",
             f"table={T.FLOOD_TO_TUN:d},priority=0 actions=drop"]
    br = naming.BR_TUN
    return (tuple(_planned(br, text, agent, BUILDER_FLOWS, cookie) for text in head),
            tuple(_planned(br, text, agent, BUILDER_FLOWS, cookie) for text in tail))


@functools.lru_cache(maxsize=1 << 16)
def _tun_id_flow(network_type: str, key: int, lvid: int, dvr_on: bool, obj: str, cookie: int) -> PlannedFlow:
    """What arrives with a network's tunnel id gets its local VLAN (one per host and network)."""
    return _planned(naming.BR_TUN, f"table={naming.TUN_TO_LV_TABLE[network_type]:d},priority=1,tun_id={key:#x} "
                    f"actions=mod_vlan_vid:{lvid},resubmit(,{T.DVR_NOT_LEARN if dvr_on else T.LEARN_FROM_TUN:d})",
                    obj, BUILDER_NETWORK, cookie)


def _network_remotes(ctx: OvsContext, v: LocalVlan, position: dict[str, dict[str, int]], numbers: tuple[int, ...],
                     remote_names: list[str]) -> tuple[list[int], list[tuple[int, str]], tuple[int, ...]]:
    """With l2population: the tunnels of the network's type towards hosts with live ports on the
    network, in the tunnel ports' order: their port numbers (the flood list), (tunnel port, remote
    host) each, and the l2population flows' key."""
    of_type = position.get(v.segment.network_type, {})
    rank = _tunnel_rank(ctx)
    if rank is not None:  # the network's hosts in the tunnel hosts' order (once per snapshot), ours among them
        ranked = _per_network(ctx, "@ranked_hosts", v.network_id, lambda: _ranked_hosts(ctx, rank, v.network_id))
        remote_hosts = [n for n in ranked if n in of_type]  # (a type's positions follow the hosts' order)
        flood = [numbers[of_type[n]] for n in remote_hosts]
    else:
        places = sorted(map(of_type.__getitem__, of_type.keys() & _by_network(ctx).get(v.network_id, {}).keys()))
        flood = list(map(numbers.__getitem__, places))  # (C loops: ~100 remote hosts, ten networks a host)
        remote_hosts = list(map(remote_names.__getitem__, places))
    remotes = list(zip(flood, remote_hosts, strict=True))
    contents = tuple(itertools.chain.from_iterable(
        zip(flood, map(_l2pop_contents(ctx, v.network_id).__getitem__, remote_hosts), strict=True)))
    return flood, remotes, contents


def _ranked_hosts(ctx: OvsContext, rank: dict[str, tuple[int, Host]], network_id: str) -> list[str]:
    """The hosts with live ports on the network that have a tunnel IP, in the tunnel hosts' order."""
    return [n for _i, n in sorted((rank[n][0], n) for n in _by_network(ctx).get(network_id, {}) if n in rank)]


def _network_flows(ctx: OvsContext, v: LocalVlan, key: int, obj: str, position: dict[str, dict[str, int]],
                   numbers: tuple[int, ...], remote_names: list[str],
                   responder: bool) -> tuple[FlowBatch | None, PlannedFlow | None]:
    """A network's l2population flows and flood flow on br-tun (None where there are none)."""
    flood, remotes, contents = _network_remotes(ctx, v, position, numbers, remote_names)
    return (_l2pop_flows_kept(ctx, v, key, remotes, contents, responder) if remotes else None,
            _flood_flow(v.lvid, key, tuple(sorted(flood)), obj, ctx.cookie) if flood else None)


_TOKENS: Kept[int] = Kept()
_TOKEN_IDS = itertools.count(1)


def _token(slot: tuple[str, ...], content: tuple[object, ...]) -> int:
    """A number for ``content`` (plain values: strings, numbers, :func:`content_id` numbers), the
    last one seen under ``slot`` (a host's tunnel ports, a network): a number is given to one
    content only, so equal numbers mean equal contents whichever snapshot they come from (contents
    seen again after others get a new number: one entry per slot)."""
    return _TOKENS.get(slot, content, lambda: next(_TOKEN_IDS))


def _network_token(ctx: OvsContext, network_id: str) -> int:
    """A number for a network's hosts and their live br-int ports on it (host name and the
    :func:`content_id` of its ports' MACs and ids, in the snapshot's order): all of the network
    that its l2population and flood flows on another host are made of, besides that host's own
    tunnel ports. Once per snapshot, profile and external bridge."""
    def make() -> int:
        return _token(("network", network_id), (ctx.prof, ctx.external_bridge, *itertools.chain.from_iterable(
            _l2pop_contents(ctx, network_id).items())))
    return _per_network(ctx, "@network_token", network_id, make)


def _joined_actions(*parts: str) -> tuple[tuple[Action, ...], str]:
    """The actions of the comma-joined ``parts`` (none of them ``drop``), each part parsed once."""
    acts: tuple[Action, ...] = ()
    texts = []
    for part in parts:
        a, text = _parsed_actions(part, BUILDER_FLOWS)
        acts += a
        texts.append(text)
    return acts, ",".join(texts)


@functools.lru_cache(maxsize=1 << 12)
def _output(port: int) -> tuple[Action, str]:
    """``output:<port>``, parsed."""
    (action,), text = _parsed_actions(f"output:{port}", BUILDER_FLOWS)
    return action, text


_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


@functools.lru_cache(maxsize=1 << 15)
def _flood_flow(lvid: int, key: int, outputs: tuple[int, ...], obj: str, cookie: int) -> PlannedFlow:
    """A network's flood flow to its tunnels (one per host and network: kept for re-plans)."""
    hflow, htext = _parsed_head(f"table={T.FLOOD_TO_TUN:d},priority=1,dl_vlan={lvid}", BUILDER_NETWORK, cookie)
    load, load_text = _tunnel_load(key)
    outs = list(map(_output, outputs))
    acts = load + tuple(map(_FIRST, outs))
    atext = ",".join([load_text, *map(_SECOND, outs)])
    flow = make_flow(hflow.match, acts, hflow.table, hflow.priority, hflow.cookie, hflow.cookie_mask,
                     hflow.idle_timeout, hflow.hard_timeout, hflow.importance, hflow.flags, hflow.stats)
    return new_planned_flow(naming.BR_TUN, flow, obj, BUILDER_NETWORK, htext + atext)


#: a remote port as l2population's flows name it: its ``dl_dst`` match item, alone in a tuple
#: (None when its MAC does not print as written), its MAC, the flows' object, the port
_Remote = tuple[tuple[MatchField] | None, str, str, Port]


def _l2pop_records(ctx: OvsContext, network_id: str) -> dict[str, tuple[_Remote, ...]]:
    """host name -> its live br-int ports on the network, as :data:`_Remote` records: made once
    per snapshot (every host sharing the network writes a flow per remote port)."""
    def make() -> dict[str, tuple[_Remote, ...]]:
        out: dict[str, tuple[_Remote, ...]] = {}
        for host, ports in _by_network(ctx).get(network_id, {}).items():
            records = []
            for port in ports:
                mac = port.mac_address.lower()
                one = _dl_dst(mac)
                records.append((one, mac, f"port {port.id}", port))
            out[host] = tuple(records)
        return out
    return _per_network(ctx, "@l2pop_records", network_id, make)


_CANONICAL_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


@functools.lru_cache(maxsize=1 << 16)
def _dl_dst(mac: str) -> tuple[MatchField] | None:
    """``dl_dst=<mac>``'s match item, alone in a tuple (None when the MAC does not print as
    written). A MAC as OVS prints it (lower case, two digits a byte) is its item's text: the item is
    made from its value, not parsed. (One object per MAC: a re-plan's flows compare with the kept
    ones by identity.)"""
    if _CANONICAL_MAC.fullmatch(mac):
        return (EthMatch("dl_dst", Mac(int(mac.replace(":", ""), 16))),)
    try:
        item, text = _match_item("dl_dst", mac)
    except ValueError:
        return None
    return (item,) if text == mac else None


def _l2pop_contents(ctx: OvsContext, network_id: str) -> dict[str, int]:
    """host name -> the :func:`content_id` of its live br-int ports' MACs and ids on the network
    (what its l2population flows on other hosts are made of, besides the tunnel port)."""
    def make() -> dict[str, int]:
        return {host: content_id(tuple(x for port in ports for x in (port.mac_address, port.id)))
                for host, ports in _by_network(ctx).get(network_id, {}).items()}
    return _per_network(ctx, "@l2pop_contents", network_id, make)


_KEPT_L2POP: Kept[FlowBatch] = Kept()
_KEPT_TUNNEL_PORTS: Kept[tuple[PlannedPort, ...]] = Kept()
_KEPT_TUNNEL_FLOWS: Kept[FlowBatch] = Kept()
_KEPT_NETWORK: Kept[tuple[FlowBatch | None, PlannedFlow | None]] = Kept()


def _l2pop_flows_kept(ctx: OvsContext, v: LocalVlan, key: int, remotes: list[tuple[int, str]],
                      contents: tuple[int, ...], responder: bool) -> FlowBatch:
    """:func:`_l2pop_flows`, kept per host and network while what they are made of does not
    change: the local VLAN, the segment, the cookie and, per remote host in order, the tunnel
    port and the :func:`content_id` of its ports (MACs, objects). A re-plan after a change reuses
    them on the networks the change did not touch (one entry per host and network: the memory is
    one plan's l2population flows)."""
    def make() -> FlowBatch:
        return _l2pop_flows(ctx, v.network_id, v.lvid, key, remotes, responder)
    if responder:  # the ARP replies depend on the ports' addresses too: not kept
        return make()
    return _KEPT_L2POP.get((ctx.host.name, v.network_id), (v.lvid, key, ctx.cookie, *contents), make)


@functools.lru_cache(maxsize=1 << 14)
def _tunnel_in_flow(ofport: int, table: int, cookie: int) -> tuple[Flow, str]:
    """What arrives on tunnel port ``ofport`` goes to ``table`` (the same flow on every host)."""
    return _parsed_flow(f"priority=1,in_port={ofport} actions=resubmit(,{table:d})", BUILDER_FLOWS, cookie)


@functools.lru_cache(maxsize=1 << 17)
def _tunnel_in(ofport: int, table: int, cookie: int, obj: str) -> tuple[Flow, Origin]:
    """:func:`_tunnel_in_flow` and its origin naming ``obj`` (the tunnel's remote host): the same
    on every host that gives the tunnel to that host the number ``ofport`` (a pure function of
    its values, shared by those hosts)."""
    flow, text = _tunnel_in_flow(ofport, table, cookie)
    return flow, new_origin("flow", text, obj, BUILDER_FLOWS)


@functools.lru_cache(maxsize=1 << 17)
def _l2pop_actions(key: int, out_port: int) -> tuple[tuple[Action, ...], str]:
    """A unicast flow's actions towards a tunnel (the same on every host with that port number):
    ``strip_vlan,load:<key>->NXM_NX_TUN_ID[],output:<port>``, from its parsed parts."""
    load, load_text = _tunnel_load(key)
    out, out_text = _output(out_port)
    return (*load, out), f"{load_text},{out_text}"


@functools.lru_cache(maxsize=1 << 12)
def _tunnel_load(key: int) -> tuple[tuple[Action, ...], str]:
    """``strip_vlan,load:<key>->NXM_NX_TUN_ID[]``, parsed: what a flow to a tunnel begins with."""
    return _parsed_actions(f"strip_vlan,load:{key:#x}->NXM_NX_TUN_ID[]", BUILDER_FLOWS)


def _l2pop_flows(ctx: OvsContext, network_id: str, lvid: int, key: int, remotes: list[tuple[int, str]],
                 responder: bool) -> FlowBatch:
    """l2population's flows for one network: per remote port (``remotes``: tunnel port number and
    remote host, in the tunnel ports' order) its unicast flow to the tunnel (table 20) and, with
    the ARP responder, its ARP replies (table 21).

    A remote host's flows are the same on every host that gives the network the same local VLAN
    and that host's tunnel the same port number (at 1,000 hosts a fifth of them are distinct):
    each is made once per snapshot (:func:`_l2pop_shared`) and the hosts share the objects."""
    shared = _l2pop_shared(ctx, network_id, lvid, key, responder)
    make: Callable[[int, str], tuple[tuple[Flow, ...], tuple[Origin, ...]]] | None = None
    flows: list[Flow] = []
    origins: list[Origin] = []
    get = shared.get
    for remote in remotes:
        got = get(remote)
        if got is None:
            if make is None:
                make = _l2pop_maker(ctx, network_id, lvid, key, responder)
            got = shared[remote] = make(*remote)
        flows += got[0]
        origins += got[1]
    return FlowBatch(naming.BR_TUN, tuple(flows), tuple(origins))


def _l2pop_shared(ctx: OvsContext, network_id: str, lvid: int, key: int, responder: bool) -> _Shared:
    """(tunnel port number, remote host) -> that host's l2population flows and their origins on
    the network, for a host giving the network local VLAN ``lvid``: once per snapshot (its index),
    keyed by all they are made of besides the snapshot's records of the network (whose own key
    the index's entry holds: network, profile, external bridge) -- the VLAN, the segment, the
    cookie, the ARP responder, the port number and the remote host. Without the ARP responder the
    table is carried from the last snapshot where the network's contents allow (:data:`_L2POP_SHARED`)."""
    def make() -> _Shared:
        if responder:  # (the ARP replies read the ports' addresses, which the contents do not hold)
            return {}
        slot = _l2pop_slot(ctx, network_id, lvid, key)
        last = _L2POP_SHARED.kept.get(slot)
        return _L2POP_SHARED.get(slot, _l2pop_contents(ctx, network_id), lambda now: _carried(last, now))
    table: dict[tuple[object, ...], _Shared] = _cached(
        ctx, _registered(ctx, ("@l2pop_shared", ctx.prof, ctx.external_bridge)), dict)
    slot = (network_id, lvid, key, ctx.cookie, responder)
    got = table.get(slot)
    if got is None:
        got = table[slot] = make()
    return got


#: (tunnel port number, remote host) -> that host's l2population flows and origins on a network
_Shared = dict[tuple[int, str], tuple[tuple[Flow, ...], tuple[Origin, ...]]]

#: Across snapshots (issue #17, replan6): per (network, profile, external bridge, local VLAN,
#: segment, cookie) the last snapshot's :func:`_l2pop_shared` table (without the ARP responder),
#: under the :func:`_l2pop_contents` it was made with (host -> the content id of its ports' MACs and
#: ids on the network: all a remote host's flows are made of besides the slot and the port number,
#: which the table's own key holds). A fresh snapshot whose network has the same contents takes the
#: very table; one whose contents differ starts from the entries of the hosts whose contents did not
#: change (:func:`_carried`). A re-plan after one port then remakes only the flows towards the
#: port's host, not every remote host's of every network it plans.
_L2POP_SHARED: InputsMemo[dict[str, int], _Shared] = InputsMemo()


def _l2pop_slot(ctx: OvsContext, network_id: str, lvid: int, key: int) -> tuple[object, ...]:
    """Where :data:`_L2POP_SHARED` keeps a network's table: all a remote host's flows are made of
    besides its ports (the contents) and its tunnel port number (the table's own key)."""
    return (network_id, ctx.prof, ctx.external_bridge, lvid, key, ctx.cookie)


def _carried(last: tuple[dict[str, int], _Shared] | None, contents: dict[str, int]) -> _Shared:
    """A new table for ``contents``: the entries of ``last`` (its contents, its table) towards
    hosts whose contents are unchanged (equal content ids: the same MACs and ids in order)."""
    if last is None:
        return {}
    old, table = last
    same = {h for h, c in contents.items() if old.get(h) == c}
    return {r: v for r, v in table.copy().items() if r[1] in same}  # (copied: another thread may add)


def _l2pop_maker(ctx: OvsContext, network_id: str, lvid: int, key: int, responder: bool
                 ) -> Callable[[int, str], tuple[tuple[Flow, ...], tuple[Origin, ...]]]:
    """What makes a remote host's l2population flows on the network and their origins, given
    its tunnel port number and name. The heads differ by the MAC or the address alone: each is a
    template, filled per port."""
    br = naming.BR_TUN
    records = _l2pop_records(ctx, network_id)
    ucast = head_template(f"table={T.UCAST_TO_TUN:d},priority=2,dl_vlan={lvid},", "dl_dst", "", BUILDER_L2POP,
                          ctx.cookie)
    arp = head_template(f"table={T.ARP_RESPONDER:d},priority=1,arp,dl_vlan={lvid},", "arp_tpa", "", BUILDER_L2POP,
                        ctx.cookie) if responder else None
    if ucast is not None:  # the template's parts, bound once
        t = ucast.flow
        prefix, suffix, before, after = ucast.prefix, ucast.suffix, ucast.before, ucast.after
        table, priority, cookie, cookie_mask = t.table, t.priority, t.cookie, t.cookie_mask
        idle, hard, importance, flags, stats = t.idle_timeout, t.hard_timeout, t.importance, t.flags, t.stats

    def plain(text: str, obj: str) -> tuple[Flow, Origin]:  # not templated: parsed whole
        planned = planned_flow(ctx, br, text, obj, BUILDER_L2POP)
        return planned.flow, new_origin("flow", planned.text, obj, BUILDER_L2POP)

    def templated(one: tuple[MatchField], mac: str, obj: str, acts: tuple[Action, ...], atext: str
                  ) -> tuple[Flow, Origin]:
        return (new_flow(prefix + one + suffix, acts, table, priority, cookie, cookie_mask, idle, hard, importance,
                         flags, stats),
                new_origin("flow", f"{before}{mac}{after}{atext}", obj, BUILDER_L2POP))

    def make(out_port: int, host: str) -> tuple[tuple[Flow, ...], tuple[Origin, ...]]:
        acts, atext = _l2pop_actions(key, out_port)
        host_records = records[host]
        if ucast is not None and not responder and len(host_records) == 1:
            one, mac, obj, _port = host_records[0]  # (one port, templated: most remote hosts)
            if one is not None:
                flow, origin = templated(one, mac, obj, acts, atext)
                return (flow,), (origin,)
        made: list[tuple[Flow, Origin]] = []
        for one, mac, obj, port in host_records:
            if one is not None and ucast is not None:
                made.append(templated(one, mac, obj, acts, atext))
            else:
                made.append(plain(f"table={T.UCAST_TO_TUN:d},priority=2,dl_vlan={lvid},dl_dst={mac} actions={atext}",
                                  obj))
            if not responder:
                continue
            for fip in port.fixed_ips:
                if isinstance(fip.ip_address, ipaddress.IPv4Address):
                    reply = _arp_reply(mac, fip.ip_address)
                    racts, rtext = _parsed_actions(reply, BUILDER_L2POP)
                    got = arp.fill(str(fip.ip_address), racts) if arp is not None else None
                    made.append(plain(f"table={T.ARP_RESPONDER:d},priority=1,arp,dl_vlan={lvid},"
                                      f"arp_tpa={fip.ip_address} actions={reply}", obj) if got is None else
                                (got[0], new_origin("flow", got[1] + rtext, obj, BUILDER_L2POP)))
        return tuple(map(_FIRST, made)), tuple(map(_SECOND, made))
    return make


#: an edit of a sequence: at position, how many items replaced, by which
Edit = tuple[int, int, tuple[Any, ...]]


def spliced_network(ctx: OvsContext, vlans: tuple[LocalVlan, ...], ofports: Ofports,
                    tun: tuple[PlannedFlow | FlowBatch, ...], since: object
                    ) -> tuple[int, FlowBatch, PlannedFlow, list[Edit], list[Edit]] | None:
    """br-tun's flows on a snapshot carried from the last one (:func:`carry_index`), derived from
    the host's last ones, ``tun`` (:func:`tun_bridge_flows` with these very local VLANs and port
    numbers, ``ofports``, on that snapshot: the one whose number ``since`` is, which
    :func:`plan.carry_from` gives beside what :func:`carry_index` kept of it), in proportion to
    the change (issue #17, replan13).

    The caller vouches that the host's tunnel ports and everything else its OVS plan is made of
    are what they were, and that the host is none of the changed ports' hosts. Then only the
    networks the change touched (``dirty``) can have other flows, and of one such network ``N``
    only l2population's flows towards the changed ports' hosts (``moved``; each remote host's
    flows are a block of its batch, in the tunnel hosts' order, a flow per live port without the
    ARP responder) and, when one of those hosts joins or leaves ``N``, the flood flow.

    Returns where ``N``'s batch is in ``tun`` (its flood flow right after it), the new batch and
    flood flow, and the batch's edits (position in the old batch, flows replaced, new flows; and
    the same for the origins), in the batch's order. None (plan br-tun's flows again) unless the
    host is on exactly one touched network of a tunnel type and all of the above can be told: a
    modern agent with l2population, no ARP responder, no DVR, tunnel hosts of distinct names, the
    batch and flood flow there before and after, the old batch as long as its remote hosts' ports."""
    index: dict[Any, Any] = ctx.cloud._index
    before: _Before | None = index.get(("@tunnels_before",))
    if (before is None or since is None or index.get(("@tunnels_before_of",)) != since or not ctx.modern
            or not ctx.cloud.deployment.l2population or ctx.arp_responder):
        return None
    dirty, _entries, old_by_nets, moved = before
    me = ctx.host.name
    v = _touched_network(ctx, vlans, dirty)
    if v is None or me in moved or dvr.flows_enabled(ctx.cloud, me, ctx.tunneling):
        return None
    net, obj = v.network_id, f"network {v.network_id}"
    rank = _tunnel_rank(ctx)
    old_by_net = old_by_nets.get((ctx.prof, ctx.external_bridge))
    if rank is None or old_by_net is None:
        return None
    entry = _host_tunnels(ctx, vlans)
    view = entry.view
    if view is None or view[0] is not ofports:
        view = entry.view = _tunnel_view(ctx, entry.out, ofports)
    numbers, of_type = view[1], view[2].get(v.segment.network_type, {})
    # where the network's pieces are: its tun_id flow, then its batch and its flood flow (_modern_flows)
    at = next((i for i, p in enumerate(tun) if type(p) is PlannedFlow and p.obj == obj), -1)
    if at < 0 or at + 2 >= len(tun):
        return None
    old, flood = tun[at + 1], tun[at + 2]
    if type(old) is not FlowBatch or type(flood) is not PlannedFlow or flood.obj != obj:
        return None
    was, now = old_by_net.get(net, {}), _by_network(ctx).get(net, {})
    ranks, cum = _old_ranks(ctx, old_by_net, net, rank)
    mine = rank[me][0] if me in was and me in rank else -1
    own = len(was[me]) if mine >= 0 else 0
    if cum[-1] - own != len(old.flows):  # (a flow per remote port: the layout assumed is the one planned)
        return None
    changed = sorted((rank[h][0], h) for h in moved if h != me and h in rank and (h in was or h in now))
    flows_edits: list[Edit] = []
    origins_edits: list[Edit] = []
    joined: list[int] = []  # the tunnel ports of the hosts joining the network, and of those leaving it
    left: list[int] = []
    shared: _Shared | None = None
    make: Callable[[int, str], tuple[tuple[Flow, ...], tuple[Origin, ...]]] | None = None
    for r, h in changed:
        k = bisect.bisect_left(ranks, r)
        off = cum[k] - (own if 0 <= mine < r else 0)
        old_len = cum[k + 1] - cum[k] if h in was else 0
        block: tuple[tuple[Flow, ...], tuple[Origin, ...]] = ((), ())
        if h in now:
            place = of_type.get(h)
            if place is None:
                return None
            remote = (numbers[place], h)
            if shared is None:
                shared = _l2pop_shared(ctx, net, v.lvid, v.segment.segmentation_id or 0, False)
            got = shared.get(remote)
            if got is None:
                if make is None:
                    make = _l2pop_maker(ctx, net, v.lvid, v.segment.segmentation_id or 0, False)
                got = shared[remote] = make(*remote)
            block = got
            if h not in was:
                joined.append(remote[0])
        elif (place := of_type.get(h)) is not None:  # (in ``was``: it leaves, and so does its tunnel)
            left.append(numbers[place])
        flows_edits.append((off, old_len, block[0]))
        origins_edits.append((off, old_len, block[1]))
    batch = FlowBatch(old.bridge, spliced(old.flows, flows_edits), spliced(old.origins, origins_edits))
    if not batch.flows:
        return None
    if joined or left:
        edited = _flood_edited(flood, v.segment.segmentation_id or 0, joined, left)
        if edited is None:
            return None
        flood = edited
    return at + 1, batch, flood, flows_edits, origins_edits


def _flood_edited(flood: PlannedFlow, key: int, joined: list[int], left: list[int]) -> PlannedFlow | None:
    """:func:`_flood_flow`'s flow ``flood`` (towards tunnel key ``key``) with outputs to the ports
    ``joined`` put in and those to ``left`` taken out: the flow :func:`_flood_flow` makes for the
    ports then flooded, the other outputs' actions and texts taken from ``flood`` (issue #17,
    replan19: its ~30 outputs looked up again cost a patched host ~30 us). None when no port is
    left, or when ``flood`` is not laid out as assumed (the load, then an output per port in order;
    ``left`` among them, ``joined`` not)."""
    load, _text = _tunnel_load(key)
    flow, n = flood.flow, len(load)
    outs = list(flow.actions[n:])
    ports = [a.port for a in outs if type(a) is Output and type(a.port) is int]
    if flow.actions[:n] != load or len(ports) != len(outs):
        return None
    texts = flood.text.rsplit(",", len(outs))  # (the head and the load, then "output:<port>" each)
    for port in left:
        if port not in ports:
            return None
        i = ports.index(port)
        del ports[i], outs[i], texts[i + 1]
    for port in joined:
        i = bisect.bisect_left(ports, port)
        if i < len(ports) and ports[i] == port:
            return None
        action, text = _output(port)
        ports.insert(i, port)
        outs.insert(i, action)
        texts.insert(i + 1, text)
    if not ports:
        return None
    edited = make_flow(flow.match, (*load, *outs), flow.table, flow.priority, flow.cookie, flow.cookie_mask,
                       flow.idle_timeout, flow.hard_timeout, flow.importance, flow.flags, flow.stats)
    return new_planned_flow(naming.BR_TUN, edited, flood.obj, flood.builder, ",".join(texts))


def _touched_network(ctx: OvsContext, vlans: tuple[LocalVlan, ...], dirty: frozenset[str]) -> LocalVlan | None:
    """The host's local VLAN on the one network of a tunnel type among ``dirty`` (the networks a
    change touched) it is on; None when it is on none or several (:func:`spliced_network` edits one)."""
    types = ctx.tunnel_types
    touched = [v for v in vlans if v.network_id in dirty and v.segment.network_type in types]
    return touched[0] if len(touched) == 1 else None


def spliced(items: tuple[_T, ...], edits: list[Edit]) -> tuple[_T, ...]:
    """``items`` with each edit (position, how many items, the new ones; in order, none
    overlapping) made."""
    if not edits:
        return items
    out = list(items)
    for pos, n, new in reversed(edits):  # (from the last: the earlier positions stay put)
        out[pos:pos + n] = new  # (a copy and a move of references in C: a dump's 1,400 flows ~5 us)
    return tuple(out)


def _old_ranks(ctx: OvsContext, old_by_net: dict[str, dict[str, list[Port]]], net: str,
               rank: dict[str, tuple[int, Host]]) -> tuple[list[int], list[int]]:
    """The network's hosts on the snapshot carried from (``old_by_net``, its :func:`_by_network`)
    that have a tunnel IP, as places among the tunnel hosts in order, and the running count of
    their live ports (``cum[k]``: the ports of the hosts before the ``k``-th): once per snapshot
    and network, for :func:`spliced_network` (in the index, not carried: it is of this snapshot's
    predecessor)."""
    table: dict[tuple[object, ...], tuple[list[int], list[int]]] = _cached(ctx, ("@l2pop_old_ranks",), dict)
    slot = (net, ctx.prof, ctx.external_bridge)
    got = table.get(slot)
    if got is None:
        hosts = sorted((rank[h][0], len(ports)) for h, ports in old_by_net.get(net, {}).items() if h in rank)
        got = table[slot] = ([r for r, _n in hosts], [0, *itertools.accumulate(n for _r, n in hosts)])
    return got


#: index entries that depend on the deployment alone (equal in a carried snapshot)
_DEPLOYMENT_FACTS = ("@tunnel_hosts", "@tunnel_rank", "@tunnel_port_names", "@tunnel_objs", "@tunnel_ip_texts")


def carry_index(before: CloudSnapshot, cloud: CloudSnapshot, networks: set[str], hosts: Collection[str] = (),
                planned: Iterable[str] = ()) -> None:
    """Give ``cloud`` what ``before``'s index holds of br-tun's facts that the change between them
    left as they were (issue #17: a re-plan after one port then derives instead of rebuilding).
    The caller vouches that only ports changed between the two snapshots (the deployment,
    networks, subnets, routers... are equal), and names the networks of every port that changed
    (before and after) and their binding hosts (``hosts``). Carried: the deployment's tunnel
    tables; the per-network facts (:func:`_per_network`: l2population records, contents, token;
    the shared flows) of every network not named; :func:`_by_network`, the named networks made
    again; each host's tunnels where none of its networks is named (the others' kept aside for
    :func:`_derived_tunnels`); the plugged and live ports (``plugged_ports``, ``live_plugs``) of
    the hosts about to be planned (``planned``) that are not named. The networks' and hosts' facts
    only where every host's plugged ports are those bound to it (see :func:`_only_bound_ports`:
    else one port can move a router's ports onto other hosts). (:func:`plan.carry_from` names
    ``before`` beside what it kept of it, ``@tunnels_before_of``: :func:`spliced_network` asks.)"""
    old: dict[Any, Any] = before._index  # (keyed by tuples too: see :func:`_cached`)
    new: dict[Any, Any] = cloud._index
    if ("@host_tunnels",) in new or ("@tun_tables",) in new:  # (planned from already: what it made is its own)
        return
    bound = {m: _bound_only(cloud, m) for m in (False, True)}
    for name in _DEPLOYMENT_FACTS:
        value = old.get((name,))
        if value is not None:
            new[(name,)] = value.copy() if isinstance(value, dict) else value
    tables: list[tuple[object, ...]] = []
    old_by_nets: dict[tuple[object, str], dict[str, dict[str, list[Port]]]] = {}
    for slot in old.get(("@tun_tables",), ()):
        kind, prof, bridge = slot
        if not bound[prof.modern]:
            continue
        value = old[slot]
        if kind == "@live_by_network":
            fresh = _bound_by_network(cloud, bridge, (p for n in networks for p in cloud.ports_on_network(n)))
            # (read by network only: the order of the networks is no output)
            new[slot] = {n: v for n, v in value.items() if n not in networks} | fresh
            old_by_nets[(prof, bridge)] = value
            for name in planned:  # (looked up by host: the index holds them for every host planned)
                if name not in hosts:
                    for kind in ("@plugged", "@live"):
                        key = (kind, name, prof, bridge)
                        got = old.get(key)
                        if got is not None:
                            new.setdefault(key, got)
        elif kind == "@l2pop_shared":  # (keyed by network, local VLAN, segment, cookie, responder)
            new[slot] = {k: v for k, v in value.copy().items() if k[0] not in networks}
        else:
            new[slot] = {n: v for n, v in value.copy().items() if n not in networks}
        tables.append(slot)
    new[("@tun_tables",)] = tables
    kept: dict[str, _HostTunnels] = {}
    aside: dict[str, _HostTunnels] = {}
    entry: _HostTunnels
    for name, entry in old.get(("@host_tunnels",), {}).copy().items():
        if not bound[entry.key[2].modern]:  # type: ignore[attr-defined]
            continue
        if entry.networks.isdisjoint(networks):
            kept[name] = entry
        else:
            aside[name] = entry
    new[("@host_tunnels",)] = kept
    new[("@tunnels_before",)] = (frozenset(networks), aside, old_by_nets, frozenset(hosts))


__all__ = ["carry_index", "endpoint_id", "tun_bridge_flows", "tun_bridge_ports", "tunnel_port_name", "tunnels"]
