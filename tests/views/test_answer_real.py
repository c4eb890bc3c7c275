"""What ``neutrino exec`` derives for a planned host, held to what the real tools print for the same
state (iproute2 6.1, net-tools, Open vSwitch 3.1 on its userspace datapath), in throwaway namespaces:
``ip -br addr``/``ip -br link``, ``ip -s link``, the kernel's routes for a namespace's addresses
(``ip route show table all``, ``route -n``), the default ``ip rule``, the empty neighbour table, and
``ovs-vsctl list-br``/``list-ports``/``--columns list Bridge``, ``ovs-appctl fdb/show``,
``ovs-ofctl dump-ports`` and the datapath (``dpctl/show``)."""

from __future__ import annotations

import os
import re

import pytest

from neutrino.host.iproute_link import parse_ip_addr, parse_ip_link
from neutrino.host.ofctl_show import parse_ofctl_show
from neutrino.host.ovsdb import parse_vsctl_show
from neutrino.host.state import BridgeFlows, HostState, NamespaceState, Origin, OvsState
from neutrino.ingest.captures import apply_capture
from neutrino.ingest.commands import parse_command
from neutrino.linux.ovs import OvsInstance
from neutrino.linux.runner import run
from neutrino.views.answer import answer

pytestmark = pytest.mark.root

PLANNED = (Origin("link", "lo", "test", "test"),)  # origins mark a host as planned


def sh(netns: str, script: str) -> str:
    return run(["sh", "-c", script], netns=netns).stdout


def planned_host(netns: str) -> HostState:
    links = parse_ip_addr(sh(netns, "ip addr"))
    return HostState("h", namespaces=(NamespaceState(links=links),), origins=PLANNED)


def ask(host: HostState, command: str) -> str:
    return answer(host, parse_command(command))


@pytest.fixture
def addressed(netns: str) -> str:
    """A veth pair and a dummy with IPv4 and IPv6 addresses (no DAD, so the routes are there at once)."""
    sh(netns, "sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0; ip link set lo up; "
              "ip link add v0 type veth peer name v1; ip link add d0 type dummy; "
              "ip addr add 10.9.0.1/24 dev v0; ip addr add 10.9.1.1/30 brd + dev v0; "
              "ip addr add 172.16.5.1/16 dev d0; ip -6 addr add 2001:db8::1/64 dev v0; "
              "ip link set v0 up; ip link set v1 up; ip link set d0 up; ip link add v9 type veth peer name v8")
    return netns


def test_brief_addr_and_link(addressed: str) -> None:
    host = planned_host(addressed)
    assert ask(host, "ip -br addr") == sh(addressed, "ip -br addr")
    assert ask(host, "ip -br link") == sh(addressed, "ip -br link")
    assert "v0@v1            UP             10.9.0.1/24 10.9.1.1/30 2001:db8::1/64 fe80::" in ask(host, "ip -br a")


def test_routes_derived_from_addresses(addressed: str) -> None:
    host = planned_host(addressed)
    for command in ("ip route", "ip route show table all", "ip route show table local", "ip -6 route", "route -n"):
        assert ask(host, command) == sh(addressed, command), command
    assert "10.9.1.3 dev v0 table local" in ask(host, "ip route show table all")  # the /30's broadcast


def test_default_rules_and_empty_neighbours(addressed: str) -> None:
    host = planned_host(addressed)
    for command in ("ip rule", "ip -6 rule", "arp -n", "ip neigh"):
        assert ask(host, command) == sh(addressed, command), command
    assert ask(host, "ip rule").splitlines()[1] == "32766:\tfrom all lookup main"


def test_stats_of_devices_that_counted_nothing(netns: str) -> None:
    """With IPv6 off nothing sends a packet, so every counter is zero, as on a planned host."""
    sh(netns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; "
              "ip link add v0 type veth peer name v1; ip link set v0 up; ip link set v1 up")
    links = parse_ip_link(sh(netns, "ip link"))
    host = HostState("h", namespaces=(NamespaceState(links=links),), origins=PLANNED)
    real = sh(netns, "ip -s link")
    assert ask(host, "ip -s link") == real
    assert "    RX:  bytes packets errors dropped  missed   mcast           \n" in real
    imported = HostState("h", namespaces=(NamespaceState(links=links),))
    with pytest.raises(Exception, match="counters"):
        ask(imported, "ip -s link")


