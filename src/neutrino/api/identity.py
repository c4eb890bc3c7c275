"""Just enough Keystone v3: version discovery, password and token authentication with a service
catalog (identity, network, compute, image), token validation, projects and users from the
scenario's identity section. Tokens live in memory; after a restart clients re-authenticate on 401.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from neutrino.api.common import base_url, json_response, keystone_error, read_json
from neutrino.errors import InvalidInput
from neutrino.scenarios.model import Identity, User
from neutrino.services.core import Context

TOKEN_TTL = 24 * 3600
_PROJECT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DOMAIN = {"id": "default", "name": "Default"}


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    user: User
    project: str
    expires: float
    issued: float
    methods: tuple[str, ...]


@dataclass
class Auth:
    """Authentication state: the mode, the identity configuration and the issued tokens."""

    mode: str  # "keystone" | "noauth"
    identity: Identity
    tokens: dict[str, Token] = field(default_factory=dict)

    def default_context(self, request: Request) -> Context:
        project = request.headers.get("x-project-id") or request.headers.get("x-tenant-id")
        if project is not None and not _PROJECT_ID.fullmatch(project):
            raise InvalidInput(f"Invalid project id in the X-Project-Id header: {project[:80]!r}")
        admin = next((u for u in self.identity.users if "admin" in u.roles), None)
        pid = project or Identity.project_id(admin.project if admin else "admin")
        return Context(pid, Identity.user_id(admin.name) if admin else "", True, ("admin", "member", "reader"))

    def context(self, request: Request) -> Context | None:
        """The caller's context, or None if a token is required and missing or invalid."""
        if self.mode == "noauth":
            return self.default_context(request)
        tok = self.tokens.get(request.headers.get("x-auth-token", ""))
        if tok is None or tok.expires < time.time():
            return None
        return Context(Identity.project_id(tok.project), Identity.user_id(tok.user.name), "admin" in tok.user.roles,
                       tok.user.roles)


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
    u = tok.user
    body: dict[str, Any] = {
        "methods": list(tok.methods), "expires_at": _iso(tok.expires), "issued_at": _iso(tok.issued),
        "audit_ids": [tok.id[:22]],
        "user": {"id": Identity.user_id(u.name), "name": u.name, "domain": DOMAIN, "password_expires_at": None},
        "project": {"id": Identity.project_id(tok.project), "name": tok.project, "domain": DOMAIN},
        "is_domain": False,
        "roles": [{"id": f"role-{r}", "name": r} for r in u.roles],
    }
    if with_catalog:
        body["catalog"] = catalog(base, auth.identity.region)
    return {"token": body}


def may_scope(user: User, project: str) -> bool:
    """Whether ``user`` holds a role on ``project``: their own project, where their roles are
    assigned; the cloud's admins hold theirs on every project."""
    return project == user.project or "admin" in user.roles


def _find_project(auth: Auth, ref: Any) -> str | None:
    if not isinstance(ref, dict):
        return None
    for p in auth.identity.projects:
        if ref.get("id") in (p, Identity.project_id(p)) or ref.get("name") == p:
            return p
    return None


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


def _authenticate(auth: Auth, body: Any) -> Token:
    if not isinstance(body, dict) or not isinstance(body.get("auth"), dict):
        raise InvalidInput("Expecting to find auth in request body.")
    a = body["auth"]
    ident = _field(a.get("identity"), "auth/identity", dict)
    methods = _field(ident.get("methods"), "auth/identity/methods", list)
    if not all(isinstance(m, str) for m in methods):
        raise InvalidInput("Invalid input for field 'auth/identity/methods': the methods must be strings")
    user: User | None = None
    project: str | None = None
    if "password" in methods:
        pw = _field(ident.get("password"), "auth/identity/password", dict)
        pu = _field(pw.get("user"), "auth/identity/password/user", dict)
        for k in ("name", "id", "password"):
            _field(pu.get(k), f"auth/identity/password/user/{k}", str, required=False)
        user = next((u for u in auth.identity.users
                     if pu.get("name") == u.name or pu.get("id") == Identity.user_id(u.name)), None)
        if user is None or pu.get("password") != user.password:
            raise PermissionError("The request you have made requires authentication.")
    elif "token" in methods:
        tk = _field(ident.get("token"), "auth/identity/token", dict)
        old = auth.tokens.get(_field(tk.get("id"), "auth/identity/token/id", str))
        if old is None or old.expires < time.time():
            raise PermissionError("The request you have made requires authentication.")
        user, project = old.user, old.project
    else:
        raise PermissionError("The request you have made requires authentication.")
    scope = a.get("scope")
    if isinstance(scope, dict) and "project" in scope:
        project = _find_project(auth, scope["project"])
        if project is None or not may_scope(user, project):
            # Keystone: a user with no role on the project gets no token for it
            raise PermissionError("The request you have made requires authentication.")
    now = time.time()
    tok = Token(secrets.token_hex(16), user, project or user.project, now + TOKEN_TTL, now, tuple(methods))
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

