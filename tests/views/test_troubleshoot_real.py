"""The troubleshooter's commands the simulator answers, held to the real tools on the Linux backend
(seed 000 built for real, as root): ``ovs-appctl ofproto/trace`` (the same tables visited and the
same datapath outputs for the seed's probes, on bridges that learned nothing yet), ``conntrack -L``
in the router after a ping from outside, and ``tcpdump`` on the router's gateway device."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from neutrino import store, worldkeep
from neutrino.ingest.commands import parse_command
from neutrino.linux import session
from neutrino.linux.realize import _socket_dir
from neutrino.linux.records import guest_ns, planned_ns, wire_ns
from neutrino.linux.runner import run, wait_for
from neutrino.views.answer import answer
from neutrino.views.ofproto_trace import TraceRequest, ofproto_trace
from neutrino.views.tcpdump import keep_trace

pytestmark = pytest.mark.root
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
ROUTER = "qrouter-332e9221-b0ad-4162-83fe-95d4ae178eb1"
QG = "qg-343b7107-6d"


@pytest.fixture(scope="module")
def linux(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """Seed 000 up on the Linux backend, in a state folder of its own; torn down afterwards."""
    folder = tmp_path_factory.mktemp("seed000-linux")
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(folder))
    exe = str(pathlib.Path(sys.executable).with_name("neutrino"))
    try:
        up = subprocess.run([exe, "up", str(EXAMPLES / "seed000.yaml"), "--backend", "linux"], capture_output=True,
                            text=True, timeout=180, check=False)
        assert up.returncode == 0, up.stderr
        yield folder
    finally:
        down = subprocess.run([exe, "down"], capture_output=True, text=True, timeout=180, check=False)
        mp.undo()
        assert down.returncode == 0, down.stderr
        assert session.prefix_of(folder) + "-" not in run(["ip", "netns"]).stdout


def _appctl(state: pathlib.Path, host: str, *words: str) -> list[str]:
    ctl = _socket_dir(state, session.prefix_of(state), host) / "ovs-vswitchd.ctl"
    return ["ovs-appctl", "-t", str(ctl), *words]


def _real_trace(state: pathlib.Path, host: str, bridge: str, flow: str, *, names: bool) -> str:
    """The real trace, every bridge's MAC table flushed just before (as the simulator's start empty)."""
    flush = " ".join(_appctl(state, host, "fdb/flush"))  # every bridge's
    trace = " ".join(_appctl(state, host, "ofproto/trace", *(["--names"] if names else []), bridge, f"'{flow}'"))
    res = subprocess.run(["sh", "-c", f"{flush} >/dev/null && {trace}"], capture_output=True, text=True,
                         timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _tables(text: str, planned: set[str]) -> list[tuple[str, str]]:
    """(bridge, table line) in the order visited, on the plan's bridges (not the backend's br-phy)."""
    out: list[tuple[str, str]] = []
    bridge = ""
    for ln in text.splitlines():
        m = re.match(r'\s*bridge\("([^"]+)"\)$', ln)
        if m:
            bridge = m[1]
            continue
        m = re.match(r"\s*(\d+\. .*)$", ln)
        if m and bridge in planned:
            out.append((bridge, m[1]))
    return out


def _split(acts: str) -> list[str]:
    """Datapath actions split on the commas outside parentheses."""
    depth = 0
    word = ""
    words: list[str] = []
    for ch in acts + ",":
        if ch == "," and depth == 0:
            words.append(word)
            word = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        word += ch
    return words


def _outputs(text: str) -> set[tuple[int, str]]:
    """The datapath actions as (VLAN tag at the time, where to): a tunnel becomes
    ``tunnel:KEY>REMOTE``, the kernel's ``set(tunnel(...)),gre_sys`` and the userspace datapath's
    ``tnl_push(...)`` alike; the backend's underlay output after a tnl_push is left out."""
    line = next(ln for ln in text.splitlines() if ln.startswith("Datapath actions: "))
    acts = line.removeprefix("Datapath actions: ")
    out: set[tuple[int, str]] = set()
    vlan = 0
    tunnel = ""
    words = _split(acts)
    skip_next = False
    expanded: list[str] = []
    for w in words:  # clone(A,B): the same actions on a copy (the userspace datapath's tunnel push)
        if w.startswith("clone(") and w.endswith(")"):
            inner = _split(w[len("clone("):-1])
            expanded.extend(inner)
        else:
            expanded.append(w)
    words = expanded
    for w in words:
        if w.startswith("push_vlan("):
            vlan = int(re.search(r"vid=(\d+)", w)[1])  # type: ignore[index]
        elif w == "pop_vlan":
            vlan = 0
        elif w.startswith("set(tunnel("):
            key = re.search(r"tun_id=(0x[0-9a-f]+)", w)
            tunnel = f"tunnel:{key[1] if key else ''}>{re.search(r'dst=([0-9.]+)', w)[1]}"  # type: ignore[index]
        elif w.startswith("tnl_push("):
            key = re.search(r"key=(0x[0-9a-f]+)", w)
            dst = re.search(r"ipv4\(src=[0-9.]+,dst=([0-9.]+)", w)
            out.add((vlan, f"tunnel:{key[1] if key else ''}>{dst[1]}"))  # type: ignore[index]
            skip_next = True  # then the underlay bridge's own output (br-phy's uplink)
        elif w in ("gre_sys", "vxlan_sys_4789") and tunnel:
            out.add((vlan, tunnel))
        elif w and w != "drop":
            if skip_next and w.startswith("ul"):
                continue
            out.add((vlan, w))
    return out


