"""``ifconfig``, ``route -n`` and ``arp -n`` (net-tools 2.10): seeds round-trip, counters kept."""

from __future__ import annotations

import ipaddress

import pytest

from neutrino.errors import ParseError
from neutrino.host.iproute import restore_route_n_breaks
from neutrino.host.nettools import (
    ArpEntry,
    format_arp_n,
    format_ifconfig,
    format_route_n,
    human_bytes,
    parse_arp_n,
    parse_ifconfig,
    parse_route_n,
)
from seeds import between, excerpt, squash


def nb(s: str) -> str:
    return s.replace(" ", "\xa0")


def _ifconfig_block(occurrence: int, stop: str) -> str:
    text = excerpt(1, "lo: flags=73<UP,LOOPBACK,RUNNING>  mtu 65536", stop, occurrence=occurrence)
    return text[: text.index(stop)]


SEED_IFCONFIG = {
    "001-qdhcp-ifconfig": lambda: _ifconfig_block(0, "It can be seen"),
    "001-qrouter-ifconfig": lambda: _ifconfig_block(1, "Among them"),
}


@pytest.mark.parametrize("name", sorted(SEED_IFCONFIG))
def test_seed_ifconfig_round_trips_with_counters(name: str) -> None:
    text = SEED_IFCONFIG[name]()
    interfaces = parse_ifconfig(text, source=name)
    assert squash(format_ifconfig(interfaces)) == squash(text)


def test_seed_001_qrouter_counters_and_human_sizes() -> None:
    ifs = {i.name: i for i in parse_ifconfig(SEED_IFCONFIG["001-qrouter-ifconfig"]())}
    qg = ifs["qg-77688753-4e"]
    assert qg.flags == 4163 and qg.flag_names == ("UP", "BROADCAST", "RUNNING", "MULTICAST")
    assert qg.ipv4_interface == ipaddress.ip_interface("192.168.100.18/24")
    assert qg.stats is not None and qg.stats.rx_bytes == 93216606173 and qg.stats.tx_packets == 36054483
    assert ifs["qr-42ff6e11-9f"].stats is not None and ifs["qr-42ff6e11-9f"].stats.rx_dropped == 123
    assert ifs["lo"].hw_name == "loop" and ifs["lo"].hwaddr is None and ifs["lo"].inet6[0].scope_names == ("host",)
    assert "RX packets 94919400  bytes 93216606173 (86.8 GiB)" in format_ifconfig([qg])


@pytest.mark.parametrize(("count", "text"), [
    (0, "0.0 B"), (446, "446.0 B"), (1024, "1024.0 B"), (1025, "1.0 KiB"), (1250, "1.2 KiB"),
    (466577, "455.6 KiB"), (5219, "5.0 KiB"), (169750348, "161.8 MiB"), (4787900088, "4.4 GiB"),
    (91520023500, "85.2 GiB"),
])
def test_human_bytes_truncates_like_net_tools(count: int, text: str) -> None:
    assert human_bytes(count) == text


IFCONFIG_ALIAS_AND_PROMISC = """\
d0: flags=4419<UP,BROADCAST,RUNNING,PROMISC,MULTICAST>  mtu 1500
        inet 192.0.2.1  netmask 255.255.255.0  broadcast 0.0.0.0
        inet6 fe80::867:4eff:feab:f86d  prefixlen 64  scopeid 0x20<link>
        inet6 2001:db8::1  prefixlen 64  scopeid 0x0<global>
        ether 0a:67:4e:ab:f8:6d  txqueuelen 1000  (Ethernet)
        RX packets 6  bytes 516 (516.0 B)
        RX errors 0  dropped 0  overruns 0  frame 0
        TX packets 18  bytes 1428 (1.3 KiB)
        TX errors 0  dropped 0 overruns 0  carrier 0  collisions 0

v0:1: flags=4099<UP,BROADCAST,MULTICAST>  mtu 1500
        inet 10.2.0.1  netmask 255.255.255.0  broadcast 0.0.0.0
        ether ee:e3:87:6e:41:93  txqueuelen 1000  (Ethernet)

"""


def test_ifconfig_alias_without_stats_and_promisc_byte_for_byte() -> None:
    ifs = parse_ifconfig(IFCONFIG_ALIAS_AND_PROMISC)
    assert format_ifconfig(ifs) == IFCONFIG_ALIAS_AND_PROMISC
    assert "PROMISC" in ifs[0].flag_names and ifs[1].stats is None


