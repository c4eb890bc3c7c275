"""Every device, namespace, port, chain and file name the plumbing uses, in one place.

Neutron (and Nova, and Quantum before them) derive names from object ids and cut them to fit
Linux's limits: an interface name holds at most 15 characters (``IFNAMSIZ`` 16 with the NUL), and
the agents cut ``prefix + uuid`` to 14 (neutron-lib ``LINUX_DEV_LEN``), so a 3-character prefix
keeps the first 11 characters of the UUID, dash included. The rules here follow neutron master
``2131d26f``, neutron-lib ``6cd671a8`` and os-vif (see ``tests/fixtures/reference/neutron-dataplane.md``
§1, §6, §8); the older Grizzly/Havana forms that the seeds show are kept beside them.

>>> port = "7c7ae61e-05e2-4e7e-bc1f-4a8b1b1c2f3a"
>>> tap_device(port), qbr_device(port), qvb_device(port), qvo_device(port)
('tap7c7ae61e-05', 'qbr7c7ae61e-05', 'qvb7c7ae61e-05', 'qvo7c7ae61e-05')
>>> sg_port_chain(IptablesBinary.QUANTUM_OVS_AGENT, ChainKind.EGRESS, port)
'quantum-openvswi-o7c7ae61e-0'
>>> tunnel_port("vxlan", "10.168.7.17")
'vxlan-0aa80711'
>>> int(TunBrTable.FLOOD_TO_TUN), IntBrTable(60).name
(22, 'TRANSIENT_TABLE')
"""

from __future__ import annotations

import base64
import enum
import hashlib
import ipaddress
import posixpath
import uuid

# --- limits (neutron-lib constants) -----------------------------------------------------------

DEVICE_NAME_MAX_LEN = 15
"""The longest Linux interface (and OVS port) name."""
LINUX_DEV_LEN = 14
"""What the agents and os-vif cut ``prefix + id`` to (neutron-lib ``LINUX_DEV_LEN``, os-vif ``NIC_NAME_LEN``)."""
INTERFACE_HASH_LEN = 6
"""Hex digits of sha1 kept by :func:`interface_name` when a name is too long."""
MAX_CHAIN_LEN_WRAP = 11
"""A wrapped iptables chain (``<binary>-<chain>``) keeps this many characters of ``<chain>``."""
MAX_CHAIN_LEN_NOWRAP = 28
"""An unwrapped chain name keeps this many characters."""
IPSET_NAME_MAX_LEN = 29
"""31 (ipset's limit) minus the ``-n`` suffix of the swap set."""
IPSET_SWAP_SUFFIX = "-n"
CONNTRACK_ZONE_START = 4097
"""The first conntrack zone the hybrid firewall gives a port (``ip_conntrack.ZONE_START``)."""
MAX_CONNTRACK_ZONES = 65535

# --- prefixes -----------------------------------------------------------------------------------

TAP_PREFIX = "tap"
QBR_PREFIX = "qbr"
QVB_PREFIX = "qvb"
QVO_PREFIX = "qvo"
ROUTER_INTERNAL_PREFIX = "qr-"
ROUTER_GATEWAY_PREFIX = "qg-"
DHCP_VETH_PREFIX = "ns-"
HA_PREFIX = "ha-"
SNAT_INTERNAL_PREFIX = "sg-"
FIP_GATEWAY_PREFIX = "fg-"
ROUTER_TO_FIP_PREFIX = "rfp-"
FIP_TO_ROUTER_PREFIX = "fpr-"
ROUTER_NS_PREFIX = "qrouter-"
DHCP_NS_PREFIX = "qdhcp-"
SNAT_NS_PREFIX = "snat-"
FIP_NS_PREFIX = "fip-"
PEER_INTEGRATION_PREFIX = "int-"
PEER_PHYSICAL_PREFIX = "phy-"

