"""Every command of every walkthrough in docs/walkthroughs/ is run, and what it prints must be what
the document shows, so the walkthroughs never drift from the program.

The documents' format: a fenced block opened by a line of three backquotes and ``console`` holds
one or more commands, each on a line starting with ``$ `` (a line ending in a backslash goes on
with the next), followed by the lines it prints, up to the next ``$ `` line or the end of the
block. Every command is ``neutrino ...``, optionally piped into ``grep``, ``head``, ``tail`` or
``sort`` (run as the real tools, as a shell would). Blocks fenced otherwise (```yaml, plain ```)
are prose and not run.

How a walkthrough is run: in a fresh working folder of its own, where ``examples`` is the
repository's examples folder, ``NEUTRINO_STATE`` is ``./state`` and ``NO_COLOR`` is set, its
commands in order, each in-process through ``neutrino.cli.main`` (what ``neutrino`` runs). What a command "prints" is its
standard output passed through the pipe's filters, then its standard error (as a terminal shows
it: a shell pipes only standard output into ``grep``).

Two normalisations, nothing else: trailing whitespace of every line and blank lines at the end of
an output are ignored (Markdown editors strip them), and so are the figures of elapsed times as
progress lines print them (``(0.8 s)``: :data:`DURATION`). Nothing else is masked: scenario ids,
MACs and VLANs are seeded and deterministic, so an output that changes is a change of the program.

When a change alters what a command prints, regenerate the outputs and review the diff:

    .venv/bin/python -m tests.scenarios.test_walkthroughs --update            # every walkthrough
    .venv/bin/python -m tests.scenarios.test_walkthroughs --update seed003    # one of them
    .venv/bin/python -m tests.scenarios.test_walkthroughs                     # check only, print diffs
    .venv/bin/python -m tests.scenarios.test_walkthroughs --shell             # check, each command run by bash
    git diff docs/walkthroughs/

``--update`` rewrites only the output lines of the console blocks; the prose and the commands are
kept byte for byte.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from neutrino.cli import main as neutrino_main

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGHS = ROOT / "docs" / "walkthroughs"
EXAMPLES = ROOT / "examples"

FENCE_OPEN = "```console"
FENCE_CLOSE = "```"
PROMPT = "$ "
FILTERS = ("grep", "head", "tail", "sort")
#: an elapsed time as a progress line prints it, "(0.8 s)": masked when comparing
DURATION = re.compile(r"(?<![\w.])\d+\.\d+ s\)")


@dataclass
class Command:
    """One ``$`` command of a walkthrough: the text after the prompt (continuation lines joined),
    the document lines it spans, and the output the document shows."""

    text: str
    source: list[str]
    output: list[str]
    line: int  # 1-based line of the ``$`` in the document


@dataclass
class Block:
    """A console block: the line numbers of its fences (0-based) and its commands."""

    start: int
    end: int
    commands: list[Command]


def parse(text: str) -> tuple[list[str], list[Block]]:
    """The document's lines and its console blocks."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != FENCE_OPEN:
            i += 1
            continue
        start = i
        i += 1
        commands: list[Command] = []
        while i < len(lines) and lines[i].strip() != FENCE_CLOSE:
            line = lines[i]
            if line.startswith(PROMPT):
                first = i
                source = [line]
                while source[-1].endswith("\\") and i + 1 < len(lines):
                    i += 1
                    source.append(lines[i])
                joined = " ".join(s[:-1] if s.endswith("\\") else s for s in source)
                commands.append(Command(joined[len(PROMPT):].strip(), source, [], first + 1))
            elif commands:
                commands[-1].output.append(line)
            elif line.strip():
                raise ValueError(f"line {i + 1}: a console block must start with a '$ ' command: {line!r}")
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: console block never closed")
        if not commands:
            raise ValueError(f"line {start + 1}: console block without a command")
        blocks.append(Block(start, i, commands))
        i += 1
    return lines, blocks


def _pipeline(command: str) -> list[list[str]]:
    """``neutrino ARGS | grep X | head -n 3`` as its stages' argument lists."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|")
    lexer.whitespace_split = True
    stages: list[list[str]] = [[]]
    for token in lexer:
        if token == "|":
            stages.append([])
        elif set(token) == {"|"}:
            raise ValueError(f"{command!r}: '||' is not a pipe")
        else:
            stages[-1].append(token)
    if any(not s for s in stages):
        raise ValueError(f"{command!r}: an empty stage in the pipe")
    if stages[0][0] != "neutrino":
        raise ValueError(f"{command!r}: a walkthrough's commands are neutrino's")
    for stage in stages[1:]:
        if stage[0] not in FILTERS:
            raise ValueError(f"{command!r}: only {', '.join(FILTERS)} may follow a pipe")
    return stages


def run_command(command: str) -> list[str]:
    """What ``command`` prints in the current folder and state (see the module's docstring)."""
    stages = _pipeline(command)
    out, err = io.StringIO(), io.StringIO()
    # SystemExit: argparse's --help and usage errors, printed like any other output
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        neutrino_main(stages[0][1:])
    text = out.getvalue()
    for stage in stages[1:]:
        text = subprocess.run(stage, input=text, capture_output=True, text=True, check=False,
                              timeout=60).stdout
    lines = (text + err.getvalue()).split("\n")
    return _clean(lines)


def run_command_in_shell(command: str) -> list[str]:
    """What ``command`` prints when bash runs it with the installed ``neutrino`` (slower; the
    in-process run must give the same, which ``--shell`` checks)."""
    _pipeline(command)  # the same rules
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, check=False,
                          timeout=300)
    return _clean((done.stdout + done.stderr).split("\n"))


