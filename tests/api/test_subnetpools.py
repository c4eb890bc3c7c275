"""Subnet pools and address scopes (issue 19), as Neutron answers them: CRUD with the prefix lengths
as strings, bounds and prefix-update rules, admin-only ``shared``/``is_default``, subnets allocated
from a pool (first free block, or a given cidr checked against the pool), the pool affinity of a
network's subnets, in-use deletes, prefix operations, address-scope prefix uniqueness, and the
schema migration that adds the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import inspect, text

from neutrino.db import models
from neutrino.db.session import SUBNETPOOL_TABLES, Database
from tests.api.api_helpers import Server, ok


def err(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    e: dict[str, Any] = r.json()["NeutronError"]
    return e


def pool(c: httpx.Client, **body: Any) -> dict[str, Any]:
    p: dict[str, Any] = ok(c.post("/subnetpools", json={"subnetpool": body}), 201)["subnetpool"]
    return p


def network(c: httpx.Client, name: str) -> str:
    nid: str = ok(c.post("/networks", json={"network": {"name": name}}), 201)["network"]["id"]
    return nid


def test_extensions_are_listed(admin: httpx.Client) -> None:
    aliases = {e["alias"] for e in ok(admin.get("/extensions"))["extensions"]}
    assert {"subnet_allocation", "default-subnetpools", "subnetpool-prefix-ops", "address-scope"} <= aliases


def test_create_show_list_update_with_neutron_defaults(demo: httpx.Client) -> None:
    p = pool(demo, name="p4", prefixes=["10.11.12.0/24", "10.11.13.0/24"], min_prefixlen="29", description="d1")
    assert p["prefixes"] == ["10.11.12.0/23"]  # compacted
    assert (p["ip_version"], p["min_prefixlen"], p["default_prefixlen"], p["max_prefixlen"]) == (4, "29", "29", "32")
    assert p["shared"] is False and p["is_default"] is False and p["default_quota"] is None
    assert p["address_scope_id"] is None and p["revision_number"] == 0 and p["project_id"] == p["tenant_id"]
    shown = ok(demo.get(f"/subnetpools/{p['id']}"))["subnetpool"]
    assert shown == p
    listed = ok(demo.get("/subnetpools", params={"name": "p4", "fields": ["id", "min_prefixlen"]}))["subnetpools"]
    assert listed == [{"id": p["id"], "min_prefixlen": "29"}]
    up = ok(demo.put(f"/subnetpools/{p['id']}", json={"subnetpool": {
        "min_prefixlen": 28, "max_prefixlen": 30, "prefixes": ["10.11.0.0/16"], "description": "d2"}}))["subnetpool"]
    assert (up["min_prefixlen"], up["max_prefixlen"], up["prefixes"], up["description"]) == \
        ("28", "30", ["10.11.0.0/16"], "d2")
    assert up["revision_number"] == 1
    v6 = pool(demo, name="p6", prefixes=["2001:db8:3::/48"])
    assert (v6["ip_version"], v6["min_prefixlen"], v6["max_prefixlen"]) == (6, "64", "128")


def test_validation_errors(demo: httpx.Client) -> None:
    e = err(demo.post("/subnetpools", json={"subnetpool": {"name": "x", "prefixes": ["10.0.0.0/8", "2001:db8::/32"]}}),
            400)
    assert e["type"] == "PrefixVersionMismatch"
    e = err(demo.post("/subnetpools", json={"subnetpool": {"name": "x", "prefixes": []}}), 400)
    assert e["message"] == "Empty subnet pool prefix list."
    e = err(demo.post("/subnetpools", json={"subnetpool": {"name": "x", "prefixes": ["10.0.0.0/8"],
                                                            "min_prefixlen": 24, "max_prefixlen": 16}}), 400)
    assert e["message"] == "Illegal prefix bounds: min_prefixlen=24, max_prefixlen=16."
    e = err(demo.post("/subnetpools", json={"subnetpool": {"name": "x", "prefixes": ["10.0.0.0/8"],
                                                            "max_prefixlen": 33}}), 400)
    assert e["type"] == "IllegalSubnetPoolPrefixBounds"
    p = pool(demo, name="shrink", prefixes=["10.20.0.0/16"])
    e = err(demo.put(f"/subnetpools/{p['id']}", json={"subnetpool": {"prefixes": ["10.20.0.0/24"]}}), 400)
    assert e["type"] == "IllegalSubnetPoolPrefixUpdate"
    e = err(demo.put(f"/subnetpools/{p['id']}", json={"subnetpool": {"shared": True}}), 400)
    assert e["message"] == "Cannot update read-only attribute shared"


def test_shared_and_default_are_admin_only(admin: httpx.Client, demo: httpx.Client) -> None:
    e = err(demo.post("/subnetpools", json={"subnetpool": {"name": "s", "prefixes": ["10.30.0.0/16"],
                                                            "shared": True}}), 403)
    assert "create_subnetpool:shared" in e["message"]
    err(demo.post("/subnetpools", json={"subnetpool": {"name": "s", "prefixes": ["10.30.0.0/16"],
                                                        "is_default": True}}), 403)
    private = pool(admin, name="admin-private", prefixes=["10.31.0.0/16"])
    e = err(demo.get(f"/subnetpools/{private['id']}"), 404)
    assert e["type"] == "SubnetPoolNotFound"
    shared = pool(admin, name="admin-shared", prefixes=["10.32.0.0/16"], shared=True)
    assert ok(demo.get(f"/subnetpools/{shared['id']}"))["subnetpool"]["shared"] is True
    err(demo.put(f"/subnetpools/{shared['id']}", json={"subnetpool": {"name": "mine"}}), 403)
    ids = {p["id"] for p in ok(demo.get("/subnetpools"))["subnetpools"]}
    assert shared["id"] in ids and private["id"] not in ids


def test_subnets_allocated_from_a_pool(demo: httpx.Client) -> None:
    p = pool(demo, name="alloc", prefixes=["10.40.0.0/24"], min_prefixlen=26, max_prefixlen=28, default_quota=120)
    net = network(demo, "alloc-net")
    net2 = network(demo, "alloc-net2")

    def subnet(nid: str, **kw: Any) -> httpx.Response:
        return demo.post("/subnets", json={"subnet": {"network_id": nid, "ip_version": 4, "subnetpool_id": p["id"],
                                                      **kw}})

    first = ok(subnet(net), 201)["subnet"]
    assert (first["cidr"], first["subnetpool_id"], first["gateway_ip"]) == ("10.40.0.0/26", p["id"], "10.40.0.1")
    assert first["allocation_pools"] == [{"start": "10.40.0.2", "end": "10.40.0.62"}]
    small = ok(subnet(net, prefixlen=28), 201)["subnet"]
    assert small["cidr"] == "10.40.0.64/28"
    e = err(subnet(net2, cidr="10.40.0.0/27"), 409)  # taken by the first subnet
    assert e["type"] == "SubnetAllocationError"
    given = ok(subnet(net2, cidr="10.40.0.128/27"), 201)["subnet"]
    assert given["cidr"] == "10.40.0.128/27" and given["subnetpool_id"] == p["id"]
    e = err(subnet(net, prefixlen=30), 400)
    assert e["message"] == "Unable to allocate subnet with prefix length 30, maximum allowed prefix is 28."
    e = err(subnet(net, prefixlen=24), 400)
    assert e["type"] == "MinPrefixSubnetAllocationError"
    # a quota of 120 addresses (IPv4 counts /32s): 64 + 16 + 32 are used already
    e = err(subnet(net, prefixlen=28), 409)
    assert e["message"] == "Per-tenant subnet pool prefix quota exceeded."
    ok(demo.put(f"/subnetpools/{p['id']}", json={"subnetpool": {"default_quota": None}}))
    last = ok(subnet(net), 201)["subnet"]  # the free blocks are searched smallest first: /28, /27, /27, /26
    assert last["cidr"] == "10.40.0.192/26"
    e = err(subnet(net), 409)
    assert e["message"] == "Failed to allocate subnet: Insufficient prefix space to allocate subnet size /26."
    # the network's IPv4 subnets all come from one pool
    e = err(demo.post("/subnets", json={"subnet": {"network_id": net, "ip_version": 4, "cidr": "192.168.9.0/24"}}),
            400)
    assert e["type"] == "NetworkSubnetPoolAffinityError"
    listed = ok(demo.get("/subnets", params={"subnetpool_id": p["id"]}))["subnets"]
    assert {s["cidr"] for s in listed} == {"10.40.0.0/26", "10.40.0.64/28", "10.40.0.128/27",
                                            "10.40.0.192/26"}
    # in use: no delete, no removal of the prefix
    e = err(demo.delete(f"/subnetpools/{p['id']}"), 409)
    assert e["type"] == "SubnetPoolInUse"
    err(demo.put(f"/subnetpools/{p['id']}/remove_prefixes", json={"prefixes": ["10.40.0.0/24"]}), 400)
    added = ok(demo.put(f"/subnetpools/{p['id']}/add_prefixes", json={"prefixes": ["10.40.1.0/24"]}))
    assert added == {"prefixes": ["10.40.0.0/23"]}
    for s in (first, small, given, last):
        ok(demo.delete(f"/subnets/{s['id']}"), 204)
    ok(demo.delete(f"/subnetpools/{p['id']}"), 204)
    err(demo.get(f"/subnetpools/{p['id']}"), 404)


def test_default_subnetpool(admin: httpx.Client) -> None:
    p = pool(admin, name="default6", prefixes=["2001:db8:100::/48"], default_prefixlen=64, is_default=True,
             shared=True)
    e = err(admin.post("/subnetpools", json={"subnetpool": {"name": "d2", "prefixes": ["2001:db8:200::/48"],
                                                             "is_default": True}}), 400)
    assert "Only one default" in e["message"]
    net = network(admin, "default-net")
    s = ok(admin.post("/subnets", json={"subnet": {"network_id": net, "ip_version": 6,
                                                   "use_default_subnetpool": True}}), 201)["subnet"]
    assert (s["cidr"], s["subnetpool_id"]) == ("2001:db8:100::/64", p["id"])
    e = err(admin.post("/subnets", json={"subnet": {"network_id": net, "ip_version": 4,
                                                    "use_default_subnetpool": True}}), 400)
    assert e["message"] == "Bad subnet request: No default subnetpool found for IPv4."


def test_address_scopes(admin: httpx.Client, demo: httpx.Client) -> None:
    scope = ok(demo.post("/address-scopes", json={"address_scope": {"name": "as4", "ip_version": 4}}),
               201)["address_scope"]
    assert (scope["name"], scope["ip_version"], scope["shared"]) == ("as4", 4, False)
    a = pool(demo, name="sa", prefixes=["20.0.0.0/18"], address_scope_id=scope["id"])
    assert a["address_scope_id"] == scope["id"]
    pool(demo, name="sb", prefixes=["20.10.0.0/24"], address_scope_id=scope["id"])
    e = err(demo.put(f"/subnetpools/{a['id']}", json={"subnetpool": {"prefixes": ["20.0.0.0/12"]}}), 409)
    assert e["type"] == "AddressScopePrefixConflict"
    net = network(demo, "scoped")
    ok(demo.post("/subnets", json={"subnet": {"network_id": net, "ip_version": 4, "subnetpool_id": a["id"],
                                              "prefixlen": 24}}), 201)
    shown = ok(demo.get(f"/networks/{net}"))["network"]
    assert (shown["ipv4_address_scope"], shown["ipv6_address_scope"]) == (scope["id"], None)
    ok(demo.delete(f"/networks/{net}"), 204)
    e = err(demo.post("/subnetpools", json={"subnetpool": {"name": "sc", "prefixes": ["20.0.0.0/24"],
                                                            "address_scope_id": scope["id"]}}), 409)
    assert e["type"] == "AddressScopePrefixConflict"
    v6 = ok(demo.post("/address-scopes", json={"address_scope": {"name": "as6", "ip_version": 6}}),
            201)["address_scope"]
    err(demo.put(f"/subnetpools/{a['id']}", json={"subnetpool": {"address_scope_id": v6["id"]}}), 400)
    err(demo.post("/address-scopes", json={"address_scope": {"name": "x", "ip_version": 4, "shared": True}}), 403)
    e = err(demo.put(f"/address-scopes/{scope['id']}", json={"address_scope": {"shared": False}}), 403)
    assert "update_address_scope:shared" in e["message"]
    ok(demo.put(f"/address-scopes/{scope['id']}", json={"address_scope": {"name": "as4b"}}))
    e = err(demo.delete(f"/address-scopes/{scope['id']}"), 409)
    assert e["type"] == "AddressScopeInUse"
    ok(demo.put(f"/subnetpools/{a['id']}", json={"subnetpool": {"address_scope_id": None}}))
    e = err(demo.get("/address-scopes/00000000-0000-4000-8000-000000000000"), 404)
    assert e["type"] == "AddressScopeNotFound"


def test_tags_and_cli(srv: Server, admin: httpx.Client) -> None:
    out = srv.osc("subnet", "pool", "create", "--pool-prefix", "10.50.0.0/16", "--default-prefix-length", "24",
                  "--tag", "blue", "cli-pool", "-f", "json")
    assert out["default_prefixlen"] == 24 and out["tags"] == ["blue"]  # the client reads it as a number
    net = srv.osc("network", "create", "cli-net", "-f", "json")
    sub = srv.osc("subnet", "create", "--network", net["id"], "--subnet-pool", "cli-pool", "cli-sub", "-f", "json")
    assert sub["cidr"] == "10.50.0.0/24" and sub["subnetpool_id"] == out["id"]
    tagged = ok(admin.get("/subnetpools", params={"tags": "blue"}))["subnetpools"]
    assert [p["id"] for p in tagged] == [out["id"]]


def test_version_3_database_gets_subnet_pools(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v3.db'}"
    db = Database(url)
    with db.write() as s:
        conn = s.connection()
        for table in SUBNETPOOL_TABLES:
            conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text("DROP INDEX ix_subnets_subnetpool_id"))
        conn.execute(text("ALTER TABLE subnets DROP COLUMN subnetpool_id"))
        conn.execute(text("DELETE FROM neutrino_schema WHERE version >= 4"))
    db.dispose()
    old = Database(url, migrate=False)
    assert old.schema_version() == 3 and not inspect(old.engine).has_table("subnetpools")
    old.dispose()
    db = Database(url)
    assert db.schema_version() == models.SCHEMA_VERSION
    insp = inspect(db.engine)
    assert all(insp.has_table(t) for t in SUBNETPOOL_TABLES)
    assert "subnetpool_id" in {c["name"] for c in insp.get_columns("subnets")}
    db.dispose()
