"""Each OpenFlow flow, or each iptables rule, with one line saying what it does, in the words of the seeds.

``explain_flows(dump, ports)`` reads the flows of one bridge (and, when known, its ``ovs-ofctl
show`` port numbers so ``output:1`` reads ``port 1 (patch-int)``) and returns, for every flow, the
dump line and an English sentence built from its parsed match and actions. Table numbers are named
after Neutron's (``table 22 (FLOOD_TO_TUN)``) on the bridges Neutron names them for. A VLAN tag is
named for what it is on that bridge: the agent's local VLAN on br-int and br-tun, the provider
network's VLAN on a physical bridge (and on what br-int receives from one). A field or an action
without words of its own is shown as ``ovs-ofctl`` prints it.

``explain_chain`` does the same for an iptables chain (``iptables -S CHAIN``, each rule followed by
its sentence), saying whose chain it is (a port's ingress, egress or source filter; the planner's
Origin when the host was planned) and which chains jump to it. :func:`explain` takes either name.
"""

from __future__ import annotations

import re

from neutrino.errors import NotFound
from neutrino.host import iptables as ipt
from neutrino.host.ofctl_show import OfctlShow
from neutrino.host.openflow import Flow, FlowDump, format_flow
from neutrino.host.openflow_actions import (
    Action,
    Controller,
    Ct,
    GotoTable,
    Learn,
    Load,
    Move,
    Note,
    Output,
    PushVlan,
    Resubmit,
    SetEthAddr,
    SetField,
    SetIPv4Addr,
    SetL4Port,
    SetTunnel,
    SetVlanPcp,
    SetVlanVid,
    StripVlan,
    format_action,
)
from neutrino.host.openflow_fields import Mac, Port, ReservedPort
from neutrino.host.openflow_match import (
    CtState,
    DlVlan,
    EthMatch,
    InPort,
    IntMatch,
    IPv4Match,
    IPv6Match,
    MatchField,
    ProtoMatch,
    VlanTci,
    format_match,
)
from neutrino.host.state import HostState

# neutron-lib's ovs_constants, by bridge
_TABLES = {
    "br-tun": {0: "LOCAL_SWITCHING", 1: "DVR_PROCESS", 2: "PATCH_LV_TO_TUN", 3: "GRE_TUN_TO_LV",
               4: "VXLAN_TUN_TO_LV", 6: "GENEVE_TUN_TO_LV", 9: "DVR_NOT_LEARN", 10: "LEARN_FROM_TUN",
               20: "UCAST_TO_TUN", 21: "ARP_RESPONDER", 22: "FLOOD_TO_TUN"},
    "br-int": {0: "LOCAL_SWITCHING", 23: "CANARY_TABLE", 24: "ARP_SPOOF_TABLE", 25: "MAC_SPOOF_TABLE",
               30: "LOCAL_EGRESS_TABLE", 31: "LOCAL_IP_TABLE", 58: "PACKET_RATE_LIMIT",
               59: "BANDWIDTH_RATE_LIMIT", 60: "TRANSIENT_TABLE", 61: "LOCAL_MAC_DIRECT",
               62: "TRANSIENT_EGRESS_TABLE"},
}
_MCAST = Mac(0x010000000000)


def _table(bridge: str, n: int) -> str:
    name = _TABLES.get(bridge, _TABLES["br-int"] if bridge not in _TABLES and bridge.startswith("br-int") else {})
    label = name.get(n) if isinstance(name, dict) else None
    return f"table {n} ({label})" if label else f"table {n}"


def _port(p: Port, ports: OfctlShow | None) -> str:
    if isinstance(p, ReservedPort):
        return {"NORMAL": "the normal L2 switching (NORMAL)", "IN_PORT": "back out the port it came in on",
                "LOCAL": "the bridge's own internal port (LOCAL)", "FLOOD": "every port (FLOOD)",
                "ALL": "every port but the input (ALL)", "CONTROLLER": "the controller"}.get(p.value, p.value)
    if isinstance(p, int) and ports is not None:
        named = next((op.name for op in ports.ports if op.number == p), None)
        if named:
            return f"port {p} ({named})"
    return f"port {p}"


