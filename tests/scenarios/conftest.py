"""Each scenario test module names its ``SCENARIO``; ``cloud`` brings it up once per module in a
state directory of its own and hands the planned hosts by name."""

from __future__ import annotations

import pytest

from neutrino.deploy import bring_up


@pytest.fixture(scope="module")
def cloud(request, tmp_path_factory):
    scenario = request.module.SCENARIO
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(tmp_path_factory.mktemp(scenario.stem)))
    try:
        yield {h.name: h for h in bring_up(scenario).hosts}
    finally:
        mp.undo()
