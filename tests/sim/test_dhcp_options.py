"""Extra DHCP options in the simulator (issue 19): dnsmasq answers each client with the options
whose tags it has (its range's ``set:subnet-…``, its hosts-file ``set:port-…``), a port's line
over its subnet's, a tagged line over an untagged one; a bad opts-file line is skipped as dnsmasq
does; the cirros guest applies router, classless static routes (121), MTU (26) and DNS servers.
End to end: options set on an instance's port through the API show in the agent's opts file
(``neutrino exec``) and in traces (its route, its MTU)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from neutrino.host.dnsmasq import DhcpHost, parse_ps_line
from neutrino.host.state import FileState
from neutrino.sim.guest import Guest, Lease
from neutrino.sim.packets import Mac, from_bytes, to_bytes
from neutrino.sim.services import DhcpServer
from tests.api.api_helpers import app_headers
from tests.cloud_setup import ADMIN_ONLY, RESOURCES

SUBNET = "subnet-c0ffee00-1111-4222-8333-444455556666"
PORT = "port-0000aaaa-1111-4222-8333-444455556666"
VM_A, VM_B = Mac.parse("fa:16:3e:00:00:0a"), Mac.parse("fa:16:3e:00:00:0b")


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def server(opts: str, *, extra_argv: str = "") -> DhcpServer:
    proc = parse_ps_line(
        "nobody 1 1 0 00:00 ? 00:00:00 dnsmasq --no-hosts --no-resolv --interface=tap1 "
        "--dhcp-hostsfile=/d/host --dhcp-optsfile=/d/opts "
        f"--dhcp-range=set:{SUBNET},10.0.0.0,static,255.255.255.0,86400s {extra_argv}--domain=openstacklocal")
    hosts = FileState("/d/host", f"{VM_A},host-10-0-0-10.openstacklocal.,10.0.0.10,set:{PORT}\n"
                                 f"{VM_B},host-10-0-0-11.openstacklocal.,10.0.0.11\n")
    return DhcpServer.from_state(proc, (hosts, FileState("/d/opts", opts)), server_ip=ip("10.0.0.2"),
                                 server_mac=Mac.parse("fa:16:3e:00:00:02"))


def exchange(guest: Guest, srv: DhcpServer) -> Lease | None:
    run = guest.boot()
    frame = next(run)
    try:
        while True:
            reply = srv.handle(from_bytes(to_bytes(frame)))
            frame = run.send(None if reply.frame is None else from_bytes(to_bytes(reply.frame)))
    except StopIteration as stop:
        lease: Lease | None = stop.value
        return lease


SUBNET_LINES = (f"tag:{SUBNET},option:dns-server,192.0.2.53\n"
                f"tag:{SUBNET},option:router,10.0.0.1\n")


def test_a_ports_router_beats_its_subnets() -> None:
    srv = server(SUBNET_LINES + f"tag:{PORT},option:router,10.0.0.254\n")
    a = exchange(Guest("a", VM_A), srv)
    b = exchange(Guest("b", VM_B), srv)
    assert a is not None and b is not None
    assert (a.router, b.router) == (ip("10.0.0.254"), ip("10.0.0.1"))
    assert a.dns == b.dns == (ip("192.0.2.53"),)
    guest = Guest("a", VM_A)
    exchange(guest, srv)
    assert guest.next_hop(ip("8.8.8.8")) == ip("10.0.0.254")


def test_a_blank_router_sends_none() -> None:
    """``router`` may be blank (``VALID_BLANK_EXTRA_DHCP_OPTS``): the agent writes
    ``option:router,`` and the guest gets no default gateway."""
    srv = server(SUBNET_LINES + f"tag:{PORT},option:router,\n")
    guest = Guest("a", VM_A)
    lease = exchange(guest, srv)
    assert lease is not None and lease.router is None and guest.next_hop(ip("8.8.8.8")) is None


def test_classless_routes_mtu_and_dns_by_number_and_name() -> None:
    srv = server(SUBNET_LINES + f"tag:{PORT},121,192.168.50.0/24,10.0.0.9,0.0.0.0/0,10.0.0.1\n"
                                f"tag:{PORT},26,1400\n"
                                f"tag:{PORT},option:dns-server,10.0.0.53,10.0.0.54\n",
                 extra_argv="--dhcp-option-force=option:mtu,1450 ")
    guest = Guest("a", VM_A)
    lease = exchange(guest, srv)
    assert lease is not None
    assert lease.routes == ((IPv4Network("192.168.50.0/24"), ip("10.0.0.9")), (IPv4Network("0.0.0.0/0"), ip("10.0.0.1")))
    assert (lease.mtu, guest.mtu) == (1400, 1400)
    assert lease.dns == (ip("10.0.0.53"), ip("10.0.0.54"))
    assert guest.next_hop(ip("192.168.50.7")) == ip("10.0.0.9")
    assert guest.next_hop(ip("8.8.8.8")) == ip("10.0.0.1")
    other = exchange(Guest("b", VM_B), srv)  # the forced MTU, no port routes
    assert other is not None and other.mtu == 1450 and other.routes == ()


def test_untagged_lines_yield_to_tagged_ones_and_bad_lines_are_skipped() -> None:
    srv = server("option:router,10.0.0.99\n"  # untagged: everybody's, unless a tagged line matches
                 "tag:nobody,option:router,10.0.0.98\n"
                 "tag:nobody,option:nonsense name,1\n"  # dnsmasq complains and reads on
                 f"tag:{PORT},option:router,10.0.0.254\n")
    a, b = exchange(Guest("a", VM_A), srv), exchange(Guest("b", VM_B), srv)
    assert a is not None and b is not None and (a.router, b.router) == (ip("10.0.0.254"), ip("10.0.0.99"))
    opts = srv.options_for(DhcpHost(str(VM_A), "x", ip("10.0.0.10"), sets=(f"set:{PORT}",)))
    assert opts.router == (ip("10.0.0.254"),)


SCENARIO = """\
name: edo-sim
seed: 191
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:1000"], flat_networks: [public],
             firewall_driver: iptables_hybrid, external_network_bridge: "", generation: modern}
