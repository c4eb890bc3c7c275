"""Neutron behaviours that OpenStack's Tempest (``tempest.api.network``, see bench/tempest/run.py)
checks and neutrino once did differently (issue 19), each as Neutron's own code does it:

- a router interface port's ``fixed_ips`` may be updated by its owner; an entry naming only the
  subnet keeps the address the port holds there (ipam_backend_mixin's change computation);
- a port whose fixed IP carries a floating IP keeps that address (l3_db's BEFORE_UPDATE check);
- deleting a SLAAC or DHCPv6-stateless subnet removes the ports' addresses on it; a router interface
  or a stateful subnet's port still holds the subnet (db_base_plugin_v2.delete_subnet);
- a ``remote_group_id`` no group has is a 404 whatever its form (the API does not validate it);
- the ICMP range error reads ``Invalid value for ICMP code (port_range_max) 256...``;
- deleting an external network deletes its floating IPs that carry no association; an associated
  one still holds it (external_net_db's BEFORE_DELETE handler);
- agents are admin only: a member lists none and reads none;
- an update with an empty body clears a floating IP's association; a description update does not;
- a subnet's ``enable_dhcp`` turned on gives the network's DHCP port an address on it (as a new
  DHCP subnet does).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.api_helpers import ok


@pytest.fixture(scope="module")
def public(admin: httpx.Client) -> dict[str, Any]:
    net = ok(admin.post("/networks", json={"network": {
        "name": "public", "router:external": True, "provider:network_type": "flat",
        "provider:physical_network": "provider"}}))["network"]
    ok(admin.post("/subnets", json={"subnet": {"network_id": net["id"], "cidr": "172.24.4.0/24",
                                               "ip_version": 4, "enable_dhcp": False}}))
    return net




def err(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    e: dict[str, Any] = r.json()["NeutronError"]
    return e


def network(c: httpx.Client, cidr: str, **subnet: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    net = ok(c.post("/networks", json={"network": {"name": f"n-{cidr}"}}))["network"]
    body = {"network_id": net["id"], "cidr": cidr, "ip_version": 6 if ":" in cidr else 4, **subnet}
    sub = ok(c.post("/subnets", json={"subnet": body}))["subnet"]
    return net, sub


def test_router_interface_port_fixed_ips_update(demo: httpx.Client) -> None:
    net, sub = network(demo, "10.20.0.0/24")
    router = ok(demo.post("/routers", json={"router": {"name": "r"}}))["router"]
    iface = ok(demo.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}))
    # the subnet alone: the port keeps the gateway address it holds there
    port = ok(demo.put(f"/ports/{iface['port_id']}", json={"port": {"fixed_ips": [{"subnet_id": sub["id"]}]}}))
    assert port["port"]["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.20.0.1"}]
    # another address on the subnet, by the router's (non-admin) owner
    port = ok(demo.put(f"/ports/{iface['port_id']}", json={"port": {"fixed_ips": [
        {"subnet_id": sub["id"], "ip_address": "10.20.0.9"}]}}))
    assert port["port"]["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.20.0.9"}]
    assert ok(demo.get(f"/ports/{iface['port_id']}"))["port"]["device_owner"] == "network:router_interface"
    # the subnet-only form on an ordinary port keeps its address too
    p = ok(demo.post("/ports", json={"port": {"network_id": net["id"]}}))["port"]
    kept = ok(demo.put(f"/ports/{p['id']}", json={"port": {"fixed_ips": [{"subnet_id": sub["id"]}]}}))["port"]
    assert kept["fixed_ips"] == p["fixed_ips"]


@pytest.mark.parametrize("mode", ["slaac", "dhcpv6-stateless"])
def test_auto_address_subnet_with_ports_deletes(demo: httpx.Client, mode: str) -> None:
    index = ["slaac", "dhcpv6-stateless"].index(mode)
    net, v4 = network(demo, f"10.3{index}.0.0/24")
    v6 = ok(demo.post("/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": f"2001:db8:{index}::/64", "ip_version": 6, "ipv6_ra_mode": mode,
        "ipv6_address_mode": mode}}))["subnet"]
    port = ok(demo.post("/ports", json={"port": {"network_id": net["id"]}}))["port"]
    assert {a["subnet_id"] for a in port["fixed_ips"]} == {v4["id"], v6["id"]}
    ok(demo.delete(f"/subnets/{v6['id']}"), 204)
    left = ok(demo.get(f"/ports/{port['id']}"))["port"]
    assert [a["subnet_id"] for a in left["fixed_ips"]] == [v4["id"]]
    # the IPv4 subnet (not auto-address) is still held by the port
    assert err(demo.delete(f"/subnets/{v4['id']}"), 409)["type"] == "SubnetInUse"


def test_auto_address_subnet_with_router_interface_is_held(demo: httpx.Client) -> None:
    net, _ = network(demo, "10.40.0.0/24")
    v6 = ok(demo.post("/subnets", json={"subnet": {
        "network_id": net["id"], "cidr": "2001:db8:40::/64", "ip_version": 6, "ipv6_ra_mode": "slaac",
        "ipv6_address_mode": "slaac"}}))["subnet"]
    router = ok(demo.post("/routers", json={"router": {"name": "r6"}}))["router"]
    ok(demo.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": v6["id"]}))
    assert err(demo.delete(f"/subnets/{v6['id']}"), 409)["type"] == "SubnetInUse"


def test_security_group_rule_errors(demo: httpx.Client) -> None:
    sg = ok(demo.post("/security-groups", json={"security_group": {"name": "g"}}))["security_group"]
    e = err(demo.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "remote_group_id": "bad_group_id"}}), 404)
    assert e == {"type": "SecurityGroupNotFound", "message": "Security group bad_group_id does not exist",
                 "detail": ""}
    e = err(demo.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "protocol": "icmp", "port_range_min": 1,
        "port_range_max": 256}}), 400)
    assert e["type"] == "SecurityGroupInvalidIcmpValue"
    assert e["message"] == "Invalid value for ICMP code (port_range_max) 256. It must be 0 to 255."
    e = err(demo.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "protocol": "icmp", "port_range_min": 300,
        "port_range_max": 1}}), 400)
    assert e["message"] == "Invalid value for ICMP type (port_range_min) 300. It must be 0 to 255."


def test_delete_external_network_with_floating_ips(admin: httpx.Client) -> None:
    ext = ok(admin.post("/networks", json={"network": {"name": "ext2", "router:external": True}}))["network"]
    sub = ok(admin.post("/subnets", json={"subnet": {"network_id": ext["id"], "cidr": "172.25.0.0/24",
                                                     "ip_version": 4, "enable_dhcp": False}}))["subnet"]
    fip = ok(admin.post("/floatingips", json={"floatingip": {"floating_network_id": ext["id"]}}))["floatingip"]
    ok(admin.delete(f"/networks/{ext['id']}"), 204)
    err(admin.get(f"/floatingips/{fip['id']}"), 404)
    err(admin.get(f"/subnets/{sub['id']}"), 404)
    assert ok(admin.get("/ports", params={"device_id": fip["id"]}))["ports"] == []


def test_associated_floating_ip_holds_external_network(admin: httpx.Client) -> None:
    ext = ok(admin.post("/networks", json={"network": {"name": "ext3", "router:external": True}}))["network"]
    ok(admin.post("/subnets", json={"subnet": {"network_id": ext["id"], "cidr": "172.26.0.0/24", "ip_version": 4,
                                               "enable_dhcp": False}}))
    net, sub = network(admin, "10.50.0.0/24")
    router = ok(admin.post("/routers", json={"router": {"name": "r3", "external_gateway_info": {
        "network_id": ext["id"]}}}))["router"]
    ok(admin.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}))
    port = ok(admin.post("/ports", json={"port": {"network_id": net["id"]}}))["port"]
    fip = ok(admin.post("/floatingips", json={"floatingip": {"floating_network_id": ext["id"],
                                                             "port_id": port["id"]}}))["floatingip"]
    assert err(admin.delete(f"/networks/{ext['id']}"), 409)["type"] == "NetworkInUse"
    assert ok(admin.get(f"/floatingips/{fip['id']}"))["floatingip"]["port_id"] == port["id"]
    # the fixed IP carrying the floating IP cannot change
    e = err(admin.put(f"/ports/{port['id']}", json={"port": {"fixed_ips": [
        {"subnet_id": sub["id"], "ip_address": "10.50.0.77"}]}}), 400)
    assert "because its original fixed_ip has been associated to a floating ip" in e["message"]


def test_agents_are_admin_only(admin: httpx.Client, demo: httpx.Client) -> None:
    agents = ok(admin.get("/agents"))["agents"]
    assert agents
    assert ok(demo.get("/agents")) == {"agents": []}
    assert err(demo.get(f"/agents/{agents[0]['id']}"), 404)["type"] == "HTTPNotFound"
    assert err(demo.put(f"/agents/{agents[0]['id']}", json={"agent": {"description": "x"}}), 404)
    assert ok(admin.get(f"/agents/{agents[0]['id']}"))["agent"]["description"] is None


def test_empty_floating_ip_update_clears_association(demo: httpx.Client, public: dict[str, Any]) -> None:
    net, sub = network(demo, "10.60.0.0/24")
    router = ok(demo.post("/routers", json={"router": {"name": "r4", "external_gateway_info": {
        "network_id": public["id"]}}}))["router"]
    ok(demo.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}))
    port = ok(demo.post("/ports", json={"port": {"network_id": net["id"]}}))["port"]
    fip = ok(demo.post("/floatingips", json={"floatingip": {"floating_network_id": public["id"],
                                                            "port_id": port["id"]}}))["floatingip"]
    kept = ok(demo.put(f"/floatingips/{fip['id']}", json={"floatingip": {"description": "d2"}}))["floatingip"]
    assert kept["port_id"] == port["id"] and kept["description"] == "d2"
    cleared = ok(demo.put(f"/floatingips/{fip['id']}", json={"floatingip": {}}))["floatingip"]
    assert cleared["port_id"] is None and cleared["fixed_ip_address"] is None and cleared["router_id"] is None
    assert ok(demo.get(f"/floatingips/{fip['id']}"))["floatingip"]["port_id"] is None


def test_enable_dhcp_on_update_gives_the_dhcp_port_an_address(admin: httpx.Client) -> None:
    net, first = network(admin, "10.70.0.0/24")
    ok(admin.post("/ports", json={"port": {"network_id": net["id"], "device_owner": "compute:nova"}}))
    dhcp = ok(admin.get("/ports", params={"network_id": net["id"], "device_owner": "network:dhcp"}))["ports"]
    assert [a["subnet_id"] for a in dhcp[0]["fixed_ips"]] == [first["id"]]
    second = ok(admin.post("/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.71.0.0/24",
                                                        "ip_version": 4, "enable_dhcp": False}}))["subnet"]
    dhcp = ok(admin.get("/ports", params={"network_id": net["id"], "device_owner": "network:dhcp"}))["ports"]
    assert [a["subnet_id"] for a in dhcp[0]["fixed_ips"]] == [first["id"]]
    ok(admin.put(f"/subnets/{second['id']}", json={"subnet": {"enable_dhcp": True}}))
    dhcp = ok(admin.get("/ports", params={"network_id": net["id"], "device_owner": "network:dhcp"}))["ports"]
    assert len(dhcp) == 1
    assert [a["subnet_id"] for a in dhcp[0]["fixed_ips"]] == [first["id"], second["id"]]


def test_enable_dhcp_on_update_creates_the_dhcp_port(admin: httpx.Client) -> None:
    net, sub = network(admin, "10.80.0.0/24", enable_dhcp=False)
    ok(admin.post("/ports", json={"port": {"network_id": net["id"], "device_owner": "compute:nova"}}))
    none = ok(admin.get("/ports", params={"network_id": net["id"], "device_owner": "network:dhcp"}))["ports"]
    assert none == []
    ok(admin.put(f"/subnets/{sub['id']}", json={"subnet": {"enable_dhcp": True}}))
    dhcp = ok(admin.get("/ports", params={"network_id": net["id"], "device_owner": "network:dhcp"}))["ports"]
    assert [a["subnet_id"] for a in dhcp[0]["fixed_ips"]] == [sub["id"]]


# -- what neutron-tempest-plugin's API tests check ----------------------------------------------------

def test_quota_update_checks_usage_unless_forced(admin: httpx.Client, demo: httpx.Client) -> None:
    project = ok(demo.post("/security-groups", json={"security_group": {"name": "q"}}))["security_group"]["project_id"]
    used = len(ok(demo.get("/security-groups"))["security_groups"])
    assert used >= 2  # default and q
    e = err(admin.put(f"/quotas/{project}", json={"quota": {"security_group": 1}}), 400)
    assert e["message"] == f"Quota limit 1 for security_group must be greater than or equal to already used {used}"
    got = ok(admin.put(f"/quotas/{project}", json={"quota": {"security_group": 1, "force": True}}))["quota"]
    assert got["security_group"] == 1
    assert err(demo.post("/security-groups", json={"security_group": {"name": "q2"}}), 409)["type"] == "OverQuota"
    ok(admin.put(f"/quotas/{project}", json={"quota": {"security_group": -1, "check_limit": True}}))
    aliases = {x["alias"] for x in ok(admin.get("/extensions"))["extensions"]}
    assert {"quota-check-limit", "quota-check-limit-default"} <= aliases


def test_port_security_group_rules_of_neutron(demo: httpx.Client) -> None:
    net, _ = network(demo, "10.90.0.0/24")
    port = ok(demo.post("/ports", json={"port": {"network_id": net["id"]}}))["port"]
    sg = ok(demo.post("/security-groups", json={"security_group": {"name": "a"}}))["security_group"]
    e = err(demo.put(f"/ports/{port['id']}", json={"port": {"security_groups": [sg["id"], sg["id"]]}}), 400)
    assert e["message"] == f"Invalid input for security_groups. Reason: Duplicate items in the list: '{sg['id']}'."
    stateless = ok(demo.post("/security-groups", json={"security_group": {"name": "s", "stateful": False}}))
    stateless = stateless["security_group"]
    e = err(demo.put(f"/ports/{port['id']}", json={"port": {"security_groups": [sg["id"], stateless["id"]]}}), 409)
    assert e["type"] == "SecurityGroupConflict"
    e = err(demo.post("/ports", json={"port": {"network_id": net["id"],
                                               "security_groups": [stateless["id"], sg["id"]]}}), 409)
    assert "both stateful and stateless" in e["message"]
    ok(demo.put(f"/ports/{port['id']}", json={"port": {"security_groups": [sg["id"]]}}))
    # a group in use keeps its statefulness; an unused one may change
    e = err(demo.put(f"/security-groups/{sg['id']}", json={"security_group": {"stateful": False}}), 409)
    assert e == {"type": "SecurityGroupInUse", "message": f"Security Group {sg['id']} in use.", "detail": ""}
    changed = ok(demo.put(f"/security-groups/{stateless['id']}", json={"security_group": {"stateful": True}}))
    assert changed["security_group"]["stateful"] is True


def test_rule_protocols_and_normalized_cidr(demo: httpx.Client) -> None:
    sg = ok(demo.post("/security-groups", json={"security_group": {"name": "p"}}))["security_group"]
    for proto in ("41", "43", "44", "58", "59", "60", "ipv6-encap"):
        e = err(demo.post("/security-group-rules", json={"security_group_rule": {
            "security_group_id": sg["id"], "direction": "ingress", "ethertype": "IPv4", "protocol": proto}}), 400)
        assert e["type"] == "SecurityGroupEthertypeConflictWithProtocol", proto
    rule = ok(demo.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "remote_ip_prefix": "10.0.0.34/24"}}))
    rule = rule["security_group_rule"]
    # normalized_cidr is the network; (Neutron echoes remote_ip_prefix as given, 10.0.0.34/24: neutrino
    # stores it normalized, as the planners read it)
    assert rule["normalized_cidr"] == "10.0.0.0/24"
    rule = ok(demo.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "remote_group_id": sg["id"]}}))
    assert rule["security_group_rule"]["normalized_cidr"] is None


def test_rules_an_admin_adds_to_a_project_group_are_listed_to_it(admin: httpx.Client, demo: httpx.Client) -> None:
    sg = ok(demo.post("/security-groups", json={"security_group": {"name": "mine"}}))["security_group"]
    rule = ok(admin.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp"}}))["security_group_rule"]
    assert rule["project_id"] != sg["project_id"]
    assert rule["id"] in {r["id"] for r in ok(demo.get("/security-group-rules"))["security_group_rules"]}
    assert ok(demo.get(f"/security-group-rules/{rule['id']}"))["security_group_rule"]["id"] == rule["id"]


def test_shared_network_port_policy_and_subnet_filter(admin: httpx.Client, demo: httpx.Client) -> None:
    shared = ok(admin.post("/networks", json={"network": {"name": "shared", "shared": True}}))["network"]
    sub = ok(admin.post("/subnets", json={"subnet": {"network_id": shared["id"], "cidr": "10.95.0.0/24",
                                                     "ip_version": 4}}))["subnet"]
    pair = [{"ip_address": "10.95.0.200"}]
    e = err(demo.post("/ports", json={"port": {"network_id": shared["id"], "allowed_address_pairs": pair}}), 403)
    assert "allowed_address_pairs" in e["message"]
    err(demo.post("/ports", json={"port": {"network_id": shared["id"], "port_security_enabled": False}}), 403)
    port = ok(demo.post("/ports", json={"port": {"network_id": shared["id"]}}))["port"]
    err(demo.put(f"/ports/{port['id']}", json={"port": {"allowed_address_pairs": pair}}), 403)
    assert ok(admin.put(f"/ports/{port['id']}", json={"port": {"allowed_address_pairs": pair}}))
    # on its own network the member may
    own, _ = network(demo, "10.96.0.0/24")
    ok(demo.post("/ports", json={"port": {"network_id": own["id"], "allowed_address_pairs": pair}}))
    # a subnet's 'shared' is its network's: filterable, not shown
    shared_ids = {s["id"] for s in ok(demo.get("/subnets", params={"shared": "True"}))["subnets"]}
    unshared_ids = {s["id"] for s in ok(demo.get("/subnets", params={"shared": "False"}))["subnets"]}
    assert sub["id"] in shared_ids and sub["id"] not in unshared_ids and unshared_ids
    assert "shared" not in sub


def test_mtu_bounds(admin: httpx.Client) -> None:
    e = err(admin.post("/networks", json={"network": {"name": "big", "mtu": 1451}}), 400)  # vxlan: 1500 - 50
    assert e["message"] == "Invalid input for operation: Requested MTU is too big, maximum is 1450."
    tiny = ok(admin.post("/networks", json={"network": {"name": "tiny", "mtu": 67}}))["network"]
    e = err(admin.post("/subnets", json={"subnet": {"network_id": tiny["id"], "cidr": "10.97.0.0/24",
                                                    "ip_version": 4}}), 409)
    assert e == {"type": "NetworkMTUSubnetConflict", "detail": "",
                 "message": f"MTU of {tiny['id']} is not valid, subnet requires a minimum of 68"}
    net = ok(admin.post("/networks", json={"network": {"name": "v6", "mtu": 1280}}))["network"]
    ok(admin.post("/subnets", json={"subnet": {"network_id": net["id"], "cidr": "2001:db8:97::/64",
                                               "ip_version": 6}}))
    e = err(admin.put(f"/networks/{net['id']}", json={"network": {"mtu": 1279}}), 409)
    assert e["message"].endswith("subnet requires a minimum of 1280")
    assert ok(admin.put(f"/networks/{net['id']}", json={"network": {"mtu": 1400}}))["network"]["mtu"] == 1400
    err(admin.put(f"/networks/{net['id']}", json={"network": {"mtu": 1500}}), 400)


def test_provider_attribute_filters(admin: httpx.Client) -> None:
    made = [ok(admin.post("/networks", json={"network": {
        "name": f"vlan{i}", "provider:network_type": "vlan", "provider:physical_network": "provider",
        "provider:segmentation_id": 101 + i}}))["network"]["id"] for i in range(2)]
    for params, want in (({"provider:network_type": "vlan"}, made),
                         ({"provider:physical_network": "provider", "provider:network_type": "vlan"}, made),
                         ({"provider:segmentation_id": ["102", "101"], "provider:network_type": "vlan"}, made),
                         ({"provider:segmentation_id": "102", "provider:network_type": "vlan"}, made[1:])):
        got = [n["id"] for n in ok(admin.get("/networks", params=params))["networks"]]
        assert got == want, params
        page = ok(admin.get("/networks", params={**params, "limit": 1}))["networks"]
        assert [n["id"] for n in page] == sorted(want)[:1]  # a page is in id order


def test_pagination_links_as_neutron(admin: httpx.Client) -> None:
    for i in range(3):
        ok(admin.post("/networks", json={"network": {"name": f"page{i}"}}))
    every = [n["id"] for n in ok(admin.get("/networks", params={"sort_key": "id", "sort_dir": "asc"}))["networks"]]
    body = ok(admin.get("/networks", params={"limit": 2, "sort_key": "id", "sort_dir": "asc"}))
    rels = [x["rel"] for x in body["networks_links"]]
    assert rels == ["next", "previous"]  # Neutron gives 'previous' on the first page too
    seen, links = [n["id"] for n in body["networks"]], body["networks_links"]
    while len(seen) < len(every):
        href = next(x["href"] for x in links if x["rel"] == "next")
        body = ok(admin.get(href.split("/v2.0", 1)[1]))
        seen += [n["id"] for n in body["networks"]]
        links = body.get("networks_links", [])
    assert seen == every
    # a reverse page with no marker starts from the end and links backwards
    body = ok(admin.get("/networks", params={"limit": 2, "sort_key": "id", "sort_dir": "asc", "page_reverse": "True"}))
    assert [n["id"] for n in body["networks"]] == every[-2:]
    assert "previous" in [x["rel"] for x in body["networks_links"]]


def test_gateway_held_by_a_router_port(demo: httpx.Client) -> None:
    net, sub = network(demo, "10.98.0.0/24", allocation_pools=[{"start": "10.98.0.100", "end": "10.98.0.110"}])
    ok(demo.put(f"/subnets/{sub['id']}", json={"subnet": {"gateway_ip": "10.98.0.2"}}))  # no router port yet
    router = ok(demo.post("/routers", json={"router": {"name": "gw"}}))["router"]
    iface = ok(demo.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}))
    for new in ("10.98.0.3", None):
        e = err(demo.put(f"/subnets/{sub['id']}", json={"subnet": {"gateway_ip": new}}), 409)
        assert e["message"] == (f"Current gateway ip 10.98.0.2 already in use by port {iface['port_id']}. "
                                "Unable to update.")


def test_floating_ip_to_another_projects_port(admin: httpx.Client, demo: httpx.Client,
                                              public: dict[str, Any]) -> None:
    net, sub = network(demo, "10.99.0.0/24")
    router = ok(demo.post("/routers", json={"router": {"name": "r9", "external_gateway_info": {
        "network_id": public["id"]}}}))["router"]
    ok(demo.put(f"/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}))
    other = ok(admin.post("/ports", json={"port": {"network_id": net["id"], "project_id": "other-project"}}))
    fip = ok(demo.post("/floatingips", json={"floatingip": {"floating_network_id": public["id"]}}))["floatingip"]
    e = err(demo.put(f"/floatingips/{fip['id']}", json={"floatingip": {"port_id": other["port"]["id"]}}), 400)
    assert "since that port is owned by a different project" in e["message"]


def test_new_group_counts_its_rules_and_shows_them_whole(admin: httpx.Client, demo: httpx.Client) -> None:
    sg = ok(demo.post("/security-groups", json={"security_group": {"name": "whole"}}))["security_group"]
    assert [(r["security_group_id"], r["belongs_to_default_sg"]) for r in sg["security_group_rules"]] == \
        [(sg["id"], False)] * 2
    project = sg["project_id"]
    ok(admin.put(f"/quotas/{project}", json={"quota": {"security_group_rule": 0, "force": True}}))
    try:
        assert err(demo.post("/security-groups", json={"security_group": {"name": "no-rules-left"}}),
                   409)["type"] == "OverQuota"
    finally:
        ok(admin.put(f"/quotas/{project}", json={"quota": {"security_group_rule": -1}}))


def test_a_rules_remote_prefix_is_kept_as_given_and_normalized_beside_it(admin: httpx.Client) -> None:
    """Neutron keeps ``remote_ip_prefix`` as the user wrote it and gives the network in
    ``normalized_cidr`` (neutron_tempest_plugin's SecGroupNormalizedCidrTest); the iptables rule
    uses the network."""
    c = admin
    sg = c.post("/security-groups", json={"security_group": {"name": "norm"}}).json()["security_group"]
    r = c.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
        "remote_ip_prefix": "10.0.0.34/24"}})
    assert r.status_code == 201, r.text
    rule = r.json()["security_group_rule"]
    assert (rule["remote_ip_prefix"], rule["normalized_cidr"]) == ("10.0.0.34/24", "10.0.0.0/24")
    again = c.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg["id"], "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
        "remote_ip_prefix": "10.0.0.0/24"}})
    assert again.status_code == 409  # the same network: the same rule
