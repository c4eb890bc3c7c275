"""Who makes ids, MAC addresses and the creation sequence: random by default, or from a seed.

``IdGenerator()`` gives what Neutron gives: uuid4 ids and random ``fa:16:3e`` MACs.
``IdGenerator("some seed")`` gives streams determined by the seed: the n-th id made for a table is
the sha256 of (seed, table, n) laid out as a version-4 UUID, the n-th MAC is ``fa:16:3e`` plus three
bytes of the sha256 of (seed, "mac", n). The positions n are counters in the database
(``neutrino_counters``), bumped inside the serialised write transaction that uses them, so:

- the same requests in the same order on a fresh database give the same ids and MACs, hence the
  same local VLANs, device names and plans;
- a rolled-back request gives its values back (the next request gets them), exactly as if it had
  never been made;
- a restarted server (or a second server on the same database) continues the streams rather than
  repeating them, and an id that is nonetheless taken (a row made with another seed, or randomly) is
  skipped for the stream's next value. The callers retry the next MAC when one is taken on a network.

The creation sequence (``created_seq``) is one more counter, used in both modes.

    >>> a, b = IdGenerator("s"), IdGenerator("s")
    >>> a._uuid("id:networks", 1) == b._uuid("id:networks", 1) != a._uuid("id:networks", 2)
    True
    >>> a._mac(1)[:9], IdGenerator().deterministic, a.deterministic
    ('fa:16:3e:', False, True)
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from neutrino.db.session import raw

MAC_PREFIX = "fa:16:3e"
_MAX_SKIPS = 10_000


def random_uuid() -> str:
    """``str(uuid.uuid4())`` without the UUID object: 122 random bits (``os.urandom``, as uuid4), the
    version nibble 4 and the RFC 4122 variant bits."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def reserve(session: Session, name: str, count: int = 1) -> int:
    """The first of ``count`` fresh values (1, 2, ...) of the counter ``name``, taken in the caller's
    write transaction (writes are serialised, so no other transaction can take the same ones)."""
    db = raw(session, flush=False)  # a counter: nothing pending is flushed for it (as on the Core connection)
    last = db.scalar("UPDATE neutrino_counters SET value = value + ? WHERE name = ? RETURNING value", (count, name))
    if last is None:
        db.execute("INSERT INTO neutrino_counters (name, value) VALUES (?, ?)", (name, count))
        last = count
    return int(last) - count + 1


def next_seq(session: Session) -> int:
    """The next number of the creation sequence."""
    return reserve(session, "created_seq")


def seed_of_file(path: str | Path) -> str:
    """The seed for a scenario file: its ``seed:`` key when it has one, else its file name. Not its
    bytes: an edited scenario keeps the ids of everything it created before the edit, so two
    versions' plans differ only where the edit did."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        doc = None
    if isinstance(doc, dict) and doc.get("seed") is not None:
        return f"scenario-seed:{doc['seed']}"
    return f"scenario:{Path(path).name}"


class IdGenerator:
    """Ids and MACs for one cloud: random (``seed`` None) or the seed's deterministic streams."""

    __slots__ = ("seed",)

    def __init__(self, seed: str | None = None) -> None:
        self.seed = seed

    @property
    def deterministic(self) -> bool:
        return self.seed is not None

    def __repr__(self) -> str:
        return f"IdGenerator({self.seed!r})"

    def _digest(self, stream: str, n: int) -> bytes:
        return hashlib.sha256(f"{self.seed}\0{stream}\0{n}".encode()).digest()

    def _uuid(self, stream: str, n: int) -> str:
        return str(uuid.UUID(bytes=self._digest(stream, n)[:16], version=4))

    def _mac(self, n: int) -> str:
        return MAC_PREFIX + "".join(f":{b:02x}" for b in self._digest("mac", n)[:3])

    def new_id(self, session: Session, model: Any) -> str:
        """A fresh id for a row of ``model`` (a mapped class with an ``id`` primary key)."""
        if self.seed is None:
            return random_uuid()
        table = model.__table__
        stream = f"id:{table.name}"
        taken = f"SELECT id FROM {table.name} WHERE id = ?"
        for _ in range(_MAX_SKIPS):
            candidate = self._uuid(stream, reserve(session, stream))
            if raw(session, flush=False).scalar(taken, (candidate,)) is None:
                return candidate
        raise RuntimeError(f"{_MAX_SKIPS} ids of the seeded stream for {table.name} are all taken")

    def new_mac(self, session: Session) -> str:
        """A MAC address candidate (the caller checks it is free on its network, and asks again if not)."""
        if self.seed is None:
            h = os.urandom(3).hex()
            return f"{MAC_PREFIX}:{h[:2]}:{h[2:4]}:{h[4:]}"
        return self._mac(reserve(session, "mac"))


RANDOM = IdGenerator()
