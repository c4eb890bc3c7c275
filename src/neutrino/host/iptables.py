"""iptables rules, parsed and formatted exactly as the real tool prints them.

One model (:class:`Ruleset` -> :class:`Table` -> :class:`Chain` -> :class:`Rule`) and the tool's
languages around it: ``iptables-save`` (also the input of ``iptables-restore -n``), ``iptables -S``
and, in :mod:`neutrino.host.iptables_listing`, the ``iptables -L`` view. Each language has one parser
and one canonical formatter; ``format(parse(s)) == s`` for what the real tool prints.

>>> rs = parse_save('''*nat
... :PREROUTING ACCEPT [0:0]
... :INPUT ACCEPT [0:0]
... :OUTPUT ACCEPT [0:0]
... :POSTROUTING ACCEPT [0:0]
... :neutron-l3-agent-snat - [0:0]
... -A POSTROUTING -j neutron-l3-agent-snat
... -A neutron-l3-agent-snat -s 10.0.0.0/24 -j SNAT --to-source 203.0.113.10 --random-fully
... COMMIT
... ''')
>>> rule = rs.chain(TableName.NAT, "neutron-l3-agent-snat").rules[0]
>>> str(rule.source.network), rule.target.name, rule.target.value("to-source")
('10.0.0.0/24', 'SNAT', '203.0.113.10')
>>> format_rule(parse_rule("-A x -p tcp --dport 22 -j ACCEPT"))
'-A x -p tcp -m tcp --dport 22 -j ACCEPT'
>>> print(format_rules(rs.table(TableName.NAT), "neutron-l3-agent-snat"), end="")
-N neutron-l3-agent-snat
-A neutron-l3-agent-snat -s 10.0.0.0/24 -j SNAT --to-source 203.0.113.10 --random-fully
"""

from __future__ import annotations

import difflib
import enum
import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Literal, TypeVar, overload

from neutrino.errors import NotFound, ParseError
from neutrino.host.fastnew import maker

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IFNAMSIZ = 16  # the kernel's limit, so names have at most 15 characters


class TableName(enum.StrEnum):
    FILTER = "filter"
    NAT = "nat"
    MANGLE = "mangle"
    RAW = "raw"
    SECURITY = "security"


#: The built-in chains of each table, in the order the tools list them.
BUILTIN_CHAINS: dict[TableName, tuple[str, ...]] = {
    TableName.FILTER: ("INPUT", "FORWARD", "OUTPUT"),
    TableName.NAT: ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    TableName.MANGLE: ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    TableName.RAW: ("PREROUTING", "OUTPUT"),
    TableName.SECURITY: ("INPUT", "FORWARD", "OUTPUT"),
}


class Policy(enum.StrEnum):
    ACCEPT = "ACCEPT"
    DROP = "DROP"


class Fragment(enum.Enum):
    """The ``-f`` flag: absent, ``-f`` (second and later fragments) or ``! -f``."""

    ANY = "any"
    FRAGMENTS = "-f"
    NOT_FRAGMENTS = "! -f"


