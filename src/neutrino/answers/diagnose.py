"""``neutrino diagnose A B``: does the packet get through, and if not, where it stops, why, which
object to change and the command that changes it, each fix checked before it is offered.

A fix is checked by applying it to a copy of the cloud's database through the services layer
(the same code the API runs), planning every host again (:func:`neutrino.plan.plan_cloud`),
booting a world of the new plan (:func:`neutrino.sim.cloud.world_of`) and tracing again. When the
trace after a fix stops somewhere else, the next fix is looked for on the same copy, so the
answer is the whole list of changes that makes the exchange work (or says how far it got).

Fixes known: a security-group rule the packet lacks (``openstack security group rule create``,
nova-network's ``nova secgroup-add-rule``), a subnet with no router interface (``openstack router
add subnet``), an instance without a floating IP (``openstack floating ip set`` / ``create``).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

from neutrino.answers.objects import Names, annotate
from neutrino.errors import InvalidInput, NeutrinoError
from neutrino.scenarios.model import Mechanism
from neutrino.services.cloud import Cloud
from neutrino.services.snapshot import CloudSnapshot, Port, Server
from neutrino.sim.trace import DropReason, Trace
from neutrino.sim.world import OUTSIDE, World

MAX_FIXES = 3


@dataclass(frozen=True)
class Fix:
    obj: str  # the object to change, by name and id
    command: str  # the fix, pasteable
    apply: Callable[[Cloud], None] = field(repr=False, compare=False)
    works: bool | None = None  # after this fix (and the ones before it) the exchange succeeds
    after: str = ""  # the verdict once applied


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


def _router_fix(snap: CloudSnapshot, names: Names, port: Port) -> Fix | None:
    subnet = next((snap.subnet(f.subnet_id) for f in port.fixed_ips
                   if isinstance(f.ip_address, IPv4Address)), None)
    if subnet is None:
        return None
    attached = {f.subnet_id for r in snap.routers for pid in r.interface_port_ids
                for f in snap.port(pid).fixed_ips}
    if subnet.id in attached:
        return None
    router = next((r for r in snap.routers if r.project_id == port.project_id and r.gateway is not None),
                  None) \
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


def _next_fix(snap: CloudSnapshot, names: Names, trace: Trace, src: str, dst: str, proto: str, dport: int,
              src_ip: IPv4Address | None) -> Fix | None:
    """The change that removes the first obstacle ``trace`` met."""
    v = trace.failure
    if v is None:
        return None
    if v.reason is DropReason.SECURITY_GROUP:
        port, direction = _dropping_port(names, trace)
        if port is None:
            return None
        if direction == "ingress":
            peer = "0.0.0.0/0" if src == OUTSIDE or src_ip is None else f"{src_ip}/32"
        else:
            peer = "0.0.0.0/0"
        return _sg_fix(snap, names, port, direction, proto, dport, peer)
    if v.reason in (DropReason.NO_ROUTE, DropReason.ARP_UNANSWERED) and src != OUTSIDE:
        server = _server(snap, src)
        port = _first_port(snap, server) if server is not None else None
        if port is not None:
            return _router_fix(snap, names, port)
    return None


def _dropping_port(names: Names, trace: Trace) -> tuple[Port | None, str]:
    from neutrino.answers.objects import _CHAIN_PORT, _NOVA_JUMP

    t = trace if not trace.delivered or trace.reply is None else trace.reply
    where = t.verdict.where
    for hop in reversed(t.hops):
        if f"{hop.host} {hop.element}" != where:
            continue
        for st in reversed(hop.steps):
            nova = _NOVA_JUMP.match(st.text)
            if nova:
                ip = nova.group("ip")
                port = next((p for p in names.cloud.ports
                             if any(str(f.ip_address) == ip for f in p.fixed_ips)), None)
                return port, "ingress"
            m = _CHAIN_PORT.search(st.text.split()[1] if st.text.startswith("-A ") else "")
            if m:
                return names.port_of_prefix(m.group("id")), "ingress" if m.group("dir") == "i" else "egress"
        port = names.port_of_device(hop.device) or names.port_of_device(hop.element)
        if port is not None:
            return port, "ingress" if hop.device.startswith(("qvb", "vnet")) else "egress"
    return None, ""


def _summary(trace: Trace) -> str:
    v = trace.failure
    if v is None:
        return "reachable: the request arrived and the answer came back"
    return f"not reachable: {v.reason.value if v.reason else 'dropped'}"


def _why(trace: Trace) -> str:
    v = trace.failure
    if v is None:
        return ""
    if v.reason is DropReason.SECURITY_GROUP and v.obj.startswith("no rule"):
        return v.obj + "."
    text = v.detail or v.reason.value if v.reason else v.detail
    return f"{v.reason.value if v.reason else 'dropped'}: {text}" + (f" ({v.obj})" if v.obj else "") + "."


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
        first = _next_fix(snap, names, trace, src, target, proto, dport, src_ip)
        obj = first.obj if first is not None else v.obj
        if first is not None:
            pre.append(first)
    if not pre:
        assert trace is not None
        return Diagnosis(src, target, proto, dport, trace, verdict, where, why, obj)
    return _check(state, snap, names, src, dst, target, proto, dport, pre[0], trace, verdict, where, why, obj,
                  src_ip)


def _check(state: Path, snap: CloudSnapshot, names: Names, src: str, dst: str, target: str, proto: str,
           dport: int, first: Fix, trace: Trace | None, verdict: str, where: str, why: str, obj: str,
           src_ip: IPv4Address | None) -> Diagnosis:
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
        while fix is not None and len(fixes) < MAX_FIXES:
            try:
                fix.apply(cloud)
            except NeutrinoError as exc:
                fixes.append(Fix(fix.obj, fix.command, fix.apply, False, f"refused: {exc}"))
                break
            new = cloud.snapshot()
            world = world_for(new)
            new_names = Names(new)
            to = target
            server = _server(new, dst)
            if src == OUTSIDE and server is not None:
                port = _first_port(new, server)
                fip = _fip_of(new, port) if port is not None else None
                to = str(fip) if fip is not None else target
            if src == OUTSIDE and not _is_address(to):
                fixes.append(Fix(fix.obj, fix.command, fix.apply, False, "still no address to reach it by"))
                break
            after = annotate(world.probe(src, to, proto=proto, dport=dport), new_names)
            ok, said = _outcome(after, to)
            fixes.append(Fix(fix.obj, fix.command, fix.apply, ok, said))
            if ok:
                break
            fix = _next_fix(new, new_names, after, src, to, proto, dport, src_ip)
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
