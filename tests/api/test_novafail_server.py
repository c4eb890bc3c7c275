"""A server whose port fails to bind, as Nova (Train) handles it, through the real openstack CLI
against a real server: the compute's ``PortBindingFailed`` reschedules the build to the scheduler's
alternates (``max_attempts`` 3 hosts in all); a host that binds takes the server (ACTIVE there); when
none does, the server is ERROR, without a host, its ports released (the ports Nova made deleted, the
caller's unbound), with the instance fault Nova's conductor (or, for a forced host, its compute)
records: code 500, the message, and the traceback as details for admins only.

The deployment: a controller mapping ``provider``, ``compute1`` and ``compute3`` mapping nothing,
``compute2`` mapping ``edge``. The scheduler's order is fewest servers first, ties by host order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.api_helpers import ADMIN_AND_DEMO, Server, password_token, start_server, stop_server

SCENARIO = """\
name: novafail
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:1000"],
             flat_networks: [provider, edge], network_vlan_ranges: ["physnet9:100:200"],
             firewall_driver: iptables_hybrid, generation: modern}
hosts:
  - {name: controller, roles: [controller, network], management_ip: 10.0.0.1, tunnel_ip: 10.0.0.1,
     bridge_mappings: {provider: br-ex}}
  - {name: compute1, roles: [compute], management_ip: 10.0.0.11, tunnel_ip: 10.0.0.11}
  - {name: compute2, roles: [compute], management_ip: 10.0.0.12, tunnel_ip: 10.0.0.12,
     bridge_mappings: {edge: br-edge}}
  - {name: compute3, roles: [compute], management_ip: 10.0.0.13, tunnel_ip: 10.0.0.13}
""" + ADMIN_AND_DEMO

REASON = "Binding failed for port {}, please check neutron logs for more information."


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("novafail")
    (tmp / "novafail.yaml").write_text(SCENARIO)
    s = start_server(tmp, f"sqlite:///{tmp}/novafail.db", scenario=tmp / "novafail.yaml")
    try:
        yield s
    finally:
        stop_server(s)


@pytest.fixture(scope="module")
def networks(srv: Server) -> dict[str, str]:
    """A VLAN network on ``physnet9`` (no host maps it), a flat one on ``edge`` (compute2 only) and a
    VXLAN one (every host), shared so that the demo project boots on them too, by name."""
    out = {}
    for n, (name, args) in enumerate((
            ("unmapped", ("--provider-network-type", "vlan", "--provider-physical-network", "physnet9",
                          "--provider-segment", "150")),
            ("edge", ("--provider-network-type", "flat", "--provider-physical-network", "edge")),
            ("tenant", ()))):
        out[name] = srv.osc("network", "create", "--share", *args, f"nf-{name}", "-f", "json")["id"]
        srv.osc("subnet", "create", "--network", out[name], "--subnet-range", f"10.7{n}.0.0/24", f"nf-{name}-sub")
    return out


def _show(srv: Server, server: str) -> dict[str, Any]:
    shown: dict[str, Any] = srv.osc("server", "show", server, "-f", "json")
    return shown


def _ports_of(srv: Server, server_id: str) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = srv.osc("port", "list", "--device-id", server_id, "-f", "json")
    return ports


def _compute(srv: Server, version: str = "2.74", token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=f"{srv.base}/compute/v2.1", timeout=30, headers={
        "X-Auth-Token": token or srv.token(), "OpenStack-API-Version": f"compute {version}"})


def _failed_port(message: str) -> str:
    """The port a fault's message names (the last one that failed to bind)."""
    return message.split("Binding failed for port ", 1)[1].split(",", 1)[0]


