"""Keystone's identity management, as Tempest's dynamic credentials use it (issue 19): an admin
creates a project and a user, assigns a role, and that user's token works on Neutron; management
is admin only (403 in Keystone's shape), duplicates are 409, role assignments list with their
filters, and a deleted project's tokens stop working. Through httpx, openstacksdk and the
``openstack`` CLI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openstack
import pytest
from openstack.config import loader

from tests.api.api_helpers import Server, shape_problem, start_server, stop_server

SCENARIO = """\
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan]}
hosts:
  - {name: controller, roles: [controller, network, compute], management_ip: 192.168.51.10, tunnel_ip: 192.168.51.10}
identity:
  projects: [admin, demo]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
    - {name: alice, password: a-secret, project: demo, roles: [member, reader]}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("keystone")
    scenario = tmp / "keystone.yaml"
    scenario.write_text(SCENARIO)
    server = start_server(tmp, f"sqlite:///{tmp / 'keystone.db'}", scenario=scenario)
    try:
        yield server
    finally:
        stop_server(server)


def token(base: str, user: str, password: str, project: str | None) -> httpx.Response:
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}}}}
    if project is not None:
        body["auth"]["scope"] = {"project": {"name": project, "domain": {"name": "Default"}}}
    return httpx.post(f"{base}/identity/v3/auth/tokens", json=body)


def client(base: str, tok: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"X-Auth-Token": tok}, timeout=30)


def admin(srv: Server) -> httpx.Client:
    return client(srv.base, srv.token())


def test_cli_dynamic_credentials_work_on_neutron(srv: Server) -> None:
    """What Tempest's dynamic credentials do, with the openstack CLI: project, user, role, then
    that user's token creates a network in that project."""
    project = srv.osc("project", "create", "--domain", "default", "--description", "tempest", "tempest-p1",
                      "-f", "json")
    assert project["name"] == "tempest-p1" and project["domain_id"] == "default" and project["enabled"] is True
    user = srv.osc("user", "create", "--domain", "default", "--project", "tempest-p1", "--password", "pw-1",
                   "tempest-u1", "-f", "json")
    assert user["default_project_id"] == project["id"]
    srv.osc("role", "add", "--project", "tempest-p1", "--user", "tempest-u1", "member")
    listed = srv.osc("role", "assignment", "list", "--user", "tempest-u1", "--project", "tempest-p1", "--names",
                     "-f", "json")
    assert [(a["Role"], a["User"], a["Project"]) for a in listed] == [("member", "tempest-u1@Default",
                                                                      "tempest-p1@Default")]
    assert "tempest-p1" in {p["Name"] for p in srv.osc("project", "list", "-f", "json")}

    r = token(srv.base, "tempest-u1", "pw-1", "tempest-p1")
    assert r.status_code == 201, r.text
    tok = r.json()["token"]
    assert tok["project"]["id"] == project["id"]
    assert sorted(x["name"] for x in tok["roles"]) == ["member", "reader"]  # member implies reader
    with client(srv.base, r.headers["X-Subject-Token"]) as c:
        made = c.post("/v2.0/networks", json={"network": {"name": "dyn-net"}})
        assert made.status_code == 201, made.text
        assert made.json()["network"]["project_id"] == project["id"]
        assert [n["name"] for n in c.get("/v2.0/networks").json()["networks"]] == ["dyn-net"]
        assert c.delete(f"/v2.0/networks/{made.json()['network']['id']}").status_code == 204

    # the project goes: its tokens stop working, and no new token is issued for it
    srv.osc("project", "delete", "tempest-p1")
    with client(srv.base, r.headers["X-Subject-Token"]) as c:
        gone = c.get("/v2.0/networks")
    assert gone.status_code == 401, gone.text
    assert token(srv.base, "tempest-u1", "pw-1", "tempest-p1").status_code == 401
    assert "tempest-p1" not in {p["Name"] for p in srv.osc("project", "list", "-f", "json")}
    srv.osc("user", "delete", "tempest-u1")
    assert token(srv.base, "tempest-u1", "pw-1", None).status_code == 401


