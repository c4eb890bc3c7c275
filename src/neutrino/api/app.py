"""The ASGI application: Neutron at ``/`` and ``/v2.0``, Keystone at ``/identity``, Nova at
``/compute``, Glance at ``/image``, the agent processes' API at ``/neutrino/v1``
(:mod:`neutrino.api.agentapi`), all on one port.

Paths are normalised first (``//`` collapsed, trailing ``/`` and ``.json`` tolerated). Requests are
held to the limits of ``neutrino.api.common`` (path and query, body size, nesting, strings, Unicode)
before any route sees them. Every neutrino error is answered in the shape of the service that was
asked (Neutron's ``NeutronError`` with Neutron's type name, Nova's faults, Keystone's ``error``);
anything else is logged and answered 500 in that shape, without a traceback. ``/openapi.json`` is
the OpenAPI document of all of it (``neutrino.api.openapi``).
"""

from __future__ import annotations

import logging
import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from neutrino.api import identity
from neutrino.api.agentapi import AgentAPI
from neutrino.api.common import (
    MAX_URL,
    BadBody,
    UriTooLong,
    error_for,
    internal_error,
    json_response,
    neutron_error,
    read_limited,
    service_of,
)
from neutrino.api.compute import ComputeAPI, ImageAPI, VolumeAPI
from neutrino.api.identity import Auth
from neutrino.api.neutron import NeutronAPI, versions
from neutrino.errors import NeutrinoError, NotAuthorized
from neutrino.services.cloud import Cloud
from neutrino.services.core import Context

log = logging.getLogger(__name__)


# what Starlette's ``URL(scope=...)`` changes in a path or splits it on (it escapes ``?``, ``#`` and
# ``\``; ``urlsplit`` drops tabs and newlines), and what in a Host header could move where the path
# starts (``/?#``), fail ``urlsplit``'s checks (brackets, non-ASCII) or not be taken as given
_URL_CHANGES_PATH = re.compile(r"[?#\\\t\r\n]")
_PLAIN_HOST = re.compile(rb"[A-Za-z0-9.:_~!$&'()*+,;=%-]+")


def url_path(request: Request) -> str:
    """``request.url.path`` without making Starlette's URL (a host header parsed, a URL written and
    split again), where that is the scope's path unchanged: a path starting with ``/`` without the
    characters above, a plain Host header, and a server address (``URL`` falls back on it). Any other
    request gets ``request.url.path`` itself."""
    scope = request.scope
    path: str = scope["path"]
    if path[:1] == "/" and scope.get("server") is not None and _URL_CHANGES_PATH.search(path) is None:
        for key, value in scope["headers"]:
            if key == b"host":
                if _PLAIN_HOST.fullmatch(value) is not None:
                    return path
                break
    return request.url.path


def check_request(request: Request, path: str | None = None) -> None:
    """What no route takes: a path and query past ``MAX_URL`` (414), NUL characters in them (400).
    ``path``: ``url_path(request)``, if known."""
    if path is None:
        path = url_path(request)
    raw_path = request.scope.get("raw_path") or path.encode()
    query = request.scope.get("query_string", b"")
    if len(raw_path) + len(query) > MAX_URL:
        raise UriTooLong(f"The request URI is longer than {MAX_URL} bytes.")
    if "\x00" in path or (query and any("\x00" in k or "\x00" in v for k, v in request.query_params.multi_items())):
        raise BadBody("NUL characters are not allowed in the path or the query.")


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def check_role(ctx: Context, request: Request) -> None:
    """The default policy of today's Neutron and Nova (secure RBAC): the reader role reads; writing
    takes the member role on the project, or admin."""
    if request.method in WRITES and not ctx.is_admin and "member" not in ctx.roles:
        raise NotAuthorized(f"{request.method} {request.url.path} is disallowed by policy: the reader role "
                            "may only read (writing takes the member role)")


def openapi_response(request: Request) -> Response:
    from neutrino.api.openapi import document

    return json_response(document())


def build_app(cloud: Cloud, auth: Auth) -> Starlette:
    auth.attach(cloud.db)  # identity data lives in the cloud's database
    neutron = NeutronAPI(cloud)
    compute = ComputeAPI(cloud)
    image = ImageAPI()
    volume = VolumeAPI()
    agents_api = AgentAPI(cloud)

    async def dispatch(request: Request) -> Response:
        url_path_ = url_path(request)
        path = re.sub(r"/{2,}", "/", url_path_) if "//" in url_path_ else url_path_
        parts = [p for p in path.split("/") if p]
        service = service_of(path)
        try:
            check_request(request, url_path_)
            await read_limited(request)
            if parts == ["openapi.json"]:
                return openapi_response(request)
            if parts[:1] == ["identity"]:
                return await identity.handle(auth, request, "/".join(parts[1:]))
            ctx = auth.context(request)
            neutron_v2 = parts[:1] == ["v2.0"] or parts[:2] == ["network", "v2.0"]
            if ctx is not None and not neutron_v2:  # the Neutron API enforces its policies itself
                check_role(ctx, request)
            if parts[:1] == ["neutrino"]:  # the agent processes' API (neutrino.api.agentapi)
                if ctx is None:
                    return neutron_error(401, "Authentication required", "HTTPUnauthorized")
                return await agents_api.handle(request, parts[1:], ctx)
            if parts[:1] == ["compute"]:
                if ctx is None and len(parts) > 2:
                    return identity.keystone_error(401, "The request you have made requires authentication.")
                return await compute.handle(request, parts[1:], ctx or auth.default_context(request))
            if parts[:1] == ["image"]:
                if ctx is None and len(parts) > 2:
                    return identity.keystone_error(401, "The request you have made requires authentication.")
                return await image.handle(request, parts[1:])
            if parts[:1] == ["volume"]:  # version discovery only, for clients without a catalog
                return await volume.handle(request, parts[1:])
            if parts[:1] == ["network"]:  # tolerate an endpoint override ending in /network
                parts = parts[1:]
            if not parts:
                if request.method not in ("GET", "HEAD"):
                    return neutron_error(405, "Method not allowed")
                return versions(request)
            if parts[0] != "v2.0":
                return neutron_error(404, "The resource could not be found.")
            if ctx is None:
                return neutron_error(401, "Authentication required", "HTTPUnauthorized")
            return await neutron.handle(request, parts[1:], ctx)
        except NeutrinoError as e:
            return error_for(service, e)
        except Exception:  # never a traceback to the client
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return internal_error(service)

    async def every_request(scope: Scope, receive: Receive, send: Send) -> None:
        """Every HTTP request, whatever its path (newlines too) and method, goes to ``dispatch``."""
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1003})
            return
        response = await dispatch(Request(scope, receive))
        await response(scope, receive, send)

    app = Starlette(routes=[])
    app.router.default = every_request
    stack = app.build_middleware_stack()  # Starlette's: its error and exception layers, then the router

    async def entry(scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP straight to ``every_request`` (the router would send it there: no route is declared;
        ``dispatch`` answers every exception itself, so the error layers have none to see); the
        lifespan and websockets through Starlette's stack."""
        if scope["type"] == "http":
            await every_request(scope, receive, send)
        else:
            await stack(scope, receive, send)

    app.middleware_stack = entry
    app.state.cloud = cloud
    app.state.auth = auth
    return app
