"""Extra DHCP options on the Linux backend (issue 19): a port's ``router`` option, set through the
API, is written by the planner into the DHCP agent's opts file (``tag:port-<id>,option:router,…``
after the subnet's line) and hosts file (``set:port-<id>``); the real dnsmasq, reading those files
in the host's namespace, answers that instance's ``busybox udhcpc`` with the port's router and its
neighbour with the subnet's, as the simulator's dnsmasq does."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from neutrino.linux.fabric import Guest
from neutrino.linux.realize import down, realize
from tests.api.api_helpers import app_headers
from tests.cloud_setup import ADMIN_ONLY

pytestmark = pytest.mark.root

SCENARIO = """\
name: edo-linux
seed: 192
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:1000"],
             firewall_driver: iptables_hybrid, generation: modern}
hosts:
  - {name: allinone, roles: [controller, network, compute], management_ip: 10.40.0.11, tunnel_ip: 10.40.0.11}
""" + ADMIN_ONLY + """\
resources:
  networks:
    - name: private
      subnets: [{name: private-subnet, cidr: 10.0.0.0/24, gateway: 10.0.0.1}]
  servers:
    - {name: vm1, image: cirros, flavor: "1", networks: [private], host: allinone}
    - {name: vm2, image: cirros, flavor: "1", networks: [private], host: allinone}
"""
PREFIX = "ntedo"


def test_real_dnsmasq_answers_a_ports_router_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neutrino.api.serve import make_app
    from neutrino.deploy import bring_up, cloud_record, replan
    from neutrino.sim.cloud import guests_of, world_of

    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    scenario = tmp_path / "edo.yaml"
    scenario.write_text(SCENARIO)
    bring_up(scenario, state=state)
    application, _ = make_app(cloud_record(state)["db"], str(scenario), "keystone", "edo-linux")
    with TestClient(application) as c:
        h = app_headers(c)
        servers = {s.name: s for s in replan(state)[1].servers}
        port = servers["vm1"].port_ids[0]
        r = c.put(f"/v2.0/ports/{port}", headers=h, json={"port": {"extra_dhcp_opts": [
            {"opt_name": "router", "opt_value": "10.0.0.254"}]}})
        assert r.status_code == 200, r.text
    _, snap, hosts = replan(state)
    files = {f.path: f.text for f in hosts[0].files or ()}
    net = snap.port(port).network_id
    assert f"tag:port-{port},option:router,10.0.0.254\n" in files[f"/var/lib/neutron/dhcp/{net}/opts"]
    specs = guests_of(snap, {hh.name: hh for hh in hosts})
    guests = tuple(Guest(g.name, g.host, g.device, g.mac, str(g.fixed_ip) if g.fixed_ip else None) for g in specs)
    try:
        realized = realize(hosts, snap.deployment, prefix=PREFIX, state_dir=state, guests=guests)
        leases = realized.leases()
        assert all(v is not None for v in leases.values()), leases
        assert realized.dhcp_of("vm1")[0] == ipaddress.IPv4Address("10.0.0.254")
        assert realized.dhcp_of("vm2")[0] == ipaddress.IPv4Address("10.0.0.1")
        world = world_of(snap, hosts)
        world.boot()
        sim = {name: g.lease.router if g.lease else None for name, g in world.guests.items()}
        assert sim == {"vm1": ipaddress.IPv4Address("10.0.0.254"), "vm2": ipaddress.IPv4Address("10.0.0.1")}
    finally:
        down(PREFIX, state)
