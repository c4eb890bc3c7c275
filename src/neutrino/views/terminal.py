"""What the commands print on a terminal and elsewhere: tables, colour and progress.

On a terminal (the stream's ``isatty()``) tables are drawn by `rich <https://rich.readthedocs.io>`_
with colour, and long work shows a spinner on stderr; anywhere else (a pipe, a file, a test) the
same tables are plain aligned text, no escape code is ever written, and progress is one plain
line per finished stage. ``NO_COLOR`` (https://no-color.org) and ``TERM=dumb`` turn colour off
on a terminal too.

>>> print(table(("name", "ip"), [("cirros", "10.1.0.2"), ("vm-two", "")], colour=False), end="")
name    ip
------  --------
cirros  10.1.0.2
vm-two  -
>>> paint("-A INPUT -j DROP", "rule", colour=False)
'-A INPUT -j DROP'
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, NamedTuple

#: the styles the views use, by role (rich style strings)
STYLES = {
    "title": "bold",
    "comment": "bold blue",
    "rule": "",
    "explain": "cyan",
    "ok": "green",
    "bad": "bold red",
    "warn": "yellow",
    "dim": "dim",
    "header": "bold",
}


def use_colour(stream: IO[str] | Any = None) -> bool:
    """Whether to colour what goes to ``stream`` (default stdout): a terminal, and neither
    ``NO_COLOR`` nor ``TERM=dumb`` set."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed stream
        return False


def _console(width: int | None = None) -> Any:
    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=width or 200,
                   soft_wrap=True, highlight=False, emoji=False, markup=False)


def paint(text: str, role: str, *, colour: bool) -> str:
    """``text`` in the style of ``role`` (see :data:`STYLES`) when ``colour``, else as it is."""
    style = STYLES.get(role, role)
    if not colour or not style or not text:
        return text
    from rich.text import Text

    console = _console()
    console.print(Text(text, style=style), end="")
    out: str = console.file.getvalue()
    return out


class Cell(NamedTuple):
    """A table cell with a colour role of its own (a status: ACTIVE green, DOWN red)."""

    text: str
    role: str = ""


def _cell(value: object) -> str:
    if isinstance(value, Cell):
        value = value.text
    return "-" if value is None or value == "" else str(value)


def _rich_cell(value: object) -> Any:
    from rich.text import Text

    role = value.role if isinstance(value, Cell) else ""
    style = STYLES.get(role, role)
    return Text(_cell(value), style=style) if style else _cell(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, colour: bool, title: str = "",
          styles: Sequence[str] = ()) -> str:
    """The rows under their headers: a rich table when ``colour`` (a terminal), else plain text
    in aligned columns (two spaces apart, a line of dashes under the headers). Empty cells print
    as ``-``. ``styles``: a role for each column's cells, and a :class:`Cell` one for itself
    (coloured output only)."""
    cells = [[_cell(v) for v in row] for row in rows]
    if not colour:
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
        lines = [title] if title else []
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        return "\n".join(lines) + "\n"
    from rich.table import Table

    t = Table(title=title or None, header_style=STYLES["header"], title_style=STYLES["title"])
    for i, h in enumerate(headers):
        role = styles[i] if i < len(styles) else ""
        t.add_column(h, style=STYLES.get(role, role) or None, no_wrap=True)
    for row in rows:
        t.add_row(*(_rich_cell(v) for v in row))
    console = _console()
    console.print(t)
    out: str = console.file.getvalue()
    return out


def status_role(status: str) -> str:
    """The colour role of a port's or an instance's status."""
    return {"ACTIVE": "ok", "DOWN": "bad", "ERROR": "bad", "BUILD": "warn"}.get(status.upper(), "")


class Progress:
    """Stages of long work on ``stream`` (stderr): a spinner with the stage's name and its time on
    a terminal; elsewhere one plain line when a stage ends (``name: stage (1.2 s)``), so nothing
    is written for a stage that failed (its error is the one line the command prints)."""

    def __init__(self, name: str, stream: IO[str] | None = None, *, live: bool | None = None) -> None:
        self.name = name
        self.stream = stream if stream is not None else sys.stderr
        self.live = use_colour(self.stream) if live is None else live
        self.done: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        if self.live:
            from rich.console import Console

            console = Console(file=self.stream, stderr=self.stream is sys.stderr, highlight=False)
            with console.status(f"{self.name}: {what}…"):
                yield
            took = time.monotonic() - started
            console.print(f"[green]✓[/green] {what} [dim]({took:.1f} s)[/dim]", highlight=False)
        else:
            yield
            took = time.monotonic() - started
            print(f"{self.name}: {what} ({took:.1f} s)", file=self.stream, flush=True)
        self.done.append((what, took))


# ---------------------------------------------------------------------------- what `up` ends with

INSTANCE_HEADERS = ("instance", "host", "IP", "MAC", "floating IP", "port status")


def instances_of(cloud: Any) -> list[dict[str, str]]:
    """One row per port of each instance of ``cloud`` (a
    :class:`~neutrino.services.snapshot.CloudSnapshot`): its name, host, fixed IP (and prefix
    length), MAC, floating IP and the port's status, in the order the cloud lists its servers."""
    ports = {p.id: p for p in cloud.ports}
    subnets = {s.id: s for s in cloud.subnets}
    fips: dict[tuple[str, str], str] = {}
    for f in cloud.floating_ips:
        if f.port_id:
            fips[(f.port_id, str(f.fixed_ip_address or ""))] = str(f.floating_ip_address)
            fips.setdefault((f.port_id, ""), str(f.floating_ip_address))
    out: list[dict[str, str]] = []
    for s in cloud.servers:
        for pid in s.port_ids or ("",):
            p = ports.get(pid)
            ips = [f"{ip.ip_address}/{subnets[ip.subnet_id].cidr.prefixlen}" if ip.subnet_id in subnets
                   else str(ip.ip_address) for ip in (p.fixed_ips if p is not None else ())]
            bare = [ip.split("/")[0] for ip in ips]
            fip = next((fips[(pid, b)] for b in bare if (pid, b) in fips), fips.get((pid, ""), ""))
            out.append({"name": s.name, "host": s.host, "ip": ", ".join(ips),
                        "mac": p.mac_address if p is not None else "", "floating_ip": fip,
                        "port_status": p.status if p is not None else "", "port": pid, "status": s.status})
    return out


def instance_table(rows: list[dict[str, str]], *, colour: bool) -> str:
    """:func:`instances_of`'s rows as a table (``(no instances)`` when there are none)."""
    if not rows:
        return "(no instances)\n"
    def status(r: dict[str, str]) -> Cell:  # a server with no port: the server's own status, when not ACTIVE
        shown = r["port_status"] or (f"server {r['status']}" if r["status"] not in ("", "ACTIVE") else "")
        return Cell(shown, status_role(r["port_status"] or r["status"]))

    return table(INSTANCE_HEADERS, [(r["name"], r["host"], r["ip"], r["mac"], r["floating_ip"], status(r))
                                    for r in rows], colour=colour, styles=("title",))
