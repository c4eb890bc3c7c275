"""``neutrino diagnose A B``: does the packet get through, and if not, where it stops, why, which
object to change and the command that changes it, each fix checked before it is offered.

A fix is checked by applying it to a copy of the cloud's database through the services layer
(the same code the API runs), planning every host again (:func:`neutrino.plan.plan_cloud`),
booting a world of the new plan (:func:`neutrino.sim.cloud.world_of`) and tracing again. When the
trace after a fix stops somewhere else, the next fix is looked for on the same copy, so the
answer is the whole list of changes that makes the exchange work (or says how far it got).

Fixes known: a security-group rule the packet lacks (``openstack security group rule create``,
nova-network's ``nova secgroup-add-rule``), a subnet with no router interface (``openstack router
add subnet``), a router with no external gateway (``openstack router set --external-gateway``), an
instance without a floating IP (``openstack floating ip set`` / ``create``); and the two the
nova-network seeds explain: VlanManager bootstraps a network's bridge on a compute only when an
instance of that network lands there (seed 003: compute-3 has no br102, so its instances cannot
reach tenant2's; an instance of tenant2 booted there makes one), and in FlatDHCP single-host mode a
compute host has no address on the instances' network, so its own packets leave from its
management address, which the instances' chains do not accept (seed 004: ask from the network
host, the instances' gateway, instead).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

from neutrino.answers.objects import Names, annotate
from neutrino.errors import InvalidInput, NeutrinoError
from neutrino.scenarios.model import Mechanism
from neutrino.services.cloud import Cloud
from neutrino.services.snapshot import CloudSnapshot, Port, Server
from neutrino.sim.ipstack import IpStack, Unreachable
from neutrino.sim.trace import DropReason, Step, StepKind, Trace
from neutrino.sim.world import HOST_PREFIX, OUTSIDE, World

MAX_FIXES = 3


@dataclass(frozen=True)
class Fix:
    obj: str  # the object to change, by name and id
    command: str  # the fix, pasteable
    apply: Callable[[Cloud], None] = field(repr=False, compare=False)
    works: bool | None = None  # after this fix (and the ones before it) the exchange succeeds
    after: str = ""  # the verdict once applied
    source: str = ""  # the fix is to ask from somewhere else: trace from here instead
    why: str = ""  # what the obstacle is, in a learner's words, when the fix knows it best


@dataclass(frozen=True)
class Diagnosis:
    source: str
    destination: str  # as traced (an instance's floating IP when coming from outside)
    proto: str
    dport: int
    trace: Trace
    verdict: str
    where: str = ""
    why: str = ""
    obj: str = ""
    fixes: tuple[Fix, ...] = ()
    checked: bool = True  # False when the cloud's database could not be copied (PostgreSQL)
    reachable: bool = False  # as the cloud is now (``trace`` may be the one after the fixes)

    def text(self) -> str:
        port = 80 if self.proto == "http" else self.dport
        what = self.proto if self.proto == "icmp" else f"{self.proto}/{port}"
        lines = [f"{self.source} -> {self.destination} ({what}): {self.verdict}"]
        if self.reachable:
            return "\n".join(lines) + "\n"
        if self.where:
            lines.append(f"stops at: {self.where}")
        if self.why:
            lines.append(f"why: {self.why}")
        if self.obj:
            lines.append(f"change: {self.obj}")
        if not self.fixes:
            lines.append("fix: none known for this drop")
        for n, fix in enumerate(self.fixes, 1):
            lines.append(f"fix {n}: {fix.command}")
            lines.append(f"   object: {fix.obj}")
            if not self.checked:
                lines.append("   checked: no (only a SQLite cloud can be copied to try it)")
            elif fix.works:
                lines.append("   checked on a copy of the cloud: works"
                             + (f" ({fix.after})" if fix.after else ""))
            else:
                lines.append("   checked on a copy of the cloud: not enough on its own"
                             + (f" ({fix.after})" if fix.after else ""))
        return "\n".join(lines) + "\n"

    def plain(self) -> dict[str, Any]:
        v = self.trace.failure
        return {"source": self.source, "destination": self.destination, "proto": self.proto,
                "dport": self.dport,
                "reachable": self.reachable, "verdict": self.verdict,
                "reason": v.reason.value if v is not None and v.reason else None, "where": self.where,
                "why": self.why, "object": self.obj, "checked": self.checked,
                "fixes": [{"command": f.command, "object": f.obj, "works": f.works, "after": f.after}
                          for f in self.fixes]}


# ---------------------------------------------------------------------------- the cloud's copy


def _sqlite_path(url: str) -> Path | None:
    for prefix in ("sqlite:///", "sqlite://"):
        if url.startswith(prefix):
            return Path(url[len(prefix):])
    return None


def copy_cloud(state: Path, into: Path) -> Cloud | None:
    """The services over a copy of the state folder's database (None when it is not SQLite)."""
    from neutrino.db.session import Database
    from neutrino.deploy import cloud_record
    from neutrino.scenarios.model import default_scenario, load_scenario

    doc = cloud_record(state)
    src = _sqlite_path(doc["db"])
    if src is None or not src.is_file():
        return None
    dst = into / "cloud.db"
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    scenario = load_scenario(doc["scenario"]) if doc.get("scenario") else default_scenario()
    return Cloud(Database(f"sqlite:///{dst}"), scenario)


