"""Request-body validation the way neutron-lib does it.

Each resource declares its attributes (settable on POST/PUT, required, default, converter). The
converters raise ``ValueError(reason)``; ``prepare_body`` turns that into Neutron's
``Invalid input for <attr>. Reason: <reason>.`` and also reports unknown and read-only attributes
with Neutron's own wording.

Every converter carries the JSON schema of what it accepts (``schema_of``), from which
``neutrino.api.openapi`` writes the API's OpenAPI document: the tables below are the one
description of the Neutron attributes.

    >>> to_uuid("{6F9619FF-8B86-D011-B42D-00C04FC964FF}")
    '6f9619ff-8b86-d011-b42d-00c04fc964ff'
    >>> name_string(255)(" padded")
    Traceback (most recent call last):
    ...
    ValueError: ' padded' is not a valid string
    >>> schema_of(list_of(to_ip))
    {'type': 'array', 'items': {'type': 'string', 'format': 'ip'}}
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from neutrino.errors import InvalidInput

DB_INTEGER_MAX = 2**31 - 1  # neutron-lib's db_const.DB_INTEGER_MAX_VALUE
PROJECT_ID_MAX = 64  # what the database keeps (neutron-lib allows 255)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def bad_request(message: str) -> InvalidInput:
    return InvalidInput(message, neutron_type="HTTPBadRequest")


class Conv:
    """A converter (raises ``ValueError(reason)``) with the JSON schema of the values it takes."""

    def __init__(self, fn: Callable[[Any], Any], schema: dict[str, Any]) -> None:
        self.fn = fn
        self.schema = schema

    def __call__(self, v: Any) -> Any:
        return self.fn(v)

    def __repr__(self) -> str:
        return f"Conv({getattr(self.fn, '__name__', 'converter')}, {self.schema})"


Converter = Callable[[Any], Any]


def typed(schema: dict[str, Any]) -> Callable[[Callable[[Any], Any]], Conv]:
    def wrap(fn: Callable[[Any], Any]) -> Conv:
        c = Conv(fn, schema)
        functools.update_wrapper(c, fn)
        return c
    return wrap


def schema_of(conv: Converter | None) -> dict[str, Any]:
    """The JSON schema of the values ``conv`` accepts ({} for anything)."""
    return dict(conv.schema) if isinstance(conv, Conv) else {}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


# -- converters (raise ValueError with neutron-lib's reason text) --------------------------------

_TRUE = {"true", "1", "t", "yes", "y", "on"}
_FALSE = {"false", "0", "f", "no", "n", "off"}

BOOL_SCHEMA: dict[str, Any] = {"oneOf": [{"type": "boolean"}, {"type": "string", "enum": sorted(_TRUE | _FALSE)}]}


@typed(BOOL_SCHEMA)
def to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        low = v.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ValueError(f"'{v}' cannot be converted to boolean")


@typed({"type": "integer", "minimum": -DB_INTEGER_MAX, "maximum": DB_INTEGER_MAX})
def to_int(v: Any) -> int:
    """An integer (or its decimal string) within the database's integer column."""
    if isinstance(v, bool):
        raise ValueError(f"'{v}' is not an integer")
    if isinstance(v, str) and re.fullmatch(r"\s*[-+]?\d{1,20}\s*", v):
        v = int(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int):
        raise ValueError(f"'{v}' is not an integer")
    if not -DB_INTEGER_MAX <= v <= DB_INTEGER_MAX:
        raise ValueError(f"'{v}' is too large - must be no larger than '{DB_INTEGER_MAX}'")
    return v


def int_range(lo: int, hi: int) -> Conv:
    """neutron-lib's ``type:range`` after ``convert_to_int``."""
    def conv(v: Any) -> int:
        n = to_int(v)
        if n < lo:
            raise ValueError(f"'{n}' is too small - must be at least '{lo}'")
        if n > hi:
            raise ValueError(f"'{n}' is too large - must be no larger than '{hi}'")
        return n
    return Conv(conv, {"type": "integer", "minimum": lo, "maximum": hi})


@typed({"type": "integer", "minimum": 0, "maximum": DB_INTEGER_MAX})
def non_negative(v: Any) -> int:
    """``convert_to_int`` then ``type:non_negative``."""
    n = to_int(v)
    if n < 0:
        raise ValueError(f"'{n}' should be non-negative")
    return n


@typed(_nullable({"type": "integer", "minimum": -DB_INTEGER_MAX, "maximum": DB_INTEGER_MAX}))
def to_int_or_none(v: Any) -> int | None:
    return None if v is None else to_int(v)


