"""Seed 003's scenarios (003_eed1d18a3248d01a.txt, "Understanding VlanManager Network Flows …: Six
Scenarios") re-enacted on the simulator over the planned plumbing of examples/seed003.yaml
(nova-network VlanManager, multi-host): vlanNNN@eth0 tags frames onto the eth0 trunk shared by the
computes, and only the other hosts' vlanNNN devices receive them, untagged; eth1 is the public
wire with the upstream gateway.

Test-local copies of the scenario (written to tmp), each for a stated reason:

- ``gateway``: the seed routes to the internet "via compute node's default gateway" but names no
  address, and seed003.yaml gives the hosts no ``default_gateway``; the copy adds
  ``default_gateway: 91.207.15.1`` (an address of our choosing on eth1's 91.207.15.0/24).
- ``fixed``: ``gateway`` without the floating IPs: Scenarios 2–6 come before Scenario 7 assigns
  them ("it has only a fixed IP assigned"); with them, VM_1's ``float-snat`` rule rewrites all its
  routed traffic.
- ``icmp``: ``gateway`` plus an icmp rule from 91.208.23.0/24 in tenant2's group: Scenario 7 pings
  VM_6 from VM_1's floating IP, which the seed's groups (tcp from 10.0.0.0/24 only) do not let in.

Across tenants the seed's security groups allow tcp only, so Scenarios 5 and 6 probe tcp/22.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from neutrino.sim.cloud import world_of
from neutrino.sim.packets import ARP
from neutrino.sim.trace import DropReason, StepKind, render
from neutrino.sim.world import WIRE
from tests.seeds import seed_text

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed003.yaml"
SEED = " ".join(seed_text(3).replace("\u00a0", " ").replace("\u2013", "--").split())


def _variant(kind: str) -> str:
    text = SCENARIO.read_text()
    if kind == "as-is":
        return text
    text = re.sub(r"(    interfaces: \{eth1: 91\.207\.15\.\d+/24\}\n)", r"\1    default_gateway: 91.207.15.1\n", text)
    if kind == "fixed":
        text = text[:text.index("  floating_ips:")]
    elif kind == "icmp":
        old = "rules: [{direction: ingress, protocol: tcp, port_range: \"1:65535\", remote_ip_prefix: 10.0.0.0/24}]"
        assert old in text
        text = text.replace(old, old[:-1] + ", {direction: ingress, protocol: icmp, remote_ip_prefix: 91.208.23.0/24}]")
    return text


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """Each variant brought up once: (cloud, hosts)."""
    from neutrino.deploy import bring_up

    out = {}
    for kind in ("as-is", "gateway", "fixed", "icmp"):
        tmp = tmp_path_factory.mktemp(f"sim003-{kind}")
        path = tmp / "seed003.yaml"
        path.write_text(_variant(kind))
        mp = pytest.MonkeyPatch()
        mp.setenv("NEUTRINO_STATE", str(tmp / "state"))
        try:
            result = bring_up(path)
        finally:
            mp.undo()
        out[kind] = (result.cloud, result.hosts)
    return out


def world(planned, kind, *, patch_hosts=None):
    """A fresh world (empty neighbour tables, FDBs and conntrack) over a variant, booted."""
    cloud, hosts = planned[kind]
    if patch_hosts is not None:
        hosts = patch_hosts(hosts)
    w = world_of(cloud, hosts)
    leases = w.boot()
    assert all(leases.values()), leases
    return w


def where(trace):
    return [(h.host, h.element, h.device) for h in trace.hops]


def rules(hops):
    return [st.text for h in hops for st in h.steps if st.kind is StepKind.RULE]


def nats(hops, host):
    return [st.text for h in hops if h.host == host for st in h.steps if st.kind is StepKind.NAT]


def tags(hops):
    return [h.device.split(":")[1] for h in hops if h.host == WIRE and h.element == "eth0"]


def test_scenario_1_each_vm_gets_its_lease_from_its_own_hosts_dnsmasq(planned):
    """003 Scenario 1: VM_1 is offered "an instance address: 10.0.0.3 and a default gateway pointing
    to br100: 10.0.0.1"; VM_4 10.0.0.6 and 10.0.0.5, from the dnsmasq on its own host
    ("–listen-address 10.0.0.5"), though both dnsmasqs share tenant1's VLAN 100."""
    for text in ("an instance address: 10.0.0.3", "a default gateway pointing to br100: 10.0.0.1",
                 "an instance address: 10.0.0.6", "a default gateway pointing to br100: 10.0.0.5"):
        assert text in SEED
    w = world(planned, "as-is")
    for name, addr, gateway, host in (("VM_1", "10.0.0.3/24", "10.0.0.1", "compute-1"),
                                      ("VM_4", "10.0.0.6/24", "10.0.0.5", "compute-2")):
        lease = w.guests[name].lease
        assert (str(lease.address), str(lease.router), str(lease.server)) == (addr, gateway, gateway)
        answered = [h.host for h in w.boot_hops[name] for st in h.steps if st.detail.startswith("DHCPACK(br100)")]
        assert answered == [host]
    # the DISCOVER is broadcast over br100 and, tagged 100, to the other hosts' vlan100 too
    seen = {h.device for h in w.boot_hops["VM_1"] if h.element == "br100" and h.device == "vlan100"}
    assert seen == {"vlan100"}


