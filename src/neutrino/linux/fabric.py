"""The wires between hosts, and the guests.

* ``<prefix>-net-mgmt``: a Linux bridge ``br0`` joining every host. In each host a veth ``ul0`` goes to
  it and is a port of an OVS bridge ``br-phy`` whose internal port holds the host's tunnel (and
  management) address, so OVS's userspace tunnels (GRE, VXLAN) route and ARP through its own bridge.
* ``<prefix>-net-ext``: a Linux bridge ``br0`` holding the external subnet's gateway (e.g.
  172.24.4.225/28) and a stand-in internet address (203.0.113.1 on ``lo``); each host with an external
  bridge (``br-ex``) gets a veth ``ex0`` into it, added to ``br-ex`` as its uplink.
* Guests: namespace ``<prefix>-vm-<server>`` whose ``eth0`` is the peer of the instance's tap; they
  boot with ``busybox udhcpc`` and listen on tcp/22 (``busybox nc -ll``) and tcp/80 (``busybox httpd``).

* NICs (:func:`plan_nics`, :func:`build_nics`): a host's planned physical devices (nova-network's
  ``eth0``/``eth1``/``eth2``) and the uplinks its OVS bridges name (``em4`` on ``br-ex``, ``eth0`` on
  ``br-eth0``) are veths under the planned name, made before the plan is applied, whose other end is a
  port ``p<i>`` of the bridge ``br0`` of a wire: ``ext`` for the external bridge's uplink and for
  nova-network's ``public_interface``; the physical network's name for other bridge uplinks (seed 002's
  ``physnet1``: both hosts' ``br-eth0`` uplinks on one L2, VLAN-tagged frames passing the Linux bridge
  unchanged); the device's name otherwise (seed 004's flat ``eth2``, seed 003's trunk ``eth0``).
* VlanManager's ``vlanNNN`` (no 8021q module here): see :func:`neutrino.linux.apply.make_vlans`; an
  OVS internal port with ``tag=NNN`` on a backend-owned ``br-trunk`` over the host's ``eth0``, so the
  ``eth0`` wire carries 802.1Q frames for VLANs 100 and 102 as the real trunk does.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from neutrino.host.iproute_link import LinkKind
from neutrino.host.ovsdb import OvsdbShow
from neutrino.host.state import HostState
from neutrino.linux import netns as netns_lib
from neutrino.linux.apply import Place, ip_batch, tx_off
from neutrino.linux.records import CHILDREN, Record, wire_ns
from neutrino.linux.runner import parallel, run, start, wait_for
from neutrino.scenarios.model import Deployment, Mechanism

INTERNET = ipaddress.ip_interface("203.0.113.1/32")

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc event script: apply the lease to $interface (address, default route)
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    for r in $router; do
      ip route replace default via "$r" dev "$interface"
      break
    done
    echo "$ip/$mask" > "$(dirname "$0")/lease-$interface"
    echo "$router" > "$(dirname "$0")/router-$interface"
    echo "$serverid" > "$(dirname "$0")/server-$interface"
    ;;
esac
exit 0
"""


@dataclass(frozen=True, slots=True)
class Guest:
    """An instance to boot: its server name, host, tap device, MAC and (planned) fixed IP."""

    server: str
    host: str
    device: str
    mac: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    mtu: int | None = None


def _wire(record: Record, prefix: str, wire: str) -> str:
    record.add_namespace(wire_ns(prefix, wire))
    return make_wire(prefix, wire)


def make_wire(prefix: str, wire: str) -> str:
    """The wire's namespace and its bridge ``br0``, unless it exists (the caller has recorded it)."""
    ns = wire_ns(prefix, wire)
    if not netns_lib.exists(ns):
        netns_lib.add(ns, ["link add br0 type bridge", "link set br0 up"])
    return ns


def wires_of(nics: list[Nic], *, outside: bool) -> list[str]:
    """The wires a bring-up makes, in the order it records them: ``mgmt``, each NIC's, and ``ext``
    when the outside is wanted (see :func:`build_outside`)."""
    out = ["mgmt"]
    for nic in nics:
        if nic.wire not in out:
            out.append(nic.wire)
    if outside and EXT not in out:
        out.append(EXT)
    return out


def _uplink(place: Place, wire: str, host_dev: str, wire_dev: str) -> None:
    """A veth from the host's namespace into the wire's bridge."""
    ip_batch(place.netns, [f"link add {host_dev} type veth peer name {wire_dev} netns {wire}",
                           f"link set {host_dev} up"])
    ip_batch(wire, [f"link set {wire_dev} master br0", f"link set {wire_dev} up"])
    tx_off([(place.netns, host_dev), (wire, wire_dev)])


@dataclass(frozen=True, slots=True)
class Nic:
    """A host's physical device, realised as a veth named ``dev`` whose peer is in wire ``wire``."""

    host: str
    dev: str
    wire: str


EXT = "ext"


