"""netfilter and conntrack over the seeds' rulesets: security groups (seed 000, reference 6.3), the
legacy router's NAT (seed 000, reference 7.2), nova-network (seed 004), and conntrack's states."""

from __future__ import annotations

import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from neutrino.host.iptables import (
    Ruleset,
    Table,
    TableName,
    format_rule,
    parse_rules,
    parse_save,
    split_run_together,
)
from neutrino.sim.conntrack import Conntrack, CtState, Direction, packet_tuple
from neutrino.sim.netfilter import (
    FORWARD_PATH,
    LOCAL_IN_PATH,
    LOCAL_OUT_PATH,
    Hook,
    HookCtx,
    HookResult,
    IpSet,
    Netfilter,
    NfVerdict,
    UnsupportedRule,
)
from neutrino.sim.packets import ICMP, TCP, UDP, IPv4, Raw, TCPFlag, icmp_error, ip, mac
from neutrino.sim.trace import StepKind
from seeds import between, excerpt
from tests.reference import REFERENCE  # noqa: E402

SYN, ACK = TCPFlag.SYN, TCPFlag.ACK


def tcp(src: str, dst: str, sport: int, dport: int, flags: TCPFlag = SYN) -> IPv4:
    return IPv4(src=ip(src), dst=ip(dst), payload=TCP(sport=sport, dport=dport, flags=flags))


def udp(src: str, dst: str, sport: int, dport: int) -> IPv4:
    return IPv4(src=ip(src), dst=ip(dst), payload=UDP(sport=sport, dport=dport))


def ping(src: str, dst: str, *, id: int = 7, reply: bool = False) -> IPv4:
    return IPv4(src=ip(src), dst=ip(dst), payload=ICMP(type=0 if reply else 8, id=id, seq=1))


def rules_of(res: HookResult) -> list[str]:
    return [s.text for s in res.steps if s.kind is StepKind.RULE]


def decided(res: HookResult) -> str:
    """The deciding rule's text ("" when a policy or nothing decided)."""
    return format_rule(res.rule) if res.rule is not None else ""


def table(text: str, name: TableName = TableName.FILTER) -> Table:
    reading = parse_rules(text, table=name, partial=True)
    assert reading.problems == ()
    return reading.value


# ------------------------------------------------------------------------ seed 000: compute host

TAP, QVB, QBR = "tap7c7ae61e-05", "qvb7c7ae61e-05", "qbr7c7ae61e-05"
VM_MAC = mac("fa:16:3e:03:00:e7")


def seed000_compute() -> Ruleset:
    glue = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n" \
           "-A FORWARD -j quantum-openvswi-FORWARD\n-A INPUT -j quantum-openvswi-INPUT\n"
    grep = excerpt(0, "-A quantum-openvswi-FORWARD -m physdev --physdev-out tap7c7ae61e-05",
                   "-A quantum-openvswi-sg-chain -m physdev --physdev-in tap7c7ae61e-05")
    o_chain = excerpt(0, "-A quantum-openvswi-o7c7ae61e-0 -m mac", "-j quantum-openvswi-sg-fallback")
    i_chain = excerpt(0, "-A quantum-openvswi-i7c7ae61e-0 -m state --state INVALID",
                      "-A quantum-openvswi-i7c7ae61e-0 -j quantum-openvswi-sg-fallback")
    tail = "-A quantum-openvswi-sg-chain -j ACCEPT\n-A quantum-openvswi-sg-fallback -j DROP\n"
    filt = table(glue + grep + o_chain + i_chain + tail)
    # the planner would put the OpenStack object in the origin
    fallback = filt.chain("quantum-openvswi-sg-fallback")
    filt = filt.with_chain(replace(fallback, rules=(replace(fallback.rules[0], origin="port 7c7ae61e-05"),)))
    return Ruleset((filt,))


INGRESS = HookCtx(in_dev=QBR, out_dev=QBR, physdev_in=QVB, physdev_out=TAP, src_mac=mac("fa:16:3e:00:00:99"))
EGRESS = HookCtx(in_dev=QBR, out_dev=QBR, physdev_in=TAP, physdev_out=QVB, src_mac=VM_MAC)


@pytest.fixture
def compute() -> Netfilter:
    return Netfilter(seed000_compute(), Conntrack())


@pytest.mark.parametrize("dport", [22, 80])
def test_000_ingress_allowed_ports(compute: Netfilter, dport: int) -> None:
    res = compute.traverse(FORWARD_PATH, tcp("10.1.0.5", "10.1.0.2", 40000, dport), INGRESS)
    assert res.accepted and res.state is CtState.NEW
    assert f"-A quantum-openvswi-i7c7ae61e-0 -p tcp -m tcp --dport {dport} -j RETURN" in rules_of(res)
    assert rules_of(res)[:3] == [
        "-A FORWARD -j quantum-openvswi-FORWARD",
        "-A quantum-openvswi-FORWARD -m physdev --physdev-out tap7c7ae61e-05 --physdev-is-bridged "
        "-j quantum-openvswi-sg-chain",
        "-A quantum-openvswi-sg-chain -m physdev --physdev-out tap7c7ae61e-05 --physdev-is-bridged "
        "-j quantum-openvswi-i7c7ae61e-0"]
    assert res.rule is not None and format_rule(res.rule) == "-A quantum-openvswi-sg-chain -j ACCEPT"


