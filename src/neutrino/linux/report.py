"""A host's difference in words: one line per change, in the syntax of the tool that makes it.

``describe`` turns a :class:`~neutrino.linux.readback.HostDiff` into lines such as::

    ip netns exec qrouter-f3c5… ip route replace default via 172.24.4.225 dev qg-a8b9daef-54
    ip netns exec qrouter-f3c5… iptables -t nat -D quantum-l3-agent-snat -s 10.1.0.0/24 -j SNAT --to-source …
    ovs-ofctl add-flow br-tun "priority=1,in_port=1 actions=…"
    ovs-vsctl --may-exist add-port br-int qvo… tag=1

Namespaces are the plan's (``ip netns exec qrouter-<id>``, as the agent would run it; the real
namespace is the prefixed one). iptables deletions name the rule the read-back had at that position
(``-D CHAIN RULE``), or the position when no read-back is given. Flow deletions are strict
(``ovs-ofctl --strict del-flows BR MATCH``). The backend sends the same changes in batches
(``ip -batch``, ``iptables-restore -n``, one ``ovs-vsctl`` transaction, ``ovs-ofctl replace-flows``).
"""

from __future__ import annotations

import shlex

from neutrino.host import iptables as ipt
from neutrino.host.iproute_link import Link, LinkKind
from neutrino.host.iproute_route import format_rule
from neutrino.host.openflow import Flow
from neutrino.host.state import HostState
from neutrino.linux.apply import (
    TRUNK_BRIDGE,
    _ofport_requests,
    _partner,
    _port_args,
    bridge_args,
    process_ns,
    vlan_id,
)
from neutrino.linux.readback import HostDiff, LinkChange, route_key

__all__ = ["describe", "in_ns"]


def in_ns(ns: str, words: str) -> str:
    """``words`` as run in planned namespace ``ns`` (``""``: the host's own)."""
    return f"ip netns exec {ns} {words}" if ns else words


def _link_set(want: Link, have: Link | None) -> str:
    """``ip link set dev NAME …`` with what differs (everything the plan sets, for a new link)."""
    sets: list[str] = []
    if want.kind is not LinkKind.LOOPBACK:
        if want.mac and (have is None or (have.mac or "").lower() != want.mac.lower()):
            sets.append(f"address {want.mac.lower()}")
        if want.mtu is not None and (have is None or (have.mtu is not None and have.mtu != want.mtu)):
            sets.append(f"mtu {want.mtu}")
    if want.master and want.master != "ovs-system" and (have is None or have.master != want.master):
        sets.append(f"master {want.master}")
    if want.promisc and (have is None or not have.promisc):
        sets.append("promisc on")
    if want.up and (have is None or not have.up):
        sets.append("up")
    return f"ip link set dev {want.name} {' '.join(sets)}" if sets else ""


def _link_made(ch: LinkChange, desired: HostState | None, guest_ns: dict[str, str]) -> str:
    """How a missing link is made, as run in its own namespace (see :func:`describe` for the
    internal ports OVS makes in the host and the backend moves)."""
    lk, ns = ch.want, ch.ns
    if lk.kind is LinkKind.BRIDGE:
        return f"ip link add {lk.name} type bridge"
    if lk.kind is LinkKind.VLAN:
        return (f"ovs-vsctl --may-exist add-port {TRUNK_BRIDGE} {lk.name} tag={vlan_id(lk)} "
                f"-- set Interface {lk.name} type=internal")
    if lk.name in guest_ns:
        return f"ip link add {lk.name} type veth peer name eth0 netns {guest_ns[lk.name]}"
    other = _partner(desired, ns, lk) if desired is not None else None
    if other is None:
        return f"ip link add {lk.name} type veth"
    ons, oname = other
    return f"ip link add {lk.name} type veth peer name {oname}" + (f" netns {ons}" if ons != ns else "")


