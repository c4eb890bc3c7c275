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


def _label(dot: str, nid: str) -> str:
    """The label a node was first given (the host clusters' declarations)."""
    m = re.search(rf'^\s+"{re.escape(nid)}" \[label="([^"]*)"', dot, flags=re.M)
    assert m, f"no node {nid}"
    return m.group(1)


def test_trace_drawn_over_seed000(seeds, neutrino):
    """Issue 14: seed 000's diagram with the cirros -> 8.8.8.8 trace shows every device of the trace
    with its letter (J for the network host's patch-tun, the letter seed 000's titles leave out,
    as the simulator's hop says too), the forward path in one colour and the reply in another, numbered."""
    from neutrino import store, worldkeep

    seeds("seed000")
    trace = worldkeep.booted_world(store.state_dir()).probe("cirros", "8.8.8.8")
    assert trace.succeeded and trace.reply is not None
    rc, dot, _ = neutrino("diagram", "--trace", "cirros", "8.8.8.8")
    assert rc == 0 and dot.rstrip().endswith("}")
    lettered = [h for h in (*trace.hops, *trace.reply.hops) if h.letter]
    letters = set()
    for hop in lettered:
        mark = hop.letter
        assert (mark == "J") == ((hop.host, hop.device) == ("network", "patch-tun")) or mark != "J", hop
        assert _label(dot, f"{hop.host}/{hop.device}").startswith(f"({mark}) {hop.device}"), hop
        letters.add(mark)
    assert letters == set("ACDEFGHIJKLMN")  # all but the firewall bridge and the DHCP server's
    forward = re.findall(r'^  "([^"]+)" -- "([^"]+)" \[color="royalblue".*label="(\d+)"\];$', dot, flags=re.M)
    reply = re.findall(r'^  "([^"]+)" -- "([^"]+)" \[color="forestgreen".*label="r(\d+)"\];$', dot, flags=re.M)
    assert [int(n) for *_, n in forward] == list(range(1, len(trace.hops) + 1))
    assert forward[0][:2] == ("trace: start", "compute/tap61e31514-15") or forward[0][1].startswith("compute/tap")
    assert forward[-1][1] == "outside" and reply[0][0] == "outside"
    assert [int(n) for *_, n in reply] == list(range(2, len(trace.reply.hops) + 1))
    assert reply[-1][1].startswith("compute/vm-")  # back at the instance, named after it
    assert '[label="instance cirros\\n10.1.0.2 fa:16:3e:' in dot
    assert "delivered, the answer came back" in dot and "dropped" not in dot
    traced = {b for _a, b, _n in forward + reply}
    for hop in lettered:
        assert f"{hop.host}/{hop.device}" in traced


def test_trace_as_svg(seeds, neutrino, tmp_path):
    """The same drawn by Graphviz: the SVG holds every lettered device's label and both colours."""
    import html

    assert shutil.which("dot"), "Graphviz's dot (Debian: graphviz) is needed"
    seeds("seed000")
    out = tmp_path / "trace.svg"
    rc, _, err = neutrino("diagram", "--trace", "cirros", "8.8.8.8", "-o", str(out))
    assert rc == 0 and "1 traces" in err
    svg = html.unescape(out.read_text())
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for mark, device in (("A", "tap61e31514-15"), ("D", "qvo61e31514-15"), ("F", "patch-int"), ("H", "gre-1"),
                         ("J", "patch-tun"), ("N", "qr-9f606bd8-91"), ("L", "tap343b7107-6d"),
                         ("K", "qg-343b7107-6d"), ("M", "tap9f606bd8-91"), ("I", "patch-int"), ("G", "gre-2"),
                         ("E", "patch-tun"), ("C", "qvb61e31514-15")):
        assert f">({mark}) {device}" in svg, mark
    assert 'stroke="royalblue"' in svg and 'stroke="forestgreen"' in svg
    assert "instance cirros" in svg and "the outside" in svg


def test_dropped_trace_marks_the_drop(seeds, neutrino):
    seeds("seed000")
    rc, dot, _ = neutrino("diagram", "--host", "compute", "--host", "network", "--trace", "outside",
                          "172.24.4.228", "--proto", "tcp", "--dport", "23")
    assert rc == 0
    drop = re.search(r'^  "trace: dropped" \[label="dropped: security group\\nat compute (qbr[0-9a-f-]+)", '
                     r'shape="octagon".*color="red"', dot, flags=re.M)
    assert drop and drop.group(1) == "qbr61e31514-15"
    assert re.search(r'^  "compute/qvb61e31514-15" -- "trace: dropped" \[color="red"', dot, flags=re.M)
    assert '"compute/qvb61e31514-15" [color="red", penwidth=3.5];' in dot
    assert "tcp port 23\\ndropped: security group" in dot
    assert 'color="forestgreen"' not in dot  # no reply: it never arrived
    rc, ok, _ = neutrino("diagram", "--trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22")
    assert rc == 0 and "trace: dropped" not in ok and 'color="forestgreen"' in ok


def test_bad_trace_is_one_line(seeds, neutrino):
    seeds("seed000")
    rc, out, err = neutrino("diagram", "--trace", "nosuchvm", "8.8.8.8")
    assert rc == 2 and out == "" and err.startswith("neutrino: ") and err.count("\n") == 1
