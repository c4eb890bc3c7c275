"""Shared plumbing for the Linux tools' languages: captures, elisions and broken line breaks.

The languages themselves live beside this module: ``iproute_link`` (``ip link``/``ip addr``),
``iproute_route`` (``ip route``/``ip rule``/``ip neigh``/``ip netns``), ``nettools`` (``ifconfig``,
``route -n``, ``arp -n``), ``bridge`` (``brctl show``) and ``dnsmasq``. Each has a strict
``parse_*`` that raises :class:`~neutrino.errors.ParseError` and a ``parse_*_partial`` that reads
captures with elisions (``...``, ``.``, ``... (localhost) ...``) and reports what it skipped.

>>> is_elision("... (loopback has the metadata service on 169.254.169.254) ...")
True
>>> restore_ip_breaks("1: lo:  mtu 16436 qdisc noqueue state UNKNOWN     link/loopback 00:00:00:00:00:00")
'1: lo:  mtu 16436 qdisc noqueue state UNKNOWN\\n    link/loopback 00:00:00:00:00:00'
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class IprouteStyle(enum.Enum):
    """How an iproute2 version spaced its output.

    ``MODERN`` is iproute2 >= 4.x (this machine: 6.1); ``LEGACY`` is the older spacing seen in the
    seeds, e.g. ``dev qg-d48b49e0-aa  proto kernel  scope link  src 172.24.4.227`` in ``ip route``.
    """

    MODERN = "modern"
    LEGACY = "legacy"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line a partial parse left out: an elision (``...``) or a line it could not place."""

    line: int
    text: str


@dataclass(frozen=True, slots=True)
class Partial(Generic[T]):
    """What a lenient parse read (``items``) and what it skipped (``skipped``)."""

    items: tuple[T, ...]
    skipped: tuple[Skipped, ...]


_ELISION = re.compile(r"^\s*(\.{1,3}|…)(\s*\(.*\)\s*(\.{3}|…)?)?\s*$")


def is_elision(line: str) -> bool:
    """True for ``...``, ``.``, ``…`` and ``... (something omitted) ...`` lines."""
    return bool(_ELISION.match(line))


# --- restoring line breaks lost in a capture (seed 004) ----------------------------------------

_ELIDED_RUN = re.compile(r"\.\.\.\s*(\([^)]*\))?\s*\.\.\.|\.\.\.")
_IP_HEADER = re.compile(r"(?:(?<=forever)|(?<=ff:ff)|(?<=\s))(?=\d+: [^\s:]+(?:@[^\s:]+)?: (?:<[^>]*>)? *mtu )")


def unbreak_spaces(text: str) -> str:
    """Replace no-break spaces (U+00A0, common in web captures such as seed 004) with spaces."""
    return text.replace("\xa0", " ")


def restore_ip_breaks(text: str) -> str:
    """Put back the line breaks of ``ip addr``/``ip link`` text that lost them (seed 004).

    Breaks go before each ``N: name:`` header, before the four-space indented ``link/`` and
    ``inet``/``inet6`` lines and before the seven-space ``valid_lft`` lines; ``... (x) ...``
    elisions get a line of their own. Spaces that were the end of a line are dropped.
    """
    text = unbreak_spaces(text)
    text = _ELIDED_RUN.sub(lambda m: "\n" + m.group(0) + "\n", text)
    text = re.sub(r" ?\s{4}(?=(link/|inet6? |altname |alias ))", "\n    ", text)
    text = re.sub(r" ?\s{7}(?=valid_lft )", "\n       ", text)
    text = _IP_HEADER.sub("\n", text)
    lines = [ln for ln in text.split("\n") if ln.strip()]
    return "\n".join(lines)


_ROUTE_N_HEADER = "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface"
_ROUTE_N_DEST = re.compile(r"\d{1,3}(?:\.\d{1,3}){3} +")


def restore_route_n_breaks(text: str) -> str:
    """Put back the line breaks of ``route -n`` output that lost them (seed 004).

    A row starts where an IPv4 destination padded to exactly 16 columns is followed by another
    address (the gateway) or ``-``; that is how ``route`` prints (``%-15s ``), which tells
    ``eth1`` + ``10.0.0.0`` from ``eth11`` + ``0.0.0.0``.
    """
    text = unbreak_spaces(text)
    text = text.replace("Kernel IP routing table", "\nKernel IP routing table\n")
    text = text.replace(_ROUTE_N_HEADER, "\n" + _ROUTE_N_HEADER + "\n")
    out: list[str] = []
    start = 0
    for i in range(1, len(text)):
        if text[i - 1].isspace():
            continue
        m = _ROUTE_N_DEST.match(text, i)
        if m and len(m.group(0)) == 16 and text[m.end():m.end() + 1] in tuple("0123456789-"):
            out.append(text[start:i])
            start = i
    out.append(text[start:])
    lines = [ln.rstrip() for chunk in out for ln in chunk.split("\n")]
    return "\n".join(ln for ln in lines if ln.strip())


def parse_lines(text: str, parse_line: Callable[..., T], source: str) -> tuple[T, ...]:
    """``parse_line(line, n=N, source=source)`` for every non-blank line, numbered from 1."""
    return tuple(parse_line(line, n=n, source=source)
                 for n, line in enumerate(text.splitlines(), start=1) if line.strip())
