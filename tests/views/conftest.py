"""The seeds' clouds brought up once per test module, kept in a state folder of their own, so the
views are asked through ``neutrino`` itself (kept hosts, re-read from their captures)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import pytest

from neutrino import store
from neutrino.cli import main
from neutrino.deploy import bring_up
from neutrino.host.state import HostState

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], pathlib.Path]]:
    """``seeds("seed002")``: the state folder where that seed's cloud is up (brought up on first use)."""
    made: dict[str, pathlib.Path] = {}
    mp = pytest.MonkeyPatch()

    def up(name: str) -> pathlib.Path:
        if name not in made:
            folder = tmp_path_factory.mktemp(name)
            mp.setenv("NEUTRINO_STATE", str(folder))
            bring_up(EXAMPLES / f"{name}.yaml")
            made[name] = folder
        mp.setenv("NEUTRINO_STATE", str(made[name]))
        return made[name]

    try:
        yield up
    finally:
        mp.undo()


@pytest.fixture
def neutrino(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``neutrino ARGS...``: (exit status, stdout, stderr)."""
    def run(*argv: str) -> tuple[int, str, str]:
        rc = main(list(argv))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def kept(name: str) -> HostState:
    return store.load_host(name)
