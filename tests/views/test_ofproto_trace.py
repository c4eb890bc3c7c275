"""``neutrino exec HOST -- ovs-appctl ofproto/trace BRIDGE FLOW``: the simulator's OpenFlow
interpreter, printed as OVS 3.1 prints a trace (the expected texts below are the real tool's, for
the same flows on the Linux backend, its native-tunnel and br-phy lines aside)."""

from __future__ import annotations

import re

import pytest

from neutrino.host.openflow import parse_dump_flows
from neutrino.host.ovsdb import Bridge, Interface, OvsdbShow, Port
from neutrino.host.state import BridgeFlows, HostState, OvsState
from neutrino.views.ofproto_trace import Node, TraceRequest, ofproto_trace, print_nodes

from .conftest import Run

CIRROS = "dl_src=fa:16:3e:30:80:d4,dl_dst=fa:16:3e:6a:3f:36,icmp,nw_src=10.1.0.2,nw_dst=8.8.8.8"


def test_br_tun_grizzly_flow_as_ovs_prints_it(seeds, neutrino: Run) -> None:
    seeds("seed000")
    rc, out, err = neutrino("exec", "compute", "--", "ovs-appctl", "ofproto/trace", "br-tun",
                            f"in_port=1,dl_vlan=1,{CIRROS}")
    assert rc == 0, err
    head = out.split("\nFinal flow: ")[0]
    assert head == (
        "Flow: icmp,in_port=1,dl_vlan=1,dl_vlan_pcp=0,vlan_tci1=0x0000,dl_src=fa:16:3e:30:80:d4,"
        "dl_dst=fa:16:3e:6a:3f:36,nw_src=10.1.0.2,nw_dst=8.8.8.8,nw_tos=0,nw_ecn=0,nw_ttl=0,nw_frag=no,"
        "icmp_type=0,icmp_code=0\n"
        "\n"
        'bridge("br-tun")\n'
        "----------------\n"
        " 0. in_port=1,dl_vlan=1, priority 4\n"
        "    set_tunnel:0x2\n"
        "    NORMAL\n"
        "     -> no learned MAC for destination, flooding\n"
        "     -> output to kernel tunnel\n")
    final = out.split("\nFinal flow: ")[1].splitlines()[0]
    assert final.startswith("icmp,tun_id=0x2,in_port=1,dl_vlan=1,")  # set_tunnel changed the flow
    # flooded: to the bridge's own port (3) and the kernel datapath's GRE port (gre_sys, 4 in ovs-dpctl
    # show), with the tunnel key and the far end
    assert out.endswith("Datapath actions: 3,set(tunnel(tun_id=0x2,dst=192.168.122.10,ttl=64,flags(df|key))),4\n")


def test_patch_port_followed_into_the_peer_bridge(seeds, neutrino: Run) -> None:
    """From the instance's qvo (named, as OVS accepts), NORMAL floods it (the router's MAC is not
    learned yet) to br-int's own port and over patch-tun: br-tun's trace follows in its own section,
    and the VLAN of the access port is pushed before anything leaves."""
    seeds("seed000")
    rc, out, _ = neutrino("exec", "compute", "--", "ovs-appctl", "ofproto/trace", "br-int",
                          f"in_port=qvo61e31514-15,{CIRROS}", "--names")
    assert rc == 0
    assert out.startswith('Flow: icmp,in_port="qvo61e31514-15",vlan_tci=0x0000,dl_src=fa:16:3e:30:80:d4,')
    assert ('\nbridge("br-int")\n----------------\n 0. priority 1\n    NORMAL\n'
            '     -> no learned MAC for destination, flooding\n\nbridge("br-tun")\n----------------\n'
            ' 0. in_port="patch-int",dl_vlan=1, priority 4\n    set_tunnel:0x2\n') in out
    assert "\nFinal flow: unchanged\n" in out  # what the peer bridge did is not the flow's
    assert out.endswith("Datapath actions: push_vlan(vid=1,pcp=0),br-int,br-tun,"
                        "set(tunnel(tun_id=0x2,dst=192.168.122.10,ttl=64,flags(df|key))),gre_sys\n")


def test_unknown_destination_floods_and_a_miss_drops(seeds, neutrino: Run) -> None:
    seeds("seed000")
    rc, out, _ = neutrino("exec", "network", "--", "ovs-appctl", "ofproto/trace", "br-tun",
                          "in_port=2,tun_id=0x9,dl_dst=fa:16:3e:30:80:d4,ip")
    assert rc == 0
    assert " 0. priority 1\n    drop\n" in out and out.endswith("Datapath actions: drop\n")
    rc, out, _ = neutrino("exec", "network", "--", "ovs-appctl", "ofproto/trace", "br-int",
                          "in_port=tap9f606bd8-91,dl_src=fa:16:3e:6a:3f:36,dl_dst=ff:ff:ff:ff:ff:ff,arp,"
                          "arp_spa=10.1.0.1,arp_tpa=10.1.0.9,arp_op=1")
    assert rc == 0
    assert out.startswith("Flow: arp,in_port=2,vlan_tci=0x0000,dl_src=fa:16:3e:6a:3f:36,dl_dst=ff:ff:ff:ff:ff:ff,"
                          "arp_spa=10.1.0.1,arp_tpa=10.1.0.9,arp_op=1,arp_sha=00:00:00:00:00:00,"
                          "arp_tha=00:00:00:00:00:00\n")
    assert "     -> no learned MAC for destination, flooding\n" in out
    assert 'bridge("br-tun")' in out  # flooded over the patch port too
    # tagged to the trunks (br-int's own port, br-tun's, the tunnel), untagged to the DHCP port
    assert out.endswith("Datapath actions: push_vlan(vid=1,pcp=0),1,4,"
                        "set(tunnel(tun_id=0x2,dst=192.168.122.11,ttl=64,flags(df|key))),5,pop_vlan,3\n")


