"""Nothing of neutrino's outlives ``down``: three up/down cycles of seed 000, and a ``neutrino up
--backend linux`` killed with SIGKILL mid-way then cleaned by ``neutrino down``. After each, the root
namespace's links, routes, iptables (``iptables-save`` without its timestamp comments) and the sysctls
the backend could touch are byte-for-byte what they were, and no namespace, OVS or dnsmasq process of
ours remains."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from neutrino.deploy import bring_up
from neutrino.linux import session
from neutrino.linux.fabric import Guest
from neutrino.linux.realize import down, realize
from neutrino.linux.records import ProcessRecord, Record, claim_owner, proc_start_time, record_path
from neutrino.linux.runner import wait_for
from neutrino.sim.cloud import guests_of

pytestmark = pytest.mark.root
ROOT = pathlib.Path(__file__).resolve().parents[2]
EXE = str(pathlib.Path(sys.executable).with_name("neutrino"))
SYSCTL_KEYS = ("net.ipv4.ip_forward", "net.bridge.", "net.ipv4.conf.all.")


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def root_state() -> dict[str, str]:
    sysctls = [ln for ln in _out(["sysctl", "-a"]).splitlines() if ln.startswith(SYSCTL_KEYS)]
    return {
        "ip -o link": _out(["ip", "-o", "link"]),
        "ip route": _out(["ip", "route"]),
        "iptables-save": "".join(ln + "\n" for ln in _out(["iptables-save"]).splitlines() if not ln.startswith("#")),
        "sysctl": "\n".join(sorted(sysctls)),
    }


def ours_left(prefix: str, state: pathlib.Path) -> list[str]:
    """Namespaces named with ``prefix``, and processes (OVS, dnsmasq, guests' listeners) whose command
    line names the state directory or that live in one of those namespaces."""
    left = [f"netns {n}" for n in _out(["ip", "netns"]).split() if n.startswith(prefix + "-")]
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(state) in cmd and proc_start_time(pid) is not None:
            left.append(f"pid {pid}: {cmd}")
    return left


def _all_ended(procs: list[ProcessRecord]) -> bool:
    return all(proc_start_time(p.pid) != p.start or proc_start_time(p.pid) is None for p in procs)


def _guests(result: object) -> tuple[Guest, ...]:
    specs = guests_of(result.cloud, {h.name: h for h in result.hosts})  # type: ignore[attr-defined]
    return tuple(Guest(g.name, g.host, g.device, g.mac, str(g.fixed_ip) if g.fixed_ip else None) for g in specs)


def test_three_up_down_cycles_leave_nothing(tmp_path: pathlib.Path) -> None:
    before = root_state()
    prefix = "ntcy"
    result = bring_up(ROOT / "examples" / "seed000.yaml", state=tmp_path / "plan", keep=False)
    for i in range(3):
        state = tmp_path / f"cycle{i}"
        try:
            r = realize(result.hosts, result.cloud.deployment, prefix=prefix, state_dir=state,
                        guests=_guests(result))
            assert all(v is not None for v in r.leases().values())
            pids = list(Record.load(prefix, state).processes)
            assert pids
        finally:
            down(prefix, state)
        wait_for(functools.partial(_all_ended, pids), timeout=10, what="recorded processes to end")
        assert ours_left(prefix, state) == []
        assert not record_path(prefix, state).exists()
        assert root_state() == before, f"cycle {i} changed the root namespace"


def _namespaces_listed(path: pathlib.Path, n: int) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return len(doc.get("namespaces", [])) >= n and len(doc.get("processes", [])) >= 2


def test_sigkill_mid_bring_up_is_cleaned_by_down(tmp_path: pathlib.Path) -> None:
    before = root_state()
    env = {**os.environ, "NEUTRINO_STATE": str(tmp_path)}
    prefix = session.prefix_of(tmp_path)  # what the bring-up will claim (derived from the folder)
    rec = record_path(prefix, tmp_path)
    proc = subprocess.Popen([EXE, "up", str(ROOT / "examples" / "seed001.yaml"), "--backend", "linux"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # mid-way: the guests' and some hosts' namespaces made, an OVS running
        wait_for(lambda: _namespaces_listed(rec, 12) or proc.poll() is not None, timeout=60,
                 what="the bring-up to be under way")
        assert proc.poll() is None, "the bring-up finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert Record.load(prefix, tmp_path).namespaces
        assert (tmp_path / "linux" / "current").read_text().strip() == prefix
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        res = subprocess.run([EXE, "down"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert ours_left(prefix, tmp_path) == []
    assert not rec.exists()
    assert claim_owner(prefix) is None
    assert root_state() == before
