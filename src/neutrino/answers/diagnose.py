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

The packet's source can be given as ``trace`` takes it (``src_ip``, ``src_mac``): an instance
sending from an address or MAC that is not its port's meets the port's anti-spoofing rules; the fix
is an allowed address pair on the port (``openstack port set --allowed-address``), or, offered as
the alternative, port security off (``--no-security-group --disable-port-security``). A fix can
carry alternatives (a rule by the sender's remote group instead of its address, too): each is
checked on a fresh copy of its own, after the fixes before the one it replaces. ``--proto dhcp``
finds a subnet with DHCP disabled (``openstack subnet set --dhcp``) and a flat or VLAN network
whose physnet bridge holds no NIC on the instance's host or its DHCP server's (``ovs-vsctl
add-port``, checked with the deployment's uplinks changed on the copy) or whose DHCP server's host
does not map the physnet at all (its DHCP port failed to bind: the bridge, NIC and mapping, checked
with the failed bindings bound again as ML2 does when the restarted agent asks), and ``--proto http`` to the
metadata address says how the request would get there (the router's redirect to the metadata
proxy on 9697) when the subnet has no router. An instance with no address sends nothing: asked
about any other exchange, its DHCP exchange is diagnosed instead.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

from neutrino.answers.objects import Names, annotate, flow_origins
from neutrino.errors import InvalidInput, NeutrinoError
from neutrino.scenarios.model import Mechanism
from neutrino.services.cloud import Cloud
from neutrino.services.snapshot import BINDING_FAILED, CloudSnapshot, Network, Port, Server
from neutrino.sim.ipstack import IpStack, Unreachable
from neutrino.sim.trace import DropReason, Step, StepKind, Trace
from neutrino.sim.world import HOST_PREFIX, OUTSIDE, World

MAX_FIXES = 3
METADATA = IPv4Address("169.254.169.254")


@dataclass(frozen=True)
class Packet:
    """The packet's fields given on the command line (as ``neutrino trace`` takes them)."""

    src_ip: str | None = None
    src_mac: str | None = None
    size: int | None = None  # ping -s: data bytes, sent with DF set

    def probe_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"src_ip": self.src_ip, "src_mac": self.src_mac}
        if self.size is not None:
            args["size"] = self.size
        return args


@dataclass(frozen=True)
class Fix:
    obj: str  # the object to change, by name and id
    command: str  # the fix, pasteable
    apply: Callable[[Cloud], None] = field(repr=False, compare=False)
    works: bool | None = None  # after this fix (and the ones before it) the exchange succeeds
    after: str = ""  # the verdict once applied
    source: str = ""  # the fix is to ask from somewhere else: trace from here instead
    why: str = ""  # what the obstacle is, in a learner's words, when the fix knows it best
    # other changes that would do instead of this one (each checked on a copy of its own)
    alternatives: tuple[Fix, ...] = field(default=(), repr=False, compare=False)
    size: int | None = None  # the fix is to send smaller packets: trace with this size instead
    where: str = ""  # where the obstacle is, when the fix knows it better than the verdict's place

    def plain(self) -> dict[str, Any]:
        return {"command": self.command, "object": self.obj, "works": self.works, "after": self.after}


@dataclass(frozen=True)
class Alternative:
    """Another way past the obstacle fix ``instead_of`` (1-based) removes: its own fixes, checked
    on a fresh copy of the cloud with the fixes before ``instead_of`` applied first."""

    instead_of: int
    fixes: tuple[Fix, ...]

    @property
    def works(self) -> bool:
        return bool(self.fixes) and self.fixes[-1].works is True


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
    src_ip: str | None = None  # the packet's source address when given (spoofed)
    src_mac: str | None = None  # the frame's source MAC when given (spoofed)
    alternatives: tuple[Alternative, ...] = ()
    on_host: str = ""  # an imported deployment: what to change on the host (no API object to name)

    def text(self) -> str:
        port = 80 if self.proto == "http" else self.dport
        what = self.proto if self.proto in ("icmp", "arp", "dhcp") else f"{self.proto}/{port}"
        given = [f"from {self.src_ip}"] if self.src_ip else []
        given += [f"from MAC {self.src_mac}"] if self.src_mac else []
        what = ", ".join([what, *given])
        lines = [f"{self.source} -> {self.destination} ({what}): {self.verdict}"]
        if self.reachable:
            return "\n".join(lines) + "\n"
        if self.where:
            lines.append(f"stops at: {self.where}")
        if self.why:
            lines.append(f"why: {self.why}")
        if self.obj:
            lines.append(f"change: {self.obj}")
        if self.on_host:
            lines.append(f"on the host: {self.on_host}")
        if not self.fixes:
            lines.append("fix: no API object to change (an imported deployment has no cloud): change the host"
                         if self.on_host else "fix: none known for this drop")
        for n, fix in enumerate(self.fixes, 1):
            lines.append(f"fix {n}: {fix.command}")
            lines += self._checked(fix)
        for alt in self.alternatives:
            for n, fix in enumerate(alt.fixes):
                head = ("or: " if alt.instead_of == 1 else f"or, instead of fix {alt.instead_of}: ") \
                    if n == 0 else "   then: "
                lines.append(head + fix.command)
                lines += self._checked(fix)
        return "\n".join(lines) + "\n"

    def _checked(self, fix: Fix) -> list[str]:
        lines = [f"   object: {fix.obj}"]
        if not self.checked:
            lines.append("   checked: no (only a SQLite cloud can be copied to try it)")
        elif fix.works:
            lines.append("   checked on a copy of the cloud: works" + (f" ({fix.after})" if fix.after else ""))
        else:
            lines.append("   checked on a copy of the cloud: not enough on its own"
                         + (f" ({fix.after})" if fix.after else ""))
        return lines

    def plain(self) -> dict[str, Any]:
        v = self.trace.failure
        return {"source": self.source, "destination": self.destination, "proto": self.proto,
                "dport": self.dport, "src_ip": self.src_ip, "src_mac": self.src_mac,
                "reachable": self.reachable, "verdict": self.verdict,
                "reason": v.reason.value if v is not None and v.reason else None, "where": self.where,
                "why": self.why, "object": self.obj, "checked": self.checked,
                "fixes": [f.plain() for f in self.fixes],
                "alternatives": [{"instead_of": a.instead_of, "works": a.works,
                                  "fixes": [f.plain() for f in a.fixes]} for a in self.alternatives]}


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


def world_for(snap: CloudSnapshot) -> tuple[World, Names]:
    """The cloud ``snap`` planned, booted, and the names of its objects (its flows' included)."""
    from neutrino.answers.objects import origins_of
    from neutrino.plan import plan_cloud
    from neutrino.sim.cloud import world_of

    hosts = plan_cloud(snap)
    world = world_of(snap, hosts)
    world.boot()
    return world, Names(snap, origins_of(hosts))


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
            peer: str, remote_group: str | None = None) -> Fix | None:
    """The rule that lets the packet in (or out) of ``port``, from ``peer`` (a CIDR); with
    ``remote_group``, the same rule by the sender's group is offered as the alternative."""
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

    def rule(remote: dict[str, Any]) -> Callable[[Cloud], None]:
        def apply(cloud: Cloud) -> None:
            from neutrino.services import securitygroups

            attrs: dict[str, Any] = {"security_group_id": gid, "direction": direction, "ethertype": "IPv4",
                                     "protocol": p, "port_range_min": num, "port_range_max": num,
                                     "project_id": group.project_id, **remote}
            with cloud.write(cloud.admin_context()) as tx:
                securitygroups.create_rule(tx, attrs)

        return apply

    alternatives: tuple[Fix, ...] = ()
    other = next((g for g in snap.security_groups if g.id == remote_group), None)
    if other is not None and other.project_id == group.project_id:  # a project names its own groups only
        if _nova(snap):
            by_group = f"nova secgroup-add-group-rule {group.name} {other.name} {p} {lo} {hi}"
        else:
            unique = sum(g.name == other.name for g in snap.security_groups) == 1
            by_group = command.replace(f"--remote-ip {peer} ", f"--remote-group {other.name if unique else other.id} ")
        alternatives = (Fix(f"{names.group(gid)}, from the members of {names.group(other.id)}", by_group,
                            rule({"remote_group_id": other.id})),)
    return Fix(names.group(gid), command, rule({"remote_ip_prefix": peer}), alternatives=alternatives)


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


