"""The host store is lossless: what `save_host` keeps, `load_host` gives back equal (``==``), for
every host of every example scenario and for every example capture directory; and the cache beside
the captures never stands in for captures that changed.

On a failure the message names the host and the first field that differs (`first_difference`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any

import pytest

from neutrino import store
from neutrino.cli import main
from neutrino.deploy import bring_up
from neutrino.host.iproute_link import Link, LinkKind
from neutrino.host.state import HostState, NamespaceState
from neutrino.views.export import captures_of

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "examples").glob("seed00*.yaml"))
CAPTURE_DIRS = sorted(p for p in (ROOT / "examples" / "captures").iterdir() if p.is_dir())


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where ``a`` and ``b`` first differ (``None`` when equal), as ``path: a != b``. Walks
    dataclasses field by field (skipping the fields ``==`` does not compare), and tuples, lists and
    dicts item by item."""
    if a == b:
        return None
    if type(a) is not type(b):
        return f"{path or '.'}: {type(a).__name__} {a!r:.120} != {type(b).__name__} {b!r:.120}"
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        for f in dataclasses.fields(a):
            if f.compare:
                found = first_difference(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
                if found:
                    return found
    elif isinstance(a, tuple | list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)} items"
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=repr):
            found = first_difference(a.get(k), b.get(k), f"{path}[{k!r}]")
            if found:
                return found
    return f"{path or '.'}: {a!r:.200} != {b!r:.200}"


def test_first_difference_names_the_field() -> None:
    lk = Link(1, "vlan100", link_type="ether", kind=LinkKind.VLAN)
    a = HostState("h", namespaces=(NamespaceState(links=(lk,)),))
    b = HostState("h", namespaces=(NamespaceState(links=(dataclasses.replace(lk, kind=None),)),))
    assert first_difference(a, a) is None
    assert first_difference(a, b) == (
        ".namespaces[0].links[0].kind: LinkKind <LinkKind.VLAN: 'vlan'> != NoneType None")
    assert first_difference((1, 2), (1, 2, 3)) == ": 2 items != 3 items"


def _loaded_without_cache(name: str) -> HostState:
    (store.hosts_dir() / name / store.CACHE).unlink(missing_ok=True)
    return store.load_host(name)


def _assert_kept(host: HostState, where: str) -> None:
    """``host`` loads back equal: from the cache, and from the captures alone."""
    cached = store.load_host(host.name)
    for how, loaded in (("cache", cached), ("captures", _loaded_without_cache(host.name))):
        diff = first_difference(host, loaded)
        assert diff is None, f"{where}: host {host.name} ({how}) differs at {diff}"


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[HostState, ...]]:
    """Every example scenario, planned once for the module."""
    return {p.stem: bring_up(p, state=tmp_path_factory.mktemp(p.stem), keep=False).hosts for p in SCENARIOS}


@pytest.mark.parametrize("scenario", [p.stem for p in SCENARIOS])
def test_every_planned_host_loads_back_equal(scenario: str, planned: dict[str, tuple[HostState, ...]],
                                             tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(SCENARIOS) == 5
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    hosts = planned[scenario]
    assert hosts
    for host in hosts:
        store.save_host(host)
        _assert_kept(host, scenario)


@pytest.mark.parametrize("directory", CAPTURE_DIRS, ids=[p.name for p in CAPTURE_DIRS])
def test_every_capture_directory_loads_back_equal(directory: pathlib.Path, tmp_path: pathlib.Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(CAPTURE_DIRS) >= 2
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "imported"))
    imported = store.import_host(directory, directory.name)
    _assert_kept(imported, f"import of {directory.name}")
    # and written out by neutrino (as `up` keeps hosts) rather than kept verbatim
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "saved"))
    store.save_host(imported)
    _assert_kept(imported, f"save of {directory.name}")


def test_planned_vlan_devices_keep_their_kind_in_ip_d_link(planned: dict[str, tuple[HostState, ...]],
                                                           tmp_path: pathlib.Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    host = next(h for h in planned["seed003"] if h.name == "compute-1")
    captures = dict(captures_of(host))
    assert "ip -d link" in captures
    vlan = re.compile(r"^\d+: vlan100@eth0: .*\n    link/ether \S+ brd \S+\n    vlan\n", re.M)
    assert vlan.search(captures["ip -d link"]), captures["ip -d link"]
    store.save_host(host)
    root = _loaded_without_cache(host.name).namespace("")
    vlan100 = root.link("vlan100") if root is not None else None
    assert vlan100 is not None and vlan100.kind is LinkKind.VLAN


def test_a_device_of_unknown_kind_beside_planned_ones(tmp_path: pathlib.Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``ip -d link`` would call a NIC of unknown kind ``ether``: it gets its own plain capture."""
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    known = Link(2, "vlan7", peer="eth0", flags=("UP",), mtu=1500, link_type="ether", mac="fa:16:3e:00:00:07",
                 brd="ff:ff:ff:ff:ff:ff", kind=LinkKind.VLAN)
    unknown = Link(3, "eth9", flags=("UP",), mtu=1500, link_type="ether", mac="fa:16:3e:00:00:09",
                   brd="ff:ff:ff:ff:ff:ff")
    host = HostState("mixed", namespaces=(NamespaceState(links=(known, unknown)),))
    assert [c for c, _ in captures_of(host)] == ["ip addr", "ip -d link", "ip link show dev eth9"]
    store.save_host(host)
    _assert_kept(host, "mixed kinds")


def test_the_cache_follows_the_captures(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    store.import_host(CAPTURE_DIRS[0], "h")
    cache = store.hosts_dir() / "h" / store.CACHE
    assert cache.is_file()
    before = store.load_host("h")
    # a capture edited by hand: the cache is stale and the captures win
    capture = store.hosts_dir() / "h" / "captures" / "ip_route.txt"
    capture.write_text("$ ip route\n10.9.0.0/24 dev eth0 proto kernel scope link src 10.9.0.1\n")
    edited = store.load_host("h")
    root = edited.namespace("")
    assert edited != before and root is not None
    assert [str(r.dst) for r in root.routes or ()] == ["10.9.0.0/24"]
    assert store.load_host("h") == edited  # the cache was rebuilt from them
    # an unreadable cache is rebuilt, never trusted
    cache.write_bytes(b"not a pickle")
    assert store.load_host("h") == edited
    assert cache.read_bytes() != b"not a pickle"


def test_cli_ping_over_a_kept_cloud(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """seed 003 (nova-network VlanManager): VM_1 reaches VM_5 through vlan100 when the hosts are
    read back from the state folder (the VLAN devices' kind used to be lost there)."""
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    assert main(["up", str(ROOT / "examples" / "seed003.yaml")]) == 0
    for path in [*tmp_path.glob("hosts/*/" + store.CACHE), *tmp_path.glob("*.pickle")]:
        path.unlink()  # nothing kept but the captures: ping reads the hosts from them
    capsys.readouterr()
    assert main(["ping", "VM_1", "VM_5"]) == 0, capsys.readouterr()
    assert capsys.readouterr().out.startswith("VM_1 -> VM_5: reply")
