"""Apply a :class:`~neutrino.linux.readback.HostDiff` to a realized host.

Links: a planned veth whose ``peer`` is in the same namespace (the hybrid plug's qvb/qvo) is made as
one pair; a planned veth without a peer pairs with the planned device of the same suffix in another
of the host's namespaces (Grizzly's ``tap…`` in the host and ``ns-``/``qr-``/``qg-…`` in qdhcp/qrouter,
i.e. Neutron's ``ovs_use_veth``); an instance's tap is a veth whose peer is ``eth0`` in the guest's
namespace; Linux bridges are bridges. Every veth end gets ``ethtool -K tx off`` (the userspace datapath
does not fill in checksums). Addresses, routes, rules and neighbours go through ``ip -batch``; iptables
through ``iptables-restore -n``; OVS bridges and ports in one ``ovs-vsctl`` transaction
(``datapath_type=netdev``); flows with ``ovs-ofctl replace-flows``
(OpenFlow 1.0 encoding; see :func:`apply_ovs`).

What does not depend on each other runs at once (:func:`neutrino.linux.runner.parallel`): the
namespaces, each namespace's links (one ``ip -batch``), the ``ethtool`` calls beside the OVS work,
each bridge's flows, and each namespace's configuration (:func:`configure`: one ``sysctl -w``, then one ``ip -batch`` with
links set up, addresses, routes, rules and neighbours, then iptables). Within
a namespace the order is the one the steps always had.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from neutrino.host import iptables as ipt
from neutrino.host.dnsmasq import DnsmasqProcess
from neutrino.host.iproute_link import Link, LinkKind
from neutrino.host.iproute_route import format_rule
from neutrino.host.openflow import format_add_flow
from neutrino.host.ovsdb import Bridge, OvsdbShow, Port
from neutrino.host.state import BridgeFlows, HostState
from neutrino.linux import netns as netns_lib
from neutrino.linux.ovs import OvsInstance
from neutrino.linux.readback import HostDiff, route_key
from neutrino.linux.records import Record, check_device
from neutrino.linux.runner import parallel, parallel_steps, run, wait_for

log = logging.getLogger(__name__)

_PAIR_PREFIX = re.compile(r"^(tap|ns-|qr-|qg-|sg-|fg-|rfp-|fpr-)(.+)$")
_TUNNEL_TYPES = ("gre", "vxlan", "geneve")


@dataclass(frozen=True, slots=True)
class GuestEnd:
    """The guest side of an instance's tap: the guest's namespace and its eth0's MAC."""

    netns: str
    mac: str
    mtu: int | None = None


@dataclass
class Place:
    """Where a host lives on this machine."""

    host: str
    netns: str
    ns_real: dict[str, str]  # planned namespace -> real one ("" -> the host's namespace)
    ovs: OvsInstance
    workdir: Path
    tunnel_ip: str | None
    guests: dict[str, GuestEnd] = field(default_factory=dict)  # tap device -> guest end
    paths: dict[str, str] = field(default_factory=dict)  # planned file path -> real path
    spawn: Callable[[list[str], str, str], int] | None = None  # (argv, netns, what) -> pid

    def real(self, planned: str) -> str:
        return self.ns_real[planned]

    def real_path(self, planned: str) -> str:
        if planned not in self.paths:
            self.paths[planned] = str(self.workdir / "files" / planned.lstrip("/"))
        return self.paths[planned]


def ip_batch(netns: str, lines: list[str]) -> None:
    if lines:
        run(["ip", "-batch", "-"], netns=netns, input="".join(line + "\n" for line in lines))


def _tx_off(netns: str, dev: str) -> None:
    run(["ethtool", "-K", dev, "tx", "off"], netns=netns, check=False)


def tx_off(ends: list[tuple[str, str]]) -> None:
    """``ethtool -K DEV tx off`` for each (namespace, device), at once (one ethtool per device)."""
    parallel(lambda end: _tx_off(*end), ends)


def _partner(state: HostState, ns: str, link: Link) -> tuple[str, str] | None:
    """The (planned namespace, device) at the other end of a planned veth, if the plan has it."""
    here = state.namespace(ns)
    if link.peer and here is not None and here.link(link.peer) is not None:
        return ns, link.peer
    m = _PAIR_PREFIX.match(link.name)
    if not m:
        return None
    for other in state.namespaces:
        if other.name == ns:
            continue
        for lk in other.links or ():
            o = _PAIR_PREFIX.match(lk.name)
            if o and o.group(2) == m.group(2) and o.group(1) != m.group(1):
                return other.name, lk.name
    return None


