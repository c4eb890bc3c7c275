"""The OpenStack objects behind a trace, by name and id.

The planners stamp every rule with why it exists (``sg-rule <id> via plan_firewall``,
``floatingip <id> via plan_l3``, ``server <id> via ...``): :class:`Names` turns those into what a
user knows (``security group 'default' (78378626-…) rule e6cb6402-…: ingress tcp 22 from any``),
and :func:`annotate` puts the names on a :class:`~neutrino.sim.trace.Trace`: each step's object,
each hop's device (the instance's port, the router, the network's DHCP port) and the verdict
(``no rule of security group 'default' (…) allows ingress tcp/23 to port … of instance cirros``).
The planners' function names never reach the user.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from neutrino.services.snapshot import CloudSnapshot, Port, SecurityGroupRule
from neutrino.sim.trace import DropReason, Hop, Step, StepKind, Trace, Verdict

if TYPE_CHECKING:
    from neutrino.host.state import HostState
    from neutrino.sim.world import GuestSpec, World

_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# patterns are compiled where used (re keeps them): importing the module compiles none
_ORIGIN = rf"^(?P<what>.*?)\s*(?P<id>{_ID})?(?: via \S+)?$"
_DEVICE_PREFIXES = ("tap", "qvo", "qvb", "qbr", "qr-", "qg-", "ns-", "sg-", "fg-", "rfp-", "qvm")
_CHAIN_PORT = r"-(?P<dir>[io])(?P<id>[0-9a-f]{8}-[0-9a-f]{1,2})\b"


def describe_rule(rule: SecurityGroupRule) -> str:
    proto = rule.protocol or "any protocol"
    if rule.port_range_min is not None:
        ports = str(rule.port_range_min) if rule.port_range_min == rule.port_range_max else \
            f"{rule.port_range_min}-{rule.port_range_max}"
        proto = f"{proto} {ports}"
    if rule.remote_group_id:
        peer = f"group {rule.remote_group_id}"
    else:
        peer = str(rule.remote_ip_prefix) if rule.remote_ip_prefix is not None else "any address"
    way = "from" if rule.direction == "ingress" else "to"
    return f"{rule.direction} {rule.ethertype} {proto} {way} {peer}"


class Names:
    """Names and ids of a cloud's objects, for the strings the planners leave behind."""

    def __init__(self, cloud: CloudSnapshot, flows: Mapping[tuple[str, str], str] | None = None) -> None:
        """``flows``: each planned flow's object, by (host, flow text as dump-flows prints it)."""
        self.cloud = cloud
        self.flows = dict(flows or {})
        self._ports_by_prefix = {p.id[:11]: p for p in cloud.ports}
        self._rules = {r.id: (g, r) for g in cloud.security_groups for r in g.rules}
        self._groups = {g.id: g for g in cloud.security_groups}
        self._servers = {s.id: s for s in cloud.servers}
        self._networks = {n.id: n for n in cloud.networks}
        self._routers = {r.id: r for r in cloud.routers}
        self._fips = {f.id: f for f in cloud.floating_ips}
        self._subnets = {s.id: s for s in cloud.subnets}

    # -- single objects

    def group(self, gid: str) -> str:
        g = self._groups.get(gid)
        return f"security group '{g.name}' ({gid})" if g is not None else f"security group {gid}"

    def network(self, nid: str) -> str:
        n = self._networks.get(nid)
        if n is None:
            return f"network {nid}"
        subs = [self._subnets[s] for s in n.subnet_ids if s in self._subnets]
        sub = ", ".join(f"subnet '{s.name}' {s.cidr} ({s.id})" for s in subs)
        return f"network '{n.name}' ({nid})" + (f" {sub}" if sub else "")

    def router(self, rid: str) -> str:
        r = self._routers.get(rid)
        return f"router '{r.name}' ({rid})" if r is not None else f"router {rid}"

    def server(self, sid: str) -> str:
        s = self._servers.get(sid)
        return f"instance '{s.name}' ({sid})" if s is not None else f"instance {sid}"

    def floating_ip(self, fid: str) -> str:
        f = self._fips.get(fid)
        if f is None:
            return f"floating IP {fid}"
        to = f" -> {f.fixed_ip_address}" if f.fixed_ip_address else ""
        return f"floating IP {f.floating_ip_address}{to} ({fid})"

    def sg_rule(self, rid: str) -> str:
        found = self._rules.get(rid)
        if found is None:
            return f"security group rule {rid}"
        g, r = found
        return f"{self.group(g.id)} rule {rid}: {describe_rule(r)}"

    def port(self, p: Port) -> str:
        owner = p.device_owner
        ips = ",".join(str(f.ip_address) for f in p.fixed_ips)
        net = self._networks.get(p.network_id)
        on = f" on network '{net.name}'" if net is not None else ""
        if owner.startswith("compute:"):
            return f"port {p.id} ({ips}) of {self.server(p.device_id)}{on}"
        if owner in ("network:router_interface", "network:router_interface_distributed",
                     "network:ha_router_replicated_interface"):
            return f"port {p.id} ({ips}): interface of {self.router(p.device_id)}{on}"
        if owner == "network:router_gateway":
            return f"port {p.id} ({ips}): gateway of {self.router(p.device_id)}{on}"
        if owner == "network:dhcp":
            return f"port {p.id} ({ips}): DHCP{on}"
        return f"port {p.id} ({ips}){on}"

    def port_by_id(self, pid: str) -> str:
        p = self._ports_by_prefix.get(pid[:11])
        return self.port(p) if p is not None else f"port {pid}"

    def port_of_device(self, dev: str) -> Port | None:
        for pre in _DEVICE_PREFIXES:
            if dev.startswith(pre) and len(dev) > len(pre):
                return self._ports_by_prefix.get(dev[len(pre):len(pre) + 11])
        return None

    def port_of_prefix(self, prefix: str) -> Port | None:
        return next((p for p in self.cloud.ports if p.id.startswith(prefix)), None)

    # -- the planners' strings

    def describe(self, origin: str) -> str:
        """``sg-rule <id> via plan_firewall`` -> the rule, its group and what it allows."""
        if not origin:
            return ""
        m = re.compile(_ORIGIN).match(origin)
        what, oid = (m.group("what"), m.group("id")) if m else (origin, None)
        if oid is None and what.startswith("agent "):
            return f"the agent's own plumbing ({what[len('agent '):]}), no OpenStack object"
        if oid is None and what.endswith(" iptables manager"):
            return f"{what.split()[0]}'s iptables skeleton"
        if oid is None:
            return {"sg-fallback": "no security-group rule matched (the fallback drop)",
                    "sg-chain": "security groups (the per-port dispatch chain)"}.get(what, what)
        kind = what.split()[-1] if what else ""
        lead = what[: -len(kind)].strip() if kind else ""
        if kind == "sg-rule":
            text = self.sg_rule(oid)
        elif kind == "port":
            text = self.port_by_id(oid)
        elif kind == "network":
            text = self.network(oid)
        elif kind == "router":
            text = self.router(oid)
        elif kind == "floatingip":
            text = self.floating_ip(oid)
        elif kind == "server":
            text = self.server(oid)
        else:
            text = f"{what} {oid}".strip()
            lead = ""
        return f"{lead} {text}".strip()

    def element(self, hop: Hop) -> str:
        """The object a hop's element or device stands for."""
        el = hop.element
        if el.startswith("qrouter-"):
            return self.router(el[len("qrouter-"):])
        if el.startswith("qdhcp-"):
            return "DHCP server of " + self.network(el[len("qdhcp-"):])
        p = self.port_of_device(hop.device) or self.port_of_device(el)
        if p is not None:
            return self.port(p)
        server = next((s for s in self.cloud.servers if s.name == el), None)
        if server is not None:
            return self.server(server.id)
        return ""

    def allowed_by(self, text: str) -> str:
        """The security-group rule behind an iptables rule of a port's ``i``/``o`` chain (by what it
        matches: protocol, ports, remote prefix or group), described; '' when it is not one."""
        words = text.split()
        if len(words) < 2 or words[0] != "-A":
            return ""
        m = re.compile(_CHAIN_PORT).search(words[1])
        port = self.port_of_prefix(m.group("id")) if m else None
        if m is None or port is None:
            return ""
        if "--state" in text or "--ctstate" in text:
            return f"an answer to a connection {self.port(port)} is part of (conntrack)"
        direction = "ingress" if m.group("dir") == "i" else "egress"
        peer_flag = "-s" if direction == "ingress" else "-d"
        for gid in port.security_group_ids:
            g = self._groups.get(gid)
            for r in g.rules if g is not None else ():
                if r.direction != direction or r.ethertype != "IPv4":
                    continue
                if _rule_matches(r, words, peer_flag):
                    return f"allowed by {self.sg_rule(r.id)}"
        return ""

    def groups_of(self, p: Port) -> str:
        if not p.security_group_ids:
            return "no security group"
        return ", ".join(self.group(g) for g in p.security_group_ids)


