"""The simulator's wiring, read from planned host states (seed 000 and seed 001 scenarios)."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.deploy import bring_up
from neutrino.sim.topology import End, Kind, build

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def up(name: str, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    result = bring_up(EXAMPLES / f"{name}.yaml")
    return result.hosts, result


@pytest.fixture
def seed0(tmp_path, monkeypatch):
    hosts, _ = up("seed000", tmp_path, monkeypatch)
    by = {h.name: h for h in hosts}
    compute = by["compute"]
    tap = next(lk.name for ns in compute.namespaces for lk in ns.links or () if lk.name.startswith("tap"))
    ips = {"network": __import__("ipaddress").ip_address("192.168.122.10"),
           "compute": __import__("ipaddress").ip_address("192.168.122.11")}
    return build(hosts, tunnel_ips=ips, guests={("compute", tap): "cirros"}), tap


def test_instance_path_is_wired_tap_qbr_qvb_qvo_br_int_patch_br_tun(seed0):
    topo, tap = seed0
    suffix = tap[3:]
    qbr = f"qbr{suffix}"
    assert topo.peer(End(Kind.LBR, "compute", qbr, tap)) == End(Kind.GUEST, "compute", "cirros", "eth0")
    assert topo.peer(End(Kind.LBR, "compute", qbr, f"qvb{suffix}")) == End(Kind.OVS, "compute", "br-int",
                                                                          f"qvo{suffix}")
    assert topo.peer(End(Kind.OVS, "compute", "br-int", "patch-tun")) == End(Kind.OVS, "compute", "br-tun",
                                                                            "patch-int")
    assert topo.notes == []


def test_grizzly_agent_veths_and_gre_tunnels_pair_up(seed0):
    topo, _ = seed0
    network = topo.hosts["network"]
    router = next(n for n in network.namespace_names() if n.startswith("qrouter-"))
    inside = {e.port for e in topo.wires.values() if e.kind is Kind.NS and e.element == router}
    assert {p[:3] for p in inside} == {"qr-", "qg-"}
    for dev in inside:
        bridge = "br-ex" if dev.startswith("qg-") else "br-int"
        assert topo.peer(End(Kind.NS, "network", router, dev)) == End(Kind.OVS, "network", bridge, "tap" + dev[3:])
    (a, b) = sorted(topo.tunnels, key=lambda t: t.host)
    assert topo.tunnel_to(a) == b and topo.tunnel_to(b) == a
