"""The IP stack (routing, ARP, forwarding, ICMP errors) and the Linux bridge, on host states built
from the seeds' own captures: seed 000's router namespace (``ip addr``/``ip route``), seed 004's
controller (``ip a`` and ``route -n``), and seed 003's "host unreachable" compute node."""

from __future__ import annotations

from dataclasses import replace

import pytest

from neutrino.host.bridge import BridgeInfo
from neutrino.host.iproute import restore_ip_breaks, restore_route_n_breaks
from neutrino.host.iproute_link import parse_ip_addr, parse_ip_addr_partial
from neutrino.host.iproute_route import parse_ip_route, parse_ip_rule
from neutrino.host.nettools import parse_route_n
from neutrino.host.state import NamespaceState
from neutrino.host.sysctl import Sysctl
from neutrino.sim.ipstack import Action, IpStack, RouteDecision, Unreachable
from neutrino.sim.linuxbridge import LinuxBridgeSim, PortInfo, bridge_mac
from neutrino.sim.packets import (
    ARP,
    BROADCAST,
    ICMP,
    ARPOp,
    Ethernet,
    ICMPType,
    IPv4,
    UnreachCode,
    arp_reply,
    arp_request,
    echo_request,
    ip,
    mac,
    summary,
)
from neutrino.sim.trace import StepKind
from neutrino.views.derive import routes_of
from tests.seeds import between

NB = "\u00a0"
QG, QR = "qg-d48b49e0-aa", "qr-c2d7dd02-56"
VM_MAC = mac("fa:16:3e:dd:c1:62")  # seed 000's instance (br-tun's dl_dst on the compute node)
GW_MAC = mac("fa:16:3e:00:00:e1")  # the external gateway 172.24.4.225 (not in the seed)


def nb(s: str) -> str:
    return s.replace(" ", NB)


def router_ns(**kw: object) -> NamespaceState:
    """Seed 000 "Network host: Router (M,N)": ``ip addr`` and ``ip route`` of the qrouter namespace."""
    links = parse_ip_addr(between(0, "66: qg-d48b49e0-aa", "\n\nThe first interface"))
    routes = parse_ip_route(between(0, "172.24.4.224/28 dev", "\n\nThe netfilter"))
    return NamespaceState("qrouter-2d214fde-293c-4d64-8062-797f80ae2d8f", links=links, routes=routes,
                          **kw)  # type: ignore[arg-type]


def controller_ns() -> NamespaceState:
    """Seed 004's controller-1: ``ip a`` (restored) and ``route -n`` → routes."""
    text = restore_ip_breaks(between(4, nb("... (loopback has the metadata"), nb("openstack@compute-1:~$ cat")))
    links = parse_ip_addr_partial(text).items
    rows = parse_route_n(restore_route_n_breaks(between(4, nb("Kernel IP routing table"), "\n")))
    return NamespaceState(links=links, routes=routes_of(rows),
                          sysctls=(Sysctl("net.ipv4.ip_forward", "1"),))


# --- routing -------------------------------------------------------------------------------------

def test_router_default_route_to_the_internet() -> None:
    d = IpStack(router_ns()).route(ip("8.8.8.8"))
    assert isinstance(d, RouteDecision)
    assert (d.dev, d.next_hop, d.src, d.table, d.local) == (QG, ip("172.24.4.225"), ip("172.24.4.227"), "main",
                                                           False)
    assert d.step.kind is StepKind.ROUTE and d.step.text == "default via 172.24.4.225 dev qg-d48b49e0-aa "
    assert d.step.detail == "via 172.24.4.225 dev qg-d48b49e0-aa src 172.24.4.227"


def test_router_connected_subnet() -> None:
    d = IpStack(router_ns()).route(ip("10.1.0.2"))
    assert isinstance(d, RouteDecision)
    assert (d.dev, d.next_hop, d.src) == (QR, ip("10.1.0.2"), ip("10.1.0.1"))
    assert d.step.text == "10.1.0.0/24 dev qr-c2d7dd02-56  proto kernel  scope link  src 10.1.0.1 "


