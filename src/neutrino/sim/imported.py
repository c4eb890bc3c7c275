"""A :class:`~neutrino.sim.world.World` from captures alone: the hosts of an imported deployment,
with no cloud snapshot to say what is where.

What the planned cloud's world (:func:`neutrino.sim.cloud.world_of`) reads from the snapshot is read
here from what the hosts printed:

* **instances**: each root-namespace ``tap…`` or ``vnet…`` device that is a bridge's port and is no
  agent's veth into a namespace (Grizzly's ``tapX`` for ``ns-X``/``qr-X``/``qg-X``). Its MAC is the
  one the dnsmasq host files, the port's anti-spoofing rules (``--mac-source``) or its flows
  (``dl_src``) give for it, else the tap's own with the first byte ``fa`` (libvirt makes the tap's
  ``fe:…`` of the instance's ``fa:…``); its address comes from the dnsmasq host files (by MAC), the
  anti-spoofing rules (``-s ADDRESS/32``) or the flows (``nw_src``/``arp_spa``). A guest is named by
  its tap (``tap61e31514-15``: the port's id starts ``61e31514-15``), or ``HOST-vnetN`` for
  libvirt's ``vnetN``, which are per host. Its host is the host whose device it is.
* **tunnels**: each host's tunnel address, from its tunnel ports' ``local_ip``, else from the other
  hosts' ``remote_ip`` that point at it (the one address all of them name and none of its own
  tunnels does).
* **provider wires**: the hosts' NICs, as for any host state (:mod:`neutrino.sim.topology`); a NIC
  that is a veth into another namespace, and an OVS bridge that only splits a NIC into tagged
  internal ports, are read as the NIC and its VLAN devices (:func:`as_wired`: a host made of
  namespaces, as the Linux backend builds one).
* **external networks**: each router namespace's default route, ``via`` an address on its gateway
  device's subnet, through the OVS bridge that device is a port of.
* **uplinks** (nova-network: hosts with ``nova-network``/``nova-compute`` chains): the gateway of
  each host's default route on its device's subnet, with the floating addresses (the /32s on that
  device) on the same wire.

What was not captured is said precisely (:func:`missing_captures`): "compute1's iptables were not
captured: the security-group decision is unknown". A trace through it fails with that sentence
unless the user assumes something for it (:data:`ASSUMPTIONS`, ``--assume iptables-accept``);
nothing is ever assumed silently.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from neutrino.errors import InvalidInput
from neutrino.host.iproute_link import Link
from neutrino.host.iptables import Ruleset, format_rule
from neutrino.host.ovsdb import Bridge, OvsdbShow
from neutrino.host.state import ROOT, HostState
from neutrino.sim.packets import Mac
from neutrino.sim.trace import DropReason, Trace
from neutrino.sim.world import OUTSIDE, WIRE, ExternalNet, GuestSpec, Uplink, World

# --assume WORD: what a trace may take for state that was not captured
ASSUMPTIONS = {
    "iptables-accept": "a namespace whose iptables were not captured accepts everything (no rules)",
    "flows-normal": "an OVS bridge whose flows were not captured switches normally (one NORMAL flow)",
}

_VETH_PREFIXES = ("ns-", "qr-", "qg-")
_MAC = re.compile(r"--mac-source (?P<mac>[0-9A-Fa-f:]{17})")
_SRC = re.compile(r"(?:^|\s)-s (?P<ip>\d+\.\d+\.\d+\.\d+)/32\b")
_NOVA_JUMP = re.compile(r"-d (?P<ip>\d+\.\d+\.\d+\.\d+)/32 -j nova-compute-inst-(?P<n>\d+)$")


@dataclass(frozen=True, slots=True)
class Missing:
    """A piece of a host that was not captured: ``what`` (``iptables``, ``flows``, ``routes``,
    ``addresses``), where (a namespace, ``""`` for the root one, or a bridge), what is unknown
    without it, and the assumption (``--assume``) that lets a trace go past it, if any."""

    host: str
    what: str
    where: str
    unknown: str
    assumption: str = ""

    def __str__(self) -> str:
        place = ""
        if self.what in ("iptables", "routes", "addresses"):
            place = f" (namespace {self.where})" if self.where else ""
        elif self.what == "flows":
            place = f" ({self.where})"
        if self.what == "instance":
            return f"{self.host}'s devices were not captured (ip addr, brctl show): {self.unknown}"
        noun = {"iptables": "iptables were", "flows": "OpenFlow flows were", "routes": "routes were",
                "addresses": "addresses were"}.get(self.what, f"{self.what} was")
        return f"{self.host}'s {noun} not captured{place}: {self.unknown}"


def _bridges(h: HostState) -> tuple[Bridge, ...]:
    show = h.ovs.show
    if isinstance(show, OvsdbShow):
        return show.bridges
    return show.bridges() if show is not None else ()


def missing_captures(hosts: Iterable[HostState]) -> tuple[Missing, ...]:
    """What each host's captures leave unknown, namespace by namespace and bridge by bridge."""
    out: list[Missing] = []
    for h in hosts:
        names = [ns.name for ns in h.namespaces]
        if ROOT not in names:
            names.insert(0, ROOT)
        for name in names:
            ns = h.namespace(name)
            if ns is None or ns.links is None:
                out.append(Missing(h.name, "addresses", name, "its devices and addresses are unknown"))
            if ns is None or ns.routes is None:
                out.append(Missing(h.name, "routes", name, "where it sends packets is unknown"))
            if ns is None or ns.iptables is None:
                out.append(Missing(h.name, "iptables", name, "the security-group decision is unknown"
                                   if name == ROOT else "its firewall and NAT decisions are unknown",
                                   "iptables-accept"))
        root = h.namespace(ROOT)
        if root is None or root.links is None:
            for br in _bridges(h):
                for p in br.ports:
                    if p.name.startswith(("qvo", "tap", "vnet")) and not _agent_veth(h, p.name):
                        out.append(Missing(h.name, "instance", p.name, f"the instance behind {p.name} on "
                                           f"{br.name} cannot be placed"))
        for br in _bridges(h):
            flows = h.ovs.flows_of(br.name)
            if flows is None or flows.flows is None:
                out.append(Missing(h.name, "flows", br.name, "the OpenFlow decision is unknown", "flows-normal"))
    return tuple(out)


