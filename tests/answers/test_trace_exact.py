"""Issue 13, part 1: trace's wrong answers on seed 000, each through ``neutrino`` itself."""

from __future__ import annotations

import pytest

from tests.answers.conftest import Cli


def test_own_floating_ip_goes_round_the_router_and_comes_back(cli000: Cli) -> None:
    rc, out, _ = cli000("trace", "cirros", "172.24.4.228")
    assert rc == 0, out
    assert "never reached" not in out
    assert "=> delivered at compute cirros" in out
    assert out.rstrip().endswith("=> the exchange succeeded: the answer came back")
    # hairpinned through the router: DNAT to the instance and SNAT to its floating IP
    assert "DNAT 172.24.4.228 -> 10.1.0.2" in out and "SNAT 10.1.0.2 -> 172.24.4.228" in out
    rc, data = cli000.json("trace", "cirros", "172.24.4.228")
    assert rc == 0 and data["succeeded"] is True
    assert data["verdict"]["kind"] == "delivered" and data["reply"]["verdict"]["kind"] == "delivered"


def test_a_refused_tcp_connection_is_a_failure(cli000: Cli) -> None:
    rc, out, _ = cli000("trace", "cirros", "10.1.0.1", "--proto", "tcp", "--dport", "22")
    assert rc == 1, out
    assert "=> dropped: connection refused at the sender: 10.1.0.1 answered tcp/22 with a reset (RST)" in out
    assert out.rstrip().splitlines()[-1].startswith("=> the exchange failed: connection refused")
    rc, data = cli000.json("trace", "cirros", "10.1.0.1", "--proto", "tcp", "--dport", "22")
    assert rc == 1 and data["succeeded"] is False
    assert data["reply"]["verdict"]["reason"] == "connection refused"


def test_a_completed_handshake_succeeds(cli000: Cli) -> None:
    rc, out, _ = cli000("trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22")
    assert rc == 0, out
    assert "SYN-ACK from port 22" in out


def test_udp_to_dnsmasq_that_is_not_dhcp_is_ignored_not_unrouted(cli000: Cli) -> None:
    rc, out, _ = cli000("trace", "cirros", "10.1.0.3", "--proto", "udp", "--dport", "67")
    assert rc == 1
    last = out.rstrip().splitlines()[-1]
    assert "no route" not in last
    assert last.startswith("=> dropped: ignored by the service at network qdhcp-")
    assert "dnsmasq ignores it: not a DHCP request" in last


def test_udp_to_an_instance_port_nobody_listens_on_is_unreachable(cli000: Cli) -> None:
    rc, out, _ = cli000("trace", "cirros", "cirros", "--proto", "udp", "--dport", "53")
    assert rc == 1 and "ICMP unreachable" in out


@pytest.mark.parametrize("proto,dport,ok,why", [("icmp", "22", True, ""), ("tcp", "22", True, ""),
                                                ("tcp", "23", False, "connection refused")])
def test_an_instance_reaches_itself_over_loopback(cli000: Cli, proto: str, dport: str, ok: bool,
                                                  why: str) -> None:
    rc, out, _ = cli000("trace", "cirros", "cirros", "--proto", proto, "--dport", dport)
    assert "ARP unanswered" not in out
    assert out.splitlines()[0].startswith("compute cirros [lo]")
    assert rc == (0 if ok else 1), out
    assert ("=> the exchange succeeded" in out) is ok
    assert why in out


@pytest.mark.parametrize("port", ["99999", "-5", "0", "65536"])
def test_a_port_out_of_range_is_a_one_line_error(cli000: Cli, port: str) -> None:
    rc, out, err = cli000("trace", "cirros", "8.8.8.8", "--proto", "tcp", "--dport", port)
    assert rc == 2 and out == ""
    assert err == f"neutrino: --dport {port}: a port is a number from 1 to 65535\n"


def test_ping_of_the_own_floating_ip_comes_back(cli000: Cli) -> None:
    rc, out, _ = cli000("ping", "cirros", "172.24.4.228")
    assert rc == 0 and out.startswith("cirros -> 172.24.4.228: reply")


def test_the_three_levels_differ(cli000: Cli) -> None:
    outs = {}
    for level in ("detailed", "summary", "minimal"):
        rc, outs[level], _ = cli000("trace", "cirros", "8.8.8.8", "--level", level)
        assert rc == 0
    detailed, summary, minimal = (outs[k].splitlines() for k in ("detailed", "summary", "minimal"))
    assert len(detailed) > len(summary) >= len(minimal)
    # summary: one line per device, the same devices as minimal, each with what decided there
    hops = [ln for ln in minimal if not ln.startswith(("=>", "reply:", "  =>"))]
    assert len([ln for ln in summary if not ln.startswith(("=>", "reply:", "  =>"))]) == len(hops)
    assert any(ln.startswith("compute br-tun [patch-int] (F)") and "set_tunnel:0x2" in ln for ln in summary)
    assert not any("set_tunnel" in ln for ln in minimal)
    # detailed: every chain traversed, every conntrack lookup, the packet at each hop
    assert any("conntrack: ct state NEW" in ln for ln in detailed)
    assert any("jump to quantum-openvswi-sg-chain" in ln for ln in detailed)
    assert not any("jump to quantum-openvswi-sg-chain" in ln for ln in summary)
    assert any(ln.strip().startswith("packet: IP 10.1.0.2 > 8.8.8.8") for ln in detailed)
