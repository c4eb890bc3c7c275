"""Keystone v3: version discovery, password and token authentication with a service catalog
(identity, network, compute, image), token validation and revocation, and the identity
management API (domains, projects, users, passwords, roles, role assignments) over the cloud's
database (``neutrino.services.keystone``). Tokens live in memory; after a restart clients
re-authenticate on 401. A token is revoked when its project or user is deleted or disabled, its
user's password changes, or the role assignment it stands on is removed.

Management takes the admin role (403 in Keystone's shape otherwise); a user reads itself, its
projects and the project its token is scoped to, and changes its own password.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from neutrino.api.common import base_url, json_response, keystone_error, read_json
from neutrino.db import models
from neutrino.errors import InvalidInput, NotAuthenticated, NotAuthorized, NotFound
from neutrino.scenarios.model import Identity
from neutrino.services import keystone as ks
from neutrino.services.core import Context

if TYPE_CHECKING:
    from neutrino.db.session import Database

TOKEN_TTL = 24 * 3600
_PROJECT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DOMAIN = {"id": "default", "name": "Default"}


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    user_id: str
    user_name: str
    user_domain: dict[str, str]
    project_id: str | None  # None: unscoped
    project_name: str
    project_domain: dict[str, str]
    roles: tuple[tuple[str, str], ...]  # (id, name), implied roles included
    expires: float
    issued: float
    methods: tuple[str, ...]

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.roles)


@dataclass
class Auth:
    """Authentication state: the mode, the scenario's identity (what the database starts with), the
    database the identity data lives in, and the issued tokens."""

    mode: str  # "keystone" | "noauth"
    identity: Identity
    tokens: dict[str, Token] = field(default_factory=dict)
    db: Database | None = None
    # each token's context, made once: keyed by the token's id and kept with the token it was made
    # from (a token is immutable; a re-issued or revoked one is another object or none: made again)
    _contexts: dict[str, tuple[Token, Context]] = field(default_factory=dict, repr=False, compare=False)

    def attach(self, db: Database) -> None:
        """Keep identity data in ``db``, filling it from the scenario where it lacks it."""
        self.db = db
        with db.write() as s:
            ks.bootstrap(s, self.identity)

    def default_context(self, request: Request) -> Context:
        project = request.headers.get("x-project-id") or request.headers.get("x-tenant-id")
        if project is not None and not _PROJECT_ID.fullmatch(project):
            raise InvalidInput(f"Invalid project id in the X-Project-Id header: {project[:80]!r}")
        admin = next((u for u in self.identity.users if "admin" in u.roles), None)
        pid = project or Identity.project_id(admin.project if admin else "admin")
        return Context(pid, Identity.user_id(admin.name) if admin else "", True, ("admin", "member", "reader"))

    def token(self, request: Request) -> Token | None:
        tok = self.tokens.get(request.headers.get("x-auth-token", ""))
        if tok is None or tok.expires < time.time():
            return None
        return tok

    def context(self, request: Request) -> Context | None:
        """The caller's context, or None if a token is required and missing, invalid or unscoped."""
        if self.mode == "noauth":
            return self.default_context(request)
        tok = self.token(request)
        if tok is None or tok.project_id is None:
            return None
        kept = self._contexts.get(tok.id)
        if kept is not None and kept[0] is tok:
            return kept[1]
        if len(self._contexts) > 2 * len(self.tokens) + 64:  # those of revoked tokens
            self._contexts.clear()
        roles = tok.role_names
        ctx = Context(tok.project_id, tok.user_id, "admin" in roles, roles)
        self._contexts[tok.id] = (tok, ctx)
        return ctx

    def revoke(self, pred: Callable[[Token], bool]) -> None:
        """Drop every token ``pred`` holds for (Keystone's revocation events)."""
        for tid in [t.id for t in self.tokens.values() if pred(t)]:
            self.tokens.pop(tid, None)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


__all__ = ["Auth", "Token", "catalog", "handle", "keystone_error"]


def _version(base: str) -> dict[str, Any]:
    return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]}


def catalog(base: str, region: str) -> list[dict[str, Any]]:
    def svc(kind: str, name: str, url: str) -> dict[str, Any]:
        return {"id": f"{kind}-service", "type": kind, "name": name, "endpoints": [
            {"id": f"{kind}-{i}", "interface": i, "region": region, "region_id": region, "url": url}
            for i in ("public", "internal", "admin")]}
    return [svc("identity", "keystone", f"{base}/identity"), svc("network", "neutron", f"{base}/"),
            svc("compute", "nova", f"{base}/compute/v2.1"), svc("image", "glance", f"{base}/image")]


