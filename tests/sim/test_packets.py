"""Packets: build-then-parse round trips, checksums against an independent RFC 1071 sum and a
hand-checked frame, DHCP on the wire, tunnels, tcpdump's one-line summaries, and pcap files."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neutrino.errors import InvalidInput, ParseError
from neutrino.sim.packets import (
    ARP,
    BROADCAST,
    DHCP,
    DHCP_MAGIC,
    GRE,
    ICMP,
    TCP,
    UDP,
    VXLAN,
    BootOp,
    DHCPMessageType,
    Dot1Q,
    Ethernet,
    EtherType,
    ICMPType,
    IPv4,
    Mac,
    Raw,
    TCPFlag,
    Tunnel,
    UnreachCode,
    arp_reply,
    arp_request,
    checksum,
    decapsulate,
    dhcp_client_frame,
    dhcp_server_frame,
    echo_reply,
    echo_request,
    encapsulate_gre,
    encapsulate_vxlan,
    from_bytes,
    icmp_error,
    ip,
    mac,
    network_layer,
    pop_vlan,
    push_vlan,
    show,
    summary,
    to_bytes,
    vlan_ids,
    with_,
)
from neutrino.sim.pcap import load_pcap, pcap_bytes, read_pcap, read_pcap_bytes, save_pcap, timestamps
from seeds import seed_text

VM_MAC = mac("fa:16:3e:2c:e8:ec")
GW_MAC = mac("fa:16:3e:00:00:01")
GW, VM = ip("10.0.0.1"), ip("10.0.0.2")


def rfc1071(data: bytes) -> int:
    """The Internet checksum computed the way RFC 1071 §4.1 spells it out, word by word."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# --- checksums ----------------------------------------------------------------------------------

@given(st.binary(max_size=300))
def test_checksum_matches_rfc1071(data: bytes) -> None:
    assert checksum(data) == rfc1071(data)


@pytest.mark.parametrize("data", [b"", b"\0\0", b"\xff\xff", b"\x00\x01\xff\xfe", b"\xff", b"\x01\x02\x03"])
def test_checksum_edge_words(data: bytes) -> None:
    assert checksum(data) == rfc1071(data)


# An ICMP echo request checked by hand: 10.0.0.1 -> 10.0.0.2, DF, TTL 64, id 1, seq 1, data "abcd".
# IP words 4500 0020 0000 4000 4001 0000 0a00 0001 0a00 0002 sum to d924, so the checksum is 26db.
# ICMP words 0800 0000 0001 0001 6162 6364 sum to ccc8, so the checksum is 3337.
HAND_FRAME = bytes.fromhex(
    "fa163e2ce8ec" "fa163e000001" "0800"
    "4500" "0020" "0000" "4000" "4001" "26db" "0a000001" "0a000002"
    "0800" "3337" "0001" "0001" "61626364"
) + bytes(14)


def test_hand_checked_icmp_echo_frame() -> None:
    pkt = echo_request(GW_MAC, VM_MAC, GW, VM, id=1, seq=1, data=b"abcd")
    assert to_bytes(pkt) == HAND_FRAME
    assert len(HAND_FRAME) == 60
    assert rfc1071(HAND_FRAME[14:34]) == 0 and rfc1071(HAND_FRAME[34:46]) == 0
    assert from_bytes(HAND_FRAME, verify=True) == pkt
    assert to_bytes(pkt, pad=False) == HAND_FRAME[:46]


def _pseudo(src: IPv4Address, dst: IPv4Address, proto: int, seg: bytes) -> bytes:
    return src.packed + dst.packed + struct.pack("!BBH", 0, proto, len(seg)) + seg


@pytest.mark.parametrize("l4", [
    UDP(sport=40000, dport=5000, payload=Raw(data=b"hello")),
    UDP(sport=1, dport=2),
    TCP(sport=40000, dport=22, seq=1000, flags=TCPFlag.SYN, window=64240,
        options=bytes.fromhex("020405b40402080a000000010000000001030307")),
    TCP(sport=22, dport=40000, seq=5001, ack=1001, flags=TCPFlag.PSH | TCPFlag.ACK, payload=Raw(data=b"xyz")),
], ids=["udp", "udp-empty", "tcp-syn-options", "tcp-data"])
def test_l4_checksums_cover_the_pseudo_header(l4: UDP | TCP) -> None:
    frame = Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, payload=l4))
    data = to_bytes(frame, pad=False)
    ihl = (data[14] & 0xF) * 4
    seg = data[14 + ihl:]
    proto = 17 if isinstance(l4, UDP) else 6
    assert rfc1071(_pseudo(GW, VM, proto, seg)) == 0
    pos = 6 if isinstance(l4, UDP) else 16
    zeroed = seg[:pos] + b"\0\0" + seg[pos + 2:]
    expect = rfc1071(_pseudo(GW, VM, proto, zeroed))
    if proto == 17 and expect == 0:
        expect = 0xFFFF  # UDP sends a computed zero as all ones
    assert int.from_bytes(seg[pos:pos + 2], "big") == expect
    assert rfc1071(data[14:14 + ihl]) == 0
    assert from_bytes(data, verify=True) == frame