def _local_vlans(bridge: str) -> bool:
    """Whether the VLAN tags on ``bridge`` are the agent's local VLANs (br-int, br-tun), not the
    provider network's (a physical bridge such as br-eth0 or br-ex)."""
    return bridge.startswith(("br-int", "br-tun"))


def _in_port_name(flow: Flow, ports: OfctlShow | None) -> str:
    port = next((m.port for m in flow.match if isinstance(m, InPort)), None)
    if port is None:
        return ""
    if isinstance(port, int) and ports is not None:
        return next((op.name for op in ports.ports if op.number == port), "")
    return str(port) if not isinstance(port, (int, ReservedPort)) else ""


def _vlan_kind(flow: Flow, bridge: str, ports: OfctlShow | None, *, set_by_action: bool) -> str:
    """Which VLAN a tag is: on br-int a tag set (or matched) is the local VLAN, but a tag matched on
    what arrives from a physical bridge (``int-br-…``) is still the provider's; on a physical bridge a
    tag set is the provider VLAN, a tag matched on what comes from br-int (``phy-br-…``) the local one."""
    if not bridge:
        return "VLAN"
    came = _in_port_name(flow, ports)
    if _local_vlans(bridge):
        return "provider VLAN" if not set_by_action and came.startswith("int-") else "local VLAN"
    if set_by_action:
        return "provider VLAN"
    return "local VLAN" if came.startswith("phy-") else "VLAN"


_IP_FIELDS = {"nw_src": "from {}", "nw_dst": "to {}", "arp_spa": "ARP sender address {}",
              "arp_tpa": "ARP target address {}", "ipv6_src": "from {}", "ipv6_dst": "to {}",
              "nd_target": "neighbour discovery target {}", "tun_src": "tunnel source {}",
              "tun_dst": "tunnel destination {}"}


def _ip_text(field: str, address: object, mask: object, network: object) -> str:
    where = str(network) if network is not None else (f"{address}/{mask}" if mask is not None else str(address))
    return _IP_FIELDS.get(field, field + " {}").format(where)


def _match(m: MatchField, ports: OfctlShow | None, vlan: str = "VLAN") -> str:
    if isinstance(m, InPort):
        return f"arriving on {_port(m.port, ports)}"
    if isinstance(m, DlVlan):
        return f"tagged {vlan} {m.vid}"
    if isinstance(m, VlanTci):
        if m.value == 0 and m.mask is not None and m.mask & 0x1FFF == 0x1FFF:
            return "untagged"
        return f"{m.field}={m.value:#06x}" + (f"/{m.mask:#06x}" if m.mask is not None else "")
    if isinstance(m, EthMatch):
        who = {"dl_dst": "to", "dl_src": "from"}.get(m.field, m.field)
        if m.mask == _MCAST:
            kind = "multicast or broadcast" if m.mac == _MCAST else "unicast"
            return f"{kind} ({m.field} {m.mac}/{m.mask})"
        return f"{who} MAC {m.mac}" + (f"/{m.mask}" if m.mask is not None else "")
    if isinstance(m, IntMatch):
        if m.field == "tun_id":
            return f"from the tunnel with key {m.value:#x}"
        mask = f"/{m.mask:#x}" if m.mask is not None else ""
        return f"{m.field}={m.value}{mask}"
    if isinstance(m, IPv4Match):
        return _ip_text(m.field, m.address, m.mask, m.network)
    if isinstance(m, IPv6Match):
        return _ip_text(m.field, m.address, m.mask, None)
    if isinstance(m, ProtoMatch):
        return m.proto.value.upper()
    if isinstance(m, CtState):
        return f"in connection state {format_match((m,))}"
    return format_match((m,))  # what ovs-ofctl prints for it


