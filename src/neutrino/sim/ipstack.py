"""The IPv4 stack of one network namespace: addresses, policy routing, ARP and the neighbour
table, local delivery and forwarding, ICMP errors.

Netfilter is not in here. The stack exposes the kernel's decision points so an orchestrator can
run the iptables hooks between them, in the kernel's order:

- *received* (``ip_rcv``): :meth:`IpStack.ingress` accepts the frame (to the device's MAC or
  broadcast; ARP is answered or learned right there) → **PREROUTING** (raw, conntrack, mangle,
  nat DNAT) → :meth:`IpStack.route_input` (the routing decision, after DNAT) → either
  **INPUT** (mangle, filter, nat SNAT) → local delivery, or :meth:`IpStack.forward` (TTL check and
  decrement, DF/MTU check) → **FORWARD** (mangle, filter) → **POSTROUTING** (mangle, nat SNAT) →
  :meth:`IpStack.transmit` (neighbour resolution, the Ethernet header).
- *locally generated* (``ip_local_out``): :meth:`IpStack.route` (output route, source
  selection) → **OUTPUT** (raw, conntrack, mangle, nat DNAT, filter; a changed destination is
  routed again) → **POSTROUTING** → :meth:`IpStack.transmit`.

:meth:`IpStack.receive` runs the received path with every hook accepting, for callers without
netfilter.

>>> from neutrino.host.iproute_link import parse_ip_addr
>>> from neutrino.host.iproute_route import parse_ip_route
>>> from neutrino.host.state import NamespaceState
>>> links = parse_ip_addr('''2: qr-1: <BROADCAST,UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
...     link/ether fa:16:3e:ea:64:6e brd ff:ff:ff:ff:ff:ff
...     inet 10.1.0.1/24 brd 10.1.0.255 scope global qr-1
...        valid_lft forever preferred_lft forever
... ''')
>>> stack = IpStack(NamespaceState("qrouter-x", links=links,
...                 routes=parse_ip_route("10.1.0.0/24 dev qr-1 proto kernel scope link src 10.1.0.1\\n")))
>>> d = stack.route(IPv4Address("10.1.0.2"))
>>> d.dev, str(d.next_hop), str(d.src), d.step.text
('qr-1', '10.1.0.2', '10.1.0.1', '10.1.0.0/24 dev qr-1 proto kernel scope link src 10.1.0.1 ')
>>> stack.route(IPv4Address("8.8.8.8")).errno
'Network is unreachable'
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from neutrino.errors import InvalidInput
from neutrino.host.iproute_link import Link
from neutrino.host.iproute_route import Route, RoutingRule, format_route, format_rule
from neutrino.host.state import NamespaceState
from neutrino.sim.packets import (
    ARP,
    BROADCAST,
    ICMP,
    LIMITED_BROADCAST,
    ARPOp,
    Ethernet,
    ICMPType,
    IPv4,
    Mac,
    UnreachCode,
    arp_reply,
    arp_request,
    icmp_error,
    ip_length,
    with_,
)
from neutrino.sim.trace import Step, StepKind

ANY = IPv4Network("0.0.0.0/0")
TABLE_IDS = {"local": "255", "main": "254", "default": "253", "unspec": "0"}
TABLE_NAMES = {v: k for k, v in TABLE_IDS.items()}

DEFAULT_RULES = (
    RoutingRule(priority=0, table="local"),
    RoutingRule(priority=32766, table="main"),
    RoutingRule(priority=32767, table="default"),
)
"""What ``ip rule`` shows on a fresh namespace."""


def table_name(table: str | None) -> str:
    """A table's canonical name: ``None`` and ``254`` are ``main``, ``255`` ``local``."""
    if table is None:
        return "main"
    return TABLE_NAMES.get(table, table)


