"""``sysctl`` output (``net.ipv4.ip_forward = 1``), the settings of a namespace that matter here."""

from __future__ import annotations

from dataclasses import dataclass

from neutrino.errors import ParseError

#: The settings neutrino plans, applies and reads back.
KNOWN = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.ip_nonlocal_bind",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.all.addr_gen_mode",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
)


@dataclass(frozen=True, slots=True)
class Sysctl:
    key: str
    value: str


def parse_sysctls(text: str, source: str = "<string>") -> tuple[Sysctl, ...]:
    out: list[Sysctl] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or " " in key.strip():
            raise ParseError("'key = value'", text=line, line=n, source=source)
        out.append(Sysctl(key.strip(), value.strip()))
    return tuple(out)


def format_sysctls(items: tuple[Sysctl, ...]) -> str:
    return "".join(f"{s.key} = {s.value}\n" for s in items)