def _action(a: Action, bridge: str, ports: OfctlShow | None, vlan: str = "VLAN") -> str:
    if isinstance(a, Output):
        return f"send to {_port(a.port, ports)}"
    if isinstance(a, SetVlanVid):
        return f"tag with {vlan} {a.vid}"
    if isinstance(a, SetVlanPcp):
        return f"set the VLAN priority to {a.pcp}"
    if isinstance(a, StripVlan):
        return "strip the VLAN tag"
    if isinstance(a, PushVlan):
        return "push a VLAN header"
    if isinstance(a, SetTunnel):
        return f"set the tunnel key to {a.tun_id:#x}"
    if isinstance(a, Resubmit):
        where = _table(bridge, a.table) if a.table is not None else "this table"
        return f"continue in {where}" if a.port is None else f"resubmit as if from {_port(a.port, ports)} to {where}"
    if isinstance(a, GotoTable):
        return f"continue in {_table(bridge, a.table)}"
    if isinstance(a, Learn):
        return f"learn the source MAC into {_table(bridge, a.table)}"
    if isinstance(a, Load):
        return f"load {a.value:#x} into {a.dst.field}"
    if isinstance(a, Move):
        return f"copy {a.src.field} into {a.dst.field}"
    if isinstance(a, SetField):
        return f"set {a.field} to {a.value}"
    if isinstance(a, SetEthAddr):
        return f"rewrite {'the source' if a.field.endswith('src') else 'the destination'} MAC to {a.mac}"
    if isinstance(a, SetIPv4Addr):
        return f"rewrite {'the source' if a.field.endswith('src') else 'the destination'} address to {a.address}"
    if isinstance(a, SetL4Port):
        return f"rewrite {'the source' if a.field.endswith('src') else 'the destination'} port to {a.port}"
    if isinstance(a, Controller):
        return "send to the controller"
    if isinstance(a, Ct):
        words = "commit to connection tracking" if a.commit else "send through connection tracking"
        if a.zone is not None:
            words += f" in zone {a.zone}"
        if a.table is not None:
            words += f", then continue in {_table(bridge, a.table)}"
        return words
    if isinstance(a, Note):
        return "(a note: does nothing)"
    return format_action(a)  # what ovs-ofctl prints for it


def explain_flow(flow: Flow, bridge: str = "", ports: OfctlShow | None = None) -> str:
    """One sentence: which packets the flow takes and what it does with them."""
    matched = _vlan_kind(flow, bridge, ports, set_by_action=False)
    conds = [_match(m, ports, matched) for m in flow.match]
    what = "every packet" if not conds else "packets " + ", ".join(conds)
    if not flow.actions:
        does = "drop them"
    else:
        tag = _vlan_kind(flow, bridge, ports, set_by_action=True)
        does = ", then ".join(_action(a, bridge, ports, tag) for a in flow.actions)
    where = _table(bridge, flow.table)
    return f"{where}, priority {flow.priority}: {what}: {does}."


def explain_flows(dump: FlowDump, bridge: str = "", ports: OfctlShow | None = None) -> str:
    """The dump, each flow line followed by its explanation."""
    out: list[str] = []
    for flow in dump.flows:
        out.append(" " + format_flow(flow))
        out.append("     -> " + explain_flow(flow, bridge, ports))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------ iptables

_PORT_CHAIN = re.compile(r"^(?:neutron|quantum)-openvswi-([ios])([0-9a-f]{8}-[0-9a-f])$")
_PORT_CHAIN_KINDS = {"i": "ingress rules of port {} (what may reach the instance)",
                     "o": "egress rules of port {} (what the instance may send)",
                     "s": "source filter of port {} (the addresses and MACs it may send from)"}


def _neg(flag: bool) -> str:
    return "not " if flag else ""


