"""The answers on today's ML2/OVS (issue 18): on examples/dvr.yaml and examples/ha.yaml the matrix
agrees with single traces pair by pair, diagnose names the object of a security-group drop on a DVR
compute and offers a fix checked on a copy of the cloud, a trace after ``neutrino failover`` goes
through the new master, and on examples/ovsfw.yaml the matrix names the port whose firewall flows
dropped a packet and ``conntrack -L`` lists the OVS bridges' connections with their zones, as the
kernel datapath's are listed in the root namespace."""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator

import pytest

from tests.answers.conftest import Cli, _cli, _up

PROTOS = {"icmp": ("icmp", None), "tcp/22": ("tcp", "22"), "tcp/80": ("tcp", "80")}
INTERNET = "203.0.113.1"  # the matrix's 'outside' as a destination


@pytest.fixture(scope="module")
def dvr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    yield from _up(tmp_path_factory, "dvr")


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    yield from _up(tmp_path_factory, "ha")


@pytest.fixture(scope="module")
def ovsfw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    yield from _up(tmp_path_factory, "ovsfw")


def _trace_ok(cli: Cli, source: str, to: str, proto: str) -> bool:
    name, port = PROTOS[proto]
    argv = ["trace", source, to, "--proto", name] + (["--dport", port] if port else [])
    rc, doc = cli.json(*argv)
    assert rc in (0, 1), (argv, doc)
    assert doc["succeeded"] is (rc == 0)
    return bool(doc["succeeded"])


def _matrix_agrees_with_traces(cli: Cli, floating: dict[str, str], cells_at_least: int) -> list[dict[str, object]]:
    """Every cell from an instance or the outside, traced on its own: the same answer."""
    rc, out, _ = cli("matrix", "--no-hosts", "--json")
    assert rc == 0
    cells: list[dict[str, object]] = json.loads(out)
    checked = 0
    for c in cells:
        src, dst, proto = str(c["source"]), str(c["destination"]), str(c["proto"])
        if src.startswith("host:"):
            continue
        if dst == "outside":
            to = INTERNET
        elif ":" in dst:  # router1:ADDRESS
            to = dst.split(":", 1)[1]
        elif src == "outside":
            if dst not in floating:
                assert c["ok"] is False and c["why"] == "no floating IP", c
                continue
            to = floating[dst]
        else:
            to = dst
        assert _trace_ok(cli, src, to, proto) is c["ok"], c
        checked += 1
    assert checked >= cells_at_least
    return cells


def _ok(cells: list[dict[str, object]], src: str, dst: str, proto: str) -> bool:
    return next(bool(c["ok"]) for c in cells if (c["source"], c["destination"], c["proto"]) == (src, dst, proto))


