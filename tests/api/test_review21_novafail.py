"""review21: novafail's failed builds against Nova Train (20.0.0), in process (Starlette's test client).

The deployment is novafail's own (``tests.api.test_novafail_server.SCENARIO``): compute1 and compute3
map no physnet, compute2 maps ``edge``, no host maps ``physnet9``. What is checked here and not
there: a build with several ports of which one fails (every port Nova made deleted, the caller's
own unbound, the fault naming the port that failed), what is left of a caller's port (its
``binding:profile``, which Nova's ``_unbind_ports`` keeps), the server actions and listings an
ERROR server meets (``addSecurityGroup``, ``status=ERROR``, the limits, the hypervisors), and the
view at microversion 2.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.api_helpers import app_headers, scenario_app
from tests.api.test_novafail_server import REASON, SCENARIO


class Api:
    """The admin's calls on the in-process app, at compute microversion 2.74 unless told."""

    def __init__(self, c: TestClient) -> None:
        self.c = c
        self.headers = {**app_headers(c), "OpenStack-API-Version": "compute 2.74"}

    def __call__(self, method: str, path: str, body: Any = None, status: int = 200, version: str = "2.74") -> Any:
        headers = {**self.headers, "OpenStack-API-Version": f"compute {version}"}
        r = self.c.request(method, path, json=body, headers=headers)
        assert r.status_code == status, (method, path, r.text)
        return r.json() if r.content else None


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("review21-novafail")
    with scenario_app(tmp, "r21", SCENARIO) as c:
        yield Api(c)


@pytest.fixture(scope="module")
def nets(api: Api) -> dict[str, str]:
    """novafail's three networks: ``unmapped`` (VLAN on physnet9), ``edge`` (flat, compute2 only),
    ``tenant`` (VXLAN, every host)."""
    out = {}
    specs: tuple[tuple[str, dict[str, Any]], ...] = (
        ("unmapped", {"provider:network_type": "vlan", "provider:physical_network": "physnet9",
                      "provider:segmentation_id": 150}),
        ("edge", {"provider:network_type": "flat", "provider:physical_network": "edge"}),
        ("tenant", {}))
    for n, (name, extra) in enumerate(specs):
        out[name] = api("POST", "/v2.0/networks", {"network": {"name": f"r21-{name}", "shared": True, **extra}},
                        status=201)["network"]["id"]
        api("POST", "/v2.0/subnets", {"subnet": {"network_id": out[name], "cidr": f"10.9{n}.0.0/24",
                                                 "ip_version": 4}}, status=201)
    return out


def _boot(api: Api, name: str, networks: list[dict[str, str]]) -> dict[str, Any]:
    image = api("GET", "/compute/v2.1/images")["images"][0]["id"]
    sid = api("POST", "/compute/v2.1/servers", {"server": {"name": name, "imageRef": image, "flavorRef": "1",
                                                           "networks": networks}}, status=202)["server"]["id"]
    shown: dict[str, Any] = api("GET", f"/compute/v2.1/servers/{sid}")["server"]
    return shown


def _port(api: Api, net: str, **attrs: Any) -> dict[str, Any]:
    port: dict[str, Any] = api("POST", "/v2.0/ports", {"port": {"network_id": net, **attrs}}, status=201)["port"]
    return port


def _non_dhcp(api: Api) -> set[str]:
    return {p["id"] for p in api("GET", "/v2.0/ports")["ports"] if p["device_owner"] != "network:dhcp"}