def world_for(snap: CloudSnapshot) -> World:
    from neutrino.plan import plan_cloud
    from neutrino.sim.cloud import world_of

    world = world_of(snap, plan_cloud(snap))
    world.boot()
    return world


# ---------------------------------------------------------------------------- what to change


def _server(snap: CloudSnapshot, name: str) -> Server | None:
    return next((s for s in snap.servers if s.name == name), None)


def _first_port(snap: CloudSnapshot, server: Server) -> Port | None:
    return snap.port(server.port_ids[0]) if server.port_ids else None


def _fip_of(snap: CloudSnapshot, port: Port) -> IPv4Address | None:
    f = next((f for f in snap.floating_ips if f.port_id == port.id), None)
    return f.floating_ip_address if f is not None and isinstance(f.floating_ip_address, IPv4Address) else None


def _nova(snap: CloudSnapshot) -> bool:
    return snap.deployment.mechanism is Mechanism.NOVA_NETWORK


def _address(snap: CloudSnapshot, world: World, dst: str) -> IPv4Address | None:
    g = world.guests.get(dst)
    if g is not None:
        return g.ip
    try:
        a = ip_address(dst)
    except ValueError:
        return None
    return a if isinstance(a, IPv4Address) else None


def _ports_proto(proto: str, dport: int) -> tuple[str, int | None]:
    if proto == "icmp":
        return "icmp", None
    return ("tcp", 80) if proto == "http" else (proto, dport)


def _sg_fix(snap: CloudSnapshot, names: Names, port: Port, direction: str, proto: str, dport: int,
            peer: str) -> Fix | None:
    if not port.security_group_ids:
        return None
    gid = port.security_group_ids[0]
    group = next(g for g in snap.security_groups if g.id == gid)
    p, num = _ports_proto(proto, dport)
    if _nova(snap):
        if direction != "ingress":
            return None
        lo, hi = (str(num), str(num)) if num is not None else ("-1", "-1")
        command = f"nova secgroup-add-rule {group.name} {p} {lo} {hi} {peer}"
    else:
        ports = f" --dst-port {num}" if num is not None else ""
        command = (f"openstack security group rule create --{direction} --ethertype IPv4 "
                   f"--protocol {p}{ports} "
                   f"--remote-ip {peer} {gid}")

    def apply(cloud: Cloud) -> None:
        from neutrino.services import securitygroups

        attrs: dict[str, Any] = {"security_group_id": gid, "direction": direction, "ethertype": "IPv4",
                                 "protocol": p, "port_range_min": num, "port_range_max": num,
                                 "remote_ip_prefix": peer, "project_id": group.project_id}
        with cloud.write(cloud.admin_context()) as tx:
            securitygroups.create_rule(tx, attrs)

    return Fix(names.group(gid), command, apply)