CIRROS_MAC, ROUTER_MAC, DHCP_MAC = "fa:16:3e:30:80:d4", "fa:16:3e:6a:3f:36", "fa:16:3e:8c:76:e1"
# seed 000's probes, bridge by bridge: cirros -> 8.8.8.8 (and its answer), cirros -> the DHCP port
PROBES = (
    ("compute", "br-int", f"in_port=qvo61e31514-15,dl_src={CIRROS_MAC},dl_dst={ROUTER_MAC},icmp,"
                          "nw_src=10.1.0.2,nw_dst=8.8.8.8,icmp_type=8"),
    ("compute", "br-tun", f"in_port=patch-int,dl_vlan=1,dl_src={CIRROS_MAC},dl_dst={ROUTER_MAC},icmp,"
                          "nw_src=10.1.0.2,nw_dst=8.8.8.8,icmp_type=8"),
    ("network", "br-tun", f"in_port=gre-1,tun_id=0x2,dl_src={CIRROS_MAC},dl_dst={ROUTER_MAC},icmp,"
                          "nw_src=10.1.0.2,nw_dst=8.8.8.8,icmp_type=8"),
    ("network", "br-int", f"in_port=tap9f606bd8-91,dl_src={ROUTER_MAC},dl_dst={CIRROS_MAC},icmp,"
                          "nw_src=8.8.8.8,nw_dst=10.1.0.2"),
    ("compute", "br-tun", f"in_port=gre-2,tun_id=0x2,dl_src={ROUTER_MAC},dl_dst={CIRROS_MAC},icmp,"
                          "nw_src=8.8.8.8,nw_dst=10.1.0.2"),
    ("compute", "br-tun", f"in_port=gre-2,tun_id=0x7,dl_src={ROUTER_MAC},dl_dst={CIRROS_MAC},icmp,"
                          "nw_src=8.8.8.8,nw_dst=10.1.0.2"),  # another network's key: dropped
    ("network", "br-int", f"in_port=tap6dd828ed-5f,dl_src={DHCP_MAC},dl_dst=ff:ff:ff:ff:ff:ff,arp,"
                          "arp_spa=10.1.0.3,arp_tpa=10.1.0.2,arp_op=1"),
)


@pytest.mark.parametrize("host,bridge,flow", PROBES)
def test_ofproto_trace_matches_the_real_one(linux: pathlib.Path, host: str, bridge: str, flow: str) -> None:
    kept = store.load_host(host)
    planned = {b for b in ("br-int", "br-tun", "br-ex")}
    sim = ofproto_trace(kept, TraceRequest(bridge, flow))
    # the real switch hears its namespaces' own traffic (IPv6 neighbour discovery, DHCP renewals)
    # and can learn a MAC between the flush and the trace: such a run is taken again (at most 5)
    for _ in range(5):
        real = _real_trace(linux, host, bridge, flow, names=False)
        if _tables(sim, planned) == _tables(real, planned):
            break
    assert _tables(sim, planned) == _tables(real, planned), f"simulated:\n{sim}\nreal:\n{real}"
    assert sim.splitlines()[0] == real.splitlines()[0]  # the same "Flow:" (port numbers agree)
    sim_named = ofproto_trace(kept, TraceRequest(bridge, flow, names=True))
    for _ in range(5):
        real_named = _real_trace(linux, host, bridge, flow, names=True)
        if _outputs(sim_named) == _outputs(real_named):
            break
    assert _outputs(sim_named) == _outputs(real_named), f"simulated:\n{sim_named}\nreal:\n{real_named}"
    final = [ln for ln in sim.splitlines() if ln.startswith("Final flow: ")]
    assert final == [ln for ln in real.splitlines() if ln.startswith("Final flow: ")]


