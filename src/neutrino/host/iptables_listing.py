"""The ``iptables -L`` view (``-nvL``, ``-L -n``, ``-x``) of the rule model in :mod:`.iptables`.

Every column is computed from the parsed rule, the way iptables' ``print_header``,
``print_rule_details`` and the extensions' ``print`` functions do; :func:`parse_listing` reads a
listing back into rules, keeping what the listing shows (``0.0.0.0/0`` is "no -s"; ``6285K`` is
6285000).

>>> from neutrino.host.iptables import TableName, format_rules, parse_rules
>>> t = parse_rules('''-P PREROUTING ACCEPT
... -A PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697
... ''', table=TableName.NAT)
>>> print(format_listing(t, "PREROUTING").splitlines()[2])
    0     0 REDIRECT   tcp  --  qr-+   *       0.0.0.0/0            169.254.169.254      tcp dpt:80 redir ports 9697
>>> format_rules(parse_listing(format_listing(t), table=TableName.NAT)) == format_rules(t)
True
"""

from __future__ import annotations

import re
from collections.abc import Callable

from neutrino.errors import ParseError
from neutrino.host.iptables import (
    CLASSIC,
    CT_STATES,
    PROTOCOL_NUMBERS,
    Address,
    Chain,
    Counters,
    Dialect,
    Fragment,
    Interface,
    Match,
    Option,
    Policy,
    Protocol,
    Rule,
    Table,
    TableName,
    Target,
    parse_address,
)

# the names iptables prints for protocol numbers without a /etc/protocols lookup (xtables_chain_protos)
_CHAIN_PROTOS = {6: "tcp", 132: "sctp", 17: "udp", 136: "udplite", 1: "icmp", 58: "ipv6-icmp", 50: "esp",
                 51: "ah", 135: "mobility-header", 0: "all"}
_PROTO_NAMES = {num: name for name, num in reversed(list(PROTOCOL_NUMBERS.items()))} | _CHAIN_PROTOS
_TCP_FLAGS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20))
_TCP_FLAG_VALUES = dict(_TCP_FLAGS) | {"ALL": 0x3F, "NONE": 0}
_LOG_FLAGS = (("log-tcp-sequence", 0x01), ("log-tcp-options", 0x02), ("log-ip-options", 0x04),
              ("log-uid", 0x08), ("log-macdecode", 0x20))
_LOG_LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4, "warn": 4, "notice": 5,
               "info": 6, "debug": 7, "panic": 0}
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


# ------------------------------------------------------------------------------------- numbers


def format_num(number: int, *, exact: bool = False, table: bool = True) -> str:
    """``xtables_print_num``: with ``table``, right-aligned and followed by a space; K/M/G/T
    (rounded, powers of 1000) above 99999 unless ``exact``."""
    if exact:
        return f"{number:8d} " if table else f"{number} "
    if number <= 99999:
        return f"{number:5d} " if table else f"{number} "
    for unit in "KMGT":
        number = (number + 500) // 1000
        if number <= 9999 or unit == "T":
            return f"{number:4d}{unit} " if table else f"{number}{unit} "
    raise AssertionError("unreachable")


def parse_num(text: str) -> int:
    """``6285K`` -> 6285000 (what the listing shows, not the exact count)."""
    m = re.fullmatch(r"(\d+)([KMGT]?)", text)
    if not m:
        raise ValueError(text)
    return int(m.group(1)) * _UNITS[m.group(2)]


# -------------------------------------------------------------------------------- the columns


def _proto_column(proto: Protocol | None, numeric: bool, dialect: Dialect) -> str:
    number = 0 if proto is None else proto.number
    if number is None:
        return proto.name if proto is not None else "all"
    if numeric and dialect.numeric_proto:
        return str(number)
    if numeric:
        return _CHAIN_PROTOS.get(number, str(number))
    return _PROTO_NAMES.get(number, str(number))


