"""Distributed virtual routers (Neutron's ``dvr`` extension, ``neutron/db/l3_dvr_db.py``).

A router is distributed when an admin says so (``distributed: true``) or, unless the request says
otherwise, when the deployment's ``router_distributed`` is set. Changing ``distributed`` needs an
admin and the router administratively down, as in Neutron.

A distributed router's server-side ports, as ``l3_dvr_db`` makes them:

- its interfaces are bound to no host at the port level: the same ``qr-`` device (MAC and IP)
  exists on every host that serves the router (see ``plan.dvr.router_hosts``); their owner is
  ``network:router_interface_distributed``, as Neutron names it, and ML2 shows them with
  ``binding:vif_type`` ``distributed``, no host and no details (their status: ACTIVE once a host's
  agent has wired the ``qr-`` device, see ``agent.wired_status``);
- with an external gateway, one ``network:router_centralized_snat`` port per interface subnet
  (its ``sg-`` device in the ``snat-`` namespace), an address of that subnet, bound to the SNAT
  host: the first ``dvr_snat`` host;
- with an external gateway, one ``network:floatingip_agent_gateway`` port per (external network,
  ``dvr``/``dvr_snat`` host): the ``fg-`` device of that host's ``fip-`` namespace, device id the
  host's L3 agent (Neutron creates it when the host's agent first asks; neutrino creates it with
  the gateway for every DVR host, so the planned hosts do not depend on the order of requests).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from neutrino.db import models
from neutrino.errors import NotAuthorized
from neutrino.scenarios.model import Deployment
from neutrino.services.core import Tx, bad_request

DVR_INTERFACE = "network:router_interface_distributed"
INTERFACE = "network:router_interface"
HA_INTERFACE = "network:ha_router_replicated_interface"
SNAT = "network:router_centralized_snat"
FIP_AGENT_GATEWAY = "network:floatingip_agent_gateway"
# the vif type ML2 shows for a distributed interface (``_update_port_dict_binding``): host "", details {}
DISTRIBUTED = "distributed"
DVR_MODES = ("dvr", "dvr_snat", "dvr_no_external")


def dvr_hosts(dep: Deployment) -> list[str]:
    """The hosts whose L3 agent runs DVR and plugs floating-IP gateways (``dvr``, ``dvr_snat``)."""
    return [h.name for h in dep.hosts if h.l3_agent_mode in ("dvr", "dvr_snat")]


def snat_host(dep: Deployment) -> str:
    """Where a distributed router's SNAT runs: the first ``dvr_snat`` host ("" when none)."""
    return next((h.name for h in dep.hosts if h.l3_agent_mode == "dvr_snat"), "")


def _policy(action: str) -> Exception:
    return NotAuthorized(f"rule:{action}_router:distributed is disallowed by policy",
                         neutron_type="PolicyNotAuthorized")


def distributed_requested(tx: Tx, attrs: dict[str, Any]) -> bool:
    """Whether a new router is distributed: the request's ``distributed`` (admin only), else the
    deployment's ``router_distributed``."""
    if attrs.get("distributed") is None:
        return tx.deployment.router_distributed
    if not tx.ctx.is_admin:
        raise _policy("create")
    return bool(attrs["distributed"])


def check_distributed_change(tx: Tx, r: models.Router, attrs: dict[str, Any]) -> bool | None:
    """The new ``distributed`` value when an update changes it (admin only, router down), else None."""
    want = attrs.get("distributed")
    if want is None:
        return None
    if not tx.ctx.is_admin:
        raise _policy("update")
    if bool(want) == bool(r.distributed):
        return None
    if attrs.get("admin_state_up", r.admin_state_up):
        raise bad_request("router", "Cannot change the 'distributed' attribute of active routers. Please set "
                                    "router admin_state_up to False prior to upgrade")
    return bool(want)


def apply_distributed(tx: Tx, r: models.Router, distributed: bool) -> None:
    """Make ``r`` distributed (or central): its SNAT runs on the SNAT host, its ports follow."""
    r.distributed = distributed
    if distributed and snat_host(tx.deployment):
        r.host = snat_host(tx.deployment)
    elif not distributed:
        net_host = tx.deployment.network_host()
        r.host = net_host.name if net_host else ""


def interface_owner(r: models.Router) -> str:
    """The device owner of a router's interface ports (Neutron's: ``network:router_interface_distributed``
    for a distributed router)."""
    from neutrino.services.routers import interface_owner as owner_of
    return owner_of(r)


