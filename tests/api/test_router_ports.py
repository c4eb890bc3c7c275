"""A router's ports as Neutron shows them (issue 19): interface ports (the router's project) and the
gateway port go ACTIVE once the router is planned, the floating IP's port stays N/A; the gateway
and floating IP ports belong to no project (project_id ''), so the router's owner does not see
them, yet it clears the gateway, deletes the floating IP and deletes the router without a 404
(Neutron's l3_db deletes those ports with an elevated context)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.api_helpers import Server, start_server, stop_server, two_computes, wait_until


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("router-ports")
    server = start_server(tmp, f"sqlite:///{tmp / 'router-ports.db'}", scenario=two_computes(tmp))
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def demo(srv: Server) -> Iterator[httpx.Client]:
    """The demo project's member (no admin role)."""
    r = httpx.post(f"{srv.base}/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "demo", "domain": {"name": "Default"}, "password": "secret"}}},
        "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}}})
    assert r.status_code == 201, r.text
    assert "admin" not in [x["name"] for x in r.json()["token"]["roles"]]
    with httpx.Client(base_url=f"{srv.base}/v2.0", headers={"X-Auth-Token": r.headers["X-Subject-Token"]},
                      timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def external(srv: Server) -> str:
    with srv.http() as a:
        net = a.post("/networks", json={"network": {"name": "public", "router:external": True}})
        assert net.status_code == 201, net.text
        sub = a.post("/subnets", json={"subnet": {"network_id": net.json()["network"]["id"], "ip_version": 4,
                                                  "cidr": "172.24.19.0/24", "enable_dhcp": False}})
        assert sub.status_code == 201, sub.text
    return str(net.json()["network"]["id"])


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else None


def tenant_network(demo: httpx.Client, name: str, cidr: str) -> tuple[str, str]:
    net = ok(demo.post("/networks", json={"network": {"name": name}}), 201)["network"]
    sub = ok(demo.post("/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": cidr}}),
             201)["subnet"]
    return net["id"], sub["id"]


def statuses(srv: Server, router_id: str) -> dict[str, str]:
    with srv.http() as a:
        ports = ok(a.get("/ports", params={"device_id": router_id}))["ports"]
    return {p["device_owner"]: p["status"] for p in ports}


def test_router_ports_go_active_and_the_owner_sees_its_interfaces(srv: Server, demo: httpx.Client,
                                                                  external: str) -> None:
    _, sub = tenant_network(demo, "active-net", "10.19.1.0/24")
    router = ok(demo.post("/routers", json={"router": {"name": "active-r",
                                                       "external_gateway_info": {"network_id": external}}}),
                201)["router"]
    iface = ok(demo.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub}))
    # a second interface, added by port (the way Tempest's scenario tests do it too)
    net2, sub2 = tenant_network(demo, "active-net2", "10.19.2.0/24")
    port = ok(demo.post("/ports", json={"port": {"network_id": net2, "fixed_ips": [{"subnet_id": sub2}]}}),
              201)["port"]
    ok(demo.put(f"/routers/{router['id']}/add_router_interface", json={"port_id": port["id"]}))

    def all_active() -> bool:
        with srv.http() as a:
            ports = ok(a.get("/ports", params={"device_id": router["id"]}))["ports"]
        return len(ports) == 3 and all(p["status"] == "ACTIVE" for p in ports)
    wait_until(all_active, 30, "the router's interface and gateway ports to go ACTIVE")

    mine = ok(demo.get("/ports", params={"device_id": router["id"]}))["ports"]
    assert sorted(p["id"] for p in mine) == sorted([iface["port_id"], port["id"]])
    assert {p["device_owner"] for p in mine} == {"network:router_interface"}
    assert {p["project_id"] for p in mine} == {router["project_id"]}
    assert all(p["status"] == "ACTIVE" for p in mine)
    with srv.http() as a:
        gw = ok(a.get("/ports", params={"device_id": router["id"], "device_owner": "network:router_gateway"}))
    assert [p["project_id"] for p in gw["ports"]] == [""]
    ok(demo.get(f"/ports/{gw['ports'][0]['id']}"), 404)  # not the owner's to see

    for body in ({"subnet_id": sub}, {"port_id": port["id"]}):
        ok(demo.put(f"/routers/{router['id']}/remove_router_interface", json=body))
    ok(demo.delete(f"/routers/{router['id']}"), 204)  # the gateway port goes with it: no 404
    with srv.http() as a:
        assert ok(a.get("/ports", params={"device_id": router["id"]}))["ports"] == []


def test_owner_clears_the_gateway_and_deletes_a_floating_ip(srv: Server, demo: httpx.Client,
                                                            external: str) -> None:
    net, sub = tenant_network(demo, "fip-net", "10.19.3.0/24")
    router = ok(demo.post("/routers", json={"router": {"name": "fip-r",
                                                       "external_gateway_info": {"network_id": external}}}),
                201)["router"]
    ok(demo.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub}))
    vm_port = ok(demo.post("/ports", json={"port": {"network_id": net}}), 201)["port"]
    fip = ok(demo.post("/floatingips", json={"floatingip": {"floating_network_id": external,
                                                            "port_id": vm_port["id"]}}), 201)["floatingip"]
    with srv.http() as a:
        fport = ok(a.get("/ports", params={"device_id": fip["id"]}))["ports"]
    assert [(p["device_owner"], p["status"], p["project_id"]) for p in fport] == [("network:floatingip", "N/A", "")]
    ok(demo.get(f"/ports/{fport[0]['id']}"), 404)

    # the gateway is still needed by the floating IP: Neutron's 409, not a 404
    busy = demo.put(f"/routers/{router['id']}", json={"router": {"external_gateway_info": {}}})
    assert busy.status_code == 409 and busy.json()["NeutronError"]["type"] == "RouterExternalGatewayInUseByFloatingIp"
    ok(demo.delete(f"/floatingips/{fip['id']}"), 204)
    with srv.http() as a:
        assert ok(a.get("/ports", params={"device_id": fip["id"]}))["ports"] == []
    cleared = ok(demo.put(f"/routers/{router['id']}", json={"router": {"external_gateway_info": {}}}))["router"]
    assert cleared["external_gateway_info"] is None
    assert set(statuses(srv, router["id"])) == {"network:router_interface"}
    # a new gateway, then the router deleted with it still set
    ok(demo.put(f"/routers/{router['id']}", json={"router": {"external_gateway_info": {"network_id": external}}}))
    ok(demo.put(f"/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub}))
    ok(demo.delete(f"/routers/{router['id']}"), 204)
    assert statuses(srv, router["id"]) == {}
