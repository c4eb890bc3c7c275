"""A Linux bridge: MAC learning, flooding, the bridge's own device, and the br_netfilter hook.

Frames to the bridge's MAC (or to the MAC of one of its ports, which the kernel keeps as
permanent "local" entries) go up to the namespace's IP stack; broadcasts go up and out of every
other port; unicast to a learned MAC goes out its port, otherwise it floods. ``ageing=0`` (what
os-vif sets on ``qbr`` bridges) means no entry is ever learned, so every frame floods.

IPv4 frames bridged between two ports traverse iptables' FORWARD chain with physdev matches when
``net.bridge.bridge-nf-call-iptables`` is 1: :attr:`BridgeOutput.netfilter` tells the
orchestrator to run that hook, with ``physdev_in`` the input port and each output port as
``physdev_out``.

>>> from neutrino.host.bridge import BridgeInfo
>>> from neutrino.sim.packets import arp_request, ip, mac
>>> br = LinuxBridgeSim(BridgeInfo("br100", "8000.0800278f87fa", False, ("eth2", "vnet0")), {})
>>> out = br.receive("vnet0", arp_request(mac("fa:16:3e:2c:e8:ec"), ip("10.0.0.2"), ip("10.0.0.1")))
>>> out.ports, out.up, out.flooded
(('eth2',), True, True)
>>> br.lookup(mac("fa:16:3e:2c:e8:ec"))
'vnet0'
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from neutrino.host.bridge import BridgeInfo
from neutrino.sim.packets import Dot1Q, Ethernet, EtherType, Mac
from neutrino.sim.trace import Step, StepKind, new_step

DEFAULT_AGEING = 300
"""The kernel's default ``ageing_time`` in seconds."""


@dataclass(frozen=True, slots=True)
class PortInfo:
    """A port of the bridge: the host-side device's MAC (a permanent local FDB entry). The model
    has no VLAN filtering."""

    mac: Mac | None = None


@dataclass(frozen=True, slots=True)
class BridgeOutput:
    """Where one frame goes: out of ``ports`` (in bridge port order), and ``up`` to the bridge's
    own device. ``netfilter``: run the FORWARD hook (br_netfilter) with ``physdev_in`` and each
    output port as ``physdev_out`` before sending."""

    ports: tuple[str, ...]
    up: bool
    flooded: bool
    step: Step
    netfilter: bool = False
    physdev_in: str | None = None


def bridge_mac(info: BridgeInfo) -> Mac:
    """The bridge device's MAC, from its id (``8000.0800278f87fa`` → ``08:00:27:8f:87:fa``)."""
    return Mac(int(info.bridge_id.split(".", 1)[1], 16))


def _multicast(m: Mac) -> bool:
    return bool((m.value >> 40) & 1)


def _is_ipv4(frame: Ethernet) -> bool:
    # bridge-nf-filter-vlan-tagged is 0 by default: tagged frames skip iptables
    return frame.type == EtherType.IPV4 and not isinstance(frame.payload, Dot1Q)