def string(max_len: int = 255) -> Conv:
    def conv(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(f"'{v}' is not a valid string")
        if len(v) > max_len:
            raise ValueError(f"'{v}' exceeds maximum length of {max_len}")
        return v
    return Conv(conv, {"type": "string", "maxLength": max_len})


def string_or_none(max_len: int = 255) -> Conv:
    inner = string(max_len)
    return Conv(lambda v: None if v is None else inner(v), _nullable(inner.schema))


@functools.lru_cache(maxsize=4096)
def printable(ch: str) -> bool:
    """neutron-lib's printable characters (and Nova's): not a control, format, surrogate, private or
    unassigned character, no separator but the horizontal spaces, within the Basic Multilingual Plane."""
    if ord(ch) >= 0xFFFF:
        return False
    cat = unicodedata.category(ch)
    return not cat.startswith("C") and (not cat.startswith("Z") or cat == "Zs")


def valid_name(v: str) -> bool:
    """Printable characters, neither first nor last a space (``valid_name_regex``)."""
    if not all(printable(c) for c in v):
        return False
    return not v or (unicodedata.category(v[0]) != "Zs" and unicodedata.category(v[-1]) != "Zs")


# Names in the OpenAPI document: printable characters, no space first or last. (The rule is Unicode's
# categories, which a regular expression cannot name: this is the part of it within Latin scripts.)
NAME_PATTERN = r"^(?![ \u00a0])[\u0020-\u007e\u00a0-\u00ac\u00ae-\u024f]*(?<![ \u00a0])$"
PRINTABLE_PATTERN = r"^[\u0020-\u007e\u00a0-\u00ac\u00ae-\u024f]*$"


def name_string(max_len: int = 255) -> Conv:
    """neutron-lib's ``type:name_string``."""
    inner = string(max_len)

    def conv(v: Any) -> str:
        s: str = inner(v)
        if not valid_name(s):
            raise ValueError(f"'{s}' is not a valid string")
        return s
    return Conv(conv, {"type": "string", "maxLength": max_len, "pattern": NAME_PATTERN})


def is_uuid(v: Any) -> bool:
    """oslo's ``is_uuid_like``: 32 hex digits, with or without dashes, braces or a ``urn:uuid:``."""
    if not isinstance(v, str) or len(v) > 64:
        return False
    fmt = v.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "").lower()
    return re.fullmatch(r"[0-9a-f]{32}", fmt) is not None


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@typed({"type": "string", "format": "uuid"})
def to_uuid(v: Any) -> str:
    if type(v) is str and _CANONICAL_UUID.fullmatch(v):  # already what str(uuid.UUID(v)) gives
        return v
    if not is_uuid(v):
        raise ValueError(f"'{v}' is not a valid UUID")
    return str(uuid.UUID(v.replace("urn:", "").replace("uuid:", "").strip("{}")))


@typed({"type": "string", "format": "uuid", "nullable": True})
def to_uuid_or_none(v: Any) -> str | None:
    return None if v is None else to_uuid(v)


def _ip(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """neutron-lib's ``validate_ip_address``: no whitespace, dotted quads without leading zeros."""
    if not isinstance(v, str) or "/" in v or not v or re.search(r"\s", v) or "%" in v:
        raise ValueError(f"'{v}' is not a valid IP address")
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f"'{v}' is not a valid IP address") from None
    return ip


@typed({"type": "string", "format": "ip"})
def to_ip(v: Any) -> str:
    return str(_ip(v))


@typed({"type": "string", "format": "ip", "nullable": True})
def to_ip_or_none(v: Any) -> str | None:
    return None if v is None else to_ip(v)


CIDR_SCHEMA: dict[str, Any] = {"type": "string", "format": "cidr"}


@typed(CIDR_SCHEMA)
def to_cidr(v: Any) -> str:
    """A subnet, canonicalised (host bits cleared)."""
    try:
        if not isinstance(v, str) or "/" not in v or re.search(r"\s", v):
            raise ValueError
        return str(ipaddress.ip_network(v, strict=False))
    except ValueError:
        raise ValueError(f"'{v}' is not a valid IP subnet") from None


@typed(_nullable(CIDR_SCHEMA))
def to_cidr_or_none(v: Any) -> str | None:
    return None if v is None else to_cidr(v)


@typed(_nullable(CIDR_SCHEMA))
def to_prefix_or_none(v: Any) -> str | None:
    """``convert_ip_prefix_to_cidr``: a CIDR kept as given, host bits and all (the rule's
    ``normalized_cidr`` is its network), or a bare address taken as its host prefix."""
    if v is None:
        return None
    if isinstance(v, str) and "/" not in v:
        ip = _ip(v)
        return f"{ip}/{ip.max_prefixlen}"
    to_cidr(v)  # the same checks as a subnet's
    return str(ipaddress.ip_interface(v))


_MAC = re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")


@typed({"type": "string", "pattern": "^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$"})
def to_mac(v: Any) -> str:
    if not isinstance(v, str) or not _MAC.match(v):
        raise ValueError(f"'{v}' is not a valid MAC address")
    mac = v.lower().replace("-", ":")
    if mac in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
        raise ValueError(f"'{v}' is not a valid MAC address")
    return mac


@typed({"type": "object"})
def to_dict(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"'{v}' is not a dictionary")
    return v


@typed({"type": "object", "nullable": True})
def to_dict_or_empty(v: Any) -> dict[str, Any]:
    """``binding:profile``: a dict (None for an empty one)."""
    return {} if v is None else to_dict(v)


