"""RBAC policies, as Neutron's ``rbac-policies`` and ``rbac-security-groups`` extensions have them.

A policy shares one object (a network or a security group) with one project (``target_tenant``),
or with every project (``*``), for one action: ``access_as_shared`` (networks and security groups)
or ``access_as_external`` (networks). The policies are what sharing is:

- a network's ``shared`` is true for a caller when an ``access_as_shared`` policy targets ``*`` or
  the caller's project (Neutron's ``_is_network_shared``); the ``networks.shared`` column keeps
  "a wildcard policy exists", what Nova's automatic networks and the planners read;
- ``router:external`` is the ``networks.external`` column; an ``access_as_external`` policy makes
  a network external (for its target only when not ``*``), and removing the last one makes it not;
- a project a network or a security group is shared with sees it and may use it (ports on the
  network, the group on its ports), so its instances are planned there like the owner's;
- a policy whose target project still depends on it (its ports on the network, or using the group)
  can be neither deleted nor re-targeted: 409 ``RbacPolicyInUse``.

Networks made external before this module (without policies) stay visible to everyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from neutrino.db import models
from neutrino.errors import NotAuthorized
from neutrino.services.attributes import PROJECT_ID_MAX, is_uuid
from neutrino.services.core import (
    Tx,
    bump,
    conflict,
    invalid,
    new_id,
    not_found,
    owner_for_create,
)
from neutrino.services.ids import next_seq

SHARED = "access_as_shared"
EXTERNAL = "access_as_external"
WILDCARD = "*"
ACTIONS: dict[str, tuple[str, ...]] = {"network": (SHARED, EXTERNAL), "security_group": (SHARED,)}


# -- serialisation ----------------------------------------------------------------------------------

def policy_dict(p: models.RbacPolicy) -> dict[str, Any]:
    """A policy as Neutron shows it (``target_tenant``; the API hides ``target_project``)."""
    return {"id": p.id, "project_id": p.project_id, "tenant_id": p.project_id, "object_type": p.object_type,
            "object_id": p.object_id, "action": p.action, "target_tenant": p.target_tenant}


# -- who may see and use what -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NetworkAccess:
    """What the RBAC policies give the caller's project on networks (one query for a listing)."""

    project_id: str
    shared: frozenset[str]        # networks with access_as_shared for the caller (or '*')
    external: frozenset[str]      # networks with access_as_external for the caller (or '*')
    ext_policied: frozenset[str]  # networks with any access_as_external policy

    def visible(self, n: models.Network, is_admin: bool) -> bool:
        if is_admin or n.project_id == self.project_id or n.shared:
            return True
        if n.id in self.shared or n.id in self.external:
            return True
        return n.external and n.id not in self.ext_policied  # made external before RBAC

    def shared_with(self, n: models.Network) -> bool:
        """Neutron's ``shared`` for the caller: a policy shares it with '*' or the caller's project."""
        return n.shared or n.id in self.shared


def network_access(tx: Tx, network_ids: list[str] | None = None) -> NetworkAccess:
    """The caller's view of the network policies (of ``network_ids`` only when given)."""
    q = select(models.RbacPolicy.object_id, models.RbacPolicy.action, models.RbacPolicy.target_tenant).where(
        models.RbacPolicy.object_type == "network")
    if network_ids is not None:
        q = q.where(models.RbacPolicy.object_id.in_(network_ids))
    shared: set[str] = set()
    external: set[str] = set()
    policied: set[str] = set()
    me = tx.ctx.project_id
    for oid, action, target in tx.session.execute(q).all():
        if action == EXTERNAL:
            policied.add(oid)
        if target in (me, WILDCARD):
            (shared if action == SHARED else external).add(oid)
    return NetworkAccess(me, frozenset(shared), frozenset(external), frozenset(policied))


def network_visible(tx: Tx, n: models.Network) -> bool:
    if tx.ctx.is_admin or n.project_id == tx.ctx.project_id or n.shared:
        return True
    return network_access(tx, [n.id]).visible(n, False)


