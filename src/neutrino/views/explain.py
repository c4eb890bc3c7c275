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

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from neutrino.errors import NotFound
from neutrino.host import iptables as ipt
from neutrino.host.iproute_route import Route, RoutingRule, format_route, format_rule
from neutrino.host.ofctl_show import OfctlShow
from neutrino.host.openflow import Flow, FlowDump, format_flow
from neutrino.host.openflow_actions import (
    Action,
    Controller,
    Ct,
    GenericAction,
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
from neutrino.host.openflow_fields import Mac, Port, ReservedPort, field_info, format_subfield
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
from neutrino.host.state import ROOT, HostState, NamespaceState

if TYPE_CHECKING:
    from neutrino.answers.objects import Names
    from neutrino.services.snapshot import CloudSnapshot, Router


@dataclass(frozen=True, slots=True)
class Entry:
    """One line as its tool prints it (a flow, a rule, a route; ``""`` for a remark on the whole),
    what it does in words, and the OpenStack object behind it when known."""

    line: str
    says: str = ""
    obj: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    """What one explanation holds: its kind (``flows``, ``chain``, ``routes``), where it is, the
    title lines (the ``#`` lines of the text) and the entries."""

    kind: str
    name: str
    namespace: str = ""
    title: tuple[str, ...] = ()
    entries: tuple[Entry, ...] = ()

    def plain(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "namespace": self.namespace, "title": list(self.title),
                "entries": [{"line": e.line, "explanation": e.says, "object": e.obj} for e in self.entries]}


def render(sections: list[Section], *, colour: bool = False) -> str:
    """The sections as ``neutrino explain`` prints them: each ``#`` title line, then each line
    followed by ``     -> `` and its explanation (and ``[the object]`` when known); sections
    apart by an empty line. ``colour``: titles, explanations and objects in colour (a terminal)."""
    from neutrino.views.terminal import paint

    blocks: list[str] = []
    for sec in sections:
        out = [paint(f"# {t}", "comment", colour=colour) for t in sec.title]
        for e in sec.entries:
            if e.line:
                out.append(paint(e.line, "bad", colour=colour) if colour and _drops(e.says) else e.line)
            if e.says:
                obj = f" [{e.obj}]" if e.obj else ""
                out.append(paint("     -> " + e.says, "explain", colour=colour) + paint(obj, "dim", colour=colour))
        blocks.append("\n".join(out) + "\n")
    return "\n".join(blocks)


def _drops(says: str) -> bool:
    return any(w in says for w in (": drop them", ": reject them", "are dropped.", "refused", "thrown away"))

# neutron-lib's ovs_constants, by bridge
_TABLES = {
    "br-tun": {0: "LOCAL_SWITCHING", 1: "DVR_PROCESS", 2: "PATCH_LV_TO_TUN", 3: "GRE_TUN_TO_LV",
               4: "VXLAN_TUN_TO_LV", 6: "GENEVE_TUN_TO_LV", 9: "DVR_NOT_LEARN", 10: "LEARN_FROM_TUN",
               20: "UCAST_TO_TUN", 21: "ARP_RESPONDER", 22: "FLOOD_TO_TUN"},
    "br-int": {0: "LOCAL_SWITCHING", 1: "DVR_TO_SRC_MAC", 2: "DVR_TO_SRC_MAC_PHYSICAL",
               3: "ARP_DVR_MAC_TO_DST_MAC", 4: "ARP_DVR_MAC_TO_DST_MAC_PHYSICAL", 23: "CANARY_TABLE",
               24: "ARP_SPOOF_TABLE", 25: "MAC_SPOOF_TABLE",
               30: "LOCAL_EGRESS_TABLE", 31: "LOCAL_IP_TABLE", 58: "PACKET_RATE_LIMIT",
               59: "BANDWIDTH_RATE_LIMIT", 60: "TRANSIENT_TABLE", 61: "LOCAL_MAC_DIRECT",
               62: "TRANSIENT_EGRESS_TABLE", 71: "BASE_EGRESS_TABLE", 72: "RULES_EGRESS_TABLE",
               73: "ACCEPT_OR_INGRESS_TABLE", 77: "DHCP_IPV4_TABLE", 78: "DHCP_IPV6_TABLE",
               81: "BASE_INGRESS_TABLE", 82: "RULES_INGRESS_TABLE", 91: "ACCEPTED_EGRESS_TRAFFIC_TABLE",
               92: "ACCEPTED_INGRESS_TRAFFIC_TABLE", 93: "DROPPED_TRAFFIC_TABLE",
               94: "ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE"},
    # the physical bridges (br-ex, br-eth1…): any other bridge of the agent's
    "physical": {0: "LOCAL_SWITCHING", 1: "DVR_PROCESS_PHYSICAL", 2: "LOCAL_VLAN_TRANSLATION",
                 3: "DVR_NOT_LEARN_PHYSICAL", 80: "METADATA_EGRESS_NAT", 87: "METADATA_EGRESS_OUTPUT",
                 90: "METADATA_IP_ARP_RESPONDER", 91: "METADATA_INGRESS_DIRECT"},
}
#: the OVS firewall's registers on br-int (neutron.agent.common.constants)
_FIREWALL_REGS = {"reg5": ("firewall port (reg5)", "ofport {}"),
                  "reg6": ("firewall network (reg6: local VLAN and conntrack zone)", "{}"),
                  "reg7": ("remote-group conjunction (reg7)", "{}")}
_CT_FLAGS = (("new", "new"), ("est", "established"), ("rel", "related"), ("rpl", "a reply"),
             ("inv", "invalid"), ("trk", "tracked"), ("snat", "source-NATed"), ("dnat", "destination-NATed"))
_MCAST = Mac(0x010000000000)


def table_name(bridge: str, n: int) -> str | None:
    """Neutron's name for table ``n`` of ``bridge`` (br-int, br-tun, a physical bridge), if any."""
    if bridge in _TABLES:
        names = _TABLES[bridge]
    elif bridge.startswith("br-int"):
        names = _TABLES["br-int"]
    elif bridge.startswith("br-tun"):
        names = _TABLES["br-tun"]
    elif bridge.startswith("br-"):
        names = _TABLES["physical"]
    else:
        names = {}
    return names.get(n)


def _table(bridge: str, n: int) -> str:
    label = table_name(bridge, n)
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


def _match(m: MatchField, ports: OfctlShow | None, vlan: str = "VLAN", bridge: str = "") -> str:
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
        if m.field in _FIREWALL_REGS and bridge.startswith("br-int") and m.mask is None:
            what, val = _FIREWALL_REGS[m.field]
            return f"whose {what} is {val.format(m.value)}"
        if re.fullmatch(r"x{0,2}reg\d+", m.field):
            return f"register {m.field} holding {m.value:#x}{mask}"
        if m.field == "ct_zone":
            return f"in conntrack zone {m.value}{mask}"
        if m.field == "ct_mark":
            what = " (the firewall's mark for connections whose rule was removed)" if (
                m.value == 1 and bridge.startswith("br-int")) else ""
            return f"whose connection mark (ct_mark) is {m.value:#x}{mask}{what}"
        if m.field == "ct_label":
            return f"whose connection label (ct_label) is {m.value:#x}{mask}"
        if m.field == "conj_id":
            return f"that completed conjunction {m.value}"
        if m.field in ("tp_src", "tp_dst"):
            return f"{'source' if m.field == 'tp_src' else 'destination'} port {m.value}{mask}"
        if m.field == "icmp_code":
            return f"ICMP code {m.value}"
        return f"{m.field}={m.value}{mask}"
    if isinstance(m, IPv4Match):
        return _ip_text(m.field, m.address, m.mask, m.network)
    if isinstance(m, IPv6Match):
        return _ip_text(m.field, m.address, m.mask, None)
    if isinstance(m, ProtoMatch):
        return m.proto.value.upper()
    if isinstance(m, CtState):
        return ct_state_words(m)
    return format_match((m,))  # what ovs-ofctl prints for it


def ct_state_words(m: CtState) -> str:
    """``ct_state=+est-rel-rpl`` as "whose connection is established, not related, not a reply"."""
    words = []
    for flag, word in _CT_FLAGS:
        for must, f in m.required():
            if f.name == flag:
                words.append(word if must else f"not {word}")
    if not words:
        return "in any connection state"
    if words == ["not tracked"]:
        return "not yet through connection tracking (untracked)"
    return "whose connection is " + ", ".join(words) + f" ({format_match((m,)).split('=', 1)[1]})"


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
        info = field_info(a.dst.field)
        name = info.name if info is not None else a.dst.field
        whole = a.dst.start is None
        if name in _FIREWALL_REGS and bridge.startswith("br-int") and whole:
            what, val = _FIREWALL_REGS[name]
            return f"record {val.format(a.value)} as the {what}"
        if name in ("ct_mark", "ct_label") and whole:
            return f"mark the connection with {name} {a.value:#x}"
        return f"load {a.value:#x} into {a.dst.field}"
    if isinstance(a, Move):
        return f"copy {a.src.field} into {a.dst.field}"
    if isinstance(a, SetField):
        if a.field in _FIREWALL_REGS and bridge.startswith("br-int") and a.mask is None:
            what, val = _FIREWALL_REGS[a.field]
            return f"record {val.format(int(a.value, 0))} as the {what}"
        if a.field in ("ct_mark", "ct_label"):
            return f"mark the connection with {a.field} {a.value}"
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
        words = "commit the connection to connection tracking" if a.commit else "send through connection tracking"
        if isinstance(a.zone, int):
            words += f" in zone {a.zone}"
        elif a.zone is not None:
            words += f" in the zone held in {format_subfield(a.zone)}"
            if a.zone.field == "NXM_NX_REG6" and bridge.startswith("br-int"):
                words += " (the port's local VLAN)"
        if a.nat is not None:
            words += ", applying its NAT" if a.nat.kind is None else f", with {a.nat.kind} NAT"
        if a.exec_:
            words += ", and on it " + " and ".join(_action(x, bridge, ports, vlan) for x in a.exec_)
        if a.alg:
            words += f", with the {a.alg} helper"
        if a.table is not None:
            words += f", then continue in {_table(bridge, a.table)} with its connection state"
        return words
    if isinstance(a, GenericAction):
        if a.text == "ct_clear":
            return "forget the packet's connection-tracking state (ct_clear)"
        conj = re.fullmatch(r"conjunction\((\d+),(\d+)/(\d+)\)", a.text)
        if conj:
            return (f"count as clause {conj.group(2)} of {conj.group(3)} of conjunction {conj.group(1)} "
                    f"(the flow with conj_id={conj.group(1)} applies once every clause matches)")
    if isinstance(a, Note):
        return "(a note: does nothing)"
    return format_action(a)  # what ovs-ofctl prints for it


def explain_flow(flow: Flow, bridge: str = "", ports: OfctlShow | None = None) -> str:
    """One sentence: which packets the flow takes and what it does with them."""
    matched = _vlan_kind(flow, bridge, ports, set_by_action=False)
    conds = [_match(m, ports, matched, bridge) for m in flow.match]
    what = "every packet" if not conds else "packets " + ", ".join(conds)
    if not flow.actions:
        does = "drop them"
    else:
        tag = _vlan_kind(flow, bridge, ports, set_by_action=True)
        does = ", then ".join(_action(a, bridge, ports, tag) for a in flow.actions)
    where = _table(bridge, flow.table)
    return f"{where}, priority {flow.priority}: {what}: {does}."


def _learners(dump: FlowDump) -> dict[tuple[int, int, int, int], int]:
    """What the dump's ``learn`` actions install: (table, priority, idle, hard timeout) -> the
    table of the flow that learns."""
    out: dict[tuple[int, int, int, int], int] = {}
    for f in dump.flows:
        for a in f.actions:
            if isinstance(a, Learn):
                prio = a.priority if a.priority is not None else 32768
                out.setdefault((a.table, prio, a.idle_timeout or 0, a.hard_timeout or 0), f.table)
    return out


def _learned_by(flow: Flow, learners: dict[tuple[int, int, int, int], int]) -> int | None:
    if any(isinstance(a, Learn) for a in flow.actions):
        return None
    return learners.get((flow.table, flow.priority, flow.idle_timeout, flow.hard_timeout))


def flows_section(dump: FlowDump, bridge: str = "", ports: OfctlShow | None = None) -> Section:
    """Each flow of the dump, explained; a flow that one of the dump's ``learn`` actions installs
    (same table, priority and timeouts) is said to be learned."""
    learners = _learners(dump)
    entries = []
    for flow in dump.flows:
        says = explain_flow(flow, bridge, ports)
        by = _learned_by(flow, learners)
        if by is not None:
            says = f"learned (installed by the learn action in {_table(bridge, by)}): {says}"
        entries.append(Entry(" " + format_flow(flow), says))
    return Section("flows", bridge, entries=tuple(entries))


def explain_flows(dump: FlowDump, bridge: str = "", ports: OfctlShow | None = None) -> str:
    """The dump, each flow line followed by its explanation."""
    return render([flows_section(dump, bridge, ports)])


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


def _chain_title(chain: ipt.Chain, table: ipt.Table, host: HostState, namespace: str = ROOT) -> str:
    m = _PORT_CHAIN.match(chain.name)
    about = _PORT_CHAIN_KINDS[m.group(1)].format(m.group(2) + "…") if m else ""
    items = {f"{table.name}/{chain.name}", f"{namespace}:{table.name}/{chain.name}"} if namespace else \
        {f"{table.name}/{chain.name}"}
    origin = next((o for o in host.origins if o.kind == "chain" and o.item in items), None)
    made = f"made for {origin.obj} by {origin.builder}" if origin is not None else ""
    callers = [r for r in table.rules if r.target is not None and r.target.name == chain.name]
    called = f"reached from {', '.join(sorted({r.chain for r in callers}))}" if callers else ""
    return "; ".join(x for x in (about, made, called) if x)


def chain_section(host: HostState, namespace: str, table: ipt.Table, chain: ipt.Chain) -> Section:
    """The chain as ``iptables -S CHAIN`` prints it, each rule with what it does."""
    where = f"namespace {namespace}, " if namespace else ""
    title = [f"{where}table {table.name}, chain {chain.name}"]
    about = _chain_title(chain, table, host, namespace)
    if about:
        title.append(about)
    entries: list[Entry] = []
    for line in ipt.format_rules(table, chain.name).splitlines():
        if line.startswith("-P "):
            verb = {"ACCEPT": "accepted", "DROP": "dropped"}.get(str(chain.policy), str(chain.policy))
            entries.append(Entry(line, f"the policy: packets that no rule of {chain.name} decides are {verb}."))
        elif line.startswith("-N "):
            entries.append(Entry(line))
        else:
            entries.append(Entry(line, explain_rule(ipt.parse_rule(line), table)))
    if chain.policy is None:
        entries.append(Entry("", f"packets no rule decides go back to the chain that jumped to {chain.name}."))
    return Section("chain", chain.name, namespace, tuple(title), tuple(entries))


def explain_chain(host: HostState, namespace: str, table: ipt.Table, chain: ipt.Chain) -> str:
    """The chain as ``iptables -S CHAIN`` prints it, each rule followed by a line saying what it does."""
    return render([chain_section(host, namespace, table, chain)])


def find_chains(host: HostState, name: str) -> list[tuple[str, ipt.Table, ipt.Chain]]:
    """Every (namespace, table, chain) of ``host`` whose chain is called ``name``."""
    found = []
    for ns in host.namespaces:
        for table in ns.iptables.tables if ns.iptables is not None else ():
            chain = table.find(name)
            if chain is not None:
                found.append((ns.name, table, chain))
    return found


def explain(host: HostState, name: str, cloud: CloudSnapshot | None = None, *, namespace: str | None = None,
            colour: bool = False) -> str:
    """``neutrino explain HOST NAME``: a bridge's flows, an iptables chain's rules, or (``routes``,
    or a namespace's name) a namespace's routing rules and routes, explained."""
    return render(explain_sections(host, name, cloud, namespace=namespace), colour=colour)


def explain_json(host: HostState, name: str, cloud: CloudSnapshot | None = None, *,
                 namespace: str | None = None) -> str:
    """The same as :func:`explain`, as JSON: a list of sections, each with its entries."""
    return json.dumps([sec.plain() for sec in explain_sections(host, name, cloud, namespace=namespace)], indent=1)


def explain_sections(host: HostState, name: str, cloud: CloudSnapshot | None = None, *,
                     namespace: str | None = None) -> list[Section]:
    if name == "routes":
        return [routes_section(host, ns, cloud) for ns in pick_namespaces(host, namespace)]
    br = host.ovs.flows_of(name)
    if br is not None and br.flows is not None:
        return [flows_section(br.flows, name, br.ports)]
    chains = find_chains(host, name)
    if namespace is not None:
        chains = [c for c in chains if c[0] in {ns.name for ns in pick_namespaces(host, namespace)}]
    if chains:
        return [chain_section(host, ns, table, chain) for ns, table, chain in chains]
    if namespace is None and name and any(ns.name.startswith(name) for ns in host.namespaces if ns.name):
        return [routes_section(host, ns, cloud) for ns in pick_namespaces(host, name)]
    raise NotFound(f"host {host.name}: no flows known for bridge {name}, no iptables chain {name}"
                   + (f" in namespace {namespace}" if namespace else " and no namespace of that name")
                   + " ('routes' explains every namespace's routes)")


# ------------------------------------------------------------------------------------ routes

def pick_namespaces(host: HostState, wanted: str | None) -> list[NamespaceState]:
    """``wanted``'s namespace of ``host``: its name, the start of one name (``qrouter``), or ``root``
    (the host's own); every namespace whose routes are known (root first) when ``None``."""
    if wanted is None:
        return [ns for ns in host.namespaces if _routes_known(host, ns)]
    if wanted in ("root", "-", ROOT):
        ns = host.namespace(ROOT)
        if ns is None:
            raise NotFound(f"host {host.name}: its root namespace is not known")
        return [ns]
    exact = host.namespace(wanted)
    if exact is not None:
        return [exact]
    starts = [ns for ns in host.namespaces if ns.name and ns.name.startswith(wanted)]
    if len(starts) == 1:
        return starts
    names = ", ".join(ns.name or "root" for ns in host.namespaces)
    if starts:
        raise NotFound(f"host {host.name}: {wanted!r} names more than one namespace ({names}): give more of it")
    raise NotFound(f"host {host.name}: no namespace {wanted!r} (it has: {names})")


def _planned(host: HostState) -> bool:
    return bool(host.origins)


def _routes_known(host: HostState, ns: NamespaceState) -> bool:
    return ns.routes is not None or ns.route_n is not None or (_planned(host) and ns.links is not None)


def namespace_routes(host: HostState, ns: NamespaceState) -> tuple[tuple[Route, ...], tuple[RoutingRule, ...]]:
    """The routes (every table) and routing rules of ``ns`` as ``ip route show table all`` and
    ``ip rule`` print them: kept, derived from ``route -n``, or (a planned host) what the kernel
    makes of the devices' addresses and the default rules."""
    from neutrino.views import derive

    if ns.routes is not None:
        routes = ns.routes
    elif ns.route_n is not None:
        routes = derive.routes_of(ns.route_n)
    elif _planned(host) and ns.links is not None:
        routes = derive.kernel_routes(ns.links)
    else:
        where = f"namespace {ns.name}" if ns.name else "the root namespace"
        raise NotFound(f"host {host.name}: the routes of {where} are not known (not captured)")
    rules = ns.rules if ns.rules is not None else derive.DEFAULT_RULES if _planned(host) else ()
    return routes, rules


_RULE_TABLES = {"local": "table local (the namespace's own addresses and broadcasts, which the kernel keeps)",
                "main": "table main (the routes ip route prints)",
                "default": "table default (empty unless something adds to it)"}


def explain_routing_rule(rule: RoutingRule) -> str:
    """One sentence: which packets the ``ip rule`` takes and where it looks them up."""
    conds: list[str] = []
    if rule.src is not None:
        conds.append(f"from {rule.src}")
    if rule.dst is not None:
        conds.append(f"to {rule.dst}")
    if rule.fwmark is not None:
        conds.append(f"marked {rule.fwmark:#x}" + (f"/{rule.fwmask:#x}" if rule.fwmask is not None else ""))
    if rule.iif:
        conds.append(f"coming in on {rule.iif}")
    if rule.oif:
        conds.append(f"going out of {rule.oif}")
    if rule.tos:
        conds.append(f"with TOS {rule.tos}")
    if rule.ipproto:
        conds.append(f"of protocol {rule.ipproto}")
    if rule.dport:
        conds.append(f"to port {rule.dport}")
    what = "packets " + ", ".join(conds) if conds else "every packet"
    if rule.invert:
        what = "packets other than " + (", ".join(conds) if conds else "these")
    if rule.action in ("unreachable", "prohibit"):
        does = f"refused ({rule.action}: the sender gets an ICMP error)"
    elif rule.action == "blackhole":
        does = "thrown away silently (blackhole)"
    elif rule.action == "nop":
        does = "nothing (nop)"
    elif rule.goto is not None:
        does = f"go on at rule {rule.goto}"
    else:
        table = rule.table or "main"
        does = "look up " + _RULE_TABLES.get(table, f"table {table}")
        if rule.suppress_prefixlength is not None:
            does += f", unless the route found is /{rule.suppress_prefixlength} or shorter"
    return f"priority {rule.priority}, {what}: {does}."


def _dst_words(route: Route) -> str:
    if route.dst is None:
        return "packets no other route matches (the default route)"
    net = route.dst
    if net.prefixlen == net.max_prefixlen:
        return f"packets to {net.network_address}"
    return f"packets to {net}"


def explain_route(route: Route, ns: NamespaceState | None = None) -> str:
    """One sentence: which packets the route takes and where they go."""
    kind = route.type or "unicast"
    dst = route.dst
    dev = route.dev or "?"
    table = f" (table {route.table})" if route.table not in (None, "main", "local") else ""
    if kind == "local":
        said = f"packets to {dst.network_address if dst is not None and dst.prefixlen == dst.max_prefixlen else dst} " \
               f"are for this namespace itself (an address of {dev}): delivered to its own sockets"
    elif kind == "broadcast":
        said = f"packets to {dst.network_address if dst is not None else '?'} are broadcasts on {dev}'s link: " \
               "delivered to this namespace too"
    elif kind == "multicast":
        said = f"multicast packets ({dst}) on {dev}: for the groups this namespace joins"
    elif kind in ("unreachable", "prohibit"):
        said = f"{_dst_words(route)}: refused ({kind}: the sender gets an ICMP error)"
    elif kind == "blackhole":
        said = f"{_dst_words(route)}: thrown away silently (blackhole)"
    elif route.nexthops:
        hops = ", ".join(f"{h.via or 'on-link'} out of {h.dev or '?'}" + (f" (weight {h.weight})" if h.weight else "")
                         for h in route.nexthops)
        said = f"{_dst_words(route)}: spread over the gateways {hops}"
    elif route.via is not None:
        said = f"{_dst_words(route)}: sent to the gateway {route.via} out of {dev}"
    else:
        said = f"{_dst_words(route)}: sent out of {dev} straight to their destination (on its link, no gateway)"
    if route.src is not None and kind not in ("local", "broadcast"):
        said += f", from the address {route.src}"
    if route.metric:
        said += f", metric {route.metric}"
    said += table
    if route.proto == "kernel" and kind in ("unicast", "local", "broadcast") and dst is not None:
        owner = _address_of(ns, route) if ns is not None else ""
        said += f"; the kernel's route for {owner or 'an address'} of {dev}"
    elif route.proto == "dhcp":
        said += "; learned by DHCP"
    elif route.proto == "ra":
        said += "; learned from a router advertisement"
    return said + "."


def _address_of(ns: NamespaceState, route: Route) -> str:
    lk = ns.link(route.dev or "")
    for a in lk.addresses if lk is not None else ():
        if (route.src is not None and a.interface.ip == route.src) or (
                route.type == "local" and route.dst is not None and a.interface.ip == route.dst.network_address) or (
                route.dst is not None and a.interface.ip in route.dst and a.interface.network == route.dst):
            return f"the address {a.interface}"
    return ""


def _route_object(host: HostState, ns: NamespaceState, route: Route, names: Names | None,
                  cloud: CloudSnapshot | None) -> str:
    """The OpenStack object that made ``route``: the port of its device and the subnet it reaches
    (or whose gateway it goes through), the router's external gateway or extra route; from the
    planner's record, or the device's name, when there is no cloud to ask."""
    dev = route.dev or ""
    parts: list[str] = []
    if names is not None and cloud is not None:
        port = names.port_of_device(dev)
        if port is not None:
            parts.append(names.port(port))
        subnets = cloud.subnets
        if route.dst is not None and route.type in (None, "unicast"):
            sub = next((s for s in subnets if s.cidr == route.dst), None)
            if sub is not None:
                parts.append(f"subnet '{sub.name}' {sub.cidr} ({sub.id})")
        if route.via is not None:
            sub = next((s for s in subnets if s.gateway_ip == route.via and route.via in s.cidr), None)
            router = _router_of(ns, cloud)
            extra = next((r for r in router.routes if route.dst is not None and r.destination == route.dst
                          and r.nexthop == route.via), None) if router is not None else None
            if extra is not None and router is not None:
                parts.append(f"extra route {extra.destination} via {extra.nexthop} of {names.router(router.id)}")
            elif route.dst is None and router is not None and router.gateway is not None:
                parts.append(f"the external gateway of {names.router(router.id)}"
                             + (f": the gateway_ip of subnet '{sub.name}' {sub.cidr} ({sub.id})" if sub else ""))
            elif sub is not None:
                parts.append(f"the gateway_ip of subnet '{sub.name}' {sub.cidr} ({sub.id})")
        if parts:
            return "; ".join(parts)
    item = str(route.dst) if route.dst is not None else "default"
    ident = ns.name.split("-", 1)[1] if "-" in ns.name else ""
    origin = next((o for o in host.origins if o.kind == "route" and o.item == item and (not ident or ident in o.obj)),
                  None)
    by_name = _device_words(dev, ns.name)
    if origin is not None:
        return f"{origin.obj}" + (f", {by_name}" if by_name else "")
    return by_name


def _router_of(ns: NamespaceState, cloud: CloudSnapshot) -> Router | None:
    if not ns.name.startswith(("qrouter-", "snat-")):
        return None
    rid = ns.name.split("-", 1)[1]
    return next((r for r in cloud.routers if r.id == rid), None)


def _device_words(dev: str, namespace: str) -> str:
    """What a device's name says it is (Neutron names devices after the first 11 characters of their port's id)."""
    kinds = {"qr-": "a router interface", "qg-": "a router's external gateway", "ns-": "a DHCP server's port",
             "sg-": "a DVR SNAT interface", "rfp-": "a DVR router-to-FIP link", "fg-": "a DVR FIP gateway",
             "tap": "the DHCP server's port" if namespace.startswith("qdhcp-") else "a port"}
    for prefix, what in kinds.items():
        if dev.startswith(prefix) and len(dev) > len(prefix):
            return f"{what} (port {dev[len(prefix):]}…)"
    return ""


def routes_section(host: HostState, ns: NamespaceState, cloud: CloudSnapshot | None = None) -> Section:
    """``ip rule`` and ``ip route show table all`` of ``ns``, each line with what it does and the
    OpenStack object that made it."""
    names = None
    if cloud is not None:
        from neutrino.answers.objects import Names

        names = Names(cloud)
    routes, rules = namespace_routes(host, ns)
    where = f"namespace {ns.name}" if ns.name else "the root namespace"
    title = [f"{where} of host {host.name}: routing rules (ip rule) and routes (ip route show table all)"]
    made = _namespace_object(host, ns, names)
    if made:
        title.append(made)
    if not rules:
        title.append("its routing rules (ip rule) were not captured")
    entries = [Entry(format_rule(r), explain_routing_rule(r)) for r in rules]
    order = {None: 0, "main": 0, "local": 2}
    for r in sorted(routes, key=lambda r: order.get(r.table, 1)):
        obj = _route_object(host, ns, r, names, cloud) if r.table != "local" else ""
        entries.append(Entry(format_route(r).rstrip(), explain_route(r, ns), obj))
    if not routes:
        entries.append(Entry("", "no routes: packets from this namespace go nowhere (Network is unreachable)."))
    return Section("routes", "routes", ns.name, tuple(title), tuple(entries))


def _namespace_object(host: HostState, ns: NamespaceState, names: Names | None) -> str:
    if not ns.name:
        return ""
    origin = next((o for o in host.origins if o.kind == "namespace" and o.item == ns.name), None)
    if names is not None and ns.name.startswith("qrouter-"):
        return f"the namespace of {names.router(ns.name[len('qrouter-'):])}"
    if names is not None and ns.name.startswith("qdhcp-"):
        return f"the DHCP server of {names.network(ns.name[len('qdhcp-'):])}"
    return f"made for {origin.obj} by {origin.builder}" if origin is not None else ""
