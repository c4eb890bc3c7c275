"""The real tools, in throwaway namespaces: what iproute2 6.1, net-tools, brctl and ps print here
parses and renders back identically (trailing whitespace aside). Never touches the root namespace."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pathlib
import signal
from collections.abc import Callable, Iterator

import pytest

from neutrino.host.bridge import format_brctl_show, parse_brctl_show
from neutrino.host.dnsmasq import argv_from_cmdline, format_ps_line, parse_ps_line
from neutrino.host.iproute_link import (
    LinkKind,
    format_ip_addr,
    format_ip_addr_oneline,
    format_ip_link,
    format_ip_link_oneline,
    parse_ip_addr,
    parse_ip_addr_oneline,
    parse_ip_link,
    parse_ip_link_oneline,
)
from neutrino.host.iproute_route import (
    format_ip_neigh,
    format_ip_netns,
    format_ip_route,
    format_ip_rule,
    parse_ip_neigh,
    parse_ip_netns,
    parse_ip_route,
    parse_ip_rule,
)
from neutrino.host.nettools import (
    format_arp_n,
    format_ifconfig,
    format_route_n,
    parse_arp_n,
    parse_ifconfig,
    parse_route_n,
)
from neutrino.linux import netns as netns_lib
from neutrino.linux.runner import run, wait_for

pytestmark = pytest.mark.root


@pytest.fixture
def peer_netns(netns: str) -> Iterator[str]:
    """A second throwaway namespace (the far end of a veth pair)."""
    name = f"{netns}-peer"
    netns_lib.add(name)
    try:
        yield name
    finally:
        netns_lib.delete(name)


def _build(ns: str, peer: str) -> None:
    def ip(*args: str) -> None:
        run(["ip", *args], netns=ns)

    ip("link", "add", "va0", "type", "veth", "peer", "name", "vb0", "netns", peer)
    ip("link", "add", "br0", "type", "bridge")
    ip("link", "add", "p0", "type", "veth", "peer", "name", "p1")
    ip("link", "add", "q0", "type", "veth", "peer", "name", "q1")
    ip("link", "set", "p0", "master", "br0")
    ip("link", "set", "q0", "master", "br0")
    ip("tuntap", "add", "tap0", "mode", "tap")
    ip("link", "add", "vx0", "type", "vxlan", "id", "42", "remote", "192.0.2.2", "local", "10.1.0.1", "dstport",
       "4789", "dev", "va0")
    for dev in ("va0", "br0", "p0", "p1", "q0", "q1", "tap0", "vx0"):
        ip("link", "set", dev, "up")
    run(["ip", "link", "set", "vb0", "up"], netns=peer)
    ip("link", "set", "va0", "promisc", "on")
    ip("link", "set", "tap0", "alias", "stand-in for a dummy device")
    ip("addr", "add", "10.1.0.1/24", "brd", "+", "dev", "va0")
    ip("addr", "add", "10.1.0.9/24", "dev", "va0")
    ip("addr", "add", "10.2.0.1/24", "dev", "br0", "label", "br0:gw")
    ip("addr", "add", "2001:db8::1/64", "dev", "br0", "nodad")
    ip("addr", "add", "2001:db8:1::1/64", "dev", "va0", "nodad", "noprefixroute")
    ip("route", "add", "default", "via", "10.1.0.254")
    ip("route", "add", "198.51.100.0/24", "via", "10.1.0.254", "metric", "100", "proto", "static")
    ip("route", "add", "203.0.113.0/24", "via", "10.1.0.254", "table", "100")
    ip("route", "add", "203.0.113.128/25", "nexthop", "via", "10.1.0.253", "weight", "1", "nexthop", "via",
       "10.1.0.254", "weight", "2")
    ip("route", "add", "unreachable", "198.18.0.0/15")
    ip("route", "add", "blackhole", "10.99.0.0/16")
    ip("-6", "route", "add", "2001:db8:5::/64", "via", "2001:db8::2", "metric", "5")
    ip("rule", "add", "from", "10.2.0.0/24", "lookup", "100", "priority", "1000")
    ip("rule", "add", "fwmark", "0x1/0xff", "lookup", "100", "priority", "1001")
    ip("rule", "add", "iif", "br0", "to", "10.9.0.0/16", "table", "100", "priority", "1002")
    ip("neigh", "add", "10.1.0.77", "lladdr", "fa:16:3e:11:22:33", "dev", "va0", "nud", "permanent")
    ip("neigh", "add", "2001:db8::77", "lladdr", "fa:16:3e:11:22:34", "dev", "br0", "nud", "permanent")


def _same(text: str, render: str) -> None:
    assert [ln.rstrip() for ln in render.splitlines()] == [ln.rstrip() for ln in text.splitlines()]


CAPTURES: dict[str, tuple[list[str], Callable[[str], object], Callable[[object], str]]] = {
    "ip addr": (["ip", "addr"], parse_ip_addr, format_ip_addr),  # type: ignore[dict-item]
    "ip -o addr": (["ip", "-o", "addr"], parse_ip_addr_oneline, format_ip_addr_oneline),  # type: ignore[dict-item]
    "ip link": (["ip", "link"], parse_ip_link, format_ip_link),  # type: ignore[dict-item]
    "ip -d link": (["ip", "-d", "link"], parse_ip_link, format_ip_link),  # type: ignore[dict-item]
    "ip -o link": (["ip", "-o", "link"], parse_ip_link_oneline, format_ip_link_oneline),  # type: ignore[dict-item]
    "ip route": (["ip", "route"], parse_ip_route, format_ip_route),  # type: ignore[dict-item]
    "ip -6 route": (["ip", "-6", "route"], parse_ip_route, format_ip_route),  # type: ignore[dict-item]
    "ip route show table all": (["ip", "route", "show", "table", "all"], parse_ip_route,
                                format_ip_route),  # type: ignore[dict-item]
    "ip rule": (["ip", "rule"], parse_ip_rule, format_ip_rule),  # type: ignore[dict-item]
    "ip neigh": (["ip", "neigh"], parse_ip_neigh, format_ip_neigh),  # type: ignore[dict-item]
    "ip netns list": (["ip", "netns", "list"], parse_ip_netns, format_ip_netns),  # type: ignore[dict-item]
    "ifconfig -a": (["ifconfig", "-a"], parse_ifconfig, format_ifconfig),  # type: ignore[dict-item]
    "route -n": (["route", "-n"], parse_route_n, format_route_n),  # type: ignore[dict-item]
    "arp -n": (["arp", "-n"], parse_arp_n, format_arp_n),  # type: ignore[dict-item]
    "brctl show": (["brctl", "show"], parse_brctl_show, format_brctl_show),  # type: ignore[dict-item]
}


def test_real_tools_output_round_trips(netns: str, peer_netns: str) -> None:
    _build(netns, peer_netns)
    for name, (argv, parse, fmt) in CAPTURES.items():
        text = run(argv, netns=netns).stdout
        assert text.strip(), name
        parsed = parse(text)
        _same(text, fmt(parsed))

    links = {lk.name: lk for lk in parse_ip_link(run(["ip", "-d", "link"], netns=netns).stdout)}
    assert links["br0"].kind is LinkKind.BRIDGE and links["vx0"].kind is LinkKind.VXLAN
    assert links["tap0"].kind is LinkKind.TAP and links["tap0"].alias == "stand-in for a dummy device"
    va0 = links["va0"]
    assert va0.kind is LinkKind.VETH and va0.promisc and va0.link_netns == peer_netns
    assert va0.peer is not None and va0.peer.startswith("if")
    assert links["p0"].master == "br0" and links["p0"].details is not None
    assert links["p0"].details.slave_kind == "bridge_slave"
    vx = links["vx0"].details
    assert vx is not None and (vx.vni, vx.remote, vx.dev, vx.dstport) == (42, "192.0.2.2", "va0", 4789)

    addrs = {lk.name: lk for lk in parse_ip_addr(run(["ip", "addr"], netns=netns).stdout)}
    v4 = [a for a in addrs["va0"].addresses if a.interface.version == 4]
    assert [str(a.interface) for a in v4] == ["10.1.0.1/24", "10.1.0.9/24"] and v4[1].secondary
    assert any(a.label == "br0:gw" for a in addrs["br0"].addresses)
    assert any(a.interface.ip.is_link_local for a in addrs["p1"].addresses)  # kernel-assigned, read not assumed

    routes = parse_ip_route(run(["ip", "route", "show", "table", "all"], netns=netns).stdout)
    assert any(r.type == "unreachable" for r in routes) and any(r.table == "local" for r in routes)
    assert any(len(r.nexthops) == 2 for r in routes)
    assert any(r.table == "100" and r.dst == ipaddress.ip_network("203.0.113.0/24") for r in routes)
    bridges = parse_brctl_show(run(["brctl", "show"], netns=netns).stdout)
    assert bridges[0].name == "br0" and bridges[0].interfaces == ("p0", "q0")
    arp = parse_arp_n(run(["arp", "-n"], netns=netns).stdout)
    assert any(e.flags == "CM" and e.hwaddr == "fa:16:3e:11:22:33" for e in arp)
    netnss = {n.name: n for n in parse_ip_netns(run(["ip", "netns", "list"], netns=netns).stdout)}
    assert netns in netnss and peer_netns in netnss


@pytest.mark.parametrize("kind", ["gre"])
def test_kernel_has_no_gre_devices(netns: str, kind: str) -> None:
    res = run(["ip", "link", "add", "g0", "type", kind, "remote", "192.0.2.2", "local", "192.0.2.1"], netns=netns,
              check=False)
    assert res.returncode != 0 and "Unknown device type" in res.stderr


def test_real_dnsmasq_command_line_as_ps_prints_it(netns: str, peer_netns: str, tmp_path: pathlib.Path) -> None:
    run(["ip", "link", "add", "ns-f14c598d-98", "type", "veth", "peer", "name", "tapf14c598d-98", "netns",
         peer_netns], netns=netns)
    run(["ip", "addr", "add", "10.1.0.3/24", "dev", "ns-f14c598d-98"], netns=netns)
    run(["ip", "link", "set", "ns-f14c598d-98", "up"], netns=netns)
    for name in ("host", "opts"):
        (tmp_path / name).write_text("")
    pid_file = tmp_path / "pid"
    argv = ["dnsmasq", "--no-hosts", "--no-resolv", "--strict-order", "--bind-interfaces",
            "--interface=ns-f14c598d-98", "--except-interface=lo", f"--pid-file={pid_file}",
            f"--dhcp-hostsfile={tmp_path / 'host'}", f"--dhcp-optsfile={tmp_path / 'opts'}", "--leasefile-ro",
            "--dhcp-range=tag0,10.1.0.0,static,120s", "--conf-file=", "--domain=openstacklocal", "--port=0"]
    run(argv, netns=netns)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(), what="dnsmasq pid file")
    pid = int(pid_file.read_text())
    try:
        cmdline = argv_from_cmdline(pathlib.Path(f"/proc/{pid}/cmdline").read_bytes())
        assert list(cmdline) == argv
        ps = run(["ps", "-fe", "-ww"]).stdout  # -ww: no truncation to 80 columns off a terminal
        (line,) = [ln for ln in ps.splitlines() if ln.split()[1] == str(pid)]
        proc = parse_ps_line(line)
        assert proc.pid == pid and proc.argv == tuple(argv)
        assert proc.options.interface == "ns-f14c598d-98" and proc.options.pid_file == str(pid_file)
        assert format_ps_line(proc).split() == line.split()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
