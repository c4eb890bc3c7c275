"""The Linux backend's entry point: build planned hosts for real, read them back, tear them down.

Usage (as root; see tests/linux/test_realize.py)::

    from neutrino.linux.realize import realize, down
    up = bring_up("examples/seed000.yaml")
    r = realize(up.hosts, scenario.deployment, prefix=derive_prefix(state), state_dir=state, guests=guests)
    r.leases()
    # -> {'cirros': IPv4Interface('10.1.0.2/24')}
    r.exec("network", ["ping", "-c1", "172.24.4.225"], namespace="qrouter-…").returncode
    # -> 0
    r.diff("compute").empty
    # -> True
    r.down()

Names and records: see :mod:`neutrino.linux.records` (``<prefix>-<host>``, ``<prefix>-<host>-qrouter-<id>``,
``<prefix>-vm-<server>``, ``<prefix>-net-mgmt``/``<prefix>-net-ext``); ``realize`` claims the prefix
machine-wide and ``down`` releases it; wires and guests: :mod:`neutrino.linux.fabric`; the reconciler:
:mod:`neutrino.linux.readback` (``read_back``, ``diff``), :mod:`neutrino.linux.apply` and
:meth:`Realized.reconcile` (the difference applied and said in words, :mod:`neutrino.linux.report`);
what ``sync`` repairs first: :mod:`neutrino.linux.heal`.

A bring-up writes every namespace down first, in a fixed order (guests, hosts, wires), makes them
all at once, then builds the hosts in parallel, a thread each (:func:`_build_host`: its OVS beside
its uplinks' veths, ``br-phy``, the plan read back and applied, its metadata service started as soon
as its namespace exists), the outside beside them; then the underlay is awaited, keepalived started,
the guests booted at once, and the metadata services awaited (through ``/proc``, not ``ss``).

br_netfilter here is built into the kernel and its ``net.bridge.bridge-nf-call-*`` sysctls are per
network namespace (kernel >= 5.3), so each host namespace sets ``bridge-nf-call-iptables=1`` for
itself and the hybrid plug's ``-m physdev`` rules see bridged traffic, without touching the root
namespace's value.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neutrino.errors import Conflict, NotFound
from neutrino.host.state import HostState
from neutrino.linux import netns as netns_lib
from neutrino.linux.apply import (
    GuestEnd,
    Place,
    apply_diff,
    dnsmasq_what,
    make_namespaces,
    process_ns,
    real_dnsmasq_argv,
)
from neutrino.linux.fabric import (
    EXT,
    Guest,
    Nic,
    boot_guest,
    build_outside,
    ext_users,
    join_ext,
    join_phy,
    make_wire,
    nic_ports,
    plan_nics,
    spawn,
    uplinks,
    wait_underlay,
    wires_of,
)
from neutrino.linux.keepalived import start_for as start_keepalived
from neutrino.linux.ovs import OVS_DAEMONS, OvsInstance
from neutrino.linux.readback import HostDiff, HostView, diff, read_back
from neutrino.linux.records import (
    Record,
    check_prefix,
    claim_owner,
    claim_prefix,
    guest_ns,
    host_ns,
    namespaces_named,
    planned_ns,
    record_path,
    teardown,
    wire_ns,
)
from neutrino.linux.report import describe
from neutrino.linux.runner import Result, parallel_steps, run, wait_for
from neutrino.scenarios.model import Deployment

log = logging.getLogger(__name__)

_MAX_SOCKET = 100  # sun_path is 108 bytes; leave room for "br-xxxxx.mgmt"

__all__ = ["Guest", "Realized", "down", "realize"]


@dataclass
class Realized:
    """A cloud built on this machine: each host's place, the plan, the guests."""

    prefix: str
    state_dir: Path
    hosts: dict[str, HostState]
    places: dict[str, Place]
    guests: tuple[Guest, ...]
    record: Record
    timings: dict[str, float] = field(default_factory=dict)
    deployment: Deployment | None = None

    def namespace(self, host: str, namespace: str | None = None) -> str:
        """The real namespace for ``namespace`` (planned name, ``vm-<server>``, or a real name) of ``host``."""
        place = self._place(host)
        if not namespace:
            return place.netns
        if namespace in place.ns_real:
            return place.ns_real[namespace]
        if namespace.startswith("vm-"):
            namespace = guest_ns(self.prefix, namespace[3:])
        if namespace in self.record.namespaces:
            return namespace
        raise NotFound(f"host {host} has no namespace {namespace!r}")

    def exec(self, host: str, argv: Sequence[str], namespace: str | None = None, *, timeout: float = 60.0) -> Result:
        """Run ``argv`` in ``host`` (or one of its namespaces; planned names accepted)."""
        return run(list(argv), netns=self.namespace(host, namespace), check=False, timeout=timeout)

    def _place(self, host: str) -> Place:
        try:
            return self.places[host]
        except KeyError:
            raise NotFound(f"no realized host {host!r}") from None

    def view(self, host: str) -> HostView:
        place = self._place(host)
        planned = self.hosts[host]
        keys = tuple((ns.name, tuple(s.key for s in ns.sysctls or ())) for ns in planned.namespaces)
        names = tuple(sorted(place.ns_real.items(), key=lambda kv: (kv[0] != "", kv[0])))
        return HostView(host, place.netns, names, place.ovs, tuple(sorted(place.paths.items())), keys)

    def read_back(self, host: str) -> HostState:
        return read_back(self.view(host))

    def diff(self, host: str) -> HostDiff:
        return diff(self.hosts[host], self.read_back(host))

    def apply(self, host: str) -> HostDiff:
        """Apply only what differs; returns the difference that was applied."""
        d = self.diff(host)
        if not d.empty:
            apply_diff(self._place(host), self.hosts[host], d, self.record)
        return d

    def reconcile(self, host: str) -> list[str]:
        """Read ``host`` back, apply what differs from the plan, and say what was done, one line per
        change in the tools' syntax (:func:`neutrino.linux.report.describe`); ``[]`` when nothing."""
        place = self._place(host)
        desired = self.hosts[host]
        actual = self.read_back(host)
        d = diff(desired, actual)
        if d.empty:
            return []
        before = {p.what for p in self.record.processes}
        apply_diff(place, desired, d, self.record)
        guest_ns = {dev: g.netns for dev, g in place.guests.items()}
        lines = describe(d, desired, actual, tunnel_ip=place.tunnel_ip, guest_ns=guest_ns, processes=False)
        for proc in d.processes:
            pid_file = Path(place.real_path(proc.options.pid_file or ""))
            pid = pid_file.read_text().strip() if pid_file.is_file() else "?"
            ns = process_ns(desired, proc)
            verb = "restarted" if dnsmasq_what(desired, proc) in before else "started"
            lines.append(f"{verb} dnsmasq (pid {pid}) in {ns or 'the host'}: {shlex.join(proc.argv)}")
        return lines

    def leases(self) -> dict[str, ipaddress.IPv4Interface | None]:
        """Each guest's IPv4 address on eth0 (what DHCP gave it), by server name."""
        out: dict[str, ipaddress.IPv4Interface | None] = {}
        for g in self.guests:
            res = run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], netns=guest_ns(self.prefix, g.server),
                      check=False)
            toks = res.stdout.split()
            out[g.server] = ipaddress.IPv4Interface(toks[toks.index("inet") + 1]) if "inet" in toks else None
        return out

    def dhcp_of(self, server: str) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv4Address | None]:
        """The router and the DHCP server a guest's lease named (what udhcpc's script wrote down)."""
        workdir = self.state_dir / "linux" / self.prefix / f"vm-{server}"

        def read(name: str) -> ipaddress.IPv4Address | None:
            path = workdir / f"{name}-eth0"
            words = path.read_text().split() if path.exists() else []
            return ipaddress.IPv4Address(words[0]) if words else None

        return read("router"), read("server")

    def down(self) -> None:
        down(self.prefix, self.state_dir)


