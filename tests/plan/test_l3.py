"""plan_l3 against seed 000 (Grizzly nat table, addresses, routes), seed 001 (Stein nat listing)
and reference §7 (modern tables). The clouds come from test_firewall's builders."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

import pytest

from neutrino.host.iproute_link import format_ip_addr
from neutrino.host.iproute_route import format_ip_route
from neutrino.host.iptables import Table, TableName, format_rules, format_save
from neutrino.host.iptables_listing import format_listing
from neutrino.host.state import HostState, NamespaceState
from neutrino.plan.generation import Generation
from neutrino.plan.l3 import plan_l3
from neutrino.services.snapshot import (
    CloudSnapshot,
    FixedIP,
    FloatingIP,
    Gateway,
    HostRoute,
    Router,
)
from seeds import excerpt, squash
from tests.plan.test_firewall import (
    R_ROUTER,
    S0_EXT,
    S0_NET,
    S0_ROUTER,
    S0_SUBNET,
    by_chain,
    net,
    planned_chain,
    port,
    reference,
    reference_lines,
    seed000,
    subnet,
)

QROUTER0 = f"qrouter-{S0_ROUTER}"


def router_ns(frag: HostState, router: str) -> NamespaceState:
    ns = frag.namespace(f"qrouter-{router}")
    assert ns is not None
    return ns


def table(frag: HostState, router: str, name: TableName) -> Table:
    ns = router_ns(frag, router)
    assert ns.iptables is not None
    return ns.iptables.table(name)


# --- seed 000 --------------------------------------------------------------------------------------


def test_seed000_nat_S_is_exact() -> None:
    """seed 000, ``ip netns exec qrouter-… iptables -t nat -S``: the whole output, whitespace aside."""
    seed = excerpt(0, "-P PREROUTING ACCEPT", "-A quantum-postrouting-bottom -j quantum-l3-agent-snat")
    got = format_rules(table(plan_l3(seed000(), "network", Generation.GRIZZLY), S0_ROUTER, TableName.NAT))
    assert [line.strip() for line in got.splitlines()] == [line.strip() for line in seed.splitlines()]


def test_seed000_nat_in_save_form() -> None:
    frag = plan_l3(seed000(), "network", Generation.GRIZZLY)
    ns = router_ns(frag, S0_ROUTER)
    assert ns.iptables is not None
    save = format_save(ns.iptables)
    for line in excerpt(0, "-A PREROUTING -j quantum-l3-agent-PREROUTING",
                        "-A quantum-postrouting-bottom -j quantum-l3-agent-snat").splitlines():
        assert line.strip() in save


def test_seed000_ip_addr() -> None:
    """seed 000, ``ip netns exec qrouter-… ip addr``: the qg- and qr- devices and their IPv4
    addresses (the kernel's index and IPv6 link-local lines aside)."""
    seed = excerpt(0, "66: qg-d48b49e0-aa:", "inet 10.1.0.1/24 brd 10.1.0.255 scope global qr-c2d7dd02-56")
    got = format_ip_addr(router_ns(plan_l3(seed000(), "network", Generation.GRIZZLY), S0_ROUTER).links or ())

    def body(text: str) -> list[str]:
        lines = [re.sub(r"^\d+: ", "", line) for line in text.splitlines()
                 if "inet6" not in line and "valid_lft" not in line]
        return [squash(line) for line in lines]
    assert body(got) == body(seed)


def test_seed000_ip_route() -> None:
    """seed 000, ``ip netns exec qrouter-… ip route``, exact (old kernel's order, old spacing)."""
    seed = excerpt(0, "172.24.4.224/28 dev qg-d48b49e0-aa", "default via 172.24.4.225 dev qg-d48b49e0-aa")
    got = format_ip_route(router_ns(plan_l3(seed000(), "network", Generation.GRIZZLY), S0_ROUTER).routes or ())
    assert [line.rstrip() for line in got.splitlines()] == [line.rstrip() for line in seed.splitlines()]


def test_seed000_grizzly_extras() -> None:
    frag = plan_l3(seed000(), "network", Generation.GRIZZLY)
    ns = router_ns(frag, S0_ROUTER)
    assert [(s.key, s.value) for s in ns.sysctls or ()] == [("net.ipv4.ip_forward", "1")]
    assert planned_chain(table(frag, S0_ROUTER, TableName.FILTER), "quantum-l3-agent-INPUT") == [
        "-A quantum-l3-agent-INPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 9697 -j ACCEPT"]
    root = frag.namespace("")
    assert root is not None and [lk.name for lk in root.links or ()] == ["tapd48b49e0-aa", "tapc2d7dd02-56"]
    assert frag.files == ()  # Grizzly's metadata proxy was not haproxy


# --- reference §7, modern --------------------------------------------------------------------------


@pytest.mark.parametrize("name,start,end", [
    (TableName.NAT, "*nat (IPv4)\n", "*mangle (IPv4)"),
    (TableName.MANGLE, "*mangle (IPv4)", "*filter (IPv4)\n"),
    (TableName.FILTER, "*filter (IPv4)\n", "*raw: only"),
])
def test_reference_7_2(name: TableName, start: str, end: str) -> None:
    """Reference §7.2, chain by chain in exact order (the agent's first pass: DNAT before REDIRECT)."""
    expected = by_chain(reference_lines(start, end, after="### 7.2"))
    got = table(plan_l3(reference(), "network", Generation.MODERN, first_pass=True), R_ROUTER, name)
    for chain, lines in expected.items():
        assert planned_chain(got, chain) == lines, chain
    if name is TableName.MANGLE:  # "built-ins … each jump to their wrapped twin", in prose
        for builtin in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"):
            assert planned_chain(got, builtin) == [f"-A {builtin} -j neutron-l3-agent-{builtin}"]
            expected[builtin] = []
    assert {c.name for c in got.chains if c.rules} <= set(expected)


def test_reference_7_2_raw_and_empty_chains() -> None:
    frag = plan_l3(reference(), "network", Generation.MODERN)
    raw = table(frag, R_ROUTER, TableName.RAW)
    assert planned_chain(raw, "PREROUTING") == ["-A PREROUTING -j neutron-l3-agent-PREROUTING"]
    assert raw.chain("neutron-l3-agent-PREROUTING").rules == ()
    assert table(frag, R_ROUTER, TableName.MANGLE).chain("neutron-l3-agent-floatingip").rules == ()


def test_steady_state_puts_redirect_first() -> None:
    got = planned_chain(table(plan_l3(reference(), "network"), R_ROUTER, TableName.NAT),
                        "neutron-l3-agent-PREROUTING")
    assert "REDIRECT" in got[0] and "DNAT" in got[1]


def test_reference_7_1_namespace() -> None:
    ns = router_ns(plan_l3(reference(), "network"), R_ROUTER)
    assert [(s.key, s.value) for s in ns.sysctls or ()] == [
        ("net.netfilter.nf_conntrack_tcp_be_liberal", "1"), ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.arp_ignore", "1"), ("net.ipv4.conf.all.arp_announce", "2")]
    links = {lk.name: lk for lk in ns.links or ()}
    assert [str(a.interface) for a in links["qr-aa00bb11-cc"].addresses] == ["10.0.0.1/24"]
    assert [str(a.interface) for a in links["qg-ee11dd22-cc"].addresses] == ["203.0.113.10/24", "203.0.113.20/32"]
    assert links["qr-aa00bb11-cc"].mtu == 1450 and links["qg-ee11dd22-cc"].mtu == 1500
    assert format_ip_route(ns.routes or ()).splitlines() == [
        "default via 203.0.113.1 dev qg-ee11dd22-cc ",
        "10.0.0.0/24 dev qr-aa00bb11-cc proto kernel scope link src 10.0.0.1 ",
        "203.0.113.0/24 dev qg-ee11dd22-cc proto kernel scope link src 203.0.113.10 "]


def test_reference_7_4_metadata_proxy_file() -> None:
    frag = plan_l3(reference(), "network")
    f = frag.file(f"/var/lib/neutron/ns-metadata-proxy/{R_ROUTER}.conf")
    assert f is not None
    for needle in ("bind 0.0.0.0:9697", "server metadata /var/lib/neutron/metadata_proxy",
                   "http-request del-header X-Neutron-Network-ID",
                   f"http-request set-header X-Neutron-Router-ID {R_ROUTER}",
                   f"log-tag     haproxy-metadata-proxy-{R_ROUTER}", "maxconn     1024"):
        assert needle in f.text


# --- seed 001, Stein: iptables -t nat -nvL ------------------------------------------------------------

S1_FIPS = (("192.168.100.41", "10.11.11.81"), ("192.168.100.63", "10.11.11.63"), ("192.168.100.16", "10.11.11.25"),
           ("192.168.100.237", "10.11.11.66"), ("192.168.100.131", "10.11.11.210"),
           ("192.168.100.239", "10.11.11.30"), ("192.168.100.33", "10.11.11.118"), ("192.168.100.43", "10.11.11.148"))
S1_ROUTER = "be384c66-1834-4265-8f8a-9c85c016ee79"


def seed001() -> CloudSnapshot:
    ext, ext_sub, tnet, tsub = "e-001", "es-001", "n-001", "s-001"
    qg = "77688753-4e00-4000-8000-000000000001"
    qr = "42ff6e11-9f00-4000-8000-000000000002"
    fips = tuple(FloatingIP(f"fip-{i}", "p", ipaddress.ip_address(f), ext, f"fp-{i}", f"vm-{i}",
                            ipaddress.ip_address(x), S1_ROUTER, "ACTIVE") for i, (f, x) in enumerate(S1_FIPS))
    base = seed000()
    return replace(
        base, networks=(net(ext, 1500, (ext_sub,), external=True), net(tnet, 1450, (tsub,))),
        subnets=(subnet(ext_sub, ext, "192.168.100.0/24", "192.168.100.1", dhcp=False),
                 subnet(tsub, tnet, "10.11.11.0/24", "10.11.11.1")),
        ports=(port(qg, ext, "fa:16:3e:14:8b:f2", ((ext_sub, "192.168.100.18"),), "network:router_gateway",
                    "controller", device=S1_ROUTER),
               port(qr, tnet, "fa:16:3e:b0:d3:a3", ((tsub, "10.11.11.1"),), "network:router_interface", "controller",
                    device=S1_ROUTER)),
        routers=(Router(S1_ROUTER, "r", "p", True, "ACTIVE", "controller",
                        Gateway(ext, qg, True, (FixedIP(ext_sub, ipaddress.ip_address("192.168.100.18")),)), (qr,),
                        ()),),
        floating_ips=fips, security_groups=())


def test_seed001_nat_listing() -> None:
    """seed 001, ``iptables -t nat -nvL`` in qrouter-be384c66-…: every chain and row, counters aside,
    with ``random_fully=False`` (that host's agent did not use --random-fully)."""
    got = format_listing(table(plan_l3(seed001(), "controller", random_fully=False), S1_ROUTER, TableName.NAT))
    seed = excerpt(1, "Chain PREROUTING (policy ACCEPT 53108 packets", "/* Perform source NAT on outgoing traffic. */")

    def rows(text: str) -> list[str]:
        out = []
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("Chain "):
                out.append(re.sub(r"\(policy (\w+) .*\)", r"(policy \1)", line))
            elif line.lstrip().startswith("pkts"):
                out.append(" ".join(line.split()))
            else:
                out.append(" ".join(line.split()[2:]))
        return out
    assert rows(got) == rows(seed)


# --- changes and determinism -----------------------------------------------------------------------


@pytest.mark.parametrize("gen", list(Generation))
def test_deleting_the_floating_ip(gen: Generation) -> None:
    """Without the floating IP: no DNAT/float-snat rules, no /32 on qg-; everything else the same,
    and the same as a cloud that never had it."""
    with_fip = plan_l3(seed000(), "network", gen)
    without = plan_l3(seed000(with_fip=False), "network", gen)
    a, b = router_ns(with_fip, S0_ROUTER), router_ns(without, S0_ROUTER)
    assert a.iptables is not None and b.iptables is not None
    gone = set(format_save(a.iptables).splitlines()) - set(format_save(b.iptables).splitlines())
    assert gone and all("172.24.4.228" in line for line in gone)
    assert set(format_save(b.iptables).splitlines()) <= set(format_save(a.iptables).splitlines())
    qg_a = next(lk for lk in a.links or () if lk.name.startswith("qg-"))
    qg_b = next(lk for lk in b.links or () if lk.name.startswith("qg-"))
    assert [str(x.interface) for x in qg_a.addresses] == ["172.24.4.227/28", "172.24.4.228/32"]
    assert [str(x.interface) for x in qg_b.addresses] == ["172.24.4.227/28"]
    assert a.routes == b.routes and a.sysctls == b.sysctls
    unassociated = replace(seed000(), floating_ips=tuple(replace(f, port_id=None, fixed_ip_address=None)
                                                        for f in seed000().floating_ips))
    assert plan_l3(unassociated, "network", gen) == without


def test_router_elsewhere_and_extra_routes() -> None:
    assert plan_l3(seed000(), "compute").namespaces == ()
    routed = replace(seed000(), routers=tuple(
        replace(r, routes=(HostRoute(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_address("10.1.0.254")),))
        for r in seed000().routers))
    routes = format_ip_route(router_ns(plan_l3(routed, "network"), S0_ROUTER).routes or ())
    assert "192.0.2.0/24 via 10.1.0.254 dev qr-c2d7dd02-56 \n" in routes


def test_deterministic() -> None:
    for gen in Generation:
        assert plan_l3(seed000(), "network", gen) == plan_l3(seed000(), "network", gen)
        assert plan_l3(reference(), "network", gen) == plan_l3(reference(), "network", gen)


def test_origins() -> None:
    frag = plan_l3(seed000(), "network", Generation.GRIZZLY)
    assert any(o.kind == "namespace" and o.item == QROUTER0 for o in frag.origins)
    assert any(o.item == f"{QROUTER0}:nat/quantum-l3-agent-float-snat" for o in frag.origins)
    fsnat = table(frag, S0_ROUTER, TableName.NAT).chain("quantum-l3-agent-float-snat").rules
    assert fsnat[0].origin == "floatingip a9b8c7d6-e5f4-4321-8765-0fedcba98765 via plan_l3"
    assert S0_NET and S0_SUBNET and S0_EXT  # the seed's ids are the fixture's
