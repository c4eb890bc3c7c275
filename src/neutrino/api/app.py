"""The ASGI application: Neutron at ``/`` and ``/v2.0``, Keystone at ``/identity``, Nova at
``/compute``, Glance at ``/image``, all on one port.

Paths are normalised first (``//`` collapsed, trailing ``/`` and ``.json`` tolerated). Every
neutrino error becomes Neutron's ``NeutronError`` body with Neutron's type name; anything else is
logged and answered 500 without a traceback.
"""

from __future__ import annotations

import logging
import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from neutrino.api import identity
from neutrino.api.common import neutron_error, neutron_error_from
from neutrino.api.compute import ComputeAPI, ImageAPI, nova_error
from neutrino.api.identity import Auth
from neutrino.api.neutron import NeutronAPI, versions
from neutrino.errors import NeutrinoError
from neutrino.services.cloud import Cloud

log = logging.getLogger(__name__)
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]


def build_app(cloud: Cloud, auth: Auth) -> Starlette:
    neutron = NeutronAPI(cloud)
    compute = ComputeAPI(cloud)
    image = ImageAPI()

    async def dispatch(request: Request) -> Response:
        path = re.sub(r"/{2,}", "/", request.url.path)
        parts = [p for p in path.split("/") if p]
        try:
            if parts[:1] == ["identity"]:
                return await identity.handle(auth, request, "/".join(parts[1:]))
            ctx = auth.context(request)
            if parts[:1] == ["compute"]:
                if ctx is None and len(parts) > 2:
                    return identity.keystone_error(401, "The request you have made requires authentication.")
                return await compute.handle(request, parts[1:], ctx or auth.default_context(request))
            if parts[:1] == ["image"]:
                if ctx is None and len(parts) > 2:
                    return identity.keystone_error(401, "The request you have made requires authentication.")
                return await image.handle(request, parts[1:])
            if parts[:1] == ["network"]:  # tolerate an endpoint override ending in /network
                parts = parts[1:]
            if not parts:
                if request.method != "GET":
                    return neutron_error(405, "Method not allowed")
                return versions(request)
            if parts[0] != "v2.0":
                return neutron_error(404, "The resource could not be found.")
            if ctx is None:
                return neutron_error(401, "Authentication required", "HTTPUnauthorized")
            return await neutron.handle(request, parts[1:], ctx)
        except NeutrinoError as e:
            if parts[:1] == ["compute"]:
                return nova_error(e)
            return neutron_error_from(e)
        except Exception:  # never a traceback to the client
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return neutron_error(500, "Request Failed: internal server error while processing your request.")

    app = Starlette(routes=[Route("/{path:path}", dispatch, methods=METHODS)])
    app.state.cloud = cloud
    app.state.auth = auth
    return app
