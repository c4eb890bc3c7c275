"""plan_firewall against seed 000 (Grizzly) and reference §6.3 (modern).

The top of this file holds the clouds the three planner test files share: seed 000's cloud and
the reference's running example, built directly as ``CloudSnapshot``s.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from pathlib import Path

import pytest

from neutrino.host.iptables import Ruleset, Table, TableName, format_rule, format_rules, format_save
from neutrino.host.iptables_listing import format_listing
from neutrino.plan.firewall import plan_firewall, sg_rule_spec
from neutrino.plan.generation import Generation, profile
from neutrino.scenarios.model import Deployment, Host
from neutrino.services.snapshot import (
    AddressPair,
    CloudSnapshot,
    FixedIP,
    FloatingIP,
    Gateway,
    Network,
    Port,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Segment,
    Subnet,
)
from seeds import excerpt, squash
from tests.reference import REFERENCE  # noqa: E402

HYBRID = (("ovs_hybrid_plug", True), ("port_filter", True))

# --- cloud builders ------------------------------------------------------------------------------


def net(ident: str, mtu: int, subnets: tuple[str, ...], *, external: bool = False, seg: int = 2,
        kind: str = "gre") -> Network:
    return Network(ident, ident[:8], "p", True, "ACTIVE", False, external, mtu, True, Segment(kind, None, seg),
                   subnets)


def subnet(ident: str, network: str, cidr: str, gateway: str | None, *, dhcp: bool = True) -> Subnet:
    return Subnet(ident, ident[:8], "p", network, 4, ipaddress.ip_network(cidr),
                  None if gateway is None else ipaddress.ip_address(gateway), (), (), (), dhcp, None, None)


def port(ident: str, network: str, mac: str, ips: tuple[tuple[str, str], ...], owner: str, host: str, *,
         device: str = "", sgs: tuple[str, ...] = (), security: bool = True,
         pairs: tuple[AddressPair, ...] = ()) -> Port:
    hybrid = HYBRID if owner.startswith("compute:") else ()
    return Port(ident, "", "p", network, mac, True, "ACTIVE", device, owner,
                tuple(FixedIP(s, ipaddress.ip_address(ip)) for s, ip in ips), sgs, security, pairs, host,
                "ovs" if host else "unbound", hybrid)


def sg_rule(ident: str, sg: str, direction: str, protocol: str | None = None, lo: int | None = None,
            hi: int | None = None, *, ethertype: str = "IPv4", prefix: str | None = None,
            group: str | None = None) -> SecurityGroupRule:
    return SecurityGroupRule(ident, sg, direction, ethertype, protocol, lo, hi,
                             None if prefix is None else ipaddress.ip_network(prefix), group)


def default_rules(sg: str) -> tuple[SecurityGroupRule, ...]:
    """What Neutron puts in every default group: ingress from the group itself, egress to anywhere."""
    return (sg_rule(f"{sg[:8]}-r1", sg, "ingress", group=sg), sg_rule(f"{sg[:8]}-r2", sg, "ingress", ethertype="IPv6",
                                                                     group=sg),
            sg_rule(f"{sg[:8]}-r3", sg, "egress"), sg_rule(f"{sg[:8]}-r4", sg, "egress", ethertype="IPv6"))


def deployment(tenant: str) -> Deployment:
    return Deployment(tenant_network_types=(tenant,), hosts=(
        Host("network", frozenset({"network"})), Host("compute", frozenset({"compute"})),
        Host("compute2", frozenset({"compute"}))))


# seed 000: Grizzly, GRE, one instance, a router with SNAT and one floating IP
S0_NET = "88b1609c-68e0-49ca-a658-f1edff54a264"
S0_SUBNET = "5c2a8ac7-1d0e-4c0a-9a8e-3b5f0e8b6c11"
S0_EXT = "f0a1b2c3-0000-4000-8000-00000000e0e0"
S0_EXT_SUBNET = "e5b9a8f1-7c6d-4e3b-8a2f-1d0c9b8a7e6f"
S0_VM = "7c7ae61e-0512-4d3b-9a61-2f8e4c6d0b17"
S0_DHCP = "f14c598d-9812-4a7e-b0c3-5d6e7f8a9b0c"
S0_ROUTER = "2d214fde-293c-4d64-8062-797f80ae2d8f"
S0_QR = "c2d7dd02-5634-4b8a-9c1d-2e3f4a5b6c7d"
S0_QG = "d48b49e0-aa12-4c3d-8e4f-5a6b7c8d9e0f"
S0_SG = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
S0_FIP = "a9b8c7d6-e5f4-4321-8765-0fedcba98765"


def seed000(*, with_fip: bool = True, extra_rules: tuple[SecurityGroupRule, ...] = (),
            ports: tuple[Port, ...] = ()) -> CloudSnapshot:
    sg = SecurityGroup(S0_SG, "default", "p", True, True, (
        *default_rules(S0_SG), sg_rule("r-icmp", S0_SG, "ingress", "icmp"),
        sg_rule("r-ssh", S0_SG, "ingress", "tcp", 22, 22), sg_rule("r-http", S0_SG, "ingress", "tcp", 80, 80),
        *extra_rules))
    fips = (FloatingIP(S0_FIP, "p", ipaddress.ip_address("172.24.4.228"), S0_EXT, "fip-port", S0_VM,
                       ipaddress.ip_address("10.1.0.2"), S0_ROUTER, "ACTIVE"),) if with_fip else ()
    return CloudSnapshot(
        deployment("gre"),
        networks=(net(S0_NET, 1500, (S0_SUBNET,)), net(S0_EXT, 1500, (S0_EXT_SUBNET,), external=True, seg=3)),
        subnets=(subnet(S0_SUBNET, S0_NET, "10.1.0.0/24", "10.1.0.1"),
                 subnet(S0_EXT_SUBNET, S0_EXT, "172.24.4.224/28", "172.24.4.225", dhcp=False)),
        ports=(port(S0_VM, S0_NET, "fa:16:3e:03:00:e7", ((S0_SUBNET, "10.1.0.2"),), "compute:nova", "compute",
                    sgs=(S0_SG,)),
               port(S0_DHCP, S0_NET, "fa:16:3e:10:2f:03", ((S0_SUBNET, "10.1.0.3"),), "network:dhcp", "network"),
               port(S0_QR, S0_NET, "fa:16:3e:ea:64:6e", ((S0_SUBNET, "10.1.0.1"),), "network:router_interface",
                    "network", device=S0_ROUTER),
               port(S0_QG, S0_EXT, "fa:16:3e:5c:a2:ac", ((S0_EXT_SUBNET, "172.24.4.227"),),
                    "network:router_gateway", "network", device=S0_ROUTER),
               *ports),
        routers=(Router(S0_ROUTER, "router1", "p", True, "ACTIVE", "network",
                        Gateway(S0_EXT, S0_QG, True, (FixedIP(S0_EXT_SUBNET, ipaddress.ip_address("172.24.4.227")),)),
                        (S0_QR,), ()),),
        floating_ips=fips,
        security_groups=(sg,),
    )


# the reference's running example (neutron-dataplane.md, table at the top)
R_NET = "5e6f7a8b-1234-4cde-9abc-def012345678"
R_SUBNET = "c0ffee00-1111-4222-8333-444455556666"
R_EXT = "e0e0e0e0-2222-4333-8444-555566667777"
R_EXT_SUBNET = "e1e1e1e1-2222-4333-8444-555566667777"
R_VM = "3f2a1b7c-d4e5-4f60-8a9b-0c1d2e3f4a5b"
R_VM2 = "4a4a4a4a-0000-4000-8000-000000000006"
R_DHCP = "d1c2b3a4-0000-4000-8000-000000000001"
R_ROUTER = "9c8b7a65-4321-4abc-8def-0123456789ab"
R_QR = "aa00bb11-cc22-4d33-8e44-ff5566778899"
R_QG = "ee11dd22-cc33-4b44-a55a-667788990011"
R_SG = "a1b2c3d4-1111-2222-3333-444455556666"


def reference(*, pairs: tuple[AddressPair, ...] = ()) -> CloudSnapshot:
    sg = SecurityGroup(R_SG, "default", "p", True, True, (
        *default_rules(R_SG), sg_rule("r-ssh", R_SG, "ingress", "tcp", 22, 22, prefix="0.0.0.0/0"),
        sg_rule("r-icmp", R_SG, "ingress", "icmp", prefix="0.0.0.0/0")))
    return CloudSnapshot(
        deployment("vxlan"),
        networks=(net(R_NET, 1450, (R_SUBNET,), kind="vxlan", seg=100), net(R_EXT, 1500, (R_EXT_SUBNET,), external=True,
                                                                             kind="flat")),
        subnets=(subnet(R_SUBNET, R_NET, "10.0.0.0/24", "10.0.0.1"),
                 subnet(R_EXT_SUBNET, R_EXT, "203.0.113.0/24", "203.0.113.1", dhcp=False)),
        ports=(port(R_VM, R_NET, "fa:16:3e:11:22:33", ((R_SUBNET, "10.0.0.5"),), "compute:nova", "compute",
                    sgs=(R_SG,), pairs=pairs),
               port(R_VM2, R_NET, "fa:16:3e:11:22:66", ((R_SUBNET, "10.0.0.6"),), "compute:nova", "compute2",
                    sgs=(R_SG,)),
               port(R_DHCP, R_NET, "fa:16:3e:00:00:02", ((R_SUBNET, "10.0.0.2"),), "network:dhcp", "network"),
               port(R_QR, R_NET, "fa:16:3e:aa:00:01", ((R_SUBNET, "10.0.0.1"),), "network:router_interface",
                    "network", device=R_ROUTER),
               port(R_QG, R_EXT, "fa:16:3e:ee:00:10", ((R_EXT_SUBNET, "203.0.113.10"),), "network:router_gateway",
                    "network", device=R_ROUTER)),
        routers=(Router(R_ROUTER, "R", "p", True, "ACTIVE", "network",
                        Gateway(R_EXT, R_QG, True, (FixedIP(R_EXT_SUBNET, ipaddress.ip_address("203.0.113.10")),)),
                        (R_QR,), ()),),
        floating_ips=(FloatingIP("fip-r", "p", ipaddress.ip_address("203.0.113.20"), R_EXT, "fip-port", R_VM,
                                 ipaddress.ip_address("10.0.0.5"), R_ROUTER, "ACTIVE"),),
        security_groups=(sg,),
    )


def reference_lines(start: str, end: str, *, after: str = "") -> list[str]:
    """The ``-A`` lines of the reference between two markers (the first ``start`` past ``after``),
    whitespace collapsed (§7.2 joins some lines with `` ; ``)."""
    text = REFERENCE.read_text()
    i = text.index(start, text.index(after))
    block = text[i + len(start): text.index(end, i + len(start))]
    out = []
    for line in block.splitlines():
        for part in line.split(" ; "):
            if part.strip().startswith("-A "):
                out.append(" ".join(part.split()))
    return out


def by_chain(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        out.setdefault(line.split()[1], []).append(line)
    return out


def planned_chain(table: Table, chain: str) -> list[str]:
    """A planned chain's rules as ``iptables-save`` lines, whitespace collapsed."""
    return [" ".join(format_rule(r).split()) for r in table.chain(chain).rules]


