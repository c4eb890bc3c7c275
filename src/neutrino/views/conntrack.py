"""``conntrack -L [-p PROTO] [-s ADDR] [-d ADDR] [-w ZONE]``: a namespace's connection table, as
conntrack-tools 1.4 prints it, from the simulator's :class:`~neutrino.sim.conntrack.Conntrack`.

One line per connection (``icmp     1 29 src=... dst=... type=8 code=0 id=... src=... ... mark=0
use=1``) on stdout, then ``conntrack v1.4.7 (conntrack-tools): N flow entries have been shown.`` on
stderr. The simulator has no clock: the timeout column shows what the kernel shows a second after
the last packet (the protocol's timeout for the connection's state, less one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from neutrino.errors import InvalidInput
from neutrino.sim.conntrack import Connection, TcpState

__all__ = ["ConntrackQuery", "parse_conntrack_args", "conntrack_list", "SUMMARY"]

SUMMARY = "conntrack v1.4.7 (conntrack-tools): {n} flow entries have been shown.\n"

_PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "sctp": 132, "1": 1, "6": 6, "17": 17, "47": 47}

# the kernel's default timeouts, in seconds (nf_conntrack_*_timeout*)
_TCP_TIMEOUTS = {TcpState.SYN_SENT: 120, TcpState.SYN_RECV: 60, TcpState.ESTABLISHED: 432000,
                 TcpState.FIN_WAIT: 120, TcpState.CLOSE_WAIT: 60, TcpState.LAST_ACK: 30,
                 TcpState.TIME_WAIT: 120, TcpState.CLOSE: 10, TcpState.SYN_SENT2: 120, TcpState.NONE: 120}
_TIMEOUTS = {1: 30, 17: 30, 47: 30}
_GENERIC_TIMEOUT = 600


@dataclass(frozen=True, slots=True)
class ConntrackQuery:
    proto: int | None = None
    src: IPv4Address | None = None
    dst: IPv4Address | None = None
    zone: int | None = None


def parse_conntrack_args(args: Sequence[str]) -> ConntrackQuery:
    """The options of ``conntrack -L`` neutrino answers (``-L``/``--dump`` itself included)."""
    proto: int | None = None
    src = dst = None
    zone: int | None = None
    listed = False
    i = 0

    def value() -> str:
        if i + 1 >= len(args):
            raise InvalidInput(f"conntrack v1.4.7 (conntrack-tools): option `{args[i]}' requires an argument")
        return args[i + 1]

    while i < len(args):
        a = args[i]
        if a in ("-L", "--dump"):
            listed = True
        elif a in ("-p", "--proto", "--protonum"):
            name = value().lower()
            if name not in _PROTOCOLS:
                raise InvalidInput(f"conntrack v1.4.7 (conntrack-tools): proto `{name}' not found")
            proto = _PROTOCOLS[name]
            i += 1
        elif a in ("-s", "--src", "--orig-src", "-d", "--dst", "--orig-dst"):
            try:
                addr = IPv4Address(value())
            except ValueError:
                raise InvalidInput(f"conntrack v1.4.7 (conntrack-tools): Bad parameter `{args[i + 1]}'") from None
            if a in ("-s", "--src", "--orig-src"):
                src = addr
            else:
                dst = addr
            i += 1
        elif a in ("-w", "--zone"):
            try:
                zone = int(value(), 0)
            except ValueError:
                raise InvalidInput(f"conntrack v1.4.7 (conntrack-tools): Bad parameter `{args[i + 1]}'") from None
            i += 1
        elif a in ("-f", "--family"):
            if value().lower() not in ("ipv4", "inet"):
                raise InvalidInput("conntrack: only the IPv4 table is simulated (-f ipv4)")
            i += 1
        elif a in ("-n", "-o", "--output") or a.startswith("--output="):
            if a in ("-o", "--output"):
                raise InvalidInput("conntrack: -o (output formats) is not answered: give plain conntrack -L")
        else:
            raise InvalidInput(f"conntrack v1.4.7 (conntrack-tools): unknown option `{a}'")
        i += 1
    if not listed:
        raise InvalidInput("neutrino answers conntrack -L (--dump) only")
    return ConntrackQuery(proto, src, dst, zone)


def _timeout(c: Connection) -> int:
    if c.original.proto == 6:
        return _TCP_TIMEOUTS.get(c.tcp_state, 120) - 1
    return _TIMEOUTS.get(c.original.proto, _GENERIC_TIMEOUT) - 1


def _assured(c: Connection) -> bool:
    """TCP connections become ASSURED once established; ICMP and UDP exchanges as short as a
    probe's never do (UDP needs a stream lasting past two seconds)."""
    return c.original.proto == 6 and c.seen_reply and c.tcp_state in (
        TcpState.ESTABLISHED, TcpState.FIN_WAIT, TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.TIME_WAIT,
        TcpState.CLOSE)


_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 132: "sctp"}


def format_entry(c: Connection) -> str:
    """One line of ``conntrack -L``."""
    proto = c.original.proto
    parts = [f"{_NAMES.get(proto, 'unknown'):<8} {proto} {_timeout(c)}"]
    if proto == 6:
        parts.append(c.tcp_state.value)
    parts.append(c.original.text())
    if not c.seen_reply:
        parts.append("[UNREPLIED]")
    parts.append(c.reply.text())
    if _assured(c):
        parts.append("[ASSURED]")
    parts.append(f"mark={c.mark}")
    if c.zone:
        parts.append(f"zone={c.zone}")
    parts.append("use=1")
    return " ".join(parts)


def conntrack_list(conns: Iterable[Connection], q: ConntrackQuery) -> tuple[str, str]:
    """(stdout, stderr) of ``conntrack -L`` with the query's filters."""
    shown = [c for c in conns
             if (q.proto is None or c.original.proto == q.proto)
             and (q.src is None or c.original.src == q.src)
             and (q.dst is None or c.original.dst == q.dst)
             and (q.zone is None or c.zone == q.zone)]
    return "".join(format_entry(c) + "\n" for c in shown), SUMMARY.format(n=len(shown))
