"""Re-planning after a change touches only the affected hosts; the planners' parse shortcuts
(templates for per-port iptables lines and per-MAC flows) give exactly what a plain parse gives."""

from __future__ import annotations

from neutrino.host.iptables import parse_rule
from neutrino.host.openflow import format_add_flow, parse_flow
from neutrino.plan import hosts_affected_by_port, plan_host, plan_hosts
from neutrino.plan.generation import rule
from neutrino.plan.ovs import ovs_context
from neutrino.plan.ovs_int import planned_flow
from neutrino.scenarios.model import Deployment
from neutrino.services.snapshot import CloudSnapshot
from tests.plan.benchmod import plan_bench

_bench = plan_bench


def test_one_port_added_replans_only_the_hosts_it_touches() -> None:
    bench = _bench()
    before, after = bench.build(12, 60, 30), bench.build(12, 61, 30)
    new = after.ports[-1]
    affected = hosts_affected_by_port(after, new.id)
    sharing = {p.binding_host for p in after.ports_on_network(new.network_id)}
    assert new.binding_host in affected and "network" in affected
    assert set(affected) == sharing | {new.binding_host}
    others = [h.name for h in after.deployment.hosts if h.name not in affected]
    assert others, "some hosts share no network with the new port"
    for name in others:
        assert plan_host(before, name) == plan_host(after, name), name
    states = plan_hosts(after, affected)
    assert list(states) == list(affected)
    assert states[new.binding_host] != plan_host(before, new.binding_host)
    assert states[new.binding_host] == plan_host(after, new.binding_host)
    # l2population: a host sharing the network learns the new port's MAC
    peer = next(n for n in affected if n not in (new.binding_host, "network"))
    assert states[peer] != plan_host(before, peer)


def test_templated_rule_is_the_plain_parse() -> None:
    pid = "7c7ae61e-0512-4b8e-9a51-0123456789ab"
    vary = pid[:10]
    lines = [f"-A neutron-openvswi-sg-chain -m physdev --physdev-out tap{pid[:11]} --physdev-is-bridged "
             f'-m comment --comment "Jump to the VM specific chain." -j neutron-openvswi-i{vary}',
             f'-A neutron-openvswi-o{vary} -m comment --comment "Set zone for {pid}" -j RETURN',
             f"-A neutron-openvswi-s{vary} -s 10.0.0.5/32 -m mac --mac-source FA:16:3E:00:00:01 -j RETURN"]
    for line in lines:
        got = rule(line, "why", vary=vary)
        assert got == parse_rule(line) and got.origin == "why"
        assert rule(line.replace(vary, "0123abcd-e"), "x", vary="0123abcd-e") == parse_rule(
            line.replace(vary, "0123abcd-e"))


def test_templated_flow_is_the_plain_parse() -> None:
    ctx = ovs_context(CloudSnapshot(Deployment()), "c1", cookie=0x1234)
    for mac in ("fa:16:3e:00:00:01", "fa:16:3e:aa:bb:cc"):
        text = (f"table=20,priority=2,dl_vlan=3,dl_dst={mac} "
                "actions=strip_vlan,load:0x64->NXM_NX_TUN_ID[],output:7")
        planned = planned_flow(ctx, "br-tun", text, "port x", "test")
        plain = parse_flow(text)
        assert planned.flow.match == plain.match and planned.flow.actions == plain.actions
        assert planned.flow.cookie == 0x1234
        assert planned.text == format_add_flow(planned.flow)
        assert f"dl_dst={mac}" in planned.text
