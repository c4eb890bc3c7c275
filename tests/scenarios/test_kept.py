"""Every seed scenario's planned hosts are kept by `neutrino up` and, read back, answer every
command exactly as the planned state does."""

from __future__ import annotations

import pathlib

import pytest

from neutrino import store
from neutrino.deploy import bring_up
from neutrino.views.export import commands_of
from tests.scenarios.common import ask

EXAMPLES = sorted((pathlib.Path(__file__).resolve().parents[2] / "examples").glob("seed00*.yaml"))


@pytest.mark.parametrize("scenario", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_planned_hosts_are_kept_and_answer_the_same(scenario, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    hosts = bring_up(scenario).hosts
    assert len(EXAMPLES) == 5 and hosts
    for host in hosts:
        loaded = store.load_host(host.name)
        for command in commands_of(host):
            assert ask(loaded, command) == ask(host, command), (host.name, command)
