"""Issue #17, fifth round (replan5): the DHCP networks each host serves are found from each
network's DHCP ports gathered in one pass (``_served_by_host`` read every port of every network in
turn). The same answer as that scan, written out here as it was, on a cloud with several DHCP ports
on a network (two hosts, the same host twice), a reserved one, an unbound one, networks scheduled
to DHCP agents (a host among them and not), and a network without a DHCP subnet; and a
re-plan of the network host is still its cold plan."""

from __future__ import annotations

import dataclasses

from neutrino.plan import dhcp
from neutrino.plan.dhcp import RESERVED_DHCP_PORT, _dhcp_subnets, _served_by_host, plan_dhcp
from neutrino.services.snapshot import CloudSnapshot, Network, Port
from tests.plan.benchmod import plan_bench
from tests.plan.test_replan_kept import forget_everything, fresh


def _scanned(cloud: CloudSnapshot) -> dict[str, tuple[tuple[Network, Port], ...]]:
    net_host = cloud.deployment.network_host()
    out: dict[str, list[tuple[Network, Port]]] = {}
    for net in cloud.networks:
        if not _dhcp_subnets(cloud, net):
            continue
        default = net.dhcp_hosts[0] if net.dhcp_hosts else net_host.name if net_host is not None else ""
        hosts: set[str] = set()
        for port in cloud.ports_on_network(net.id):
            host = port.binding_host or default
            if port.device_owner != "network:dhcp" or port.device_id == RESERVED_DHCP_PORT or host in hosts:
                continue
            if not net.dhcp_hosts or host in net.dhcp_hosts:
                out.setdefault(host, []).append((net, port))
                hosts.add(host)
    return {host: tuple(served) for host, served in out.items()}


def _cloud() -> CloudSnapshot:
    base: CloudSnapshot = plan_bench().build(6, 30, 6)
    nets = list(base.networks)
    dhcp_ports = {p.network_id: p for p in base.ports if p.device_owner == "network:dhcp"}
    extra = []
    n0, n1, n2, n3, n4 = (n.id for n in nets[:5])
    # n0: a second DHCP port on compute0001, and a third on the network host again (left out)
    extra.append(dataclasses.replace(dhcp_ports[n0], id="dhcp-n0-b", binding_host="compute0001",
                                     mac_address="fa:16:3e:7e:00:01"))
    extra.append(dataclasses.replace(dhcp_ports[n0], id="dhcp-n0-c", mac_address="fa:16:3e:7e:00:02"))
    # n1: scheduled to compute0002 and the network host; its port unbound plus one on compute0002
    nets[1] = dataclasses.replace(nets[1], dhcp_hosts=("compute0002", "network"))
    extra.append(dataclasses.replace(dhcp_ports[n1], id="dhcp-n1-b", binding_host="compute0002",
                                     mac_address="fa:16:3e:7e:00:03"))
    # n2: its DHCP port reserved (the agent was removed), another bound to compute0003
    extra.append(dataclasses.replace(dhcp_ports[n2], id="dhcp-n2-b", binding_host="compute0003",
                                     mac_address="fa:16:3e:7e:00:04"))
    # n3: scheduled to compute0004 only, its port bound to the network host (not served there)
    nets[3] = dataclasses.replace(nets[3], dhcp_hosts=("compute0004",))
    ports = [dataclasses.replace(p, binding_host="") if p.id == dhcp_ports[n1].id else
             dataclasses.replace(p, device_id=RESERVED_DHCP_PORT) if p.id == dhcp_ports[n2].id else p
             for p in base.ports]
    # n4: no DHCP subnet
    subnets = tuple(dataclasses.replace(s, enable_dhcp=False) if s.network_id == n4 else s for s in base.subnets)
    ports[3:3] = extra  # among the other ports
    return fresh(base, networks=tuple(nets), subnets=subnets, ports=tuple(ports))


def test_served_networks_are_the_scan() -> None:
    cloud = _cloud()
    got = _served_by_host(cloud)
    assert got == _scanned(cloud)
    served = {h: [(n.name, p.id) for n, p in v] for h, v in got.items()}
    assert ("net0", "dhcp-n0-b") in served["compute0001"]
    # the unbound port goes to the first scheduled host, which then skips its own second port
    assert [n for n, _p in served["compute0002"]] == ["net1"] and ("net1", "dhcp-n1-b") not in served["compute0002"]
    assert not any(n == "net1" for n, _p in served["network"])
    assert ("net2", "dhcp-n2-b") in served["compute0003"]
    assert not any(n == "net2" for n, _p in served["network"]) and not any(n == "net4" for n, _p in served["network"])
    assert not any(n == "net3" for v in served.values() for n, _p in v)
    assert [p for n, p in served["network"] if n == "net0"] == [next(
        p.id for p in cloud.ports if p.device_owner == "network:dhcp" and p.network_id == cloud.networks[0].id)]


def test_a_replanned_network_host_is_its_cold_plan() -> None:
    cloud = _cloud()
    first = {h: plan_dhcp(cloud, h) for h in ("network", "compute0001", "compute0002")}
    again = fresh(cloud)
    replanned = {h: plan_dhcp(again, h) for h in first}
    forget_everything()
    assert not dhcp._SERVED.kept
    for h, state in replanned.items():
        cold = plan_dhcp(fresh(cloud), h)
        assert state == cold == first[h] and repr(state) == repr(cold)
    assert len(first["network"].namespaces) == 2 and first["compute0001"].namespaces and first["compute0002"].namespaces