def _addr_column(addr: Address | None, numeric: bool) -> str:
    if addr is None:
        return "0.0.0.0/0" if numeric else "anywhere"
    net = addr.network
    if not numeric and net.prefixlen == 0 and addr.mask is None:
        return "anywhere"
    if addr.mask is not None:
        return f"{net.network_address}/{addr.mask}"
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return f"{net.network_address}/{net.prefixlen}"


def _iface_column(iface: Interface | None, numeric: bool) -> str:
    anyname = "*" if numeric else "any"
    if iface is None:
        return anyname
    return ("!" if iface.negated else "") + iface.name


def _hex(value: str) -> int:
    return int(value, 0)


def _mark_text(value: str) -> str:
    """``0x2/0xffff`` as ``xtables_print_mark_mask`` prints it (no mask when it is all ones)."""
    mark, _, mask = value.partition("/")
    if not mask or _hex(mask) == 0xFFFFFFFF:
        return f"0x{_hex(mark):x}"
    return f"0x{_hex(mark):x}/0x{_hex(mask):x}"


def _ports(name: str, opt: Option | None) -> str:
    if opt is None:
        return ""
    inv = "!" if opt.negated else ""
    lo, sep, hi = opt.value.partition(":")
    if sep and lo != hi:
        return f" {name}s:{inv}{lo or 0}:{hi or 65535}"
    return f" {name}:{inv}{lo}"


def _tcp_flag_bits(names: str) -> int:
    bits = 0
    for flag in names.split(","):
        bits |= _TCP_FLAG_VALUES[flag.upper()]
    return bits


def _tcp_flag_names(bits: int) -> str:
    names = [name for name, bit in _TCP_FLAGS if bits & bit]
    return ",".join(names) or "NONE"


def _match_text(m: Match, numeric: bool, dialect: Dialect) -> str:
    """What the match module's ``print`` function writes (each piece starts with a space)."""
    mod = m.module
    if mod in ("tcp", "udp", "sctp"):
        out = f" {mod}" + _ports("spt", m.option("sport") or m.option("source-port"))
        out += _ports("dpt", m.option("dport") or m.option("destination-port"))
        if (o := m.option("tcp-option")) is not None:
            out += f" option={'!' if o.negated else ''}{o.value}"
        if (o := m.option("tcp-flags")) is not None:
            mask, cmp = _tcp_flag_bits(o.args[0]), _tcp_flag_bits(o.args[1])
            inv = "!" if o.negated else ""
            out += (f" flags:{inv}0x{mask:02X}/0x{cmp:02X}" if numeric
                    else f" flags:{inv}{_tcp_flag_names(mask)}/{_tcp_flag_names(cmp)}")
        return out
    if mod == "multiport":
        o = m.options[0]
        kind = {"source-ports": "sports", "destination-ports": "dports"}.get(o.name, o.name)
        return f" multiport {kind} {' !' if o.negated else ''}{o.value}"
    if mod == "icmp":
        o = m.options[0]
        typ, _, code = o.value.partition("/")
        inv = " !" if o.negated else ""
        if typ == "any":
            return f" icmp{inv}type 255"
        return f" icmp{inv}type {typ}" + (f" code {code}" if code else "")
    if mod == "state":
        o = m.options[0]
        return f"{' !' if o.negated else ''} state {_states(o.value)}"
    if mod == "conntrack":
        out = ""
        for o in m.options:
            value = _states(o.value) if o.name == "ctstate" else o.value
            if o.name in ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"):
                value = _addr_column(parse_address(value), True)
            out += f"{' !' if o.negated else ''} {o.name} {value}"
        return out
    if mod == "mac":
        o = m.options[0]
        mac = o.value.upper() if dialect.mac_upper else o.value.lower()
        return f" MAC {'! ' if o.negated else ''}{mac}"
    if mod == "mark":
        o = m.options[0]
        return f" mark match{' !' if o.negated else ''} {_mark_text(o.value)}"
    if mod == "connmark":
        o = m.options[0]
        return f" connmark match {'!' if o.negated else ''} {_mark_text(o.value)}"
    if mod == "comment":
        return f" /* {m.options[0].value} */"
    if mod == "physdev":
        return " PHYSDEV match" + "".join(
            f"{' !' if o.negated else ''} --{o.name}{''.join(' ' + a for a in o.args)}" for o in m.options)
    if mod == "set":
        out = ""
        for o in m.options:
            if o.name == "match-set":
                out += f"{' !' if o.negated else ''} match-set {o.args[0]} {o.args[1]}"
            elif o.name in ("update-counters", "update-subcounters"):
                out += f" ! {o.name}"
            else:
                out += f" {o.name}{''.join(' ' + a for a in o.args)}"
        return out
    if mod == "addrtype":
        return " ADDRTYPE match" + "".join(
            f" {o.name} {'!' if o.negated else ''}{o.value}" if o.args else f" {o.name}" for o in m.options)
    if mod == "limit":
        rate = m.value("limit") or "3/hour"
        return f" limit: avg {rate} burst {m.value('limit-burst') or 5}"
    if mod == "length":
        o = m.options[0]
        return f" length {'!' if o.negated else ''}{o.value}"
    # a module this view does not know: its options, plainly
    return f" {mod}" + "".join(
        f"{' !' if o.negated else ''} {o.name}{''.join(' ' + a for a in o.args)}" for o in m.options)


