"""The OVS bridge interpreter on the seeds' and the reference's flow tables: seed 000's single-table
Grizzly br-tun, the modern br-tun pipeline (learn, l2pop, ARP responder), br-int's anti-spoofing and
local-VLAN switching, and the provider-VLAN translation between br-ex and br-int."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from neutrino.errors import InvalidInput
from neutrino.host.ofctl_show import parse_ofctl_show
from neutrino.host.openflow import format_add_flow, parse_dump_flows
from neutrino.host.ovsdb import Bridge, Interface, Port
from neutrino.sim.ovs import Emit, Meta, OvsBridgeSim, Result
from neutrino.sim.packets import (
    ARP,
    BROADCAST,
    ARPOp,
    Ethernet,
    Mac,
    arp_request,
    echo_request,
    ip,
    mac,
    network_layer,
    push_vlan,
    vlan_ids,
)
from neutrino.sim.trace import StepKind
from tests.reference import BR_INT_HYBRID

VM = mac("fa:16:3e:dd:c1:62")  # seed 000's instance
REMOTE = mac("fa:16:3e:83:69:cc")  # seed 000's DHCP server, on the network host
P_MAC = mac("fa:16:3e:11:22:33")  # the reference's port P
P_IP = ip("10.0.0.5")


def flow_texts(result: Result, kind: StepKind = StepKind.FLOW) -> list[str]:
    return [s.text for s in result.steps if s.kind is kind]


def only(result: Result) -> Emit:
    assert len(result.outputs) == 1, result
    return result.outputs[0]


def ping(src: Mac = VM, dst: Mac = REMOTE) -> Ethernet:
    return echo_request(src, dst, ip("10.1.0.2"), ip("10.1.0.3"))


# --- seed 000: the Grizzly single-table br-tun --------------------------------------------------------

SEED000_SHOW = """\
OFPT_FEATURES_REPLY (xid=0x2): dpid:0000068df4e44a49
n_tables:254, n_buffers:256
capabilities: FLOW_STATS TABLE_STATS PORT_STATS QUEUE_STATS ARP_MATCH_IP
actions: OUTPUT SET_VLAN_VID SET_VLAN_PCP STRIP_VLAN SET_DL_SRC SET_DL_DST SET_NW_SRC SET_NW_DST SET_NW_TOS SET_TP_SRC SET_TP_DST ENQUEUE
 1(patch-int): addr:46:3d:59:17:df:62
     config:     0
     state:      0
     speed: 0 Mbps now, 0 Mbps max
 2(gre-2): addr:a2:5f:a1:92:29:02
     config:     0
     state:      0
     speed: 0 Mbps now, 0 Mbps max
 LOCAL(br-tun): addr:06:8d:f4:e4:4a:49
     config:     0
     state:      0
     speed: 0 Mbps now, 0 Mbps max
OFPT_GET_CONFIG_REPLY (xid=0x4): frags=normal miss_send_len=0
"""

SEED000_COMPUTE = """\
NXST_FLOW reply (xid=0x4):
 cookie=0x0, duration=422.158s, table=0, n_packets=2, n_bytes=120, idle_age=55, priority=3,tun_id=0x2,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=mod_vlan_vid:1,output:1
 cookie=0x0, duration=421.948s, table=0, n_packets=64, n_bytes=8337, idle_age=31, priority=3,tun_id=0x2,dl_dst=fa:16:3e:dd:c1:62 actions=mod_vlan_vid:1,NORMAL
 cookie=0x0, duration=422.357s, table=0, n_packets=82, n_bytes=10443, idle_age=31, priority=4,in_port=1,dl_vlan=1 actions=set_tunnel:0x2,NORMAL
 cookie=0x0, duration=1502.657s, table=0, n_packets=8, n_bytes=596, idle_age=423, priority=1 actions=drop
