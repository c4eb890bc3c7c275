"""OVS's ``NORMAL`` action: a VLAN-aware learning switch over a bridge's ports.

The port model follows ``ovs-vswitchd.conf.db(5)``: a Port row's ``vlan_mode`` (or, when empty,
access if ``tag`` is set and trunk otherwise) decides which VLAN an incoming frame belongs to and
how it leaves each port. Patch and tunnel ports have no tag, so they are trunks; the bridge's own
internal port is an access port when it has a tag. MAC learning is per (VLAN, MAC). VLAN 4095 is
Neutron's dead VLAN: NORMAL never switches it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from neutrino.host.openflow_fields import Mac
from neutrino.sim.packets import Dot1Q, Ethernet, pop_vlan, push_vlan

__all__ = ["DEAD_VLAN", "OFPP_LOCAL", "Kept", "MacTable", "PortIndex", "PortKind", "SimPort", "TUNNEL_TYPES",
           "Unfollowed", "normal"]

OFPP_LOCAL = 0xFFFE
"""The bridge's own port (``LOCAL``) as a 16-bit OpenFlow port number."""
DEAD_VLAN = 4095
TUNNEL_TYPES = frozenset({"gre", "gre64", "vxlan", "geneve", "stt", "lisp", "erspan", "ip6gre", "ip6erspan",
                          "gtpu", "bareudp"})


class PortKind(enum.Enum):
    SYSTEM = "system"
    INTERNAL = "internal"
    PATCH = "patch"
    TUNNEL = "tunnel"


@dataclass(frozen=True, slots=True)
class SimPort:
    """One OpenFlow port of a simulated bridge with the VLAN settings of its Port row."""

    name: str
    number: int
    kind: PortKind = PortKind.SYSTEM
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    vlan_mode: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    @property
    def mode(self) -> str:
        """``access``, ``trunk``, ``native-tagged`` or ``native-untagged`` (OVS's default rule)."""
        if self.vlan_mode:
            return self.vlan_mode
        return "access" if self.tag is not None else "trunk"

    def option(self, key: str) -> str | None:
        return next((v for k, v in self.options if k == key), None)

    def input_vlan(self, vid: int | None) -> int | None:
        """The VLAN of a frame arriving here with outer tag ``vid`` (None: untagged); None drops it."""
        mode = self.mode
        if mode == "access":
            if vid:  # a priority tag (VID 0) is accepted as untagged
                return None
            return self.tag
        if mode in ("native-tagged", "native-untagged") and not vid and self.tag is not None:
            return self.tag
        vlan = vid or 0
        if mode.startswith("native") and vlan == self.tag:
            return vlan
        if self.trunks and vlan not in self.trunks:
            return None
        return vlan

    def carries(self, vlan: int) -> bool:
        mode = self.mode
        if mode == "access":
            return vlan == self.tag
        if mode.startswith("native") and vlan == self.tag:
            return True
        return not self.trunks or vlan in self.trunks

    def egress(self, inner: Ethernet, vlan: int, pcp: int) -> Ethernet:
        """The frame as it leaves this port: ``inner`` (untagged) with the VLAN's tag if the port tags it."""
        mode = self.mode
        untagged = mode == "access" or vlan == 0 or (mode == "native-untagged" and vlan == self.tag)
        return inner if untagged else push_vlan(inner, vlan, pcp=pcp)


class MacTable:
    """NORMAL's forwarding database: (VLAN, MAC) → port name, in learning order. ``changes``
    counts the changes made to it (a learned or moved entry, a clear, a forget)."""

    changes = 0  # (a class default: a table pickled before the counter existed has none)

    def __init__(self) -> None:
        self._entries: dict[tuple[int, Mac], str] = {}

    def learn(self, vlan: int, mac: Mac, port: str) -> bool:
        """Record ``mac`` on ``port``; True when that is new or moved."""
        key = (vlan, mac)
        if self._entries.get(key) == port:
            return False
        self._entries[key] = port
        self.changes += 1
        return True

    def lookup(self, vlan: int, mac: Mac) -> str | None:
        return self._entries.get((vlan, mac))

    def entries(self) -> tuple[tuple[int, Mac, str], ...]:
        """``(vlan, mac, port)`` as ``ovs-appctl fdb/show`` lists them (learning order)."""
        return tuple((v, m, p) for (v, m), p in self._entries.items())

    def clear(self) -> None:
        self._entries.clear()
        self.changes += 1

    def forget(self, macs: Collection[Mac]) -> None:
        """Drop the entries of ``macs``."""
        for key in [k for k in self._entries if k[1] in macs]:
            del self._entries[key]
        self.changes += 1


Unfollowed = Callable[[Ethernet, Sequence[str]], Collection[str]]
"""Given a frame a bridge floods (untagged) and the ports it floods it to, the ports whose copies
the caller will not follow (a copy leaves a port tagged or not, the same frame otherwise)."""


