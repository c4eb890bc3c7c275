"""Shared fixtures: seed excerpts, throwaway namespaces, a private Open vSwitch.

Tests marked ``root`` need root and the real tools. As root they always run; in CI (CI=true) a
missing prerequisite is a failure, never a silent skip; without root the run ends with one line
saying how many did not run and why.

Tests read only files inside the repository (``guard.py``): a file opened beside the clone fails
the session.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import pathlib
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from neutrino.linux import netns as netns_lib
from neutrino.linux.ovs import OvsInstance

# the tests' shared helpers (seeds.py) import as top-level modules from any test directory
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from guard import GUARD, install  # noqa: E402

install()

IS_ROOT = os.geteuid() == 0
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REAL_TOOLS = ("ip", "ovs-vsctl", "ovs-vswitchd", "ovsdb-server", "ovs-ofctl", "iptables", "iptables-save",
              "brctl", "dnsmasq")

_counter = itertools.count()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [t for t in REAL_TOOLS if shutil.which(t) is None]
    for item in items:
        if "root" not in item.keywords:
            continue
        if not IS_ROOT:
            if IN_CI:  # never skipped in CI: a run that cannot do them fails
                raise pytest.UsageError("CI must run as root: the real-tool tests (marked root) cannot run")
            item.add_marker(pytest.mark.skip(reason=NOT_ROOT))
        elif missing and not IN_CI:
            item.add_marker(pytest.mark.skip(reason=f"missing tools: {', '.join(missing)}"))
        # in CI as root with missing tools the test runs and fails loudly


NOT_ROOT = "needs root (run `make test` as root)"


@functools.cache
def _needs_root(module: str) -> bool:
    """Whether a test file has tests marked ``root`` (read as text: the controller does not collect)."""
    path = pathlib.Path(__file__).resolve().parent.parent / module
    return path.suffix == ".py" and path.is_file() and "mark.root" in path.read_text()


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """How ``make test``'s two workers (``-n 2 --dist loadscope``) share the tests: a whole file to
    one worker, so its fixtures (its server, its database) are made once; and every file with tests
    that need root to one worker, one after another, as they always ran (the real-tool tests share
    namespace prefixes and must not run at the same time), while the other worker runs the rest."""
    from xdist.scheduler import LoadScopeScheduling

    class FileOrRoot(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "root" if _needs_root(module) else module

    return FileOrRoot(config, log)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    left = [r for r in terminalreporter.stats.get("skipped", []) if "root" in r.keywords or "postgres" in r.keywords]
    if left:
        reasons = sorted({str(r.longrepr[2]).removeprefix("Skipped: ") for r in left
                          if isinstance(r.longrepr, tuple)})
        terminalreporter.write_line(f"real-tool tests not run: {len(left)} ({'; '.join(reasons)})")
    if GUARD.seen:
        terminalreporter.write_line("files read outside the repository (tests must read only its own files): "
                                    + ", ".join(sorted(set(GUARD.seen))), red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller reports and fails the run
        workeroutput["guard_seen"] = list(GUARD.seen)
    if GUARD.seen and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist's controller: take each worker's reads outside the repository as its own."""
    GUARD.seen.extend(getattr(node, "workeroutput", {}).get("guard_seen", ()))


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh namespace named nt-test-<pid>-<n>, deleted afterwards even if the test fails."""
    name = f"nt-test-{os.getpid()}-{next(_counter)}"
    netns_lib.add(name)
    try:
        yield name
    finally:
        for pid in netns_lib.pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        netns_lib.delete(name)


@pytest.fixture
def ovs(netns: str, tmp_path: os.PathLike[str]) -> Iterator[OvsInstance]:
    """A private Open vSwitch running inside ``netns`` (userspace datapath only)."""
    inst = OvsInstance(netns=netns, rundir=os.path.join(str(tmp_path), "ovs"))
    try:
        inst.start()
        yield inst
    finally:
        inst.stop()
