"""The L3 agent's legacy routers on one host (reference §7, seed 000's "Network host: Router").

Each router scheduled to the host (``Router.host``, or the deployment's network host when unset)
gets a ``qrouter-<id>`` namespace with the agent's sysctls, its ``qr-`` and ``qg-`` devices (MAC
and MTU of the port, each fixed IP with its subnet's prefix, each floating IP as a /32 on ``qg-``),
the kernel's connected routes, the default route via the external subnet's gateway, the router's
extra routes, and the iptables tables: Grizzly's nat and filter (seed 000's ``iptables -t nat -S``)
or the modern nat, mangle, filter and raw tables (reference §7.2). Modern routers also get the
metadata proxy's haproxy configuration (§7.4) as a file; the haproxy process is not modelled yet.

``random_fully`` adds ``--random-fully`` to the SNAT rules (reference default; seed 001's Stein
host did not). ``first_pass`` orders nat PREROUTING as after the agent's first pass over a new
router (floating-IP DNATs before the metadata REDIRECT, reference §7.2); the default is the
steady state seen in seeds 000 and 001 (REDIRECT first).

Grizzly's devices are veth pairs (``ovs_use_veth``): the ``tap…`` ends in the root namespace are
planned here; their OVS ports on br-int/br-ex belong to the OVS planner.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

from neutrino.host.iproute_link import Address, Link
from neutrino.host.iproute_route import Route
from neutrino.host.iptables import TableName
from neutrino.host.state import ROOT, FileState, HostState, NamespaceState, Origin
from neutrino.host.sysctl import Sysctl
from neutrino.plan import InputsMemo, naming
from neutrino.plan.address_scope import with_scope_marks
from neutrino.plan.dvr import with_dvr
from neutrino.plan.generation import (
    Generation,
    PlannedChain,
    PlannedRule,
    Profile,
    address,
    agent_link,
    assemble,
    connected_route,
    host_name,
    manager_skeleton,
    ordered_routes,
    profile,
    rule,
)
from neutrino.plan.l3_ha import plan_l3_ha
from neutrino.plan.portforward import plan_port_forwardings
from neutrino.scenarios.model import Deployment, Host
from neutrino.services.snapshot import CloudSnapshot, FloatingIP, Port, Router

BUILDER = "plan_l3"
METADATA_PORT = 9697
METADATA_IP = "169.254.169.254"
EXTERNAL_INGRESS_MARK = "0x2/0xffff"
METADATA_ACCESS_MARK = "0x1/0xffff"
DEFAULT_SCOPE_MARK = "0x4000000/0xffff0000"
CONNMARK_MASKS = "--nfmask 0xffff0000 --ctmask 0xffff0000"


def router_host(cloud: CloudSnapshot, router: Router) -> str | None:
    """Where a legacy router runs: its first L3 agent binding's host, else its ``host``, else the network host."""
    if router.bindings:
        return router.bindings[0].host
    if router.host:
        return router.host
    net_host = cloud.deployment.network_host()
    return None if net_host is None else net_host.name


@dataclass(frozen=True, slots=True)
class _Router:
    """One router's pieces, looked up once."""

    router: Router
    internal: tuple[Port, ...]
    gateway: Port | None
    floating: tuple[FloatingIP, ...]

    @property
    def qg(self) -> str | None:
        return None if self.gateway is None else naming.router_gateway_device(self.gateway.id)

    @property
    def gateway_ip(self) -> ipaddress.IPv4Address | None:
        if self.gateway is None:
            return None
        return next((f.ip_address for f in self.gateway.fixed_ips if isinstance(f.ip_address, ipaddress.IPv4Address)),
                    None)


def _lookup(cloud: CloudSnapshot, router: Router) -> _Router:
    internal = tuple(cloud.port(p) for p in router.interface_port_ids if _has_port(cloud, p))
    gw = None
    if router.gateway is not None and router.gateway.port_id and _has_port(cloud, router.gateway.port_id):
        gw = cloud.port(router.gateway.port_id)
    fips = tuple(f for f in cloud.floating_ips_of_router(router.id)
                 if f.port_id is not None and f.fixed_ip_address is not None
                 and f.floating_ip_address.version == 4)
    return _Router(router, internal, gw, fips)