#: Targets that are verdicts or built into the tool (not user chains).
STANDARD_TARGETS = frozenset({"ACCEPT", "DROP", "RETURN", "QUEUE"})


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one iptables release prints what the model holds.

    ``mac_upper``: ``--mac-source``/``MAC`` in upper case (iptables before 1.8.7, as in the seeds).
    ``numeric_proto``: ``-L -n`` prints protocol numbers (``0``, ``6``) rather than ``all``/``tcp``
    (iptables 1.8.9 only; reverted in 1.8.10).
    """

    name: str
    mac_upper: bool
    numeric_proto: bool


#: iptables up to 1.8.6, legacy backend: what the seeds show.
CLASSIC = Dialect("classic", mac_upper=True, numeric_proto=False)
#: iptables 1.8.9, either backend (this machine).
V1_8_9 = Dialect("1.8.9", mac_upper=False, numeric_proto=True)
#: iptables 1.8.7, 1.8.8 and 1.8.10 or later.
MODERN = Dialect("modern", mac_upper=False, numeric_proto=False)


def dialect_for_version(version: str) -> Dialect:
    """The dialect of ``iptables --version`` output such as ``iptables v1.8.9 (nf_tables)``."""
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise ParseError("an iptables version such as v1.8.9", text=version)
    v = tuple(int(p) for p in m.groups())
    if v == (1, 8, 9):
        return V1_8_9
    return MODERN if v >= (1, 8, 7) else CLASSIC


# --------------------------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Counters:
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Address:
    """``[!] -s/-d network``; a bare address is a /32 (or /128).

    ``mask`` is set only for a non-contiguous netmask (``192.168.0.0/255.255.0.255``), which the
    tools accept; ``network`` is then the address as a host network.
    """

    network: IPNetwork
    negated: bool = False
    mask: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    def text(self) -> str:
        """``10.0.0.0/24``, ``10.0.0.5/32`` or ``192.168.0.0/255.255.0.255`` (as save prints it)."""
        if self.mask is not None:
            return f"{self.network.network_address}/{self.mask}"
        return f"{self.network.network_address}/{self.network.prefixlen}"


@dataclass(frozen=True, slots=True)
class Interface:
    """``[!] -i/-o name``; a trailing ``+`` is a wildcard (``qr-+``)."""

    name: str
    negated: bool = False

    @property
    def wildcard(self) -> bool:
        return self.name.endswith("+")

    def matches(self, device: str) -> bool:
        hit = device.startswith(self.name[:-1]) if self.wildcard else device == self.name
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class Protocol:
    """``[!] -p name``, as written (``tcp``, ``udp``, ``icmp``, ``gre`` or a number)."""

    name: str
    negated: bool = False

    @property
    def number(self) -> int | None:
        if self.name.isdigit():
            return int(self.name)
        return PROTOCOL_NUMBERS.get(self.name)


PROTOCOL_NUMBERS: dict[str, int] = {
    "all": 0, "icmp": 1, "igmp": 2, "ipencap": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6": 41,
    "ipv6-route": 43, "ipv6-frag": 44, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "ipv6-icmp": 58,
    "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ospf": 89, "ipip": 94, "pim": 103, "vrrp": 112,
    "l2tp": 115, "sctp": 132, "mobility-header": 135, "mh": 135, "udplite": 136, "dccp": 33,
}


@dataclass(frozen=True, slots=True)
class Option:
    """One ``[!] --name arg...`` of a match or target; ``name`` without the dashes."""

    name: str
    args: tuple[str, ...] = ()
    negated: bool = False

    @property
    def value(self) -> str:
        return " ".join(self.args)


class _Options:
    """Look-ups over an ``options`` tuple, shared by matches and targets."""

    __slots__ = ()
    options: tuple[Option, ...]

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def value(self, name: str) -> str | None:
        opt = self.option(name)
        return None if opt is None else opt.value

    def has(self, name: str) -> bool:
        return self.option(name) is not None


@dataclass(frozen=True, slots=True)
class Match(_Options):
    """``-m module`` and its options, in order (``-m physdev --physdev-out tapX --physdev-is-bridged``)."""

    module: str
    options: tuple[Option, ...] = ()


@dataclass(frozen=True, slots=True)
class Target(_Options):
    """``-j NAME`` (or ``-g NAME`` when ``goto``) and its options (``--to-destination 10.0.0.5``)."""

    name: str
    options: tuple[Option, ...] = ()
    goto: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``-A chain ...`` rule in parsed form.

    ``origin`` says which planner built the rule and why; it is never printed and never compared.
    """

    chain: str
    source: Address | None = None
    destination: Address | None = None
    in_interface: Interface | None = None
    out_interface: Interface | None = None
    protocol: Protocol | None = None
    fragment: Fragment = Fragment.ANY
    matches: tuple[Match, ...] = ()
    target: Target | None = None
    counters: Counters | None = None
    origin: str = field(default="", compare=False)

    def match(self, module: str) -> Match | None:
        """The first ``-m module`` of the rule."""
        return next((m for m in self.matches if m.module == module), None)

    @property
    def jump(self) -> str | None:
        """The chain or target this rule jumps (or goes) to."""
        return None if self.target is None else self.target.name

    def spec(self, dialect: Dialect | None = None) -> str:
        """The canonical rule text without ``-A chain`` and counters (what a reconciler compares)."""
        text = format_rule(self, dialect=dialect or CLASSIC)
        return text[len(f"-A {self.chain}"):].lstrip()


#: ``Rule(*every_field)`` (all eleven, in field order, ``origin`` last), made about twice as fast
#: (:mod:`neutrino.host.fastnew`): for the firewall planner, which makes rules by the hundred thousand
new_rule: Callable[..., Rule] = maker(Rule)


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain: built-in chains have a ``policy``, user chains ``None``.

    ``references`` is what a listing said (``(2 references)``); ``None`` means "count the jumps".
    """

    name: str
    policy: Policy | None = None
    counters: Counters | None = None
    rules: tuple[Rule, ...] = ()
    references: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for rule in self.rules:
            if rule.chain != self.name:
                raise ValueError(f"rule of chain {rule.chain!r} inside chain {self.name!r}")


@dataclass(frozen=True, slots=True)
class Table:
    """One table; ``header``/``footer`` keep the ``# Generated by``/``# Completed on`` comment lines."""

    name: TableName
    chains: tuple[Chain, ...] = ()
    header: tuple[str, ...] = field(default=(), compare=False)
    footer: tuple[str, ...] = field(default=(), compare=False)

    def is_builtin(self, chain: str) -> bool:
        return chain in BUILTIN_CHAINS[self.name]

    def find(self, name: str) -> Chain | None:
        return next((c for c in self.chains if c.name == name), None)

    def chain(self, name: str) -> Chain:
        found = self.find(name)
        if found is None:
            raise NotFound(f"no chain {name!r} in table {self.name}")
        return found

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(r for c in self.chains for r in c.rules)

    def references(self, name: str) -> int:
        """How many rules of this table jump or go to chain ``name``."""
        return sum(1 for r in self.rules if r.target is not None and r.target.name == name)

    def reference_counts(self) -> dict[str, int]:
        return {c.name: self.references(c.name) for c in self.chains}

    def canonical(self) -> Table:
        """The chains in the order the tools list them: built-ins in hook order, then user chains
        sorted byte-wise (both the legacy and the nf_tables backends)."""
        order = BUILTIN_CHAINS[self.name]
        builtin = sorted((c for c in self.chains if c.name in order), key=lambda c: order.index(c.name))
        user = sorted((c for c in self.chains if c.name not in order), key=lambda c: c.name.encode())
        return replace(self, chains=tuple(builtin + user))

    def with_chain(self, chain: Chain) -> Table:
        """This table with ``chain`` replaced (or added at the end)."""
        if self.find(chain.name) is None:
            return replace(self, chains=(*self.chains, chain))
        return replace(self, chains=tuple(chain if c.name == chain.name else c for c in self.chains))


