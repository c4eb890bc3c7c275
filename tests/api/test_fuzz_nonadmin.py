"""The fuzzer of ``test_fuzz`` with a member's token (the ``demo`` user of the two-computes scenario,
member of its own project) instead of the admin's.

The admin builds its topology (``test_fuzz.build_topology``) and the member builds one of its own
(network, subnet, ports, router on the admin's external network, floating IP, security group and
rule, server). The generated requests get ids from both, so that most of them name either the
member's resources or the admin's. As for the admin: no 5xx, and every error in its service's
shape. And what only the member's token adds: no 2xx body ever holds the id of a resource of the
admin's project that the member may not see (the external network is everyone's), and at the end
every one of those resources is still there, unchanged in name.

Held to ``NEUTRINO_FUZZ_NONADMIN_SECONDS`` (default 12) for the schemathesis part, plus a few
seconds of admin-only attributes with odd values.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.api.api_helpers import shape_problem, two_computes
from tests.api.test_fuzz import (
    BREAKABLE,
    DOC,
    OPERATIONS,
    PATH_IDS,
    World,
    _label,
    _post,
    build_topology,
    dress,
    error_problem,
    run_generated,
    weight,
)

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)

BUDGET = float(os.environ.get("NEUTRINO_FUZZ_NONADMIN_SECONDS", "12"))
MIN_EXAMPLES, MAX_EXAMPLES = 1, 30
# the admin's resources a member may not see (its external network and that network's subnet it may)
PRIVATE = ("network", "subnet", "port", "free_port", "router", "floatingip", "security_group",
           "security_group_rule", "server")


@dataclass
class Tally:
    started: float = field(default_factory=time.monotonic)
    cases: int = 0
    weight_left: int = sum(2 * weight(op) if _label(op) in BREAKABLE else weight(op) for op in OPERATIONS)
    per_status: dict[int, int] = field(default_factory=dict)
    ops_run: int = 0
    at_admins: int = 0  # requests naming one of the admin's private resources in their path

    def examples(self, w: int) -> int:
        spent = time.monotonic() - self.started
        per_case = spent / self.cases if self.cases > 200 else 0.015
        n = int((BUDGET - spent) * w / max(self.weight_left, 1) / max(per_case, 0.002))
        self.weight_left -= w
        return max(MIN_EXAMPLES, min(MAX_EXAMPLES, n))


TALLY = Tally()


@dataclass
class Both:
    """The admin's world (its token and topology) and the member's."""

    admin: World
    member: World
    admin_ids: dict[str, list[str]] = field(default_factory=dict)  # the admin's private resources
    names: dict[str, str] = field(default_factory=dict)  # admin network/router id -> name
    member_ids: dict[str, list[str]] = field(default_factory=dict)

    def ids(self) -> dict[str, list[str]]:
        """What the requests are given: the member's ids and the admin's, side by side."""
        out = {k: list(v) for k, v in self.admin.ids.items()}
        for k, v in self.member_ids.items():
            out[k] = v + out.get(k, [])
        return out


def _token(c: Any, user: str, project: str) -> str:
    r = c.post("/identity/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": user, "password": "secret", "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}})
    assert r.status_code == 201, r.text
    return str(r.headers["X-Subject-Token"])


def build_member(b: Both) -> None:
    """The member's own topology, on the admin's external network."""
    from starlette.testclient import TestClient

    h = {"X-Auth-Token": b.member.token, "OpenStack-API-Version": "compute 2.74"}
    ext = b.admin.ids["external"][0]
    n = len(b.member_ids.get("network", []))
    with TestClient(b.member.app) as c:
        net = _post(c, "/v2.0/networks", {"network": {"name": f"m-net{n}"}}, h)
        sub = _post(c, "/v2.0/subnets", {"subnet": {"network_id": net["id"], "ip_version": 4,
                                                    "cidr": f"10.{150 + n % 50}.0.0/24"}}, h)
        sg = _post(c, "/v2.0/security-groups", {"security_group": {"name": f"m-sg{n}"}}, h)
        rule = _post(c, "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 80,
            "port_range_max": 80}}, h)
        port = _post(c, "/v2.0/ports", {"port": {"network_id": net["id"], "name": f"m-port{n}"}}, h)
        free = _post(c, "/v2.0/ports", {"port": {"network_id": net["id"], "name": f"m-free{n}"}}, h)
        router = _post(c, "/v2.0/routers", {"router": {"name": f"m-router{n}",
                                                       "external_gateway_info": {"network_id": ext}}}, h)
        c.put(f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}, headers=h)
        fip = _post(c, "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext, "port_id": port["id"]}}, h)
        image = c.get("/image/v2/images", headers=h).json()["images"][0]["id"]
        server = _post(c, "/compute/v2.1/servers", {"server": {
            "name": f"m-vm{n}", "imageRef": image, "flavorRef": "1", "networks": [{"uuid": net["id"]}]}}, h)
    for kind, value in (("network", net["id"]), ("subnet", sub["id"]), ("security_group", sg["id"]),
                        ("security_group_rule", rule["id"]), ("port", port["id"]), ("free_port", free["id"]),
                        ("router", router["id"]), ("floatingip", fip["id"]), ("server", server["id"]),
                        ("network_name", net["name"]), ("name", sg["name"])):
        b.member_ids.setdefault(kind, []).append(value)
    b.member.dirty = False


def refresh(b: Both) -> None:
    if b.admin.dirty:  # never by the member's doing; only the first time
        build_topology(b.admin)
        b.admin_ids = {k: list(b.admin.ids[k]) for k in PRIVATE}
        from starlette.testclient import TestClient
        h = {"X-Auth-Token": b.admin.token}
        with TestClient(b.admin.app) as c:
            for coll, kind in (("networks", "network"), ("routers", "router")):
                for rid in b.admin_ids[kind]:
                    b.names[rid] = c.get(f"/v2.0/{coll}/{rid}", headers=h).json()[kind]["name"]
    if b.member.dirty:
        build_member(b)
    b.member.ids = b.ids()


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app

    tmp = tmp_path_factory.mktemp("fuzz-nonadmin")
    app, _ = make_app(f"sqlite:///{tmp}/fuzz.db", str(two_computes(Path(tmp))), "keystone", "fuzz-member")
    with TestClient(app) as c:
        admin, member = _token(c, "admin", "admin"), _token(c, "demo", "demo")
    b = Both(World(app, admin), World(app, member))
    TALLY.started = time.monotonic()
    yield b


def leaks(b: Both, text: str) -> list[str]:
    """The admin's private ids in ``text``."""
    return [f"{kind} {i}" for kind, ids in b.admin_ids.items() for i in ids if i in text]


