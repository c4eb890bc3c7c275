"""The seed documents' command outputs (tests/fixtures/seeds/NNN.txt) for tests that cite them.

Each fixture holds the outputs of one seed document, copied verbatim with the section and source
lines they came from (see tests/fixtures/README.md); the prose around them is left out.

``excerpt(seed, first, last)`` returns the text from the line containing ``first`` through the
line containing ``last`` (both included), so a test names the seed file and the excerpt it checks.
``squash`` removes all whitespace, for the "whitespace aside" comparisons.
"""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEEDS = ROOT / "tests" / "fixtures" / "seeds"

#: the seed documents the fixtures were copied from
SOURCES = {
    0: "000_8d4cb9bc99c28ac6.txt",
    1: "001_a698fdd90fe942cc.txt",
    2: "002_3f9ee22a6d480f79.txt",
    3: "003_eed1d18a3248d01a.txt",
    4: "004_8fadbe0c3fa10b22.txt",
}


def seed_path(seed: int) -> pathlib.Path:
    if seed not in SOURCES:
        raise KeyError(f"no seed {seed}")
    return SEEDS / f"{seed:03d}.txt"


def seed_text(seed: int) -> str:
    return seed_path(seed).read_text()


def excerpt(seed: int, first: str, last: str | None = None, *, occurrence: int = 0, start: int = 0) -> str:
    """Lines of ``seed`` from the ``occurrence``-th line containing ``first`` (searching from char
    ``start``) to the next line containing ``last`` (or just that one line)."""
    text = seed_text(seed)
    pos = start
    for _ in range(occurrence + 1):
        idx = text.index(first, pos)
        pos = idx + 1
    begin = text.rfind("\n", 0, idx) + 1
    if last is None:
        end = text.find("\n", idx)
    else:
        lidx = text.index(last, idx)
        end = text.find("\n", lidx + len(last.rstrip("\n")))
    if end == -1:
        end = len(text)
    return text[begin:end] + "\n"


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def between(seed: int, start: str, end: str, *, occurrence: int = 0, include_end: bool = False) -> str:
    """The exact substring of ``seed`` from ``start`` (included) up to ``end`` (excluded unless
    ``include_end``). For seed 004, whose captures lost their line breaks."""
    text = seed_text(seed)
    pos = 0
    for _ in range(occurrence + 1):
        idx = text.index(start, pos)
        pos = idx + 1
    eidx = text.index(end, idx + len(start))
    return text[idx: eidx + (len(end) if include_end else 0)]
