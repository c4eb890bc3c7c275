"""DHCP and L3 agent scheduling (issue 19): the ``dhcp_agent_scheduler`` and ``l3_agent_scheduler``
API as Neutron answers it (admin only, its errors), scheduling when a DHCP subnet or a router is
made, and the plumbing following the bindings: a router and a network moved to the second network
host's agents are planned there, and the instance still reaches the outside."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.api.api_helpers import AppUser as User
from tests.api.api_helpers import scenario_app
from tests.cloud_setup import ADMIN_AND_DEMO, RESOURCES

SCENARIO = """\
name: sched
seed: 19
deployment:
  mechanism: ml2_ovs
  tenant_network_types: [vxlan]
  vni_ranges: ["1:1000"]
  flat_networks: [public]
  firewall_driver: iptables_hybrid
  external_network_bridge: ""
  generation: modern
hosts:
  - {name: network1, roles: [controller, network], management_ip: 10.30.0.11, tunnel_ip: 10.30.0.11,
     bridge_mappings: {public: br-ex}}
  - {name: network2, roles: [network], management_ip: 10.30.0.12, tunnel_ip: 10.30.0.12,
     bridge_mappings: {public: br-ex}}
  - {name: compute1, roles: [compute], management_ip: 10.30.0.21, tunnel_ip: 10.30.0.21}
