"""Seed 004 (nova-network FlatDHCPManager, single-host), end to end: examples/seed004.yaml is
created through the API, every host is planned, and what `neutrino exec` answers is held against
the seed's own captures (004_8fadbe0c3fa10b22.txt). The page lost its line breaks (and carries
non-breaking spaces), so the captures are cut with ``between`` and re-broken with
``split_run_together`` / ``restore_route_n_breaks`` / ``restore_brctl_breaks``."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.errors import NotFound
from neutrino.host.bridge import restore_brctl_breaks
from neutrino.host.dnsmasq import parse_ps_line
from neutrino.host.iproute import restore_route_n_breaks
from neutrino.host.iptables import split_run_together
from tests.scenarios.common import ask
from tests.seeds import between, squash

SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed004.yaml"
NB = "\u00a0"


def nb(s: str) -> str:
    """Seed 004's captures carry non-breaking spaces where the shell printed spaces."""
    return s.replace(" ", NB)




def test_controller_route_n(cloud):
    """004 "Routes: openstack@controller-1:~$ route -n": default via 192.168.56.101 metric 100,
    10.0.0.0/24 on br100, 169.254.0.0/16 metric 1000 and 192.168.56.0/24 on eth1."""
    seed = restore_route_n_breaks(between(4, nb("Kernel IP routing table"), "\n"))
    assert squash(ask(cloud["controller-1"], "route -n")) == squash(seed)


def test_controller_brctl_show(cloud):
    """004 "Bridges": ``br100 8000.0800278f87fa no eth2`` (the bridge takes eth2's MAC)."""
    seed = restore_brctl_breaks(between(4, nb("bridge name"), "\n"))
    assert squash(ask(cloud["controller-1"], "brctl show")) == squash(seed)


@pytest.mark.parametrize(("occurrence", "table"), [(0, "filter"), (1, "nat")])
def test_controller_iptables(cloud, occurrence, table):
    """004 ``iptables -t filter -S`` and ``sudo iptables -t nat -S`` on controller-1, line for line
    (the seed: "All other things didn't change (iptables, routes etc.)" once the VM runs)."""
    seed = split_run_together(between(4, "-S-P", "\n", occurrence=occurrence)[2:])
    assert ask(cloud["controller-1"], f"iptables -t {table} -S").splitlines() == seed.splitlines()


def test_controller_dnsmasq(cloud):
    """004 "Dnsmasq running" (``ps aux | grep dnsmasq``: the child's command line) and
    ``cat /var/lib/nova/networks/nova-br100.conf``: ``fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2``."""
    seed = parse_ps_line(between(4, nb("nobody    2729"), nb("root      2730")))
    (line,) = ask(cloud["controller-1"], "ps aux | grep dnsmasq").splitlines()
    planned = parse_ps_line(line)
    assert (planned.user, planned.argv) == (seed.user, seed.argv)
    hosts_file = ask(cloud["controller-1"], "cat /var/lib/nova/networks/nova-br100.conf")
    assert hosts_file.strip() == between(4, "fa:16:3e:2c:e8:ec,cirros", "\n").strip()


def test_compute_iptables_after_the_vm(cloud):
    """004 "Some more changes happened to iptables" on compute-1 (``sudo iptables -S``), without the
    seed's "... (virbr0 stuff omitted) ..." (libvirt's rules, not OpenStack's)."""
    seed = split_run_together(between(4, "-S-P", "\n", occurrence=2)[2:])
    want = [ln for ln in seed.splitlines() if not ln.startswith("...")]
    assert ask(cloud["compute-1"], "iptables -S").splitlines() == want


def test_compute_bridge_and_vnet0(cloud):
    """004 "Compute node, VM created": ``vnet0 … master br100 … qlen 500 link/ether fe:16:3e:2c:e8:ec``
    in br100 with eth2; br100 has no address on a compute node."""
    compute = cloud["compute-1"]
    assert "link/ether fe:16:3e:2c:e8:ec" in ask(compute, "ip link show vnet0")
    assert "master br100" in ask(compute, "ip link show vnet0")
    assert squash(ask(compute, "brctl show")) == squash(
        "bridge name bridge id STP enabled interfaces br100 8000.080027158517 no eth2 vnet0")
    assert "inet " not in ask(compute, "ip addr show br100")


def test_compute_without_instances_has_no_br100(cloud):
    """004 "Compute node, no VMs": no bridge but libvirt's ("brctl show ... (only virbr0) ..."), no
    iptables of nova's, and the seed's ``route -n`` without the virbr0 row. compute-2 never gets an
    instance, so it stays as compute-1 was before the VM."""
    compute = cloud["compute-2"]
    assert squash(ask(compute, "brctl show")) == squash("bridge name bridge id STP enabled interfaces")
    with pytest.raises(NotFound):
        ask(compute, "ip link show br100")
    seed = restore_route_n_breaks(between(4, nb("Kernel IP routing table"), "\n", occurrence=1))
    seed = "\n".join(ln for ln in seed.splitlines() if not ln.endswith("virbr0"))
    assert squash(ask(compute, "route -n")) == squash(seed)

