"""The two generations of Neutron agents the planners reproduce, and the iptables manager they share.

Seed 000 shows Grizzly (2013, still called Quantum): chains wrapped as ``quantum-openvswi-…`` and
``quantum-l3-agent-…``, state under ``/var/lib/quantum``, veth pairs for the agents' devices
(``ns-…``/``qr-…``/``qg-…`` in the namespace, ``tap…`` on the OVS bridge), no rule comments, the old
firewall chain layout, per-subnet SNAT and the metadata REDIRECT without ``-i qr-+``. The reference
(``tests/fixtures/reference/neutron-dataplane.md``) describes Neutron master (``MODERN``): comments,
the ``s…`` anti-spoof chain, CT zones, ``--random-fully``, the mangle marks and OVS internal ports.

A :class:`Profile` holds every difference the planners look at; pass a :class:`Generation` or a
profile of your own (``replace(profile(Generation.GRIZZLY), product="neutron", …)`` gives Havana's
neutron-named chains over Grizzly's rules, as seed 002 shows).

>>> p = profile(Generation.GRIZZLY)
>>> p.ovs_agent_binary, p.l3_agent_binary, p.state_path
('quantum-openvswi', 'quantum-l3-agent', '/var/lib/quantum')
>>> profile(Generation.MODERN).filter_top
'neutron-filter-top'
"""

from __future__ import annotations

import enum
import functools
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace

from neutrino.host.fastnew import maker
from neutrino.host.iproute import IprouteStyle
from neutrino.host.iproute_link import Address, Link, LinkKind, OperState
from neutrino.host.iproute_route import Route
from neutrino.host.iptables import (
    BUILTIN_CHAINS,
    Chain,
    Interface,
    Match,
    Option,
    Policy,
    Rule,
    Ruleset,
    Table,
    TableName,
    Target,
    parse_rule,
)
from neutrino.host.openflow_fields import Mac
from neutrino.host.state import Origin
from neutrino.plan import naming
from neutrino.scenarios.model import Host

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Generation(enum.Enum):
    GRIZZLY = "grizzly"  # seed 000: Quantum 2013.1
    MODERN = "modern"  # the reference: neutron master, mid-2026


@dataclass(frozen=True, slots=True)
class Profile:
    """What one generation of the agents does differently.

    ``product``: the prefix of the shared chains (``quantum-filter-top``). ``use_veth``: the agents'
    ``ovs_use_veth`` (Grizzly's devices are veth pairs with a ``tap…`` end on the bridge; modern ones
    are OVS internal ports). ``comments``: ``-m comment`` on the firewall rules. ``nat_builtins``: the
    nat table's built-in chains in listing order (seed 000's kernel, 2.6.32, had no nat INPUT).
    ``lease_script``: dnsmasq's ``--dhcp-script`` (Grizzly only).
    """

    generation: Generation
    product: str
    ovs_agent_binary: str
    l3_agent_binary: str
    dhcp_agent_binary: str
    state_path: str
    use_veth: bool
    comments: bool
    nat_builtins: tuple[str, ...]
    iproute_style: IprouteStyle
    lease_script: str | None
    #: the hash the dataclass would compute from the fields, computed once: a profile keys the
    #: planners' per-snapshot tables, looked up dozens of times per host (issue #17), and its
    #: generated hash builds a tuple and calls two enums' Python ``__hash__`` each time
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash(self._values()))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Profile], tuple[object, ...]]:
        """Pickled and copied as the fields, made again by ``__init__``: the hash is a string's,
        which differs from one process to the next, so it is computed again, never carried."""
        return Profile, self._values()

    def _values(self) -> tuple[object, ...]:
        """The fields' values in order (``_hash`` aside): ``__init__``'s arguments."""
        return tuple(getattr(self, name) for name in _PROFILE_FIELDS)

    @property
    def modern(self) -> bool:
        return self.generation is Generation.MODERN

    @property
    def filter_top(self) -> str:
        return naming.filter_top(self.product)

    @property
    def postrouting_bottom(self) -> str:
        return naming.postrouting_bottom(self.product)

    def builtins(self, table: TableName) -> tuple[str, ...]:
        return self.nat_builtins if table is TableName.NAT else BUILTIN_CHAINS[table]


