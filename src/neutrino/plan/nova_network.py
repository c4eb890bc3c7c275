"""nova-network's managers (Flat, FlatDHCP, VlanManager; single- and multi-host) as pure planners.

Neutron objects stand in for nova-network's: a network's first IPv4 subnet is its ``fixed_range``,
its ``segment.segmentation_id`` its VLAN, a server's port (MAC, fixed IP) its virtual interface.
``plan_nova_network(cloud, host)`` returns the host's root namespace (nova-network uses no
namespaces): the physical NICs the deployment names, the bridges nova makes (``br100`` for Flat and
FlatDHCP, ``vlan<N>`` + ``br<N>`` for VlanManager), the instances' ``vnetN`` taps, dnsmasq and its
hosts file, the kernel's routes, ``net.ipv4.ip_forward`` and the iptables filter and nat tables of
the nova services on the host (``nova-network``, ``nova-compute``, ``nova-api``), following
nova-network's ``linux_net.py`` of the seeds' era (Essex/Folsom, 2012):

- ``init_host``: per fixed range, ``-A nova-network-snat -s RANGE -j SNAT --to-source ROUTING_SOURCE_IP``
  and three ``nova-network-POSTROUTING`` ACCEPTs (metadata host, ``dmz_cidr``, the range itself
  unless DNATed); ``metadata_forward``: the 169.254.169.254:80 DNAT to ``metadata_host:metadata_port``.
- ``ensure_bridge``: ``-i/-o <bridge> -j ACCEPT`` in the FORWARD chain of the service that plugs it.
- ``restart_dhcp``: the dnsmasq command line and the DHCP/DNS INPUT accepts on the bridge.
- ``floating_forward_rules``: PREROUTING and OUTPUT DNAT, float-snat SNAT; the address as a /32
  on the ``public_interface``.
- nova-compute's ``IptablesFirewallDriver``: ``inst-<N>`` per instance (INVALID drop,
  RELATED/ESTABLISHED accept, ``provider``, DHCP from the instance's DHCP server, same-net traffic
  when ``allow_same_net_traffic``, the security-group ingress rules, ``sg-fallback``).

Modes. *FlatDHCP single-host* (seed 004): nova-network and dnsmasq run on the deployment's network
host, whose ``br100`` holds the range's gateway; computes get ``br100`` (no address) only once an
instance lands there. *Multi-host* (seed 003): every compute with an instance runs nova-network for
the networks of its instances ("OpenStack provisions networks on demand"), with its own gateway
address on the bridge (:func:`dhcp_servers`) and its own dnsmasq. *FlatManager*: the same bridges
and taps, but no dnsmasq and no DHCP rules, since nova injects the address into the guest image.

>>> from neutrino.scenarios.model import Deployment, Mechanism
>>> plan_nova_network(CloudSnapshot(Deployment(Mechanism.NOVA_NETWORK)), "nowhere").name
'nowhere'
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field, replace

from neutrino.errors import PlanError
from neutrino.host.bridge import BridgeInfo
from neutrino.host.dnsmasq import DhcpHost, DnsmasqOption, DnsmasqProcess, dnsmasq_argv, format_hosts_file
from neutrino.host.iproute import IprouteStyle
from neutrino.host.iproute_link import Address, Link, LinkKind, OperState
from neutrino.host.iproute_route import Route
from neutrino.host.iptables import BUILTIN_CHAINS, TableName
from neutrino.host.state import ROOT, FileState, HostState, NamespaceState, Origin
from neutrino.host.sysctl import Sysctl
from neutrino.plan import naming
from neutrino.plan.generation import GRIZZLY, PlannedChain, PlannedRule, Profile, assemble, host_name, rule
from neutrino.scenarios.model import Host, NovaManager
from neutrino.services.snapshot import CloudSnapshot, Network, Port, SecurityGroupRule, Server, Subnet

IPv4 = ipaddress.IPv4Address
BUILDER = "plan_nova_network"
METADATA_IP = "169.254.169.254"
LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")
UP = ("BROADCAST", "MULTICAST", "UP", "LOWER_UP")

#: nova's iptables managers: the 2012 chain layout (no comments), every nat built-in listed.
NOVA_PROFILE: Profile = replace(GRIZZLY, product="nova", nat_builtins=BUILTIN_CHAINS[TableName.NAT],
                                lease_script="/usr/bin/nova-dhcpbridge")
NETWORK = naming.IptablesBinary.NOVA_NETWORK
COMPUTE = naming.IptablesBinary.NOVA_COMPUTE
API = naming.IptablesBinary.NOVA_API


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the deployment does not say about a host's own networking (it was there before nova).

    ``macs``: (device, MAC) of the physical NICs; a bridge takes the MAC of its first port, so
    ``brctl show``'s bridge id comes from here (seed 004: ``eth2`` 08:00:27:8f:87:fa). Devices
    without one get a stable made-up ``fa:16:3e`` MAC (nova gives its VLAN devices random ones).
    ``default_via``/``default_metric``: the host's default route (seed 004: via 192.168.56.101,
    metric 100), on the device whose subnet holds the gateway. ``link_local_metric``: the
    169.254.0.0/16 route Ubuntu adds on that device (seed 004: metric 1000; ``None``: none).
    ``routing_source_ip``: the SNAT source of the fixed ranges (nova's ``routing_source_ip``,
    default ``my_ip``: the address of the ``public_interface``, else the management address).
    ``metadata_host``: where the metadata DNAT points (default: the management address).
    """

    name: str
    macs: tuple[tuple[str, str], ...] = ()
    default_via: IPv4 | None = None
    default_metric: int | None = 100
    link_local_metric: int | None = 1000
    routing_source_ip: IPv4 | None = None
    metadata_host: IPv4 | None = None

    def mac(self, device: str) -> str | None:
        return next((m for d, m in self.macs if d == device), None)


