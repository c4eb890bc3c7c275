"""HTTP helpers shared by the Neutron, Keystone, Nova and Glance surfaces: JSON responses, each
service's own error body, and the limits every request body is held to.

Error bodies, one shape per service (what the real services send):

- Neutron: ``{"NeutronError": {"type": "NetworkNotFound", "message": "...", "detail": ""}}``
- Nova: ``{"itemNotFound": {"code": 404, "message": "..."}}`` (the name follows the status:
  ``badRequest``, ``forbidden``, ``badMethod``, ``conflictingRequest``, ``overLimit``...,
  ``computeFault`` otherwise)
- Keystone (and keystonemiddleware's 401 in front of Nova): ``{"error": {"code": 401,
  "title": "Unauthorized", "message": "..."}}``

Bodies are held to oslo.middleware's ``max_request_body_size`` (112 KiB, else 413), to
``MAX_DEPTH`` levels of nesting, to ``MAX_STRING`` characters per string, and to well-formed
Unicode without NUL characters (else 400): a body past these never reaches a service.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

import orjson
from starlette.requests import ClientDisconnect, Request
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
from neutrino.services.ids import random_uuid

MAX_BODY = 114688  # oslo.middleware sizelimit's max_request_body_size, as Neutron, Nova and Keystone run it
MAX_DEPTH = 32
MAX_STRING = 65535  # the longest string any of the APIs takes (Nova's user_data)
MAX_URL = 65535  # path and query string, in bytes (the HTTP parser refuses longer request lines)

Service = Literal["neutron", "nova", "keystone", "glance"]


# orjson writes ``json.dumps(data, separators=(",", ":"))``'s bytes for data made of dicts with string
# keys, lists, tuples, strings, integers of up to 64 bits, booleans and None, except for non-ASCII text
# and DEL (which json.dumps escapes): floats are not always written alike (``1e-7`` against ``1e-07``,
# ``0.000016`` against ``1.6e-05``, NaN as ``null``), nor are other types (subclasses, enums, UUIDs)
_PLAIN = frozenset((str, int, bool, type(None)))


def _plain(data: Any, limit: int = 100_000) -> bool:
    """Whether ``data`` holds nothing but dicts, lists, tuples and ``_PLAIN`` values (exact types), in
    at most ``limit`` of them (a structure that contains itself never ends: json.dumps refuses it)."""
    # each container's members are counted and their types checked as a batch; only containers are
    # stacked (the same answer as taking every value off a stack one by one)
    limit -= 1
    if limit < 0:
        return False
    stack = [data]
    while stack:
        v = stack.pop()
        t = type(v)
        members: Any
        if t is dict:
            members = v.values()
        elif t is list or t is tuple:
            members = v
        elif t in _PLAIN:
            continue
        else:
            return False
        limit -= len(members)
        if limit < 0:
            return False
        for m in members:
            tm = type(m)
            if tm in _PLAIN:
                continue
            if tm is dict or tm is list or tm is tuple:
                stack.append(m)
            else:
                return False
    return True


def dumps(data: Any) -> bytes:
    """``json.dumps(data, separators=(",", ":")).encode()``, by orjson where that gives the same bytes
    (tests/api/test_api5_dumps.py)."""
    if _plain(data):
        try:
            out = orjson.dumps(data)
        except TypeError:  # orjson.JSONEncodeError: a key that is not a string, an integer past 64 bits
            pass
        else:
            if out.isascii() and b"\x7f" not in out:
                return out
    return json.dumps(data, separators=(",", ":")).encode()


class _JSONBody(Response):
    """``Response(body, status, media_type="application/json", headers={"X-Openstack-Request-Id": ...})``
    with its header list written out as Starlette's ``init_headers`` writes it (the request id, then
    the length and the type), without going through it."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [(b"x-openstack-request-id", f"req-{random_uuid()}".encode()),
                            (b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if not headers and status >= 200 and status not in (204, 304) and data is not None:
        return _JSONBody(dumps(data), status)
    h = {"X-Openstack-Request-Id": f"req-{random_uuid()}"}
    if headers:
        h.update(headers)
    if status == 204 or data is None:
        return Response(status_code=status, headers=h)
    return Response(dumps(data), status_code=status, media_type="application/json", headers=h)


def encoded_response(body: bytes, status: int = 200) -> Response:
    """``json_response`` of a body already encoded as ``dumps`` would encode it."""
    if status >= 200 and status not in (204, 304):
        return _JSONBody(body, status)
    return Response(body, status_code=status, media_type="application/json",
                    headers={"X-Openstack-Request-Id": f"req-{random_uuid()}"})


# -- errors ---------------------------------------------------------------------------------------

class RequestTooLarge(NeutrinoError):
    """The request body is larger than ``MAX_BODY`` (HTTP 413)."""


class UriTooLong(NeutrinoError):
    """The request's path and query are longer than ``MAX_URL`` (HTTP 414)."""


class MethodNotAllowed(NeutrinoError):
    """The path exists but not for this method (HTTP 405)."""


class NotAcceptable(NeutrinoError):
    """A microversion outside the supported range (HTTP 406)."""


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
    if isinstance(e, MethodNotAllowed):
        return 405
    if isinstance(e, NotAcceptable):
        return 406
    if isinstance(e, RequestTooLarge):
        return 413
    if isinstance(e, UriTooLong):
        return 414
    if getattr(e, "neutron_type", None) == "NoNetworkAvailable":
        return 503
    return 500


_GENERIC = {400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden", 404: "HTTPNotFound",
            405: "HTTPMethodNotAllowed", 406: "HTTPNotAcceptable", 409: "HTTPConflict",
            412: "HTTPPreconditionFailed", 413: "HTTPRequestEntityTooLarge", 414: "HTTPRequestURITooLong",
            500: "HTTPInternalServerError", 503: "ServiceUnavailable"}

NOVA_FAULTS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound", 405: "badMethod",
               409: "conflictingRequest", 413: "overLimit", 415: "badMediaType", 429: "overLimit",
               501: "notImplemented", 503: "serviceUnavailable"}

