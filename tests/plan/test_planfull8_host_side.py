"""The host side's and the firewall's shortcuts (issue #17, round eight) give exactly what the
plain ways give: anti-spoofing flows from per-port-number kits and MACs read from their number,
the EUI-64 link-local text without ``ipaddress``'s printing, ``Mac.parse``'s fast path, and the
firewall's per-profile rule templates (every rule of a port made from them as the parse of the
line Neutron writes)."""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import re

import pytest

from neutrino.host.iptables import Rule, format_rule, parse_rule
from neutrino.host.openflow_fields import Mac
from neutrino.plan import firewall, ovs_int
from neutrino.plan.generation import Generation, profile
from neutrino.plan.ovs import ovs_context
from neutrino.plan.ovs_int import BUILDER_SPOOF, PlannedFlow, T, planned_flow
from neutrino.scenarios.model import Deployment
from neutrino.services.snapshot import AddressPair, CloudSnapshot
from tests.plan.test_firewall import port
from tests.plan.test_fw_numbering_speed import _cloud as numbering_cloud

# --- the link-local address and MACs --------------------------------------------------------------


def _lla_by_bytes(mac: str) -> ipaddress.IPv6Address:
    b = bytearray(int(x, 16) for x in mac.split(":"))
    b[0] ^= 0x02
    return ipaddress.IPv6Address(bytes([0xFE, 0x80] + [0] * 6) + bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:]))


def _macs(n: int) -> list[str]:
    rng = random.Random(8)
    # zero bytes often: the link-local's text leaves out its longest run of zero groups
    byte = [0, 0, 2, 0xFF, 0x10]
    out = ["02:00:00:00:00:00", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01", "03:00:00:00:00:00",
           "fa:16:3e:00:11:22", "FA:16:3E:AB:CD:EF", "fa:16:3e:0:0:1"]
    out += [":".join(f"{rng.choice(byte) if rng.random() < 0.5 else rng.randrange(256):02x}" for _ in range(6))
            for _ in range(n)]
    return out


def test_link_local_and_its_text_are_ipaddress_s() -> None:
    for mac in _macs(3000):
        address, text = ovs_int._lla_and_text(mac)
        want = _lla_by_bytes(mac.lower() if len(mac) == 17 else ":".join(p.zfill(2) for p in mac.split(":")))
        assert address == want and text == str(want), mac
        assert ovs_int._lla(mac) == want
    assert ovs_int._lla_and_text("02:00:00:00:00:00")[1] == "fe80::ff:fe00:0"  # the first group zero too
    assert ovs_int._lla_and_text("fa:16:3e:00:11:22")[1] == "fe80::f816:3eff:fe00:1122"


def _mac_by_text(text: str) -> int:
    if not re.fullmatch(r"[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}", text):
        raise ValueError(text)
    return int("".join(p.zfill(2) for p in text.split(":")), 16)


@pytest.mark.parametrize("text", ["fa:16:3e:00:00:0_", "fa:16:3e:00:00:01\n", " fa:16:3e:00:00:01", "fa:16:3e:00:00",
                                  "fa:16:3e:00:00:01:02", "fa-16-3e-00-00-01", "fa:16:3e:00:00:1g", "fa:16:3e:00:0_0:01",
                                  "fa:16:3e:00:00:001", ""])
def test_mac_parse_refuses_what_it_refused(text: str) -> None:
    with pytest.raises(ValueError):
        _mac_by_text(text)
    with pytest.raises(ValueError):
        Mac.parse(text)


def test_mac_parse_fast_path_is_the_digit_by_digit_read() -> None:
    for text in _macs(2000) + ["A:b:C:d:E:f", "0:0:0:0:0:0"]:
        assert Mac.parse(text) == Mac(_mac_by_text(text)), text
        assert type(Mac.parse(text).value) is int


# --- anti-spoofing ---------------------------------------------------------------------------------


