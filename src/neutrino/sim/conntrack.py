"""The kernel's connection tracker: connections keyed by (zone, tuple), their states and NAT bindings.

A :class:`Conntrack` holds confirmed :class:`Connection` s indexed by both their original and their
reply tuple, each within a conntrack zone (``-j CT --zone N``). :meth:`Conntrack.lookup` classifies
one packet as the kernel's ``nf_conntrack_in`` does and returns a :class:`CtRef` (the connection,
the packet's direction and its state); a new connection stays *unconfirmed* (not in the table)
until :meth:`Conntrack.confirm`, which netfilter calls when the packet leaves the last hook
(POSTROUTING or INPUT) accepted, so a packet dropped on the way leaves no entry, as in Linux.

States follow Linux:

- NEW: the first packet of a connection, and further original-direction packets until a reply
  was seen; ESTABLISHED: every reply-direction packet, and original-direction packets after one;
  RELATED: an ICMP error quoting a packet of a known connection; UNTRACKED: ``--notrack``;
  INVALID: the packet has no connection (see below).
- TCP runs Linux's state table (``tcp_conntracks``). A connection starts with a SYN. A non-SYN
  packet without an entry follows ``nf_conntrack_tcp_loose``: Linux's default (1) *picks up* a
  plain ACK mid-stream as a NEW connection, and only FIN, RST, SYN/ACK or flag-less segments
  without an entry are INVALID; ``Conntrack(tcp_loose=False)`` makes a stray ACK INVALID too, the
  behaviour Neutron's "Drop packets that appear related to an existing connection (e.g. TCP
  ACK/FIN)" rule comment describes. Invalid flag combinations (SYN+FIN, …) are always INVALID.
- ICMP: echo/timestamp/info/address-mask requests start connections; a reply without one and
  other ICMP messages are INVALID; errors (unreachable, time exceeded, …) are RELATED to the
  connection whose packet they quote, INVALID otherwise.
- UDP and other protocols: NEW, then ESTABLISHED once a reply was seen.

There are no timers: an entry lives until a TCP RST or a new SYN on a closed connection, or until
:meth:`Conntrack.clear`. Ids are given in creation order, so runs are deterministic.

>>> from ipaddress import IPv4Address as A
>>> from neutrino.sim.packets import IPv4, UDP
>>> ct = Conntrack()
>>> q = IPv4(src=A("10.0.0.5"), dst=A("10.0.0.1"), payload=UDP(sport=5353, dport=53))
>>> ref = ct.lookup(q, zone=0)
>>> ref.state, ct.confirm(ref), len(ct)
(<CtState.NEW: 'NEW'>, True, 1)
>>> r = IPv4(src=A("10.0.0.1"), dst=A("10.0.0.5"), payload=UDP(sport=53, dport=5353))
>>> ct.lookup(r, zone=0).state, ct.lookup(r, zone=1).state
(<CtState.ESTABLISHED: 'ESTABLISHED'>, <CtState.NEW: 'NEW'>)
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from neutrino.sim.packets import ICMP, TCP, UDP, HashKept, IPv4, TCPFlag


class CtState(enum.Enum):
    NEW = "NEW"
    ESTABLISHED = "ESTABLISHED"
    RELATED = "RELATED"
    INVALID = "INVALID"
    UNTRACKED = "UNTRACKED"


class Direction(enum.Enum):
    ORIGINAL = "original"
    REPLY = "reply"

    @property
    def other(self) -> Direction:
        return Direction.REPLY if self is Direction.ORIGINAL else Direction.ORIGINAL


class Manip(enum.Enum):
    """Which end a NAT binding rewrites: SRC (SNAT, MASQUERADE) or DST (DNAT, REDIRECT)."""

    SRC = "src"
    DST = "dst"


class TcpState(enum.Enum):
    NONE = "NONE"
    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT = "FIN_WAIT"
    CLOSE_WAIT = "CLOSE_WAIT"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"
    CLOSE = "CLOSE"
    SYN_SENT2 = "SYN_SENT2"


#: ICMP query types and their answers (the kernel's ``invmap``).
ICMP_INVERSE = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
#: ICMP types that start a connection.
ICMP_NEW = frozenset({8, 13, 15, 17})
#: ICMP errors, which quote the offending datagram.
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})


@dataclass(frozen=True, slots=True)
class Tuple(HashKept):
    """A conntrack tuple. TCP/UDP: ports. ICMP: ``sport`` is the query id and ``dport`` is
    ``type << 8 | code``. Other protocols: ports 0."""

    proto: int
    src: IPv4Address
    dst: IPv4Address
    sport: int = 0
    dport: int = 0

    def __hash__(self) -> int:
        """The dataclass's hash (of the fields), computed once per tuple: a connection's tuples are
        hashed on every packet of it (netfilter's remembered chain runs are keyed by them)."""
        try:
            return self._hash
        except AttributeError:
            h = hash((self.proto, self.src, self.dst, self.sport, self.dport))
            object.__setattr__(self, "_hash", h)
            return h

    def inverse(self) -> Tuple:
        if self.proto == 1:
            icmp_type, code = self.dport >> 8, self.dport & 0xFF
            return Tuple(1, self.dst, self.src, self.sport, ICMP_INVERSE.get(icmp_type, icmp_type) << 8 | code)
        return Tuple(self.proto, self.dst, self.src, self.dport, self.sport)

    def text(self) -> str:
        """As ``conntrack -L`` prints one direction (formatted once per tuple object: a tuple is
        immutable, and a connection's is read on every packet of it)."""
        got = _TUPLE_TEXT.get(id(self))
        if got is not None and got[0] is self:
            return got[1]
        text = self._text()
        if len(_TUPLE_TEXT) >= 4096:
            _TUPLE_TEXT.clear()
        _TUPLE_TEXT[id(self)] = (self, text)
        return text

    def _text(self) -> str:
        if self.proto == 1:
            return f"src={self.src} dst={self.dst} type={self.dport >> 8} code={self.dport & 0xFF} id={self.sport}"
        if self.proto in (6, 17, 132, 33, 136):
            return f"src={self.src} dst={self.dst} sport={self.sport} dport={self.dport}"
        return f"src={self.src} dst={self.dst}"


_TUPLE_TEXT: dict[int, tuple[Tuple, str]] = {}
"""The tuples formatted last, by identity; an entry holds its tuple, so the id stays that tuple's."""


def packet_tuple(pkt: IPv4) -> Tuple:
    """The tuple of ``pkt`` as sent (original-direction view of itself)."""
    l4 = pkt.payload
    if isinstance(l4, TCP | UDP) and pkt.proto in (6, 17):
        return Tuple(pkt.proto, pkt.src, pkt.dst, l4.sport, l4.dport)
    if isinstance(l4, ICMP) and pkt.proto == 1:
        return Tuple(1, pkt.src, pkt.dst, l4.id if l4.type in ICMP_INVERSE else 0, l4.type << 8 | l4.code)
    return Tuple(pkt.proto, pkt.src, pkt.dst)


_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre"}


@dataclass(slots=True)
class Connection:
    """One tracked connection (mutable: its TCP state, marks and NAT change as packets pass)."""

    id: int
    zone: int
    original: Tuple
    reply: Tuple
    tcp_state: TcpState = TcpState.NONE
    seen_reply: bool = False
    confirmed: bool = False
    mark: int = 0
    label: int = 0
    nat_done: set[Manip] = field(default_factory=set)

    def tuple(self, direction: Direction) -> Tuple:
        return self.original if direction is Direction.ORIGINAL else self.reply

    # Both compare the reply tuple with the original's inverse (:meth:`Tuple.inverse`) field by
    # field, without making it: its source is the original's destination and its destination the
    # original's source; its ports are the original's swapped, but for ICMP, whose id (``sport``)
    # stays. Netfilter asks one of them for every packet of a connection (:func:`_translate`).

    @property
    def snat(self) -> bool:
        """The kernel's IPS_SRC_NAT: the reply goes to another address (or port) than we came from."""
        o, r = self.original, self.reply
        return (r.dst, r.dport) != (o.src, o.sport) if o.proto != 1 else (r.dst, r.sport) != (o.src, o.sport)

    @property
    def dnat(self) -> bool:
        """The kernel's IPS_DST_NAT: the reply comes from another address (or port) than we sent to."""
        o, r = self.original, self.reply
        if o.proto == 1:
            return r.src != o.dst
        return (r.src, r.sport) != (o.dst, o.dport)

    def text(self) -> str:
        """One ``conntrack -L`` line (without timeout and counters)."""
        name = _PROTO_NAMES.get(self.original.proto, "unknown")
        parts = [f"{name:<8}{self.original.proto}"]
        if self.original.proto == 6:
            parts.append(self.tcp_state.value)
        parts.append(self.original.text())
        if not self.seen_reply:
            parts.append("[UNREPLIED]")
        parts.append(self.reply.text())
        if self.mark:
            parts.append(f"mark={self.mark}")
        if self.zone:
            parts.append(f"zone={self.zone}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class CtRef:
    """What conntrack attached to a packet: its connection (None when INVALID or UNTRACKED), the
    packet's direction in it, the state netfilter matches on, and the zone."""

    conn: Connection | None
    direction: Direction
    state: CtState
    zone: int = 0


# The kernel's TCP state table (nf_conntrack_proto_tcp.c): [direction][flag class][state].
_S = TcpState
_IV, _IG = "invalid", "ignore"
_COLUMNS = (_S.NONE, _S.SYN_SENT, _S.SYN_RECV, _S.ESTABLISHED, _S.FIN_WAIT, _S.CLOSE_WAIT, _S.LAST_ACK,
            _S.TIME_WAIT, _S.CLOSE, _S.SYN_SENT2)
_ROW = tuple[_S | str, ...]
_TCP_TABLE: dict[Direction, dict[str, _ROW]] = {
    Direction.ORIGINAL: {
        "syn": (_S.SYN_SENT, _S.SYN_SENT, _IG, _IG, _IG, _IG, _IG, _S.SYN_SENT, _S.SYN_SENT, _S.SYN_SENT2),
        "synack": (_IV, _IV, _S.SYN_RECV, _IV, _IV, _IV, _IV, _IV, _IV, _S.SYN_RECV),
        "fin": (_IV, _IV, _S.FIN_WAIT, _S.FIN_WAIT, _S.LAST_ACK, _S.LAST_ACK, _S.LAST_ACK, _S.TIME_WAIT,
                _S.CLOSE, _IV),
        "ack": (_S.ESTABLISHED, _IV, _S.ESTABLISHED, _S.ESTABLISHED, _S.CLOSE_WAIT, _S.CLOSE_WAIT,
                _S.TIME_WAIT, _S.TIME_WAIT, _S.CLOSE, _IV),
        "rst": (_IV, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE),
        "none": (_IV,) * 10,
    },
    Direction.REPLY: {
        "syn": (_IV, _S.SYN_SENT2, _IV, _IV, _IV, _IV, _IV, _S.SYN_SENT, _IV, _S.SYN_SENT2),
        "synack": (_IV, _S.SYN_RECV, _IG, _IG, _IG, _IG, _IG, _IG, _IG, _S.SYN_RECV),
        "fin": (_IV, _IV, _S.FIN_WAIT, _S.FIN_WAIT, _S.LAST_ACK, _S.LAST_ACK, _S.LAST_ACK, _S.TIME_WAIT,
                _S.CLOSE, _IV),
        "ack": (_IV, _IG, _S.SYN_RECV, _S.ESTABLISHED, _S.CLOSE_WAIT, _S.CLOSE_WAIT, _S.TIME_WAIT,
                _S.TIME_WAIT, _S.CLOSE, _IG),
        "rst": (_IV, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE, _S.CLOSE),
        "none": (_IV,) * 10,
    },
}

F = TCPFlag
#: Flag combinations the kernel accepts (tcp_valid_flags), ECE/CWR aside.
_VALID_FLAGS = frozenset(int(f) for f in (
    F.SYN, F.SYN | F.URG, F.SYN | F.ACK, F.RST, F.RST | F.ACK, F.RST | F.ACK | F.PSH, F.FIN | F.ACK,
    F.FIN | F.ACK | F.URG, F.ACK, F.ACK | F.URG, F.ACK | F.PSH, F.ACK | F.PSH | F.URG,
    F.FIN | F.ACK | F.PSH, F.FIN | F.ACK | F.PSH | F.URG))


def tcp_flag_class(flags: int) -> str:
    """The kernel's ``get_conntrack_index``: rst, synack, syn, fin, ack or none."""
    if flags & F.RST:
        return "rst"
    if flags & F.SYN:
        return "synack" if flags & F.ACK else "syn"
    if flags & F.FIN:
        return "fin"
    return "ack" if flags & F.ACK else "none"


class Conntrack:
    """The connection table of one network namespace (all zones)."""

    def __init__(self, *, tcp_loose: bool = True) -> None:
        self.tcp_loose = tcp_loose
        self._index: dict[tuple[int, Tuple], tuple[Connection, Direction]] = {}
        self._conns: dict[int, Connection] = {}
        self._next_id = 1

    # ---------------------------------------------------------------------------- the table

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self) -> Iterator[Connection]:
        return iter(self._conns.values())

    def size(self) -> tuple[int, int]:
        """The number of connections and the next id: one of them changes whenever a connection
        is made (confirmed or not), confirmed or removed."""
        return len(self._conns), self._next_id

    def entries(self) -> tuple[Connection, ...]:
        return tuple(self._conns.values())

    def find(self, tup: Tuple, zone: int = 0) -> tuple[Connection, Direction] | None:
        """The confirmed connection with ``tup`` as its original or reply tuple, and which."""
        return self._index.get((zone, tup))

    def clear(self) -> None:
        self._index.clear()
        self._conns.clear()

    def clone(self) -> Conntrack:
        """An independent copy (connections copied, ids kept)."""
        other = Conntrack(tcp_loose=self.tcp_loose)
        for conn in self._conns.values():
            other._insert(replace(conn, nat_done=set(conn.nat_done)))
        other._next_id = self._next_id
        return other

    def rezone(self, moves: dict[int, int | None]) -> None:
        """Move connections between zones (old -> new; None drops them): a host's ports were
        renumbered, and each port's zone with it."""
        conns = list(self._conns.values())
        self.clear()
        for conn in conns:
            zone = moves.get(conn.zone, conn.zone)
            if zone is None:
                continue
            conn.zone = zone
            if (zone, conn.original) not in self._index and (zone, conn.reply) not in self._index:
                self._insert(conn)

    def forget(self, addresses: Collection[IPv4Address]) -> None:
        """Drop the connections to or from ``addresses`` (hosts that are gone)."""
        for conn in [c for c in self._conns.values()
                     if {c.original.src, c.original.dst, c.reply.src, c.reply.dst} & set(addresses)]:
            self.remove(conn)

    def dump(self) -> str:
        """``conntrack -L``-like lines, in creation order."""
        return "".join(c.text() + "\n" for c in self._conns.values())

    def _insert(self, conn: Connection) -> None:
        conn.confirmed = True
        self._conns[conn.id] = conn
        self._index[(conn.zone, conn.original)] = (conn, Direction.ORIGINAL)
        self._index[(conn.zone, conn.reply)] = (conn, Direction.REPLY)

    def remove(self, conn: Connection) -> None:
        if self._conns.pop(conn.id, None) is None:
            return
        for tup in (conn.original, conn.reply):
            if self._index.get((conn.zone, tup), (None,))[0] is conn:
                del self._index[(conn.zone, tup)]

    def confirm(self, ref: CtRef) -> bool:
        """Put the packet's new connection into the table (the kernel's ``__nf_conntrack_confirm``);
        True when it was added. A connection already confirmed, or none, is left alone."""
        conn = ref.conn
        if conn is None or conn.confirmed or ref.direction is Direction.REPLY:
            return False  # a packet in the reply direction confirms nothing (an ICMP error about a new one)
        if (conn.zone, conn.original) in self._index or (conn.zone, conn.reply) in self._index:
            return False  # lost a race with an identical connection: the kernel drops the clash
        self._insert(conn)
        return True

    # ------------------------------------------------------------------------------- lookup

    def lookup(self, pkt: IPv4, zone: int = 0) -> CtRef:
        """Classify ``pkt`` in ``zone`` and update the connection's TCP state and reply flag."""
        icmp = pkt.payload if isinstance(pkt.payload, ICMP) and pkt.proto == 1 else None
        if icmp is not None and icmp.type in ICMP_ERRORS:
            return self._related(icmp, zone)
        tup = packet_tuple(pkt)
        found = self._index.get((zone, tup))
        tcp = pkt.payload if isinstance(pkt.payload, TCP) and pkt.proto == 6 else None
        if tcp is not None and int(tcp.flags) & 0x3F not in _VALID_FLAGS:
            return CtRef(None, Direction.ORIGINAL, CtState.INVALID, zone)
        if found is not None:
            conn, direction = found
            if tcp is not None:
                cls = tcp_flag_class(int(tcp.flags))
                if direction is Direction.ORIGINAL and cls == "syn" and conn.tcp_state in (
                        TcpState.TIME_WAIT, TcpState.CLOSE):
                    self.remove(conn)  # a new connection reuses the tuple
                    return self._new(pkt, tup, zone, tcp)
                new = _TCP_TABLE[direction][cls][_COLUMNS.index(conn.tcp_state)]
                if new == _IV:
                    return CtRef(None, direction, CtState.INVALID, zone)
                if isinstance(new, TcpState):
                    conn.tcp_state = new
            if direction is Direction.REPLY:
                conn.seen_reply = True
                return CtRef(conn, direction, CtState.ESTABLISHED, zone)
            return CtRef(conn, direction, CtState.ESTABLISHED if conn.seen_reply else CtState.NEW, zone)
        if icmp is not None and icmp.type not in ICMP_NEW:
            return CtRef(None, Direction.ORIGINAL, CtState.INVALID, zone)
        return self._new(pkt, tup, zone, tcp)

    def _new(self, pkt: IPv4, tup: Tuple, zone: int, tcp: TCP | None) -> CtRef:
        state = TcpState.NONE
        if tcp is not None:
            cls = tcp_flag_class(int(tcp.flags))
            if cls == "syn":
                state = TcpState.SYN_SENT
            elif cls == "ack" and self.tcp_loose:
                state = TcpState.ESTABLISHED  # picked up mid-stream (nf_conntrack_tcp_loose=1)
            else:
                return CtRef(None, Direction.ORIGINAL, CtState.INVALID, zone)
        conn = Connection(self._next_id, zone, tup, tup.inverse(), tcp_state=state)
        self._next_id += 1
        return CtRef(conn, Direction.ORIGINAL, CtState.NEW, zone)

    def _related(self, err: ICMP, zone: int) -> CtRef:
        inner = err.payload
        if not isinstance(inner, IPv4):
            return CtRef(None, Direction.ORIGINAL, CtState.INVALID, zone)
        found = self._index.get((zone, packet_tuple(inner).inverse()))
        if found is None:
            return CtRef(None, Direction.ORIGINAL, CtState.INVALID, zone)
        conn, direction = found
        return CtRef(conn, direction, CtState.RELATED, zone)

    # ---------------------------------------------------------------------------------- NAT

    def bind(self, conn: Connection, manip: Manip, addr: IPv4Address, port: int | None = None,
             ports: tuple[int, int] | None = None) -> None:
        """Set ``conn``'s NAT binding for ``manip`` (once, on its first packet): the reply tuple
        changes so replies are un-NATed automatically. A source binding that would clash with
        another connection's tuple gets the next free port (TCP/UDP) or ICMP id above its own,
        deterministically."""
        r = conn.reply
        if manip is Manip.DST:
            conn.reply = replace(r, src=addr, sport=r.sport if port is None or r.proto == 1 else port)
        else:
            cand = replace(r, dst=addr, dport=r.dport if port is None or r.proto == 1 else port)
            if r.proto in (1, 6, 17) and (conn.zone, cand) in self._index:
                lo, hi = ports or ((0, 65535) if r.proto == 1 else (1024, 65535))
                was = cand.sport if r.proto == 1 else cand.dport
                start = was + 1 if lo <= was < hi else lo  # the next one up, as a second ping's id would be
                for p in (*range(start, hi + 1), *range(lo, start)):
                    trial = replace(cand, sport=p) if r.proto == 1 else replace(cand, dport=p)
                    if (conn.zone, trial) not in self._index:
                        cand = trial
                        break
            conn.reply = cand
        conn.nat_done.add(manip)
