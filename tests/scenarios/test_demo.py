"""The main job (`make demo` = `neutrino demo`) runs, and runs again in the same state folder."""

from __future__ import annotations

import pytest

from neutrino.cli import main


def test_demo_runs_twice_in_one_folder(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    for _ in range(2):
        assert main(["demo"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "set_tunnel:0x2" in out and "172.24.4.228" in out