@pytest.fixture
def bridges(ovs: OvsInstance) -> OvsInstance:
    v = ovs.vsctl
    v("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "fail_mode=secure",
      "--", "add-port", "br-int", "patch-tun", "--", "set", "interface", "patch-tun", "type=patch",
      "options:peer=patch-int",
      "--", "add-port", "br-int", "qvo1", "tag=1", "--", "set", "interface", "qvo1", "type=internal")
    v("add-br", "br-tun", "--", "set", "bridge", "br-tun", "datapath_type=netdev", "protocols=OpenFlow10,OpenFlow13",
      "--", "add-port", "br-tun", "patch-int", "--", "set", "interface", "patch-int", "type=patch",
      "options:peer=patch-tun",
      "--", "add-port", "br-tun", "gre-1", "--", "set", "interface", "gre-1", "type=gre",
      "options:remote_ip=192.168.0.2",
      "--", "add-port", "br-tun", "vxlan-1", "--", "set", "interface", "vxlan-1", "type=vxlan",
      "options:remote_ip=192.168.0.3")
    return ovs


def ovs_host(inst: OvsInstance) -> HostState:
    """The host as its captures give it (``list Bridge`` adds the protocols ``show`` leaves out)."""
    show = parse_vsctl_show(inst.vsctl("show").stdout)
    flows = tuple(BridgeFlows(b, ports=parse_ofctl_show(inst.ofctl("show", b).stdout)) for b in ("br-int", "br-tun"))
    host = HostState("h", ovs=OvsState(show=show, bridges=flows), origins=PLANNED)
    listing = "--columns=name,datapath_id,protocols list Bridge"
    return apply_capture(host, parse_command("ovs-vsctl " + listing), inst.vsctl(*listing.split()).stdout)


def _blocks(text: str) -> set[str]:
    """dump-ports' per-port blocks (OVS prints them in hash order)."""
    lines = text.splitlines()
    return {lines[i] + "\n" + lines[i + 1] for i in range(1, len(lines), 2)}


def test_vsctl_appctl_ofctl(bridges: OvsInstance) -> None:
    host = ovs_host(bridges)
    assert ask(host, "ovs-vsctl list-br") == bridges.vsctl("list-br").stdout
    for br in ("br-int", "br-tun"):
        assert ask(host, f"ovs-vsctl list-ports {br}") == bridges.vsctl("list-ports", br).stdout
        real = bridges.ofctl("dump-ports", br).stdout
        ours = ask(host, f"ovs-ofctl dump-ports {br}")
        assert ours.splitlines()[0] == real.splitlines()[0] and _blocks(ours) == _blocks(real)
    columns = "--columns=name,datapath_id,datapath_type,fail_mode,protocols"
    assert ask(host, f"ovs-vsctl {columns} list Bridge br-tun") == bridges.vsctl(columns, "list", "Bridge",
                                                                               "br-tun").stdout
    ctl = os.path.join(bridges.rundir, "ovs-vswitchd.ctl")
    appctl = ["ovs-appctl", "-t", ctl]
    assert ask(host, "ovs-appctl fdb/show br-int") == run([*appctl, "fdb/show", "br-int"], netns=bridges.netns,
                                                          env=bridges.env).stdout
    real_dp = run([*appctl, "dpctl/show"], netns=bridges.netns, env=bridges.env).stdout
    ours_dp = ask(host, "ovs-appctl dpctl/show")

    def ports(text: str) -> set[str]:  # the kernel numbers ports in the order they were added
        return {re.sub(r"port \d+", "port N", ln) for ln in text.splitlines() if ln.startswith("  port ")}

    assert ours_dp.splitlines()[:3] == real_dp.splitlines()[:3]
    assert ports(ours_dp) == ports(real_dp)
    assert "  port N: gre_sys (gre: packet_type=ptap)" in ports(ours_dp)