@pytest.mark.parametrize("offset", [24, 36, 41], ids=["ip-header", "icmp-header", "icmp-data"])
def test_verify_rejects_a_corrupted_byte(offset: int) -> None:
    bad = bytearray(HAND_FRAME)
    bad[offset] ^= 0x40
    with pytest.raises(ParseError):
        from_bytes(bytes(bad), verify=True)
    from_bytes(bytes(bad))  # without verify it parses


def test_verify_rejects_bad_udp_checksum_but_accepts_zero() -> None:
    frame = Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, payload=UDP(sport=1, dport=2,
                                                                                       payload=Raw(data=b"ab"))))
    data = bytearray(to_bytes(frame))
    data[40] ^= 1
    with pytest.raises(ParseError):
        from_bytes(bytes(data), verify=True)
    data[40:42] = b"\0\0"  # "no checksum"
    assert from_bytes(bytes(data), verify=True) == frame


def test_short_frame_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        from_bytes(b"\x01\x02")


# --- round trips, one per layer ------------------------------------------------------------------

UDP_FRAME = Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, payload=UDP(sport=40000, dport=5000,
                                                                                      payload=Raw(data=b"hello"))))
DISCOVER = DHCP(xid=0x3903F326, chaddr=VM_MAC, message_type=DHCPMessageType.DISCOVER, hostname="cirros",
                param_request_list=(1, 3, 6, 12, 15, 26, 28, 121), client_id=b"\x01" + bytes.fromhex("fa163e2ce8ec"))
OFFER = DHCP(op=BootOp.REPLY, xid=0x3903F326, chaddr=VM_MAC, yiaddr=VM, siaddr=GW,
             message_type=DHCPMessageType.OFFER, server_id=GW, lease_time=120, renewal_time=60, rebinding_time=105,
             subnet_mask=ip("255.255.255.0"), broadcast_address=ip("10.0.0.255"), router=(GW,),
             dns=(GW, ip("8.8.8.8")), domain="novalocal", hostname="cirros", mtu=1450,
             classless_routes=((IPv4Network("169.254.169.254/32"), GW), (IPv4Network("0.0.0.0/0"), GW)),
             extra=((249, bytes.fromhex("20a9fea9fe0a000001000a000001")),))
INNER = echo_request(GW_MAC, VM_MAC, GW, VM, id=7, seq=3)
U_SRC_MAC, U_DST_MAC = mac("52:54:00:00:00:01"), mac("52:54:00:00:00:02")
U_SRC, U_DST = ip("10.168.7.132"), ip("10.168.7.17")


def l3(frame: Ethernet) -> IPv4:
    """The frame's IPv4 datagram (past any 802.1Q tags)."""
    p = network_layer(frame)
    assert isinstance(p, IPv4)
    return p


def l7(frame: Ethernet) -> object:
    """What the frame's UDP or TCP segment carries."""
    seg = l3(frame).payload
    assert isinstance(seg, UDP | TCP)
    return seg.payload


def vx(inner: Ethernet, vni: int, sport: int | None = None) -> Ethernet:
    return encapsulate_vxlan(inner, src_mac=U_SRC_MAC, dst_mac=U_DST_MAC, src=U_SRC, dst=U_DST, vni=vni, sport=sport)


def gre(inner: Ethernet, key: int | None) -> Ethernet:
    return encapsulate_gre(inner, src_mac=U_SRC_MAC, dst_mac=U_DST_MAC, src=U_SRC, dst=U_DST, key=key)


INNER_IP = l3(INNER)
UDP_IP = l3(UDP_FRAME)

