"""The Neutron v2.0 REST surface: routing, envelopes, bulk bodies, revision constraints, list queries.

No business rules here: each request is validated against the resource's attribute table
(``services.attributes``) and handed to one service call inside one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from neutrino.api import listing
from neutrino.api.common import base_url, json_response, neutron_error, read_json
from neutrino.errors import InvalidInput
from neutrino.services import (
    agents,
    floatingips,
    networks,
    ports,
    quotas,
    routers,
    securitygroups,
    subnetpools,
    tags,
)
from neutrino.services.attributes import (
    DB_INTEGER_MAX,
    PROJECT_ID_MAX,
    RESOURCES,
    Resource,
    bad_request,
    int_range,
    prepare_body,
    string_or_none,
    to_bool,
)
from neutrino.services.cloud import Cloud
from neutrino.services.core import Context, Page, Tx


@dataclass(frozen=True)
class Collection:
    resource: Resource
    create: Callable[[Tx, dict[str, Any]], dict[str, Any]]
    list: Callable[[Tx, dict[str, list[str]]], list[dict[str, Any]]]
    get: Callable[[Tx, str], dict[str, Any]]
    update: Callable[..., dict[str, Any]]
    delete: Callable[..., None]
    quota: str
    list_writes: bool = False
    sql_filters: frozenset[str] = frozenset()  # filters the service applies exactly in SQL (keyset paging)
    sql_visibility: bool = False  # the service restricts non-admin callers in SQL too


COLLECTIONS: dict[str, Collection] = {
    "networks": Collection(RESOURCES["network"], networks.create_network, networks.list_networks,
                           networks.get_network, networks.update_network, networks.delete_network, "network",
                           sql_filters=frozenset({"id", "name"})),
    "subnets": Collection(RESOURCES["subnet"], networks.create_subnet, networks.list_subnets, networks.get_subnet,
                          networks.update_subnet, networks.delete_subnet, "subnet",
                          sql_filters=frozenset({"id", "name", "network_id"})),
    "ports": Collection(RESOURCES["port"], ports.create_port, ports.list_ports, ports.get_port, ports.update_port,
                        ports.delete_port, "port", sql_visibility=True,
                        sql_filters=frozenset({"id", "network_id", "device_id", "device_owner", "name",
                                               "mac_address"})),
    "routers": Collection(RESOURCES["router"], routers.create_router, routers.list_routers, routers.get_router,
                          routers.update_router, routers.delete_router, "router"),
    "floatingips": Collection(RESOURCES["floatingip"], floatingips.create_fip, floatingips.list_fips,
                              floatingips.get_fip, floatingips.update_fip, floatingips.delete_fip, "floatingip"),
    "security-groups": Collection(RESOURCES["security_group"], securitygroups.create_group,
                                  securitygroups.list_groups, securitygroups.get_group, securitygroups.update_group,
                                  securitygroups.delete_group, "security_group", list_writes=True),
    "security-group-rules": Collection(RESOURCES["security_group_rule"], securitygroups.create_rule,
                                       securitygroups.list_rules, securitygroups.get_rule,
                                       securitygroups.update_rule, securitygroups.delete_rule,
                                       "security_group_rule", list_writes=True),
    "subnetpools": Collection(RESOURCES["subnetpool"], subnetpools.create_subnetpool, subnetpools.list_subnetpools,
                              subnetpools.get_subnetpool, subnetpools.update_subnetpool,
                              subnetpools.delete_subnetpool, "subnetpool"),
    "address-scopes": Collection(RESOURCES["address_scope"], subnetpools.create_scope, subnetpools.list_scopes,
                                 subnetpools.get_scope, subnetpools.update_scope, subnetpools.delete_scope,
                                 "address_scope"),
}

EXTENSIONS = (
    ("router", "Neutron L3 Router"),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode"),
    ("external-net", "Neutron external network"),
    ("extraroute", "Neutron Extra Route"),
    ("security-group", "security-group"),
    ("binding", "Port Binding"),
    ("port-security", "Port Security"),
    ("allowed-address-pairs", "Allowed Address Pairs"),
    ("provider", "Provider Network"),
    ("net-mtu", "Network MTU"),
    ("net-mtu-writable", "Network MTU (writable)"),
    ("project-id", "project_id field enabled"),
    ("standard-attr-description", "standard-attr-description"),
    ("standard-attr-timestamp", "Resource timestamps"),
    ("standard-attr-revisions", "Resource revision numbers"),
    ("standard-attr-tag", "Tag support for resources with standard attribute: subnet, router, network, port, "
                          "subnetpool, security_group, floatingip"),
    ("revision-if-match", "If-Match constraints based on revision_number"),
    ("pagination", "Pagination support"),
    ("sorting", "Sorting support"),
    ("filter-validation", "Filter parameters validation"),
    ("ip-substring-filtering", "IP address substring filtering"),
    ("availability_zone", "Availability Zone"),
    ("network_availability_zone", "Network Availability Zone"),
    ("router_availability_zone", "Router Availability Zone"),
    ("quotas", "Quota management support"),
    ("quota_details", "Quota details management support"),
    ("fip-port-details", "Floating IP Port Details Extension"),
    ("agent", "agent"),
    ("subnet-external-network", "Subnet External Network"),
    ("security-groups-normalized-cidr", "Security Group Rule normalized CIDR field"),
    ("security-groups-rules-belongs-to-default-sg", "Security group rule belongs to the project's default "
                                                    "security group"),
    ("stateful-security-group", "Stateful security group"),
    ("port-security-groups-filtering", "Port filtering on security groups"),
    ("quota-check-limit", "Quota engine limit check"),
    ("quota-check-limit-default", "Default quota engine limit check"),
    ("subnet_allocation", "Subnet Allocation"),
    ("default-subnetpools", "Default Subnetpools"),
    ("subnetpool-prefix-ops", "Subnet Pool Prefix Operations"),
    ("address-scope", "Address scope"),
)


def _extension(alias: str, name: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": f"{name}.", "updated": "2013-01-01T00:00:00-00:00",
            "links": []}


def _revision(request: Request) -> int | None:
    h = request.headers.get("if-match")
    if not h:
        return None
    m = re.fullmatch(r"\s*revision_number=(\d+)\s*", h)
    if not m:
        raise InvalidInput(f"Unrecognized If-Match header: '{h}'", neutron_type="HTTPBadRequest")
    return int(m.group(1))


def versions(request: Request) -> Response:
    base = base_url(request)
    return json_response({"versions": [{"id": "v2.0", "status": "CURRENT",
                                        "links": [{"rel": "self", "href": f"{base}/v2.0/"}]}]})


def _v2_index(request: Request) -> Response:
    base = base_url(request)
    res = [{"name": s, "collection": p, "links": [{"rel": "self", "href": f"{base}/v2.0/{p}"}]}
           for s, p in (("network", "networks"), ("subnet", "subnets"), ("subnetpool", "subnetpools"),
                        ("port", "ports"))]
    return json_response({"resources": res, "version": {"id": "v2.0", "status": "CURRENT", "links": [
        {"rel": "self", "href": f"{base}/v2.0/"}]}})


class NeutronAPI:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    async def handle(self, request: Request, parts: list[str], ctx: Context) -> Response:
        """``parts`` are the path segments after ``v2.0``."""
        method = request.method
        if not parts:
            return _v2_index(request) if method == "GET" else neutron_error(405, "Method not allowed")
        parts[-1] = parts[-1].removesuffix(".json")
        head = parts[0]
        if head in COLLECTIONS:
            return await self._collection(request, COLLECTIONS[head], head, parts[1:], ctx)
        if head == "extensions":
            return self._extensions(method, parts[1:])
        if head == "availability_zones":
            if method != "GET":
                return neutron_error(405, "Method not allowed")
            return json_response({"availability_zones": [
                {"name": "nova", "resource": r, "state": "available"} for r in ("network", "router")]})
        if head == "agents":
            return await self._agents(request, parts[1:], ctx)
        if head == "quotas":
            return await self._quotas(request, parts[1:], ctx)
        if head in ("network-ip-availabilities", "rbac-policies"):
            if method == "GET" and len(parts) == 1:
                return json_response({head.replace("-", "_"): []})
            return neutron_error(404, "The resource could not be found.")
        return neutron_error(404, "The resource could not be found.")

    # -- generic collections ------------------------------------------------------------------------

    async def _collection(self, request: Request, coll: Collection, name: str, rest: list[str], ctx: Context
                          ) -> Response:
        res = coll.resource
        method = request.method
        if not rest:
            if method == "GET":
                q = listing.parse(request.query_params.multi_items(), res.known() | _extra_filters(name))
                pre = {k: v for k, v in q.filters.items()}
                if name == "subnets" and "shared" in q.filters:
                    # a subnet's 'shared' is its network's, filterable but not shown (the service filters)
                    del q.filters["shared"]
                txm = self.cloud.write if coll.list_writes else self.cloud.read
                pushdown = _pushdown(coll, q, ctx)
                with txm(ctx) as tx:
                    if name == "security-groups":
                        securitygroups.ensure_default_group(tx, ctx.project_id)
                    items = coll.list(tx, pre, pushdown) if pushdown else coll.list(tx, pre)
                if pushdown:
                    more = len(items) > pushdown.limit
                    page = items[:pushdown.limit]
                    if pushdown.reverse:
                        page.reverse()
                else:
                    page, more = listing.apply(items, q, kind=res.singular)
                body: dict[str, Any] = {res.plural: [listing.project(i, q.fields) for i in page]}
                page_links = listing.links(base_url(request), name, q, page, more)
                if page_links:
                    body[f"{res.plural}_links"] = page_links
                return json_response(body)
            if method == "POST":
                payload = await read_json(request)
                return self._create(coll, payload, ctx)
            return neutron_error(405, "Method not allowed")
        rid = rest[0]
        if len(rest) >= 2 and rest[1] == "tags":
            return await self._tags(request, name, rid, rest[2:], ctx)
        if len(rest) == 2 and name == "routers" and rest[1] in ("add_router_interface", "remove_router_interface"):
            if method != "PUT":
                return neutron_error(405, "Method not allowed")
            body = await read_json(request)
            with self.cloud.write(ctx) as tx:
                fn = routers.add_interface if rest[1] == "add_router_interface" else routers.remove_interface
                return json_response(fn(tx, rid, body))
        if len(rest) == 2 and name == "subnetpools" and rest[1] in ("add_prefixes", "remove_prefixes"):
            if method != "PUT":
                return neutron_error(405, "Method not allowed")
            body = await read_json(request)
            with self.cloud.write(ctx) as tx:
                return json_response(subnetpools.change_prefixes(tx, rid, body, add=rest[1] == "add_prefixes"))
        if len(rest) != 1:
            return neutron_error(404, "The resource could not be found.")
        if method == "GET":
            fields = [v for k, v in request.query_params.multi_items() if k == "fields"]
            with self.cloud.read(ctx) as tx:
                item = coll.get(tx, rid)
            return json_response({res.singular: listing.project(item, fields)})
        if method == "PUT":
            revision = _revision(request)
            payload = await read_json(request)
            if not isinstance(payload, dict) or res.singular not in payload:
                raise bad_request(f"Unable to find '{res.singular}' in request body")
            attrs = prepare_body(res, payload[res.singular], create=False)
            with self.cloud.write(ctx) as tx:
                item = coll.update(tx, rid, attrs, revision)
            return json_response({res.singular: item})
        if method == "DELETE":
            revision = _revision(request)
            if (await request.body()).strip():
                raise bad_request("Request body is not supported in DELETE.")
            with self.cloud.write(ctx) as tx:
                coll.delete(tx, rid, revision)
            return json_response(None, 204)
        return neutron_error(405, "Method not allowed")

    def _create(self, coll: Collection, payload: Any, ctx: Context) -> Response:
        res = coll.resource
        if isinstance(payload, dict) and res.plural in payload and res.singular not in payload:
            items = payload[res.plural]
            if not isinstance(items, list) or not items:
                raise bad_request("Resources required")
            bodies = [i[res.singular] if isinstance(i, dict) and set(i) == {res.singular} else i for i in items]
            prepared = [prepare_body(res, b, create=True) for b in bodies]
            with self.cloud.write(ctx) as tx:
                projects = [p.get("project_id", ctx.project_id) for p in prepared]
                for proj in set(projects):
                    quotas.check(tx, proj, coll.quota, projects.count(proj))
                out = [coll.create(tx, attrs) for attrs in prepared]
            return json_response({res.plural: out}, 201)
        if not isinstance(payload, dict) or res.singular not in payload:
            raise bad_request(f"Unable to find '{res.singular}' in request body")
        attrs = prepare_body(res, payload[res.singular], create=True)
        with self.cloud.write(ctx) as tx:
            quotas.check(tx, attrs.get("project_id", ctx.project_id), coll.quota)
            item = coll.create(tx, attrs)
        return json_response({res.singular: item}, 201)

    # -- tags -----------------------------------------------------------------------------------------

    async def _tags(self, request: Request, coll: str, rid: str, rest: list[str], ctx: Context) -> Response:
        if coll not in tags.MODELS:
            return neutron_error(404, "The resource could not be found.")
        method = request.method
        tag = rest[0] if rest else None
        if method == "GET":
            with self.cloud.read(ctx) as tx:
                if tag is None:
                    return json_response({"tags": tags.get_all(tx, coll, rid)})
                found = tags.has(tx, coll, rid, tag)
            return json_response(None, 204) if found else neutron_error(404, f"Tag {tag} could not be found.",
                                                                        "TagNotFound")
        if method == "PUT":
            if tag is None:
                body = await read_json(request)
                with self.cloud.write(ctx) as tx:
                    return json_response({"tags": tags.replace(tx, coll, rid, body)})
            with self.cloud.write(ctx) as tx:
                tags.add(tx, coll, rid, tag)
            return json_response(None, 201)
        if method == "DELETE":
            with self.cloud.write(ctx) as tx:
                tags.remove(tx, coll, rid, tag)
            return json_response(None, 204)
        return neutron_error(405, "Method not allowed")

    # -- extensions, agents, quotas ---------------------------------------------------------------------

    def _extensions(self, method: str, rest: list[str]) -> Response:
        if method != "GET":
            return neutron_error(405, "Method not allowed")
        if not rest:
            return json_response({"extensions": [_extension(a, n) for a, n in EXTENSIONS]})
        for a, n in EXTENSIONS:
            if rest[0] == a:
                return json_response({"extension": _extension(a, n)})
        return neutron_error(404, f"Extension with alias {rest[0]} does not exist", "ExtensionNotFound")

    async def _agents(self, request: Request, rest: list[str], ctx: Context) -> Response:
        method = request.method
        if not rest:
            if method != "GET":
                return neutron_error(405, "Method not allowed")
            known = {"id", "agent_type", "binary", "topic", "host", "admin_state_up", "alive", "availability_zone",
                     "description"}
            q = listing.parse(request.query_params.multi_items(), known)
            if not ctx.is_admin:  # Neutron's policy: agents are admin only; a listing is filtered to nothing
                return json_response({"agents": []})
            with self.cloud.read(ctx) as tx:
                items = agents.list_agents(tx, q.filters)
            page, _ = listing.apply(items, q, kind="agent")
            return json_response({"agents": [listing.project(i, q.fields) for i in page]})
        if len(rest) > 1 or not ctx.is_admin:  # an agent a caller may not read is not found
            return neutron_error(404, "The resource could not be found.")
        if method == "GET":
            with self.cloud.read(ctx) as tx:
                return json_response({"agent": agents.get_agent(tx, rest[0])})
        if method == "PUT":
            body = await read_json(request)
            if not isinstance(body, dict) or not isinstance(body.get("agent"), dict):
                raise bad_request("Unable to find 'agent' in request body")
            attrs = dict(body["agent"])
            unknown = set(attrs) - set(AGENT_ATTRS)
            if unknown:
                raise bad_request(f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'")
            for k, conv in AGENT_ATTRS.items():
                if k in attrs:
                    try:
                        attrs[k] = conv(attrs[k])
                    except ValueError as e:
                        raise bad_request(f"Invalid input for {k}. Reason: {e}.") from None
            with self.cloud.write(ctx) as tx:
                return json_response({"agent": agents.update_agent(tx, rest[0], attrs)})
        if method == "DELETE":
            with self.cloud.write(ctx) as tx:
                agents.delete_agent(tx, rest[0])
            return json_response(None, 204)
        return neutron_error(405, "Method not allowed")

    async def _quotas(self, request: Request, rest: list[str], ctx: Context) -> Response:
        method = request.method
        if not rest:
            with self.cloud.read(ctx) as tx:
                return json_response({"quotas": [{"project_id": p, "tenant_id": p, **quotas.limits(tx, p)}
                                                 for p in quotas.projects_with_quotas(tx)]})
        project = ctx.project_id if rest[0] == "tenant" else rest[0]
        sub = rest[1] if len(rest) > 1 else None
        if method == "GET":
            with self.cloud.read(ctx) as tx:
                if sub == "details":
                    return json_response({"quota": quotas.details(tx, project)})
                if sub == "default":
                    return json_response({"quota": dict(quotas.DEFAULTS)})
                return json_response({"quota": quotas.limits(tx, project)})
        if method == "PUT" and sub is None:
            body = await read_json(request)
            if not isinstance(body, dict) or "quota" not in body:
                raise bad_request("Unable to find 'quota' in request body")
            quota = dict(body["quota"]) if isinstance(body["quota"], dict) else body["quota"]
            force = False
            if isinstance(quota, dict):
                # Neutron: 'force' skips the check of the new limits against what is in use;
                # 'check_limit' is accepted and ignored (the check is the default)
                force = quota.pop("force", None) is True
                quota.pop("check_limit", None)
            limits = _quota_body(quota)
            _project_in_path(project)
            with self.cloud.write(ctx) as tx:
                return json_response({"quota": quotas.update(tx, project, limits, force=force)})
        if method == "DELETE" and sub is None:
            _project_in_path(project)
            with self.cloud.write(ctx) as tx:
                quotas.reset(tx, project)
            return json_response(None, 204)
        return neutron_error(405, "Method not allowed")


AGENT_ATTRS = {"admin_state_up": to_bool, "description": string_or_none(255)}
QUOTA_VALUE = int_range(-1, DB_INTEGER_MAX)


def _quota_body(body: Any) -> dict[str, int]:
    """A quota update: known resources, each an integer from -1 (unlimited) up."""
    if not isinstance(body, dict):
        raise bad_request(f"Invalid input for quota. Reason: '{body}' is not a dictionary.")
    out: dict[str, int] = {}
    for k, v in body.items():
        if k not in quotas.DEFAULTS:
            raise bad_request(f"Unrecognized attribute(s) '{k}'")
        try:
            out[k] = QUOTA_VALUE(v)
        except ValueError as e:
            raise bad_request(f"Invalid input for {k}. Reason: {e}.") from None
    return out


def _project_in_path(project: str) -> None:
    if len(project) > PROJECT_ID_MAX:
        raise bad_request(f"Invalid input for project_id. Reason: '{project}' exceeds maximum length of "
                          f"{PROJECT_ID_MAX}.")


def _pushdown(coll: Collection, q: listing.ListQuery, ctx: Context) -> Page | None:
    """Keyset pagination in SQL when the query allows it (the common ``limit``/``marker`` listing)."""
    if q.limit is None or not coll.sql_filters or q.tags:
        return None
    if q.sort and q.sort != [("id", True)]:
        return None
    if not set(q.filters) <= coll.sql_filters or not (ctx.is_admin or coll.sql_visibility):
        return None
    return Page(q.limit, q.marker, q.page_reverse)


def _extra_filters(collection: str) -> set[str]:
    extra = {"fixed_ips", "ip_address", "subnet_id", "shared", "router:external", "dns_name"}
    if collection == "floatingips":
        extra |= {"floating_network_id", "port_id", "router_id", "fixed_ip_address"}
    return extra
