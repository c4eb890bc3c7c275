"""Review of simboot20's dnsmasq memory (issue #17): ``DhcpServer._resolved`` works a client's
options out once per server and per set of the tags the server's options name.

simboot20's own tests compare ``_resolved`` with ``_resolve`` on option files of plain ``tag:``
lines. Here ``options_for`` as a whole is compared with the answer worked out without any memory
(``_resolve`` given every tag of the client, as the tree before simboot20 did), on random servers
with what the brief asked about: negated tags (``tag:!x``), several ``dhcp-range``s each setting
its own tag (and ranges with a netmask of their own), per-host ``set:`` tags (several a host, some
named by options and some not), a tag named only by a host line, IPv6 option lines, option lines
repeated with and without tags (precedence: a tagged line over an untagged one, a later one over
an earlier one), two servers with the same option text and different hosts or ranges, and a
server made again with one option line changed (a refresh: the new server's answer, not the old
one's). Each answer is asked twice (DISCOVER and REQUEST) and after the memories are emptied."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from neutrino.host.dnsmasq import DhcpHost, DhcpOpt, DhcpRange
from neutrino.sim import services
from neutrino.sim.packets import Mac

_NAMES = ("subnet-a", "subnet-b", "port-1", "port-2", "port-3", "known", "dhcpv6", "odd")


@pytest.fixture(autouse=True)
def _emptied() -> Iterator[None]:
    for memo in (services._OPTIONS, services._NAMED_TAGS, services._RESOLVED):
        memo.clear()
    yield
    for memo in (services._OPTIONS, services._NAMED_TAGS, services._RESOLVED):
        memo.clear()


def _cold(srv: services.DhcpServer, h: DhcpHost) -> services.ClientOptions:
    """``options_for`` as the tree before simboot20 worked it out: every tag of the client given
    to ``_resolve`` (the host's ``set:`` tags, and those of the ranges its address is in)."""
    tags = {t[4:] if t.startswith("set:") else t for t in h.sets}
    for r in srv.ranges:
        mask = r.netmask if r.netmask and "." in r.netmask else str(srv.netmask)
        if isinstance(h.ip, IPv4Address) and isinstance(r.start, IPv4Address) and \
                h.ip in services._net_of(r.start, mask):
            tags |= services._tags_of_range(r)
    return services._resolve(srv.options, frozenset(tags), srv.server_ip, srv.dns_default, srv.domain_default)


def _tag(rng: random.Random) -> str:
    name = rng.choice(_NAMES)
    return f"tag:!{name}" if rng.random() < 0.2 else f"tag:{name}"


def _option(rng: random.Random) -> DhcpOpt:
    n = rng.randrange(1, 250)
    option, values = rng.choice([
        ("option:router", (f"10.0.0.{n}",)), ("option:router", ("",)), ("3", (f"10.0.1.{n}",)),
        ("option:dns-server", (f"192.0.2.{n}", "0.0.0.0")), ("option:mtu", (str(1200 + n),)), ("26", ("1400",)),
        ("option:domain-name", (f"d{n}.example",)), ("option:classless-static-route", (f"10.{n}.0.0/16", "10.0.0.1")),
        ("option6:dns-server", (f"[2001:db8::{n:x}]",)), ("option:mtu", ("bad",))])
    tags = tuple(_tag(rng) for _ in range(rng.choice((0, 0, 1, 1, 2))))
    return DhcpOpt(option, values, tags)


def _host(rng: random.Random, k: int) -> DhcpHost:
    sets = tuple(f"set:{t}" if rng.random() < 0.8 else t
                 for t in rng.sample([*_NAMES, f"port-own-{k}"], rng.randrange(0, 4)))
    third = rng.choice((0, 1, 1, 2))
    return DhcpHost(f"fa:16:3e:00:{third:02x}:{k:02x}", f"h{k}", IPv4Address(f"10.0.{third}.{10 + k}"), sets=sets)


def _server(rng: random.Random, options: tuple[DhcpOpt, ...]) -> services.DhcpServer:
    ranges = [DhcpRange(IPv4Address("10.0.0.0"), "set:subnet-a", mode="static", netmask="255.255.255.0")]
    if rng.random() < 0.6:
        ranges.append(DhcpRange(IPv4Address("10.0.1.0"), rng.choice(["set:subnet-b", "subnet-b", None]),
                                mode="static", netmask=rng.choice(["255.255.255.0", "24", None])))
    if rng.random() < 0.3:
        ranges.append(DhcpRange(IPv4Address("10.0.0.0"), "set:known", mode="static", netmask="255.255.0.0"))
    hosts = tuple(_host(rng, k) for k in range(rng.randrange(5, 25)))
    return services.DhcpServer("tap1", IPv4Address("10.0.0.2"), Mac.parse("fa:16:3e:00:00:02"),
                               IPv4Address(rng.choice(["255.255.255.0", "255.255.0.0"])), tuple(ranges), hosts,
                               (), (), 86400, "openstacklocal", None, (), 0, options,
                               (IPv4Address("10.0.0.2"),), "openstacklocal")


def _check(srv: services.DhcpServer) -> int:
    """Every host's answer (twice) equals the cold one; how many differ from the server's default."""
    plain = services._resolve(srv.options, frozenset(), srv.server_ip, srv.dns_default, srv.domain_default)
    differ = 0
    for h in srv.hosts:
        want = _cold(srv, h)
        assert srv.options_for(h) == want, (srv.options, h)
        assert srv.options_for(h) == want
        differ += want != plain
    return differ


@pytest.mark.parametrize("seed", range(12), ids=lambda s: f"seed{s}")
def test_options_for_equals_the_answer_worked_out_without_memories(seed: int) -> None:
    rng = random.Random(seed)
    differ = 0
    for _ in range(8):
        options = tuple(_option(rng) for _ in range(rng.randrange(1, 10)))
        srv = _server(rng, options)
        differ += _check(srv)
        twin = _server(rng, options)  # the same option text, other hosts and ranges
        differ += _check(twin)
        assert _check(srv) == _check(srv)  # (asked again, with the twin's answers in the memories)
        if options:  # a refresh: one option line changed, a new server (the old one still alive)
            i = rng.randrange(len(options))
            again = dataclasses.replace(srv, options=(*options[:i], _option(rng), *options[i + 1:]))
            differ += _check(again)
            _check(srv)
        for memo in (services._OPTIONS, services._NAMED_TAGS, services._RESOLVED):
            memo.clear()
        _check(srv)
    assert differ > 0, "no client was told anything but the defaults: the test proves little"


def test_a_negated_tag_is_resolved_per_client() -> None:
    """``tag:!known`` names the tag ``!known``, which no client sets: _resolve skips the line for
    every client (this simulator's reading), and the memory keeps that answer for all of them."""
    opts = (DhcpOpt("option:mtu", ("1400",), ("tag:!known",)), DhcpOpt("option:mtu", ("1300",), ("tag:known",)))
    srv = _server(random.Random(0), opts)
    known = DhcpHost("fa:16:3e:00:00:01", "k", IPv4Address("10.0.0.5"), sets=("set:known",))
    other = DhcpHost("fa:16:3e:00:00:02", "o", IPv4Address("10.0.0.6"), sets=("set:port-9",))
    assert srv.options_for(known) == _cold(srv, known) and srv.options_for(known).mtu == 1300
    assert srv.options_for(other) == _cold(srv, other) and srv.options_for(other).mtu is None


def test_a_refreshed_server_is_not_given_the_old_answer() -> None:
    """A subnet's router changed: the server made again from the new option file answers the new
    router at once, though the old server (alive, its answers in the memories) is asked too."""
    host = DhcpHost("fa:16:3e:00:00:01", "a", IPv4Address("10.0.0.5"), sets=("set:port-1",))
    old = _server(random.Random(1), (DhcpOpt("option:router", ("10.0.0.1",), ("tag:subnet-a",)),))
    new = dataclasses.replace(old, options=(DhcpOpt("option:router", ("10.0.0.254",), ("tag:subnet-a",)),))
    assert old.options_for(host).router == (IPv4Address("10.0.0.1"),)
    assert new.options_for(host).router == (IPv4Address("10.0.0.254"),)
    assert old.options_for(host).router == (IPv4Address("10.0.0.1"),)
