"""Distributed virtual routers (DVR): the L3 agents' namespaces and the OVS agents' DVR flows.

As Neutron's ``neutron/agent/l3/dvr_local_router.py``, ``dvr_edge_router.py``, ``dvr_fip_ns.py``
and the OVS agent's ``ovs_dvr_neutron_agent.py`` build them (today's Neutron only):

- **Where.** A distributed router lives on every host whose L3 agent runs in ``dvr``/``dvr_snat``
  mode and that has a DVR-serviceable port (an instance's, or the DHCP port) on one of its
  subnets, and on its SNAT host (the first ``dvr_snat`` host) when it has a gateway.
- **qrouter-<id>** on each of them: the same ``qr-`` devices (the interface ports' MAC and IP)
  everywhere; permanent neighbour entries for the subnets' ports; with a gateway, a
  ``rfp-<id>`` veth end (169.254.x.y/31, the router's link-local pair from 169.254.64.0/18) that
  holds this host's floating IPs as /32s, one ``ip rule`` per floating IP's fixed address
  (priority 32768 on, ``lookup 16``; table 16 is ``default via <fpr> dev rfp-``), and the SNAT
  redirection: per interface subnet a rule ``from <qr ip>/<len> lookup <n>`` with priority and
  table ``n`` the qr- address as a number, whose table has ``default via <snat port> dev qr-``.
  Floating IPs are DNATed ``-i rfp-`` and SNATed in ``float-snat`` there.
- **fip-<external network id>** on each such host with a ``fg-`` port: the ``fg-`` device
  (proxy ARP on, so it answers for the host's floating IPs), one ``fpr-<id>`` per router, a route
  per floating IP ``via <rfp> dev fpr-``, and per router a rule ``from all iif fpr- lookup <n>``
  (``n`` the fpr- address as a number) whose table sends everything out of ``fg-`` to the
  external gateway; ``raw PREROUTING -j CT --notrack``.
- **snat-<id>** on the SNAT host: one ``sg-`` device per interface subnet (the SNAT ports), the
  router's ``qg-`` with its gateway address, and the SNAT rules of a legacy router's gateway.
- **Flows** (``enable_distributed_routing`` on the OVS agent of a DVR host): br-int table 1
  (``DVR_TO_SRC_MAC``) gives frames routed by another host's copy of the router (source MAC
  that host's DVR MAC, from ``fa:16:3f``) the local qr- MAC back before they reach the local
  port; br-tun table 1 (``DVR_PROCESS``) rewrites the qr- MAC to this host's DVR MAC on the way
  out, drops frames to the qr- MAC from tunnels and ARP for the gateway IP; table 9
  (``DVR_NOT_LEARN``) keeps br-tun from learning the DVR MACs.

The DVR MAC of a host is Neutron's ``dvr_base_mac`` (``fa:16:3f``) followed by three bytes of a
hash of the host's name (Neutron draws them at random and keeps them in its database).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from neutrino.host.iproute_link import Address, Link, LinkKind
from neutrino.host.iproute_route import Neighbour, Route, RoutingRule
from neutrino.host.iptables import TableName, format_rule
from neutrino.host.state import HostState, NamespaceState, Origin
from neutrino.host.sysctl import Sysctl
from neutrino.plan import _hosts_by_name, naming
from neutrino.plan.generation import (
    PlannedRule,
    Profile,
    address,
    agent_link,
    assemble,
    connected_route,
    device_mac,
    manager_skeleton,
    rule,
)
from neutrino.plan.portforward import plan_port_forwardings
from neutrino.services.snapshot import CloudSnapshot, FloatingIP, Port, Router

if TYPE_CHECKING:  # ovs_int imports this module
    from neutrino.plan.ovs_int import LocalVlan, PlugPort

BUILDER = "plan_dvr"
FIP_RT_TBL = 16
FIP_PR_START = 32768
FIP_LL_SUBNET = ipaddress.IPv4Network("169.254.64.0/18")
DVR_BASE_MAC = "fa:16:3f"
DVR_MODES = ("dvr", "dvr_snat")
INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed")
SNAT_OWNER = "network:router_centralized_snat"
FIP_GATEWAY_OWNER = "network:floatingip_agent_gateway"
DEFAULT_RULES = (RoutingRule(priority=0, table="local"), RoutingRule(priority=32766, table="main"),
                 RoutingRule(priority=32767, table="default"))
SCOPE_MARK = "0x4000000/0xffff0000"


# --- facts -----------------------------------------------------------------------------------------

def agent_mode(cloud: CloudSnapshot, host: str) -> str:
    h = _hosts_by_name(cloud).get(host)  # (``deployment.host``, from the snapshot's index: it scanned
    # the deployment's hosts, twice per host planned, issue #17)
    return "legacy" if h is None else h.l3_agent_mode


def dvr_enabled(cloud: CloudSnapshot, host: str) -> bool:
    """Whether the host's agents run DVR (the OVS agent's ``enable_distributed_routing``)."""
    return agent_mode(cloud, host) in (*DVR_MODES, "dvr_no_external") and cloud.deployment.generation == "modern"


def dvr_mac(host: str) -> str:
    """The host's DVR MAC: ``fa:16:3f`` and three bytes of a hash of its name."""
    b = hashlib.sha256(f"dvr-mac.{host}".encode()).digest()[:3]
    return DVR_BASE_MAC + "".join(f":{x:02x}" for x in b)


