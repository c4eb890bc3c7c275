"""The OVS agent planner (plan/ovs.py and its pieces) against seeds 000, 001, 002 and the reference.

Snapshots are built directly. Flows are compared in the ``--no-stats`` form (``format_flow(stats=False)``
of the seed's flows ``without_stats()``); ofport numbers that depend on a long-lived host's history
(seed 002's ``in=20``) are mapped to the planned numbers.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

import pytest

from neutrino.host.bridge import format_brctl_show, parse_brctl_show
from neutrino.host.iproute_link import LinkKind
from neutrino.host.ofctl_show import format_ofctl_show, parse_ofctl_show
from neutrino.host.openflow import format_add_flow, format_flow, parse_dump_flows
from neutrino.host.openflow_fields import ReservedPort
from neutrino.host.ovsdb import OvsdbShow, format_vsctl_show, parse_vsctl_show
from neutrino.host.state import HostState
from neutrino.plan import naming
from neutrino.plan.compose import merge
from neutrino.plan.firewall import plan_firewall
from neutrino.plan.generation import Generation, profile
from neutrino.plan.ovs import ovs_context, plan_ovs
from neutrino.plan.ovs_int import local_vlans, network_mtu
from neutrino.scenarios.model import Deployment, Host
from neutrino.services.snapshot import (
    AddressPair,
    CloudSnapshot,
    FixedIP,
    Network,
    Port,
    Segment,
)
from seeds import excerpt, squash
from tests.reference import BR_INT_HYBRID

ip = ipaddress.ip_address
GRIZZLY = Generation.GRIZZLY
HAVANA = replace(profile(Generation.GRIZZLY), use_veth=False, product="neutron")  # seed 002's agents


def network(nid: str, kind: str, seg: int | None, *, physnet: str | None = None, mtu: int = 1500,
            external: bool = False) -> Network:
    return Network(nid, nid[:8], "demo", True, "ACTIVE", False, external, mtu, True, Segment(kind, physnet, seg),
                   (f"sub-{nid}",))


def port(pid: str, net: str, mac: str, owner: str, host: str, *ips: str, hybrid: bool = True,
         up: bool = True, secure: bool = True, pairs: tuple[AddressPair, ...] = ()) -> Port:
    details: tuple[tuple[str, object], ...] = (("ovs_hybrid_plug", hybrid), ("port_filter", True))
    return Port(pid, "", "demo", net, mac, up, "ACTIVE", f"dev-{pid[:8]}", owner,
                tuple(FixedIP(f"sub-{net}", ip(a)) for a in ips), ("sg",) if secure else (), secure, pairs,
                host, "ovs", details if owner.startswith("compute:") else ())


def flows(state: HostState, bridge: str) -> list[str]:
    bf = state.ovs.flows_of(bridge)
    assert bf is not None and bf.flows is not None
    return [format_flow(f, stats=False) for f in bf.flows.flows]


def seed_flows(text: str) -> list[str]:
    return [format_flow(f.without_stats(), stats=False) for f in parse_dump_flows(text).flows]


def ofport(state: HostState, bridge: str, name: str) -> int:
    bf = state.ovs.flows_of(bridge)
    assert bf is not None and bf.ports is not None
    p = bf.ports.port(name)
    assert p is not None and isinstance(p.number, int)
    number: int = p.number
    return number


def show(state: HostState) -> OvsdbShow:
    assert isinstance(state.ovs.show, OvsdbShow)
    return state.ovs.show


def port_row(state: HostState, bridge: str, name: str) -> object:
    br = show(state).bridge(bridge)
    assert br is not None
    return br.port(name)


# --- seed 000: Grizzly, GRE key 2, network host + one compute host ----------------------------------

S0_NET, S0_EXT = "88b1609c-68e0-49ca-a658-f1edff54a264", "3f0e1d2c-0000-4000-8000-00000000e0e0"
S0_VM = "7c7ae61e-05e2-4e7e-bc1f-4a8b1b1c2f3a"
S0_DHCP, S0_QR, S0_QG = ("f14c598d-9811-4a2b-9c3d-000000000001", "c2d7dd02-5622-4b3c-8d4e-000000000002",
                         "d48b49e0-aa33-4c4d-9e5f-000000000003")


def seed0() -> CloudSnapshot:
    hosts = (Host("network", frozenset({"network", "controller"}), ip("192.168.122.10"), ip("192.168.122.10")),
             Host("compute", frozenset({"compute"}), ip("192.168.122.11"), ip("192.168.122.11")))
    dep = Deployment(tenant_network_types=("gre",), external_network_bridge="br-ex", hosts=hosts)
    # The seed's MACs: br-tun's flows name fa:16:3e:83:69:cc (DHCP) and fa:16:3e:aa:99:3c (router) on the
    # network host and fa:16:3e:dd:c1:62 on the compute host (its ip addr/iptables captures came from
    # other runs and show other MACs).
    return CloudSnapshot(dep, networks=(network(S0_EXT, "gre", 1, external=True), network(S0_NET, "gre", 2)), ports=(
        port(S0_QG, S0_EXT, "fa:16:3e:5c:a2:ac", "network:router_gateway", "network", "172.24.4.227"),
        port(S0_DHCP, S0_NET, "fa:16:3e:83:69:cc", "network:dhcp", "network", "10.1.0.3"),
        port(S0_QR, S0_NET, "fa:16:3e:aa:99:3c", "network:router_interface", "network", "10.1.0.1"),
        port(S0_VM, S0_NET, "fa:16:3e:dd:c1:62", "compute:nova", "compute", "10.1.0.2")))


def test_seed0_compute_br_tun_flows_are_the_seeds() -> None:
    state = plan_ovs(seed0(), "compute", generation=GRIZZLY)
    text = excerpt(0, "NXST_FLOW reply", "priority=1 actions=drop", occurrence=1)
    assert sorted(flows(state, "br-tun")) == sorted(seed_flows(text))


def test_seed0_network_br_tun_flows_are_the_seeds() -> None:
    state = plan_ovs(seed0(), "network", generation=GRIZZLY)
    text = excerpt(0, "NXST_FLOW reply", "priority=1 actions=drop", occurrence=2)
    assert sorted(flows(state, "br-tun")) == sorted(seed_flows(text))


def test_seed0_compute_ofctl_show_numbers_patch_then_gre() -> None:
    state = plan_ovs(seed0(), "compute", generation=GRIZZLY)
    bf = state.ovs.flows_of("br-tun")
    assert bf is not None and bf.ports is not None
    seed = parse_ofctl_show(excerpt(0, "OFPT_FEATURES_REPLY", "OFPT_GET_CONFIG_REPLY"))
    assert [(p.number, p.name) for p in bf.ports.ports] == [(p.number, p.name) for p in seed.ports]
    assert [(p.number, p.name) for p in seed.ports] == [(1, "patch-int"), (2, "gre-2"), (ReservedPort.LOCAL, "br-tun")]
    # same layout as the seed's, masking the addresses and the dpid
    mask = re.compile(r"addr:\S+|dpid:\S+")
    assert mask.sub("", format_ofctl_show(bf.ports)) == mask.sub("", excerpt(
        0, "OFPT_FEATURES_REPLY", "OFPT_GET_CONFIG_REPLY"))


@pytest.mark.parametrize("host,first,last", [
    ("compute", 'Port "qvo7c7ae61e-05"', "type: internal"),
    ("network", "Port patch-tun", 'Interface "tapc2d7dd02-56"'),
], ids=["compute", "network"])
def test_seed0_br_int_ports_and_tags(host: str, first: str, last: str) -> None:
    state = plan_ovs(seed0(), host, generation=GRIZZLY)
    seed = parse_vsctl_show("Bridge br-int\n" + _dedent(excerpt(0, first, last, occurrence=0 if host == "compute"
                                                                      else 1)), partial=True)
    planned = show(state).bridge("br-int")
    assert planned is not None
    assert {p.name: p for p in seed.ports()} == {p.name: p for p in planned.ports}
    text = format_vsctl_show(show(state), "as_parsed")  # Grizzly's OVS quoted names with digits
    for p in seed.ports():
        assert port_block(text, p.name) == port_block("Bridge br-int\n" + _dedent(
            excerpt(0, first, last, occurrence=0 if host == "compute" else 1)), p.name)


def port_block(text: str, name: str) -> str:
    """The lines of one Port record of an ``ovs-vsctl show`` text, dedented."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() in (f"Port {name}", f'Port "{name}"'))
    indent = len(lines[start]) - len(lines[start].lstrip())
    out = [lines[start][indent:]]
    for ln in lines[start + 1:]:
        if len(ln) - len(ln.lstrip()) <= indent or ln.strip() == ".":
            break
        out.append(ln[indent:])
    return "\n".join(out)


