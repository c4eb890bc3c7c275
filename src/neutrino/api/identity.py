"""Just enough Keystone v3: version discovery, password and token authentication with a service
catalog (identity, network, compute, image), token validation, projects and users from the
scenario's identity section. Tokens live in memory; after a restart clients re-authenticate on 401.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from neutrino.api.common import base_url, json_response, read_json
from neutrino.errors import InvalidInput
from neutrino.scenarios.model import Identity, User
from neutrino.services.core import Context

TOKEN_TTL = 24 * 3600
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


def keystone_error(status: int, message: str) -> Response:
    titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    return json_response({"error": {"code": status, "message": message, "title": titles.get(status, "Error")}},
                         status)


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


def _find_project(auth: Auth, ref: Any) -> str | None:
    if not isinstance(ref, dict):
        return None
    for p in auth.identity.projects:
        if ref.get("id") in (p, Identity.project_id(p)) or ref.get("name") == p:
            return p
    return None


def _authenticate(auth: Auth, body: Any) -> Token:
    try:
        a = body["auth"]
        methods = a["identity"]["methods"]
    except (TypeError, KeyError):
        raise InvalidInput("Expecting to find auth in request body.") from None
    user: User | None = None
    project: str | None = None
    if "password" in methods:
        pu = a["identity"].get("password", {}).get("user", {})
        user = next((u for u in auth.identity.users
                     if pu.get("name") == u.name or pu.get("id") == Identity.user_id(u.name)), None)
        if user is None or pu.get("password") != user.password:
            raise PermissionError("The request you have made requires authentication.")
    elif "token" in methods:
        old = auth.tokens.get(a["identity"].get("token", {}).get("id", ""))
        if old is None or old.expires < time.time():
            raise PermissionError("The request you have made requires authentication.")
        user, project = old.user, old.project
    else:
        raise PermissionError("The request you have made requires authentication.")
    scope = a.get("scope")
    if isinstance(scope, dict) and "project" in scope:
        project = _find_project(auth, scope["project"])
        if project is None:
            raise PermissionError("The request you have made requires authentication.")
    now = time.time()
    tok = Token(secrets.token_hex(16), user, project or user.project, now + TOKEN_TTL, now, tuple(methods))
    auth.tokens[tok.id] = tok
    return tok


async def handle(auth: Auth, request: Request, path: str) -> Response:
    """``path`` is what follows ``/identity``."""
    base = base_url(request)
    parts = [p for p in path.split("/") if p]
    method = request.method
    if not parts:
        return json_response({"versions": {"values": [_version(base)]}}, 300)
    if parts[0] != "v3":
        return keystone_error(404, "The resource could not be found.")
    rest = parts[1:]
    if not rest:
        return json_response({"version": _version(base)})
    if rest[:2] == ["auth", "tokens"]:
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
        if method in ("GET", "HEAD"):
            sub = auth.tokens.get(request.headers.get("x-subject-token", ""))
            if sub is None or sub.expires < time.time():
                return keystone_error(404, "Could not find token.")
            if method == "HEAD":
                return Response(status_code=200, headers={"X-Subject-Token": sub.id})
            return json_response(_token_body(auth, sub, base, "nocatalog" not in request.query_params), 200,
                                 {"X-Subject-Token": sub.id})
        if method == "DELETE":
            auth.tokens.pop(request.headers.get("x-subject-token", ""), None)
            return Response(status_code=204)
        return keystone_error(405, "Method not allowed")
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
    if rest[0] == "auth" and rest[1:] == ["catalog"]:
        return json_response({"catalog": catalog(base, auth.identity.region)})
    return keystone_error(404, "The resource could not be found.")
