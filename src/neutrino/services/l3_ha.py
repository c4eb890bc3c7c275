"""HA routers (Neutron's ``l3-ha`` extension, ``neutron/db/l3_hamode_db.py``).

An HA router is scheduled to up to ``max_l3_agents_per_router`` L3 agents (the deployment's
network hosts; 0: all of them). Its project gets one HA network, ``HA network project <project>``
(owned by no project, subnet ``HA subnet project <project>``, 169.254.192.0/18, no gateway, no
DHCP), created with the project's first HA router and deleted with its last. Every bound host gets
an HA port on it (``network:router_ha_interface``, named ``HA port project <project>``, bound to
that host) and a binding row with its VRRP state: the first bound host is ``active`` and the
others ``standby``, until a failover changes them (:func:`set_ha_states`). Each router takes a
VRRP id (``ha_vr_id``) free on its HA network: the lowest one (Neutron picks at random).

Changing ``ha`` needs an admin and the router administratively down, as in Neutron.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from neutrino.db import models
from neutrino.errors import NotAuthorized
from neutrino.scenarios.model import Deployment
from neutrino.services import ipam
from neutrino.services.core import Tx, bump, conflict, invalid, stamp_new
from neutrino.services.networks import _mtu, allocate_segment

HA_OWNER = "network:router_ha_interface"
HA_NETWORK_NAME = "HA network project %s"
HA_SUBNET_NAME = "HA subnet project %s"
HA_PORT_NAME = "HA port project %s"
HA_NET_CIDR = "169.254.192.0/18"
VR_IDS = range(1, 255)
ACTIVE, STANDBY = "active", "standby"


def l3_hosts(dep: Deployment) -> list[str]:
    """The hosts with an L3 agent: the network hosts, else the deployment's network host."""
    hosts = [h.name for h in dep.hosts_with("network")]
    if not hosts:
        nh = dep.network_host()
        hosts = [] if nh is None else [nh.name]
    return hosts


def scheduled_hosts(dep: Deployment) -> list[str]:
    hosts = l3_hosts(dep)
    limit = dep.max_l3_agents_per_router
    return hosts[:limit] if limit else hosts


def ha_requested(tx: Tx, attrs: dict[str, Any]) -> bool:
    """Whether a new router is HA: the request's ``ha`` (admin only), else the deployment's ``l3_ha``."""
    if attrs.get("ha") is None:
        return tx.deployment.l3_ha
    if not tx.ctx.is_admin:
        raise _policy("ha")
    return bool(attrs["ha"])


def _policy(attr: str) -> Exception:
    return NotAuthorized(f"rule:create_router:{attr} is disallowed by policy", neutron_type="PolicyNotAuthorized")


def find_ha_network(tx: Tx, project_id: str) -> models.Network | None:
    return tx.session.scalars(select(models.Network).where(
        models.Network.name == HA_NETWORK_NAME % project_id, models.Network.project_id == "")).first()


def _ensure_ha_network(tx: Tx, project_id: str) -> models.Network:
    net = find_ha_network(tx, project_id)
    if net is not None:
        return net
    ntype, physnet, segid = allocate_segment(tx, {})
    net = models.Network(name=HA_NETWORK_NAME % project_id, description="", admin_state_up=True, shared=False,
                         external=False, port_security_enabled=True, network_type=ntype, physical_network=physnet,
                         segmentation_id=segid, mtu=_mtu(tx.deployment, ntype), availability_zone_hints=[],
                         status="ACTIVE")
    stamp_new(tx, net, "", revision=1)
    net.subnets = []
    tx.session.add(net)
    tx.session.flush()
    cidr = ipaddress.ip_network(HA_NET_CIDR)
    sub = models.Subnet(network_id=net.id, ip_version=4, cidr=HA_NET_CIDR, gateway_ip=None,
                        allocation_pools=ipam.default_pools(cidr, None), dns_nameservers=[], host_routes=[],
                        enable_dhcp=False, ipv6_ra_mode=None, ipv6_address_mode=None,
                        name=HA_SUBNET_NAME % project_id, description="", subnetpool_id=None)
    stamp_new(tx, sub, "", revision=0)
    sub.network = net
    tx.session.add(sub)
    tx.session.flush()
    return net


def _free_vr_id(tx: Tx, r: models.Router) -> int:
    used = set(tx.session.scalars(select(models.Router.ha_vr_id).where(
        models.Router.project_id == r.project_id, models.Router.ha.is_(True), models.Router.id != r.id)).all())
    vr_id = next((v for v in VR_IDS if v not in used), None)
    if vr_id is None:
        raise conflict("NoVRIDAvailable", "No more Virtual Router Identifier (VRID) available when creating "
                                          f"router {r.id}. Limit of HA Routers per tenant is 254.")
    return vr_id


