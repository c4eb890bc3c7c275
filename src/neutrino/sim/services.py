"""Services the guests talk to: dnsmasq's DHCP server (static leases only) and the metadata API.

:class:`DhcpServer` is built from a dnsmasq process line and the files it reads, the way dnsmasq
reads them: the hosts file gives each known MAC its address and name; ``--dhcp-range``'s
``static`` mode means nobody else gets an address ("no address available"); the subnet mask
comes from the range or from the interface's address; the router and DNS server default to
dnsmasq's own address on the interface (nova-network's case: the bridge's gateway address)
unless the opts file says otherwise (neutron's ``option:router``, ``option:dns-server``,
``option:classless-static-route``); ``--dhcp-option-force=option:mtu,N`` sets the MTU.

>>> from neutrino.host.dnsmasq import parse_ps_line
>>> from neutrino.host.state import FileState
>>> p = parse_ps_line("nobody 2729 1 0 23:12 ? 00:00:00 /usr/sbin/dnsmasq --domain=novalocal "
...                   "--listen-address=10.0.0.1 --dhcp-range=10.0.0.2,static,120s "
...                   "--dhcp-hostsfile=/var/lib/nova/networks/nova-br100.conf")
>>> hosts = FileState("/var/lib/nova/networks/nova-br100.conf", "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2\\n")
>>> srv = DhcpServer.from_state(p, (hosts,), interface="br100", netmask=IPv4Address("255.255.255.0"))
>>> str(srv.server_ip), [str(r) for r in srv.router], srv.lease_time, srv.domain
('10.0.0.1', ['10.0.0.1'], 120, 'novalocal')
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from neutrino.errors import InvalidInput
from neutrino.host.dnsmasq import (
    DhcpHost,
    DhcpOpt,
    DhcpRange,
    DnsmasqProcess,
    parse_hosts_file,
    parse_opt_line,
)
from neutrino.host.state import FileState, NamespaceState
from neutrino.sim.packets import (
    DHCP,
    TCP,
    UDP,
    BootOp,
    DHCPMessageType,
    Ethernet,
    IPv4,
    Mac,
    Raw,
    TCPFlag,
    dhcp_server_frame,
)
from neutrino.sim.trace import Step, StepKind

INFINITE = 0xFFFFFFFF


_NETS: dict[tuple[IPv4Address, IPv4Address | str], IPv4Network] = {}


def _net_of(addr: IPv4Address, mask: IPv4Address | str) -> IPv4Network:
    """``IPv4Network(f"{addr}/{mask}", strict=False)``, parsed once per address and mask (both
    immutable; at most 4,096 kept, then it starts again)."""
    key = (addr, mask)
    got = _NETS.get(key)
    if got is None:
        if len(_NETS) >= 4096:
            _NETS.clear()
        got = _NETS[key] = IPv4Network(f"{addr}/{mask}", strict=False)
    return got


_OPTIONS: dict[tuple[int, int], tuple[DhcpServer, DhcpHost, ClientOptions]] = {}
""":meth:`DhcpServer.options_for`'s answers by the server's and the host's ids (both held in the
value, so neither id is reused while the entry lives; both are immutable): a client asks twice,
DISCOVER and REQUEST. At most 4,096 (then it starts again)."""

_NAMED_TAGS: dict[int, tuple[DhcpServer, frozenset[str]]] = {}
"""The tags a server's options name (``tag:`` taken off), by the server's id (the server is held
in the value, so the id is not reused while the entry lives). At most 4,096 (then it starts again)."""
_RESOLVED: dict[tuple[int, frozenset[str]], tuple[DhcpServer, ClientOptions]] = {}
""":func:`_resolve`'s answers for a server (its id; held in the value) and the tags of a client
that its options name (:meth:`DhcpServer._resolved`). At most 4,096 (then it starts again)."""


def lease_seconds(text: str | None) -> int | None:
    """dnsmasq's lease time (``120s``, ``2m``, ``12h``, ``infinite``) in seconds; ``None`` for
    infinite. dnsmasq's default is one hour."""
    if text is None:
        return 3600
    if text == "infinite":
        return None
    m = re.fullmatch(r"(\d+)([smhdw]?)", text)
    if not m:
        raise InvalidInput(f"not a dnsmasq lease time: {text!r}")
    mult = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return int(m.group(1)) * mult


