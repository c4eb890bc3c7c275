"""Real output in the forms the host parsers do not take, read into the same model.

* net-tools' classic ``ifconfig`` (before net-tools 2.10: ``eth0      Link encap:Ethernet  HWaddr
  ...`` / ``inet addr:A  Bcast:B  Mask:M``), as printed by ``ife_print_long`` in net-tools'
  ``lib/interface.c``;
* ``ps`` listings whose command lines were wrapped by a terminal or a page (a continuation line
  does not start a ``ps`` row), ``ps ax`` rows (``PID TTY STAT TIME COMMAND``, no user column),
  and the other processes a ``ps aux | grep dnsmasq`` shows (the ``grep`` itself), skipped;
* elision marks people write into pasted output (``(...)``, ``[...]``, ``[snip]``), read as the
  ``...`` cuts the parsers already know;
* notes written after an output line (``  <-- this one``), left out;
* ``ovs-ofctl dump-flows`` lines a page or a terminal broke in two, joined back.

Whatever is read this way is reported (:func:`neutrino.ingest.captures.collecting_notes`).
"""

from __future__ import annotations

import ipaddress
import re

from neutrino.errors import ParseError
from neutrino.host.dnsmasq import DnsmasqProcess, parse_ps_line
from neutrino.host.nettools import IFF_FLAGS, IfconfigInet6, IfconfigInterface, IfconfigStats

# --- elisions --------------------------------------------------------------------------------

_WRITTEN_ELISION = re.compile(r"^\s*(?:\(\s*(?:\.\.\.|…)\s*\)|\[\s*(?:\.\.\.|…)\s*\]|\[\s*snip\s*\]|<\s*snip\s*>)\s*$",
                              re.I)


def normalise_elisions(text: str) -> tuple[str, int]:
    """``text`` with written elision lines (``(...)``, ``[...]``, ``[snip]``) as ``...``, and how many."""
    if "..." not in text and "…" not in text and "snip" not in text.lower():
        return text, 0
    count = 0
    out: list[str] = []
    for line in text.split("\n"):
        if _WRITTEN_ELISION.match(line):
            count += 1
            out.append("...")
        else:
            out.append(line)
    return "\n".join(out), count


# --- classic ifconfig ------------------------------------------------------------------------

_CLASSIC_HEAD = re.compile(r"^(\S+)\s+Link encap:(.*?)(?:\s+HWaddr\s+(\S+))?\s*$")
_FLAG_BITS = dict(IFF_FLAGS)
_HW_NAMES = {"Ethernet": "ether", "Local Loopback": "loop", "UNSPEC": "unspec",
             "Point-to-Point Protocol": "ppp", "IPIP Tunnel": "tunnel", "VXLAN": "vxlan"}
_SCOPES = {"global": 0x0, "link": 0x20, "site": 0x40, "host": 0x10, "compat": 0x80}
_KV = re.compile(r"([A-Za-z-]+):\s?(\S+)")


def is_classic_ifconfig(text: str) -> bool:
    return any(_CLASSIC_HEAD.match(line) for line in text.splitlines()[:3] if line.strip())


