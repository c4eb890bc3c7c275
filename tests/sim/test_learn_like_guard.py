"""simboot22's guard: only a learn that copies the whole source MAC into one MAC match of its own
makes its next flows from an earlier one (:meth:`neutrino.sim.ovs._SrcLearn.flow`). The others (the
source copied twice, in part, or into a load) work out every flow from the specs, and each equals
:func:`neutrino.sim.ovs._learned_flow`; with the guard forced open, a learn that also loads the
source gets a wrong flow."""

from __future__ import annotations

import random

import pytest

from neutrino.sim import ovs
from tests.sim.test_simboot18_boot import _BR_TUN, _INTO_LOAD, _PART, _TWICE, _learn, _record


def _expected(rec: ovs._SrcLearn, src: int) -> object:
    """The flow the specs give for a frame with source ``src`` (the record's other reads kept)."""
    reads = list(rec.reads)
    for i, off, n in rec.bits:
        reads[i] = (src >> off) & ((1 << n) - 1)
    return ovs._learned_flow(rec.learn, tuple(reads))


def _macs(seed: int, n: int) -> list[int]:
    rnd = random.Random(seed)
    return [0, (1 << 48) - 1, *(rnd.getrandbits(48) for _ in range(n))]


@pytest.mark.parametrize("text", [_BR_TUN, _TWICE, _PART, _INTO_LOAD], ids=["br-tun", "twice", "part", "into-load"])
def test_every_learned_flow_is_the_specs_flow(text: str) -> None:
    rec = _record(_learn(text))
    assert (rec.mac_at >= 0) == (text == _BR_TUN)  # (only br-tun's copies the whole source into one match)
    for src in _macs(5, 60):
        assert rec.flow(src) == _expected(rec, src)


def test_with_the_guard_forced_open_a_learn_loading_the_source_too_gets_a_wrong_flow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ovs, "_whole_mac_match", lambda learn, bits: True)
    rec = _record(_learn(_TWICE))  # (its match at 0 takes the source whole; the load takes a part of it)
    assert rec.mac_at == 0
    wrong = [src for src in _macs(6, 20) if rec.flow(src) != _expected(rec, src)]
    assert wrong  # the load's value stays the first flow's
