"""A living cloud: one state folder holds one cloud that every command reads, and the agents carry
each API change to the hosts, as Neutron's do.

From the command line as a user types it: ``neutrino up``, then ``neutrino server`` on the same
folder, the real ``openstack`` CLI, then ``neutrino trace``/``ping``/``exec`` in new processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from neutrino.cli import main
from tests.api.api_helpers import OPENSTACK, free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
SEED000 = ROOT / "examples" / "seed000.yaml"
SEED001 = ROOT / "examples" / "seed001.yaml"
NEUTRINO = str(Path(sys.executable).parent / "neutrino")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(folder))
    return folder


def test_up_refuses_a_folder_that_holds_a_cloud_and_replace_tears_it_down(state: Path, capsys) -> None:
    from neutrino.deploy import open_cloud

    def contents() -> tuple[object, ...]:
        snap = open_cloud().snapshot()
        return snap.networks, snap.ports, snap.routers, snap.servers

    assert main(["up", str(SEED000)]) == 0
    record = (state / "cloud.json").read_text()
    before = contents()
    capsys.readouterr()
    assert main(["up", str(SEED001)]) == 2
    err = capsys.readouterr().err
    assert "holds a cloud already" in err and "--replace" in err and err.count("\n") == 1
    assert (state / "cloud.json").read_text() == record and contents() == before
    assert main(["up", "--replace", str(SEED001)]) == 0
    assert json.loads((state / "cloud.json").read_text())["scenario"] == str(SEED001)
    capsys.readouterr()
    assert main(["hosts"]) == 0
    hosts = capsys.readouterr().out.split()
    assert "controller" in hosts and "network" not in hosts  # seed 000's hosts went with its cloud


def test_a_failed_up_changes_nothing(state: Path, tmp_path: Path, capsys) -> None:
    main(["import", str(ROOT / "examples" / "captures" / "seed000-network"), "--host", "imported"])
    bad = tmp_path / "bad.yaml"
    text = SEED000.read_text()
    assert "networks: [private], host: compute" in text
    bad.write_text(text.replace("networks: [private], host: compute", "networks: [no-such-network], host: compute"))
    before = sorted(p.name for p in state.iterdir())
    assert main(["up", str(bad)]) != 0
    assert sorted(p.name for p in state.iterdir()) == before
    capsys.readouterr()
    main(["hosts"])
    assert capsys.readouterr().out.split() == ["imported"]


def test_up_reports_the_ports_it_wired(state: Path) -> None:
    from neutrino.deploy import open_cloud

    assert main(["up", str(SEED000)]) == 0
    ports = open_cloud().snapshot().ports
    bound = [p for p in ports if p.binding_host]
    assert bound and all(p.status == "ACTIVE" for p in bound), [(p.device_owner, p.status) for p in bound]


# -- the server on the folder, the openstack CLI, and commands in new processes --------------------

def run(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, f"{' '.join(args)}: {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture
def served(state: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """``neutrino up seed000`` then ``neutrino server`` on the same folder; the environment of a
    user whose openstack CLI points at it."""
    assert main(["up", str(SEED000)]) == 0
    clouds = tmp_path / "clouds.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(NEUTRINO_STATE=str(state), OS_CLIENT_CONFIG_FILE=str(clouds), OS_CLOUD="neutrino")
    port = free_port()
    log = tmp_path / "server.log"
    proc = subprocess.Popen([NEUTRINO, "server", "--port", str(port), "--clouds-yaml", str(clouds)],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            return clouds.exists() and run(OPENSTACK, "network", "list", "-f", "json", env=env,
                                           check=False).returncode == 0
        wait_until(ready, 60, "neutrino server to answer")
        yield env
    finally:
        stop_process(proc, timeout=15)


def test_the_server_serves_the_cloud_up_made(served: dict[str, str]) -> None:
    nets = json.loads(run(OPENSTACK, "network", "list", "-f", "json", env=served).stdout)
    assert sorted(n["Name"] for n in nets) == ["private", "public"]


def test_a_server_created_with_the_cli_is_traced_with_no_other_command(served: dict[str, str]) -> None:
    run(OPENSTACK, "server", "create", "--image", "cirros", "--flavor", "1", "--network", "private", "vm2",
        env=served)
    trace = run(NEUTRINO, "trace", "vm2", "8.8.8.8", env=served, check=False)
    assert trace.returncode == 0, trace.stdout + trace.stderr
    assert "delivered" in trace.stdout
    ports = json.loads(run(OPENSTACK, "port", "list", "--server", "vm2", "-f", "json", env=served).stdout)
    assert [p["Status"] for p in ports] == ["ACTIVE"]
    exec_ = run(NEUTRINO, "exec", "compute", "--", "ovs-vsctl", "show", env=served)
    assert f"qvo{ports[0]['ID'][:11]}" in exec_.stdout


def test_deleting_the_ssh_rule_with_the_cli_drops_ssh_at_once(served: dict[str, str]) -> None:
    probe = (NEUTRINO, "trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22", "--level", "minimal")
    assert run(*probe, env=served, check=False).returncode == 0
    rules = json.loads(run(OPENSTACK, "security", "group", "rule", "list", "default", "--protocol", "tcp",
                           "-f", "json", env=served).stdout)
    ssh = [r["ID"] for r in rules if r["Port Range"] == "22:22"]
    assert len(ssh) == 1
    run(OPENSTACK, "security", "group", "rule", "delete", ssh[0], env=served)
    after = run(*probe, env=served, check=False)
    assert after.returncode == 1, after.stdout
    assert "dropped" in after.stdout


def test_a_port_deleted_after_the_snapshot_is_left_alone_by_the_report() -> None:
    """The agents report statuses from the snapshot they planned; a port deleted meanwhile is skipped
    (ML2's update_port_status does the same), the others are still reported."""
    from neutrino.agent import report_ports
    from neutrino.db.session import Database
    from neutrino.plan import plan_cloud
    from neutrino.scenarios.model import default_scenario
    from neutrino.services import networks, ports
    from neutrino.services.cloud import Cloud, prepare

    scenario = default_scenario()
    host = scenario.deployment.hosts[-1].name
    cloud = Cloud(Database("sqlite://"), scenario)
    with cloud.write(cloud.admin_context()) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "n"}))
        networks.create_subnet(tx, prepare("subnet", {"network_id": net["id"], "cidr": "10.9.0.0/24",
                                                      "ip_version": 4}))
        gone, kept = (ports.create_port(tx, prepare("port", {"network_id": net["id"], "binding:host_id": host,
                                                             "device_owner": "compute:nova"}))
                      for _ in range(2))
    snap = cloud.snapshot()
    with cloud.write(cloud.admin_context()) as tx:
        ports.delete_port(tx, gone["id"])
    changed = report_ports(cloud, snap, plan_cloud(snap))
    after = {p.id: p.status for p in cloud.snapshot().ports}
    assert gone["id"] not in after and after[kept["id"]] == "ACTIVE"
    assert changed == sum(1 for p in snap.ports if p.binding_host and p.id != gone["id"] and p.status != "ACTIVE")
