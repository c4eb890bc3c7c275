"""Distributed routers planned (issue 18): examples/dvr.yaml's compute01 (app1 with a floating IP)
and network node (dvr_snat), device by device, rule by rule and flow by flow in the formats
Neutron's DVR agents leave (dvr_local_router, dvr_fip_ns, dvr_edge_router, ovs_dvr_neutron_agent)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from neutrino.cli import main
from neutrino.host.iproute_link import format_ip_addr
from neutrino.host.iproute_route import format_ip_rule, format_route
from neutrino.host.iptables import TableName, format_rule
from neutrino.host.openflow import format_add_flow
from neutrino.host.state import HostState, NamespaceState
from neutrino.plan import dvr, hosts_affected_by_port
from neutrino.services.snapshot import CloudSnapshot, Port
from tests.cloud_setup import state_env

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "dvr.yaml"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dvrplan")


@pytest.fixture(scope="module")
def up(state: Path):  # noqa: ANN201 - deploy's result
    from neutrino.deploy import bring_up

    with state_env(state):
        return bring_up(SCENARIO)


def _host(up, name: str) -> HostState:  # noqa: ANN001
    return next(h for h in up.hosts if h.name == name)


def _namespace(h: HostState, name: str) -> tuple[NamespaceState, str]:
    """The host's namespace ``name`` (asserted there, with its links) and its ``ip addr``."""
    ns = h.namespace(name)
    assert ns is not None and ns.links is not None
    return ns, format_ip_addr(ns.links)


def _port(cloud: CloudSnapshot, owner: str, **where: str) -> Port:
    return next(p for p in cloud.ports if p.device_owner == owner
                and all(getattr(p, k) == v for k, v in where.items()))


def _by_name(cloud: CloudSnapshot, kind: str, name: str) -> str:
    return next(x.id for x in getattr(cloud, kind) if x.name == name)


def _flows(h: HostState, bridge: str) -> list[str]:
    bf = h.ovs.flows_of(bridge)
    assert bf is not None and bf.flows is not None
    return [format_add_flow(f) for f in bf.flows.flows]


def _ofport(h: HostState, bridge: str, name: str) -> int:
    bf = h.ovs.flows_of(bridge)
    assert bf is not None and bf.ports is not None
    return next(int(p.number) for p in bf.ports.ports if p.name == name)  # type: ignore[arg-type]