def _router_of(snap: CloudSnapshot, port: Port | None) -> Any:
    """The router with an interface on one of the port's subnets."""
    subnets = {f.subnet_id for f in port.fixed_ips} if port is not None else set()
    return next((r for r in snap.routers for pid in r.interface_port_ids
                 if subnets & {f.subnet_id for f in snap.port(pid).fixed_ips}), None)


def _router_fix(snap: CloudSnapshot, names: Names, port: Port, peer: Port | None = None) -> Fix | None:
    """The port's subnet has no router interface: add one, on the router of the ``peer``'s subnet
    when it has one (so the two meet), else on a router of the port's project with a gateway."""
    subnet = next((snap.subnet(f.subnet_id) for f in port.fixed_ips
                   if isinstance(f.ip_address, IPv4Address)), None)
    if subnet is None:
        return None
    attached = {f.subnet_id for r in snap.routers for pid in r.interface_port_ids
                for f in snap.port(pid).fixed_ips}
    if subnet.id in attached:
        return None
    router = _router_of(snap, peer) \
        or next((r for r in snap.routers if r.project_id == port.project_id and r.gateway is not None), None) \
        or next((r for r in snap.routers if r.gateway is not None), None) or next(iter(snap.routers), None)
    if router is None:
        return None
    command = f"openstack router add subnet {router.name or router.id} {subnet.name or subnet.id}"

    def apply(cloud: Cloud) -> None:
        from neutrino.services import routers

        with cloud.write(cloud.admin_context()) as tx:
            routers.add_interface(tx, router.id, {"subnet_id": subnet.id})

    what = f"{names.router(router.id)} and subnet '{subnet.name}' {subnet.cidr} ({subnet.id})"
    return Fix(what, command, apply)


def _fip_fix(snap: CloudSnapshot, names: Names, port: Port) -> Fix | None:
    free = next((f for f in snap.floating_ips if f.port_id is None), None)
    if free is not None:
        command = f"openstack floating ip set --port {port.id} {free.floating_ip_address}"
        fid = free.id

        def apply(cloud: Cloud) -> None:
            from neutrino.services import floatingips

            with cloud.write(cloud.admin_context()) as tx:
                floatingips.update_fip(tx, fid, {"port_id": port.id})

        return Fix(f"{names.floating_ip(fid)} and {names.port(port)}", command, apply)
    ext = next((n for n in snap.networks if n.external), None)
    if ext is None:
        return None
    command = f"openstack floating ip create --port {port.id} {ext.name or ext.id}"

    def create(cloud: Cloud) -> None:
        from neutrino.services import floatingips

        with cloud.write(cloud.admin_context()) as tx:
            floatingips.create_fip(tx, {"floating_network_id": ext.id, "port_id": port.id, "description": "",
                                        "project_id": port.project_id})

    return Fix(f"{names.network(ext.id)} and {names.port(port)}", command, create)


def _gateway_fix(snap: CloudSnapshot, names: Names, port: Port) -> Fix | None:
    """The router of the port's subnet has no external gateway, and an external network exists."""
    subnets = {f.subnet_id for f in port.fixed_ips if isinstance(f.ip_address, IPv4Address)}
    router = next((r for r in snap.routers for pid in r.interface_port_ids
                   if subnets & {f.subnet_id for f in snap.port(pid).fixed_ips}), None)
    ext = next((n for n in snap.networks if n.external), None)
    if router is None or router.gateway is not None or ext is None:
        return None
    command = f"openstack router set --external-gateway {ext.name or ext.id} {router.name or router.id}"

    def apply(cloud: Cloud) -> None:
        from neutrino.services import routers

        with cloud.write(cloud.admin_context()) as tx:
            routers.update_router(tx, router.id, {"external_gateway_info": {"network_id": ext.id}})

    return Fix(f"{names.router(router.id)} and {names.network(ext.id)}", command, apply)