def _dedent(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip() and ln.strip() != "."]
    indent = min(len(ln) - len(ln.lstrip()) for ln in lines)
    return "\n".join("    " + ln[indent:] for ln in lines) + "\n"


def test_seed0_network_br_ex_holds_the_gateway_tap_untagged() -> None:
    state = plan_ovs(seed0(), "network", generation=GRIZZLY)
    seed = parse_vsctl_show(excerpt(0, "Bridge br-ex", "type: internal", occurrence=0), partial=True)
    planned = show(state).bridge("br-ex")
    assert planned is not None
    assert {p.name: p for p in seed.ports()} == {p.name: p for p in planned.ports}
    assert planned.controllers == () and planned.fail_mode is None
    text = format_vsctl_show(show(state), "as_parsed")
    seed_text = excerpt(0, "Bridge br-ex", "type: internal", occurrence=0)
    for name in ("tapd48b49e0-aa", "br-ex"):
        assert port_block(text, name) == port_block(seed_text, name)


def test_seed0_hybrid_plug_on_compute() -> None:
    state = plan_ovs(seed0(), "compute", generation=GRIZZLY)
    assert state.linux_bridges is not None
    (qbr,) = state.linux_bridges
    assert (qbr.name, qbr.interfaces) == ("qbr7c7ae61e-05", ("qvb7c7ae61e-05", "tap7c7ae61e-05"))
    root = state.namespace("")
    assert root is not None and root.links is not None
    assert [lk.name for lk in root.links] == ["qbr7c7ae61e-05", "qvo7c7ae61e-05", "qvb7c7ae61e-05",
                                             "tap7c7ae61e-05"]


