"""Making flows by the million (issue #17, third round): objects made through a slots twin
(``host.fastnew.maker``) are the very objects their dataclass makes, and the planners' shortcuts
(anti-spoofing heads from templates with the address's own match item, l2population's ``dl_dst``
items made from the MAC's value, tunnel actions from their parsed parts) give what parsing the
flow's text gives."""

from __future__ import annotations

import copy
import dataclasses
import io
import ipaddress
import pickle
from collections import Counter
from dataclasses import dataclass

import pytest

from neutrino import store
from neutrino.errors import PlanError
from neutrino.host import ovsdb
from neutrino.host.fastnew import maker
from neutrino.host.iproute import IprouteStyle
from neutrino.host.iproute_link import Link, LinkKind, OperState
from neutrino.host.openflow import Flow, FlowFlag, FlowStats, format_add_flow, new_flow, parse_flow
from neutrino.host.openflow_fields import Mac
from neutrino.host.state import Origin
from neutrino.plan import ovs_int, ovs_tun, vif
from neutrino.plan.generation import Generation
from neutrino.plan.ovs import ovs_context, plan_ovs
from neutrino.plan.ovs_int import PlannedFlow, PlannedPort, planned_flow, templated_flow
from neutrino.scenarios.model import Deployment
from neutrino.services.snapshot import AddressPair, CloudSnapshot, FixedIP
from tests.plan.benchmod import plan_bench


def _flow() -> Flow:
    return parse_flow("table=3,cookie=0x5/0xff,idle_timeout=4,hard_timeout=9,importance=2,priority=7,"
                      "send_flow_rem,dl_vlan=3,dl_dst=fa:16:3e:00:00:01 actions=strip_vlan,output:2")


def test_a_twin_made_flow_is_a_flow() -> None:
    plain = dataclasses.replace(_flow(), stats=FlowStats(1, 2, 3, 4, 5, 6))
    made = new_flow(*(getattr(plain, f.name) for f in dataclasses.fields(Flow)))
    assert type(made) is Flow and isinstance(made, Flow)
    assert made == plain and hash(made) == hash(plain) and repr(made) == repr(plain)
    assert made.flags == (FlowFlag.SEND_FLOW_REM,) and made.without_stats() == _flow()
    assert dataclasses.replace(made, table=9).table == 9 and copy.copy(made) == plain
    assert pickle.loads(pickle.dumps(made)) == plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.table = 4  # type: ignore[misc]
    for obj in (made, plain):  # (whatever a Flow raises for a name it has no field for: the same)
        with pytest.raises((AttributeError, TypeError)):
            obj.extra = 1  # type: ignore[attr-defined]


def test_the_store_keeps_twin_made_states() -> None:
    """store.py's pickler (fields read with attrgetter) writes a planned host and loads it back."""
    cloud = plan_bench().build(5, 20, 2)
    state = plan_ovs(cloud, "compute0001")
    buf = io.BytesIO()
    store._Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    back = pickle.loads(buf.getvalue())
    assert back == state and repr(back) == repr(state)
    assert sum(len(b.flows.flows) for b in back.ovs.bridges if b.flows is not None) > 20


@pytest.mark.parametrize(("cls", "args"), [
    (Origin, ("flow", "priority=0 actions=drop", "agent c1", "tun_bridge_flows")),
    (PlannedPort, ("br-tun", ovsdb.Port("vxlan-0a000001"), "tunnel to c2 (10.0.0.1)", "b", False, Mac(5))),
    (ovsdb.Port, ("p1", (ovsdb.Interface("p1"),), 3, (1, 2), "trunk", (), None)),
    (ovsdb.Interface, ("vxlan-1", "vxlan", (("remote_ip", "10.0.0.1"),), None, (), (), None)),
    (PlannedFlow, ("br-int", Flow(priority=3), "port x", "b", "priority=3 actions=drop")),
])
def test_the_planners_makers_are_their_dataclasses(cls: type, args: tuple[object, ...]) -> None:
    make = {Origin: ovs_int.new_origin, PlannedPort: ovs_int.new_planned_port, ovsdb.Port: ovs_int.new_port_row,
            ovsdb.Interface: ovs_int.new_interface, PlannedFlow: ovs_int.new_planned_flow}[cls]
    made, plain = make(*args), cls(*args)
    assert type(made) is cls and made == plain and hash(made) == hash(plain) and repr(made) == repr(plain)
    assert pickle.loads(pickle.dumps(made)) == plain