"""

SEED000_NETWORK = """\
NXST_FLOW reply (xid=0x4):
 cookie=0x0, duration=1239.229s, table=0, n_packets=23, n_bytes=4246, idle_age=15, priority=3,tun_id=0x2,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=mod_vlan_vid:1,output:1
 cookie=0x0, duration=524.477s, table=0, n_packets=15, n_bytes=3498, idle_age=10, priority=3,tun_id=0x2,dl_dst=fa:16:3e:83:69:cc actions=mod_vlan_vid:1,NORMAL
 cookie=0x0, duration=1239.157s, table=0, n_packets=50, n_bytes=4565, idle_age=148, priority=3,tun_id=0x2,dl_dst=fa:16:3e:aa:99:3c actions=mod_vlan_vid:1,NORMAL
 cookie=0x0, duration=1239.304s, table=0, n_packets=76, n_bytes=9419, idle_age=10, priority=4,in_port=1,dl_vlan=1 actions=set_tunnel:0x2,NORMAL
 cookie=0x0, duration=1527.016s, table=0, n_packets=12, n_bytes=880, idle_age=527, priority=1 actions=drop
"""


def grizzly_br_tun(dump: str, remote: str) -> OvsBridgeSim:
    bridge = Bridge("br-tun", ports=(
        Port("patch-int", (Interface("patch-int", "patch", (("peer", "patch-tun"),)),)),
        Port("gre-2", (Interface("gre-2", "gre", (("remote_ip", remote),)),)),
        Port("br-tun", (Interface("br-tun", "internal"),)),
    ))
    return OvsBridgeSim(bridge, parse_dump_flows(dump), parse_ofctl_show(SEED000_SHOW))


@pytest.fixture(params=[(SEED000_COMPUTE, VM, "192.168.0.11"), (SEED000_NETWORK, REMOTE, "192.168.0.10")],
                ids=["compute", "network"])
def grizzly(request: pytest.FixtureRequest) -> tuple[OvsBridgeSim, Mac]:
    dump, local_mac, remote = request.param
    return grizzly_br_tun(dump, remote), local_mac


def test_grizzly_outbound_vlan1_gets_tunnel_key_and_floods_to_gre(grizzly: tuple[OvsBridgeSim, Mac]) -> None:
    sim, local = grizzly
    frame = push_vlan(arp_request(local, ip("10.1.0.2"), ip("10.1.0.3")), 1)
    r = sim.process("patch-int", frame)
    assert flow_texts(r) == ["priority=4,in_port=1,dl_vlan=1 actions=set_tunnel:0x2,NORMAL"]
    gre = next(e for e in r.outputs if e.port == "gre-2")
    assert gre.meta.tun_id == 0x2
    assert gre.meta.tun_dst is not None
    assert vlan_ids(gre.frame) == (1,)  # the old br-tun sent the local VLAN tag inside GRE
    assert "patch-int" not in r.ports  # never back out of the input port
    normal = [s for s in r.steps if s.kind is StepKind.NORMAL]
    assert normal and "flooded" in normal[0].detail and "learned" in normal[0].detail


def test_grizzly_inbound_multicast_tags_vlan1_to_patch_int(grizzly: tuple[OvsBridgeSim, Mac]) -> None:
    sim, _ = grizzly
    r = sim.process("gre-2", arp_request(mac("fa:16:3e:00:00:99"), ip("10.1.0.9"), ip("10.1.0.2")),
                    Meta(tun_id=0x2))
    out = only(r)
    assert out.port == "patch-int"
    assert vlan_ids(out.frame) == (1,)
    assert out.meta == Meta()  # tunnel metadata stays behind at the patch port
    assert flow_texts(r) == ["priority=3,tun_id=0x2,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 "
                             "actions=mod_vlan_vid:1,output:1"]


def test_grizzly_other_tunnel_key_hits_the_drop_flow(grizzly: tuple[OvsBridgeSim, Mac]) -> None:
    sim, _ = grizzly
    r = sim.process("gre-2", arp_request(mac("fa:16:3e:00:00:99"), ip("10.1.0.9"), ip("10.1.0.2")),
                    Meta(tun_id=0x3))
    assert r.dropped
    assert flow_texts(r) == ["priority=1 actions=drop"]
    assert r.steps[-1].kind is StepKind.DROP and r.steps[-1].detail == "explicit drop"


def test_grizzly_inbound_unicast_to_local_vm() -> None:
    sim = grizzly_br_tun(SEED000_COMPUTE, "192.168.0.11")
    r = sim.process("gre-2", ping(REMOTE, VM), Meta(tun_id=0x2))
    assert flow_texts(r) == ["priority=3,tun_id=0x2,dl_dst=fa:16:3e:dd:c1:62 actions=mod_vlan_vid:1,NORMAL"]
    # the VM's MAC is not learned yet: NORMAL floods VLAN 1 (patch-int and the bridge's own port)
    assert set(r.ports) == {"patch-int", "br-tun"}
    assert all(vlan_ids(e.frame) == (1,) for e in r.outputs)
    # once the VM has sent something out, NORMAL knows where it is
    sim.process("patch-int", push_vlan(ping(VM, REMOTE), 1))
    r2 = sim.process("gre-2", ping(REMOTE, VM), Meta(tun_id=0x2))
    assert r2.ports == ("patch-int",)
    assert (1, VM, "patch-int") in sim.mac_table
    # an unknown unicast MAC on key 2 has no flow of its own and drops
    r3 = sim.process("gre-2", ping(REMOTE, mac("fa:16:3e:00:00:42")), Meta(tun_id=0x2))
    assert r3.dropped and flow_texts(r3) == ["priority=1 actions=drop"]
    sim.reset()
    assert sim.mac_table == ()


# --- the modern br-tun (reference §3.2) -----------------------------------------------------------------

BR_TUN = """\
 priority=1,in_port=1 actions=resubmit(,2)
 priority=1,in_port=2 actions=resubmit(,4)
 priority=0 actions=drop
 table=2, priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff actions=resubmit(,21)
 table=2, priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)
 table=2, priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,22)
 table=3, priority=0 actions=drop
 table=4, priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)
 table=4, priority=0 actions=drop
 table=6, priority=0 actions=drop
 table=10, priority=1 actions=learn(table=20,hard_timeout=300,priority=1,cookie=0x9c7ab3a9e1d24f1b,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1
 table=20, priority=0 actions=resubmit(,22)
 table=21, priority=0 actions=resubmit(,22)
 table=22, priority=1,dl_vlan=1 actions=strip_vlan,load:0x64->NXM_NX_TUN_ID[],output:2
 table=22, priority=0 actions=drop
"""

L2POP = """\
 table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:aa:bb:cc actions=strip_vlan,load:0x64->NXM_NX_TUN_ID[],output:2
 table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.7 actions=load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:0xfa163eaabbcc->NXM_NX_ARP_SHA[],load:0xa000007->NXM_OF_ARP_SPA[],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:fa:16:3e:aa:bb:cc,IN_PORT
"""

REMOTE_VM = mac("fa:16:3e:99:88:77")


def modern_br_tun(extra: str = "") -> OvsBridgeSim:
    bridge = Bridge("br-tun", fail_mode="secure", ports=(
        Port("br-tun", (Interface("br-tun", "internal"),)),
        Port("patch-int", (Interface("patch-int", "patch", (("peer", "patch-tun"),)),)),
        Port("vxlan-c0a80002", (Interface("vxlan-c0a80002", "vxlan", (
            ("df_default", "true"), ("in_key", "flow"), ("local_ip", "192.168.0.1"), ("out_key", "flow"),
            ("remote_ip", "192.168.0.2"))),)),
    ))
    return OvsBridgeSim(bridge, parse_dump_flows(BR_TUN + extra), None)


def test_ports_numbered_in_bridge_order_without_ofctl_show() -> None:
    sim = modern_br_tun()
    assert [(p.name, p.number) for p in sim.ports] == [("patch-int", 1), ("vxlan-c0a80002", 2), ("br-tun", 0xFFFE)]
    assert sim.port_number("br-tun") == 0xFFFE


def test_unicast_from_patch_int_misses_table_20_and_floods_to_tunnels() -> None:
    sim = modern_br_tun()
    r = sim.process("patch-int", push_vlan(ping(P_MAC, REMOTE_VM), 1))
    out = only(r)
    assert out.port == "vxlan-c0a80002"
    assert vlan_ids(out.frame) == ()
    assert out.meta == Meta(tun_id=0x64, tun_src=IPv4Address("192.168.0.1"), tun_dst=IPv4Address("192.168.0.2"))
    assert flow_texts(r) == [
        "priority=1,in_port=1 actions=resubmit(,2)",
        "table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)",
        "table=20,priority=0 actions=resubmit(,22)",
        "table=22,priority=1,dl_vlan=1 actions=strip_vlan,load:0x64->NXM_NX_TUN_ID[],output:2",
    ]
    assert "stripped VLAN 1" in r.steps[-1].detail and "output to vxlan-c0a80002" in r.steps[-1].detail


def test_inbound_vxlan_learns_then_reverse_unicast_hits_the_learned_flow() -> None:
    sim = modern_br_tun()
    frame = ping(REMOTE_VM, P_MAC)
    r = sim.process("vxlan-c0a80002", frame, Meta(tun_id=0x64))
    out = only(r)
    assert out.port == "patch-int" and vlan_ids(out.frame) == (1,)
    assert flow_texts(r)[:2] == ["priority=1,in_port=2 actions=resubmit(,4)",
                                 "table=4,priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)"]
    learned = ("table=20,cookie=0x9c7ab3a9e1d24f1b,hard_timeout=300,priority=1,vlan_tci=0x0001/0x0fff,"
               "dl_dst=fa:16:3e:99:88:77 actions=load:0->NXM_OF_VLAN_TCI[],load:0x64->NXM_NX_TUN_ID[],output:2")
    assert [format_add_flow(f) for f in sim.learned_flows] == [learned]
    assert f"learned {learned}" in r.steps[2].detail
    # the reply from P now leaves by the tunnel port the MAC was learned on, through table 20
    back = sim.process("patch-int", push_vlan(ping(P_MAC, REMOTE_VM), 1))
    out = only(back)
    assert out.port == "vxlan-c0a80002" and vlan_ids(out.frame) == () and out.meta.tun_id == 0x64
    assert flow_texts(back)[-1] == learned
    assert next(s for s in back.steps if s.text == learned).detail.startswith("learned flow: ")
    # learning the same MAC again replaces the flow instead of adding one
    sim.process("vxlan-c0a80002", frame, Meta(tun_id=0x64))
    assert len(sim.learned_flows) == 1 and len(sim.flows(20)) == 2
    sim.reset()
    assert not sim.learned_flows and len(sim.flows(20)) == 1


def test_inbound_unknown_vni_dropped_in_table_4() -> None:
    r = modern_br_tun().process("vxlan-c0a80002", ping(REMOTE_VM, P_MAC), Meta(tun_id=0x65))
    assert r.dropped
    assert flow_texts(r)[-1] == "table=4,priority=0 actions=drop"


def test_l2pop_static_flow_wins_over_flooding() -> None:
    r = modern_br_tun(L2POP).process("patch-int", push_vlan(ping(P_MAC, mac("fa:16:3e:aa:bb:cc")), 1))
    assert only(r).port == "vxlan-c0a80002" and only(r).meta.tun_id == 0x64
    assert flow_texts(r)[-1].startswith("table=20,priority=2,dl_vlan=1,dl_dst=fa:16:3e:aa:bb:cc")


def test_arp_responder_answers_in_place() -> None:
    sim = modern_br_tun(L2POP)
    r = sim.process("patch-int", push_vlan(arp_request(P_MAC, P_IP, ip("10.0.0.7")), 1))
    out = only(r)
    assert out.port == "patch-int"  # IN_PORT
    assert vlan_ids(out.frame) == (1,)
    assert out.frame.src == mac("fa:16:3e:aa:bb:cc") and out.frame.dst == P_MAC
    assert network_layer(out.frame) == ARP(op=ARPOp.REPLY, hwsrc=mac("fa:16:3e:aa:bb:cc"), psrc=ip("10.0.0.7"),
                                           hwdst=P_MAC, pdst=P_IP)
    assert flow_texts(r)[1] == "table=2,priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff actions=resubmit(,21)"
    assert flow_texts(r)[2].startswith("table=21,priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.7 actions=")
    # an ARP for an address the responder does not know floods to the tunnels
    r2 = sim.process("patch-int", push_vlan(arp_request(P_MAC, P_IP, ip("10.0.0.8")), 1))
    assert r2.ports == ("vxlan-c0a80002",)


# --- br-int (reference §2.4) -------------------------------------------------------------------------------

BR_INT = BR_INT_HYBRID  # reference §2.4, read from the document


def br_int() -> OvsBridgeSim:
    bridge = Bridge("br-int", fail_mode="secure", ports=(
        Port("patch-tun", (Interface("patch-tun", "patch", (("peer", "patch-int"),)),)),
        Port("int-br-ex", (Interface("int-br-ex", "patch", (("peer", "phy-br-ex"),)),)),
        Port("qvo3f2a1b7c-d4", (Interface("qvo3f2a1b7c-d4"),), tag=1),
        Port("qvo00000000-01", (Interface("qvo00000000-01"),), tag=1),
        Port("qvo00000000-02", (Interface("qvo00000000-02"),), tag=2),
        Port("qvodead0000-00", (Interface("qvodead0000-00"),), tag=4095, trunks=(4095,), vlan_mode="trunk"),
        Port("br-int", (Interface("br-int", "internal"),)),
    ))
    return OvsBridgeSim(bridge, parse_dump_flows(BR_INT), None)


def test_arp_with_the_wrong_spa_is_dropped_in_table_24() -> None:
    r = br_int().process("qvo3f2a1b7c-d4", arp_request(P_MAC, ip("10.0.0.66"), ip("10.0.0.1")))
    assert r.dropped
    assert flow_texts(r) == ["priority=10,arp,in_port=3 actions=resubmit(,24)", "table=24,priority=0 actions=drop"]
    assert r.steps[-1].detail == "explicit drop"


def test_mac_spoof_is_dropped_in_table_25() -> None:
    r = br_int().process("qvo3f2a1b7c-d4", ping(mac("fa:16:3e:66:66:66"), mac("fa:16:3e:00:00:01")))
    assert r.dropped
    assert flow_texts(r) == ["priority=9,in_port=3 actions=resubmit(,25)"]
    assert r.steps[-1].kind is StepKind.DROP and r.steps[-1].detail.startswith("no flow matched in table 25")


def test_good_packets_reach_normal_and_stay_in_their_local_vlan() -> None:
    sim = br_int()
    arp = sim.process("qvo3f2a1b7c-d4", arp_request(P_MAC, P_IP, ip("10.0.0.9")))
    assert flow_texts(arp)[-1] == "table=60,priority=1 actions=NORMAL"
    assert [t.split(" ")[0] for t in flow_texts(arp)] == [
        "priority=10,arp,in_port=3", "table=24,priority=2,arp,in_port=3,arp_spa=10.0.0.5",
        "table=25,priority=2,in_port=3,dl_src=fa:16:3e:11:22:33", "table=30,priority=0", "table=58,priority=0",
        "table=59,priority=0", "table=60,priority=1"]
    # flooded in lvid 1: the other tag-1 port untagged, trunks tagged; never to lvid 2 or the dead port
    by_port = {e.port: e for e in arp.outputs}
    assert set(by_port) == {"patch-tun", "int-br-ex", "qvo00000000-01", "br-int"}
    assert vlan_ids(by_port["qvo00000000-01"].frame) == ()
    assert vlan_ids(by_port["patch-tun"].frame) == (1,)
    # the answer comes back from the other port of lvid 1 and goes straight to P (learned)
    other = mac("fa:16:3e:00:00:01")
    reply = sim.process("qvo00000000-01", ping(other, P_MAC))
    assert reply.ports == ("qvo3f2a1b7c-d4",) and vlan_ids(only(reply).frame) == ()
    assert (1, P_MAC, "qvo3f2a1b7c-d4") in sim.mac_table
    # the same MAC seen in lvid 2 is a different switch: flooded in VLAN 2 only
    r2 = sim.process("qvo00000000-02", ping(mac("fa:16:3e:00:00:02"), P_MAC))
    assert set(r2.ports) == {"patch-tun", "int-br-ex", "br-int"}
    assert all(vlan_ids(e.frame) == (2,) for e in r2.outputs)


def test_tunnel_traffic_from_patch_tun_is_delivered_untagged() -> None:
    sim = br_int()
    r = sim.process("patch-tun", push_vlan(ping(REMOTE_VM, BROADCAST), 1))
    assert flow_texts(r)[0] == "priority=0 actions=resubmit(,58)"
    assert set(r.ports) == {"int-br-ex", "qvo3f2a1b7c-d4", "qvo00000000-01", "br-int"}
    assert vlan_ids(next(e for e in r.outputs if e.port == "qvo3f2a1b7c-d4").frame) == ()


def test_dead_vlan() -> None:
    sim = br_int()
    r = sim.process("patch-tun", push_vlan(ping(REMOTE_VM, P_MAC), 4095))
    assert r.dropped and flow_texts(r) == ["priority=65535,dl_vlan=4095 actions=drop"]
    # an untagged frame from the dead port reaches NORMAL in VLAN 0 of a port that only trunks 4095
    r2 = sim.process("qvodead0000-00", ping(mac("fa:16:3e:de:ad:00"), P_MAC))
    assert r2.dropped
    normal = next(s for s in r2.steps if s.kind is StepKind.NORMAL)
    assert normal.detail.startswith("dropped")


# --- provider VLAN (reference §4) --------------------------------------------------------------------------

BR_EX = """\
 priority=4,in_port=1,dl_vlan=2 actions=strip_vlan,NORMAL
 priority=4,in_port=1,dl_vlan=3 actions=mod_vlan_vid:200,NORMAL
 priority=2,in_port=1 actions=drop
 priority=0 actions=NORMAL
"""


def br_ex() -> OvsBridgeSim:
    bridge = Bridge("br-ex", fail_mode="secure", ports=(
        Port("phy-br-ex", (Interface("phy-br-ex", "patch", (("peer", "int-br-ex"),)),)),
        Port("eth1", (Interface("eth1"),)),
        Port("br-ex", (Interface("br-ex", "internal"),)),
    ))
    return OvsBridgeSim(bridge, parse_dump_flows(BR_EX), None)


def test_provider_vlan_translation_both_ways() -> None:
    ex, bi = br_ex(), br_int()
    vm = ping(P_MAC, mac("fa:16:3e:77:77:77"))
    out = ex.process("phy-br-ex", push_vlan(vm, 3))
    eth1 = next(e for e in out.outputs if e.port == "eth1")
    assert vlan_ids(eth1.frame) == (200,)
    assert flow_texts(out) == ["priority=4,in_port=1,dl_vlan=3 actions=mod_vlan_vid:200,NORMAL"]
    assert "VLAN 3 -> 200" in out.steps[0].detail
    # the answer arrives tagged 200 on the wire, goes up phy-br-ex by NORMAL, and br-int makes it lvid 3
    back = ex.process("eth1", push_vlan(ping(mac("fa:16:3e:77:77:77"), P_MAC), 200))
    assert "phy-br-ex" in back.ports
    up = next(e for e in back.outputs if e.port == "phy-br-ex")
    assert vlan_ids(up.frame) == (200,)
    r = bi.process("int-br-ex", up.frame, up.meta)
    assert flow_texts(r)[0] == "priority=3,in_port=2,dl_vlan=200 actions=mod_vlan_vid:3,resubmit(,58)"
    assert all(vlan_ids(e.frame) == (3,) for e in r.outputs if e.port in ("patch-tun", "br-int"))
    # flat: lvid 2 leaves untagged, untagged frames come in as lvid 2; other VLANs from br-ex drop
    flat = ex.process("phy-br-ex", push_vlan(vm, 2))
    assert vlan_ids(next(e for e in flat.outputs if e.port == "eth1").frame) == ()
    r_flat = bi.process("int-br-ex", ping(mac("fa:16:3e:77:77:77"), P_MAC))
    assert flow_texts(r_flat)[0].startswith("priority=3,in_port=2,vlan_tci=0x0000/0x1fff")
    assert bi.process("int-br-ex", push_vlan(vm, 201)).dropped
    assert ex.process("phy-br-ex", push_vlan(vm, 9)).dropped


# --- the interpreter's own rules ----------------------------------------------------------------------------


def test_resubmit_loop_is_cut_at_depth_64() -> None:
    sim = OvsBridgeSim(Bridge("br-x", ports=(Port("a"), Port("b"))),
                       parse_dump_flows("priority=1 actions=resubmit(,1)\ntable=1, priority=1 actions=resubmit(,0)"),
                       None)
    r = sim.process("a", ping())
    assert r.dropped and r.steps[-1].kind is StepKind.DROP and r.steps[-1].detail.startswith("loop")


def test_standalone_without_flows_is_a_learning_switch_and_secure_drops() -> None:
    ports = (Port("a"), Port("b"), Port("c", tag=5))
    sim = OvsBridgeSim(Bridge("br-x", ports=ports), None, None)
    r = sim.process("a", ping(VM, REMOTE))
    assert set(r.ports) == {"b"}  # c is an access port of VLAN 5
    assert OvsBridgeSim(Bridge("br-x", ports=ports, fail_mode="secure"), None, None).process("a", ping()).dropped


def test_output_to_in_port_needs_in_port_and_registers_and_ct() -> None:
    dump = ("priority=1,in_port=a actions=load:0x7->NXM_NX_REG0[0..3],ct(commit,table=1,zone=3)\n"
            "table=1, priority=1,reg0=0x7,ct_state=+trk actions=output:a,output:b,note:01.02,CONTROLLER:0\n")
    sim = OvsBridgeSim(Bridge("br-x", fail_mode="secure", ports=(Port("a"), Port("b"))),
                       parse_dump_flows(dump), None)
    r = sim.process("a", ping())
    assert r.ports == ("b",)
    assert any(s.kind is StepKind.CONNTRACK and s.detail.startswith("ct_state=+new+trk in zone 3; committed")
               for s in r.steps)
    flows = [s for s in r.steps if s.kind is StepKind.FLOW]
    assert flows[1].text.startswith("table=1,priority=1,ct_state=+trk,reg0=0x7")
    assert "output to a skipped: it is the input port" in flows[1].detail
    assert any(s.kind is StepKind.DROP and "controller" in s.detail for s in r.steps)


def test_unknown_in_port() -> None:
    with pytest.raises(InvalidInput):
        br_int().process("nope", ping())