def new_table(name: TableName, policies: Policy = Policy.ACCEPT) -> Table:
    """An empty table with its built-in chains."""
    return Table(name, tuple(Chain(c, policies, Counters(0, 0)) for c in BUILTIN_CHAINS[name]))


@dataclass(frozen=True, slots=True)
class Ruleset:
    """What ``iptables-save`` shows: the tables, in the order they were listed."""

    tables: tuple[Table, ...] = ()

    def find(self, table: TableName | str) -> Table | None:
        return next((t for t in self.tables if t.name == TableName(table)), None)

    def table(self, table: TableName | str) -> Table:
        found = self.find(table)
        if found is None:
            raise NotFound(f"no table {table}")
        return found

    def chain(self, table: TableName | str, name: str) -> Chain:
        return self.table(table).chain(name)

    def references(self, table: TableName | str, name: str) -> int:
        return self.table(table).references(name)

    def with_table(self, table: Table) -> Ruleset:
        if self.find(table.name) is None:
            return replace(self, tables=(*self.tables, table))
        return replace(self, tables=tuple(table if t.name == table.name else t for t in self.tables))


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Partial(Generic[T]):
    """What a lenient parse could read, and a :class:`ParseError` for each line it could not."""

    value: T
    problems: tuple[ParseError, ...]


# ------------------------------------------------------------------------------ module knowledge


@dataclass(frozen=True, slots=True)
class _Spec:
    """What the tool knows about one match or target: each option's argument count, and the order
    its save function prints them in."""

    arity: dict[str, int]
    order: tuple[str, ...] = ()


_PORTS = {"sport": 1, "dport": 1, "source-port": 1, "destination-port": 1}
MATCH_SPECS: dict[str, _Spec] = {
    "tcp": _Spec({**_PORTS, "tcp-flags": 2, "syn": 0, "tcp-option": 1},
                 ("sport", "dport", "tcp-option", "tcp-flags")),
    "udp": _Spec(dict(_PORTS), ("sport", "dport")),
    "sctp": _Spec({**_PORTS, "chunk-types": 2}, ("sport", "dport", "chunk-types")),
    "icmp": _Spec({"icmp-type": 1}),
    "icmp6": _Spec({"icmpv6-type": 1}),
    "multiport": _Spec({"ports": 1, "sports": 1, "dports": 1, "source-ports": 1, "destination-ports": 1}),
    "state": _Spec({"state": 1}),
    "conntrack": _Spec(
        {n: 1 for n in ("ctstate", "ctproto", "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst",
                        "ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport", "ctstatus",
                        "ctexpire", "ctdir")},
        ("ctstate", "ctproto", "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst", "ctorigsrcport",
         "ctorigdstport", "ctreplsrcport", "ctrepldstport", "ctstatus", "ctexpire", "ctdir")),
    "mac": _Spec({"mac-source": 1}),
    "mark": _Spec({"mark": 1}),
    "connmark": _Spec({"mark": 1}),
    "comment": _Spec({"comment": 1}),
    "physdev": _Spec({"physdev-in": 1, "physdev-out": 1, "physdev-is-in": 0, "physdev-is-out": 0,
                      "physdev-is-bridged": 0},
                     ("physdev-is-in", "physdev-in", "physdev-is-out", "physdev-out", "physdev-is-bridged")),
    "set": _Spec({"match-set": 2, "return-nomatch": 0, "update-counters": 0, "update-subcounters": 0,
                  "packets-eq": 1, "packets-lt": 1, "packets-gt": 1, "bytes-eq": 1, "bytes-lt": 1,
                  "bytes-gt": 1},
                 ("match-set", "return-nomatch", "update-counters", "update-subcounters")),
    "addrtype": _Spec({"src-type": 1, "dst-type": 1, "limit-iface-in": 0, "limit-iface-out": 0}),
    "limit": _Spec({"limit": 1, "limit-burst": 1}, ("limit", "limit-burst")),
    "length": _Spec({"length": 1}),
}

TARGET_SPECS: dict[str, _Spec] = {
    "DNAT": _Spec({"to-destination": 1, "random": 0, "random-fully": 0, "persistent": 0},
                  ("to-destination", "random", "random-fully", "persistent")),
    "SNAT": _Spec({"to-source": 1, "random": 0, "random-fully": 0, "persistent": 0},
                  ("to-source", "random", "random-fully", "persistent")),
    "MASQUERADE": _Spec({"to-ports": 1, "random": 0, "random-fully": 0},
                        ("to-ports", "random", "random-fully")),
    "REDIRECT": _Spec({"to-ports": 1, "random": 0}, ("to-ports", "random")),
    "CT": _Spec({"notrack": 0, "helper": 1, "ctevents": 1, "expevents": 1, "zone": 1, "zone-orig": 1,
                 "zone-reply": 1, "timeout": 1},
                ("notrack", "helper", "timeout", "ctevents", "expevents", "zone-orig", "zone-reply", "zone")),
    "MARK": _Spec({"set-xmark": 1, "set-mark": 1, "and-mark": 1, "or-mark": 1, "xor-mark": 1}),
    "CONNMARK": _Spec({"set-xmark": 1, "set-mark": 1, "save-mark": 0, "restore-mark": 0, "nfmask": 1,
                       "ctmask": 1, "mask": 1, "and-mark": 1, "or-mark": 1, "xor-mark": 1},
                      ("set-xmark", "set-mark", "save-mark", "restore-mark", "nfmask", "ctmask", "mask")),
    "CHECKSUM": _Spec({"checksum-fill": 0}),
    "REJECT": _Spec({"reject-with": 1}),
    "LOG": _Spec({"log-prefix": 1, "log-level": 1, "log-tcp-sequence": 0, "log-tcp-options": 0,
                  "log-ip-options": 0, "log-uid": 0, "log-macdecode": 0},
                 ("log-prefix", "log-level", "log-tcp-sequence", "log-tcp-options", "log-ip-options",
                  "log-uid", "log-macdecode")),
    "NOTRACK": _Spec({}),
}

