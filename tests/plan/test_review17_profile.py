"""Review17 of replan16 (``Profile`` computes its hash once, pickles as its fields).

Guards beside ``test_replan16_lookups``'s: every pickle protocol and ``copy.copy`` give an equal
profile of the local hash; profiles as the *keys* of a dict and the members of a set pickled by a
process of another hash seed are found by the local profiles (mutation caught: a pickled form that
carries ``_hash``, e.g. the slotted dataclass's own ``__getstate__`` once ``__reduce__`` is gone);
the hash cannot be set by ``replace`` or assignment.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import subprocess
import sys

import pytest

from neutrino.plan.generation import GRIZZLY, HAVANA, MODERN, PROFILES, Profile


@pytest.mark.parametrize("protocol", list(range(pickle.HIGHEST_PROTOCOL + 1)))
def test_every_pickle_protocol_and_copy_give_the_local_hash(protocol: int) -> None:
    for p in PROFILES.values():
        for q in (pickle.loads(pickle.dumps(p, protocol=protocol)), copy.copy(p)):
            assert q == p and hash(q) == hash(p) and q is not p
            assert {p: 1}[q] == 1


def test_keys_and_members_pickled_by_another_hash_seed_are_found() -> None:
    seed = "3" if os.environ.get("PYTHONHASHSEED") != "3" else "4"
    code = ("import pickle, sys; from neutrino.plan.generation import PROFILES; "
            "sys.stdout.buffer.write(pickle.dumps(({p: n for n, p in PROFILES.items()}, set(PROFILES.values()), "
            "[hash(p) for p in PROFILES.values()])))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         env={**os.environ, "PYTHONHASHSEED": seed}).stdout
    keyed, members, their_hashes = pickle.loads(out)
    assert their_hashes != [hash(p) for p in PROFILES.values()]  # (the seeds do hash strings apart)
    assert keyed[GRIZZLY] == "grizzly" and keyed[HAVANA] == "havana" and keyed[MODERN] == "modern"
    assert members == set(PROFILES.values()) and all(p in members for p in PROFILES.values())


def test_the_hash_is_not_a_field_one_can_set() -> None:
    with pytest.raises(ValueError, match="_hash"):
        dataclasses.replace(GRIZZLY, _hash=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        GRIZZLY._hash = 1  # type: ignore[misc]
    assert Profile(*(getattr(GRIZZLY, f.name) for f in dataclasses.fields(Profile) if f.init)) == GRIZZLY
