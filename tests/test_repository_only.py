"""A clone of the repository alone passes the tests: nothing reads files beside it."""

from __future__ import annotations

import os
import re

import pytest

from guard import GUARD, ROOT, OutsideReads
from seeds import SEEDS, SOURCES, seed_text


def test_a_read_beside_the_repository_is_caught() -> None:
    probe = ROOT.parent / f"neutrino-guard-probe-{os.getpid()}"
    before = len(GUARD.seen)
    with pytest.raises(FileNotFoundError):
        probe.read_text()
    assert GUARD.seen[before:] == [str(probe)]
    del GUARD.seen[before:]  # the probe was this test's own


@pytest.mark.parametrize(("path", "outside"), [
    ("tests/fixtures/seeds/000.txt", False),
    ("../documents/seeds/000.txt", True),
    ("../main-other/README.md", True),
    ("/tmp/x", False),
    ("/proc/self/status", False),
], ids=["fixture", "beside", "sibling-with-prefix", "tmp", "proc"])
def test_what_counts_as_beside(path: str, outside: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert OutsideReads(ROOT).outside(path) is outside


REACH = re.compile(r"""\.\./shared|parent\s*/\s*["']shared["']|["']shared["']\s*/\s*["'](seeds|reference)["']|/work/shared""")


def test_no_module_names_a_path_beside_the_repository() -> None:
    offenders = []
    for top in ("src", "tests", "bench"):
        for path in (ROOT / top).rglob("*.py"):
            if path.name == "test_repository_only.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if REACH.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("seed", sorted(SOURCES))
def test_each_seed_fixture_names_its_source(seed: int) -> None:
    text = seed_text(seed)
    assert SOURCES[seed] in text.splitlines()[1]
    blocks = [line for line in text.splitlines() if line.startswith("@@")]
    assert blocks and all(re.search(r" lines \d+-\d+$", b) for b in blocks)
    assert (SEEDS / f"{seed:03d}.txt").resolve().is_relative_to(ROOT)