# --- decisions -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a packet goes: the matched route (``table``, by ``rule``), the out device and next
    hop, the chosen source address. ``local``: for this namespace (``dev`` is ``lo`` or the
    device that holds the address); ``broadcast``: a broadcast delivered locally or sent out."""

    route: Route
    table: str
    dev: str
    next_hop: IPv4Address
    src: IPv4Address | None
    step: Step
    rule: RoutingRule | None = None
    local: bool = False
    broadcast: bool = False


@dataclass(frozen=True, slots=True)
class Unreachable:
    """No way to route: ``reason`` is ``no route``, ``unreachable``, ``prohibit``, ``blackhole``
    or ``not forwarding``. ``errno`` is what a local sender sees (``ping: sendmsg: …``);
    ``icmp_code`` the Destination Unreachable code sent back for a forwarded packet (``None``:
    dropped silently, as for blackhole routes and when forwarding is off)."""

    reason: str
    errno: str
    icmp_code: UnreachCode | None
    step: Step
    route: Route | None = None
    rule: RoutingRule | None = None


_ERRORS: dict[str, tuple[str, UnreachCode | None]] = {
    "no route": ("Network is unreachable", UnreachCode.NET),
    "unreachable": ("No route to host", UnreachCode.HOST),
    "prohibit": ("Permission denied", UnreachCode.ADMIN_PROHIBITED),
    "blackhole": ("Invalid argument", None),
    "not forwarding": ("No route to host", None),
}


def _unreachable(reason: str, text: str, detail: str, route: Route | None = None,
                 rule: RoutingRule | None = None) -> Unreachable:
    errno, code = _ERRORS[reason]
    return Unreachable(reason, errno, code, Step(StepKind.ROUTE, text, detail), route, rule)


class Action(enum.Enum):
    DELIVER = "deliver"  # an IPv4 packet for this namespace (after INPUT)
    FORWARD = "forward"  # routed on: ``frames`` holds it (or the ARP request it waits on)
    ARP_REPLY = "arp reply"  # an ARP request answered: ``frames`` holds the reply
    LEARNED = "learned"  # an ARP packet updated the neighbour table, nothing sent
    ICMP_ERROR = "icmp error"  # dropped, and an ICMP error goes back (in ``frames``)
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Transmit:
    """What :meth:`IpStack.transmit` produced: the frame on ``dev`` when the next hop's MAC is
    known, else an ARP request (``arp`` true) the caller sends and answers with :meth:`learn`."""

    dev: str
    frame: Ethernet
    next_hop: IPv4Address
    arp: bool
    step: Step


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :meth:`IpStack.receive` (or of :meth:`IpStack.ingress`, which stops before
    routing: ``packet`` set and ``action`` ``DELIVER`` means "accepted, go to PREROUTING")."""

    action: Action
    steps: tuple[Step, ...]
    packet: IPv4 | None = None
    route: RouteDecision | Unreachable | None = None
    frames: tuple[tuple[str, Ethernet], ...] = ()
    reason: str = ""


# --- the stack -----------------------------------------------------------------------------------

def _sysctl_map(ns: NamespaceState) -> dict[str, str]:
    return {s.key: s.value for s in ns.sysctls or ()}


def _v4(addrs: Iterable[object]) -> list[IPv4Interface]:
    return [a for a in addrs if isinstance(a, IPv4Interface)]


_ROUTE_TEXT: dict[int, tuple[Route, str]] = {}
"""The routes formatted last, by identity (a stack's routes are decided on again and again); an
entry holds its route, so the id stays that route's."""


def _route_text(r: Route) -> str:
    """``format_route(r)``, formatted once per route object (a route is immutable)."""
    got = _ROUTE_TEXT.get(id(r))
    if got is not None and got[0] is r:
        return got[1]
    text = format_route(r)
    if len(_ROUTE_TEXT) >= 4096:
        _ROUTE_TEXT.clear()
    _ROUTE_TEXT[id(r)] = (r, text)
    return text


