"""A guest's eth0, as a CirrOS instance behaves: udhcpc, ARP, ICMP echo, dropbear on 22, a web
server on 80, and the frames it originates (ping, a TCP SYN, curl to the metadata address).

A guest without a lease has no address: it answers no ARP and cannot originate IP (the
broken-DHCP case).

>>> from neutrino.sim.packets import mac, summary
>>> g = Guest("cirros", mac("fa:16:3e:2c:e8:ec"))
>>> summary(g.discover())
'IP 0.0.0.0.68 > 255.255.255.255.67: BOOTP/DHCP, Request from fa:16:3e:2c:e8:ec, length 300'
>>> g.state.value, g.address is None
('selecting', True)
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Generator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from neutrino.errors import InvalidInput
from neutrino.sim.packets import (
    ARP,
    BROADCAST,
    DHCP,
    ICMP,
    TCP,
    UDP,
    ARPOp,
    DHCPMessageType,
    Ethernet,
    ICMPType,
    IPv4,
    Mac,
    Raw,
    TCPFlag,
    UnreachCode,
    arp_reply,
    arp_request,
    dhcp_client_frame,
    echo_reply,
    echo_request,
    icmp_error,
)
from neutrino.sim.trace import Step, StepKind

METADATA_IP = IPv4Address("169.254.169.254")
LISTENING = frozenset({22, 80})
"""dropbear and a web server: the ports a guest accepts connections on."""
PARAMS = (1, 3, 6, 12, 15, 28, 42)
"""udhcpc's parameter request list: mask, router, dns, hostname, domain, broadcast, ntp."""


class DhcpState(enum.Enum):
    INIT = "init"
    SELECTING = "selecting"  # DISCOVER sent
    REQUESTING = "requesting"  # REQUEST sent
    BOUND = "bound"


@dataclass(frozen=True, slots=True)
class Lease:
    """What udhcpc configured from an ACK."""

    address: IPv4Interface
    server: IPv4Address
    lease_time: int
    router: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    domain: str | None
    hostname: str | None
    mtu: int | None
    routes: tuple[tuple[IPv4Network, IPv4Address], ...]


@dataclass(frozen=True, slots=True)
class GuestReply:
    """The guest's reaction to one frame: frames it sends back, its console lines, a step."""

    frames: tuple[Ethernet, ...]
    console: tuple[str, ...]
    step: Step


_SYN, _ACK = int(TCPFlag.SYN), int(TCPFlag.ACK)