# --- seed 001: Stein, VXLAN, controller + two computes ---------------------------------------------

S1_NET = "96c5a292-af46-4ae8-ae42-cf47ab21dd7a"
S1_VM, S1_VM1, S1_DHCP, S1_QR = ("bfda8db6-7b01-4c02-8d03-000000000011", "0db0e25b-000f-4e10-9f11-000000000012",
                                 "46db5863-b8aa-4bbb-8ccc-000000000013", "104bbda7-ca00-4d11-9e22-000000000014")
S1_EXT = "0c17d541-2035-472f-8441-0d3750e137a2"
S1_QG = "77688753-4e00-4a11-8b22-000000000015"


def seed1(*, l2pop: bool = False, with_vm1: bool = True) -> CloudSnapshot:
    hosts = (Host("controller", frozenset({"controller", "network"}), ip("10.168.7.16"), ip("10.168.7.16"),
                  (("provider", "br-ex"),)),
             Host("compute01", frozenset({"compute"}), ip("10.168.7.17"), ip("10.168.7.17")),
             Host("compute02", frozenset({"compute"}), ip("10.168.7.132"), ip("10.168.7.132")))
    dep = Deployment(tenant_network_types=("vxlan",), external_network_bridge="", l2population=l2pop, hosts=hosts)
    ports = [port(S1_DHCP, S1_NET, "fa:16:3e:6b:89:49", "network:dhcp", "controller", "172.12.0.2"),
             port(S1_QR, S1_NET, "fa:16:3e:b9:03:ec", "network:router_interface", "controller", "172.12.0.1"),
             port(S1_QG, S1_EXT, "fa:16:3e:14:8b:f2", "network:router_gateway", "controller", "192.168.100.18"),
             port(S1_VM, S1_NET, "fa:16:3e:5e:41:43", "compute:nova", "compute02", "172.12.0.5")]
    if with_vm1:
        ports.append(port(S1_VM1, S1_NET, "fa:16:3e:00:0d:b0", "compute:nova", "compute01", "172.12.0.6"))
    return CloudSnapshot(dep, networks=(network(S1_EXT, "flat", None, physnet="provider", external=True),
                                        network(S1_NET, "vxlan", 57, mtu=1450)), ports=tuple(ports))


def test_seed1_compute02_br_tun_is_the_seeds() -> None:
    state = plan_ovs(seed1(), "compute02")
    seed = parse_vsctl_show(excerpt(1, "6febea71-608a-4161-af6b-7bfb24fea765", 'remote_ip="10.168.7.16"}'))
    seed_br, planned = seed.bridge("br-tun"), show(state).bridge("br-tun")
    assert seed_br is not None and planned is not None
    assert {p.name: p for p in seed_br.ports} == {p.name: p for p in planned.ports}
    assert (planned.controllers, planned.fail_mode, planned.datapath_type) == (
        seed_br.controllers, seed_br.fail_mode, seed_br.datapath_type)
    assert show(state).managers == seed.managers
    text = format_vsctl_show(show(state), "legacy")  # seed 001's OVS quoted names with digits
    for first, last in (("Manager", "is_connected"), ("Bridge br-tun", "datapath_type: system"),
                        ('Port "vxlan-0aa80711"', 'remote_ip="10.168.7.17"}'),
                        ('Port "vxlan-0aa80710"', 'remote_ip="10.168.7.16"}')):
        assert excerpt(1, first, last, start=seed_text_index('[root@compute02 ~]# ovs-vsctl show\n')) in text


def seed_text_index(marker: str) -> int:
    from seeds import seed_text
    return seed_text(1).index(marker)


def test_seed1_hybrid_plug_brctl_line() -> None:
    state = plan_ovs(seed1(), "compute02")
    assert state.linux_bridges is not None
    line = excerpt(1, "qbrbfda8db6-7b\t\t8000.")
    (seed,) = parse_brctl_show(line)
    (planned,) = state.linux_bridges
    assert (planned.name, planned.stp, planned.interfaces) == (seed.name, seed.stp, seed.interfaces)
    assert re.fullmatch(r"8000\.[0-9a-f]{12}", planned.bridge_id)
    mask = re.compile(r"8000\.[0-9a-f]{12}")
    assert squash(mask.sub("", format_brctl_show(state.linux_bridges, header=False))) == squash(mask.sub("", line))
    root = state.namespace("")
    assert root is not None and root.links is not None
    links = {lk.name: lk for lk in root.links}
    qbr, qvb, qvo, tap = (links[n] for n in ("qbrbfda8db6-7b", "qvbbfda8db6-7b", "qvobfda8db6-7b", "tapbfda8db6-7b"))
    assert (qbr.kind, qvb.kind, qvo.kind, tap.kind) == (LinkKind.BRIDGE, LinkKind.VETH, LinkKind.VETH, LinkKind.TAP)
    assert (qvb.master, qvo.master, tap.master) == ("qbrbfda8db6-7b", "ovs-system", "qbrbfda8db6-7b")
    assert (qvb.peer, qvo.peer) == ("qvobfda8db6-7b", "qvbbfda8db6-7b")
    assert qvb.promisc and qvo.promisc and not tap.promisc
    assert {lk.mtu for lk in links.values()} == {1450}
    assert tap.mac == "fe:16:3e:5e:41:43"
    assert planned.bridge_id == "8000." + min(qvb.mac or "", tap.mac).replace(":", "") == "8000." + (
        qbr.mac or "").replace(":", "")