def _own_ip(port: Port) -> IPv4Address | None:
    return next((f.ip_address for f in port.fixed_ips if isinstance(f.ip_address, IPv4Address)), None)


def _spoof_fix(snap: CloudSnapshot, names: Names, trace: Trace, src: str, own: IPv4Address | None,
               packet: Packet) -> Fix | None:
    """The sender sends from an address or MAC that is not its port's: the port's anti-spoofing
    rules drop it. Allow it as an address pair on the port, or (the alternative) turn the port's
    security off, security groups and all."""
    server = _server(snap, src)
    port = _first_port(snap, server) if server is not None else None
    if port is None:
        return None
    own = own or _own_ip(port)
    ip = packet.src_ip if packet.src_ip and ip_address(packet.src_ip) != own else None
    mac = packet.src_mac.lower() if packet.src_mac and packet.src_mac.lower() != port.mac_address.lower() else None
    if (ip is None and mac is None) or own is None:
        return None
    pair = f"ip-address={ip or own}" + (f",mac-address={mac}" if mac else "")
    pairs = [{"ip_address": str(pr.ip_address), "mac_address": pr.mac_address} for pr in port.allowed_address_pairs]
    extra: dict[str, Any] = {"ip_address": str(ip or own)} | ({"mac_address": mac} if mac else {})
    pid = port.id

    def allow(cloud: Cloud) -> None:
        from neutrino.services import ports

        with cloud.write(cloud.admin_context()) as tx:
            ports.update_port(tx, pid, {"allowed_address_pairs": [*pairs, extra]})

    def unsecure(cloud: Cloud) -> None:
        from neutrino.services import ports

        with cloud.write(cloud.admin_context()) as tx:
            ports.update_port(tx, pid, {"security_groups": [], "port_security_enabled": False,
                                        "allowed_address_pairs": []})

    sent = " and ".join(([f"from address {ip}"] if ip else []) + ([f"from MAC {mac}"] if mac else []))
    allowed = ", ".join(f"{pr.ip_address} ({pr.mac_address})" for pr in port.allowed_address_pairs) or "none"
    why = (f"{src} sends {sent}, which is not its port's. The port's anti-spoofing rules (on {server.host if server else 'its compute'}, "
           f"where the instance's interface meets the network) let out only the port's own address {own} with its MAC "
           f"{port.mac_address}, and its allowed address pairs (here: {allowed}); anything else is dropped as "
           f"spoofed, so that an instance cannot pretend to be another. To send from another address (a "
           f"virtual IP shared by two instances, a router or firewall instance forwarding others' traffic), "
           f"name it as an allowed address pair of the port, or turn port security off on the port (its "
           f"security groups go with it).")
    off = Fix(f"{names.port(port)}: its port security and security groups",
              f"openstack port set --no-security-group --disable-port-security {pid}", unsecure)
    return Fix(names.port(port), f"openstack port set --allowed-address {pair} {pid}", allow, why=why,
               alternatives=(off,))