def _nova_net_of(snap: CloudSnapshot, addr: IPv4Address) -> Any:
    from neutrino.plan.nova_network import nova_networks

    return next((n for n in nova_networks(snap) if addr in n.subnet.cidr), None)


def _root_addresses(world: World, host: str) -> list[tuple[str, Any]]:
    st = _root_stack(world, host)
    return [(dev, a) for dev in st.links for a in st.addresses(dev)] if st is not None else []


def _root_stack(world: World, host: str) -> IpStack | None:
    """A host's root namespace as the simulator runs it (None: no such host, or not in a kept world)."""
    if host not in world.hosts:
        return None
    try:
        return world.stack(host, "")
    except NeutrinoError:
        return None


def _bridge_fix(snap: CloudSnapshot, names: Names, world: World, src: str, dst_ip: IPv4Address | None) -> Fix | None:
    """VlanManager, seed 003: the sender's compute has no bridge for the destination's network
    (nova-network sets a network up on a compute only when an instance of it lands there), so
    the compute has no route to it and sends it to its own default gateway. An instance of that
    network booted on that compute makes the bridge, its address and the route."""
    from neutrino.scenarios.model import NovaManager
    from neutrino.services import instances

    if not _nova(snap) or snap.deployment.nova_network.manager is not NovaManager.VLAN or dst_ip is None:
        return None
    server = _server(snap, src)
    net = _nova_net_of(snap, dst_ip)
    if server is None or net is None or server.host is None:
        return None
    root = _root_stack(world, server.host)
    if root is None or net.bridge in root.links:
        return None
    name = f"{net.network.name or 'net'}-on-{server.host}"
    command = (f"openstack server create --image cirros --flavor 1 --network {net.network.name or net.network.id} "
               f"--availability-zone nova:{server.host} {name}")
    net_id, host = net.network.id, server.host
    image = instances.IMAGES[0].id

    def apply(cloud: Cloud) -> None:
        from neutrino.services import instances

        with cloud.write(cloud.admin_context()) as tx:
            instances.create_server(tx, {"server": {"name": name, "imageRef": image, "flavorRef": "1",
                                                    "networks": [{"uuid": net_id}],
                                                    "availability_zone": f"nova:{host}"}})

    what = (f"compute {server.host}: no {net.bridge} there (no instance of {names.network(net_id)} runs on it, "
            f"so nova-network never set the network up there)")
    decision = world.stack(server.host, "").route(dst_ip)
    via = f"its default gateway {decision.next_hop} by {decision.dev}" \
        if not isinstance(decision, Unreachable) else "nowhere"
    why = (f"{server.host} has no {net.bridge}, so no route to {net.subnet.cidr} ({net.network.name}): it sends the "
           f"packet to {via}, which does not know {dst_ip} either. nova-network sets a network up on a compute "
           f"(its bridge, VLAN interface and gateway address) only when an instance of that network lands there.")
    return Fix(what, command, apply, why=why)


def _proto_words(proto: str, dport: int) -> str:
    return "" if proto == "icmp" else f" --proto {proto}" if proto == "http" else f" --proto {proto} --dport {dport}"