@pytest.mark.parametrize("addr", ["172.24.4.228", "10.1.0.1", "172.24.4.227"])
def test_router_local_addresses(addr: str) -> None:
    d = IpStack(router_ns()).route(ip(addr))
    assert isinstance(d, RouteDecision) and d.local and d.table == "local"
    assert d.step.text.startswith(f"local {addr} dev ") and "table local" in d.step.text


def test_no_route_is_network_unreachable() -> None:
    ns = router_ns()
    ns = replace(ns, routes=tuple(r for r in ns.routes or () if not r.is_default))
    d = IpStack(ns).route(ip("8.8.8.8"))
    assert isinstance(d, Unreachable)
    assert (d.reason, d.errno, d.icmp_code) == ("no route", "Network is unreachable", UnreachCode.NET)


def test_forwarded_packet_without_route_gets_net_unreachable() -> None:
    ns = router_ns()
    stack = IpStack(replace(ns, routes=tuple(r for r in ns.routes or () if not r.is_default)), forwarding=True)
    stack.learn(QR, ip("10.1.0.2"), VM_MAC)
    ping = echo_request(VM_MAC, mac("fa:16:3e:ea:64:6e"), ip("10.1.0.2"), ip("8.8.8.8"))
    out = stack.receive(QR, ping)
    assert out.action is Action.ICMP_ERROR
    (dev, frame), = out.frames
    assert dev == QR and frame.dst == VM_MAC
    assert summary(frame) == "IP 10.1.0.1 > 10.1.0.2: ICMP net 8.8.8.8 unreachable, length 92"


@pytest.mark.parametrize(("route", "reason", "errno", "code"), [
    ("unreachable 8.8.8.0/24", "unreachable", "No route to host", UnreachCode.HOST),
    ("prohibit 8.8.8.0/24", "prohibit", "Permission denied", UnreachCode.ADMIN_PROHIBITED),
    ("blackhole 8.8.8.0/24", "blackhole", "Invalid argument", None),
])
def test_route_types(route: str, reason: str, errno: str, code: UnreachCode | None) -> None:
    ns = router_ns()
    ns = replace(ns, routes=(*(ns.routes or ()), *parse_ip_route(route + "\n")))
    d = IpStack(ns).route(ip("8.8.8.8"))
    assert isinstance(d, Unreachable) and (d.reason, d.errno, d.icmp_code) == (reason, errno, code)
    assert d.step.text == route + " "
    assert isinstance(IpStack(ns).route(ip("8.8.4.4")), RouteDecision)  # outside the /24


def test_longest_prefix_then_metric() -> None:
    ns = router_ns()
    extra = parse_ip_route("8.8.0.0/16 via 10.1.0.9 dev qr-c2d7dd02-56 metric 20\n"
                           "8.8.0.0/16 via 10.1.0.8 dev qr-c2d7dd02-56 metric 10\n")
    d = IpStack(replace(ns, routes=(*(ns.routes or ()), *extra))).route(ip("8.8.8.8"))
    assert isinstance(d, RouteDecision) and d.next_hop == ip("10.1.0.8") and d.src == ip("10.1.0.1")


