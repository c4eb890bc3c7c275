"""Networks and subnets: segments (GRE keys, VXLAN VNIs, VLAN ids), MTU, subnet IPAM rules."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import object_session

from neutrino.db import models
from neutrino.errors import NotAuthorized
from neutrino.scenarios.model import Deployment, Mechanism, NovaManager
from neutrino.services import ipam, rbac, subnetpools
from neutrino.services.attributes import to_bool
from neutrino.services.core import (
    Page,
    Tx,
    bad_request,
    bump,
    check_revision,
    conflict,
    invalid,
    new_id,
    not_found,
    owner_for_create,
    paged,
    stamp_new,
    standard,
    visible,
)
from neutrino.services.securitygroups import ensure_default_group

OVERHEAD = {"gre": 42, "vxlan": 50}
AUTO_DELETE_OWNERS = ("network:dhcp", "network:distributed", "network:floatingip_agent_gateway")
ROUTER_INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                           "network:ha_router_replicated_interface")
ROUTER_PORT_OWNERS = (*ROUTER_INTERFACE_OWNERS, "network:router_gateway", "network:router_centralized_snat")
AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")


def is_auto_address(s: models.Subnet) -> bool:
    """Neutron's auto-address subnet: IPv6 with SLAAC or DHCPv6-stateless as either mode."""
    return s.ip_version == 6 and (s.ipv6_address_mode in AUTO_ADDRESS_MODES or s.ipv6_ra_mode in AUTO_ADDRESS_MODES)


# -- serialisation ------------------------------------------------------------------------------

def network_dict(n: models.Network, shared: bool | None = None, is_default: bool = False) -> dict[str, Any]:
    """``shared``: whether RBAC shares it with the caller (Neutron's per-caller value); without it,
    whether it is shared with everyone. ``is_default``: the default external network (``rbac``)."""
    d = standard(n)
    d.update({
        "name": n.name, "admin_state_up": n.admin_state_up, "status": n.status,
        "subnets": [s.id for s in n.subnets], "shared": n.shared if shared is None else shared,
        "router:external": n.external,
        "mtu": n.mtu, "port_security_enabled": n.port_security_enabled,
        "availability_zone_hints": list(n.availability_zone_hints or []), "availability_zones": ["nova"],
        "ipv4_address_scope": _scope(n, 4), "ipv6_address_scope": _scope(n, 6), "is_default": is_default,
        "provider:network_type": n.network_type, "provider:physical_network": n.physical_network,
        "provider:segmentation_id": n.segmentation_id,
    })
    return d


def _scope(n: models.Network, version: int) -> str | None:
    """Neutron: a network's address scope of one IP version is that of the pool its subnets of that
    version come from (None without a pool or a scope)."""
    pool_id = next((s.subnetpool_id for s in n.subnets if s.ip_version == version and s.subnetpool_id), None)
    session = object_session(n)
    if pool_id is None or session is None:
        return None
    pool = session.get(models.SubnetPool, pool_id)
    return pool.address_scope_id if pool is not None else None


def subnet_dict(s: models.Subnet, external: bool | None = None) -> dict[str, Any]:
    d = standard(s)
    d.update({
        "name": s.name, "network_id": s.network_id, "ip_version": s.ip_version, "cidr": s.cidr,
        "gateway_ip": s.gateway_ip, "allocation_pools": [dict(p) for p in s.allocation_pools],
        "dns_nameservers": list(s.dns_nameservers), "host_routes": [dict(r) for r in s.host_routes],
        "enable_dhcp": s.enable_dhcp, "ipv6_ra_mode": s.ipv6_ra_mode, "ipv6_address_mode": s.ipv6_address_mode,
        "subnetpool_id": s.subnetpool_id, "service_types": [], "segment_id": None, "dns_publish_fixed_ip": False,
        "router:external": s.network.external if external is None else external,
    })
    return d


# -- lookups --------------------------------------------------------------------------------------

def get_network_row(tx: Tx, network_id: str) -> models.Network:
    n = tx.session.get(models.Network, network_id)
    if n is None or not rbac.network_visible(tx, n):
        raise not_found("network", network_id)
    return n


def get_subnet_row(tx: Tx, subnet_id: str) -> models.Subnet:
    s = tx.session.get(models.Subnet, subnet_id)
    if s is None or not (visible(tx, s) or rbac.network_visible(tx, s.network)):
        raise not_found("subnet", subnet_id)
    return s