class IpStack:
    """The IPv4 stack of ``ns``. ``forwarding`` defaults to ``net.ipv4.ip_forward`` (0 when the
    state has no sysctls). The neighbour table starts from the state's ``ip neigh``/``arp -n``
    entries; :meth:`learn` adds to it. Everything else is read from ``ns`` and never changes."""

    def __init__(self, ns: NamespaceState, *, forwarding: bool | None = None) -> None:
        self.ns = ns
        self.sysctls = _sysctl_map(ns)
        if forwarding is None:
            forwarding = self.sysctls.get("net.ipv4.ip_forward", "0").strip() == "1"
        self.forwarding = forwarding
        self.links: dict[str, Link] = {lk.name: lk for lk in ns.links or ()}
        self._addrs: dict[str, tuple[IPv4Interface, ...]] = {}  # the links never change: computed once
        self._local: frozenset[IPv4Address] | None = None
        self._macs: dict[str, Mac | None] = {}
        self.rules: tuple[RoutingRule, ...] = tuple(sorted(ns.rules, key=lambda r: r.priority)) \
            if ns.rules else DEFAULT_RULES
        routes = [r for r in ns.routes or () if r.dst is None or r.dst.version == 4]
        if not any(table_name(r.table) == "local" for r in routes):
            routes.extend(self._local_routes())
        self.routes: tuple[Route, ...] = tuple(routes)
        self._neigh: dict[tuple[str, IPv4Address], Mac] = {}
        self._decided: dict[tuple[object, ...], RouteDecision | Unreachable] = {}  # see route
        self._again: dict[tuple[object, ...], tuple[object, object, object]] = {}  # see _keep
        for nb in ns.neighbours or ():
            if isinstance(nb.address, IPv4Address) and nb.dev and nb.lladdr and "FAILED" not in nb.states \
                    and "INCOMPLETE" not in nb.states:
                self._neigh[(nb.dev, nb.address)] = Mac.parse(nb.lladdr)
        for e in ns.arp or ():
            if e.hwaddr and e.iface:
                self._neigh.setdefault((e.iface, e.address), Mac.parse(e.hwaddr))

    # -- addresses --

    def addresses(self, dev: str) -> tuple[IPv4Interface, ...]:
        """The IPv4 addresses on ``dev``, primary ones first (as ``ip addr`` lists them)."""
        got = self._addrs.get(dev)
        if got is None:
            lk = self.links.get(dev)
            got = self._addrs[dev] = tuple(_v4(a.interface for a in lk.addresses)) if lk is not None else ()
        return got

    def _primary(self, dev: str) -> list[IPv4Interface]:
        lk = self.links.get(dev)
        if lk is None:
            return []
        return _v4(a.interface for a in lk.addresses if not a.secondary)

    def local_addresses(self) -> frozenset[IPv4Address]:
        if self._local is None:
            self._local = frozenset(a.ip for lk in self.links.values() for a in _v4(x.interface for x in lk.addresses))
        return self._local

    def is_local(self, addr: IPv4Address) -> bool:
        return addr in self.local_addresses() or addr.is_loopback

    def mac_of(self, dev: str) -> Mac | None:
        if dev in self._macs:
            return self._macs[dev]
        lk = self.links.get(dev)
        got = Mac.parse(lk.mac) if lk is not None and lk.mac and lk.link_type != "loopback" else None
        self._macs[dev] = got
        return got

    def device_with_mac(self, m: Mac) -> str | None:
        return next((n for n, lk in self.links.items() if lk.mac and Mac.parse(lk.mac) == m), None)

    def _local_routes(self) -> list[Route]:
        """The kernel's ``table local``: a ``local`` route per address and ``broadcast`` routes."""
        out: list[Route] = []
        for lk in self.links.values():
            for a in lk.addresses:
                if not isinstance(a.interface, IPv4Interface):
                    continue
                addr = a.interface
                if addr.network.prefixlen == 8 and addr.ip.is_loopback:
                    out.append(Route(dst=addr.network, type="local", dev=lk.name, table="local", proto="kernel",
                                     scope="host", src=addr.ip))
                out.append(Route(dst=IPv4Network(addr.ip), type="local", dev=lk.name, table="local",
                                 proto="kernel", scope="host", src=addr.ip))
                if addr.network.prefixlen < 31:
                    out.append(Route(dst=IPv4Network(addr.network.broadcast_address), type="broadcast",
                                     dev=lk.name, table="local", proto="kernel", scope="link", src=addr.ip))
        return out

    # -- routing --

    def _rule_matches(self, rule: RoutingRule, dst: IPv4Address, src: IPv4Address | None, iif: str,
                      mark: int) -> bool:
        ok = True
        if rule.src is not None:
            ok = src is not None and rule.src.version == 4 and src in rule.src.network
        if ok and rule.dst is not None:
            ok = rule.dst.version == 4 and dst in rule.dst.network
        if ok and rule.fwmark is not None:
            mask = rule.fwmask if rule.fwmask is not None else 0xFFFFFFFF
            ok = (mark & mask) == (rule.fwmark & mask)
        if ok and rule.iif is not None:
            ok = rule.iif == iif
        if ok and rule.oif is not None:
            ok = False  # oif rules only match sockets bound to a device; not modelled
        if ok and rule.tos is not None:
            ok = False
        return ok != rule.invert

    def _lookup(self, table: str, dst: IPv4Address, oif: str | None) -> Route | None:
        best: Route | None = None
        key: tuple[int, int] = (-1, 0)
        for r in self.routes:
            if table_name(r.table) != table or "dead" in r.flags:
                continue
            net = r.dst if r.dst is not None else ANY
            if not isinstance(net, IPv4Network) or dst not in net:
                continue
            if oif is not None and r.dev is not None and r.dev != oif:
                continue
            k = (net.prefixlen, -(r.metric or 0))
            if k > key:
                best, key = r, k
        return best

    def route(self, dst: IPv4Address, *, src: IPv4Address | None = None, iif: str | None = None,
              oif: str | None = None, mark: int = 0) -> RouteDecision | Unreachable:
        """The routing decision for ``dst``: the output route of a locally generated packet
        (``iif`` ``None``; ``src`` the socket's bound address, if any) or the input route of one
        received on ``iif`` (``src`` its source). Policy rules in priority order, then
        longest-prefix match with the lowest metric winning a tie.

        Remembered by its inputs and ``forwarding``: a decision reads besides only the rules,
        routes and links, which never change (nor the neighbour table, which does), and it is
        immutable. Not pickled."""
        key = (dst, src, iif, oif, mark, self.forwarding)
        got = self._decided.get(key)
        if got is None:
            got = self._route(dst, src, iif, oif, mark)
            if len(self._decided) >= 4096:
                self._decided.clear()
            self._decided[key] = got
        return got

    def _route(self, dst: IPv4Address, src: IPv4Address | None, iif: str | None, oif: str | None,
               mark: int) -> RouteDecision | Unreachable:
        if dst == LIMITED_BROADCAST:
            return self._limited_broadcast(src, iif, oif)
        in_dev = iif if iif is not None else "lo"
        i = 0
        while i < len(self.rules):
            rule = self.rules[i]
            i += 1
            if not self._rule_matches(rule, dst, src, in_dev, mark):
                continue
            if rule.action in ("unreachable", "blackhole", "prohibit"):
                return _unreachable(rule.action, format_rule(rule), f"rule {rule.priority}: {rule.action}",
                                    rule=rule)
            if rule.action == "nop":
                continue
            if rule.action == "goto":
                target = rule.goto or 0
                i = next((j for j, r in enumerate(self.rules) if r.priority >= target), len(self.rules))
                continue
            table = table_name(rule.table)
            found = self._lookup(table, dst, oif)
            if found is None:
                continue
            if found.type == "throw":
                continue
            net = found.dst if found.dst is not None else ANY
            if rule.suppress_prefixlength is not None and net.prefixlen <= rule.suppress_prefixlength:
                continue
            return self._decide(found, table, rule, dst, src, iif)
        return _unreachable("no route", f"no route to {dst}", "no matching route in any table (rules: "
                            + ", ".join(f"{r.priority}" for r in self.rules) + ")")

    def _limited_broadcast(self, src: IPv4Address | None, iif: str | None,
                           oif: str | None) -> RouteDecision | Unreachable:
        dev = iif if iif is not None else oif
        if dev is None:
            return _unreachable("no route", f"no route to {LIMITED_BROADCAST}",
                                "255.255.255.255 needs an interface (SO_BINDTODEVICE)")
        r = Route(dst=IPv4Network(LIMITED_BROADCAST), type="broadcast", dev=dev, table="local", scope="link")
        local = iif is not None
        chosen = src if src is not None else self._select_src(dev, LIMITED_BROADCAST, None)
        step = Step(StepKind.ROUTE, format_route(r), "broadcast, delivered locally" if local
                    else f"broadcast out {dev}")
        return RouteDecision(r, "local", dev, LIMITED_BROADCAST, chosen, step, local=local, broadcast=True)

    def _decide(self, r: Route, table: str, rule: RoutingRule, dst: IPv4Address, src: IPv4Address | None,
                iif: str | None) -> RouteDecision | Unreachable:
        text = _route_text(r)
        where = "" if rule in DEFAULT_RULES else f" (rule {format_rule(rule)})"
        if r.type in ("unreachable", "prohibit", "blackhole"):
            return _unreachable(r.type, text, f"{r.type} route{where}", route=r, rule=rule)
        if r.type in ("local", "broadcast") and (r.type == "local" or iif is not None):
            dev = r.dev or "lo"
            chosen = src if src is not None else (dst if r.type == "local" or not isinstance(r.src, IPv4Address)
                                                  else r.src)
            detail = ("local delivery" if r.type == "local" else "broadcast, delivered locally") + where
            return RouteDecision(r, table, dev, dst, chosen, Step(StepKind.ROUTE, text, detail), rule,
                                 local=True, broadcast=r.type == "broadcast")
        if iif is not None and not self.forwarding:
            return _unreachable("not forwarding", text, f"not for this namespace and ip_forward is 0{where}",
                                route=r, rule=rule)
        if r.dev is None and r.via is None:
            return _unreachable("no route", text, "route has neither a device nor a gateway", route=r, rule=rule)
        via = r.via if isinstance(r.via, IPv4Address) else None
        dev = r.dev or ""
        if not dev:
            gw = self.route(via) if via is not None else None
            if not isinstance(gw, RouteDecision):
                return _unreachable("unreachable", text, f"gateway {via} is not reachable", route=r, rule=rule)
            dev = gw.dev
        next_hop = via if via is not None else dst
        picked: IPv4Address | None = src
        if picked is None:
            picked = r.src if isinstance(r.src, IPv4Address) else self._select_src(dev, next_hop, r.scope)
        parts = [f"via {via}" if via is not None else "directly connected", f"dev {dev}"]
        if picked is not None and iif is None:
            parts.append(f"src {picked}")
        step = Step(StepKind.ROUTE, text, " ".join(parts) + where)
        return RouteDecision(r, table, dev, next_hop, picked, step, rule,
                             broadcast=r.type == "broadcast")

    def _select_src(self, dev: str, toward: IPv4Address, scope: str | None) -> IPv4Address | None:
        """``inet_select_addr``: the primary address of ``dev`` on ``toward``'s subnet, else its
        first primary address, else a global address of any other device."""
        prim = self._primary(dev)
        for a in prim:
            if toward in a.network:
                return a.ip
        if prim:
            return prim[0].ip
        for lk in self.links.values():
            for a in _v4(x.interface for x in lk.addresses if not x.secondary and x.scope == "global"):
                return a.ip
        return None

    # -- neighbours --

    def resolve(self, dev: str, next_hop: IPv4Address) -> Mac | None:
        """The MAC of ``next_hop`` on ``dev`` if the neighbour table knows it."""
        if next_hop == LIMITED_BROADCAST or any(next_hop == a.network.broadcast_address
                                                for a in self.addresses(dev)):
            return BROADCAST
        return self._neigh.get((dev, next_hop))

    def learn(self, dev: str, addr: IPv4Address, hw: Mac) -> Step:
        """Record ``addr`` is-at ``hw`` on ``dev`` (an ARP reply or request arrived)."""
        self._neigh[(dev, addr)] = hw
        self._again.clear()  # a remembered transmit read the neighbour table
        return Step(StepKind.ARP, f"{addr} dev {dev} lladdr {hw} REACHABLE", "neighbour learned")

    def learned(self) -> dict[tuple[str, IPv4Address], Mac]:
        """The neighbour table as (device, address) -> MAC (what a rebuilt stack takes over)."""
        return dict(self._neigh)

    def forget(self, macs: Collection[Mac]) -> None:
        """Drop the neighbours at ``macs`` (instances that are gone)."""
        for key in [k for k, m in self._neigh.items() if m in macs]:
            del self._neigh[key]
        self._again.clear()

    def __getstate__(self) -> dict[str, object]:
        """What the IPv4 stack reads: its namespace without the ruleset (netfilter keeps it) and
        its links without their IPv6 addresses (a compute host's root namespace has a link and
        an fe80:: address per port, costly to read back)."""
        state = dict(self.__dict__)
        del state["_decided"]
        del state["_again"]
        slim: dict[int, Link] = {}
        for lk in (*(self.ns.links or ()), *self.links.values()):
            if id(lk) not in slim:
                v4 = tuple(a for a in lk.addresses if isinstance(a.interface, IPv4Interface))
                slim[id(lk)] = lk if len(v4) == len(lk.addresses) else replace(lk, addresses=v4)
        state["links"] = {name: slim[id(lk)] for name, lk in self.links.items()}
        state["ns"] = replace(self.ns, iptables=None, ifconfig=None, route_n=None,
                              links=None if self.ns.links is None else tuple(slim[id(lk)] for lk in self.ns.links))
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._decided = {}
        self._again = {}

    def neighbours(self) -> tuple[tuple[str, IPv4Address, Mac], ...]:
        """The neighbour table (device, address, MAC), sorted."""
        return tuple(sorted(((d, a, m) for (d, a), m in self._neigh.items()), key=lambda t: (t[0], t[1])))

    def arp_request_for(self, dev: str, addr: IPv4Address, *, src: IPv4Address | None = None) -> Ethernet:
        """The broadcast "who-has ``addr``" ``dev`` sends (from the packet's source address when it
        is on ``dev``, else ``dev``'s address on that subnet, as arp_announce=0 does)."""
        hw = self.mac_of(dev)
        if hw is None:
            raise InvalidInput(f"{dev} has no MAC address")
        psrc = src if src is not None and src in {a.ip for a in self.addresses(dev)} else None
        if psrc is None:
            psrc = self._select_src(dev, addr, None) or IPv4Address(0)
        return arp_request(hw, psrc, addr)

    # -- the received path --

    def _arp_ignore(self, dev: str) -> int:
        values = [self.sysctls.get(f"net.ipv4.conf.{k}.arp_ignore", "0") for k in ("all", dev)]
        return max(int(v) for v in values if v.strip().isdigit()) if values else 0

    def ingress(self, dev: str, frame: Ethernet) -> Decision:
        """L2 acceptance on ``dev``: frames to its MAC or broadcast. ARP is handled here (a request
        for one of our addresses is answered, subject to ``arp_ignore``; the sender is learned).
        An IPv4 packet comes back with ``action`` DELIVER and ``packet`` set: next is PREROUTING."""
        key = (dev, id(frame))
        got = self._again.get(key)
        if got is not None and got[0] is frame:
            return got[2]  # type: ignore[return-value]
        lk = self.links.get(dev)
        if lk is None:
            return Decision(Action.DROP, (Step(StepKind.DROP, dev, "no such device"),), reason="no such device")
        if lk.master is not None:
            return Decision(Action.DROP, (Step(StepKind.DROP, dev, f"enslaved to {lk.master}"),),
                            reason=f"enslaved to {lk.master}")
        own = self.mac_of(dev)
        if frame.dst != BROADCAST and frame.dst != own and not (frame.dst.value >> 40) & 1:
            return Decision(Action.DROP, (Step(StepKind.DROP, dev, f"frame to {frame.dst}, not for {dev}"),),
                            reason="not for us")
        p = frame.payload
        if isinstance(p, ARP):
            return self._arp(dev, p)
        if isinstance(p, IPv4):
            accepted = Decision(Action.DELIVER, (), packet=p)
            self._keep(key, frame, None, accepted)
            return accepted
        return Decision(Action.DROP, (Step(StepKind.DROP, dev, f"ethertype 0x{frame.type:04x}"),),
                        reason="not IPv4 or ARP")

    def _proxies(self, dev: str, target: IPv4Address, asker: IPv4Address) -> bool:
        """Proxy ARP: ``proxy_arp`` on ``dev`` (or all) and ``target`` routed out another device."""
        if "1" not in (self.sysctls.get(f"net.ipv4.conf.{k}.proxy_arp", "0").strip() for k in ("all", dev)):
            return False
        d = self.route(target, src=asker, iif=dev)
        return isinstance(d, RouteDecision) and not d.local and not d.broadcast and d.dev != dev

    def _arp(self, dev: str, p: ARP) -> Decision:
        mine = p.pdst in self.local_addresses()
        on_dev = p.pdst in {a.ip for a in self.addresses(dev)}
        steps: list[Step] = []
        if p.op == ARPOp.REQUEST:
            if p.psrc != IPv4Address(0) and (mine or (dev, p.psrc) in self._neigh):
                steps.append(self.learn(dev, p.psrc, p.hwsrc))
            ignore = self._arp_ignore(dev)
            if not mine and self._proxies(dev, p.pdst, p.psrc):  # proxy ARP (a DVR fip- namespace's fg-)
                hw = self.mac_of(dev)
                assert hw is not None
                steps.append(Step(StepKind.ARP, f"who-has {p.pdst} tell {p.psrc}",
                                  f"{p.pdst} is-at {hw} (proxy_arp on {dev}: routed out another device)"))
                return Decision(Action.ARP_REPLY, tuple(steps), frames=((dev, arp_reply(hw, p.pdst, p.hwsrc, p.psrc)),))
            if not mine or (ignore >= 1 and not on_dev):
                why = f"{p.pdst} is not ours" if not mine else f"arp_ignore={ignore}: {p.pdst} is not on {dev}"
                steps.append(Step(StepKind.ARP, f"who-has {p.pdst} tell {p.psrc}", f"not answered: {why}"))
                return Decision(Action.LEARNED if len(steps) > 1 else Action.DROP, tuple(steps), reason=why)
            hw = self.mac_of(dev)
            assert hw is not None
            reply = arp_reply(hw, p.pdst, p.hwsrc, p.psrc)
            steps.append(Step(StepKind.ARP, f"who-has {p.pdst} tell {p.psrc}", f"{p.pdst} is-at {hw}"))
            return Decision(Action.ARP_REPLY, tuple(steps), frames=((dev, reply),))
        if p.op == ARPOp.REPLY:
            steps.append(self.learn(dev, p.psrc, p.hwsrc))
            return Decision(Action.LEARNED, tuple(steps))
        return Decision(Action.DROP, (Step(StepKind.DROP, f"ARP op {p.op}", "unknown ARP op"),),
                        reason="unknown ARP op")

    def route_from(self, packet: IPv4) -> RouteDecision | Unreachable:
        """The output route of ``packet``, sent by this namespace (``route(dst, src=src)``)."""
        key = ("out", id(packet), self.forwarding)
        got = self._again.get(key)
        if got is not None and got[0] is packet:
            return got[2]  # type: ignore[return-value]
        decision = self.route(packet.dst, src=packet.src)
        self._keep(key, packet, None, decision)
        return decision

    def route_input(self, dev: str, packet: IPv4, *, mark: int = 0) -> RouteDecision | Unreachable:
        """The input routing decision (after PREROUTING)."""
        key = (dev, id(packet), mark, self.forwarding)
        got = self._again.get(key)
        if got is not None and got[0] is packet:
            return got[2]  # type: ignore[return-value]
        decision = self.route(packet.dst, src=packet.src, iif=dev, mark=mark)
        self._keep(key, packet, None, decision)
        return decision

    def forward(self, dev: str, packet: IPv4, decision: RouteDecision) -> tuple[IPv4 | None, Decision | None]:
        """``ip_forward``: a TTL of 1 or less gets time exceeded, a DF packet larger than the out
        device's MTU gets fragmentation needed; otherwise the packet with its TTL decremented (go
        to FORWARD, then POSTROUTING, then :meth:`transmit`)."""
        key = (id(packet), -id(decision))
        got = self._again.get(key)
        if got is not None and got[0] is packet and got[1] is decision:
            return got[2], None  # type: ignore[return-value]
        if packet.ttl <= 1:
            err = self.icmp_error_for(packet, ICMPType.TIME_EXCEEDED, 0, iif=dev)
            return None, self._error_decision(err, Step(StepKind.DROP, f"ttl {packet.ttl}",
                                                        "time exceeded in transit"), "TTL exceeded")
        out = self.links.get(decision.dev)
        mtu = out.mtu if out is not None and out.mtu else 1500
        size = ip_length(packet)
        if packet.df and size > mtu:
            err = self.icmp_error_for(packet, ICMPType.DEST_UNREACH, UnreachCode.FRAG_NEEDED, iif=dev, mtu=mtu)
            back = (f"fragmentation needed (ICMP type 3 code 4, next-hop MTU {mtu}) sent back to {packet.src}"
                    if err is not None else "no ICMP error can be sent back")
            return None, self._error_decision(err, Step(StepKind.DROP, f"mtu {mtu} dev {decision.dev}",
                                                        f"a {size}-byte packet with DF set is larger than "
                                                        f"{decision.dev}'s MTU {mtu}: {back}"), "MTU")
        fwd = with_(packet, ttl=packet.ttl - 1)
        self._keep(key, packet, decision, fwd)
        return fwd, None

    def _keep(self, key: tuple[object, ...], packet: object, decision: object, out: object) -> None:
        """Remember what :meth:`ingress` (an IPv4 frame), :meth:`route_input`, :meth:`forward` or
        :meth:`transmit` made of ``packet`` (or the frame) and ``decision`` (both held, so their
        ids, in the key, are not reused while it is kept): the same objects give the same object
        back, which the elements after this one find by identity. Those read besides only the
        links, rules and routes (which never change), ``forwarding`` (in the route's key) and, a
        transmit, the neighbour table: :meth:`learn` and :meth:`forget` forget them all."""
        if len(self._again) >= 4096:
            self._again.clear()
        self._again[key] = (packet, decision, out)

    def _error_decision(self, err: tuple[str, Ethernet] | None, step: Step, reason: str) -> Decision:
        frames = (err,) if err is not None else ()
        return Decision(Action.ICMP_ERROR if frames else Action.DROP, (step,), frames=frames, reason=reason)

    def transmit(self, decision: RouteDecision, packet: IPv4) -> Transmit:
        """The frame that carries ``packet`` out ``decision.dev`` to its next hop, or the ARP
        request to send first when the neighbour is unknown."""
        key = (id(packet), id(decision))
        got = self._again.get(key)
        if got is not None and got[0] is packet and got[1] is decision:
            return got[2]  # type: ignore[return-value]
        dev, hop = decision.dev, decision.next_hop
        src_mac = self.mac_of(dev)
        if src_mac is None:
            raise InvalidInput(f"{dev} has no MAC address")
        hw = self.resolve(dev, hop)
        if hw is None:
            req = self.arp_request_for(dev, hop, src=packet.src)
            return Transmit(dev, req, hop, True, Step(StepKind.ARP, f"who-has {hop} tell {req.payload.psrc}"
                                                      if isinstance(req.payload, ARP) else "", "neighbour unknown"))
        tx = Transmit(dev, Ethernet(dst=hw, src=src_mac, payload=packet), hop, False,
                      Step(StepKind.ARP, f"{hop} dev {dev} lladdr {hw}", "neighbour known"))
        self._keep(key, packet, decision, tx)
        return tx

    def arp_failed(self, packet: IPv4, *, iif: str | None) -> tuple[str, Ethernet] | None:
        """The ICMP host unreachable a router sends back when ARP for the next hop went
        unanswered (``iif`` the device the packet came in on; ``None`` for a local packet, which
        gets ``EHOSTUNREACH`` instead and nothing on the wire)."""
        if iif is None:
            return None
        return self.icmp_error_for(packet, ICMPType.DEST_UNREACH, UnreachCode.HOST, iif=iif)

    def icmp_error_for(self, original: IPv4, type: int, code: int, *, iif: str | None = None,
                       mtu: int = 0) -> tuple[str, Ethernet] | None:
        """The ICMP error about ``original`` (``icmp_send``), as (device, frame). Its source is
        chosen by routing back to ``original.src`` (icmp_errors_use_inbound_ifaddr=0). None for
        errors about ICMP errors, broadcasts and unroutable or unresolvable senders."""
        if isinstance(original.payload, ICMP) and original.payload.type not in (
                ICMPType.ECHO_REQUEST, ICMPType.ECHO_REPLY):
            return None
        if original.dst == LIMITED_BROADCAST or original.src == IPv4Address(0):
            return None
        back = self.route(original.src)
        if not isinstance(back, RouteDecision) or back.local:
            return None
        src = back.src or IPv4Address(0)
        pkt = IPv4(src=src, dst=original.src, payload=icmp_error(type, code, original, mtu=mtu))
        hw = self.resolve(back.dev, back.next_hop)
        own = self.mac_of(back.dev)
        if hw is None or own is None:
            return None
        return back.dev, Ethernet(dst=hw, src=own, payload=pkt)

    def receive(self, dev: str, frame: Ethernet, *, mark: int = 0) -> Decision:
        """The whole received path with every netfilter hook accepting: ingress, input route,
        then local delivery or forwarding (and neighbour resolution)."""
        first = self.ingress(dev, frame)
        if first.packet is None:
            return first
        packet = first.packet
        rd = self.route_input(dev, packet, mark=mark)
        if isinstance(rd, Unreachable):
            err = None
            if rd.icmp_code is not None:
                err = self.icmp_error_for(packet, ICMPType.DEST_UNREACH, rd.icmp_code, iif=dev)
            frames = (err,) if err is not None else ()
            return Decision(Action.ICMP_ERROR if frames else Action.DROP, (rd.step,), packet=packet, route=rd,
                            frames=frames, reason=rd.reason)
        if rd.local:
            return Decision(Action.DELIVER, (rd.step, Step(StepKind.DELIVER, f"{packet.dst}", f"delivered on {dev}")),
                            packet=packet, route=rd)
        fwd, err_decision = self.forward(dev, packet, rd)
        if fwd is None:
            assert err_decision is not None
            return replace(err_decision, steps=(rd.step, *err_decision.steps), packet=packet, route=rd)
        tx = self.transmit(rd, fwd)
        return Decision(Action.FORWARD, (rd.step, tx.step), packet=fwd, route=rd, frames=((tx.dev, tx.frame),),
                        reason="awaiting ARP" if tx.arp else "")
