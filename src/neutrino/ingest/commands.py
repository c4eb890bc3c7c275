"""The commands neutrino understands, read from what a person types (or a capture file's name).

One grammar serves ``neutrino import`` (which command produced this capture?) and ``neutrino exec``
(which view of the host state does this command ask for?). A command is read into a
:class:`Command`: the namespace it runs in (``ip netns exec NS ...``), the view it asks for, that
view's arguments, and the ``| grep`` filters after it.
"""

from __future__ import annotations

import enum
import shlex
from dataclasses import dataclass

from neutrino.errors import InvalidInput


class View(enum.Enum):
    """A kind of output some tool prints."""

    VSCTL_SHOW = "ovs-vsctl show"
    VSCTL_LIST = "ovs-vsctl list"
    VSCTL_LIST_BR = "ovs-vsctl list-br"
    VSCTL_LIST_PORTS = "ovs-vsctl list-ports"
    APPCTL_FDB_SHOW = "ovs-appctl fdb/show"
    APPCTL_OFPROTO_TRACE = "ovs-appctl ofproto/trace"
    DPCTL_SHOW = "ovs-dpctl show"
    OFCTL_DUMP_PORTS = "ovs-ofctl dump-ports"
    OFCTL_DUMP_FLOWS = "ovs-ofctl dump-flows"
    OFCTL_SHOW = "ovs-ofctl show"
    IPTABLES_SAVE = "iptables-save"
    IPTABLES_S = "iptables -S"
    IPTABLES_L = "iptables -L"
    IP_NETNS = "ip netns"
    IP_ADDR = "ip addr"
    IP_LINK = "ip link"
    IP_ROUTE = "ip route"
    IP_RULE = "ip rule"
    IP_NEIGH = "ip neigh"
    IFCONFIG = "ifconfig"
    ROUTE_N = "route -n"
    ARP_N = "arp -n"
    BRCTL_SHOW = "brctl show"
    PS = "ps"
    SYSCTL = "sysctl"
    CAT = "cat"
    CONNTRACK_L = "conntrack -L"
    TCPDUMP = "tcpdump"


@dataclass(frozen=True, slots=True)
class Grep:
    """``| grep [-v] [-i] [-C N] PATTERN``: fixed-string (grep's basic regexps are close enough
    for the patterns people use on these outputs; we treat the pattern as a plain substring)."""

    pattern: str
    invert: bool = False
    ignore_case: bool = False
    context: int = 0

    def apply(self, text: str) -> str:
        lines = text.splitlines()

        def hit(line: str) -> bool:
            found = (self.pattern.lower() in line.lower()) if self.ignore_case else (self.pattern in line)
            return found != self.invert

        keep: set[int] = set()
        for i, line in enumerate(lines):
            if hit(line):
                keep.update(range(max(0, i - self.context), min(len(lines), i + self.context + 1)))
        out: list[str] = []
        prev = -2
        for i in sorted(keep):
            if self.context and out and i != prev + 1:
                out.append("--")
            out.append(lines[i])
            prev = i
        return "\n".join(out) + ("\n" if out else "")


@dataclass(frozen=True, slots=True)
class Command:
    view: View
    netns: str = ""  # "" is the host's root namespace
    table: str = ""  # iptables table ("filter" if not given), ip route table ("" = main), OVSDB table
    target: str = ""  # bridge, chain, device or file path, by view
    options: frozenset[str] = frozenset()  # view-specific flags: "-v", "-n", "-x", "-c", "-o", "-d", "-a", "-s",
    #                                          "-br", "OF13"
    greps: tuple[Grep, ...] = ()
    text: str = ""
    args: tuple[str, ...] = ()  # the tool's arguments in order, for the views that read them themselves
    #                             (ofproto/trace, conntrack, tcpdump)

    def key(self) -> str:
        """A stable file-system-friendly name for a capture of this command."""
        return "_".join(shlex.split(self.text)) if self.text else self.view.value.replace(" ", "_")


def _grep(words: list[str]) -> Grep:
    invert = ignore_case = False
    context = 0
    pattern: str | None = None
    i = 0
    while i < len(words):
        w = words[i]
        if w == "-v":
            invert = True
        elif w == "-i":
            ignore_case = True
        elif w in ("-C", "-A", "-B") and i + 1 < len(words):
            context = int(words[i + 1])
            i += 1
        elif w.startswith("-C") and w[2:].isdigit():
            context = int(w[2:])
        elif w in ("-e", "-F", "-E"):
            pass
        elif pattern is None:
            pattern = w
        i += 1
    if pattern is None:
        raise InvalidInput("grep: a pattern is required")
    return Grep(pattern, invert, ignore_case, context)