class Kept(Collection[str]):
    """An :data:`Unfollowed` answer given the other way round: the positions (ascending) in the
    flooded ports' ``names`` of the copies the caller follows; the names at no kept position are
    the unfollowed ones. :func:`normal` builds only the kept copies (no walk over every flooded
    port); anyone else sees the set of unfollowed names."""

    __slots__ = ("names", "kept", "_out")

    def __init__(self, names: tuple[str, ...], kept: tuple[int, ...]) -> None:
        self.names = names
        self.kept = kept
        self._out: frozenset[str] | None = None

    def _skipped(self) -> frozenset[str]:
        out = self._out
        if out is None:
            kept = {self.names[i] for i in self.kept}
            out = self._out = frozenset(n for n in self.names if n not in kept)
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._skipped()

    def __iter__(self) -> Iterator[str]:
        return iter(self._skipped())

    def __len__(self) -> int:
        return len(self._skipped())


class PortIndex:
    """A bridge's ports (in port-number order) with the lookups NORMAL makes: a port by name (the
    first of that name), and the ports that carry a VLAN, worked out once per VLAN. The ports
    never change (a bridge whose ports change is built again), so neither do the answers."""

    __slots__ = ("ports", "by_name", "_carrying", "_flood")

    def __init__(self, ports: Sequence[SimPort]) -> None:
        self.ports = tuple(ports)
        self.by_name: dict[str, SimPort] = {}
        for p in self.ports:
            self.by_name.setdefault(p.name, p)
        self._carrying: dict[int, tuple[SimPort, ...]] = {}
        self._flood: dict[tuple[int, str], tuple[tuple[SimPort, ...], tuple[str, ...], str]] = {}

    def carrying(self, vlan: int) -> tuple[SimPort, ...]:
        got = self._carrying.get(vlan)
        if got is None:
            got = self._carrying[vlan] = tuple(p for p in self.ports if p.carries(vlan))
        return got

    def flood(self, vlan: int, in_name: str) -> tuple[tuple[SimPort, ...], tuple[str, ...], str]:
        """The ports a frame of ``vlan`` arriving on port ``in_name`` floods to, their names, and
        the names joined for the trace (worked out once per VLAN and input port: ports never change)."""
        key = (vlan, in_name)
        got = self._flood.get(key)
        if got is None:
            targets = tuple([p for p in self.carrying(vlan) if p.name != in_name])  # (comprehensions: a
            names = tuple([p.name for p in targets])  # guest's own port floods once, to its VLAN's ports)
            got = self._flood[key] = (targets, names, ", ".join(names))
        return got


def normal(ports: Sequence[SimPort] | PortIndex, in_port: SimPort, frame: Ethernet, fdb: MacTable, *,
           unfollowed: Unfollowed | None = None,
           ) -> tuple[tuple[tuple[SimPort, Ethernet], ...], str, int]:
    """Switch ``frame`` (as the pipeline holds it, tags included) that arrived on ``in_port``.

    Returns the copies to send (port, frame) in port-number order, a sentence for the trace, and
    how many flooded copies were left out because ``unfollowed(untagged frame, port names)`` said
    the caller would not follow them (they are named in the sentence all the same).
    """
    index = ports if isinstance(ports, PortIndex) else PortIndex(ports)
    tag = frame.payload if isinstance(frame.payload, Dot1Q) else None
    vlan = in_port.input_vlan(tag.vid if tag is not None else None)
    if vlan is None:
        why = (f"VLAN {tag.vid} tagged frame on access port {in_port.name}" if in_port.mode == "access" and tag
               else f"VLAN {tag.vid if tag else 0} not trunked on {in_port.name}")
        return (), f"dropped: {why}", 0
    if vlan == DEAD_VLAN:
        return (), f"dropped: VLAN {DEAD_VLAN} is the dead VLAN", 0
    inner = pop_vlan(frame) if tag is not None else frame
    pcp = tag.pcp if tag is not None else 0
    notes: list[str] = []
    # (a MAC's multicast bit read as a number: NORMAL runs on every replayed pass through br-int)
    if not frame.src.value & 0x010000000000 and fdb.learn(vlan, frame.src, in_port.name):
        notes.append(f"learned {frame.src} on VLAN {vlan} at {in_port.name}")
    multicast = frame.dst.value & 0x010000000000
    known = None if multicast else fdb.lookup(vlan, frame.dst)
    if known is not None:
        if known == in_port.name:
            notes.append(f"{frame.dst} is on the input port {known}: dropped")
            return (), "; ".join(notes), 0
        port = index.by_name.get(known)
        if port is not None and port.carries(vlan):
            notes.append(f"{frame.dst} known on VLAN {vlan} at {known}: forwarded")
            return ((port, port.egress(inner, vlan, pcp)),), "; ".join(notes), 0
    targets, names, joined = index.flood(vlan, in_port.name)
    what = "broadcast" if frame.dst.value == 0xFFFFFFFFFFFF else (
        "multicast" if multicast else f"unknown {frame.dst}")
    if not targets:
        notes.append(f"{what} on VLAN {vlan}: no other port in the VLAN, dropped")
        return (), "; ".join(notes), 0
    notes.append(f"{what} on VLAN {vlan}: flooded to {joined}")
    skip = unfollowed(inner, names) if unfollowed is not None else ()
    if type(skip) is Kept and skip.names is names:
        copies = tuple((targets[i], targets[i].egress(inner, vlan, pcp)) for i in skip.kept)
    else:
        copies = tuple((p, p.egress(inner, vlan, pcp)) for p in targets if p.name not in skip)
    return copies, "; ".join(notes), len(targets) - len(copies)
