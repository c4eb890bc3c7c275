"""examples/ovsfw.yaml (Neutron's native OVS firewall) held to the kernel's word: planned, built for
real on the Linux backend (each host's private Open vSwitch, userspace datapath, whose conntrack
runs the ``ct()`` flows), read back with an empty diff, and a probe set (every ordered instance
pair over icmp, tcp/22 and tcp/80, each instance to its DHCP server and router) gets the same
verdict from the kernel and the simulator: the remote-group conjunction lets group members in on
tcp/22, the CIDR rule lets the subnet ping, the rest is dropped."""

from __future__ import annotations

import pathlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from neutrino.deploy import bring_up
from neutrino.linux.fabric import Guest
from neutrino.linux.realize import Realized, down, realize
from neutrino.linux.records import guest_ns
from neutrino.linux.runner import run
from neutrino.sim.cloud import guests_of, world_of
from neutrino.sim.trace import render

pytestmark = pytest.mark.root
SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "ovsfw.yaml"
PREFIX = "ntfw"
PROTOS = (("icmp", 0), ("tcp", 22), ("tcp", 80))


def _probes(realized: Realized) -> list[tuple[str, str, str, int]]:
    leases = realized.leases()
    out = []
    for a in sorted(leases):
        targets = [str(leases[b].ip) for b in sorted(leases) if b != a and leases[b] is not None]  # type: ignore[union-attr]
        router, server = realized.dhcp_of(a)
        targets += [str(x) for x in (router, server) if x is not None]
        out += [(a, dst, proto, port) for dst in targets for proto, port in PROTOS]
    return out


def _real(p: tuple[str, str, str, int]) -> bool:
    src, dst, proto, port = p
    argv = ["ping", "-c", "1", "-W", "1", dst] if proto == "icmp" else ["busybox", "nc", "-w", "1", dst, str(port)]
    res = run(argv, netns=guest_ns(PREFIX, src), check=False, input="", timeout=15)
    return res.returncode == 0 or "refused" in res.stderr


def test_ovs_firewall_simulator_and_kernel_agree(tmp_path: pathlib.Path) -> None:
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
        # the rules as written: members in on ssh, the subnet pings, nothing reaches plain1
        assert kernel[("web2", str(leases["web1"].ip), "tcp", 22)]  # type: ignore[union-attr]
        assert not kernel[("plain1", str(leases["web1"].ip), "tcp", 22)]  # type: ignore[union-attr]
        assert kernel[("plain1", str(leases["web1"].ip), "icmp", 0)]  # type: ignore[union-attr]
        assert not kernel[("web1", str(leases["plain1"].ip), "icmp", 0)]  # type: ignore[union-attr]
        # the router (a trusted port) answers, its reply let in as established
        assert kernel[("plain1", "10.0.0.1", "icmp", 0)]
    finally:
        down(PREFIX, state)
