"""review21: the command line's word on a server whose build failed (``aff4870``) when another
server has the same name (Nova allows it; ``up`` lists both). ``failed_builds`` is keyed by name, and
``_unbuilt`` blames the first probe argument that names a failed server, whichever name the probe
refused: a typo in the destination is reported as the source being in ERROR, though the source that
was traced is the ACTIVE twin."""

from __future__ import annotations

import pathlib

import pytest

from tests.answers.conftest import Cli
from tests.answers.test_failed_build_cli import cli_up
from tests.scenarios.test_novafail_up import SCENARIO

TWIN = SCENARIO + "    - {name: vm-bad, networks: [private]}\n"  # an ACTIVE server named as the failed one


@pytest.fixture
def cli(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    run, out = cli_up(tmp_path, monkeypatch, capsys, TWIN)
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("vm-bad ")] == ["ERROR", "ACTIVE"]
    return run


def test_the_active_twin_is_traced(cli: Cli) -> None:
    """The guard: the name reaches the server that has a port."""
    rc, out, _ = cli("ping", "vm-bad", "vm-ok")
    assert rc == 0 and out.startswith("vm-bad -> vm-ok: reply")


def test_a_typo_in_the_destination_is_named(cli: Cli) -> None:
    rc, _, err = cli("ping", "vm-bad", "vm-typo")
    assert rc == 2 and err == "neutrino: 'vm-typo' is neither an instance nor an IP address\n"
