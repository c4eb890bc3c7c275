"""netfilter over an iptables :class:`~neutrino.host.iptables.Ruleset`: the hooks, the tables in the
kernel's order, the matches and targets, conntrack and NAT, with every decision as trace steps.

Per hook the tables run in the kernel's priority order:

- PREROUTING: raw, conntrack lookup, mangle, nat (destination NAT)
- INPUT: mangle, filter, nat (source NAT), conntrack confirm
- FORWARD: mangle, filter
- OUTPUT: raw, conntrack lookup, mangle, nat (destination NAT), filter
- POSTROUTING: mangle, nat (source NAT), conntrack confirm

(security is not modelled). The nat table sees only the first packet of a connection; its
binding (or the null binding when no rule matched) then rewrites every packet of the connection
in both directions, as the kernel does. Invalid and untracked packets skip nat.

A packet's conntrack attachment travels from hook to hook in :attr:`HookCtx.ct` (the previous
:attr:`HookResult.ct`); :meth:`Netfilter.traverse` does that for a whole path such as
:data:`FORWARD_PATH`. A hook called without one looks the packet up itself.

Bridged traffic (br_netfilter): give ``physdev_in``/``physdev_out`` (the bridge ports) and the
bridge as ``in_dev``/``out_dev``; ``--physdev-is-bridged`` holds once ``physdev_out`` is known.

>>> from neutrino.host.iptables import parse_save
>>> from neutrino.sim.packets import IPv4, TCP, ip
>>> rs = parse_save('''*filter
... :INPUT ACCEPT [0:0]
... :FORWARD DROP [0:0]
... :OUTPUT ACCEPT [0:0]
... -A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
... -A FORWARD -p tcp -m tcp --dport 22 -j ACCEPT
... COMMIT
... ''')
>>> nf = Netfilter(rs, Conntrack())
>>> syn = IPv4(src=ip("10.0.0.1"), dst=ip("10.0.0.2"), payload=TCP(sport=4000, dport=22, flags=TCPFlag.SYN))
>>> res = nf.traverse(FORWARD_PATH, syn, HookCtx(in_dev="eth0", out_dev="eth1"))
>>> res.verdict, res.state, res.rule.spec()
(<NfVerdict.ACCEPT: 'ACCEPT'>, <CtState.NEW: 'NEW'>, '-p tcp -m tcp --dport 22 -j ACCEPT')
>>> telnet = with_(syn, payload=TCP(sport=4001, dport=23, flags=TCPFlag.SYN))
>>> res = nf.traverse(FORWARD_PATH, telnet, HookCtx())
>>> res.verdict, [s.text for s in res.steps if s.kind is StepKind.POLICY]
(<NfVerdict.DROP: 'DROP'>, ['-P FORWARD DROP'])
"""

from __future__ import annotations

import bisect
import enum
import pickle
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, fields, replace
from ipaddress import IPv4Address, IPv4Network, ip_network

from neutrino.errors import PlanError
from neutrino.host.fastnew import maker
from neutrino.host.iptables import (
    BUILTIN_CHAINS,
    Address,
    Chain,
    Counters,
    Fragment,
    Interface,
    Match,
    Option,
    Policy,
    Rule,
    Ruleset,
    Table,
    TableName,
    Target,
    format_rule,
)
from neutrino.sim.conntrack import (
    ICMP_ERRORS,
    Connection,
    Conntrack,
    CtRef,
    CtState,
    Direction,
    Manip,
    Tuple,
    packet_tuple,
)
from neutrino.sim.packets import ICMP, TCP, UDP, IPv4, Mac, TCPFlag, icmp_error, to_bytes, with_
from neutrino.sim.trace import Step, StepKind, new_step

__all__ = [
    "FORWARD_PATH", "LOCAL_IN_PATH", "LOCAL_OUT_PATH", "Conntrack", "CtState", "Hook", "HookCtx",
    "HookResult", "IpSet", "Netfilter", "NfVerdict", "UnsupportedRule",
]


class UnsupportedRule(PlanError):
    """A rule uses a match, option or target the simulator does not model (never silently matched)."""

    def __init__(self, rule: Rule, what: str) -> None:
        self.rule = rule
        super().__init__(f"netfilter: {what} in rule {format_rule(rule)!r}")


class Hook(enum.Enum):
    PREROUTING = "PREROUTING"
    INPUT = "INPUT"
    FORWARD = "FORWARD"
    OUTPUT = "OUTPUT"
    POSTROUTING = "POSTROUTING"


FORWARD_PATH = (Hook.PREROUTING, Hook.FORWARD, Hook.POSTROUTING)
LOCAL_IN_PATH = (Hook.PREROUTING, Hook.INPUT)
LOCAL_OUT_PATH = (Hook.OUTPUT, Hook.POSTROUTING)

_NAT = "nat"  # the NAT stage in a hook's order
# (both keyed by the hook's value: a string hashes in C, an enum member in Python, and every hook
# and every new connection's nat run looks these up)
_ORDER: dict[str, tuple[TableName | str, ...]] = {
    "PREROUTING": (TableName.RAW, TableName.MANGLE, _NAT),
    "INPUT": (TableName.MANGLE, TableName.FILTER, _NAT),
    "FORWARD": (TableName.MANGLE, TableName.FILTER),
    "OUTPUT": (TableName.RAW, TableName.MANGLE, _NAT, TableName.FILTER),
    "POSTROUTING": (TableName.MANGLE, _NAT),
}
_MANIP = {"PREROUTING": Manip.DST, "OUTPUT": Manip.DST, "INPUT": Manip.SRC, "POSTROUTING": Manip.SRC}
assert set(_ORDER) == {h.value for h in Hook} and set(_MANIP) <= set(_ORDER), "keyed by Hook values"


class NfVerdict(enum.Enum):
    ACCEPT = "ACCEPT"
    DROP = "DROP"


@dataclass(frozen=True, slots=True)
class IpSet:
    """An ipset's members (``hash:net``/``hash:ip``), for ``-m set --match-set``."""

    name: str
    members: frozenset[IPv4Network]

    def __contains__(self, addr: IPv4Address) -> bool:
        return any(addr in net for net in self.members)


@dataclass(frozen=True, slots=True)
class HookCtx:
    """What the kernel knows about the packet at a hook besides its headers.

    ``connmark``: the mark a *new* connection starts with. ``src_mac``: the Ethernet source (for
    ``-m mac``; None for locally generated packets). ``local_addrs``: the namespace's own addresses
    (``--dst-type LOCAL``, REJECT's source). ``dev_addrs``: each device's primary address (MASQUERADE,
    REDIRECT). ``zone``: the conntrack zone before raw's ``CT --zone``. ``ct``: the packet's conntrack
    attachment from the previous hook.
    """

    in_dev: str | None = None
    out_dev: str | None = None
    physdev_in: str | None = None
    physdev_out: str | None = None
    physdev_is_bridged: bool = False
    mark: int = 0
    connmark: int = 0
    src_mac: Mac | None = None
    local_addrs: frozenset[IPv4Address] = frozenset()
    dev_addrs: tuple[tuple[str, IPv4Address], ...] = ()
    ipsets: tuple[IpSet, ...] = ()
    zone: int = 0
    ct: CtRef | None = None

    def dev_addr(self, dev: str | None) -> IPv4Address | None:
        return next((a for d, a in self.dev_addrs if d == dev), None) if dev else None


@dataclass(frozen=True, slots=True)
class HookResult:
    """The verdict, the packet after NAT, its mark and conntrack attachment, and the steps.

    ``rule``: the rule that decided the verdict (None when a policy or nothing did); ``emit``: what
    the kernel sends back (REJECT's ICMP error or TCP reset); ``notes``: approximations made
    (an unknown ipset, a MASQUERADE without an address)."""

    verdict: NfVerdict
    packet: IPv4
    mark: int
    ct: CtRef | None
    steps: tuple[Step, ...]
    rule: Rule | None = None
    emit: tuple[IPv4, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.verdict is NfVerdict.ACCEPT

    @property
    def state(self) -> CtState | None:
        return None if self.ct is None else self.ct.state

    @property
    def obj(self) -> str:
        """The OpenStack object behind the deciding rule (its origin)."""
        return "" if self.rule is None else self.rule.origin


# ``HookCtx(...)`` and ``HookResult(...)`` made fast (every field, in order): a boot makes some
# 20,000 of each, a context and a result per hook
_new_hook_ctx: Callable[..., HookCtx] = maker(HookCtx)
_new_hook_result: Callable[..., HookResult] = maker(HookResult)


# ------------------------------------------------------------------------------- per-hook state


@dataclass(slots=True)
class _Pkt:
    """The mutable state of one packet going through one hook."""

    ip: IPv4
    ctx: HookCtx
    mark: int
    ct: CtRef | None
    zone: int
    notrack: bool = False
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    emit: list[IPv4] = field(default_factory=list)
    nat: tuple[Manip, IPv4Address, int | None] | None = None
    found_in: int | None = None  # the zone conntrack found the packet's confirmed connection in
    read_mac: bool = False  # whether a rule's test read the Ethernet source (``-m mac``)
    read_payload: bool = False  # whether a rule's test read past the headers (``-m length``)

    @property
    def conn(self) -> Connection | None:
        return None if self.ct is None else self.ct.conn


_Test = Callable[[_Pkt], bool]


class _Kind(enum.Enum):
    ACCEPT = 1
    DROP = 2
    RETURN = 3
    JUMP = 4
    GOTO = 5
    ACTION = 6  # non-terminating: MARK, CONNMARK, LOG, CT, CHECKSUM
    FINAL = 7  # terminating action: REJECT (drop), NAT targets (accept)
    NONE = 8  # no target: counts only


class _Compiled:
    """One rule ready to run: its tests, what its target does, and its text (formatted when a
    packet first matches it: only matching rules become trace steps)."""

    __slots__ = ("rule", "tests", "kind", "chain", "action", "_text", "_step", "target")

    def __init__(self, rule: Rule, tests: tuple[_Test, ...], kind: _Kind, chain: str = "",
                 action: Callable[[_Pkt], NfVerdict | None] | None = None) -> None:
        self.rule = rule
        self.tests = tests
        self.kind = kind
        self.chain = chain
        self.action = action
        self._text: str | None = None
        self._step: Step | None = None
        self.target: _Chain | None = None  # a jump's or goto's chain, once looked up (the same netfilter's)

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = format_rule(self.rule)
        return self._text

    def step(self, table: TableName) -> Step:
        """The trace step of a packet matching this rule of ``table`` (the table of the chain that
        holds it, so always the same): made once, a step being immutable. Its text (the rule
        formatted, the same whenever it is: the rule is immutable) is made when first read
        (:meth:`Step.later`): most rules a boot meets are one guest's, met by its DHCP alone,
        whose hop records nobody reads."""
        got = self._step
        if got is None:
            got = self._step = Step.later(StepKind.RULE, self._format, _action_text(self, table), self.rule.origin)
        return got

    def _format(self) -> str:
        return self.text

    def matches(self, p: _Pkt) -> bool:
        for t in self.tests:  # noqa: SIM110 - a plain loop is faster than all() on this hot path
            if not t(p):
                return False
        return True


# ------------------------------------------------------------------------------------ matches


def _net_test(addr: Address, get: Callable[[IPv4], IPv4Address]) -> _Test:
    net, neg = addr.network, addr.negated
    if not isinstance(net, IPv4Network):
        return lambda p: neg
    if addr.mask is not None:
        m, want = int(addr.mask), int(net.network_address)
        return lambda p: ((int(get(p.ip)) & m) == want) != neg
    if net.prefixlen == 0:
        return lambda p: not neg
    return lambda p: (get(p.ip) in net) != neg


def _iface_test(iface: Interface, get: Callable[[HookCtx], str | None]) -> _Test:
    return lambda p: iface.matches(get(p.ctx) or "")


def _port_range(text: str, rule: Rule) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        a = int(lo) if lo else 0
        b = (int(hi) if hi else 65535) if sep else a
    except ValueError:
        raise UnsupportedRule(rule, f"port {text!r} (only numbers)") from None
    return (a, b) if a <= b else (b, a)


def _l4_ports(p: _Pkt) -> tuple[int, int] | None:
    l4 = p.ip.payload
    if isinstance(l4, TCP | UDP) and p.ip.frag == 0:
        return l4.sport, l4.dport
    return None


_TCP_FLAG_NAMES = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20,
                   "ECE": 0x40, "CWR": 0x80, "ALL": 0x3F, "NONE": 0}


