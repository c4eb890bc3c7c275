"""The OVS planners' shortcuts (issue #17) give exactly what the plain parse gives: flows made from
templates and parsed pieces, flows made without ``Flow.__init__``, the one-pass index of the ports
l2population tells each host about, and every planned flow's origin text."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from neutrino.host.openflow import Flow, format_add_flow, make_flow, parse_flow
from neutrino.plan import ovs, ovs_int, ovs_kept, ovs_tun
from neutrino.plan.ovs import ovs_context, plan_ovs
from neutrino.plan.ovs_int import head_template, planned_flow
from neutrino.scenarios.model import Deployment
from neutrino.services.snapshot import CloudSnapshot
from tests.plan.benchmod import plan_bench

_bench = plan_bench


@pytest.fixture(scope="module")
def cloud() -> CloudSnapshot:
    return _bench().build(9, 60, 6)  # type: ignore[no-any-return]


def test_make_flow_is_the_dataclass() -> None:
    plain = parse_flow("table=3,cookie=0x5/0xff,idle_timeout=4,hard_timeout=9,importance=2,priority=7,"
                       "send_flow_rem,dl_vlan=3,dl_dst=fa:16:3e:00:00:01 actions=strip_vlan,output:2")
    made = make_flow(plain.match, plain.actions, plain.table, plain.priority, plain.cookie, plain.cookie_mask,
                     plain.idle_timeout, plain.hard_timeout, plain.importance, plain.flags, plain.stats)
    assert made == plain and hash(made) == hash(plain) and repr(made) == repr(plain)
    assert make_flow((), (), 0, 1, 0) == Flow(priority=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.table = 4  # type: ignore[misc]


@pytest.mark.parametrize(("head", "value"), [
    ("table=20,priority=2,dl_vlan=3,dl_dst={}", "fa:16:3e:aa:bb:cc"),
    ("table=25,priority=2,in_port=7,dl_src={}", "fa:16:3e:00:00:01"),
    ("table=24,priority=2,arp,in_port=7,arp_spa={}", "10.0.0.5"),
    ("table=21,priority=1,arp,dl_vlan=1,arp_tpa={}", "192.168.7.1"),
    ("table=24,priority=2,icmp6,in_port=5,icmp_type=136,nd_target={}", "fe80::f816:3eff:fe00:1"),
    ("table=24,priority=2,arp,in_port=7,arp_spa={}", "10.0.0.0/24"),
])
@pytest.mark.parametrize("cookie", [0, 0xABC])
def test_template_filled_is_the_plain_parse(head: str, value: str, cookie: int) -> None:
    field = head.rsplit(",", 1)[1].split("=")[0]
    before = head[:head.index(field)]
    template = head_template(before, field, "", "test", cookie)
    assert template is not None
    got = template.fill(value, ())
    assert got is not None
    flow, text = got
    plain = dataclasses.replace(parse_flow(head.format(value) + " actions=drop"), cookie=cookie)
    assert flow == plain
    assert text + "drop" == format_add_flow(plain)
    # and through planned_flow, with actions, as the planners call it
    ctx = ovs_context(CloudSnapshot(Deployment()), "c1", cookie=cookie)
    line = head.format(value) + " actions=resubmit(,60)"
    planned = planned_flow(ctx, "br-int", line, "port x", "test")
    assert planned.flow == dataclasses.replace(parse_flow(line), cookie=cookie)
    assert planned.text == format_add_flow(planned.flow)


def test_values_not_printed_as_written_are_parsed_whole() -> None:
    template = head_template("table=20,priority=2,dl_vlan=3,", "dl_dst", "", "test", 0)
    assert template is not None
    assert template.fill("FA:16:3E:AA:BB:CC", ()) is None  # OVS prints MACs in lower case
    assert template.fill("not-a-mac", ()) is None
    ctx = ovs_context(CloudSnapshot(Deployment()), "c1")
    line = "table=20,priority=2,dl_vlan=3,dl_dst=FA:16:3E:AA:BB:CC actions=output:2"
    planned = planned_flow(ctx, "br-tun", line, "port x", "test")
    assert planned.flow == parse_flow(line)
    assert planned.text == "table=20,priority=2,dl_vlan=3,dl_dst=fa:16:3e:aa:bb:cc actions=output:2"


def test_joined_actions_are_the_whole_parse() -> None:
    parts = ("strip_vlan,load:0x64->NXM_NX_TUN_ID[]", "output:2", "output:17")
    acts, text = ovs_tun._joined_actions(*parts)
    whole = parse_flow("actions=" + ",".join(parts))
    assert acts == whole.actions
    assert text == format_add_flow(whole)[len("actions="):]


def test_one_pass_index_is_the_per_host_one(cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = ovs_context(cloud, "compute0000")
    assert ovs_tun._only_bound_ports(ctx)
    fast = ovs_tun._by_network(ctx)
    slow_cloud = dataclasses.replace(cloud, _index={})
    monkeypatch.setattr(ovs_tun, "_only_bound_ports", lambda ctx: False)
    slow = ovs_tun._by_network(ovs_context(slow_cloud, "compute0000"))
    assert fast == slow and sum(len(ps) for hosts in fast.values() for ps in hosts.values()) > 50


@pytest.mark.parametrize("options", [{}, {"arp_responder": True, "cookie": 0x1F}])
def test_every_planned_flow_is_its_origin_text(cloud: CloudSnapshot, options: dict[str, object]) -> None:
    """Each flow planned (by templates, joined actions or shared per-port-number flows) is what
    its origin's add-flow text parses to, and that text is the flow's canonical form."""
    for host in ("compute0001", "network"):
        state = plan_ovs(cloud, host, **options)  # type: ignore[arg-type]
        flows = [f for br in state.ovs.bridges if br.flows is not None for f in br.flows.flows]
        texts = [o.item for o in state.origins if o.kind == "flow"]
        assert len(flows) == len(texts) > 100
        assert Counter(format_add_flow(f) for f in flows) == Counter(texts)
        for text in set(texts):
            assert format_add_flow(parse_flow(text)) == text
        assert sum(o.builder == "tun_l2pop_flows" for o in state.origins) > 20


def _forget_kept() -> None:
    for kept in (ovs_tun._KEPT_L2POP, ovs_tun._KEPT_TUNNEL_PORTS, ovs_tun._KEPT_TUNNEL_FLOWS, ovs_int._KEPT_SPOOF,
                 ovs._KEPT_OFPORTS):
        kept.items.clear()
    ovs_tun._flood_flow.cache_clear()
    ovs_int._planned_flow.cache_clear()


def test_replan_reuses_only_what_did_not_change() -> None:
    """Hosts planned, then a port added (a fresh snapshot, as the server loads it): the re-plan
    reuses the kept flows and ports, and is exactly the plan made with nothing kept; so are
    plans of the same hosts with another cookie or with the ARP responder (not kept)."""
    bench = _bench()
    before, after = bench.build(9, 60, 6), bench.build(9, 61, 6)
    names = [h.name for h in before.deployment.hosts]
    for name in names:
        plan_ovs(before, name)
    new = after.ports[-1]
    kept_l2pop = dict(ovs_tun._KEPT_L2POP.items)
    replanned = {name: plan_ovs(after, name) for name in names}
    with_cookie = {name: plan_ovs(after, name, cookie=0x77) for name in names[:3]}
    responder = {name: plan_ovs(after, name, arp_responder=True) for name in names[:3]}
    reused = sum(ovs_tun._KEPT_L2POP.items.get(slot, (None, None))[1] is batch
                 for slot, (_key, batch) in kept_l2pop.items())
    assert 0 < reused < len(kept_l2pop)  # some networks' flows kept, the new port's network remade
    _forget_kept()
    fresh = dataclasses.replace(after, _index={})
    for name in names:
        assert replanned[name] == plan_ovs(fresh, name), name
        assert repr(replanned[name]) == repr(plan_ovs(fresh, name))
    for name in names[:3]:
        assert with_cookie[name] == plan_ovs(fresh, name, cookie=0x77)
        assert responder[name] == plan_ovs(fresh, name, arp_responder=True)
    peer = next(h for h in names if h not in (new.binding_host, "network")
                and any(p.binding_host == h for p in after.ports_on_network(new.network_id)))
    assert replanned[peer] != plan_ovs(before, peer)  # the peer learnt the new port's MAC


def test_content_ids_are_equal_for_equal_contents_only() -> None:
    a, b = ovs_kept.content_id(("x", "y")), ovs_kept.content_id(("x", "y"))
    assert a == b and ovs_kept.content_id(("x", "z")) != a
    ovs_kept._CONTENT_IDS.clear()  # forgotten contents get new numbers, never an old one
    assert ovs_kept.content_id(("x", "y")) not in (a, ovs_kept.content_id(("x", "z")))
