"""Routers: external gateway (SNAT, external fixed IPs), interfaces by subnet or port, routes."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from neutrino.db import models
from neutrino.services import dvr, ipam, l3_ha, scheduling
from neutrino.services.core import (
    Tx,
    bad_request,
    bump,
    check_revision,
    conflict,
    invalid,
    not_found,
    owner_for_create,
    stamp_new,
    standard,
    visible,
)
from neutrino.services.networks import get_network_row, get_subnet_row
from neutrino.services.ports import bind, delete_port, get_port_row, make_port, service_port_row

INTERFACE = "network:router_interface"
DVR_INTERFACE = "network:router_interface_distributed"
HA_INTERFACE = "network:ha_router_replicated_interface"
INTERFACE_OWNERS = (INTERFACE, DVR_INTERFACE, HA_INTERFACE)  # a legacy, a distributed, an HA router's
GATEWAY = "network:router_gateway"


def _router_ports(tx: Tx, router_id: str) -> list[models.Port]:
    return list(tx.session.scalars(select(models.Port).options(selectinload(models.Port.fixed_ips)).where(
        models.Port.device_id == router_id, models.Port.device_owner.in_((*INTERFACE_OWNERS, GATEWAY)))
        .order_by(models.Port.created_seq)).all())


def interface_owner(r: models.Router) -> str:
    """The device owner Neutron gives a router's interface ports: ``network:router_interface_distributed``
    (a distributed router), ``network:ha_router_replicated_interface`` (an HA one), else
    ``network:router_interface``."""
    return DVR_INTERFACE if r.distributed else HA_INTERFACE if r.ha else INTERFACE


def retag_interfaces(tx: Tx, r: models.Router) -> None:
    """After ``distributed`` or ``ha`` changed: the interface ports' owner follows (as Neutron's
    router migration does)."""
    owner = interface_owner(r)
    for p in _router_ports(tx, r.id):
        if p.device_owner in INTERFACE_OWNERS and p.device_owner != owner:
            p.device_owner = owner
            bump(p)


def router_dict(r: models.Router, gw_port: models.Port | None) -> dict[str, Any]:
    d = standard(r)
    info = None
    if r.gw_network_id:
        info = {"network_id": r.gw_network_id, "enable_snat": r.enable_snat,
                "external_fixed_ips": [{"subnet_id": a.subnet_id, "ip_address": a.ip_address}
                                       for a in (gw_port.fixed_ips if gw_port else [])]}
    d.update({"name": r.name, "admin_state_up": r.admin_state_up, "status": r.status,
              "external_gateway_info": info, "routes": [dict(x) for x in r.routes],
              "availability_zone_hints": list(r.availability_zone_hints or []), "availability_zones": ["nova"],
              "distributed": bool(r.distributed), "ha": bool(r.ha), "flavor_id": None})
    return d


def _dict(tx: Tx, r: models.Router) -> dict[str, Any]:
    gw = tx.session.get(models.Port, r.gw_port_id, options=(selectinload(models.Port.fixed_ips),)) \
        if r.gw_port_id else None
    return router_dict(r, gw)


def get_router_row(tx: Tx, router_id: str) -> models.Router:
    r = tx.session.get(models.Router, router_id)
    if r is None or not visible(tx, r):
        raise not_found("router", router_id)
    return r


def _subnets_of(tx: Tx, ports: list[models.Port]) -> list[models.Subnet]:
    ids = [a.subnet_id for p in ports for a in p.fixed_ips]
    if not ids:
        return []
    return list(tx.session.scalars(select(models.Subnet).where(models.Subnet.id.in_(ids))).all())


def _check_overlap(tx: Tx, router: models.Router, new: list[models.Subnet], *, skip_port: str | None = None
                   ) -> None:
    ports = [p for p in _router_ports(tx, router.id) if p.id != skip_port]
    for s in new:
        cidr = ipaddress.ip_network(s.cidr)
        for o in _subnets_of(tx, ports):
            if o.id == s.id:
                continue
            if cidr.overlaps(ipaddress.ip_network(o.cidr)):
                raise bad_request("router", f"Cidr {s.cidr} of subnet {s.id} overlaps with cidr {o.cidr} of "
                                            f"subnet {o.id}")


def _fips_via(tx: Tx, router_id: str) -> list[models.FloatingIP]:
    return list(tx.session.scalars(select(models.FloatingIP).where(models.FloatingIP.router_id == router_id)).all())


def _set_gateway(tx: Tx, r: models.Router, info: dict[str, Any] | None) -> None:
    if info is None:
        if r.gw_network_id is None:
            return
        if _fips_via(tx, r.id):
            raise conflict("RouterExternalGatewayInUseByFloatingIp",
                           f"Gateway cannot be updated for router {r.id}, since a gateway to external network "
                           f"{r.gw_network_id} is required by one or more floating IPs.")
        if r.gw_port_id:
            delete_port(tx, r.gw_port_id, internal=True)
        r.gw_port_id, r.gw_network_id, r.enable_snat = None, None, True
        return
    network = get_network_row(tx, info["network_id"])
    if not network.external:
        raise bad_request("router", f"Network {network.id} is not an external network")
    snat = info.get("enable_snat", True)
    requested = info.get("external_fixed_ips")
    if r.gw_network_id == network.id and r.gw_port_id:
        r.enable_snat = snat
        if requested is not None:
            port = service_port_row(tx, r.gw_port_id)
            chosen = ipam.allocate_for_port(tx, network, list(network.subnets), requested or None,
                                            port.mac_address, router_port=True, ignore_port=port.id)
            from neutrino.services.ports import _set_ips
            _set_ips(port, chosen)
            bump(port)
        return
    if r.gw_network_id is not None:
        if _fips_via(tx, r.id):
            raise conflict("RouterExternalGatewayInUseByFloatingIp",
                           f"Gateway cannot be updated for router {r.id}, since a gateway to external network "
                           f"{r.gw_network_id} is required by one or more floating IPs.")
        if r.gw_port_id:
            delete_port(tx, r.gw_port_id, internal=True)
    # an external network without subnets still takes a gateway port, with no address (Neutron's
    # l3_db._create_router_gw_port only logs "No IPs available for external network")
    for item in requested or []:
        if item.get("ip_address"):
            for s in network.subnets:
                if s.gateway_ip == item["ip_address"]:
                    raise bad_request("router", f"IP address {item['ip_address']} is the gateway IP of external "
                                                f"subnet {s.id}")
    _check_overlap(tx, r, list(network.subnets))
    port = make_port(tx, network, "", {
        "device_owner": GATEWAY, "device_id": r.id, "fixed_ips": requested or None,
        "port_security_enabled": False, "security_groups": [], "binding:host_id": r.host})
    r.gw_port_id, r.gw_network_id, r.enable_snat = port.id, network.id, snat


def _validate_routes(tx: Tx, r: models.Router, routes: list[dict[str, str]]) -> None:
    ports = _router_ports(tx, r.id)
    subnets = _subnets_of(tx, ports)
    own = {a.ip_address for p in ports for a in p.fixed_ips}
    for route in routes:
        hop = ipaddress.ip_address(route["nexthop"])
        if route["nexthop"] in own:
            raise invalid(f"Invalid format for routes: {routes}, the nexthop is used by router", "InvalidRoutes")
        if not any(hop in ipaddress.ip_network(s.cidr) for s in subnets):
            raise invalid(f"Invalid format for routes: {routes}, the nexthop is not connected with router",
                          "InvalidRoutes")


def create_router(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    host = tx.deployment.network_host()
    r = models.Router(name=attrs["name"], description=attrs["description"],
                      admin_state_up=attrs["admin_state_up"], routes=[], status="ACTIVE",
                      host=host.name if host else "", enable_snat=True,
                      availability_zone_hints=attrs.get("availability_zone_hints", []))
    stamp_new(tx, r, project, revision=1)
    tx.session.add(r)
    tx.session.flush()
    if l3_ha.ha_requested(tx, attrs):
        l3_ha.make_ha(tx, r)
    if dvr.distributed_requested(tx, attrs):
        dvr.apply_distributed(tx, r, True)
    scheduling.schedule_router(tx, r)
    if attrs.get("external_gateway_info"):
        _set_gateway(tx, r, attrs["external_gateway_info"])
    if attrs.get("routes"):
        _validate_routes(tx, r, attrs["routes"])
        r.routes = attrs["routes"]
    if r.distributed:
        dvr.sync_ports(tx, r)
    return _dict(tx, r)


def list_routers(tx: Tx, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    q = select(models.Router).order_by(models.Router.created_seq)
    if "id" in filters:
        q = q.where(models.Router.id.in_(filters["id"]))
    if "name" in filters:
        q = q.where(models.Router.name.in_(filters["name"]))
    if not tx.ctx.is_admin:
        q = q.where(models.Router.project_id == tx.ctx.project_id)
    routers = tx.session.scalars(q).all()
    gw_ids = [r.gw_port_id for r in routers if r.gw_port_id]
    gws = {p.id: p for p in tx.session.scalars(select(models.Port).options(selectinload(models.Port.fixed_ips))
                                                .where(models.Port.id.in_(gw_ids))).all()} if gw_ids else {}
    return [router_dict(r, gws.get(r.gw_port_id or "")) for r in routers]


def get_router(tx: Tx, router_id: str) -> dict[str, Any]:
    return _dict(tx, get_router_row(tx, router_id))


def update_router(tx: Tx, router_id: str, attrs: dict[str, Any], revision: int | None = None) -> dict[str, Any]:
    r = get_router_row(tx, router_id)
    check_revision(r, revision)
    ha_change = l3_ha.check_ha_change(tx, r, attrs)
    dvr_change = dvr.check_distributed_change(tx, r, attrs)
    if "external_gateway_info" in attrs:
        _set_gateway(tx, r, attrs["external_gateway_info"])
    if "routes" in attrs:
        _validate_routes(tx, r, attrs["routes"])
        r.routes = attrs["routes"]
    for k in ("name", "description", "admin_state_up"):
        if k in attrs:
            setattr(r, k, attrs[k])
    l3_ha.apply_ha_change(tx, r, ha_change)
    if dvr_change is not None:
        dvr.apply_distributed(tx, r, dvr_change)
    if r.distributed or dvr_change is not None:
        dvr.sync_ports(tx, r)
    if ha_change is not None or dvr_change is not None:
        retag_interfaces(tx, r)
    bump(r)
    return _dict(tx, r)


def delete_router(tx: Tx, router_id: str, revision: int | None = None) -> None:
    r = get_router_row(tx, router_id)
    check_revision(r, revision)
    ifaces = [p for p in _router_ports(tx, r.id) if p.device_owner in INTERFACE_OWNERS]
    if ifaces:
        raise conflict("RouterInUse", f"Router {r.id} has ports still attached: {', '.join(p.id for p in ifaces)}")
    if _fips_via(tx, r.id):
        raise conflict("RouterInUse", f"Router {r.id} is still in use by one or more floating IPs.")
    if r.gw_port_id:
        delete_port(tx, r.gw_port_id, internal=True)
    if r.ha:
        l3_ha.drop_ha(tx, r)
    if r.distributed:
        dvr.release(tx, r)
    tx.session.delete(r)


# -- interfaces -----------------------------------------------------------------------------------

def _interface_info(r: models.Router, port: models.Port, subnet_ids: list[str]) -> dict[str, Any]:
    return {"id": r.id, "tenant_id": r.project_id, "project_id": r.project_id, "port_id": port.id,
            "network_id": port.network_id, "subnet_id": subnet_ids[-1] if subnet_ids else None,
            "subnet_ids": subnet_ids}


def _interface_target(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        raise bad_request("router", "Either subnet_id or port_id must be specified")
    subnet_id, port_id = body.get("subnet_id"), body.get("port_id")
    if subnet_id and port_id:
        raise bad_request("router", "Cannot specify both subnet-id and port-id")
    if not subnet_id and not port_id:
        raise bad_request("router", "Either subnet_id or port_id must be specified")
    for name, v in (("subnet_id", subnet_id), ("port_id", port_id)):
        if v is not None:
            from neutrino.services.attributes import is_uuid
            if not is_uuid(v):
                raise invalid(f"Invalid input for {name}. Reason: '{v}' is not a valid UUID.", "HTTPBadRequest")
    return subnet_id, port_id


def add_interface(tx: Tx, router_id: str, body: Any) -> dict[str, Any]:
    r = get_router_row(tx, router_id)
    subnet_id, port_id = _interface_target(body)
    if port_id is not None:
        port = get_port_row(tx, port_id)
        if port.device_id:
            raise conflict("PortInUse", f"Unable to complete operation on port {port.id} for network "
                                        f"{port.network_id}. Port already has an attached device {port.device_id}.")
        if not port.fixed_ips:
            raise bad_request("router", "Router port must have at least one fixed IP")
        subnets = _subnets_of(tx, [port])
        if sum(1 for s in subnets if s.ip_version == 4) > 1:
            raise bad_request("router", "Cannot have multiple IPv4 subnets on router port")
        for s in subnets:
            if _has_subnet(tx, r.id, s.id):
                raise bad_request("router", f"Router already has a port on subnet {s.id}")
        _check_overlap(tx, r, subnets)
        port.device_owner, port.device_id = interface_owner(r), r.id
        if not port.binding_host_id:
            port.binding_host_id = r.host
            bind(tx, port, get_network_row(tx, port.network_id))
        bump(port)
        bump(r)
        if r.distributed:
            dvr.sync_ports(tx, r)
        return _interface_info(r, port, [s.id for s in subnets])
    assert subnet_id is not None
    subnet = get_subnet_row(tx, subnet_id)
    if not subnet.gateway_ip:
        raise bad_request("router", "Subnet for router interface must have a gateway IP")
    if _has_subnet(tx, r.id, subnet.id):
        raise bad_request("router", f"Router already has a port on subnet {subnet.id}")
    _check_overlap(tx, r, [subnet])
    network = subnet.network
    port = make_port(tx, network, r.project_id, {
        "device_owner": interface_owner(r), "device_id": r.id,
        "fixed_ips": [{"subnet_id": subnet.id, "ip_address": subnet.gateway_ip}],
        "port_security_enabled": False, "security_groups": [], "binding:host_id": r.host})
    bump(r)
    if r.distributed:
        dvr.sync_ports(tx, r)
    return _interface_info(r, port, [subnet.id])


def _has_subnet(tx: Tx, router_id: str, subnet_id: str) -> bool:
    return any(a.subnet_id == subnet_id for p in _router_ports(tx, router_id) if p.device_owner in INTERFACE_OWNERS
               for a in p.fixed_ips)


def _check_fips_need(tx: Tx, r: models.Router, subnet_ids: set[str]) -> None:
    for fip in _fips_via(tx, r.id):
        if fip.port_id is None:
            continue
        allocs = tx.session.scalars(select(models.IPAllocation).where(
            models.IPAllocation.port_id == fip.port_id)).all()
        for a in allocs:
            if a.subnet_id in subnet_ids and a.ip_address == fip.fixed_ip_address:
                raise conflict("RouterInterfaceInUseByFloatingIP",
                               f"Router interface for subnet {a.subnet_id} on router {r.id} cannot be deleted, as "
                               "it is required by one or more floating IPs.")


def remove_interface(tx: Tx, router_id: str, body: Any) -> dict[str, Any]:
    r = get_router_row(tx, router_id)
    subnet_id, port_id = _interface_target(body) if not (isinstance(body, dict) and body.get("subnet_id")
                                                        and body.get("port_id")) else (body["subnet_id"],
                                                                                       body["port_id"])
    ifaces = [p for p in _router_ports(tx, r.id) if p.device_owner in INTERFACE_OWNERS]
    if port_id is not None:
        port = next((p for p in ifaces if p.id == port_id), None)
        if port is None:
            raise not_found_iface(r.id, port_id)
        sids = [a.subnet_id for a in port.fixed_ips]
        if subnet_id is not None and subnet_id not in sids:
            raise conflict("SubnetMismatchForPort", f"Subnet {subnet_id} does not match the subnets of port "
                                                    f"{port_id}")
        _check_fips_need(tx, r, set(sids))
        info = _interface_info(r, port, sids)
        delete_port(tx, port.id, internal=True)
        bump(r)
        if r.distributed:
            dvr.sync_ports(tx, r)
        return info
    assert subnet_id is not None
    get_subnet_row(tx, subnet_id)
    port = next((p for p in ifaces if any(a.subnet_id == subnet_id for a in p.fixed_ips)), None)
    if port is None:
        from neutrino.errors import NotFound
        raise NotFound(f"Router {r.id} has no interface on subnet {subnet_id}",
                       neutron_type="RouterInterfaceNotFoundForSubnet")
    _check_fips_need(tx, r, {subnet_id})
    info = _interface_info(r, port, [subnet_id])
    if len(port.fixed_ips) > 1:
        port.fixed_ips = [a for a in port.fixed_ips if a.subnet_id != subnet_id]
        bump(port)
    else:
        delete_port(tx, port.id, internal=True)
    bump(r)
    if r.distributed:
        dvr.sync_ports(tx, r)
    return info


def not_found_iface(router_id: str, port_id: str) -> Exception:
    from neutrino.errors import NotFound
    return NotFound(f"Router {router_id} does not have an interface with id {port_id}",
                    neutron_type="RouterInterfaceNotFound")
