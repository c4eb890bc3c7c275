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


def prefix_of(state) -> str:
    from neutrino.linux import session

    return session.prefix_of(state)


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
        # refused (by the state folder's cloud, or the Linux backend's own check), and the cloud still up
        assert again.returncode == 2 and ("already up" in again.stderr or "holds a cloud already" in again.stderr)
        assert prefix_of(tmp_path) + "-compute" in subprocess.run(["ip", "netns"], capture_output=True, text=True,
                                                                  check=False).stdout
    finally:
        down = neutrino(tmp_path, "down")
    assert down.returncode == 0 and "removed" in down.stdout
    names = subprocess.run(["ip", "netns"], capture_output=True, text=True, check=False).stdout
    assert prefix_of(tmp_path) + "-" not in names
    assert root_view() == before


def test_api_changes_reach_the_kernel_with_sync(tmp_path):
    """Ports turn ACTIVE once wired; deleting the tcp/22 rule through the API and running `neutrino
    sync` removes it from the compute host's real iptables, and the outside can no longer connect."""
    from neutrino.deploy import open_cloud
    from neutrino.linux.records import guest_ns, wire_ns
    from neutrino.linux.runner import run, wait_for

    before = root_view()
    try:
        up = neutrino(tmp_path, "up", str(ROOT / "examples" / "seed000.yaml"), "--backend", "linux")
        assert up.returncode == 0, up.stderr
        os.environ["NEUTRINO_STATE"] = str(tmp_path)
        prefix = prefix_of(tmp_path)
        services = open_cloud(tmp_path)
        snap = services.snapshot()
        assert {p.status for p in snap.ports if p.binding_host} == {"ACTIVE"}

        def connects(port: int) -> bool:
            return run(["busybox", "nc", "-w", "1", "172.24.4.228", str(port)], netns=wire_ns(prefix, "ext"),
                       check=False, input="", timeout=10).returncode == 0

        # the first connection crosses paths nothing has used yet (ARP on both sides, the datapaths'
        # first upcalls): on a loaded machine its SYN-ACK can take longer than nc's 1 s, so wait for it
        wait_for(lambda: connects(22), timeout=20, what="the outside to reach the floating IP on tcp/22")
        rule = next(r for g in snap.security_groups for r in g.rules
                    if r.protocol == "tcp" and r.port_range_min == 22)
        with services.write(services.admin_context()) as tx:
            from neutrino.services import securitygroups

            securitygroups.delete_rule(tx, rule.id)
        synced = neutrino(tmp_path, "sync")
        assert synced.returncode == 0, synced.stderr
        compute = [ln for ln in synced.stdout.splitlines() if ln.startswith("compute: ")]
        assert any(ln.startswith("compute: iptables -D ") and "--dport 22 -j RETURN" in ln for ln in compute), \
            synced.stdout
        rules = neutrino(tmp_path, "exec", "--real", "compute", "--", "iptables", "-S").stdout
        assert "--dport 22 -j RETURN" not in rules and "--dport 80 -j RETURN" in rules
        assert not connects(22) and connects(80)
        again = neutrino(tmp_path, "sync")
        assert again.stdout == "no change\n", again.stdout
        # a server created through the API after bring-up: its namespace is made, wired, and it boots
        from neutrino.services import instances

        with services.write(services.admin_context()) as tx:
            instances.create_server(tx, {"server": {"name": "cirros2", "imageRef": instances.IMAGES[0].id, "flavorRef": "1",
                                                    "availability_zone": "nova:compute"}})
        added = neutrino(tmp_path, "sync")
        assert added.returncode == 0, added.stderr
        assert f"instance cirros2: ip netns add {guest_ns(prefix, 'cirros2')}" in added.stdout
        assert "instance cirros2: wired and booted by DHCP (lease 10.1.0." in added.stdout
        wait_for(lambda: "inet 10.1.0." in run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
                                               netns=guest_ns(prefix, "cirros2"), check=False).stdout,
                 timeout=20, what="cirros2's DHCP lease")
        assert run(["ping", "-c", "1", "-W", "2", "10.1.0.1"], netns=guest_ns(prefix, "cirros2"),
                   check=False).returncode == 0
    finally:
        os.environ.pop("NEUTRINO_STATE", None)
        neutrino(tmp_path, "down")
    assert root_view() == before