def _states(value: str) -> str:
    states = {s.upper() for s in value.split(",")}
    return ",".join([s for s in CT_STATES if s in states] + sorted(states - set(CT_STATES)))


def _target_text(t: Target, numeric: bool) -> str:
    """What the target's ``print`` function writes."""
    name = t.name
    if name in ("DNAT", "SNAT"):
        out = ""
        if (v := t.value("to-destination" if name == "DNAT" else "to-source")) is not None:
            out += f" to:{v}"
        return out + "".join(f" {flag}" for flag in ("random", "random-fully", "persistent") if t.has(flag))
    if name == "MASQUERADE":
        out = f" masq ports: {v}" if (v := t.value("to-ports")) is not None else ""
        return out + "".join(f" {flag}" for flag in ("random", "random-fully") if t.has(flag))
    if name == "REDIRECT":
        out = f" redir ports {v}" if (v := t.value("to-ports")) is not None else ""
        return out + (" random" if t.has("random") else "")
    if name == "CT":
        out = " CT"
        if t.has("notrack"):
            out += " notrack"
        for key in ("helper", "ctevents", "expevents"):
            if (v := t.value(key)) is not None:
                out += f" {key} {v}"
        for key in ("zone", "zone-orig", "zone-reply"):
            if (v := t.value(key)) is not None:
                out += f" {key} {v}"
        return out
    if name == "NOTRACK":
        return " NOTRACK"
    if name == "MARK":
        return _mark_target(t)
    if name == "CONNMARK":
        return _connmark_target(t)
    if name == "CHECKSUM":
        return " CHECKSUM fill" if t.has("checksum-fill") else " CHECKSUM"
    if name == "REJECT":
        return f" reject-with {t.value('reject-with') or 'icmp-port-unreachable'}"
    if name == "LOG":
        flags = sum(bit for opt, bit in _LOG_FLAGS if t.has(opt))
        level = t.value("log-level") or "4"
        level_num = int(level) if level.isdigit() else _LOG_LEVELS.get(level.lower(), 4)
        out = f" LOG flags {flags} level {level_num}"
        if (prefix := t.value("log-prefix")) is not None and prefix:
            out += f' prefix "{prefix}"'
        return out
    return "".join(f" {o.name}{''.join(' ' + a for a in o.args)}" for o in t.options)