def _socket_dir(state_dir: Path, prefix: str, host: str) -> Path:
    rundir = state_dir / "linux" / prefix / host / "ovs"
    if len(str(rundir)) + 16 > _MAX_SOCKET:
        rundir = Path("/run/neutrino") / prefix / host
    return rundir


def tunnel_prefixlens(deployment: Deployment, places: Sequence[Place]) -> dict[str, int]:
    """Each host's tunnel address's prefix length (24 when the deployment gives none)."""
    return {p.host: _prefixlen(deployment, p.host, p.tunnel_ip or "") for p in places}


def _prefixlen(deployment: Deployment, host: str, ip: str) -> int:
    for h in deployment.hosts:
        if h.name != host:
            continue
        for _, cidr in h.interfaces:
            if cidr and "/" in cidr and cidr.split("/")[0] == ip:
                return int(cidr.split("/")[1])
    return 24


def realize(hosts: tuple[HostState, ...], deployment: Deployment, *, prefix: str, state_dir: Path,
            guests: Sequence[Guest] = ()) -> Realized:
    """Build every planned host in its own namespace, wire them, boot the guests."""
    check_prefix(prefix)
    state_dir = Path(state_dir)
    if record_path(prefix, state_dir).exists():
        raise Conflict(f"prefix {prefix} is already realized (run down first)")
    if namespaces_named(prefix):  # not this state directory's (it has no record): never touch them
        raise Conflict(f"namespaces named {prefix}-… exist that this state directory did not make")
    if not claim_prefix(prefix, state_dir):
        raise Conflict(f"prefix {prefix} is held by another state directory ({claim_owner(prefix)})")
    t0 = time.monotonic()
    record = Record(prefix, record_path(prefix, state_dir))
    record.save()
    by_name = {h.name: h for h in deployment.hosts}
    places: dict[str, Place] = {}
    try:
        for h in hosts:
            ns = host_ns(prefix, h.name)
            spec = by_name.get(h.name)
            tunnel = str(spec.tunnel_ip) if spec is not None and spec.tunnel_ip is not None else None
            ns_real = {"": ns, **{n: planned_ns(prefix, h.name, n) for n in h.namespace_names()}}
            guest_ends = {g.device: GuestEnd(guest_ns(prefix, g.server), g.mac, g.mtu) for g in guests
                          if g.host == h.name}
            ovs = OvsInstance(ns, str(_socket_dir(state_dir, prefix, h.name)))
            places[h.name] = Place(h.name, ns, ns_real, ovs, state_dir / "linux" / prefix / h.name, tunnel,
                                   guest_ends, spawn=functools.partial(spawn, record))
        realized = Realized(prefix, state_dir, {h.name: h for h in hosts}, places, tuple(guests), record,
                            deployment=deployment)
        plist = [places[h.name] for h in hosts]
        nics = plan_nics(hosts, deployment)
        ext_bridge = deployment.external_network_bridge or "br-ex"
        users = ext_users(plist, hosts, ext_bridge, nics)
        outside = bool(users) or any(n.wire == EXT for n in nics)
        wires = wires_of(nics, outside=outside)
        # everything written down first (in a fixed order), then made: the hosts in parallel, each
        # step of them waiting for the last (namespaces, then the wires between them, then the plan)
        record.add_namespaces([*((guest_ns(prefix, g.server), f"vm/{g.server}") for g in guests),
                               *((p.netns, f"{p.host}/") for p in plist),
                               *((wire_ns(prefix, w), None) for w in wires)])
        for p in plist:
            record.add_rundir(p.ovs.rundir)
        steps: list[Callable[[], object]] = [
            *(functools.partial(netns_lib.add, guest_ns(prefix, g.server)) for g in guests),
            *(functools.partial(_host_ns, p.netns) for p in plist),
            *(functools.partial(make_wire, prefix, w) for w in wires)]
        if not netns_lib.run_dir_mounted():
            # the first ``ip netns add`` on this machine makes the run directory a mount point; two
            # at once could both do it: one first, alone
            steps.pop(0)()
        parallel_steps(steps)
        build = functools.partial(_build_host, realized, tunnel_prefixlens(deployment, plist), nic_ports(nics),
                                  {p.host: i for i, p in enumerate(users)}, ext_bridge, _write_metadata(realized),
                                  metadata_targets(hosts))
        spawned: dict[str, list[tuple[str, int, int]]] = {}  # host -> its metadata services (not awaited)

        def host(index: int, place: Place) -> None:
            spawned[place.host] = build(index, place)

        parallel_steps([functools.partial(build_outside, record, prefix, hosts, deployment, nics, force=bool(users)),
                        *(functools.partial(host, i, p) for i, p in enumerate(plist))])
        wait_underlay(plist)
        realized.timings["plumbing"] = time.monotonic() - t0
        start_keepalived(realized, hosts)  # HA routers: the planned master first
        parallel_steps([functools.partial(boot_guest, record, guest_ns(prefix, g.server),
                                          state_dir / "linux" / prefix / f"vm-{g.server}") for g in guests])
        for real, port, pid in (x for started in spawned.values() for x in started):
            wait_for(functools.partial(_pid_listens, pid, real, port), timeout=15,
                     what=f"the metadata service on {real}:{port}")
        realized.timings["up"] = time.monotonic() - t0
        return realized
    except BaseException:
        log.exception("realize %s failed; tearing down what was made", prefix)
        down(prefix, state_dir)
        raise


