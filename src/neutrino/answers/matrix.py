"""``neutrino matrix``: who reaches whom among the instances, the routers, the hosts and the
outside, per protocol, each cell with what decided it (the security-group rule that let the
request in, or where and why it stopped).

Endpoints. Sources are the instances, ``outside`` (the external network's gateway, when the cloud
has one) and the hosts (``host:NAME``: ping or connect run in the host's root namespace).
Destinations are the instances, ``outside`` (an internet address, 203.0.113.1), and the routers'
addresses (``ROUTER:ADDRESS``: each interface's and the gateway's; a subnet gateway that no
router holds, as nova-network's on its bridge, is ``gateway:ADDRESS``). ``hosts=False`` and
``routers=False`` leave those out. From the outside an instance is reached at its floating IP
(none: "no floating IP"); udp is traced from instances only, so the outside's and the hosts' udp
cells are left out.

Classes. Instances that the plumbing cannot tell apart give the same answers: same network, same
security groups, the same answer to each of the groups' address-prefix rules, the same allowed
address pairs, a floating IP or not. Hosts count too: two hosts are alike when they have the same
roles and settings (but for their addresses) and carry instances of the same networks (a
nova-network multi-host compute bridges only its own instances' networks). One representative
pair per pair of classes, per pair of alike hosts and per "on the same host or not" is traced,
and its answer given to every pair of members (``exhaustive=True`` traces every pair instead).
That takes alike hosts to be planned alike, as the agents plan them; a host whose plumbing
differs from its peers' (a hand-made change, an imported capture) is a case for ``exhaustive``.
A pair within one class is traced between two distinct members, so an instance's traffic to
itself never stands for its neighbours'. Alike hosts are one class of sources too
(``host:compute1`` stands for ``host:compute2``); router addresses and the outside are classes
of their own.

Policies (``neutrino matrix --expect POLICY``), a YAML file of up to three lists of rules::

    isolate:            # no cell either way, on any protocol checked, is reachable
      - {from: {network: tenant1}, to: {network: tenant2}}
    deny:               # no cell from -> to is reachable
      - {from: outside, to: {project: demo}, proto: tcp/22}
    allow:              # every cell from -> to is reachable
      - {from: VM_1, to: VM_6, proto: [icmp, tcp/22]}
      - {from: host:controller-1, to: cirros, proto: icmp}

``proto`` is one protocol or a list (default: every protocol of the matrix); the policy's
protocols are added to the matrix's. A selector is a string: an instance's name, ``outside``,
``host:NAME``, ``router:NAME`` (every address of that router; ``router:*``, of every router),
a row's or column's own name (``router1:10.1.0.1``, ``gateway:10.0.0.1``) or ``*`` (every
endpoint); or a mapping whose keys must all hold: ``instance``, ``project`` (name or id),
``network`` (name or id), ``host`` (the host's own endpoint), ``router`` (a name or ``*``). A
mapping selects instances, unless it names a ``router`` (then router addresses: ``{router: '*',
network: tenant2}`` is every router address on tenant2) or a ``host``. A list of selectors
selects what any of them does. A selector that matches nothing, and a rule that checks no cell, are
errors in the policy (like a malformed file: one line naming FILE:LINE, exit 2). Every violation
is one line: where the rule is, the cell, and its deciding rule or drop point.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, ip_network
from typing import Any

import yaml

from neutrino.answers.objects import ImportedNames, Names, annotate, flow_origins, origins_of
from neutrino.answers.objects import empty_cloud as empty_cloud  # the CLI's snapshot for an imported world
from neutrino.errors import InvalidInput
from neutrino.scenarios.model import Identity
from neutrino.services.snapshot import CloudSnapshot, Server
from neutrino.sim.trace import StepKind, Trace
from neutrino.sim.world import HOST_PREFIX, OUTSIDE, World

INTERNET = "203.0.113.1"  # what "outside" stands for as a destination (a documentation address, as on Linux)
DEFAULT_PROTOCOLS = ("icmp", "tcp/22", "tcp/80")
_NOVA_CHAIN = "nova-compute-inst-"  # nova-network's chain of one instance's security-group rules


@dataclass(frozen=True)
class Cell:
    source: str
    destination: str
    proto: str  # "icmp", "tcp/22", ...
    ok: bool
    why: str  # the deciding rule, or the reason and the drop point


@dataclass(frozen=True)
class Endpoint:
    """A row or a column: an instance, ``outside``, a host (``host:NAME``, a source only) or a
    router's address (``ROUTER:ADDRESS`` or ``gateway:ADDRESS``, a destination only)."""

    name: str
    kind: str  # "instance", "outside", "host", "router"
    to: str = ""  # what a probe to it is sent to ("": not a destination)
    host: str = ""  # the host it lives on
    project: str = ""  # project id
    networks: frozenset[str] = frozenset()  # network ids
    router: str = ""  # a router address's router name
    floating: str = ""  # an instance's floating IP: how the outside reaches it


