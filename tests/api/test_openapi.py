"""The OpenAPI document: generated from the routes and the attribute tables, served at /openapi.json,
and kept in docs/openapi.json (regenerate with ``python -m neutrino.api.openapi > docs/openapi.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient

from neutrino.api import compute, identity, openapi
from neutrino.api.neutron import COLLECTIONS
from neutrino.api.serve import make_app
from neutrino.services.attributes import RESOURCES

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "docs" / "openapi.json"


def test_kept_copy_is_the_generated_document() -> None:
    assert KEPT.read_text() == openapi.text(), \
        "docs/openapi.json is stale: python -m neutrino.api.openapi > docs/openapi.json"


def test_served_document(tmp_path: Path) -> None:
    app, _ = make_app(f"sqlite:///{tmp_path}/o.db", None, "keystone")
    with TestClient(app) as c:
        r = c.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == json.loads(KEPT.read_text())


def test_every_route_is_documented() -> None:
    doc = openapi.document()
    paths = doc["paths"]
    assert doc["openapi"] == "3.1.0"
    for name, coll in COLLECTIONS.items():
        item = f"/v2.0/{name}/{{{coll.resource.singular}_id}}"
        assert set(paths[f"/v2.0/{name}"]) == {"get", "post"}
        assert set(paths[item]) == {"get", "put", "delete"}
    for r in compute.ROUTES:
        assert r.method.lower() in paths["/compute/v2.1" + (r.path if r.path != "/" else "")], r
    for method, path, _, _ in identity.ROUTES:
        assert method.lower() in paths["/identity" + (path.rstrip("/") if path != "/" else "")]
    ops = [op for ops in paths.values() for op in ops.values()]
    assert len(ops) >= 130 and len({op["operationId"] for op in ops}) == len(ops)


def test_bodies_come_from_the_attribute_tables() -> None:
    schemas = openapi.document()["components"]["schemas"]
    for res in RESOURCES.values():
        create = schemas[f"{res.singular}-create"]
        update = schemas[f"{res.singular}-update"]
        assert set(create["properties"]) == {k for k, a in res.attrs.items() if a.post} | {"project_id", "tenant_id"}
        assert set(update["properties"]) == {k for k, a in res.attrs.items() if a.put}
        assert set(create.get("required", [])) == {k for k, a in res.attrs.items() if a.required}
        assert create["additionalProperties"] is False
    net = schemas["network-create"]["properties"]
    assert net["name"]["maxLength"] == 255 and net["mtu"] == {"type": "integer", "minimum": 0,
                                                              "maximum": 2**31 - 1}
    assert schemas["port-create"]["properties"]["network_id"] == {"type": "string", "format": "uuid"}
    assert schemas["subnet-create"]["properties"]["gateway_ip"]["type"] == ["string", "null"]
    rule = schemas["security_group_rule-create"]["properties"]
    assert rule["port_range_min"] == {"type": ["integer", "null"], "minimum": 0, "maximum": 65535}


def test_compute_bodies_are_novas_schemas() -> None:
    paths = openapi.document()["paths"]
    create = paths["/compute/v2.1/servers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    server = create["properties"]["server"]
    assert server["required"] == ["name", "flavorRef", "networks"]  # networks: required from 2.37
    assert {"host", "hypervisor_hostname", "description", "tags"} <= set(server["properties"])
    assert server["properties"]["key_name"]["maxLength"] == 255 and server["additionalProperties"] is False
    version = next(p for p in paths["/compute/v2.1/servers"]["post"]["parameters"]
                   if p["name"] == "OpenStack-API-Version")
    assert version["in"] == "header"