def test_scenario_2_vm_to_the_internet_snat_to_routing_source_ip(planned):
    """003 Scenario 2: "the packet gets SNAT-ted to eth1's IP: 91.207.15.105 … nova-network-snat
    -s 10.0.0.0/24 -j SNAT --to-source 91.207.15.105"; "the kernel NAT table is referenced to send
    the packet back to VM_1"."""
    rule = "-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 91.207.15.105"
    assert rule[3:] in SEED
    w = world(planned, "fixed")
    t = w.probe("VM_1", "8.8.8.8")
    assert t.delivered and t.reply is not None and t.reply.delivered, render(t, "summary")
    assert rule in rules(t.hops)
    assert nats(t.hops, "compute-1") == ["SNAT 10.0.0.3 -> 91.207.15.105"]
    assert (WIRE, "eth1", "compute-1:eth1") in where(t)
    assert nats(t.reply.hops, "compute-1") == ["un-SNAT 91.207.15.105 -> 10.0.0.3"]
    assert t.reply.hops[-1].element == "VM_1"


def test_scenario_3_same_host_via_br100_and_the_arp_broadcast_everywhere(planned):
    """003 Scenario 3: VM_1 → VM_2 on one host through br100; "all ARP broadcasts sent on the tenant1
    network are visible on all compute nodes that have the vlan100 interface … even if VM_1 and VM_2
    are on a single host, the ARP broadcast sent in point (1) is also visible to VM_4 and VM_5"."""
    w = world(planned, "as-is")
    t = w.probe("VM_1", "VM_2")
    assert t.delivered and t.reply is not None and t.reply.delivered
    assert [(h.host, h.element) for h in t.hops] == [("compute-1", "br100"), ("compute-1", "VM_2")]
    arp = [h for f in t.forks for h in f.hops if isinstance(getattr(h.frame, "payload", None), ARP)
           and str(h.frame.payload.pdst) == "10.0.0.4" and h.frame.payload.op == 1]
    reached = {(h.host, h.element) for h in arp}
    assert {("compute-2", "VM_4"), ("compute-2", "VM_5"), ("compute-3", "VM_7")} <= reached
    assert ("compute-2", "br100") in reached and (WIRE, "eth0") in reached
    assert not any(h.host == "compute-2" and h.element == "br102" for h in arp)  # VLAN 102 is another domain


