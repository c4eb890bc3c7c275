"""Neutron's native ``openvswitch`` firewall driver: security groups as conntrack flows in br-int.

With ``firewall_driver: openvswitch`` os-vif plugs an instance's ``tap<id>`` straight into br-int
(no qbr/qvb/qvo, no iptables chains), and the OVS agent's firewall
(``neutron/agent/linux/openvswitch_firewall``, as of 2024.1) writes per-port flows in br-int's
firewall tables:

- ``TRANSIENT_TABLE`` (60): a packet from the port (``in_port``) gets ``reg5`` = its ofport and
  ``reg6`` = its local VLAN (the conntrack zone) and goes to ``BASE_EGRESS_TABLE`` (71); a packet
  for its MAC on its local VLAN gets the same registers, loses the tag and goes to
  ``BASE_INGRESS_TABLE`` (81). Trusted (``network:*``) ports and ports without port security go
  from 60 to ``ACCEPT_OR_INGRESS_TABLE`` (73) unfiltered.
- 71: ARP, RARP and ICMPv6 NS/NA/RS/MLD from the port's own MAC/IP pairs are accepted (to
  ``ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE``, 94), DHCP client requests go to 73, a DHCP server or
  router advertisements from the instance to ``DROPPED_TRAFFIC_TABLE`` (93), IP from an allowed
  MAC/IP pair enters conntrack (``ct(table=72,zone=NXM_NX_REG6[0..15])``), anything else drops;
  a packet still tracked from an earlier pass is ``ct_clear``-ed first (priority 110).
- ``RULES_EGRESS_TABLE`` (72) / ``RULES_INGRESS_TABLE`` (82): invalid connections and those marked
  ``ct_mark=0x1`` (their rule went away) drop, established replies and related packets pass,
  then one flow per rule and connection state (``+est-rel-rpl`` and ``+new-est``; ingress commits
  new connections with ``ct(commit,zone=…)``); a remote-group rule is a conjunction: the rule's
  protocol and ports as ``conjunction(ID,2/2)``, each member address on the port's local VLAN as
  ``conjunction(ID,1/2)``, and ``conj_id=ID`` flows that accept and record the id in ``reg7``.
- 73: egress that is really ingress to another port of the host goes on to 81 for that port,
  new connections are committed, the rest goes to NORMAL by 91/94.
- 91/92/93/94 and a priority-0 drop in each firewall table (``_drop_all_unmatched_flows``).

Flows are written as ``ovs-ofctl dump-flows`` prints them back (so a read-back compares equal):
Neutron's ``set_field:N->reg5`` is ``load:0xN->NXM_NX_REG5[]``, its
``exec(set_field:0x1->ct_mark)`` is ``exec(load:0x1->NXM_NX_CT_MARK[])``. Tables, priorities and
matches are Neutron's; ``explicitly_egress_direct`` (off by default), permitted ethertypes and
hardware offload are not planned. Origins: each rule's flows name the rule (``sg-rule <id>``), the
remote group's member flows the rule that made them, DROPPED_TRAFFIC_TABLE's drop the fallback.

Conjunction ids follow ``ConjIdMap``: blocks of 8 from 16 (the first id past a bridge without
any), one block per (group, remote group, direction, ethertype) in the order the agent meets them,
plus twice the rule's priority offset; the ``+new-est`` flows use the id + 1. Remote-group members
are the IPv4 addresses (fixed IPs and allowed address pairs) of every port in the remote group.
"""

from __future__ import annotations

from collections.abc import Callable

from neutrino.plan import naming
from neutrino.plan.firewall import _group_members
from neutrino.plan.ovs_int import (
    LocalVlan,
    Ofports,
    OvsContext,
    PlannedFlow,
    PlugKind,
    PlugPort,
    _lla,
    lvid_of,
    planned_flow,
)
from neutrino.services.snapshot import Port, SecurityGroupRule

T = naming.IntBrTable
BUILDER_BASE = "ovs_firewall_base_flows"
BUILDER_PORT = "ovs_firewall_port_flows"
BUILDER_RULES = "ovs_firewall_rule_flows"
BUILDER_CONJ = "ovs_firewall_conjunction_flows"
BUILDER_TRUSTED = "ovs_firewall_trusted_flows"