PATCH_TUN = "patch-tun"
"""The br-int end of the br-int/br-tun patch (``int_peer_patch_port``)."""
PATCH_INT = "patch-int"
"""The br-tun end of the br-int/br-tun patch (``tun_peer_patch_port``)."""
BR_INT = "br-int"
BR_TUN = "br-tun"
BR_EX = "br-ex"


def device_name(prefix: str, object_id: str) -> str:
    """``prefix + object_id`` cut to 14 characters: the rule behind every agent-made device."""
    return (prefix + object_id)[:LINUX_DEV_LEN]


# --- VM plumbing (os-vif hybrid plug; libvirt's tap) -------------------------------------------

def tap_device(port_id: str) -> str:
    """The VM's tap (libvirt creates it; os-vif names it): ``tap7c7ae61e-05``."""
    return device_name(TAP_PREFIX, port_id)


def qbr_device(port_id: str) -> str:
    """The per-VM "firewall bridge" of the hybrid plug: ``qbr7c7ae61e-05``."""
    return device_name(QBR_PREFIX, port_id)


def qvb_device(port_id: str) -> str:
    """The veth end enslaved to the qbr: ``qvb7c7ae61e-05``."""
    return device_name(QVB_PREFIX, port_id)


def qvo_device(port_id: str) -> str:
    """The veth end plugged into br-int: ``qvo7c7ae61e-05``."""
    return device_name(QVO_PREFIX, port_id)


def hybrid_devices(port_id: str) -> tuple[str, str, str, str]:
    """``(tap, qbr, qvb, qvo)`` for one port, the chain a hybrid-plugged VM hangs from."""
    return tap_device(port_id), qbr_device(port_id), qvb_device(port_id), qvo_device(port_id)


# --- L3 and DHCP agents ------------------------------------------------------------------------

def router_internal_device(port_id: str) -> str:
    """A router interface inside ``qrouter-``: ``qr-c2d7dd02-56``."""
    return device_name(ROUTER_INTERNAL_PREFIX, port_id)


def router_gateway_device(port_id: str) -> str:
    """A router's gateway interface inside ``qrouter-``: ``qg-d48b49e0-aa``."""
    return device_name(ROUTER_GATEWAY_PREFIX, port_id)


def dhcp_device(port_id: str, *, use_veth: bool = False) -> str:
    """The DHCP port's device inside ``qdhcp-``.

    ``tap<id>`` (an OVS internal port) by default; ``ns-<id>`` when ``ovs_use_veth`` is set, and
    then the br-int end of the veth is ``tap<id>`` (see :func:`ovs_veth_peer`).
    """
    return device_name(DHCP_VETH_PREFIX if use_veth else TAP_PREFIX, port_id)


def ovs_veth_peer(device: str) -> str:
    """The br-int (or br-ex) end of an ``ovs_use_veth`` pair: ``tap`` + the name after the prefix.

    Seed 000 (Grizzly, veths everywhere): ``ns-f14c598d-98`` → ``tapf14c598d-98``,
    ``qr-c2d7dd02-56`` → ``tapc2d7dd02-56``, ``qg-d48b49e0-aa`` → ``tapd48b49e0-aa``.
    """
    for prefix in (DHCP_VETH_PREFIX, ROUTER_INTERNAL_PREFIX, ROUTER_GATEWAY_PREFIX, HA_PREFIX,
                   SNAT_INTERNAL_PREFIX, FIP_GATEWAY_PREFIX):
        if device.startswith(prefix):
            return TAP_PREFIX + device[len(prefix):]
    raise ValueError(f"not an agent device with a veth peer: {device!r}")


def ha_device(port_id: str) -> str:
    """An L3-HA router's keepalived interface: ``ha-<port>``."""
    return device_name(HA_PREFIX, port_id)


def snat_internal_device(port_id: str) -> str:
    """A DVR SNAT namespace's internal interface: ``sg-<port>``."""
    return device_name(SNAT_INTERNAL_PREFIX, port_id)