_SPOOF_CHAIN = re.compile(r"^-A (quantum|neutron)-openvswi-s[0-9a-f-]{10} .*-j DROP$")


def _spoof_chain_drop(trace: Trace) -> bool:
    """Dropped at the end of a port's s- chain (its (MAC, address) allows), which the simulator
    calls an iptables rule when the rule has no comment to tell it (the Havana-style chain)."""
    v = trace.failure
    if v is None or v.reason is not DropReason.FIREWALL:
        return False
    st = _drop_step(trace, v.where)
    return st is not None and _SPOOF_CHAIN.match(st.text) is not None


def _subnet_of(snap: CloudSnapshot, src: str) -> Any:
    server = _server(snap, src)
    port = _first_port(snap, server) if server is not None else None
    return next((snap.subnet(f.subnet_id) for f in port.fixed_ips if isinstance(f.ip_address, IPv4Address)),
                None) if port is not None else None


def _dhcp_fix(snap: CloudSnapshot, names: Names, src: str) -> Fix | None:
    """The instance's subnet has DHCP disabled: no dnsmasq serves it, nobody answers the DISCOVER."""
    subnet = _subnet_of(snap, src)
    if subnet is None or subnet.enable_dhcp:
        return None
    sid, nid = subnet.id, subnet.network_id

    def apply(cloud: Cloud) -> None:
        from neutrino.services import networks, ports

        with cloud.write(cloud.admin_context()) as tx:
            networks.update_subnet(tx, sid, {"enable_dhcp": True})
            # the DHCP agent, told of the change, makes (or extends) the network's DHCP port
            tx.session.flush()
            ports.ensure_dhcp_port(tx, networks.get_network_row(tx, nid), refresh=True)

    why = (f"subnet '{subnet.name}' {subnet.cidr} has DHCP disabled (enable_dhcp is false), so the DHCP agent "
           f"runs no dnsmasq for it (no qdhcp- namespace holds an address there): the instance's DISCOVER, "
           f"broadcast on the network, reaches no DHCP server and nothing answers. The instance gets no "
           f"address (cirros keeps asking, then comes up without one) unless it is configured by hand.")
    what = names.network(subnet.network_id)
    return Fix(what, f"openstack subnet set --dhcp {subnet.name or subnet.id}", apply, why=why)


def _nic_for(snap: CloudSnapshot, bridge: str, hosts: list[str]) -> str:
    """The NIC to plug into ``bridge`` on ``hosts``: the one other hosts have there (hosts are wired
    together by NICs of one name) unless one of ``hosts`` already uses that name (another bridge's
    uplink, or an interface with an address), else the first ``ethN`` none of ``hosts`` uses."""
    used = {n for h in snap.deployment.hosts if h.name in hosts
            for n in (*dict(h.uplinks).values(), *dict(h.interfaces))}
    known = [dict(h.uplinks).get(bridge) for h in snap.deployment.hosts]
    nic = next((n for n in known if n), None)
    if nic is not None and nic not in used:
        return nic
    return next(f"eth{n}" for n in range(1, 100) if f"eth{n}" not in used)


def _provider_network(snap: CloudSnapshot, src: str) -> tuple[Server, Network, str] | None:
    """The instance ``src``, its (first port's) network and the network's physnet, when that is a
    flat or VLAN network (whose frames cross hosts through physical NICs)."""
    server = _server(snap, src)
    port = _first_port(snap, server) if server is not None else None
    if server is None or port is None:
        return None
    net = snap.network(port.network_id)
    physnet = net.segment.physical_network
    if net.segment.network_type not in ("flat", "vlan") or physnet is None:
        return None
    return server, net, physnet


def _with_hosts(cloud: Cloud, changes: dict[str, dict[str, dict[str, str]]]) -> None:
    """The deployment's hosts changed on the copy ``cloud``: ``changes[host][field]`` (``uplinks``,
    ``bridge_mappings``) merged into that host's field, as a scenario naming them would make it."""
    from neutrino.db import models
    from neutrino.scenarios.model import deployment_from_doc

    with cloud.db.write() as s:
        row = s.get(models.Deployment, 1)
        assert row is not None
        doc = dict(row.document)
        doc["hosts"] = [h | {k: {**h.get(k, {}), **v} for k, v in changes[h["name"]].items()}
                        if h["name"] in changes else h for h in doc["hosts"]]
        row.document = doc
    cloud.deployment = deployment_from_doc(doc)


