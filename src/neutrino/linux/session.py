"""The Linux backend from the command line: bring a planned cloud up for real, answer commands
inside its namespaces with the real tools, open a shell in an instance, tear it all down.

One cloud per state directory; its prefix (``nt1``) is kept in ``$NEUTRINO_STATE/linux/current``.
"""

from __future__ import annotations

import os
from pathlib import Path

from neutrino.errors import Conflict, InvalidInput, NotFound
from neutrino.host.state import HostState
from neutrino.ingest.commands import Command, View, parse_command
from neutrino.linux import netns as netns_lib
from neutrino.linux.fabric import Guest, boot_guest
from neutrino.linux.realize import Realized, _socket_dir, attach, down, realize
from neutrino.linux.records import Record, guest_ns, planned_ns, record_path
from neutrino.linux.runner import run
from neutrino.scenarios.model import Deployment
from neutrino.services.cloud import Cloud
from neutrino.services.snapshot import CloudSnapshot

PREFIX = "nt1"


def _current(state: Path) -> Path:
    return state / "linux" / "current"


def up(hosts: tuple[HostState, ...], deployment: Deployment, guests: tuple[Guest, ...], state: Path) -> Realized:
    if os.geteuid() != 0:
        raise InvalidInput("the Linux backend needs root (it builds namespaces, OVS and iptables)")
    if record_path(PREFIX, state).exists():
        raise Conflict("a cloud is already up on the Linux backend here: run 'neutrino down' first")
    realized = realize(hosts, deployment, prefix=PREFIX, state_dir=state, guests=guests)
    _current(state).parent.mkdir(parents=True, exist_ok=True)
    _current(state).write_text(PREFIX + "\n")
    return realized


def guests_for(cloud: CloudSnapshot, hosts: tuple[HostState, ...]) -> tuple[Guest, ...]:
    from neutrino.sim.cloud import guests_of

    return tuple(Guest(g.name, g.host, g.device, g.mac, g.fixed_ip)
                 for g in guests_of(cloud, {h.name: h for h in hosts}))


def mark_ports(services: Cloud, cloud: CloudSnapshot, hosts: tuple[HostState, ...]) -> int:
    """Ports whose plumbing now exists become ACTIVE (as the OVS agent reports them up); ports on a
    host that was not built, or admin-down ones, DOWN. Returns how many changed."""
    built = {h.name for h in hosts}
    changed = 0
    for port in cloud.ports:
        want = "ACTIVE" if port.binding_host in built and port.admin_state_up else "DOWN"
        if port.binding_host and port.status != want:
            services.set_port_status(port.id, want)
            changed += 1
    return changed


def sync(state: Path) -> dict[str, str]:
    """Re-plan from the database (what the API changed since) and make the kernel match, host by
    host, applying only the difference; returns each host's applied difference in words."""
    from neutrino.deploy import replan

    if not is_up(state):
        raise NotFound("no cloud is up on the Linux backend here")
    services, cloud, hosts = replan(state)
    guests = guests_for(cloud, hosts)
    marker = guest_ns(PREFIX, "")
    record = Record.load(PREFIX, state)
    known = {n[len(marker):] for n in record.namespaces if n.startswith(marker)}
    new = [g for g in guests if g.server not in known]
    for g in new:  # an instance created since: its namespace first, then its host's plumbing, then it boots
        ns = guest_ns(PREFIX, g.server)
        record.add_namespace(ns, planned=f"vm/{g.server}")
        netns_lib.add(ns)
    realized = attach(hosts, cloud.deployment, prefix=PREFIX, state_dir=state, guests=guests)
    out = {}
    for h in hosts:
        applied = realized.apply(h.name)
        out[h.name] = "nothing to do" if applied.empty else applied.summary()
    for g in new:
        boot_guest(realized.record, guest_ns(PREFIX, g.server), state / "linux" / PREFIX / f"vm-{g.server}")
        out[f"instance {g.server}"] = "namespace made, wired and booted"
    mark_ports(services, services.snapshot(), hosts)
    return out


def is_up(state: Path) -> bool:
    return _current(state).is_file() and record_path(PREFIX, state).exists()


def tear_down(state: Path) -> bool:
    if not record_path(PREFIX, state).exists():
        _current(state).unlink(missing_ok=True)
        return False
    down(PREFIX, state)
    _current(state).unlink(missing_ok=True)
    return True


def _argv(cmd: Command, host: str, state: Path) -> list[str]:
    words = cmd.text.split("|")[0].split()
    if words[:3] == ["ip", "netns", "exec"]:
        words = words[4:]
    if words and words[0] == "sudo":
        words = words[1:]
    rundir = _socket_dir(state, PREFIX, host)
    if cmd.view is View.VSCTL_SHOW:
        return ["ovs-vsctl", f"--db=unix:{rundir}/db.sock", *words[1:]]
    if cmd.view in (View.OFCTL_DUMP_FLOWS, View.OFCTL_SHOW):
        return [w if w != cmd.target else f"unix:{rundir}/{cmd.target}.mgmt" for w in words]
    if cmd.view is View.IP_NETNS:
        raise InvalidInput("on the Linux backend, list a host's namespaces with 'neutrino exec HOST -- ip netns' "
                           "answered from the plan, or 'ip netns' as root for the real names")
    return words


def exec_real(host: str, text: str, state: Path) -> str:
    """``text`` run for real inside ``host`` (or the namespace its ``ip netns exec`` names)."""
    if not is_up(state):
        raise NotFound("no cloud is up on the Linux backend here")
    cmd = parse_command(text)
    ns = planned_ns(PREFIX, host, cmd.netns)
    res = run(_argv(cmd, host, state), netns=ns, check=False)
    out = res.stdout if res.returncode == 0 else res.stdout + res.stderr
    for grep in cmd.greps:
        out = grep.apply(out)
    return out


def console_argv(server: str, state: Path) -> list[str]:
    if not is_up(state):
        raise NotFound("no cloud is up on the Linux backend here")
    return ["ip", "netns", "exec", guest_ns(PREFIX, server), "busybox", "sh"]