def parse_classic_ifconfig(text: str, *, source: str = "<string>") -> tuple[IfconfigInterface, ...]:
    """Every interface of a classic ``ifconfig`` listing (the lines it does not model, such as
    ``Interrupt:31``, skipped)."""
    out: list[IfconfigInterface] = []
    cur: dict[str, object] | None = None
    counters: dict[str, int] = {}

    def finish() -> None:
        nonlocal cur
        if cur is None:
            return
        if {"rx_packets", "tx_packets"} <= counters.keys():
            cur["stats"] = IfconfigStats(
                counters.get("rx_packets", 0), counters.get("rx_bytes", 0), counters.get("rx_errors", 0),
                counters.get("rx_dropped", 0), counters.get("rx_overruns", 0), counters.get("rx_frame", 0),
                counters.get("tx_packets", 0), counters.get("tx_bytes", 0), counters.get("tx_errors", 0),
                counters.get("tx_dropped", 0), counters.get("tx_overruns", 0), counters.get("tx_carrier", 0),
                counters.get("collisions", 0))
        if "mtu" not in cur:
            raise ParseError("a 'FLAGS  MTU:N  Metric:N' line in this interface", text=str(cur["name"]),
                             source=source)
        out.append(IfconfigInterface(**cur))  # type: ignore[arg-type]
        cur = None
        counters.clear()

    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip():
            continue
        head = _CLASSIC_HEAD.match(line) if not line[0].isspace() else None
        if head:
            finish()
            title = head.group(2).strip()
            cur = {"name": head.group(1), "flags": 0, "hw_title": title,
                   "hw_name": _HW_NAMES.get(title, title.lower().split()[0] if title else "unspec")}
            if head.group(3):
                cur["hwaddr"] = head.group(3).lower()
            continue
        if cur is None:
            raise ParseError("'NAME  Link encap:TYPE  [HWaddr MAC]' (classic ifconfig)", text=line, line=n,
                             source=source)
        body = line.strip()
        try:
            if body.startswith("inet addr:"):
                kv = dict(_KV.findall(body))
                cur["inet"] = ipaddress.IPv4Address(kv["addr"])
                if "Mask" in kv:
                    cur["netmask"] = ipaddress.IPv4Address(kv["Mask"])
                if "Bcast" in kv:
                    cur["broadcast"] = ipaddress.IPv4Address(kv["Bcast"])
                if "P-t-P" in kv:
                    cur["destination"] = ipaddress.IPv4Address(kv["P-t-P"])
            elif body.startswith("inet6 addr:"):
                m = re.match(r"^inet6 addr:\s*(\S+)/(\d+)\s+Scope:(\S+)$", body)
                if not m:
                    raise ValueError(body)
                scope = _SCOPES.get(m.group(3).lower(), 0)
                cur["inet6"] = (*cur.get("inet6", ()), IfconfigInet6(  # type: ignore[misc]
                    ipaddress.IPv6Address(m.group(1)), int(m.group(2)), scope))
            elif "MTU:" in body:
                words = body.split()
                flags = 0
                for w in words:
                    if w in _FLAG_BITS:
                        flags |= _FLAG_BITS[w]
                    elif w.startswith("MTU:"):
                        cur["mtu"] = int(w[4:])
                cur["flags"] = flags
            elif body.startswith(("RX packets:", "TX packets:")):
                side = body[:2].lower()
                for k, v in _KV.findall(body):
                    counters[f"{side}_{k.lower()}"] = int(v)
            elif body.startswith("collisions:"):
                kv = dict(_KV.findall(body))
                counters["collisions"] = int(kv["collisions"])
                if "txqueuelen" in kv:
                    cur["txqueuelen"] = int(kv["txqueuelen"])
            elif body.startswith("RX bytes:"):
                m = re.match(r"^RX bytes:(\d+) \([^)]*\)\s+TX bytes:(\d+) \([^)]*\)$", body)
                if not m:
                    raise ValueError(body)
                counters["rx_bytes"], counters["tx_bytes"] = int(m.group(1)), int(m.group(2))
            elif re.match(r"^(Interrupt|Memory|Base address|DMA chan):", body):
                pass
            else:
                raise ValueError(body)
        except (ValueError, KeyError):
            raise ParseError("a classic ifconfig line (inet addr:, inet6 addr:, FLAGS  MTU:N, RX/TX ..., "
                             "collisions:, RX bytes:)", text=line, line=n, source=source) from None
    finish()
    return tuple(out)


# --- ps ----------------------------------------------------------------------------------------

_ROW_AUX = re.compile(r"^\S+\s+\d+\s+\d+\.\d\s+\d+\.\d\s+\d+\s+\d+\s+\S+\s+\S+\s+\S+\s+\d[\d:]*\s+\S")
_ROW_FE = re.compile(r"^\S+\s+\d+\s+\d+\s+\d+\s+\S+\s+\S+\s+\d[\d:-]*\s+\S")
_ROW_AX = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\d[\d:]*)\s+(\S.*)$")
_HEADER = re.compile(r"^\s*(UID|USER|PID|F\s+S)\b")


def _command_of(row: str) -> str:
    """The command column of a ``ps`` row (aux, -fe or ax)."""
    for rx, skip in ((_ROW_AUX, 10), (_ROW_FE, 7)):
        if rx.match(row):
            return row.split(None, skip)[skip] if len(row.split(None, skip)) > skip else ""
    m = _ROW_AX.match(row)
    return m.group(5) if m else ""


def _is_row(line: str) -> bool:
    return bool(_ROW_AUX.match(line) or _ROW_FE.match(line) or _ROW_AX.match(line) or _HEADER.match(line))


def unwrap_ps(text: str) -> tuple[list[tuple[int, str]], int]:
    """``ps`` rows with the lines a terminal or a page wrapped joined back (a continuation starting
    with ``-`` or indented is a new argument; otherwise the wrap fell inside a word), each with its
    first line's number, and how many lines were joined."""
    rows: list[tuple[int, str]] = []
    joined = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if _is_row(line) or not rows:
            rows.append((n, line.rstrip()))
            continue
        first, prev = rows[-1]
        piece = line.strip()
        # a new argument starts with '--' (dnsmasq's options are long ones); a break inside an
        # option leaves '-' at the end of the line or one '-' at the start of the next: joined directly
        sep = " " if (line[:1].isspace() or piece.startswith("--") and not prev.endswith("-")
                      or prev.endswith(" ")) else ""
        rows[-1] = (first, prev.rstrip() + sep + piece)
        joined += 1
    return rows, joined