def _token_body(auth: Auth, tok: Token, base: str, with_catalog: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "methods": list(tok.methods), "expires_at": _iso(tok.expires), "issued_at": _iso(tok.issued),
        "audit_ids": [tok.id[:22]],
        "user": {"id": tok.user_id, "name": tok.user_name, "domain": dict(tok.user_domain),
                 "password_expires_at": None},
    }
    if tok.project_id is not None:
        body["project"] = {"id": tok.project_id, "name": tok.project_name, "domain": dict(tok.project_domain)}
        body["is_domain"] = False
        body["roles"] = [{"id": rid, "name": name} for rid, name in tok.roles]
        if with_catalog:
            body["catalog"] = catalog(base, auth.identity.region)
    return {"token": body}


def _field(value: Any, path: str, kind: type, *, required: bool = True) -> Any:
    """``value`` when it is a ``kind``; else Keystone's schema error (400)."""
    if value is None and not required:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        if value is None:
            raise InvalidInput(f"Invalid input for field '{path}': '{path.rsplit('/', 1)[-1]}' is a required "
                               "property")
        names: dict[type, str] = {dict: "object", list: "array", str: "string"}
        raise InvalidInput(f"Invalid input for field '{path}': {value!r} is not of type "
                           f"'{names.get(kind, kind.__name__)}'")
    return value


def _unauthorized() -> PermissionError:
    return PermissionError("The request you have made requires authentication.")


def _find_user(s: Session, ref: dict[str, Any]) -> models.KeystoneUser | None:
    if isinstance(ref.get("id"), str):
        return s.get(models.KeystoneUser, ref["id"])
    if not isinstance(ref.get("name"), str):
        return None
    domain = ks.find_domain(s, ref["domain"]) if "domain" in ref else s.get(models.KeystoneDomain, ks.DEFAULT_DOMAIN)
    if domain is None:
        return None
    return s.scalar(select(models.KeystoneUser).where(models.KeystoneUser.name == ref["name"],
                                                      models.KeystoneUser.domain_id == domain.id))


def _find_project(s: Session, ref: Any) -> models.KeystoneProject | None:
    if not isinstance(ref, dict):
        return None
    if isinstance(ref.get("id"), str):
        return s.get(models.KeystoneProject, ref["id"])
    if not isinstance(ref.get("name"), str):
        return None
    domain = ks.find_domain(s, ref["domain"]) if "domain" in ref else s.get(models.KeystoneDomain, ks.DEFAULT_DOMAIN)
    if domain is None:
        return None
    return s.scalar(select(models.KeystoneProject).where(models.KeystoneProject.name == ref["name"],
                                                         models.KeystoneProject.domain_id == domain.id))


def _domain_ref(s: Session, domain_id: str) -> dict[str, str]:
    d = s.get(models.KeystoneDomain, domain_id)
    return {"id": domain_id, "name": d.name if d else domain_id}


def _enabled_in_domain(s: Session, domain_id: str) -> bool:
    d = s.get(models.KeystoneDomain, domain_id)
    return d is not None and d.enabled


def _scoped(s: Session, user: models.KeystoneUser, project: models.KeystoneProject) -> list[tuple[str, str]] | None:
    """The roles (id, name) of a token of ``user`` on ``project``; None when it may not have one."""
    if not project.enabled or not _enabled_in_domain(s, project.domain_id):
        return None
    names = ks.token_roles(s, user, project)
    if names is None:
        return None
    ids = {r.name: r.id for r in s.scalars(select(models.KeystoneRole)
                                            .where(models.KeystoneRole.name.in_(names))).all()}
    return [(ids.get(n, ks.role_id(n)), n) for n in names]