# --- route -n ------------------------------------------------------------------------------

SEED_004_ROUTE_N = {  # the capture lost its line breaks; restore_route_n_breaks puts them back
    "controller": ("Kernel IP routing table", "\n"),
    "compute": ("Kernel IP routing table", "\n"),
    "vm-guest": ("Kernel IP routing table", "\n"),
}


@pytest.mark.parametrize(("name", "occurrence"), [("controller", 0), ("compute", 1), ("vm-guest", 2)])
def test_seed_004_route_n_restored_round_trips(name: str, occurrence: int) -> None:
    start, end = SEED_004_ROUTE_N[name]
    text = restore_route_n_breaks(between(4, nb(start), end, occurrence=occurrence))
    routes = parse_route_n(text, source=f"004:{name}")
    assert len(routes) >= 2
    assert squash(format_route_n(routes)) == squash(text)


def test_seed_004_controller_routes_are_read() -> None:
    text = restore_route_n_breaks(between(4, nb("Kernel IP routing table"), "\n"))
    routes = parse_route_n(text)
    assert [(str(r.network), r.flags, r.metric, r.iface) for r in routes] == [
        ("0.0.0.0/0", "UG", 100, "eth1"), ("10.0.0.0/24", "U", 0, "br100"),
        ("169.254.0.0/16", "U", 1000, "eth1"), ("192.168.56.0/24", "U", 0, "eth1")]
    assert text.splitlines()[3] == "10.0.0.0        0.0.0.0         255.255.255.0   U     0      0        0 br100"


ROUTE_N_REJECT = """\
Kernel IP routing table
Destination     Gateway         Genmask         Flags Metric Ref    Use Iface
10.99.0.0       0.0.0.0         255.255.0.0     U     0      0        0 *
198.18.0.0      -               255.254.0.0     !     0      -        0 -
203.0.113.128   192.0.2.253     255.255.255.128 UG    0      0        0 d0
"""


def test_route_n_reject_and_blackhole_rows_byte_for_byte() -> None:
    routes = parse_route_n(ROUTE_N_REJECT)
    assert format_route_n(routes) == ROUTE_N_REJECT
    assert routes[1].gateway is None and routes[1].iface is None


# --- arp -n --------------------------------------------------------------------------------

ARP_N = """\
Address                  HWtype  HWaddress           Flags Mask            Iface
192.0.2.2                        (incomplete)                              d0
192.0.2.9                ether   fa:16:3e:11:22:33   CM                    d0
10.0.0.2                 ether   fa:16:3e:2c:e8:ec   C                     br100
"""


def test_arp_n_round_trips_and_maps_to_neighbours() -> None:
    entries = parse_arp_n(ARP_N)
    assert format_arp_n(entries) == ARP_N
    assert entries[0].hwaddr is None and entries[0].neighbour().states == ("INCOMPLETE",)
    assert entries[1].neighbour().states == ("PERMANENT",)
    assert entries[2] == ArpEntry(ipaddress.IPv4Address("10.0.0.2"), "ether", "fa:16:3e:2c:e8:ec", "C", "", "br100")


MALFORMED = {
    "ifconfig-bad-header": (parse_ifconfig, "eth0 Link encap:Ethernet  HWaddr 00:11:22:33:44:55\n",
                            "'NAME: flags=N<...>  mtu M'"),
    "ifconfig-flags-disagree": (parse_ifconfig, "eth0: flags=4163<UP>  mtu 1500\n", "flag names matching"),
    "ifconfig-unknown-line": (parse_ifconfig, "eth0: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu 1500\n"
                              "        wibble\n", "an inet, inet6, hardware, RX or TX line"),
    "route-n-short-row": (parse_route_n, "0.0.0.0 10.0.0.1 0.0.0.0 UG 0 0 eth0\n", "8 columns"),
    "route-n-bad-address": (parse_route_n, "0.0.0.300       10.0.0.1        0.0.0.0         UG    0      0        0 eth0\n",
                            "IPv4 addresses and numbers"),
    "arp-bad-address": (parse_arp_n, "host.example             ether   fa:16:3e:11:22:33   C                     d0\n",
                        "an IPv4 address in the Address column"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_names_line_and_expectation(name: str) -> None:
    parse, text, expected = MALFORMED[name]
    with pytest.raises(ParseError) as info:
        parse(text, source="case")
    assert expected in str(info.value) and str(info.value).startswith("case:")
