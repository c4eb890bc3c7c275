"""Ports: MACs, fixed IPs, security groups, port security, address pairs, binding and status."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Text, bindparam, cast, delete, insert, select
from sqlalchemy.orm import selectinload

from neutrino.db import models
from neutrino.errors import NotAuthorized
from neutrino.scenarios.model import Mechanism
from neutrino.services import ipam
from neutrino.services.attributes import extra_dhcp_opts_created, extra_dhcp_opts_updated
from neutrino.services.core import (
    Page,
    Tx,
    bad_request,
    bump,
    check_revision,
    conflict,
    invalid,
    new_mac,
    not_found,
    owner_for_create,
    paged,
    stamp_new,
    standard,
    visible,
)
from neutrino.services.networks import get_network_row
from neutrino.services.securitygroups import default_group_id, get_group_row

ROUTER_OWNERS = ("network:router_interface", "network:router_gateway", "network:floatingip",
                 "network:router_interface_distributed", "network:router_centralized_snat",
                 "network:ha_router_replicated_interface")
PORT_STATUSES = ("ACTIVE", "DOWN", "BUILD", "ERROR", "N/A")


def port_dict(p: models.Port) -> dict[str, Any]:
    d = standard(p)
    d.update({
        "name": p.name, "network_id": p.network_id, "admin_state_up": p.admin_state_up,
        "mac_address": p.mac_address, "status": p.status, "device_id": p.device_id,
        "device_owner": p.device_owner,
        "fixed_ips": [{"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in p.fixed_ips],
        "security_groups": [b.security_group_id for b in p.sg_bindings],
        "port_security_enabled": p.port_security_enabled,
        "allowed_address_pairs": [dict(x) for x in p.allowed_address_pairs],
        "extra_dhcp_opts": list(p.extra_dhcp_opts or []),
        "binding:host_id": p.binding_host_id, "binding:profile": dict(p.binding_profile or {}),
        "binding:vif_type": p.binding_vif_type, "binding:vif_details": dict(p.binding_vif_details or {}),
        "binding:vnic_type": p.binding_vnic_type, "ip_allocation": "immediate",
    })
    return d


def _loaded() -> Any:
    return (selectinload(models.Port.fixed_ips), selectinload(models.Port.sg_bindings))


def get_port_row(tx: Tx, port_id: str) -> models.Port:
    p = tx.session.get(models.Port, port_id, options=_loaded())
    if p is None or not (visible(tx, p) or _network_owner_sees(tx, p)):
        raise not_found("port", port_id)
    return p


def service_port_row(tx: Tx, port_id: str) -> models.Port:
    """A port the service itself manages for its owner (a router's gateway port, a floating IP's
    port: project ''), read with elevated rights as Neutron's L3 code does, whoever is calling."""
    p = tx.session.get(models.Port, port_id, options=_loaded())
    if p is None:
        raise not_found("port", port_id)
    return p


def _network_owner_sees(tx: Tx, p: models.Port) -> bool:
    n = tx.session.get(models.Network, p.network_id)
    return n is not None and n.project_id == tx.ctx.project_id


def _mac(tx: Tx, network_id: str) -> str:
    """A MAC free on the network: the generator's next candidate, and the one after when it is taken."""
    for _ in range(16):
        mac = new_mac(tx)
        if not _mac_taken(tx, network_id, mac):
            return mac
    raise conflict("MacAddressGenerationFailure", f"Unable to generate unique mac on network {network_id}.")


_MAC_TAKEN: Any = select(models.Port.id).where(models.Port.network_id == bindparam("network_id"),
                                                models.Port.mac_address == bindparam("mac")).limit(1)


def _mac_taken(tx: Tx, network_id: str, mac: str) -> bool:
    return _scalar(tx, _MAC_TAKEN, {"network_id": network_id, "mac": mac}) is not None


def _scalar(tx: Tx, stmt: Any, params: dict[str, Any]) -> Any:
    """``core_scalar`` of a statement built once with bound parameters (no statement to build and no
    cache key to compute per call)."""
    session = tx.session
    if session.new or session.deleted or session.dirty:
        session.flush()
    return session.connection().execute(stmt, params).scalar()


