"""RBAC policies as Neutron has them: sharing a network or a security group with one project (or
every project), what the target then sees and may use, and what it may not (the owner's policies,
removing a policy it still depends on). In process (Starlette's test client) with Keystone tokens of
three projects, and once with the real openstack CLI against a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.api.api_helpers import AppUser, password_token, scenario_app, start_server, stop_server

SCENARIO = """\
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:1000"]}
hosts:
  - {name: controller, roles: [controller, network, compute], management_ip: 10.0.0.1, tunnel_ip: 10.0.0.1}
identity:
  projects: [admin, alpha, beta, gamma]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
    - {name: anna, password: secret, project: alpha, roles: [member, reader]}
    - {name: ben, password: secret, project: beta, roles: [member, reader]}
    - {name: gus, password: secret, project: gamma, roles: [member, reader]}
"""


class User(AppUser):
    def make(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        plural = "rbac-policies" if kind == "rbac_policy" else kind.replace("_", "-") + "s"
        return dict(self.call("POST", f"/{plural}", {kind: body}, 201)[kind])

    def error(self, method: str, path: str, body: Any, status: int) -> dict[str, Any]:
        err = self.call(method, path, body, status)["NeutronError"]
        assert set(err) == {"type", "message", "detail"}
        return dict(err)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with scenario_app(tmp_path_factory.mktemp("rbac"), "rbac", SCENARIO) as c:
        yield c


@pytest.fixture(scope="module")
def users(app: TestClient) -> dict[str, User]:
    return {"admin": User(app, "admin", "admin"), "a": User(app, "anna", "alpha"), "b": User(app, "ben", "beta"),
            "g": User(app, "gus", "gamma")}


def _net(u: User, name: str, cidr: str, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    net = u.make("network", {"name": name, **extra})
    sub = u.make("subnet", {"network_id": net["id"], "ip_version": 4, "cidr": cidr})
    return net, sub


def _share(u: User, net_id: str, target: str, action: str = "access_as_shared",
           object_type: str = "network") -> dict[str, Any]:
    return u.make("rbac_policy", {"object_type": object_type, "object_id": net_id, "action": action,
                                  "target_tenant": target})


def test_extensions_listed(users: dict[str, User]) -> None:
    aliases = {e["alias"] for e in users["a"].call("GET", "/extensions", status=200)["extensions"]}
    assert {"rbac-policies", "rbac-security-groups", "network-ip-availability"} <= aliases


def test_a_network_shared_with_one_project(users: dict[str, User]) -> None:
    a, b, g, admin = users["a"], users["b"], users["g"], users["admin"]
    net, sub = _net(a, "a-net", "10.40.0.0/24")
    # not shared yet: beta neither sees it nor can put a port on it
    assert b.error("GET", f"/networks/{net['id']}", None, 404)["type"] == "NetworkNotFound"
    assert b.error("POST", "/ports", {"port": {"network_id": net["id"]}}, 404)["type"] == "NetworkNotFound"
    pol = _share(a, net["id"], b.project)
    assert pol == {"id": pol["id"], "project_id": a.project, "tenant_id": a.project, "object_type": "network",
                   "object_id": net["id"], "action": "access_as_shared", "target_tenant": b.project}
    # beta sees it (shared for beta, as Neutron's per-caller 'shared'), its subnet, and makes a port on it
    seen = b.call("GET", f"/networks/{net['id']}", status=200)["network"]
    assert seen["shared"] is True and seen["subnets"] == [sub["id"]]
    assert net["id"] in [n["id"] for n in b.call("GET", "/networks", status=200)["networks"]]
    assert b.call("GET", f"/subnets/{sub['id']}", status=200)["subnet"]["cidr"] == "10.40.0.0/24"
    port = b.make("port", {"network_id": net["id"]})
    assert port["project_id"] == b.project and port["fixed_ips"][0]["subnet_id"] == sub["id"]
    # the owner's view: not shared with everyone, so 'shared' is false for alpha; the revision moved
    mine = a.call("GET", f"/networks/{net['id']}", status=200)["network"]
    assert mine["shared"] is False and mine["revision_number"] > net["revision_number"]
    # gamma still sees nothing; beta may not change or delete alpha's network
    assert g.error("GET", f"/networks/{net['id']}", None, 404)["type"] == "NetworkNotFound"
    assert b.error("PUT", f"/networks/{net['id']}", {"network": {"name": "x"}}, 403)["type"] == \
        "PolicyNotAuthorized"
    assert b.error("DELETE", f"/networks/{net['id']}", None, 403)["type"] == "PolicyNotAuthorized"
    # beta's port holds the policy: neither deleted nor re-targeted while it is there
    err = a.error("DELETE", f"/rbac-policies/{pol['id']}", None, 409)
    assert err["type"] == "RbacPolicyInUse"
    assert err["message"].startswith(f"RBAC policy on object {net['id']} cannot be removed because other "
                                     "objects depend on it.")
    assert a.error("PUT", f"/rbac-policies/{pol['id']}", {"rbac_policy": {"target_tenant": g.project}},
                   409)["type"] == "RbacPolicyInUse"
    # a duplicate is a conflict
    assert a.error("POST", "/rbac-policies", {"rbac_policy": {
        "object_type": "network", "object_id": net["id"], "action": "access_as_shared",
        "target_tenant": b.project}}, 409)["type"] == "DuplicateRbacPolicy"
    # the port gone, the policy goes, and beta loses the network
    b.call("DELETE", f"/ports/{port['id']}", status=204)
    a.call("DELETE", f"/rbac-policies/{pol['id']}", status=204)
    assert b.error("GET", f"/networks/{net['id']}", None, 404)["type"] == "NetworkNotFound"
    assert admin.error("GET", f"/rbac-policies/{pol['id']}", None, 404)["type"] == "RbacPolicyNotFound"


def test_policies_are_the_owners(users: dict[str, User]) -> None:
    a, b, g, admin = users["a"], users["b"], users["g"], users["admin"]
    net, _ = _net(a, "a-net2", "10.41.0.0/24")
    pol = _share(a, net["id"], b.project)
    # the target does not see the policy that shares with it (Neutron's get_rbac_policy: the owner's)
    assert pol["id"] in [p["id"] for p in a.call("GET", "/rbac-policies", status=200)["rbac_policies"]]
    assert pol["id"] not in [p["id"] for p in b.call("GET", "/rbac-policies", status=200)["rbac_policies"]]
    assert b.error("GET", f"/rbac-policies/{pol['id']}", None, 404)["type"] == "RbacPolicyNotFound"
    assert b.error("DELETE", f"/rbac-policies/{pol['id']}", None, 404)["type"] == "RbacPolicyNotFound"
    assert pol["id"] in [p["id"] for p in admin.call("GET", "/rbac-policies", status=200)["rbac_policies"]]
    # filters and fields
    got = a.call("GET", f"/rbac-policies?object_id={net['id']}&fields=id&fields=action", status=200)
    assert got["rbac_policies"] == [{"id": pol["id"], "action": "access_as_shared"}]
    # beta, which sees the network, may not share it further (Neutron: 400, only the owner or admin)
    err = b.error("POST", "/rbac-policies", {"rbac_policy": {
        "object_type": "network", "object_id": net["id"], "action": "access_as_shared",
        "target_tenant": g.project}}, 400)
    assert "Only admins can manipulate policies on networks they do not own" in err["message"]
    # gamma, which does not see it, neither
    assert g.error("POST", "/rbac-policies", {"rbac_policy": {
        "object_type": "network", "object_id": net["id"], "action": "access_as_shared",
        "target_tenant": g.project}}, 400)["type"] == "InvalidInput"
    # only an admin shares with everyone ('*'), on create and on update
    assert a.error("POST", "/rbac-policies", {"rbac_policy": {
        "object_type": "network", "object_id": net["id"], "action": "access_as_shared",
        "target_tenant": "*"}}, 403)["type"] == "PolicyNotAuthorized"
    assert a.error("PUT", f"/rbac-policies/{pol['id']}", {"rbac_policy": {"target_tenant": "*"}},
                   403)["type"] == "PolicyNotAuthorized"
    # re-targeting: only target_tenant changes, nothing else does
    moved = a.call("PUT", f"/rbac-policies/{pol['id']}", {"rbac_policy": {"target_tenant": g.project}},
                   200)["rbac_policy"]
    assert moved == {**pol, "target_tenant": g.project}
    assert g.call("GET", f"/networks/{net['id']}", status=200)["network"]["id"] == net["id"]
    assert b.error("GET", f"/networks/{net['id']}", None, 404)["type"] == "NetworkNotFound"
    assert a.error("PUT", f"/rbac-policies/{pol['id']}", {"rbac_policy": {"action": "access_as_external"}},
                   400)["message"] == "Cannot update read-only attribute action"


@pytest.mark.parametrize(("body", "message"), [
    ({"object_type": "router", "action": "access_as_shared", "target_tenant": "*"},
     "Invalid input for operation: 'router' is not a valid RBAC object type."),
    ({"object_type": "network", "action": "access_as_shared", "target_tenant": "1234" * 100},
     "Invalid input for target_tenant. Reason: '" + "1234" * 100 + "' is not a valid target project ID; "
     "expected a UUID or '*'."),
    ({"object_type": "network", "action": "access_as_shared", "target_tenant": None},
     "Invalid input for target_tenant. Reason: 'None' is not a valid target project ID; expected a UUID or "
     "'*'."),
    ({"object_type": "network", "action": "steal", "target_tenant": "*"},
     "Invalid action 'steal' for object type 'network'. Valid actions: ('access_as_shared', "
     "'access_as_external')"),
    ({"object_type": "security_group", "action": "access_as_external", "target_tenant": "*"},
     "Invalid action 'access_as_external' for object type 'security_group'. Valid actions: "
     "('access_as_shared',)"),
    ({"object_type": "network", "object_id": "nope", "action": "access_as_shared", "target_tenant": "*"},
     "Invalid input for object_id. Reason: 'nope' is not a valid UUID."),
    ({"object_type": "network", "action": "access_as_shared"},
     "Failed to parse request. Required attribute 'target_tenant' not specified"),
    ({"object_type": [[]], "action": "access_as_shared", "target_tenant": "*"},  # the fuzzer's 500
     "Invalid input for operation: '[[]]' is not a valid RBAC object type."),
], ids=["object-type", "target-too-long", "target-none", "action", "sg-external", "object-id", "no-target",
        "object-type-list"])
def test_validation(users: dict[str, User], body: dict[str, Any], message: str) -> None:
    admin = users["admin"]
    net = admin.make("network", {"name": "v"})
    err = admin.error("POST", "/rbac-policies", {"rbac_policy": {"object_id": net["id"], **body}}, 400)
    assert err["message"] == message


def test_shared_flag_is_the_wildcard_policy(users: dict[str, User]) -> None:
    a, b, admin = users["a"], users["b"], users["admin"]
    net = admin.make("network", {"name": "pub", "shared": True})
    assert net["shared"] is True
    wild = admin.call("GET", f"/rbac-policies?object_id={net['id']}", status=200)["rbac_policies"]
    assert [(p["action"], p["target_tenant"]) for p in wild] == [("access_as_shared", "*")]
    admin.make("subnet", {"network_id": net["id"], "ip_version": 4, "cidr": "10.42.0.0/24"})
    assert b.call("GET", f"/networks/{net['id']}", status=200)["network"]["shared"] is True
    port = b.make("port", {"network_id": net["id"]})
    # shared=False is refused while beta's port depends on the wildcard ...
    err = admin.error("PUT", f"/networks/{net['id']}", {"network": {"shared": False}}, 409)
    assert err == {"type": "InvalidSharedSetting", "detail": "",
                   "message": "Unable to reconfigure sharing settings for network pub. Multiple projects are "
                              "using it."}
    assert admin.error("DELETE", f"/rbac-policies/{wild[0]['id']}", None, 409)["type"] == "RbacPolicyInUse"
    # ... unless beta keeps access by a policy of its own
    _share(admin, net["id"], b.project)
    assert admin.call("PUT", f"/networks/{net['id']}", {"network": {"shared": False}}, 200)["network"][
        "shared"] is False
    assert [p["target_tenant"] for p in admin.call(
        "GET", f"/rbac-policies?object_id={net['id']}", status=200)["rbac_policies"]] == [b.project]
    assert b.call("GET", f"/networks/{net['id']}", status=200)["network"]["shared"] is True
    assert a.error("GET", f"/networks/{net['id']}", None, 404)["type"] == "NetworkNotFound"
    # shared filter of the admin's listing: the wildcard is gone
    ids = [n["id"] for n in admin.call("GET", "/networks?shared=false", status=200)["networks"]]
    assert net["id"] in ids
    b.call("DELETE", f"/ports/{port['id']}", status=204)
    # a wildcard policy made by hand is 'shared' too
    pol = _share(admin, net["id"], "*")
    assert a.call("GET", f"/networks/{net['id']}", status=200)["network"]["shared"] is True
    admin.call("DELETE", f"/rbac-policies/{pol['id']}", status=204)
    assert admin.call("GET", f"/networks/{net['id']}", status=200)["network"]["shared"] is False


def test_external_by_policy(users: dict[str, User]) -> None:
    a, b, admin = users["a"], users["b"], users["admin"]
    ext = admin.make("network", {"name": "ext", "router:external": True})
    pols = admin.call("GET", f"/rbac-policies?object_id={ext['id']}", status=200)["rbac_policies"]
    assert [(p["action"], p["target_tenant"]) for p in pols] == [("access_as_external", "*")]
    assert a.call("GET", f"/networks/{ext['id']}", status=200)["network"]["router:external"] is True
    # external for one project only: admin's network made external by a policy for alpha
    net = admin.make("network", {"name": "ext-alpha"})
    assert net["router:external"] is False
    pol = _share(admin, net["id"], a.project, "access_as_external")
    assert a.call("GET", f"/networks/{net['id']}", status=200)["network"]["router:external"] is True
    assert b.error("GET", f"/networks/{net['id']}", None, 404)["type"] == "NetworkNotFound"
    # alpha's router on it holds the policy
    admin.make("subnet", {"network_id": net["id"], "ip_version": 4, "cidr": "172.30.0.0/24"})
    router = a.make("router", {"name": "r", "external_gateway_info": {"network_id": net["id"]}})
    assert router["external_gateway_info"]["network_id"] == net["id"]
    assert admin.error("DELETE", f"/rbac-policies/{pol['id']}", None, 409)["message"].endswith(
        "Details: There are routers attached to this network that depend on this policy for access.")
    a.call("DELETE", f"/routers/{router['id']}", status=204)
    admin.call("DELETE", f"/rbac-policies/{pol['id']}", status=204)
    assert admin.call("GET", f"/networks/{net['id']}", status=200)["network"]["router:external"] is False
    # the default external network stays external to everyone
    assert admin.call("PUT", f"/networks/{ext['id']}", {"network": {"is_default": True}}, 200)["network"][
        "is_default"] is True
    assert a.call("GET", f"/networks/{ext['id']}", status=200)["network"]["is_default"] is True
    err = admin.error("DELETE", f"/rbac-policies/{pols[0]['id']}", None, 409)
    assert err["type"] == "RbacPolicyInUse" and err["message"].endswith(
        "Details: Default external networks must be shared to everyone.")
    other = admin.make("network", {"name": "ext2", "router:external": True})
    assert admin.error("PUT", f"/networks/{other['id']}", {"network": {"is_default": True}}, 409)["type"] == \
        "DefaultExternalNetworkExists"
    admin.call("PUT", f"/networks/{ext['id']}", {"network": {"is_default": False}}, 200)
    # router:external false removes the policies
    admin.call("PUT", f"/networks/{ext['id']}", {"network": {"router:external": False}}, 200)
    assert admin.call("GET", f"/rbac-policies?object_id={ext['id']}", status=200)["rbac_policies"] == []


def test_a_security_group_shared_with_a_project(users: dict[str, User]) -> None:
    a, b, g = users["a"], users["b"], users["g"]
    sg = a.make("security_group", {"name": "web"})
    net = _share_net_for_ports(users)
    assert b.error("GET", f"/security-groups/{sg['id']}", None, 404)["type"] == "SecurityGroupNotFound"
    assert b.error("POST", "/ports", {"port": {"network_id": net, "security_groups": [sg["id"]]}},
                   404)["type"] == "SecurityGroupNotFound"
    pol = _share(a, sg["id"], b.project, object_type="security_group")
    got = b.call("GET", f"/security-groups/{sg['id']}", status=200)["security_group"]
    assert got["shared"] is True and got["name"] == "web"
    assert sg["id"] in [s["id"] for s in b.call("GET", "/security-groups", status=200)["security_groups"]]
    assert sg["id"] not in [s["id"] for s in g.call("GET", "/security-groups", status=200)["security_groups"]]
    port = b.make("port", {"network_id": net, "security_groups": [sg["id"]]})
    assert port["security_groups"] == [sg["id"]]
    # used by beta's port: the policy stays; beta may not change alpha's group
    assert a.error("DELETE", f"/rbac-policies/{pol['id']}", None, 409)["message"].endswith(
        f"Details: project_id={b.project}")
    assert b.error("PUT", f"/security-groups/{sg['id']}", {"security_group": {"name": "mine"}},
                   403)["type"] == "PolicyNotAuthorized"
    b.call("PUT", f"/ports/{port['id']}", {"port": {"security_groups": []}}, 200)
    a.call("DELETE", f"/rbac-policies/{pol['id']}", status=204)
    assert b.error("GET", f"/security-groups/{sg['id']}", None, 404)["type"] == "SecurityGroupNotFound"


def _share_net_for_ports(users: dict[str, User]) -> str:
    net, _ = _net(users["b"], "b-net", "10.43.0.0/24")
    return str(net["id"])


def test_rbac_policy_quota(users: dict[str, User]) -> None:
    admin, a = users["admin"], users["a"]
    net = a.make("network", {"name": "many"})
    assert admin.call("GET", f"/quotas/{a.project}", status=200)["quota"]["rbac_policy"] == 10
    made = 0
    for _ in range(11):
        r = a.c.post("/v2.0/rbac-policies", headers=a.headers, json={"rbac_policy": {
            "object_type": "network", "object_id": net["id"], "action": "access_as_shared",
            "target_tenant": uuid.uuid4().hex}})
        if r.status_code != 201:
            assert r.status_code == 409 and r.json()["NeutronError"]["type"] == "OverQuota", r.text
            break
        made += 1
    mine = [p for p in a.call("GET", "/rbac-policies", status=200)["rbac_policies"]]
    assert made == 10 - (len(mine) - made)
    # deleting the network takes its policies with it
    a.call("DELETE", f"/networks/{net['id']}", status=204)
    assert a.call("GET", f"/rbac-policies?object_id={net['id']}", status=200)["rbac_policies"] == []


# -- the real openstack CLI, and the plumbing of a shared network ------------------------------------

UP = """\
name: rbac-up
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:1000"],
             firewall_driver: iptables_hybrid, generation: modern}