ROUND_TRIPS = {
    "arp-request": arp_request(GW_MAC, GW, VM),
    "arp-reply": arp_reply(VM_MAC, VM, GW_MAC, GW),
    "arp-other-op": Ethernet(src=GW_MAC, payload=ARP(op=3, hwsrc=GW_MAC, psrc=GW, pdst=VM)),
    "icmp-echo": INNER,
    "icmp-echo-reply": echo_reply(INNER),
    "icmp-echo-empty": echo_request(GW_MAC, VM_MAC, GW, VM, data=b""),
    "icmp-port-unreachable": Ethernet(dst=GW_MAC, src=VM_MAC, payload=IPv4(
        src=VM, dst=GW, payload=icmp_error(ICMPType.DEST_UNREACH, UnreachCode.PORT, UDP_IP))),
    "icmp-frag-needed": Ethernet(dst=GW_MAC, src=VM_MAC, payload=IPv4(
        src=VM, dst=GW, payload=icmp_error(ICMPType.DEST_UNREACH, UnreachCode.FRAG_NEEDED, INNER_IP,
                                           mtu=1450))),
    "icmp-time-exceeded": Ethernet(dst=GW_MAC, src=VM_MAC, payload=IPv4(
        src=VM, dst=GW, payload=icmp_error(ICMPType.TIME_EXCEEDED, 0, with_(INNER_IP, ttl=1)))),
    "udp": UDP_FRAME,
    "udp-empty": with_(UDP_FRAME, payload=with_(UDP_IP, payload=UDP(sport=1, dport=2))),
    "dhcp-discover": dhcp_client_frame(DISCOVER),
    "dhcp-offer": dhcp_server_frame(OFFER, GW_MAC, GW),
    "dhcp-request": dhcp_client_frame(with_(DISCOVER, message_type=DHCPMessageType.REQUEST, requested_ip=VM,
                                            server_id=GW, secs=3, broadcast=True)),
    "dhcp-ack": dhcp_server_frame(with_(OFFER, message_type=DHCPMessageType.ACK, sname="dnsmasq", file="pxe"),
                                  GW_MAC, GW, broadcast=True),
    "dhcp-nak": dhcp_server_frame(DHCP(op=BootOp.REPLY, xid=9, chaddr=VM_MAC, message_type=DHCPMessageType.NAK,
                                       server_id=GW), GW_MAC, GW, broadcast=True),
    "dhcp-release": dhcp_client_frame(DHCP(xid=10, chaddr=VM_MAC, ciaddr=VM, message_type=DHCPMessageType.RELEASE,
                                           server_id=GW), src=VM, dst=GW, dst_mac=GW_MAC),
    "tcp-syn": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, df=True, payload=TCP(
        sport=40000, dport=22, seq=1000, flags=TCPFlag.SYN, window=64240,
        options=bytes.fromhex("020405b40402080a000000010000000001030307")))),
    "tcp-fin-ack-data": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, payload=TCP(
        sport=22, dport=40000, seq=2**32 - 2, ack=9, flags=TCPFlag.FIN | TCPFlag.ACK | TCPFlag.PSH, urgent=0,
        payload=Raw(data=b"bye\n")))),
    "tcp-rst": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, payload=TCP(
        sport=22, dport=40000, seq=1, flags=TCPFlag.RST, window=0))),
    "ipv4-options-tos-id": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(
        src=GW, dst=VM, tos=0x10, id=4242, ttl=1, options=bytes.fromhex("94040000"), payload=INNER_IP.payload)),
    "ipv4-fragment": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(
        src=GW, dst=VM, proto=17, mf=True, id=77, payload=Raw(data=b"12345678"))),
    "ipv4-later-fragment": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(
        src=GW, dst=VM, proto=17, frag=185, id=77, payload=Raw(data=b"tail"))),
    "ipv4-unknown-proto": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, proto=99,
                                                                        payload=Raw(data=b"abc"))),
    "ipv4-empty": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, proto=253)),
    "dot1q": push_vlan(INNER, 100),
    "dot1q-arp-pcp-dei": Ethernet(src=GW_MAC, payload=Dot1Q(vid=4094, pcp=7, dei=True,
                                                            payload=ARP(hwsrc=GW_MAC, psrc=GW, pdst=VM))),
    "qinq-8100": push_vlan(push_vlan(INNER, 100), 200),
    "qinq-88a8": Ethernet(dst=VM_MAC, src=GW_MAC, type=EtherType.QINQ,
                          payload=Dot1Q(vid=300, payload=Dot1Q(vid=7, payload=INNER_IP))),
    "vxlan": vx(INNER, 100),
    "vxlan-arp-tagged-inner": vx(push_vlan(arp_request(GW_MAC, GW, VM), 5), 0xFFFFFF, sport=50000),
    "gre-key": gre(INNER, 2),
    "gre-nokey": gre(INNER, None),
    "gre-csum-key-seq-ipv4": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, payload=GRE(
        csum=True, key=0xFFFFFFFF, seq=5, payload=INNER_IP))),
    "gre-other-proto": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, payload=GRE(
        proto=0x88BE, payload=Raw(data=b"erspan")))),
    "raw-ethertype-long": Ethernet(dst=BROADCAST, src=GW_MAC, type=0x88CC, payload=Raw(data=bytes(range(50)))),
}


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_round_trip(name: str) -> None:
    pkt = ROUND_TRIPS[name]
    data = to_bytes(pkt)
    assert len(data) >= 60
    back = from_bytes(data, verify=True)
    assert back == pkt
    assert to_bytes(back) == data
    assert summary(back) == summary(pkt)


def test_padding_is_dropped_but_short_raw_keeps_it() -> None:
    short = Ethernet(dst=BROADCAST, src=GW_MAC, type=0x88CC, payload=Raw(data=b"lldp"))
    assert from_bytes(to_bytes(short, pad=False)) == short
    assert from_bytes(to_bytes(short)).payload == Raw(data=b"lldp" + bytes(42))


def test_large_icmp_quote_is_cut_and_comes_back_raw() -> None:
    big = with_(UDP_IP, payload=UDP(sport=1, dport=2, payload=Raw(data=bytes(1000))))
    err = IPv4(src=VM, dst=GW, payload=icmp_error(ICMPType.DEST_UNREACH, UnreachCode.PORT, big))
    data = to_bytes(err)
    assert len(data) == 20 + 8 + 548
    back = from_bytes(to_bytes(Ethernet(dst=GW_MAC, src=VM_MAC, payload=err)))
    icmp = l3(back).payload
    assert isinstance(icmp, ICMP)
    quote = icmp.payload
    assert isinstance(quote, Raw) and quote.data == to_bytes(big)[:548]


def test_unparseable_headers_become_raw() -> None:
    arp_other_hw = struct.pack("!HHBBH", 6, 0x0800, 6, 4, 1) + bytes(20)
    frame = from_bytes(to_bytes(Ethernet(type=EtherType.ARP, payload=Raw(data=arp_other_hw))))
    assert isinstance(frame.payload, Raw)
    not_v4 = from_bytes(to_bytes(Ethernet(type=EtherType.IPV4, payload=Raw(data=b"\x60" + bytes(45)))))
    assert isinstance(not_v4.payload, Raw)
    bootp_no_cookie = Raw(data=bytes(300))
    udp = from_bytes(to_bytes(Ethernet(payload=IPv4(payload=UDP(sport=68, dport=67, payload=bootp_no_cookie)))))
    assert l7(udp) == bootp_no_cookie


