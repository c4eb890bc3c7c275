"""The os-vif plug of instance ports: the hybrid chain tap → qbr → qvb/qvo (reference §6.1).

For each instance port bound to the host with ``ovs_hybrid_plug`` (administratively down ones too:
os-vif plugs them, the agent only isolates them), the root namespace gets (in creation order) the
Linux bridge ``qbr<id>``, the veth pair ``qvo<id>``/``qvb<id>`` (``ip link add qvb type veth peer
name qvo`` registers the peer first), both promiscuous with the network MTU,
qvb enslaved to the qbr and qvo to ``ovs-system`` (the kernel datapath; none on ``netdev``), and
libvirt's ``tap<id>`` in the qbr. A port plugged straight into OVS gets only its tap.

MACs. The kernel gives veths random addresses and libvirt gives the tap the VM's MAC with the
first byte ``fe``. Here a veth end's MAC is :func:`neutrino.plan.ovs_int.device_mac` of (host,
device name): sha256, first 6 bytes, unicast and locally administered. A Linux bridge takes the
lowest MAC of its ports, so the qbr's MAC and ``brctl``'s bridge id (``8000.<mac>``) follow; with
the tap at ``fe:…`` that is nearly always the qvb's, as in seed 001 (``8000.5e414374148d``).
``brctl show`` lists a bridge's interfaces sorted by name (qvb before tap).
"""

from __future__ import annotations

import operator

from neutrino.host.bridge import BridgeInfo
from neutrino.host.fastnew import maker
from neutrino.host.iproute import IprouteStyle
from neutrino.host.iproute_link import Link, LinkKind, OperState
from neutrino.host.openflow_fields import Mac
from neutrino.host.state import Origin
from neutrino.plan import naming
from neutrino.plan.ovs_int import (
    OVS_SYSTEM,
    OvsContext,
    PlugKind,
    PlugPort,
    device_mac,
    network_mtu,
    new_origin,
)

BUILDER = "hybrid_plug"
UP = ("BROADCAST", "MULTICAST", "UP", "LOWER_UP")
UP_PROMISC = ("BROADCAST", "MULTICAST", "PROMISC", "UP", "LOWER_UP")


def tap_mac(vm_mac: str) -> Mac:
    """libvirt's tap MAC: the VM's with the first byte ``fe`` (``fa:16:3e:…`` → ``fe:16:3e:…``)."""
    return Mac((Mac.parse(vm_mac).value & 0x00FFFFFFFFFF) | (0xFE << 40))


def _link(ctx: OvsContext, name: str, kind: LinkKind, mac: Mac, mtu: int, *, master: str | None = None,
          peer: str | None = None, promisc: bool = False) -> Link:
    if kind is LinkKind.BRIDGE:  # (by identity: an enum member's hash is Python code, four links a port)
        qdisc = "noqueue"
    elif kind is LinkKind.VETH:
        qdisc = "noqueue" if ctx.modern else "pfifo_fast"
    elif kind is LinkKind.TAP:
        qdisc = "fq_codel" if ctx.modern else "pfifo_fast"
    else:
        raise KeyError(kind)
    # Link(0, name, peer=peer, flags=…, mtu=mtu, qdisc=qdisc, master=master, state=…, qlen=…,
    # link_type="ether", mac=str(mac), brd="ff:ff:ff:ff:ff:ff", kind=kind): every field in order
    return _new_link(0, name, peer, UP_PROMISC if promisc else UP, mtu, qdisc, master,
                     OperState.UNKNOWN if kind is LinkKind.TAP else OperState.UP, None, None,
                     None if kind is LinkKind.BRIDGE else 1000, "ether", str(mac), "ff:ff:ff:ff:ff:ff", False, None,
                     None, None, None, None, (), (), kind, IprouteStyle.LEGACY)


#: ``Link(*every_field)``, made about twice as fast (a host has four links per instance port). The
#: links made here have no ``group``: the style ``Link.__post_init__`` would give them is LEGACY,
#: which :func:`_link` passes itself
_new_link = maker(Link, post_init_needed=False)


_new_bridge = maker(BridgeInfo)
_VALUE = operator.attrgetter("value")


def bridge_id(macs: list[Mac]) -> str:
    """``brctl``'s bridge id: default priority 8000 and the bridge's (lowest port) MAC."""
    return f"8000.{min(macs).value:012x}"


def hybrid_plug(ctx: OvsContext, plugs: tuple[PlugPort, ...]
                ) -> tuple[tuple[Link, ...], tuple[BridgeInfo, ...], tuple[Origin, ...]]:
    """The root-namespace links, ``brctl`` rows and their origins for the host's instance ports."""
    links: list[Link] = []
    bridges: list[BridgeInfo] = []
    origins: list[Origin] = []
    ovs_master = OVS_SYSTEM if ctx.datapath_type == "system" else None
    for p in plugs:
        if p.kind not in (PlugKind.VM_HYBRID, PlugKind.VM):
            continue
        mtu = network_mtu(ctx, p.network)
        obj = f"port {p.port.id}"
        tap, qbr, qvb, qvo = naming.hybrid_devices(p.port.id)
        tmac = tap_mac(p.port.mac_address)
        if p.kind is PlugKind.VM:
            made = [_link(ctx, tap, LinkKind.TAP, tmac, mtu, master=ovs_master)]
        else:
            vb, vo = device_mac(ctx.host.name, qvb), device_mac(ctx.host.name, qvo)
            members = sorted([(qvb, vb), (tap, tmac)])
            bmac = min((m for _, m in members), key=_VALUE)  # (Mac's order is its value's)
            made = [_link(ctx, qbr, LinkKind.BRIDGE, bmac, mtu),
                    _link(ctx, qvo, LinkKind.VETH, vo, mtu, master=ovs_master, peer=qvb, promisc=True),
                    _link(ctx, qvb, LinkKind.VETH, vb, mtu, master=qbr, peer=qvo, promisc=True),
                    _link(ctx, tap, LinkKind.TAP, tmac, mtu, master=qbr)]
            bridges.append(_new_bridge(qbr, f"8000.{bmac.value:012x}", False, (members[0][0], members[1][0])))
        links += made
        origins += [new_origin("link", lk.name, obj, BUILDER) for lk in made]
    return tuple(links), tuple(bridges), tuple(origins)
