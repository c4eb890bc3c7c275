"""A host state written out as the captures a person would take of it.

``captures_of(host)`` lists, for everything the state knows, the command that shows it and what
that command prints; importing those captures (``neutrino.ingest.captures``) gives back an equal
host. This is how planned hosts are kept and how any host is handed to another tool.

Each piece of state goes out in the form of the tool's output that carries all of it:

* links: ``ip addr``, and ``ip -d link`` when a device's kind is not in ``ip addr`` (a planned
  ``vlan100``, ``veth`` or NIC); ``ip link show dev X`` for a device that ``-d`` would misname;
* iptables: ``iptables-save -c`` for tables that have chain counters, ``iptables -t T -S`` for the
  ones that have none (planned tables, which have not counted anything yet), chain by chain with an
  elision line where only a cut capture could show a chain;
* flows: ``ovs-ofctl dump-flows --no-stats BR`` when no flow has counters (planned flows);
* bridges' ``protocols`` and ``datapath_id``, which ``ovs-vsctl show`` does not print:
  ``ovs-vsctl --columns=name,datapath_id,protocols list Bridge``.

What no tool prints (which iptables release a namespace's rules are printed as when the rules do not
tell, and which captures were cut) is for the keeper of the captures to note beside them
(``neutrino.store``).
"""

from __future__ import annotations

from neutrino.host.iproute_link import Link
from neutrino.host.iptables import Chain, Ruleset, Table
from neutrino.host.ovsdb import OvsdbShow
from neutrino.host.state import ROOT, HostState, NamespaceState
from neutrino.ingest.captures import apply_capture
from neutrino.ingest.commands import Command, View, parse_command
from neutrino.views.answer import answer

#: Each piece of a namespace's state and the command that shows all of it (the commands for links
#: and iptables depend on what is known of them: :func:`_link_commands`, :func:`_iptables_commands`).
_NS_VIEWS = (("links", ""), ("ifconfig", "ifconfig -a"), ("routes", "ip route show table all"),
             ("route_n", "route -n"), ("rules", "ip rule"), ("neighbours", "ip neigh"), ("arp", "arp -n"),
             ("iptables", ""), ("sysctls", "sysctl"))

BRIDGE_LIST = "ovs-vsctl --columns=name,datapath_id,protocols list Bridge"


def _replayed_links(host: HostState, ns: NamespaceState, commands: list[str]) -> tuple[Link, ...] | None:
    """The links an import of ``commands``' captures would give ``ns``."""
    state = HostState(host.name)
    for c in commands:
        cmd = parse_command(c)
        state = apply_capture(state, cmd, render(host, cmd))
    got = state.namespace(ns.name)
    return None if got is None else got.links


def _link_commands(host: HostState, ns: NamespaceState, prefix: str) -> list[str]:
    """``ip addr``, then what it leaves out: ``ip -d link`` for the devices known by their kind
    alone, and ``ip link show dev X`` for each device ``-d`` would give a kind it does not have."""
    links = ns.links or ()
    cmds = [prefix + "ip addr"]
    if _replayed_links(host, ns, cmds) == links:
        return cmds
    cmds.append(prefix + "ip -d link")
    got = {lk.name: lk for lk in _replayed_links(host, ns, cmds) or ()}
    cmds.extend(prefix + f"ip link show dev {lk.name}" for lk in links if got.get(lk.name) != lk)
    return cmds


def _counted(table: Table) -> bool:
    return all(c.counters is not None for c in table.chains)


def _unknown_policy(table: Table, chain: Chain) -> bool:
    """A built-in chain whose policy is not known (its rules came from a grepped ``iptables -S``):
    ``iptables -S`` prints no ``-P`` line for it, so only a cut capture can show it."""
    return chain.policy is None and table.is_builtin(chain.name)


