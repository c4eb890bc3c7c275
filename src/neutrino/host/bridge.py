"""``brctl show``: one parser, one formatter.

brctl prints ``name<TAB><TAB>bridge-id<TAB>stp<TAB><TAB>first-interface`` and each further
interface on a continuation line of seven tabs. Captures pasted from a terminal sometimes turn the
tabs into spaces or run the interfaces together on one line; both read the same.

>>> (b,) = parse_brctl_show("qbrbfda8db6-7b\\t\\t8000.5e414374148d\\tno\\t\\tqvbbfda8db6-7b  tapbfda8db6-7b")
>>> b.name, b.stp, b.interfaces
('qbrbfda8db6-7b', False, ('qvbbfda8db6-7b', 'tapbfda8db6-7b'))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from neutrino.errors import ParseError
from neutrino.host.iproute import Partial, Skipped, is_elision, unbreak_spaces

BRCTL_HEADER = "bridge name\tbridge id\t\tSTP enabled\tinterfaces"
_HEADER_WORDS = BRCTL_HEADER.split()


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """One Linux bridge as ``brctl show`` prints it."""

    name: str
    bridge_id: str
    stp: bool
    interfaces: tuple[str, ...] = ()


_BRIDGE_ID = re.compile(r"^[0-9a-f]{4}\.[0-9a-f]{12}$")


def _brctl(text: str, source: str, skipped: list[Skipped] | None) -> tuple[BridgeInfo, ...]:
    out: list[BridgeInfo] = []
    for n, line in enumerate(unbreak_spaces(text).splitlines(), start=1):
        if not line.strip():
            continue
        toks = line.split()
        if toks == _HEADER_WORDS:
            continue
        if skipped is not None and is_elision(line):
            skipped.append(Skipped(n, line))
            continue
        try:
            if line[0].isspace():
                if not out:
                    raise ParseError("a bridge line before its continuation", text=line, line=n, source=source)
                out[-1] = replace(out[-1], interfaces=out[-1].interfaces + tuple(toks))
                continue
            if len(toks) < 3 or not _BRIDGE_ID.match(toks[1]) or toks[2] not in ("yes", "no"):
                raise ParseError("'NAME  BRIDGE-ID(8000.xxxxxxxxxxxx)  yes|no  [INTERFACES]'", text=line, line=n,
                                 source=source)
            out.append(BridgeInfo(toks[0], toks[1], toks[2] == "yes", tuple(toks[3:])))
        except ParseError:
            if skipped is None:
                raise
            skipped.append(Skipped(n, line))
    return tuple(out)


def parse_brctl_show(text: str, *, source: str = "<string>") -> tuple[BridgeInfo, ...]:
    """Parse ``brctl show`` output (the header line is optional, as after a ``grep``)."""
    return _brctl(text, source, None)


def parse_brctl_show_partial(text: str, *, source: str = "<string>") -> Partial[BridgeInfo]:
    skipped: list[Skipped] = []
    return Partial(_brctl(text, source, skipped), tuple(skipped))


def format_bridge(b: BridgeInfo) -> str:
    first = b.interfaces[0] if b.interfaces else ""
    s = f"{b.name}\t\t{b.bridge_id}\t{'yes' if b.stp else 'no'}\t\t{first}\n"
    for ifname in b.interfaces[1:]:
        s += f"\t\t\t\t\t\t\t{ifname}\n"
    return s


def format_brctl_show(bridges: tuple[BridgeInfo, ...] | list[BridgeInfo], *, header: bool = True) -> str:
    return (BRCTL_HEADER + "\n" if header else "") + "".join(format_bridge(b) for b in bridges)


def restore_brctl_breaks(text: str) -> str:
    """Put back the breaks of a ``brctl show`` capture that lost them (seed 004's
    ``bridge name bridge id   STP enabled interfacesbr100   8000.0800278f87fa no    eth2``)."""
    text = unbreak_spaces(text)
    return re.sub(r"bridge name\s+bridge id\s+STP enabled\s+interfaces", BRCTL_HEADER + "\n", text)
