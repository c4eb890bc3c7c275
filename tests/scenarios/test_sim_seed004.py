"""Seed 004's packet claims (004_8fadbe0c3fa10b22.txt, "Understanding Packet Flow") re-enacted on
the simulator over the planned plumbing of examples/seed004.yaml (nova-network FlatDHCPManager,
single-host): frames cross the flat VM network, one shared wire between the hosts' eth2; the
controller's eth1 and the upstream gateway 192.168.56.101 share the management wire.

- "How the VM gets an IP address": DHCPDISCOVER from compute-1's vnet0 crosses eth2 to the
  controller's dnsmasq, DHCPOFFER/REQUEST/ACK follow.
- "Ping VM from controller": controller br100 → eth2 → compute-1 eth2 → br100 → vnet0, accepted by
  ``-A nova-compute-inst-9 -s 10.0.0.0/24 -j ACCEPT``, the reply straight back.
- "Ping VM from compute node": ``ping: sendmsg: Operation not permitted`` at
  ``-A nova-compute-sg-fallback -j DROP``, never on the wire.
- "Ping VM from VM": a second instance on compute-2 (a test-local copy of the scenario).
- "Ping outer world from VM": SNAT to 192.168.56.200 on the controller, then nothing.

Host sources are written ``host:<name>`` (``neutrino trace host:compute-1 10.0.0.2``).
"""

from __future__ import annotations

import pathlib

import pytest

from neutrino.sim.cloud import world_of
from neutrino.sim.packets import DHCP, DHCPMessageType
from neutrino.sim.trace import DropReason, StepKind, render
from neutrino.sim.world import WIRE
from tests.seeds import seed_text

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed004.yaml"
NB = "\u00a0"
SEED = seed_text(4).replace(NB, " ")  # the page carries non-breaking spaces where the shell printed spaces


def _up(path: pathlib.Path, state: pathlib.Path):
    from neutrino.deploy import bring_up

    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    try:
        result = bring_up(path)
    finally:
        mp.undo()
    return world_of(result.cloud, result.hosts)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = _up(SCENARIO, tmp_path_factory.mktemp("sim004"))
    assert w.boot() == {"cirros": "10.0.0.2/24"}
    return w


@pytest.fixture(scope="module")
def two_vms(tmp_path_factory):
    """The scenario with a second cirros on compute-2 (10.0.0.3), written to a temporary copy:
    seed004.yaml has only the one instance the page boots."""
    text = SCENARIO.read_text()
    extra_port = """    - name: cirros2-vif
      network: novanetwork
      fixed_ips: [{subnet: novanetwork-subnet, ip_address: 10.0.0.3}]
      security_groups: [nova-default]
"""
    text = text.replace("  servers:\n", extra_port + "  servers:\n")
    text += "    - {name: cirros2, image: cirros, flavor: \"1\", networks: [{port: cirros2-vif}], host: compute-2}\n"
    tmp = tmp_path_factory.mktemp("sim004-two")
    path = tmp / "seed004-two-vms.yaml"
    path.write_text(text)
    w = _up(path, tmp / "state")
    assert w.boot() == {"cirros": "10.0.0.2/24", "cirros2": "10.0.0.3/24"}
    return w


def path_of(trace):
    return [(h.host, h.element, h.device) for h in trace.hops]


def rules(trace):
    return [st.text for h in trace.hops for st in h.steps if st.kind is StepKind.RULE]


def test_dhcp_from_the_controllers_dnsmasq_across_eth2(world):
    """004 "How the VM gets an IP address" and the controller's syslog:
    ``DHCPOFFER(br100) 10.0.0.2 fa:16:3e:2c:e8:ec`` … ``DHCPACK(br100) 10.0.0.2 fa:16:3e:2c:e8:ec cirros``."""
    offer, ack = "DHCPOFFER(br100) 10.0.0.2 fa:16:3e:2c:e8:ec", "DHCPACK(br100) 10.0.0.2 fa:16:3e:2c:e8:ec cirros"
    assert f"dnsmasq-dhcp[2729]: {offer} Jul" in SEED and f"dnsmasq-dhcp[2729]: {ack}Jul" in SEED
    guest = world.guests["cirros"]
    assert str(guest.lease.router) == "10.0.0.1" and str(guest.lease.server) == "10.0.0.1"
    hops = world.boot_hops["cirros"]
    kinds = []
    for h in hops:
        dhcp = getattr(getattr(getattr(h.frame, "payload", None), "payload", None), "payload", None)
        if isinstance(dhcp, DHCP) and h.host == WIRE:
            kinds.append((dhcp.message_type, h.device))
    assert kinds == [(DHCPMessageType.DISCOVER, "compute-1:eth2"), (DHCPMessageType.OFFER, "controller-1:eth2"),
                     (DHCPMessageType.REQUEST, "compute-1:eth2"), (DHCPMessageType.ACK, "controller-1:eth2")]
    server = [st.detail for h in hops if h.host == "controller-1" and h.element == "root" for st in h.steps
              if st.detail.startswith("DHCP")]
    assert server == [offer, ack]