def _ports_text(value: str) -> str:
    lo, sep, hi = value.partition(":")
    return f"ports {lo or 0} to {hi or 65535}" if sep else f"port {value}"


def _rule_match(m: ipt.Match) -> list[str]:
    out: list[str] = []
    for o in m.options:
        n, v = o.name, o.value
        neg = _neg(o.negated)
        if m.module == "comment":
            continue
        if n in ("state", "ctstate"):
            out.append(f"{neg}in connection state {v}")
        elif n in ("dport", "destination-port"):
            out.append(f"{neg}to {_ports_text(v)}")
        elif n in ("sport", "source-port"):
            out.append(f"{neg}from {_ports_text(v)}")
        elif n in ("dports", "destination-ports"):
            out.append(f"{neg}to ports {v}")
        elif n in ("sports", "source-ports"):
            out.append(f"{neg}from ports {v}")
        elif n == "physdev-in":
            out.append(f"{neg}bridged in from {v}")
        elif n == "physdev-out":
            out.append(f"{neg}bridged out to {v}")
        elif n == "physdev-is-bridged":
            out.append(f"{neg}crossing a bridge")
        elif n == "mac-source":
            out.append(f"{neg}from MAC {v.lower()}")
        elif n == "icmp-type":
            out.append(f"{neg}ICMP type {v}")
        elif n == "match-set":
            out.append(f"with the {o.args[1]} address {neg}in the ipset {o.args[0]}")
        elif n == "mark":
            out.append(f"{neg}marked {v}")
        elif n in ("src-type", "dst-type"):
            out.append(f"{neg}{'from' if n == 'src-type' else 'to'} a {v.lower()} address")
        elif n == "limit":
            out.append(f"at most {v}")
        else:
            out.append(f"{neg}{m.module} --{n}{(' ' + v) if v else ''}")
    return out


def _rule_conditions(r: ipt.Rule) -> list[str]:
    conds: list[str] = []
    if r.source is not None:
        conds.append(f"{_neg(r.source.negated)}from {_net(r.source)}")
    if r.destination is not None:
        conds.append(f"{_neg(r.destination.negated)}to {_net(r.destination)}")
    if r.in_interface is not None:
        conds.append(f"{_neg(r.in_interface.negated)}coming in on {_iface(r.in_interface.name)}")
    if r.out_interface is not None:
        conds.append(f"{_neg(r.out_interface.negated)}going out of {_iface(r.out_interface.name)}")
    if r.fragment is not ipt.Fragment.ANY:
        conds.append("fragments" if r.fragment is ipt.Fragment.FRAGMENTS else "not fragments")
    for m in r.matches:
        conds.extend(_rule_match(m))
    return conds


def _net(a: ipt.Address) -> str:
    net = a.network
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else a.text()


def _iface(name: str) -> str:
    return f"any device named {name[:-1]}…" if name.endswith("+") else name


def _verdict(r: ipt.Rule, table: ipt.Table) -> str:
    t = r.target
    if t is None:
        return "only count them"
    name = t.name
    if name == "ACCEPT":
        return "accept them"
    if name == "DROP":
        return "drop them"
    if name == "RETURN":
        if _PORT_CHAIN.match(r.chain):
            return "allow them (RETURN to the chain that jumped here, which accepts)"
        return "return to the chain that jumped here"
    if name == "REJECT":
        return f"reject them ({t.value('reject-with') or 'icmp-port-unreachable'})"
    if name == "SNAT":
        return f"rewrite the source address to {t.value('to-source')}"
    if name == "DNAT":
        return f"rewrite the destination address to {t.value('to-destination')}"
    if name == "MASQUERADE":
        return "rewrite the source address to the outgoing device's"
    if name == "REDIRECT":
        return f"redirect them to local port {t.value('to-ports')}"
    if name in ("CT", "NOTRACK") and (t.has("notrack") or name == "NOTRACK"):
        return "leave them untracked by conntrack"
    if name == "CT" and t.value("zone") is not None:
        return f"track them in conntrack zone {t.value('zone')}"
    if name == "MARK":
        return f"set the packet mark ({' '.join('--' + o.name + ' ' + o.value for o in t.options)})"
    if name == "CHECKSUM":
        return "fill in their checksum"
    if name == "LOG":
        return "log them"
    if table.find(name) is not None:
        return f"{'go on (no return) in' if t.goto else 'continue in'} chain {name}"
    return f"-j {name}" + "".join(f" --{o.name} {o.value}".rstrip() for o in t.options)