def network_shared_with_caller(tx: Tx, n: models.Network) -> bool:
    return n.shared or _has(tx, "network", n.id, SHARED, (tx.ctx.project_id,))


def network_accessible(tx: Tx, network: models.Network) -> bool:
    """May the caller put a port on ``network``: admin, its owner, or shared with the caller."""
    return tx.ctx.is_admin or network.project_id == tx.ctx.project_id or network_shared_with_caller(tx, network)


def group_shared_with_caller(tx: Tx, group_id: str) -> bool:
    return _has(tx, "security_group", group_id, SHARED, (WILDCARD, tx.ctx.project_id))


def group_visible(tx: Tx, g: models.SecurityGroup) -> bool:
    return tx.ctx.is_admin or g.project_id == tx.ctx.project_id or group_shared_with_caller(tx, g.id)


def groups_shared_with_caller(tx: Tx) -> set[str]:
    """The ids of the security groups shared with the caller's project (or everyone)."""
    return set(tx.session.scalars(select(models.RbacPolicy.object_id).where(
        models.RbacPolicy.object_type == "security_group", models.RbacPolicy.action == SHARED,
        models.RbacPolicy.target_tenant.in_((WILDCARD, tx.ctx.project_id)))).all())


def _has(tx: Tx, otype: str, oid: str, action: str, targets: tuple[str, ...]) -> bool:
    return tx.session.scalar(select(models.RbacPolicy.id).where(
        models.RbacPolicy.object_type == otype, models.RbacPolicy.object_id == oid,
        models.RbacPolicy.action == action, models.RbacPolicy.target_tenant.in_(targets)).limit(1)) is not None


# -- the network's own 'shared' and 'router:external' ---------------------------------------------------

def _add(tx: Tx, project_id: str, otype: str, oid: str, action: str, target: str) -> models.RbacPolicy:
    p = models.RbacPolicy(id=new_id(tx, models.RbacPolicy), created_seq=next_seq(tx.session),
                          project_id=project_id, object_type=otype, object_id=oid, action=action,
                          target_tenant=target)
    tx.session.add(p)
    return p


def on_network_created(tx: Tx, n: models.Network) -> None:
    """A network created ``shared`` or ``router:external`` gets the wildcard policy for it."""
    if n.shared:
        _add(tx, n.project_id, "network", n.id, SHARED, WILDCARD)
    if n.external:
        _add(tx, n.project_id, "network", n.id, EXTERNAL, WILDCARD)


def set_network_shared(tx: Tx, n: models.Network, shared: bool) -> None:
    """``shared`` set on a network: True adds the wildcard policy, False removes it, refused
    (InvalidSharedSetting) when projects other than those it stays shared with use the network."""
    wildcard = _has(tx, "network", n.id, SHARED, (WILDCARD,))
    if shared and not wildcard:
        _add(tx, n.project_id, "network", n.id, SHARED, WILDCARD)
    elif not shared and wildcard:
        users = {p for p in tx.session.scalars(select(models.Port.project_id).where(
            models.Port.network_id == n.id, ~models.Port.device_owner.startswith("network:"))).all()}
        users |= {s.project_id for s in n.subnets}
        if users - _targets(tx, n.id, SHARED) - {n.project_id}:
            raise _invalid_shared(n.name)
        tx.session.execute(delete(models.RbacPolicy).where(
            models.RbacPolicy.object_type == "network", models.RbacPolicy.object_id == n.id,
            models.RbacPolicy.action == SHARED, models.RbacPolicy.target_tenant == WILDCARD))
    n.shared = shared


def set_network_external(tx: Tx, n: models.Network, external: bool) -> None:
    """``router:external`` set on a network: True adds the wildcard access_as_external policy, False
    removes every access_as_external policy (the caller checked the gateway ports)."""
    if external and not n.external:
        _add(tx, n.project_id, "network", n.id, EXTERNAL, WILDCARD)
    elif not external and n.external:
        tx.session.execute(delete(models.RbacPolicy).where(
            models.RbacPolicy.object_type == "network", models.RbacPolicy.object_id == n.id,
            models.RbacPolicy.action == EXTERNAL))
    n.external = external