def parse_ps_dnsmasq(text: str, *, source: str = "<string>") -> tuple[tuple[DnsmasqProcess, ...], list[str]]:
    """The dnsmasq processes of a ``ps`` listing (``-fe``, ``aux`` or ``ax``), with notes on what was
    read leniently: wrapped lines joined, other processes (a ``grep dnsmasq``) skipped."""
    rows, joined = unwrap_ps(text)
    notes: list[str] = []
    if joined:
        notes.append(f"{joined} wrapped line(s) joined back to their process")
    out: list[DnsmasqProcess] = []
    skipped = 0
    for n, row in rows:
        if _HEADER.match(row) or row.strip() == "...":
            continue
        cmd = _command_of(row)
        if not cmd:
            if "dnsmasq" not in row:  # some other process, in a form not worth reading
                skipped += 1
                continue
            raise ParseError("a 'ps -fe', 'ps aux' or 'ps ax' row", text=row, line=n, source=source)
        program = cmd.split()[0].rsplit("/", 1)[-1]
        if not program.startswith("dnsmasq"):
            skipped += 1
            continue
        m = _ROW_AX.match(row)
        if m and not (_ROW_AUX.match(row) or _ROW_FE.match(row)):
            probe = parse_ps_line(f"? {m.group(1)} 0 0 00:00 {m.group(2)} {m.group(4)} {m.group(5)}", n=n,
                                  source=source)  # checks the dnsmasq arguments
            out.append(DnsmasqProcess("?", probe.pid, probe.argv, "fe", tty=m.group(2), time=m.group(4)))
            continue
        out.append(parse_ps_line(row, n=n, source=source))
    if skipped:
        notes.append(f"{skipped} process(es) other than dnsmasq skipped")
    return tuple(out), notes


# --- pages and writers ---------------------------------------------------------------------------

_ANNOTATION = re.compile(r"\s+(?:<-{1,2}|<={1,2}|←)(?:\s.*)?$")


def strip_annotations(text: str) -> tuple[str, int]:
    """``text`` without the notes people write after an output line (``  <-- this one``,
    ``<== here``), when the mark is outside quotes; and how many were taken off."""
    if "<-" not in text and "<=" not in text and "←" not in text:
        return text, 0
    count = 0
    out: list[str] = []
    for line in text.split("\n"):
        m = _ANNOTATION.search(line)
        if m and line[:m.start()].strip() and line[:m.start()].count('"') % 2 == 0:
            line = line[:m.start()]
            count += 1
        out.append(line)
    return "\n".join(out), count


_FLOW_HEADER = re.compile(r"^\s*(?:NXST|OFPST)_FLOW reply")


def unwrap_flows(text: str, *, source: str = "<string>") -> tuple[str, int]:
    """``ovs-ofctl dump-flows`` output with the flows a page or a terminal broke over several lines
    joined back: every flow holds ``actions=``, so a line without it continues the flow before,
    as does any line after one that has not reached its actions yet. Each piece is joined
    directly (a break inside a word) or, when that does not read as a flow, with a space."""
    from neutrino.host.openflow import parse_flow

    lines = text.split("\n")
    if all("actions=" in ln or not ln.strip() or _FLOW_HEADER.match(ln) for ln in lines):
        return text, 0
    out: list[str] = []  # a joined line leaves a blank in its place, so that line numbers still hold
    last = -1
    joined = 0
    for line in lines:
        body = line.strip()
        prev = out[last] if last >= 0 else ""
        continues = last >= 0 and bool(body) and not _FLOW_HEADER.match(line) and body not in (".", "...") and \
            prev.strip() and not _FLOW_HEADER.match(prev) and prev.strip() not in (".", "...") and \
            ("actions=" not in prev or "actions=" not in body)
        if not continues:
            out.append(line)
            if body:
                last = len(out) - 1
            continue
        candidates = [prev.rstrip() + body, prev.rstrip() + " " + body]
        if body.startswith("actions=") or prev.endswith(" "):
            candidates.reverse()
        chosen: str | None = candidates[0]
        if "actions=" in candidates[0]:  # a whole flow once joined: only a join that reads is taken
            chosen = None
            for c in candidates:
                try:
                    parse_flow(c.strip(), source=source)
                except ParseError:
                    continue
                chosen = c
                break
        if chosen is None:  # not a broken flow: left for the parser to name
            out.append(line)
            last = len(out) - 1
            continue
        out[last] = chosen
        out.append("")
        joined += 1
    return "\n".join(out), joined