def _link_setup(lk: Link) -> list[str]:
    cmds: list[str] = []
    if lk.mac and lk.kind is not LinkKind.LOOPBACK:
        cmds.append(f"link set dev {lk.name} address {lk.mac.lower()}")
    if lk.mtu is not None and lk.kind is not LinkKind.LOOPBACK:
        cmds.append(f"link set dev {lk.name} mtu {lk.mtu}")
    if lk.master and lk.master != "ovs-system":
        cmds.append(f"link set dev {lk.name} master {lk.master}")
    if lk.promisc:
        cmds.append(f"link set dev {lk.name} promisc on")
    if lk.up:
        cmds.append(f"link set dev {lk.name} up")
    return cmds


def make_links(place: Place, desired: HostState, d: HostDiff) -> list[tuple[str, str]]:
    """Create the missing links (OVS internal ports aside: OVS makes those, see :func:`move_internal`):
    one ``ip -batch`` per namespace, the namespaces at once, then the guests' ends of their taps.
    Returns the veth ends made, (real namespace, device) each, whose offload :func:`tx_off` turns off."""
    made: set[tuple[str, str]] = set()
    lines: dict[str, list[str]] = {}  # real namespace -> its ``link add`` lines, in the plan's order
    guest_lines: list[tuple[str, list[str]]] = []
    ends: list[tuple[str, str]] = []  # veth ends made: their checksum offload goes off at the end
    for ch in d.links:
        if ch.have is not None:
            continue
        lk, ns = ch.want, ch.ns
        check_device(lk.name)
        real = place.real(ns)
        if (ns, lk.name) in made or lk.kind in (LinkKind.OVS_INTERNAL, LinkKind.VLAN):
            continue
        if lk.kind is LinkKind.BRIDGE:
            lines.setdefault(real, []).append(f"link add {lk.name} type bridge")
            made.add((ns, lk.name))
            continue
        guest = place.guests.get(lk.name)
        if guest is not None:
            lines.setdefault(real, []).append(f"link add {lk.name} type veth peer name eth0 netns {guest.netns}")
            glines = [f"link set dev eth0 address {guest.mac.lower()}"]
            if guest.mtu:
                glines.append(f"link set dev eth0 mtu {guest.mtu}")
            guest_lines.append((guest.netns, [*glines, "link set dev eth0 up"]))
            ends += [(guest.netns, "eth0"), (real, lk.name)]
            made.add((ns, lk.name))
            continue
        other = _partner(desired, ns, lk)
        if other is None:
            log.warning("%s: no partner for %s in %s; not made", place.host, lk.name, ns or "the host")
            continue
        ons, oname = other
        check_device(oname)
        peer_ns = "" if ons == ns else f" netns {place.real(ons)}"
        lines.setdefault(real, []).append(f"link add {lk.name} type veth peer name {oname}{peer_ns}")
        made.update({(ns, lk.name), (ons, oname)})
        ends += [(real, lk.name), (place.real(ons), oname)]
    parallel(_ip_batch, lines.items())
    parallel(_ip_batch, guest_lines)
    return ends


def _ip_batch(batch: tuple[str, list[str]]) -> None:
    ip_batch(*batch)


def _in_host(place: Place, dev: str) -> bool:
    return run(["ip", "link", "show", "dev", dev], netns=place.netns, check=False).returncode == 0


def move_internal(place: Place, d: HostDiff) -> None:
    """OVS internal ports planned in another namespace (Stein's ``tap``/``qr-``/``qg-`` in qdhcp and
    qrouter): ``ovs-vswitchd`` makes them in the host's namespace; move them where the plan has them.
    (On the userspace datapath the port is a tap whose file descriptor OVS keeps, so it still passes
    traffic in its new namespace.)"""
    ends: list[tuple[str, str]] = []
    for ch in d.links:
        lk, ns = ch.want, ch.ns
        if ch.have is not None or lk.kind is not LinkKind.OVS_INTERNAL or not ns:
            continue
        wait_for(functools.partial(_in_host, place, lk.name), timeout=10, what=f"OVS to make {lk.name}")
        run(["ip", "link", "set", "dev", lk.name, "netns", place.real(ns)], netns=place.netns)
        ends.append((place.real(ns), lk.name))
    tx_off(ends)


TRUNK_BRIDGE = "br-trunk"  # the backend's own OVS bridge standing in for 8021q (not in any plan)
_VLAN_NAME = re.compile(r"(\d+)$")


def vlan_id(lk: Link) -> int:
    if lk.details is not None and lk.details.vlan_id is not None:
        return lk.details.vlan_id
    m = _VLAN_NAME.search(lk.name)
    if m is None:
        raise ValueError(f"{lk.name}: a VLAN device without an id")
    return int(m.group(1))


