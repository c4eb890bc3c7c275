"""Floating-IP port forwarding in the data plane (issue 19): the L3 agent's port-forwarding extension
as planned (the nat chains and rules, exact; the floating IP on qg-), the simulator's DNAT to
ip:port and shifted port ranges, and, end to end, a forwarding made through the services, replanned
and traced from the outside with ``neutrino trace`` and ``neutrino explain``."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

import pytest

from neutrino.cli import main
from neutrino.host.iptables import TableName, format_rules, format_save, parse_save
from neutrino.plan.generation import Generation
from neutrino.plan.l3 import plan_l3
from neutrino.services.snapshot import CloudSnapshot, FloatingIP, PortForwarding
from neutrino.sim.conntrack import Conntrack
from neutrino.sim.netfilter import Hook, HookCtx, Netfilter
from neutrino.sim.packets import TCP, IPv4, TCPFlag
from tests.cloud_setup import SSH_AND_WEB, forward, modern_seed000, state_env
from tests.plan.test_firewall import R_EXT, R_ROUTER, R_VM, R_VM2, reference

FIP = "fip-pf-0000-0000-0000-000000000000"
PF1 = "0d5bc3a1-9f1e-4c0b-8a51-2b7f1c6d9e01"
PF2 = "7aa41c52-0b3d-4f6e-9c27-5e8d3b1a4f02"
PF3 = "c19e2f70-6d4b-4a8c-b3e5-9f0a7c2d1e03"


def _pf(pid: str, proto: str, ext: tuple[int, int], internal: tuple[int, int], ip: str = "10.0.0.6",
        port: str = R_VM2) -> PortForwarding:
    return PortForwarding(pid, FIP, port, ipaddress.ip_address(ip), internal[0], internal[1], ext[0], ext[1], proto)


def cloud(*pfs: PortForwarding, associated: bool = False) -> CloudSnapshot:
    """The reference cloud with a second floating IP, 203.0.113.30, free on router R, forwarding."""
    base = reference()
    fip = FloatingIP(FIP, "p", ipaddress.ip_address("203.0.113.30"), R_EXT, "fip-port-2",
                     R_VM if associated else None, ipaddress.ip_address("10.0.0.5") if associated else None,
                     R_ROUTER, "ACTIVE")
    return replace(base, floating_ips=(*base.floating_ips, fip), port_forwardings=pfs)


def nat(snap: CloudSnapshot, gen: Generation = Generation.MODERN) -> list[str]:
    ns = plan_l3(snap, "network", gen).namespace(f"qrouter-{R_ROUTER}")
    assert ns is not None and ns.iptables is not None
    return format_rules(ns.iptables.table(TableName.NAT)).splitlines()


def qg_addresses(snap: CloudSnapshot) -> list[str]:
    ns = plan_l3(snap, "network").namespace(f"qrouter-{R_ROUTER}")
    assert ns is not None
    qg = next(lk for lk in ns.links or () if lk.name.startswith("qg-"))
    return [str(a.interface) for a in qg.addresses]


def test_the_agents_chains_and_rules_exactly() -> None:
    snap = cloud(_pf(PF1, "tcp", (2222, 2222), (22, 22)), _pf(PF2, "udp", (5000, 5010), (6000, 6010)),
                 _pf(PF3, "tcp", (8080, 8089), (80, 80)))
    lines = nat(snap)
    assert [x for x in lines if "pf" in x] == [
        "-N neutron-l3-agent-fip-pf",
        "-N neutron-l3-agent-pf-0d5bc3a1",
        "-N neutron-l3-agent-pf-7aa41c52",
        "-N neutron-l3-agent-pf-c19e2f70",
        "-A neutron-l3-agent-PREROUTING -j neutron-l3-agent-fip-pf",
        "-A neutron-l3-agent-fip-pf -j neutron-l3-agent-pf-0d5bc3a1",
        "-A neutron-l3-agent-fip-pf -j neutron-l3-agent-pf-7aa41c52",
        "-A neutron-l3-agent-fip-pf -j neutron-l3-agent-pf-c19e2f70",
        "-A neutron-l3-agent-pf-0d5bc3a1 -d 203.0.113.30/32 -p tcp -m tcp --dport 2222 -j DNAT "
        "--to-destination 10.0.0.6:22",
        "-A neutron-l3-agent-pf-7aa41c52 -d 203.0.113.30/32 -p udp -m udp --dport 5000:5010 -j DNAT "
        "--to-destination 10.0.0.6:6000-6010/5000",
        "-A neutron-l3-agent-pf-c19e2f70 -d 203.0.113.30/32 -p tcp -m tcp --dport 8080:8089 -j DNAT "
        "--to-destination 10.0.0.6:80",
    ]
    # the jump comes after the router's own PREROUTING rules (metadata REDIRECT, floating-IP DNAT)
    pre = [x for x in lines if x.startswith("-A neutron-l3-agent-PREROUTING")]
    assert pre[-1] == "-A neutron-l3-agent-PREROUTING -j neutron-l3-agent-fip-pf" and len(pre) == 3
    # the floating IP is on qg- as a /32, after the router's own and the associated floating IP's
    assert qg_addresses(snap) == ["203.0.113.10/24", "203.0.113.20/32", "203.0.113.30/32"]
    # the whole table is what iptables-save would read back
    ns = plan_l3(snap, "network").namespace(f"qrouter-{R_ROUTER}")
    assert ns is not None and ns.iptables is not None
    assert format_save(parse_save(format_save(ns.iptables))) == format_save(ns.iptables)


def test_grizzly_wraps_with_its_own_binary_and_origins_name_the_forwarding() -> None:
    lines = nat(cloud(_pf(PF1, "tcp", (2222, 2222), (22, 22))), Generation.GRIZZLY)
    assert "-A quantum-l3-agent-pf-0d5bc3a1 -d 203.0.113.30/32 -p tcp -m tcp --dport 2222 -j DNAT " \
           "--to-destination 10.0.0.6:22" in lines
    frag = plan_l3(cloud(_pf(PF1, "tcp", (2222, 2222), (22, 22))), "network")
    origin = next(o for o in frag.origins if o.item.endswith("nat/neutron-l3-agent-pf-0d5bc3a1"))
    assert origin.obj == f"port_forwarding {PF1}" and origin.builder == "plan_l3"


def test_no_forwarding_no_change_and_what_is_left_out() -> None:
    plain = cloud()
    assert nat(plain) == nat(reference())
    assert qg_addresses(plain) == qg_addresses(reference()) == ["203.0.113.10/24", "203.0.113.20/32"]
    # icmp (accepted by Neutron's API) has no port: the chain jump only, no rule, no chain
    icmp = nat(cloud(_pf(PF1, "icmp", (1, 1), (1, 1))))
    assert "-A neutron-l3-agent-PREROUTING -j neutron-l3-agent-fip-pf" in icmp
    assert not any("pf-0d5bc3a1" in x for x in icmp)
    # a floating IP associated to a port is planned as one, whatever the rows say
    assoc = nat(cloud(_pf(PF1, "tcp", (2222, 2222), (22, 22)), associated=True))
    assert not any("fip-pf" in x for x in assoc)


def _syn(dport: int) -> IPv4:
    return IPv4(src=ipaddress.IPv4Address("198.51.100.7"), dst=ipaddress.IPv4Address("203.0.113.30"),
                payload=TCP(sport=40000, dport=dport, flags=TCPFlag.SYN))


@pytest.mark.parametrize("to,dport,want", [
    ("10.0.0.6:6000-6010/5000", 5003, 6003),  # the shifted mapping: 5000+k -> 6000+k
    ("10.0.0.6:6000-6010/5000", 5010, 6010),
    ("10.0.0.6:80", 8085, 80),  # a range to one port
    ("10.0.0.6:1000-2000", 1500, 1500),  # a plain range keeps a port inside it
    ("10.0.0.6:1000-2000", 80, 1000),  # and takes its first for one outside
])
def test_the_simulator_dnats_to_ip_and_port(to: str, dport: int, want: int) -> None:
    text = (f"*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
            f"-A PREROUTING -d 203.0.113.30/32 -p tcp -m tcp --dport 1:65535 -j DNAT --to-destination {to}\n"
            "COMMIT\n")
    nf = Netfilter(parse_save(text), Conntrack())
    res = nf.traverse((Hook.PREROUTING,), _syn(dport), HookCtx(in_dev="qg-x"))
    out = res.packet
    assert out.dst == ipaddress.IPv4Address("10.0.0.6")
    assert isinstance(out.payload, TCP) and out.payload.dport == want


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def forwarded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Seed 000 in modern Neutron, without its floating IP; then, through the services, a free
    floating IP with tcp 2222 -> cirros:22 and tcp 8080:8081 -> cirros:80-81, replanned."""
    from neutrino import worldkeep
    from neutrino.deploy import open_cloud, replan

    tmp = tmp_path_factory.mktemp("pf-e2e")
    scenario = modern_seed000(tmp, "pf.yaml", lambda doc: doc["resources"].pop("floating_ips"))
    with state_env(tmp / "state") as state:
        assert main(["up", str(scenario)]) == 0
        c = open_cloud(state)
        vm = next(p for p in c.snapshot().ports if p.device_owner.startswith("compute"))
        _, (ssh, web) = forward(c, vm.id, "172.24.4.230", *SSH_AND_WEB)
        replan(state)
        worldkeep.invalidate(state)
    return state, ssh, web


