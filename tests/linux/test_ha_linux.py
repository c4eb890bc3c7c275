"""An HA router built for real (issue 18, root): examples/ha.yaml on the Linux backend runs Debian's
keepalived in both network hosts' qrouter namespaces with the planned configuration; the planned
master holds the VIPs, the outside pings the floating IP, ``neutrino failover`` stops the master's
keepalived by its PID and the backup's keepalived takes the VIPs (waited for, with a timeout),
the ping works again, ``--restore`` brings the old master back as a backup, and ``neutrino down``
leaves no namespace and no keepalived behind."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from neutrino.linux.runner import ConvergenceTimeout, run, wait_for
from tests.linux.probes import linux_up, neutrino

FIP = "172.24.4.100"


def _router_id(state: pathlib.Path) -> str:
    from neutrino.deploy import open_cloud

    return next(r.id for r in open_cloud(state).snapshot().routers if r.name == "router1")


def _v4(netns: str) -> str:
    return run(["ip", "-4", "-o", "addr"], netns=netns, check=False).stdout


def _ping(netns: str) -> bool:
    """The floating IP answers from ``netns`` (waited for: the first echo may go while the outside's
    neighbour entry or the master's gratuitous ARP is still on its way on a loaded machine)."""
    def answered() -> bool:
        return run(["ping", "-c", "1", "-W", "1", FIP], netns=netns, check=False, timeout=15).returncode == 0
    try:
        wait_for(answered, timeout=20, what=f"{FIP} to answer")
    except ConvergenceTimeout:
        return False
    return True


def _keepalived_of(state: pathlib.Path) -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=False).stdout
    return [ln for ln in out.splitlines() if ln.startswith("/usr/sbin/keepalived") and str(state) in ln]


@pytest.mark.root
def test_keepalived_fails_over_for_real(tmp_path: pathlib.Path) -> None:
    from neutrino.linux.records import wire_ns

    state = tmp_path / "state"
    prefix = ""
    try:
        prefix = linux_up(state, "ha.yaml")
        rid = _router_id(state)
        ns1, ns2 = (f"{prefix}-{h}-qrouter-{rid}" for h in ("network1", "network2"))
        outside = wire_ns(prefix, "ext")
        assert len(_keepalived_of(state)) == 4  # each instance: keepalived and its VRRP child
        assert f"{FIP}/32" in _v4(ns1) and "169.254.0.1/24" in _v4(ns1)
        assert FIP not in _v4(ns2) and "169.254.0.1/24" not in _v4(ns2) and "169.254.192.2/18" in _v4(ns2)
        assert _ping(outside)
        loaded = next((state / "linux" / prefix / "network1").rglob("keepalived.conf.loaded"))
        assert loaded.read_text() == loaded.with_name("keepalived.conf").read_text()  # what it was started with

        fo = neutrino(state, "failover", "router1")
        assert fo.returncode == 0, fo.stderr
        assert "router router1: master network2" in fo.stdout
        # the backup's keepalived took the VIPs (it said so in its log) and the old master has none
        wait_for(lambda: f"{FIP}/32" in _v4(ns2), timeout=30, what="network2 to hold the floating IP")
        log2 = next((state / "linux" / prefix / "network2").rglob("keepalived.log")).read_text()
        assert "(VR_1) Entering MASTER STATE" in log2
        assert FIP not in _v4(ns1) and "169.254.0.1/24" not in _v4(ns1)
        assert "default via 172.24.4.1" in run(["ip", "route"], netns=ns2, check=False).stdout
        assert len(_keepalived_of(state)) == 2
        assert _ping(outside)

        back = neutrino(state, "failover", "router1", "--restore")
        assert back.returncode == 0, back.stderr
        assert "router router1: master network2" in back.stdout  # nopreempt: network1 comes back as a backup
        assert len(_keepalived_of(state)) == 4
        assert FIP not in _v4(ns1) and _ping(outside)
    finally:
        down = neutrino(state, "down")
    assert down.returncode == 0, down.stderr
    assert not _keepalived_of(state)
    if prefix:
        names = subprocess.run(["ip", "netns"], capture_output=True, text=True, check=False).stdout
        assert f"{prefix}-" not in names


def test_a_changed_configuration_is_reloaded_by_sighup(tmp_path: pathlib.Path) -> None:
    """No root needed: a stand-in process recorded as the keepalived of a host; SIGHUP ends it."""
    from neutrino.linux import keepalived
    from neutrino.linux.records import ProcessRecord, Record, proc_start_time

    p = keepalived.Planned("network1", "0" * 8 + "-0000-0000-0000-" + "0" * 12,
                           "/var/lib/neutron/ha_confs/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12 + "/keepalived.conf",
                           True)
    conf = keepalived.real_conf(tmp_path, "ntx", p)
    conf.parent.mkdir(parents=True)
    conf.write_text("vrrp_instance VR_1 {\n}\n")
    stand_in = subprocess.Popen(["sleep", "30"])
    try:
        record = Record("ntx", tmp_path / "rec.json")
        record.processes.append(ProcessRecord(stand_in.pid, proc_start_time(stand_in.pid), p.what, ""))
        loaded = conf.with_name("keepalived.conf.loaded")
        loaded.write_text(conf.read_text())
        assert keepalived._reload_if_changed(record, tmp_path, "ntx", p) is None  # nothing changed
        assert stand_in.poll() is None
        conf.write_text("vrrp_instance VR_1 {\n    advert_int 2\n}\n")
        assert keepalived._reload_if_changed(record, tmp_path, "ntx", p) == stand_in.pid
        assert stand_in.wait(timeout=10) == -1  # sleep's end on SIGHUP
        assert loaded.read_text() == conf.read_text()
    finally:
        stand_in.kill()
        stand_in.wait()