def _wildcard_external(tx: Tx, network_id: str) -> models.RbacPolicy | None:
    return tx.session.scalar(select(models.RbacPolicy).where(
        models.RbacPolicy.object_type == "network", models.RbacPolicy.object_id == network_id,
        models.RbacPolicy.action == EXTERNAL, models.RbacPolicy.target_tenant == WILDCARD).limit(1))


def set_network_default(tx: Tx, n: models.Network, is_default: bool) -> None:
    """``is_default`` set on an external network: kept on its wildcard access_as_external policy
    (Neutron keeps it on the network's external record, and ignores it on a network without one);
    one default external network at a time."""
    if is_default:
        other = next((d for d in default_networks(tx) if d != n.id), None)
        if other is not None:
            raise conflict("DefaultExternalNetworkExists", f"Default external network {other} already exists")
    wild = _wildcard_external(tx, n.id)
    if wild is not None:
        wild.is_default = is_default


def default_networks(tx: Tx, network_ids: list[str] | None = None) -> set[str]:
    """The ids of the default external networks (among ``network_ids`` when given)."""
    q = select(models.RbacPolicy.object_id).where(
        models.RbacPolicy.object_type == "network", models.RbacPolicy.action == EXTERNAL,
        models.RbacPolicy.is_default.is_(True))
    if network_ids is not None:
        q = q.where(models.RbacPolicy.object_id.in_(network_ids))
    return set(tx.session.scalars(q).all())


def on_object_deleted(tx: Tx, otype: str, oid: str) -> None:
    """The policies of a deleted network or security group go with it."""
    tx.session.execute(delete(models.RbacPolicy).where(models.RbacPolicy.object_type == otype,
                                                       models.RbacPolicy.object_id == oid))


def _targets(tx: Tx, network_id: str, action: str) -> set[str]:
    """The projects (not '*') a network is shared with by ``action``."""
    return {t for t in tx.session.scalars(select(models.RbacPolicy.target_tenant).where(
        models.RbacPolicy.object_type == "network", models.RbacPolicy.object_id == network_id,
        models.RbacPolicy.action == action)).all() if t != WILDCARD}


def _invalid_shared(network: str) -> Exception:
    return conflict("InvalidSharedSetting", f"Unable to reconfigure sharing settings for network {network}. "
                                            "Multiple projects are using it.")


# -- the API ---------------------------------------------------------------------------------------------

def _target(v: Any) -> str:
    if v is None or not isinstance(v, str) or (v != WILDCARD and not is_uuid(v)):
        raise invalid(f"Invalid input for target_tenant. Reason: '{v}' is not a valid target project ID; "
                      "expected a UUID or '*'.", "HTTPBadRequest")
    if len(v) > PROJECT_ID_MAX:
        raise invalid(f"Invalid input for target_tenant. Reason: '{v}' exceeds maximum length of "
                      f"{PROJECT_ID_MAX}.", "HTTPBadRequest")
    return v


def _wildcard_needs_admin(tx: Tx, target: str, action: str) -> None:
    if target == WILDCARD and not tx.ctx.is_admin:
        raise NotAuthorized(f"(rule:{action}_rbac_policy and rule:{action}_rbac_policy:target_tenant) is "
                            "disallowed by policy", neutron_type="PolicyNotAuthorized")


def _object(tx: Tx, otype: str, oid: str) -> models.Network | models.SecurityGroup:
    """The object a policy is about, which the caller must own (unless admin); Neutron's callbacks
    refuse anything else as invalid input."""
    row: models.Network | models.SecurityGroup | None
    if otype == "network":
        row = tx.session.get(models.Network, oid)
        if row is None or not network_visible(tx, row):
            raise invalid(f"Network {oid} could not be found.")
        what = "networks"
    else:
        row = tx.session.get(models.SecurityGroup, oid)
        if row is None or not group_visible(tx, row):
            raise invalid(f"Security group {oid} does not exist.")
        what = "objects"
    if not tx.ctx.is_admin and row.project_id != tx.ctx.project_id:
        raise invalid(f"Only admins can manipulate policies on {what} they do not own.")
    return row


