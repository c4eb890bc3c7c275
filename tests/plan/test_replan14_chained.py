"""Issue #17, fourteenth round (replan14): the splice (replan13, ``ovs._spliced``) from a last plan
older than the snapshot the fresh one was carried from, when the chain of recorded answers proves
the host's plan on that snapshot is its last one (``plan._unaffected_since``: a pass that reported
statuses, ``agent.with_statuses`` and ``plan.same_plans``; a change that did not touch the host).
The splice reads the carried-from snapshot's hosts of the changed network and their live ports;
those are the last plan's snapshot's too (each step of the chain changed no port of the host's
networks, or statuses alone): see ``plan._patched``.

Oracle: a cold plan (``==`` and ``repr``). Shown: the living agents (``Agents``, changes made
through the Neutron API, statuses reported after each pass) splice chained hosts and every host's
plan at every step is the cold one; the same at the planners' level after statuses and after an
unaffecting change. Mutations that make a re-plan differ: the chain's affected sets ignored (a host
a change touched but did not plan again spliced from its older plan), and the statuses' record
lying (a "status" pass that also changed a remote port's MAC recorded as changing no plan)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import neutrino.plan as plan
from neutrino import agent
from neutrino.agent import Agents, with_statuses
from neutrino.cli import main
from neutrino.host.state import HostState
from neutrino.plan import hosts_affected_by_change, ovs, plan_hosts
from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit
from tests.plan.test_replan6_carried import _instance_ports
from tests.plan.test_replan8_previous import _cold, _differing, _names, _new_port
from tests.plan.test_replan_kept import fresh

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud
patched = replan_kit.patched

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """The hosts whose OVS plan was spliced, in order, each with whether its last plan was older
    than the snapshot carried from (chained: what this round adds)."""
    out: list[tuple[str, bool]] = []
    real = ovs._spliced

    def counting(ctx: ovs.OvsContext, *args: Any) -> ovs.OvsParts | None:
        last = plan._LAST.get(ctx.host.name)  # (read before: the splice remembers the new plan)
        got = real(ctx, *args)
        if got is not None:
            assert last is not None
            out.append((ctx.host.name, last.serial != args[-1]))
        return got

    monkeypatch.setattr(ovs, "_spliced", counting)
    return out


def _port_added(cloud: CloudSnapshot, net: int, n: int) -> CloudSnapshot:
    """One more port on network ``net``, on a host that has one there already."""
    host = next(p.binding_host for p in _instance_ports(cloud) if p.network_id == cloud.networks[net].id)
    return fresh(cloud, ports=(*cloud.ports, _new_port(cloud, net, host, n)))


def _reported(snap: CloudSnapshot, n: int) -> CloudSnapshot:
    """The statuses a pass reports (a few ports ACTIVE/DOWN), as ``Agents.converge`` keeps them."""
    return with_statuses(snap, {p.id: "DOWN" if p.status == "ACTIVE" else "ACTIVE" for p in snap.ports[n:n + 3]})


def _agents_way(plans: dict[str, HostState], before: CloudSnapshot, after: CloudSnapshot) -> None:
    touched = hosts_affected_by_change(before, after)
    plans.update(plan_hosts(after, _names(after) if touched is None else touched, previous=before))


def test_after_statuses_and_unaffecting_changes_chained_hosts_are_spliced(
        cloud: CloudSnapshot, spliced: list[tuple[str, bool]]) -> None:
    """Changes on networks 3, 2, 3, 4, 3, statuses reported after each: every host's plan equals
    the cold plan at every step, and chained hosts are spliced at every step after the first
    (after statuses every patched host is chained; a host on network 3 not on 2 or 4 is spliced
    from its plan of two changes before)."""
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))
    before = _reported(before, 0)
    per_step, done = [], []
    for i, net in enumerate([3, 2, 3, 4, 3]):
        after = _port_added(before, net, 10 + i)
        spliced.clear()
        _agents_way(plans, before, after)
        per_step.append(sum(chained for _h, chained in spliced))
        done.append((after, dict(plans)))  # (compared at the end: a cold plan forgets the last plans)
        before = _reported(after, 3 * i + 1)
    assert all(n > 0 for n in per_step), per_step
    for i, (after, planned) in enumerate(done):
        assert _differing(planned, _cold(after)) == [], f"step {i}"


def test_without_statuses_an_unaffecting_change_between_is_spliced(
        cloud: CloudSnapshot, spliced: list[tuple[str, bool]]) -> None:
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))
    on3 = {p.binding_host for p in cloud.ports if p.network_id == cloud.networks[3].id}
    on2 = {p.binding_host for p in cloud.ports if p.network_id == cloud.networks[2].id}
    middle = _port_added(before, 2, 20)
    _agents_way(plans, before, middle)
    after = _port_added(middle, 3, 21)
    spliced.clear()
    _agents_way(plans, middle, after)
    chained = {h for h, c in spliced if c}
    assert chained and chained <= on3 - on2, (chained, on3 - on2)
    assert _differing(plans, _cold(after)) == []


def _other_host_port(cloud: CloudSnapshot, net: int) -> Any:
    """An instance port on network ``net`` whose host is not the one :func:`_port_added` adds to."""
    ports = [p for p in _instance_ports(cloud) if p.network_id == cloud.networks[net].id]
    return next(p for p in ports if p.binding_host != ports[0].binding_host)


def _mac_changed(cloud: CloudSnapshot, victim: Any, **kw: Any) -> CloudSnapshot:
    return dataclasses.replace(cloud, ports=tuple(
        dataclasses.replace(p, mac_address="fa:16:3e:77:77:77", **kw) if p is victim else p for p in cloud.ports),
        _index={})


def test_mutation_the_chains_affected_sets_ignored(cloud: CloudSnapshot, spliced: list[tuple[str, bool]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A host a change touched but that was not planned again (its plan lagging one change) must
    not be spliced from its older plan: with the chain believed whatever it says, it is (the first
    change's MAC stays in its l2population flows), and the re-plan differs."""
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))
    victim = _other_host_port(before, 3)
    middle = fresh(_mac_changed(before, victim))
    touched = hosts_affected_by_change(before, middle)
    assert touched is not None
    after = _port_added(middle, 3, 30)
    movers = {victim.binding_host, after.ports[-1].binding_host}
    lagging = next(h for h in touched if h not in movers and h in plan._LAST)
    plans.update(plan_hosts(middle, [h for h in touched if h != lagging], previous=before))
    monkeypatch.setattr(plan, "_unaffected_since", lambda _name, _serial, _now: True)
    spliced.clear()
    _agents_way(plans, middle, after)
    assert (lagging, True) in spliced
    assert lagging in _differing(plans, _cold(after))


