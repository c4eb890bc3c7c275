"""HTTP helpers shared by the Neutron, Keystone, Nova and Glance surfaces."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from neutrino.errors import (
    Conflict,
    InvalidInput,
    NeutrinoError,
    NotAuthenticated,
    NotAuthorized,
    NotFound,
    PreconditionFailed,
)


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    h = {"X-Openstack-Request-Id": f"req-{uuid.uuid4()}"}
    if headers:
        h.update(headers)
    if status == 204 or data is None:
        return Response(status_code=status, headers=h)
    return Response(dumps(data), status_code=status, media_type="application/json", headers=h)


def status_of(e: NeutrinoError) -> int:
    if isinstance(e, PreconditionFailed):
        return 412
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, Conflict):
        return 409
    if isinstance(e, InvalidInput):
        return 400
    if isinstance(e, NotAuthenticated):
        return 401
    if isinstance(e, NotAuthorized):
        return 403
    if getattr(e, "neutron_type", None) == "NoNetworkAvailable":
        return 503
    return 500


_GENERIC = {400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden", 404: "HTTPNotFound",
            405: "HTTPMethodNotAllowed", 409: "HTTPConflict", 412: "HTTPPreconditionFailed", 500: "HTTPInternalServerError",
            503: "ServiceUnavailable"}


def neutron_error(status: int, message: str, neutron_type: str | None = None) -> Response:
    return json_response({"NeutronError": {"type": neutron_type or _GENERIC.get(status, "NeutronException"),
                                           "message": message, "detail": ""}}, status)


def neutron_error_from(e: NeutrinoError) -> Response:
    status = status_of(e)
    if status == 500:
        return neutron_error(500, "Request Failed: internal server error while processing your request.")
    return neutron_error(status, str(e), e.neutron_type)


class BadBody(InvalidInput):
    """The request body is missing or not JSON."""


async def read_json(request: Request, *, required: bool = True) -> Any:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise BadBody("Resource body required", neutron_type="HTTPBadRequest")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadBody("Malformed request body: cannot understand JSON", neutron_type="MalformedRequestBody") from None


def base_url(request: Request) -> str:
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}"
