"""What ``neutrino sync`` repairs before (and after) it applies the plan's difference, the way
Neutron's OVS agent resyncs after ovs-vswitchd restarts: daemons that died are started again by the
code that started them, then the host is read back and the difference applied.

* :func:`heal_ovs`: a host's ovsdb-server or ovs-vswitchd that is not running (its pid file names no
  live process of that name) is started again on the same run directory and database file
  (:meth:`~neutrino.linux.ovs.OvsInstance.start_db`, :meth:`~neutrino.linux.ovs.OvsInstance.start_switch`),
  its PID recorded. ovs-vswitchd remakes the bridges and ports the database holds; the flows, and the
  internal ports' addresses and namespaces, come back with the diff that follows. A database file
  ovsdb-server cannot open is kept aside as ``conf.db.broken`` and a fresh one made: the plan's
  bridges and ports come back with the diff, the backend's own (``br-phy``, ``ex0``) with
  :func:`heal_fabric`.
* :func:`rehome_internal`: internal ports planned in a router or DHCP namespace live on as
  persistent tap devices where the backend moved them, but a restarted ovs-vswitchd cannot see them
  there and makes new ones in the host's namespace; the stale copies are deleted so the diff moves the
  new ones in (with their addresses and routes).
* :func:`heal_fabric`: the backend's underlay plumbing that is not in any plan (``br-phy`` holding
  ``ul0`` and the tunnel address, the ``ex0`` uplink on the external bridge).
* :func:`heal_guests`: an instance whose eth0 has no address any more gets a lease again by DHCP
  (``udhcpc``), and its listeners on tcp/22 and tcp/80 are started again when they died.

A dead dnsmasq needs nothing here: the read-back no longer shows it, so the diff starts it again with
its hosts and opts files (written first).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

from neutrino.errors import ApplyError
from neutrino.host.iproute_link import LinkKind
from neutrino.linux import netns as netns_lib
from neutrino.linux.apply import Place, ip_batch
from neutrino.linux.fabric import GUEST_LISTENERS, Guest, dhcp_guest, start_listener, udhcpc_argv
from neutrino.linux.realize import Realized, tunnel_prefixlens
from neutrino.linux.records import guest_ns
from neutrino.linux.runner import run, wait_for

__all__ = ["heal_fabric", "heal_guests", "heal_ovs", "rehome_internal"]


def _restart_db(realized: Realized, place: Place) -> str:
    ovs = place.ovs
    try:
        pid = ovs.start_db()
        fresh = ""
    except ApplyError:  # the database file cannot be opened: keep it for a look, start on a new one
        os.replace(ovs.db_file, ovs.db_file + ".broken")
        pid = ovs.start_db()
        fresh = f" (a new database: {ovs.db_file} could not be opened and is kept as conf.db.broken)"
    realized.record.add_process(pid, f"ovsdb-server {place.host}", place.netns)
    return f"{place.host}: restarted ovsdb-server (pid {pid}) on {ovs.db_file}{fresh}"


def heal_ovs(realized: Realized, host: str) -> list[str]:
    """Start ``host``'s ovsdb-server and ovs-vswitchd again if they are not running."""
    place = realized.places[host]
    ovs = place.ovs
    out: list[str] = []
    if ovs.pid_of("ovsdb-server") is None:
        out.append(_restart_db(realized, place))
    if ovs.pid_of("ovs-vswitchd") is None:
        pid = ovs.start_switch()
        realized.record.add_process(pid, f"ovs-vswitchd {host}", place.netns)
        out.append(f"{host}: restarted ovs-vswitchd (pid {pid})")
    if out:  # a write makes ovs-vsctl wait until ovs-vswitchd has (re)connected and made what the db holds
        ovs.vsctl("--timeout=30", "init")
    return out


def rehome_internal(realized: Realized, host: str) -> list[str]:
    """OVS internal ports the plan has in another namespace (Stein's ``qr-``/``qg-``/``tap…``) that
    ``ovs-vswitchd`` made again in the host's namespace (it restarted, or its database was new): the
    copy left in the planned namespace is no longer OVS's and goes, so the diff moves the new one in."""
    place = realized.places[host]
    here = {ln.split(":", 2)[1].strip().split("@")[0]
            for ln in run(["ip", "-o", "link"], netns=place.netns).stdout.splitlines() if ln.count(":") >= 2}
    out: list[str] = []
    for ns in realized.hosts[host].namespaces:
        if not ns.name or not netns_lib.exists(place.real(ns.name)):
            continue
        for lk in ns.links or ():
            if lk.kind is not LinkKind.OVS_INTERNAL or lk.name not in here:
                continue
            real = place.real(ns.name)
            if run(["ip", "link", "del", "dev", lk.name], netns=real, check=False).returncode == 0:
                out.append(f"{host}: ip netns exec {ns.name} ip link del dev {lk.name}")
    return out