def test_compute_with_a_floating_ip_has_qrouter_and_fip_namespaces(up) -> None:  # noqa: ANN001
    cloud: CloudSnapshot = up.cloud
    (router,) = cloud.routers
    assert router.distributed
    h = _host(up, "compute01")
    ext = router.gateway.network_id
    qr_ns, fip_ns = f"qrouter-{router.id}", f"fip-{ext}"
    assert sorted(n.name for n in h.netns_list or ()) == [fip_ns, qr_ns]
    rid = router.id
    rfp, fpr = f"rfp-{rid[:10]}", f"fpr-{rid[:10]}"
    rfp_ip, fpr_ip = dvr.link_local_pair(cloud, router)
    assert rfp_ip in ipaddress.ip_network("169.254.64.0/18") and int(rfp_ip) % 2 == 0 and fpr_ip == rfp_ip + 1
    app_sub = cloud.subnet(_by_name(cloud, "subnets", "app-subnet"))
    db_sub = cloud.subnet(_by_name(cloud, "subnets", "db-subnet"))
    (fip,) = cloud.floating_ips
    qr_app = _port(cloud, "network:router_interface_distributed", network_id=app_sub.network_id)
    qr_db = _port(cloud, "network:router_interface_distributed", network_id=db_sub.network_id)
    sg_app = _port(cloud, "network:router_centralized_snat", network_id=app_sub.network_id)
    sg_db = _port(cloud, "network:router_centralized_snat", network_id=db_sub.network_id)
    fg = _port(cloud, "network:floatingip_agent_gateway", binding_host="compute01")

    q, text = _namespace(h, qr_ns)
    # the same qr- devices (MAC, IP) as on every host, the rfp- end holding the floating IP
    assert f"qr-{qr_app.id[:11]}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450" in text
    assert f"link/ether {qr_app.mac_address} brd ff:ff:ff:ff:ff:ff" in text
    assert f"inet 10.0.1.1/24 brd 10.0.1.255 scope global qr-{qr_app.id[:11]}" in text
    assert f"link-netns {fip_ns}" in text
    assert f"inet {rfp_ip}/31 scope global {rfp}" in text  # a /31 has no broadcast address
    assert f"inet 172.24.4.50/32 brd 172.24.4.50 scope global {rfp}" in text
    # policy routing: the floating IP's fixed address to table 16, each subnet to the SNAT port
    app_n, db_n = int(ipaddress.ip_address("10.0.1.1")), int(ipaddress.ip_address("10.0.2.1"))
    assert format_ip_rule(q.rules or ()) == (
        "0:\tfrom all lookup local\n"
        "32766:\tfrom all lookup main\n"
        "32767:\tfrom all lookup default\n"
        "32768:\tfrom 10.0.1.11 lookup 16\n"
        f"{app_n}:\tfrom 10.0.1.1/24 lookup {app_n}\n"
        f"{db_n}:\tfrom 10.0.2.1/24 lookup {db_n}\n")
    routes = [format_route(r).strip() for r in q.routes or ()]
    assert f"default via {fpr_ip} dev {rfp} table 16" in routes
    assert f"default via {sg_app.fixed_ips[0].ip_address} dev qr-{qr_app.id[:11]} table {app_n}" in routes
    assert f"default via {sg_db.fixed_ips[0].ip_address} dev qr-{qr_db.id[:11]} table {db_n}" in routes
    assert not any(r.startswith("default") and "table" not in r for r in routes)  # no gateway in qrouter
    assert {str(n.address) for n in q.neighbours or () if "PERMANENT" in n.states} >= {
        "10.0.1.11", "10.0.2.12", str(sg_app.fixed_ips[0].ip_address)}
    assert q.iptables is not None
    nat = [format_rule(r) for c in q.iptables.table(TableName.NAT).chains for r in c.rules]
    assert f"-A neutron-l3-agent-PREROUTING -d 172.24.4.50/32 -i {rfp} -j DNAT --to-destination 10.0.1.11" in nat
    assert ("-A neutron-l3-agent-float-snat -s 10.0.1.11/32 -j SNAT --to-source 172.24.4.50 --random-fully"
            in nat)
    assert f"-A neutron-l3-agent-POSTROUTING ! -o {rfp} -m conntrack ! --ctstate DNAT -j ACCEPT" in nat
    assert not any("--to-source 172.24.4.10" in r for r in nat)  # SNAT is the network node's

    f, ftext = _namespace(h, fip_ns)
    assert f"fg-{fg.id[:11]}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500" in ftext
    assert f"inet {fg.fixed_ips[0].ip_address}/24 brd 172.24.4.255 scope global fg-{fg.id[:11]}" in ftext
    assert f"inet {fpr_ip}/31 scope global {fpr}" in ftext
    n = int(fpr_ip)
    assert format_ip_rule(f.rules or ()).splitlines()[-1] == f"{n}:\tfrom all iif {fpr} lookup {n}"
    froutes = [format_route(r).strip() for r in f.routes or ()]
    assert f"172.24.4.50 via {rfp_ip} dev {fpr}" in froutes
    assert f"default via 172.24.4.1 dev fg-{fg.id[:11]} table {n}" in froutes
    assert ("net.ipv4.conf.fg-" + fg.id[:11] + ".proxy_arp", "1") in {(s.key, s.value) for s in f.sysctls or ()}
    assert f.iptables is not None
    raw = [format_rule(r) for c in f.iptables.table(TableName.RAW).chains for r in c.rules]
    assert "-A neutron-l3-agent-PREROUTING -j CT --notrack" in raw
    assert fip.fixed_ip_address == ipaddress.ip_address("10.0.1.11")


def test_network_node_has_the_snat_namespace(up) -> None:  # noqa: ANN001
    cloud: CloudSnapshot = up.cloud
    (router,) = cloud.routers
    h = _host(up, "network")
    names = {n.name for n in h.netns_list or ()}
    assert {f"snat-{router.id}", f"qrouter-{router.id}", f"fip-{router.gateway.network_id}"} <= names
    s, stext = _namespace(h, f"snat-{router.id}")
    gw = _port(cloud, "network:router_gateway")
    sgs = [p for p in cloud.ports if p.device_owner == "network:router_centralized_snat"]
    assert sorted(lk.name for lk in s.links if lk.name != "lo") == sorted(
        [f"qg-{gw.id[:11]}"] + [f"sg-{p.id[:11]}" for p in sgs])
    assert "inet 172.24.4.10/24 brd 172.24.4.255 scope global qg-" in stext
    routes = [format_route(r).strip() for r in s.routes or ()]
    assert f"default via 172.24.4.1 dev qg-{gw.id[:11]}" in routes
    assert s.iptables is not None
    nat = [format_rule(r) for c in s.iptables.table(TableName.NAT).chains for r in c.rules]
    assert f"-A neutron-l3-agent-snat -o qg-{gw.id[:11]} -j SNAT --to-source 172.24.4.10 --random-fully" in nat
    assert not any("qr-" in r for r in nat)


