"""The snapshot's wire format (``neutrino.services.wire``): every example scenario's cloud comes back
from JSON equal, with the same types all the way down, and plans the same hosts."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from neutrino.deploy import bring_up
from neutrino.errors import InvalidInput
from neutrino.plan import plan_cloud
from neutrino.scenarios.model import Mechanism
from neutrino.services.snapshot import CloudSnapshot
from neutrino.services.wire import snapshot_from_json, snapshot_to_json

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "examples").glob("seed00[0-4].yaml"))


def same(a: Any, b: Any, where: str = "snapshot") -> None:
    """``a`` and ``b`` are equal and of the same type at every level (``True == 1`` is not enough)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if f.compare:
                same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module", params=[p.stem for p in SEEDS])
def snapshot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CloudSnapshot:
    state = tmp_path_factory.mktemp(request.param)
    return bring_up(ROOT / "examples" / f"{request.param}.yaml", state=state, keep=False).cloud


def test_every_seed_has_a_scenario() -> None:
    assert [p.stem for p in SEEDS] == [f"seed00{i}" for i in range(5)]


def test_round_trip_is_lossless(snapshot: CloudSnapshot) -> None:
    doc = snapshot_to_json(snapshot)
    text = json.dumps(doc)  # plain JSON: nothing but dicts, lists, strings, numbers, booleans, null
    back = snapshot_from_json(json.loads(text))
    assert back == snapshot
    same(back, snapshot)
    assert json.dumps(snapshot_to_json(back)) == text
    # the look-ups the planners make are rebuilt, not sent
    assert "_index" not in doc
    for port in snapshot.ports:
        assert back.port(port.id) == port
    assert plan_cloud(back) == plan_cloud(snapshot)


def test_the_wire_carries_types_as_text(snapshot: CloudSnapshot) -> None:
    doc = snapshot_to_json(snapshot)
    assert doc["deployment"]["mechanism"] in {m.value for m in Mechanism}
    host = doc["deployment"]["hosts"][0]
    assert isinstance(host["roles"], list) and host["roles"] == sorted(host["roles"])
    back = snapshot_from_json(doc)
    assert isinstance(back.deployment.mechanism, Mechanism)
    assert isinstance(back.deployment.hosts[0].roles, frozenset)
    for sub in back.subnets:
        assert isinstance(sub.cidr, ipaddress.IPv4Network | ipaddress.IPv6Network)
        assert all(isinstance(p.start, ipaddress.IPv4Address | ipaddress.IPv6Address)
                   for p in sub.allocation_pools)


def test_a_document_that_is_not_a_snapshot_is_refused() -> None:
    from neutrino.scenarios.model import default_scenario

    doc = snapshot_to_json(CloudSnapshot(default_scenario().deployment))
    with pytest.raises(InvalidInput, match="deployment.hosts\\[0\\].management_ip"):
        snapshot_from_json({**doc, "deployment": {**doc["deployment"], "hosts": [
            {**doc["deployment"]["hosts"][0], "management_ip": "not-an-address"}]}})
    with pytest.raises(InvalidInput, match="expected an integer"):
        snapshot_from_json({**doc, "deployment": {**doc["deployment"], "physical_mtu": "1500"}})
    with pytest.raises(InvalidInput, match="lacks 'deployment'"):
        snapshot_from_json({"networks": []})
    with pytest.raises(InvalidInput):
        snapshot_from_json([])
