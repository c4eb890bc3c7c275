"""``neutrino trace`` and ``ping`` as whole processes (issue #17): the same answers as in-process,
from the kept world and the kept snapshot, without importing what they do not use."""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import pickle
import subprocess
import sys

import pytest

from neutrino import worldkeep
from neutrino.cli import build_parser, main
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


# -- third round (cli3): the command's own process --------------------------------------------------

def _run_script(state: pathlib.Path, *argv: str) -> tuple[int, str, list[str]]:
    """``neutrino ARGV`` as the installed script runs it (``main()``, no arguments: the command line
    is the process's); stderr's last line is what the process reported after main and at exit."""
    script = ("import atexit, gc, sys\n"
              "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, file=sys.stderr))\n"
              "from neutrino.cli import main\nrc = main()\nsys.stdout.flush()\n"
              "print('collecting', gc.isenabled(), 'hashlib' in sys.modules, file=sys.stderr)\nsys.exit(rc)\n")
    env = dict(os.environ, NEUTRINO_STATE=str(state))
    proc = subprocess.run([sys.executable, "-c", script, *argv], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr.splitlines()


@pytest.mark.parametrize("argv", [("trace", "cirros", "8.8.8.8"), ("ping", "outside", "10.1.0.2"),
                                  ("hosts",), ("bogus",)])
def test_a_short_read_as_the_neutrino_command_runs_without_the_collector(
        seed000: pathlib.Path, cli: Cli, argv: tuple[str, ...]) -> None:
    import gc

    rc, out, report = _run_script(seed000, *argv)
    if argv == ("bogus",):  # refused by the parser: the collector as always, nothing frozen
        assert rc == 2 and "invalid choice: 'bogus'" in "\n".join(report) and report[-1] == "frozen False"
        return
    assert (rc, out) == cli(*argv)[:2]  # the same answer
    assert gc.isenabled()  # main([...]) in this process left the collector as it was
    # the process: no collector while it ran, its objects frozen at exit (no last search for
    # cycles), and no hashlib (the kept world's code is known by its files' sizes and times)
    assert report[-2:] == ["collecting False False", "frozen True"]


def test_a_command_that_is_no_short_read_keeps_the_collector(seed000: pathlib.Path) -> None:
    rc, out, report = _run_script(seed000, "collect")
    assert rc == 0 and out.strip().endswith("neutrino-collect")
    assert report[-2:] == ["collecting True False", "frozen False"]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(found) == 1
    return dict(found[0].choices)


def test_only_the_named_subcommands_parser_is_built_and_it_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    full = build_parser()
    names = _subcommands(full)
    assert {"trace", "ping", "exec", "up", "server", "agent"} <= set(names)
    for name, whole in names.items():
        lazy = build_parser(only=name)
        subs = _subcommands(lazy)
        assert list(subs) == list(names)  # every name (and its help line) is there
        assert lazy.format_help() == full.format_help()
        assert subs[name].format_help() == whole.format_help() and subs[name].format_usage() == whole.format_usage()
        assert all(type(p).__name__ == "_Unbuilt" for n, p in subs.items() if n != name)
    argv = ["trace", "cirros", "8.8.8.8", "--proto", "tcp", "--dport", "80", "--tcpdump", "compute:tap1", "--json"]
    assert build_parser(only="trace").parse_args(argv) == full.parse_args(argv)
    assert build_parser(only="").format_help() == full.format_help()


@pytest.mark.parametrize("argv", [["--json", "trace"], ["-1", "trace"], ["tr", "cirros", "x"], [], ["ping"]])
def test_a_command_line_the_parser_refuses_is_refused_as_before(
        argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as lazy_exit:
        main(argv)
    lazy = capsys.readouterr()
    with pytest.raises(SystemExit) as full_exit:
        build_parser().parse_args(argv)
    assert (lazy_exit.value.code, lazy) == (full_exit.value.code, capsys.readouterr())
    assert lazy_exit.value.code == 2 and "usage: neutrino" in lazy.err


def _fingerprint(src: pathlib.Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.run([sys.executable, "-c", "from neutrino.sim.keep import code_fingerprint as f; print(f())"],
                          env=env, cwd=src, capture_output=True, text=True, timeout=60, check=True).stdout.strip()


def test_the_kept_worlds_code_fingerprint_changes_with_any_write_to_the_simulator_or_host_model(
        tmp_path: pathlib.Path) -> None:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "neutrino", src / "neutrino", ignore=shutil.ignore_patterns("__pycache__"))
    first = _fingerprint(src)
    assert first == _fingerprint(src) and str(src / "neutrino" / "sim") in first  # same files: same code
    assert first != _fingerprint(ROOT / "src")  # another tree (a copy of the same text, even)
    for name in ("sim/world.py", "host/iptables.py"):
        path = src / "neutrino" / name
        before = path.stat()
        text = path.read_bytes()
        changed = text.replace(b"# ", b"#_", 1)  # other text (still Python), the same size
        assert changed != text and len(changed) == len(text)
        path.write_bytes(changed)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # its modification time put back
        assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size
        assert _fingerprint(src) != first  # still known: its change time moved
        path.write_bytes(text)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert _fingerprint(src) != first  # put back as it was: not known to be the same, kept worlds are rebuilt
        first = _fingerprint(src)
    (src / "neutrino" / "sim" / "extra.py").write_text("")
    assert _fingerprint(src) != first  # a module added
