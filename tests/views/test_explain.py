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


def test_explain_routes_with_their_objects(seeds, neutrino):
    """Issue 14: ``explain HOST routes``: every routing rule and route of a namespace in words, with the
    OpenStack object that made it (the router's interface and its subnet, the external gateway, the DHCP
    port and the subnet's gateway_ip)."""
    seeds("seed000")
    rc, out, _ = neutrino("explain", "network", "routes", "--ns", "qrouter")
    assert rc == 0 and "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0].startswith("# namespace qrouter-") and "routing rules (ip rule) and routes" in lines[0]
    assert lines[1].startswith("# the namespace of router 'router1' (")
    assert "32766:\tfrom all lookup main" in lines
    assert lines[lines.index("32766:\tfrom all lookup main") + 1] == (
        "     -> priority 32766, every packet: look up table main (the routes ip route prints).")
    default = lines[lines.index(next(ln for ln in lines if ln.startswith("default via "))) + 1]
    assert default.startswith("     -> packets no other route matches (the default route): sent to the gateway "
                              "172.24.4.225 out of qg-")
    assert "the external gateway of router 'router1'" in default
    assert "the gateway_ip of subnet 'public-subnet' 172.24.4.224/28" in default
    inner = next(ln for ln in lines if ln.startswith("     -> packets to 10.1.0.0/24: sent out of qr-"))
    assert "the kernel's route for the address 10.1.0.1/24 of qr-" in inner
    assert "interface of router 'router1'" in inner and "subnet 'private-subnet' 10.1.0.0/24" in inner
    routes = [ln for ln in lines if not ln.startswith(("#", "     -> "))]
    assert len(routes) == len([ln for ln in lines if ln.startswith("     -> ")]) == 6  # 3 rules, 3 routes
    # the namespace's name alone is the same; every namespace with 'routes'
    by_name = neutrino("explain", "network", lines[0].split()[2])[1]
    assert by_name == out
    every = neutrino("explain", "network", "routes")[1]
    assert out in every and "# namespace qdhcp-" in every and "# the root namespace of host network" in every
    dhcp = every[every.index("# namespace qdhcp-"):]
    assert "sent to the gateway 10.1.0.1 out of ns-" in dhcp and "DHCP on network 'private'" in dhcp


def test_explain_routes_of_an_imported_host_and_json(seeds, neutrino):
    """An imported host has no cloud to ask: the device's name says what it is; its ``ip rule`` was not
    captured, so none is made up. And --json gives the same entries."""
    import json
    import pathlib

    seeds("seed000")
    captures = pathlib.Path(__file__).resolve().parents[2] / "examples" / "captures" / "seed000-network"
    assert neutrino("import", str(captures), "--host", "s0net")[0] == 0
    out = neutrino("explain", "s0net", "routes", "--ns", "qrouter")[1]
    assert "# its routing rules (ip rule) were not captured" in out and "lookup main" not in out
    assert "[a router interface (port c2d7dd02-56…)]" in out
    assert "[a router's external gateway (port d48b49e0-aa…)]" in out
    rc, js, _ = neutrino("explain", "s0net", "qrouter", "--json")
    (section,) = json.loads(js)
    assert rc == 0 and section["kind"] == "routes" and section["namespace"].startswith("qrouter-")
    default = next(e for e in section["entries"] if e["line"].startswith("default via 172.24.4.225"))
    assert default["object"] == "a router's external gateway (port d48b49e0-aa…)"
    assert default["explanation"].startswith("packets no other route matches")
    rc, _, err = neutrino("explain", "network", "routes", "--ns", "qnope")
    assert rc == 2 and err.startswith("neutrino: host network: no namespace 'qnope' (it has: root, qdhcp-")
    rc, _, err = neutrino("explain", "network", "routes", "--ns", "q")
    assert rc == 2 and "names more than one namespace" in err and err.count("\n") == 1


def test_explain_chain_json_and_router_chain_origin(seeds, neutrino):
    """A router namespace's chain says what made it (its origin is recorded under the namespace's name)."""
    import json

    seeds("seed000")
    out = neutrino("explain", "network", "quantum-l3-agent-float-snat")[1]
    assert out.startswith("# namespace qrouter-")
    assert out.splitlines()[1] == "# made for agent quantum-l3-agent by plan_l3; reached from quantum-l3-agent-snat"
    (section,) = json.loads(neutrino("explain", "network", "quantum-l3-agent-float-snat", "--json")[1])
    assert section["kind"] == "chain" and section["namespace"].startswith("qrouter-")
    snat = next(e for e in section["entries"] if "SNAT" in e["line"])
    assert snat["explanation"].endswith("rewrite the source address to 172.24.4.228.")
