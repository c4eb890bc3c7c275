"""A consistent, immutable picture of the whole cloud for the planners.

``load(session)`` reads every resource in one transaction and returns frozen dataclasses: no ORM
object escapes. Collections are tuples in creation order (``created_seq``, which does not depend
on the clock's resolution: the planners number local VLANs, devices and rules in this order);
look-ups by id go through the ``CloudSnapshot`` methods.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from neutrino.scenarios.model import Deployment, default_scenario, deployment_from_doc

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_T = TypeVar("_T")


BINDING_FAILED = "binding_failed"  # a port's binding:vif_type when ML2 could not bind it (agents.ovs_agent_binds)


@dataclass(frozen=True, slots=True)
class Segment:
    network_type: str
    physical_network: str | None
    segmentation_id: int | None


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    name: str
    project_id: str
    admin_state_up: bool
    status: str
    shared: bool
    external: bool
    mtu: int
    port_security_enabled: bool
    segment: Segment
    subnet_ids: tuple[str, ...]
    dhcp_hosts: tuple[str, ...] = ()  # the hosts whose DHCP agent the network is scheduled to (bindings)


@dataclass(frozen=True, slots=True)
class HostRoute:
    destination: IPNetwork
    nexthop: IPAddress


@dataclass(frozen=True, slots=True)
class AllocationPool:
    start: IPAddress
    end: IPAddress


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    name: str
    project_id: str
    network_id: str
    ip_version: int
    cidr: IPNetwork
    gateway_ip: IPAddress | None
    allocation_pools: tuple[AllocationPool, ...]
    dns_nameservers: tuple[IPAddress, ...]
    host_routes: tuple[HostRoute, ...]
    enable_dhcp: bool
    ipv6_ra_mode: str | None
    ipv6_address_mode: str | None
    address_scope_id: str | None = None  # the address scope of the subnet pool it was allocated from


@dataclass(frozen=True, slots=True)
class FixedIP:
    subnet_id: str
    ip_address: IPAddress


@dataclass(frozen=True, slots=True)
class AddressPair:
    ip_address: IPNetwork
    mac_address: str


# a router's interface ports, by its kind: legacy, distributed, HA (Neutron's device owners)
INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                    "network:ha_router_replicated_interface")


@dataclass(frozen=True, slots=True)
class DhcpOpt:
    """One extra DHCP option of a port (``extra_dhcp_opts``), as the API keeps it."""

    opt_name: str
    opt_value: str
    ip_version: int = 4


@dataclass(frozen=True, slots=True)
class Port:
    id: str
    name: str
    project_id: str
    network_id: str
    mac_address: str
    admin_state_up: bool
    status: str
    device_id: str
    device_owner: str
    fixed_ips: tuple[FixedIP, ...]
    security_group_ids: tuple[str, ...]
    port_security_enabled: bool
    allowed_address_pairs: tuple[AddressPair, ...]
    binding_host: str
    vif_type: str
    vif_details: tuple[tuple[str, Any], ...] = ()
    extra_dhcp_opts: tuple[DhcpOpt, ...] = ()

    @property
    def ovs_hybrid_plug(self) -> bool:
        for key, value in reversed(self.vif_details):  # (the last of a key, as ``dict`` would keep)
            if key == "ovs_hybrid_plug":
                return bool(value)
        return False

    @property
    def is_instance_port(self) -> bool:
        return self.device_owner.startswith("compute:")


@dataclass(frozen=True, slots=True)
class Gateway:
    network_id: str
    port_id: str | None
    enable_snat: bool
    external_fixed_ips: tuple[FixedIP, ...]


@dataclass(frozen=True, slots=True)
class L3Binding:
    """A router scheduled to the L3 agent of ``host``; for an HA router, its VRRP state there
    (``active``/``standby``, as Neutron reports ``ha_state``) and its ``ha-`` port."""

    host: str
    binding_index: int = 1
    ha_state: str | None = None
    ha_port_id: str | None = None


@dataclass(frozen=True, slots=True)
class Router:
    id: str
    name: str
    project_id: str
    admin_state_up: bool
    status: str
    host: str
    gateway: Gateway | None
    interface_port_ids: tuple[str, ...]
    routes: tuple[HostRoute, ...]
    distributed: bool = False
    ha: bool = False
    ha_vr_id: int = 0
    bindings: tuple[L3Binding, ...] = ()  # in binding order; empty: the deployment's network host serves it


@dataclass(frozen=True, slots=True)
class FloatingIP:
    id: str
    project_id: str
    floating_ip_address: IPAddress
    floating_network_id: str
    floating_port_id: str
    port_id: str | None
    fixed_ip_address: IPAddress | None
    router_id: str | None
    status: str


@dataclass(frozen=True, slots=True)
class PortForwarding:
    """A floating IP's port forwarding: ``protocol`` ``external_port_start``-``external_port_end`` of
    the floating IP to ``internal_ip_address`` ports ``internal_port_start``-``internal_port_end``."""

    id: str
    floatingip_id: str
    internal_port_id: str
    internal_ip_address: IPAddress
    internal_port_start: int
    internal_port_end: int
    external_port_start: int
    external_port_end: int
    protocol: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class SecurityGroupRule:
    id: str
    security_group_id: str
    direction: str
    ethertype: str
    protocol: str | None
    port_range_min: int | None
    port_range_max: int | None
    remote_ip_prefix: IPNetwork | None
    remote_group_id: str | None


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    id: str
    name: str
    project_id: str
    stateful: bool
    is_default: bool
    rules: tuple[SecurityGroupRule, ...]


@dataclass(frozen=True, slots=True)
class Server:
    id: str
    name: str
    project_id: str
    host: str
    status: str
    flavor_id: str
    image_id: str
    port_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    agent_type: str
    host: str
    admin_state_up: bool


@dataclass(frozen=True, slots=True)
class CloudSnapshot:
    deployment: Deployment
    networks: tuple[Network, ...] = ()
    subnets: tuple[Subnet, ...] = ()
    ports: tuple[Port, ...] = ()
    routers: tuple[Router, ...] = ()
    floating_ips: tuple[FloatingIP, ...] = ()
    security_groups: tuple[SecurityGroup, ...] = ()
    servers: tuple[Server, ...] = ()
    agents: tuple[Agent, ...] = ()
    port_forwardings: tuple[PortForwarding, ...] = ()
    _index: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # the look-ups and per-snapshot facts (``cached``) are this snapshot's own: one made with
        # ``dataclasses.replace`` is handed its original's index, which must not be shared
        object.__setattr__(self, "_index", {})
        for coll in (self.networks, self.subnets, self.ports, self.routers, self.floating_ips,
                     self.security_groups, self.servers):
            for item in coll:
                self._index[f"{type(item).__name__}:{item.id}"] = item
        # the look-ups planners make per host and per network, answered from one pass
        by_host: dict[str, list[Port]] = {}
        by_net: dict[str, list[Port]] = {}
        for port in self.ports:
            by_host.setdefault(port.binding_host, []).append(port)
            by_net.setdefault(port.network_id, []).append(port)
        self._index["@ports_by_host"] = {k: tuple(v) for k, v in by_host.items()}
        self._index["@ports_by_network"] = {k: tuple(v) for k, v in by_net.items()}

    def __getstate__(self) -> tuple[Any, ...]:
        """Pickled with its fields and its own look-ups only (``__post_init__``'s: kept, so a loaded
        snapshot needs no indexing), never what was recorded in it since: the planners' ``cached``
        facts and the numbers and records they keep about this snapshot in this process (a snapshot
        number means nothing to another process, which gives the same numbers to its own)."""
        index = {k: v for k, v in self._index.items() if type(k) is str and (k[0] != "@" or k in _OWN_INDEX)}
        return tuple(getattr(self, name) for name in _FIELD_NAMES) + (index,)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip((*_FIELD_NAMES, "_index"), state, strict=True):
            object.__setattr__(self, name, value)

    def _get(self, kind: str, ident: str) -> Any:
        try:
            return self._index[f"{kind}:{ident}"]
        except KeyError:
            raise KeyError(f"{kind} {ident} is not in the snapshot") from None

    def network(self, ident: str) -> Network:
        return self._get("Network", ident)  # type: ignore[no-any-return]

    def subnet(self, ident: str) -> Subnet:
        return self._get("Subnet", ident)  # type: ignore[no-any-return]

    def port(self, ident: str) -> Port:
        return self._get("Port", ident)  # type: ignore[no-any-return]

    def router(self, ident: str) -> Router:
        return self._get("Router", ident)  # type: ignore[no-any-return]

    def security_group(self, ident: str) -> SecurityGroup:
        return self._get("SecurityGroup", ident)  # type: ignore[no-any-return]

    def server(self, ident: str) -> Server:
        return self._get("Server", ident)  # type: ignore[no-any-return]

    def subnets_of(self, network_id: str) -> tuple[Subnet, ...]:
        return self.cached("subnets_by_network", _subnets_by_network).get(network_id, ())

    def cached(self, name: str, compute: Callable[[CloudSnapshot], _T]) -> _T:
        """``compute(self)``, computed once per snapshot (an index, a per-network or per-group fact
        that every host's plan asks for). The snapshot is immutable, so a value derived from it
        alone cannot go stale; ``name`` must stand for ``compute`` and nothing else."""
        key = f"@{name}"
        try:
            return self._index[key]  # type: ignore[no-any-return]
        except KeyError:
            value = self._index[key] = compute(self)
            return value

    def ports_on_network(self, network_id: str) -> tuple[Port, ...]:
        return self._index["@ports_by_network"].get(network_id, ())  # type: ignore[no-any-return]

    def ports_on_host(self, host: str) -> tuple[Port, ...]:
        return self._index["@ports_by_host"].get(host, ())  # type: ignore[no-any-return]

    def ports_of_device(self, device_id: str) -> tuple[Port, ...]:
        return tuple(p for p in self.ports if p.device_id == device_id)

    def routers_on_host(self, host: str) -> tuple[Router, ...]:
        return tuple(r for r in self.routers if r.host == host)

    def floating_ips_of_router(self, router_id: str) -> tuple[FloatingIP, ...]:
        return tuple(f for f in self.floating_ips if f.router_id == router_id)

    def servers_on_host(self, host: str) -> tuple[Server, ...]:
        return tuple(s for s in self.servers if s.host == host)

    def port_forwardings_of(self, floatingip_id: str) -> tuple[PortForwarding, ...]:
        return tuple(f for f in self.port_forwardings if f.floatingip_id == floatingip_id)


_FIELD_NAMES = tuple(f.name for f in fields(CloudSnapshot) if f.name != "_index")
_OWN_INDEX = frozenset({"@ports_by_host", "@ports_by_network"})  # ``__post_init__``'s look-ups


def _subnets_by_network(cloud: CloudSnapshot) -> dict[str, tuple[Subnet, ...]]:
    out: dict[str, list[Subnet]] = {}
    for s in cloud.subnets:
        out.setdefault(s.network_id, []).append(s)
    return {k: tuple(v) for k, v in out.items()}


def _ip(v: str | None) -> IPAddress | None:
    return None if v is None else ipaddress.ip_address(v)


def _routes(raw: list[dict[str, str]]) -> tuple[HostRoute, ...]:
    return tuple(HostRoute(ipaddress.ip_network(r["destination"]), ipaddress.ip_address(r["nexthop"])) for r in raw)


def _order(rows: Any) -> list[Any]:
    return sorted(rows, key=lambda r: (r.created_seq, r.id))


if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def load(session: Session) -> CloudSnapshot:
    """Everything, from one transaction, as frozen dataclasses. (The ORM is imported here only: a
    kept snapshot unpickles without it, which keeps ``neutrino trace`` quick.)"""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from neutrino.db import models

    doc = session.get(models.Deployment, 1)
    deployment = deployment_from_doc(doc.document) if doc is not None else default_scenario().deployment
    nets = _order(session.scalars(select(models.Network).options(selectinload(models.Network.subnets))).all())
    subnets = _order(session.scalars(select(models.Subnet)).all())
    ports = _order(session.scalars(select(models.Port).options(selectinload(models.Port.fixed_ips),
                                                               selectinload(models.Port.sg_bindings))).all())
    routers = _order(session.scalars(select(models.Router)).all())
    fips = _order(session.scalars(select(models.FloatingIP)).all())
    groups = _order(session.scalars(select(models.SecurityGroup).options(
        selectinload(models.SecurityGroup.rules))).all())
    servers = _order(session.scalars(select(models.Server)).all())
    agents = session.scalars(select(models.Agent).order_by(models.Agent.host, models.Agent.agent_type)).all()
    l3_bindings: dict[str, list[L3Binding]] = {}
    for b in session.scalars(select(models.RouterL3Binding).order_by(
            models.RouterL3Binding.router_id, models.RouterL3Binding.binding_index, models.RouterL3Binding.host)):
        l3_bindings.setdefault(b.router_id, []).append(L3Binding(b.host, b.binding_index, b.ha_state, b.ha_port_id))
    dhcp_hosts: dict[str, list[str]] = {}
    for d in session.scalars(select(models.NetworkDhcpBinding).order_by(
            models.NetworkDhcpBinding.network_id, models.NetworkDhcpBinding.binding_index,
            models.NetworkDhcpBinding.host)):
        dhcp_hosts.setdefault(d.network_id, []).append(d.host)
    scopes = {sp.id: sp.address_scope_id for sp in session.scalars(select(models.SubnetPool))}
    forwardings = _order(session.scalars(select(models.PortForwarding)).all())

    snap_ports = tuple(Port(
        p.id, p.name, p.project_id, p.network_id, p.mac_address, p.admin_state_up, p.status, p.device_id,
        p.device_owner, tuple(FixedIP(a.subnet_id, ipaddress.ip_address(a.ip_address)) for a in p.fixed_ips),
        tuple(b.security_group_id for b in p.sg_bindings), p.port_security_enabled,
        tuple(AddressPair(ipaddress.ip_network(x["ip_address"], strict=False), x["mac_address"])
              for x in p.allowed_address_pairs),
        p.binding_host_id, p.binding_vif_type, tuple(sorted((p.binding_vif_details or {}).items())),
        tuple(DhcpOpt(str(o["opt_name"]), str(o["opt_value"]), int(o.get("ip_version") or 4))
              for o in (p.extra_dhcp_opts or []) if o.get("opt_value") is not None))
        for p in ports)
    by_port = {p.id: p for p in snap_ports}
    by_device: dict[str, list[Port]] = {}  # a server's or router's ports, in the ports' order: one pass
    for port in snap_ports:  # (each server and router scanned every port: 10^8 steps at 10,000 of each)
        by_device.setdefault(port.device_id, []).append(port)
    snap_routers = []
    for r in routers:
        gw = None
        if r.gw_network_id:
            gp = by_port.get(r.gw_port_id or "")
            gw = Gateway(r.gw_network_id, r.gw_port_id, r.enable_snat, gp.fixed_ips if gp else ())
        ifaces = tuple(p.id for p in by_device.get(r.id, ()) if p.device_owner in INTERFACE_OWNERS)
        snap_routers.append(Router(r.id, r.name, r.project_id, r.admin_state_up, r.status, r.host, gw, ifaces,
                                   _routes(r.routes), bool(r.distributed), bool(r.ha), int(r.ha_vr_id or 0),
                                   tuple(l3_bindings.get(r.id, ()))))
    return CloudSnapshot(
        deployment=deployment,
        networks=tuple(Network(n.id, n.name, n.project_id, n.admin_state_up, n.status, n.shared, n.external, n.mtu,
                               n.port_security_enabled,
                               Segment(n.network_type, n.physical_network, n.segmentation_id),
                               tuple(s.id for s in n.subnets), tuple(dhcp_hosts.get(n.id, ()))) for n in nets),
        subnets=tuple(Subnet(s.id, s.name, s.project_id, s.network_id, s.ip_version, ipaddress.ip_network(s.cidr),
                             _ip(s.gateway_ip),
                             tuple(AllocationPool(ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"]))
                                   for p in s.allocation_pools),
                             tuple(ipaddress.ip_address(d) for d in s.dns_nameservers), _routes(s.host_routes),
                             s.enable_dhcp, s.ipv6_ra_mode, s.ipv6_address_mode,
                             scopes.get(s.subnetpool_id) if s.subnetpool_id else None) for s in subnets),
        ports=snap_ports,
        routers=tuple(snap_routers),
        floating_ips=tuple(FloatingIP(f.id, f.project_id, ipaddress.ip_address(f.floating_ip_address),
                                      f.floating_network_id, f.floating_port_id, f.port_id,
                                      _ip(f.fixed_ip_address), f.router_id, f.status) for f in fips),
        security_groups=tuple(SecurityGroup(g.id, g.name, g.project_id, g.stateful, g.is_default, tuple(
            SecurityGroupRule(r.id, r.security_group_id, r.direction, r.ethertype, r.protocol, r.port_range_min,
                              r.port_range_max,
                              ipaddress.ip_network(r.remote_ip_prefix, strict=False) if r.remote_ip_prefix else None,
                              r.remote_group_id) for r in g.rules)) for g in groups),
        servers=tuple(Server(s.id, s.name, s.project_id, s.host, s.status, s.flavor_id, s.image_id,
                             tuple(p.id for p in by_device.get(s.id, ()))) for s in servers),
        agents=tuple(Agent(a.id, a.agent_type, a.host, a.admin_state_up) for a in agents),
        port_forwardings=tuple(PortForwarding(
            f.id, f.floatingip_id, f.internal_port_id, ipaddress.ip_address(f.internal_ip_address),
            f.internal_port_start, f.internal_port_end, f.external_port_start, f.external_port_end, f.protocol,
            f.description) for f in forwardings),
    )