def test_no_host_binds_the_server_is_error_with_nova_fault(srv: Server, networks: dict[str, str]) -> None:
    """Three hosts tried (the pick and two alternates), none binds: ``MaxRetriesExceeded`` from
    ``populate_retry``; ``server create --wait`` says so and fails; the port Nova made is gone."""
    p = srv.osc("server", "create", "--image", "cirros", "--flavor", "1", "--network", networks["unmapped"],
                "--wait", "nf-nowhere", check=False)
    assert p.returncode == 1
    assert "Error creating server: nf-nowhere" in p.stderr
    shown = _show(srv, "nf-nowhere")
    sid, fault = shown["id"], shown["fault"]
    assert (shown["status"], shown["OS-EXT-STS:vm_state"], shown["OS-EXT-STS:task_state"]) == ("ERROR", "error",
                                                                                                  None)
    assert (shown["OS-EXT-SRV-ATTR:host"], shown["hostId"], shown["OS-EXT-AZ:availability_zone"]) == (None, "", "")
    assert shown["addresses"] == {} and shown["OS-EXT-STS:power_state"] == 0
    port = _failed_port(fault["message"])
    assert fault["code"] == 500
    assert fault["message"] == ("Exceeded maximum number of retries. Exceeded max scheduling attempts 3 for "
                                f"instance {sid}. Last exception: {REASON.format(port)}")
    assert fault["details"].startswith("Traceback (most recent call last):\n")
    assert fault["details"].endswith(f"nova.exception.MaxRetriesExceeded: {fault['message']}\n")
    assert fault["created"].endswith("Z") and len(fault["created"]) == 20
    assert _ports_of(srv, sid) == []
    assert srv.osc("port", "show", port, check=False).returncode == 1  # deleted
    listed = {s["Name"]: s["Status"] for s in srv.osc("server", "list", "-f", "json")}
    assert listed["nf-nowhere"] == "ERROR"
    assert f"Exceeded max scheduling attempts 3 for instance {sid}" in srv.osc("server", "show", "nf-nowhere", "-c",
                                                                              "fault", "-f", "value")


def test_an_alternate_that_binds_takes_the_server(srv: Server, networks: dict[str, str]) -> None:
    """compute1 (the pick) fails to bind ``edge``, compute2 (an alternate) binds it: ACTIVE there, with
    one port, bound by OVS; the first try's port was deleted."""
    made = srv.osc("server", "create", "--image", "cirros", "--flavor", "1", "--network", networks["edge"],
                   "--wait", "nf-edge", "-f", "json")
    assert made["status"] == "ACTIVE"
    shown = _show(srv, made["id"])
    assert shown["OS-EXT-SRV-ATTR:host"] == "compute2" and "fault" not in shown
    [port] = _ports_of(srv, made["id"])
    full = srv.osc("port", "show", port["ID"], "-f", "json")
    assert (full["binding_host_id"], full["binding_vif_type"]) == ("compute2", "ovs")


def test_a_forced_host_is_not_rescheduled(srv: Server, networks: dict[str, str]) -> None:
    """``nova:compute1`` disables the retry: the compute's own fault (the ``RescheduledException``'s
    reason); the caller's port, which the ORM's ``bind`` failed to bind, is unbound again."""
    port = srv.osc("port", "create", "--network", networks["unmapped"], "nf-own-port", "-f", "json")["id"]
    srv.osc("server", "create", "--image", "cirros", "--flavor", "1", "--port", port,
            "--availability-zone", "nova:compute1", "nf-forced")
    shown = _show(srv, "nf-forced")
    assert shown["status"] == "ERROR"
    assert shown["fault"]["message"] == REASON.format(port)
    assert shown["fault"]["details"].endswith(
        f"nova.exception.RescheduledException: Build of instance {shown['id']} was re-scheduled: "
        f"{REASON.format(port)}\n")
    after = srv.osc("port", "show", port, "-f", "json")
    assert (after["device_id"], after["device_owner"], after["binding_host_id"], after["binding_vif_type"]) == \
        ("", "", "", "unbound")


def test_a_requested_host_has_no_alternate(srv: Server, networks: dict[str, str]) -> None:
    """``--host`` (2.74) asks for a destination: retried, but no alternate is left."""
    srv.osc("--os-compute-api-version", "2.74", "server", "create", "--image", "cirros", "--flavor", "1",
            "--network", networks["unmapped"], "--host", "compute3", "nf-asked")
    shown = _show(srv, "nf-asked")
    assert shown["fault"]["message"] == ("Exceeded maximum number of retries. Exhausted all hosts available for "
                                         f"retrying build failures for instance {shown['id']}.")