def _tags_of_range(r: DhcpRange) -> frozenset[str]:
    if r.tag is None:
        return frozenset()
    return frozenset({r.tag[4:] if r.tag.startswith("set:") else r.tag})


def _v4(values: Iterable[str]) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(v) for v in values if v)


def _classless(values: tuple[str, ...]) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    if len(values) % 2:
        raise InvalidInput(f"classless-static-route needs prefix,gateway pairs: {values}")
    return tuple((IPv4Network(values[i]), IPv4Address(values[i + 1])) for i in range(0, len(values), 2))


_OPT_NAMES = {"3": "router", "6": "dns-server", "15": "domain-name", "26": "mtu", "121": "classless-static-route"}


def _opt_name(o: DhcpOpt) -> str:
    if o.option.startswith("option:"):
        return o.option[len("option:"):]
    return _OPT_NAMES.get(o.option, o.option)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """The options one client gets."""

    router: tuple[IPv4Address, ...]
    dns: tuple[IPv4Address, ...]
    domain: str | None
    mtu: int | None
    classless: tuple[tuple[IPv4Network, IPv4Address], ...]


def _resolve(options: Iterable[DhcpOpt], tags: frozenset[str], server_ip: IPv4Address,
             dns_default: tuple[IPv4Address, ...], domain: str | None) -> ClientOptions:
    """dnsmasq's choice among ``options`` for a client whose tags are ``tags``: per option, the
    last line whose tags are all set, a tagged line beating an untagged one; the router and DNS
    server default to dnsmasq's own address."""
    chosen: dict[str, DhcpOpt] = {}
    for o in options:
        if any((t[4:] if t.startswith("tag:") else t) not in tags for t in o.tags):
            continue
        name = _opt_name(o)
        prev = chosen.get(name)
        if prev is not None and prev.tags and not o.tags:
            continue
        chosen[name] = o
    router: tuple[IPv4Address, ...] = (server_ip,)
    dns = dns_default
    mtu: int | None = None
    classless: tuple[tuple[IPv4Network, IPv4Address], ...] = ()
    for name, o in chosen.items():
        try:
            if name == "router":
                router = _v4(o.values)
            elif name == "dns-server":
                dns = tuple(a for a in _v4(o.values) if a != IPv4Address(0))
            elif name == "mtu" and o.values and o.values[0]:
                mtu = int(o.values[0])
            elif name == "domain-name" and o.values:
                domain = o.values[0]
            elif name == "classless-static-route":
                classless = _classless(tuple(x for x in o.values if x))
        except (ValueError, InvalidInput):  # dnsmasq refuses a bad value and sends nothing for it
            continue
    return ClientOptions(router, dns, domain, mtu, classless)


@dataclass(frozen=True, slots=True)
class DhcpReply:
    """What the server did with one client message: the frame it sends (``None``: silence), the
    message, dnsmasq's log lines (``DHCPOFFER(br100) 10.0.0.2 fa:16:3e:2c:e8:ec``) and a step."""

    frame: Ethernet | None
    message: DHCP | None
    log: tuple[str, ...]
    step: Step


