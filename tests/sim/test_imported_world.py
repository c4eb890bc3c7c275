"""The world from captures alone: a deployment imported with ``neutrino import`` (planned hosts
exported as captures, the seed's own partial captures) traces, pings, diagnoses and draws its
matrix with no cloud, says precisely what was not captured, and goes past it only with --assume."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from neutrino.cli import main
from neutrino.deploy import bring_up
from neutrino.ingest.captures import read_capture_dir
from neutrino.sim.cloud import world_of
from neutrino.sim.imported import guest_for_device, missing_captures, world_from_captures
from neutrino.sim.world import OUTSIDE
from neutrino.views.export import captures_of

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
PROTOS = (("icmp", 22), ("tcp", 22), ("tcp", 80))


def _plan_dir(seed: str, into: pathlib.Path, capsys: pytest.CaptureFixture[str], host: str | None = None) -> None:
    """``neutrino plan --json`` of a seed, written as one capture folder per host."""
    argv = ["plan", str(EXAMPLES / f"seed{seed}.yaml"), "--json"] + (["--host", host] if host else [])
    assert main(argv) == 0
    for name, caps in json.loads(capsys.readouterr().out).items():
        d = into / name
        d.mkdir(parents=True)
        for i, (command, text) in enumerate(caps.items()):
            (d / f"{i:03d}.txt").write_text(f"$ {command}\n{text}")


@pytest.fixture
def state(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    s = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(s))
    return s


@pytest.mark.parametrize("seed", ["000", "001", "002", "003", "004"])
def test_planned_hosts_captured_trace_as_planned(seed: str, tmp_path: pathlib.Path) -> None:
    """Every seed's planned hosts, written out as captures and read back as an imported deployment
    (no snapshot), give every probe the planned world's verdict."""
    result = bring_up(EXAMPLES / f"seed{seed}.yaml", state=tmp_path / "s", keep=False)
    hosts = []
    for h in result.hosts:
        d = tmp_path / "dep" / h.name
        d.mkdir(parents=True)
        for i, (command, text) in enumerate(captures_of(h)):
            (d / f"{i:03d}.txt").write_text(f"$ {command}\n{text}")
        hosts.append(read_capture_dir(d, h.name))
    planned, imported = world_of(result.cloud, result.hosts), world_from_captures(hosts)
    names = {}
    for g in planned.specs.values():
        found = guest_for_device(imported, g.host, g.device)
        assert found is not None, f"{g.name} ({g.device} on {g.host}) not found in the captures"
        assert (imported.specs[found].mac, imported.specs[found].fixed_ip) == (g.mac, g.fixed_ip)
        names[g.name] = found
    assert len(imported.specs) == len(planned.specs)
    assert dict(imported.topo.tunnel_ips) == {k: v for k, v in planned.topo.tunnel_ips.items()
                                              if k in imported.topo.tunnel_ips}
    assert imported.externals == planned.externals
    booted = planned.boot()
    assert imported.boot() == {names[k]: v for k, v in booted.items()}
    targets = [(a, str(booted[b]).split("/")[0]) for a in booted for b in booted if a != b and booted[b]]
    targets += [(a, "203.0.113.1") for a in booted]
    targets += [(OUTSIDE, str(f.floating_ip_address)) for f in result.cloud.floating_ips if f.port_id]
    wrong = []
    for src, dst in targets:
        for proto, port in PROTOS:
            try:
                want = planned.probe(src, dst, proto=proto, dport=port).answered
            except Exception as exc:  # noqa: BLE001 - e.g. seed 003 has no outside: both must say so
                want = type(exc).__name__
            try:
                got = imported.probe(names.get(src, src), dst, proto=proto, dport=port).answered
            except Exception as exc:  # noqa: BLE001
                got = type(exc).__name__
            if want != got:
                wrong.append(f"{src}->{dst} {proto}/{port}: planned {want}, imported {got}")
    assert not wrong, "\n".join(wrong)