def _host_source_fix(snap: CloudSnapshot, world: World, src: str, dst: str, dst_ip: IPv4Address | None,
                     proto: str = "icmp", dport: int = 22) -> tuple[Fix, str] | None:
    """nova-network, seed 004: a host with no address on the instance's network sends from
    another address (its management one, by its default route), which the instance's chain does
    not accept; the network host holds the network's gateway address and reaches it. The fix is to
    ask from there; the why says what happened."""
    if not _nova(snap) or not src.startswith(HOST_PREFIX) or dst_ip is None:
        return None
    host = src[len(HOST_PREFIX):]
    net = _nova_net_of(snap, dst_ip)
    if net is None or any(a.ip in net.subnet.cidr for _, a in _root_addresses(world, host)):
        return None
    other = next((h for h in sorted(world.hosts) if h != host
                  and any(a.ip in net.subnet.cidr for _, a in _root_addresses(world, h))), None)
    if other is None:
        return None
    decision = world.stack(host, "").route(dst_ip)
    sent = f"{decision.src} (its {decision.dev}, by the route to {dst_ip})" \
        if not isinstance(decision, Unreachable) and decision.src is not None else "another network's address"
    held = next(f"{a.ip} on {dev}" for dev, a in _root_addresses(world, other) if a.ip in net.subnet.cidr)
    why = (f"{host} has no address in {net.subnet.cidr}, so it sends from {sent}; the instance's chain accepts "
           f"only its own network, so {host}'s own iptables drop the packet "
           f"before it leaves (ping says 'Operation not permitted'). This is by design: only the network host "
           f"{other} ({held}) is the instances' gateway and reaches them.")
    command = f"neutrino trace host:{other} {dst}" + _proto_words(proto, dport)
    return Fix(f"where you ask from: host {other} instead of {host}", command, lambda cloud: None,
               source=f"host:{other}", why=why), why


def _next_fix(snap: CloudSnapshot, names: Names, trace: Trace, src: str, dst: str, proto: str, dport: int,
              src_ip: IPv4Address | None, world: World | None = None) -> Fix | None:
    """The change that removes the first obstacle ``trace`` met."""
    v = trace.failure
    if v is None:
        return None
    dst_ip = _address(snap, world, dst) if world is not None else None
    if world is not None:
        bridge = _bridge_fix(snap, names, world, src, dst_ip)
        if bridge is not None and v.reason in (DropReason.NO_ROUTE, DropReason.UNREACHABLE,
                                               DropReason.ARP_UNANSWERED):
            return bridge
    if v.reason is DropReason.SECURITY_GROUP:
        port, direction, seen = _dropping_port(names, trace)
        if port is None:
            return None
        if direction == "ingress":  # the source as the packet arrives there (a NAT may have changed it)
            came = seen or src_ip
            peer = "0.0.0.0/0" if src == OUTSIDE or came is None else f"{came}/32"
        else:
            peer = "0.0.0.0/0"
        return _sg_fix(snap, names, port, direction, proto, dport, peer)
    if v.reason in (DropReason.NO_ROUTE, DropReason.ARP_UNANSWERED) and src != OUTSIDE:
        server = _server(snap, src)
        port = _first_port(snap, server) if server is not None else None
        dst_port = next((p for p in snap.ports if p.device_owner.startswith("compute")
                         and any(f.ip_address == dst_ip for f in p.fixed_ips)), None) if dst_ip is not None else None
        if port is not None:
            return _router_fix(snap, names, port, dst_port) \
                or (_router_fix(snap, names, dst_port, port) if dst_port is not None else None) \
                or (_gateway_fix(snap, names, port) if dst_port is None else None)
    return None


def _source_of(frame: object) -> IPv4Address | None:
    from neutrino.sim.packets import IPv4

    while frame is not None and not isinstance(frame, IPv4):
        frame = getattr(frame, "payload", None)
    return frame.src if isinstance(frame, IPv4) else None


def _dropping_port(names: Names, trace: Trace) -> tuple[Port | None, str, IPv4Address | None]:
    """The port whose rules dropped the packet, the direction, and the packet's source there."""
    from neutrino.answers.objects import _CHAIN_PORT, _NOVA_JUMP

    t = trace if not trace.delivered or trace.reply is None else trace.reply
    where = t.verdict.where
    for hop in reversed(t.hops):
        if f"{hop.host} {hop.element}" != where:
            continue
        seen = _source_of(hop.frame)
        for st in reversed(hop.steps):
            nova = _NOVA_JUMP.match(st.text)
            if nova:
                ip = nova.group("ip")
                port = next((p for p in names.cloud.ports
                             if any(str(f.ip_address) == ip for f in p.fixed_ips)), None)
                return port, "ingress", seen
            m = _CHAIN_PORT.search(st.text.split()[1] if st.text.startswith("-A ") else "")
            if m:
                return names.port_of_prefix(m.group("id")), "ingress" if m.group("dir") == "i" else "egress", seen
        port = names.port_of_device(hop.device) or names.port_of_device(hop.element)
        if port is not None:
            return port, "ingress" if hop.device.startswith(("qvb", "vnet")) else "egress", seen
    return None, "", None