def test_maker_refuses_what_it_cannot_make() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        x: int

    @dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("x")

    @dataclass(frozen=True, slots=True)
    class Plain:
        x: int
        y: str = "y"

    with pytest.raises(TypeError):
        maker(NoSlots)
    with pytest.raises(TypeError):
        maker(Checked)  # its __post_init__ would not run
    with pytest.raises(TypeError):
        maker(int)
    made = maker(Plain)(1, "z")
    assert type(made) is Plain and made == Plain(1, "z")
    with pytest.raises(TypeError):
        maker(Plain)(1)  # every field, always


@pytest.mark.parametrize("cookie", [0, 0xABC])
@pytest.mark.parametrize(("before", "name", "value", "item"), [
    ("table=25,priority=2,in_port=7,", "dl_src", "fa:16:3e:00:00:01", None),
    ("table=24,priority=2,arp,in_port=7,", "arp_spa", "10.0.0.5",
     ovs_int.IPv4Match("arp_spa", ipaddress.IPv4Address("10.0.0.5"))),
    ("table=24,priority=2,arp,in_port=7,", "arp_spa", "10.9.0.0/24", None),
    ("table=24,priority=2,icmp6,in_port=5,icmp_type=136,", "nd_target", "fe80::f816:3eff:fe00:1",
     ovs_int.IPv6Match("nd_target", ipaddress.IPv6Address("fe80::f816:3eff:fe00:1"))),
    ("table=24,priority=2,icmp6,in_port=5,icmp_type=136,", "nd_target", "2001:DB8::1", None),  # not as printed
    ("table=25,priority=2,in_port=7,", "dl_src", "FA:16:3E:00:00:01", None),  # not as printed
    ("table=25,priority=2,dl_dst=fa:16:3e:00:00:09,", "dl_src", "fa:16:3e:00:00:01", None),  # two varying
])
def test_templated_flow_is_planned_flow(before: str, name: str, value: str, item: object, cookie: int) -> None:
    ctx = ovs_context(CloudSnapshot(Deployment()), "c1", cookie=cookie)
    got = templated_flow(ctx, "br-int", before, name, value, "resubmit(,60)", "port x", "test",
                         item)  # type: ignore[arg-type]
    line = f"{before}{name}={value} actions=resubmit(,60)"
    want = planned_flow(ctx, "br-int", line, "port x", "test")
    assert got == want and got.text == want.text == format_add_flow(got.flow)
    assert got.flow == dataclasses.replace(parse_flow(line), cookie=cookie)


@pytest.mark.parametrize("mac", ["fa:16:3e:00:0a:ff", "FA:16:3E:00:0A:FF", "fa:16:3e:0:a:ff", "nonsense"])
def test_l2pop_dl_dst_item_is_the_parsed_one(mac: str) -> None:
    got = ovs_tun._dl_dst(mac)
    try:
        item, text = ovs_int._match_item("dl_dst", mac)
    except ValueError:
        assert got is None
        return
    assert got == ((item,) if text == mac else None)


@pytest.mark.parametrize(("key", "port"), [(100, 2), (0x1234, 77), (1, 4000)])
def test_l2pop_actions_are_the_joined_parse(key: int, port: int) -> None:
    assert ovs_tun._l2pop_actions(key, port) == ovs_tun._joined_actions(
        f"strip_vlan,load:{key:#x}->NXM_NX_TUN_ID[]", f"output:{port}")


def _with_pairs(cloud: CloudSnapshot) -> CloudSnapshot:
    """Every other instance port with address pairs (prefixes, hosts, IPv6, their own MACs, some
    in upper case, /0s that turn protection off), an IPv6 address and a repeated IPv4 one."""
    ports = []
    for i, p in enumerate(cloud.ports):
        if p.device_owner.startswith("compute:") and i % 2 == 0:
            pairs = (AddressPair(ipaddress.ip_network("10.9.0.0/24"), ""),
                     AddressPair(ipaddress.ip_network("10.9.1.7/32"), "fa:16:3e:99:00:01"),
                     AddressPair(ipaddress.ip_network("2001:db8::/64"), ""),
                     AddressPair(ipaddress.ip_network("2001:db8:1::5/128"), "FA:16:3E:99:00:02"))
            if i % 3 == 0:
                pairs += (AddressPair(ipaddress.ip_network("::/0"), ""),)
            if i % 5 == 0:
                pairs += (AddressPair(ipaddress.ip_network("0.0.0.0/0"), ""),)
            first = p.fixed_ips[0]
            fips = (*p.fixed_ips, FixedIP(first.subnet_id, ipaddress.ip_address(f"2001:db8:5::{i:x}")),
                    FixedIP(first.subnet_id, first.ip_address))
            p = dataclasses.replace(p, allowed_address_pairs=pairs, fixed_ips=fips)
        ports.append(p)
    return dataclasses.replace(cloud, ports=tuple(ports), _index={})