def _cached(cloud: CloudSnapshot, key: tuple[object, ...], make: object) -> object:
    cache = cloud._index
    hit = cache.get(key)  # type: ignore[call-overload]
    if hit is None:
        hit = cache[key] = make()  # type: ignore[index, operator]
    return hit


def distributed_routers(cloud: CloudSnapshot) -> tuple[Router, ...]:
    return tuple(r for r in cloud.routers if r.distributed and r.admin_state_up)


def interfaces(cloud: CloudSnapshot, router: Router) -> tuple[Port, ...]:
    return tuple(p for p in cloud.ports_of_device(router.id) if p.device_owner in INTERFACE_OWNERS)


def snat_ports(cloud: CloudSnapshot, router: Router) -> tuple[Port, ...]:
    return tuple(p for p in cloud.ports_of_device(router.id) if p.device_owner == SNAT_OWNER)


def snat_host(cloud: CloudSnapshot, router: Router) -> str | None:
    """The router's SNAT host: its ``host`` when that runs ``dvr_snat``, else the first such host."""
    if agent_mode(cloud, router.host) == "dvr_snat":
        return router.host
    return next((h.name for h in cloud.deployment.hosts if h.l3_agent_mode == "dvr_snat"), None)


def _serviceable(p: Port) -> bool:
    return p.is_instance_port or p.device_owner == "network:dhcp"


def router_hosts(cloud: CloudSnapshot, router: Router) -> tuple[str, ...]:
    """The hosts a distributed router lives on, in deployment order."""
    def make() -> tuple[str, ...]:
        subnets = {f.subnet_id for p in interfaces(cloud, router) for f in p.fixed_ips}
        hosts = {p.binding_host for s in subnets for p in cloud.ports_on_network(cloud.subnet(s).network_id)
                 if _serviceable(p) and any(f.subnet_id in subnets for f in p.fixed_ips)}
        if router.gateway is not None:
            snat = snat_host(cloud, router)
            if snat is not None:
                hosts.add(snat)
        return tuple(h.name for h in cloud.deployment.hosts
                     if h.name in hosts and h.l3_agent_mode in (*DVR_MODES, "dvr_no_external"))
    return _cached(cloud, ("@dvr-hosts", router.id), make)  # type: ignore[return-value]


def routers_on(cloud: CloudSnapshot, host: str) -> tuple[Router, ...]:
    """The distributed routers with a ``qrouter-`` namespace on ``host``."""
    if not dvr_enabled(cloud, host):
        return ()
    return tuple(r for r in distributed_routers(cloud) if host in router_hosts(cloud, r))