def check_assumptions(words: Iterable[str]) -> frozenset[str]:
    """The ``--assume`` words, checked (a one-line error names the ones known)."""
    out = set()
    for w in words:
        for item in w.split(","):
            item = item.strip()
            if item not in ASSUMPTIONS:
                known = "; ".join(f"{k}: {v}" for k, v in ASSUMPTIONS.items())
                raise InvalidInput(f"--assume {item}: not an assumption neutrino knows ({known})")
            out.add(item)
    return frozenset(out)


# ---------------------------------------------------------------------------- guests


def _ovs_ports(h: HostState) -> dict[str, str]:
    return {p.name: br.name for br in _bridges(h) for p in br.ports}


def _agent_veth(h: HostState, dev: str) -> bool:
    """Grizzly's ``tapX`` on br-int whose other end is ``ns-X``/``qr-X``/``qg-X`` in a namespace."""
    return dev.startswith("tap") and any(ns.name != ROOT and ns.link(pre + dev[3:]) is not None
                                         for ns in h.namespaces for pre in _VETH_PREFIXES)


def _rule_texts(rs: Ruleset | None) -> list[str]:
    if rs is None:
        return []
    return [format_rule(r) for t in rs.tables for c in t.chains for r in c.rules]


def _same_nic(a: str, b: str) -> bool:
    """Two MACs that differ at most in their first byte (libvirt's tap and its instance)."""
    return a.lower()[3:] == b.lower()[3:] and len(a) == len(b) == 17


