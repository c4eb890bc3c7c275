"""What ``ovs-appctl fdb/show BR`` and ``ovs-dpctl show`` print, as Open vSwitch 3.1 prints it.

Neither is kept in a host state: the MAC table is learned by traffic and the datapath is what
ovs-vswitchd makes of the bridges. For a planned host (no traffic yet) the MAC table is empty and
the datapath follows from ``ovs-vsctl show``: one datapath per type (``system@ovs-system`` for the
kernel, ``netdev@ovs-netdev`` for the userspace one) whose port 0 is the datapath's own device, then
the bridges' own ports and devices, one port per tunnel type (``gre_sys``, ``vxlan_sys_4789``,
``genevsys_6081``) for all of the tunnels, and none for patch ports (``lib/dpctl.c``, ``show_dpif``).
The kernel numbers ports in the order they are added; here that is the order ``ovs-vsctl show`` lists
the bridges and their ports.
"""

from __future__ import annotations

from dataclasses import dataclass

from neutrino.host.ovsdb import Bridge

FDB_HEADER = " port  VLAN  MAC                Age"


@dataclass(frozen=True, slots=True)
class FdbEntry:
    """One learned MAC: the OpenFlow port, VLAN, MAC and age in seconds."""

    port: int | str
    vlan: int
    mac: str
    age: int


def format_fdb_show(entries: tuple[FdbEntry, ...] = ()) -> str:
    """``ovs-appctl fdb/show BR`` (``lib/mac-learning.c``: ``%5s  %4d  ETH_ADDR_FMT  %3d``)."""
    return FDB_HEADER + "\n" + "".join(f"{e.port!s:>5}  {e.vlan:4d}  {e.mac}  {e.age:3d}\n" for e in entries)


@dataclass(frozen=True, slots=True)
class DatapathPort:
    number: int
    name: str
    type: str = "system"  # "system" prints no type
    config: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Datapath:
    type: str  # "system" or "netdev"
    ports: tuple[DatapathPort, ...]

    @property
    def name(self) -> str:
        return f"{self.type}@ovs-{self.type}"


_TUNNEL_DEVICES = {"gre": "gre_sys", "vxlan": "vxlan_sys_4789", "geneve": "genev_sys_6081"}


def datapaths_of(bridges: tuple[Bridge, ...]) -> tuple[Datapath, ...]:
    """The datapaths ovs-vswitchd makes for ``bridges`` (see the module's docstring)."""
    out: list[Datapath] = []
    for dp_type in ("netdev", "system"):
        mine = [b for b in bridges if (b.datapath_type or "system") == dp_type]
        if not mine:
            continue
        internal = "tap" if dp_type == "netdev" else "internal"
        ports = [DatapathPort(0, f"ovs-{dp_type}", internal)]
        tunnels: set[str] = set()
        for b in mine:
            names = [b.name] + [p.name for p in b.ports if p.name != b.name]
            for name in names:
                port = b.port(name)
                iface = next((i for i in port.interfaces), None) if port is not None else None
                kind = (iface.type if iface is not None else "internal" if name == b.name else None) or "system"
                if kind == "patch":
                    continue
                if kind in _TUNNEL_DEVICES:
                    if kind not in tunnels:
                        tunnels.add(kind)
                        ports.append(DatapathPort(len(ports), _TUNNEL_DEVICES[kind], kind,
                                                  (("packet_type", "ptap"),)))
                    continue
                ports.append(DatapathPort(len(ports), name, internal if kind == "internal" else kind))
        out.append(Datapath(dp_type, tuple(ports)))
    return tuple(out)


def format_dpctl_show(datapaths: tuple[Datapath, ...]) -> str:
    """``ovs-dpctl show`` with zero counters (the kernel datapath also prints its mask statistics)."""
    out = ""
    for dp in datapaths:
        out += f"{dp.name}:\n  lookups: hit:0 missed:0 lost:0\n  flows: 0\n"
        if dp.type == "system":
            out += "  masks: hit:0 total:0 hit/pkt:0.00\n"
        for p in dp.ports:
            out += f"  port {p.number}: {p.name}"
            if p.type != "system":
                out += f" ({p.type}" + "".join(f"{',' if i else ':'} {k}={v}" for i, (k, v) in enumerate(p.config)) + ")"
            out += "\n"
    return out