def _plain_spoof_lines(p_mac: str, ips: list[str], pairs: tuple[AddressPair, ...], ofport: int) -> list[str]:
    """The lines the agent writes for a port (the round-seven way: texts, each parsed)."""
    v4: dict[str, None] = {}
    v6: dict[str, None] = {}
    for ip in ips:
        (v4 if ipaddress.ip_address(ip).version == 4 else v6).setdefault(str(ipaddress.ip_address(ip)), None)
    for pair in pairs:
        n = pair.ip_address
        text = str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
        (v4 if n.version == 4 else v6).setdefault(text, None)
    any_v4 = any(pr.ip_address.version == 4 and pr.ip_address.prefixlen == 0 for pr in pairs)
    any_v6 = any(pr.ip_address.version == 6 and pr.ip_address.prefixlen == 0 for pr in pairs)
    macs = list(dict.fromkeys(m.lower() for m in [p_mac] + [pr.mac_address for pr in pairs
                                                            if pr.mac_address and pr.mac_address != p_mac]))
    out = []
    if not any_v4:
        out += [f"priority=10,icmp6,in_port={ofport},icmp_type=136 actions=resubmit(,{T.ARP_SPOOF_TABLE:d})",
                f"priority=10,arp,in_port={ofport} actions=resubmit(,{T.ARP_SPOOF_TABLE:d})"]
        if not any_v6:
            targets = dict.fromkeys([str(_lla_by_bytes(m)) for m in macs] + [a for a in v6 if not a.endswith("/0")])
            out += [f"table={T.ARP_SPOOF_TABLE:d},priority=2,icmp6,in_port={ofport},icmp_type=136,nd_target={t} "
                    f"actions=resubmit(,{T.PACKET_RATE_LIMIT:d})" for t in targets]
        out += [f"table={T.ARP_SPOOF_TABLE:d},priority=2,arp,in_port={ofport},arp_spa={a} "
                f"actions=resubmit(,{T.MAC_SPOOF_TABLE:d})" for a in v4]
    out.append(f"priority=9,in_port={ofport} actions=resubmit(,{T.MAC_SPOOF_TABLE:d})")
    out += [f"table={T.MAC_SPOOF_TABLE:d},priority=2,in_port={ofport},dl_src={m} "
            f"actions=resubmit(,{T.LOCAL_EGRESS_TABLE:d})" for m in macs]
    return out


_PAIRS = {
    "none": (),
    "some": (AddressPair(ipaddress.ip_network("10.0.0.128/25"), "fa:16:3e:00:00:99"),
             AddressPair(ipaddress.ip_network("10.0.0.77/32"), ""),
             AddressPair(ipaddress.ip_network("2001:db8::/64"), "FA:16:3E:00:00:98"),
             AddressPair(ipaddress.ip_network("2001:db8:1::5/128"), "fa:16:3e:0:0:97")),
    "any4": (AddressPair(ipaddress.ip_network("0.0.0.0/0"), ""),),
    "any6": (AddressPair(ipaddress.ip_network("::/0"), "fa:16:3e:00:00:97"),),
}


@pytest.mark.parametrize("cookie", [0, 0x5EED])
@pytest.mark.parametrize("pairs", sorted(_PAIRS))
@pytest.mark.parametrize(("mac", "ips"), [("fa:16:3e:00:00:01", ["10.0.0.11"]),
                                          ("FA:16:3E:00:00:02", ["10.0.0.12", "2001:db8::12"]),
                                          ("02:00:00:00:00:00", []),
                                          ("fa:16:3e:0:a:b", ["10.0.0.13"])])
def test_anti_spoof_flows_are_the_parsed_lines(mac: str, ips: list[str], pairs: str, cookie: int) -> None:
    p = port("p1", "n", mac, tuple(("s6" if ":" in ip else "s", ip) for ip in ips), "compute:nova", "c1",
             sgs=("g",), pairs=_PAIRS[pairs])
    ctx = ovs_context(CloudSnapshot(Deployment()), "c1", cookie=cookie)
    for ofport in (3, 17):
        got = ovs_int._anti_spoof_flows(ctx, p, ofport)
        ovs_int._planned.cache_clear()
        want = tuple(planned_flow(ctx, "br-int", line, "port p1", BUILDER_SPOOF)
                     for line in _plain_spoof_lines(mac, ips, _PAIRS[pairs], ofport))
        assert got == want and repr(got) == repr(want)
        assert all(type(f) is PlannedFlow and f.flow.cookie == cookie for f in got)
        assert all(f"in_port={ofport}," in f.text or f"in_port={ofport} " in f.text for f in got)