def _rule_matches(r: SecurityGroupRule, words: list[str], peer_flag: str) -> bool:
    def value(flag: str) -> str | None:
        return words[words.index(flag) + 1] if flag in words[:-1] else None

    proto = value("-p")
    if (r.protocol or None) != proto and not (r.protocol is None and proto in (None, "all")):
        return False
    dport = value("--dport") or value("--dports")
    if r.port_range_min is None:
        if dport is not None and r.protocol not in ("icmp", "1"):
            return False
    else:
        want = str(r.port_range_min) if r.port_range_min == r.port_range_max else \
            f"{r.port_range_min}:{r.port_range_max}"
        if dport != want:
            return False
    peer = value(peer_flag)
    if r.remote_group_id:
        return peer is not None or "--match-set" in words
    if r.remote_ip_prefix is not None and str(r.remote_ip_prefix) not in ("0.0.0.0/0",):
        return peer == str(r.remote_ip_prefix)
    return peer is None and "--match-set" not in words


_NOVA_JUMP = r"^-A \S+ -d (?P<ip>[0-9.]+)/32 -j (?P<chain>nova-compute-inst-\d+)$"


def _nova_fallback(names: Names, trace: Trace, v: Verdict) -> Verdict | None:
    """nova-network: the instance's chain (``nova-compute-inst-N``, jumped to by its address),
    its groups, network and bridge."""
    hop = next((h for h in trace.hops if f"{h.host} {h.element}" == v.where), None)
    jumps = [m for st in hop.steps for m in [re.compile(_NOVA_JUMP).match(st.text)] if m] if hop is not None else []
    if not jumps:
        return None
    ip, chain = jumps[-1].group("ip"), jumps[-1].group("chain")
    port = next((p for p in names.cloud.ports if any(str(f.ip_address) == ip for f in p.fixed_ips)), None)
    if port is None:
        return None
    from neutrino.plan.nova_network import nova_networks

    bridge = next((n.bridge for n in nova_networks(names.cloud) if n.network.id == port.network_id), "")
    on = f", bridge {bridge}" if bridge else ""
    return replace(v, obj=f"no rule of {names.groups_of(port)} allows it into {names.port(port)} "
                          f"(its chain {chain}{on})")


