"""A trace is data: the ordered decisions the simulator took for one packet (``Trace -> Hop ->
Step``), and its verdict. Renderers print it at three levels (detailed, summary, minimal) and as
JSON; interpreters (OpenFlow, netfilter, the IP stack, Linux bridges, guests) return ``Step``s.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from neutrino.host.fastnew import maker


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

    @classmethod
    def later(cls, kind: StepKind, make: Callable[[], str], detail: str = "", obj: str = "") -> Step:
        """A step whose ``text`` is ``make()``, called when the text is first read (most steps'
        texts never are: a boot's firewall rules are each met by one guest's packets, and only
        a record someone prints or compares reads them). ``make`` must give the same text
        whenever it is called (e.g. an immutable rule formatted): reading, comparing, hashing,
        printing and pickling the step all read the field by name, so they see that text."""
        if cls is not Step:
            step = cls(kind, "", detail, obj)
            _TEXT_SLOT.__set__(step, _Later(make))
            return step
        return new_step(kind, _Later(make), detail, obj)


class _Later:
    """The value of a :meth:`Step.later` step's ``text`` slot until it is read."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], str]) -> None:
        self.make = make


_TEXT_SLOT = Step.__dict__["text"]  # the slot's own descriptor, under the property below


def _step_text(step: Step) -> str:
    text = _TEXT_SLOT.__get__(step, Step)
    if type(text) is _Later:
        text = text.make()
        _TEXT_SLOT.__set__(step, text)
    return text  # type: ignore[no-any-return]


def _set_step_text(step: Step, text: str) -> None:
    _TEXT_SLOT.__set__(step, text)


# ``Step.text`` read through a property (as ``Hop.packet`` below): equality, hashing, repr,
# pickling and ``dataclasses.replace`` all read the field by name, so they see the made text.
Step.text = property(_step_text, _set_step_text)  # type: ignore[assignment,misc]
new_step: Callable[..., Step] = maker(Step)  # (its twin's own slot stores the text: the property is Step's alone)
"""``Step(kind, text, detail, obj)``, made fast (every field, in order): for the steps made by the
ten thousand (a boot makes some 75,000: each bridge pass's flow and NORMAL steps, each hook's)."""


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
    obj: str = ""  # the OpenStack object the device belongs to (a port, a router, a network), named

    @classmethod
    def entered(cls, host: str, element: str, device: str, letter: str, steps: tuple[Step, ...],
                frame: object, obj: str = "") -> Hop:
        """A hop whose ``packet`` is ``frame``'s summary, formatted when first read (most hops'
        never are: a probe's caller prints or compares few of them). ``frame`` is immutable, so
        the text is what formatting it now would give. Made by the fast constructor
        (:func:`neutrino.host.fastnew.maker`: a probe makes one per element it crosses)."""
        if cls is not Hop:
            return cls(host, element, device, letter, _UNFORMATTED, steps, frame, obj)  # type: ignore[arg-type]
        return _new_hop(host, element, device, letter, _UNFORMATTED, steps, frame, obj)


class _Unformatted:
    """The value of a :meth:`Hop.entered` hop's ``packet`` slot until it is read."""


_UNFORMATTED = _Unformatted()
_PACKET_SLOT = Hop.__dict__["packet"]  # the slot's own descriptor, under the property below


def _hop_packet(hop: Hop) -> str:
    text = _PACKET_SLOT.__get__(hop, Hop)
    if text is _UNFORMATTED:
        from neutrino.sim.packets import summary

        text = summary(hop.frame)  # type: ignore[arg-type]
        _PACKET_SLOT.__set__(hop, text)
    return text  # type: ignore[no-any-return]


def _set_hop_packet(hop: Hop, text: str) -> None:
    _PACKET_SLOT.__set__(hop, text)


