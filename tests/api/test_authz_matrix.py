"""The authorization matrix of issue 19: Neutron's default policies (neutron/conf/policies/*.py), as
neutron/api/v2/base.py and neutron/policy.py enforce them, against a real server.

- a reader of a project reads but cannot create, change or delete (403 ``PolicyNotAuthorized`` on
  what it can see; on what it cannot see the lookup comes first, so 404);
- a member of project A cannot see project B's resources (a listing leaves them out, a GET is 404
  ``<Kind>NotFound``) nor touch them (PUT and DELETE are 404 too: Neutron hides their existence);
- a non-admin sees no agents (an empty listing, 404 on one), cannot set the admin-only attributes
  (``provider:*``, ``router:external``, ``shared``, ``binding:host_id``/``binding:profile``, a
  router's ``distributed``/``ha``, a gateway's ``enable_snat``/``external_fixed_ips``, a floating
  IP's address: 403 ``PolicyNotAuthorized``), does not read the admin-only ones (left out of the
  body), and cannot read or change another project's quota (``get_quota``/``update_quota``: 403);
- the admin does all of it, and a member uses a shared network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.api_helpers import password_token, start_server, stop_server

SCENARIO = """\
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:1000"], flat_networks: [public],
             generation: modern}
hosts:
  - {name: controller, roles: [controller, network, compute], management_ip: 192.168.50.10,
     tunnel_ip: 192.168.50.10, bridge_mappings: {public: br-ex}}
identity:
  projects: [admin, demo, other]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
    - {name: alice, password: secret, project: demo, roles: [member, reader]}
    - {name: rita, password: secret, project: demo, roles: [reader]}
    - {name: bob, password: secret, project: other, roles: [member, reader]}
