"""Review16 of simboot15: a bridge's header memory (``ovs._L2Seen``) keys a run by the destination MAC
only when something but NORMAL read or wrote it (``_Ctx.dst``). These random bridges read the
destination in every way a flow table can: exact and masked matches (the multicast bit both ways),
in a table reached only by a resubmit, as a conjunction's dimension, copied by ``move`` into a
register a later table matches, read by a ``learn`` (as the learned flow's match and its loaded
value), written by ``mod_dl_dst``, ``set_field`` and ``load`` (then switched by NORMAL or matched
again); and runs that never read it (NORMAL alone, flooding, outputs by port). Random L2 frames (a
few sources, many destinations: unicast, broadcast, multicast; tagged or not; now and then with a
pruning rule for NORMAL's floods that reads the destination) go through a bridge with the memory and
one that interprets every frame: every result, output frame, MAC table, learned flow and flow order
must be the same (the tree before simboot15 passes too).

The mutation shown caught: the destination's getter not marking the read (``_Ctx.dst`` left False by
``_getter("eth_dst")``): runs are replayed for other destinations and the comparison fails. (Before
simboot15 the key always held the destination, so there the mutation changes nothing.)
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from typing import Any

import pytest

from neutrino.host.openflow import parse_dump_flows
from neutrino.host.ovsdb import Bridge, Interface, Port
from neutrino.sim import ovs
from neutrino.sim.ovs import Meta, OvsBridgeSim
from neutrino.sim.packets import UDP, Dot1Q, Ethernet, IPv4, Raw, ip, mac, push_vlan

PORTS = ("p1", "p2", "p3", "p4")
# destinations: two unicast MACs the flows name, broadcast, a multicast, and many unicast ones never named
NAMED = ("fa:16:3e:00:00:01", "fa:16:3e:00:00:02")
MULTICAST = "01:00:5e:00:00:fb"


class _Plain(OvsBridgeSim):
    """A bridge that interprets every frame (a subclass: :meth:`OvsBridgeSim.process` remembers nothing for it)."""


def _bridge() -> Bridge:
    return Bridge("br-r16", ports=tuple(Port(n, (Interface(n),)) for n in PORTS), fail_mode="secure")


def _match(rng: random.Random) -> list[str]:
    parts = []
    if rng.random() < 0.4:
        parts.append(f"in_port={rng.randint(1, 4)}")
    if rng.random() < 0.3:
        parts.append(f"dl_vlan={rng.choice((1, 2))}")
    kind = rng.randrange(6)
    if kind == 0:
        parts.append(f"dl_dst={rng.choice(NAMED)}")
    elif kind == 1:
        parts.append("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00")
    elif kind == 2:
        parts.append("dl_dst=00:00:00:00:00:00/01:00:00:00:00:00")
    elif kind == 3:
        parts.append(f"dl_src={rng.choice(NAMED)}")
    return parts


def _action(rng: random.Random, table: int) -> str:
    later = rng.randint(table + 1, 4)
    kind = rng.randrange(12)
    if kind == 0:
        return "NORMAL"
    if kind == 1:
        return f"output:{rng.randint(1, 4)}"
    if kind == 2:
        return f"mod_dl_dst:{rng.choice(NAMED)},NORMAL"
    if kind == 3:
        return f"set_field:{rng.choice(NAMED)}->eth_dst,resubmit(,{later})"
    if kind == 4:
        return f"load:0x{rng.randrange(2):x}->NXM_OF_ETH_DST[0..7],resubmit(,{later})"
    if kind == 5:
        return "move:NXM_OF_ETH_DST[0..7]->NXM_NX_REG0[0..7],resubmit(,5)"
    if kind == 6:
        return ("learn(table=6,priority=1,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),"
                f"resubmit(,{later})")
    if kind == 7:
        return ("learn(table=7,priority=1,NXM_OF_ETH_SRC[]=NXM_OF_ETH_DST[],"
                "load:NXM_OF_ETH_DST[0..15]->NXM_NX_REG1[0..15]),resubmit(,6)")
    if kind == 8:
        return "resubmit(,6)"
    if kind == 9:
        return "FLOOD"
    if kind == 10:
        return "drop"
    return f"resubmit(,{later})"


def _dump(rng: random.Random) -> str:
    """Random tables 0-4 (each ending in a catch-all), a register table 5 matching what ``move`` copied,
    tables 6 and 7 that ``learn`` fills (with a fallback), and a conjunction over the destination in table 1."""
    lines = []
    for table in range(4):
        for _ in range(rng.randint(2, 5)):
            match = ",".join((f"table={table}", f"priority={rng.randint(2, 9)}", *_match(rng)))
            lines.append(f"{match} actions={_action(rng, table)}")
        lines.append(f"table={table},priority=1 actions={rng.choice(('NORMAL', 'drop', f'resubmit(,{table + 1})'))}")
    lines += ["table=1,priority=10,dl_dst=fa:16:3e:00:00:01 actions=conjunction(7,1/2)",
              "table=1,priority=10,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=conjunction(7,1/2)",
              "table=1,priority=10,in_port=2 actions=conjunction(7,2/2)",
              "table=1,priority=10,in_port=3 actions=conjunction(7,2/2)",
              "table=1,priority=10,conj_id=7 actions=output:4",
              "table=4,priority=1 actions=NORMAL",
              "table=5,priority=5,reg0=0x01 actions=output:1",
              "table=5,priority=5,reg0=0xff actions=NORMAL",
              "table=5,priority=1 actions=output:2",
              "table=6,priority=0 actions=NORMAL",
              "table=7,priority=0 actions=drop"]
    return "\n".join(lines)


def _frame(rng: random.Random) -> Ethernet:
    src = mac(rng.choice((*NAMED, "fa:16:3e:00:01:01", "fa:16:3e:00:01:02")))
    roll = rng.random()
    if roll < 0.15:
        dst = mac("ff:ff:ff:ff:ff:ff")
    elif roll < 0.25:
        dst = mac(MULTICAST)
    elif roll < 0.45:
        dst = mac(rng.choice(NAMED))
    else:
        dst = mac(f"fa:16:3e:00:02:{rng.randrange(60):02x}")
    l3 = IPv4(src=ip("10.0.0.2"), dst=ip("10.0.0.3"), proto=17,
              payload=UDP(sport=67, dport=68, payload=Raw(data=bytes([rng.randrange(4)]))))
    frame = Ethernet(dst=dst, src=src, payload=l3)
    return push_vlan(frame, rng.choice((1, 2))) if rng.random() < 0.4 else frame


def _pruning(frame: Ethernet, names: Sequence[str]) -> Collection[str]:
    """A caller's pruning rule for NORMAL's floods that reads the destination and the payload: every
    other flooded port, by the destination's last byte and the payload's first."""
    p: object = frame.payload
    while isinstance(p, Dot1Q):
        p = p.payload
    l4 = p.payload if isinstance(p, IPv4) else None
    first = l4.payload.data[0] if isinstance(l4, UDP) and isinstance(l4.payload, Raw) and l4.payload.data else 0
    return {n for i, n in enumerate(names) if (i + first + frame.dst.value) % 2}


def _state(sim: OvsBridgeSim) -> tuple[object, ...]:
    return (sim.mac_table, sim.learned_flows, tuple(sim.flows(t) for t in sorted(sim._tables)))


def _differences(seed: int, frames: int = 250) -> list[str]:
    """A random bridge with and without the header memory, the same frames into both: the first
    difference, described."""
    rng = random.Random(seed)
    dump = parse_dump_flows(_dump(rng))
    mem, plain = OvsBridgeSim(_bridge(), dump, None), _Plain(_bridge(), dump, None)
    for i in range(frames):
        port, frame = rng.choice(PORTS), _frame(rng)
        rule = _pruning if rng.random() < 0.3 else None
        a = mem.process(port, frame, Meta(), unfollowed=rule)
        b = plain.process(port, frame, Meta(), unfollowed=rule)
        if a != b or tuple(e.frame for e in a.outputs) != tuple(e.frame for e in b.outputs):
            return [f"seed {seed}, frame {i} {frame.src}->{frame.dst} on {port}: {a} != {b}"]
        if _state(mem) != _state(plain):
            return [f"seed {seed}, frame {i}: the bridges' state differs"]
    return []


@pytest.mark.parametrize("seeds", [range(0, 20), range(20, 40)], ids=["seeds0-19", "seeds20-39"])
def test_random_bridges_reading_the_destination_answer_as_interpreted(seeds: range, monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:
    """Every frame into the random bridges of 20 seeds answers as interpreted, the memory answering
    many of them."""
    replayed: list[ovs._L2Seen] = []
    again = ovs._L2Seen.again

    def counted(self: ovs._L2Seen, *args: Any) -> Any:  # noqa: ANN401
        replayed.append(self)
        return again(self, *args)

    monkeypatch.setattr(ovs._L2Seen, "again", counted)
    found = [d for seed in seeds for d in _differences(seed)]
    assert found == []
    assert len(replayed) > 300, "the header memory hardly answered: the comparison proves little"


def test_a_destination_read_not_marked_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: ``_getter("eth_dst")`` reads the destination without marking ``_Ctx.dst`` (the hashed
    lookups' reads go unseen): the random bridges then answer otherwise than interpreted."""
    real = ovs._getter

    def blind(name: str) -> ovs._Getter:
        if name == "eth_dst":
            return lambda ctx: ctx.frame.dst.value
        return real(name)

    monkeypatch.setattr(ovs, "_getter", blind)
    monkeypatch.setattr(ovs, "_KEYERS", {})
    assert any(_differences(seed) for seed in range(0, 40))
