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
from typing import Any

from neutrino.host.fastnew import maker
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

#: ``PlannedChain(table, name, obj)``, made about twice as fast (three per filtered port)
_new_chain = maker(PlannedChain)

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


#: ``Option(name, args, negated)``, made about twice as fast (several per port)
_new_option = maker(Option)


def _physdev_match(way: str, dev: str, *, bridged: bool = True) -> Match:
    """``-m physdev --physdev-<way> dev [--physdev-is-bridged]``."""
    opt = _new_option(f"physdev-{way}", (dev,), False)
    return Match("physdev", (opt, _BRIDGED) if bridged else (opt,))


@functools.lru_cache(maxsize=1 << 12)
def _jump(target: str) -> Target:
    """``-j target`` (the same object for every rule that jumps there)."""
    return Target(target)


def _physdev(chain: str, physdev: Match, comment: tuple[Match, ...], target: str, origin: str) -> Rule:
    """``-A chain <physdev match> [comment] -j target``."""
    return new_rule(chain, None, None, None, None, None, Fragment.ANY, (physdev, *comment), _jump(target), None,
                    origin)


@functools.lru_cache(maxsize=1 << 12)
def _ct_zone(zone: int) -> Target:
    """``-j CT --zone N`` (the same object for every rule setting zone N, on every host)."""
    return Target("CT", (Option("zone", (str(zone),)),))


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


# --- the rules every port's chains hold alike ------------------------------------------------------

#: a rule's fields but its chain and its origin, in field order: ``new_rule(chain, *fields, origin)``
_Fields = tuple[Any, ...]


def _fields(spec: str) -> _Fields:
    """The fields of ``-A X <spec>`` between the chain and the origin (as ``_in`` makes the rule)."""
    r = _spec(spec)
    return (r.source, r.destination, r.in_interface, r.out_interface, r.protocol, r.fragment, r.matches, r.target,
            None)


@dataclass(frozen=True, slots=True)
class _Templates:
    """The rules the chains of every port of a profile hold alike (only the chain and the origin
    differ from port to port): parsed once per profile from the texts Neutron writes."""

    dhcp_client_any: _Fields  # modern: -s 0.0.0.0/32 -d 255.255.255.255/32 ... --sport 68 --dport 67
    dhcp_client: _Fields  # -p udp -m udp --sport 68 --dport 67 [comment] -j RETURN
    dhcp_spoof: _Fields  # -p udp -m udp --sport 67 --dport 68 [comment] -j DROP
    established: _Fields
    invalid: _Fields
    unmatched: _Fields  # [comment] -j <fallback>
    server_reply: _Fields  # -p udp -m udp --sport 67 --dport 68 -j RETURN (its -s/-d set per address)
    server_reply_any: _Fields  # modern: the same to 255.255.255.255/32
    pair_drop: _Fields  # [comment] -j DROP
    pair_allow: tuple[Match, ...]  # the comment of the s- chain's allows
    forward_to_sg: tuple[Match, ...]  # the comments of the physdev jumps
    sg_to_vm: tuple[Match, ...]
    input_to_sg: tuple[Match, ...]
    trusted: tuple[Match, ...]
    no_security: tuple[Match, ...]
    plain_dhcp_client: _Fields  # Grizzly's o-chain texts, never commented
    plain_server_drop: _Fields
    plain_drop: _Fields
    plain_fallback: _Fields