@dataclass(frozen=True, slots=True)
class _Evidence:
    leases: tuple[tuple[str, IPv4Address, str], ...]  # (mac, address, hostname) from dnsmasq host files
    rules: tuple[str, ...]  # the host's root-namespace iptables rules, as -A lines
    flows: tuple[str, ...]  # the host's flows, as dump-flows prints them (without stats)


def _evidence(h: HostState, every: Iterable[HostState]) -> _Evidence:
    from neutrino.host.dnsmasq import parse_hosts_file
    from neutrino.host.openflow import format_flow

    leases = []
    for other in every:  # the DHCP server of an instance is on another host, often
        paths = {p.options.hostsfile for p in other.processes or () if p.options.hostsfile}
        for f in other.files:
            if f.path not in paths and not f.path.startswith("/var/lib/nova/networks/"):
                continue
            try:
                entries = parse_hosts_file(f.text, source=f.path)
            except Exception:  # noqa: BLE001 - a host file neutrino cannot read names nobody
                continue
            leases += [(e.mac.lower(), e.ip, e.hostname) for e in entries if isinstance(e.ip, IPv4Address)]
    root = h.namespace(ROOT)
    rules = tuple(_rule_texts(root.iptables if root is not None else None))
    flows = tuple(format_flow(f.without_stats()) for b in h.ovs.bridges if b.flows is not None
                  for f in b.flows.flows)
    return _Evidence(tuple(leases), rules, flows)


def _port_rules(ev: _Evidence, dev: str) -> list[str]:
    """The anti-spoofing rules of the port behind tap ``dev``: its chains are named after the
    port's id as the tap is (``o61e31514-1``, ``s61e31514-1``)."""
    pid = dev[3:13] if dev.startswith("tap") else ""
    if not pid:
        return []
    return [r for r in ev.rules if re.match(rf"-A \S+-[os]{re.escape(pid)}\b", r)]


def _guest_of(h: HostState, lk: Link, ev: _Evidence, in_port: Mapping[str, int]) -> tuple[str, IPv4Address | None]:
    """The instance behind tap/vnet ``lk``: its MAC and fixed address, from the evidence."""
    own = (lk.mac or "").lower()
    rules = _port_rules(ev, lk.name)
    mac = next((m.group("mac").lower() for r in rules for m in [_MAC.search(r)] if m), None)
    if mac is None and own:
        mac = next((m for m, _, _ in ev.leases if _same_nic(m, own)), None)
    if mac is None and own and lk.name in in_port:
        mac = next((m.group(1).lower() for f in ev.flows if f"in_port={in_port[lk.name]}," in f
                    for m in [re.search(r"dl_src=([0-9a-f:]{17})", f)] if m and _same_nic(m.group(1), own)), None)
    if mac is None:
        mac = ("fa" + own[2:]) if own else "fa:16:3e:00:00:00"
    ip = next((a for m, a, _ in ev.leases if m == mac), None)
    if ip is None:
        ip = next((IPv4Address(m.group("ip")) for r in rules for m in [_SRC.search(r)] if m and m.group("ip") != "0.0.0.0"), None)
    if ip is None and lk.name in in_port:
        ip = next((IPv4Address(m.group(1)) for f in ev.flows if f"in_port={in_port[lk.name]}," in f
                   for m in [re.search(r"(?:nw_src|arp_spa)=(\d+\.\d+\.\d+\.\d+)(?:[,\s]|$)", f)] if m), None)
    return mac, ip


def _guest_name(host: str, dev: str) -> str:
    return dev if dev.startswith("tap") else f"{host}-{dev}"


