"""ML2/OVS binds a port only where the host's OVS agent reaches the network's segment (its
``check_segment_for_agent``): a flat or VLAN segment needs its physical network in the agent's bridge
mappings, a tunnel its type in the agent's tunnel types; otherwise ``binding:vif_type`` is
``binding_failed``, ``binding:vif_details`` empty and the port DOWN. Checked with the real openstack CLI
against a real server on the two-computes deployment (the controller maps physnet ``provider``, the
computes map nothing), on each path that binds: a port's create (the prepared-statement path and the
ORM's, for a DHCP port), its update to another host, and a server's create on an existing port.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.api_helpers import Server

pytestmark = pytest.mark.usefixtures("srv")


def _binding(srv: Server, port: str) -> tuple[str, str, dict[str, Any], str]:
    shown = srv.osc("port", "show", port, "-f", "json")
    return shown["binding_host_id"], shown["binding_vif_type"], shown["binding_vif_details"], shown["status"]


@pytest.fixture(scope="module")
def networks(srv: Server) -> dict[str, str]:
    """A VLAN network on a physical network no host maps, the flat network on ``provider`` (only the
    controller maps it) and a VXLAN tenant network, by name."""
    out = {}
    for name, args in (("unmapped", ("--provider-network-type", "vlan", "--provider-physical-network", "physnet9",
                                     "--provider-segment", "100")),
                       ("flat", ("--provider-network-type", "flat", "--provider-physical-network", "provider")),
                       ("tenant", ())):
        out[name] = srv.osc("network", "create", *args, name, "-f", "json")["id"]
    return out


@pytest.mark.parametrize(("network", "host", "vif_type"), [
    pytest.param("unmapped", "compute1", "binding_failed", id="vlan-unmapped-compute"),
    pytest.param("unmapped", "controller", "binding_failed", id="vlan-unmapped-controller"),
    pytest.param("flat", "compute1", "binding_failed", id="flat-unmapped-compute"),
    pytest.param("flat", "controller", "ovs", id="flat-mapped-controller"),
    pytest.param("tenant", "compute2", "ovs", id="vxlan-compute"),
])
def test_port_create_binds_where_the_agent_reaches(srv: Server, networks: dict[str, str], network: str, host: str,
                                                   vif_type: str) -> None:
    made = srv.osc("port", "create", "--network", networks[network], "--host", host,
                   f"bf-{network}-{host}", "-f", "json")
    assert (made["binding_vif_type"], made["status"]) == (vif_type, "DOWN")
    host_id, shown_type, details, _ = _binding(srv, made["id"])
    assert (host_id, shown_type) == (host, vif_type)
    if vif_type == "binding_failed":
        assert details == {} and made["binding_vif_details"] == {}
    else:
        assert details["bridge_name"] == "br-int" and details["bound_drivers"] == {"0": "openvswitch"}


def test_rebinding_follows_the_new_host(srv: Server, networks: dict[str, str]) -> None:
    port = srv.osc("port", "create", "--network", networks["flat"], "--host", "compute1", "bf-rebind",
                   "-f", "json")["id"]
    assert _binding(srv, port)[:3] == ("compute1", "binding_failed", {})
    srv.osc("port", "set", "--host", "controller", port)
    host, vif_type, details, _ = _binding(srv, port)
    assert (host, vif_type, details["bridge_name"]) == ("controller", "ovs", "br-int")
    srv.osc("port", "set", "--host", "compute2", port)
    assert _binding(srv, port)[:3] == ("compute2", "binding_failed", {})


def test_dhcp_port_on_an_unmapped_physnet_fails_to_bind(srv: Server, admin: httpx.Client,
                                                        networks: dict[str, str]) -> None:
    """The DHCP port (made by the ORM's path when the network gets its first instance port) on the
    network host, which does not map ``physnet9``; on ``provider``, which it maps, it binds."""
    for network, vif_type in (("unmapped", "binding_failed"), ("flat", "ovs")):
        cidr = "10.91.0.0/24" if network == "unmapped" else "10.92.0.0/24"
        srv.osc("subnet", "create", "--network", networks[network], "--subnet-range", cidr, f"bf-{network}-sub")
        srv.osc("port", "create", "--network", networks[network], "--device-owner", "compute:nova",
                f"bf-{network}-instance")
        dhcp = admin.get("/ports", params={"network_id": networks[network], "device_owner": "network:dhcp"})
        [port] = dhcp.json()["ports"]
        assert (port["binding:host_id"], port["binding:vif_type"]) == ("controller", vif_type)


def test_server_on_a_port_of_an_unmapped_physnet(srv: Server, networks: dict[str, str]) -> None:
    """A server booted on an existing port binds it to the server's host (the ORM's ``bind``), which
    does not map the port's physnet: the binding fails there (Nova's ``PortBindingFailed``), the build
    is rescheduled and finds no other host (2.74's ``host`` has no alternate). The server is ERROR
    and the port is given back unbound (``deallocate_for_instance``)."""
    port = srv.osc("port", "create", "--network", networks["unmapped"], "bf-server-port", "-f", "json")["id"]
    assert _binding(srv, port)[:2] == ("", "unbound")
    with httpx.Client(base_url=srv.base, timeout=30, headers={"X-Auth-Token": srv.token(),
                                                              "OpenStack-API-Version": "compute 2.74"}) as c:
        image = c.get("/compute/v2.1/images").json()["images"][0]["id"]
        r = c.post("/compute/v2.1/servers", json={"server": {
            "name": "bf-vm", "imageRef": image, "flavorRef": "1", "networks": [{"port": port}], "host": "compute1"}})
        assert r.status_code == 202, r.text
        shown = c.get(f"/compute/v2.1/servers/{r.json()['server']['id']}").json()["server"]
    assert shown["status"] == "ERROR" and shown["fault"]["code"] == 500
    assert shown["fault"]["message"].startswith("Exceeded maximum number of retries. Exhausted all hosts")
    assert _binding(srv, port)[:2] == ("", "unbound")
