"""The Linux backend's speed work (issue #17): how a command enters a namespace (``ip -n``, ``nsenter
--net``, ``ip netns exec``), steps run at once (:func:`neutrino.linux.runner.parallel`), a record
several threads write, processes found per namespace from ``/proc``, the metadata service awaited
through ``/proc/PID/net/tcp``, and seed 000 brought up with its hosts in parallel: fewer commands, the
record in a fixed order, the same cloud, nothing left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from neutrino.deploy import bring_up
from neutrino.errors import ApplyError
from neutrino.host.ovsdb import OvsdbShow
from neutrino.linux import netns as netns_lib
from neutrino.linux.realize import Realized, _pid_listens, down, realize
from neutrino.linux.records import Record, guest_ns, host_ns, namespaces_named, planned_ns, wire_ns
from neutrino.linux.runner import MAX_THREADS, TALLY, full_argv, parallel, run, start, wait_for
from neutrino.linux.session import guests_for

ROOT = Path(__file__).resolve().parents[2]
SEED000 = ROOT / "examples" / "seed000.yaml"
PREFIX = f"ntp{os.getpid() % 10000}"
COMMANDS_BEFORE = 116  # seed 000's bring-up, one command at a time, each tool through ``ip netns exec``


def test_each_tool_enters_a_namespace_the_cheapest_way_that_works() -> None:
    assert full_argv(["ip", "-batch", "-"], "ns1") == ["ip", "-n", "ns1", "-batch", "-"]
    assert full_argv(["ip", "netns", "identify", "1"], "ns1") == ["ip", "netns", "exec", "ns1", "ip", "netns",
                                                                 "identify", "1"]
    assert full_argv(["ethtool", "-K", "eth0", "tx", "off"], "ns1") == [
        "nsenter", "--net=/var/run/netns/ns1", "ethtool", "-K", "eth0", "tx", "off"]
    assert full_argv(["brctl", "show"], "ns1") == ["ip", "netns", "exec", "ns1", "brctl", "show"]  # reads /sys
    assert full_argv(["ip", "addr"], None) == ["ip", "addr"]


def test_parallel_runs_at_once_and_keeps_the_order() -> None:
    barrier = threading.Barrier(3, timeout=10)  # one at a time, the first would wait for the others in vain

    def step(i: int) -> int:
        barrier.wait()
        return i * 10

    assert parallel(step, [1, 2, 3]) == [10, 20, 30]


def test_parallel_waits_for_every_step_then_raises_the_first_failure() -> None:
    finished: list[int] = []
    barrier = threading.Barrier(2, timeout=10)

    def step(i: int) -> None:
        if i == 0:
            raise ApplyError("step 0 failed")
        barrier.wait()
        finished.append(i)
        if i == 2:
            raise ApplyError("step 2 failed")

    with pytest.raises(ApplyError, match="step 0 failed"):
        parallel(step, [0, 1, 2])
    assert sorted(finished) == [1, 2]  # nothing of theirs still runs once it has raised


def _halting(thread_id: int) -> bool:
    """Whether the thread waits in ``parallel``'s halt (its steps' end, after an interruption)."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code.co_name == "halt":
            return True
        frame = frame.f_back
    return False


def test_parallel_interrupted_starts_nothing_more_and_waits_for_what_runs() -> None:
    started: list[int] = []
    finished: list[int] = []
    release = threading.Event()
    returned = threading.Event()  # parallel has returned or raised: no more Ctrl-C
    lock = threading.Condition()
    main = threading.get_ident()

    def step(i: int) -> None:
        with lock:
            started.append(i)
            lock.notify_all()
        assert release.wait(timeout=20)
        finished.append(i)

    def halting_or_interrupt() -> bool:
        if _halting(main) or returned.is_set():
            return True
        # Ctrl-C (a real signal, which wakes a blocked wait), again until it is seen halting: one that
        # lands just before the main thread blocks in a lock is handled only when that wait ends
        signal.pthread_kill(main, signal.SIGINT)
        return False

    def interrupt() -> None:  # Ctrl-C once every thread runs a step, then let them end
        with lock:
            assert lock.wait_for(lambda: len(started) == MAX_THREADS, timeout=20)
        wait_for(halting_or_interrupt, timeout=20, interval=0.05, what="parallel to wait for its steps")
        release.set()

    interrupted: list[int] = []

    def ctrl_c(signum: int, frame: object) -> None:
        """The first Ctrl-C only: the helper may send one more between checking that the main thread
        is not halting yet and its signal arriving, and that one, handled later (after ``parallel``
        returned, or in a collector callback), must not end the test session."""
        if not interrupted and not returned.is_set():
            interrupted.append(signum)
            raise KeyboardInterrupt

    before = signal.signal(signal.SIGINT, ctrl_c)
    helper = threading.Thread(target=interrupt)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            try:
                parallel(step, range(MAX_THREADS + 2))
            finally:
                returned.set()
        assert sorted(finished) == sorted(started) == list(range(MAX_THREADS))  # none still running, none more
        assert interrupted == [signal.SIGINT]
    finally:
        returned.set()
        release.set()
        helper.join(timeout=30)
        # a Ctrl-C the helper sent just before it ended may not be handled yet: were the handler
        # restored first, the default one would raise it wherever the main thread runs next (once in
        # a CI run: in hypothesis's collector callback). Blocking SIGINT runs the handlers of those
        # already caught (ours, which ignores them now), and those still pending are taken here.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            while signal.sigtimedwait({signal.SIGINT}, 0) is not None:
                pass
            signal.signal(signal.SIGINT, before)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_a_record_written_from_many_threads_keeps_every_entry(tmp_path: Path) -> None:
    rec = Record("nttest", tmp_path / "linux" / "nttest.json")
    parallel(lambda i: rec.add_process(os.getpid(), f"p{i}", "nttest-x"), range(24))
    parallel(lambda i: rec.add_namespace(f"nttest-n{i}", planned=f"h/n{i}"), range(24))
    disk = Record.load("nttest", tmp_path)
    assert sorted(p.what for p in disk.processes) == sorted(f"p{i}" for i in range(24))
    assert sorted(disk.namespaces) == sorted(f"nttest-n{i}" for i in range(24))
    assert disk.ns_map == {f"h/n{i}": f"nttest-n{i}" for i in range(24)}