def test_seed1_qvo_on_br_int() -> None:
    state = plan_ovs(seed1(), "compute02")
    text = format_vsctl_show(show(state), "legacy")
    # seed 001's grep dropped the tag line: Port "qvobfda8db6-7b" / Interface "qvobfda8db6-7b"
    block = port_block(text, "qvobfda8db6-7b").splitlines()
    assert block == ['Port "qvobfda8db6-7b"', "    tag: 1", '    Interface "qvobfda8db6-7b"']
    assert [ln.strip() for ln in excerpt(1, 'Port "qvobfda8db6-7b"', 'Interface "qvobfda8db6-7b"').splitlines()] == [
        block[0], block[2].strip()]


def test_seed1_controller_agent_ports_are_internal_and_tagged() -> None:
    state = plan_ovs(seed1(), "controller")
    # seed 001: Port "tap46db5863-b8" / tag: 19 / Interface "tap46db5863-b8" / type: internal (tag 19 of a
    # cloud with many networks; one network here)
    seed = parse_vsctl_show(_dedent(excerpt(1, 'Port "tap46db5863-b8"', "type: internal", occurrence=0)),
                            partial=True)
    (seed_port,) = seed.ports()
    assert port_row(state, "br-int", "tap46db5863-b8") == replace(seed_port, tag=1)
    qr = port_row(state, "br-int", "qr-104bbda7-ca")
    assert qr is not None and getattr(qr, "tag") == 1  # noqa: B009
    # provider mode: the gateway is an internal port on br-int, in the flat network's VLAN
    qg = port_row(state, "br-int", "qg-77688753-4e")
    assert qg is not None and getattr(qg, "tag") == 2  # noqa: B009


def test_seed1_controller_br_ex_has_the_patch_and_uplink() -> None:
    state = plan_ovs(seed1(), "controller", uplinks=(("br-ex", "em4"),))
    seed = parse_vsctl_show(excerpt(1, "c46120c7-9020-477f-93c6-33dda84ba833", "options: {peer=int-br-ex}"))
    seed_br, planned = seed.bridge("br-ex"), show(state).bridge("br-ex")
    assert seed_br is not None and planned is not None
    assert {p.name: p for p in seed_br.ports} == {p.name: p for p in planned.ports}
    assert (planned.controllers, planned.fail_mode) == (seed_br.controllers, seed_br.fail_mode)
    assert [(p.number, p.name) for p in state.ovs.flows_of("br-ex").ports.ports] == [  # type: ignore[union-attr]
        (1, "em4"), (2, "phy-br-ex"), (ReservedPort.LOCAL, "br-ex")]


@pytest.mark.parametrize("l2pop,with_vm1,tunnels", [
    (False, True, {"vxlan-0aa80711", "vxlan-0aa80710"}),
    (False, False, {"vxlan-0aa80711", "vxlan-0aa80710"}),
    (True, True, {"vxlan-0aa80711", "vxlan-0aa80710"}),
    (True, False, {"vxlan-0aa80710"}),
], ids=["no-l2pop", "no-l2pop-idle-peer", "l2pop", "l2pop-idle-peer"])
def test_tunnel_ports_with_and_without_l2pop(l2pop: bool, with_vm1: bool, tunnels: set[str]) -> None:
    state = plan_ovs(seed1(l2pop=l2pop, with_vm1=with_vm1), "compute02")
    br = show(state).bridge("br-tun")
    assert br is not None
    assert {p.name for p in br.ports} - {"br-tun", "patch-int"} == tunnels


def test_flood_flow_outputs_to_tunnels_sorted_by_ofport() -> None:
    state = plan_ovs(seed1(), "compute02")
    ports = sorted(ofport(state, "br-tun", n) for n in ("vxlan-0aa80710", "vxlan-0aa80711"))
    assert (f"table={naming.TunBrTable.FLOOD_TO_TUN:d}, priority=1,dl_vlan=1 actions=strip_vlan,"
            f"load:0x39->NXM_NX_TUN_ID[],output:{ports[0]},output:{ports[1]}") in flows(state, "br-tun")


def test_l2pop_static_flows_and_arp_responder() -> None:
    state = plan_ovs(seed1(l2pop=True), "compute02", arp_responder=True)
    t20, t21 = naming.TunBrTable.UCAST_TO_TUN, naming.TunBrTable.ARP_RESPONDER
    to_ctl, to_c1 = ofport(state, "br-tun", "vxlan-0aa80710"), ofport(state, "br-tun", "vxlan-0aa80711")
    got = flows(state, "br-tun")
    for mac, out in (("fa:16:3e:6b:89:49", to_ctl), ("fa:16:3e:b9:03:ec", to_ctl), ("fa:16:3e:00:0d:b0", to_c1)):
        assert (f"table={t20:d}, priority=2,dl_vlan=1,dl_dst={mac} actions=strip_vlan,load:0x39->NXM_NX_TUN_ID[],"
                f"output:{out}") in got
    assert any(f.startswith(f"table={t21:d}, priority=1,arp,dl_vlan=1,arp_tpa=172.12.0.6 ") for f in got)
    assert f"table=2, priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff actions=resubmit(,{t21:d})" in got
    # the gateway on the flat provider network is not a tunnel peer's entry
    assert not any("fa:16:3e:14:8b:f2" in f for f in got)


