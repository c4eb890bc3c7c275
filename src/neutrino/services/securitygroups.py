"""Security groups and rules: the per-project default group, rule validation, duplicates."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import func, select

from neutrino.db import models
from neutrino.db.session import raw
from neutrino.errors import NotAuthorized
from neutrino.services import quotas, rbac
from neutrino.services.attributes import PROTOCOLS
from neutrino.services.core import (
    Tx,
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

PORT_PROTOCOLS = {"tcp", "udp", "udplite", "sctp", "dccp", "6", "17", "136", "132", "33"}
ICMP_PROTOCOLS = {"icmp", "ipv6-icmp", "icmpv6", "1", "58"}
IPV6_ONLY = {"ipv6-encap", "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts", "ipv6-route",
             "41", "43", "44", "58", "59", "60"}


def rule_dict(r: models.SecurityGroupRule, default_sg: bool) -> dict[str, Any]:
    d = standard(r)
    d.update({
        "security_group_id": r.security_group_id, "direction": r.direction, "ethertype": r.ethertype,
        "protocol": r.protocol, "port_range_min": r.port_range_min, "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix, "remote_group_id": r.remote_group_id,
        "remote_address_group_id": None, "normalized_cidr": _normalized(r.remote_ip_prefix),
        "belongs_to_default_sg": default_sg,
    })
    return d


def _normalized(prefix: str | None) -> str | None:
    """The network a rule's prefix names, host bits cleared (10.0.0.34/24 is 10.0.0.0/24)."""
    return None if prefix is None else str(ipaddress.ip_network(prefix, strict=False))


def group_dict(g: models.SecurityGroup, shared: bool = False) -> dict[str, Any]:
    """``shared``: whether an RBAC policy shares the group with the caller's project (or everyone)."""
    d = standard(g)
    d.update({"name": g.name, "stateful": g.stateful, "shared": shared,
              "security_group_rules": [rule_dict(r, g.is_default) for r in g.rules]})
    return d


def _new_rule(tx: Tx, g: models.SecurityGroup, seq: int, direction: str, ethertype: str, **kw: Any
              ) -> models.SecurityGroupRule:
    r = models.SecurityGroupRule(seq=seq, direction=direction, ethertype=ethertype, name="", description="",
                                 **kw)
    stamp_new(tx, r, g.project_id, revision=0)
    return r


def _next_seq(tx: Tx) -> int:
    return (tx.session.scalar(select(func.max(models.SecurityGroupRule.seq))) or 0) + 1


def default_group_id(tx: Tx, project_id: str) -> str:
    """The id of the project's ``default`` group (created if missing), without loading the group."""
    gid = raw(tx.session).scalar("SELECT id FROM security_groups WHERE project_id = ? AND is_default = ?",
                                 (project_id, True))
    return str(gid) if gid is not None else ensure_default_group(tx, project_id).id


def ensure_default_group(tx: Tx, project_id: str) -> models.SecurityGroup:
    """The project's ``default`` group, created with Neutron's four template rules if missing."""
    g = tx.session.scalar(select(models.SecurityGroup).where(models.SecurityGroup.project_id == project_id,
                                                             models.SecurityGroup.is_default.is_(True)))
    if g is not None:
        return g
    g = models.SecurityGroup(name="default", description="Default security group", is_default=True,
                             stateful=True)
    stamp_new(tx, g, project_id, revision=1)
    seq = _next_seq(tx)
    g.rules = [
        _new_rule(tx, g, seq, "egress", "IPv4"),
        _new_rule(tx, g, seq + 1, "egress", "IPv6"),
        _new_rule(tx, g, seq + 2, "ingress", "IPv4", remote_group_id=g.id),
        _new_rule(tx, g, seq + 3, "ingress", "IPv6", remote_group_id=g.id),
    ]
    tx.session.add(g)
    tx.session.flush()
    return g


def get_group_row(tx: Tx, group_id: str) -> models.SecurityGroup:
    g = tx.session.get(models.SecurityGroup, group_id)
    if g is None or not (visible(tx, g) or rbac.group_shared_with_caller(tx, g.id)):
        raise not_found("security_group", group_id)
    return g


def _owner_only(tx: Tx, g: models.SecurityGroup, action: str) -> None:
    """Neutron's policy: a group shared with the caller by RBAC is used, not changed or deleted."""
    if not tx.ctx.is_admin and g.project_id != tx.ctx.project_id:
        raise NotAuthorized(f"rule:{action}_security_group is disallowed by policy",
                            neutron_type="PolicyNotAuthorized")


