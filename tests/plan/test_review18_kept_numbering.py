"""Review of replan17 (issue #17): a new namespace around the very devices tuple last numbered
takes the kept numbering (``plan._kept_numbering``). The numbering reads the devices alone, so a
namespace that differs in every other field (routes, sysctls, nsid, iptables) but holds the very
same links gets what numbering it afresh gives, with its own other fields; the path is counted
(else the comparison proves nothing)."""

from __future__ import annotations

import dataclasses
import random

import pytest

import neutrino.plan as plan
from neutrino.host.iproute_link import Link
from neutrino.host.state import ROOT, NamespaceState
from neutrino.host.sysctl import Sysctl


def _links(rng: random.Random) -> tuple[Link, ...]:
    out = []
    for i in range(rng.randrange(1, 6)):
        up = rng.random() < 0.7
        out.append(Link(rng.choice((0, 0, 7 + i)), f"dev{i}", flags=("BROADCAST", "UP") if up else ("BROADCAST",),
                        link_type=rng.choice(("ether", "ether", "none")), mac=f"fa:16:3e:00:00:{i:02x}",
                        master=rng.choice((None, None, "br0"))))
    return tuple(out)


@pytest.mark.parametrize("seed", range(20), ids=lambda s: f"seed{s}")
def test_a_namespace_around_the_very_links_numbers_as_afresh(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(plan, "_NUMBERED", plan.InputsMemo())
    afresh: list[NamespaceState] = []
    real = plan._numbered_namespace

    def counting(ns: NamespaceState) -> NamespaceState:
        afresh.append(ns)
        return real(ns)

    monkeypatch.setattr(plan, "_numbered_namespace", counting)
    links = _links(rng)
    first = NamespaceState(ROOT, links=links, nsid=1)
    assert plan._kept_numbering("h1", first) == real(first)
    again = dataclasses.replace(first, nsid=rng.randrange(2, 9),
                                sysctls=(Sysctl("net.ipv6.conf.all.disable_ipv6", "1"),))
    got = plan._kept_numbering("h1", again)
    assert afresh == [first]  # the second took the kept numbering
    assert got == real(again)
    assert got.nsid == again.nsid and got.sysctls == again.sysctls
    # an equal but distinct tuple gets the same answer (whichever path it takes)
    other = dataclasses.replace(first, links=tuple(list(links)))
    assert plan._kept_numbering("h1", other) == real(other)
    # other devices (one more) under the same name: numbered as they are, not as kept
    grown = dataclasses.replace(first, links=(*links, Link(0, "devx", link_type="ether", mac="fa:16:3e:00:00:ff")))
    assert plan._kept_numbering("h1", grown) == real(grown)
