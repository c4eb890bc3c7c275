"""``ip addr``/``ip link``/``ip route``/``ip rule``/``ip neigh``/``ip netns``: every seed capture
round-trips (whitespace aside), and iproute2 6.1's own output round-trips byte for byte."""

from __future__ import annotations

import ipaddress
import re

import pytest

from neutrino.errors import ParseError
from neutrino.host.iproute import IprouteStyle, Partial, is_elision, restore_ip_breaks
from neutrino.host.iproute_link import (
    Address,
    Link,
    LinkKind,
    OperState,
    format_ip_addr,
    format_ip_addr_oneline,
    format_ip_link,
    format_ip_link_oneline,
    oneline_addresses,
    parse_ip_addr,
    parse_ip_addr_oneline,
    parse_ip_addr_partial,
    parse_ip_link,
    parse_ip_link_oneline,
)
from neutrino.host.iproute_route import (
    Route,
    format_ip_neigh,
    format_ip_netns,
    format_ip_route,
    format_ip_rule,
    parse_ip_neigh,
    parse_ip_netns,
    parse_ip_route,
    parse_ip_rule,
)
from seeds import between, excerpt, squash


def nb(s: str) -> str:
    """Seed 004 was captured from a web page: its spaces are no-break spaces."""
    return s.replace(" ", "\xa0")


def ocr_repair(text: str) -> str:
    """Seed 002's captures were OCR'd from slides. Undo the OCR's damage to the *syntax* only
    (``gdisc`` -> ``qdisc``, ``valid lft`` -> ``valid_lft``, ``LOWER UP`` -> ``LOWER_UP``,
    ``<A, B>`` -> ``<A,B>``); misread names such as ``gr-``/``gg-``/``qq-`` are left as captured."""
    text = text.replace("gdisc", "qdisc").replace("valid lft", "valid_lft").replace("preferred lft", "preferred_lft")
    text = text.replace("LOWER UP", "LOWER_UP")
    return re.sub(r"<([^>]*)>", lambda m: "<" + m.group(1).replace(", ", ",") + ">", text)


def without_skipped(text: str, partial: Partial[object]) -> str:
    skipped = {s.line for s in partial.skipped}
    return "\n".join(line for n, line in enumerate(text.splitlines(), start=1) if n not in skipped)


# --- ip addr: seeds ------------------------------------------------------------------------

SEED_IP_ADDR = {
    "000-qdhcp-ns-f14c598d-98": lambda: excerpt(0, "71: ns-f14c598d-98", "valid_lft"),
    "000-qrouter-qg-and-qr": lambda: excerpt(0, "66: qg-d48b49e0-aa", "fe80::f816:3eff:feea:646e")
    + "       valid_lft forever preferred_lft forever\n",
    "002-qrouter-ocr-repaired": lambda: ocr_repair(excerpt(2, "12: lo: <LOOPBACK", "fe80::f816:3eff:fe4e:f1b5")
                                                   + "       valid lft forever preferred lft forever\n"),
}


@pytest.mark.parametrize("name", sorted(SEED_IP_ADDR))
def test_seed_ip_addr_round_trips(name: str) -> None:
    text = SEED_IP_ADDR[name]()
    links = parse_ip_addr(text, source=name)
    assert links
    assert squash(format_ip_addr(links)) == squash(text)


def test_seed_000_ip_addr_is_read_field_by_field() -> None:
    (link,) = parse_ip_addr(excerpt(0, "71: ns-f14c598d-98", "valid_lft"))
    assert (link.index, link.name, link.mtu, link.qdisc, link.state, link.qlen) == (
        71, "ns-f14c598d-98", 1500, "pfifo_fast", OperState.UP, 1000)
    assert link.flags == ("BROADCAST", "MULTICAST", "UP", "LOWER_UP")
    assert link.mac == "fa:16:3e:10:2f:03" and link.style is IprouteStyle.LEGACY
    v4, v6 = link.addresses
    assert v4.interface == ipaddress.ip_interface("10.1.0.3/24") and str(v4.brd) == "10.1.0.255"
    assert v4.label == "ns-f14c598d-98" and v4.lifetimes is None  # old iproute2 printed none for v4
    assert v6.scope == "link" and v6.label is None and v6.lifetimes is not None