def test_ping_from_the_controller_reaches_the_instance(world):
    """004 "Ping VM from controller": "This ARP packet gets sent through br100, which is bridged with
    eth2 … physically broadcast to all compute nodes"; the echo request "successfully reaches the VM
    as a result of the following sequence of iptables rules firing on the compute node"."""
    t = world.probe("host:controller-1", "10.0.0.2")
    assert t.delivered and t.reply is not None and t.reply.delivered, render(t, "summary")
    assert path_of(t) == [("controller-1", "root", "(local)"), ("controller-1", "br100", "br100"),
                          (WIRE, "eth2", "controller-1:eth2"), ("compute-1", "br100", "eth2"),
                          ("compute-1", "cirros", "eth0")]
    seed = SEED[SEED.index("-A FORWARD -j nova-filter-top-A nova-filter-top"):]
    for rule in ("-A nova-filter-top -j nova-compute-local", "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-9",
                 "-A nova-compute-inst-9 -s 10.0.0.0/24 -j ACCEPT"):
        assert rule in seed and rule in rules(t)
    route = t.hops[0].steps[0]
    assert route.kind is StepKind.ROUTE and "src 10.0.0.1" in route.detail  # "the return address will be 10.0.0.1"
    # the reply: "sent 'as is' to VM's eth0", bridged back over eth2, not routed
    assert path_of(t.reply) == [("compute-1", "br100", "vnet0"), (WIRE, "eth2", "compute-1:eth2"),
                                ("controller-1", "br100", "eth2"), ("controller-1", "root", "br100")]


def test_ping_from_the_compute_node_is_not_permitted(world):
    """004 "Ping VM from compute node": ``ping: sendmsg: Operation not permitted``; the path
    ``-A OUTPUT -j nova-filter-top`` … ``-A nova-compute-sg-fallback -j DROP``: the source is eth1's
    192.168.56.202, not in 10.0.0.0/24, and the packet "was never physically sent over the wire"."""
    assert "ping: sendmsg: Operation not permitted" in SEED
    t = world.probe("host:compute-1", "10.0.0.2")
    assert not t.delivered
    assert t.verdict.reason is DropReason.SECURITY_GROUP
    assert t.verdict.detail.startswith("ping: sendmsg: Operation not permitted")
    assert "-A nova-compute-sg-fallback -j DROP" in t.verdict.detail
    assert [(h.host, h.element) for h in t.hops] == [("compute-1", "root")]  # never left the host
    assert "src 192.168.56.202" in t.hops[0].steps[0].detail
    fired = rules(t)
    for rule in ("-A OUTPUT -j nova-filter-top", "-A nova-filter-top -j nova-compute-local",
                 "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-9",
                 "-A nova-compute-inst-9 -j nova-compute-sg-fallback", "-A nova-compute-sg-fallback -j DROP"):
        assert rule in fired
    assert "-A nova-compute-inst-9 -s 10.0.0.0/24 -j ACCEPT" not in fired


def test_ping_from_vm_to_vm_across_the_flat_network(two_vms):
    """004 "Ping VM from VM": "similar L2 broadcasts … and similar L3 packet flow … Even the
    sequence of iptables rules allowing this interaction will be the same"."""
    t = two_vms.probe("cirros", "cirros2")
    assert t.delivered and t.reply is not None and t.reply.delivered, render(t, "summary")
    assert [(h.host, h.element) for h in t.hops] == [("compute-1", "br100"), (WIRE, "eth2"), ("compute-2", "br100"),
                                                     ("compute-2", "cirros2")]
    assert any(r.endswith("-s 10.0.0.0/24 -j ACCEPT") and r.startswith("-A nova-compute-inst-") for r in rules(t))
    assert all(h.host != "controller-1" for h in t.hops + t.reply.hops)  # "not routed through the controller"


def test_ping_outer_world_from_the_vm_gets_no_answer(world):
    """004 "Ping outer world from VM": "routed through the VM's default gateway, 10.0.0.1, which is
    on the controller … no such ping will ever succeed … (though if you try, you will see the
    packets in tcpdump on the controller)". They leave the controller translated by
    ``-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200`` toward
    192.168.56.101, and nothing routes them on (or back) from that host-only network."""
    t = world.probe("cirros", "8.8.8.8")
    assert not t.delivered and t.reply is None
    controller = next(h for h in t.hops if h.host == "controller-1" and h.element == "root")
    nat = [st for st in controller.steps if st.kind is StepKind.NAT]
    assert [st.text for st in nat] == ["SNAT 10.0.0.2 -> 192.168.56.200"]
    assert "-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200" in rules(t)
    assert (WIRE, "eth1") in [(h.host, h.element) for h in t.hops]
    assert t.verdict.reason is DropReason.NO_ROUTE and t.verdict.where == "outside root"
    assert "host-only network" in t.verdict.detail and "192.168.56.200" in t.verdict.detail
