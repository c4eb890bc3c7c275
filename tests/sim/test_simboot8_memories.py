"""Round eight's boot speed-ups give what the plain interpretation gives (issue #17).

- An OVS bridge remembers a run by the frame's *header* (``ovs._L2Seen``): a run that read and
  wrote nothing beyond the Ethernet header and tags is replayed for any frame with the same header
  (the source MAC left out when only NORMAL read it), while the tables it looked up are unchanged
  (per-table versions); a run that ended in NORMAL keeps what came before NORMAL and runs NORMAL
  again. Over varied sequences (broadcasts with different payloads, unicasts, ARP, IPv4 matches,
  MACs learned and moved, flows learned by ``learn``, pruning rules that read the payload, resets
  and forgets) every result, MAC table, learned flow and flow order equals a bridge's that
  interprets every frame; dropping the destination MAC from the key, or the tables' versions from an entry,
  makes the comparison fail.
- The world works out where a bridge's copy goes (port end, tunnel, far end, ENCAP step) once
  per port and tunnel key, and keys its remembered hops by the result's steps *and* outputs: a
  boot, probes and refreshes (a guest added, one removed) give the same hops, leases, flows, MAC
  tables and connection tables as a world that remembers none of this.
"""

from __future__ import annotations

import pickle
import random
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from neutrino.host.openflow import format_add_flow
from neutrino.plan import plan_cloud
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim import ovs
from neutrino.sim.cloud import refresh_world, world_of
from neutrino.sim.ovs import Meta, OvsBridgeSim, Result
from neutrino.sim.ovs_normal import PortKind
from neutrino.sim.packets import (
    ICMP,
    UDP,
    Dot1Q,
    Ethernet,
    IPv4,
    Raw,
    arp_request,
    ip,
    mac,
    push_vlan,
)
from neutrino.sim.world import World, _new_bridge
from tests.sim.conftest import SEED000, brought_up
from tests.sim.test_living_world import add_server, delete_server, with_servers

SEED001 = SEED000.with_name("seed001.yaml")


class _Plain(OvsBridgeSim):
    """A bridge that interprets every frame (a subclass: :meth:`OvsBridgeSim.process` remembers nothing for it)."""


def _pair(world: World, host: str, name: str) -> tuple[OvsBridgeSim, OvsBridgeSim]:
    h = world.hosts[host]
    mem = _new_bridge(h, name)
    plain = _new_bridge(h, name)
    plain.__class__ = _Plain
    return mem, plain


def _macs(i: int) -> str:
    return f"fa:16:3e:00:00:{i:02x}"


def _frames(rng: random.Random, vlans: Sequence[int]) -> Ethernet:
    """A random frame: a DHCP-like broadcast (varied payload), a unicast UDP or ICMP packet, an
    ARP request; from and to a small pool of MACs (so they repeat), tagged or not."""
    src = mac(_macs(rng.randrange(6)))
    kind = rng.randrange(5)
    if kind == 0:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
        l3 = IPv4(src=ip("0.0.0.0"), dst=ip("255.255.255.255"), proto=17,
                  payload=UDP(sport=68, dport=67, payload=Raw(data=body)))
        frame = Ethernet(dst=mac("ff:ff:ff:ff:ff:ff"), src=src, payload=l3)
    elif kind == 1:
        l3 = IPv4(src=ip(f"10.0.0.{rng.randrange(2, 9)}"), dst=ip(f"10.0.0.{rng.randrange(2, 9)}"), proto=17,
                  payload=UDP(sport=rng.choice((67, 68, 53)), dport=rng.choice((67, 68)),
                              payload=Raw(data=bytes(rng.randrange(1, 4)))))
        frame = Ethernet(dst=mac(_macs(rng.randrange(6))), src=src, payload=l3)
    elif kind == 2:
        l3 = IPv4(src=ip(f"10.0.0.{rng.randrange(2, 9)}"), dst=ip("10.0.0.1"), proto=1,
                  payload=ICMP(type=8, code=0, id=rng.randrange(3), seq=rng.randrange(3)))
        frame = Ethernet(dst=mac(_macs(rng.randrange(6))), src=src, payload=l3)
    else:
        frame = arp_request(src, ip(f"10.0.0.{rng.randrange(2, 9)}"), ip(f"10.0.0.{rng.randrange(1, 4)}"))
    if vlans and rng.random() < 0.4:
        frame = push_vlan(frame, rng.choice(vlans))
    return frame


def _payload_rule(frame: Ethernet, names: Sequence[str]) -> Collection[str]:
    """A pruning rule that reads the packet (as the world's reads the DHCP message): every other
    flooded port, by the payload's first byte."""
    p: object = frame.payload
    while isinstance(p, Dot1Q):
        p = p.payload
    l4 = p.payload if isinstance(p, IPv4) else None
    first = l4.payload.data[0] if isinstance(l4, UDP) and isinstance(l4.payload, Raw) and l4.payload.data else 0
    return {n for i, n in enumerate(names) if (i + first) % 2}


