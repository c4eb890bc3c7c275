"""``ip route``, ``ip rule``, ``ip neigh`` and ``ip netns``: one parser and one formatter each.

Route fields print in iproute2's ``print_route`` order (``ip/iproute.c``): ``[type] dst [from]
[via] [dev] [table] [proto] [scope] [src] [metric] [flags] ... [pref]``, then multipath
``nexthop`` lines. ``LEGACY`` style reproduces old iproute2's spacing
(``dev qg-d48b49e0-aa  proto kernel  scope link  src 172.24.4.227``).

>>> r = parse_route_line("default via 172.24.4.225 dev qg-d48b49e0-aa ")
>>> r.dst is None, str(r.via), r.dev
(True, '172.24.4.225', 'qg-d48b49e0-aa')
>>> format_route(r)
'default via 172.24.4.225 dev qg-d48b49e0-aa '
>>> format_rule(parse_rule_line("1000:\\tfrom 10.1.0.0/24 lookup 100"))
'1000:\\tfrom 10.1.0.0/24 lookup 100'
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from neutrino.errors import ParseError
from neutrino.host.iproute import IprouteStyle, Partial, Skipped, is_elision, parse_lines

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# a rule's selector as the kernel keeps it: the address as given, with its prefix length (``from
# 10.0.0.7/24`` is not rewritten to 10.0.0.0/24); ``.network`` is what it matches
IPPrefix = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def prefix_text(p: IPPrefix) -> str:
    """As ``ip rule`` prints a selector: a host prefix without its length (``10.0.0.5``), any other
    with it, host bits kept (``10.0.0.7/24``)."""
    return str(p.ip) if p.network.prefixlen == p.max_prefixlen else str(p)

ROUTE_TYPES = ("unicast", "local", "broadcast", "multicast", "unreachable", "blackhole", "prohibit", "throw",
               "nat", "anycast", "xresolve")
ROUTE_FLAGS = ("dead", "onlink", "pervasive", "offload", "trap", "notify", "linkdown", "unresolved",
               "rt_offload", "rt_trap", "rt_offload_failed")
_METRIC_KEYS = ("mtu", "advmss", "window", "rtt", "rttvar", "ssthresh", "cwnd", "initcwnd", "initrwnd",
                "hoplimit", "reordering", "features", "quickack", "congctl", "fastopen_no_cookie", "expires",
                "error", "rto_min", "cache", "users", "age", "used")


@dataclass(frozen=True, slots=True)
class Nexthop:
    """One ``nexthop`` of a multipath route."""

    via: IPAddress | None = None
    dev: str | None = None
    weight: int | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """One route as ``ip route`` prints it. ``dst`` ``None`` is ``default``; ``type`` is printed
    only when it is not unicast; ``table`` is ``None`` for main.

    ``style`` is the spacing: old iproute2 put two spaces before ``table``, ``proto``, ``scope``,
    ``src`` and ``metric``. A route with none of those prints the same either way, so it is always
    ``MODERN``: two routes that print the same are equal."""

    dst: IPNetwork | None
    type: str | None = None
    src_prefix: IPNetwork | None = None
    via: IPAddress | None = None
    dev: str | None = None
    table: str | None = None
    proto: str | None = None
    scope: str | None = None
    src: IPAddress | None = None
    metric: int | None = None
    flags: tuple[str, ...] = ()
    extras: tuple[tuple[str, str], ...] = ()
    iif: str | None = None
    pref: str | None = None
    nexthops: tuple[Nexthop, ...] = ()
    style: IprouteStyle = IprouteStyle.MODERN

    def __post_init__(self) -> None:
        if self.style is IprouteStyle.LEGACY and self.table is None and self.proto is None \
                and self.scope is None and self.src is None and self.metric is None:
            object.__setattr__(self, "style", IprouteStyle.MODERN)

    @property
    def is_default(self) -> bool:
        return self.dst is None or self.dst.prefixlen == 0

    @property
    def onlink(self) -> bool:
        return "onlink" in self.flags


def _err(expected: str, line: str, n: int, source: str) -> ParseError:
    return ParseError(expected, text=line, line=n, source=source)


def _addr(tok: str, what: str, line: str, n: int, source: str) -> IPAddress:
    try:
        return ipaddress.ip_address(tok)
    except ValueError:
        raise _err(what, line, n, source) from None


def _net(tok: str, what: str, line: str, n: int, source: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(tok, strict=False)
    except ValueError:
        raise _err(what, line, n, source) from None


def _nexthop(body: str, line: str, n: int, source: str) -> Nexthop:
    toks = body.split()
    if not toks or toks[0] != "nexthop":
        raise _err("a 'nexthop' line", line, n, source)
    kw: dict[str, object] = {}
    flags: list[str] = []
    i = 1
    while i < len(toks):
        t = toks[i]
        if t in ROUTE_FLAGS:
            flags.append(t)
            i += 1
            continue
        if i + 1 >= len(toks):
            raise _err(f"a value after {t!r}", line, n, source)
        v = toks[i + 1]
        if t == "via":
            kw["via"] = _addr(v, "a gateway address after 'via'", line, n, source)
        elif t == "dev":
            kw["dev"] = v
        elif t == "weight":
            kw["weight"] = int(v)
        else:
            raise _err(f"'via', 'dev' or 'weight' in a nexthop, not {t!r}", line, n, source)
        i += 2
    return Nexthop(flags=tuple(flags), **kw)  # type: ignore[arg-type]


def parse_route_line(line: str, *, n: int = 1, source: str = "<string>") -> Route:
    """Parse one ``ip route`` line (without its ``nexthop`` continuation lines)."""
    style = IprouteStyle.LEGACY if re.search(r"\s\s", line.strip()) else IprouteStyle.MODERN
    toks = line.split()
    if not toks:
        raise _err("a route", line, n, source)
    kw: dict[str, object] = {}
    i = 0
    if toks[0] in ROUTE_TYPES:
        kw["type"] = toks[0]
        i = 1
    if i >= len(toks):
        raise _err("a destination after the route type", line, n, source)
    dst_tok = toks[i]
    dst = None if dst_tok == "default" else _net(dst_tok, "a destination prefix or 'default'", line, n, source)
    i += 1
    flags: list[str] = []
    extras: list[tuple[str, str]] = []
    while i < len(toks):
        t = toks[i]
        if t in ROUTE_FLAGS:
            flags.append(t)
            i += 1
            continue
        if i + 1 >= len(toks):
            raise _err(f"a value after {t!r}", line, n, source)
        v = toks[i + 1]
        if t == "via":
            if v in ("inet", "inet6") and i + 2 < len(toks):
                i += 1
                v = toks[i + 1]
            kw["via"] = _addr(v, "a gateway address after 'via'", line, n, source)
        elif t == "from":
            kw["src_prefix"] = _net(v, "a prefix after 'from'", line, n, source)
        elif t == "src":
            kw["src"] = _addr(v, "a source address after 'src'", line, n, source)
        elif t == "metric":
            try:
                kw["metric"] = int(v)
            except ValueError:
                raise _err("a number after 'metric'", line, n, source) from None
        elif t in ("dev", "table", "proto", "scope", "iif", "pref"):
            kw[t] = v
        elif t in _METRIC_KEYS:
            if v == "lock" and i + 2 < len(toks):
                i += 1
                v = "lock " + toks[i + 1]
            extras.append((t, v))
        else:
            raise _err(f"a route attribute (via, dev, proto, scope, src, metric, table, ...), not {t!r}",
                       line, n, source)
        i += 2
    return Route(dst=dst, flags=tuple(flags), extras=tuple(extras), style=style,
                 **kw)  # type: ignore[arg-type]


def _routes(text: str, source: str, skipped: list[Skipped] | None) -> tuple[Route, ...]:
    out: list[Route] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if skipped is not None and is_elision(line):
            skipped.append(Skipped(n, line))
            continue
        try:
            if line.startswith("\t") or line.lstrip().startswith("nexthop "):
                if not out:
                    raise _err("a route before its 'nexthop' line", line, n, source)
                out[-1] = replace(out[-1], nexthops=out[-1].nexthops + (_nexthop(line.strip(), line, n, source),))
                continue
            out.append(parse_route_line(line, n=n, source=source))
        except ParseError:
            if skipped is None:
                raise
            skipped.append(Skipped(n, line))
    return tuple(out)


def parse_ip_route(text: str, *, source: str = "<string>") -> tuple[Route, ...]:
    """Parse ``ip route``, ``ip -6 route`` or ``ip route show table all`` output."""
    return _routes(text, source, None)


def parse_ip_route_partial(text: str, *, source: str = "<string>") -> Partial[Route]:
    skipped: list[Skipped] = []
    return Partial(_routes(text, source, skipped), tuple(skipped))


def _dst_text(dst: IPNetwork | None) -> str:
    if dst is None:
        return "default"
    if dst.prefixlen == dst.max_prefixlen:
        return str(dst.network_address)
    return str(dst)


def format_route(route: Route) -> str:
    """One route (and its ``nexthop`` lines) as ``ip route`` prints it, without the final newline."""
    legacy = route.style is IprouteStyle.LEGACY
    sp = " " if legacy else ""
    s = ""
    if route.type is not None:
        s += f"{route.type} "
    s += _dst_text(route.dst) + " "
    if route.src_prefix is not None:
        s += f"from {route.src_prefix} "
    if route.via is not None:
        s += f"via {route.via} "
    if route.dev is not None:
        s += f"dev {route.dev} "
    if route.table is not None:
        s += f"{sp}table {route.table} "
    if route.proto is not None:
        s += f"{sp}proto {route.proto} "
    if route.scope is not None:
        s += f"{sp}scope {route.scope} "
    if route.src is not None:
        s += f"{sp}src {route.src} "
    if route.metric is not None:
        s += f"{sp}metric {route.metric} "
    for f in route.flags:
        s += f"{f} "
    for k, v in route.extras:
        s += f"{k} {v} "
    if route.iif is not None:
        s += f"iif {route.iif} "
    if route.pref is not None:
        s += f"pref {route.pref}"
    for nh in route.nexthops:
        s += "\n\tnexthop "
        if nh.via is not None:
            s += f"via {nh.via} "
        if nh.dev is not None:
            s += f"dev {nh.dev} "
        if nh.weight is not None:
            s += f"weight {nh.weight} "
        for f in nh.flags:
            s += f"{f} "
    return s


def format_ip_route(routes: tuple[Route, ...] | list[Route]) -> str:
    return "".join(format_route(r) + "\n" for r in routes)


# --- ip rule -------------------------------------------------------------------------------

RULE_ACTIONS = ("unreachable", "blackhole", "prohibit", "nop")


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """One ``ip rule`` line. ``src``/``dst`` ``None`` is ``all``; ``action`` is ``None`` for a
    ``lookup``."""

    priority: int
    src: IPPrefix | None = None
    dst: IPPrefix | None = None
    invert: bool = False
    tos: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    iif: str | None = None
    oif: str | None = None
    l3mdev: bool = False
    uidrange: str | None = None
    ipproto: str | None = None
    sport: str | None = None
    dport: str | None = None
    table: str | None = None
    suppress_prefixlength: int | None = None
    action: str | None = None
    goto: int | None = None


def parse_rule_line(line: str, *, n: int = 1, source: str = "<string>") -> RoutingRule:
    m = re.match(r"^(\d+):\s+(.*)$", line.rstrip())
    if not m:
        raise _err("'PRIORITY:<TAB>selector action'", line, n, source)
    kw: dict[str, object] = {"priority": int(m.group(1))}
    toks = m.group(2).split()
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "not":
            kw["invert"] = True
            i += 1
            continue
        if t in RULE_ACTIONS:
            kw["action"] = t
            i += 1
            continue
        if t == "l3mdev":
            kw["l3mdev"] = True
            i += 1
            continue
        if i + 1 >= len(toks):
            raise _err(f"a value after {t!r}", line, n, source)
        v = toks[i + 1]
        if t in ("from", "to"):
            if v != "all":
                try:
                    kw["src" if t == "from" else "dst"] = ipaddress.ip_interface(v)
                except ValueError:
                    raise _err(f"a prefix or 'all' after {t!r}", line, n, source) from None
        elif t == "fwmark":
            mark, _, mask = v.partition("/")
            try:
                kw["fwmark"] = int(mark, 0)
                if mask:
                    kw["fwmask"] = int(mask, 0)
            except ValueError:
                raise _err("'fwmark MARK[/MASK]' in hex", line, n, source) from None
        elif t in ("lookup", "table"):
            kw["table"] = v
        elif t in ("iif", "oif", "tos", "uidrange", "ipproto", "sport", "dport"):
            kw[t] = v
        elif t == "suppress_prefixlength":
            kw["suppress_prefixlength"] = int(v)
        elif t == "goto":
            kw["action"] = "goto"
            kw["goto"] = int(v)
        else:
            raise _err(f"a rule selector or action (from, to, fwmark, iif, oif, lookup, ...), not {t!r}",
                       line, n, source)
        i += 2
    return RoutingRule(**kw)  # type: ignore[arg-type]


def format_rule(rule: RoutingRule) -> str:
    s = f"{rule.priority}:\t"
    if rule.invert:
        s += "not "
    s += f"from {prefix_text(rule.src) if rule.src is not None else 'all'}"
    if rule.dst is not None:
        s += f" to {prefix_text(rule.dst)}"
    if rule.tos is not None:
        s += f" tos {rule.tos}"
    if rule.fwmark is not None:
        s += f" fwmark {rule.fwmark:#x}"
        if rule.fwmask is not None:
            s += f"/{rule.fwmask:#x}"
    if rule.iif is not None:
        s += f" iif {rule.iif}"
    if rule.oif is not None:
        s += f" oif {rule.oif}"
    if rule.l3mdev:
        s += " l3mdev"
    for k in ("uidrange", "ipproto", "sport", "dport"):
        v = getattr(rule, k)
        if v is not None:
            s += f" {k} {v}"
    if rule.table is not None:
        s += f" lookup {rule.table}"
    if rule.suppress_prefixlength is not None:
        s += f" suppress_prefixlength {rule.suppress_prefixlength}"
    if rule.action == "goto":
        s += f" goto {rule.goto}"
    elif rule.action is not None:
        s += f" {rule.action}"
    return s


def parse_ip_rule(text: str, *, source: str = "<string>") -> tuple[RoutingRule, ...]:
    return parse_lines(text, parse_rule_line, source)


def format_ip_rule(rules: tuple[RoutingRule, ...] | list[RoutingRule]) -> str:
    return "".join(format_rule(r) + "\n" for r in rules)


# --- ip neigh ------------------------------------------------------------------------------

NUD_STATES = ("PERMANENT", "NOARP", "REACHABLE", "STALE", "NONE", "INCOMPLETE", "DELAY", "PROBE", "FAILED")


@dataclass(frozen=True, slots=True)
class Neighbour:
    """One neighbour entry (``ip neigh`` or ``arp -n``): address, link-layer address, device and
    state (``ip neigh``'s NUD states, e.g. ``PERMANENT``, ``REACHABLE``) or flags."""

    address: IPAddress
    dev: str | None = None
    lladdr: str | None = None
    router: bool = False
    proxy: bool = False
    states: tuple[str, ...] = ()


def parse_neigh_line(line: str, *, n: int = 1, source: str = "<string>") -> Neighbour:
    toks = line.split()
    if not toks:
        raise _err("a neighbour entry", line, n, source)
    kw: dict[str, object] = {"address": _addr(toks[0], "an IP address first", line, n, source)}
    states: list[str] = []
    i = 1
    while i < len(toks):
        t = toks[i]
        if t in ("dev", "lladdr") and i + 1 < len(toks):
            kw[t] = toks[i + 1]
            i += 2
            continue
        if t == "router":
            kw["router"] = True
        elif t == "proxy":
            kw["proxy"] = True
        elif t in NUD_STATES:
            states.append(t)
        else:
            raise _err(f"'dev', 'lladdr', 'router' or a NUD state, not {t!r}", line, n, source)
        i += 1
    return Neighbour(states=tuple(states), **kw)  # type: ignore[arg-type]


def format_neigh(nb: Neighbour) -> str:
    s = f"{nb.address} "
    if nb.dev is not None:
        s += f"dev {nb.dev} "
    if nb.lladdr is not None:
        s += f"lladdr {nb.lladdr} "
    if nb.router:
        s += "router "
    if nb.proxy:
        s += "proxy "
    for st in nb.states:
        s += f"{st} "
    return s


def parse_ip_neigh(text: str, *, source: str = "<string>") -> tuple[Neighbour, ...]:
    return parse_lines(text, parse_neigh_line, source)


def format_ip_neigh(neighbours: tuple[Neighbour, ...] | list[Neighbour]) -> str:
    return "".join(format_neigh(x) + "\n" for x in neighbours)


# --- ip netns ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Netns:
    """One line of ``ip netns``/``ip netns list``: a name and, when assigned, its id."""

    name: str
    id: int | None = None


# patterns are compiled where used (re keeps them): importing the module compiles none
_NETNS = r"^(\S+)(?: \(id: (\d+)\))?\s*$"


def parse_ip_netns(text: str, *, source: str = "<string>") -> tuple[Netns, ...]:
    out: list[Netns] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = re.compile(_NETNS).match(line)
        if not m:
            raise _err("'NAME' or 'NAME (id: N)'", line, n, source)
        out.append(Netns(m.group(1), int(m.group(2)) if m.group(2) is not None else None))
    return tuple(out)


def format_ip_netns(namespaces: tuple[Netns, ...] | list[Netns]) -> str:
    return "".join(ns.name + (f" (id: {ns.id})" if ns.id is not None else "") + "\n" for ns in namespaces)
