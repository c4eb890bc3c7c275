"""`neutrino demo`, `neutrino up` and `neutrino plan` from the command line, bad input included."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXE = str(pathlib.Path(sys.executable).with_name("neutrino"))


def neutrino(tmp_path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEUTRINO_STATE": str(tmp_path / "state")}
    return subprocess.run([EXE, *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
                          check=False)


def test_demo_brings_seed000_up_and_shows_it(tmp_path):
    proc = neutrino(tmp_path, "demo")
    assert proc.returncode == 0, proc.stderr
    assert "-A quantum-l3-agent-float-snat -s 10.1.0.2/32 -j SNAT --to-source 172.24.4.228" in proc.stdout
    assert "set the tunnel key to 0x2" in proc.stdout
    assert neutrino(tmp_path, "hosts").stdout.split() == ["compute", "network", "seed000-network"]


def test_plan_prints_every_host(tmp_path):
    proc = neutrino(tmp_path, "plan", str(ROOT / "examples" / "seed000.yaml"), "--host", "compute")
    assert proc.returncode == 0, proc.stderr
    assert "==================== host compute" in proc.stdout
    assert "# ovs-ofctl dump-flows --no-stats br-tun" in proc.stdout and "# brctl show" in proc.stdout
    assert "host network" not in proc.stdout
    assert not (tmp_path / "state" / "hosts").exists()  # plan keeps nothing


def test_up_with_a_bad_scenario_is_one_line_and_keeps_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("deployment: {mechanism: ml2_ovs, tenant_network_types: [gre], generation: folsom}\n")
    proc = neutrino(tmp_path, "up", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"neutrino: {bad}: generation must be grizzly, havana or modern")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "state" / "hosts").exists()
    missing = neutrino(tmp_path, "up", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_trace_and_ping_from_the_command_line(tmp_path):
    assert neutrino(tmp_path, "up", str(ROOT / "examples" / "seed000.yaml")).returncode == 0
    ping = neutrino(tmp_path, "ping", "cirros", "8.8.8.8")
    assert ping.returncode == 0 and ping.stdout.startswith("cirros -> 8.8.8.8: reply")
    blocked = neutrino(tmp_path, "trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "23",
                       "--level", "minimal", "--pcap", str(tmp_path / "t.pcap"))
    assert blocked.returncode == 1
    lines = blocked.stdout.splitlines()
    assert lines[-1].startswith("=> dropped: security group at compute qbr")
    assert (tmp_path / "t.pcap").read_bytes()[:4] == bytes.fromhex("d4c3b2a1")
    js = neutrino(tmp_path, "trace", "cirros", "10.1.0.1", "--json")
    import json

    doc = json.loads(js.stdout)
    assert doc["verdict"]["kind"] == "delivered" and doc["reply"]["verdict"]["kind"] == "delivered"
    assert [h["letter"] for h in doc["hops"]][:3] == ["A", "D", "F"]
    bad = neutrino(tmp_path, "trace", "cirros", "not-an-address")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
