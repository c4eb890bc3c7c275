"""Keystone's identity and assignment data: domains, projects, users (salted password hashes),
roles and the roles users hold on projects, kept in the cloud's database (migration 3).

The scenario's identity section fills them on first start (``bootstrap``, as ``keystone-manage
bootstrap`` does): the Default domain, the admin, member and reader roles, the scenario's projects
and users, and each user's roles on their project. Ids of what the scenario names are stable
(``Identity.project_id``, ``Identity.user_id``, ``role_id``); what the API creates gets uuid4 hex
ids, as Keystone's. Roles imply as Keystone's bootstrap makes them: admin implies member, member
implies reader. Errors carry Keystone's own wording.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from neutrino.db import models
from neutrino.errors import Conflict, InvalidInput, NotAuthorized, NotFound
from neutrino.scenarios.model import Identity

DEFAULT_DOMAIN = "default"
IMPLIES = {"admin": ("member",), "member": ("reader",)}
_ITERATIONS = 20000


def role_id(name: str) -> str:
    """The stable id of a role the bootstrap makes."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"role.{name}.neutrino").hex


def new_id() -> str:
    return uuid.uuid4().hex


# -- passwords ------------------------------------------------------------------------------------

def hash_password(password: str) -> str:
    salt = secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), _ITERATIONS).hex()
    return f"pbkdf2_sha256${_ITERATIONS}${salt}${digest}"


def check_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        _, rounds, salt, digest = stored.split("$")
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(rounds)).hex()
    except ValueError:
        return False
    return hmac.compare_digest(got, digest)


# -- the bootstrap ----------------------------------------------------------------------------------

def _next_seq(s: Session, model: Any) -> int:
    return int(s.scalar(select(func.coalesce(func.max(model.seq), 0))) or 0) + 1


def bootstrap(s: Session, identity: Identity) -> None:
    """What the scenario names and the database lacks (a restart keeps what the API changed)."""
    if s.get(models.KeystoneDomain, DEFAULT_DOMAIN) is None:
        s.add(models.KeystoneDomain(id=DEFAULT_DOMAIN, name="Default", description="The default domain",
                                    enabled=True, tags=[]))
    roles = ["admin", "member", "reader"] + [r for u in identity.users for r in u.roles]
    for name in dict.fromkeys(roles):
        if s.scalar(select(models.KeystoneRole).where(models.KeystoneRole.name == name)) is None:
            s.add(models.KeystoneRole(id=role_id(name), name=name, seq=_next_seq(s, models.KeystoneRole)))
            s.flush()
    for name in identity.projects:
        pid = Identity.project_id(name)
        if s.get(models.KeystoneProject, pid) is None:
            s.add(models.KeystoneProject(id=pid, name=name, domain_id=DEFAULT_DOMAIN, description="",
                                         enabled=True, tags=[], seq=_next_seq(s, models.KeystoneProject)))
            s.flush()
    for u in identity.users:
        uid = Identity.user_id(u.name)
        if s.get(models.KeystoneUser, uid) is not None:
            continue
        pid = Identity.project_id(u.project)
        s.add(models.KeystoneUser(id=uid, name=u.name, domain_id=DEFAULT_DOMAIN, password=hash_password(u.password),
                                  enabled=True, default_project_id=pid, extra={},
                                  seq=_next_seq(s, models.KeystoneUser)))
        s.flush()
        for r in u.roles:
            rid = s.scalar(select(models.KeystoneRole.id).where(models.KeystoneRole.name == r))
            if rid and s.get(models.KeystoneAssignment, (uid, pid, rid)) is None:
                s.add(models.KeystoneAssignment(user_id=uid, project_id=pid, role_id=rid))
    s.flush()


# -- look-ups -------------------------------------------------------------------------------------

def get_domain(s: Session, ident: str) -> models.KeystoneDomain:
    d = s.get(models.KeystoneDomain, ident)
    if d is None:
        raise NotFound(f"Could not find domain: {ident}.")
    return d


def find_domain(s: Session, ref: Any) -> models.KeystoneDomain | None:
    """A domain from an auth body's ``{"id": ...}`` or ``{"name": ...}`` (None when absent)."""
    if not isinstance(ref, dict):
        return None
    if isinstance(ref.get("id"), str):
        return s.get(models.KeystoneDomain, ref["id"])
    if isinstance(ref.get("name"), str):
        return s.scalar(select(models.KeystoneDomain).where(models.KeystoneDomain.name == ref["name"]))
    return None


