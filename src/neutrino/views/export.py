"""A host state written out as the captures a person would take of it.

``captures_of(host)`` lists, for everything the state knows, the command that shows it and what
that command prints; importing those captures gives back a host that answers every command the
same way. This is how planned hosts are kept and how any host is handed to another tool.
"""

from __future__ import annotations

from neutrino.host.state import ROOT, HostState, NamespaceState
from neutrino.ingest.commands import parse_command
from neutrino.views.answer import answer

#: Each piece of a namespace's state and the command that shows all of it.
_NS_VIEWS = (("links", "ip addr"), ("ifconfig", "ifconfig -a"), ("routes", "ip route show table all"),
             ("route_n", "route -n"), ("rules", "ip rule"), ("neighbours", "ip neigh"), ("arp", "arp -n"),
             ("iptables", "iptables-save -c"), ("sysctls", "sysctl"))


def _ns_commands(ns: NamespaceState) -> list[str]:
    prefix = f"ip netns exec {ns.name} " if ns.name != ROOT else ""
    return [prefix + cmd for attr, cmd in _NS_VIEWS if getattr(ns, attr) is not None]


def commands_of(host: HostState) -> list[str]:
    """The commands whose output, together, holds everything ``host`` knows."""
    cmds: list[str] = []
    if host.netns_list is not None or host.namespace_names():
        cmds.append("ip netns")
    for ns in host.namespaces:
        cmds.extend(_ns_commands(ns))
    if host.ovs.show is not None:
        cmds.append("ovs-vsctl show")
    for br in host.ovs.bridges:
        if br.flows is not None:
            cmds.append(f"ovs-ofctl dump-flows {br.bridge}")
        if br.ports is not None:
            cmds.append(f"ovs-ofctl show {br.bridge}")
    if host.linux_bridges is not None:
        cmds.append("brctl show")
    if host.processes is not None:
        cmds.append("ps -fe")
    cmds.extend(f"cat {f.path}" for f in host.files)
    return cmds


def captures_of(host: HostState) -> list[tuple[str, str]]:
    """(command, output) for every command of :func:`commands_of`."""
    return [(c, answer(host, parse_command(c))) for c in commands_of(host)]
