"""The simulator held to the kernel's word: seed 000's cloud is planned once, then built for real
on the Linux backend and simulated; every probe (instance to its router, DHCP server, the outside
gateway and the internet; the outside to the floating IP over icmp, tcp/22, tcp/80 and a closed
port) must get the same verdict from both. A disagreement prints the simulator's trace beside the
real outcome. The metadata request goes through the router's REDIRECT to 9697 on both (on the
kernel, to the backend's stand-in metadata service, neutrino.linux.metadata)."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.deploy import bring_up
from neutrino.linux import session
from neutrino.linux.fabric import Guest
from neutrino.linux.records import guest_ns, wire_ns
from neutrino.linux.runner import run
from neutrino.sim.cloud import guests_of, world_of
from neutrino.sim.trace import render

pytestmark = pytest.mark.root
SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed000.yaml"

PROBES = [  # (source, destination, proto, port)
    ("cirros", "10.1.0.1", "icmp", 0),
    ("cirros", "10.1.0.3", "icmp", 0),
    ("cirros", "172.24.4.225", "icmp", 0),
    ("cirros", "203.0.113.1", "icmp", 0),
    ("cirros", "169.254.169.254", "http", 80),
    ("outside", "172.24.4.228", "icmp", 0),
    ("outside", "172.24.4.228", "tcp", 22),
    ("outside", "172.24.4.228", "tcp", 80),
    ("outside", "172.24.4.228", "tcp", 23),
]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    state = tmp_path_factory.mktemp("diff000")
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    result = bring_up(SCENARIO)
    specs = guests_of(result.cloud, {h.name: h for h in result.hosts})
    guests = tuple(Guest(g.name, g.host, g.device, g.mac, str(g.fixed_ip)) for g in specs)
    try:
        realized = session.up(result.hosts, result.cloud.deployment, guests, state)
        world = world_of(result.cloud, result.hosts)
        world.boot()
        yield world, realized
    finally:
        session.tear_down(state)
        mp.undo()


def real(realized, source: str, dst: str, proto: str, port: int) -> bool:
    prefix = realized.prefix
    ns = wire_ns(prefix, "ext") if source == "outside" else guest_ns(prefix, source)
    if proto == "icmp":
        argv = ["ping", "-c", "1", "-w", "3", dst]
    elif proto == "http":  # busybox wget segfaults here; a request by hand does the same job
        request = f"GET /latest/meta-data/instance-id HTTP/1.0\r\nHost: {dst}\r\n\r\n"
        res = run(["busybox", "nc", "-w", "2", dst, "80"], netns=ns, check=False, input=request, timeout=10)
        return res.stdout.startswith("HTTP/1.0 200") and "i-0000" in res.stdout
    else:
        argv = ["busybox", "nc", "-w", "1", dst, str(port)]
    return run(argv, netns=ns, check=False, input="", timeout=10).returncode == 0


@pytest.mark.parametrize("source,dst,proto,port", PROBES, ids=[f"{s}->{d} {p}{'/' + str(n) if n else ''}"
                                                               for s, d, p, n in PROBES])
def test_simulator_and_kernel_agree(both, source, dst, proto, port):
    world, realized = both
    trace = world.probe(source, dst, proto=proto, dport=port or 22)
    simulated = trace.answered
    kernel = real(realized, source, dst, proto, port)
    assert simulated == kernel, (f"simulator says {'reached' if simulated else 'blocked'}, the kernel says "
                                 f"{'reached' if kernel else 'blocked'}\n" + render(trace, "summary"))


def test_both_give_the_same_lease(both):
    world, realized = both
    assert str(realized.leases()["cirros"]) == str(world.guests["cirros"].address) == "10.1.0.2/24"