def _has_port(cloud: CloudSnapshot, port_id: str) -> bool:
    try:
        cloud.port(port_id)
    except KeyError:
        return False
    return True


def _port_addresses(cloud: CloudSnapshot, port: Port, dev: str) -> list[Address]:
    return [address(f.ip_address, cloud.subnet(f.subnet_id).cidr.prefixlen, dev) for f in port.fixed_ips]


def _devices(cloud: CloudSnapshot, r: _Router, prof: Profile) -> tuple[list[Link], list[Link], list[Route]]:
    """The namespace's links, the root namespace's veth ends (Grizzly) and the routes."""
    links: list[Link] = []
    root: list[Link] = []
    routes: list[Route] = []
    ports: list[tuple[str, Port]] = []
    if r.gateway is not None:
        ports.append((naming.router_gateway_device(r.gateway.id), r.gateway))
    ports += [(naming.router_internal_device(p.id), p) for p in r.internal]
    for dev, port in ports:
        addrs = _port_addresses(cloud, port, dev)
        if port is r.gateway:
            addrs += [address(f.floating_ip_address, 32, dev) for f in r.floating]
        mtu = cloud.network(port.network_id).mtu
        links.append(agent_link(prof, dev, port.mac_address, mtu, tuple(addrs)))
        if prof.use_veth:
            root.append(agent_link(prof, naming.ovs_veth_peer(dev), None, mtu))
        routes += [rt for a in addrs if (rt := connected_route(prof, a, dev)) is not None]
    if r.gateway is not None and r.qg is not None:
        for f in r.gateway.fixed_ips:
            subnet = cloud.subnet(f.subnet_id)
            if subnet.gateway_ip is None or subnet.ip_version != 4:
                continue
            if subnet.gateway_ip not in subnet.cidr:
                routes.append(Route(ipaddress.ip_network(subnet.gateway_ip), dev=r.qg, scope="link",
                                    style=prof.iproute_style))
            routes.append(Route(None, via=subnet.gateway_ip, dev=r.qg, style=prof.iproute_style))
            break
    for extra in r.router.routes:
        via_dev = next((lk.name for lk in links for a in lk.addresses if extra.nexthop in a.interface.network),
                       None)
        routes.append(Route(extra.destination, via=extra.nexthop, dev=via_dev, style=prof.iproute_style))
    return links, root, list(ordered_routes(prof, routes))


def _sysctls(prof: Profile) -> tuple[Sysctl, ...]:
    if not prof.modern:
        return (Sysctl("net.ipv4.ip_forward", "1"),)
    return (Sysctl("net.netfilter.nf_conntrack_tcp_be_liberal", "1"), Sysctl("net.ipv4.ip_forward", "1"),
            Sysctl("net.ipv4.conf.all.arp_ignore", "1"), Sysctl("net.ipv4.conf.all.arp_announce", "2"))