def get_project(s: Session, ident: str) -> models.KeystoneProject:
    p = s.get(models.KeystoneProject, ident)
    if p is None:
        raise NotFound(f"Could not find project: {ident}.")
    return p


def get_user(s: Session, ident: str) -> models.KeystoneUser:
    u = s.get(models.KeystoneUser, ident)
    if u is None:
        raise NotFound(f"Could not find user: {ident}.")
    return u


def get_role(s: Session, ident: str) -> models.KeystoneRole:
    r = s.get(models.KeystoneRole, ident)
    if r is None:
        raise NotFound(f"Could not find role: {ident}.")
    return r


def expand_roles(names: list[str]) -> list[str]:
    """``names`` and what they imply (admin -> member -> reader), in that order, once each."""
    out: list[str] = []
    todo = list(names)
    while todo:
        n = todo.pop(0)
        if n not in out:
            out.append(n)
            todo.extend(IMPLIES.get(n, ()))
    return out


def roles_on(s: Session, user_id: str, project_id: str) -> list[models.KeystoneRole]:
    """The roles ``user_id`` is assigned on ``project_id`` (not implied ones)."""
    return list(s.scalars(select(models.KeystoneRole).join(
        models.KeystoneAssignment, models.KeystoneAssignment.role_id == models.KeystoneRole.id).where(
        models.KeystoneAssignment.user_id == user_id, models.KeystoneAssignment.project_id == project_id)
        .order_by(models.KeystoneRole.seq)).all())


def is_cloud_admin(s: Session, user_id: str) -> bool:
    """Whether the user holds the admin role on some project (Keystone's policy: admin is global)."""
    return s.scalar(select(models.KeystoneAssignment.role_id).join(
        models.KeystoneRole, models.KeystoneAssignment.role_id == models.KeystoneRole.id).where(
        models.KeystoneAssignment.user_id == user_id, models.KeystoneRole.name == "admin").limit(1)) is not None


def token_roles(s: Session, user: models.KeystoneUser, project: models.KeystoneProject) -> list[str] | None:
    """The role names a token of ``user`` scoped to ``project`` carries (implied ones included), or
    None when the user may not scope there. The cloud's admins may scope to every project, with the
    roles they hold where they hold the admin role."""
    names = [r.name for r in roles_on(s, user.id, project.id)]
    if names:
        return expand_roles(names)
    if is_cloud_admin(s, user.id):
        admin_on = s.scalars(select(models.KeystoneAssignment.project_id).join(
            models.KeystoneRole, models.KeystoneAssignment.role_id == models.KeystoneRole.id).where(
            models.KeystoneAssignment.user_id == user.id, models.KeystoneRole.name == "admin")).first()
        return expand_roles([r.name for r in roles_on(s, user.id, admin_on or "")]) or ["admin", "member", "reader"]
    return None


def user_projects(s: Session, user_id: str) -> list[models.KeystoneProject]:
    """The projects the user holds a role on."""
    return list(s.scalars(select(models.KeystoneProject).where(models.KeystoneProject.id.in_(
        select(models.KeystoneAssignment.project_id).where(models.KeystoneAssignment.user_id == user_id)))
        .order_by(models.KeystoneProject.seq)).all())


# -- input ----------------------------------------------------------------------------------------

def _str(body: dict[str, Any], key: str, *, required: bool = False, max_len: int = 255,
         nullable: bool = False) -> str | None:
    if key not in body:
        if required:
            raise InvalidInput(f"Invalid input for field '{key}': '{key}' is a required property")
        return None
    v = body[key]
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        raise InvalidInput(f"Invalid input for field '{key}': {v!r} is not of type 'string'")
    if required and not v.strip():
        raise InvalidInput(f"Invalid input for field '{key}': {v!r} is too short")
    if len(v) > max_len:
        raise InvalidInput(f"Invalid input for field '{key}': {v!r} is too long")
    return v


def _bool(body: dict[str, Any], key: str) -> bool | None:
    if key not in body:
        return None
    v = body[key]
    if not isinstance(v, bool):
        raise InvalidInput(f"Invalid input for field '{key}': {v!r} is not of type 'boolean'")
    return v


def _tags(body: dict[str, Any]) -> list[str] | None:
    if "tags" not in body:
        return None
    v = body["tags"]
    if not isinstance(v, list) or not all(isinstance(t, str) and 0 < len(t) <= 255 for t in v):
        raise InvalidInput(f"Invalid input for field 'tags': {v!r} is not a list of tags")
    return list(dict.fromkeys(v))