# ``Hop.packet`` read through a property: equality, hashing, repr, pickling and
# ``dataclasses.replace`` all read the field by name, so they see the formatted text.
Hop.packet = property(_hop_packet, _set_hop_packet)  # type: ignore[assignment,misc]
_new_hop = maker(Hop)  # (its twin's own slot stores the packet: the property above is Hop's alone)
new_hop = _new_hop
"""``Hop(host, element, device, letter, packet, steps, frame, obj)``, made fast (every field, in
order); with :data:`UNFORMATTED` as ``packet`` it is :meth:`Hop.entered`'s hop, without that
method's call (the world's loop makes one per element a probe crosses)."""
UNFORMATTED = _UNFORMATTED


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
    REFUSED = "connection refused"  # the answer was a TCP reset
    UNREACHABLE = "ICMP unreachable"  # the answer was an ICMP error
    NO_REPLY = "no reply"  # the request arrived; nothing came back
    IGNORED = "ignored by the service"  # a service (dnsmasq) took the packet and discarded it


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
    packet: tuple[tuple[str, str], ...] = ()  # the probe's packet, field by field, when it was specified

    @property
    def delivered(self) -> bool:
        return self.verdict.kind is VerdictKind.DELIVERED

    @property
    def succeeded(self) -> bool:
        """The exchange worked: the request arrived and, when an answer is expected, the answer
        came back and was not a refusal (a TCP reset, an ICMP error)."""
        return self.delivered and (self.reply is None or self.reply.delivered)

    @property
    def answered(self) -> bool:
        """The destination answered: its reply came back, accepting (an echo reply, a SYN-ACK) or
        refusing (a TCP reset from a closed port) — what a probe from a real host calls reached."""
        return self.delivered and self.reply is not None and (
            self.reply.delivered or self.reply.verdict.reason is DropReason.REFUSED)

    @property
    def failure(self) -> Verdict | None:
        """The verdict that says why the exchange failed (the request's or the reply's), or None."""
        if not self.delivered:
            return self.verdict
        if self.reply is not None and not self.reply.delivered:
            return self.reply.verdict
        return None


def _where(hop: Hop, *, obj: bool = False) -> str:
    return f"{hop.host} {hop.element}" + (f" [{hop.device}]" if hop.device else "") + (
        f" ({hop.letter})" if hop.letter else "") + (f" {{{hop.obj}}}" if obj and hop.obj else "")


def _step_line(st: Step, *, obj: bool = False) -> str:
    return f"{st.kind.value}: {st.text}" + (f"  -> {st.detail}" if st.detail else "") + (
        f"  [{st.obj}]" if obj and st.obj else "")


def _matches_something(st: Step) -> bool:
    """An iptables rule with a match of its own (a security-group rule, an anti-spoofing rule),
    not a bare jump or the chain's closing ACCEPT."""
    words = st.text.split()
    return len(words) > 4 or (len(words) > 2 and words[2] != "-j")


def deciding_steps(hop: Hop) -> tuple[Step, ...]:
    """The steps that decided what ``hop`` did with the packet (what ``summary`` prints): its
    drop, its delivery or answer, its NAT, and the flow, rule or route that sent it on."""
    steps = hop.steps
    drop = [st for st in steps if st.kind is StepKind.DROP]
    if drop:
        rules = [st for st in steps if st.kind in (StepKind.RULE, StepKind.POLICY)]
        last = drop[-1]
        return (rules[-1], last) if rules and not last.text.startswith(rules[-1].text) else (last,)
    out: list[Step] = [st for st in steps if st.kind is StepKind.NAT]
    ends = [st for st in steps if st.kind in (StepKind.DELIVER, StepKind.REPLY)]
    if ends:
        return tuple(out + ends)
    returns = [st for st in steps if st.kind is StepKind.RULE and st.detail.endswith("] RETURN")]
    rules = returns or [st for st in steps if st.kind is StepKind.RULE and _matches_something(st)
                        and not st.detail.split("] ", 1)[-1].startswith("jump to")]
    flows = [st for st in steps if st.kind is StepKind.FLOW]
    routes = [st for st in steps if st.kind is StepKind.ROUTE]
    encap = [st for st in steps if st.kind is StepKind.ENCAP]
    normal = [st for st in steps if st.kind is StepKind.NORMAL]
    if flows:
        out.append(flows[-1])
    elif routes:
        out.append(routes[-1])
    elif normal:
        out.append(normal[-1])
    out.extend(rules[-1:])
    out.extend(encap[-1:])
    if not out and steps:
        out.append(steps[-1])
    return tuple(out)


