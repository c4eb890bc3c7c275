"""examples/dvr.yaml (distributed routers) held to the kernel's word: planned, built for real on the
Linux backend (qrouter- on every host of the router with its policy rules, fip- with the rfp-/fpr-
pair and proxy ARP on fg-, snat- on the network node, the DVR flows in each private Open vSwitch),
read back with an empty diff, and a probe set gets the same verdict from the kernel and the
simulator: east-west between the computes, each instance to its router and DHCP server and to the
stand-in internet (app1 through its floating IP on compute01, db1 through SNAT on the network
node), and the outside to the floating IP."""

from __future__ import annotations

import pathlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from neutrino.deploy import bring_up
from neutrino.linux.fabric import Guest
from neutrino.linux.realize import Realized, down, realize
from neutrino.linux.records import guest_ns, wire_ns
from neutrino.linux.runner import run
from neutrino.sim.cloud import guests_of, world_of
from neutrino.sim.trace import render

pytestmark = pytest.mark.root
SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "dvr.yaml"
PREFIX = "ntdvr"
INTERNET = "203.0.113.1"  # the fabric's stand-in internet behind the external gateway
FLOATING = "172.24.4.50"


def _probes(realized: Realized) -> list[tuple[str, str, str, int]]:
    leases = realized.leases()
    out = []
    for a in sorted(leases):
        targets = [str(leases[b].ip) for b in sorted(leases) if b != a and leases[b] is not None]  # type: ignore[union-attr]
        router, server = realized.dhcp_of(a)
        targets += [str(x) for x in (router, server) if x is not None]
        targets.append(INTERNET)
        out += [(a, dst, proto, port) for dst in targets for proto, port in (("icmp", 0), ("tcp", 22))]
    out += [("outside", FLOATING, "icmp", 0), ("outside", FLOATING, "tcp", 22), ("outside", FLOATING, "tcp", 80)]
    return out


def _real(p: tuple[str, str, str, int]) -> bool:
    src, dst, proto, port = p
    ns = wire_ns(PREFIX, "ext") if src == "outside" else guest_ns(PREFIX, src)
    argv = ["ping", "-c", "1", "-W", "1", dst] if proto == "icmp" else ["busybox", "nc", "-w", "1", dst, str(port)]
    res = run(argv, netns=ns, check=False, input="", timeout=15)
    return res.returncode == 0 or "refused" in res.stderr


def test_dvr_simulator_and_kernel_agree(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "state"
    try:
        result = bring_up(SCENARIO, state=state, keep=False)
        specs = guests_of(result.cloud, {h.name: h for h in result.hosts})
        guests = tuple(Guest(g.name, g.host, g.device, g.mac, str(g.fixed_ip) if g.fixed_ip else None) for g in specs)
        realized = realize(result.hosts, result.cloud.deployment, prefix=PREFIX, state_dir=state, guests=guests)
        leases = realized.leases()
        assert all(v is not None for v in leases.values()), leases
        for h in realized.hosts:
            d = realized.diff(h)
            assert d.empty, d.summary()
        world = world_of(result.cloud, result.hosts)
        assert world.boot() == {k: str(v) for k, v in leases.items()}
        todo = _probes(realized)
        with ThreadPoolExecutor(max_workers=12) as pool:
            kernel = dict(zip(todo, pool.map(_real, todo), strict=True))
        wrong = []
        for p in todo:
            trace = world.probe(p[0], p[1], proto=p[2], dport=p[3] or 22)
            if trace.answered != kernel[p]:
                wrong.append(f"--- {p}: simulator {trace.answered}, kernel {kernel[p]}\n{render(trace, 'summary')}")
        assert not wrong, f"{len(wrong)} of {len(todo)} probes disagree\n" + "\n".join(wrong)
        # east-west, the floating IP both ways and SNAT all work for real
        assert kernel[("app1", str(leases["db1"].ip), "icmp", 0)]  # type: ignore[union-attr]
        assert kernel[("outside", FLOATING, "icmp", 0)]
        assert kernel[("app1", INTERNET, "icmp", 0)] and kernel[("db1", INTERNET, "icmp", 0)]
    finally:
        down(PREFIX, state)
