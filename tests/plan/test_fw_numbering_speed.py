"""The fast paths of the firewall and the kernel numbering (issue #17) against the plain ways
they replace: each must give the same objects, to the byte; and ``device_mac`` pinned to its
definition (it is left uncached: a re-plan finds the tunnel ports kept, see bench/README.md)."""

from __future__ import annotations

import hashlib
import ipaddress
import random
from dataclasses import fields, replace

from neutrino.host.iproute import IprouteStyle
from neutrino.host.iproute_link import Address, Link, LinkDetails, LinkKind, OperState
from neutrino.host.iptables import Rule, TableName, format_rule, parse_rule
from neutrino.host.openflow_fields import Mac
from neutrino.plan import _eui64, _numbered, _renumbered
from neutrino.plan.firewall import plan_firewall
from neutrino.plan.generation import (
    Generation,
    PlannedChain,
    PlannedRule,
    assemble,
    assemble_tables,
    device_mac,
    profile,
)
from neutrino.scenarios.model import Deployment, Host
from neutrino.services.snapshot import AddressPair, CloudSnapshot, SecurityGroup, SecurityGroupRule
from tests.plan.test_firewall import net, port, subnet


def _eui64_by_text(mac: str) -> ipaddress.IPv6Interface:
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    words = [(b[0] << 8) | b[1], (b[2] << 8) | 0xFF, 0xFE00 | b[3], (b[4] << 8) | b[5]]
    return ipaddress.IPv6Interface("fe80::" + ":".join(f"{w:x}" for w in words) + "/64")


def test_eui64_from_the_number_is_the_address_from_the_text() -> None:
    rng = random.Random(17)
    macs = ["00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "fa:16:3e:00:11:22", "02:00:00:00:00:01", "FA:16:3E:AB:CD:EF"]
    macs += [":".join(f"{rng.randrange(256):02x}" for _ in range(6)) for _ in range(500)]
    for mac in macs:
        fast, slow = _eui64(mac), _eui64_by_text(mac)
        assert fast == slow and str(fast) == str(slow) and fast.network == slow.network, mac
    assert str(_eui64("fa:16:3e:00:11:22")) == "fe80::f816:3eff:fe00:1122/64"


def _links() -> list[Link]:
    addr = Address(ipaddress.ip_interface("10.0.0.5/24"), "global", label="x")
    return [
        Link(0, "tapa", flags=("UP",), mtu=1450, qdisc="noqueue", master="qbra", state=OperState.UP,
             group="default", qlen=1000, link_type="ether", mac="fa:16:3e:00:00:01", brd="ff:ff:ff:ff:ff:ff",
             addresses=(addr,), kind=LinkKind.VETH, peer="if9", alias="a", altnames=("x", "y"),
             link_netns="ns", link_netnsid=3, permaddr="fa:16:3e:00:00:09", details=LinkDetails()),
        Link(0, "old", flags=None, mtu=1500, link_type="ether", mac="fa:16:3e:00:00:02",
             style=IprouteStyle.LEGACY),  # no group: LEGACY whatever was given
        Link(7, "kept", mode="DEFAULT", brd_is_peer=True),
    ]


def test_renumbered_is_replace_of_index_and_addresses() -> None:
    extra = Address(ipaddress.ip_interface("fe80::1/64"), scope="link")
    for lk in _links():
        for index, addresses in ((4, lk.addresses), (9, (*lk.addresses, extra))):
            fast, slow = _renumbered(lk, index, addresses), replace(lk, index=index, addresses=addresses)
            assert fast == slow and repr(fast) == repr(slow)
            assert all(getattr(fast, f.name) is getattr(slow, f.name) for f in fields(Link))


def test_numbered_gives_indexes_and_link_locals_as_before() -> None:
    out = _numbered(tuple(_links()))
    assert [(lk.name, lk.index) for lk in out] == [("lo", 1), ("tapa", 8), ("old", 9), ("kept", 7)]
    # tapa has a master: no link-local; "old" is not up (no flags): none either
    assert out[1].addresses == _links()[0].addresses and out[2].addresses == ()
    up = Link(0, "qr-x", flags=("BROADCAST", "UP", "LOWER_UP"), link_type="ether", mac="fa:16:3e:00:11:22",
              group="default")
    (_, numbered) = _numbered((up,))
    assert numbered.index == 2 and [str(a.interface) for a in numbered.addresses] == ["fe80::f816:3eff:fe00:1122/64"]


def _device_mac_by_hash(*parts: str) -> Mac:
    raw = int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:6], "big")
    return Mac((((raw >> 40) & 0xFC | 0x02) << 40) | (raw & 0xFFFFFFFFFF))


def test_device_mac_is_the_hash_of_its_parts() -> None:
    cases = [("h1", "br-tun", "vxlan-0a000001"), ("h1", "br-tun"), ("h1/br-tun",), ("h2", "br-tun", "vxlan-0a000001")]
    for parts in cases:
        assert device_mac(*parts) == _device_mac_by_hash(*parts)
    assert device_mac("h1", "br-tun") == device_mac("h1/br-tun")  # the parts joined by "/"
    assert device_mac("h1", "br-tun", "vxlan-0a000001") != device_mac("h2", "br-tun", "vxlan-0a000001")
    assert str(device_mac("h1", "br-tun"))[1] in "26ae"  # unicast, locally administered


