"""``neutrino explain HOST NAME``: an iptables chain's rules in words, and the flow wording: a physical
bridge's VLANs are the provider's, ``nd_target`` shows its address, no Python class name is printed."""

from __future__ import annotations

import re

from neutrino.host import openflow_actions, openflow_match
from tests.views.conftest import kept


def test_explain_a_port_chain(seeds, neutrino):
    seeds("seed001")
    host = kept("compute01")
    chain = next(c for c in host.namespace("").iptables.find("filter").chains
                 if re.fullmatch(r"neutron-openvswi-i[0-9a-f]{8}-[0-9a-f]", c.name))
    rc, out, _ = neutrino("explain", "compute01", chain.name)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == f"# table filter, chain {chain.name}"
    assert lines[1].startswith(f"# ingress rules of port {chain.name[-10:]}… (what may reach the instance); made for port ")
    assert "by plan_firewall; reached from neutron-openvswi-sg-chain" in lines[1]
    rules = [ln for ln in lines if ln.startswith("-A ")]
    explained = [ln for ln in lines if ln.startswith("     -> ")]
    assert len(rules) == len(chain.rules) and len(explained) == len(rules) + 1  # + what no rule decides
    assert any("in connection state RELATED,ESTABLISHED: allow them" in ln for ln in explained)
    assert any("in connection state INVALID: drop them." in ln for ln in explained)
    assert any(ln.startswith("     -> UDP packets to ") and "from port 67, to port 68" in ln for ln in explained)
    assert "continue in chain neutron-openvswi-sg-fallback" in out


def test_explain_builtin_and_nat_chains(seeds, neutrino):
    seeds("seed002")
    out = neutrino("explain", "compute", "FORWARD")[1]
    assert "-P FORWARD ACCEPT\n     -> the policy: packets that no rule of FORWARD decides are accepted.\n" in out
    out = neutrino("explain", "network", "neutron-l3-agent-PREROUTING")[1]
    assert out.startswith("# namespace qrouter-") and ", table nat, chain neutron-l3-agent-PREROUTING\n" in out
    assert "     -> packets to 192.168.122.201: rewrite the destination address to 192.168.0.2.\n" in out
    rc, _, err = neutrino("explain", "compute", "neutron-openvswi-nope")
    assert rc == 2 and "no iptables chain neutron-openvswi-nope" in err


def test_provider_vlans(seeds, neutrino):
    """Seed 002: br-eth0 rewrites the local VLAN to the provider's (``mod_vlan_vid:3`` on its way out is
    VLAN 3 of physnet1), br-int the provider's to the local one."""
    seeds("seed002")
    out = neutrino("explain", "compute", "br-eth0")[1]
    assert "(phy-br-eth0), tagged local VLAN 2: tag with provider VLAN 3, then send to the normal L2" in out
    assert "local VLAN 3" not in out
    out = neutrino("explain", "compute", "br-int")[1]
    assert "(int-br-eth0), tagged provider VLAN 3: tag with local VLAN 2" in out


CLASS_NAMES = {n for n in (*openflow_match.__dict__, *openflow_actions.__dict__) if re.fullmatch(r"[A-Z][a-z]+[A-Z]\w*", n)}


def test_no_class_names_and_nd_target(seeds, neutrino):
    seeds("seed001")
    for bridge in ("br-int", "br-tun"):
        out = neutrino("explain", "compute01", bridge)[1]
        words = set(re.findall(r"\b[A-Z][a-z]+[A-Z]\w*\b", out))
        assert not words & CLASS_NAMES, words & CLASS_NAMES
    out = neutrino("explain", "compute01", "br-int")[1]
    assert re.search(r"neighbour discovery target fe80::f816:3eff:fe[0-9a-f]{2}:[0-9a-f]{1,4}", out)
    assert "IPv6Match" not in out and "ARP sender address 10.11.11." in out