"""

# collection path -> (singular, the NotFound type Neutron answers for it)
KINDS = {
    "networks": ("network", "NetworkNotFound"),
    "subnets": ("subnet", "SubnetNotFound"),
    "ports": ("port", "PortNotFound"),
    "routers": ("router", "RouterNotFound"),
    "floatingips": ("floatingip", "FloatingIPNotFound"),
    "security-groups": ("security_group", "SecurityGroupNotFound"),
    "security-group-rules": ("security_group_rule", "SecurityGroupRuleNotFound"),
    "subnetpools": ("subnetpool", "SubnetPoolNotFound"),
    "address-scopes": ("address_scope", "AddressScopeNotFound"),
}
# a harmless update of each kind (the rules have no updatable attribute but their description... none:
# Neutron's security-group-rule update is not allowed at all, its PUT still looks the rule up first)
UPDATES: dict[str, dict[str, Any]] = {
    "networks": {"name": "x"}, "subnets": {"name": "x"}, "ports": {"name": "x"}, "routers": {"name": "x"},
    "floatingips": {"description": "x"}, "security-groups": {"name": "x"},
    "security-group-rules": {"description": "x"}, "subnetpools": {"name": "x"}, "address-scopes": {"name": "x"},
}


@dataclass
class World:
    base: str
    admin: httpx.Client
    alice: httpx.Client   # member of demo (project A)
    rita: httpx.Client    # reader of demo
    bob: httpx.Client     # member of other (project B)
    ids: dict[str, dict[str, str]]  # owner ('bob', 'alice', 'admin') -> collection -> id
    projects: dict[str, str]        # project name -> id


def ok(r: httpx.Response, status: int = 201) -> Any:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
    return r.json() if r.content else None


def build_project(c: httpx.Client, prefix: str, cidr: str, ext_net: str) -> dict[str, str]:
    """A network, subnet, port, router (gateway and interface), floating IP, security group and rule."""
    net = ok(c.post("/networks", json={"network": {"name": f"{prefix}-net"}}))["network"]["id"]
    sub = ok(c.post("/subnets", json={"subnet": {"network_id": net, "cidr": cidr, "ip_version": 4}}))["subnet"]["id"]
    port = ok(c.post("/ports", json={"port": {"network_id": net, "name": f"{prefix}-port"}}))["port"]["id"]
    router = ok(c.post("/routers", json={"router": {"name": f"{prefix}-r", "external_gateway_info": {
        "network_id": ext_net}}}))["router"]["id"]
    ok(c.put(f"/routers/{router}/add_router_interface", json={"subnet_id": sub}), 200)
    fip = ok(c.post("/floatingips", json={"floatingip": {"floating_network_id": ext_net, "port_id": port}}))
    sg = ok(c.post("/security-groups", json={"security_group": {"name": f"{prefix}-sg"}}))["security_group"]["id"]
    rule = ok(c.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": sg, "direction": "ingress", "protocol": "tcp", "port_range_min": 22,
        "port_range_max": 22}}))["security_group_rule"]["id"]
    scope = ok(c.post("/address-scopes", json={"address_scope": {"name": f"{prefix}-scope", "ip_version": 4}}))
    pool = ok(c.post("/subnetpools", json={"subnetpool": {"name": f"{prefix}-pool", "prefixes": [f"{cidr[:-3]}/16"],
                                                         "address_scope_id": scope["address_scope"]["id"]}}))
    return {"networks": net, "subnets": sub, "ports": port, "routers": router,
            "floatingips": fip["floatingip"]["id"], "security-groups": sg, "security-group-rules": rule,
            "subnetpools": pool["subnetpool"]["id"], "address-scopes": scope["address_scope"]["id"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("authz-matrix")
    scenario = tmp / "matrix.yaml"
    scenario.write_text(SCENARIO)
    server = start_server(tmp, f"sqlite:///{tmp / 'matrix.db'}", scenario=scenario)

    def client(user: str, project: str) -> httpx.Client:
        return httpx.Client(base_url=f"{server.base}/v2.0", timeout=30,
                            headers={"X-Auth-Token": password_token(server.base, user, project)})
    try:
        admin, alice, rita, bob = (client("admin", "admin"), client("alice", "demo"), client("rita", "demo"),
                                   client("bob", "other"))
        ext = ok(admin.post("/networks", json={"network": {
            "name": "public", "router:external": True, "provider:network_type": "flat",
            "provider:physical_network": "public"}}))["network"]["id"]
        ok(admin.post("/subnets", json={"subnet": {"network_id": ext, "cidr": "172.24.4.0/24", "ip_version": 4,
                                                   "enable_dhcp": False}}))
        shared = ok(admin.post("/networks", json={"network": {"name": "shared", "shared": True}}))["network"]["id"]
        ok(admin.post("/subnets", json={"subnet": {"network_id": shared, "cidr": "10.50.0.0/24", "ip_version": 4}}))
        ids = {"bob": build_project(bob, "bob", "10.2.0.0/24", ext),
               "alice": build_project(alice, "alice", "10.1.0.0/24", ext),
               "admin": {"external": ext, "shared": shared}}
        r = httpx.get(f"{server.base}/identity/v3/projects", headers=admin.headers)
        projects = {p["name"]: p["id"] for p in ok(r, 200)["projects"]}
        yield World(server.base, admin, alice, rita, bob, ids, projects)
        for c in (admin, alice, rita, bob):
            c.close()
    finally:
        stop_server(server)


def neutron_error(r: httpx.Response, status: int, etype: str) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
    err = r.json()["NeutronError"]
    assert err["type"] == etype, err
    assert err["message"] and err["detail"] == "", err
    return dict(err)


# -- a member of project A and project B's resources -------------------------------------------------

@pytest.mark.parametrize("coll", list(KINDS))
def test_a_member_does_not_see_another_projects_resources(world: World, coll: str) -> None:
    plural = KINDS[coll][0] + "s"
    theirs = world.ids["bob"][coll]
    listed = {i["id"] for i in ok(world.alice.get(f"/{coll}"), 200)[plural]}
    assert theirs not in listed
    assert world.ids["alice"][coll] in listed  # the member's own are listed
    assert ok(world.alice.get(f"/{coll}", params={"id": theirs}), 200)[plural] == []
    err = neutron_error(world.alice.get(f"/{coll}/{theirs}"), 404, KINDS[coll][1])
    assert theirs in err["message"]


@pytest.mark.parametrize("coll", list(KINDS))
def test_a_member_cannot_touch_another_projects_resources(world: World, coll: str) -> None:
    theirs = world.ids["bob"][coll]
    singular, nf = KINDS[coll]
    neutron_error(world.alice.put(f"/{coll}/{theirs}", json={singular: UPDATES[coll]}), 404, nf)
    neutron_error(world.alice.delete(f"/{coll}/{theirs}"), 404, nf)
    assert ok(world.admin.get(f"/{coll}/{theirs}"), 200)[singular]["id"] == theirs  # still there


def test_a_member_cannot_use_another_projects_router_or_network(world: World) -> None:
    bob, alice = world.ids["bob"], world.ids["alice"]
    neutron_error(world.alice.put(f"/routers/{bob['routers']}/add_router_interface",
                                  json={"subnet_id": alice["subnets"]}), 404, "RouterNotFound")
    neutron_error(world.alice.post("/ports", json={"port": {"network_id": bob["networks"]}}), 404,
                  "NetworkNotFound")
    neutron_error(world.alice.post("/subnets", json={"subnet": {
        "network_id": bob["networks"], "cidr": "10.3.0.0/24", "ip_version": 4}}), 404, "NetworkNotFound")
    neutron_error(world.alice.post("/security-group-rules", json={"security_group_rule": {
        "security_group_id": bob["security-groups"], "direction": "ingress"}}), 404, "SecurityGroupNotFound")
    neutron_error(world.alice.put(f"/floatingips/{alice['floatingips']}", json={"floatingip": {
        "port_id": bob["ports"]}}), 404, "PortNotFound")


# -- the reader -----------------------------------------------------------------------------------

CREATES: dict[str, dict[str, Any]] = {
    "networks": {"name": "r"}, "routers": {"name": "r"}, "security-groups": {"name": "r"},
    "subnetpools": {"name": "r", "prefixes": ["10.77.0.0/16"]}, "address-scopes": {"name": "r", "ip_version": 4},
}


@pytest.mark.parametrize("coll", list(KINDS))
def test_a_reader_reads_its_projects_resources_but_cannot_write_them(world: World, coll: str) -> None:
    singular, nf = KINDS[coll]
    mine = world.ids["alice"][coll]
    assert ok(world.rita.get(f"/{coll}/{mine}"), 200)[singular]["id"] == mine
    body = CREATES.get(coll, {"network_id": world.ids["alice"]["networks"]})
    err = neutron_error(world.rita.post(f"/{coll}", json={singular: body}), 403, "PolicyNotAuthorized")
    assert err["message"].endswith("is disallowed by policy"), err
    assert f"rule:create_{singular}" in err["message"]
    err = neutron_error(world.rita.put(f"/{coll}/{mine}", json={singular: UPDATES[coll]}), 403,
                        "PolicyNotAuthorized")
    assert f"rule:update_{singular}" in err["message"]
    err = neutron_error(world.rita.delete(f"/{coll}/{mine}"), 403, "PolicyNotAuthorized")
    assert f"rule:delete_{singular}" in err["message"]
    # what the reader cannot see is not found, not forbidden
    theirs = world.ids["bob"][coll]
    neutron_error(world.rita.put(f"/{coll}/{theirs}", json={singular: UPDATES[coll]}), 404, nf)
    neutron_error(world.rita.delete(f"/{coll}/{theirs}"), 404, nf)
    assert ok(world.alice.get(f"/{coll}/{mine}"), 200)[singular]["id"] == mine  # untouched


def test_a_reader_cannot_plug_routers_tag_or_change_quotas(world: World) -> None:
    mine = world.ids["alice"]
    neutron_error(world.rita.put(f"/routers/{mine['routers']}/remove_router_interface",
                                 json={"subnet_id": mine["subnets"]}), 403, "PolicyNotAuthorized")
    neutron_error(world.rita.put(f"/networks/{mine['networks']}/tags/red"), 403, "PolicyNotAuthorized")
    neutron_error(world.rita.put(f"/quotas/{world.projects['demo']}", json={"quota": {"network": 5}}), 403,
                  "PolicyNotAuthorized")
    assert "red" not in ok(world.alice.get(f"/networks/{mine['networks']}"), 200)["network"]["tags"]
    ports = ok(world.alice.get("/ports", params={"device_id": mine["routers"],
                                                 "device_owner": "network:router_interface"}), 200)["ports"]
    assert len(ports) == 1  # still plugged


# -- admin-only attributes ----------------------------------------------------------------------------

FORBIDDEN_SETS = [
    ("networks", "create", {"name": "p", "provider:network_type": "vxlan"}, "create_network:provider:network_type"),
    ("networks", "create", {"name": "p", "provider:network_type": "flat", "provider:physical_network": "public"},
     "create_network:provider:physical_network"),
    ("networks", "create", {"name": "p", "provider:segmentation_id": 77}, "create_network:provider:segmentation_id"),
    ("networks", "create", {"name": "p", "router:external": True}, "create_network:router:external"),
    ("networks", "create", {"name": "p", "shared": True}, "create_network:shared"),
    ("networks", "update", {"router:external": True}, "update_network:router:external"),
    ("networks", "update", {"shared": True}, "update_network:shared"),
    ("ports", "create", {"binding:host_id": "controller"}, "create_port:binding:host_id"),
    ("ports", "create", {"binding:profile": {"a": "b"}}, "create_port:binding:profile"),
    ("ports", "update", {"binding:host_id": "controller"}, "update_port:binding:host_id"),
    ("ports", "update", {"binding:profile": {"a": "b"}}, "update_port:binding:profile"),
    ("routers", "create", {"name": "d", "distributed": True}, "create_router:distributed"),
    ("routers", "create", {"name": "d", "distributed": False}, "create_router:distributed"),
    ("routers", "create", {"name": "h", "ha": True}, "create_router:ha"),
    ("routers", "update", {"distributed": True}, "update_router:distributed"),
    ("routers", "update", {"ha": False}, "update_router:ha"),
    ("routers", "create", {"name": "g", "external_gateway_info": {"network_id": "EXT", "enable_snat": False}},
     "create_router:external_gateway_info:enable_snat"),
    ("routers", "update", {"external_gateway_info": {"network_id": "EXT", "external_fixed_ips": [
        {"ip_address": "172.24.4.99"}]}}, "update_router:external_gateway_info:external_fixed_ips"),
    ("floatingips", "create", {"floating_network_id": "EXT", "floating_ip_address": "172.24.4.77"},
     "create_floatingip:floating_ip_address"),
]


def _fill(body: dict[str, Any], world: World) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in body.items():
        out[k] = _fill(v, world) if isinstance(v, dict) else world.ids["admin"]["external"] if v == "EXT" else v
    return out


@pytest.mark.parametrize(("coll", "action", "body", "rule"), FORBIDDEN_SETS,
                         ids=[f"{a}-{r.split(':', 1)[1]}-{i}" for i, (_, a, _, r) in enumerate(FORBIDDEN_SETS)])
def test_a_member_cannot_set_admin_only_attributes(world: World, coll: str, action: str, body: dict[str, Any],
                                                   rule: str) -> None:
    singular = KINDS[coll][0]
    body = _fill(body, world)
    if coll == "ports" and action == "create":
        body = {"network_id": world.ids["alice"]["networks"], **body}
    before = {i["id"] for i in ok(world.admin.get(f"/{coll}"), 200)[singular + "s"]}
    if action == "create":
        r = world.alice.post(f"/{coll}", json={singular: body})
    else:
        r = world.alice.put(f"/{coll}/{world.ids['alice'][coll]}", json={singular: body})
    err = neutron_error(r, 403, "PolicyNotAuthorized")
    assert f"rule:{rule})" in err["message"] or f"rule:{rule} " in err["message"], err
    assert err["message"].startswith(f"(rule:{action}_{singular}"), err
    assert {i["id"] for i in ok(world.admin.get(f"/{coll}"), 200)[singular + "s"]} == before  # nothing made


def test_the_defaults_of_admin_only_attributes_are_not_refused(world: World) -> None:
    """Neutron checks an attribute's rule on create only when its value is not the default."""
    net = ok(world.alice.post("/networks", json={"network": {"name": "d", "shared": False,
                                                             "router:external": False}}))["network"]
    assert net["shared"] is False and net["router:external"] is False
    ok(world.alice.delete(f"/networks/{net['id']}"), 204)