@pytest.mark.parametrize("op", OPERATIONS, ids=[_label(op) for op in OPERATIONS])
def test_fuzz_as_member(op: Any, both: Both) -> None:
    refresh(both)
    w = both.member
    rng = random.Random("member " + _label(op))
    op.app = w.app
    token = {"X-Auth-Token": w.token}
    problems: list[str] = []

    def one(case: Any) -> None:
        dress(case, op, w, rng, token, reuse=0.85, versions=("compute 2.74", "compute latest", "compute 2.1"))
        r = case.call()
        TALLY.cases += 1
        TALLY.per_status[r.status_code] = TALLY.per_status.get(r.status_code, 0) + 1
        if r.status_code < 300 and (case.method.upper() == "DELETE" or "remove_router_interface" in case.path):
            w.dirty = True
        where = f"{case.method} {case.formatted_path} -> {r.status_code}"
        if leaks(both, case.formatted_path):
            TALLY.at_admins += 1
            if r.status_code < 300:
                problems.append(f"{where}: the admin's resource reached with a member's token")
        if r.status_code >= 500:
            problems.append(f"{where}: {r.text[:300]}\n  body: {str(case.body)[:300]}")
            return
        if r.status_code < 300:
            found = leaks(both, r.text)
            if found:
                problems.append(f"{where}: the admin's {', '.join(found[:3])} in the answer\n"
                                f"  body: {str(case.body)[:300]}")
            return
        error = error_problem(case, r, where)
        if error:
            problems.append(error)

    run_generated(op, one, TALLY.examples)
    TALLY.ops_run += 1
    assert not problems, "\n".join(problems[:5])


def _body_for(path: str, method: str, op: dict[str, Any]) -> Any:
    """A small body of the right envelope: ``{"<key>": {"name": "x"}}`` (or empty inside)."""
    if "requestBody" not in op:
        return None
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    if "oneOf" in schema:
        schema = schema["oneOf"][0]
    props = schema.get("properties") or {}
    if not props:
        return {}
    key = (schema.get("required") or list(props))[0]
    inner = props[key]
    if "$ref" in inner:
        inner = DOC["components"]["schemas"][inner["$ref"].rsplit("/", 1)[1]]
    return {key: {"name": "x"} if "name" in (inner.get("properties") or {}) else {}}


