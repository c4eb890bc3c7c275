"""The commands a troubleshooter types, answered for the seeds' planned hosts (``neutrino exec``): what
a planned root namespace's kernel and Open vSwitch would print (routes of its addresses, the default
rules, no neighbours, the MAC table the instances' boot taught NORMAL, the datapath), the brief and counter
forms of ``ip``, and ``ovs-vsctl list-br``/``list-ports``/``list Bridge``. An imported host says what its captures do not
hold is not known. (The formats are held to the real tools in ``test_answer_real.py``.)"""

from __future__ import annotations

import io
import json
import pathlib
import sys

from neutrino.cli import main
from neutrino.views.export import BRIDGE_LIST, captures_of, commands_of, unanswered_commands
from tests.views.conftest import kept

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
CAPTURES = EXAMPLES / "captures"


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
    # what NORMAL learned while the instances booted: each instance's MAC on its qvo port (the port's
    # VLAN), the DHCP ports' MACs (their OFFERs came from the network host) on int-br-eth0 (port 1)
    assert neutrino("exec", "compute", "--", "ovs-appctl", "fdb/show", "br-int")[1] == (
        " port  VLAN  MAC                Age\n"
        "    2     1  fa:16:3e:68:2b:01    1\n"
        "    1     1  fa:16:3e:f2:94:21    1\n"
        "    3     1  fa:16:3e:de:25:a0    1\n"
        "    4     1  fa:16:3e:9b:1e:1b    1\n"
        "    5     2  fa:16:3e:29:c9:4c    1\n"
        "    1     2  fa:16:3e:81:56:98    1\n")
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


def test_ping_json(seeds, neutrino):
    seeds("seed000")
    rc, out, _ = neutrino("ping", "cirros", "8.8.8.8", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["reply"] is True and doc["hops"] == 8 and doc["reply_hops"] == 9
    assert doc["reason"] is None and doc["where"] is None
    rc, out, _ = neutrino("ping", "cirros", "10.9.9.9", "--json")  # a private address beyond the gateway
    doc = json.loads(out)
    assert rc == 1 and doc["reply"] is False and doc["hops"] == 8 and doc["reply_hops"] == 0
    assert (doc["reason"], doc["where"]) == ("no route", "outside internet")
    text = neutrino("ping", "cirros", "10.9.9.9")[1]
    assert f"no reply: {doc['reason']} at {doc['where']}" in text


def test_plan_json(neutrino, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    rc, out, _ = neutrino("plan", str(EXAMPLES / "seed000.yaml"), "--json")
    doc = json.loads(out)
    assert rc == 0 and sorted(doc) == ["compute", "network"]
    assert "priority=4,in_port=1,dl_vlan=1 actions=set_tunnel:0x2,NORMAL" in doc["compute"][
        "ovs-ofctl dump-flows --no-stats br-tun"]
    text = neutrino("plan", str(EXAMPLES / "seed000.yaml"), "--host", "compute")[1]
    assert all(f"# {command}\n{output}" in text for command, output in doc["compute"].items())
    rc, out, _ = neutrino("plan", str(EXAMPLES / "seed000.yaml"), "--json", "--host", "network")
    assert rc == 0 and list(json.loads(out)) == ["network"]
    rc, out, err = neutrino("plan", str(EXAMPLES / "seed000.yaml"), "--host", "nope")
    assert rc == 2 and out == "" and "no host 'nope'" in err



class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_matrix_progress_only_on_a_terminal(seeds, monkeypatch, capsys):
    seeds("seed000")
    assert main(["matrix", "--no-hosts"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("icmp:")  # not a terminal: no progress at all
    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setenv("NO_COLOR", "1")  # a terminal without colour: one plain line per finished stage
    assert main(["matrix", "--no-hosts"]) == 0
    lines = tty.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("matrix: the cloud's world loaded")
    assert lines[1].startswith("matrix: traced one pair per class of 2 sources and 4 destinations, 3 protocols (")
    assert capsys.readouterr().out.startswith("icmp:")