def _authenticate(auth: Auth, body: Any) -> Token:
    if not isinstance(body, dict) or not isinstance(body.get("auth"), dict):
        raise InvalidInput("Expecting to find auth in request body.")
    assert auth.db is not None
    a = body["auth"]
    ident = _field(a.get("identity"), "auth/identity", dict)
    methods = _field(ident.get("methods"), "auth/identity/methods", list)
    if not all(isinstance(m, str) for m in methods):
        raise InvalidInput("Invalid input for field 'auth/identity/methods': the methods must be strings")
    with auth.db.read() as s:
        user: models.KeystoneUser | None = None
        project: models.KeystoneProject | None = None
        explicit = isinstance(a.get("scope"), dict) and "project" in a["scope"]
        if "password" in methods:
            pw = _field(ident.get("password"), "auth/identity/password", dict)
            pu = _field(pw.get("user"), "auth/identity/password/user", dict)
            for k in ("name", "id", "password"):
                _field(pu.get(k), f"auth/identity/password/user/{k}", str, required=False)
            user = _find_user(s, pu)
            if user is None or not ks.check_password(user.password, pu.get("password") or ""):
                raise _unauthorized()
        elif "token" in methods:
            tk = _field(ident.get("token"), "auth/identity/token", dict)
            old = auth.tokens.get(_field(tk.get("id"), "auth/identity/token/id", str))
            if old is None or old.expires < time.time():
                raise _unauthorized()
            user = s.get(models.KeystoneUser, old.user_id)
            if user is None:
                raise _unauthorized()
            if old.project_id is not None and not explicit:
                project = s.get(models.KeystoneProject, old.project_id)
        else:
            raise _unauthorized()
        if not user.enabled or not _enabled_in_domain(s, user.domain_id):
            raise _unauthorized()
        if explicit:
            project = _find_project(s, a["scope"]["project"])
            if project is None:
                raise _unauthorized()
        elif project is None and user.default_project_id:
            default = s.get(models.KeystoneProject, user.default_project_id)
            if default is not None and _scoped(s, user, default) is not None:
                project = default
        roles: list[tuple[str, str]] = []
        if project is not None:
            got = _scoped(s, user, project)
            if got is None:
                # Keystone: a user with no role on the project gets no token for it
                raise _unauthorized()
            roles = got
        now = time.time()
        tok = Token(secrets.token_hex(16), user.id, user.name, _domain_ref(s, user.domain_id),
                    project.id if project else None, project.name if project else "",
                    _domain_ref(s, project.domain_id) if project else {}, tuple(roles), now + TOKEN_TTL, now,
                    tuple(methods))
    auth.tokens[tok.id] = tok
    return tok


AUTH_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["auth"], "properties": {"auth": {
        "type": "object", "required": ["identity"], "properties": {
            "identity": {"type": "object", "required": ["methods"], "properties": {
                "methods": {"type": "array", "items": {"type": "string", "enum": ["password", "token"]}},
                "password": {"type": "object", "properties": {"user": {"type": "object", "properties": {
                    "name": {"type": "string"}, "id": {"type": "string"}, "password": {"type": "string"},
                    "domain": {"type": "object"}}}}},
                "token": {"type": "object", "properties": {"id": {"type": "string"}}}}},
            "scope": {"type": "object", "properties": {"project": {"type": "object", "properties": {
                "name": {"type": "string"}, "id": {"type": "string"}, "domain": {"type": "object"}}}}}}}},
}


def _entity_schema(key: str, props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        inner["required"] = list(required)
    return {"type": "object", "required": [key], "properties": {key: inner}}


_S = {"type": "string"}
_B = {"type": "boolean"}
_TAGS = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 255}}
PROJECT_SCHEMA = _entity_schema("project", {"name": {"type": "string", "minLength": 1, "maxLength": 64},
                                            "domain_id": _S, "description": {"type": ["string", "null"]},
                                            "enabled": _B, "parent_id": {"type": ["string", "null"]},
                                            "tags": _TAGS}, ("name",))
PROJECT_UPDATE = _entity_schema("project", {"name": {"type": "string", "minLength": 1, "maxLength": 64},
                                            "description": {"type": ["string", "null"]}, "enabled": _B,
                                            "tags": _TAGS})
USER_SCHEMA = _entity_schema("user", {"name": {"type": "string", "minLength": 1, "maxLength": 255},
                                      "domain_id": _S, "password": {"type": ["string", "null"]}, "enabled": _B,
                                      "default_project_id": {"type": ["string", "null"]},
                                      "description": {"type": ["string", "null"]}, "email": _S}, ("name",))