def interface_ports_on(cloud: CloudSnapshot, host: str) -> frozenset[str]:
    """The ids of the distributed router interface ports plugged (as ``qr-``) on ``host``'s br-int."""
    return frozenset(p.id for r in routers_on(cloud, host) for p in interfaces(cloud, r))


def fip_gateway_port(cloud: CloudSnapshot, network_id: str, host: str) -> Port | None:
    return next((p for p in cloud.ports_on_host(host)
                 if p.device_owner == FIP_GATEWAY_OWNER and p.network_id == network_id), None)


def link_local_pair(cloud: CloudSnapshot, router: Router) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """The router's rfp-/fpr- addresses: a /31 of 169.254.64.0/18 picked by a hash of its id
    (Neutron picks one at random and keeps it in a file), the next free one on a clash."""
    def make() -> dict[str, int]:
        size = FIP_LL_SUBNET.num_addresses // 2
        taken: dict[str, int] = {}
        used: set[int] = set()
        for r in cloud.routers:
            if not r.distributed:
                continue
            n = int.from_bytes(hashlib.sha256(r.id.encode()).digest()[:4], "big") % size
            while n in used:
                n = (n + 1) % size
            used.add(n)
            taken[r.id] = n
        return taken
    pairs: dict[str, int] = _cached(cloud, ("@dvr-ll",), make)  # type: ignore[assignment]
    base = FIP_LL_SUBNET.network_address + 2 * pairs.get(router.id, 0)
    return base, base + 1


def table_index(ip: ipaddress.IPv4Address) -> int:
    """Neutron's ``_get_snat_idx`` for IPv4: the address as a number."""
    return int(ip)


def host_floating_ips(cloud: CloudSnapshot, router: Router, host: str) -> tuple[FloatingIP, ...]:
    """The router's floating IPs whose fixed port is bound to ``host`` (IPv4)."""
    out = []
    for f in cloud.floating_ips_of_router(router.id):
        if f.port_id is None or f.fixed_ip_address is None or f.floating_ip_address.version != 4:
            continue
        try:
            port = cloud.port(f.port_id)
        except KeyError:
            continue
        if port.binding_host == host:
            out.append(f)
    return tuple(out)


def fip_rule_priorities(cloud: CloudSnapshot, host: str) -> dict[str, int]:
    """The floating IPs' ``ip rule`` priorities on ``host``: 32768, 32769… in the routers' and then
    the floating IPs' order (Neutron hands out free numbers from 32768 on)."""
    out: dict[str, int] = {}
    for r in routers_on(cloud, host):
        for f in host_floating_ips(cloud, r, host):
            out[f.id] = FIP_PR_START + len(out)
    return out


def _v4(port: Port) -> list[tuple[ipaddress.IPv4Address, str]]:
    return [(f.ip_address, f.subnet_id) for f in port.fixed_ips if isinstance(f.ip_address, ipaddress.IPv4Address)]


# --- namespaces ------------------------------------------------------------------------------------

def _link_local(ip: ipaddress.IPv4Address, dev: str) -> Address:
    """A /31 of the rfp-/fpr- pair: no broadcast address (netaddr has none for a /31)."""
    return replace(address(ip, 31, dev), brd=None)


def _veth(prof: Profile, name: str, mtu: int, addrs: tuple[Address, ...], other_ns: str) -> Link:
    lk = agent_link(prof, name, None, mtu, addrs)
    return replace(lk, kind=LinkKind.VETH, qlen=1000, link_netns=other_ns)


