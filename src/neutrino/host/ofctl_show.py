"""``ovs-ofctl show BRIDGE``: the features reply (dpid, tables, buffers, capabilities, actions), the
OpenFlow ports and the switch-config reply; parsed and printed as Open vSwitch prints them.

Both the OpenFlow 1.0 layout (ports inside the features reply; old OVS upper-case action names or
3.x lower-case ones) and the 1.3 layout (a separate ``OFPST_PORT_DESC reply`` section) round-trip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from neutrino.errors import ParseError
from neutrino.host.openflow_fields import Mac, ReservedPort

__all__ = ["OfctlShow", "OfPort", "parse_ofctl_show", "format_ofctl_show", "format_dump_ports"]


@dataclass(frozen=True, slots=True)
class OfPort:
    """One OpenFlow port: ``number`` (or ``LOCAL``), name, hardware address, flag words and speeds."""

    number: int | ReservedPort
    name: str
    addr: Mac
    config: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    current: tuple[str, ...] = ()
    advertised: tuple[str, ...] = ()
    supported: tuple[str, ...] = ()
    peer: tuple[str, ...] = ()
    speed_now_mbps: int = 0
    speed_max_mbps: int = 0


@dataclass(frozen=True, slots=True)
class OfctlShow:
    """The whole ``ovs-ofctl show`` output. Reply headers (``OFPT_FEATURES_REPLY (xid=0x2)``) are kept
    verbatim, without the trailing colon."""

    dpid: int
    n_tables: int
    n_buffers: int
    capabilities: tuple[str, ...]
    actions: tuple[str, ...] | None = None
    ports: tuple[OfPort, ...] = ()
    features_header: str = "OFPT_FEATURES_REPLY (xid=0x2)"
    port_desc_header: str | None = None
    config_header: str = "OFPT_GET_CONFIG_REPLY (xid=0x4)"
    frags: str = "normal"
    miss_send_len: int = 0

    def port(self, name: str) -> OfPort | None:
        return next((p for p in self.ports if p.name == name), None)


# patterns are compiled where used (re keeps them): importing the module compiles none
_FEATURES = r"(OFPT_FEATURES_REPLY.*?): dpid:([0-9a-fA-F]{16})"
_TABLES = r"n_tables:(\d+), n_buffers:(\d+)"
_PORT = r" (\d+|LOCAL)\((.*)\): addr:(\S+)"
_SPEED = r" {5}speed: (\d+) Mbps now, (\d+) Mbps max"
_CONFIG = r"(OFPT_GET_CONFIG_REPLY.*?): frags=(\S+) miss_send_len=(\d+)"
_FEATURE_LINES = ("config", "state", "current", "advertised", "supported", "peer")


def _flags(text: str) -> tuple[str, ...]:
    words = tuple(text.split())
    return () if words == ("0",) else words


def parse_ofctl_show(text: str, source: str = "<string>") -> OfctlShow:
    """Parse ``ovs-ofctl show`` output. Raises :class:`ParseError` naming the line and what was expected."""
    lines = [(n, raw.rstrip()) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    pos = 0

    def fail(expected: str) -> ParseError:
        n, line = lines[pos] if pos < len(lines) else (len(text.splitlines()), "")
        return ParseError(expected, text=line, line=n, source=source)

    def take(rx: re.Pattern[str], expected: str) -> re.Match[str]:
        nonlocal pos
        if pos >= len(lines):
            raise fail(expected)
        m = rx.fullmatch(lines[pos][1])
        if not m:
            raise fail(expected)
        pos += 1
        return m

    m = take(re.compile(_FEATURES), "'OFPT_FEATURES_REPLY (…): dpid:<16 hex digits>'")
    header, dpid = m.group(1), int(m.group(2), 16)
    m = take(re.compile(_TABLES), "'n_tables:N, n_buffers:N'")
    n_tables, n_buffers = int(m.group(1)), int(m.group(2))
    m = take(re.compile(r"capabilities:(.*)"), "'capabilities: …'")
    caps = tuple(m.group(1).split())
    actions = None
    if pos < len(lines) and lines[pos][1].startswith("actions:"):
        actions = tuple(lines[pos][1][len("actions:"):].split())
        pos += 1
    port_desc = None
    if pos < len(lines) and lines[pos][1].startswith("OFPST_PORT_DESC"):
        port_desc = lines[pos][1].rstrip(":")
        pos += 1
    ports: list[OfPort] = []
    while pos < len(lines) and lines[pos][1].startswith(" ") and not lines[pos][1].startswith("  "):
        m = take(re.compile(_PORT), "a port line ' N(name): addr:xx:xx:xx:xx:xx:xx'")
        number: int | ReservedPort = ReservedPort.LOCAL if m.group(1) == "LOCAL" else int(m.group(1))
        try:
            addr = Mac.parse(m.group(3))
        except ValueError:
            pos -= 1
            raise fail("a MAC address after 'addr:'") from None
        feats: dict[str, tuple[str, ...]] = {}
        while pos < len(lines):
            fm = re.fullmatch(r" {5}(config|state|current|advertised|supported|peer): *(.*)", lines[pos][1])
            if not fm:
                break
            feats[fm.group(1)] = _flags(fm.group(2))
            pos += 1
        sm = take(re.compile(_SPEED), "'     speed: N Mbps now, N Mbps max'")
        ports.append(OfPort(number, m.group(2), addr, feats.get("config", ()), feats.get("state", ()),
                            feats.get("current", ()), feats.get("advertised", ()), feats.get("supported", ()),
                            feats.get("peer", ()), int(sm.group(1)), int(sm.group(2))))
    m = take(re.compile(_CONFIG), "'OFPT_GET_CONFIG_REPLY (…): frags=… miss_send_len=N' or a port line")
    if pos < len(lines):
        raise fail("the end of the output")
    return OfctlShow(dpid=dpid, n_tables=n_tables, n_buffers=n_buffers, capabilities=caps, actions=actions,
                     ports=tuple(ports), features_header=header, port_desc_header=port_desc,
                     config_header=m.group(1), frags=m.group(2), miss_send_len=int(m.group(3)))


def format_ofctl_show(show: OfctlShow) -> str:
    """``ovs-ofctl show`` text, as OVS prints it."""
    out = [f"{show.features_header}: dpid:{show.dpid:016x}",
           f"n_tables:{show.n_tables}, n_buffers:{show.n_buffers}",
           "capabilities: " + " ".join(show.capabilities)]
    if show.actions is not None:
        out.append("actions: " + " ".join(show.actions))
    if show.port_desc_header is not None:
        out.append(show.port_desc_header + ":")
    for p in show.ports:
        num = p.number.value if isinstance(p.number, ReservedPort) else str(p.number)
        out.append(f" {num}({p.name}): addr:{p.addr}")
        out.append("     config:     " + (" ".join(p.config) or "0"))
        out.append("     state:      " + (" ".join(p.state) or "0"))
        for label, words in (("current:    ", p.current), ("advertised: ", p.advertised),
                             ("supported:  ", p.supported), ("peer:       ", p.peer)):
            if words:
                out.append(f"     {label}" + " ".join(words))
        out.append(f"     speed: {p.speed_now_mbps} Mbps now, {p.speed_max_mbps} Mbps max")
    out.append(f"{show.config_header}: frags={show.frags} miss_send_len={show.miss_send_len}")
    return "\n".join(out) + "\n"


def format_dump_ports(ports: tuple[OfPort, ...], *, partial_stats: frozenset[str] = frozenset()) -> str:
    """``ovs-ofctl dump-ports BR [PORT]`` (OpenFlow 1.0) with zero counters, ``LOCAL`` first and then by
    number (OVS lists them in hash order). The ports named in ``partial_stats`` (patch and tunnel
    ports, whose netdevs count only packets and bytes) print ``?`` for the other counters."""
    def key(p: OfPort) -> int:
        return -1 if isinstance(p.number, ReservedPort) else p.number

    out = f"OFPST_PORT reply (xid=0x2): {len(ports)} ports\n"
    for p in sorted(ports, key=key):
        n = p.number.value if isinstance(p.number, ReservedPort) else f"{p.number:2d}"
        e = "?" if p.name in partial_stats else "0"
        out += f"  port {n}: rx pkts=0, bytes=0, drop={e}, errs={e}, frame={e}, over={e}, crc={e}\n"
        out += f"           tx pkts=0, bytes=0, drop={e}, errs={e}, coll={e}\n"
    return out