USER_UPDATE = _entity_schema("user", {"name": {"type": "string", "minLength": 1, "maxLength": 255},
                                      "password": {"type": ["string", "null"]}, "enabled": _B,
                                      "default_project_id": {"type": ["string", "null"]},
                                      "description": {"type": ["string", "null"]}, "email": _S})
PASSWORD_SCHEMA = _entity_schema("user", {"password": _S, "original_password": _S}, ("password", "original_password"))
DOMAIN_SCHEMA = _entity_schema("domain", {"name": {"type": "string", "minLength": 1, "maxLength": 64},
                                          "description": {"type": ["string", "null"]}, "enabled": _B,
                                          "tags": _TAGS}, ("name",))
DOMAIN_UPDATE = _entity_schema("domain", {"name": {"type": "string", "minLength": 1, "maxLength": 64},
                                          "description": {"type": ["string", "null"]}, "enabled": _B,
                                          "tags": _TAGS})
ROLE_SCHEMA = _entity_schema("role", {"name": {"type": "string", "minLength": 1, "maxLength": 255},
                                      "description": {"type": ["string", "null"]}}, ("name",))
ROLE_UPDATE = _entity_schema("role", {"name": {"type": "string", "minLength": 1, "maxLength": 255},
                                      "description": {"type": ["string", "null"]}})

_GRANT = "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"
# (method, path below /identity, summary, request body schema): the routes, for the OpenAPI document
ROUTES: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    ("GET", "/", "The Identity API versions (300 Multiple Choices)", None),
    ("GET", "/v3", "Identity v3", None),
    ("POST", "/v3/auth/tokens", "Authenticate (password or token), scoped to a project", AUTH_SCHEMA),
    ("GET", "/v3/auth/tokens", "Validate the token in X-Subject-Token", None),
    ("HEAD", "/v3/auth/tokens", "Check the token in X-Subject-Token", None),
    ("DELETE", "/v3/auth/tokens", "Revoke the token in X-Subject-Token", None),
    ("GET", "/v3/auth/catalog", "The service catalog", None),
    ("GET", "/v3/auth/projects", "The projects the token's user holds a role on", None),
    ("GET", "/v3/projects", "Projects (admin; filters name, domain_id, enabled)", None),
    ("POST", "/v3/projects", "Create a project (admin)", PROJECT_SCHEMA),
    ("GET", "/v3/projects/{project_id}", "A project (admin, or a token scoped to it)", None),
    ("PATCH", "/v3/projects/{project_id}", "Update a project (admin)", PROJECT_UPDATE),
    ("DELETE", "/v3/projects/{project_id}", "Delete a project and its role assignments (admin)", None),
    ("GET", "/v3/projects/{project_id}/users/{user_id}/roles", "A user's roles on a project (admin)", None),
    ("PUT", _GRANT, "Assign a role to a user on a project (admin)", None),
    ("HEAD", _GRANT, "Check a role assignment (admin)", None),
    ("GET", _GRANT, "Check a role assignment (admin)", None),
    ("DELETE", _GRANT, "Unassign a role (admin)", None),
    ("GET", "/v3/users", "Users (admin; filters name, domain_id, enabled)", None),
    ("POST", "/v3/users", "Create a user (admin)", USER_SCHEMA),
    ("GET", "/v3/users/{user_id}", "A user (admin, or the user itself)", None),
    ("PATCH", "/v3/users/{user_id}", "Update a user (admin)", USER_UPDATE),
    ("DELETE", "/v3/users/{user_id}", "Delete a user and its role assignments (admin)", None),
    ("POST", "/v3/users/{user_id}/password", "Change one's own password", PASSWORD_SCHEMA),
    ("GET", "/v3/users/{user_id}/projects", "The projects a user holds a role on (admin, or itself)", None),
    ("GET", "/v3/domains", "Domains (admin)", None),
    ("POST", "/v3/domains", "Create a domain (admin)", DOMAIN_SCHEMA),
    ("GET", "/v3/domains/{domain_id}", "A domain (admin, or the domain of the token's project)", None),
    ("PATCH", "/v3/domains/{domain_id}", "Update a domain (admin)", DOMAIN_UPDATE),
    ("DELETE", "/v3/domains/{domain_id}", "Delete a disabled domain (admin)", None),
    ("GET", "/v3/roles", "Roles (admin; filter name)", None),
    ("POST", "/v3/roles", "Create a role (admin)", ROLE_SCHEMA),
    ("GET", "/v3/roles/{role_id}", "A role (admin)", None),
    ("PATCH", "/v3/roles/{role_id}", "Update a role (admin)", ROLE_UPDATE),
    ("DELETE", "/v3/roles/{role_id}", "Delete a role and its assignments (admin)", None),
    ("GET", "/v3/role_assignments", "Role assignments (admin; filters user.id, scope.project.id, role.id, "
                                    "effective, include_names)", None),
)