#: Options whose value the tool prints through ``xtables_save_string`` (quoted when needed).
_QUOTED = frozenset({"comment", "log-prefix", "nflog-prefix"})

#: The order in which the tool prints conntrack states.
CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")

_IMPLICIT = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "sctp": "sctp", "ipv6-icmp": "icmp6",
             "icmpv6": "icmp6"}


# ------------------------------------------------------------------------------------- tokenizer


_TOKEN_RE = r"""(?:[^\s"'\\]|"[^"\\]*"|'[^'\\]*')+"""
_QUOTED_TOKEN = re.compile(_TOKEN_RE)
_QUOTED_LINE = re.compile(rf"\s*(?:{_TOKEN_RE}(?:\s+{_TOKEN_RE})*)?\s*")
_QUOTES = re.compile(r""""([^"]*)"|'([^']*)'""")


def _unquote(m: re.Match[str]) -> str:
    return m.group(1) if m.group(1) is not None else m.group(2)


def tokenize(line: str, *, lineno: int = 0, source: str = "<string>") -> list[str]:
    """Split a rule line the way ``iptables-restore`` does: whitespace, double or single quotes,
    backslash escapes inside quotes."""
    if '"' not in line and "'" not in line:
        return line.split()  # nothing quoted: whitespace alone separates (str.isspace, as below)
    if "\\" not in line and _QUOTED_LINE.fullmatch(line):  # balanced quotes, no escapes
        return [_QUOTES.sub(_unquote, t) for t in _QUOTED_TOKEN.findall(line)]
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace():
            i += 1
            continue
        buf: list[str] = []
        quoted = False
        while i < n and not line[i].isspace():
            c = line[i]
            if c in "\"'":
                quoted = True
                quote = c
                i += 1
                while i < n and line[i] != quote:
                    if line[i] == "\\" and i + 1 < n:
                        i += 1
                    buf.append(line[i])
                    i += 1
                if i >= n:
                    raise ParseError(f"a closing {quote}", text=line, line=lineno, source=source)
                i += 1
            else:
                buf.append(c)
                i += 1
        token = "".join(buf)
        tokens.append(token if token or not quoted else "")
    return tokens


def _save_string(value: str) -> str:
    """How ``xtables_save_string`` prints a value: bare if it is only ``[_-0-9A-Za-z]``, otherwise
    double-quoted with ``"``, ``\\`` and ``'`` escaped by a backslash."""
    if value and re.fullmatch(r"[_\-0-9A-Za-z]+", value):
        return value
    return '"' + re.sub(r"([\"\\'])", r"\\\1", value) + '"'


def _plain_arg(value: str) -> str:
    if value and not any(ch.isspace() or ch in "\"'" for ch in value):
        return value
    return _save_string(value)


# ----------------------------------------------------------------------------------- rule parser

_ADDR_OPTS = {"-s": "s", "--source": "s", "--src": "s", "-d": "d", "--destination": "d", "--dst": "d"}
_IFACE_OPTS = {"-i": "i", "--in-interface": "i", "-o": "o", "--out-interface": "o"}


@functools.lru_cache(maxsize=1 << 16)
def _network(text: str) -> IPNetwork:
    return ipaddress.ip_network(text, strict=False)  # networks are immutable: each text parsed once


def parse_address(text: str, *, negated: bool = False, lineno: int = 0, source: str = "<string>",
                  line: str = "") -> Address:
    """``10.0.0.5`` (a /32), ``10.0.0.0/24``, ``10.0.0.0/255.255.255.0`` or a non-contiguous mask."""
    try:
        return Address(_network(text), negated)
    except ValueError:
        pass
    addr, _, mask = text.partition("/")
    try:
        host = ipaddress.ip_address(addr)
        netmask = ipaddress.ip_address(mask)
    except ValueError:
        raise ParseError("an address or network such as 10.0.0.0/24", text=line or text, line=lineno,
                         source=source) from None
    if host.version != netmask.version:
        raise ParseError("an address and mask of one family", text=line or text, line=lineno, source=source)
    masked = ipaddress.ip_address(int(host) & int(netmask))
    return Address(ipaddress.ip_network(masked), negated, netmask)


def parse_rule(line: str, *, lineno: int = 0, source: str = "<string>") -> Rule:
    """One ``[p:b] -A chain ...`` line (``iptables-save``, ``iptables -S`` or restore input).

    A rule is immutable and depends on its text alone, so lines read before are not parsed again
    (a host's rulesets repeat across captures, read-backs and re-plans); a line that does not parse
    is parsed anew to say where it was."""
    try:
        return _parse_rule_text(line)
    except ParseError:
        return _parse_rule(line, lineno=lineno, source=source)


@functools.lru_cache(maxsize=1 << 18)
def _parse_rule_text(line: str) -> Rule:
    return _parse_rule(line)


