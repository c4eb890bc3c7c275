"""The firewall's rules and the OVS assembly's flow origins made with the fast constructors of
:mod:`neutrino.host.fastnew` (issue #17): each must be the very object the dataclass's own
constructor makes (every field, the never-compared ``origin`` too) and print the same."""

from __future__ import annotations

import ipaddress
from dataclasses import fields

from neutrino.host.iptables import (
    Address,
    Fragment,
    Interface,
    Match,
    Option,
    Protocol,
    Rule,
    Target,
    format_rule,
    new_rule,
    parse_rule,
)
from neutrino.host.openflow import parse_flow
from neutrino.host.state import Origin
from neutrino.plan import ovs
from neutrino.plan.firewall import _in, _physdev, _physdev_match
from neutrino.plan.ovs_int import PlannedFlow


def _all_fields(r: Rule) -> tuple[object, ...]:
    return tuple(getattr(r, f.name) for f in fields(r))


def test_new_rule_is_the_rule_the_constructor_makes() -> None:
    values = ("neutron-openvswi-o1234", Address(ipaddress.ip_network("10.0.0.0/24"), True),
              Address(ipaddress.ip_network("10.0.1.5/32")), Interface("qvb1"), Interface("tap1", True),
              Protocol("udp"), Fragment.ANY, (Match("udp", (Option("sport", ("68",)),)),),
              Target("RETURN"), None, "port 1 via test")
    fast, plain = new_rule(*values), Rule(*values)
    assert type(fast) is Rule
    assert _all_fields(fast) == _all_fields(plain) == values
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    assert format_rule(fast) == format_rule(plain)


def test_firewall_builders_match_their_keyword_rules() -> None:
    why = "port p via test"
    physdev = _physdev_match("out", "tap1")
    got = _physdev("neutron-openvswi-FORWARD", physdev, (), "neutron-openvswi-sg-chain", why)
    want = Rule("neutron-openvswi-FORWARD", matches=(physdev,), target=Target("neutron-openvswi-sg-chain"),
                origin=why)
    assert _all_fields(got) == _all_fields(want)
    spec = "-p udp -m udp --sport 67 --dport 68 -j RETURN"
    dest = Address(ipaddress.ip_network("10.0.0.7/32"))
    got = _in("neutron-openvswi-i1", spec, why, destination=dest)
    parsed = parse_rule(f"-A neutron-openvswi-i1 -d 10.0.0.7/32 {spec}")
    assert _all_fields(got)[:-1] == _all_fields(parsed)[:-1] and got.origin == why
    assert format_rule(got) == f"-A neutron-openvswi-i1 -d 10.0.0.7/32 {spec}"


def test_joined_gives_each_planned_flow_its_origin() -> None:
    parts = tuple(PlannedFlow("br-int", parse_flow(f"table=0,priority={p},in_port={p} actions=drop"), f"port {p}",
                              "test", f"table=0, priority={p},in_port={p} actions=drop") for p in (3, 1, 2))
    by_bridge, origins, _ = ovs._joined(parts, {})
    assert [type(o) for o in origins] == [Origin] * 3
    assert origins == tuple(Origin("flow", p.text, p.obj, p.builder) for p in parts)
    assert [f.priority for f in by_bridge["br-int"][(0, -3)]] == [3]