@pytest.mark.parametrize(("coll", "hidden", "shown"), [
    ("networks", ["provider:network_type", "provider:physical_network", "provider:segmentation_id"],
     ["router:external", "shared", "mtu"]),
    ("ports", ["binding:host_id", "binding:profile", "binding:vif_type", "binding:vif_details"],
     ["binding:vnic_type", "mac_address"]),
    ("routers", ["distributed", "ha"], ["external_gateway_info", "status"]),
])
def test_a_member_does_not_read_admin_only_attributes(world: World, coll: str, hidden: list[str],
                                                      shown: list[str]) -> None:
    singular = KINDS[coll][0]
    mine = world.ids["alice"][coll]
    for item in (ok(world.alice.get(f"/{coll}/{mine}"), 200)[singular],
                 next(i for i in ok(world.alice.get(f"/{coll}"), 200)[singular + "s"] if i["id"] == mine),
                 ok(world.alice.put(f"/{coll}/{mine}", json={singular: {"name": "renamed"}}), 200)[singular]):
        assert not set(hidden) & set(item), item
        assert set(shown) <= set(item), item
    asked = ok(world.alice.get(f"/{coll}/{mine}", params={"fields": [hidden[0], "id"]}), 200)[singular]
    assert asked == {"id": mine}
    full = ok(world.admin.get(f"/{coll}/{mine}"), 200)[singular]
    assert set(hidden) <= set(full)  # the admin reads them