""" + ADMIN_AND_DEMO


def agents_by(u: User) -> dict[tuple[str, str], str]:
    return {(a["host"], a["agent_type"]): a["id"] for a in u.call("GET", "/agents", status=200)["agents"]}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with scenario_app(tmp_path_factory.mktemp("sched"), "sched", SCENARIO) as c:
        yield c


@pytest.fixture(scope="module")
def admin(app: TestClient) -> User:
    return User(app, "admin", "admin")


@pytest.fixture(scope="module")
def demo(app: TestClient) -> User:
    return User(app, "demo", "demo")


def test_extensions_and_agents_on_both_network_hosts(admin: User) -> None:
    aliases = {e["alias"] for e in admin.call("GET", "/extensions", status=200)["extensions"]}
    assert {"dhcp_agent_scheduler", "l3_agent_scheduler", "extra_dhcp_opt"} <= aliases
    by = agents_by(admin)
    for host in ("network1", "network2"):
        assert {(host, t) for t in ("L3 agent", "DHCP agent", "Metadata agent")} <= set(by)
    assert ("compute1", "L3 agent") not in by


def test_a_network_is_scheduled_with_its_first_dhcp_subnet(admin: User) -> None:
    by = agents_by(admin)
    net = admin.call("POST", "/networks", {"network": {"name": "n1"}}, 201)["network"]["id"]
    assert admin.call("GET", f"/networks/{net}/dhcp-agents", status=200) == {"agents": []}
    admin.call("POST", "/subnets", {"subnet": {"network_id": net, "cidr": "10.1.0.0/24", "ip_version": 4,
                                               "enable_dhcp": False}}, 201)
    assert admin.call("GET", f"/networks/{net}/dhcp-agents", status=200) == {"agents": []}
    admin.call("POST", "/subnets", {"subnet": {"network_id": net, "cidr": "10.2.0.0/24", "ip_version": 4}}, 201)
    agents = admin.call("GET", f"/networks/{net}/dhcp-agents", status=200)["agents"]
    assert [(a["host"], a["agent_type"], a["id"]) for a in agents] == [
        ("network1", "DHCP agent", by[("network1", "DHCP agent")])]
    on_agent = admin.call("GET", f"/agents/{by[('network1', 'DHCP agent')]}/dhcp-networks", status=200)
    assert net in [n["id"] for n in on_agent["networks"]]
    assert admin.call("GET", f"/agents/{by[('network2', 'DHCP agent')]}/dhcp-networks", status=200) == {
        "networks": []}


def test_dhcp_network_add_and_remove_errors(admin: User) -> None:
    by = agents_by(admin)
    d1, d2, l3 = by[("network1", "DHCP agent")], by[("network2", "DHCP agent")], by[("network1", "L3 agent")]
    net = admin.call("POST", "/networks", {"network": {"name": "n2"}}, 201)["network"]["id"]
    admin.call("POST", "/subnets", {"subnet": {"network_id": net, "cidr": "10.3.0.0/24", "ip_version": 4}}, 201)
    e = admin.error("POST", f"/agents/{d1}/dhcp-networks", {"network_id": net}, 409)
    assert e["type"] == "NetworkHostedByDHCPAgent"
    assert e["message"] == f"The network {net} has been already hosted by the DHCP Agent {d1}."
    e = admin.error("POST", f"/agents/{l3}/dhcp-networks", {"network_id": net}, 404)
    assert (e["type"], e["message"]) == ("InvalidDHCPAgent",
                                         f"Agent {l3} is not a valid DHCP Agent or has been disabled.")
    missing = "00000000-0000-0000-0000-000000000001"
    assert admin.error("POST", f"/agents/{missing}/dhcp-networks", {"network_id": net}, 404)["type"] == \
        "AgentNotFound"
    assert admin.error("POST", f"/agents/{d1}/dhcp-networks", {"network_id": missing}, 404)["type"] == \
        "NetworkNotFound"
    assert "network_id" in admin.error("POST", f"/agents/{d1}/dhcp-networks", {}, 400)["message"]
    # a second agent, then both removed; removing again is a conflict
    assert admin.call("POST", f"/agents/{d2}/dhcp-networks", {"network_id": net}, 201) is None
    hosts = [a["host"] for a in admin.call("GET", f"/networks/{net}/dhcp-agents", status=200)["agents"]]
    assert hosts == ["network1", "network2"]
    admin.call("DELETE", f"/agents/{d1}/dhcp-networks/{net}", status=204)
    e = admin.error("DELETE", f"/agents/{d1}/dhcp-networks/{net}", None, 409)
    assert (e["type"], e["message"]) == ("NetworkNotHostedByDhcpAgent",
                                         f"The network {net} is not hosted by the DHCP Agent {d1}.")
    hosts = [a["host"] for a in admin.call("GET", f"/networks/{net}/dhcp-agents", status=200)["agents"]]
    assert hosts == ["network2"]


def test_router_scheduled_at_create_and_moved(admin: User) -> None:
    by = agents_by(admin)
    l1, l2, d1 = by[("network1", "L3 agent")], by[("network2", "L3 agent")], by[("network1", "DHCP agent")]
    rid = admin.call("POST", "/routers", {"router": {"name": "r1"}}, 201)["router"]["id"]
    agents = admin.call("GET", f"/routers/{rid}/l3-agents", status=200)["agents"]
    assert [(a["id"], a["host"]) for a in agents] == [(l1, "network1")]
    assert rid in [r["id"] for r in admin.call("GET", f"/agents/{l1}/l3-routers", status=200)["routers"]]
    e = admin.error("POST", f"/agents/{l2}/l3-routers", {"router_id": rid}, 409)
    assert (e["type"], e["message"]) == ("RouterHostedByL3Agent",
                                         f"The router {rid} has been already hosted by the L3 Agent {l1}.")
    e = admin.error("POST", f"/agents/{d1}/l3-routers", {"router_id": rid}, 404)
    assert (e["type"], e["message"]) == ("InvalidL3Agent", f"Agent {d1} is not a L3 Agent or has been disabled")
    admin.call("POST", f"/agents/{l1}/l3-routers", {"router_id": rid}, 201)  # already there: nothing to do
    admin.call("DELETE", f"/agents/{l1}/l3-routers/{rid}", status=204)
    assert admin.call("GET", f"/routers/{rid}/l3-agents", status=200) == {"agents": []}
    admin.call("POST", f"/agents/{l2}/l3-routers", {"router_id": rid}, 201)
    agents = admin.call("GET", f"/routers/{rid}/l3-agents", status=200)["agents"]
    assert [a["host"] for a in agents] == ["network2"]
    assert rid not in [r["id"] for r in admin.call("GET", f"/agents/{l1}/l3-routers", status=200)["routers"]]
    missing = "00000000-0000-0000-0000-000000000002"
    assert admin.error("POST", f"/agents/{l2}/l3-routers", {"router_id": missing}, 404)["type"] == "RouterNotFound"


def test_scheduling_is_the_admins(admin: User, demo: User) -> None:
    by = agents_by(admin)
    l1, d1 = by[("network1", "L3 agent")], by[("network1", "DHCP agent")]
    net = demo.call("POST", "/networks", {"network": {"name": "mine"}}, 201)["network"]["id"]
    rid = demo.call("POST", "/routers", {"router": {"name": "mine"}}, 201)["router"]["id"]
    for method, path, body, rule in (
            ("GET", f"/agents/{d1}/dhcp-networks", None, "get_dhcp-networks"),
            ("POST", f"/agents/{d1}/dhcp-networks", {"network_id": net}, "create_dhcp-network"),
            ("DELETE", f"/agents/{d1}/dhcp-networks/{net}", None, "delete_dhcp-network"),
            ("GET", f"/networks/{net}/dhcp-agents", None, "get_dhcp-agents"),
            ("GET", f"/agents/{l1}/l3-routers", None, "get_l3-routers"),
            ("POST", f"/agents/{l1}/l3-routers", {"router_id": rid}, "create_l3-router"),
            ("DELETE", f"/agents/{l1}/l3-routers/{rid}", None, "delete_l3-router"),
            ("GET", f"/routers/{rid}/l3-agents", None, "get_l3-agents")):
        e = demo.error(method, path, body, 403)
        assert (e["type"], e["message"]) == ("PolicyNotAuthorized", f"rule:{rule} is disallowed by policy"), path


def test_moving_a_router_and_a_network_moves_their_namespaces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``neutrino up``, then the API moves router1 and the private network's DHCP to network2's
    agents; re-planned, network2 holds the qrouter and qdhcp namespaces, network1 none, and web1
    still reaches the outside through the moved router."""
    from neutrino import worldkeep
    from neutrino.api.serve import make_app
    from neutrino.cli import main
    from neutrino.deploy import cloud_record, replan

    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    scenario = tmp_path / "up.yaml"
    scenario.write_text(SCENARIO + RESOURCES)
    assert main(["up", str(scenario)]) == 0
    assert main(["exec", "network2", "--", "ip", "netns"]) == 0
    out = capsys.readouterr().out
    assert "qrouter-" not in out.split("ask with:")[-1] and "qdhcp-" not in out.split("ask with:")[-1]
    application, _ = make_app(cloud_record(state)["db"], str(scenario), "keystone", "sched-up")
    with TestClient(application) as c:
        admin = User(c, "admin", "admin")
        by = agents_by(admin)
        rid = admin.call("GET", "/routers?name=router1", status=200)["routers"][0]["id"]
        net = admin.call("GET", "/networks?name=private", status=200)["networks"][0]["id"]
        admin.call("DELETE", f"/agents/{by[('network1', 'L3 agent')]}/l3-routers/{rid}", status=204)
        admin.call("POST", f"/agents/{by[('network2', 'L3 agent')]}/l3-routers", {"router_id": rid}, 201)
        admin.call("DELETE", f"/agents/{by[('network1', 'DHCP agent')]}/dhcp-networks/{net}", status=204)
        admin.call("POST", f"/agents/{by[('network2', 'DHCP agent')]}/dhcp-networks", {"network_id": net}, 201)
        ports = admin.call("GET", f"/ports?device_id={rid}", status=200)["ports"]
        assert {p["binding:host_id"] for p in ports} == {"network2"}
        dhcp = admin.call("GET", f"/ports?network_id={net}&device_owner=network:dhcp", status=200)["ports"]
        assert [p["binding:host_id"] for p in dhcp] == ["network2"]
    replan(state)
    worldkeep.invalidate(state)
    capsys.readouterr()
    assert main(["exec", "network2", "--", "ip", "netns"]) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted([f"qdhcp-{net}", f"qrouter-{rid}"])
    assert main(["exec", "network1", "--", "ip", "netns"]) == 0
    assert capsys.readouterr().out.split() == []
    assert main(["ping", "web1", "172.24.4.1"]) == 0
    out = capsys.readouterr().out
    assert "web1 -> 172.24.4.1: reply" in out
    assert main(["trace", "web1", "172.24.4.1"]) == 0
    out = capsys.readouterr().out
    assert f"network2 qrouter-{rid}" in out and f"network1 qrouter-{rid}" not in out

