"""Seed 001 (Stein, ML2/OVS, VXLAN, one controller and two computes), end to end:
examples/seed001.yaml is created through the API, every host is planned, and what `neutrino exec`
answers is held against the seed's own dumps (001_a698fdd90fe942cc.txt), ids, MACs and counters
masked."""

from __future__ import annotations

import pathlib
import re

from tests.scenarios.common import ask, normalize, router_ns
from tests.seeds import between, excerpt

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed001.yaml"





def unquote(lines: list[str]) -> list[str]:
    """Stein's OVS quoted port names with digits (``Port "vxlan-0aa80711"``); newer OVS does not."""
    return [re.sub(r'^(Port|Interface) "([^"]+)"$', r"\1 \2", line) for line in lines]


def block(lines: list[str], first: str) -> list[str]:
    """One bridge of an ``ovs-vsctl show`` (from its ``Bridge`` line to the next bridge)."""
    i = lines.index(first)
    j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("Bridge ")), len(lines))
    return lines[i:j]


def test_compute02_br_tun(cloud):
    """001 ``[root@compute02 ~]# ovs-vsctl show``: br-tun with the controller, ``fail_mode: secure``,
    patch-int and one vxlan port per other host (l2population off): ``vxlan-0aa80711`` to
    10.168.7.17 and ``vxlan-0aa80710`` to 10.168.7.16, local_ip 10.168.7.132. Port order aside."""
    seed = unquote(normalize(excerpt(1, "6febea71-608a-4161-af6b-7bfb24fea765", 'remote_ip="10.168.7.16"}')))
    got = unquote(normalize(ask(cloud["compute02"], "ovs-vsctl show")))
    assert sorted(block(got, "Bridge br-tun")) == sorted(block(seed, "Bridge br-tun"))
    assert got[1:3] == seed[1:3]  # Manager "ptcp:6640:127.0.0.1" / is_connected: true


def test_compute02_brctl_show_grep(cloud):
    """001 ``brctl show|grep bfda``: ``qbrbfda8db6-7b 8000.5e414374148d no qvbbfda8db6-7b tapbfda8db6-7b``
    (the bridge id is the qvb end's random MAC; grep shows the tap on its own line here, as brctl
    prints it)."""
    compute = cloud["compute02"]
    tap = next(lk.name for ns in compute.namespaces for lk in ns.links or ()
               if lk.name.startswith("tap") and lk.master and lk.master.startswith("qbr"))
    got = " ".join(ask(compute, f"brctl show | grep {tap[3:7]}").split())
    seed = " ".join(excerpt(1, "qbrbfda8db6-7b\t\t8000.").split())

    def shape(text: str) -> str:
        text = re.sub(r"\b(qbr|qvb|tap)[0-9a-f]{8}-[0-9a-f]{2}\b", r"\1<id>", text)
        return re.sub(r"\b8000\.[0-9a-f]{12}\b", "8000.<mac>", text)
    assert shape(got) == shape(seed) == "qbr<id> 8000.<mac> no qvb<id> tap<id>"


def _nat_rows(text: str) -> dict[str, list[str]]:
    """Chain -> its rows (counters dropped, ids masked, sorted: the floating IPs' order is the
    order the server lists them in, which is not the seed's)."""
    out: dict[str, list[str]] = {}
    chain = ""
    for line in normalize(text):
        if line.startswith("Chain "):
            chain = re.sub(r"\(policy (\w+) .*\)", r"(policy \1)", line)
            out[chain] = []
        elif not line.startswith("pkts"):
            out[chain].append(" ".join(line.split()[2:]))
    return {c: sorted(rows) for c, rows in out.items()}


def test_router_nat_table(cloud):
    """001 ``ip netns exec qrouter-be384c66-… iptables -t nat -nvL``: every chain and row (counters
    masked): the metadata REDIRECT on ``qr-+``, a DNAT pair and a float-snat SNAT for each of the
    eight floating IPs, the SNAT to 192.168.100.18 out of qg- (no --random-fully on that Stein host)."""
    controller = cloud["controller"]
    got = ask(controller, f"ip netns exec {router_ns(controller)} iptables -t nat -nvL")
    seed = excerpt(1, "Chain PREROUTING (policy ACCEPT 53108 packets",
                   "/* Perform source NAT on outgoing traffic. */")
    assert _nat_rows(got) == _nat_rows(seed)
    lines = normalize(got)
    first = lines[lines.index("Chain neutron-l3-agent-PREROUTING (1 references)") + 2]
    assert "REDIRECT" in first  # steady state: the REDIRECT heads neutron-l3-agent-PREROUTING