def _qrouter(cloud: CloudSnapshot, router: Router, host: str, prof: Profile, *,
             random_fully: bool) -> tuple[NamespaceState, list[Origin]]:
    from neutrino.plan.l3 import _iptables, _Router, _sysctls

    ns_name = naming.router_namespace(router.id)
    obj = f"router {router.id}"
    links: list[Link] = []
    routes: list[Route] = []
    rules: list[RoutingRule] = []
    neigh: list[Neighbour] = []
    sysctls = list(_sysctls(prof))
    ifaces = interfaces(cloud, router)
    for port in ifaces:
        dev = naming.router_internal_device(port.id)
        addrs = tuple(address(f.ip_address, cloud.subnet(f.subnet_id).cidr.prefixlen, dev) for f in port.fixed_ips)
        links.append(agent_link(prof, dev, port.mac_address, cloud.network(port.network_id).mtu, addrs))
        routes += [rt for a in addrs if (rt := connected_route(prof, a, dev)) is not None]
        subnets = {sid for _ip, sid in _v4(port)}
        for p in cloud.ports_on_network(port.network_id):
            if not (_serviceable(p) or p.device_owner == SNAT_OWNER):
                continue
            for ip, sid in _v4(p):
                if sid in subnets:
                    neigh.append(Neighbour(ip, dev, p.mac_address.lower(), states=("PERMANENT",)))
    gw = router.gateway
    fg = None if gw is None else fip_gateway_port(cloud, gw.network_id, host)
    fips = host_floating_ips(cloud, router, host) if fg is not None else ()
    rfp = naming.router_to_fip_device(router.id)
    if gw is not None:
        sysctls.append(Sysctl("net.ipv4.conf.all.send_redirects", "0"))
        by_subnet = {sid: ip for p in snat_ports(cloud, router) for ip, sid in _v4(p)}
        for port in ifaces:
            dev = naming.router_internal_device(port.id)
            for ip, sid in _v4(port):
                snat_ip = by_subnet.get(sid)
                if snat_ip is None:
                    continue
                n = table_index(ip)
                cidr = ipaddress.ip_interface(f"{ip}/{cloud.subnet(sid).cidr.prefixlen}")
                rules.append(RoutingRule(priority=n, src=cidr, table=str(n)))
                routes.append(Route(None, via=snat_ip, dev=dev, table=str(n), style=prof.iproute_style))
                sysctls.append(Sysctl(f"net.ipv4.conf.{dev}.send_redirects", "0"))
    if fg is not None and gw is not None:
        rfp_ip, fpr_ip = link_local_pair(cloud, router)
        mtu = cloud.network(gw.network_id).mtu
        addrs = (_link_local(rfp_ip, rfp), *(address(f.floating_ip_address, 32, rfp) for f in fips))
        links.append(_veth(prof, rfp, mtu, addrs, naming.fip_namespace(gw.network_id)))
        # permanent ARP entries on each side of the pair (create_rtr_2_fip_link)
        neigh.append(Neighbour(fpr_ip, rfp, str(device_mac(naming.fip_to_router_device(router.id))),
                               states=("PERMANENT",)))
        routes += [rt for a in addrs if (rt := connected_route(prof, a, rfp)) is not None]
        routes.append(Route(None, via=fpr_ip, dev=rfp, table=str(FIP_RT_TBL), style=prof.iproute_style))
        prio = fip_rule_priorities(cloud, host)
        for f in fips:
            assert f.fixed_ip_address is not None
            rules.append(RoutingRule(priority=prio[f.id], src=ipaddress.ip_interface(f"{f.fixed_ip_address}/32"),
                                     table=str(FIP_RT_TBL)))
    chains, prules = _iptables(cloud, _Router(router, ifaces, None, ()), prof, random_fully=random_fully,
                               first_pass=False, metadata=True)
    chains = list(chains)
    prules = list(prules)
    b = prof.l3_agent_binary

    def add(table: TableName, chain: str, spec: str, why: str) -> None:
        prules.append(PlannedRule(table, rule(f"-A {naming.wrapped_chain(b, chain)} {spec}", f"{why} via {BUILDER}")))

    rnd = " --random-fully" if random_fully else ""
    if fips:
        add(TableName.NAT, "POSTROUTING", f"! -o {rfp} -m conntrack ! --ctstate DNAT -j ACCEPT", obj)
    for f in fips:
        why = f"floatingip {f.id}"
        add(TableName.NAT, "PREROUTING", f"-d {f.floating_ip_address}/32 -i {rfp} -j DNAT --to-destination "
                                         f"{f.fixed_ip_address}", why)
        add(TableName.NAT, naming.FLOAT_SNAT_CHAIN,
            f"-s {f.fixed_ip_address}/32 -j SNAT --to-source {f.floating_ip_address}{rnd}", why)
        add(TableName.MANGLE, "floatingip", f"-d {f.floating_ip_address}/32 -i {rfp} -j MARK --set-xmark "
                                            f"{SCOPE_MARK}", why)
        add(TableName.MANGLE, "FORWARD", f"-s {f.fixed_ip_address}/32 -j "
                                         f"{naming.wrapped_chain(b, naming.FLOAT_SNAT_CHAIN)}", why)
    if fg is not None:
        add(TableName.MANGLE, "scope", f"-i {rfp} -j MARK --set-xmark {SCOPE_MARK}", f"address scope of {rfp}")
    ruleset, chain_origins = assemble(prof, chains, prules, BUILDER)
    all_rules = tuple(sorted((*DEFAULT_RULES, *rules), key=lambda r: r.priority))
    ns = NamespaceState(ns_name, links=tuple(links), routes=tuple(routes), rules=all_rules,
                        neighbours=tuple(neigh), iptables=ruleset, sysctls=tuple(sysctls))
    origins = [Origin("namespace", ns_name, obj, BUILDER)]
    origins += [Origin("link", lk.name, obj, BUILDER) for lk in links]
    origins += [Origin("rule", str(r.priority), obj, BUILDER) for r in rules]
    origins += [Origin(o.kind, f"{ns_name}:{o.item}", o.obj, o.builder) for o in chain_origins]
    return ns, origins