def _masked(lines: list[str]) -> list[str]:
    return [DURATION.sub("<t> s)", ln) for ln in lines]


def _clean(lines: list[str]) -> list[str]:
    out = [ln.rstrip() for ln in lines]
    while out and not out[-1]:
        out.pop()
    return out


class CommandCrashed(RuntimeError):
    """A walkthrough's command raised instead of printing (neutrino itself prints one line)."""


@contextlib.contextmanager
def fresh_folder(where: Path) -> Iterator[Path]:
    """Run inside ``where`` (created), with ``examples`` there and ``NEUTRINO_STATE=./state``."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "examples").symlink_to(EXAMPLES, target_is_directory=True)
    env = {"NEUTRINO_STATE": str(where / "state"), "NO_COLOR": "1"}
    old_cwd, old_env = os.getcwd(), {k: os.environ.get(k) for k in env}
    os.chdir(where)
    os.environ.update(env)
    try:
        yield where
    finally:
        os.chdir(old_cwd)
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_walkthrough(path: Path, where: Path, *, shell: bool = False) -> tuple[list[str], list[Block], list[list[str]]]:
    """Every command of ``path`` run in the fresh folder ``where`` (in-process, or by bash when
    ``shell``): the document's lines, its blocks and, per command in order, what it printed."""
    lines, blocks = parse(path.read_text())
    actual: list[list[str]] = []
    run = run_command_in_shell if shell else run_command
    with fresh_folder(where):
        for block in blocks:
            for command in block.commands:
                try:
                    actual.append(run(command.text))
                except Exception as exc:  # a crash: name the command, keep the traceback
                    raise CommandCrashed(f"{path.name}:{command.line}: $ {command.text}: "
                                         f"{type(exc).__name__}: {exc}") from exc
    return lines, blocks, actual


def differences(path: Path, blocks: list[Block], actual: list[list[str]]) -> list[str]:
    """A unified diff per command whose documented output differs from what it printed."""
    report: list[str] = []
    commands = [c for b in blocks for c in b.commands]
    for command, got in zip(commands, actual, strict=True):
        want = _clean(command.output)
        if _masked(want) != _masked(got):
            report.append(f"{path.name}:{command.line}: $ {command.text}")
            report.extend(difflib.unified_diff(want, got, "documented", "printed", lineterm="", n=2))
    return report


def rewrite(lines: list[str], blocks: list[Block], actual: list[list[str]]) -> str:
    """The document with the console blocks' outputs that differ replaced by ``actual``."""
    out: list[str] = []
    outputs = iter(actual)
    previous = 0
    for block in blocks:
        out.extend(lines[previous:block.start + 1])
        for command in block.commands:
            printed = next(outputs)
            bad = [ln for ln in printed if ln.startswith(PROMPT)]
            if bad:
                raise ValueError(f"$ {command.text}: prints a line starting with '$ ', which would read as a "
                                 f"command: {bad[0]!r}")
            if any(ln.strip().startswith(FENCE_CLOSE) for ln in printed):
                raise ValueError(f"$ {command.text}: prints a fence line")
            out.extend(command.source)
            # an output that still matches is kept as it was (no churn of elapsed times)
            out.extend(command.output if _masked(_clean(command.output)) == _masked(printed) else printed)
        out.append(lines[block.end])
        previous = block.end + 1
    out.extend(lines[previous:])
    return "\n".join(out)


def walkthroughs() -> list[Path]:
    return sorted(WALKTHROUGHS.glob("seed*.md"))


@pytest.mark.parametrize("path", walkthroughs(), ids=lambda p: p.stem)
def test_walkthrough_prints_what_it_shows(path: Path, tmp_path: Path) -> None:
    lines, blocks, actual = run_walkthrough(path, tmp_path / "work")
    commands = [c.text for b in blocks for c in b.commands]
    assert commands[0] == f"neutrino up examples/{path.stem}.yaml", "a walkthrough starts with its seed's cloud"
    assert 8 <= len(commands) <= 20, f"{path.name}: a walkthrough asks 8 to 20 commands"
    report = differences(path, blocks, actual)
    assert not report, ("the walkthrough no longer matches the program; if the change is wanted, run\n"
                        "  .venv/bin/python -m tests.scenarios.test_walkthroughs --update " + path.stem
                        + "\nand review the diff:\n" + "\n".join(report))


