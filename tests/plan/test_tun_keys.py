"""br-tun's per-network pieces on a re-plan (issue #17): a network whose hosts and ports did not
change, on a host whose tunnel ports did not change, is found again by one comparison of small
numbers (``ovs_tun._network_token`` and the host's tunnel-ports number), and whatever changes one
of them (a port on the network, a remote port's MAC, a remote host's tunnel IP, the tunnel ports
renumbered) makes the network's flows again, exactly as a cold plan does."""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
from collections.abc import Callable, Iterator

import pytest

from neutrino.host.openflow import format_flow
from neutrino.host.state import HostState
from neutrino.plan import ovs_tun, plan_cloud, plan_host
from neutrino.services.snapshot import CloudSnapshot, Port
from tests.plan.benchmod import plan_bench
from tests.plan.test_replan_kept import forget_everything, fresh


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[tuple[str, str]]]:
    """(host, network) -> how many times its br-tun network flows were made (not found kept)."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    real = ovs_tun._network_flows

    def spy(ctx, v, *args):  # type: ignore[no-untyped-def]
        counts[(ctx.host.name, v.network_id)] += 1
        return real(ctx, v, *args)
    monkeypatch.setattr(ovs_tun, "_network_flows", spy)
    yield counts


def _cloud() -> CloudSnapshot:
    forget_everything()
    cloud: CloudSnapshot = plan_bench().build(12, 66, 6)
    plan_cloud(cloud)
    return cloud


def _compute_port(cloud: CloudSnapshot, n: int = 4) -> Port:
    return [p for p in cloud.ports if p.device_owner == "compute:nova"][n]


def _cold(cloud: CloudSnapshot, host: str) -> object:
    forget_everything()
    return plan_host(fresh(cloud), host)


def _flows(state: HostState) -> str:
    return "\n".join(format_flow(f, stats=False) for b in state.ovs.bridges if b.flows is not None
                     for f in b.flows.flows)


def _check_against_cold(after: CloudSnapshot, hosts: list[str]) -> None:
    warm = {h: plan_host(after, h) for h in hosts}
    for h in hosts:
        cold = _cold(after, h)
        assert warm[h] == cold and repr(warm[h]) == repr(cold), h


def _sharing(cloud: CloudSnapshot, network_id: str, but: str) -> list[str]:
    return sorted({p.binding_host for p in cloud.ports_on_network(network_id)
                   if p.device_owner == "compute:nova" and p.binding_host != but})


def _replace_port(cloud: CloudSnapshot, port_id: str, **changes: object) -> CloudSnapshot:
    return fresh(cloud, ports=tuple(dataclasses.replace(p, **changes) if p.id == port_id else p  # type: ignore[arg-type]
                                    for p in cloud.ports))


def test_an_unchanged_network_is_found_again(made: collections.Counter[tuple[str, str]]) -> None:
    cloud = _cloud()
    template = _compute_port(cloud)
    new = dataclasses.replace(template, id="0000aaaa-0000-4000-8000-000000000001", mac_address="fa:16:3e:7f:00:01",
                              device_id="vm-new")
    after = fresh(cloud, ports=(*cloud.ports, new))
    host = _sharing(cloud, template.network_id, template.binding_host)[0]
    networks = {p.network_id for p in cloud.ports if p.binding_host == host}
    assert len(networks) > 1
    made.clear()
    planned = plan_host(after, host)
    # the new port's network alone is made again: the host's tunnels are the same (the port's
    # host already shared the network), every other network is one comparison
    assert dict(made) == {(host, template.network_id): 1}
    assert "dl_dst=fa:16:3e:7f:00:01" in _flows(planned)
    made.clear()
    assert plan_host(fresh(after), host) == planned and not made  # a fresh snapshot of the same content
    _check_against_cold(after, [host])


def test_a_remote_mac_change_is_not_found_stale(made: collections.Counter[tuple[str, str]]) -> None:
    cloud = _cloud()
    victim = _compute_port(cloud, 7)
    after = _replace_port(cloud, victim.id, mac_address="fa:16:3e:6e:00:07")
    hosts = _sharing(cloud, victim.network_id, victim.binding_host)
    made.clear()
    planned = {h: plan_host(after, h) for h in hosts}
    assert {key for key, n in made.items() if key[1] == victim.network_id} == {(h, victim.network_id) for h in hosts}
    for h in hosts:
        flows = _flows(planned[h])
        assert "dl_dst=fa:16:3e:6e:00:07" in flows and f"dl_dst={victim.mac_address}" not in flows
    _check_against_cold(after, hosts)


def test_a_remote_tunnel_ip_change_is_not_found_stale(made: collections.Counter[tuple[str, str]]) -> None:
    cloud = _cloud()
    moved = cloud.deployment.hosts[3]
    new_ip = ipaddress.ip_address("10.202.0.9")  # after every other host's: its tunnels are renumbered
    dep = dataclasses.replace(cloud.deployment, hosts=tuple(
        dataclasses.replace(h, tunnel_ip=new_ip, management_ip=new_ip) if h.name == moved.name else h
        for h in cloud.deployment.hosts))
    after = fresh(cloud, deployment=dep)
    mine = {p.network_id for p in cloud.ports if p.binding_host == moved.name}
    others = [h.name for h in cloud.deployment.hosts if h.name != moved.name][:6]
    made.clear()
    for h in others:
        text = repr(plan_host(after, h))
        shares = any(p.binding_host == h and p.network_id in mine for p in cloud.ports)
        assert ("vxlan-0aca0009" in text) == shares and (f"vxlan-{int(moved.tunnel_ip or 0):08x}" in text) is False
    assert made  # the hosts sharing a network with it made those networks again
    _check_against_cold(after, others)


def test_tokens_name_one_content_each() -> None:
    token: Callable[[tuple[str, ...], tuple[object, ...]], int] = ovs_tun._token
    a = token(("test", "a"), (1, "x"))
    assert token(("test", "a"), (1, "x")) == a
    b = token(("test", "a"), (2, "x"))
    assert b != a
    assert token(("test", "a"), (1, "x")) not in (a, b)  # seen again after another: a new number
    assert token(("test", "b"), (2, "x")) != b  # another slot: its own number
