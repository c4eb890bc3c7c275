"""Floating IPs: allocation on an external network and association through a router.

Neutron's rule: a port's fixed IP may get a floating IP from external network E only if some router
has its gateway on E and an interface on the fixed IP's subnet (the router whose interface holds the
subnet's gateway IP is preferred).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import select

from neutrino.db import models
from neutrino.errors import InvalidInput, NotFound
from neutrino.services import ipam, portforwardings
from neutrino.services.core import (
    Tx,
    bad_request,
    bump,
    check_revision,
    conflict,
    new_id,
    not_found,
    owner_for_create,
    stamp_new,
    standard,
    visible,
)
from neutrino.services.networks import get_network_row
from neutrino.services.ports import delete_port, get_port_row, make_port


def fip_dict(f: models.FloatingIP, port: models.Port | None,
             forwardings: list[models.PortForwarding] | None = None) -> dict[str, Any]:
    d = standard(f)
    details = None
    if port is not None:
        details = {"name": port.name, "network_id": port.network_id, "mac_address": port.mac_address,
                   "admin_state_up": port.admin_state_up, "status": port.status, "device_id": port.device_id,
                   "device_owner": port.device_owner}
    d.update({"floating_ip_address": f.floating_ip_address, "floating_network_id": f.floating_network_id,
              "port_id": f.port_id, "fixed_ip_address": f.fixed_ip_address, "router_id": f.router_id,
              "status": f.status, "port_details": details, "name": f.floating_ip_address,
              "port_forwardings": [portforwardings.fip_field(pf) for pf in forwardings or ()]})
    return d


def _dict(tx: Tx, f: models.FloatingIP) -> dict[str, Any]:
    return fip_dict(f, tx.session.get(models.Port, f.port_id) if f.port_id else None,
                    portforwardings.of_fips(tx, [f.id]).get(f.id))


def get_fip_row(tx: Tx, fip_id: str) -> models.FloatingIP:
    f = tx.session.get(models.FloatingIP, fip_id)
    if f is None or not visible(tx, f):
        raise not_found("floatingip", fip_id)
    return f


def find_router(tx: Tx, external_net: str, subnet: models.Subnet, port_id: str) -> str:
    """The router connecting ``subnet`` to ``external_net``, or ExternalGatewayForFloatingIPNotFound."""
    rows = tx.session.execute(
        select(models.Router.id, models.IPAllocation.ip_address)
        .join(models.Port, models.Port.device_id == models.Router.id)
        .join(models.IPAllocation, models.IPAllocation.port_id == models.Port.id)
        .where(models.Router.gw_network_id == external_net,
               models.Port.device_owner.in_(("network:router_interface", "network:router_interface_distributed",
                                             "network:ha_router_replicated_interface")),
               models.IPAllocation.subnet_id == subnet.id)
        .order_by(models.Router.created_seq, models.Port.created_seq)).all()
    if not rows:
        raise NotFound(f"External network {external_net} is not reachable from subnet {subnet.id}.  Therefore, "
                       f"cannot associate Port {port_id} with a Floating IP.",
                       neutron_type="ExternalGatewayForFloatingIPNotFound")
    for router_id, ip in rows:
        if ip == subnet.gateway_ip:
            return str(router_id)
    return str(rows[0][0])


def _associate(tx: Tx, f: models.FloatingIP, port_id: str, fixed_ip: str | None) -> None:
    if portforwardings.fip_has_forwardings(tx, f.id):
        raise portforwardings.in_use(f.id)
    port = get_port_row(tx, port_id)
    if port.project_id != f.project_id and not tx.ctx.is_admin:
        raise bad_request("floatingip", f"Cannot process floating IP association with Port {port.id}, since that "
                                        "port is owned by a different project")
    if port.device_owner.startswith("network:"):
        raise bad_request("floatingip", f"Port {port.id} has owner {port.device_owner} and therefore cannot "
                                        "have a floating IP")
    v4 = [a for a in port.fixed_ips if ipaddress.ip_address(a.ip_address).version == 4]
    if fixed_ip is not None:
        chosen = next((a for a in port.fixed_ips if a.ip_address == fixed_ip), None)
        if chosen is None:
            raise bad_request("floatingip", f"Port {port.id} does not have fixed ip {fixed_ip}")
        if ipaddress.ip_address(fixed_ip).version != 4:
            raise bad_request("floatingip", f"Cannot add floating IP to port {port.id} using IPv6 fixed IP")
    else:
        if not v4:
            raise bad_request("floatingip", f"Cannot add floating IP to port {port.id} that has no fixed IPv4 "
                                            "addresses")
        if len(v4) > 1:
            raise bad_request("floatingip", f"Port {port.id} has multiple fixed IPv4 addresses.  Must provide a "
                                            "specific IPv4 address when assigning a floating IP")
        chosen = v4[0]
    subnet = tx.session.get(models.Subnet, chosen.subnet_id)
    assert subnet is not None
    router_id = find_router(tx, f.floating_network_id, subnet, port.id)
    other = tx.session.scalar(select(models.FloatingIP).where(
        models.FloatingIP.port_id == port.id, models.FloatingIP.fixed_ip_address == chosen.ip_address,
        models.FloatingIP.floating_network_id == f.floating_network_id, models.FloatingIP.id != f.id))
    if other is not None:
        raise conflict("FloatingIPPortAlreadyAssociated",
                       f"Cannot associate floating IP {f.floating_ip_address} ({f.id}) with port {port.id} using "
                       f"fixed IP {chosen.ip_address}, as that fixed IP already has a floating IP on external "
                       f"network {f.floating_network_id}.")
    f.port_id, f.fixed_ip_address, f.router_id = port.id, chosen.ip_address, router_id


def create_fip(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    network = get_network_row(tx, attrs["floating_network_id"])
    if not network.external:
        raise bad_request("floatingip", f"Network {network.id} is not a valid external network")
    if attrs.get("fixed_ip_address") and not attrs.get("port_id"):
        raise bad_request("floatingip", "fixed_ip_address cannot be specified without a port_id")
    v4 = [s for s in network.subnets if s.ip_version == 4]
    if not v4:
        raise bad_request("floatingip", f"Network {network.id} does not contain any IPv4 subnet")
    fid = new_id(tx, models.FloatingIP)
    requested: list[dict[str, Any]]
    if attrs.get("floating_ip_address"):
        requested = [{"ip_address": attrs["floating_ip_address"]}]
        if attrs.get("subnet_id"):
            requested[0]["subnet_id"] = attrs["subnet_id"]
    elif attrs.get("subnet_id"):
        requested = [{"subnet_id": attrs["subnet_id"]}]
    else:
        requested = []
        for s in v4:
            ip = ipam.next_free(s, ipam.allocated(tx, s.id))
            if ip is not None:
                requested = [{"subnet_id": s.id, "ip_address": ip}]
                break
        if not requested:
            raise InvalidInput(f"Unable to find any IP address on external network {network.id}.",
                               neutron_type="ExternalIpAddressExhausted")
    try:
        port = make_port(tx, network, "", {"device_owner": "network:floatingip", "device_id": fid,
                                           "fixed_ips": requested, "port_security_enabled": False,
                                           "security_groups": [], "status": "N/A"})
    except Exception as e:
        if getattr(e, "neutron_type", None) == "IpAddressGenerationFailure":
            raise InvalidInput(f"Unable to find any IP address on external network {network.id}.",
                               neutron_type="ExternalIpAddressExhausted") from None
        raise
    address = next(a.ip_address for a in port.fixed_ips if ipaddress.ip_address(a.ip_address).version == 4)
    f = models.FloatingIP(id=fid, floating_network_id=network.id, floating_ip_address=address,
                          floating_port_id=port.id, status="DOWN", name="", description=attrs["description"])
    stamp_new(tx, f, project, revision=0)
    tx.session.add(f)
    if attrs.get("port_id"):
        _associate(tx, f, attrs["port_id"], attrs.get("fixed_ip_address"))
    tx.session.flush()
    return _dict(tx, f)


def list_fips(tx: Tx, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    q = select(models.FloatingIP).order_by(models.FloatingIP.created_seq)
    for key, col in (("id", models.FloatingIP.id), ("port_id", models.FloatingIP.port_id),
                     ("floating_ip_address", models.FloatingIP.floating_ip_address)):
        if key in filters:
            q = q.where(col.in_(filters[key]))
    if not tx.ctx.is_admin:
        q = q.where(models.FloatingIP.project_id == tx.ctx.project_id)
    fips = tx.session.scalars(q).all()
    pids = [f.port_id for f in fips if f.port_id]
    ports = {p.id: p for p in tx.session.scalars(select(models.Port).where(models.Port.id.in_(pids))).all()} \
        if pids else {}
    pfs = portforwardings.of_fips(tx, [f.id for f in fips])
    return [fip_dict(f, ports.get(f.port_id or ""), pfs.get(f.id)) for f in fips]


def get_fip(tx: Tx, fip_id: str) -> dict[str, Any]:
    return _dict(tx, get_fip_row(tx, fip_id))


def update_fip(tx: Tx, fip_id: str, attrs: dict[str, Any], revision: int | None = None) -> dict[str, Any]:
    f = get_fip_row(tx, fip_id)
    check_revision(f, revision)
    if not attrs:
        # Neutron: an update with an empty body clears the association (once a floating IP had no
        # attribute but its association, and an empty update was how to clear it)
        attrs = {"port_id": None}
    if "port_id" in attrs:
        if attrs["port_id"] is None:
            if attrs.get("fixed_ip_address"):
                raise bad_request("floatingip", "fixed_ip_address cannot be specified without a port_id")
            f.port_id = f.fixed_ip_address = f.router_id = None
            f.status = "DOWN"
        else:
            _associate(tx, f, attrs["port_id"], attrs.get("fixed_ip_address"))
    elif attrs.get("fixed_ip_address"):
        if f.port_id is None:
            raise bad_request("floatingip", "fixed_ip_address cannot be specified without a port_id")
        _associate(tx, f, f.port_id, attrs["fixed_ip_address"])
    if "description" in attrs:
        f.description = attrs["description"]
    bump(f)
    tx.session.flush()
    return _dict(tx, f)


def delete_fip(tx: Tx, fip_id: str, revision: int | None = None) -> None:
    f = get_fip_row(tx, fip_id)
    check_revision(f, revision)
    if portforwardings.fip_has_forwardings(tx, f.id):
        raise portforwardings.in_use(f.id)
    if tx.session.get(models.Port, f.floating_port_id) is not None:
        tx.session.delete(f)
        tx.session.flush()
        delete_port(tx, f.floating_port_id, internal=True)
    else:
        tx.session.delete(f)


def set_fip_status(tx: Tx, fip_id: str, status: str) -> dict[str, Any]:
    f = get_fip_row(tx, fip_id)
    if status not in ("ACTIVE", "DOWN", "ERROR"):
        from neutrino.services.core import invalid
        raise invalid(f"Invalid floating IP status {status}")
    if f.status != status:
        f.status = status
        bump(f)
    return _dict(tx, f)