REG_PORT, REG_NET, REG_REMOTE_GROUP = 5, 6, 7
ZONE = f"zone=NXM_NX_REG{REG_NET}[0..15]"
NOT_TRACKED, TRACKED = "-trk", "+trk"
NEW_NOT_EST, NOT_EST, EST = "+new-est", "-est", "+est"
EST_NOT_REPLY, EST_REPLY = "+est-rel-rpl", "+est-rel+rpl"
RELATED, INVALID = "-new-est+rel-inv", "+trk+inv"
CT_MARK_INVALID = "0x1"
#: the two states each accept flow is written for (rules.CT_STATES)
CT_STATES = (EST_NOT_REPLY, NEW_NOT_EST)
FIREWALL_TABLES = (T.BASE_EGRESS_TABLE, T.RULES_EGRESS_TABLE, T.ACCEPT_OR_INGRESS_TABLE, T.BASE_INGRESS_TABLE,
                   T.RULES_INGRESS_TABLE)
ICMPV6_ALLOWED_EGRESS = (130, 133, 135)  # MLD query, RS, NS
ICMPV6_RESTRICTED_EGRESS = (136,)  # NA
ICMPV6_ALLOWED_INGRESS = (130, 135, 136, 134)  # MLD query, NS, NA, then RA
ETHERTYPES = {"IPv4": "0x0800", "IPv6": "0x86dd"}
PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132, "ipv6-icmp": 58, "icmpv6": 58, "dccp": 33,
                    "gre": 47, "esp": 50, "ah": 51, "vrrp": 112, "ospf": 89, "pim": 103, "igmp": 2,
                    "udplite": 136}
PORT_PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}
CONJ_BLOCK = 8
_Add = Callable[[str, str, str], None]
"""The ``add`` closures: (flow text, origin object, builder)."""


def _load(value: int, reg: int) -> str:
    """Neutron's ``set_field:V->regN`` as ``ovs-ofctl dump-flows`` prints it back."""
    return f"load:{value:#x}->NXM_NX_REG{reg}[]"


def firewalled(ctx: OvsContext) -> bool:
    """Whether the host's br-int carries the native OVS firewall."""
    return ctx.modern and ctx.cloud.deployment.firewall_driver == "openvswitch"


def protocol_number(protocol: str | None, ethertype: str) -> int | None:
    """A rule's protocol as Neutron's OVS firewall matches it (``nw_proto``); None: any."""
    if protocol is None or protocol.lower() in ("", "any", "0", "all"):
        return None
    p = protocol.lower()
    if p.isdigit():
        n = int(p)
    else:
        n = PROTOCOL_NUMBERS.get(p, -1)
        if n < 0:
            return None
    if n == 1 and ethertype == "IPv6":
        return 58
    return n


def port_rule_masking(lo: int, hi: int) -> list[str]:
    """A port range as the fewest value/mask matches (neutron.common.utils.port_rule_masking)."""
    if lo == hi:
        return [str(lo)]
    out: list[str] = []
    cur = lo
    while cur <= hi:
        size = 1
        while cur % (size * 2) == 0 and cur + size * 2 - 1 <= hi and size < 0x10000:
            size *= 2
        out.append(str(cur) if size == 1 else f"0x{cur:04x}/0x{0xFFFF & ~(size - 1):04x}")
        cur += size
    return out


def priority_offset(rule: SecurityGroupRule, proto: int | None, conjunction: bool) -> int:
    """``rules.flow_priority_offset``: 0-3 for conjunction flows, 4-7 for the others."""
    base = 0 if conjunction else 4
    if proto is None:
        return base
    if proto in (1, 58):
        if rule.port_range_min is None:
            return base + 1
        if rule.port_range_max is None:
            return base + 2
    return base + 3