def parse_protocols(items: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for item in items:
        for p in item.split(","):
            p = p.strip()
            name, _, port = p.partition("/")
            if name == "icmp" and not port:
                q = "icmp"
            elif name in ("tcp", "udp") and port.isdigit() and 1 <= int(port) <= 65535:
                q = f"{name}/{int(port)}"
            else:
                raise InvalidInput(f"{p!r}: a protocol is icmp, tcp/PORT or udp/PORT")
            if q not in out:
                out.append(q)
    return tuple(out)


def _split(proto: str) -> tuple[str, int]:
    name, _, port = proto.partition("/")
    return name, int(port) if port else 22


def _fip(cloud: CloudSnapshot, server: Server) -> IPv4Address | None:
    pid = server.port_ids[0] if server.port_ids else None
    f = next((f for f in cloud.floating_ips if pid is not None and f.port_id == pid), None)
    return f.floating_ip_address if f is not None and isinstance(f.floating_ip_address, IPv4Address) else None


def _class_key(cloud: CloudSnapshot, server: Server) -> tuple[object, ...]:
    if not server.port_ids:
        return (server.name,)
    port = cloud.port(server.port_ids[0])
    ips = [f.ip_address for f in port.fixed_ips]
    prefixes = sorted({str(r.remote_ip_prefix) for g in cloud.security_groups for r in g.rules
                       if r.remote_ip_prefix is not None and r.remote_ip_prefix.prefixlen > 0})
    nets = [ip_network(p) for p in prefixes]
    inside = tuple(any(ip in n for ip in ips if ip.version == n.version) for n in nets)
    pairs = tuple(sorted(str(a.ip_address) for a in port.allowed_address_pairs))
    return (port.network_id, tuple(sorted(port.security_group_ids)), port.port_security_enabled,
            _fip(cloud, server) is not None, inside, pairs)


def _host_signatures(cloud: CloudSnapshot) -> dict[str, tuple[object, ...]]:
    """What a host's plumbing follows from: its roles, the networks of its instances (a
    nova-network multi-host compute bridges only those; an OVS agent wires only those), and its
    own settings but for its addresses (bridge mappings, uplinks, which interfaces have an
    address, the default route)."""
    nets: dict[str, set[str]] = {}
    for s in cloud.servers:
        nets.setdefault(s.host, set()).update(cloud.port(p).network_id for p in s.port_ids)
    return {h.name: (tuple(sorted(h.roles)), tuple(sorted(nets.get(h.name, ()))), h.bridge_mappings, h.uplinks,
                     tuple((dev, bool(addr)) for dev, addr in h.interfaces), h.default_gateway, h.default_metric,
                     h.link_local_metric, h.metadata_host)
            for h in cloud.deployment.hosts}


def _imported_endpoints(world: World, *, outside: bool, hosts: bool,
                        routers: bool) -> tuple[list[Endpoint], list[Endpoint]]:
    """An imported deployment's endpoints: its instances (as the captures show them, reached from
    outside at the floating IP a router's or a host's DNAT rule gives them), the outside, its hosts
    and its routers' addresses (``qrouter-<id>:ADDRESS``)."""
    import re

    from neutrino.host.iptables import format_rule

    dnat = re.compile(r"-d (?P<fip>[0-9.]+)/32 .*-j DNAT --to-destination (?P<ip>[0-9.]+)$")
    floating: dict[str, str] = {}
    router_addrs: list[tuple[str, str, str]] = []
    for h in world.hosts.values():
        for ns in h.namespaces:
            for t in ns.iptables.tables if ns.iptables is not None else ():
                for c in t.chains:
                    for r in c.rules:
                        m = dnat.search(format_rule(r))
                        if m:
                            floating.setdefault(m.group("ip"), m.group("fip"))
            if ns.name.startswith("qrouter-"):
                for lk in ns.links or ():
                    for a in lk.addresses:
                        if isinstance(a.interface.ip, IPv4Address) and lk.name.startswith(("qr-", "qg-")) \
                                and a.interface.network.prefixlen < 32:
                            router_addrs.append((h.name, ns.name, str(a.interface.ip)))
    inst = [Endpoint(g.name, "instance", g.name, g.host, floating=floating.get(str(g.fixed_ip), ""))
            for g in world.specs.values() if g.name in world.guests and world.guests[g.name].ip is not None]
    out = Endpoint(OUTSIDE, "outside", INTERNET)
    srcs = inst + ([out] if outside and world.externals else [])
    dsts = inst + ([out] if outside else [])
    if hosts:
        srcs += [Endpoint(f"{HOST_PREFIX}{h}", "host", host=h) for h in world.hosts if h != OUTSIDE]
    if routers:
        seen: set[str] = set()
        for host, space, ip in router_addrs:
            if ip not in seen:
                seen.add(ip)
                dsts.append(Endpoint(f"{space[:16]}:{ip}", "router", ip, host, router=space))
    return srcs, dsts


def endpoints(world: World, cloud: CloudSnapshot, *, outside: bool = True, hosts: bool = True,
              routers: bool = True) -> tuple[list[Endpoint], list[Endpoint]]:
    """The matrix's sources (rows) and destinations (columns), in their order."""
    if getattr(world, "imported", False):
        return _imported_endpoints(world, outside=outside, hosts=hosts, routers=routers)
    servers = [s for s in cloud.servers if s.name in world.guests]
    inst = []
    for s in servers:
        nets = frozenset(cloud.port(p).network_id for p in s.port_ids)
        fip = _fip(cloud, s)
        inst.append(Endpoint(s.name, "instance", s.name, s.host, s.project_id, nets,
                             floating=str(fip) if fip is not None else ""))
    out = Endpoint(OUTSIDE, "outside", INTERNET)
    srcs = inst + ([out] if outside and world.externals else [])
    dsts = inst + ([out] if outside else [])
    if hosts:
        srcs += [Endpoint(f"{HOST_PREFIX}{h.name}", "host", host=h.name) for h in cloud.deployment.hosts
                 if h.name in world.hosts]
    if routers:
        seen: set[str] = set()
        for r in cloud.routers:
            addrs = [(cloud.port(pid).network_id, f.ip_address) for pid in r.interface_port_ids
                     for f in cloud.port(pid).fixed_ips]
            if r.gateway is not None:
                addrs += [(r.gateway.network_id, f.ip_address) for f in r.gateway.external_fixed_ips]
            for net, ip in addrs:
                if isinstance(ip, IPv4Address) and str(ip) not in seen:
                    seen.add(str(ip))
                    dsts.append(Endpoint(f"{r.name}:{ip}", "router", str(ip), r.host, r.project_id,
                                         frozenset({net}), router=r.name))
        used = {n for e in inst for n in e.networks}
        external = {n.id for n in cloud.networks if n.external}
        for sn in cloud.subnets:  # a gateway no router holds: nova-network's, on its bridge
            gw = sn.gateway_ip
            if (isinstance(gw, IPv4Address) and str(gw) not in seen and sn.network_id in used
                    and sn.network_id not in external):
                seen.add(str(gw))
                dsts.append(Endpoint(f"gateway:{gw}", "router", str(gw), "", sn.project_id,
                                     frozenset({sn.network_id})))
    return srcs, dsts


def _why(trace: Trace, names: Names) -> str:
    if trace.succeeded:
        for hop in reversed(trace.hops):  # the last rule that let the request through: the destination's
            for st in reversed(hop.steps):
                if st.kind is StepKind.RULE and ("RETURN" in st.detail or "ACCEPT" in st.detail):
                    allowed = names.allowed_by(st.text)
                    if allowed:
                        return allowed
                    words = st.text.split()
                    if len(words) > 1 and words[1].startswith(_NOVA_CHAIN) and st.detail.startswith("[filter]"):
                        # nova-network: the instance's chain holds its security groups' rules
                        return f"allowed by '{st.text}' (its security groups' chain) at {hop.host} {hop.element}"
        return "no rule in the way"
    v = annotate(trace, names).failure
    assert v is not None
    reason = v.reason.value if v.reason else "dropped"
    return f"{reason}" + (f" at {v.where}" if v.where else "") + (f": {v.obj}" if v.obj else "")


def _flows(world: World) -> dict[tuple[str, str], str]:
    """The planners' objects of the world's flows (the openvswitch firewall's drops are named by
    the port whose flows dropped them): from the host states the world holds, else from the state
    folder's ``hosts/NAME/origins.json``."""
    from neutrino import store

    hosts = world.hosts
    known = hosts.known() if hasattr(hosts, "known") else dict(hosts)
    flows = origins_of(known.values())
    missing = [h for h in hosts if h not in known]
    if missing and store.hosts_dir().is_dir():
        flows.update(flow_origins(store.hosts_dir(), missing))
    return flows


def matrix(world: World, cloud: CloudSnapshot, protocols: Sequence[str] = DEFAULT_PROTOCOLS, *,
           outside: bool = True, exhaustive: bool = False, hosts: bool = True, routers: bool = True,
           ends: tuple[Sequence[Endpoint], Sequence[Endpoint]] | None = None) -> list[Cell]:
    """Every cell, per protocol, row by row (``ends``: the endpoints, if already at hand). An
    imported world's (no snapshot to class its instances by) is traced pair by pair."""
    imported = bool(getattr(world, "imported", False))
    names: Names = ImportedNames.of_world(world) if imported else Names(cloud, _flows(world))
    exhaustive = exhaustive or imported
    srcs, dsts = ends if ends is not None else endpoints(world, cloud, outside=outside, hosts=hosts,
                                                          routers=routers)
    by_name = {s.name: s for s in cloud.servers}
    members: dict[tuple[object, ...], list[str]] = {}
    for e in [*srcs, *dsts]:
        if e.kind == "instance" and e.name in by_name and not exhaustive:
            members.setdefault(_class_key(cloud, by_name[e.name]), []).append(e.name)
    key_of = {n: k for k, ms in members.items() for n in ms}
    sig = _host_signatures(cloud)
    if not exhaustive:  # hosts planned alike send alike
        key_of.update({e.name: ("host", sig.get(e.host)) for e in srcs if e.kind == "host"})
    ident = 30000
    memo: dict[tuple[object, ...], tuple[bool, str, Endpoint, Endpoint]] = {}
    cells: list[Cell] = []
    cls = {e.name: (key_of.get(e.name, e.name), sig.get(e.host)) for e in [*srcs, *dsts]}
    for proto in protocols:
        name, port = _split(proto)
        for s in srcs:
            if name == "udp" and s.kind != "instance":
                continue  # traced from instances only
            ks = cls[s.name]
            for d in dsts:
                if s is d or s.name == d.name:
                    continue
                key = (ks, cls[d.name], proto, True if exhaustive else s.host == d.host)
                got = memo.get(key)
                if got is None:
                    ok, why = _probe(world, names, s, d, name, port, ident)
                    got = memo[key] = (ok, why, s, d)
                    ident = 30000 + (ident - 29999) % 35000
                ok, why, ts, td = got
                if ts is not s or td is not d:
                    why = f"{why} [traced as {ts.name}->{td.name}: the plumbing treats both pairs alike]"
                cells.append(Cell(s.name, d.name, proto, ok, why))
    return cells


def _probe(world: World, names: Names, s: Endpoint, d: Endpoint, name: str, port: int,
           ident: int) -> tuple[bool, str]:
    to = d.to
    if s.kind == "outside" and d.kind == "instance":
        if not d.floating:
            return False, "no floating IP"
        to = d.floating
    try:
        trace = world.probe(s.name, to, proto=name, dport=port, ident=ident)
    except InvalidInput as exc:  # e.g. an instance with no route to the address
        return False, str(exc)
    return trace.succeeded, _why(trace, names)


# ---------------------------------------------------------------------------- output


def to_json(cells: Sequence[Cell]) -> str:
    return json.dumps([asdict(c) for c in cells], indent=1)


def to_csv(cells: Sequence[Cell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["source", "destination", "proto", "ok", "why"])
    for c in cells:
        w.writerow([c.source, c.destination, c.proto, "yes" if c.ok else "no", c.why])
    return buf.getvalue()


def to_table(cells: Sequence[Cell]) -> str:
    """One grid per protocol (rows: sources, columns: destinations; ``ok``, ``--`` or ``.`` for
    the diagonal), then each distinct reason a cell failed, with the cells it explains."""
    out: list[str] = []
    for proto in dict.fromkeys(c.proto for c in cells):
        mine = [c for c in cells if c.proto == proto]
        srcs = list(dict.fromkeys(c.source for c in mine))
        named = set(c.destination for c in mine)
        dsts = [s for s in srcs if s in named] + [d for d in dict.fromkeys(c.destination for c in mine)
                                                  if d not in srcs]
        at = {(c.source, c.destination): c for c in mine}
        corner = "from \\ to"
        width = max(len(s) for s in [*srcs, corner])
        cols = [max(2, len(d)) for d in dsts]
        out.append(f"{proto}:")
        out.append(f"  {corner:<{width}} " + " ".join(f"{d:<{w}}" for d, w in zip(dsts, cols, strict=True)))
        for s in srcs:
            row = []
            for d, w in zip(dsts, cols, strict=True):
                c = at.get((s, d))
                row.append(f"{'.' if c is None else 'ok' if c.ok else '--':<{w}}")
            out.append(f"  {s:<{width}} " + " ".join(row))
        reasons: dict[str, list[str]] = {}
        for c in mine:
            if not c.ok:
                reasons.setdefault(c.why.split(" [traced as ")[0], []).append(f"{c.source}->{c.destination}")
        for why, pairs in reasons.items():
            shown = ", ".join(pairs[:4]) + (f" and {len(pairs) - 4} more" if len(pairs) > 4 else "")
            out.append(f"  -- {why}  ({shown})")
        out.append("")
    return "\n".join(out)


def load(text: str, path: str = "the saved matrix") -> list[Cell]:
    """The cells ``--save`` kept (``path`` names the file in errors)."""
    try:
        cells = [Cell(**c) for c in json.loads(text)]
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{path}: not a matrix saved with --save ({str(exc).splitlines()[0]})") from None
    return cells


def diff(before: Sequence[Cell], after: Sequence[Cell]) -> list[str]:
    """The cells that changed, one line each: ``+`` now reachable, ``-`` no longer, ``?`` new or gone."""
    old = {(c.source, c.destination, c.proto): c for c in before}
    new = {(c.source, c.destination, c.proto): c for c in after}
    lines = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        s, d, p = key
        if a is None and b is not None:
            lines.append(f"? {s} -> {d} {p}: new ({'ok' if b.ok else 'blocked'}: {b.why})")
        elif b is None and a is not None:
            lines.append(f"? {s} -> {d} {p}: gone")
        elif a is not None and b is not None and a.ok != b.ok:
            now = "now reachable" if b.ok else "now blocked"
            lines.append(f"{'+' if b.ok else '-'} {s} -> {d} {p}: {now} "
                         f"({b.why}; was: {a.why})")
    return lines


# ---------------------------------------------------------------------------- policies

KINDS = ("isolate", "deny", "allow")
_SELECTOR_KEYS = ("instance", "project", "network", "host", "router")
_LINE = "__line__"


class _Loader(yaml.SafeLoader):
    """YAML that remembers each mapping's line (as the key ``__line__``)."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    m: dict[Any, Any] = loader.construct_mapping(node, deep=True)
    m[_LINE] = node.start_mark.line + 1
    return m


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


@dataclass(frozen=True)
class Rule:
    kind: str  # isolate, deny, allow
    source: Any  # a selector: a string, a mapping (all keys hold) or a list (any)
    destination: Any
    protos: tuple[str, ...]  # () : every protocol of the matrix
    where: str  # FILE:LINE

    def describe(self, side: Any) -> str:
        if isinstance(side, list):
            return "[" + ", ".join(self.describe(s) for s in side) + "]"
        if isinstance(side, dict):
            return "{" + ", ".join(f"{k}: {v}" for k, v in side.items() if k != _LINE) + "}"
        return str(side)


@dataclass(frozen=True)
class Policy:
    path: str
    rules: tuple[Rule, ...]

    def protocols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for r in self.rules for p in r.protos))


def _selector(value: Any, where: str) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInput(f"{where}: an empty selector")
        return value.strip()
    if isinstance(value, list):
        if not value:
            raise InvalidInput(f"{where}: an empty list of selectors")
        return [_selector(v, where) for v in value]
    if isinstance(value, dict):
        keys = [k for k in value if k != _LINE]
        bad = [k for k in keys if k not in _SELECTOR_KEYS]
        if bad or not keys:
            raise InvalidInput(f"{where}: {'unknown selector key ' + repr(bad[0]) if bad else 'an empty selector'}"
                               f" (keys: {', '.join(_SELECTOR_KEYS)})")
        out = {k: str(value[k]) for k in keys}
        if any(v in ("", "None") for v in out.values()):
            raise InvalidInput(f"{where}: a selector key without a value")
        return out
    raise InvalidInput(f"{where}: a selector is a name, a mapping ({', '.join(_SELECTOR_KEYS)}) or a list")


def parse_policy(text: str, path: str) -> Policy:
    """A policy from its YAML text (``path`` names it in errors); raises InvalidInput, one line
    naming FILE:LINE, on anything malformed."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader that keeps line numbers)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{path}{line}: not YAML: {problem}") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}:1: a policy is a mapping of {', '.join(KINDS)} to lists of rules")
    rules: list[Rule] = []
    top = doc.get(_LINE, 1)
    for kind, items in doc.items():
        if kind == _LINE:
            continue
        if kind not in KINDS:
            raise InvalidInput(f"{path}:{top}: unknown key {kind!r} (a policy has {', '.join(KINDS)})")
        if not isinstance(items, list):
            raise InvalidInput(f"{path}:{top}: {kind} is a list of rules ({{from: ..., to: ..., proto: ...}})")
        for item in items:
            if not isinstance(item, dict):
                raise InvalidInput(f"{path}:{top}: each rule of {kind} is a mapping {{from: ..., to: ...}}, "
                                   f"not {item!r}")
            where = f"{path}:{item[_LINE]}"
            unknown = [k for k in item if k not in (_LINE, "from", "to", "proto")]
            if unknown:
                raise InvalidInput(f"{where}: unknown key {unknown[0]!r} in a rule (from, to, proto)")
            for side in ("from", "to"):
                if side not in item:
                    raise InvalidInput(f"{where}: a rule of {kind} needs '{side}'")
            proto = item.get("proto")
            if proto is None:
                protos: tuple[str, ...] = ()
            else:
                listed = proto if isinstance(proto, list) else [proto]
                if not listed or not all(isinstance(p, str) for p in listed):
                    raise InvalidInput(f"{where}: proto is icmp, tcp/PORT or udp/PORT, or a list of them")
                try:
                    protos = parse_protocols(listed)
                except InvalidInput as exc:
                    raise InvalidInput(f"{where}: {exc}") from None
            rules.append(Rule(kind, _selector(item["from"], where), _selector(item["to"], where), protos, where))
    if not rules:
        raise InvalidInput(f"{path}:1: the policy has no rule ({', '.join(KINDS)})")
    return Policy(path, tuple(rules))


