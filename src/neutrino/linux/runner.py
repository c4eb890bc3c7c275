"""The one way the Linux backend runs a command: an argv list, optionally inside a namespace.

Never a shell string. Failures raise :class:`ApplyError` with the command and its stderr.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from neutrino.errors import ApplyError, ConvergenceTimeout

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(argv: Sequence[str], *, netns: str | None = None, check: bool = True, input: str | None = None,
        env: Mapping[str, str] | None = None, timeout: float = 60.0) -> Result:
    """Run ``argv`` (inside ``netns`` when given) and return its output."""
    full = (["ip", "netns", "exec", netns] if netns else []) + list(argv)
    log.debug("run %s", " ".join(full))
    try:
        proc = subprocess.run(full, input=input, capture_output=True, text=True, env=dict(env) if env else None,
                              timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ApplyError(f"{full[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ApplyError(f"{' '.join(full)}: timed out after {timeout}s") from exc
    res = Result(tuple(full), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise ApplyError(f"{' '.join(full)}: exit {proc.returncode}: {proc.stderr.strip()[:500]}")
    return res


def wait_for(predicate: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> None:
    """Poll ``predicate`` until it is true, or raise :class:`ConvergenceTimeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise ConvergenceTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
