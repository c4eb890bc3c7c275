"""HA routers in the simulator (issue 18): VRRP election (nopreempt, then priority and address), the
floating IP and SNAT through the master's qrouter namespace, ``neutrino failover`` stopping the
master's keepalived (recorded in the state folder) so that the next traces go through the backup,
the bindings' ha_state following, ``--restore``, and bad input refused in one line."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from neutrino.cli import main
from neutrino.sim.vrrp import Instance, elect, load_stopped, masters

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "ha.yaml"
CLASS_NAME = re.compile(r"\b[A-Z][a-z]+[A-Z]\w*")


def test_a_partition_elects_a_master_on_each_side() -> None:
    hosts = [Instance(h, ipaddress.IPv4Address(f"169.254.192.{n}")) for h, n in (("h1", 1), ("h2", 2), ("h3", 3))]
    side = {"h1": 0, "h2": 1, "h3": 1}
    assert masters(hosts, "h1", lambda a, b: side[a] == side[b]) == ["h1", "h3"]
    assert masters(hosts, "h1", lambda a, b: True) == ["h1"]
    assert masters(hosts, "h1", lambda a, b: False) == ["h1", "h3", "h2"]
    assert masters([Instance("h1", hosts[0].address, running=False)], None, lambda a, b: True) == []


def test_election_keeps_a_running_master_then_takes_the_highest_address() -> None:
    a, b, c = (Instance(h, ipaddress.IPv4Address(f"169.254.192.{n}")) for h, n in (("h1", 1), ("h2", 2), ("h3", 3)))
    assert elect([a, b, c], "h1") == "h1"  # nopreempt: a higher address does not take over
    assert elect([Instance("h1", a.address, running=False), b, c], "h1") == "h3"
    assert elect([a, b, Instance("h3", c.address, priority=40)], None) == "h2"  # priority before address
    assert elect([Instance("h1", a.address, running=False)], "h1") is None


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("simha")
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(path))
    try:
        assert main(["up", str(SCENARIO)]) == 0
        yield path
    finally:
        mp.undo()


def _run(state: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    try:
        capsys.readouterr()
        rc = main(list(argv))
    finally:
        mp.undo()
    out = capsys.readouterr()
    return rc, out.out, out.err


def _hosts_of_router_hops(text: str) -> set[str]:
    return {ln.split()[0] for ln in text.splitlines() if " qrouter-" in ln}


def _states(state: Path) -> list[tuple[str, str | None]]:
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    try:
        from neutrino.deploy import open_cloud
        r = next(r for r in open_cloud().snapshot().routers if r.name == "router1")
    finally:
        mp.undo()
    return [(b.host, b.ha_state) for b in r.bindings]


def test_failover_moves_the_traffic_to_the_backup_and_back(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(state, capsys, "trace", "outside", "172.24.4.100")
    assert rc == 0 and "=> the exchange succeeded" in out
    assert _hosts_of_router_hops(out) == {"network1"}
    rc, out, _ = _run(state, capsys, "trace", "web1", "172.24.4.1")  # SNAT through the master
    assert rc == 0 and "SNAT 10.0.0.5 -> 172.24.4.100" in out and _hosts_of_router_hops(out) == {"network1"}

    rc, out, _ = _run(state, capsys, "failover", "router1")
    assert rc == 0
    assert out.splitlines()[:2] == ["router router1: keepalived stopped on network1", "router router1: master network2"]
    assert _states(state) == [("network1", "standby"), ("network2", "active")]
    assert list(load_stopped(state).values()) == [["network1"]]
    rc, out, _ = _run(state, capsys, "trace", "outside", "172.24.4.100")
    assert rc == 0 and "=> the exchange succeeded" in out and _hosts_of_router_hops(out) == {"network2"}
    assert not set(CLASS_NAME.findall(out)) - {"OpenStack"}, CLASS_NAME.findall(out)[:3]
    rc, out, _ = _run(state, capsys, "exec", "network1", "--", "ip", "netns", "exec",
                      f"qrouter-{_router_id(state)}", "ip", "-4", "addr")
    assert "172.24.4.100" not in out and "169.254.0.1" not in out and "169.254.192.1/18" in out

    # the backup's keepalived stopped too: nobody holds the VIPs, the floating IP is dead
    rc, out, _ = _run(state, capsys, "failover", "router1")
    assert rc == 0 and "router router1: no master (no keepalived runs)" in out
    rc, out, _ = _run(state, capsys, "ping", "outside", "172.24.4.100")
    assert "no reply" in out

    rc, out, _ = _run(state, capsys, "failover", "router1", "--restore")
    assert rc == 0 and "keepalived started on network1, network2" in out and "master network2" in out
    assert "split brain" not in out  # network1's ha- device reached network2's over the HA network
    assert _states(state) == [("network1", "standby"), ("network2", "active")]
    assert load_stopped(state) == {}
    rc, out, _ = _run(state, capsys, "ping", "outside", "172.24.4.100")
    assert rc == 0 and "reply" in out and "no reply" not in out


def _router_id(state: Path) -> str:
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    try:
        from neutrino.deploy import open_cloud
        return next(r.id for r in open_cloud().snapshot().routers if r.name == "router1")
    finally:
        mp.undo()


def test_bad_input_is_one_line(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(state, capsys, "failover", "no-such-router")
    assert rc != 0 and err.strip() == "neutrino: router no-such-router not found"
    rc, out, err = _run(state, capsys, "failover", "router1", "--restore")
    assert rc != 0 and err.strip() == "neutrino: no keepalived of router router1 is stopped"
    assert "Traceback" not in err


def test_a_keepalived_that_hears_no_master_takes_the_vips_too(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """network1's HA port disabled: its ha- device is cut from the HA network. network2 (master after
    the test above) is stopped, network1 alone takes over; started again, network2 hears no advert
    and becomes master as well."""
    from neutrino import worldkeep
    from neutrino.deploy import open_cloud, replan
    from neutrino.services import ports

    cloud = open_cloud(state)
    r = next(r for r in cloud.snapshot().routers if r.name == "router1")
    ha1 = next(b.ha_port_id for b in r.bindings if b.host == "network1")
    with cloud.write(cloud.admin_context()) as tx:
        ports.update_port(tx, ha1 or "", {"admin_state_up": False})
    replan(state)
    worldkeep.invalidate(state)
    rc, out, _ = _run(state, capsys, "failover", "router1")
    assert rc == 0 and "router router1: master network1" in out
    rc, out, _ = _run(state, capsys, "failover", "router1", "--restore")
    assert rc == 0 and "router router1: split brain: network2 hears no master over the HA network" in out
    assert _states(state) == [("network1", "active"), ("network2", "active")]
