"""Seed 001's packet claims on the simulator (001_a698fdd90fe942cc.txt, examples/seed001.yaml):
DHCP works over the VXLAN tunnels from the controller's qdhcp namespaces to both computes; the
floating IP's path crosses the controller's router and a VXLAN tunnel to the compute; and, as the
author found, with port security on and security groups without rules the instance can neither
send traffic out nor be reached on its floating IP."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.sim.cloud import world_of
from neutrino.sim.trace import DropReason, StepKind

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed001.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from neutrino.deploy import bring_up

    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(tmp_path_factory.mktemp("sim001")))
    try:
        result = bring_up(SCENARIO)
    finally:
        mp.undo()
    w = world_of(result.cloud, result.hosts)
    w.leases = w.boot()
    w.cloud = result.cloud
    return w


def test_every_instance_gets_its_lease_over_vxlan(world):
    assert world.leases and all(world.leases.values()), world.leases
    hosts = {s.host for s in world.cloud.servers}
    assert hosts == {"compute01", "compute02"}


def test_floating_ip_path_and_the_security_group_that_stops_it(world):
    fip = world.cloud.floating_ips[0]
    t = world.probe("outside", str(fip.floating_ip_address), proto="tcp", dport=22)
    assert not t.delivered and t.verdict.reason is DropReason.SECURITY_GROUP
    elements = [(h.host, h.element) for h in t.hops]
    router = next(i for i, (h, e) in enumerate(elements) if e.startswith("qrouter-"))
    assert elements[router][0] == "controller"
    encap = [st.detail for h in t.hops for st in h.steps if st.kind is StepKind.ENCAP]
    assert encap and encap[0].startswith("VXLAN 10.168.7.16 > 10.168.7.")
    assert t.hops[-1].host.startswith("compute") and t.hops[-1].element.startswith("qbr")


def test_the_instance_cannot_send_while_port_security_is_on(world):
    # an instance on the router's network 10.11.11.0/24 (the others have no gateway to ask for)
    name = sorted(n for n, addr in world.leases.items() if addr and addr.startswith("10.11.11."))[0]
    t = world.probe(name, "8.8.8.8")
    assert not t.delivered and t.verdict.reason is DropReason.SECURITY_GROUP
    assert len(t.hops) == 1 and t.hops[0].letter == "A"  # dropped on the firewall bridge, leaving the tap