def test_the_details_are_for_admins(srv: Server, networks: dict[str, str]) -> None:
    """A member sees the fault's code, created and message, not the details (code 500); the admin sees
    all four, in list details too; before 2.16 and at 2.74 alike."""
    token = password_token(srv.base, "demo", "demo")
    with _compute(srv, token=token) as demo, _compute(srv, "2.1") as admin:
        image = demo.get("/images").json()["images"][0]["id"]
        r = demo.post("/servers", json={"server": {"name": "nf-demo", "imageRef": image, "flavorRef": "1",
                                                   "networks": [{"uuid": networks["unmapped"]}]}})
        assert r.status_code == 202, r.text
        sid = r.json()["server"]["id"]
        mine = demo.get(f"/servers/{sid}").json()["server"]
        assert list(mine["fault"]) == ["code", "created", "message"] and mine["fault"]["code"] == 500
        assert "progress" not in mine and "security_groups" not in mine
        theirs = admin.get(f"/servers/{sid}").json()["server"]
        assert list(theirs["fault"]) == ["code", "created", "message", "details"]
        assert {k: theirs["fault"][k] for k in mine["fault"]} == mine["fault"]
        listed = admin.get("/servers/detail", params={"all_tenants": "1"}).json()["servers"]
        assert next(s for s in listed if s["id"] == sid)["fault"] == theirs["fault"]
        assert all("fault" not in s for s in listed if s["status"] == "ACTIVE")
        assert admin.get(f"/servers/{sid}", headers={"OpenStack-API-Version": "compute 2.74"}).json()[
            "server"]["host_status"] == ""


def test_what_an_error_server_refuses_and_its_delete(srv: Server, networks: dict[str, str]) -> None:
    """Interfaces (``check_instance_state``: 409) and the console (``check_instance_host``: 409) of an
    ERROR server; its delete leaves no port behind and frees its name."""
    srv.osc("server", "create", "--image", "cirros", "--flavor", "1", "--network", networks["unmapped"], "nf-gone")
    sid = _show(srv, "nf-gone")["id"]
    with _compute(srv) as c:
        r = c.post(f"/servers/{sid}/os-interface", json={"interfaceAttachment": {"net_id": networks["tenant"]}})
        assert (r.status_code, r.json()["conflictingRequest"]["message"]) == (
            409, f"Cannot 'attach_interface' instance {sid} while it is in vm_state error")
        r = c.delete(f"/servers/{sid}/os-interface/{sid}")
        assert (r.status_code, r.json()["conflictingRequest"]["message"]) == (
            409, f"Cannot 'detach_interface' instance {sid} while it is in vm_state error")
        r = c.post(f"/servers/{sid}/action", json={"os-getConsoleOutput": {"length": 5}})
        assert (r.status_code, r.json()["conflictingRequest"]["message"]) == (409, f"Instance {sid} is not ready")
    srv.osc("server", "delete", "--wait", "nf-gone")
    assert all(s["Name"] != "nf-gone" for s in srv.osc("server", "list", "-f", "json"))
    assert _ports_of(srv, sid) == []


def test_a_server_that_binds_shows_no_fault(srv: Server, networks: dict[str, str]) -> None:
    """The VXLAN network binds anywhere: ACTIVE on the pick, as before (progress, host, no fault)."""
    made = srv.osc("server", "create", "--image", "cirros", "--flavor", "1", "--network", networks["tenant"],
                   "--wait", "nf-fine", "-f", "json")
    shown = _show(srv, made["id"])
    assert shown["status"] == "ACTIVE" and "fault" not in shown and shown["progress"] == 0
    assert shown["OS-EXT-SRV-ATTR:host"] in ("compute1", "compute3") and shown["OS-EXT-AZ:availability_zone"] == "nova"
    [port] = _ports_of(srv, made["id"])
    assert srv.osc("port", "show", port["ID"], "-f", "json")["binding_vif_type"] == "ovs"


def test_the_fault_is_kept_across_a_restart(srv: Server, networks: dict[str, str], tmp_path: Path) -> None:
    """The database read by a new server process: the ERROR server and its fault as they were."""
    before = _show(srv, "nf-nowhere")
    home = srv.clouds_yaml.parent  # the module's folder: its scenario and database
    again = start_server(tmp_path, f"sqlite:///{home}/novafail.db", scenario=home / "novafail.yaml")
    try:
        after = _show(again, "nf-nowhere")
    finally:
        stop_server(again)
    assert (after["status"], after["fault"]) == ("ERROR", before["fault"])
