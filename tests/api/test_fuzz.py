"""A property-based fuzzer over every operation of the OpenAPI document (Neutron, Identity, Compute):
schemathesis generates requests that fit the schemas (positive) and requests that break them
(negative); none may get a 5xx, and every error must come in its service's shape.

The app runs in process (ASGI) on SQLite with Keystone auth, a controller and two compute hosts,
and a small topology (networks, subnet, port, router, security group, floating IP, server) whose
ids replace the generated ones in paths and bodies most of the time, so that requests reach the
services instead of stopping at 404; half of the bodies are a valid one with one or two generated
attributes in it (``templates``), so that one odd value at a time reaches the services. The
schemathesis run is held to ``NEUTRINO_FUZZ_SECONDS`` (default 32): each operation gets its share
of the time left (twice as much for those with a body), in cases at the rate measured so far.
Hypothesis is derandomized (the same number of cases gives the same requests); shrinking is off, a
failure shows the request as generated.

Then every attribute of every create and update body, alone in a valid body, gets a value of every
JSON type and a few odd strings (``NASTY``): the type confusions that made most of the findings.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok

from neutrino.api import openapi
from tests.api.api_helpers import shape_problem, two_computes

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)

BUDGET = float(os.environ.get("NEUTRINO_FUZZ_SECONDS", "32"))
MIN_EXAMPLES, MAX_EXAMPLES = 3, 60  # at least 3 tries of each operation, however slow the machine
KEEP_FILTERS = {"name", "id", "network_id", "device_id", "status"}


def fuzz_document() -> dict[str, Any]:
    """The OpenAPI document with the list filters cut to a few (generating forty optional query
    parameters per request costs more than the request), and no security scheme (the test sends the
    token, and leaves it out now and then itself)."""
    doc = openapi.document()
    doc.pop("security")  # the token is the test's to send (or, now and then, to leave out)
    for ops in doc["paths"].values():
        for op in ops.values():
            params = op.get("parameters")
            if params and sum(1 for p in params if p["in"] == "query") > 12:
                op["parameters"] = [p for p in params if p["in"] != "query" or p["name"] in KEEP_FILTERS
                                    or p["name"] in ("fields", "sort_key", "sort_dir", "limit", "marker",
                                                     "page_reverse", "tags")]
    return doc


def breakable(doc: dict[str, Any]) -> set[str]:
    """The operations a request can break the schema of (a body, or a parameter with more than a type):
    negative generation is pointless, and slow, for the others."""
    out = set()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "requestBody" in op or any(set(p["schema"]) - {"type"} for p in op.get("parameters", [])):
                out.add(f"{method.upper()} {path}")
    return out


DOC = fuzz_document()
SCHEMA = schemathesis.openapi.from_dict(DOC, config=SchemathesisConfig())  # no config file looked for
OPERATIONS = [r.ok() for r in SCHEMA.get_all_operations() if isinstance(r, Ok)]
BREAKABLE = breakable(DOC)


def _label(op: Any) -> str:
    return str(op.label)


def weight(op: Any) -> int:
    """Requests with a body get twice the time of the others."""
    return 2 if op.method.upper() in ("POST", "PUT") else 1


@dataclass
class World:
    app: Any
    token: str
    ids: dict[str, list[str]] = field(default_factory=dict)
    dirty: bool = True


@dataclass
class Tally:
    started: float = field(default_factory=time.monotonic)
    cases: int = 0
    runs_left: int = len(OPERATIONS) + len(BREAKABLE)
    weight_left: int = sum(2 * weight(op) if _label(op) in BREAKABLE else weight(op) for op in OPERATIONS)
    per_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    attribute_cases: int = 0

    def examples(self, w: int) -> int:
        """This run's share of the time left (``w`` of ``weight_left``), in cases."""
        spent = time.monotonic() - self.started
        per_case = spent / self.cases if self.cases > 200 else 0.015
        n = int((BUDGET - spent) * w / max(self.weight_left, 1) / max(per_case, 0.002))
        self.runs_left -= 1
        self.weight_left -= w
        return max(MIN_EXAMPLES, min(MAX_EXAMPLES, n))


