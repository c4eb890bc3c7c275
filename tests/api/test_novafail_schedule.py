"""Where a server lands when some hosts cannot bind its port, against a model of Nova's scheduler and
reschedules: four compute hosts, sixteen flat physical networks, host ``i`` mapping ``pK`` when bit
``i`` of ``K`` is set. Each boot (in a seeded random order, some of them with two networks) tries the
hosts with the fewest servers first (ties by host order), at most three; it lands on the first that
binds every port, else it is ERROR with ``MaxRetriesExceeded`` naming the last port that failed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.api_helpers import ADMIN_AND_DEMO, app_headers, scenario_app

COMPUTES = ("compute1", "compute2", "compute3", "compute4")
PHYSNETS = [f"p{k}" for k in range(16)]


def _scenario() -> str:
    hosts = "".join(
        f"  - {{name: {h}, roles: [compute], management_ip: 10.0.0.{11 + i}, tunnel_ip: 10.0.0.{11 + i}, "
        f"bridge_mappings: {{{', '.join(f'p{k}: br-p{k}' for k in range(16) if k >> i & 1) or 'none: br-none'}}}}}\n"
        for i, h in enumerate(COMPUTES))
    return ("name: novafail-schedule\n"
            "deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: [\"1:1000\"],\n"
            f"             flat_networks: [{', '.join(PHYSNETS)}], firewall_driver: iptables_hybrid, "
            "generation: modern}\n"
            "hosts:\n"
            "  - {name: controller, roles: [controller, network], management_ip: 10.0.0.1, tunnel_ip: 10.0.0.1}\n"
            + hosts + ADMIN_AND_DEMO)


def _maps(host: str, physnet: str) -> bool:
    return bool(int(physnet[1:]) >> COMPUTES.index(host) & 1)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    tmp: Path = tmp_path_factory.mktemp("novafail-schedule")
    with scenario_app(tmp, "nfs", _scenario()) as c:
        headers = {**app_headers(c), "OpenStack-API-Version": "compute 2.74"}
        yield c, headers


def _call(c: TestClient, headers: dict[str, str], method: str, path: str, body: Any = None, status: int = 200) -> Any:
    r = c.request(method, path, json=body, headers=headers)
    assert r.status_code == status, (method, path, r.text)
    return r.json() if r.content else None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_servers_land_where_nova_would_put_them(app: tuple[TestClient, dict[str, str]], seed: int) -> None:
    c, h = app
    for s in _call(c, h, "GET", "/compute/v2.1/servers")["servers"]:  # a clean slate per seed
        _call(c, h, "DELETE", f"/compute/v2.1/servers/{s['id']}", status=204)
    nets = {}
    for n, physnet in enumerate(PHYSNETS):
        existing = _call(c, h, "GET", f"/v2.0/networks?name=net-{physnet}")["networks"]
        if existing:
            nets[physnet] = existing[0]["id"]
            continue
        net = _call(c, h, "POST", "/v2.0/networks", {"network": {
            "name": f"net-{physnet}", "provider:network_type": "flat", "provider:physical_network": physnet}},
            status=201)["network"]["id"]
        _call(c, h, "POST", "/v2.0/subnets", {"subnet": {"network_id": net, "cidr": f"10.{100 + n}.0.0/24",
                                                         "ip_version": 4}}, status=201)
        nets[physnet] = net
    image = _call(c, h, "GET", "/compute/v2.1/images")["images"][0]["id"]
    rnd = random.Random(seed)
    load = dict.fromkeys(COMPUTES, 0)
    errors = 0
    for i in range(24):
        wanted = rnd.sample(PHYSNETS, rnd.choice((1, 1, 2)))
        sid = _call(c, h, "POST", "/compute/v2.1/servers", {"server": {
            "name": f"vm{i}", "imageRef": image, "flavorRef": "1", "networks": [{"uuid": nets[p]} for p in wanted]}},
            status=202)["server"]["id"]
        tried = sorted(COMPUTES, key=lambda x: load[x])[:3]
        lands = next((x for x in tried if all(_maps(x, p) for p in wanted)), None)
        shown = _call(c, h, "GET", f"/compute/v2.1/servers/{sid}")["server"]
        ports = _call(c, h, "GET", f"/v2.0/ports?device_id={sid}")["ports"]
        if lands is None:
            errors += 1
            assert (shown["status"], shown["OS-EXT-SRV-ATTR:host"], ports) == ("ERROR", None, [])
            message = shown["fault"]["message"]
            assert message.startswith("Exceeded maximum number of retries. Exceeded max scheduling attempts 3 for "
                                      f"instance {sid}. Last exception: Binding failed for port ")
            last = message.split("Binding failed for port ", 1)[1].split(",", 1)[0]
            assert _call(c, h, "GET", f"/v2.0/ports/{last}", status=404)  # Nova made it, Nova deleted it
        else:
            load[lands] += 1
            assert (shown["status"], shown["OS-EXT-SRV-ATTR:host"], "fault" in shown) == ("ACTIVE", lands, False)
            assert sorted(p["network_id"] for p in ports) == sorted(nets[p] for p in wanted)
            assert {(p["binding:host_id"], p["binding:vif_type"]) for p in ports} == {(lands, "ovs")}
    assert 0 < errors < 24  # both outcomes were met
    usage = {hv["hypervisor_hostname"]: hv["running_vms"]
             for hv in _call(c, h, "GET", "/compute/v2.1/os-hypervisors/detail")["hypervisors"]}
    assert usage == load  # an ERROR server counts on no host
