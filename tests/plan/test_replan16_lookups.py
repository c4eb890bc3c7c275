"""Issue #17, replan16: a :class:`Profile`'s hash computed once.

A profile keys the planners' per-snapshot tables (``ovs_tun._per_network``, ``_registered``, the
kept pieces' memos) and is hashed ~2,000 times in one re-plan of the bench cloud; the dataclass's
generated hash built a tuple of its eleven fields and called two enums' Python ``__hash__`` each
time. It is now computed when the profile is made (and again when it is unpickled or copied: a
string's hash differs between processes).

The tests: the cached hash is the one the dataclass would compute, for every profile and for
profiles made by ``replace``; a pickle from a process of another hash seed finds the same table
entries; and random walks (VXLAN beside GRE, hosts joining and leaving networks, l2population on
and off) equal cold plans."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import random
import subprocess
import sys

import pytest

from neutrino.plan.generation import GRIZZLY, HAVANA, MODERN, PROFILES, Profile
from neutrino.plan.nova_network import NOVA_PROFILE
from tests.plan import replan_kit
from tests.plan.test_review11_patch import _Maker, _walk

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)

_ALL = {"grizzly": GRIZZLY, "havana": HAVANA, "modern": MODERN, "nova": NOVA_PROFILE}


def _generated_hash(p: Profile) -> int:
    """The hash a frozen dataclass computes: of the compared fields' values, in order."""
    return hash(tuple(getattr(p, f.name) for f in dataclasses.fields(p) if f.compare))


def _variants(seed: int) -> list[Profile]:
    """Profiles made by ``replace`` with 1-3 fields taken from another profile at random."""
    rng = random.Random(seed)
    names = [f.name for f in dataclasses.fields(Profile) if f.init]
    out = []
    for _ in range(20):
        base, other = rng.sample(sorted(_ALL), 2)
        picked = rng.sample(names, rng.randint(1, 3))
        out.append(dataclasses.replace(_ALL[base], **{n: getattr(_ALL[other], n) for n in picked}))
    return out


@pytest.mark.parametrize("name", sorted(_ALL))
def test_a_profile_s_hash_is_the_dataclass_s(name: str) -> None:
    p = _ALL[name]
    assert hash(p) == _generated_hash(p)
    assert "_hash" not in repr(p)
    assert all(p == q for q in (dataclasses.replace(p), copy.deepcopy(p), pickle.loads(pickle.dumps(p))))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_profiles_made_by_replace_hash_their_own_fields(seed: int) -> None:
    """A profile made from another by ``replace`` hashes its own fields (not the other's, carried),
    and equal profiles hash equal and find each other's table entries."""
    made = _variants(seed)
    assert any(hash(p) != hash(_ALL[n]) for p in made for n in _ALL)  # (the variants differ from the four)
    table: dict[Profile, int] = {}
    for i, p in enumerate(made):
        assert hash(p) == _generated_hash(p)
        table.setdefault(p, i)
    for i, p in enumerate(made):
        twin = Profile(*(getattr(p, f.name) for f in dataclasses.fields(p) if f.init))
        assert twin == p and hash(twin) == hash(p) and table[twin] == table[p] <= i


def test_a_profile_pickled_by_another_process_finds_its_entries() -> None:
    """Another hash seed gives strings other hashes: a pickled profile's hash is computed again."""
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    code = ("import pickle, sys; from neutrino.plan.generation import PROFILES; "
            "sys.stdout.buffer.write(pickle.dumps(PROFILES))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         env={**os.environ, "PYTHONHASHSEED": seed}).stdout
    theirs: dict[str, Profile] = pickle.loads(out)
    table = {p: name for name, p in PROFILES.items()}
    assert {name: table.get(p) for name, p in theirs.items()} == {name: name for name in PROFILES}


@pytest.mark.parametrize("l2population", [True, False], ids=["l2pop", "no-l2pop"])
@pytest.mark.parametrize("seed", [3, 8])
def test_random_walks_equal_cold_plans(seed: int, l2population: bool) -> None:
    """The review's random walks over VXLAN and GRE networks side by side (hosts joining and leaving
    them as ports come and go, the agents' way and every host, both firewalls, the older agents):
    every step equals its cold plan."""
    maker = _Maker(seed, l2population=l2population,
                   tenant_network_types=random.Random(seed).choice([("vxlan", "gre"), ("gre", "vxlan")]))
    assert _walk(maker, 24, agents=True) == []
