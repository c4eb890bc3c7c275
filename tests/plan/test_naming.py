"""Naming rules, checked against the names the seeds print and the reference's examples.

Seeds show only the 11 UUID characters a device name keeps, so where a test needs a whole port id
it completes the seed's prefix with an arbitrary tail (``_full``); the rule cuts the tail away.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neutrino.plan import naming as n
from neutrino.plan.naming import ChainKind, DhcpFile, IntBrTable, IptablesBinary, PhysBrTable, TunBrTable
from seeds import seed_text


def _full(prefix: str) -> str:
    """A whole UUID starting with the characters a seed shows (``7c7ae61e-05``)."""
    template = "00000000-00e2-4e7e-9c1f-4a8b1b1c2f3a"
    return prefix + template[len(prefix):]


def test_full_keeps_the_prefix() -> None:
    pid = _full("7c7ae61e-05")
    assert pid.startswith("7c7ae61e-05") and len(pid) == 36 and uuid.UUID(pid)


# The reference document's running example (neutron-dataplane.md, intro table and §1).
P = "3f2a1b7c-d4e5-4f60-8a9b-0c1d2e3f4a5b"
NET = "5e6f7a8b-1234-4cde-9abc-def012345678"
DHCP_PORT = "d1c2b3a4-0000-4000-8000-000000000001"
ROUTER = "9c8b7a65-4321-4abc-8def-0123456789ab"
RIF = "aa00bb11-cc22-4d33-8e44-ff5566778899"
RGW = "ee11dd22-cc33-4b44-a55a-667788990011"
SG = "a1b2c3d4-1111-2222-3333-444455556666"


DEVICE_CASES = [
    # (seed or None for the reference doc, function, id, expected)
    (0, n.tap_device, _full("7c7ae61e-05"), "tap7c7ae61e-05"),
    (0, n.qbr_device, _full("7c7ae61e-05"), "qbr7c7ae61e-05"),
    (0, n.qvb_device, _full("7c7ae61e-05"), "qvb7c7ae61e-05"),
    (0, n.qvo_device, _full("7c7ae61e-05"), "qvo7c7ae61e-05"),
    (0, n.router_gateway_device, _full("d48b49e0-aa"), "qg-d48b49e0-aa"),
    (0, n.router_internal_device, _full("c2d7dd02-56"), "qr-c2d7dd02-56"),
    (1, n.tap_device, _full("bfda8db6-7b"), "tapbfda8db6-7b"),
    (1, n.qbr_device, _full("bfda8db6-7b"), "qbrbfda8db6-7b"),
    (1, n.qvb_device, _full("bfda8db6-7b"), "qvbbfda8db6-7b"),
    (1, n.qvo_device, _full("bfda8db6-7b"), "qvobfda8db6-7b"),
    (1, n.router_gateway_device, _full("77688753-4e"), "qg-77688753-4e"),
    (1, n.router_internal_device, _full("9959547d-8f"), "qr-9959547d-8f"),
    (1, n.router_internal_device, _full("104bbda7-ca"), "qr-104bbda7-ca"),
    (1, n.dhcp_device, _full("46db5863-b8"), "tap46db5863-b8"),
    (2, n.qvo_device, _full("583c7038-d3"), "qvo583c7038-d3"),
    (2, n.qvo_device, _full("d4de9fe0-6d"), "qvod4de9fe0-6d"),
    (2, n.router_gateway_device, _full("9b2db4ac-31"), "qg-9b2db4ac-31"),
    (2, n.router_internal_device, _full("2a169bb4-4d"), "qr-2a169bb4-4d"),
    (None, n.tap_device, P, "tap3f2a1b7c-d4"),
    (None, n.qbr_device, P, "qbr3f2a1b7c-d4"),
    (None, n.qvb_device, P, "qvb3f2a1b7c-d4"),
    (None, n.qvo_device, P, "qvo3f2a1b7c-d4"),
    (None, n.router_internal_device, RIF, "qr-aa00bb11-cc"),
    (None, n.router_gateway_device, RGW, "qg-ee11dd22-cc"),
    (None, n.dhcp_device, DHCP_PORT, "tapd1c2b3a4-00"),
    (None, n.router_to_fip_device, ROUTER, "rfp-9c8b7a65-4"),
    (None, n.fip_to_router_device, ROUTER, "fpr-9c8b7a65-4"),
    (None, n.ha_device, RIF, "ha-aa00bb11-cc"),
    (None, n.snat_internal_device, RIF, "sg-aa00bb11-cc"),
    (None, n.fip_gateway_device, RGW, "fg-ee11dd22-cc"),
    (None, n.router_namespace, ROUTER, "qrouter-9c8b7a65-4321-4abc-8def-0123456789ab"),
    (None, n.dhcp_namespace, NET, "qdhcp-5e6f7a8b-1234-4cde-9abc-def012345678"),
    (None, n.snat_namespace, ROUTER, "snat-9c8b7a65-4321-4abc-8def-0123456789ab"),
    (None, n.fip_namespace, NET, "fip-5e6f7a8b-1234-4cde-9abc-def012345678"),
    (0, n.dhcp_namespace, "88b1609c-68e0-49ca-a658-f1edff54a264", "qdhcp-88b1609c-68e0-49ca-a658-f1edff54a264"),
    (0, n.router_namespace, "2d214fde-293c-4d64-8062-797f80ae2d8f", "qrouter-2d214fde-293c-4d64-8062-797f80ae2d8f"),
    (1, n.router_namespace, "be384c66-1834-4265-8f8a-9c85c016ee79", "qrouter-be384c66-1834-4265-8f8a-9c85c016ee79"),
    (2, n.dhcp_namespace, "39edbf9b-a6da-4bab-8500-39ad91ed1984", "qdhcp-39edbf9b-a6da-4bab-8500-39ad91ed1984"),
]


@pytest.mark.parametrize(("seed", "fn", "object_id", "expected"), DEVICE_CASES,
                         ids=[f"{'ref' if c[0] is None else f'seed{c[0]:03d}'}-{c[3]}" for c in DEVICE_CASES])
def test_device_and_namespace_names(seed: int | None, fn: object, object_id: str, expected: str) -> None:
    assert callable(fn)
    assert fn(object_id) == expected
    if seed is not None:
        assert expected in seed_text(seed)


def test_hybrid_devices_tuple() -> None:
    assert n.hybrid_devices(P) == ("tap3f2a1b7c-d4", "qbr3f2a1b7c-d4", "qvb3f2a1b7c-d4", "qvo3f2a1b7c-d4")


def test_dhcp_device_with_veth_is_ns_and_its_peer_is_tap() -> None:
    # Seed 000 (Grizzly, ovs_use_veth): ns-f14c598d-98 in qdhcp-, tapf14c598d-98 on br-int.
    port = _full("f14c598d-98")
    assert n.dhcp_device(port, use_veth=True) == "ns-f14c598d-98"
    assert n.dhcp_device(port) == "tapf14c598d-98"
    text = seed_text(0)
    for dev, peer in [("ns-f14c598d-98", "tapf14c598d-98"), ("qr-c2d7dd02-56", "tapc2d7dd02-56"),
                      ("qg-d48b49e0-aa", "tapd48b49e0-aa")]:
        assert n.ovs_veth_peer(dev) == peer
        assert dev in text and peer in text


def test_veth_peer_rejects_other_names() -> None:
    with pytest.raises(ValueError):
        n.ovs_veth_peer("eth0")


_DEVICE_FNS = [(n.tap_device, "tap"), (n.qbr_device, "qbr"), (n.qvb_device, "qvb"), (n.qvo_device, "qvo"),
               (n.router_internal_device, "qr-"), (n.router_gateway_device, "qg-"), (n.dhcp_device, "tap"),
               (n.ha_device, "ha-"), (n.snat_internal_device, "sg-"), (n.fip_gateway_device, "fg-"),
               (n.router_to_fip_device, "rfp-"), (n.fip_to_router_device, "fpr-")]


@given(st.uuids().map(str), st.sampled_from(_DEVICE_FNS))
def test_every_device_name_is_the_prefix_and_the_uuid_cut_to_14(pid: str, case: tuple[object, str]) -> None:
    fn, prefix = case
    assert callable(fn)
    name = fn(pid)
    assert name == prefix + pid[:14 - len(prefix)]
    assert len(name) == 14 < n.DEVICE_NAME_MAX_LEN + 1


# --- tunnel and patch ports -------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "remote", "expected", "seed"), [
    ("vxlan", "10.168.7.17", "vxlan-0aa80711", 1),
    ("vxlan", "10.168.7.16", "vxlan-0aa80710", 1),
    ("vxlan", "192.168.0.2", "vxlan-c0a80002", None),
    ("gre", "192.168.0.2", "gre-c0a80002", None),
    ("geneve", "192.168.0.2", "geneve-c0a80002", None),
    ("vxlan", "172.16.100.51", "vxlan-ac106433", None),
], ids=lambda v: str(v))
def test_tunnel_port_ipv4_is_hex_of_the_remote(kind: str, remote: str, expected: str, seed: int | None) -> None:
    assert n.tunnel_port(kind, remote) == expected
    if seed is not None:
        text = seed_text(seed)
        assert f'Port "{expected}"' in text
        assert f'remote_ip="{remote}"' in text


@pytest.mark.parametrize("kind", ["vxlan", "gre", "geneve"])
def test_tunnel_port_ipv6_is_blake2b_base32_cut_to_fit_15(kind: str) -> None:
    remote = "fd00:10::2"
    room = 15 - len(kind) - 1
    expected = base64.b32encode(hashlib.blake2b(remote.encode(), digest_size=20).digest()).decode().lower()[:room]
    name = n.tunnel_port(kind, remote)
    assert name == f"{kind}-{expected}"
    assert len(name) == 15


def test_legacy_tunnel_port_is_type_and_endpoint_id() -> None:
    # Seed 000: ovs-ofctl show br-tun lists " 2(gre-2)" - the endpoint with id 2.
    assert n.legacy_tunnel_port(2) == "gre-2"
    assert " 2(gre-2):" in seed_text(0)
    assert n.legacy_tunnel_port(3, "vxlan") == "vxlan-3"


@pytest.mark.parametrize(("bridge", "int_name", "phy_name", "seed"), [
    ("br-ex", "int-br-ex", "phy-br-ex", 1),
    ("br-eth0", "int-br-eth0", "phy-br-eth0", 2),
])
def test_patch_ports_to_physical_bridges(bridge: str, int_name: str, phy_name: str, seed: int) -> None:
    assert n.int_patch_port(bridge) == int_name
    assert n.phy_patch_port(bridge) == phy_name
    assert int_name in seed_text(seed) and phy_name in seed_text(seed)


def test_patch_port_longer_than_15_is_hashed() -> None:
    bridge = "br-provider1"  # int-br-provider1 is 16 characters
    digest = hashlib.sha1(bridge.encode()).hexdigest()[:6]
    assert n.int_patch_port(bridge) == "int-br-pr" + digest
    assert n.phy_patch_port(bridge) == "phy-br-pr" + digest
    assert len(n.int_patch_port(bridge)) == 15


def test_interface_name_boundaries() -> None:
    assert n.interface_name("br-ex123456", "int-") == "int-br-ex123456"  # exactly 15: kept
    assert n.interface_name("br-ex1234567", "int-") == "int-br-ex" + hashlib.sha1(b"br-ex1234567").hexdigest()[:6]
    with pytest.raises(ValueError):
        n.interface_name("x" * 20, "p" * 10)


def test_patch_tun_and_patch_int() -> None:
    text = seed_text(0)
    assert "Port patch-tun" in text and "options: {peer=patch-int}" in text
    assert (n.PATCH_TUN, n.PATCH_INT) == ("patch-tun", "patch-int")


# --- OpenFlow tables --------------------------------------------------------------------------

@pytest.mark.parametrize(("table", "number"), [
    (IntBrTable.LOCAL_SWITCHING, 0), (IntBrTable.CANARY_TABLE, 23), (IntBrTable.ARP_SPOOF_TABLE, 24),
    (IntBrTable.MAC_SPOOF_TABLE, 25), (IntBrTable.LOCAL_EGRESS_TABLE, 30), (IntBrTable.LOCAL_IP_TABLE, 31),
    (IntBrTable.PACKET_RATE_LIMIT, 58), (IntBrTable.BANDWIDTH_RATE_LIMIT, 59), (IntBrTable.TRANSIENT_TABLE, 60),
    (IntBrTable.LOCAL_MAC_DIRECT, 61), (IntBrTable.TRANSIENT_EGRESS_TABLE, 62),
    (IntBrTable.BASE_EGRESS_TABLE, 71), (IntBrTable.BASE_INGRESS_TABLE, 81), (IntBrTable.DHCP_IPV4_TABLE, 77),
    (IntBrTable.DROPPED_TRAFFIC_TABLE, 93),
    (TunBrTable.LOCAL_SWITCHING, 0), (TunBrTable.PATCH_LV_TO_TUN, 2), (TunBrTable.GRE_TUN_TO_LV, 3),
    (TunBrTable.VXLAN_TUN_TO_LV, 4), (TunBrTable.GENEVE_TUN_TO_LV, 6), (TunBrTable.LEARN_FROM_TUN, 10),
    (TunBrTable.UCAST_TO_TUN, 20), (TunBrTable.ARP_RESPONDER, 21), (TunBrTable.FLOOD_TO_TUN, 22),
    (PhysBrTable.LOCAL_VLAN_TRANSLATION, 2),
], ids=lambda v: getattr(v, "name", str(v)))
def test_table_numbers(table: int, number: int) -> None:
    assert int(table) == number


@pytest.mark.parametrize("enum_cls", [IntBrTable, TunBrTable, PhysBrTable])
def test_no_table_number_is_an_alias(enum_cls: type[IntBrTable | TunBrTable | PhysBrTable]) -> None:
    # IntEnum silently turns a repeated value into an alias; each name must own its number.
    assert len(enum_cls.__members__) == len({m.value for m in enum_cls.__members__.values()})


def test_tables_in_the_reference_dumps_all_have_names() -> None:
    int_dump = {0, 23, 24, 25, 30, 31, 58, 59, 60, 62}
    tun_dump = {0, 2, 3, 4, 6, 10, 20, 21, 22}
    assert {IntBrTable(t).value for t in int_dump} == int_dump
    assert {TunBrTable(t).value for t in tun_dump} == tun_dump
    assert n.TUN_TO_LV_TABLE == {"gre": 3, "vxlan": 4, "geneve": 6}


# --- iptables ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv0", "binary"), [
    ("/usr/bin/neutron-openvswitch-agent", IptablesBinary.NEUTRON_OVS_AGENT),
    ("/usr/bin/neutron-l3-agent", IptablesBinary.NEUTRON_L3_AGENT),
    ("/usr/bin/neutron-dhcp-agent", IptablesBinary.NEUTRON_DHCP_AGENT),
    ("/usr/bin/quantum-openvswitch-agent", IptablesBinary.QUANTUM_OVS_AGENT),
    ("/usr/bin/quantum-l3-agent", IptablesBinary.QUANTUM_L3_AGENT),
    ("/usr/bin/quantum-dhcp-agent", IptablesBinary.QUANTUM_DHCP_AGENT),
    ("/usr/bin/nova-compute", IptablesBinary.NOVA_COMPUTE),
    ("/usr/bin/nova-network", IptablesBinary.NOVA_NETWORK),
    ("/usr/bin/nova-api", IptablesBinary.NOVA_API),
], ids=lambda v: str(v).rsplit("/", 1)[-1])
def test_binary_name_is_basename_cut_to_16(argv0: str, binary: IptablesBinary) -> None:
    assert n.iptables_binary(argv0) == binary
    assert len(binary) <= 16


def test_binary_name_replaces_spaces() -> None:
    assert n.iptables_binary("/opt/my agent") == "my_agent"


CHAIN_CASES = [
    (0, n.sg_port_chain(IptablesBinary.QUANTUM_OVS_AGENT, ChainKind.EGRESS, _full("7c7ae61e-05")),
     "quantum-openvswi-o7c7ae61e-0"),
    (0, n.sg_port_chain(IptablesBinary.QUANTUM_OVS_AGENT, ChainKind.INGRESS, _full("7c7ae61e-05")),
     "quantum-openvswi-i7c7ae61e-0"),
    (0, n.wrapped_chain(IptablesBinary.QUANTUM_OVS_AGENT, n.SG_CHAIN), "quantum-openvswi-sg-chain"),
    (0, n.wrapped_chain(IptablesBinary.QUANTUM_OVS_AGENT, n.SG_FALLBACK), "quantum-openvswi-sg-fallback"),
    (0, n.wrapped_chain(IptablesBinary.QUANTUM_OVS_AGENT, "FORWARD"), "quantum-openvswi-FORWARD"),
    (0, n.wrapped_chain(IptablesBinary.QUANTUM_L3_AGENT, n.FLOAT_SNAT_CHAIN), "quantum-l3-agent-float-snat"),
    (0, n.postrouting_bottom("quantum"), "quantum-postrouting-bottom"),
    (1, n.sg_port_chain(IptablesBinary.NEUTRON_OVS_AGENT, ChainKind.EGRESS, _full("0db0e25b-0")),
     "neutron-openvswi-o0db0e25b-0"),
    (1, n.sg_port_chain(IptablesBinary.NEUTRON_OVS_AGENT, ChainKind.SPOOF, _full("0db0e25b-0")),
     "neutron-openvswi-s0db0e25b-0"),
    (1, n.sg_port_chain(IptablesBinary.NEUTRON_OVS_AGENT, ChainKind.INGRESS, _full("0db0e25b-0")),
     "neutron-openvswi-i0db0e25b-0"),
    (1, n.wrapped_chain(IptablesBinary.NEUTRON_OVS_AGENT, n.SG_FALLBACK), "neutron-openvswi-sg-fallback"),
    (1, n.wrapped_chain(IptablesBinary.NEUTRON_L3_AGENT, n.SNAT_CHAIN), "neutron-l3-agent-snat"),
    (2, n.wrapped_chain(IptablesBinary.NEUTRON_L3_AGENT, n.FLOAT_SNAT_CHAIN), "neutron-l3-agent-float-snat"),
    (2, n.postrouting_bottom(), "neutron-postrouting-bottom"),
    (4, n.nova_instance_chain_wrapped(9), "nova-compute-inst-9"),
    (4, n.wrapped_chain(IptablesBinary.NOVA_COMPUTE, n.SG_FALLBACK), "nova-compute-sg-fallback"),
    (4, n.wrapped_chain(IptablesBinary.NOVA_NETWORK, n.FLOAT_SNAT_CHAIN), "nova-network-float-snat"),
    (4, n.wrapped_chain(IptablesBinary.NOVA_API, n.SNAT_CHAIN), "nova-api-snat"),
    (4, n.wrapped_chain(IptablesBinary.NOVA_COMPUTE, n.LOCAL_CHAIN), "nova-compute-local"),
    (4, n.filter_top("nova"), "nova-filter-top"),
    (None, n.sg_port_chain(IptablesBinary.NEUTRON_OVS_AGENT, ChainKind.INGRESS, P), "neutron-openvswi-i3f2a1b7c-d"),
    (None, n.filter_top(), "neutron-filter-top"),
    (None, n.wrapped_chain(IptablesBinary.NEUTRON_DHCP_AGENT, "POSTROUTING"), "neutron-dhcp-age-POSTROUTING"),
]


@pytest.mark.parametrize(("seed", "got", "expected"), CHAIN_CASES, ids=[c[2] for c in CHAIN_CASES])
def test_chain_names(seed: int | None, got: str, expected: str) -> None:
    assert got == expected
    if seed is not None:
        assert expected in seed_text(seed)


def test_port_chain_is_letter_and_10_characters() -> None:
    assert n.port_chain(ChainKind.INGRESS, P) == "i3f2a1b7c-d"
    assert len(n.sg_port_chain(IptablesBinary.NEUTRON_OVS_AGENT, ChainKind.INGRESS, P)) == 28


def test_chain_name_cuts() -> None:
    assert n.chain_name("float-snat-and-more") == "float-snat-"
    assert n.chain_name("x" * 40, wrap=False) == "x" * 28


def test_ipset_name_is_cut_to_29() -> None:
    assert n.ipset_name(SG) == "NIPv4a1b2c3d4-1111-2222-3333-"
    assert n.ipset_name(SG, "IPv6") == "NIPv6a1b2c3d4-1111-2222-3333-"
    assert len(n.ipset_name(SG)) == 29
    assert n.ipset_swap_name(SG) == "NIPv4a1b2c3d4-1111-2222-3333--n"
    assert len(n.ipset_swap_name(SG)) == 31


def test_conntrack_zone_constants() -> None:
    assert n.CONNTRACK_ZONE_START == 4097
    assert n.MAX_CONNTRACK_ZONES == 65535


# --- DHCP agent -------------------------------------------------------------------------------

def test_dhcp_port_device_id() -> None:
    host_uuid = "7b60c1d9-602e-5110-8c89-a9475b89732c"  # uuid5(NAMESPACE_DNS, "network"), RFC 4122 SHA-1
    assert str(uuid.uuid5(uuid.NAMESPACE_DNS, "network")) == host_uuid
    assert n.dhcp_port_device_id(NET, "network") == f"dhcp{host_uuid}-{NET}"
    assert n.dhcp_port_device_id(NET, "network.example.org") == f"dhcp{host_uuid}-{NET}"
    assert n.dhcp_port_device_id(NET, "network", 200) == f"dhcp{host_uuid}-{NET}-200"
    assert re.fullmatch(r"dhcp[0-9a-f-]{36}-[0-9a-f-]{36}", n.dhcp_port_device_id(NET, "compute1"))


@pytest.mark.parametrize(("kind", "state", "expected"), [
    (DhcpFile.HOST, n.NEUTRON_STATE_PATH, f"/var/lib/neutron/dhcp/{NET}/host"),
    (DhcpFile.ADDN_HOSTS, n.NEUTRON_STATE_PATH, f"/var/lib/neutron/dhcp/{NET}/addn_hosts"),
    (DhcpFile.OPTS, n.NEUTRON_STATE_PATH, f"/var/lib/neutron/dhcp/{NET}/opts"),
    (DhcpFile.LEASES, n.NEUTRON_STATE_PATH, f"/var/lib/neutron/dhcp/{NET}/leases"),
    (DhcpFile.PID, n.NEUTRON_STATE_PATH, f"/var/lib/neutron/dhcp/{NET}/pid"),
    (DhcpFile.INTERFACE, n.NEUTRON_STATE_PATH, f"/var/lib/neutron/dhcp/{NET}/interface"),
], ids=lambda v: str(v))
def test_neutron_dnsmasq_files(kind: DhcpFile, state: str, expected: str) -> None:
    assert n.dhcp_conf_file(NET, kind, state) == expected


@pytest.mark.parametrize("kind", [DhcpFile.PID, DhcpFile.HOST, DhcpFile.OPTS])
def test_quantum_dnsmasq_files_in_seed_000(kind: DhcpFile) -> None:
    path = n.dhcp_conf_file("88b1609c-68e0-49ca-a658-f1edff54a264", kind, n.QUANTUM_STATE_PATH)
    assert path == f"/var/lib/quantum/dhcp/88b1609c-68e0-49ca-a658-f1edff54a264/{kind}"
    assert path in seed_text(0)


def test_dnsmasq_process_tag() -> None:
    assert n.dnsmasq_process_tag(NET) == f"dnsmasq-{NET}"


# --- nova-network -----------------------------------------------------------------------------

@pytest.mark.parametrize(("got", "expected", "seed"), [
    (n.nova_bridge(100), "br100", 4),
    (n.nova_bridge(102), "br102", 3),
    (n.nova_vlan_interface(100), "vlan100", 3),
    (n.nova_vlan_interface(102), "vlan102", 3),
    (n.libvirt_tap(0), "vnet0", 4),
    (n.nova_instance_chain(9), "inst-9", 4),
    (n.nova_dhcp_file("br100", "conf"), "/var/lib/nova/networks/nova-br100.conf", 4),
    (n.nova_dhcp_file("br100", "pid"), "/var/lib/nova/networks/nova-br100.pid", 4),
], ids=lambda v: str(v))
def test_nova_network_names(got: str, expected: str, seed: int) -> None:
    assert got == expected
    assert expected in seed_text(seed)
