"""Read a realized host back with the real tools, and diff a planned host against it.

Every command runs in the host's real namespaces; its output goes through the capture importer
(:func:`neutrino.ingest.captures.apply_capture`), with real namespace names mapped back to planned
ones, so the read-back is a :class:`HostState` like any imported capture.

The diff compares what the plan names, piece by piece: namespaces; links by name (MAC, MTU, up,
promisc, master); addresses on planned links (IPv6 link-local ones aside, the kernel makes those);
routes other than ``proto kernel`` ones, in every table but local (DVR's policy tables); permanent neighbours; sysctls; iptables per namespace
(:func:`neutrino.host.iptables.diff`); OVS bridges and ports; flows per bridge as sets of add-flow texts;
dnsmasq processes by interface; dnsmasq's files by content.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from neutrino.host import iptables as ipt
from neutrino.host.dnsmasq import DnsmasqProcess, argv_from_cmdline
from neutrino.host.iproute_link import Address, Link
from neutrino.host.iproute_route import Neighbour, Route, RoutingRule, format_rule
from neutrino.host.openflow import Flow, FlowDump, format_add_flow
from neutrino.host.ovsdb import Bridge, OvsdbShow, Port
from neutrino.host.state import FileState, HostState, NamespaceState
from neutrino.host.sysctl import Sysctl
from neutrino.ingest.captures import apply_capture
from neutrino.ingest.commands import parse_command
from neutrino.linux import netns as netns_lib
from neutrino.linux.ovs import OvsInstance
from neutrino.linux.runner import parallel, run

# --- what differs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkChange:
    ns: str
    want: Link
    have: Link | None  # None: the link is missing


@dataclass(frozen=True, slots=True)
class AddressChange:
    ns: str
    dev: str
    address: Address
    add: bool


@dataclass(frozen=True, slots=True)
class RouteChange:
    ns: str
    route: Route
    add: bool


@dataclass(frozen=True, slots=True)
class FlowChange:
    bridge: str
    add: frozenset[str]
    delete: frozenset[str]


@dataclass(frozen=True, slots=True)
class HostDiff:
    """What to change on a realized host to make it the planned one (empty when they agree)."""

    host: str
    namespaces: tuple[str, ...] = ()
    links: tuple[LinkChange, ...] = ()
    addresses: tuple[AddressChange, ...] = ()
    routes: tuple[RouteChange, ...] = ()
    rules: tuple[tuple[str, RoutingRule], ...] = ()
    neighbours: tuple[tuple[str, Neighbour], ...] = ()
    sysctls: tuple[tuple[str, Sysctl], ...] = ()
    iptables: tuple[tuple[str, ipt.RulesetDiff], ...] = ()
    bridges: tuple[Bridge, ...] = ()  # bridges missing, or with missing or different ports (the wanted row)
    ports: tuple[tuple[str, Port], ...] = ()  # (bridge, port) to add or fix
    flows: tuple[FlowChange, ...] = ()
    files: tuple[FileState, ...] = ()
    processes: tuple[DnsmasqProcess, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.namespaces or self.links or self.addresses or self.routes or self.rules
                    or self.neighbours or self.sysctls or self.iptables or self.bridges or self.ports
                    or self.flows or self.files or self.processes)

    def summary(self) -> str:
        """The difference in words (see :func:`neutrino.linux.report.describe`), on one line."""
        from neutrino.linux.report import describe

        lines = describe(self)
        return f"{self.host}: " + ("; ".join(lines) if lines else "no difference")


# --- comparison keys -------------------------------------------------------------------------


def _managed_address(a: Address) -> bool:
    return not (a.interface.version == 6 and a.interface.ip.is_link_local)


def _addr_key(a: Address) -> str:
    return str(a.interface)


def route_key(r: Route) -> str:
    """A route by what ``ip route replace`` is given: destination, gateway, device, metric, table."""
    dst = "default" if r.dst is None else str(r.dst)
    parts = [dst]
    if r.via is not None:
        parts.append(f"via {r.via}")
    if r.dev:
        parts.append(f"dev {r.dev}")
    if r.metric is not None:
        parts.append(f"metric {r.metric}")
    if r.onlink:
        parts.append("onlink")
    if r.table not in (None, "main"):
        parts.append(f"table {r.table}")
    return " ".join(parts)


def _managed_route(r: Route) -> bool:
    return r.proto != "kernel" and r.table not in ("local", "255") and (r.type in (None, "unicast"))


def _rule_key(r: RoutingRule) -> str:
    return format_rule(r).strip()


_DEFAULT_RULE_PREFS = {"0:", "32766:", "32767:"}


def _managed_rule(r: RoutingRule) -> bool:
    return _rule_key(r).split("\t", 1)[0] not in _DEFAULT_RULE_PREFS


def flow_texts(dump: FlowDump | None) -> frozenset[str]:
    return frozenset(format_add_flow(f.without_stats()) for f in (dump.flows if dump else ()))


def _learned(flow: Flow) -> bool:
    """A flow a ``learn()`` action made at run time (br-tun's table 20 MAC learning): it carries a
    timeout and ages out, so it is not part of the plan and never deleted by a diff."""
    return bool(flow.hard_timeout or flow.idle_timeout)


def _port_key(p: Port) -> tuple[object, ...]:
    ifaces = tuple((i.name, i.type or "", tuple(sorted(i.options))) for i in p.interfaces)
    return (p.name, p.tag, tuple(p.trunks), ifaces)


def _link_differs(want: Link, have: Link) -> bool:
    if want.mac and have.mac and want.mac.lower() != have.mac.lower():
        return True
    if want.mtu is not None and have.mtu is not None and want.mtu != have.mtu:
        return True
    if want.up and not have.up:
        return True
    if want.promisc and not have.promisc:
        return True
    return bool(want.master and want.master != "ovs-system" and want.master != have.master)


def _ns_diff(want: NamespaceState, have: NamespaceState | None, owned: Callable[[str], bool]) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {k: [] for k in ("links", "addresses", "routes", "rules", "neighbours",
                                                    "sysctls", "iptables")}
    have = have or NamespaceState(want.name)
    for lk in want.links or ():
        if lk.name == "lo":
            continue
        cur = have.link(lk.name)
        if cur is None or _link_differs(lk, cur):
            out["links"].append(LinkChange(want.name, lk, cur))
        want_addrs = {_addr_key(a): a for a in lk.addresses if _managed_address(a)}
        have_addrs = {_addr_key(a): a for a in (cur.addresses if cur else ()) if _managed_address(a)}
        for k in sorted(want_addrs.keys() - have_addrs.keys()):
            out["addresses"].append(AddressChange(want.name, lk.name, want_addrs[k], add=True))
        for k in sorted(have_addrs.keys() - want_addrs.keys()):
            out["addresses"].append(AddressChange(want.name, lk.name, have_addrs[k], add=False))
    if want.routes is not None:
        w = {route_key(r): r for r in want.routes if _managed_route(r)}
        h = {route_key(r): r for r in have.routes or () if _managed_route(r)}
        out["routes"] += [RouteChange(want.name, w[k], True) for k in sorted(w.keys() - h.keys())]
        out["routes"] += [RouteChange(want.name, h[k], False) for k in sorted(h.keys() - w.keys())]
    if want.rules is not None:
        hk = {_rule_key(r) for r in have.rules or ()}
        out["rules"] += [(want.name, r) for r in want.rules if _managed_rule(r) and _rule_key(r) not in hk]
    if want.neighbours is not None:
        hn = {(str(n.address), n.dev, (n.lladdr or "").lower()) for n in have.neighbours or ()}
        out["neighbours"] += [(want.name, n) for n in want.neighbours
                              if (str(n.address), n.dev, (n.lladdr or "").lower()) not in hn]
    if want.sysctls is not None:
        hs = {s.key: s.value for s in have.sysctls or ()}
        out["sysctls"] += [(want.name, s) for s in want.sysctls if hs.get(s.key) != s.value]
    if want.iptables is not None:
        d = ipt.diff(want.iptables, have.iptables or ipt.Ruleset(), owned=owned)
        if not d.empty:
            out["iptables"].append((want.name, d))
    return out


def diff(desired: HostState, actual: HostState, *, iptables_owned: Callable[[str], bool] | None = None) -> HostDiff:
    """What to change in ``actual`` (a read-back) to get ``desired`` (a plan). Only what the plan names
    is compared, so what the backend adds itself (``br-phy``, the ``ex0`` uplink on ``br-ex``) is kept;
    iptables chains only in ``actual`` are removed when ``iptables_owned(name)`` (default: all)."""
    owned = iptables_owned or (lambda name: True)
    have_ns = set(actual.namespace_names())
    missing_ns = tuple(n for n in desired.namespace_names() if n not in have_ns)
    acc: dict[str, list[object]] = {}
    for ns in desired.namespaces:
        for k, v in _ns_diff(ns, actual.namespace(ns.name), owned).items():
            acc.setdefault(k, []).extend(v)
    bridges: list[Bridge] = []
    ports: list[tuple[str, Port]] = []
    want_show = desired.ovs.show if isinstance(desired.ovs.show, OvsdbShow) else None
    have_show = actual.ovs.show if isinstance(actual.ovs.show, OvsdbShow) else OvsdbShow()
    for br in want_show.bridges if want_show else ():
        cur = have_show.bridge(br.name)
        if cur is None:
            bridges.append(br)
            continue
        for p in br.ports:
            cp = cur.port(p.name)
            if cp is None or _port_key(cp) != _port_key(_with_local_ip(p, cp)):
                ports.append((br.name, p))
    flows: list[FlowChange] = []
    for bf in desired.ovs.bridges:
        if bf.flows is None:
            continue
        want = flow_texts(bf.flows)
        have_bf = actual.ovs.flows_of(bf.bridge)
        have = frozenset(format_add_flow(f.without_stats()) for f in (have_bf.flows.flows if have_bf and have_bf.flows
                                                                       else ()) if not _learned(f))
        if want != have:
            flows.append(FlowChange(bf.bridge, frozenset(want - have), frozenset(have - want)))
    files = tuple(f for f in desired.files if (actual.file(f.path) or FileState(f.path, "")).text != f.text)
    running = {_process_key(p) for p in actual.processes or ()}
    procs = tuple(p for p in desired.processes or () if _process_key(p) not in running)
    return HostDiff(desired.name, missing_ns,
                    links=tuple(acc.get("links", ())),  # type: ignore[arg-type]
                    addresses=tuple(acc.get("addresses", ())),  # type: ignore[arg-type]
                    routes=tuple(acc.get("routes", ())),  # type: ignore[arg-type]
                    rules=tuple(acc.get("rules", ())),  # type: ignore[arg-type]
                    neighbours=tuple(acc.get("neighbours", ())),  # type: ignore[arg-type]
                    sysctls=tuple(acc.get("sysctls", ())),  # type: ignore[arg-type]
                    iptables=tuple(acc.get("iptables", ())),  # type: ignore[arg-type]
                    bridges=tuple(bridges), ports=tuple(ports), flows=tuple(flows), files=files, processes=procs)


def _process_key(p: DnsmasqProcess) -> tuple[str | None, str | None]:
    """A dnsmasq by its interface and pid file (today's agent names no interface; each network's
    pid file is its own)."""
    return p.options.interface, p.options.pid_file


def _with_local_ip(want: Port, have: Port) -> Port:
    """The planned tunnel port with the ``local_ip`` the backend adds when the plan has none."""
    ifaces = []
    for i, h in zip(want.interfaces, have.interfaces, strict=False):
        if i.type in ("gre", "vxlan", "geneve") and i.option("local_ip") is None and h.option("local_ip"):
            i = replace(i, options=tuple(sorted((*i.options, ("local_ip", h.option("local_ip") or "")))))
        ifaces.append(i)
    return replace(want, interfaces=tuple(ifaces) or want.interfaces)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostView:
    """Where one host lives: its namespace, its planned namespaces' real names, its OVS."""

    name: str
    netns: str
    namespaces: tuple[tuple[str, str], ...]  # (planned, real); ("", host netns) first
    ovs: OvsInstance | None
    paths: tuple[tuple[str, str], ...] = ()  # (planned file path, real file path)
    sysctl_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()  # planned ns -> keys to read


def _capture(state: HostState, command: str, text: str) -> HostState:
    return apply_capture(state, parse_command(command), text, source=f"<{command}>")


_NS_COMMANDS = ("ip addr", "ip -4 route show table all", "ip rule", "ip neigh", "iptables-save")


def read_back(view: HostView) -> HostState:
    """The host as the real tools show it, with planned namespace names. The tools run at once
    (reading changes nothing); their outputs are taken in, in a fixed order, as they always were."""
    state = HostState(name=view.name)
    existing = [p for p, real in view.namespaces if p and netns_lib.exists(real)]
    state = _capture(state, "ip netns", "".join(f"{n}\n" for n in existing))
    keys = dict(view.sysctl_keys)
    reads: list[tuple[str, list[str], str, bool]] = []  # (command as captured, argv, real namespace, check)
    for planned, real in view.namespaces:
        if planned and planned not in existing:
            continue
        pre = f"ip netns exec {planned} " if planned else ""
        reads += [(pre + cmd, cmd.split(), real, True) for cmd in _NS_COMMANDS]
        wanted = keys.get(planned, ())
        if wanted:  # one command: each capture of a sysctl view replaces the namespace's sysctls
            reads.append((f"{pre}sysctl {' '.join(wanted)}", ["sysctl", *wanted], real, False))
    reads.append(("brctl show", ["brctl", "show"], view.netns, True))
    ovs = view.ovs
    calls: list[Callable[[], str]] = [functools.partial(_output, argv, real, check) for _, argv, real, check in reads]
    if ovs is not None:
        calls.append(lambda: ovs.vsctl("show").stdout)
    outputs = parallel(_call, calls)
    for (command, _, _, _), text in zip(reads, outputs, strict=False):
        if command.endswith("ip neigh"):  # only the entries someone set; the rest the kernel learnt
            text = "".join(ln + "\n" for ln in text.splitlines() if "PERMANENT" in ln)
        state = _capture(state, command, text)
    if ovs is not None:
        state = _capture(state, "ovs-vsctl show", outputs[-1])
        show = state.ovs.show
        # the bridges ``ovs-vsctl list-br`` would list (sorted by name), from the show just read
        bridges = (sorted(b.name for b in show.bridges) if isinstance(show, OvsdbShow)
                   else ovs.vsctl("list-br").stdout.split())
        per_bridge = parallel(_call, [functools.partial(_ofctl, ovs, what, br) for br in bridges
                                      for what in ("dump-flows", "show")])
        for i, br in enumerate(bridges):
            state = _capture(state, f"ovs-ofctl dump-flows {br}", per_bridge[2 * i])
            state = _capture(state, f"ovs-ofctl show {br}", per_bridge[2 * i + 1])
    state = replace(state, processes=_dnsmasq_processes(view))
    for planned_path, real_path in view.paths:
        if os.path.exists(real_path):
            with open(real_path) as fh:
                state = _capture(state, f"cat {planned_path}", fh.read())
    return state


def _call(read: Callable[[], str]) -> str:
    return read()


def _output(argv: list[str], netns: str, check: bool) -> str:
    return run(argv, netns=netns, check=check).stdout


def _ofctl(ovs: OvsInstance, command: str, bridge: str) -> str:
    return ovs.ofctl(command, bridge).stdout


def _dnsmasq_processes(view: HostView) -> tuple[DnsmasqProcess, ...]:
    """dnsmasq processes running in the host's namespaces (from ``/proc/PID/cmdline``), with
    their file paths mapped back to the planned ones."""
    out: list[DnsmasqProcess] = []
    back = {real: planned for planned, real in view.paths}
    pids = netns_lib.pids_of([real for _, real in view.namespaces])
    for _, real in view.namespaces:
        for pid in pids.get(real, ()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    argv = argv_from_cmdline(fh.read())
            except OSError:
                continue
            if not argv or os.path.basename(argv[0]) != "dnsmasq":
                continue
            mapped = []
            for a in argv:
                k, eq, v = a.partition("=")
                mapped.append(f"{k}={back.get(v, v)}" if eq else a)
            out.append(DnsmasqProcess(user="nobody", pid=pid, argv=tuple(mapped)))
    return tuple(out)


__all__ = ["HostDiff", "HostView", "diff", "flow_texts", "read_back", "route_key"]