def _iptables(ns: str, change: ipt.RulesetDiff, actual: HostState | None) -> list[str]:
    have_ns = actual.namespace(ns) if actual is not None else None
    have = have_ns.iptables if have_ns is not None else None
    out: list[str] = []
    for c in change.chains:
        if c.empty:
            continue
        t = "" if c.table is ipt.TableName.FILTER else f"-t {c.table} "
        if c.create:
            out.append(f"iptables {t}-N {c.chain}")
        if c.policy is not None:
            out.append(f"iptables {t}-P {c.chain} {c.policy}")
        table = have.find(c.table) if have is not None else None
        chain = table.find(c.chain) if table is not None else None
        for n in c.delete:
            if chain is not None and 0 < n <= len(chain.rules):
                out.append(f"iptables {t}" + ipt.format_rule(chain.rules[n - 1], dialect=ipt.V1_8_9, command="-D"))
            else:
                out.append(f"iptables {t}-D {c.chain} {n}")
        for pos, rule in c.insert:
            text = ipt.format_rule(rule, dialect=ipt.V1_8_9, command="-I")
            head = f"-I {rule.chain}"
            out.append(f"iptables {t}-I {c.chain} {pos}{text[len(head):]}")
        if c.remove:
            out.append(f"iptables {t}-X {c.chain}")
    return [in_ns(ns, line) for line in out]


def _vsctl(args: list[str]) -> str:
    return "ovs-vsctl " + shlex.join(args[1:] if args and args[0] == "--" else args)


def _flow_lines(bridge: str, add: frozenset[str], delete: frozenset[str], desired: HostState | None) -> list[str]:
    bf = desired.ovs.flows_of(bridge) if desired is not None else None
    flows: tuple[Flow, ...] = bf.flows.flows if bf is not None and bf.flows is not None else ()
    o13 = "-O OpenFlow13 " if any(f.table not in (None, 0) for f in flows) else ""
    out = [f'ovs-ofctl {o13}--strict del-flows {bridge} "{text.split(" actions=")[0]}"' for text in sorted(delete)]
    out += [f'ovs-ofctl {o13}add-flow {bridge} "{text}"' for text in sorted(add)]
    return out


def describe(d: HostDiff, desired: HostState | None = None, actual: HostState | None = None, *,
             tunnel_ip: str | None = None, guest_ns: dict[str, str] | None = None,
             processes: bool = True) -> list[str]:
    """``d`` in words, one line per change (``actual``, the read-back ``d`` came from, names the
    iptables rules deleted; ``desired`` the veths' peers; ``guest_ns`` each instance tap's guest
    namespace)."""
    guests = guest_ns or {}
    out = [f"ip netns add {ns}" for ns in d.namespaces]
    for ch in d.links:
        if ch.have is None and ch.want.kind is LinkKind.OVS_INTERNAL:  # ovs-vswitchd made it in the host
            if ch.ns:
                out.append(f"ip link set dev {ch.want.name} netns {ch.ns}")
            made = ""
        else:
            made = _link_made(ch, desired, guests) if ch.have is None else ""
        setting = _link_set(ch.want, ch.have)
        out += [in_ns(ch.ns, line) for line in (made, setting) if line]
    for a in d.addresses:
        out.append(in_ns(a.ns, f"ip addr {'add' if a.add else 'del'} {a.address.interface} dev {a.dev}"))
    for r in d.routes:
        out.append(in_ns(r.ns, f"ip route {'replace' if r.add else 'del'} {route_key(r.route)}"))
    for ns, rule in d.rules:
        pref, _, body = format_rule(rule).strip().partition(":")
        out.append(in_ns(ns, f"ip rule add pref {pref} {body.strip()}"))
    for ns, nb in d.neighbours:
        out.append(in_ns(ns, f"ip neigh replace {nb.address} lladdr {nb.lladdr} dev {nb.dev} nud permanent"))
    for ns, s in d.sysctls:
        out.append(in_ns(ns, f"sysctl -w {s.key}={s.value}"))
    for ns, change in d.iptables:
        out += _iptables(ns, change, actual)
    ofports = _ofport_requests(desired) if desired is not None else {}
    for br in d.bridges:
        out.append(_vsctl(bridge_args(br)))
        out += [_vsctl(_port_args(br.name, p, tunnel_ip, ofports.get((br.name, p.name))))
                for p in br.ports if p.name != br.name]
    for bridge, p in d.ports:
        out.append(_vsctl(_port_args(bridge, p, tunnel_ip, ofports.get((bridge, p.name)))))
    for fc in d.flows:
        out += _flow_lines(fc.bridge, fc.add, fc.delete, desired)
    out += [f"wrote {f.path}" for f in d.files]
    if processes:
        for proc in d.processes:
            ns = process_ns(desired, proc) if desired is not None else ""
            out.append(in_ns(ns, shlex.join(proc.argv)))
    return out