def load_policy(path: str) -> Policy:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}:1: not a text file (UTF-8)") from None
    return parse_policy(text, path)


def _matches(sel: Any, e: Endpoint, cloud: CloudSnapshot) -> bool:
    if isinstance(sel, list):
        return any(_matches(s, e, cloud) for s in sel)
    if isinstance(sel, str):
        if sel in ("*", e.name):
            return True
        if sel.startswith("router:"):
            return e.kind == "router" and sel[len("router:"):] in (e.router, "*")
        return False
    assert isinstance(sel, dict)
    kind = "router" if "router" in sel else "host" if "host" in sel else "instance"
    if e.kind != kind:
        return False
    for key, v in sel.items():
        if key == "instance" and e.name != v:
            return False
        if key == "host" and e.host != v:
            return False
        if key == "router" and v not in (e.router, "*"):
            return False
        if key == "project" and not (e.project and e.project in (v, Identity.project_id(v))):
            return False
        if key == "network":
            ids = {n.id for n in cloud.networks if v in (n.id, n.name)}
            if not e.networks & ids:
                return False
    return True


def check_policy(policy: Policy, cells: Sequence[Cell], ends: tuple[Sequence[Endpoint], Sequence[Endpoint]],
                 cloud: CloudSnapshot) -> tuple[list[str], int]:
    """The violations, one line each, and how many distinct cells the policy checked. Raises
    InvalidInput for a selector that matches no endpoint and a rule that checks no cell."""
    srcs, dsts = ends
    every = {e.name: e for e in [*srcs, *dsts]}
    at = {(c.source, c.destination, c.proto): c for c in cells}
    protos = tuple(dict.fromkeys(c.proto for c in cells))
    order = {n: i for i, n in enumerate([*protos, *every])}
    checked: set[tuple[str, str, str]] = set()
    violations: list[str] = []
    for rule in policy.rules:
        sides = []
        for sel in (rule.source, rule.destination):
            chosen = {n for n, e in every.items() if _matches(sel, e, cloud)}
            if not chosen:
                raise InvalidInput(f"{rule.where}: {rule.describe(sel)} matches nothing in the matrix "
                                   f"(its endpoints: {', '.join(every)})")
            sides.append(chosen)
        pairs = [(a, b) for a in sides[0] for b in sides[1]]
        if rule.kind == "isolate":
            pairs += [(b, a) for a, b in pairs]
        mine = list(dict.fromkeys(at[(a, b, p)] for p in (rule.protos or protos) for a, b in pairs
                                  if (a, b, p) in at))
        if not mine:
            raise InvalidInput(f"{rule.where}: the rule checks no cell of the matrix (a source is never its own "
                               f"destination; the outside and the hosts send no udp; hosts are sources and "
                               f"routers destinations only)")
        for c in sorted(mine, key=lambda c: (order[c.proto], order[c.source], order[c.destination])):
            checked.add((c.source, c.destination, c.proto))
            if c.ok == (rule.kind == "allow"):
                continue
            state = "reachable" if c.ok else "blocked"
            violations.append(f"{rule.where}: {rule.kind} {rule.describe(rule.source)} -> "
                              f"{rule.describe(rule.destination)} violated: {c.source} -> {c.destination} "
                              f"{c.proto} is {state} ({c.why})")
    return violations, len(checked)
