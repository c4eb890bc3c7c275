"""Issue 13, "trace, made exact": packets given field by field (spoofed source IP and MAC, TCP
flags, source port, a frame injected at any device of any host, tagged), ARP and DHCP traced as
exchanges, and one-line errors for every malformed option; through ``neutrino`` itself."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from neutrino.sim.trace import DropReason
from tests.answers.conftest import Cli


def _hops(trace: dict[str, Any]) -> list[str]:
    return [f"{h['host']} {h['element']} [{h['device']}]" for h in trace["hops"]]


# ---------------------------------------------------------------------------- spoofing


def test_a_spoofed_source_ip_from_cirros_is_dropped_by_anti_spoofing_naming_the_port(cli000: Cli) -> None:
    rc, out, err = cli000("trace", "cirros", "10.1.0.1", "--src-ip", "10.1.0.99")
    assert rc == 1 and err == "", out
    assert out.startswith("packet: src_mac=fa:16:3e:")
    assert "src_ip=10.1.0.99, dst_ip=10.1.0.1" in out.splitlines()[0]
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("=> dropped: anti-spoofing at compute qbr"), last
    assert "! -s 10.1.0.2/32 -j DROP" in last
    rc, data = cli000.json("trace", "cirros", "10.1.0.1", "--src-ip", "10.1.0.99")
    v = data["verdict"]
    assert rc == 1 and v["reason"] == "anti-spoofing" and data["succeeded"] is False
    assert v["obj"].startswith("port ") and "(10.1.0.2) of instance 'cirros'" in v["obj"], v
    assert data["packet"]["src_ip"] == "10.1.0.99" and data["packet"]["dst_ip"] == "10.1.0.1"
    assert len(data["hops"]) == 1 and data["reply"] is None  # it never left the compute host's firewall bridge


def test_a_spoofed_mac_from_cirros_is_dropped_by_anti_spoofing(cli000: Cli) -> None:
    rc, data = cli000.json("trace", "cirros", "10.1.0.1", "--src-mac", "fa:16:3e:00:00:99")
    v = data["verdict"]
    assert rc == 1 and v["reason"] == "anti-spoofing", v
    assert "-m mac ! --mac-source FA:16:3E:" in v["detail"] and "(10.1.0.2) of instance 'cirros'" in v["obj"]
    assert data["packet"]["src_mac"] == "fa:16:3e:00:00:99" and data["packet"]["src_ip"] == "10.1.0.2"


def test_the_world_traces_a_spoofed_source_from_an_instance(seed000: pathlib.Path) -> None:
    """What ``diagnose`` builds on: ``World.probe`` with the overrides, no CLI in between."""
    from neutrino import worldkeep

    world = worldkeep.booted_world(seed000)
    trace = world.probe("cirros", "10.1.0.1", src_ip="10.1.0.99")
    assert trace.verdict.reason is DropReason.ANTI_SPOOFING and trace.verdict.where.startswith("compute qbr")
    assert dict(trace.packet)["src_ip"] == "10.1.0.99"
    plain = world.probe("cirros", "10.1.0.1")  # the same world, the instance's own packet: it goes through
    assert plain.succeeded and plain.packet == ()


def test_modern_anti_spoofing_names_the_ip_mac_rule_and_the_arp_spoof_table(cli001: Cli) -> None:
    rc, data = cli001.json("trace", "vm1", "10.11.11.1", "--src-ip", "10.11.11.99")
    assert rc == 1 and data["verdict"]["reason"] == "anti-spoofing"
    assert "Drop traffic without an IP/MAC allow rule." in data["verdict"]["detail"]
    assert "of instance 'vm1'" in data["verdict"]["obj"]
    # an ARP request claiming another address: br-int's ARP spoofing table (24) drops it
    rc, data = cli001.json("trace", "vm1", "10.11.11.1", "--proto", "arp", "--src-ip", "10.11.11.99")
    assert rc == 1 and data["verdict"]["reason"] == "anti-spoofing", data["verdict"]
    assert data["verdict"]["where"] == "compute01 br-int" and data["verdict"]["detail"].startswith("table=24,")


# ---------------------------------------------------------------------------- TCP flags and ports


def test_a_lone_ack_is_picked_up_by_conntrack_and_answered_with_a_reset(cli000: Cli) -> None:
    rc, out, _ = cli000("trace", "cirros", "10.1.0.1", "--proto", "tcp", "--dport", "22", "--tcp-flags", "A",
                        "--level", "detailed")
    assert rc == 1, out
    assert "tcp_flags=." in out.splitlines()[0]
    assert "Flags [.]" in out  # the hops show the segment as tcpdump does
    first_hop = out.split("\ncompute br-int")[0]
    assert "conntrack: ct state NEW" in first_hop  # nf_conntrack_tcp_loose picks a mid-stream ACK up
    assert "reply: tcp/22  -> no connection: reset" in out
    assert "Flags [R], seq 1" in out  # RFC 793: a reset whose sequence number is the ACK's
    assert out.rstrip().splitlines()[-1].startswith("=> the exchange failed: connection refused")


def test_a_lone_fin_is_invalid_and_meets_the_invalid_rule(cli000: Cli) -> None:
    rc, data = cli000.json("trace", "cirros", "10.1.0.1", "--proto", "tcp", "--tcp-flags", "F")
    assert rc == 1
    assert data["verdict"]["reason"] == "iptables rule"
    assert "-m state --state INVALID -j DROP" in data["verdict"]["detail"]
    assert data["packet"]["tcp_flags"] == "F"


def test_a_syn_from_a_given_source_port_is_followed_both_ways(cli000: Cli) -> None:
    rc, data = cli000.json("trace", "cirros", "8.8.8.8", "--proto", "tcp", "--dport", "443", "--sport", "1234",
                           "--tcp-flags", "S")
    assert rc == 0, data["verdict"]
    assert data["packet"]["sport"] == "1234" and data["packet"]["tcp_flags"] == "S"
    assert data["hops"][0]["packet"].startswith("IP 10.1.0.2.1234 > 8.8.8.8.443: Flags [S]")
    assert data["reply"]["hops"][-1]["packet"].startswith("IP 8.8.8.8.443 > 10.1.0.2.1234: Flags [S.]")


# ---------------------------------------------------------------------------- injected at a device


def test_a_frame_injected_on_the_network_hosts_br_tun_patch_port(cli000: Cli) -> None:
    rc, data = cli000.json("trace", "10.1.0.1", "cirros", "--at", "network:patch-int", "--vlan", "1")
    assert rc == 0, data["verdict"]
    hops = _hops(data)
    assert hops[0] == "network br-tun [patch-int]" and hops[-1] == "compute cirros [eth0]"
    assert data["hops"][0]["steps"][0]["text"] == "priority=4,in_port=1,dl_vlan=1 actions=set_tunnel:0x2,NORMAL"
    assert data["packet"]["at"] == "network:br-tun:patch-int" and data["packet"]["vlan"] == "1"
    assert data["packet"]["src_mac"] == data["packet"]["src_mac"].lower()
    # the echo reply goes to the router that owns 10.1.0.1
    assert data["reply"]["verdict"]["kind"] == "delivered"
    assert any(h.startswith("network qrouter-") for h in _hops(data["reply"]))
    # untagged, br-tun's flow for VLAN 1 does not match
    rc, data = cli000.json("trace", "10.1.0.1", "cirros", "--at", "network:patch-int")
    assert rc == 1 and "vlan" not in data["packet"]


def test_an_injected_syn_ack_of_no_connection_meets_the_instances_invalid_rule(cli000: Cli) -> None:
    rc, data = cli000.json("trace", "10.1.0.1", "cirros", "--at", "network:patch-int", "--vlan", "1",
                           "--proto", "tcp", "--tcp-flags", "SA")
    assert rc == 1 and data["packet"]["tcp_flags"] == "S."
    assert data["verdict"]["where"].startswith("compute qbr")
    assert data["verdict"]["detail"].startswith("-A quantum-openvswi-i") and "--state INVALID -j DROP" in \
        data["verdict"]["detail"]


def test_an_arp_request_injected_at_the_routers_port_is_answered_back_to_the_router(cli000: Cli) -> None:
    _, plain = cli000.json("trace", "cirros", "10.1.0.1")
    tap = next(h["device"] for h in plain["reply"]["hops"] if h["element"] == "br-int" and h["host"] == "network")
    rc, data = cli000.json("trace", "10.1.0.1", "10.1.0.2", "--proto", "arp", "--at", f"network:{tap}")
    assert rc == 0, data["verdict"]
    assert data["verdict"]["where"] == "compute cirros"
    assert data["reply"]["verdict"]["detail"].startswith("10.1.0.2 is-at fa:16:3e:")
    assert _hops(data["reply"])[-1].startswith("network qrouter-")


def test_a_packet_injected_at_the_routers_qr_device_meets_the_router(cli000: Cli) -> None:
    _, plain = cli000.json("trace", "cirros", "10.1.0.1")
    qr = next(h["device"] for h in plain["hops"] if h["device"].startswith("qr-"))
    rc, out, _ = cli000("trace", "cirros", "8.8.8.8", "--at", f"network:{qr}")
    assert out.splitlines()[1].startswith("network qrouter-") and f"[{qr}]" in out.splitlines()[1]
    assert "SNAT 10.1.0.2 -> 172.24.4.228" in out
    assert "reached 8.8.8.8 on the internet" in out
    # the echo reply comes back to the compute host, whose conntrack never saw the request
    assert rc == 1
    assert out.rstrip().splitlines()[-1].startswith("=> the exchange failed: iptables rule")
    assert "-m state --state INVALID -j DROP" in out.rstrip().splitlines()[-1]


def test_injected_on_a_vlan_trunk_the_tag_decides(cli002: Cli) -> None:
    rc, data = cli002.json("trace", "192.168.0.1", "web", "--at", "network:phy-br-eth0", "--vlan", "1")
    hops = _hops(data)
    assert hops[:4] == ["network br-eth0 [phy-br-eth0]", "wire eth0 [network:eth0]", "compute br-eth0 [eth0]",
                        "compute br-int [int-br-eth0]"], hops
    assert "mod_vlan_vid:1" in data["hops"][0]["steps"][0]["text"]
    assert rc == 1 and data["verdict"]["reason"] == "security group"  # web's group lets no ping in
    rc, data = cli002.json("trace", "192.168.0.1", "web", "--at", "network:phy-br-eth0", "--vlan", "7")
    assert rc == 1 and data["verdict"]["reason"] == "VLAN/VNI mismatch"  # dropped by the default drop flow
    assert data["verdict"]["where"] == "network br-eth0"
    assert "VLAN mismatch: br-eth0 on network translates VLANs 1, 2 from phy-br-eth0 only: frames tagged 7" \
        in data["verdict"]["detail"]


# ---------------------------------------------------------------------------- ARP and DHCP


def test_arp_for_the_routers_address_is_answered(cli000: Cli) -> None:
    rc, out, _ = cli000("trace", "cirros", "10.1.0.1", "--proto", "arp")
    assert rc == 0, out
    assert "arp: who-has 10.1.0.1 tell 10.1.0.2  -> 10.1.0.1 is-at fa:16:3e:" in out
    assert "=> delivered at network/qrouter-" in out
    assert "  => delivered at the sender: 10.1.0.1 is-at fa:16:3e:" in out
    assert out.rstrip().endswith("=> the exchange succeeded: the answer came back")
    rc, data = cli000.json("trace", "cirros", "10.1.0.1", "--proto", "arp")
    assert data["packet"]["proto"] == "arp" and data["packet"]["dst_mac"] == "ff:ff:ff:ff:ff:ff"
    assert all(h["packet"].startswith("ARP, Request who-has 10.1.0.1") for h in data["hops"])
    assert all(h["packet"].startswith("ARP, Reply 10.1.0.1 is-at") for h in data["reply"]["hops"])


def test_arp_for_an_unused_address_is_unanswered(cli000: Cli) -> None:
    rc, out, _ = cli000("trace", "cirros", "10.1.0.77", "--proto", "arp")
    assert rc == 1
    assert out.rstrip().splitlines()[-1] == "=> dropped: ARP unanswered at compute cirros: no answer to ARP for 10.1.0.77"


def test_dhcp_from_cirros_is_offered_its_fixed_address(cli000: Cli, seed000: pathlib.Path) -> None:
    rc, out, _ = cli000("trace", "cirros", "-", "--proto", "dhcp")
    assert rc == 0, out
    assert "DHCPOFFER(" in out and "=> delivered at network/qdhcp-" in out
    assert "  => delivered at the sender: 10.1.0.2 offered by 10.1.0.3" in out
    rc, data = cli000.json("trace", "cirros", "-", "--proto", "dhcp")
    assert data["packet"]["dhcp"].startswith("DISCOVER xid 0x") and data["packet"]["sport"] == "68"
    assert data["reply"]["verdict"]["detail"] == "10.1.0.2 offered by 10.1.0.3"
    # the probe leaves the instance as it was: bound, with its lease
    from neutrino import worldkeep
    from neutrino.sim.guest import DhcpState

    world = worldkeep.booted_world(seed000)
    guest = world.guests["cirros"]
    console = list(guest.console)
    assert world.probe("cirros", "-", proto="dhcp").succeeded
    assert guest.state is DhcpState.BOUND and str(guest.ip) == "10.1.0.2" and guest.console == console
    # from another MAC, the instance's firewall drops it before any server sees it
    spoofed = world.probe("cirros", "-", proto="dhcp", src_mac="fa:16:3e:00:00:99")
    assert spoofed.verdict.reason is DropReason.ANTI_SPOOFING and "--mac-source" in spoofed.verdict.detail
    # injected at the DHCP namespace's device, dnsmasq has no address for that MAC
    ns_dev = next(h["device"] for h in data["hops"] if h["element"].startswith("qdhcp-"))
    bad = world.probe("cirros", "-", proto="dhcp", src_mac="fa:16:3e:00:00:99", at=f"network:{ns_dev}")
    assert not bad.delivered and bad.verdict.reason is DropReason.IGNORED
    assert bad.verdict.detail.endswith("DHCPDISCOVER(" + ns_dev + ") fa:16:3e:00:00:99 no address available")


def test_modern_br_int_drops_a_dhcp_discover_from_another_mac(cli001: Cli) -> None:
    """The hybrid firewall lets any DHCP client message out; br-int's MAC spoofing table does not."""
    rc, data = cli001.json("trace", "vm1", "-", "--proto", "dhcp", "--src-mac", "fa:16:3e:00:00:99")
    assert rc == 1 and data["verdict"]["reason"] == "anti-spoofing", data["verdict"]
    assert data["verdict"]["where"] == "compute01 br-int" and data["verdict"]["detail"].startswith("table=25: ")


