"""Floating-IP port forwarding (issue 19), as Neutron's port-forwarding plugin answers it: CRUD under
``/v2.0/floatingips/{id}/port_forwardings``, the floating IP's ``port_forwardings`` field and
``router_id``, the refusals (associated floating IP, a port with its own floating IP, collisions,
ranges of different sizes, an address not on the port, an unreachable subnet), the floating IP in
use, deleting the internal port, and the real ``openstack floating ip port forwarding`` commands."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.api_helpers import Server, ok, user_client


def err(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    e: dict[str, Any] = r.json()["NeutronError"]
    return e


@pytest.fixture(scope="module")
def world(admin: httpx.Client) -> dict[str, str]:
    """An external network, a private subnet behind router1, a lone subnet no router reaches, and ports."""
    ext = ok(admin.post("/networks", json={"network": {"name": "public", "router:external": True}}), 201)["network"]
    ok(admin.post("/subnets", json={"subnet": {"network_id": ext["id"], "ip_version": 4, "cidr": "172.24.4.0/24",
                                               "enable_dhcp": False}}), 201)
    net = ok(admin.post("/networks", json={"network": {"name": "private"}}), 201)["network"]
    sub = ok(admin.post("/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4,
                                                     "cidr": "10.1.0.0/24"}}), 201)["subnet"]
    lone = ok(admin.post("/networks", json={"network": {"name": "lone"}}), 201)["network"]
    ok(admin.post("/subnets", json={"subnet": {"network_id": lone["id"], "ip_version": 4,
                                               "cidr": "10.9.0.0/24"}}), 201)
    router = ok(admin.post("/routers", json={"router": {"name": "router1", "external_gateway_info": {
        "network_id": ext["id"]}}}), 201)["router"]
    ok(admin.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}))
    vm = ok(admin.post("/ports", json={"port": {"network_id": net["id"], "name": "vm", "fixed_ips": [
        {"subnet_id": sub["id"], "ip_address": "10.1.0.5"}, {"subnet_id": sub["id"], "ip_address": "10.1.0.6"}]}}),
        201)["port"]
    other = ok(admin.post("/ports", json={"port": {"network_id": net["id"], "name": "other"}}), 201)["port"]
    stray = ok(admin.post("/ports", json={"port": {"network_id": lone["id"], "name": "stray"}}), 201)["port"]
    return {"ext": ext["id"], "router": router["id"], "vm": vm["id"], "other": other["id"], "stray": stray["id"],
            "subnet": sub["id"]}


def fip(c: httpx.Client, ext: str, **body: Any) -> dict[str, Any]:
    f: dict[str, Any] = ok(c.post("/floatingips", json={"floatingip": {"floating_network_id": ext, **body}}),
                           201)["floatingip"]
    return f


def pfs(fid: str) -> str:
    return f"/floatingips/{fid}/port_forwardings"


def test_extensions_are_listed(admin: httpx.Client) -> None:
    aliases = {e["alias"] for e in ok(admin.get("/extensions"))["extensions"]}
    assert {"floating-ip-port-forwarding", "floating-ip-port-forwarding-description",
            "floating-ip-port-forwarding-port-ranges", "expose-port-forwarding-in-fip",
            "floating-ip-port-forwarding-detail"} <= aliases
    assert ok(admin.get("/extensions/floating-ip-port-forwarding"))["extension"]["name"] == \
        "Floating IP Port Forwarding"


def test_life_cycle(admin: httpx.Client, world: dict[str, str]) -> None:
    f = fip(admin, world["ext"])
    assert f["router_id"] is None and f["port_forwardings"] == []
    body = {"internal_port_id": world["vm"], "internal_ip_address": "10.1.0.6", "internal_port": 22,
            "external_port": 2222, "protocol": "tcp", "description": "ssh"}
    pf = ok(admin.post(pfs(f["id"]), json={"port_forwarding": body}), 201)["port_forwarding"]
    assert pf == {"id": pf["id"], "external_port": 2222, "internal_port": 22, "internal_ip_address": "10.1.0.6",
                  "protocol": "tcp", "internal_port_id": world["vm"], "description": "ssh",
                  "external_port_range": "2222:2222", "internal_port_range": "22:22"}
    shown = ok(admin.get(f"/floatingips/{f['id']}"))["floatingip"]
    assert shown["router_id"] == world["router"] and shown["port_id"] is None
    assert shown["port_forwardings"] == [{"id": pf["id"], "internal_ip_address": "10.1.0.6", "protocol": "tcp",
                                          "internal_port_id": world["vm"], "internal_port": 22,
                                          "external_port": 2222}]
    assert ok(admin.get(f"{pfs(f['id'])}/{pf['id']}"))["port_forwarding"] == pf
    assert ok(admin.get(f"{pfs(f['id'])}/{pf['id']}", params={"fields": "protocol"}))["port_forwarding"] == \
        {"protocol": "tcp"}
    # a range, N-N; the default internal address is the port's first
    rng = ok(admin.post(pfs(f["id"]), json={"port_forwarding": {
        "internal_port_id": world["vm"], "internal_port_range": "8000:8010", "external_port_range": "9000:9010",
        "protocol": "udp"}}), 201)["port_forwarding"]
    assert (rng["internal_ip_address"], rng["external_port"], rng["internal_port"], rng["description"]) == \
        ("10.1.0.5", None, None, "")
    listed = ok(admin.get(pfs(f["id"])))["port_forwardings"]
    assert [p["id"] for p in listed] == [pf["id"], rng["id"]]
    assert [p["id"] for p in ok(admin.get(pfs(f["id"]), params={"protocol": "udp"}))["port_forwardings"]] == \
        [rng["id"]]
    e = err(admin.get(pfs(f["id"]), params={"internal_port": "22"}), 400)
    assert e["message"] == "Port Forwarding filter internal_port is not supported."
    # update: the external port moves; the new socket is checked
    up = ok(admin.put(f"{pfs(f['id'])}/{pf['id']}", json={"port_forwarding": {"external_port": 2200,
                                                                               "description": "moved"}}))
    assert up["port_forwarding"]["external_port"] == 2200 and up["port_forwarding"]["description"] == "moved"
    # the floating IP is in use: neither associated to a port nor deleted
    e = err(admin.put(f"/floatingips/{f['id']}", json={"floatingip": {"port_id": world["other"]}}), 409)
    assert e == {"type": "FipInUseByPortForwarding", "detail": "",
                 "message": f"Floating IP {f['id']} in use by Port Forwarding resources."}
    e = err(admin.delete(f"/floatingips/{f['id']}"), 409)
    assert e["type"] == "FipInUseByPortForwarding"
    ok(admin.delete(f"{pfs(f['id'])}/{rng['id']}"), 204)
    assert ok(admin.get(f"/floatingips/{f['id']}"))["floatingip"]["router_id"] == world["router"]
    ok(admin.delete(f"{pfs(f['id'])}/{pf['id']}"), 204)
    e = err(admin.get(f"{pfs(f['id'])}/{pf['id']}"), 404)
    assert e == {"type": "PortForwardingNotFound", "detail": "",
                 "message": f"Port Forwarding {pf['id']} could not be found."}
    assert ok(admin.get(f"/floatingips/{f['id']}"))["floatingip"]["router_id"] is None  # the last one freed it
    ok(admin.delete(f"/floatingips/{f['id']}"), 204)
    e = err(admin.get(pfs(f["id"])), 404)
    assert e["type"] == "FloatingIPNotFound"


def test_refusals(admin: httpx.Client, world: dict[str, str]) -> None:
    f = fip(admin, world["ext"])
    base = {"internal_port_id": world["other"], "internal_port": 80, "external_port": 8080, "protocol": "tcp"}

    def post(**over: Any) -> httpx.Response:
        return admin.post(pfs(f["id"]), json={"port_forwarding": {**base, **over}})

    e = err(post(protocol="gre"), 400)
    assert e["message"].startswith("Invalid input for protocol. Reason: IP protocol 'gre' is not supported.")
    e = err(post(external_port=0), 400)
    assert e["message"] == "Invalid input for external_port. Reason: '0' is too small - must be at least '1'."
    e = err(post(external_port=None, external_port_range="90:80"), 400)
    assert e["message"] == ("Invalid input for external_port_range. Reason: First port in a port range must be "
                            "lower than the second port.")
    e = err(post(external_port=None, internal_port=None, external_port_range="100:110",
                 internal_port_range="200:205"), 400)
    assert e["message"] == ("Bad port_forwarding request: Invalid ranges of internal and/or external ports. The "
                            "relation between internal and external ports must be N-N or 1-N.")
    e = err(post(internal_ip_address="10.1.0.99"), 400)
    assert e["message"].startswith("Bad port_forwarding request: Requested internal IP address 10.1.0.99 is not "
                                   f"suitable for internal neutron port {world['other']}, as its fixed_ips are ")
    e = err(post(internal_port_id=world["stray"]), 400)
    assert "is not reachable from subnet" in e["message"] and \
        e["message"].endswith(f"Cannot set Port forwarding for port {world['stray']} with Floating IP {f['id']}.")
    first = ok(post(), 201)["port_forwarding"]
    # the same outside (floating IP, protocol, external port) and the same inside socket are refused
    e = err(post(internal_port=81), 400)
    assert e["message"] == ("Bad port_forwarding request: There is a port collision with the external_port_range. "
                            "The following ranges collide: 8080:8080 and 8080:8080.")
    e = err(post(external_port=8081), 400)
    assert e["message"] == ("Bad port_forwarding request: There is a port collision with the internal_port_range. "
                            "The following ranges collide: 80:80 and 80:80.")
    assert ok(post(protocol="udp"), 201)["port_forwarding"]["protocol"] == "udp"  # another protocol is free
    # a port with a floating IP of its own cannot be forwarded to, and an associated floating IP cannot forward
    own = fip(admin, world["ext"], port_id=world["vm"], fixed_ip_address="10.1.0.5")
    e = err(post(internal_port_id=world["vm"], internal_ip_address="10.1.0.6"), 409)
    assert e == {"type": "PortHasBindingFloatingIP", "detail": "", "message": (
        f"Cannot create port forwarding to floating IP {own['floating_ip_address']} ({own['id']}) with port "
        f"{world['vm']} using fixed IP 10.1.0.6, as that port already has a binding floating IP.")}
    e = err(admin.post(pfs(own["id"]), json={"port_forwarding": base}), 409)
    assert e["type"] == "FloatingIPPortAlreadyAssociated"
    assert e["message"].startswith(f"Cannot associate floating IP {own['floating_ip_address']} ({own['id']}) with "
                                   f"port {world['other']}")
    ok(admin.delete(f"/floatingips/{own['id']}"), 204)
    # deleting the internal port removes its forwardings (and frees the floating IP from its router)
    assert len(ok(admin.get(pfs(f["id"])))["port_forwardings"]) == 2
    assert first["internal_port_id"] == world["other"]
    ok(admin.delete(f"/ports/{world['other']}"), 204)
    assert ok(admin.get(pfs(f["id"])))["port_forwardings"] == []
    assert ok(admin.get(f"/floatingips/{f['id']}"))["floatingip"]["router_id"] is None
    ok(admin.delete(f"/floatingips/{f['id']}"), 204)


def test_another_project_cannot_see_or_add_forwardings(srv: Server, admin: httpx.Client,
                                                       world: dict[str, str]) -> None:
    f = fip(admin, world["ext"])
    with user_client(srv, "demo", "demo") as demo:
        e = err(demo.get(pfs(f["id"])), 404)
        assert e["type"] == "FloatingIPNotFound"
        e = err(demo.post(pfs(f["id"]), json={"port_forwarding": {
            "internal_port_id": world["vm"], "internal_port": 1, "external_port": 1, "protocol": "tcp"}}), 404)
        assert e["type"] == "FloatingIPNotFound"
    ok(admin.delete(f"/floatingips/{f['id']}"), 204)


def test_openstack_client_port_forwarding_commands(srv: Server, admin: httpx.Client, world: dict[str, str]) -> None:
    f = fip(admin, world["ext"])
    made = srv.osc("floating", "ip", "port", "forwarding", "create", "--internal-ip-address", "10.1.0.6",
                   "--port", world["vm"], "--internal-protocol-port", "80", "--external-protocol-port", "8080",
                   "--protocol", "tcp", "--description", "web", f["floating_ip_address"], "-f", "json")
    assert (made["external_port"], made["internal_port"], made["internal_ip_address"], made["description"]) == \
        (8080, 80, "10.1.0.6", "web")
    listed = srv.osc("floating", "ip", "port", "forwarding", "list", f["floating_ip_address"], "-f", "json")
    assert [row["ID"] for row in listed] == [made["id"]]
    srv.osc("floating", "ip", "port", "forwarding", "delete", f["floating_ip_address"], made["id"])
    assert ok(admin.get(pfs(f["id"])))["port_forwardings"] == []
    ok(admin.delete(f"/floatingips/{f['id']}"), 204)