def _fip_namespace(cloud: CloudSnapshot, network_id: str, fg: Port, routers: list[Router], host: str,
                   prof: Profile) -> tuple[NamespaceState, list[Origin]]:
    ns_name = naming.fip_namespace(network_id)
    obj = f"network {network_id}"
    dev = naming.fip_gateway_device(fg.id)
    mtu = cloud.network(network_id).mtu
    addrs = tuple(address(f.ip_address, cloud.subnet(f.subnet_id).cidr.prefixlen, dev) for f in fg.fixed_ips
                  if f.ip_address.version == 4)
    links = [agent_link(prof, dev, fg.mac_address, mtu, addrs)]
    routes = [rt for a in addrs if (rt := connected_route(prof, a, dev)) is not None]
    rules: list[RoutingRule] = []
    neigh: list[Neighbour] = []
    gw_ip = next((s.gateway_ip for f in fg.fixed_ips for s in (cloud.subnet(f.subnet_id),)
                  if s.ip_version == 4 and s.gateway_ip is not None), None)
    for router in routers:
        rfp_ip, fpr_ip = link_local_pair(cloud, router)
        fpr = naming.fip_to_router_device(router.id)
        fa = _link_local(fpr_ip, fpr)
        links.append(_veth(prof, fpr, mtu, (fa,), naming.router_namespace(router.id)))
        neigh.append(Neighbour(rfp_ip, fpr, str(device_mac(naming.router_to_fip_device(router.id))),
                               states=("PERMANENT",)))
        rt = connected_route(prof, fa, fpr)
        if rt is not None:
            routes.append(rt)
        for f in host_floating_ips(cloud, router, host):
            routes.append(Route(ipaddress.ip_network(f"{f.floating_ip_address}/32"), via=rfp_ip, dev=fpr,
                                style=prof.iproute_style))
        n = table_index(fpr_ip)
        rules.append(RoutingRule(priority=n, iif=fpr, table=str(n)))
        if gw_ip is not None:
            routes.append(Route(None, via=gw_ip, dev=dev, table=str(n), style=prof.iproute_style))
    skel_chains, skel_rules = manager_skeleton(prof, prof.l3_agent_binary,
                                               (TableName.FILTER, TableName.RAW, TableName.NAT, TableName.MANGLE),
                                               BUILDER)
    prules = [*skel_rules, PlannedRule(TableName.RAW, rule(
        f"-A {naming.wrapped_chain(prof.l3_agent_binary, 'PREROUTING')} -j CT --notrack",
        f"fip namespace {network_id} via {BUILDER}"))]
    ruleset, chain_origins = assemble(prof, list(skel_chains), prules, BUILDER)
    # the agent also writes net.ipv4.neigh.<fg>.proxy_delay=1 (one USER_HZ tick), which reads back as
    # 0 or 1 depending on the kernel's HZ: not planned
    sysctls = (Sysctl("net.ipv4.ip_forward", "1"), Sysctl(f"net.ipv4.conf.{dev}.proxy_arp", "1"))
    all_rules = tuple(sorted((*DEFAULT_RULES, *rules), key=lambda r: r.priority))
    ns = NamespaceState(ns_name, links=tuple(links), routes=tuple(routes), rules=all_rules,
                        neighbours=tuple(neigh), iptables=ruleset, sysctls=sysctls)
    origins = [Origin("namespace", ns_name, obj, BUILDER), Origin("link", dev, f"port {fg.id}", BUILDER)]
    origins += [Origin("link", lk.name, f"router {r.id}", BUILDER) for lk, r in zip(links[1:], routers, strict=True)]
    origins += [Origin(o.kind, f"{ns_name}:{o.item}", o.obj, o.builder) for o in chain_origins]
    return ns, origins