def test_dvr_flows_on_compute01(up) -> None:  # noqa: ANN001
    cloud: CloudSnapshot = up.cloud
    h = _host(up, "compute01")
    me, net_mac, c2_mac = dvr.dvr_mac("compute01"), dvr.dvr_mac("network"), dvr.dvr_mac("compute02")
    assert me.startswith("fa:16:3f:") and len({me, net_mac, c2_mac}) == 3
    app_sub = cloud.subnet(_by_name(cloud, "subnets", "app-subnet"))
    qr_app = _port(cloud, "network:router_interface_distributed", network_id=app_sub.network_id)
    app1 = _port(cloud, "compute:nova", binding_host="compute01")
    patch_int = _ofport(h, "br-tun", "patch-int")
    patch_tun = _ofport(h, "br-int", "patch-tun")
    qvo = _ofport(h, "br-int", f"qvo{app1.id[:11]}")
    tun = _flows(h, "br-tun")
    lvid = next(int(f.split("dl_vlan=")[1].split(",")[0]) for f in tun
                if f.startswith("table=1,priority=1,dl_vlan=") and qr_app.mac_address in f)
    assert f"priority=1,in_port={patch_int} actions=resubmit(,1)" in tun
    assert f"table=1,priority=2,dl_vlan={lvid},dl_dst={qr_app.mac_address} actions=drop" in tun
    assert (f"table=1,priority=1,dl_vlan={lvid},dl_src={qr_app.mac_address} actions=mod_dl_src:{me},resubmit(,2)"
            in tun)
    assert "table=1,priority=0 actions=resubmit(,2)" in tun
    assert f"table=9,priority=1,dl_src={net_mac} actions=output:{patch_int}" in tun
    assert f"table=9,priority=1,dl_src={c2_mac} actions=output:{patch_int}" in tun
    assert "table=9,priority=0 actions=resubmit(,10)" in tun
    assert f"table=22,priority=3,arp,dl_vlan={lvid},arp_tpa=10.0.1.1 actions=drop" in tun
    assert all(not f.startswith("table=4,priority=1,") or f.endswith("resubmit(,9)") for f in tun)
    integ = _flows(h, "br-int")
    assert f"priority=2,in_port={patch_tun},dl_src={c2_mac} actions=resubmit(,1)" in integ
    assert f"priority=5,in_port={patch_tun},dl_dst={me} actions=resubmit(,3)" in integ
    assert (f"table=1,priority=20,dl_vlan={lvid},dl_dst={app1.mac_address} "
            f"actions=mod_dl_src:{qr_app.mac_address},resubmit(,58)") in integ
    assert f"table=60,priority=20,dl_vlan={lvid},dl_dst={app1.mac_address} actions=strip_vlan,output:{qvo}" in integ
    assert "table=1,priority=1 actions=drop" in integ and "table=2,priority=1 actions=drop" in integ


def test_dvr_hosts_are_affected_by_ports_on_the_routers_subnets(up) -> None:  # noqa: ANN001
    cloud: CloudSnapshot = up.cloud
    (router,) = cloud.routers
    assert dvr.router_hosts(cloud, router) == ("network", "compute01", "compute02")
    db1 = _port(cloud, "compute:nova", binding_host="compute02")
    # a port on db's subnet changes every host that has the router (their neighbour entries, flows)
    assert set(hosts_affected_by_port(cloud, db1.id)) == {"network", "compute01", "compute02"}


def test_exec_answers_from_the_planned_namespaces(up, state: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    (router,) = up.cloud.routers
    assert main(["exec", "compute01", "--", "ip", "netns", "exec", f"qrouter-{router.id}", "ip", "rule"]) == 0
    out = capsys.readouterr().out
    assert "32768:\tfrom 10.0.1.11 lookup 16" in out
    assert main(["exec", "compute02", "--", "ip", "netns"]) == 0
    out = capsys.readouterr().out
    assert f"qrouter-{router.id}" in out and "snat-" not in out