def test_dvr_matrix_agrees_with_single_traces(dvr: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cells = _matrix_agrees_with_traces(_cli(dvr, capsys, monkeypatch), {"app1": "172.24.4.50"}, 30)
    # east-west routed on the computes, app1 reached at its floating IP, db1 out through SNAT
    assert _ok(cells, "app1", "db1", "icmp") and _ok(cells, "db1", "app1", "tcp/22")
    assert _ok(cells, "outside", "app1", "tcp/22") and _ok(cells, "db1", "outside", "icmp")
    assert not _ok(cells, "app1", "db1", "tcp/80") and not _ok(cells, "outside", "db1", "icmp")


def test_dvr_diagnose_names_the_group_and_offers_a_checked_fix(
        dvr: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _cli(dvr, capsys, monkeypatch)
    rc, doc = cli.json("diagnose", "app1", "db1", "--proto", "tcp", "--dport", "80")
    assert rc == 1 and doc["reachable"] is False
    assert doc["reason"] == "security group"
    assert str(doc["where"]).startswith("compute02 ")  # db1's compute drops it, not the network node
    assert re.fullmatch(r"security group 'open' \([0-9a-f-]{36}\)", str(doc["object"])), doc["object"]
    assert "allows ingress to port" in str(doc["why"]) and "instance 'db1'" in str(doc["why"])
    fixes = doc["fixes"]
    assert isinstance(fixes, list) and fixes
    assert doc["checked"] is True and all(f["works"] is True for f in fixes)
    assert fixes[0]["command"].startswith(
        "openstack security group rule create --ingress --ethertype IPv4 --protocol tcp --dst-port 80 ")
    # the text form says the same
    rc, out, _ = cli("diagnose", "app1", "db1", "--proto", "tcp", "--dport", "80")
    assert "change: security group 'open'" in out and "checked on a copy of the cloud: works" in out


def test_ha_matrix_agrees_with_single_traces_and_failover_moves_the_path(
        ha: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _cli(ha, capsys, monkeypatch)
    cells = _matrix_agrees_with_traces(cli, {"web1": "172.24.4.100"}, 15)
    assert _ok(cells, "outside", "web1", "icmp") and _ok(cells, "web1", "outside", "tcp/22")
    rc, out, _ = cli("trace", "outside", "172.24.4.100", "--level", "minimal")
    assert rc == 0
    qrouter = re.search(r"network1 (qrouter-[0-9a-f-]{36}) \[qg-", out)
    assert qrouter is not None and "network2 " not in out, out
    rc, out, _ = cli("failover", "router1")
    assert rc == 0 and "master network2" in out
    for argv in (("outside", "172.24.4.100"), ("web1", INTERNET)):
        rc, out, _ = cli("trace", *argv, "--level", "minimal")
        assert rc == 0 and out.rstrip().endswith("the answer came back"), out
        assert f"network2 {qrouter.group(1)} [" in out and "network1 " not in out, out
    # and the matrix, after the failover, still agrees with the traces
    after = _matrix_agrees_with_traces(cli, {"web1": "172.24.4.100"}, 15)
    assert [c["ok"] for c in after] == [c["ok"] for c in cells]


def test_ovsfw_matrix_names_the_port_whose_flows_dropped(
        ovsfw: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _cli(ovsfw, capsys, monkeypatch)
    rc, out, _ = cli("matrix", "--no-hosts", "--no-routers", "--no-outside", "--proto", "icmp", "--json")
    assert rc == 0
    cell = next(c for c in json.loads(out) if (c["source"], c["destination"]) == ("web2", "plain1"))
    assert cell["ok"] is False
    assert cell["why"].startswith("security group at compute02 br-int: no rule of security group 'plain' ")
    assert "allows ingress to port" in cell["why"] and "instance 'plain1'" in cell["why"]


_ENTRY = re.compile(r"^tcp      6 \d+ SYN_RECV src=10\.0\.0\.11 dst=10\.0\.0\.12 sport=41000 dport=22 "
                    r"src=10\.0\.0\.12 dst=10\.0\.0\.11 sport=22 dport=41000 mark=0 zone=(\d+) use=1$")


def test_conntrack_lists_the_ovs_firewall_connections_with_their_zones(
        ovsfw: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _cli(ovsfw, capsys, monkeypatch)
    rc, out, _ = cli("trace", "web1", "web2", "--proto", "tcp", "--dport", "22")
    assert rc == 0
    for host in ("compute01", "compute02"):  # each end's bridge tracked it, in its network's zone
        rc, out, err = cli("exec", host, "--", "conntrack", "-L")
        assert rc == 0 and err == "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n"
        m = _ENTRY.match(out.rstrip("\n"))
        assert m is not None, out
        zone = m.group(1)
        # the zone is the network's local VLAN on that host (Neutron's reg6), which br-int's flows use
        rc, flows, _ = cli("exec", host, "--", "ovs-ofctl", "dump-flows", "br-int")
        assert "ct(commit,zone=NXM_NX_REG6[0..15]" in flows
        assert re.search(rf"dl_vlan={zone}\b|mod_vlan_vid:{zone}\b|load:0x{int(zone):x}->NXM_NX_REG6", flows), zone
        rc, out, err = cli("exec", host, "--", "conntrack", "-L", "-w", zone)
        assert _ENTRY.match(out.rstrip("\n")) and err.startswith("conntrack v1.4.7 (conntrack-tools): 1 flow")
        rc, out, err = cli("exec", host, "--", "conntrack", "-L", "-w", str(int(zone) + 100))
        assert out == "" and err.startswith("conntrack v1.4.7 (conntrack-tools): 0 flow")
    # a network node whose root namespace was not planned answers too (nothing tracked there)
    rc, out, err = cli("exec", "controller", "--", "conntrack", "-L")
    assert rc == 0 and out == "" and "0 flow entries" in err


def test_ofproto_trace_forks_at_each_ct_as_ovs_does(
        ovsfw: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The openvswitch firewall's ct(table=72): the first pass ends at the datapath's ct() and a
    recirculation, then the thawed packet (trk|new in the port's zone) is traced from table 72, as
    OVS 3's ofproto/trace prints it (checked against a private ovs-vswitchd with the same flows)."""
    cli = _cli(ovsfw, capsys, monkeypatch)
    rc, ports, _ = cli("exec", "compute01", "--", "ovs-vsctl", "list-ports", "br-int")
    tap = next(p for p in ports.split() if p.startswith("tap"))  # web1's, the only instance there
    flow = f"in_port={tap},tcp,nw_src=10.0.0.11,nw_dst=10.0.0.12,tp_dst=22"
    rc, flows, _ = cli("exec", "compute01", "--", "ovs-ofctl", "dump-flows", "br-int")
    src = re.search(r"in_port=\d+,dl_src=(fa:16:3e:[0-9a-f:]{8}),nw_src=10\.0\.0\.11 ", flows)
    assert src is not None, flows
    rc, out, _ = cli("exec", "compute01", "--", "ovs-appctl", "ofproto/trace", "br-int",
                     f"{flow},dl_src={src.group(1)}")
    assert rc == 0, out
    first, banner, resumed = out.partition("\n" + "=" * 79 + "\n")
    assert banner, out
    zone = int(re.findall(r"load:(0x[0-9a-f]+)->NXM_NX_REG6\[\]", first)[0], 16)
    assert ("    ct(table=72,zone=NXM_NX_REG6[0..15])\n    drop\n"
            "     -> A clone of the packet is forked to recirculate. The forked pipeline will be resumed at table 72.\n"
            "     -> Sets the packet to an untracked state, and clears all the conntrack fields.\n") in first
    assert first.rstrip().endswith(f"Datapath actions: ct(zone={zone}),recirc(0x1)")
    assert resumed.startswith("recirc(0x1) - resume conntrack with default ct_state=trk|new (use --ct-next to "
                              "customize)\n" + "=" * 79 + "\n\nFlow: recirc_id=0x1,ct_state=new|trk,"
                              f"ct_zone={zone},eth,tcp,reg5=")
    assert '\nbridge("br-int")\n----------------\n    thaw\n        Resuming from table 72\n72. ' in resumed
    assert "    ct(commit,zone=NXM_NX_REG6[0..15])\n    drop\n" in resumed
    assert "\nFinal flow: recirc_id=0x1,eth,tcp," in resumed  # the commit left it untracked
    assert "\nMegaflow: recirc_id=0x1,ct_state=+new-est,eth,ip," in resumed
    assert re.search(rf"\nDatapath actions: ct\(commit,zone={zone}\),.*set\(tunnel\(tun_id=", resumed), resumed


_TABLE_LINE = re.compile(r"^\s*(\d+\. .*|ct\(.*|drop|thaw|Resuming from table \d+|recirc\(0x[0-9a-f]+\) - .*)$")


def _skeleton(trace: str) -> list[str]:
    """The tables visited, the ct() actions, drops, thaws and banners, recirculation ids left out
    (a running switch has used some already), the tunnel's own bridge (userspace datapath) too."""
    out = []
    bridge = ""
    for line in trace.split("Final flow:")[0].splitlines() + trace.split("=" * 79)[-1].splitlines():
        b = re.match(r'^\s*bridge\("([^"]+)"\)$', line)
        bridge = b.group(1) if b else bridge
        m = _TABLE_LINE.match(line)
        if m and bridge != "br-phy":
            out.append(re.sub(r"0x[0-9a-f]+\) - ", "0xN) - ", m.group(1)))
    return out


@pytest.mark.root
def test_ofproto_trace_of_the_ovs_firewall_matches_the_real_one(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess
    import sys

    exe = str(pathlib.Path(sys.executable).with_name("neutrino"))
    state = tmp_path / "state"
    env = {**os.environ, "NEUTRINO_STATE": str(state)}
    root = pathlib.Path(__file__).resolve().parents[2]
    try:
        up = subprocess.run([exe, "up", str(root / "examples" / "ovsfw.yaml"), "--backend", "linux"],
                            capture_output=True, text=True, env=env, timeout=240, check=False)
        assert up.returncode == 0, up.stderr
        cli = _cli(state, capsys, monkeypatch)
        rc, ports, _ = cli("exec", "compute01", "--", "ovs-vsctl", "list-ports", "br-int")
        tap = next(p for p in ports.split() if p.startswith("tap"))
        rc, flows, _ = cli("exec", "compute01", "--", "ovs-ofctl", "dump-flows", "br-int")
        src = re.search(r"in_port=\d+,dl_src=(fa:16:3e:[0-9a-f:]{8}),nw_src=10\.0\.0\.11 ", flows)
        assert src is not None
        flow = f"in_port={tap},tcp,dl_src={src.group(1)},nw_src=10.0.0.11,nw_dst=10.0.0.12,tp_dst=22"
        rc, sim, _ = cli("exec", "compute01", "--", "ovs-appctl", "ofproto/trace", "br-int", flow)
        assert rc == 0, sim
        rc, real, err = cli("exec", "--real", "compute01", "--", "ovs-appctl", "ofproto/trace", "br-int", flow)
        assert rc == 0, err
        assert "recirc(0x" in real and "thaw" in real  # the real switch forked at the ct() too
        assert _skeleton(sim) == _skeleton(real), (sim, real)
        first_dp = [ln for ln in real.splitlines() if ln.startswith("Datapath actions:")][0]
        assert re.sub(r"recirc\(0x[0-9a-f]+\)", "recirc", first_dp) == re.sub(
            r"recirc\(0x[0-9a-f]+\)", "recirc", [ln for ln in sim.splitlines() if ln.startswith("Datapath actions:")][0])
    finally:
        down = subprocess.run([exe, "down"], capture_output=True, text=True, env=env, timeout=240, check=False)
    assert down.returncode == 0, down.stderr