def _flags(text: str, rule: Rule) -> int:
    out = 0
    for name in text.upper().split(","):
        if name not in _TCP_FLAG_NAMES:
            raise UnsupportedRule(rule, f"TCP flag {name!r}")
        out |= _TCP_FLAG_NAMES[name]
    return out


_ICMP_NAMES: dict[str, tuple[int, int | None]] = {
    "any": (-1, None), "echo-reply": (0, None), "pong": (0, None), "destination-unreachable": (3, None),
    "network-unreachable": (3, 0), "host-unreachable": (3, 1), "protocol-unreachable": (3, 2),
    "port-unreachable": (3, 3), "fragmentation-needed": (3, 4), "source-route-failed": (3, 5),
    "network-unknown": (3, 6), "host-unknown": (3, 7), "network-prohibited": (3, 9),
    "host-prohibited": (3, 10), "TOS-network-unreachable": (3, 11), "TOS-host-unreachable": (3, 12),
    "communication-prohibited": (3, 13), "host-precedence-violation": (3, 14),
    "precedence-cutoff": (3, 15), "source-quench": (4, None), "redirect": (5, None),
    "network-redirect": (5, 0), "host-redirect": (5, 1), "TOS-network-redirect": (5, 2),
    "TOS-host-redirect": (5, 3), "echo-request": (8, None), "ping": (8, None),
    "router-advertisement": (9, None), "router-solicitation": (10, None), "time-exceeded": (11, None),
    "ttl-exceeded": (11, None), "ttl-zero-during-transit": (11, 0), "ttl-zero-during-reassembly": (11, 1),
    "parameter-problem": (12, None), "ip-header-bad": (12, 0), "required-option-missing": (12, 1),
    "timestamp-request": (13, None), "timestamp-reply": (14, None), "address-mask-request": (17, None),
    "address-mask-reply": (18, None),
}


def _icmp_type(text: str, rule: Rule) -> tuple[int, int | None]:
    if text in _ICMP_NAMES:
        return _ICMP_NAMES[text]
    m = re.fullmatch(r"(\d+)(?:/(\d+))?", text)
    if not m:
        raise UnsupportedRule(rule, f"ICMP type {text!r}")
    return int(m.group(1)), None if m.group(2) is None else int(m.group(2))


def _value_mask(text: str, rule: Rule) -> tuple[int, int]:
    val, _, mask = text.partition("/")
    try:
        return int(val, 0), int(mask, 0) if mask else 0xFFFFFFFF
    except ValueError:
        raise UnsupportedRule(rule, f"mark {text!r}") from None


_CT_BITS = {"INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED", "SNAT", "DNAT"}


def _ct_states(p: _Pkt) -> set[str]:
    ref = p.ct
    if ref is None or (ref.conn is None and ref.state is not CtState.UNTRACKED):
        return {"INVALID"}
    out = {ref.state.value}
    if ref.conn is not None:
        if ref.conn.snat:
            out.add("SNAT")
        if ref.conn.dnat:
            out.add("DNAT")
    return out


def _addr_type(addr: IPv4Address, p: _Pkt) -> str:
    if addr in p.ctx.local_addrs or addr.is_loopback:
        return "LOCAL"
    if addr == IPv4Address("255.255.255.255"):
        return "BROADCAST"
    if addr.is_multicast:
        return "MULTICAST"
    return "UNICAST"


def _option_test(rule: Rule, m: Match, o: Option) -> _Test | None:  # noqa: C901 - one table of options
    """A test for one option of ``-m module`` (None: the option never excludes a packet)."""
    neg, mod, name, val = o.negated, m.module, o.name, o.value

    def fail(what: str = "") -> UnsupportedRule:
        return UnsupportedRule(rule, what or f"-m {mod} --{name}")

    if mod == "comment" or mod == "limit":
        return None
    if mod in ("tcp", "udp", "sctp", "dccp") and name in ("sport", "dport", "source-port", "destination-port"):
        lo, hi = _port_range(val, rule)
        idx = 0 if name in ("sport", "source-port") else 1
        return lambda p: (ports := _l4_ports(p)) is not None and ((lo <= ports[idx] <= hi) != neg)
    if mod == "tcp" and name in ("tcp-flags", "syn"):
        if name == "syn":
            mask, comp = 0x17, 0x02
        else:
            mask, comp = _flags(o.args[0], rule), _flags(o.args[1], rule)

        def tcp_flags(p: _Pkt) -> bool:
            l4 = p.ip.payload
            return isinstance(l4, TCP) and p.ip.frag == 0 and (((int(l4.flags) & mask) == comp) != neg)
        return tcp_flags
    if mod == "multiport":
        ranges = tuple(_port_range(x, rule) for x in val.split(","))
        which = {"sports": (0,), "source-ports": (0,), "dports": (1,), "destination-ports": (1,),
                 "ports": (0, 1)}.get(name)
        if which is None:
            raise fail()

        def multiport(p: _Pkt) -> bool:
            ports = _l4_ports(p)
            if ports is None:
                return False
            hit = any(lo <= ports[i] <= hi for i in which for lo, hi in ranges)
            return hit != neg
        return multiport
    if mod == "icmp" and name == "icmp-type":
        want, code = _icmp_type(val, rule)

        def icmp_type(p: _Pkt) -> bool:
            l4 = p.ip.payload
            if not isinstance(l4, ICMP) or p.ip.frag:
                return False
            hit = want == -1 or (l4.type == want and (code is None or l4.code == code))
            return hit != neg
        return icmp_type
    if mod == "icmp6":
        return lambda p: False  # IPv6 only; the simulator's packets are IPv4
    if mod in ("state", "conntrack") and name in ("state", "ctstate"):
        states = {s.upper() for s in val.split(",")}
        if not states <= _CT_BITS:
            raise fail(f"conntrack state(s) {sorted(states - _CT_BITS)}")
        return lambda p: bool(_ct_states(p) & states) != neg
    if mod == "conntrack":
        return _conntrack_option(rule, o)
    if mod == "mac" and name == "mac-source":
        want_mac = Mac.parse(val)

        def mac_source(p: _Pkt) -> bool:
            p.read_mac = True  # (a DHCP hook's memory keys the source MAC only then: see Netfilter._dhcp_hook)
            return p.ctx.src_mac is not None and ((p.ctx.src_mac == want_mac) != neg)
        return mac_source
    if mod == "mark" and name == "mark":
        value, mask = _value_mask(val, rule)
        return lambda p: ((p.mark & mask) == value) != neg
    if mod == "connmark" and name == "mark":
        value, mask = _value_mask(val, rule)
        return lambda p: p.conn is not None and (((p.conn.mark & mask) == value) != neg)
    if mod == "physdev":
        return _physdev_option(rule, o)
    if mod == "set":
        if name == "match-set":
            set_name, dirs = o.args[0], o.args[1].split(",")[0]

            def match_set(p: _Pkt) -> bool:
                ipset = next((s for s in p.ctx.ipsets if s.name == set_name), None)
                if ipset is None:
                    p.notes.append(f"ipset {set_name} unknown (ipset unsupported): no match")
                    return False
                addr = p.ip.src if dirs == "src" else p.ip.dst
                return (addr in ipset) != neg
            return match_set
        if name in ("return-nomatch", "update-counters", "update-subcounters"):
            return None
        raise fail()
    if mod == "addrtype" and name in ("src-type", "dst-type"):
        types = set(val.upper().split(","))
        if not types <= {"LOCAL", "UNICAST", "BROADCAST", "MULTICAST"}:
            raise fail(f"address type(s) {sorted(types)}")
        if name == "src-type":
            return lambda p: (_addr_type(p.ip.src, p) in types) != neg
        return lambda p: (_addr_type(p.ip.dst, p) in types) != neg
    if mod == "addrtype" and name in ("limit-iface-in", "limit-iface-out"):
        return None
    if mod == "length" and name == "length":
        lo, hi = _port_range(val, rule)

        def length(p: _Pkt) -> bool:
            p.read_payload = True  # (a DHCP hook's run that read it is not remembered: see Netfilter._dhcp_hook)
            return (lo <= len(to_bytes(p.ip, pad=False)) <= hi) != neg
        return length
    raise fail()


