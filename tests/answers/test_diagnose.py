"""Issue 13, part 3: ``neutrino diagnose``: where, why, what to change, and a fix checked on a copy.

Each fix is then applied to the cloud itself (the services layer on its database, as the API
would), the hosts planned again, and ``neutrino trace`` run again: it must now get through."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from neutrino import worldkeep
from neutrino.answers.diagnose import Diagnosis, Fix, diagnose
from neutrino.cli import main
from neutrino.deploy import open_cloud, replan
from tests.answers.conftest import ROOT, Cli


def _variant(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
             edit: Callable[[dict[str, Any]], object]) -> pathlib.Path:
    doc = yaml.safe_load((ROOT / "examples" / "seed000.yaml").read_text())
    edit(doc["resources"])
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(doc))
    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(path)]) == 0
    return state


def _no_router_interface(res: dict[str, Any]) -> None:
    """Seed 000 with its router attached to no subnet (and so no floating IP)."""
    res["routers"][0]["interfaces"] = []
    res.pop("floating_ips")


def _apply_for_real(state: pathlib.Path, d: Diagnosis, fixes: tuple[Fix, ...] | None = None) -> None:
    cloud = open_cloud(state)
    for fix in d.fixes if fixes is None else fixes:
        fix.apply(cloud)
    replan(state)
    worldkeep.invalidate(state)


def test_missing_rule_to_the_floating_ip(cli000: Cli, seed000: pathlib.Path) -> None:
    rc, out, _ = cli000("diagnose", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "23")
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == "outside -> 172.24.4.228 (tcp/23): not reachable: security group"
    assert lines[1].startswith("stops at: compute qbr")
    assert lines[2].startswith("why: no rule of security group 'default' (")
    sg = open_cloud(seed000).snapshot().security_groups[0].id
    assert f"change: security group 'default' ({sg})" in out
    assert (f"fix 1: openstack security group rule create --ingress --ethertype IPv4 --protocol tcp "
            f"--dst-port 23 --remote-ip 0.0.0.0/0 {sg}") in out
    # cirros listens on 22 and 80 only: the network now lets tcp/23 through, the instance resets it
    assert "checked on a copy of the cloud: works (the packet now reaches compute cirros; it answers" in out
    # the copy was a copy: the cloud itself still drops it
    rc, out, _ = cli000("trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "23")
    assert rc == 1 and "security group" in out


def test_reachable_says_so(cli000: Cli) -> None:
    rc, out, _ = cli000("diagnose", "outside", "cirros", "--proto", "tcp", "--dport", "22")
    assert rc == 0
    assert out == ("outside -> 172.24.4.228 (tcp/22): reachable: the request arrived and the answer "
                   "came back\n")


def test_seed001_floating_ip_fix_applied_then_traced(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(ROOT / "examples" / "seed001.yaml")]) == 0
    cli = Cli(capsys)
    rc, out, _ = cli("diagnose", "outside", "vm2")
    assert rc == 1
    assert "no rule of security group 'bare'" in out and "of instance 'vm2'" in out
    assert "fix 1: openstack security group rule create --ingress --ethertype IPv4 --protocol icmp " \
           "--remote-ip 0.0.0.0/0 " in out
    assert "checked on a copy of the cloud: works (192.168.100.63: the request arrives" in out
    rc, data = cli.json("diagnose", "outside", "vm2")
    assert data["reachable"] is False and data["fixes"][0]["works"] is True
    d = diagnose(state, "outside", "vm2")
    _apply_for_real(state, d)
    rc, out, _ = cli("trace", "outside", "192.168.100.63")
    assert rc == 0, out
    rc, out, _ = cli("diagnose", "outside", "vm2")
    assert rc == 0 and "reachable" in out


def test_no_router_interface(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    state = _variant(tmp_path, monkeypatch, _no_router_interface)
    cli = Cli(capsys)
    rc, out, _ = cli("trace", "cirros", "8.8.8.8")
    assert rc == 1
    rc, out, _ = cli("diagnose", "cirros", "8.8.8.8")
    assert rc == 1
    assert "fix 1: openstack router add subnet router1 private-subnet" in out
    assert "checked on a copy of the cloud: works (8.8.8.8: the request arrives and the answer comes back)" \
        in out
    _apply_for_real(state, diagnose(state, "cirros", "8.8.8.8"))
    rc, out, _ = cli("trace", "cirros", "8.8.8.8")
    assert rc == 0, out


def test_no_floating_ip(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    state = _variant(tmp_path, monkeypatch, lambda res: res.pop("floating_ips"))
    cli = Cli(capsys)
    rc, out, _ = cli("diagnose", "outside", "cirros", "--proto", "tcp", "--dport", "22", "--json")
    data = json.loads(out)
    assert rc == 1 and data["reachable"] is False and data["verdict"] == "not reachable: no floating IP"
    fix = data["fixes"][0]
    assert fix["command"].startswith("openstack floating ip create --port ")
    assert fix["command"].endswith(" public")
    assert fix["works"] is True
    address = fix["after"].split(":")[0]
    _apply_for_real(state, diagnose(state, "outside", "cirros", proto="tcp", dport=22))
    rc, out, _ = cli("trace", "outside", address, "--proto", "tcp", "--dport", "22")
    assert rc == 0, out


def test_seed004_compute_host_ping_explained_and_asked_from_the_network_host(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Seed 004: 'it is not supposed to be pingable from the compute node': compute-1 sends from its
    eth1 address, which nova-compute-inst-9 does not accept; the controller (10.0.0.1 on br100) can."""
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    assert main(["up", str(ROOT / "examples" / "seed004.yaml")]) == 0
    cli = Cli(capsys)
    rc, out, _ = cli("trace", "host:compute-1", "cirros", "--proto", "tcp", "--dport", "23")
    assert rc == 1
    assert "no rule of security group 'nova-default' (" in out
    assert "(its chain nova-compute-inst-9, bridge br100)" in out
    rc, out, _ = cli("diagnose", "host:compute-1", "cirros")
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == "host:compute-1 -> cirros (icmp): not reachable: security group"
    assert lines[1] == "stops at: compute-1 root"
    assert lines[2].startswith("why: compute-1 has no address in 10.0.0.0/24, so it sends from 192.168.56.202 "
                               "(its eth1, by the route to 10.0.0.2)")
    assert "(ping says 'Operation not permitted')" in lines[2] and "controller-1 (10.0.0.1 on br100)" in lines[2]
    assert "fix 1: neutrino trace host:controller-1 cirros" in lines
    assert "   checked on a copy of the cloud: works (cirros: the request arrives and the answer comes back)" in lines
    # the fix, applied as the user would: ask from the network host
    rc, out, _ = cli("trace", "host:controller-1", "cirros")
    assert rc == 0, out
    rc, out, _ = cli("diagnose", "host:compute-1", "cirros", "--proto", "tcp", "--dport", "22")
    assert "fix 1: neutrino trace host:controller-1 cirros --proto tcp --dport 22" in out