def attach(hosts: tuple[HostState, ...], deployment: Deployment, *, prefix: str, state_dir: Path,
           guests: Sequence[Guest] = ()) -> Realized:
    """The :class:`Realized` of a cloud ``realize`` built earlier (from another process), for
    ``hosts`` as now planned: every name is derived the way ``realize`` derived it and the record
    says what exists. Nothing is created here; ``apply`` then reconciles each host."""
    state_dir = Path(state_dir)
    if not record_path(prefix, state_dir).exists():
        raise NotFound(f"nothing is realized under prefix {prefix}")
    record = Record.load(prefix, state_dir)
    by_name = {h.name: h for h in deployment.hosts}
    places: dict[str, Place] = {}
    for h in hosts:
        ns = host_ns(prefix, h.name)
        if ns not in record.namespaces:
            raise NotFound(f"host {h.name} was not realized (it is new to the plan): bring the cloud up again")
        spec = by_name.get(h.name)
        tunnel = str(spec.tunnel_ip) if spec is not None and spec.tunnel_ip is not None else None
        ns_real = {"": ns, **{n: planned_ns(prefix, h.name, n) for n in h.namespace_names()}}
        guest_ends = {g.device: GuestEnd(guest_ns(prefix, g.server), g.mac, g.mtu) for g in guests if g.host == h.name}
        place = Place(h.name, ns, ns_real, OvsInstance(ns, str(_socket_dir(state_dir, prefix, h.name))),
                      state_dir / "linux" / prefix / h.name, tunnel, guest_ends, spawn=functools.partial(spawn, record))
        for f in h.files:  # the same real paths realize gave them, so read-back maps them home
            place.real_path(f.path)
        for proc in h.processes or ():
            real_dnsmasq_argv(place, proc)
        places[h.name] = place
    return Realized(prefix, state_dir, {h.name: h for h in hosts}, places, tuple(guests), record,
                    deployment=deployment)


