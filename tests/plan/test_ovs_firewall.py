"""The native ``openvswitch`` firewall driver (issue 18): examples/ovsfw.yaml planned, its br-int
flows as Neutron's OVS firewall writes them, and ``explain`` naming every table and field of every
planned bridge of every example scenario."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from neutrino.cli import main
from neutrino.errors import InvalidInput
from neutrino.host.openflow import format_add_flow
from neutrino.host.state import ROOT, HostState
from neutrino.scenarios.model import load_scenario
from neutrino.views.explain import explain_flows, table_name
from tests.cloud_setup import state_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCENARIO = EXAMPLES / "ovsfw.yaml"
CLASS_NAME = re.compile(r"\b[A-Z][a-z]+[A-Z]\w*")


def _bring_up(path: Path, state: Path):  # noqa: ANN202 - deploy's result
    from neutrino.deploy import bring_up

    with state_env(state):
        return bring_up(path)


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:  # noqa: ANN001
    return tmp_path_factory.mktemp("ovsfw")


@pytest.fixture(scope="module")
def up(state: Path):  # noqa: ANN201
    return _bring_up(SCENARIO, state)


def _host(up, name: str) -> HostState:  # noqa: ANN001
    return next(h for h in up.hosts if h.name == name)


def _flows(h: HostState) -> list[str]:
    bf = h.ovs.flows_of("br-int")
    assert bf is not None and bf.flows is not None
    return [format_add_flow(f) for f in bf.flows.flows]


def _port_of(up, server: str) -> str:  # noqa: ANN001
    sid = next(s for s in up.cloud.servers if s.name == server).port_ids[0]
    return sid


def test_tap_straight_on_br_int_no_hybrid_plug_no_iptables_chains(up) -> None:  # noqa: ANN001
    h = _host(up, "compute01")
    pid = _port_of(up, "web1")
    tap = f"tap{pid[:11]}"
    names = [lk.name for lk in h.namespace(ROOT).links]
    assert tap in names and not any(n.startswith(("qbr", "qvb", "qvo")) for n in names)
    br_int = next(b for b in h.ovs.show.bridges if b.name == "br-int")
    assert tap in [p.name for p in br_int.ports]
    ipt = h.namespace(ROOT).iptables
    assert ipt is None or not any("openvswi" in c.name for t in ipt.tables for c in t.chains)
    assert not h.linux_bridges


def test_per_port_flows_in_the_firewall_tables(up) -> None:  # noqa: ANN001
    h = _host(up, "compute01")
    show = h.ovs.flows_of("br-int").ports
    tap = f"tap{_port_of(up, 'web1')[:11]}"
    n = next(p.number for p in show.ports if p.name == tap)
    flows = _flows(h)
    # Neutron's set_field:N->reg5, as ovs-ofctl dump-flows prints it back
    assert (f"table=60,priority=100,in_port={n} actions=load:0x{n:x}->NXM_NX_REG5[],load:0x1->NXM_NX_REG6[],"
            "resubmit(,71)") in flows
    mine = [f for f in flows if f"reg5=0x{n:x}" in f or f"in_port={n}" in f]
    tables = {int(m.group(1)) for f in mine if (m := re.match(r"table=(\d+)", f))}
    assert {60, 71, 72, 73, 81, 82} <= tables
    assert any("ct(table=72,zone=NXM_NX_REG6[0..15])" in f and "nw_src=10.0.0.11" in f for f in flows)
    assert f"table=72,priority=50,ct_mark=0x1,reg5=0x{n:x} actions=resubmit(,93)" in flows
    assert any(f.startswith("table=82,priority=40,ct_state=+est,ip,") and "exec(load:0x1->NXM_NX_CT_MARK[])" in f
               for f in flows)
    # the CIDR rule (ICMP from 10.0.0.0/24): priority 70 + 4 + 1, committed on +new-est
    assert (f"table=82,priority=75,ct_state=+new-est,icmp,reg5=0x{n:x},nw_src=10.0.0.0/24 "
            f"actions=ct(commit,zone=NXM_NX_REG6[0..15]),output:{n},resubmit(,92)") in flows
    # the remote-group rule (tcp/22 from "web"): a conjunction, the members on the local VLAN
    assert f"table=82,priority=73,ct_state=+new-est,tcp,reg5=0x{n:x},tp_dst=22 actions=conjunction(23,2/2)" in flows
    for member in ("10.0.0.11", "10.0.0.12"):
        assert f"table=82,priority=73,ct_state=+new-est,ip,reg6=0x1,nw_src={member} actions=conjunction(23,1/2)" in flows
    assert not any("10.0.0.13" in f for f in flows if "conjunction" in f)
    assert any(f.startswith("table=82,priority=73,conj_id=23,") and "load:0x17->NXM_NX_REG7[]" in f for f in flows)
    # anti-spoofing and DHCP: the instance's own ARP and DHCP requests pass, a DHCP server is banned
    assert any("arp" in f and "arp_spa=10.0.0.11" in f and f.startswith("table=71,priority=95") for f in flows)
    assert f"table=71,priority=70,udp,reg5=0x{n:x},in_port={n},tp_src=67,tp_dst=68 actions=resubmit(,93)" in flows
    for t in (71, 72, 73, 81, 82, 92, 93):
        assert f"table={t},priority=0 actions=drop" in flows
    assert "table=94,priority=1 actions=NORMAL" in flows
    # no iptables-era anti-spoofing tables
    assert not any(f.startswith(("table=24,priority=2", "table=25,")) for f in flows)


def test_trusted_ports_skip_the_filter(up) -> None:  # noqa: ANN001
    flows = _flows(_host(up, "controller"))
    trusted = [f for f in flows if f.startswith("table=60,priority=100,")]
    assert trusted and all(f.endswith("resubmit(,73)") for f in trusted)
    assert not any(f.startswith("table=82,priority=7") for f in flows)


def test_compute_hosts_dump_flows_and_explain_from_the_cli(up, state, capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["exec", "compute02", "--", "ovs-ofctl", "dump-flows", "br-int", "table=82"]) == 0
    out = capsys.readouterr().out
    assert "conjunction(" in out and "table=82" in out
    assert main(["explain", "compute02", "br-int"]) == 0
    out = capsys.readouterr().out
    assert "table 82 (RULES_INGRESS_TABLE)" in out and "clause 1 of 2 of conjunction 23" in out
    assert "whose connection is new, not established (+new-est)" in out
    assert "in the zone held in NXM_NX_REG6[0..15] (the port's local VLAN)" in out


def test_openvswitch_firewall_needs_modern_ml2(tmp_path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.yaml"
    bad.write_text("deployment: {mechanism: ml2_ovs, generation: grizzly, firewall_driver: openvswitch}\n")
    with pytest.raises(InvalidInput, match="openvswitch needs mechanism ml2_ovs and generation modern"):
        load_scenario(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("deployment: {mechanism: ml2_ovs, generation: modern, firewall_driver: openvswitch}\n")
    assert load_scenario(ok).deployment.firewall_driver == "openvswitch"


@pytest.mark.parametrize("scenario", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_explain_names_every_table_and_prints_no_class_name(scenario: Path, tmp_path: Path) -> None:
    result = _bring_up(scenario, tmp_path)
    seen = 0
    for h in result.hosts:
        for bf in h.ovs.bridges:
            if bf.flows is None:
                continue
            text = explain_flows(bf.flows, bf.bridge, bf.ports)
            assert not CLASS_NAME.findall(text), (h.name, bf.bridge, CLASS_NAME.findall(text)[:3])
            assert "Subfield(" not in text and "genericaction" not in text.lower()
            for t in {int(x) for x in re.findall(r"\btable[= ](\d+)", text)}:
                assert table_name(bf.bridge, t), (h.name, bf.bridge, t)
            seen += 1
    nova = load_scenario(scenario).deployment.mechanism.value == "nova_network"
    assert seen or nova  # nova-network plans no Open vSwitch


def test_explain_says_which_flows_were_learned() -> None:
    from neutrino.host.openflow import parse_dump_flows

    dump = parse_dump_flows(
        "table=10, priority=1 actions=learn(table=20,hard_timeout=300,priority=1,NXM_OF_VLAN_TCI[0..11],"
        "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
        "output:OXM_OF_IN_PORT[]),output:1\n"
        "table=20, hard_timeout=300, priority=1,vlan_tci=0x0001/0x0fff,dl_dst=fa:16:3e:dc:2f:f7 "
        "actions=load:0->NXM_OF_VLAN_TCI[],load:0x1->NXM_NX_TUN_ID[],output:3\n"
        "table=20, priority=0 actions=resubmit(,22)\n")
    lines = [ln for ln in explain_flows(dump, "br-tun").splitlines() if ln.startswith("     -> ")]
    assert lines[1].startswith("     -> learned (installed by the learn action in table 10 (LEARN_FROM_TUN)): "
                               "table 20 (UCAST_TO_TUN), priority 1")
    assert "learned" not in lines[0] and "learned" not in lines[2]


def test_provider_vlan_ports_also_take_their_segments_tag(tmp_path: Path) -> None:
    doc = tmp_path / "vlan.yaml"
    doc.write_text("""\
deployment: {mechanism: ml2_ovs, generation: modern, firewall_driver: openvswitch, tenant_network_types: [vlan],
             network_vlan_ranges: ["physnet1:100:199"], external_network_bridge: ""}
hosts:
  - {name: net, roles: [controller, network], management_ip: 10.30.0.10, bridge_mappings: {physnet1: br-eth1}}
  - {name: cmp, roles: [compute], management_ip: 10.30.0.11, bridge_mappings: {physnet1: br-eth1}}
resources:
  networks: [{name: n1, subnets: [{name: s1, cidr: 10.9.0.0/24}]}]
  servers: [{name: vm, networks: [n1], host: cmp}]
""")
    result = _bring_up(doc, tmp_path / "state")
    seg = result.cloud.networks[0].segment
    assert seg.network_type == "vlan" and seg.segmentation_id == 100
    flows = _flows(_host(result, "cmp"))
    direct = [f for f in flows if f.startswith("table=60,priority=90,dl_vlan=100,")]
    local = [f for f in flows if f.startswith("table=60,priority=90,dl_vlan=1,")]
    assert len(direct) == 1 and len(local) == 1 and direct[0].endswith("strip_vlan,resubmit(,81)")