def make_vlans(place: Place, d: HostDiff) -> None:
    """VLAN devices (nova-network's ``vlan100`` on ``eth0``) without the 8021q module: the host's
    private OVS gets a bridge ``br-trunk`` holding the parent (the trunk NIC, carrying tagged frames)
    and, per VLAN, an internal port named as the planned device with ``tag=<id>``. The internal port
    is an untagged device in the host's namespace, enslaved to ``br<id>`` like the real vlan device;
    OVS pushes the tag on the way out and pops it on the way in."""
    args: list[str] = []
    made: list[tuple[str, str]] = []
    for ch in d.links:
        lk = ch.want
        if ch.have is not None or lk.kind is not LinkKind.VLAN or ch.ns:
            continue
        parent = lk.peer or lk.link_type
        if not parent:
            raise ValueError(f"{place.host}: VLAN device {lk.name} has no parent")
        check_device(lk.name)
        if not args:
            args = ["--may-exist", "add-br", TRUNK_BRIDGE, "--", "set", "Bridge", TRUNK_BRIDGE,
                    "datapath_type=netdev"]
        if (TRUNK_BRIDGE, parent) not in made:
            args += ["--", "--may-exist", "add-port", TRUNK_BRIDGE, parent]
            made.append((TRUNK_BRIDGE, parent))
        args += ["--", "--may-exist", "add-port", TRUNK_BRIDGE, lk.name, f"tag={vlan_id(lk)}", "--", "set",
                 "Interface", lk.name, "type=internal"]
        made.append((TRUNK_BRIDGE, lk.name))
    if not args:
        return
    place.ovs.vsctl(*args)
    for _, dev in made:
        wait_for(functools.partial(_in_host, place, dev), timeout=10, what=f"OVS to make {dev}")
    tx_off([(place.netns, dev) for _, dev in made])


def _ip_lines(d: HostDiff) -> dict[str, list[str]]:
    """Each planned namespace's ``ip`` lines, in the order they must run there: the links' MAC, MTU,
    master, promisc and up (bridges first: ports are enslaved to them), then addresses, then routes,
    rules and neighbours."""
    by_ns: dict[str, list[str]] = {}
    for bridges_first in (True, False):
        for ch in d.links:
            if (ch.want.kind is LinkKind.BRIDGE) == bridges_first:
                by_ns.setdefault(ch.ns, []).extend(_link_setup(ch.want))
    for a in d.addresses:
        iface = a.address.interface
        if a.add:
            extra = " nodad" if iface.version == 6 else (" brd +" if iface.network.prefixlen < 31 else "")
            by_ns.setdefault(a.ns, []).append(f"addr add {iface} dev {a.dev}{extra}")
        else:
            by_ns.setdefault(a.ns, []).append(f"addr del {iface} dev {a.dev}")
    for r in d.routes:
        by_ns.setdefault(r.ns, []).append(f"route {'replace' if r.add else 'del'} {route_key(r.route)}")
    for ns, rule in d.rules:
        text = format_rule(rule).strip()
        pref, _, body = text.partition(":")
        by_ns.setdefault(ns, []).append(f"rule add pref {pref} {body.strip()}")
    for ns, nb in d.neighbours:
        if nb.lladdr and nb.dev:
            by_ns.setdefault(ns, []).append(f"neigh replace {nb.address} lladdr {nb.lladdr} dev {nb.dev} nud permanent")
    return by_ns


def configure(place: Place, d: HostDiff) -> None:
    """Sysctls (one ``sysctl -w``), then links set up, addresses, routes, rules and neighbours (one
    ``ip -batch`` per namespace), then iptables (``iptables-restore -n``): each namespace in that
    order, the namespaces at once (nothing of this crosses from one namespace to another). Sysctls
    come first, as Neutron sets them when it makes the namespace: an HA router's
    ``addr_gen_mode=1`` only keeps the kernel from making link-local addresses on devices set up
    after it."""
    ip_lines = _ip_lines(d)
    sysctls: dict[str, list[str]] = {}
    for ns, sc in d.sysctls:
        sysctls.setdefault(ns, []).append(f"{sc.key}={sc.value}")
    rulesets: dict[str, list[str]] = {}
    for ns, change in d.iptables:
        rulesets.setdefault(ns, []).append(ipt.format_restore(change, dialect=ipt.V1_8_9))
    order = list(dict.fromkeys([*ip_lines, *sysctls, *rulesets]))

    def one(ns: str) -> None:
        real = place.real(ns)
        if ns in sysctls:
            run(["sysctl", "-w", *sysctls[ns]], netns=real)
        ip_batch(real, ip_lines.get(ns, []))
        for text in rulesets.get(ns, ()):
            run(["iptables-restore", "-n"], netns=real, input=text)

    parallel(one, order)