def test_assemble_tables_is_assemble() -> None:
    prof = profile(Generation.MODERN)
    texts = [("filter", "-A b -j ACCEPT"), ("nat", "-A PREROUTING -j b"), ("filter", "-A a -j DROP"),
             ("filter", "-A FORWARD -j a"), ("filter", "-A a -s 10.0.0.1/32 -j RETURN"), ("raw", "-A c -j CT")]
    rules = [PlannedRule(TableName(t), parse_rule(x)) for t, x in texts]
    chains = [PlannedChain(TableName.FILTER, "a", "port 1"), PlannedChain(TableName.FILTER, "empty", "port 2"),
              PlannedChain(TableName.MANGLE, "m", "agent")]
    by_table: dict[TableName, dict[str, list[Rule]]] = {}
    for r in rules:
        by_table.setdefault(r.table, {}).setdefault(r.rule.chain, []).append(r.rule)
    assert assemble_tables(prof, chains, by_table, "b") == assemble(prof, chains, rules, "b")
    assert repr(assemble_tables(prof, chains, {}, "b")) == repr(assemble(prof, chains, [], "b"))


def _cloud(gen: str) -> CloudSnapshot:
    rules = (SecurityGroupRule("r1", "g1", "ingress", "IPv4", None, None, None, None, "g1"),
             SecurityGroupRule("r2", "g1", "ingress", "IPv4", "tcp", 22, 22, None, None),
             SecurityGroupRule("r3", "g1", "egress", "IPv4", None, None, None, None, None))
    others = (SecurityGroupRule("q1", "g2", "egress", "IPv4", "udp", 53, 53, None, None),)
    pair = (AddressPair(ipaddress.ip_network("10.0.0.128/25"), "fa:16:3e:00:00:99"),)
    ports = (port("p1", "n", "fa:16:3e:00:00:01", (("s", "10.0.0.11"),), "compute:nova", "c1", sgs=("g1",)),
             port("p2", "n", "fa:16:3e:00:00:02", (("s", "10.0.0.12"),), "compute:nova", "c1", sgs=("g1",)),
             port("p3", "n", "fa:16:3e:00:00:03", (("s", "10.0.0.13"),), "compute:nova", "c1", sgs=("g2",),
                  pairs=pair),
             port("p4", "n", "fa:16:3e:00:00:04", (("s", "10.0.0.14"),), "compute:nova", "c1", sgs=("g2",)))
    dep = Deployment(generation=gen, hosts=(Host("c1", frozenset({"compute"})),))
    return CloudSnapshot(dep, (net("n", 1450, ("s",)),), (subnet("s", "n", "10.0.0.0/24", "10.0.0.1"),), ports,
                         security_groups=(SecurityGroup("g1", "g1", "p", True, True, rules),
                                          SecurityGroup("g2", "g2", "p", True, True, others)))


def _chain_texts(cloud: CloudSnapshot, gen: Generation, letter: str, port_id: str) -> list[str]:
    ruleset = plan_firewall(cloud, "c1", gen).namespaces[0].iptables
    assert ruleset is not None
    return [format_rule(r) for c in ruleset.table("filter").chains if c.name.startswith(f"neutron-openvswi-{letter}")
            and port_id[:3] in c.name or c.name.startswith(f"quantum-openvswi-{letter}") and port_id[:3] in c.name
            for r in c.rules]


def test_group_rules_shared_by_ports_keep_each_ports_own_addresses_out() -> None:
    for gen_name, gen in (("modern", Generation.MODERN), ("grizzly", Generation.GRIZZLY)):
        cloud = _cloud(gen_name)
        p1 = "\n".join(_chain_texts(cloud, gen, "i", "p1"))
        p2 = "\n".join(_chain_texts(cloud, gen, "i", "p2"))
        # the remote group's members other than the port's own
        assert "-s 10.0.0.12/32" in p1 and "-s 10.0.0.11/32" not in p1, p1
        assert "-s 10.0.0.11/32" in p2 and "-s 10.0.0.12/32" not in p2, p2
        assert p1.count("--dport 22") == 1 and p2.count("--dport 22") == 1
        # the ports of g2 share its rules; each names its own chain
        o3, o4 = _chain_texts(cloud, gen, "o", "p3"), _chain_texts(cloud, gen, "o", "p4")
        assert sum("--dport 53" in t for t in o3) == 1 and sum("--dport 53" in t for t in o4) == 1
        assert all(t.startswith(("-A neutron-openvswi-op3", "-A quantum-openvswi-op3")) for t in o3)
        assert all(t.startswith(("-A neutron-openvswi-op4", "-A quantum-openvswi-op4")) for t in o4)
        # p3 has an address pair: its s- chain (Havana's for Grizzly) allows it with its MAC
        s3 = _chain_texts(cloud, gen, "s", "p3")
        assert any("-s 10.0.0.128/25" in t and "fa:16:3e:00:00:99" in t.lower() for t in s3), s3
        assert any("-s 10.0.0.13/32" in t and "fa:16:3e:00:00:03" in t.lower() for t in s3), s3
