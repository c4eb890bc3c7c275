"""Seed 003 (nova-network VlanManager, multi-host, "Six Scenarios"), end to end:
examples/seed003.yaml is created through the API, every host is planned, and what `neutrino exec`
answers is held against the seed's claims (003_eed1d18a3248d01a.txt): per-host gateways and
dnsmasq, the bridges' routes, the routing_source_ip SNAT, the floating IPs, and networks set up
only where their instances are."""

from __future__ import annotations

import pathlib
import re

import pytest

from neutrino.errors import NotFound
from tests.scenarios.common import ask
from tests.seeds import between, excerpt

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed003.yaml"
NB = "\u00a0"




def seed_route(first: str) -> str:
    """A route line of the seed, its page spacing (two spaces, one of them non-breaking) restored."""
    return " ".join(excerpt(3, first).replace(NB, " ").split())


@pytest.mark.parametrize(("host", "br100", "br102"), [("compute-1", "10.0.0.1", "10.1.0.1"),
                                                      ("compute-2", "10.0.0.5", "10.1.0.5")])
def test_bridge_routes_per_host(cloud, host, br100, br102):
    """003 Scenario 5 NOTE: ``10.0.0.0/24 dev br100  proto kernel  scope link`` and
    ``10.1.0.0/24 dev br102  proto kernel  scope link``; each host's bridges hold its own gateway
    (Scenario 1: 10.0.0.1 left, 10.0.0.5 right; Scenario 6: 10.1.0.1 left, 10.1.0.5 right)."""
    lines = [" ".join(ln.split()) for ln in ask(cloud[host], "ip route").splitlines()]
    assert f"{seed_route('10.0.0.0/24 dev br100')} src {br100}" in lines
    assert f"{seed_route('10.1.0.0/24 dev br102')} src {br102}" in lines


@pytest.mark.parametrize(("host", "listen", "mine", "others"), [
    ("compute-1", "10.0.0.1", ("vm-1", "vm-2"), ("vm-4", "vm-5", "vm-7")),
    ("compute-2", "10.0.0.5", ("vm-4", "vm-5"), ("vm-1", "vm-2", "vm-7"))])
def test_dnsmasq_per_host(cloud, host, listen, mine, others):
    """003 Scenario 1: "The dnsmasq server listens on the address of br100 (“–listen-address 10.0.0.1”).
    It also has a static lease configured for VM_1" (and 10.0.0.5 / VM_4 on the other host)."""
    assert f"listen-address {listen}" in excerpt(3, f"listen-address {listen}").replace("\u2013", "")
    ps = ask(cloud[host], "ps aux | grep nova-br100.pid")
    assert re.findall(r"--listen-address=(\S+)", ps) == [listen]
    leases = ask(cloud[host], "cat /var/lib/nova/networks/nova-br100.conf")
    names = [ln.split(",")[1].removesuffix(".novalocal") for ln in leases.splitlines()]
    assert sorted(names) == list(mine) and not set(names) & set(others)
    if host == "compute-1":  # VM_1 "an instance address: 10.0.0.3"; VM_4 10.0.0.6 on the right
        assert any(ln.endswith(",vm-1.novalocal,10.0.0.3") for ln in leases.splitlines())
    else:
        assert any(ln.endswith(",vm-4.novalocal,10.0.0.6") for ln in leases.splitlines())


def test_routing_source_ip_snat(cloud):
    """003 Scenario 2: ``nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 91.207.15.105`` (the
    left host's eth1, its routing_source_ip); each host SNATs the ranges it serves to its own eth1."""
    seed = "-A " + between(3, "nova-network-snat -s 10.0.0.0/24", " The setting")
    assert seed in ask(cloud["compute-1"], "iptables -t nat -S").splitlines()
    right = ask(cloud["compute-2"], "iptables -t nat -S").splitlines()
    assert "-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 91.207.15.106" in right
    assert "-A nova-network-snat -s 10.1.0.0/24 -j SNAT --to-source 91.207.15.106" in right


@pytest.mark.parametrize(("host", "floating", "fixed"), [("compute-1", "91.208.23.11", "10.0.0.3"),
                                                         ("compute-2", "91.208.23.16", "10.1.0.4")])
def test_floating_ips(cloud, host, floating, fixed):
    """003 Scenario 7: "tenant1: VM_1: 91.208.23.11", "tenant2: VM_6: 91.208.23.16" — "attached as
    secondary IP addresses to eth1 interfaces on compute nodes", DNAT in (10.1.0.4 for VM_6) and SNAT
    out (10.0.0.3 -> 91.208.23.11), each on the instance's own host only."""
    assert floating in excerpt(3, floating)
    assert f"inet {floating}/32 scope global eth1" in ask(cloud[host], "ip addr show eth1")
    nat = ask(cloud[host], "iptables -t nat -S").splitlines()
    assert f"-A nova-network-PREROUTING -d {floating}/32 -j DNAT --to-destination {fixed}" in nat
    assert f"-A nova-network-OUTPUT -d {floating}/32 -j DNAT --to-destination {fixed}" in nat
    assert f"-A nova-network-float-snat -s {fixed}/32 -j SNAT --to-source {floating}" in nat
    for other in set(cloud) - {host}:
        assert floating not in ask(cloud[other], "iptables -t nat -S")


def test_vlan_bridges(cloud):
    """003 Scenario 4: br100 bridges vlan100 (802.1Q tag 100 on eth0) with VM_1's and VM_2's vnets;
    br102 bridges vlan102 with VM_3's."""
    compute = cloud["compute-1"]
    rows = " ".join(ask(compute, "brctl show").split())
    assert re.search(r"br100 8000\.\w+ no vlan100 vnet\d vnet\d", rows)
    assert re.search(r"br102 8000\.\w+ no vlan102 vnet\d", rows)
    assert "vlan100@eth0" in ask(compute, "ip link show vlan100")


def test_no_tenant2_instance_no_br102(cloud):
    """003 "But what about this one?": on a host with no tenant2 instance "there is no br102 yet" (and
    no vlan102), so no route to 10.1.0.0/24 and no SNAT for it."""
    compute = cloud["compute-3"]
    for dev in ("br102", "vlan102"):
        with pytest.raises(NotFound):
            ask(compute, f"ip link show {dev}")
    assert "10.1.0.0/24" not in ask(compute, "ip route")
    assert "10.1.0.0/24" not in ask(compute, "iptables -t nat -S")
    assert [ln.split()[0] for ln in ask(compute, "brctl show").splitlines()[1:] if not ln.startswith("\t")] == ["br100"]

