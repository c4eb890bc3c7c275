"""``neutrino matrix``: who reaches whom among all instances and the outside, per protocol, each
cell with what decided it (the security-group rule that let the request in, or where and why it
stopped).

Instances that the plumbing cannot tell apart give the same answers: same network, same
security groups, the same answer to each of the groups' address-prefix rules, the same allowed
address pairs, a floating IP or not. One representative pair per pair of classes, and per "on the
same host or not", is traced and its answer given to every pair of members (``exhaustive=True``
traces every pair instead). That takes hosts of one role to be planned alike, as the agents plan
them; a host whose plumbing differs from its peers' (a hand-made change, an imported capture) is
a case for ``exhaustive``. A pair within one class is traced between two distinct members, so an
instance's traffic to itself never stands for its neighbours'.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, ip_network

from neutrino.answers.objects import Names, annotate
from neutrino.services.snapshot import CloudSnapshot, Server
from neutrino.sim.trace import StepKind, Trace
from neutrino.sim.world import OUTSIDE, World

INTERNET = "8.8.8.8"  # what "outside" stands for as a destination
DEFAULT_PROTOCOLS = ("icmp", "tcp/22", "tcp/80")


@dataclass(frozen=True)
class Cell:
    source: str
    destination: str
    proto: str  # "icmp", "tcp/22", ...
    ok: bool
    why: str  # the deciding rule, or the reason and the drop point


def parse_protocols(items: Iterable[str]) -> tuple[str, ...]:
    from neutrino.errors import InvalidInput

    out = []
    for item in items:
        for p in item.split(","):
            p = p.strip()
            name, _, port = p.partition("/")
            if name == "icmp" and not port:
                out.append("icmp")
            elif name in ("tcp", "udp") and port.isdigit() and 1 <= int(port) <= 65535:
                out.append(f"{name}/{int(port)}")
            else:
                raise InvalidInput(f"{p!r}: a protocol is icmp, tcp/PORT or udp/PORT")
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


def _why(trace: Trace, names: Names) -> str:
    if trace.succeeded:
        for hop in reversed(trace.hops):  # the last rule that let the request through: the destination's
            for st in reversed(hop.steps):
                if st.kind is StepKind.RULE and ("RETURN" in st.detail or "ACCEPT" in st.detail):
                    allowed = names.allowed_by(st.text)
                    if allowed:
                        return allowed
        return "no rule in the way"
    v = annotate(trace, names).failure
    assert v is not None
    reason = v.reason.value if v.reason else "dropped"
    return f"{reason}" + (f" at {v.where}" if v.where else "") + (f": {v.obj}" if v.obj else "")


def matrix(world: World, cloud: CloudSnapshot, protocols: Sequence[str] = DEFAULT_PROTOCOLS, *,
           outside: bool = True, exhaustive: bool = False) -> list[Cell]:
    names = Names(cloud)
    servers = [s for s in cloud.servers if s.name in world.guests and world.guests[s.name].ip is not None]
    members: dict[tuple[object, ...], list[Server]] = {}
    for s in servers:
        members.setdefault((s.name,) if exhaustive else _class_key(cloud, s), []).append(s)
    key_of = {s.name: k for k, ms in members.items() for s in ms}
    srcs = [s.name for s in servers] + ([OUTSIDE] if outside and world.externals else [])
    dsts = [s.name for s in servers] + ([OUTSIDE] if outside else [])
    by_name = {s.name: s for s in servers}
    ident = 30000
    host = {s.name: s.host for s in servers}
    memo: dict[tuple[object, object, str, bool], tuple[bool, str, str]] = {}
    cells: list[Cell] = []
    for proto in protocols:
        name, port = _split(proto)
        for src in srcs:
            for dst in dsts:
                if src == dst:
                    continue
                ks = key_of.get(src, src)
                kd = key_of.get(dst, dst)
                key = (ks, kd, proto, exhaustive or host.get(src, src) == host.get(dst, dst))
                if key not in memo:
                    ok, why = _probe(world, cloud, names, by_name, src, dst, name, port, ident)
                    memo[key] = (ok, why, f"{src}->{dst}")
                    ident = 30000 + (ident - 29999) % 35000
                ok, why, traced = memo[key]
                if traced != f"{src}->{dst}":
                    why = f"{why} [traced as {traced}: the plumbing treats both pairs alike]"
                cells.append(Cell(src, dst, proto, ok, why))
    return cells


def _probe(world: World, cloud: CloudSnapshot, names: Names, by_name: dict[str, Server], src: str, dst: str,
           name: str, port: int, ident: int) -> tuple[bool, str]:
    if src == OUTSIDE:
        fip = _fip(cloud, by_name[dst])
        if fip is None:
            return False, "no floating IP"
        to = str(fip)
        if name not in ("icmp", "tcp"):
            return False, f"{name} from the outside is not traced"
    else:
        to = INTERNET if dst == OUTSIDE else dst
    trace = world.probe(src, to, proto=name, dport=port, ident=ident)
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


def load(text: str) -> list[Cell]:
    return [Cell(**c) for c in json.loads(text)]


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
