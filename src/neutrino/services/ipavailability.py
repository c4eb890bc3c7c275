"""Network IP availability (Neutron's ``network-ip-availability`` extension): per network and per
subnet, how many addresses the allocation pools hold (``total_ips``, the whole CIDR for a subnet
without pools) and how many are allocated to ports (``used_ips``), as
``neutron/db/network_ip_availability_db.py`` counts them. Admin only by Neutron's default policy.
IPv6 totals are exact integers (2**64 for a /64)."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import func, select

from neutrino.db import models
from neutrino.services.core import Tx, not_found

FILTERS = frozenset({"network_id", "network_name", "project_id", "tenant_id", "ip_version"})


def subnet_total(s: models.Subnet) -> int:
    """The addresses of the subnet's allocation pools (first to last, inclusive), or its CIDR's size."""
    if not s.allocation_pools:
        return int(ipaddress.ip_network(s.cidr, strict=False).num_addresses)
    total = 0
    for pool in s.allocation_pools:
        total += int(ipaddress.ip_address(pool["end"])) - int(ipaddress.ip_address(pool["start"])) + 1
    return total


def list_availabilities(tx: Tx, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every network matching ``filters`` (network_id, network_name, project_id/tenant_id,
    ip_version), each with its subnets (only those of the ``ip_version`` asked for)."""
    q = select(models.Network).order_by(models.Network.created_seq)
    if "network_id" in filters:
        q = q.where(models.Network.id.in_(filters["network_id"]))
    if "network_name" in filters:
        q = q.where(models.Network.name.in_(filters["network_name"]))
    projects = filters.get("project_id", []) + filters.get("tenant_id", [])
    if projects:
        q = q.where(models.Network.project_id.in_(projects))
    versions: set[int] | None = None
    if "ip_version" in filters:
        versions = {int(v) for v in filters["ip_version"] if str(v).strip().isdigit()}
    nets = list(tx.session.scalars(q).all())
    used = dict(tx.session.execute(select(models.IPAllocation.subnet_id, func.count()).join(
        models.Subnet, models.Subnet.id == models.IPAllocation.subnet_id).where(
        models.Subnet.network_id.in_([n.id for n in nets])).group_by(models.IPAllocation.subnet_id)).all())
    out = []
    for n in nets:
        subnets = [s for s in n.subnets if versions is None or s.ip_version in versions]
        if versions is not None and not subnets:
            continue  # Neutron's inner join on the subnet's ip_version drops the network
        entry: dict[str, Any] = {"network_id": n.id, "network_name": n.name, "project_id": n.project_id,
                                 "tenant_id": n.project_id, "subnet_ip_availability": [], "used_ips": 0,
                                 "total_ips": 0}
        for s in subnets:
            sub = {"subnet_id": s.id, "ip_version": s.ip_version, "cidr": s.cidr, "subnet_name": s.name,
                   "used_ips": int(used.get(s.id, 0)), "total_ips": subnet_total(s)}
            entry["subnet_ip_availability"].append(sub)
            entry["total_ips"] += sub["total_ips"]
            entry["used_ips"] += sub["used_ips"]
        out.append(entry)
    return out


def get_availability(tx: Tx, network_id: str) -> dict[str, Any]:
    found = list_availabilities(tx, {"network_id": [network_id]})
    if not found:
        raise not_found("network", network_id)
    return found[0]