def _iptables(cloud: CloudSnapshot, r: _Router, prof: Profile, *, random_fully: bool, first_pass: bool,
              metadata: bool) -> tuple[list[PlannedChain], list[PlannedRule]]:
    b = prof.l3_agent_binary
    tables = ((TableName.FILTER, TableName.RAW, TableName.NAT, TableName.MANGLE) if prof.modern
              else (TableName.FILTER, TableName.NAT))
    skel_chains, skel_rules = manager_skeleton(prof, b, tables, BUILDER)
    chains = list(skel_chains)
    rules = list(skel_rules)
    rid = r.router.id

    def w(chain: str) -> str:
        return naming.wrapped_chain(b, chain)

    def add(table: TableName, chain: str, spec: str, why: str) -> None:
        rules.append(PlannedRule(table, rule(f"-A {w(chain)} {spec}", f"{why} via {BUILDER}")))

    rnd = " --random-fully" if random_fully and prof.modern else ""
    nat, filt, mangle = TableName.NAT, TableName.FILTER, TableName.MANGLE
    redirect_iface = " -i qr-+" if prof.modern else ""
    redirect = (f"-d {METADATA_IP}/32{redirect_iface} -p tcp -m tcp --dport 80 -j REDIRECT "
                f"--to-ports {METADATA_PORT}")
    dnat_first = first_pass and prof.modern
    if metadata and not dnat_first:
        add(nat, "PREROUTING", redirect, f"metadata of router {rid}")
    for f in r.floating:
        why = f"floatingip {f.id}"
        add(nat, "PREROUTING", f"-d {f.floating_ip_address}/32 -j DNAT --to-destination {f.fixed_ip_address}", why)
        add(nat, "OUTPUT", f"-d {f.floating_ip_address}/32 -j DNAT --to-destination {f.fixed_ip_address}", why)
        add(nat, naming.FLOAT_SNAT_CHAIN,
            f"-s {f.fixed_ip_address}/32 -j SNAT --to-source {f.floating_ip_address}{rnd}", why)
    if metadata and dnat_first:
        add(nat, "PREROUTING", redirect, f"metadata of router {rid}")
    qg, gw_ip = r.qg, r.gateway_ip
    gw_why = f"gateway of router {rid}"
    if qg is not None and gw_ip is not None:
        if prof.modern:
            add(nat, "POSTROUTING", f"! -o {qg} -m conntrack ! --ctstate DNAT -j ACCEPT", gw_why)
        else:
            add(nat, "POSTROUTING", f"! -i {qg} ! -o {qg} -m conntrack ! --ctstate DNAT -j ACCEPT", gw_why)
        snat = r.router.gateway is None or r.router.gateway.enable_snat
        if snat and prof.modern:
            add(nat, naming.SNAT_CHAIN, f"-o {qg} -j SNAT --to-source {gw_ip}{rnd}", gw_why)
            add(nat, naming.SNAT_CHAIN, f"-m mark ! --mark {EXTERNAL_INGRESS_MARK} -m conntrack --ctstate DNAT "
                                        f"-j SNAT --to-source {gw_ip}{rnd}", gw_why)
        elif snat:
            cidrs = dict.fromkeys(cloud.subnet(f.subnet_id).cidr for p in r.internal for f in p.fixed_ips
                                  if f.ip_address.version == 4)
            for cidr in cidrs:
                add(nat, naming.SNAT_CHAIN, f"-s {cidr} -j SNAT --to-source {gw_ip}", f"snat of {cidr} for router {rid}")
    if not prof.modern:
        if metadata:
            add(filt, "INPUT", f"-d 127.0.0.1/32 -p tcp -m tcp --dport {METADATA_PORT} -j ACCEPT",
                f"metadata of router {rid}")
        return chains, rules

    obj = f"router {rid}"
    for table, name in ((mangle, "scope"), (mangle, "floatingip"), (mangle, naming.FLOAT_SNAT_CHAIN),
                        (filt, "scope")):
        chains.append(PlannedChain(table, w(name), obj))
    qrs = [naming.router_internal_device(p.id) for p in r.internal]
    add(mangle, "PREROUTING", f"-j {w('scope')}", obj)
    add(mangle, "PREROUTING", f"-m connmark ! --mark 0x0/0xffff0000 -j CONNMARK --restore-mark {CONNMARK_MASKS}",
        obj)
    add(mangle, "PREROUTING", f"-j {w('floatingip')}", obj)
    if metadata:
        add(mangle, "PREROUTING", f"-d {METADATA_IP}/32 -i qr-+ -p tcp -m tcp --dport 80 -j MARK "
                                  f"--set-xmark {METADATA_ACCESS_MARK}", f"metadata of router {rid}")
    if qg is not None:
        add(mangle, "POSTROUTING", f"-o {qg} -m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark "
                                   f"{CONNMARK_MASKS}", gw_why)
        add(mangle, "mark", f"-i {qg} -j MARK --set-xmark {EXTERNAL_INGRESS_MARK}", gw_why)
    for dev in [*qrs, *([qg] if qg is not None else [])]:
        add(mangle, "scope", f"-i {dev} -j MARK --set-xmark {DEFAULT_SCOPE_MARK}", f"address scope of {dev}")
    add(mangle, naming.FLOAT_SNAT_CHAIN, f"-m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark "
                                         f"{CONNMARK_MASKS}", obj)
    add(filt, "FORWARD", f"-j {w('scope')}", obj)
    if metadata:
        add(filt, "INPUT", f"-m mark --mark {METADATA_ACCESS_MARK} -j ACCEPT", f"metadata of router {rid}")
        add(filt, "INPUT", f"-p tcp -m tcp --dport {METADATA_PORT} -j DROP", f"metadata of router {rid}")
    for dev in qrs:
        add(filt, "scope", f"-o {dev} -m mark ! --mark {DEFAULT_SCOPE_MARK} -j DROP", f"address scope of {dev}")
    return chains, rules