def test_000_ingress_telnet_dropped_at_fallback(compute: Netfilter) -> None:
    res = compute.traverse(FORWARD_PATH, tcp("10.1.0.5", "10.1.0.2", 40000, 23), INGRESS)
    assert res.verdict is NfVerdict.DROP
    assert res.rule is not None and format_rule(res.rule) == "-A quantum-openvswi-sg-fallback -j DROP"
    assert res.obj == "port 7c7ae61e-05"
    drop = res.steps[-1]
    assert drop.kind is StepKind.DROP and drop.text == "-A quantum-openvswi-sg-fallback -j DROP"
    assert drop.obj == "port 7c7ae61e-05"
    assert rules_of(res)[-2:] == ["-A quantum-openvswi-i7c7ae61e-0 -j quantum-openvswi-sg-fallback",
                                  "-A quantum-openvswi-sg-fallback -j DROP"]
    assert len(compute.conntrack) == 0  # dropped before confirmation: no entry


def test_000_icmp_allowed_and_reply_established(compute: Netfilter) -> None:
    res = compute.traverse(FORWARD_PATH, ping("10.1.0.5", "10.1.0.2"), INGRESS)
    assert res.accepted
    assert "-A quantum-openvswi-i7c7ae61e-0 -p icmp -j RETURN" in rules_of(res)
    back = compute.traverse(FORWARD_PATH, ping("10.1.0.2", "10.1.0.5", reply=True), EGRESS)
    assert back.accepted and back.state is CtState.ESTABLISHED


def test_000_reply_of_allowed_connection_is_established(compute: Netfilter) -> None:
    assert compute.traverse(FORWARD_PATH, tcp("10.1.0.5", "10.1.0.2", 40000, 22), INGRESS).accepted
    res = compute.traverse(FORWARD_PATH, tcp("10.1.0.2", "10.1.0.5", 22, 40000, SYN | ACK), EGRESS)
    assert res.accepted and res.state is CtState.ESTABLISHED
    assert "-A quantum-openvswi-o7c7ae61e-0 -m state --state RELATED,ESTABLISHED -j RETURN" in rules_of(res)
    more = compute.traverse(FORWARD_PATH, tcp("10.1.0.5", "10.1.0.2", 40000, 22, ACK), INGRESS)
    assert more.state is CtState.ESTABLISHED
    assert "-A quantum-openvswi-i7c7ae61e-0 -m state --state RELATED,ESTABLISHED -j RETURN" in rules_of(more)


def test_000_anti_spoofing(compute: Netfilter) -> None:
    spoofed_ip = compute.traverse(FORWARD_PATH, udp("10.1.0.9", "10.1.0.5", 1000, 53), EGRESS)
    assert spoofed_ip.verdict is NfVerdict.DROP
    assert decided(spoofed_ip) == "-A quantum-openvswi-o7c7ae61e-0 ! -s 10.1.0.2/32 -j DROP"
    spoofed_mac = compute.traverse(FORWARD_PATH, udp("10.1.0.2", "10.1.0.5", 1000, 53),
                                   replace(EGRESS, src_mac=mac("fa:16:3e:de:ad:00")))
    assert spoofed_mac.verdict is NfVerdict.DROP
    assert decided(spoofed_mac) == \
        "-A quantum-openvswi-o7c7ae61e-0 -m mac ! --mac-source FA:16:3E:03:00:E7 -j DROP"
    rogue_dhcp = compute.traverse(FORWARD_PATH, udp("10.1.0.2", "10.1.0.255", 67, 68), EGRESS)
    assert rogue_dhcp.verdict is NfVerdict.DROP
    assert compute.traverse(FORWARD_PATH, udp("10.1.0.2", "10.1.0.5", 1000, 53), EGRESS).accepted


def test_000_dhcp_from_the_server(compute: Netfilter) -> None:
    res = compute.traverse(FORWARD_PATH, udp("10.1.0.3", "10.1.0.2", 67, 68), INGRESS)
    assert res.accepted
    assert "-A quantum-openvswi-i7c7ae61e-0 -s 10.1.0.3/32 -p udp -m udp --sport 67 --dport 68 -j RETURN" \
        in rules_of(res)
    other = compute.traverse(FORWARD_PATH, udp("10.1.0.4", "10.1.0.2", 67, 68), INGRESS)
    assert other.verdict is NfVerdict.DROP


def test_000_vm_to_host_goes_through_the_o_chain(compute: Netfilter) -> None:
    res = compute.traverse(LOCAL_IN_PATH, udp("10.1.0.9", "10.1.0.1", 1000, 53), EGRESS)
    assert res.verdict is NfVerdict.DROP
    assert rules_of(res)[0] == "-A INPUT -j quantum-openvswi-INPUT"


# -------------------------------------------------------------------------- seed 000: the router

QG, QR = "qg-d48b49e0-aa", "qr-c2d7dd02-56"
ROUTER_ADDRS = ((QG, ip("172.24.4.227")), (QR, ip("10.1.0.1")))


