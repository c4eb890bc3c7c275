"""``neutrino matrix`` held to the kernel's word (issue 13): a seed is planned once, built for real on
the Linux backend (as tests/linux/test_differential.py brings seed 000 up) and simulated; the
matrix is computed on the simulated world, and a sample of its cells (instances, the outside, the
hosts' root namespaces and the routers' addresses; reachable ones and blocked ones) is probed on the
kernel with ``ping``/``busybox nc`` from the cell's namespace. A cell is reachable on the kernel
when ping gets its reply or nc connects, as the matrix counts it (an exchange that worked); to the
outside, a reset counts too: the backend's stand-in internet (203.0.113.1) listens on no port,
where the simulator's answers every one, so a reset from it says the request got out.

Left out of the sample: a host's ping to an address it holds itself (seed 003's compute-1 holds
the router's 10.0.0.1 and 10.1.0.1 on its bridges), which the kernel delivers locally and the
simulator's host probe does not yet (it says "no route"): a simulator limitation, not the matrix's.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from neutrino.answers import matrix as mx
from neutrino.deploy import bring_up
from neutrino.linux import session
from neutrino.linux.realize import Realized
from neutrino.linux.records import guest_ns, host_ns
from neutrino.linux.runner import run
from neutrino.sim.cloud import world_of
from neutrino.sim.world import HOST_PREFIX, OUTSIDE
from tests.linux.test_differential import real

pytestmark = pytest.mark.root
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
PER_KIND = 4  # cells sampled per (source kind, destination kind, protocol, reachable or not)


@pytest.fixture(scope="module")
def seed003(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[mx.Cell], dict[str, mx.Endpoint],
                                                                          Realized]]:
    """Seed 003 (two tenants, three hosts, tenant isolation by security groups) on both sides."""
    state = tmp_path_factory.mktemp("matrix003")
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    try:
        result = bring_up(EXAMPLES / "seed003.yaml", state=state, keep=False)
        realized = session.up(result.hosts, result.cloud.deployment,
                              session.guests_for(result.cloud, result.hosts), state)
        world = world_of(result.cloud, result.hosts)
        world.boot()
        ends = mx.endpoints(world, result.cloud)
        cells = mx.matrix(world, result.cloud, ends=ends)
        yield cells, {e.name: e for e in [*ends[0], *ends[1]]}, realized
    finally:
        session.tear_down(state)
        mp.undo()


def sample(cells: list[mx.Cell], ends: dict[str, mx.Endpoint]) -> list[mx.Cell]:
    """Up to PER_KIND cells of each kind, spread over the sources (deterministic)."""
    groups: dict[tuple[str, str, str, bool], list[mx.Cell]] = {}
    for c in cells:
        s, d = ends[c.source], ends[c.destination]
        if s.kind == "outside" and d.kind == "instance" and not d.floating:
            continue  # "no floating IP": no address to probe on the kernel
        if s.kind == "host" and d.kind == "router" and d.host == s.host:
            continue  # the host's own address (see above)
        groups.setdefault((s.kind, d.kind, c.proto, c.ok), []).append(c)
    out: list[mx.Cell] = []
    for group in groups.values():
        step = max(1, len(group) // PER_KIND)
        out += group[::step][:PER_KIND]
    return out


def kernel(realized: Realized, ends: dict[str, mx.Endpoint], c: mx.Cell) -> bool:
    s, d = ends[c.source], ends[c.destination]
    if d.kind == "instance":
        lease = realized.leases()[d.name]
        assert lease is not None
        dst = d.floating if s.kind == "outside" else str(lease.ip)
    else:
        dst = d.to
    proto, _, port = c.proto.partition("/")
    if s.kind != "host" and d.kind != "outside":
        return real(realized, c.source, dst, proto, int(port or 0))
    ns = host_ns(realized.prefix, c.source[len(HOST_PREFIX):]) if s.kind == "host" else \
        guest_ns(realized.prefix, c.source)
    argv = ["ping", "-c", "1", "-w", "3", dst] if proto == "icmp" else ["busybox", "nc", "-w", "1", dst, port]
    res = run(argv, netns=ns, check=False, input="", timeout=10)
    return res.returncode == 0 or (d.kind == "outside" and "refused" in res.stderr)


def test_matrix_cells_agree_with_the_kernel(seed003: tuple[list[mx.Cell], dict[str, mx.Endpoint],
                                                           Realized]) -> None:
    cells, ends, realized = seed003
    todo = sample(cells, ends)
    kinds = {(ends[c.source].kind, ends[c.destination].kind) for c in todo}
    assert {("instance", "instance"), ("instance", "router"), ("host", "instance")} <= kinds
    assert sum(c.ok for c in todo) >= 10 and sum(not c.ok for c in todo) >= 10, [str(c) for c in todo]
    with ThreadPoolExecutor(max_workers=16) as pool:
        verdicts = list(pool.map(lambda c: kernel(realized, ends, c), todo))
    wrong = [f"{c.source} -> {c.destination} {c.proto}: matrix {'reachable' if c.ok else 'blocked'} "
             f"({c.why}), kernel {'reachable' if k else 'blocked'}"
             for c, k in zip(todo, verdicts, strict=True) if c.ok != k]
    assert not wrong, f"{len(wrong)} of {len(todo)} cells disagree:\n" + "\n".join(wrong)


def test_outside_is_no_source_without_an_external_network(
        seed003: tuple[list[mx.Cell], dict[str, mx.Endpoint], Realized]) -> None:
    cells, ends, _ = seed003  # nova-network's outside is behind the hosts' default route: a destination only
    assert ends[OUTSIDE].kind == "outside" and not any(c.source == OUTSIDE for c in cells)
    assert any(c.destination == OUTSIDE and c.ok for c in cells)