@functools.lru_cache(maxsize=16)
def _templates(prof: Profile) -> _Templates:
    """(Kept by the profile, a frozen value: the rules are made from it and fixed texts alone.)"""
    fallback = naming.wrapped_chain(prof.ovs_agent_binary, naming.SG_FALLBACK)
    server_reply = "-p udp -m udp --sport 67 --dport 68 -j RETURN"
    return _Templates(
        dhcp_client_any=_fields("-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67"
                                f"{_comment(prof, DHCP_CLIENT)} -j RETURN"),
        dhcp_client=_fields(f"-p udp -m udp --sport 68 --dport 67{_comment(prof, DHCP_CLIENT)} -j RETURN"),
        dhcp_spoof=_fields(f"-p udp -m udp --sport 67 --dport 68{_comment(prof, DHCP_SPOOF)} -j DROP"),
        established=_fields(f"-m state --state RELATED,ESTABLISHED{_comment(prof, ALLOW_ASSOC)} -j RETURN"),
        invalid=_fields(f"-m state --state INVALID{_comment(prof, INVALID_DROP)} -j DROP"),
        unmatched=_fields(f"{_comment(prof, UNMATCHED).strip()} -j {fallback}"),
        server_reply=_fields(server_reply),
        server_reply_any=_fields(f"-d 255.255.255.255/32 {server_reply}"),
        pair_drop=_fields(f"{_comment(prof, PAIR_DROP).strip()} -j DROP"),
        pair_allow=_comments(prof, PAIR_ALLOW),
        forward_to_sg=_comments(prof, VM_INT_SG),
        sg_to_vm=_comments(prof, SG_TO_VM_SG),
        input_to_sg=_comments(prof, INPUT_TO_SG),
        trusted=_comments(prof, TRUSTED_ACCEPT),
        no_security=_comments(prof, PORT_SEC_ACCEPT),
        plain_dhcp_client=_fields("-p udp -m udp --sport 68 --dport 67 -j RETURN"),
        plain_server_drop=_fields("-p udp -m udp --sport 67 --dport 68 -j DROP"),
        plain_drop=_fields("-j DROP"),
        plain_fallback=_fields(f"-j {fallback}"),
    )


def _with_address(fields: _Fields, *, source: Address | None = None, destination: Address | None = None) -> _Fields:
    """``fields`` with ``-s``/``-d`` replaced (where given)."""
    return (source or fields[0], destination or fields[1], *fields[2:])


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
        # the security-group rules of a direction for each set of groups, as (the rule's fields
        # but its chain, origin): the ports of a host mostly share their groups; kept while this
        # host is planned
        self.sg_pieces: dict[tuple[tuple[str, ...], str], list[tuple[_Fields, str]]] = {}
        self.templates = _templates(inputs.prof)


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
    return [new_rule(chain, *fields, origin) for fields, origin in pieces]


def _sg_pieces(facts: _Facts, port: Port, direction: str) -> tuple[list[tuple[_Fields, str]], bool]:
    """``_sg_rules``'s rules' fields (but the chain) with their origins, and whether they depend
    on the port's own addresses (a remote group's members other than the port's own), not only on
    its groups."""
    prof = facts.prof
    own: set[ipaddress.IPv4Network] | None = None
    seen: set[str] = set()
    out: list[tuple[_Fields, str]] = []
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
                out.append((_fields(f"{spec} -j RETURN"), f"sg-rule {r.id} via {BUILDER}"))
    return out, own is not None


