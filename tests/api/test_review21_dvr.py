"""review21: a distributed router's interface port through the port API (``0a2bd5c``), against ML2
(Neutron Train, 15.0.0, ``neutron/plugins/ml2/plugin.py``).

ML2 shows such a port with no host, ``binding:vif_type`` ``distributed`` and no details whatever is
done to the port itself (``_update_port_dict_binding``, 736-746), and an update that names a host
does not bind it there: ``_process_port_binding`` clears the port-level binding of a
``network:router_interface_distributed`` port and sets its host back to ``''`` (482-485); the hosts
come from the L3 agents' distributed bindings only. An HA and distributed router's interface is
distributed as well (its HA ports are the SNAT side's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.api_helpers import ROOT, app_headers, scenario_app

DISTRIBUTED: tuple[str, str, dict[str, Any]] = ("", "distributed", {})


class Api:
    """The admin's Neutron calls on the in-process app."""

    def __init__(self, c: TestClient) -> None:
        self.c = c
        self.headers = app_headers(c)

    def __call__(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = self.c.request(method, "/v2.0" + path, json=body, headers=self.headers)
        assert r.status_code == status, (method, path, r.text)
        return r.json() if r.content else None


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("review21-dvr")
    with scenario_app(tmp, "r21dvr", (ROOT / "examples" / "dvr.yaml").read_text()) as c:
        yield Api(c)


def _interface(api: Api, name: str, **router: Any) -> dict[str, Any]:
    """A new network, subnet and router (``router``'s attributes) with one interface on it: the port."""
    net = api("POST", "/networks", {"network": {"name": name}}, status=201)["network"]
    sub = api("POST", "/subnets", {"subnet": {"network_id": net["id"], "cidr": f"10.{60 + len(name)}.0.0/24",
                                              "ip_version": 4}}, status=201)["subnet"]
    r = api("POST", "/routers", {"router": {"name": name, **router}}, status=201)["router"]
    port_id = api("PUT", f"/routers/{r['id']}/add_router_interface", {"subnet_id": sub["id"]})["port_id"]
    port: dict[str, Any] = api("GET", f"/ports/{port_id}")["port"]
    return port


def _binding(p: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    return p["binding:host_id"], p["binding:vif_type"], p["binding:vif_details"]


def test_updates_that_name_no_host_keep_it_distributed(api: Api) -> None:
    p = _interface(api, "r21a")
    assert (p["device_owner"], _binding(p)) == ("network:router_interface_distributed", DISTRIBUTED)
    for body in ({"name": "renamed"}, {"admin_state_up": False}, {"admin_state_up": True}):
        assert _binding(api("PUT", f"/ports/{p['id']}", {"port": body})["port"]) == DISTRIBUTED


def test_an_ha_and_distributed_routers_interface_is_distributed(api: Api) -> None:
    p = _interface(api, "r21hd", ha=True, distributed=True)
    assert (p["device_owner"], _binding(p), p["status"]) == ("network:router_interface_distributed", DISTRIBUTED,
                                                             "DOWN")


def test_a_host_named_in_an_update_does_not_bind_it(api: Api) -> None:
    p = _interface(api, "r21b")
    shown = api("PUT", f"/ports/{p['id']}", {"port": {"binding:host_id": "compute01"}})["port"]
    assert _binding(shown) == DISTRIBUTED
    assert _binding(api("GET", f"/ports/{p['id']}")["port"]) == DISTRIBUTED