# --- property tests -------------------------------------------------------------------------------

macs = st.integers(0, 2**48 - 1).map(Mac)
addrs = st.integers(0, 2**32 - 1).map(IPv4Address)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
ports = u16.filter(lambda p: p not in (67, 68, 4789))
raws = st.binary(min_size=1, max_size=64).map(lambda b: Raw(data=b))
words = st.integers(0, 10).map(lambda n: n * 4).flatmap(lambda n: st.binary(min_size=n, max_size=n))
ascii_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", max_size=30)

dhcps = st.builds(
    DHCP, op=st.sampled_from(BootOp), hops=st.integers(0, 255), xid=u32, secs=u16, broadcast=st.booleans(),
    ciaddr=addrs, yiaddr=addrs, siaddr=addrs, giaddr=addrs, chaddr=macs, sname=ascii_text, file=ascii_text,
    message_type=st.none() | st.sampled_from(DHCPMessageType), server_id=st.none() | addrs,
    requested_ip=st.none() | addrs, lease_time=st.none() | u32, renewal_time=st.none() | u32,
    rebinding_time=st.none() | u32, subnet_mask=st.none() | addrs, broadcast_address=st.none() | addrs,
    router=st.lists(addrs, max_size=3).map(tuple), dns=st.lists(addrs, max_size=3).map(tuple),
    domain=st.none() | ascii_text, hostname=st.none() | ascii_text, mtu=st.none() | u16,
    classless_routes=st.lists(st.tuples(
        st.tuples(addrs, st.integers(0, 32)).map(lambda t: IPv4Network(t, strict=False)), addrs),
        max_size=4).map(tuple),
    param_request_list=st.lists(st.integers(1, 254), max_size=12).map(tuple),
    client_id=st.none() | st.binary(min_size=1, max_size=20),
    extra=st.lists(st.tuples(st.sampled_from([43, 60, 66, 67, 81, 119, 249, 252]), st.binary(max_size=40)),
                   max_size=3).map(tuple),
)
tcps = st.builds(TCP, sport=ports, dport=ports, seq=u32, ack=u32, flags=st.integers(0, 255).map(TCPFlag),
                 window=u16, urgent=u16, options=words, payload=st.none() | raws)
udps = st.one_of(
    st.builds(UDP, sport=ports, dport=ports, payload=st.none() | raws),
    st.builds(UDP, sport=st.sampled_from([67, 68]), dport=st.sampled_from([67, 68]), payload=dhcps),
)
echo_icmps = st.builds(ICMP, type=st.sampled_from([ICMPType.ECHO_REQUEST, ICMPType.ECHO_REPLY]),
                       code=st.integers(0, 255), id=u16, seq=u16, payload=st.none() | raws)


def ipv4s(l4: st.SearchStrategy[object]) -> st.SearchStrategy[IPv4]:
    return st.builds(IPv4, src=addrs, dst=addrs, ttl=st.integers(0, 255), id=u16, df=st.booleans(),
                     tos=st.integers(0, 255), options=words.filter(lambda b: len(b) <= 40), payload=l4)


simple_ipv4 = ipv4s(st.one_of(tcps, udps, echo_icmps))
error_icmps = st.builds(ICMP, type=st.sampled_from([ICMPType.DEST_UNREACH, ICMPType.TIME_EXCEEDED]),
                        code=st.integers(0, 15), id=u16, seq=u16, payload=simple_ipv4)
fragments = st.builds(IPv4, src=addrs, dst=addrs, proto=st.integers(0, 255), id=u16, mf=st.just(True),
                      frag=st.integers(0, 8191), payload=raws)
raw_ipv4 = st.builds(IPv4, src=addrs, dst=addrs, proto=st.sampled_from([0, 2, 41, 50, 89, 132, 253]),
                     payload=st.none() | raws)


def frames(l3: st.SearchStrategy[object]) -> st.SearchStrategy[Ethernet]:
    return st.builds(Ethernet, dst=macs, src=macs, payload=l3)


arps = st.builds(ARP, op=st.integers(0, 0xFFFF), hwsrc=macs, psrc=addrs, hwdst=macs, pdst=addrs)
inner_frames = frames(st.one_of(arps, simple_ipv4))