def _port_chains(facts: _Facts, port: Port, rules: _Rules, ichain: str, ochain: str, why: str
                 ) -> list[PlannedChain]:
    """The i-, o- (and modern s-) chains of one filtered port (reference §6.4, seed 000); their
    rules go in ``rules``. Each rule is made from its profile's template (:class:`_Templates`) or
    field by field, with ``new_rule`` (every field, in order)."""
    prof, t = facts.prof, facts.templates
    schain = naming.sg_port_chain(prof.ovs_agent_binary, naming.ChainKind.SPOOF, port.id)
    obj = f"port {port.id}"
    filt = TableName.FILTER
    chains = [_new_chain(filt, ichain, obj), _new_chain(filt, ochain, obj)]
    irules, orules = rules.chain(filt, ichain), rules.chain(filt, ochain)
    ips = _v4(f.ip_address for f in port.fixed_ips)
    egress = _sg_rules(facts, port, "egress", ochain)
    ingress = _sg_rules(facts, port, "ingress", ichain)
    any_frag, ret = Fragment.ANY, _jump("RETURN")
    if prof.modern:
        pairs = [(pair.ip_address, pair.mac_address or port.mac_address) for pair in port.allowed_address_pairs
                 if isinstance(pair.ip_address, ipaddress.IPv4Network)]
        pairs += [(_host_net(ip), port.mac_address) for ip in ips]
        spoof = bool(pairs) or not port.fixed_ips
        orules.append(new_rule(ochain, *t.dhcp_client_any, why))
        if spoof:
            chains.append(_new_chain(filt, schain, obj))
            srules = rules.chain(filt, schain)
            allow = t.pair_allow
            for net, mac in pairs:
                srules.append(new_rule(schain, Address(net), None, None, None, None, any_frag,
                                       (_mac_source(mac), *allow), ret, None, why))
            if not pairs:
                srules.append(new_rule(schain, None, None, None, None, None, any_frag,
                                       (_mac_source(port.mac_address), *allow), ret, None, why))
            srules.append(new_rule(schain, *t.pair_drop, why))
            orules.append(new_rule(ochain, None, None, None, None, None, any_frag, (), _jump(schain), None, why))
        orules += (new_rule(ochain, *t.dhcp_client, why), new_rule(ochain, *t.dhcp_spoof, why),
                   new_rule(ochain, *t.established, why))
        orules += egress
        orules += (new_rule(ochain, *t.invalid, why), new_rule(ochain, *t.unmatched, why))

        irules.append(new_rule(ichain, *t.established, why))
        provider = f"dhcp provider rule for port {port.id} via {BUILDER}"
        for ip in ips:
            irules.append(new_rule(ichain, *_with_address(t.server_reply, destination=_host_address(ip)), provider))
        irules.append(new_rule(ichain, *t.server_reply_any, provider))
        irules += ingress
        irules += (new_rule(ichain, *t.invalid, why), new_rule(ichain, *t.unmatched, why))
    elif port.allowed_address_pairs:
        # Grizzly's agent knew no allowed address pairs (they came with Havana, whose agent moved
        # the address checks to an s- chain of (MAC, address) allows): a port given pairs gets
        # Havana's chain, so that what the API accepts is honoured.
        pairs = [(pair.ip_address, pair.mac_address or port.mac_address) for pair in port.allowed_address_pairs
                 if isinstance(pair.ip_address, ipaddress.IPv4Network)]
        pairs += [(_host_net(ip), port.mac_address) for ip in ips]
        orules.append(new_rule(ochain, *t.plain_dhcp_client, why))
        chains.append(_new_chain(filt, schain, obj))
        srules = rules.chain(filt, schain)
        for net, mac in pairs:
            srules.append(new_rule(schain, Address(net), None, None, None, None, any_frag, (_mac_source(mac),), ret,
                                   None, why))
        srules.append(new_rule(schain, *t.plain_drop, why))
        orules.append(new_rule(ochain, None, None, None, None, None, any_frag, (), _jump(schain), None, why))
    else:
        drop = _jump("DROP")
        orules.append(new_rule(ochain, None, None, None, None, None, any_frag,
                               (_mac_source(port.mac_address, negated=True),), drop, None, why))
        orules.append(new_rule(ochain, *t.plain_dhcp_client, why))
        for ip in ips:
            orules.append(new_rule(ochain, _host_address(ip, negated=True), None, None, None, None, any_frag, (),
                                   drop, None, why))
    if not prof.modern:
        orules += (new_rule(ochain, *t.plain_server_drop, why), new_rule(ochain, *t.invalid, why),
                   new_rule(ochain, *t.established, why))
        orules += egress
        orules.append(new_rule(ochain, *t.plain_fallback, why))

        irules += (new_rule(ichain, *t.invalid, why), new_rule(ichain, *t.established, why))
        irules += ingress
        provider = f"dhcp provider rule for port {port.id} via {BUILDER}"
        for ip in facts.dhcp_servers.get(port.network_id, ()):
            irules.append(new_rule(ichain, *_with_address(t.server_reply, source=_host_address(ip)), provider))
        irules.append(new_rule(ichain, *t.plain_fallback, why))
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
    prof, name, t = inputs.prof, inputs.host, facts.templates
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
    taps = {p.id: naming.tap_device(p.id) for p in ports}
    bottom: list[Rule] = []  # FORWARD's non-top rules (port security off, trusted ports)
    if secured:
        forward_rules, sg_rules, input_rules = (rules.chain(TableName.FILTER, c) for c in (forward, sg_chain, inp))
        to_sg, to_vm, input_to_sg = t.forward_to_sg, t.sg_to_vm, t.input_to_sg
        to_sg_jump, any_frag = _jump(sg_chain), Fragment.ANY
        ingress, egress = naming.ChainKind.INGRESS, naming.ChainKind.EGRESS
        for port in secured:
            tap = taps[port.id]
            why = f"port {port.id} via {BUILDER}"
            ichain = naming.sg_port_chain(binary, ingress, port.id)
            ochain = naming.sg_port_chain(binary, egress, port.id)
            tap_out, tap_in = _physdev_match("out", tap), _physdev_match("in", tap)
            ijump, ojump = _jump(ichain), _jump(ochain)
            forward_rules += (
                new_rule(forward, None, None, None, None, None, any_frag, (tap_out, *to_sg), to_sg_jump, None, why),
                new_rule(forward, None, None, None, None, None, any_frag, (tap_in, *to_sg), to_sg_jump, None, why))
            sg_rules += (
                new_rule(sg_chain, None, None, None, None, None, any_frag, (tap_out, *to_vm), ijump, None, why),
                new_rule(sg_chain, None, None, None, None, None, any_frag, (tap_in, *to_vm), ojump, None, why))
            input_rules.append(
                new_rule(inp, None, None, None, None, None, any_frag, (tap_in, *input_to_sg), ojump, None, why))
            chains_l += _port_chains(facts, port, rules, ichain, ochain, why)
        put(TableName.FILTER, _in(sg_chain, "-j ACCEPT", f"sg-chain via {BUILDER}"))
    if prof.modern:
        trusted = [p for p in inputs.ports if p.device_owner.startswith("network:")]
        trusted_ids = {p.id for p in trusted}
        unsecured = [p for p in ports if not p.port_security_enabled]
        for port in sorted((*unsecured, *trusted), key=lambda p: p.id):
            tap = naming.tap_device(port.id)
            why = f"port {port.id} via {BUILDER}"
            is_trusted = port.id in trusted_ids
            note = t.trusted if is_trusted else t.no_security
            tap_in = _physdev_match("in", tap)
            for physdev in (_physdev_match("out", tap), tap_in):
                bottom.append(_physdev(forward, physdev, note, "ACCEPT", why))
            if not is_trusted:
                put(TableName.FILTER, _physdev(inp, tap_in, note, "ACCEPT", why))
        for r in bottom:
            put(TableName.FILTER, r)
        if secured:
            raw = rules.chain(TableName.RAW, prerouting)
            for zone, port in enumerate(secured, naming.CONNTRACK_ZONE_START):
                why = f"conntrack zone of port {port.id} via {BUILDER}"
                qvb = naming.qvb_device(port.id)
                note = _comments(prof, f"Set zone for {port.id}")
                ct = _ct_zone(zone)
                raw += (new_rule(prerouting, None, None, None, None, None, Fragment.ANY,
                                 (_physdev_match("in", qvb, bridged=False), *note), ct, None, why),
                        new_rule(prerouting, None, None, Interface(qvb), None, None, Fragment.ANY, note, ct, None,
                                 why),
                        new_rule(prerouting, None, None, None, None, None, Fragment.ANY,
                                 (_physdev_match("in", taps[port.id], bridged=False), *note), ct, None, why))
        note = t.trusted
        accept = _jump("ACCEPT")
        for port in sorted((*ports, *trusted), key=lambda p: p.id):
            tap = taps.get(port.id) or naming.tap_device(port.id)
            why = f"nat short-circuit of port {port.id} via {BUILDER}"
            nat = rules.chain(TableName.NAT, prerouting)
            for way in ("out", "in"):
                nat.append(new_rule(prerouting, None, None, None, None, None, Fragment.ANY,
                                    (_physdev_match(way, tap, bridged=False), *note), accept, None, why))
    ruleset, origins = assemble_tables(prof, chains_l, rules.by_table, BUILDER)
    return HostState(name, namespaces=(NamespaceState(ROOT, iptables=ruleset),), origins=origins)
