"""Quotas: Neutron's defaults, per-project overrides, usage, and OverQuota on create."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select

from neutrino.db import models
from neutrino.db.session import raw
from neutrino.services.core import Tx, conflict, invalid

DEFAULTS = {"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
            "security_group": 10, "security_group_rule": 100, "subnetpool": -1, "rbac_policy": 10}
MODELS: dict[str, Any] = {"network": models.Network, "subnet": models.Subnet, "port": models.Port,
                          "router": models.Router, "floatingip": models.FloatingIP,
                          "security_group": models.SecurityGroup, "security_group_rule": models.SecurityGroupRule,
                          "rbac_policy": models.RbacPolicy}


def limits(tx: Tx, project_id: str) -> dict[str, int]:
    out = dict(DEFAULTS)
    for q in tx.session.scalars(select(models.Quota).where(models.Quota.project_id == project_id)).all():
        out[q.resource] = q.limit
    return out


def used(tx: Tx, project_id: str, resource: str) -> int:
    m = MODELS.get(resource)
    if m is None:
        return 0
    return int(tx.session.scalar(select(func.count()).select_from(m).where(m.project_id == project_id)) or 0)


# per resource, written once: the project's limit and its usage in one statement (a raw prepared statement);
# a project's ports are counted by the database's triggers (``port_usage``: no count(*) growing with them)
_CHECK = {resource: f'SELECT (SELECT "limit" FROM quotas WHERE project_id = ? AND resource = ?), '
                    f'(SELECT count(*) FROM {m.__tablename__} WHERE project_id = ?)'
          for resource, m in MODELS.items()}
_CHECK["port"] = ('SELECT (SELECT "limit" FROM quotas WHERE project_id = ? AND resource = ?), '
                  '(SELECT ports FROM port_usage WHERE project_id = ?)')


def check(tx: Tx, project_id: str, resource: str, count: int = 1) -> None:
    """OverQuota if creating ``count`` more would pass the limit (one query: limit and usage together)."""
    sql = _CHECK.get(resource)
    if sql is None:
        return
    limit, in_use = raw(tx.session).one(sql, (project_id, resource, project_id))
    refuse_over(resource, limit, in_use, count)


def refuse_over(resource: str, limit: int | None, in_use: int | None, count: int = 1) -> None:
    """``check``'s verdict on the project's limit (None: the default) and usage as read (None: none)."""
    in_use = in_use or 0  # a project without a port_usage row has none
    if limit is None:
        limit = DEFAULTS.get(resource, -1)
    if limit >= 0 and in_use + count > limit:
        raise conflict("OverQuota", f"Quota exceeded for resources: ['{resource}'].")


def update(tx: Tx, project_id: str, body: Any, *, force: bool = False) -> dict[str, int]:
    """Set limits; unless ``force``, a limit below what the project already uses is refused (as
    Neutron's quota engine does since 2025.1; -1, unlimited, is never checked)."""
    if not isinstance(body, dict):
        raise invalid("Invalid input for quota. Reason: not a dictionary.", "HTTPBadRequest")
    for k, v in body.items():
        if k not in DEFAULTS:
            raise invalid(f"Unrecognized attribute(s) '{k}'", "HTTPBadRequest")
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise invalid(f"Invalid input for {k}. Reason: '{v}' is not an integer.", "HTTPBadRequest") from None
        if n < -1:
            raise invalid(f"Invalid input for {k}. Reason: '{n}' is too small - must be at least '-1'.",
                          "HTTPBadRequest")
        if not force and n != -1:
            in_use = used(tx, project_id, k)
            if in_use > n:
                raise invalid(f"Quota limit {n} for {k} must be greater than or equal to already used {in_use}",
                              "HTTPBadRequest")
        row = tx.session.get(models.Quota, (project_id, k))
        if row is None:
            tx.session.add(models.Quota(project_id=project_id, resource=k, limit=n))
        else:
            row.limit = n
    tx.session.flush()
    return limits(tx, project_id)


def reset(tx: Tx, project_id: str) -> None:
    tx.session.execute(delete(models.Quota).where(models.Quota.project_id == project_id))


def details(tx: Tx, project_id: str) -> dict[str, dict[str, int]]:
    return {k: {"limit": v, "used": used(tx, project_id, k), "reserved": 0} for k, v in limits(tx, project_id).items()}


def projects_with_quotas(tx: Tx) -> list[str]:
    return sorted(set(tx.session.scalars(select(models.Quota.project_id)).all()))
