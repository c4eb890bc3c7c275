"""The API's port create reads the port quota with the port's network (``ports.create_port(...,
quota_project=...)``: one statement less) instead of ``quotas.check`` before it: the same answer or
the same error, in the same order, as the plain path (``quotas.check`` then ``create_port``), from
the same state, on SQLite and PostgreSQL: every combination of a quota met or not (explicit or the
default), a network there or not (or not visible), an owner allowed or not; and through the API."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neutrino.errors import NeutrinoError
from neutrino.scenarios.model import default_scenario
from neutrino.services import networks, ports, quotas
from neutrino.services.cloud import Cloud, prepare
from neutrino.services.core import Context
from tests.api.api_helpers import cloud_on_fresh_database

NO_NET = "00000000-0000-4000-8000-000000000000"  # a network id no network has
ALICE = Context("alice-project", "alice", False, ("member", "reader"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Cloud]:
    yield from cloud_on_fresh_database(request, tmp_path, "api8q")


class _RolledBack(Exception):
    pass


def _outcome(cloud: Cloud, ctx: Context, body: dict[str, Any], fused: bool) -> Any:
    """What the create answers (its view, timestamps aside) or raises, in a transaction then rolled
    back (so that both paths start from the same state, and a seeded generator gives both the same ids)."""
    got: Any = None
    try:
        with cloud.write(ctx) as tx:
            attrs = prepare("port", dict(body))
            project = attrs.get("project_id", ctx.project_id)
            try:
                if fused:
                    view = ports.create_port(tx, attrs, quota_project=project)
                else:
                    quotas.check(tx, project, "port")
                    view = ports.create_port(tx, attrs)
                got = {k: v for k, v in view.items() if k not in ("created_at", "updated_at")}
            except NeutrinoError as e:
                got = (type(e).__name__, getattr(e, "neutron_type", None), str(e))
            raise _RolledBack
    except _RolledBack:
        pass
    return got


def test_the_fused_quota_check_answers_as_the_plain_one(cloud: Cloud) -> None:
    cloud = Cloud(cloud.db, default_scenario(), seed="api8-quota")  # ids and MACs from a seed: both paths alike
    admin = cloud.admin_context()
    with cloud.write(admin) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "q"}))["id"]
        networks.create_subnet(tx, prepare("subnet", {"network_id": net, "ip_version": 4, "cidr": "10.6.0.0/24"}))
        private = networks.create_network(tx, prepare("network", {"name": "admin's own"}))["id"]
    for i in range(3):  # alice has 3 ports
        with cloud.write(admin) as tx:
            ports.create_port(tx, prepare("port", {"network_id": net, "project_id": ALICE.project_id,
                                                   "name": f"a{i}"}))
    seen: set[Any] = set()
    for limit, network, owner, who in itertools.product(
            (None, 0, 2, 3, 4, -1), (net, private, NO_NET), (None, ALICE.project_id, "bob-project"),
            (admin, ALICE)):
        with cloud.write(admin) as tx:
            for project in (ALICE.project_id, "bob-project"):  # bob has no port: over a limit of 0 only
                if limit is None:
                    quotas.reset(tx, project)
                else:
                    quotas.update(tx, project, {"port": limit}, force=True)
        body: dict[str, Any] = {"network_id": network, "name": "new"}
        if owner is not None:
            body["project_id"] = owner
        if who is admin and owner is None:
            body["project_id"] = ALICE.project_id
        plain = _outcome(cloud, who, body, fused=False)
        fused = _outcome(cloud, who, body, fused=True)
        assert fused == plain, (limit, network, owner, who.user_id)
        seen.add(plain[0] if isinstance(plain, tuple) else "created")
    # every kind of answer was compared: made, over quota, a foreign owner refused, not found
    assert seen == {"created", "Conflict", "InvalidInput", "NotFound"}, seen


def test_through_the_api_the_quota_still_comes_first(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app

    application, _ = make_app(f"sqlite:///{tmp_path}/api.db", None, "keystone")
    with TestClient(application) as c:
        from tests.api.api_helpers import AppUser

        admin = AppUser(c, "admin", "admin")
        net = admin.call("POST", "/networks", {"network": {"name": "q"}}, 201)["network"]["id"]
        admin.call("POST", "/subnets", {"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.5.0.0/24"}}, 201)
        admin.call("PUT", f"/quotas/{admin.project}", {"quota": {"port": 3}}, 200)
        made = [admin.call("POST", "/ports", {"port": {"network_id": net}}, 201)["port"]["id"] for _ in range(2)]
        # the DHCP port counts: 3 of 3
        over = admin.error("POST", "/ports", {"port": {"network_id": net}}, 409)
        assert over == {"type": "OverQuota", "message": "Quota exceeded for resources: ['port'].", "detail": ""}
        # over quota and no such network: the quota's error, as before
        assert admin.error("POST", "/ports", {"port": {"network_id": NO_NET}}, 409)["type"] == "OverQuota"
        admin.call("DELETE", f"/ports/{made[0]}", None, 204)
        assert admin.error("POST", "/ports", {"port": {"network_id": NO_NET}}, 404)["type"] == "NetworkNotFound"
        admin.call("POST", "/ports", {"port": {"network_id": net}}, 201)
        assert admin.error("POST", "/ports", {"port": {"network_id": net}}, 409)["type"] == "OverQuota"
