"""``neutrino diagnose`` for a provider network whose physical bridge holds no NIC on a host.

A flat or VLAN network's frames cross from host to host only through the physical NIC the operator
plugs into the bridge the physnet maps to (``ovs-vsctl add-port br-eth0 eth0``; neutrino's scenario
names it in the host's ``uplinks``). Without it ML2 still binds the ports (the mapping is there), so
the cloud looks healthy, but an instance's DISCOVER never reaches the network host's dnsmasq and the
instance has no address. Asked why it cannot reach another instance, ``diagnose`` says so: the
instance has no address, where its DISCOVER stopped, which host's bridge lacks the NIC, and the
command to plug one, checked on a copy of the cloud (the deployment's uplinks changed there). Done
for real (the scenario's uplinks, ``neutrino up`` again), the trace gets through. ``matrix`` lists
such instances too, with the reason their cells fail."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from neutrino.answers.diagnose import diagnose
from neutrino.cli import main
from tests.answers.conftest import ROOT, Cli


def seed002_variant(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, hosts: dict[str, dict[str, Any]],
             name: str = "state") -> tuple[pathlib.Path, pathlib.Path]:
    """Seed 002 with each named host's fields replaced by ``hosts[name]``, brought up: its state and
    scenario file."""
    doc = yaml.safe_load((ROOT / "examples" / "seed002.yaml").read_text())
    for host in doc["hosts"]:
        host.update(hosts.get(host["name"], {}))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    state = tmp_path / name
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(path)]) == 0
    return state, path


def _uplinks(**hosts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every host's uplinks: those given, none for the others."""
    return {h: {"uplinks": hosts.get(h, {})} for h in ("network", "compute")}


def _up_again(path: pathlib.Path, host: str, bridge: str, nic: str) -> None:
    """The fix done as a neutrino user does it: the host's uplink named in the scenario, the cloud
    made again (``up --replace``)."""
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    for h in doc["hosts"]:
        if h["name"] == host:
            h["uplinks"] = {**(h.get("uplinks") or {}), bridge: nic}
    path.write_text(yaml.safe_dump(doc))
    assert main(["up", "--replace", str(path)]) == 0


