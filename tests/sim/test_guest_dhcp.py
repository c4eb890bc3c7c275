"""Guests and services: the udhcpc ↔ dnsmasq exchange with servers built from the seeds' dnsmasq
command lines (seed 000's neutron qdhcp, seed 004's nova-network br100), the metadata API as seed
004's console log shows it, and a guest's ARP, ICMP and TCP answers."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from neutrino.errors import InvalidInput
from neutrino.host.dnsmasq import parse_ps_line
from neutrino.host.iproute import restore_ip_breaks
from neutrino.host.iproute_link import parse_ip_addr, parse_ip_addr_partial
from neutrino.host.state import FileState, NamespaceState
from neutrino.sim.guest import DhcpState, Guest, Lease
from neutrino.sim.packets import (
    DHCP,
    TCP,
    UDP,
    DHCPMessageType,
    Ethernet,
    IPv4,
    Raw,
    TCPFlag,
    arp_request,
    dhcp_client_frame,
    echo_request,
    from_bytes,
    ip,
    mac,
    summary,
    to_bytes,
)
from neutrino.sim.services import DhcpServer, MetadataEndpoint, MetadataInstance, lease_seconds
from neutrino.sim.trace import StepKind
from tests.seeds import between, excerpt, seed_text

NB = "\u00a0"
SEED000_DIR = "/var/lib/quantum/dhcp/88b1609c-68e0-49ca-a658-f1edff54a264"
SEED000_VM = mac("fa:16:3e:dd:c1:62")  # the instance behind br-tun's dl_dst=fa:16:3e:dd:c1:62
SEED004_VM = mac("fa:16:3e:2c:e8:ec")


def nb(s: str) -> str:
    return s.replace(" ", NB)


def seed000_server() -> DhcpServer:
    """Seed 000's dnsmasq (``ps -fe``), in its qdhcp namespace (``ip addr``), with a hosts file
    for the instance and an opts file written as the reference's §8.3 describes (the range's tag
    is ``tag0`` in this Folsom-era command line)."""
    proc = parse_ps_line(excerpt(0, "nobody   23195").strip())
    ns = NamespaceState("qdhcp-88b1609c-68e0-49ca-a658-f1edff54a264",
                        links=parse_ip_addr(between(0, "71: ns-f14c598d-98", "\n\nNote the MAC")))
    files = (FileState(f"{SEED000_DIR}/host", f"{SEED000_VM},host-10-1-0-2.openstacklocal,10.1.0.2\n"),
             FileState(f"{SEED000_DIR}/opts", "tag:tag0,option:router,10.1.0.1\n"))
    return DhcpServer.from_state(proc, files, ns)


def seed004_server() -> DhcpServer:
    """Seed 004's controller: ``ps aux | grep dnsmasq`` (the child), ``ip a`` (br100 holds
    10.0.0.1/24) and ``cat /var/lib/nova/networks/nova-br100.conf``."""
    proc = parse_ps_line(between(4, nb("nobody    2729"), nb("root      2730")))
    text = restore_ip_breaks(between(4, nb("... (loopback has the metadata"), nb("openstack@compute-1:~$ cat")))
    ns = NamespaceState(links=parse_ip_addr_partial(text).items)
    conf = between(4, "fa:16:3e:2c:e8:ec,", "10.0.0.2", include_end=True)
    return DhcpServer.from_state(proc, (FileState("/var/lib/nova/networks/nova-br100.conf", conf + "\n"),), ns)


def exchange(guest: Guest, server: DhcpServer) -> tuple[Lease | None, list[str]]:
    """Run the guest's boot generator against the server; return the lease and dnsmasq's log."""
    log: list[str] = []
    run = guest.boot()
    frame = next(run)
    try:
        while True:
            # what the server receives went over the wire: bytes there and back
            reply = server.handle(from_bytes(to_bytes(frame)))
            log.extend(reply.log)
            frame = run.send(reply.frame if reply.frame is None else from_bytes(to_bytes(reply.frame)))
    except StopIteration as stop:
        return stop.value, log


# --- DHCP --------------------------------------------------------------------------------------

def test_seed000_dhcp_exchange() -> None:
    server = seed000_server()
    assert (server.interface, server.server_ip, server.server_mac) == (
        "ns-f14c598d-98", ip("10.1.0.3"), mac("fa:16:3e:10:2f:03"))
    guest = Guest("vm", SEED000_VM)
    lease, log = exchange(guest, server)
    assert lease is not None and guest.state is DhcpState.BOUND
    assert lease.address == IPv4Interface("10.1.0.2/24") and lease.lease_time == 120
    assert lease.router == ip("10.1.0.1")  # from the opts file, not dnsmasq's own 10.1.0.3
    assert lease.dns == (ip("10.1.0.3"),)  # dnsmasq announces itself
    assert (lease.domain, lease.hostname, lease.server) == ("openstacklocal", "host-10-1-0-2", ip("10.1.0.3"))
    assert log[-1] == f"DHCPACK(ns-f14c598d-98) 10.1.0.2 {SEED000_VM} host-10-1-0-2"
    assert guest.next_hop(ip("8.8.8.8")) == ip("10.1.0.1") and guest.next_hop(ip("10.1.0.3")) == ip("10.1.0.3")


def test_seed004_dhcp_exchange_matches_console_and_syslog() -> None:
    """004: "Sending discover... Sending select for 10.0.0.2... Lease of 10.0.0.2 obtained, lease
    time 120 ... adding dns 10.0.0.1" in the console log, and dnsmasq's DHCPOFFER/DHCPREQUEST/
    DHCPACK(br100) lines in syslog; the gateway is br100's 10.0.0.1."""
    server = seed004_server()
    assert (server.interface, server.server_ip, server.server_mac) == ("br100", ip("10.0.0.1"),
                                                                       mac("08:00:27:8f:87:fa"))
    guest = Guest("cirros", SEED004_VM)
    lease, log = exchange(guest, server)
    assert lease is not None
    assert (lease.address, lease.router, lease.dns) == (IPv4Interface("10.0.0.2/24"), ip("10.0.0.1"), (ip("10.0.0.1"),))
    assert (lease.domain, lease.hostname, lease.lease_time) == ("novalocal", "cirros", 120)
    seed = seed_text(4).replace(NB, " ")
    for line in guest.console:
        assert line in seed, line
    assert guest.console == ["Sending discover...", "Sending select for 10.0.0.2...",
                             "Lease of 10.0.0.2 obtained, lease time 120", "adding dns 10.0.0.1"]
    for line in log[1:]:
        assert f"dnsmasq-dhcp[2729]: {line}" in seed, line
    assert log[1:] == ["DHCPOFFER(br100) 10.0.0.2 fa:16:3e:2c:e8:ec ", "DHCPREQUEST(br100) 10.0.0.2 fa:16:3e:2c:e8:ec ",
                       "DHCPACK(br100) 10.0.0.2 fa:16:3e:2c:e8:ec cirros"]


