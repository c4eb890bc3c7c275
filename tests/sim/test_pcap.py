"""A trace's pcap holds each packet as it was on the wire: GRE and VXLAN hops with their outer
Ethernet/IP/GRE (or UDP 4789 and VXLAN) headers, and no frame with all-zero MACs; the real tcpdump
reads it (when installed)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from neutrino.cli import main
from neutrino.deploy import bring_up
from neutrino.sim.packets import GRE, UDP, VXLAN, ZERO_MAC, Ethernet, IPv4, decapsulate, network_layer
from neutrino.sim.pcap import load_pcap, underlay_mac, wire_frames
from neutrino.sim.trace import frames

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def seed000(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("seed000")
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(folder))
    try:
        bring_up(EXAMPLES / "seed000.yaml")
    finally:
        mp.undo()
    return folder


def _world(folder: pathlib.Path):  # type: ignore[no-untyped-def]
    from neutrino import worldkeep

    return worldkeep.booted_world(folder)


def test_gre_hops_carry_their_outer_headers(seed000: pathlib.Path) -> None:
    trace = _world(seed000).probe("cirros", "8.8.8.8")
    got = [f for f in frames(trace) if isinstance(f, Ethernet)]
    assert len(got) == len(frames(trace))
    tunnelled = [f for f in got if isinstance(network_layer(f), IPv4) and isinstance(network_layer(f).payload, GRE)]
    assert len(tunnelled) == 2  # the request compute -> network, the reply network -> compute
    request = tunnelled[0]
    outer = network_layer(request)
    assert isinstance(outer, IPv4) and (str(outer.src), str(outer.dst)) == ("192.168.122.11", "192.168.122.10")
    tunnel, inner = decapsulate(request)
    assert tunnel.kind == "gre" and tunnel.key == 2
    assert request.src == underlay_mac(outer.src) and request.dst == underlay_mac(outer.dst)
    # the inner frame is the one that left compute's br-tun, the tunnel hop's own frame
    hop = next(h for h, f in wire_frames(trace) if f == request)
    assert hop.device == "gre-1" and inner == hop.frame


def test_no_frame_has_all_zero_macs(seed000: pathlib.Path) -> None:
    world = _world(seed000)
    for src, dst in (("cirros", "8.8.8.8"), ("outside", "172.24.4.228"), ("cirros", "10.1.0.1")):
        trace = world.probe(src, dst)
        for f in frames(trace):
            assert isinstance(f, Ethernet)
            assert f.src != ZERO_MAC and f.dst != ZERO_MAC, (src, dst, f)
    # the outside's own packet before ARP (a "(local)" hop) is not in the pcap; the wire's is
    trace = world.probe("outside", "172.24.4.228")
    assert trace.hops[0].device == "(local)" and wire_frames(trace)[0][0] is trace.hops[1]


def test_vxlan_hops_in_the_pcap_read_by_tcpdump(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    bring_up(EXAMPLES / "seed001.yaml")
    pcap = tmp_path / "t.pcap"
    rc = main(["trace", "outside", "192.168.100.41", "--pcap", str(pcap), "--level", "minimal"])
    capsys.readouterr()
    assert rc in (0, 1)
    records = load_pcap(pcap)
    vx = [r.packet() for r in records if isinstance(network_layer(r.packet()), IPv4)
          and isinstance(network_layer(r.packet()).payload, UDP)
          and isinstance(network_layer(r.packet()).payload.payload, VXLAN)]
    assert vx, "the probe crossed a VXLAN tunnel"
    udp = network_layer(vx[0]).payload
    assert udp.dport == 4789 and udp.payload.vni == 1
    assert all(r.packet().src != ZERO_MAC for r in records)
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    res = subprocess.run(["tcpdump", "-r", str(pcap), "-n", "-e"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "10.168.7.16.48100 > 10.168.7.17.4789: VXLAN, flags [I] (0x08), vni 1" in res.stdout or \
        "> 10.168.7.17.4789: VXLAN, flags [I] (0x08), vni 1" in res.stdout
    assert "00:00:00:00:00:00" not in res.stdout