# (method, path below /identity, summary, request body schema): the routes, for the OpenAPI document
ROUTES: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    ("GET", "/", "The Identity API versions (300 Multiple Choices)", None),
    ("GET", "/v3", "Identity v3", None),
    ("POST", "/v3/auth/tokens", "Authenticate (password or token), scoped to a project", AUTH_SCHEMA),
    ("GET", "/v3/auth/tokens", "Validate the token in X-Subject-Token", None),
    ("HEAD", "/v3/auth/tokens", "Check the token in X-Subject-Token", None),
    ("DELETE", "/v3/auth/tokens", "Revoke the token in X-Subject-Token", None),
    ("GET", "/v3/auth/catalog", "The service catalog", None),
    ("GET", "/v3/projects", "Projects", None),
    ("GET", "/v3/projects/{project_id}", "A project", None),
    ("GET", "/v3/users", "Users", None),
    ("GET", "/v3/users/{user_id}", "A user", None),
    ("GET", "/v3/domains", "Domains", None),
    ("GET", "/v3/domains/{domain_id}", "A domain", None),
)


def _allowed(path: list[str]) -> list[str]:
    """The methods ``ROUTES`` has for ``path`` (segments below /identity)."""
    out = []
    for method, template, _, _ in ROUTES:
        segs = [s for s in template.split("/") if s]
        if len(segs) == len(path) and all(t.startswith("{") or t == p for t, p in zip(segs, path, strict=True)):
            out.append(method)
    return out


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
                tok = _authenticate(auth, body)
            except PermissionError as e:
                return keystone_error(401, str(e))
            except InvalidInput as e:
                return keystone_error(400, str(e))
            return json_response(_token_body(auth, tok, base, "nocatalog" not in request.query_params), 201,
                                 {"X-Subject-Token": tok.id})
        if auth.mode == "keystone" and auth.context(request) is None:
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
    if auth.mode == "keystone" and auth.context(request) is None:
        return keystone_error(401, "The request you have made requires authentication.")
    if rest[0] == "projects":
        projects = [{"id": Identity.project_id(p), "name": p, "domain_id": "default", "enabled": True,
                     "description": "", "is_domain": False, "parent_id": "default", "tags": [], "options": {},
                     "links": {"self": f"{base}/identity/v3/projects/{Identity.project_id(p)}"}}
                    for p in auth.identity.projects]
        if len(rest) == 2:
            p = next((p for p in projects if p["id"] == rest[1]), None)
            return json_response({"project": p}) if p else keystone_error(404, f"Could not find project: {rest[1]}.")
        name = request.query_params.get("name")
        return json_response({"projects": [p for p in projects if name is None or p["name"] == name],
                              "links": {"self": f"{base}/identity/v3/projects", "next": None, "previous": None}})
    if rest[0] == "users":
        users = [{"id": Identity.user_id(u.name), "name": u.name, "domain_id": "default", "enabled": True,
                  "default_project_id": Identity.project_id(u.project), "password_expires_at": None, "options": {},
                  "links": {"self": f"{base}/identity/v3/users/{Identity.user_id(u.name)}"}}
                 for u in auth.identity.users]
        if len(rest) == 2:
            u = next((u for u in users if u["id"] == rest[1]), None)
            return json_response({"user": u}) if u else keystone_error(404, f"Could not find user: {rest[1]}.")
        name = request.query_params.get("name")
        return json_response({"users": [u for u in users if name is None or u["name"] == name],
                              "links": {"self": f"{base}/identity/v3/users", "next": None, "previous": None}})
    if rest[0] == "domains":
        d = {"id": "default", "name": "Default", "enabled": True, "description": "", "options": {}, "tags": [],
             "links": {"self": f"{base}/identity/v3/domains/default"}}
        if len(rest) == 2:
            return json_response({"domain": d}) if rest[1] in ("default", "Default") else \
                keystone_error(404, f"Could not find domain: {rest[1]}.")
        return json_response({"domains": [d], "links": {"self": f"{base}/identity/v3/domains"}})
    return json_response({"catalog": catalog(base, auth.identity.region)})