def test_cli_traces_pings_and_matrix_on_an_imported_deployment(
        state: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    dep = tmp_path / "seed002"
    _plan_dir("002", dep, capsys)
    assert main(["import", str(dep)]) == 0
    assert "imported host compute" in capsys.readouterr().out
    assert not (state / "cloud.json").exists()
    world = world_from_captures([read_capture_dir(dep / h, h) for h in ("network", "compute")])
    guests = sorted(world.specs.values(), key=lambda g: g.name)
    assert len(guests) == 4
    world.boot()
    a, b = next((x, y) for x in guests for y in guests if x is not y and y.fixed_ip is not None
                and world.probe(x.name, str(y.fixed_ip)).succeeded)
    assert main(["ping", a.name, str(b.fixed_ip)]) == 0
    assert "reply" in capsys.readouterr().out
    assert main(["trace", a.name, str(b.fixed_ip), "--proto", "tcp", "--dport", "22", "--level", "minimal"]) == 0
    assert "the exchange succeeded" in capsys.readouterr().out
    assert main(["diagram", "--trace", a.name, str(b.fixed_ip)]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("graph neutrino") and a.device in dot
    # the matrix has every instance as a row
    assert main(["matrix", "--no-hosts", "--no-routers", "--format", "json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert {c["source"] for c in cells} == {g.name for g in guests} | {OUTSIDE}
    assert any(c["ok"] for c in cells) and any(not c["ok"] for c in cells)
    assert all(c["source"] != c["destination"] for c in cells)


def test_cli_diagnoses_a_security_group_drop_on_an_imported_deployment(
        state: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Seed 000 (network and compute hosts), imported: tcp/23 from outside to the floating IP stops
    at the compute's port chain; the answer names the port, the chain and the rule, and what to
    change on the host (there is no API object to fix)."""
    dep = tmp_path / "seed000"
    _plan_dir("000", dep, capsys)
    assert main(["import", str(dep)]) == 0
    capsys.readouterr()
    assert main(["diagnose", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "23"]) == 1
    out = capsys.readouterr().out
    assert "not reachable: security group" in out
    assert "stops at: compute qbr61e31514-15" in out
    assert "chain quantum-openvswi-i61e31514-1" in out and "port 61e31514-1" in out
    assert "'-A quantum-openvswi-sg-fallback -j DROP'" in out
    assert "iptables -I quantum-openvswi-i61e31514-1 1 -p tcp -m tcp --dport 23 -j RETURN" in out
    assert "fix: no API object to change" in out
    assert main(["diagnose", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22"]) == 0
    assert main(["matrix", "--no-hosts", "--format", "json"]) == 0
    cells = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert any(c["source"] == "tap61e31514-15" for c in cells)


def test_missing_iptables_is_said_and_assumed_only_when_asked(
        state: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    dep = tmp_path / "seed000"
    _plan_dir("000", dep, capsys)
    for f in (dep / "compute").iterdir():  # compute's iptables were not captured
        if f.read_text().startswith("$ iptables"):
            f.unlink()
    assert main(["import", str(dep)]) == 0
    capsys.readouterr()
    assert main(["trace", "tap61e31514-15", "8.8.8.8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "compute's iptables were not captured: the security-group decision is unknown" in err
    assert "--assume iptables-accept" in err
    assert main(["ping", "tap61e31514-15", "8.8.8.8", "--assume", "iptables-accept"]) == 0
    assert "reply" in capsys.readouterr().out
    assert main(["ping", "tap61e31514-15", "8.8.8.8", "--assume", "everything"]) == 2
    assert "--assume everything: not an assumption" in capsys.readouterr().err


def test_seed_captures_with_a_planned_compute(state: pathlib.Path, tmp_path: pathlib.Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's own network host (partial captures) beside a planned compute: what is missing is
    said per host and bridge; a trace that needs it stops with one line naming it."""
    dep = tmp_path / "mixed"
    shutil.copytree(EXAMPLES / "captures" / "seed000-network", dep / "network")
    _plan_dir("000", dep, capsys, host="compute")
    assert main(["import", str(dep)]) == 0
    capsys.readouterr()
    network = read_capture_dir(dep / "network", "network")
    said = [str(m) for m in missing_captures([network])]
    assert "network's OpenFlow flows were not captured (br-int): the OpenFlow decision is unknown" in said
    assert "network's iptables were not captured: the security-group decision is unknown" in said
    world = world_from_captures([network, read_capture_dir(dep / "compute", "compute")])
    assert [g.device for g in world.specs.values()] == ["tap61e31514-15"]
    assert world.externals and world.externals[0].gateway.ip.exploded == "172.24.4.225"
    assert main(["trace", "tap61e31514-15", "8.8.8.8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "got no address" in err and "not captured" in err


def test_imported_beside_a_cloud_is_chosen_with_imported(state: pathlib.Path, tmp_path: pathlib.Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """With a cloud up, trace and ping run in the cloud's world; --imported runs them in the
    imported hosts' (here seed 004's, whose names differ), and --assume is refused for a cloud."""
    assert main(["up", str(EXAMPLES / "seed000.yaml")]) == 0
    capsys.readouterr()
    dep = tmp_path / "seed004"
    _plan_dir("004", dep, capsys)
    assert main(["import", str(dep)]) == 0
    capsys.readouterr()
    assert main(["ping", "cirros", "8.8.8.8"]) == 0
    assert main(["ping", "compute-1-vnet0", "10.0.0.1"]) == 2
    assert "compute-1-vnet0" in capsys.readouterr().err
    assert main(["ping", "--imported", "compute-1-vnet0", "10.0.0.1"]) == 0
    assert "reply" in capsys.readouterr().out
    assert main(["trace", "--imported", "compute-1-vnet0", "10.0.0.1", "--level", "minimal"]) == 0
    assert "compute-1 compute-1-vnet0" in capsys.readouterr().out
    assert main(["ping", "cirros", "8.8.8.8", "--assume", "iptables-accept"]) == 2
    assert "--assume is for an imported deployment" in capsys.readouterr().err
    assert main(["diagram", "--host", "compute-1"]) == 0
    assert "compute-1" in capsys.readouterr().out


def test_the_seeds_own_captures_say_what_they_lack(state: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/captures holds seed 000's two hosts as their author captured them, in part: no
    instance can be placed, and each gap is said per host and per bridge."""
    compute = read_capture_dir(EXAMPLES / "captures" / "seed000-compute", "compute")
    network = read_capture_dir(EXAMPLES / "captures" / "seed000-network", "network")
    said = [str(m) for m in missing_captures([compute, network])]
    assert ("compute's devices were not captured (ip addr, brctl show): the instance behind qvo7c7ae61e-05 "
            "on br-int cannot be placed") in said
    assert "compute's OpenFlow flows were not captured (br-int): the OpenFlow decision is unknown" in said
    assert "network's routes were not captured: where it sends packets is unknown" in said
    world = world_from_captures([compute, network])
    assert world.specs == {}
    assert [str(e.gateway) for e in world.externals] == ["172.24.4.225/28"]  # the router's default route