def fip_gateway_device(port_id: str) -> str:
    """A DVR ``fip-`` namespace's external interface: ``fg-<port>``."""
    return device_name(FIP_GATEWAY_PREFIX, port_id)


def router_to_fip_device(router_id: str) -> str:
    """The router end of the DVR router/fip veth: ``rfp-9c8b7a65-4``."""
    return device_name(ROUTER_TO_FIP_PREFIX, router_id)


def fip_to_router_device(router_id: str) -> str:
    """The fip end of the DVR router/fip veth: ``fpr-9c8b7a65-4``."""
    return device_name(FIP_TO_ROUTER_PREFIX, router_id)


def router_namespace(router_id: str) -> str:
    """``qrouter-`` + the full router UUID."""
    return ROUTER_NS_PREFIX + router_id


def dhcp_namespace(network_id: str) -> str:
    """``qdhcp-`` + the full network UUID."""
    return DHCP_NS_PREFIX + network_id


def snat_namespace(router_id: str) -> str:
    """DVR's ``snat-`` + the full router UUID."""
    return SNAT_NS_PREFIX + router_id


def fip_namespace(external_network_id: str) -> str:
    """DVR's ``fip-`` + the full external network UUID."""
    return FIP_NS_PREFIX + external_network_id


def dhcp_port_device_id(network_id: str, host: str, segmentation_id: int | None = None) -> str:
    """The ``device_id`` of a DHCP agent's port: ``dhcp`` + uuid5(DNS, short host) + ``-`` + network.

    Only the host name before the first dot counts, so ``net1`` and ``net1.example.org`` agree.
    With a routed network's segment the segmentation id is appended.
    """
    host_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, host.split(".")[0])
    base = f"dhcp{host_uuid}-{network_id}"
    return f"{base}-{segmentation_id}" if segmentation_id else base


# --- OVS ports ---------------------------------------------------------------------------------

def interface_name(name: str, prefix: str = "", max_len: int = DEVICE_NAME_MAX_LEN) -> str:
    """``prefix + name``; if that is longer than ``max_len``, keep the prefix, as much of ``name``
    as fits beside 6 hex digits of sha1(name), and those digits (neutron-lib ``get_interface_name``).

    >>> interface_name("br-eth0", PEER_INTEGRATION_PREFIX)
    'int-br-eth0'
    >>> interface_name("br-provider1", PEER_PHYSICAL_PREFIX)
    'phy-br-prcebb81'
    """
    requested = prefix + name
    if len(requested) <= max_len:
        return requested
    if len(prefix) + INTERFACE_HASH_LEN > max_len:
        raise ValueError(f"prefix {prefix!r} too long for a {max_len}-character name")
    keep = max_len - len(prefix) - INTERFACE_HASH_LEN
    digest = hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).hexdigest()
    return prefix + name[:keep] + digest[:INTERFACE_HASH_LEN]


def int_patch_port(physical_bridge: str) -> str:
    """The br-int end of the patch to a physical bridge: ``int-br-ex``, ``int-br-eth0``."""
    return interface_name(physical_bridge, PEER_INTEGRATION_PREFIX)


def phy_patch_port(physical_bridge: str) -> str:
    """The physical bridge's end of the patch to br-int: ``phy-br-ex``, ``phy-br-eth0``."""
    return interface_name(physical_bridge, PEER_PHYSICAL_PREFIX)


def tunnel_hash(remote_ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address, hash_len: int) -> str:
    """The remote-endpoint part of a tunnel port name.

    IPv4: always 8 lower-case hex digits (``%08x``), whatever ``hash_len``. IPv6: blake2b (20-byte
    digest) of the address *as written*, base32, lower-cased, cut to ``hash_len``. Neutron hashes
    the configured text, so pass the same spelling the agent was given.
    """
    text = str(remote_ip)
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return f"{int(addr):08x}"
    digest = hashlib.blake2b(text.encode(), digest_size=20).digest()
    return base64.b32encode(digest)[:hash_len].decode().lower()