def _mark_target(t: Target) -> str:
    if (v := t.value("set-xmark")) is not None or (v := t.value("set-mark")) is not None:
        mark, _, mask = v.partition("/")
        mask_v = _hex(mask) if mask else 0xFFFFFFFF
        if t.has("set-mark") and mask:
            mask_v |= _hex(mark)  # --set-mark V/M is --set-xmark V/(M|V)
        if mask_v == 0xFFFFFFFF:
            return f" MARK set 0x{_hex(mark):x}"
        return f" MARK xset 0x{_hex(mark):x}/0x{mask_v:x}"
    for op, word in (("and-mark", "and"), ("or-mark", "or"), ("xor-mark", "xor")):
        if (v := t.value(op)) is not None:
            return f" MARK {word} 0x{_hex(v):x}"
    return " MARK"


def _connmark_target(t: Target) -> str:
    for mode, word in (("restore-mark", "restore"), ("save-mark", "save")):
        if t.has(mode):
            both = t.value("mask")
            nf = _hex(t.value("nfmask") or both or "0xffffffff")
            ct = _hex(t.value("ctmask") or both or "0xffffffff")
            if nf == ct == 0xFFFFFFFF:
                return f" CONNMARK {word}"
            if nf == ct:
                return f" CONNMARK {word} mask 0x{nf:x}"
            if mode == "save-mark":
                return f" CONNMARK save nfmask 0x{nf:x} ctmask ~0x{ct:x}"
            return f" CONNMARK restore ctmask 0x{ct:x} nfmask ~0x{nf:x}"
    if (v := t.value("set-xmark")) is not None or (v := t.value("set-mark")) is not None:
        mark, _, mask = v.partition("/")
        mask_v = _hex(mask) if mask else 0xFFFFFFFF
        if mask_v == 0xFFFFFFFF:
            return f" CONNMARK set 0x{_hex(mark):x}"
        return f" CONNMARK xset 0x{_hex(mark):x}/0x{mask_v:x}"
    return " CONNMARK"


def format_row(rule: Rule, *, verbose: bool = True, numeric: bool = True, exact: bool = False,
               dialect: Dialect = CLASSIC) -> str:
    """One rule as a row of ``iptables -L`` (without the newline)."""
    out = ""
    if verbose:
        counters = rule.counters or Counters(0, 0)
        out += format_num(counters.packets, exact=exact) + format_num(counters.bytes, exact=exact)
    target = rule.target.name if rule.target is not None else ""
    if target == "NOTRACK":
        target = "CT"  # NOTRACK is an alias of CT's revision 0, which prints its real name
    out += f"{target:<9} "
    out += ("!" if rule.protocol is not None and rule.protocol.negated else " ")
    out += f"{_proto_column(rule.protocol, numeric, dialect):<4} "
    out += ("!" if rule.fragment is Fragment.NOT_FRAGMENTS else "-")
    out += ("-" if rule.fragment is Fragment.ANY else "f") + " "
    if verbose:
        out += f" {_iface_column(rule.in_interface, numeric):<6} "
        out += f"{_iface_column(rule.out_interface, numeric):<6} "
    for addr in (rule.source, rule.destination):
        out += ("!" if addr is not None and addr.negated else " ") + f"{_addr_column(addr, numeric):<19} "
    out += "".join(_match_text(m, numeric, dialect) for m in rule.matches)
    if rule.target is not None:
        if rule.target.goto:
            out += "[goto] "
        out += _target_text(rule.target, numeric)
    return out


def format_header(chain: Chain, references: int, *, verbose: bool = True, exact: bool = False) -> str:
    """The two header lines of a chain (``Chain X (...)`` and the column titles)."""
    if chain.policy is not None:
        head = f"Chain {chain.name} (policy {chain.policy}"
        if verbose:
            c = chain.counters or Counters(0, 0)
            head += (" " + format_num(c.packets, exact=exact, table=False) + "packets, "
                     + format_num(c.bytes, exact=exact, table=False) + "bytes")
        head += ")"
    else:
        head = f"Chain {chain.name} ({references} references)"
    cols = ""
    if verbose:
        cols += f"{'pkts':>8} {'bytes':>10} " if exact else f"{'pkts':>5} {'bytes':>5} "
    cols += f"{'target':<9} " + " prot " + "opt"
    if verbose:
        cols += f" {'in':<6} " + f"{'out':<6} "
    cols += f" {'source':<19} " + f" {'destination':<19} "
    return head + "\n" + cols + "\n"


