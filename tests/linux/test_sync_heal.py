"""``sync`` heals a Linux cloud and says what it did; each state folder has its own prefix.

Seed 000 is brought up once for the module (in a temporary state folder, through
:func:`neutrino.linux.session.up`); each test breaks something (a daemon killed by the PID the record
holds, a lease flushed, a route and an iptables rule deleted), runs :func:`neutrino.linux.session.sync`
and checks the host read back equals the plan, traffic passes again, the report is one line per
change in the tools' syntax, and a second ``sync`` reports no change. A second cloud (seed 002, whose
router and DHCP ports are OVS internal ports moved into their namespaces) brought up at the same time
from another state folder shares nothing with the first and is healed apart. The fixture tears everything down
in ``finally``; the last test checks nothing is left and the prefix is released.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from neutrino.deploy import UpResult, bring_up
from neutrino.host.openflow import format_add_flow
from neutrino.host.state import HostState
from neutrino.linux import session
from neutrino.linux.readback import flow_texts
from neutrino.linux.realize import Realized
from neutrino.linux.records import (
    CHILDREN,
    Record,
    claim_owner,
    claim_prefix,
    derive_prefix,
    guest_ns,
    namespaces_named,
    proc_start_time,
    release_prefix,
)
from neutrino.linux.runner import run, wait_for

pytestmark = pytest.mark.root
SEED000 = Path(__file__).resolve().parents[2] / "examples" / "seed000.yaml"
SEED002 = SEED000.with_name("seed002.yaml")


def root_view() -> dict[str, str]:
    """The root namespace's links, routes and iptables (which nothing here may change)."""
    return {" ".join(argv): run(argv).stdout for argv in (["ip", "-o", "link"], ["ip", "route"], ["iptables-save"])}


@dataclass
class Up:
    state: Path
    result: UpResult
    realized: Realized
    before: dict[str, str] | None = None

    @property
    def prefix(self) -> str:
        return self.realized.prefix

    def record(self) -> Record:
        return Record.load(self.prefix, self.state)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    state = tmp_path_factory.mktemp("heal")
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    before = root_view()
    try:
        result = bring_up(SEED000, state=state)
        guests = session.guests_for(result.cloud, result.hosts)
        realized = session.up(result.hosts, result.cloud.deployment, guests, state)
        yield Up(state, result, realized, before)
    finally:
        session.tear_down(state)
        mp.undo()


def _kill(up: Up, what: str) -> int:
    """SIGKILL the live recorded process ``what`` (by the PID and start time the record holds)."""
    p = next(p for p in reversed(up.record().processes) if p.what == what and proc_start_time(p.pid) == p.start)
    os.kill(p.pid, signal.SIGKILL)
    child = CHILDREN.pop(p.pid, None)
    if child is not None:
        child.wait(timeout=10)
    wait_for(lambda: proc_start_time(p.pid) != p.start, timeout=10, what=f"{what} (pid {p.pid}) to die")
    return p.pid


def _pings(netns: str, ip: str) -> bool:
    return run(["ping", "-c", "1", "-W", "1", ip], netns=netns, check=False).returncode == 0


def _flows(up: Up, host: str) -> dict[str, frozenset[str]]:
    """Each planned bridge's flows, as ``ovs-ofctl add-flow`` texts."""
    return {bf.bridge: flow_texts(bf.flows) for bf in up.realized.hosts[host].ovs.bridges if bf.flows is not None}


def _real_flows(up: Up, host: str) -> dict[str, frozenset[str]]:
    """The same bridges' flows as the real switch dumps them (learned ones, which age out, aside)."""
    back: HostState = up.realized.read_back(host)
    out = {}
    for bridge in _flows(up, host):
        bf = back.ovs.flows_of(bridge)
        flows = bf.flows.flows if bf is not None and bf.flows is not None else ()
        out[bridge] = frozenset(format_add_flow(f.without_stats()) for f in flows
                                if not (f.hard_timeout or f.idle_timeout))
    return out


def _words(lines: list[str]) -> None:
    for line in lines:
        assert "Change(" not in line and "Diff(" not in line and "\n" not in line, line


def test_the_prefix_comes_from_the_state_folder_and_is_claimed(cloud: Up) -> None:
    assert cloud.prefix == derive_prefix(cloud.state)
    assert (cloud.state / "linux" / "current").read_text().strip() == cloud.prefix
    assert claim_owner(cloud.prefix) == cloud.state.resolve()
    rec = cloud.record()
    assert rec.namespaces and all(n.startswith(cloud.prefix + "-") for n in rec.namespaces)
    assert set(namespaces_named(cloud.prefix)) == set(rec.namespaces)
    assert session.sync(cloud.state) == ["no change"]


