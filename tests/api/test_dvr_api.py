"""Distributed routers through the API (issue 18): ``distributed`` on routers (admin only, the
deployment's ``router_distributed`` as the default; changing it needs the router administratively
down), the SNAT port per interface subnet bound to the dvr_snat host, the floating-IP agent gateway
port per DVR host, and what deleting gives back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.api_helpers import Server, example_server, ok, user_client


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with example_server(tmp_path_factory.mktemp("dvrapi"), "dvr.yaml") as server:
        yield server


def _owned(c: httpx.Client, owner: str, **params: str) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = ok(c.get("/ports", params={"device_owner": owner, **params}))["ports"]
    return ports


@pytest.fixture(scope="module")
def nets(admin: httpx.Client) -> dict[str, str]:
    pub = ok(admin.post("/networks", json={"network": {
        "name": "public", "router:external": True, "provider:network_type": "flat",
        "provider:physical_network": "provider"}}), 201)["network"]
    ok(admin.post("/subnets", json={"subnet": {"network_id": pub["id"], "cidr": "172.24.4.0/24",
                                               "ip_version": 4, "enable_dhcp": False}}), 201)
    app = ok(admin.post("/networks", json={"network": {"name": "app"}}), 201)["network"]
    sub = ok(admin.post("/subnets", json={"subnet": {"network_id": app["id"], "cidr": "10.0.1.0/24",
                                                     "ip_version": 4}}), 201)["subnet"]
    return {"public": pub["id"], "app": app["id"], "app-subnet": sub["id"]}


def test_distributed_router_gets_snat_and_agent_gateway_ports(admin: httpx.Client, nets: dict[str, str]) -> None:
    r = ok(admin.post("/routers", json={"router": {"name": "r1"}}), 201)["router"]  # router_distributed: true
    assert r["distributed"] is True
    ok(admin.put(f"/routers/{r['id']}/add_router_interface", json={"subnet_id": nets["app-subnet"]}))
    assert not _owned(admin, "network:router_centralized_snat", device_id=r["id"])  # no gateway: no SNAT
    (iface,) = _owned(admin, "network:router_interface_distributed", device_id=r["id"])  # Neutron's owner
    assert iface["binding:host_id"] == ""  # distributed: on every host the router lives on
    ok(admin.put(f"/routers/{r['id']}", json={"router": {"external_gateway_info": {"network_id": nets["public"]}}}))
    (snat,) = _owned(admin, "network:router_centralized_snat", device_id=r["id"])
    assert snat["binding:host_id"] == "network" and snat["fixed_ips"][0]["subnet_id"] == nets["app-subnet"]
    assert snat["fixed_ips"][0]["ip_address"] not in ("10.0.1.1",)
    fg = _owned(admin, "network:floatingip_agent_gateway", network_id=nets["public"])
    assert sorted(p["binding:host_id"] for p in fg) == ["compute01", "compute02", "network"]
    (gw,) = _owned(admin, "network:router_gateway", device_id=r["id"])
    assert gw["binding:host_id"] == "network"  # the SNAT host holds the gateway
    # removing the interface removes its SNAT port; removing the gateway the agent gateways too
    ok(admin.put(f"/routers/{r['id']}/remove_router_interface", json={"subnet_id": nets["app-subnet"]}))
    assert not _owned(admin, "network:router_centralized_snat", device_id=r["id"])
    ok(admin.put(f"/routers/{r['id']}", json={"router": {"external_gateway_info": None}}))
    assert not _owned(admin, "network:floatingip_agent_gateway", network_id=nets["public"])
    ok(admin.delete(f"/routers/{r['id']}"), 204)


def test_deleting_a_distributed_router_releases_its_ports(admin: httpx.Client, nets: dict[str, str]) -> None:
    r = ok(admin.post("/routers", json={"router": {"name": "r2", "external_gateway_info": {
        "network_id": nets["public"]}}}), 201)["router"]
    ok(admin.put(f"/routers/{r['id']}/add_router_interface", json={"subnet_id": nets["app-subnet"]}))
    assert len(_owned(admin, "network:router_centralized_snat", device_id=r["id"])) == 1
    ok(admin.put(f"/routers/{r['id']}/remove_router_interface", json={"subnet_id": nets["app-subnet"]}))
    ok(admin.delete(f"/routers/{r['id']}"), 204)
    assert not _owned(admin, "network:floatingip_agent_gateway", network_id=nets["public"])


def test_changing_distributed_needs_the_router_down(admin: httpx.Client, nets: dict[str, str]) -> None:
    r = ok(admin.post("/routers", json={"router": {"name": "central", "distributed": False}}), 201)["router"]
    assert r["distributed"] is False
    e = admin.put(f"/routers/{r['id']}", json={"router": {"distributed": True}})
    assert e.status_code == 400 and "admin_state_up to False" in e.json()["NeutronError"]["message"]
    up = ok(admin.put(f"/routers/{r['id']}", json={"router": {"distributed": True, "admin_state_up": False}}))
    assert up["router"]["distributed"] is True
    assert ok(admin.get(f"/routers/{r['id']}"))["router"]["distributed"] is True
    ok(admin.delete(f"/routers/{r['id']}"), 204)


def test_distributed_is_admin_only(srv: Server, admin: httpx.Client) -> None:
    with user_client(srv, "demo", "demo") as c:
        e = c.post("/routers", json={"router": {"name": "mine", "distributed": True}})
        assert e.status_code == 403, e.text
        mine = ok(c.post("/routers", json={"router": {"name": "mine"}}), 201)["router"]
        assert "distributed" not in mine  # admin-only, as Neutron's policy hides it
        assert ok(admin.get(f"/routers/{mine['id']}"))["router"]["distributed"] is True  # the default
        ok(c.delete(f"/routers/{mine['id']}"), 204)


def test_every_dvr_host_runs_an_l3_agent_in_its_mode_and_legacy_routers_avoid_dvr_computes(
        admin: httpx.Client) -> None:
    agents = ok(admin.get("/agents", params={"agent_type": "L3 agent"}))["agents"]
    modes = {a["host"]: a["configurations"]["agent_mode"] for a in agents}
    assert modes == {"network": "dvr_snat", "compute01": "dvr", "compute02": "dvr"}, modes
    metadata = {a["host"] for a in ok(admin.get("/agents", params={"agent_type": "Metadata agent"}))["agents"]}
    assert metadata == set(modes)
    # as Neutron on MySQL (case-insensitive collation), which Tempest's "DHCP Agent" relies on
    dhcp = ok(admin.get("/agents", params={"agent_type": "DHCP Agent"}))["agents"]
    assert [(a["host"], a["agent_type"]) for a in dhcp] == [("network", "DHCP agent")]
    legacy = ok(admin.post("/routers", json={"router": {"name": "legacy", "distributed": False}}), 201)["router"]
    try:
        hosting = ok(admin.get(f"/routers/{legacy['id']}/l3-agents"))["agents"]
        assert [a["host"] for a in hosting] == ["network"], hosting
    finally:
        ok(admin.delete(f"/routers/{legacy['id']}"), 204)