def _state(sim: OvsBridgeSim) -> tuple[object, ...]:
    return (sim.mac_table, sim.learned_flows, tuple(sim.flows(t) for t in sorted(sim._tables)))


def _drive(mem: OvsBridgeSim, plain: OvsBridgeSim, seed: int, n: int = 400) -> int:
    """Feed both bridges the same random sequence; the first difference raises AssertionError.
    Returns how many results the header memory answered."""
    rng = random.Random(seed)
    ports = [p.name for p in mem.ports]
    tunnels = {p.name for p in mem.ports if p.kind is PortKind.TUNNEL}
    vlans = sorted({p.tag for p in mem.ports if p.tag} | {1, 2})
    hits = 0
    for i in range(n):
        port = rng.choice(ports)
        frame = _frames(rng, vlans)
        meta = Meta(tun_id=rng.choice((None, 1, 2, 3))) if port in tunnels else None
        rule = _payload_rule if rng.random() < 0.5 and frame.dst.value == 0xFFFFFFFFFFFF else None
        before = len(_LAST)
        a = mem.process(port, frame, meta, unfollowed=rule)
        b = plain.process(port, frame, meta, unfollowed=rule)
        hits += len(_LAST) - before
        assert a == b, (i, port, frame, a, b)
        assert tuple(e.frame for e in a.outputs) == tuple(e.frame for e in b.outputs)
        if i % 25 == 0:
            assert _state(mem) == _state(plain), i
        r = rng.random()
        if r < 0.01:
            mem.reset()
            plain.reset()
        elif r < 0.03:
            gone = [mac(_macs(rng.randrange(6)))]
            mem.forget(gone)
            plain.forget(gone)
    assert _state(mem) == _state(plain)
    return hits


_LAST: list[Any] = []  # the header memory's entries, each time one answered


