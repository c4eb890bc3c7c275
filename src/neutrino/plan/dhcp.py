"""The DHCP agent on one host: one ``qdhcp-<network>`` namespace and dnsmasq per network (reference §8).

A network with a DHCP-enabled IPv4 subnet is served on the hosts of the DHCP agents it is
scheduled to (``Network.dhcp_hosts``) that one of its DHCP ports is bound to, else (never
scheduled) on the host its DHCP port is bound to (an unbound DHCP port: the deployment's network
host). A port's extra DHCP options add ``tag:port-<id>`` lines to the opts file and
``set:port-<id>`` to its hosts-file line (modern only). The namespace holds the DHCP
port's device (modern: ``tap…``, an OVS internal port; Grizzly: ``ns-…``, a veth whose ``tap…``
end stays in the root namespace and is planned here, its OVS port being the OVS planner's), its
addresses (plus 169.254.169.254/32 with isolated metadata), the connected and default routes,
dnsmasq (one process record, pid 0: the real one forks a root child in Grizzly) and its
``host``/``addn_hosts``/``opts`` files, and, modern only, the mangle CHECKSUM rule.

>>> from neutrino.services.snapshot import CloudSnapshot
>>> from neutrino.scenarios.model import Deployment
>>> plan_dhcp(CloudSnapshot(Deployment()), "network").namespaces
()
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from neutrino.host.dnsmasq import (
    DhcpHost,
    DhcpOpt,
    DhcpRange,
    DnsmasqOption,
    DnsmasqProcess,
    dnsmasq_argv,
    format_dhcp_range,
    format_hosts_file,
    format_opts_file,
)
from neutrino.host.iproute_link import Link
from neutrino.host.iproute_route import Route
from neutrino.host.iptables import TableName
from neutrino.host.state import ROOT, FileState, HostState, NamespaceState, Origin
from neutrino.host.sysctl import Sysctl
from neutrino.plan import InputsMemo, naming
from neutrino.plan.generation import (
    Generation,
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
from neutrino.scenarios.model import Deployment, Host
from neutrino.services.snapshot import CloudSnapshot, FixedIP, Network, Port, Subnet
from neutrino.services.snapshot import DhcpOpt as PortDhcpOpt

BUILDER = "plan_dhcp"
METADATA_CIDR = "169.254.169.254/32"
DOMAIN = "openstacklocal"
#: device owners the modern agent leaves out of the hosts files
SKIPPED_OWNERS = ("network:dhcp", "network:floatingip", "network:router_ha_interface", "network:distributed")
#: the device id of a DHCP port whose agent the network was removed from (kept for a later agent)
RESERVED_DHCP_PORT = "reserved_dhcp_port"
ROUTER_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                 "network:ha_router_replicated_interface")


def _dhcp_subnets(cloud: CloudSnapshot, net: Network) -> tuple[Subnet, ...]:
    return tuple(s for s in cloud.subnets_of(net.id) if s.enable_dhcp and s.ip_version == 4)


def dhcp_port(cloud: CloudSnapshot, net: Network) -> Port | None:
    return next((p for p in cloud.ports_on_network(net.id) if p.device_owner == "network:dhcp"), None)


def served_networks(cloud: CloudSnapshot, host: str) -> tuple[tuple[Network, Port], ...]:
    """The networks (with their DHCP port) the DHCP agent on ``host`` serves: a network scheduled
    to DHCP agents (``dhcp_hosts``) is served on those of its hosts its DHCP ports are bound to (an
    unbound port: the first agent's host); one never scheduled, where its DHCP port is bound (an
    unbound port: the deployment's network host)."""
    return cloud.cached("dhcp_served_networks", _served_by_host).get(host, ())


def _served_by_host(cloud: CloudSnapshot) -> dict[str, tuple[tuple[Network, Port], ...]]:
    """``served_networks`` of every host at once (each host's plan asks)."""
    net_host = cloud.deployment.network_host()
    out: dict[str, list[tuple[Network, Port]]] = {}
    # each network's DHCP ports, in the ports' order, from one pass (every port of every network was
    # read in turn for its one or two DHCP ports)
    dhcp_ports: dict[str, list[Port]] = {}
    for port in cloud.ports:
        if port.device_owner == "network:dhcp":
            dhcp_ports.setdefault(port.network_id, []).append(port)
    for net in cloud.networks:
        if not _dhcp_subnets(cloud, net):
            continue
        default = net.dhcp_hosts[0] if net.dhcp_hosts else net_host.name if net_host is not None else ""
        hosts: set[str] = set()
        for port in dhcp_ports.get(net.id, ()):
            host = port.binding_host or default
            if port.device_id == RESERVED_DHCP_PORT or host in hosts:
                continue
            if not net.dhcp_hosts or host in net.dhcp_hosts:
                out.setdefault(host, []).append((net, port))
                hosts.add(host)
    return {host: tuple(served) for host, served in out.items()}


def _hostname(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return "host-" + str(ip).replace(".", "-").replace(":", "-")


def hosts(cloud: CloudSnapshot, net: Network, prof: Profile) -> tuple[DhcpHost, ...]:
    """The ``host`` file's entries: modern ``mac,fqdn.,ip`` (router ports included, DHCP and
    floating-IP ports left out); Grizzly ``mac,host-….openstacklocal,ip`` for every port."""
    enabled = {s.id for s in _dhcp_subnets(cloud, net)}
    out = []
    for p in cloud.ports_on_network(net.id):
        if prof.modern and p.device_owner in SKIPPED_OWNERS:
            continue
        for f in p.fixed_ips:
            if f.subnet_id not in enabled:
                continue
            fqdn = f"{_hostname(f.ip_address)}.{DOMAIN}{'.' if prof.modern else ''}"
            client_id, sets = _port_tag(p) if prof.modern else (None, ())
            out.append(DhcpHost(p.mac_address, fqdn, f.ip_address, client_id=client_id, sets=sets))
    return tuple(out)


CLIENT_ID_NAMES = ("client-id", "61")


def _port_tag(p: Port) -> tuple[str | None, tuple[str, ...]]:
    """A port with extra DHCP options: its ``id:<client-id>`` (option ``client-id``/61) and its
    ``set:port-<id>`` tag, left out when the client id is its only option (the agent's
    ``_output_hosts_file``)."""
    if not p.extra_dhcp_opts:
        return None, ()
    client_id = next((o.opt_value for o in p.extra_dhcp_opts if o.opt_name in CLIENT_ID_NAMES), None)
    if client_id is not None and len(p.extra_dhcp_opts) == 1:
        return client_id, ()
    return client_id, (f"set:{naming_port_tag(p.id)}",)


def naming_port_tag(port_id: str) -> str:
    """The dnsmasq tag of a port's own options (``port-<id>``)."""
    return f"port-{port_id}"


_OPTION_TAG = re.compile(r"(tag:(.*),)?(.*)$")


def format_option(ip_version: int, tag: str, option: str, *values: str) -> DhcpOpt:
    """The agent's ``_format_option``: ``tag:<tag>[,<the option name's own tag:…>],option:NAME``
    (a number stays a number; IPv6: ``option6:NAME|NUM``), then the values (first line only)."""
    m = _OPTION_TAG.match(option.split("\n", 1)[0])
    assert m is not None
    extra, name = m.group(1), m.group(3)
    name = f"option6:{name}" if ip_version == 6 else name if name.isdigit() else f"option:{name}"
    tags = (f"tag:{tag}", extra[:-1]) if extra else (f"tag:{tag}",)
    return DhcpOpt(name, tuple(v.split("\n", 1)[0] for v in values), tags)


def port_opts(cloud: CloudSnapshot, net: Network) -> tuple[DhcpOpt, ...]:
    """Each port's extra DHCP options (``_generate_opts_per_port``), after the subnets' lines so
    that dnsmasq prefers them; ``client-id`` goes to the hosts file instead, and an option whose
    IP version the port has no address of is left out."""
    out: list[DhcpOpt] = []
    for p in cloud.ports_on_network(net.id):
        versions = {f.ip_address.version for f in p.fixed_ips}
        for o in p.extra_dhcp_opts:
            if o.opt_name in CLIENT_ID_NAMES or o.ip_version not in versions:
                continue
            out.append(format_option(o.ip_version, naming_port_tag(p.id), o.opt_name, o.opt_value))
    return tuple(out)


def addn_hosts_text(entries: tuple[DhcpHost, ...]) -> str:
    """``ip<TAB>fqdn hostname`` per entry (fqdn first, so PTR answers use it)."""
    return "".join(f"{h.ip}\t{h.hostname} {h.hostname.split('.')[0]}\n" for h in entries)


def _isolated(cloud: CloudSnapshot, subnet: Subnet) -> bool:
    """No router interface holds the subnet's gateway IP."""
    return not any(p.device_owner in ROUTER_OWNERS and f.subnet_id == subnet.id and f.ip_address == subnet.gateway_ip
                   for p in cloud.ports_on_network(subnet.network_id) for f in p.fixed_ips)


def opts(cloud: CloudSnapshot, net: Network, port: Port, prof: Profile, *,
         isolated_metadata: bool = False) -> tuple[DhcpOpt, ...]:
    """The ``opts`` file (reference §8.3 rules; Grizzly: ``tag:tagN`` per subnet, no metadata route)."""
    out: list[DhcpOpt] = []
    subnets = _dhcp_subnets(cloud, net)
    for i, s in enumerate(subnets):
        tag = (f"tag:subnet-{s.id}",) if prof.modern else (f"tag:tag{i}",)
        if s.dns_nameservers:
            out.append(DhcpOpt("option:dns-server", tuple(str(d) for d in s.dns_nameservers), tag))
        routes: list[str] = []
        if prof.modern:
            routes += [f"{o.cidr},0.0.0.0" for o in cloud.subnets_of(net.id) if o.ip_version == 4 and o.id != s.id]
        routes += [f"{h.destination},{h.nexthop}" for h in s.host_routes]
        if prof.modern:
            dhcp_ip = next((f.ip_address for f in port.fixed_ips if f.subnet_id == s.id), None)
            if _isolated(cloud, s) and isolated_metadata and dhcp_ip is not None:
                routes.append(f"{METADATA_CIDR},{dhcp_ip}")
            elif not _isolated(cloud, s) and s.gateway_ip is not None:
                routes.append(f"{METADATA_CIDR},{s.gateway_ip}")
            if s.gateway_ip is not None:
                routes.append(f"0.0.0.0/0,{s.gateway_ip}")
        if routes:
            values = tuple(",".join(routes).split(","))
            out.append(DhcpOpt("option:classless-static-route", values, tag))
            if prof.modern:
                out.append(DhcpOpt("249", values, tag))
        out.append(DhcpOpt("option:router", (str(s.gateway_ip),) if s.gateway_ip is not None else (), tag))
    if prof.modern:
        out += port_opts(cloud, net)
    return tuple(out)


def dnsmasq_options(cloud: CloudSnapshot, net: Network, device: str, prof: Profile,
                    lease: int | None = None) -> tuple[DnsmasqOption, ...]:
    """dnsmasq's command line: seed 000's for Grizzly, reference §8.2's for modern."""
    def f(kind: naming.DhcpFile) -> str:
        return naming.dhcp_conf_file(net.id, kind, prof.state_path)

    subnets = _dhcp_subnets(cloud, net)
    o = DnsmasqOption
    if not prof.modern:
        seconds = 120 if lease is None else lease
        ranges = [o("dhcp-range", format_dhcp_range(DhcpRange(s.cidr.network_address, f"tag{i}", mode="static",
                                                              lease=f"{seconds}s")))
                  for i, s in enumerate(subnets)]
        return (o("no-hosts"), o("no-resolv"), o("strict-order"), o("bind-interfaces"), o("interface", device),
                o("except-interface", "lo"), o("pid-file", f(naming.DhcpFile.PID)),
                o("dhcp-hostsfile", f(naming.DhcpFile.HOST)), o("dhcp-optsfile", f(naming.DhcpFile.OPTS)),
                o("dhcp-script", prof.lease_script or ""), o("leasefile-ro"), *ranges, o("conf-file", ""),
                o("domain", DOMAIN))
    seconds = 86400 if lease is None else lease
    ranges = [o("dhcp-range", format_dhcp_range(DhcpRange(
        s.cidr.network_address, f"set:subnet-{s.id}", mode="static", netmask=str(s.cidr.netmask),
        lease="infinite" if seconds < 0 else f"{seconds}s"))) for s in subnets]
    size = min(sum(s.cidr.num_addresses for s in subnets), 2 ** 24)
    mtu = [o("dhcp-option-force", f"option:mtu,{net.mtu}")] if net.mtu > 0 else []
    return (o("no-hosts"), o("no-resolv"), o("pid-file", f(naming.DhcpFile.PID)),
            o("dhcp-hostsfile", f(naming.DhcpFile.HOST)), o("addn-hosts", f(naming.DhcpFile.ADDN_HOSTS)),
            o("dhcp-optsfile", f(naming.DhcpFile.OPTS)), o("dhcp-leasefile", f(naming.DhcpFile.LEASES)),
            o("dhcp-match", "set:ipxe,175"), o("dhcp-userclass", "set:ipxe6,iPXE"), o("local-service"),
            o("bind-dynamic"), *ranges, *mtu, o("dhcp-lease-max", str(size)), o("conf-file", "/dev/null"),
            o("domain", DOMAIN))


@dataclass(frozen=True, slots=True)
class _NetworkInputs:
    """Everything one network's DHCP namespace, dnsmasq and files are planned from (the key they
    are kept under, compared in full: a re-plan after a change on another network reuses them)."""

    prof: Profile
    net: Network
    port: _PortFacts  # the network's DHCP port served here
    subnets: tuple[Subnet, ...]  # the network's
    ports: tuple[_PortFacts, ...]  # every port on the network (the hosts and opts files)
    isolated_metadata: bool
    lease: int | None


#: what the DHCP agent reads of a port: id, MAC, owner, fixed IPs, extra DHCP options
_PortFacts = tuple[str, str, str, tuple[FixedIP, ...], tuple[PortDhcpOpt, ...]]


#: a port's :data:`_PortFacts` (an ``attrgetter``: the network host reads every port's, 10,000 a
#: re-plan at 1,000 hosts, and a Python function per port cost a fifth more)
_facts: Callable[[Port], _PortFacts] = operator.attrgetter("id", "mac_address", "device_owner", "fixed_ips",
                                                           "extra_dhcp_opts")


def _port(net: Network, facts: _PortFacts) -> Port:
    """A port holding only ``facts`` (the rest blank): what ``_served`` plans from."""
    ident, mac, owner, fixed_ips, extra = facts
    return Port(ident, "", "", net.id, mac, True, "", "", owner, fixed_ips, (), False, (), "", "", (), extra)


@dataclass(frozen=True, slots=True)
class _Served:
    """One served network's share of the host: its namespace, the root end of a veth (Grizzly),
    dnsmasq, its files and the origins."""

    namespace: NamespaceState
    root_link: Link | None
    process: DnsmasqProcess
    files: tuple[FileState, ...]
    origins: tuple[Origin, ...]


#: each network's last DHCP plan, with what it was planned from
_SERVED: InputsMemo[_NetworkInputs, _Served] = InputsMemo()


def _served(i: _NetworkInputs) -> _Served:
    """One network's DHCP, planned from ``i`` alone (a snapshot of just the network)."""
    prof, net, port = i.prof, i.net, _port(i.net, i.port)
    cloud = CloudSnapshot(Deployment(), networks=(net,), subnets=i.subnets, ports=tuple(_port(net, f) for f in i.ports))
    ns_name = naming.dhcp_namespace(net.id)
    obj = f"network {net.id}"
    dev = naming.dhcp_device(port.id, use_veth=prof.use_veth)
    addrs = [address(f.ip_address, cloud.subnet(f.subnet_id).cidr.prefixlen, dev) for f in port.fixed_ips]
    if i.isolated_metadata:
        addrs.append(address(ipaddress.ip_address(METADATA_CIDR.split("/")[0]), 32, dev))
    routes = [r for a in addrs if (r := connected_route(prof, a, dev)) is not None]
    gw = next((s.gateway_ip for s in _dhcp_subnets(cloud, net) if s.gateway_ip is not None), None)
    if gw is not None:
        routes.append(Route(None, via=gw, dev=dev, style=prof.iproute_style))
    link = agent_link(prof, dev, port.mac_address, net.mtu, tuple(addrs))
    ns = NamespaceState(ns_name, links=(link,), routes=ordered_routes(prof, routes))
    origins = [Origin("namespace", ns_name, obj, BUILDER), Origin("link", dev, f"port {port.id}", BUILDER)]
    root_link = None
    if prof.use_veth:
        root_link = agent_link(prof, naming.ovs_veth_peer(dev), None, net.mtu)
        origins.append(Origin("link", naming.ovs_veth_peer(dev), f"port {port.id}", BUILDER))
    if prof.modern:
        b = prof.dhcp_agent_binary
        chains, rules = manager_skeleton(prof, b, (TableName.FILTER, TableName.RAW, TableName.NAT,
                                                   TableName.MANGLE), BUILDER)
        checksum = PlannedRule(TableName.MANGLE, rule(
            f"-A {naming.wrapped_chain(b, 'POSTROUTING')} -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill",
            f"dhcp checksum for network {net.id} via {BUILDER}"))
        ruleset, chain_origins = assemble(prof, chains, (*rules, checksum), BUILDER)
        ns = replace(ns, iptables=ruleset, sysctls=(Sysctl("net.ipv4.ip_nonlocal_bind", "1"),))
        origins += [Origin(o.kind, f"{ns_name}:{o.item}", o.obj, o.builder) for o in chain_origins]
    argv = dnsmasq_argv("dnsmasq", dnsmasq_options(cloud, net, dev, prof, i.lease))
    process = DnsmasqProcess("nobody", 0, argv, ppid=1)
    origins.append(Origin("process", f"dnsmasq {ns_name}", obj, BUILDER))
    entries = hosts(cloud, net, prof)
    texts = [(naming.DhcpFile.HOST, format_hosts_file(entries)),
             (naming.DhcpFile.OPTS, format_opts_file(opts(cloud, net, port, prof,
                                                          isolated_metadata=i.isolated_metadata)))]
    if prof.modern:
        texts.insert(1, (naming.DhcpFile.ADDN_HOSTS, addn_hosts_text(entries)))
    files = []
    for kind, text in texts:
        path = naming.dhcp_conf_file(net.id, kind, prof.state_path)
        files.append(FileState(path, text))
        origins.append(Origin("file", path, obj, BUILDER))
    return _Served(ns, root_link, process, tuple(files), tuple(origins))


def _network_facts(cloud: CloudSnapshot, network_id: str) -> tuple[_PortFacts, ...]:
    """What DHCP reads of each port on the network, once per snapshot (in its index; carried to
    the next snapshot while the network's ports are unchanged: :func:`carry_index`)."""
    table: dict[str, tuple[_PortFacts, ...]] = cloud._index.setdefault("@dhcp_facts", {})
    got = table.get(network_id)
    if got is None:
        got = table[network_id] = tuple(map(_facts, cloud.ports_on_network(network_id)))
    return got


def carry_index(before: CloudSnapshot, cloud: CloudSnapshot, networks: set[str], ports: Iterable[Port] = ()) -> None:
    """Give ``cloud`` ``before``'s port facts of each network not in ``networks`` (the caller
    vouches that only ports changed between the two, all of them on ``networks``, and in their
    order: ``ports``, each as it was and as it is) and, when none of those is a DHCP port, the
    networks each host serves (:func:`served_networks`: made of the deployment, the networks, their
    subnets and DHCP ports alone; a pass over every port, issue #17, replan15)."""
    old = before._index.get("@dhcp_facts")
    if old is not None and "@dhcp_facts" not in cloud._index:
        cloud._index["@dhcp_facts"] = {n: v for n, v in old.copy().items() if n not in networks}
    served = before._index.get("@dhcp_served_networks")
    if served is not None and not any(p.device_owner == "network:dhcp" for p in ports):
        cloud._index.setdefault("@dhcp_served_networks", served)


def plan_dhcp(cloud: CloudSnapshot, host: Host | str, generation: Generation | Profile = Generation.MODERN, *,
              isolated_metadata: bool = False, lease: int | None = None) -> HostState:
    """Every DHCP namespace, dnsmasq and its files on ``host`` (IPv4 subnets)."""
    prof = profile(generation)
    name = host_name(host)
    namespaces: dict[str, NamespaceState] = {}
    root_links = []
    processes = []
    files: list[FileState] = []
    origins: list[Origin] = []
    for net, port in served_networks(cloud, name):
        ports = _network_facts(cloud, net.id)
        inputs = _NetworkInputs(prof, net, _facts(port), cloud.subnets_of(net.id), ports, isolated_metadata, lease)
        served = _SERVED.get((net.id, name), inputs, _served)
        namespaces[served.namespace.name] = served.namespace
        if served.root_link is not None:
            root_links.append(served.root_link)
        processes.append(served.process)
        files += served.files
        origins += served.origins
    if root_links:
        namespaces[ROOT] = NamespaceState(ROOT, links=tuple(root_links))
    return HostState(name, namespaces=tuple(sorted(namespaces.values(), key=lambda n: (n.name != ROOT, n.name))),
                     processes=tuple(processes) if processes else None, files=tuple(files), origins=tuple(origins))