def format_listing(table: Table, chain: str | None = None, *, verbose: bool = True, numeric: bool = True,
                   exact: bool = False, dialect: Dialect = CLASSIC) -> str:
    """``iptables [-t table] -L [CHAIN]`` with ``-v`` (``verbose``), ``-n`` (``numeric``) and ``-x``
    (``exact``). Without ``numeric`` only ``anywhere``/``any`` and protocol names change: addresses
    and ports stay numeric (no resolver lookups here)."""
    chains = table.chains if chain is None else (table.chain(chain),)
    blocks = []
    for c in chains:
        refs = c.references if c.references is not None else table.references(c.name)
        text = format_header(c, refs, verbose=verbose, exact=exact)
        text += "".join(format_row(r, verbose=verbose, numeric=numeric, exact=exact, dialect=dialect) + "\n"
                        for r in c.rules)
        blocks.append(text)
    return "\n".join(blocks)


# ------------------------------------------------------------------------------------ parsing

# patterns are compiled where used (re keeps them): importing the module compiles none
_CHAIN_HEAD = r"Chain (\S+) \((?:policy (\w+)(?: (\d+[KMGT]?) packets, (\d+[KMGT]?) bytes)?|(\d+) references)\)"
_OPT_COL = r"[-!][-f]"


def _proto_from_column(text: str) -> Protocol | None:
    negated = text.startswith("!")
    name = text.lstrip("!")
    if name.isdigit():
        num = int(name)
        name = _CHAIN_PROTOS.get(num, name)
    if name == "all" and not negated:
        return None
    return Protocol(name, negated)


def _addr_from_column(text: str) -> Address | None:
    negated = text.startswith("!")
    body = text.lstrip("!")
    if body in ("anywhere", "0.0.0.0/0") and not negated:
        return None
    if body == "anywhere":
        body = "0.0.0.0/0"
    return parse_address(body, negated=negated)


def _iface_from_column(text: str) -> Interface | None:
    if text in ("*", "any"):
        return None
    return Interface(text.lstrip("!"), text.startswith("!"))


class _Scanner:
    """Reads the extras column (what the match and target ``print`` functions wrote) back."""

    def __init__(self, text: str, fail: Callable[[str], ParseError]) -> None:
        self.text = text
        self.pos = 0
        self.fail = fail

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    def take(self, pattern: str) -> re.Match[str] | None:
        self.skip()
        m = re.compile(pattern).match(self.text, self.pos)
        if m:
            self.pos = m.end()
        return m


_CT_OPTS = ("ctstate", "ctproto", "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst", "ctorigsrcport",
            "ctorigdstport", "ctreplsrcport", "ctrepldstport", "ctstatus", "ctexpire", "ctdir")
_END = r"(?= |$)"