#: ``Profile``'s fields as ``__init__`` takes them (its hash and pickled form are made of them)
_PROFILE_FIELDS = tuple(f.name for f in fields(Profile) if f.init)


GRIZZLY = Profile(
    Generation.GRIZZLY, "quantum", naming.IptablesBinary.QUANTUM_OVS_AGENT.value,
    naming.IptablesBinary.QUANTUM_L3_AGENT.value, naming.IptablesBinary.QUANTUM_DHCP_AGENT.value,
    naming.QUANTUM_STATE_PATH, use_veth=True, comments=False,
    nat_builtins=("PREROUTING", "POSTROUTING", "OUTPUT"), iproute_style=IprouteStyle.LEGACY,
    lease_script="/usr/bin/quantum-dhcp-agent-dnsmasq-lease-update")
MODERN = Profile(
    Generation.MODERN, "neutron", naming.IptablesBinary.NEUTRON_OVS_AGENT.value,
    naming.IptablesBinary.NEUTRON_L3_AGENT.value, naming.IptablesBinary.NEUTRON_DHCP_AGENT.value,
    naming.NEUTRON_STATE_PATH, use_veth=False, comments=True,
    nat_builtins=BUILTIN_CHAINS[TableName.NAT], iproute_style=IprouteStyle.MODERN, lease_script=None)


#: Havana (2013.2, seed 002): Grizzly's rules and flows under the neutron name, OVS internal ports.
HAVANA = replace(GRIZZLY, product="neutron", ovs_agent_binary=naming.IptablesBinary.NEUTRON_OVS_AGENT.value,
                 l3_agent_binary=naming.IptablesBinary.NEUTRON_L3_AGENT.value,
                 dhcp_agent_binary=naming.IptablesBinary.NEUTRON_DHCP_AGENT.value,
                 state_path=naming.NEUTRON_STATE_PATH, use_veth=False,
                 lease_script="/usr/bin/neutron-dhcp-agent-dnsmasq-lease-update")

#: The scenario's ``deployment.generation`` names.
PROFILES: dict[str, Profile] = {"grizzly": GRIZZLY, "havana": HAVANA, "modern": MODERN}


def profile(generation: Generation | Profile) -> Profile:
    if isinstance(generation, Profile):
        return generation
    return GRIZZLY if generation is Generation.GRIZZLY else MODERN


# --- the iptables manager's tables ------------------------------------------------------------

#: The built-in chains an iptables manager wraps (each gets one jump to ``<binary>-<chain>``).
WRAPPED_BUILTINS: dict[TableName, tuple[str, ...]] = {
    TableName.FILTER: ("INPUT", "OUTPUT", "FORWARD"),
    TableName.NAT: ("PREROUTING", "OUTPUT", "POSTROUTING"),
    TableName.MANGLE: ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    TableName.RAW: ("PREROUTING", "OUTPUT"),
    TableName.SECURITY: (),
}

@dataclass(frozen=True, slots=True)
class PlannedRule:
    """A rule a planner wants, with the table it goes in."""

    table: TableName
    rule: Rule


@dataclass(frozen=True, slots=True)
class PlannedChain:
    table: TableName
    name: str
    obj: str  # the OpenStack object (or "agent") the chain exists for


