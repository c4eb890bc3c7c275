"""Bad input is answered as Neutron answers it: status, NeutronError type, never a 500 or a traceback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.api_helpers import Server

MISSING = str(uuid.uuid4())


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # may use {net}, {sub}, {ext}, {extsub}, {router}, {port}, {iface}, {sg}, {full}, {lonely}
    body: Any = None
    status: int = 400
    type: str = "HTTPBadRequest"
    raw: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


def rule(**kw: Any) -> dict[str, Any]:
    return {"security_group_rule": {"security_group_id": "{sg}", "direction": "ingress", **kw}}


CASES = [
    # envelopes and attribute validation
    Case("malformed-json", "POST", "/networks", raw=b'{"network": {', type="MalformedRequestBody"),
    Case("empty-body", "POST", "/networks", raw=b""),
    Case("wrong-top-key", "POST", "/networks", {"net": {}}),
    Case("body-not-dict", "POST", "/networks", {"network": "x"}),
    Case("unknown-attribute", "POST", "/networks", {"network": {"foo": 1}}),
    Case("bool-wrong-type", "POST", "/networks", {"network": {"admin_state_up": "maybe"}}),
    Case("name-wrong-type", "POST", "/networks", {"network": {"name": 5}}),
    Case("name-too-long", "POST", "/networks", {"network": {"name": "x" * 256}}),
    Case("readonly-in-post", "POST", "/networks", {"network": {"status": "DOWN"}}),
    Case("readonly-in-put", "PUT", "/networks/{net}", {"network": {"id": "x"}}),
    Case("project-mismatch", "POST", "/networks", {"network": {"project_id": "a", "tenant_id": "b"}}),
    Case("delete-with-body", "DELETE", "/networks/{net}", {"x": 1}),
    Case("method-not-allowed", "PATCH", "/networks", {}, 405, "HTTPMethodNotAllowed"),
    Case("unknown-collection", "GET", "/bogus", None, 404, "HTTPNotFound"),
    # unknown ids
    Case("network-unknown", "GET", f"/networks/{MISSING}", None, 404, "NetworkNotFound"),
    Case("network-not-uuid", "GET", "/networks/not-a-network", None, 404, "NetworkNotFound"),
    Case("network-delete-unknown", "DELETE", f"/networks/{MISSING}", None, 404, "NetworkNotFound"),
    Case("subnet-unknown", "GET", f"/subnets/{MISSING}", None, 404, "SubnetNotFound"),
    Case("port-unknown", "PUT", f"/ports/{MISSING}", {"port": {"name": "x"}}, 404, "PortNotFound"),
    Case("router-unknown", "GET", f"/routers/{MISSING}", None, 404, "RouterNotFound"),
    Case("fip-unknown", "DELETE", f"/floatingips/{MISSING}", None, 404, "FloatingIPNotFound"),
    Case("sg-unknown", "GET", f"/security-groups/{MISSING}", None, 404, "SecurityGroupNotFound"),
    Case("rule-unknown", "DELETE", f"/security-group-rules/{MISSING}", None, 404, "SecurityGroupRuleNotFound"),
    # subnets
    Case("subnet-missing-network", "POST", "/subnets", {"subnet": {"ip_version": 4, "cidr": "10.0.0.0/24"}}),
    Case("subnet-network-unknown", "POST", "/subnets",
         {"subnet": {"network_id": MISSING, "ip_version": 4, "cidr": "10.0.0.0/24"}}, 404, "NetworkNotFound"),
    Case("cidr-prefix-33", "POST", "/subnets", {"subnet": {"network_id": "{net}", "ip_version": 4,
                                                           "cidr": "10.0.0.0/33"}}),
    Case("cidr-garbage", "POST", "/subnets", {"subnet": {"network_id": "{net}", "ip_version": 4, "cidr": "banana"}}),
    Case("ip-version-5", "POST", "/subnets", {"subnet": {"network_id": "{net}", "ip_version": 5,
                                                         "cidr": "10.9.0.0/24"}}),
    Case("ip-version-mismatch", "POST", "/subnets", {"subnet": {"network_id": "{net}", "ip_version": 6,
                                                                "cidr": "10.9.0.0/24"}}, 400, "InvalidInput"),
    Case("cidr-prefix-0", "POST", "/subnets", {"subnet": {"network_id": "{net}", "ip_version": 4,
                                                          "cidr": "0.0.0.0/0"}}, 400, "InvalidInput"),
    Case("subnet-overlap", "POST", "/subnets", {"subnet": {"network_id": "{net}", "ip_version": 4,
                                                           "cidr": "10.20.0.0/24"}}, 400, "InvalidInput"),
    Case("pool-out-of-cidr", "POST", "/subnets", {"subnet": {
        "network_id": "{net}", "ip_version": 4, "cidr": "10.21.0.0/24",
        "allocation_pools": [{"start": "10.21.0.10", "end": "10.21.1.10"}]}}, 400, "OutOfBoundsAllocationPool"),
    Case("gateway-in-pool", "POST", "/subnets", {"subnet": {
        "network_id": "{net}", "ip_version": 4, "cidr": "10.21.0.0/24", "gateway_ip": "10.21.0.20",
        "allocation_pools": [{"start": "10.21.0.10", "end": "10.21.0.30"}]}}, 409,
         "GatewayConflictWithAllocationPools"),
    Case("pools-overlap", "POST", "/subnets", {"subnet": {
        "network_id": "{net}", "ip_version": 4, "cidr": "10.21.0.0/24",
        "allocation_pools": [{"start": "10.21.0.10", "end": "10.21.0.30"},
                             {"start": "10.21.0.20", "end": "10.21.0.40"}]}}, 409, "OverlappingAllocationPools"),
    Case("gateway-garbage", "POST", "/subnets", {"subnet": {"network_id": "{net}", "ip_version": 4,
                                                            "cidr": "10.22.0.0/24", "gateway_ip": "x"}}),
    Case("dns-not-ip", "POST", "/subnets", {"subnet": {"network_id": "{net}", "ip_version": 4,
                                                       "cidr": "10.22.0.0/24", "dns_nameservers": ["dns"]}}),
    Case("subnet-in-use", "DELETE", "/subnets/{sub}", None, 409, "SubnetInUse"),
    # ports
    Case("mac-invalid", "POST", "/ports", {"port": {"network_id": "{net}", "mac_address": "zz:16:3e:00:00:01"}}),
    Case("mac-in-use", "POST", "/ports", {"port": {"network_id": "{net}", "mac_address": "fa:16:3e:00:00:01"}},
         409, "MacAddressInUse"),
    Case("ip-in-use", "POST", "/ports", {"port": {"network_id": "{net}",
                                                  "fixed_ips": [{"ip_address": "10.20.0.5"}]}},
         409, "IpAddressAlreadyAllocated"),
    Case("ip-not-on-network", "POST", "/ports", {"port": {"network_id": "{net}",
                                                          "fixed_ips": [{"ip_address": "192.0.2.5"}]}},
         400, "InvalidIpForNetwork"),
    Case("ip-not-in-subnet", "POST", "/ports", {"port": {
        "network_id": "{net}", "fixed_ips": [{"subnet_id": "{sub}", "ip_address": "10.20.0.200"}]}},
         400, "InvalidIpForSubnet"),
    Case("ip-garbage", "POST", "/ports", {"port": {"network_id": "{net}",
                                                   "fixed_ips": [{"ip_address": "10.20.0.999"}]}}),
    Case("fixed-ips-not-list", "POST", "/ports", {"port": {"network_id": "{net}", "fixed_ips": "10.20.0.7"}}),
    Case("port-network-unknown", "POST", "/ports", {"port": {"network_id": MISSING}}, 404, "NetworkNotFound"),
    Case("port-network-missing", "POST", "/ports", {"port": {"name": "x"}}),
    Case("port-sg-unknown", "POST", "/ports", {"port": {"network_id": "{net}", "security_groups": [MISSING]}},
         404, "SecurityGroupNotFound"),
    Case("port-security-off-with-sg", "POST", "/ports", {"port": {
        "network_id": "{net}", "port_security_enabled": False, "security_groups": ["{sg}"]}}, 400,
         "PortSecurityAndIPRequiredForSecurityGroups"),
    Case("pool-exhausted", "POST", "/ports", {"port": {"network_id": "{full}"}}, 409,
         "IpAddressGenerationFailure"),
    Case("router-port-delete", "DELETE", "/ports/{iface}", None, 409, "ServicePortInUse"),
    Case("network-in-use", "DELETE", "/networks/{net}", None, 409, "NetworkInUse"),
    # security groups and rules
    Case("rule-range-inverted", "POST", "/security-group-rules",
         rule(protocol="tcp", port_range_min=90, port_range_max=80), 400, "SecurityGroupInvalidPortRange"),
    Case("rule-port-zero", "POST", "/security-group-rules",
         rule(protocol="tcp", port_range_min=0, port_range_max=80), 400, "SecurityGroupInvalidPortValue"),
    Case("rule-ports-without-protocol", "POST", "/security-group-rules", rule(port_range_min=22, port_range_max=22),
         400, "SecurityGroupProtocolRequiredWithPorts"),
    Case("rule-protocol-unknown", "POST", "/security-group-rules", rule(protocol="foo")),
    Case("rule-direction-bad", "POST", "/security-group-rules",
         {"security_group_rule": {"security_group_id": "{sg}", "direction": "sideways"}}),
    Case("rule-direction-missing", "POST", "/security-group-rules",
         {"security_group_rule": {"security_group_id": "{sg}"}}),
    Case("rule-prefix-garbage", "POST", "/security-group-rules", rule(remote_ip_prefix="10.0.0.0/99")),
    Case("rule-ethertype-conflict", "POST", "/security-group-rules",
         rule(ethertype="IPv6", remote_ip_prefix="0.0.0.0/0"), 400, "SecurityGroupRuleParameterConflict"),
    Case("rule-icmp-type-300", "POST", "/security-group-rules", rule(protocol="icmp", port_range_min=300),
         400, "SecurityGroupInvalidIcmpValue"),
    Case("rule-prefix-and-group", "POST", "/security-group-rules",
         rule(remote_ip_prefix="10.0.0.0/8", remote_group_id="{sg}"), 400,
         "SecurityGroupRemoteGroupAndRemoteIpPrefix"),
    Case("rule-group-unknown", "POST", "/security-group-rules",
         {"security_group_rule": {"security_group_id": MISSING, "direction": "ingress"}}, 404,
         "SecurityGroupNotFound"),
    Case("rule-duplicate", "POST", "/security-group-rules", rule(protocol="tcp", port_range_min=22,
                                                                 port_range_max=22, remote_ip_prefix="0.0.0.0/0"),
         409, "SecurityGroupRuleExists"),
    Case("rule-duplicate-egress-default", "POST", "/security-group-rules",
         {"security_group_rule": {"security_group_id": "{sg}", "direction": "egress", "ethertype": "IPv6",
                                  "protocol": None, "remote_ip_prefix": "::/0"}}, 409, "SecurityGroupRuleExists"),
    Case("sg-named-default", "POST", "/security-groups", {"security_group": {"name": "default"}}, 409,
         "SecurityGroupDefaultAlreadyExists"),
    Case("sg-in-use", "DELETE", "/security-groups/{sg}", None, 409, "SecurityGroupInUse"),
    # routers
    Case("iface-both", "PUT", "/routers/{router}/add_router_interface", {"subnet_id": "{sub}", "port_id": "{port}"},
         400, "BadRequest"),
    Case("iface-neither", "PUT", "/routers/{router}/add_router_interface", {}, 400, "BadRequest"),
    Case("iface-again", "PUT", "/routers/{router}/add_router_interface", {"subnet_id": "{sub}"}, 400, "BadRequest"),
    Case("iface-port-in-use", "PUT", "/routers/{router}/add_router_interface", {"port_id": "{iface}"}, 409,
         "PortInUse"),
    Case("iface-remove-absent", "PUT", "/routers/{router}/remove_router_interface", {"subnet_id": "{lonely}"}, 404,
         "RouterInterfaceNotFoundForSubnet"),
    Case("iface-remove-port-absent", "PUT", "/routers/{router}/remove_router_interface", {"port_id": "{port}"}, 404,
         "RouterInterfaceNotFound"),
    Case("gateway-not-external", "PUT", "/routers/{router}",
         {"router": {"external_gateway_info": {"network_id": "{net}"}}}, 400, "BadRequest"),
    Case("gateway-network-unknown", "PUT", "/routers/{router}",
         {"router": {"external_gateway_info": {"network_id": MISSING}}}, 404, "NetworkNotFound"),
    Case("router-in-use", "DELETE", "/routers/{router}", None, 409, "RouterInUse"),
    Case("route-nexthop-unreachable", "PUT", "/routers/{router}",
         {"router": {"routes": [{"destination": "10.99.0.0/24", "nexthop": "192.0.2.1"}]}}, 400, "InvalidRoutes"),
    # floating IPs
    Case("fip-network-not-external", "POST", "/floatingips", {"floatingip": {"floating_network_id": "{net}"}},
         400, "BadRequest"),
    Case("fip-missing-network", "POST", "/floatingips", {"floatingip": {}}),
    Case("fip-unreachable", "POST", "/floatingips", {"floatingip": {"floating_network_id": "{ext}",
                                                                    "port_id": "{lonelyport}"}},
         404, "ExternalGatewayForFloatingIPNotFound"),
    Case("fip-address-taken", "POST", "/floatingips", {"floatingip": {"floating_network_id": "{ext}",
                                                                      "floating_ip_address": "{gwip}"}},
         409, "IpAddressAlreadyAllocated"),
    Case("fip-fixed-without-port", "POST", "/floatingips", {"floatingip": {"floating_network_id": "{ext}",
                                                                           "fixed_ip_address": "10.20.0.5"}},
         400, "BadRequest"),
    # list queries and revision constraints
    Case("limit-negative", "GET", "/networks?limit=-1"),
    Case("limit-garbage", "GET", "/networks?limit=abc"),
    Case("sort-key-unknown", "GET", "/networks?sort_key=bogus"),
    Case("sort-dirs-mismatch", "GET", "/networks?sort_key=name&sort_key=id&sort_dir=asc"),
    Case("filter-unknown", "GET", "/networks?bogus=1"),
    Case("filter-bool-garbage", "GET", "/networks?shared=maybe"),
    Case("marker-unknown", "GET", f"/networks?limit=1&marker={MISSING}", None, 404, "NetworkNotFound"),
    Case("revision-mismatch", "PUT", "/networks/{net}", {"network": {"name": "x"}}, 412,
         "RevisionNumberConstraintFailed", headers=(("If-Match", "revision_number=999"),)),
    Case("revision-garbage", "PUT", "/networks/{net}", {"network": {"name": "x"}},
         headers=(("If-Match", "rev=1"),)),
    Case("quota-garbage", "PUT", "/quotas/{project}", {"quota": {"port": "many"}}),
]


@pytest.fixture(scope="module")
def topo(server: Server) -> Iterator[dict[str, str]]:
    """Network 10.20.0.0/28 with a port at .5 (MAC fa:16:3e:00:00:01), a router with an interface on it and a
    gateway on an external network; a lonely subnet; a full /30; a security group with tcp/22 used by a port."""
    with server.http() as h:
        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = h.post(path, json=body)
            assert r.status_code == 201, r.text
            return next(iter(r.json().values()))
        t: dict[str, str] = {}
        t["net"] = post("/networks", {"network": {"name": "err-net"}})["id"]
        t["sub"] = post("/subnets", {"subnet": {"network_id": t["net"], "ip_version": 4, "cidr": "10.20.0.0/28",
                                                "enable_dhcp": False}})["id"]
        t["sg"] = post("/security-groups", {"security_group": {"name": "err-sg"}})["id"]
        post("/security-group-rules", {"security_group_rule": {
            "security_group_id": t["sg"], "direction": "ingress", "protocol": "tcp", "port_range_min": 22,
            "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}})
        t["port"] = post("/ports", {"port": {"network_id": t["net"], "mac_address": "fa:16:3e:00:00:01",
                                             "fixed_ips": [{"ip_address": "10.20.0.5"}],
                                             "security_groups": [t["sg"]]}})["id"]
        t["ext"] = post("/networks", {"network": {"name": "err-ext", "router:external": True}})["id"]
        t["extsub"] = post("/subnets", {"subnet": {"network_id": t["ext"], "ip_version": 4,
                                                   "cidr": "198.51.100.0/28", "enable_dhcp": False}})["id"]
        t["router"] = post("/routers", {"router": {"name": "err-router",
                                                   "external_gateway_info": {"network_id": t["ext"]}}})["id"]
        gw = h.get(f"/routers/{t['router']}").json()["router"]["external_gateway_info"]
        t["gwip"] = gw["external_fixed_ips"][0]["ip_address"]
        r = h.put(f"/routers/{t['router']}/add_router_interface", json={"subnet_id": t["sub"]})
        assert r.status_code == 200, r.text
        t["iface"] = r.json()["port_id"]
        lonely_net = post("/networks", {"network": {"name": "err-lonely"}})["id"]
        t["lonely"] = post("/subnets", {"subnet": {"network_id": lonely_net, "ip_version": 4,
                                                   "cidr": "10.30.0.0/24"}})["id"]
        t["lonelyport"] = post("/ports", {"port": {"network_id": lonely_net}})["id"]
        t["full"] = post("/networks", {"network": {"name": "err-full"}})["id"]
        post("/subnets", {"subnet": {"network_id": t["full"], "ip_version": 4, "cidr": "10.40.0.0/30",
                                     "enable_dhcp": False}})
        post("/ports", {"port": {"network_id": t["full"]}})
        t["project"] = "p-" + uuid.uuid4().hex[:8]
    yield t


def _fill(value: Any, t: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in t.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, t) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, t) for v in value]
    return value


def test_error_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_error(case: Case, server: Server, topo: dict[str, str]) -> None:
    headers = {"X-Auth-Token": server.token(), "Content-Type": "application/json", **dict(case.headers)}
    content = case.raw if case.raw is not None else (
        None if case.body is None else httpx.Request("POST", "http://x", json=_fill(case.body, topo)).content)
    r = httpx.request(case.method, f"{server.base}/v2.0{_fill(case.path, topo)}", content=content,
                      headers=headers, timeout=30)
    assert r.status_code == case.status, r.text
    assert "Traceback" not in r.text
    err = r.json()["NeutronError"]
    assert err["type"] == case.type, err
    assert err["message"] and err["detail"] == ""