def parse_command(text: str) -> Command:
    """Read a command line such as ``ip netns exec qrouter-X iptables -t nat -S | grep DNAT``."""
    raw = text.strip()
    for prompt in ("$ ", "# "):
        if raw.startswith(prompt):
            raw = raw[len(prompt):]
    parts = [p.strip() for p in raw.split("|")]
    try:
        words = shlex.split(parts[0])
        greps = tuple(_grep(shlex.split(p)[1:]) for p in parts[1:] if p)
    except ValueError as exc:
        raise InvalidInput(f"cannot read command {text!r}: {exc}") from exc
    for p in parts[1:]:
        if p and not p.startswith("grep"):
            raise InvalidInput(f"only '| grep' filters are understood, not {p!r}")
    while words and words[0] in ("sudo", "command"):
        words = words[1:]
    netns = ""
    if words[:3] == ["ip", "netns", "exec"] and len(words) > 3:
        netns = words[3]
        words = words[4:]
    if not words:
        raise InvalidInput(f"no command in {text!r}")
    cmd = _classify(words, text)
    return Command(cmd.view, netns, cmd.table, cmd.target, cmd.options, greps, raw, cmd.args)


def _classify(words: list[str], text: str) -> Command:
    tool, args = words[0].rsplit("/", 1)[-1], words[1:]
    bad = InvalidInput(f"neutrino does not answer {text.strip()!r}")
    if tool == "ovs-vsctl":
        return _vsctl(args, bad)
    if tool == "ovs-ofctl":
        opts: set[str] = set()
        rest: list[str] = []
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("-O", "--protocols") and i + 1 < len(args):
                if "13" in args[i + 1] or "14" in args[i + 1] or "15" in args[i + 1]:
                    opts.add("OF13")
                i += 2
                continue
            if a.startswith("-O") and len(a) > 2 or a.startswith("--protocols="):
                opts.add("OF13")
            elif a in ("--no-stats", "--names", "--no-names", "--sort", "--rsort"):
                opts.add(a)
            else:
                rest.append(a)
            i += 1
        if len(rest) >= 2 and rest[0] == "dump-flows":
            filt = frozenset(opts | {f"filter:{r}" for r in rest[2:]})
            return Command(View.OFCTL_DUMP_FLOWS, target=rest[1], options=filt)
        if len(rest) == 2 and rest[0] == "show":
            return Command(View.OFCTL_SHOW, target=rest[1], options=frozenset(opts))
        if len(rest) in (2, 3) and rest[0] == "dump-ports":
            return Command(View.OFCTL_DUMP_PORTS, target=rest[1], table=rest[2] if len(rest) == 3 else "",
                           options=frozenset(opts))
        raise bad
    if tool == "ovs-appctl":
        at = [i for i, a in enumerate(args) if a == "ofproto/trace"]
        if at:  # what comes before it (-t TARGET, --timeout=N) says which daemon: here, the host's
            rest = args[at[0] + 1:]
            bridge = next((a for a in rest if not a.startswith("-")), "")
            return Command(View.APPCTL_OFPROTO_TRACE, target=bridge, args=tuple(rest))
        rest = [a for a in args if not a.startswith("-")]
        if len(rest) == 2 and rest[0] == "fdb/show":
            return Command(View.APPCTL_FDB_SHOW, target=rest[1])
        if rest == ["dpctl/show"]:
            return Command(View.DPCTL_SHOW)
        raise bad
    if tool == "ovs-dpctl" and args == ["show"]:
        return Command(View.DPCTL_SHOW)
    if tool in ("iptables-save", "iptables-legacy-save", "iptables-nft-save"):
        table = ""
        opts = set()
        i = 0
        while i < len(args):
            if args[i] in ("-t", "--table") and i + 1 < len(args):
                table = args[i + 1]
                i += 2
                continue
            if args[i] in ("-c", "--counters"):
                opts.add("-c")
            else:
                raise bad
            i += 1
        return Command(View.IPTABLES_SAVE, table=table, options=frozenset(opts))
    if tool in ("iptables", "iptables-legacy", "iptables-nft"):
        return _iptables(args, bad)
    if tool == "ip":
        return _ip(args, bad)
    if tool == "ifconfig":
        return Command(View.IFCONFIG, target=next((a for a in args if not a.startswith("-")), ""),
                       options=frozenset(a for a in args if a.startswith("-")))
    if tool == "route" and args in (["-n"], ["-n", "-e"]):
        return Command(View.ROUTE_N)
    if tool == "arp" and args[:1] == ["-n"]:
        return Command(View.ARP_N)
    if tool == "brctl" and args == ["show"]:
        return Command(View.BRCTL_SHOW)
    if tool == "ps":
        return Command(View.PS, options=frozenset(args))
    if tool == "sysctl":
        return Command(View.SYSCTL, target=" ".join(a for a in args if not a.startswith("-")),
                       options=frozenset(a for a in args if a.startswith("-")))
    if tool == "cat" and len(args) == 1:
        return Command(View.CAT, target=args[0])
    if tool == "conntrack" and any(a in ("-L", "--dump") for a in args):
        return Command(View.CONNTRACK_L, args=tuple(args))
    if tool == "tcpdump":
        return _tcpdump(args, bad)
    raise bad


