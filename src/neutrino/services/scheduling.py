"""DHCP and L3 agent scheduling (extensions ``dhcp_agent_scheduler`` and ``l3_agent_scheduler``).

A network is scheduled to ``DHCP_AGENTS_PER_NETWORK`` DHCP agents when it gets its first
DHCP-enabled subnet (Neutron schedules on ``subnet_create_end``; here a ``before_flush`` hook),
the network host's agent first, then the least loaded; a legacy router to one L3 agent when it is
created (its ``host``'s agent, else the least loaded). A new DHCP port is bound to a scheduled
agent's host that has none. The bindings (``NetworkDhcpBinding``,
``RouterL3Binding``) are what the planners follow: ``plan.dhcp`` serves a network's ``qdhcp-``
namespace on the hosts of its DHCP agents, ``plan.l3.router_host`` puts a legacy router on its
first binding's host.

The admin API (neutron/db/agentschedulers_db.py, l3_agentschedulers_db.py):
``add_network_to_agent``/``remove_network_from_agent`` and ``add_router_to_agent``/
``remove_router_from_agent``. Adding a network binds a DHCP port to the agent's host (the one a
removal reserved, ``device_id`` ``reserved_dhcp_port``, else a new one); removing reserves it, so
the network is served nowhere until it is added again. Adding a router moves its ``host`` and
binds its interface and gateway ports there; a legacy router on another agent is a conflict
(``RouterHostedByL3Agent``): moving it is a removal, then an addition.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from neutrino.db import models
from neutrino.errors import Conflict, NotFound
from neutrino.services.agents import DHCP, L3, agent_dict, get_agent_row
from neutrino.services.core import Tx, bump

DHCP_AGENTS_PER_NETWORK = 1
RESERVED_DHCP_PORT = "reserved_dhcp_port"
ROUTER_PORT_OWNERS = ("network:router_interface", "network:router_gateway")


def dhcp_device_id(network_id: str, host: str) -> str:
    """``utils.get_dhcp_agent_device_id``: the DHCP port's device id for an agent's host."""
    return f"dhcp{uuid.uuid5(uuid.NAMESPACE_DNS, host)}-{network_id}"


# --- errors (neutron_lib.exceptions.dhcpagentscheduler, neutron.extensions.l3agentscheduler) ----

def _invalid_dhcp_agent(agent_id: str) -> NotFound:
    return NotFound(f"Agent {agent_id} is not a valid DHCP Agent or has been disabled.",
                    neutron_type="InvalidDHCPAgent")


def _invalid_l3_agent(agent_id: str) -> NotFound:
    return NotFound(f"Agent {agent_id} is not a L3 Agent or has been disabled", neutron_type="InvalidL3Agent")


# --- automatic scheduling -------------------------------------------------------------------------

def _agents_of_type(session: Session, agent_type: str) -> list[models.Agent]:
    return list(session.scalars(select(models.Agent).where(models.Agent.agent_type == agent_type,
                                                           models.Agent.admin_state_up.is_(True))
                                .order_by(models.Agent.created_at, models.Agent.host)))


def _least_loaded(session: Session, agents: list[models.Agent], model: Any, prefer: str | None) -> list[models.Agent]:
    """``prefer``'s agent first (the host the service's ports are made on), then by load."""
    loads: dict[str, int] = {h: n for h, n in session.execute(select(model.host, func.count()).group_by(model.host))}
    return sorted(agents, key=lambda a: (a.host != prefer, loads.get(a.host, 0)))


def _network_host(session: Session) -> str | None:
    """The host the deployment's network agents run on first (the oldest DHCP agent's)."""
    first = session.scalars(select(models.Agent.host).where(models.Agent.agent_type == DHCP[0])
                            .order_by(models.Agent.created_at, models.Agent.host).limit(1)).first()
    return first


def schedule_network(session: Session, network_id: str) -> list[str]:
    """Bind an unscheduled network to its DHCP agents (nothing when it has bindings); their hosts."""
    have = list(session.scalars(select(models.NetworkDhcpBinding.host)
                                .where(models.NetworkDhcpBinding.network_id == network_id)))
    if have:
        return have
    agents = _least_loaded(session, _agents_of_type(session, DHCP[0]), models.NetworkDhcpBinding,
                           _network_host(session))[:DHCP_AGENTS_PER_NETWORK]
    for i, a in enumerate(agents, start=1):
        session.add(models.NetworkDhcpBinding(network_id=network_id, host=a.host, binding_index=i))
    return [a.host for a in agents]


def schedule_router(tx: Tx, router: models.Router) -> None:
    """Bind a new legacy router to one L3 agent (its ``host``'s, else the least loaded); HA and
    distributed routers are scheduled by their own modules."""
    if router.ha or router.distributed:
        return
    session = tx.session
    if session.scalars(select(models.RouterL3Binding).where(models.RouterL3Binding.router_id == router.id)).first():
        return
    agents = _least_loaded(session, [a for a in _agents_of_type(session, L3[0])  # not a DVR compute's
                                     if (a.configurations or {}).get("agent_mode", "legacy") in ("legacy", "dvr_snat")],
                           models.RouterL3Binding, router.host or None)
    if router.host and any(a.host == router.host for a in agents):
        agent = next(a for a in agents if a.host == router.host)
    elif agents:
        agent = agents[0]
    else:
        return
    session.add(models.RouterL3Binding(router_id=router.id, host=agent.host, binding_index=1))
    if router.host != agent.host:
        _move_router(tx, router, agent.host)


def dhcp_port_host(session: Session, network_id: str, default: str) -> str:
    """Where a network's new DHCP port goes: the first of its DHCP agents' hosts without one
    (scheduling the network if it is not yet), else ``default``."""
    hosts = schedule_network(session, network_id)
    served = set(session.scalars(select(models.Port.binding_host_id).where(
        models.Port.network_id == network_id, models.Port.device_owner == "network:dhcp",
        models.Port.device_id != RESERVED_DHCP_PORT)))
    return next((h for h in hosts if h not in served), default)


# --- DHCP agents' networks ------------------------------------------------------------------------

def _network(tx: Tx, network_id: str) -> models.Network:
    from neutrino.services.networks import get_network_row
    return get_network_row(tx, network_id)


def _dhcp_binding(tx: Tx, network_id: str, host: str) -> models.NetworkDhcpBinding | None:
    return tx.session.get(models.NetworkDhcpBinding, (network_id, host))


def _dhcp_ports(tx: Tx, network_id: str) -> list[models.Port]:
    return list(tx.session.scalars(select(models.Port).options(selectinload(models.Port.fixed_ips)).where(
        models.Port.network_id == network_id, models.Port.device_owner == "network:dhcp")
        .order_by(models.Port.created_seq)))


def _claim_dhcp_port(tx: Tx, network: models.Network, host: str) -> None:
    """Give ``host``'s DHCP agent a DHCP port on ``network``: the one already its, else a reserved
    one, else a new one (when the network has a DHCP port at all: the first is made with the first
    instance port, as before)."""
    from neutrino.services import ports as port_service
    ports = _dhcp_ports(tx, network.id)
    if not ports:
        return
    want = dhcp_device_id(network.id, host)
    if any(p.device_id == want for p in ports):
        return
    taken = next((p for p in ports if p.device_id == RESERVED_DHCP_PORT), None)
    if taken is None:
        subnets = [s for s in network.subnets if s.enable_dhcp and s.ip_version == 4]
        port_service.make_port(tx, network, network.project_id, {
            "device_owner": "network:dhcp", "device_id": want, "binding:host_id": host,
            "fixed_ips": [{"subnet_id": s.id} for s in subnets], "security_groups": []})
        return
    taken.device_id, taken.binding_host_id = want, host
    port_service.bind(tx, taken, network)
    bump(taken)


def add_network_to_agent(tx: Tx, agent_id: str, network_id: str) -> None:
    network = _network(tx, network_id)
    agent = get_agent_row(tx, agent_id)
    if agent.agent_type != DHCP[0] or not agent.admin_state_up:
        raise _invalid_dhcp_agent(agent_id)
    if _dhcp_binding(tx, network_id, agent.host) is not None:
        raise Conflict(f"The network {network_id} has been already hosted by the DHCP Agent {agent_id}.",
                       neutron_type="NetworkHostedByDHCPAgent")
    index = max((b.binding_index for b in tx.session.scalars(select(models.NetworkDhcpBinding).where(
        models.NetworkDhcpBinding.network_id == network_id))), default=0) + 1
    tx.session.add(models.NetworkDhcpBinding(network_id=network_id, host=agent.host, binding_index=index))
    tx.session.flush()
    _claim_dhcp_port(tx, network, agent.host)


def remove_network_from_agent(tx: Tx, agent_id: str, network_id: str) -> None:
    agent = get_agent_row(tx, agent_id)
    b = _dhcp_binding(tx, network_id, agent.host) if agent.agent_type == DHCP[0] else None
    if b is None:
        raise Conflict(f"The network {network_id} is not hosted by the DHCP Agent {agent_id}.",
                       neutron_type="NetworkNotHostedByDhcpAgent")
    tx.session.delete(b)
    for p in _dhcp_ports(tx, network_id):  # reserved, so that its address is reused on a later add
        if p.device_id == dhcp_device_id(network_id, agent.host) or p.binding_host_id == agent.host:
            p.device_id = RESERVED_DHCP_PORT
            bump(p)


def networks_on_agent(tx: Tx, agent_id: str) -> list[dict[str, Any]]:
    from neutrino.services import networks as net_service
    agent = get_agent_row(tx, agent_id)
    ids = set(tx.session.scalars(select(models.NetworkDhcpBinding.network_id).where(
        models.NetworkDhcpBinding.host == agent.host))) if agent.agent_type == DHCP[0] else set()
    if not ids:
        return []
    return [n for n in net_service.list_networks(tx, {"id": sorted(ids)}) if n["id"] in ids]


def dhcp_agents_of_network(tx: Tx, network_id: str) -> list[dict[str, Any]]:
    _network(tx, network_id)
    hosts = list(tx.session.scalars(select(models.NetworkDhcpBinding.host).where(
        models.NetworkDhcpBinding.network_id == network_id).order_by(models.NetworkDhcpBinding.binding_index)))
    return _agents_on(tx, DHCP[0], hosts)


def _agents_on(tx: Tx, agent_type: str, hosts: list[str]) -> list[dict[str, Any]]:
    if not hosts:
        return []
    rows = {a.host: a for a in tx.session.scalars(select(models.Agent).where(
        models.Agent.agent_type == agent_type, models.Agent.host.in_(hosts)))}
    return [agent_dict(rows[h]) for h in hosts if h in rows]


# --- L3 agents' routers ---------------------------------------------------------------------------

def _router(tx: Tx, router_id: str) -> models.Router:
    from neutrino.services.routers import get_router_row
    return get_router_row(tx, router_id)


def _move_router(tx: Tx, router: models.Router, host: str) -> None:
    """The router's ``host`` and its interface and gateway ports' binding follow its L3 agent."""
    from neutrino.services import ports as port_service
    router.host = host
    for p in tx.session.scalars(select(models.Port).where(models.Port.device_id == router.id,
                                                          models.Port.device_owner.in_(ROUTER_PORT_OWNERS))):
        if p.binding_host_id != host:
            p.binding_host_id = host
            net = tx.session.get(models.Network, p.network_id)
            if net is not None:
                port_service.bind(tx, p, net)
            bump(p)


def add_router_to_agent(tx: Tx, agent_id: str, router_id: str) -> None:
    router = _router(tx, router_id)
    agent = get_agent_row(tx, agent_id)
    if agent.agent_type != L3[0] or not agent.admin_state_up:
        raise _invalid_l3_agent(agent_id)
    mode = (agent.configurations or {}).get("agent_mode", "legacy")
    if mode in ("dvr", "dvr_no_external"):
        raise Conflict("Not allowed to manually assign a router to an agent in 'dvr' mode.",
                       neutron_type="DVRL3CannotAssignToDvrAgent")
    if mode == "legacy" and router.distributed:
        raise Conflict(f"Cannot host distributed router {router_id} on legacy L3 agent {agent_id}.",
                       neutron_type="RouterL3AgentMismatch")
    bindings = list(tx.session.scalars(select(models.RouterL3Binding).where(
        models.RouterL3Binding.router_id == router_id).order_by(models.RouterL3Binding.binding_index)))
    if any(b.host == agent.host for b in bindings):
        return
    if bindings and not router.ha:
        first = tx.session.scalars(select(models.Agent.id).where(models.Agent.agent_type == L3[0],
                                                                 models.Agent.host == bindings[0].host)).first()
        raise Conflict(f"The router {router_id} has been already hosted by the L3 Agent {first or bindings[0].host}.",
                       neutron_type="RouterHostedByL3Agent")
    index = max((b.binding_index for b in bindings), default=0) + 1
    tx.session.add(models.RouterL3Binding(router_id=router_id, host=agent.host, binding_index=index))
    if not bindings and not router.ha:
        _move_router(tx, router, agent.host)


def remove_router_from_agent(tx: Tx, agent_id: str, router_id: str) -> None:
    agent = get_agent_row(tx, agent_id)
    mode = (agent.configurations or {}).get("agent_mode", "legacy")
    if mode in ("dvr", "dvr_no_external"):
        raise Conflict("Not allowed to manually remove a router from an agent in 'dvr' mode.",
                       neutron_type="DVRL3CannotRemoveFromDvrAgent")
    b = tx.session.get(models.RouterL3Binding, (router_id, agent.host)) if agent.agent_type == L3[0] else None
    if b is not None:
        tx.session.delete(b)
    _router(tx, router_id)


def routers_on_agent(tx: Tx, agent_id: str) -> list[dict[str, Any]]:
    from neutrino.services import routers as router_service
    agent = get_agent_row(tx, agent_id)
    ids = set(tx.session.scalars(select(models.RouterL3Binding.router_id).where(
        models.RouterL3Binding.host == agent.host))) if agent.agent_type == L3[0] else set()
    return [r for r in router_service.list_routers(tx, {}) if r["id"] in ids]


def l3_agents_of_router(tx: Tx, router_id: str) -> list[dict[str, Any]]:
    _router(tx, router_id)
    rows = list(tx.session.scalars(select(models.RouterL3Binding).where(
        models.RouterL3Binding.router_id == router_id).order_by(models.RouterL3Binding.binding_index)))
    out = _agents_on(tx, L3[0], [b.host for b in rows])
    states = {b.host: b.ha_state for b in rows}
    for a in out:
        if states.get(a["host"]) is not None:
            a["ha_state"] = states[a["host"]]
    return out