_PORT_ORIGIN = rf"^port (?P<id>{_ID})\b"


def ovs_firewall_port(names: Names, hop: Hop) -> tuple[Port | None, str]:
    """The openvswitch firewall driver: the port whose flows in br-int dropped the packet (the last
    flow of the hop a port's rules wrote) and the direction (tables 81/82 filter what goes in to
    the port, 71/72 what comes out of it)."""
    if hop.element != "br-int":
        return None, ""
    port: Port | None = None
    for st in hop.steps:
        if st.kind is not StepKind.FLOW:
            continue
        origin = names.flows.get((hop.host, st.text)) or st.obj
        m = re.compile(_PORT_ORIGIN).match(origin or "")
        found = names.port_of_prefix(m.group("id")) if m else None
        port = found or port
    tables = [st.text.split(",")[0] for st in hop.steps if st.kind is StepKind.FLOW]
    direction = "ingress" if any(t in ("table=81", "table=82") for t in tables) else \
        "egress" if any(t in ("table=71", "table=72") for t in tables) else ""
    return (port, direction) if direction else (None, "")


def _fallback_verdict(names: Names, trace: Trace, v: Verdict) -> Verdict:
    """A drop by the fallback rule: which port's chain it was, and that no rule of its groups
    allows the packet in that direction."""
    if isinstance(names, ImportedNames):
        return names.fallback(trace, v)
    nova = _nova_fallback(names, trace, v)
    if nova is not None:
        return nova
    jumps = [m for h in trace.hops if f"{h.host} {h.element}" == v.where for st in h.steps
             for m in re.compile(_CHAIN_PORT).finditer(st.text)]
    port = names.port_of_prefix(jumps[-1].group("id")) if jumps else None
    hop = next((h for h in trace.hops if f"{h.host} {h.element}" == v.where), None)
    if port is None and hop is not None:
        fw_port, way = ovs_firewall_port(names, hop)
        if fw_port is not None:
            what = f"no rule of {names.groups_of(fw_port)} allows {way}"
            return replace(v, obj=f"{what} {'to' if way == 'ingress' else 'from'} {names.port(fw_port)}")
    if port is None:
        port = names.port_of_device(hop.device) or names.port_of_device(hop.element) if hop else None
    if port is None:
        return replace(v, obj=names.describe(v.obj))
    direction = "ingress" if jumps and jumps[-1].group("dir") == "i" else "egress" if jumps else "the packet"
    what = f"no rule of {names.groups_of(port)} allows {direction}" if jumps else \
        f"no rule of {names.groups_of(port)} allows it"
    whose = names.port(port)
    if direction == "ingress":
        return replace(v, obj=f"{what} to {whose}")
    return replace(v, obj=f"{what} from {whose}" if direction == "egress" else f"{what} ({whose})")