def _ofport_requests(desired: HostState) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for bf in desired.ovs.bridges:
        for p in bf.ports.ports if bf.ports else ():
            if isinstance(p.number, int):
                out[(bf.bridge, p.name)] = p.number
    return out


def _port_args(bridge: str, port: Port, tunnel_ip: str | None, ofport: int | None) -> list[str]:
    args = ["--", "--may-exist", "add-port", bridge, port.name]
    if port.tag is not None:
        args.append(f"tag={port.tag}")
    if port.trunks:
        args.append("trunks=" + ",".join(str(t) for t in port.trunks))
    if port.vlan_mode:
        args.append(f"vlan_mode={port.vlan_mode}")
    for iface in port.interfaces or ():
        sets: list[str] = []
        if iface.type:
            sets.append(f"type={iface.type}")
        opts = dict(iface.options)
        if iface.type in _TUNNEL_TYPES and "local_ip" not in opts and tunnel_ip:
            opts["local_ip"] = tunnel_ip
        sets.extend(f"options:{k}={v}" for k, v in opts.items())
        if ofport is not None and iface.name == port.name:
            sets.append(f"ofport_request={ofport}")
        if sets:
            args += ["--", "set", "Interface", iface.name, *sets]
    return args


def bridge_args(br: Bridge, *, protocols: str = "OpenFlow10,OpenFlow13") -> list[str]:
    args = ["--", "--may-exist", "add-br", br.name, "--", "set", "Bridge", br.name, "datapath_type=netdev",
            f"protocols={protocols}"]
    if br.fail_mode:
        args.append(f"fail_mode={br.fail_mode}")
    return args


def apply_ovs(place: Place, desired: HostState, d: HostDiff) -> None:
    ofports = _ofport_requests(desired)
    args: list[str] = []
    for br in d.bridges:
        args += bridge_args(br)
        for p in br.ports:
            if p.name != br.name:
                args += _port_args(br.name, p, place.tunnel_ip, ofports.get((br.name, p.name)))
    for bridge, p in d.ports:
        args += _port_args(bridge, p, place.tunnel_ip, ofports.get((bridge, p.name)))
    if args:
        place.ovs.vsctl(*args[1:])
    show = desired.ovs.show if isinstance(desired.ovs.show, OvsdbShow) else None
    new_bridges = {b.name for b in d.bridges}
    changed = {f.bridge for f in d.flows} | new_bridges
    parallel(functools.partial(_replace_flows, place),  # each bridge's flows its own business
             [bf for bf in desired.ovs.bridges if bf.bridge in changed and bf.flows is not None
              and (show is None or show.bridge(bf.bridge) is not None)])


def _replace_flows(place: Place, bf: BridgeFlows) -> None:
    if bf.flows is not None:
        text = "".join(format_add_flow(f.without_stats()) + "\n" for f in bf.flows.flows)
        sock = os.path.join(place.ovs.rundir, f"{bf.bridge}.mgmt")
        wait_for(functools.partial(os.path.exists, sock), timeout=10, what=f"{bf.bridge}'s management socket")
        # OpenFlow 1.0 + NXM encoding on purpose: the plans' flows are written in 1.0 terms, and sent as
        # a 1.4 bundle ``mod_vlan_vid`` would push a second tag on a tagged frame (seen here with Grizzly's
        # GRE, which carries tagged frames) and ``set_tunnel`` would read back as ``load:…->NXM_NX_TUN_ID[]``.
        # replace-flows sends only the difference (it dumps the bridge and diffs itself).
        # Flows in tables other than 0 (Stein's br-int and br-tun pipelines) cannot go as OpenFlow 1.0
        # to OVS 3.1 (no table_id extension there), so those bridges get OpenFlow 1.3; their
        # ``mod_vlan_vid`` acts on untagged frames only (the local VLAN is pushed), where 1.0 and 1.3 agree.
        tables = any(f.table not in (None, 0) for f in bf.flows.flows)
        place.ovs.ofctl("replace-flows", bf.bridge, "-", input=text, options=("-O", "OpenFlow13") if tables else ())


