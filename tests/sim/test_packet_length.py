"""Issue #17: an IP packet's length is counted from its layers, not by serialising it (the IP
stack's forwarding checks it against the MTU on every routed hop). The count must be the length
of the bytes the packet builds to, for every kind of layer and size, including ICMP errors that
quote (and cut at 548 bytes) a large packet, padded IP and TCP options, and the layers that are
still built (DHCP, VXLAN, GRE)."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from neutrino.sim.packets import (
    ICMP,
    TCP,
    UDP,
    Ethernet,
    ICMPType,
    IPv4,
    Raw,
    UnreachCode,
    encapsulate_gre,
    encapsulate_vxlan,
    frame_length,
    icmp_error,
    ip_length,
    l3_length,
    mac,
    to_bytes,
)
from tests.sim.test_packets import ROUND_TRIPS

A, B = IPv4Address("10.0.0.5"), IPv4Address("203.0.113.7")
M1, M2 = mac("fa:16:3e:00:00:01"), mac("fa:16:3e:00:00:02")


def _built(p: IPv4) -> int:
    return len(to_bytes(p))


def test_every_sample_frame_counts_as_it_builds() -> None:
    checked = 0
    for name, frame in ROUND_TRIPS.items():
        layer = frame.payload
        if isinstance(layer, IPv4):
            assert ip_length(layer) == _built(layer), name
            assert l3_length(frame) == _built(layer), name
            checked += 1
        assert frame_length(frame) == len(to_bytes(frame, pad=False)), name
    assert checked >= 15


def test_tunnels_and_quoted_errors() -> None:
    big = IPv4(src=A, dst=B, df=True, payload=ICMP(payload=Raw(data=bytes(1400))))
    inner = Ethernet(dst=M2, src=M1, payload=big)
    for outer in (encapsulate_vxlan(inner, src_mac=M1, dst_mac=M2, src=A, dst=B, vni=7),
                  encapsulate_gre(inner, src_mac=M1, dst_mac=M2, src=A, dst=B, key=9),
                  encapsulate_gre(inner, src_mac=M1, dst_mac=M2, src=A, dst=B, key=None)):
        ip = outer.payload
        assert isinstance(ip, IPv4)
        assert ip_length(ip) == _built(ip) > 1400
    err = IPv4(src=B, dst=A, payload=icmp_error(ICMPType.DEST_UNREACH, UnreachCode.FRAG_NEEDED, big, mtu=1400))
    assert ip_length(err) == _built(err) == 20 + 8 + 548  # the quote is cut at 548 bytes
    # an error about an error's quote: the inner error is counted whole, then cut
    nested = IPv4(src=A, dst=B, payload=icmp_error(ICMPType.TIME_EXCEEDED, 0, err))
    assert ip_length(nested) == _built(nested)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["icmp", "udp", "tcp", "raw", "none"]), data=st.binary(max_size=700),
       ip_opts=st.binary(max_size=40), tcp_opts=st.binary(max_size=40), quote=st.booleans())
def test_counted_length_is_the_built_length(kind: str, data: bytes, ip_opts: bytes, tcp_opts: bytes,
                                            quote: bool) -> None:
    body: ICMP | UDP | TCP | Raw | None = {
        "icmp": ICMP(payload=Raw(data=data) if data else None),
        "udp": UDP(sport=1, dport=2, payload=Raw(data=data)),
        "tcp": TCP(sport=3, dport=4, options=tcp_opts, payload=Raw(data=data) if data else None),
        "raw": Raw(data=data),
        "none": None,
    }[kind]
    packet = IPv4(src=A, dst=B, proto=17 if kind == "raw" else -1, options=ip_opts, payload=body)
    if quote:
        packet = IPv4(src=B, dst=A, payload=icmp_error(ICMPType.DEST_UNREACH, UnreachCode.PORT, packet))
    assert ip_length(packet) == _built(packet)
