"""Round fifteen's boot speed-ups give what the plain interpretation gives (issue #17).

- An OVS bridge's header memory (``ovs._L2Seen``) keys a run by the destination MAC only when
  something but NORMAL read or wrote it (``_Ctx.dst``, as ``_Ctx.src`` for the source), or NORMAL's
  own result is kept: a unicast to a MAC never seen before, through flows that read no MAC
  (br-int's, br-tun's out of a tunnel), is replayed with NORMAL run again, where it was
  interpreted. Over random sequences with many destination MACs every result, MAC table, learned
  flow and flow order equals a bridge's that interprets every frame; a bridge blind to the reads
  of the destination (br-tun's tables 2 and 20 read it) fails the comparison.
- A boot interprets one unicast pass per guest (the network host's br-tun, whose learned flow for
  the guest's MAC is new), not four; its hops, leases and state equal a world's without the
  header memory.
- Steps, copies, results and netfilter contexts made by the fast constructors equal the
  dataclasses' own.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from typing import Any

import pytest

from neutrino.plan import plan_cloud
from neutrino.sim import netfilter, ovs
from neutrino.sim.netfilter import HookCtx, HookResult, NfVerdict
from neutrino.sim.ovs import Emit, Meta, OvsBridgeSim, Result
from neutrino.sim.ovs_normal import PortKind
from neutrino.sim.packets import UDP, Ethernet, IPv4, Raw, ip, mac, push_vlan
from neutrino.sim.trace import Step, StepKind, new_step
from neutrino.sim.world import World
from tests.sim.conftest import brought_up
from tests.sim.test_simboot8_memories import SEED001, _bridges, _pair, _remembering_nothing_new, _state

_AGAIN: list[Any] = []  # the header memory's entries, each time one answered
_INTERPRETED: list[tuple[str, Ethernet]] = []  # (bridge, frame) of each pass interpreted


@pytest.fixture(autouse=True)
def _counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    again, process = ovs._L2Seen.again, OvsBridgeSim._process

    def counted_again(self: ovs._L2Seen, *args: Any) -> Any:  # noqa: ANN401
        _AGAIN.append(self)
        return again(self, *args)

    def counted_process(self: OvsBridgeSim, port: Any, frame: Ethernet, *args: Any) -> Any:  # noqa: ANN401
        _INTERPRETED.append((self.bridge.name, frame))
        return process(self, port, frame, *args)

    monkeypatch.setattr(ovs._L2Seen, "again", counted_again)
    monkeypatch.setattr(OvsBridgeSim, "_process", counted_process)
    _AGAIN.clear()
    _INTERPRETED.clear()
    yield
    _AGAIN.clear()
    _INTERPRETED.clear()


@pytest.fixture(scope="module")
def tunnel_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Seed 001 (VXLAN: br-tun's tables learn the MACs out of tunnels and read the destination)."""
    cloud = brought_up(SEED001, tmp_path_factory, "simboot15-seed1")
    return world_of_cloud(cloud)


def world_of_cloud(cloud: Any) -> World:  # noqa: ANN401
    from neutrino.sim.cloud import world_of

    return world_of(cloud, plan_cloud(cloud))


def _unicast(rng: random.Random, dsts: int, vlans: list[int]) -> Ethernet:
    """A unicast UDP frame from a small pool of sources to a large pool of destinations (most of
    them met once or twice: a boot's OFFER and ACK to each new guest), tagged or not."""
    src = mac(f"fa:16:3e:00:01:{rng.randrange(4):02x}")
    dst = mac(f"fa:16:3e:00:02:{rng.randrange(dsts):02x}")
    l3 = IPv4(src=ip("10.0.0.2"), dst=ip(f"10.0.0.{rng.randrange(3, 9)}"), proto=17,
              payload=UDP(sport=67, dport=68, payload=Raw(data=bytes([rng.randrange(256)]))))
    frame = Ethernet(dst=dst, src=src, payload=l3)
    if vlans and rng.random() < 0.5:
        frame = push_vlan(frame, rng.choice(vlans))
    return frame