def _seed003(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(ROOT / "examples" / "seed003.yaml")]) == 0
    return state


def test_seed003_no_br102_on_the_sending_compute(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Seed 003, 'But what about this one?': compute-3 has no tenant2 instance, so no br102 and no
    route to 10.1.0.0/24; its default gateway answers host unreachable. An instance of tenant2
    booted there makes the bridge; the trace then needs the group's rule for ICMP."""
    state = _seed003(tmp_path, monkeypatch)
    cli = Cli(capsys)
    rc, out, _ = cli("trace", "VM_7", "VM_6")
    assert rc == 1 and "host unreachable" in out.splitlines()[-1]
    rc, out, _ = cli("diagnose", "VM_7", "VM_6")
    assert rc == 1
    assert "why: compute-3 has no br102, so no route to 10.1.0.0/24 (tenant2): it sends the packet to its " \
           "default gateway 91.207.15.1 by eth1" in out
    assert "change: compute compute-3: no br102 there (no instance of network 'tenant2' (" in out
    assert "fix 1: openstack server create --image cirros --flavor 1 --network tenant2 --availability-zone " \
           "nova:compute-3 tenant2-on-compute-3" in out
    assert "checked on a copy of the cloud: not enough on its own (then: security group at compute-2 br102)" in out
    assert "fix 2: nova secgroup-add-rule tenant2-default icmp -1 -1 10.0.0.8/32" in out
    assert "checked on a copy of the cloud: works (VM_6: the request arrives and the answer comes back)" in out
    # tcp/22 is allowed between the tenants' nets: the bridge is all it takes; applied for real
    d = diagnose(state, "VM_7", "VM_6", proto="tcp", dport=22)
    assert [f.works for f in d.fixes] == [True]
    _apply_for_real(state, d)
    rc, out, _ = cli("exec", "compute-3", "--", "ip route")
    assert "10.1.0.0/24 dev br102" in out
    rc, out, _ = cli("trace", "VM_7", "VM_6", "--proto", "tcp", "--dport", "22")
    assert rc == 0, out


def test_seed003_inter_tenant_by_floating_ip_needs_the_rule_for_the_snat_address(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Seed 003, Scenario 7: VM_1 pings VM_6's floating IP; the packet arrives SNATed to VM_1's
    floating IP, which tenant2's group (tcp from 10.0.0.0/24 only) does not let in."""
    state = _seed003(tmp_path, monkeypatch)
    cli = Cli(capsys)
    rc, out, _ = cli("diagnose", "VM_1", "91.208.23.16")
    assert rc == 1
    assert "why: no rule of security group 'tenant2-default' (" in out and "of instance 'VM_6' (" in out
    assert "(its chain nova-compute-inst-6, bridge br102)" in out
    assert "fix 1: nova secgroup-add-rule tenant2-default icmp -1 -1 91.208.23.11/32" in out
    _apply_for_real(state, diagnose(state, "VM_1", "91.208.23.16"))
    rc, out, _ = cli("trace", "VM_1", "91.208.23.16")
    assert rc == 0, out


def test_no_external_gateway(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    def no_gateway(res: dict[str, Any]) -> None:
        res["routers"][0].pop("gateway")
        res.pop("floating_ips")

    state = _variant(tmp_path, monkeypatch, no_gateway)
    cli = Cli(capsys)
    rc, out, _ = cli("diagnose", "cirros", "8.8.8.8")
    assert rc == 1
    assert "fix 1: openstack router set --external-gateway public router1" in out
    assert "checked on a copy of the cloud: works (8.8.8.8: the request arrives and the answer comes back)" in out
    _apply_for_real(state, diagnose(state, "cirros", "8.8.8.8"))
    rc, out, _ = cli("trace", "cirros", "8.8.8.8")
    assert rc == 0, out


def test_seed002_destination_subnet_without_router_interface(tmp_path: pathlib.Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Seed 002: db's net2 has no router interface, so web's router sends the packet to the
    internet; the fix attaches net2-subnet to web's router."""
    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(ROOT / "examples" / "seed002.yaml")]) == 0
    cli = Cli(capsys)
    rc, out, _ = cli("diagnose", "web", "db")
    assert rc == 1
    assert "fix 1: openstack router add subnet router net2-subnet" in out
    assert "checked on a copy of the cloud: works (db: the request arrives and the answer comes back)" in out
    _apply_for_real(state, diagnose(state, "web", "db"))
    rc, out, _ = cli("trace", "web", "db")
    assert rc == 0, out


# ---------------------------------------------------------------------------- spoofing, port security


def _fresh(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, scenario: str) -> pathlib.Path:
    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(ROOT / "examples" / f"{scenario}.yaml")]) == 0
    return state