def _iptables_commands(rules: Ruleset, prefix: str) -> list[str]:
    """``iptables-save -c``; or, table by table, ``iptables -t T -S`` for a table without counters
    (``iptables-save`` would print ``[0:0]`` for them), chain by chain (``iptables -t T -S CHAIN``)
    when the table was known only in part."""
    if all(_counted(t) for t in rules.tables):
        return [prefix + "iptables-save -c"]
    cmds: list[str] = []
    for t in rules.tables:
        if _counted(t):
            cmds.append(prefix + f"iptables-save -c -t {t.name}")
        elif any(_unknown_policy(t, c) for c in t.chains):
            cmds.extend(prefix + f"iptables -t {t.name} -S {c.name}" for c in t.chains)
        else:
            cmds.append(prefix + f"iptables -t {t.name} -S")
    return cmds


def _cut(host: HostState, cmd: Command) -> bool:
    """Whether ``cmd``'s capture shows what only a cut capture does (a chain of
    :func:`_unknown_policy`), so that it must say it was cut to be read back."""
    if cmd.view is not View.IPTABLES_S or not cmd.target:
        return False
    ns = host.namespace(cmd.netns)
    table = ns.iptables.find(cmd.table or "filter") if ns is not None and ns.iptables is not None else None
    chain = table.find(cmd.target) if table is not None else None
    return table is not None and chain is not None and _unknown_policy(table, chain)


def _ns_commands(host: HostState, ns: NamespaceState) -> list[str]:
    prefix = f"ip netns exec {ns.name} " if ns.name != ROOT else ""
    cmds: list[str] = []
    for attr, cmd in _NS_VIEWS:
        if attr == "links" and ns.links is not None:
            cmds.extend(_link_commands(host, ns, prefix))
        elif attr == "iptables" and ns.iptables is not None:
            cmds.extend(_iptables_commands(ns.iptables, prefix))
        elif cmd and getattr(ns, attr) is not None:
            cmds.append(prefix + cmd)
    return cmds


def commands_of(host: HostState) -> list[str]:
    """The commands ``neutrino exec`` answers whose output, together, holds everything ``host``
    knows (the bridges' ``ovs-vsctl list`` right after ``ovs-vsctl show``, whose bridges it adds to)."""
    cmds: list[str] = []
    if host.netns_list is not None or host.namespace_names():
        cmds.append("ip netns")
    for ns in host.namespaces:
        cmds.extend(_ns_commands(host, ns))
    if host.ovs.show is not None:
        cmds.append("ovs-vsctl show")
    show = host.ovs.show
    if isinstance(show, OvsdbShow) and any(b.protocols or b.datapath_id is not None for b in show.bridges):
        cmds.append(BRIDGE_LIST)
    for br in host.ovs.bridges:
        if br.flows is not None:
            planned = bool(br.flows.flows) and all(f.stats is None for f in br.flows.flows)
            cmds.append(f"ovs-ofctl dump-flows {'--no-stats ' if planned else ''}{br.bridge}")
        if br.ports is not None:
            cmds.append(f"ovs-ofctl show {br.bridge}")
    if host.linux_bridges is not None:
        cmds.append("brctl show")
    if host.processes is not None:
        cmds.append("ps -fe")
    cmds.extend(f"cat {f.path}" for f in host.files)
    return cmds


def unanswered_commands(host: HostState) -> list[str]:
    """The commands of the captures that :func:`~neutrino.views.answer.answer` does not answer: none
    now (the bridges' ``ovs-vsctl list`` is answered, and is one of :func:`commands_of`)."""
    return []


def render(host: HostState, cmd: Command) -> str:
    """What ``cmd`` prints on ``host`` (:func:`~neutrino.views.answer.answer`)."""
    return answer(host, cmd)


def captures_of(host: HostState) -> list[tuple[str, str]]:
    """(command, output) for every command of :func:`commands_of`. An output that only a cut capture
    could show ends with an elision line (``...``), as a cut capture does."""
    out: list[tuple[str, str]] = []
    for c in [*commands_of(host), *unanswered_commands(host)]:
        cmd = parse_command(c)
        text = render(host, cmd)
        out.append((c, text + "...\n" if _cut(host, cmd) else text))
    return out
