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

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from neutrino.host.iptables import (
    Address,
    Fragment,
    Interface,
    Match,
    Option,
    Rule,
    TableName,
    Target,
    new_rule,
    parse_rule,
)
from neutrino.host.state import ROOT, HostState, NamespaceState
from neutrino.plan import InputsMemo, naming
from neutrino.plan.generation import (
    Generation,
    PlannedChain,
    Profile,
    assemble_tables,
    host_name,
    manager_skeleton,
    profile,
)
from neutrino.scenarios.model import Host
from neutrino.services.snapshot import (
    CloudSnapshot,
    Port,
    SecurityGroup,
    SecurityGroupRule,
)

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
    return cloud.cached("firewall_group_members", _members_by_group).get(sg_id, [])


def _members_by_group(cloud: CloudSnapshot) -> dict[str, list[ipaddress.IPv4Network]]:
    """Each group's members, computed once per snapshot (every port's chains ask for them)."""
    sets: dict[str, set[ipaddress.IPv4Network]] = {}
    for p in cloud.ports:
        if not p.security_group_ids:
            continue
        nets = {_host_net(a) for a in _v4(f.ip_address for f in p.fixed_ips)}
        nets.update(pair.ip_address for pair in p.allowed_address_pairs
                    if isinstance(pair.ip_address, ipaddress.IPv4Network))
        for sg_id in p.security_group_ids:
            sets.setdefault(sg_id, set()).update(nets)
    return {sg_id: sorted(nets) for sg_id, nets in sets.items()}


def _dhcp_server_ips(cloud: CloudSnapshot, network_id: str) -> tuple[ipaddress.IPv4Address, ...]:
    return tuple(a for p in cloud.ports_on_network(network_id) if p.device_owner == "network:dhcp"
                 for a in _v4(f.ip_address for f in p.fixed_ips))


# --- the rules, as objects -----------------------------------------------------------------------
# Each rule is what ``parse_rule`` gives for the line Neutron writes (tests/plan/test_firewall.py
# checks every builder against the parse of its line). A line that differs from port to port only
# by its chain (the state, DHCP and security-group rules) is parsed once per text and put in each
# port's chain; the lines that name a device, an address or a MAC are built field by field.


@functools.lru_cache(maxsize=1 << 14)
def _spec(spec: str) -> Rule:
    """``-A X <spec>`` parsed (a rule depends on its text alone, so each text is parsed once)."""
    return parse_rule(f"-A X {spec}")


def _in(chain: str, spec: str, origin: str, *, source: Address | None = None,
        destination: Address | None = None) -> Rule:
    """``-A <chain> <spec>``; ``source``/``destination``: the ``-s``/``-d`` the spec holds instead."""
    r = _spec(spec)
    return new_rule(chain, source or r.source, destination or r.destination, r.in_interface, r.out_interface,
                    r.protocol, r.fragment, r.matches, r.target, None, origin)


def _comments(prof: Profile, text: str) -> tuple[Match, ...]:
    """``-m comment --comment "text"`` when the generation comments its rules."""
    return (Match("comment", (Option("comment", (text,)),)),) if prof.comments else ()


_BRIDGED = Option("physdev-is-bridged")


def _physdev_match(way: str, dev: str, *, bridged: bool = True) -> Match:
    """``-m physdev --physdev-<way> dev [--physdev-is-bridged]``."""
    opt = Option(f"physdev-{way}", (dev,))
    return Match("physdev", (opt, _BRIDGED) if bridged else (opt,))


@functools.lru_cache(maxsize=1 << 12)
def _jump(target: str) -> Target:
    """``-j target`` (the same object for every rule that jumps there)."""
    return Target(target)


def _physdev(chain: str, physdev: Match, comment: tuple[Match, ...], target: str, origin: str) -> Rule:
    """``-A chain <physdev match> [comment] -j target``."""
    return new_rule(chain, None, None, None, None, None, Fragment.ANY, (physdev, *comment), _jump(target), None,
                    origin)


def _mac_source(mac: str, *, negated: bool = False) -> Match:
    """``-m mac [!] --mac-source MAC`` (kept in lower case, as the parser keeps it)."""
    return Match("mac", (Option("mac-source", (mac.lower(),), negated),))