def guests_from_captures(hosts: tuple[HostState, ...]) -> tuple[GuestSpec, ...]:
    """Every instance the hosts show (see the module's text), in host order, then device order."""
    out: list[GuestSpec] = []
    numbers: dict[IPv4Address, int] = {}
    for h in hosts:
        root = h.namespace(ROOT)
        for r in _rule_texts(root.iptables if root is not None else None):
            m = _NOVA_JUMP.search(r)
            if m:
                numbers[IPv4Address(m.group("ip"))] = int(m.group("n"))
    for h in hosts:
        root = h.namespace(ROOT)
        if root is None:
            continue
        ovs = _ovs_ports(h)
        lbr = {d for b in h.linux_bridges or () for d in b.interfaces}
        in_port = {}
        for b in h.ovs.bridges:
            for p in b.ports.ports if b.ports is not None else ():
                if isinstance(p.number, int):
                    in_port[p.name] = p.number
        ev: _Evidence | None = None
        for lk in root.links or ():
            dev = lk.name
            if not dev.startswith(("tap", "vnet")) or _agent_veth(h, dev):
                continue
            if dev not in ovs and dev not in lbr and lk.master is None:
                continue
            ev = ev or _evidence(h, hosts)
            mac, ip = _guest_of(h, lk, ev, in_port)
            n = numbers.get(ip, len(out) + 1) if ip is not None else len(out) + 1
            out.append(GuestSpec(_guest_name(h.name, dev), h.name, dev, mac, ip, n))
    return tuple(out)


# ---------------------------------------------------------------------------- tunnels


def _tunnel_ports(h: HostState) -> list[tuple[IPv4Address | None, IPv4Address]]:
    out = []
    for br in _bridges(h):
        for p in br.ports:
            for i in p.interfaces:
                if i.type not in ("gre", "vxlan", "geneve"):
                    continue
                remote, local = i.option("remote_ip"), i.option("local_ip")
                try:
                    r = ipaddress.ip_address(remote or "")
                    lo = ipaddress.ip_address(local) if local else None
                except ValueError:
                    continue
                if isinstance(r, IPv4Address):
                    out.append((lo if isinstance(lo, IPv4Address) else None, r))
    return out


def _addresses(h: HostState) -> set[IPv4Address]:
    root = h.namespace(ROOT)
    return {a.interface.ip for lk in (root.links or ()) if root is not None for a in lk.addresses
            if isinstance(a.interface, IPv4Interface)} if root is not None else set()


def tunnel_ips_from_captures(hosts: tuple[HostState, ...]) -> dict[str, IPv4Address]:
    """Each tunnelling host's tunnel address: its tunnel ports' ``local_ip``; else the address
    the other hosts' tunnels point at that none of its own does (and, when it has addresses,
    one of them)."""
    ports = {h.name: _tunnel_ports(h) for h in hosts}
    out: dict[str, IPv4Address] = {}
    for h in hosts:
        local = {lo for lo, _ in ports[h.name] if lo is not None}
        if len(local) == 1:
            out[h.name] = next(iter(local))
    for _ in range(len(hosts)):
        for h in hosts:
            if h.name in out or not ports[h.name]:
                continue
            mine = {r for _, r in ports[h.name]}
            theirs = {r for n, ps in ports.items() if n != h.name for _, r in ps}
            taken = {ip for n, ip in out.items() if n != h.name}
            cands = theirs - mine - taken
            own = _addresses(h)
            if own & cands:
                cands &= own
            if len(cands) == 1:
                out[h.name] = next(iter(cands))
    return out


# ---------------------------------------------------------------------------- the outside


def externals_from_captures(hosts: Iterable[HostState]) -> tuple[ExternalNet, ...]:
    """The external gateway behind each router namespace's default route (see the module's text)."""
    out: list[ExternalNet] = []
    for h in hosts:
        ovs = _ovs_ports(h)
        for ns in h.namespaces:
            if ns.name == ROOT or not ns.name.startswith("qrouter-"):
                continue
            for r in ns.routes or ():
                if r.dst is not None and r.dst.prefixlen or not isinstance(r.via, IPv4Address) or not r.dev:
                    continue
                if r.table not in (None, "main"):
                    continue
                lk = ns.link(r.dev)
                net = next((a.interface.network for a in lk.addresses if isinstance(a.interface, IPv4Interface)
                            and r.via in a.interface.network), None) if lk is not None else None
                bridge = ovs.get(r.dev) or ovs.get("tap" + r.dev[3:])
                if net is None or bridge is None:
                    continue
                bridge = _physical_side(h, bridge)
                gw = IPv4Interface(f"{r.via}/{net.prefixlen}")
                if not any(e.gateway == gw and e.host == h.name for e in out):
                    out.append(ExternalNet(h.name, bridge, gw))
    return tuple(out)