hosts:
  - {name: controller, roles: [controller, network], management_ip: 10.30.0.11, tunnel_ip: 10.30.0.11,
     bridge_mappings: {public: br-ex}}
  - {name: compute1, roles: [compute], management_ip: 10.30.0.21, tunnel_ip: 10.30.0.21}
""" + ADMIN_ONLY + RESOURCES




def test_options_set_through_the_api_reach_the_guest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from neutrino import worldkeep
    from neutrino.api.serve import make_app
    from neutrino.cli import main
    from neutrino.deploy import cloud_record, replan

    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    scenario = tmp_path / "up.yaml"
    scenario.write_text(SCENARIO)
    assert main(["up", str(scenario)]) == 0
    application, _ = make_app(cloud_record(state)["db"], str(scenario), "keystone", "edo-sim")
    with TestClient(application) as c:
        h = app_headers(c)
        port: dict[str, Any] = c.get("/v2.0/ports?device_owner=compute:nova", headers=h).json()["ports"][0]
        r = c.put(f"/v2.0/ports/{port['id']}", headers=h, json={"port": {"extra_dhcp_opts": [
            {"opt_name": "classless-static-route", "opt_value": "192.168.50.0/24,10.0.0.9,0.0.0.0/0,10.0.0.1"},
            {"opt_name": "mtu", "opt_value": "1400"}, {"opt_name": "dns-server", "opt_value": "10.0.0.53"}]}})
        assert r.status_code == 200, r.text
    replan(state)
    worldkeep.invalidate(state)
    capsys.readouterr()
    net, tag = port["network_id"], f"tag:port-{port['id']}"
    assert main(["exec", "controller", "--", "cat", f"/var/lib/neutron/dhcp/{net}/opts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == [f"{tag},option:classless-static-route,192.168.50.0/24,10.0.0.9,0.0.0.0/0,10.0.0.1",
                          f"{tag},option:mtu,1400", f"{tag},option:dns-server,10.0.0.53"]
    assert main(["exec", "controller", "--", "cat", f"/var/lib/neutron/dhcp/{net}/host"]) == 0
    assert f",set:port-{port['id']}" in capsys.readouterr().out
    # the guest's route for 192.168.50.0/24 goes via 10.0.0.9 (nobody there: ARP unanswered) ...
    main(["trace", "web1", "192.168.50.3"])
    assert "ARP for 10.0.0.9" in capsys.readouterr().out
    # ... its default route still via the router, its MTU 1400 ...
    assert main(["ping", "web1", "172.24.4.1"]) == 0
    assert "web1 -> 172.24.4.1: reply" in capsys.readouterr().out
    main(["trace", "--size", "1390", "web1", "172.24.4.1"])
    assert "larger than eth0's MTU 1400" in capsys.readouterr().out
    # ... and without the options (a null value deletes each) the guest is back to the subnet's
    with TestClient(application) as c:
        h = app_headers(c)
        r = c.put(f"/v2.0/ports/{port['id']}", headers=h, json={"port": {"extra_dhcp_opts": [
            {"opt_name": n, "opt_value": None} for n in ("classless-static-route", "mtu", "dns-server")]}})
        assert r.status_code == 200 and r.json()["port"]["extra_dhcp_opts"] == [], r.text
    replan(state)
    worldkeep.invalidate(state)
    capsys.readouterr()
    main(["trace", "web1", "192.168.50.3"])
    assert "ARP for 10.0.0.9" not in capsys.readouterr().out
