"""Why review 19's provider-VLAN guests got no DHCP address in the simulator (issue #17, round 18).

The review's cloud (``_cloud`` of tests/plan/test_review19_renumbered.py) maps ``physnet1`` to
``br-eth1`` on every host but names no NIC in that bridge (``Host.uplinks`` is empty). The OVS
agent does not add one either: the operator plugs the physical NIC (``ovs-vsctl add-port br-eth1
eth1``) before the agent starts, and neutrino plans it only when the scenario names it
(``uplinks: {br-eth1: eth1}``, as seed 002 does for ``br-eth0``). Without it br-eth1 holds only
its own port and ``phy-br-eth1``: the guest's DISCOVER is translated to the segment's VLAN as the
agent's flows say (``mod_vlan_vid:102``) and br-eth1's NORMAL floods it to the bridge's own port
alone, so it never leaves the compute and the network host's dnsmasq never sees it. That is what a
real cloud so wired does: the ports bind (every host has the mapping, so ML2 does not fail the
binding), and the guests get no address. The simulator wires hosts together only through their
NICs of one name (neutrino.sim.topology), so it is faithful here; the planner's flows on br-int
and br-eth1 are the agent's (``provision_local_vlan`` of br_int and br_phys).

These tests hold that down: the review's cloud as built (the VLAN guests get nothing, and their
DISCOVER ends at br-eth1 of their own host), the same cloud with ``eth1`` named as br-eth1's
uplink on every host (every guest gets its port's address, the DISCOVER crosses the ``eth1`` wire
to the network host's qdhcp namespace), and seed 002, which boots because it names its uplinks
and does not without them.
"""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from neutrino.host.ovsdb import OvsdbShow
from neutrino.host.state import HostState
from neutrino.plan import plan_cloud
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim.cloud import world_of
from neutrino.sim.trace import Hop, StepKind
from neutrino.sim.world import WIRE, World
from tests.plan.test_review19_renumbered import _cloud, _with_servers, _with_uplinks
from tests.sim.conftest import brought_up

SEED002 = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed002.yaml"

#: review 19's provider-VLAN network (``NETS``' third: VLAN 102 on physnet1) and its guests
VLAN_NET = "net-2"
VLAN_GUESTS = ("vm-port-2-1", "vm-port-2-5")


def _booted(cloud: CloudSnapshot) -> tuple[World, tuple[HostState, ...], dict[str, str | None]]:
    hosts = plan_cloud(cloud)
    world = world_of(cloud, hosts)
    return world, hosts, world.boot()


def _fixed_ip(cloud: CloudSnapshot, guest: str) -> str:
    """The address of the port of server ``guest`` (its first), with its subnet's prefix."""
    server = next(s for s in cloud.servers if s.name == guest)
    port = cloud.port(server.port_ids[0])
    fixed = port.fixed_ips[0]
    return f"{fixed.ip_address}/{cloud.subnet(fixed.subnet_id).cidr.prefixlen}"


def _bridge_ports(host: HostState, bridge: str) -> set[str]:
    show = host.ovs.show
    assert isinstance(show, OvsdbShow)
    br = show.bridge(bridge)
    assert br is not None
    return {p.name for p in br.ports}


def _normal(hop: Hop) -> str:
    """The NORMAL action's account of where the frame went (one per OVS hop that reached it)."""
    details = [s.detail for s in hop.steps if s.kind is StepKind.NORMAL]
    assert len(details) == 1
    return details[0]