def _snat_namespace(cloud: CloudSnapshot, router: Router, prof: Profile, *,
                    random_fully: bool) -> tuple[NamespaceState, list[Origin]]:
    from neutrino.plan.l3 import _devices, _iptables, _lookup, _Router, _sysctls

    ns_name = naming.snat_namespace(router.id)
    obj = f"router {router.id}"
    looked = _lookup(cloud, router)
    sg = snat_ports(cloud, router)
    r = _Router(router, sg, looked.gateway, ())
    links, _root, routes = _devices(cloud, r, prof)
    links = [replace(lk, name=_sg(lk.name), addresses=tuple(replace(a, label=_sg(lk.name)) for a in lk.addresses))
             for lk in links]
    # the agent plugs the SNAT ports before the gateway (_create_dvr_gateway)
    links = [lk for lk in links if lk.name.startswith(naming.SNAT_INTERNAL_PREFIX)] + \
            [lk for lk in links if not lk.name.startswith(naming.SNAT_INTERNAL_PREFIX)]
    routes = [replace(rt, dev=_sg(rt.dev)) if rt.dev else rt for rt in routes]
    chains, prules = _iptables(cloud, r, prof, random_fully=random_fully, first_pass=False, metadata=False)
    renamed = [PlannedRule(pr.table, rule(_sg_text(format_rule(pr.rule)), f"router {router.id} via {BUILDER}"))
               if "qr-" in format_rule(pr.rule) else pr for pr in prules]
    # port forwardings are centralized: the L3 agent's extension serves them from the snat- namespace
    # (its qg- and snat iptables manager; the dvr agents skip them)
    links, chains, renamed = plan_port_forwardings(cloud, router, prof, links, chains, renamed)
    ruleset, chain_origins = assemble(prof, chains, renamed, BUILDER)
    ns = NamespaceState(ns_name, links=tuple(links), routes=tuple(routes), iptables=ruleset,
                        sysctls=_sysctls(prof))
    origins = [Origin("namespace", ns_name, obj, BUILDER)]
    origins += [Origin("link", lk.name, obj, BUILDER) for lk in links]
    origins += [Origin(o.kind, f"{ns_name}:{o.item}", o.obj, o.builder) for o in chain_origins]
    return ns, origins


def _sg(dev: str) -> str:
    """A SNAT port's device: the planner of legacy routers names it ``qr-``, the snat- namespace ``sg-``."""
    return naming.SNAT_INTERNAL_PREFIX + dev[3:] if dev.startswith(naming.ROUTER_INTERNAL_PREFIX) else dev


def _sg_text(text: str) -> str:
    return text.replace(f" {naming.ROUTER_INTERNAL_PREFIX}", f" {naming.SNAT_INTERNAL_PREFIX}")