def seed000_router() -> Netfilter:
    nat = table(excerpt(0, "-P PREROUTING ACCEPT", "-A quantum-postrouting-bottom -j quantum-l3-agent-snat"),
                TableName.NAT)
    return Netfilter(Ruleset((nat,)), Conntrack())


def router_ctx(in_dev: str | None, out_dev: str | None) -> HookCtx:
    return HookCtx(in_dev=in_dev, out_dev=out_dev, dev_addrs=ROUTER_ADDRS,
                   local_addrs=frozenset({ip("172.24.4.227"), ip("172.24.4.228"), ip("10.1.0.1")}))


def test_000_floating_ip_dnat_and_reply() -> None:
    nf = seed000_router()
    res = nf.traverse(FORWARD_PATH, tcp("172.24.4.1", "172.24.4.228", 50000, 22), router_ctx(QG, QR))
    assert res.accepted and res.packet.dst == ip("10.1.0.2")
    assert "-A quantum-l3-agent-PREROUTING -d 172.24.4.228/32 -j DNAT --to-destination 10.1.0.2" in rules_of(res)
    nat_steps = [s.text for s in res.steps if s.kind is StepKind.NAT]
    assert nat_steps == ["DNAT 172.24.4.228:22 -> 10.1.0.2:22"]
    reply = nf.traverse(FORWARD_PATH, tcp("10.1.0.2", "172.24.4.1", 22, 50000, SYN | ACK), router_ctx(QR, QG))
    assert reply.accepted and reply.state is CtState.ESTABLISHED
    assert reply.packet.src == ip("172.24.4.228") and reply.packet.dst == ip("172.24.4.1")
    assert rules_of(reply) == []  # nat runs once per connection; there is no filter table
    assert [s.text for s in reply.steps if s.kind is StepKind.NAT] == ["un-DNAT 10.1.0.2:22 -> 172.24.4.228:22"]


def test_000_outbound_snat_and_float_snat() -> None:
    nf = seed000_router()
    out = nf.traverse(FORWARD_PATH, udp("10.1.0.5", "8.8.8.8", 5353, 53), router_ctx(QR, QG))
    assert out.packet.src == ip("172.24.4.227")
    assert "-A quantum-l3-agent-snat -s 10.1.0.0/24 -j SNAT --to-source 172.24.4.227" in rules_of(out)
    back = nf.traverse(FORWARD_PATH, udp("8.8.8.8", "172.24.4.227", 53, 5353), router_ctx(QG, QR))
    assert back.packet.dst == ip("10.1.0.5") and back.state is CtState.ESTABLISHED
    fip = nf.traverse(FORWARD_PATH, udp("10.1.0.2", "8.8.8.8", 5353, 53), router_ctx(QR, QG))
    assert fip.packet.src == ip("172.24.4.228")
    assert "-A quantum-l3-agent-float-snat -s 10.1.0.2/32 -j SNAT --to-source 172.24.4.228" in rules_of(fip)


def test_000_east_west_is_not_snated() -> None:
    nf = seed000_router()
    res = nf.traverse(FORWARD_PATH, udp("10.1.0.5", "10.1.0.6", 1, 2), router_ctx(QR, QR))
    assert res.packet.src == ip("10.1.0.5")
    assert rules_of(res)[-1] == ("-A quantum-l3-agent-POSTROUTING ! -i qg-d48b49e0-aa ! -o qg-d48b49e0-aa "
                                 "-m conntrack ! --ctstate DNAT -j ACCEPT")


def test_000_metadata_redirect() -> None:
    nf = seed000_router()
    res = nf.traverse(LOCAL_IN_PATH, tcp("10.1.0.2", "169.254.169.254", 41000, 80), router_ctx(QR, None))
    assert res.accepted
    assert (res.packet.dst, res.packet.payload.dport) == (ip("10.1.0.1"), 9697)  # type: ignore[union-attr]
    assert len(nf.conntrack) == 1  # confirmed at INPUT
    reply = nf.traverse(LOCAL_OUT_PATH, tcp("10.1.0.1", "10.1.0.2", 9697, 41000, SYN | ACK), router_ctx(None, QR))
    assert (reply.packet.src, reply.packet.payload.sport) == (ip("169.254.169.254"), 80)  # type: ignore[union-attr]


# ------------------------------------------------------------------------- seed 004: nova-network


def seed004(occurrence: int, name: TableName) -> Table:
    raw = between(4, "-S-P", "\n", occurrence=occurrence)[2:]
    return table(split_run_together(raw), name)


def test_004_compute_ping_from_host_is_dropped_at_sg_fallback() -> None:
    nf = Netfilter(Ruleset((seed004(2, TableName.FILTER),)), Conntrack())
    ctx = HookCtx(out_dev="eth1", local_addrs=frozenset({ip("192.168.56.202")}))
    res = nf.traverse(LOCAL_OUT_PATH, ping("192.168.56.202", "10.0.0.2"), ctx)
    assert res.verdict is NfVerdict.DROP
    assert res.rule is not None and format_rule(res.rule) == "-A nova-compute-sg-fallback -j DROP"
    seed_path = split_run_together(between(4, "-A\u00a0OUTPUT\u00a0-j\u00a0nova-filter-top-A\u00a0nova-filter-top", "\n")).splitlines()
    fired = rules_of(res)
    assert [line for line in fired if line in seed_path] == seed_path  # the seed's path, in order
    assert set(fired) - set(seed_path) == {"-A nova-compute-inst-9 -j nova-compute-provider"}  # empty chain