@dataclass(frozen=True, slots=True)
class NovaOptions:
    """nova.conf settings and facts the cloud snapshot does not carry.

    ``instance_offset``: servers are numbered in creation order from ``1 + instance_offset``
    (seed 004's only instance is ``instance-00000009``: offset 8). ``host_gateways``: (network id,
    host, address) pins a host's DHCP/gateway address on a network, overriding
    :func:`dhcp_servers`. The rest are nova.conf options with nova's defaults.
    """

    hosts: tuple[HostFacts, ...] = ()
    instance_offset: int = 0
    flat_network_bridge: str = "br100"
    dmz_cidr: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.IPv4Network("10.128.0.0/24"))
    metadata_port: int = 8775
    allow_same_net_traffic: bool = True
    dhcp_domain: str = "novalocal"
    dhcp_lease_time: int = 120
    dnsmasq_config_file: str = ""
    dhcpbridge: str = "/usr/bin/nova-dhcpbridge"
    dnsmasq: str = "/usr/sbin/dnsmasq"
    networks_path: str = naming.NOVA_NETWORKS_PATH
    host_gateways: tuple[tuple[str, str, IPv4], ...] = ()
    iproute_style: IprouteStyle = IprouteStyle.LEGACY

    def facts(self, host: str) -> HostFacts:
        return next((h for h in self.hosts if h.name == host), HostFacts(host))


DEFAULTS = NovaOptions()


# --- the cloud seen as nova-network sees it --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NovaNet:
    """A nova network: its fixed range, bridge, VLAN, gateway and first DHCP address."""

    network: Network
    subnet: Subnet
    bridge: str
    vlan: int | None
    gateway: IPv4
    dhcp_start: IPv4

    @property
    def cidr(self) -> ipaddress.IPv4Network:
        assert isinstance(self.subnet.cidr, ipaddress.IPv4Network)
        return self.subnet.cidr


@dataclass(frozen=True, slots=True)
class Vif:
    """An instance's virtual interface: server, instance number, port, network and fixed IP."""

    server: Server
    number: int
    port: Port
    net: NovaNet
    ip: IPv4


def _v4_subnet(cloud: CloudSnapshot, net: Network) -> Subnet | None:
    return next((s for s in cloud.subnets_of(net.id) if s.ip_version == 4), None)


def nova_networks(cloud: CloudSnapshot, options: NovaOptions = DEFAULTS) -> tuple[NovaNet, ...]:
    """The networks nova-network manages (not external, with an IPv4 subnet), in creation order.

    VlanManager: ``br<vlan>`` with the segment's VLAN (else ``vlan_start`` + position), the third
    address reserved for cloudpipe so DHCP starts at the fourth; Flat/FlatDHCP: every network on
    ``flat_network_bridge``, DHCP from the address after the gateway.
    """
    cfg = cloud.deployment.nova_network
    out: list[NovaNet] = []
    for net in cloud.networks:
        sub = _v4_subnet(cloud, net)
        if net.external or sub is None:
            continue
        cidr = sub.cidr
        gw = sub.gateway_ip if isinstance(sub.gateway_ip, IPv4) else cidr.network_address + 1
        assert isinstance(gw, IPv4)
        if cfg.manager is NovaManager.VLAN:
            vlan = net.segment.segmentation_id or cfg.vlan_start + len(out)
            out.append(NovaNet(net, sub, naming.nova_bridge(vlan), vlan, gw, IPv4(int(cidr.network_address) + 3)))
        else:
            out.append(NovaNet(net, sub, options.flat_network_bridge, None, gw, gw + 1))
    return tuple(out)