def list_of(item: Converter, *, unique: bool = False, max_len: int | None = None) -> Conv:
    def conv(v: Any) -> list[Any]:
        if not isinstance(v, list):
            raise ValueError(f"'{v}' is not a list")
        if max_len is not None and len(v) > max_len:
            raise ValueError(f"'{v}' exceeds maximum list length of {max_len}")
        out = [item(x) for x in v]
        if unique:
            seen: list[Any] = []
            for x in out:
                if x in seen:
                    raise ValueError(f"Duplicate items in the list: '{x}'")
                seen.append(x)
        return out
    schema: dict[str, Any] = {"type": "array", "items": schema_of(item)}
    if max_len is not None:
        schema["maxItems"] = max_len
    return Conv(conv, schema)


def list_or_none(item: Converter, **kw: Any) -> Conv:
    inner = list_of(item, **kw)
    return Conv(lambda v: [] if v is None else inner(v), _nullable(inner.schema))


def one_of(*values: Any) -> Conv:
    def conv(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or v not in values:
            raise ValueError(f"{v} is not in {list(values)}")
        return v
    return Conv(conv, {"enum": list(values)})


def one_of_or_none(*values: Any) -> Conv:
    inner = one_of(*values)
    return Conv(lambda v: None if v is None else inner(v), {"enum": [*values, None], "nullable": True})


def dict_items(required: dict[str, Converter], optional: dict[str, Converter]) -> Conv:
    """A dict with exactly these keys (unknown keys are an error, as neutron-lib's validators say)."""
    def conv(v: Any) -> dict[str, Any]:
        d = to_dict(v)
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"Validation of dictionary's keys failed. Expected keys: {set(required)} "
                             f"Provided keys: {set(d)}")
        unexpected = [k for k in d if k not in required and k not in optional]
        if unexpected:
            raise ValueError(f"Unexpected keys supplied: {', '.join(unexpected)}")
        out: dict[str, Any] = {}
        for k, c in required.items():
            out[k] = c(d[k])
        for k, c in optional.items():
            if k in d:
                out[k] = c(d[k])
        return out
    schema: dict[str, Any] = {"type": "object", "properties": {k: schema_of(c) for k, c in
                                                               {**required, **optional}.items()},
                              "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return Conv(conv, schema)


pool = dict_items({"start": to_ip, "end": to_ip}, {})


@typed({"type": "string", "format": "cidr"})
def route_cidr(v: Any) -> str:
    """``validate_route_cidr``: a network address (no host bits), not loopback."""
    if not isinstance(v, str) or "/" not in v or re.search(r"\s", v):
        raise ValueError(f"'{v}' is not a valid CIDR")
    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError:
        raise ValueError(f"'{v}' is not a valid CIDR") from None
    if net.is_loopback:
        raise ValueError(f"'{v}' is not a routable CIDR")
    return str(net)


host_route = dict_items({"destination": route_cidr, "nexthop": to_ip}, {})


def _routes(v: Any) -> list[dict[str, str]]:
    """``validate_hostroutes``: unique destination/nexthop pairs."""
    if v is None:
        return []
    if not isinstance(v, list):
        raise ValueError(f"Invalid data format for hostroute: '{v}'")
    out: list[dict[str, str]] = []
    for item in v:
        r = host_route(item)
        if r in out:
            raise ValueError(f"Duplicate hostroute '{item}'")
        out.append(r)
    return out


routes = Conv(_routes, _nullable({"type": "array", "items": host_route.schema}))


def _nameservers(v: Any) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ValueError(f"Invalid data format for nameserver: '{v}'")
    out: list[str] = []
    for host in v:
        try:
            ip = to_ip(host)
        except ValueError as e:
            raise ValueError(f"'{host}' is not a valid nameserver. {e}") from None
        if ip in out:
            raise ValueError(f"Duplicate nameserver '{host}'")
        out.append(ip)
    return out


nameservers = Conv(_nameservers, _nullable({"type": "array", "items": to_ip.schema}))

fixed_ip = dict_items({}, {"subnet_id": to_uuid, "ip_address": to_ip})


def address_pair(v: Any) -> dict[str, Any]:
    def ip_or_cidr(x: Any) -> str:
        if isinstance(x, str) and "/" in x:
            try:
                return to_cidr(x)
            except ValueError:
                raise ValueError(f"'{x}' is not a valid IP address") from None
        return to_ip(x)
    return dict_items({"ip_address": Conv(ip_or_cidr, {"type": "string"})}, {"mac_address": to_mac})(v)


address_pair_conv = Conv(address_pair, {"type": "object", "properties": {
    "ip_address": {"type": "string"}, "mac_address": to_mac.schema}, "required": ["ip_address"],
    "additionalProperties": False})


def _fixed_ips_list(v: Any) -> list[dict[str, Any]]:
    if not isinstance(v, list):
        raise ValueError(f"Invalid data format for fixed IP: '{v}'")
    out = []
    seen: list[str] = []
    for item in v:
        if not isinstance(item, dict):
            raise ValueError(f"Invalid data format for fixed IP: '{item}'")
        ip = fixed_ip(item)
        if "ip_address" in ip:
            if ip["ip_address"] in seen:
                raise ValueError(f"Duplicate IP address '{item['ip_address']}'")
            seen.append(ip["ip_address"])
        out.append(ip)
    return out


fixed_ips_list = Conv(_fixed_ips_list, {"type": "array", "items": fixed_ip.schema})


def oneline(max_len: int, *, allow_none: bool = False) -> Conv:
    """``type:oneline_not_empty_string[_or_none]``."""
    inner = string(max_len)

    def conv(v: Any) -> str | None:
        if v is None and allow_none:
            return None
        s: str = inner(v)
        if not s.strip():
            raise ValueError(f"'{s}' Blank strings are not permitted")
        if len(s.splitlines()) > 1:
            raise ValueError(f"Multi-line string is not allowed: '{s}'")
        return s
    schema = {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": "^[^\\n\\r]*\\S[^\\n\\r]*$"}
    return Conv(conv, _nullable(schema) if allow_none else schema)


_DHCP_OPT = dict_items({"opt_name": oneline(64)}, {"opt_value": oneline(255, allow_none=True),
                                                   "ip_version": Conv(lambda v: one_of(4, 6)(to_int(v)),
                                                                      {"enum": [4, 6]})})
#: the options whose value may be blank (``extra_dhcp_opt``'s ``VALID_BLANK_EXTRA_DHCP_OPTS``)
BLANKABLE_DHCP_OPTS = ("router", "classless-static-route")


def _dhcp_opt_invalid(message: str) -> InvalidInput:
    """The validator raises Neutron's ``InvalidInput`` itself, outside the attribute's ``Reason:``."""
    return InvalidInput(f"Invalid input for operation: {message}.", neutron_type="InvalidInput")


def _oneline_ok(v: Any, max_len: int) -> bool:
    return isinstance(v, str) and bool(v.strip()) and len(v) <= max_len and len(v.splitlines()) <= 1


def _dhcp_opt_spec(d: dict[str, Any], blank: bool) -> bool:
    """One of ``EXTRA_DHCP_OPT_KEY_SPECS``, as ``validate_dict`` checks it (``ip_version`` converted in place)."""
    if "opt_name" not in d or "opt_value" not in d or any(k not in ("opt_name", "opt_value", "ip_version")
                                                          for k in d):
        return False
    name, value = d["opt_name"], d["opt_value"]
    if blank:
        if not isinstance(name, str) or name not in BLANKABLE_DHCP_OPTS:
            return False
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            return False
    elif not _oneline_ok(name, 64) or (value is not None and not _oneline_ok(value, 255)):
        return False
    if "ip_version" in d:
        try:
            d["ip_version"] = int(d["ip_version"])
        except (TypeError, ValueError):
            raise _dhcp_opt_invalid(f"'{d['ip_version']}' is not an integer") from None
        if d["ip_version"] not in (4, 6):
            return False
    return True


def _dhcp_opt(v: Any) -> dict[str, Any]:
    """One item of ``type:list_of_any_key_specs_or_none`` over ``EXTRA_DHCP_OPT_KEY_SPECS``: the
    blankable spec (``router``, ``classless-static-route``: any string or null), then the general
    one (a one-line non-empty string or null); neither: ``No valid key specs matched for: {...}``."""
    if not isinstance(v, dict):
        raise _dhcp_opt_invalid(f"No valid key specs matched for: {v}")
    d = dict(v)
    if _dhcp_opt_spec(d, True) or _dhcp_opt_spec(d, False):
        return d
    raise _dhcp_opt_invalid(f"No valid key specs matched for: {d}")


def _dhcp_opts(v: Any) -> list[dict[str, Any]]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise _dhcp_opt_invalid(f"'{v}' is not a list")
    dups: list[Any] = []
    for i, x in enumerate(v):
        if x in v[:i] and x not in dups:
            dups.append(x)
    if dups:
        raise _dhcp_opt_invalid(f"Duplicate items in the list: '{', '.join(str(d) for d in dups)}'")
    return [_dhcp_opt(x) for x in v]


dhcp_opt = Conv(_dhcp_opt, _DHCP_OPT.schema)
dhcp_opts = Conv(_dhcp_opts, _nullable({"type": "array", "items": _DHCP_OPT.schema}))


def _dhcp_opt_kept(name: str, value: str | None) -> bool:
    """``_is_valid_opt_value``: a blankable option is kept unless null, any other unless empty."""
    return value is not None if name in BLANKABLE_DHCP_OPTS else bool(value)


def extra_dhcp_opts_created(requested: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A new port's options as ``ExtraDhcpOptMixin`` stores them (``ip_version`` 4 when not given)."""
    return [{"opt_name": o["opt_name"], "opt_value": o["opt_value"], "ip_version": o.get("ip_version", 4)}
            for o in requested or [] if _dhcp_opt_kept(o["opt_name"], o["opt_value"])]


def extra_dhcp_opts_updated(current: list[dict[str, Any]], requested: list[dict[str, Any]] | None
                            ) -> list[dict[str, Any]]:
    """``_update_extra_dhcp_opts_on_port``: each requested option replaces the one of the same name
    and IP version (a null value deletes it), or is added; an empty request changes nothing."""
    out = [dict(o) for o in current]
    for upd in requested or []:
        version = upd.get("ip_version", 4)
        match = next((o for o in out if o["opt_name"] == upd["opt_name"] and o.get("ip_version", 4) == version),
                     None)
        if match is not None:
            if upd["opt_value"] is None:
                out.remove(match)
            elif _dhcp_opt_kept(match["opt_name"], upd["opt_value"]):
                match["opt_value"] = upd["opt_value"]
        elif _dhcp_opt_kept(upd["opt_name"], upd["opt_value"]):
            out.append({"opt_name": upd["opt_name"], "opt_value": upd["opt_value"], "ip_version": version})
    return out

_AZ_NAME = re.compile(r"^[a-zA-Z0-9_.:-]{1,255}$")


def _az_hints(v: Any) -> list[str]:
    """``type:availability_zone_hint_list``: unique names, 255 characters joined."""
    out = list_of(string(255), unique=True)(v)
    for name in out:
        if not _AZ_NAME.match(name):
            raise ValueError(f"'{name}' is not a valid availability zone name")
    if len(",".join(out)) > 255:
        raise ValueError(f"Too many availability_zone_hints specified: '{','.join(out)}'")
    return out


az_hints = Conv(_az_hints, {"type": "array", "items": {"type": "string", "pattern": _AZ_NAME.pattern},
                            "maxItems": 128})

_DNS_LABEL = r"(?!-)[a-zA-Z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"^({_DNS_LABEL}\.)*{_DNS_LABEL}\.?$")


def dns_name(max_len: int) -> Conv:
    """``type:dns_host_name`` / ``type:dns_domain_name`` (lower-cased, as neutron stores them)."""
    def conv(v: Any) -> str:
        s: str = string(max_len)(v)
        if s and not _DNS_NAME.match(s):
            raise ValueError(f"'{s}' not a valid PQDN or FQDN. Reason: labels must be 1-63 characters of "
                             "letters, digits and '-', neither first nor last a '-'")
        return s.lower()
    return Conv(conv, {"type": "string", "maxLength": max_len, "pattern": f"^$|{_DNS_NAME.pattern}"})


# -- attribute specs ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Attr:
    post: bool = True
    put: bool = True
    required: bool = False
    default: Any = MISSING
    convert: Converter | None = None
    kind: str = "str"  # for filters: str | bool | int | list


@dataclass(frozen=True, slots=True)
class Resource:
    singular: str
    plural: str
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    readonly: frozenset[str] = frozenset()
    # made once from ``attrs`` (read-only from then on) for ``prepare_body``: the known names, and the
    # attributes a create must see (required, or with a default) with their default and its copier
    _known: frozenset[str] = field(init=False, repr=False, compare=False)
    _on_create: tuple[tuple[str, bool, Any, Callable[[Any], Any] | None], ...] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        attrs = MappingProxyType(dict(self.attrs))
        object.__setattr__(self, "attrs", attrs)
        object.__setattr__(self, "_known", frozenset(attrs) | self.readonly | _STD_READONLY | {"project_id", "tenant_id"})
        object.__setattr__(self, "_on_create", tuple(
            (k, spec.required, spec.default,
             list if isinstance(spec.default, list) else dict if isinstance(spec.default, dict) else None)
            for k, spec in attrs.items() if spec.required or spec.default is not MISSING))

    def known(self) -> frozenset[str]:
        return self._known


_STD_READONLY = frozenset({"id", "created_at", "updated_at", "revision_number", "tags"})

NAME = Attr(default="", convert=name_string(255))
DESCRIPTION = Attr(default="", convert=string(255))
ADMIN = Attr(default=True, convert=to_bool, kind="bool")
PROJECT = string(PROJECT_ID_MAX)

NETWORK = Resource("network", "networks", {
    "name": NAME, "description": DESCRIPTION, "admin_state_up": ADMIN,
    "shared": Attr(default=False, convert=to_bool, kind="bool"),
    "router:external": Attr(default=False, convert=to_bool, kind="bool"),
    "port_security_enabled": Attr(default=True, convert=to_bool, kind="bool"),
    "mtu": Attr(default=MISSING, convert=non_negative, kind="int"),
    "provider:network_type": Attr(put=False, convert=string(32)),
    "provider:physical_network": Attr(put=False, convert=string_or_none(64)),
    "provider:segmentation_id": Attr(put=False, convert=Conv(
        lambda v: None if v is None else non_negative(v), _nullable(non_negative.schema)), kind="int"),
    "availability_zone_hints": Attr(put=False, default=[], convert=az_hints, kind="list"),
    "dns_domain": Attr(convert=dns_name(255)),
    "is_default": Attr(convert=to_bool, kind="bool"),
    "qos_policy_id": Attr(convert=to_uuid_or_none),
}, frozenset({"status", "subnets", "availability_zones", "ipv4_address_scope", "ipv6_address_scope"}))

IPV6_MODES = ("dhcpv6-stateful", "dhcpv6-stateless", "slaac")

SUBNET = Resource("subnet", "subnets", {
    "name": NAME, "description": DESCRIPTION,
    "network_id": Attr(put=False, required=True, convert=to_uuid),
    "ip_version": Attr(put=False, required=True, convert=Conv(lambda v: one_of(4, 6)(to_int(v)), {"enum": [4, 6]}),
                       kind="int"),
    "cidr": Attr(put=False, default=MISSING, convert=to_cidr),
    "gateway_ip": Attr(default=MISSING, convert=to_ip_or_none),
    "allocation_pools": Attr(default=MISSING, convert=list_of(pool)),
    "dns_nameservers": Attr(default=[], convert=nameservers, kind="list"),
    "host_routes": Attr(default=[], convert=routes, kind="list"),
    "enable_dhcp": Attr(default=True, convert=to_bool, kind="bool"),
    "ipv6_ra_mode": Attr(put=False, default=None, convert=one_of_or_none(*IPV6_MODES)),
    "ipv6_address_mode": Attr(put=False, default=None, convert=one_of_or_none(*IPV6_MODES)),
    "subnetpool_id": Attr(put=False, default=None, convert=to_uuid_or_none),
    "prefixlen": Attr(put=False, convert=int_range(0, 128)),
    "use_default_subnetpool": Attr(put=False, convert=to_bool),
    "service_types": Attr(default=[], convert=list_of(string(255)), kind="list"),
    "segment_id": Attr(default=None, convert=to_uuid_or_none),
}, frozenset({"router:external", "shared"}))

VNIC_TYPES = ("normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder", "smart-nic",
              "vdpa", "accelerator-direct", "accelerator-direct-physical", "remote-managed")

PORT = Resource("port", "ports", {
    "name": NAME, "description": DESCRIPTION, "admin_state_up": ADMIN,
    "network_id": Attr(put=False, required=True, convert=to_uuid),
    "mac_address": Attr(default=MISSING, convert=to_mac),
    "fixed_ips": Attr(default=MISSING, convert=fixed_ips_list, kind="list"),
    "device_id": Attr(default="", convert=string(255)),
    "device_owner": Attr(default="", convert=string(255)),
    "security_groups": Attr(default=MISSING, convert=list_or_none(to_uuid, unique=True), kind="list"),
    "port_security_enabled": Attr(default=MISSING, convert=to_bool, kind="bool"),
    "allowed_address_pairs": Attr(default=[], convert=list_or_none(address_pair_conv, max_len=10), kind="list"),
    "extra_dhcp_opts": Attr(default=[], convert=dhcp_opts, kind="list"),
    "binding:host_id": Attr(default="", convert=Conv(lambda v: "" if v is None else string(255)(v),
                                                     _nullable(string(255).schema))),
    "binding:profile": Attr(default={}, convert=to_dict_or_empty),
    "binding:vnic_type": Attr(default="normal", convert=one_of(*VNIC_TYPES)),
    "dns_name": Attr(convert=dns_name(255)),
    "qos_policy_id": Attr(convert=to_uuid_or_none),
    "propagate_uplink_status": Attr(convert=to_bool, kind="bool"),
}, frozenset({"status", "binding:vif_type", "binding:vif_details", "ip_allocation", "dns_assignment",
              "resource_request"}))


def _gateway_info(v: Any) -> dict[str, Any] | None:
    if v is None or v == {}:
        return None
    return _GATEWAY(v)  # type: ignore[no-any-return]


_GATEWAY = dict_items({"network_id": to_uuid}, {
    "enable_snat": to_bool, "external_fixed_ips": fixed_ips_list, "qos_policy_id": to_uuid_or_none,
})

ROUTER = Resource("router", "routers", {
    "name": NAME, "description": DESCRIPTION, "admin_state_up": ADMIN,
    "external_gateway_info": Attr(default=None, convert=Conv(_gateway_info, _nullable(_GATEWAY.schema))),
    "routes": Attr(default=[], convert=routes, kind="list"),
    "availability_zone_hints": Attr(put=False, default=[], convert=az_hints, kind="list"),
    "distributed": Attr(convert=to_bool, kind="bool"),
    "ha": Attr(convert=to_bool, kind="bool"),
    "flavor_id": Attr(put=False, convert=to_uuid_or_none),
}, frozenset({"status", "availability_zones"}))

FLOATINGIP = Resource("floatingip", "floatingips", {
    "description": DESCRIPTION,
    "floating_network_id": Attr(put=False, required=True, convert=to_uuid),
    "floating_ip_address": Attr(put=False, default=None, convert=to_ip_or_none),
    "subnet_id": Attr(put=False, default=None, convert=to_uuid_or_none),
    "port_id": Attr(default=None, convert=to_uuid_or_none),
    "fixed_ip_address": Attr(default=None, convert=to_ip_or_none),
    "dns_name": Attr(put=False, convert=dns_name(63)),
    "dns_domain": Attr(put=False, convert=dns_name(255)),
    "qos_policy_id": Attr(convert=to_uuid_or_none),
}, frozenset({"status", "router_id", "port_details", "port_forwardings", "name"}))

SECURITY_GROUP = Resource("security_group", "security_groups", {
    "name": NAME, "description": DESCRIPTION,
    "stateful": Attr(default=True, convert=to_bool, kind="bool"),
}, frozenset({"security_group_rules", "shared"}))

PROTOCOLS = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2, "ip": 0,
    "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6,
    "udp": 17, "udplite": 136, "vrrp": 112,
}


def _protocol_error(v: Any) -> ValueError:
    return ValueError(f"Security group rule protocol {v} not supported. Only protocol values "
                      f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported.")


def _protocol(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise _protocol_error(v)
    if isinstance(v, int):
        v = str(v)
    if not isinstance(v, str):
        raise _protocol_error(v)
    low = v.lower()
    if low in ("any", ""):
        return None
    if low in PROTOCOLS:
        return low
    if re.fullmatch(r"\d{1,3}", low) and 0 <= int(low) <= 255:
        return str(int(low))
    raise _protocol_error(v)


protocol = Conv(_protocol, {"nullable": True, "oneOf": [
    {"type": "string", "enum": sorted(PROTOCOLS) + ["any"]}, {"type": "integer", "minimum": 0, "maximum": 255},
    {"type": "string", "pattern": "^[0-9]{1,3}$"}]})


def _port_bound(v: Any) -> int | None:
    """``convert_validate_port_value``: None or 0..65535."""
    if v is None:
        return None
    try:
        n = to_int(v)
    except ValueError:
        raise ValueError(f"Invalid value for port {v}") from None
    if not 0 <= n <= 65535:
        raise ValueError(f"Invalid value for port {v}")
    return n


port_bound = Conv(_port_bound, {"type": "integer", "minimum": 0, "maximum": 65535, "nullable": True})


def _ethertype(v: Any) -> str:
    if isinstance(v, str) and v.lower() in ("ipv4", "ipv6"):
        return "IPv4" if v.lower() == "ipv4" else "IPv6"
    raise ValueError(f"{v} is not in ['IPv4', 'IPv6']")


ethertype = Conv(_ethertype, {"type": "string", "enum": ["IPv4", "IPv6", "ipv4", "ipv6"]})

SECURITY_GROUP_RULE = Resource("security_group_rule", "security_group_rules", {
    "description": Attr(default="", convert=string(255)),
    "security_group_id": Attr(put=False, required=True, convert=to_uuid),
    "direction": Attr(put=False, required=True, convert=one_of("ingress", "egress")),
    "ethertype": Attr(put=False, default="IPv4", convert=ethertype),
    "protocol": Attr(put=False, default=None, convert=protocol),
    "port_range_min": Attr(put=False, default=None, convert=port_bound, kind="int"),
    "port_range_max": Attr(put=False, default=None, convert=port_bound, kind="int"),
    "remote_ip_prefix": Attr(put=False, default=None, convert=to_prefix_or_none),
    # Neutron does not validate it: a value no group has is the 404 of the lookup
    "remote_group_id": Attr(put=False, default=None, convert=string_or_none(255)),
    "remote_address_group_id": Attr(put=False, default=None, convert=to_uuid_or_none),
}, frozenset({"normalized_cidr", "belongs_to_default_sg"}))

PREFIXLEN = int_range(0, 128)
IP_VERSION = Conv(lambda v: one_of(4, 6)(to_int(v)), {"enum": [4, 6]})


@typed({"type": "integer", "minimum": 0, "maximum": DB_INTEGER_MAX, "nullable": True})
def quota_or_none(v: Any) -> int | None:
    """A subnet pool's ``default_quota``: ``convert_to_int`` then ``type:non_negative`` (None: no quota)."""
    return None if v is None else non_negative(v)


SUBNETPOOL = Resource("subnetpool", "subnetpools", {
    "name": Attr(required=True, convert=name_string(255)), "description": DESCRIPTION,
    "prefixes": Attr(required=True, convert=list_of(to_cidr), kind="list"),
    "default_prefixlen": Attr(convert=PREFIXLEN, kind="int"),
    "min_prefixlen": Attr(convert=PREFIXLEN, kind="int"),
    "max_prefixlen": Attr(convert=PREFIXLEN, kind="int"),
    "default_quota": Attr(default=None, convert=quota_or_none, kind="int"),
    "shared": Attr(put=False, default=False, convert=to_bool, kind="bool"),
    "is_default": Attr(default=False, convert=to_bool, kind="bool"),
    "address_scope_id": Attr(default=None, convert=to_uuid_or_none),
}, frozenset({"ip_version"}))

ADDRESS_SCOPE = Resource("address_scope", "address_scopes", {
    "name": Attr(required=True, convert=name_string(255)),
    "shared": Attr(default=False, convert=to_bool, kind="bool"),
    "ip_version": Attr(put=False, required=True, convert=IP_VERSION, kind="int"),
})

PF_PROTOCOLS = ("dccp", "icmp", "ipv6-icmp", "sctp", "tcp", "udp")  # neutron-lib's IPTABLES_PROTOCOL_MAP


def _pf_protocol(v: Any) -> str:
    """``convert_to_protocol`` then ``type:values`` (the names iptables knows)."""
    if isinstance(v, str) and v.lower() in PF_PROTOCOLS:
        return v.lower()
    if isinstance(v, (str, int)) and not isinstance(v, bool) and re.fullmatch(r"\d{1,3}", str(v)) \
            and int(v) <= 255:
        raise ValueError(f"{v} is not in {list(PF_PROTOCOLS)}")
    raise ValueError(f"IP protocol '{v}' is not supported. Only protocol names and their integer representation "
                     "(0 to 255) are supported")


def _pf_port(v: Any) -> int | None:
    """``type:range_or_none`` (1, 65535) after ``convert_to_int``."""
    return None if v is None else PF_PORT(v)  # type: ignore[no-any-return]


def _pf_port_range(v: Any) -> str | None:
    """``type:port_range`` (1, 65535): ``N`` or ``N:M`` with N <= M, given back as ``N:M``."""
    if v is None:
        return None
    parts = str(v).split(":")
    if len(parts) > 2 or any(p == "" for p in parts):
        raise ValueError("Port range must be two integers separated by a colon")
    for p in parts:
        if not p.isdigit() or not 0 <= int(p) <= 65535:
            raise ValueError(f"Invalid port: {p}")
        if not 1 <= int(p) <= 65535:
            raise ValueError(f"Invalid port: {p}, the port must be in the range [1, 65535]")
    if len(parts) > 1 and int(parts[0]) > int(parts[1]):
        raise ValueError("First port in a port range must be lower than the second port")
    return f"{int(parts[0])}:{int(parts[-1])}"


PF_PORT = int_range(1, 65535)

# a floating IP's sub-resource (/v2.0/floatingips/{id}/port_forwardings): not among RESOURCES, whose
# members are top-level collections
PORT_FORWARDING = Resource("port_forwarding", "port_forwardings", {
    "external_port": Attr(default=None, convert=Conv(_pf_port, _nullable(PF_PORT.schema)), kind="int"),
    "internal_port": Attr(default=None, convert=Conv(_pf_port, _nullable(PF_PORT.schema)), kind="int"),
    "external_port_range": Attr(default=None, convert=Conv(_pf_port_range, {
        "type": "string", "pattern": "^[0-9]{1,5}(:[0-9]{1,5})?$", "nullable": True})),
    "internal_port_range": Attr(default=None, convert=Conv(_pf_port_range, {
        "type": "string", "pattern": "^[0-9]{1,5}(:[0-9]{1,5})?$", "nullable": True})),
    "internal_ip_address": Attr(default=None, convert=to_ip_or_none),
    "protocol": Attr(required=True, convert=Conv(_pf_protocol, {"type": "string", "enum": list(PF_PROTOCOLS)})),
    "internal_port_id": Attr(required=True, convert=to_uuid),
    "description": DESCRIPTION,
})

# object_type and target_tenant are checked by the service (services.rbac), in Neutron's wording
RBAC_POLICY = Resource("rbac_policy", "rbac_policies", {
    "object_type": Attr(put=False, default=None),
    "object_id": Attr(put=False, required=True, convert=to_uuid),
    "target_tenant": Attr(required=True),
    "action": Attr(put=False, required=True, convert=string(255)),
})

RESOURCES = {r.singular: r for r in (NETWORK, SUBNET, PORT, ROUTER, FLOATINGIP, SECURITY_GROUP,
                                     SECURITY_GROUP_RULE, SUBNETPOOL, ADDRESS_SCOPE, RBAC_POLICY)}


def prepare_body(res: Resource, body: Any, *, create: bool, fill_defaults: bool = True) -> dict[str, Any]:
    """Validate one resource's attributes for POST (``create``) or PUT; convert values.

    Returns converted attributes; on POST missing attributes get their defaults (when declared).
    ``project_id``/``tenant_id`` are passed through (merged into ``project_id``).
    """
    if not isinstance(body, dict):
        raise bad_request(f"Unable to find '{res.singular}' in request body")
    known = res.known()
    unknown = [k for k in body if k not in known]
    if unknown:
        raise bad_request(f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'")
    out: dict[str, Any] = {}
    for k, v in body.items():
        if k in ("project_id", "tenant_id"):
            if not create:
                raise bad_request(f"Cannot update read-only attribute {k}")
            try:
                PROJECT(v)
            except ValueError as e:
                raise bad_request(f"Invalid input for {k}. Reason: {e}.") from None
            if "project_id" in out and out["project_id"] != v:
                raise bad_request("'project_id' and 'tenant_id' do not match")
            out["project_id"] = v
            continue
        spec = res.attrs.get(k)
        if spec is None:  # read-only attribute
            if create:
                raise bad_request(f"Attribute '{k}' not allowed in POST")
            raise bad_request(f"Cannot update read-only attribute {k}")
        if create and not spec.post:
            raise bad_request(f"Attribute '{k}' not allowed in POST")
        if not create and not spec.put:
            raise bad_request(f"Cannot update read-only attribute {k}")
        if spec.convert is not None:
            try:
                v = spec.convert(v)
            except ValueError as e:
                raise bad_request(f"Invalid input for {k}. Reason: {e}.") from None
        out[k] = v
    if create:
        for k, required, d, copy in res._on_create:  # the attributes in their order, as res.attrs has them
            if k in out:
                continue
            if required:
                raise bad_request(f"Failed to parse request. Required attribute '{k}' not specified")
            if fill_defaults and d is not MISSING:
                out[k] = d if copy is None else copy(d)
    return out