def _uplink_fix(snap: CloudSnapshot, names: Names, src: str) -> Fix | None:
    """A flat or VLAN network's frames leave a host only through a physical NIC in the bridge its
    physnet maps to (``bridge_mappings``; the operator plugs it: ``ovs-vsctl add-port br-eth1 eth1``,
    the agent does not). When the instance's host, or a host running its network's DHCP server, has
    none there, the DISCOVER is flooded within that bridge and goes no further (or the server's host
    never receives it). ML2 does not notice: the mapping is there, so the port binds."""
    found = _provider_network(snap, src)
    if found is None or not found[0].host:
        return None
    server, net, physnet = found
    others = [h for h in net.dhcp_hosts if h != server.host]
    if not others:  # the DHCP server is on the instance's own host: no wire to cross
        return None
    by_name = {h.name: h for h in snap.deployment.hosts}
    missing: list[tuple[str, str]] = []  # (host, bridge) with the mapping but no NIC in the bridge
    for name in (server.host, *others):
        host = by_name.get(name)
        bridge = dict(host.bridge_mappings).get(physnet) if host is not None else None
        if host is not None and bridge is not None and bridge not in dict(host.uplinks):
            missing.append((name, bridge))
    if not missing:
        return None
    nics = {(h, b): _nic_for(snap, b, [h for h, _ in missing]) for h, b in missing}
    plugs = "; ".join(f"on {h}: ovs-vsctl add-port {b} {nics[h, b]}" for h, b in missing)
    servers = " and ".join(others)
    lacking = "; ".join(f"{b} on {h} has none" for h, b in missing)
    if missing[0][0] == server.host:
        lost = (f"the instance's DISCOVER, flooded in {missing[0][1]} on {server.host}, leaves the host by no NIC "
                f"and the DHCP server on {servers} never sees it")
    else:
        lost = (f"the instance's DISCOVER leaves {server.host}, but no NIC in {missing[0][1]} on {missing[0][0]} "
                f"takes it in and the DHCP server there never sees it")
    why = (f"network '{net.name or net.id}' is a {net.segment.network_type} network on physnet {physnet}: its frames "
           f"go from host to host only through the physical NIC in the bridge each host maps the physnet to, and "
           f"{lacking}. So {lost}: the instance gets no address. ML2 binds the port all the same (the mapping "
           f"is there): plug the NIC, as the operator does before the agent starts (neutrino's scenario: the host's "
           f"uplinks, e.g. {{{missing[0][1]}: {nics[missing[0]]}}}).")
    others_nic = next((n for h in snap.deployment.hosts if (n := dict(h.uplinks).get(missing[0][1]))), None)
    taken = [h for (h, _), nic in nics.items() if others_nic is not None and nic != others_nic]
    if taken:
        why += (f" {others_nic}, the NIC the other hosts have there, is taken on {' and '.join(taken)}: plug another one, "
                f"cabled to the same physical network (neutrino's simulator joins hosts only by NICs of one name, "
                f"so its check of this fix on a copy cannot see that cable).")
    adds = {h: {"uplinks": {b: nics[h, b]}} for h, b in missing}

    def apply(cloud: Cloud) -> None:
        _with_hosts(cloud, adds)

    what = f"host {missing[0][0]}: {missing[0][1]} (physnet {physnet}'s bridge) has no physical NIC" + \
        "".join(f"; host {h}: {b} has none either" for h, b in missing[1:])
    return Fix(what, plugs, apply, why=why, where=f"{missing[0][0]} {missing[0][1]}")


def _mapping_fix(snap: CloudSnapshot, names: Names, src: str, trace: Trace) -> Fix | None:
    """A flat or VLAN network's DHCP server runs on a host whose OVS agent does not map the network's
    physnet (``bridge_mappings``): ML2 failed the DHCP port's binding there (``binding_failed``), the
    agent made it a dead port (VLAN 4095, dropped), and nothing answers the DISCOVER. The fix is on the
    host: the mapping, its bridge and NIC, and the agent restarted (ML2 binds the port again when the
    agent asks for its details: ``_should_bind_port`` retries a failed binding)."""
    found = _provider_network(snap, src)
    if found is None:
        return None
    _, net, physnet = found
    by_name = {h.name: h for h in snap.deployment.hosts}
    unmapped = [h for h in net.dhcp_hosts if h in by_name and physnet not in dict(by_name[h].bridge_mappings)]
    failed = [p for p in snap.ports if p.network_id == net.id and p.device_owner == "network:dhcp"
              and p.binding_host in unmapped and p.vif_type == BINDING_FAILED]
    if not failed:
        return None
    hosts = sorted({p.binding_host for p in failed})
    bridge = next((b for h in snap.deployment.hosts for pn, b in h.bridge_mappings if pn == physnet), f"br-{physnet}")
    nic = _nic_for(snap, bridge, hosts)
    others = [h.name for h in snap.deployment.hosts if physnet in dict(h.bridge_mappings)]
    on = " and ".join(hosts)
    command = "; ".join(f"on {h}: ovs-vsctl add-br {bridge}; ovs-vsctl add-port {bridge} {nic}; set bridge_mappings "
                        f"= {physnet}:{bridge} in the OVS agent's [ovs] section and restart it" for h in hosts)
    why = (f"network '{net.name or net.id}' is a {net.segment.network_type} network on physnet {physnet}, and its "
           f"DHCP server runs on {on}, whose OVS agent does not map {physnet} (its bridge_mappings have no "
           f"{physnet}" + (f"; {' and '.join(others)} map{'s' if len(others) == 1 else ''} it to {bridge}"
                           if others else "") + "). So ML2 failed the "
           "DHCP port's binding there (binding:vif_type binding_failed), the agent made it a dead port (VLAN "
           "4095, its frames dropped) and no DISCOVER reaches dnsmasq: the instance gets no address.")
    dep_hosts = set(hosts)

    def apply(cloud: Cloud) -> None:
        from sqlalchemy import select

        from neutrino.db import models
        from neutrino.services.networks import get_network_row
        from neutrino.services.ports import bind

        _with_hosts(cloud, {h: {"bridge_mappings": {physnet: bridge}, "uplinks": {bridge: nic}} for h in dep_hosts})
        with cloud.write(cloud.admin_context()) as tx:  # the restarted agent asks: ML2 binds again
            for p in tx.session.scalars(select(models.Port).where(models.Port.binding_host_id.in_(dep_hosts),
                                                                  models.Port.binding_vif_type == BINDING_FAILED)):
                bind(tx, p, get_network_row(tx, p.network_id))

    what = f"host {hosts[0]}: its OVS agent does not map physnet {physnet}" + \
        "".join(f"; host {h}: neither" for h in hosts[1:])
    last = trace.hops[-1] if trace.hops else None  # where the DISCOVER was last seen
    return Fix(what, command, apply, why=why, where=f"{last.host} {last.element}" if last is not None else "")


