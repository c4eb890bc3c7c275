"""``neutrino up`` on a scenario with a server no compute can bind (a VLAN network on a physical network
no host maps): the cloud comes up, the server is ERROR with Nova's fault in the database ``up`` keeps,
no host plugs a port for it, and the server that binds is planned as always."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from neutrino.db.session import Database
from neutrino.scenarios.model import load_scenario
from neutrino.services import instances
from neutrino.services.cloud import Cloud
from tests.api.api_helpers import TWO_COMPUTES

EXE = str(pathlib.Path(sys.executable).with_name("neutrino"))

SCENARIO = TWO_COMPUTES.replace("name: two-computes", "name: novafail-up", 1) + """\
resources:
  networks:
    - name: private
      subnets: [{name: private-subnet, cidr: 10.1.0.0/24}]
    - name: unmapped
      provider: {network_type: vlan, physical_network: physnet9, segmentation_id: 150}
      subnets: [{name: unmapped-subnet, cidr: 10.9.0.0/24}]
  servers:
    - {name: vm-ok, networks: [private]}
    - {name: vm-bad, networks: [unmapped]}
"""


def neutrino(tmp_path: pathlib.Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEUTRINO_STATE": str(tmp_path / "state")}
    return subprocess.run([EXE, *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
                          check=False)


def test_up_with_a_server_no_host_binds(tmp_path: pathlib.Path) -> None:
    (tmp_path / "nf.yaml").write_text(SCENARIO)
    up = neutrino(tmp_path, "up", "nf.yaml")
    assert up.returncode == 0, up.stderr
    rows = {line.split()[0]: line.split()[1:] for line in up.stdout.splitlines() if line.startswith("vm-")}
    assert rows["vm-ok"][0] == "compute1" and rows["vm-bad"] == ["-"] * 4 + ["server", "ERROR"]
    # vm-ok took compute1; vm-bad tried compute2 (fewest servers) then compute1, and ran out of hosts
    plugged = {h: neutrino(tmp_path, "exec", h, "--", "ovs-vsctl", "show").stdout.count("Port qvo")
               for h in ("compute1", "compute2")}
    assert plugged == {"compute1": 1, "compute2": 0}
    scenario = load_scenario(str(tmp_path / "nf.yaml"))
    db = Database(f"sqlite:///{tmp_path}/state/cloud.db")
    try:
        cloud = Cloud(db, scenario)
        with cloud.read(cloud.admin_context()) as tx:
            shown = {s["name"]: s for s in instances.list_servers(tx, {"all_tenants": True})}
    finally:
        db.dispose()
    bad = shown["vm-bad"]
    assert (bad["status"], bad["OS-EXT-SRV-ATTR:host"], bad["addresses"]) == ("ERROR", None, {})
    assert bad["fault"]["message"] == ("Exceeded maximum number of retries. Exhausted all hosts available for "
                                       f"retrying build failures for instance {bad['id']}.")
    assert shown["vm-ok"]["status"] == "ACTIVE" and "fault" not in shown["vm-ok"]
