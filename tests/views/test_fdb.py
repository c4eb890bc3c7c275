"""``ovs-appctl fdb/show BR`` on a planned host: NORMAL's MAC table as the simulator learned it (the
instances' boot in the kept world; after ``neutrino trace``, as that trace left it), in the rows
Open vSwitch prints (``lib/mac-learning.c``: OpenFlow port, VLAN, MAC, age). Held to the real
ovs-vswitchd in test_troubleshoot_real."""

from __future__ import annotations

from neutrino import worldkeep
from neutrino.ingest.commands import parse_command
from neutrino.views.answer import answer
from neutrino.views.tcpdump import mac_table

from .conftest import Run, kept

HEADER = " port  VLAN  MAC                Age"
CIRROS, DHCP, ROUTER = "fa:16:3e:30:80:d4", "fa:16:3e:8c:76:e1", "fa:16:3e:6a:3f:36"


def _rows(text: str) -> list[tuple[str, str, str]]:
    lines = text.splitlines()
    assert lines[0] == HEADER
    return [(ln[:5].strip(), ln[5:11].strip(), ln[13:30]) for ln in lines[1:]]


def test_fdb_after_boot_and_after_a_trace(seeds, neutrino: Run) -> None:
    state = seeds("seed000")
    (state / "last-trace.pickle").unlink(missing_ok=True)
    rc, out, _ = neutrino("exec", "compute", "--", "ovs-appctl", "fdb/show", "br-int")
    # the instance's DHCP DISCOVER taught br-int its MAC on qvo… (port 2, VLAN 1); the OFFER, the DHCP
    # port's MAC on patch-tun (port 1)
    assert rc == 0 and out == (f"{HEADER}\n"
                               f"    2     1  {CIRROS}    1\n"
                               f"    1     1  {DHCP}    1\n")
    assert _rows(neutrino("exec", "network", "--", "ovs-appctl", "fdb/show", "br-int")[1]) == [
        ("1", "1", CIRROS), ("3", "1", DHCP)]  # patch-tun, tap6dd828ed-5f
    # a trace to the internet: the router's reply taught compute's br-int the router's MAC
    rc, _, _ = neutrino("trace", "cirros", "8.8.8.8", "--level", "minimal")
    assert rc == 0
    after = _rows(neutrino("exec", "compute", "--", "ovs-appctl", "fdb/show", "br-int")[1])
    assert after == [("2", "1", CIRROS), ("1", "1", DHCP), ("1", "1", ROUTER)]
    assert ("2", "1", ROUTER) in _rows(neutrino("exec", "network", "--", "ovs-appctl", "fdb/show", "br-int")[1])
    # br-ex learned the router's gateway MAC (its qg device) on the router's port, VLAN 0 (no tag)
    assert any(mac == "fa:16:3e:10:18:5b" and vlan == "0"
               for _, vlan, mac in _rows(neutrino("exec", "network", "--", "ovs-appctl", "fdb/show", "br-ex")[1]))
    # grep applies as on any other command
    assert neutrino("exec", "compute", "--", "ovs-appctl fdb/show br-int | grep 6a:3f")[1] == (
        f"    1     1  {ROUTER}    1\n")


def test_fdb_from_a_world_given_and_errors(seeds, neutrino: Run) -> None:
    state = seeds("seed000")
    world = worldkeep.booted_world(state)
    world.probe("cirros", "10.1.0.1")
    rows = mac_table(world, "compute", "br-int")
    assert rows is not None and (1, 1, ROUTER) in rows
    assert mac_table(world, "compute", "qbr61e31514-15") is None  # a Linux bridge, not an OVS one
    text = answer(kept("compute"), parse_command("ovs-appctl fdb/show br-int"), world=world)
    assert f"    1     1  {ROUTER}    1\n" in text
    rc, _, err = neutrino("exec", "compute", "--", "ovs-appctl", "fdb/show", "br-nope")
    assert rc == 2 and "no such bridge" in err and "Traceback" not in err