def test_dhcp_frames_on_the_wire() -> None:
    server = seed004_server()
    guest = Guest("cirros", SEED004_VM)
    discover = guest.discover()
    assert isinstance(discover.payload, IPv4) and isinstance(discover.payload.payload, UDP)
    assert (discover.payload.src, discover.payload.dst, discover.payload.payload.sport,
            discover.payload.payload.dport) == (ip("0.0.0.0"), ip("255.255.255.255"), 68, 67)
    offer = server.handle(discover)
    assert offer.frame is not None and offer.step.kind is StepKind.REPLY
    assert summary(offer.frame).startswith("IP 10.0.0.1.67 > 10.0.0.2.68: BOOTP/DHCP, Reply, length ")
    assert offer.frame.dst == SEED004_VM
    assert offer.message is not None and offer.message.message_type == DHCPMessageType.OFFER
    assert (offer.message.renewal_time, offer.message.rebinding_time) == (60, 105)
    request = guest.receive(offer.frame).frames[0]
    udp = request.payload.payload if isinstance(request.payload, IPv4) else None
    msg = udp.payload if isinstance(udp, UDP) else None
    assert isinstance(msg, DHCP) and (msg.message_type, msg.requested_ip, msg.server_id) == (
        DHCPMessageType.REQUEST, ip("10.0.0.2"), ip("10.0.0.1"))