def _parse_rule(line: str, *, lineno: int = 0, source: str = "<string>") -> Rule:
    text = line.strip()
    counters: Counters | None = None
    m = re.match(r"\[(\d+):(\d+)\]\s+", text) if text[:1] == "[" else None
    if m:
        counters = Counters(int(m.group(1)), int(m.group(2)))
        text = text[m.end():]
    tokens = tokenize(text, lineno=lineno, source=source)

    def fail(expected: str) -> ParseError:
        return ParseError(expected, text=line, line=lineno, source=source)

    if not tokens or tokens[0] not in ("-A", "--append"):
        raise fail("a rule starting with -A CHAIN")
    if len(tokens) < 2 or tokens[1].startswith("-") or tokens[1] == "!":
        raise fail("a chain name after -A")
    chain = tokens[1]
    addrs: dict[str, Address] = {}
    ifaces: dict[str, Interface] = {}
    protocol: Protocol | None = None
    fragment = Fragment.ANY
    matches: list[Match] = []  # each -m's module; its options are collected in match_opts
    match_opts: list[list[Option]] = []
    target: Target | None = None
    target_opts: list[Option] = []
    in_target = False  # options after -j belong to the target, otherwise to the last -m
    negate = False
    i = 2

    def take(count: int, what: str) -> list[str]:
        nonlocal i
        args = tokens[i:i + count]
        if len(args) < count:
            raise fail(what)
        for a in args:
            if a == "!" or _is_option(a):
                raise fail(what)
        i += count
        return args

    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "!":
            if negate:
                raise fail("one ! before an option")
            negate = True
            continue
        if tok in _ADDR_OPTS:
            (arg,) = take(1, f"an address after {tok}")
            if _ADDR_OPTS[tok] in addrs:
                raise fail(f"one {tok} per rule")
            addrs[_ADDR_OPTS[tok]] = parse_address(arg, negated=negate, lineno=lineno, source=source,
                                                   line=line)
        elif tok in _IFACE_OPTS:
            (arg,) = take(1, f"an interface name after {tok}")
            if len(arg) >= IFNAMSIZ:
                raise fail(f"an interface name of at most {IFNAMSIZ - 1} characters after {tok}")
            if _IFACE_OPTS[tok] in ifaces:
                raise fail(f"one {tok} per rule")
            ifaces[_IFACE_OPTS[tok]] = Interface(arg, negate)
        elif tok in ("-p", "--protocol"):
            (arg,) = take(1, "a protocol after -p")
            protocol = Protocol(arg.lower(), negate)
        elif tok in ("-f", "--fragment"):
            fragment = Fragment.NOT_FRAGMENTS if negate else Fragment.FRAGMENTS
        elif tok in ("-m", "--match"):
            if negate:
                raise fail("no ! before -m")
            (name,) = take(1, "a module name after -m")
            matches.append(Match(name))
            match_opts.append([])
            in_target = False
        elif tok in ("-j", "--jump", "-g", "--goto"):
            if negate:
                raise fail(f"no ! before {tok}")
            if target is not None:
                raise fail("one -j or -g per rule")
            (name,) = take(1, f"a target after {tok}")
            target = Target(name, (), goto=tok in ("-g", "--goto"))
            in_target = True
        elif tok in ("-c", "--set-counters"):
            pk, by = take(2, "packet and byte counts after -c")
            if not (pk.isdigit() and by.isdigit()):
                raise fail("two numbers after -c")
            counters = Counters(int(pk), int(by))
        elif tok.startswith("--") and len(tok) > 2:
            name = tok[2:]
            if not in_target and not matches:
                implicit = _IMPLICIT.get(protocol.name) if protocol is not None else None
                if implicit is None:
                    raise fail(f"-m MODULE before {tok}")
                matches.append(Match(implicit))  # -p tcp --dport 22 loads -m tcp
                match_opts.append([])
            owner = target.name if in_target and target is not None else matches[-1].module
            spec = (TARGET_SPECS if in_target else MATCH_SPECS).get(owner)
            if spec is not None and name in spec.arity:
                n = spec.arity[name]
                if n and i < len(tokens) and tokens[i] == "!" and not negate:
                    negate = True  # the old form: --mac-source ! X
                    i += 1
                args = take(n, f"{n} argument(s) after {tok}")
            else:
                args = []
                while i < len(tokens) and tokens[i] != "!" and not _is_option(tokens[i]):
                    args.append(tokens[i])
                    i += 1
            if name == "mac-source":
                args = [a.lower() for a in args]  # kept in lower case; the dialect decides how it prints
            opt = Option(name, tuple(args), negate)
            if in_target and target is not None:
                target_opts.append(opt)
            else:
                match_opts[-1].append(opt)
        else:
            raise fail(f"an option (-s, -d, -i, -o, -p, -m, -j, --name) where {tok!r} stands")
        negate = False
    if negate:
        raise fail("an option after !")
    if target is not None and target_opts:
        target = Target(target.name, tuple(target_opts), target.goto)
    matches = [Match(mt.module, tuple(opts)) if opts else mt for mt, opts in zip(matches, match_opts, strict=True)]
    return Rule(chain=chain, source=addrs.get("s"), destination=addrs.get("d"), in_interface=ifaces.get("i"),
                out_interface=ifaces.get("o"), protocol=protocol, fragment=fragment, matches=tuple(matches),
                target=target, counters=counters)


