"""Shared fixtures: seed excerpts, throwaway namespaces, a private Open vSwitch.

Tests marked ``root`` need root and the real tools. As root they always run; in CI (CI=true) a
missing prerequisite is a failure, never a silent skip; without root the run ends with one line
saying how many did not run and why.

Tests read only files inside the repository (``guard.py``): a file opened beside the clone fails
the session.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sys
from collections.abc import Iterator

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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _group_for_workers(items)
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


def _group_for_workers(items: list[pytest.Item]) -> None:
    """Groups for pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``): one per module, so a
    module's fixtures (its server, its database) are made once, on one worker; and one for all the
    modules with a test that needs root, so the real-tool tests (namespaces, Open vSwitch, dnsmasq,
    keepalived) run one at a time, as they always have, while the other worker runs the rest."""
    def module(item: pytest.Item) -> str:  # doctests too: the file they were collected from
        return item.nodeid.split("::", 1)[0]
    root_modules = {module(item) for item in items if "root" in item.keywords}
    for item in items:
        item.add_marker(pytest.mark.xdist_group("root" if module(item) in root_modules else module(item)))


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