hosts:
  - {name: controller, roles: [controller, network], management_ip: 10.0.0.1, tunnel_ip: 10.0.0.1}
  - {name: compute1, roles: [compute], management_ip: 10.0.0.11, tunnel_ip: 10.0.0.11}
identity:
  projects: [admin, demo]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
    - {name: dora, password: secret, project: demo, roles: [member, reader]}
resources:
  networks:
    - name: private
      subnets: [{name: private-subnet, cidr: 10.1.0.0/24}]
  security_group_rules:
    - {group: default, direction: ingress, protocol: icmp}
  servers:
    - {name: vm-admin, image: cirros, flavor: "1", networks: [private], host: compute1}
"""


def test_an_instance_of_the_target_project_on_the_shared_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """admin's network shared with demo by ``openstack network rbac create``; demo boots a server
    on it; the two instances are planned on the same network and ping each other's way."""
    from neutrino import worldkeep
    from neutrino.cli import main
    from neutrino.deploy import cloud_record, replan

    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    (tmp_path / "up.yaml").write_text(UP)
    assert main(["up", str(tmp_path / "up.yaml")]) == 0
    capsys.readouterr()
    server = start_server(tmp_path, cloud_record(state)["db"], scenario=tmp_path / "up.yaml")
    try:
        dora = {"X-Auth-Token": password_token(server.base, "dora", "demo")}
        demo = httpx.get(f"{server.base}/identity/v3/auth/tokens",
                         headers={**dora, "X-Subject-Token": dora["X-Auth-Token"]}).json()["token"]["project"]["id"]
        net = httpx.get(f"{server.base}/v2.0/networks", params={"name": "private"},
                        headers={"X-Auth-Token": server.token()}).json()["networks"][0]
        image = httpx.get(f"{server.base}/image/v2/images", headers=dora).json()["images"][0]["id"]
        boot = {"server": {"name": "vm-demo", "imageRef": image, "flavorRef": "1",
                           "networks": [{"uuid": net["id"]}]}}
        # not shared: demo cannot boot on it
        r = httpx.post(f"{server.base}/compute/v2.1/servers", json=boot, headers=dora, timeout=60)
        assert r.status_code in (400, 404) and f"Network {net['id']} could not be found" in r.text, r.text
        pol = server.osc("network", "rbac", "create", "--type", "network", "--action", "access_as_shared",
                         "--target-project", demo, "private", "-f", "json")
        assert (pol["object_id"], pol["target_project_id"]) == (net["id"], demo)
        listed = httpx.get(f"{server.base}/v2.0/rbac-policies", headers={"X-Auth-Token": server.token()})
        assert [p["id"] for p in listed.json()["rbac_policies"]] == [pol["id"]]
        r = httpx.post(f"{server.base}/compute/v2.1/servers", json=boot, headers=dora, timeout=60)
        assert r.status_code == 202, r.text
        ports = httpx.get(f"{server.base}/v2.0/ports", params={"device_id": r.json()["server"]["id"]},
                          headers=dora).json()["ports"]
        assert [p["network_id"] for p in ports] == [net["id"]] and ports[0]["project_id"] == demo
        demo_ip = ports[0]["fixed_ips"][0]["ip_address"]
        # with no network named, Nova takes the project's networks and those shared with it
        auto = {"server": {"name": "vm-auto", "imageRef": image, "flavorRef": "1"}}
        r = httpx.post(f"{server.base}/compute/v2.1/servers", json=auto, headers=dora, timeout=60)
        assert r.status_code == 202, r.text
        ports = httpx.get(f"{server.base}/v2.0/ports", params={"device_id": r.json()["server"]["id"]},
                          headers=dora).json()["ports"]
        assert [p["network_id"] for p in ports] == [net["id"]]
        # the policy the server's port depends on cannot go
        p = server.osc("network", "rbac", "delete", pol["id"], check=False)
        assert p.returncode != 0 and "RBAC policy on object" in p.stderr
    finally:
        stop_server(server)
    replan(state)
    worldkeep.invalidate(state)
    capsys.readouterr()
    # demo's instance reaches admin's (admin's default group lets ICMP in) ...
    assert main(["ping", "vm-demo", "vm-admin"]) == 0
    out = capsys.readouterr().out
    assert "vm-demo" in out
    # ... and admin's does not reach demo's: demo's default group admits only its own members
    assert main(["ping", "vm-admin", demo_ip]) == 1