def test_mutation_the_statuses_record_lying(cloud: CloudSnapshot, spliced: list[tuple[str, bool]]) -> None:
    """A pass whose "statuses" also changed a remote port's MAC on network 3, recorded as changing
    no plan (``same_plans``): the hosts spliced from their plans on the snapshot before keep the
    old MAC's l2population flow, and the re-plan differs."""
    before = fresh(cloud)
    plans = dict(plan_hosts(before, _names(before)))
    victim = _other_host_port(before, 3)
    changed = _mac_changed(before, victim, status="ACTIVE")
    plan.carry_from(before, changed, changed=[(victim.id, victim, changed.port(victim.id))])
    plan.same_plans(before, changed)  # (the lie)
    after = _port_added(changed, 3, 40)
    spliced.clear()
    _agents_way(plans, changed, after)
    wrong = _differing(plans, _cold(after))
    assert {h for h, c in spliced if c and h != victim.binding_host} & set(wrong)


def _saved_scenario(tmp_path: Path) -> Path:
    """examples/ovsfw.yaml with l2population on and two more computes."""
    text = (EXAMPLES / "ovsfw.yaml").read_text()
    extra = "".join(f"  - name: compute0{i}\n    roles: [compute]\n    management_ip: 10.20.0.1{i}\n"
                    f"    tunnel_ip: 10.20.0.1{i}\n" for i in (3, 4))
    anchor = "    tunnel_ip: 10.20.0.12\n"
    assert "l2population: false" in text and anchor in text
    scenario = tmp_path / "ovsfw4.yaml"
    scenario.write_text(text.replace("l2population: false", "l2population: true").replace(anchor, anchor + extra, 1))
    return scenario


def test_the_living_agents_splice_chained_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                spliced: list[tuple[str, bool]]) -> None:
    """``Agents`` over a cloud changed through the Neutron API (ports made in a group with no
    remote-group rule, on four computes), a pass after each change reporting the new ports'
    statuses: chained splices are taken, and every host's plan after every pass is the cold plan
    of the database's snapshot."""
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app, state_cloud
    from tests.api.api_helpers import AppUser

    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(_saved_scenario(tmp_path))]) == 0
    db, path = state_cloud(None, None)
    app, _scenario = make_app(db, path, "keystone")
    services = app.state.cloud
    agents = Agents(services, state)
    reported: list[int] = []
    real = agent.with_statuses

    def counted(snap: CloudSnapshot, statuses: dict[str, str]) -> CloudSnapshot:
        reported.append(len(statuses))
        return real(snap, statuses)

    monkeypatch.setattr(agent, "with_statuses", counted)
    agents.converge()
    steps: list[tuple[str, CloudSnapshot, dict[str, HostState]]] = []
    with TestClient(app) as c:
        user = AppUser(c, "admin", "admin")
        net = user.call("GET", "/networks?name=net1", status=200)["networks"][0]
        sg = user.call("POST", "/security-groups", {"security_group": {"name": "flat"}}, 201)["security_group"]
        made: list[str] = []

        def step(what: str, method: str, url: str, body: Any, status: int) -> Any:
            got = user.call(method, url, body, status)
            agents.converge()
            steps.append((what, services.snapshot(), {h.name: h for h in agents.hosts}))
            return got

        for i, host in enumerate(["compute01", "compute02", "compute03", "compute04", "compute03", "compute01"]):
            made.append(step(f"port {i} on {host}", "POST", "/ports", {"port": {
                "network_id": net["id"], "name": f"p{i}", "device_owner": "compute:nova", "device_id": f"vm-p{i}",
                "binding:host_id": host, "security_groups": [sg["id"]]}}, 201)["port"]["id"])
        step("moved", "PUT", f"/ports/{made[2]}", {"port": {"binding:host_id": "compute04"}}, 200)
        step("set down", "PUT", f"/ports/{made[1]}", {"port": {"admin_state_up": False}}, 200)
        step("deleted", "DELETE", f"/ports/{made[0]}", None, 204)
    assert reported and all(reported), "no pass reported statuses: the chain is not the agents'"
    chained = [h for h, c in spliced if c]
    assert len(chained) >= 6, spliced
    for what, snap, applied in steps:
        assert _differing(applied, _cold(snap)) == [], what
