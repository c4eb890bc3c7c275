"""tools/neutrino-collect run for real (as root) in a throwaway network namespace holding a veth
pair, a routing rule, a second table, an iptables rule and a dnsmasq; `neutrino import` reads the
HOST.tar.gz it packs, and `neutrino exec` answers from it what the kernel holds."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

from neutrino import store
from neutrino.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "neutrino-collect"

pytestmark = pytest.mark.root


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture
def netns(tmp_path):
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("dnsmasq"):
        pytest.skip("needs root, ip and dnsmasq")
    name = f"ncollect{os.getpid()}"
    pidfile = tmp_path / "dhcp" / "pid"
    pidfile.parent.mkdir()
    sh("ip", "netns", "add", name)
    try:
        def ns(*argv: str) -> str:
            return sh("ip", "netns", "exec", name, *argv)

        ns("ip", "link", "set", "lo", "up")
        ns("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        ns("ip", "link", "set", "v0", "up")
        ns("ip", "link", "set", "v1", "up")
        ns("ip", "addr", "add", "10.0.0.5/24", "dev", "v0")
        ns("ip", "route", "add", "default", "via", "10.0.0.1", "table", "100")
        ns("ip", "rule", "add", "from", "10.0.0.0/24", "lookup", "100", "pref", "100")
        ns("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
        (pidfile.parent / "host").write_text("fa:16:3e:2c:e8:ec,host-10-0-0-9.openstacklocal,10.0.0.9\n")
        ns("dnsmasq", "--no-hosts", "--no-resolv", "--strict-order", "--except-interface=lo",
           f"--pid-file={pidfile}", f"--dhcp-hostsfile={pidfile.parent / 'host'}", "--leasefile-ro",
           "--bind-interfaces", "--interface=v0", "--dhcp-range=set:tag0,10.0.0.0,static,86400s", "--port=0")
        wait_for(lambda: pidfile.is_file() and pidfile.read_text().strip().isdigit())
        yield name, int(pidfile.read_text()), pidfile.parent
    finally:
        if pidfile.is_file() and pidfile.read_text().strip().isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def test_collect_in_a_namespace_then_import(netns, tmp_path, monkeypatch, capsys):
    name, pid, dhcp = netns
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    out = tmp_path / "out"
    env = dict(os.environ, NEUTRINO_COLLECT_NAMESPACES=name, NEUTRINO_COLLECT_PIDS=str(pid))
    done = subprocess.run(["ip", "netns", "exec", name, "sh", str(SCRIPT), "node1", str(out)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    archive = out / "node1.tar.gz"
    assert done.stdout.strip() == str(archive)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "node1/.collect.log" in names and len([n for n in names if n.endswith(".txt")]) >= 10

    assert main(["import", str(archive)]) == 0
    assert "imported host node1" in capsys.readouterr().out
    assert store.host_kind("node1") == "imported"

    def answer(*argv: str) -> str:
        assert main(["exec", "node1", "--", *argv]) == 0
        return capsys.readouterr().out

    real_addr = sh("ip", "netns", "exec", name, "ip", "addr")
    assert answer("ip", "netns", "exec", name, "ip", "addr") == real_addr
    assert answer("ip", "addr") == real_addr  # the script's own namespace was its root
    assert "default via 10.0.0.1 dev v0" in answer("ip", "netns", "exec", name, "ip", "route", "show", "table", "100")
    assert "from 10.0.0.0/24 lookup 100" in answer("ip", "netns", "exec", name, "ip", "rule")
    assert "--dport 22 -j ACCEPT" in answer("ip", "netns", "exec", name, "iptables-save")
    ps = answer("ps", "-fe")
    assert f" {pid} " in ps and "--interface=v0" in ps
    assert answer("cat", str(dhcp / "host")) == (dhcp / "host").read_text()


def test_collect_refuses_a_bad_host_name(tmp_path):
    done = subprocess.run(["sh", str(SCRIPT), "../x", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "bad host name" in done.stderr
    assert list(tmp_path.iterdir()) == []


def sos_name(command: str) -> str:
    """The file name sos gives a command's output (sos's Plugin._mangle_command: every run of
    characters other than word characters, '-', '.' and '/' made '_', '/' made '.')."""
    import re

    return re.sub(r"[^\w\-./]+", "_", command).replace("/", ".").strip(" ._-")


def test_a_sosreport_made_of_the_real_tools_output(netns, tmp_path, monkeypatch, capsys):
    """The commands sos's networking plugin runs (sos/report/plugins/networking.py: `ip -o addr`,
    `ip -d address`, `ip route show table all`, `ip -4 rule list`, `ip -6 rule list`,
    `ip -s -d link`, `ip neigh show nud noarp`, and per namespace under namespaces/NS/
    `ip netns exec NS ip -d address show`, `... ip route show table all`, `... sysctl -a`,
    `... iptables-save`), run for real and filed as sos files them; the import answers each as
    the kernel printed it, and says how many files it did not read."""
    name, _, _ = netns
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    sos = tmp_path / "sosreport-node9-2026-12-06-abcdef"
    net = sos / "sos_commands" / "networking"
    (net / "namespaces" / name).mkdir(parents=True)
    (sos / "hostname").write_text("node9.example.org\n")
    real: dict[str, str] = {}
    for cmd in ("ip -o addr", "ip -d address", "ip route show table all", "ip -6 route show table all",
                "ip -4 rule list", "ip -6 rule list", "ip -s -d link", "ip neigh show nud noarp"):
        real[cmd] = sh("ip", "netns", "exec", name, *cmd.split())  # the namespace stands for the host
        (net / sos_name(cmd)).write_text(real[cmd])
    for cmd in ("ip -d address show", "ip route show table all", "ip -4 rule list", "sysctl -a", "iptables-save"):
        full = f"ip netns exec {name} {cmd}"
        real[full] = sh(*full.split())
        (net / "namespaces" / name / sos_name(full)).write_text(real[full])
    (net / "ip_netns").write_text(f"{name}\n")
    assert main(["import", str(sos)]) == 0
    out = capsys.readouterr().out
    assert "imported host node9" in out and "sosreport: 12 command outputs read, 2 others not read" in out

    def answer(*argv: str) -> str:
        assert main(["exec", "node9", "--", *argv]) == 0
        return capsys.readouterr().out

    assert answer("ip", "netns", "exec", name, "ip", "-d", "addr") == real[f"ip netns exec {name} ip -d address show"]
    assert answer("ip", "netns", "exec", name, "ip", "route", "show", "table", "all") == \
        real[f"ip netns exec {name} ip route show table all"]
    assert answer("ip", "netns", "exec", name, "iptables-save") == real[f"ip netns exec {name} iptables-save"]
    assert answer("ip", "route", "show", "table", "100") == "default via 10.0.0.1 dev v0 \n"