def _conntrack_option(rule: Rule, o: Option) -> _Test:
    neg, name, val = o.negated, o.name, o.value
    if name == "ctdir":
        want = Direction.ORIGINAL if val.upper() == "ORIGINAL" else Direction.REPLY
        return lambda p: p.ct is not None and p.ct.conn is not None and ((p.ct.direction is want) != neg)
    if name == "ctproto":
        from neutrino.host.iptables import PROTOCOL_NUMBERS
        num = int(val) if val.isdigit() else PROTOCOL_NUMBERS.get(val.lower(), -1)
        return lambda p: p.conn is not None and ((p.conn.original.proto == num) != neg)
    fields: dict[str, Callable[[Connection], IPv4Address | int]] = {
        "ctorigsrc": lambda c: c.original.src, "ctorigdst": lambda c: c.original.dst,
        "ctreplsrc": lambda c: c.reply.src, "ctrepldst": lambda c: c.reply.dst,
        "ctorigsrcport": lambda c: c.original.sport, "ctorigdstport": lambda c: c.original.dport,
        "ctreplsrcport": lambda c: c.reply.sport, "ctrepldstport": lambda c: c.reply.dport,
    }
    if name in fields:
        get = fields[name]
        if name.endswith("port"):
            lo, hi = _port_range(val, rule)
            return lambda p: p.conn is not None and ((lo <= int(get(p.conn)) <= hi) != neg)
        net = ip_network(val, strict=False)
        return lambda p: p.conn is not None and ((get(p.conn) in net) != neg)
    if name == "ctstatus":
        want_st = set(val.upper().split(","))

        def status(p: _Pkt) -> bool:
            c = p.conn
            have = set() if c is None else {"CONFIRMED"} if c.confirmed else set()
            if c is not None and c.seen_reply:
                have |= {"SEEN_REPLY", "ASSURED"}
            if not have:
                have = {"NONE"}
            return bool(have & want_st) != neg
        return status
    raise UnsupportedRule(rule, f"-m conntrack --{name}")


def _physdev_option(rule: Rule, o: Option) -> _Test:
    """xt_physdev: without bridge information every non-negated option fails."""
    neg, name = o.negated, o.name

    def bridged(p: _Pkt) -> bool:
        return p.ctx.physdev_in is not None or p.ctx.physdev_out is not None

    # (every bridged packet meets a port's ``--physdev-in/out`` and ``--physdev-is-bridged`` tests in
    # three tables: the two tests below have :func:`bridged` and a plain name's match inline)
    if name == "physdev-is-bridged":
        def is_bridged(p: _Pkt) -> bool:
            ctx = p.ctx
            if ctx.physdev_in is None and ctx.physdev_out is None:
                return neg
            return (ctx.physdev_is_bridged or ctx.physdev_out is not None) != neg
        return is_bridged
    if name == "physdev-is-in":
        return lambda p: neg if not bridged(p) else ((p.ctx.physdev_in is not None) != neg)
    if name == "physdev-is-out":
        return lambda p: neg if not bridged(p) else ((p.ctx.physdev_out is not None) != neg)
    if name in ("physdev-in", "physdev-out"):
        iface = Interface(o.value)
        attr = "physdev_in" if name == "physdev-in" else "physdev_out"
        if iface.wildcard:
            return lambda p: neg if not bridged(p) else (iface.matches(getattr(p.ctx, attr) or "") != neg)
        want, port_in = iface.name, name == "physdev-in"

        def port(p: _Pkt) -> bool:  # (not negated; :meth:`Interface.matches` of a plain name: equal to it)
            ctx = p.ctx
            pin, pout = ctx.physdev_in, ctx.physdev_out
            if pin is None and pout is None:
                return False
            return ((pin if port_in else pout) or "") == want
        if neg:
            return lambda p: not bridged(p) or not port(p)
        return port
    raise UnsupportedRule(rule, f"-m physdev --{name}")


def _rule_tests(rule: Rule) -> tuple[_Test, ...]:
    tests: list[_Test] = []
    if rule.protocol is not None:
        num = rule.protocol.number
        if num is None:
            raise UnsupportedRule(rule, f"protocol {rule.protocol.name!r}")
        pneg = rule.protocol.negated
        if num != 0:
            tests.append(lambda p: (p.ip.proto == num) != pneg)
        elif pneg:
            tests.append(lambda p: False)
    if rule.source is not None:
        tests.append(_net_test(rule.source, lambda ip: ip.src))
    if rule.destination is not None:
        tests.append(_net_test(rule.destination, lambda ip: ip.dst))
    if rule.in_interface is not None:
        tests.append(_iface_test(rule.in_interface, lambda c: c.in_dev))
    if rule.out_interface is not None:
        tests.append(_iface_test(rule.out_interface, lambda c: c.out_dev))
    if rule.fragment is Fragment.FRAGMENTS:
        tests.append(lambda p: p.ip.frag > 0)
    elif rule.fragment is Fragment.NOT_FRAGMENTS:
        tests.append(lambda p: p.ip.frag == 0)
    for m in rule.matches:
        mod = m.module
        if mod not in _MODULES:
            raise UnsupportedRule(rule, f"match module -m {mod}")
        if mod == "comment" or mod == "limit":  # (no test: see _option_test)
            continue
        for o in m.options:
            key = (mod, o)
            got = _OPTION_TESTS.get(key)
            if got is None:
                t = _option_test(rule, m, o)
                got = () if t is None else (t,)
                if len(_OPTION_TESTS) >= _MAX_OPTION_TESTS:
                    _OPTION_TESTS.clear()
                _OPTION_TESTS[key] = got
            tests += got
    return tuple(tests)


_OPTION_TESTS: dict[tuple[str, Option], tuple[_Test, ...]] = {}
"""Each option's test (none, or one) by its module and the option itself, shared by every rule
that has it, in every netfilter: a test reads only the packet, and what it compares with comes
from the option alone (the rule serves the errors, which are raised, never kept). A 1,000-guest
boot compiles about eleven rules a guest, with 17,000 options besides their comments; these recur
(``--physdev-is-bridged``, DHCP's ports, a port's own ``--physdev-in`` in the raw, nat and filter
tables), so most tests are found rather than made."""
_MAX_OPTION_TESTS = 16384


_MODULES = frozenset({"tcp", "udp", "sctp", "dccp", "multiport", "icmp", "icmp6", "state", "conntrack",
                      "mac", "mark", "connmark", "comment", "physdev", "set", "addrtype", "limit", "length"})


# ------------------------------------------------------------------------------------ targets


def _nat_to(text: str, rule: Rule) -> tuple[IPv4Address | None, int | None, tuple[int, int] | None, int | None]:
    """``ip[-ip][:port[-port][/base]]``: the first address and port, the port range, and the base
    port of a shifted mapping (``:2000-2010/1000``: port 1000+k goes to 2000+k)."""
    m = re.fullmatch(r"([\d.]+)?(?:-[\d.]+)?(?::(\d+)(?:-(\d+)(?:/(\d+))?)?)?", text)
    if not m:
        raise UnsupportedRule(rule, f"NAT address {text!r}")
    addr = IPv4Address(m.group(1)) if m.group(1) else None
    port = int(m.group(2)) if m.group(2) else None
    rng = (port, int(m.group(3))) if port is not None and m.group(3) else None
    base = int(m.group(4)) if m.group(4) else None
    return addr, port, rng, base


def _nat_port(pkt: IPv4, manip: Manip, port: int | None, rng: tuple[int, int] | None, base: int | None
              ) -> int | None:
    """The port a NAT rule gives the packet (the kernel's nf_nat_l4proto_unique_tuple, without clashes):
    with a base, ``lo + (port - base) % size``; with a range, the packet's own port when inside it,
    else the range's first; else the rule's port (None: unchanged)."""
    if rng is None:
        return port
    orig = _port_of(pkt, manip)
    if orig is None:
        return rng[0]
    lo, hi = min(rng), max(rng)
    if base is not None:
        return lo + (orig - base) % (hi - lo + 1)
    return orig if lo <= orig <= hi else lo


_REJECT = {
    "icmp-net-unreachable": 0, "icmp-host-unreachable": 1, "icmp-proto-unreachable": 2,
    "icmp-port-unreachable": 3, "icmp-net-prohibited": 9, "icmp-host-prohibited": 10,
    "icmp-admin-prohibited": 13, "tcp-reset": -1,
}


def _reject_packet(p: _Pkt, how: str) -> IPv4 | None:
    pkt = p.ip
    if how == "tcp-reset":
        tcp = pkt.payload
        if not isinstance(tcp, TCP) or tcp.flags & TCPFlag.RST:
            return None
        if tcp.flags & TCPFlag.ACK:
            rst = TCP(sport=tcp.dport, dport=tcp.sport, seq=tcp.ack, flags=TCPFlag.RST, window=0)
        else:
            length = len(tcp.payload.data) if tcp.payload is not None else 0
            ack = tcp.seq + length + bool(tcp.flags & TCPFlag.SYN) + bool(tcp.flags & TCPFlag.FIN)
            rst = TCP(sport=tcp.dport, dport=tcp.sport, ack=ack & 0xFFFFFFFF, flags=TCPFlag.RST | TCPFlag.ACK,
                      window=0)
        return IPv4(src=pkt.dst, dst=pkt.src, payload=rst)
    if isinstance(pkt.payload, ICMP) and pkt.payload.type in ICMP_ERRORS:
        return None  # no ICMP error about an ICMP error
    src = pkt.dst if pkt.dst in p.ctx.local_addrs else (p.ctx.dev_addr(p.ctx.in_dev) or pkt.dst)
    return IPv4(src=src, dst=pkt.src, payload=icmp_error(3, _REJECT[how], pkt))


