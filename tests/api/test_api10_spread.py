"""api10's cuts in the request's Python give the same answers as what they replace: the JSON
``_plain`` check (members checked a container at a time), the body's encoding read without
``json.detect_encoding`` for a body opening with ``{``, and ``prepare_body``'s known names and
defaults made once per resource (its attributes read-only from then on)."""

from __future__ import annotations

import enum
import json
import uuid
from typing import Any

import pytest

from neutrino.api.common import BadBody, _plain, dumps, parse_json
from neutrino.errors import InvalidInput
from neutrino.services.attributes import (
    _STD_READONLY,
    MISSING,
    RESOURCES,
    Attr,
    Resource,
    prepare_body,
)

_SCALARS = frozenset((str, int, bool, type(None)))


def _plain_before(data: Any, limit: int = 100_000) -> bool:
    """The check as it was: every value taken off one stack."""
    stack = [data]
    while stack:
        limit -= 1
        if limit < 0:
            return False
        v = stack.pop()
        t = type(v)
        if t is dict:
            stack.extend(v.values())
        elif t is list or t is tuple:
            stack.extend(v)
        elif t not in _SCALARS:
            return False
    return True


class _Str(str):
    pass


class _Colour(enum.Enum):
    RED = "red"


def _cases() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    me: dict[str, Any] = {}
    me["me"] = me
    port = {"port": {"id": "p", "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.2"}], "tags": [],
                     "binding:profile": {}, "revision_number": 1, "admin_state_up": True, "qos_policy_id": None}}
    return [port, {}, [], (), "x", 1, True, None, 1.5, [1, [2, (3, {"a": 1.5})]], {"a": _Str("x")},
            [[]] * 5, list(range(10)), {"x": [None, True, "s", 2**70]}, {"k": uuid.UUID(int=1)},
            [_Colour.RED], {"a": {"b": {"c": [1, 2, {"d": float("nan")}]}}}, loop, me, [{1: 2}], {"t": (1, "2")}]


@pytest.mark.parametrize("case", range(len(_cases())))
def test_plain_answers_as_before_at_every_limit(case: int) -> None:
    data = _cases()[case]
    for limit in range(0, 40):
        assert _plain(data, limit) == _plain_before(data, limit), (data, limit)
    assert _plain(data) == _plain_before(data)


def test_plain_refuses_what_json_dumps_writes_otherwise() -> None:
    assert _plain({"port": {"a": [1, "b", None]}}) is True
    assert _plain({"port": {"a": [1, 1e-7]}}) is False
    assert _plain({"a": _Str("x")}) is False
    # and dumps writes json.dumps's bytes either way
    for data in ({"a": [1e-7, 0.000016]}, {"a": _Str("é")}, {"x": [None, True, "s", 2**70]}):
        assert dumps(data) == json.dumps(data, separators=(",", ":")).encode()


@pytest.mark.parametrize("raw", [
    b'{"port": {"network_id": "n"}}', b"{}", b"{", b'{"a": "\xc3\xa9"}', b'{"a":1}',
    '{"a": "é"}'.encode("utf-16-le"), '{"a": "é"}'.encode("utf-16-be"), '{"a": 1}'.encode("utf-32"),
    b"\xef\xbb\xbf{}", b'{"a": "\\ud800"}', b'{"a": "\xed\xa0\x80"}', b"[1]", b" {}", b'"s"',
])
def test_parse_json_reads_bodies_as_json_loads_does(raw: bytes) -> None:
    try:
        expected: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        expected = BadBody
    try:
        got: Any = parse_json(raw)
    except BadBody:
        got = BadBody
    if expected is not BadBody and got is BadBody:  # parse_json's own limits (a lone surrogate)
        assert "\ud800" in json.dumps(expected, ensure_ascii=False)
    else:
        assert got == expected


def _prepare_before(res: Resource, body: dict[str, Any]) -> dict[str, Any]:
    """prepare_body's create defaults as they were: read from ``res.attrs`` on each call."""
    out = prepare_body(res, body, create=True, fill_defaults=False)
    for k, spec in res.attrs.items():
        if k in out:
            continue
        if spec.default is not MISSING:
            d = spec.default
            out[k] = list(d) if isinstance(d, list) else dict(d) if isinstance(d, dict) else d
    return out


