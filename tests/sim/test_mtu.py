"""Packet sizes in the simulator: ``World.probe(..., size=N)`` sends ``ping -M do -s N`` (or N bytes
of TCP/UDP payload, DF set) and every device checks the packet against its MTU as the kernel does.

Seed 000 (GRE, Grizzly: every device and the instance at 1500, the network's MTU attribute 1458)
and seed 001 (VXLAN, modern: the networks at 1450, told to the instances by DHCP option 26), on
both sides of each limit; tests/linux/test_mtu_linux.py holds the same sizes to the kernel's word.
"""

from __future__ import annotations

import pathlib

import pytest

from neutrino.deploy import bring_up
from neutrino.errors import InvalidInput
from neutrino.sim.cloud import world_of
from neutrino.sim.keep import load_world, save_world
from neutrino.sim.trace import DropReason, StepKind, render
from neutrino.sim.world import OUTSIDE, World

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _world(seed: str, tmp: pathlib.Path) -> World:
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(tmp))
    try:
        result = bring_up(EXAMPLES / f"seed{seed}.yaml", state=tmp, keep=False)
    finally:
        mp.undo()
    world = world_of(result.cloud, result.hosts)
    world.boot()
    return world


@pytest.fixture(scope="module")
def seed0(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _world("000", tmp_path_factory.mktemp("mtu000"))


@pytest.fixture(scope="module")
def seed1(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _world("001", tmp_path_factory.mktemp("mtu001"))


# -- seed 000: GRE -------------------------------------------------------------------------------

def test_gre_limit_from_the_instance(seed0: World) -> None:
    """The largest ping that crosses the GRE tunnel: 1426 bytes of data, a 1454-byte packet (its
    frame keeps the local VLAN tag inside GRE: 1454 + 18 + 28 = 1500); one byte more is dropped
    silently at the tunnel, where the verdict says so."""
    ok = seed0.probe("cirros", "10.1.0.1", size=1426)
    assert ok.succeeded, render(ok)
    assert "length 1434" in ok.reply.hops[-1].packet  # the echo reply carries the same data back
    bad = seed0.probe("cirros", "10.1.0.1", size=1427)
    assert not bad.delivered and bad.verdict.reason is DropReason.MTU
    assert bad.verdict.where == "compute br-tun"
    assert "GRE packet of 1501 bytes (1455-byte inner packet" in bad.verdict.detail
    assert "underlay's MTU 1500" in bad.verdict.detail and bad.verdict.detail.endswith(
        "up to 1454 bytes fit through gre-2 (key 0x2)")
    assert bad.reply is None


def test_gre_limit_from_the_outside(seed0: World) -> None:
    assert seed0.probe(OUTSIDE, "172.24.4.228", size=1426).succeeded
    bad = seed0.probe(OUTSIDE, "172.24.4.228", size=1427)
    assert bad.verdict.reason is DropReason.MTU and bad.verdict.where == "network br-tun"
    # TCP: 1414 bytes of payload make the same 1454-byte packet
    assert seed0.probe(OUTSIDE, "172.24.4.228", proto="tcp", dport=22, size=1414).succeeded
    assert seed0.probe(OUTSIDE, "172.24.4.228", proto="tcp", dport=22, size=1415).verdict.reason is DropReason.MTU


def test_the_senders_own_mtu(seed0: World) -> None:
    """ping -M do -s 1473 on a 1500-byte eth0: the guest's kernel refuses it, nothing leaves."""
    t = seed0.probe("cirros", "10.1.0.1", size=1473)
    assert t.verdict.reason is DropReason.MTU
    assert t.verdict.detail == "ping: local error: message too long, mtu=1500"
    assert t.verdict.where == "compute cirros"
    assert [h.device for h in t.hops] == ["eth0"] and t.reply is None and not t.forks
    # 1472 leaves the instance (a 1500-byte packet) and dies at the tunnel instead
    assert seed0.probe("cirros", "10.1.0.1", size=1472).verdict.where == "compute br-tun"
    # UDP says it in sendmsg's words
    u = seed0.probe("cirros", "10.1.0.1", proto="udp", dport=53, size=1473)
    assert u.verdict.reason is DropReason.MTU and "Message too long" in u.verdict.detail


def test_a_linux_bridge_port_drops_a_larger_frame(seed0: World) -> None:
    """A frame injected into the firewall bridge towards the instance's 1500-byte tap: the kernel
    lets a frame through up to the MTU plus its Ethernet header and 4 bytes (a VLAN tag's room)."""
    at = "compute:qvb61e31514-15"
    fits = seed0.probe("10.1.0.1", "cirros", at=at, size=1476)  # a 1504-byte packet, a 1518-byte frame
    assert fits.delivered, render(fits)
    bad = seed0.probe("10.1.0.1", "cirros", at=at, size=1477)
    assert bad.verdict.reason is DropReason.MTU and bad.verdict.where == "compute qbr61e31514-15"
    assert bad.verdict.detail.startswith("mtu 1500 dev tap61e31514-15: frame of 1519 bytes (1505 of IP) "
                                         "larger than tap61e31514-15's MTU 1500: dropped")


def test_plain_traces_are_unchanged(seed0: World) -> None:
    """Without a size nothing of sizes is said; a small sized ping takes the same path, its
    packet's size given on the ``packet:`` line."""
    plain = seed0.probe("cirros", "10.1.0.1")
    sized = seed0.probe("cirros", "10.1.0.1", size=56)
    assert "size" not in render(plain, "detailed") and not plain.packet
    assert dict(sized.packet) == {"size": "56", "ip_length": "84", "df": "set"}
    assert render(sized, "summary").splitlines()[0] == "packet: size=56, ip_length=84, df=set"
    assert render(sized, "minimal") == render(plain, "minimal")
    assert [h.packet for h in sized.hops] == [h.packet for h in plain.hops]  # ping's default 56 bytes


# -- seed 001: VXLAN -----------------------------------------------------------------------------

def test_vxlan_instance_mtu_from_dhcp(seed1: World) -> None:
    """The instances took 1450 from DHCP option 26: -s 1423 fails in the sender; -s 1422 leaves
    it (the seed's security group then drops it: not an MTU matter)."""
    assert seed1.guests["vm1"].mtu == 1450
    t = seed1.probe("vm1", "10.11.11.1", size=1423)
    assert t.verdict.detail == "ping: local error: message too long, mtu=1450"
    assert seed1.probe("vm1", "10.11.11.1", size=1422).verdict.reason is DropReason.SECURITY_GROUP


def test_router_sends_fragmentation_needed(seed1: World) -> None:
    """From the outside (1500) to a floating IP: the router forwards into a 1450-byte network; a
    larger DF packet gets ICMP fragmentation needed (type 3 code 4, next-hop MTU 1450), which
    reaches the sender from the floating IP (conntrack un-DNATs it, as the kernel does)."""
    t = seed1.probe(OUTSIDE, "192.168.100.41", size=1423)
    assert t.verdict.reason is DropReason.MTU
    assert t.verdict.where.startswith("controller qrouter-")
    assert t.verdict.detail.startswith("mtu 1450 dev qr-f13621de-a4: a 1451-byte packet with DF set is larger than "
                                       "qr-f13621de-a4's MTU 1450: fragmentation needed")
    assert t.verdict.detail.endswith("the sender got ICMP fragmentation needed (type 3 code 4, next-hop MTU 1450) "
                                     "from 192.168.100.41")
    back = t.hops[-1]
    assert back.host == OUTSIDE and back.steps[-1].kind is StepKind.DELIVER
    assert "unreachable - need to frag (mtu 1450)" in back.packet
    # one byte less crosses the router (and meets vm1's firewall)
    under = seed1.probe(OUTSIDE, "192.168.100.41", size=1422)
    assert under.verdict.reason is DropReason.SECURITY_GROUP
    # the router's own gateway address is on its 1500-byte qg- device
    assert seed1.probe(OUTSIDE, "192.168.100.18", size=1472).succeeded
    local = seed1.probe(OUTSIDE, "192.168.100.18", size=1473)
    assert local.verdict.detail == "ping: local error: message too long, mtu=1500"


def test_an_ovs_port_drops_a_larger_frame(seed1: World) -> None:
    """A frame from the tunnel side into compute01's br-int for vm1 (its qvo at 1450): OVS drops a
    packet larger than the port's MTU, silently."""
    ok = seed1.probe("vm2", "vm1", at="compute01:br-int:patch-tun", vlan=1, size=1422)
    bad = seed1.probe("vm2", "vm1", at="compute01:br-int:patch-tun", vlan=1, size=1423)
    assert ok.verdict.reason is not DropReason.MTU
    assert bad.verdict.reason is DropReason.MTU and bad.verdict.where == "compute01 br-int"
    assert "frame of 1465 bytes (1451 of IP) larger than qvo3b872a83-89's MTU 1450: dropped" in bad.verdict.detail


def test_vxlan_limit_is_the_networks_mtu(seed1: World) -> None:
    """Today's br-tun strips the local VLAN before the tunnel: VXLAN adds 50 bytes (Neutron's
    VXLAN_ENCAP_OVERHEAD), so the largest packet through a 1500-byte underlay is the network's
    MTU attribute, 1450."""
    at = "controller:br-tun:patch-int"
    assert seed1.probe("10.11.11.1", "vm1", at=at, vlan=1, size=1422).verdict.reason is DropReason.SECURITY_GROUP
    bad = seed1.probe("10.11.11.1", "vm1", at=at, vlan=1, size=1423)
    assert bad.verdict.reason is DropReason.MTU and bad.verdict.where == "controller br-tun"
    assert "VXLAN packet of 1501 bytes (1451-byte inner packet + 50 bytes of tunnel headers)" in bad.verdict.detail
    assert bad.verdict.detail.endswith("packets of up to 1450 bytes fit through vxlan-0aa80711 (key 0x1)")


def test_a_kept_world_checks_the_same(seed1: World, tmp_path: pathlib.Path) -> None:
    """A saved and loaded world (no host states, elements unpickled on demand) knows the MTUs."""
    save_world(seed1, tmp_path / "world")
    loaded = load_world(tmp_path / "world")
    assert loaded.underlay_mtu == 1500
    t = loaded.probe(OUTSIDE, "192.168.100.41", size=1423)
    assert t.verdict.reason is DropReason.MTU and "next-hop MTU 1450" in t.verdict.detail


# -- a host's own ping -------------------------------------------------------------------------

def test_from_a_hosts_root_namespace(tmp_path: pathlib.Path) -> None:
    """Seed 004 (nova-network): the controller pings the instance from its root namespace; its own
    1500-byte device refuses -s 1473 (before any iptables hook)."""
    world = _world("004", tmp_path)
    assert world.probe("host:controller-1", "cirros", size=1472).succeeded
    t = world.probe("host:controller-1", "cirros", size=1473)
    assert t.verdict.reason is DropReason.MTU
    assert t.verdict.detail == "ping: local error: message too long, mtu=1500"
    assert dict(t.packet)["ip_length"] == "1501"


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,words", [
    ({"proto": "arp", "size": 100}, "--size: only with --proto icmp, tcp or udp"),
    ({"size": -1}, "--size -1: a icmp payload is 0 to 65507 bytes"),
    ({"proto": "tcp", "size": 65496}, "--size 65496: a tcp payload is 0 to 65495 bytes"),
])
def test_bad_sizes(seed0: World, kw: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidInput, match=words.replace("(", r"\(")):
        seed0.probe("cirros", "10.1.0.1", **kw)  # type: ignore[arg-type]