def _target(rule: Rule, t: Target, table: TableName, chains: Collection[str]) -> tuple[
        _Kind, str, Callable[[_Pkt], NfVerdict | None] | None]:
    name = t.name

    def opts(allowed: set[str]) -> None:
        extra = [o.name for o in t.options if o.name not in allowed]
        if extra:
            raise UnsupportedRule(rule, f"-j {name} option(s) {extra}")

    if name in chains:
        return (_Kind.GOTO if t.goto else _Kind.JUMP), name, None
    if name in ("ACCEPT", "DROP", "RETURN"):
        return {"ACCEPT": _Kind.ACCEPT, "DROP": _Kind.DROP, "RETURN": _Kind.RETURN}[name], "", None
    if name in ("LOG", "CHECKSUM", "NFLOG"):
        return _Kind.ACTION, "", lambda p: None
    if name == "MARK":
        opts({"set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark"})
        o = t.options[0]
        v, m = _value_mask(o.value, rule)
        fn: Callable[[int], int] = {
            "set-xmark": lambda x: (x & ~m) ^ v, "set-mark": lambda x: (x & ~m) | v,
            "and-mark": lambda x: x & v, "or-mark": lambda x: x | v, "xor-mark": lambda x: x ^ v,
        }[o.name]

        def mark(p: _Pkt) -> None:
            p.mark = fn(p.mark) & 0xFFFFFFFF
            return None
        return _Kind.ACTION, "", mark
    if name == "CONNMARK":
        opts({"set-xmark", "set-mark", "save-mark", "restore-mark", "nfmask", "ctmask", "mask"})
        full = 0xFFFFFFFF
        both = _value_mask(t.value("mask") or "0xffffffff", rule)[0]
        nfmask = _value_mask(t.value("nfmask") or "", rule)[0] if t.has("nfmask") else both
        ctmask = _value_mask(t.value("ctmask") or "", rule)[0] if t.has("ctmask") else both

        def connmark(p: _Pkt) -> None:
            c = p.conn
            if c is None:
                return None
            if t.has("save-mark"):
                c.mark = ((c.mark & ~ctmask) ^ (p.mark & nfmask)) & full
            elif t.has("restore-mark"):
                p.mark = ((p.mark & ~nfmask) ^ (c.mark & ctmask)) & full
            else:
                o = next(x for x in t.options if x.name in ("set-xmark", "set-mark"))
                v, m = _value_mask(o.value, rule)
                c.mark = (((c.mark & ~m) ^ v) if o.name == "set-xmark" else ((c.mark & ~m) | v)) & full
            return None
        return _Kind.ACTION, "", connmark
    if name in ("CT", "NOTRACK"):
        if table is not TableName.RAW:
            raise UnsupportedRule(rule, f"-j {name} outside the raw table")
        opts({"zone", "notrack", "ctevents", "expevents", "timeout", "helper"})
        zone = int(t.value("zone") or "0", 0) if t.has("zone") else None
        notrack = name == "NOTRACK" or t.has("notrack")

        def ct(p: _Pkt) -> None:
            if notrack:
                p.notrack = True
            if zone is not None:
                p.zone = zone
            return None
        return _Kind.ACTION, "", ct
    if name == "REJECT":
        opts({"reject-with"})
        how = t.value("reject-with") or "icmp-port-unreachable"
        how = {"icmp-net-unreach": "icmp-net-unreachable", "icmp-host-unreach": "icmp-host-unreachable",
               "icmp-port-unreach": "icmp-port-unreachable", "icmp-proto-unreach": "icmp-proto-unreachable",
               "tcp-rst": "tcp-reset"}.get(how, how)
        if how not in _REJECT:
            raise UnsupportedRule(rule, f"--reject-with {how}")

        def reject(p: _Pkt) -> NfVerdict:
            out = _reject_packet(p, how)
            if out is not None:
                p.emit.append(out)
            return NfVerdict.DROP
        return _Kind.FINAL, "", reject
    if name in ("DNAT", "SNAT", "MASQUERADE", "REDIRECT"):
        if table is not TableName.NAT:
            raise UnsupportedRule(rule, f"-j {name} outside the nat table")
        return _Kind.FINAL, "", _nat_target(rule, t)
    raise UnsupportedRule(rule, f"target -j {name}")


def _nat_target(rule: Rule, t: Target) -> Callable[[_Pkt], NfVerdict | None]:
    name = t.name
    if name in ("DNAT", "SNAT"):
        opt = "to-destination" if name == "DNAT" else "to-source"
        if not t.has(opt):
            raise UnsupportedRule(rule, f"-j {name} without --{opt}")
        addr, port, rng, base = _nat_to(t.value(opt) or "", rule)
        manip = Manip.DST if name == "DNAT" else Manip.SRC

        def nat(p: _Pkt) -> NfVerdict:
            p.nat = (manip, addr if addr is not None else (p.ip.dst if manip is Manip.DST else p.ip.src),
                     _nat_port(p.ip, manip, port, rng, base))
            return NfVerdict.ACCEPT
        return nat
    ports = t.value("to-ports")
    port = _port_range(ports.replace("-", ":"), rule)[0] if ports else None
    if name == "MASQUERADE":
        def masquerade(p: _Pkt) -> NfVerdict:
            addr = p.ctx.dev_addr(p.ctx.out_dev)
            if addr is None:
                p.notes.append(f"MASQUERADE: no address on {p.ctx.out_dev}: dropped")
                return NfVerdict.DROP
            p.nat = (Manip.SRC, addr, port)
            return NfVerdict.ACCEPT
        return masquerade

    def redirect(p: _Pkt) -> NfVerdict:
        addr = IPv4Address("127.0.0.1") if p.ctx.in_dev is None else p.ctx.dev_addr(p.ctx.in_dev)
        if addr is None:
            p.notes.append(f"REDIRECT: no address on {p.ctx.in_dev}: dropped")
            return NfVerdict.DROP
        p.nat = (Manip.DST, addr, port)
        return NfVerdict.ACCEPT
    return redirect


def _action_text(c: _Compiled, table: TableName) -> str:
    t = c.rule.target
    if c.kind is _Kind.JUMP:
        return f"[{table}] jump to {c.chain}"
    if c.kind is _Kind.GOTO:
        return f"[{table}] goto {c.chain}"
    if c.kind is _Kind.NONE or t is None:
        return f"[{table}] no target"
    return f"[{table}] {t.name}"


# ------------------------------------------------------------------------------------ tables


_KEY_OF: dict[str, Callable[[_Pkt], object]] = {
    "src": lambda p: int(p.ip.src), "dst": lambda p: int(p.ip.dst), "in": lambda p: p.ctx.in_dev,
    "out": lambda p: p.ctx.out_dev, "physdev-in": lambda p: p.ctx.physdev_in,
    "physdev-out": lambda p: p.ctx.physdev_out,
}
MIN_BLOCK = 4
"""Runs of at least this many rules that each test one value (a /32 source, a device) are indexed."""
_UNSET = object()


def _rule_key(rule: Rule) -> tuple[str, object] | None:
    """A value the packet must have for ``rule`` to match it (one of :data:`_KEY_OF`): a plain
    /32 source or destination, an exact ``-i``/``-o`` device or ``--physdev-in/out`` port."""
    for kind, addr in (("src", rule.source), ("dst", rule.destination)):
        if addr is not None and not addr.negated and addr.mask is None and isinstance(addr.network, IPv4Network) \
                and addr.network.prefixlen == 32:
            return kind, int(addr.network.network_address)
    for kind, iface in (("in", rule.in_interface), ("out", rule.out_interface)):
        if iface is not None and not iface.negated and not iface.wildcard and iface.name:
            return kind, iface.name
    for m in rule.matches:
        if m.module != "physdev":
            continue
        for o in m.options:
            if o.name in ("physdev-in", "physdev-out") and not o.negated and len(o.args) == 1 and o.args[0] \
                    and not o.args[0].endswith("+"):
                return o.name, o.args[0]
    return None


class _Block:
    """Consecutive rules ``[start, end)`` each testing one value: where the next rule that can
    match a packet is, without trying the ones in between (they cannot match it)."""

    __slots__ = ("end", "index")

    def __init__(self, end: int, index: dict[str, dict[object, list[int]]]) -> None:
        self.end = end
        self.index = index

    def next(self, i: int, p: _Pkt) -> int:
        best = self.end
        for kind, by_value in self.index.items():
            hits = by_value.get(_KEY_OF[kind](p))
            if hits:
                j = bisect.bisect_left(hits, i)
                if j < len(hits) and hits[j] < best:
                    best = hits[j]
        return best


_Key = tuple[str, object] | None
_SavedChain = tuple[Policy | None, tuple[_Key, ...], list[bytes], Counters | None]
"""A chain as saved: its policy, each rule's key (see :func:`_rule_key`), each rule pickled, and
its counters."""