def test_every_seed_has_a_walkthrough_in_the_index() -> None:
    index = (WALKTHROUGHS / "README.md").read_text()
    names = [p.name for p in walkthroughs()]
    assert names == [f"seed00{n}.md" for n in range(5)]
    for name in names:
        assert f"({name})" in index, f"docs/walkthroughs/README.md does not link {name}"
    assert "docs/walkthroughs/README.md" in (ROOT / "README.md").read_text()


def test_parse_and_rewrite_keep_the_prose_and_replace_only_outputs() -> None:
    doc = "\n".join(["# t", "", "```console", "$ neutrino hosts", "old", "$ neutrino a \\", "  --b",
                     "x", "```", "", "```", "$ not run", "```", ""])
    lines, blocks = parse(doc)
    assert [c.text for b in blocks for c in b.commands] == ["neutrino hosts", "neutrino a    --b"]
    assert [c.output for c in blocks[0].commands] == [["old"], ["x"]]
    assert [c.line for c in blocks[0].commands] == [4, 6]
    new = rewrite(lines, blocks, [["new 1", "new 2"], []])
    assert new == "\n".join(["# t", "", "```console", "$ neutrino hosts", "new 1", "new 2", "$ neutrino a \\",
                             "  --b", "```", "", "```", "$ not run", "```", ""])
    assert parse(new)[1][0].commands[0].output == ["new 1", "new 2"]
    # an output equal but for an elapsed time is kept as documented; one that differs is not
    lines, blocks = parse("```console\n$ neutrino up x\nup: planned (0.5 s)\n$ neutrino hosts\na\n```")
    assert differences(Path("t.md"), blocks, [["up: planned (1.7 s)"], ["a"]]) == []
    assert rewrite(lines, blocks, [["up: planned (1.7 s)"], ["b"]]).split("\n")[2:5] == [
        "up: planned (0.5 s)", "$ neutrino hosts", "b"]
    with pytest.raises(ValueError, match="read as a command"):
        rewrite(lines, blocks, [["$ rm -rf"], ["a"]])
    with pytest.raises(ValueError, match="neutrino's"):
        _pipeline("ls | grep x")
    with pytest.raises(ValueError, match="may follow a pipe"):
        _pipeline("neutrino hosts | sh")


def test_a_pipe_filters_standard_output_as_a_shell_would(tmp_path: Path) -> None:
    with fresh_folder(tmp_path / "work") as work:
        up = run_command("neutrino up examples/seed004.yaml | head -n 1")
        assert up[0] == "host controller-1: 0 namespaces, 0 flows, 33 iptables rules"
        assert (work / "state").is_dir()  # the cloud went to the walkthrough's own folder
        assert run_command("neutrino hosts") == ["compute-1", "compute-2", "controller-1"]
        assert run_command("neutrino hosts | grep compute | tail -n 1") == ["compute-2"]
        # standard error is not piped: it follows the filtered standard output
        assert run_command("neutrino explain nowhere br-tun | grep -c nothing") == [
            "0", "neutrino: no host 'nowhere' (known hosts: compute-1, compute-2, controller-1)"]


def _cli(argv: list[str]) -> int:
    flags = {a for a in argv if a.startswith("-")}
    if flags - {"--update", "--shell"}:
        print("usage: python -m tests.scenarios.test_walkthroughs [--update] [--shell] [seed00N ...]",
              file=sys.stderr)
        return 2
    update, shell = "--update" in flags, "--shell" in flags
    names = [a for a in argv if not a.startswith("-")]
    paths = [p for p in walkthroughs() if not names or p.stem in names or p.name in names]
    if names and len(paths) != len(names):
        print(f"no such walkthrough among {', '.join(p.stem for p in walkthroughs())}", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        with tempfile.TemporaryDirectory(prefix="walkthrough-") as tmp:
            try:
                lines, blocks, actual = run_walkthrough(path, Path(tmp) / "work", shell=shell)
            except CommandCrashed as exc:
                print(f"{exc} (left as it was)", file=sys.stderr)
                status = 1
                continue
        report = differences(path, blocks, actual)
        if update:
            if report:
                try:
                    path.write_text(rewrite(lines, blocks, actual))
                except ValueError as exc:  # an output that would not read back as one
                    print(f"{path.name}: {exc} (left as it was)", file=sys.stderr)
                    status = 1
                    continue
            changed = sum(1 for r in report if re.match(r"\S+:\d+: [$] ", r))
            print(f"{path.relative_to(ROOT)}: {len(actual)} commands, "
                  + (f"{changed} outputs rewritten" if changed else "unchanged"))
        else:
            print(f"{path.relative_to(ROOT)}: {len(actual)} commands, "
                  + ("matches" if not report else "differs:"))
            if report:
                print("\n".join(report))
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