def _tcpdump(args: list[str], bad: InvalidInput) -> Command:
    """``tcpdump -i DEV [flags] [EXPRESSION]``: the device is the target, the rest kept in order."""
    device = ""
    for i, a in enumerate(args):
        if (a == "--interface" or a.startswith("-") and not a.startswith("--") and a.endswith("i")) \
                and i + 1 < len(args):  # -i DEV, -ni DEV
            device = args[i + 1]
        elif a.startswith("-i") and len(a) > 2 and not a.startswith("--"):
            device = a[2:]
    if not device:
        raise bad
    return Command(View.TCPDUMP, target=device, args=tuple(args))


def _vsctl(args: list[str], bad: InvalidInput) -> Command:
    """``ovs-vsctl show``, or ``ovs-vsctl [--columns=A,B] list TABLE [RECORD]`` (``table`` is the OVSDB
    table, ``target`` the record, the columns an option ``columns:A,B``)."""
    if args == ["show"]:
        return Command(View.VSCTL_SHOW)
    if args == ["list-br"]:
        return Command(View.VSCTL_LIST_BR)
    if len(args) == 2 and args[0] == "list-ports":
        return Command(View.VSCTL_LIST_PORTS, target=args[1])
    columns = [a.split("=", 1)[1] for a in args if a.startswith("--columns=")]
    rest = [a for a in args if not a.startswith("--columns=")]
    if len(columns) <= 1 and len(rest) in (2, 3) and rest[0] == "list":
        return Command(View.VSCTL_LIST, table=rest[1], target=rest[2] if len(rest) == 3 else "",
                       options=frozenset(f"columns:{c}" for c in columns))
    raise bad


def _iptables(args: list[str], bad: InvalidInput) -> Command:
    table = "filter"
    opts: set[str] = set()
    view: View | None = None
    chain = ""
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-t", "--table") and i + 1 < len(args):
            table = args[i + 1]
            i += 2
            continue
        if a in ("-S", "--list-rules"):
            view = View.IPTABLES_S
        elif a in ("-L", "--list"):
            view = View.IPTABLES_L
        elif a.startswith("-") and not a.startswith("--") and len(a) > 2:
            # bundled short flags: -nvL, -vnL, -nL, -L -n -v, -xvnL
            for ch in a[1:]:
                if ch == "L":
                    view = View.IPTABLES_L
                elif ch == "S":
                    view = View.IPTABLES_S
                elif ch in "nvx":
                    opts.add("-" + ch)
                elif ch == "t" and i + 1 < len(args):
                    table = args[i + 1]
                    i += 1
                else:
                    raise bad
        elif a in ("-n", "-v", "-x", "--line-numbers"):
            opts.add(a)
        elif not a.startswith("-") and not chain:
            chain = a
        else:
            raise bad
        i += 1
    if view is None:
        raise bad
    return Command(view, table=table, target=chain, options=frozenset(opts))


_IP_OBJECTS = {
    "a": View.IP_ADDR, "ad": View.IP_ADDR, "addr": View.IP_ADDR, "address": View.IP_ADDR,
    "l": View.IP_LINK, "li": View.IP_LINK, "link": View.IP_LINK,
    "r": View.IP_ROUTE, "ro": View.IP_ROUTE, "route": View.IP_ROUTE,
    "ru": View.IP_RULE, "rule": View.IP_RULE,
    "n": View.IP_NEIGH, "neigh": View.IP_NEIGH, "neighbor": View.IP_NEIGH, "neighbour": View.IP_NEIGH,
    "netns": View.IP_NETNS,
}


def _ip(args: list[str], bad: InvalidInput) -> Command:
    opts: set[str] = set()
    while args and args[0].startswith("-"):
        flag = args[0]
        if flag in ("-o", "-oneline"):
            opts.add("-o")
        elif flag in ("-d", "-details"):
            opts.add("-d")
        elif flag in ("-4", "-6"):
            opts.add(flag)
        elif flag in ("-br", "-brief"):
            opts.add("-br")
        elif flag in ("-s", "-stats", "-statistics"):
            opts.add("-s")
        else:
            raise bad
        args = args[1:]
    if not args or args[0] not in _IP_OBJECTS:
        raise bad
    view = _IP_OBJECTS[args[0]]
    rest = args[1:]
    if rest and rest[0] in ("show", "list", "ls", "sh", "lst"):
        rest = rest[1:]
    target = ""
    table = ""
    i = 0
    while i < len(rest):
        if rest[i] == "dev" and i + 1 < len(rest):
            target = rest[i + 1]
            i += 2
            continue
        if rest[i] == "table" and i + 1 < len(rest):
            table = rest[i + 1]
            i += 2
            continue
        if view in (View.IP_ADDR, View.IP_LINK) and not target:
            target = rest[i]
        else:
            raise bad
        i += 1
    if view is View.IP_NETNS and target:
        raise bad
    return Command(view, table=table, target=target, options=frozenset(opts))