def test_policy_rules() -> None:
    ns = router_ns()
    rules = parse_ip_rule("0:\tfrom all lookup local\n"
                          "1000:\tfrom 10.1.0.0/24 lookup 100\n"
                          "2000:\tfrom all fwmark 0x4 lookup 200\n"
                          "3000:\tfrom 10.1.0.66/32 prohibit\n"
                          "32766:\tfrom all lookup main\n"
                          "32767:\tfrom all lookup default\n")
    extra = parse_ip_route("default via 172.24.4.226 dev qg-d48b49e0-aa table 100\n"
                           "default via 172.24.4.229 dev qg-d48b49e0-aa table 200\n"
                           "10.1.0.0/24 dev qr-c2d7dd02-56 table 100 scope link\n")
    stack = IpStack(replace(ns, rules=rules, routes=(*(ns.routes or ()), *extra)), forwarding=True)
    by_src = stack.route(ip("8.8.8.8"), src=ip("10.1.0.2"), iif=QR)
    assert isinstance(by_src, RouteDecision) and by_src.table == "100" and by_src.next_hop == ip("172.24.4.226")
    assert "rule 1000:\tfrom 10.1.0.0/24 lookup 100" in by_src.step.detail
    marked = stack.route(ip("8.8.8.8"), src=ip("192.0.2.1"), iif=QG, mark=0x4)
    assert isinstance(marked, RouteDecision) and marked.table == "200"
    plain = stack.route(ip("8.8.8.8"))
    assert isinstance(plain, RouteDecision) and plain.table == "main" and plain.next_hop == ip("172.24.4.225")
    # local addresses win over policy rules: table local is rule 0
    local = stack.route(ip("10.1.0.1"), src=ip("10.1.0.2"), iif=QR)
    assert isinstance(local, RouteDecision) and local.local
    # rule 1000 comes first: 10.1.0.66 is routed by table 100 before rule 3000 could prohibit it
    first = stack.route(ip("198.51.100.1"), src=ip("10.1.0.66"), iif=QR)
    assert isinstance(first, RouteDecision) and first.table == "100"


def test_policy_rule_actions() -> None:
    ns = replace(router_ns(), rules=parse_ip_rule("0:\tfrom all lookup local\n100:\tfrom 10.1.0.66/32 prohibit\n"
                                                  "32766:\tfrom all lookup main\n"))
    d = IpStack(ns, forwarding=True).route(ip("8.8.8.8"), src=ip("10.1.0.66"), iif=QR)
    assert isinstance(d, Unreachable) and d.reason == "prohibit" and d.step.text == "100:\tfrom 10.1.0.66 prohibit"


def test_seed_004_controller_routes() -> None:
    """004 ``route -n`` on controller-1: 10.0.0.0/24 on br100, 169.254.0.0/16 on eth1 (metric
    1000), default via 192.168.56.101 on eth1."""
    stack = IpStack(controller_ns())
    vm = stack.route(ip("10.0.0.2"))
    assert isinstance(vm, RouteDecision) and (vm.dev, vm.src) == ("br100", ip("10.0.0.1"))
    meta = stack.route(ip("169.254.169.254"))
    assert isinstance(meta, RouteDecision) and meta.dev == "eth1" and meta.route.metric == 1000
    out = stack.route(ip("8.8.8.8"))
    assert isinstance(out, RouteDecision)
    assert (out.dev, out.next_hop, out.src) == ("eth1", ip("192.168.56.101"), ip("192.168.56.200"))
    assert stack.forwarding


# --- receiving: ARP, delivery, forwarding -------------------------------------------------------

def test_arp_request_answered_and_sender_learned() -> None:
    stack = IpStack(router_ns())
    out = stack.receive(QR, arp_request(VM_MAC, ip("10.1.0.2"), ip("10.1.0.1")))
    assert out.action is Action.ARP_REPLY
    (dev, frame), = out.frames
    assert dev == QR and summary(frame) == "ARP, Reply 10.1.0.1 is-at fa:16:3e:ea:64:6e, length 28"
    assert frame.dst == VM_MAC and stack.resolve(QR, ip("10.1.0.2")) == VM_MAC


@pytest.mark.parametrize(("arp_ignore", "answered"), [("0", True), ("1", False)])
def test_arp_ignore(arp_ignore: str, answered: bool) -> None:
    """arp_ignore=1: answer only for addresses configured on the receiving interface."""
    stack = IpStack(router_ns(sysctls=(Sysctl("net.ipv4.conf.all.arp_ignore", arp_ignore),)))
    out = stack.receive(QR, arp_request(VM_MAC, ip("10.1.0.2"), ip("172.24.4.227")))
    assert (out.action is Action.ARP_REPLY) == answered


def test_arp_for_a_foreign_address_is_not_answered() -> None:
    out = IpStack(router_ns()).receive(QR, arp_request(VM_MAC, ip("10.1.0.2"), ip("10.1.0.99")))
    assert out.action is Action.DROP and not out.frames


