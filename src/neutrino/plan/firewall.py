"""The iptables_hybrid security-group firewall of one host, as the OVS agent builds it (reference §6).

For every instance port bound to the host with a hybrid plug (tap → qbr → qvb/qvo), the root
namespace's filter table gets the FORWARD/INPUT jumps, the ``sg-chain`` and the port's ``i…``
(ingress, ``--physdev-out tap``) and ``o…`` (egress, ``--physdev-in tap``) chains; modern Neutron adds
the ``s…`` anti-spoof chain, rule comments, one conntrack zone per port in the raw table (from 4097
in port-id order), the nat short-circuit, ACCEPT rules for ports without port security and for
trusted (``network:*``) ports. Grizzly (seed 000) checks the MAC and source IP inline in the
o-chain and allows the DHCP server's replies by source address in the i-chain.

Remote-group rules become one ``-s ip/32`` (``-d`` for egress) rule per member address other than
the port's own, as Neutron does with ``enable_ipset=False``: there is no ipset binary to plan for.
Only IPv4 (``iptables``) is planned; the host state holds no ip6tables ruleset. Conntrack zones are
numbered from the ports present, so removing a port renumbers the later ones (Neutron keeps zones
sticky while the agent runs); a plan depends on the cloud alone.

>>> from neutrino.services.snapshot import CloudSnapshot
>>> from neutrino.scenarios.model import Deployment
>>> frag = plan_firewall(CloudSnapshot(Deployment()), "compute", Generation.MODERN)
>>> [c.name for c in frag.namespaces[0].iptables.table("filter").chains][3:6]
['neutron-filter-top', 'neutron-openvswi-FORWARD', 'neutron-openvswi-INPUT']
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from neutrino.host.iptables import TableName
from neutrino.host.state import ROOT, HostState, NamespaceState
from neutrino.plan import naming
from neutrino.plan.generation import (
    Generation,
    PlannedChain,
    PlannedRule,
    Profile,
    assemble,
    host_name,
    manager_skeleton,
    profile,
    rule,
)
from neutrino.scenarios.model import Host
from neutrino.services.snapshot import CloudSnapshot, Port, SecurityGroupRule

BUILDER = "plan_firewall"

# the comments Neutron writes (neutron/agent/linux/iptables_comments.py)
VM_INT_SG = "Direct traffic from the VM interface to the security group chain."
INPUT_TO_SG = "Direct incoming traffic from VM to the security group chain."
SG_TO_VM_SG = "Jump to the VM specific chain."
PAIR_ALLOW = "Allow traffic from defined IP/MAC pairs."
PAIR_DROP = "Drop traffic without an IP/MAC allow rule."
DHCP_CLIENT = "Allow DHCP client traffic."
DHCP_SPOOF = "Prevent DHCP Spoofing by VM."
UNMATCHED = "Send unmatched traffic to the fallback chain."
INVALID_DROP = ("Drop packets that appear related to an existing connection (e.g. TCP ACK/FIN) but do not "
                "have an entry in conntrack.")
ALLOW_ASSOC = "Direct packets associated with a known session to the RETURN chain."
PORT_SEC_ACCEPT = "Accept all packets when port security is disabled."
TRUSTED_ACCEPT = "Accept all packets when port is trusted."
FALLBACK_DROP = "Default drop rule for unmatched traffic."

#: protocol numbers SG rules may carry, as iptables names them (/etc/protocols)
PROTOCOL_NAMES = {"1": "icmp", "2": "igmp", "6": "tcp", "17": "udp", "33": "dccp", "47": "gre", "50": "esp",
                  "51": "ah", "58": "ipv6-icmp", "89": "ospf", "103": "pim", "112": "vrrp", "132": "sctp",
                  "136": "udplite"}
_PORT_PROTOCOLS = ("tcp", "udp", "sctp", "dccp", "udplite")
_MULTIPORT_ONLY = ("udplite",)
#: how much of a port id its chain and device names carry (``i7c7ae61e-0``, ``tap7c7ae61e-05``):
#: the rules of different ports that differ only by it are parsed once (see generation.rule)
_VARY_LEN = 10


def _comment(prof: Profile, text: str) -> str:
    return f' -m comment --comment "{text}"' if prof.comments else ""


def protocol_name(protocol: str | None) -> str | None:
    """An SG rule's protocol as ``-p`` takes it: names stay, numbers become names, 0/any is none."""
    if protocol is None or protocol.lower() in ("", "any", "0", "all"):
        return None
    p = protocol.lower()
    return PROTOCOL_NAMES.get(p, "ipv6-icmp" if p == "icmpv6" else p)