def test_every_operation_on_the_admins_resources(both: Both) -> None:
    """Every operation of the document whose path names a resource, given the admin's private one
    (the other path ids the member's own), with a small body: refused (4xx) in the service's shape,
    never done and never a 5xx."""
    from starlette.testclient import TestClient

    refresh(both)
    h = {"X-Auth-Token": both.member.token, "OpenStack-API-Version": "compute 2.74"}
    problems: list[str] = []
    statuses: dict[int, int] = {}
    tried = 0
    with TestClient(both.member.app) as c:
        for path, ops in DOC["paths"].items():
            for method, op in ops.items():
                names = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
                private = [n for n in names if PATH_IDS.get(n) in PRIVATE]
                if not private:
                    continue
                for target in private:
                    url = path
                    for n in names:
                        kind = PATH_IDS.get(n, "")
                        pool = both.admin_ids if n == target else both.member_ids
                        value = (pool.get(kind) or both.admin.ids.get(kind) or ["x"])[0]
                        url = url.replace("{" + n + "}", str(value))
                    r = c.request(method.upper(), url, json=_body_for(path, method, op), headers=h)
                    tried += 1
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    where = f"{method.upper()} {url} -> {r.status_code}"
                    if r.status_code < 400 or r.status_code >= 500:
                        problems.append(f"{where}: {r.text[:200]}")
                    elif method != "head" and shape_problem(path, r.status_code, r.json()):
                        problems.append(f"{where}: not the service's error: {r.text[:200]}")
    print(f"\n{tried} requests at the admin's resources: {dict(sorted(statuses.items()))}")
    assert tried >= 60, tried
    assert statuses.get(404, 0) >= tried // 2  # mostly not found, as Neutron and Nova hide them
    assert not problems, "\n".join(problems[:10])


ODD: list[Any] = [None, True, 0, "", "x" * 300, [], {"a": 1}, "00000000-0000-0000-0000-000000000000"]
ADMIN_ATTRIBUTES = [
    ("POST", "/v2.0/networks", "network", ["provider:network_type", "provider:physical_network",
                                           "provider:segmentation_id", "router:external", "shared"]),
    ("POST", "/v2.0/ports", "port", ["binding:host_id", "binding:profile"]),
    ("PUT", "/v2.0/ports/{port_id}", "port", ["binding:host_id", "binding:profile"]),
    ("POST", "/v2.0/routers", "router", ["distributed", "ha"]),
    ("PUT", "/v2.0/routers/{router_id}", "router", ["distributed", "ha"]),
]


def test_admin_only_attributes_with_odd_values(both: Both) -> None:
    """A member giving an admin-only attribute any value: 400 (a value no one may give) or 403,
    never a 2xx, never a 5xx; always Neutron's error body."""
    from starlette.testclient import TestClient

    refresh(both)
    h = {"X-Auth-Token": both.member.token}
    net = both.member_ids["network"][-1]
    problems = []
    statuses: set[int] = set()
    with TestClient(both.member.app) as c:
        for method, path, key, attrs in ADMIN_ATTRIBUTES:
            url = path.replace("{port_id}", both.member_ids["port"][-1]).replace(
                "{router_id}", both.member_ids["router"][-1])
            base: dict[str, Any] = {"network_id": net} if (key, method) == ("port", "POST") else {}
            for attr in attrs:
                for value in [*ODD, True, "vlan", 5]:
                    if (attr, value) in (("shared", False), ("router:external", False)):
                        continue  # the default: allowed
                    r = c.request(method, url, json={key: {**base, attr: value}}, headers=h)
                    statuses.add(r.status_code)
                    if r.status_code not in (400, 403):
                        problems.append(f"{method} {path} {attr}={value!r} -> {r.status_code}: {r.text[:200]}")
                    elif shape_problem(path, r.status_code, r.json()):
                        problems.append(f"{method} {path} {attr}={value!r}: not Neutron's error: {r.text[:200]}")
    assert not problems, "\n".join(problems[:8])
    assert 403 in statuses


def test_nothing_of_the_admin_changed(both: Both) -> None:
    """After all that, every private resource of the admin is still there, with its name."""
    from starlette.testclient import TestClient

    if TALLY.cases == 0:
        pytest.skip("the fuzzer did not run (deselected)")
    h = {"X-Auth-Token": both.admin.token, "OpenStack-API-Version": "compute 2.74"}
    paths = {"network": "/v2.0/networks", "subnet": "/v2.0/subnets", "port": "/v2.0/ports",
             "free_port": "/v2.0/ports", "router": "/v2.0/routers", "floatingip": "/v2.0/floatingips",
             "security_group": "/v2.0/security-groups", "security_group_rule": "/v2.0/security-group-rules",
             "server": "/compute/v2.1/servers"}
    gone = []
    with TestClient(both.admin.app) as c:
        for kind, ids in both.admin_ids.items():
            for i in ids:
                r = c.get(f"{paths[kind]}/{i}", headers=h)
                if r.status_code != 200:
                    gone.append(f"{kind} {i}: {r.status_code}")
                elif i in both.names:
                    body = next(iter(r.json().values()))
                    if body["name"] != both.names[i]:
                        gone.append(f"{kind} {i} renamed to {body['name']!r}")
    print(f"\nmember fuzzer: {TALLY.cases} cases in {time.monotonic() - TALLY.started:.1f}s; "
          f"statuses {dict(sorted(TALLY.per_status.items()))}")
    assert not gone, gone
    assert TALLY.ops_run == len(OPERATIONS)
    assert TALLY.at_admins >= 5, TALLY.at_admins  # the admin's resources were aimed at
    assert TALLY.cases >= len(OPERATIONS) + len(BREAKABLE)
    assert any(code < 300 for code in TALLY.per_status) and 404 in TALLY.per_status