def _ports(tx: Tx, device_id: str | None, owner: str, network_id: str | None = None) -> list[models.Port]:
    q = select(models.Port).options(selectinload(models.Port.fixed_ips)).where(models.Port.device_owner == owner)
    if device_id is not None:
        q = q.where(models.Port.device_id == device_id)
    if network_id is not None:
        q = q.where(models.Port.network_id == network_id)
    return list(tx.session.scalars(q.order_by(models.Port.created_seq)).all())


def _interface_subnets(tx: Tx, r: models.Router) -> list[tuple[models.Port, str]]:
    out: list[tuple[models.Port, str]] = []
    for owner in (INTERFACE, DVR_INTERFACE, HA_INTERFACE):
        for p in _ports(tx, r.id, owner):
            out += [(p, a.subnet_id) for a in p.fixed_ips]
    return out


def _l3_agent_id(tx: Tx, host: str) -> str:
    agent = tx.session.scalars(select(models.Agent).where(models.Agent.host == host,
                                                          models.Agent.agent_type == "L3 agent")).first()
    return agent.id if agent is not None else ""


def sync_ports(tx: Tx, r: models.Router) -> None:
    """Make a router's DVR ports match it: its interfaces' owner and binding, the SNAT ports of
    its interface subnets, the floating-IP agent gateways of its external network."""
    from neutrino.services.networks import get_network_row
    from neutrino.services.ports import bind, delete_port, make_port

    owner = interface_owner(r)
    for old in (INTERFACE, DVR_INTERFACE, HA_INTERFACE):
        for p in _ports(tx, r.id, old):
            p.device_owner = owner
            if r.distributed:  # bound per host (ML2's distributed bindings): the port's own shows none
                p.binding_host_id, p.binding_vif_type, p.binding_vif_details = "", DISTRIBUTED, {}
            elif not p.binding_host_id or p.binding_vif_type == DISTRIBUTED:
                p.binding_host_id = p.binding_host_id or r.host
                bind(tx, p, get_network_row(tx, p.network_id))
    if r.gw_port_id:
        gw = tx.session.get(models.Port, r.gw_port_id)
        if gw is not None:
            gw.binding_host_id = r.host
    snat_ports = _ports(tx, r.id, SNAT)
    want = {sid: p for p, sid in _interface_subnets(tx, r)} if r.distributed and r.gw_network_id else {}
    have: dict[str, models.Port] = {}
    for p in snat_ports:
        sid = p.fixed_ips[0].subnet_id if p.fixed_ips else ""
        if sid in want and sid not in have:
            have[sid] = p
        else:
            delete_port(tx, p.id, internal=True)
    host = snat_host(tx.deployment)
    for sid, iface in want.items():
        if sid in have:
            continue
        network = get_network_row(tx, iface.network_id)
        make_port(tx, network, "", {
            "device_owner": SNAT, "device_id": r.id, "fixed_ips": [{"subnet_id": sid}],
            "port_security_enabled": False, "security_groups": [], "binding:host_id": host})
    if r.distributed and r.gw_network_id:
        ensure_agent_gateways(tx, r.gw_network_id)
    prune_agent_gateways(tx)


def ensure_agent_gateways(tx: Tx, network_id: str) -> None:
    """One ``fg-`` port per DVR host on the external network ``network_id``."""
    from neutrino.services.networks import get_network_row
    from neutrino.services.ports import make_port

    have = {p.binding_host_id for p in _ports(tx, None, FIP_AGENT_GATEWAY, network_id)}
    network = None
    for host in dvr_hosts(tx.deployment):
        if host in have:
            continue
        network = network or get_network_row(tx, network_id)
        make_port(tx, network, "", {
            "device_owner": FIP_AGENT_GATEWAY, "device_id": _l3_agent_id(tx, host), "port_security_enabled": False,
            "security_groups": [], "binding:host_id": host})


def prune_agent_gateways(tx: Tx) -> None:
    """Delete the ``fg-`` ports of external networks no distributed router has its gateway on."""
    from neutrino.services.ports import delete_port

    used = set(tx.session.scalars(select(models.Router.gw_network_id).where(
        models.Router.distributed.is_(True), models.Router.gw_network_id.is_not(None))).all())
    for p in _ports(tx, None, FIP_AGENT_GATEWAY):
        if p.network_id not in used:
            delete_port(tx, p.id, internal=True)


def release(tx: Tx, r: models.Router) -> None:
    """A distributed router goes away: its SNAT ports, and the ``fg-`` ports nothing else needs."""
    from neutrino.services.ports import delete_port

    for p in _ports(tx, r.id, SNAT):
        delete_port(tx, p.id, internal=True)
    r.gw_network_id = None
    tx.session.flush()
    prune_agent_gateways(tx)