def sg_rule_spec(r: SecurityGroupRule, prof: Profile, remote: ipaddress.IPv4Network | None = None) -> str:
    """The match part of one IPv4 SG rule (reference §6.4): ``[-s|-d prefix] [-p proto [-m proto] ports]``.

    ``remote`` replaces the rule's remote prefix (one member of a remote group).
    """
    parts: list[str] = []
    prefix = remote if remote is not None else r.remote_ip_prefix
    if prefix is not None and prefix.prefixlen > 0:
        parts.append(f"{'-s' if r.direction == 'ingress' else '-d'} {prefix}")
    proto = protocol_name(r.protocol)
    if proto is not None:
        parts.append(f"-p {proto}")
        lo, hi = r.port_range_min, r.port_range_max
        if lo is not None and proto == "icmp" and prof.modern:
            parts.append(f"-m icmp --icmp-type {lo}{'' if hi is None else f'/{hi}'}")
        elif lo is not None and proto in _PORT_PROTOCOLS:
            hi = lo if hi is None else hi
            if proto in _MULTIPORT_ONLY:
                parts.append(f"-m multiport --dports {lo if lo == hi else f'{lo}:{hi}'}")
            elif lo == hi:
                parts.append(f"-m {proto} --dport {lo}")
            else:
                parts.append(f"-m {proto} -m multiport --dports {lo}:{hi}")
    return " ".join(parts)