class _Chain:
    """A chain as netfilter runs it: rules compiled when first reached, runs of rules keyed on one
    value (per-port physdev jumps, remote-group ``-s X/32`` returns) indexed by that value when a
    packet first skips over one. A loaded chain holds its rules pickled one by one, unpickled
    when reached."""

    __slots__ = ("name", "policy", "table", "rules", "names", "_compiled", "_keys", "_blocks", "policy_step")

    def __init__(self, name: str, policy: Policy | None, table: TableName, rules: Sequence[Rule | bytes],
                 names: frozenset[str], keys: Sequence[_Key] | None = None) -> None:
        self.name = name
        self.policy = policy
        self.table = table
        # held as given, not copied (a guest's `i` chain has a thousand rules): a ruleset's tuple
        # of rules, or a loaded chain's own list of pickles, which rule() unpickles in place
        self.rules = rules
        self.names = names
        self._compiled: list[_Compiled | None] = [None] * len(rules)
        self._keys: list[_Key | object] = list(keys) if keys is not None else [_UNSET] * len(rules)
        self._blocks: list[_Block | None | object] = [_UNSET] * len(rules)
        self.policy_step: Step | None = None  # the step of a packet its policy decides (see Netfilter._policy)

    def key(self, i: int) -> _Key:
        k = self._keys[i]
        if k is _UNSET:
            k = self._keys[i] = _rule_key(self.rule(i))
        return k  # type: ignore[return-value]

    def _block(self, i: int) -> _Block | None:
        """The indexed run of keyed rules ``i`` is in (None: too short to be worth one)."""
        got = self._blocks[i]
        if got is _UNSET:
            start, end = i, i + 1
            while start > 0 and self.key(start - 1) is not None:
                start -= 1
            while end < len(self.rules) and self.key(end) is not None:
                end += 1
            block = None
            if end - start >= MIN_BLOCK:
                index: dict[str, dict[object, list[int]]] = {}
                for k in range(start, end):
                    kind, value = self.key(k)  # type: ignore[misc]
                    index.setdefault(kind, {}).setdefault(value, []).append(k)
                block = _Block(end, index)
            for k in range(start, end):
                self._blocks[k] = block
            got = block
        return got  # type: ignore[return-value]

    def rule(self, i: int) -> Rule:
        r = self.rules[i]
        if isinstance(r, bytes):
            r = self.rules[i] = pickle.loads(r)  # type: ignore[index]
        return r

    def at(self, i: int) -> _Compiled:
        c = self._compiled[i]
        if c is None:
            rule = self.rule(i)
            if rule.target is None:
                kind, dest, action = _Kind.NONE, "", None
            else:
                kind, dest, action = _target(rule, rule.target, self.table, self.names)
            c = self._compiled[i] = _Compiled(rule, _rule_tests(rule), kind, dest, action)
        return c

    def next(self, i: int, p: _Pkt) -> int:
        """The first rule from ``i`` on that may match ``p``."""
        if i >= len(self.rules):
            return i
        k = self._keys[i]  # (:meth:`key` and :meth:`_block` inlined for a rule looked at before)
        if k is _UNSET:
            k = self.key(i)
        if k is None or _KEY_OF[k[0]](p) == k[1]:  # type: ignore[index]
            return i
        block = self._blocks[i]
        if block is _UNSET:
            block = self._block(i)
        return block.next(i, p) if block is not None else i  # type: ignore[attr-defined]


def _saved_chain(chain: Chain, before: tuple[Chain, bytes] | None = None) -> bytes:
    """``chain`` pickled (see :data:`_SavedChain`); ``before``: the chain it replaces, pickled,
    whose rules (with the same origin) are not pickled again."""
    known: dict[tuple[Rule, str], bytes] = {}
    if before is not None:
        old_blobs = pickle.loads(before[1])[2]
        known = {(r, r.origin): b for r, b in zip(before[0].rules, old_blobs, strict=False)}
    blobs = []
    for r in chain.rules:
        blob = known.get((r, r.origin))
        blobs.append(blob if blob is not None else pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL))
    saved: _SavedChain = (chain.policy, tuple(_rule_key(r) for r in chain.rules), blobs, chain.counters)
    return pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL)