def test_compute01_o_chain(cloud):
    """001 ``[root@compute01 ~]# iptables -nvL neutron-openvswi-o0db0e25b-0``: the hybrid firewall's
    egress chain of an instance whose group has no rules (counters masked)."""
    compute = cloud["compute01"]
    chains = [c.name for c in compute.namespace("").iptables.table("filter").chains]
    # the seed's instance: the one at 172.16.0.249 (its i-chain names the address)
    vm = next(c.replace("openvswi-i", "openvswi-o", 1) for c in chains
              if c.startswith("neutron-openvswi-i") and "172.16.0.249" in ask(compute, f"iptables -S {c}"))
    got = normalize(ask(compute, f"iptables -nvL {vm}"))
    seed = normalize(excerpt(1, "Chain neutron-openvswi-o0db0e25b-0 (2 references)", "fallback chain. */"))

    def rows(lines: list[str]) -> list[str]:
        return [ln if ln.startswith(("Chain", "pkts")) else " ".join(ln.split()[2:]) for ln in lines]
    assert rows(got) == rows(seed)


def test_compute01_i_chain_dhcp_rules(cloud):
    """001 ``iptables -nvL neutron-openvswi-i0db0e25b-0``: RELATED,ESTABLISHED first, DHCP replies to
    the instance's own 172.16.0.249 and to broadcast, then the INVALID drop."""
    compute = cloud["compute01"]
    chain = next(c.name for c in compute.namespace("").iptables.table("filter").chains
                 if c.name.startswith("neutron-openvswi-i") and "172.16.0.249" in ask(compute, f"iptables -S {c.name}"))
    got = [" ".join(ln.split()[2:]) for ln in normalize(ask(compute, f"iptables -nvL {chain}"))[2:]]
    seed = [" ".join(ln.split()[2:]) for ln in normalize(excerpt(
        1, "state RELATED,ESTABLISHED /* Direct packets", "do not have an entry in conntrack. */", occurrence=1))]
    assert got[:len(seed)] == seed


def test_controller_netns(cloud):
    """001 ``ip netns list`` on the controller: one ``qdhcp-<network>`` per network with instances (Neutron makes
    the DHCP port with the first instance port) and
    one ``qrouter-<router>`` (the seed's ``(id: N)`` is the kernel's nsid, not shown by our ``ip``)."""
    got = normalize(ask(cloud["controller"], "ip netns"))
    seed = {re.sub(r" \(id: \d+\)$", "", ln) for ln in normalize(excerpt(
        1, "qdhcp-96c5a292-af46-4ae8-ae42-cf47ab21dd7a (id: 8)", "qrouter-be384c66-1834-4265-8f8a-9c85c016ee79 (id: 1)"))}
    assert set(got) <= seed == {"qdhcp-<uuid>", "qrouter-<uuid>"}
    assert sorted(got) == ["qdhcp-<uuid>"] * 3 + ["qrouter-<uuid>"]  # net10, 172.12, 172.16


def test_router_ifconfig(cloud):
    """001 ``ip netns exec qrouter-… ifconfig``: qg- 192.168.100.18/24 with MTU 1500; qr- on
    192.168.198.1, 192.168.199.1 and 10.11.11.1 (/24) with the VXLAN networks' MTU 1450. Flag,
    address and MAC lines, lo included (the inet6 link-local lines aside; counters differ)."""
    controller = cloud["controller"]
    got = normalize(ask(controller, f"ip netns exec {router_ns(controller)} ifconfig"))
    seed = normalize(between(1, "qrouter-be384c66-1834-4265-8f8a-9c85c016ee79 ifconfig", "Among them, QR"))[1:]

    def shape(lines: list[str]) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for ln in lines:
            if ": flags=" in ln:
                out.append((ln,))
            elif ln.startswith(("inet ", "ether ")):
                out[-1] += (ln,)
        return sorted(out)
    assert shape(got) == shape(seed)