SEED_004_IP_A = {  # (start, end) markers in seed 004; the capture lost its line breaks
    "controller-no-vms": ("... (loopback has the metadata", "openstack@compute-1:~$ cat"),
    "compute-no-vms": ("... (localhost) ...", "openstack@compute-1:~$ cat"),
    "compute-vm-created": ("... (all interfaces as before) ...", "\n"),
    "vm-guest": ("1: lo:  mtu 16436", "$ route -n"),
}


@pytest.mark.parametrize("name", sorted(SEED_004_IP_A))
def test_seed_004_ip_a_restored_round_trips(name: str) -> None:
    start, end = SEED_004_IP_A[name]
    raw = between(4, nb(start), end if end == "\n" else nb(end))
    text = restore_ip_breaks(raw)
    partial = parse_ip_addr_partial(text, source=f"004:{name}")
    assert partial.items
    assert all(is_elision(s.text) for s in partial.skipped)
    assert squash(format_ip_addr(partial.items)) == squash(without_skipped(text, partial))
    assert all(link.flags is None for link in partial.items)  # the seed lost "<...>"


def test_seed_004_vm_keeps_unknown_address_flags() -> None:
    text = restore_ip_breaks(between(4, nb("1: lo:  mtu 16436"), nb("$ route -n")))
    eth0 = parse_ip_addr(text)[1]
    assert eth0.addresses[1].flags == ("tentative",) and eth0.addresses[1].unknown_flags == 0x08
    assert "scope link tentative flags 08" in format_ip_addr((eth0,))


def test_strict_parse_refuses_elisions() -> None:
    with pytest.raises(ParseError, match=r"seedx:1: expected a link header"):
        parse_ip_addr("... (localhost) ...\n", source="seedx")


# --- ip addr / ip link: iproute2 6.1 as printed on this machine ----------------------------

IP_ADDR_61 = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
    inet 127.0.0.1/8 scope host lo
       valid_lft forever preferred_lft forever
    inet6 ::1/128 scope host \n       valid_lft forever preferred_lft forever
2: v0@if2: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue state DOWN group default qlen 1000
    link/ether ee:e3:87:6e:41:93 brd ff:ff:ff:ff:ff:ff link-netns nt-explore-b
    inet 10.2.0.1/24 scope global v0:1
       valid_lft forever preferred_lft forever
7: d0@d1: <BROADCAST,MULTICAST,PROMISC,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
    link/ether 0a:67:4e:ab:f8:6d brd ff:ff:ff:ff:ff:ff
    altname dzero
    inet 192.0.2.1/24 scope global d0
       valid_lft forever preferred_lft forever
    inet 192.0.2.77/24 scope global secondary dynamic d0
       valid_lft 3600sec preferred_lft 1800sec
    inet6 2001:db8::1/64 scope global nodad \n       valid_lft forever preferred_lft forever
"""

IP_D_LINK_61 = """\
4: v3@v2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master br0 state UP mode DEFAULT group default qlen 1000
    link/ether e2:5d:04:a1:af:d7 brd ff:ff:ff:ff:ff:ff promiscuity 1  allmulti 1 minmtu 68 maxmtu 65535 \n    veth \n    bridge_slave state forwarding priority 32 cost 2 hairpin off port_id 0x8002 addrgenmode eui64 numtxqueues 2 \n9: vx0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000
    link/ether ba:c2:d0:0a:39:32 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \n    vxlan id 42 remote 192.0.2.2 local 192.0.2.1 dev d0 srcport 0 0 dstport 4789 ttl auto ageing 300 udpcsum addrgenmode eui64 \n10: tap0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc pfifo_fast state DOWN mode DEFAULT group default qlen 1000
    link/ether 46:db:65:bb:12:0c brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65521 \n    tun type tap pi off vnet_hdr off persist on addrgenmode eui64 \n    alias hello world
    altname tapzero