def _physical_side(h: HostState, bridge: str) -> str:
    """The bridge the external wire is on: ``bridge`` itself, or when it is the integration bridge
    (the gateway port on br-int, today's agents), the one physical bridge patched to it (br-ex)."""
    by_name = {b.name: b for b in _bridges(h)}
    br = by_name.get(bridge)
    if br is None:
        return bridge
    peers = []
    for p in br.ports:
        for i in p.interfaces:
            if i.type == "patch":
                other = next((b for b in by_name.values() for q in b.ports if q.name == i.option("peer")), None)
                if other is not None and other.name != bridge and not any(
                        j.type in ("gre", "vxlan", "geneve") for q in other.ports for j in q.interfaces):
                    peers.append(other.name)
    if not peers:
        return bridge
    return "br-ex" if "br-ex" in peers else peers[0] if len(peers) == 1 else bridge


def _nova_network(hosts: Iterable[HostState]) -> bool:
    for h in hosts:
        root = h.namespace(ROOT)
        for t in root.iptables.tables if root is not None and root.iptables is not None else ():
            if any(c.name.startswith(("nova-network-", "nova-compute-")) for c in t.chains):
                return True
    return False


def uplinks_from_captures(hosts: tuple[HostState, ...]) -> tuple[Uplink, ...]:
    """nova-network: the upstream gateway of each host's default route, on its device's segment;
    the floating addresses the hosts hold there (/32s) are on the same wire."""
    if not _nova_network(hosts):
        return ()
    out: list[Uplink] = []
    for host in hosts:
        root = host.namespace(ROOT)
        if root is None:
            continue
        for r in root.routes or ():
            if (r.dst is not None and r.dst.prefixlen) or not isinstance(r.via, IPv4Address) or r.dev is None:
                continue
            lk = root.link(r.dev)
            if lk is None:
                continue
            net = next((a.interface.network for a in lk.addresses if isinstance(a.interface, IPv4Interface)
                        and r.via in a.interface.network), None)
            if net is None:
                continue
            gw = IPv4Interface(f"{r.via}/{net.prefixlen}")
            pools = tuple(sorted({a.interface.network for h in hosts for ns in [h.namespace(ROOT)] if ns is not None
                                  for x in [ns.link(r.dev)] if x is not None for a in x.addresses
                                  if isinstance(a.interface, IPv4Interface) and a.interface.network.prefixlen == 32
                                  and a.interface.ip not in net}))
            if not any(u.segment == r.dev and u.gateway == gw for u in out):
                out.append(Uplink(r.dev, gw, internet=gw.ip.is_global, on_link=pools))
    return tuple(out)


def network_hosts_from_captures(hosts: Iterable[HostState]) -> frozenset[str]:
    """Hosts that run Neutron's routers or DHCP servers (namespaces ``qrouter-``/``qdhcp-``)."""
    return frozenset(h.name for h in hosts if any(ns.name.startswith(("qrouter-", "qdhcp-")) for ns in h.namespaces))


def _underlay_mtu(hosts: Iterable[HostState], tunnel_ips: Mapping[str, IPv4Address]) -> int:
    for h in hosts:
        root = h.namespace(ROOT)
        ip = tunnel_ips.get(h.name)
        for lk in root.links or () if root is not None and ip is not None else ():
            if lk.mtu and any(a.interface.ip == ip for a in lk.addresses):
                return lk.mtu
    return 1500


# ---------------------------------------------------------------------------- the wires

_PHYSICAL = ("eth", "em", "en", "bond")


def _normal_only(h: HostState, bridge: str) -> bool:
    flows = h.ovs.flows_of(bridge)
    if flows is None or flows.flows is None:
        return True
    from neutrino.host.openflow import format_flow

    return all(format_flow(f.without_stats()).strip().endswith("actions=NORMAL") for f in flows.flows.flows)


