"""``neutrino.api.common.dumps`` (every JSON answer's body) writes orjson's bytes only where they are
json.dumps's: any value, however odd, comes out as ``json.dumps(v, separators=(",", ":"))`` did."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neutrino.api import common
from neutrino.api.common import dumps


def reference(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats() | st.floats(min_value=-1e-3, max_value=1e-3) | st.text()
           | st.text(alphabet=st.characters(max_codepoint=0x80)) | st.sampled_from([Colour.RED, Name("n")]))
keys = st.text() | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=12)


@settings(max_examples=600, deadline=None)
@given(values)
def test_same_bytes_as_json_dumps(value: Any) -> None:
    assert dumps(value) == reference(value)


@pytest.mark.parametrize("value", [
    1e-7, -2.5e-5, 1e-10, 1e16, 5e-324, float("nan"), float("inf"), -float("inf"), 2**64, -2**63 - 1,
    "é", "\x7f", "\ud800", "\x00\x1f\b\f\t\r\n\"\\/", {1: "a"}, {None: 1, True: 2, 1.5: 3}, (1, [2, (3,)]),
    {"name": "e-1", "id": "0f6e-4b1c"}, Colour.RED, Name("x"), {"k": Name("v")},
])
def test_the_values_orjson_writes_otherwise(value: Any) -> None:
    assert dumps(value) == reference(value)


def test_what_json_dumps_refuses_is_refused() -> None:
    for bad in (object(), {"a": {1, 2}}, b"bytes"):
        with pytest.raises(TypeError):
            dumps(bad)
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError):
        dumps(circular)


def test_a_port_view_is_written_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken for an ordinary answer (the standard library is not called)."""
    view = {"port": {"id": "6d1c2b7e-0e8a-4f59-9f38-2f4c1e0b9a11", "name": "", "admin_state_up": True,
                     "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.3"}], "revision_number": 1,
                     "binding:profile": {}, "security_groups": ["g"]}}
    expected = reference(view)

    def refuse(*_a: Any, **_k: Any) -> str:
        raise AssertionError("json.dumps called")

    monkeypatch.setattr(common.json, "dumps", refuse)
    assert dumps(view) == expected