def entity(body: Any, key: str) -> dict[str, Any]:
    """The ``{key: {...}}`` object of a request body."""
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise InvalidInput(f"Invalid input for field '{key}': '{key}' is a required property")
    return dict(body[key])


_PROJECT_KEYS = {"name", "domain_id", "description", "enabled", "is_domain", "parent_id", "tags", "options", "id"}
_USER_KEYS_RESERVED = {"id", "name", "domain_id", "password", "enabled", "default_project_id", "description",
                       "options", "federated", "links"}


# -- domains --------------------------------------------------------------------------------------

def create_domain(s: Session, body: dict[str, Any]) -> models.KeystoneDomain:
    name = _str(body, "name", required=True, max_len=64)
    assert name is not None
    if s.scalar(select(models.KeystoneDomain).where(models.KeystoneDomain.name == name)) is not None:
        raise Conflict("Conflict occurred attempting to store project - it is not permitted to have two projects "
                       f"acting as domains with the same name: {name}.")
    d = models.KeystoneDomain(id=new_id(), name=name, description=_str(body, "description", max_len=65535) or "",
                              enabled=_bool(body, "enabled") is not False, tags=_tags(body) or [])
    s.add(d)
    s.flush()
    return d


def update_domain(s: Session, ident: str, body: dict[str, Any]) -> models.KeystoneDomain:
    d = get_domain(s, ident)
    name = _str(body, "name", max_len=64)
    if name is not None and name != d.name:
        if s.scalar(select(models.KeystoneDomain).where(models.KeystoneDomain.name == name)) is not None:
            raise Conflict("Conflict occurred attempting to store project - it is not permitted to have two "
                           f"projects acting as domains with the same name: {name}.")
        d.name = name
    enabled = _bool(body, "enabled")
    if enabled is False and d.id == DEFAULT_DOMAIN:
        raise NotAuthorized("You are not authorized to perform the requested action: the default domain cannot "
                            "be disabled.")
    if enabled is not None:
        d.enabled = enabled
    desc = _str(body, "description", max_len=65535, nullable=True)
    if "description" in body:
        d.description = desc or ""
    tags = _tags(body)
    if tags is not None:
        d.tags = tags
    s.flush()
    return d


def delete_domain(s: Session, ident: str) -> list[str]:
    """Delete a disabled domain with its projects and users; the ids of the projects and users gone."""
    d = get_domain(s, ident)
    if d.enabled:
        raise NotAuthorized("Cannot delete a domain that is enabled, please disable it first.")
    gone: list[str] = []
    for p in s.scalars(select(models.KeystoneProject).where(models.KeystoneProject.domain_id == d.id)).all():
        gone += delete_project(s, p.id)
    for u in s.scalars(select(models.KeystoneUser).where(models.KeystoneUser.domain_id == d.id)).all():
        gone += delete_user(s, u.id)
    s.delete(d)
    s.flush()
    return gone


# -- projects -------------------------------------------------------------------------------------

def _project_conflict(name: str, pid: str) -> Conflict:
    return Conflict("Conflict occurred attempting to store project - it is not permitted to have two projects "
                    f"with either the same name or same id in the same domain: name is {name}, project id {pid}.")


def create_project(s: Session, body: dict[str, Any], default_domain: str) -> models.KeystoneProject:
    name = _str(body, "name", required=True, max_len=64)
    assert name is not None
    if body.get("is_domain") is True:
        raise InvalidInput("Invalid input for field 'is_domain': projects acting as domains are not supported")
    domain_id = _str(body, "domain_id", max_len=64) or default_domain
    parent = _str(body, "parent_id", max_len=64, nullable=True)
    if parent and parent != domain_id:
        get_project(s, parent)
    domain = s.get(models.KeystoneDomain, domain_id)
    if domain is None:
        raise InvalidInput(f"Could not find domain: {domain_id}.")
    pid = new_id()
    if s.scalar(select(models.KeystoneProject).where(models.KeystoneProject.domain_id == domain_id,
                                                     models.KeystoneProject.name == name)) is not None:
        raise _project_conflict(name, pid)
    p = models.KeystoneProject(id=pid, name=name, domain_id=domain_id,
                               description=_str(body, "description", max_len=65535, nullable=True) or "",
                               enabled=_bool(body, "enabled") is not False, tags=_tags(body) or [],
                               seq=_next_seq(s, models.KeystoneProject))
    s.add(p)
    s.flush()
    return p