@functools.lru_cache(maxsize=1 << 16)
def _host_net(ip: ipaddress.IPv4Address) -> ipaddress.IPv4Network:
    """``ip/32`` (from the address's number: ``IPv4Network(ip)`` would print and re-parse it)."""
    return ipaddress.IPv4Network(int(ip))


def _host_address(ip: ipaddress.IPv4Address, *, negated: bool = False) -> Address:
    """``[!] -s/-d ip/32``."""
    return Address(_host_net(ip), negated)


# --- the per-host inputs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Inputs:
    """Everything the firewall of one host is planned from, and the key its plan is kept under:
    a host whose inputs are equal to an earlier plan's gets that plan back (re-planning a cloud
    after a change elsewhere), and nothing outside these fields is read while planning."""

    prof: Profile
    host: str
    ports: tuple[Port, ...]  # the hybrid-plugged instance ports and network:* ports bound to the host
    groups: tuple[tuple[str, SecurityGroup | None], ...]  # the secured ports' groups (None: gone)
    members: tuple[tuple[str, tuple[ipaddress.IPv4Network, ...]], ...]  # the remote groups' addresses
    dhcp_servers: tuple[tuple[str, tuple[ipaddress.IPv4Address, ...]], ...]  # Grizzly: per network


def _inputs(cloud: CloudSnapshot, host: str, prof: Profile) -> _Inputs:
    ports = [p for p in cloud.ports_on_host(host)
             if p.is_instance_port and p.ovs_hybrid_plug or p.device_owner.startswith("network:")]
    secured = [p for p in ports if p.is_instance_port and p.ovs_hybrid_plug and p.port_security_enabled]
    groups: dict[str, SecurityGroup | None] = {}
    for sg_id in dict.fromkeys(g for p in secured for g in p.security_group_ids):
        try:
            groups[sg_id] = cloud.security_group(sg_id)
        except KeyError:
            groups[sg_id] = None
    remote = dict.fromkeys(r.remote_group_id for g in groups.values() if g is not None for r in g.rules
                           if r.remote_group_id is not None and r.ethertype == "IPv4")
    members = tuple((g, tuple(_group_members(cloud, g))) for g in remote)
    servers = () if prof.modern else tuple(
        (n, _dhcp_server_ips(cloud, n)) for n in dict.fromkeys(p.network_id for p in secured))
    return _Inputs(prof, host, tuple(ports), tuple(groups.items()), members, servers)


#: each host's last firewall, with what it was planned from
_PLANNED: InputsMemo[_Inputs, HostState] = InputsMemo()


class _Facts:
    """Look-ups over one host's :class:`_Inputs`."""

    def __init__(self, inputs: _Inputs) -> None:
        self.prof = inputs.prof
        self.groups = dict(inputs.groups)
        self.members = dict(inputs.members)
        self.dhcp_servers = dict(inputs.dhcp_servers)
        # the security-group rules of a direction for each set of groups, as (rule in chain X,
        # origin): the ports of a host mostly share their groups; kept while this host is planned
        self.sg_pieces: dict[tuple[tuple[str, ...], str], list[tuple[Rule, str]]] = {}


class _Rules:
    """A host's planned rules by table, then chain, each chain's in the order added (as
    ``assemble`` would group a list of :class:`PlannedRule`, without one per rule)."""

    __slots__ = ("by_table",)

    def __init__(self) -> None:
        self.by_table: dict[TableName, dict[str, list[Rule]]] = {}

    def chain(self, table: TableName, name: str) -> list[Rule]:
        """The rules of chain ``name`` so far, to add to (the chain is then in the ruleset)."""
        return self.by_table.setdefault(table, {}).setdefault(name, [])

    def put(self, table: TableName, rule: Rule) -> None:
        self.chain(table, rule.chain).append(rule)


def _sg_rules(facts: _Facts, port: Port, direction: str, chain: str) -> list[Rule]:
    """The port's security-group rules of one direction, in group order then rule order; a rule
    text that several groups produce is written once."""
    key = (port.security_group_ids, direction)
    pieces = facts.sg_pieces.get(key)
    if pieces is None:
        pieces, own_used = _sg_pieces(facts, port, direction)
        if not own_used:  # the same for every port of these groups (else: of these addresses too)
            facts.sg_pieces[key] = pieces
    return [new_rule(chain, r.source, r.destination, r.in_interface, r.out_interface, r.protocol, r.fragment,
                     r.matches, r.target, None, origin) for r, origin in pieces]


