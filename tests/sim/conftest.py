"""Fixtures the simulator's tests share."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.services.snapshot import CloudSnapshot

SEED000 = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed000.yaml"


def brought_up(path: pathlib.Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> CloudSnapshot:
    """The cloud of the scenario at ``path``, made through the API in a state folder of its own
    (``name``, not kept)."""
    from neutrino.deploy import bring_up

    state = tmp_path_factory.mktemp(name)
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    try:
        return bring_up(path, state=state, keep=False).cloud
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def seed0_cloud(tmp_path_factory: pytest.TempPathFactory) -> CloudSnapshot:
    """Seed 000's cloud, made through the API in a state folder of the module's own (not kept)."""
    return brought_up(SEED000, tmp_path_factory, "seed0")
