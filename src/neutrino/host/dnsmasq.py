"""dnsmasq as the seeds show it: ``ps -fe``/``ps aux`` process lines, the command line's options,
hosts-file lines (nova and neutron forms) and opts-file lines.

>>> p = parse_ps_line("nobody   23195     1  0 Oct26 ?        00:00:00 dnsmasq --interface=ns-f1 "
...                   "--dhcp-range=tag0,10.1.0.0,static,120s --leasefile-ro")
>>> p.pid, p.ppid, p.options.interface, p.options.leasefile_ro
(23195, 1, 'ns-f1', True)
>>> str(p.options.dhcp_ranges[0].start), p.options.dhcp_ranges[0].lease
('10.1.0.0', '120s')
>>> h = parse_host_line("fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2")
>>> h.hostname, str(h.ip), format_host_line(h)
('cirros.novalocal', '10.0.0.2', 'fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2')
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from neutrino.errors import ParseError
from neutrino.host.iproute import parse_lines, unbreak_spaces

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(tok: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(tok.strip("[]"))
    except ValueError:
        return None


# --- options -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DhcpRange:
    """``--dhcp-range=[tag],start[,end][,mode][,netmask|prefixlen][,lease]``."""

    start: IPAddress
    tag: str | None = None
    end: IPAddress | None = None
    mode: str | None = None
    netmask: str | None = None
    lease: str | None = None


# patterns are compiled where used (re keeps them): importing the module compiles none
_LEASE = r"^(\d+[smhdw]?|infinite|deprecated)$"
_MODES = ("static", "proxy", "ra-only", "ra-names", "ra-stateless", "slaac", "ra-advrouter", "off-link",
          "constructor")


def parse_dhcp_range(value: str) -> DhcpRange:
    items = value.split(",")
    kw: dict[str, object] = {}
    i = 0
    if items and _ip(items[0]) is None:
        kw["tag"] = items[0]
        i = 1
    if i >= len(items) or (start := _ip(items[i])) is None:
        raise ParseError("a start address in --dhcp-range", text=value)
    i += 1
    if i < len(items) and _ip(items[i]) is not None and (i + 1 < len(items) or not re.compile(_LEASE).match(items[i])):
        kw["end"] = _ip(items[i])
        i += 1
    if i < len(items) and items[i] in _MODES:
        kw["mode"] = items[i]
        i += 1
    rest = items[i:]
    if rest and re.compile(_LEASE).match(rest[-1]) and (len(rest) > 1 or _ip(rest[-1]) is None):
        kw["lease"] = rest.pop()
    if len(rest) == 1:
        kw["netmask"] = rest[0]
    elif rest:
        raise ParseError("'[tag,]start[,end][,mode][,netmask][,lease]' in --dhcp-range", text=value)
    return DhcpRange(start=start, **kw)  # type: ignore[arg-type]


def format_dhcp_range(r: DhcpRange) -> str:
    parts = [r.tag, str(r.start), str(r.end) if r.end else None, r.mode, r.netmask, r.lease]
    return ",".join(p for p in parts if p is not None)


@dataclass(frozen=True, slots=True)
class DnsmasqOption:
    """One ``--name[=value]`` argument; ``value`` ``None`` for a bare flag, ``""`` for ``--name=``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return f"--{self.name}" if self.value is None else f"--{self.name}={self.value}"


@dataclass(frozen=True, slots=True)
class DnsmasqOptions:
    """The options of a dnsmasq command line, in argv order, with named views of the common ones."""

    items: tuple[DnsmasqOption, ...]

    def get(self, name: str) -> str | None:
        for o in self.items:
            if o.name == name:
                return o.value if o.value is not None else ""
        return None

    def get_all(self, name: str) -> tuple[str, ...]:
        return tuple(o.value or "" for o in self.items if o.name == name)

    def has(self, name: str) -> bool:
        return any(o.name == name for o in self.items)

    @property
    def interface(self) -> str | None:
        return self.get("interface")

    @property
    def except_interface(self) -> str | None:
        return self.get("except-interface")

    @property
    def listen_addresses(self) -> tuple[IPAddress, ...]:
        return tuple(a for v in self.get_all("listen-address") for p in v.split(",") if (a := _ip(p)))

    @property
    def dhcp_ranges(self) -> tuple[DhcpRange, ...]:
        return tuple(parse_dhcp_range(v) for v in self.get_all("dhcp-range"))

    @property
    def pid_file(self) -> str | None:
        return self.get("pid-file")

    @property
    def hostsfile(self) -> str | None:
        return self.get("dhcp-hostsfile")

    @property
    def optsfile(self) -> str | None:
        return self.get("dhcp-optsfile")

    @property
    def leasefile_ro(self) -> bool:
        return self.has("leasefile-ro")

    @property
    def domain(self) -> str | None:
        return self.get("domain")

    @property
    def conf_file(self) -> str | None:
        return self.get("conf-file")

    @property
    def dhcp_script(self) -> str | None:
        return self.get("dhcp-script")

    @property
    def dhcp_lease_max(self) -> int | None:
        v = self.get("dhcp-lease-max")
        return int(v) if v else None