# --- the reference's running example (modern, VNI 100) ----------------------------------------------

REF_NET, REF_FLAT, REF_VLAN = ("5e6f7a8b-1234-4cde-9abc-def012345678", "6e6f7a8b-0000-4000-8000-00000000f1a7",
                               "7e6f7a8b-0000-4000-8000-000000000200")
REF_P = "3f2a1b7c-d4e5-4f60-8a9b-0c1d2e3f4a5b"

# tests/fixtures/reference/neutron-dataplane.md §2.4 (br-int, hybrid case; ofports patch-tun=1, int-br-ex=2,
# qvo3f2a1b7c-d4=3), comments after "<-" removed
REF_BR_INT = BR_INT_HYBRID  # reference §2.4, read from the document

# §3.2 (br-tun, l2pop with arp_responder, one remote MAC known; patch-int=1, vxlan-c0a80002=2); the learn
# action's agent cookie (cookie=0x…) is left out as it is for cookie 0
_LEARN = ("learn(table=20,hard_timeout=300,priority=1,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
          "load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1")
REF_BR_TUN = f"""\
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
 table=10, priority=1 actions={_LEARN}
 table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:aa:bb:cc actions=strip_vlan,load:0x64->NXM_NX_TUN_ID[],output:2
 table=20, priority=0 actions=resubmit(,22)
 table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.7 actions=load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:0xfa163eaabbcc->NXM_NX_ARP_SHA[],load:0xa000007->NXM_OF_ARP_SPA[],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:fa:16:3e:aa:bb:cc,IN_PORT
 table=21, priority=0 actions=resubmit(,22)
 table=22, priority=1,dl_vlan=1 actions=strip_vlan,load:0x64->NXM_NX_TUN_ID[],output:2
 table=22, priority=0 actions=drop
"""

# §4 (br-ex, phy-br-ex=1)
REF_BR_EX = """\
 priority=4,in_port=1,dl_vlan=2 actions=strip_vlan,NORMAL
 priority=4,in_port=1,dl_vlan=3 actions=mod_vlan_vid:200,NORMAL
 priority=2,in_port=1 actions=drop
 priority=0 actions=NORMAL
"""


def reference() -> CloudSnapshot:
    hosts = (Host("host1", frozenset({"compute", "network"}), ip("192.168.0.1"), ip("192.168.0.1"),
                  (("physnet1", "br-ex"),)),
             Host("host2", frozenset({"compute"}), ip("192.168.0.2"), ip("192.168.0.2")))
    dep = Deployment(tenant_network_types=("vxlan",), l2population=True, external_network_bridge="", hosts=hosts)
    nets = (network(REF_NET, "vxlan", 100, mtu=1450), network(REF_FLAT, "flat", None, physnet="physnet1"),
            network(REF_VLAN, "vlan", 200, physnet="physnet1"))
    ports = (port(REF_P, REF_NET, "fa:16:3e:11:22:33", "compute:nova", "host1", "10.0.0.5"),
             port("d1c2b3a4-0000-4000-8000-00000000f1a7", REF_FLAT, "fa:16:3e:00:00:02", "network:dhcp", "host1"),
             port("d1c2b3a4-0000-4000-8000-000000000200", REF_VLAN, "fa:16:3e:00:00:03", "network:dhcp", "host1"),
             port("4a4b4c4d-0000-4000-8000-000000000007", REF_NET, "fa:16:3e:aa:bb:cc", "compute:nova", "host2",
                  "10.0.0.7"))
    return CloudSnapshot(dep, networks=nets, ports=ports)


def test_reference_local_vlans() -> None:
    vlans = local_vlans(ovs_context(reference(), "host1"))
    assert [(v.network_id, v.lvid) for v in vlans] == [(REF_NET, 1), (REF_FLAT, 2), (REF_VLAN, 3)]


def test_reference_br_int_is_the_reference_dump() -> None:
    state = plan_ovs(reference(), "host1")
    assert (ofport(state, "br-int", "patch-tun"), ofport(state, "br-int", "int-br-ex"),
            ofport(state, "br-int", "qvo3f2a1b7c-d4")) == (1, 2, 3)
    assert flows(state, "br-int") == seed_flows(REF_BR_INT)


def test_reference_br_tun_is_the_reference_dump() -> None:
    state = plan_ovs(reference(), "host1", arp_responder=True)
    assert ofport(state, "br-tun", "vxlan-c0a80002") == 2
    learn2 = [f" table=10, priority=2,{m} actions={_LEARN}"
              for m in ("arp,arp_tha=ff:ff:ff:ff:ff:ff", "icmp6,icmp_type=134", "icmp6,icmp_type=136")]
    assert sorted(flows(state, "br-tun")) == sorted(seed_flows(REF_BR_TUN + "\n".join(learn2)))