def test_the_external_networks_provider_attributes_are_the_admins_only(world: World) -> None:
    ext = world.ids["admin"]["external"]
    seen = ok(world.alice.get(f"/networks/{ext}"), 200)["network"]
    assert seen["router:external"] is True and "provider:network_type" not in seen
    assert ok(world.admin.get(f"/networks/{ext}"), 200)["network"]["provider:physical_network"] == "public"


# -- agents and quotas ---------------------------------------------------------------------------------

def test_agents_are_the_admins_only(world: World) -> None:
    agents = ok(world.admin.get("/agents"), 200)["agents"]
    assert agents, "the admin lists the agents"
    aid = agents[0]["id"]
    for c in (world.alice, world.rita):
        assert ok(c.get("/agents"), 200)["agents"] == []  # Neutron filters the listing to nothing
        neutron_error(c.get(f"/agents/{aid}"), 404, "HTTPNotFound")
        neutron_error(c.put(f"/agents/{aid}", json={"agent": {"admin_state_up": False}}), 404, "HTTPNotFound")
        neutron_error(c.delete(f"/agents/{aid}"), 404, "HTTPNotFound")
    assert ok(world.admin.get(f"/agents/{aid}"), 200)["agent"]["admin_state_up"] is True


def test_quotas_of_another_project_are_the_admins_only(world: World) -> None:
    demo, other = world.projects["demo"], world.projects["other"]
    assert ok(world.alice.get(f"/quotas/{demo}"), 200)["quota"]["network"] >= 1  # its own
    assert ok(world.alice.get(f"/quotas/{demo}/details"), 200)["quota"]["network"]["used"] >= 1
    for path in (f"/quotas/{other}", f"/quotas/{other}/details", f"/quotas/{other}/default", "/quotas"):
        err = neutron_error(world.alice.get(path), 403, "PolicyNotAuthorized")
        assert err["message"] == "rule:get_quota is disallowed by policy", err
    for c in (world.alice, world.bob):
        neutron_error(c.put(f"/quotas/{demo}", json={"quota": {"network": 1000}}), 403, "PolicyNotAuthorized")
        neutron_error(c.delete(f"/quotas/{demo}"), 403, "PolicyNotAuthorized")
    assert ok(world.admin.get(f"/quotas/{other}"), 200)["quota"]["network"] != 1000
    assert ok(world.admin.put(f"/quotas/{other}", json={"quota": {"network": 40}}), 200)["quota"]["network"] == 40
    assert any(q["project_id"] == other for q in ok(world.admin.get("/quotas"), 200)["quotas"])
    ok(world.admin.delete(f"/quotas/{other}"), 204)