def _drive(mem: OvsBridgeSim, plain: OvsBridgeSim, seed: int, n: int = 300) -> None:
    """The same random unicasts (and a broadcast now and then, whose sources br-tun learns) into
    both bridges; the first difference raises AssertionError."""
    rng = random.Random(seed)
    ports = [p.name for p in mem.ports]
    tunnels = {p.name for p in mem.ports if p.kind is PortKind.TUNNEL}
    vlans = sorted({p.tag for p in mem.ports if p.tag} | {1, 2})
    for i in range(n):
        port = rng.choice(ports)
        frame = _unicast(rng, 40, vlans)
        if rng.random() < 0.2:  # a broadcast from one of the destinations: learned (MAC table, br-tun's flows)
            frame = Ethernet(dst=mac("ff:ff:ff:ff:ff:ff"), src=frame.dst, payload=frame.payload)
        meta = Meta(tun_id=rng.choice((None, 1, 2, 3))) if port in tunnels else None
        a = mem.process(port, frame, meta)
        b = plain.process(port, frame, meta)
        assert a == b, (i, port, frame, a, b)
        assert tuple(e.frame for e in a.outputs) == tuple(e.frame for e in b.outputs)
        if i % 30 == 0:
            assert _state(mem) == _state(plain), i
    assert _state(mem) == _state(plain)


def _bridge_names(world: World) -> list[tuple[str, str]]:
    return sorted(_bridges(world))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unicasts_to_many_macs_equal_the_interpretation(tunnel_world: World, seed: int) -> None:
    for host, name in _bridge_names(tunnel_world):
        mem, plain = _pair(tunnel_world, host, name)
        _drive(mem, plain, seed)
    assert _AGAIN  # the header memory answered


def test_a_unicast_to_a_new_mac_through_br_int_is_replayed(tunnel_world: World) -> None:
    """br-int's flows read no MAC of a frame from br-tun: after the first, each unicast to a MAC
    never seen is replayed (NORMAL run again: unknown, flooded), not interpreted."""
    host = next(h for h, b in _bridge_names(tunnel_world) if b == "br-int" and h != "network")
    mem, plain = _pair(tunnel_world, host, "br-int")
    port = next(p for p in mem.ports if p.kind is PortKind.PATCH)
    vlan = next(p.tag for p in mem.ports if p.tag)
    for k in range(20):
        l3 = IPv4(src=ip("10.0.0.2"), dst=ip(f"10.0.0.{k + 3}"), proto=17,
                  payload=UDP(sport=67, dport=68, payload=Raw(data=b"x")))
        frame = push_vlan(Ethernet(dst=mac(f"fa:16:3e:00:03:{k:02x}"), src=mac("fa:16:3e:00:01:01"), payload=l3),
                          vlan)
        assert mem.process(port.name, frame) == plain.process(port.name, frame)
    mine = [f for b, f in _INTERPRETED if b == "br-int" and type(mem) is OvsBridgeSim]
    assert len(_AGAIN) == 19  # every one but the first
    assert len(mine) == 1 + 20  # the first, in the remembering bridge; all 20 in the plain one