def test_004_compute_forwarded_ping_accepted() -> None:
    nf = Netfilter(Ruleset((seed004(2, TableName.FILTER),)), Conntrack())
    ctx = HookCtx(in_dev="br100", out_dev="br100", physdev_in="eth2", physdev_out="vnet0")
    res = nf.traverse(FORWARD_PATH, ping("10.0.0.1", "10.0.0.2", id=4654), ctx)
    assert res.accepted
    seed_path = split_run_together(
        between(4, "-A\u00a0FORWARD\u00a0-j\u00a0nova-filter-top-A\u00a0nova-filter-top", "\n")).splitlines()
    fired = rules_of(res)
    assert [line for line in fired if line in seed_path] == seed_path
    assert set(fired) - set(seed_path) == {"-A nova-compute-inst-9 -j nova-compute-provider"}
    assert decided(res) == "-A nova-compute-inst-9 -s 10.0.0.0/24 -j ACCEPT"


def controller() -> Netfilter:
    rs = Ruleset((seed004(0, TableName.FILTER), seed004(1, TableName.NAT)))
    return Netfilter(rs, Conntrack())


CONTROLLER = HookCtx(in_dev="br100", dev_addrs=(("br100", ip("10.0.0.1")), ("eth1", ip("192.168.56.200"))),
                     local_addrs=frozenset({ip("10.0.0.1"), ip("192.168.56.200")}))


def test_004_controller_metadata_dnat() -> None:
    nf = controller()
    res = nf.traverse(LOCAL_IN_PATH, tcp("10.0.0.2", "169.254.169.254", 42000, 80), CONTROLLER)
    assert res.accepted
    assert (res.packet.dst, res.packet.payload.dport) == (ip("192.168.56.200"), 8775)  # type: ignore[union-attr]
    assert ("-A nova-network-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80 "
            "-j DNAT --to-destination 192.168.56.200:8775") in rules_of(res)
    assert decided(res) == "-A nova-api-INPUT -d 192.168.56.200/32 -p tcp -m tcp --dport 8775 -j ACCEPT"


@pytest.mark.parametrize(("dst", "snat"), [("8.8.8.8", True), ("10.0.0.3", False), ("192.168.56.200", False),
                                           ("10.128.0.7", False)], ids=["internet", "fixed", "host", "dmz"])
def test_004_controller_snat_except_local_and_dmz(dst: str, snat: bool) -> None:
    nf = controller()
    out = "br100" if dst.startswith("10.0.0.") else "eth1"
    res = nf.traverse(FORWARD_PATH, udp("10.0.0.2", dst, 3000, 53), replace(CONTROLLER, out_dev=out))
    assert res.accepted
    assert res.packet.src == (ip("192.168.56.200") if snat else ip("10.0.0.2"))
    if snat:
        assert "-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200" in rules_of(res)


# ------------------------------------------------------------------ reference 6.3 and 7.2 rulesets


def reference_tables(title: str, glue: dict[str, str]) -> Ruleset:
    text = REFERENCE.read_text()
    start = text.index(title)
    block = text[text.index("```", start) + 3:text.index("```", text.index("```", start) + 3)]
    lines: dict[str, list[str]] = {}
    current = ""
    for line in block.splitlines():
        if line.startswith("*"):
            current = line[1:].split()[0]
        elif line.startswith("-A ") and current in ("filter", "nat", "raw", "mangle"):
            lines.setdefault(current, []).extend(part.strip() for part in line.split(" ; "))
    return Ruleset(tuple(table(glue.get(name, "") + "\n".join(rules) + "\n", TableName(name))
                         for name, rules in lines.items()))


PORT_TAP, PORT_QVB, PORT_MAC = "tap3f2a1b7c-d4", "qvb3f2a1b7c-d4", mac("fa:16:3e:11:22:33")
SG_SET = IpSet("NIPv4a1b2c3d4-1111-2222-3333-", frozenset({IPv4Network("10.0.0.5/32"), IPv4Network("10.0.0.6/32")}))
P_IN = HookCtx(in_dev="qbr3f2a1b7c-d4", out_dev="qbr3f2a1b7c-d4", physdev_in=PORT_QVB, physdev_out=PORT_TAP,
               src_mac=mac("fa:16:3e:00:00:06"), ipsets=(SG_SET,))


def reference_6_3() -> Netfilter:
    glue = {"filter": "-N neutron-openvswi-OUTPUT\n-N neutron-openvswi-local\n", "raw": "-N neutron-openvswi-OUTPUT\n"}
    return Netfilter(reference_tables("### 6.3 Full ruleset for P", glue), Conntrack())