def test_reference_br_ex_is_the_reference_dump() -> None:
    state = plan_ovs(reference(), "host1")
    assert flows(state, "br-ex") == seed_flows(REF_BR_EX)


def test_reference_tunnel_interface_options() -> None:
    state = plan_ovs(reference(), "host1")
    text = format_vsctl_show(show(state))
    # §5.1's example fragment
    assert ('options: {df_default="true", egress_pkt_mark="0", in_key=flow, local_ip="192.168.0.1", '
            'out_key=flow, remote_ip="192.168.0.2"}') in text


def test_cookie_stamps_every_flow_and_the_learned_ones() -> None:
    state = plan_ovs(reference(), "host1", cookie=0xABC)
    for bf in state.ovs.bridges:
        assert bf.flows is not None and all(f.cookie == 0xABC for f in bf.flows.flows)
    assert any("learn(table=20,hard_timeout=300,priority=1,cookie=0xabc," in f for f in flows(state, "br-tun"))


def test_netdev_datapath() -> None:
    state = plan_ovs(reference(), "host1", datapath_type="netdev")
    assert {b.datapath_type for b in show(state).bridges} == {"netdev"}
    root = state.namespace("")
    assert root is not None and root.links is not None
    assert {lk.master for lk in root.links if lk.name.startswith("qvo")} == {None}


# --- seed 002: Havana, VLAN, br-eth0 ----------------------------------------------------------------

S2_NET1, S2_NET2 = "39edbf9b-a6da-4bab-8500-39ad91ed1984", "035179eb-9022-4656-b88a-8bc841034eda"


def seed2() -> CloudSnapshot:
    hosts = (Host("network", frozenset({"network", "controller"}), ip("10.0.1.10"), None,
                  (("physnet1", "br-eth0"),)),
             Host("compute", frozenset({"compute"}), ip("10.0.1.11"), None, (("physnet1", "br-eth0"),)))
    dep = Deployment(tenant_network_types=("vlan",), external_network_bridge="br-ex", hosts=hosts)
    nets = (network(S2_NET1, "vlan", 1, physnet="physnet1"), network(S2_NET2, "vlan", 3, physnet="physnet1"),
            network("ext00000-0000-4000-8000-000000000000", "flat", None, physnet="external", external=True))
    pid = "-0000-4000-8000-000000000000"
    ports = (port("583c7038-d3" + pid[3:], S2_NET1, "fa:16:3e:9c:dc:3a", "compute:nova", "compute", "192.168.0.2"),
             port("d4de9fe0-6d" + pid[3:], S2_NET2, "fa:16:3e:38:2b:2e", "compute:nova", "compute", "10.0.0.2"),
             port("b66fe81c-de" + pid[3:], S2_NET2, "fa:16:3e:38:7d:3d", "network:dhcp", "network", "10.0.0.3"),
             port("db2f5a49-7c" + pid[3:], S2_NET1, "fa:16:3e:17:5c:36", "network:dhcp", "network", "192.168.0.3"),
             port("260209fa-72" + pid[3:], S2_NET1, "fa:16:3e:0f:17:04", "compute:nova", "compute", "192.168.0.4"),
             port("8bf9cba2-3f" + pid[3:], S2_NET1, "fa:16:3e:a2:2f:0e", "compute:nova", "compute", "192.168.0.5"),
             port("2a169bb4-4d" + pid[3:], S2_NET1, "fa:16:3e:2f:e9:72", "network:router_interface", "network",
                  "192.168.0.1"),
             port("9b2db4ac-31" + pid[3:], "ext00000-0000-4000-8000-000000000000", "fa:16:3e:4e:f1:b5",
                  "network:router_gateway", "network", "192.168.122.200"))
    return CloudSnapshot(dep, networks=nets, ports=ports)


def test_seed2_compute_vlan_translation() -> None:
    # seed 002, compute node EasyOVS> dump br-int: "in=20, vlan=3 … mod vlan vid:2,NORMAL", "in=20, vlan=1 …
    # mod vlan vid:1,NORMAL", "2 in=20 drop", "1 NORMAL" (int-br-eth0 is port 20 there); dump br-eth0:
    # "in=14, vlan=1 … mod vlan vid:1,NORMAL", "mod vlan vid:3, NORMAL … in=14, vlan=2", "2 in=14 drop", "1 NORMAL"
    assert "in=20, vlan=3" in excerpt(2, "EasyOVS> dump br-int", "NORMAL") + excerpt(2, "in=20, vlan=3")
    state = plan_ovs(seed2(), "compute", generation=HAVANA, uplinks=(("br-eth0", "eth0"),))
    i, p = ofport(state, "br-int", "int-br-eth0"), ofport(state, "br-eth0", "phy-br-eth0")
    assert sorted(flows(state, "br-int")) == sorted([
        f"priority=3,in_port={i},dl_vlan=3 actions=mod_vlan_vid:2,NORMAL",
        f"priority=3,in_port={i},dl_vlan=1 actions=mod_vlan_vid:1,NORMAL",
        f"priority=2,in_port={i} actions=drop", "priority=1 actions=NORMAL"])
    assert sorted(flows(state, "br-eth0")) == sorted([
        f"priority=4,in_port={p},dl_vlan=1 actions=mod_vlan_vid:1,NORMAL",
        f"priority=4,in_port={p},dl_vlan=2 actions=mod_vlan_vid:3,NORMAL",
        f"priority=2,in_port={p} actions=drop", "priority=1 actions=NORMAL"])
    assert ofport(state, "br-eth0", "eth0") == 1  # seed 002: "eth0 1" on br-eth0