def test_a_killed_vswitchd_is_restarted_and_its_flows_come_back(cloud: Up) -> None:
    old = _kill(cloud, "ovs-vswitchd compute")
    lines = session.sync(cloud.state)
    _words(lines)
    new = cloud.realized.places["compute"].ovs.pid_of("ovs-vswitchd")
    assert new is not None and new != old
    assert lines[0] == f"compute: restarted ovs-vswitchd (pid {new})", lines
    assert any(p.pid == new and p.what == "ovs-vswitchd compute" for p in cloud.record().processes)
    assert any(ln.startswith('compute: ovs-ofctl add-flow br-tun "') for ln in lines), lines
    assert all(ln.startswith("compute: ") for ln in lines), lines
    assert _real_flows(cloud, "compute") == _flows(cloud, "compute")
    vm = guest_ns(cloud.prefix, "cirros")  # through compute's br-int, br-tun and GRE to the router
    wait_for(functools.partial(_pings, vm, "10.1.0.1"), timeout=15, what="cirros to reach its router again")
    assert session.sync(cloud.state) == ["no change"]


def test_a_killed_ovsdb_server_is_restarted_on_the_same_database(cloud: Up) -> None:
    """ovs-vswitchd lives on and reconnects; nothing else changed, so nothing else is done."""
    switch = cloud.realized.places["compute"].ovs.pid_of("ovs-vswitchd")
    _kill(cloud, "ovsdb-server compute")
    lines = session.sync(cloud.state)
    ovs = cloud.realized.places["compute"].ovs
    new = ovs.pid_of("ovsdb-server")
    assert lines == [f"compute: restarted ovsdb-server (pid {new}) on {ovs.db_file}"]
    assert ovs.pid_of("ovs-vswitchd") == switch
    assert "br-tun" in ovs.vsctl("list-br").stdout.split()
    assert session.sync(cloud.state) == ["no change"]


def test_a_killed_dnsmasq_is_restarted_and_the_guest_renews(cloud: Up) -> None:
    what = next(p.what for p in cloud.record().processes if p.what.startswith("dnsmasq "))
    _kill(cloud, what)
    lines = session.sync(cloud.state)
    _words(lines)
    assert len(lines) == 1 and lines[0].startswith("network: restarted dnsmasq (pid "), lines
    assert " in qdhcp-" in lines[0] and ": dnsmasq " in lines[0]
    pid = int(lines[0].split("(pid ")[1].split(")")[0])
    assert any(p.pid == pid and p.what == what for p in cloud.record().processes)
    vm = guest_ns(cloud.prefix, "cirros")
    workdir = cloud.state / "linux" / cloud.prefix / "vm-cirros"
    renew = run(["busybox", "udhcpc", "-i", "eth0", "-q", "-n", "-t", "5", "-T", "1", "-s",
                 str(workdir / "udhcpc.sh")], netns=vm, check=False, timeout=30)
    assert renew.returncode == 0, renew.stdout + renew.stderr
    assert str(cloud.realized.leases()["cirros"]) == "10.1.0.2/24"


def test_a_lost_lease_is_asked_for_again(cloud: Up) -> None:
    vm = guest_ns(cloud.prefix, "cirros")
    run(["ip", "-4", "addr", "flush", "dev", "eth0"], netns=vm)
    assert cloud.realized.leases()["cirros"] is None
    lines = session.sync(cloud.state)
    _words(lines)
    assert len(lines) == 1 and lines[0].startswith("instance cirros: udhcpc -i eth0 "), lines
    assert lines[0].endswith("-> lease 10.1.0.2/24"), lines
    assert str(cloud.realized.leases()["cirros"]) == "10.1.0.2/24"


def test_drift_is_reported_in_the_tools_words(cloud: Up) -> None:
    r = cloud.realized
    router = next(n for n in r.hosts["network"].namespace_names() if n.startswith("qrouter-"))
    snat = ["-s", "10.1.0.0/24", "-j", "SNAT", "--to-source", "172.24.4.227"]
    r.exec("network", ["iptables", "-t", "nat", "-D", "quantum-l3-agent-snat", *snat], namespace=router)
    r.exec("network", ["ip", "route", "del", "default"], namespace=router)
    r.exec("network", ["iptables", "-t", "nat", "-A", "quantum-l3-agent-snat", "-s", "10.9.0.0/24", "-j", "ACCEPT"],
           namespace=router)
    lines = session.sync(cloud.state)
    _words(lines)
    pre = f"network: ip netns exec {router} "
    assert pre + "ip route replace default via 172.24.4.225 dev qg-" in "\n".join(lines), lines
    assert pre + "iptables -t nat -D quantum-l3-agent-snat -s 10.9.0.0/24 -j ACCEPT" in lines, lines
    assert any(ln.startswith(pre + "iptables -t nat -I quantum-l3-agent-snat ")
               and ln.endswith(" ".join(snat)) for ln in lines), lines
    assert len(lines) == 3, lines
    assert r.diff("network").empty
    assert session.sync(cloud.state) == ["no change"]