def bind(tx: Tx, p: models.Port, network: models.Network) -> None:
    """Bind a port to its host the way the mechanism driver would (vif type and details)."""
    host = p.binding_host_id
    if not host:
        p.binding_vif_type, p.binding_vif_details = "unbound", {}
        return
    if tx.deployment.host(host) is None:
        p.binding_vif_type, p.binding_vif_details = "binding_failed", {}
        return
    dep = tx.deployment
    if dep.mechanism is Mechanism.NOVA_NETWORK:
        bridge = f"br{network.segmentation_id}" if network.network_type == "vlan" else "br100"
        p.binding_vif_type = "bridge"
        p.binding_vif_details = {"port_filter": True, "bridge_name": bridge}
        return
    hybrid = dep.firewall_driver in ("iptables_hybrid", "iptables")
    p.binding_vif_type = "ovs"
    p.binding_vif_details = {"port_filter": dep.firewall_driver != "noop", "ovs_hybrid_plug": hybrid,
                             "bridge_name": "br-int", "datapath_type": "system", "connectivity": "l2",
                             "bound_drivers": {"0": "openvswitch"}}


def _set_groups(tx: Tx, p: models.Port, group_ids: list[str], *, checked: bool = False) -> None:
    """Bind the port to ``group_ids``; ``checked`` when the caller already knows they exist and are
    visible (the project's default group it just looked up)."""
    p.sg_bindings = [models.PortSecurityGroup(port_id=p.id, security_group_id=g, seq=i)
                     for i, g in enumerate(_checked_groups(tx, group_ids, checked=checked))]


def _checked_groups(tx: Tx, group_ids: list[str], *, checked: bool = False) -> list[str]:
    """``group_ids`` without duplicates, each checked to exist and be visible unless ``checked``, and
    not mixing stateful and stateless groups."""
    if not checked:
        rows = [get_group_row(tx, gid) for gid in group_ids]
        if any(g.stateful for g in rows) and not all(g.stateful for g in rows):
            raise conflict("SecurityGroupConflict", "Error Cannot apply both stateful and stateless security "
                                                    "groups on the same port at the same time while attempting "
                                                    "the operation.")
    return list(dict.fromkeys(group_ids))


def set_security_groups(tx: Tx, p: models.Port, group_ids: list[str]) -> None:
    """Bind the port to exactly ``group_ids`` (checked to exist and be visible)."""
    _set_groups(tx, p, group_ids)


def _set_ips(p: models.Port, pairs: list[tuple[str, str]]) -> None:
    keep = {(a.subnet_id, a.ip_address): a for a in p.fixed_ips}
    new = []
    for i, (sid, ip) in enumerate(pairs):
        a = keep.get((sid, ip)) or models.IPAllocation(subnet_id=sid, ip_address=ip, port_id=p.id,
                                                      network_id=p.network_id)
        a.seq = i
        new.append(a)
    p.fixed_ips = new


def make_port(tx: Tx, network: models.Network, project: str, attrs: dict[str, Any]) -> models.Port:
    """Create a port row with addresses, groups and binding (rules shared by API and internal callers)."""
    p, pairs_ips, groups = _new_port(tx, network, project, attrs)
    p.fixed_ips = []
    p.sg_bindings = []
    _set_ips(p, pairs_ips)
    p.sg_bindings = [models.PortSecurityGroup(port_id=p.id, security_group_id=g, seq=i) for i, g in enumerate(groups)]
    bind(tx, p, network)
    tx.session.add(p)
    tx.session.flush()
    return p


