"""The Linux backend from the command line: bring a planned cloud up for real, answer commands
inside its namespaces with the real tools, open a shell in an instance, tear it all down.

One cloud per state directory. Its prefix (``nt`` and four characters of a hash of the directory's
resolved path, :func:`neutrino.linux.records.derive_prefix`; the next candidate when another state
directory holds that one) is claimed machine-wide and written to ``$NEUTRINO_STATE/linux/current``
before anything carrying it is made, so two state directories never collide and ``down`` finds what
a bring-up killed mid-way made.

``sync`` repairs, then reconciles (:func:`sync`), and says what it did one line per change;
:func:`sync_host` does it for one host from a snapshot given (``neutrino agent --backend linux``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TextIO

from neutrino.agent import wired_status
from neutrino.errors import Conflict, InvalidInput, NotFound
from neutrino.host.state import HostState
from neutrino.ingest.commands import Command, View, parse_command
from neutrino.linux import heal
from neutrino.linux import netns as netns_lib
from neutrino.linux.apply import Place
from neutrino.linux.fabric import Guest, boot_guest, wait_underlay
from neutrino.linux.keepalived import start_for as start_keepalived
from neutrino.linux.realize import (
    Realized,
    _socket_dir,
    attach,
    down,
    metadata_targets,
    realize,
    start_metadata,
)
from neutrino.linux.records import (
    Record,
    check_prefix,
    claim_owner,
    claim_prefix,
    derive_prefix,
    guest_ns,
    namespaces_named,
    planned_ns,
    record_path,
    release_prefix,
)
from neutrino.linux.runner import run, wait_for
from neutrino.scenarios.model import Deployment
from neutrino.services.cloud import Cloud
from neutrino.services.snapshot import CloudSnapshot

_CANDIDATES = 16


def _current(state: Path) -> Path:
    return state / "linux" / "current"


def _recorded_prefix(state: Path) -> str | None:
    try:
        text = _current(state).read_text().strip()
    except OSError:
        return None
    return check_prefix(text) if text else None


def _free(prefix: str, state: Path) -> bool:
    owner = claim_owner(prefix)
    if owner is not None and owner != state.resolve():
        return False
    return owner is not None or not namespaces_named(prefix)


def prefix_of(state: Path) -> str:
    """The prefix of everything the Linux backend makes for ``state``: the one recorded there, else
    the first of the folder's candidates (:func:`derive_prefix`) no other state directory holds."""
    recorded = _recorded_prefix(state)
    if recorded is not None:
        return recorded
    for attempt in range(_CANDIDATES):
        prefix = derive_prefix(state, attempt)
        if _free(prefix, state):
            return prefix
    raise Conflict("no free prefix for this state directory (every candidate is held by another)")


def _claim(state: Path) -> str:
    for attempt in range(_CANDIDATES):
        prefix = derive_prefix(state, attempt)
        if _free(prefix, state) and claim_prefix(prefix, state):
            if namespaces_named(prefix):  # made by someone else since the look: leave them be
                release_prefix(prefix, state)
                continue
            return prefix
    raise Conflict("no free prefix for this state directory (every candidate is held by another)")


def up(hosts: tuple[HostState, ...], deployment: Deployment, guests: tuple[Guest, ...], state: Path) -> Realized:
    if os.geteuid() != 0:
        raise InvalidInput("the Linux backend needs root (it builds namespaces, OVS and iptables)")
    if is_up(state) or list((state / "linux").glob("nt*.json")):
        raise Conflict("a cloud is already up on the Linux backend here: run 'neutrino down' first")
    prefix = _claim(state)
    _current(state).parent.mkdir(parents=True, exist_ok=True)
    _current(state).write_text(prefix + "\n")  # first, so 'down' finds a bring-up killed mid-way
    try:
        return realize(hosts, deployment, prefix=prefix, state_dir=state, guests=guests)
    except BaseException:
        release_prefix(prefix, state)
        _current(state).unlink(missing_ok=True)
        raise


def guests_for(cloud: CloudSnapshot, hosts: tuple[HostState, ...]) -> tuple[Guest, ...]:
    from neutrino.sim.cloud import guests_of

    return tuple(Guest(g.name, g.host, g.device, g.mac, g.fixed_ip)
                 for g in guests_of(cloud, {h.name: h for h in hosts}))