def plan_dvr(cloud: CloudSnapshot, host: str, prof: Profile, *, random_fully: bool = True) -> HostState:
    """Every distributed router's namespaces on ``host``: qrouter-, fip-, snat-."""
    out = HostState(host)
    if not prof.modern:
        return out
    origins: list[Origin] = []
    fip_routers: dict[str, list[Router]] = {}
    fip_ports: dict[str, Port] = {}
    mode = agent_mode(cloud, host)
    for router in routers_on(cloud, host):
        ns, o = _qrouter(cloud, router, host, prof, random_fully=random_fully)
        out = out.with_namespace(ns)
        origins += o
        gw = router.gateway
        if gw is not None and mode in DVR_MODES:
            fg = fip_gateway_port(cloud, gw.network_id, host)
            if fg is not None:
                fip_routers.setdefault(gw.network_id, []).append(router)
                fip_ports[gw.network_id] = fg
        if gw is not None and gw.port_id and snat_host(cloud, router) == host:
            ns, o = _snat_namespace(cloud, router, prof, random_fully=random_fully)
            out = out.with_namespace(ns)
            origins += o
    for net_id, routers in fip_routers.items():
        ns, o = _fip_namespace(cloud, net_id, fip_ports[net_id], routers, host, prof)
        out = out.with_namespace(ns)
        origins += o
    return replace(out, origins=tuple(origins))


def with_dvr(cloud: CloudSnapshot, host: str, prof: Profile, state: HostState, *,
             random_fully: bool = True) -> HostState:
    """``state`` (the L3 planner's fragment) with the host's DVR namespaces merged in."""
    if not any(r.distributed for r in cloud.routers):
        return state
    frag = plan_dvr(cloud, host, prof, random_fully=random_fully)
    if not frag.namespaces:
        return state
    from neutrino.plan.compose import merge
    return merge([state, frag])


# --- the OVS agent's DVR flows -----------------------------------------------------------------------

BUILDER_INT = "int_dvr_flows"
BUILDER_TUN = "tun_dvr_flows"


def flows_enabled(cloud: CloudSnapshot, host: str, tunneling: bool) -> bool:
    """Whether the host's OVS agent runs with ``enable_distributed_routing`` over tunnels."""
    return tunneling and dvr_enabled(cloud, host)


def other_dvr_macs(cloud: CloudSnapshot, host: str) -> tuple[tuple[str, str], ...]:
    """(host, DVR MAC) of every other DVR host, as the server lists them (deployment order)."""
    return tuple((h.name, dvr_mac(h.name)) for h in cloud.deployment.hosts
                 if h.name != host and h.l3_agent_mode in (*DVR_MODES, "dvr_no_external"))


def _router_subnets_here(cloud: CloudSnapshot, host: str) -> dict[str, Port]:
    """subnet id -> the distributed router interface port on it, for the routers on ``host``."""
    out: dict[str, Port] = {}
    for r in routers_on(cloud, host):
        for p in interfaces(cloud, r):
            for _ip, sid in _v4(p):
                out.setdefault(sid, p)
    return out