@pytest.mark.parametrize("firewall", ["iptables_hybrid", "openvswitch"], ids=str)
def test_the_review_cloud_as_built_leaves_provider_vlan_guests_without_dhcp(firewall: str) -> None:
    """As the review built it: br-eth1 holds no NIC on any host. The tunnelled guests get their
    addresses; each VLAN guest's DISCOVER goes br-int -> int-br-eth1 -> br-eth1 (local VLAN to
    segment VLAN 102, as the agent's flow says), whose NORMAL floods it to the bridge's own port
    only: no hop on a wire, none on another host, no address."""
    cloud = _with_servers(_cloud(firewall=firewall))
    assert all(h.uplinks == () and h.bridge_mappings == (("physnet1", "br-eth1"),) for h in cloud.deployment.hosts)
    world, hosts, addresses = _booted(cloud)
    for h in hosts:
        assert _bridge_ports(h, "br-eth1") == {"br-eth1", "phy-br-eth1"}
    seg = next(n.segment for n in cloud.networks if n.id == VLAN_NET)
    assert (seg.network_type, seg.physical_network, seg.segmentation_id) == ("vlan", "physnet1", 102)
    for guest, address in addresses.items():
        assert address == (None if guest in VLAN_GUESTS else _fixed_ip(cloud, guest)), guest
    for guest in VLAN_GUESTS:
        own = world.specs[guest].host
        hops = world.boot_hops[guest]
        assert {h.host for h in hops} == {own}
        out = [h for h in hops if h.element == "br-eth1"]
        assert len(out) == 1 and out[0].device == "phy-br-eth1"
        flows = [s.text for s in out[0].steps if s.kind is StepKind.FLOW]
        assert len(flows) == 1 and flows[0].startswith("priority=4,") and "actions=mod_vlan_vid:102,NORMAL" in flows[0]
        assert _normal(out[0]).endswith("broadcast on VLAN 102: flooded to br-eth1")


@pytest.mark.parametrize("firewall", ["iptables_hybrid", "openvswitch"], ids=str)
def test_the_review_cloud_with_br_eth1_uplinks_boots_every_guest(firewall: str) -> None:
    """The same cloud with ``eth1`` named as br-eth1's uplink on every host (the scenario's
    ``uplinks: {br-eth1: eth1}``): every guest gets its port's address, and each VLAN guest's
    DISCOVER leaves its host on the ``eth1`` wire tagged 102 and reaches dnsmasq in the network
    host's qdhcp namespace."""
    cloud = _with_uplinks(_with_servers(_cloud(firewall=firewall)), (("br-eth1", "eth1"),))
    world, hosts, addresses = _booted(cloud)
    for h in hosts:
        assert _bridge_ports(h, "br-eth1") == {"br-eth1", "eth1", "phy-br-eth1"}
    assert addresses == {g: _fixed_ip(cloud, g) for g in addresses}
    for guest in VLAN_GUESTS:
        own = world.specs[guest].host
        hops = world.boot_hops[guest]
        wire = [h for h in hops if h.host == WIRE]
        assert wire and wire[0].element == "eth1" and wire[0].device == f"{own}:eth1"
        assert "eth1 switch (vlan 102)" in [s.text for s in wire[0].steps]
        assert any(h.host == "network" and h.element == f"qdhcp-{VLAN_NET}" for h in hops)


def test_seed002_boots_through_its_uplinks_and_not_without_them(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Seed 002 (Havana, VLAN on physnet1 -> br-eth0) names ``uplinks: {br-eth0: eth0}`` on both
    hosts: its guests get their addresses. The same cloud without br-eth0's uplinks (br-ex's
    kept) gets none, and the DISCOVER ends at the compute's br-eth0 as in the review's cloud."""
    cloud = brought_up(SEED002, tmp_path_factory, "vlandhcp-seed2")
    assert all(("br-eth0", "eth0") in h.uplinks for h in cloud.deployment.hosts)
    _, _, addresses = _booted(cloud)
    assert addresses and addresses == {g: _fixed_ip(cloud, g) for g in addresses}
    dep = cloud.deployment
    bare = dataclasses.replace(cloud, deployment=dataclasses.replace(dep, hosts=tuple(
        dataclasses.replace(h, uplinks=tuple(u for u in h.uplinks if u[0] != "br-eth0")) for h in dep.hosts)))
    world, _, addresses = _booted(bare)
    assert set(addresses.values()) == {None}
    for guest, hops in world.boot_hops.items():
        assert {h.host for h in hops} == {"compute"}, guest
        assert _normal(next(h for h in hops if h.element == "br-eth0")).endswith("flooded to br-eth0")
