"""Neutron's default policies (neutron/conf/policies/*.py, secure RBAC), as neutron/api/v2/base.py
enforces them with neutron/policy.py, for the v2.0 collections.

- Writing takes the member role (or admin): a reader's create is refused at once; its update or
  delete first looks the resource up (404 for what it cannot see, Neutron hides existence), then is
  refused (403 ``PolicyNotAuthorized``).
- Changing or deleting a resource takes its ownership (``rule:admin_or_owner``): a shared or
  external network, a port or subnet on someone else's network... answer 403 to a non-admin who can
  see them. A port is also the network owner's, a security-group rule the group owner's.
- Some attributes are the admin's only (``create_network:provider:network_type``...): a non-admin
  setting one is refused (on create only when the value is not the attribute's default, as
  ``_is_attribute_explicitly_set`` has it), and a non-admin does not read them (left out of bodies).

The messages are oslo.policy's: ``rule:<action> is disallowed by policy`` and, with attributes,
``(rule:<action> and rule:<action>:<attr>) is disallowed by policy``.
"""

from __future__ import annotations

from typing import Any

from neutrino.errors import NotAuthorized
from neutrino.services.core import Context

ANY = object()  # no default: any value given counts as set

# singular -> action -> attribute -> its default (ANY: every value is checked)
ADMIN_SET: dict[str, dict[str, dict[str, Any]]] = {
    "network": {
        "create": {"shared": False, "router:external": False, "is_default": False, "segments": ANY,
                   "provider:network_type": ANY, "provider:physical_network": ANY,
                   "provider:segmentation_id": ANY},
        "update": {"shared": ANY, "router:external": ANY, "is_default": ANY, "segments": ANY,
                   "provider:network_type": ANY, "provider:physical_network": ANY,
                   "provider:segmentation_id": ANY},
    },
    "subnet": {
        "create": {"segment_id": None, "service_types": ANY},
        "update": {"segment_id": ANY, "service_types": ANY},
    },
    "port": {
        "create": {"binding:host_id": ANY, "binding:profile": ANY, "hints": ANY, "trusted": ANY},
        "update": {"binding:host_id": ANY, "binding:profile": ANY, "hints": ANY, "trusted": ANY},
    },
    "router": {
        "create": {"distributed": ANY, "ha": ANY, "enable_default_route_bfd": ANY,
                   "enable_default_route_ecmp": ANY},
        "update": {"distributed": ANY, "ha": ANY, "enable_default_route_bfd": ANY,
                   "enable_default_route_ecmp": ANY},
    },
    "floatingip": {
        "create": {"floating_ip_address": ANY},  # ADMIN_OR_PROJECT_MANAGER
    },
}
# sub-attributes of a dict attribute: singular -> attribute -> the admin's sub-attributes
ADMIN_SUB: dict[str, dict[str, tuple[str, ...]]] = {
    "router": {"external_gateway_info": ("enable_snat", "external_fixed_ips")},
}
# a port's attributes that take the admin or the network's owner (rule:network_owner)
NET_OWNER_SET = ("mac_address", "fixed_ips:ip_address")
# what a non-admin does not read (get_<resource>:<attr> is admin only)
ADMIN_GET: dict[str, frozenset[str]] = {
    "network": frozenset({"provider:network_type", "provider:physical_network", "provider:segmentation_id",
                          "segments"}),
    "subnet": frozenset({"segment_id"}),
    "port": frozenset({"binding:vif_type", "binding:vif_details", "binding:host_id", "binding:profile",
                       "resource_request", "hints", "trusted"}),
    "router": frozenset({"distributed", "ha"}),
}


def denied(rule: str, *attrs: str) -> NotAuthorized:
    """oslo.policy's refusal of ``rule`` (and of the attribute rules under it)."""
    if attrs:
        text = " and ".join([f"rule:{rule}", *(f"rule:{rule}:{a}" for a in attrs)])
        return NotAuthorized(f"({text}) is disallowed by policy", neutron_type="PolicyNotAuthorized")
    return NotAuthorized(f"rule:{rule} is disallowed by policy", neutron_type="PolicyNotAuthorized")


def can_write(ctx: Context) -> bool:
    """The member role on the token's project (the manager and admin roles imply it)."""
    return ctx.is_admin or bool({"member", "manager"} & set(ctx.roles))


def admin_attrs(singular: str, action: str, raw: dict[str, Any], prepared: dict[str, Any]) -> list[str]:
    """The admin-only attributes ``raw`` (the request's body) sets, in Neutron's rule names."""
    out: list[str] = []
    for attr, default in ADMIN_SET.get(singular, {}).get(action, {}).items():
        if attr not in raw:
            continue
        value = prepared.get(attr, raw[attr])
        if default is ANY or value != default:
            out.append(attr)
    for attr, subs in ADMIN_SUB.get(singular, {}).items():
        given = raw.get(attr)
        if isinstance(given, dict):
            out.extend(f"{attr}:{s}" for s in subs if s in given)
    return out


def net_owner_attrs(raw: dict[str, Any]) -> list[str]:
    """The attributes of a port body that take the network's owner (or admin)."""
    out = [a for a in NET_OWNER_SET if ":" not in a and a in raw]
    ips = raw.get("fixed_ips")
    if isinstance(ips, list) and any(isinstance(i, dict) and "ip_address" in i for i in ips):
        out.append("fixed_ips:ip_address")
    return out


def check_create(ctx: Context, singular: str, raw: Any, prepared: dict[str, Any]) -> None:
    """``create_<singular>``: the member role, and no admin-only attribute for a non-admin."""
    if ctx.is_admin:
        return
    body = raw if isinstance(raw, dict) else {}
    attrs = admin_attrs(singular, "create", body, prepared)
    if not can_write(ctx):
        raise denied(f"create_{singular}", *attrs)
    if attrs:
        raise denied(f"create_{singular}", *attrs)


def owns(ctx: Context, item: dict[str, Any], *also: str | None) -> bool:
    """Whether the caller's project owns ``item`` (or one of the ``also`` project ids: the network's
    owner for a port, the group's for a rule)."""
    return item.get("project_id") == ctx.project_id or ctx.project_id in also


def check_change(ctx: Context, singular: str, action: str, item: dict[str, Any], raw: Any = None,
                 prepared: dict[str, Any] | None = None, *, also: tuple[str | None, ...] = ()) -> None:
    """``update_``/``delete_<singular>`` on ``item``, which the caller can see."""
    if ctx.is_admin:
        return
    body = raw if isinstance(raw, dict) else {}
    attrs = admin_attrs(singular, "update", body, prepared or {}) if action == "update" else []
    if not can_write(ctx) or not owns(ctx, item, *also) or attrs:
        raise denied(f"{action}_{singular}", *attrs)


def check_get_quota(ctx: Context, project: str | None) -> None:
    """``get_quota`` (ADMIN_OR_PROJECT_MANAGER, on the caller's own project as target): a caller's own
    quota needs no check, anyone else's (or the listing, ``project`` None) does."""
    if ctx.is_admin or project == ctx.project_id or "manager" in ctx.roles:
        return
    raise denied("get_quota")


def check_admin(ctx: Context, rule: str) -> None:
    if not ctx.is_admin:
        raise denied(rule)


def visible_attrs(ctx: Context, singular: str, item: dict[str, Any]) -> dict[str, Any]:
    """``item`` without what the caller may not read."""
    hidden = ADMIN_GET.get(singular)
    if ctx.is_admin or not hidden:
        return item
    return {k: v for k, v in item.items() if k not in hidden}
