"""The commands a troubleshooter types, answered for the seeds' planned hosts (``neutrino exec``): what
a planned root namespace's kernel and Open vSwitch would print (routes of its addresses, the default
rules, no neighbours, an empty MAC table, the datapath), the brief and counter forms of ``ip``, and
``ovs-vsctl list-br``/``list-ports``/``list Bridge``. An imported host says what its captures do not
hold is not known. (The formats are held to the real tools in ``test_answer_real.py``.)"""

from __future__ import annotations

import pathlib

from neutrino.views.export import BRIDGE_LIST, captures_of, commands_of, unanswered_commands
from tests.views.conftest import kept

CAPTURES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "captures"


def test_root_namespace_tables_of_a_planned_host(seeds, neutrino):
    seeds("seed002")
    rc, out, _ = neutrino("exec", "compute", "--", "route", "-n")
    assert rc == 0 and out.splitlines() == [
        "Kernel IP routing table", "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface"]
    assert neutrino("exec", "compute", "--", "ip", "route")[1] == ""
    assert neutrino("exec", "compute", "--", "ip", "rule")[1] == (
        "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n")
    assert neutrino("exec", "compute", "--", "arp", "-n")[:2] == (0, "")
    assert neutrino("exec", "compute", "--", "ip", "neigh")[:2] == (0, "")
    table_all = neutrino("exec", "compute", "--", "ip", "route", "show", "table", "all")[1]
    assert "local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 \n" in table_all
    assert "fe80::/64 dev qbr" in table_all
    # the network host's root namespace holds no planned devices: nothing to derive from
    rc, _, err = neutrino("exec", "network", "--", "route", "-n")
    assert rc == 2 and "holds no devices of the root namespace" in err


def test_router_namespace_route_n_still_from_its_routes(seeds, neutrino):
    seeds("seed002")
    ns = next(n for n in kept("network").namespace_names() if n.startswith("qrouter-"))
    out = neutrino("exec", "network", "--", "ip", "netns", "exec", ns, "route", "-n")[1]
    assert "0.0.0.0         192.168.122.1   0.0.0.0         UG    0      0        0 qg-" in out


def test_ovs_commands(seeds, neutrino):
    seeds("seed002")
    assert neutrino("exec", "compute", "--", "ovs-vsctl", "list-br")[1] == "br-eth0\nbr-int\n"
    ports = neutrino("exec", "compute", "--", "ovs-vsctl", "list-ports", "br-int")[1].split()
    assert ports == sorted(ports) and "int-br-eth0" in ports and "br-int" not in ports and len(ports) == 5
    assert neutrino("exec", "compute", "--", "ovs-appctl", "fdb/show", "br-int")[1] == (
        " port  VLAN  MAC                Age\n")
    rc, _, err = neutrino("exec", "compute", "--", "ovs-appctl", "fdb/show", "br-nope")
    assert rc == 2 and "no such bridge" in err
    dp = neutrino("exec", "compute", "--", "ovs-dpctl", "show")[1].splitlines()
    assert dp[:5] == ["system@ovs-system:", "  lookups: hit:0 missed:0 lost:0", "  flows: 0",
                      "  masks: hit:0 total:0 hit/pkt:0.00", "  port 0: ovs-system (internal)"]
    assert "  port 1: br-int (internal)" in dp and not any("int-br-eth0" in ln for ln in dp)  # patch: no dp port
    dump = neutrino("exec", "compute", "--", "ovs-ofctl", "dump-ports", "br-int")[1].splitlines()
    assert dump[0] == "OFPST_PORT reply (xid=0x2): 6 ports"
    assert dump[1] == "  port LOCAL: rx pkts=0, bytes=0, drop=0, errs=0, frame=0, over=0, crc=0"
    assert "  port  1: rx pkts=0, bytes=0, drop=?, errs=?, frame=?, over=?, crc=?" in dump  # int-br-eth0 (patch)
    one = neutrino("exec", "compute", "--", "ovs-ofctl", "dump-ports", "br-int", "2")[1]
    assert one.startswith("OFPST_PORT reply (xid=0x2): 1 ports\n  port  2:")


def test_list_bridge_columns(seeds, neutrino):
    seeds("seed001")
    out = neutrino("exec", "compute01", "--", "ovs-vsctl", "--columns=name,protocols,fail_mode", "list",
                   "Bridge", "br-tun")[1]
    assert out.splitlines()[0] == "name                : br-tun"
    assert out.splitlines()[2] == "fail_mode           : secure"
    rc, _, err = neutrino("exec", "compute01", "--", "ovs-vsctl", "list", "Bridge")
    assert rc == 2 and "--columns" in err
    host = kept("compute01")
    assert unanswered_commands(host) == [] and BRIDGE_LIST in commands_of(host)
    assert dict(captures_of(host))[BRIDGE_LIST].startswith("name                : br-int\n")


def test_brief_detailed_and_counters(seeds, neutrino):
    seeds("seed002")
    brief = neutrino("exec", "compute", "--", "ip", "-br", "addr")[1].splitlines()
    assert brief[0] == "lo               UNKNOWN        127.0.0.1/8 ::1/128 "
    assert any(ln.startswith("qvo") and "@qvb" in ln and " UP " in ln for ln in brief)
    links = neutrino("exec", "compute", "--", "ip", "-br", "link")[1]
    assert "tap" in links and "<BROADCAST,MULTICAST,UP,LOWER_UP> \n" in links
    detailed = neutrino("exec", "compute", "--", "ip", "-d", "link")[1]
    assert "ff:ff:ff:ff:ff:ff\n    veth\n4: qvb" in detailed and "\n    bridge\n" in detailed  # kinds
    plain = neutrino("exec", "compute", "--", "ip", "link")[1]
    assert "veth" not in plain
    stats = neutrino("exec", "compute", "--", "ip", "-s", "link")[1]
    assert stats.count("RX:") == plain.count(": <") and "    TX:  bytes packets errors dropped carrier collsns" in stats


def test_imported_host_keeps_unknowns_unknown(neutrino, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    rc, _, _ = neutrino("import", str(CAPTURES / "seed000-network"), "--host", "network0")
    assert rc == 0
    for command in (("ovs-appctl", "fdb/show", "br-int"), ("ovs-dpctl", "show"), ("ip", "-s", "link")):
        rc, _, err = neutrino("exec", "network0", "--", *command)
        assert rc == 2 and "not known" in err, command
