"""`neutrino import` then `neutrino exec`: seed 000's captures answered back exactly as captured.

The captures in examples/captures/ are cut straight from seed 000 (000_8d4cb9bc99c28ac6.txt);
each test names the excerpt it checks.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from neutrino import store
from neutrino.cli import main
from neutrino.errors import ParseError
from neutrino.ingest.captures import read_capture_dir
from seeds import excerpt, squash

ROOT = pathlib.Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "examples" / "captures"
ROUTER = "qrouter-2d214fde-293c-4d64-8062-797f80ae2d8f"
DHCP = "qdhcp-88b1609c-68e0-49ca-a658-f1edff54a264"


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    return tmp_path / "state"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def network(capsys):
    rc, out, _ = run(capsys, "import", str(CAPTURES / "seed000-network"), "--host", "network")
    assert rc == 0 and "imported host network" in out
    return "network"


@pytest.fixture
def compute(capsys):
    rc, _, _ = run(capsys, "import", str(CAPTURES / "seed000-compute"), "--host", "compute")
    assert rc == 0
    return "compute"


SEED_ANSWERS = [
    # (host, command, seed excerpt first line, last line, search from)
    ("network", "ovs-ofctl dump-flows br-tun", "NXST_FLOW reply", "priority=1 actions=drop",
     "Traffic arrives on the network host via the GRE tunnel"),
    ("network", f"ip netns exec {ROUTER} iptables -t nat -S", "-P PREROUTING ACCEPT",
     "-A quantum-postrouting-bottom -j quantum-l3-agent-snat", None),
    ("network", f"ip netns exec {ROUTER} ip route", "172.24.4.224/28 dev qg-d48b49e0-aa",
     "default via 172.24.4.225", None),
    ("network", f"ip netns exec {ROUTER} ip addr", "66: qg-d48b49e0-aa", "feea:646e/64 scope link \n       valid_lft",
     "Network host: Router (M,N)\n\nA Neutron router"),
    ("network", f"ip netns exec {DHCP} ip addr", "71: ns-f14c598d-98", "valid_lft forever", None),
    ("network", "ip netns", f"{DHCP}\n", f"{ROUTER}\n", None),
    ("compute", "ovs-ofctl dump-flows br-tun", "NXST_FLOW reply", "priority=1 actions=drop",
     "Afrer you boot an instance on this compute node"),
    ("compute", "ovs-ofctl show br-tun", "OFPT_FEATURES_REPLY", "OFPT_GET_CONFIG_REPLY", None),
    ("compute", "ovs-vsctl show", "Bridge br-int", "type: internal", "At this moment, br-int looks"),
]


@pytest.mark.parametrize("host,command,first,last,start", SEED_ANSWERS, ids=[f"{a[0]}: {a[1]}" for a in SEED_ANSWERS])
def test_exec_answers_what_the_seed_shows(capsys, network, compute, host, command, first, last, start):
    from seeds import seed_text

    begin = seed_text(0).index(start) if start else 0
    want = excerpt(0, first, last, start=begin)
    rc, out, err = run(capsys, "exec", host, "--", *command.split())
    assert rc == 0, err
    assert squash(out) == squash(want)


def test_exec_greps_like_the_seed(capsys, compute):
    # seed 000: "# iptables -S | grep tap7c7ae61e-05" shows these five rules
    want = excerpt(0, "-A quantum-openvswi-FORWARD -m physdev --physdev-out tap7c7ae61e-05",
                   "-A quantum-openvswi-sg-chain -m physdev --physdev-in tap7c7ae61e-05")
    rc, out, _ = run(capsys, "exec", "compute", "--", "iptables -S | grep tap7c7ae61e-05")
    assert rc == 0
    assert squash(out) == squash(want)


def test_exec_derives_route_n_and_ifconfig_from_ip(capsys, network):
    rc, out, _ = run(capsys, "exec", "network", "--", "ip", "netns", "exec", ROUTER, "route", "-n")
    assert rc == 0
    assert "0.0.0.0         172.24.4.225    0.0.0.0         UG    0      0        0 qg-d48b49e0-aa" in out
    rc, out, _ = run(capsys, "exec", "network", "--", "ip", "netns", "exec", ROUTER, "ifconfig")
    assert "inet 172.24.4.227  netmask 255.255.255.240  broadcast 172.24.4.239" in out
    assert "ether fa:16:3e:5c:a2:ac  txqueuelen 1000  (Ethernet)" in out


def test_explain_names_ports_from_ovs_ofctl_show(capsys, compute):
    rc, out, _ = run(capsys, "explain", "compute", "br-tun")
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 8  # four flows, each with its explanation
    assert "tag with local VLAN 1, then send to port 1 (patch-int)" in lines[1]
    assert "set the tunnel key to 0x2" in lines[5]
    assert lines[7].endswith("every packet: drop them.")


def test_hosts_lists_imports(capsys, network, compute):
    rc, out, _ = run(capsys, "hosts")
    assert out.split() == ["compute", "network"]


ERRORS = [
    ("exec", "nosuch", "--", "ip", "netns"),
    ("exec", "network", "--", "ip", "netns", "exec", "qrouter-nope", "ip", "route"),
    ("exec", "network", "--", "ovs-ofctl", "dump-flows", "br-int"),
    ("exec", "network", "--", "iptables", "-S"),
    ("exec", "network", "--", "rm", "-rf", "/"),
    ("explain", "network", "br-nope"),
    ("import", "/nonexistent/dir"),
]


@pytest.mark.parametrize("argv", ERRORS, ids=[" ".join(a) for a in ERRORS])
def test_errors_are_one_line(capsys, network, argv):
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert out == ""
    assert err.startswith("neutrino: ") and err.count("\n") == 1


def test_malformed_capture_names_file_and_line_and_keeps_nothing(capsys, tmp_path, network):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ip_route.txt").write_text("10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1\n")
    (bad / "ovs-ofctl_dump-flows_br-tun.txt").write_text(
        "$ ovs-ofctl dump-flows br-tun\n"
        " cookie=0x0, duration=1.0s, table=0, n_packets=0, n_bytes=0, priority=1 actions=drop\n"
        " cookie=0x0, duration=1.0s, table=0, n_packets=0, n_bytes=0, priority=1,bogus_field=7 actions=drop\n")
    rc, out, err = run(capsys, "import", str(bad), "--host", "network")
    assert rc == 2
    assert err.startswith(f"neutrino: {bad}/ovs-ofctl_dump-flows_br-tun.txt:3: expected")
    assert err.count("\n") == 1
    # the earlier host of that name is untouched, and no half-imported host appeared
    assert store.list_hosts() == ["network"]
    rc, out, _ = run(capsys, "exec", "network", "--", "ovs-ofctl", "dump-flows", "br-tun")
    assert "fa:16:3e:83:69:cc" in out


def test_parse_error_location_counts_the_command_line(tmp_path):
    d = tmp_path / "cap"
    d.mkdir()
    (d / "x.txt").write_text("$ ip netns exec qr-1 iptables -t nat -S\n-P PREROUTING ACCEPT\n-A NOPE -j\n")
    with pytest.raises(ParseError) as info:
        read_capture_dir(d, "h")
    assert str(info.value).startswith(f"{d}/x.txt:3:")


def test_console_script_runs_without_traceback(tmp_path):
    env = {**os.environ, "NEUTRINO_STATE": str(tmp_path / "s")}
    exe = pathlib.Path(sys.executable).with_name("neutrino")
    proc = subprocess.run([str(exe), "exec", "ghost", "--", "ip", "netns"], capture_output=True, text=True,
                          env=env, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("neutrino: no host 'ghost'")


def test_saved_host_answers_like_the_original(network):
    """export then import: every command answers the same (the way planned hosts are kept)."""
    from dataclasses import replace as dc_replace

    from neutrino.host.state import Origin
    from neutrino.ingest.commands import parse_command
    from neutrino.views.answer import answer
    from neutrino.views.export import commands_of

    original = store.load_host("network")
    copy = dc_replace(original, name="copy", origins=(Origin("flow", "priority=1 actions=drop", "net x", "t"),))
    store.save_host(copy)
    loaded = store.load_host("copy")
    assert loaded.origins == copy.origins
    commands = commands_of(original)
    # the router's nat table was captured with -S (no counters): it is kept in that form
    assert "ovs-ofctl dump-flows br-tun" in commands
    assert f"ip netns exec {ROUTER} iptables -t nat -S" in commands
    assert loaded == copy
    for command in commands:
        assert answer(loaded, parse_command(command)) == answer(original, parse_command(command)), command