def tunnel_port(network_type: str, remote_ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """A br-tun tunnel port since Icehouse: ``<type>-<hash>`` in at most 15 characters.

    ``vxlan-0aa80711`` (remote 10.168.7.17), ``gre-c0a80002``, ``geneve-c0a80002``; an IPv6 remote
    gets as many base32 characters as fit (``vxlan-`` + 9). For the Grizzly/Havana names see
    :func:`legacy_tunnel_port`.
    """
    hash_len = DEVICE_NAME_MAX_LEN - len(network_type) - 1
    return f"{network_type}-{tunnel_hash(remote_ip, hash_len)}"


def legacy_tunnel_port(tunnel_id: int, network_type: str = "gre") -> str:
    """A tunnel port as Grizzly and Havana named it: ``<type>-<tunnel id>``.

    Grizzly's OVS agent (seed 000's ``gre-2``) named each GRE port after the *tunnel endpoint's
    id*, a small integer the server gave every agent's ``local_ip`` in its ``ovs_tunnel_endpoints``
    table (endpoint 2 → ``gre-2``), not after the address. Havana kept the form for VXLAN
    (``vxlan-3``). In Feb 2014 (neutron ``3d8ab7964a``, Icehouse) the name became
    ``<type>-<hex IP>`` (:func:`tunnel_port`), so a name no longer depends on server state.
    """
    return f"{network_type}-{tunnel_id}"


# --- OpenFlow tables (neutron-lib ovs_constants) ------------------------------------------------

class IntBrTable(enum.IntEnum):
    """br-int's tables. Planners and tests name tables through these, never as bare numbers."""

    LOCAL_SWITCHING = 0
    DVR_TO_SRC_MAC = 1
    DVR_TO_SRC_MAC_PHYSICAL = 2
    ARP_DVR_MAC_TO_DST_MAC = 3
    ARP_DVR_MAC_TO_DST_MAC_PHYSICAL = 4
    CANARY_TABLE = 23
    ARP_SPOOF_TABLE = 24
    MAC_SPOOF_TABLE = 25
    LOCAL_EGRESS_TABLE = 30
    LOCAL_IP_TABLE = 31
    PACKET_RATE_LIMIT = 58
    BANDWIDTH_RATE_LIMIT = 59
    TRANSIENT_TABLE = 60
    LOCAL_MAC_DIRECT = 61
    TRANSIENT_EGRESS_TABLE = 62
    BASE_EGRESS_TABLE = 71
    RULES_EGRESS_TABLE = 72
    ACCEPT_OR_INGRESS_TABLE = 73
    DHCP_IPV4_TABLE = 77
    DHCP_IPV6_TABLE = 78
    BASE_INGRESS_TABLE = 81
    RULES_INGRESS_TABLE = 82
    ACCEPTED_EGRESS_TRAFFIC_TABLE = 91
    ACCEPTED_INGRESS_TRAFFIC_TABLE = 92
    DROPPED_TRAFFIC_TABLE = 93
    ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE = 94


class TunBrTable(enum.IntEnum):
    """br-tun's tables (Havana onwards; Grizzly's br-tun had table 0 only)."""

    LOCAL_SWITCHING = 0
    DVR_PROCESS = 1
    PATCH_LV_TO_TUN = 2
    GRE_TUN_TO_LV = 3
    VXLAN_TUN_TO_LV = 4
    GENEVE_TUN_TO_LV = 6
    DVR_NOT_LEARN = 9
    LEARN_FROM_TUN = 10
    UCAST_TO_TUN = 20
    ARP_RESPONDER = 21
    FLOOD_TO_TUN = 22


class PhysBrTable(enum.IntEnum):
    """The physical bridges' tables (br-ex, br-eth0...)."""

    LOCAL_SWITCHING = 0
    DVR_PROCESS_PHYSICAL = 1
    LOCAL_VLAN_TRANSLATION = 2
    DVR_NOT_LEARN_PHYSICAL = 3
    METADATA_EGRESS_NAT = 80
    METADATA_EGRESS_OUTPUT = 87
    METADATA_IP_ARP_RESPONDER = 90
    METADATA_INGRESS_DIRECT = 91


OFTable = IntBrTable | TunBrTable | PhysBrTable
"""A table of any of the agent's bridges; the numbers mean different things on each bridge."""

TUN_TO_LV_TABLE: dict[str, TunBrTable] = {
    "gre": TunBrTable.GRE_TUN_TO_LV,
    "vxlan": TunBrTable.VXLAN_TUN_TO_LV,
    "geneve": TunBrTable.GENEVE_TUN_TO_LV,
}
"""Which br-tun table turns a tunnel type's tun_id into the local VLAN."""

DEAD_VLAN_TAG = 4095
"""The tag of ports the agent has not bound (``MAX_VLAN_TAG + 1``)."""


# --- iptables ------------------------------------------------------------------------------------

class IptablesBinary(enum.StrEnum):
    """The wrap prefix of each agent's chains: ``basename(argv[0])[:16]`` (see :func:`iptables_binary`)."""

    NEUTRON_OVS_AGENT = "neutron-openvswi"  # neutron-openvswitch-agent
    NEUTRON_L3_AGENT = "neutron-l3-agent"
    NEUTRON_DHCP_AGENT = "neutron-dhcp-age"  # neutron-dhcp-agent
    QUANTUM_OVS_AGENT = "quantum-openvswi"  # quantum-openvswitch-agent (Grizzly)
    QUANTUM_L3_AGENT = "quantum-l3-agent"
    QUANTUM_DHCP_AGENT = "quantum-dhcp-age"
    NOVA_COMPUTE = "nova-compute"
    NOVA_NETWORK = "nova-network"
    NOVA_API = "nova-api"


def iptables_binary(argv0: str) -> str:
    """The wrap prefix an iptables manager derives from its program path: base name, first 16
    characters, spaces as ``_``. ``/usr/bin/neutron-openvswitch-agent`` → ``neutron-openvswi``."""
    return posixpath.basename(argv0)[:16].replace(" ", "_")


def chain_name(chain: str, *, wrap: bool = True) -> str:
    """A chain name cut the way iptables_manager cuts it: 11 characters when wrapped, else 28."""
    return chain[:MAX_CHAIN_LEN_WRAP if wrap else MAX_CHAIN_LEN_NOWRAP]


def wrapped_chain(binary: str, chain: str) -> str:
    """``<binary[:16]>-<chain[:11]>``: ``neutron-openvswi-sg-chain``, ``quantum-l3-agent-float-snat``."""
    return f"{binary[:16]}-{chain_name(chain)}"


class ChainKind(enum.StrEnum):
    """The per-port chains of the iptables firewall and the letter that starts their names."""

    INGRESS = "i"  # to the VM (--physdev-out tap)
    EGRESS = "o"  # from the VM (--physdev-in tap)
    SPOOF = "s"  # the MAC/IP anti-spoofing chain


SG_CHAIN = "sg-chain"
SG_FALLBACK = "sg-fallback"
LOCAL_CHAIN = "local"
SNAT_CHAIN = "snat"
FLOAT_SNAT_CHAIN = "float-snat"


def port_chain(kind: ChainKind, port_id: str) -> str:
    """A port's chain before wrapping: the letter + the first 10 characters of the port id."""
    return chain_name(f"{kind.value}{port_id}")


def sg_port_chain(binary: str, kind: ChainKind, port_id: str) -> str:
    """A port's wrapped chain: ``neutron-openvswi-i3f2a1b7c-d``, seed 000's ``quantum-openvswi-o7c7ae61e-0``."""
    return wrapped_chain(binary, port_chain(kind, port_id))


def filter_top(product: str = "neutron") -> str:
    """The shared, unwrapped chain FORWARD and OUTPUT jump to first: ``neutron-filter-top``
    (``quantum-filter-top``, ``nova-filter-top``)."""
    return f"{product}-filter-top"


def postrouting_bottom(product: str = "neutron") -> str:
    """The shared, unwrapped nat chain POSTROUTING jumps to last: ``neutron-postrouting-bottom``."""
    return f"{product}-postrouting-bottom"


def ipset_name(sg_id: str, ethertype: str = "IPv4") -> str:
    """A security group's ipset: ``N`` + ethertype + sg id, cut to 29 characters (``NIPv4a1b2c3d4-…``)."""
    return ("N" + ethertype + sg_id)[:IPSET_NAME_MAX_LEN]


def ipset_swap_name(sg_id: str, ethertype: str = "IPv4") -> str:
    """The temporary set a refill is restored into before ``ipset swap``."""
    return ipset_name(sg_id, ethertype) + IPSET_SWAP_SUFFIX


# --- dnsmasq files -------------------------------------------------------------------------------

NEUTRON_STATE_PATH = "/var/lib/neutron"
QUANTUM_STATE_PATH = "/var/lib/quantum"
NOVA_NETWORKS_PATH = "/var/lib/nova/networks"


class DhcpFile(enum.StrEnum):
    """The files the DHCP agent keeps per network in ``<state_path>/dhcp/<network>/``."""

    HOST = "host"
    ADDN_HOSTS = "addn_hosts"
    OPTS = "opts"
    LEASES = "leases"
    PID = "pid"
    INTERFACE = "interface"


def dhcp_conf_dir(network_id: str, state_path: str = NEUTRON_STATE_PATH) -> str:
    """``/var/lib/neutron/dhcp/<network>`` (Grizzly: ``/var/lib/quantum/dhcp/<network>``)."""
    return f"{state_path}/dhcp/{network_id}"


def dhcp_conf_file(network_id: str, kind: DhcpFile, state_path: str = NEUTRON_STATE_PATH) -> str:
    """One DHCP agent file: ``/var/lib/neutron/dhcp/<network>/host``, ``…/opts``, ``…/pid``."""
    return f"{dhcp_conf_dir(network_id, state_path)}/{kind.value}"


def dnsmasq_process_tag(network_id: str) -> str:
    """The ``PROCESS_TAG`` environment value the DHCP agent runs dnsmasq with."""
    return f"dnsmasq-{network_id}"


# --- nova-network --------------------------------------------------------------------------------

def nova_bridge(number: int) -> str:
    """A nova-network bridge: ``br100`` (FlatDHCP's ``flat_network_bridge``; VlanManager's ``br<vlan>``)."""
    return f"br{number}"


def nova_vlan_interface(vlan: int) -> str:
    """VlanManager's 802.1Q interface on the ``vlan_interface``: ``vlan100``."""
    return f"vlan{vlan}"


def libvirt_tap(index: int) -> str:
    """The tap libvirt names itself when nova-network gives no name: ``vnet0``, ``vnet1``…"""
    return f"vnet{index}"


def nova_instance_chain(instance_id: int) -> str:
    """nova-compute's per-instance chain before wrapping: ``inst-9``."""
    return f"inst-{instance_id}"


def nova_instance_chain_wrapped(instance_id: int, binary: str = IptablesBinary.NOVA_COMPUTE) -> str:
    """``nova-compute-inst-9`` (Nova does not cut its chain names the way Neutron does)."""
    return f"{binary}-{nova_instance_chain(instance_id)}"


def nova_dhcp_file(device: str, kind: str, networks_path: str = NOVA_NETWORKS_PATH) -> str:
    """nova-network's dnsmasq files per bridge: ``/var/lib/nova/networks/nova-br100.conf``
    (kinds ``conf``, ``pid``, ``opts``, ``leases``, ``hosts``)."""
    return f"{networks_path}/nova-{device}.{kind}"
