"""A port whose binding failed stays DOWN: ML2 gives the OVS agent no details of it
(``get_device_details``), so the agent treats it as dead and never reports it up, while the ports it
plumbed go ACTIVE; bound again to a host whose agent reaches its segment, it goes ACTIVE. Seed002's
router gateway port (physnet ``external``, which no host maps) stays DOWN, and agent passes with
nothing changed report no port.
"""

from __future__ import annotations

import pathlib

import httpx
import pytest

from neutrino.agent import Agents
from neutrino.deploy import bring_up, open_cloud
from tests.api.api_helpers import Server, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_failed_binding_stays_down_while_bound_ports_go_active(srv: Server, admin: httpx.Client) -> None:
    flat = srv.osc("network", "create", "--provider-network-type", "flat", "--provider-physical-network",
                   "provider", "bf-status-flat", "-f", "json")["id"]
    tenant = srv.osc("network", "create", "bf-status-tenant", "-f", "json")["id"]
    failed = srv.osc("port", "create", "--network", flat, "--host", "compute2", "bf-down", "-f", "json")
    bound = srv.osc("port", "create", "--network", tenant, "--host", "compute2", "bf-up", "-f", "json")["id"]
    assert failed["binding_vif_type"] == "binding_failed"

    def status(port: str) -> str:
        return str(admin.get(f"/ports/{port}").json()["port"]["status"])
    wait_until(lambda: status(bound) == "ACTIVE", 60, "the agent to report the bound port up")
    assert status(failed["id"]) == "DOWN"
    srv.osc("port", "set", "--host", "controller", failed["id"])  # bound now: the agent reports it up
    wait_until(lambda: status(failed["id"]) == "ACTIVE", 60, "the agent to report the rebound port up")


def test_seed002_gateway_port_stays_down_and_idle_passes_report_nothing(tmp_path: pathlib.Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    bring_up(ROOT / "examples" / "seed002.yaml")
    cloud = open_cloud()
    agents = Agents(cloud)
    passes = [agents.converge() for _ in range(2)]
    assert [(p.replanned, p.ports) for p in passes] == [((), 0), ((), 0)]
    [gateway] = [p for p in cloud.snapshot().ports if p.device_owner == "network:router_gateway"]
    assert (gateway.vif_type, gateway.status) == ("binding_failed", "DOWN")
    assert all(p.status == "ACTIVE" for p in cloud.snapshot().ports if p.binding_host and p.id != gateway.id)
