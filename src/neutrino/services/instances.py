"""Compute: flavors, the built-in images, servers, and scheduling onto compute hosts.

A server is placed on the compute host with the fewest servers (ties by host order in the
deployment; ``availability_zone: nova:<host>`` forces a host). Its ports are created or adopted the
way Nova does it: device_id = server id, device_owner = compute:<az>, binding:host_id = host.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from neutrino.db import models
from neutrino.errors import Conflict, InvalidInput, NotFound
from neutrino.services.attributes import is_uuid
from neutrino.services.core import Tx, bump, stamp_new, timestamp
from neutrino.services.networks import get_network_row
from neutrino.services.ports import bind, delete_port, ensure_dhcp_port, get_port_row, make_port
from neutrino.services.securitygroups import ensure_default_group


@dataclass(frozen=True, slots=True)
class Flavor:
    id: str
    name: str
    ram: int
    vcpus: int
    disk: int


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    name: str
    size: int
    disk_format: str = "qcow2"
    container_format: str = "bare"
    min_disk: int = 0
    min_ram: int = 0


FLAVORS = (Flavor("1", "m1.tiny", 512, 1, 1), Flavor("2", "m1.small", 2048, 1, 20),
           Flavor("3", "m1.medium", 4096, 2, 40), Flavor("4", "m1.large", 8192, 4, 80),
           Flavor("5", "m1.xlarge", 16384, 8, 160), Flavor("42", "m1.nano", 128, 1, 1))
IMAGES = (Image(str(uuid.uuid5(uuid.NAMESPACE_DNS, "image.cirros.neutrino")), "cirros", 21430272),)


def flavor(ref: str) -> Flavor:
    f = next((f for f in FLAVORS if f.id == str(ref) or f.name == str(ref)), None)
    if f is None:
        raise NotFound(f"Flavor {ref} could not be found.")
    return f


def image(ref: str) -> Image:
    i = next((i for i in IMAGES if i.id == ref), None)
    if i is None:
        raise NotFound(f"Image {ref} could not be found.")
    return i


def _schedule(tx: Tx, az: str | None) -> str:
    computes = tx.deployment.hosts_with("compute")
    if not computes:
        raise Conflict("No valid host was found. There are not enough hosts available.")
    if az and ":" in az:
        host = az.split(":", 1)[1]
        if host and not any(h.name == host for h in computes):
            raise InvalidInput(f"No valid host was found. Host {host} is not a compute host of the deployment.")
        if host:
            return host
    load = dict(tx.session.execute(select(models.Server.host, func.count()).group_by(models.Server.host)).all())
    return min(computes, key=lambda h: load.get(h.name, 0)).name


def _resolve_groups(tx: Tx, refs: list[Any]) -> list[str]:
    out = []
    for ref in refs:
        name = ref.get("name") if isinstance(ref, dict) else ref
        if not isinstance(name, str):
            raise InvalidInput("Invalid input for field/attribute security_groups.")
        q = select(models.SecurityGroup).where(models.SecurityGroup.project_id == tx.ctx.project_id)
        g = (tx.session.get(models.SecurityGroup, name) if is_uuid(name) else None) or \
            tx.session.scalar(q.where(models.SecurityGroup.name == name))
        if g is None:
            raise InvalidInput(f"Security group {name} not found for project {tx.ctx.project_id}.")
        out.append(g.id)
    return out


def create_server(tx: Tx, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("server"), dict):
        raise InvalidInput("Invalid input for field/attribute server.")
    s = body["server"]
    name = s.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise InvalidInput("Invalid input for field/attribute name.")
    img = image(str(s.get("imageRef", "")))
    flv = flavor(str(s.get("flavorRef", "")))
    az = s.get("availability_zone")
    host = _schedule(tx, az if isinstance(az, str) else None)
    groups = _resolve_groups(tx, s.get("security_groups") or [])
    ensure_default_group(tx, tx.ctx.project_id)
    requested = s.get("networks")
    if requested in (None, "auto") or requested == []:  # before 2.37 an empty list means "all"
        nets = tx.session.scalars(select(models.Network).where(
            ((models.Network.project_id == tx.ctx.project_id) | models.Network.shared.is_(True)),
            models.Network.external.is_(False))).all()
        requested = [{"uuid": n.id} for n in sorted(nets, key=lambda n: n.created_seq)]
    elif requested == "none":
        requested = []
    if not isinstance(requested, list):
        raise InvalidInput("Invalid input for field/attribute networks.")
    server = models.Server(name=name, user_id=tx.ctx.user_id, flavor_id=flv.id, image_id=img.id,
                           host=host, status="ACTIVE", availability_zone="nova", created_port_ids=[],
                           security_group_names=[], key_name=s.get("key_name"),
                           description=s.get("description") or "")
    stamp_new(tx, server, tx.ctx.project_id, revision=0)
    created: list[str] = []
    owner = "compute:nova"
    for item in requested:
        if not isinstance(item, dict):
            raise InvalidInput("Invalid input for field/attribute networks.")
        if item.get("port"):
            port = get_port_row(tx, str(item["port"]))
            if port.device_id:
                raise Conflict(f"Port {port.id} is still in use.")
            port.device_id, port.device_owner, port.binding_host_id = server.id, owner, host
            bind(tx, port, get_network_row(tx, port.network_id))
            bump(port)
            continue
        net_id = item.get("uuid")
        if not isinstance(net_id, str):
            raise InvalidInput("Invalid input for field/attribute networks.")
        try:
            network = get_network_row(tx, net_id)
        except NotFound:
            raise InvalidInput(f"Network {net_id} could not be found.") from None
        attrs: dict[str, Any] = {"device_id": server.id, "device_owner": owner, "binding:host_id": host}
        if item.get("fixed_ip"):
            attrs["fixed_ips"] = [{"ip_address": str(ipaddress.ip_address(item["fixed_ip"]))}]
        if groups and network.port_security_enabled:
            attrs["security_groups"] = groups
        port = make_port(tx, network, tx.ctx.project_id, attrs)
        created.append(port.id)
        ensure_dhcp_port(tx, network)
    server.created_port_ids = created
    server.security_group_names = [g.name for g in (tx.session.get(models.SecurityGroup, i) for i in groups)
                                   if g is not None] or ["default"]
    tx.session.add(server)
    tx.session.flush()
    return {"id": server.id, "OS-DCF:diskConfig": "MANUAL", "adminPass": uuid.uuid4().hex[:12],
            "security_groups": [{"name": n} for n in server.security_group_names]}


def get_server_row(tx: Tx, server_id: str) -> models.Server:
    s = tx.session.get(models.Server, server_id)
    if s is None or not (tx.ctx.is_admin or s.project_id == tx.ctx.project_id):
        raise NotFound(f"Instance {server_id} could not be found.")
    return s


def server_view(tx: Tx, servers: list[models.Server]) -> list[dict[str, Any]]:
    """Servers with their ports' addresses (fixed and floating), keyed by network name."""
    ids = [s.id for s in servers]
    ports = tx.session.scalars(select(models.Port).options(selectinload(models.Port.fixed_ips))
                               .where(models.Port.device_id.in_(ids))).all() if ids else []
    net_ids = {p.network_id for p in ports}
    nets = {n.id: n.name for n in tx.session.scalars(select(models.Network)
                                                     .where(models.Network.id.in_(net_ids))).all()}
    pids = [p.id for p in ports]
    fips = tx.session.scalars(select(models.FloatingIP).where(models.FloatingIP.port_id.in_(pids))).all() \
        if pids else []
    out = []
    for s in servers:
        addresses: dict[str, list[dict[str, Any]]] = {}
        for p in sorted((p for p in ports if p.device_id == s.id), key=lambda p: p.created_seq):
            label = nets.get(p.network_id, p.network_id)
            for a in p.fixed_ips:
                addr = ipaddress.ip_address(a.ip_address)
                addresses.setdefault(label, []).append({"version": addr.version, "addr": a.ip_address,
                                                        "OS-EXT-IPS:type": "fixed",
                                                        "OS-EXT-IPS-MAC:mac_addr": p.mac_address})
                for f in fips:
                    if f.port_id == p.id and f.fixed_ip_address == a.ip_address:
                        addresses[label].append({"version": 4, "addr": f.floating_ip_address,
                                                 "OS-EXT-IPS:type": "floating",
                                                 "OS-EXT-IPS-MAC:mac_addr": p.mac_address})
        out.append({
            "id": s.id, "name": s.name, "status": s.status, "tenant_id": s.project_id, "user_id": s.user_id,
            "image": {"id": s.image_id, "links": []}, "flavor": {"id": s.flavor_id, "links": []},
            "addresses": addresses, "created": s.created_at, "updated": s.updated_at,
            "hostId": uuid.uuid5(uuid.NAMESPACE_DNS, s.project_id + s.host).hex, "key_name": s.key_name,
            "metadata": {}, "accessIPv4": "", "accessIPv6": "", "progress": 0,
            "OS-EXT-STS:vm_state": "active" if s.status == "ACTIVE" else s.status.lower(),
            "OS-EXT-STS:task_state": None, "OS-EXT-STS:power_state": 1,
            "OS-EXT-AZ:availability_zone": s.availability_zone, "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-SRV-ATTR:host": s.host, "OS-EXT-SRV-ATTR:hypervisor_hostname": s.host,
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{s.id[:8]}",
            "config_drive": "", "security_groups": [{"name": n} for n in s.security_group_names],
            "os-extended-volumes:volumes_attached": [], "links": [],
        })
    return out


def list_servers(tx: Tx, name: str | None = None) -> list[dict[str, Any]]:
    q = select(models.Server)
    if not tx.ctx.is_admin:
        q = q.where(models.Server.project_id == tx.ctx.project_id)
    if name:
        q = q.where(models.Server.name == name)
    return server_view(tx, list(tx.session.scalars(q.order_by(models.Server.created_seq)).all()))


def get_server(tx: Tx, server_id: str) -> dict[str, Any]:
    return server_view(tx, [get_server_row(tx, server_id)])[0]


def delete_server(tx: Tx, server_id: str) -> None:
    s = get_server_row(tx, server_id)
    for p in tx.session.scalars(select(models.Port).where(models.Port.device_id == s.id)).all():
        if p.id in (s.created_port_ids or []):
            delete_port(tx, p.id, internal=True)
        else:
            p.device_id, p.device_owner, p.binding_host_id, p.binding_profile = "", "", "", {}
            p.status = "DOWN"
            bind(tx, p, get_network_row(tx, p.network_id))
            bump(p)
    tx.session.delete(s)
    s.updated_at = timestamp()
