"""The planners' speed-ups keep plans exact: firewall rules built as objects are their lines
parsed, pieces kept from an earlier plan come back only for equal inputs, and per-snapshot facts
belong to one snapshot."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from neutrino.host.iptables import format_rule, format_save, parse_rule
from neutrino.plan import InputsMemo, plan_host
from neutrino.plan import firewall as fw
from neutrino.plan.dhcp import plan_dhcp, served_networks
from neutrino.plan.generation import HAVANA, Generation, Profile, profile
from neutrino.services.snapshot import AddressPair, CloudSnapshot, FixedIP
from tests.plan.test_firewall import (
    R_NET,
    R_SG,
    R_SUBNET,
    R_VM2,
    S0_SG,
    port,
    reference,
    seed000,
    sg_rule,
)

PAIRS = (AddressPair(ipaddress.ip_network("10.0.0.64/26"), "fa:16:3e:aa:bb:cc"),
         AddressPair(ipaddress.ip_network("10.0.0.99/32"), ""))


def _clouds() -> list[CloudSnapshot]:
    unsecured = reference()
    unsecured = replace(unsecured, ports=tuple(replace(p, port_security_enabled=False) if p.id == R_VM2 else p
                                               for p in unsecured.ports))
    udp = sg_rule("r-udp", S0_SG, "egress", "udp", 1000, 2000, prefix="192.0.2.0/24")
    return [seed000(), seed000(extra_rules=(udp,)), reference(), reference(pairs=PAIRS), unsecured]


@pytest.mark.parametrize("prof", [profile(Generation.GRIZZLY), HAVANA, profile(Generation.MODERN)],
                         ids=["grizzly", "havana", "modern"])
def test_every_firewall_rule_is_its_line_parsed(prof: Profile) -> None:
    """The rules are built as objects, not parsed from text: each must be exactly what parsing the
    line it prints gives (matches, options, negations and all)."""
    seen = 0
    for cloud in _clouds():
        for host in ("compute", "compute2", "network"):
            ns = fw.plan_firewall(cloud, host, prof).namespace("")
            assert ns is not None and ns.iptables is not None
            for table in ns.iptables.tables:
                for chain in table.chains:
                    for r in chain.rules:
                        line = format_rule(r)
                        assert parse_rule(line) == r, line
                        assert r.origin, line
                        seen += 1
    assert seen > 150


def test_a_kept_firewall_comes_back_only_for_equal_inputs() -> None:
    first = fw.plan_firewall(reference(), "compute")
    assert fw.plan_firewall(reference(), "compute") is first  # an equal snapshot: the kept plan
    # a member of the remote group moves: compute's rule for it follows (the members are inputs)
    moved = reference()
    moved = replace(moved, ports=tuple(
        replace(p, fixed_ips=(FixedIP(R_SUBNET, ipaddress.ip_address("10.0.0.77")),)) if p.id == R_VM2 else p
        for p in moved.ports))
    after = fw.plan_firewall(moved, "compute")
    text = format_save(after.namespaces[0].iptables)  # type: ignore[arg-type]
    assert "-s 10.0.0.77/32" in text and "-s 10.0.0.6/32" not in text
    assert after == fw._planned(fw._inputs(moved, "compute", profile(Generation.MODERN)))  # as if never kept
    # a rule added to the group
    ruled = replace(reference(), security_groups=tuple(
        replace(g, rules=(*g.rules, sg_rule("r-dns", R_SG, "ingress", "udp", 53, 53))) for g in reference().security_groups))
    assert "--dport 53" in format_save(fw.plan_firewall(ruled, "compute").namespaces[0].iptables)  # type: ignore[arg-type]
    assert fw.plan_firewall(reference(), "compute") == first


def test_a_kept_dhcp_network_comes_back_only_for_equal_inputs() -> None:
    before = plan_dhcp(reference(), "network")
    path = next(f.path for f in before.files if f.path.endswith("/host"))
    extra = port("5a5a5a5a-0000-4000-8000-000000000009", R_NET, "fa:16:3e:55:55:55", ((R_SUBNET, "10.0.0.9"),),
                 "compute:nova", "compute2", sgs=(R_SG,))
    grown = reference()
    grown = replace(grown, ports=(*grown.ports, extra))
    after = plan_dhcp(grown, "network")
    host_file = after.file(path)
    assert host_file is not None and "fa:16:3e:55:55:55,host-10-0-0-9.openstacklocal.,10.0.0.9" in host_file.text
    assert before.file(path) != host_file
    # a change that is not the network's (a security group rule) reuses the kept pieces as they are
    ruled = replace(grown, security_groups=tuple(
        replace(g, rules=(*g.rules, sg_rule("r-dns", R_SG, "ingress", "udp", 53, 53))) for g in grown.security_groups))
    again = plan_dhcp(ruled, "network")
    assert again == after and again.namespaces[0] is after.namespaces[0]
    assert plan_dhcp(reference(), "network") == before  # the port gone again: as before


def test_whole_host_plans_do_not_depend_on_what_was_planned_before() -> None:
    """B planned after A (which differs from it only by a port's address pairs) is what B planned
    before A was: a piece kept for A is not handed to B (the kept pieces and numbered devices are
    keyed by their full inputs), and the other way round."""
    hosts = ("compute", "compute2", "network")
    b_first = {h: plan_host(reference(pairs=PAIRS), h) for h in hosts}
    a_then = {h: plan_host(reference(), h) for h in hosts}
    b_again = {h: plan_host(reference(pairs=PAIRS), h) for h in hosts}
    a_again = {h: plan_host(reference(), h) for h in hosts}
    assert b_again == b_first and a_again == a_then
    assert a_then["compute"] != b_first["compute"]
    text = format_save(b_again["compute"].namespaces[0].iptables)  # type: ignore[arg-type]
    assert "-s 10.0.0.64/26 -m mac --mac-source FA:16:3E:AA:BB:CC" in text


def test_snapshot_facts_belong_to_their_snapshot() -> None:
    """``dataclasses.replace`` hands a snapshot its original's index: it must start its own."""
    cloud = reference()
    assert served_networks(cloud, "network")  # computed and kept on ``cloud``
    assert cloud.subnets_of(R_NET)
    emptied = replace(cloud, ports=(), subnets=())
    assert served_networks(emptied, "network") == ()
    assert emptied.subnets_of(R_NET) == () and emptied.ports_on_host("compute") == ()
    assert served_networks(cloud, "network") and cloud.ports_on_host("compute")


def test_inputs_memo() -> None:
    memo: InputsMemo[tuple[int, ...], list[int]] = InputsMemo(size=2)
    calls: list[tuple[int, ...]] = []

    def compute(inputs: tuple[int, ...]) -> list[int]:
        calls.append(inputs)
        return list(inputs)

    first = memo.get("a", (1, 2), compute)
    assert memo.get("a", (1, 2), compute) is first and calls == [(1, 2)]
    assert memo.get("a", (1, 3), compute) == [1, 3] and len(calls) == 2  # other inputs: computed again
    memo.get("b", (5,), compute)
    memo.get("c", (6,), compute)  # over size: the oldest name ("a") is dropped
    assert memo.get("a", (1, 3), compute) == [1, 3] and len(calls) == 5


def test_collector_paused_for_a_batch_and_left_as_found() -> None:
    """plan_cloud and plan_hosts pause the cyclic collector while they plan and leave it as
    they found it (on, or off when the caller had turned it off)."""
    import gc

    from neutrino.collector import paused as collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the inner batch does not turn it back on
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the caller's choice is kept
    finally:
        gc.enable()