def port_changes(services: Cloud, cloud: CloudSnapshot, hosts: tuple[HostState, ...]) -> list[tuple[str, str]]:
    """Ports whose plumbing now exists become ACTIVE (as the OVS agent reports them up); ports on a
    host that was not built, admin-down ones and ones whose binding failed, DOWN
    (:func:`neutrino.agent.wired_status`). Returns each (port id, new status)."""
    wanted = wired_status(cloud, hosts)
    changed = []
    for port in cloud.ports:
        want = wanted.get(port.id)
        if want is not None and port.status != want:
            try:
                services.set_port_status(port.id, want)
            except NotFound:  # deleted since the snapshot
                continue
            changed.append((port.id, want))
    return changed


def mark_ports(services: Cloud, cloud: CloudSnapshot, hosts: tuple[HostState, ...]) -> int:
    """:func:`port_changes`, counted."""
    return len(port_changes(services, cloud, hosts))


def sync(state: Path, planned: tuple[Cloud, CloudSnapshot, tuple[HostState, ...]] | None = None) -> list[str]:
    """Re-plan from the database (what the API changed since) and make the real hosts match it, as
    Neutron's OVS agent resyncs: first what died is started again (a host's ovsdb-server and
    ovs-vswitchd, on the same run directory and database; see :mod:`neutrino.linux.heal`), then each
    host is read back and only the difference applied (flows, bridges, ports, links, addresses, routes,
    iptables, dnsmasq and its files), then the backend's own underlay plumbing, the metadata service
    and the instances (a lease that is gone is asked for again by DHCP; instances created since are
    wired and booted). Returns what was done, one line per change (``host: <command>``, in the tools'
    syntax), or ``["no change"]``. ``planned``: the services, snapshot and hosts a caller (the agents)
    has just planned and kept, instead of planning them again here."""
    from neutrino.deploy import replan

    if not is_up(state):
        raise NotFound("no cloud is up on the Linux backend here")
    prefix = prefix_of(state)
    services, cloud, hosts = planned or replan(state)
    guests = guests_for(cloud, hosts)
    marker = guest_ns(prefix, "")
    record = Record.load(prefix, state)
    known = {n[len(marker):] for n in record.namespaces if n.startswith(marker)}
    new = [g for g in guests if g.server not in known]
    out: list[str] = []
    for g in new:  # an instance created since: its namespace first, then its host's plumbing, then it boots
        ns = guest_ns(prefix, g.server)
        record.add_namespace(ns, planned=f"vm/{g.server}")
        netns_lib.add(ns)
        out.append(f"instance {g.server}: ip netns add {ns}")
    realized = attach(hosts, cloud.deployment, prefix=prefix, state_dir=state, guests=guests)
    restarted: list[str] = []
    for h in hosts:
        restarted += heal.heal_ovs(realized, h.name)
    out += restarted
    for h in hosts:
        out += heal.rehome_internal(realized, h.name)
    for h in hosts:
        out += [f"{h.name}: {line}" for line in realized.reconcile(h.name)]
        stale = heal.rehome_internal(realized, h.name)  # internal ports the switch made only now (a new db)
        if stale:
            out += stale + [f"{h.name}: {line}" for line in realized.reconcile(h.name)]
    fabric: list[str] = []
    for h in hosts:
        fabric += heal.heal_fabric(realized, h.name)
    out += fabric
    if restarted or fabric:  # OVS resolves its tunnels' neighbours again before tenant traffic needs them
        wait_underlay(list(realized.places.values()))
    out += start_metadata(realized, hosts, missing_only=True)
    out += start_keepalived(realized, hosts, missing_only=True)
    out += heal.heal_guests(realized, [g for g in guests if g not in new])
    for g in new:
        boot_guest(realized.record, guest_ns(prefix, g.server), state / "linux" / prefix / f"vm-{g.server}")
        lease = realized.leases().get(g.server)
        out.append(f"instance {g.server}: wired and booted by DHCP (lease {lease})")
    out += [f"api: port {port} {status}" for port, status in port_changes(services, services.snapshot(), hosts)]
    return out or ["no change"]