# the status of success where it is not the method's usual one (POST 201, DELETE 204, else 200)
OK_STATUS: dict[tuple[str, str], int] = {
    ("PUT", _GRANT): 204, ("HEAD", _GRANT): 204, ("GET", _GRANT): 204,
    ("POST", "/v3/users/{user_id}/password"): 204, ("HEAD", "/v3/auth/tokens"): 200,
}


def _match(path: list[str]) -> dict[str, str]:
    """The templates of ``ROUTES`` that ``path`` (segments below /identity) matches, by method."""
    out: dict[str, str] = {}
    for method, template, _, _ in ROUTES:
        segs = [s for s in template.split("/") if s]
        if len(segs) == len(path) and all(t.startswith("{") or t == p for t, p in zip(segs, path, strict=True)):
            out.setdefault(method, template)
    return out


def _allowed(path: list[str]) -> list[str]:
    """The methods ``ROUTES`` has for ``path`` (segments below /identity)."""
    return list(_match(path))


def _flag(request: Request, name: str) -> bool:
    """Keystone's boolean query flags: present and not '0'/'false'."""
    if name not in request.query_params:
        return False
    return request.query_params[name].lower() not in ("0", "false")


class _Call:
    """One identity management request: the caller, the database, the base URL."""

    def __init__(self, auth: Auth, request: Request, ctx: Context, tok: Token | None) -> None:
        assert auth.db is not None
        self.auth, self.request, self.ctx, self.tok, self.db = auth, request, ctx, tok, auth.db
        self.base = base_url(request) + "/identity/v3"

    def admin(self, action: str) -> None:
        if not self.ctx.is_admin:
            raise NotAuthorized(f"You are not authorized to perform the requested action: identity:{action}.")

    def links(self, what: str) -> dict[str, Any]:
        return {"self": f"{self.base}/{what}", "previous": None, "next": None}

    # -- representations ------------------------------------------------------------------------

    def project(self, p: models.KeystoneProject) -> dict[str, Any]:
        return {"id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description or "",
                "enabled": p.enabled, "is_domain": False, "parent_id": p.domain_id, "tags": list(p.tags or []),
                "options": {}, "links": {"self": f"{self.base}/projects/{p.id}"}}

    def user(self, u: models.KeystoneUser) -> dict[str, Any]:
        d: dict[str, Any] = {**(u.extra or {}), "id": u.id, "name": u.name, "domain_id": u.domain_id,
                             "enabled": u.enabled, "password_expires_at": None, "options": {},
                             "links": {"self": f"{self.base}/users/{u.id}"}}
        if u.default_project_id:
            d["default_project_id"] = u.default_project_id
        if u.description is not None:
            d["description"] = u.description
        return d

    def domain(self, d: models.KeystoneDomain) -> dict[str, Any]:
        return {"id": d.id, "name": d.name, "description": d.description or "", "enabled": d.enabled,
                "tags": list(d.tags or []), "options": {}, "links": {"self": f"{self.base}/domains/{d.id}"}}

    def role(self, r: models.KeystoneRole) -> dict[str, Any]:
        d: dict[str, Any] = {"id": r.id, "name": r.name, "domain_id": None, "options": {},
                             "links": {"self": f"{self.base}/roles/{r.id}"}}
        if r.description is not None:
            d["description"] = r.description
        return d

    async def body(self, key: str) -> dict[str, Any]:
        return ks.entity(await read_json(self.request), key)

    def default_domain(self) -> str:
        if self.tok is not None and self.tok.project_domain:
            return self.tok.project_domain["id"]
        return ks.DEFAULT_DOMAIN

    # -- projects -------------------------------------------------------------------------------

    async def projects(self, method: str, ids: list[str]) -> Response:
        q = self.request.query_params
        if method == "POST":
            self.admin("create_project")
            body = await self.body("project")
            with self.db.write() as s:
                return json_response({"project": self.project(ks.create_project(s, body, self.default_domain()))},
                                     201)
        if not ids:
            self.admin("list_projects")
            with self.db.read() as s:
                stmt = select(models.KeystoneProject).order_by(models.KeystoneProject.seq)
                if "name" in q:
                    stmt = stmt.where(models.KeystoneProject.name == q["name"])
                if "domain_id" in q:
                    stmt = stmt.where(models.KeystoneProject.domain_id == q["domain_id"])
                if "enabled" in q:
                    stmt = stmt.where(models.KeystoneProject.enabled == _flag(self.request, "enabled"))
                rows = [self.project(p) for p in s.scalars(stmt).all()]
            return json_response({"projects": rows, "links": self.links("projects")})
        pid = ids[0]
        if method == "GET":
            if not self.ctx.is_admin and pid != self.ctx.project_id:
                self.admin("get_project")
            with self.db.read() as s:
                return json_response({"project": self.project(ks.get_project(s, pid))})
        if method == "PATCH":
            self.admin("update_project")
            body = await self.body("project")
            with self.db.write() as s:
                p = ks.update_project(s, pid, body)
                out = self.project(p)
                disabled = not p.enabled
            if disabled:
                self.auth.revoke(lambda t: t.project_id == pid)
            return json_response({"project": out})
        self.admin("delete_project")
        with self.db.write() as s:
            ks.delete_project(s, pid)
        self.auth.revoke(lambda t: t.project_id == pid)
        return json_response(None, 204)

    async def grants(self, method: str, pid: str, uid: str, rid: str | None) -> Response:
        if rid is None:
            self.admin("list_grants")
            with self.db.read() as s:
                ks.get_project(s, pid)
                ks.get_user(s, uid)
                roles = [self.role(r) for r in ks.roles_on(s, uid, pid)]
            return json_response({"roles": roles, "links": self.links(f"projects/{pid}/users/{uid}/roles")})
        if method == "PUT":
            self.admin("create_grant")
            with self.db.write() as s:
                ks.grant(s, pid, uid, rid)
            return json_response(None, 204)
        if method in ("GET", "HEAD"):
            self.admin("check_grant")
            with self.db.read() as s:
                ks.check_grant(s, pid, uid, rid)
            return json_response(None, 204)
        self.admin("revoke_grant")
        with self.db.write() as s:
            ks.revoke(s, pid, uid, rid)
        self.auth.revoke(lambda t: t.user_id == uid and t.project_id == pid)
        return json_response(None, 204)

    # -- users ----------------------------------------------------------------------------------

    async def users(self, method: str, ids: list[str]) -> Response:
        q = self.request.query_params
        if ids[1:] == ["password"]:
            return await self.password(ids[0])
        if method == "POST":
            self.admin("create_user")
            body = await self.body("user")
            with self.db.write() as s:
                return json_response({"user": self.user(ks.create_user(s, body, self.default_domain()))}, 201)
        if not ids:
            self.admin("list_users")
            with self.db.read() as s:
                stmt = select(models.KeystoneUser).order_by(models.KeystoneUser.seq)
                if "name" in q:
                    stmt = stmt.where(models.KeystoneUser.name == q["name"])
                if "domain_id" in q:
                    stmt = stmt.where(models.KeystoneUser.domain_id == q["domain_id"])
                if "enabled" in q:
                    stmt = stmt.where(models.KeystoneUser.enabled == _flag(self.request, "enabled"))
                rows = [self.user(u) for u in s.scalars(stmt).all()]
            return json_response({"users": rows, "links": self.links("users")})
        uid = ids[0]
        is_self = uid == self.ctx.user_id
        if len(ids) == 2:  # projects
            if not is_self:
                self.admin("list_user_projects")
            with self.db.read() as s:
                ks.get_user(s, uid)
                rows = [self.project(p) for p in ks.user_projects(s, uid)]
            return json_response({"projects": rows, "links": self.links(f"users/{uid}/projects")})
        if method == "GET":
            if not is_self:
                self.admin("get_user")
            with self.db.read() as s:
                return json_response({"user": self.user(ks.get_user(s, uid))})
        if method == "PATCH":
            self.admin("update_user")
            body = await self.body("user")
            with self.db.write() as s:
                u = ks.update_user(s, uid, body)
                out = self.user(u)
                gone = not u.enabled or "password" in body
            if gone:
                self.auth.revoke(lambda t: t.user_id == uid)
            return json_response({"user": out})
        self.admin("delete_user")
        with self.db.write() as s:
            ks.delete_user(s, uid)
        self.auth.revoke(lambda t: t.user_id == uid)
        return json_response(None, 204)

    async def password(self, uid: str) -> Response:
        if uid != self.ctx.user_id:
            raise NotAuthorized("You are not authorized to perform the requested action: identity:change_password.")
        body = await self.body("user")
        for k in ("password", "original_password"):
            if not isinstance(body.get(k), str):
                raise InvalidInput(f"Invalid input for field '{k}': '{k}' is a required property")
        with self.db.write() as s:
            u = ks.get_user(s, uid)
            if not ks.check_password(u.password, body["original_password"]):
                raise NotAuthenticated("The request you have made requires authentication.")
            u.password = ks.hash_password(body["password"])
        self.auth.revoke(lambda t: t.user_id == uid)
        return json_response(None, 204)

    # -- domains and roles ----------------------------------------------------------------------

    async def domains(self, method: str, ids: list[str]) -> Response:
        if method == "POST":
            self.admin("create_domain")
            body = await self.body("domain")
            with self.db.write() as s:
                return json_response({"domain": self.domain(ks.create_domain(s, body))}, 201)
        if not ids:
            self.admin("list_domains")
            q = self.request.query_params
            with self.db.read() as s:
                stmt = select(models.KeystoneDomain).order_by(models.KeystoneDomain.name)
                if "name" in q:
                    stmt = stmt.where(models.KeystoneDomain.name == q["name"])
                if "enabled" in q:
                    stmt = stmt.where(models.KeystoneDomain.enabled == _flag(self.request, "enabled"))
                rows = [self.domain(d) for d in s.scalars(stmt).all()]
            return json_response({"domains": rows, "links": self.links("domains")})
        did = ids[0]
        if method == "GET":
            own = self.tok.project_domain.get("id") if self.tok is not None else None
            if not self.ctx.is_admin and did != own:
                self.admin("get_domain")
            with self.db.read() as s:
                return json_response({"domain": self.domain(ks.get_domain(s, did))})
        if method == "PATCH":
            self.admin("update_domain")
            body = await self.body("domain")
            with self.db.write() as s:
                d = ks.update_domain(s, did, body)
                out = self.domain(d)
                disabled = not d.enabled
            if disabled:
                self.auth.revoke(lambda t: did in (t.user_domain.get("id"), t.project_domain.get("id")))
            return json_response({"domain": out})
        self.admin("delete_domain")
        with self.db.write() as s:
            gone = set(ks.delete_domain(s, did))
        self.auth.revoke(lambda t: t.user_id in gone or t.project_id in gone)
        return json_response(None, 204)

    async def roles(self, method: str, ids: list[str]) -> Response:
        if method == "POST":
            self.admin("create_role")
            body = await self.body("role")
            with self.db.write() as s:
                return json_response({"role": self.role(ks.create_role(s, body))}, 201)
        if not ids:
            self.admin("list_roles")
            with self.db.read() as s:
                stmt = select(models.KeystoneRole).order_by(models.KeystoneRole.seq)
                if "name" in self.request.query_params:
                    stmt = stmt.where(models.KeystoneRole.name == self.request.query_params["name"])
                rows = [self.role(r) for r in s.scalars(stmt).all()]
            return json_response({"roles": rows, "links": self.links("roles")})
        rid = ids[0]
        if method == "GET":
            self.admin("get_role")
            with self.db.read() as s:
                return json_response({"role": self.role(ks.get_role(s, rid))})
        if method == "PATCH":
            self.admin("update_role")
            body = await self.body("role")
            with self.db.write() as s:
                return json_response({"role": self.role(ks.update_role(s, rid, body))})
        self.admin("delete_role")
        with self.db.write() as s:
            holders = set(ks.delete_role(s, rid))
        self.auth.revoke(lambda t: t.user_id in holders and any(r == rid for r, _ in t.roles))
        return json_response(None, 204)

    def role_assignments(self) -> Response:
        self.admin("list_role_assignments")
        q = self.request.query_params
        if "group.id" in q or "scope.domain.id" in q or "scope.system" in q:
            return json_response({"role_assignments": [], "links": self.links("role_assignments")})
        names = _flag(self.request, "include_names")
        with self.db.read() as s:
            rows = ks.assignments(s, user_id=q.get("user.id"), project_id=q.get("scope.project.id"),
                                  role_id_=q.get("role.id"), effective=_flag(self.request, "effective"))
            out = []
            for uid, pid, rid, prior in rows:
                item: dict[str, Any] = {"role": {"id": rid}, "user": {"id": uid}, "scope": {"project": {"id": pid}},
                                        "links": {"assignment": f"{self.base}/projects/{pid}/users/{uid}/roles/"
                                                                f"{prior or rid}"}}
                if prior:
                    item["links"]["prior_role"] = f"{self.base}/roles/{prior}"
                if names:
                    r = s.get(models.KeystoneRole, rid)
                    u = s.get(models.KeystoneUser, uid)
                    p = s.get(models.KeystoneProject, pid)
                    item["role"]["name"] = r.name if r else ""
                    if u is not None:
                        item["user"].update(name=u.name, domain=_domain_ref(s, u.domain_id))
                    if p is not None:
                        item["scope"]["project"].update(name=p.name, domain=_domain_ref(s, p.domain_id))
                out.append(item)
        return json_response({"role_assignments": out, "links": self.links("role_assignments")})