def test_trace_from_outside_reaches_the_instance_port_and_the_reply_is_translated_back(
        forwarded: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    state, ssh, _web = forwarded
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    capsys.readouterr()
    rc = main(["trace", "outside", "172.24.4.230", "--proto", "tcp", "--dport", "2222", "--level", "detailed"])
    out = capsys.readouterr().out
    assert rc == 0, out
    chain = f"neutron-l3-agent-pf-{ssh['id'][:8]}"
    assert (f"rule: -A {chain} -d 172.24.4.230/32 -p tcp -m tcp --dport 2222 -j DNAT --to-destination "
            "10.1.0.2:22  -> [nat] DNAT") in out
    assert "nat: DNAT 172.24.4.230:2222 -> 10.1.0.2:22  -> PREROUTING, original direction" in out
    assert "reply: cirros  -> SYN-ACK from port 22" in out
    assert "nat: un-DNAT 10.1.0.2:22 -> 172.24.4.230:2222  -> POSTROUTING, reply direction" in out
    assert out.rstrip().endswith("=> the exchange succeeded: the answer came back")
    rc = main(["trace", "outside", "172.24.4.230", "--proto", "tcp", "--dport", "8081", "--json"])
    data = json.loads(capsys.readouterr().out)
    # 8081 is 81 inside (the shifted range); cirros' group opens 22 and 80 only
    assert rc == 1 and data["verdict"]["reason"] == "security group", data["verdict"]
    rc = main(["trace", "outside", "172.24.4.230", "--proto", "tcp", "--dport", "8080"])
    out = capsys.readouterr().out
    assert rc == 0 and "nat: DNAT 172.24.4.230:8080 -> 10.1.0.2:80" in out, out


def test_a_port_not_forwarded_is_answered_by_the_router_itself(
        forwarded: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    state, _ssh, _web = forwarded
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    capsys.readouterr()
    rc = main(["trace", "outside", "172.24.4.230", "--proto", "tcp", "--dport", "2223", "--level", "detailed"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "nat: DNAT" not in out and "cirros" not in out
    assert "172.24.4.230 answered tcp/2223 with a reset (RST)" in out


def test_explain_and_exec_name_the_forwarding(forwarded: Any, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    state, ssh, web = forwarded
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    capsys.readouterr()
    chain = f"neutron-l3-agent-pf-{web['id'][:8]}"
    assert main(["explain", "network", chain]) == 0
    out = capsys.readouterr().out
    assert f"made for port_forwarding {web['id']} by plan_l3; reached from neutron-l3-agent-fip-pf" in out
    assert "--dport 8080:8081 -j DNAT --to-destination 10.1.0.2:80-81/8080" in out
    assert main(["exec", "network", "--", "ip", "netns"]) == 0
    qrouter = next(x.split()[0] for x in capsys.readouterr().out.splitlines() if x.startswith("qrouter-"))
    assert main(["exec", "network", "--", "ip", "netns", "exec", qrouter, "ip", "-4", "addr", "show"]) == 0
    assert "inet 172.24.4.230/32 brd 172.24.4.230 scope global qg-" in capsys.readouterr().out
    assert ssh["id"] != web["id"]


def test_diagnose_offers_the_port_inside_not_the_forwarded_one(
        forwarded: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """8081 is forwarded to 81, which cirros' group does not open: the fix opens 81 (the port the
    packet has when the group sees it), and it is checked to make 8081 work."""
    import json
    state, _ssh, _web = forwarded
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    capsys.readouterr()
    rc = main(["diagnose", "outside", "172.24.4.230", "--proto", "tcp", "--dport", "8081", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1, data
    fix = data["fixes"][0]
    assert "--dst-port 81 " in fix["command"] and "8081" not in fix["command"], fix
    assert data["checked"] is True and fix["works"] is True, data