class Netfilter:
    """The netfilter of one network namespace: its ruleset and its conntrack table.

    Pickled, it keeps each rule pickled on its own: a loaded netfilter unpickles only the rules
    packets reach (a compute host's ruleset grows with the square of the instances)."""

    def __init__(self, ruleset: Ruleset, conntrack: Conntrack | None = None, *,
                 previous: Netfilter | None = None) -> None:
        """``previous``: the netfilter this one replaces (the same namespace before a change);
        chains it had, pickled, are not pickled again."""
        self._ruleset: Ruleset | None = ruleset
        self._saved: dict[TableName, dict[str, bytes]] | None = None  # loaded: each chain pickled
        self._previous = previous._pickled_chains() if previous is not None else None
        self._zones: dict[str, int] | None = None
        self.conntrack = conntrack if conntrack is not None else Conntrack()
        self._compiled: dict[tuple[TableName, str], _Chain] = {}
        # each hook's chain per table, by the table and the hook's value (hashed in C)
        self._starts: dict[tuple[TableName, str], _Chain | None | object] = {}
        self._tables: dict[TableName, tuple[dict[str, Chain], frozenset[str]]] = {}
        self._names: dict[TableName, frozenset[str]] = {}
        self._runs: dict[tuple[object, ...], tuple[NfVerdict | None, Rule | None, tuple[Step, ...]]] = {}
        self._hooks: dict[int, _Seen] = {}  # by the hash of their key
        self._fast: dict[tuple[str, int, int], tuple[IPv4, HookCtx, int, _Seen]] = {}  # by (hook, packet, context)
        # DHCP's hook runs by their headers' key (and the source MAC when read), with the packet
        # each ran on (see _dhcp_hook)
        self._dhcp: dict[tuple[tuple[object, ...], Mac | None], tuple[_Seen, IPv4]] = {}
        # traverse's memories (results are immutable and held, so their ids are not reused while here):
        # the context after a hook's result, by (result, context before); a traverse's combined
        # result by its hooks' results
        self._after: dict[int, tuple[HookResult, HookCtx, HookCtx]] = {}
        self._walked: dict[tuple[int, ...], tuple[tuple[HookResult, ...], HookResult]] = {}
        # and a traverse by its very packet and context (see traverse)
        self._traversed: dict[tuple[int, int], tuple[IPv4, HookCtx, Sequence[Hook], tuple[tuple[
            Hook, HookResult, HookCtx], ...], HookResult]] = {}

    @property
    def ruleset(self) -> Ruleset:
        if self._ruleset is None:  # a loaded one: every rule unpickled
            assert self._saved is not None
            tables = []
            for t, chains in self._saved.items():
                got = []
                for name, blob in chains.items():
                    policy, _, rules, counters = pickle.loads(blob)
                    got.append(Chain(name, policy, counters, tuple(pickle.loads(b) for b in rules)))
                tables.append(Table(t, tuple(got)))
            self._ruleset = Ruleset(tuple(tables))
        return self._ruleset

    def ruleset_if_held(self) -> Ruleset | None:
        """The ruleset object it was built from (None for one loaded from a file)."""
        return self._ruleset

    def zones(self) -> dict[str, int]:
        """The conntrack zone the raw table gives each device (``-i qvbX``/``--physdev-in tapX``
        ``-j CT --zone N``: the hybrid firewall's zone per port)."""
        if self._zones is None:
            zones: dict[str, int] = {}
            raw = self.ruleset.find(TableName.RAW)
            for chain in raw.chains if raw is not None else ():
                for r in chain.rules:
                    t = r.target
                    if t is None or t.name != "CT" or not t.has("zone"):
                        continue
                    key = _rule_key(r)
                    if key is not None and key[0] in ("in", "physdev-in") and isinstance(key[1], str):
                        try:
                            zones.setdefault(key[1], int(t.value("zone") or "0", 0))
                        except ValueError:
                            continue
            self._zones = zones
        return self._zones

    def _pickled_chains(self) -> dict[tuple[TableName, str], tuple[Chain, bytes]] | None:
        """The chains this netfilter holds with their pickled form, if it has both at hand."""
        if self._ruleset is None or self._saved is None:
            return self._previous
        out: dict[tuple[TableName, str], tuple[Chain, bytes]] = {}
        for table in self._ruleset.tables:
            for chain in table.chains:
                blob = self._saved.get(table.name, {}).get(chain.name)
                if blob is not None:
                    out.setdefault((table.name, chain.name), (chain, blob))
        return out

    def __getstate__(self) -> dict[str, object]:
        if self._saved is None:
            assert self._ruleset is not None
            saved: dict[TableName, dict[str, bytes]] = {}
            before = self._previous or {}
            for table in self._ruleset.tables:
                chains = saved.setdefault(table.name, {})
                for chain in table.chains:
                    if chain.name not in chains:
                        had = before.get((table.name, chain.name))
                        chains[chain.name] = had[1] if had is not None and had[0] == chain else \
                            _saved_chain(chain, had)
            self._saved = saved  # the ruleset never changes: pickled once
            self._previous = None
        return {"tables": self._saved, "conntrack": self.conntrack, "zones": self.zones()}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(Ruleset(), state["conntrack"])  # type: ignore[misc]
        self._ruleset = None
        self._saved = state["tables"]  # type: ignore[assignment]
        self._zones = state["zones"]  # type: ignore[assignment]

    def compile_all(self) -> None:
        """Compile every chain now (raises :class:`UnsupportedRule` for any rule the simulator
        cannot interpret; otherwise rules compile when first reached)."""
        for table in self.ruleset.tables:
            for chain in table.chains:
                compiled = self._chain(table.name, chain.name)
                for i in range(len(compiled.rules) if compiled is not None else 0):
                    compiled.at(i)  # type: ignore[union-attr]

    def _chain(self, table: TableName, name: str) -> _Chain | None:
        key = (table, name)
        got = self._compiled.get(key)
        if got is not None:
            return got
        if self._ruleset is None and self._saved is not None:
            chains = self._saved.get(table)
            saved = chains.get(name) if chains is not None else None
            if saved is None or chains is None:
                return None
            names = self._names.get(table)
            if names is None:
                names = self._names[table] = frozenset(chains)
            policy, keys, blobs, _ = pickle.loads(saved)
            compiled = self._compiled[key] = _Chain(name, policy, table, blobs, names, keys)
            return compiled
        known = self._tables.get(table)
        if known is None:
            tab = self.ruleset.find(table)
            if tab is None:
                return None
            by_name: dict[str, Chain] = {}
            for c in tab.chains:
                by_name.setdefault(c.name, c)
            known = self._tables[table] = (by_name, frozenset(by_name))
        chain = known[0].get(name)
        if chain is None:
            return None
        compiled = _Chain(name, chain.policy, table, chain.rules, known[1])
        self._compiled[key] = compiled
        return compiled

    def _run(self, table: TableName, hook: Hook, p: _Pkt) -> tuple[NfVerdict | None, Rule | None]:
        """Run ``table``'s built-in chain for ``hook``: (ACCEPT/DROP, deciding rule), or
        (None, None) when the table has no such chain.

        A run that only tested the packet (every rule it matched accepts, drops, jumps, returns
        or only counts; no ipset was missing) is remembered: the same inputs give the same
        verdict, rule and steps, which are replayed. The key is everything a rule's tests read
        (:func:`_run_key`); the ruleset never changes (a changed one is a new Netfilter). Only
        packets of a confirmed connection are looked up: a new connection's first packet, and
        one before conntrack (the raw table) or without a connection, is walked without a key;
        that is where traffic does not repeat (every guest's DHCP at boot), and the key (the
        whole packet hashed) would cost more than it saves. Nor is DHCP (a guest's REQUEST finds
        the connection its DISCOVER confirmed; every message is new: its whole hook runs are
        remembered by their headers instead, :meth:`_dhcp_hook`)."""
        ref = p.ct
        if ref is None or ref.conn is None or not ref.conn.confirmed or _is_dhcp(p.ip):
            verdict, rule, _ = self._walk(table, hook, p)
            return verdict, rule
        key = _run_key(table, hook, p)
        got = self._runs.get(key)
        if got is not None:
            p.steps.extend(got[2])
            return got[0], got[1]
        n_steps, n_notes = len(p.steps), len(p.notes)
        verdict, rule, pure = self._walk(table, hook, p)
        if pure and len(p.notes) == n_notes:
            if len(self._runs) >= _MAX_RUNS:
                self._runs.clear()
            self._runs[key] = (verdict, rule, tuple(p.steps[n_steps:]))
        return verdict, rule

    def _walk(self, table: TableName, hook: Hook, p: _Pkt) -> tuple[NfVerdict | None, Rule | None, bool]:
        """:meth:`_run` itself; the third value: whether no rule's action ran (nothing but the
        steps depends on, or changed, anything beyond what the rules' tests read)."""
        key = (table, hook._value_)
        start = self._starts.get(key, _UNSET)
        if start is _UNSET:
            start = self._starts[key] = self._chain(table, hook.value) if hook.value in BUILTIN_CHAINS[table] \
                else None
        if start is None:
            return None, None, True
        assert isinstance(start, _Chain)
        chain, i = start, 0
        stack: list[tuple[_Chain, int]] = []
        pure = True
        steps = p.steps
        while True:
            # (chain.next, chain.at, c.matches and c.step inlined for their common cases: a rule
            # keyed on no value, compiled, stepped before; the walk's hottest lines)
            n = len(chain.rules)
            if i < n and chain._keys[i] is not None:  # a keyed rule, or one not yet looked at
                i = chain.next(i, p)
            if i >= n:
                if stack:
                    chain, i = stack.pop()
                    continue
                return self._policy(table, start, p), None, pure
            c = chain._compiled[i]
            if c is None:
                c = chain.at(i)
            i += 1
            missed = False
            for t in c.tests:
                if not t(p):
                    missed = True
                    break
            if missed:
                continue
            st = c._step
            steps.append(st if st is not None else c.step(table))
            kind = c.kind
            if kind is _Kind.JUMP or kind is _Kind.GOTO:
                target = c.target
                if target is None:
                    target = c.target = self._chain(table, c.chain)
                    if target is None:  # pragma: no cover - _target only jumps to chains of the table
                        raise UnsupportedRule(c.rule, f"jump to missing chain {c.chain}")
                if kind is _Kind.JUMP:
                    if len(stack) > 64:
                        raise UnsupportedRule(c.rule, "chain loop (more than 64 nested jumps)")
                    stack.append((chain, i))
                chain, i = target, 0
            elif kind is _Kind.RETURN:
                if not stack:
                    return self._policy(table, start, p), None, pure
                chain, i = stack.pop()
            elif kind is _Kind.ACCEPT:
                return NfVerdict.ACCEPT, c.rule, pure
            elif kind is _Kind.DROP:
                return NfVerdict.DROP, c.rule, pure
            elif kind is _Kind.ACTION or kind is _Kind.FINAL:
                assert c.action is not None
                verdict = c.action(p)
                if verdict is not None:
                    return verdict, c.rule, False
                pure = False

    def _policy(self, table: TableName, chain: _Chain, p: _Pkt) -> NfVerdict:
        policy = chain.policy or Policy.ACCEPT
        verdict = NfVerdict.DROP if policy is Policy.DROP else NfVerdict.ACCEPT
        if table is TableName.FILTER or verdict is NfVerdict.DROP:
            step = chain.policy_step  # (made once: a step is immutable, and the chain's name, policy and table fixed)
            if step is None:
                step = chain.policy_step = new_step(StepKind.POLICY, f"-P {chain.name} {policy}", f"[{table}] policy", "")
            p.steps.append(step)
        return verdict

    # -------------------------------------------------------------------------------- hooks

    def hook(self, hook: Hook, pkt: IPv4, ctx: HookCtx) -> HookResult:
        """Pass ``pkt`` through ``hook``: the tables in the kernel's order, conntrack and NAT.

        A hook's run that left the conntrack table as it found it is remembered (megaflow-style:
        the whole hook's decision, for a packet whose every input is equal). What a run reads is
        the ruleset (which never changes), the packet, the context (:func:`_hook_key`), and of the
        conntrack table only the connection it found (where it found it) or was given: its state
        (:func:`_conn_state`: TCP state, reply seen, confirmed, marks, NAT bindings, zone). A run
        is replayed when a run from that very state left the state as it was and created,
        confirmed or removed no connection (so it changes nothing, and its result is that run's),
        and conntrack still finds the same connection there. A run that created a connection (a
        new one's first packet), found none (INVALID), met an ICMP error (RELATED) or changed the
        connection (its first reply, its NAT binding, a TCP state change) is never replayed: the
        next identical packet runs again. A DHCP message goes by its headers (:meth:`_dhcp_hook`).
        Not for a subclass (a test's recorder, which sees every walk); not pickled."""
        given = ctx.ct.conn if ctx.ct is not None else None
        if type(self) is not Netfilter or (given is not None and not given.confirmed):
            # a new connection's packet: it does not come again
            return self._hook(hook, pkt, ctx)[0]
        l4 = pkt.payload  # (:func:`_is_dhcp`, inline)
        if type(l4) is UDP and (l4.dport == 67 or l4.dport == 68):
            if ctx.physdev_in is not None or ctx.physdev_out is not None:
                # bridged (the hybrid firewall): each port's own chains and conntrack zone, so no
                # two guests' runs are alike, and a guest's own messages only after its first
                # created its connection (its run, the one a later message could replay, is the
                # first of its key): remembering them costs and never pays
                return self._hook(hook, pkt, ctx)[0]
            return self._dhcp_hook(hook, pkt, ctx, l4)
        # the very packet and context objects met before (held: their ids are not reused while
        # here; immutable: their key is the same) skip the key: the run remembered for them, if it
        # is still the one remembered under that key's hash
        ident = (hook._value_, id(pkt), id(ctx))
        fast = self._fast.get(ident)
        seen: _Seen | None
        if fast is not None and self._hooks.get(fast[2]) is fast[3]:
            hashed, seen = fast[2], fast[3]
            key = seen.key
        else:
            key = _hook_key(hook, pkt, ctx)
            try:
                hashed = hash(key)  # once: the packet's hash is Python code (its addresses')
            except TypeError:  # a packet holding something unhashable: not remembered
                return self._hook(hook, pkt, ctx)[0]
            got = self._hooks.get(hashed)
            seen = got if got is not None and got.key == key else None
            if seen is not None:
                if len(self._fast) >= _MAX_RUNS:
                    self._fast.clear()
                self._fast[ident] = (pkt, ctx, hashed, seen)
        before = None
        if seen is not None and (seen.ctx is ctx or seen.holds(ctx)):  # (its own context holds itself)
            conn = seen.conn
            before = None if conn is None else (  # (:func:`_conn_state`, inline)
                conn.tcp_state, conn.seen_reply, conn.confirmed, conn.mark, conn.label, conn.original, conn.reply,
                conn.zone, frozenset(conn.nat_done))
            if seen.settled and before == seen.state and (
                    seen.index is None or self.conntrack.find(seen.index[1], seen.index[0]) == seen.found):
                return seen.result
        table = self.conntrack
        size = table.size()
        res, read = self._hook(hook, pkt, ctx)
        if read is None or table.size() != size or table is not self.conntrack:
            return res  # it created, confirmed or removed a connection, or found none
        conn = res.ct.conn if res.ct is not None else None
        after = _conn_state(conn) if conn is not None else None
        settled = conn is None or (seen is not None and seen.conn is conn and before == after)
        if len(self._hooks) >= _MAX_RUNS or len(self._fast) >= _MAX_RUNS:
            self._hooks.clear()
            self._fast.clear()
        remembered = self._hooks[hashed] = _Seen(key, ctx, conn, after, read[0], read[1], res, settled)
        self._fast[ident] = (pkt, ctx, hashed, remembered)
        return res

    def _dhcp_hook(self, hook: Hook, pkt: IPv4, ctx: HookCtx, l4: UDP) -> HookResult:
        """:meth:`hook` for a DHCP message. Every guest's messages differ (transaction id, client
        MAC, options), so the whole packet as a key never repeats; but what a hook's run reads of
        one is its headers (the IPv4 header and the UDP ports: the rules' tests, conntrack's
        tuple, NAT), the context, and the Ethernet source only where a ``-m mac`` rule is reached
        (a guest's DISCOVER and REQUEST look alike to them, and every guest's to a namespace's
        rules). A run is remembered by that key (:func:`_dhcp_key`, with the source MAC when a
        rule read it) and replayed under :meth:`hook`'s conditions (the same conntrack state,
        nothing created, confirmed or removed), on a run that read nothing past the headers
        (no ``-m length``), emitted nothing (REJECT quotes the packet) and handed on the packet
        it was given (no NAT rewrite): the replay's result is the remembered one around the new
        packet."""
        head = _dhcp_key(hook, pkt, ctx, l4)
        mac = ctx.src_mac
        memory = self._dhcp
        got = memory.get((head, None))
        if got is None and mac is not None:
            got = memory.get((head, mac))
        table = self.conntrack
        if got is not None and got[0].holds(ctx):
            seen = got[0]
            had = seen.conn
            before = None if had is None else _conn_state(had)
            if seen.settled and before == seen.state and (
                    seen.index is None or table.find(seen.index[1], seen.index[0]) == seen.found):
                res = seen.result
                if got[1] is pkt:
                    return res
                return _new_hook_result(res.verdict, pkt, res.mark, res.ct, res.steps, res.rule, res.emit, res.notes)
        else:  # the connection the run will meet, as conntrack holds it now (if the raw table
            # leaves the zone as it is): a run that leaves it as it found it is settled at once
            ref = ctx.ct
            if ref is not None:
                had = ref.conn
            else:
                found = table.find(packet_tuple(pkt), ctx.zone)
                had = None if found is None else found[0]
            before = None if had is None else _conn_state(had)
        size = table.size()
        res, read, p = self._hook_pkt(hook, pkt, ctx)
        if read is None or table.size() != size or table is not self.conntrack or res.packet is not pkt \
                or res.emit or p.read_payload or (p.read_mac and mac is None):
            # it created, confirmed or removed a connection, found none, or read the payload; or a
            # ``-m mac`` test read a source MAC it was not given (the key of a run that read none)
            return res
        conn = res.ct.conn if res.ct is not None else None
        after = _conn_state(conn) if conn is not None else None
        settled = conn is None or (had is conn and before == after)
        if len(memory) >= _MAX_RUNS:
            memory.clear()
        memory[(head, mac if p.read_mac else None)] = (
            _Seen(head, ctx, conn, after, read[0], read[1], res, settled), pkt)
        return res

    def _hook(self, hook: Hook, pkt: IPv4, ctx: HookCtx) -> tuple[HookResult, tuple[
            tuple[int, Tuple] | None, tuple[Connection, Direction] | None] | None]:
        """:meth:`hook`'s work: the result, and what it read of the conntrack table: where it
        found the packet's connection and what it found there (both None when it was given the
        connection, or none, or the packet is untracked); None when it read more (a lookup that
        found nothing or an ICMP error's connection, or made a new connection)."""
        res, read, _ = self._hook_pkt(hook, pkt, ctx)
        return res, read

    def _hook_pkt(self, hook: Hook, pkt: IPv4, ctx: HookCtx) -> tuple[HookResult, tuple[
            tuple[int, Tuple] | None, tuple[Connection, Direction] | None] | None, _Pkt]:
        """:meth:`_hook`, and the packet's state at its end (what its rules read)."""
        p = _Pkt(pkt, ctx, ctx.mark, ctx.ct, ctx.zone)
        last: Rule | None = None
        for table in _ORDER[hook._value_]:
            if table == TableName.MANGLE and p.ct is None:
                self._track(p)  # conntrack runs between raw and mangle
            if table == _NAT:
                verdict, rule = self._nat(hook, p)
            else:
                verdict, rule = self._run(table, hook, p)  # type: ignore[arg-type] # not _NAT: a TableName
            if verdict is NfVerdict.DROP:
                if rule is None:
                    p.steps.append(Step(StepKind.DROP, "", f"dropped in {hook.value}"))
                else:
                    p.steps.append(Step(StepKind.DROP, format_rule(rule), f"dropped in {hook.value}",
                                        rule.origin))
                return self._result(NfVerdict.DROP, p, rule), self._read(pkt, ctx, p), p
            if table == TableName.FILTER:
                last = rule
        if p.ct is None:
            self._track(p)
        if hook in (Hook.INPUT, Hook.POSTROUTING) and p.ct is not None:
            self.conntrack.confirm(p.ct)
        return self._result(NfVerdict.ACCEPT, p, last), self._read(pkt, ctx, p), p

    @staticmethod
    def _read(pkt: IPv4, ctx: HookCtx, p: _Pkt) -> tuple[
            tuple[int, Tuple] | None, tuple[Connection, Direction] | None] | None:
        """What a hook's run read of the conntrack table (see :meth:`_hook`)."""
        if ctx.ct is not None or p.ct is None or p.notrack:
            return None, None  # given the connection (or none), not tracked, or dropped before conntrack
        ref = p.ct
        if p.found_in is None or ref.conn is None:
            return None  # a new connection, none (INVALID), or an ICMP error's
        return (p.found_in, packet_tuple(pkt)), (ref.conn, ref.direction)

    def traverse(self, hooks: Sequence[Hook], pkt: IPv4, ctx: HookCtx) -> HookResult:
        """Run ``hooks`` in turn (e.g. :data:`FORWARD_PATH`), carrying the packet, its mark and its
        conntrack attachment; stops at the first DROP. The result gathers every hook's steps.

        The result is a function of the hooks' results alone, and the next hook's context of the
        previous one and the result: when every hook hands back a result it gave before (its run
        replayed, see :meth:`hook`), the traverse hands back the very objects it made then. DHCP
        (every message a new object: its hooks are remembered by headers, :meth:`_dhcp_hook`) is
        not remembered here.

        The very packet and context objects traversed before (held: their ids are not reused
        while remembered) go by what that traverse met: every hook still runs, each in the
        context it ran in then, and while each hands back the very result it gave then, the next
        runs; when all did, the combined result is the one made then (what the memories below
        give for those results). At the first other result the rest is worked out as below,
        from the results the hooks gave."""
        l4 = pkt.payload
        remember = not (type(l4) is UDP and (l4.dport == 67 or l4.dport == 68))  # (:func:`_is_dhcp`, inline)
        if remember:
            fast = self._traversed.get((id(pkt), id(ctx)))
            if fast is not None and fast[0] is pkt and fast[1] is ctx and fast[2] == hooks:
                chain = fast[3]
                p, c = pkt, ctx
                for i, (h, then, nxt) in enumerate(chain):
                    res = self.hook(h, p, c)
                    if res is not then:
                        given = [step[1] for step in chain[:i]]
                        given.append(res)
                        return self._traverse(hooks, pkt, ctx, given)
                    p, c = res.packet, nxt
                return fast[4]
            return self._traverse(hooks, pkt, ctx, ())
        results: list[HookResult] = []
        for h in hooks:
            res = self.hook(h, pkt, ctx)
            results.append(res)
            if res.verdict is not NfVerdict.ACCEPT:
                break
            ctx = _with_mark_ct(ctx, res.mark, res.ct)
            pkt = res.packet
        if not results:
            raise ValueError("no hooks to traverse")
        return _combined(results)

    def _traverse(self, hooks: Sequence[Hook], pkt: IPv4, ctx: HookCtx, given: Sequence[HookResult]) -> HookResult:
        """:meth:`traverse` of a packet that is remembered: ``given``, the results the first hooks
        gave (the caller ran them), then the rest run."""
        results: list[HookResult] = []
        chain: list[tuple[Hook, HookResult, HookCtx]] = []
        key: tuple[int, ...] = ()  # the results' ids: a memory holds its results, so an equal id is the same object
        start = (pkt, ctx)
        after = self._after
        for i, h in enumerate(hooks):
            res = given[i] if i < len(given) else self.hook(h, pkt, ctx)
            results.append(res)
            if res.verdict is not NfVerdict.ACCEPT:
                key += (id(res),)
                chain.append((h, res, ctx))
                break
            key += (ident := id(res),)
            got = after.get(ident)
            if got is not None and got[1] is ctx:
                ctx = got[2]
            else:
                if len(after) >= _MAX_RUNS:
                    after.clear()
                nxt = _with_mark_ct(ctx, res.mark, res.ct)
                after[ident] = (res, ctx, nxt)
                ctx = nxt
            chain.append((h, res, ctx))
            pkt = res.packet
        if not results:
            raise ValueError("no hooks to traverse")
        seen = self._walked.get(key)
        if seen is not None:
            combined = seen[1]
        else:
            combined = _combined(results)
            if len(self._walked) >= _MAX_RUNS:
                self._walked.clear()
            self._walked[key] = (tuple(results), combined)
        if len(self._traversed) >= _MAX_RUNS:
            self._traversed.clear()
        self._traversed[(id(start[0]), id(start[1]))] = (start[0], start[1], hooks if type(hooks) is tuple
                                                         else tuple(hooks), tuple(chain), combined)
        return combined

    def _result(self, verdict: NfVerdict, p: _Pkt, rule: Rule | None) -> HookResult:
        return _new_hook_result(verdict, p.ip, p.mark, p.ct, tuple(p.steps), rule, tuple(p.emit) if p.emit else (),
                                tuple(dict.fromkeys(p.notes)) if p.notes else ())

    def _track(self, p: _Pkt) -> None:
        if p.notrack:
            p.ct = CtRef(None, Direction.ORIGINAL, CtState.UNTRACKED, p.zone)
        else:
            p.ct = self.conntrack.lookup(p.ip, p.zone)
            if p.ct.conn is not None and not p.ct.conn.confirmed and p.ct.conn.mark == 0:
                p.ct.conn.mark = p.ctx.connmark
            elif p.ct.conn is not None and p.ct.state is not CtState.RELATED:
                p.found_in = p.zone  # a confirmed connection, found by the packet's own tuple
        ref = p.ct
        zone = f" zone {ref.zone}" if ref.zone else ""
        # (the enums' ``_value_``: ``.value`` is a Python-level property, and every tracked packet reads both)
        detail = "untracked" if ref.conn is None and ref.state is CtState.UNTRACKED else (
            "no connection" if ref.conn is None else
            f"{ref.direction._value_}: {ref.conn.original.text()}" + (
                "" if ref.conn.confirmed else " (new entry)"))
        p.steps.append(new_step(StepKind.CONNTRACK, f"ct state {ref.state._value_}{zone}", detail, ""))

    def _nat(self, hook: Hook, p: _Pkt) -> tuple[NfVerdict | None, Rule | None]:
        ref, conn = p.ct, p.conn
        if ref is None or conn is None:
            return None, None  # invalid or untracked: nat is skipped
        manip = _MANIP[hook._value_]
        rule: Rule | None = None
        if ref.state is CtState.NEW and ref.direction is Direction.ORIGINAL and manip not in conn.nat_done:
            p.nat = None
            verdict, rule = self._run(TableName.NAT, hook, p)
            if verdict is NfVerdict.DROP:
                return verdict, rule
            if p.nat is not None:
                m, addr, port = p.nat
                self.conntrack.bind(conn, m, addr, port)
            conn.nat_done.add(manip)  # the binding, or the null binding
        before = p.ip
        p.ip = _translate(p.ip, conn, ref.direction, manip, related=ref.state is CtState.RELATED)
        if p.ip != before:
            what = "DNAT" if manip is Manip.DST else "SNAT"
            if ref.direction is Direction.REPLY:
                what = f"un-{'SNAT' if manip is Manip.DST else 'DNAT'}"
            old, new = (before.dst, p.ip.dst) if manip is Manip.DST else (before.src, p.ip.src)
            oport, nport = _port_of(before, manip), _port_of(p.ip, manip)
            text = f"{what} {old}{f':{oport}' if oport else ''} -> {new}{f':{nport}' if nport else ''}"
            p.steps.append(Step(StepKind.NAT, text, f"{hook.value}, {ref.direction.value} direction",
                                rule.origin if rule is not None else ""))
        return NfVerdict.ACCEPT, rule


