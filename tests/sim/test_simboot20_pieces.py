"""Round twenty's boot speed-up (issue #17) gives what the work it skips gives.

Two shortcuts with a guard. (1) dnsmasq resolves a client's options once per server and set of
the client's tags that the server's options name (``DhcpServer._resolved``): each client's own
``port-…`` tag, which no option names, no longer makes every client's answer a new resolution.
On random option files and clients the answer equals :func:`services._resolve` given every tag;
keyed without the client's tags it is wrong. (2) A bridge's header memory (``_L2Seen``) checks the
versions of the tables an entry looked up once per bridge version (``_L2Seen.version``), not at
every replay. Random unicasts and broadcasts (br-tun learning flows into the tables they look up)
give what a bridge interpreting every frame gives; trusting an entry at every version is wrong.
A 40-instance boot equals one with both turned off: leases, hops and their frames and steps,
MAC tables, learned flows and every namespace's connections.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from neutrino.host.dnsmasq import DhcpHost
from neutrino.sim import services
from neutrino.sim.ovs import OvsBridgeSim
from neutrino.sim.ovs_normal import PortKind
from neutrino.sim.packets import UDP, Ethernet, IPv4, Raw, ip, mac, push_vlan
from neutrino.sim.world import World
from tests.sim.test_dhcp_options import SUBNET, server
from tests.sim.test_simboot8_memories import _pair
from tests.sim.test_simboot15_macs import (  # noqa: F401 - cloud40 and tunnel_world: fixtures
    _bridge_names,
    _drive,
    _world_state,
    cloud40,
    tunnel_world,
    world_of_cloud,
)
from tests.sim.test_simboot16_dhcp_hooks import _namespace_tables

# -- dnsmasq: options resolved once per set of named tags ---------------------------------------------

_TAGS = (SUBNET, "port-a", "port-b", "port-c", "known", "other")
_OPTIONS = ("option:router,10.0.0.{n}", "option:dns-server,192.0.2.{n}", "option:mtu,{m}",
            "option:domain-name,d{n}.example", "option:classless-static-route,10.{n}.0.0/16,10.0.0.1",
            "3,10.0.0.{n}", "26,{m}")


def _opts_file(rng: random.Random) -> str:
    """Random option lines: untagged, or tagged with one or two of a few tags."""
    lines = []
    for _ in range(rng.randrange(1, 9)):
        tags = "".join(f"tag:{t}," for t in rng.sample(_TAGS, rng.choice((0, 0, 1, 1, 2))))
        lines.append(tags + rng.choice(_OPTIONS).format(n=rng.randrange(1, 250), m=rng.randrange(1200, 1500)))
    return "\n".join(lines) + "\n"


def _client_tags(rng: random.Random, k: int) -> frozenset[str]:
    """A client's tags: some of the named ones, and its own port's (named by no option)."""
    return frozenset(rng.sample(_TAGS, rng.randrange(len(_TAGS) + 1))) | {f"port-own-{k}"}


def _check_resolved(seed: int) -> int:
    """Random servers and clients: each answer equals _resolve given every tag of the client.
    Returns how many resolutions the clients shared."""
    rng = random.Random(seed)
    shared = 0
    for _ in range(6):
        srv = server(_opts_file(rng))
        before = len(services._RESOLVED)
        clients = [_client_tags(rng, k) for k in range(30)]
        for tags in clients:
            want = services._resolve(srv.options, tags, srv.server_ip, srv.dns_default, srv.domain_default)
            assert srv._resolved(tags) == want, (srv.options, sorted(tags))
        shared += len(clients) - (len(services._RESOLVED) - before)
    return shared


@pytest.mark.parametrize("seed", range(4))
def test_options_resolved_once_per_named_tags_are_those_resolved_with_every_tag(seed: int) -> None:
    assert _check_resolved(seed) > 30  # (30 clients a server, each with a port tag of its own)


def test_a_client_gets_its_options_through_the_shared_resolution() -> None:
    """options_for (its range's subnet tag and its hosts-file tags) answers as _resolve does, and
    hosts differing only in tags no option names share one resolution."""
    srv = server(f"tag:{SUBNET},option:router,10.0.0.1\ntag:port-b,option:mtu,1400\noption:dns-server,192.0.2.53\n")
    hosts = [DhcpHost(f"fa:16:3e:00:01:{k:02x}", f"h{k}", ip(f"10.0.0.{k + 10}"), sets=(f"set:port-{k}",))
             for k in range(40)]
    services._RESOLVED.clear()
    for h in hosts:
        tags = frozenset({SUBNET, h.sets[0][4:]})
        want = services._resolve(srv.options, tags, srv.server_ip, srv.dns_default, srv.domain_default)
        assert srv.options_for(h) == want
    assert len(services._RESOLVED) == 1  # (port-b is named, but no host here has it)
    assert srv.options_for(DhcpHost("fa:16:3e:00:02:00", "b", ip("10.0.0.99"), sets=("set:port-b",))).mtu == 1400
    assert len(services._RESOLVED) == 2


def test_resolved_without_the_clients_tags_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard: a memory keyed by the server alone (the tags left out) fails the comparison."""
    kept: dict[int, services.ClientOptions] = {}

    def untagged(self: services.DhcpServer, tags: frozenset[str]) -> services.ClientOptions:
        if id(self) not in kept:
            kept[id(self)] = services._resolve(self.options, tags, self.server_ip, self.dns_default,
                                               self.domain_default)
        return kept[id(self)]

    monkeypatch.setattr(services.DhcpServer, "_resolved", untagged)
    with pytest.raises(AssertionError):
        for seed in range(4):
            _check_resolved(seed)


# -- the header memory: tables checked once per bridge version -------------------------------------------


class _CountedGets(dict[int, int]):
    """A bridge's table versions, counting the lookups (each one is a table checked)."""

    gets = 0

    def get(self, key: int, default: Any = None) -> Any:  # noqa: ANN401
        _CountedGets.gets += 1
        return super().get(key, default)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entries_checked_once_per_bridge_version_give_the_interpretation(tunnel_world: World, seed: int) -> None:  # noqa: F811
    """Random unicasts and broadcasts (br-tun learns their sources into table 20, which unicasts
    from br-int look up) into every bridge of seed 001 equal a bridge interpreting every frame."""
    for host, name in _bridge_names(tunnel_world):
        mem, plain = _pair(tunnel_world, host, name)
        _drive(mem, plain, seed)


def test_replays_at_one_bridge_version_check_no_table(tunnel_world: World) -> None:  # noqa: F811
    """Unicasts to 20 new MACs through a compute's br-int (flows that read no MAC: the first is
    interpreted, the others replayed): no flow is installed meanwhile, so no table is checked."""
    host = next(h for h, b in _bridge_names(tunnel_world) if b == "br-int" and h != "network")
    mem, plain = _pair(tunnel_world, host, "br-int")
    mem._tversions = _CountedGets(mem._tversions)
    port = next(p for p in mem.ports if p.kind is PortKind.PATCH)
    vlan = next(p.tag for p in mem.ports if p.tag)
    again = 0
    for k in range(20):
        l3 = IPv4(src=ip("10.0.0.2"), dst=ip(f"10.0.0.{k + 3}"), proto=17,
                  payload=UDP(sport=67, dport=68, payload=Raw(data=b"x")))
        frame = push_vlan(Ethernet(dst=mac(f"fa:16:3e:00:03:{k:02x}"), src=mac("fa:16:3e:00:01:01"), payload=l3),
                          vlan)
        _CountedGets.gets = 0
        assert mem.process(port.name, frame) == plain.process(port.name, frame)
        again += k > 0
        if k > 0:
            assert _CountedGets.gets == 0, k  # (the first run's gets are its keeping's)
    assert again == 19


@contextmanager
def _trusting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The mutant: every header-memory entry trusted at whatever version the bridge is at."""
    process = OvsBridgeSim.process

    def trusting(self: OvsBridgeSim, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        for entries in self._memo_l2.values():
            for entry in entries.values():
                entry.version = self._version
        return process(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(OvsBridgeSim, "process", trusting)
        yield


def test_entries_trusted_at_every_version_are_wrong(tunnel_world: World,  # noqa: F811
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard: without the tables' check after a flow is installed, br-tun replays a unicast
    that its new learned flow now sends elsewhere."""
    host = next(h for h, b in _bridge_names(tunnel_world) if b == "br-tun" and h != "network")
    with _trusting(monkeypatch), pytest.raises(AssertionError):
        for seed in range(6):
            mem, plain = _pair(tunnel_world, host, "br-tun")
            _drive(mem, plain, seed)


# -- a world's boot ----------------------------------------------------------------------------------------


@contextmanager
def _checking_everything(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reference: options resolved with every tag of each client, every entry's tables
    checked at every replay."""
    process = OvsBridgeSim.process

    def checking(self: OvsBridgeSim, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        for entries in self._memo_l2.values():
            for entry in entries.values():
                entry.version = -1
        return process(self, *args, **kwargs)

    def resolved(self: services.DhcpServer, tags: frozenset[str]) -> services.ClientOptions:
        return services._resolve(self.options, tags, self.server_ip, self.dns_default, self.domain_default)

    with monkeypatch.context() as m:
        m.setattr(OvsBridgeSim, "process", checking)
        m.setattr(services.DhcpServer, "_resolved", resolved)
        yield


def test_a_boot_equals_one_that_checks_everything(cloud40: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN401, F811
    """Leases, every hop (its frame and its steps' texts), MAC tables, learned flows, the flows in
    lookup order and every namespace's connection table equal those of a boot that resolves each
    client's options with all its tags and checks every entry's tables at every replay. The boot
    resolves options twice per network (4: its server's defaults when it is built, then its
    clients'), not once per guest (40)."""
    services._RESOLVED.clear()
    services._OPTIONS.clear()
    resolve = services._resolve
    calls: list[object] = []
    monkeypatch.setattr(services, "_resolve", lambda *a: calls.append(a) or resolve(*a))
    world = world_of_cloud(cloud40)
    leases = world.boot()
    assert len(leases) == 40 and all(leases.values())
    assert 1 <= len(calls) <= 8
    with _checking_everything(monkeypatch):
        plain = world_of_cloud(cloud40)
        assert plain.boot() == leases
    assert len(calls) >= 40
    assert _world_state(world) == _world_state(plain)
    assert _namespace_tables(world) == _namespace_tables(plain)
    texts = [[(st.kind, st.text, st.detail) for h in hops for st in h.steps] for hops in world.boot_hops.values()]
    assert texts == [[(st.kind, st.text, st.detail) for h in hops for st in h.steps]
                     for hops in plain.boot_hops.values()]