def test_6_3_zone_ipset_and_fallback() -> None:
    nf = reference_6_3()
    nf.compile_all()
    res = nf.traverse(FORWARD_PATH, tcp("10.0.0.6", "10.0.0.5", 1234, 443), P_IN)
    assert res.accepted and res.ct is not None and res.ct.zone == 4097
    assert ("-A neutron-openvswi-i3f2a1b7c-d -m set --match-set NIPv4a1b2c3d4-1111-2222-3333- src -j RETURN"
            in rules_of(res))
    assert any(s.kind is StepKind.CONNTRACK and s.text == "ct state NEW zone 4097" for s in res.steps)
    # without the set's members the rule cannot match: noted, and the packet falls back
    res = nf.traverse(FORWARD_PATH, tcp("10.0.0.6", "10.0.0.5", 1235, 443), replace(P_IN, ipsets=()))
    assert res.verdict is NfVerdict.DROP and "ipset NIPv4a1b2c3d4-1111-2222-3333- unknown" in res.notes[0]
    assert res.steps[-1].text == ('-A neutron-openvswi-sg-fallback -m comment --comment '
                                  '"Default drop rule for unmatched traffic." -j DROP')


def test_6_3_egress_spoof_chain_and_ssh() -> None:
    nf = reference_6_3()
    egress = HookCtx(in_dev="qbr3f2a1b7c-d4", out_dev="qbr3f2a1b7c-d4", physdev_in=PORT_TAP,
                     physdev_out=PORT_QVB, src_mac=PORT_MAC)
    assert nf.traverse(FORWARD_PATH, tcp("10.0.0.5", "192.0.2.1", 5000, 443), egress).accepted
    bad = nf.traverse(FORWARD_PATH, tcp("10.0.0.99", "192.0.2.1", 5000, 443), egress)
    assert bad.verdict is NfVerdict.DROP and bad.steps[-1].text.startswith("-A neutron-openvswi-s3f2a1b7c-d -m comment")
    ssh = nf.traverse(FORWARD_PATH, tcp("198.51.100.1", "10.0.0.5", 5000, 22), replace(P_IN, ipsets=()))
    assert ssh.accepted and ssh.ct is not None and ssh.ct.zone == 4097