def _summary(trace: Trace) -> str:
    v = trace.failure
    if v is None:
        return "reachable: the request arrived and the answer came back"
    return f"not reachable: {v.reason.value if v.reason else 'dropped'}"


_REASON_WORDS = {
    DropReason.NO_ROUTE: "no route",
    DropReason.ARP_UNANSWERED: "nobody answered ARP",
    DropReason.ANTI_SPOOFING: "the port's anti-spoofing rules dropped it",
    DropReason.NO_FLOW: "no OpenFlow rule matched it",
    DropReason.FLOW_DROP: "an OpenFlow rule drops it",
    DropReason.VLAN_MISMATCH: "the VLAN or VNI does not match",
    DropReason.FIREWALL: "an iptables rule drops it",
    DropReason.REFUSED: "the destination refused the connection",
    DropReason.UNREACHABLE: "an ICMP error came back",
    DropReason.NO_REPLY: "the request arrived but nothing answered",
    DropReason.IGNORED: "the service there ignored it",
}


def _drop_step(trace: Trace, where: str) -> Step | None:
    """The step that dropped the probe's packet at ``where`` (request or reply)."""
    for t in (trace, trace.reply):
        for hop in reversed(t.hops if t is not None else ()):
            if f"{hop.host} {hop.element}" == where:
                st = next((s for s in reversed(hop.steps) if s.kind is StepKind.DROP), None)
                if st is not None:
                    return st
    return None


def _why(trace: Trace) -> str:
    """The obstacle in one sentence: the object's words when it was named, else the dropping
    step's own (what it is, then why), else the verdict's."""
    v = trace.failure
    if v is None:
        return ""
    if v.reason is DropReason.SECURITY_GROUP and v.obj.startswith("no rule"):
        return v.obj + "."
    head = _REASON_WORDS.get(v.reason, v.reason.value) if v.reason else "dropped"
    st = _drop_step(trace, v.where)
    said = f"{st.text}: {st.detail}" if st is not None and st.detail else st.text if st is not None else v.detail
    at = f" at {v.where}" if v.where and v.where != "the sender" else ""
    return f"{head}{at}" + (f": {said}" if said else "") + (f" ({v.obj})" if v.obj else "") + "."


def diagnose(state: Path, src: str, dst: str, *, proto: str = "icmp", dport: int = 22,
             world: World | None = None) -> Diagnosis:
    from neutrino.deploy import open_cloud
    from neutrino.worldkeep import booted_world

    snap = open_cloud(state).snapshot()
    names = Names(snap)
    world = world if world is not None else booted_world(state)
    pre: list[Fix] = []
    target = dst
    server = _server(snap, dst)
    if src == OUTSIDE and server is not None:  # from outside, an instance is reached by its floating IP
        port = _first_port(snap, server)
        fip = _fip_of(snap, port) if port is not None else None
        if fip is not None:
            target = str(fip)
        elif port is not None:
            fix = _fip_fix(snap, names, port)
            if fix is not None:
                pre.append(fix)
    src_ip = world.guests[src].ip if src in world.guests else None
    if pre:
        trace = None
        verdict, where, why, obj = ("not reachable: no floating IP", "", f"{dst} has no floating IP: nothing "
                                    "outside can address it", pre[0].obj)
    else:
        trace = annotate(world.probe(src, target, proto=proto, dport=dport), names)
        if trace.succeeded:
            return Diagnosis(src, target, proto, dport, trace, _summary(trace), reachable=True)
        v = trace.failure
        assert v is not None
        verdict, where, why = _summary(trace), v.where, _why(trace)
        host_fix = _host_source_fix(snap, world, src, target, _address(snap, world, target), proto, dport)
        first = host_fix[0] if host_fix is not None else \
            _next_fix(snap, names, trace, src, target, proto, dport, src_ip, world)
        obj = first.obj if first is not None else v.obj
        if first is not None:
            pre.append(first)
            why = first.why or why
        elif v.reason is DropReason.ARP_UNANSWERED:
            addr = _address(snap, world, target)
            if addr is not None and not any(f.ip_address == addr for p in snap.ports for f in p.fixed_ips):
                why += f" No port of the cloud has {addr}: nothing is there to answer."
    if not pre:
        assert trace is not None
        return Diagnosis(src, target, proto, dport, trace, verdict, where, why, obj)
    return _check(state, snap, names, src, dst, target, proto, dport, pre[0], trace, verdict, where, why, obj)