_MAX_RUNS = 4096
"""How many chain runs (and hook runs) a netfilter remembers (all are forgotten when it is full)."""


@dataclass(slots=True)
class _Seen:
    """A hook's run, remembered (:meth:`Netfilter.hook`): its key, its context (which holds the
    objects the key names by identity), the connection it read and that connection's state after it,
    where conntrack found it and what it found there, the result, and whether the run started
    from the state it left (so that replaying it changes nothing)."""

    key: tuple[object, ...]
    ctx: HookCtx
    conn: Connection | None
    state: tuple[object, ...] | None
    index: tuple[int, Tuple] | None
    found: tuple[Connection, Direction] | None
    result: HookResult
    settled: bool

    def holds(self, ctx: HookCtx) -> bool:
        """Whether ``ctx``'s objects named by identity in the key are this run's."""
        mine = self.ctx
        return (mine.local_addrs is ctx.local_addrs and mine.dev_addrs is ctx.dev_addrs
                and mine.ipsets is ctx.ipsets and (ctx.ct is None or mine.ct is not None and mine.ct.conn is ctx.ct.conn))


def _combined(results: Sequence[HookResult]) -> HookResult:
    """One result for hooks run in turn (:meth:`Netfilter.traverse`): the last one's verdict,
    packet, mark and attachment, every hook's steps, emitted packets and notes, and the rule of
    the last hook that named one (or the dropping hook's)."""
    steps: list[Step] = []
    notes: list[str] = []
    emit: list[IPv4] = []
    decider: Rule | None = None
    for res in results:
        steps.extend(res.steps)
        notes.extend(res.notes)
        emit.extend(res.emit)
        if res.rule is not None or not res.accepted:
            decider = res.rule
    res = results[-1]
    return _new_hook_result(res.verdict, res.packet, res.mark, res.ct, tuple(steps), decider, tuple(emit),
                            tuple(dict.fromkeys(notes)))


