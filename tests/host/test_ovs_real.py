"""What the real Open vSwitch (3.1, userspace datapath, private instance in a throwaway namespace) prints
is what our parsers read and our formatters print back, byte for byte; and our add-flow form, fed back
to ``ovs-ofctl add-flows``, gives the same flows."""

from __future__ import annotations

import pytest

from neutrino.host.ofctl_show import format_ofctl_show, parse_ofctl_show
from neutrino.host.openflow import format_add_flow, format_dump_flows, parse_dump_flows
from neutrino.host.ovsdb import format_vsctl_show, parse_vsctl_show
from neutrino.linux.ovs import OvsInstance

pytestmark = pytest.mark.root

OF13 = ("-O", "OpenFlow13")

# br-tun: Neutron's tunnel bridge (reference §3.2), OpenFlow 1.0 + Nicira extensions.
BR_TUN_FLOWS = """\
priority=1,in_port=1 actions=resubmit(,2)
priority=1,in_port=2 actions=resubmit(,4)
priority=0 actions=drop
table=2,priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff actions=resubmit(,21)
table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)
table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,22)
table=4,priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)
table=10,priority=1 actions=learn(table=20,hard_timeout=300,priority=1,cookie=0x1234,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1
table=20,cookie=0x1234,hard_timeout=300,priority=1,vlan_tci=0x0001/0x0fff,dl_dst=fa:16:3e:99:88:77 actions=load:0->NXM_OF_VLAN_TCI[],load:0x64->NXM_NX_TUN_ID[],output:2
table=21,priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.7 actions=load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:0xfa163eaabbcc->NXM_NX_ARP_SHA[],load:0xa000007->NXM_OF_ARP_SPA[],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:fa:16:3e:aa:bb:cc,IN_PORT
table=22,priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x64,output:2,output:3
table=22,priority=0 actions=drop
table=30,priority=3,tun_id=0x2,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=mod_vlan_vid:1,output:1
table=30,priority=4,in_port=1,dl_vlan=1 actions=set_tunnel:0x2,NORMAL
table=30,priority=2,in_port=LOCAL actions=set_tunnel64:0x100000000,FLOOD,ALL,LOCAL,CONTROLLER:65535
"""

# br-int: every other match field and action, some as OpenFlow 1.3 instructions.
BR_INT_FLOWS_OF10 = """\
priority=65535,dl_vlan=4095 actions=drop
priority=10,icmp6,in_port=3,icmp_type=136 actions=resubmit(,24)
priority=10,arp,in_port=3 actions=resubmit(,24)
priority=3,in_port=2,vlan_tci=0x0000/0x1fff actions=mod_vlan_vid:2,resubmit(,58)
table=24,priority=2,icmp6,in_port=3,icmp_type=136,nd_target=fe80::f816:3eff:fe11:2233 actions=resubmit(,58)
table=24,priority=2,arp,in_port=3,arp_spa=10.0.0.5 actions=resubmit(,25)
table=25,priority=2,in_port=3,dl_src=FA:16:3E:11:22:33 actions=resubmit(,30)
table=30,priority=5,tcp,nw_src=10.0.0.0/24,nw_dst=10.0.1.5,tp_src=1024,tp_dst=22,reg0=0x5/0xff,metadata=0x10,ct_state=+trk+est-new,ct_zone=5,ct_mark=0x1 actions=ct(commit,zone=5,table=31),set_field:0x1->reg1,controller(reason=no_match,max_len=128),note:01.02.03
table=31,idle_timeout=30,hard_timeout=60,cookie=0xabc,priority=7,udp6,ipv6_src=fe80::/10,tp_dst=547 actions=set_tunnel:0x2,mod_dl_dst:aa:bb:cc:dd:ee:ff,output:3
table=40,priority=1,tun_id=0x64/0xffff,in_port=LOCAL,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,arp,arp_op=1,arp_sha=00:11:22:33:44:55,arp_tha=00:00:00:00:00:00 actions=resubmit(1,41),resubmit:2,dec_ttl,mod_vlan_pcp:3
table=41,priority=1,icmp,icmp_type=8,icmp_code=0,nw_ttl=64 actions=ct(commit,nat(src=10.0.0.1-10.0.0.2:1000-2000)),ct(table=3,zone=NXM_NX_REG6[0..15])
table=42,priority=1,ip,nw_proto=47 actions=drop
table=42,priority=2,dl_type=0x0800,nw_proto=6 actions=drop
table=42,priority=3,udp,ct_state=-trk actions=ct(commit,table=43,zone=1,exec(set_field:0x1->ct_mark))
table=43,priority=1,ip,nw_src=10.1.2.0/255.255.0.255 actions=mod_nw_src:1.2.3.4,mod_nw_dst:5.6.7.8,mod_tp_src:5,output:4
table=44,priority=1,in_port=patch-tun,dl_vlan=5,dl_vlan_pcp=3 actions=output:patch-tun
"""

BR_INT_FLOWS_OF13 = """\
table=45,priority=3,in_port=2 actions=push_vlan:0x8100,set_field:4098->vlan_vid,goto_table:58
table=46,priority=1,dl_vlan=7 actions=pop_vlan,set_field:fa:16:3e:aa:bb:cc->eth_src,goto_table:60
table=60,priority=1 actions=NORMAL
"""


