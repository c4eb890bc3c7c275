"""Put the fragments that single-feature planners return together into one host state.

Each builder returns a :class:`HostState` holding only what its feature makes (its namespaces,
links, routes, iptables chains, OVS bridges and flows, processes, files). ``merge`` combines them:
namespaces are joined, links/routes/rules/neighbours appended in builder order, iptables tables
joined chain by chain (a chain's rules appended in builder order, policies must agree), OVS
bridges, flows and ports joined. Two builders claiming the same device or file is a PlanError.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from neutrino.errors import PlanError
from neutrino.host import iptables as ipt
from neutrino.host.openflow import FlowDump
from neutrino.host.ovsdb import OvsdbShow, VsctlShowExcerpt
from neutrino.host.state import ROOT, BridgeFlows, HostState, NamespaceState, OvsState


def _cat(a: tuple[object, ...] | None, b: tuple[object, ...] | None) -> tuple[object, ...] | None:
    if a is None:
        return b
    if b is None:
        return a
    return (*a, *b)


def _merge_tables(a: ipt.Table, b: ipt.Table) -> ipt.Table:
    out = a
    for chain in b.chains:
        old = out.find(chain.name)
        if old is None:
            out = out.with_chain(chain)
            continue
        if old.policy is not None and chain.policy is not None and old.policy != chain.policy:
            raise PlanError(f"table {a.name}: chain {chain.name} planned with policies {old.policy} and {chain.policy}")
        out = out.with_chain(replace(old, policy=old.policy or chain.policy, rules=(*old.rules, *chain.rules)))
    return out


def _merge_rulesets(a: ipt.Ruleset | None, b: ipt.Ruleset | None) -> ipt.Ruleset | None:
    if a is None or b is None:
        return a or b
    out = a
    for table in b.tables:
        old = out.find(table.name)
        out = out.with_table(table if old is None else _merge_tables(old, table))
    return out


def _merge_ns(a: NamespaceState, b: NamespaceState) -> NamespaceState:
    names_a = {lk.name for lk in a.links or ()}
    clash = names_a & {lk.name for lk in b.links or ()}
    if clash:
        raise PlanError(f"namespace {a.name or '(root)'}: devices {sorted(clash)} planned twice")
    return replace(
        a, nsid=a.nsid if a.nsid is not None else b.nsid,
        links=_cat(a.links, b.links),  # type: ignore[arg-type]
        routes=_cat(a.routes, b.routes),  # type: ignore[arg-type]
        rules=_cat(a.rules, b.rules),  # type: ignore[arg-type]
        neighbours=_cat(a.neighbours, b.neighbours),  # type: ignore[arg-type]
        iptables=_merge_rulesets(a.iptables, b.iptables),
        sysctls=_cat(a.sysctls, b.sysctls),  # type: ignore[arg-type]
    )


def _merge_show(a: OvsdbShow | VsctlShowExcerpt | None,
                b: OvsdbShow | VsctlShowExcerpt | None) -> OvsdbShow | VsctlShowExcerpt | None:
    if a is None or b is None:
        return a or b
    if not isinstance(a, OvsdbShow) or not isinstance(b, OvsdbShow):
        raise PlanError("planned Open vSwitch state must be whole, not an excerpt")
    bridges = {br.name: br for br in a.bridges}
    for br in b.bridges:
        old = bridges.get(br.name)
        if old is None:
            bridges[br.name] = br
            continue
        clash = {p.name for p in old.ports} & {p.name for p in br.ports}
        if clash:
            raise PlanError(f"bridge {br.name}: ports {sorted(clash)} planned twice")
        bridges[br.name] = replace(old, ports=(*old.ports, *br.ports),
                                   controllers=old.controllers or br.controllers,
                                   fail_mode=old.fail_mode or br.fail_mode,
                                   datapath_type=old.datapath_type or br.datapath_type,
                                   protocols=old.protocols or br.protocols)
    return replace(a, bridges=tuple(bridges.values()), managers=a.managers or b.managers,
                   ovs_version=a.ovs_version or b.ovs_version)


def _merge_ovs(a: OvsState, b: OvsState) -> OvsState:
    if b.show is None and not b.bridges:  # a fragment without Open vSwitch (firewall, L3, DHCP)
        return a
    out = replace(a, show=_merge_show(a.show, b.show))
    for bf in b.bridges:
        old = out.flows_of(bf.bridge)
        if old is None:
            out = out.with_bridge(bf)
            continue
        flows = old.flows
        if bf.flows is not None:
            flows = bf.flows if flows is None else FlowDump((*flows.flows, *bf.flows.flows), flows.headers)
        out = out.with_bridge(BridgeFlows(bf.bridge, flows, old.ports or bf.ports))
    return out


def merge(fragments: Iterable[HostState]) -> HostState:
    """One host state from the fragments of one host (all must carry the same host name)."""
    frags = list(fragments)
    if not frags:
        raise PlanError("nothing to merge")
    first = frags[0]
    namespaces = {ns.name: ns for ns in first.namespaces}
    added = False
    ovs, netns = first.ovs, first.netns_list
    linux_bridges, processes = first.linux_bridges, first.processes
    files, origins = list(first.files), list(first.origins)
    paths = {x.path for x in files}
    for f in frags[1:]:
        if f.name != first.name:
            raise PlanError(f"fragments of hosts {first.name} and {f.name} cannot be merged")
        for ns in f.namespaces:
            old = namespaces.get(ns.name)
            namespaces[ns.name] = ns if old is None else _merge_ns(old, ns)
            added = True
        clash = paths & {x.path for x in f.files}
        if clash:
            raise PlanError(f"files {sorted(clash)} planned twice")
        paths.update(x.path for x in f.files)
        netns = netns if f.netns_list is None else (
            f.netns_list if netns is None else (*netns, *f.netns_list))
        ovs = _merge_ovs(ovs, f.ovs)
        linux_bridges = _cat(linux_bridges, f.linux_bridges)  # type: ignore[assignment]
        processes = _cat(processes, f.processes)  # type: ignore[assignment]
        files += f.files
        origins += f.origins
    ordered = tuple(sorted(namespaces.values(), key=lambda n: (n.name != ROOT, n.name))) if added \
        else first.namespaces
    return replace(first, namespaces=ordered, ovs=ovs, netns_list=netns, linux_bridges=linux_bridges,
                   processes=processes, files=tuple(files), origins=tuple(origins))
