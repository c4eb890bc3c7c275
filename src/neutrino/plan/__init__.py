"""Planners: the agents' and managers' plumbing as pure functions of the cloud.

``plan_host(cloud, host)`` runs every planner that applies to ``host`` (by the deployment's
mechanism and generation, and the host's roles) and merges their fragments into one
:class:`~neutrino.host.state.HostState`; ``plan_cloud(cloud)`` does it for every host.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import operator
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Generic, TypeVar

from neutrino.collector import paused
from neutrino.host.iproute_link import Address, Link, LinkKind, OperState
from neutrino.host.iproute_route import Netns
from neutrino.host.openflow import FlowDump
from neutrino.host.state import ROOT, BridgeFlows, HostState, NamespaceState
from neutrino.scenarios.model import Host, Mechanism
from neutrino.services.snapshot import CloudSnapshot, Port

if TYPE_CHECKING:  # the planners are imported when a host is planned: a module of this package
    from neutrino.plan.generation import Profile  # (naming, generation) costs no more than itself
    from neutrino.plan.nova_network import NovaOptions
    from neutrino.plan.ovs import OvsParts


_I = TypeVar("_I")
_V = TypeVar("_V")


class InputsMemo(Generic[_I, _V]):
    """What a planner computed last under each name (a host, a network), with the inputs it was
    computed from. ``get(name, inputs, compute)`` gives the kept value when the kept inputs are
    equal to ``inputs`` (compared in full, field by field: equal inputs give an equal plan, so what
    it returns cannot be stale), else ``compute(inputs)``, which must read nothing but ``inputs``,
    and keeps that. A re-plan after a change elsewhere in the cloud finds most pieces unchanged;
    the name only picks which kept entry to compare against. At most ``size`` names are kept (the
    oldest is dropped)."""

    def __init__(self, size: int = 1 << 14) -> None:
        self._size = size
        self._kept: dict[object, tuple[_I, _V]] = {}
        self._lock = threading.Lock()

    @property
    def kept(self) -> dict[object, tuple[_I, _V]]:
        """What is kept, by name: (inputs, value)."""
        return self._kept

    def get(self, name: object, inputs: _I, compute: Callable[[_I], _V]) -> _V:
        kept = self._kept.get(name)
        if kept is not None and kept[0] == inputs:
            return kept[1]
        value = compute(inputs)
        self.put(name, inputs, value)
        return value

    def put(self, name: object, inputs: _I, value: _V) -> None:
        """Keep ``value`` under ``name`` as computed from ``inputs`` (it must be what ``compute``
        gives for them)."""
        with self._lock:  # planners may run in several threads (the in-process agents)
            if name not in self._kept and len(self._kept) >= self._size:
                del self._kept[next(iter(self._kept))]
            self._kept[name] = (inputs, value)


def plan_host(cloud: CloudSnapshot, host: Host | str, *, datapath_type: str = "system") -> HostState:
    """Everything OpenStack builds on ``host`` for ``cloud``."""
    from neutrino.plan.generation import PROFILES

    dep = cloud.deployment
    name = host if isinstance(host, str) else host.name
    parts = None
    whole = False
    if dep.mechanism is Mechanism.NOVA_NETWORK:
        from neutrino.plan.nova_network import plan_nova_network

        state = plan_nova_network(cloud, name, options=nova_options(cloud))
    else:
        gen = PROFILES[dep.generation]
        me = _hosts_by_name(cloud).get(name)
        if me is not None and (reused := _replanned(cloud, me, gen, datapath_type)) is not None:
            patched = _patched(cloud, me, gen, datapath_type, *reused)
            if patched is not None:
                return patched
        state, parts, whole = _merged(cloud, name if me is None else me, gen, datapath_type)
        if me is None:
            parts = None
    state = _finished(state)
    _remember(name, _Planned(_serial(cloud), datapath_type, state, parts, whole) if parts is not None else None)
    return state


def _finished(state: HostState) -> HostState:
    """The planners' merged fragments as the host has them: the devices numbered by the kernel and
    the namespaces listed."""
    state = _as_the_kernel_numbers_them(state)
    names = tuple(ns.name for ns in state.namespaces if ns.name != ROOT)
    return replace(state, netns_list=tuple(Netns(n) for n in sorted(names)))


def _merged(cloud: CloudSnapshot, host: Host | str, gen: Profile, datapath_type: str,
            ovs_parts: OvsParts | None = None) -> tuple[HostState, OvsParts, bool]:
    """The host's planners' fragments merged (not yet numbered by the kernel), the OVS pieces its
    OVS fragment is made of (``ovs_parts`` when given: :func:`_replanned`'s, else planned here),
    and whether the L3 and DHCP planners made nothing there."""
    from neutrino.plan.compose import merge
    from neutrino.plan.dhcp import plan_dhcp
    from neutrino.plan.firewall import plan_firewall
    from neutrino.plan.l3 import plan_l3
    from neutrino.plan.ovs import ovs_fragment, planned_ovs

    dep = cloud.deployment
    name = host if isinstance(host, str) else host.name
    if ovs_parts is not None:
        ovs, parts = ovs_fragment(name, ovs_parts), ovs_parts
    else:
        uplinks = () if isinstance(host, str) else host.uplinks
        ovs, parts = planned_ovs(cloud, host, generation=gen, datapath_type=datapath_type, uplinks=uplinks)
    frags = [HostState(name), ovs]
    if dep.firewall_driver == "iptables_hybrid":
        frags.append(plan_firewall(cloud, name, gen))
    l3 = plan_l3(cloud, name, gen, random_fully=dep.random_fully)
    dhcp = plan_dhcp(cloud, name, gen)
    frags += (l3, dhcp)
    return merge(frags), parts, _empty(l3) and _empty(dhcp)


def _empty(frag: HostState) -> bool:
    """Whether a planner's fragment holds nothing."""
    return frag == HostState(frag.name)


@dataclass(frozen=True, slots=True)
class _Planned:
    """A host's last plan (:func:`plan_host`) on the snapshot numbered ``serial``, with the OVS
    pieces it was assembled from; ``whole``: the L3 and DHCP planners made nothing there (the plan
    is the OVS and firewall planners' alone: :func:`_patched` may patch it)."""

    serial: int
    datapath_type: str
    state: HostState
    parts: OvsParts
    whole: bool


_NO_FLOWS = FlowDump(())

#: each host's last plan (at most ``_LAST_SIZE`` hosts; the oldest dropped)
_LAST: dict[str, _Planned] = {}
_LAST_SIZE = 1 << 14


_LAST_LOCK = threading.Lock()  # (the in-process agents plan hosts in several threads)


def _remember(name: str, planned: _Planned | None) -> None:
    with _LAST_LOCK:
        _LAST.pop(name, None)
        if planned is None:
            return
        if len(_LAST) >= _LAST_SIZE:
            del _LAST[next(iter(_LAST))]
        _LAST[name] = planned


def _replanned(cloud: CloudSnapshot, me: Host, gen: Profile, datapath_type: str) -> tuple[_Planned, OvsParts] | None:
    """The host's last plan, and its OVS pieces on ``cloud`` made from that plan's
    (:func:`ovs.replanned_flows`: they are what :func:`ovs.planned_ovs` would give), when that plan
    was on the snapshot ``cloud`` was carried from (:func:`carry_from`, its ``@patch`` record), or on
    an older one its plan on that snapshot equals (:func:`_unaffected_since`), and none of the
    ports changed between the two is bound to the host. br-tun's flows are then, where that can be
    told, the last ones with the change's edits made (``ovs._spliced``, issue #17, replan13), from
    the facts of the snapshot carried from, ``P`` (``patch[0]``): its hosts of the changed network
    in tunnel-host order with their live ports (``@tunnels_before``), which place each host's block
    in ``P``'s batch. Also when the last plan is on an older snapshot ``L`` (replan14: the living
    agents' ``with_statuses`` snapshots, and hosts the change before did not touch): the chain
    proves the host's plan on ``P`` is its last one, so br-tun's flows, and with them the batch of
    each of its networks (a block per remote host, told apart by their tunnel ports, a flow per live
    port), are ``P``'s, which ``P``'s facts place. Those facts are ``L``'s too: a step of the chain
    by :func:`hosts_affected_by_change` that does not name the host changed no port of a network it
    is on (each such port names every host with a port on the network, before and after) nor the
    ports' order, and a step by :func:`same_plans` changed statuses alone, which the live ports
    (``ovs_tun._by_network``: host, network, admin state, owner) do not read. None: plan the OVS
    side in full."""
    from neutrino.plan.ovs import replanned_flows

    patch = cloud._index.get("@patch")
    if patch is None:
        return None
    name = me.name
    last = _LAST.get(name)
    if last is None or last.datapath_type != datapath_type or name in patch[1]:
        return None
    if last.serial != patch[0] and not _unaffected_since(name, last.serial, patch[0]):
        return None
    # (spliced from ``patch[0]``'s facts even when the last plan is older, chained: see the docstring)
    parts = replanned_flows(cloud, me, last.parts, generation=gen, datapath_type=datapath_type,
                            uplinks=me.uplinks, since=patch[0])
    return None if parts is None else (last, parts)


def _patched(cloud: CloudSnapshot, me: Host, gen: Profile, datapath_type: str, last: _Planned, parts: OvsParts
             ) -> HostState | None:
    """The host's plan on ``cloud`` made from its last plan, ``last``, and its OVS pieces on
    ``cloud``, ``parts`` (:func:`_replanned`). When the last plan is the OVS and firewall planners'
    alone (``whole``), the ports changed can change nothing of it but br-tun's flows (issue #17:
    the hosts sharing a network with a port added see only its l2population flows change). What
    :func:`carry_from` vouches for (the ``@patch`` record): only ports changed, none of them bound
    to this host, none of the ``network:`` owners (DHCP, routers: the L3 and DHCP planners read
    them and the firewall reads DHCP servers' addresses), none in a group a rule names as remote
    (the firewall's members). Then the firewall's, the L3 and the DHCP planners' fragments (the
    latter two empty in the last plan) are what they were, and :func:`ovs.replanned_flows` checked
    the OVS pieces but br-tun's flows; the state is the last one with each bridge's flows and the
    flows' origins replaced (where :func:`plan_host` puts them: after the bridges' and ports'
    origins, first of all); when br-tun's tunnels changed (replan18: a host new to, or gone from,
    one of the host's networks), also the OVSDB view, each bridge's ``ofctl show`` and the bridges'
    and ports' origins, the new ports view's (nothing else of the plan reads a port number). Else
    (the network host: its DHCP files list the ports) the other
    planners run again and their fragments are merged with the OVS one made of ``parts`` (issue
    #17, replan15: the OVS side, hundreds of tunnels, is the bulk of its plan). None: plan in full."""
    name = me.name
    if not last.whole:
        state, _parts, whole = _merged(cloud, me, gen, datapath_type, parts)
        state = _finished(state)
        _remember(name, _Planned(_serial(cloud), datapath_type, state, parts, whole))
        return state
    old = last.state
    view, flows, was = parts.view, parts.flows, last.parts.flows
    if tuple(b.bridge for b in old.ovs.bridges) != tuple(sorted(n for n, _s in view.ofctl)):
        return None
    start = len(last.parts.view.origins)
    end = start + len(was.origins)
    if view is last.parts.view:
        origins = old.origins[:start] + flows.origins + old.origins[end:]
        bridges = tuple(b if flows.dumps.get(b.bridge) is was.dumps.get(b.bridge)
                        else BridgeFlows(b.bridge, flows.dumps.get(b.bridge, _NO_FLOWS), b.ports)
                        for b in old.ovs.bridges)
        ovs = replace(old.ovs, bridges=bridges)
    else:  # (br-tun's tunnels changed, and with them the port numbers: every bridge's view is the new one)
        origins = view.origins + flows.origins + old.origins[end:]
        shows = dict(view.ofctl)
        ovs = replace(old.ovs, show=view.show, bridges=tuple(
            BridgeFlows(b.bridge, flows.dumps.get(b.bridge, _NO_FLOWS), shows[b.bridge]) for b in old.ovs.bridges))
    state = replace(old, ovs=ovs, origins=origins)
    _remember(name, _Planned(_serial(cloud), datapath_type, state, parts, True))
    return state


#: snapshot number -> (the number of the snapshot it was compared with by
#: :func:`hosts_affected_by_change`, the hosts it found affected): every other host's plan is the
#: same on both (issue #17, replan12: a host the change before did not touch was last planned on an
#: older snapshot, and may be patched from that plan, :func:`_unaffected_since`)
_AFFECTED: dict[int, tuple[int, frozenset[str]]] = {}
_AFFECTED_SIZE = 64


def _unaffected_since(name: str, serial: int, now: int) -> bool:
    """Whether the host's plan on the snapshot numbered ``serial`` is its plan on the one numbered
    ``now`` too: a chain of :func:`hosts_affected_by_change` answers leads from ``now`` back to
    ``serial`` (a few steps at most) and none of them names the host."""
    for _step in range(8):
        rec = _AFFECTED.get(now)
        if rec is None or name in rec[1]:
            return False
        now = rec[0]
        if now == serial:
            return True
    return False


def _hosts_by_name(cloud: CloudSnapshot) -> dict[str, Host]:
    """The deployment's hosts by name (the first of a name, as ``Deployment.host`` finds it), once
    per snapshot: a look-up by name scans them all."""
    def index(c: CloudSnapshot) -> dict[str, Host]:
        out: dict[str, Host] = {}
        for h in c.deployment.hosts:
            out.setdefault(h.name, h)
        return out
    return cloud.cached("hosts_by_name", index)


_LO = Link(1, "lo", flags=("LOOPBACK", "UP", "LOWER_UP"), mtu=65536, qdisc="noqueue", state=OperState.UNKNOWN,
           group="default", qlen=1000, link_type="loopback", mac="00:00:00:00:00:00", brd="00:00:00:00:00:00",
           addresses=(Address(ipaddress.ip_interface("127.0.0.1/8"), scope="host", label="lo"),
                      Address(ipaddress.ip_interface("::1/128"), scope="host")),
           kind=LinkKind.LOOPBACK)


@functools.lru_cache(maxsize=1 << 16)
def _link_local(mac: str) -> Address:
    """The EUI-64 link-local address the kernel gives a device of MAC ``mac``."""
    return Address(_eui64(mac), scope="link")


def _eui64(mac: str) -> ipaddress.IPv6Interface:
    """``fe80::/64`` with the interface id of ``mac`` (the universal/local bit flipped, ``ff:fe`` in
    the middle), made from its number (printing and parsing the text cost 4x more)."""
    m = int(mac.replace(":", ""), 16)
    iid = (((m >> 24) ^ 0x020000) << 40) | (0xFFFE << 24) | (m & 0xFFFFFF)
    return ipaddress.IPv6Interface(((0xFE80 << 112) | iid, 64))


def _link_local_of(lk: Link) -> Address | None:
    """The EUI-64 link-local address the kernel gives an Ethernet device that is up (None: none
    to add)."""
    if lk.link_type != "ether" or not lk.mac or not lk.up or lk.master is not None:
        return None
    if any(a.interface.version == 6 and a.scope == "link" for a in lk.addresses):
        return None
    return _link_local(lk.mac)


def _numbered(links: tuple[Link, ...]) -> tuple[Link, ...]:
    """One namespace's devices as the kernel numbers them (see ``_as_the_kernel_numbers_them``)."""
    todo = list(links)
    if not any(lk.name == "lo" for lk in todo):
        todo.insert(0, _LO)
    used = {lk.index for lk in todo if lk.index}
    nxt = max(used, default=0) + 1
    numbered = []
    for lk in todo:
        index = lk.index
        if not index:
            index = nxt
            nxt += 1
        ll = _link_local_of(lk)
        if ll is not None:
            lk = _renumbered(lk, index, (*lk.addresses, ll))
        elif index != lk.index:
            lk = _renumbered(lk, index, lk.addresses)
        numbered.append(lk)
    return tuple(numbered)


# ``Link``'s fields after ``index`` (its first), split around ``addresses``, for ``_renumbered``
_LINK_FIELDS = tuple(f.name for f in fields(Link))
assert _LINK_FIELDS[0] == "index"
_LINK_BEFORE = operator.attrgetter(*_LINK_FIELDS[1:_LINK_FIELDS.index("addresses")])
_LINK_AFTER = operator.attrgetter(*_LINK_FIELDS[_LINK_FIELDS.index("addresses") + 1:])


def _renumbered(lk: Link, index: int, addresses: tuple[Address, ...]) -> Link:
    """``replace(lk, index=index, addresses=addresses)``, by position (half the cost of ``replace``,
    which walks the fields by name: a plan renumbers every device it makes)."""
    values: tuple[object, ...] = (index, *_LINK_BEFORE(lk), addresses, *_LINK_AFTER(lk))
    return Link(*values)  # type: ignore[arg-type]


#: each namespace as last numbered, with the very namespace object it was numbered from: a re-plan
#: hands back most of them (the DHCP planner's kept ones: the network host's hundred). Found by
#: identity, not equality: a namespace compares equal to one whose rules differ in their origins
#: alone (``Rule.origin`` is not compared), which must not come back with the old origins.
_NUMBERED: InputsMemo[NamespaceState, NamespaceState] = InputsMemo()


def _numbered_namespace(ns: NamespaceState) -> NamespaceState:
    """``ns`` with its devices (it has some) as the kernel numbers them."""
    return replace(ns, links=_numbered(ns.links or ()))


def _kept_numbering(host: str, ns: NamespaceState) -> NamespaceState:
    """:func:`_numbered_namespace`, kept for the very ``ns`` last numbered on ``host``. A new ``ns``
    around the very devices last numbered (the root namespace of a host planned in full again: the
    firewall's rules made anew, merged beside the hybrid plug's kept links) takes the devices as
    they were numbered, and its other fields as they are (issue #17, replan17)."""
    name = (host, ns.name)
    kept = _NUMBERED.kept.get(name)
    if kept is not None and kept[0] is ns:
        return kept[1]
    if kept is not None and kept[0].links is ns.links:  # (numbering reads the devices alone)
        numbered = replace(ns, links=kept[1].links)
    else:
        numbered = _numbered_namespace(ns)
    _NUMBERED.put(name, ns, numbered)
    return numbered


def _as_the_kernel_numbers_them(state: HostState) -> HostState:
    """Every namespace with devices gets its loopback (index 1), and the planned devices, which
    leave their index to the kernel (0), the next indexes in the order they were made."""
    if not any(ns.links for ns in state.namespaces):
        return state
    namespaces = [ns if not ns.links else _kept_numbering(state.name, ns)
                  for ns in state.namespaces]
    return replace(state, namespaces=tuple(sorted(namespaces, key=lambda n: (n.name != ROOT, n.name))))


def _v4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> ipaddress.IPv4Address | None:
    return ip if isinstance(ip, ipaddress.IPv4Address) else None


def nova_options(cloud: CloudSnapshot) -> NovaOptions:
    """nova-network's options and per-host facts, as the deployment states them (pinned host
    gateways name their network; every network of that name is meant)."""
    from neutrino.plan.nova_network import HostFacts, NovaOptions

    dep = cloud.deployment
    facts = tuple(HostFacts(h.name, h.macs, _v4(h.default_gateway), h.default_metric, h.link_local_metric,
                            _v4(h.routing_source_ip), _v4(h.metadata_host)) for h in dep.hosts)
    pins = tuple((n.id, host, ip) for name, host, ip in dep.nova_network.host_gateways
                 for n in cloud.networks if n.name == name)
    return NovaOptions(hosts=facts, instance_offset=dep.nova_network.instance_offset, host_gateways=pins)


def plan_cloud(cloud: CloudSnapshot, *, datapath_type: str = "system") -> tuple[HostState, ...]:
    """Every host of the deployment, planned."""
    with paused():
        return tuple(plan_host(cloud, h.name, datapath_type=datapath_type) for h in cloud.deployment.hosts)


def plan_hosts(cloud: CloudSnapshot, names: Iterable[str], *, datapath_type: str = "system",
               previous: CloudSnapshot | None = None) -> dict[str, HostState]:
    """The named hosts only, planned (a re-plan of the hosts a change touches).

    ``previous``: the snapshot planned before (the agents hold it). When only ports changed
    between the two, the planners' per-snapshot facts that the changed ports' networks and hosts
    do not touch are taken from it rather than made again (:func:`carry_from`); the plans are the
    same either way."""
    with paused():
        todo = dict.fromkeys(names)
        if previous is not None:
            carry_from(previous, cloud, todo)
        return {n: plan_host(cloud, n, datapath_type=datapath_type) for n in todo}


_SERIALS = itertools.count(1)


def _serial(cloud: CloudSnapshot) -> int:
    """A number for ``cloud``, its own (never given to another snapshot)."""
    return cloud.cached("serial", lambda _c: next(_SERIALS))


#: per-snapshot facts (``CloudSnapshot.cached``) made of what a ports-only change leaves equal: the
#: deployment, the subnets (carried, their objects are the ones the kept plans' inputs hold)
_CARRIED_FACTS = ("@hosts_by_name", "@deployment_without_hosts", "@subnets_by_network")


def carry_from(before: CloudSnapshot, after: CloudSnapshot, planned: Iterable[str] = (), *,
               changed: list[tuple[str, Port | None, Port | None]] | None = None) -> bool:
    """Give ``after``'s index what ``before``'s holds that the ports changed between them leave
    as it was (issue #17): br-tun's per-network and per-host facts (:func:`ovs_tun.carry_index`;
    ``planned``: the hosts about to be planned, whose plugged ports are carried where theirs did
    not change), the DHCP agent's per-network port facts, the hosts by name, the deployment without
    them and the subnets by network. Only when nothing but ports changed, as
    :func:`hosts_affected_by_change` tells (its answer for these two snapshots is reused; any
    other pair is compared here); returns whether anything was carried. Whatever ``before`` is,
    the plans do not change: each fact is carried only where what it is made of is equal.
    ``changed``: (id, port before, port after) of every port that differs, when the caller made
    ``after`` from ``before`` by changing those ports alone (``agent.with_statuses``): then they
    are not compared again."""
    if before is after:
        return False
    from neutrino.plan import dhcp, ovs_tun

    if changed is not None:
        after._index["@ports_changed"] = (_serial(before), changed)
    else:
        rec = after._index.get("@ports_changed")
        changed = rec[1] if rec is not None and rec[0] == _serial(before) else _ports_changed(before, after)
    if changed is None:
        return False
    networks = {p.network_id for _i, was, now in changed for p in (was, now) if p is not None}
    hosts = {p.binding_host for _i, was, now in changed for p in (was, now) if p is not None}
    for name in _CARRIED_FACTS:
        if name in before._index:
            after._index.setdefault(name, before._index[name])
    kept = after._index.get(("@tunnels_before",))  # type: ignore[call-overload]
    ovs_tun.carry_index(before, after, networks, hosts, planned)
    if after._index.get(("@tunnels_before",)) is not kept:  # type: ignore[call-overload]
        # (what :func:`ovs_tun.carry_index` kept of ``before``, named: :func:`_patched` splices from it)
        after._index[("@tunnels_before_of",)] = _serial(before)  # type: ignore[index]
    ports = [p for _i, was, now in changed for p in (was, now) if p is not None]
    dhcp.carry_index(before, after, networks, ports)
    if _patchable(after, ports):
        # the other hosts' plans on ``before`` may be patched (:func:`_patched`)
        after._index["@patch"] = (_serial(before), frozenset(hosts))
    return True


def _patchable(cloud: CloudSnapshot, ports: list[Port]) -> bool:
    """Whether the ports changed (each as it was and as it is) can change another host's plan in
    br-tun's flows alone (:func:`_patched`): none owned by ``network:`` (DHCP ports and routers'),
    none in a group a rule names as remote."""
    if any(p.device_owner.startswith("network:") for p in ports):
        return False
    groups = {g for p in ports for g in p.security_group_ids}
    return not any(r.remote_group_id in groups for sg in cloud.security_groups for r in sg.rules)


def hosts_affected_by_port(cloud: CloudSnapshot, port_id: str) -> tuple[str, ...]:
    """The hosts whose plan a port added to (or removed from) ``cloud`` can change, in deployment
    order: the port's own host, every host with a port on its network (tunnels and l2population
    flows, DHCP and router namespaces) and, when one of its security groups is some rule's remote
    group, every host with a port in a group holding such a rule, and every host of a distributed
    router with an interface on its network or of an HA router with a port on it (which plugs its
    ports on each of them). nova-network: every host."""
    dep = cloud.deployment
    names = [h.name for h in dep.hosts]
    if dep.mechanism is Mechanism.NOVA_NETWORK:
        return tuple(names)
    port = cloud.port(port_id)
    touched = {port.binding_host} | {p.binding_host for p in cloud.ports_on_network(port.network_id)}
    groups = set(port.security_group_ids)
    referring = {sg.id for sg in cloud.security_groups for r in sg.rules if r.remote_group_id in groups}
    if referring:
        touched |= {p.binding_host for p in cloud.ports if referring & set(p.security_group_ids)}
    touched |= dvr_hosts_of_network(cloud, port.network_id)
    touched |= _routed_networks(cloud).get(port.network_id, frozenset())
    return tuple(n for n in names if n in touched)


def hosts_affected_by_change(before: CloudSnapshot, after: CloudSnapshot) -> tuple[str, ...] | None:
    """The hosts whose plan can differ between ``before`` and ``after`` when only ports changed
    (added, removed or altered): for each, :func:`hosts_affected_by_port` in the snapshot that has
    it (both when it changed), in deployment order. ``None`` when anything else the planners read
    changed (the deployment, networks, subnets, routers, floating IPs, groups, agents, port
    forwardings; servers under nova-network) or the ports' order did: every host must be planned.
    The answer is recorded (``_AFFECTED``): every other host's plan on ``after`` may be patched from
    its plan on ``before`` (:func:`_unaffected_since`)."""
    changed = _ports_changed(before, after)
    if changed is None:
        return None
    # (kept with ``after`` for :func:`carry_from`, under ``before``'s number: not ``before`` itself,
    # which would keep every snapshot since the first alive)
    after._index["@ports_changed"] = (_serial(before), changed)
    touched: set[str] = set()
    for pid, was, now in changed:
        if was is not None:
            touched.update(hosts_affected_by_port(before, pid))
        if now is not None:
            touched.update(hosts_affected_by_port(after, pid))
    if changed:
        touched |= _moved_routers_hosts(before, after)
    out = tuple(h.name for h in after.deployment.hosts if h.name in touched)
    _record_affected(before, after, frozenset(out))
    return out


def _record_affected(before: CloudSnapshot, after: CloudSnapshot, hosts: frozenset[str]) -> None:
    """Record (``_AFFECTED``) that every host but ``hosts`` has the same plan on ``after`` as on
    ``before``."""
    with _LAST_LOCK:
        if len(_AFFECTED) >= _AFFECTED_SIZE:
            del _AFFECTED[next(iter(_AFFECTED))]
        _AFFECTED[_serial(after)] = (_serial(before), hosts)


def same_plans(before: CloudSnapshot, after: CloudSnapshot) -> None:
    """Record that every host's plan on ``after`` is its plan on ``before``: ``after`` differs only
    by ports' statuses, which no planner reads (``agent.with_statuses``: the snapshot the agents'
    next pass compares with, so that the hosts planned on ``before`` may still be patched;
    tests/plan/test_statuses_patch.py plans both cold and compares)."""
    _record_affected(before, after, frozenset())


def _moved_routers_hosts(before: CloudSnapshot, after: CloudSnapshot) -> set[str]:
    """The hosts a ports-only change reaches through the routers whose ports are plugged on hosts
    they are not bound to, when their hosts moved: a distributed router lives on the hosts of the
    instances on its subnets, so a port's change can move it to or from a host, and with it its
    ports on its other networks. For each network whose routers' hosts differ between the two
    snapshots: every host with a port on it and the routers' hosts, in both (their br-tun's tunnels
    and l2population flows for it). (The networks of the changed ports themselves are
    :func:`hosts_affected_by_port`'s.)"""
    was, now = _routed_networks(before), _routed_networks(after)
    out: set[str] = set()
    for net in was.keys() | now.keys():
        hosts_was, hosts_now = was.get(net, frozenset()), now.get(net, frozenset())
        if hosts_was != hosts_now:
            out |= hosts_was | hosts_now
            out.update(p.binding_host for c in (before, after) for p in c.ports_on_network(net))
    return out


def _routed_networks(cloud: CloudSnapshot) -> dict[str, frozenset[str]]:
    """Network id -> the hosts on which an HA or distributed router (admin up) with a port on it
    plugs its ports (``l3_ha.ports_plugged_on``, ``dvr.router_hosts``); once per snapshot."""
    return cloud.cached("routed-networks", _routed_networks_of)


def _routed_networks_of(cloud: CloudSnapshot) -> dict[str, frozenset[str]]:
    from neutrino.plan import dvr

    out: dict[str, set[str]] = {}
    for r in cloud.routers:
        if not r.admin_state_up or not (r.ha or r.distributed):
            continue
        if r.ha:
            hosts = {b.host for b in r.bindings}
            ids = [*r.interface_port_ids, *((r.gateway.port_id,) if r.gateway is not None and r.gateway.port_id else ())]
            nets = {p.network_id for p in cloud.ports_of_device(r.id) if p.id in ids}
        else:
            hosts = set(dvr.router_hosts(cloud, r))
            nets = {p.network_id for p in dvr.interfaces(cloud, r)}
        for net in nets:
            out.setdefault(net, set()).update(hosts)
    return {net: frozenset(hosts) for net, hosts in out.items()}


def _ports_changed(before: CloudSnapshot, after: CloudSnapshot) -> list[tuple[str, Port | None, Port | None]] | None:
    """The ports changed between two snapshots (:func:`_changed_ports`), or None when anything else
    the planners read changed too (see :func:`hosts_affected_by_change`) or the ports' order did."""
    if before.deployment != after.deployment or after.deployment.mechanism is Mechanism.NOVA_NETWORK:
        return None
    for name in ("networks", "subnets", "routers", "floating_ips", "security_groups", "agents",
                 "port_forwardings"):
        if getattr(before, name) != getattr(after, name):
            return None
    return _changed_ports(before.ports, after.ports, once=True)  # (None: in another order, or an id twice)


_PORT_ID = operator.attrgetter("id")


def _changed_ports(old_ports: tuple[Port, ...], new_ports: tuple[Port, ...], *, once: bool = False
                   ) -> list[tuple[str, Port | None, Port | None]] | None:
    """(id, port before, port after) of each port altered, removed (None after) or added (None
    before) between two snapshots' ports; None when the ports both have are in another order.

    The ports both have are compared in their order, pair by pair, with no object made per pair:
    a fresh snapshot's ports are new objects, so the comparisons are the floor, and looking each
    port up by id in turn (in a set's order) took as long again (issue #17: 41 -> 25 ms at 10,000
    ports). A port id given twice (never by the server) is compared as a look-up by id sees it, the
    last port of that id; or, with ``once``, gives None (the change of an earlier port of that id
    would not be seen, and what was made of it would be carried: :func:`carry_from`)."""
    old_ids = list(map(_PORT_ID, old_ports))
    new_ids = list(map(_PORT_ID, new_ports))
    in_old, in_new = set(old_ids), set(new_ids)
    if len(in_old) < len(old_ids) or len(in_new) < len(new_ids):  # an id given twice
        if once:
            return None
        old = dict(zip(old_ids, old_ports, strict=True))
        new = dict(zip(new_ids, new_ports, strict=True))
        if [i for i in old if i in new] != [i for i in new if i in old]:
            return None
        changed: list[tuple[str, Port | None, Port | None]] = [
            (i, was, new.get(i)) for i, was in old.items() if was != new.get(i)]
        return changed + [(i, None, now) for i, now in new.items() if i not in old]
    n = min(len(old_ids), len(new_ids))
    if old_ids[:n] == new_ids[:n]:  # the same ports, some added or removed at the end (the common case)
        olds, news = old_ports[:n], new_ports[:n]
        gone, came = old_ids[n:], new_ids[n:]
    else:
        olds = tuple(p for i, p in zip(old_ids, old_ports, strict=True) if i in in_new)
        news = tuple(p for i, p in zip(new_ids, new_ports, strict=True) if i in in_old)
        if list(map(_PORT_ID, olds)) != list(map(_PORT_ID, news)):
            return None
        gone, came = [i for i in old_ids if i not in in_new], [i for i in new_ids if i not in in_old]
    differ = map(operator.ne, olds, news)
    out: list[tuple[str, Port | None, Port | None]] = [
        (was.id, was, now) for was, now in itertools.compress(zip(olds, news, strict=True), differ)]
    by_old = dict(zip(old_ids, old_ports, strict=True)) if gone else {}
    by_new = dict(zip(new_ids, new_ports, strict=True)) if came else {}
    out += [(i, by_old[i], None) for i in gone]
    return out + [(i, None, by_new[i]) for i in came]


def dvr_hosts_of_network(cloud: CloudSnapshot, network_id: str) -> set[str]:
    """The hosts of the distributed routers with an interface on ``network_id`` (their qrouter-
    namespaces hold a neighbour entry per port of the network, their br-int a DVR flow per port)."""
    from neutrino.plan import dvr
    out: set[str] = set()
    for router in dvr.distributed_routers(cloud):
        if any(p.network_id == network_id for p in dvr.interfaces(cloud, router)):
            out |= set(dvr.router_hosts(cloud, router))
    return out
