"""The command grammar shared by `neutrino import` (file names) and `neutrino exec`."""

from __future__ import annotations

import pytest

from neutrino.errors import InvalidInput
from neutrino.ingest.commands import Grep, View, parse_command

CASES = [
    ("ovs-vsctl show", View.VSCTL_SHOW, "", "", "", set()),
    ("ovs-ofctl dump-flows br-tun", View.OFCTL_DUMP_FLOWS, "", "", "br-tun", set()),
    ("ovs-ofctl -O OpenFlow13 dump-flows br-int", View.OFCTL_DUMP_FLOWS, "", "", "br-int", {"OF13"}),
    ("ovs-ofctl show br-tun", View.OFCTL_SHOW, "", "", "br-tun", set()),
    ("iptables -S", View.IPTABLES_S, "", "filter", "", set()),
    ("iptables -t nat -S", View.IPTABLES_S, "", "nat", "", set()),
    ("iptables -nvL neutron-openvswi-o0db0e25b-0", View.IPTABLES_L, "", "filter", "neutron-openvswi-o0db0e25b-0",
     {"-n", "-v"}),
    ("iptables -t nat -nvL", View.IPTABLES_L, "", "nat", "", {"-n", "-v"}),
    ("iptables -L -n -v -x", View.IPTABLES_L, "", "filter", "", {"-n", "-v", "-x"}),
    ("iptables-save -c -t raw", View.IPTABLES_SAVE, "", "raw", "", {"-c"}),
    ("ip netns", View.IP_NETNS, "", "", "", set()),
    ("ip netns list", View.IP_NETNS, "", "", "", set()),
    ("ip netns exec qrouter-2d214fde ip route", View.IP_ROUTE, "qrouter-2d214fde", "", "", set()),
    ("ip netns exec qdhcp-1 ip a", View.IP_ADDR, "qdhcp-1", "", "", set()),
    ("ip -o addr show dev eth0", View.IP_ADDR, "", "", "eth0", {"-o"}),
    ("ip route show table all", View.IP_ROUTE, "", "all", "", set()),
    ("ip -d link", View.IP_LINK, "", "", "", {"-d"}),
    ("ovs-vsctl --columns=name,protocols list Bridge", View.VSCTL_LIST, "", "Bridge", "",
     {"columns:name,protocols"}),
    ("ovs-vsctl list Bridge br-int", View.VSCTL_LIST, "", "Bridge", "br-int", set()),
    ("sudo ifconfig -a", View.IFCONFIG, "", "", "", {"-a"}),
    ("route -n", View.ROUTE_N, "", "", "", set()),
    ("arp -n", View.ARP_N, "", "", "", set()),
    ("brctl show", View.BRCTL_SHOW, "", "", "", set()),
    ("# ps -fe", View.PS, "", "", "", {"-fe"}),
    ("cat /var/lib/nova/networks/nova-br100.conf", View.CAT, "", "", "/var/lib/nova/networks/nova-br100.conf",
     set()),
]


@pytest.mark.parametrize("text,view,netns,table,target,options", CASES, ids=[c[0] for c in CASES])
def test_commands_are_read(text, view, netns, table, target, options):
    cmd = parse_command(text)
    assert (cmd.view, cmd.netns, cmd.table, cmd.target) == (view, netns, table, target)
    assert set(cmd.options) == options


def test_grep_filters_are_kept_in_order():
    cmd = parse_command("ovs-vsctl show|grep -C10 46db | grep -v tag")
    assert cmd.greps == (Grep("46db", context=10), Grep("tag", invert=True))


def test_grep_context_prints_separators_like_grep():
    text = "a\nb\nhit1\nc\nd\ne\nf\nhit2\ng\n"
    assert Grep("hit", context=1).apply(text) == "b\nhit1\nc\n--\nf\nhit2\ng\n"
    assert Grep("hit", invert=True).apply("hit\nmiss\n") == "miss\n"


BAD = ["", "rm -rf /", "ovs-vsctl add-br x", "iptables -A INPUT -j DROP", "ip link set eth0 up",
       "ip netns exec", "ip route | sort", "iptables -Z", "ovs-ofctl add-flow br0 actions=drop"]


@pytest.mark.parametrize("text", BAD)
def test_commands_neutrino_does_not_answer_are_refused_in_one_line(text):
    with pytest.raises(InvalidInput) as info:
        parse_command(text)
    assert "\n" not in str(info.value)