def _has_link(netns: str, dev: str) -> bool:
    return run(["ip", "link", "show", "dev", dev], netns=netns, check=False).returncode == 0


def _port_bridge(place: Place, port: str) -> str | None:
    res = place.ovs.vsctl("port-to-br", port, check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def heal_fabric(realized: Realized, host: str) -> list[str]:
    """Put back the backend's own plumbing of ``host`` (see :mod:`neutrino.linux.fabric`): ``ul0`` on
    ``br-phy`` with the tunnel address, and ``ex0`` on the external bridge."""
    place = realized.places[host]
    ns = place.netns
    out: list[str] = []
    if place.tunnel_ip and _has_link(ns, "ul0"):
        if _port_bridge(place, "ul0") != "br-phy":
            args = ["--may-exist", "add-br", "br-phy", "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
                    "--", "--may-exist", "add-port", "br-phy", "ul0"]
            place.ovs.vsctl(*args)
            out.append(f"{host}: ovs-vsctl {' '.join(args)}")
        wait_for(functools.partial(_has_link, ns, "br-phy"), timeout=10, what=f"OVS to make br-phy in {ns}")
        plen = tunnel_prefixlens(realized.deployment, [place])[host] if realized.deployment is not None else 24
        addr = f"{place.tunnel_ip}/{plen}"
        shown = run(["ip", "-o", "addr", "show", "dev", "br-phy"], netns=ns).stdout
        if f"inet {addr} " not in shown:
            ip_batch(ns, [f"addr add {addr} dev br-phy"])
            out.append(f"{host}: ip addr add {addr} dev br-phy")
        if "UP" not in run(["ip", "-o", "link", "show", "dev", "br-phy"], netns=ns).stdout.split(">")[0]:
            ip_batch(ns, ["link set br-phy up"])
            out.append(f"{host}: ip link set dev br-phy up")
    deployment = realized.deployment
    bridge = (deployment.external_network_bridge if deployment is not None else None) or "br-ex"
    if (_has_link(ns, "ex0") and _port_bridge(place, "ex0") is None
            and place.ovs.vsctl("br-exists", bridge, check=False).returncode == 0):
        place.ovs.vsctl("--", "--may-exist", "add-port", bridge, "ex0")
        out.append(f"{host}: ovs-vsctl --may-exist add-port {bridge} ex0")
    return out


def _listening(netns: str, port: int) -> bool:
    return f":{port} " in run(["ss", "-ltnH"], netns=netns, check=False).stdout


def heal_guests(realized: Realized, guests: Sequence[Guest]) -> list[str]:
    """Each of ``guests`` (already booted once) without an address on eth0 runs its DHCP client
    again; its listeners are started again when they died."""
    out: list[str] = []
    leases = realized.leases()
    for g in guests:
        ns = guest_ns(realized.prefix, g.server)
        if not netns_lib.exists(ns):
            continue
        workdir = realized.state_dir / "linux" / realized.prefix / f"vm-{g.server}"
        if leases.get(g.server) is None:
            got = dhcp_guest(ns, workdir, check=False)
            lease = realized.leases().get(g.server) if got else None
            out.append(f"instance {g.server}: {' '.join(udhcpc_argv(workdir)[1:])} -> "
                       + (f"lease {lease}" if lease is not None else "no lease"))
        listening = run(["ss", "-ltnH"], netns=ns, check=False).stdout
        for port, argv, _ in GUEST_LISTENERS:
            if f":{port} " not in listening:
                pid = start_listener(realized.record, ns, workdir, port)
                wait_for(functools.partial(_listening, ns, port), timeout=10, what=f"{ns} to listen on {port}")
                out.append(f"instance {g.server}: restarted {' '.join(argv[:2])} on tcp/{port} (pid {pid})")
    return out