TALLY = Tally()

# where the topology's ids go: path parameters by name, body keys by name
PATH_IDS = {"network_id": "network", "subnet_id": "subnet", "port_id": "port", "router_id": "router",
            "floatingip_id": "floatingip", "security_group_id": "security_group",
            "security_group_rule_id": "security_group_rule", "server_id": "server", "project_id": "project",
            "hypervisor_id": "hypervisor", "flavor_id": "flavor", "image_id": "image", "agent_id": "agent",
            "user_id": "user", "network_label": "network_name", "tag": "tag", "alias": "alias", "role_id": "role",
            "domain_id": "domain"}
BODY_IDS = {"network_id": "network", "subnet_id": "subnet", "port_id": "port", "security_group_id": "security_group",
            "remote_group_id": "security_group", "floating_network_id": "external", "net_id": "network",
            "uuid": "network", "port": "free_port", "imageRef": "image", "flavorRef": "flavor", "name": "name"}


def _post(client: Any, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    r = client.post(path, json=body, headers=headers)
    assert r.status_code in (201, 202), (path, r.status_code, r.text)
    return dict(next(iter(r.json().values())))


def build_topology(w: World) -> None:
    from starlette.testclient import TestClient

    h = {"X-Auth-Token": w.token, "OpenStack-API-Version": "compute 2.74"}
    with TestClient(w.app) as c:
        unlimited = {"quota": dict.fromkeys(c.get("/v2.0/quotas/default/default", headers=h).json()["quota"], -1)}
        for p in c.get("/identity/v3/projects", headers=h).json()["projects"]:  # over what a fuzzed PUT set
            assert c.put(f"/v2.0/quotas/{p['id']}", json=unlimited, headers=h).status_code == 200
        n = len(w.ids.get("network", []))
        net = _post(c, "/v2.0/networks", {"network": {"name": f"fz-net{n}"}}, h)
        sub = _post(c, "/v2.0/subnets", {"subnet": {"network_id": net["id"], "ip_version": 4,
                                                    "cidr": f"10.{100 + n % 100}.0.0/24"}}, h)
        ext = _post(c, "/v2.0/networks", {"network": {"name": f"fz-ext{n}", "router:external": True}}, h)
        _post(c, "/v2.0/subnets", {"subnet": {"network_id": ext["id"], "ip_version": 4,
                                              "cidr": f"172.{16 + n % 16}.{n // 16 % 256}.0/24"}}, h)
        sg = _post(c, "/v2.0/security-groups", {"security_group": {"name": f"fz-sg{n}"}}, h)
        rule = _post(c, "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": sg["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 22,
            "port_range_max": 22}}, h)
        port = _post(c, "/v2.0/ports", {"port": {"network_id": net["id"], "name": f"fz-port{n}"}}, h)
        free = _post(c, "/v2.0/ports", {"port": {"network_id": net["id"], "name": f"fz-free{n}"}}, h)
        router = _post(c, "/v2.0/routers", {"router": {"name": f"fz-router{n}",
                                                       "external_gateway_info": {"network_id": ext["id"]}}}, h)
        c.put(f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}, headers=h)
        fip = _post(c, "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"], "port_id": port["id"]}},
                    h)
        image = c.get("/image/v2/images", headers=h).json()["images"][0]["id"]
        server = _post(c, "/compute/v2.1/servers", {"server": {
            "name": f"fz-vm{n}", "imageRef": image, "flavorRef": "1", "networks": [{"uuid": net["id"]}],
            "security_groups": [{"name": sg["name"]}]}}, h)
        hyps = c.get("/compute/v2.1/os-hypervisors", headers=h).json()["hypervisors"]
        agents = c.get("/v2.0/agents", headers=h).json()["agents"]
        # identity objects of its own for the fuzzer to change and delete: never the admin's project,
        # user or roles, whose loss would end the token every request carries
        ks_project = _post(c, "/identity/v3/projects", {"project": {"name": f"fz-project{n}"}}, h)
        ks_user = _post(c, "/identity/v3/users", {"user": {"name": f"fz-user{n}", "password": "fz",
                                                            "default_project_id": ks_project["id"]}}, h)
        ks_role = _post(c, "/identity/v3/roles", {"role": {"name": f"fz-role{n}"}}, h)
        ks_domain = _post(c, "/identity/v3/domains", {"domain": {"name": f"fz-domain{n}"}}, h)
        projects = [p for p in c.get("/identity/v3/projects", headers=h).json()["projects"] if p["name"] != "admin"]
    for kind, value in (("network", net["id"]), ("subnet", sub["id"]), ("external", ext["id"]),
                        ("security_group", sg["id"]), ("security_group_rule", rule["id"]), ("port", port["id"]),
                        ("free_port", free["id"]), ("router", router["id"]), ("floatingip", fip["id"]),
                        ("server", server["id"]), ("image", image), ("network_name", net["name"]),
                        ("name", sg["name"])):
        w.ids.setdefault(kind, []).append(value)
    w.ids["hypervisor"] = [h["id"] for h in hyps]
    w.ids["agent"] = [a["id"] for a in agents]
    w.ids["project"] = [p["id"] for p in projects]
    w.ids["user"] = [ks_user["id"]]
    w.ids["role"] = [ks_role["id"]]
    w.ids["domain"] = [ks_domain["id"]]
    w.ids["flavor"] = ["1", "42"]
    w.ids["tag"] = ["blue"]
    w.ids["alias"] = ["router", "security-group"]
    w.dirty = False


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app

    tmp = tmp_path_factory.mktemp("fuzz")
    app, _ = make_app(f"sqlite:///{tmp}/fuzz.db", str(two_computes(Path(tmp))), "keystone", "fuzz")
    with TestClient(app) as c:
        r = c.post("/identity/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": "admin", "password": "secret", "domain": {"name": "Default"}}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
        assert r.status_code == 201, r.text
        token = r.headers["X-Subject-Token"]
    w = World(app, token)
    SCHEMA.app = app
    TALLY.started = time.monotonic()
    yield w


