"""Review of replan8 end to end: a living cloud's in-process agents re-plan with ``previous=`` (and
carry through ``with_statuses``); after each change made through the services the API calls, every
host's applied plan (the agents' and the one saved in the state folder) must equal ``plan_host`` of a
fresh snapshot loaded from the database, with every kept piece of the planners cleared.

examples/dvr.yaml and examples/ha.yaml with l2population turned on: ports created on the computes and
the network hosts' networks, one unbound, its MAC changed and bound again, a port moved, set down, stripped of port
security, given an address pair, deleted. (On ha.yaml the standby L3 host kept a stale plan until
``hosts_affected_by_change`` named an HA router's other hosts; see tests/plan/test_review9_carry.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neutrino import agent as agent_module
from neutrino import store
from neutrino.agent import Agents
from neutrino.cli import main
from neutrino.plan import plan_host
from neutrino.services import ports as port_service
from tests.plan.test_replan_kept import forget_everything

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _living(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example: str) -> tuple[Any, Agents]:
    text = (EXAMPLES / f"{example}.yaml").read_text()
    assert "l2population: false" in text
    scenario = tmp_path / f"{example}.yaml"
    scenario.write_text(text.replace("l2population: false", "l2population: true"))
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    assert main(["up", str(scenario)]) == 0
    from neutrino.deploy import open_cloud

    services = open_cloud()
    agents = Agents(services, tmp_path / "state")
    agents.converge()
    return services, agents


def _stale_hosts(services: Any, agents: Agents) -> list[str]:
    """The hosts whose applied plan (the agents', the saved one) is not the cold plan of the database."""
    snap = services.snapshot()
    forget_everything()
    cold = {h.name: plan_host(services.snapshot(), h.name) for h in snap.deployment.hosts}
    applied = {h.name: h for h in agents.hosts}
    assert applied.keys() == cold.keys()
    return [n for n in cold if applied[n] != cold[n] or store.load_host(n) != cold[n]]


def _changes(services: Any, agents: Agents, count: int = 99) -> list[tuple[str, list[str]]]:
    """Port changes one after the other, each converged (twice: the statuses the first reported are
    the second's ``previous``); (change, the hosts stale after it) each, the first ``count``."""
    ctx = services.admin_context()
    snap = services.snapshot()
    vm = next(p for p in snap.ports if p.is_instance_port)
    computes = [h.name for h in snap.deployment.hosts if h.has("compute")] or [vm.binding_host]
    out: list[tuple[str, list[str]]] = []

    def step(what: str, change: Any) -> None:
        if len(out) >= count:
            return
        with services.write(ctx) as tx:
            change(tx)
        agents.converge()
        agents.converge()
        out.append((what, _stale_hosts(services, agents)))

    made: list[str] = []
    for i, host in enumerate([*computes, snap.deployment.hosts[0].name]):
        step(f"port created on {host}", lambda tx, i=i, host=host: made.append(port_service.create_port(tx, {
            "network_id": vm.network_id, "name": f"extra{i}", "device_owner": "compute:nova",
            "device_id": f"vm-extra{i}", "binding:host_id": host})["id"]))
    step("unbound", lambda tx: port_service.update_port(tx, made[0], {"binding:host_id": ""}))
    step("MAC changed", lambda tx: port_service.update_port(tx, made[0], {"mac_address": "fa:16:3e:7e:00:01"}))
    step("bound again", lambda tx: port_service.update_port(tx, made[0], {"binding:host_id": computes[0]}))
    step("moved", lambda tx: port_service.update_port(tx, made[0], {"binding:host_id": computes[-1]}))
    step("set down", lambda tx: port_service.update_port(tx, made[1], {"admin_state_up": False}))
    step("address pair", lambda tx: port_service.update_port(tx, made[-1], {
        "allowed_address_pairs": [{"ip_address": "10.99.0.5"}]}))
    step("port security off", lambda tx: port_service.update_port(tx, made[-1], {
        "port_security_enabled": False, "security_groups": [], "allowed_address_pairs": []}))
    step("deleted", lambda tx: port_service.delete_port(tx, made[0]))
    return out


def test_a_living_dvr_cloud_with_l2population_keeps_cold_plans(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    services, agents = _living(tmp_path, monkeypatch, "dvr")
    carried: list[int] = []
    real = agent_module.plan_hosts

    def counting(snap: Any, names: Any, **kw: Any) -> Any:
        carried.append(kw.get("previous") is not None)
        return real(snap, names, **kw)
    monkeypatch.setattr(agent_module, "plan_hosts", counting)
    changes = _changes(services, agents)
    assert len(changes) >= 8 and sum(carried) >= 8  # (the passes re-planned with ``previous=``)
    assert [(what, stale) for what, stale in changes if stale] == []


def test_a_living_ha_cloud_with_l2population_keeps_cold_plans(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    services, agents = _living(tmp_path, monkeypatch, "ha")
    changes = _changes(services, agents)  # (the first, a port created on compute1, left network2 stale)
    assert len(changes) >= 8
    assert [(what, stale) for what, stale in changes if stale] == []