def parse_dnsmasq_argv(argv: tuple[str, ...] | list[str]) -> DnsmasqOptions:
    """The options of ``argv`` (``argv[0]`` is the program). Short options and positional words
    are kept as options with their text as the name."""
    items: list[DnsmasqOption] = []
    for a in list(argv)[1:]:
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            items.append(DnsmasqOption(name, value if eq else None))
        else:
            raise ParseError("dnsmasq '--long-option[=value]' arguments", text=a)
    return DnsmasqOptions(tuple(items))


def dnsmasq_argv(program: str, options: DnsmasqOptions | tuple[DnsmasqOption, ...]) -> tuple[str, ...]:
    items = options.items if isinstance(options, DnsmasqOptions) else options
    return (program,) + tuple(str(o) for o in items)


# --- ps lines ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DnsmasqProcess:
    """A dnsmasq process line from ``ps -fe`` (``style`` ``"fe"``: UID PID PPID C STIME TTY TIME CMD)
    or ``ps aux`` (``"aux"``: USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND).
    Columns a style does not print are ``None``; the ones it prints are never ``None``: a process
    made without them (a planned one, not started yet) gets what ``ps`` shows of a fresh process
    (``0``, ``0.0``, ``S``, ``00:00``), so that equal lines are equal processes."""

    user: str
    pid: int
    argv: tuple[str, ...]
    style: str = "fe"
    ppid: int | None = None
    c: int | None = None
    stime: str | None = None
    tty: str = "?"
    time: str = "00:00:00"
    cpu: str | None = None
    mem: str | None = None
    vsz: int | None = None
    rss: int | None = None
    stat: str | None = None

    def __post_init__(self) -> None:
        fresh = _FRESH_AUX if self.style == "aux" else _FRESH_FE
        for name, value in fresh:
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    @property
    def options(self) -> DnsmasqOptions:
        return parse_dnsmasq_argv(self.argv)

    @property
    def program(self) -> str:
        return self.argv[0]


#: The columns each style prints, with what ``ps`` shows for them of a process that has just started.
_FRESH_FE: tuple[tuple[str, object], ...] = (("ppid", 0), ("c", 0), ("stime", "00:00"))
_FRESH_AUX: tuple[tuple[str, object], ...] = (("cpu", "0.0"), ("mem", "0.0"), ("vsz", 0), ("rss", 0),
                                               ("stat", "S"), ("stime", "00:00"))

_PS_FE = r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d[\d:-]*)\s+(\S.*)$"
_PS_AUX = (r"^(\S+)\s+(\d+)\s+(\d+\.\d)\s+(\d+\.\d)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+"
           r"(\d[\d:]*)\s+(\S.*)$")


def parse_ps_line(line: str, *, n: int = 1, source: str = "<string>") -> DnsmasqProcess:
    """Parse one ``ps -fe`` or ``ps aux`` line of a dnsmasq process."""
    body = unbreak_spaces(line).strip()
    m = re.compile(_PS_AUX).match(body)
    if m:
        user, pid, cpu, mem, vsz, rss, tty, stat, start, time, cmd = m.groups()
        argv = tuple(cmd.split(" "))
        _check_dnsmasq(argv, line, n, source)
        return DnsmasqProcess(user, int(pid), argv, "aux", tty=tty, time=time, stime=start, cpu=cpu, mem=mem,
                              vsz=int(vsz), rss=int(rss), stat=stat)
    m = re.compile(_PS_FE).match(body)
    if m:
        user, pid, ppid, c, stime, tty, time, cmd = m.groups()
        argv = tuple(cmd.split(" "))
        _check_dnsmasq(argv, line, n, source)
        return DnsmasqProcess(user, int(pid), argv, "fe", ppid=int(ppid), c=int(c), stime=stime, tty=tty,
                              time=time)
    raise ParseError("a 'ps -fe' (UID PID PPID C STIME TTY TIME CMD) or 'ps aux' line", text=line, line=n,
                     source=source)


def _check_dnsmasq(argv: tuple[str, ...], line: str, n: int, source: str) -> None:
    if not argv[0].rsplit("/", 1)[-1].startswith("dnsmasq"):
        raise ParseError("a dnsmasq command", text=line, line=n, source=source)
    try:
        parse_dnsmasq_argv(argv)
    except ParseError:
        raise ParseError("dnsmasq '--long-option[=value]' arguments", text=line, line=n, source=source) from None