def _sg_pieces(facts: _Facts, port: Port, direction: str) -> tuple[list[tuple[Rule, str]], bool]:
    """``_sg_rules``'s rules parsed (in chain ``X``) with their origins, and whether they depend on
    the port's own addresses (a remote group's members other than the port's own), not only on its
    groups."""
    prof = facts.prof
    own: set[ipaddress.IPv4Network] | None = None
    seen: set[str] = set()
    out: list[tuple[Rule, str]] = []
    for sg_id in port.security_group_ids:
        group = facts.groups.get(sg_id)
        if group is None:
            continue
        for r in group.rules:
            if r.direction != direction or r.ethertype != "IPv4":
                continue
            if r.remote_group_id is not None:
                if own is None:
                    own = {_host_net(a) for a in _v4(f.ip_address for f in port.fixed_ips)}
                members = [m for m in facts.members.get(r.remote_group_id, ()) if m not in own]
                specs = [sg_rule_spec(r, prof, m) for m in members]
            else:
                specs = [sg_rule_spec(r, prof)]
            for spec in specs:
                if spec in seen:
                    continue
                seen.add(spec)
                out.append((_spec(f"{spec} -j RETURN"), f"sg-rule {r.id} via {BUILDER}"))
    return out, own is not None


def _port_chains(facts: _Facts, port: Port, rules: _Rules) -> list[PlannedChain]:
    """The i-, o- (and modern s-) chains of one filtered port (reference §6.4, seed 000); their
    rules go in ``rules``."""
    prof = facts.prof
    binary = prof.ovs_agent_binary
    ichain = naming.sg_port_chain(binary, naming.ChainKind.INGRESS, port.id)
    ochain = naming.sg_port_chain(binary, naming.ChainKind.EGRESS, port.id)
    schain = naming.sg_port_chain(binary, naming.ChainKind.SPOOF, port.id)
    fallback = naming.wrapped_chain(binary, naming.SG_FALLBACK)
    obj = f"port {port.id}"
    why = f"port {port.id} via {BUILDER}"
    filt = TableName.FILTER
    chains = [PlannedChain(filt, ichain, obj), PlannedChain(filt, ochain, obj)]
    irules, orules = rules.chain(filt, ichain), rules.chain(filt, ochain)

    def add(to: list[Rule], chain: str, spec: str, origin: str = why) -> None:
        to.append(_in(chain, spec, origin))

    ips = _v4(f.ip_address for f in port.fixed_ips)
    invalid = f"-m state --state INVALID{_comment(prof, INVALID_DROP)} -j DROP"
    established = f"-m state --state RELATED,ESTABLISHED{_comment(prof, ALLOW_ASSOC)} -j RETURN"
    egress = _sg_rules(facts, port, "egress", ochain)
    ingress = _sg_rules(facts, port, "ingress", ichain)
    server_reply = "-p udp -m udp --sport 67 --dport 68 -j RETURN"
    if prof.modern:
        pairs = [(pair.ip_address, pair.mac_address or port.mac_address) for pair in port.allowed_address_pairs
                 if isinstance(pair.ip_address, ipaddress.IPv4Network)]
        pairs += [(_host_net(ip), port.mac_address) for ip in ips]
        spoof = bool(pairs) or not port.fixed_ips
        add(orules, ochain, "-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67"
                            f"{_comment(prof, DHCP_CLIENT)} -j RETURN")
        if spoof:
            chains.append(PlannedChain(filt, schain, obj))
            srules = rules.chain(filt, schain)
            allow = _comments(prof, PAIR_ALLOW)
            for net, mac in pairs:
                srules.append(Rule(schain, source=Address(net), matches=(_mac_source(mac), *allow),
                                   target=_jump("RETURN"), origin=why))
            if not pairs:
                srules.append(Rule(schain, matches=(_mac_source(port.mac_address), *allow), target=_jump("RETURN"),
                                   origin=why))
            add(srules, schain, f"{_comment(prof, PAIR_DROP).strip()} -j DROP")
            orules.append(Rule(ochain, target=_jump(schain), origin=why))
        add(orules, ochain, f"-p udp -m udp --sport 68 --dport 67{_comment(prof, DHCP_CLIENT)} -j RETURN")
        add(orules, ochain, f"-p udp -m udp --sport 67 --dport 68{_comment(prof, DHCP_SPOOF)} -j DROP")
        add(orules, ochain, established)
        orules += egress
        add(orules, ochain, invalid)
        add(orules, ochain, f"{_comment(prof, UNMATCHED).strip()} -j {fallback}")

        add(irules, ichain, established)
        provider = f"dhcp provider rule for port {port.id} via {BUILDER}"
        for ip in ips:
            irules.append(_in(ichain, server_reply, provider, destination=_host_address(ip)))
        add(irules, ichain, f"-d 255.255.255.255/32 {server_reply}", provider)
        irules += ingress
        add(irules, ichain, invalid)
        add(irules, ichain, f"{_comment(prof, UNMATCHED).strip()} -j {fallback}")
    elif port.allowed_address_pairs:
        # Grizzly's agent knew no allowed address pairs (they came with Havana, whose agent moved
        # the address checks to an s- chain of (MAC, address) allows): a port given pairs gets
        # Havana's chain, so that what the API accepts is honoured.
        pairs = [(pair.ip_address, pair.mac_address or port.mac_address) for pair in port.allowed_address_pairs
                 if isinstance(pair.ip_address, ipaddress.IPv4Network)]
        pairs += [(_host_net(ip), port.mac_address) for ip in ips]
        add(orules, ochain, "-p udp -m udp --sport 68 --dport 67 -j RETURN")
        chains.append(PlannedChain(filt, schain, obj))
        srules = rules.chain(filt, schain)
        for net, mac in pairs:
            srules.append(Rule(schain, source=Address(net), matches=(_mac_source(mac),), target=_jump("RETURN"),
                               origin=why))
        add(srules, schain, "-j DROP")
        orules.append(Rule(ochain, target=_jump(schain), origin=why))
    else:
        orules.append(Rule(ochain, matches=(_mac_source(port.mac_address, negated=True),), target=_jump("DROP"),
                           origin=why))
        add(orules, ochain, "-p udp -m udp --sport 68 --dport 67 -j RETURN")
        for ip in ips:
            orules.append(Rule(ochain, source=_host_address(ip, negated=True), target=_jump("DROP"), origin=why))
    if not prof.modern:
        add(orules, ochain, "-p udp -m udp --sport 67 --dport 68 -j DROP")
        add(orules, ochain, invalid)
        add(orules, ochain, established)
        orules += egress
        add(orules, ochain, f"-j {fallback}")

        add(irules, ichain, invalid)
        add(irules, ichain, established)
        irules += ingress
        provider = f"dhcp provider rule for port {port.id} via {BUILDER}"
        for ip in facts.dhcp_servers.get(port.network_id, ()):
            irules.append(_in(ichain, server_reply, provider, source=_host_address(ip)))
        add(irules, ichain, f"-j {fallback}")
    return chains