def reference_7_2() -> Netfilter:
    glue = {
        "filter": "-N neutron-l3-agent-local\n-N neutron-l3-agent-OUTPUT\n",
        "mangle": "".join(f"-A {c} -j neutron-l3-agent-{c}\n"
                          for c in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"))
                  + "".join(f"-N neutron-l3-agent-{c}\n" for c in ("floatingip", "INPUT", "FORWARD", "OUTPUT")),
    }
    return Netfilter(reference_tables("### 7.2 The complete iptables state for R", glue), Conntrack())


R_QG, R_QR = "qg-ee11dd22-cc", "qr-aa00bb11-cc"
R_ADDRS = ((R_QG, ip("203.0.113.10")), (R_QR, ip("10.0.0.1")))


def test_7_2_floating_ip_inbound_keeps_client_address() -> None:
    nf = reference_7_2()
    nf.compile_all()
    ctx = HookCtx(in_dev=R_QG, out_dev=R_QR, dev_addrs=R_ADDRS)
    res = nf.traverse(FORWARD_PATH, tcp("198.51.100.7", "203.0.113.20", 6000, 22), ctx)
    assert res.accepted
    assert (res.packet.src, res.packet.dst) == (ip("198.51.100.7"), ip("10.0.0.5"))
    assert res.mark == 0x4000002  # external-ingress mark and address-scope mark
    conn = res.ct.conn if res.ct else None
    assert conn is not None and conn.mark == 0  # saved only on the way out of qg-


def test_7_2_snat_and_metadata() -> None:
    nf = reference_7_2()
    out = nf.traverse(FORWARD_PATH, udp("10.0.0.7", "192.0.2.53", 4000, 53),
                      HookCtx(in_dev=R_QR, out_dev=R_QG, dev_addrs=R_ADDRS))
    assert out.packet.src == ip("203.0.113.10")
    assert out.ct is not None and out.ct.conn is not None and out.ct.conn.mark == 0x4000000  # CONNMARK --save-mark
    meta = nf.traverse(LOCAL_IN_PATH, tcp("10.0.0.7", "169.254.169.254", 4001, 80),
                       HookCtx(in_dev=R_QR, dev_addrs=R_ADDRS))
    assert meta.accepted and meta.packet.dst == ip("10.0.0.1")
    assert decided(meta) == "-A neutron-l3-agent-INPUT -m mark --mark 0x1/0xffff -j ACCEPT"
    direct = nf.traverse(LOCAL_IN_PATH, tcp("198.51.100.7", "203.0.113.10", 4002, 9697),
                         HookCtx(in_dev=R_QG, dev_addrs=R_ADDRS))
    assert direct.verdict is NfVerdict.DROP
    assert decided(direct) == "-A neutron-l3-agent-INPUT -p tcp -m tcp --dport 9697 -j DROP"


# ------------------------------------------------------------------------------------ conntrack


def test_conntrack_new_then_established_and_unreplied() -> None:
    ct = Conntrack()
    ref = ct.lookup(tcp("10.0.0.1", "10.0.0.2", 1000, 22))
    assert ref.state is CtState.NEW and ct.confirm(ref)
    assert ct.lookup(tcp("10.0.0.1", "10.0.0.2", 1000, 22)).state is CtState.NEW  # retransmitted SYN
    reply = ct.lookup(tcp("10.0.0.2", "10.0.0.1", 22, 1000, SYN | ACK))
    assert reply.state is CtState.ESTABLISHED and reply.direction is Direction.REPLY
    assert ct.lookup(tcp("10.0.0.1", "10.0.0.2", 1000, 22, ACK)).state is CtState.ESTABLISHED
    assert "ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=22 src=10.0.0.2" in ct.dump()


def test_conntrack_related_icmp_error() -> None:
    ct = Conntrack()
    query = udp("10.0.0.1", "192.0.2.9", 3333, 53)
    ct.confirm(ct.lookup(query))
    err = IPv4(src=ip("10.0.0.254"), dst=ip("10.0.0.1"), payload=icmp_error(3, 3, query))
    ref = ct.lookup(err)
    assert ref.state is CtState.RELATED and ref.direction is Direction.REPLY
    stray = IPv4(src=ip("10.0.0.254"), dst=ip("10.0.0.1"), payload=icmp_error(3, 3, udp("10.0.0.1", "192.0.2.9", 1, 2)))
    assert ct.lookup(stray).state is CtState.INVALID


def test_conntrack_stray_tcp() -> None:
    strict = Conntrack(tcp_loose=False)
    assert strict.lookup(tcp("10.0.0.1", "10.0.0.2", 1000, 22, ACK)).state is CtState.INVALID
    loose = Conntrack()  # Linux's default nf_conntrack_tcp_loose=1 picks a plain ACK up
    assert loose.lookup(tcp("10.0.0.1", "10.0.0.2", 1000, 22, ACK)).state is CtState.NEW
    for flags in (TCPFlag.FIN | ACK, TCPFlag.RST, SYN | ACK, SYN | TCPFlag.FIN, TCPFlag(0)):
        assert loose.lookup(tcp("10.0.0.1", "10.0.0.2", 1000, 22, flags)).state is CtState.INVALID, flags
    assert loose.lookup(ping("10.0.0.2", "10.0.0.1", reply=True)).state is CtState.INVALID


def test_stray_ack_dropped_by_neutron_invalid_rule() -> None:
    rs = Ruleset((table("-P FORWARD ACCEPT\n-A FORWARD -m state --state INVALID -j DROP\n"),))
    strict = Netfilter(rs, Conntrack(tcp_loose=False))
    assert strict.traverse(FORWARD_PATH, tcp("1.1.1.1", "2.2.2.2", 1, 2, ACK), HookCtx()).verdict is NfVerdict.DROP
    assert Netfilter(rs).traverse(FORWARD_PATH, tcp("1.1.1.1", "2.2.2.2", 1, 2, ACK), HookCtx()).accepted


def test_conntrack_zones_keep_identical_tuples_apart() -> None:
    ct = Conntrack()
    a = ct.lookup(udp("10.0.0.1", "10.0.0.2", 1, 2), zone=4097)
    b = ct.lookup(udp("10.0.0.1", "10.0.0.2", 1, 2), zone=4098)
    assert ct.confirm(a) and ct.confirm(b) and len(ct) == 2
    assert ct.lookup(udp("10.0.0.2", "10.0.0.1", 2, 1), zone=4097).conn is a.conn
    assert ct.lookup(udp("10.0.0.2", "10.0.0.1", 2, 1), zone=0).state is CtState.NEW
    copy = ct.clone()
    ct.clear()
    assert len(ct) == 0 and len(copy) == 2
    assert copy.find(packet_tuple(udp("10.0.0.1", "10.0.0.2", 1, 2)), 4098) is not None


def test_snat_port_clash_picks_another_port() -> None:
    rs = parse_save("*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n")
    nf = Netfilter(rs)
    ctx = HookCtx(out_dev="eth0", dev_addrs=(("eth0", ip("203.0.113.1")),))
    one = nf.traverse(FORWARD_PATH, udp("10.0.0.1", "192.0.2.1", 5000, 53), ctx)
    two = nf.traverse(FORWARD_PATH, udp("10.0.0.2", "192.0.2.1", 5000, 53), ctx)
    assert one.packet.src == two.packet.src == ip("203.0.113.1")
    assert one.packet.payload.sport == 5000 and two.packet.payload.sport == 5001  # type: ignore[union-attr]
    back = nf.traverse(FORWARD_PATH, udp("192.0.2.1", "203.0.113.1", 53, 5001), HookCtx(in_dev="eth0"))
    assert back.packet.dst == ip("10.0.0.2") and back.packet.payload.dport == 5000  # type: ignore[union-attr]


def test_related_icmp_error_is_un_natted() -> None:
    nf = seed000_router()
    nf.traverse(FORWARD_PATH, udp("10.1.0.5", "8.8.8.8", 5353, 53), router_ctx(QR, QG))
    sent = udp("172.24.4.227", "8.8.8.8", 5353, 53)
    err = IPv4(src=ip("172.24.4.1"), dst=ip("172.24.4.227"), payload=icmp_error(3, 3, sent))
    res = nf.traverse(FORWARD_PATH, err, router_ctx(QG, QR))
    assert res.state is CtState.RELATED and res.packet.dst == ip("10.1.0.5")
    inner = res.packet.payload.payload  # type: ignore[union-attr]
    assert isinstance(inner, IPv4) and inner.src == ip("10.1.0.5")


# --------------------------------------------------------------------- matches and targets


def nf_of(*lines: str, policy: str = "ACCEPT", raw: str = "") -> Netfilter:
    text = f"*filter\n:INPUT {policy} [0:0]\n:FORWARD {policy} [0:0]\n:OUTPUT {policy} [0:0]\n:c - [0:0]\n" \
           + "".join(line + "\n" for line in lines) + "COMMIT\n" + raw
    return Netfilter(parse_save(text))


def verdict(nf: Netfilter, pkt: IPv4, ctx: HookCtx | None = None) -> tuple[NfVerdict, str]:
    res = nf.hook(Hook.FORWARD, pkt, ctx or HookCtx(in_dev="eth0", out_dev="eth1"))
    return res.verdict, format_rule(res.rule) if res.rule else ""


@pytest.mark.parametrize(("rule", "pkt", "hit"), [
    ("-p tcp -m multiport --dports 22,80,1000:2000", tcp("1.1.1.1", "2.2.2.2", 9, 1500), True),
    ("-p tcp -m multiport --dports 22,80,1000:2000", tcp("1.1.1.1", "2.2.2.2", 9, 2001), False),
    ("-p udp -m multiport ! --ports 53", udp("1.1.1.1", "2.2.2.2", 53, 9), False),
    ("-p tcp -m tcp --dport 1000:2000", tcp("1.1.1.1", "2.2.2.2", 9, 1000), True),
    ("-p tcp -m tcp ! --dport 22", tcp("1.1.1.1", "2.2.2.2", 9, 22), False),
    ("-p tcp -m tcp --syn", tcp("1.1.1.1", "2.2.2.2", 9, 22), True),
    ("-p tcp -m tcp --tcp-flags SYN,ACK SYN,ACK", tcp("1.1.1.1", "2.2.2.2", 9, 22, SYN | ACK), True),
    ("-p tcp -m tcp ! --syn", tcp("1.1.1.1", "2.2.2.2", 9, 22), False),
    ("-p icmp -m icmp --icmp-type echo-request", ping("1.1.1.1", "2.2.2.2"), True),
    ("-p icmp -m icmp --icmp-type 8/0", ping("1.1.1.1", "2.2.2.2"), True),
    ("-p icmp -m icmp --icmp-type 0", ping("1.1.1.1", "2.2.2.2"), False),
    ("-p 17", udp("1.1.1.1", "2.2.2.2", 1, 2), True),
    ("! -p udp", udp("1.1.1.1", "2.2.2.2", 1, 2), False),
    ("-p all", udp("1.1.1.1", "2.2.2.2", 1, 2), True),
    ("-s 0.0.0.0/0", udp("1.1.1.1", "2.2.2.2", 1, 2), True),
    ("! -d 2.2.0.0/16", udp("1.1.1.1", "2.2.2.2", 1, 2), False),
    ("-s 1.0.0.1/255.0.0.255", udp("1.1.1.1", "2.2.2.2", 1, 2), True),
    ("-i eth+", udp("1.1.1.1", "2.2.2.2", 1, 2), True),
    ("! -o eth1", udp("1.1.1.1", "2.2.2.2", 1, 2), False),
    ("-f", udp("1.1.1.1", "2.2.2.2", 1, 2), False),
    ("-m addrtype --dst-type MULTICAST", udp("1.1.1.1", "224.0.0.5", 1, 2), True),
    ("-m length --length 0:28", udp("1.1.1.1", "2.2.2.2", 1, 2), True),
    ("-m limit --limit 5/sec", udp("1.1.1.1", "2.2.2.2", 1, 2), True),
    ("-m physdev --physdev-is-bridged", udp("1.1.1.1", "2.2.2.2", 1, 2), False),
    ("-m physdev ! --physdev-is-bridged", udp("1.1.1.1", "2.2.2.2", 1, 2), True),
    ("-m conntrack --ctstate NEW --ctdir ORIGINAL", udp("1.1.1.1", "2.2.2.2", 1, 2), True),
    ("-m state ! --state NEW", udp("1.1.1.1", "2.2.2.2", 1, 2), False),
])
def test_matches(rule: str, pkt: IPv4, hit: bool) -> None:
    nf = nf_of(f"-A FORWARD {rule} -j DROP")
    assert (verdict(nf, pkt)[0] is NfVerdict.DROP) is hit


def test_fragments_and_addrtype_local() -> None:
    nf = nf_of("-A FORWARD -f -j DROP", "-A FORWARD -m addrtype --dst-type LOCAL -j DROP")
    frag = IPv4(src=ip("1.1.1.1"), dst=ip("2.2.2.2"), frag=10, proto=17, payload=Raw(data=b"x"))
    assert verdict(nf, frag)[0] is NfVerdict.DROP
    local = HookCtx(local_addrs=frozenset({IPv4Address("2.2.2.2")}))
    assert verdict(nf, udp("1.1.1.1", "2.2.2.2", 1, 2), local)[0] is NfVerdict.DROP
    assert verdict(nf, udp("1.1.1.1", "2.2.2.3", 1, 2), local)[0] is NfVerdict.ACCEPT


def test_goto_returns_to_the_caller_of_the_calling_chain() -> None:
    text = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:a - [0:0]\n:b - [0:0]\n"
            "-A FORWARD -j a\n-A FORWARD -j ACCEPT\n-A a -g b\n-A a -j DROP\n-A b -j RETURN\nCOMMIT\n")
    nf = Netfilter(parse_save(text))
    res = nf.hook(Hook.FORWARD, udp("1.1.1.1", "2.2.2.2", 1, 2), HookCtx())
    assert res.accepted and rules_of(res) == ["-A FORWARD -j a", "-A a -g b", "-A b -j RETURN",
                                              "-A FORWARD -j ACCEPT"]