def _is_option(token: str) -> bool:
    return token.startswith("-") and len(token) > 1 and not _numeric(token)


def _numeric(token: str) -> bool:
    return token[:1] == "-" and token[1:].isdecimal()  # what re's -\d+ matches


# -------------------------------------------------------------------------------- rule formatter


def _format_address(letter: str, addr: Address | None) -> str:
    if addr is None:
        return ""
    return f"{' !' if addr.negated else ''} -{letter} {addr.text()}"


def _format_iface(letter: str, iface: Interface | None) -> str:
    if iface is None or (iface.name == "+" and not iface.negated):
        return ""
    return f"{' !' if iface.negated else ''} -{letter} {iface.name}"


def _ordered(options: Iterable[Option], spec: _Spec | None) -> list[Option]:
    opts = list(options)
    if spec is None or not spec.order:
        return opts
    rank = {name: n for n, name in enumerate(spec.order)}
    return sorted(opts, key=lambda o: rank.get(o.name, len(rank)))


def _canonical_value(module: str, option: Option, dialect: Dialect) -> tuple[str, ...]:
    if option.name == "mac-source" and option.args:
        mac = option.args[0]
        return (mac.upper() if dialect.mac_upper else mac.lower(),)
    if option.name in ("state", "ctstate") and option.args:
        states = {s.upper() for s in option.args[0].split(",")}
        known = [s for s in CT_STATES if s in states]
        return (",".join(known + sorted(states - set(known))),)
    if option.name in _QUOTED:
        return tuple(_save_string(a) for a in option.args)
    return tuple(_plain_arg(a) for a in option.args)


def _format_options(module: str, options: Iterable[Option], spec: _Spec | None, dialect: Dialect) -> str:
    out = []
    for opt in _ordered(options, spec):
        args = _canonical_value(module, opt, dialect)
        out.append(f"{' !' if opt.negated else ''} --{opt.name}{''.join(' ' + a for a in args)}")
    return "".join(out)


def format_rule(rule: Rule, *, counters: bool = False, dialect: Dialect = CLASSIC,
                command: str = "-A") -> str:
    """The rule as ``iptables-save`` prints it: ``-s -d -i -o -p -f``, the matches in order, then
    ``-j``/``-g`` and the target's options. ``counters`` prefixes ``[p:b]`` when the rule has them."""
    parts = [f"{command} {rule.chain}"]
    parts.append(_format_address("s", rule.source))
    parts.append(_format_address("d", rule.destination))
    parts.append(_format_iface("i", rule.in_interface))
    parts.append(_format_iface("o", rule.out_interface))
    if rule.protocol is not None:
        parts.append(f"{' !' if rule.protocol.negated else ''} -p {rule.protocol.name}")
    if rule.fragment is Fragment.FRAGMENTS:
        parts.append(" -f")
    elif rule.fragment is Fragment.NOT_FRAGMENTS:
        parts.append(" ! -f")
    for m in rule.matches:
        parts.append(f" -m {m.module}" + _format_options(m.module, m.options, MATCH_SPECS.get(m.module), dialect))
    if rule.target is not None:
        t = rule.target
        parts.append(f" {'-g' if t.goto else '-j'} {t.name}"
                     + _format_options(t.name, t.options, TARGET_SPECS.get(t.name), dialect))
    text = "".join(parts)
    if counters and rule.counters is not None:
        text = f"[{rule.counters.packets}:{rule.counters.bytes}] {text}"
    return text


# --------------------------------------------------------------------------------- iptables-save


def _chain_line(line: str, lineno: int, source: str) -> tuple[str, Policy | None, Counters | None]:
    m = re.fullmatch(r":(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?", line.strip())
    if not m:
        raise ParseError(":CHAIN POLICY [packets:bytes]", text=line, line=lineno, source=source)
    name, pol, pk, by = m.groups()
    counters = Counters(int(pk), int(by)) if pk is not None else None
    if pol == "-":
        return name, None, counters
    try:
        return name, Policy(pol), counters
    except ValueError:
        raise ParseError("a policy ACCEPT, DROP or -", text=line, line=lineno, source=source) from None


class _TableBuilder:
    def __init__(self, name: TableName, header: list[str]) -> None:
        self.name = name
        self.header = header
        self.chains: dict[str, tuple[Policy | None, Counters | None]] = {}
        self.rules: dict[str, list[Rule]] = {}

    def declare(self, name: str, policy: Policy | None, counters: Counters | None) -> None:
        self.chains[name] = (policy, counters)
        self.rules.setdefault(name, [])

    def build(self, footer: Sequence[str] = ()) -> Table:
        chains = tuple(Chain(n, p, c, tuple(self.rules.get(n, ()))) for n, (p, c) in self.chains.items())
        return Table(self.name, chains, tuple(self.header), tuple(footer))


def _table_name(text: str, lineno: int, source: str) -> TableName:
    try:
        return TableName(text)
    except ValueError:
        raise ParseError("a table name (filter, nat, mangle, raw, security) after *", text="*" + text,
                         line=lineno, source=source) from None


