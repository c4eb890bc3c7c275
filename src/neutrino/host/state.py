"""The host state: what one Linux host's networking is, kept in the tools' own languages.

Every piece is the parsed form of what a real tool prints (or would print): links and addresses
as ``ip addr`` shows them, routes as ``ip route``, rules as ``iptables-save``, flows as
``ovs-ofctl dump-flows``. ``None`` means "not known" (never captured, never planned), which is
different from "known to be empty". Planners produce host states, importers read them from
captures, the simulator and the Linux backend consume them, and the views print them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parsed forms: only named here (a command that loads a host imports what it holds)
    from neutrino.host.bridge import BridgeInfo
    from neutrino.host.dnsmasq import DnsmasqProcess
    from neutrino.host.iproute_link import Link
    from neutrino.host.iproute_route import Neighbour, Netns, Route, RoutingRule
    from neutrino.host.iptables import Ruleset
    from neutrino.host.nettools import ArpEntry, IfconfigInterface, RouteEntry
    from neutrino.host.ofctl_show import OfctlShow
    from neutrino.host.openflow import FlowDump
    from neutrino.host.ovsdb import OvsdbShow, VsctlShowExcerpt
    from neutrino.host.sysctl import Sysctl

ROOT = ""  # the name of the host's own (root) namespace


@dataclass(frozen=True, slots=True)
class NamespaceState:
    """One network namespace of a host (``name`` ``""`` is the host's root namespace).

    ``links`` come from ``ip addr``/``ip link`` (with addresses); ``ifconfig`` and ``route_n``
    and ``arp`` keep what the net-tools printed when that is how the host was captured, since
    they carry counters that ``ip`` does not.
    """

    name: str = ROOT
    nsid: int | None = None
    links: tuple[Link, ...] | None = None
    ifconfig: tuple[IfconfigInterface, ...] | None = None
    routes: tuple[Route, ...] | None = None
    route_n: tuple[RouteEntry, ...] | None = None
    rules: tuple[RoutingRule, ...] | None = None
    neighbours: tuple[Neighbour, ...] | None = None
    arp: tuple[ArpEntry, ...] | None = None
    iptables: Ruleset | None = None
    sysctls: tuple[Sysctl, ...] | None = None
    iptables_dialect: str | None = None  # how this host's iptables prints: "classic", "1.8.9", "modern"

    def link(self, name: str) -> Link | None:
        return next((lk for lk in self.links or () if lk.name == name), None)


@dataclass(frozen=True, slots=True)
class BridgeFlows:
    """The OpenFlow side of one OVS bridge: its flows and its ``ovs-ofctl show`` (port numbers)."""

    bridge: str
    flows: FlowDump | None = None
    ports: OfctlShow | None = None


@dataclass(frozen=True, slots=True)
class OvsState:
    """Open vSwitch on the host: the OVSDB view (possibly a partial capture) and each bridge's flows."""

    show: OvsdbShow | VsctlShowExcerpt | None = None
    bridges: tuple[BridgeFlows, ...] = ()

    def flows_of(self, bridge: str) -> BridgeFlows | None:
        return next((b for b in self.bridges if b.bridge == bridge), None)

    def with_bridge(self, flows: BridgeFlows) -> OvsState:
        rest = tuple(b for b in self.bridges if b.bridge != flows.bridge)
        return replace(self, bridges=tuple(sorted((*rest, flows), key=lambda b: b.bridge)))


@dataclass(frozen=True, slots=True)
class FileState:
    """A configuration file a process reads (dnsmasq's host and opts files), as ``cat`` shows it."""

    path: str
    text: str


@dataclass(frozen=True, slots=True)
class Origin:
    """Why a planned item exists: ``item`` names it the way its tool does (a device name, a
    flow's add-flow text, ``table/chain`` for iptables), ``obj`` is the OpenStack object
    (``port 7c7ae61e-05…``) and ``builder`` the planner function that made it."""

    kind: str  # "link", "flow", "chain", "rule", "route", "process", "namespace", "bridge", "port"
    item: str
    obj: str
    builder: str


@dataclass(frozen=True, slots=True)
class HostState:
    """One host. ``namespaces`` holds the root namespace (``""``) first, then the others by name."""

    name: str
    namespaces: tuple[NamespaceState, ...] = ()
    netns_list: tuple[Netns, ...] | None = None
    ovs: OvsState = field(default_factory=OvsState)
    linux_bridges: tuple[BridgeInfo, ...] | None = None
    processes: tuple[DnsmasqProcess, ...] | None = None
    files: tuple[FileState, ...] = ()
    partial: tuple[str, ...] = ()  # the captures that were cut (grep, '.' lines), by command
    origins: tuple[Origin, ...] = ()  # for planned hosts: why each item exists

    def namespace(self, name: str) -> NamespaceState | None:
        return next((ns for ns in self.namespaces if ns.name == name), None)

    def namespace_names(self) -> tuple[str, ...]:
        """Every namespace the host is known to have (``ip netns``), besides the root one."""
        names = {ns.name for ns in self.namespaces if ns.name != ROOT}
        names.update(n.name for n in self.netns_list or ())
        return tuple(sorted(names))

    def with_namespace(self, ns: NamespaceState) -> HostState:
        rest = [n for n in self.namespaces if n.name != ns.name]
        ordered = sorted((*rest, ns), key=lambda n: (n.name != ROOT, n.name))
        return replace(self, namespaces=tuple(ordered))

    def file(self, path: str) -> FileState | None:
        return next((f for f in self.files if f.path == path), None)
