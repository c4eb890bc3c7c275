"""``neutrino diagram``: the kept hosts drawn with Graphviz, with seed 000's letters A..P on the devices
its sections name (A,B,C the instance's tap, qbr, qvb; D,E br-int; F,G br-tun; H,I the network host's
br-tun; K,L external; M,N the router; O,P DHCP) and J on the network host's patch-tun."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.seeds import excerpt

EXPECTED = {"A": ("compute", "tap"), "B": ("compute", "qbr"), "C": ("compute", "qvb"), "D": ("compute", "qvo"),
            "E": ("compute", "patch-tun"), "F": ("compute", "patch-int"), "G": ("compute", "gre-"),
            "H": ("network", "gre-"), "I": ("network", "patch-int"), "J": ("network", "patch-tun"),
            "K": ("network", "qg-"), "L": ("network", "tap"), "M": ("network", "tap"), "N": ("network", "qr-"),
            "O": ("network", "tap"), "P": ("network", "ns-")}


def test_letters_and_tunnel(seeds, neutrino):
    seeds("seed000")
    rc, dot, _ = neutrino("diagram")
    assert rc == 0 and dot.startswith("graph neutrino {") and dot.rstrip().endswith("}")
    for title in ("(A,B,C)", "(D,E)", "(F,G)", "(H,I)", "(O,P)", "(M,N)", "(K,L)"):
        assert title in excerpt(0, title)
    nodes = re.findall(r'^\s+"([^/"]+)/([^"]+)" \[label="\(([A-P])\) ([^"\\]+)', dot, flags=re.M)
    got = {mark: (host, dev) for host, _nid, mark, dev in nodes}
    assert set(got) == set(EXPECTED)
    for mark, (host, prefix) in EXPECTED.items():
        assert got[mark][0] == host and got[mark][1].startswith(prefix), (mark, got[mark])
    assert len([n for n in nodes if n[2] == "A"]) == 1
    tunnels = re.findall(r'"(\w+)/(gre-\d+)" -- "(\w+)/(gre-\d+)" \[.*label="GRE tunnel"', dot)
    assert len(tunnels) == 1 and {tunnels[0][0], tunnels[0][2]} == {"compute", "network"}
    assert "instance\\n10.1.0.2 fa:16:3e:" in dot  # the instance by its port's address
    only = neutrino("diagram", "--host", "compute")[1]
    assert "cluster_compute" in only and "cluster_network" not in only


def test_vxlan_mesh_of_three_hosts(seeds, neutrino):
    seeds("seed001")
    dot = neutrino("diagram")[1]
    tunnels = re.findall(r'"(\w+)/vxlan-\w+" -- "(\w+)/vxlan-\w+" \[.*VXLAN tunnel', dot)
    assert {frozenset(t) for t in tunnels} == {frozenset(p) for p in (("compute01", "compute02"),
                                                                       ("compute01", "controller"),
                                                                       ("compute02", "controller"))}


@pytest.mark.root  # Graphviz's dot comes with `make test`'s Debian packages (graphviz)
def test_png_and_svg(seeds, neutrino, tmp_path):
    assert shutil.which("dot")
    seeds("seed000")
    png = tmp_path / "cloud.png"
    rc, _, err = neutrino("diagram", "-o", str(png))
    data = png.read_bytes()
    assert rc == 0 and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000 and "wrote" in err
    rc, svg, _ = neutrino("diagram", "--format", "svg")
    assert rc == 0 and "<svg" in svg and "(J) patch" in svg
