"""Issue #17, fifth round (replan5): ``snapshot.load`` finds each server's ports and each router's
interfaces from one index of the ports by device (it scanned every port for each server and
router: 10^8 steps at 10,000 servers and ports, seconds per snapshot the agents load). The
snapshot of a cloud brought up from seed 001 (a router with interfaces on several networks, eight
servers), with a server given a second port, lists them exactly as the scan did, in the ports'
order, and the hosts that port touches, re-planned on it, are a cold plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from neutrino.cli import main
from neutrino.plan import hosts_affected_by_change, plan_cloud, plan_host, plan_hosts
from neutrino.services import ports as port_service
from neutrino.services.snapshot import INTERFACE_OWNERS, CloudSnapshot
from tests.plan.test_replan_kept import forget_everything

SEED001 = Path(__file__).resolve().parents[2] / "examples" / "seed001.yaml"


def _scanned(snap: CloudSnapshot) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Each server's ports and each router's interfaces as ``load`` found them before: a scan."""
    servers = {s.id: tuple(p.id for p in snap.ports if p.device_id == s.id) for s in snap.servers}
    routers = {r.id: tuple(p.id for p in snap.ports if p.device_id == r.id and p.device_owner in INTERFACE_OWNERS)
               for r in snap.routers}
    return servers, routers


def test_servers_ports_and_routers_interfaces_are_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    assert main(["up", str(SEED001)]) == 0
    from neutrino.deploy import open_cloud

    services = open_cloud()
    snap = services.snapshot()
    plan_cloud(snap)  # what the agents hold
    server = snap.servers[0]
    (first,) = [p for p in snap.ports if p.device_id == server.id]
    with services.write(services.admin_context()) as tx:  # a second port on the server, made last
        port_service.create_port(tx, {"network_id": first.network_id, "device_id": server.id,
                                      "device_owner": first.device_owner,
                                      "binding:host_id": first.binding_host})
    before, snap = snap, services.snapshot()
    servers, routers = _scanned(snap)
    assert {s.id: s.port_ids for s in snap.servers} == servers
    assert {r.id: r.interface_port_ids for r in snap.routers} == routers
    assert len(servers[server.id]) == 2 and servers[server.id][0] == first.id  # in the ports' order
    assert max(map(len, routers.values())) >= 2
    assert sum(map(len, servers.values())) == sum(p.device_owner.startswith("compute:") for p in snap.ports)
    affected = hosts_affected_by_change(before, snap)
    assert affected
    replanned = plan_hosts(snap, affected)
    forget_everything()
    for name in affected:
        assert replanned[name] == plan_host(snap, name)
