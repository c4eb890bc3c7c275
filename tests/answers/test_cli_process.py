"""``neutrino trace`` and ``ping`` as whole processes (issue #17): the same answers as in-process,
from the kept world and the kept snapshot, without importing what they do not use."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle
import subprocess
import sys

import pytest

from neutrino import worldkeep
from neutrino.deploy import open_cloud

from .conftest import Cli, _cli

ROOT = pathlib.Path(__file__).resolve().parents[2]

# what a trace or ping that finds its world kept has no use for: the scenario reader, the database
# and the planners (the kept world and snapshot stand for them), the pcap writer (--pcap only), the
# Linux backend's runner (no server converging), and the standard modules only a write needs
UNUSED = ("yaml", "sqlalchemy", "neutrino.db", "neutrino.deploy", "neutrino.plan", "neutrino.services.cloud",
          "neutrino.sim.pcap", "neutrino.linux.runner", "subprocess", "tempfile", "uuid")


def _run(state: pathlib.Path, *argv: str) -> tuple[int, str, set[str]]:
    """``neutrino ARGV`` as its own process: exit status, stdout, and the modules it imported."""
    script = ("import sys\nfrom neutrino.cli import main\nrc = main(sys.argv[1:])\nsys.stdout.flush()\n"
              "print(' '.join(sorted(sys.modules)), file=sys.stderr)\nsys.exit(rc)\n")
    env = dict(os.environ, NEUTRINO_STATE=str(state))
    proc = subprocess.run([sys.executable, "-c", script, *argv], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return proc.returncode, proc.stdout, set(proc.stderr.split())


@pytest.fixture
def cli(seed000: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return _cli(seed000, capsys, monkeypatch)


@pytest.mark.parametrize("argv", [("trace", "cirros", "8.8.8.8"), ("ping", "cirros", "8.8.8.8"),
                                  ("trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "23"),
                                  ("ping", "outside", "10.1.0.2")])
def test_a_command_as_a_process_answers_as_in_process_and_imports_only_what_it_uses(
        seed000: pathlib.Path, cli: Cli, argv: tuple[str, ...]) -> None:
    rc, out, modules = _run(seed000, *argv)
    assert (rc, out) == cli(*argv)[:2]
    assert "neutrino.sim.world" in modules  # it did trace
    imported = sorted(m for m in modules for unused in UNUSED if m == unused or m.startswith(unused + "."))
    assert imported == []


def test_help_imports_no_simulator(seed000: pathlib.Path) -> None:
    rc, out, modules = _run(seed000, "--help")
    assert rc == 0 and "trace" in out
    assert not any(m.startswith(("neutrino.sim", "neutrino.host", "neutrino.dataclass_code")) for m in modules)


def test_the_kept_snapshot_is_the_clouds_without_the_planners_cache(seed000: pathlib.Path) -> None:
    kept = worldkeep.kept_cloud(seed000)
    assert kept is not None
    db = open_cloud(seed000).snapshot()  # (the kept one is what the hosts were planned from: the same objects)
    assert [p.id for p in kept.ports] == [p.id for p in db.ports] and kept.routers == db.routers
    assert all(isinstance(k, str) for k in kept._index)  # the planners' look-ups (tuple keys) are not kept
    assert kept._index == dataclasses.replace(kept, _index={})._index  # what any snapshot indexes
    with (seed000 / "world.cloud.pickle").open("rb") as f:
        text = f.read()
    assert b"neutrino.plan" not in text and b"neutrino.services.snapshot" in text
    assert pickle.loads(text)[1] == kept