def instance_numbers(cloud: CloudSnapshot, offset: int = 0) -> dict[str, int]:
    """Server id -> nova instance number (``inst-<N>``, ``instance-%08x``): creation order from 1."""
    return {s.id: i + 1 + offset for i, s in enumerate(cloud.servers)}


def vifs(cloud: CloudSnapshot, options: NovaOptions = DEFAULTS) -> tuple[Vif, ...]:
    """Every instance's interfaces on nova networks, in server (creation) order then port order."""
    nets = {n.network.id: n for n in nova_networks(cloud, options)}
    numbers = instance_numbers(cloud, options.instance_offset)
    out: list[Vif] = []
    for server in cloud.servers:
        for pid in server.port_ids:
            port = cloud.port(pid)
            net = nets.get(port.network_id)
            ip = next((f.ip_address for f in port.fixed_ips if net is not None
                       and f.subnet_id == net.subnet.id and isinstance(f.ip_address, IPv4)), None)
            if net is not None and ip is not None:
                out.append(Vif(server, numbers[server.id], port, net, ip))
    return tuple(out)


def _network_host(cloud: CloudSnapshot) -> str | None:
    h = cloud.deployment.network_host()
    return None if h is None else h.name


def network_hosts(cloud: CloudSnapshot, net: NovaNet, all_vifs: tuple[Vif, ...]) -> tuple[str, ...]:
    """Where nova-network sets ``net`` up: the network host (single-host), or each host with one of
    its instances, in the order their first instance was created (multi-host)."""
    if not cloud.deployment.nova_network.multi_host:
        nh = _network_host(cloud)
        return () if nh is None else (nh,)
    out: list[str] = []
    for v in all_vifs:
        if v.net.network.id == net.network.id and v.server.host and v.server.host not in out:
            out.append(v.server.host)
    return tuple(out)


def dhcp_servers(cloud: CloudSnapshot, options: NovaOptions = DEFAULTS) -> dict[tuple[str, str], IPv4]:
    """(network id, host) -> the address the host's bridge and dnsmasq take on that network.

    Single-host: the network's gateway. Multi-host (nova's ``_get_dhcp_ip``, a fixed IP reserved
    per host), made deterministic: the first host (by first instance) takes the gateway; each next
    host takes the lowest address of the range that is not the network, broadcast, gateway or
    (VlanManager) cloudpipe address, no port's fixed IP and no earlier host's address. Seed 003:
    host 1 ``10.0.0.1``/``10.1.0.1``; host 2 ``10.0.0.5``/``10.1.0.5`` with VM_1 .3, VM_2 .4,
    VM_4 .6, VM_5 .7 and VM_3 .3, VM_6 .4. ``options.host_gateways`` pins addresses. The rule is a
    recompute: removing instances can move a later host's address (nova keeps the association).
    """
    all_vifs = vifs(cloud, options)
    pinned = {(n, h): ip for n, h, ip in options.host_gateways}
    vlan = cloud.deployment.nova_network.manager is NovaManager.VLAN
    out: dict[tuple[str, str], IPv4] = {}
    for net in nova_networks(cloud, options):
        taken = {net.gateway, net.cidr.network_address, net.cidr.broadcast_address}
        if vlan:
            taken.add(net.cidr.network_address + 2)
        taken.update(f.ip_address for p in cloud.ports_on_network(net.network.id) for f in p.fixed_ips
                     if isinstance(f.ip_address, IPv4))
        taken.update(ip for (nid, _), ip in pinned.items() if nid == net.network.id)
        for i, host in enumerate(network_hosts(cloud, net, all_vifs)):
            key = (net.network.id, host)
            if key in pinned:
                out[key] = pinned[key]
                continue
            if i == 0 and net.gateway not in pinned.values():
                out[key] = net.gateway
                continue
            free = next((a for a in net.cidr.hosts() if a not in taken), None)
            if free is None:
                raise PlanError(f"network {net.network.id}: no address left for host {host}")
            taken.add(free)
            out[key] = free
    return out


# --- small builders ----------------------------------------------------------------------------------

def _made_up_mac(host: str, device: str) -> str:
    h = hashlib.sha256(f"{host}/{device}".encode()).hexdigest()
    return f"fa:16:3e:{h[0:2]}:{h[2:4]}:{h[4:6]}"


def tap_mac(mac: str) -> str:
    """libvirt's tap MAC: the instance's with the first byte ``fe`` (seed 004: fe:16:3e:2c:e8:ec)."""
    return "fe" + mac.lower()[2:]