def test_a_bridge_blind_to_the_destination_reads_is_wrong(tunnel_world: World,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison catches a memory that leaves the destination out of the key where the flows
    read it (br-tun's table 2 reads its multicast bit, table 20's learned flows the whole MAC)."""

    class _Blind(ovs._Ctx):
        __slots__ = ()
        dst = property(lambda self: False, lambda self, value: None)

    monkeypatch.setattr(ovs, "_Ctx", _Blind)
    host = next(h for h, b in _bridge_names(tunnel_world) if b == "br-tun" and h != "network")
    with pytest.raises(AssertionError):
        for seed in range(6):
            mem, plain = _pair(tunnel_world, host, "br-tun")
            _drive(mem, plain, seed)


@pytest.fixture(scope="module")
def cloud40(tmp_path_factory: pytest.TempPathFactory) -> Any:  # noqa: ANN401
    """A 40-instance VXLAN cloud (5 computes, 4 networks), as bench/sim_bench.py makes it."""
    import sys

    from neutrino.deploy import bring_up
    sys.path.insert(0, str(SEED001.parents[1] / "bench"))
    from sim_bench import big_scenario

    tmp = tmp_path_factory.mktemp("simboot15-cloud40")
    big_scenario(tmp / "big.yaml", n_servers=40)
    return bring_up(tmp / "big.yaml", state=tmp / "state", keep=False).cloud


def _world_state(world: World) -> tuple[object, ...]:
    bridges = tuple((h, b, _state(world.bridge(h, b))) for h, b in _bridge_names(world))
    hops = {n: (tuple(hops), tuple(h.frame for h in hops)) for n, hops in world.boot_hops.items()}
    return bridges, hops


def test_a_boot_interprets_one_unicast_pass_a_guest(cloud40: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN401
    """Each guest's OFFER and ACK cross 8 bridge passes; once the first 20 guests (one on each
    network of each compute) are up, only the network host's br-tun (the guest's learned flow, new)
    is interpreted, for the guest's first one (the tree before interpreted four a guest: br-int
    twice, br-tun twice). The boot equals a world's without the header memory: leases, every hop
    (and the frame each met), MAC tables, learned flows."""
    world = world_of_cloud(cloud40)
    names = list(world.guests)
    assert len(names) == 40
    world.boot(only=names[:20])
    _INTERPRETED.clear()
    leases = world.boot(only=names[20:])
    unicasts = [b for b, f in _INTERPRETED if not f.dst.value >> 40 & 1]
    assert all(leases.values())
    assert unicasts == ["br-tun"] * 20
    with _remembering_nothing_new(monkeypatch):
        plain = world_of_cloud(cloud40)
        plain.boot(only=names[:20])
        assert plain.boot(only=names[20:]) == leases
    assert _world_state(world) == _world_state(plain)


def test_the_fast_constructors_make_the_dataclasses_own() -> None:
    step = new_step(StepKind.FLOW, "table=0 actions=NORMAL", "NORMAL", "port-1")
    assert type(step) is Step and step == Step(StepKind.FLOW, "table=0 actions=NORMAL", "NORMAL", "port-1")
    later = Step.later(StepKind.RULE, lambda: "-A INPUT -j ACCEPT", "[filter] ACCEPT")
    assert type(later) is Step and later == Step(StepKind.RULE, "-A INPUT -j ACCEPT", "[filter] ACCEPT")
    assert pickle.loads(pickle.dumps(later)) == later
    frame = Ethernet(dst=mac("ff:ff:ff:ff:ff:ff"), src=mac("fa:16:3e:00:00:01"), type=0x88B5, payload=Raw(data=b"x"))
    emit = ovs._new_emit("patch-tun", frame, Meta(tun_id=3))
    assert type(emit) is Emit and emit == Emit("patch-tun", frame, Meta(tun_id=3))
    res = ovs._new_result((emit,), (step,), 2)
    assert type(res) is Result and res == Result((emit,), (step,), 2) and hash(res) == hash(Result((emit,), (step,), 2))
    ctx = netfilter._new_hook_ctx("eth0", None, "tap1", "qvb1", True, 5, 0, None, frozenset(), (), (), 4, None)
    assert type(ctx) is HookCtx and ctx == HookCtx("eth0", None, "tap1", "qvb1", True, 5, 0, None, zone=4)
    assert netfilter._with_mark_ct(ctx, 7, None) == HookCtx("eth0", None, "tap1", "qvb1", True, 7, 0, None, zone=4)
    pkt = IPv4(src=ip("10.0.0.2"), dst=ip("10.0.0.3"), proto=17, payload=UDP(sport=1, dport=2, payload=Raw(data=b"")))
    hr = netfilter._new_hook_result(NfVerdict.ACCEPT, pkt, 0, None, (step,), None, (), ())
    assert type(hr) is HookResult and hr == HookResult(NfVerdict.ACCEPT, pkt, 0, None, (step,))