def test_arp_reply_is_learned() -> None:
    stack = IpStack(router_ns())
    out = stack.receive(QG, arp_reply(GW_MAC, ip("172.24.4.225"), mac("fa:16:3e:5c:a2:ac"), ip("172.24.4.227")))
    assert out.action is Action.LEARNED and stack.resolve(QG, ip("172.24.4.225")) == GW_MAC


def test_local_delivery_and_frames_not_for_us() -> None:
    stack = IpStack(router_ns())
    ping = echo_request(VM_MAC, mac("fa:16:3e:ea:64:6e"), ip("10.1.0.2"), ip("10.1.0.1"))
    out = stack.receive(QR, ping)
    assert out.action is Action.DELIVER and out.packet is not None and out.packet.dst == ip("10.1.0.1")
    other = stack.receive(QR, echo_request(VM_MAC, mac("fa:16:3e:00:00:99"), ip("10.1.0.2"), ip("10.1.0.1")))
    assert other.action is Action.DROP and other.reason == "not for us"


def test_not_forwarding_drops_silently() -> None:
    stack = IpStack(router_ns())  # no sysctls: ip_forward 0
    out = stack.receive(QR, echo_request(VM_MAC, mac("fa:16:3e:ea:64:6e"), ip("10.1.0.2"), ip("8.8.8.8")))
    assert out.action is Action.DROP and out.reason == "not forwarding" and not out.frames


def test_forwarding_resolves_the_gateway_then_sends() -> None:
    stack = IpStack(router_ns(sysctls=(Sysctl("net.ipv4.ip_forward", "1"),)))
    assert stack.forwarding
    ping = echo_request(VM_MAC, mac("fa:16:3e:ea:64:6e"), ip("10.1.0.2"), ip("8.8.8.8"))
    first = stack.receive(QR, ping)
    assert first.action is Action.FORWARD and first.reason == "awaiting ARP"
    (dev, req), = first.frames
    assert dev == QG and summary(req) == "ARP, Request who-has 172.24.4.225 tell 172.24.4.227, length 28"
    stack.learn(QG, ip("172.24.4.225"), GW_MAC)
    second = stack.receive(QR, ping)
    (dev, frame), = second.frames
    assert dev == QG and frame.dst == GW_MAC and frame.src == mac("fa:16:3e:5c:a2:ac")
    assert isinstance(frame.payload, IPv4) and frame.payload.ttl == 63
    assert [s.kind for s in second.steps] == [StepKind.ROUTE, StepKind.ARP]


def test_ttl_exceeded() -> None:
    stack = IpStack(router_ns(), forwarding=True)
    stack.learn(QR, ip("10.1.0.2"), VM_MAC)
    out = stack.receive(QR, echo_request(VM_MAC, mac("fa:16:3e:ea:64:6e"), ip("10.1.0.2"), ip("8.8.8.8"), ttl=1))
    assert out.action is Action.ICMP_ERROR and out.reason == "TTL exceeded"
    (_, frame), = out.frames
    assert summary(frame) == "IP 10.1.0.1 > 10.1.0.2: ICMP time exceeded in-transit, length 92"