@dataclass(frozen=True, slots=True)
class DhcpServer:
    """dnsmasq serving static leases on ``interface`` from ``server_ip``."""

    interface: str
    server_ip: IPv4Address
    server_mac: Mac | None
    netmask: IPv4Address
    ranges: tuple[DhcpRange, ...]
    hosts: tuple[DhcpHost, ...]
    router: tuple[IPv4Address, ...]
    dns: tuple[IPv4Address, ...]
    lease_time: int | None
    domain: str | None = None
    mtu: int | None = None
    classless_routes: tuple[tuple[IPv4Network, IPv4Address], ...] = ()
    pid: int = 0
    options: tuple[DhcpOpt, ...] = ()
    dns_default: tuple[IPv4Address, ...] = ()
    domain_default: str | None = None
    _by_mac: dict[Mac, tuple[DhcpHost, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_state(cls, proc: DnsmasqProcess, files: Iterable[FileState], ns: NamespaceState | None = None, *,
                   interface: str | None = None, server_ip: IPv4Address | None = None,
                   netmask: IPv4Address | None = None, server_mac: Mac | None = None) -> DhcpServer:
        """The server ``proc`` runs, reading its hosts and opts files from ``files``. ``ns`` (the
        namespace it runs in) supplies the interface's address, mask and MAC; the keywords
        override or stand in for it."""
        opts = proc.options
        by_path = {f.path: f for f in files}
        links = {lk.name: lk for lk in (ns.links if ns is not None and ns.links else ())}
        listen = next((a for a in opts.listen_addresses if isinstance(a, IPv4Address)), None)
        iface_addr: IPv4Interface | None = None
        dev = interface or opts.interface
        if dev is None and listen is not None:  # nova: --listen-address names the bridge's address
            for lk in links.values():
                if any(a.interface.ip == listen for a in lk.addresses):
                    dev = lk.name
        if dev is not None and dev in links:
            iface_addr = next((a.interface for a in links[dev].addresses
                               if isinstance(a.interface, IPv4Interface)
                               and (listen is None or a.interface.ip == listen)), None)
            if server_mac is None and links[dev].mac:
                server_mac = Mac.parse(links[dev].mac or "")
        sip = server_ip or listen or (iface_addr.ip if iface_addr is not None else None)
        if sip is None:
            raise InvalidInput(f"dnsmasq {proc.pid}: no listen address and no address on {dev}")
        ranges = tuple(r for r in opts.dhcp_ranges if isinstance(r.start, IPv4Address))
        mask = netmask
        if mask is None:
            mask = next((IPv4Address(r.netmask) for r in ranges if r.netmask and "." in r.netmask), None)
        if mask is None and iface_addr is not None:
            mask = iface_addr.netmask
        if mask is None:
            raise InvalidInput(f"dnsmasq {proc.pid}: no netmask in --dhcp-range and no interface address")
        hosts: tuple[DhcpHost, ...] = ()
        if opts.hostsfile and opts.hostsfile in by_path:
            hosts = parse_hosts_file(by_path[opts.hostsfile].text, source=opts.hostsfile)
        dhcp_opts: list[DhcpOpt] = []
        if opts.optsfile and opts.optsfile in by_path:  # dnsmasq logs a bad line and reads on
            for n, line in enumerate(by_path[opts.optsfile].text.splitlines(), start=1):
                if line.strip():
                    try:
                        dhcp_opts.append(parse_opt_line(line, n=n, source=opts.optsfile))
                    except InvalidInput:
                        continue
        forced = tuple(DhcpOpt(v.split(",")[0], tuple(v.split(",")[1:])) for v in
                       (*opts.get_all("dhcp-option-force"), *opts.get_all("dhcp-option")))
        tags = frozenset().union(*(_tags_of_range(r) for r in ranges)) if ranges else frozenset()
        options = (*forced, *dhcp_opts)
        dns_default: tuple[IPv4Address, ...] = () if opts.get("port") == "0" else (sip,)
        v = _resolve(options, tags, sip, dns_default, opts.domain)
        lease = lease_seconds(ranges[0].lease if ranges else None)
        return cls(dev or "", sip, server_mac, mask, ranges, hosts, v.router, v.dns, lease, v.domain, v.mtu,
                   v.classless, proc.pid, options, dns_default, opts.domain)

    def options_for(self, h: DhcpHost) -> ClientOptions:
        """What this server tells ``h``: the options whose tags are all set for it (its range's
        ``set:subnet-…`` and its hosts-file ``set:port-…``), a tagged one over an untagged one,
        a later line over an earlier one (dnsmasq keeps them last read first)."""
        key = (id(self), id(h))
        got = _OPTIONS.get(key)
        if got is not None and got[0] is self and got[1] is h:
            return got[2]
        tags = {t[4:] if t.startswith("set:") else t for t in h.sets}
        for r in self.ranges:
            mask = r.netmask if r.netmask and "." in r.netmask else self.netmask
            if isinstance(h.ip, IPv4Address) and isinstance(r.start, IPv4Address) and \
                    h.ip in _net_of(r.start, mask):
                tags |= _tags_of_range(r)
        out = self._resolved(frozenset(tags))
        if len(_OPTIONS) >= 4096:
            _OPTIONS.clear()
        _OPTIONS[key] = (self, h, out)
        return out

    def _resolved(self, tags: frozenset[str]) -> ClientOptions:
        """:func:`_resolve` of this server's options for a client with ``tags``, worked out once
        per server and set of the tags its options name: _resolve reads no other tag (each
        client's own ``port-…`` tag, which no option names, makes every client's set its own)."""
        named = _NAMED_TAGS.get(id(self))
        if named is None or named[0] is not self:
            named = (self, frozenset(t[4:] if t.startswith("tag:") else t for o in self.options for t in o.tags))
            if len(_NAMED_TAGS) >= 4096:
                _NAMED_TAGS.clear()
            _NAMED_TAGS[id(self)] = named
        key = (id(self), tags & named[1])
        got = _RESOLVED.get(key)
        if got is None or got[0] is not self:
            got = (self, _resolve(self.options, key[1], self.server_ip, self.dns_default, self.domain_default))
            if len(_RESOLVED) >= 4096:
                _RESOLVED.clear()
            _RESOLVED[key] = got
        return got[1]

    @property
    def network(self) -> IPv4Network:
        return _net_of(self.server_ip, self.netmask)

    def host_for(self, hw: Mac) -> DhcpHost | None:
        """The static lease of ``hw`` whose address this server's ranges serve."""
        if not self._by_mac and self.hosts:  # indexed once: a server may hold thousands of hosts
            for h in self.hosts:
                try:
                    m = Mac.parse(h.mac)
                except ValueError:
                    continue
                self._by_mac[m] = (*self._by_mac.get(m, ()), h)
        for h in self._by_mac.get(hw, ()):
            if isinstance(h.ip, IPv4Address) and self._in_range(h.ip):
                return h
        return None

    def _in_range(self, a: IPv4Address) -> bool:
        for r in self.ranges:
            start = r.start
            if not isinstance(start, IPv4Address):
                continue
            net = _net_of(start, self.netmask)
            if a in net and a != net.network_address and a != net.broadcast_address:
                return True
        return False

    def _hostname(self, h: DhcpHost) -> str:
        return h.hostname.rstrip(".").split(".", 1)[0]

    def _message(self, req: DHCP, mtype: DHCPMessageType, h: DhcpHost | None) -> DHCP:
        if mtype == DHCPMessageType.NAK:
            return DHCP(op=BootOp.REPLY, xid=req.xid, chaddr=req.chaddr, broadcast=req.broadcast,
                        message_type=mtype, server_id=self.server_ip)
        assert h is not None and isinstance(h.ip, IPv4Address)
        lease = self.lease_time
        o = self.options_for(h) if self.options else ClientOptions(self.router, self.dns, self.domain, self.mtu,
                                                                  self.classless_routes)
        return DHCP(op=BootOp.REPLY, xid=req.xid, chaddr=req.chaddr, broadcast=req.broadcast, ciaddr=req.ciaddr,
                    yiaddr=h.ip, siaddr=self.server_ip, message_type=mtype, server_id=self.server_ip,
                    lease_time=INFINITE if lease is None else lease,
                    renewal_time=None if lease is None else lease // 2,
                    rebinding_time=None if lease is None else lease * 7 // 8,
                    subnet_mask=self.netmask, broadcast_address=self.network.broadcast_address,
                    router=o.router, dns=o.dns, domain=o.domain, hostname=self._hostname(h),
                    mtu=o.mtu, classless_routes=o.classless)

    def handle(self, frame: Ethernet) -> DhcpReply:
        """Answer the DHCP message in ``frame`` (a client's, to port 67)."""
        ip4 = frame.payload
        if not isinstance(ip4, IPv4) or not isinstance(ip4.payload, UDP) or ip4.payload.dport != 67 \
                or not isinstance(ip4.payload.payload, DHCP):
            return DhcpReply(None, None, (), Step(StepKind.DROP, "dnsmasq", "not a DHCP request"))
        return self.handle_message(ip4.payload.payload)

    def handle_message(self, req: DHCP) -> DhcpReply:
        hw = req.chaddr
        tag = f"({self.interface})"
        h = self.host_for(hw)
        ip = h.ip if h is not None and isinstance(h.ip, IPv4Address) else None
        if req.message_type == DHCPMessageType.DISCOVER:
            if ip is None:
                line = f"DHCPDISCOVER{tag} {hw} no address available"
                return DhcpReply(None, None, (line,), Step(StepKind.DROP, f"dnsmasq[{self.pid}]", line))
            return self._send(req, DHCPMessageType.OFFER, h, (f"DHCPDISCOVER{tag} {hw} ", f"DHCPOFFER{tag} {ip} {hw} "))
        if req.message_type == DHCPMessageType.REQUEST:
            if req.server_id is not None and req.server_id != self.server_ip:
                line = f"DHCPREQUEST{tag} {req.requested_ip} {hw} (for another server)"
                return DhcpReply(None, None, (), Step(StepKind.DROP, f"dnsmasq[{self.pid}]", line))
            asked = req.requested_ip if req.requested_ip is not None else req.ciaddr
            first = f"DHCPREQUEST{tag} {asked} {hw} "
            if ip is None:
                line = f"DHCPNAK{tag} {asked} {hw} address not available"
                if asked in self.network:
                    return self._send(req, DHCPMessageType.NAK, None, (first, line))
                return DhcpReply(None, None, (first,), Step(StepKind.DROP, f"dnsmasq[{self.pid}]", "unknown client"))
            if asked != ip:
                return self._send(req, DHCPMessageType.NAK, None, (first, f"DHCPNAK{tag} {asked} {hw} wrong address"))
            assert h is not None
            return self._send(req, DHCPMessageType.ACK, h, (first, f"DHCPACK{tag} {ip} {hw} {self._hostname(h)}"))
        if req.message_type == DHCPMessageType.RELEASE:
            line = f"DHCPRELEASE{tag} {req.ciaddr} {hw} "
            return DhcpReply(None, None, (line,), Step(StepKind.DELIVER, f"dnsmasq[{self.pid}]", line))
        return DhcpReply(None, None, (), Step(StepKind.DROP, f"dnsmasq[{self.pid}]",
                                              f"message type {req.message_type} ignored"))

    def _send(self, req: DHCP, mtype: DHCPMessageType, h: DhcpHost | None, log: tuple[str, ...]) -> DhcpReply:
        msg = self._message(req, mtype, h)
        if self.server_mac is None:
            raise InvalidInput(f"dnsmasq on {self.interface}: the interface's MAC is not known")
        frame = dhcp_server_frame(msg, self.server_mac, self.server_ip, broadcast=mtype == DHCPMessageType.NAK)
        return DhcpReply(frame, msg, log, Step(StepKind.REPLY, f"dnsmasq[{self.pid}]", log[-1].rstrip()))


# --- metadata --------------------------------------------------------------------------------

METADATA_IP = IPv4Address("169.254.169.254")


@dataclass(frozen=True, slots=True)
class MetadataInstance:
    """What the metadata API knows of one instance (``instance_id`` is nova's integer id)."""

    fixed_ip: IPv4Address
    instance_id: int
    hostname: str = ""
    public_ipv4: IPv4Address | None = None
    public_keys: tuple[tuple[str, str], ...] = ()  # (name, openssh key)
    user_data: bytes | None = None

    @property
    def ec2_id(self) -> str:
        return f"i-{self.instance_id:08x}"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    body: bytes = b""

    def to_bytes(self) -> bytes:
        head = (f"HTTP/1.1 {self.status} {self.reason}\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n")
        return head.encode() + self.body


NOT_FOUND = HttpResponse(404, "Not Found", b"404 Not Found\n\nThe resource could not be found.\n\n   ")


def http_get_path(data: bytes) -> str | None:
    """The path of an HTTP GET request (``GET /latest/meta-data/ HTTP/1.1``)."""
    first = data.split(b"\r\n", 1)[0].decode("latin-1").split()
    return first[1] if len(first) == 3 and first[0] == "GET" else None


class MetadataEndpoint:
    """The EC2-style metadata API nova serves, keyed by the caller's fixed IP (what the seeds'
    DNAT to nova-api or the neutron metadata proxy delivers). Versions ``latest`` and dated ones
    (``2009-04-04``) answer the same."""

    def __init__(self, instances: Iterable[MetadataInstance]) -> None:
        self.instances = {i.fixed_ip: i for i in instances}

    def get(self, client: IPv4Address, path: str) -> HttpResponse:
        inst = self.instances.get(client)
        if inst is None:
            return NOT_FOUND
        parts = [p for p in path.split("/") if p]
        if not parts or not (parts[0] == "latest" or re.fullmatch(r"\d{4}-\d{2}-\d{2}", parts[0])):
            return NOT_FOUND if parts else HttpResponse(200, "OK", b"1.0\nlatest\n")
        rest = parts[1:]
        if rest == ["user-data"]:
            return HttpResponse(200, "OK", inst.user_data) if inst.user_data is not None else NOT_FOUND
        if rest[:1] != ["meta-data"]:
            return NOT_FOUND if rest else HttpResponse(200, "OK", b"meta-data/\nuser-data\n")
        values = {
            "instance-id": inst.ec2_id,
            "hostname": inst.hostname,
            "local-hostname": inst.hostname,
            "local-ipv4": str(inst.fixed_ip),
            "public-ipv4": str(inst.public_ipv4) if inst.public_ipv4 is not None else "",
        }
        key = rest[1:]
        if not key:
            names = sorted(values) + (["public-keys/"] if inst.public_keys else [])
            return HttpResponse(200, "OK", "\n".join(names).encode())
        if key[0] == "public-keys":
            if not inst.public_keys:
                return NOT_FOUND
            if len(key) == 1:
                return HttpResponse(200, "OK", "\n".join(f"{i}={n}" for i, (n, _) in
                                                         enumerate(inst.public_keys)).encode())
            idx = int(key[1].split("=")[0]) if key[1].split("=")[0].isdigit() else -1
            if 0 <= idx < len(inst.public_keys):
                return HttpResponse(200, "OK", inst.public_keys[idx][1].encode()) if len(key) > 2 \
                    else HttpResponse(200, "OK", b"openssh-key")
            return NOT_FOUND
        if len(key) == 1 and key[0] in values:
            return HttpResponse(200, "OK", values[key[0]].encode())
        return NOT_FOUND

    def handle(self, frame: Ethernet, *, client: IPv4Address | None = None) -> Ethernet | None:
        """Answer a TCP segment to port 80 (or 8775, after nova-network's DNAT): SYN gets SYN-ACK,
        a GET gets the response (PSH|ACK|FIN). ``client`` overrides the source address used as
        the key (the X-Forwarded-For of a proxy)."""
        ip4 = frame.payload
        if not isinstance(ip4, IPv4) or not isinstance(ip4.payload, TCP):
            return None
        seg = ip4.payload
        if seg.flags & TCPFlag.SYN:
            flags, body, ack = TCPFlag.SYN | TCPFlag.ACK, None, seg.seq + 1
        elif isinstance(seg.payload, Raw) and (path := http_get_path(seg.payload.data)) is not None:
            resp = self.get(client if client is not None else ip4.src, path)
            flags, body, ack = TCPFlag.PSH | TCPFlag.ACK | TCPFlag.FIN, Raw(data=resp.to_bytes()), \
                seg.seq + len(seg.payload.data)
        else:
            return None
        out = TCP(sport=seg.dport, dport=seg.sport, seq=0 if seg.flags & TCPFlag.SYN else 1, ack=ack & 0xFFFFFFFF,
                  flags=flags, payload=body)
        return Ethernet(dst=frame.src, src=frame.dst, payload=IPv4(src=ip4.dst, dst=ip4.src, df=True, payload=out))