@pytest.fixture(autouse=True)
def _count_replays(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    again = ovs._L2Seen.again

    def counted(self: ovs._L2Seen, *args: Any) -> tuple[Result, list[Any]]:
        _LAST.append(self)
        return again(self, *args)
    monkeypatch.setattr(ovs._L2Seen, "again", counted)
    _LAST.clear()
    yield
    _LAST.clear()


@pytest.fixture(scope="module")
def seed0_world(seed0_cloud: CloudSnapshot) -> World:
    """Seed 000 with four more instances (br-int with five guest ports; GRE, br-tun with NORMAL)."""
    cloud = with_servers(seed0_cloud, 4)
    return world_of(cloud, plan_cloud(cloud))


@pytest.fixture(scope="module")
def tunnel_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Seed 001 (VXLAN: br-tun's tables learn the MACs out of tunnels)."""
    cloud = brought_up(SEED001, tmp_path_factory, "simboot8-seed1")
    return world_of(cloud, plan_cloud(cloud))


def _bridges(world: World) -> list[tuple[str, str]]:
    out = []
    for h in world.hosts.values():
        for name in ("br-int", "br-tun"):
            if h.ovs is not None and h.ovs.flows_of(name) is not None:
                out.append((h.name, name))
    return out


def test_header_memory_gives_what_interpreting_every_frame_gives(seed0_world: World, tunnel_world: World) -> None:
    total = 0
    for world in (seed0_world, tunnel_world):
        bridges = _bridges(world)
        assert {b for _, b in bridges} == {"br-int", "br-tun"}
        for k, (host, name) in enumerate(bridges):
            mem, plain = _pair(world, host, name)
            total += _drive(mem, plain, seed=k)
    assert total > 50  # the memory answered many of them (it is exercised, not bypassed)
    assert any(e.normal is not None for e in _LAST) and any(e.normal is None for e in _LAST)


def test_a_learned_flow_in_a_table_looked_up_is_not_replayed_over(tunnel_world: World) -> None:
    """br-tun: a unicast to an unknown MAC floods (table 20 misses); once a frame from that MAC
    comes out of a tunnel, ``learn`` installs its flow in table 20 and the same unicast goes
    out of that tunnel only. Without the tables' versions in the entry the flood is replayed."""
    host, name = next((h, b) for h, b in _bridges(tunnel_world) if b == "br-tun")
    mem, plain = _pair(tunnel_world, host, name)
    patch = next(p.name for p in mem.ports if p.name.startswith("patch"))
    tunnel = next(p.name for p in mem.ports if p.kind is PortKind.TUNNEL)
    found = next(m for t in sorted(mem._tables) for f in mem.flows(t) if (m := re.search(
        r"tun_id=(0x[0-9a-f]+) actions=mod_vlan_vid:(\d+)", format_add_flow(f))))
    tid, vlan = int(found[1], 16), int(found[2])
    far = mac("fa:16:3e:aa:bb:cc")

    def uni(n: int) -> Ethernet:
        return push_vlan(Ethernet(dst=far, src=mac("fa:16:3e:00:00:01"), payload=IPv4(
            src=ip("10.0.0.2"), dst=ip("10.0.0.9"), proto=17, payload=UDP(sport=1, dport=2, payload=Raw(data=bytes(n))))),
            vlan)

    back = Ethernet(dst=mac("fa:16:3e:00:00:01"), src=far, payload=IPv4(
        src=ip("10.0.0.9"), dst=ip("10.0.0.2"), proto=17, payload=UDP(sport=2, dport=1, payload=Raw(data=b"x"))))
    for sim in (mem, plain):
        sim.process(patch, uni(1))
        sim.process(tunnel, back, Meta(tun_id=tid))
    assert mem.process(patch, uni(2)) == plain.process(patch, uni(2))
    assert len(plain.process(patch, uni(3)).outputs) == 1  # the learned flow: one tunnel


def test_dropping_a_key_part_makes_the_memory_wrong(tunnel_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison catches a key without the frame's destination MAC, and entries without the
    versions of the tables they looked up."""
    host, name = next((h, b) for h, b in _bridges(tunnel_world) if b == "br-tun" and h != "network")
    header = ovs._header_key

    def no_dst(frame: Ethernet) -> tuple[tuple[object, ...], tuple[object, ...]] | None:
        got = header(frame)
        return None if got is None else (got[0][1:], got[1])

    monkeypatch.setattr(ovs, "_header_key", no_dst)
    with pytest.raises(AssertionError):
        for seed in range(6):
            mem, plain = _pair(tunnel_world, host, name)
            _drive(mem, plain, seed=seed)
    monkeypatch.setattr(ovs, "_header_key", header)

    of = ovs._L2Seen.of.__func__  # type: ignore[attr-defined]

    def no_versions(cls: type[ovs._L2Seen], nodes: tuple[object, ...], result: Result, run: Any, fdb: int,
                    tables: tuple[tuple[int, int], ...]) -> ovs._L2Seen | None:
        return of(cls, nodes, result, run, fdb, ())  # type: ignore[no-any-return]

    monkeypatch.setattr(ovs._L2Seen, "of", classmethod(no_versions))
    with pytest.raises(AssertionError):
        test_a_learned_flow_in_a_table_looked_up_is_not_replayed_over(tunnel_world)


# -- the world ---------------------------------------------------------------------------------------

@contextmanager
def _remembering_nothing_new(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reference: no header memory in the bridges, where-copies-go worked out on every copy."""
    with monkeypatch.context() as m:
        m.setattr(ovs, "_header_key", lambda frame: None)
        at_ovs: Callable[..., Any] = World._at_ovs

        def fresh(self: World, *args: Any) -> Any:
            self._outs.clear()
            return at_ovs(self, *args)
        m.setattr(World, "_at_ovs", fresh)
        yield


def _world_state(w: World) -> tuple[object, ...]:
    hops = {g: [str(h) for h in hs] for g, hs in w.boot_hops.items()}
    bridges = {k: (s.mac_table, s.learned_flows, tuple(s.flows(t) for t in sorted(s._tables)))
               for k, s in w._ovs.loaded().items()}
    cts = {k: nf.conntrack.dump() for k, nf in w._nf.loaded().items() if nf is not None}
    return hops, bridges, cts


def _story(cloud: CloudSnapshot) -> Iterator[tuple[str, object]]:
    w = world_of(cloud, plan_cloud(cloud))
    yield "boot", sorted(w.boot().items())
    yield "state", _world_state(w)
    guests = sorted(w.guests)
    for src in guests:
        for dst in ("8.8.8.8", *guests):
            if dst != src:
                yield f"{src}>{dst}", w.probe(src, dst)
    bigger = add_server(cloud, "vm9", 9)
    yield "added", refresh_world(w, bigger, plan_cloud(bigger))
    yield "state+", _world_state(w)
    smaller = delete_server(bigger, "vm1")
    yield "removed", refresh_world(w, smaller, plan_cloud(smaller))
    yield "state-", _world_state(w)
    yield "vm9>cirros", w.probe("vm9", "cirros")
    yield "hops pickled", pickle.loads(pickle.dumps(w.boot_hops))


def test_a_world_boots_probes_and_refreshes_as_without_the_new_memories(
        seed0_cloud: CloudSnapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = with_servers(seed0_cloud, 4)
    with _remembering_nothing_new(monkeypatch):
        expected = list(_story(cloud))
    got = list(_story(cloud))
    assert [k for k, _ in got] == [k for k, _ in expected]
    for (k, a), (_, b) in zip(got, expected, strict=True):
        assert a == b, k
    assert _LAST  # the header memory answered bridge runs in the remembering world
