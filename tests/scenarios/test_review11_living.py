"""Review of the patched re-plan (issue #17) end to end: the in-process agents, started as
``neutrino server`` starts them, re-plan after each change made through the HTTP API (the
Neutron API app, Keystone tokens); after each, every host's applied plan (the agents' and the one
saved in the state folder) must equal ``plan_host`` of a fresh snapshot loaded from the database,
with every kept piece of the planners cleared.

The earlier living reviews (tests/scenarios/test_review9_living.py) made their ports in the default
group, whose rules name it as remote, so no re-plan there was a patch. Here the ports are made in a
group created through the API with no remote-group rule (and one with port security off), on
examples/ovsfw.yaml with l2population on (a controller with DHCP and the router, two computes), with
the OVS firewall and with the hybrid one: the computes beside a change are patched (counted, else
this proves nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neutrino import store
from neutrino.agent import Agents
from neutrino.cli import main
from neutrino.host.state import HostState
from neutrino.plan import plan_host
from tests.api.api_helpers import AppUser, wait_until
from tests.plan import replan_kit
from tests.plan.test_replan8_previous import _names
from tests.plan.test_replan_kept import forget_everything, fresh

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
patched = replan_kit.patched


def _saved(state: HostState, folder: Path) -> HostState:
    """``state`` saved in a state folder of its own and loaded back (the saved form of a plan: the OVS
    firewall's ``dl_type=0x0800`` match is loaded back as ``ip``, equal as text, not as a model)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUTRINO_STATE", str(folder))
        store.save_host(state)
        return store.load_host(state.name)


def _stale_hosts(snap: Any, applied: dict[str, HostState], saved: dict[str, HostState], folder: Path) -> list[str]:
    """The hosts whose applied plan (the agents', the saved one) is not the cold plan of ``snap``."""
    forget_everything()
    cold = {h.name: plan_host(fresh(snap), h.name) for h in snap.deployment.hosts}
    assert applied.keys() == cold.keys()
    return [n for n in cold if applied[n] != cold[n] or repr(applied[n]) != repr(cold[n])
            or saved[n] != _saved(cold[n], folder)]


@pytest.mark.parametrize("firewall", ["openvswitch", "iptables_hybrid"])
def test_a_living_cloud_changed_through_the_api_keeps_cold_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 firewall: str, patched: list[str]) -> None:
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app, state_cloud

    text = (EXAMPLES / "ovsfw.yaml").read_text()
    assert "l2population: false" in text and "firewall_driver: openvswitch" in text
    scenario = tmp_path / "ovsfw.yaml"
    scenario.write_text(text.replace("l2population: false", "l2population: true").replace(
        "firewall_driver: openvswitch", f"firewall_driver: {firewall}"))
    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(scenario)]) == 0
    patched.clear()  # (the patches counted from here)

    db, path = state_cloud(None, None)
    app, _scenario = make_app(db, path, "keystone")
    services = app.state.cloud
    agents = Agents(services, state)  # (as ``neutrino server`` runs them: a thread of their own)
    agents.start()
    try:
        with TestClient(app) as c:
            user = AppUser(c, "admin", "admin")
            wait_until(lambda: agents.last is not None, 60, "the agents' first pass")
            assert agents.wait(timeout=60)
            net = user.call("GET", "/networks?name=net1", status=200)["networks"][0]
            sg = user.call("POST", "/security-groups", {"security_group": {"name": "flat"}},
                           201)["security_group"]
            user.call("POST", "/security-group-rules", {"security_group_rule": {
                "security_group_id": sg["id"], "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                "port_range_min": 8080, "port_range_max": 8080}}, 201)
            made: list[str] = []
            steps: list[tuple[str, Any, dict[str, HostState], dict[str, HostState]]] = []

            def step(what: str, method: str, path: str, body: Any, status: int) -> Any:
                got = user.call(method, path, body, status)
                assert agents.wait(timeout=60), what
                assert agents.wait(timeout=60), what  # (a pass the statuses it reported started)
                # (compared at the end: clearing the planners' kept pieces now would keep the next
                # pass from patching anything)
                snap = services.snapshot()
                steps.append((what, snap, {h.name: h for h in agents.hosts},
                              {n: store.load_host(n) for n in _names(snap)}))
                return got

            for i, host in enumerate(["compute01", "compute02", "compute01"]):
                made.append(step(f"port {i} created on {host}", "POST", "/ports", {"port": {
                    "network_id": net["id"], "name": f"flat{i}", "device_owner": "compute:nova",
                    "device_id": f"vm-flat{i}", "binding:host_id": host, "security_groups": [sg["id"]]}},
                    201)["port"]["id"])
            step("address changed", "PUT", f"/ports/{made[1]}", {"port": {"fixed_ips": [
                {"subnet_id": net["subnets"][0], "ip_address": "10.0.0.77"}]}}, 200)
            step("address pair", "PUT", f"/ports/{made[2]}", {"port": {
                "allowed_address_pairs": [{"ip_address": "10.0.0.99", "mac_address": "fa:16:3e:bb:bb:bb"}]}}, 200)
            step("set down", "PUT", f"/ports/{made[1]}", {"port": {"admin_state_up": False}}, 200)
            step("unbound", "PUT", f"/ports/{made[0]}", {"port": {"binding:host_id": ""}}, 200)
            step("MAC changed", "PUT", f"/ports/{made[0]}", {"port": {"mac_address": "fa:16:3e:7e:00:01"}}, 200)
            step("bound again", "PUT", f"/ports/{made[0]}", {"port": {"binding:host_id": "compute02"}}, 200)
            step("moved", "PUT", f"/ports/{made[2]}", {"port": {"binding:host_id": "compute02"}}, 200)
            step("port security off", "PUT", f"/ports/{made[1]}", {"port": {
                "port_security_enabled": False, "security_groups": [], "allowed_address_pairs": []}}, 200)
            step("deleted", "DELETE", f"/ports/{made[0]}", None, 204)
    finally:
        agents.stop()
    assert agents.errors == []
    assert len(steps) == 12
    stale = [(what, _stale_hosts(snap, applied, saved, tmp_path / "cold")) for what, snap, applied, saved in steps]
    assert [(what, hosts) for what, hosts in stale if hosts] == []
    # (a pass after one that reported port statuses patches nothing: its ``previous`` is the statuses'
    # snapshot, the hosts' last plans are on the one before; the patches here are the first port's,
    # the address pair's and the port set down's)
    assert len(patched) >= 3, "the passes hardly patched a host: this proves little"