def test_sdk_identity_workflow(srv: Server) -> None:
    cfg = loader.OpenStackConfig(config_files=[str(srv.clouds_yaml)], load_envvars=False)
    conn = openstack.connection.Connection(config=cfg.get_one(cloud="neutrino"))
    try:
        project = conn.identity.create_project(name="sdk-p", domain_id="default", description="from the sdk")
        user = conn.identity.create_user(name="sdk-u", password="sdk-pw", default_project_id=project.id,
                                         domain_id="default")
        member = conn.identity.find_role("member")
        assert member is not None
        conn.identity.assign_project_role_to_user(project, user, member)
        assert conn.identity.validate_user_has_project_role(project, user, member)
        assert conn.identity.get_project(project.id).description == "from the sdk"
        conn.identity.update_project(project, description="changed")
        assert conn.identity.get_project(project.id).description == "changed"
        assigned = list(conn.identity.role_assignments(user_id=user.id, scope_project_id=project.id))
        assert [a.role["id"] for a in assigned] == [member.id]
        conn.identity.unassign_project_role_from_user(project, user, member)
        assert not conn.identity.validate_user_has_project_role(project, user, member)
        assert token(srv.base, "sdk-u", "sdk-pw", "sdk-p").status_code == 401  # no role any more
        conn.identity.delete_user(user)
        conn.identity.delete_project(project)
        assert conn.identity.find_project("sdk-p") is None
    finally:
        conn.close()


def test_duplicates_are_409(srv: Server) -> None:
    with admin(srv) as c:
        first = c.post("/identity/v3/projects", json={"project": {"name": "dup-p"}})
        assert first.status_code == 201, first.text
        again = c.post("/identity/v3/projects", json={"project": {"name": "dup-p", "domain_id": "default"}})
        assert again.status_code == 409, again.text
        assert shape_problem("/identity", 409, again.json()) is None
        assert "it is not permitted to have two projects with either the same name or same id in the same " \
               "domain: name is dup-p" in again.json()["error"]["message"]
        u = c.post("/identity/v3/users", json={"user": {"name": "dup-u", "password": "x"}})
        assert u.status_code == 201, u.text
        u2 = c.post("/identity/v3/users", json={"user": {"name": "dup-u"}})
        assert u2.status_code == 409 and "Duplicate entry found with name dup-u at domain ID default" in u2.text
        assert c.post("/identity/v3/roles", json={"role": {"name": "member"}}).status_code == 409
        # another domain may hold the same project name
        d = c.post("/identity/v3/domains", json={"domain": {"name": "other-domain"}})
        assert d.status_code == 201, d.text
        did = d.json()["domain"]["id"]
        there = c.post("/identity/v3/projects", json={"project": {"name": "dup-p", "domain_id": did}})
        assert there.status_code == 201 and there.json()["project"]["domain_id"] == did
        # an enabled domain cannot be deleted; a disabled one goes with its projects
        refused = c.delete(f"/identity/v3/domains/{did}")
        assert refused.status_code == 403 and "please disable it first" in refused.json()["error"]["message"]
        assert c.patch(f"/identity/v3/domains/{did}", json={"domain": {"enabled": False}}).status_code == 200
        assert c.delete(f"/identity/v3/domains/{did}").status_code == 204
        assert c.get(f"/identity/v3/projects/{there.json()['project']['id']}").status_code == 404
        assert c.delete(f"/identity/v3/projects/{first.json()['project']['id']}").status_code == 204
        assert c.delete(f"/identity/v3/users/{u.json()['user']['id']}").status_code == 204
        missing = c.get("/identity/v3/projects/nope")
        assert missing.status_code == 404 and missing.json()["error"]["message"] == "Could not find project: nope."
        bad = c.post("/identity/v3/projects", json={"project": {"description": "no name"}})
        assert bad.status_code == 400 and shape_problem("/identity", 400, bad.json()) is None


def test_management_is_admin_only(srv: Server) -> None:
    r = token(srv.base, "alice", "a-secret", "demo")
    assert r.status_code == 201
    alice_id = r.json()["token"]["user"]["id"]
    demo_id = r.json()["token"]["project"]["id"]
    with client(srv.base, r.headers["X-Subject-Token"]) as c:
        for method, path, body in [
            ("POST", "/identity/v3/projects", {"project": {"name": "sneaky"}}),
            ("GET", "/identity/v3/projects", None),
            ("POST", "/identity/v3/users", {"user": {"name": "sneaky"}}),
            ("GET", "/identity/v3/users", None),
            ("GET", "/identity/v3/role_assignments", None),
            ("POST", "/identity/v3/roles", {"role": {"name": "sneaky"}}),
            ("DELETE", f"/identity/v3/projects/{demo_id}", None),
        ]:
            got = c.request(method, path, json=body)
            assert got.status_code == 403, (method, path, got.text)
            assert shape_problem("/identity", 403, got.json()) is None
            assert got.json()["error"]["message"].startswith(
                "You are not authorized to perform the requested action: identity:")
        # a user reads itself, its projects and the project its token is on
        me = c.get(f"/identity/v3/users/{alice_id}")
        assert me.status_code == 200 and me.json()["user"]["name"] == "alice"
        assert [p["name"] for p in c.get(f"/identity/v3/users/{alice_id}/projects").json()["projects"]] == ["demo"]
        assert c.get(f"/identity/v3/projects/{demo_id}").json()["project"]["name"] == "demo"
    p = srv.osc("project", "create", "--domain", "default", "cli-403", check=False)  # as admin: fine
    assert p.returncode == 0, p.stderr
    srv.osc("project", "delete", "cli-403")


