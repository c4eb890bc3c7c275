"""The cloud snapshot on the wire: what the server sends an agent process (``GET /neutrino/v1/snapshot``)
and the agent reads back, equal to what the server's planners see.

:func:`snapshot_to_json` turns a :class:`~neutrino.services.snapshot.CloudSnapshot` (with its
:class:`~neutrino.scenarios.model.Deployment`) into plain JSON values; :func:`snapshot_from_json`
rebuilds it from the dataclasses' own type annotations: addresses and networks
(:mod:`ipaddress`) travel as their text, enums as their value, tuples and frozensets as lists, nested
dataclasses as objects keyed by field name. Nothing is lost: ``snapshot_from_json(snapshot_to_json(s))
== s`` and the planners give the same hosts for both.

    >>> from neutrino.scenarios.model import default_scenario
    >>> snap = CloudSnapshot(default_scenario().deployment)
    >>> doc = snapshot_to_json(snap)
    >>> doc["deployment"]["hosts"][0]["management_ip"], doc["deployment"]["mechanism"]
    ('192.0.2.10', 'ml2_ovs')
    >>> snapshot_from_json(doc) == snap
    True
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import types
import typing
from typing import Any

from neutrino.errors import InvalidInput
from neutrino.services.snapshot import CloudSnapshot

_ADDRESSES = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_NETWORKS = (ipaddress.IPv4Network, ipaddress.IPv6Network)
_INTERFACES = (ipaddress.IPv4Interface, ipaddress.IPv6Interface)


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    """The fields that carry the value (the snapshot's look-up index is rebuilt, not sent)."""
    return tuple(f for f in dataclasses.fields(cls) if f.init and f.compare)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def encode(value: Any) -> Any:
    """Any value of a snapshot's dataclass tree as JSON values."""
    if isinstance(value, enum.Enum):  # before str and int: a StrEnum is a str too
        return encode(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, (*_ADDRESSES, *_NETWORKS, *_INTERFACES)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in _fields(type(value))}
    if isinstance(value, frozenset | set):
        return sorted((encode(v) for v in value), key=repr)
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    raise TypeError(f"cannot put a {type(value).__name__} on the wire: {value!r}")


def decode(tp: Any, raw: Any, where: str = "snapshot") -> Any:
    """``raw`` (JSON values) as a value of type ``tp`` (an annotation of the snapshot's dataclasses)."""
    if tp is Any:
        return raw
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        options = tuple(a for a in args if a is not type(None))
        if all(a in _ADDRESSES for a in options):
            return _text(ipaddress.ip_address, raw, where)
        if all(a in _NETWORKS for a in options):
            return _text(ipaddress.ip_network, raw, where)
        if all(a in _INTERFACES for a in options):
            return _text(ipaddress.ip_interface, raw, where)
        if len(options) == 1:
            return decode(options[0], raw, where)
        raise TypeError(f"{where}: no wire form for {tp}")
    if origin is tuple:
        seq = _list(raw, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(seq))
        if len(seq) != len(args):
            raise InvalidInput(f"{where}: expected {len(args)} items, got {len(seq)}")
        return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, seq, strict=True)))
    if origin in (frozenset, set):
        return frozenset(decode(args[0], v, where) for v in _list(raw, where))
    if origin is list:
        return [decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(_list(raw, where))]
    if origin is dict:
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where}: expected an object")
        return {decode(args[0], k, where): decode(args[1], v, f"{where}.{k}") for k, v in raw.items()}
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _dataclass(tp, raw, where)
        if issubclass(tp, enum.Enum):
            try:
                return tp(raw)
            except ValueError:
                raise InvalidInput(f"{where}: {raw!r} is not a {tp.__name__}") from None
        if tp in _ADDRESSES or tp in _NETWORKS or tp in _INTERFACES:
            return _text(tp, raw, where)
        if tp is bool:
            if not isinstance(raw, bool):
                raise InvalidInput(f"{where}: expected true or false, got {raw!r}")
            return raw
        if tp is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise InvalidInput(f"{where}: expected an integer, got {raw!r}")
            return raw
        if tp is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise InvalidInput(f"{where}: expected a number, got {raw!r}")
            return float(raw)
        if tp is str:
            if not isinstance(raw, str):
                raise InvalidInput(f"{where}: expected a string, got {raw!r}")
            return raw
    raise TypeError(f"{where}: no wire form for {tp}")


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise InvalidInput(f"{where}: expected a list, got {type(raw).__name__}")
    return raw


def _text(make: Any, raw: Any, where: str) -> Any:
    if not isinstance(raw, str):
        raise InvalidInput(f"{where}: expected an address as text, got {raw!r}")
    try:
        return make(raw)
    except ValueError as e:
        raise InvalidInput(f"{where}: {e}") from None


def _dataclass(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected an object for {cls.__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in _fields(cls):
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise InvalidInput(f"{where}: {cls.__name__} lacks {f.name!r}")
            continue  # an older writer: the field's default
        kwargs[f.name] = decode(hints[f.name], raw[f.name], f"{where}.{f.name}")
    return cls(**kwargs)


def snapshot_to_json(snapshot: CloudSnapshot) -> dict[str, Any]:
    """The snapshot as JSON values (``json.dumps`` takes it as it is)."""
    doc: dict[str, Any] = encode(snapshot)
    return doc


def snapshot_from_json(doc: Any) -> CloudSnapshot:
    """The snapshot :func:`snapshot_to_json` gave (raises :class:`InvalidInput` when ``doc`` is not one)."""
    snap: CloudSnapshot = _dataclass(CloudSnapshot, doc, "snapshot")
    return snap