@overload
def parse_save(text: str, *, source: str = ..., partial: Literal[False] = ...) -> Ruleset: ...
@overload
def parse_save(text: str, *, source: str = ..., partial: Literal[True]) -> Partial[Ruleset]: ...
def parse_save(text: str, *, source: str = "<string>", partial: bool = False) -> Ruleset | Partial[Ruleset]:
    """``iptables-save`` output (with or without ``-c``), or ``iptables-restore`` input.

    ``partial=True`` reads what it can and returns the unreadable lines as problems.
    """
    tables: list[Table] = []
    problems: list[ParseError] = []
    pending: list[str] = []  # comment lines before the next *table
    builder: _TableBuilder | None = None
    footer: list[str] = []
    done: Table | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        try:
            if not line:
                continue
            if line.startswith("#"):
                if done is not None and line.startswith("# Completed"):
                    tables[-1] = replace(tables[-1], footer=(*tables[-1].footer, raw.rstrip()))
                elif builder is not None:
                    footer.append(raw.rstrip())
                else:
                    pending.append(raw.rstrip())
                continue
            if line.startswith("*"):
                if builder is not None:
                    raise ParseError("COMMIT before the next *table", text=raw, line=lineno, source=source)
                builder = _TableBuilder(_table_name(line[1:].strip(), lineno, source), pending)
                pending, footer, done = [], [], None
                continue
            if builder is None:
                raise ParseError("*table before chains and rules", text=raw, line=lineno, source=source)
            if line == "COMMIT":
                done = builder.build()
                tables.append(done)
                builder = None
                continue
            if line.startswith(":"):
                builder.declare(*_chain_line(line, lineno, source))
                continue
            rule = parse_rule(line, lineno=lineno, source=source)
            if rule.chain not in builder.rules:
                if not partial:
                    raise ParseError(f":{rule.chain} declared before its rules", text=raw, line=lineno,
                                     source=source)
                builder.declare(rule.chain, None, None)
            builder.rules[rule.chain].append(rule)
        except ParseError as err:
            if not partial:
                raise
            problems.append(err)
    if builder is not None:
        missing = ParseError(f"COMMIT at the end of table {builder.name}", line=len(text.splitlines()),
                             source=source)
        if not partial:
            raise missing
        problems.append(missing)
        tables.append(builder.build())
    result = Ruleset(tuple(tables))
    return Partial(result, tuple(problems)) if partial else result


def format_save(ruleset: Ruleset, *, counters: bool = False, comments: bool = True,
                dialect: Dialect = CLASSIC) -> str:
    """``iptables-save`` text (``counters``: as ``iptables-save -c``). The ``# Generated by`` and
    ``# Completed on`` lines parsed with each table are kept when ``comments``."""
    out: list[str] = []
    for table in ruleset.tables:
        if comments:
            out.extend(table.header)
        out.append(f"*{table.name}")
        for chain in table.chains:
            c = chain.counters or Counters(0, 0)
            out.append(f":{chain.name} {chain.policy or '-'} [{c.packets}:{c.bytes}]")
        for chain in table.chains:
            out.extend(format_rule(r, counters=counters, dialect=dialect) for r in chain.rules)
        out.append("COMMIT")
        if comments:
            out.extend(table.footer)
    return "".join(line + "\n" for line in out)


# ------------------------------------------------------------------------------------ iptables -S


@overload
def parse_rules(text: str, *, table: TableName = ..., source: str = ...,
                partial: Literal[False] = ...) -> Table: ...
@overload
def parse_rules(text: str, *, table: TableName = ..., source: str = ...,
                partial: Literal[True]) -> Partial[Table]: ...
def parse_rules(text: str, *, table: TableName = TableName.FILTER, source: str = "<string>",
                partial: bool = False) -> Table | Partial[Table]:
    """``iptables [-t table] -S [CHAIN]`` output: ``-P``, ``-N`` then ``-A`` lines.

    Trailing spaces are tolerated. ``partial=True`` also reads grepped subsets (rules of chains never
    declared), skips elision lines (``...``, ``. . .``) and reports every line it cannot read.
    """
    builder = _TableBuilder(table, [])
    problems: list[ParseError] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        try:
            if not line or (partial and re.fullmatch(r"[.\s]*|\.\.\..*", line) and "." in line):
                continue
            if line.startswith("# Warning:"):
                continue
            if line.startswith("-P "):
                m = re.fullmatch(r"-P\s+(\S+)\s+(\S+)(?:\s+-c\s+(\d+)\s+(\d+))?", line)
                if not m:
                    raise ParseError("-P CHAIN POLICY", text=raw, line=lineno, source=source)
                try:
                    pol = Policy(m.group(2))
                except ValueError:
                    raise ParseError("a policy ACCEPT or DROP", text=raw, line=lineno,
                                     source=source) from None
                ctr = Counters(int(m.group(3)), int(m.group(4))) if m.group(3) else None
                builder.declare(m.group(1), pol, ctr)
            elif line.startswith("-N "):
                m = re.fullmatch(r"-N\s+(\S+)", line)
                if not m:
                    raise ParseError("-N CHAIN", text=raw, line=lineno, source=source)
                builder.declare(m.group(1), None, None)
            else:
                rule = parse_rule(line, lineno=lineno, source=source)
                if rule.chain not in builder.rules:
                    if not partial:
                        raise ParseError(f"-N {rule.chain} (or -P) before its rules", text=raw, line=lineno,
                                         source=source)
                    builder.declare(rule.chain, None, None)
                builder.rules[rule.chain].append(rule)
        except ParseError as err:
            if not partial:
                raise
            problems.append(err)
    result = builder.build()
    return Partial(result, tuple(problems)) if partial else result


