"""Capture a real host (a throwaway namespace with a private Open vSwitch), import the captures,
and check `neutrino exec` answers every command exactly as the real tool printed it."""

from __future__ import annotations

import re

import pytest

from neutrino.ingest.captures import read_capture_dir
from neutrino.ingest.commands import parse_command
from neutrino.linux.runner import run
from neutrino.views.answer import answer

pytestmark = pytest.mark.root
COUNTERS = re.compile(r"\[\d+:\d+\]")

RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-filter-top - [0:0]
:neutron-openvswi-FORWARD - [0:0]
:neutron-openvswi-sg-chain - [0:0]
-A FORWARD -j neutron-filter-top
-A FORWARD -j neutron-openvswi-FORWARD
-A neutron-openvswi-FORWARD -m physdev --physdev-out tap3f2a1b7c-d4 --physdev-is-bridged -m comment --comment "Direct traffic from the VM interface to the security group chain." -j neutron-openvswi-sg-chain
-A neutron-openvswi-sg-chain -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:neutron-l3-agent-PREROUTING - [0:0]
-A PREROUTING -j neutron-l3-agent-PREROUTING
-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697
-A neutron-l3-agent-PREROUTING -d 203.0.113.20/32 -j DNAT --to-destination 10.0.0.5
COMMIT
"""

COMMANDS = [
    "ip addr", "ip -o addr", "ip link", "ip route", "ip route show table all", "ip rule", "ip neigh",
    "ifconfig -a", "route -n", "arp -n", "brctl show",
    "iptables-save", "iptables -S", "iptables -t nat -S", "iptables -nvL", "iptables -t nat -nvL",
    "iptables -S neutron-openvswi-FORWARD",
    "ovs-vsctl show", "ovs-ofctl dump-flows br-tun", "ovs-ofctl show br-tun",
]


def _real(ovs, command: str) -> str:
    words = command.split()
    if words[0] == "ovs-vsctl":
        return ovs.vsctl(*words[1:]).stdout
    if words[0] == "ovs-ofctl":
        return ovs.ofctl(words[1], words[2], *words[3:]).stdout
    return run(words, netns=ovs.netns).stdout


def test_captured_host_is_answered_exactly(ovs, tmp_path):
    ns = ovs.netns
    for argv in (["ip", "link", "add", "qbr3f2a1b7c-d4", "type", "bridge"],
                 ["ip", "link", "add", "qvb3f2a1b7c-d4", "type", "veth", "peer", "name", "qvo3f2a1b7c-d4"],
                 ["ip", "link", "set", "qvb3f2a1b7c-d4", "master", "qbr3f2a1b7c-d4"],
                 ["ip", "link", "set", "qvb3f2a1b7c-d4", "up"], ["ip", "link", "set", "qbr3f2a1b7c-d4", "up"],
                 ["ip", "addr", "add", "10.0.0.1/24", "dev", "qbr3f2a1b7c-d4"],
                 ["ip", "route", "add", "default", "via", "10.0.0.254"],
                 ["ip", "route", "add", "192.0.2.0/24", "via", "10.0.0.253", "table", "100"],
                 ["ip", "rule", "add", "from", "10.0.0.0/24", "table", "100"],
                 ["ip", "neigh", "add", "10.0.0.9", "lladdr", "fa:16:3e:11:22:33", "dev", "qbr3f2a1b7c-d4"]):
        run(argv, netns=ns)
    run(["iptables-restore"], netns=ns, input=RULES)
    ovs.vsctl("add-br", "br-tun", "--", "set", "bridge", "br-tun", "datapath_type=netdev", "fail_mode=secure")
    ovs.vsctl("add-port", "br-tun", "patch-int", "--", "set", "interface", "patch-int", "type=patch",
              "options:peer=patch-tun")
    ovs.vsctl("add-port", "br-tun", "vxlan-c0a80002", "--", "set", "interface", "vxlan-c0a80002", "type=vxlan",
              "options:df_default=true", "options:in_key=flow", "options:local_ip=192.168.0.1",
              "options:out_key=flow", "options:remote_ip=192.168.0.2")
    ovs.ofctl("add-flow", "br-tun", "priority=1,in_port=1 actions=resubmit(,2)")
    ovs.ofctl("add-flow", "br-tun", "table=4,priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)")
    ovs.ofctl("add-flow", "br-tun", "table=22,priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x64,output:2")

    captures = tmp_path / "captures"
    captures.mkdir()
    real = {}
    for i, command in enumerate(COMMANDS):
        real[command] = _real(ovs, command)
        (captures / f"{i:02d}.txt").write_text(f"$ {command}\n{real[command]}")
    host = read_capture_dir(captures, "real")
    for command in COMMANDS:
        if command.startswith("ovs-ofctl dump-flows"):
            continue  # durations and idle ages move on between the capture and now: compared below
        got = answer(host, parse_command(command))
        want = real[command]
        if command == "iptables-save":
            # a packet may cross a chain between this capture and the later -nvL one, whose
            # counters are the newer word; the rules themselves must agree exactly
            got, want = COUNTERS.sub("[*]", got), COUNTERS.sub("[*]", want)
        assert [ln.rstrip() for ln in got.splitlines()] == [ln.rstrip() for ln in want.splitlines()], command
    got = answer(host, parse_command("ovs-ofctl dump-flows br-tun"))
    assert got == real["ovs-ofctl dump-flows br-tun"]
    # and in another namespace of the same host, the same words find nothing captured there
    with pytest.raises(Exception, match="qrouter-x"):
        answer(host, parse_command("ip netns exec qrouter-x ip addr"))