def templates(w: World, rng: random.Random) -> dict[str, dict[str, Any]]:
    """A valid body per create request: the fuzzer overlays one or two generated attributes on it, so
    that a single odd value reaches the service instead of the first of many stopping the request."""
    def pick(kind: str) -> str:
        return rng.choice(w.ids[kind])
    cidr = f"10.{rng.randrange(200, 250)}.{rng.randrange(256)}.0/24"
    return {
        "POST /v2.0/networks": {"network": {"name": "fz"}},
        "POST /v2.0/subnets": {"subnet": {"network_id": pick("network"), "ip_version": 4, "cidr": cidr}},
        "POST /v2.0/ports": {"port": {"network_id": pick("network")}},
        "POST /v2.0/routers": {"router": {"name": "fz"}},
        "POST /v2.0/floatingips": {"floatingip": {"floating_network_id": pick("external")}},
        "POST /v2.0/security-groups": {"security_group": {"name": "fz"}},
        "POST /v2.0/security-group-rules": {"security_group_rule": {"security_group_id": pick("security_group"),
                                                                     "direction": "ingress"}},
        "POST /compute/v2.1/servers": {"server": {"name": "fz", "imageRef": pick("image"), "flavorRef": "1",
                                                  "networks": [{"uuid": pick("network")}]}},
        "POST /compute/v2.1/servers/{server_id}/os-interface": {"interfaceAttachment": {"net_id": pick("network")}},
    }


def _overlay(label: str, body: Any, w: World, rng: random.Random) -> Any:
    """Half the time, a valid body (``templates``, or an empty update) with one or two attributes of
    the generated one in it."""
    if not (isinstance(body, dict) and len(body) == 1 and rng.random() < 0.5):
        return body
    key, inner = next(iter(body.items()))
    if not isinstance(inner, dict):
        return body
    base = templates(w, rng).get(label, {key: {}})
    if key not in base:
        return body
    chosen = rng.sample(sorted(inner), min(len(inner), rng.choice((1, 1, 2))))
    return {key: {**base[key], **{k: inner[k] for k in chosen}}}