def metadata_targets(hosts: Sequence[HostState]) -> list[tuple[str, str, int]]:
    """Where the plan sends metadata requests: (host, planned namespace, port) for each router's
    REDIRECT to 9697 and for nova's DNAT to the API address's 8775."""
    out: list[tuple[str, str, int]] = []
    for h in hosts:
        for ns in h.namespaces:
            nat = ns.iptables.find("nat") if ns.iptables is not None else None
            for r in nat.rules if nat is not None else ():
                if r.target is None:
                    continue
                if r.target.name == "REDIRECT" and r.target.value("to-ports") == "9697":
                    out.append((h.name, ns.name, 9697))
                elif r.target.name == "DNAT" and (r.target.value("to-destination") or "").endswith(":8775"):
                    ip = (r.target.value("to-destination") or "").rsplit(":", 1)[0]
                    for h2 in hosts:
                        for ns2 in h2.namespaces:
                            if any(str(a.interface.ip) == ip for lk in ns2.links or () for a in lk.addresses):
                                out.append((h2.name, ns2.name, 8775))
    return list(dict.fromkeys(out))


def _listening(netns: str, port: int) -> bool:
    return f":{port} " in run(["ss", "-ltnH"], netns=netns, check=False).stdout


def _pid_listens(pid: int, netns: str, port: int) -> bool:
    """Whether a tcp socket listens on ``port`` in ``netns``, read from ``/proc/PID/net/tcp`` (the
    sockets of the namespace process ``pid`` is in) once ``pid`` is in ``netns``: ``ss`` without a
    process to run."""
    try:
        here, there = os.stat(f"/proc/{pid}/ns/net"), os.stat(os.path.join(netns_lib.NETNS_DIR, netns))
        if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
            return False  # not yet (``ip netns exec`` has not entered it) or not any more
        with open(f"/proc/{pid}/net/tcp") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return False
    suffix = f":{port:04X}"
    return any(f[1].endswith(suffix) and f[3] == "0A" for f in (line.split() for line in lines) if len(f) > 3)