def update_project(s: Session, ident: str, body: dict[str, Any]) -> models.KeystoneProject:
    p = get_project(s, ident)
    if "domain_id" in body and body["domain_id"] != p.domain_id:
        raise InvalidInput("Update of `domain_id` is not allowed.")
    name = _str(body, "name", max_len=64)
    if name is not None and name != p.name:
        if s.scalar(select(models.KeystoneProject).where(models.KeystoneProject.domain_id == p.domain_id,
                                                         models.KeystoneProject.name == name)) is not None:
            raise _project_conflict(name, p.id)
        p.name = name
    enabled = _bool(body, "enabled")
    if enabled is not None:
        p.enabled = enabled
    if "description" in body:
        p.description = _str(body, "description", max_len=65535, nullable=True) or ""
    tags = _tags(body)
    if tags is not None:
        p.tags = tags
    s.flush()
    return p


def delete_project(s: Session, ident: str) -> list[str]:
    p = get_project(s, ident)
    s.execute(delete(models.KeystoneAssignment).where(models.KeystoneAssignment.project_id == p.id))
    for u in s.scalars(select(models.KeystoneUser).where(models.KeystoneUser.default_project_id == p.id)).all():
        u.default_project_id = None  # as Keystone: the reference goes, the user stays
    s.delete(p)
    s.flush()
    return [p.id]


# -- users ----------------------------------------------------------------------------------------

def _user_conflict(name: str, domain_id: str) -> Conflict:
    return Conflict(f"Conflict occurred attempting to store user - Duplicate entry found with name {name} at "
                    f"domain ID {domain_id}.")


def create_user(s: Session, body: dict[str, Any], default_domain: str) -> models.KeystoneUser:
    name = _str(body, "name", required=True, max_len=255)
    assert name is not None
    domain_id = _str(body, "domain_id", max_len=64) or default_domain
    if s.get(models.KeystoneDomain, domain_id) is None:
        raise InvalidInput(f"Could not find domain: {domain_id}.")
    password = _str(body, "password", max_len=4096, nullable=True)
    project = _str(body, "default_project_id", max_len=64, nullable=True)
    if project:
        get_project(s, project)
    if s.scalar(select(models.KeystoneUser).where(models.KeystoneUser.domain_id == domain_id,
                                                  models.KeystoneUser.name == name)) is not None:
        raise _user_conflict(name, domain_id)
    extra = {k: v for k, v in body.items() if k not in _USER_KEYS_RESERVED}
    u = models.KeystoneUser(id=new_id(), name=name, domain_id=domain_id,
                            password=hash_password(password) if password else None,
                            enabled=_bool(body, "enabled") is not False, default_project_id=project or None,
                            description=_str(body, "description", max_len=65535, nullable=True), extra=extra,
                            seq=_next_seq(s, models.KeystoneUser))
    s.add(u)
    s.flush()
    return u


def update_user(s: Session, ident: str, body: dict[str, Any]) -> models.KeystoneUser:
    u = get_user(s, ident)
    if "domain_id" in body and body["domain_id"] != u.domain_id:
        raise InvalidInput("Update of `domain_id` is not allowed.")
    name = _str(body, "name", max_len=255)
    if name is not None and name != u.name:
        if s.scalar(select(models.KeystoneUser).where(models.KeystoneUser.domain_id == u.domain_id,
                                                      models.KeystoneUser.name == name)) is not None:
            raise _user_conflict(name, u.domain_id)
        u.name = name
    enabled = _bool(body, "enabled")
    if enabled is not None:
        u.enabled = enabled
    if "password" in body:
        pw = _str(body, "password", max_len=4096, nullable=True)
        u.password = hash_password(pw) if pw else None
    if "default_project_id" in body:
        project = _str(body, "default_project_id", max_len=64, nullable=True)
        if project:
            get_project(s, project)
        u.default_project_id = project or None
    if "description" in body:
        u.description = _str(body, "description", max_len=65535, nullable=True)
    extra = {k: v for k, v in body.items() if k not in _USER_KEYS_RESERVED}
    if extra:
        u.extra = {**(u.extra or {}), **extra}
    s.flush()
    return u


def delete_user(s: Session, ident: str) -> list[str]:
    u = get_user(s, ident)
    s.execute(delete(models.KeystoneAssignment).where(models.KeystoneAssignment.user_id == u.id))
    s.delete(u)
    s.flush()
    return [u.id]


# -- roles and assignments ------------------------------------------------------------------------

