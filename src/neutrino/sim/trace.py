"""A trace is data: the ordered decisions the simulator took for one packet (``Trace -> Hop ->
Step``), and its verdict. Renderers print it at three levels (detailed, summary, minimal) and as
JSON; interpreters (OpenFlow, netfilter, the IP stack, Linux bridges, guests) return ``Step``s.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field


class StepKind(enum.Enum):
    DEVICE = "device"  # the packet crossed a device (veth, tap, patch, tunnel port)
    FLOW = "flow"  # an OpenFlow flow matched (text: the flow; detail: the actions' effect)
    NORMAL = "normal"  # OVS NORMAL / a Linux bridge switched (detail: learned or flooded, out port)
    RULE = "rule"  # an iptables rule decided (text: the -A line)
    POLICY = "policy"  # a built-in chain's policy decided
    CONNTRACK = "conntrack"  # the packet's conntrack state, zone, NAT binding used
    NAT = "nat"  # addresses or ports rewritten
    ROUTE = "route"  # a routing decision (text: the ip route line)
    ARP = "arp"  # neighbour resolution
    ENCAP = "encap"  # tunnel encapsulation / decapsulation
    DELIVER = "deliver"  # handed to a local socket or guest
    REPLY = "reply"  # a guest or service answered
    DROP = "drop"  # dropped (detail: why)


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    text: str  # the flow, rule or route that decided, as its tool prints it
    detail: str = ""  # what it did to the packet, in words
    obj: str = ""  # the OpenStack object behind the item, when known (an Origin's obj)


@dataclass(frozen=True, slots=True)
class Hop:
    """One element the packet went through: a host's namespace, Linux bridge or OVS bridge."""

    host: str
    element: str  # "root", "qrouter-…", "br-int", "qbr…", or a guest's name
    device: str = ""  # where it entered
    letter: str = ""  # the seed diagram's letter for that device, when it has one
    packet: str = ""  # the packet's one-line summary on entering
    steps: tuple[Step, ...] = ()
    frame: object = field(default=None, compare=False, repr=False)  # the packet itself (for pcap)


class VerdictKind(enum.Enum):
    DELIVERED = "delivered"
    DROPPED = "dropped"


class DropReason(enum.Enum):
    NO_ROUTE = "no route"
    ARP_UNANSWERED = "ARP unanswered"
    SECURITY_GROUP = "security group"
    ANTI_SPOOFING = "anti-spoofing"
    NO_FLOW = "no flow matched"
    FLOW_DROP = "explicit drop flow"
    VLAN_MISMATCH = "VLAN/VNI mismatch"
    MISSING_NAT = "missing NAT"
    PORT_DOWN = "port down"
    MTU = "MTU"
    FIREWALL = "iptables rule"
    NO_LISTENER = "nothing listening"
    TTL = "TTL exceeded"
    LOOP = "loop"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    reason: DropReason | None = None
    where: str = ""  # host/element where it ended
    obj: str = ""  # the OpenStack object responsible, when known
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Trace:
    hops: tuple[Hop, ...]
    verdict: Verdict
    reply: Trace | None = None
    forks: tuple[Trace, ...] = field(default=())  # copies a flood sent elsewhere, traced separately

    @property
    def delivered(self) -> bool:
        return self.verdict.kind is VerdictKind.DELIVERED


def render(trace: Trace, level: str = "summary") -> str:
    """``detailed``: every step; ``summary``: each hop with its deciding steps; ``minimal``: the
    hops on one line each and the verdict (what regression tests compare)."""
    lines: list[str] = []
    for hop in trace.hops:
        where = f"{hop.host} {hop.element}" + (f" [{hop.device}]" if hop.device else "") + (
            f" ({hop.letter})" if hop.letter else "")
        if level == "minimal":
            lines.append(where)
            continue
        lines.append(where + (f": {hop.packet}" if hop.packet and level == "detailed" else ""))
        for st in hop.steps:
            if level == "summary" and st.kind in (StepKind.DEVICE, StepKind.CONNTRACK):
                continue
            text = f"    {st.kind.value}: {st.text}" + (f"  -> {st.detail}" if st.detail else "")
            lines.append(text + (f"  [{st.obj}]" if st.obj and level == "detailed" else ""))
    v = trace.verdict
    end = v.kind.value if v.reason is None else f"{v.kind.value}: {v.reason.value}"
    lines.append(f"=> {end}" + (f" at {v.where}" if v.where else "") + (f" ({v.obj})" if v.obj else "")
                 + (f": {v.detail}" if v.detail and level != "minimal" else ""))
    if trace.reply is not None:
        lines.append("reply:")
        lines.extend("  " + ln for ln in render(trace.reply, level).splitlines())
    return "\n".join(lines) + "\n"


def _plain(trace: Trace) -> dict[str, object]:
    return {
        "hops": [{"host": h.host, "element": h.element, "device": h.device, "letter": h.letter,
                  "packet": h.packet, "steps": [{"kind": st.kind.value, "text": st.text, "detail": st.detail,
                                                 "obj": st.obj} for st in h.steps]} for h in trace.hops],
        "verdict": {"kind": trace.verdict.kind.value,
                    "reason": trace.verdict.reason.value if trace.verdict.reason else None,
                    "where": trace.verdict.where, "obj": trace.verdict.obj, "detail": trace.verdict.detail},
        "reply": _plain(trace.reply) if trace.reply is not None else None,
    }


def to_json(trace: Trace) -> str:
    return json.dumps(_plain(trace), indent=1)


def frames(trace: Trace) -> list[object]:
    """The packet as it entered each hop, request then reply (what a pcap of the trace holds)."""
    out = [h.frame for h in trace.hops if h.frame is not None]
    if trace.reply is not None:
        out.extend(frames(trace.reply))
    return out
