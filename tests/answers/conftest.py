"""seed 000 brought up once per module through ``neutrino up``, in a state folder of its own."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest

from neutrino.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Cli:
    """``neutrino ARGS`` in-process: exit status, stdout, stderr."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        rc = main(list(argv))
        out, err = self.capsys.readouterr()
        return rc, out, err

    def json(self, *argv: str) -> tuple[int, dict[str, object]]:
        rc, out, _ = self(*argv, "--json")
        return rc, json.loads(out)


def _up(tmp_path_factory: pytest.TempPathFactory, scenario: str) -> Iterator[pathlib.Path]:
    mp = pytest.MonkeyPatch()
    state = tmp_path_factory.mktemp(scenario) / "state"
    mp.setenv("NEUTRINO_STATE", str(state))
    try:
        assert main(["up", str(ROOT / "examples" / f"{scenario}.yaml")]) == 0
    finally:
        mp.undo()
    yield state


@pytest.fixture(scope="module")
def seed000(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    yield from _up(tmp_path_factory, "seed000")


@pytest.fixture(scope="module")
def seed001(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    yield from _up(tmp_path_factory, "seed001")


def _cli(state: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The command line on a state folder."""
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    return Cli(capsys)


@pytest.fixture(scope="module")
def seed002(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    yield from _up(tmp_path_factory, "seed002")


@pytest.fixture(scope="module")
def seed003(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    yield from _up(tmp_path_factory, "seed003")


@pytest.fixture(scope="module")
def seed004(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    yield from _up(tmp_path_factory, "seed004")


@pytest.fixture
def cli000(seed000: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The command line on seed 000's state folder (and so on for the others)."""
    return _cli(seed000, capsys, monkeypatch)


@pytest.fixture
def cli001(seed001: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return _cli(seed001, capsys, monkeypatch)


@pytest.fixture
def cli002(seed002: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return _cli(seed002, capsys, monkeypatch)


@pytest.fixture
def cli003(seed003: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return _cli(seed003, capsys, monkeypatch)


@pytest.fixture
def cli004(seed004: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return _cli(seed004, capsys, monkeypatch)
