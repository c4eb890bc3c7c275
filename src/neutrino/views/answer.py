"""Answer the seeds' commands from a host state, printing exactly what the real tool would.

``answer(host, command)`` is the one entry point: it finds the namespace, renders the view with
the canonical formatter of that tool's language (or derives it from another tool's view of the
same state: ``ifconfig`` from ``ip addr``), then applies the ``| grep`` filters.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from neutrino.errors import NotFound
from neutrino.host import iptables as ipt
from neutrino.host.bridge import format_brctl_show
from neutrino.host.dnsmasq import format_ps_line
from neutrino.host.iproute_link import (
    Link,
    format_ip_addr,
    format_ip_addr_brief,
    format_ip_addr_oneline,
    format_ip_link,
    format_ip_link_brief,
    format_ip_link_oneline,
    oneline_addresses,
)
from neutrino.host.iproute_route import (
    Netns,
    Route,
    format_ip_neigh,
    format_ip_netns,
    format_ip_route,
    format_ip_rule,
)
from neutrino.host.iptables_listing import format_listing
from neutrino.host.nettools import format_arp_n, format_ifconfig, format_route_n
from neutrino.host.ofctl_show import format_dump_ports, format_ofctl_show
from neutrino.host.openflow import FlowDump, FlowStats, format_dump_flows, parse_flow
from neutrino.host.ovs_datapath import FdbEntry, datapaths_of, format_dpctl_show, format_fdb_show
from neutrino.host.ovsdb import (
    BRIDGE_COLUMNS,
    Bridge,
    OvsdbShow,
    bridge_list_columns,
    format_vsctl_list,
    format_vsctl_show,
)
from neutrino.host.state import ROOT, HostState, NamespaceState
from neutrino.host.sysctl import format_sysctls
from neutrino.ingest.commands import Command, View
from neutrino.views import derive

if TYPE_CHECKING:
    from neutrino.sim.ovs import OvsBridgeSim
    from neutrino.sim.world import World


class NotCaptured(NotFound):
    """The host state does not know what this command would show."""


def answer(host: HostState, cmd: Command, *, world: World | None = None, state: Path | None = None,
           stderr: TextIO | None = None) -> str:
    """What ``cmd`` prints on ``host`` (stdout; what the tool writes to stderr goes to ``stderr``,
    by default this process's). The commands that need the simulator (``ovs-appctl ofproto/trace``,
    ``conntrack -L``, ``tcpdump``) use ``world``, or else the world kept in the state folder
    ``state`` (by default the one ``$NEUTRINO_STATE`` names), and the last trace kept there."""
    if cmd.view in _WORLD_VIEWS:
        out, err = _simulated(host, cmd, world, state)
        if err:
            (stderr or sys.stderr).write(err)
        text = out
    else:
        text = _render(host, cmd)
    for grep in cmd.greps:
        text = grep.apply(text)
    return text


_WORLD_VIEWS = frozenset({View.APPCTL_OFPROTO_TRACE, View.APPCTL_FDB_SHOW, View.CONNTRACK_L, View.TCPDUMP})


def _state_dir(state: Path | None) -> Path:
    if state is not None:
        return state
    from neutrino import store

    return store.state_dir()


def _kept_world(host: HostState, state: Path | None) -> World | None:
    """The world the agents keep in the state folder (booted now if none is kept), for a planned
    host of the cloud kept there; None for an imported host or a folder without a cloud."""
    if not planned(host):
        return None
    folder = _state_dir(state)
    if not (folder / "cloud.json").exists():
        return None
    from neutrino import worldkeep
    from neutrino.errors import NeutrinoError

    try:
        world = worldkeep.booted_world(folder)
    except NeutrinoError:
        return None
    return world if host.name in world.hosts else None


def _simulated(host: HostState, cmd: Command, world: World | None, state: Path | None) -> tuple[str, str]:
    """(stdout, stderr) of the commands the simulator answers."""
    if cmd.view is View.APPCTL_FDB_SHOW:
        return _fdb_show(host, cmd, world, state), ""
    if cmd.view is View.APPCTL_OFPROTO_TRACE:
        from neutrino.views.ofproto_trace import ofproto_trace, parse_trace_args

        if host.ovs.show is None:
            raise _missing(host, cmd)
        req = parse_trace_args(cmd.args)
        w = world if world is not None else _kept_world(host, state)

        def learned(bridge: str) -> OvsBridgeSim | None:
            if w is None:
                return None
            try:
                return w.bridge(host.name, bridge)
            except Exception:  # noqa: BLE001 - a bridge the world could not build has learned nothing
                return None

        return ofproto_trace(host, req, learned), ""
    if cmd.view is View.CONNTRACK_L:
        # a planned host's root namespace, even one whose devices and rules were not planned (the
        # openvswitch firewall's hosts): its table holds what the OVS bridges track
        root = cmd.netns == ROOT and host.namespace(ROOT) is None and planned(host)
        ns = NamespaceState(ROOT) if root else _namespace(host, cmd)
        return _conntrack(host, ns, cmd, world, state)
    ns = _namespace(host, cmd)
    return _tcpdump(host, ns, cmd, world, state)


#: an entry's age: the simulator has no clock, so what OVS shows a second after the last packet
FDB_AGE = 1
_OFPP_LOCAL = 0xFFFE  # the bridge's own port, which fdb/show names LOCAL


def _fdb_show(host: HostState, cmd: Command, world: World | None, state: Path | None) -> str:
    """``ovs-appctl fdb/show BR``: what NORMAL learned on the bridge, from the last kept trace (the
    MAC table as that trace left it) or else the kept world (what the instances' boot taught it)."""
    from neutrino.views.tcpdump import kept_trace, mac_table

    if host.ovs.show is None:
        raise _missing(host, cmd)
    br = next((b for b in _bridges(host) if b.name == cmd.target), None)
    if br is None:
        raise NotFound("no such bridge\novs-appctl: ovs-vswitchd: server returned an error")
    if not planned(host):
        raise _missing(host, cmd, f"what {br.name} has learned (ovs-appctl fdb/show)")
    rows: list[tuple[int, int, str]] | None = None
    if world is None:
        kept = kept_trace(_state_dir(state))
        if kept is not None:
            rows = getattr(kept, "fdb", {}).get((host.name, br.name))  # a trace kept before fdb was
    if rows is None:
        w = world if world is not None else _kept_world(host, state)
        rows = mac_table(w, host.name, br.name) if w is not None else None
    entries = tuple(FdbEntry("LOCAL" if port == _OFPP_LOCAL else port, vlan, mac, FDB_AGE)
                    for port, vlan, mac in rows or ())
    return format_fdb_show(entries)


def _conntrack(host: HostState, ns: NamespaceState, cmd: Command, world: World | None,
               state: Path | None) -> tuple[str, str]:
    from neutrino.views.conntrack import conntrack_list, parse_conntrack_args
    from neutrino.views.tcpdump import kept_trace, ovs_connections

    q = parse_conntrack_args(cmd.args)
    if world is None and planned(host):
        kept = kept_trace(_state_dir(state))
        if kept is not None and (host.name, ns.name) in kept.conntrack:  # as the last trace left it
            return conntrack_list(kept.conntrack[(host.name, ns.name)], q)
    w = world if world is not None else _kept_world(host, state)
    if w is None:
        raise NotCaptured(f"host {host.name}: conntrack -L: the simulator keeps the connection tables of the "
                          "planned hosts of the cloud kept here, not of an imported host")
    nf = w.netfilter(host.name, ns.name)
    conns = list(nf.conntrack.entries()) if nf is not None else []
    if ns.name == ROOT:  # the kernel datapath's ct() connections (the openvswitch firewall's), zone=N
        conns.extend(ovs_connections(w, host.name))
    return conntrack_list(conns, q)


def _tcpdump(host: HostState, ns: NamespaceState, cmd: Command, world: World | None,
             state: Path | None) -> tuple[str, str]:
    from neutrino.views.tcpdump import kept_trace, no_such_device, parse_tcpdump_args, tcpdump

    q = parse_tcpdump_args(cmd.args)
    if q.device not in _device_names(host, ns):
        raise no_such_device(q.device)
    kept = kept_trace(_state_dir(state))
    if kept is None:
        raise NotFound("tcpdump: no trace kept to capture from: run 'neutrino trace SOURCE DESTINATION' first "
                       "(tcpdump answers with the packets the last trace sent through the device)")
    topo = kept.topo if kept.topo is not None else (world.topo if world is not None else None)
    device = next((lk for lk in ns.links or () if lk.name == q.device), None)
    addresses = frozenset(a.interface.ip for a in (device.addresses if device is not None else ())
                          if isinstance(a.interface.ip, IPv4Address))
    return tcpdump(kept.trace, topo, host.name, q, addresses)


def _device_names(host: HostState, ns: NamespaceState) -> set[str]:
    """The devices of the namespace: its links, and in the root namespace the OVS bridges' own and
    internal ports no other namespace holds."""
    names = {lk.name for lk in ns.links or ()} | {i.name for i in ns.ifconfig or ()}
    if not ns.name:
        elsewhere = {lk.name for other in host.namespaces if other.name for lk in other.links or ()}
        for b in _bridges(host):
            names.add(b.name)
            for p in b.ports:
                for i in p.interfaces:
                    if (i.type == "internal" or p.name == b.name) and i.name not in elsewhere:
                        names.add(i.name)
    return names


def _missing(host: HostState, cmd: Command, what: str = "") -> NotCaptured:
    where = f" in namespace {cmd.netns}" if cmd.netns else ""
    return NotCaptured(f"host {host.name}: {what or repr(cmd.text or cmd.view.value)} is not known{where}")


def _namespace(host: HostState, cmd: Command) -> NamespaceState:
    ns = host.namespace(cmd.netns)
    if ns is None:
        if cmd.netns and cmd.netns not in host.namespace_names():
            raise NotFound(f'Cannot open network namespace "{cmd.netns}": No such file or directory')
        raise _missing(host, cmd)
    return ns


def _render(host: HostState, cmd: Command) -> str:
    v = cmd.view
    if v is View.VSCTL_SHOW:
        if host.ovs.show is None:
            raise _missing(host, cmd)
        return format_vsctl_show(host.ovs.show, style="as_parsed")
    if v is View.OFCTL_DUMP_FLOWS:
        return _dump_flows(host, cmd)
    if v in _OVS_VIEWS:
        return _ovs(host, cmd)
    if v is View.OFCTL_SHOW:
        br = host.ovs.flows_of(cmd.target)
        if br is None or br.ports is None:
            raise _missing(host, cmd)
        return format_ofctl_show(br.ports)
    if v is View.IP_NETNS and not cmd.netns:
        if host.netns_list is not None:
            return format_ip_netns(host.netns_list)
        return format_ip_netns(tuple(Netns(n) for n in host.namespace_names()))
    if v is View.BRCTL_SHOW:
        if host.linux_bridges is None:
            raise _missing(host, cmd)
        return format_brctl_show(host.linux_bridges)
    if v is View.PS:
        if host.processes is None:
            raise _missing(host, cmd)
        return "".join(format_ps_line(p) + "\n" for p in host.processes)
    if v is View.CAT:
        f = host.file(cmd.target)
        if f is None:
            raise NotFound(f"cat: {cmd.target}: No such file or directory")
        return f.text
    return _render_ns(host, _namespace(host, cmd), cmd)


def _dump_flows(host: HostState, cmd: Command) -> str:
    br = host.ovs.flows_of(cmd.target)
    if br is None or br.flows is None:
        if host.ovs.show is not None and cmd.target not in _bridge_names(host):
            raise NotFound(f"ovs-ofctl: {cmd.target} is not a bridge or a socket")
        raise _missing(host, cmd)
    if "OF13" in cmd.options:
        raise _missing(host, cmd, "the OpenFlow 1.3 rendering of the flows")
    dump = br.flows
    filters = [o.split(":", 1)[1] for o in cmd.options if o.startswith("filter:")]
    if filters:
        want = parse_flow(",".join(filters) + " actions=drop")
        keep = tuple(f for f in dump.flows if (not any(m.startswith("table=") for m in filters)
                                                 or f.table == want.table)
                     and all(m in f.match for m in want.match))
        dump = FlowDump(keep, dump.headers[:1])
    if "--no-stats" not in cmd.options and any(f.stats is None for f in dump.flows):
        # a planned flow has not run yet: OVS would show it with zero counters
        zero = FlowStats(0, 0, 0, 0, idle_age=0)
        dump = FlowDump(tuple(f if f.stats is not None else replace(f, stats=zero) for f in dump.flows),
                        dump.headers)
    return format_dump_flows(dump, stats="--no-stats" not in cmd.options)


def _bridge_names(host: HostState) -> set[str]:
    return {b.name for b in _bridges(host)}


def _bridges(host: HostState) -> tuple[Bridge, ...]:
    show = host.ovs.show
    if show is None:
        return ()
    return show.bridges if isinstance(show, OvsdbShow) else show.bridges()


def planned(host: HostState) -> bool:
    """Whether ``host`` was planned (not imported): its state is all there is, so what the kernel and
    Open vSwitch would make of it (connected routes, the default rules, an empty MAC table) can be
    derived; for an imported host what was not captured stays unknown."""
    return bool(host.origins)


_OVS_VIEWS = frozenset({View.VSCTL_LIST, View.VSCTL_LIST_BR, View.VSCTL_LIST_PORTS, View.DPCTL_SHOW,
                        View.OFCTL_DUMP_PORTS})


def _ovs(host: HostState, cmd: Command) -> str:
    v = cmd.view
    if host.ovs.show is None:
        raise _missing(host, cmd)
    bridges = _bridges(host)
    if v is View.VSCTL_LIST_BR:
        return "".join(f"{b.name}\n" for b in sorted(bridges, key=lambda b: b.name))
    if v is View.DPCTL_SHOW:
        if not planned(host):
            raise _missing(host, cmd)
        return format_dpctl_show(datapaths_of(bridges))
    if v is View.VSCTL_LIST:
        return _vsctl_list(host, cmd, bridges)
    br = next((b for b in bridges if b.name == cmd.target), None)
    if br is None:
        if v is View.OFCTL_DUMP_PORTS:
            raise NotFound(f"ovs-ofctl: {cmd.target} is not a bridge or a socket")
        raise NotFound(f"ovs-vsctl: no bridge named {cmd.target}")
    if v is View.VSCTL_LIST_PORTS:
        return "".join(f"{n}\n" for n in sorted(p.name for p in br.ports if p.name != br.name))
    flows = host.ovs.flows_of(br.name)  # OFCTL_DUMP_PORTS
    if flows is None or flows.ports is None or not planned(host) or "OF13" in cmd.options:
        raise _missing(host, cmd)
    ports = flows.ports.ports
    if cmd.table:
        ports = tuple(p for p in ports if str(getattr(p.number, "value", p.number)) == cmd.table or p.name == cmd.table)
        if not ports:
            raise NotFound(f"ovs-ofctl: {cmd.table}: port not found")
    counted_in_part = frozenset(i.name for p in br.ports for i in p.interfaces
                                if i.type in ("patch", "gre", "vxlan", "geneve", "stt"))
    return format_dump_ports(ports, partial_stats=counted_in_part)


def _vsctl_list(host: HostState, cmd: Command, bridges: tuple[Bridge, ...]) -> str:
    """``ovs-vsctl [--columns=...] list Bridge [BR]`` for the columns a host state knows."""
    show = host.ovs.show
    if cmd.table.lower() != "bridge" or not isinstance(show, OvsdbShow):
        raise _missing(host, cmd)
    columns = tuple(c for o in cmd.options if o.startswith("columns:") for c in o[len("columns:"):].split(","))
    if not columns or any(c not in BRIDGE_COLUMNS for c in columns):
        raise _missing(host, cmd, f"{cmd.text or 'ovs-vsctl list Bridge'!r} (a Bridge's record is known only in "
                       f"the columns {','.join(BRIDGE_COLUMNS)}: ask with --columns=...)")
    chosen = [b for b in bridges if not cmd.target or b.name == cmd.target]
    if cmd.target and not chosen:
        raise NotFound(f'ovs-vsctl: no row "{cmd.target}" in table Bridge')
    return format_vsctl_list([bridge_list_columns(b, columns, show.style) for b in chosen])


def _links(host: HostState, ns: NamespaceState, cmd: Command) -> tuple[Link, ...]:
    if ns.links is not None:
        links = ns.links
    elif ns.ifconfig is not None:
        links = tuple(derive.link_of(ifc, i) for i, ifc in enumerate(ns.ifconfig, 1))
    else:
        raise _missing(host, cmd)
    if cmd.target:
        links = tuple(lk for lk in links if lk.name == cmd.target)
        if not links:
            raise NotFound(f'Device "{cmd.target}" does not exist.')
    return links


def _kernel_routes(host: HostState, ns: NamespaceState, cmd: Command) -> tuple[Route, ...]:
    """The routes of a planned namespace whose tables were not planned: what the kernel makes of its
    links' addresses (:func:`~neutrino.views.derive.kernel_routes`)."""
    if not planned(host):
        raise _missing(host, cmd)
    if ns.links is None:
        where = f"namespace {ns.name}" if ns.name else "the root namespace"
        raise _missing(host, cmd, f"{cmd.text or cmd.view.value!r} (the plan holds no devices of {where}, "
                                  "so its routes cannot be derived)")
    return derive.kernel_routes(ns.links)


def _render_ns(host: HostState, ns: NamespaceState, cmd: Command) -> str:
    v = cmd.view
    if v is View.IP_ADDR:
        links = _links(host, ns, cmd)
        if "-br" in cmd.options:
            return format_ip_addr_brief(links)
        return format_ip_addr_oneline(oneline_addresses(links)) if "-o" in cmd.options else \
            format_ip_addr(links, detailed="-d" in cmd.options)
    if v is View.IP_LINK:
        links = tuple(replace(lk, addresses=()) for lk in _links(host, ns, cmd))
        if "-br" in cmd.options:
            return format_ip_link_brief(links)
        if "-s" in cmd.options and not planned(host):
            raise _missing(host, cmd, "the devices' counters (ip -s link)")
        return format_ip_link_oneline(links) if "-o" in cmd.options else \
            format_ip_link(links, detailed="-d" in cmd.options, stats="-s" in cmd.options)
    if v is View.IP_ROUTE:
        routes = ns.routes if ns.routes is not None else (
            derive.routes_of(ns.route_n) if ns.route_n is not None else _kernel_routes(host, ns, cmd))
        if cmd.table != "all":
            want = None if cmd.table in ("", "main", "254") else cmd.table
            # asked for one table, iproute2 does not print its name
            routes = tuple(replace(r, table=None) for r in routes if r.table == want)
        # like iproute2: IPv4 unless -6, but 'table all' without -4/-6 lists every family
        versions = {6} if "-6" in cmd.options else {4} if ("-4" in cmd.options or cmd.table != "all") else {4, 6}
        routes = tuple(r for r in routes if (r.dst.version if r.dst is not None else
                                             (r.via.version if r.via is not None else 4)) in versions)
        return format_ip_route(routes)
    if v is View.IP_RULE:
        if ns.rules is None:
            if not planned(host):
                raise _missing(host, cmd)
            return format_ip_rule(derive.DEFAULT_RULES_6 if "-6" in cmd.options else derive.DEFAULT_RULES)
        return format_ip_rule(ns.rules)
    if v is View.IP_NEIGH:
        if ns.neighbours is not None:
            return format_ip_neigh(ns.neighbours)
        if ns.arp is not None:
            return format_ip_neigh(tuple(e.neighbour() for e in ns.arp))
        if planned(host):
            return ""  # a planned namespace has resolved no neighbour yet
        raise _missing(host, cmd)
    if v is View.IP_NETNS:
        raise NotFound("ip netns inside a namespace lists the host's namespaces; run it without 'ip netns exec'")
    if v is View.IFCONFIG:
        if ns.ifconfig is not None:
            ifs = ns.ifconfig
        else:
            ifs = tuple(derive.ifconfig_of(lk) for lk in _links(host, ns, replace(cmd, target="")))
            if "-a" not in cmd.options:
                ifs = tuple(i for i in ifs if i.flags & 0x1)
        if cmd.target:
            ifs = tuple(i for i in ifs if i.name == cmd.target)
            if not ifs:
                raise NotFound(f"{cmd.target}: error fetching interface information: Device not found")
        return format_ifconfig(ifs)
    if v is View.ROUTE_N:
        if ns.route_n is not None:
            return format_route_n(ns.route_n)
        if ns.routes is not None:
            return format_route_n(derive.route_n_of(ns.routes))
        return format_route_n(derive.route_n_of(_kernel_routes(host, ns, cmd)))
    if v is View.ARP_N:
        if ns.arp is not None:
            return format_arp_n(ns.arp)
        if ns.neighbours is not None:
            return format_arp_n(derive.arp_of(ns.neighbours))
        if planned(host):
            return ""  # arp -n prints nothing at all for an empty cache
        raise _missing(host, cmd)
    if v is View.SYSCTL:
        if ns.sysctls is None:
            raise _missing(host, cmd)
        keys = set(cmd.target.split())
        return format_sysctls(tuple(s for s in ns.sysctls if not keys or s.key in keys))
    return _iptables(host, ns, cmd)


_DIALECTS = {d.name: d for d in (ipt.CLASSIC, ipt.V1_8_9, ipt.MODERN)}


def _iptables(host: HostState, ns: NamespaceState, cmd: Command) -> str:
    if ns.iptables is None:
        raise _missing(host, cmd)
    dialect = _DIALECTS.get(ns.iptables_dialect or "", ipt.CLASSIC)
    if cmd.view is View.IPTABLES_SAVE:
        tables = ns.iptables.tables
        if cmd.table:
            tables = tuple(t for t in tables if t.name == cmd.table)
            if not tables:
                raise _missing(host, cmd)
        return ipt.format_save(ipt.Ruleset(tables), counters="-c" in cmd.options, dialect=dialect)
    try:
        table = ns.iptables.find(cmd.table or "filter")
    except ValueError:
        raise NotFound(f"iptables v1.8.9 (nf_tables): table '{cmd.table}' does not exist") from None
    if table is None:
        raise _missing(host, cmd)
    if cmd.target and table.find(cmd.target) is None:
        raise NotFound(f"iptables: Chain '{cmd.target}' does not exist")
    if cmd.view is View.IPTABLES_S:
        return ipt.format_rules(table, cmd.target or None, dialect=dialect)
    return format_listing(table, cmd.target or None, verbose="-v" in cmd.options, numeric="-n" in cmd.options,
                          exact="-x" in cmd.options, dialect=dialect)


__all__ = ["answer", "NotCaptured", "ROOT"]
