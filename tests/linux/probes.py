"""What the Linux-backend differential tests share: the ``neutrino`` command run on a state folder,
the kernel's verdict on one probe (a ping or a TCP connect from an instance's namespace, or from the
external wire for ``outside``), every instance's probes towards the others and its router and DHCP
server, and an example brought up, realized, read back and held to the simulator probe by probe."""

from __future__ import annotations

import ipaddress
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from neutrino.linux.realize import Realized
from neutrino.linux.runner import run

EXE = str(pathlib.Path(sys.executable).with_name("neutrino"))
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

Probe = tuple[str, str, str, int]


def neutrino(state: pathlib.Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The installed command on ``state`` (``NEUTRINO_STATE``), its output captured."""
    env = {**os.environ, "NEUTRINO_STATE": str(state)}
    return subprocess.run([EXE, *argv], capture_output=True, text=True, env=env, timeout=240, check=False)


def linux_up(state: pathlib.Path, example: str) -> str:
    """examples/``example`` brought up on the Linux backend by the installed command (asserted to
    succeed); the prefix of the run's names."""
    from neutrino.linux import session

    up = neutrino(state, "up", str(EXAMPLES / example), "--backend", "linux")
    assert up.returncode == 0, up.stderr
    return session.prefix_of(state)


def answered(prefix: str, p: Probe) -> bool:
    """The kernel's verdict: ``p``'s ping or TCP connect (refused counts: the host answered) from the
    source instance's namespace, or from the external wire for the source ``outside``."""
    from neutrino.linux.records import guest_ns, wire_ns

    src, dst, proto, port = p
    ns = wire_ns(prefix, "ext") if src == "outside" else guest_ns(prefix, src)
    argv = ["ping", "-c", "1", "-w", "3", dst] if proto == "icmp" else ["busybox", "nc", "-w", "1", dst, str(port)]
    res = run(argv, netns=ns, check=False, input="", timeout=15)
    return res.returncode == 0 or "refused" in res.stderr


def instance_probes(realized: Realized, protos: Iterable[tuple[str, int]], extra: Iterable[str] = ()) -> list[Probe]:
    """From every instance: to every other one, to its router and DHCP server, and to ``extra``."""
    leases = realized.leases()
    protos, extra = tuple(protos), tuple(extra)
    out = []
    for a in sorted(leases):
        targets = [str(leases[b].ip) for b in sorted(leases) if b != a and leases[b] is not None]  # type: ignore[union-attr]
        router, server = realized.dhcp_of(a)
        targets += [str(x) for x in (router, server) if x is not None]
        targets += extra
        out += [(a, dst, proto, port) for dst in targets for proto, port in protos]
    return out


def kernel_and_simulator_agree(scenario: pathlib.Path, prefix: str, state: pathlib.Path,
                               probes: Callable[[Realized], list[Probe]],
                               ) -> tuple[dict[str, ipaddress.IPv4Interface | None], dict[Probe, bool]]:
    """``scenario`` brought up and realized with its guests under ``prefix`` (each host read back
    with an empty diff, the simulator's boot giving the kernel's leases); ``probes(realized)`` each
    asked of the kernel and of the simulator, asserted equal. The leases and the kernel's verdicts.
    The caller tears down (``down(prefix, state)``)."""
    from neutrino.deploy import bring_up
    from neutrino.linux.fabric import Guest
    from neutrino.linux.realize import realize
    from neutrino.sim.cloud import guests_of, world_of
    from neutrino.sim.trace import render

    result = bring_up(scenario, state=state, keep=False)
    specs = guests_of(result.cloud, {h.name: h for h in result.hosts})
    guests = tuple(Guest(g.name, g.host, g.device, g.mac, str(g.fixed_ip) if g.fixed_ip else None) for g in specs)
    realized = realize(result.hosts, result.cloud.deployment, prefix=prefix, state_dir=state, guests=guests)
    leases = realized.leases()
    assert all(v is not None for v in leases.values()), leases
    for h in realized.hosts:
        d = realized.diff(h)
        assert d.empty, d.summary()
    world = world_of(result.cloud, result.hosts)
    assert world.boot() == {k: str(v) for k, v in leases.items()}
    todo = probes(realized)
    with ThreadPoolExecutor(max_workers=12) as pool:
        kernel = dict(zip(todo, pool.map(lambda p: answered(prefix, p), todo), strict=True))
    wrong = []
    for p in todo:
        trace = world.probe(p[0], p[1], proto=p[2], dport=p[3] or 22)
        if trace.answered != kernel[p]:
            wrong.append(f"--- {p}: simulator {trace.answered}, kernel {kernel[p]}\n{render(trace, 'summary')}")
    assert not wrong, f"{len(wrong)} of {len(todo)} probes disagree\n" + "\n".join(wrong)
    return leases, kernel
