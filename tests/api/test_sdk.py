"""openstacksdk against the real server: the workflow, lookups, pagination, tags, quotas, agents,
and concurrent clients on one small subnet."""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from typing import Any

import openstack
import pytest
from openstack.config import loader

from tests.api.api_helpers import Server


@pytest.fixture(scope="module")
def conn(server: Server) -> Any:
    cfg = loader.OpenStackConfig(config_files=[str(server.clouds_yaml)], load_envvars=False)
    c = openstack.connection.Connection(config=cfg.get_one(cloud="neutrino"))
    yield c
    c.close()


def test_sdk_workflow(conn: Any) -> None:
    net = conn.network.create_network(name="sdk-net")
    assert net.status == "ACTIVE" and net.provider_network_type == "gre"
    sub = conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.50.0.0/24", name="sdk-sub",
                                     dns_nameservers=["8.8.8.8"],
                                     host_routes=[{"destination": "10.60.0.0/16", "nexthop": "10.50.0.254"}])
    assert sub.gateway_ip == "10.50.0.1" and sub.allocation_pools == [{"start": "10.50.0.2", "end": "10.50.0.254"}]
    ext = conn.network.create_network(name="sdk-ext", is_router_external=True)
    conn.network.create_subnet(network_id=ext.id, ip_version=4, cidr="203.0.113.0/28", enable_dhcp=False,
                               name="sdk-ext-sub")
    router = conn.network.create_router(name="sdk-router", external_gateway_info={"network_id": ext.id})
    assert router.external_gateway_info["external_fixed_ips"][0]["ip_address"] == "203.0.113.2"
    conn.network.add_interface_to_router(router, subnet=sub.id)
    sg = conn.network.create_security_group(name="sdk-web", description="web")
    assert sorted((r["direction"], r["ethertype"]) for r in sg.security_group_rules) == [
        ("egress", "IPv4"), ("egress", "IPv6")]
    conn.network.create_security_group_rule(security_group_id=sg.id, direction="ingress", protocol="tcp",
                                            port_range_min=80, port_range_max=80, remote_ip_prefix="0.0.0.0/0")
    port = conn.network.create_port(network_id=net.id, name="sdk-port", security_group_ids=[sg.id],
                                    allowed_address_pairs=[{"ip_address": "10.50.0.200"}])
    assert port.mac_address.startswith("fa:16:3e:") and port.status == "DOWN"
    assert port.fixed_ips[0]["ip_address"] == "10.50.0.2"
    assert port.allowed_address_pairs == [{"ip_address": "10.50.0.200", "mac_address": port.mac_address}]
    fip = conn.network.create_ip(floating_network_id=ext.id)
    conn.network.update_ip(fip, port_id=port.id)
    fip = conn.network.get_ip(fip.id)
    assert (fip.fixed_ip_address, fip.router_id, fip.port_details["name"]) == ("10.50.0.2", router.id, "sdk-port")
    assert conn.network.find_network("sdk-net").id == net.id
    assert conn.network.find_ip(fip.floating_ip_address).id == fip.id

    conn.network.set_tags(net, ["blue", "green"])
    assert [n.name for n in conn.network.networks(tags="blue")] == ["sdk-net"]
    assert [n.name for n in conn.network.networks(any_tags="green,red")] == ["sdk-net"]

    conn.network.delete_ip(fip)
    conn.network.delete_port(port)
    conn.network.remove_interface_from_router(router, subnet=sub.id)
    conn.network.delete_router(router)
    conn.network.delete_security_group(sg)
    conn.network.delete_network(net)
    conn.network.delete_network(ext)
    assert conn.network.find_network("sdk-net") is None


def test_pagination_sorting_fields(conn: Any, server: Server) -> None:
    names = [f"page-{i}" for i in range(7)]
    nets = [conn.network.create_network(name=n) for n in names]
    try:
        seen = [n.name for n in conn.network.networks(limit=2, name=names) if n.name.startswith("page-")]
        assert sorted(seen) == names
        with server.http() as h:
            body = h.get("/networks", params=[("limit", "3"), ("sort_key", "name"), ("sort_dir", "desc"),
                                              ("fields", "name"), ("fields", "id")]).json()
            assert list(body["networks"][0]) == ["name", "id"]
            assert "networks_links" in body and body["networks_links"][0]["rel"] == "next"
            page2 = h.get(body["networks_links"][0]["href"].split("/v2.0", 1)[1]).json()["networks"]
            allnames = sorted((n.name for n in conn.network.networks()), reverse=True)
            assert [n["name"] for n in body["networks"] + page2] == allnames[:3 + len(page2)]
    finally:
        for n in nets:
            conn.network.delete_network(n)


def test_agents_extensions_quotas(conn: Any, server: Server) -> None:
    agents = {(a.agent_type, a.host) for a in conn.network.agents()}
    assert agents == {("Open vSwitch agent", "network"), ("Open vSwitch agent", "compute"),
                      ("L3 agent", "network"), ("DHCP agent", "network"), ("Metadata agent", "network")}
    aliases = {e.alias for e in conn.network.extensions()}
    assert {"router", "external-net", "security-group", "binding", "pagination"} <= aliases
    assert "external-gateway-multihoming" not in aliases
    with server.http() as h:
        q = h.get("/quotas/some-project").json()["quota"]
        assert q["port"] == 500 and q["network"] == 100


def test_concurrent_port_creates_on_a_slash_28(server: Server) -> None:
    """8 clients, 20 creates, 13 addresses: no address handed out twice, the rest 409."""
    with server.http() as h:
        net = h.post("/networks", json={"network": {"name": "race"}}).json()["network"]
        sub = h.post("/subnets", json={"subnet": {"network_id": net["id"], "ip_version": 4,
                                                  "cidr": "10.70.0.0/28", "enable_dhcp": False}}).json()["subnet"]
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()
    jobs = list(range(20))

    def worker() -> None:
        with server.http() as h:
            while True:
                with lock:
                    if not jobs:
                        return
                    jobs.pop()
                r = h.post("/ports", json={"port": {"network_id": net["id"]}})
                with lock:
                    results.append((r.status_code, r.json()))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = Counter(code for code, _ in results)
    assert codes == {201: 13, 409: 7}
    ips = [b["port"]["fixed_ips"][0]["ip_address"] for c, b in results if c == 201]
    assert len(set(ips)) == 13
    assert {ipaddress.ip_address(i) for i in ips} == set(list(ipaddress.ip_network(sub["cidr"]).hosts())[1:])
    assert {b["NeutronError"]["type"] for c, b in results if c == 409} == {"IpAddressGenerationFailure"}
    with server.http() as h:
        for c, b in results:
            if c == 201:
                assert h.delete(f"/ports/{b['port']['id']}").status_code == 204
        assert h.delete(f"/networks/{net['id']}").status_code == 204