def tagged(l3: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.recursive(l3, lambda inner: st.builds(Dot1Q, vid=st.integers(0, 4095), pcp=st.integers(0, 7),
                                                    dei=st.booleans(), payload=inner), max_leaves=3)


tunnels = st.one_of(
    ipv4s(st.builds(UDP, sport=ports, dport=st.just(4789),
                    payload=st.builds(VXLAN, vni=st.integers(0, 2**24 - 1), payload=inner_frames))),
    ipv4s(st.builds(GRE, key=st.none() | u32, seq=st.none() | u32, csum=st.booleans(),
                    payload=st.one_of(inner_frames, simple_ipv4))),
)
any_frame = st.one_of(
    frames(tagged(st.one_of(arps, simple_ipv4, ipv4s(error_icmps), fragments, raw_ipv4))),
    frames(tunnels),
    st.builds(Ethernet, dst=macs, src=macs, type=st.sampled_from([0x86DD, 0x88CC, 0x1234]),
              payload=st.binary(min_size=46, max_size=80).map(lambda b: Raw(data=b))),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(any_frame)
def test_property_round_trip(pkt: Ethernet) -> None:
    data = to_bytes(pkt)
    back = from_bytes(data, verify=True)
    assert back == pkt
    assert to_bytes(back) == data
    assert summary(pkt) and show(pkt).startswith("Ethernet")


@settings(max_examples=200)
@given(frames(tagged(simple_ipv4)))
def test_property_ip_header_checksum_and_length(pkt: Ethernet) -> None:
    data = to_bytes(pkt, pad=False)
    off = 14 + 4 * len(vlan_ids(pkt))
    ihl = (data[off] & 0xF) * 4
    assert rfc1071(data[off:off + ihl]) == 0
    assert int.from_bytes(data[off + 2:off + 4], "big") == len(data) - off


@given(st.binary(max_size=200))
def test_property_parser_never_crashes_on_garbage(data: bytes) -> None:
    try:
        pkt = from_bytes(data)
    except ParseError:
        assert len(data) < 14
        return
    assert isinstance(pkt, Ethernet)


# --- DHCP on the wire -----------------------------------------------------------------------------

def _bootp(frame: Ethernet) -> bytes:
    data = to_bytes(frame)
    ihl = (data[14] & 0xF) * 4
    udp = data[14 + ihl:]
    return udp[8:int.from_bytes(udp[4:6], "big")]


def _walk_options(bootp: bytes) -> list[tuple[int, bytes]]:
    """An independent walk of the options area; stops at the end option and insists on it."""
    assert bootp[236:240] == b"\x63\x82\x53\x63"
    out: list[tuple[int, bytes]] = []
    i = 240
    while True:
        code = bootp[i]
        if code == 255:
            assert not bootp[i + 1:].strip(b"\0"), "only padding may follow the end option"
            return out
        if code == 0:
            i += 1
            continue
        out.append((code, bootp[i + 2:i + 2 + bootp[i + 1]]))
        i += 2 + bootp[i + 1]


def test_dhcp_discover_offer_exchange_is_valid_bootp() -> None:
    discover = dhcp_client_frame(DISCOVER)
    b = _bootp(discover)
    assert len(b) == 300  # padded to the BOOTP minimum
    assert b[0] == 1 and b[1:3] == b"\x01\x06"  # BOOTREQUEST, Ethernet, 6-byte address
    assert b[4:8] == bytes.fromhex("3903f326")
    assert b[28:34] == bytes.fromhex("fa163e2ce8ec") and b[34:44] == bytes(10)
    assert b[236:240] == DHCP_MAGIC
    opts = _walk_options(b)
    assert opts[0] == (53, b"\x01")
    assert (12, b"cirros") in opts and (55, bytes([1, 3, 6, 12, 15, 26, 28, 121])) in opts
    ip4 = discover.payload
    assert isinstance(ip4, IPv4) and (str(ip4.src), str(ip4.dst)) == ("0.0.0.0", "255.255.255.255")
    assert discover.dst == BROADCAST

    offer = dhcp_server_frame(with_(OFFER, extra=()), GW_MAC, GW)
    b = _bootp(offer)
    assert b[0] == 2 and b[16:20] == VM.packed and b[20:24] == GW.packed
    named = dict(_walk_options(b))
    assert named[53] == b"\x02" and named[54] == GW.packed and named[51] == (120).to_bytes(4, "big")
    assert named[1] == bytes([255, 255, 255, 0]) and named[3] == GW.packed
    assert named[6] == GW.packed + bytes([8, 8, 8, 8]) and named[15] == b"novalocal"
    assert named[26] == bytes.fromhex("05aa")  # MTU 1450
    # RFC 3442: width, significant destination octets, router.
    assert named[121] == bytes.fromhex("20a9fea9fe" "0a000001" "00" "0a000001")
    assert (offer.dst, l3(offer).dst) == (VM_MAC, VM)
    parsed = l7(from_bytes(to_bytes(offer), verify=True))
    assert isinstance(parsed, DHCP) and parsed.classless_routes == OFFER.classless_routes


def test_dhcp_unknown_and_repeated_options_go_to_extra() -> None:
    dhcp = DHCP(chaddr=VM_MAC, message_type=DHCPMessageType.INFORM, extra=((53, b"\x05"), (77, b"user")))
    back = l7(from_bytes(to_bytes(dhcp_client_frame(dhcp))))
    assert back == dhcp


def test_dhcp_option_over_255_bytes_is_refused() -> None:
    with pytest.raises(InvalidInput):
        to_bytes(DHCP(hostname="x" * 256))


# --- tunnels and VLANs ---------------------------------------------------------------------------

def test_vxlan_encapsulation_bytes_and_back() -> None:
    outer = vx(INNER, 100)
    data = to_bytes(outer)
    assert data[12:14] == b"\x08\x00" and data[14 + 6] & 0x40  # IPv4, DF set
    udp = data[34:42]
    assert int.from_bytes(udp[2:4], "big") == 4789 and 32768 <= int.from_bytes(udp[0:2], "big") < 61000
    assert data[42:50] == bytes.fromhex("0800000000006400")  # I flag, VNI 100
    assert data[50:] == to_bytes(INNER, pad=False)
    tunnel, inner = decapsulate(from_bytes(data, verify=True))
    assert tunnel == Tunnel("vxlan", 100, U_SRC, U_DST)
    assert inner == INNER
    assert vx(INNER, 100) == outer  # the source port is deterministic


def test_gre_encapsulation_bytes_and_back() -> None:
    outer = gre(INNER, 2)
    data = to_bytes(outer)
    assert data[23] == 47
    assert data[34:42] == bytes.fromhex("2000" "6558" "00000002")  # K bit, TEB, key 2
    assert data[42:] == to_bytes(INNER, pad=False)
    tunnel, inner = decapsulate(from_bytes(data, verify=True))
    assert (tunnel.kind, tunnel.key, inner) == ("gre", 2, INNER)


def test_decapsulate_refuses_plain_frames() -> None:
    with pytest.raises(InvalidInput):
        decapsulate(INNER)


def test_push_pop_vlan() -> None:
    tagged = push_vlan(push_vlan(INNER, 1), 200, pcp=3)
    assert vlan_ids(tagged) == (200, 1)
    assert tagged.type == EtherType.VLAN
    assert network_layer(tagged) == INNER_IP
    assert to_bytes(tagged)[12:18] == bytes.fromhex("8100" "60c8" "8100")
    assert pop_vlan(pop_vlan(tagged)) == INNER
    with pytest.raises(InvalidInput):
        pop_vlan(INNER)


# --- composition ---------------------------------------------------------------------------------

def test_outer_headers_fill_their_type_fields() -> None:
    assert Ethernet(payload=ARP()).type == EtherType.ARP
    assert Dot1Q(payload=IPv4(payload=UDP())).type == EtherType.IPV4
    assert IPv4(payload=TCP()).proto == 6 and GRE(payload=INNER).proto == 0x6558 and GRE(payload=INNER_IP).proto == 0x800
    with pytest.raises(InvalidInput):
        Ethernet(payload=Raw(data=b"x"))
    with pytest.raises(InvalidInput):
        IPv4(payload=Raw(data=b"x"))
    assert (Ethernet().type, IPv4().proto, GRE().proto) == (0, 0, 0)  # every field has a default


def test_with_renews_an_automatic_type_but_keeps_an_explicit_one() -> None:
    frame = arp_request(GW_MAC, GW, VM)
    assert with_(frame, payload=INNER_IP).type == EtherType.IPV4
    qinq = Ethernet(type=EtherType.QINQ, payload=Dot1Q(vid=1, payload=ARP()))
    assert with_(qinq, payload=Dot1Q(vid=2, payload=ARP())).type == EtherType.QINQ
    assert with_(frame, src=VM_MAC).payload is frame.payload
    assert with_(IPv4(src=GW), payload=UDP()).proto == 17
    assert with_(Ethernet(), payload=ARP()).type == EtherType.ARP


def test_packets_are_immutable_and_hashable() -> None:
    with pytest.raises(AttributeError):
        INNER.src = VM_MAC  # type: ignore[misc]
    assert len({INNER, echo_request(GW_MAC, VM_MAC, GW, VM, id=7, seq=3)}) == 1


def test_echo_request_has_linux_ping_shape() -> None:
    ip4 = INNER_IP
    assert ip4.df and ip4.ttl == 64
    assert len(to_bytes(ip4)) == 84  # "56(84) bytes of data"
    reply = l3(echo_reply(INNER)).payload
    assert isinstance(reply, ICMP) and reply.type == ICMPType.ECHO_REPLY


def test_show_is_a_layered_tree() -> None:
    text = show(vx(INNER, 100))
    heads = [line.strip() for line in text.splitlines() if ":" not in line]
    assert heads == ["Ethernet", "IPv4", "UDP", "VXLAN", "Ethernet", "IPv4", "ICMP", "Raw"]
    assert "    vni: 100" in text and "  type: 0x0800 (IPV4)" in text and "      proto: 1 (ICMP)" in text
    assert show(from_bytes(to_bytes(INNER))) == show(INNER)
    assert "classless_routes: [169.254.169.254/32 via 10.0.0.1, 0.0.0.0/0 via 10.0.0.1]" in show(OFFER)
    assert "flags: 18 (SYN|ACK)" in show(TCP(flags=TCPFlag.SYN | TCPFlag.ACK))


# --- summaries ------------------------------------------------------------------------------------

def test_summaries_match_seed_004_tcpdump_lines() -> None:
    text = seed_text(4).replace("\xa0", " ")  # the capture's spaces were pasted as no-break spaces
    ping = echo_request(GW_MAC, VM_MAC, GW, VM, id=4654, seq=1)
    # Captured on the controller: its own request before the NIC padded it (length 28), the VM's
    # reply padded off the wire (length 46).
    cases = [
        (summary(arp_request(GW_MAC, GW, VM)), "ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28"),
        (summary(arp_reply(VM_MAC, VM, GW_MAC, GW), pad=True), "ARP, Reply 10.0.0.2 is-at fa:16:3e:2c:e8:ec, length 46"),
        (summary(ping), "IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 4654, seq 1, length 64"),
        (summary(echo_reply(ping)), "IP 10.0.0.2 > 10.0.0.1: ICMP echo reply, id 4654, seq 1, length 64"),
    ]
    for got, want in cases:
        assert got == want
        # The 2013 tcpdump added an OUI lookup after a MAC; today's (4.99) prints none.
        assert want.replace("e8:ec,", "e8:ec (oui Unknown),") in text


@pytest.mark.parametrize(("pkt", "expected"), [
    (ROUND_TRIPS["icmp-port-unreachable"], "IP 10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 udp port 5000 unreachable, length 41"),
    (ROUND_TRIPS["icmp-frag-needed"],
     "IP 10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 unreachable - need to frag (mtu 1450), length 92"),
    (ROUND_TRIPS["icmp-time-exceeded"], "IP 10.0.0.2 > 10.0.0.1: ICMP time exceeded in-transit, length 92"),
    (ROUND_TRIPS["dhcp-discover"],
     "IP 0.0.0.0.68 > 255.255.255.255.67: BOOTP/DHCP, Request from fa:16:3e:2c:e8:ec, length 300"),
    (ROUND_TRIPS["tcp-syn"], "IP 10.0.0.1.40000 > 10.0.0.2.22: Flags [S], seq 1000, win 64240, "
                             "options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0"),
    (ROUND_TRIPS["tcp-fin-ack-data"],
     "IP 10.0.0.1.22 > 10.0.0.2.40000: Flags [FP.], seq 4294967294:2, ack 9, win 65535, length 4"),
    (ROUND_TRIPS["gre-key"], "IP 10.168.7.132 > 10.168.7.17: GREv0, key=0x2, length 106: "
                             "IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 7, seq 3, length 64"),
    (ROUND_TRIPS["dot1q"], "IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 7, seq 3, length 64"),
    (ROUND_TRIPS["ipv4-unknown-proto"], "IP 10.0.0.1 > 10.0.0.2:  ip-proto-99 3"),
], ids=["port-unreach", "frag-needed", "ttl", "dhcp", "syn", "fin-wrap", "gre", "vlan-hidden", "proto"])
def test_summary_lines(pkt: Ethernet, expected: str) -> None:
    assert summary(pkt) == expected


def test_summary_with_link_level_header() -> None:
    assert summary(ROUND_TRIPS["dot1q"], link=True) == (
        "fa:16:3e:00:00:01 > fa:16:3e:2c:e8:ec, ethertype 802.1Q (0x8100), length 102: vlan 100, p 0, "
        "ethertype IPv4 (0x0800), 10.0.0.1 > 10.0.0.2: ICMP echo request, id 7, seq 3, length 64")


# --- pcap -----------------------------------------------------------------------------------------

def test_pcap_round_trip_is_deterministic(tmp_path: os.PathLike[str]) -> None:
    pkts = list(ROUND_TRIPS.values())
    records = list(zip(timestamps(1_700_000_000.0, 0.25), pkts, strict=False))
    data = pcap_bytes(records)
    assert data == pcap_bytes(records)
    assert data[:4] == bytes.fromhex("d4c3b2a1") and struct.unpack("<HHiIII", data[4:24])[-1] == 1
    back = read_pcap_bytes(data)
    assert [r.timestamp for r in back] == [t for t, _ in records]
    assert [r.packet(verify=True) for r in back] == pkts
    path = os.path.join(os.fspath(tmp_path), "t.pcap")
    assert save_pcap(path, records) == len(pkts)
    assert [r.data for r in load_pcap(path)] == [r.data for r in back]


def _swap_pcap(data: bytes, nsec: bool) -> bytes:
    """The same capture re-written big-endian (and with nanosecond timestamps if asked)."""
    magic, major, minor, tz, sig, snap, link = struct.unpack("<IHHiIII", data[:24])
    out = struct.pack(">IHHiIII", 0xA1B23C4D if nsec else magic, major, minor, tz, sig, snap, link)
    pos = 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[pos:pos + 16])
        out += struct.pack(">IIII", sec, usec * 1000 if nsec else usec, incl, orig) + data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
    return out


@pytest.mark.parametrize("nsec", [False, True], ids=["usec", "nsec"])
def test_pcap_reads_big_endian_and_nanoseconds(nsec: bool) -> None:
    data = pcap_bytes([(2.5, INNER), (3.000001, UDP_FRAME)])
    back = read_pcap_bytes(_swap_pcap(data, nsec))
    assert [(r.timestamp, r.packet()) for r in back] == [(2.5, INNER), (3.000001, UDP_FRAME)]


@pytest.mark.parametrize("data", [b"", b"\x0a\x0d\x0d\x0a" + bytes(20),
                                  struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 113)],
                         ids=["empty", "pcapng", "linux-sll"])