def manager_skeleton(prof: Profile, binary: str, tables: Iterable[TableName], builder: str,
                     *, nat_chains: tuple[str, ...] | None = None,
                     ) -> tuple[tuple[PlannedChain, ...], tuple[PlannedRule, ...]]:
    """The chains and jumps an ``IptablesManager`` makes before any feature adds a rule.

    Each built-in chain of a table gets one jump to its wrapped twin (nat: ``nat_chains`` only, when
    given). filter: FORWARD and OUTPUT jump first to the shared ``<product>-filter-top``, which jumps
    to ``<binary>-local``. nat (all built-ins): POSTROUTING also jumps to ``<product>-postrouting-bottom``,
    which jumps to ``<binary>-snat``, which jumps to ``<binary>-float-snat``. mangle: PREROUTING
    jumps to ``<binary>-mark`` (modern).
    """
    chains: list[PlannedChain] = []
    rules: list[PlannedRule] = []
    obj = f"agent {binary}"

    def jump(table: TableName, chain: str, target: str, spec: str = "") -> None:
        text = f"-A {chain} {spec}{' ' if spec else ''}-j {target}"
        rules.append(PlannedRule(table, rule(text, f"{binary} iptables manager via {builder}")))

    for table in tables:
        wrapped_builtins = WRAPPED_BUILTINS[table]
        if table is TableName.NAT and nat_chains is not None:
            wrapped_builtins = nat_chains
        if table is TableName.FILTER:
            chains.append(PlannedChain(table, prof.filter_top, obj))
            for name in ("FORWARD", "OUTPUT"):
                jump(table, name, prof.filter_top)
        for name in wrapped_builtins:
            wrapped = naming.wrapped_chain(binary, name)
            chains.append(PlannedChain(table, wrapped, obj))
            jump(table, name, wrapped)
        if table is TableName.FILTER:
            local = naming.wrapped_chain(binary, naming.LOCAL_CHAIN)
            chains.append(PlannedChain(table, local, obj))
            jump(table, prof.filter_top, local)
        if table is TableName.NAT and nat_chains is None:
            snat = naming.wrapped_chain(binary, naming.SNAT_CHAIN)
            fsnat = naming.wrapped_chain(binary, naming.FLOAT_SNAT_CHAIN)
            chains += [PlannedChain(table, prof.postrouting_bottom, obj), PlannedChain(table, snat, obj),
                       PlannedChain(table, fsnat, obj)]
            jump(table, "POSTROUTING", prof.postrouting_bottom)
            spec = '-m comment --comment "Perform source NAT on outgoing traffic."' if prof.modern else ""
            jump(table, prof.postrouting_bottom, snat, spec)
            jump(table, snat, fsnat)
        if table is TableName.MANGLE and prof.modern:
            mark = naming.wrapped_chain(binary, "mark")
            chains.append(PlannedChain(table, mark, obj))
            jump(table, naming.wrapped_chain(binary, "PREROUTING"), mark)
    return tuple(chains), tuple(rules)


def rule(text: str, origin: str, *, vary: str = "") -> Rule:
    """One ``-A chain …`` line in parsed form, stamped with why it exists.

    ``vary``: a port id's prefix (``7c7ae61e-0``) that the line's chain and device names carry.
    The many lines that differ only by it are parsed once, as a template with the prefix stood in
    for, and the prefix is put back into the parsed names."""
    if vary and vary in text and _PLACEHOLDER not in text and _VARY.fullmatch(vary):
        ph = _PLACEHOLDER * len(vary)
        return _substituted(_parsed_rule(text.replace(vary, ph)), ph, vary, origin)
    r = _parsed_rule(text)
    return Rule(r.chain, r.source, r.destination, r.in_interface, r.out_interface, r.protocol, r.fragment,
                r.matches, r.target, r.counters, origin)


#: what ``vary`` may be: a UUID's first 10 or more characters (hex digits and the dash, never a
#: whole token the parser interprets: an option, address, MAC, number or protocol)
_VARY = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{1,27}")
_PLACEHOLDER = "\u00a7"  # §: not whitespace, a quote or a dash, and its own lower case


def _sub_options(opts: tuple[Option, ...], ph: str, value: str) -> tuple[Option, ...]:
    for o in opts:
        for a in o.args:
            if ph in a:
                return tuple(o if not any(ph in a for a in o.args)
                             else Option(o.name, tuple(a.replace(ph, value) for a in o.args), o.negated)
                             for o in opts)
    return opts


