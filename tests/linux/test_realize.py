"""Seed 000 built for real: namespaces, a private OVS per host, GRE between them, dnsmasq, a guest.

One cloud is realized for the module (about a second); every test reads it, and the last one tears
it down and checks that the root namespace is byte-for-byte what it was. The fixture tears down in
``finally`` too, so a failing test leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from neutrino.db.session import Database
from neutrino.deploy import bring_up
from neutrino.host import iptables as ipt
from neutrino.host.state import HostState
from neutrino.linux import netns as netns_lib
from neutrino.linux.realize import Guest, Realized, down, realize
from neutrino.linux.records import Record, proc_start_time
from neutrino.linux.runner import run, wait_for
from neutrino.plan.naming import device_name
from neutrino.scenarios.model import load_scenario
from neutrino.services.snapshot import load

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
SEED000 = ROOT / "examples" / "seed000.yaml"
PREFIX = f"nt{os.getpid() % 100000}"


def root_snapshot() -> dict[str, str]:
    """What the root namespace looks like, by the commands the brief names."""
    return {" ".join(argv): subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            for argv in (["ip", "-o", "link"], ["ip", "route"], ["iptables-save"])}


@dataclass
class Cloud:
    realized: Realized
    hosts: dict[str, HostState]
    before: dict[str, str]
    state: Path
    up_seconds: float


def _guests(db_url: str) -> tuple[Guest, ...]:
    with Database(db_url).read() as s:
        snap = load(s)
    out = []
    for srv in snap.servers:
        for pid in srv.port_ids:
            port = snap.port(pid)
            out.append(Guest(srv.name, srv.host, device_name("tap", port.id), port.mac_address,
                             port.fixed_ips[0].ip_address))
    return tuple(out)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    state = tmp_path_factory.mktemp("state")
    before = root_snapshot()
    up = bring_up(SEED000, state=state, keep=False)
    scenario = load_scenario(SEED000)
    t0 = time.monotonic()
    try:
        realized = realize(up.hosts, scenario.deployment, prefix=PREFIX, state_dir=state,
                           guests=_guests(up.db_url))
        yield Cloud(realized, {h.name: h for h in up.hosts}, before, state, time.monotonic() - t0)
    finally:
        down(PREFIX, state)


def _router_ns(c: Cloud) -> str:
    return next(n for n in c.hosts["network"].namespace_names() if n.startswith("qrouter-"))


def test_the_instance_gets_its_address_by_dhcp_across_gre(cloud: Cloud) -> None:
    assert {k: str(v) for k, v in cloud.realized.leases().items()} == {"cirros": "10.1.0.2/24"}
    assert cloud.up_seconds < 30


def test_the_instance_pings_its_router(cloud: Cloud) -> None:
    res = cloud.realized.exec("compute", ["ping", "-c", "1", "-W", "2", "10.1.0.1"], namespace="vm-cirros")
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_router_pings_the_outside(cloud: Cloud) -> None:
    r = cloud.realized
    ns = _router_ns(cloud)
    for target in ("172.24.4.225", "203.0.113.1"):
        res = r.exec("network", ["ping", "-c", "1", "-W", "2", target], namespace=ns)
        assert res.returncode == 0, f"{target}: {res.stdout}{res.stderr}"


def test_iptables_read_back_equals_the_plan(cloud: Cloud) -> None:
    for host, planned in cloud.hosts.items():
        for ns in planned.namespaces:
            if ns.iptables is None:
                continue
            table = ns.iptables.find(ipt.TableName.FILTER)
            assert table is not None
            res = cloud.realized.exec(host, ["iptables", "-S"], namespace=ns.name or None)
            assert res.returncode == 0
            assert res.stdout == ipt.format_rules(table, dialect=ipt.V1_8_9), f"{host} {ns.name!r}"


def test_physdev_rules_see_bridged_frames_inside_the_namespace(cloud: Cloud) -> None:
    res = cloud.realized.exec("compute", ["iptables", "-S", "quantum-openvswi-FORWARD", "-v"])
    counts = [int(line.split(" -c ")[1].split()[0]) for line in res.stdout.splitlines() if " -c " in line]
    assert any(n > 0 for n in counts), res.stdout


def test_read_back_then_diff_is_empty(cloud: Cloud) -> None:
    for host in cloud.hosts:
        d = cloud.realized.diff(host)
        assert d.empty, d.summary()


def test_apply_repairs_drift_and_only_that(cloud: Cloud) -> None:
    r = cloud.realized
    ns = _router_ns(cloud)
    ovs = r.places["compute"].ovs
    ovs.ofctl("del-flows", "br-tun", "--strict", "priority=1")
    r.exec("network", ["iptables", "-t", "nat", "-D", "quantum-l3-agent-snat", "-s", "10.1.0.0/24", "-j", "SNAT",
                       "--to-source", "172.24.4.227"], namespace=ns)
    r.exec("network", ["ip", "route", "del", "default"], namespace=ns)
    d_compute, d_network = r.diff("compute"), r.diff("network")
    assert [f.bridge for f in d_compute.flows] == ["br-tun"] and not d_compute.iptables
    assert d_network.routes and d_network.iptables and not d_network.flows
    r.apply("compute")
    r.apply("network")
    for host in ("compute", "network"):
        again = r.diff(host)
        assert again.empty, again.summary()


def test_down_leaves_nothing_and_the_root_namespace_untouched(cloud: Cloud) -> None:
    record = Record.load(PREFIX, cloud.state)
    assert record.namespaces and record.processes
    t0 = time.monotonic()
    down(PREFIX, cloud.state)
    seconds = time.monotonic() - t0
    down(PREFIX, cloud.state)  # idempotent
    assert seconds < 30
    names = run(["ip", "netns"]).stdout
    assert not [ln for ln in names.splitlines() if ln.startswith(PREFIX + "-")]
    assert not any(netns_lib.exists(n) for n in record.namespaces)
    wait_for(lambda: all(proc_start_time(p.pid) is None or proc_start_time(p.pid) != p.start
                         for p in record.processes), timeout=10, what="recorded processes to be gone")
    assert not record.path.exists()
    assert root_snapshot() == cloud.before
