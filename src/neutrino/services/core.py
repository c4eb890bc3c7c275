"""What every service shares: the request context, the transaction handle, ids and the creation
sequence (made by the cloud's ``IdGenerator``, see ``neutrino.services.ids``), timestamps,
ownership checks, revision constraints and Neutron's error constructors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from neutrino.db.session import now
from neutrino.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from neutrino.scenarios.model import Deployment
from neutrino.services.ids import RANDOM, IdGenerator, next_seq


@dataclass(frozen=True, slots=True)
class Context:
    """Who is calling: the token's project and user, and whether they are admin."""

    project_id: str
    user_id: str = ""
    is_admin: bool = True
    roles: tuple[str, ...] = ("admin",)


@dataclass(frozen=True, slots=True)
class Page:
    """Keyset pagination pushed into SQL: items after ``marker`` in id order, at most ``limit``."""

    limit: int
    marker: str | None = None
    reverse: bool = False


@dataclass(slots=True)
class Tx:
    """One transaction of one request: the session, the caller, the deployment and the cloud's
    id generator (random unless the cloud was given a seed)."""

    session: Session
    ctx: Context
    deployment: Deployment
    ids: IdGenerator = RANDOM


def new_id(tx: Tx, model: Any) -> str:
    """A fresh id for a new row of ``model``."""
    return tx.ids.new_id(tx.session, model)


def new_mac(tx: Tx) -> str:
    """A candidate ``fa:16:3e`` MAC (the caller checks it is free on its network)."""
    return tx.ids.new_mac(tx.session)


def timestamp() -> str:
    return now()


def not_found(kind: str, ident: str) -> NotFound:
    """Neutron's NotFound flavours, with their exact wording."""
    messages = {
        "network": ("NetworkNotFound", f"Network {ident} could not be found."),
        "subnet": ("SubnetNotFound", f"Subnet {ident} could not be found."),
        "port": ("PortNotFound", f"Port {ident} could not be found."),
        "router": ("RouterNotFound", f"Router {ident} could not be found"),
        "floatingip": ("FloatingIPNotFound", f"Floating IP {ident} could not be found"),
        "security_group": ("SecurityGroupNotFound", f"Security group {ident} does not exist"),
        "security_group_rule": ("SecurityGroupRuleNotFound", f"Security group rule {ident} does not exist"),
        "agent": ("AgentNotFound", f"Agent {ident} could not be found."),
        "subnetpool": ("SubnetPoolNotFound", f"Subnet pool {ident} could not be found."),
        "address_scope": ("AddressScopeNotFound", f"Address scope {ident} could not be found."),
        "rbac_policy": ("RbacPolicyNotFound", f"RBAC policy of type unknown with ID {ident} not found"),
        "port_forwarding": ("PortForwardingNotFound", f"Port Forwarding {ident} could not be found."),
    }
    t, m = messages.get(kind, ("NotFound", f"{kind} {ident} could not be found."))
    return NotFound(m, neutron_type=t)


def conflict(neutron_type: str, message: str) -> Conflict:
    return Conflict(message, neutron_type=neutron_type)


def invalid(message: str, neutron_type: str = "InvalidInput") -> InvalidInput:
    if neutron_type == "InvalidInput" and not message.startswith("Invalid input"):
        message = f"Invalid input for operation: {message}"
    return InvalidInput(message, neutron_type=neutron_type)


def bad_request(resource: str, message: str) -> InvalidInput:
    """Neutron's ``BadRequest``: ``Bad <resource> request: <message>.``"""
    return InvalidInput(f"Bad {resource} request: {message}.", neutron_type="BadRequest")


def visible(tx: Tx, row: Any, *, public: bool = False) -> bool:
    return tx.ctx.is_admin or public or row.project_id == tx.ctx.project_id


def owner_for_create(tx: Tx, attrs: dict[str, Any]) -> str:
    project = attrs.pop("project_id", None) or tx.ctx.project_id
    if project != tx.ctx.project_id and not tx.ctx.is_admin:
        raise InvalidInput("Specifying 'project_id' or 'tenant_id' other than the authenticated project "
                           "in request requires admin privileges", neutron_type="HTTPBadRequest")
    return project


def stamp_new(tx: Tx, row: Any, project_id: str, revision: int = 0) -> None:
    """Fill a new row's standard attributes: id (unless set), owner, timestamps, its place in the
    creation sequence, revision and tags."""
    t = timestamp()
    row.id = row.id or new_id(tx, type(row))
    row.created_seq = next_seq(tx.session)
    row.project_id = project_id
    row.created_at = t
    row.updated_at = t
    row.revision_number = revision
    if row.tags is None:
        row.tags = []


def bump(row: Any) -> None:
    """Record a change: a new revision number and updated_at."""
    row.revision_number = (row.revision_number or 0) + 1
    row.updated_at = timestamp()


def check_revision(row: Any, expected: int | None) -> None:
    if expected is not None and row.revision_number != expected:
        raise PreconditionFailed(f"Constrained to {expected}, but current revision is {row.revision_number}",
                                 neutron_type="RevisionNumberConstraintFailed")


def core_scalar(tx: Tx, stmt: Any) -> Any:
    """The first column of the first row of a Core ``select`` (no ORM entities), run on the
    transaction's connection. Cheaper than ``Session.scalar``; pending ORM changes are flushed first,
    as the session's autoflush would have done."""
    session = tx.session
    if session.new or session.deleted or session.dirty:
        session.flush()
    return session.connection().execute(stmt).scalar()


def standard(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "project_id": row.project_id, "tenant_id": row.project_id,
        "description": row.description, "tags": list(row.tags or []),
        "created_at": row.created_at, "updated_at": row.updated_at, "revision_number": row.revision_number,
    }


def paged(tx: Tx, q: Any, model: Any, page: Page | None) -> Any:
    """Add keyset pagination (order by id, after the marker, limit) to a select of ``model``; without
    a page, order it by creation."""
    if page is None:
        return q.order_by(model.created_seq)
    if page.marker is not None:
        if tx.session.get(model, page.marker) is None:
            kind = {"networks": "network", "subnets": "subnet", "ports": "port"}.get(model.__tablename__, "")
            raise not_found(kind, page.marker)
        q = q.where(model.id < page.marker if page.reverse else model.id > page.marker)
    q = q.order_by(model.id.desc() if page.reverse else model.id)
    return q.limit(page.limit + 1)