def test_scenario_4_across_hosts_tagged_100_on_the_trunk(planned):
    """003 Scenario 4: "The packet is tagged with 802.1Q vlan tag number 100 on the compute node's
    interface … Since it bears tag 100, it is passed further to vlan100 interface. The tag is
    stripped from the packet here. Packet goes through br100"."""
    w = world(planned, "as-is")
    t = w.probe("VM_1", "VM_5")
    assert t.delivered and t.reply is not None and t.reply.delivered
    assert where(t)[1:] == [(WIRE, "eth0", "compute-1:vlan100"), ("compute-2", "br100", "vlan100"),
                            ("compute-2", "VM_5", "eth0")]
    assert where(t)[0][:2] == ("compute-1", "br100") and where(t)[0][2].startswith("vnet")  # VM_1's vnet
    wire = next(h for h in t.hops if h.host == WIRE)
    details = [st.detail for st in wire.steps]
    assert "802.1Q tag 100 pushed onto eth0" in details
    assert any("compute-2:vlan100 (tag 100 popped)" in d for d in details)
    assert tags(t.reply.hops) == ["vlan100"]


def test_scenario_5_other_tenant_same_host_routed_br100_to_br102(planned):
    """003 Scenario 5: "The packet arrives at br100. Compute node routes the packet to br102 based on
    its internal routing table … VM_3 sends the reply to the default gateway, which is 10.1.0.1 (the
    address of br102). The packet is then routed back to tenant1's network via br100"."""
    w = world(planned, "fixed")
    t = w.probe("VM_1", "VM_3", proto="tcp", dport=22)
    assert t.delivered and t.reply is not None and t.reply.delivered, render(t, "summary")
    assert [(h.host, h.element, h.device) for h in t.hops][1:] == [
        ("compute-1", "root", "br100"), ("compute-1", "br102", "br102"), ("compute-1", "VM_3", "eth0")]
    route = next(st for st in t.hops[1].steps if st.kind is StepKind.ROUTE)
    assert route.text.startswith("10.1.0.0/24 dev br102")
    assert [(h.host, h.element) for h in t.reply.hops] == [("compute-1", "br102"), ("compute-1", "root"),
                                                             ("compute-1", "br100"), ("compute-1", "VM_1")]
    back = next(st for st in t.reply.hops[1].steps if st.kind is StepKind.ROUTE)
    assert back.text.startswith("10.0.0.0/24 dev br100")  # VM_3's gateway 10.1.0.1 routes it to br100
    assert not any(h.host == WIRE for h in t.hops + t.reply.hops)
    assert nats(t.hops, "compute-1") == []  # VM_3 sees 10.0.0.3


def test_scenario_6_other_tenant_other_host_asymmetric(planned):
    """003 Scenario 6: the request "is now on tenant2's L2 network segment. It gets its 802.1Q vlan
    tag" (102) and reaches VM_6 through the other host's br102; the reply "is sent directly to the
    default gateway, which is 10.1.0.5", routed to br100 there, tagged 100, and "arrives at the
    physical network interface of the left compute node … vlan100"."""
    w = world(planned, "fixed")
    t = w.probe("VM_1", "VM_6", proto="tcp", dport=22)
    assert t.delivered and t.reply is not None and t.reply.delivered, render(t, "summary")
    assert tags(t.hops) == ["vlan102"] and tags(t.reply.hops) == ["vlan100"]
    routed_by = [h.host for h in t.hops if h.element == "root"]
    back_by = [h.host for h in t.reply.hops if h.element == "root"]
    assert routed_by == ["compute-1"] and back_by == ["compute-2"]
    assert ("compute-2", "br102", "vlan102") in where(t) and ("compute-1", "br100", "vlan100") in where(t.reply)
    request_path = [(h.host, h.element) for h in t.hops]
    reply_path = [(h.host, h.element) for h in t.reply.hops]
    assert request_path != list(reversed(reply_path))  # the asymmetric route