# --- seed 000, Grizzly ------------------------------------------------------------------------------


def _filter(cloud: CloudSnapshot, host: str = "compute", gen: Generation = Generation.GRIZZLY) -> Table:
    frag = plan_firewall(cloud, host, gen)
    ns = frag.namespace("")
    assert ns is not None and ns.iptables is not None
    return ns.iptables.table(TableName.FILTER)


def test_seed000_grep_tap_lines() -> None:
    """seed 000, ``iptables -S | grep tap7c7ae61e-05``: the five jumps, in the seed's order."""
    seed = excerpt(0, "-A quantum-openvswi-FORWARD -m physdev --physdev-out tap7c7ae61e-05",
                   "-A quantum-openvswi-sg-chain -m physdev --physdev-in tap7c7ae61e-05")
    got = [line for line in format_rules(_filter(seed000())).splitlines() if "tap7c7ae61e-05" in line]
    assert squash("\n".join(got)) == squash(seed)


def test_seed000_o_chain() -> None:
    """seed 000: the o-chain "by default looks like this" (mac check first, inline ``! -s``)."""
    seed = excerpt(0, "-A quantum-openvswi-o7c7ae61e-0 -m mac", "-A quantum-openvswi-o7c7ae61e-0 -j quantum-openvswi-sg-fallback")
    got = format_rules(_filter(seed000()), "quantum-openvswi-o7c7ae61e-0").splitlines()[1:]
    assert squash("\n".join(got)) == squash(seed)