@pytest.mark.parametrize("cookie", [0, 0x1F])
def test_anti_spoofing_with_address_pairs_is_its_text(cookie: int) -> None:
    """Every anti-spoofing flow is what its origin's text parses to, and the addresses, prefixes
    and pair MACs each get their allow (the /0 pairs turn the ARP and NA ones off)."""
    cloud = _with_pairs(plan_bench().build(5, 24, 2))
    spoof = []
    for host in ("compute0000", "compute0001", "compute0002"):
        state = plan_ovs(cloud, host, cookie=cookie)
        flows = [f for b in state.ovs.bridges if b.bridge == "br-int" and b.flows for f in b.flows.flows]
        texts = [o.item for o in state.origins if o.kind == "flow" and o.builder == ovs_int.BUILDER_SPOOF]
        mine = [f for f in flows if (f.table in (24, 25) and f.priority == 2) or (f.table == 0 and f.priority in (9, 10))]
        assert Counter(format_add_flow(f) for f in mine) == Counter(texts)
        for text in texts:
            assert dataclasses.replace(parse_flow(text), cookie=cookie) in flows
        spoof += texts
    joined = "\n".join(spoof)
    for piece in ("arp_spa=10.9.0.0/24", "arp_spa=10.9.1.7 ", "nd_target=2001:db8::/64", "nd_target=2001:db8:1::5 ",
                  "dl_src=fa:16:3e:99:00:02 ", "nd_target=fe80::f816:3eff:fe99:1 "):
        assert piece in joined, piece
    assert len(spoof) > 40


@pytest.mark.parametrize("generation", [Generation.MODERN, Generation.GRIZZLY])
@pytest.mark.parametrize("kind", [LinkKind.TAP, LinkKind.BRIDGE, LinkKind.VETH])
@pytest.mark.parametrize("promisc", [False, True])
def test_hybrid_plug_links_are_the_dataclass(kind: LinkKind, generation: Generation, promisc: bool) -> None:
    """os-vif's links, made through the twin: what ``Link(...)`` with keywords makes (style and all)."""
    ctx = ovs_context(CloudSnapshot(Deployment()), "c1", generation=generation)
    mac = Mac(0x5E4143741480)
    got = vif._link(ctx, "qvo1", kind, mac, 1450, master="qbr1", peer="qvb1", promisc=promisc)
    modern = generation is Generation.MODERN
    qdisc = {LinkKind.BRIDGE: "noqueue", LinkKind.VETH: "noqueue" if modern else "pfifo_fast",
             LinkKind.TAP: "fq_codel" if modern else "pfifo_fast"}[kind]
    want = Link(0, "qvo1", peer="qvb1", flags=vif.UP_PROMISC if promisc else vif.UP, mtu=1450, qdisc=qdisc,
                master="qbr1", state=OperState.UNKNOWN if kind is LinkKind.TAP else OperState.UP,
                qlen=None if kind is LinkKind.BRIDGE else 1000, link_type="ether", mac=str(mac),
                brd="ff:ff:ff:ff:ff:ff", kind=kind)
    assert type(got) is Link and got == want and repr(got) == repr(want) and hash(got) == hash(want)
    assert got.style is want.style is IprouteStyle.LEGACY


def test_port_numbers_first_name_counts() -> None:
    """Ofports: numbered per bridge in planned order; a name planned twice keeps its first number."""
    numbers = ovs_int.Ofports((("br-int", "qvo1", 1), ("br-int", "qvo1", 2), ("br-tun", "qvo1", 3),
                               ("br-tun", "vxlan-1", 4)))
    assert numbers.of("br-int", "qvo1") == 1 and numbers.of("br-tun", "qvo1") == 3
    assert numbers.numbers_of("br-tun") == {"qvo1": 3, "vxlan-1": 4} and numbers.numbers_of("br-ex") == {}
    with pytest.raises(PlanError):
        numbers.of("br-int", "vxlan-1")
    ports = (PlannedPort("br-int", ovsdb.Port("br-int"), "h", "b", local=True),
             PlannedPort("br-int", ovsdb.Port("a"), "o", "b"), PlannedPort("br-tun", ovsdb.Port("t"), "o", "b"),
             PlannedPort("br-int", ovsdb.Port("c"), "o", "b"))
    assert ovs_int.Ofports.number(ports).numbers == (("br-int", "a", 1), ("br-tun", "t", 1), ("br-int", "c", 2))
