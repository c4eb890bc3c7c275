"""The simulator's conntrack, ct actions and conjunctions in OVS flows (issue 18), on hand-written
tables and on examples/ovsfw.yaml, whose br-int carries Neutron's native OVS firewall: a
remote-group rule (a conjunction) lets group members in on tcp/22, a CIDR rule lets the subnet
ping, replies pass as established, everything else ends in DROPPED_TRAFFIC_TABLE (93)."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.host.openflow import parse_dump_flows
from neutrino.host.ovsdb import Bridge, Port
from neutrino.sim.cloud import world_of
from neutrino.sim.ovs import OvsBridgeSim
from neutrino.sim.packets import echo_reply, echo_request, ip, mac, udp_frame
from neutrino.sim.trace import StepKind

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "ovsfw.yaml"
A_MAC, B_MAC = mac("fa:16:3e:00:00:0a"), mac("fa:16:3e:00:00:0b")
A_IP, B_IP = ip("10.1.0.2"), ip("10.1.0.3")


def _bridge(dump: str) -> OvsBridgeSim:
    return OvsBridgeSim(Bridge("br-x", fail_mode="secure", ports=(Port("a"), Port("b"))), parse_dump_flows(dump), None)


FIREWALL = """\
table=0, priority=10,in_port=a,ip actions=ct(table=1,zone=5)
table=0, priority=10,in_port=b,ip actions=ct(table=2,zone=5)
table=1, priority=20,ct_state=+trk+new,ip actions=ct(commit,zone=5,exec(set_field:0x2->ct_mark,set_field:0x10->ct_label)),output:b
table=1, priority=20,ct_state=+trk+est,ip actions=output:b
table=2, priority=30,ct_state=+trk+est+rpl,ct_zone=5,ct_mark=0x2,ct_label=0x10 actions=output:a
table=2, priority=1 actions=drop
"""


def test_ct_commit_zone_mark_label_and_the_established_reply() -> None:
    sim = _bridge(FIREWALL)
    req = echo_request(A_MAC, B_MAC, A_IP, B_IP)
    r = sim.process("a", req)
    assert r.ports == ("b",)
    ct = [s.detail for s in r.steps if s.kind is StepKind.CONNTRACK]
    assert ct[0].startswith("ct_state=+new+trk in zone 5") and "recirculation" in ct[0]
    assert "committed" in ct[1] and "ct_mark=0x2 on the connection" in ct[1]
    (conn,) = sim.conntrack.entries()
    assert (conn.zone, conn.mark, conn.label) == (5, 2, 0x10)
    back = sim.process("b", echo_reply(req, src_mac=B_MAC))
    assert back.ports == ("a",)
    assert any("ct_state=+est+rpl+trk in zone 5" in s.detail for s in back.steps if s.kind is StepKind.CONNTRACK)
    # a new connection from b is no reply: table 2 drops it
    assert sim.process("b", echo_request(B_MAC, A_MAC, B_IP, A_IP, id=9)).dropped
    # and a connection that was never committed leaves nothing behind
    sim.reset()
    assert not sim.conntrack.entries()


def test_uncommitted_lookups_leave_no_connection() -> None:
    sim = _bridge("table=0, priority=10,ip actions=ct(table=1,zone=1)\n"
                  "table=1, priority=10,ct_state=+trk+new actions=output:b\n")
    assert sim.process("a", echo_request(A_MAC, B_MAC, A_IP, B_IP)).ports == ("b",)
    assert not sim.conntrack.entries()


CONJ = """\
table=0, priority=10,ip,nw_src=10.1.0.2 actions=conjunction(7,1/2)
table=0, priority=10,icmp actions=conjunction(7,2/2)
table=0, priority=10,conj_id=7,ip actions=load:0x7->NXM_NX_REG7[],output:b
table=0, priority=1 actions=drop
"""


def test_conjunction_needs_every_clause() -> None:
    sim = _bridge(CONJ)
    r = sim.process("a", echo_request(A_MAC, B_MAC, A_IP, B_IP))
    assert r.ports == ("b",)
    assert [s.text for s in r.steps if s.kind is StepKind.FLOW][0].startswith("priority=10,conj_id=7,ip")
    assert sim.process("a", echo_request(A_MAC, B_MAC, ip("10.1.0.9"), B_IP)).dropped  # clause 1 fails
    assert sim.process("a", udp_frame(A_MAC, B_MAC, A_IP, B_IP, 5000, 53, b"")).dropped  # clause 2 fails


def test_ct_clear_untracks_the_packet() -> None:
    sim = _bridge("table=0, priority=10,ip actions=ct(table=1,zone=1)\n"
                  "table=1, priority=10,ct_state=+trk actions=ct_clear,resubmit(,2)\n"
                  "table=2, priority=10,ct_state=-trk actions=output:b\n")
    r = sim.process("a", echo_request(A_MAC, B_MAC, A_IP, B_IP))
    assert r.ports == ("b",)
    assert any("ct_clear" in s.detail for s in r.steps if s.kind is StepKind.FLOW)


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # noqa: ANN001, ANN201
    from neutrino.deploy import bring_up

    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(tmp_path_factory.mktemp("simovsfw")))
    try:
        result = bring_up(SCENARIO)
    finally:
        mp.undo()
    w = world_of(result.cloud, result.hosts)
    w.leases = w.boot()
    return w


def _flows(trace) -> list[str]:  # noqa: ANN001
    return [s.text for h in trace.hops for s in h.steps if s.kind is StepKind.FLOW]


def test_instances_get_their_leases_through_the_firewall(world) -> None:  # noqa: ANN001
    assert world.leases == {"web1": "10.0.0.11/24", "web2": "10.0.0.12/24", "plain1": "10.0.0.13/24"}


def test_remote_group_conjunction_lets_a_member_in_and_the_reply_back(world) -> None:  # noqa: ANN001
    t = world.probe("web2", "10.0.0.11", proto="tcp", dport=22)
    assert t.delivered, t.verdict
    flows = _flows(t)
    assert any(f.startswith("table=82,priority=73,conj_id=23,ct_state=+new-est,ip,") for f in flows)
    assert any(f.startswith("table=73,priority=90,ct_state=+new-est,ip,") for f in flows)  # committed egress
    assert t.reply is not None and t.reply.delivered
    assert any("ct_state=+est-rel+rpl" in f for f in _flows(t.reply))


def test_no_rule_for_a_non_member_drops_in_table_93(world) -> None:  # noqa: ANN001
    t = world.probe("plain1", "10.0.0.11", proto="tcp", dport=22)
    assert not t.delivered
    assert t.verdict.where == "compute01 br-int" and t.verdict.detail.startswith("table=93,priority=0 actions=drop")
    t = world.probe("web1", "10.0.0.12", proto="tcp", dport=80)  # no rule for tcp/80 at all
    assert not t.delivered and t.verdict.where == "compute02 br-int"


def test_cidr_rule_allows_icmp_from_the_subnet_and_plain_allows_nothing_in(world) -> None:  # noqa: ANN001
    t = world.probe("plain1", "10.0.0.11", proto="icmp")
    assert t.delivered
    assert any(f.startswith("table=82,priority=75,ct_state=+new-est,icmp,") for f in _flows(t))
    t = world.probe("web1", "10.0.0.13", proto="icmp")
    assert not t.delivered and t.verdict.detail.startswith("table=93")


def test_untracked_mode_takes_every_packet_as_new_as_ofproto_trace_does() -> None:
    sim = _bridge(FIREWALL)
    sim.track_connections = False
    req = echo_request(A_MAC, B_MAC, A_IP, B_IP)
    assert sim.process("a", req).ports == ("b",)
    assert not sim.conntrack.entries()
    r = sim.process("b", echo_reply(req, src_mac=B_MAC))
    assert r.dropped  # no reply state without tracking
    assert any(s.detail.startswith("no connection looked up: taken as ct_state=+new+trk in zone 5")
               for s in r.steps if s.kind is StepKind.CONNTRACK)


def test_a_kept_bridge_keeps_its_connections() -> None:
    import pickle

    sim = _bridge(FIREWALL)
    req = echo_request(A_MAC, B_MAC, A_IP, B_IP)
    sim.process("a", req)
    again = pickle.loads(pickle.dumps(sim))
    assert again.process("b", echo_reply(req, src_mac=B_MAC)).ports == ("a",)
    fresh = _bridge(FIREWALL)
    fresh.take_over(again)
    assert len(fresh.conntrack.entries()) == 1


def test_ct_nat_binds_on_commit_and_undoes_it_for_the_reply() -> None:
    from neutrino.sim.packets import network_layer

    sim = _bridge("table=0, priority=10,in_port=a,ip actions=ct(commit,zone=2,nat(src=192.0.2.9)),output:b\n"
                  "table=0, priority=10,in_port=b,ip actions=ct(table=1,zone=2,nat)\n"
                  "table=1, priority=10,ct_state=+trk+est+rpl actions=output:a\n")
    req = echo_request(A_MAC, B_MAC, A_IP, B_IP)
    out = sim.process("a", req).outputs[0]
    assert str(network_layer(out.frame).src) == "192.0.2.9"  # type: ignore[union-attr]
    reply = echo_reply(out.frame, src_mac=B_MAC)
    back = sim.process("b", reply).outputs[0]
    assert back.port == "a" and str(network_layer(back.frame).dst) == str(A_IP)  # type: ignore[union-attr]


def test_the_routers_reply_comes_in_as_established(world) -> None:  # noqa: ANN001
    t = world.probe("plain1", "10.0.0.1", proto="icmp")
    assert t.delivered and t.reply is not None and t.reply.delivered
    flows = _flows(t.reply)
    assert any(f.startswith("table=60,priority=100,") and f.endswith("resubmit(,73)") for f in flows)  # trusted
    assert any(f.startswith("table=82,priority=50,ct_state=+est-rel+rpl,") for f in flows)