def _create_view(tx: Tx, network: models.Network, project: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """``port_dict(make_port(...))`` for the API's create: the same checks and row, written as three Core
    inserts instead of the ORM's flush and shown from the values written. A DHCP port still goes
    through ``make_port`` (the DHCP scheduler's flush hook places it)."""
    if attrs.get("device_owner", "") == "network:dhcp":
        return port_dict(make_port(tx, network, project, attrs))
    p, pairs_ips, groups = _new_port(tx, network, project, attrs)
    bind(tx, p, network)
    _insert(tx, p, pairs_ips, groups)
    return _view(tuple(getattr(p, n) for n in _VIEW_ORDER),
                 [{"subnet_id": sid, "ip_address": ip} for sid, ip in pairs_ips], groups)


def _new_port(tx: Tx, network: models.Network, project: str, attrs: dict[str, Any]
              ) -> tuple[models.Port, list[tuple[str, str]], list[str]]:
    """The checks of a new port, in Neutron's order, and its row (transient: stamped, not bound, not
    added), its addresses and its groups (checked, without duplicates)."""
    owner = attrs.get("device_owner", "")
    mac = attrs.get("mac_address")
    if mac is None:
        mac = _mac(tx, network.id)
    elif _mac_taken(tx, network.id, mac):
        raise conflict("MacAddressInUse", f"Unable to complete operation for network {network.id}. The mac "
                                          f"address {mac} is in use.")
    psec = attrs.get("port_security_enabled", network.port_security_enabled)
    groups = attrs.get("security_groups")
    pairs = attrs.get("allowed_address_pairs") or []
    if not psec:
        if groups:
            raise invalid("Port security must be enabled and port must have an IP address in order to use "
                          "security groups.", "PortSecurityAndIPRequiredForSecurityGroups")
        if pairs:
            raise conflict("AddressPairAndPortSecurityRequired", "Port Security must be enabled in order to have "
                                                                 "allowed address pairs on a port.")
        groups = []
    default_groups = groups is None
    if default_groups:
        groups = [] if owner.startswith("network:") else [default_group_id(tx, project)]
    subnets = list(network.subnets)
    pairs_ips = ipam.allocate_for_port(tx, network, subnets, attrs.get("fixed_ips"), mac,
                                       router_port=owner in ROUTER_OWNERS)
    if groups and not pairs_ips and attrs.get("fixed_ips") is not None and not owner.startswith("network:"):
        raise invalid("Port security must be enabled and port must have an IP address in order to use "
                      "security groups.", "PortSecurityAndIPRequiredForSecurityGroups")
    p = models.Port(
        id=attrs.get("id"), network_id=network.id, mac_address=mac, name=attrs.get("name", ""),
        description=attrs.get("description", ""), admin_state_up=attrs.get("admin_state_up", True),
        status=attrs.get("status", "DOWN"), device_id=attrs.get("device_id", ""), device_owner=owner,
        port_security_enabled=psec,
        allowed_address_pairs=[{"ip_address": x["ip_address"], "mac_address": x.get("mac_address", mac)}
                               for x in pairs],
        extra_dhcp_opts=extra_dhcp_opts_created(attrs.get("extra_dhcp_opts")),
        binding_host_id=attrs.get("binding:host_id", ""),
        binding_profile=attrs.get("binding:profile") or {}, binding_vnic_type=attrs.get("binding:vnic_type",
                                                                                          "normal"))
    stamp_new(tx, p, project, revision=1)
    return p, pairs_ips, _checked_groups(tx, groups or [], checked=default_groups)


_PORT_INSERT: Any = insert(models.Port)
_IP_INSERT: Any = insert(models.IPAllocation)
_SG_INSERT: Any = insert(models.PortSecurityGroup)


def _insert(tx: Tx, p: models.Port, pairs_ips: list[tuple[str, str]], groups: list[str]) -> None:
    """Write a new (transient) port, its addresses and its group bindings as Core inserts: what the
    ORM's flush of ``make_port``'s row would write, without its unit of work."""
    session = tx.session
    if session.new or session.deleted or session.dirty:
        session.flush()
    conn = session.connection()
    values = vars(p)  # what was set; a column left unset gets its default from the insert, as in a flush
    conn.execute(_PORT_INSERT, {c.key: values[c.key] for c in _PORT_ATTRS if c.key in values})
    if pairs_ips:
        conn.execute(_IP_INSERT, [{"subnet_id": sid, "ip_address": ip, "port_id": p.id, "network_id": p.network_id,
                                   "seq": i} for i, (sid, ip) in enumerate(pairs_ips)])
    if groups:
        conn.execute(_SG_INSERT, [{"port_id": p.id, "security_group_id": g, "seq": i} for i, g in enumerate(groups)])


_DHCP_PORT: Any = select(models.Port.id).where(models.Port.network_id == bindparam("network_id"),
                                               models.Port.device_owner == "network:dhcp").limit(1)


def ensure_dhcp_port(tx: Tx, network: models.Network, *, refresh: bool = False) -> None:
    """The network's DHCP port, created when the network gets its first instance port (as the DHCP
    agent did when it was scheduled to the network), with one address per DHCP-enabled subnet.
    ``refresh`` also gives an existing DHCP port an address on DHCP-enabled subnets it lacks."""
    dep = tx.deployment
    host = dep.network_host()
    if dep.mechanism is not Mechanism.ML2_OVS or host is None:
        return
    dhcp_subnets = [s for s in network.subnets if s.enable_dhcp and not ipam.is_slaac(s)]
    if not dhcp_subnets:
        return
    existing_id = _scalar(tx, _DHCP_PORT, {"network_id": network.id})
    if existing_id is not None:
        if not refresh:
            return
        existing = get_port_row(tx, existing_id)
        have = {a.subnet_id for a in existing.fixed_ips}
        missing = [s for s in dhcp_subnets if s.id not in have]
        if missing:
            extra = ipam.allocate_for_port(tx, network, missing, [{"subnet_id": s.id} for s in missing],
                                           existing.mac_address, ignore_port=existing.id)
            _set_ips(existing, [(a.subnet_id, a.ip_address) for a in existing.fixed_ips] + extra)
            bump(existing)
        return
    from neutrino.services import scheduling  # the agents' bindings: which host serves the network
    on = scheduling.dhcp_port_host(tx.session, network.id, host.name)
    try:
        make_port(tx, network, network.project_id, {
            "device_owner": "network:dhcp", "device_id": scheduling.dhcp_device_id(network.id, on),
            "binding:host_id": on,
            "fixed_ips": [{"subnet_id": s.id} for s in dhcp_subnets], "security_groups": []})
    except Exception as e:  # an exhausted subnet leaves the network without DHCP, as Neutron would
        if getattr(e, "neutron_type", None) != "IpAddressGenerationFailure":
            raise


def create_port(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    network = get_network_row(tx, attrs["network_id"])
    from neutrino.services import rbac
    if not rbac.network_accessible(tx, network):
        raise not_found("network", network.id)
    owner = attrs.get("device_owner", "")
    if owner in ROUTER_OWNERS and not tx.ctx.is_admin:
        raise invalid(f"Invalid device owner {owner}")
    _network_owner_only(tx, network, "create", attrs)
    view = _create_view(tx, network, project, attrs)
    if not owner.startswith("network:"):
        ensure_dhcp_port(tx, network)
    return view


def _network_owner_only(tx: Tx, network: models.Network, action: str, attrs: dict[str, Any]) -> None:
    """Neutron's policy: a port's allowed address pairs and port security are set by an admin or
    the network's owner only (a port on another project's shared network may not)."""
    if tx.ctx.is_admin or network.project_id == tx.ctx.project_id:
        return
    for attr in ("allowed_address_pairs", "port_security_enabled"):
        if attr in attrs and (attr != "allowed_address_pairs" or attrs[attr] or action == "update"):
            raise NotAuthorized(f"(rule:{action}_port and rule:{action}_port:{attr}) is disallowed by policy",
                                neutron_type="PolicyNotAuthorized")


# -- ports read as Core rows (listing): no ORM object per row, JSON columns decoded once per distinct text --

_PORTS: Any = models.Port.__table__
_PORT_ATTRS = tuple(models.Port.__mapper__.column_attrs)
_IPS: Any = models.IPAllocation.__table__
_SGS: Any = models.PortSecurityGroup.__table__
_JSON_COLUMNS = ("tags", "allowed_address_pairs", "extra_dhcp_opts", "binding_profile", "binding_vif_details")
# the order _view unpacks; the JSON columns read as their stored text (cast: psycopg would decode a
# json column itself, once per row), which _decoded turns into values once per distinct text
_VIEW_ORDER = ("id", "project_id", "description", "tags", "created_at", "updated_at", "revision_number", "name",
               "network_id", "admin_state_up", "mac_address", "status", "device_id", "device_owner",
               "port_security_enabled", "allowed_address_pairs", "extra_dhcp_opts", "binding_host_id",
               "binding_profile", "binding_vif_type", "binding_vif_details", "binding_vnic_type")
_PORT_COLUMNS = tuple(cast(_PORTS.c[n], Text).label(n) if n in _JSON_COLUMNS else _PORTS.c[n] for n in _VIEW_ORDER)
_DECODED: dict[str, Any] = {}


def _decoded(raw: Any) -> Any:
    """A JSON column's value from its text, decoded once per distinct text (most ports share ``[]``,
    ``{}`` and a few binding details). The cached value is shared: callers copy it, as port_dict does."""
    if not isinstance(raw, str):
        return raw
    value = _DECODED.get(raw)
    if value is None:
        value = json.loads(raw)
        if len(_DECODED) >= 4096:
            _DECODED.clear()
        _DECODED[raw] = value
    return value


def _port_views(tx: Tx, q: Any) -> list[dict[str, Any]]:
    """The API views of the ports ``q`` (a select of ``_PORT_COLUMNS``) selects, in its order: three
    statements (ports, their addresses, their groups) whatever the count, as the ORM's selectinload."""
    session = tx.session
    if session.new or session.deleted or session.dirty:
        session.flush()
    conn = session.connection()
    rows = conn.execute(q).all()
    if not rows:
        return []
    ids = q.with_only_columns(_PORTS.c.id)
    ips: dict[str, list[dict[str, str]]] = {}
    for port_id, subnet_id, ip in conn.execute(
            select(_IPS.c.port_id, _IPS.c.subnet_id, _IPS.c.ip_address).where(_IPS.c.port_id.in_(ids))
            .order_by(_IPS.c.seq)).all():
        ips.setdefault(port_id, []).append({"subnet_id": subnet_id, "ip_address": ip})
    groups: dict[str, list[str]] = {}
    for port_id, group_id in conn.execute(
            select(_SGS.c.port_id, _SGS.c.security_group_id).where(_SGS.c.port_id.in_(ids))
            .order_by(_SGS.c.seq)).all():
        groups.setdefault(port_id, []).append(group_id)
    return [_view(r, ips.get(r[0], []), groups.get(r[0], [])) for r in rows]


def _view(r: Any, fixed_ips: list[dict[str, str]], groups: list[str]) -> dict[str, Any]:
    """``port_dict`` of a Core row of ``_PORT_COLUMNS``."""
    (pid, project, description, tags, created_at, updated_at, revision, name, network_id, admin_state_up, mac,
     status, device_id, device_owner, psec, pairs, dhcp_opts, host, profile, vif_type, vif_details, vnic) = r
    return {
        "id": pid, "project_id": project, "tenant_id": project, "description": description,
        "tags": [] if tags == "[]" else list(_decoded(tags) or []), "created_at": created_at,
        "updated_at": updated_at, "revision_number": revision, "name": name, "network_id": network_id,
        "admin_state_up": admin_state_up, "mac_address": mac, "status": status, "device_id": device_id,
        "device_owner": device_owner, "fixed_ips": fixed_ips, "security_groups": groups,
        "port_security_enabled": psec,
        "allowed_address_pairs": [] if pairs == "[]" else [dict(x) for x in _decoded(pairs) or []],
        "extra_dhcp_opts": [] if dhcp_opts == "[]" else list(_decoded(dhcp_opts) or []), "binding:host_id": host,
        "binding:profile": {} if profile == "{}" else dict(_decoded(profile) or {}), "binding:vif_type": vif_type,
        "binding:vif_details": {} if vif_details == "{}" else dict(_decoded(vif_details) or {}),
        "binding:vnic_type": vnic, "ip_allocation": "immediate",
    }


def list_ports(tx: Tx, filters: dict[str, list[str]], page: Page | None = None) -> list[dict[str, Any]]:
    q = paged(tx, select(*_PORT_COLUMNS), models.Port, page)
    for key, col in (("id", models.Port.id), ("network_id", models.Port.network_id),
                     ("device_id", models.Port.device_id), ("device_owner", models.Port.device_owner),
                     ("name", models.Port.name), ("mac_address", models.Port.mac_address)):
        if key in filters:
            q = q.where(col.in_(filters[key]))
    if not tx.ctx.is_admin:
        own_nets = select(models.Network.id).where(models.Network.project_id == tx.ctx.project_id)
        q = q.where((models.Port.project_id == tx.ctx.project_id) | models.Port.network_id.in_(own_nets))
    return _port_views(tx, q)


def get_port(tx: Tx, port_id: str) -> dict[str, Any]:
    return port_dict(get_port_row(tx, port_id))


def update_port(tx: Tx, port_id: str, attrs: dict[str, Any], revision: int | None = None) -> dict[str, Any]:
    p = get_port_row(tx, port_id)
    check_revision(p, revision)
    network = get_network_row(tx, p.network_id) if tx.ctx.is_admin else tx.session.get(models.Network,
                                                                                       p.network_id)
    assert network is not None
    _network_owner_only(tx, network, "update", attrs)
    if "mac_address" in attrs and attrs["mac_address"] != p.mac_address:
        if p.binding_vif_type not in ("unbound", "binding_failed"):
            raise conflict("PortBound", f"Unable to complete operation on port {p.id}, port is already bound, "
                                        f"port type: {p.binding_vif_type}, old_mac {p.mac_address}, new_mac "
                                        f"{attrs['mac_address']}.")
        if _mac_taken(tx, p.network_id, attrs["mac_address"]):
            raise conflict("MacAddressInUse", f"Unable to complete operation for network {p.network_id}. The mac "
                                              f"address {attrs['mac_address']} is in use.")
        p.mac_address = attrs["mac_address"]
    psec = attrs.get("port_security_enabled", p.port_security_enabled)
    groups = attrs.get("security_groups")
    pairs = attrs.get("allowed_address_pairs")
    if not psec:
        current_groups = [b.security_group_id for b in p.sg_bindings] if groups is None else groups
        if current_groups:
            if groups:
                raise invalid("Port security must be enabled and port must have an IP address in order to use "
                              "security groups.", "PortSecurityAndIPRequiredForSecurityGroups")
            raise conflict("PortSecurityPortHasSecurityGroup", "Port has security group associated. Cannot disable "
                                                               "port security or IP address until security group "
                                                               "is removed")
        if pairs if pairs is not None else p.allowed_address_pairs:
            raise conflict("AddressPairAndPortSecurityRequired", "Port Security must be enabled in order to have "
                                                                 "allowed address pairs on a port.")
    p.port_security_enabled = psec
    if groups is not None:
        _set_groups(tx, p, groups)
    if pairs is not None:
        p.allowed_address_pairs = [{"ip_address": x["ip_address"], "mac_address": x.get("mac_address",
                                                                                      p.mac_address)}
                                   for x in pairs]
    if "fixed_ips" in attrs:
        requested = _reuse_held(p, attrs["fixed_ips"])
        _keep_fip_address(tx, p, requested)
        chosen = ipam.allocate_for_port(tx, network, list(network.subnets), requested, p.mac_address,
                                        router_port=p.device_owner in ROUTER_OWNERS, ignore_port=p.id)
        _set_ips(p, chosen)
    if attrs.get("extra_dhcp_opts"):
        p.extra_dhcp_opts = extra_dhcp_opts_updated(list(p.extra_dhcp_opts or []), attrs["extra_dhcp_opts"])
    for k in ("name", "description", "admin_state_up", "device_id", "device_owner"):
        if k in attrs:
            setattr(p, k, attrs[k])
    rebind = False
    if "binding:host_id" in attrs and attrs["binding:host_id"] != p.binding_host_id:
        p.binding_host_id = attrs["binding:host_id"]
        rebind = True
        if p.status == "ACTIVE":
            p.status = "DOWN"
    if "binding:profile" in attrs:
        p.binding_profile = attrs["binding:profile"]
    if "binding:vnic_type" in attrs:
        p.binding_vnic_type = attrs["binding:vnic_type"]
    if rebind:
        bind(tx, p, network)
    bump(p)
    tx.session.flush()
    if p.device_owner and not p.device_owner.startswith("network:"):
        ensure_dhcp_port(tx, network)
    return port_dict(p)


def _reuse_held(p: models.Port, requested: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Neutron's reading of a new ``fixed_ips``: an entry naming only a subnet on which the port
    already holds an address (not named elsewhere in the request) keeps that address, whatever the
    port's owner (a router interface keeps its gateway IP)."""
    if requested is None:
        return None
    named = {x.get("ip_address") for x in requested if x.get("ip_address") is not None}
    spare: dict[str, list[str]] = {}
    for a in p.fixed_ips:
        if a.ip_address not in named:
            spare.setdefault(a.subnet_id, []).append(a.ip_address)
    out = []
    for item in requested:
        sid = item.get("subnet_id")
        if item.get("ip_address") is None and sid is not None and spare.get(sid):
            item = {**item, "ip_address": spare[sid].pop()}
        out.append(item)
    return out


def _keep_fip_address(tx: Tx, p: models.Port, requested: list[dict[str, Any]] | None) -> None:
    """A port whose fixed IP carries a floating IP must keep that address (Neutron's L3 check)."""
    fip = tx.session.scalar(select(models.FloatingIP).where(models.FloatingIP.port_id == p.id).limit(1))
    if fip is None or not fip.fixed_ip_address:
        return
    if any(x.get("ip_address") == fip.fixed_ip_address for x in requested or []):
        return
    raise bad_request("port", f"Cannot update the fixed_ips of the port {p.id}, because its original fixed_ip "
                              "has been associated to a floating ip")


def delete_port(tx: Tx, port_id: str, revision: int | None = None, *, internal: bool = False) -> None:
    """``internal``: the router or floating-IP code deleting a port it manages, with elevated rights
    (Neutron's l3_db deletes the gateway and floating IP ports with an admin context)."""
    p: Any = service_port_row(tx, port_id) if internal else _port_head(tx, port_id)
    check_revision(p, revision)
    if not internal and p.device_owner in ROUTER_OWNERS:
        owner_exists = (tx.session.get(models.Router, p.device_id) is not None or
                        tx.session.get(models.FloatingIP, p.device_id) is not None)
        if owner_exists:
            raise conflict("ServicePortInUse", f"Port {p.id} cannot be deleted directly via the port API: has "
                                               f"device owner {p.device_owner}.")
    for fip in tx.session.scalars(select(models.FloatingIP).where(models.FloatingIP.port_id == p.id)).all():
        fip.port_id = None
        fip.fixed_ip_address = None
        fip.router_id = None
        fip.status = "DOWN"
        bump(fip)
    from neutrino.services.portforwardings import on_port_deleted  # its forwardings go with it
    on_port_deleted(tx, p.id)
    if internal:
        tx.session.delete(p)
        tx.session.flush()
        return
    session = tx.session
    session.flush()
    # one statement: the addresses and group bindings go with it (ON DELETE CASCADE)
    session.connection().execute(_PORT_DELETE, {"id": p.id})
    loaded = session.identity_map.get(session.identity_key(models.Port, p.id))
    if loaded is not None:  # a copy this transaction read before: it is gone, not to be flushed again
        session.expunge(loaded)


_HEAD: Any = select(_PORTS.c.id, _PORTS.c.project_id, _PORTS.c.network_id, _PORTS.c.device_owner,
                    _PORTS.c.device_id, _PORTS.c.revision_number).where(_PORTS.c.id == bindparam("id"))
_PORT_DELETE: Any = delete(_PORTS).where(_PORTS.c.id == bindparam("id"))


def _port_head(tx: Tx, port_id: str) -> Any:
    """What deleting a port reads of it (a Core row: id, owner, network, device, revision), found and
    visible as ``get_port_row`` would find it."""
    session = tx.session
    if session.new or session.deleted or session.dirty:
        session.flush()
    p: Any = session.connection().execute(_HEAD, {"id": port_id}).first()
    if p is None or not (visible(tx, p) or _network_owner_sees(tx, p)):
        raise not_found("port", port_id)
    return p


def set_port_status(tx: Tx, port_id: str, status: str) -> dict[str, Any]:
    """Mark a port ACTIVE/DOWN/... (called by the realizers once plumbing is in place or gone)."""
    if status not in PORT_STATUSES:
        raise invalid(f"Invalid port status {status}")
    p = get_port_row(tx, port_id)
    if p.status != status:
        p.status = status
        bump(p)
    return port_dict(p)