def apply_files(place: Place, d: HostDiff, desired: HostState | None = None) -> None:
    for f in d.files:
        path = Path(place.real_path(f.path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f.text)
    if desired is None or not d.files:
        return
    # a running dnsmasq rereads its hosts and opts files on SIGHUP, as the DHCP agent's reload does
    changed = {f.path for f in d.files}
    restarting = {p.options.pid_file for p in d.processes}
    for proc in desired.processes or ():
        files = {proc.options.hostsfile, proc.options.optsfile, proc.options.get("addn-hosts")}
        pid_file = proc.options.pid_file
        if not pid_file or pid_file in restarting or not (files & changed):
            continue
        real_pid = Path(place.real_path(pid_file))
        if real_pid.is_file() and real_pid.read_text().strip().isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(real_pid.read_text().strip()), signal.SIGHUP)


def real_dnsmasq_argv(place: Place, proc: DnsmasqProcess) -> list[str]:
    """The planned argv with every file under the state directory, the lease script dropped, and
    dnsmasq kept as root (its files are ours)."""
    out = ["dnsmasq", "--user=root"]  # as nobody it could not read files under a 0700 state directory
    for a in proc.argv[1:]:
        key, eq, value = a.partition("=")
        if key == "--dhcp-script":
            continue
        if key in ("--pid-file", "--dhcp-hostsfile", "--dhcp-optsfile", "--addn-hosts", "--dhcp-leasefile") and eq:
            a = f"{key}={place.real_path(value)}"
            Path(place.real_path(value)).parent.mkdir(parents=True, exist_ok=True)
        out.append(a)
    return out


def _has_pid(path: Path) -> bool:
    return path.exists() and path.read_text().strip().isdigit()


def process_ns(desired: HostState, proc: DnsmasqProcess) -> str:
    """The planned namespace a dnsmasq runs in: the one holding its ``--interface``, else its
    ``--listen-address``, else (today's agent: ``--bind-dynamic``, no interface) the ``qdhcp-<net>``
    namespace whose network id is in its pid file's path; the host's own otherwise."""
    opts = proc.options
    for ns in desired.namespaces:
        if opts.interface and ns.link(opts.interface) is not None:
            return ns.name
    for ns in desired.namespaces:
        if any(a.interface.ip in opts.listen_addresses for lk in ns.links or () for a in lk.addresses):
            return ns.name
    for ns in desired.namespaces:
        if ns.name.startswith("qdhcp-") and ns.name[6:] in (opts.pid_file or ""):
            return ns.name
    return ""


def dnsmasq_what(desired: HostState, proc: DnsmasqProcess) -> str:
    """How the record names a dnsmasq: by its interface, else (``--bind-dynamic``) its namespace."""
    return f"dnsmasq {proc.options.interface or process_ns(desired, proc) or 'root'}"


def apply_processes(place: Place, desired: HostState, d: HostDiff, record: Record) -> None:
    for proc in d.processes:
        iface = proc.options.interface
        real = place.real(process_ns(desired, proc))
        argv = real_dnsmasq_argv(place, proc)
        pid_file = proc.options.pid_file
        if pid_file is None:
            raise ValueError(f"{place.host}: dnsmasq for {iface} has no --pid-file")
        real_pid = Path(place.real_path(pid_file))
        real_pid.unlink(missing_ok=True)
        record.add_rundir(str(real_pid.parent))  # its pid file names the process should we crash
        if place.spawn is None:
            raise ValueError("no way to start processes")
        # in the foreground, as our child: its PID is known (and recorded) at once, and it is reaped
        place.spawn([*argv, "--keep-in-foreground"], real, dnsmasq_what(desired, proc))
        wait_for(functools.partial(_has_pid, real_pid), timeout=10, what=f"dnsmasq's pid file {real_pid}")


def _ovs_side(place: Place, desired: HostState, d: HostDiff) -> None:
    apply_ovs(place, desired, d)
    move_internal(place, d)
    make_vlans(place, d)


def make_namespaces(place: Place, d: HostDiff, record: Record) -> None:
    """The missing planned namespaces: written down (in the plan's order), then made at once."""
    record.add_namespaces([(place.real(ns), f"{place.host}/{ns}") for ns in d.namespaces])
    parallel(_add_namespace, [place.real(ns) for ns in d.namespaces])


def _add_namespace(real: str) -> None:
    if not netns_lib.exists(real):
        netns_lib.add(real)


def apply_diff(place: Place, desired: HostState, d: HostDiff, record: Record) -> None:
    """Make the host the planned one, as far as ``d`` says it is not."""
    make_namespaces(place, d, record)
    ends = make_links(place, desired, d)
    # the new veth ends' offloads go off while OVS takes its bridges, ports and flows (neither needs the other)
    parallel_steps([functools.partial(tx_off, ends), functools.partial(_ovs_side, place, desired, d)])
    configure(place, d)
    apply_files(place, d, desired)
    apply_processes(place, desired, d, record)
