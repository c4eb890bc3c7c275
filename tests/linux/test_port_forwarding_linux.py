"""Floating-IP port forwarding, simulated and for real (issue 19): seed 000 in modern Neutron with a
free floating IP 172.24.4.230 forwarding tcp 2222 to cirros:22 and tcp 8080:8081 to cirros:80-81,
built on the Linux backend. From the external wire (the outside), the kernel must agree with the
simulator: 2222 and 8080 reach cirros' listeners, 8081 (81 inside) is dropped by the security group,
2223 is refused by the router itself; and the kernel's DNAT rules count the packets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from neutrino.linux import session
from neutrino.linux.records import planned_ns, wire_ns
from neutrino.linux.runner import run
from neutrino.sim.cloud import world_of
from neutrino.sim.trace import DropReason, render
from tests.cloud_setup import SSH_AND_WEB, forward, modern_seed000, state_env

pytestmark = pytest.mark.root
FIP = "172.24.4.230"


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, str]]:
    from neutrino.deploy import bring_up, open_cloud, replan

    tmp = tmp_path_factory.mktemp("pf-linux")
    scenario = modern_seed000(tmp, "pf.yaml", lambda doc: doc["resources"].pop("floating_ips"))
    with state_env(tmp / "state") as state:
        try:
            bring_up(scenario, state=state)
            c = open_cloud(state)
            vm = next(p for p in c.snapshot().ports if p.device_owner.startswith("compute"))
            forward(c, vm.id, FIP, *SSH_AND_WEB)
            _, snap, hosts = replan(state)
            realized = session.up(hosts, snap.deployment, session.guests_for(snap, hosts), state)
            world = world_of(snap, hosts)
            world.boot()
            router = next(r.id for r in snap.routers)
            yield world, realized, router
        finally:
            session.tear_down(state)


def _connects(prefix: str, port: int) -> tuple[bool, str]:
    res = run(["busybox", "nc", "-w", "2", FIP, str(port)], netns=wire_ns(prefix, "ext"), check=False, input="",
              timeout=15)
    return res.returncode == 0, res.stderr


def _dnat_packets(prefix: str, router: str, dport: str) -> int:
    out = run(["iptables", "-t", "nat", "-S", "-v"], netns=planned_ns(prefix, "network", f"qrouter-{router}"),
              check=False).stdout
    for line in out.splitlines():
        if f"--dport {dport} " in line and "-j DNAT" in line:
            m = re.search(r" -c (\d+) \d+", line)
            assert m is not None, line
            return int(m.group(1))
    raise AssertionError(f"no DNAT rule for {dport} in qrouter-{router}:\n{out}")


def test_the_kernel_forwards_where_the_simulator_does(both: tuple[Any, Any, str]) -> None:
    world, realized, router = both
    prefix = realized.prefix
    ssh = world.probe("outside", FIP, proto="tcp", dport=2222)
    assert ssh.succeeded, render(ssh)
    before = _dnat_packets(prefix, router, "2222")
    ok, err = _connects(prefix, 2222)
    assert ok, err
    assert _dnat_packets(prefix, router, "2222") > before  # the kernel used the planned rule
    web = world.probe("outside", FIP, proto="tcp", dport=8080)
    assert web.succeeded, render(web)
    before = _dnat_packets(prefix, router, "8080:8081")
    assert _connects(prefix, 8080)[0]
    assert _dnat_packets(prefix, router, "8080:8081") > before
    saved = run(["iptables-save", "-t", "nat"], netns=planned_ns(prefix, "network", f"qrouter-{router}")).stdout
    assert f"-d {FIP}/32 -p tcp -m tcp --dport 8080:8081 -j DNAT --to-destination 10.1.0.2:80-81/8080" in saved
    assert "-A neutron-l3-agent-PREROUTING -j neutron-l3-agent-fip-pf" in saved
    inner81 = world.probe("outside", FIP, proto="tcp", dport=8081)
    assert inner81.verdict.reason is DropReason.SECURITY_GROUP, render(inner81)
    ok, err = _connects(prefix, 8081)
    assert not ok and "refused" not in err  # dropped (a timeout), not reset
    refused = world.probe("outside", FIP, proto="tcp", dport=2223)
    assert refused.answered and not refused.succeeded, render(refused)
    assert refused.verdict.where.startswith("network/qrouter-"), render(refused)  # the router, not cirros
    ok, err = _connects(prefix, 2223)
    assert not ok and "refused" in err, err  # the router's own reset