def _verdict_line(v: Verdict, level: str) -> str:
    end = v.kind.value if v.reason is None else f"{v.kind.value}: {v.reason.value}"
    return (f"=> {end}" + (f" at {v.where}" if v.where else "") + (f" ({v.obj})" if v.obj else "")
            + (f": {v.detail}" if v.detail and level != "minimal" else ""))


def render(trace: Trace, level: str = "summary", *, outcome: bool = True) -> str:
    """Three levels, as ovn-trace has them. ``detailed``: every step of every hop (each table's
    flow, each chain's rule, each route and neighbour lookup, conntrack), the packet as it
    entered and the object behind each item; ``summary``: one line per device with what decided
    there (the flow, the security-group rule, the route, the NAT); ``minimal``: the hops' names
    and the verdict (what regression tests compare). ``outcome``: end with whether the exchange
    (request and answer) succeeded."""
    lines: list[str] = []
    if trace.packet and level != "minimal":
        lines.append("packet: " + ", ".join(f"{k}={v}" for k, v in trace.packet))
    for hop in trace.hops:
        where = _where(hop, obj=level != "minimal")
        if level == "minimal":
            lines.append(where)
        elif level == "summary":
            decided = deciding_steps(hop)
            said = "; ".join(_step_line(st, obj=True) for st in decided)
            lines.append(where + (f": {said}" if said else ""))
        else:
            lines.append(where)
            if hop.packet:
                lines.append(f"    packet: {hop.packet}")
            lines.extend("    " + _step_line(st, obj=True) for st in hop.steps)
    lines.append(_verdict_line(trace.verdict, level))
    if trace.reply is not None:
        lines.append("reply:")
        lines.extend("  " + ln for ln in render(trace.reply, level, outcome=False).splitlines())
    if outcome and trace.delivered and trace.reply is not None:
        failure = trace.failure
        lines.append("=> the exchange succeeded: the answer came back" if failure is None else
                     f"=> the exchange failed: {failure.reason.value if failure.reason else 'no reply'}"
                     + (f" ({failure.detail})" if failure.detail and level != "minimal" else ""))
    return "\n".join(lines) + "\n"


def _plain(trace: Trace) -> dict[str, object]:
    out: dict[str, object] = {
        "hops": [{"host": h.host, "element": h.element, "device": h.device, "letter": h.letter,
                  "packet": h.packet, "obj": h.obj,
                  "steps": [{"kind": st.kind.value, "text": st.text, "detail": st.detail, "obj": st.obj}
                            for st in h.steps]} for h in trace.hops],
        "verdict": {"kind": trace.verdict.kind.value,
                    "reason": trace.verdict.reason.value if trace.verdict.reason else None,
                    "where": trace.verdict.where, "obj": trace.verdict.obj, "detail": trace.verdict.detail},
        "reply": _plain(trace.reply) if trace.reply is not None else None,
        "succeeded": trace.succeeded,
    }
    if trace.packet:
        out["packet"] = dict(trace.packet)
    return out


def to_json(trace: Trace) -> str:
    return json.dumps(_plain(trace), indent=1)


def frames(trace: Trace) -> list[object]:
    """The packet as it entered each hop, request then reply (what a pcap of the trace holds), as
    it was on the wire there: a hop entered through a GRE or VXLAN port has its outer Ethernet, IP
    and GRE (or UDP and VXLAN) headers; a packet the IP stack made but that entered no device yet
    (a ``(local)`` hop, before ARP gave it its MACs) is left out (see :func:`neutrino.sim.pcap.wire_frames`)."""
    from neutrino.sim.pcap import wire_frames

    return [f for _, f in wire_frames(trace)]