def _metadata_why(snap: CloudSnapshot, src: str, said: str) -> str:
    """Why the metadata service is out of reach when the instance's subnet has no router."""
    subnet = _subnet_of(snap, src)
    where = f"subnet '{subnet.name}' {subnet.cidr}" if subnet is not None else "the instance's subnet"
    gw = f" (its gateway {subnet.gateway_ip} is nobody)" if subnet is not None and subnet.gateway_ip else ""
    return (f"{src} reaches the metadata service at {METADATA} through its default gateway, the router: the "
            f"router's namespace redirects tcp/80 to {METADATA} to the metadata proxy listening on port 9697, "
            f"which passes the request on to nova's metadata API with the instance's identity. {where} has "
            f"no router interface{gw} and the DHCP agent serves no isolated metadata, so the request has "
            f"nowhere to go: {said}")


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


_HEADERS = {"icmp": 28, "udp": 28, "tcp": 40, "http": 40}  # IP + ICMP/UDP/TCP headers before the data


def _mtu_fix(snap: CloudSnapshot, names: Names, v: Any, src: str, dst: str, proto: str, dport: int,
             packet: Packet) -> Fix | None:
    """A packet larger than a device on its way lets through (``--size``, sent with DF set): the
    sender's own interface (a local error), a bridge port or a tunnel that drops it silently (a
    black hole: instances must be told the smaller MTU), or a router that answers "fragmentation
    needed". The fix that always works is smaller packets; the why says what would make it last."""
    hdr = _HEADERS.get(proto, 28)
    sent = (packet.size or 0) + hdr
    m = re.search(r"mtu=(\d+)", v.detail)
    if m and "local error" in v.detail:
        mtu = int(m.group(1))
        why = (f"{src} cannot send a {sent}-byte packet with DF set: its own interface's MTU is {mtu} "
               f"(ping: local error: message too long). Nothing on the network is at fault: send at most "
               f"{mtu - hdr} bytes of data per packet.")
        fit, obj = mtu, v.obj or f"the sender {src}"
    elif (m := re.search(r"packets of up to (\d+) bytes fit", v.detail)) is not None:
        fit = int(m.group(1))
        server = _server(snap, src) or _server(snap, dst)
        port = _first_port(snap, server) if server is not None else None
        net = next((n for n in snap.networks if port is not None and n.id == port.network_id), None)
        era = snap.deployment.generation
        lasting = (f"`openstack network set --mtu {fit} {net.name or net.id}` (DHCP then advertises it)"
                   if net is not None and era not in ("grizzly", "havana")
                   else f"DHCP option 26 from dnsmasq (dhcp-option-force=26,{fit} in the DHCP agent's "
                        f"dnsmasq_config_file), as Grizzly-era clouds did")
        why = (f"the path carries packets of at most {fit} bytes (the tunnel's headers ride on the underlay's "
               f"MTU), but {src} sends {sent}-byte packets with DF set: {v.where} drops them silently, and no ICMP "
               f"error tells the sender (a black hole: small packets pass, large ones vanish). Send at most "
               f"{fit - hdr} bytes of data; to make it last, tell the instances the smaller MTU: {lasting}.")
        obj = names.network(net.id) if net is not None else v.where
    elif (m := re.search(r"next-hop MTU (\d+)", v.detail)) is not None:
        fit = int(m.group(1))
        why = (f"{v.where} cannot forward a {sent}-byte packet with DF set onto a device whose MTU is {fit}, and "
               f"says so with ICMP fragmentation needed (type 3 code 4, next-hop MTU {fit}): the sender must send "
               f"at most {fit} bytes per packet (path MTU discovery does this by itself for TCP).")
        obj = v.obj or v.where
    else:
        return None
    if fit - hdr < 0:
        return None
    command = f"neutrino trace {src} {dst} --size {fit - hdr}" + _proto_words(proto, dport)
    return Fix(obj, command, lambda cloud: None, why=why, size=fit - hdr)