# -- the admin, and a shared network ----------------------------------------------------------------------

@pytest.mark.parametrize("coll", list(KINDS))
def test_the_admin_sees_and_changes_every_projects_resources(world: World, coll: str) -> None:
    singular = KINDS[coll][0]
    theirs = world.ids["bob"][coll]
    assert theirs in {i["id"] for i in ok(world.admin.get(f"/{coll}"), 200)[singular + "s"]}
    assert ok(world.admin.get(f"/{coll}/{theirs}"), 200)[singular]["project_id"] == world.projects["other"]
    if coll != "security-group-rules":  # rules have nothing to update, for anyone
        r = world.admin.put(f"/{coll}/{theirs}", json={singular: UPDATES[coll]})
        assert ok(r, 200)[singular]["id"] == theirs


def test_the_admin_sets_admin_only_attributes(world: World) -> None:
    net = ok(world.admin.post("/networks", json={"network": {
        "name": "prov", "provider:network_type": "vxlan", "provider:segmentation_id": 777,
        "project_id": world.projects["other"]}}))["network"]
    assert net["provider:segmentation_id"] == 777 and net["project_id"] == world.projects["other"]
    assert "provider:segmentation_id" not in ok(world.bob.get(f"/networks/{net['id']}"), 200)["network"]
    port = ok(world.admin.post("/ports", json={"port": {"network_id": net["id"],
                                                        "binding:host_id": "controller"}}))["port"]
    assert port["binding:host_id"] == "controller"
    ok(world.admin.delete(f"/ports/{port['id']}"), 204)
    ok(world.admin.delete(f"/networks/{net['id']}"), 204)