def test_policy_step() -> None:
    res = nf_of(policy="DROP").hook(Hook.FORWARD, udp("1.1.1.1", "2.2.2.2", 1, 2), HookCtx())
    assert res.verdict is NfVerdict.DROP and res.rule is None
    assert [(s.kind, s.text) for s in res.steps if s.kind is StepKind.POLICY] == [(StepKind.POLICY, "-P FORWARD DROP")]


def test_reject_emits_icmp_and_reset() -> None:
    nf = nf_of("-A INPUT -p tcp -j REJECT --reject-with tcp-reset", "-A INPUT -j REJECT")
    ctx = HookCtx(in_dev="eth0", local_addrs=frozenset({ip("2.2.2.2")}))
    res = nf.hook(Hook.INPUT, tcp("1.1.1.1", "2.2.2.2", 1000, 23), ctx)
    assert res.verdict is NfVerdict.DROP and len(res.emit) == 1
    rst = res.emit[0]
    assert (rst.src, rst.dst) == (ip("2.2.2.2"), ip("1.1.1.1")) and isinstance(rst.payload, TCP)
    assert rst.payload.flags == TCPFlag.RST | ACK and rst.payload.ack == 1
    res = nf.hook(Hook.INPUT, udp("1.1.1.1", "2.2.2.2", 1000, 69), ctx)
    err = res.emit[0]
    assert isinstance(err.payload, ICMP) and (err.payload.type, err.payload.code) == (3, 3)
    assert err.src == ip("2.2.2.2") and err.payload.payload == udp("1.1.1.1", "2.2.2.2", 1000, 69)