@pytest.mark.parametrize("order", ["failing-first", "failing-last"])
def test_several_ports_one_fails(api: Api, nets: dict[str, str], order: str) -> None:
    """Nova binds the ports in the request's order and stops at the first ``PortBindingFailed``
    (``_update_ports_for_instance``), deleting the ports it made and unbinding the caller's (there and
    in ``deallocate_for_instance``): the fault names the unmapped network's port, and nothing is left
    on the server."""
    mine = _port(api, nets["tenant"], name=f"r21-mine-{order}")
    items = [{"uuid": nets["unmapped"]}, {"port": mine["id"]}, {"uuid": nets["tenant"]}]
    if order == "failing-last":
        items.reverse()
    before = _non_dhcp(api)
    shown = _boot(api, f"r21-several-{order}", items)
    assert (shown["status"], shown["addresses"], shown["OS-EXT-SRV-ATTR:host"]) == ("ERROR", {}, None)
    message = shown["fault"]["message"]
    failed = message.split("Last exception: ", 1)[1]
    port_id = failed.removeprefix("Binding failed for port ").split(",", 1)[0]
    assert failed == REASON.format(port_id)
    assert port_id not in before  # a port Nova made, on the unmapped network, and deleted
    assert api("GET", f"/v2.0/ports/{port_id}", status=404)
    assert api("GET", f"/v2.0/ports?device_id={shown['id']}")["ports"] == []
    after = api("GET", f"/v2.0/ports/{mine['id']}")["port"]
    assert (after["device_id"], after["device_owner"], after["binding:host_id"], after["binding:vif_type"],
            after["status"]) == ("", "", "", "unbound", "DOWN")
    assert _non_dhcp(api) == before  # nothing made is left behind (a DHCP server may have come)


def test_a_callers_port_keeps_its_binding_profile(api: Api, nets: dict[str, str]) -> None:
    mine = _port(api, nets["unmapped"], name="r21-profiled",
                 **{"binding:profile": {"trusted": True, "pci_slot": "0000:05:00.1"}})
    shown = _boot(api, "r21-profiled", [{"port": mine["id"]}])
    assert shown["status"] == "ERROR"
    after = api("GET", f"/v2.0/ports/{mine['id']}")["port"]
    assert after["device_id"] == ""
    assert after["binding:profile"] == {"trusted": True}  # the PCI key dropped, the rest kept


def test_what_an_error_server_meets(api: Api, nets: dict[str, str]) -> None:
    """``addSecurityGroup`` finds no port (Nova's neutron driver ``add_to_instance``: 404), the list
    filtered by ``status=ERROR`` has it, the limits count it (the instance and its cores: Nova's quota
    counts every instance not deleted), no hypervisor does."""
    shown = _boot(api, "r21-meets", [{"uuid": nets["unmapped"]}])
    sid = shown["id"]
    r = api("POST", f"/compute/v2.1/servers/{sid}/action", {"addSecurityGroup": {"name": "default"}}, status=404)
    assert r["itemNotFound"]["message"] == f"instance_id {sid} could not be found as device id on any ports"
    assert sid in {s["id"] for s in api("GET", "/compute/v2.1/servers?status=ERROR")["servers"]}
    assert sid not in {s["id"] for s in api("GET", "/compute/v2.1/servers?status=ACTIVE")["servers"]}
    servers = api("GET", "/compute/v2.1/servers")["servers"]
    absolute = api("GET", "/compute/v2.1/limits")["limits"]["absolute"]
    assert absolute["totalInstancesUsed"] == len(servers) and absolute["totalCoresUsed"] == len(servers)
    running = sum(h["running_vms"] for h in api("GET", "/compute/v2.1/os-hypervisors/detail")["hypervisors"])
    assert running == sum(1 for s in api("GET", "/compute/v2.1/servers/detail")["servers"] if s["status"] == "ACTIVE")
    api("DELETE", f"/compute/v2.1/servers/{sid}", status=204)