def test_seed000_i_chain() -> None:
    """seed 000: the i-chain after opening port 22 (icmp, 22, 80, then the DHCP server's replies)."""
    seed = excerpt(0, "-A quantum-openvswi-i7c7ae61e-0 -m state --state INVALID",
                   "-A quantum-openvswi-i7c7ae61e-0 -j quantum-openvswi-sg-fallback")
    got = format_rules(_filter(seed000()), "quantum-openvswi-i7c7ae61e-0").splitlines()[1:]
    assert squash("\n".join(got)) == squash(seed)


def test_seed000_save_and_listing_hold_every_line() -> None:
    """The same lines come out of ``iptables-save`` and the ``-nvL`` listing names the chains."""
    table = _filter(seed000())
    save = format_save(Ruleset((table,)))
    for line in excerpt(0, "-A quantum-openvswi-o7c7ae61e-0 -m mac",
                        "-A quantum-openvswi-o7c7ae61e-0 -j quantum-openvswi-sg-fallback").splitlines():
        assert line.strip() in save
    listing = format_listing(table, "quantum-openvswi-o7c7ae61e-0")
    assert "MAC ! FA:16:3E:03:00:E7" in listing and "quantum-openvswi-sg-fallback" in listing


def test_grizzly_skeleton_and_sg_chain() -> None:
    t = _filter(seed000())
    assert planned_chain(t, "FORWARD")[0] == "-A FORWARD -j quantum-filter-top"
    assert planned_chain(t, "quantum-filter-top") == ["-A quantum-filter-top -j quantum-openvswi-local"]
    assert planned_chain(t, "quantum-openvswi-sg-chain")[-1] == "-A quantum-openvswi-sg-chain -j ACCEPT"
    assert planned_chain(t, "quantum-openvswi-sg-fallback") == ["-A quantum-openvswi-sg-fallback -j DROP"]