def test_seed2_compute_ports_and_tags() -> None:
    # seed 002: EasyOVS> list (compute) and show br-int (Vlan column)
    state = plan_ovs(seed2(), "compute", generation=HAVANA, uplinks=(("br-eth0", "eth0"),))
    listing = excerpt(2, "br-eth0 phy-br-eth0 eth0", "qvo583c7038-d3")
    for bridge, names in (("br-eth0", listing.split("\n")[0].split()),
                          ("br-int", excerpt(2, "qvo260209fa-72 int-br-eth0").split())):
        br = show(state).bridge(bridge)
        assert br is not None and {p.name for p in br.ports} == set(names)
    tags = {n: getattr(port_row(state, "br-int", n), "tag") for n in  # noqa: B009
            ("qvo260209fa-72", "qvo583c7038-d3", "qvo8bf9cba2-3f", "qvod4de9fe0-6d")}
    assert tags == {"qvo260209fa-72": 1, "qvo583c7038-d3": 1, "qvo8bf9cba2-3f": 1, "qvod4de9fe0-6d": 2}


def test_seed2_network_node() -> None:
    # seed 002, network node: dump br-int "in=8, vlan=3 … mod vlan vid:1", "in=8, vlan=1 … mod vlan vid:2";
    # dump br-eth0 "in=6, vlan=1 … mod vlan vid:3", "in=6, vlan=2 … mod vlan vid:1"; list: br-ex holds eth1 and
    # qg-9b2db4ac-31; br-int holds int-br-eth0 br-int qr-2a169bb4-4d tapb66fe81c-de tapdb2f5a49-7c
    state = plan_ovs(seed2(), "network", generation=HAVANA, uplinks=(("br-eth0", "eth0"), ("br-ex", "eth1")))
    i, p = ofport(state, "br-int", "int-br-eth0"), ofport(state, "br-eth0", "phy-br-eth0")
    assert f"priority=3,in_port={i},dl_vlan=3 actions=mod_vlan_vid:1,NORMAL" in flows(state, "br-int")
    assert f"priority=3,in_port={i},dl_vlan=1 actions=mod_vlan_vid:2,NORMAL" in flows(state, "br-int")
    assert f"priority=4,in_port={p},dl_vlan=1 actions=mod_vlan_vid:3,NORMAL" in flows(state, "br-eth0")
    assert f"priority=4,in_port={p},dl_vlan=2 actions=mod_vlan_vid:1,NORMAL" in flows(state, "br-eth0")
    for bridge, line in (("br-ex", "br-ex eth1 qg-9b2db4ac-31"),
                         ("br-int", "int-br-eth0 br-int gr-2a169bb4-4d tapb66fe81c-de tapdb2f5a49-7c")):
        line = excerpt(2, line).strip().replace("gr-", "qr-")  # the slides' OCR reads qr- as gr-
        br = show(state).bridge(bridge)
        assert br is not None and {q.name for q in br.ports} == set(line.split())
    assert getattr(port_row(state, "br-int", "tapb66fe81c-de"), "tag") == 1  # noqa: B009
    assert getattr(port_row(state, "br-int", "qr-2a169bb4-4d"), "tag") == 2  # noqa: B009
    qg = port_row(state, "br-ex", "qg-9b2db4ac-31")
    assert qg is not None and getattr(qg, "tag") is None  # noqa: B009


# --- general behaviour ---------------------------------------------------------------------------------

def test_flat_network_in_grizzly_matches_untagged() -> None:
    cloud = reference()
    state = plan_ovs(cloud, "host1", generation=GRIZZLY)
    i = ofport(state, "br-int", "int-br-ex")
    assert f"priority=3,in_port={i},vlan_tci=0x0000 actions=mod_vlan_vid:2,NORMAL" in flows(state, "br-int")


def test_dead_port_gets_4095_and_a_drop_and_no_vlan() -> None:
    cloud = reference()
    down = replace(cloud.ports[0], admin_state_up=False)
    cloud2 = replace(cloud, ports=(down, *cloud.ports[1:]), _index={})
    state = plan_ovs(cloud2, "host1")
    assert getattr(port_row(state, "br-int", "qvo3f2a1b7c-d4"), "tag") == naming.DEAD_VLAN_TAG  # noqa: B009
    n = ofport(state, "br-int", "qvo3f2a1b7c-d4")
    assert f"priority=2,in_port={n} actions=drop" in flows(state, "br-int")
    assert [v.lvid for v in local_vlans(ovs_context(cloud2, "host1"))] == [1, 2]
    assert not any("in_port=" + str(n) in f and "resubmit(,2" in f for f in flows(state, "br-int"))
    # os-vif plugged it all the same: the devices exist, the agent just isolates the port
    assert state.linux_bridges is not None and [b.name for b in state.linux_bridges] == ["qbr3f2a1b7c-d4"]