def metadata_proxy_config(router_id: str, state_path: str = naming.NEUTRON_STATE_PATH, *,
                          user: str = "neutron", group: str = "neutron") -> str:
    """haproxy's configuration for a router's metadata proxy (reference §7.4, in outline)."""
    return (
        "global\n"
        "    log         /dev/log local0 info\n"
        f"    log-tag     haproxy-metadata-proxy-{router_id}\n"
        f"    user        {user}\n"
        f"    group       {group}\n"
        "    maxconn     1024\n"
        "    nbthread    2\n"
        f"    pidfile     {state_path}/external/pids/{router_id}.pid.haproxy\n"
        "    daemon\n"
        "\n"
        "defaults\n"
        "    log global\n"
        "    mode http\n"
        "    option httplog\n"
        "    option dontlognull\n"
        "    option http-server-close\n"
        "    option forwardfor\n"
        "    retries                 3\n"
        "    timeout http-request    30s\n"
        "    timeout connect         30s\n"
        "    timeout client          32s\n"
        "    timeout server          32s\n"
        "    timeout http-keep-alive 30s\n"
        "\n"
        "listen listener\n"
        f"    bind 0.0.0.0:{METADATA_PORT}\n"
        f"    server metadata {state_path}/metadata_proxy\n"
        "    http-request del-header X-Neutron-Network-ID\n"
        f"    http-request set-header X-Neutron-Router-ID {router_id}\n"
    )


def metadata_proxy_path(router_id: str, state_path: str = naming.NEUTRON_STATE_PATH) -> str:
    return f"{state_path}/ns-metadata-proxy/{router_id}.conf"


def routers_on(cloud: CloudSnapshot, host: str) -> tuple[Router, ...]:
    """The routers the L3 agent on ``host`` serves (admin-down routers are removed by the agent)."""
    return tuple(r for r in cloud.routers if r.admin_state_up and not r.ha and not r.distributed
                 and router_host(cloud, r) == host)


def plan_l3(cloud: CloudSnapshot, host: Host | str, generation: Generation | Profile = Generation.MODERN, *,
            random_fully: bool = True, first_pass: bool = False, metadata: bool = True) -> HostState:
    """Every legacy router's namespace on ``host`` (IPv4)."""
    prof = profile(generation)
    name = host_name(host)
    out = HostState(name)
    root_links: list[Link] = []
    origins: list[Origin] = []
    files: list[FileState] = []
    for router in routers_on(cloud, name):
        inputs = _RouterInputs(prof, random_fully, first_pass, metadata, _router_cloud(cloud, router))
        planned = _PLANNED.get((name, router.id), inputs, _planned_router)
        out = out.with_namespace(planned.namespace)
        root_links += planned.root_links
        origins += planned.origins
        files += planned.files
    if root_links:
        out = out.with_namespace(NamespaceState(ROOT, links=tuple(root_links)))
    out = replace(out, files=tuple(files), origins=tuple(origins))
    out = with_dvr(cloud, name, prof, out, random_fully=random_fully)  # distributed routers (plan/dvr.py)
    return plan_l3_ha(cloud, name, prof, out, random_fully=random_fully, metadata=metadata)  # HA routers


