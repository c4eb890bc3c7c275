"""What the re-plan tests of issue #17 share (replan12, the statuses' patch, review11): the bench
cloud, the state the planners keep between plans cleared around each test, the hosts a re-plan patched,
counted, and those found unaffected since an older plan (the chain), counted.

A fixture here bound to a name in a test module is that module's own (pytest finds fixtures by the
module's names): ``cloud = replan_kit.cloud`` (an assignment, not an import: the tests' arguments
of that name would be redefinitions of an unused import to the linter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import neutrino.plan as plan
from tests.plan.test_replan8_previous import cloud  # the bench cloud, ``plan_bench().build(12, 30, 8)``
from tests.plan.test_replan9_patch import patched  # the hosts planned by a patch, in order
from tests.plan.test_replan_kept import forget_everything

__all__ = ["_cleared", "chained", "cloud", "forget_all", "patched"]


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