def _sub_match(m: Match, ph: str, value: str) -> Match:
    opts = _sub_options(m.options, ph, value)
    return m if opts is m.options else Match(m.module, opts)


def _substituted(r: Rule, ph: str, value: str, origin: str) -> Rule:
    """``r`` with ``ph`` replaced by ``value`` in every name and option argument."""
    def iface(i: Interface | None) -> Interface | None:
        return i if i is None or ph not in i.name else Interface(i.name.replace(ph, value), i.negated)
    matches = tuple(_sub_match(m, ph, value) for m in r.matches)
    target = r.target
    if target is not None:
        target = Target(target.name.replace(ph, value), _sub_options(target.options, ph, value), target.goto)
    return Rule(r.chain.replace(ph, value), r.source, r.destination, iface(r.in_interface), iface(r.out_interface),
                r.protocol, r.fragment, matches, target, r.counters, origin)


@functools.lru_cache(maxsize=1 << 18)
def _parsed_rule(text: str) -> Rule:
    """Rules are immutable and parsing is pure: a cloud re-planned after a change writes mostly the
    same lines again, so each is parsed once."""
    return parse_rule(text)


def assemble(prof: Profile, chains: Iterable[PlannedChain], rules: Iterable[PlannedRule],
             builder: str) -> tuple[Ruleset, tuple[Origin, ...]]:
    """The planned chains and rules as a :class:`Ruleset` (tables in filter, raw, nat, mangle order;
    built-in chains first in the tools' order with policy ACCEPT, then user chains sorted byte-wise,
    as ``iptables-save`` lists them) and an :class:`Origin` for every user chain."""
    by_table: dict[TableName, dict[str, list[Rule]]] = {}
    for r in rules:
        by_table.setdefault(r.table, {}).setdefault(r.rule.chain, []).append(r.rule)
    return assemble_tables(prof, chains, by_table, builder)


def assemble_tables(prof: Profile, chains: Iterable[PlannedChain], by_table: dict[TableName, dict[str, list[Rule]]],
                    builder: str) -> tuple[Ruleset, tuple[Origin, ...]]:
    """:func:`assemble` of rules already grouped by table, then chain (each chain's in order);
    ``by_table`` gets the declared chains that hold no rule."""
    order = (TableName.FILTER, TableName.RAW, TableName.NAT, TableName.MANGLE)
    declared: dict[tuple[TableName, str], str] = {}
    for c in chains:
        by_table.setdefault(c.table, {}).setdefault(c.name, [])
        declared.setdefault((c.table, c.name), c.obj)
    tables: list[Table] = []
    origins: list[Origin] = []
    for name in sorted(by_table, key=order.index):
        content = by_table[name]
        builtins = prof.builtins(name)
        out = [Chain(c, Policy.ACCEPT, rules=tuple(content.get(c, ()))) for c in builtins]
        user = sorted((c for c in content if c not in builtins), key=lambda c: c.encode())
        out += [Chain(c, rules=tuple(content[c])) for c in user]
        origins += [Origin("chain", f"{name}/{c}", declared.get((name, c), "agent"), builder) for c in user]
        tables.append(Table(name, tuple(out)))
    return Ruleset(tuple(tables)), tuple(origins)


def host_name(host: Host | str) -> str:
    """The planners take a deployment :class:`Host` or just its name."""
    return host if isinstance(host, str) else host.name


# --- the agents' devices and the kernel's routes -------------------------------------------------

UP_FLAGS = ("BROADCAST", "MULTICAST", "UP", "LOWER_UP")


