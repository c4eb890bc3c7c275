"""Network IP availability as Neutron computes it: per subnet the size of the allocation pools
(IPv6 counts as exact big integers) and the addresses allocated to ports, rolled up per network;
admin only; filters by network, name, project and IP version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.test_rbac import SCENARIO, User


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, User]]:
    from neutrino.api.serve import make_app

    tmp = tmp_path_factory.mktemp("ipavail")
    (tmp / "s.yaml").write_text(SCENARIO)
    app, _ = make_app(f"sqlite:///{tmp}/ipavail.db", str(tmp / "s.yaml"), "keystone", "ipavail")
    with TestClient(app) as c:
        yield {"admin": User(c, "admin", "admin"), "a": User(c, "anna", "alpha")}


@pytest.fixture(scope="module")
def cloud(users: dict[str, User]) -> dict[str, Any]:
    a = users["a"]
    net = a.make("network", {"name": "dual"})
    v4 = a.make("subnet", {"network_id": net["id"], "ip_version": 4, "cidr": "10.60.0.0/24", "name": "v4",
                           "allocation_pools": [{"start": "10.60.0.10", "end": "10.60.0.19"},
                                                {"start": "10.60.0.100", "end": "10.60.0.199"}]})
    v6 = a.make("subnet", {"network_id": net["id"], "ip_version": 6, "cidr": "fd00:60::/64", "name": "v6"})
    for _ in range(3):
        a.make("port", {"network_id": net["id"]})
    empty = a.make("network", {"name": "empty"})
    other = users["admin"].make("network", {"name": "admins"})
    users["admin"].make("subnet", {"network_id": other["id"], "ip_version": 4, "cidr": "10.61.0.0/28"})
    return {"net": net, "v4": v4, "v6": v6, "empty": empty, "other": other}


def _used(u: User, subnet_id: str) -> int:
    ports = u.call("GET", "/ports", status=200)["ports"]
    return sum(1 for p in ports for ip in p["fixed_ips"] if ip["subnet_id"] == subnet_id)


def test_one_network(users: dict[str, User], cloud: dict[str, Any]) -> None:
    admin = users["admin"]
    net, v4, v6 = cloud["net"], cloud["v4"], cloud["v6"]
    got = admin.call("GET", f"/network-ip-availabilities/{net['id']}", status=200)["network_ip_availability"]
    used4, used6 = _used(admin, v4["id"]), _used(admin, v6["id"])
    assert used4 == used6 == 4  # three ports and the network's DHCP port, each with an address of both
    assert v6["allocation_pools"] == [{"start": "fd00:60::1", "end": "fd00:60::ffff:ffff:ffff:ffff"}]
    total6 = 2 ** 64 - 1  # that pool: the whole /64 but its first address (the gateway)
    assert got == {
        "network_id": net["id"], "network_name": "dual", "project_id": users["a"].project,
        "tenant_id": users["a"].project, "total_ips": 110 + total6, "used_ips": used4 + used6,
        "subnet_ip_availability": [
            {"subnet_id": v4["id"], "subnet_name": "v4", "cidr": "10.60.0.0/24", "ip_version": 4,
             "total_ips": 110, "used_ips": used4},
            {"subnet_id": v6["id"], "subnet_name": "v6", "cidr": "fd00:60::/64", "ip_version": 6,
             "total_ips": total6, "used_ips": used6}]}


def test_listing_and_filters(users: dict[str, User], cloud: dict[str, Any]) -> None:
    admin = users["admin"]

    def ids(query: str) -> list[str]:
        body = admin.call("GET", f"/network-ip-availabilities{query}", status=200)
        return [n["network_id"] for n in body["network_ip_availabilities"]]
    every = ids("")
    assert {cloud["net"]["id"], cloud["empty"]["id"], cloud["other"]["id"]} <= set(every)
    assert ids(f"?network_id={cloud['empty']['id']}") == [cloud["empty"]["id"]]
    assert ids("?network_name=admins") == [cloud["other"]["id"]]
    assert set(ids(f"?project_id={users['a'].project}")) == {cloud["net"]["id"], cloud["empty"]["id"]}
    assert ids("?ip_version=6") == [cloud["net"]["id"]]
    only6 = admin.call("GET", f"/network-ip-availabilities?ip_version=6&network_id={cloud['net']['id']}",
                       status=200)["network_ip_availabilities"][0]
    assert [s["ip_version"] for s in only6["subnet_ip_availability"]] == [6]
    empty = admin.call("GET", f"/network-ip-availabilities/{cloud['empty']['id']}", status=200)
    assert empty["network_ip_availability"]["subnet_ip_availability"] == []
    assert empty["network_ip_availability"]["total_ips"] == 0
    small = admin.call("GET", f"/network-ip-availabilities/{cloud['other']['id']}?fields=total_ips", status=200)
    assert small == {"network_ip_availability": {"total_ips": 13}}


def test_admin_only(users: dict[str, User], cloud: dict[str, Any]) -> None:
    a, admin = users["a"], users["admin"]
    assert a.call("GET", "/network-ip-availabilities", status=200) == {"network_ip_availabilities": []}
    assert a.error("GET", f"/network-ip-availabilities/{cloud['net']['id']}", None, 404)["message"] == \
        "The resource could not be found."
    missing = "00000000-0000-0000-0000-000000000001"
    assert admin.error("GET", f"/network-ip-availabilities/{missing}", None, 404) == {
        "type": "NetworkNotFound", "message": f"Network {missing} could not be found.", "detail": ""}
    assert admin.call("POST", "/network-ip-availabilities", {"network_ip_availability": {}}, 405) is not None
