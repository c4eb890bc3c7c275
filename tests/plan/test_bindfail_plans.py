"""ML2/OVS binds a port only to a segment the host's OVS agent reaches (a flat or VLAN segment's physical
network in its bridge mappings): otherwise ``binding_failed``, and the plans follow. An agent's device
(DHCP) whose binding failed is the OVS agent's ``port_dead`` (tag 4095 and a drop flow); an instance
port whose binding failed (bound through Neutron's API: Nova gives a failed server's port back
unbound, see tests/api/test_novafail_server.py) is not plugged at all; seed002's gateway port, on br-ex in
external_network_bridge mode, fails to bind (no host maps physnet ``external``) and plans as before.

End to end: the scenarios are brought up through the API (``neutrino up``) and the state kept is read back.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from neutrino.deploy import bring_up, load_cloud
from neutrino.host.state import HostState
from neutrino.plan import naming, plan_cloud
from neutrino.services.snapshot import CloudSnapshot, Port
from tests.plan.test_ovs import flows, ofport, port_row

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCENARIO = """\
name: bindfail
seed: 18
deployment:
  mechanism: ml2_ovs
  tenant_network_types: [vlan]
  network_vlan_ranges: ["physnet1:100:199", "physnet2:200:299"]
  firewall_driver: iptables_hybrid
  l2population: false
  external_network_bridge: br-ex
  generation: modern
hosts:
  - {name: network, roles: [controller, network], management_ip: 10.0.1.10, bridge_mappings: {physnet1: br-eth1}}
  - {name: compute, roles: [compute], management_ip: 10.0.1.11, bridge_mappings: {physnet1: br-eth1}}
identity:
  region: RegionOne
  projects: [admin]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
resources:
  networks:
    - name: mapped
      provider: {network_type: vlan, physical_network: physnet1, segmentation_id: 101}
      subnets: [{name: mapped-subnet, cidr: 10.1.0.0/24}]
    - name: unmapped
      provider: {network_type: vlan, physical_network: physnet2, segmentation_id: 201}
      subnets: [{name: unmapped-subnet, cidr: 10.2.0.0/24}]
  ports:
    - {name: vm-mapped, network: mapped}
    # bound to compute through Neutron's API alone: Nova would give a server's failed port back unbound
    - {name: vm-unmapped, network: unmapped, device_owner: "compute:nova", host: compute,
       device_id: 5e8c0b6a-3f4d-4c1e-9b2a-7d6e5f4a3b2c}
  servers:
    - {name: a, networks: [{port: vm-mapped}], host: compute}