def flow_origins(hosts_dir: Path, hosts: Iterable[str]) -> dict[tuple[str, str], str]:
    """The objects the planners recorded for each host's flows (the state folder's
    ``hosts/NAME/origins.json``), by (host, flow text)."""
    out: dict[tuple[str, str], str] = {}
    for host in hosts:
        path = hosts_dir / host / "origins.json"
        try:
            kept = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for o in kept:
            if isinstance(o, dict) and o.get("kind") == "flow" and o.get("obj"):
                out[(host, str(o.get("item")))] = str(o["obj"])
    return out


def origins_of(hosts: Iterable[HostState]) -> dict[tuple[str, str], str]:
    """The same as :func:`flow_origins`, from host states planned in memory."""
    return {(h.name, o.item): o.obj for h in hosts for o in h.origins if o.kind == "flow" and o.obj}


def annotate(trace: Trace, names: Names) -> Trace:
    """``trace`` with each hop's, step's and the verdict's object named."""

    def hop_of(h: Hop) -> Hop:
        steps = []
        for st in h.steps:
            if st.kind is StepKind.FLOW and not st.obj:
                found = names.flows.get((h.host, st.text))
                st = replace(st, obj=found) if found else st
            steps.append(step(st))
        return replace(h, obj=h.obj or names.element(h), steps=tuple(steps))

    def step(st: Step) -> Step:
        # the same answer whether the world kept the planners' origins or was read back from captures
        if st.kind is StepKind.RULE and ("RETURN" in st.detail or "ACCEPT" in st.detail):
            allowed = names.allowed_by(st.text)
            if allowed:
                return replace(st, obj=allowed)
            if st.obj.startswith("sg-rule "):
                return replace(st, obj="allowed by " + names.describe(st.obj))
        return replace(st, obj=names.describe(st.obj)) if st.obj else st

    hops = tuple(hop_of(h) for h in trace.hops)
    out = replace(trace, hops=hops)
    v = trace.verdict
    if v.reason is DropReason.SECURITY_GROUP and ("sg-fallback" in v.detail or v.where.endswith(" br-int")):
        v = _fallback_verdict(names, out, v)
    elif v.obj:
        v = replace(v, obj=names.describe(v.obj))
    elif v.where:
        hop = next((h for h in hops if f"{h.host} {h.element}" == v.where), None)
        if hop is not None and hop.obj:
            v = replace(v, obj=hop.obj)
    reply = annotate(trace.reply, names) if trace.reply is not None else None
    return replace(out, verdict=v, reply=reply)


def empty_cloud() -> CloudSnapshot:
    """A snapshot with no objects: what an imported deployment's names are looked up in."""
    from neutrino.scenarios.model import Deployment

    return CloudSnapshot(Deployment())


_NOVA_CHAIN = r"\b(?P<chain>nova-compute-inst-\d+)\b"


