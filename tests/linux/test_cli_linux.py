"""`neutrino up --backend linux`, `exec --real` and `down` from the command line, as root: the real
kernel and OVS answer, and nothing of neutrino's remains afterwards."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root
ROOT = pathlib.Path(__file__).resolve().parents[2]
EXE = str(pathlib.Path(sys.executable).with_name("neutrino"))


def neutrino(state, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEUTRINO_STATE": str(state)}
    return subprocess.run([EXE, *argv], capture_output=True, text=True, env=env, timeout=180, check=False)


def root_view() -> tuple[str, str, str]:
    def out(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    return out(["ip", "-o", "link"]), out(["ip", "route"]), out(["iptables-save"]).split("\n", 1)[-1]


def test_up_exec_real_down(tmp_path):
    before = root_view()
    try:
        up = neutrino(tmp_path, "up", str(ROOT / "examples" / "seed000.yaml"), "--backend", "linux")
        assert up.returncode == 0, up.stderr
        assert "cirros 10.1.0.2/24" in up.stdout
        flows = neutrino(tmp_path, "exec", "--real", "compute", "--", "ovs-ofctl", "dump-flows", "br-tun")
        assert "actions=set_tunnel:0x2,NORMAL" in flows.stdout
        assert "n_packets=0" not in flows.stdout.splitlines()[1]  # the DHCP exchange went through it
        again = neutrino(tmp_path, "up", str(ROOT / "examples" / "seed000.yaml"), "--backend", "linux")
        assert again.returncode == 2 and "already up" in again.stderr
    finally:
        down = neutrino(tmp_path, "down")
    assert down.returncode == 0 and "removed" in down.stdout
    names = subprocess.run(["ip", "netns"], capture_output=True, text=True, check=False).stdout
    assert "nt1-" not in names
    assert root_view() == before
