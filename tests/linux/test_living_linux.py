"""A living cloud on the Linux backend: ``neutrino up --backend linux``, ``neutrino server`` on the
same folder, and the real ``openstack`` CLI. With no ``sync`` typed, the server's agents carry each
change to the real hosts: a server created with the CLI gets its namespace, its plumbing and a
lease; a rule deleted with the CLI is gone from the kernel and the simulator at once."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from neutrino.linux.records import guest_ns, wire_ns
from neutrino.linux.runner import run, wait_for
from tests.api.api_helpers import OPENSTACK, free_port, stop_process

pytestmark = pytest.mark.root
ROOT = pathlib.Path(__file__).resolve().parents[2]
EXE = str(pathlib.Path(sys.executable).with_name("neutrino"))


def root_view() -> tuple[str, str, str]:
    def out(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    return out(["ip", "-o", "link"]), out(["ip", "route"]), out(["iptables-save"]).split("\n", 1)[-1]


def test_cli_changes_reach_the_real_hosts_without_sync(tmp_path):
    from neutrino.linux import session

    state = tmp_path / "state"
    clouds = tmp_path / "clouds.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(NEUTRINO_STATE=str(state), OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD="neutrino")

    def cli(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=180, check=False)
        assert not check or p.returncode == 0, f"{argv}: {p.stdout}\n{p.stderr}"
        return p

    before = root_view()
    proc = None
    try:
        cli(EXE, "up", str(ROOT / "examples" / "seed000.yaml"), "--backend", "linux")
        prefix = session.prefix_of(state)
        log = tmp_path / "server.log"
        proc = subprocess.Popen([EXE, "server", "--port", str(free_port()), "--clouds-yaml", str(clouds)], env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT)
        wait_for(lambda: clouds.exists() and cli(OPENSTACK, "network", "list", check=False).returncode == 0,
                 timeout=60, what="the server to answer")

        # a server created with the CLI: the agents wire it for real and it boots by DHCP
        cli(OPENSTACK, "server", "create", "--image", "cirros", "--flavor", "1", "--network", "private", "vm2")
        trace = cli(EXE, "trace", "vm2", "8.8.8.8", check=False)  # waits for the agents, then simulates
        assert trace.returncode == 0, trace.stdout + trace.stderr + log.read_text()[-3000:]
        vm2 = guest_ns(prefix, "vm2")
        wait_for(lambda: "inet 10.1.0." in run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], netns=vm2,
                                               check=False).stdout, timeout=30, what="vm2's real DHCP lease")
        assert run(["ping", "-c", "1", "-W", "2", "10.1.0.1"], netns=vm2, check=False).returncode == 0
        ports = json.loads(cli(OPENSTACK, "port", "list", "--server", "vm2", "-f", "json").stdout)
        assert [p["Status"] for p in ports] == ["ACTIVE"]

        # the tcp/22 rule deleted with the CLI: gone from the kernel and from the simulator's answer
        def connects(port: int) -> bool:
            return run(["busybox", "nc", "-w", "1", "172.24.4.228", str(port)], netns=wire_ns(prefix, "ext"),
                       check=False, input="", timeout=10).returncode == 0

        # the first connection crosses paths nothing has used yet (ARP on both sides, the datapaths'
        # first upcalls): on a loaded machine its SYN-ACK can take longer than nc's 1 s, so wait for it
        wait_for(lambda: connects(22), timeout=20, what="the outside to reach the floating IP on tcp/22")
        rules = json.loads(cli(OPENSTACK, "security", "group", "rule", "list", "default", "--protocol", "tcp",
                               "-f", "json").stdout)
        (ssh,) = [r["ID"] for r in rules if r["Port Range"] == "22:22"]
        cli(OPENSTACK, "security", "group", "rule", "delete", ssh)
        sim = cli(EXE, "trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22", "--level", "minimal",
                  check=False)
        assert sim.returncode == 1 and "dropped" in sim.stdout, sim.stdout
        real = cli(EXE, "exec", "--real", "compute", "--", "iptables", "-S").stdout
        assert "--dport 22 -j RETURN" not in real and "--dport 80 -j RETURN" in real
        assert not connects(22) and connects(80)
    finally:
        if proc is not None:
            stop_process(proc, timeout=20)
        cli(EXE, "down", check=False)
    assert root_view() == before
