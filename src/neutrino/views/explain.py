"""Each OpenFlow flow with one line saying what it does, in the words of the seeds.

``explain_flows(dump, ports)`` reads the flows of one bridge (and, when known, its ``ovs-ofctl
show`` port numbers so ``output:1`` reads ``port 1 (patch-int)``) and returns, for every flow, the
dump line and an English sentence built from its parsed match and actions. Table numbers are named
after Neutron's (``table 22 (FLOOD_TO_TUN)``) on the bridges Neutron names them for.
"""

from __future__ import annotations

from neutrino.host.ofctl_show import OfctlShow
from neutrino.host.openflow import Flow, FlowDump, format_flow
from neutrino.host.openflow_actions import (
    Action,
    GotoTable,
    Learn,
    Load,
    Move,
    Output,
    PushVlan,
    Resubmit,
    SetField,
    SetTunnel,
    SetVlanVid,
    StripVlan,
)
from neutrino.host.openflow_fields import Mac, Port, ReservedPort
from neutrino.host.openflow_match import (
    DlVlan,
    EthMatch,
    InPort,
    IntMatch,
    IPv4Match,
    MatchField,
    ProtoMatch,
    VlanTci,
)

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


def _match(m: MatchField, ports: OfctlShow | None) -> str:
    if isinstance(m, InPort):
        return f"arriving on {_port(m.port, ports)}"
    if isinstance(m, DlVlan):
        return f"tagged VLAN {m.vid}"
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
        net = m.network
        return f"{m.field} {net if net is not None else m.address}"
    if isinstance(m, ProtoMatch):
        return m.proto.value.upper()
    return type(m).__name__


def _action(a: Action, bridge: str, ports: OfctlShow | None) -> str:
    if isinstance(a, Output):
        return f"send to {_port(a.port, ports)}"
    if isinstance(a, SetVlanVid):
        return f"tag with local VLAN {a.vid}"
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
        return f"learn the source MAC into {_table(bridge, a.table)}" if hasattr(a, "table") else "learn"
    if isinstance(a, Load):
        return f"load {a.value:#x} into {a.dst.field}"
    if isinstance(a, Move):
        return f"copy {a.src.field} into {a.dst.field}"
    if isinstance(a, SetField):
        return f"set {a.field} to {a.value}"
    return type(a).__name__.lower()


def explain_flow(flow: Flow, bridge: str = "", ports: OfctlShow | None = None) -> str:
    """One sentence: which packets the flow takes and what it does with them."""
    conds = [_match(m, ports) for m in flow.match]
    what = "every packet" if not conds else "packets " + ", ".join(conds)
    if not flow.actions:
        does = "drop them"
    else:
        does = ", then ".join(_action(a, bridge, ports) for a in flow.actions)
    where = _table(bridge, flow.table)
    return f"{where}, priority {flow.priority}: {what}: {does}."


def explain_flows(dump: FlowDump, bridge: str = "", ports: OfctlShow | None = None) -> str:
    """The dump, each flow line followed by its explanation."""
    out: list[str] = []
    for flow in dump.flows:
        out.append(" " + format_flow(flow))
        out.append("     -> " + explain_flow(flow, bridge, ports))
    return "\n".join(out) + "\n"