def _next_fix(snap: CloudSnapshot, names: Names, trace: Trace, src: str, dst: str, proto: str, dport: int,
              src_ip: IPv4Address | None, world: World | None = None, packet: Packet | None = None) -> Fix | None:
    """The change that removes the first obstacle ``trace`` met."""
    v = trace.failure
    if v is None:
        return None
    packet = packet or Packet()
    if v.reason is DropReason.MTU:
        return _mtu_fix(snap, names, v, src, dst, proto, dport, packet)
    if v.reason is DropReason.ANTI_SPOOFING or _spoof_chain_drop(trace):
        return _spoof_fix(snap, names, trace, src, src_ip, packet)
    if proto == "dhcp":
        # a missing NIC is looked for whatever the drop: br-int floods the DISCOVER into every physnet
        # bridge, and one that is wired drops the VLANs it does not translate (as it should)
        fix = _dhcp_fix(snap, names, src) if v.reason in (DropReason.NO_REPLY, DropReason.IGNORED) else None
        return fix or _mapping_fix(snap, names, src, trace) or _uplink_fix(snap, names, src)
    dst_ip = _address(snap, world, dst) if world is not None else None
    if world is not None:
        bridge = _bridge_fix(snap, names, world, src, dst_ip)
        if bridge is not None and v.reason in (DropReason.NO_ROUTE, DropReason.UNREACHABLE,
                                               DropReason.ARP_UNANSWERED):
            return bridge
    if v.reason is DropReason.SECURITY_GROUP:
        port, direction, frame = _dropping_port(names, trace)
        if port is None:
            return None
        seen = _source_of(frame)
        dport = _dport_of(frame, proto) or dport  # a DNAT (port forwarding) may have changed it
        group = None
        if direction == "ingress":  # the source as the packet arrives there (a NAT may have changed it)
            came = seen or src_ip
            peer = "0.0.0.0/0" if src == OUTSIDE or came is None else f"{came}/32"
            sender = _server(snap, src)
            sport = _first_port(snap, sender) if sender is not None else None
            if sport is not None and sport.security_group_ids and came is not None \
                    and any(f.ip_address == came for f in sport.fixed_ips):  # not NATed on the way
                group = sport.security_group_ids[0]
        else:
            peer = "0.0.0.0/0"
        return _sg_fix(snap, names, port, direction, proto, dport, peer, group)
    if v.reason in (DropReason.NO_ROUTE, DropReason.ARP_UNANSWERED) and src != OUTSIDE:
        server = _server(snap, src)
        port = _first_port(snap, server) if server is not None else None
        dst_port = next((p for p in snap.ports if p.device_owner.startswith("compute")
                         and any(f.ip_address == dst_ip for f in p.fixed_ips)), None) if dst_ip is not None else None
        if port is not None:
            fix = _router_fix(snap, names, port, dst_port) \
                or (_router_fix(snap, names, dst_port, port) if dst_port is not None else None) \
                or (_gateway_fix(snap, names, port) if dst_port is None else None)
            if fix is not None and proto == "http" and dst_ip == METADATA:
                fix = replace(fix, why=_metadata_why(snap, src, _why(trace)))
            return fix
    return None


def _source_of(frame: object) -> IPv4Address | None:
    from neutrino.sim.packets import IPv4

    while frame is not None and not isinstance(frame, IPv4):
        frame = getattr(frame, "payload", None)
    return frame.src if isinstance(frame, IPv4) else None


def _dport_of(frame: object, proto: str) -> int | None:
    """The tcp/udp destination port of ``frame`` (a probe of ``proto``), as it is there."""
    from neutrino.sim.packets import IPv4

    while frame is not None and not isinstance(frame, IPv4):
        frame = getattr(frame, "payload", None)
    l4 = frame.payload if isinstance(frame, IPv4) else None
    if proto not in ("tcp", "udp") or l4 is None or type(l4).__name__ != proto.upper():
        return None
    return int(getattr(l4, "dport", 0)) or None