def test_dhcp_on_a_vlan_network(cli002: Cli) -> None:
    rc, data = cli002.json("trace", "web", "-", "--proto", "dhcp")
    assert rc == 0 and data["reply"]["verdict"]["detail"] == "192.168.0.2 offered by 192.168.0.3"
    assert "wire eth0 [compute:eth0]" in _hops(data)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("args,error", [
    (["--src-mac", "fa:16:3e:zz:00:01"],
     "--src-mac fa:16:3e:zz:00:01: not a MAC address (six hex bytes, aa:bb:cc:dd:ee:ff)"),
    (["--dst-mac", "1:2:3"], "--dst-mac 1:2:3: not a MAC address (six hex bytes, aa:bb:cc:dd:ee:ff)"),
    (["--src-ip", "10.1.0.300"], "--src-ip 10.1.0.300: not an IPv4 address"),
    (["--proto", "tcp", "--sport", "0"], "--sport 0: a port is a number from 1 to 65535"),
    (["--proto", "tcp", "--sport", "65536"], "--sport 65536: a port is a number from 1 to 65535"),
    (["--proto", "udp", "--sport", "x"], "--sport x: a port is a number from 1 to 65535"),
    (["--proto", "tcp", "--dport", "ssh"], "--dport ssh: a port is a number from 1 to 65535"),
    (["--proto", "tcp", "--tcp-flags", "SX"],
     "--tcp-flags SX: unknown flag 'X' (tcpdump's letters: S SYN, . or A ACK, F FIN, R RST, P PSH, U URG, "
     "E ECE, W CWR; or none)"),
    (["--proto", "icmp", "--tcp-flags", "S"], "--tcp-flags: only with --proto tcp (not icmp)"),
    (["--at", "network:patch-int", "--vlan", "4096"], "--vlan 4096: a VLAN id is a number from 0 to 4095"),
    (["--at", "network:patch-int", "--vlan", "-1"], "--vlan -1: a VLAN id is a number from 0 to 4095"),
    (["--vlan", "5"], "--vlan: a tag goes on a frame injected at a trunk or bridge port (give --at)"),
    (["--at", "nowhere:eth0"], "--at nowhere:eth0: no host named 'nowhere' (hosts: compute, network)"),
    (["--at", "network:patch-itn"],
     "--at network:patch-itn: network has no device 'patch-itn' wired to anything (did you mean patch-tun, "
     "patch-int?)"),
    (["--at", "network"], "--at network: give HOST:DEVICE or HOST:ELEMENT:DEVICE (e.g. network:patch-int)"),
    (["--proto", "smtp"], "unknown protocol 'smtp' (icmp, tcp, udp, http, arp or dhcp)"),
])
def test_a_malformed_option_is_a_one_line_error(cli000: Cli, args: list[str], error: str) -> None:
    rc, out, err = cli000("trace", "cirros", "10.1.0.1", *args)
    assert (rc, out, err) == (2, "", f"neutrino: {error}\n")


