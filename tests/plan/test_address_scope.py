"""Address scopes in the router (issue 19): the L3 agent's scope marks per interface (mangle
``scope``), the drop of traffic leaving for another scope (filter ``scope``), the same-scope SNAT
exemption and the floating IPs' cross-scope marks, as neutron/agent/l3/router_info.py writes them;
and the simulator enforcing them on the planned router (the dropping rule named)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from neutrino.cli import main
from neutrino.host.iptables import Ruleset, TableName, format_rule, format_rules
from neutrino.plan.address_scope import MARK_ID_MIN, Marks, scope_mark
from neutrino.plan.generation import Generation
from neutrino.plan.l3 import plan_l3
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim.conntrack import Conntrack
from neutrino.sim.netfilter import FORWARD_PATH, HookCtx, Netfilter, NfVerdict
from neutrino.sim.packets import TCP, IPv4, TCPFlag
from neutrino.sim.trace import StepKind
from tests.cloud_setup import modern_seed000, state_env
from tests.plan.test_firewall import (
    R_EXT_SUBNET,
    R_QG,
    R_QR,
    R_ROUTER,
    R_SUBNET,
    net,
    port,
    reference,
    subnet,
)

B_NET = "b0b0b0b0-0000-4000-8000-00000000000b"
B_SUBNET = "b1b1b1b1-0000-4000-8000-00000000000b"
B_QR = "bbbb0000-1111-4222-8333-44445555bbbb"
SCOPE_A = "5c0e0000-aaaa-4aaa-8aaa-00000000000a"
SCOPE_B = "5c0e0000-bbbb-4bbb-8bbb-00000000000b"
QR_A, QR_B, QG = f"qr-{R_QR[:11]}", f"qr-{B_QR[:11]}", f"qg-{R_QG[:11]}"


def cloud(a: str | None, b: str | None, ext: str | None, *, snat: bool = True) -> CloudSnapshot:
    """The reference router with a second internal network (10.5.0.0/24), each subnet (and the
    external one) in the given address scope."""
    base = reference()
    scopes = {R_SUBNET: a, B_SUBNET: b, R_EXT_SUBNET: ext}
    subnets = tuple(replace(s, address_scope_id=scopes.get(s.id)) for s in base.subnets)
    subnets += (replace(subnet(B_SUBNET, B_NET, "10.5.0.0/24", "10.5.0.1"), address_scope_id=b),)
    qr_b = port(B_QR, B_NET, "fa:16:3e:bb:00:01", ((B_SUBNET, "10.5.0.1"),), "network:router_interface",
                "network", device=R_ROUTER)
    router = base.routers[0]
    assert router.gateway is not None
    router = replace(router, interface_port_ids=(R_QR, B_QR), gateway=replace(router.gateway, enable_snat=snat))
    return replace(base, networks=(*base.networks, net(B_NET, 1450, (B_SUBNET,), kind="vxlan", seg=101)),
                   subnets=subnets, ports=(*base.ports, qr_b), routers=(router,))


def ruleset(snap: CloudSnapshot) -> Ruleset:
    ns = plan_l3(snap, "network", Generation.MODERN).namespace(f"qrouter-{R_ROUTER}")
    assert ns is not None and ns.iptables is not None
    return ns.iptables


def lines(snap: CloudSnapshot, table: TableName, chain: str) -> list[str]:
    return format_rules(ruleset(snap).table(table), f"neutron-l3-agent-{chain}").splitlines()[1:]


def test_marks_are_the_agents() -> None:
    assert scope_mark(MARK_ID_MIN) == "0x4000000/0xffff0000"  # noscope, what the planner always wrote
    m = Marks()
    assert [m.of(None), m.of("x"), m.of("y"), m.of("x"), m.of("")] == [
        "0x4000000/0xffff0000", "0x4010000/0xffff0000", "0x4020000/0xffff0000", "0x4010000/0xffff0000",
        "0x4000000/0xffff0000"]


def test_without_scopes_the_plan_is_the_default_marks_one() -> None:
    snap = cloud(None, None, None)
    assert lines(snap, TableName.MANGLE, "scope") == [
        f"-A neutron-l3-agent-scope -i {QR_A} -j MARK --set-xmark 0x4000000/0xffff0000",
        f"-A neutron-l3-agent-scope -i {QR_B} -j MARK --set-xmark 0x4000000/0xffff0000",
        f"-A neutron-l3-agent-scope -i {QG} -j MARK --set-xmark 0x4000000/0xffff0000"]
    assert not any("ACCEPT" in x for x in lines(snap, TableName.NAT, "snat"))
    assert lines(snap, TableName.MANGLE, "floatingip") == []
    # the reference router (one interface) is planned exactly as before
    ref = ruleset(reference())
    assert ref == ruleset(replace(reference(), subnets=tuple(replace(s, address_scope_id=None)
                                                              for s in reference().subnets)))


def test_two_scopes_on_one_router() -> None:
    snap = cloud(SCOPE_A, SCOPE_B, None)
    assert lines(snap, TableName.MANGLE, "scope") == [
        f"-A neutron-l3-agent-scope -i {QR_A} -j MARK --set-xmark 0x4010000/0xffff0000",
        f"-A neutron-l3-agent-scope -i {QR_B} -j MARK --set-xmark 0x4020000/0xffff0000",
        f"-A neutron-l3-agent-scope -i {QG} -j MARK --set-xmark 0x4000000/0xffff0000"]
    assert lines(snap, TableName.FILTER, "scope") == [
        f"-A neutron-l3-agent-scope -o {QR_A} -m mark ! --mark 0x4010000/0xffff0000 -j DROP",
        f"-A neutron-l3-agent-scope -o {QR_B} -m mark ! --mark 0x4020000/0xffff0000 -j DROP"]
    # the reference's floating IP (10.0.0.5, scope A) crosses to the external network (no scope)
    assert lines(snap, TableName.MANGLE, "floatingip") == [
        "-A neutron-l3-agent-floatingip -d 203.0.113.20/32 -j MARK --set-xmark 0x4010000/0xffff0000"]
    assert lines(snap, TableName.MANGLE, "FORWARD") == [
        "-A neutron-l3-agent-FORWARD -s 10.0.0.5/32 -j neutron-l3-agent-float-snat"]
    assert lines(snap, TableName.MANGLE, "float-snat") == [
        "-A neutron-l3-agent-float-snat -m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark "
        "--nfmask 0xffff0000 --ctmask 0xffff0000",
        f"-A neutron-l3-agent-float-snat -o {QG} -j MARK --set-xmark 0x4000000/0xffff0000"]


def test_the_external_scope_is_met_first_and_exempts_its_own_traffic_from_snat() -> None:
    snap = cloud(SCOPE_B, SCOPE_A, SCOPE_A)
    # the gateway's scope gets the first id after noscope, then the interfaces' in order
    assert lines(snap, TableName.MANGLE, "scope") == [
        f"-A neutron-l3-agent-scope -i {QR_A} -j MARK --set-xmark 0x4020000/0xffff0000",
        f"-A neutron-l3-agent-scope -i {QR_B} -j MARK --set-xmark 0x4010000/0xffff0000",
        f"-A neutron-l3-agent-scope -i {QG} -j MARK --set-xmark 0x4010000/0xffff0000"]
    snat = lines(snap, TableName.NAT, "snat")
    assert snat[:2] == ["-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat",  # the manager's, first
                        f"-A neutron-l3-agent-snat -o {QG} -m connmark --mark 0x4010000/0xffff0000 -j ACCEPT"]
    assert snat[2].startswith(f"-A neutron-l3-agent-snat -o {QG} -j SNAT --to-source 203.0.113.10")


def test_without_snat_the_gateway_is_guarded_and_nothing_is_exempted() -> None:
    snap = cloud(SCOPE_A, SCOPE_A, SCOPE_A, snat=False)
    assert lines(snap, TableName.FILTER, "scope")[-1] == (
        f"-A neutron-l3-agent-scope -o {QG} -m mark ! --mark 0x4010000/0xffff0000 -j DROP")
    assert not any("connmark" in x for x in lines(snap, TableName.NAT, "snat"))


# -- the simulator on the planned router -------------------------------------------------------------

def _forward(snap: CloudSnapshot, src: str, dst: str, in_dev: str, out_dev: str) -> tuple[NfVerdict, str, IPv4]:
    """The packet through the router's FORWARD path: the verdict, the deciding rule (the last rule
    step when no rule decided: a nat ACCEPT), the packet after NAT."""
    nf = Netfilter(ruleset(snap), Conntrack())
    pkt = IPv4(src=ipaddress.IPv4Address(src), dst=ipaddress.IPv4Address(dst),
               payload=TCP(sport=40000, dport=80, flags=TCPFlag.SYN))
    res = nf.traverse(FORWARD_PATH, pkt, HookCtx(in_dev=in_dev, out_dev=out_dev, dev_addrs=(
        (QG, ipaddress.IPv4Address("203.0.113.10")),)))
    rules = [s.text for s in res.steps if s.kind == StepKind.RULE]
    return res.verdict, format_rule(res.rule) if res.rule is not None else rules[-1], res.packet


def test_traffic_between_scopes_is_dropped_by_the_scope_chain() -> None:
    verdict, why, _ = _forward(cloud(SCOPE_A, SCOPE_B, None), "10.0.0.5", "10.5.0.7", QR_A, QR_B)
    assert verdict == NfVerdict.DROP
    assert why == f"-A neutron-l3-agent-scope -o {QR_B} -m mark ! --mark 0x4020000/0xffff0000 -j DROP"
    verdict, why, _ = _forward(cloud(SCOPE_A, SCOPE_B, None), "10.5.0.7", "10.0.0.5", QR_B, QR_A)
    assert verdict == NfVerdict.DROP and QR_A in why


@pytest.mark.parametrize(("a", "b"), [(SCOPE_A, SCOPE_A), (None, None)], ids=["same-scope", "no-scope"])
def test_traffic_within_a_scope_passes(a: str | None, b: str | None) -> None:
    verdict, _, out = _forward(cloud(a, b, None), "10.0.0.5", "10.5.0.7", QR_A, QR_B)
    assert verdict == NfVerdict.ACCEPT and str(out.src) == "10.0.0.5"


def test_same_scope_traffic_to_the_external_network_is_not_snated() -> None:
    snap = cloud(SCOPE_A, SCOPE_B, SCOPE_A)
    verdict, why, out = _forward(snap, "10.0.0.9", "198.51.100.7", QR_A, QG)
    assert verdict == NfVerdict.ACCEPT
    assert str(out.src) == "10.0.0.9"  # routed as is: the external network is in its scope
    assert "-m connmark --mark 0x4010000/0xffff0000 -j ACCEPT" in why
    verdict, _, out = _forward(snap, "10.5.0.9", "198.51.100.7", QR_B, QG)
    assert verdict == NfVerdict.ACCEPT and str(out.src) == "203.0.113.10"  # another scope: SNATed


# -- end to end: a pool's scope, through the services, in `neutrino trace` ---------------------------------

@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """Seed 000 in modern Neutron with a second network (blue, 10.20.0.0/24, instance vm2) on router1;
    then, through the services, an address scope and a subnet pool in it that blue's subnet belongs to
    (private's subnet stays out of any scope), replanned."""
    from sqlalchemy import select

    from neutrino import worldkeep
    from neutrino.db import models
    from neutrino.deploy import open_cloud, replan
    from neutrino.services import subnetpools
    from neutrino.services.cloud import prepare

    def with_blue(doc: dict[str, Any]) -> None:
        doc["resources"]["networks"].append({"name": "blue", "subnets": [{"name": "blue-subnet",
                                                                          "cidr": "10.20.0.0/24"}]})
        doc["resources"]["routers"][0]["interfaces"].append("blue-subnet")
        doc["resources"]["servers"].append({"name": "vm2", "image": "cirros", "flavor": "1",
                                            "networks": ["blue"], "host": "compute"})

    tmp = tmp_path_factory.mktemp("scope-e2e")
    scenario = modern_seed000(tmp, "scoped.yaml", with_blue)
    with state_env(tmp / "state") as state:
        assert main(["up", str(scenario)]) == 0
        c = open_cloud(state)
        with c.write(c.admin_context()) as tx:
            scope = subnetpools.create_scope(tx, prepare("address_scope", {"name": "scope-a", "ip_version": 4}))
            pool = subnetpools.create_subnetpool(tx, prepare("subnetpool", {
                "name": "pool-a", "prefixes": ["10.20.0.0/16"], "address_scope_id": scope["id"]}))
            # blue's subnet as if allocated from the pool (the scenario language has no pools)
            blue = tx.session.scalars(select(models.Subnet).where(models.Subnet.name == "blue-subnet")).one()
            blue.subnetpool_id = pool["id"]
            router = tx.session.scalars(select(models.Router)).one().id
        replan(state)
        worldkeep.invalidate(state)
        yield state, router


def test_trace_between_scopes_names_the_scope_rule(scoped: tuple[Path, str], capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    state, router = scoped
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    capsys.readouterr()
    main(["trace", "cirros", "10.20.0.2", "--proto", "icmp"])
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"=> dropped: iptables rule at network qrouter-{router}"), out
    assert "-A neutron-l3-agent-scope -o qr-" in last and "-m mark ! --mark 0x4010000/0xffff0000 -j DROP" in last
    # the other way too: blue's packets are marked with its scope and dropped leaving for private
    main(["trace", "vm2", "10.1.0.2", "--proto", "icmp"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("=> dropped:") and "-m mark ! --mark 0x4000000/0xffff0000 -j DROP" in last
    # and to the outside (no scope on the external network, SNAT on): routed and SNATed as before
    main(["trace", "vm2", "8.8.8.8", "--proto", "icmp"])
    out = capsys.readouterr().out
    assert "dropped" not in out.strip().splitlines()[-1] and "172.24.4.227" in out, out


def test_exec_shows_the_scope_marks(scoped: tuple[Path, str], capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    state, router = scoped
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    capsys.readouterr()
    assert main(["exec", "network", "--", "ip", "netns", "exec", f"qrouter-{router}", "iptables", "-t", "mangle",
                 "-S", "neutron-l3-agent-scope"]) == 0
    marks = [x.rsplit(" ", 1)[1] for x in capsys.readouterr().out.splitlines() if "--set-xmark" in x]
    assert sorted(marks) == ["0x4000000/0xffff0000", "0x4000000/0xffff0000", "0x4010000/0xffff0000"]
