"""What the scenario tests share: ``ask`` a planned host, and the normaliser: masks what OpenStack generates at random (UUIDs and their
fragments in device, chain and namespace names, fa:16:3e MACs), counters and durations, and
whitespace, so planned output compares with a seed's dump."""

from __future__ import annotations

import re

from neutrino.host.state import HostState
from neutrino.ingest.commands import parse_command
from neutrino.views.answer import answer

_SUBS = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b(tap|qbr|qvb|qvo|qr-|qg-|ns-)[0-9a-f]{8}-[0-9a-f]{2}\b", re.I), r"\1<id>"),
    (re.compile(r"-([iosv])[0-9a-f]{8}-[0-9a-f]\b", re.I), r"-\1<id>"),
    (re.compile(r"\bfa:16:3e(:[0-9a-f]{2}){3}\b", re.I), "<mac>"),
    (re.compile(r"\bfe80::f816:3eff:fe[0-9a-f]{2}:[0-9a-f]{1,4}\b", re.I), "fe80::<eui64 of mac>"),
    (re.compile(r"duration=[\d.]+s"), "duration=<t>"),
    (re.compile(r"n_packets=\d+, n_bytes=\d+"), "n_packets=<n>, n_bytes=<n>"),
    (re.compile(r"idle_age=\d+"), "idle_age=<t>"),
    (re.compile(r"\[\d+:\d+\]"), "[<n>]"),
]


def normalize(text: str) -> list[str]:
    """Lines of ``text`` with generated parts masked and whitespace squeezed (blank lines dropped)."""
    out = []
    for line in text.splitlines():
        for pattern, repl in _SUBS:
            line = pattern.sub(repl, line)
        line = " ".join(line.split())
        if line:
            out.append(line)
    return out


def ask(host: HostState, command: str) -> str:
    """What ``neutrino exec HOST -- command`` prints."""
    return answer(host, parse_command(command))


def router_ns(host: HostState) -> str:
    return next(n for n in host.namespace_names() if n.startswith("qrouter-"))