@pytest.mark.root
def test_sysctl_through_nsenter_changes_the_namespace_not_the_root(netns: str) -> None:
    root_value = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    want = "0" if root_value == "1" else "1"
    run(["sysctl", "-w", f"net.ipv4.ip_forward={want}"], netns=netns)
    assert run(["sysctl", "-n", "net.ipv4.ip_forward"], netns=netns).stdout.strip() == want
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == root_value


@pytest.mark.root
def test_pids_of_finds_what_ip_netns_pids_finds(netns: str) -> None:
    proc = start(["sleep", "60"], netns)
    try:
        wait_for(lambda: proc.pid in netns_lib.pids(netns), timeout=10, what="sleep to enter the namespace")
        assert netns_lib.pids_of([netns, "nt-no-such-namespace"]) == {netns: netns_lib.pids(netns)}
        assert proc.pid in netns_lib.pids_of([netns])[netns]
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.root
def test_the_metadata_service_listens_first_then_answers(netns: str, tmp_path: Path) -> None:
    table = tmp_path / "metadata.json"
    table.write_text(json.dumps({"10.0.0.5": 1}))
    proc = start([sys.executable, "-m", "neutrino.linux.metadata", "9697", str(table)], netns)
    try:
        assert not _pid_listens(os.getpid(), netns, 9697)  # this process is not in that namespace
        wait_for(lambda: _pid_listens(proc.pid, netns, 9697), timeout=15, what="the metadata service to listen")
        assert ":9697 " in run(["ss", "-ltnH"], netns=netns).stdout  # ss agrees
        res = run(["busybox", "wget", "-q", "-O-", "http://127.0.0.1:9697/latest/meta-data/"], netns=netns,
                  check=False, timeout=30)
        assert "404" in res.stderr, res.stdout + res.stderr  # answered (127.0.0.1 is no instance)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _root_snapshot() -> dict[str, str]:
    return {" ".join(argv): subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            for argv in (["ip", "-o", "link"], ["ip", "route"], ["iptables-save"])}


@pytest.fixture
def seed000(tmp_path: Path) -> Iterator[tuple[Realized, Path, list[str]]]:
    before = _root_snapshot()
    up = bring_up(SEED000, state=tmp_path / "plan", keep=False)
    network = next(h for h in up.hosts if h.name == "network")
    TALLY.reset()
    try:
        r = realize(up.hosts, up.cloud.deployment, prefix=PREFIX, state_dir=tmp_path,
                    guests=guests_for(up.cloud, up.hosts))
        yield r, tmp_path, [planned_ns(PREFIX, "network", n) for n in network.namespace_names() if n]
    finally:
        down(PREFIX, tmp_path)
    assert namespaces_named(PREFIX) == []
    assert _root_snapshot() == before


@pytest.mark.root
def test_seed000_up_with_hosts_in_parallel(seed000: tuple[Realized, Path, list[str]]) -> None:
    r, state, network_ns = seed000
    counts = dict(TALLY.counts)
    assert TALLY.total < COMMANDS_BEFORE - 10, counts
    assert "ss" not in counts, counts  # the metadata service awaited through /proc, not by polling ss
    assert counts.get("ethtool") == 16, counts  # every veth end made, tx checksum offload off
    # written down in a fixed order whatever order the threads ran in: guests, hosts, wires, then
    # the hosts' planned namespaces as their plans are applied
    rec = Record.load(PREFIX, state)
    assert rec.namespaces[:5] == [guest_ns(PREFIX, "cirros"), host_ns(PREFIX, "network"), host_ns(PREFIX, "compute"),
                                  wire_ns(PREFIX, "mgmt"), wire_ns(PREFIX, "ext")]
    assert sorted(rec.namespaces[5:]) == sorted(network_ns)
    assert {p.what for p in rec.processes} >= {"ovsdb-server network", "ovs-vswitchd network",
                                               "ovsdb-server compute", "ovs-vswitchd compute"}
    # the same cloud as one host at a time built it
    assert {k: str(v) for k, v in r.leases().items()} == {"cirros": "10.1.0.2/24"}
    for host in ("network", "compute"):
        assert r.diff(host).empty, r.diff(host).summary()
        # the read-back takes the bridges from ``ovs-vsctl show``: what ``list-br`` lists
        show = r.read_back(host).ovs.show
        assert isinstance(show, OvsdbShow)
        assert sorted(b.name for b in show.bridges) == r.places[host].ovs.vsctl("list-br").stdout.split()
    res = r.exec("compute", ["ping", "-c", "1", "-W", "2", "10.1.0.1"], namespace="vm-cirros")
    assert res.returncode == 0, res.stdout + res.stderr
    router = next(n for n in network_ns if "qrouter-" in n)
    assert ":9697 " in r.exec("network", ["ss", "-ltnH"], namespace=router).stdout  # the metadata service