def test_the_instances_host_without_its_nic(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    state, path = seed002_variant(tmp_path, monkeypatch, _uplinks(network={"br-eth0": "eth0", "br-ex": "eth1"}))
    cli = Cli(capsys)
    rc, out, _ = cli("diagnose", "web", "app")
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == "web -> app (icmp): not reachable: web has no address (no DHCP answer)"
    assert lines[1] == "stops at: compute br-eth0"
    assert lines[2].startswith("why: web sends nothing to app: it got no address. network 'net1' is a vlan network "
                               "on physnet physnet1: ")
    assert "br-eth0 on compute has none" in lines[2]
    assert "the DHCP server on network never sees it" in lines[2]
    assert "fix 1: on compute: ovs-vsctl add-port br-eth0 eth0" in lines  # the NIC the network host has there
    assert "   checked on a copy of the cloud: works (dnsmasq answers the DISCOVER with an OFFER)" in lines
    # the same obstacle asked as DHCP
    d = diagnose(state, "web", "-", proto="dhcp")
    assert d.where == "compute br-eth0" and [f.command for f in d.fixes] == \
        ["on compute: ovs-vsctl add-port br-eth0 eth0"] and d.fixes[0].works is True
    rc, _, err = cli("trace", "web", "app")  # as it stands, nothing gets through
    assert rc == 2 and err == "neutrino: web has no address: its DHCP got no answer ('neutrino diagnose web - " \
        "--proto dhcp' says why)\n"
    _up_again(path, "compute", "br-eth0", "eth0")
    rc, out, _ = cli("trace", "web", "app")
    assert rc == 0, out
    rc, out, _ = cli("diagnose", "web", "app")
    assert rc == 0 and out.startswith("web -> app (icmp): reachable")


def test_the_network_host_without_its_nic(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The compute sends the DISCOVER out of eth0; the network host's br-eth0 has no NIC to take it in."""
    state, path = seed002_variant(tmp_path, monkeypatch, _uplinks(network={"br-ex": "eth1"}, compute={"br-eth0": "eth0"}))
    d = diagnose(state, "db", "web")
    assert d.verdict == "db has no address (no DHCP answer)".join(("not reachable: ", ""))
    assert d.where == "network br-eth0" and d.obj.startswith("host network: br-eth0 (physnet physnet1's bridge)")
    assert "the instance's DISCOVER leaves compute, but no NIC in br-eth0 on network takes it in" in d.why
    assert [f.command for f in d.fixes] == ["on network: ovs-vsctl add-port br-eth0 eth0"]
    assert d.fixes[0].works is True
    _up_again(path, "network", "br-eth0", "eth0")
    rc, out, _ = Cli(capsys)("trace", "db", "-", "--proto", "dhcp")
    assert rc == 0, out


def test_no_host_has_a_nic_there(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No host names a NIC for br-eth0: both lack it, and one NIC name neither host uses is offered
    for both (hosts are wired by NICs of one name), the pair checked together."""
    state, _ = seed002_variant(tmp_path, monkeypatch, _uplinks(network={"br-ex": "eth1"}))
    d = diagnose(state, "app", "web")
    assert d.where == "compute br-eth0"
    # eth1 is the network host's br-ex NIC: the first name neither host uses is eth2
    assert d.fixes[0].command == "on compute: ovs-vsctl add-port br-eth0 eth2; on network: ovs-vsctl add-port " \
        "br-eth0 eth2"
    assert d.obj == "host compute: br-eth0 (physnet physnet1's bridge) has no physical NIC; host network: br-eth0 " \
        "has none either"
    assert "br-eth0 on compute has none; br-eth0 on network has none" in d.why
    assert d.fixes[0].works is True


def test_the_matrix_lists_instances_without_an_address(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    seed002_variant(tmp_path, monkeypatch, _uplinks(network={"br-eth0": "eth0", "br-ex": "eth1"}))
    rc, out, _ = Cli(capsys)("matrix", "--proto", "icmp")
    assert rc == 0
    grid = out.split("\n  -- ")[0]
    for guest in ("web", "app", "app2", "db"):
        assert f"\n  {guest} " in grid  # a row for each, none of them reaching anything
    assert "web has no address" in out


def test_a_tunnelled_network_is_not_blamed_on_a_nic(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 000 (GRE): its instance has its address; a DHCP diagnosis there finds nothing to fix."""
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "s"))
    assert main(["up", str(ROOT / "examples" / "seed000.yaml")]) == 0
    d = diagnose(tmp_path / "s", "cirros", "-", proto="dhcp")
    assert d.reachable and d.fixes == ()


def test_the_dhcp_agents_host_without_the_mapping(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The network host (DHCP agent) maps no physnet1: ML2 fails its DHCP port's binding (a dead port),
    and the network host has no br-eth0 either. The fix there: the bridge, its NIC, the mapping, the
    agent restarted (ML2 binds the failed port again); done for real, DHCP works."""
    doc = yaml.safe_load((ROOT / "examples" / "seed002.yaml").read_text())
    for h in doc["hosts"]:
        if h["name"] == "network":
            h["bridge_mappings"], h["uplinks"] = {}, {"br-ex": "eth1"}
    path = tmp_path / "unmapped.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    assert main(["up", str(path)]) == 0
    d = diagnose(tmp_path / "state", "web", "app")
    assert d.verdict == "not reachable: web has no address (no DHCP answer)"
    assert d.obj == "host network: its OVS agent does not map physnet physnet1"
    assert "whose OVS agent does not map physnet1 (its bridge_mappings have no physnet1; compute maps it to " \
        "br-eth0). So ML2 failed the DHCP port's binding there" in d.why
    assert [f.command for f in d.fixes] == ["on network: ovs-vsctl add-br br-eth0; ovs-vsctl add-port br-eth0 eth0; "
                                            "set bridge_mappings = physnet1:br-eth0 in the OVS agent's [ovs] section "
                                            "and restart it"]
    assert d.fixes[0].works is True
    for h in doc["hosts"]:  # done as the fix says, in the scenario
        if h["name"] == "network":
            h["bridge_mappings"], h["uplinks"] = {"physnet1": "br-eth0"}, {"br-eth0": "eth0", "br-ex": "eth1"}
    path.write_text(yaml.safe_dump(doc))
    assert main(["up", "--replace", str(path)]) == 0
    rc, out, _ = Cli(capsys)("trace", "web", "app")
    assert rc == 0, out