KEYSTONE_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                   405: "Method Not Allowed", 409: "Conflict", 413: "Request Entity Too Large",
                   414: "Request-URI Too Long", 500: "Internal Server Error"}

INTERNAL = {"neutron": "Request Failed: internal server error while processing your request.",
            "nova": "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the "
                    "Nova API log if possible.",
            "keystone": "An unexpected error prevented the server from fulfilling your request.",
            "glance": "Internal Server Error"}


def neutron_error(status: int, message: str, neutron_type: str | None = None) -> Response:
    return json_response({"NeutronError": {"type": neutron_type or _GENERIC.get(status, "NeutronException"),
                                           "message": message, "detail": ""}}, status)


def neutron_error_from(e: NeutrinoError) -> Response:
    status = status_of(e)
    if status == 500:
        return neutron_error(500, INTERNAL["neutron"])
    return neutron_error(status, str(e), e.neutron_type)


def nova_fault(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Nova's fault body; a 401 is keystonemiddleware's (Keystone's shape), as in front of a real Nova."""
    if status == 401:
        return keystone_error(401, message)
    return json_response({NOVA_FAULTS.get(status, "computeFault"): {"code": status, "message": message}}, status,
                         headers)


def keystone_error(status: int, message: str) -> Response:
    return json_response({"error": {"code": status, "message": message,
                                    "title": KEYSTONE_TITLES.get(status, "Error")}}, status)


def glance_error(status: int, message: str) -> Response:
    """Glance answers errors with webob's plain text."""
    return Response(f"{status} {KEYSTONE_TITLES.get(status, 'Error')}\n\n{message}", status_code=status,
                    media_type="text/plain")


def error_for(service: Service, e: NeutrinoError) -> Response:
    """``e`` as ``service`` answers it."""
    status = status_of(e)
    message = INTERNAL[service] if status == 500 else str(e)
    if service == "neutron":
        return neutron_error_from(e)
    if service == "nova":
        return nova_fault(status, message)
    if service == "keystone":
        return keystone_error(status, message)
    return glance_error(status, message)


def internal_error(service: Service) -> Response:
    if service == "neutron":
        return neutron_error(500, INTERNAL["neutron"])
    if service == "nova":
        return nova_fault(500, INTERNAL["nova"])
    if service == "keystone":
        return keystone_error(500, INTERNAL["keystone"])
    return glance_error(500, INTERNAL["glance"])


def service_of(path: str) -> Service:
    """Which service answers ``path`` (for errors raised before routing)."""
    head = path.lstrip("/").split("/", 1)[0]
    return {"compute": "nova", "volume": "nova", "identity": "keystone", "image": "glance"}.get(head, "neutron")  # type: ignore[return-value]


# -- request bodies -------------------------------------------------------------------------------

class BadBody(InvalidInput):
    """The request body is missing, not JSON, or past one of the limits."""


async def read_limited(request: Request) -> bytes:
    """The request body, refused past ``MAX_BODY`` without reading more than that; later
    ``request.body()`` calls return it."""
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > MAX_BODY:
        raise RequestTooLarge("Request is too large.")
    if hasattr(request, "_body"):  # read before
        known: bytes = request._body
        if len(known) > MAX_BODY:
            raise RequestTooLarge("Request is too large.")
        return known
    if request._stream_consumed:
        raise RuntimeError("Stream consumed")
    # the messages read as ``request.stream()`` reads them (without its async generator)
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if body:
                size += len(body)
                if size > MAX_BODY:
                    raise RequestTooLarge("Request is too large.")
                chunks.append(body)
            if not message.get("more_body", False):
                request._stream_consumed = True
                break
        elif message["type"] == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    request._body = raw  # starlette's cache of the body: what request.body() returns from now on
    return raw


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_value(value: Any) -> None:
    """Refuse what no service takes: nesting past ``MAX_DEPTH``, strings past ``MAX_STRING``, lone
    surrogates and NUL characters (in keys too), and numbers that are not finite."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            check_text(v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise BadBody("Malformed request body: numbers must be finite", neutron_type="MalformedRequestBody")
        elif isinstance(v, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadBody(f"Malformed request body: nested deeper than {MAX_DEPTH} levels",
                              neutron_type="MalformedRequestBody")
            if isinstance(v, dict):
                for k, item in v.items():
                    check_text(k)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in v)


def check_text(s: str) -> None:
    if len(s) > MAX_STRING:
        raise BadBody(f"Malformed request body: a string is longer than {MAX_STRING} characters",
                      neutron_type="MalformedRequestBody")
    if "\x00" in s:
        raise BadBody("Malformed request body: NUL characters are not allowed", neutron_type="MalformedRequestBody")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody("Malformed request body: invalid Unicode (a lone surrogate)",
                      neutron_type="MalformedRequestBody") from None


# json.loads with ``parse_constant`` makes a decoder per call: this one is made once (its C scanner
# keeps nothing from one call to the next)
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_json(raw: bytes) -> Any:
    try:
        if isinstance(raw, bytes):  # as json.loads decodes bytes
            # (``detect_encoding`` says UTF-8 for a body opening with "{" and no NUL in its first 4 bytes)
            encoding = "utf-8" if raw[:1] == b"{" and b"\x00" not in raw[:4] else json.detect_encoding(raw)
            value = _DECODER.decode(raw.decode(encoding, "surrogatepass"))
        else:
            value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise BadBody(f"Malformed request body: nested deeper than {MAX_DEPTH} levels",
                      neutron_type="MalformedRequestBody") from None
    except (ValueError, UnicodeDecodeError):
        raise BadBody("Malformed request body: cannot understand JSON", neutron_type="MalformedRequestBody") from None
    check_value(value)
    return value


async def read_json(request: Request, *, required: bool = True) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise RequestTooLarge("Request is too large.")
    if not raw.strip():
        if required:
            raise BadBody("Resource body required", neutron_type="HTTPBadRequest")
        return None
    return parse_json(raw)


def base_url(request: Request) -> str:
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}"