def make_ha(tx: Tx, r: models.Router) -> None:
    """Turn ``r`` (flushed) into an HA router: HA network, VRRP id, one HA port and binding per host."""
    from neutrino.services.ports import make_port
    hosts = scheduled_hosts(tx.deployment)
    if not hosts:
        raise invalid("Not enough l3 agents available to ensure HA. Minimum required 1, available 0.",
                      "HANotEnoughAvailableAgents")
    net = _ensure_ha_network(tx, r.project_id)
    for old in list(tx.session.scalars(select(models.RouterL3Binding).where(
            models.RouterL3Binding.router_id == r.id)).all()):  # a legacy router's one agent
        tx.session.delete(old)
    tx.session.flush()
    r.ha = True
    r.ha_vr_id = _free_vr_id(tx, r)
    for i, host in enumerate(hosts, 1):
        port = make_port(tx, net, "", {"device_owner": HA_OWNER, "device_id": r.id,
                                       "name": HA_PORT_NAME % r.project_id, "binding:host_id": host,
                                       "status": "ACTIVE"})
        tx.session.add(models.RouterL3Binding(router_id=r.id, host=host, binding_index=i,
                                              ha_state=ACTIVE if i == 1 else STANDBY, ha_port_id=port.id))
    _place_router_ports(tx, r, hosts[0])
    tx.session.flush()


def drop_ha(tx: Tx, r: models.Router) -> None:
    """Undo :func:`make_ha`: HA ports, bindings and VRRP id; the HA network goes with the project's
    last HA router."""
    from neutrino.services.ports import delete_port
    for b in list(tx.session.scalars(select(models.RouterL3Binding).where(
            models.RouterL3Binding.router_id == r.id)).all()):
        tx.session.delete(b)
    for pid in tx.session.scalars(select(models.Port.id).where(models.Port.device_id == r.id,
                                                               models.Port.device_owner == HA_OWNER)).all():
        delete_port(tx, pid, internal=True)
    r.ha, r.ha_vr_id = False, 0
    tx.session.flush()
    others = tx.session.scalars(select(models.Router.id).where(
        models.Router.project_id == r.project_id, models.Router.ha.is_(True), models.Router.id != r.id)).first()
    net = find_ha_network(tx, r.project_id)
    if others is None and net is not None:
        for s in list(net.subnets):
            tx.session.delete(s)
        tx.session.delete(net)
        tx.session.flush()


def _place_router_ports(tx: Tx, r: models.Router, host: str) -> None:
    """The router's own ports are bound where it is active (Neutron moves their binding on failover)."""
    r.host = host
    for p in tx.session.scalars(select(models.Port).where(
            models.Port.device_id == r.id, models.Port.device_owner.in_(
                ("network:router_interface", "network:ha_router_replicated_interface",
                 "network:router_interface_distributed", "network:router_gateway")))).all():
        if p.binding_host_id != host:
            p.binding_host_id = host
            bump(p)


def check_ha_change(tx: Tx, r: models.Router, attrs: dict[str, Any]) -> bool | None:
    """The new ``ha`` value of an update, or None when it does not change it."""
    if attrs.get("ha") is None or bool(attrs["ha"]) == bool(r.ha):
        return None
    if not tx.ctx.is_admin:
        raise _policy("ha")
    if attrs.get("admin_state_up", r.admin_state_up):
        raise invalid("Cannot change HA attribute of active routers. Please set router admin_state_up to "
                      "False prior to upgrade", "BadRequest")
    return bool(attrs["ha"])


def apply_ha_change(tx: Tx, r: models.Router, ha: bool | None) -> None:
    if ha is True:
        make_ha(tx, r)
    elif ha is False:
        drop_ha(tx, r)


def set_ha_states(tx: Tx, router_id: str, active_hosts: Sequence[str]) -> list[tuple[str, str]]:
    """Record which hosts hold the router's VIPs (none: no keepalived runs; more than one: a split
    brain), the elected one first (the router's ports are bound there); returns (host, ha_state)."""
    out = []
    for b in tx.session.scalars(select(models.RouterL3Binding).where(
            models.RouterL3Binding.router_id == router_id).order_by(models.RouterL3Binding.binding_index)).all():
        b.ha_state = ACTIVE if b.host in active_hosts else STANDBY
        out.append((b.host, b.ha_state))
    r = tx.session.get(models.Router, router_id)
    if r is not None and active_hosts:
        _place_router_ports(tx, r, active_hosts[0])
        bump(r)
    return out