def create_policy(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    otype = attrs.get("object_type")
    normalized = otype.strip().lower() if isinstance(otype, str) else otype
    if not isinstance(normalized, str) or normalized not in ACTIONS:
        raise invalid(f"Invalid input for operation: '{otype}' is not a valid RBAC object type.", "HTTPBadRequest")
    oid = attrs["object_id"]
    target = _target(attrs["target_tenant"])
    action = attrs["action"]
    _wildcard_needs_admin(tx, target, "create")
    if action not in ACTIONS[normalized]:
        raise invalid(f"Invalid action '{action}' for object type '{normalized}'. Valid actions: "
                      f"{ACTIONS[normalized]}", "InvalidActionForType")
    row = _object(tx, normalized, oid)
    if _has(tx, normalized, row.id, action, (target,)):
        raise conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values.")
    p = _add(tx, project, normalized, row.id, action, target)
    if isinstance(row, models.Network):
        if action == SHARED and target == WILDCARD:
            row.shared = True
        if action == EXTERNAL:
            row.external = True  # Neutron makes the network external for the target
    bump(row)
    tx.session.flush()
    return policy_dict(p)


def get_policy_row(tx: Tx, policy_id: str) -> models.RbacPolicy:
    """A policy its owner (or an admin) reads; for anyone else it does not exist (Neutron's
    get_rbac_policy is the owner's, not the target's)."""
    p = tx.session.get(models.RbacPolicy, policy_id)
    if p is None or not (tx.ctx.is_admin or p.project_id == tx.ctx.project_id):
        raise not_found("rbac_policy", policy_id)
    return p


def get_policy(tx: Tx, policy_id: str) -> dict[str, Any]:
    return policy_dict(get_policy_row(tx, policy_id))


def list_policies(tx: Tx, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    q = select(models.RbacPolicy).order_by(models.RbacPolicy.created_seq)
    if "id" in filters:
        q = q.where(models.RbacPolicy.id.in_(filters["id"]))
    if "object_id" in filters:
        q = q.where(models.RbacPolicy.object_id.in_(filters["object_id"]))
    if not tx.ctx.is_admin:
        q = q.where(models.RbacPolicy.project_id == tx.ctx.project_id)
    return [policy_dict(p) for p in tx.session.scalars(q).all()]


def update_policy(tx: Tx, policy_id: str, attrs: dict[str, Any], revision: int | None = None) -> dict[str, Any]:
    p = get_policy_row(tx, policy_id)
    if "target_tenant" not in attrs:
        return policy_dict(p)
    new = _target(attrs["target_tenant"])
    _wildcard_needs_admin(tx, new, "update")
    row = _object(tx, p.object_type, p.object_id)
    if new == p.target_tenant:
        return policy_dict(p)
    if _has(tx, p.object_type, p.object_id, p.action, (new,)):
        raise conflict("DuplicateRbacPolicy", "An RBAC policy already exists with those values.")
    _check_not_in_use(tx, p, row, new)
    old = p.target_tenant
    p.target_tenant = new
    if isinstance(row, models.Network) and p.action == SHARED and WILDCARD in (old, new):
        row.shared = new == WILDCARD or _has(tx, "network", row.id, SHARED, (WILDCARD,))
    bump(row)
    return policy_dict(p)


def delete_policy(tx: Tx, policy_id: str, revision: int | None = None) -> None:
    p = get_policy_row(tx, policy_id)
    row: models.Network | models.SecurityGroup | None = (
        tx.session.get(models.Network, p.object_id) if p.object_type == "network"
        else tx.session.get(models.SecurityGroup, p.object_id))
    if row is not None:
        _check_not_in_use(tx, p, row, None)
    action, target = p.action, p.target_tenant
    tx.session.delete(p)
    tx.session.flush()
    if isinstance(row, models.Network):
        if action == SHARED and target == WILDCARD:
            row.shared = False
        if action == EXTERNAL and not _has_any(tx, row.id, EXTERNAL):
            row.external = False
    if row is not None:
        bump(row)


def _has_any(tx: Tx, network_id: str, action: str) -> bool:
    return tx.session.scalar(select(models.RbacPolicy.id).where(
        models.RbacPolicy.object_type == "network", models.RbacPolicy.object_id == network_id,
        models.RbacPolicy.action == action).limit(1)) is not None


def _in_use(object_id: str, details: str) -> Exception:
    return conflict("RbacPolicyInUse", f"RBAC policy on object {object_id} cannot be removed because other "
                                       f"objects depend on it.\nDetails: {details}")


def _check_not_in_use(tx: Tx, p: models.RbacPolicy, row: models.Network | models.SecurityGroup,
                      new_target: str | None) -> None:
    """Neutron's checks before a policy is deleted (``new_target`` None) or re-targeted: the project
    losing access must not depend on it."""
    if p.target_tenant == row.project_id:
        return  # a self-share gives nothing away
    if isinstance(row, models.Network):
        if p.action == SHARED:
            _check_network_ports(tx, p, row)
        else:
            _check_external_routers(tx, p, row, new_target)
        return
    if new_target == WILDCARD:
        return
    _check_group_ports(tx, p, row)


def _check_network_ports(tx: Tx, p: models.RbacPolicy, n: models.Network) -> None:
    ports = select(models.Port.id).where(models.Port.network_id == n.id)
    if p.target_tenant == WILDCARD:
        allowed = (_targets(tx, n.id, SHARED) - {WILDCARD}) | {n.project_id, ""}
        ports = ports.where(models.Port.project_id.not_in(allowed))
    else:
        if _has(tx, "network", n.id, SHARED, (WILDCARD,)):
            return
        ports = ports.where(models.Port.project_id == p.target_tenant)
    if tx.session.scalar(ports.limit(1)) is not None:
        raise _in_use(n.id, f"Unable to reconfigure sharing settings for network {n.id}. Multiple projects "
                            "are using it.")


def _check_external_routers(tx: Tx, p: models.RbacPolicy, n: models.Network, new_target: str | None) -> None:
    gw_owners = set(tx.session.scalars(select(models.Router.project_id).join(
        models.Port, models.Port.device_id == models.Router.id).where(
        models.Port.network_id == n.id, models.Port.device_owner == "network:router_gateway")).all())
    if p.target_tenant != WILDCARD:
        if _has(tx, "network", n.id, EXTERNAL, (WILDCARD,)):
            return
        depends = p.target_tenant in gw_owners
    else:
        if p.is_default:
            raise _in_use(n.id, "Default external networks must be shared to everyone.")
        keep = _targets(tx, n.id, EXTERNAL) | {n.project_id}
        if new_target is not None:
            keep.add(new_target)
        depends = bool(gw_owners - keep)
    if depends:
        raise _in_use(n.id, "There are routers attached to this network that depend on this policy for access.")


def _check_group_ports(tx: Tx, p: models.RbacPolicy, g: models.SecurityGroup) -> None:
    bound = set(tx.session.scalars(select(models.Port.project_id).join(
        models.PortSecurityGroup, models.PortSecurityGroup.port_id == models.Port.id).where(
        models.PortSecurityGroup.security_group_id == g.id)).all()) - {g.project_id}
    if p.target_tenant != WILDCARD:
        if _has(tx, "security_group", g.id, SHARED, (WILDCARD,)):
            return
        depends = p.target_tenant in bound
    else:
        others = {t for t in tx.session.scalars(select(models.RbacPolicy.target_tenant).where(
            models.RbacPolicy.object_type == "security_group", models.RbacPolicy.object_id == g.id,
            models.RbacPolicy.action == SHARED)).all() if t != WILDCARD}
        depends = not bound <= others
    if depends:
        raise _in_use(g.id, f"project_id={p.target_tenant}")