@functools.lru_cache(maxsize=1 << 16)
def address(ip: IPAddress, prefixlen: int, dev: str) -> Address:
    """An address as the agents add it: IPv4 with ``brd`` (the address itself for a /32, as
    ``ip addr add … brd`` and Neutron's ``add_broadcast`` both give), labelled with the device.
    Addresses are immutable: each is made once (re-plans ask for the same ones again)."""
    iface = ipaddress.ip_interface(f"{ip}/{prefixlen}")
    if iface.version == 4:
        brd = iface.network.broadcast_address if prefixlen < 32 else iface.ip
        return Address(iface, "global", brd=brd, label=dev)
    return Address(iface, "global")


def device_mac(*parts: str) -> Mac:
    """A deterministic stand-in for a MAC the kernel or OVS picks at random (veth ends, patch and
    tunnel ports, bridges): the first 6 bytes of sha256 of the parts joined by ``/``, made unicast and
    locally administered, as ``eth_random_addr`` makes them."""
    raw = int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:6], "big")
    # the first byte's two low bits: multicast off, locally administered on
    return _new_mac(raw & 0xFCFFFFFFFFFF | 0x020000000000)


def device_macs(parts: tuple[str, ...], names: Iterable[str]) -> list[Mac]:
    """``device_mac(*parts, name)`` for each of ``names`` (a host's tunnel ports: the joined
    ``parts`` encoded once)."""
    head, sha256, new_mac = "/".join((*parts, "")).encode(), hashlib.sha256, _new_mac
    return [new_mac(int.from_bytes(sha256(head + name.encode()).digest()[:6], "big") & 0xFCFFFFFFFFFF | 0x020000000000)
            for name in names]


#: ``Mac(value)``, made without the frozen ``__init__`` (:mod:`neutrino.host.fastnew`): a plan makes
#: one per tunnel port and veth end, by the hundred thousand in a large cloud
_new_mac = maker(Mac)


def agent_link(prof: Profile, name: str, mac: str | None, mtu: int, addresses: tuple[Address, ...] = (),
               *, root_end: bool = False) -> Link:
    """A device an agent made: an OVS internal port (modern) or a veth end (``use_veth``). The
    kernel picks the index (0 here: not known until realized); Grizzly's kernel gave veths
    ``qdisc pfifo_fast … qlen 1000`` as seed 000 shows."""
    veth = prof.use_veth
    if not prof.modern:  # agents before Kilo set no MTU: devices kept the kernel's 1500
        mtu = 1500
    if mac is None:  # the host end of a veth: the kernel picks its MAC at random
        mac = str(device_mac(name))
    if prof.iproute_style is IprouteStyle.LEGACY:  # old iproute2 printed no lifetimes for IPv4
        addresses = tuple(replace(a, lifetimes=None) if a.interface.version == 4 else a for a in addresses)
    return Link(0, name, flags=UP_FLAGS, mtu=mtu, qdisc="pfifo_fast" if veth else None, state=OperState.UP,
                qlen=1000 if veth else None, link_type="ether", mac=mac, brd="ff:ff:ff:ff:ff:ff",
                addresses=addresses, kind=LinkKind.VETH if veth else LinkKind.OVS_INTERNAL,
                style=prof.iproute_style)


def connected_route(prof: Profile, addr: Address, dev: str) -> Route | None:
    """The route the kernel adds with an address (none for a /32 or /128)."""
    net = addr.interface.network
    if net.prefixlen == net.max_prefixlen:
        return None
    return Route(net, dev=dev, proto="kernel", scope="link", src=addr.interface.ip, style=prof.iproute_style)


def ordered_routes(prof: Profile, routes: Iterable[Route]) -> tuple[Route, ...]:
    """Routes in the order ``ip route`` lists them: modern kernels (fib trie) by destination with
    ``default`` first; the old fib_hash (seed 000) longest prefix first, ``default`` last."""
    def key(r: Route) -> tuple[int, int]:
        net = r.dst or ipaddress.ip_network("0.0.0.0/0")
        if prof.iproute_style is IprouteStyle.LEGACY:
            return (-net.prefixlen, int(net.network_address))
        return (int(net.network_address), net.prefixlen)
    return tuple(sorted(routes, key=key))