def create_group(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    default = ensure_default_group(tx, project)
    if attrs["name"] == "default" and default is not None:
        raise conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
    # the two egress rules a new group gets count against the project's rule quota (Neutron)
    quotas.check(tx, project, "security_group_rule", 2)
    g = models.SecurityGroup(name=attrs["name"], description=attrs["description"], stateful=attrs["stateful"])
    stamp_new(tx, g, project, revision=1)
    seq = _next_seq(tx)
    g.rules = [_new_rule(tx, g, seq, "egress", "IPv4"), _new_rule(tx, g, seq + 1, "egress", "IPv6")]
    tx.session.add(g)
    tx.session.flush()  # the rules' security_group_id
    return group_dict(g)


def list_groups(tx: Tx, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    q = select(models.SecurityGroup).order_by(models.SecurityGroup.created_seq)
    if "id" in filters:
        q = q.where(models.SecurityGroup.id.in_(filters["id"]))
    shared = rbac.groups_shared_with_caller(tx)
    if not tx.ctx.is_admin:
        q = q.where((models.SecurityGroup.project_id == tx.ctx.project_id) | models.SecurityGroup.id.in_(shared))
    return [group_dict(g, g.id in shared) for g in tx.session.scalars(q).all()]


def get_group(tx: Tx, group_id: str) -> dict[str, Any]:
    g = get_group_row(tx, group_id)
    return group_dict(g, rbac.group_shared_with_caller(tx, g.id))


def update_group(tx: Tx, group_id: str, attrs: dict[str, Any], revision: int | None = None) -> dict[str, Any]:
    g = get_group_row(tx, group_id)
    _owner_only(tx, g, "update")
    check_revision(g, revision)
    if "name" in attrs:
        if g.is_default and attrs["name"] != "default":
            raise conflict("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
        if not g.is_default and attrs["name"] == "default":
            raise conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
    if "stateful" in attrs and attrs["stateful"] != g.stateful:
        # Neutron: a group's statefulness changes only while no port uses it
        used = tx.session.scalar(select(func.count()).select_from(models.PortSecurityGroup).where(
            models.PortSecurityGroup.security_group_id == g.id))
        if used:
            raise conflict("SecurityGroupInUse", f"Security Group {g.id} in use.")
    for k, v in attrs.items():
        setattr(g, k, v)
    bump(g)
    return group_dict(g, rbac.group_shared_with_caller(tx, g.id))


def delete_group(tx: Tx, group_id: str, revision: int | None = None) -> None:
    g = get_group_row(tx, group_id)
    _owner_only(tx, g, "delete")
    check_revision(g, revision)
    if g.is_default and not tx.ctx.is_admin:
        raise conflict("SecurityGroupCannotRemoveDefault", "Insufficient rights for removing default security "
                                                           "group.")
    used = tx.session.scalar(select(func.count()).select_from(models.PortSecurityGroup).where(
        models.PortSecurityGroup.security_group_id == g.id))
    if used:
        raise conflict("SecurityGroupInUse", f"Security Group {g.id} in use.")
    rbac.on_object_deleted(tx, "security_group", g.id)
    tx.session.delete(g)


# -- rules ----------------------------------------------------------------------------------------

def _validate_rule(attrs: dict[str, Any]) -> None:
    proto = attrs.get("protocol")
    eth = attrs["ethertype"]
    lo, hi = attrs.get("port_range_min"), attrs.get("port_range_max")
    if proto is None and (lo is not None or hi is not None):
        raise invalid("Must also specify protocol if port range is given.", "SecurityGroupProtocolRequiredWithPorts")
    if proto in IPV6_ONLY and eth == "IPv4":
        raise invalid(f"Invalid ethertype {eth} for protocol {proto}.", "SecurityGroupEthertypeConflictWithProtocol")
    if proto in ("icmp", "icmpv6", "1") and eth == "IPv6":
        attrs["protocol"] = proto = "ipv6-icmp" if proto != "1" else "58"
    if proto in PORT_PROTOCOLS:
        if lo is None and hi is None:
            pass
        else:
            for v in (lo, hi):
                if v is not None and not 1 <= v <= 65535:
                    raise invalid(f"Invalid value for port {v}", "SecurityGroupInvalidPortValue")
            if lo is None or hi is None or lo > hi:
                raise invalid("For TCP/UDP protocols, port_range_min must be <= port_range_max",
                              "SecurityGroupInvalidPortRange")
            if lo == 1 and hi == 65535:
                attrs["port_range_min"] = attrs["port_range_max"] = None
    elif proto in ICMP_PROTOCOLS or proto == "ipv6-icmp":
        for field, v in (("port_range_min", lo), ("port_range_max", hi)):
            if v is not None and not 0 <= v <= 255:
                raise invalid(f"Invalid value for ICMP {'type' if field.endswith('min') else 'code'} ({field}) "
                              f"{v}. It must be 0 to 255.", "SecurityGroupInvalidIcmpValue")
        if lo is None and hi is not None:
            raise invalid(f"ICMP code (port-range-max) {hi} is provided but ICMP type (port-range-min) is "
                          "missing.", "SecurityGroupMissingIcmpType")
    elif lo is not None or hi is not None:
        raise invalid(f"Invalid protocol {proto} for port range, only supported for TCP, UDP, UDPLITE, SCTP and "
                      "DCCP.", "SecurityGroupInvalidProtocolForPortRange")
    prefix = attrs.get("remote_ip_prefix")
    if prefix is not None:
        if attrs.get("remote_group_id") is not None:
            raise invalid("Only remote_ip_prefix or remote_group_id may be provided.",
                          "SecurityGroupRemoteGroupAndRemoteIpPrefix")
        version = ipaddress.ip_network(prefix, strict=False).version
        if (version == 4) != (eth == "IPv4"):
            raise invalid(f"Conflicting value ethertype {eth} for CIDR {prefix}",
                          "SecurityGroupRuleParameterConflict")
    if attrs.get("remote_address_group_id") is not None:
        raise invalid("remote_address_group_id is not supported by this server")


def _key(r: dict[str, Any] | models.SecurityGroupRule) -> tuple[Any, ...]:
    get = r.get if isinstance(r, dict) else lambda k: getattr(r, k)
    proto = get("protocol")
    if proto is not None and proto in PROTOCOLS:
        proto = str(PROTOCOLS[proto])
    prefix = get("remote_ip_prefix")
    if prefix is not None:  # two rules for one network are the same rule, however written
        prefix = str(ipaddress.ip_network(prefix, strict=False))
    if prefix in ("0.0.0.0/0", "::/0"):
        prefix = None
    return (get("security_group_id"), get("direction"), get("ethertype"), proto, get("port_range_min"),
            get("port_range_max"), prefix, get("remote_group_id"))


def create_rule(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    g = get_group_row(tx, attrs["security_group_id"])
    if attrs.get("remote_group_id") is not None:
        get_group_row(tx, attrs["remote_group_id"])
    _validate_rule(attrs)
    key = _key(attrs)
    for existing in g.rules:
        if _key(existing) == key:
            raise conflict("SecurityGroupRuleExists",
                           f"Security group rule already exists. Rule id is {existing.id}.")
    r = models.SecurityGroupRule(
        seq=_next_seq(tx), security_group_id=g.id, direction=attrs["direction"],
        ethertype=attrs["ethertype"], protocol=attrs.get("protocol"), port_range_min=attrs.get("port_range_min"),
        port_range_max=attrs.get("port_range_max"), remote_ip_prefix=attrs.get("remote_ip_prefix"),
        remote_group_id=attrs.get("remote_group_id"), name="", description=attrs.get("description", ""))
    stamp_new(tx, r, project if tx.ctx.is_admin else g.project_id, revision=0)
    g.rules.append(r)
    bump(g)
    tx.session.flush()
    return rule_dict(r, g.is_default)


def get_rule_row(tx: Tx, rule_id: str) -> models.SecurityGroupRule:
    r = tx.session.get(models.SecurityGroupRule, rule_id)
    if r is None or not (visible(tx, r) or r.group.project_id == tx.ctx.project_id):
        raise not_found("security_group_rule", rule_id)
    return r


def get_rule(tx: Tx, rule_id: str) -> dict[str, Any]:
    r = get_rule_row(tx, rule_id)
    return rule_dict(r, r.group.is_default)


def list_rules(tx: Tx, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    q = select(models.SecurityGroupRule, models.SecurityGroup.is_default).join(
        models.SecurityGroup, models.SecurityGroup.id == models.SecurityGroupRule.security_group_id)
    if "security_group_id" in filters:
        q = q.where(models.SecurityGroupRule.security_group_id.in_(filters["security_group_id"]))
    if "id" in filters:
        q = q.where(models.SecurityGroupRule.id.in_(filters["id"]))
    if not tx.ctx.is_admin:  # the caller's rules, and every rule of the caller's groups (Neutron)
        q = q.where((models.SecurityGroupRule.project_id == tx.ctx.project_id) |
                    (models.SecurityGroup.project_id == tx.ctx.project_id))
    return [rule_dict(r, d) for r, d in tx.session.execute(q.order_by(models.SecurityGroupRule.seq)).all()]


def update_rule(tx: Tx, rule_id: str, attrs: dict[str, Any], revision: int | None = None) -> dict[str, Any]:
    r = get_rule_row(tx, rule_id)
    check_revision(r, revision)
    for k, v in attrs.items():
        setattr(r, k, v)
    bump(r)
    return rule_dict(r, r.group.is_default)


def delete_rule(tx: Tx, rule_id: str, revision: int | None = None) -> None:
    r = get_rule_row(tx, rule_id)
    check_revision(r, revision)
    g = r.group
    g.rules.remove(r)
    bump(g)