def test_the_view_at_2_1(api: Api, nets: dict[str, str]) -> None:
    """At 2.1: no ``host_status`` (2.16), no ``locked`` (2.9), the fault with Nova's ``utils.isotime``
    (``%Y-%m-%dT%H:%M:%SZ``), vm_state ``error``, no AZ (``_nil_out_instance_obj_host_and_node``
    clears it: the view shows ``''``), no ``progress`` nor ``security_groups`` (no port left)."""
    sid = _boot(api, "r21-v21", [{"uuid": nets["unmapped"]}])["id"]
    s = api("GET", f"/compute/v2.1/servers/{sid}", version="2.1")["server"]
    assert "host_status" not in s and "locked" not in s and "progress" not in s and "security_groups" not in s
    assert (s["OS-EXT-STS:vm_state"], s["OS-EXT-STS:task_state"], s["OS-EXT-STS:power_state"]) == ("error", None, 0)
    assert (s["OS-EXT-AZ:availability_zone"], s["hostId"], s["OS-SRV-USG:launched_at"]) == ("", "", None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["fault"]["created"])
    assert set(s["fault"]) == {"code", "created", "message", "details"}
    assert api("GET", f"/compute/v2.1/servers/{sid}", version="2.16")["server"]["host_status"] == ""


def test_the_limits_count_the_ram_of_every_server(api: Api, nets: dict[str, str]) -> None:
    _boot(api, "r21-ram", [{"uuid": nets["unmapped"]}])
    ram = {f["id"]: f["ram"] for f in api("GET", "/compute/v2.1/flavors/detail")["flavors"]}
    used = sum(ram[s["flavor"]["id"]] for s in api("GET", "/compute/v2.1/servers/detail", version="2.1")["servers"])
    assert used > 0
    assert api("GET", "/compute/v2.1/limits")["limits"]["absolute"]["totalRAMUsed"] == used


def test_a_multi_create_where_one_server_fails(tmp_path: Path) -> None:
    """A fresh cloud (no server yet): ``edge`` binds on compute2 only. Nova picks compute1 for the first
    server and compute2 for the second (fewest servers first, counting the first's claim); the
    alternates are the hosts no server of the request took: compute3 alone. The first fails on
    compute1 and compute3 ("Exhausted all hosts"), the second lands on compute2."""
    with scenario_app(tmp_path, "r21multi", SCENARIO) as c:
        api = Api(c)
        edge = api("POST", "/v2.0/networks", {"network": {"name": "edge", "provider:network_type": "flat",
                                                          "provider:physical_network": "edge"}},
                   status=201)["network"]["id"]
        api("POST", "/v2.0/subnets", {"subnet": {"network_id": edge, "cidr": "10.95.0.0/24", "ip_version": 4}},
            status=201)
        image = api("GET", "/compute/v2.1/images")["images"][0]["id"]
        api("POST", "/compute/v2.1/servers", {"server": {"name": "multi", "imageRef": image, "flavorRef": "1",
                                                         "networks": [{"uuid": edge}], "min_count": 2,
                                                         "max_count": 2}}, status=202)
        shown = {s["name"]: s for s in api("GET", "/compute/v2.1/servers/detail")["servers"]}
        assert {n: (s["status"], s["OS-EXT-SRV-ATTR:host"]) for n, s in shown.items()} == {
            "multi-1": ("ERROR", None), "multi-2": ("ACTIVE", "compute2")}
        assert shown["multi-1"]["fault"]["message"] == ("Exceeded maximum number of retries. Exhausted all hosts "
                                                        "available for retrying build failures for instance "
                                                        f"{shown['multi-1']['id']}.")


@pytest.mark.parametrize("given", ["network", "port"])
def test_nothing_to_address_is_refused(api: Api, given: str) -> None:
    net = api("POST", "/v2.0/networks", {"network": {"name": f"r21-bare-{given}"}}, status=201)["network"]["id"]
    if given == "network":
        item, message = {"uuid": net}, f"Network {net} requires a subnet in order to boot instances on."
    else:
        port = _port(api, net)["id"]
        item, message = {"port": port}, f"Port {port} requires a FixedIP in order to be used."
    image = api("GET", "/compute/v2.1/images")["images"][0]["id"]
    r = api.c.post("/compute/v2.1/servers", headers=api.headers, json={"server": {
        "name": f"r21-bare-{given}", "imageRef": image, "flavorRef": "1", "networks": [item]}})
    assert (r.status_code, r.json().get("badRequest", {}).get("message")) == (400, message)
