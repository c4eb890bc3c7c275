"""The agents re-plan only the hosts a port change touches, and what they keep is what planning
every host would give.

Seed 001 (a controller and two computes, VXLAN without l2population): a port added on net172-12
(served by the controller's DHCP, used by compute02 only) is planned on the controller and compute02
and not on compute01; changed, then deleted, likewise; a change to anything but ports (a security
group rule) plans every host. After every pass the kept plans equal ``plan_cloud`` of the cloud as
it is then, and the state folder holds them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from neutrino import agent as agent_module
from neutrino import store
from neutrino.agent import Agents
from neutrino.cli import main
from neutrino.plan import hosts_affected_by_change, plan_cloud
from neutrino.services import ports as port_service
from neutrino.services import securitygroups

SEED001 = Path(__file__).resolve().parents[2] / "examples" / "seed001.yaml"


@pytest.fixture
def living(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    assert main(["up", str(SEED001)]) == 0
    from neutrino.deploy import open_cloud

    services = open_cloud()
    agents = Agents(services, tmp_path / "state")
    agents.converge()
    full_plans: list[int] = []
    real_plan_cloud = agent_module.plan_cloud

    def counting(snap):
        full_plans.append(1)
        return real_plan_cloud(snap)

    monkeypatch.setattr(agent_module, "plan_cloud", counting)
    return services, agents, full_plans


def agree(services, agents) -> None:
    """The kept plans are what planning every host from the cloud as it is gives, and are saved."""
    expected = {h.name: h for h in plan_cloud(services.snapshot())}
    kept = {h.name: h for h in agents.hosts}
    assert kept.keys() == expected.keys()
    for name, state in expected.items():
        assert kept[name] == state, f"{name}: the kept plan differs from a full plan"
        assert store.load_host(name) == state


def test_a_port_change_replans_only_the_hosts_it_touches(living) -> None:
    services, agents, full_plans = living
    snap = services.snapshot()
    net = next(n for n in snap.networks if n.name == "net172-12")
    bare = next(g for g in snap.security_groups if g.name == "bare")
    ctx = services.admin_context()

    with services.write(ctx) as tx:
        port = port_service.create_port(tx, {
            "network_id": net.id, "name": "extra", "device_owner": "compute:nova", "device_id": "vm-extra",
            "binding:host_id": "compute02", "security_groups": [bare.id]})
    before = agents._snap
    assert before is not None
    assert hosts_affected_by_change(before, services.snapshot()) == ("controller", "compute02")
    done = agents.converge()
    assert not full_plans, "a port added planned every host"
    assert set(done.replanned) <= {"controller", "compute02"} and "compute02" in done.replanned
    agree(services, agents)
    compute02 = next(h for h in agents.hosts if h.name == "compute02")
    root = compute02.namespace("")
    assert root is not None and root.links is not None
    assert any(f"qvo{port['id'][:11]}" == lk.name for lk in root.links), "no qvo device for the new port"

    with services.write(ctx) as tx:
        port_service.update_port(tx, port["id"], {"allowed_address_pairs": [{"ip_address": "172.12.0.200"}]})
    agents.converge()
    assert not full_plans
    agree(services, agents)

    with services.write(ctx) as tx:
        port_service.delete_port(tx, port["id"])
    done = agents.converge()
    assert not full_plans and "compute01" not in done.replanned
    agree(services, agents)


def test_a_change_to_anything_but_ports_plans_every_host(living) -> None:
    services, agents, full_plans = living
    bare = next(g for g in services.snapshot().security_groups if g.name == "bare")
    with services.write(services.admin_context()) as tx:
        securitygroups.create_rule(tx, {"security_group_id": bare.id, "direction": "ingress",
                                        "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22,
                                        "port_range_max": 22})
    assert hosts_affected_by_change(agents._snap, services.snapshot()) is None
    agents.converge()
    assert full_plans == [1]
    agree(services, agents)
