"""Blocks of the Neutron data-plane reference (tests/fixtures/reference/neutron-dataplane.md, a copy of
the project's reference document) that tests compare against, read from the document itself."""

from __future__ import annotations

from tests.seeds import SEEDS

REFERENCE = SEEDS.parent / "reference" / "neutron-dataplane.md"  # tests/fixtures/reference/


def code_block(heading: str, *, index: int = 0) -> str:
    """The ``index``-th fenced code block after the line that starts with ``heading``, with the
    document's ``<- ...`` margin notes removed."""
    text = REFERENCE.read_text()
    rest = text[text.index("\n" + heading) + 1:]
    for _ in range(index + 1):
        start = rest.index("```") + 3
        rest = rest[start:]
        end = rest.index("```")
        block, rest = rest[:end], rest[end + 3:]
    lines = block.split("\n", 1)[1].splitlines()  # drop the fence's language line
    return "".join(line.split("   <-")[0].rstrip() + "\n" for line in lines if line.strip())


#: §2.4: br-int for the hybrid case (ofports patch-tun=1, int-br-ex=2, qvo3f2a1b7c-d4=3)
BR_INT_HYBRID = code_block("### 2.4")