def _read_match(s: _Scanner) -> Match | None:
    if m := s.take(r"/\* (.*?) \*/" + _END):
        return Match("comment", (Option("comment", (m.group(1),)),))
    if m := s.take(r"(tcp|udp|sctp)" + _END):
        opts: list[Option] = []
        while p := s.take(r"(spts?|dpts?):(!?)(\d+)(?::(\d+))?" + _END):
            value = p.group(3) if p.group(4) is None else f"{p.group(3)}:{p.group(4)}"
            opts.append(Option("sport" if p.group(1).startswith("s") else "dport", (value,), p.group(2) == "!"))
        if p := s.take(r"option=(!?)(\d+)" + _END):
            opts.append(Option("tcp-option", (p.group(2),), p.group(1) == "!"))
        if p := s.take(r"flags:(!?)0x([0-9A-Fa-f]{2})/0x([0-9A-Fa-f]{2})" + _END):
            opts.append(Option("tcp-flags", (_tcp_flag_names(int(p.group(2), 16)),
                                             _tcp_flag_names(int(p.group(3), 16))), p.group(1) == "!"))
        elif p := s.take(r"flags:(!?)([A-Z,]+)/([A-Z,]+)" + _END):
            opts.append(Option("tcp-flags", (p.group(2), p.group(3)), p.group(1) == "!"))
        return Match(m.group(1), tuple(opts))
    if m := s.take(r"multiport (sports|dports|ports)  ?(!?)(\S+)" + _END):
        return Match("multiport", (Option(m.group(1), (m.group(3),), m.group(2) == "!"),))
    if m := s.take(r"icmp ?(!?)type (\d+)(?: code (\d+))?" + _END):
        typ = "any" if m.group(2) == "255" and m.group(3) is None else m.group(2)
        value = typ if m.group(3) is None else f"{typ}/{m.group(3)}"
        return Match("icmp", (Option("icmp-type", (value,), m.group(1) == "!"),))
    if m := s.take(r"(! )?state (\S+)" + _END):
        return Match("state", (Option("state", (m.group(2),), m.group(1) is not None),))
    if s.take(r"(?=(?:! )?(?:" + "|".join(_CT_OPTS) + r") )"):
        opts = []
        rank = -1
        while True:
            save = s.pos
            m = s.take(r"(! )?(" + "|".join(_CT_OPTS) + r") (\S+)" + _END)
            if m is None or _CT_OPTS.index(m.group(2)) <= rank:
                s.pos = save
                break
            rank = _CT_OPTS.index(m.group(2))
            value = m.group(3)
            if m.group(2) in ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"):
                value = parse_address(value).text()
            opts.append(Option(m.group(2), (value,), m.group(1) is not None))
        return Match("conntrack", tuple(opts))
    if m := s.take(r"MAC (! )?(\S+)" + _END):
        return Match("mac", (Option("mac-source", (m.group(2).lower(),), m.group(1) is not None),))
    if m := s.take(r"mark match (! )?(0x[0-9a-f]+(?:/0x[0-9a-f]+)?)" + _END):
        return Match("mark", (Option("mark", (m.group(2),), m.group(1) is not None),))
    if m := s.take(r"connmark match (!?) (0x[0-9a-f]+(?:/0x[0-9a-f]+)?)" + _END):
        return Match("connmark", (Option("mark", (m.group(2),), m.group(1) == "!"),))
    if m := s.take(r"PHYSDEV match((?: (?:! )?--physdev-(?:is-in|is-out|is-bridged|in \S+|out \S+))+)" + _END):
        opts = []
        neg = False
        tokens = m.group(1).split()
        i = 0
        while i < len(tokens):
            if tokens[i] == "!":
                neg = True
            else:
                name = tokens[i][2:]
                args: tuple[str, ...] = ()
                if name in ("physdev-in", "physdev-out"):
                    i += 1
                    args = (tokens[i],)
                opts.append(Option(name, args, neg))
                neg = False
            i += 1
        return Match("physdev", tuple(opts))
    if m := s.take(r"(! )?match-set (\S+) ((?:src|dst)(?:,(?:src|dst))*)" + _END):
        opts = [Option("match-set", (m.group(2), m.group(3)), m.group(1) is not None)]
        while p := s.take(r"(return-nomatch|! update-counters|! update-subcounters)" + _END):
            opts.append(Option(p.group(1).removeprefix("! ")))
        return Match("set", tuple(opts))
    if s.take(r"ADDRTYPE match" + _END):
        opts = []
        while p := s.take(r"(src-type|dst-type) (!?)(\S+)" + _END):
            opts.append(Option(p.group(1), (p.group(3),), p.group(2) == "!"))
        return Match("addrtype", tuple(opts))
    if m := s.take(r"limit: avg (\S+) burst (\d+)" + _END):
        return Match("limit", (Option("limit", (m.group(1),)), Option("limit-burst", (m.group(2),))))
    if m := s.take(r"length (!?)(\S+)" + _END):
        return Match("length", (Option("length", (m.group(2),), m.group(1) == "!"),))
    return None


