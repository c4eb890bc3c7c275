"""The compute commands of the real openstack CLI against a real server: a server's security groups,
ports and networks, hypervisors, compute services, availability zones, the console log, and
``server create --host`` at microversion 2.74.

A server per case: Keystone auth on SQLite and on PostgreSQL, and ``--auth noauth`` on SQLite (the
clouds.yaml entry a noauth server writes must be enough for every command). The deployment is a
controller and two compute hosts (``api_helpers.TWO_COMPUTES``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.api_helpers import PgCluster, Server, fresh_database, start_server, stop_server, two_computes

CASES = [pytest.param(("keystone", "sqlite"), id="keystone-sqlite"),
         pytest.param(("keystone", "postgres"), id="keystone-postgres", marks=pytest.mark.postgres),
         pytest.param(("noauth", "sqlite"), id="noauth-sqlite")]


@pytest.fixture(scope="module", params=CASES)
def cli(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    auth, db = request.param
    tmp = tmp_path_factory.mktemp(f"compute-{auth}-{db}")
    base = "sqlite:///unused"
    if db == "postgres":
        pg: PgCluster = request.getfixturevalue("pg_cluster")
        base = pg.url
    url = fresh_database(base, f"compute_{auth}", tmp)
    s = start_server(tmp, url, auth=auth, scenario=two_computes(tmp))
    try:
        yield s
    finally:
        stop_server(s)


class Api:
    """Set-up and checks over HTTP (each openstack CLI run costs two seconds of start-up)."""

    def __init__(self, cli: Server) -> None:
        self.c = httpx.Client(base_url=cli.base, timeout=30, headers={"X-Auth-Token": cli.token(),
                                                                       "OpenStack-API-Version": "compute 2.74"})

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.c.post(path, json=body)
        assert r.status_code in (201, 202), r.text
        return dict(next(iter(r.json().values())))

    def get(self, path: str, **params: Any) -> Any:
        r = self.c.get(path, params=params)
        assert r.status_code == 200, r.text
        return next(iter(r.json().values()))

    def server(self, name: str) -> dict[str, Any]:
        return dict(next(s for s in self.get("/compute/v2.1/servers/detail") if s["name"] == name))

    def ports(self, server_id: str) -> list[dict[str, Any]]:
        return list(self.get("/v2.0/ports", device_id=server_id))


def test_server_compute_commands(cli: Server) -> None:
    osc = cli.osc
    api = Api(cli)
    net1 = api.post("/v2.0/networks", {"network": {"name": "net1"}})
    api.post("/v2.0/subnets", {"subnet": {"network_id": net1["id"], "ip_version": 4, "cidr": "10.5.0.0/24"}})
    net2 = api.post("/v2.0/networks", {"network": {"name": "net2"}})
    api.post("/v2.0/subnets", {"subnet": {"network_id": net2["id"], "ip_version": 4, "cidr": "10.6.0.0/24"}})
    web = api.post("/v2.0/security-groups", {"security_group": {"name": "web"}})
    p2 = api.post("/v2.0/ports", {"port": {"network_id": net2["id"], "name": "p2"}})
    vm = osc("server", "create", "--image", "cirros", "--flavor", "1", "--network", "net1", "vm1", "-f", "json")
    assert vm["status"] == "ACTIVE" and vm["addresses"] == {"net1": ["10.5.0.2"]}
    host = vm["OS-EXT-SRV-ATTR:host"]

    # server add/remove security group: every port of the server gains and loses the group
    osc("server", "add", "security", "group", "vm1", "web")
    assert [g["name"] for g in api.server("vm1")["security_groups"]] == ["default", "web"]
    assert web["id"] in api.ports(vm["id"])[0]["security_groups"]
    osc("server", "remove", "security", "group", "vm1", web["id"])
    assert [g["name"] for g in api.server("vm1")["security_groups"]] == ["default"]
    assert web["id"] not in api.ports(vm["id"])[0]["security_groups"]

    # server add/remove port: the port is bound to the server's host, then released (not deleted)
    osc("server", "add", "port", "vm1", "p2")
    port = api.get(f"/v2.0/ports/{p2['id']}")
    assert (port["device_id"], port["device_owner"], port["binding:host_id"]) == (vm["id"], "compute:nova", host)
    assert set(api.server("vm1")["addresses"]) == {"net1", "net2"}
    osc("server", "remove", "port", "vm1", "p2")
    port = api.get(f"/v2.0/ports/{p2['id']}")
    assert (port["device_id"], port["binding:host_id"]) == ("", "")

    # server add/remove network: Nova makes the port, and deletes it again
    osc("server", "add", "network", "vm1", "net2")
    assert sorted(p["network_id"] for p in api.ports(vm["id"])) == sorted([net1["id"], net2["id"]])
    osc("server", "remove", "network", "vm1", "net2")
    assert [p["network_id"] for p in api.ports(vm["id"])] == [net1["id"]]
    assert [p["id"] for p in api.get("/v2.0/ports", network_id=net2["id"])
            if p["device_owner"].startswith("compute:")] == []

    # hypervisors, compute services, availability zones
    hyps = osc("hypervisor", "list", "--long", "-f", "json")
    assert sorted((h["Hypervisor Hostname"], h["Hypervisor Type"], h["Host IP"], h["State"]) for h in hyps) == [
        ("compute1", "QEMU", "10.0.0.11", "up"), ("compute2", "QEMU", "10.0.0.12", "up")]
    assert {h["Hypervisor Hostname"]: h["vCPUs Used"] for h in hyps} == {
        "compute1": int(host == "compute1"), "compute2": int(host == "compute2")}
    services = osc("compute", "service", "list", "-f", "json")
    assert sorted((s["Binary"], s["Host"], s["Zone"], s["Status"], s["State"]) for s in services) == [
        ("nova-compute", "compute1", "nova", "enabled", "up"), ("nova-compute", "compute2", "nova", "enabled", "up"),
        ("nova-conductor", "controller", "internal", "enabled", "up"),
        ("nova-scheduler", "controller", "internal", "enabled", "up")]
    zones = osc("availability", "zone", "list", "--long", "-f", "json")
    assert {(z["Zone Name"], z["Host Name"], z["Service Name"]) for z in zones if z["Host Name"]} == {
        ("internal", "controller", "nova-scheduler"), ("internal", "controller", "nova-conductor"),
        ("nova", "compute1", "nova-compute"), ("nova", "compute2", "nova-compute")}
    assert {z["Zone Resource"] for z in zones if z["Zone Resource"]} == {"network", "router"}

    # the console log: the guest's boot, with its address, its last lines when asked
    log = osc("console", "log", "show", "vm1")
    assert "lease of 10.5.0.2 obtained" in log and log.rstrip().endswith("vm1 login:")
    assert osc("console", "log", "show", "--lines", "2", "vm1").splitlines() == [
        "login as 'cirros' user. default password: 'gocubsgo'. use 'sudo' for root.", "vm1 login: "]

    # server create --host at 2.74: onto that host, not the one the scheduler would pick (the emptier)
    made = osc("--os-compute-api-version", "2.74", "server", "create", "--image", "cirros", "--flavor", "1",
               "--network", "net1", "--host", host, "vm2", "-f", "json")
    assert made["OS-EXT-SRV-ATTR:host"] == host
    p = osc("--os-compute-api-version", "2.74", "server", "create", "--image", "cirros", "--flavor", "1",
            "--network", "net1", "--host", "nowhere", "vm-x", check=False)
    assert p.returncode != 0 and "Compute host nowhere could not be found." in p.stderr, p.stderr

    osc("server", "delete", "vm1", "vm2")
    assert api.get("/compute/v2.1/servers") == []
    assert [p for p in api.get("/v2.0/ports") if p["device_owner"].startswith("compute:")] == []


def test_microversion_negotiation(cli: Server) -> None:
    """The version document says 2.74; the headers say which version answered."""
    with httpx.Client(base_url=cli.base, timeout=30) as c:
        v = c.get("/compute/v2.1/").json()["version"]
        assert (v["version"], v["min_version"]) == ("2.74", "2.1")
        headers = {"X-Auth-Token": cli.token()}
        for asked, answered in (({}, "2.1"), ({"OpenStack-API-Version": "compute 2.53"}, "2.53"),
                                ({"X-OpenStack-Nova-API-Version": "2.60"}, "2.60"),
                                ({"OpenStack-API-Version": "compute latest"}, "2.74")):
            r = c.get("/compute/v2.1/flavors", headers={**headers, **asked})
            assert r.status_code == 200, r.text
            assert r.headers["OpenStack-API-Version"] == f"compute {answered}"
            assert r.headers["X-OpenStack-Nova-API-Version"] == answered
        r = c.get("/compute/v2.1/flavors", headers={**headers, "OpenStack-API-Version": "compute 2.75"})
        assert r.status_code == 406 and r.json()["computeFault"]["message"].startswith("Version 2.75 is not "), r.text


def test_host_is_for_admins(cli: Server) -> None:
    """``host`` at 2.74 is the admin's (403 for a member, as Nova's policy says); with noauth every
    caller is the admin."""
    with httpx.Client(base_url=cli.base, timeout=30) as c:
        r = c.post("/identity/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": "demo", "password": "secret", "domain": {"name": "Default"}}}},
            "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}}})
        assert r.status_code == 201, r.text
        demo = {"X-Auth-Token": r.headers["X-Subject-Token"], "OpenStack-API-Version": "compute 2.74"}
        image = c.get("/image/v2/images", headers=demo).json()["images"][0]["id"]
        body = {"server": {"name": "vm-demo", "imageRef": image, "flavorRef": "1", "networks": "none",
                           "host": "compute1"}}
        r = c.post("/compute/v2.1/servers", json=body, headers=demo)
        noauth = "auth_url" not in cli.clouds_yaml.read_text()
        if noauth:
            assert r.status_code == 202, r.text
            assert c.delete(f"/compute/v2.1/servers/{r.json()['server']['id']}", headers=demo).status_code == 204
        else:
            assert r.status_code == 403, r.text
            assert r.json() == {"forbidden": {"code": 403, "message": "Policy doesn't allow compute:servers:create:"
                                                                      "requested_destination to be performed."}}
            del body["server"]["host"]
            r = c.post("/compute/v2.1/servers", json=body, headers=demo)
            assert r.status_code == 202, r.text
            assert c.delete(f"/compute/v2.1/servers/{r.json()['server']['id']}", headers=demo).status_code == 204