def _is_dhcp(pkt: IPv4) -> bool:
    l4 = pkt.payload
    return type(l4) is UDP and (l4.dport == 67 or l4.dport == 68)


def _hook_key(hook: Hook, pkt: IPv4, ctx: HookCtx) -> tuple[object, ...]:
    """Everything a hook's run reads besides conntrack: the hook, the packet, and the context.
    The namespace's address sets, the ipsets and the given connection are named by identity (a
    world passes the same objects every time; hashing them by value would cost more than the
    run), and :meth:`_Seen.holds` checks they are the remembered run's. The enums are keyed by
    their values (each position holds one enum class's members, so equal values are equal members;
    an enum's own hash is Python code)."""
    ref = ctx.ct
    ct = None if ref is None else (id(ref.conn), ref.direction._value_, ref.state._value_, ref.zone)
    return (hook._value_, pkt, ctx.in_dev, ctx.out_dev, ctx.physdev_in, ctx.physdev_out, ctx.physdev_is_bridged,
            ctx.mark, ctx.connmark, ctx.src_mac, id(ctx.local_addrs), id(ctx.dev_addrs), id(ctx.ipsets),
            ctx.zone, ct)


def _dhcp_key(hook: Hook, pkt: IPv4, ctx: HookCtx, l4: UDP) -> tuple[object, ...]:
    """:func:`_hook_key` for a DHCP message (see :meth:`Netfilter._dhcp_hook`): the packet's
    headers in place of the packet (every IPv4 field but the payload, and the UDP ports), and the
    context without the source MAC (keyed beside it, only when a rule read it)."""
    ref = ctx.ct
    ct = None if ref is None else (id(ref.conn), ref.direction._value_, ref.state._value_, ref.zone)
    src, dst = pkt.src._ip, pkt.dst._ip  # type: ignore[attr-defined] # (ints: hashed in C)
    return (hook._value_, src, dst, pkt.proto, pkt.ttl, pkt.id, pkt.df, pkt.mf, pkt.frag, pkt.tos,
            pkt.options, l4.sport, l4.dport, ctx.in_dev, ctx.out_dev, ctx.physdev_in, ctx.physdev_out,
            ctx.physdev_is_bridged, ctx.mark, ctx.connmark, id(ctx.local_addrs), id(ctx.dev_addrs), id(ctx.ipsets),
            ctx.zone, ct)


def _conn_state(conn: Connection) -> tuple[object, ...]:
    """Everything about a connection a hook's run reads or changes (:meth:`Netfilter.hook` builds
    the same tuple inline: change both together)."""
    return (conn.tcp_state, conn.seen_reply, conn.confirmed, conn.mark, conn.label, conn.original, conn.reply,
            conn.zone, frozenset(conn.nat_done))


def _run_key(table: TableName, hook: Hook, p: _Pkt) -> tuple[object, ...]:
    """Everything a rule's tests can read (see :func:`_rule_tests`, :data:`_KEY_OF`): the packet
    (its headers, payload and length), the devices and bridge ports, the Ethernet source, the
    namespace's addresses, the ipsets, the mark, and the conntrack attachment (its state and
    direction; the connection's tuples, which also give its SNAT/DNAT status, mark, confirmed and
    seen-reply bits). Not the zone, connmark or device addresses: only actions read those. The
    enums are keyed by their values, as in :func:`_hook_key` (an enum's own hash is Python code)."""
    ctx, ref = p.ctx, p.ct
    if ref is None:
        ct: tuple[object, ...] | None = None
    else:
        conn = ref.conn
        state, direction = ref.state._value_, ref.direction._value_
        ct = (state, direction) if conn is None else (
            state, direction, conn.original, conn.reply, conn.mark, conn.confirmed, conn.seen_reply)
    return (table, hook._value_, p.ip, p.mark, ct, ctx.in_dev, ctx.out_dev, ctx.physdev_in, ctx.physdev_out,
            ctx.physdev_is_bridged, ctx.src_mac, ctx.local_addrs, ctx.ipsets)


_HOOK_CTX_FIELDS = ("in_dev", "out_dev", "physdev_in", "physdev_out", "physdev_is_bridged", "mark", "connmark",
                    "src_mac", "local_addrs", "dev_addrs", "ipsets", "zone", "ct")
assert tuple(f.name for f in fields(HookCtx)) == _HOOK_CTX_FIELDS, "_with_mark_ct lists HookCtx's fields in order"


def _with_mark_ct(ctx: HookCtx, mark: int, ct: CtRef | None) -> HookCtx:
    """``replace(ctx, mark=mark, ct=ct)``, without ``dataclasses.replace``'s field walk."""
    return _new_hook_ctx(ctx.in_dev, ctx.out_dev, ctx.physdev_in, ctx.physdev_out, ctx.physdev_is_bridged, mark,
                         ctx.connmark, ctx.src_mac, ctx.local_addrs, ctx.dev_addrs, ctx.ipsets, ctx.zone, ct)


def _port_of(pkt: IPv4, manip: Manip) -> int | None:
    l4 = pkt.payload
    if isinstance(l4, TCP | UDP):
        return l4.dport if manip is Manip.DST else l4.sport
    return None


def _rewrite(pkt: IPv4, manip: Manip, target: Tuple) -> IPv4:
    l4 = pkt.payload
    if manip is Manip.DST:
        if isinstance(l4, TCP | UDP) and pkt.proto in (6, 17):
            l4 = with_(l4, dport=target.dport)
        elif isinstance(l4, ICMP) and l4.type not in ICMP_ERRORS:
            l4 = with_(l4, id=target.sport)
        out: IPv4 = with_(pkt, dst=target.dst, payload=l4)
        return out
    if isinstance(l4, TCP | UDP) and pkt.proto in (6, 17):
        l4 = with_(l4, sport=target.sport)
    elif isinstance(l4, ICMP) and l4.type not in ICMP_ERRORS:
        l4 = with_(l4, id=target.sport)
    res: IPv4 = with_(pkt, src=target.src, payload=l4)
    return res


def _translate(pkt: IPv4, conn: Connection, direction: Direction, manip: Manip, *, related: bool) -> IPv4:
    """The kernel's nf_nat_packet (and nf_nat_icmp_reply_translation for a RELATED ICMP error)."""
    want_dnat = (manip is Manip.DST) == (direction is Direction.ORIGINAL)
    if not (conn.dnat if want_dnat else conn.snat):
        return pkt
    other = conn.tuple(direction.other)
    target = other.inverse()
    icmp = pkt.payload
    if related and isinstance(icmp, ICMP) and icmp.type in ICMP_ERRORS and isinstance(icmp.payload, IPv4):
        inner_manip = Manip.SRC if manip is Manip.DST else Manip.DST
        inner = _rewrite(icmp.payload, inner_manip, other)
        outer: IPv4 = with_(pkt, payload=with_(icmp, payload=inner))
        if manip is Manip.DST:
            return replace(outer, dst=target.dst)
        return replace(outer, src=target.src)
    return _rewrite(pkt, manip, target)