def test_port_security_off_and_address_pairs() -> None:
    cloud = reference()
    pairs = (AddressPair(ipaddress.ip_network("10.0.0.0/24"), "fa:16:3e:99:99:99"),)
    p_pairs = replace(cloud.ports[0], allowed_address_pairs=pairs)
    state = plan_ovs(replace(cloud, ports=(p_pairs, *cloud.ports[1:]), _index={}), "host1")
    got = flows(state, "br-int")
    assert "table=24, priority=2,arp,in_port=3,arp_spa=10.0.0.0/24 actions=resubmit(,25)" in got
    assert "table=25, priority=2,in_port=3,dl_src=fa:16:3e:99:99:99 actions=resubmit(,30)" in got
    off = replace(cloud.ports[0], port_security_enabled=False)
    state = plan_ovs(replace(cloud, ports=(off, *cloud.ports[1:]), _index={}), "host1")
    assert not any("in_port=3" in f for f in flows(state, "br-int"))


@pytest.mark.parametrize("kind,mtu", [("vxlan", 1450), ("gre", 1458), ("vlan", 1500), ("flat", 1500)])
def test_network_mtu(kind: str, mtu: int) -> None:
    ctx = ovs_context(reference(), "host1")
    assert network_mtu(ctx, network("n", kind, 5, mtu=0)) == mtu


def test_every_item_has_an_origin() -> None:
    state = plan_ovs(reference(), "host1", arp_responder=True)
    by_kind: dict[str, set[str]] = {}
    for o in state.origins:
        by_kind.setdefault(o.kind, set()).add(o.item)
        assert o.obj and o.builder
    for bf in state.ovs.bridges:
        assert bf.flows is not None
        assert {format_add_flow(f) for f in bf.flows.flows} <= by_kind["flow"]
    assert {p.name for b in show(state).bridges for p in b.ports} == by_kind["port"]
    assert {lk.name for lk in state.namespaces[0].links or ()} == by_kind["link"]
    assert any(o.kind == "flow" and o.obj == f"port {REF_P}" and o.builder == "int_anti_spoof_flows"
               for o in state.origins)


def test_deterministic() -> None:
    for cloud, host in ((seed0(), "network"), (seed1(l2pop=True), "controller"), (reference(), "host1")):
        assert plan_ovs(cloud, host) == plan_ovs(cloud, host)
        a, b = plan_ovs(cloud, host), plan_ovs(cloud, host)
        assert format_vsctl_show(show(a)) == format_vsctl_show(show(b))


def _without(cloud: CloudSnapshot, *, ports: frozenset[str] = frozenset(),
             nets: frozenset[str] = frozenset()) -> CloudSnapshot:
    return CloudSnapshot(cloud.deployment, networks=tuple(n for n in cloud.networks if n.id not in nets),
                         ports=tuple(p for p in cloud.ports if p.id not in ports and p.network_id not in nets))


def test_deleting_a_port_removes_only_its_items() -> None:
    cloud = seed1(l2pop=True)
    before = plan_ovs(cloud, "controller")
    after = plan_ovs(_without(cloud, ports=frozenset({S1_QR})), "controller")
    gone = set(before.origins) - set(after.origins)
    assert gone and {o.obj for o in gone} == {f"port {S1_QR}"}
    assert set(after.origins) <= set(before.origins)
    # a cloud that never had it plans the same
    never = seed1(l2pop=True)
    never = CloudSnapshot(never.deployment, networks=never.networks,
                          ports=tuple(p for p in never.ports if p.id != S1_QR))
    assert plan_ovs(never, "controller") == after


def test_deleting_the_last_network_removes_only_its_items() -> None:
    cloud = reference()
    before = plan_ovs(cloud, "host1")
    after = plan_ovs(_without(cloud, nets=frozenset({REF_VLAN})), "host1")
    gone = set(before.origins) - set(after.origins)
    assert {o.obj for o in gone} == {f"network {REF_VLAN}", "port d1c2b3a4-0000-4000-8000-000000000200"}
    assert set(after.origins) <= set(before.origins)


def test_deleting_a_remote_port_under_l2pop_drops_the_tunnel() -> None:
    cloud = seed1(l2pop=True)
    after = plan_ovs(_without(cloud, ports=frozenset({S1_VM1})), "compute02")
    br = show(after).bridge("br-tun")
    assert br is not None and "vxlan-0aa80711" not in {p.name for p in br.ports}


def test_merges_with_the_firewall_fragment() -> None:
    cloud = seed1()
    merged = merge([plan_ovs(cloud, "compute02"), plan_firewall(cloud, "compute02")])
    root = merged.namespace("")
    assert root is not None and root.iptables is not None and root.links is not None
    assert any(lk.name == "tapbfda8db6-7b" for lk in root.links)
    assert merged.ovs == plan_ovs(cloud, "compute02").ovs
    assert "neutron-openvswi-sg-chain" in {c.name for t in root.iptables.tables for c in t.chains}


def test_host_without_tunnel_ip_has_no_br_tun() -> None:
    state = plan_ovs(seed2(), "compute", generation=HAVANA)
    assert show(state).bridge("br-tun") is None and show(state).bridge("br-int") is not None