# --- reference §6.3, modern ------------------------------------------------------------------------


def _modern(cloud: CloudSnapshot) -> Ruleset:
    ns = plan_firewall(cloud, "compute", Generation.MODERN).namespace("")
    assert ns is not None and ns.iptables is not None
    return ns.iptables


def test_reference_6_3_filter() -> None:
    """Reference §6.3, ``*filter (IPv4)``, chain by chain in exact order. The ipset line becomes one
    rule per other member of S (10.0.0.6): no ipset here."""
    expected = reference_lines("*filter (IPv4)\n", "*raw (IPv4 and IPv6 identical)")
    expected = [line.replace("-m set --match-set NIPv4a1b2c3d4-1111-2222-3333- src", "-s 10.0.0.6/32")
                for line in expected]
    table = _modern(reference()).table(TableName.FILTER)
    for chain, lines in by_chain(expected).items():
        assert planned_chain(table, chain) == lines, chain


@pytest.mark.parametrize("table,start,end", [
    (TableName.RAW, "*raw (IPv4 and IPv6 identical)\n", "*nat (IPv4 and IPv6 identical)"),
    (TableName.NAT, "*nat (IPv4 and IPv6 identical)", "```"),
])
def test_reference_6_3_raw_and_nat(table: TableName, start: str, end: str) -> None:
    expected = reference_lines(start, end)
    planned = _modern(reference()).table(table)
    for chain, lines in by_chain(expected).items():
        assert planned_chain(planned, chain) == lines, chain


