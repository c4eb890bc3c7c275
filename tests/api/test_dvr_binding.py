"""A distributed router's interface port as ML2 shows it: ``binding:vif_type`` ``distributed``, no
``binding:host_id`` and no details (``_update_port_dict_binding``: the port is bound per host, in
ML2's distributed bindings), and ACTIVE once a host's agent has wired its ``qr-`` device (the status
``generate_distributed_port_status`` makes of those bindings), DOWN when none has or the port is
administratively down. A router made legacy again binds its interfaces to its host as any port."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator

import httpx
import pytest

from neutrino.agent import wired_status
from neutrino.cli import main
from neutrino.deploy import load_cloud, open_cloud
from neutrino.services.dvr import DISTRIBUTED
from tests.api.api_helpers import ROOT, Server, example_server, ok

OVS_DETAILS = {"bound_drivers": {"0": "openvswitch"}, "bridge_name": "br-int", "connectivity": "l2",
               "datapath_type": "system", "ovs_hybrid_plug": True, "port_filter": True}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with example_server(tmp_path_factory.mktemp("dvrbind"), "dvr.yaml") as server:
        yield server


def test_the_api_shows_a_distributed_interface_and_a_legacy_one_after(admin: httpx.Client) -> None:
    net = ok(admin.post("/networks", json={"network": {"name": "dvr-bind"}}), 201)["network"]
    sub = ok(admin.post("/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.0.9.0/24",
                                                     "ip_version": 4}}), 201)["subnet"]
    r = ok(admin.post("/routers", json={"router": {"name": "rb"}}), 201)["router"]  # router_distributed: true
    assert r["distributed"] is True
    ok(admin.put(f"/routers/{r['id']}/add_router_interface", json={"subnet_id": sub["id"]}))
    (iface,) = ok(admin.get("/ports", params={"device_id": r["id"]}))["ports"]
    assert iface["device_owner"] == "network:router_interface_distributed"
    assert (iface["binding:host_id"], iface["binding:vif_type"], iface["binding:vif_details"]) == ("", DISTRIBUTED, {})
    # made legacy (down first, as Neutron asks): the interface is bound to the router's host as any port
    ok(admin.put(f"/routers/{r['id']}", json={"router": {"admin_state_up": False, "distributed": False}}))
    (iface,) = ok(admin.get("/ports", params={"device_id": r["id"]}))["ports"]
    assert iface["device_owner"] == "network:router_interface"
    assert iface["binding:host_id"] and iface["binding:vif_type"] == "ovs"
    assert iface["binding:vif_details"] == OVS_DETAILS
    ok(admin.put(f"/routers/{r['id']}/remove_router_interface", json={"subnet_id": sub["id"]}))
    ok(admin.delete(f"/routers/{r['id']}"), 204)


def test_status_follows_the_hosts_that_wire_it(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(ROOT / "examples" / "dvr.yaml")]) == 0
    cloud, hosts = load_cloud(state)  # as saved and loaded back
    ifaces = [p for p in cloud.ports if p.device_owner == "network:router_interface_distributed"]
    assert len(ifaces) == 2
    for p in ifaces:  # the agents' report, as `up` wrote it
        assert (p.binding_host, p.vif_type, p.vif_details, p.status) == ("", DISTRIBUTED, (), "ACTIVE")
    wired = wired_status(cloud, hosts)
    assert all(wired[p.id] == "ACTIVE" for p in ifaces)
    # no host wires them: DOWN (the compute hosts' and the SNAT host's qr- devices gone)
    assert all(wired_status(cloud, ())[p.id] == "DOWN" for p in ifaces)
    qr = f"qr-{ifaces[0].id[:11]}"
    unwired = tuple(dataclasses.replace(h, namespaces=tuple(
        dataclasses.replace(ns, links=tuple(lk for lk in ns.links or () if lk.name != qr))
        for ns in h.namespaces)) for h in hosts)
    after = wired_status(cloud, unwired)
    assert after[ifaces[0].id] == "DOWN" and after[ifaces[1].id] == "ACTIVE"
    # administratively down: DOWN, wherever it is wired
    down = dataclasses.replace(cloud, ports=tuple(dataclasses.replace(p, admin_state_up=False)
                                                  if p.id == ifaces[1].id else p for p in cloud.ports), _index={})
    assert wired_status(down, hosts)[ifaces[1].id] == "DOWN"
    services = open_cloud(state)
    assert {p.id: p.status for p in services.snapshot().ports}[ifaces[0].id] == "ACTIVE"