def as_wired(h: HostState) -> HostState:
    """``h`` with its wires to other hosts in the forms the topology reads (nothing else changes):

    * a NIC that is a veth whose other end is in another namespace (``eth0@if3 … link-netns …``:
      a host made of namespaces, as the Linux backend's) is the host's NIC on its wire;
    * an OVS bridge that only splits a NIC into VLANs (one NIC port, internal ports with a ``tag``,
      switching normally: an OVS stand-in for ``vlanNNN@eth0``) is read as those VLAN devices.
    """
    from dataclasses import replace

    from neutrino.host.iproute_link import LinkDetails, LinkKind

    root = h.namespace(ROOT)
    if root is None or root.links is None:
        return h
    links = {lk.name: lk for lk in root.links}
    for name, lk in list(links.items()):
        if lk.kind is LinkKind.VETH and name.startswith(_PHYSICAL) and (
                lk.link_netns or (lk.peer or "").startswith("if")) and lk.master is None:
            links[name] = replace(lk, kind=None)
    show = h.ovs.show
    dropped: set[str] = set()
    if isinstance(show, OvsdbShow):
        for br in show.bridges:
            others = [p for p in br.ports if p.name != br.name]
            nics = [p for p in others if not any(i.type for i in p.interfaces) and p.name.startswith(_PHYSICAL)]
            tagged = [p for p in others if p.tag is not None and all(i.type == "internal" for i in p.interfaces)]
            if len(nics) != 1 or not tagged or len(nics) + len(tagged) != len(others) \
                    or not _normal_only(h, br.name) or any(p.name not in links for p in tagged):
                continue
            nic = nics[0].name
            for p in tagged:
                lk = links[p.name]
                details = replace(lk.details or LinkDetails(), vlan_id=p.tag)
                links[p.name] = replace(lk, kind=LinkKind.VLAN, peer=nic, details=details)
            if nic in links:
                links[nic] = replace(links[nic], master=None, kind=None)
            dropped.add(br.name)
    if not dropped and all(links[lk.name] is lk for lk in root.links):
        return h
    h = h.with_namespace(replace(root, links=tuple(links[lk.name] for lk in root.links)))
    if dropped and isinstance(show, OvsdbShow):
        ovs = replace(h.ovs, show=replace(show, bridges=tuple(b for b in show.bridges if b.name not in dropped)),
                      bridges=tuple(b for b in h.ovs.bridges if b.bridge not in dropped))
        h = replace(h, ovs=ovs)
    return h


# ---------------------------------------------------------------------------- the world