def plan_nics(hosts: tuple[HostState, ...], deployment: Deployment) -> list[Nic]:
    """Every physical device the plan names (see the module's docstring for the wire each joins)."""
    nova = deployment.mechanism is Mechanism.NOVA_NETWORK
    public = deployment.nova_network.public_interface if nova else None
    ext_bridge = deployment.external_network_bridge or "br-ex"
    out: list[Nic] = []
    for h in hosts:
        root = h.namespace("")
        for lk in root.links or () if root else ():
            if lk.kind is LinkKind.ETHER:
                out.append(Nic(h.name, lk.name, EXT if lk.name == public else lk.name))
        spec = deployment.host(h.name)
        show = h.ovs.show
        if spec is None or not isinstance(show, OvsdbShow):
            continue
        physnet = {bridge: net for net, bridge in spec.bridge_mappings}
        for bridge, dev in spec.uplinks:
            br = show.bridge(bridge)
            if br is None or br.port(dev) is None or any(n.host == h.name and n.dev == dev for n in out):
                continue
            out.append(Nic(h.name, dev, EXT if bridge == ext_bridge else physnet.get(bridge, bridge)))
    return out


def nic_ports(nics: list[Nic]) -> list[tuple[Nic, str]]:
    """Each NIC with the name of its veth's other end in its wire (``p0``, ``p1``, … per wire)."""
    counts: dict[str, int] = {}
    out: list[tuple[Nic, str]] = []
    for nic in nics:
        i = counts.get(nic.wire, 0)
        counts[nic.wire] = i + 1
        out.append((nic, f"p{i}"))
    return out


def uplinks(prefix: str, place: Place, ports: list[tuple[Nic, str]], *, mgmt: int, ext: int | None) -> None:
    """Every veth from ``place``'s namespace into a wire (the wires made already), at once: ``ul0``
    into mgmt (its end there ``h<mgmt>``) when the host has a tunnel address, its NICs (those of
    ``ports`` on its host), and ``ex0`` into ext (its end ``x<ext>``) when ``ext`` is given (see
    :func:`ext_users`). Only the veths: :func:`join_phy` and :func:`join_ext` put them in OVS."""
    todo: list[tuple[str, str, str]] = []  # (wire namespace, host's device, wire's device)
    if place.tunnel_ip is not None:
        todo.append((wire_ns(prefix, "mgmt"), "ul0", f"h{mgmt}"))
    todo += [(wire_ns(prefix, nic.wire), nic.dev, port) for nic, port in ports if nic.host == place.host]
    if ext is not None:
        todo.append((wire_ns(prefix, EXT), "ex0", f"x{ext}"))
    parallel(lambda t: _uplink(place, *t), todo)


def outside_plan(hosts: tuple[HostState, ...], deployment: Deployment, nics: list[Nic]) -> list[str]:
    """The ``ip`` lines that make the ext wire the outside, as the simulator models it: the gateways
    the plan points at (Neutron's qg- default routes; nova-network hosts' ``default_gateway`` on their
    public device), the floating IPs nova-network holds as /32s on the public device on-link (the
    pool shares the wire), and the stand-in internet on ``lo`` behind Neutron's external gateways or a
    globally routable nova-network gateway only (a host-only network such as seed 004's 192.168.56.0/24
    leads nowhere; seed 003's hosts have no default route, so their wire has no outside address)."""
    addrs: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = list(external_gateways(hosts))
    internet = bool(addrs)
    onlink: list[str] = []
    planned = {h.name: h for h in hosts}
    for nic in nics:
        if nic.wire != EXT:
            continue
        root = planned[nic.host].namespace("")
        lk = root.link(nic.dev) if root else None
        v4 = [a.interface for a in (lk.addresses if lk else ()) if a.interface.version == 4]
        subnets = [a for a in v4 if a.network.prefixlen < 32]
        spec = deployment.host(nic.host)
        gw_ip = spec.default_gateway if spec is not None else None
        for a in subnets:
            if gw_ip is not None and gw_ip in a.network:
                gw = ipaddress.ip_interface(f"{gw_ip}/{a.network.prefixlen}")
                internet = internet or gw.ip.is_global
                if gw not in addrs:
                    addrs.append(gw)
        onlink += [f"route replace {a.ip}/32 dev br0" for a in v4
                   if a.network.prefixlen == 32 and not any(a.ip in n.network for n in subnets)]
    lines = [f"addr add {gw} dev br0" for gw in addrs]
    if internet:
        lines.append(f"addr add {INTERNET} dev lo")
    return [*lines, "link set br0 up", *(onlink if addrs else [])]


def build_outside(record: Record, prefix: str, hosts: tuple[HostState, ...], deployment: Deployment,
                  nics: list[Nic], *, force: bool) -> str | None:
    """Make the ext wire the outside (when there is an ext wire, or ``force``: seed 000's br-ex has no
    named uplink and gets one later)."""
    if not force and not any(n.wire == EXT for n in nics):
        return None
    wire = _wire(record, prefix, EXT)  # recorded and made already in a bring-up (:func:`wires_of`)
    ip_batch(wire, outside_plan(hosts, deployment, nics))
    run(["sysctl", "-w", "net.ipv4.ip_forward=1"], netns=wire)
    return wire