def format_rules(table: Table, chain: str | None = None, *, dialect: Dialect = CLASSIC) -> str:
    """``iptables -S`` (all chains: every ``-P``, then every ``-N``, then the rules chain by chain) or
    ``iptables -S CHAIN`` (its ``-P`` or ``-N`` line, then its rules)."""
    chains = table.chains if chain is None else (table.chain(chain),)
    out: list[str] = []
    out.extend(f"-P {c.name} {c.policy}" for c in chains if c.policy is not None)
    out.extend(f"-N {c.name}" for c in chains if c.policy is None and not table.is_builtin(c.name))
    for c in chains:
        out.extend(format_rule(r, dialect=dialect) for r in c.rules)
    return "".join(line + "\n" for line in out)


_RUN_TOGETHER = re.compile(r"(?<=\S)(?=-[PNA] )")
_ELISION = re.compile(r"\.\.\.(?: \([^)]*\) \.\.\.)?")


def split_run_together(text: str) -> str:
    """Restore the line breaks of ``-S`` output whose lines were run together (seed 004):
    a break before ``-P ``, ``-N `` and ``-A `` that follow a non-space, and elisions such as
    ``... (virbr0 stuff omitted) ...`` on lines of their own. Non-breaking spaces (as web pages
    carry them) become plain spaces."""
    text = text.replace("\u00a0", " ")
    text = _ELISION.sub(lambda m: "\n" + m.group(0) + "\n", text)
    text = _RUN_TOGETHER.sub("\n", text)
    return "\n".join(line.strip() for line in text.splitlines() if line.strip()) + "\n"


# ----------------------------------------------------------------------------------------- diff


@dataclass(frozen=True, slots=True)
class ChainDiff:
    """How to turn one chain of the actual state into the desired one.

    ``delete`` holds 1-based positions in the actual chain, highest first (apply in that order);
    ``insert`` holds (1-based position in the desired chain, rule), lowest first, applied after the
    deletions."""

    table: TableName
    chain: str
    create: bool = False
    remove: bool = False
    policy: Policy | None = None
    delete: tuple[int, ...] = ()
    insert: tuple[tuple[int, Rule], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.remove or self.policy or self.delete or self.insert)


@dataclass(frozen=True, slots=True)
class RulesetDiff:
    chains: tuple[ChainDiff, ...] = ()

    @property
    def empty(self) -> bool:
        return all(c.empty for c in self.chains)

    def tables(self) -> tuple[TableName, ...]:
        return tuple(dict.fromkeys(c.table for c in self.chains if not c.empty))


def diff(desired: Ruleset, actual: Ruleset, *, owned: Callable[[str], bool] | None = None) -> RulesetDiff:
    """What to change in ``actual`` to get ``desired``, table by table, for the tables ``desired``
    has. Rules are compared by their canonical text (counters and origin aside). User chains that
    are only in ``actual`` are removed when ``owned(name)`` is true (default: all of them)."""
    out: list[ChainDiff] = []
    for want in desired.tables:
        have = actual.find(want.name) or Table(want.name)
        for chain in want.chains:
            cur = have.find(chain.name)
            builtin = want.is_builtin(chain.name)
            cur_rules = cur.rules if cur is not None else ()
            old = [format_rule(r) for r in cur_rules]
            new = [format_rule(r) for r in chain.rules]
            deletes: list[int] = []
            inserts: list[tuple[int, Rule]] = []
            for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
                if tag in ("delete", "replace"):
                    deletes.extend(range(i1 + 1, i2 + 1))
                if tag in ("insert", "replace"):
                    inserts.extend((j + 1, chain.rules[j]) for j in range(j1, j2))
            policy = chain.policy if builtin and chain.policy and (cur is None or cur.policy != chain.policy) \
                else None
            out.append(ChainDiff(want.name, chain.name, create=cur is None and not builtin, policy=policy,
                                 delete=tuple(sorted(deletes, reverse=True)), insert=tuple(inserts)))
        wanted = {c.name for c in want.chains}
        for chain in have.chains:
            if chain.name in wanted or have.is_builtin(chain.name):
                continue
            if owned is None or owned(chain.name):
                out.append(ChainDiff(want.name, chain.name, remove=True,
                                     delete=tuple(range(len(chain.rules), 0, -1))))
    return RulesetDiff(tuple(c for c in out if not c.empty))


def format_restore(change: RulesetDiff, *, dialect: Dialect = CLASSIC) -> str:
    """``iptables-restore -n`` input applying ``change``: per table, new chains and policies as
    ``:CHAIN`` lines, then deletions (bottom up), insertions (top down), then ``-X`` of removed
    chains, and ``COMMIT``."""
    out: list[str] = []
    for table in change.tables():
        diffs = [c for c in change.chains if c.table == table and not c.empty]
        out.append(f"*{table}")
        out.extend(f":{c.chain} - [0:0]" for c in diffs if c.create)
        out.extend(f":{c.chain} {c.policy} [0:0]" for c in diffs if c.policy is not None)
        for c in diffs:
            out.extend(f"-D {c.chain} {n}" for n in c.delete)
        for c in diffs:
            for pos, rule in c.insert:
                text = format_rule(replace(rule, chain=c.chain), dialect=dialect, command="-I")
                head = f"-I {c.chain}"
                out.append(f"{head} {pos}{text[len(head):]}")
        out.extend(f"-X {c.chain}" for c in diffs if c.remove)
        out.append("COMMIT")
    return "".join(line + "\n" for line in out)


def iter_rules(ruleset: Ruleset) -> Iterator[tuple[TableName, Rule]]:
    for table in ruleset.tables:
        for rule in table.rules:
            yield table.name, rule