@dataclass(frozen=True, slots=True)
class _RouterInputs:
    """Everything one legacy router's namespace is planned from, and the key it is kept under
    (compared in full: a re-plan after a change elsewhere in the cloud reuses it)."""

    prof: Profile
    random_fully: bool
    first_pass: bool
    metadata: bool
    cloud: CloudSnapshot  # the router and what it reads, alone (:func:`_router_cloud`)


@dataclass(frozen=True, slots=True)
class _PlannedRouter:
    namespace: NamespaceState
    root_links: tuple[Link, ...]
    origins: tuple[Origin, ...]
    files: tuple[FileState, ...]


#: each router's last plan on each host, with what it was planned from
_PLANNED: InputsMemo[_RouterInputs, _PlannedRouter] = InputsMemo()


def _router_cloud(cloud: CloudSnapshot, router: Router) -> CloudSnapshot:
    """A snapshot of the router alone: its interface and gateway ports, its floating IPs with their
    fixed ports and port forwardings, and those ports' networks and subnets, so that planning it
    there reads nothing else (the planner looks them up by id, or by router and floating IP, in
    the cloud's order)."""
    port_ids = dict.fromkeys(router.interface_port_ids)
    if router.gateway is not None and router.gateway.port_id:
        port_ids[router.gateway.port_id] = None
    fips = cloud.floating_ips_of_router(router.id)
    port_ids.update((f.port_id, None) for f in fips if f.port_id is not None)
    ports = [p for pid in port_ids if _has_port(cloud, pid) for p in (cloud.port(pid),)]
    subnet_ids = dict.fromkeys(f.subnet_id for p in ports for f in p.fixed_ips)
    net_ids = dict.fromkeys(p.network_id for p in ports)
    return CloudSnapshot(Deployment(), networks=_present(cloud.network, net_ids),
                         subnets=_present(cloud.subnet, subnet_ids), ports=tuple(ports), routers=(router,),
                         floating_ips=fips, port_forwardings=tuple(pf for f in fips
                                                                   for pf in cloud.port_forwardings_of(f.id)))


_T = TypeVar("_T")


def _present(get: Callable[[str], _T], ids: Iterable[str]) -> tuple[_T, ...]:
    out = []
    for i in ids:
        try:
            out.append(get(i))
        except KeyError:
            continue
    return tuple(out)


def _planned_router(inputs: _RouterInputs) -> _PlannedRouter:
    """One router's namespace, planned from ``inputs`` alone."""
    prof, cloud = inputs.prof, inputs.cloud
    router = cloud.routers[0]
    r = _lookup(cloud, router)
    ns_name = naming.router_namespace(router.id)
    obj = f"router {router.id}"
    links, root, routes = _devices(cloud, r, prof)
    chains, rules = _iptables(cloud, r, prof, random_fully=inputs.random_fully, first_pass=inputs.first_pass,
                              metadata=inputs.metadata)
    rules = with_scope_marks(cloud, r, prof, rules)  # address scopes (plan/address_scope.py)
    links, chains, rules = plan_port_forwardings(cloud, router, prof, links, chains, rules)
    ruleset, chain_origins = assemble(prof, chains, rules, BUILDER)
    namespace = NamespaceState(ns_name, links=tuple(links), routes=tuple(routes), iptables=ruleset,
                               sysctls=_sysctls(prof))
    origins = [Origin("namespace", ns_name, obj, BUILDER)]
    origins += [Origin("link", lk.name, obj, BUILDER) for lk in (*links, *root)]
    origins += [Origin("route", str(rt.dst or "default"), obj, BUILDER) for rt in routes]
    origins += [Origin(o.kind, f"{ns_name}:{o.item}", o.obj, o.builder) for o in chain_origins]
    files = []
    if prof.modern and inputs.metadata:
        path = metadata_proxy_path(router.id, prof.state_path)
        files.append(FileState(path, metadata_proxy_config(router.id, prof.state_path)))
        origins.append(Origin("file", path, obj, BUILDER))
    return _PlannedRouter(namespace, tuple(root), tuple(origins), tuple(files))
