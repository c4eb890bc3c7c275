"""Tags on any resource with standard attributes (``/v2.0/{collection}/{id}/tags``)."""

from __future__ import annotations

from typing import Any

from neutrino.db import models
from neutrino.services.core import Tx, bump, invalid, not_found, visible

MODELS: dict[str, tuple[str, Any]] = {
    "networks": ("network", models.Network), "subnets": ("subnet", models.Subnet), "ports": ("port", models.Port),
    "routers": ("router", models.Router), "floatingips": ("floatingip", models.FloatingIP),
    "security-groups": ("security_group", models.SecurityGroup),
    "subnetpools": ("subnetpool", models.SubnetPool),
}


def _row(tx: Tx, collection: str, rid: str) -> Any:
    kind, model = MODELS[collection]
    row = tx.session.get(model, rid)
    public = row is not None and ((collection == "networks" and (row.shared or row.external)) or
                                  (collection == "subnetpools" and row.shared))
    if row is None or not visible(tx, row, public=public):
        raise not_found(kind, rid)
    return row


def _check(tag: Any) -> str:
    if not isinstance(tag, str) or not tag or len(tag) > 255 or "," in tag:
        raise invalid(f"Invalid input for tags. Reason: '{tag}' is not a valid tag.", "HTTPBadRequest")
    return tag


def get_all(tx: Tx, collection: str, rid: str) -> list[str]:
    return list(_row(tx, collection, rid).tags or [])


def has(tx: Tx, collection: str, rid: str, tag: str) -> bool:
    return tag in (_row(tx, collection, rid).tags or [])


def replace(tx: Tx, collection: str, rid: str, body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
        raise invalid("Invalid input for tags. Reason: 'tags' must be a list.", "HTTPBadRequest")
    tags = list(dict.fromkeys(_check(t) for t in body["tags"]))
    if len(tags) > 50:
        raise invalid("Invalid input for tags. Reason: too many tags (at most 50).", "HTTPBadRequest")
    row = _row(tx, collection, rid)
    row.tags = tags
    bump(row)
    return tags


def add(tx: Tx, collection: str, rid: str, tag: str) -> None:
    row = _row(tx, collection, rid)
    _check(tag)
    if tag not in (row.tags or []):
        row.tags = [*(row.tags or []), tag]
        bump(row)


def remove(tx: Tx, collection: str, rid: str, tag: str | None) -> None:
    row = _row(tx, collection, rid)
    if tag is None:
        row.tags = []
    else:
        if tag not in (row.tags or []):
            from neutrino.errors import NotFound
            raise NotFound(f"Tag {tag} could not be found.", neutron_type="TagNotFound")
        row.tags = [t for t in row.tags if t != tag]
    bump(row)
