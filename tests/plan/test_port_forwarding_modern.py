"""Floating-IP port forwarding on today's routers (issue 18): an HA router's forwardings in every
bound host's qrouter- namespace with the floating IP a keepalived VIP on the master's qg- only, and
a distributed router's in its snat- namespace on the dvr_snat host (Neutron's port_forwarding
extension serves the centralized part only). Each made through the services on examples/ha.yaml
and examples/dvr.yaml, replanned, and traced from the outside."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from neutrino.cli import main
from neutrino.host.iptables import TableName, format_rules
from neutrino.host.state import HostState
from neutrino.plan import plan_host
from neutrino.plan.naming import router_gateway_device, router_namespace, snat_namespace
from neutrino.services.snapshot import CloudSnapshot, Router
from tests.cloud_setup import edited_example, forward, state_env

FIP = "172.24.4.230"


def _forwarded(tmp: pathlib.Path, example: str, instance_port: str) -> tuple[pathlib.Path, CloudSnapshot, str]:
    """``example`` up (without a floating IP on ``instance_port``: a port with one cannot be
    forwarded to), then a free floating IP with tcp 2222 -> ``instance_port``:22, replanned."""
    from neutrino import worldkeep
    from neutrino.deploy import open_cloud, replan

    def without_its_fip(doc: dict[str, Any]) -> None:
        servers = {s["name"] for s in doc["resources"]["servers"]
                   if any(n.get("port") == instance_port for n in s["networks"])}
        doc["resources"]["floating_ips"] = [f for f in doc["resources"].get("floating_ips", [])
                                            if f.get("server") not in servers]

    scenario = edited_example(tmp, example, without_its_fip)
    with state_env(tmp / "state") as state:
        assert main(["up", str(scenario)]) == 0
        c = open_cloud(state)
        vm = next(p for p in c.snapshot().ports if p.name == instance_port)
        _, (pf,) = forward(c, vm.id, FIP, {"internal_port": 22, "external_port": 2222})
        replan(state)
        worldkeep.invalidate(state)
        snap = open_cloud(state).snapshot()
    return state, snap, str(pf["id"])


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, CloudSnapshot, str]:
    return _forwarded(tmp_path_factory.mktemp("pf-ha"), "ha.yaml", "web1-port")


@pytest.fixture(scope="module")
def dvr(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, CloudSnapshot, str]:
    return _forwarded(tmp_path_factory.mktemp("pf-dvr"), "dvr.yaml", "db1-port")


def _router(cloud: CloudSnapshot) -> Router:
    return next(r for r in cloud.routers if r.name == "router1")


def _nat(host: HostState, ns: str) -> list[str]:
    state = host.namespace(ns)
    assert state is not None and state.iptables is not None, (host.name, ns)
    return format_rules(state.iptables.table(TableName.NAT)).splitlines()


def _addrs(host: HostState, ns: str, dev: str) -> list[str]:
    state = host.namespace(ns)
    assert state is not None
    (link,) = [lk for lk in state.links or () if lk.name == dev]
    return [str(a.interface) for a in link.addresses if a.interface.version == 4]


def _pf_rules(pf_id: str, internal: str) -> list[str]:
    chain = f"neutron-l3-agent-pf-{pf_id[:8]}"
    return ["-N neutron-l3-agent-fip-pf", f"-N {chain}",
            "-A neutron-l3-agent-PREROUTING -j neutron-l3-agent-fip-pf",
            f"-A neutron-l3-agent-fip-pf -j {chain}",
            f"-A {chain} -d {FIP}/32 -p tcp -m tcp --dport 2222 -j DNAT --to-destination {internal}:22"]


def _trace_forwarded(state: pathlib.Path, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    capsys.readouterr()
    rc = main(["trace", "outside", FIP, "--proto", "tcp", "--dport", "2222", "--level", "minimal"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.rstrip().endswith("=> the exchange succeeded: the answer came back"), out
    return out


def test_ha_rules_on_every_bound_host_and_the_vip_on_the_master_only(ha: Any) -> None:
    _state, cloud, pf_id = ha
    r = _router(cloud)
    ns = router_namespace(r.id)
    assert r.gateway is not None and r.gateway.port_id
    qg = router_gateway_device(r.gateway.port_id)
    master, backup = plan_host(cloud, "network1"), plan_host(cloud, "network2")
    for host in (master, backup):
        assert [x for x in _nat(host, ns) if "pf" in x] == _pf_rules(pf_id, "10.0.0.5"), host.name
    assert f"{FIP}/32" in _addrs(master, ns, qg)
    assert _addrs(backup, ns, qg) == []
    # keepalived holds it as one more excluded VIP, on both hosts' configurations
    for host in (master, backup):
        conf = next(f.text for f in host.files if f.path.endswith(f"ha_confs/{r.id}/keepalived.conf"))
        assert f"        {FIP}/32 dev {qg} no_track" in conf.splitlines()
    assert not plan_host(cloud, "compute1").namespace(ns)


def test_ha_forwarding_traced_through_the_master_then_the_new_master(
        ha: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    state, cloud, _pf = ha
    ns = router_namespace(_router(cloud).id)
    out = _trace_forwarded(state, capsys, monkeypatch)
    assert f"network1 {ns} [qg-" in out and f"network2 {ns}" not in out
    assert main(["failover", "router1"]) == 0
    out = _trace_forwarded(state, capsys, monkeypatch)
    assert f"network2 {ns} [qg-" in out and f"network1 {ns}" not in out


def test_dvr_forwarding_in_the_snat_namespace_only(dvr: Any) -> None:
    _state, cloud, pf_id = dvr
    r = _router(cloud)
    assert r.gateway is not None and r.gateway.port_id
    qg = router_gateway_device(r.gateway.port_id)
    network = plan_host(cloud, "network")
    snat = snat_namespace(r.id)
    assert [x for x in _nat(network, snat) if "pf" in x] == _pf_rules(pf_id, "10.0.2.12")
    assert _addrs(network, snat, qg) == ["172.24.4.10/24", f"{FIP}/32"]
    # no qrouter- namespace (network's, the computes') holds the forwarding or its address
    for name in ("network", "compute01", "compute02"):
        host = network if name == "network" else plan_host(cloud, name)
        qrouter = host.namespace(router_namespace(r.id))
        if qrouter is not None:
            assert not [x for x in _nat(host, qrouter.name) if "pf" in x], name
            assert not any(str(a.interface).startswith(FIP) for lk in qrouter.links or () for a in lk.addresses)


def test_dvr_forwarding_traced_through_the_snat_namespace(
        dvr: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    state, cloud, _pf = dvr
    out = _trace_forwarded(state, capsys, monkeypatch)
    assert f"network {snat_namespace(_router(cloud).id)} [qg-" in out
    assert "compute02 db1 [eth0]" in out