def _flags(s: _Scanner, names: tuple[str, ...]) -> list[Option]:
    opts = []
    for name in names:
        if s.take(name + _END):
            opts.append(Option(name))
    return opts


def _read_target(s: _Scanner, name: str) -> tuple[tuple[Option, ...], str]:
    """The target's options, and its name (``CT`` printing ``NOTRACK`` is the NOTRACK target)."""
    opts: list[Option] = []
    if name in ("DNAT", "SNAT"):
        if m := s.take(r"to:(\S+)" + _END):
            opts.append(Option("to-destination" if name == "DNAT" else "to-source", (m.group(1),)))
        opts += _flags(s, ("random", "random-fully", "persistent"))
    elif name == "MASQUERADE":
        if m := s.take(r"masq ports: (\S+)" + _END):
            opts.append(Option("to-ports", (m.group(1),)))
        opts += _flags(s, ("random", "random-fully"))
    elif name == "REDIRECT":
        if m := s.take(r"redir ports (\S+)" + _END):
            opts.append(Option("to-ports", (m.group(1),)))
        opts += _flags(s, ("random",))
    elif name == "CT" and s.take(r"NOTRACK$"):
        return (), "NOTRACK"
    elif name == "CT" and s.take(r"CT" + _END):
        if s.take("notrack" + _END):
            opts.append(Option("notrack"))
        while m := s.take(r"(helper|ctevents|expevents|zone|zone-orig|zone-reply) (\S+)" + _END):
            opts.append(Option(m.group(1), (m.group(2),)))
    elif name == "MARK":
        if m := s.take(r"MARK (set|xset) (0x[0-9a-f]+)(?:/(0x[0-9a-f]+))?" + _END):
            opts.append(Option("set-xmark", (f"{m.group(2)}/{m.group(3) or '0xffffffff'}",)))
        elif m := s.take(r"MARK (and|or|xor) (0x[0-9a-f]+)" + _END):
            opts.append(Option(f"{m.group(1)}-mark", (m.group(2),)))
    elif name == "CONNMARK":
        if m := s.take(r"CONNMARK (restore|save)(?: mask (0x[0-9a-f]+))?" + _END):
            opts.append(Option(f"{m.group(1)}-mark"))
            if m.group(2):
                opts += [Option("nfmask", (m.group(2),)), Option("ctmask", (m.group(2),))]
        elif m := s.take(r"CONNMARK (set|xset) (0x[0-9a-f]+)(?:/(0x[0-9a-f]+))?" + _END):
            opts.append(Option("set-xmark", (f"{m.group(2)}/{m.group(3) or '0xffffffff'}",)))
    elif name == "CHECKSUM":
        if s.take(r"CHECKSUM fill" + _END):
            opts.append(Option("checksum-fill"))
    elif name == "REJECT":
        if m := s.take(r"reject-with (\S+)" + _END):
            opts.append(Option("reject-with", (m.group(1),)))
    elif name == "LOG" and (m := s.take(r'LOG flags (\d+) level (\d+)(?: prefix "(.*)")?$')):
        if m.group(3) is not None:
            opts.append(Option("log-prefix", (m.group(3),)))
        if m.group(2) != "4":
            opts.append(Option("log-level", (m.group(2),)))
        opts += [Option(opt) for opt, bit in _LOG_FLAGS if int(m.group(1)) & bit]
    return tuple(opts), name