def test_pcap_refuses_other_formats(data: bytes) -> None:
    with pytest.raises(ParseError):
        read_pcap_bytes(data)


def test_pcap_truncated_record() -> None:
    with pytest.raises(ParseError):
        read_pcap_bytes(pcap_bytes([(0.0, INNER)])[:-5])


def test_pcap_snaplen_keeps_orig_len() -> None:
    (rec,) = read_pcap_bytes(pcap_bytes([(0.0, INNER)], snaplen=40))
    assert (len(rec.data), rec.orig_len) == (40, 98)


# --- against the real tcpdump --------------------------------------------------------------------

@pytest.fixture(scope="module")
def tcpdump() -> Iterator[str]:
    """tcpdump's path, installing the Debian package as root when it is missing; the tests skip
    only if it still cannot be had."""
    path = shutil.which("tcpdump")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["apt-get", "install", "-y", "-qq", "tcpdump"], env=env, capture_output=True,
                           timeout=600, check=False)
        path = shutil.which("tcpdump")
    if path is None:
        pytest.skip("tcpdump is not installed and could not be installed")
    yield path


TCPDUMP_CASES = {
    "arp-request": ROUND_TRIPS["arp-request"],
    "arp-reply": ROUND_TRIPS["arp-reply"],
    "icmp-echo": echo_request(GW_MAC, VM_MAC, GW, VM, id=4654, seq=1),
    "icmp-echo-reply": echo_reply(echo_request(GW_MAC, VM_MAC, GW, VM, id=4654, seq=1)),
    "icmp-port-unreachable": ROUND_TRIPS["icmp-port-unreachable"],
    "icmp-time-exceeded": ROUND_TRIPS["icmp-time-exceeded"],
    "dhcp-discover": ROUND_TRIPS["dhcp-discover"],
    "dhcp-offer": ROUND_TRIPS["dhcp-offer"],
    "udp": UDP_FRAME,
    "tcp-syn": ROUND_TRIPS["tcp-syn"],
    "tcp-syn-bare": Ethernet(dst=VM_MAC, src=GW_MAC, payload=IPv4(src=GW, dst=VM, payload=TCP(
        sport=40001, dport=80, seq=7, flags=TCPFlag.SYN))),
    "tcp-rst": ROUND_TRIPS["tcp-rst"],
    "dot1q": ROUND_TRIPS["dot1q"],
    "qinq-88a8": ROUND_TRIPS["qinq-88a8"],
    "vxlan": ROUND_TRIPS["vxlan"],
    "vxlan-arp-tagged-inner": ROUND_TRIPS["vxlan-arp-tagged-inner"],
    "gre-key": ROUND_TRIPS["gre-key"],
    "gre-csum-key-seq-ipv4": ROUND_TRIPS["gre-csum-key-seq-ipv4"],
}


