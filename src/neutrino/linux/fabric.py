"""The wires between hosts, and the guests.

* ``<prefix>-net-mgmt``: a Linux bridge ``br0`` joining every host. In each host a veth ``ul0`` goes to
  it and is a port of an OVS bridge ``br-phy`` whose internal port holds the host's tunnel (and
  management) address, so OVS's userspace tunnels (GRE, VXLAN) route and ARP through its own bridge.
* ``<prefix>-net-ext``: a Linux bridge ``br0`` holding the external subnet's gateway (e.g.
  172.24.4.225/28) and a stand-in internet address (203.0.113.1 on ``lo``); each host with an external
  bridge (``br-ex``) gets a veth ``ex0`` into it, added to ``br-ex`` as its uplink.
* Guests: namespace ``<prefix>-vm-<server>`` whose ``eth0`` is the peer of the instance's tap; they
  boot with ``busybox udhcpc`` and listen on tcp/22 (``busybox nc -ll``) and tcp/80 (``busybox httpd``).

Not done here: nova-network's flat interface and VlanManager's ``vlanNNN`` trunk (the kernel has no
8021q module; the plan is an OVS bridge in a trunk namespace doing the tagging).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from neutrino.host.state import HostState
from neutrino.linux import netns as netns_lib
from neutrino.linux.apply import Place, ip_batch
from neutrino.linux.records import CHILDREN, Record, wire_ns
from neutrino.linux.runner import run, wait_for

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
    for r in $router; do
      ip route replace default via "$r" dev "$interface"
      break
    done
    echo "$ip/$mask" > "$(dirname "$0")/lease-$interface"
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


def _make_ns(record: Record, name: str) -> None:
    record.add_namespace(name)
    if not netns_lib.exists(name):
        netns_lib.add(name)


def _wire(record: Record, prefix: str, wire: str) -> str:
    ns = wire_ns(prefix, wire)
    fresh = not netns_lib.exists(ns)
    _make_ns(record, ns)
    if fresh:
        ip_batch(ns, ["link add br0 type bridge", "link set br0 up"])
    return ns


def _uplink(place: Place, wire: str, host_dev: str, wire_dev: str) -> None:
    """A veth from the host's namespace into the wire's bridge."""
    ip_batch(place.netns, [f"link add {host_dev} type veth peer name {wire_dev} netns {wire}",
                           f"link set {host_dev} up"])
    ip_batch(wire, [f"link set {wire_dev} master br0", f"link set {wire_dev} up"])
    for ns, dev in ((place.netns, host_dev), (wire, wire_dev)):
        run(["ethtool", "-K", dev, "tx", "off"], netns=ns, check=False)


def build_mgmt(record: Record, prefix: str, places: list[Place], prefixlens: dict[str, int]) -> None:
    wire = _wire(record, prefix, "mgmt")
    for i, place in enumerate(places):
        if place.tunnel_ip is None:
            continue
        _uplink(place, wire, "ul0", f"h{i}")
        place.ovs.vsctl("--", "--may-exist", "add-br", "br-phy", "--", "set", "Bridge", "br-phy",
                        "datapath_type=netdev", "--", "--may-exist", "add-port", "br-phy", "ul0")
        plen = prefixlens.get(place.host, 24)
        ip_batch(place.netns, ["link set br-phy up", f"addr add {place.tunnel_ip}/{plen} dev br-phy"])


def _reaches(netns: str, ip: str) -> bool:
    return run(["ping", "-c", "1", "-W", "1", ip], netns=netns, check=False).returncode == 0


def wait_underlay(places: list[Place], *, timeout: float = 20.0) -> None:
    """Until every host reaches every other host's tunnel address (so OVS has resolved its tunnel
    neighbours before the first tenant packet is encapsulated)."""
    ips = [(p, p.tunnel_ip) for p in places if p.tunnel_ip]
    for place, _ in ips:
        for other, ip in ips:
            if other is place or ip is None:
                continue
            wait_for(functools.partial(_reaches, place.netns, ip), timeout=timeout,
                     what=f"{place.host} to reach {other.host}'s tunnel address {ip}")


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


def build_ext(record: Record, prefix: str, places: list[Place], hosts: tuple[HostState, ...],
              bridge: str) -> str | None:
    planned = {h.name: h for h in hosts}
    users = [p for p in places if planned[p.host].ovs.show is not None
             and bridge in p.ovs.vsctl("list-br").stdout.split()]
    if not users:
        return None
    wire = _wire(record, prefix, "ext")
    lines = [f"addr add {gw} dev br0" for gw in external_gateways(hosts)]
    lines.append(f"addr add {INTERNET} dev lo")
    ip_batch(wire, lines)
    for i, place in enumerate(users):
        _uplink(place, wire, "ex0", f"x{i}")
        place.ovs.vsctl("--", "--may-exist", "add-port", bridge, "ex0")
    run(["sysctl", "-w", "net.ipv4.ip_forward=1"], netns=wire)
    return wire


def spawn(record: Record, argv: list[str], netns: str, what: str) -> int:
    """Start a long-running process in ``netns`` (``ip netns exec`` execs it, so the PID is the
    process's own) and record its PID at once."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    CHILDREN[proc.pid] = proc
    record.add_process(proc.pid, what, netns)
    return proc.pid


def boot_guest(record: Record, netns: str, workdir: Path) -> None:
    """DHCP on eth0, then listeners on tcp/22 and tcp/80."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    os.chmod(script, 0o755)
    www = workdir / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text(f"{netns}\n")
    run(["busybox", "udhcpc", "-i", "eth0", "-q", "-n", "-t", "5", "-T", "1", "-s", str(script)], netns=netns,
        timeout=30)
    spawn(record, ["busybox", "nc", "-ll", "-p", "22", "-e", "/bin/cat"], netns, "guest sshd stand-in (nc)")
    spawn(record, ["busybox", "httpd", "-f", "-p", "80", "-h", str(www)], netns, "guest httpd")