def create_role(s: Session, body: dict[str, Any]) -> models.KeystoneRole:
    name = _str(body, "name", required=True, max_len=255)
    assert name is not None
    if body.get("domain_id") is not None:
        raise InvalidInput("Invalid input for field 'domain_id': domain-specific roles are not supported")
    if s.scalar(select(models.KeystoneRole).where(func.lower(models.KeystoneRole.name) == name.lower())) is not None:
        raise Conflict(f"Conflict occurred attempting to store role - Duplicate entry found with name {name}.")
    r = models.KeystoneRole(id=new_id(), name=name, description=_str(body, "description", max_len=255,
                                                                      nullable=True),
                            seq=_next_seq(s, models.KeystoneRole))
    s.add(r)
    s.flush()
    return r


def update_role(s: Session, ident: str, body: dict[str, Any]) -> models.KeystoneRole:
    r = get_role(s, ident)
    name = _str(body, "name", max_len=255)
    if name is not None and name != r.name:
        if s.scalar(select(models.KeystoneRole).where(models.KeystoneRole.name == name)) is not None:
            raise Conflict(f"Conflict occurred attempting to store role - Duplicate entry found with name {name}.")
        r.name = name
    if "description" in body:
        r.description = _str(body, "description", max_len=255, nullable=True)
    s.flush()
    return r


def delete_role(s: Session, ident: str) -> list[str]:
    """Delete a role and its assignments; the users who held it."""
    r = get_role(s, ident)
    holders = list(s.scalars(select(models.KeystoneAssignment.user_id)
                             .where(models.KeystoneAssignment.role_id == r.id)).all())
    s.execute(delete(models.KeystoneAssignment).where(models.KeystoneAssignment.role_id == r.id))
    s.delete(r)
    s.flush()
    return holders


def _grant_targets(s: Session, project_id: str, user_id: str, rid: str) -> None:
    get_project(s, project_id)
    get_user(s, user_id)
    get_role(s, rid)


def grant(s: Session, project_id: str, user_id: str, rid: str) -> None:
    _grant_targets(s, project_id, user_id, rid)
    if s.get(models.KeystoneAssignment, (user_id, project_id, rid)) is None:
        s.add(models.KeystoneAssignment(user_id=user_id, project_id=project_id, role_id=rid))
        s.flush()


def _no_assignment(project_id: str, user_id: str, rid: str) -> NotFound:
    return NotFound(f"Could not find role assignment with role: {rid}, user or group: {user_id}, project, domain, "
                    f"or system: {project_id}.")


def check_grant(s: Session, project_id: str, user_id: str, rid: str) -> None:
    _grant_targets(s, project_id, user_id, rid)
    if s.get(models.KeystoneAssignment, (user_id, project_id, rid)) is None:
        raise _no_assignment(project_id, user_id, rid)


def revoke(s: Session, project_id: str, user_id: str, rid: str) -> None:
    _grant_targets(s, project_id, user_id, rid)
    a = s.get(models.KeystoneAssignment, (user_id, project_id, rid))
    if a is None:
        raise _no_assignment(project_id, user_id, rid)
    s.delete(a)
    s.flush()


def assignments(s: Session, *, user_id: str | None = None, project_id: str | None = None,
                role_id_: str | None = None, effective: bool = False) -> list[tuple[str, str, str, str | None]]:
    """(user, project, role, prior role) of each assignment matching the filters; ``effective`` adds
    the roles the assigned ones imply (with the role that implies them), as Keystone's
    ``effective`` listing does."""
    q = select(models.KeystoneAssignment.user_id, models.KeystoneAssignment.project_id,
               models.KeystoneAssignment.role_id)
    if user_id is not None:
        q = q.where(models.KeystoneAssignment.user_id == user_id)
    if project_id is not None:
        q = q.where(models.KeystoneAssignment.project_id == project_id)
    rows: list[tuple[str, str, str, str | None]] = [(u, p, r, None) for u, p, r in s.execute(q).all()]
    if effective:
        by_name = {r.name: r.id for r in s.scalars(select(models.KeystoneRole)).all()}
        by_id = {v: k for k, v in by_name.items()}
        seen = {(u, p, r) for u, p, r, _ in rows}
        todo: list[tuple[str, str, str, str | None]] = list(rows)
        while todo:
            u, p, r, _prior = todo.pop(0)
            for implied in IMPLIES.get(by_id.get(r, ""), ()):
                iid = by_name.get(implied)
                if iid and (u, p, iid) not in seen:
                    seen.add((u, p, iid))
                    item = (u, p, iid, r)
                    rows.append(item)
                    todo.append(item)
    if role_id_ is not None:
        rows = [row for row in rows if row[2] == role_id_]
    return rows