def explain_rule(r: ipt.Rule, table: ipt.Table) -> str:
    """One sentence: which packets the rule takes and what it does with them."""
    conds = _rule_conditions(r)
    proto = r.protocol
    kind = f"{'non-' if proto.negated else ''}{proto.name.upper()} packets" if proto is not None else "packets"
    what = ("every packet" if proto is None else f"every {kind[:-1]}") if not conds else f"{kind} " + ", ".join(conds)
    comment = r.match("comment")
    note = f" ({comment.value('comment')})" if comment is not None else ""
    return f"{what}: {_verdict(r, table)}.{note}"


def _chain_title(chain: ipt.Chain, table: ipt.Table, host: HostState) -> str:
    m = _PORT_CHAIN.match(chain.name)
    about = _PORT_CHAIN_KINDS[m.group(1)].format(m.group(2) + "…") if m else ""
    origin = next((o for o in host.origins if o.kind == "chain" and o.item == f"{table.name}/{chain.name}"), None)
    made = f"made for {origin.obj} by {origin.builder}" if origin is not None else ""
    callers = [r for r in table.rules if r.target is not None and r.target.name == chain.name]
    called = f"reached from {', '.join(sorted({r.chain for r in callers}))}" if callers else ""
    return "; ".join(x for x in (about, made, called) if x)


def explain_chain(host: HostState, namespace: str, table: ipt.Table, chain: ipt.Chain) -> str:
    """The chain as ``iptables -S CHAIN`` prints it, each rule followed by a line saying what it does."""
    where = f"namespace {namespace}, " if namespace else ""
    out = [f"# {where}table {table.name}, chain {chain.name}"]
    title = _chain_title(chain, table, host)
    if title:
        out.append(f"# {title}")
    for line in ipt.format_rules(table, chain.name).splitlines():
        out.append(line)
        if line.startswith("-P "):
            verb = {"ACCEPT": "accepted", "DROP": "dropped"}.get(str(chain.policy), str(chain.policy))
            out.append(f"     -> the policy: packets that no rule of {chain.name} decides are {verb}.")
        elif line.startswith("-N "):
            continue
        else:
            rule = ipt.parse_rule(line)
            out.append("     -> " + explain_rule(rule, table))
    if chain.policy is None:
        out.append(f"     -> packets no rule decides go back to the chain that jumped to {chain.name}.")
    return "\n".join(out) + "\n"


def find_chains(host: HostState, name: str) -> list[tuple[str, ipt.Table, ipt.Chain]]:
    """Every (namespace, table, chain) of ``host`` whose chain is called ``name``."""
    found = []
    for ns in host.namespaces:
        for table in ns.iptables.tables if ns.iptables is not None else ():
            chain = table.find(name)
            if chain is not None:
                found.append((ns.name, table, chain))
    return found


def explain(host: HostState, name: str) -> str:
    """``neutrino explain HOST NAME``: a bridge's flows, or an iptables chain's rules, explained."""
    br = host.ovs.flows_of(name)
    if br is not None and br.flows is not None:
        return explain_flows(br.flows, name, br.ports)
    chains = find_chains(host, name)
    if chains:
        return "\n".join(explain_chain(host, ns, table, chain) for ns, table, chain in chains)
    raise NotFound(f"host {host.name}: no flows known for bridge {name}, and no iptables chain {name}")