def sync_host(state: Path, cloud: CloudSnapshot, host: HostState) -> list[str]:
    """:func:`sync` for one host, from a snapshot and a plan given (what ``neutrino agent --backend
    linux`` does, one process per host, after the server tells it of a change): its instances created
    since get their namespace; its OVS daemons are started again if they died; it is read back and only
    the difference applied; its share of the backend's underlay plumbing and its metadata service are
    put back; its new instances are wired and booted, the others given a lease again if theirs is gone.
    No other host is read or touched, and no database is opened. The record is shared: each process
    merges what it adds (:meth:`~neutrino.linux.records.Record.save`). Returns what was done, one line
    per change, or ``[]``."""
    if not is_up(state):
        raise NotFound("no cloud is up on the Linux backend here")
    prefix = prefix_of(state)
    name = host.name
    mine = tuple(g for g in guests_for(cloud, (host,)) if g.host == name)
    marker = guest_ns(prefix, "")
    record = Record.load(prefix, state)
    known = {n[len(marker):] for n in record.namespaces if n.startswith(marker)}
    new = [g for g in mine if g.server not in known]
    out: list[str] = []
    for g in new:
        ns = guest_ns(prefix, g.server)
        record.add_namespace(ns, planned=f"vm/{g.server}")
        netns_lib.add(ns)
        out.append(f"instance {g.server}: ip netns add {ns}")
    realized = attach((host,), cloud.deployment, prefix=prefix, state_dir=state,
                      guests=_every_guest(cloud, name, mine))
    restarted = heal.heal_ovs(realized, name)
    out += restarted
    out += heal.rehome_internal(realized, name)
    out += [f"{name}: {line}" for line in realized.reconcile(name)]
    stale = heal.rehome_internal(realized, name)
    if stale:
        out += stale + [f"{name}: {line}" for line in realized.reconcile(name)]
    fabric = heal.heal_fabric(realized, name)
    out += fabric
    if restarted or fabric:
        _wait_peers(realized.places[name], cloud.deployment)
    if metadata_targets((host,)):
        out += start_metadata(realized, (host,), missing_only=True)
    out += start_keepalived(realized, (host,), missing_only=True)
    out += heal.heal_guests(realized, [g for g in mine if g not in new])
    for g in new:
        boot_guest(realized.record, guest_ns(prefix, g.server), state / "linux" / prefix / f"vm-{g.server}")
        lease = realized.leases().get(g.server)
        out.append(f"instance {g.server}: wired and booted by DHCP (lease {lease})")
    return out


def _every_guest(cloud: CloudSnapshot, host: str, mine: tuple[Guest, ...]) -> tuple[Guest, ...]:
    """Every instance in the order :func:`guests_for` gives them: ``host``'s as planned (``mine``), the
    others' from the snapshot alone (their device is their host's business; the metadata service
    needs only their address)."""
    here = {g.server: g for g in mine}
    hosts = {h.name for h in cloud.deployment.hosts}
    out: list[Guest] = []
    for server in cloud.servers:
        if server.name in here:
            out.append(here[server.name])
        elif server.host in hosts and server.host != host and server.port_ids:
            port = cloud.port(server.port_ids[0])
            ip = next((f.ip_address for f in port.fixed_ips if f.ip_address.version == 4), None)
            out.append(Guest(server.name, server.host, "", port.mac_address, ip))
    return tuple(out)


def _wait_peers(place: Place, deployment: Deployment) -> None:
    """Until ``place`` reaches every other host's tunnel address (after its OVS or underlay came back)."""
    for other in deployment.hosts:
        ip = str(other.tunnel_ip) if other.tunnel_ip is not None else None
        if other.name == place.host or ip is None or place.tunnel_ip is None:
            continue
        wait_for(functools.partial(_reaches, place.netns, ip), timeout=20,
                 what=f"{place.host} to reach {other.name}'s tunnel address {ip}")


def _reaches(netns: str, ip: str) -> bool:
    return run(["ping", "-c", "1", "-W", "1", ip], netns=netns, check=False).returncode == 0


def is_up(state: Path) -> bool:
    prefix = _recorded_prefix(state)
    return prefix is not None and record_path(prefix, state).exists()