def test_seed_003_host_unreachable_without_br102() -> None:
    """003 "But what about this one?": no br102 on the left compute node, so 10.1.0.4 follows
    the default route out of eth1; nothing on that wire answers for the next hop and VM_1 gets
    "host unreachable" back from its gateway 10.0.0.1 (the seed leaves the exact hop open; this
    models the next hop on eth1 never resolving)."""
    links = parse_ip_addr(
        "2: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP qlen 1000\n"
        "    link/ether 52:54:00:00:01:01 brd ff:ff:ff:ff:ff:ff\n"
        "    inet 91.207.15.105/24 brd 91.207.15.255 scope global eth1\n"
        "5: br100: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n"
        "    link/ether 52:54:00:00:10:01 brd ff:ff:ff:ff:ff:ff\n"
        "    inet 10.0.0.1/24 brd 10.0.0.255 scope global br100\n")
    routes = parse_ip_route("default via 91.207.15.1 dev eth1\n"
                            "10.0.0.0/24 dev br100  proto kernel  scope link  src 10.0.0.1\n"
                            "91.207.15.0/24 dev eth1  proto kernel  scope link  src 91.207.15.105\n")
    stack = IpStack(NamespaceState(links=links, routes=routes, sysctls=(Sysctl("net.ipv4.ip_forward", "1"),)))
    vm1 = mac("fa:16:3e:00:00:03")
    br = mac("52:54:00:00:10:01")
    # VM_1 first resolves its gateway 10.0.0.1, which teaches the node VM_1's MAC
    assert stack.receive("br100", arp_request(vm1, ip("10.0.0.3"), ip("10.0.0.1"))).action is Action.ARP_REPLY
    ping = echo_request(vm1, br, ip("10.0.0.3"), ip("10.1.0.4"))
    out = stack.receive("br100", ping)
    route = out.route
    assert isinstance(route, RouteDecision) and route.dev == "eth1" and route.next_hop == ip("91.207.15.1")
    assert route.step.text == "default via 91.207.15.1 dev eth1 "
    (dev, req), = out.frames
    assert dev == "eth1" and isinstance(req.payload, ARP) and req.payload.pdst == ip("91.207.15.1")
    # the ARP request goes unanswered
    assert isinstance(ping.payload, IPv4)
    err = stack.arp_failed(ping.payload, iif="br100")
    assert err is not None
    dev, frame = err
    assert dev == "br100" and frame.dst == vm1
    assert summary(frame) == "IP 10.0.0.1 > 10.0.0.3: ICMP host 10.1.0.4 unreachable, length 92"
    icmp = frame.payload.payload if isinstance(frame.payload, IPv4) else None
    assert isinstance(icmp, ICMP) and (icmp.type, icmp.code) == (ICMPType.DEST_UNREACH, UnreachCode.HOST)
    # a locally generated packet gets EHOSTUNREACH, not an ICMP error
    assert stack.arp_failed(ping.payload, iif=None) is None


def test_no_icmp_error_about_an_icmp_error() -> None:
    stack = IpStack(router_ns(), forwarding=True)
    stack.learn(QR, ip("10.1.0.2"), VM_MAC)
    inner = IPv4(src=ip("8.8.8.8"), dst=ip("10.1.0.2"))
    err = IPv4(src=ip("10.1.0.2"), dst=ip("192.0.2.1"), ttl=1,
               payload=ICMP(type=ICMPType.DEST_UNREACH, code=3, payload=inner))
    out = stack.receive(QR, Ethernet(dst=mac("fa:16:3e:ea:64:6e"), src=VM_MAC, payload=err))
    assert out.action is Action.DROP and not out.frames


def test_limited_broadcast_is_local_on_input() -> None:
    stack = IpStack(router_ns())
    d = stack.route(ip("255.255.255.255"), src=ip("0.0.0.0"), iif=QR)
    assert isinstance(d, RouteDecision) and d.local and d.broadcast
    assert isinstance(stack.route(ip("255.255.255.255")), Unreachable)
    out = stack.route(ip("255.255.255.255"), oif=QR)
    assert isinstance(out, RouteDecision) and not out.local and out.dev == QR


def test_arp_request_for_picks_the_subnet_address() -> None:
    req = IpStack(router_ns()).arp_request_for(QG, ip("172.24.4.225"))
    assert isinstance(req.payload, ARP) and req.payload.op == ARPOp.REQUEST
    assert (req.dst, req.payload.psrc) == (BROADCAST, ip("172.24.4.227"))


def test_neighbours_from_state() -> None:
    from neutrino.host.iproute_route import Neighbour
    ns = router_ns(neighbours=(Neighbour(ip("172.24.4.225"), QG, str(GW_MAC), states=("REACHABLE",)),
                               Neighbour(ip("10.1.0.9"), QR, None, states=("FAILED",))))
    stack = IpStack(ns)
    assert stack.resolve(QG, ip("172.24.4.225")) == GW_MAC and stack.resolve(QR, ip("10.1.0.9")) is None
    assert stack.resolve(QR, ip("10.1.0.255")) == BROADCAST