def _swap_ids(value: Any, w: World, rng: random.Random) -> Any:
    """The topology's ids (and, less often, its security group's name) in place of generated values."""
    if isinstance(value, dict):
        return {k: (rng.choice(w.ids[BODY_IDS[k]]) if k in BODY_IDS and isinstance(v, (str, int)) and
                    rng.random() < (0.3 if k == "name" else 0.7) else _swap_ids(v, w, rng))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_swap_ids(v, w, rng) for v in value]
    return value


def dress(case: Any, op: Any, world: World, rng: random.Random, token: dict[str, str], *, reuse: float,
          versions: Sequence[str]) -> None:
    """A generated case made to name the world: each path id one of the world's of its kind (with
    probability ``reuse``), the body's ids swapped and overlaid, the token (most of the time) and,
    for the compute API, a microversion of ``versions``."""
    for name in list(case.path_parameters or {}):
        kind = PATH_IDS.get(name)
        if kind and world.ids.get(kind) and rng.random() < reuse:
            case.path_parameters[name] = rng.choice(world.ids[kind])
    if isinstance(case.body, (dict, list)):
        case.body = _overlay(_label(op), _swap_ids(case.body, world, rng), world, rng)
    if case.headers is None:
        case.headers = {}
    if rng.random() < 0.95:
        case.headers.update(token)
    if case.path.startswith("/compute") and "OpenStack-API-Version" not in case.headers:
        case.headers["OpenStack-API-Version"] = rng.choice(list(versions))


def error_problem(case: Any, r: Any, where: str) -> str | None:
    """What is wrong with an error answer (4xx but to HEAD): not JSON, or not in its service's shape."""
    if r.status_code < 400 or case.method.upper() == "HEAD":
        return None
    try:
        body = r.json()
    except ValueError:
        return f"{where}: not JSON: {r.text[:200]}"
    why = shape_problem(case.path, r.status_code, body)
    return f"{where}: {why}: {r.text[:300]}\n  body: {str(case.body)[:300]}" if why else None


def run_generated(op: Any, one: Callable[[Any], None], examples: Callable[[int], int]) -> None:
    """``one`` on the cases hypothesis generates for ``op`` (valid ones, and invalid ones too for the
    operations in BREAKABLE), as many as ``examples`` grants for its weight."""
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if _label(op) in BREAKABLE else [])
    for mode in modes:
        n = examples(weight(op))
        run = settings(max_examples=n, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
                       suppress_health_check=list(HealthCheck))(given(op.as_strategy(generation_mode=mode))(one))
        try:
            run()
        except Exception as e:  # a schema hypothesis cannot satisfy (e.g. no invalid value exists)
            if "Unsatisfiable" not in type(e).__name__ and "Unsatisfiable" not in str(e):
                raise


@pytest.mark.parametrize("op", OPERATIONS, ids=[_label(op) for op in OPERATIONS])
def test_fuzz(op: Any, world: World) -> None:
    if world.dirty:
        build_topology(world)
    rng = random.Random(_label(op))
    op.app = world.app  # the operations were made (for the test ids) before the app existed
    token = {"X-Auth-Token": world.token}
    problems: list[str] = []

    def one(case: Any) -> None:
        dress(case, op, world, rng, token, reuse=0.8, versions=("compute 2.74", "compute 2.74", "compute latest",
                                                                 "compute 2.1", "compute 2.53", "compute 2.19"))
        r = case.call()
        TALLY.cases += 1
        TALLY.per_status[r.status_code] = TALLY.per_status.get(r.status_code, 0) + 1
        if r.status_code < 300 and (case.method.upper() == "DELETE" or "quotas" in case.path or
                                    "remove_router_interface" in case.path):
            world.dirty = True
        where = f"{case.method} {case.formatted_path} -> {r.status_code}"
        if r.status_code >= 500:
            problems.append(f"{where}: {r.text[:300]}\n  body: {str(case.body)[:300]}")
            return
        error = error_problem(case, r, where)
        if error:
            problems.append(error)

    run_generated(op, one, TALLY.examples)
    TALLY.failures.extend(problems)
    assert not problems, "\n".join(problems[:5])


# -- every attribute, every kind of value ------------------------------------------------------

