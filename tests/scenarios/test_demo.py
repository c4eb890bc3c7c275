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
        # issue 13: the story told with the answers: the way out with its letters, diagnose of
        # tcp/23 to the floating IP with its checked fix, and the matrix
        way_out = out.split("$ neutrino trace cirros 8.8.8.8 --level minimal\n", 1)[1].split("\n\n", 1)[0]
        letters = [ln.rsplit("(", 1)[1].rstrip(")") for ln in way_out.splitlines() if ln.rstrip().endswith(")")]
        assert letters == list("ADFHJNLKMIGEC"), way_out
        assert way_out.rstrip().endswith("=> the exchange succeeded: the answer came back")
        diag = out.split("$ neutrino diagnose outside 172.24.4.228 --proto tcp --dport 23\n", 1)[1]
        assert diag.startswith("outside -> 172.24.4.228 (tcp/23): not reachable: security group\n")
        assert "fix 1: openstack security group rule create --ingress --ethertype IPv4 --protocol tcp " \
               "--dst-port 23 --remote-ip 0.0.0.0/0 " in diag
        assert "checked on a copy of the cloud: works" in diag
        grid = out.split("$ neutrino matrix", 1)[1]
        assert "icmp:" in grid and "tcp/22:" in grid and "tcp/80:" in grid
        row = next(ln.split() for ln in grid.splitlines() if ln.strip().startswith("outside "))
        assert row[:3] == ["outside", "ok", "."]  # the outside reaches cirros (by its floating IP)