def _write_metadata(realized: Realized) -> Path:
    """The metadata service's instance map (each guest's fixed IP -> its number), written down."""
    instances = {str(g.ip): i for i, g in enumerate(realized.guests, 1) if g.ip is not None}
    path = realized.state_dir / "linux" / realized.prefix / "metadata.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(instances))
    return path


def _spawn_metadata(place: Place, ns: str, port: int, path: Path) -> int:
    if place.spawn is None:
        raise ValueError("no way to start processes")
    return place.spawn([sys.executable, "-m", "neutrino.linux.metadata", str(port), str(path)], place.real(ns),
                       f"metadata {place.host} {ns or 'root'}:{port}")


def start_metadata(realized: Realized, hosts: Sequence[HostState], *, missing_only: bool = False) -> list[str]:
    """A metadata responder wherever the plan sends metadata requests (see :mod:`.metadata`); with
    ``missing_only``, only where none listens (one died). Returns what was started, in words."""
    path = _write_metadata(realized)
    out: list[str] = []
    for host, ns, port in metadata_targets(hosts):
        place = realized.places.get(host)
        if place is None or place.spawn is None:
            continue
        real = place.real(ns)
        if missing_only and (not netns_lib.exists(real) or _listening(real, port)):
            continue
        pid = _spawn_metadata(place, ns, port, path)
        wait_for(functools.partial(_pid_listens, pid, real, port), timeout=15,
                 what=f"the metadata service on {real}:{port}")
        out.append(f"{host}: {'restarted' if missing_only else 'started'} the metadata service on port {port} "
                   f"(pid {pid}) in {ns or 'the host'}")
    return out


def _host_ns(netns: str) -> None:
    netns_lib.add(netns)
    # per-namespace br_netfilter switch (kernel >= 5.3): physdev rules see bridged frames here
    run(["sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1"], netns=netns, check=False)


def _build_host(realized: Realized, prefixlens: dict[str, int], ports: list[tuple[Nic, str]],
                ext_index: dict[str, int], ext_bridge: str, metadata: Path, targets: list[tuple[str, str, int]],
                index: int, place: Place) -> list[tuple[str, int, int]]:
    """One host, from its namespace on (each host in a thread of its own): its private Open vSwitch,
    its uplinks into the wires (``br-phy``, its NICs), its plan applied, its ``ex0`` uplink (when the
    plan names none), and its metadata services started as soon as their namespaces exist (a Python
    process takes a while to listen; not awaited here: (real namespace, port, pid) each)."""
    record = realized.record
    ext = ext_index.get(place.host)
    parallel_steps([functools.partial(_start_ovs, record, place),
                    functools.partial(uplinks, realized.prefix, place, ports, mgmt=index, ext=ext)])
    join_phy(place, prefixlens.get(place.host, 24))
    d = realized.diff(place.host)
    make_namespaces(place, d, record)
    started = [(place.real(ns), port, _spawn_metadata(place, ns, port, metadata))
               for host, ns, port in targets if host == place.host and place.spawn is not None]
    if not d.empty:
        apply_diff(place, realized.hosts[place.host], d, record)
    if ext is not None:
        join_ext(place, ext_bridge)
    return started


def _start_ovs(record: Record, place: Place) -> None:
    """The host's private Open vSwitch, its daemons recorded. With a tunnel address, its database
    holds ``br-phy`` from the start: the first bridge makes the userspace datapath (about 0.15 s of
    ovs-vswitchd's time), made so as it starts, while the uplinks are (:func:`join_phy` adds ul0)."""
    first = (["--", "--may-exist", "add-br", "br-phy", "--", "set", "Bridge", "br-phy", "datapath_type=netdev"]
             if place.tunnel_ip is not None else [])
    try:
        place.ovs.start(first)
    finally:
        for pid, daemon in zip(place.ovs.pids, OVS_DAEMONS, strict=False):
            record.add_process(pid, f"{daemon} {place.host}", place.netns)


def down(prefix: str, state_dir: Path) -> None:
    """Remove everything the record of ``prefix`` lists. Idempotent."""
    teardown(prefix, Path(state_dir))