def test_the_fields_are_for_instances_or_injected_frames(cli000: Cli) -> None:
    rc, _, err = cli000("trace", "outside", "172.24.4.228", "--src-ip", "1.2.3.4")
    assert rc == 2 and err == "neutrino: outside: the packet's fields can be given from an instance, or with --at\n"
    rc, _, err = cli000("trace", "cirros", "10.1.0.2", "--proto", "arp")
    assert rc == 2 and err == "neutrino: 10.1.0.2 is cirros's own address: it asks nobody for it\n"
    rc, _, err = cli000("trace", "10.9.9.9", "cirros", "--at", "network:patch-int")
    assert rc == 2 and err == "neutrino: nothing in this cloud holds 10.9.9.9: give the source MAC (--src-mac)\n"
    rc, _, err = cli000("trace", "cirros", "10.1.0.2", "--tcp-flags", "A", "--proto", "tcp")
    assert rc == 2 and err.startswith("neutrino: 10.1.0.2 is cirros's own address: the packet never leaves it")


def test_a_plain_trace_carries_no_packet_field(cli000: Cli) -> None:
    rc, data = cli000.json("trace", "cirros", "10.1.0.1")
    assert rc == 0 and "packet" not in data
    rc, out, _ = cli000("trace", "cirros", "10.1.0.1")
    assert not out.startswith("packet:")