class ImportedWorld(World):
    """A world of imported hosts: a probe whose packet goes through state that was not captured
    fails with what is missing, unless the user assumed something for it (``assume``)."""

    imported = True

    def __init__(self, hosts: tuple[HostState, ...], *, missing: tuple[Missing, ...] = (),
                 assume: Collection[str] = (), **kw: object) -> None:
        super().__init__(hosts, **kw)  # type: ignore[arg-type]
        self.missing = missing
        self.assume = frozenset(assume)

    def probe(self, src: str, dst: str, *, proto: str = "icmp", dport: int = 22, ident: int = 41000,
              src_ip: str | IPv4Address | None = None, src_mac: str | Mac | None = None,
              dst_mac: str | Mac | None = None, sport: int | None = None, tcp_flags: str | None = None,
              at: str | None = None, vlan: int | None = None, size: int | None = None) -> Trace:
        """:meth:`World.probe`, refused with what is missing when the packet went through state
        that was not captured (and not assumed), or when the sender got no address at boot."""
        guest = self.guests.get(src)
        if guest is not None and guest.ip is None and proto not in ("dhcp", "arp") and src_ip is None:
            spec = self.specs[src]
            unknown = [str(m) for m in self.missing if m.what != "addresses"]
            said = f"; not captured: {'; '.join(unknown[:3])}" + (" ..." if len(unknown) > 3 else "") \
                if unknown else ""
            raise InvalidInput(f"{src} ({spec.device} on {spec.host}) got no address: its DHCP exchange found no "
                               f"answer in the captured hosts (see: neutrino trace {src} - --proto dhcp){said}")
        trace = super().probe(src, dst, proto=proto, dport=dport, ident=ident, src_ip=src_ip, src_mac=src_mac,
                              dst_mac=dst_mac, sport=sport, tcp_flags=tcp_flags, at=at, vlan=vlan, size=size)
        self.check(trace)
        return trace

    def unknown_on(self, trace: Trace) -> list[Missing]:
        """What the trace went through that was not captured (and not assumed): a namespace's
        iptables (and the root namespace's for a Linux bridge, through br_netfilter), a bridge's
        flows, a namespace's routes where the packet found no route."""
        needs: set[tuple[str, str, str]] = set()
        for t in (trace, trace.reply):  # a flood's copies elsewhere decide nothing of the probe's
            if t is None:
                continue
            dropped_at = t.verdict.where if t.verdict.reason is DropReason.NO_ROUTE else ""
            for hop in t.hops:
                h = self.hosts.get(hop.host) if hop.host not in (OUTSIDE, WIRE) else None
                if h is None:
                    continue
                ns = ROOT if hop.element == "root" else hop.element
                if ns == ROOT or h.namespace(ns) is not None:
                    needs.add((hop.host, "iptables", ns))
                    if dropped_at == f"{hop.host} {hop.element}":
                        needs.add((hop.host, "routes", ns))
                elif any(lb.name == hop.element for lb in h.linux_bridges or ()):
                    needs.add((hop.host, "iptables", ROOT))
                else:
                    needs.add((hop.host, "flows", hop.element))
        return [m for m in self.missing if (m.host, m.what, m.where) in needs
                and not (m.assumption and m.assumption in self.assume)]

    def check(self, trace: Trace) -> None:
        unknown = self.unknown_on(trace)
        if not unknown:
            return
        m = unknown[0]
        more = f" (and {len(unknown) - 1} more piece{'s' if len(unknown) > 2 else ''} not captured)" \
            if len(unknown) > 1 else ""
        hint = f"; give --assume {m.assumption} to trace as if {ASSUMPTIONS[m.assumption]}" if m.assumption else \
            "; capture it again (tools/neutrino-collect) to trace through it"
        raise InvalidInput(f"{m}{more}{hint}")

    def not_captured(self) -> list[str]:
        return [str(m) for m in self.missing]


def world_from_captures(hosts: Iterable[HostState], *, assume: Collection[str] = ()) -> ImportedWorld:
    """The world of ``hosts`` (imported), with everything the simulator needs read from them."""
    hosts = tuple(as_wired(h) for h in hosts)
    if not hosts:
        raise InvalidInput("no imported hosts here: run 'neutrino import DIR' first")
    tunnel_ips = tunnel_ips_from_captures(hosts)
    return ImportedWorld(hosts, missing=missing_captures(hosts), assume=check_assumptions(assume),
                         tunnel_ips=dict(tunnel_ips), guests=guests_from_captures(hosts),
                         externals=externals_from_captures(hosts), network_hosts=network_hosts_from_captures(hosts),
                         uplinks=uplinks_from_captures(hosts), underlay_mtu=_underlay_mtu(hosts, tunnel_ips))


def guest_for_device(world: World, host: str, device: str) -> str | None:
    """The guest behind ``device`` of ``host`` (to match an imported world's guests to servers)."""
    return next((g.name for g in world.specs.values() if g.host == host and g.device == device), None)


__all__ = ["ASSUMPTIONS", "ImportedWorld", "Missing", "as_wired", "check_assumptions", "externals_from_captures",
           "guest_for_device", "guests_from_captures", "missing_captures", "network_hosts_from_captures",
           "tunnel_ips_from_captures", "uplinks_from_captures", "world_from_captures"]
