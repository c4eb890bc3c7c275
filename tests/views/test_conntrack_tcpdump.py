"""``conntrack -L`` and ``tcpdump -i DEV`` on a planned host, from the simulator: the connection
tables the booted world (or the last kept trace) holds, and the packets the last trace sent through a
device, in conntrack-tools' and tcpdump's formats (held to the real tools in test_troubleshoot_real)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from neutrino import worldkeep
from neutrino.sim.conntrack import Conntrack
from neutrino.sim.packets import TCP, IPv4, TCPFlag, ip
from neutrino.views.conntrack import conntrack_list, format_entry, parse_conntrack_args
from neutrino.views.tcpdump import captured, format_packets, keep_trace, parse_tcpdump_args

from .conftest import Run

ROUTER = "qrouter-332e9221-b0ad-4162-83fe-95d4ae178eb1"


def _trace(state: pathlib.Path, src: str, dst: str, **kw: object) -> None:
    """What ``neutrino trace SRC DST`` does, keeping the trace for tcpdump and conntrack."""
    world = worldkeep.booted_world(state)
    keep_trace(state, world.probe(src, dst, **kw), world)  # type: ignore[arg-type]


def test_conntrack_after_a_trace_shows_the_snat(seeds, neutrino: Run) -> None:
    state = seeds("seed000")
    _trace(state, "cirros", "8.8.8.8")
    rc, out, err = neutrino("exec", "network", "--", "ip", "netns", "exec", ROUTER, "conntrack", "-L")
    assert rc == 0 and len(out.splitlines()) == 2  # the instance's DHCP broadcast reached the router too
    assert err == "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n"
    rc, out, err = neutrino("exec", "network", "--", "ip", "netns", "exec", ROUTER, "conntrack", "-L", "-p", "icmp")
    assert rc == 0
    assert out == ("icmp     1 29 src=10.1.0.2 dst=8.8.8.8 type=8 code=0 id=41000 src=8.8.8.8 dst=172.24.4.228 "
                   "type=0 code=0 id=41000 mark=0 use=1\n")
    assert err == "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n"
    rc, out, err = neutrino("exec", "network", "--", "ip", "netns", "exec", ROUTER, "conntrack", "-L", "-p", "tcp")
    assert out == "" and err.startswith("conntrack v1.4.7 (conntrack-tools): 0 flow entries")
    rc, out, _ = neutrino("exec", "network", "--", "ip", "netns", "exec", ROUTER, "conntrack", "-L", "-s",
                          "10.1.0.2", "-d", "8.8.8.8")
    assert out.startswith("icmp     1 29 src=10.1.0.2 dst=8.8.8.8 ")


def test_conntrack_of_the_booted_world_and_bad_input(seeds, neutrino: Run) -> None:
    state = seeds("seed000")
    (state / "last-trace.pickle").unlink(missing_ok=True)
    rc, out, err = neutrino("exec", "compute", "--", "conntrack", "-L", "-p", "udp")
    assert rc == 0
    # the instance's DHCP exchange crossed compute's firewall bridge (br_netfilter)
    assert "udp      17 29 src=0.0.0.0 dst=255.255.255.255 sport=68 dport=67 [UNREPLIED]" in out
    assert err.endswith("flow entries have been shown.\n")
    rc, out, err = neutrino("exec", "compute", "--", "conntrack", "-L", "-p", "nope")
    assert rc != 0 and "proto `nope' not found" in err and "Traceback" not in err
    rc, _, err = neutrino("exec", "network", "--", "ip", "netns", "exec", "qrouter-nope", "conntrack", "-L")
    assert rc != 0 and 'Cannot open network namespace "qrouter-nope"' in err


def test_conntrack_line_layout() -> None:
    """TCP: state, [ASSURED] once established; a zone before use=1; UNREPLIED after the original."""
    ct = Conntrack()
    syn = IPv4(src=ip("10.0.0.5"), dst=ip("10.0.0.1"), payload=TCP(sport=40000, dport=22, flags=TCPFlag.SYN))
    ref = ct.lookup(syn, zone=4)
    ct.confirm(ref)
    assert format_entry(ct.entries()[0]) == (
        "tcp      6 119 SYN_SENT src=10.0.0.5 dst=10.0.0.1 sport=40000 dport=22 [UNREPLIED] src=10.0.0.1 "
        "dst=10.0.0.5 sport=22 dport=40000 mark=0 zone=4 use=1")
    synack = IPv4(src=ip("10.0.0.1"), dst=ip("10.0.0.5"),
                  payload=TCP(sport=22, dport=40000, flags=TCPFlag.SYN | TCPFlag.ACK))
    ct.lookup(synack, zone=4)
    ct.lookup(IPv4(src=ip("10.0.0.5"), dst=ip("10.0.0.1"), payload=TCP(sport=40000, dport=22, flags=TCPFlag.ACK)),
              zone=4)
    line = format_entry(ct.entries()[0])
    assert line.startswith("tcp      6 431999 ESTABLISHED src=10.0.0.5") and line.endswith(
        "[ASSURED] mark=0 zone=4 use=1")
    out, err = conntrack_list(ct.entries(), parse_conntrack_args(["-L", "-w", "5"]))
    assert out == "" and "0 flow entries" in err


def test_tcpdump_on_the_instance_port(seeds, neutrino: Run) -> None:
    state = seeds("seed000")
    _trace(state, "cirros", "8.8.8.8")
    rc, out, err = neutrino("exec", "compute", "--", "tcpdump", "-i", "qvo61e31514-15", "-n", "-e")
    assert rc == 0
    assert out.splitlines() == [
        "00:00:00.001000 fa:16:3e:30:80:d4 > fa:16:3e:6a:3f:36, ethertype IPv4 (0x0800), length 98: "
        "10.1.0.2 > 8.8.8.8: ICMP echo request, id 41000, seq 1, length 64",
        "00:00:00.014000 fa:16:3e:6a:3f:36 > fa:16:3e:30:80:d4, ethertype IPv4 (0x0800), length 98: "
        "8.8.8.8 > 10.1.0.2: ICMP echo reply, id 41000, seq 1, length 64"]
    assert "listening on qvo61e31514-15, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n" in err
    assert err.endswith("2 packets captured\n2 packets received by filter\n0 packets dropped by kernel\n")
    # the router's gateway, in its namespace: the packet after SNAT, and without -e no link header
    rc, out, _ = neutrino("exec", "network", "--", "ip", "netns", "exec", ROUTER, "tcpdump", "-n", "-i",
                          "qg-343b7107-6d", "icmp", "and", "host", "8.8.8.8")
    assert [ln.split(" ", 1)[1] for ln in out.splitlines()] == [
        "IP 172.24.4.228 > 8.8.8.8: ICMP echo request, id 41000, seq 1, length 64",
        "IP 8.8.8.8 > 172.24.4.228: ICMP echo reply, id 41000, seq 1, length 64"]
    rc, out, _ = neutrino("exec", "network", "--", "ip", "netns", "exec", ROUTER, "tcpdump", "-n", "-i",
                          "qg-343b7107-6d", "-c", "1", "arp")
    assert rc == 0 and out == ""


def test_tcpdump_errors(seeds, neutrino: Run) -> None:
    state = seeds("seed000")
    _trace(state, "cirros", "8.8.8.8")
    rc, _, err = neutrino("exec", "compute", "--", "tcpdump", "-i", "gre-2", "-n")
    assert rc != 0 and "tcpdump: gre-2: No such device exists" in err  # a tunnel port is no device
    rc, _, err = neutrino("exec", "compute", "--", "tcpdump", "-i", "qvo61e31514-15", "-v")
    assert rc != 0 and "Traceback" not in err and err.count("\n") == 1
    rc, _, err = neutrino("exec", "compute", "--", "tcpdump", "-i", "qvo61e31514-15", "icmp", "or", "arp")
    assert rc != 0 and "'or'" in err
    (state / "last-trace.pickle").unlink()
    rc, _, err = neutrino("exec", "compute", "--", "tcpdump", "-i", "qvo61e31514-15")
    assert rc != 0 and "run 'neutrino trace SOURCE DESTINATION' first" in err


def test_tcpdump_arguments() -> None:
    q = parse_tcpdump_args(["-nei", "tap1", "-c", "3", "src", "host", "10.0.0.1"])
    assert (q.device, q.link, q.count, q.expression) == ("tap1", True, 3, ("src", "host", "10.0.0.1"))
    with pytest.raises(Exception, match="give the device"):
        parse_tcpdump_args(["-n"])


def test_tcpdump_on_the_tunnel_endpoint_nic_shows_gre(seeds) -> None:
    """The NIC holding a host's tunnel address carries the tunnel's packets, outer headers and all
    (planned hosts do not list that NIC; a captured host's eth0 does)."""
    state = seeds("seed000")
    world = worldkeep.booted_world(state)
    trace = world.probe("cirros", "8.8.8.8")
    seen = captured(trace, world.topo, "compute", "eth0", frozenset({ip("192.168.122.11")}))
    assert len(seen) == 2  # the request out, the reply in
    text = format_packets(seen, link=False)
    # as the real tcpdump -n prints it (checked on the trace's pcap with tcpdump -r)
    assert text.splitlines()[0] == (
        "00:00:00.003000 IP 192.168.122.11 > 192.168.122.10: GREv0, key=0x2, length 110: "
        "IP 10.1.0.2 > 8.8.8.8: ICMP echo request, id 41000, seq 1, length 64")
    assert captured(trace, world.topo, "compute", "eth0") == []  # without the address: nothing tunnelled


def test_neutrino_trace_keeps_its_trace_for_tcpdump_and_conntrack(seeds, neutrino: Run) -> None:
    state = seeds("seed000")
    (state / "last-trace.pickle").unlink(missing_ok=True)
    rc, _, _ = neutrino("trace", "cirros", "8.8.8.8", "--level", "minimal")
    assert rc == 0 and (state / "last-trace.pickle").exists()
    rc, out, _ = neutrino("exec", "compute", "--", "tcpdump", "-i", "qvo61e31514-15", "-n", "-e")
    assert rc == 0 and [ln.split(": ", 1)[1] for ln in out.splitlines()] == [
        "10.1.0.2 > 8.8.8.8: ICMP echo request, id 41000, seq 1, length 64",
        "8.8.8.8 > 10.1.0.2: ICMP echo reply, id 41000, seq 1, length 64"]
    rc, out, err = neutrino("exec", "network", "--", "ip", "netns", "exec", ROUTER, "conntrack", "-L", "-p", "icmp")
    assert rc == 0 and out.startswith("icmp     1 29 src=10.1.0.2 dst=8.8.8.8 type=8 code=0 id=41000 src=8.8.8.8 "
                                      "dst=172.24.4.228 ")
    assert err == "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n"
    # a tcp trace replaces it: the ICMP exchange is no longer what tcpdump shows
    rc, _, _ = neutrino("trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22", "--level", "minimal")
    assert rc == 0
    out = neutrino("exec", "compute", "--", "tcpdump", "-i", "qvo61e31514-15", "-n")[1]
    assert "ICMP" not in out and "172.24.4.225.41000 > 10.1.0.2.22: Flags [S]" in out


def test_trace_tcpdump_option(seeds, neutrino: Run) -> None:
    seeds("seed000")
    rc, out, _ = neutrino("trace", "cirros", "8.8.8.8", "--level", "minimal", "--tcpdump", "compute:qvo61e31514-15",
                          "--tcpdump", f"network:{ROUTER}:qg-343b7107-6d")
    assert rc == 0
    text = out.split("\n--- tcpdump ")
    assert len(text) == 3 and "=> the exchange succeeded" in text[0]
    assert text[1].splitlines()[0] == "-n -e -i qvo61e31514-15 on compute: 2 packets"
    assert text[1].splitlines()[1].startswith("00:00:00.001000 fa:16:3e:30:80:d4 > fa:16:3e:6a:3f:36, ethertype IPv4")
    assert text[2].splitlines()[0] == f"-n -e -i qg-343b7107-6d on network, namespace {ROUTER}: 2 packets"
    assert "172.24.4.228 > 8.8.8.8: ICMP echo request" in text[2].splitlines()[1]
    rc, out, _ = neutrino("trace", "cirros", "8.8.8.8", "--json", "--tcpdump", "compute:qvo61e31514-15")
    doc = json.loads(out)
    assert doc["tcpdump"][0]["device"] == "qvo61e31514-15" and len(doc["tcpdump"][0]["lines"]) == 2
    rc, out, err = neutrino("trace", "cirros", "8.8.8.8", "--tcpdump", "compute")
    assert rc == 2 and out == "" and "HOST:DEVICE" in err and err.count("\n") == 1
    rc, _, err = neutrino("trace", "cirros", "8.8.8.8", "--tcpdump", "compute:nodev")
    assert rc == 2 and "tcpdump: nodev: No such device exists" in err


def test_exec_prints_the_tools_stderr_after_its_output(seeds) -> None:
    state = seeds("seed000")
    exe = str(pathlib.Path(sys.executable).with_name("neutrino"))
    env = {**os.environ, "NEUTRINO_STATE": str(state)}
    res = subprocess.run([exe, "exec", "network", "--", "ip", "netns", "exec", ROUTER, "conntrack", "-L"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=60, check=False)
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and len(lines) >= 2
    assert lines[-1].startswith("conntrack v1.4.7 (conntrack-tools): ") and lines[0].startswith(("icmp", "udp", "tcp"))


def test_trace_size_reaches_the_probe_and_tcpdump(seeds, neutrino: Run) -> None:
    """``--size N`` is ping -s N: tcpdump shows the sized echo (8 + N bytes of ICMP); too big for the
    instance's MTU, the sender's kernel refuses it; a size that is no number is one line."""
    seeds("seed000")
    rc, out, _ = neutrino("trace", "cirros", "8.8.8.8", "--size", "1400", "--level", "minimal", "--tcpdump",
                          "compute:qvo61e31514-15")
    assert rc == 0
    assert "length 1442: 10.1.0.2 > 8.8.8.8: ICMP echo request, id 41000, seq 1, length 1408" in out
    rc, out, _ = neutrino("trace", "cirros", "8.8.8.8", "--size", "1500", "--level", "minimal")
    assert rc == 1 and "=> dropped: MTU at compute cirros" in out
    rc, out, err = neutrino("trace", "cirros", "8.8.8.8", "--size", "big")
    assert rc == 2 and out == "" and err == "neutrino: --size big: a payload size in bytes is a number from 0 to 65535\n"
