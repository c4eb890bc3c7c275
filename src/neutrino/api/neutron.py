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

from neutrino.api import listing, policy
from neutrino.api.common import base_url, dumps, encoded_response, json_response, neutron_error, read_json
from neutrino.errors import InvalidInput, NotAuthorized
from neutrino.services import (
    agents,
    floatingips,
    ipavailability,
    networks,
    portforwardings,
    ports,
    quotas,
    rbac,
    routers,
    scheduling,
    securitygroups,
    subnetpools,
    tags,
)
from neutrino.services.attributes import (
    DB_INTEGER_MAX,
    PORT_FORWARDING,
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
    "rbac-policies": Collection(RESOURCES["rbac_policy"], rbac.create_policy, rbac.list_policies, rbac.get_policy,
                                rbac.update_policy, rbac.delete_policy, "rbac_policy"),
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
    ("l3-ha", "HA Router extension"),
    ("dvr", "Distributed Virtual Router"),
    ("router-admin-state-down-before-update", "Enforce Router's Admin State Down Before Update Extension"),
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
    ("extra_dhcp_opt", "Neutron Extra DHCP options"),
    ("dhcp_agent_scheduler", "DHCP Agent Scheduler"),
    ("l3_agent_scheduler", "L3 Agent Scheduler"),
    ("rbac-policies", "RBAC Policies"),
    ("rbac-security-groups", "Add security_group type to network RBAC"),
    ("network-ip-availability", "Network IP Availability"),
    ("floating-ip-port-forwarding", "Floating IP Port Forwarding"),
    ("floating-ip-port-forwarding-description", "Floating IP Port Forwarding new attribute description"),
    ("floating-ip-port-forwarding-port-ranges", "Floating IP Port Forwarding support port ranges"),
    ("floating-ip-port-forwarding-detail", "Floating IP port forwarding detail"),
    ("expose-port-forwarding-in-fip", "Expose Floating IP port forwardings"),
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
        if method in WRITES and not policy.can_write(ctx):
            self._refuse_reader(method, parts, ctx)
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
        if head == "network-ip-availabilities":
            return self._ip_availabilities(request, parts[1:], ctx)
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
                if name == "ports" and _plain_port_listing(coll, q, pushdown):
                    return self._port_listing(request, q, pre, pushdown, ctx)
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
                body: dict[str, Any] = {res.plural: [
                    listing.project(policy.visible_attrs(ctx, res.singular, i), q.fields) for i in page]}
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
        if len(rest) in (2, 3) and name == "floatingips" and rest[1] == "port_forwardings":
            return await self._port_forwardings(request, rid, rest[2:], ctx)
        if len(rest) == 2 and name == "routers" and rest[1] in ("add_router_interface", "remove_router_interface"):
            if method != "PUT":
                return neutron_error(405, "Method not allowed")
            body = await read_json(request)
            with self.cloud.write(ctx) as tx:
                fn = routers.add_interface if rest[1] == "add_router_interface" else routers.remove_interface
                return json_response(fn(tx, rid, body))
        if len(rest) == 2 and (name, rest[1]) in (("networks", "dhcp-agents"), ("routers", "l3-agents")):
            if method != "GET":
                return neutron_error(405, "Method not allowed")
            _scheduling_policy(ctx, f"get_{rest[1]}")
            with self.cloud.read(ctx) as tx:
                fn = scheduling.dhcp_agents_of_network if name == "networks" else scheduling.l3_agents_of_router
                return json_response({"agents": fn(tx, rid)})
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
            return json_response({res.singular: listing.project(policy.visible_attrs(ctx, res.singular, item),
                                                                fields)})
        if method == "PUT":
            revision = _revision(request)
            payload = await read_json(request)
            if not isinstance(payload, dict) or res.singular not in payload:
                raise bad_request(f"Unable to find '{res.singular}' in request body")
            attrs = prepare_body(res, payload[res.singular], create=False)
            self._check_change(coll, name, rid, "update", ctx, payload[res.singular], attrs)
            with self.cloud.write(ctx) as tx:
                item = coll.update(tx, rid, attrs, revision)
            return json_response({res.singular: policy.visible_attrs(ctx, res.singular, item)})
        if method == "DELETE":
            revision = _revision(request)
            if (await request.body()).strip():
                raise bad_request("Request body is not supported in DELETE.")
            if coll.delete is ports.delete_port:  # (a non-admin's policy check made on the delete's head)
                with self.cloud.write(ctx) as tx:
                    ports.delete_port(tx, rid, revision, last=True,  # the transaction ends with it
                                      check=None if ctx.is_admin else lambda head: _port_delete_check(tx, ctx, head))
                return json_response(None, 204)
            self._check_change(coll, name, rid, "delete", ctx)
            with self.cloud.write(ctx) as tx:
                coll.delete(tx, rid, revision)
            return json_response(None, 204)
        return neutron_error(405, "Method not allowed")

    def _port_listing(self, request: Request, q: listing.ListQuery, filters: dict[str, list[str]],
                      pushdown: Page | None, ctx: Context) -> Response:
        """``GET /ports`` without fields, tags, sorting or filters the SQL does not apply: the body
        spliced from each port's JSON (``ports.list_ports_json``), the same bytes as the generic path."""
        hidden = frozenset() if ctx.is_admin else policy.ADMIN_GET["port"]
        with self.cloud.read(ctx) as tx:
            items = ports.list_ports_json(tx, filters, pushdown, hidden)
        more = False
        if pushdown:
            more = len(items) > pushdown.limit
            items = items[:pushdown.limit]
            if pushdown.reverse:
                items.reverse()
        body = b'{"ports":[' + b",".join([data for _, data in items]) + b"]"
        if q.limit is not None:  # pagination links: only the page's ends and its length matter
            page_links = listing.links(base_url(request), "ports", q, [{"id": pid} for pid, _ in items], more)
            if page_links:
                body += b',"ports_links":' + dumps(page_links)
        return encoded_response(body + b"}")

    def _create(self, coll: Collection, payload: Any, ctx: Context) -> Response:
        res = coll.resource
        if isinstance(payload, dict) and res.plural in payload and res.singular not in payload:
            items = payload[res.plural]
            if not isinstance(items, list) or not items:
                raise bad_request("Resources required")
            bodies = [i[res.singular] if isinstance(i, dict) and set(i) == {res.singular} else i for i in items]
            prepared = [prepare_body(res, b, create=True) for b in bodies]
            for b, p in zip(bodies, prepared, strict=True):
                self._check_create(res.singular, b, p, ctx)
            with self.cloud.write(ctx) as tx:
                projects = [p.get("project_id", ctx.project_id) for p in prepared]
                for proj in set(projects):
                    quotas.check(tx, proj, coll.quota, projects.count(proj))
                out = [coll.create(tx, attrs) for attrs in prepared]
            return json_response({res.plural: [policy.visible_attrs(ctx, res.singular, i) for i in out]}, 201)
        if not isinstance(payload, dict) or res.singular not in payload:
            raise bad_request(f"Unable to find '{res.singular}' in request body")
        attrs = prepare_body(res, payload[res.singular], create=True)
        self._check_create(res.singular, payload[res.singular], attrs, ctx)
        with self.cloud.write(ctx) as tx:
            if coll.create is ports.create_port:  # the quota read with the port's network (checked first still)
                item = ports.create_port(tx, attrs, quota_project=attrs.get("project_id", ctx.project_id),
                                         last=True)  # the transaction ends with it
            else:
                quotas.check(tx, attrs.get("project_id", ctx.project_id), coll.quota)
                item = coll.create(tx, attrs)
        return json_response({res.singular: policy.visible_attrs(ctx, res.singular, item)}, 201)

    # -- policy (neutrino.api.policy) ------------------------------------------------------------------

    def _refuse_reader(self, method: str, parts: list[str], ctx: Context) -> None:
        """A write by a caller without the member role: 404 for a resource it cannot see (Neutron looks
        it up first), else 403 on the action's rule."""
        head = parts[0]
        if head == "agents":  # an agent is not found for a non-admin, whatever the method
            return
        coll = COLLECTIONS.get(head)
        singular = coll.resource.singular if coll else head.removesuffix("s").replace("-", "_")
        if coll is not None and len(parts) >= 2:
            with self.cloud.read(ctx) as tx:
                coll.get(tx, parts[1])
        verb = {"POST": "create", "DELETE": "delete"}.get(method, "update")
        if len(parts) >= 3 and parts[2] == "tags":
            rule = f"{verb}_{singular}:tags"
        elif len(parts) >= 3 and parts[2] == "port_forwardings":
            rule = f"{verb}_floatingip_port_forwarding"
        elif len(parts) >= 3:
            rule = parts[2]  # add_router_interface, add_prefixes...
        elif head == "quotas":
            rule = f"{verb}_quota"
        else:
            rule = f"{verb}_{singular}"
        raise policy.denied(rule)

    def _check_create(self, singular: str, raw: Any, attrs: dict[str, Any], ctx: Context) -> None:
        if ctx.is_admin:
            return
        policy.check_create(ctx, singular, raw, attrs)
        if singular == "port" and isinstance(raw, dict):
            wanted = policy.net_owner_attrs(raw)
            if wanted and isinstance(attrs.get("network_id"), str):
                with self.cloud.read(ctx) as tx:
                    owner = networks.get_network(tx, attrs["network_id"])["project_id"]
                if owner != ctx.project_id:
                    raise policy.denied("create_port", *wanted)

    def _check_change(self, coll: Collection, name: str, rid: str, action: str, ctx: Context, raw: Any = None,
                      attrs: dict[str, Any] | None = None) -> None:
        """``update_``/``delete_<resource>`` by a non-admin: the resource must be visible (404), owned
        (or, for a port, on the caller's network; for a rule, in the caller's group), and the body
        free of admin-only attributes (403)."""
        if ctx.is_admin:
            return
        singular = coll.resource.singular
        also: list[str | None] = []
        with self.cloud.read(ctx) as tx:
            item = coll.get(tx, rid)
            if item.get("project_id") != ctx.project_id:
                if name in ("ports", "subnets") and isinstance(item.get("network_id"), str):
                    also.append(networks.get_network(tx, item["network_id"]).get("project_id"))
                if name == "security-group-rules" and isinstance(item.get("security_group_id"), str):
                    also.append(securitygroups.get_group(tx, item["security_group_id"]).get("project_id"))
        policy.check_change(ctx, singular, action, item, raw, attrs, also=tuple(also))
        if singular == "port" and action == "update" and isinstance(raw, dict):
            wanted = policy.net_owner_attrs(raw)
            if wanted and ctx.project_id not in also and item.get("project_id") == ctx.project_id:
                with self.cloud.read(ctx) as tx:
                    owner = networks.get_network(tx, item["network_id"])["project_id"]
                if owner != ctx.project_id:
                    raise policy.denied("update_port", *wanted)

    # -- tags -----------------------------------------------------------------------------------------

    async def _tags(self, request: Request, coll: str, rid: str, rest: list[str], ctx: Context) -> Response:
        if coll not in tags.MODELS:
            return neutron_error(404, "The resource could not be found.")
        method = request.method
        tag = rest[0] if rest else None
        if method in WRITES and not ctx.is_admin and coll in COLLECTIONS:  # the resource's owner only
            with self.cloud.read(ctx) as tx:
                owner = COLLECTIONS[coll].get(tx, rid).get("project_id")
            if owner != ctx.project_id:
                verb = "delete" if method == "DELETE" else "update"
                raise policy.denied(f"{verb}_{COLLECTIONS[coll].resource.singular}:tags")
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

    # -- a floating IP's port forwardings ----------------------------------------------------------------

    async def _port_forwardings(self, request: Request, fip_id: str, rest: list[str], ctx: Context) -> Response:
        res, method = PORT_FORWARDING, request.method
        pf_id = rest[0] if rest else None
        if method == "GET":
            if pf_id is None:
                q = listing.parse(request.query_params.multi_items(), res.known() - {"tags"})
                for k in ("internal_ip_address", "internal_port"):
                    if k in q.filters:
                        raise bad_request(f"Port Forwarding filter {k} is not supported.")
                with self.cloud.read(ctx) as tx:
                    items = portforwardings.list_pfs(tx, fip_id, {})
                page, more = listing.apply(items, q, kind="port_forwarding")
                body: dict[str, Any] = {res.plural: [listing.project(i, q.fields) for i in page]}
                page_links = listing.links(base_url(request), f"floatingips/{fip_id}/port_forwardings", q, page,
                                           more)
                if page_links:
                    body[f"{res.plural}_links"] = page_links
                return json_response(body)
            fields = [v for k, v in request.query_params.multi_items() if k == "fields"]
            with self.cloud.read(ctx) as tx:
                item = portforwardings.get_pf(tx, fip_id, pf_id)
            return json_response({res.singular: listing.project(item, fields)})
        if method == "POST" and pf_id is None:
            payload = await read_json(request)
            if not isinstance(payload, dict) or res.singular not in payload:
                raise bad_request(f"Unable to find '{res.singular}' in request body")
            attrs = prepare_body(res, payload[res.singular], create=True)
            with self.cloud.write(ctx) as tx:
                item = portforwardings.create_pf(tx, fip_id, attrs)
            return json_response({res.singular: item}, 201)
        if method == "PUT" and pf_id is not None:
            payload = await read_json(request)
            if not isinstance(payload, dict) or res.singular not in payload:
                raise bad_request(f"Unable to find '{res.singular}' in request body")
            attrs = prepare_body(res, payload[res.singular], create=False)
            with self.cloud.write(ctx) as tx:
                item = portforwardings.update_pf(tx, fip_id, pf_id, attrs)
            return json_response({res.singular: item})
        if method == "DELETE" and pf_id is not None:
            with self.cloud.write(ctx) as tx:
                portforwardings.delete_pf(tx, fip_id, pf_id)
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

    def _ip_availabilities(self, request: Request, rest: list[str], ctx: Context) -> Response:
        """Network IP availability: read only, and admin only (Neutron's default policy: for anyone
        else a listing is empty and a network's is not found)."""
        if request.method != "GET":
            return neutron_error(405, "Method not allowed")
        if len(rest) > 1:
            return neutron_error(404, "The resource could not be found.")
        known = ipavailability.FILTERS | {"total_ips", "used_ips", "subnet_ip_availability"}
        q = listing.parse(request.query_params.multi_items(), known)
        if not rest:
            items: list[dict[str, Any]] = []
            if ctx.is_admin:
                with self.cloud.read(ctx) as tx:
                    items = ipavailability.list_availabilities(tx, q.filters)
            q.filters = {k: v for k, v in q.filters.items() if k not in ipavailability.FILTERS}
            page, _ = listing.apply(items, q, kind="network_ip_availability")
            return json_response({"network_ip_availabilities": [listing.project(i, q.fields) for i in page]})
        if not ctx.is_admin:
            return neutron_error(404, "The resource could not be found.", "HTTPNotFound")
        with self.cloud.read(ctx) as tx:
            item = ipavailability.get_availability(tx, rest[0])
        return json_response({"network_ip_availability": listing.project(item, q.fields)})

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
            if "agent_type" in q.filters:  # Neutron on MySQL matches it case-insensitively ("DHCP Agent")
                q.filters["agent_type"] = agents.canonical_types(q.filters["agent_type"])
            with self.cloud.read(ctx) as tx:
                items = agents.list_agents(tx, q.filters)
            page, _ = listing.apply(items, q, kind="agent")
            return json_response({"agents": [listing.project(i, q.fields) for i in page]})
        if len(rest) in (2, 3) and rest[1] in ("dhcp-networks", "l3-routers"):
            return await self._agent_scheduling(request, rest, ctx)
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

    async def _agent_scheduling(self, request: Request, rest: list[str], ctx: Context) -> Response:
        """``/agents/{id}/dhcp-networks[/{network_id}]`` and ``/agents/{id}/l3-routers[/{router_id}]``
        (admin only: Neutron's policy ``<action>_dhcp-network(s)``, ``<action>_l3-router(s)``)."""
        method = request.method
        agent_id, sub = rest[0], rest[1]
        dhcp = sub == "dhcp-networks"
        key = "network_id" if dhcp else "router_id"
        if len(rest) == 2 and method == "GET":
            _scheduling_policy(ctx, f"get_{sub}")
            with self.cloud.read(ctx) as tx:
                if dhcp:
                    return json_response({"networks": scheduling.networks_on_agent(tx, agent_id)})
                return json_response({"routers": scheduling.routers_on_agent(tx, agent_id)})
        if len(rest) == 2 and method == "POST":
            _scheduling_policy(ctx, f"create_{sub[:-1]}")
            body = await read_json(request)
            if not isinstance(body, dict) or key not in body:
                raise bad_request(f"Failed to parse request. Required attribute '{key}' not specified")
            with self.cloud.write(ctx) as tx:
                add = scheduling.add_network_to_agent if dhcp else scheduling.add_router_to_agent
                add(tx, agent_id, str(body[key]))
            return Response(b"null", status_code=201, media_type="application/json")
        if len(rest) == 3 and method == "DELETE":
            _scheduling_policy(ctx, f"delete_{sub[:-1]}")
            with self.cloud.write(ctx) as tx:
                remove = scheduling.remove_network_from_agent if dhcp else scheduling.remove_router_from_agent
                remove(tx, agent_id, rest[2])
            return json_response(None, 204)
        return neutron_error(405, "Method not allowed")

    async def _quotas(self, request: Request, rest: list[str], ctx: Context) -> Response:
        method = request.method
        if method in WRITES:
            policy.check_admin(ctx, "delete_quota" if method == "DELETE" else "update_quota")
        if not rest:
            policy.check_get_quota(ctx, None)
            with self.cloud.read(ctx) as tx:
                return json_response({"quotas": [{"project_id": p, "tenant_id": p, **quotas.limits(tx, p)}
                                                 for p in quotas.projects_with_quotas(tx)]})
        project = ctx.project_id if rest[0] == "tenant" else rest[0]
        sub = rest[1] if len(rest) > 1 else None
        if method == "GET":
            policy.check_get_quota(ctx, project)
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


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _scheduling_policy(ctx: Context, action: str) -> None:
    if not ctx.is_admin:
        raise NotAuthorized(f"rule:{action} is disallowed by policy", neutron_type="PolicyNotAuthorized")


def _port_delete_check(tx: Tx, ctx: Context, head: Any) -> None:
    """``NeutronAPI._check_change``'s check of a non-admin's port delete, made on the port's head in
    the delete's own transaction (``ports.delete_port``'s ``check``) instead of in a read transaction
    before it: the port found and visible there as ``get_port`` finds it, then the network owner's
    project read when the caller does not own the port, then the policy, in the same order."""
    also = () if head.project_id == ctx.project_id else (networks.get_network(tx, head.network_id).get("project_id"),)
    policy.check_change(ctx, "port", "delete", {"project_id": head.project_id}, also=also)


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


def _plain_port_listing(coll: Collection, q: listing.ListQuery, pushdown: Page | None) -> bool:
    """Whether the SQL alone gives the page (no fields, tags or sorting, and filters the SQL applies
    exactly): the listing ``NeutronAPI._port_listing`` answers."""
    if q.fields or q.tags or not set(q.filters) <= coll.sql_filters:
        return False
    return pushdown is not None or (q.limit is None and not q.marker and not q.sort and not q.page_reverse)


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