def test_seed000_spoofed_source_allowed_address_pair_then_port_security_off(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Grizzly's hybrid firewall: cirros sending from 10.1.0.99 is dropped by its o- chain; an
    allowed address pair lets it out (Havana's s- chain), and so does port security off."""
    state = _fresh(tmp_path, monkeypatch, "seed000")
    cli = Cli(capsys)
    pid = next(p.id for p in open_cloud(state).snapshot().ports if p.device_owner.startswith("compute"))
    rc, out, _ = cli("diagnose", "cirros", "10.1.0.1", "--src-ip", "10.1.0.99")
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == "cirros -> 10.1.0.1 (icmp, from 10.1.0.99): not reachable: anti-spoofing"
    assert lines[1].startswith("stops at: compute qbr")
    assert lines[2].startswith("why: cirros sends from address 10.1.0.99, which is not its port's. The port's "
                               "anti-spoofing rules (on compute, ")
    assert "only the port's own address 10.1.0.2 with its MAC" in lines[2]
    assert "its allowed address pairs (here: none)" in lines[2]
    assert lines[3].startswith(f"change: port {pid} (10.1.0.2) of instance 'cirros'")
    assert lines[4] == f"fix 1: openstack port set --allowed-address ip-address=10.1.0.99 {pid}"
    assert lines[6].startswith("   checked on a copy of the cloud: works (the packet now reaches network/qrouter-")
    assert "the answer goes back to 10.1.0.99, which the sender must hold too" in lines[6]
    assert lines[7] == f"or: openstack port set --no-security-group --disable-port-security {pid}"
    assert lines[9].startswith("   checked on a copy of the cloud: works (the packet now reaches network/qrouter-")
    # the pair, for real: Havana's s- chain lets 10.1.0.99 out with cirros's MAC
    d = diagnose(state, "cirros", "10.1.0.1", src_ip="10.1.0.99")
    _apply_for_real(state, d)
    rc, out, _ = cli("exec", "compute", "--", "iptables -S")
    assert f"-A quantum-openvswi-s{pid[:10]} -s 10.1.0.99/32 -m mac --mac-source " in out
    rc, out, _ = cli("trace", "cirros", "10.1.0.1", "--src-ip", "10.1.0.99")
    assert "=> delivered at network/qrouter-" in out and "anti-spoofing" not in out
    rc, out, _ = cli("diagnose", "cirros", "10.1.0.1", "--src-ip", "10.1.0.99")
    assert rc == 0 and out.startswith("cirros -> 10.1.0.1 (icmp, from 10.1.0.99): reachable: the packet now "
                                      "reaches network/qrouter-")
    # another MAC: the pair with it, or port security off; the alternative, for real
    rc, out, _ = cli("diagnose", "cirros", "10.1.0.1", "--src-mac", "fa:16:3e:00:00:99")
    assert rc == 1
    assert (f"fix 1: openstack port set --allowed-address ip-address=10.1.0.2,mac-address=fa:16:3e:00:00:99 "
            f"{pid}") in out
    assert "allowed address pairs (here: 10.1.0.99/32 (fa:16:3e:" in out
    d = diagnose(state, "cirros", "10.1.0.1", src_mac="fa:16:3e:00:00:99")
    assert [f.works for f in d.fixes] == [True]
    assert [a.works for a in d.alternatives] == [True] and d.alternatives[0].instead_of == 1
    _apply_for_real(state, d, d.alternatives[0].fixes)
    port = open_cloud(state).snapshot().port(pid)
    assert port.port_security_enabled is False and port.security_group_ids == ()
    rc, out, _ = cli("trace", "cirros", "10.1.0.1", "--src-mac", "fa:16:3e:00:00:99")
    assert rc == 0, out
    rc, out, _ = cli("exec", "compute", "--", "iptables -S")
    assert f"quantum-openvswi-o{pid[:10]}" not in out  # no chains for a port without port security


def test_seed001_spoofed_source_pair_needs_the_egress_rule_port_security_off_alone_does_not(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Modern: vm1 from 10.11.11.99. Group 'bare' lets nothing out, so the pair needs an egress
    rule after it; turning port security off is enough on its own. Then by remote group."""
    state = _fresh(tmp_path, monkeypatch, "seed001")
    cli = Cli(capsys)
    snap = open_cloud(state).snapshot()
    pid = next(s for s in snap.servers if s.name == "vm1").port_ids[0]
    bare = next(g.id for g in snap.security_groups if g.name == "bare")
    rc, data = cli.json("diagnose", "vm1", "10.11.11.1", "--src-ip", "10.11.11.99")
    assert rc == 1 and data["reason"] == "anti-spoofing" and data["src_ip"] == "10.11.11.99"
    assert data["src_mac"] is None
    fixes = data["fixes"]
    assert isinstance(fixes, list)
    assert [f["command"] for f in fixes] == [
        f"openstack port set --allowed-address ip-address=10.11.11.99 {pid}",
        f"openstack security group rule create --egress --ethertype IPv4 --protocol icmp --remote-ip 0.0.0.0/0 {bare}"]
    assert [f["works"] for f in fixes] == [False, True]
    alts = data["alternatives"]
    assert isinstance(alts, list) and len(alts) == 1
    assert alts[0]["instead_of"] == 1 and alts[0]["works"] is True
    assert [f["command"] for f in alts[0]["fixes"]] == [
        f"openstack port set --no-security-group --disable-port-security {pid}"]
    # the ARP for the gateway claiming the address: br-int's spoofing table; the pair alone does
    rc, out, _ = cli("diagnose", "vm1", "10.11.11.1", "--proto", "arp", "--src-ip", "10.11.11.99")
    assert rc == 1 and "stops at: compute01 br-int" in out
    assert "fix 1: openstack port set --allowed-address ip-address=10.11.11.99 " in out
    assert "checked on a copy of the cloud: works (10.11.11.1: the request arrives" in out
    # the alternative, for real
    d = diagnose(state, "vm1", "10.11.11.1", src_ip="10.11.11.99")
    _apply_for_real(state, d, d.alternatives[0].fixes)
    rc, out, _ = cli("trace", "vm1", "10.11.11.1", "--src-ip", "10.11.11.99")
    assert "=> delivered at controller/qrouter-" in out and "anti-spoofing" not in out


def test_seed001_rule_by_remote_group(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    state = _fresh(tmp_path, monkeypatch, "seed001")
    cli = Cli(capsys)
    bare = next(g.id for g in open_cloud(state).snapshot().security_groups if g.name == "bare")
    rc, out, _ = cli("diagnose", "vm1", "vm2", "--proto", "tcp", "--dport", "22")
    assert rc == 1
    ingress = "openstack security group rule create --ingress --ethertype IPv4 --protocol tcp --dst-port 22 "
    assert f"fix 2: {ingress}--remote-ip 10.11.11.81/32 {bare}" in out
    assert f"or, instead of fix 2: {ingress}--remote-group bare {bare}" in out
    tail = out.split("or, instead of fix 2:")[1]
    assert "checked on a copy of the cloud: works (vm2: the request arrives and the answer comes back)" in tail
    d = diagnose(state, "vm1", "vm2", proto="tcp", dport=22)
    _apply_for_real(state, d, (d.fixes[0], *d.alternatives[0].fixes))
    rules = [r for g in open_cloud(state).snapshot().security_groups for r in g.rules]
    assert any(r.remote_group_id == bare and r.direction == "ingress" for r in rules)
    rc, out, _ = cli("trace", "vm1", "vm2", "--proto", "tcp", "--dport", "22")
    assert rc == 0, out


# ---------------------------------------------------------------------------- DHCP, metadata, arguments


def test_dhcp_disabled_on_the_subnet(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    def no_dhcp(res: dict[str, Any]) -> None:
        res["networks"][1]["subnets"][0]["enable_dhcp"] = False

    state = _variant(tmp_path, monkeypatch, no_dhcp)
    cli = Cli(capsys)
    rc, out, _ = cli("diagnose", "cirros", "-", "--proto", "dhcp")
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == "cirros -> - (dhcp): not reachable: no reply"
    assert lines[2].startswith("why: subnet 'private-subnet' 10.1.0.0/24 has DHCP disabled (enable_dhcp is "
                               "false), so the DHCP agent runs no dnsmasq for it")
    assert "fix 1: openstack subnet set --dhcp private-subnet" in lines
    assert "   checked on a copy of the cloud: works (dnsmasq answers the DISCOVER with an OFFER)" in lines
    _apply_for_real(state, diagnose(state, "cirros", "-", proto="dhcp"))
    rc, out, _ = cli("trace", "cirros", "-", "--proto", "dhcp")
    assert rc == 0, out


def test_metadata_without_a_router(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    state = _variant(tmp_path, monkeypatch, _no_router_interface)
    cli = Cli(capsys)
    rc, out, _ = cli("diagnose", "cirros", "169.254.169.254", "--proto", "http")
    assert rc == 1
    why = next(line for line in out.splitlines() if line.startswith("why: "))
    assert why.startswith("why: cirros reaches the metadata service at 169.254.169.254 through its default "
                          "gateway, the router: the router's namespace redirects tcp/80 to 169.254.169.254 to the "
                          "metadata proxy listening on port 9697")
    assert "subnet 'private-subnet' 10.1.0.0/24 has no router interface (its gateway 10.1.0.1 is nobody)" in why
    assert "fix 1: openstack router add subnet router1 private-subnet" in out
    assert "checked on a copy of the cloud: works (169.254.169.254: the request arrives" in out
    _apply_for_real(state, diagnose(state, "cirros", "169.254.169.254", proto="http"))
    rc, out, _ = cli("trace", "cirros", "169.254.169.254", "--proto", "http")
    assert rc == 0, out
    assert "9697" in out


@pytest.mark.parametrize(("argv", "error"), [
    (["cirros", "10.1.0.1", "--proto", "arp", "--dport", "22"],
     "neutrino: --dport 22 with --proto arp: arp has no ports (--dport is for tcp and udp)"),
    (["cirros", "-", "--proto", "dhcp", "--dport", "67"],
     "neutrino: --dport 67 with --proto dhcp: dhcp has no ports (--dport is for tcp and udp)"),
    (["cirros", "169.254.169.254", "--proto", "http", "--dport", "81"],
     "neutrino: --dport 81 with --proto http: http is tcp/80 (--dport is for tcp and udp)"),
    (["cirros", "10.1.0.1", "--proto", "tcp", "--dport", "x"], "neutrino: --dport x: a port is a number from 1 to 65535"),
    (["cirros", "10.1.0.1", "--proto", "sctp"], "neutrino: --proto sctp: one of icmp, tcp, udp, http, arp, dhcp"),
    (["outside", "cirros", "--src-ip", "1.2.3.4"],
     "neutrino: outside: the packet's source can be given from an instance only"),
])
def test_bad_combinations_are_one_line_errors(cli000: Cli, argv: list[str], error: str) -> None:
    rc, out, err = cli000("diagnose", *argv)
    assert rc != 0 and out == ""
    assert err == error + "\n"


def test_arp_and_dhcp_reachable_on_seed000(cli000: Cli) -> None:
    rc, out, _ = cli000("diagnose", "cirros", "10.1.0.1", "--proto", "arp")
    assert rc == 0 and out.startswith("cirros -> 10.1.0.1 (arp): reachable")
    rc, data = cli000.json("diagnose", "cirros", "-", "--proto", "dhcp")
    assert rc == 0 and data["reachable"] is True and data["alternatives"] == [] and data["proto"] == "dhcp"


def test_mtu_black_hole_and_local_error_on_seed000(cli000: Cli) -> None:
    """Issue 13's MTU: Grizzly's GRE carries at most 1454 bytes (its local VLAN tag rides inside),
    the instance's eth0 is at 1500: a 1455-byte packet with DF set vanishes at br-tun. diagnose
    says so, names the network, tells the lasting remedy of the era (DHCP option 26), and the
    size that fits is checked; applied (the trace with that size) it succeeds."""
    rc, out, _ = cli000("diagnose", "cirros", "10.1.0.1", "--size", "1427")
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == "cirros -> 10.1.0.1 (icmp): not reachable: MTU"
    assert lines[1] == "stops at: compute br-tun"
    assert "the path carries packets of at most 1454 bytes" in lines[2] and "black hole" in lines[2]
    assert "dhcp-option-force=26,1454" in lines[2]
    assert lines[3].startswith("change: network 'private' (")
    assert "fix 1: neutrino trace cirros 10.1.0.1 --size 1426" in lines
    assert "   checked on a copy of the cloud: works (10.1.0.1: the request arrives and the answer comes back)" in lines
    rc, out, _ = cli000("trace", "cirros", "10.1.0.1", "--size", "1426")
    assert rc == 0, out
    # larger than the instance's own MTU: a local error first, then the tunnel's limit
    rc, out, _ = cli000("diagnose", "cirros", "10.1.0.1", "--size", "1473")
    assert "why: cirros cannot send a 1501-byte packet with DF set: its own interface's MTU is 1500" in out
    assert "fix 1: neutrino trace cirros 10.1.0.1 --size 1472" in out
    assert "fix 2: neutrino trace cirros 10.1.0.1 --size 1426" in out
    rc, _, err = cli000("diagnose", "cirros", "10.1.0.1", "--size", "big")
    assert rc == 2 and err == "neutrino: --size big: a payload size in bytes is a number from 0 to 65535\n"


def test_mtu_fragmentation_needed_on_seed001(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Seed 001 (VXLAN, networks at 1450): a 1500-byte packet from outside meets the router's
    qr- device and gets ICMP fragmentation needed with the next-hop MTU."""
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    assert main(["up", str(ROOT / "examples" / "seed001.yaml")]) == 0
    cli = Cli(capsys)
    rc, out, _ = cli("diagnose", "outside", "192.168.100.63", "--size", "1472")
    assert rc == 1
    assert "why: controller qrouter-" in out and "fragmentation needed (type 3 code 4, next-hop MTU 1450)" in out
    assert "change: router 'router1' (" in out
    assert "fix 1: neutrino trace outside 192.168.100.63 --size 1422" in out


def test_ovs_firewall_driver_drop_named_and_fixed_by_remote_group(tmp_path: pathlib.Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 18's openvswitch firewall: the drop is br-int's table 93; the port and its group are
    named from the flows' origins (no iptables chain to read), and the remote-group rule the
    conjunction flows carry is the alternative; applied, the trace gets through."""
    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(ROOT / "examples" / "ovsfw.yaml")]) == 0
    cli = Cli(capsys)
    rc, out, _ = cli("trace", "plain1", "10.0.0.11", "--proto", "tcp", "--dport", "22")
    assert rc == 1 and "=> dropped: security group at compute01 br-int (no rule of security group 'web' (" in out
    rc, out, _ = cli("diagnose", "plain1", "10.0.0.11", "--proto", "tcp", "--dport", "22")
    assert rc == 1
    assert "why: no rule of security group 'web' (" in out and "of instance 'web1' (" in out
    assert "--dst-port 22 --remote-ip 10.0.0.13/32 " in out and "--dst-port 22 --remote-group plain " in out
    d = diagnose(state, "plain1", "10.0.0.11", proto="tcp", dport=22)
    assert [f.works for f in d.fixes] == [True]
    _apply_for_real(state, d, d.alternatives[0].fixes)
    rc, out, _ = cli("trace", "plain1", "10.0.0.11", "--proto", "tcp", "--dport", "22")
    assert rc == 0, out