def _ping_from_outside(prefix: str) -> None:
    res = run(["ping", "-c", "1", "-W", "3", "172.24.4.228"], netns=wire_ns(prefix, "ext"), check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_conntrack_in_the_router_matches(linux: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = session.prefix_of(linux)
    router = planned_ns(prefix, "network", ROUTER)
    run(["conntrack", "-F"], netns=router, check=False)
    _ping_from_outside(prefix)
    real = run(["conntrack", "-L", "-p", "icmp"], netns=router, check=False)
    world = worldkeep.booted_world(linux)
    keep_trace(linux, world.probe("outside", "172.24.4.228", proto="icmp"), world)
    capsys.readouterr()
    out = answer(store.load_host("network"), parse_command(f"ip netns exec {ROUTER} conntrack -L -p icmp"))
    err = capsys.readouterr().err

    def norm(text: str) -> list[str]:
        return sorted(re.sub(r"id=\d+", "id=N", re.sub(r"^(icmp +1) \d+", r"\1 T", ln)) for ln in text.splitlines())

    assert norm(out) == norm(real.stdout) and len(norm(out)) == 1, (out, real.stdout)
    assert "src=172.24.4.225 dst=172.24.4.228 type=8 code=0 id=N src=10.1.0.2 dst=172.24.4.225 type=0" in norm(out)[0]
    assert err == real.stderr == "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n"


def test_tcpdump_on_the_gateway_matches(linux: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = session.prefix_of(linux)
    router = planned_ns(prefix, "network", ROUTER)
    proc = subprocess.Popen(["ip", "netns", "exec", router, "tcpdump", "-i", QG, "-n", "-e", "-c", "2", "icmp"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        wait_for(lambda: "listening on" in (proc.stderr.readline() if proc.poll() is None else "listening on"),
                 timeout=10, what="tcpdump listening")
        _ping_from_outside(prefix)
        real_out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    world = worldkeep.booted_world(linux)
    keep_trace(linux, world.probe("outside", "172.24.4.228", proto="icmp"), world)
    sim = answer(store.load_host("network"), parse_command(f"ip netns exec {ROUTER} tcpdump -i {QG} -n -e icmp"))
    capsys.readouterr()
    outside_real = run(["cat", "/sys/class/net/br0/address"], netns=wire_ns(prefix, "ext")).stdout.strip()

    def norm(text: str, outside: str) -> list[str]:
        lines = [ln.split(" ", 1)[1] for ln in text.splitlines()]  # the time aside
        # the probe's echo carries no data, ping's 56 bytes: lengths aside, the lines are the same
        return [re.sub(r"length \d+", "length L", re.sub(r"id \d+", "id N", ln.replace(outside, "OUTSIDE")))
                for ln in lines]

    sim_outside = re.search(r"^\S+ (\S+) >", sim)[1]  # type: ignore[index]  # the request's source MAC
    assert norm(sim, sim_outside) == norm(real_out, outside_real), (sim, real_out)
    assert norm(sim, sim_outside)[0] == ("OUTSIDE > fa:16:3e:10:18:5b, ethertype IPv4 (0x0800), length L: "
                                         "172.24.4.225 > 172.24.4.228: ICMP echo request, id N, seq 1, length L")
    assert len(norm(sim, sim_outside)) == 2 and "ICMP echo reply" in sim.splitlines()[1]



def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    from neutrino.cli import main

    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def _ping_dhcp_port(prefix: str) -> None:
    """The instance pings the DHCP port: both hosts' bridges learn the two MACs again (the
    ofproto/trace tests above flush them)."""
    res = run(["ping", "-c", "1", "-W", "3", "10.1.0.3"], netns=guest_ns(prefix, "cirros"), check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_exec_real_appctl_targets_the_hosts_own_ovs(linux: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``exec --real HOST -- ovs-appctl ...`` talks to that host's private ovs-vswitchd, and its
    ofproto/trace agrees with ``exec HOST -- ...`` (the simulator's) on the tables and the datapath
    actions, for a frame to a MAC both have learned (the DHCP port's, on patch-tun)."""
    _ping_dhcp_port(session.prefix_of(linux))
    flow = (f"in_port=qvo61e31514-15,dl_src={CIRROS_MAC},dl_dst={DHCP_MAC},icmp,nw_src=10.1.0.2,nw_dst=10.1.0.3,"
            "icmp_type=8")
    planned = {"br-int", "br-tun", "br-ex"}
    for names in ((), ("--names",)):
        words = ("ovs-appctl", "ofproto/trace", *names, "br-int", flow)
        real = _cli(capsys, "exec", "--real", "compute", "--", *words)
        sim = _cli(capsys, "exec", "compute", "--", *words)
        assert "-> forwarding to learned port" in real and "-> forwarding to learned port" in sim
        if names:  # (with --names OVS also names the ports in the tables' matches; the simulator numbers them)
            assert _outputs(real) == _outputs(sim) == {(1, "tunnel:0x2>192.168.122.10")}, (real, sim)
        else:
            assert _tables(real, planned) == _tables(sim, planned) and len(_tables(sim, planned)) == 2, (real, sim)
            assert real.splitlines()[0] == sim.splitlines()[0]  # the same "Flow:", ports numbered alike
    # the other OVS commands go to the same private switch (which also holds the backend's underlay br-phy)
    real_bridges = _cli(capsys, "exec", "--real", "compute", "--", "ovs-vsctl", "list-br").splitlines()
    assert [b for b in real_bridges if b != "br-phy"] == _cli(capsys, "exec", "compute", "--", "ovs-vsctl",
                                                               "list-br").splitlines() == ["br-int", "br-tun"]
    assert _cli(capsys, "exec", "--real", "network", "--", "ovs-vsctl", "list-ports", "br-int") == _cli(
        capsys, "exec", "network", "--", "ovs-vsctl", "list-ports", "br-int")
    assert _cli(capsys, "exec", "--real", "compute", "--", "ovs-dpctl", "show").startswith("netdev@ovs-netdev:\n")


def _fdb_rows(text: str) -> dict[str, tuple[str, str]]:
    """fdb/show's rows by MAC: (port, VLAN), the age left out."""
    lines = text.splitlines()
    assert lines[0] == " port  VLAN  MAC                Age"
    return {ln.split()[2]: (ln.split()[0], ln.split()[1]) for ln in lines[1:]}


def test_fdb_show_after_a_ping_matches(linux: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After the instance pinged its DHCP port and the outside pinged its floating IP, for real and
    (``neutrino trace outside 172.24.4.228``, on the world where the boot's DHCP taught the bridges the
    same two MACs) in the simulator, every MAC the simulator's br-int lists is on the same port and VLAN
    in the real one. The real tables hold more: what the devices' IPv6 neighbour discovery taught them
    (the simulator sends none of it)."""
    prefix = session.prefix_of(linux)
    _ping_dhcp_port(prefix)
    _ping_from_outside(prefix)
    _cli(capsys, "trace", "outside", "172.24.4.228", "--level", "minimal")
    from neutrino.cli import main  # exec --real passes the real tool's stderr on, after its output

    assert main(["exec", "--real", "network", "--", "ip", "netns", "exec", ROUTER, "conntrack", "-L", "-p",
                 "icmp"]) == 0
    out, err = capsys.readouterr()
    assert "src=172.24.4.225 dst=172.24.4.228 type=8 code=0" in out
    assert re.fullmatch(r"conntrack v1\.4\.7 \(conntrack-tools\): \d+ flow entries have been shown\.\n", err)
    for host, want in (("compute", {CIRROS_MAC: ("2", "1"), DHCP_MAC: ("1", "1"), ROUTER_MAC: ("1", "1")}),
                       ("network", {CIRROS_MAC: ("1", "1"), DHCP_MAC: ("3", "1"), ROUTER_MAC: ("2", "1")})):
        sim = _fdb_rows(_cli(capsys, "exec", host, "--", "ovs-appctl", "fdb/show", "br-int"))
        real = _fdb_rows(_cli(capsys, "exec", "--real", host, "--", "ovs-appctl", "fdb/show", "br-int"))
        assert sim == want, sim
        assert {mac: real.get(mac) for mac in sim} == sim, (host, sim, real)
