"""The command line as a whole process: ``neutrino --help``, ``trace`` and ``ping`` on seed 000.

    .venv/bin/python bench/cli_bench.py                              # this tree, 21 runs of each
    .venv/bin/python bench/cli_bench.py --compare /tmp/before/src    # and another tree, run for run

Brings seed 000 up (``neutrino up examples/seed000.yaml``) in a temporary state folder of its own
(one per tree: a kept world is tagged with the code that kept it), runs each command once
untimed (the kept world, the ``.pyc`` files and the dataclasses' kept code are then what a user's
second command finds), then times ``--repeat`` runs of each command as a new Python process, the
trees taking turns run by run so that both see the same load. Each run is a fresh interpreter
(``python -c 'from neutrino.cli import main; main()'``, what the ``neutrino`` script does) with
``PYTHONPATH`` set to the tree's ``src`` and ``PYTHONDONTWRITEBYTECODE`` unset.

Printed, per command and tree: the median and the least wall time, and the median and the least
CPU time (user + system of the child, from ``wait4``): on this shared 2-core machine, wall time
moves with the other load, CPU time much less. The state folders are removed at the end.

    .venv/bin/python bench/cli_bench.py --instructions --compare /tmp/before/src

counts instead the instructions each command executes (one run of each under ``valgrind
--tool=callgrind``, which must be installed; ~50 times slower): a count that the other load does not
move (it varies by ~0.1% from run to run, with the hash seed), to compare trees on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = "import sys\nfrom neutrino.cli import main\nsys.exit(main())"
COMMANDS = {
    "--help": ["--help"],
    "trace": ["trace", "cirros", "8.8.8.8"],
    "ping": ["ping", "cirros", "8.8.8.8"],
}


def _env(src: pathlib.Path, state: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(src)
    env["NEUTRINO_STATE"] = str(state)
    return env


def run(src: pathlib.Path, state: pathlib.Path, argv: list[str]) -> tuple[float, float]:
    """One ``neutrino ARGV`` as its own process: (wall seconds, CPU seconds)."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", LAUNCH, *argv], env=_env(src, state), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own CPU time, as no other call gives it
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        err = errors.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"neutrino {' '.join(argv)} ({src}) failed ({proc.returncode}): {err.strip()}")
    return wall, usage.ru_utime + usage.ru_stime


def instructions(src: pathlib.Path, state: pathlib.Path, argv: list[str]) -> int:
    """The instructions ``neutrino ARGV`` executes as its own process, counted by callgrind."""
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                           "-c", LAUNCH, *argv], env=_env(src, state), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    counted = [line.split()[-1] for line in proc.stderr.splitlines() if "Collected :" in line]
    if not counted:
        raise SystemExit(f"valgrind neutrino {' '.join(argv)} ({src}) counted nothing: {proc.stderr.strip()[-500:]}")
    return int(counted[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=21, help="timed runs of each command (default 21)")
    ap.add_argument("--src", metavar="SRC", default=str(ROOT / "src"),
                    help="the tree to time (default: this repository's src)")
    ap.add_argument("--compare", metavar="SRC", default=None,
                    help="another tree's src folder (e.g. from 'git archive HEAD src'), timed run for run")
    ap.add_argument("--scenario", default=str(ROOT / "examples" / "seed000.yaml"))
    ap.add_argument("--only", choices=sorted(COMMANDS), action="append", help="only this command (repeatable)")
    ap.add_argument("--instructions", action="store_true",
                    help="count each command's instructions (valgrind's callgrind, one run each) instead of timing")
    args = ap.parse_args()
    trees = {"this tree": pathlib.Path(args.src).resolve()}
    if args.compare:
        trees["compare"] = pathlib.Path(args.compare).resolve()
    commands = {k: v for k, v in COMMANDS.items() if not args.only or k in args.only}
    top = pathlib.Path(tempfile.mkdtemp(prefix="neutrino-cli-bench-"))
    try:
        states = {}
        for label, src in trees.items():
            states[label] = top / label.replace(" ", "-")
            subprocess.run([sys.executable, "-c", LAUNCH, "up", args.scenario], env=_env(src, states[label]),
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            for argv in commands.values():  # untimed: what a second command finds kept
                run(src, states[label], argv)
        if args.instructions:
            print("neutrino CLI, seed 000: instructions executed (valgrind --tool=callgrind), one run of each")
            print(f"{'command':<10} " + " ".join(f"{label:>14}" for label in trees) + ("   change" if len(trees) > 1 else ""))
            for name, argv in commands.items():
                counts = [instructions(src, states[label], argv) for label, src in trees.items()]
                change = f"   {counts[0] / counts[1] - 1:+.1%}" if len(counts) > 1 else ""
                print(f"{name:<10} " + " ".join(f"{c:>14,}" for c in counts) + change)
            return
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.repeat):
            for name, argv in commands.items():
                for label, src in trees.items():
                    times.setdefault((name, label), []).append(run(src, states[label], argv))
        load = os.getloadavg()[0]
        print(f"neutrino CLI, seed 000, {args.repeat} runs of each command per tree "
              f"(load average {load:.1f} at the end)")
        print(f"{'command':<10} {'tree':<10} {'wall median':>12} {'wall min':>9} {'CPU median':>11} {'CPU min':>8}")
        for (name, label), got in times.items():
            walls = [w for w, _ in got]
            cpus = [c for _, c in got]
            print(f"{name:<10} {label:<10} {statistics.median(walls):11.3f}s {min(walls):8.3f}s "
                  f"{statistics.median(cpus):10.3f}s {min(cpus):7.3f}s")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