"""


@dataclasses.dataclass(frozen=True)
class Up:
    snap: CloudSnapshot
    hosts: dict[str, HostState]
    loaded: tuple[CloudSnapshot, tuple[HostState, ...]]


def _up(tmp: pathlib.Path, scenario: pathlib.Path) -> Up:
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(tmp / "state"))
    try:
        result = bring_up(scenario)
        return Up(result.cloud, {h.name: h for h in result.hosts}, load_cloud())
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("bindfail")
    path = tmp / "bindfail.yaml"
    path.write_text(SCENARIO)
    yield _up(tmp, path)


@pytest.fixture(scope="module")
def seed002(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    yield _up(tmp_path_factory.mktemp("bindfail-seed002"), ROOT / "examples" / "seed002.yaml")


def _port(snap: CloudSnapshot, *, name: str = "", network: str = "", owner: str = "") -> Port:
    net_id = next(n.id for n in snap.networks if n.name == network) if network else ""
    return next(p for p in snap.ports if (not name or p.name == name) and (not net_id or p.network_id == net_id)
                and (not owner or p.device_owner == owner))


def _bound_like(snap: CloudSnapshot, likes: dict[str, Port]) -> CloudSnapshot:
    """``snap`` with each port of ``likes`` (by id) bound as the port it maps to is (what the plans would
    be had ML2 bound them)."""
    return dataclasses.replace(snap, ports=tuple(
        dataclasses.replace(p, vif_type=likes[p.id].vif_type, vif_details=likes[p.id].vif_details)
        if p.id in likes else p for p in snap.ports))


def _tag(state: HostState, name: str) -> Any:
    row = port_row(state, naming.BR_INT, name)
    assert row is not None, name
    return row.tag  # type: ignore[attr-defined]


def test_binding_follows_the_agents_bridge_mappings(up: Up) -> None:
    snap = up.snap
    assert _port(snap, name="vm-mapped").vif_type == "ovs"
    failed = _port(snap, name="vm-unmapped")
    assert (failed.binding_host, failed.vif_type, failed.vif_details) == ("compute", "binding_failed", ())
    assert _port(snap, network="mapped", owner="network:dhcp").vif_type == "ovs"
    assert _port(snap, network="unmapped", owner="network:dhcp").vif_type == "binding_failed"


def test_dhcp_port_on_an_unmapped_physnet_is_the_agents_dead_port(up: Up) -> None:
    net = up.hosts["network"]
    dead = naming.dhcp_device(_port(up.snap, network="unmapped", owner="network:dhcp").id)
    live = naming.dhcp_device(_port(up.snap, network="mapped", owner="network:dhcp").id)
    assert _tag(net, dead) == naming.DEAD_VLAN_TAG
    assert _tag(net, live) == 1
    assert f"priority=2,in_port={ofport(net, naming.BR_INT, dead)} actions=drop" in flows(net, naming.BR_INT)
    assert f"priority=2,in_port={ofport(net, naming.BR_INT, live)} actions=drop" not in flows(net, naming.BR_INT)


def test_instance_port_whose_binding_failed_is_not_plugged(up: Up) -> None:
    compute = up.hosts["compute"]
    failed, bound = _port(up.snap, name="vm-unmapped").id, _port(up.snap, name="vm-mapped").id
    assert port_row(compute, naming.BR_INT, naming.qvo_device(bound)) is not None
    assert port_row(compute, naming.BR_INT, naming.qvo_device(failed)) is None
    assert port_row(compute, naming.BR_INT, naming.tap_device(failed)) is None


def test_plans_depend_on_the_failed_bindings(up: Up) -> None:
    """Had ML2 bound the two ports, the DHCP port would be live and the instance plugged: the plans
    above come from the binding, nothing else."""
    failed = (_port(up.snap, name="vm-unmapped"), _port(up.snap, network="unmapped", owner="network:dhcp"))
    hosts = {h.name: h for h in plan_cloud(_bound_like(up.snap, {
        failed[0].id: _port(up.snap, name="vm-mapped"),
        failed[1].id: _port(up.snap, network="mapped", owner="network:dhcp")}))}
    assert _tag(hosts["network"], naming.dhcp_device(failed[1].id)) == 2
    assert port_row(hosts["compute"], naming.BR_INT, naming.qvo_device(failed[0].id)) is not None
    assert hosts != up.hosts


def test_state_kept_and_loaded_back(up: Up) -> None:
    snap, hosts = up.loaded
    assert [(p.id, p.vif_type, p.vif_details) for p in snap.ports] == [
        (p.id, p.vif_type, p.vif_details) for p in up.snap.ports]
    assert {h.name: h for h in hosts} == up.hosts
    assert {h.name: h for h in plan_cloud(snap)} == up.hosts


def test_seed002_gateway_port_fails_to_bind_and_plans_as_before(seed002: Up) -> None:
    gateway = _port(seed002.snap, owner="network:router_gateway")
    assert (gateway.binding_host, gateway.vif_type) == ("network", "binding_failed")
    assert [p.name for p in seed002.snap.ports if p.vif_type == "binding_failed"] == [gateway.name]
    interface = _port(seed002.snap, owner="network:router_interface")
    assert interface.vif_type == "ovs"
    bound = {h.name: h for h in plan_cloud(_bound_like(seed002.snap, {gateway.id: interface}))}
    assert bound == seed002.hosts
    assert port_row(seed002.hosts["network"], "br-ex", naming.router_gateway_device(gateway.id)) is not None
