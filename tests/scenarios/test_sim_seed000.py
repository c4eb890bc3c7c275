"""Seed 000's packet claims, re-enacted on the simulator over the planned plumbing of
examples/seed000.yaml (000_8d4cb9bc99c28ac6.txt): the instance's DHCP exchange with the qdhcp
dnsmasq across the GRE tunnel; its outbound packet through tap, the firewall bridge, br-int with
VLAN 1, br-tun with GRE key 0x2, the network host's br-tun and br-int, the router and br-ex; the
floating IP 172.24.4.228 translated both ways; inbound tcp/22 and tcp/80 allowed by the security
group and another port dropped; the metadata request redirected to 9697."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.sim.cloud import world_of
from neutrino.sim.trace import DropReason, StepKind, render

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed000.yaml"


@pytest.fixture(scope="module")
def world(up_result):
    w = world_of(up_result.cloud, up_result.hosts)
    assert w.boot() == {"cirros": "10.1.0.2/24"}
    return w


@pytest.fixture(scope="module")
def up_result(tmp_path_factory):
    from neutrino.deploy import bring_up

    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(tmp_path_factory.mktemp("sim000")))
    try:
        yield bring_up(SCENARIO)
    finally:
        mp.undo()


def kinds(trace, kind):
    return [st for hop in trace.hops for st in hop.steps if st.kind is kind]


def test_dhcp_gives_the_instance_its_address_through_the_tunnel(world):
    guest = world.guests["cirros"]
    assert str(guest.address) == "10.1.0.2/24" and str(guest.lease.router) == "10.1.0.1"
    assert guest.lease.lease_time == 120  # --dhcp-range=tag0,10.1.0.0,static,120s


def test_outbound_path_is_the_seeds(world):
    t = world.probe("cirros", "8.8.8.8")
    assert t.delivered and t.reply is not None and t.reply.delivered
    path = [(h.host, h.element) for h in t.hops]
    elements = [e for _, e in path]
    assert elements[0].startswith("qbr") and elements[1:4] == ["br-int", "br-tun", "br-tun"]
    assert path[2][0] == "compute" and path[3][0] == "network"
    flows = [st.text for st in kinds(t, StepKind.FLOW)]
    assert "priority=4,in_port=1,dl_vlan=1 actions=set_tunnel:0x2,NORMAL" in flows  # compute br-tun (F,G)
    encap = kinds(t, StepKind.ENCAP)
    assert encap and "key 0x2" in encap[0].detail
    router = next(h for h in t.hops if h.element.startswith("qrouter-"))
    snat = [st for st in router.steps if st.kind is StepKind.NAT]
    assert snat and "172.24.4.228" in snat[0].text  # the floating IP's float-snat rule
    assert any(h.element == "br-ex" for h in t.hops)


@pytest.mark.parametrize("port,allowed", [(22, True), (80, True), (23, False)])
def test_inbound_to_the_floating_ip_obeys_the_security_group(world, port, allowed):
    t = world.probe("outside", "172.24.4.228", proto="tcp", dport=port)
    assert t.delivered is allowed, render(t, "summary")
    router = next(h for h in t.hops if h.element.startswith("qrouter-"))
    assert any(st.kind is StepKind.NAT and "172.24.4.228" in st.text and "10.1.0.2" in st.text
               for st in router.steps)
    if allowed:
        assert t.reply is not None and t.reply.delivered
        assert any(st.kind is StepKind.NAT and st.text.startswith("un-DNAT") for h in t.reply.hops
                   for st in h.steps)
    else:
        assert t.verdict.reason is DropReason.SECURITY_GROUP
        assert "sg-fallback -j DROP" in t.verdict.detail
        assert t.verdict.where.startswith("compute qbr")


def test_metadata_is_redirected_to_9697(world):
    t = world.probe("cirros", "169.254.169.254", proto="http", dport=80)
    assert t.delivered and t.reply is not None and t.reply.delivered
    nat = [st.text for st in kinds(t, StepKind.NAT)]
    assert any(":9697" in x for x in nat)


def test_the_router_answers_ping(world):
    t = world.probe("cirros", "10.1.0.1")
    assert t.delivered and t.reply is not None and t.reply.delivered
    text = render(t, "minimal")
    assert text.splitlines()[0].startswith("compute qbr") and "=> delivered" in text and "reply:" in text


def test_without_a_floating_ip_the_router_snats_to_its_gateway_address(tmp_path, monkeypatch):
    """seed 000: "an SNAT rule that NATs all outbound traffic from our private network to
    172.24.4.227 … This permits instances to have outbound connectivity even without a public ip"."""
    import yaml

    from neutrino.deploy import bring_up

    doc = yaml.safe_load(SCENARIO.read_text())
    doc["resources"].pop("floating_ips")
    variant = tmp_path / "seed000-no-fip.yaml"
    variant.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    result = bring_up(variant)
    w = world_of(result.cloud, result.hosts)
    assert w.boot() == {"cirros": "10.1.0.2/24"}
    t = w.probe("cirros", "8.8.8.8")
    assert t.delivered and t.reply is not None and t.reply.delivered
    nat = [st.text for st in kinds(t, StepKind.NAT)]
    assert nat and nat[0].startswith("SNAT 10.1.0.2") and "172.24.4.227" in nat[0]
    rule = next(st.text for st in kinds(t, StepKind.RULE) if "-j SNAT" in st.text)
    assert rule == "-A quantum-l3-agent-snat -s 10.1.0.0/24 -j SNAT --to-source 172.24.4.227"


def test_udp_to_the_router_is_delivered(world):
    t = world.probe("cirros", "10.1.0.1", proto="udp", dport=53)
    assert t.delivered and t.verdict.where.startswith("network/qrouter-")