def _check(state: Path, snap: CloudSnapshot, names: Names, src: str, dst: str, target: str, proto: str,
           dport: int, first: Fix, trace: Trace | None, verdict: str, where: str, why: str, obj: str) -> Diagnosis:
    tmp = Path(tempfile.mkdtemp(prefix="neutrino-diagnose-"))
    try:
        cloud = copy_cloud(state, tmp)
        if cloud is None:
            return Diagnosis(src, target, proto, dport, trace or Trace((), _no_trace()), verdict, where, why,
                             obj,
                             (first,), checked=False)
        fixes: list[Fix] = []
        fix: Fix | None = first
        after: Trace | None = None
        sender = src
        while fix is not None and len(fixes) < MAX_FIXES:
            try:
                fix.apply(cloud)
            except NeutrinoError as exc:
                fixes.append(replace(fix, works=False, after=f"refused: {exc}"))
                break
            sender = fix.source or sender
            new = cloud.snapshot()
            world = world_for(new)
            new_names = Names(new)
            to = target
            server = _server(new, dst)
            if sender == OUTSIDE and server is not None:
                port = _first_port(new, server)
                fip = _fip_of(new, port) if port is not None else None
                to = str(fip) if fip is not None else target
            if sender == OUTSIDE and not _is_address(to):
                fixes.append(replace(fix, works=False, after="still no address to reach it by"))
                break
            after = annotate(world.probe(sender, to, proto=proto, dport=dport), new_names)
            ok, said = _outcome(after, to)
            fixes.append(replace(fix, works=ok, after=said))
            if ok:
                break
            sender_ip = world.guests[sender].ip if sender in world.guests else None
            fix = _next_fix(new, new_names, after, sender, to, proto, dport, sender_ip, world)
        shown = trace if trace is not None else after if after is not None else Trace((), _no_trace())
        return Diagnosis(src, target, proto, dport, shown, verdict, where, why, obj, tuple(fixes))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _outcome(after: Trace, to: str) -> tuple[bool, str]:
    """Whether the network now carries the exchange, in words. A reset from the destination itself
    means the packet got through and nothing listens there: the fix did its part."""
    v = after.failure
    if v is None:
        return True, f"{to}: the request arrives and the answer comes back"
    if v.reason is DropReason.REFUSED and after.delivered:
        return True, (f"the packet now reaches {after.verdict.where}; it answers with a reset: "
                      "nothing listens "
                      f"on that port there")
    return False, f"then: {v.reason.value if v.reason else 'dropped'}" + (f" at {v.where}" if v.where else "")


def _is_address(s: str) -> bool:
    try:
        ip_address(s)
    except ValueError:
        return False
    return True


def _no_trace() -> Any:
    from neutrino.sim.trace import Verdict, VerdictKind

    return Verdict(VerdictKind.DROPPED, DropReason.NO_ROUTE, detail="no address to send to")


def check_args(proto: str, dport: int) -> None:
    if not 1 <= dport <= 65535:
        raise InvalidInput(f"--dport {dport}: a port is a number from 1 to 65535")