def test_spoof_kit_is_keyed_by_port_number_and_cookie() -> None:
    a, b, c = ovs_int._spoof_kit(4, 0), ovs_int._spoof_kit(5, 0), ovs_int._spoof_kit(4, 7)
    assert a != b and a != c and a[0][0].cookie == 0 and c[0][0].cookie == 7
    assert "in_port=4," in a[0][1] and "in_port=5," in b[0][1]
    ovs_int._spoof_kit.cache_clear()
    assert ovs_int._spoof_kit(4, 7) == c  # made again from the same key: the same values


# --- the firewall's templates ----------------------------------------------------------------------


def _cloud(gen: str) -> CloudSnapshot:
    """test_fw_numbering_speed's cloud, p2 in both groups and p4 in a deleted one, with a port
    without port security, one without addresses and the DHCP server."""
    base = numbering_cloud(gen)
    p1, p2, p3, p4 = base.ports
    ports = (p1, dataclasses.replace(p2, security_group_ids=("g1", "g2")), p3,
             dataclasses.replace(p4, security_group_ids=("gone",)),
             port("p5", "n", "fa:16:3e:00:00:05", (("s", "10.0.0.15"),), "compute:nova", "c1", sgs=("g1",),
                  security=False),
             port("p6", "n", "fa:16:3e:00:00:06", (), "compute:nova", "c1", sgs=("g1",)),
             port("d1", "n", "fa:16:3e:00:00:0d", (("s", "10.0.0.2"),), "network:dhcp", "c1", device="dhcp-n"))
    return dataclasses.replace(base, ports=ports)


@pytest.mark.parametrize("gen", [Generation.MODERN, Generation.GRIZZLY])
def test_every_planned_rule_is_the_parse_of_its_line(gen: Generation) -> None:
    """Each rule of the firewall (made from templates, field by field) equals the parse of the
    line it prints as, and each port's chains hold what they held (pinned counts and lines)."""
    state = firewall.plan_firewall(_cloud(gen.value), "c1", gen)
    ruleset = state.namespaces[0].iptables
    assert ruleset is not None
    rules: list[Rule] = [r for t in ruleset.tables for c in t.chains for r in c.rules]
    assert len(rules) > 60
    for r in rules:
        parsed = parse_rule(format_rule(r))
        assert parsed == r and repr(parsed) == repr(Rule(*[getattr(r, f) for f in Rule.__slots__[:-1]])), r
        assert r.origin.endswith("via plan_firewall")
    filt = ruleset.table("filter")
    binary = profile(gen).ovs_agent_binary[:16]
    o1 = [format_rule(r) for r in filt.chain(f"{binary}-op1").rules]
    i1 = [format_rule(r) for r in filt.chain(f"{binary}-ip1").rules]
    if gen is Generation.MODERN:
        state_ = '-m state --state RELATED,ESTABLISHED -m comment --comment "Direct packets associated with a known ' \
            'session to the RETURN chain." -j RETURN'
        invalid = ('-m state --state INVALID -m comment --comment "Drop packets that appear related to an existing '
                   'connection (e.g. TCP ACK/FIN) but do not have an entry in conntrack." -j DROP')
        unmatched = f'-m comment --comment "Send unmatched traffic to the fallback chain." -j {binary}-sg-fallback'
        client = '-p udp -m udp --sport 68 --dport 67 -m comment --comment "Allow DHCP client traffic." -j RETURN'
        assert o1 == [f"-A {binary}-op1 -s 0.0.0.0/32 -d 255.255.255.255/32 {client}",
                      f"-A {binary}-op1 -j {binary}-sp1",
                      f"-A {binary}-op1 {client}",
                      f'-A {binary}-op1 -p udp -m udp --sport 67 --dport 68 -m comment --comment "Prevent DHCP '
                      'Spoofing by VM." -j DROP',
                      f"-A {binary}-op1 {state_}",
                      f"-A {binary}-op1 -j RETURN",
                      f"-A {binary}-op1 {invalid}",
                      f"-A {binary}-op1 {unmatched}"], o1
        assert i1 == [f"-A {binary}-ip1 {state_}",
                      f"-A {binary}-ip1 -d 10.0.0.11/32 -p udp -m udp --sport 67 --dport 68 -j RETURN",
                      f"-A {binary}-ip1 -d 255.255.255.255/32 -p udp -m udp --sport 67 --dport 68 -j RETURN",
                      f"-A {binary}-ip1 -s 10.0.0.12/32 -j RETURN",  # the remote group, p1's own left out
                      f"-A {binary}-ip1 -s 10.0.0.15/32 -j RETURN",
                      f"-A {binary}-ip1 -p tcp -m tcp --dport 22 -j RETURN",
                      f"-A {binary}-ip1 {invalid}",
                      f"-A {binary}-ip1 {unmatched}"], i1
        assert [format_rule(r) for r in filt.chain(f"{binary}-sp1").rules][0] == (
            f"-A {binary}-sp1 -s 10.0.0.11/32 -m mac --mac-source FA:16:3E:00:00:01 -m comment --comment "
            '"Allow traffic from defined IP/MAC pairs." -j RETURN')
        raw = ruleset.table("raw").chain(f"{binary}-PREROUTING").rules
        zones = [r.target.options[0].args[0] for r in raw if r.target is not None and r.target.name == "CT"]
        assert zones == ["4097"] * 3 + ["4098"] * 3 + ["4099"] * 3 + ["4100"] * 3 + ["4101"] * 3, zones
    else:
        assert o1 == [f"-A {binary}-op1 -m mac ! --mac-source FA:16:3E:00:00:01 -j DROP",
                      f"-A {binary}-op1 -p udp -m udp --sport 68 --dport 67 -j RETURN",
                      f"-A {binary}-op1 ! -s 10.0.0.11/32 -j DROP",
                      f"-A {binary}-op1 -p udp -m udp --sport 67 --dport 68 -j DROP",
                      f"-A {binary}-op1 -m state --state INVALID -j DROP",
                      f"-A {binary}-op1 -m state --state RELATED,ESTABLISHED -j RETURN",
                      f"-A {binary}-op1 -j RETURN",
                      f"-A {binary}-op1 -j {binary}-sg-fallback"], o1
        assert i1 == [f"-A {binary}-ip1 -m state --state INVALID -j DROP",
                      f"-A {binary}-ip1 -m state --state RELATED,ESTABLISHED -j RETURN",
                      f"-A {binary}-ip1 -s 10.0.0.12/32 -j RETURN",
                      f"-A {binary}-ip1 -s 10.0.0.15/32 -j RETURN",
                      f"-A {binary}-ip1 -p tcp -m tcp --dport 22 -j RETURN",
                      f"-A {binary}-ip1 -s 10.0.0.2/32 -p udp -m udp --sport 67 --dport 68 -j RETURN",
                      f"-A {binary}-ip1 -j {binary}-sg-fallback"], i1
        assert ruleset.find("raw") is None