def _dropping_port(names: Names, trace: Trace) -> tuple[Port | None, str, object]:
    """The port whose rules dropped the packet, the direction, and the packet as it was there."""
    from neutrino.answers.objects import _CHAIN_PORT, _NOVA_JUMP, ovs_firewall_port

    t = trace if not trace.delivered or trace.reply is None else trace.reply
    where = t.verdict.where
    for hop in reversed(t.hops):
        if f"{hop.host} {hop.element}" != where:
            continue
        seen = hop.frame
        fw_port, way = ovs_firewall_port(names, hop)
        if fw_port is not None:
            return fw_port, way, seen
        for st in reversed(hop.steps):
            nova = re.compile(_NOVA_JUMP).match(st.text)
            if nova:
                ip = nova.group("ip")
                port = next((p for p in names.cloud.ports
                             if any(str(f.ip_address) == ip for f in p.fixed_ips)), None)
                return port, "ingress", seen
            m = re.compile(_CHAIN_PORT).search(st.text.split()[1] if st.text.startswith("-A ") else "")
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
             src_ip: str | None = None, src_mac: str | None = None, size: int | None = None,
             world: World | None = None) -> Diagnosis:
    """Trace ``src`` to ``dst`` and, when it does not get through, say where, why, what to change,
    with the fixes (and their alternatives) checked on copies of the cloud. ``src_ip`` and
    ``src_mac`` give the packet's source as ``neutrino trace --src-ip/--src-mac`` do."""
    from neutrino.deploy import open_cloud
    from neutrino.worldkeep import booted_world

    if world is not None and getattr(world, "imported", False):
        return _diagnose_imported(world, src, dst, proto, dport, Packet(src_ip, src_mac, size))
    snap = open_cloud(state).snapshot()
    names = Names(snap, flow_origins(state / "hosts", (h.name for h in snap.deployment.hosts)))
    world = world if world is not None else booted_world(state)
    packet = Packet(src_ip, src_mac, size)
    if (src_ip or src_mac) and (src == OUTSIDE or src.startswith(HOST_PREFIX)):
        raise InvalidInput(f"{src}: the packet's source can be given from an instance only")
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
    own_ip = world.guests[src].ip if src in world.guests else None
    if src in world.guests and own_ip is None and proto != "dhcp" and not src_ip:
        return _no_address(state, snap, names, world, src, dst, proto, dport, packet)
    spoofed = _spoofed(snap, src, packet)
    made = partial(Diagnosis, src, target, proto, dport, src_ip=src_ip, src_mac=src_mac)
    if pre:
        trace = None
        verdict, where, why, obj = ("not reachable: no floating IP", "", f"{dst} has no floating IP: nothing "
                                    "outside can address it", pre[0].obj)
    else:
        trace = annotate(world.probe(src, target, proto=proto, dport=dport, **packet.probe_args()), names)
        if trace.succeeded:
            return made(trace, _summary(trace), reachable=True)
        ok, said = _outcome(trace, target, spoofed)
        if ok and spoofed is not None:  # the request gets through; the answer goes to the address given
            return made(trace, f"reachable: {said}", reachable=True)
        v = trace.failure
        assert v is not None
        verdict, where, why = _summary(trace), v.where, _why(trace)
        host_fix = _host_source_fix(snap, world, src, target, _address(snap, world, target), proto, dport)
        first = host_fix[0] if host_fix is not None else \
            _next_fix(snap, names, trace, src, target, proto, dport, own_ip, world, packet)
        obj = first.obj if first is not None else v.obj
        if first is not None:
            pre.append(first)
            why = first.why or why
            where = first.where or where
        elif v.reason is DropReason.ARP_UNANSWERED:
            addr = _address(snap, world, target)
            if addr is not None and not any(f.ip_address == addr for p in snap.ports for f in p.fixed_ips):
                why += f" No port of the cloud has {addr}: nothing is there to answer."
    if not pre:
        assert trace is not None
        return made(trace, verdict, where, why, obj)
    tmp = Path(tempfile.mkdtemp(prefix="neutrino-diagnose-"))
    try:
        probe = _Probe(state, tmp, src, dst, target, proto, dport, packet, spoofed)
        shown = trace
        fixes, after = probe.chain((), pre[0])
        if fixes is None:  # not a SQLite cloud: offered unchecked
            alts = tuple(Alternative(1, (a,)) for a in pre[0].alternatives)
            return made(trace or Trace((), _no_trace()), verdict, where, why, obj, (pre[0],), checked=False,
                        alternatives=alts)
        alternatives: list[Alternative] = []
        for n, fix in enumerate(fixes):
            for alt in fix.alternatives:
                done, _ = probe.chain(tuple(fixes[:n]), alt)
                alternatives.append(Alternative(n + 1, tuple(done or (alt,))))
        shown = trace if trace is not None else after if after is not None else Trace((), _no_trace())
        return made(shown, verdict, where, why, obj, tuple(fixes), alternatives=tuple(alternatives))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _no_address(state: Path, snap: CloudSnapshot, names: Names, world: World, src: str, dst: str, proto: str,
                dport: int, packet: Packet) -> Diagnosis:
    """The source has no address, so it sends nothing to ``dst``: its DHCP exchange is the
    obstacle. Diagnosed as ``--proto dhcp`` (where the DISCOVER stops, why, the fixes checked by
    the DHCP answer they bring), under the question that was asked."""
    trace = annotate(world.probe(src, "-", proto="dhcp", src_mac=packet.src_mac), names)
    made = partial(Diagnosis, src, dst, proto, dport, src_mac=packet.src_mac)
    head = f"not reachable: {src} has no address"
    v = trace.failure
    if v is None:  # DHCP answers now (the world's boot was earlier): nothing to fix in the network
        return made(trace, f"{head}, though its DHCP DISCOVER is answered now: boot it again", trace.verdict.where)
    why = f"{src} sends nothing to {dst}: it got no address, because its DHCP exchange fails: {_why(trace)}"
    first = _next_fix(snap, names, trace, src, "-", "dhcp", 22, None, world, packet)
    if first is None:
        return made(trace, f"{head} (no DHCP answer)", v.where, why, v.obj)
    why = f"{src} sends nothing to {dst}: it got no address. " + (first.why or why)
    where = first.where or v.where
    tmp = Path(tempfile.mkdtemp(prefix="neutrino-diagnose-"))
    try:
        probe = _Probe(state, tmp, src, "-", "-", "dhcp", 22, packet, None)
        fixes, _after = probe.chain((), first)
        if fixes is None:
            return made(trace, f"{head} (no DHCP answer)", where, why, first.obj, (first,), checked=False)
        return made(trace, f"{head} (no DHCP answer)", where, why, first.obj, tuple(fixes))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _spoofed(snap: CloudSnapshot, src: str, packet: Packet) -> str | None:
    """The source address (else MAC) the packet was given that is not the sender's port's own."""
    server = _server(snap, src)
    port = _first_port(snap, server) if server is not None else None
    if port is None:
        return None
    if packet.src_ip and all(str(f.ip_address) != packet.src_ip for f in port.fixed_ips):
        return packet.src_ip
    if packet.src_mac and packet.src_mac.lower() != port.mac_address.lower():
        return packet.src_mac.lower()
    return None


@dataclass
class _Probe:
    """Tries fixes on copies of the cloud: each chain on a fresh copy of its own."""

    state: Path
    tmp: Path
    src: str
    dst: str
    target: str
    proto: str
    dport: int
    packet: Packet
    spoofed: str | None
    copies: int = 0

    def chain(self, before: tuple[Fix, ...], fix: Fix | None) -> tuple[list[Fix] | None, Trace | None]:
        """``before`` applied, then ``fix`` and the fixes the traces after it call for, each
        checked; None when the cloud cannot be copied."""
        self.copies += 1
        into = self.tmp / str(self.copies)
        into.mkdir()
        cloud = copy_cloud(self.state, into)
        if cloud is None:
            return None, None
        sender = self.src
        for b in before:
            b.apply(cloud)
            sender = b.source or sender
        fixes: list[Fix] = []
        after: Trace | None = None
        sized: int | None = None
        while fix is not None and len(fixes) < MAX_FIXES:
            try:
                fix.apply(cloud)
            except NeutrinoError as exc:
                fixes.append(replace(fix, works=False, after=f"refused: {exc}"))
                break
            sender = fix.source or sender
            sized = fix.size or sized
            new = cloud.snapshot()
            world, new_names = world_for(new)
            to = self.target
            server = _server(new, self.dst)
            if sender == OUTSIDE and server is not None:
                port = _first_port(new, server)
                fip = _fip_of(new, port) if port is not None else None
                to = str(fip) if fip is not None else self.target
            if sender == OUTSIDE and not _is_address(to):
                fixes.append(replace(fix, works=False, after="still no address to reach it by"))
                break
            given = self.packet.probe_args() if sender == self.src else {}
            if sized is not None or self.packet.size is not None:
                given["size"] = sized or self.packet.size
            after = annotate(world.probe(sender, to, proto=self.proto, dport=self.dport, **given), new_names)
            ok, said = _outcome(after, to, self.spoofed if sender == self.src else None, self.proto)
            fixes.append(replace(fix, works=ok, after=said))
            if ok:
                break
            sender_ip = world.guests[sender].ip if sender in world.guests else None
            fix = _next_fix(new, new_names, after, sender, to, self.proto, self.dport, sender_ip, world,
                            self.packet if sender == self.src else None)
        return fixes, after