def test_modern_pipeline_resubmits_nest_tables(seeds, neutrino: Run) -> None:
    """Seed 001 (modern Neutron, VXLAN): the tunnel's table 4 resubmits to 10, where learn runs."""
    seeds("seed001")
    rc, dump, _ = neutrino("exec", "compute01", "--", "ovs-ofctl", "dump-flows", "br-tun")
    assert rc == 0
    vni_flow = next(ln for ln in dump.splitlines() if "table=4" in ln and "tun_id=" in ln)
    vni = vni_flow.split("tun_id=")[1].split(" ")[0]
    rc, show, _ = neutrino("exec", "compute01", "--", "ovs-ofctl", "show", "br-tun")
    port = next(ln.split("(")[0].strip() for ln in show.splitlines() if "(vxlan-" in ln)
    rc, out, err = neutrino("exec", "compute01", "--", "ovs-appctl", "ofproto/trace", "br-tun",
                            f"in_port={port},tun_id={vni},dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,ip")
    assert rc == 0, err
    assert " 4. tun_id=" in out and "resubmit(,10)" in out and "\n10. priority 1" in out
    assert "learn(" in out
    # the tables visited in order, each at its depth: 0 -> 4 -> 10
    tables = re.findall(r"(?m)^ ?(\d+)\. ", out)
    assert tables == ["0", "4", "10", "0", "58", "59", "60"]  # br-tun's, then br-int's behind patch-int


def test_bad_input_is_one_line(seeds, neutrino: Run) -> None:
    seeds("seed000")
    rc, out, err = neutrino("exec", "compute", "--", "ovs-appctl", "ofproto/trace", "br-nope", "in_port=1")
    assert rc != 0 and "br-nope: unknown bridge" in err and "Traceback" not in err
    rc, out, err = neutrino("exec", "compute", "--", "ovs-appctl", "ofproto/trace", "br-int", "in_port=1,frob=3")
    assert rc != 0 and "Bad openflow flow syntax" in err and "frob" in err


def test_printing_follows_ovs_indentation() -> None:
    """The last table of a list stays at its parent's level (a tail resubmit); others indent by 4."""
    tree = [Node("bridge", 'bridge("br")', [
        Node("table", " 0. priority 1", [Node("action", "resubmit(,1)"),
                                          Node("table", " 1. priority 1", [Node("action", "output:2")]),
                                          Node("action", "resubmit(,2)"),
                                          Node("table", " 2. priority 1", [Node("action", "drop")])])])]
    assert print_nodes(tree) == (
        '\nbridge("br")\n------------\n 0. priority 1\n    resubmit(,1)\n     1. priority 1\n'
        "            output:2\n    resubmit(,2)\n 2. priority 1\n    drop\n")


def test_standalone_bridge_without_flows_switches_normally() -> None:
    br = Bridge("br0", ports=(Port("br0", (Interface("br0", "internal"),)), Port("p1", (Interface("p1"),)),
                              Port("p2", (Interface("p2"),))))
    host = HostState("h", ovs=OvsState(show=OvsdbShow(None, (br,)),
                                       bridges=(BridgeFlows("br0", parse_dump_flows(""), None),)))
    out = ofproto_trace(host, TraceRequest("br0", "in_port=1,dl_dst=ff:ff:ff:ff:ff:ff"))
    assert "no learned MAC for destination, flooding" in out
    assert out.endswith("Datapath actions: 1,2\n") or out.endswith("Datapath actions: 1,3\n")


@pytest.mark.parametrize("flow", ["in_port=1,dl_type=0x86dd", "in_port=1,nw_src=not-an-ip"])
def test_flows_the_simulator_cannot_build(flow: str) -> None:
    br = Bridge("br0", ports=(Port("p1", (Interface("p1"),)),))
    host = HostState("h", ovs=OvsState(show=OvsdbShow(None, (br,)), bridges=()))
    from neutrino.errors import InvalidInput

    with pytest.raises(InvalidInput):
        ofproto_trace(host, TraceRequest("br0", flow))


def test_generate_and_a_target_are_accepted(seeds, neutrino: Run) -> None:
    """``-generate`` (trace a packet built from the flow) changes nothing here; ``-t TARGET`` before the
    command names the daemon, which for neutrino is the host's."""
    seeds("seed000")
    plain = neutrino("exec", "compute", "--", "ovs-appctl", "ofproto/trace", "br-tun", f"in_port=1,dl_vlan=1,{CIRROS}")
    generated = neutrino("exec", "compute", "--", "ovs-appctl", "-t", "ovs-vswitchd", "ofproto/trace", "br-tun",
                         f"in_port=1,dl_vlan=1,{CIRROS}", "-generate")
    assert plain[0] == generated[0] == 0 and plain[1] == generated[1] and plain[1].startswith("Flow: icmp,")