def parse_row(line: str, *, verbose: bool, chain: str, lineno: int = 0, source: str = "<string>") -> Rule:
    """One rule row of ``iptables -L`` back into a :class:`Rule` (what the row shows)."""

    def fail(expected: str) -> ParseError:
        return ParseError(expected, text=line, line=lineno, source=source)

    cols: list[str] = []
    spans: list[int] = []
    for tok in re.finditer(r"\S+", line):
        cols.append(tok.group(0))
        spans.append(tok.end())
    i = 0
    counters: Counters | None = None
    try:
        if verbose:
            counters = Counters(parse_num(cols[0]), parse_num(cols[1]))
            i = 2
        # an empty target column: the protocol comes first, the opt column second
        if re.compile(_OPT_COL).fullmatch(cols[i + 1]) and not re.compile(_OPT_COL).fullmatch(cols[i + 2]):
            target_name = ""
        else:
            target_name = cols[i]
            i += 1
        proto = _proto_from_column(cols[i])
        opt = cols[i + 1]
        if not re.compile(_OPT_COL).fullmatch(opt):
            raise fail("the opt column (--, -f or !f)")
        i += 2
        in_if = out_if = None
        if verbose:
            in_if, out_if = _iface_from_column(cols[i]), _iface_from_column(cols[i + 1])
            i += 2
        src, dst = _addr_from_column(cols[i]), _addr_from_column(cols[i + 1])
        rest = line[spans[i + 1]:]
    except (IndexError, ValueError):
        raise fail("a rule row (pkts bytes target prot opt in out source destination ...)") from None
    except ParseError as err:
        raise fail(f"a rule row ({err.expected})") from None
    fragment = {"--": Fragment.ANY, "-f": Fragment.FRAGMENTS, "!f": Fragment.NOT_FRAGMENTS}.get(opt)
    if fragment is None:
        raise fail("the opt column (--, -f or !f)")
    scanner = _Scanner(rest, fail)
    matches: list[Match] = []
    while (match := _read_match(scanner)) is not None:
        matches.append(match)
    goto = scanner.take(r"\[goto\]") is not None
    target = None
    if target_name:
        options, real_name = _read_target(scanner, target_name)
        target = Target(real_name, options, goto=goto)
    if not scanner.at_end():
        raise fail(f"a match or target this view knows where {scanner.text[scanner.pos:]!r} stands")
    return Rule(chain=chain, source=src, destination=dst, in_interface=in_if, out_interface=out_if,
                protocol=proto, fragment=fragment, matches=tuple(matches), target=target, counters=counters)


def parse_listing(text: str, *, table: TableName = TableName.FILTER, source: str = "<string>") -> Table:
    """``iptables [-t table] -L [CHAIN]`` output (``-n``, ``-v``, ``-x`` in any mix; blank lines
    between chains optional) back into a :class:`Table`. Each chain keeps the reference count its
    header showed."""
    chains: list[Chain] = []
    current: Chain | None = None
    rules: list[Rule] = []
    verbose: bool | None = None

    def close() -> None:
        if current is not None:
            chains.append(Chain(current.name, current.policy, current.counters, tuple(rules),
                                references=current.references))

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip():
            continue
        if line.startswith("Chain "):
            m = re.compile(_CHAIN_HEAD).fullmatch(line.strip())
            if not m:
                raise ParseError("Chain NAME (policy P [n packets, m bytes]) or Chain NAME (n references)",
                                 text=raw, line=lineno, source=source)
            close()
            name, pol, pk, by, refs = m.groups()
            try:
                policy = Policy(pol) if pol else None
            except ValueError:
                raise ParseError("a policy ACCEPT or DROP", text=raw, line=lineno, source=source) from None
            counters = Counters(parse_num(pk), parse_num(by)) if pk else None
            current = Chain(name, policy, counters, references=int(refs) if refs else None)
            rules = []
            verbose = None
            continue
        if current is None:
            raise ParseError("a Chain header first", text=raw, line=lineno, source=source)
        words = line.split()
        if verbose is None:
            if words[:2] == ["pkts", "bytes"] or words[:3] == ["num", "pkts", "bytes"]:
                verbose = True
            elif words[:1] == ["target"] or words[:2] == ["num", "target"]:
                verbose = False
            else:
                raise ParseError("the column titles (pkts bytes target ... or target prot opt ...)", text=raw,
                                 line=lineno, source=source)
            continue
        rules.append(parse_row(line, verbose=verbose, chain=current.name, lineno=lineno, source=source))
    close()
    return Table(table, tuple(chains))