def _outcome(after: Trace, to: str, spoofed: str | None = None, proto: str = "icmp") -> tuple[bool, str]:
    """Whether the network now carries the exchange, in words. A reset from the destination itself
    means the packet got through and nothing listens there: the fix did its part. With a spoofed
    source, the request arriving is the network's part: the answer goes to the address given,
    which the sender must hold too."""
    v = after.failure
    if v is None:
        if proto == "dhcp":
            return True, "dnsmasq answers the DISCOVER with an OFFER"
        return True, f"{to}: the request arrives and the answer comes back"
    if v.reason is DropReason.REFUSED and after.delivered:
        return True, (f"the packet now reaches {after.verdict.where}; it answers with a reset: "
                      "nothing listens "
                      f"on that port there")
    if spoofed is not None and after.delivered:
        return True, (f"the packet now reaches {after.verdict.where or to}; the answer goes back to {spoofed}, "
                      "which the sender must hold too (on its interface) for the exchange to complete")
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


PROTOCOLS = ("icmp", "tcp", "udp", "http", "arp", "dhcp")


def check_args(proto: str, dport: str | int | None) -> int:
    """The destination port to trace (22 unless given); a one-line error for an unknown protocol,
    a port out of range, or a port given to a protocol that has none (icmp, arp, dhcp; http is
    tcp/80)."""
    if proto not in PROTOCOLS:
        raise InvalidInput(f"--proto {proto}: one of {', '.join(PROTOCOLS)}")
    if dport is None:
        return 22
    if isinstance(dport, str):
        try:
            dport = int(dport, 10)
        except ValueError:
            raise InvalidInput(f"--dport {dport}: a port is a number from 1 to 65535") from None
    if proto not in ("tcp", "udp"):
        has = "http is tcp/80" if proto == "http" else f"{proto} has no ports"
        raise InvalidInput(f"--dport {dport} with --proto {proto}: {has} (--dport is for tcp and udp)")
    if not 1 <= dport <= 65535:
        raise InvalidInput(f"--dport {dport}: a port is a number from 1 to 65535")
    return dport


def _diagnose_imported(world: World, src: str, dst: str, proto: str, dport: int, packet: Packet) -> Diagnosis:
    """An imported deployment (no cloud, so no API object to fix): where it stops, why, the port,
    chain and rule from the captures, and what to change on the host."""
    from neutrino.answers.objects import ImportedNames

    names = ImportedNames.of_world(world)
    trace = annotate(world.probe(src, dst, proto=proto, dport=dport, **packet.probe_args()), names)
    made = partial(Diagnosis, src, dst, proto, dport, src_ip=packet.src_ip, src_mac=packet.src_mac)
    if trace.succeeded:
        return made(trace, _summary(trace), reachable=True)
    v = trace.failure
    assert v is not None
    return made(trace, _summary(trace), v.where, _why(trace), on_host=_host_change(trace, proto, dport))


def _host_change(trace: Trace, proto: str, dport: int) -> str:
    """What to change on the host for the drop: a rule before the chain's fallback (security
    groups are the cloud's to change, where the port's owner can), else the dropping step's."""
    v = trace.failure
    if v is None:
        return ""
    t = trace if not trace.delivered or trace.reply is None else trace.reply
    hop = next((h for h in reversed(t.hops) if f"{h.host} {h.element}" == v.where), None)
    if hop is None:
        return ""
    texts = [st.text for st in hop.steps if st.text.startswith("-A ")]
    if v.reason is DropReason.SECURITY_GROUP and texts:
        chain = next((t.split()[1] for t in reversed(texts) if _is_port_chain(t.split()[1])), texts[-1].split()[1])
        match = "-p icmp" if proto == "icmp" else f"-p {'tcp' if proto == 'http' else proto} -m " \
            f"{'tcp' if proto == 'http' else proto} --dport {80 if proto == 'http' else dport}"
        target = "ACCEPT" if chain.startswith("nova-") else "RETURN"
        return (f"on {hop.host}, chain {chain} lets no such packet through; its rules are the port's security "
                f"groups': add a rule to one of them where the cloud is managed, or, on {hop.host} until the "
                f"agent rewrites it: iptables -I {chain} 1 {match} -j {target}")
    st = _drop_step(trace, v.where)
    if st is not None and st.text:
        return f"on {hop.host}, {hop.element}: {st.text}" + (f" ({st.detail})" if st.detail else "")
    return ""


def _is_port_chain(chain: str) -> bool:
    from neutrino.answers.objects import _CHAIN_PORT

    return bool(re.compile(_CHAIN_PORT).search(chain)) or chain.startswith("nova-compute-inst-")
