"""MTUs held to the kernel's word: seeds 000 (GRE, Grizzly: every device and the instance at 1500)
and 001 (VXLAN, modern: the networks at 1450, told to the instances by DHCP option 26) are planned
once, built for real on the Linux backend and simulated; ``ping -M do -s N`` at sizes on both sides
of each limit must end the same way on both: answered, dropped silently, refused by the sender's
own kernel (``ping: local error: message too long, mtu=M``) or answered by a router with ICMP
fragmentation needed (``Frag needed and DF set (mtu = M)``), with the same MTU and the same source.

The limits: seed 000's instance reaches its router across a GRE tunnel whose frames still carry
the local VLAN tag (Grizzly's br-tun sends them with NORMAL), so a 1454-byte packet (-s 1426) is
the largest that fits a 1500-byte underlay (1454 + 4 + 14 + 28); the instance's own 1500 stops
-s 1473. Seed 001's instances stop -s 1423 themselves (eth0 at 1450 from DHCP); from the outside,
the router answers a 1451-byte packet for a floating IP with fragmentation needed (its qr- device
is at 1450) and passes -s 1472 to its own gateway address (qg- at 1500).

Between pings the source's route cache is flushed: the kernel remembers a fragmentation needed
(the next ping to that address would fail locally), the simulator has no such memory.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from neutrino.deploy import bring_up
from neutrino.linux.fabric import Guest
from neutrino.linux.realize import Realized, down, realize
from neutrino.linux.records import guest_ns, wire_ns
from neutrino.linux.runner import run
from neutrino.sim.cloud import guests_of, world_of
from neutrino.sim.trace import DropReason, Trace, render
from neutrino.sim.world import OUTSIDE, World

pytestmark = pytest.mark.root
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True, slots=True)
class Ping:
    source: str  # a server name, or OUTSIDE
    dst: str
    size: int  # ping -s
    expect: str  # ok, silent, local:MTU or frag:MTU@SOURCE
    mtu_drop: bool = False  # a silent end the simulator must put down to an MTU

    def __str__(self) -> str:
        return f"{self.source}->{self.dst} -s {self.size}"


PINGS = {
    "000": [
        Ping("cirros", "10.1.0.1", 1426, "ok"),
        Ping("cirros", "10.1.0.1", 1427, "silent", mtu_drop=True),  # the GRE packet is 1501 bytes
        Ping("cirros", "10.1.0.1", 1472, "silent", mtu_drop=True),
        Ping("cirros", "10.1.0.1", 1473, "local:1500"),
        Ping(OUTSIDE, "172.24.4.228", 1426, "ok"),
        Ping(OUTSIDE, "172.24.4.228", 1427, "silent", mtu_drop=True),
    ],
    "001": [
        Ping("vm1", "10.11.11.1", 1422, "silent"),  # the seed's security group lets nothing out
        Ping("vm1", "10.11.11.1", 1423, "local:1450"),
        # the router's error comes from the floating IP even for a connection it never confirmed
        # (icmp_send attaches the dropped packet's conntrack entry: the DNAT is undone in it)
        Ping(OUTSIDE, "192.168.100.41", 1423, "frag:1450@192.168.100.41"),
        Ping(OUTSIDE, "192.168.100.41", 1422, "silent"),  # nor in: the request reaches vm1's firewall
        Ping(OUTSIDE, "192.168.100.41", 1423, "frag:1450@192.168.100.41"),  # now with a confirmed one
        Ping(OUTSIDE, "192.168.100.18", 1472, "ok"),
        Ping(OUTSIDE, "192.168.100.18", 1473, "local:1500"),
    ],
}


def kernel_outcome(prefix: str, p: Ping) -> str:
    ns = wire_ns(prefix, "ext") if p.source == OUTSIDE else guest_ns(prefix, p.source)
    run(["ip", "route", "flush", "cache"], netns=ns, check=False)
    res = run(["ping", "-M", "do", "-c", "1", "-W", "1", "-s", str(p.size), p.dst], netns=ns, check=False,
              timeout=15)
    if res.returncode == 0:
        return "ok"
    local = re.search(r"local error: message too long, mtu=(\d+)", res.stderr + res.stdout)
    if local:
        return f"local:{local.group(1)}"
    frag = re.search(r"From (\S+) icmp_seq=\d+ Frag needed and DF set \(mtu = (\d+)\)", res.stdout)
    if frag:
        return f"frag:{frag.group(2)}@{frag.group(1)}"
    return "silent"


def simulated_outcome(trace: Trace) -> str:
    if trace.succeeded:
        return "ok"
    v = trace.verdict
    local = re.search(r"local error: message too long, mtu=(\d+)", v.detail)
    if v.reason is DropReason.MTU and local:
        return f"local:{local.group(1)}"
    frag = re.search(r"the sender got ICMP fragmentation needed \(type 3 code 4, next-hop MTU (\d+)\) from (\S+)",
                     v.detail)
    if v.reason is DropReason.MTU and frag:
        return f"frag:{frag.group(1)}@{frag.group(2)}"
    return "silent"


@pytest.fixture(params=sorted(PINGS), ids=[f"seed{s}" for s in sorted(PINGS)])
def both(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[tuple[str, World, Realized]]:
    seed: str = request.param
    prefix = f"ntmtu{seed[-1]}"
    state = tmp_path / "state"
    try:
        result = bring_up(EXAMPLES / f"seed{seed}.yaml", state=state, keep=False)
        specs = guests_of(result.cloud, {h.name: h for h in result.hosts})
        guests = tuple(Guest(g.name, g.host, g.device, g.mac, str(g.fixed_ip) if g.fixed_ip else None)
                       for g in specs)
        realized = realize(result.hosts, result.cloud.deployment, prefix=prefix, state_dir=state, guests=guests)
        world = world_of(result.cloud, result.hosts)
        world.boot()
        yield seed, world, realized
    finally:
        down(prefix, state)


def test_sizes_on_both_sides_of_each_limit(both: tuple[str, World, Realized]) -> None:
    seed, world, realized = both
    leases = realized.leases()
    assert all(v is not None for v in leases.values()), f"no lease from dnsmasq on the kernel: {leases}"
    wrong: list[str] = []
    for p in PINGS[seed]:
        trace = world.probe(p.source, p.dst, size=p.size)
        sim = simulated_outcome(trace)
        real = kernel_outcome(realized.prefix, p)
        bad = sim != real or real != p.expect
        if p.mtu_drop and trace.verdict.reason is not DropReason.MTU:
            bad = True
        if bad:
            wrong.append(f"--- {p}: expected {p.expect}, kernel {real}, simulator {sim} "
                         f"({trace.verdict.reason})\n{render(trace, 'summary')}")
    assert not wrong, f"{len(wrong)} of {len(PINGS[seed])} pings disagree\n" + "\n".join(wrong)