def _rule_matches(rule: SecurityGroupRule, proto: int | None, with_prefix: bool) -> list[str]:
    """The match items of one rule (after dl_type and reg5), one list entry per flow."""
    base = ""
    prefix = rule.remote_ip_prefix
    if with_prefix and prefix is not None and prefix.prefixlen != 0:
        v6 = prefix.version == 6
        fieldname = ("ipv6_src" if v6 else "nw_src") if rule.direction == "ingress" else (
            "ipv6_dst" if v6 else "nw_dst")
        base += f",{fieldname}={prefix}"
    if proto is not None:
        base += f",nw_proto={proto}"
    if proto in (1, 58):
        if rule.port_range_min is None:
            return [base]
        code = f",icmp_code={rule.port_range_max}" if rule.port_range_max is not None else ""
        return [f"{base},icmp_type={rule.port_range_min}{code}"]
    name = PORT_PROTOCOLS.get(proto or -1)
    if name is None or rule.port_range_min is None or rule.port_range_max is None:
        return [base]
    return [f"{base},{name}_dst={m}" for m in port_rule_masking(rule.port_range_min, rule.port_range_max)]


class _ConjIds:
    """``ConjIdMap``: a block of 8 ids per (group, remote group, direction, ethertype)."""

    def __init__(self) -> None:
        self.blocks: dict[tuple[str, str, str, str], int] = {}
        self.top = CONJ_BLOCK

    def get(self, key: tuple[str, str, str, str]) -> int:
        if key not in self.blocks:
            self.top += CONJ_BLOCK
            self.blocks[key] = self.top
        return self.blocks[key]


def _pairs(port: Port, version: int) -> list[tuple[str, str]]:
    """The port's (MAC, address) pairs of one IP version: allowed address pairs, then fixed IPs."""
    mac = port.mac_address.lower()
    out: list[tuple[str, str]] = []
    for pair in port.allowed_address_pairs:
        if pair.ip_address.version == version:
            net = pair.ip_address
            addr = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
            out.append(((pair.mac_address or mac).lower(), addr))
    for f in port.fixed_ips:
        if f.ip_address.version == version:
            out.append((mac, str(f.ip_address)))
    return list(dict.fromkeys(out))


def _macs(port: Port) -> list[str]:
    macs = [port.mac_address.lower()] + [p.mac_address.lower() for p in port.allowed_address_pairs if p.mac_address]
    return list(dict.fromkeys(macs))