# --- Linux bridge ---------------------------------------------------------------------------------

BR100 = BridgeInfo("br100", "8000.0800278f87fa", False, ("eth2", "vnet0", "vnet1"))
VM_A, VM_B = mac("fa:16:3e:2c:e8:ec"), mac("fa:16:3e:00:00:0b")


def test_bridge_learns_and_forwards() -> None:
    br = LinuxBridgeSim(BR100, {"vnet0": PortInfo(mac("fe:16:3e:2c:e8:ec"))})
    assert br.ageing == 300 and br.mac == mac("08:00:27:8f:87:fa") == bridge_mac(BR100)
    flood = br.receive("vnet0", echo_request(VM_A, VM_B, ip("10.0.0.2"), ip("10.0.0.3")))
    assert flood.flooded and flood.ports == ("eth2", "vnet1") and not flood.up
    assert flood.netfilter and flood.physdev_in == "vnet0"
    back = br.receive("vnet1", echo_request(VM_B, VM_A, ip("10.0.0.3"), ip("10.0.0.2")))
    assert back.ports == ("vnet0",) and not back.flooded and back.step.kind is StepKind.NORMAL
    assert br.fdb() == ((VM_B, "vnet1"), (VM_A, "vnet0"))
    same = br.receive("vnet0", echo_request(VM_B, VM_A, ip("10.0.0.3"), ip("10.0.0.2")))
    assert same.ports == () and "filtered" in same.step.detail


def test_bridge_local_macs_go_up() -> None:
    br = LinuxBridgeSim(BR100, {"vnet0": PortInfo(mac("fe:16:3e:2c:e8:ec"))})
    up = br.receive("vnet0", echo_request(VM_A, br.mac, ip("10.0.0.2"), ip("10.0.0.1")))
    assert up.up and up.ports == () and not up.netfilter
    bcast = br.receive("vnet0", arp_request(VM_A, ip("10.0.0.2"), ip("10.0.0.1")))
    assert bcast.up and bcast.ports == ("eth2", "vnet1") and not bcast.netfilter  # ARP: not iptables
    sent = br.send(arp_reply(br.mac, ip("10.0.0.1"), VM_A, ip("10.0.0.2")))
    assert sent.ports == ("vnet0",) and not sent.netfilter


def test_qbr_ageing_zero_floods_everything() -> None:
    qbr = BridgeInfo("qbrbfda8db6-7b", "8000.5e414374148d", False, ("qvbbfda8db6-7b", "tapbfda8db6-7b"))
    br = LinuxBridgeSim(qbr, {})
    assert br.ageing == 0
    for _ in range(2):
        out = br.receive("tapbfda8db6-7b", echo_request(VM_A, VM_B, ip("10.0.0.2"), ip("10.0.0.3")))
        assert out.flooded and out.ports == ("qvbbfda8db6-7b",) and out.netfilter
        br.receive("qvbbfda8db6-7b", echo_request(VM_B, VM_A, ip("10.0.0.3"), ip("10.0.0.2")))
    assert br.fdb() == () and "never learned" in out.step.detail


def test_bridge_nf_call_iptables_off() -> None:
    br = LinuxBridgeSim(BR100, {}, nf_call_iptables=False)
    assert not br.receive("vnet0", echo_request(VM_A, VM_B, ip("10.0.0.2"), ip("10.0.0.3"))).netfilter


def test_ipstack_on_a_bridge_port_refuses_frames() -> None:
    ns = controller_ns()
    out = IpStack(ns).receive("eth2", arp_request(VM_A, ip("10.0.0.2"), ip("10.0.0.1")))
    assert out.action is Action.DROP and out.reason == "enslaved to br100"
    up = IpStack(ns).receive("br100", arp_request(VM_A, ip("10.0.0.2"), ip("10.0.0.1")))
    assert up.action is Action.ARP_REPLY
