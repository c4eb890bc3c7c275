"""Behaviours neutron-tempest-plugin's API tests (``neutron_tempest_plugin.api``, run by
bench/tempest/run.py) found neutrino doing differently from Neutron (issue 19), each as Neutron's own
code does it, against a real server:

- a router's gateway may be set on an external network that has no subnet: the gateway port is made
  with no address (l3_db's ``_create_router_gw_port`` only logs "No IPs available"), and the router's
  ``external_gateway_info`` lists no fixed IPs;
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.api_helpers import Server, ok, wait_until


def external(admin: httpx.Client, name: str) -> dict[str, Any]:
    """An external network with no subnet."""
    net: dict[str, Any] = ok(admin.post("/networks", json={"network": {"name": name, "router:external": True}}),
                             201)["network"]
    return net


def test_gateway_on_an_external_network_without_subnets(admin: httpx.Client, demo: httpx.Client,
                                                        srv: Server) -> None:
    net = external(admin, "ext-nosubnet")
    router = ok(demo.post("/routers", json={"router": {"name": "r-nosubnet",
                                                       "external_gateway_info": {"network_id": net["id"]}}}),
                201)["router"]
    info = router["external_gateway_info"]
    assert info["network_id"] == net["id"]
    assert info["external_fixed_ips"] == []
    ports = ok(admin.get("/ports", params={"device_id": router["id"],
                                           "device_owner": "network:router_gateway"}))["ports"]
    assert [(p["network_id"], p["fixed_ips"]) for p in ports] == [(net["id"], [])]
    # the agents plan and plumb the router with its address-less gateway: the port comes up
    wait_until(lambda: ok(admin.get(f"/ports/{ports[0]['id']}"))["port"]["status"] == "ACTIVE", 30,
               "the gateway port to be ACTIVE")
    # the same through an update: clear the gateway, then set it again
    ok(demo.put(f"/routers/{router['id']}", json={"router": {"external_gateway_info": {}}}), 200)
    again = ok(demo.put(f"/routers/{router['id']}", json={"router": {
        "external_gateway_info": {"network_id": net["id"]}}}), 200)["router"]
    assert again["external_gateway_info"]["network_id"] == net["id"]
    # a subnet added later serves the next gateway; the router and its network delete cleanly
    ok(demo.delete(f"/routers/{router['id']}"), 204)
    ok(admin.delete(f"/networks/{net['id']}"), 204)
    log = srv.log.read_text()
    assert "neutrino/plan/" not in log and "neutrino/sim/" not in log, log[log.find("Traceback") - 200:][:4000]