def test_unknown_mac_gets_no_answer() -> None:
    server = seed004_server()
    guest = Guest("stray", mac("fa:16:3e:00:00:99"))
    lease, log = exchange(guest, server)
    assert lease is None and guest.address is None and guest.state is DhcpState.INIT
    assert log == ["DHCPDISCOVER(br100) fa:16:3e:00:00:99 no address available"]
    assert guest.console[-1] == "No lease, failing"
    with pytest.raises(InvalidInput, match="no address"):
        guest.ping(ip("10.0.0.1"), dst_mac=server.server_mac or mac("00:00:00:00:00:00"))
    # nor does it answer ARP for anything
    assert guest.receive(arp_request(mac("08:00:27:8f:87:fa"), ip("10.0.0.1"), ip("10.0.0.2"))).frames == ()


def test_request_for_a_wrong_address_is_naked() -> None:
    server = seed004_server()
    req = DHCP(xid=7, chaddr=SEED004_VM, message_type=DHCPMessageType.REQUEST, requested_ip=ip("10.0.0.9"))
    reply = server.handle(dhcp_client_frame(req))
    assert reply.message is not None and reply.message.message_type == DHCPMessageType.NAK
    assert reply.frame is not None and reply.frame.dst == mac("ff:ff:ff:ff:ff:ff")
    assert reply.log[-1] == "DHCPNAK(br100) 10.0.0.9 fa:16:3e:2c:e8:ec wrong address"
    # a REQUEST for another server is none of ours
    other = DHCP(xid=7, chaddr=SEED004_VM, message_type=DHCPMessageType.REQUEST, requested_ip=ip("10.0.0.2"),
                 server_id=ip("10.0.0.5"))
    assert server.handle(dhcp_client_frame(other)).frame is None


def test_nak_sends_the_guest_back_to_init() -> None:
    guest = Guest("cirros", SEED004_VM)
    guest.discover()
    nak = DHCP(op=2, xid=guest.xid, chaddr=SEED004_VM, message_type=DHCPMessageType.NAK, server_id=ip("10.0.0.1"))
    frame = Ethernet(dst=mac("ff:ff:ff:ff:ff:ff"), src=mac("08:00:27:8f:87:fa"), payload=IPv4(
        src=ip("10.0.0.1"), dst=ip("255.255.255.255"), payload=UDP(sport=67, dport=68, payload=nak)))
    guest.receive(frame)
    assert guest.state is DhcpState.INIT and guest.address is None


def test_neutron_opts_mtu_routes_and_dns() -> None:
    """The reference's §8.2/§8.3 example: ``--dhcp-option-force=option:mtu,1450``, a
    ``set:subnet-…`` range with a netmask and 86400s, classless static routes and DNS servers."""
    tag = "subnet-c0ffee00-1111-4222-8333-444455556666"
    proc = parse_ps_line(
        "nobody 1 1 0 00:00 ? 00:00:00 dnsmasq --no-hosts --no-resolv --interface=tap1 "
        "--dhcp-hostsfile=/d/host --dhcp-optsfile=/d/opts "
        f"--dhcp-range=set:{tag},10.0.0.0,static,255.255.255.0,86400s "
        "--dhcp-option-force=option:mtu,1450 --domain=openstacklocal")
    files = (FileState("/d/host", "fa:16:3e:11:22:33,host-10-0-0-5.openstacklocal.,10.0.0.5\n"),
             FileState("/d/opts", f"tag:{tag},option:classless-static-route,169.254.169.254/32,10.0.0.1,0.0.0.0/0,10.0.0.1\n"
                                  f"tag:{tag},249,169.254.169.254/32,10.0.0.1,0.0.0.0/0,10.0.0.1\n"
                                  f"tag:{tag},option:router,10.0.0.1\n"
                                  f"tag:{tag},option:dns-server,192.0.2.53\n"
                                  "tag:subnet-other,option:router,10.9.9.9\n"))
    server = DhcpServer.from_state(proc, files, server_ip=ip("10.0.0.2"), server_mac=mac("fa:16:3e:00:00:02"))
    assert (server.netmask, server.mtu, server.lease_time) == (ip("255.255.255.0"), 1450, 86400)
    guest = Guest("vm", mac("fa:16:3e:11:22:33"))
    lease, _ = exchange(guest, server)
    assert lease is not None and lease.mtu == 1450 == guest.mtu
    assert lease.routes == ((IPv4Network("169.254.169.254/32"), ip("10.0.0.1")), (IPv4Network("0.0.0.0/0"), ip("10.0.0.1")))
    assert (lease.router, lease.dns, lease.hostname) == (ip("10.0.0.1"), (ip("192.0.2.53"),), "host-10-0-0-5")
    assert guest.next_hop(ip("169.254.169.254")) == ip("10.0.0.1")