class ImportedNames(Names):
    """Names for an imported deployment, which has no cloud snapshot: a port by its id's first
    characters and its devices (``port 61e31514-15… (tap61e31514-15 on compute)``), a router or a
    DHCP server by its namespace, a security-group decision by the chain and rule that made it."""

    def __init__(self, guests: Iterable[GuestSpec] = ()) -> None:
        super().__init__(empty_cloud())
        self.guests = {(g.host, g.device): g for g in guests}
        self._by_name = {g.name: g for g in guests}

    @classmethod
    def of_world(cls, world: World) -> ImportedNames:
        return cls(world.specs.values())

    @classmethod
    def of_hosts(cls, hosts: Iterable[HostState]) -> ImportedNames:
        from neutrino.sim.imported import guests_from_captures

        return cls(guests_from_captures(tuple(hosts)))

    def _guest_by_prefix(self, prefix: str) -> GuestSpec | None:
        return next((g for g in self.guests.values() if g.device[3:].startswith(prefix[:10])), None)

    def port_named(self, host: str, dev: str) -> str:
        """``port 61e31514-15… (tap61e31514-15 of instance … on compute)`` for a port's device."""
        for pre in _DEVICE_PREFIXES:
            if dev.startswith(pre) and len(dev) > len(pre):
                pid = dev[len(pre):]
                g = self._guest_by_prefix(pid) if pre in ("tap", "qvo", "qvb", "qbr") else None
                on = f"{g.device} of instance {g.name}" if g is not None and g.name != g.device else \
                    g.device if g is not None else dev
                return f"port {pid}… ({on} on {g.host if g is not None else host})"
        g = self.guests.get((host, dev))
        return f"instance {g.name} ({dev} on {host})" if g is not None else ""

    def element(self, hop: Hop) -> str:
        el = hop.element
        if el.startswith("qrouter-"):
            return f"router {el[len('qrouter-'):]} (namespace {el} on {hop.host})"
        if el.startswith("qdhcp-"):
            return f"DHCP server of network {el[len('qdhcp-'):]} (namespace {el} on {hop.host})"
        g = self._by_name.get(el)
        if g is not None:
            return f"instance {g.name} ({g.device} on {g.host})"
        return self.port_named(hop.host, hop.device) or self.port_named(hop.host, el)

    def allowed_by(self, text: str) -> str:
        words = text.split()
        if len(words) < 2 or words[0] != "-A":
            return ""
        m = re.compile(_CHAIN_PORT).search(words[1])
        nova = re.compile(_NOVA_CHAIN).search(words[1])
        if m is None and nova is None:
            return ""
        whose = self._chain_port(m.group("id")) if m else f"an instance's chain {words[1]}"
        if "--state" in text or "--ctstate" in text:
            return f"an answer to a connection {whose} is part of (conntrack)"
        return f"allowed by '{text}' ({whose})"

    def _chain_port(self, pid: str) -> str:
        g = self._guest_by_prefix(pid)
        return f"port {pid}… ({g.device} on {g.host})" if g is not None else f"port {pid}…"

    def fallback(self, trace: Trace, v: Verdict) -> Verdict:
        """A drop at the end of a port's chain: which chain, which port, the rule that dropped it."""
        hop = next((h for h in trace.hops if f"{h.host} {h.element}" == v.where), None)
        texts = [st.text for st in hop.steps] if hop is not None else []
        port_chain = re.compile(_CHAIN_PORT)
        chains = [(m, t) for t in texts for m in [port_chain.search(t.split()[1] if t.startswith("-A ") else "")]
                  if m]
        drop = next((t for t in reversed(texts) if t.endswith("-j DROP")), "")
        rule = f"; the rule that dropped it: '{drop}'" if drop else ""
        if chains:
            m, t = chains[-1]
            chain = t.split()[1]
            direction = "ingress" if m.group("dir") == "i" else "egress"
            to = "to" if direction == "ingress" else "from"
            return replace(v, obj=f"no rule of chain {chain} allows {direction} {to} "
                                  f"{self._chain_port(m.group('id'))}{rule}")
        nova = next((m.group("chain") for t in texts for m in [re.compile(_NOVA_CHAIN).search(t)] if m), None)
        if nova is not None:
            return replace(v, obj=f"no rule of chain {nova} (an instance's security groups) allows it{rule}")
        return replace(v, obj=f"dropped by '{drop}'" if drop else v.obj)
