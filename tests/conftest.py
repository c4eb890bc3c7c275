"""Shared fixtures: seed excerpts, throwaway namespaces, a private Open vSwitch.

Tests marked ``root`` need root and the real tools. As root they always run; in CI (CI=true) a
missing prerequisite is a failure, never a silent skip.
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
            item.add_marker(pytest.mark.skip(reason="needs root (run `make test` as root)"))
        elif missing and not IN_CI:
            item.add_marker(pytest.mark.skip(reason=f"missing tools: {', '.join(missing)}"))
        # in CI as root with missing tools the test runs and fails loudly


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