def test_inter_tenant_traffic_is_not_snated(planned):
    """nova's fixed_range spans both tenants' networks, so init_host's POSTROUTING ACCEPT keeps
    VM_1 -> VM_6 un-NATed: VM_6's group (tcp from 10.0.0.0/24) lets it in."""
    w = world(planned, "fixed")
    t = w.probe("VM_1", "VM_6", proto="tcp", dport=22)
    assert t.delivered and nats(t.hops, "compute-1") == []


def test_what_about_this_one_no_br102_host_unreachable(planned):
    """003 "But what about this one?": on a host without br102 "there is no direct route to network
    10.1.0.0 … So the compute node sends the packet to its own default gateway, which happens to be
    eth1 … there is no chance of finding the way to 10.1.0.0. We get a “host unreachable” message"
    (compute-3 and its tenant1 instance VM_7 play the leftmost host)."""
    assert "We get a “host unreachable” message" in SEED
    w = world(planned, "fixed")
    t = w.probe("VM_7", "10.1.0.4")
    assert not t.delivered and t.verdict.reason is DropReason.NO_ROUTE
    assert "host unreachable" in t.verdict.detail
    compute = next(h for h in t.hops if h.host == "compute-3" and h.element == "root")
    route = next(st for st in compute.steps if st.kind is StepKind.ROUTE)
    assert route.text.startswith("default via 91.207.15.1 dev eth1")
    assert (WIRE, "eth1", "compute-3:eth1") in where(t)
    # the ICMP error comes back, un-NATed by conntrack, to VM_7
    last = t.hops[-1]
    assert (last.host, last.element) == ("compute-3", "VM_7")
    assert any("ICMP type 3" in st.detail for st in last.steps)


def test_scenario_7_floating_ips_snat_dnat_and_conntrack(planned):
    """003 Scenario 7: "the packet source/dest. look like this: source 91.208.23.11 and destination
    91.208.23.16 … DNAT … changes its destination IP from 91.208.23.16 to 10.1.0.4 … the compute node
    routes the packet via br102"; the reply: "no explicit DNAT-ting is done … the kernel's internal
    NAT table is consulted"."""
    w = world(planned, "icmp")
    t = w.probe("VM_1", "91.208.23.16")
    assert t.delivered and t.reply is not None and t.reply.delivered, render(t, "summary")
    assert nats(t.hops, "compute-1") == ["SNAT 10.0.0.3 -> 91.208.23.11"]
    assert nats(t.hops, "compute-2") == ["DNAT 91.208.23.16 -> 10.1.0.4"]
    assert "-A nova-network-PREROUTING -d 91.208.23.16/32 -j DNAT --to-destination 10.1.0.4" in rules(t.hops)
    far = next(h for h in t.hops if h.host == "compute-2" and h.element == "root")
    assert next(st for st in far.steps if st.kind is StepKind.ROUTE).text.startswith("10.1.0.0/24 dev br102")
    assert t.hops[-1].element == "VM_6"
    assert nats(t.reply.hops, "compute-2") == ["un-DNAT 10.1.0.4 -> 91.208.23.16"]
    assert nats(t.reply.hops, "compute-1") == ["un-SNAT 91.208.23.11 -> 10.0.0.3"]
    assert not [r for r in rules(t.reply.hops) if "DNAT" in r]  # conntrack, no rule


def test_scenario_7_with_the_seeds_groups_alone_the_ping_is_dropped(planned):
    """What the seed's security groups give Scenario 7 by themselves: VM_6 admits tcp from
    10.0.0.0/24, and the ping arrives from 91.208.23.11 after DNAT, so nova-compute-sg-fallback
    drops it on compute-2."""
    w = world(planned, "gateway")
    t = w.probe("VM_1", "91.208.23.16")
    assert not t.delivered and t.verdict.reason is DropReason.SECURITY_GROUP
    assert nats(t.hops, "compute-2") == ["DNAT 91.208.23.16 -> 10.1.0.4"]
    assert "-A nova-compute-sg-fallback -j DROP" in t.verdict.detail