def test_prepare_body_fills_defaults_in_order_with_fresh_copies() -> None:
    port = RESOURCES["port"]
    body = {"network_id": "4c7a8e0e-5d62-4d3c-9b3e-1f2a3b4c5d6e"}
    a = prepare_body(port, body, create=True)
    assert a == _prepare_before(port, body)
    assert list(a) == list(_prepare_before(port, body))
    b = prepare_body(port, body, create=True)
    assert a["allowed_address_pairs"] == [] and a["allowed_address_pairs"] is not b["allowed_address_pairs"]
    assert a["binding:profile"] == {} and a["binding:profile"] is not b["binding:profile"]
    a["allowed_address_pairs"].append("x")
    assert prepare_body(port, body, create=True)["allowed_address_pairs"] == []
    assert "name" not in prepare_body(port, body, create=True, fill_defaults=False)
    with pytest.raises(InvalidInput, match="Required attribute 'network_id' not specified"):
        prepare_body(port, {}, create=True, fill_defaults=False)


def test_every_resource_knows_the_same_names_and_refuses_changes() -> None:
    for res in RESOURCES.values():
        assert res.known() == frozenset(res.attrs) | res.readonly | _STD_READONLY | {"project_id", "tenant_id"}
        with pytest.raises(TypeError):
            res.attrs["extra"] = Attr()  # type: ignore[index]
    made = Resource("thing", "things", {"a": Attr(required=True), "b": Attr(default=[1])})
    assert made == Resource("thing", "things", {"a": Attr(required=True), "b": Attr(default=[1])})
    assert prepare_body(made, {"a": "x"}, create=True) == {"a": "x", "b": [1]}
    with pytest.raises(InvalidInput, match="Unrecognized attribute"):
        prepare_body(made, {"a": "x", "c": 1}, create=True)


def test_a_port_create_through_the_app_answers_as_before(tmp_path: Any) -> None:
    """End to end: bodies in UTF-8 and UTF-16, a path with doubled slashes, a missing required
    attribute and an unknown one: the answers' bytes are ``json.dumps``'s, the errors Neutron's."""
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app
    from tests.api.api_helpers import app_headers

    application, _ = make_app(f"sqlite:///{tmp_path}/a.db", None, "keystone", "api10-spread")
    with TestClient(application) as c:
        headers = {**app_headers(c), "Content-Type": "application/json"}
        net = c.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=headers).json()["network"]["id"]
        assert c.post("/v2.0/subnets", json={"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.9.0.0/24"}},
                      headers=headers).status_code == 201
        r = c.post("/v2.0/ports", content=json.dumps({"port": {"network_id": net, "name": "é"}}).encode("utf-16"),
                   headers=headers)
        assert r.status_code == 201, r.text
        assert r.content == json.dumps(r.json(), separators=(",", ":")).encode()
        port = r.json()["port"]
        assert port["name"] == "é" and port["allowed_address_pairs"] == [] and port["binding:profile"] == {}
        assert port["fixed_ips"][0]["ip_address"].startswith("10.9.0.")
        r = c.post("/v2.0//ports/", content=b'{"port": {"network_id": "%s"}}' % net.encode(), headers=headers)
        assert r.status_code == 201 and r.json()["port"]["id"] != port["id"]
        r = c.post("/v2.0/ports", json={"port": {"name": "x"}}, headers=headers)
        assert r.status_code == 400
        assert "Required attribute 'network_id' not specified" in r.json()["NeutronError"]["message"]
        r = c.post("/v2.0/ports", json={"port": {"network_id": net, "bogus": 1}}, headers=headers)
        assert r.status_code == 400 and "Unrecognized attribute(s) 'bogus'" in r.json()["NeutronError"]["message"]
        r = c.post("/v2.0/ports", content=b'{"port": {"network_id": "\x00"}}', headers=headers)
        assert r.status_code == 400