def test_mark_and_connmark() -> None:
    rs = parse_save(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n"
        "-A PREROUTING -m connmark ! --mark 0x0/0xffff0000 -j CONNMARK --restore-mark --nfmask 0xffff0000 "
        "--ctmask 0xffff0000\n"
        "-A PREROUTING -i eth0 -j MARK --set-xmark 0x2/0xffff\n"
        "-A PREROUTING -m mark --mark 0x2/0xffff -j MARK --set-xmark 0x40000/0xffff0000\n"
        "-A POSTROUTING -m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark --nfmask 0xffff0000 "
        "--ctmask 0xffff0000\nCOMMIT\n")
    nf = Netfilter(rs)
    first = nf.traverse(FORWARD_PATH, udp("1.1.1.1", "2.2.2.2", 1, 2), HookCtx(in_dev="eth0", mark=0x100))
    assert first.mark == 0x40002  # --set-xmark 0x2/0xffff clears the low 16 bits
    assert first.ct is not None and first.ct.conn is not None and first.ct.conn.mark == 0x40000
    reply = nf.traverse(FORWARD_PATH, udp("2.2.2.2", "1.1.1.1", 2, 1), HookCtx(in_dev="eth1"))
    assert reply.mark == 0x40000  # restored from the connection


def test_notrack_is_untracked() -> None:
    raw = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp -j CT --notrack\nCOMMIT\n"
    nf = nf_of("-A FORWARD -m state --state UNTRACKED -j DROP", raw=raw)
    res = nf.traverse(FORWARD_PATH, udp("1.1.1.1", "2.2.2.2", 1, 2), HookCtx())
    assert res.state is CtState.UNTRACKED and res.verdict is NfVerdict.DROP and len(nf.conntrack) == 0


@pytest.mark.parametrize("rule", ["-A FORWARD -m recent --rcheck -j DROP", "-A FORWARD -j TRACE",
                                  "-A FORWARD -p tcp -m tcp --tcp-option 2 -j DROP"])
def test_unknown_matches_and_targets_raise(rule: str) -> None:
    nf = nf_of(rule)
    with pytest.raises(UnsupportedRule, match="in rule '-A FORWARD"):
        nf.hook(Hook.FORWARD, udp("1.1.1.1", "2.2.2.2", 1, 2), HookCtx())


def test_fast_enough() -> None:
    nf = Netfilter(seed000_compute())
    start = time.perf_counter()
    for n in range(2000):
        nf.traverse(FORWARD_PATH, tcp("10.1.0.5", "10.1.0.2", 10000 + n, 23), INGRESS)
    assert time.perf_counter() - start < 2.0