def int_flow_texts(cloud: CloudSnapshot, host: str, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...],
                   ofport: Callable[[str], int]) -> list[tuple[str, str, str]]:
    """br-int's DVR flows as (add-flow text, object, builder); ``plugs``/``vlans``/``ofport`` are the
    OVS planner's (``ofport(name)`` gives an OpenFlow port number)."""
    from neutrino.plan.ovs_int import PlugKind, lvid_of
    T = naming.IntBrTable
    agent = f"agent {host}"
    patch_tun = ofport(naming.PATCH_TUN)
    texts = [(f"table={T.DVR_TO_SRC_MAC:d},priority=1 actions=drop", agent, BUILDER_INT),
             (f"table={T.DVR_TO_SRC_MAC_PHYSICAL:d},priority=1 actions=drop", agent, BUILDER_INT),
             (f"priority=5,in_port={patch_tun},dl_dst={dvr_mac(host)} actions=resubmit(,{T.ARP_DVR_MAC_TO_DST_MAC:d})",
              agent, BUILDER_INT)]
    for other, mac in other_dvr_macs(cloud, host):
        texts.append((f"priority=2,in_port={patch_tun},dl_src={mac} actions=resubmit(,{T.DVR_TO_SRC_MAC:d})",
                      f"agent {other}", BUILDER_INT))
    subnets = _router_subnets_here(cloud, host)
    for pl in plugs:
        if not (pl.on_br_int and pl.alive):
            continue
        lvid = lvid_of(vlans, pl)
        if lvid is None:
            continue
        obj = f"port {pl.port.id}"
        if pl.kind is PlugKind.ROUTER and pl.port.id in {p.id for p in subnets.values()}:
            texts.append((f"table={T.ARP_DVR_MAC_TO_DST_MAC:d},priority=5,dl_vlan={lvid},dl_dst={dvr_mac(host)} "
                          f"actions=mod_dl_dst:{pl.port.mac_address.lower()},strip_vlan,output:{ofport(pl.name)}",
                          obj, BUILDER_INT))
            continue
        if not (_serviceable(pl.port) or pl.port.device_owner == SNAT_OWNER):
            continue
        for _ip, sid in _v4(pl.port):
            qr = subnets.get(sid)
            if qr is None:
                continue
            mac = pl.port.mac_address.lower()
            match = f"dl_vlan={lvid},dl_dst={mac}"
            texts.append((f"table={T.DVR_TO_SRC_MAC:d},priority=20,{match} actions=mod_dl_src:"
                          f"{qr.mac_address.lower()},resubmit(,{T.PACKET_RATE_LIMIT:d})", obj, BUILDER_INT))
            texts.append((f"table={T.TRANSIENT_TABLE:d},priority=20,{match} actions=strip_vlan,"
                          f"output:{ofport(pl.name)}", obj, BUILDER_INT))
            break
    return texts


def tun_flow_texts(cloud: CloudSnapshot, host: str, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...],
                   patch_int: int) -> list[tuple[str, str, str]]:
    """br-tun's DVR flows (besides the changed table-0 and tunnel-table gotos)."""
    from neutrino.plan.ovs_int import PlugKind, lvid_of
    T = naming.TunBrTable
    agent = f"agent {host}"
    texts = [(f"table={T.DVR_PROCESS:d},priority=0 actions=resubmit(,{T.PATCH_LV_TO_TUN:d})", agent, BUILDER_TUN),
             (f"table={T.DVR_NOT_LEARN:d},priority=0 actions=resubmit(,{T.LEARN_FROM_TUN:d})", agent, BUILDER_TUN)]
    for other, mac in other_dvr_macs(cloud, host):
        texts.append((f"table={T.DVR_NOT_LEARN:d},priority=1,dl_src={mac} actions=output:{patch_int}",
                      f"agent {other}", BUILDER_TUN))
    subnets = _router_subnets_here(cloud, host)
    qr_ids = {p.id for p in subnets.values()}
    me = dvr_mac(host)
    for pl in plugs:
        if pl.kind is not PlugKind.ROUTER or pl.port.id not in qr_ids or not pl.alive:
            continue
        lvid = lvid_of(vlans, pl)
        if lvid is None or pl.network.segment.network_type not in ("gre", "vxlan", "geneve"):
            continue
        obj, mac = f"port {pl.port.id}", pl.port.mac_address.lower()
        for ip, _sid in _v4(pl.port):
            texts.append((f"table={T.FLOOD_TO_TUN:d},priority=3,arp,dl_vlan={lvid},arp_tpa={ip} actions=drop", obj,
                          BUILDER_TUN))
        texts.append((f"table={T.DVR_PROCESS:d},priority=2,dl_vlan={lvid},dl_dst={mac} actions=drop", obj,
                      BUILDER_TUN))
        texts.append((f"table={T.DVR_PROCESS:d},priority=1,dl_vlan={lvid},dl_src={mac} actions=mod_dl_src:{me},"
                      f"resubmit(,{T.PATCH_LV_TO_TUN:d})", obj, BUILDER_TUN))
    return texts