"""


def test_ip_addr_61_round_trips_byte_for_byte() -> None:
    links = parse_ip_addr(IP_ADDR_61)
    assert format_ip_addr(links) == IP_ADDR_61
    lo, v0, d0 = links
    assert lo.kind is LinkKind.LOOPBACK and lo.style is IprouteStyle.MODERN
    assert v0.peer == "if2" and v0.link_netns == "nt-explore-b" and v0.up
    assert d0.promisc and d0.altnames == ("dzero",)
    assert d0.addresses[1].secondary and d0.addresses[1].dynamic
    assert d0.addresses[1].lifetimes is not None and d0.addresses[1].lifetimes.valid == 3600


def test_ip_d_link_61_round_trips_and_reads_details() -> None:
    links = parse_ip_link(IP_D_LINK_61)
    assert format_ip_link(links) == IP_D_LINK_61
    v3, vx0, tap0 = links
    assert v3.kind is LinkKind.VETH and v3.details is not None
    assert v3.details.slave_kind == "bridge_slave" and v3.details.port_state == "forwarding"
    assert v3.details.promiscuity == 1 and v3.master == "br0" and v3.mode == "DEFAULT"
    assert vx0.kind is LinkKind.VXLAN and vx0.details is not None
    assert (vx0.details.vni, vx0.details.remote, vx0.details.local, vx0.details.dev, vx0.details.dstport) == (
        42, "192.0.2.2", "192.0.2.1", "d0", 4789)
    assert tap0.kind is LinkKind.TAP and tap0.alias == "hello world"


def test_ip_o_link_and_ip_o_addr_round_trip() -> None:
    links = parse_ip_addr(IP_ADDR_61)
    olink = format_ip_link_oneline([Link(**{**_fields(lk), "addresses": ()}) for lk in links])
    assert "\\    link/ether ee:e3:87:6e:41:93" in olink
    assert format_ip_link_oneline(parse_ip_link_oneline(olink)) == olink
    oaddr = format_ip_addr_oneline(oneline_addresses(links))
    assert oaddr.splitlines()[0] == "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever"
    assert format_ip_addr_oneline(parse_ip_addr_oneline(oaddr)) == oaddr


def _fields(link: Link) -> dict[str, object]:
    return {f: getattr(link, f) for f in Link.__dataclass_fields__}


def test_formatter_defaults_to_modern_style() -> None:
    link = Link(index=3, name="tap1", flags=("BROADCAST", "MULTICAST", "UP", "LOWER_UP"), mtu=1450,
                qdisc="noqueue", state=OperState.UP, group="default", qlen=1000, link_type="ether",
                mac="fa:16:3e:11:22:33", brd="ff:ff:ff:ff:ff:ff",
                addresses=(Address(ipaddress.ip_interface("10.0.0.2/24"), brd=ipaddress.ip_address("10.0.0.255"),
                                   label="tap1"),))
    assert format_ip_addr((link,)) == (
        "3: tap1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP group default qlen 1000\n"
        "    link/ether fa:16:3e:11:22:33 brd ff:ff:ff:ff:ff:ff\n"
        "    inet 10.0.0.2/24 brd 10.0.0.255 scope global tap1\n"
        "       valid_lft forever preferred_lft forever\n")


# --- ip route --------------------------------------------------------------------------------

SEED_IP_ROUTE = {
    "000-qrouter-legacy-spacing": lambda: excerpt(0, "172.24.4.224/28 dev", "default via 172.24.4.225"),
    "002-qrouter": lambda: excerpt(2, "192.168.0.0/24 dev gr-", "default via 192.168.122.1"),
    "003-br100": lambda: excerpt(3, "10.0.0.0/24 dev br100"),
    "003-br102": lambda: excerpt(3, "10.1.0.0/24 dev br102"),
}


@pytest.mark.parametrize("name", sorted(SEED_IP_ROUTE))
def test_seed_ip_route_round_trips(name: str) -> None:
    text = SEED_IP_ROUTE[name]()
    routes = parse_ip_route(text, source=name)
    assert squash(format_ip_route(routes)) == squash(text)


def test_seed_000_route_is_legacy_and_byte_exact() -> None:
    text = excerpt(0, "172.24.4.224/28 dev", "default via 172.24.4.225")
    routes = parse_ip_route(text)
    assert format_ip_route(routes) == text
    assert routes[0].style is IprouteStyle.LEGACY and routes[0].proto == "kernel"
    assert routes[2].is_default and str(routes[2].via) == "172.24.4.225"


IP_ROUTE_ALL_61 = """\
prohibit 10.98.0.0/16 table 100 \n203.0.113.0/24 via 192.0.2.254 dev d0 table 100 \ndefault via 192.0.2.254 dev d0 \n\
10.2.0.0/24 dev v0 proto kernel scope link src 10.2.0.1 linkdown \nblackhole 10.99.0.0/16 \n\
unreachable 198.18.0.0/15 \n198.51.100.0/24 via 192.0.2.254 dev d0 metric 100 \n203.0.113.128/25 \n\
\tnexthop via 192.0.2.253 dev d0 weight 1 \n\tnexthop via 192.0.2.254 dev d0 weight 2 \n\
192.0.2.128/26 dev d0 proto static scope link src 192.0.2.1 onlink \n\
local 10.1.0.1 dev br0 table local proto kernel scope host src 10.1.0.1 \n\
broadcast 10.1.0.255 dev br0 table local proto kernel scope link src 10.1.0.1 \n\
2001:db8:5::/64 dev br0 table 100 metric 5 pref medium
2001:db8:1::/64 via 2001:db8::2 dev br0 metric 1024 pref medium
multicast ff00::/8 dev v3 table local proto kernel metric 256 pref medium
"""


def test_ip_route_table_all_61_round_trips_byte_for_byte() -> None:
    routes = parse_ip_route(IP_ROUTE_ALL_61)
    assert format_ip_route(routes) == IP_ROUTE_ALL_61
    by_type = {r.type for r in routes}
    assert {"prohibit", "blackhole", "unreachable", "local", "broadcast", "multicast", None} <= by_type
    mp = next(r for r in routes if r.nexthops)
    assert [(str(nh.via), nh.weight) for nh in mp.nexthops] == [("192.0.2.253", 1), ("192.0.2.254", 2)]
    assert next(r for r in routes if r.onlink).scope == "link"
    assert routes[0].table == "100" and routes[2].table is None


def test_route_built_by_a_planner_prints_modern() -> None:
    r = Route(dst=ipaddress.ip_network("10.0.0.0/24"), dev="qr-aa00bb11-cc", proto="kernel", scope="link",
              src=ipaddress.ip_address("10.0.0.1"))
    assert format_ip_route([r]) == "10.0.0.0/24 dev qr-aa00bb11-cc proto kernel scope link src 10.0.0.1 \n"


# --- ip rule, ip neigh, ip netns --------------------------------------------------------------

IP_RULE_61 = """\
0:\tfrom all lookup local
1000:\tfrom 10.1.0.0/24 lookup 100
1001:\tfrom all fwmark 0x1/0xff lookup 100
1002:\tfrom all to 10.9.0.0/16 iif br0 lookup 100
1003:\tnot from 10.3.0.0/16 oif d0 lookup main
1004:\tfrom all fwmark 0x10 unreachable
32766:\tfrom all lookup main
32767:\tfrom all lookup default
"""


def test_ip_rule_61_round_trips() -> None:
    rules = parse_ip_rule(IP_RULE_61)
    assert format_ip_rule(rules) == IP_RULE_61
    assert (rules[2].fwmark, rules[2].fwmask, rules[2].table) == (1, 0xFF, "100")
    assert rules[4].invert and rules[4].oif == "d0" and rules[5].action == "unreachable"


# printed by iproute2 6.1 on this machine (Debian 12) after `ip rule add from 10.0.0.5 lookup 10
# priority 100`, `... from 10.0.0.7/24 lookup 11 priority 101` and `... from 10.0.0.0/24 to
# 192.168.1.9 lookup 12 priority 102` in a fresh namespace: the kernel keeps the address as given
# (host bits and all) and ip prints a host prefix without its length
IP_RULE_KERNEL = """\
0:\tfrom all lookup local
100:\tfrom 10.0.0.5 lookup 10
101:\tfrom 10.0.0.7/24 lookup 11
102:\tfrom 10.0.0.0/24 to 192.168.1.9 lookup 12
32766:\tfrom all lookup main
32767:\tfrom all lookup default
"""


def test_ip_rule_as_the_kernel_stores_it() -> None:
    rules = parse_ip_rule(IP_RULE_KERNEL)
    assert format_ip_rule(rules) == IP_RULE_KERNEL
    assert str(rules[2].src) == "10.0.0.7/24" and str(rules[2].src.network) == "10.0.0.0/24"  # type: ignore[union-attr]
    assert str(rules[1].src) == "10.0.0.5/32"  # a host prefix, printed without its length


IP_NEIGH_61 = """\
192.0.2.2 dev d0 INCOMPLETE \n192.0.2.9 dev d0 lladdr fa:16:3e:11:22:33 PERMANENT \n\
2001:db8::9 dev br0 lladdr fa:16:3e:11:22:34 router STALE \n"""


def test_ip_neigh_61_round_trips() -> None:
    nbs = parse_ip_neigh(IP_NEIGH_61)
    assert format_ip_neigh(nbs) == IP_NEIGH_61
    assert nbs[1].lladdr == "fa:16:3e:11:22:33" and nbs[1].states == ("PERMANENT",)
    assert nbs[2].router


SEED_IP_NETNS = {
    "000-ip-netns": lambda: excerpt(0, "qdhcp-88b1609c-68e0-49ca-a658-f1edff54a264", "qrouter-2d214fde"),
    "001-ip-netns-list-with-ids": lambda: excerpt(1, "qdhcp-96c5a292-af46-4ae8-ae42-cf47ab21dd7a (id: 8)",
                                                  "qrouter-be384c66-1834-4265-8f8a-9c85c016ee79 (id: 1)"),
    "001-ip-netns-list-second": lambda: excerpt(1, "qdhcp-b613251e-b959-4e8a-b959-515823a51d30 (id: 17)",
                                                "qrouter-be384c66-1834-4265-8f8a-9c85c016ee79 (id: 1)"),
    "002-ip-netns-list": lambda: excerpt(2, "qdhcp-39edbf9b-a6da-4bab-8500-39ad91ed1984",
                                         "grouter-03266ec4-a03b-41b2-897b-c18ae3279933"),
}


@pytest.mark.parametrize("name", sorted(SEED_IP_NETNS))
def test_seed_ip_netns_round_trips(name: str) -> None:
    text = SEED_IP_NETNS[name]()
    assert format_ip_netns(parse_ip_netns(text)) == text


def test_ip_netns_list_ids() -> None:
    nss = parse_ip_netns(SEED_IP_NETNS["001-ip-netns-list-with-ids"]())
    assert nss[0].id == 8 and nss[2].id is None


# --- malformed input ---------------------------------------------------------------------------

MALFORMED = {
    "addr-header-without-colon": (parse_ip_addr, "2 eth0 <UP> mtu 1500\n", "expected a link header"),
    "addr-bad-mtu": (parse_ip_addr, "2: eth0: <UP> mtu big\n", "a number after 'mtu'"),
    "addr-bad-state": (parse_ip_addr, "2: eth0: <UP> mtu 1500 state SIDEWAYS\n", "an operational state"),
    "addr-unknown-attribute": (parse_ip_addr, "2: eth0: <UP> mtu 1500 colour blue\n", "not 'colour'"),
    "addr-inet-before-header": (parse_ip_addr, "    inet 10.0.0.1/24 scope global eth0\n", "header 'N: name"),
    "addr-bad-prefix": (parse_ip_addr, "2: eth0: <UP> mtu 1500\n    inet 10.0.0.300/24 scope global eth0\n",
                        "an IP address with a prefix length"),
    "addr-lifetime-garbage": (parse_ip_addr, "2: e: <UP> mtu 1\n    inet 10.0.0.1/24 scope global e\n"
                              "       valid_lft soon preferred_lft never\n", "'valid_lft X preferred_lft Y'"),
    "route-bad-destination": (parse_ip_route, "10.0.0/33 dev eth0\n", "a destination prefix or 'default'"),
    "route-unknown-key": (parse_ip_route, "10.0.0.0/24 frobnicate eth0\n", "not 'frobnicate'"),
    "route-bad-gateway": (parse_ip_route, "default via gateway.example dev eth0\n", "a gateway address after 'via'"),
    "route-orphan-nexthop": (parse_ip_route, "\tnexthop via 10.0.0.1 dev eth0 weight 1\n", "a route before"),
    "rule-no-priority": (parse_ip_rule, "from all lookup main\n", "'PRIORITY:<TAB>selector action'"),
    "rule-bad-fwmark": (parse_ip_rule, "5:\tfrom all fwmark zz lookup 1\n", "'fwmark MARK[/MASK]'"),
    "neigh-not-an-ip": (parse_ip_neigh, "fa:16:3e:00:00:01 dev eth0\n", "an IP address first"),
    "netns-garbage": (parse_ip_netns, "qdhcp-1 (id 3)\n", "'NAME' or 'NAME (id: N)'"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_names_line_and_expectation(name: str) -> None:
    parse, text, expected = MALFORMED[name]
    with pytest.raises(ParseError) as info:
        parse(text, source="case")
    msg = str(info.value)
    assert expected in msg
    assert re.match(r"case:\d+: expected ", msg) and "\n" not in msg


# --- the forms kept hosts are written in (neutrino.views.export) ------------------------------------

def _planned(name: str, kind: LinkKind | None, **kw: object) -> Link:
    return Link(index=4, name=name, flags=("BROADCAST", "MULTICAST", "UP", "LOWER_UP"), mtu=1500,
                qdisc="noqueue", state=OperState.UP, link_type="ether", mac="fa:16:3e:03:0f:ac",
                brd="ff:ff:ff:ff:ff:ff", kind=kind, **kw)  # type: ignore[arg-type]


def test_ip_d_link_names_a_planned_devices_kind_and_reads_it_back() -> None:
    links = (_planned("vlan100", LinkKind.VLAN, peer="eth0"), _planned("eth0", LinkKind.ETHER),
             _planned("vnet0", LinkKind.TAP), _planned("br100", LinkKind.BRIDGE))
    text = format_ip_link(links, detailed=True)
    assert text.splitlines()[:3] == [
        "4: vlan100@eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP ",
        "    link/ether fa:16:3e:03:0f:ac brd ff:ff:ff:ff:ff:ff",
        "    vlan"]
    assert "\n    tun type tap\n" in text and "\n    bridge\n" in text
    assert parse_ip_link(text, detailed=True) == links  # kind alone: details stay None
    # without -d the same lines are details of their own, and plain `ip link` shows no kind
    assert parse_ip_link(text)[0].details is not None
    assert [lk.kind for lk in parse_ip_link(format_ip_link(links))] == [None] * 4


def test_details_a_planner_gives_round_trip_through_ip_addr() -> None:
    from neutrino.host.iproute_link import LinkDetails

    link = _planned("vlan100", LinkKind.VLAN, peer="eth0", details=LinkDetails(kind="vlan", vlan_id=100))
    text = format_ip_addr((link,))
    assert "\n    vlan protocol 802.1Q id 100 \n" in text
    assert parse_ip_addr(text) == (link,)


def test_a_link_style_follows_its_header() -> None:
    assert _planned("x", None, style=IprouteStyle.MODERN).style is IprouteStyle.LEGACY  # no group printed
    assert _planned("x", None, group="default", style=IprouteStyle.LEGACY).style is IprouteStyle.MODERN


def test_route_style_matters_only_where_it_prints() -> None:
    default = Route(None, via=ipaddress.ip_address("10.0.0.1"), dev="eth0", style=IprouteStyle.LEGACY)
    assert default.style is IprouteStyle.MODERN and parse_ip_route(format_ip_route((default,))) == (default,)
    connected = Route(ipaddress.ip_network("10.0.0.0/24"), dev="eth0", proto="kernel", scope="link",
                      src=ipaddress.ip_address("10.0.0.2"), style=IprouteStyle.LEGACY)
    assert connected.style is IprouteStyle.LEGACY
    assert parse_ip_route(format_ip_route((connected, default))) == (connected, default)