def test_a_dead_switch_and_database_with_a_broken_file_come_back_from_the_plan(cloud: Up) -> None:
    """The network host's two OVS daemons killed and its database file clobbered: a fresh database,
    the plan's bridges, ports and flows, and the backend's own br-phy and ex0 come back."""
    _kill(cloud, "ovs-vswitchd network")
    _kill(cloud, "ovsdb-server network")
    ovs = cloud.realized.places["network"].ovs
    Path(ovs.db_file).write_text("not a database\n")
    lines = session.sync(cloud.state)
    _words(lines)
    assert lines[0].startswith("network: restarted ovsdb-server (pid ") and "a new database" in lines[0], lines
    assert lines[1].startswith("network: restarted ovs-vswitchd (pid "), lines
    assert any(ln.startswith("network: ovs-vsctl --may-exist add-br br-int") for ln in lines), lines
    assert "network: ovs-vsctl --may-exist add-port br-ex ex0" in lines, lines
    assert any("add-port br-phy ul0" in ln for ln in lines), lines
    assert _real_flows(cloud, "network") == _flows(cloud, "network")
    vm = guest_ns(cloud.prefix, "cirros")  # across GRE, the router, br-ex and ex0 to the outside
    wait_for(functools.partial(_pings, vm, "203.0.113.1"), timeout=15, what="cirros to reach the outside again")
    assert session.sync(cloud.state) == ["no change"]


def test_a_second_state_folder_has_its_own_prefix_and_heals_apart(cloud: Up, tmp_path: Path) -> None:
    """Another folder's cloud (seed 002) up at the same time: other namespaces, records and processes.
    Its network host's ovs-vswitchd killed, ``sync`` there repairs it: the router's and DHCP's internal
    ports, which the new switch makes again in the host, replace the stale copies in their namespaces
    (addresses and routes back), and the guest reaches its router and renews its lease. The first
    cloud is not touched, by this nor by taking the second down."""
    other = tmp_path / "other"
    assert session.prefix_of(other) != cloud.prefix
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(other))
    try:
        result = bring_up(SEED002, state=other)
        second = session.up(result.hosts, result.cloud.deployment, session.guests_for(result.cloud, result.hosts),
                            other)
        assert second.prefix == session.prefix_of(other) != cloud.prefix
        a, b = cloud.record(), Record.load(second.prefix, other)
        assert not set(a.namespaces) & set(b.namespaces)
        assert not set(a.rundirs) & set(b.rundirs)
        assert not {p.pid for p in a.processes} & {p.pid for p in b.processes}
        web = guest_ns(second.prefix, "web")
        assert _pings(web, "192.168.0.1")
        _kill(Up(other, result, second), "ovs-vswitchd network")
        lines = session.sync(other)
        _words(lines)
        router = next(n for n in second.hosts["network"].namespace_names() if n.startswith("qrouter-"))
        qr = next(lk.name for lk in second.hosts["network"].namespace(router).links or () if lk.name.startswith("qr-"))
        assert lines[0].startswith("network: restarted ovs-vswitchd (pid "), lines
        assert f"network: ip netns exec {router} ip link del dev {qr}" in lines, lines
        assert f"network: ip link set dev {qr} netns {router}" in lines, lines
        assert f"network: ip netns exec {router} ip addr add 192.168.0.1/24 dev {qr}" in lines, lines
        wait_for(functools.partial(_pings, web, "192.168.0.1"), timeout=15, what="web to reach its router again")
        renew = run(["busybox", "udhcpc", "-i", "eth0", "-q", "-n", "-t", "5", "-T", "1", "-s",
                     str(other / "linux" / second.prefix / "vm-web" / "udhcpc.sh")], netns=web, check=False, timeout=30)
        assert renew.returncode == 0, renew.stdout + renew.stderr
        assert session.sync(other) == ["no change"]
        assert _pings(guest_ns(cloud.prefix, "cirros"), "203.0.113.1")
    finally:
        session.tear_down(other)
        mp.undo()
    assert namespaces_named(session.prefix_of(other)) == []
    assert claim_owner(session.prefix_of(other)) is None
    assert set(namespaces_named(cloud.prefix)) == set(cloud.record().namespaces)
    assert cloud.realized.diff("compute").empty and cloud.realized.diff("network").empty


def test_a_prefix_another_folder_holds_is_passed_over(tmp_path: Path) -> None:
    """A hash collision, made by hand: folder b holds a's first candidate; a takes its second."""
    a, b = tmp_path / "a", tmp_path / "b"
    first = derive_prefix(a)
    (b / "linux").mkdir(parents=True)
    (b / "linux" / f"{first}.json").write_text("{}")  # b's cloud is up (so its claim is not stale)
    assert claim_prefix(first, b)
    try:
        assert not claim_prefix(first, a)
        assert session.prefix_of(a) == derive_prefix(a, 1) != first
    finally:
        release_prefix(first, b)
    assert claim_owner(first) is None
    assert session.prefix_of(a) == first


def test_down_leaves_nothing_and_releases_the_prefix(cloud: Up) -> None:
    rec = cloud.record()
    assert session.tear_down(cloud.state)
    assert namespaces_named(cloud.prefix) == []
    assert claim_owner(cloud.prefix) is None
    wait_for(lambda: all(proc_start_time(p.pid) != p.start for p in rec.processes), timeout=10,
             what="every recorded process to end")
    assert not (cloud.state / "linux" / "current").exists()
    assert root_view() == cloud.before
