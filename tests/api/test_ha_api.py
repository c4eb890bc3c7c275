"""HA routers through the API (issue 18): ``ha`` on routers (admin only; changing it needs the router
administratively down), the project's HA network, subnet and ports, the VRRP id, the L3 bindings
with their ha_state, and deleting the last HA router removing the HA network."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.api_helpers import Server, example_server, ok, user_client


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with example_server(tmp_path_factory.mktemp("haapi"), "ha.yaml") as server:
        yield server


def _ha_ports(c: httpx.Client, router_id: str) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = ok(c.get("/ports", params={"device_id": router_id}))["ports"]
    return [p for p in ports if p["device_owner"] == "network:router_ha_interface"]


def _bindings(router_id: str, srv: Server) -> list[tuple[str, int, str | None]]:
    import sqlalchemy

    eng = sqlalchemy.create_engine(f"sqlite:///{srv.clouds_yaml.parent / 'ha.db'}")
    with eng.connect() as conn:
        rows = conn.exec_driver_sql("SELECT host, binding_index, ha_state FROM router_l3_bindings WHERE router_id=? "
                                    "ORDER BY binding_index", (router_id,)).all()
    eng.dispose()
    return [(str(h), int(i), s) for h, i, s in rows]


def test_ha_router_gets_network_ports_vr_id_and_bindings(admin: httpx.Client, srv: Server) -> None:
    r = ok(admin.post("/routers", json={"router": {"name": "ha1"}}), 201)["router"]  # l3_ha: true by default
    assert r["ha"] is True
    ports = _ha_ports(admin, r["id"])
    assert sorted(p["binding:host_id"] for p in ports) == ["network1", "network2"]
    assert all(p["name"] == f"HA port project {r['project_id']}" and p["project_id"] == "" for p in ports)
    nets = ok(admin.get("/networks", params={"name": f"HA network project {r['project_id']}"}))["networks"]
    assert len(nets) == 1 and nets[0]["project_id"] == ""
    (sub,) = ok(admin.get("/subnets", params={"network_id": nets[0]["id"]}))["subnets"]
    assert (sub["cidr"], sub["gateway_ip"], sub["enable_dhcp"]) == ("169.254.192.0/18", None, False)
    assert _bindings(r["id"], srv) == [("network1", 1, "active"), ("network2", 2, "standby")]
    agents = ok(admin.get(f"/routers/{r['id']}/l3-agents"))["agents"]
    assert sorted((a["host"], a["ha_state"]) for a in agents) == [("network1", "active"), ("network2", "standby")]
    # a second HA router shares the network and takes the next VRRP id
    r2 = ok(admin.post("/routers", json={"router": {"name": "ha2", "ha": True}}), 201)["router"]
    assert len(ok(admin.get("/networks", params={"name": nets[0]["name"]}))["networks"]) == 1
    assert len(_ha_ports(admin, r2["id"])) == 2
    ok(admin.delete(f"/routers/{r2['id']}"), 204)
    ok(admin.delete(f"/routers/{r['id']}"), 204)
    assert not _ha_ports(admin, r["id"])
    assert not ok(admin.get("/networks", params={"name": nets[0]["name"]}))["networks"]


def test_legacy_router_and_changing_ha(admin: httpx.Client, srv: Server) -> None:
    r = ok(admin.post("/routers", json={"router": {"name": "legacy", "ha": False}}), 201)["router"]
    assert r["ha"] is False and not _ha_ports(admin, r["id"])
    e = admin.put(f"/routers/{r['id']}", json={"router": {"ha": True}})
    assert e.status_code == 400 and "admin_state_up to False" in e.json()["NeutronError"]["message"]
    up = ok(admin.put(f"/routers/{r['id']}", json={"router": {"ha": True, "admin_state_up": False}}))["router"]
    assert up["ha"] is True and len(_ha_ports(admin, r["id"])) == 2
    assert [s for _, _, s in _bindings(r["id"], srv)] == ["active", "standby"]
    down = ok(admin.put(f"/routers/{r['id']}", json={"router": {"ha": False}}))["router"]
    assert down["ha"] is False and not _ha_ports(admin, r["id"]) and not _bindings(r["id"], srv)
    ok(admin.delete(f"/routers/{r['id']}"), 204)


def test_ha_is_admin_only(srv: Server, admin: httpx.Client) -> None:
    with user_client(srv, "demo", "demo") as c:
        e = c.post("/routers", json={"router": {"name": "mine", "ha": False}})
        assert e.status_code == 403, e.text
        mine = ok(c.post("/routers", json={"router": {"name": "mine"}}), 201)["router"]
        assert "ha" not in mine  # an admin-only attribute, as Neutron's policy hides it
        assert ok(admin.get(f"/routers/{mine['id']}"))["router"]["ha"] is True  # the deployment's default
        nets = ok(admin.get("/networks", params={"name": f"HA network project {mine['project_id']}"}))["networks"]
        assert len(nets) == 1
        ok(c.delete(f"/routers/{mine['id']}"), 204)
    # the openstack CLI shows the attribute
    r = ok(admin.post("/routers", json={"router": {"name": "shown"}}), 201)["router"]
    shown = srv.osc("router", "show", r["id"], "-f", "json")
    assert shown["ha"] is True
    ok(admin.delete(f"/routers/{r['id']}"), 204)


def test_interface_owner_follows_the_router_kind_as_in_neutron(admin: httpx.Client) -> None:
    """An HA router's interfaces are ``network:ha_router_replicated_interface``; made legacy (down
    first), they become ``network:router_interface``."""
    net = ok(admin.post("/networks", json={"network": {"name": "owners"}}), 201)["network"]
    sub = ok(admin.post("/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.77.0.0/24",
                                                     "ip_version": 4}}), 201)["subnet"]
    r = ok(admin.post("/routers", json={"router": {"name": "owners", "ha": True}}), 201)["router"]
    try:
        ok(admin.put(f"/routers/{r['id']}/add_router_interface", json={"subnet_id": sub["id"]}))

        def owners() -> list[str]:
            ports = ok(admin.get("/ports", params={"device_id": r["id"], "network_id": net["id"]}))["ports"]
            return [p["device_owner"] for p in ports]
        assert owners() == ["network:ha_router_replicated_interface"]
        shown = ok(admin.get(f"/routers/{r['id']}"))["router"]
        assert shown["ha"] is True
        ok(admin.put(f"/routers/{r['id']}", json={"router": {"ha": False, "admin_state_up": False}}))
        assert owners() == ["network:router_interface"]
        ok(admin.put(f"/routers/{r['id']}/remove_router_interface", json={"subnet_id": sub["id"]}))
        assert owners() == []
    finally:
        ok(admin.delete(f"/routers/{r['id']}"), 204)
        ok(admin.delete(f"/networks/{net['id']}"), 204)