def _tcpdump_lines(tcpdump: str, path: str, *extra: str) -> list[str]:
    out = subprocess.run([tcpdump, "-n", "-S", "-r", path, *extra], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    records: list[str] = []
    for line in out.splitlines():
        if line[:2].isdigit() and line[2:3] == ":":
            records.append(line.split(" ", 1)[1])
        else:  # tcpdump puts the frame inside VXLAN on a line of its own; summary() joins with ": "
            records[-1] += ": " + line
    return records


@pytest.mark.parametrize("link", [False, True], ids=["plain", "with-e"])
def test_tcpdump_reads_our_pcap_and_agrees_with_summary(tcpdump: str, tmp_path: os.PathLike[str],
                                                        link: bool) -> None:
    path = os.path.join(os.fspath(tmp_path), "cases.pcap")
    save_pcap(path, zip(timestamps(0.0, 0.001), TCPDUMP_CASES.values(), strict=False))
    lines = _tcpdump_lines(tcpdump, path, *(["-e"] if link else []))
    assert len(lines) == len(TCPDUMP_CASES)
    for name, pkt, line in zip(TCPDUMP_CASES, TCPDUMP_CASES.values(), lines, strict=True):
        assert summary(pkt, pad=True, link=link) == line, name


def test_tcpdump_accepts_our_checksums(tcpdump: str, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(os.fspath(tmp_path), "cksum.pcap")
    save_pcap(path, zip(timestamps(), TCPDUMP_CASES.values(), strict=False))
    out = subprocess.run([tcpdump, "-n", "-vv", "-r", path], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    # tcpdump -vv names a bad IP, ICMP or GRE checksum and rates every UDP and TCP one it checks.
    for bad in ("bad cksum", "wrong", "incorrect", "bad udp cksum"):
        assert bad not in out
    outer = [network_layer(p) for p in TCPDUMP_CASES.values()]
    n_udp = sum(isinstance(x, IPv4) and isinstance(x.payload, UDP) for x in outer)
    n_tcp = sum(isinstance(x, IPv4) and isinstance(x.payload, TCP) for x in outer)
    # (a UDP header quoted in an ICMP error is checked too)
    assert out.count("udp sum ok") >= n_udp and out.count("(correct)") == n_tcp


def test_our_reader_reads_tcpdumps_own_file(tcpdump: str, tmp_path: os.PathLike[str]) -> None:
    src = os.path.join(os.fspath(tmp_path), "in.pcap")
    dst = os.path.join(os.fspath(tmp_path), "out.pcap")
    save_pcap(src, [(0.5, INNER), (1.25, UDP_FRAME)])
    subprocess.run([tcpdump, "-r", src, "-w", dst], capture_output=True, check=True, timeout=60)
    recs = load_pcap(dst)
    assert [(r.timestamp, r.packet()) for r in recs] == [(0.5, INNER), (1.25, UDP_FRAME)]


def test_read_pcap_from_a_file_object() -> None:
    frame = arp_request(GW_MAC, GW, VM)
    (rec,) = read_pcap(io.BytesIO(pcap_bytes([(0.0, frame)])))
    assert rec.packet() == frame and rec.orig_len == 60 and rec.data == to_bytes(frame)