async def handle(auth: Auth, request: Request, path: str) -> Response:
    """``path`` is what follows ``/identity``."""
    base = base_url(request)
    parts = [p for p in path.split("/") if p]
    method = request.method
    allowed = _allowed(parts)
    if not allowed:
        return keystone_error(404, "The resource could not be found.")
    if method not in allowed and not (method == "HEAD" and "GET" in allowed):
        return keystone_error(405, "The method specified is not allowed for this resource.")
    if not parts:
        return json_response({"versions": {"values": [_version(base)]}}, 300)
    rest = parts[1:]
    if not rest:
        return json_response({"version": _version(base)})
    if rest == ["auth", "tokens"]:
        if method == "POST":
            try:
                body = await read_json(request)
                issued = _authenticate(auth, body)
            except PermissionError as e:
                return keystone_error(401, str(e))
            except InvalidInput as e:
                return keystone_error(400, str(e))
            return json_response(_token_body(auth, issued, base, "nocatalog" not in request.query_params), 201,
                                 {"X-Subject-Token": issued.id})
        if auth.mode == "keystone" and auth.token(request) is None:
            return keystone_error(401, "The request you have made requires authentication.")
        if method in ("GET", "HEAD"):
            sub = auth.tokens.get(request.headers.get("x-subject-token", ""))
            if sub is None or sub.expires < time.time():
                return keystone_error(404, "Could not find token.")
            if method == "HEAD":
                return Response(status_code=200, headers={"X-Subject-Token": sub.id})
            return json_response(_token_body(auth, sub, base, "nocatalog" not in request.query_params), 200,
                                 {"X-Subject-Token": sub.id})
        auth.tokens.pop(request.headers.get("x-subject-token", ""), None)
        return Response(status_code=204)
    tok = auth.token(request) if auth.mode == "keystone" else None
    if auth.mode == "keystone" and tok is None:
        return keystone_error(401, "The request you have made requires authentication.")
    if rest == ["auth", "catalog"]:
        return json_response({"catalog": catalog(base, auth.identity.region)})
    if tok is not None and tok.project_id is None:
        ctx = Context("", tok.user_id, False, ())
    else:
        ctx = auth.context(request) or auth.default_context(request)
    call = _Call(auth, request, ctx, tok)
    if rest == ["auth", "projects"]:
        with call.db.read() as s:
            rows = [call.project(p) for p in ks.user_projects(s, ctx.user_id)]
        return json_response({"projects": rows, "links": call.links("auth/projects")})
    kind, ids = rest[0], rest[1:]
    if method == "HEAD" and not (kind == "projects" and len(ids) == 5):
        method = "GET"  # HEAD answers as GET does (the server leaves the body out)
    if kind == "projects":
        if len(ids) >= 3:
            return await call.grants(method, ids[0], ids[2], ids[4] if len(ids) == 5 else None)
        return await call.projects(method, ids)
    if kind == "users":
        return await call.users(method, ids)
    if kind == "domains":
        return await call.domains(method, ids)
    if kind == "roles":
        return await call.roles(method, ids)
    if kind == "role_assignments":
        return call.role_assignments()
    raise NotFound("The resource could not be found.")