class Guest:
    """An instance's eth0. State changes only through :meth:`receive` and the DHCP methods."""

    def __init__(self, name: str, mac: Mac, mtu: int = 1500, *, xid: int | None = None) -> None:
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.xid = xid if xid is not None else mac.value & 0xFFFFFFFF
        self.state = DhcpState.INIT
        self.lease: Lease | None = None
        self.console: list[str] = []
        self._offer: DHCP | None = None
        self._neigh: dict[IPv4Address, Mac] = {}
        self._isn = 1000
        self._conns: set[tuple[IPv4Address, int, int]] = set()  # (peer, its port, ours) this guest opened
        self._echoes: dict[int, tuple[Ethernet, GuestReply]] = {}  # see receive
        self._pings: dict[tuple[int, ...], Ethernet] = {}  # see ping
        self._ip_of: tuple[Lease, IPv4Address] | None = None  # see ip

    def __getstate__(self) -> dict[str, object]:
        """Everything but the remembered echo requests and replies (:meth:`ping`, :meth:`receive`)."""
        state = dict(self.__dict__)
        state.pop("_echoes", None)
        state.pop("_pings", None)
        state.pop("_ip_of", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._echoes = {}
        self._pings = {}
        self._ip_of = None

    # -- address --

    @property
    def address(self) -> IPv4Interface | None:
        return self.lease.address if self.lease is not None else None

    @property
    def ip(self) -> IPv4Address | None:
        """The lease's address: one object per lease (``IPv4Interface.ip`` makes a new one on every
        read), kept with the (immutable) lease it came from, which is held, so it is the lease's
        own until the lease is replaced."""
        lease = self.lease
        if lease is None:
            return None
        got = self._ip_of
        if got is not None and got[0] is lease:
            return got[1]
        ip = lease.address.ip
        self._ip_of = (lease, ip)
        return ip

    def _need_ip(self) -> IPv4Address:
        ip = self.ip
        if ip is None:
            raise InvalidInput(f"{self.name} has no address (no DHCP lease)")
        return ip

    # -- DHCP (udhcpc) --

    def _client_id(self) -> bytes:
        return b"\x01" + self.mac.value.to_bytes(6, "big")

    def discover(self) -> Ethernet:
        """udhcpc's "Sending discover...": a broadcast from 0.0.0.0:68 to 255.255.255.255:67."""
        self.state = DhcpState.SELECTING
        self.console.append("Sending discover...")
        return dhcp_client_frame(DHCP(xid=self.xid, chaddr=self.mac, message_type=DHCPMessageType.DISCOVER,
                                      client_id=self._client_id(), param_request_list=PARAMS))

    def _request(self, offer: DHCP) -> Ethernet:
        self.state = DhcpState.REQUESTING
        self._offer = offer
        self.console.append(f"Sending select for {offer.yiaddr}...")
        return dhcp_client_frame(DHCP(xid=self.xid, chaddr=self.mac, message_type=DHCPMessageType.REQUEST,
                                      requested_ip=offer.yiaddr, server_id=offer.server_id,
                                      client_id=self._client_id(), param_request_list=PARAMS))

    def _bind(self, ack: DHCP) -> None:
        mask = ack.subnet_mask or IPv4Address("255.255.255.0")
        server = ack.server_id or IPv4Address(0)
        lt = ack.lease_time if ack.lease_time is not None else 0
        self.lease = Lease(IPv4Interface(f"{ack.yiaddr}/{mask}"), server, lt, ack.router[0] if ack.router else None,
                           ack.dns, ack.domain, ack.hostname, ack.mtu, ack.classless_routes)
        if ack.mtu:
            self.mtu = ack.mtu
        self.state = DhcpState.BOUND
        self.console.append(f"Lease of {ack.yiaddr} obtained, lease time {lt}")
        self.console.extend(f"adding dns {d}" for d in ack.dns)

    def _on_dhcp(self, msg: DHCP) -> GuestReply:
        if msg.xid != self.xid or msg.chaddr != self.mac:
            return GuestReply((), (), Step(StepKind.DROP, self.name, "DHCP reply for another client"))
        if self.state == DhcpState.SELECTING and msg.message_type == DHCPMessageType.OFFER:
            frame = self._request(msg)
            return GuestReply((frame,), (self.console[-1],), Step(StepKind.REPLY, self.name,
                                                                    f"udhcpc: select {msg.yiaddr}"))
        if self.state == DhcpState.REQUESTING and msg.message_type == DHCPMessageType.ACK:
            self._bind(msg)
            return GuestReply((), tuple(self.console[-1 - len(msg.dns):]),
                              Step(StepKind.DELIVER, self.name, f"udhcpc: bound {self.address}"))
        if msg.message_type == DHCPMessageType.NAK:
            self.state, self.lease, self._offer = DhcpState.INIT, None, None
            self.console.append("Received DHCP NAK")
            return GuestReply((), ("Received DHCP NAK",), Step(StepKind.DROP, self.name, "udhcpc: NAK, back to init"))
        return GuestReply((), (), Step(StepKind.DROP, self.name, f"udhcpc: {msg.message_type} ignored in "
                                                                 f"{self.state.value}"))

    def boot(self) -> Generator[Ethernet, Ethernet | None, Lease | None]:
        """The DHCP exchange as a generator: it yields the frames to send and takes the server's
        reply (or ``None`` for silence) through ``send``; it returns the lease, or ``None``
        when no answer came (udhcpc gives up: "No lease, failing").

        >>> g = Guest("vm", Mac(1))
        >>> run = g.boot()
        >>> summary_ok = next(run).payload.payload.payload.message_type == DHCPMessageType.DISCOVER
        >>> try:
        ...     run.send(None)
        ... except StopIteration as stop:
        ...     print(summary_ok, stop.value, g.console[-1])
        True None No lease, failing
        """
        reply = yield self.discover()
        while True:
            if reply is None:
                self.console.append("No lease, failing")
                self.state = DhcpState.INIT
                return None
            out = self.receive(reply)
            if self.state == DhcpState.BOUND:
                return self.lease
            if not out.frames:
                self.console.append("No lease, failing")
                return None
            reply = yield out.frames[0]

    # -- routing inside the guest --

    def next_hop(self, dst: IPv4Address) -> IPv4Address | None:
        """On-link destinations directly; else the classless routes (RFC 3442: they replace the
        router option), else the default router."""
        if self.lease is None:
            return None
        if dst in self.lease.address.network:
            return dst
        if self.lease.routes:
            best = max((r for r in self.lease.routes if dst in r[0]), key=lambda r: r[0].prefixlen, default=None)
            if best is None:
                return None
            return dst if best[1] == IPv4Address(0) else best[1]
        return self.lease.router

    def resolve(self, addr: IPv4Address) -> Mac | None:
        return self._neigh.get(addr)

    def learn(self, addr: IPv4Address, hw: Mac) -> None:
        self._neigh[addr] = hw

    def forget(self, macs: Collection[Mac]) -> None:
        """Drop neighbours at ``macs`` (instances that are gone)."""
        for addr in [a for a, m in self._neigh.items() if m in macs]:
            del self._neigh[addr]

    def arp_request_for(self, addr: IPv4Address) -> Ethernet:
        return arp_request(self.mac, self._need_ip(), addr)

    # -- originating --

    def ping(self, dst: IPv4Address, *, dst_mac: Mac, seq: int = 1, id: int = 1) -> Ethernet:
        """An echo request to ``dst`` in a frame to ``dst_mac`` (the next hop's MAC): the same
        (immutable) frame for the same arguments and address, which the elements it crosses then
        find by identity."""
        src = self._need_ip()
        key = (dst._ip, dst_mac.value, seq, id, src._ip)  # type: ignore[attr-defined] # (ints: hashed in C)
        got = self._pings.get(key)
        if got is None:
            got = echo_request(self.mac, dst_mac, src, dst, id=id, seq=seq)
            if len(self._pings) >= 256:
                self._pings.clear()
            self._pings[key] = got
        return got

    def tcp_syn(self, dst: IPv4Address, dport: int, *, dst_mac: Mac, sport: int = 40000) -> Ethernet:
        return self.tcp_segment(dst, dport, dst_mac=dst_mac, sport=sport, flags=TCPFlag.SYN)

    def tcp_segment(self, dst: IPv4Address, dport: int, *, dst_mac: Mac, sport: int = 40000,
                    flags: TCPFlag = TCPFlag.SYN) -> Ethernet:
        """A TCP segment with ``flags`` (a SYN opens a connection; an ACK without a connection is
        what ``hping3 -A`` or a stale connection sends: the peer answers it with a reset)."""
        self.opened(dst, dport, sport)
        return Ethernet(dst=dst_mac, src=self.mac, payload=IPv4(
            src=self._need_ip(), dst=dst, df=True,
            payload=TCP(sport=sport, dport=dport, seq=self._isn, ack=1 if flags & TCPFlag.ACK else 0,
                        flags=flags, window=64240)))

    def opened(self, peer: IPv4Address, dport: int, sport: int) -> None:
        """Remember the connection this guest opened (its answers are not strays to reset)."""
        conns: set[tuple[IPv4Address, int, int]] | None = getattr(self, "_conns", None)
        if conns is None:  # a guest pickled before guests kept their connections
            conns = set()
            self._conns = conns
        conns.add((peer, dport, sport))

    def _knows(self, peer: IPv4Address, sport: int, dport: int) -> bool:
        conns: set[tuple[IPv4Address, int, int]] = getattr(self, "_conns", None) or set()
        return (peer, sport, dport) in conns

    def http_get(self, path: str, *, dst_mac: Mac, dst: IPv4Address = METADATA_IP, sport: int = 40001) -> Ethernet:
        """The request segment of ``wget http://169.254.169.254<path>`` (after the handshake)."""
        req = f"GET {path} HTTP/1.1\r\nHost: {dst}\r\nUser-Agent: Wget\r\nConnection: close\r\n\r\n".encode()
        self.opened(dst, 80, sport)
        return Ethernet(dst=dst_mac, src=self.mac, payload=IPv4(
            src=self._need_ip(), dst=dst, df=True,
            payload=TCP(sport=sport, dport=80, seq=self._isn + 1, ack=1, flags=TCPFlag.PSH | TCPFlag.ACK,
                        payload=Raw(data=req))))

    # -- receiving --

    def receive(self, frame: Ethernet) -> GuestReply:
        """React to a frame arriving on eth0."""
        if frame.dst != self.mac and frame.dst != BROADCAST:
            return GuestReply((), (), Step(StepKind.DROP, self.name, f"frame to {frame.dst}, not {self.mac}"))
        p = frame.payload
        if isinstance(p, ARP):
            return self._on_arp(p)
        if not isinstance(p, IPv4):
            return GuestReply((), (), Step(StepKind.DROP, self.name, f"ethertype 0x{frame.type:04x}"))
        if isinstance(p.payload, UDP) and p.payload.dport == 68 and isinstance(p.payload.payload, DHCP):
            return self._on_dhcp(p.payload.payload)
        ip = self.ip
        if ip is None or p.dst != ip:
            return GuestReply((), (), Step(StepKind.DROP, self.name, f"{p.dst} is not this guest's address"))
        self.learn(p.src, frame.src)  # good enough for replies on a flat segment or via the router
        l4 = p.payload
        if isinstance(l4, ICMP) or (isinstance(l4, TCP) and (flags := int(l4.flags)) & _SYN and not flags & _ACK):
            # an echo request's reply, another ICMP message's delivery, a SYN's SYN-ACK or reset:
            # made of the frame (held: its id is the key) and what never changes (our name and MAC,
            # listening ports, initial sequence number). (The flags as ints: an IntFlag's & is Python code.)
            got = self._echoes.get(id(frame))
            if got is not None and got[0] is frame:
                return got[1]
            reply = self._answer(frame, p, l4)
            if len(self._echoes) >= 256:
                self._echoes.clear()
            self._echoes[id(frame)] = (frame, reply)
            return reply
        return self._answer(frame, p, l4)

    def _answer(self, frame: Ethernet, p: IPv4, l4: object) -> GuestReply:
        """:meth:`receive`'s answer to an IPv4 packet for this guest (its sender learned)."""
        if isinstance(l4, ICMP) and l4.type == ICMPType.ECHO_REQUEST:
            return GuestReply((echo_reply(frame, src_mac=self.mac),), (),
                              Step(StepKind.REPLY, self.name, f"echo reply to {p.src}"))
        if isinstance(l4, ICMP):
            return GuestReply((), (), Step(StepKind.DELIVER, self.name, f"ICMP type {l4.type} from {p.src}"))
        if isinstance(l4, TCP):
            return self._on_tcp(frame, p, l4)
        if isinstance(l4, UDP):
            err = IPv4(src=p.dst, dst=p.src, payload=icmp_error(ICMPType.DEST_UNREACH, UnreachCode.PORT, p))
            return GuestReply((Ethernet(dst=frame.src, src=self.mac, payload=err),), (),
                              Step(StepKind.REPLY, self.name, f"udp port {l4.dport} unreachable"))
        return GuestReply((), (), Step(StepKind.DROP, self.name, f"protocol {p.proto}"))

    def _on_arp(self, p: ARP) -> GuestReply:
        ip = self.ip
        if p.op == ARPOp.REPLY:
            self.learn(p.psrc, p.hwsrc)
            return GuestReply((), (), Step(StepKind.ARP, self.name, f"{p.psrc} is-at {p.hwsrc}: learned"))
        if ip is None or p.pdst != ip:
            return GuestReply((), (), Step(StepKind.DROP, self.name, f"who-has {p.pdst}: not this guest"))
        self.learn(p.psrc, p.hwsrc)
        return GuestReply((arp_reply(self.mac, ip, p.hwsrc, p.psrc),), (),
                          Step(StepKind.REPLY, self.name, f"{ip} is-at {self.mac}"))

    def _on_tcp(self, frame: Ethernet, p: IPv4, seg: TCP) -> GuestReply:
        syn_only = seg.flags & TCPFlag.SYN and not seg.flags & TCPFlag.ACK
        if not syn_only and (seg.flags & TCPFlag.RST or self._knows(p.src, seg.sport, seg.dport)):
            return GuestReply((), (), Step(StepKind.DELIVER, self.name, f"tcp segment to port {seg.dport}"))
        if not syn_only:  # no connection it belongs to: RFC 793's reset, as Linux sends it
            size = len(seg.payload.data) if isinstance(seg.payload, Raw) else 0
            out_seg = reset_for(seg, size, listening=seg.dport in LISTENING)
            if out_seg is None:
                return GuestReply((), (), Step(StepKind.DROP, self.name,
                                               f"tcp segment to listening port {seg.dport} without ACK: discarded"))
            reply = Ethernet(dst=frame.src, src=self.mac, payload=IPv4(src=p.dst, dst=p.src, df=True, payload=out_seg))
            return GuestReply((reply,), (), Step(StepKind.REPLY, self.name,
                                                 f"RST: no connection for port {seg.dport}"))
        if seg.dport in LISTENING:
            out = TCP(sport=seg.dport, dport=seg.sport, seq=self._isn, ack=(seg.seq + 1) & 0xFFFFFFFF,
                      flags=TCPFlag.SYN | TCPFlag.ACK, window=64240)
            what = f"SYN-ACK from port {seg.dport}"
        else:
            out = TCP(sport=seg.dport, dport=seg.sport, seq=0, ack=(seg.seq + 1) & 0xFFFFFFFF,
                      flags=TCPFlag.RST | TCPFlag.ACK, window=0)
            what = f"RST: nothing listens on port {seg.dport}"
        reply = Ethernet(dst=frame.src, src=self.mac, payload=IPv4(src=p.dst, dst=p.src, df=True, payload=out))
        return GuestReply((reply,), (), Step(StepKind.REPLY, self.name, what))


def reset_for(seg: TCP, length: int = 0, *, listening: bool = False) -> TCP | None:
    """The reset a kernel sends for ``seg``, a segment no connection owns (RFC 793, Linux's
    ``tcp_v4_send_reset``): to an ACK, a RST with the ACK's number as its sequence; to anything
    else, a RST/ACK acknowledging it. ``None``: no answer (a reset is never answered, and a
    listening socket silently discards a segment with neither SYN nor ACK)."""
    if seg.flags & TCPFlag.RST:
        return None
    if seg.flags & TCPFlag.ACK:
        return TCP(sport=seg.dport, dport=seg.sport, seq=seg.ack, flags=TCPFlag.RST, window=0)
    if listening and not seg.flags & TCPFlag.SYN:
        return None
    size = length + (1 if seg.flags & TCPFlag.SYN else 0) + (1 if seg.flags & TCPFlag.FIN else 0)
    return TCP(sport=seg.dport, dport=seg.sport, seq=0, ack=(seg.seq + size) & 0xFFFFFFFF,
               flags=TCPFlag.RST | TCPFlag.ACK, window=0)