def test_a_member_uses_a_shared_network(world: World) -> None:
    shared = world.ids["admin"]["shared"]
    nets = {n["id"]: n for n in ok(world.alice.get("/networks"), 200)["networks"]}
    assert nets[shared]["shared"] is True
    subnets = ok(world.alice.get("/subnets", params={"network_id": shared}), 200)["subnets"]
    assert [s["cidr"] for s in subnets] == ["10.50.0.0/24"]
    port = ok(world.alice.post("/ports", json={"port": {"network_id": shared}}))["port"]
    assert port["project_id"] == world.projects["demo"]
    assert port["fixed_ips"][0]["subnet_id"] == subnets[0]["id"]
    # but not choose its address or MAC there (the network owner's, create_port:fixed_ips:ip_address...)
    err = neutron_error(world.alice.post("/ports", json={"port": {"network_id": shared, "fixed_ips": [
        {"ip_address": "10.50.0.50"}]}}), 403, "PolicyNotAuthorized")
    assert err["message"] == ("(rule:create_port and rule:create_port:fixed_ips:ip_address) is disallowed by "
                              "policy")
    neutron_error(world.alice.post("/ports", json={"port": {"network_id": shared, "mac_address": "fa:16:3e:12:34:56"}}),
                  403, "PolicyNotAuthorized")
    own = ok(world.alice.post("/ports", json={"port": {"network_id": world.ids["alice"]["networks"], "fixed_ips": [
        {"ip_address": "10.1.0.50"}], "mac_address": "fa:16:3e:12:34:56"}}))["port"]  # on its own network it may
    assert own["fixed_ips"][0]["ip_address"] == "10.1.0.50"
    ok(world.alice.delete(f"/ports/{own['id']}"), 204)
    # nor change it, nor see the other projects' ports on it
    neutron_error(world.alice.put(f"/networks/{shared}", json={"network": {"name": "mine"}}), 403,
                  "PolicyNotAuthorized")
    neutron_error(world.alice.delete(f"/networks/{shared}"), 403, "PolicyNotAuthorized")
    err = neutron_error(world.alice.put(f"/networks/{shared}/tags/mine"), 403, "PolicyNotAuthorized")
    assert err["message"] == "rule:update_network:tags is disallowed by policy"
    assert ok(world.admin.get(f"/networks/{shared}"), 200)["network"]["tags"] == []
    bobs = ok(world.bob.post("/ports", json={"port": {"network_id": shared}}))["port"]["id"]
    assert bobs not in {p["id"] for p in ok(world.alice.get("/ports", params={"network_id": shared}),
                                            200)["ports"]}
    ok(world.alice.delete(f"/ports/{port['id']}"), 204)
    ok(world.bob.delete(f"/ports/{bobs}"), 204)