def hostname(server: Server) -> str:
    """nova's ``sanitize_hostname``: spaces and ``_`` become ``-``, other odd characters go, lower case."""
    name = re.sub(r"[ _]", "-", server.name)
    name = re.sub(r"[^\w.-]+", "", name).lower()
    return name.strip(".-") or f"server-{server.id}"


def _addr(ip: IPv4, prefixlen: int, dev: str) -> Address:
    iface = ipaddress.IPv4Interface(f"{ip}/{prefixlen}")
    brd = iface.network.broadcast_address if prefixlen < 32 else None
    return Address(iface, "global", brd=brd, label=dev)


def _connected(addr: Address, dev: str, style: IprouteStyle) -> Route | None:
    net = addr.interface.network
    if net.prefixlen == net.max_prefixlen:
        return None
    return Route(net, dev=dev, proto="kernel", scope="link", src=addr.interface.ip, style=style)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one host runs, worked out once."""

    host: str
    deployment_host: Host | None
    facts: HostFacts
    nets: tuple[NovaNet, ...]  # nova-network serves these here (bridge with an address, dnsmasq)
    bridged: tuple[NovaNet, ...]  # every network with a bridge here (served or with local instances)
    local: tuple[Vif, ...]  # this host's instance interfaces
    servers: dict[tuple[str, str], IPv4]
    all_vifs: tuple[Vif, ...]

    @property
    def runs_network(self) -> bool:
        return bool(self.nets)

    @property
    def runs_api(self) -> bool:
        return self.deployment_host is not None and self.deployment_host.has("controller")

    def management_ip(self) -> IPv4 | None:
        ip = None if self.deployment_host is None else self.deployment_host.management_ip
        return ip if isinstance(ip, IPv4) else None

    def interface_address(self, device: str) -> ipaddress.IPv4Interface | None:
        for name, text in () if self.deployment_host is None else self.deployment_host.interfaces:
            if name == device:
                iface = ipaddress.ip_interface(text)
                return iface if isinstance(iface, ipaddress.IPv4Interface) else None
        return None


def _work_out(cloud: CloudSnapshot, host: str, options: NovaOptions) -> _Plan:
    all_vifs = vifs(cloud, options)
    servers = dhcp_servers(cloud, options)
    nets = nova_networks(cloud, options)
    local = tuple(v for v in all_vifs if v.server.host == host)
    served = tuple(n for n in nets if (n.network.id, host) in servers)
    if cloud.deployment.nova_network.manager is NovaManager.FLAT:
        served = tuple(n for n in nets if host in network_hosts(cloud, n, all_vifs))
    used = {v.net.network.id for v in local}
    addressed = cloud.deployment.nova_network.manager is not NovaManager.FLAT
    bridged = tuple(n for n in nets if (addressed and n in served) or n.network.id in used)
    return _Plan(host, cloud.deployment.host(host), options.facts(host), served, bridged, local, servers,
                 all_vifs)


# --- devices and routes ----------------------------------------------------------------------------

def _links_and_routes(cloud: CloudSnapshot, p: _Plan, options: NovaOptions
                      ) -> tuple[tuple[Link, ...], tuple[Route, ...], tuple[BridgeInfo, ...], tuple[Origin, ...]]:
    cfg = cloud.deployment.nova_network
    style = options.iproute_style
    flat = cfg.manager is not NovaManager.VLAN
    bridges = {n.bridge: n for n in p.bridged}  # Flat: one bridge for every network
    uplink = cfg.flat_interface if flat else cfg.vlan_interface
    links: dict[str, Link] = {}
    routes: list[Route] = []
    origins: list[Origin] = []
    masters: dict[str, str] = {}
    for bridge, net in bridges.items():
        if flat:
            masters[uplink] = bridge
        else:
            assert net.vlan is not None
            masters[naming.nova_vlan_interface(net.vlan)] = bridge
    for v in p.local:
        masters[naming.libvirt_tap(p.local.index(v))] = v.net.bridge

    # the host's own NICs: the deployment's addressed interfaces, the uplink, the public interface
    nic_names = [name for name, _ in (p.deployment_host.interfaces if p.deployment_host else ())]
    for extra_nic in (uplink, cfg.public_interface):
        if extra_nic not in nic_names and (extra_nic == uplink or p.runs_network):
            nic_names.append(extra_nic)
    floating = _floating(cloud, p)
    for name in nic_names:
        addrs: list[Address] = []
        iface = p.interface_address(name)
        if iface is not None:
            addrs.append(_addr(iface.ip, iface.network.prefixlen, name))
        if name == cfg.public_interface:
            addrs += [_addr(f, 32, name) for f, _ in floating]
        flags = (*UP[:2], "PROMISC", *UP[2:]) if flat and name == uplink else UP
        links[name] = Link(0, name, flags=flags, mtu=1500, qdisc="pfifo_fast", master=masters.get(name),
                           state=OperState.UP, qlen=1000, link_type="ether",
                           mac=p.facts.mac(name) or _made_up_mac(p.host, name), brd="ff:ff:ff:ff:ff:ff",
                           addresses=tuple(addrs), kind=LinkKind.ETHER)
        routes += [r for a in addrs if (r := _connected(a, name, style)) is not None]

    infos: list[BridgeInfo] = []
    for bridge, net in bridges.items():
        obj = f"network {net.network.id}"
        if flat:
            first = uplink
        else:
            assert net.vlan is not None
            first = naming.nova_vlan_interface(net.vlan)
            vlan_mac = p.facts.mac(first) or _made_up_mac(p.host, first)
            links[first] = Link(0, first, peer=cfg.vlan_interface, flags=UP, mtu=1500, qdisc="noqueue",
                                master=bridge, state=OperState.UP, link_type="ether", mac=vlan_mac,
                                brd="ff:ff:ff:ff:ff:ff", kind=LinkKind.VLAN)
            origins.append(Origin("link", first, obj, BUILDER))
        addrs = [] if cfg.manager is NovaManager.FLAT else [
            _addr(p.servers[(n.network.id, p.host)], n.cidr.prefixlen, bridge)
            for n in p.nets if n.bridge == bridge and (n.network.id, p.host) in p.servers]
        mac = links[first].mac or _made_up_mac(p.host, bridge)
        links[bridge] = Link(0, bridge, flags=UP, mtu=1500, qdisc="noqueue", state=OperState.UP,
                             link_type="ether", mac=mac, brd="ff:ff:ff:ff:ff:ff", addresses=tuple(addrs),
                             kind=LinkKind.BRIDGE)
        routes += [r for a in addrs if (r := _connected(a, bridge, style)) is not None]
        members = sorted([first, *(n for n, m in masters.items() if m == bridge and n.startswith("vnet"))])
        infos.append(BridgeInfo(bridge, "8000." + mac.replace(":", ""), False, tuple(members)))
        origins.append(Origin("bridge", bridge, obj, BUILDER))

    for i, v in enumerate(p.local):
        tap = naming.libvirt_tap(i)
        links[tap] = Link(0, tap, flags=UP, mtu=1500, qdisc="pfifo_fast", master=v.net.bridge,
                          state=OperState.UNKNOWN, qlen=500, link_type="ether", mac=tap_mac(v.port.mac_address),
                          brd="ff:ff:ff:ff:ff:ff", kind=LinkKind.TAP)
        origins.append(Origin("link", tap, f"port {v.port.id}", BUILDER))

    via = p.facts.default_via
    if via is not None:
        dev = next((lk.name for lk in links.values() for a in lk.addresses
                    if a.interface.network.prefixlen < 32 and via in a.interface.network), None)
        if dev is None:
            raise PlanError(f"host {p.host}: no interface reaches the default gateway {via}")
        routes.append(Route(None, via=via, dev=dev, metric=p.facts.default_metric, style=style))
        if p.facts.link_local_metric is not None:
            routes.append(Route(LINK_LOCAL, dev=dev, scope="link", metric=p.facts.link_local_metric, style=style))
    routes.sort(key=lambda r: (int((r.dst or ipaddress.IPv4Network("0.0.0.0/0")).network_address),
                               (r.dst.prefixlen if r.dst else 0), r.metric or 0))
    return tuple(links.values()), tuple(routes), tuple(sorted(infos, key=lambda b: b.name)), tuple(origins)


def _floating(cloud: CloudSnapshot, p: _Plan) -> tuple[tuple[IPv4, IPv4], ...]:
    """(floating, fixed) pairs whose NAT this host does: the instance's host (multi-host) or the
    network host (single-host)."""
    if not p.runs_network:
        return ()
    multi = cloud.deployment.nova_network.multi_host
    by_port = {v.port.id: v for v in p.all_vifs}
    out: list[tuple[IPv4, IPv4]] = []
    for f in cloud.floating_ips:
        v = by_port.get(f.port_id or "")
        if v is None or not isinstance(f.floating_ip_address, IPv4):
            continue
        fixed = f.fixed_ip_address if isinstance(f.fixed_ip_address, IPv4) else v.ip
        if (v.server.host == p.host) if multi else (v.net in p.nets):
            out.append((f.floating_ip_address, fixed))
    return tuple(out)


# --- dnsmasq ------------------------------------------------------------------------------------------

def _dnsmasq(cloud: CloudSnapshot, p: _Plan, options: NovaOptions
             ) -> tuple[tuple[DnsmasqProcess, ...], tuple[FileState, ...], tuple[Origin, ...]]:
    """``restart_dhcp``: one dnsmasq per served bridge, static leases of the instances it serves
    (all of the network's in single-host, this host's in multi-host)."""
    if cloud.deployment.nova_network.manager is NovaManager.FLAT:
        return (), (), ()
    multi = cloud.deployment.nova_network.multi_host
    procs: list[DnsmasqProcess] = []
    files: list[FileState] = []
    origins: list[Origin] = []
    for net in p.nets:
        listen = p.servers[(net.network.id, p.host)]
        conf = naming.nova_dhcp_file(net.bridge, "conf", options.networks_path)
        opts = (
            DnsmasqOption("strict-order"), DnsmasqOption("bind-interfaces"),
            DnsmasqOption("conf-file", options.dnsmasq_config_file), DnsmasqOption("domain", options.dhcp_domain),
            DnsmasqOption("pid-file", naming.nova_dhcp_file(net.bridge, "pid", options.networks_path)),
            DnsmasqOption("listen-address", str(listen)), DnsmasqOption("except-interface", "lo"),
            DnsmasqOption("dhcp-range", f"{net.dhcp_start},static,{options.dhcp_lease_time}s"),
            DnsmasqOption("dhcp-lease-max", str(net.cidr.num_addresses)),
            DnsmasqOption("dhcp-hostsfile", conf), DnsmasqOption("dhcp-script", options.dhcpbridge),
            DnsmasqOption("leasefile-ro"))
        procs.append(DnsmasqProcess("nobody", 0, dnsmasq_argv(options.dnsmasq, opts), "aux"))
        leases = [DhcpHost(v.port.mac_address, f"{hostname(v.server)}.{options.dhcp_domain}", v.ip)
                  for v in p.all_vifs if v.net == net and (not multi or v.server.host == p.host)]
        files.append(FileState(conf, format_hosts_file(leases)))
        obj = f"network {net.network.id}"
        origins += [Origin("process", f"dnsmasq {net.bridge}", obj, BUILDER), Origin("file", conf, obj, BUILDER)]
    return tuple(procs), tuple(files), tuple(origins)


# --- iptables -----------------------------------------------------------------------------------------

_WRAPPED = {TableName.FILTER: ("INPUT", "FORWARD", "OUTPUT"), TableName.NAT: ("PREROUTING", "OUTPUT", "POSTROUTING")}


def _skeleton(binaries: tuple[str, ...]) -> tuple[list[PlannedChain], list[PlannedRule]]:
    """The chains and jumps of nova's ``IptablesManager`` for each service on the host, the shared
    ``nova-filter-top`` first in FORWARD/OUTPUT and ``nova-postrouting-bottom`` last in POSTROUTING."""
    chains: list[PlannedChain] = []
    rules: list[PlannedRule] = []
    top, bottom = naming.filter_top("nova"), naming.postrouting_bottom("nova")

    def add(table: TableName, text: str, why: str) -> None:
        rules.append(PlannedRule(table, rule(text, f"{why} via {BUILDER}")))

    chains += [PlannedChain(TableName.FILTER, top, "nova iptables manager"),
               PlannedChain(TableName.NAT, bottom, "nova iptables manager")]
    for table, builtins in _WRAPPED.items():
        for chain in builtins:
            if table is TableName.FILTER and chain in ("FORWARD", "OUTPUT"):
                add(table, f"-A {chain} -j {top}", "nova iptables manager")
            for b in binaries:
                chains.append(PlannedChain(table, naming.wrapped_chain(b, chain), f"service {b}"))
                add(table, f"-A {chain} -j {naming.wrapped_chain(b, chain)}", f"{b} iptables manager")
            if table is TableName.NAT and chain == "POSTROUTING":
                add(table, f"-A {chain} -j {bottom}", "nova iptables manager")
    for b in binaries:
        local, snat, fsnat = (naming.wrapped_chain(b, c) for c in ("local", "snat", "float-snat"))
        chains += [PlannedChain(TableName.FILTER, local, f"service {b}"), PlannedChain(TableName.NAT, snat, f"service {b}"),
                   PlannedChain(TableName.NAT, fsnat, f"service {b}")]
        add(TableName.FILTER, f"-A {top} -j {local}", f"{b} iptables manager")
        add(TableName.NAT, f"-A {bottom} -j {snat}", f"{b} iptables manager")
        add(TableName.NAT, f"-A {snat} -j {fsnat}", f"{b} iptables manager")
    return chains, rules


def _routing_source_ip(p: _Plan, public_interface: str) -> IPv4:
    if p.facts.routing_source_ip is not None:
        return p.facts.routing_source_ip
    iface = p.interface_address(public_interface)
    ip = iface.ip if iface is not None else p.management_ip()
    if ip is None:
        raise PlanError(f"host {p.host}: no routing_source_ip (no {public_interface} address, no management_ip)")
    return ip


def _metadata_host(p: _Plan) -> IPv4:
    ip = p.facts.metadata_host or p.management_ip()
    if ip is None:
        raise PlanError(f"host {p.host}: no metadata_host (no management_ip)")
    return ip


def _sg_rules(cloud: CloudSnapshot, v: Vif, chain: str, all_vifs: tuple[Vif, ...]) -> list[str]:
    """nova's ingress security-group rules of one instance (nova had no egress rules): a
    remote-group rule becomes one ``-s IP/32`` rule per member instance address, as Essex did."""
    out: list[str] = []
    members: dict[str, list[IPv4]] = {}
    for other in all_vifs:
        for sg in other.port.security_group_ids:
            members.setdefault(sg, []).append(other.ip)
    for sg_id in v.port.security_group_ids:
        for r in cloud.security_group(sg_id).rules:
            if r.direction != "ingress" or r.ethertype != "IPv4":
                continue
            spec = _sg_spec(r)
            if r.remote_group_id is not None:
                out += [f"-A {chain} -s {ip}/32{spec} -j ACCEPT" for ip in members.get(r.remote_group_id, ())]
            else:
                src = f" -s {r.remote_ip_prefix}" if r.remote_ip_prefix is not None and r.remote_ip_prefix.prefixlen else ""
                out.append(f"-A {chain}{src}{spec} -j ACCEPT")
    return out


def _sg_spec(r: SecurityGroupRule) -> str:
    proto = {"6": "tcp", "17": "udp", "1": "icmp"}.get(r.protocol or "", r.protocol)
    if proto is None:
        return ""
    spec = f" -p {proto}"
    lo, hi = r.port_range_min, r.port_range_max
    if proto in ("tcp", "udp") and lo is not None:
        if hi is None or hi == lo:
            spec += f" -m {proto} --dport {lo}"
        else:
            spec += f" -m multiport --dports {lo}:{hi}"
    elif proto == "icmp" and lo is not None:
        spec += f" -m icmp --icmp-type {lo}" + (f"/{hi}" if hi is not None else "")
    return spec


def _iptables(cloud: CloudSnapshot, p: _Plan, options: NovaOptions
              ) -> tuple[tuple[PlannedChain, ...], tuple[PlannedRule, ...], tuple[str, ...]]:
    cfg = cloud.deployment.nova_network
    binaries = tuple(b for b, on in ((NETWORK, p.runs_network), (COMPUTE, bool(p.local)), (API, p.runs_api)) if on)
    if not binaries:
        return (), (), ()
    chains, rules = _skeleton(binaries)
    F, N = TableName.FILTER, TableName.NAT

    def add(table: TableName, text: str, why: str) -> None:
        rules.append(PlannedRule(table, rule(text, f"{why} via {BUILDER}")))

    if p.runs_api:  # metadata_accept
        add(F, f"-A nova-api-INPUT -d {_metadata_host(p)}/32 -p tcp -m tcp --dport {options.metadata_port} -j ACCEPT",
            "nova-api metadata")
    if p.runs_network:
        meta = _metadata_host(p)
        snat_ip = _routing_source_ip(p, cfg.public_interface)
        add(N, f"-A nova-network-PREROUTING -d {METADATA_IP}/32 -p tcp -m tcp --dport 80 "
               f"-j DNAT --to-destination {meta}:{options.metadata_port}", "metadata_forward")
        for net in p.nets:  # init_host, per fixed range
            obj = f"network {net.network.id}"
            add(N, f"-A nova-network-snat -s {net.cidr} -j SNAT --to-source {snat_ip}", obj)
            add(N, f"-A nova-network-POSTROUTING -s {net.cidr} -d {meta}/32 -j ACCEPT", obj)
            add(N, f"-A nova-network-POSTROUTING -s {net.cidr} -d {options.dmz_cidr} -j ACCEPT", obj)
            add(N, f"-A nova-network-POSTROUTING -s {net.cidr} -d {net.cidr} -m conntrack ! --ctstate DNAT -j ACCEPT",
                obj)
            # nova's fixed_range spans every tenant network: traffic between two of them is not
            # SNATed either (init_host's one rule over the whole range, one rule per pair here)
            for other in p.nets:
                if other.cidr != net.cidr:
                    add(N, f"-A nova-network-POSTROUTING -s {net.cidr} -d {other.cidr} -m conntrack "
                           f"! --ctstate DNAT -j ACCEPT", obj)
        plugged = () if cfg.manager is NovaManager.FLAT else p.nets  # FlatManager plugs nothing itself
        for bridge in dict.fromkeys(n.bridge for n in plugged):  # ensure_bridge
            add(F, f"-A nova-network-FORWARD -i {bridge} -j ACCEPT", f"bridge {bridge}")
            add(F, f"-A nova-network-FORWARD -o {bridge} -j ACCEPT", f"bridge {bridge}")
        if cfg.manager is not NovaManager.FLAT:
            for net in p.nets:  # _add_dnsmasq_accept_rules
                for port in (67, 53):
                    for proto in ("udp", "tcp"):
                        add(F, f"-A nova-network-INPUT -i {net.bridge} -p {proto} -m {proto} --dport {port} -j ACCEPT",
                            f"dnsmasq on {net.bridge}")
        fl = _floating(cloud, p)
        for floating, fixed in fl:  # floating_forward_rules
            add(N, f"-A nova-network-PREROUTING -d {floating}/32 -j DNAT --to-destination {fixed}", f"floating {floating}")
        for floating, fixed in fl:
            add(N, f"-A nova-network-OUTPUT -d {floating}/32 -j DNAT --to-destination {fixed}", f"floating {floating}")
        for floating, fixed in fl:
            add(N, f"-A nova-network-float-snat -s {fixed}/32 -j SNAT --to-source {floating}", f"floating {floating}")
    if p.local:
        provider, fallback = "nova-compute-provider", "nova-compute-sg-fallback"
        chains += [PlannedChain(F, provider, "nova-compute firewall"), PlannedChain(F, fallback, "nova-compute firewall")]
        add(F, f"-A {fallback} -j DROP", "nova-compute firewall")
        for bridge in dict.fromkeys(v.net.bridge for v in p.local):  # the vif driver's ensure_bridge
            add(F, f"-A nova-compute-FORWARD -i {bridge} -j ACCEPT", f"bridge {bridge}")
            add(F, f"-A nova-compute-FORWARD -o {bridge} -j ACCEPT", f"bridge {bridge}")
        multi = cfg.multi_host
        done: set[int] = set()
        for v in p.local:
            chain = naming.nova_instance_chain_wrapped(v.number)
            obj = f"server {v.server.id}"
            add(F, f"-A nova-compute-local -d {v.ip}/32 -j {chain}", obj)
            if v.number in done:
                continue
            done.add(v.number)
            chains.append(PlannedChain(F, chain, obj))
            add(F, f"-A {chain} -m state --state INVALID -j DROP", obj)
            add(F, f"-A {chain} -m state --state RELATED,ESTABLISHED -j ACCEPT", obj)
            add(F, f"-A {chain} -j {provider}", obj)
            mine = [w for w in p.local if w.server.id == v.server.id]
            if cfg.manager is not NovaManager.FLAT:
                for w in mine:
                    key = (w.net.network.id, p.host if multi else (_network_host(cloud) or ""))
                    dhcp = p.servers.get(key, w.net.gateway)
                    add(F, f"-A {chain} -s {dhcp}/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT", obj)
            if options.allow_same_net_traffic:
                for cidr in dict.fromkeys(w.net.cidr for w in mine):
                    add(F, f"-A {chain} -s {cidr} -j ACCEPT", obj)
            for text in _sg_rules(cloud, v, chain, p.all_vifs):
                add(F, text, obj)
            add(F, f"-A {chain} -j {fallback}", obj)
    return tuple(chains), tuple(rules), binaries


# --- the planner ------------------------------------------------------------------------------------

def plan_nova_network(cloud: CloudSnapshot, host: Host | str, *, options: NovaOptions = DEFAULTS) -> HostState:
    """The root namespace, bridges, dnsmasq and files nova-network's manager gives ``host``."""
    name = host_name(host)
    p = _work_out(cloud, name, options)
    links, routes, bridges, origins = _links_and_routes(cloud, p, options)
    procs, files, dhcp_origins = _dnsmasq(cloud, p, options)
    chains, rules, binaries = _iptables(cloud, p, options)
    ruleset = None
    chain_origins: tuple[Origin, ...] = ()
    if binaries:
        ruleset, chain_origins = assemble(NOVA_PROFILE, chains, rules, BUILDER)
    sysctls = (Sysctl("net.ipv4.ip_forward", "1"),) if p.runs_network else None
    ns = NamespaceState(ROOT, links=links, routes=routes, iptables=ruleset, sysctls=sysctls)
    return HostState(name, namespaces=(ns,), linux_bridges=bridges, processes=procs or None, files=files,
                     origins=(*origins, *dhcp_origins, *chain_origins))
