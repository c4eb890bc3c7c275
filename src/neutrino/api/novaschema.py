"""Nova's request schemas (``nova/api/openstack/compute/schemas``) and the JSON-schema checks Nova
runs them with, with Nova's error wording.

Only the part of JSON Schema Nova's schemas use is implemented: ``type`` (one or a list),
``enum``, ``properties``/``required``/``additionalProperties``/``patternProperties``, ``items``,
``minItems``/``maxItems``/``uniqueItems``, ``minLength``/``maxLength``/``pattern``,
``minimum``/``maximum`` (numbers in strings too, as Nova's validator allows), ``oneOf``/``anyOf``/
``allOf`` and Nova's formats (``uuid``, ``ipv4``, ``ipv6``, ``cidr``, ``name``, ``az_name``,
``base64``, ``regex``). The same dictionaries go into the OpenAPI document.

    >>> validate(server_create((2, 1)), {"server": {"name": " x", "flavorRef": "1"}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neutrino.errors.InvalidInput: An invalid 'name' value was provided. The name must be: printable characters...
    >>> validate(add_security_group, {"addSecurityGroup": {}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neutrino.errors.InvalidInput: Invalid input for field/attribute addSecurityGroup. ... 'name' is a required property
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import re
from collections.abc import Iterator
from typing import Any

from neutrino.errors import InvalidInput
from neutrino.services.attributes import is_uuid, printable, valid_name

Version = tuple[int, int]

# -- parameter types (nova/api/validation/parameter_types.py) ---------------------------------------

boolean: dict[str, Any] = {
    "type": ["boolean", "string"],
    "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
             False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"],
}
name: dict[str, Any] = {"type": "string", "format": "name", "minLength": 1, "maxLength": 255}
name_or_none: dict[str, Any] = {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 255}, {"type": "null"}]}
positive_integer: dict[str, Any] = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1,
                                    "minLength": 1, "maximum": 2**31 - 1}
non_negative_integer: dict[str, Any] = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0,
                                        "minLength": 1}
description: dict[str, Any] = {"type": ["string", "null"], "format": "printable", "minLength": 0, "maxLength": 255}
uuid_: dict[str, Any] = {"type": "string", "format": "uuid"}
image_id_or_empty: dict[str, Any] = {"oneOf": [{"type": "string", "format": "uuid"},
                                               {"type": "string", "maxLength": 0}]}
flavor_ref: dict[str, Any] = {"type": ["string", "integer"], "minLength": 1}
ip_address: dict[str, Any] = {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
fqdn: dict[str, Any] = {"type": "string", "pattern": "^[a-zA-Z0-9-._]*$", "minLength": 1, "maxLength": 255}
tag: dict[str, Any] = {"type": "string", "pattern": "^[^,/]*$", "minLength": 1, "maxLength": 60}
metadata: dict[str, Any] = {"type": "object",
                            "patternProperties": {"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string", "maxLength": 255}},
                            "additionalProperties": False}
disk_config: dict[str, Any] = {"type": "string", "enum": ["AUTO", "MANUAL"]}

_bdm: dict[str, Any] = {
    "type": "object",
    "properties": {
        "virtual_name": {"type": "string", "maxLength": 255},
        "volume_id": uuid_, "snapshot_id": uuid_,
        "volume_size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": 0x7FFFFFFF},
        "device_name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._/-]*$"},
        "delete_on_termination": boolean, "no_device": {},
        "connection_info": {"type": "string", "maxLength": 16777215},
        "source_type": {"type": "string", "enum": ["volume", "image", "snapshot", "blank"]},
        "uuid": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._-]*$"},
        "image_id": uuid_,
        "destination_type": {"type": "string", "enum": ["local", "volume"]},
        "guest_format": {"type": "string", "maxLength": 255},
        "device_type": {"type": "string", "maxLength": 255},
        "disk_bus": {"type": "string", "maxLength": 255},
        "boot_index": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$"},
    },
    "additionalProperties": False,
}

_network_item: dict[str, Any] = {
    "type": "object",
    "properties": {"fixed_ip": ip_address, "port": {"type": ["string", "null"], "format": "uuid"},
                   "uuid": {"type": "string"}},
    "additionalProperties": False,
}


def server_create(v: Version) -> dict[str, Any]:
    """The body of ``POST /servers`` at microversion ``v`` (``create`` .. ``create_v274``). (Before
    2.37 ``networks`` is a list; ``ComputeAPI`` takes ``auto`` and ``none`` there too.)"""
    server: dict[str, Any] = {
        "type": "object",
        "properties": {
            "name": name, "imageRef": image_id_or_empty, "flavorRef": flavor_ref,
            "adminPass": {"type": "string"}, "metadata": metadata,
            "networks": {"type": "array", "items": copy.deepcopy(_network_item)},
            "OS-DCF:diskConfig": disk_config,
            "accessIPv4": {"type": "string", "format": "ipv4"}, "accessIPv6": {"type": "string", "format": "ipv6"},
            "personality": {"type": "array", "items": {"type": "object", "properties": {
                "path": {"type": "string"}, "contents": {"type": "string", "format": "base64"}},
                "additionalProperties": False}},
            "availability_zone": name,
            "block_device_mapping": {"type": "array", "items": _bdm},
            "block_device_mapping_v2": {"type": "array", "items": _bdm},
            "config_drive": boolean, "key_name": name,
            "min_count": positive_integer, "max_count": positive_integer,
            "return_reservation_id": boolean,
            "security_groups": {"type": "array", "items": {"type": "object", "properties": {"name": name},
                                                          "additionalProperties": False}},
            "user_data": {"type": "string", "format": "base64", "maxLength": 65535},
        },
        "required": ["name", "flavorRef"],
        "additionalProperties": False,
    }
    props = server["properties"]
    items = props["networks"]["items"]["properties"]
    if v >= (2, 19):
        props["description"] = description
    if v == (2, 32) or v >= (2, 33):
        items["tag"] = tag
    if v >= (2, 37):
        server["required"].append("networks")
        items["uuid"] = uuid_
        if (2, 37) <= v < (2, 42):
            items.pop("tag", None)
        props["networks"] = {"oneOf": [props["networks"], {"type": "string", "enum": ["none", "auto"]}]}
    if v >= (2, 52):
        props["tags"] = {"type": "array", "items": tag, "maxItems": 50}
    if v >= (2, 57):
        props.pop("personality")
    if v >= (2, 63):
        props["trusted_image_certificates"] = {"type": ["array", "null"], "minItems": 1, "maxItems": 50,
                                               "uniqueItems": True, "items": {"type": "string", "minLength": 1}}
    if v >= (2, 74):
        props["host"] = fqdn
        props["hypervisor_hostname"] = fqdn
    hints = {"type": "object", "additionalProperties": True}
    return {"type": "object", "properties": {"server": server, "os:scheduler_hints": hints,
                                             "OS-SCH-HNT:scheduler_hints": hints},
            "required": ["server"], "additionalProperties": False}


def server_update(v: Version) -> dict[str, Any]:
    props: dict[str, Any] = {"name": name, "OS-DCF:diskConfig": disk_config,
                             "accessIPv4": {"type": "string", "format": "ipv4"},
                             "accessIPv6": {"type": "string", "format": "ipv6"}}
    if v >= (2, 19):
        props["description"] = description
    return {"type": "object", "properties": {"server": {"type": "object", "properties": props,
                                                        "additionalProperties": False}},
            "required": ["server"], "additionalProperties": False}


def _named_action(action: str) -> dict[str, Any]:
    return {"type": "object", "properties": {action: {
        "type": "object", "properties": {"name": {"type": "string", "minLength": 1}}, "required": ["name"],
        "additionalProperties": False}}, "required": [action], "additionalProperties": True}


add_security_group = _named_action("addSecurityGroup")
remove_security_group = _named_action("removeSecurityGroup")

console_output: dict[str, Any] = {
    "type": "object",
    "properties": {"os-getConsoleOutput": {"type": "object", "properties": {
        "length": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$", "minimum": -1}},
        "additionalProperties": False}},
    "required": ["os-getConsoleOutput"], "additionalProperties": False,
}

interface_create: dict[str, Any] = {
    "type": "object",
    "properties": {"interfaceAttachment": {"type": "object", "properties": {
        "net_id": uuid_, "port_id": uuid_,
        "fixed_ips": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "type": "object", "properties": {"ip_address": ip_address}, "required": ["ip_address"],
            "additionalProperties": False}},
        "tag": tag}, "additionalProperties": False}},
    "additionalProperties": False,
}

service_update: dict[str, Any] = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["enabled", "disabled"]},
                   "disabled_reason": {"type": "string", "minLength": 1, "maxLength": 255},
                   "forced_down": boolean},
    "additionalProperties": False,
}

ACTIONS = {"addSecurityGroup": add_security_group, "removeSecurityGroup": remove_security_group,
           "os-getConsoleOutput": console_output}


# -- the checks -----------------------------------------------------------------------------------

class _Error(Exception):
    def __init__(self, message: str, path: list[Any], instance: Any, *, name_error: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.instance = instance
        self.name_error = name_error


NAME_REASON = "printable characters. Can not start or end with whitespace."
AZ_REASON = "printable characters except :.Can not start or end with whitespace."


def _is_type(value: Any, t: str) -> bool:
    if t == "string":
        return isinstance(value, str)
    if t == "integer":  # JSON Schema's: 2.0 is an integer too
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float)
                                                                            and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "null":
        return value is None
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    return True


def _repr(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _format_ok(fmt: str, v: Any, path: list[Any]) -> None:
    if not isinstance(v, str):
        if fmt in ("name", "az_name"):
            raise _Error("not a string", path, v, name_error=NAME_REASON if fmt == "name" else AZ_REASON)
        return
    ok = True
    if fmt == "uuid":
        ok = is_uuid(v)
    elif fmt in ("ipv4", "ipv6"):
        try:
            ip = ipaddress.ip_address(v)
            ok = ip.version == (4 if fmt == "ipv4" else 6) and "%" not in v
        except ValueError:
            ok = False
    elif fmt == "cidr":
        try:
            ok = "/" in v and not re.search(r"\s", v) and ipaddress.ip_network(v, strict=False) is not None
        except ValueError:
            ok = False
    elif fmt == "name":
        if not valid_name(v):
            raise _Error("invalid name", path, v, name_error=NAME_REASON)
    elif fmt == "az_name":
        if not valid_name(v) or ":" in v:
            raise _Error("invalid name", path, v, name_error=AZ_REASON)
    elif fmt == "printable":
        ok = all(printable(c) for c in v)
    elif fmt == "base64":
        try:
            base64.b64decode(v.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            ok = False
    elif fmt == "regex":
        try:
            re.compile(v)
        except re.error:
            ok = False
    if not ok:
        if fmt == "printable":
            raise _Error(f"{_repr(v)} does not match the printable characters of a description", path, v)
        raise _Error(f"{_repr(v)} is not a '{fmt}'", path, v)


def _number(v: Any) -> float | int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                return None
            return f
    return None


def _errors(schema: dict[str, Any], v: Any, path: list[Any]) -> Iterator[_Error]:
    try:
        _check(schema, v, path)
    except _Error as e:
        yield e


def _check(schema: dict[str, Any], v: Any, path: list[Any]) -> None:
    """Raise the first error of ``v`` against ``schema``."""
    for key, arg in schema.items():
        if key == "type":
            types = arg if isinstance(arg, list) else [arg]
            if not any(_is_type(v, t) for t in types):
                raise _Error(f"{_repr(v)} is not of type {', '.join(repr(t) for t in types)}", path, v)
        elif key == "enum":
            if not any(v == a and isinstance(v, bool) == isinstance(a, bool) for a in arg):
                raise _Error(f"{_repr(v)} is not one of {arg}", path, v)
        elif key == "properties" and isinstance(v, dict):
            for k, sub in arg.items():
                if k in v:
                    _check(sub, v[k], [*path, k])
        elif key == "patternProperties" and isinstance(v, dict):
            for k, item in v.items():
                for pat, sub in arg.items():
                    if re.search(pat, k):
                        _check(sub, item, [*path, k])
        elif key == "additionalProperties" and isinstance(v, dict):
            known = set(schema.get("properties", {}))
            pats = list(schema.get("patternProperties", {}))
            extra = [k for k in v if k not in known and not any(re.search(p, k) for p in pats)]
            if arg is False and extra:
                if pats:
                    raise _Error(f"{', '.join(repr(k) for k in extra)} "
                                 f"{'does' if len(extra) == 1 else 'do'} not match any of the regexes: "
                                 f"{', '.join(repr(p) for p in pats)}", path, v)
                verb = "was" if len(extra) == 1 else "were"
                raise _Error(f"Additional properties are not allowed ({', '.join(repr(k) for k in extra)} "
                             f"{verb} unexpected)", path, v)
            if isinstance(arg, dict):
                for k in extra:
                    _check(arg, v[k], [*path, k])
        elif key == "required" and isinstance(v, dict):
            for k in arg:
                if k not in v:
                    raise _Error(f"{k!r} is a required property", path, v)
        elif key == "items" and isinstance(v, list):
            for i, item in enumerate(v):
                _check(arg, item, [*path, i])
        elif key == "minItems" and isinstance(v, list) and len(v) < arg:
            raise _Error(f"{_repr(v)} should be non-empty" if arg == 1 else f"{_repr(v)} is too short", path, v)
        elif key == "maxItems" and isinstance(v, list) and len(v) > arg:
            raise _Error(f"{_repr(v)} is too long", path, v)
        elif key == "uniqueItems" and arg and isinstance(v, list):
            seen: list[Any] = []
            for item in v:
                if item in seen:
                    raise _Error(f"{_repr(v)} has non-unique elements", path, v)
                seen.append(item)
        elif key == "minLength" and isinstance(v, str) and len(v) < arg:
            raise _Error(f"{_repr(v)} should be non-empty" if arg == 1 else f"{_repr(v)} is too short", path, v)
        elif key == "maxLength" and isinstance(v, str) and len(v) > arg:
            raise _Error(f"{_repr(v)} is too long", path, v)
        elif key == "pattern" and isinstance(v, str) and not re.search(arg, v):
            raise _Error(f"{_repr(v)} does not match {arg!r}", path, v)
        elif key == "format":
            _format_ok(arg, v, path)
        elif key in ("minimum", "maximum"):
            n = _number(v)
            if n is not None and key == "minimum" and n < arg:
                raise _Error(f"{_repr(v)} is less than the minimum of {arg}", path, v)
            if n is not None and key == "maximum" and n > arg:
                raise _Error(f"{_repr(v)} is greater than the maximum of {arg}", path, v)
        elif key == "oneOf":
            matched = [s for s in arg if not list(_errors(s, v, path))]
            if not matched:
                raise _Error(f"{_repr(v)} is not valid under any of the given schemas", path, v)
            if len(matched) > 1:
                raise _Error(f"{_repr(v)} is valid under each of {', '.join(str(s) for s in matched)}", path, v)
        elif key == "anyOf":
            if all(list(_errors(s, v, path)) for s in arg):
                raise _Error(f"{_repr(v)} is not valid under any of the given schemas", path, v)
        elif key == "allOf":
            for s in arg:
                _check(s, v, path)


def validate(schema: dict[str, Any], body: Any, *, query: bool = False) -> None:
    """Check ``body`` against ``schema``; raise Nova's ``ValidationError`` wording as InvalidInput."""
    try:
        _check(schema, body, [])
    except _Error as e:
        if e.name_error is not None:
            raise InvalidInput(f"An invalid 'name' value was provided. The name must be: {e.name_error}") from None
        if e.path:
            if query:
                raise InvalidInput(f"Invalid input for query parameters {e.path[0]}. Value: {e.instance}. "
                                   f"{e.message}") from None
            raise InvalidInput(f"Invalid input for field/attribute {e.path[-1]}. Value: {e.instance}. "
                               f"{e.message}") from None
        raise InvalidInput(e.message) from None