def parse_ps(text: str, *, source: str = "<string>") -> tuple[DnsmasqProcess, ...]:
    """Parse several ``ps`` lines (a ``ps`` header line is skipped)."""
    return tuple(parse_ps_line(line, n=n, source=source) for n, line in enumerate(text.splitlines(), start=1)
                 if line.strip() and line.split()[0] not in ("UID", "USER"))


def format_ps_line(p: DnsmasqProcess) -> str:
    cmd = " ".join(p.argv)
    if p.style == "aux":
        return (f"{p.user:<8} {p.pid:>5} {p.cpu or '0.0':>4} {p.mem or '0.0':>4} {p.vsz or 0:>6} {p.rss or 0:>5} "
                f"{p.tty:<8} {p.stat or 'S':<4} {p.stime or '00:00':>5} {p.time:>6} {cmd}")
    return (f"{p.user:<8} {p.pid:>5} {p.ppid if p.ppid is not None else 0:>5} {p.c or 0:>2} {p.stime or '00:00':<5} "
            f"{p.tty:<8} {p.time:>8} {cmd}")


def argv_from_cmdline(data: bytes) -> tuple[str, ...]:
    """``/proc/PID/cmdline`` (NUL-separated) as an argv tuple."""
    return tuple(a.decode() for a in data.rstrip(b"\0").split(b"\0"))


# --- hosts file and opts file --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DhcpHost:
    """One ``--dhcp-hostsfile`` line: nova's ``mac,hostname,ip`` or neutron's
    ``mac,[tag:dhcpv6,][id:clientid,]fqdn,ip[,set:port-<id>]`` (IPv6 addresses in brackets)."""

    mac: str
    hostname: str
    ip: IPAddress
    tags: tuple[str, ...] = ()
    client_id: str | None = None
    sets: tuple[str, ...] = ()


_MAC = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"


def parse_host_line(line: str, *, n: int = 1, source: str = "<string>") -> DhcpHost:
    items = line.strip().split(",")
    if len(items) < 3 or not re.compile(_MAC).match(items[0]):
        raise ParseError("'MAC,HOSTNAME,IP' (a dnsmasq hosts-file line)", text=line, line=n, source=source)
    mac, rest = items[0], items[1:]
    tags: list[str] = []
    client_id = None
    while rest and (rest[0].startswith("tag:") or rest[0].startswith("id:")):
        head = rest.pop(0)
        if head.startswith("id:"):
            client_id = head[3:]
        else:
            tags.append(head)
    sets: list[str] = []
    while rest and rest[-1].startswith("set:"):
        sets.insert(0, rest.pop())
    if len(rest) != 2 or (ip := _ip(rest[1])) is None:
        raise ParseError("'HOSTNAME,IP' after the MAC in a hosts-file line", text=line, line=n, source=source)
    return DhcpHost(mac, rest[0], ip, tuple(tags), client_id, tuple(sets))


def format_host_line(h: DhcpHost) -> str:
    ip = f"[{h.ip}]" if h.ip.version == 6 else str(h.ip)
    parts = [h.mac, *h.tags, *((f"id:{h.client_id}",) if h.client_id is not None else ()), h.hostname, ip,
             *h.sets]
    return ",".join(parts)


def parse_hosts_file(text: str, *, source: str = "<string>") -> tuple[DhcpHost, ...]:
    return tuple(parse_host_line(line, n=n, source=source)
                 for n, line in enumerate(unbreak_spaces(text).splitlines(), start=1) if line.strip())


def format_hosts_file(hosts: tuple[DhcpHost, ...] | list[DhcpHost]) -> str:
    return "".join(format_host_line(h) + "\n" for h in hosts)


@dataclass(frozen=True, slots=True)
class DhcpOpt:
    """One ``--dhcp-optsfile`` line: ``tag:X,...,option:NAME|NUM|option6:NAME,values...``."""

    option: str
    values: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


def parse_opt_line(line: str, *, n: int = 1, source: str = "<string>") -> DhcpOpt:
    items = line.strip().split(",")
    tags: list[str] = []
    while items and items[0].startswith("tag:"):
        tags.append(items.pop(0))
    if not items or not re.match(r"^(option6?:[\w-]+|\d+)$", items[0]):
        raise ParseError("'[tag:X,]option:NAME|NUMBER[,values]' (a dnsmasq opts-file line)", text=line, line=n,
                         source=source)
    return DhcpOpt(items[0], tuple(items[1:]), tuple(tags))


def format_opt_line(o: DhcpOpt) -> str:
    return ",".join((*o.tags, o.option, *o.values))


def parse_opts_file(text: str, *, source: str = "<string>") -> tuple[DhcpOpt, ...]:
    return parse_lines(text, parse_opt_line, source)


def format_opts_file(opts: tuple[DhcpOpt, ...] | list[DhcpOpt]) -> str:
    return "".join(format_opt_line(o) + "\n" for o in opts)