# -- segments -------------------------------------------------------------------------------------

def _mtu(dep: Deployment, network_type: str) -> int:
    return dep.physical_mtu - OVERHEAD.get(network_type, 0)


def _free_id(used: set[int], ranges: tuple[tuple[int, int], ...]) -> int | None:
    for lo, hi in ranges:
        for n in range(lo, hi + 1):
            if n not in used:
                return n
    return None


def _used_ids(tx: Tx, network_type: str, physnet: str | None = None) -> set[int]:
    q = select(models.Network.segmentation_id).where(models.Network.network_type == network_type,
                                                      models.Network.segmentation_id.is_not(None))
    if physnet is not None:
        q = q.where(models.Network.physical_network == physnet)
    return {x for x in tx.session.scalars(q).all() if x is not None}


def _no_network() -> Exception:
    from neutrino.errors import NeutrinoError

    class NoNetworkAvailable(NeutrinoError):
        neutron_type = "NoNetworkAvailable"
    return NoNetworkAvailable("Unable to create the network. No tenant network is available for allocation.")


def allocate_segment(tx: Tx, attrs: dict[str, Any]) -> tuple[str, str | None, int | None]:
    dep = tx.deployment
    ntype = attrs.pop("provider:network_type", None)
    physnet = attrs.pop("provider:physical_network", None)
    segid = attrs.pop("provider:segmentation_id", None)
    if ntype is None:
        if physnet is not None or segid is not None:
            raise invalid("network_type required", "InvalidInput")
        if dep.mechanism is Mechanism.NOVA_NETWORK:
            if dep.nova_network.manager is NovaManager.VLAN:
                used = _used_ids(tx, "vlan")
                vid = _free_id(used, ((dep.nova_network.vlan_start, 4094),))
                if vid is None:
                    raise _no_network()
                return "vlan", None, vid
            return "flat", None, None
        for t in dep.tenant_network_types:
            seg = _allocate_tenant(tx, t)
            if seg is not None:
                return seg
        raise _no_network()
    if ntype not in ("gre", "vxlan", "vlan", "flat", "local", "geneve"):
        raise invalid(f"network_type value '{ntype}' not supported")
    if ntype in ("gre", "vxlan", "geneve"):
        if physnet is not None:
            raise invalid(f"provider:physical_network specified for {ntype.upper()} network")
        if segid is None:
            seg = _allocate_tenant(tx, ntype)
            if seg is None:
                raise _no_network()
            return seg
        if segid in _used_ids(tx, ntype):
            raise conflict("TunnelIdInUse", f"Unable to create the network. The tunnel ID {segid} is in use.")
        return ntype, None, segid
    if ntype == "vlan":
        if physnet is None:
            if segid is not None:
                raise invalid("segmentation_id requires physical_network for VLAN provider network")
            seg = _allocate_tenant(tx, "vlan")
            if seg is None:
                raise _no_network()
            return seg
        if segid is None:
            seg = _allocate_vlan(tx, physnet)
            if seg is None:
                raise _no_network()
            return seg
        if not 1 <= segid <= 4094:
            raise invalid("segmentation_id out of range (1 through 4094)")
        if segid in _used_ids(tx, "vlan", physnet):
            raise conflict("VlanIdInUse", f"Unable to create the network. The VLAN {segid} on physical network "
                                          f"{physnet} is in use.")
        return "vlan", physnet, segid
    if ntype == "flat":
        if segid is not None:
            raise invalid("segmentation_id specified for flat provider network")
        if physnet is None:
            raise invalid("physical_network required for flat provider network")
        if "*" not in dep.flat_networks and physnet not in dep.flat_networks:
            raise invalid(f"physical_network '{physnet}' unknown for flat provider network")
        taken = tx.session.scalar(select(func.count()).select_from(models.Network).where(
            models.Network.network_type == "flat", models.Network.physical_network == physnet))
        if taken:
            raise conflict("FlatNetworkInUse", f"Unable to create the flat network. Physical network {physnet} "
                                               "is in use.")
        return "flat", physnet, None
    if physnet is not None or segid is not None:
        raise invalid("provider:physical_network and provider:segmentation_id specified for local network")
    return "local", None, None


