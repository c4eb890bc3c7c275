"""What the re-plan tests of issue #17 share (replan12, the statuses' patch, review11): the bench
cloud, the state the planners keep between plans cleared around each test, the hosts a re-plan patched,
counted, and those found unaffected since an older plan (the chain), counted.

A fixture here bound to a name in a test module is that module's own (pytest finds fixtures by the
module's names): ``cloud = replan_kit.cloud`` (an assignment, not an import: the tests' arguments
of that name would be redefinitions of an unused import to the linter)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

import neutrino.plan as plan
from neutrino.agent import with_statuses
from neutrino.services.snapshot import CloudSnapshot
from tests.plan.test_replan8_previous import (
    _cold,
    _differing,
    cloud,  # the bench cloud, ``plan_bench().build(12, 30, 8)``
)
from tests.plan.test_replan9_patch import patched  # the hosts planned by a patch, in order
from tests.plan.test_replan_kept import forget_everything

__all__ = ["_cleared", "chained", "cloud", "cold_differences", "forget_all", "patched", "statuses_reported"]


def forget_all() -> None:
    """Every kept piece of the planners (``forget_everything``), each host's last plan
    (``plan._LAST``) and the recorded answers of ``hosts_affected_by_change`` (``plan._AFFECTED``)
    dropped."""
    forget_everything()
    plan._LAST.clear()  # (``forget_everything`` clears it too: said here, as the patches read it)
    plan._AFFECTED.clear()


@pytest.fixture(autouse=True)
def _cleared() -> Iterator[None]:
    forget_all()
    yield
    forget_all()


@pytest.fixture
def chained(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts found unaffected since an older plan (``_unaffected_since`` said yes)."""
    out: list[str] = []
    real = plan._unaffected_since

    def counting(name: str, serial: int, now: int) -> bool:
        yes = real(name, serial, now)
        if yes:
            out.append(name)
        return yes

    monkeypatch.setattr(plan, "_unaffected_since", counting)
    return out


def statuses_reported(rng: random.Random, snap: CloudSnapshot) -> CloudSnapshot | None:
    """What a pass over ``snap`` reports, as the living agents do: 1-3 of its ports given a status
    (``with_statuses``), or None when it has no port."""
    if not snap.ports:
        return None
    victims = rng.sample(list(snap.ports), min(len(snap.ports), rng.randint(1, 3)))
    return with_statuses(snap, {p.id: rng.choice(["ACTIVE", "DOWN", "BUILD"]) for p in victims})


def cold_differences(done: list[tuple[str, CloudSnapshot, Any]]) -> list[str]:
    """For each (description, cloud, hosts' plans) the hosts whose plan differs from a cold plan of
    that cloud; the first three."""
    out = []
    for desc, c, planned in done:
        differ = _differing(planned, _cold(c))
        if differ:
            out.append(f"{desc}: {differ}")
    return out[:3]