def _flow_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture
def wired(ovs: OvsInstance) -> OvsInstance:
    """br-int and br-tun as Neutron builds them, on the userspace (netdev) datapath."""
    v = ovs.vsctl
    v("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "fail_mode=secure",
      "--", "add-port", "br-int", "patch-tun", "--", "set", "interface", "patch-tun", "type=patch",
      "options:peer=patch-int",
      "--", "add-port", "br-int", "qvo3f2a1b7c-d4", "tag=1", "--", "set", "interface", "qvo3f2a1b7c-d4",
      "type=internal",
      "--", "add-port", "br-int", "tap-trunk", "trunks=1,2,3", "vlan_mode=trunk", "--", "set", "interface",
      "tap-trunk", "type=internal")
    v("add-br", "br-tun", "--", "set", "bridge", "br-tun", "datapath_type=netdev", "fail_mode=secure",
      "protocols=OpenFlow10,OpenFlow13",
      "--", "add-port", "br-tun", "patch-int", "--", "set", "interface", "patch-int", "type=patch",
      "options:peer=patch-tun",
      "--", "add-port", "br-tun", "vxlan-c0a80002", "--", "set", "interface", "vxlan-c0a80002", "type=vxlan",
      "options:df_default=true", "options:egress_pkt_mark=0", "options:in_key=flow",
      "options:local_ip=192.168.0.1", "options:out_key=flow", "options:remote_ip=192.168.0.2",
      "--", "add-port", "br-tun", "gre-c0a80002", "--", "set", "interface", "gre-c0a80002", "type=gre",
      "options:df_default=false", "options:in_key=flow", "options:local_ip=192.168.0.1",
      "options:out_key=flow", "options:remote_ip=192.168.0.2")
    v("set-controller", "br-tun", "tcp:127.0.0.1:6633")  # nothing listens: harmless, shows in `show`
    v("set-manager", "ptcp:6640:127.0.0.1")  # inside the namespace's own loopback
    ovs.ofctl("add-flows", "br-tun", "-", input=BR_TUN_FLOWS)
    ovs.ofctl("add-flows", "br-int", "-", input=BR_INT_FLOWS_OF10)
    ovs.ofctl("add-flows", "br-int", "-", input=BR_INT_FLOWS_OF13, options=OF13)
    return ovs


def _same(ours: str, theirs: str) -> None:
    assert [ln.rstrip() for ln in ours.splitlines()] == [ln.rstrip() for ln in theirs.splitlines()]


def test_vsctl_show_round_trips(wired: OvsInstance) -> None:
    text = wired.vsctl("show").stdout
    show = parse_vsctl_show(text, source="ovs-vsctl show")
    assert {b.name for b in show.bridges} == {"br-int", "br-tun"}
    br_int = show.bridge("br-int")
    assert br_int is not None and br_int.datapath_type == "netdev" and br_int.fail_mode == "secure"
    trunk = br_int.port("tap-trunk")
    assert trunk is not None and trunk.trunks == (1, 2, 3)
    br_tun = show.bridge("br-tun")
    assert br_tun is not None and br_tun.controllers[0].target == "tcp:127.0.0.1:6633"
    vx = br_tun.port("vxlan-c0a80002")
    assert vx is not None and vx.interfaces[0].option("remote_ip") == "192.168.0.2"
    _same(format_vsctl_show(show), text)


@pytest.mark.parametrize("bridge", ["br-tun", "br-int"])
@pytest.mark.parametrize("options", [(), OF13, ("--no-stats",), (*OF13, "--no-stats")],
                         ids=["of10", "of13", "of10-no-stats", "of13-no-stats"])
def test_dump_flows_round_trips(wired: OvsInstance, bridge: str, options: tuple[str, ...]) -> None:
    text = wired.ofctl("dump-flows", bridge, options=options).stdout
    dump = parse_dump_flows(text, source=f"dump-flows {bridge}")
    expected = len(_flow_lines(BR_TUN_FLOWS if bridge == "br-tun" else BR_INT_FLOWS_OF10 + BR_INT_FLOWS_OF13))
    assert len(dump.flows) == expected
    _same(format_dump_flows(dump, stats="--no-stats" not in options), text)


@pytest.mark.parametrize("bridge", ["br-tun", "br-int"])
@pytest.mark.parametrize("options", [(), OF13], ids=["of10", "of13"])
def test_ofctl_show_round_trips(wired: OvsInstance, bridge: str, options: tuple[str, ...]) -> None:
    text = wired.ofctl("show", bridge, options=options).stdout
    show = parse_ofctl_show(text, source=f"ofctl show {bridge}")
    assert show.port(bridge) is not None
    _same(format_ofctl_show(show), text)


@pytest.mark.parametrize("bridge", ["br-tun", "br-int"])
def test_add_flow_form_reloads_identically(wired: OvsInstance, bridge: str) -> None:
    """Dump (OpenFlow 1.0 view), format each flow in add-flow form, delete all, add ours back, dump again.

    Flows holding OpenFlow 1.1+ instructions (goto_table, push_vlan) go back with ``-O OpenFlow13``, the
    rest with the default protocol: OVS's OF1.3 rendering of some Nicira actions (``mod_vlan_pcp`` as
    ``push_vlan,set_field``) is not itself re-addable, so the OF1.0 view is the faithful one to reload.
    """
    before = wired.ofctl("dump-flows", bridge, options=("--no-stats",)).stdout
    flows = parse_dump_flows(before).flows
    ours = [format_add_flow(f) for f in flows]
    of13 = [ln for ln in ours if "goto_table:" in ln or "push_vlan:" in ln]
    of10 = [ln for ln in ours if ln not in of13]
    wired.ofctl("del-flows", bridge)
    assert parse_dump_flows(wired.ofctl("dump-flows", bridge).stdout).flows == ()
    wired.ofctl("add-flows", bridge, "-", input="".join(ln + "\n" for ln in of10))
    if of13:
        wired.ofctl("add-flows", bridge, "-", input="".join(ln + "\n" for ln in of13), options=OF13)
    after = wired.ofctl("dump-flows", bridge, options=("--no-stats",)).stdout
    assert sorted(_flow_lines(after)) == sorted(_flow_lines(before))
