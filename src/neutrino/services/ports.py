"""Ports: MACs, fixed IPs, security groups, port security, address pairs, binding and status."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Text, cast, select
from sqlalchemy.orm import selectinload

from neutrino.db import models
from neutrino.db.session import PORTS_VIEW, raw, session_connection
from neutrino.errors import NotAuthorized
from neutrino.scenarios.model import Mechanism
from neutrino.services import ipam, quotas
from neutrino.services.agents import ovs_agent_binds
from neutrino.services.attributes import extra_dhcp_opts_created, extra_dhcp_opts_updated
from neutrino.services.core import (
    Page,
    Tx,
    bad_request,
    bump,
    check_revision,
    conflict,
    invalid,
    new_id,
    new_mac,
    not_found,
    owner_for_create,
    paged,
    standard,
    timestamp,
    visible,
)
from neutrino.services.dvr import DVR_INTERFACE
from neutrino.services.ids import next_seq
from neutrino.services.networks import get_network_row
from neutrino.services.securitygroups import default_group_id, get_group_row
from neutrino.services.snapshot import BINDING_FAILED

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


def _network_owner_sees(tx: Tx, p: models.Port | _PortHead) -> bool:
    n = tx.session.get(models.Network, p.network_id)
    return n is not None and n.project_id == tx.ctx.project_id


def _mac(tx: Tx, network_id: str, first: tuple[str, bool] | None = None) -> str:
    """A MAC free on the network: the generator's next candidate, and the one after when it is taken.
    ``first``: the first candidate, taken from the generator and checked already (and whether taken)."""
    for i in range(16):
        if i == 0 and first is not None:
            mac, taken = first
        else:
            mac = new_mac(tx)
            taken = _mac_taken(tx, network_id, mac)
        if not taken:
            return mac
    raise conflict("MacAddressGenerationFailure", f"Unable to generate unique mac on network {network_id}.")


def _mac_taken(tx: Tx, network_id: str, mac: str) -> bool:
    return raw(tx.session).scalar("SELECT id FROM ports WHERE network_id = ? AND mac_address = ? LIMIT 1",
                                  (network_id, mac)) is not None


def bind(tx: Tx, p: models.Port, network: Any) -> None:
    """Bind a port to its host the way the mechanism driver would (vif type and details)."""
    p.binding_vif_type, p.binding_vif_details = _binding(tx, p.binding_host_id, network)


def _binding(tx: Tx, host: str, network: Any) -> tuple[str, dict[str, Any]]:
    """The vif type and details of a port bound to ``host`` on ``network``."""
    if not host:
        return "unbound", {}
    dep = tx.deployment
    h = dep.host(host)
    if h is None:
        return BINDING_FAILED, {}
    if dep.mechanism is Mechanism.NOVA_NETWORK:
        bridge = f"br{network.segmentation_id}" if network.network_type == "vlan" else "br100"
        return "bridge", {"port_filter": True, "bridge_name": bridge}
    if not ovs_agent_binds(dep, h, network.network_type, network.physical_network):
        return BINDING_FAILED, {}
    hybrid = dep.firewall_driver in ("iptables_hybrid", "iptables")
    return "ovs", {"port_filter": dep.firewall_driver != "noop", "ovs_hybrid_plug": hybrid, "bridge_name": "br-int",
                   "datapath_type": "system", "connectivity": "l2", "bound_drivers": {"0": "openvswitch"}}


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
    values, pairs_ips, groups = _new_port(tx, network, project, attrs)
    p = models.Port(**values)
    p.fixed_ips = []
    p.sg_bindings = []
    _set_ips(p, pairs_ips)
    p.sg_bindings = [models.PortSecurityGroup(port_id=p.id, security_group_id=g, seq=i) for i, g in enumerate(groups)]
    bind(tx, p, network)
    tx.session.add(p)
    tx.session.flush()
    return p


def _create_view(tx: Tx, network: Any, project: str, attrs: dict[str, Any], *, closing: bool = False
                 ) -> dict[str, Any]:
    """``port_dict(make_port(...))`` for the API's create: the same checks and row, written as three
    prepared inserts instead of the ORM's flush and shown from the values written. ``network`` is a
    ``_NetworkHead`` (or a network row). A DHCP port still goes through ``make_port`` (the DHCP
    scheduler's flush hook places it). ``closing``: nothing is written in the transaction after the
    port (``_insert``'s)."""
    if attrs.get("device_owner", "") == "network:dhcp":
        row = network if isinstance(network, models.Network) else tx.session.get(models.Network, network.id)
        assert row is not None  # read in this transaction
        return port_dict(make_port(tx, row, project, attrs))
    scanned: dict[str, str] = {}
    values, pairs_ips, groups = _new_port(tx, network, project, attrs, scanned)
    values["binding_vif_type"], values["binding_vif_details"] = _binding(tx, values["binding_host_id"], network)
    starts = _scan_starts(network, scanned)
    # shown before it is written: with ``closing`` the insert may commit the transaction
    view = _view(_VIEW_VALUES(values), [{"subnet_id": sid, "ip_address": ip} for sid, ip in pairs_ips], groups)
    _insert(tx, values, pairs_ips, groups, starts, closing=closing)
    return view


def _new_port(tx: Tx, network: Any, project: str, attrs: dict[str, Any], scanned: dict[str, str] | None = None
              ) -> tuple[dict[str, Any], list[tuple[str, str]], list[str]]:
    """The checks of a new port, in Neutron's order, and its column values (stamped, not bound), its
    addresses and its groups (checked, without duplicates). ``network``: a network row or a
    ``_NetworkHead`` (id, port_security_enabled, subnets). ``scanned``: filled as
    ``ipam.allocate_for_port`` fills it."""
    owner = attrs.get("device_owner", "")
    mac = attrs.get("mac_address")
    checked = network.mac if isinstance(network, _NetworkHead) else None  # read with the network
    if mac is None:
        mac = _mac(tx, network.id, checked)
    elif checked[1] if checked is not None and checked[0] == mac else _mac_taken(tx, network.id, mac):
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
        known = network.default_group_id if isinstance(network, _NetworkHead) else None
        groups = [] if owner.startswith("network:") else [known or default_group_id(tx, project)]
    subnets = list(network.subnets)
    joined = {s.id: s.used(tx) for s in subnets} if isinstance(network, _NetworkHead) else None
    pairs_ips = ipam.allocate_for_port(tx, network, subnets, attrs.get("fixed_ips"), mac,
                                       router_port=owner in ROUTER_OWNERS, joined=joined, scanned=scanned)
    if groups and not pairs_ips and attrs.get("fixed_ips") is not None and not owner.startswith("network:"):
        raise invalid("Port security must be enabled and port must have an IP address in order to use "
                      "security groups.", "PortSecurityAndIPRequiredForSecurityGroups")
    values: dict[str, Any] = {
        "network_id": network.id, "mac_address": mac, "name": attrs.get("name", ""),
        "description": attrs.get("description", ""), "admin_state_up": attrs.get("admin_state_up", True),
        "status": attrs.get("status", "DOWN"), "device_id": attrs.get("device_id", ""), "device_owner": owner,
        "port_security_enabled": psec,
        "allowed_address_pairs": [{"ip_address": x["ip_address"], "mac_address": x.get("mac_address", mac)}
                                  for x in pairs],
        "extra_dhcp_opts": extra_dhcp_opts_created(attrs.get("extra_dhcp_opts")),
        "binding_host_id": attrs.get("binding:host_id", ""),
        "binding_profile": attrs.get("binding:profile") or {},
        "binding_vnic_type": attrs.get("binding:vnic_type", "normal")}
    # core.stamp_new's standard attributes, in its order (the id first, then the creation sequence)
    t = timestamp()
    values["id"] = attrs.get("id") or new_id(tx, models.Port)
    # the API's create (``scanned`` given) numbers it in its insert (``_PORT_INSERT_SQL``)
    values["created_seq"] = next_seq(tx.session) if scanned is None else None
    values.update(project_id=project, created_at=t, updated_at=t, revision_number=1, tags=[])
    return values, pairs_ips, _checked_groups(tx, groups or [], checked=default_groups)


_PORT_COLUMN_NAMES = tuple(c.key for c in models.Port.__mapper__.column_attrs if c.key != "created_seq")
# the creation sequence's next number taken in the insert itself; a trigger moves the counter on
# (``neutrino_created_seq``: to a row's number when it is past the counter): the number ``next_seq``
# would have given, one statement less
_PORT_INSERT_SQL = (f"INSERT INTO ports ({', '.join(_PORT_COLUMN_NAMES)}, created_seq) "
                    f"VALUES ({', '.join('?' for _ in _PORT_COLUMN_NAMES)}, "
                    "COALESCE((SELECT value FROM neutrino_counters WHERE name = 'created_seq'), 0) + 1)")
_JSON_COLUMN_SET = frozenset(("tags", "allowed_address_pairs", "extra_dhcp_opts", "binding_profile",
                              "binding_vif_details"))
_PORT_INSERT_VALUES = itemgetter(*_PORT_COLUMN_NAMES)  # a row of _PORT_INSERT_SQL from the column values


SCAN_AHEAD = 16  # the addresses after a scan start that the network's statement looks up


def _scan_starts(network: Any, scanned: dict[str, str]) -> list[tuple[Any, ...]]:
    """The ``ipam_next`` rows to write after this port's lowest-free picks: where the scan of each
    subnet may next start (after the address just taken: every one before it was taken, and now it
    is too) and the ``SCAN_AHEAD`` addresses from there. A start read with the network stays true
    (only deletes make it false, and they delete it): it is moved on only once the pick is past half
    of its addresses looked ahead, so most creates write nothing more."""
    if not scanned or not isinstance(network, _NetworkHead):
        return []
    rows = []
    for s in network.subnets:
        ip = scanned.get(s.id)
        if ip is None or (s.start is not None and ip in s.ahead[:SCAN_AHEAD // 2]):
            continue
        start = ipam.next_after(s, ip)
        rows.append((s.id, s.pools_text, start[0], start[1],
                     json.dumps(ipam.scan_from(s, start, SCAN_AHEAD), separators=(",", ":"))))
    return rows


_SCAN_START_SQL = ("INSERT INTO ipam_next (subnet_id, pools, pool_index, ip_address, ahead) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT (subnet_id) DO UPDATE SET pools = excluded.pools, pool_index = excluded.pool_index, "
                   "ip_address = excluded.ip_address, ahead = excluded.ahead")


def _json_text(value: Any) -> str:
    """``json.dumps(value)`` (what SQLAlchemy's JSON type writes), the empty list and mapping without it."""
    if not value:
        t = type(value)
        if t is list or t is dict:  # (subclasses too, below)
            return "[]" if t is list else "{}"
        if isinstance(value, list | dict):
            return "[]" if isinstance(value, list) else "{}"
    return json.dumps(value)


def _insert(tx: Tx, values: dict[str, Any], pairs_ips: list[tuple[str, str]], groups: list[str],
            scan_starts: list[tuple[Any, ...]] | None = None, *, closing: bool = False) -> None:
    """Write a new port, its addresses and its group bindings as prepared inserts (in one round trip
    on PostgreSQL): what the ORM's flush of ``make_port``'s row would write (JSON columns as
    ``json.dumps`` text, as SQLAlchemy's JSON type writes them), without its unit of work.
    ``closing``: the transaction writes nothing after this (on PostgreSQL it may commit with it:
    ``Raw.write_all``)."""
    pid, nid = values["id"], values["network_id"]
    columns = dict(values)
    for k in _JSON_COLUMN_SET:
        columns[k] = _json_text(columns[k])
    statements: list[tuple[str, list[tuple[Any, ...]]]] = [(_PORT_INSERT_SQL, [_PORT_INSERT_VALUES(columns)])]
    if pairs_ips:
        statements.append(("INSERT INTO ipallocations (subnet_id, ip_address, port_id, network_id, seq) "
                           "VALUES (?, ?, ?, ?, ?)", [(sid, ip, pid, nid, i) for i, (sid, ip) in enumerate(pairs_ips)]))
    if groups:
        statements.append(("INSERT INTO port_security_groups (port_id, security_group_id, seq) VALUES (?, ?, ?)",
                           [(pid, g, i) for i, g in enumerate(groups)]))
    if scan_starts:
        statements.append((_SCAN_START_SQL, scan_starts))
    # one statement on PostgreSQL: none reads what another writes (the addresses' and groups' foreign
    # keys to the port are checked at the statement's end, when it is there)
    raw(tx.session).write_all(statements, together=True, closing=closing)


_DHCP_PORT = "SELECT id FROM ports WHERE network_id = ? AND device_owner = 'network:dhcp' LIMIT 1"


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
    existing_id = raw(tx.session).scalar(_DHCP_PORT, (network.id,))
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


def create_port(tx: Tx, attrs: dict[str, Any], quota_project: str | None = None, *, last: bool = False
                ) -> dict[str, Any]:
    """A new port (the API's create). ``quota_project``: the port quota of that project is checked
    first, as ``quotas.check(tx, quota_project, "port")`` before this would, read with the network's
    statement (one statement less; the reads have no side effects, and the generator's MAC counter
    moved before the checks is rolled back with the transaction when they refuse).

    ``last``: the caller's transaction does nothing more once this returns (the API's single create,
    ``neutron.py`` ``_create``). When the port's insert is then the last write (no DHCP port to make,
    the ORM unused: nothing for the session to flush), it is marked ``closing``, and on PostgreSQL
    the transaction commits with it (``Raw.write_all``; a statement after it is refused, never run
    outside the transaction)."""
    if quota_project is None:
        project = owner_for_create(tx, attrs)
    else:  # the owner ``owner_for_create`` gives, checked after the quota as before
        project = attrs.get("project_id") or tx.ctx.project_id
    mac = attrs.get("mac_address")
    if mac is None and attrs.get("device_owner", "") != "network:dhcp":
        # the generator's first candidate, checked with the network's statement (a seeded generator's
        # counter moves earlier than it did, inside the same transaction: the same values either way)
        mac = new_mac(tx)
    asked = _asked(attrs)
    rows = _network_head_rows(tx, attrs["network_id"], project, mac, quota_project, asked)
    if quota_project is not None:
        quotas.refuse_over("port", rows[0][_QUOTA_AT], rows[0][_QUOTA_AT + 1])
        owner_for_create(tx, attrs)
    network = _network_head(tx, attrs["network_id"], rows, mac, asked)
    from neutrino.services import rbac
    if not rbac.network_accessible(tx, network):  # type: ignore[arg-type]  # reads id, project_id, shared
        raise not_found("network", network.id)
    owner = attrs.get("device_owner", "")
    if owner in ROUTER_OWNERS and not tx.ctx.is_admin:
        raise invalid(f"Invalid device owner {owner}")
    _network_owner_only(tx, network, "create", attrs)
    dhcp = not owner.startswith("network:") and _dhcp_port_wanted(tx, network)
    session = tx.session
    closing = last and not dhcp and not (
        session.identity_map or session.new or session.deleted or session.in_transaction())
    view = _create_view(tx, network, project, attrs, closing=closing)
    if dhcp:
        row = tx.session.get(models.Network, network.id)
        assert row is not None
        ensure_dhcp_port(tx, row)
    return view


@dataclass(frozen=True, slots=True)
class _SubnetHead:
    """What creating a port reads of a subnet (IPAM's attributes and ``enable_dhcp``)."""

    id: str
    ip_version: int
    cidr: str
    allocation_pools: list[dict[str, str]]
    enable_dhcp: bool
    ipv6_address_mode: str | None
    pools_text: str  # ``allocation_pools`` as stored (what an ``ipam_next`` row is written for)
    # its taken addresses (joined by commas, as ``ipam.allocated`` reads them): all of them without a
    # scan start, else those of the addresses looked ahead
    taken: str | None
    start: tuple[int, str] | None  # its ``ipam_next`` position (every pool address before it is taken)
    ahead: tuple[str, ...]  # the addresses of the scan from ``start`` the statement looked up
    asked: tuple[str, ...]  # the addresses the port asks for (``fixed_ips``), looked up with them

    def used(self, tx: Tx) -> ipam.Used:
        """IPAM's view of the subnet's taken addresses: all of them, or from the scan start on, the
        ones looked ahead or asked for known and any other looked up when asked."""
        taken = set(self.taken.split(",")) if self.taken else set()
        if self.start is None:
            return ipam.Used(taken)
        return ipam.Used(taken, start=self.start, tx=tx, subnet_id=self.id, checked=self.ahead + self.asked)


@dataclass(frozen=True, slots=True)
class _NetworkHead:
    """What creating a port reads of its network: the columns the checks, IPAM and the binding use, and
    its subnets in the order ``Network.subnets`` keeps (``created_seq``)."""

    id: str
    project_id: str
    shared: bool
    external: bool
    port_security_enabled: bool
    network_type: str
    physical_network: str | None
    segmentation_id: int | None
    subnets: tuple[_SubnetHead, ...]
    dhcp_port_id: str | None  # the network's DHCP port, if it has one
    default_group_id: str | None  # the new port's project's default security group, if it has one
    mac: tuple[str, bool] | None  # the new port's MAC (asked for or the first candidate), and whether taken


def _network_head_sql(aggregate: str, ahead: str) -> str:
    return ("SELECT n.id, n.project_id, n.shared, n.external, n.port_security_enabled, n.network_type, "
            "n.physical_network, n.segmentation_id, (SELECT p.id FROM ports p WHERE p.network_id = n.id AND "
            "p.device_owner = 'network:dhcp' LIMIT 1), "
            "(SELECT g.id FROM security_groups g WHERE g.project_id = ? AND g.is_default = ?), "
            "EXISTS (SELECT 1 FROM ports m WHERE m.network_id = n.id AND m.mac_address = ?), "
            "s.id, s.ip_version, s.cidr, CAST(s.allocation_pools AS TEXT), s.enable_dhcp, s.ipv6_address_mode, "
            f"CASE WHEN h.subnet_id IS NULL THEN (SELECT {aggregate}(a.ip_address, ',') FROM ipallocations a "
            f"WHERE a.subnet_id = s.id) ELSE (SELECT {aggregate}(x.ip, ',') FROM {ahead} "
            "WHERE (SELECT 1 FROM ipallocations t WHERE t.subnet_id = s.id AND t.ip_address = x.ip) IS NOT NULL) "
            "END, "
            "h.pool_index, h.ip_address, h.ahead, q.quota_limit, q.quota_used "
            # the port quota's limit and usage (``quotas.check``'s): one row even without the network
            """FROM (SELECT (SELECT "limit" FROM quotas WHERE project_id = ? AND resource = 'port') AS quota_limit, """
            "(SELECT ports FROM port_usage WHERE project_id = ?) AS quota_used) q "
            "LEFT OUTER JOIN networks n ON n.id = ? LEFT OUTER JOIN subnets s ON s.network_id = n.id "
            "LEFT OUTER JOIN ipam_next h ON h.subnet_id = s.id AND h.pools = CAST(s.allocation_pools AS TEXT) "
            "ORDER BY s.created_seq")


_QUOTA_AT = 21  # the quota's limit and usage in a row of _NETWORK_HEAD


# the addresses looked ahead (``x.ip``), each looked up in the allocations' primary key (a scalar
# subquery: PostgreSQL would turn an EXISTS or IN into a join reading every allocation of the subnet)
_NETWORK_HEAD = {False: _network_head_sql("group_concat", "(SELECT value AS ip FROM json_each(h.ahead)) x"),
                 True: _network_head_sql("string_agg", "json_array_elements_text(CAST(h.ahead AS json)) AS x(ip)")}
# the same with the addresses a port asks for (``fixed_ips``; a JSON array, the 4th parameter) looked up
# beside them: IPAM's check that each is free then needs no statement of its own, which on PostgreSQL
# would come between the network's statement and the insert and so keep the COMMIT from going with it
_NETWORK_HEAD_ASKED = {
    False: _network_head_sql("group_concat", "(SELECT value AS ip FROM json_each(h.ahead) "
                                             "UNION ALL SELECT value FROM json_each(?)) x"),
    True: _network_head_sql("string_agg", "(SELECT json_array_elements_text(CAST(h.ahead AS json)) "
                                          "UNION ALL SELECT json_array_elements_text(CAST(? AS json))) AS x(ip)")}


def _asked(attrs: dict[str, Any]) -> tuple[str, ...]:
    """The addresses ``fixed_ips`` asks for, as given: the body's validation (``to_ip``) wrote them as
    IPAM checks them (``str(ip_address(...))``). Another spelling would only be looked up for nothing
    (IPAM asks about the address as it writes it, and looks that up itself)."""
    return tuple(ip for item in attrs.get("fixed_ips") or () if isinstance(ip := item.get("ip_address"), str))


def _network_head_rows(tx: Tx, network_id: str, project: str, mac: str | None, quota_project: str | None,
                       asked: tuple[str, ...] = ()) -> list[Any]:
    """``get_network_row`` and its subnets in one prepared statement, as plain values (no ORM objects),
    with what the port's checks read next (its DHCP port, ``project``'s default group, whether ``mac``
    is taken on it, each subnet's taken addresses, ``quota_project``'s port quota: reads without side
    effects, in the transaction that then writes the port, so reading them first changes no answer).
    ``asked``: addresses whose being taken is read too (in each subnet that has a scan start; the
    others' taken addresses are read in full). At least one row: the network's columns are None when
    it does not exist."""
    db = raw(tx.session)
    # (the transaction's first statement when nothing came before it: on PostgreSQL its BEGIN and
    # writer lock go with it)
    if asked:
        return db.all_opening(_NETWORK_HEAD_ASKED[db.postgres], (
            project, True, mac, json.dumps(asked), quota_project, quota_project, network_id))
    return db.all_opening(_NETWORK_HEAD[db.postgres], (project, True, mac, quota_project, quota_project, network_id))


def _network_head(tx: Tx, network_id: str, rows: list[Any], mac: str | None, asked: tuple[str, ...] = ()
                  ) -> _NetworkHead:
    """The network of ``_network_head_rows``: not found unless it exists and the caller sees it."""
    if rows[0][0] is None:
        raise not_found("network", network_id)
    nid, owner, shared, external, psec, ntype, physnet, seg, dhcp_port, group, mac_taken = rows[0][:11]
    subnets = tuple(_SubnetHead(sid, version, cidr, _decoded(pools), bool(dhcp), mode, pools, taken,
                                None if index is None else (index, start), tuple(orjson.loads(ahead or "[]")), asked)
                    for sid, version, cidr, pools, dhcp, mode, taken, index, start, ahead in
                    (r[11:_QUOTA_AT] for r in rows) if sid is not None)
    head = _NetworkHead(nid, owner, bool(shared), bool(external), bool(psec), ntype, physnet, seg, subnets, dhcp_port, group,
                        None if mac is None else (mac, bool(mac_taken)))
    from neutrino.services import rbac
    if not rbac.network_visible(tx, head):  # type: ignore[arg-type]  # reads id, project_id, shared, external
        raise not_found("network", network_id)
    return head


def _dhcp_port_wanted(tx: Tx, network: _NetworkHead) -> bool:
    """Whether ``ensure_dhcp_port`` would make the network's DHCP port, for a network read as a
    ``_NetworkHead`` (whose DHCP port, read with it before this request's port was added, is still
    the one: that port is not a DHCP port); then its row is loaded and it is called."""
    if network.dhcp_port_id is not None:
        return False
    dep = tx.deployment
    if dep.mechanism is not Mechanism.ML2_OVS or dep.network_host() is None:
        return False
    return any(s.enable_dhcp and not ipam.is_slaac(s) for s in network.subnets)  # type: ignore[arg-type]


def _network_owner_only(tx: Tx, network: Any, action: str, attrs: dict[str, Any]) -> None:
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
_VIEW_VALUES = itemgetter(*_VIEW_ORDER)  # a row of _PORT_COLUMNS from the column values
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


# -- the API's listing as JSON: rows straight from the driver, each port's JSON made once per content --

_SQL_FILTERS = ("id", "network_id", "device_id", "device_owner", "name", "mac_address")
_ROW_SQL = ", ".join(f"CAST({n} AS TEXT)" if n in _JSON_COLUMNS else n for n in _VIEW_ORDER)
_ADMIN_STATE, _PSEC = _VIEW_ORDER.index("admin_state_up"), _VIEW_ORDER.index("port_security_enabled")
_JSON_AT = tuple(i for i, n in enumerate(_VIEW_ORDER) if n in _JSON_COLUMNS)
_FRAGMENTS: dict[tuple[Any, ...], bytes] = {}
_MAX_FRAGMENTS = 50_000


def list_ports_json(tx: Tx, filters: dict[str, list[str]], page: Page | None, hidden: frozenset[str]
                    ) -> list[tuple[str, bytes]]:
    """``list_ports`` as each port's id and its JSON (``hidden``: the attributes the caller may not
    read, left out), byte for byte what ``json.dumps(view, separators=(",", ":"))`` gives.

    The same three statements as ``list_ports``, as SQL text run on the driver (no SQLAlchemy result
    rows). A port's JSON is kept keyed by everything it is made from (its row as read, its addresses,
    its groups and ``hidden``), so an unchanged port is not shown and encoded again, and a changed one
    cannot be served from the old text.

    In a read-only transaction the whole answer is kept too, keyed by what the transaction sees (read
    first, in the same snapshot as the rows): on SQLite the database's ``ports_view`` change marker
    (bumped by triggers in every transaction that changes a port, its addresses or groups or a
    network's owner, from this process or any other), on PostgreSQL the transaction's snapshot
    itself; and by the caller's visibility, the query and ``hidden``. An unchanged database gives the
    same answer to the same question, and any change gives another key."""
    db = raw(tx.session)
    key: tuple[Any, ...] | None = None
    conn = session_connection(tx.session)
    if not conn.info.get("writer"):  # a marker a write transaction bumped may yet be rolled back
        marker = db.scalar(_SNAPSHOT_SQL if db.postgres else _MARKER_SQL)
        if marker is not None:
            key = (id(conn.engine), str(conn.engine.url), marker, tx.ctx.is_admin,
                   None if tx.ctx.is_admin else tx.ctx.project_id,
                   tuple((k, tuple(v)) for k, v in sorted(filters.items())),
                   None if page is None else (page.limit, page.marker, page.reverse), hidden)
            kept = _LISTINGS.get(key)
            if kept is not None:
                return list(kept)
    out = _list_ports_json(tx, filters, page, hidden)
    if key is not None:
        if len(_LISTINGS) >= _MAX_LISTINGS:
            _LISTINGS.clear()
        _LISTINGS[key] = tuple(out)
    return out


_MARKER_SQL = f"SELECT value FROM neutrino_markers WHERE name = '{PORTS_VIEW}'"
# PostgreSQL: the read transaction's snapshot (REPEATABLE READ: taken by this, its first statement),
# which determines what every later statement of it sees; another once any transaction commits. With
# the server's start time: transaction ids start again only in a new cluster, which a restart shows
_SNAPSHOT_SQL = "SELECT CAST(pg_current_snapshot() AS TEXT) || ' ' || CAST(pg_postmaster_start_time() AS TEXT)"
_LISTINGS: dict[tuple[Any, ...], tuple[tuple[str, bytes], ...]] = {}
_MAX_LISTINGS = 32


def _list_ports_json(tx: Tx, filters: dict[str, list[str]], page: Page | None, hidden: frozenset[str]
                     ) -> list[tuple[str, bytes]]:
    """``list_ports_json`` without the kept answers."""
    if page is not None and page.marker is not None and \
            raw(tx.session).scalar("SELECT id FROM ports WHERE id = ?", (page.marker,)) is None:
        raise not_found("port", page.marker)
    where: list[str] = []
    params: list[Any] = []
    for key in _SQL_FILTERS:
        if key in filters:
            where.append(f"{key} IN ({', '.join('?' for _ in filters[key])})")
            params.extend(filters[key])
    if not tx.ctx.is_admin:
        where.append("(project_id = ? OR network_id IN (SELECT id FROM networks WHERE project_id = ?))")
        params += [tx.ctx.project_id, tx.ctx.project_id]
    if page is None:
        tail = " ORDER BY created_seq"
    else:
        if page.marker is not None:
            where.append("id < ?" if page.reverse else "id > ?")
            params.append(page.marker)
        tail = f" ORDER BY id{' DESC' if page.reverse else ''} LIMIT {int(page.limit) + 1}"
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    selected = f"SELECT id FROM ports{cond}{tail}"
    db = raw(tx.session)
    rows = db.all(f"SELECT {_ROW_SQL} FROM ports{cond}{tail}", params)
    if not rows:
        return []
    in_selected = "" if page is None and not where else f" WHERE port_id IN ({selected})"
    ips: dict[str, list[tuple[str, str]]] = {}
    for port_id, subnet_id, ip in db.execute(
            f"SELECT port_id, subnet_id, ip_address FROM ipallocations{in_selected} ORDER BY seq", params):
        ips.setdefault(port_id, []).append((subnet_id, ip))
    groups: dict[str, list[str]] = {}
    for port_id, group_id in db.execute(
            f"SELECT port_id, security_group_id FROM port_security_groups{in_selected} ORDER BY seq", params):
        groups.setdefault(port_id, []).append(group_id)
    if len(_FRAGMENTS) > _MAX_FRAGMENTS:
        _FRAGMENTS.clear()
    out = []
    for r in rows:
        pid = r[0]
        mine, in_groups = tuple(ips.get(pid, ())), tuple(groups.get(pid, ()))
        content = (r, mine, in_groups, hidden)
        data = _FRAGMENTS.get(content)
        if data is None:
            data = _FRAGMENTS[content] = _port_json(r, mine, in_groups, hidden)
        out.append((pid, data))
    return out


def _port_json(r: tuple[Any, ...], ips: tuple[tuple[str, str], ...], groups: tuple[str, ...],
               hidden: frozenset[str]) -> bytes:
    """The JSON of one port's view (``hidden`` left out), as ``json.dumps(..., separators=(",", ":"))``
    writes it: orjson's when it is the same bytes, the standard library's otherwise. They differ
    only on non-ASCII text and DEL (escaped by json.dumps), floats with a negative exponent (json.dumps
    writes ``1e-07``; only a JSON column's value can hold a float, and its stored text, written by
    json.dumps, then has ``e-``) and integers past 64 bits (orjson refuses them)."""
    row = list(r)
    row[_ADMIN_STATE], row[_PSEC] = bool(row[_ADMIN_STATE]), bool(row[_PSEC])  # SQLite's integers
    view = _view(row, [{"subnet_id": s, "ip_address": ip} for s, ip in ips], list(groups))
    if hidden:
        view = {k: v for k, v in view.items() if k not in hidden}
    if not any(isinstance(r[i], str) and ("e-" in r[i] or "E-" in r[i]) for i in _JSON_AT):
        try:
            data = orjson.dumps(view)
        except orjson.JSONEncodeError:
            pass
        else:
            if data.isascii() and b"\x7f" not in data:
                return data
    return json.dumps(view, separators=(",", ":")).encode()


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
        if p.binding_vif_type not in ("unbound", BINDING_FAILED):
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
    # a distributed interface is bound per host by the L3 agents, never at the port: ML2's
    # _process_port_binding keeps its host "" (it stays distributed)
    if "binding:host_id" in attrs and attrs["binding:host_id"] != p.binding_host_id \
            and p.device_owner != DVR_INTERFACE:
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


def delete_port(tx: Tx, port_id: str, revision: int | None = None, *, internal: bool = False,
                last: bool = False, check: Callable[[_PortHead], None] | None = None) -> None:
    """``internal``: the router or floating-IP code deleting a port it manages, with elevated rights
    (Neutron's l3_db deletes the gateway and floating IP ports with an admin context). ``last``: the
    caller's transaction does nothing more once this returns (the API's single delete, ``neutron.py``);
    on PostgreSQL, when nothing ran between the port's head (the transaction's opening statement) and
    its ``DELETE`` (no floating IP, forwarding or router owner to look at), the ``DELETE`` commits in
    the same round trip (``Raw.write_all(..., closing=True)``). ``check``: the caller's policy check,
    given the port's head once it is found and visible, before anything else is checked (the API's
    delete by a non-admin, ``neutron.py``)."""
    p: Any = service_port_row(tx, port_id) if internal else _port_head(tx, port_id)
    if check is not None:
        check(p)
    check_revision(p, revision)
    if not internal and p.device_owner in ROUTER_OWNERS:
        owner_exists = (tx.session.get(models.Router, p.device_id) is not None or
                        tx.session.get(models.FloatingIP, p.device_id) is not None)
        if owner_exists:
            raise conflict("ServicePortInUse", f"Port {p.id} cannot be deleted directly via the port API: has "
                                               f"device owner {p.device_owner}.")
    if internal or p.has_fips:
        for fip in tx.session.scalars(select(models.FloatingIP).where(models.FloatingIP.port_id == p.id)).all():
            fip.port_id = None
            fip.fixed_ip_address = None
            fip.router_id = None
            fip.status = "DOWN"
            bump(fip)
    if internal or p.has_forwardings:
        from neutrino.services.portforwardings import on_port_deleted  # its forwardings go with it
        on_port_deleted(tx, p.id)
    if internal:
        tx.session.delete(p)
        tx.session.flush()
        return
    session = tx.session
    # one statement: the addresses and group bindings go with it (ON DELETE CASCADE)
    db = raw(session)
    if last and db.postgres and not (p.has_fips or p.has_forwardings or p.device_owner in ROUTER_OWNERS):
        db.write_all([(_DELETE, [(p.id,)])], together=True, closing=True)
    else:
        db.execute(_DELETE, (p.id,))
    loaded = session.identity_map.get(session.identity_key(models.Port, p.id))
    if loaded is not None:  # a copy this transaction read before: it is gone, not to be flushed again
        session.expunge(loaded)


class _PortHead(NamedTuple):
    """What deleting a port reads of it, and whether floating IPs or port forwardings point at it."""

    id: str
    project_id: str
    network_id: str
    device_owner: str
    device_id: str
    revision_number: int
    has_fips: bool
    has_forwardings: bool


_HEAD = ("SELECT id, project_id, network_id, device_owner, device_id, revision_number, "
         "EXISTS (SELECT 1 FROM floatingips WHERE floatingips.port_id = ports.id), "
         "EXISTS (SELECT 1 FROM portforwardings WHERE portforwardings.internal_port_id = ports.id) "
         "FROM ports WHERE id = ?")


_DELETE = "DELETE FROM ports WHERE id = ?"


def _port_head(tx: Tx, port_id: str) -> _PortHead:
    """What deleting a port reads of it (one prepared statement: id, owner, network, device, revision,
    whether floating IPs or forwardings use it), found and visible as ``get_port_row`` would find it.
    On PostgreSQL, as the write transaction's first statement, it goes with BEGIN and the writer lock
    (``Raw.all_opening``)."""
    db = raw(tx.session)
    if db.postgres:
        rows = db.all_opening(_HEAD, (port_id,))
        row = rows[0] if rows else None
    else:
        row = db.one(_HEAD, (port_id,))
    p = None if row is None else _PortHead(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]),
                                           bool(row[7]))
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
