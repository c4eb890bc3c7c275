"""Issue #17, fifth round (replan5): ``hosts_affected_by_change`` compares the two snapshots' ports
pair by pair in their order (``_changed_ports``) instead of looking each up by id; it must find
exactly the ports the look-up by id found (added, removed, altered), and give up (None) exactly
when the ports both snapshots hold are in another order. Checked against that look-up, written
out here as it was, on changes of every kind made of new objects (as the server loads them), and
through the bench's re-plan, which now also times it."""

from __future__ import annotations

import copy
import dataclasses
import random

import pytest

from neutrino.plan import _changed_ports, hosts_affected_by_change, hosts_affected_by_port
from neutrino.services.snapshot import CloudSnapshot, Port
from tests.plan.benchmod import plan_bench


def _by_lookup(old_ports: tuple[Port, ...], new_ports: tuple[Port, ...]
               ) -> set[tuple[str, Port | None, Port | None]] | None:
    """What ``hosts_affected_by_change`` compared before this round: each port id of either side
    looked up in both (the last port of an id), None when the common ids are in another order."""
    old = {p.id: p for p in old_ports}
    new = {p.id: p for p in new_ports}
    if [i for i in old if i in new] != [i for i in new if i in old]:
        return None
    return {(i, old.get(i), new.get(i)) for i in old.keys() | new.keys() if old.get(i) != new.get(i)}


def _found(old_ports: tuple[Port, ...], new_ports: tuple[Port, ...]
           ) -> set[tuple[str, Port | None, Port | None]] | None:
    got = _changed_ports(old_ports, new_ports)
    if got is None:
        return None
    assert len(got) == len({i for i, _w, _n in got}), "a port reported twice"
    for i, was, now in got:  # the very ports of each side
        assert was is None or any(p is was for p in old_ports)
        assert now is None or any(p is now for p in new_ports)
        assert (was or now) is not None and (was or now).id == i  # type: ignore[union-attr]
    return set(got)


@pytest.fixture(scope="module")
def cloud() -> CloudSnapshot:
    built: CloudSnapshot = plan_bench().build(12, 60, 5)
    return built


def _altered(p: Port) -> Port:
    return dataclasses.replace(p, admin_state_up=not p.admin_state_up)


def _mutations(ports: list[Port], rng: random.Random) -> dict[str, list[Port]]:
    new = dataclasses.replace(ports[7], id="0000aaaa-0000-4000-8000-00000000beef", mac_address="fa:16:3e:7f:00:09")
    swapped = list(ports)
    swapped[3], swapped[9] = swapped[9], swapped[3]
    shuffled = list(ports)
    rng.shuffle(shuffled)
    return {
        "nothing": list(ports),
        "appended": [*ports, new],
        "inserted in the middle": [*ports[:20], new, *ports[20:]],
        "prepended": [new, *ports],
        "last removed": ports[:-1],
        "one removed in the middle": [p for k, p in enumerate(ports) if k != 11],
        "first removed": ports[1:],
        "several removed and one added": [*[p for k, p in enumerate(ports) if k % 9], new],
        "one altered": [_altered(p) if k == 5 else p for k, p in enumerate(ports)],
        "altered and appended": [*[_altered(p) if k in (0, 30) else p for k, p in enumerate(ports)], new],
        "altered, removed and inserted": [*[_altered(p) if k == 2 else p for k, p in enumerate(ports) if k != 4][:10],
                                          new, *[p for k, p in enumerate(ports) if k != 4][10:]],
        "two swapped": swapped,
        "shuffled": shuffled,
        "replaced by one of the same id": [dataclasses.replace(p, mac_address="fa:16:3e:7f:00:0a") if k == 8 else p
                                           for k, p in enumerate(ports)],
        "empty": [],
        "an id given twice": [*ports, dataclasses.replace(ports[2], name="twin")],
        "an id given twice, the same port": [*ports, ports[2]],
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_changed_ports_are_what_the_lookup_by_id_found(cloud: CloudSnapshot, seed: int) -> None:
    rng = random.Random(seed)
    ports = list(cloud.ports)
    cases = _mutations(ports, rng)
    for name, after in cases.items():
        fresh_after = tuple(copy.deepcopy(after))  # new objects: equal ports compare by value
        for old, new in ((tuple(ports), fresh_after), (fresh_after, tuple(ports))):
            assert _found(old, new) == _by_lookup(old, new), name
    # with an id given twice on the old side too (only the last of an id counts for the look-up)
    twice = (*ports, dataclasses.replace(ports[2], name="twin"))
    for name, after in cases.items():
        fresh_after = tuple(copy.deepcopy(after))
        assert _found(twice, fresh_after) == _by_lookup(twice, fresh_after), name
    # the kinds of change are seen as such
    assert _found(tuple(ports), tuple(copy.deepcopy(ports))) == set()
    assert _found(tuple(ports), tuple(cases["shuffled"])) is None
    assert _found(tuple(ports), tuple(cases["two swapped"])) is None
    (added,) = _found(tuple(ports), tuple(cases["appended"])) or set()
    assert added[1] is None and added[2] is cases["appended"][-1]
    (removed,) = _found(tuple(ports), tuple(cases["first removed"])) or set()
    assert removed[1] is ports[0] and removed[2] is None
    (altered,) = _found(tuple(ports), tuple(cases["one altered"])) or set()
    assert altered[1] is ports[5] and altered[2] is cases["one altered"][5]


def _reference_hosts(before: CloudSnapshot, after: CloudSnapshot) -> tuple[str, ...] | None:
    changed = _by_lookup(before.ports, after.ports)
    if changed is None:
        return None
    touched: set[str] = set()
    for pid, was, now in changed:
        if was is not None:
            touched.update(hosts_affected_by_port(before, pid))
        if now is not None:
            touched.update(hosts_affected_by_port(after, pid))
    return tuple(h.name for h in after.deployment.hosts if h.name in touched)


def test_hosts_affected_by_change_is_what_it_was(cloud: CloudSnapshot) -> None:
    """The whole function on snapshots of new objects, each kind of change: the same hosts, in
    deployment order, and None where the order of the ports changed."""
    rng = random.Random(7)
    seen = set()
    for name, after in _mutations(list(cloud.ports), rng).items():
        if name.startswith("an id given twice"):
            continue  # (the snapshot indexes ports by id: not a snapshot the server makes)
        changed = CloudSnapshot(**{**{f.name: copy.deepcopy(getattr(cloud, f.name))
                                      for f in dataclasses.fields(cloud) if f.name != "_index"},
                                   "ports": tuple(copy.deepcopy(after))})
        got = hosts_affected_by_change(cloud, changed)
        assert got == _reference_hosts(cloud, changed), name
        seen.add(None if got is None else len(got) > 0)
    assert seen == {None, True, False}  # some changes gave hosts, one none, reorders gave up


def test_the_bench_times_it_apart_and_finds_the_same_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    plan_bench().replan_one_port(8, 40, changes=2, unchanged_sample=3)
    out = capsys.readouterr().out
    assert out.count("hosts_affected_by_change (the agents' way)") == 2
    assert out.count("the same hosts") == 2 and "OTHER HOSTS" not in out
    assert "hosts_affected_by_change: median" in out