@pytest.mark.parametrize(("text", "seconds"), [("120s", 120), ("2m", 120), ("12h", 43200), ("infinite", None),
                                               (None, 3600)])
def test_lease_seconds(text: str | None, seconds: int | None) -> None:
    assert lease_seconds(text) == seconds


# --- metadata ------------------------------------------------------------------------------------

def test_metadata_as_seed004_shows() -> None:
    """004 console: "checking http://169.254.169.254/2009-04-04/meta-data/instance-id ...
    iid=i-00000009", then "HTTP/1.1 404 Not Found failed to get .../latest/meta-data/public-keys"."""
    md = MetadataEndpoint((MetadataInstance(ip("10.0.0.2"), 9, "cirros"),))
    assert md.get(ip("10.0.0.2"), "/2009-04-04/meta-data/instance-id").body == b"i-00000009"
    assert md.get(ip("10.0.0.2"), "/latest/meta-data/instance-id").body == b"i-00000009"
    assert md.get(ip("10.0.0.2"), "/latest/meta-data/local-ipv4").body == b"10.0.0.2"
    miss = md.get(ip("10.0.0.2"), "/latest/meta-data/public-keys")
    assert (miss.status, miss.reason) == (404, "Not Found")
    assert "HTTP/1.1 404 Not Found" in seed_text(4).replace(NB, " ")
    assert md.get(ip("10.0.0.77"), "/latest/meta-data/instance-id").status == 404
    keyed = MetadataEndpoint((MetadataInstance(ip("10.0.0.2"), 9, public_keys=(("mykey", "ssh-rsa AAA"),)),))
    assert keyed.get(ip("10.0.0.2"), "/latest/meta-data/public-keys").body == b"0=mykey"
    assert keyed.get(ip("10.0.0.2"), "/latest/meta-data/public-keys/0/openssh-key").body == b"ssh-rsa AAA"


def test_guest_http_get_to_metadata() -> None:
    server = seed004_server()
    guest = Guest("cirros", SEED004_VM)
    exchange(guest, server)
    gw = mac("08:00:27:8f:87:fa")
    assert guest.next_hop(ip("169.254.169.254")) == ip("10.0.0.1")
    md = MetadataEndpoint((MetadataInstance(ip("10.0.0.2"), 9),))
    synack = md.handle(guest.tcp_syn(ip("169.254.169.254"), 80, dst_mac=gw))
    assert synack is not None and isinstance(synack.payload, IPv4) and isinstance(synack.payload.payload, TCP)
    assert synack.payload.payload.flags == TCPFlag.SYN | TCPFlag.ACK
    resp = md.handle(guest.http_get("/2009-04-04/meta-data/instance-id", dst_mac=gw))
    assert resp is not None and isinstance(resp.payload, IPv4) and isinstance(resp.payload.payload, TCP)
    body = resp.payload.payload.payload
    assert isinstance(body, Raw) and body.data.startswith(b"HTTP/1.1 200 OK") and body.data.endswith(b"i-00000009")
    assert resp.payload.src == ip("169.254.169.254") and resp.dst == SEED004_VM
    keys = md.handle(guest.http_get("/latest/meta-data/public-keys", dst_mac=gw))
    assert keys is not None and b"HTTP/1.1 404 Not Found" in to_bytes(keys)