def _allocate_tenant(tx: Tx, ntype: str) -> tuple[str, str | None, int | None] | None:
    dep = tx.deployment
    if ntype in ("gre", "vxlan", "geneve"):
        ranges = dep.tunnel_id_ranges if ntype == "gre" else dep.vni_ranges
        sid = _free_id(_used_ids(tx, ntype), ranges)
        return None if sid is None else (ntype, None, sid)
    if ntype == "vlan":
        for r in dep.network_vlan_ranges:
            if r.minimum is None:
                continue
            seg = _allocate_vlan(tx, r.physical_network)
            if seg is not None:
                return seg
        return None
    if ntype == "local":
        return "local", None, None
    return None


def _allocate_vlan(tx: Tx, physnet: str) -> tuple[str, str | None, int | None] | None:
    ranges = tuple((r.minimum, r.maximum) for r in tx.deployment.network_vlan_ranges
                   if r.physical_network == physnet and r.minimum is not None and r.maximum is not None)
    sid = _free_id(_used_ids(tx, "vlan", physnet), ranges)  # type: ignore[arg-type]
    return None if sid is None else ("vlan", physnet, sid)


# -- networks -------------------------------------------------------------------------------------

def create_network(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    ntype, physnet, segid = allocate_segment(tx, attrs)
    n = models.Network(
        name=attrs["name"], description=attrs["description"], admin_state_up=attrs["admin_state_up"],
        shared=attrs["shared"], external=attrs["router:external"],
        port_security_enabled=attrs["port_security_enabled"], network_type=ntype, physical_network=physnet,
        segmentation_id=segid, mtu=attrs.get("mtu") or _mtu(tx.deployment, ntype),
        availability_zone_hints=attrs.get("availability_zone_hints", []), status="ACTIVE")
    _check_max_mtu(tx, n)
    stamp_new(tx, n, project, revision=1)
    n.subnets = []
    tx.session.add(n)
    rbac.on_network_created(tx, n)
    if attrs.get("is_default"):
        rbac.set_network_default(tx, n, True)
    ensure_default_group(tx, project)
    return network_dict(n, is_default=bool(attrs.get("is_default")) and n.external)


def list_networks(tx: Tx, filters: dict[str, list[str]], page: Page | None = None) -> list[dict[str, Any]]:
    q = paged(tx, select(models.Network), models.Network, page)
    if "id" in filters:
        q = q.where(models.Network.id.in_(filters["id"]))
    if "name" in filters:
        q = q.where(models.Network.name.in_(filters["name"]))
    rows = tx.session.scalars(q).all()
    access = rbac.network_access(tx)
    default = rbac.default_networks(tx)
    return [network_dict(n, access.shared_with(n), n.id in default) for n in rows
            if access.visible(n, tx.ctx.is_admin)]


def get_network(tx: Tx, network_id: str) -> dict[str, Any]:
    n = get_network_row(tx, network_id)
    return network_dict(n, rbac.network_shared_with_caller(tx, n), bool(rbac.default_networks(tx, [n.id])))


def _owner_only(tx: Tx, n: models.Network, action: str) -> None:
    """Neutron's policy: a network shared with the caller is seen, not changed or deleted."""
    if not tx.ctx.is_admin and n.project_id != tx.ctx.project_id:
        raise NotAuthorized(f"rule:{action}_network is disallowed by policy", neutron_type="PolicyNotAuthorized")


def update_network(tx: Tx, network_id: str, attrs: dict[str, Any], revision: int | None = None
                   ) -> dict[str, Any]:
    n = get_network_row(tx, network_id)
    _owner_only(tx, n, "update")
    check_revision(n, revision)
    if "router:external" in attrs and n.external and not attrs["router:external"]:
        gw = tx.session.scalar(select(func.count()).select_from(models.Port).where(
            models.Port.network_id == n.id, models.Port.device_owner == "network:router_gateway"))
        if gw:
            raise conflict("ExternalNetworkInUse", f"External network {n.id} cannot be updated to be made "
                                                   "non-external, since it has existing gateway ports.")
    if "mtu" in attrs and attrs["mtu"] is not None:
        _check_subnets_mtu(n, attrs["mtu"], [s.ip_version for s in n.subnets])
    if "shared" in attrs:
        rbac.set_network_shared(tx, n, bool(attrs.pop("shared")))
    if "router:external" in attrs:
        rbac.set_network_external(tx, n, bool(attrs.pop("router:external")))
    if "is_default" in attrs:
        rbac.set_network_default(tx, n, bool(attrs.pop("is_default")))
    for k, v in attrs.items():
        setattr(n, k, v)
    if "mtu" in attrs:
        n.mtu = attrs["mtu"] or _mtu(tx.deployment, n.network_type)
        _check_max_mtu(tx, n)
    bump(n)
    tx.session.flush()
    return network_dict(n, rbac.network_shared_with_caller(tx, n), bool(rbac.default_networks(tx, [n.id])))


IPV4_MIN_MTU = 68
IPV6_MIN_MTU = 1280


def _check_max_mtu(tx: Tx, n: models.Network) -> None:
    """ML2: a network's MTU is at most what its segment allows (the physical MTU less the tunnel's
    overhead)."""
    most = _mtu(tx.deployment, n.network_type)
    if n.mtu and most and n.mtu > most:
        raise invalid(f"Requested MTU is too big, maximum is {most}.")


def _check_subnets_mtu(n: models.Network, mtu: int, versions: list[int]) -> None:
    """Neutron: an IPv4 subnet needs an MTU of at least 68, an IPv6 one at least 1280."""
    if not mtu or mtu >= IPV6_MIN_MTU or not versions:
        return
    if mtu < IPV4_MIN_MTU:
        need = IPV4_MIN_MTU
    elif 6 in versions:
        need = IPV6_MIN_MTU
    else:
        return
    raise conflict("NetworkMTUSubnetConflict", f"MTU of {n.id} is not valid, subnet requires a minimum of {need}")


def delete_network(tx: Tx, network_id: str, revision: int | None = None) -> None:
    n = get_network_row(tx, network_id)
    _owner_only(tx, n, "delete")
    check_revision(n, revision)
    if n.external:
        _delete_disassociated_fips(tx, n.id)
    ports = tx.session.scalars(select(models.Port).where(models.Port.network_id == n.id)).all()
    busy = [p for p in ports if p.device_owner not in AUTO_DELETE_OWNERS]
    if busy:
        raise conflict("NetworkInUse", f"Unable to complete operation on network {n.id}. There are one or more "
                                       f"ports still in use on the network, id for these ports is: "
                                       f"{', '.join(p.id for p in busy)}.")
    for p in ports:
        tx.session.delete(p)
    tx.session.flush()
    for s in list(n.subnets):
        tx.session.delete(s)
    tx.session.flush()
    rbac.on_object_deleted(tx, "network", n.id)
    tx.session.delete(n)


def _delete_disassociated_fips(tx: Tx, network_id: str) -> None:
    """Neutron, before deleting an external network: its floating IPs that carry no association go
    with it (with their ports); an associated one still holds the network."""
    fips = tx.session.scalars(select(models.FloatingIP).where(models.FloatingIP.floating_network_id == network_id,
                                                              models.FloatingIP.port_id.is_(None))).all()
    for f in fips:
        port = tx.session.get(models.Port, f.floating_port_id)
        tx.session.delete(f)
        tx.session.flush()
        if port is not None:
            tx.session.delete(port)
    tx.session.flush()


# -- subnets --------------------------------------------------------------------------------------

def _check_version(name: str, value: str, version: int) -> None:
    v = ipaddress.ip_network(value, strict=False).version if "/" in value else ipaddress.ip_address(value).version
    if v != version:
        raise invalid(f"{name} '{value}' does not match the ip_version '{version}'")


def _validate_common(net: ipaddress.IPv4Network | ipaddress.IPv6Network, attrs: dict[str, Any],
                     subnet_id: str) -> None:
    if len(attrs.get("dns_nameservers") or []) > 5:
        raise invalid(f"Unable to complete operation for {subnet_id}. The number of DNS nameservers exceeds "
                      "the limit 5.", "DNSNameServersExhausted")
    if len(set(attrs.get("dns_nameservers") or [])) != len(attrs.get("dns_nameservers") or []):
        raise invalid("Duplicate nameserver in dns_nameservers")
    for d in attrs.get("dns_nameservers") or []:
        _check_version("dns_nameserver", d, net.version)
    routes = attrs.get("host_routes") or []
    if len(routes) > 20:
        raise invalid(f"Unable to complete operation for {subnet_id}. The number of host routes exceeds the "
                      "limit 20.", "HostRoutesExhausted")
    for r in routes:
        _check_version("destination", r["destination"], net.version)
        _check_version("nexthop", r["nexthop"], net.version)


def create_subnet(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    network = get_network_row(tx, attrs["network_id"])
    if not rbac.network_accessible(tx, network):
        raise not_found("network", network.id)
    version = attrs["ip_version"]
    pool_id, allocated = subnetpools.allocate(tx, attrs, version, network, project)
    if allocated is None:
        raise bad_request("subnet", "a subnetpool must be specified in the absence of a cidr")
    cidr = allocated
    net = ipaddress.ip_network(cidr)
    if net.version != version:
        raise invalid(f"cidr '{cidr}' does not match the ip_version '{version}'")
    if net.prefixlen == 0:
        raise invalid("0 is not allowed as CIDR prefix length")
    if version == 4 and (attrs.get("ipv6_ra_mode") or attrs.get("ipv6_address_mode")):
        raise invalid("ipv6_ra_mode or ipv6_address_mode cannot be set when ip_version is 4")
    ra, am = attrs.get("ipv6_ra_mode"), attrs.get("ipv6_address_mode")
    if ra and am and ra != am:
        raise invalid(f"ipv6_ra_mode set to '{ra}' with ipv6_address_mode set to '{am}' is not valid. If both "
                      "attributes are set, they must be the same value")
    if version == 6 and (am == "slaac" or ra == "slaac") and net.prefixlen != 64:
        raise invalid(f"Invalid CIDR {cidr} for IPv6 address mode. OpenStack uses the EUI-64 address format, "
                      "which requires the prefix to be /64")
    _check_subnets_mtu(network, network.mtu, [version])
    subnet_id = new_id(tx, models.Subnet)
    _validate_common(net, attrs, subnet_id)
    if "gateway_ip" in attrs:
        gateway = attrs["gateway_ip"]
        if gateway is not None:
            _check_version("gateway_ip", gateway, version)
            g = ipaddress.ip_address(gateway)
            if version == 4 and net.prefixlen <= 30 and g in (net.network_address, net.broadcast_address):
                raise invalid("Gateway is not valid on subnet")
    elif pool_id is not None and "cidr" not in attrs:
        gateway = str(net.network_address + 1)  # Neutron's subnet allocator: the block's first address
    else:
        gateway = ipam.default_gateway(net)
    if "allocation_pools" in attrs:
        pools = attrs["allocation_pools"]
        ipam.validate_pools(net, pools, gateway, subnet_id)
    else:
        pools = ipam.default_pools(net, gateway)
    ipam.check_overlap(cidr, network.subnets, network.id)
    s = models.Subnet(
        id=subnet_id, network_id=network.id, ip_version=version, cidr=cidr, gateway_ip=gateway,
        allocation_pools=pools, dns_nameservers=attrs.get("dns_nameservers") or [],
        host_routes=attrs.get("host_routes") or [], enable_dhcp=attrs["enable_dhcp"],
        ipv6_ra_mode=ra, ipv6_address_mode=am, name=attrs["name"], description=attrs["description"],
        subnetpool_id=pool_id)
    stamp_new(tx, s, project, revision=0)
    s.network = network
    tx.session.add(s)
    bump(network)
    if s.enable_dhcp:
        from neutrino.services import scheduling
        from neutrino.services.ports import ensure_dhcp_port  # ports builds on networks
        tx.session.flush()
        scheduling.schedule_network(tx.session, network.id)  # as Neutron: with its first DHCP subnet
        if _has_dhcp_port(tx, network.id):
            ensure_dhcp_port(tx, network, refresh=True)
    return subnet_dict(s, network.external)


def _has_dhcp_port(tx: Tx, network_id: str) -> bool:
    return tx.session.scalar(select(models.Port.id).where(
        models.Port.network_id == network_id, models.Port.device_owner == "network:dhcp").limit(1)) is not None


def list_subnets(tx: Tx, filters: dict[str, list[str]], page: Page | None = None) -> list[dict[str, Any]]:
    q = paged(tx, select(models.Subnet).join(models.Network), models.Subnet, page)
    if "id" in filters:
        q = q.where(models.Subnet.id.in_(filters["id"]))
    if "network_id" in filters:
        q = q.where(models.Subnet.network_id.in_(filters["network_id"]))
    if "name" in filters:
        q = q.where(models.Subnet.name.in_(filters["name"]))
    if "shared" in filters:
        q = q.where(models.Network.shared.in_([_filter_bool("shared", v) for v in filters["shared"]]))
    out = []
    access = rbac.network_access(tx)
    for s in tx.session.scalars(q).all():
        if visible(tx, s) or access.visible(s.network, tx.ctx.is_admin):
            out.append(subnet_dict(s))
    return out


def _filter_bool(attr: str, value: str) -> bool:
    try:
        return bool(to_bool(value))
    except ValueError as e:
        raise invalid(f"Invalid input for {attr}. Reason: {e}.", "HTTPBadRequest") from None


def get_subnet(tx: Tx, subnet_id: str) -> dict[str, Any]:
    return subnet_dict(get_subnet_row(tx, subnet_id))


def update_subnet(tx: Tx, subnet_id: str, attrs: dict[str, Any], revision: int | None = None) -> dict[str, Any]:
    s = get_subnet_row(tx, subnet_id)
    check_revision(s, revision)
    net = ipaddress.ip_network(s.cidr)
    _validate_common(net, attrs, s.id)
    gateway = attrs.get("gateway_ip", s.gateway_ip)
    if "gateway_ip" in attrs and gateway is not None:
        _check_version("gateway_ip", gateway, s.ip_version)
        g = ipaddress.ip_address(gateway)
        if s.ip_version == 4 and net.prefixlen <= 30 and g in (net.network_address, net.broadcast_address):
            raise invalid("Gateway is not valid on subnet")
    if "gateway_ip" in attrs and gateway != s.gateway_ip and s.gateway_ip is not None:
        # Neutron: the current gateway address, held by a router's port, can be neither moved nor removed
        held = tx.session.scalar(select(models.IPAllocation.port_id).join(
            models.Port, models.Port.id == models.IPAllocation.port_id).where(
            models.IPAllocation.subnet_id == s.id, models.IPAllocation.ip_address == s.gateway_ip,
            models.Port.device_owner.in_(ROUTER_PORT_OWNERS)).limit(1))
        if held is not None:
            raise conflict("GatewayIpInUse", f"Current gateway ip {s.gateway_ip} already in use by port {held}. "
                                             "Unable to update.")
    if "allocation_pools" in attrs or "gateway_ip" in attrs:
        pools = attrs.get("allocation_pools", s.allocation_pools)
        ipam.validate_pools(net, pools, gateway, s.id)
    dhcp_on = attrs.get("enable_dhcp") is True and not s.enable_dhcp
    for k, v in attrs.items():
        setattr(s, k, v)
    bump(s)
    if dhcp_on:
        # as create_subnet: the network's DHCP port (if it has one, or instance ports that need one)
        # gets an address on the subnet that now serves DHCP
        from neutrino.services import scheduling
        from neutrino.services.ports import ensure_dhcp_port  # ports builds on networks
        tx.session.flush()
        network = s.network
        scheduling.schedule_network(tx.session, network.id)
        if _has_dhcp_port(tx, network.id) or _has_instance_ports(tx, network.id):
            ensure_dhcp_port(tx, network, refresh=True)
    return subnet_dict(s)


def _has_instance_ports(tx: Tx, network_id: str) -> bool:
    return tx.session.scalar(select(models.Port.id).where(
        models.Port.network_id == network_id, ~models.Port.device_owner.startswith("network:")).limit(1)) is not None


def delete_subnet(tx: Tx, subnet_id: str, revision: int | None = None) -> None:
    s = get_subnet_row(tx, subnet_id)
    check_revision(s, revision)
    allocs = tx.session.scalars(select(models.IPAllocation).where(models.IPAllocation.subnet_id == s.id)).all()
    # Neutron: a router interface always holds the subnet; other ports' addresses on a SLAAC or
    # DHCPv6-stateless subnet are removed with it, on any other subnet they hold it.
    auto = is_auto_address(s)
    busy = [a for a in allocs if a.port.device_owner in ROUTER_INTERFACE_OWNERS or
            (not auto and a.port.device_owner not in AUTO_DELETE_OWNERS)]
    if busy:
        raise conflict("SubnetInUse", f"Unable to complete operation on subnet {s.id}: One or more ports have "
                                      "an IP allocation from this subnet.")
    for a in allocs:
        port = a.port
        port.fixed_ips.remove(a)
        if not port.fixed_ips and port.device_owner in AUTO_DELETE_OWNERS:
            tx.session.delete(port)
        else:
            bump(port)
    tx.session.flush()
    network = s.network
    tx.session.delete(s)
    bump(network)