def test_reference_6_5_address_pair_first() -> None:
    """§6.5: with pair 10.0.0.200 the s-chain allows it first, then 10.0.0.5, then drops."""
    pair = AddressPair(ipaddress.ip_network("10.0.0.200/32"), "fa:16:3e:11:22:33")
    s = planned_chain(_modern(reference(pairs=(pair,))).table(TableName.FILTER), "neutron-openvswi-s3f2a1b7c-d")
    assert [line.split(" -m mac")[0] for line in s[:2]] == [
        "-A neutron-openvswi-s3f2a1b7c-d -s 10.0.0.200/32", "-A neutron-openvswi-s3f2a1b7c-d -s 10.0.0.5/32"]
    assert s[2].endswith("-j DROP")


def test_seed001_o_chain_listing() -> None:
    """seed 001 (Stein), ``iptables -nvL neutron-openvswi-o0db0e25b-0``: a port whose groups have no
    egress rule; rows compared without counters."""
    vm = "0db0e25b-000f-4c1d-9e2f-3a4b5c6d7e8f"
    cloud = seed000(ports=(port(vm, S0_NET, "fa:16:3e:0d:b0:25", ((S0_SUBNET, "10.1.0.9"),), "compute:nova",
                                "compute1", sgs=("ingress-only",)),))
    cloud = replace(cloud, security_groups=(*cloud.security_groups,
                                            SecurityGroup("ingress-only", "x", "p", True, False, ())))
    ns = plan_firewall(cloud, "compute1", Generation.MODERN).namespace("")
    assert ns is not None and ns.iptables is not None
    listing = format_listing(ns.iptables.table(TableName.FILTER), "neutron-openvswi-o0db0e25b-0")
    seed = excerpt(1, "Chain neutron-openvswi-o0db0e25b-0", "Send unmatched traffic to the fallback chain.")

    def rows(text: str) -> list[str]:
        return [" ".join(line.split()[2:]) for line in text.splitlines()[2:]]
    assert rows(listing) == rows(seed)


# --- SG rule translation, §6.4 ------------------------------------------------------------------------


@pytest.mark.parametrize("rule,spec", [
    (sg_rule("a", "g", "ingress", "tcp", 22, 22), "-p tcp -m tcp --dport 22"),
    (sg_rule("a", "g", "ingress", "6", 1000, 2000), "-p tcp -m tcp -m multiport --dports 1000:2000"),
    (sg_rule("a", "g", "ingress", "udplite", 53, 53), "-p udplite -m multiport --dports 53"),
    (sg_rule("a", "g", "ingress", "icmp", 8, 0), "-p icmp -m icmp --icmp-type 8/0"),
    (sg_rule("a", "g", "ingress", "1", 8), "-p icmp -m icmp --icmp-type 8"),
    (sg_rule("a", "g", "ingress", "47"), "-p gre"),
    (sg_rule("a", "g", "ingress", "0"), ""),
    (sg_rule("a", "g", "ingress", "tcp", prefix="10.0.0.0/8"), "-s 10.0.0.0/8 -p tcp"),
    (sg_rule("a", "g", "egress", "udp", 53, 53, prefix="192.0.2.1/32"), "-d 192.0.2.1/32 -p udp -m udp --dport 53"),
    (sg_rule("a", "g", "egress", prefix="0.0.0.0/0"), ""),
], ids=["tcp-port", "number-range", "udplite", "icmp-type-code", "icmp-type", "gre", "any", "ingress-prefix",
        "egress-prefix", "zero-prefix"])
def test_sg_rule_translation(rule: SecurityGroupRule, spec: str) -> None:
    assert sg_rule_spec(rule, profile(Generation.MODERN)) == spec


# --- changes and determinism -----------------------------------------------------------------------