def filtered_ports(cloud: CloudSnapshot, host: str) -> tuple[Port, ...]:
    """The instance ports bound to ``host`` with a hybrid plug, sorted by id (the agent's order)."""
    return tuple(sorted((p for p in cloud.ports_on_host(host) if p.is_instance_port and p.ovs_hybrid_plug),
                        key=lambda p: p.id))


def _filtered(ports: Iterable[Port]) -> tuple[Port, ...]:
    return tuple(sorted((p for p in ports if p.is_instance_port and p.ovs_hybrid_plug), key=lambda p: p.id))


def plan_firewall(cloud: CloudSnapshot, host: Host | str,
                  generation: Generation | Profile = Generation.MODERN) -> HostState:
    """The root namespace's iptables rules of the hybrid firewall on ``host`` (IPv4)."""
    prof = profile(generation)
    name = host_name(host)
    if cloud.deployment.firewall_driver != "iptables_hybrid":
        return HostState(name)
    return _PLANNED.get(name, _inputs(cloud, name, prof), _planned)


def _planned(inputs: _Inputs) -> HostState:
    """The firewall planned from ``inputs`` alone (so that it can be kept under them)."""
    facts = _Facts(inputs)
    prof, name = inputs.prof, inputs.host
    binary = prof.ovs_agent_binary
    tables = (TableName.FILTER, TableName.RAW, TableName.NAT) if prof.modern else (TableName.FILTER,)
    chains, skeleton = manager_skeleton(prof, binary, tables, BUILDER, nat_chains=("PREROUTING",))
    chains_l = list(chains)
    rules = _Rules()
    for pr in skeleton:
        rules.put(pr.table, pr.rule)
    put = rules.put
    sg_chain = naming.wrapped_chain(binary, naming.SG_CHAIN)
    fallback = naming.wrapped_chain(binary, naming.SG_FALLBACK)
    forward = naming.wrapped_chain(binary, "FORWARD")
    inp = naming.wrapped_chain(binary, "INPUT")
    prerouting = naming.wrapped_chain(binary, "PREROUTING")
    chains_l += [PlannedChain(TableName.FILTER, sg_chain, "agent"), PlannedChain(TableName.FILTER, fallback, "agent")]

    put(TableName.FILTER, _in(fallback, f"{_comment(prof, FALLBACK_DROP).strip()} -j DROP",
                              f"sg-fallback via {BUILDER}"))
    ports = _filtered(inputs.ports)
    secured = [p for p in ports if p.port_security_enabled]
    bottom: list[Rule] = []  # FORWARD's non-top rules (port security off, trusted ports)
    to_sg, to_vm, input_to_sg = _comments(prof, VM_INT_SG), _comments(prof, SG_TO_VM_SG), _comments(prof, INPUT_TO_SG)
    for port in secured:
        tap = naming.tap_device(port.id)
        why = f"port {port.id} via {BUILDER}"
        ichain = naming.sg_port_chain(binary, naming.ChainKind.INGRESS, port.id)
        ochain = naming.sg_port_chain(binary, naming.ChainKind.EGRESS, port.id)
        tap_in = _physdev_match("in", tap)
        for physdev, target in ((_physdev_match("out", tap), ichain), (tap_in, ochain)):
            put(TableName.FILTER, _physdev(forward, physdev, to_sg, sg_chain, why))
            put(TableName.FILTER, _physdev(sg_chain, physdev, to_vm, target, why))
        put(TableName.FILTER, _physdev(inp, tap_in, input_to_sg, ochain, why))
        chains_l += _port_chains(facts, port, rules)
    if secured:
        put(TableName.FILTER, _in(sg_chain, "-j ACCEPT", f"sg-chain via {BUILDER}"))
    if prof.modern:
        trusted = [p for p in inputs.ports if p.device_owner.startswith("network:")]
        trusted_ids = {p.id for p in trusted}
        unsecured = [p for p in ports if not p.port_security_enabled]
        for port in sorted((*unsecured, *trusted), key=lambda p: p.id):
            tap = naming.tap_device(port.id)
            why = f"port {port.id} via {BUILDER}"
            is_trusted = port.id in trusted_ids
            note = _comments(prof, TRUSTED_ACCEPT if is_trusted else PORT_SEC_ACCEPT)
            tap_in = _physdev_match("in", tap)
            for physdev in (_physdev_match("out", tap), tap_in):
                bottom.append(_physdev(forward, physdev, note, "ACCEPT", why))
            if not is_trusted:
                put(TableName.FILTER, _physdev(inp, tap_in, note, "ACCEPT", why))
        for r in bottom:
            put(TableName.FILTER, r)
        for zone, port in enumerate(secured, naming.CONNTRACK_ZONE_START):
            why = f"conntrack zone of port {port.id} via {BUILDER}"
            qvb, tap = naming.qvb_device(port.id), naming.tap_device(port.id)
            note = _comments(prof, f"Set zone for {port.id}")
            ct = Target("CT", (Option("zone", (str(zone),)),))
            put(TableName.RAW, Rule(prerouting, matches=(_physdev_match("in", qvb, bridged=False), *note),
                                    target=ct, origin=why))
            put(TableName.RAW, Rule(prerouting, in_interface=Interface(qvb), matches=note, target=ct, origin=why))
            put(TableName.RAW, Rule(prerouting, matches=(_physdev_match("in", tap, bridged=False), *note),
                                    target=ct, origin=why))
        note = _comments(prof, TRUSTED_ACCEPT)
        for port in sorted((*ports, *trusted), key=lambda p: p.id):
            tap = naming.tap_device(port.id)
            why = f"nat short-circuit of port {port.id} via {BUILDER}"
            for way in ("out", "in"):
                put(TableName.NAT, _physdev(prerouting, _physdev_match(way, tap, bridged=False), note, "ACCEPT", why))
    ruleset, origins = assemble_tables(prof, chains_l, rules.by_table, BUILDER)
    return HostState(name, namespaces=(NamespaceState(ROOT, iptables=ruleset),), origins=origins)