# --- the guest's answers ------------------------------------------------------------------------

@pytest.fixture
def bound() -> Guest:
    guest = Guest("cirros", SEED004_VM)
    exchange(guest, seed004_server())
    return guest


BR = mac("08:00:27:8f:87:fa")


def test_guest_answers_arp(bound: Guest) -> None:
    (reply,) = bound.receive(arp_request(BR, ip("10.0.0.1"), ip("10.0.0.2"))).frames
    assert summary(reply) == "ARP, Reply 10.0.0.2 is-at fa:16:3e:2c:e8:ec, length 28" and reply.dst == BR
    assert bound.resolve(ip("10.0.0.1")) == BR
    assert bound.receive(arp_request(BR, ip("10.0.0.1"), ip("10.0.0.3"))).frames == ()
    assert summary(bound.arp_request_for(ip("10.0.0.1"))) == "ARP, Request who-has 10.0.0.1 tell 10.0.0.2, length 28"


def test_guest_answers_ping(bound: Guest) -> None:
    (reply,) = bound.receive(echo_request(BR, SEED004_VM, ip("10.0.0.1"), ip("10.0.0.2"), seq=3)).frames
    assert summary(reply) == "IP 10.0.0.2 > 10.0.0.1: ICMP echo reply, id 1, seq 3, length 64"
    assert reply.dst == BR and reply.src == SEED004_VM
    # not its address, not its MAC: ignored
    assert bound.receive(echo_request(BR, SEED004_VM, ip("10.0.0.1"), ip("10.0.0.3"))).frames == ()
    assert bound.receive(echo_request(BR, mac("fa:16:3e:00:00:01"), ip("10.0.0.1"), ip("10.0.0.2"))).frames == ()


@pytest.mark.parametrize(("port", "flags"), [(22, TCPFlag.SYN | TCPFlag.ACK), (80, TCPFlag.SYN | TCPFlag.ACK),
                                             (23, TCPFlag.RST | TCPFlag.ACK)])
def test_guest_tcp(bound: Guest, port: int, flags: TCPFlag) -> None:
    syn = Ethernet(dst=SEED004_VM, src=BR, payload=IPv4(src=ip("192.0.2.10"), dst=ip("10.0.0.2"),
                                                        payload=TCP(sport=5555, dport=port, seq=100, flags=TCPFlag.SYN)))
    (reply,) = bound.receive(syn).frames
    seg = reply.payload.payload if isinstance(reply.payload, IPv4) else None
    assert isinstance(seg, TCP) and seg.flags == flags and seg.ack == 101 and (seg.sport, seg.dport) == (port, 5555)


def test_guest_udp_port_unreachable(bound: Guest) -> None:
    dgram = Ethernet(dst=SEED004_VM, src=BR, payload=IPv4(src=ip("10.0.0.1"), dst=ip("10.0.0.2"),
                                                          payload=UDP(sport=5000, dport=9999)))
    (reply,) = bound.receive(dgram).frames
    assert summary(reply) == "IP 10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 udp port 9999 unreachable, length 36"


def test_guest_originates(bound: Guest) -> None:
    ping = bound.ping(ip("8.8.8.8"), dst_mac=BR)
    assert summary(ping) == "IP 10.0.0.2 > 8.8.8.8: ICMP echo request, id 1, seq 1, length 64"
    syn = bound.tcp_syn(ip("10.0.0.3"), 22, dst_mac=mac("fa:16:3e:00:00:03"))
    assert isinstance(syn.payload, IPv4) and isinstance(syn.payload.payload, TCP)
    assert syn.payload.payload.flags == TCPFlag.SYN and syn.payload.src == ip("10.0.0.2")
    assert bound.next_hop(ip("10.0.0.3")) == ip("10.0.0.3") and bound.next_hop(ip("8.8.8.8")) == IPv4Address("10.0.0.1")
