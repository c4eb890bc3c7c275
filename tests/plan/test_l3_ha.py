"""HA routers planned (issue 18): examples/ha.yaml's router1 on two network hosts, keepalived.conf
exactly as Neutron's ``agent/linux/keepalived.py`` writes it, the VIPs on the active host only, the
``state`` file, the ha- device on br-int, and the CLI showing it all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from neutrino.cli import main
from neutrino.host.state import HostState
from neutrino.plan import plan_host
from neutrino.plan.l3_ha import keepalived_conf, master_of, primary_vip
from neutrino.plan.naming import ha_device, router_gateway_device, router_internal_device, router_namespace
from neutrino.services.snapshot import CloudSnapshot, Router

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "ha.yaml"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSnapshot]:
    from neutrino.deploy import bring_up

    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(tmp_path_factory.mktemp("planha")))
    try:
        yield bring_up(SCENARIO).cloud
    finally:
        mp.undo()


def _router(cloud: CloudSnapshot) -> Router:
    return next(r for r in cloud.routers if r.name == "router1")


def _eui64(mac: str) -> str:
    b = [int(x, 16) for x in mac.split(":")]
    return (f"fe80::{b[0] ^ 2:02x}{b[1]:02x}:{b[2]:02x}ff:fe{b[3]:02x}:{b[4]:02x}{b[5]:02x}".replace(":0", ":")
            + "/64")


def test_bindings_vr_id_and_ha_ports(cloud: CloudSnapshot) -> None:
    r = _router(cloud)
    assert r.ha and r.ha_vr_id == 1
    assert [(b.host, b.binding_index, b.ha_state) for b in r.bindings] == [
        ("network1", 1, "active"), ("network2", 2, "standby")]
    ha_ports = [cloud.port(b.ha_port_id or "") for b in r.bindings]
    assert [p.device_owner for p in ha_ports] == ["network:router_ha_interface"] * 2
    assert [str(p.fixed_ips[0].ip_address) for p in ha_ports] == ["169.254.192.1", "169.254.192.2"]
    net = cloud.network(ha_ports[0].network_id)
    assert net.name == f"HA network project {r.project_id}" and net.project_id == ""
    assert master_of(r) == "network1"


def test_keepalived_conf_is_neutrons_text(cloud: CloudSnapshot) -> None:
    r = _router(cloud)
    gw = cloud.port(r.gateway.port_id or "") if r.gateway else None
    assert gw is not None
    qr = cloud.port(r.interface_port_ids[0])
    ha = ha_device(r.bindings[1].ha_port_id or "")
    qg_dev, qr_dev = router_gateway_device(gw.id), router_internal_device(qr.id)
    want = "\n".join([
        "global_defs {",
        "    notification_email_from neutron@openstack.local",
        "    router_id neutron",
        "}",
        "vrrp_instance VR_1 {",
        "    state BACKUP",
        f"    interface {ha}",
        "    virtual_router_id 1",
        "    priority 50",
        "    garp_master_delay 60",
        "    nopreempt",
        "    advert_int 2",
        "    track_interface {",
        f"        {ha}",
        "    }",
        "    virtual_ipaddress {",
        f"        169.254.0.1/24 dev {ha}",
        "    }",
        "    virtual_ipaddress_excluded {",
        f"        10.0.0.1/24 dev {qr_dev} no_track",
        f"        172.24.4.10/24 dev {qg_dev} no_track",
        f"        172.24.4.100/32 dev {qg_dev} no_track",
        *sorted([f"        {_eui64(qr.mac_address)} dev {qr_dev} scope link no_track",
                 f"        {_eui64(gw.mac_address)} dev {qg_dev} scope link no_track"]),
        "    }",
        "    virtual_routes {",
        f"        0.0.0.0/0 via 172.24.4.1 dev {qg_dev} no_track protocol static",
        "    }",
        "}"])
    assert keepalived_conf(cloud, r, ha) == want
    conf = f"/var/lib/neutron/ha_confs/{r.id}/keepalived.conf"
    assert {f.path: f.text for f in plan_host(cloud, "network2").files}[conf] == want  # the file, byte for byte
    assert str(primary_vip(7)) == "169.254.0.7/24"


def _addrs(host: HostState, ns: str, dev: str) -> list[str]:
    (link,) = [lk for lk in host.namespace(ns).links if lk.name == dev]
    return [str(a.interface) for a in link.addresses if a.interface.version == 4]


def test_vips_on_the_active_host_only(cloud: CloudSnapshot) -> None:
    r = _router(cloud)
    ns = router_namespace(r.id)
    qr = router_internal_device(r.interface_port_ids[0])
    qg = router_gateway_device(r.gateway.port_id or "") if r.gateway else ""
    active, standby = plan_host(cloud, "network1"), plan_host(cloud, "network2")
    ha1, ha2 = (ha_device(b.ha_port_id or "") for b in r.bindings)
    assert _addrs(active, ns, ha1) == ["169.254.192.1/18", "169.254.0.1/24"]
    assert _addrs(active, ns, qr) == ["10.0.0.1/24"]
    assert _addrs(active, ns, qg) == ["172.24.4.10/24", "172.24.4.100/32"]
    assert _addrs(standby, ns, ha2) == ["169.254.192.2/18"]
    assert _addrs(standby, ns, qr) == [] and _addrs(standby, ns, qg) == []
    default = [rt for rt in active.namespace(ns).routes if rt.dst is None]
    assert [(str(rt.via), rt.proto) for rt in default] == [("172.24.4.1", "static")]
    assert not [rt for rt in standby.namespace(ns).routes if rt.dst is None]
    files = {f.path: f.text for f in active.files}
    assert files[f"/var/lib/neutron/ha_confs/{r.id}/state"] == "primary"
    assert {f.path: f.text for f in standby.files}[f"/var/lib/neutron/ha_confs/{r.id}/state"] == "backup"
    # both hosts plug the router's devices and their own ha- device into br-int
    for host, ha in ((active, ha1), (standby, ha2)):
        assert host.ovs is not None and host.ovs.show is not None
        names = {p.name for b in host.ovs.show.bridges for p in b.ports}  # type: ignore[union-attr]
        assert {ha, qr, qg} <= names
    assert not plan_host(cloud, "compute1").namespace(ns)


def test_cli_exec_shows_the_keepalived_conf_and_the_namespaces(cloud: CloudSnapshot, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    assert main(["up", str(SCENARIO)]) == 0
    r = next(x for x in __import__("neutrino.deploy", fromlist=["open_cloud"]).open_cloud().snapshot().routers)
    capsys.readouterr()
    assert main(["exec", "network2", "--", "cat", f"/var/lib/neutron/ha_confs/{r.id}/keepalived.conf"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("global_defs {\n") and "    nopreempt\n" in out
    assert re.search(r"interface ha-[0-9a-f]{8}-[0-9a-f]{2}\n", out)
    assert main(["exec", "network2", "--", "ip", "netns"]) == 0
    assert f"qrouter-{r.id}" in capsys.readouterr().out


def test_max_l3_agents_per_router_limits_the_bindings_and_bad_values_are_refused(tmp_path: Path) -> None:
    import yaml

    from neutrino.errors import InvalidInput
    from neutrino.scenarios.model import parse_scenario

    doc = yaml.safe_load(SCENARIO.read_text())
    doc["deployment"]["max_l3_agents_per_router"] = -1
    with pytest.raises(InvalidInput, match="max_l3_agents_per_router must be a whole number"):
        parse_scenario(doc, "ha.yaml")
    doc["deployment"]["max_l3_agents_per_router"] = 1
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(doc))
    from neutrino.deploy import bring_up

    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    try:
        cloud = bring_up(path).cloud
    finally:
        mp.undo()
    r = _router(cloud)
    assert [(b.host, b.ha_state) for b in r.bindings] == [("network1", "active")]
    assert not plan_host(cloud, "network2").namespace(router_namespace(r.id))
