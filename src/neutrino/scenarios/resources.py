"""Create a scenario's resources through the HTTP API (what ``neutrino up`` does after starting the server).

The ``resources`` section, every list optional, created in this order::

    networks:            # name, external, shared, port_security_enabled, mtu,
      - name: public     # provider: {network_type, physical_network, segmentation_id}
        external: true
        subnets:         # name, cidr, ip_version (from cidr), gateway (null: none), enable_dhcp,
          - {name: public-subnet, cidr: 172.24.4.224/28, gateway: 172.24.4.225, enable_dhcp: false}
                         # allocation_pools [{start,end}], dns_nameservers, host_routes [{destination,nexthop}],
                         # ipv6_ra_mode, ipv6_address_mode
    security_groups:     # name, description, rules: [rule without group],
                         # default_egress: false drops the egress rules Neutron gives a new group
    security_group_rules:
      - {group: default, direction: ingress, protocol: tcp, port_range: "22:22",
         ethertype: IPv4, remote_ip_prefix: 0.0.0.0/0, remote_group: other-group}
    routers:
      - name: router1
        gateway: {network: public, enable_snat: true, fixed_ips: [{subnet: public-subnet, ip_address: ...}]}
        interfaces: [private-subnet, {port: some-port}]
        routes: [{destination: 10.2.0.0/24, nexthop: 10.1.0.254}]
    ports:               # name, network, fixed_ips [{subnet, ip_address}], security_groups, mac_address,
                         # port_security_enabled, allowed_address_pairs, host
    servers:             # name, image, flavor, networks: [network name | {network, fixed_ip} | {port}],
                         # host (forces the compute host), security_groups
    floating_ips:        # network, address, server (first port) | port, fixed_ip
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from neutrino.errors import ConvergenceTimeout, InvalidInput, NeutrinoError
from neutrino.scenarios.model import Scenario


class ApiError(NeutrinoError):
    """The API refused a scenario resource."""


@dataclass
class Created:
    """Ids of what was created, by kind and name."""

    networks: dict[str, str] = field(default_factory=dict)
    subnets: dict[str, str] = field(default_factory=dict)
    security_groups: dict[str, str] = field(default_factory=dict)
    routers: dict[str, str] = field(default_factory=dict)
    ports: dict[str, str] = field(default_factory=dict)
    servers: dict[str, str] = field(default_factory=dict)
    floating_ips: dict[str, str] = field(default_factory=dict)


class _Client:
    def __init__(self, base: str, token: str | None) -> None:
        headers = {"X-Auth-Token": token} if token else {}
        self.http = httpx.Client(base_url=base.rstrip("/"), headers=headers, timeout=60)

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        r = self.http.request(method, path, json=body)
        if r.status_code not in ok:
            raise ApiError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None


def login(base: str, scenario: Scenario, auth: str = "keystone") -> str | None:
    if auth == "noauth":
        return None
    user = next((u for u in scenario.identity.users if "admin" in u.roles), scenario.identity.users[0])
    r = httpx.post(f"{base.rstrip('/')}/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user.name, "domain": {"name": "Default"}, "password": user.password}}},
        "scope": {"project": {"name": user.project, "domain": {"name": "Default"}}}}}, timeout=30)
    if r.status_code != 201:
        raise ApiError(f"authentication failed: {r.status_code} {r.text[:200]}")
    return r.headers["X-Subject-Token"]


def _need(d: dict[str, str], name: Any, what: str) -> str:
    if name not in d:
        raise InvalidInput(f"scenario: unknown {what} {name!r}")
    return d[name]


def _rule_body(rule: dict[str, Any], group_id: str, created: Created, client: _Client) -> dict[str, Any]:
    body: dict[str, Any] = {"security_group_id": group_id, "direction": rule.get("direction", "ingress"),
                            "ethertype": rule.get("ethertype", "IPv4"), "protocol": rule.get("protocol")}
    if "port_range" in rule:
        lo, _, hi = str(rule["port_range"]).partition(":")
        body["port_range_min"], body["port_range_max"] = int(lo), int(hi or lo)
    for k in ("port_range_min", "port_range_max", "remote_ip_prefix", "description"):
        if k in rule:
            body[k] = rule[k]
    if "remote_group" in rule:
        body["remote_group_id"] = _group_id(rule["remote_group"], created, client)
    return body


def _group_id(name: str, created: Created, client: _Client) -> str:
    if name not in created.security_groups:
        groups = client.call("GET", "/v2.0/security-groups", ok=(200,))["security_groups"]
        for g in groups:
            created.security_groups.setdefault(g["name"], g["id"])
    return _need(created.security_groups, name, "security group")


def apply_scenario_resources(scenario: Scenario, base: str, *, auth: str = "keystone",
                             timeout: float = 60.0) -> Created:
    """Create every resource of ``scenario`` on the server at ``base`` (e.g. http://127.0.0.1:9696)."""
    client = _Client(base, login(base, scenario, auth))
    res = scenario.resources
    out = Created()
    for net in res.get("networks", []):
        body: dict[str, Any] = {"name": net["name"], "admin_state_up": True}
        for src, dst in (("external", "router:external"), ("shared", "shared"),
                         ("port_security_enabled", "port_security_enabled"), ("mtu", "mtu")):
            if src in net:
                body[dst] = net[src]
        for k, v in (net.get("provider") or {}).items():
            body[f"provider:{k}"] = v
        nid = client.call("POST", "/v2.0/networks", {"network": body})["network"]["id"]
        out.networks[net["name"]] = nid
        for sub in net.get("subnets", []):
            cidr = str(sub["cidr"])
            sbody: dict[str, Any] = {"network_id": nid, "name": sub.get("name", ""), "cidr": cidr,
                                     "ip_version": int(sub.get("ip_version", 6 if ":" in cidr else 4))}
            if "gateway" in sub:
                sbody["gateway_ip"] = sub["gateway"]
            for k in ("enable_dhcp", "allocation_pools", "dns_nameservers", "host_routes", "ipv6_ra_mode",
                      "ipv6_address_mode"):
                if k in sub:
                    sbody[k] = sub[k]
            sid = client.call("POST", "/v2.0/subnets", {"subnet": sbody})["subnet"]["id"]
            out.subnets[sbody["name"] or sid] = sid
    for g in res.get("security_groups", []):
        gid = client.call("POST", "/v2.0/security-groups", {"security_group": {
            "name": g["name"], "description": g.get("description", "")}})["security_group"]["id"]
        out.security_groups[g["name"]] = gid
        if not g.get("default_egress", True):
            rules = client.call("GET", f"/v2.0/security-group-rules?security_group_id={gid}",
                                ok=(200,))["security_group_rules"]
            for rule in rules:
                if rule["direction"] == "egress":
                    client.call("DELETE", f"/v2.0/security-group-rules/{rule['id']}")
        for rule in g.get("rules", []):
            client.call("POST", "/v2.0/security-group-rules",
                        {"security_group_rule": _rule_body(rule, gid, out, client)})
    for rule in res.get("security_group_rules", []):
        gid = _group_id(rule.get("group", "default"), out, client)
        client.call("POST", "/v2.0/security-group-rules", {"security_group_rule": _rule_body(rule, gid, out, client)})
    for p in res.get("ports", []):
        body = {"name": p["name"], "network_id": _need(out.networks, p["network"], "network")}
        if "fixed_ips" in p:
            body["fixed_ips"] = [{k2: (out.subnets.get(v2, v2) if k2 == "subnet" else v2)
                                  for k2, v2 in ip.items()} for ip in p["fixed_ips"]]
            for ip in body["fixed_ips"]:
                if "subnet" in ip:
                    ip["subnet_id"] = ip.pop("subnet")
        if "security_groups" in p:
            body["security_groups"] = [_group_id(n, out, client) for n in p["security_groups"]]
        for k in ("mac_address", "port_security_enabled", "allowed_address_pairs", "device_owner", "device_id"):
            if k in p:
                body[k] = p[k]
        if "host" in p:
            body["binding:host_id"] = p["host"]
        out.ports[p["name"]] = client.call("POST", "/v2.0/ports", {"port": body})["port"]["id"]
    for r in res.get("routers", []):
        body = {"name": r["name"], "admin_state_up": True}
        rid = client.call("POST", "/v2.0/routers", {"router": body})["router"]["id"]
        out.routers[r["name"]] = rid
        gw = r.get("gateway")
        if gw:
            info: dict[str, Any] = {"network_id": _need(out.networks, gw["network"], "network"),
                                    "enable_snat": gw.get("enable_snat", True)}
            if gw.get("fixed_ips"):
                info["external_fixed_ips"] = [
                    {**({"subnet_id": _need(out.subnets, ip["subnet"], "subnet")} if "subnet" in ip else {}),
                     **({"ip_address": ip["ip_address"]} if "ip_address" in ip else {})} for ip in gw["fixed_ips"]]
            client.call("PUT", f"/v2.0/routers/{rid}", {"router": {"external_gateway_info": info}})
        for iface in r.get("interfaces", []):
            if isinstance(iface, dict) and "port" in iface:
                body = {"port_id": _need(out.ports, iface["port"], "port")}
            else:
                name = iface["subnet"] if isinstance(iface, dict) else iface
                body = {"subnet_id": _need(out.subnets, name, "subnet")}
            client.call("PUT", f"/v2.0/routers/{rid}/add_router_interface", body)
        if r.get("routes"):
            client.call("PUT", f"/v2.0/routers/{rid}", {"router": {"routes": r["routes"]}})
    for s in res.get("servers", []):
        nets = []
        for n in s.get("networks", []):
            if isinstance(n, dict) and "port" in n:
                nets.append({"port": _need(out.ports, n["port"], "port")})
            elif isinstance(n, dict):
                item = {"uuid": _need(out.networks, n["network"], "network")}
                if "fixed_ip" in n:
                    item["fixed_ip"] = n["fixed_ip"]
                nets.append(item)
            else:
                nets.append({"uuid": _need(out.networks, n, "network")})
        body = {"name": s["name"], "imageRef": s.get("image", "cirros"), "flavorRef": str(s.get("flavor", "1")),
                "networks": nets or "none"}
        if s.get("image", "cirros") == "cirros":
            images = client.call("GET", "/image/v2/images?name=cirros", ok=(200,))["images"]
            body["imageRef"] = images[0]["id"]
        if "host" in s:
            body["availability_zone"] = f"nova:{s['host']}"
        if "security_groups" in s:
            body["security_groups"] = [{"name": g} for g in s["security_groups"]]
        out.servers[s["name"]] = client.call("POST", "/compute/v2.1/servers", {"server": body})["server"]["id"]
    for f in res.get("floating_ips", []):
        body = {"floating_network_id": _need(out.networks, f["network"], "network")}
        if "address" in f:
            body["floating_ip_address"] = f["address"]
        port_id = None
        if "port" in f:
            port_id = _need(out.ports, f["port"], "port")
        elif "server" in f:
            sid = _need(out.servers, f["server"], "server")
            deadline = time.monotonic() + timeout
            while port_id is None:
                ports = client.call("GET", f"/v2.0/ports?device_id={sid}", ok=(200,))["ports"]
                if ports:
                    port_id = ports[0]["id"]
                elif time.monotonic() > deadline:
                    raise ConvergenceTimeout(f"server {f['server']} has no port")
                else:
                    time.sleep(0.1)
        if port_id:
            body["port_id"] = port_id
        if "fixed_ip" in f:
            body["fixed_ip_address"] = f["fixed_ip"]
        fip = client.call("POST", "/v2.0/floatingips", {"floatingip": body})["floatingip"]
        out.floating_ips[f.get("address", fip["floating_ip_address"])] = fip["id"]
    return out