@pytest.mark.parametrize("gen", [Generation.MODERN, Generation.GRIZZLY])
def test_templates_are_the_lines_parsed(gen: Generation) -> None:
    """Each template makes the rule ``_in`` makes from the line (the plain way), per profile."""
    prof = profile(gen)
    t = firewall._templates(prof)
    fallback = f"{prof.ovs_agent_binary[:16]}-sg-fallback"
    c = firewall._comment
    lines = {
        "dhcp_client": f"-p udp -m udp --sport 68 --dport 67{c(prof, firewall.DHCP_CLIENT)} -j RETURN",
        "established": f"-m state --state RELATED,ESTABLISHED{c(prof, firewall.ALLOW_ASSOC)} -j RETURN",
        "invalid": f"-m state --state INVALID{c(prof, firewall.INVALID_DROP)} -j DROP",
        "unmatched": f"{c(prof, firewall.UNMATCHED).strip()} -j {fallback}",
        "pair_drop": f"{c(prof, firewall.PAIR_DROP).strip()} -j DROP",
        "plain_fallback": f"-j {fallback}",
        "plain_server_drop": "-p udp -m udp --sport 67 --dport 68 -j DROP",
    }
    for name, line in lines.items():
        made = firewall.new_rule("chain-x", *getattr(t, name), "why")
        plain = firewall._in("chain-x", line, "why")
        assert made == plain and repr(made) == repr(plain), name
        assert made == parse_rule(f"-A chain-x {line}")
    assert ("comment" in repr(t.established)) is prof.comments
    assert firewall._templates(prof) is t  # kept by the profile (a frozen value)
    other = firewall._templates(profile(Generation.GRIZZLY if gen is Generation.MODERN else Generation.MODERN))
    assert other.established != t.established
