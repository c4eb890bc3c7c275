"""examples/ha.yaml (an HA router, keepalived VRRP) held to the kernel's word before and after a
failover (issue 18, root): brought up on the Linux backend with ``neutrino up --backend linux``, a
probe set (web1 to its router's addresses, its DHCP server and the stand-in internet; the outside to
the floating IP and the router's gateway) gets the same verdict from the kernel and from the
simulator's world; then ``neutrino failover router1`` stops the master's keepalived, the backup
takes the VIPs (waited for), and the same probes agree again, the simulator's path now through
network2."""

from __future__ import annotations

import pathlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from neutrino.linux.runner import run, wait_for
from neutrino.sim.trace import render
from tests.linux.probes import Probe, answered, linux_up, neutrino

pytestmark = pytest.mark.root
FIP = "172.24.4.100"
GATEWAY = "172.24.4.10"
INTERNET = "203.0.113.1"  # the fabric's stand-in internet behind the external gateway


def _probes(state: pathlib.Path) -> list[Probe]:
    from neutrino.deploy import open_cloud

    snap = open_cloud(state).snapshot()
    dhcp = [str(f.ip_address) for p in snap.ports if p.device_owner == "network:dhcp" for f in p.fixed_ips
            if f.ip_address.version == 4]
    router = next(r for r in snap.routers if r.name == "router1")
    inside = [str(f.ip_address) for pid in router.interface_port_ids for f in snap.port(pid).fixed_ips]
    out = [("web1", dst, proto, port) for dst in [*inside, *dhcp, GATEWAY, INTERNET]
           for proto, port in (("icmp", 0), ("tcp", 22))]
    out += [("outside", FIP, "icmp", 0), ("outside", FIP, "tcp", 22), ("outside", FIP, "tcp", 80),
            ("outside", GATEWAY, "icmp", 0)]
    return out


def _converged(prefix: str, host: str, todo: list[Probe]) -> None:
    """Wait until ``host``'s keepalived holds the VIPs and the paths through it carry traffic: the
    floating IP answers the outside and the router's inside address answers web1 (VRRP's takeover,
    its gratuitous ARPs and the tunnels' learned flows take a moment; a loaded machine, longer)."""
    ns = next(n for n in run(["ip", "netns"], check=False).stdout.split()
              if n.startswith(f"{prefix}-{host}-qrouter-"))
    wait_for(lambda: f"{FIP}/32" in run(["ip", "-4", "-o", "addr"], netns=ns, check=False).stdout,
             timeout=30, what=f"{host} to hold the floating IP")
    inside = next(p for p in todo if p[0] == "web1" and p[2] == "icmp")
    for probe in (("outside", FIP, "icmp", 0), inside):
        wait_for(lambda probe=probe: answered(prefix, probe), timeout=30, interval=0.2,
                 what=f"{probe[1]} to answer {probe[0]} through {host}")


def _link_local(prefix: str, host: str) -> set[str]:
    """The IPv6 addresses (``lo``'s aside) in ``host``'s qrouter namespace, with their flags."""
    ns = next(n for n in run(["ip", "netns"], check=False).stdout.split()
              if n.startswith(f"{prefix}-{host}-qrouter-"))
    out = run(["ip", "-6", "-o", "addr"], netns=ns, check=False).stdout
    return {" ".join(ln.split()[1:4] + (["nodad"] if "nodad" in ln else [])) for ln in out.splitlines()
            if ln.split()[1] != "lo"}


def _one_speaker(prefix: str, master: str, backup: str) -> None:
    """Only the master has IPv6 link-local addresses, keepalived's (``nodad``): the namespace's
    ``addr_gen_mode=1`` keeps the kernel from making them, so the backup's devices, which share the
    master's MACs, send no DAD or MLD that would teach the external switch the wrong port."""
    assert _link_local(prefix, backup) == set()
    have = _link_local(prefix, master)
    assert have and all(a.endswith("nodad") and "inet6 fe80::f816:3eff:" in a for a in have), have


def _agree(state: pathlib.Path, prefix: str, todo: list[Probe]) -> dict[Probe, str]:
    """Kernel and simulator verdicts compared (asserted equal); each simulated path, by probe."""
    from neutrino import worldkeep

    with ThreadPoolExecutor(max_workers=8) as pool:
        kernel = dict(zip(todo, pool.map(lambda p: answered(prefix, p), todo), strict=True))
    world = worldkeep.booted_world(state)
    wrong, paths = [], {}
    for p in todo:
        trace = world.probe(p[0], p[1], proto=p[2], dport=p[3] or 22)
        paths[p] = render(trace, "minimal")
        if trace.answered != kernel[p]:
            wrong.append(f"--- {p}: simulator {trace.answered}, kernel {kernel[p]}\n{render(trace, 'summary')}")
    assert not wrong, f"{len(wrong)} of {len(todo)} probes disagree\n" + "\n".join(wrong)
    assert kernel[("outside", FIP, "icmp", 0)] and kernel[("web1", INTERNET, "icmp", 0)]
    return paths


def test_ha_simulator_and_kernel_agree_before_and_after_failover(tmp_path: pathlib.Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))  # the simulator's world is the state folder's
    prefix = ""
    try:
        prefix = linux_up(state, "ha.yaml")
        todo = _probes(state)
        _converged(prefix, "network1", todo)
        _one_speaker(prefix, "network1", "network2")
        before = _agree(state, prefix, todo)
        assert "network1 qrouter-" in before[("outside", FIP, "icmp", 0)]

        fo = neutrino(state, "failover", "router1")
        assert fo.returncode == 0, fo.stderr
        assert "router router1: master network2" in fo.stdout
        _converged(prefix, "network2", todo)
        _one_speaker(prefix, "network2", "network1")
        after = _agree(state, prefix, todo)
        path = after[("outside", FIP, "icmp", 0)]
        assert "network2 qrouter-" in path and "network1 qrouter-" not in path, path
    finally:
        down = neutrino(state, "down")
    assert down.returncode == 0, down.stderr
    if prefix:
        assert f"{prefix}-" not in run(["ip", "netns"], check=False).stdout