def _v4(addrs: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> list[ipaddress.IPv4Address]:
    return [a for a in addrs if isinstance(a, ipaddress.IPv4Address)]


def _group_members(cloud: CloudSnapshot, sg_id: str) -> list[ipaddress.IPv4Network]:
    """Every IPv4 address (fixed IPs and allowed address pairs) of the ports in a security group."""
    return _members_by_group(cloud).get(sg_id, [])


_MEMBERS: tuple[CloudSnapshot | None, dict[str, list[ipaddress.IPv4Network]]] = (None, {})


def _members_by_group(cloud: CloudSnapshot) -> dict[str, list[ipaddress.IPv4Network]]:
    """Each group's members, computed once per snapshot (every port's chains ask for them): a
    one-entry memo keyed by the snapshot object itself."""
    global _MEMBERS
    memo = _MEMBERS
    if memo[0] is cloud:
        return memo[1]
    sets: dict[str, set[ipaddress.IPv4Network]] = {}
    for p in cloud.ports:
        if not p.security_group_ids:
            continue
        nets = {ipaddress.IPv4Network(a) for a in _v4(f.ip_address for f in p.fixed_ips)}
        nets.update(pair.ip_address for pair in p.allowed_address_pairs
                    if isinstance(pair.ip_address, ipaddress.IPv4Network))
        for sg_id in p.security_group_ids:
            sets.setdefault(sg_id, set()).update(nets)
    out = {sg_id: sorted(nets) for sg_id, nets in sets.items()}
    _MEMBERS = (cloud, out)
    return out


def _sg_rules(cloud: CloudSnapshot, port: Port, direction: str, chain: str,
              prof: Profile) -> list[PlannedRule]:
    """The port's security-group rules of one direction, in group order then rule order; a rule
    text that several groups produce is written once."""
    own = {ipaddress.IPv4Network(a) for a in _v4(f.ip_address for f in port.fixed_ips)}
    seen: set[str] = set()
    out: list[PlannedRule] = []
    for sg_id in port.security_group_ids:
        try:
            group = cloud.security_group(sg_id)
        except KeyError:
            continue
        for r in group.rules:
            if r.direction != direction or r.ethertype != "IPv4":
                continue
            if r.remote_group_id is not None:
                members = [m for m in _group_members(cloud, r.remote_group_id) if m not in own]
                specs = [sg_rule_spec(r, prof, m) for m in members]
            else:
                specs = [sg_rule_spec(r, prof)]
            for spec in specs:
                if spec in seen:
                    continue
                seen.add(spec)
                text = f"-A {chain} {spec} -j RETURN".replace("  ", " ")
                out.append(PlannedRule(TableName.FILTER, rule(text, f"sg-rule {r.id} via {BUILDER}",
                                                              vary=port.id[:_VARY_LEN])))
    return out


def _dhcp_server_ips(cloud: CloudSnapshot, port: Port) -> list[ipaddress.IPv4Address]:
    return [a for p in cloud.ports_on_network(port.network_id) if p.device_owner == "network:dhcp"
            for a in _v4(f.ip_address for f in p.fixed_ips)]


def _port_chains(cloud: CloudSnapshot, port: Port, prof: Profile) -> tuple[list[PlannedChain], list[PlannedRule]]:
    """The i-, o- (and modern s-) chains of one filtered port (reference §6.4, seed 000)."""
    binary = prof.ovs_agent_binary
    ichain = naming.sg_port_chain(binary, naming.ChainKind.INGRESS, port.id)
    ochain = naming.sg_port_chain(binary, naming.ChainKind.EGRESS, port.id)
    schain = naming.sg_port_chain(binary, naming.ChainKind.SPOOF, port.id)
    fallback = naming.wrapped_chain(binary, naming.SG_FALLBACK)
    obj = f"port {port.id}"
    why = f"port {port.id} via {BUILDER}"
    chains = [PlannedChain(TableName.FILTER, ichain, obj), PlannedChain(TableName.FILTER, ochain, obj)]
    rules: list[PlannedRule] = []

    vary = port.id[:_VARY_LEN]

    def add(chain: str, spec: str, origin: str = why) -> None:
        rules.append(PlannedRule(TableName.FILTER, rule(f"-A {chain} {spec}", origin, vary=vary)))

    ips = _v4(f.ip_address for f in port.fixed_ips)
    invalid = f"-m state --state INVALID{_comment(prof, INVALID_DROP)} -j DROP"
    established = f"-m state --state RELATED,ESTABLISHED{_comment(prof, ALLOW_ASSOC)} -j RETURN"
    egress = _sg_rules(cloud, port, "egress", ochain, prof)
    ingress = _sg_rules(cloud, port, "ingress", ichain, prof)
    if prof.modern:
        pairs = [(pair.ip_address, pair.mac_address or port.mac_address) for pair in port.allowed_address_pairs
                 if isinstance(pair.ip_address, ipaddress.IPv4Network)]
        pairs += [(ipaddress.IPv4Network(ip), port.mac_address) for ip in ips]
        spoof = bool(pairs) or not port.fixed_ips
        add(ochain, "-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67"
                    f"{_comment(prof, DHCP_CLIENT)} -j RETURN")
        if spoof:
            chains.append(PlannedChain(TableName.FILTER, schain, obj))
            for net, mac in pairs:
                add(schain, f"-s {net} -m mac --mac-source {mac}{_comment(prof, PAIR_ALLOW)} -j RETURN")
            if not pairs:
                add(schain, f"-m mac --mac-source {port.mac_address}{_comment(prof, PAIR_ALLOW)} -j RETURN")
            add(schain, f"{_comment(prof, PAIR_DROP).strip()} -j DROP")
            add(ochain, f"-j {schain}")
        add(ochain, f"-p udp -m udp --sport 68 --dport 67{_comment(prof, DHCP_CLIENT)} -j RETURN")
        add(ochain, f"-p udp -m udp --sport 67 --dport 68{_comment(prof, DHCP_SPOOF)} -j DROP")
        add(ochain, established)
        rules += egress
        add(ochain, invalid)
        add(ochain, f"{_comment(prof, UNMATCHED).strip()} -j {fallback}")

        add(ichain, established)
        provider = f"dhcp provider rule for port {port.id} via {BUILDER}"
        for ip in ips:
            add(ichain, f"-d {ip}/32 -p udp -m udp --sport 67 --dport 68 -j RETURN", provider)
        add(ichain, "-d 255.255.255.255/32 -p udp -m udp --sport 67 --dport 68 -j RETURN", provider)
        rules += ingress
        add(ichain, invalid)
        add(ichain, f"{_comment(prof, UNMATCHED).strip()} -j {fallback}")
    elif port.allowed_address_pairs:
        # Grizzly's agent knew no allowed address pairs (they came with Havana, whose agent moved
        # the address checks to an s- chain of (MAC, address) allows): a port given pairs gets
        # Havana's chain, so that what the API accepts is honoured.
        pairs = [(pair.ip_address, pair.mac_address or port.mac_address) for pair in port.allowed_address_pairs
                 if isinstance(pair.ip_address, ipaddress.IPv4Network)]
        pairs += [(ipaddress.IPv4Network(ip), port.mac_address) for ip in ips]
        add(ochain, "-p udp -m udp --sport 68 --dport 67 -j RETURN")
        chains.append(PlannedChain(TableName.FILTER, schain, obj))
        for net, mac in pairs:
            add(schain, f"-s {net} -m mac --mac-source {mac} -j RETURN")
        add(schain, "-j DROP")
        add(ochain, f"-j {schain}")
    else:
        add(ochain, f"-m mac ! --mac-source {port.mac_address} -j DROP")
        add(ochain, "-p udp -m udp --sport 68 --dport 67 -j RETURN")
        for ip in ips:
            add(ochain, f"! -s {ip}/32 -j DROP")
    if not prof.modern:
        add(ochain, "-p udp -m udp --sport 67 --dport 68 -j DROP")
        add(ochain, invalid)
        add(ochain, established)
        rules += egress
        add(ochain, f"-j {fallback}")

        add(ichain, invalid)
        add(ichain, established)
        rules += ingress
        provider = f"dhcp provider rule for port {port.id} via {BUILDER}"
        for ip in _dhcp_server_ips(cloud, port):
            add(ichain, f"-s {ip}/32 -p udp -m udp --sport 67 --dport 68 -j RETURN", provider)
        add(ichain, f"-j {fallback}")
    return chains, rules


def filtered_ports(cloud: CloudSnapshot, host: str) -> tuple[Port, ...]:
    """The instance ports bound to ``host`` with a hybrid plug, sorted by id (the agent's order)."""
    return tuple(sorted((p for p in cloud.ports_on_host(host) if p.is_instance_port and p.ovs_hybrid_plug),
                        key=lambda p: p.id))


def plan_firewall(cloud: CloudSnapshot, host: Host | str,
                  generation: Generation | Profile = Generation.MODERN) -> HostState:
    """The root namespace's iptables rules of the hybrid firewall on ``host`` (IPv4)."""
    prof = profile(generation)
    name = host_name(host)
    if cloud.deployment.firewall_driver != "iptables_hybrid":
        return HostState(name)
    binary = prof.ovs_agent_binary
    tables = (TableName.FILTER, TableName.RAW, TableName.NAT) if prof.modern else (TableName.FILTER,)
    chains, rules = manager_skeleton(prof, binary, tables, BUILDER, nat_chains=("PREROUTING",))
    chains_l, rules_l = list(chains), list(rules)
    sg_chain = naming.wrapped_chain(binary, naming.SG_CHAIN)
    fallback = naming.wrapped_chain(binary, naming.SG_FALLBACK)
    forward = naming.wrapped_chain(binary, "FORWARD")
    inp = naming.wrapped_chain(binary, "INPUT")
    prerouting = naming.wrapped_chain(binary, "PREROUTING")
    chains_l += [PlannedChain(TableName.FILTER, sg_chain, "agent"), PlannedChain(TableName.FILTER, fallback, "agent")]

    def add(table: TableName, chain: str, spec: str, origin: str, vary: str = "") -> None:
        rules_l.append(PlannedRule(table, rule(f"-A {chain} {spec}", origin, vary=vary)))

    add(TableName.FILTER, fallback, f"{_comment(prof, FALLBACK_DROP).strip()} -j DROP", f"sg-fallback via {BUILDER}")
    ports = filtered_ports(cloud, name)
    secured = [p for p in ports if p.port_security_enabled]
    bottom: list[PlannedRule] = []  # FORWARD's non-top rules (port security off, trusted ports)
    for port in secured:
        tap = naming.tap_device(port.id)
        why = f"port {port.id} via {BUILDER}"
        vary = port.id[:_VARY_LEN]
        ichain = naming.sg_port_chain(binary, naming.ChainKind.INGRESS, port.id)
        ochain = naming.sg_port_chain(binary, naming.ChainKind.EGRESS, port.id)
        for way, target in (("out", ichain), ("in", ochain)):
            add(TableName.FILTER, forward, f"-m physdev --physdev-{way} {tap} --physdev-is-bridged"
                                           f"{_comment(prof, VM_INT_SG)} -j {sg_chain}", why, vary)
            add(TableName.FILTER, sg_chain, f"-m physdev --physdev-{way} {tap} --physdev-is-bridged"
                                            f"{_comment(prof, SG_TO_VM_SG)} -j {target}", why, vary)
        add(TableName.FILTER, inp, f"-m physdev --physdev-in {tap} --physdev-is-bridged{_comment(prof, INPUT_TO_SG)} -j {ochain}",
            why, vary)
        pc, pr = _port_chains(cloud, port, prof)
        chains_l += pc
        rules_l += pr
    if secured:
        add(TableName.FILTER, sg_chain, "-j ACCEPT", f"sg-chain via {BUILDER}")
    if prof.modern:
        trusted = [p for p in cloud.ports_on_host(name) if p.device_owner.startswith("network:")]
        unsecured = [p for p in ports if not p.port_security_enabled]
        for port in sorted((*unsecured, *trusted), key=lambda p: p.id):
            tap = naming.tap_device(port.id)
            why = f"port {port.id} via {BUILDER}"
            text = TRUSTED_ACCEPT if port in trusted else PORT_SEC_ACCEPT
            for way in ("out", "in"):
                bottom.append(PlannedRule(TableName.FILTER, rule(
                    f"-A {forward} -m physdev --physdev-{way} {tap} --physdev-is-bridged{_comment(prof, text)} -j ACCEPT", why)))
            if port not in trusted:
                add(TableName.FILTER, inp, f"-m physdev --physdev-in {tap} --physdev-is-bridged{_comment(prof, text)} -j ACCEPT",
                    why)
        rules_l += bottom
        for zone, port in enumerate(secured, naming.CONNTRACK_ZONE_START):
            why = f"conntrack zone of port {port.id} via {BUILDER}"
            qvb, tap = naming.qvb_device(port.id), naming.tap_device(port.id)
            note = _comment(prof, f"Set zone for {port.id}")
            for match in (f"-m physdev --physdev-in {qvb}", f"-i {qvb}", f"-m physdev --physdev-in {tap}"):
                add(TableName.RAW, prerouting, f"{match}{note} -j CT --zone {zone}", why, port.id[:_VARY_LEN])
        for port in sorted((*ports, *trusted), key=lambda p: p.id):
            tap = naming.tap_device(port.id)
            for way in ("out", "in"):
                add(TableName.NAT, prerouting, f"-m physdev --physdev-{way} {tap}{_comment(prof, TRUSTED_ACCEPT)} -j ACCEPT",
                    f"nat short-circuit of port {port.id} via {BUILDER}", port.id[:_VARY_LEN])
    ruleset, origins = assemble(prof, chains_l, rules_l, BUILDER)
    return HostState(name, namespaces=(NamespaceState(ROOT, iptables=ruleset),), origins=origins)