class LinuxBridgeSim:
    """One Linux bridge. ``ports`` gives the MACs of the port devices (ports of ``info`` missing
    from it have none known); ``ageing`` defaults to 0 for ``qbr…`` bridges (os-vif) and 300
    otherwise; ``nf_call_iptables`` is ``net.bridge.bridge-nf-call-iptables`` (1 in the model)."""

    def __init__(self, info: BridgeInfo, ports: Mapping[str, PortInfo], *, mac: Mac | None = None,
                 ageing: int | None = None, nf_call_iptables: bool = True) -> None:
        self.info = info
        self.name = info.name
        self.ports: tuple[str, ...] = tuple(info.interfaces)
        self.port_info: dict[str, PortInfo] = {p: ports.get(p, PortInfo()) for p in self.ports}
        self.mac = mac if mac is not None else bridge_mac(info)
        self.ageing = ageing if ageing is not None else (0 if info.name.startswith("qbr") else DEFAULT_AGEING)
        self.nf_call_iptables = nf_call_iptables
        self._fdb: dict[Mac, str] = {}
        self._local = {pi.mac for pi in self.port_info.values() if pi.mac is not None} | {self.mac}
        self._seen: dict[tuple[str, int, int, bool], BridgeOutput] = {}  # see receive

    def __getstate__(self) -> dict[str, object]:
        """Everything but the remembered decisions (:meth:`receive`)."""
        state = dict(self.__dict__)
        del state["_seen"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._seen = {}

    def lookup(self, m: Mac) -> str | None:
        """The port ``m`` was learned on."""
        return self._fdb.get(m)

    def fdb(self) -> tuple[tuple[Mac, str], ...]:
        """The learned entries (``bridge fdb``'s dynamic ones), by MAC."""
        return tuple(sorted(self._fdb.items(), key=lambda kv: kv[0].value))

    def take_over(self, old: LinuxBridgeSim) -> None:
        """Keep what ``old`` (this bridge before a change) learned on ports it still has."""
        for m, port in old._fdb.items():
            if port in self.port_info and m not in self._local:
                self._fdb[m] = port
        self._seen.clear()

    def forget(self, macs: Collection[Mac]) -> None:
        """Drop the entries of ``macs`` (instances that are gone)."""
        for m in [m for m in self._fdb if m in macs]:
            del self._fdb[m]
        self._seen.clear()

    def receive(self, in_port: str, frame: Ethernet) -> BridgeOutput:
        """A frame arriving on ``in_port``. A decision that learned nothing is remembered: it
        reads besides the port only the frame's MACs and whether it is untagged IPv4, and the
        forwarding table, whose every change forgets them all (the bridge's ports never change)."""
        if in_port not in self.port_info:
            raise KeyError(f"{in_port} is not a port of {self.name}")
        notes: list[str] = []
        if self.ageing != 0 and not _multicast(frame.src) and frame.src not in self._local:
            if self._fdb.get(frame.src) != in_port:
                notes.append(f"learned {frame.src} on {in_port}")
                self._seen.clear()
            self._fdb[frame.src] = in_port
        # (:func:`_is_ipv4`, inline)
        key = (in_port, frame.src.value, frame.dst.value,
               frame.type == EtherType.IPV4 and not isinstance(frame.payload, Dot1Q))
        if not notes:
            got = self._seen.get(key)
            if got is not None:
                return got
        out = self._decide(in_port, frame, notes)
        if not notes:
            if len(self._seen) >= 4096:
                self._seen.clear()
            self._seen[key] = out
        return out

    def _decide(self, in_port: str, frame: Ethernet, notes: list[str]) -> BridgeOutput:
        """:meth:`receive`'s decision, after learning (``notes``: what it learned)."""
        others = tuple(p for p in self.ports if p != in_port)
        if _multicast(frame.dst):
            return self._out(others, True, True, in_port, frame, notes + [f"{frame.dst}: flooded"])
        if frame.dst in self._local:
            return self._out((), True, False, in_port, frame, notes + [f"{frame.dst} is local: up to {self.name}"])
        port = self._fdb.get(frame.dst)
        if port is None:
            why = "ageing 0, never learned" if self.ageing == 0 else "unknown unicast"
            return self._out(others, False, True, in_port, frame, notes + [f"{frame.dst} {why}: flooded"])
        if port == in_port:
            return self._out((), False, False, in_port, frame, notes + [f"{frame.dst} is on {in_port}: filtered"])
        return self._out((port,), False, False, in_port, frame, notes + [f"{frame.dst} learned on {port}"])

    def send(self, frame: Ethernet) -> BridgeOutput:
        """A frame the bridge's own device transmits (from the IP stack)."""
        port = None if _multicast(frame.dst) else self._fdb.get(frame.dst)
        if port is not None:
            return self._out((port,), False, False, None, frame, [f"{frame.dst} learned on {port}"])
        return self._out(self.ports, False, True, None, frame, [f"{frame.dst}: flooded from {self.name}"])

    def _out(self, ports: tuple[str, ...], up: bool, flooded: bool, in_port: str | None, frame: Ethernet,
             notes: list[str]) -> BridgeOutput:
        nf = self.nf_call_iptables and in_port is not None and bool(ports) and _is_ipv4(frame)
        outs = ", ".join(ports) if ports else "none"
        detail = "; ".join(notes) + f" -> out {outs}" + (f", up to {self.name}" if up else "")
        if nf:
            detail += " (br_netfilter FORWARD, physdev)"
        return BridgeOutput(ports, up, flooded, new_step(StepKind.NORMAL, f"{self.name} [{in_port or self.name}]",
                                                         detail, ""), nf, in_port)