NASTY: list[Any] = [None, True, 0, -1, 2**31, 2**63, 10**30, 1.5, "", " x ", "x" * 300, "\u202e\ufeff",
                    "10.0.0.1/24", "::1", "00000000-0000-0000-0000-000000000000", [], [1, "a"], [[[]]], {},
                    {"a": {"b": [None]}}]


def _attributes(label: str) -> tuple[str, list[str]]:
    """The envelope key and the attributes of a create or update body, from the OpenAPI document."""
    method, path = label.split(" ", 1)
    body = DOC["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    schemas = DOC["components"]["schemas"]
    if "oneOf" in body:
        body = body["oneOf"][0]
    key = (body.get("required") or list(body["properties"]))[0]
    inner = body["properties"][key]
    if "$ref" in inner:
        inner = schemas[inner["$ref"].rsplit("/", 1)[1]]
    return key, sorted(inner["properties"])


ATTRIBUTE_OPS = ["POST /v2.0/networks", "POST /v2.0/subnets", "POST /v2.0/ports", "POST /v2.0/routers",
                 "POST /v2.0/floatingips", "POST /v2.0/security-groups", "POST /v2.0/security-group-rules",
                 "PUT /v2.0/networks/{network_id}", "PUT /v2.0/subnets/{subnet_id}", "PUT /v2.0/ports/{port_id}",
                 "PUT /v2.0/routers/{router_id}", "PUT /v2.0/floatingips/{floatingip_id}",
                 "PUT /v2.0/security-groups/{security_group_id}",
                 "PUT /v2.0/security-group-rules/{security_group_rule_id}",
                 "POST /compute/v2.1/servers", "PUT /compute/v2.1/servers/{server_id}",
                 "POST /compute/v2.1/servers/{server_id}/os-interface"]


@pytest.mark.parametrize("label", ATTRIBUTE_OPS)
def test_every_attribute_takes_any_value(label: str, world: World) -> None:
    """Each attribute of each create and update body, alone in an otherwise valid body, given a
    value of every JSON type (and a few odd strings): never a 5xx, always the service's shape."""
    from starlette.testclient import TestClient

    if world.dirty:
        build_topology(world)
    rng = random.Random(label)
    key, attrs = _attributes(label)
    method, path = label.split(" ", 1)
    problems = []
    h = {"X-Auth-Token": world.token, "OpenStack-API-Version": "compute 2.74"}
    with TestClient(world.app) as c:
        for attr in attrs:
            for value in NASTY:
                url = path
                for name, kind in PATH_IDS.items():
                    if "{" + name + "}" in url:
                        url = url.replace("{" + name + "}", rng.choice(world.ids[kind]))
                base = templates(world, rng).get(label, {key: {}})
                r = c.request(method, url, json={key: {**base[key], attr: value}}, headers=h)
                TALLY.attribute_cases += 1
                if r.status_code < 300 and method == "PUT" and "servers" not in path:
                    world.dirty = True
                why = f"5xx: {r.text[:200]}" if r.status_code >= 500 else \
                    shape_problem(path, r.status_code, r.json()) if r.status_code >= 400 else None
                if why:
                    problems.append(f"{label} {attr}={str(value)[:40]!r} -> {r.status_code}: {why}")
    assert not problems, "\n".join(problems[:8])


def test_fuzz_ran_within_budget() -> None:
    """The fuzzer covered every operation and sent a useful number of requests. (How many depends on
    the machine's speed: the time budget is shared out as cases go; the floor does not.)"""
    if TALLY.cases == 0:
        pytest.skip("the fuzzer did not run (deselected)")
    spent = time.monotonic() - TALLY.started
    print(f"\nfuzzer: {TALLY.cases} cases over {len(OPERATIONS)} operations in {spent:.1f}s; "
          f"statuses {dict(sorted(TALLY.per_status.items()))}; {TALLY.attribute_cases} attribute cases")
    assert len(OPERATIONS) >= 120
    assert TALLY.runs_left == 0
    assert TALLY.cases >= 2 * len(OPERATIONS)
    assert not any(code >= 500 for code in TALLY.per_status)
    assert sum(n for code, n in TALLY.per_status.items() if code < 300) > TALLY.cases // 10

