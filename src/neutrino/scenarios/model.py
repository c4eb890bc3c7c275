"""The scenario YAML model: deployment (mechanism + hosts), identity, and resources.

A scenario file has four top-level sections, all optional::

    deployment:                      # how the cloud is built
      mechanism: ml2_ovs             # ml2_ovs | nova_network
      tenant_network_types: [gre]    # ml2: gre | vxlan | vlan | flat | local (first is the default)
      tunnel_id_ranges: ["1:1000"]   # GRE keys
      vni_ranges: ["1:1000"]         # VXLAN VNIs
      network_vlan_ranges: ["physnet1:100:199"]
      flat_networks: ["public"]      # or ["*"]
      firewall_driver: iptables_hybrid   # iptables_hybrid | openvswitch (ml2_ovs, modern only) | noop
      l2population: false
      external_network_bridge: br-ex # legacy external network on br-ex ("" for provider mode)
      physical_mtu: 1500
      generation: modern             # grizzly (Quantum 2013.1, seed 000) | havana (2013.2, seed 002)
                                     # | modern (Neutron master)
      random_fully: true             # the L3 agent's SNAT with --random-fully (seed 001's Stein: false)
      l3_ha: false                   # new routers are HA (keepalived VRRP) unless the request says ha: false
      max_l3_agents_per_router: 3    # how many L3 agents (network hosts) an HA router is scheduled to
      router_distributed: false      # new routers are distributed (DVR) unless the request says otherwise
      nova_network: {manager: FlatDHCP, multi_host: false, vlan_start: 100,
                     flat_interface: eth1, vlan_interface: eth1, public_interface: eth0,
                     instance_offset: 0,   # servers are instance-<1 + offset>, … in creation order
                     host_gateways: [{network: tenant1, host: compute-1, address: 10.0.0.1}]}
                                     # multi-host: pin a host's bridge/dnsmasq address on a network
    hosts:
      - {name: network, role: network, management_ip: 10.0.0.10, tunnel_ip: 10.0.1.10,
         bridge_mappings: {physnet1: br-eth1}, interfaces: {eth0: 10.0.0.10/24},
         uplinks: {br-ex: eth2},           # OVS: the NIC plugged into a physical bridge
         macs: {eth0: "08:00:27:9d:c4:b0"}, # facts from before OpenStack (nova-network uses them):
         default_gateway: 10.0.0.1,        # NIC MACs, the default route (metric default_metric, 100,
         default_metric: 100,              # plus 169.254.0.0/16 at link_local_metric, 1000; null: none)
         link_local_metric: 1000,
         routing_source_ip: 10.0.0.10,     # nova: the fixed ranges' SNAT source (default: public_interface's)
         metadata_host: 10.0.0.10,         # nova: the metadata DNAT target (default: management_ip)
         l3_agent_mode: legacy}            # the L3 agent's agent_mode: legacy | dvr | dvr_snat | dvr_no_external
    identity: {region: RegionOne, projects: [admin, demo],
               users: [{name: admin, password: secret, project: admin, roles: [admin]}]}
    resources: {...}                 # see neutrino.scenarios.resources
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from neutrino.errors import InvalidInput


class Mechanism(StrEnum):
    ML2_OVS = "ml2_ovs"
    NOVA_NETWORK = "nova_network"


class NovaManager(StrEnum):
    FLAT = "Flat"
    FLAT_DHCP = "FlatDHCP"
    VLAN = "Vlan"


ROLES = frozenset({"controller", "network", "compute"})
L3_AGENT_MODES = ("legacy", "dvr", "dvr_snat", "dvr_no_external")
NETWORK_TYPES = frozenset({"gre", "vxlan", "vlan", "flat", "local"})


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    roles: frozenset[str]
    management_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    tunnel_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    bridge_mappings: tuple[tuple[str, str], ...] = ()
    interfaces: tuple[tuple[str, str], ...] = ()
    uplinks: tuple[tuple[str, str], ...] = ()
    macs: tuple[tuple[str, str], ...] = ()
    default_gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    default_metric: int | None = 100
    link_local_metric: int | None = 1000
    routing_source_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    metadata_host: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    l3_agent_mode: str = "legacy"  # dvr | dvr_snat | dvr_no_external: the host's agents run DVR

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class VlanRange:
    physical_network: str
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True, slots=True)
class NovaNetworkConfig:
    manager: NovaManager = NovaManager.FLAT_DHCP
    multi_host: bool = False
    vlan_start: int = 100
    flat_interface: str = "eth1"
    vlan_interface: str = "eth1"
    public_interface: str = "eth0"
    instance_offset: int = 0
    host_gateways: tuple[tuple[str, str, ipaddress.IPv4Address], ...] = ()  # (network name, host, address)


@dataclass(frozen=True, slots=True)
class Deployment:
    mechanism: Mechanism = Mechanism.ML2_OVS
    tenant_network_types: tuple[str, ...] = ("vxlan",)
    tunnel_id_ranges: tuple[tuple[int, int], ...] = ((1, 1000),)
    vni_ranges: tuple[tuple[int, int], ...] = ((1, 1000),)
    network_vlan_ranges: tuple[VlanRange, ...] = ()
    flat_networks: tuple[str, ...] = ("*",)
    firewall_driver: str = "iptables_hybrid"
    l2population: bool = False
    external_network_bridge: str = "br-ex"
    physical_mtu: int = 1500
    generation: str = "modern"  # which agents' plumbing to plan: "grizzly" (seed 000), "havana", "modern"
    random_fully: bool = True
    l3_ha: bool = False
    max_l3_agents_per_router: int = 3
    router_distributed: bool = False
    nova_network: NovaNetworkConfig = field(default_factory=NovaNetworkConfig)
    hosts: tuple[Host, ...] = ()

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)

    def hosts_with(self, role: str) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.has(role))

    def network_host(self) -> Host | None:
        """Where L3 and DHCP agents run: the first network host, else a controller, else any."""
        for role in ("network", "controller", "compute"):
            hs = self.hosts_with(role)
            if hs:
                return hs[0]
        return None


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password: str
    project: str
    roles: tuple[str, ...] = ("admin", "member", "reader")


@dataclass(frozen=True, slots=True)
class Identity:
    region: str = "RegionOne"
    projects: tuple[str, ...] = ("admin", "demo")
    users: tuple[User, ...] = (User("admin", "secret", "admin"),)

    @staticmethod
    def project_id(name: str) -> str:
        """Stable project ids: the same name gives the same 32-hex id on every start."""
        import uuid  # here, not for every command that unpickles a snapshot

        return uuid.uuid5(uuid.NAMESPACE_DNS, f"project.{name}.neutrino").hex

    @staticmethod
    def user_id(name: str) -> str:
        import uuid

        return uuid.uuid5(uuid.NAMESPACE_DNS, f"user.{name}.neutrino").hex


@dataclass(frozen=True, slots=True)
class Scenario:
    deployment: Deployment
    identity: Identity = field(default_factory=Identity)
    resources: dict[str, Any] = field(default_factory=dict)
    source: str = "<default>"


DEFAULT_HOST = Host("neutrino", frozenset({"controller", "network", "compute"}),
                    ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("192.0.2.10"),
                    (("physnet1", "br-eth1"), ("public", "br-ex")))


def default_scenario() -> Scenario:
    return Scenario(Deployment(hosts=(DEFAULT_HOST,)))


# -- loading --------------------------------------------------------------------------------------

def _fail(source: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{source}: {msg}")


def _ranges(raw: Any, source: str, what: str) -> tuple[tuple[int, int], ...]:
    out = []
    for item in raw or []:
        try:
            lo, hi = (int(x) for x in str(item).split(":"))
        except ValueError:
            raise _fail(source, f"{what}: expected 'min:max', got {item!r}") from None
        if lo > hi:
            raise _fail(source, f"{what}: {item!r} is empty")
        out.append((lo, hi))
    return tuple(out)


def _ip(raw: Any, source: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if raw in (None, ""):
        return None
    try:
        return ipaddress.ip_address(str(raw).split("/")[0])
    except ValueError:
        raise _fail(source, f"{what}: {raw!r} is not an IP address") from None


def _host(raw: Any, source: str) -> Host:
    if not isinstance(raw, dict) or "name" not in raw:
        raise _fail(source, f"a host needs a name: {raw!r}")
    roles = raw.get("roles", raw.get("role", ["compute"]))
    roles = [roles] if isinstance(roles, str) else list(roles)
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise _fail(source, f"host {raw['name']}: unknown role(s) {bad}; known: {sorted(ROLES)}")
    mgmt = _ip(raw.get("management_ip"), source, f"host {raw['name']} management_ip")
    tun = _ip(raw.get("tunnel_ip"), source, f"host {raw['name']} tunnel_ip") or mgmt
    name = str(raw["name"])

    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        return tuple((str(k), str(v)) for k, v in (raw.get(key) or {}).items())

    def metric(key: str, default: int) -> int | None:
        value = raw.get(key, default)
        return None if value is None else int(value)

    return Host(name, frozenset(roles), mgmt, tun, tuple(sorted(pairs("bridge_mappings"))), pairs("interfaces"),
                pairs("uplinks"), tuple((k, v.lower()) for k, v in pairs("macs")),
                _ip(raw.get("default_gateway"), source, f"host {name} default_gateway"),
                metric("default_metric", 100), metric("link_local_metric", 1000),
                _ip(raw.get("routing_source_ip"), source, f"host {name} routing_source_ip"),
                _ip(raw.get("metadata_host"), source, f"host {name} metadata_host"),
                _l3_agent_mode(raw.get("l3_agent_mode", "legacy"), source, name))


def _l3_agent_mode(raw: Any, source: str, host: str) -> str:
    mode = str(raw)
    if mode not in L3_AGENT_MODES:
        raise _fail(source, f"host {host}: l3_agent_mode must be one of {list(L3_AGENT_MODES)}")
    return mode


def _host_gateway(raw: Any, source: str) -> tuple[str, str, ipaddress.IPv4Address]:
    if not isinstance(raw, dict) or not {"network", "host", "address"} <= set(raw):
        raise _fail(source, f"nova_network.host_gateways: expected {{network, host, address}}, got {raw!r}")
    ip = _ip(raw["address"], source, "nova_network.host_gateways address")
    if not isinstance(ip, ipaddress.IPv4Address):
        raise _fail(source, f"nova_network.host_gateways: {raw['address']!r} is not an IPv4 address")
    return str(raw["network"]), str(raw["host"]), ip


def parse_scenario(doc: Any, source: str = "<string>") -> Scenario:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise _fail(source, "a scenario is a mapping")
    unknown = set(doc) - {"deployment", "hosts", "identity", "resources", "name", "description", "seed"}
    if unknown:
        raise _fail(source, f"unknown top-level keys {sorted(unknown)}")
    d = doc.get("deployment") or {}
    try:
        mech = Mechanism(d.get("mechanism", "ml2_ovs"))
    except ValueError:
        raise _fail(source, f"deployment.mechanism must be one of {[m.value for m in Mechanism]}") from None
    types = d.get("tenant_network_types", d.get("tenant_network_type", ["vxlan"]))
    types = tuple([types] if isinstance(types, str) else types)
    if not types or set(types) - NETWORK_TYPES:
        raise _fail(source, f"deployment.tenant_network_types must be from {sorted(NETWORK_TYPES)}")
    vlan_ranges = []
    for item in d.get("network_vlan_ranges") or []:
        parts = str(item).split(":")
        if len(parts) == 1:
            vlan_ranges.append(VlanRange(parts[0]))
        elif len(parts) == 3:
            vlan_ranges.append(VlanRange(parts[0], int(parts[1]), int(parts[2])))
        else:
            raise _fail(source, f"network_vlan_ranges: expected 'physnet[:min:max]', got {item!r}")
    nn = d.get("nova_network") or {}
    try:
        manager = NovaManager(str(nn.get("manager", "FlatDHCP")).removesuffix("Manager"))
    except ValueError:
        raise _fail(source, "nova_network.manager must be Flat, FlatDHCP or Vlan") from None
    nova = NovaNetworkConfig(manager, bool(nn.get("multi_host", False)), int(nn.get("vlan_start", 100)),
                             str(nn.get("flat_interface", "eth1")), str(nn.get("vlan_interface", "eth1")),
                             str(nn.get("public_interface", "eth0")), int(nn.get("instance_offset", 0)),
                             tuple(_host_gateway(g, source) for g in nn.get("host_gateways") or ()))
    hosts = tuple(_host(h, source) for h in (doc.get("hosts") or []))
    if len({h.name for h in hosts}) != len(hosts):
        raise _fail(source, "host names must be unique")
    if not hosts:
        hosts = (DEFAULT_HOST,)
    fw = str(d.get("firewall_driver", "iptables_hybrid"))
    if fw not in ("iptables_hybrid", "openvswitch", "noop", "iptables"):
        raise _fail(source, "firewall_driver must be iptables_hybrid, openvswitch, iptables or noop")
    generation = str(d.get("generation", "modern"))
    if generation not in ("grizzly", "havana", "modern"):
        raise _fail(source, "generation must be grizzly, havana or modern")
    if fw == "openvswitch" and (mech is not Mechanism.ML2_OVS or generation != "modern"):
        raise _fail(source, "firewall_driver openvswitch needs mechanism ml2_ovs and generation modern")
    dep = Deployment(
        generation=generation, mechanism=mech, tenant_network_types=types,
        tunnel_id_ranges=_ranges(d.get("tunnel_id_ranges", ["1:1000"]), source, "tunnel_id_ranges"),
        vni_ranges=_ranges(d.get("vni_ranges", ["1:1000"]), source, "vni_ranges"),
        network_vlan_ranges=tuple(vlan_ranges),
        flat_networks=tuple(str(x) for x in d.get("flat_networks", ["*"])),
        firewall_driver=fw, l2population=bool(d.get("l2population", False)),
        external_network_bridge=str(d.get("external_network_bridge", "br-ex") or ""),
        physical_mtu=int(d.get("physical_mtu", 1500)), nova_network=nova, hosts=hosts,
        random_fully=bool(d.get("random_fully", True)), l3_ha=bool(d.get("l3_ha", False)),
        max_l3_agents_per_router=_max_l3_agents(d.get("max_l3_agents_per_router", 3), source),
        router_distributed=bool(d.get("router_distributed", False)))
    ident_raw = doc.get("identity") or {}
    users = tuple(User(str(u["name"]), str(u.get("password", "secret")), str(u.get("project", "admin")),
                       tuple(u.get("roles", ["admin", "member", "reader"])))
                  for u in ident_raw.get("users", [{"name": "admin"}]))
    projects = tuple(str(p) for p in ident_raw.get("projects", ["admin", "demo"]))
    for u in users:
        if u.project not in projects:
            projects = (*projects, u.project)
    identity = Identity(str(ident_raw.get("region", "RegionOne")), projects, users)
    resources = doc.get("resources") or {}
    if not isinstance(resources, dict):
        raise _fail(source, "resources must be a mapping")
    return Scenario(dep, identity, resources, source)


def _max_l3_agents(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(source, "max_l3_agents_per_router must be a whole number >= 0 (0: every L3 agent)")
    return value


def load_scenario(path: str | Path) -> Scenario:
    import yaml  # here: a trace unpickles this module's classes and reads no YAML

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise InvalidInput(f"{p}: not valid YAML: {e}") from None
    return parse_scenario(doc, str(p))


def deployment_to_doc(dep: Deployment) -> dict[str, Any]:
    """A JSON-able form of the deployment (stored in the database for snapshots)."""
    return {
        "mechanism": dep.mechanism.value, "tenant_network_types": list(dep.tenant_network_types),
        "tunnel_id_ranges": [f"{a}:{b}" for a, b in dep.tunnel_id_ranges],
        "vni_ranges": [f"{a}:{b}" for a, b in dep.vni_ranges],
        "network_vlan_ranges": [r.physical_network if r.minimum is None else
                                f"{r.physical_network}:{r.minimum}:{r.maximum}" for r in dep.network_vlan_ranges],
        "flat_networks": list(dep.flat_networks), "firewall_driver": dep.firewall_driver,
        "l2population": dep.l2population, "external_network_bridge": dep.external_network_bridge,
        "physical_mtu": dep.physical_mtu, "generation": dep.generation, "random_fully": dep.random_fully,
        "l3_ha": dep.l3_ha, "max_l3_agents_per_router": dep.max_l3_agents_per_router,
        "router_distributed": dep.router_distributed,
        "nova_network": {"manager": dep.nova_network.manager.value, "multi_host": dep.nova_network.multi_host,
                         "vlan_start": dep.nova_network.vlan_start,
                         "flat_interface": dep.nova_network.flat_interface,
                         "vlan_interface": dep.nova_network.vlan_interface,
                         "public_interface": dep.nova_network.public_interface,
                         "instance_offset": dep.nova_network.instance_offset,
                         "host_gateways": [{"network": n, "host": h, "address": str(a)}
                                           for n, h, a in dep.nova_network.host_gateways]},
        "hosts": [{"name": h.name, "roles": sorted(h.roles),
                   "management_ip": str(h.management_ip) if h.management_ip else None,
                   "tunnel_ip": str(h.tunnel_ip) if h.tunnel_ip else None,
                   "bridge_mappings": dict(h.bridge_mappings), "interfaces": dict(h.interfaces),
                   "uplinks": dict(h.uplinks), "macs": dict(h.macs),
                   "default_gateway": _str_or_none(h.default_gateway), "default_metric": h.default_metric,
                   "link_local_metric": h.link_local_metric,
                   "routing_source_ip": _str_or_none(h.routing_source_ip),
                   "metadata_host": _str_or_none(h.metadata_host), "l3_agent_mode": h.l3_agent_mode}
                  for h in dep.hosts],
    }


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def deployment_from_doc(doc: dict[str, Any]) -> Deployment:
    return parse_scenario({"deployment": {k: v for k, v in doc.items() if k != "hosts"},
                           "hosts": doc.get("hosts", [])}, "<database>").deployment