def ovs_firewall_flows(ctx: OvsContext, plugs: tuple[PlugPort, ...], vlans: tuple[LocalVlan, ...],
                       ofports: Ofports) -> tuple[PlannedFlow, ...]:
    """br-int's firewall flows on a host with ``firewall_driver: openvswitch`` (none otherwise)."""
    if not firewalled(ctx):
        return ()
    br = naming.BR_INT
    out: list[PlannedFlow] = []

    def add(text: str, obj: str, builder: str) -> None:
        out.append(planned_flow(ctx, br, text, obj, builder))

    agent = f"agent {ctx.host.name}"
    for t in FIREWALL_TABLES:
        add(f"table={t:d},priority=0 actions=drop", agent, BUILDER_BASE)
    add(f"table={T.BASE_EGRESS_TABLE:d},priority=110,ct_state={TRACKED} "
        f"actions=ct_clear,resubmit(,{T.BASE_EGRESS_TABLE:d})", agent, BUILDER_BASE)
    add(f"table={T.ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE:d},priority=1 actions=NORMAL", agent, BUILDER_BASE)
    add(f"table={T.ACCEPTED_EGRESS_TRAFFIC_TABLE:d},priority=1 "
        f"actions=resubmit(,{T.ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE:d})", agent, BUILDER_BASE)
    add(f"table={T.ACCEPTED_INGRESS_TRAFFIC_TABLE:d},priority=0 actions=drop", agent, BUILDER_BASE)
    # where every packet no rule allowed ends: the firewall's fallback drop
    add(f"table={T.DROPPED_TRAFFIC_TABLE:d},priority=0 actions=drop", "sg-fallback", BUILDER_BASE)
    conj = _ConjIds()
    # remote-group members per (VLAN, direction, ethertype): address -> conjunction ids
    members: dict[tuple[int, str, str], dict[str, tuple[set[int], str]]] = {}
    for p in plugs:
        if not p.on_br_int or not p.alive:
            continue
        vlan = lvid_of(vlans, p)
        if vlan is None:
            continue
        ofport = ofports.of(br, p.name)
        port = p.port
        obj = f"port {port.id}"
        if port.device_owner.startswith("network:") or not port.port_security_enabled:
            add(f"table={T.TRANSIENT_TABLE:d},priority=100,in_port={ofport} actions={_load(ofport, REG_PORT)},"
                f"{_load(vlan, REG_NET)},resubmit(,{T.ACCEPT_OR_INGRESS_TABLE:d})", obj, BUILDER_TRUSTED)
            add(f"table={T.ACCEPT_OR_INGRESS_TABLE:d},priority=80,reg{REG_PORT}={ofport} "
                f"actions=resubmit(,{T.ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE:d})", obj, BUILDER_TRUSTED)
            continue
        if p.kind not in (PlugKind.VM, PlugKind.VM_HYBRID):
            continue
        _port_flows(add, p, ofport, vlan)
        _rule_flows(ctx, add, p, ofport, vlan, conj, members)
    for (vlan, direction, ethertype), addrs in members.items():
        table = T.RULES_INGRESS_TABLE if direction == "ingress" else T.RULES_EGRESS_TABLE
        fieldname = "nw_src" if direction == "ingress" else "nw_dst"
        for addr, (ids, rule_id) in addrs.items():
            by_offset: dict[int, list[int]] = {}
            for i in sorted(ids):
                by_offset.setdefault(i % CONJ_BLOCK // 2, []).append(i)
            for offset, lst in sorted(by_offset.items()):
                for k, state in enumerate(CT_STATES):
                    acts = ",".join(f"conjunction({i + k},1/2)" for i in lst)
                    add(f"table={table:d},priority={70 + offset},ct_state={state},dl_type={ETHERTYPES[ethertype]},"
                        f"reg{REG_NET}={vlan},{fieldname}={addr} actions={acts}", f"sg-rule {rule_id}",
                        BUILDER_CONJ)
    return tuple(out)


def _port_flows(add: _Add, p: PlugPort, ofport: int, vlan: int) -> None:
    """``initialize_port_flows``: the port's identification, base egress and base ingress flows."""
    port = p.port
    obj = f"port {port.id}"
    b = BUILDER_PORT
    regs = f"{_load(ofport, REG_PORT)},{_load(vlan, REG_NET)}"
    add(f"table={T.TRANSIENT_TABLE:d},priority=100,in_port={ofport} actions={regs},"
        f"resubmit(,{T.BASE_EGRESS_TABLE:d})", obj, b)
    seg = p.network.segment
    for mac in _macs(port):
        # install_physical_direct_flow: a provider network's frames, by the segment's own tag
        if seg.network_type == "vlan" and seg.segmentation_id is not None:
            add(f"table={T.TRANSIENT_TABLE:d},priority=90,dl_vlan={seg.segmentation_id},dl_dst={mac} "
                f"actions={regs},strip_vlan,resubmit(,{T.BASE_INGRESS_TABLE:d})", obj, b)
        elif seg.network_type == "flat":
            add(f"table={T.TRANSIENT_TABLE:d},priority=90,vlan_tci=0x0000/0x1fff,dl_dst={mac} "
                f"actions={regs},resubmit(,{T.BASE_INGRESS_TABLE:d})", obj, b)
        add(f"table={T.TRANSIENT_TABLE:d},priority=90,dl_vlan={vlan},dl_dst={mac} actions={regs},strip_vlan,"
            f"resubmit(,{T.BASE_INGRESS_TABLE:d})", obj, b)
    # egress
    here = f"reg{REG_PORT}={ofport},in_port={ofport}"
    normal = f"resubmit(,{T.ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE:d})"
    dropped = f"resubmit(,{T.DROPPED_TRAFFIC_TABLE:d})"
    to_rules = f"ct(table={T.RULES_EGRESS_TABLE:d},{ZONE})"
    e = T.BASE_EGRESS_TABLE
    v4, v6 = _pairs(port, 4), _pairs(port, 6)
    for mac, ip in v4:
        add(f"table={e:d},priority=95,arp,{here},dl_src={mac},arp_spa={ip} actions={normal}", obj, b)
        add(f"table={e:d},priority=95,rarp,{here},dl_src={mac} actions={normal}", obj, b)
        add(f"table={e:d},priority=65,ip,{here},dl_src={mac},nw_src={ip} actions={to_rules}", obj, b)
    v6_all = [*v6, (port.mac_address.lower(), str(_lla(port.mac_address)))]
    for mac, ip in dict.fromkeys(v6_all):
        for t in ICMPV6_ALLOWED_EGRESS:
            add(f"table={e:d},priority=95,icmp6,{here},dl_src={mac},ipv6_src={ip},icmp_type={t} actions={normal}",
                obj, b)
        for t in ICMPV6_RESTRICTED_EGRESS:
            add(f"table={e:d},priority=95,icmp6,{here},icmp_type={t},nd_target={ip} actions={normal}", obj, b)
    for mac, ip in v6:
        add(f"table={e:d},priority=65,ipv6,{here},dl_src={mac},ipv6_src={ip} actions={to_rules}", obj, b)
    accept_or_ingress = f"resubmit(,{T.ACCEPT_OR_INGRESS_TABLE:d})"
    for mac, ip in [*v4, (port.mac_address.lower(), "0.0.0.0")]:
        add(f"table={e:d},priority=80,udp,{here},dl_src={mac},nw_src={ip},tp_src=68,tp_dst=67 "
            f"actions={accept_or_ingress}", obj, b)
    for mac, ip in v6:
        add(f"table={e:d},priority=80,udp6,{here},dl_src={mac},ipv6_src={ip},tp_src=546,tp_dst=547 "
            f"actions={accept_or_ingress}", obj, b)
    add(f"table={e:d},priority=70,udp,{here},tp_src=67,tp_dst=68 actions={dropped}", obj, b)
    add(f"table={e:d},priority=70,udp6,{here},tp_src=547,tp_dst=546 actions={dropped}", obj, b)
    add(f"table={e:d},priority=70,icmp6,{here},icmp_type=134 actions={dropped}", obj, b)
    add(f"table={e:d},priority=10,{here} actions=ct_clear,{dropped}", obj, b)
    a = T.ACCEPT_OR_INGRESS_TABLE
    for mac in _macs(port):
        add(f"table={a:d},priority=100,reg{REG_NET}={vlan},dl_dst={mac} actions={_load(ofport, REG_PORT)},"
            f"resubmit(,{T.BASE_INGRESS_TABLE:d})", obj, b)
    for proto in ("ip", "ipv6"):
        add(f"table={a:d},priority=90,ct_state={NEW_NOT_EST},{proto},reg{REG_PORT}={ofport} "
            f"actions=ct(commit,{ZONE}),resubmit(,{T.ACCEPTED_EGRESS_TRAFFIC_TABLE:d})", obj, b)
    add(f"table={a:d},priority=80,reg{REG_PORT}={ofport} actions={normal}", obj, b)
    # ingress
    i = T.BASE_INGRESS_TABLE
    out = f"output:{ofport}"
    reg = f"reg{REG_PORT}={ofport}"
    add(f"table={i:d},priority=100,arp,{reg} actions={out}", obj, b)
    for t in ICMPV6_ALLOWED_INGRESS:
        add(f"table={i:d},priority=100,icmp6,{reg},icmp_type={t} actions={out}", obj, b)
    add(f"table={i:d},priority=95,udp,{reg},tp_src=67,tp_dst=68 actions={out}", obj, b)
    add(f"table={i:d},priority=95,udp6,{reg},tp_src=547,tp_dst=546 actions={out}", obj, b)
    for proto in ("ip", "ipv6"):
        add(f"table={i:d},priority=90,ct_state={NOT_TRACKED},{proto},{reg} "
            f"actions=ct(table={T.RULES_INGRESS_TABLE:d},{ZONE})", obj, b)
    add(f"table={i:d},priority=80,ct_state={TRACKED},{reg} actions=resubmit(,{T.RULES_INGRESS_TABLE:d})", obj, b)
    # tracked ingress, then tracked egress (add_flows_from_rules)
    for table, accept in ((T.RULES_INGRESS_TABLE, out), (T.RULES_EGRESS_TABLE, normal)):
        add(f"table={table:d},priority=50,ct_state={INVALID} actions={dropped}", obj, b)
        add(f"table={table:d},priority=50,ct_mark={CT_MARK_INVALID},{reg} actions={dropped}", obj, b)
        for state in (EST_REPLY, RELATED):
            add(f"table={table:d},priority=50,ct_state={state},ct_zone={vlan},ct_mark=0,{reg} actions={accept}",
                obj, b)
        add(f"table={table:d},priority=40,ct_state={NOT_EST},{reg} actions={dropped}", obj, b)
        for proto in ("ip", "ipv6"):
            add(f"table={table:d},priority=40,ct_state={EST},{proto},{reg} "
                f"actions=ct(commit,{ZONE},exec(load:{CT_MARK_INVALID}->NXM_NX_CT_MARK[]))", obj, b)


def _accept_actions(direction: str, ofport: int, state: str) -> str:
    if direction == "ingress":
        if state == NEW_NOT_EST:
            return (f"ct(commit,{ZONE}),output:{ofport},"
                    f"resubmit(,{T.ACCEPTED_INGRESS_TRAFFIC_TABLE:d})")
        return f"output:{ofport}"
    return f"resubmit(,{T.ACCEPT_OR_INGRESS_TABLE:d})"


def _rule_flows(ctx: OvsContext, add: _Add, p: PlugPort, ofport: int, vlan: int, conj: _ConjIds,
                members: dict[tuple[int, str, str], dict[str, tuple[set[int], str]]]) -> None:
    """The port's security-group rules: plain rules first, then the remote-group conjunctions."""
    port = p.port
    groups = []
    for sg_id in port.security_group_ids:
        try:
            groups.append(ctx.cloud.security_group(sg_id))
        except KeyError:
            continue
    for g in groups:
        for r in g.rules:
            if r.remote_group_id is not None or r.ethertype not in ETHERTYPES:
                continue
            proto = protocol_number(r.protocol, r.ethertype)
            table = T.RULES_INGRESS_TABLE if r.direction == "ingress" else T.RULES_EGRESS_TABLE
            prio = 70 + priority_offset(r, proto, False)
            for m in _rule_matches(r, proto, True):
                for state in CT_STATES:
                    add(f"table={table:d},priority={prio},ct_state={state},dl_type={ETHERTYPES[r.ethertype]},"
                        f"reg{REG_PORT}={ofport}{m} actions={_accept_actions(r.direction, ofport, state)}",
                        f"sg-rule {r.id}", BUILDER_RULES)
    accepts: dict[tuple[str, str], list[int]] = {}
    for g in groups:
        for r in g.rules:
            if r.remote_group_id is None or r.ethertype not in ETHERTYPES:
                continue
            proto = protocol_number(r.protocol, r.ethertype)
            offset = priority_offset(r, proto, True)
            cid = conj.get((g.id, r.remote_group_id, r.direction, r.ethertype)) + offset * 2
            table = T.RULES_INGRESS_TABLE if r.direction == "ingress" else T.RULES_EGRESS_TABLE
            for m in _rule_matches(r, proto, False):
                for k, state in enumerate(CT_STATES):
                    add(f"table={table:d},priority={70 + offset},ct_state={state},dl_type={ETHERTYPES[r.ethertype]},"
                        f"reg{REG_PORT}={ofport}{m} actions=conjunction({cid + k},2/2)",
                        f"sg-rule {r.id}", BUILDER_CONJ)
            ids = accepts.setdefault((r.direction, r.ethertype), [])
            if cid not in ids:
                ids.append(cid)
            if r.ethertype == "IPv4":
                slot = members.setdefault((vlan, r.direction, r.ethertype), {})
                for net in _group_members(ctx.cloud, r.remote_group_id):
                    addr = str(net.network_address) if net.prefixlen == 32 else str(net)
                    slot.setdefault(addr, (set(), r.id))[0].add(cid)
    for (direction, ethertype), ids in accepts.items():
        table = T.RULES_INGRESS_TABLE if direction == "ingress" else T.RULES_EGRESS_TABLE
        for cid in ids:
            for k, state in enumerate(CT_STATES):
                add(f"table={table:d},priority={70 + cid % CONJ_BLOCK // 2},conj_id={cid + k},ct_state={state},"
                    f"dl_type={ETHERTYPES[ethertype]},reg{REG_PORT}={ofport} "
                    f"actions={_load(cid + k, REG_REMOTE_GROUP)},{_accept_actions(direction, ofport, state)}",
                    f"port {port.id}", BUILDER_CONJ)