@pytest.mark.parametrize("gen", list(Generation))
def test_deleting_a_sg_rule_equals_never_having_it(gen: Generation) -> None:
    extra = sg_rule("r-dns", S0_SG, "ingress", "udp", 53, 53)
    with_rule = plan_firewall(seed000(extra_rules=(extra,)), "compute", gen)
    without = plan_firewall(seed000(), "compute", gen)
    assert with_rule != without
    a, b = (format_save(ns.iptables) for f in (with_rule, without) if (ns := f.namespace("")) and ns.iptables)
    diff = set(a.splitlines()) ^ set(b.splitlines())
    assert len(diff) == 1 and "--dport 53" in diff.pop()


@pytest.mark.parametrize("gen", list(Generation))
def test_deleting_a_port_equals_never_having_it(gen: Generation) -> None:
    other = port("77777777-0000-4000-8000-000000000007", S0_NET, "fa:16:3e:77:77:77", ((S0_SUBNET, "10.1.0.7"),),
                 "compute:nova", "compute", sgs=(S0_SG,))
    before = plan_firewall(seed000(ports=(other,)), "compute", gen)
    after = plan_firewall(seed000(), "compute", gen)
    assert before != after
    text_after = format_save(after.namespaces[0].iptables)  # type: ignore[arg-type]
    assert "77777777" not in text_after
    # the remaining port lost the remote-group rule for the deleted member, nothing else; its
    # conntrack zone is renumbered (zones follow the ports present, see plan.firewall)
    text_before = format_save(before.namespaces[0].iptables)  # type: ignore[arg-type]
    kept = [re.sub(r"--zone \d+", "--zone N", line) for line in text_before.splitlines()
            if "77777777" not in line and "10.1.0.7" not in line and not line.startswith(":")]
    assert kept == [re.sub(r"--zone \d+", "--zone N", line) for line in text_after.splitlines()
                    if not line.startswith(":")]
    assert plan_firewall(seed000(), "compute", gen) == after  # deleted == never there


def test_deterministic() -> None:
    for gen in Generation:
        assert plan_firewall(reference(), "compute", gen) == plan_firewall(reference(), "compute", gen)
        assert plan_firewall(seed000(), "compute", gen) == plan_firewall(seed000(), "compute", gen)


def test_port_security_off_and_trusted_ports() -> None:
    """§6.6: no per-port chains without port security, ACCEPT rules instead; on the network node
    the DHCP and router ports are trusted."""
    cloud = reference()
    cloud = replace(cloud, ports=tuple(replace(p, port_security_enabled=False) if p.id == R_VM else p
                                       for p in cloud.ports))
    t = _modern(cloud).table(TableName.FILTER)
    assert t.find("neutron-openvswi-i3f2a1b7c-d") is None
    assert planned_chain(t, "neutron-openvswi-FORWARD") == [
        f"-A neutron-openvswi-FORWARD -m physdev --physdev-{w} tap3f2a1b7c-d4 --physdev-is-bridged -m comment "
        '--comment "Accept all packets when port security is disabled." -j ACCEPT' for w in ("out", "in")]
    assert _modern(cloud).table(TableName.RAW).chain("neutron-openvswi-PREROUTING").rules == ()
    net_ns = plan_firewall(reference(), "network", Generation.MODERN).namespace("")
    assert net_ns is not None and net_ns.iptables is not None
    forward = planned_chain(net_ns.iptables.table(TableName.FILTER), "neutron-openvswi-FORWARD")
    assert len(forward) == 6 and all("port is trusted" in line for line in forward)


def test_origins() -> None:
    frag = plan_firewall(seed000(), "compute", Generation.GRIZZLY)
    assert any(o.item == "filter/quantum-openvswi-o7c7ae61e-0" and S0_VM in o.obj for o in frag.origins)
    rules = frag.namespaces[0].iptables.table(TableName.FILTER).chain("quantum-openvswi-i7c7ae61e-0").rules  # type: ignore[union-attr]
    assert any(r.origin == "sg-rule r-ssh via plan_firewall" for r in rules)
    assert all(r.origin for r in rules)


def test_reference_file_is_there() -> None:
    assert Path(REFERENCE).is_file()


def test_other_firewall_driver_plans_nothing() -> None:
    cloud = replace(seed000(), deployment=replace(seed000().deployment, firewall_driver="openvswitch"))
    assert plan_firewall(cloud, "compute").namespaces == ()