def join_phy(place: Place, prefixlen: int) -> None:
    """``ul0`` (see :func:`uplinks`) in OVS bridge ``br-phy``, whose internal port holds the host's
    tunnel address."""
    if place.tunnel_ip is None:
        return
    place.ovs.vsctl("--", "--may-exist", "add-br", "br-phy", "--", "set", "Bridge", "br-phy",
                    "datapath_type=netdev", "--", "--may-exist", "add-port", "br-phy", "ul0")
    ip_batch(place.netns, ["link set br-phy up", f"addr add {place.tunnel_ip}/{prefixlen} dev br-phy"])


def _reaches(netns: str, ip: str) -> bool:
    return run(["ping", "-c", "1", "-W", "1", ip], netns=netns, check=False).returncode == 0


def wait_underlay(places: list[Place], *, timeout: float = 20.0) -> None:
    """Until every host reaches every other host's tunnel address (so OVS has resolved its tunnel
    neighbours before the first tenant packet is encapsulated)."""
    ips = [(p, p.tunnel_ip) for p in places if p.tunnel_ip]
    pairs = [(place, other, ip) for place, _ in ips for other, ip in ips if other is not place and ip is not None]

    def wait(pair: tuple[Place, Place, str]) -> None:
        place, other, ip = pair
        wait_for(functools.partial(_reaches, place.netns, ip), timeout=timeout,
                 what=f"{place.host} to reach {other.host}'s tunnel address {ip}")

    parallel(wait, pairs)


def external_gateways(hosts: tuple[HostState, ...]) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The outside gateways the plan's routers point at, with the external subnet's prefix length."""
    out: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for h in hosts:
        for ns in h.namespaces:
            for r in ns.routes or ():
                if not (r.is_default and r.via is not None and r.dev and r.dev.startswith("qg-")):
                    continue
                lk = ns.link(r.dev)
                for a in lk.addresses if lk else ():
                    if r.via in a.interface.network:
                        gw = ipaddress.ip_interface(f"{r.via}/{a.interface.network.prefixlen}")
                        if gw not in out:
                            out.append(gw)
    return out


def ext_users(places: list[Place], hosts: tuple[HostState, ...], bridge: str, nics: list[Nic]) -> list[Place]:
    """Hosts whose plan has the external bridge but names no uplink for it (seed 000)."""
    planned = {h.name: h for h in hosts}
    named = {n.host for n in nics if n.wire == EXT}
    return [p for p in places if p.host not in named and isinstance(show := planned[p.host].ovs.show, OvsdbShow)
            and show.bridge(bridge) is not None]


def join_ext(place: Place, bridge: str) -> None:
    """``ex0`` (see :func:`uplinks`) in the host's external bridge, as its uplink (not in the plan)."""
    place.ovs.vsctl("--", "--may-exist", "add-port", bridge, "ex0")


def spawn(record: Record, argv: list[str], netns: str, what: str) -> int:
    """Start a long-running process in ``netns`` (``ip netns exec`` execs it, so the PID is the
    process's own) and record its PID at once."""
    proc = start(argv, netns)
    CHILDREN[proc.pid] = proc
    record.add_process(proc.pid, what, netns)
    return proc.pid


GUEST_LISTENERS = (  # (port, argv without the web root, what): the instance's sshd stand-in and web server
    (22, ["busybox", "nc", "-ll", "-p", "22", "-e", "/bin/cat"], "guest sshd stand-in (nc)"),
    (80, ["busybox", "httpd", "-f", "-p", "80", "-h"], "guest httpd"),
)


def udhcpc_argv(workdir: Path) -> list[str]:
    return ["busybox", "udhcpc", "-i", "eth0", "-q", "-n", "-t", "5", "-T", "1", "-s", str(workdir / "udhcpc.sh")]


def dhcp_guest(netns: str, workdir: Path, *, check: bool = True) -> bool:
    """The guest's DHCP exchange on eth0 (``udhcpc`` applies the lease through its script); whether
    it got one."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    os.chmod(script, 0o755)
    return run(udhcpc_argv(workdir), netns=netns, timeout=30, check=check).returncode == 0


def start_listener(record: Record, netns: str, workdir: Path, port: int) -> int:
    """The guest's listener on ``port`` (one of :data:`GUEST_LISTENERS`), started and recorded."""
    www = workdir / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text(f"{netns}\n")
    for p, argv, what in GUEST_LISTENERS:
        if p == port:
            return spawn(record, [*argv, str(www)] if p == 80 else list(argv), netns, what)
    raise ValueError(f"no guest listener on port {port}")


def boot_guest(record: Record, netns: str, workdir: Path) -> None:
    """DHCP on eth0, then listeners on tcp/22 and tcp/80."""
    dhcp_guest(netns, workdir)
    for port, _, _ in GUEST_LISTENERS:
        start_listener(record, netns, workdir, port)