def test_role_assignments_and_their_filters(srv: Server) -> None:
    with admin(srv) as c:
        p = c.post("/identity/v3/projects", json={"project": {"name": "ra-p"}}).json()["project"]
        u = c.post("/identity/v3/users", json={"user": {"name": "ra-u", "password": "ra-pw",
                                                         "default_project_id": p["id"]}}).json()["user"]
        roles = {r["name"]: r["id"] for r in c.get("/identity/v3/roles").json()["roles"]}
        grant = f"/identity/v3/projects/{p['id']}/users/{u['id']}/roles/{roles['admin']}"
        assert c.head(grant).status_code == 404
        assert c.put(grant).status_code == 204
        assert c.head(grant).status_code == 204
        listed = c.get("/identity/v3/role_assignments", params={"user.id": u["id"]}).json()["role_assignments"]
        assert listed == [{"role": {"id": roles["admin"]}, "user": {"id": u["id"]},
                           "scope": {"project": {"id": p["id"]}},
                           "links": {"assignment": f"{srv.base}/identity/v3/projects/{p['id']}/users/{u['id']}"
                                                   f"/roles/{roles['admin']}"}}]
        eff = c.get("/identity/v3/role_assignments", params={"user.id": u["id"], "scope.project.id": p["id"],
                                                             "effective": "", "include_names": "true"})
        got = {(a["role"]["name"], a["user"]["name"], a["scope"]["project"]["name"])
               for a in eff.json()["role_assignments"]}
        assert got == {("admin", "ra-u", "ra-p"), ("member", "ra-u", "ra-p"), ("reader", "ra-u", "ra-p")}
        by_role = c.get("/identity/v3/role_assignments", params={"role.id": roles["admin"],
                                                                 "scope.project.id": p["id"]})
        assert [a["user"]["id"] for a in by_role.json()["role_assignments"]] == [u["id"]]
        # the user's token carries the roles; removing the assignment revokes it
        r = token(srv.base, "ra-u", "ra-pw", None)  # scoped to its default project
        assert r.status_code == 201 and r.json()["token"]["project"]["id"] == p["id"]
        assert c.delete(grant).status_code == 204
        with client(srv.base, r.headers["X-Subject-Token"]) as uc:
            assert uc.get("/v2.0/networks").status_code == 401
        assert c.delete(grant).status_code == 404
        assert c.delete(f"/identity/v3/users/{u['id']}").status_code == 204
        assert c.delete(f"/identity/v3/projects/{p['id']}").status_code == 204


def test_change_password(srv: Server) -> None:
    with admin(srv) as c:
        p = c.post("/identity/v3/projects", json={"project": {"name": "pw-p"}}).json()["project"]
        u = c.post("/identity/v3/users", json={"user": {"name": "pw-u", "password": "old",
                                                         "default_project_id": p["id"]}}).json()["user"]
        member = c.get("/identity/v3/roles", params={"name": "member"}).json()["roles"][0]["id"]
        assert c.put(f"/identity/v3/projects/{p['id']}/users/{u['id']}/roles/{member}").status_code == 204
    r = token(srv.base, "pw-u", "old", "pw-p")
    assert r.status_code == 201
    with client(srv.base, r.headers["X-Subject-Token"]) as uc:
        wrong = uc.post(f"/identity/v3/users/{u['id']}/password",
                        json={"user": {"password": "new", "original_password": "nope"}})
        assert wrong.status_code == 401
        ok = uc.post(f"/identity/v3/users/{u['id']}/password",
                     json={"user": {"password": "new", "original_password": "old"}})
        assert ok.status_code == 204, ok.text
    assert token(srv.base, "pw-u", "old", "pw-p").status_code == 401
    assert token(srv.base, "pw-u", "new", "pw-p").status_code == 201
    with admin(srv) as c:
        assert c.delete(f"/identity/v3/users/{u['id']}").status_code == 204
        assert c.delete(f"/identity/v3/projects/{p['id']}").status_code == 204