def tear_down(state: Path) -> bool:
    """Remove everything the backend made for ``state`` (every record there: the current prefix's,
    and any a bring-up killed before it wrote ``current`` left)."""
    prefixes = [p.stem for p in sorted((state / "linux").glob("nt*.json"))]
    recorded = _recorded_prefix(state)
    if recorded is not None and recorded not in prefixes and namespaces_named(recorded) == []:
        release_prefix(recorded, state)
    for prefix in prefixes:
        down(check_prefix(prefix), state)
    _current(state).unlink(missing_ok=True)
    return bool(prefixes)


_VSCTL_VIEWS = frozenset({View.VSCTL_SHOW, View.VSCTL_LIST, View.VSCTL_LIST_BR, View.VSCTL_LIST_PORTS})
_OFCTL_VIEWS = frozenset({View.OFCTL_DUMP_FLOWS, View.OFCTL_SHOW, View.OFCTL_DUMP_PORTS})
_APPCTL_VIEWS = frozenset({View.APPCTL_FDB_SHOW, View.APPCTL_OFPROTO_TRACE})


def _argv(cmd: Command, host: str, state: Path) -> list[str]:
    """The real command line for ``cmd`` on ``host``: the OVS tools pointed at the host's private
    Open vSwitch (its database socket, each bridge's management socket, ovs-vswitchd's control
    socket); ``ovs-dpctl show`` as ``dpctl/show`` of that ovs-vswitchd (a userspace datapath)."""
    import shlex

    try:
        words = shlex.split(cmd.text.split("|")[0])
    except ValueError as exc:
        raise InvalidInput(f"{cmd.text}: {exc}") from None
    if words[:3] == ["ip", "netns", "exec"]:
        words = words[4:]
    if words and words[0] == "sudo":
        words = words[1:]
    rundir = _socket_dir(state, prefix_of(state), host)
    if cmd.view in _VSCTL_VIEWS:
        return ["ovs-vsctl", f"--db=unix:{rundir}/db.sock", *words[1:]]
    if cmd.view in _OFCTL_VIEWS:
        return [w if w != cmd.target else f"unix:{rundir}/{cmd.target}.mgmt" for w in words]
    if cmd.view in _APPCTL_VIEWS:
        rest = words[1:]
        if rest[:1] == ["-t"] or any(w.startswith("--target") for w in rest[:1]):
            raise InvalidInput("on the Linux backend, ovs-appctl talks to the host's own ovs-vswitchd: leave -t out")
        return ["ovs-appctl", "-t", f"{rundir}/ovs-vswitchd.ctl", *rest]
    if cmd.view is View.DPCTL_SHOW:
        return ["ovs-appctl", "-t", f"{rundir}/ovs-vswitchd.ctl", "dpctl/show", *words[2:]]
    if cmd.view is View.IP_NETNS:
        raise InvalidInput("on the Linux backend, list a host's namespaces with 'neutrino exec HOST -- ip netns' "
                           "answered from the plan, or 'ip netns' as root for the real names")
    return words


def exec_real(host: str, text: str, state: Path, *, stderr: TextIO | None = None) -> str:
    """``text`` run for real inside ``host`` (or the namespace its ``ip netns exec`` names): its
    stdout, and its stderr after it when it failed. ``stderr``: where what a tool that succeeded
    wrote to stderr goes (conntrack's and tcpdump's counts; by default nowhere)."""
    if not is_up(state):
        raise NotFound("no cloud is up on the Linux backend here")
    cmd = parse_command(text)
    ns = planned_ns(prefix_of(state), host, cmd.netns)
    res = run(_argv(cmd, host, state), netns=ns, check=False)
    out = res.stdout if res.returncode == 0 else res.stdout + res.stderr
    if res.returncode == 0 and stderr is not None:
        stderr.write(res.stderr)
    for grep in cmd.greps:
        out = grep.apply(out)
    return out


def console_argv(server: str, state: Path) -> list[str]:
    if not is_up(state):
        raise NotFound("no cloud is up on the Linux backend here")
    return ["ip", "netns", "exec", guest_ns(prefix_of(state), server), "busybox", "sh"]
