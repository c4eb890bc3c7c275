"""Seed 002 (Neutron Havana, OVS in VLAN mode with br-eth0, the 3-tier app), end to end:
examples/seed002.yaml is created through the API, every host is planned, and what `neutrino exec`
answers is held against the seed's own dumps (002_3f9ee22a6d480f79.txt). The slides were OCR'd:
``gr-``/``qq-``/``gg-`` stand for ``qr-``/``qg-``, ``- i`` for ``-j``, ``grouter`` for ``qrouter``."""

from __future__ import annotations

import pathlib
import re

from tests.scenarios.common import ask, normalize, router_ns
from tests.seeds import excerpt

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed002.yaml"




def ocr(text: str) -> str:
    text = re.sub(r"\b(gr|qq|gg)-", lambda m: "qr-" if m.group(1) == "gr" else "qg-", text)
    text = text.replace("grouter-", "qrouter-").replace("- i neutron", "-j neutron")
    return re.sub(r"^(-A \S+) -i (neutron-)", r"\1 -j \2", text, flags=re.M)


def flows(host, bridge: str) -> list[str]:
    """The flows without cookie and counters."""
    return [line.split("idle_age=<t>, ")[-1] for line in normalize(ask(host, f"ovs-ofctl dump-flows {bridge}"))]


def ofport(host, bridge: str, name: str) -> int:
    return next(int(p.number) for p in host.ovs.flows_of(bridge).ports.ports if p.name == name)


def test_compute_vlan_translation(cloud):
    """002 compute ``EasyOVS> dump br-int``: ``in=20, vlan=3 … mod vlan vid:2,NORMAL``, ``in=20, vlan=1 …
    mod vlan vid:1,NORMAL``, ``in=20 drop``, ``NORMAL``; ``dump br-eth0``: ``in=14, vlan=1 … mod vlan
    vid:1``, ``in=14, vlan=2 … mod vlan vid:3``, ``in=14 drop``, ``NORMAL``. int-br-eth0/phy-br-eth0
    are numbered here, and the local VLANs (1 and 2) follow the ports' creation order, so each
    network's is read from its ports' tag: net1 (VLAN 1, three instances) and net2 (VLAN 3, one)."""
    assert "in=20, vlan=3" in excerpt(2, "in=20, vlan=3") and "mod vlan vid:3" in excerpt(2, "mod vlan vid:3")
    compute = cloud["compute"]
    tags = [int(ln.split()[1]) for ln in normalize(ask(compute, "ovs-vsctl show")) if ln.startswith("tag:")]
    net1 = max(set(tags), key=tags.count)  # net1 has three of the four instances
    net2 = 3 - net1
    assert sorted(tags) == sorted([net1] * 3 + [net2]) and {net1, net2} == {1, 2}
    i, p = ofport(compute, "br-int", "int-br-eth0"), ofport(compute, "br-eth0", "phy-br-eth0")
    assert sorted(flows(compute, "br-int")) == sorted([
        f"priority=3,in_port={i},dl_vlan=3 actions=mod_vlan_vid:{net2},NORMAL",
        f"priority=3,in_port={i},dl_vlan=1 actions=mod_vlan_vid:{net1},NORMAL",
        f"priority=2,in_port={i} actions=drop", "priority=1 actions=NORMAL"])
    assert sorted(flows(compute, "br-eth0")) == sorted([
        f"priority=4,in_port={p},dl_vlan={net1} actions=mod_vlan_vid:1,NORMAL",
        f"priority=4,in_port={p},dl_vlan={net2} actions=mod_vlan_vid:3,NORMAL",
        f"priority=2,in_port={p} actions=drop", "priority=1 actions=NORMAL"])
    assert ofport(compute, "br-eth0", "eth0") == 1  # 002 "show br-eth0": eth0 1


def test_compute_ports_and_tags(cloud):
    """002 compute ``EasyOVS> list``: br-eth0 holds br-eth0, phy-br-eth0, eth0; br-int holds four qvo
    ports, int-br-eth0 and br-int; (the tags, three in one VLAN and one in the other, are checked above)."""
    compute = cloud["compute"]
    show = normalize(ask(compute, "ovs-vsctl show"))
    ports = {ln.split()[1].strip('"') for ln in show if ln.startswith("Port ")}
    seed = set(excerpt(2, "br-eth0 phy-br-eth0 eth0").split()) | set(
        re.sub(r"qvo[0-9a-f]{8}-[0-9a-f]{2}", "qvo<id>", excerpt(2, "qvo260209fa-72 int-br-eth0")).split())
    assert {re.sub(r"qvo[0-9a-f]{8}-[0-9a-f]{2}", "qvo<id>", p) for p in ports} == seed



def test_router_nat_table(cloud):
    """002 ``ip netns exec qrouter-03266ec4-… iptables -t nat -S``: Havana's chains (no nat INPUT, no
    comments, per-subnet SNAT ``-s 192.168.0.0/24 -j SNAT --to-source 192.168.122.200``), the two
    floating IPs' DNAT/SNAT. Ids masked; the OCR's ``- i``/``-i`` read as ``-j``."""
    network = cloud["network"]
    got = normalize(ask(network, f"ip netns exec {router_ns(network)} iptables -t nat -S"))
    seed = normalize(ocr(excerpt(2, "-P PREROUTING ACCEPT", "-A neutron-postrouting-bottom - i")))
    assert sorted(got) == sorted(seed)
    assert got[:3] == ["-P PREROUTING ACCEPT", "-P POSTROUTING ACCEPT", "-P OUTPUT ACCEPT"]


def test_router_routes(cloud):
    """002 ``ip netns exec qrouter-… ip route``: 192.168.0.0/24 on qr- (src .1), 192.168.122.0/24 on qg-
    (src .200), default via 192.168.122.1."""
    network = cloud["network"]
    got = normalize(ask(network, f"ip netns exec {router_ns(network)} ip route"))
    seed = normalize(ocr(excerpt(2, "192.168.0.0/24 dev gr-2a169bb4-4d", "default via 192.168.122.1")))
    assert got == seed


def test_network_netns(cloud):
    """002 ``ip netns list``: two qdhcp- and one qrouter- namespace."""
    got = normalize(ask(cloud["network"], "ip netns"))
    seed = normalize(ocr(excerpt(2, "qdhcp-39edbf9b-a6da-4bab-8500-39ad91ed1984", "grouter-03266ec4")))
    assert sorted(got) == sorted(seed)

