"""Seed 000 ("Networking in too much detail"), end to end: examples/seed000.yaml is created
through the API, every host is planned, and what `neutrino exec` answers is held against the
seed's own dumps (000_8d4cb9bc99c28ac6.txt), ids, MACs and counters masked."""

from __future__ import annotations

import pathlib
import re

from tests.scenarios.common import ask, normalize, router_ns
from tests.seeds import excerpt, seed_text

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed000.yaml"
TEXT = seed_text(0)





def test_compute_security_group_chains_are_the_seeds(cloud):
    compute = cloud["compute"]
    tap = next(lk.name for ns in compute.namespaces for lk in ns.links or () if lk.name.startswith("tap"))
    got = normalize(ask(compute, f"iptables -S | grep {tap}"))
    want = normalize(excerpt(0, "-A quantum-openvswi-FORWARD -m physdev --physdev-out tap7c7ae61e-05",
                             "-A quantum-openvswi-sg-chain -m physdev --physdev-in tap7c7ae61e-05"))
    assert got == want
    ochain = next(c for c in compute.namespace("").iptables.table("filter").chains if c.name.startswith("quantum-openvswi-o"))
    got = normalize(ask(compute, f"iptables -S {ochain.name}"))[1:]  # after its -N line
    assert got == normalize(excerpt(0, "-A quantum-openvswi-o7c7ae61e-0 -m mac",
                                    "-A quantum-openvswi-o7c7ae61e-0 -j quantum-openvswi-sg-fallback"))
    ichain = ochain.name.replace("openvswi-o", "openvswi-i", 1)
    got = normalize(ask(compute, f"iptables -S {ichain}"))[1:]
    assert got == normalize(excerpt(0, "-A quantum-openvswi-i7c7ae61e-0 -m state --state INVALID",
                                    "-A quantum-openvswi-i7c7ae61e-0 -j quantum-openvswi-sg-fallback"))


def test_compute_br_tun_and_br_int_are_the_seeds(cloud):
    compute = cloud["compute"]
    start = TEXT.index("Afrer you boot an instance on this compute node")
    want = normalize(excerpt(0, "NXST_FLOW reply", "priority=1 actions=drop", start=start))[1:]
    assert sorted(normalize(ask(compute, "ovs-ofctl dump-flows br-tun"))) == sorted(want)
    show = normalize(ask(compute, "ovs-vsctl show"))
    want = normalize(excerpt(0, "Bridge br-int", "type: internal", start=TEXT.index("At this moment, br-int")))
    i = show.index("Bridge br-int")
    block = show[i:i + len(want)]
    assert sorted(block) == sorted(want)


def test_network_router_namespace_is_the_seeds(cloud):
    network = cloud["network"]
    ns = router_ns(network)
    got = normalize(ask(network, f"ip netns exec {ns} iptables -t nat -S"))
    want = normalize(excerpt(0, "-P PREROUTING ACCEPT", "-A quantum-postrouting-bottom -j quantum-l3-agent-snat"))
    assert got == want
    got = normalize(ask(network, f"ip netns exec {ns} ip route"))
    assert got == normalize(excerpt(0, "172.24.4.224/28 dev qg-d48b49e0-aa", "default via 172.24.4.225"))


def test_network_br_tun_and_dnsmasq_are_the_seeds(cloud):
    network = cloud["network"]
    start = TEXT.index("Traffic arrives on the network host via the GRE tunnel")
    want = normalize(excerpt(0, "NXST_FLOW reply", "priority=1 actions=drop", start=start))[1:]
    assert sorted(normalize(ask(network, "ovs-ofctl dump-flows br-tun"))) == sorted(want)
    qdhcp = next(n for n in network.namespace_names() if n.startswith("qdhcp-"))
    ps = normalize(ask(network, f"ps -fe | grep {qdhcp[6:]}"))
    seed_argv = normalize(excerpt(0, "nobody   23195", "nobody   23195"))[0].split(" dnsmasq ", 1)[1]
    assert [line.split(" dnsmasq ", 1)[1] for line in ps] == [seed_argv]
    assert normalize(ask(network, "ip netns")) == ["qdhcp-<uuid>", "qrouter-<uuid>"]



def test_router_and_dhcp_addresses_are_the_seeds(cloud):
    """seed 000's `ip netns exec qrouter-… ip addr` and `… qdhcp-… ip addr` (lo removed for brevity,
    as the seed did; the kernel's device numbers masked)."""
    network = cloud["network"]

    def without_lo(text: str) -> list[str]:
        lines = normalize(text)
        cut = next(i for i, ln in enumerate(lines) if ln.startswith("2:"))
        return [re.sub(r"^\d+:", "N:", ln) for ln in lines[cut:]]

    got = without_lo(ask(network, f"ip netns exec {router_ns(network)} ip addr"))
    want = [re.sub(r"^\d+:", "N:", ln) for ln in normalize(
        excerpt(0, "66: qg-d48b49e0-aa", "feea:646e/64 scope link \n       valid_lft"))]
    assert got == want
    qdhcp = next(n for n in network.namespace_names() if n.startswith("qdhcp-"))
    got = without_lo(ask(network, f"ip netns exec {qdhcp} ip addr"))
    want = [re.sub(r"^\d+:", "N:", ln) for ln in normalize(excerpt(0, "71: ns-f14c598d-98", "valid_lft forever"))]
    assert got == want
