"""Agents: one row per agent per host, derived from the deployment's hosts and roles.

ML2/OVS: every network or compute host runs the Open vSwitch agent; every host with the network
role (or, without one, the controller) runs the L3, DHCP and metadata agents. nova-network: every compute host runs
nova-network when multi-host, else only the controller (or the first host).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from neutrino.db import models
from neutrino.scenarios.model import Deployment, Host, Mechanism
from neutrino.services.core import Tx, not_found, timestamp

OVS = ("Open vSwitch agent", "neutron-openvswitch-agent", "N/A")
L3 = ("L3 agent", "neutron-l3-agent", "l3_agent")
DHCP = ("DHCP agent", "neutron-dhcp-agent", "dhcp_agent")
METADATA = ("Metadata agent", "neutron-metadata-agent", "N/A")
NOVA_NETWORK = ("nova-network", "nova-network", "network")


def expected_agents(dep: Deployment) -> list[tuple[str, tuple[str, str, str], dict[str, Any]]]:
    out: list[tuple[str, tuple[str, str, str], dict[str, Any]]] = []
    if dep.mechanism is Mechanism.NOVA_NETWORK:
        hosts = dep.hosts_with("compute") if dep.nova_network.multi_host else (
            dep.hosts_with("controller") or dep.hosts_with("network") or dep.hosts[:1])
        for h in hosts:
            out.append((h.name, NOVA_NETWORK, {"network_manager": f"nova.network.manager."
                                                                  f"{dep.nova_network.manager.value}Manager",
                                               "multi_host": dep.nova_network.multi_host}))
        return out
    for h in dep.hosts:
        if runs_ovs_agent(dep, h):
            out.append((h.name, OVS, {
                "bridge_mappings": dict(h.bridge_mappings), "tunnel_types": ovs_tunnel_types(dep),
                "tunneling_ip": str(h.tunnel_ip) if h.tunnel_ip else None, "l2_population": dep.l2population,
                "integration_bridge": "br-int", "tunnel_bridge": "br-tun",
                "firewall_driver": dep.firewall_driver}))
    network_hosts = network_agent_hosts(dep)
    for h in network_hosts:
        out.append((h.name, L3, {"agent_mode": h.l3_agent_mode,
                                 "external_network_bridge": dep.external_network_bridge}))
        out.append((h.name, DHCP, {"dhcp_driver": "neutron.agent.linux.dhcp.Dnsmasq"}))
        out.append((h.name, METADATA, {"metadata_proxy_socket": "/var/lib/neutron/metadata_proxy"}))
    for h in dep.hosts:  # DVR computes run an L3 agent (and the metadata agent) of their own
        if h not in network_hosts and h.l3_agent_mode in ("dvr", "dvr_no_external"):
            out.append((h.name, L3, {"agent_mode": h.l3_agent_mode,
                                     "external_network_bridge": dep.external_network_bridge}))
            out.append((h.name, METADATA, {"metadata_proxy_socket": "/var/lib/neutron/metadata_proxy"}))
    return out


def runs_ovs_agent(dep: Deployment, h: Host) -> bool:
    """Whether ``h`` runs the Open vSwitch agent (ML2/OVS): a network or compute host, or the host the
    network agents fall back to (``Deployment.network_host``)."""
    return h.has("network") or h.has("compute") or h is dep.network_host()


def ovs_tunnel_types(dep: Deployment) -> list[str]:
    """The tunnel types every Open vSwitch agent reports (its ``tunnel_types``): the deployment's
    tenant network types that are tunnels."""
    return [t for t in dep.tenant_network_types if t in ("gre", "vxlan")]


def ovs_agent_binds(dep: Deployment, h: Host, network_type: str, physical_network: str | None) -> bool:
    """Whether ML2's openvswitch mechanism driver binds a port on ``h`` to the network's segment
    (``AgentMechanismDriverBase.bind_port``, ``check_segment_for_agent``): only if ``h`` runs the agent,
    and the agent reaches the segment: a flat or VLAN segment's physical network is in its bridge
    mappings, a tunnel's type in its tunnel types; a local segment always. Otherwise the binding fails
    (``binding_failed``: Nova refuses the port, the agent treats the port as dead)."""
    if not runs_ovs_agent(dep, h):
        return False
    if network_type in ("flat", "vlan"):
        return any(physnet == physical_network for physnet, _ in h.bridge_mappings)
    return network_type == "local" or network_type in ovs_tunnel_types(dep)


def network_agent_hosts(dep: Deployment) -> list[Host]:
    """The hosts running the L3, DHCP and metadata agents (ML2/OVS): the network host first, then
    every other host with the ``network`` role."""
    net_host = dep.network_host()
    if net_host is None:
        return []
    return [net_host, *(h for h in dep.hosts_with("network") if h is not net_host)]


def sync_agents(session: Session, dep: Deployment) -> None:
    """Make the agents table match the deployment (called at server start)."""
    want = {(host, kind[0]): (kind, conf) for host, kind, conf in expected_agents(dep)}
    have = {(a.host, a.agent_type): a for a in session.scalars(select(models.Agent)).all()}
    for key, a in have.items():
        if key not in want:
            session.delete(a)
    t = timestamp().replace("T", " ").rstrip("Z")
    for (host, _), ((atype, binary, topic), conf) in want.items():
        a = have.get((host, atype))
        if a is None:
            session.add(models.Agent(id=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"agent.{atype}.{host}")),
                                     agent_type=atype, binary=binary, topic=topic, host=host, admin_state_up=True,
                                     configurations=conf, created_at=t, started_at=t, heartbeat_timestamp=t))
        else:
            a.configurations, a.started_at, a.heartbeat_timestamp = conf, t, t


def agent_dict(a: models.Agent) -> dict[str, Any]:
    return {"id": a.id, "agent_type": a.agent_type, "binary": a.binary, "topic": a.topic, "host": a.host,
            "admin_state_up": a.admin_state_up, "alive": True, "configurations": dict(a.configurations),
            "created_at": a.created_at, "started_at": a.started_at, "heartbeat_timestamp": a.heartbeat_timestamp,
            "description": a.description,
            "availability_zone": "nova" if a.agent_type in ("L3 agent", "DHCP agent") else None,
            "resources_synced": None}


def canonical_types(values: list[str]) -> list[str]:
    """Agent types as neutrino spells them, whatever their case (Neutron's usual MySQL collation
    compares them case-insensitively, and Tempest asks for ``DHCP Agent``)."""
    known = {kind[0].lower(): kind[0] for kind in (OVS, L3, DHCP, METADATA, NOVA_NETWORK)}
    return [known.get(v.lower(), v) for v in values]


def list_agents(tx: Tx, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [agent_dict(a) for a in tx.session.scalars(select(models.Agent).order_by(models.Agent.host,
                                                                                    models.Agent.agent_type))]


def get_agent_row(tx: Tx, agent_id: str) -> models.Agent:
    a = tx.session.get(models.Agent, agent_id)
    if a is None:
        raise not_found("agent", agent_id)
    return a


def get_agent(tx: Tx, agent_id: str) -> dict[str, Any]:
    return agent_dict(get_agent_row(tx, agent_id))


def update_agent(tx: Tx, agent_id: str, attrs: dict[str, Any]) -> dict[str, Any]:
    a = get_agent_row(tx, agent_id)
    for k in ("admin_state_up", "description"):
        if k in attrs:
            setattr(a, k, attrs[k])
    return agent_dict(a)


def delete_agent(tx: Tx, agent_id: str) -> None:
    """Delete an agent and, as the database's cascade does in Neutron, its networks and routers."""
    a = get_agent_row(tx, agent_id)
    if a.agent_type == DHCP[0]:
        tx.session.execute(delete(models.NetworkDhcpBinding).where(models.NetworkDhcpBinding.host == a.host))
    elif a.agent_type == L3[0]:
        tx.session.execute(delete(models.RouterL3Binding).where(models.RouterL3Binding.host == a.host))
    tx.session.delete(a)


