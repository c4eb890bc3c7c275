"""A spoofed source, simulated and for real: seed 000 built on the Linux backend, cirros pings its
router from its own address and from one it does not own (a second address on its eth0, the
kernel's ``ping -I``). The simulator's ``probe(..., src_ip=...)`` and the kernel must agree, and the
kernel must have dropped the spoofed packet with the very rule the simulator names (its counter)."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from neutrino.deploy import bring_up
from neutrino.linux import session
from neutrino.linux.fabric import Guest
from neutrino.linux.records import guest_ns, host_ns
from neutrino.linux.runner import run
from neutrino.sim.cloud import guests_of, world_of
from neutrino.sim.trace import DropReason, render

pytestmark = pytest.mark.root
SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed000.yaml"
SPOOFED = "10.1.0.99"


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    state = tmp_path_factory.mktemp("spoof000")
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    try:
        result = bring_up(SCENARIO)
        specs = guests_of(result.cloud, {h.name: h for h in result.hosts})
        guests = tuple(Guest(g.name, g.host, g.device, g.mac, str(g.fixed_ip)) for g in specs)
        realized = session.up(result.hosts, result.cloud.deployment, guests, state)
        world = world_of(result.cloud, result.hosts)
        world.boot()
        yield world, realized
    finally:
        session.tear_down(state)
        mp.undo()


def _drops(prefix: str, rule: str) -> int:
    """The packet counter of ``rule`` (an ``iptables -S`` line) in compute's namespace."""
    out = run(["iptables", "-S", "-v"], netns=host_ns(prefix, "compute")).stdout
    for line in out.splitlines():
        m = re.search(r" -c (\d+) \d+", line)  # -S -v puts the counters before the target
        if m and line[:m.start()] + line[m.end():] == rule:
            return int(m.group(1))
    raise AssertionError(f"no rule {rule!r} on compute:\n{out}")


def test_a_spoofed_source_is_dropped_by_the_kernel_where_the_simulator_says(both: tuple[Any, Any]) -> None:
    world, realized = both
    ns = guest_ns(realized.prefix, "cirros")
    plain = world.probe("cirros", "10.1.0.1")
    spoofed = world.probe("cirros", "10.1.0.1", src_ip=SPOOFED)
    assert plain.answered, render(plain)
    assert not spoofed.answered and spoofed.verdict.reason is DropReason.ANTI_SPOOFING, render(spoofed)
    rule = spoofed.verdict.detail.removesuffix(": dropped in FORWARD")
    assert rule.startswith("-A quantum-openvswi-o") and rule.endswith("! -s 10.1.0.2/32 -j DROP"), rule
    assert run(["ping", "-c", "1", "-W", "2", "10.1.0.1"], netns=ns, check=False).returncode == 0
    before = _drops(realized.prefix, rule)
    run(["ip", "addr", "add", f"{SPOOFED}/32", "dev", "eth0"], netns=ns)
    try:
        kernel = run(["ping", "-c", "1", "-W", "2", "-I", SPOOFED, "10.1.0.1"], netns=ns, check=False)
    finally:
        run(["ip", "addr", "del", f"{SPOOFED}/32", "dev", "eth0"], netns=ns, check=False)
    assert kernel.returncode != 0, kernel.stdout
    assert _drops(realized.prefix, rule) > before  # the kernel's drop is the simulator's rule
