"""neutrino.dataclass_code: the dataclasses' generated methods compiled once and kept, the same
classes either way."""

from __future__ import annotations

import dataclasses
import marshal
import os
import pathlib
import subprocess
import sys
import types
from typing import Any

import pytest

from neutrino import dataclass_code
from neutrino.dataclass_code import _header, _Table

ROOT = pathlib.Path(__file__).resolve().parents[1]
READ_BY_EXEC = 20
SOURCE = "def __create_fn__(x):\n def f(self):\n  return self + x\n return f"


def _define(monkeypatch: pytest.MonkeyPatch, name: str) -> dict[str, Any]:
    """Point and Box, defined in a module of their own (dataclasses looks the module up)."""
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    namespace = module.__dict__
    exec(  # noqa: S102
        "from __future__ import annotations\n"
        "import dataclasses\n"
        "@dataclasses.dataclass(frozen=True, slots=True, order=True)\n"
        "class Point:\n"
        "    x: int\n"
        "    y: int = 2\n"
        "    tags: tuple[str, ...] = dataclasses.field(default=(), compare=False)\n"
        "@dataclasses.dataclass(kw_only=True)\n"
        "class Box:\n"
        "    items: list[int] = dataclasses.field(default_factory=list)\n"
        "    name: str = 'box'\n", namespace)
    return namespace


def _behaviour(namespace: dict[str, Any]) -> list[object]:
    point, box = namespace["Point"], namespace["Box"]
    p = point(1)
    seen: list[object] = [repr(p), p == point(1, 2, ("a",)), p < point(2), hash(p) == hash(point(1)),
                          point.__doc__, repr(box()), box(items=[1]) == box(items=[1]), box().items is not box().items]
    try:
        p.x = 3  # type: ignore[misc]
    except dataclasses.FrozenInstanceError as exc:
        seen.append(type(exc).__name__)
    try:
        box(1)
    except TypeError as exc:
        seen.append(str(exc))
    return seen


def test_a_class_made_with_the_kept_code_behaves_as_one_made_without(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: pathlib.Path) -> None:
    monkeypatch.setattr(dataclasses, "exec", exec, raising=False)
    plain = _define(monkeypatch, "dc_probe_plain")
    table = _Table(tmp_path / "t.marshal")
    monkeypatch.setattr(dataclass_code, "_table", table)
    monkeypatch.setattr(dataclasses, "exec", dataclass_code._exec, raising=False)
    kept = _define(monkeypatch, "dc_probe_kept")
    assert table.added, "the methods were compiled through the table"
    assert _behaviour(kept) == _behaviour(plain)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    table.save()
    again = _Table(tmp_path / "t.marshal")
    monkeypatch.setattr(dataclass_code, "_table", again)
    third = _define(monkeypatch, "dc_probe_third")
    assert again.added == {}, "every method came from the kept table, none was compiled"
    assert _behaviour(third) == _behaviour(plain)


def test_kept_code_is_the_code_exec_compiles(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    table = _Table(tmp_path / "t.marshal")
    first = table.code(SOURCE)
    table.save()
    assert (tmp_path / "t.marshal").read_bytes().startswith(_header())
    loaded = _Table(tmp_path / "t.marshal").code(SOURCE)
    assert loaded == first == compile(SOURCE, "<string>", "exec", dont_inherit=True)
    ns: dict[str, Any] = {}
    exec(loaded, {}, ns)  # noqa: S102
    assert ns["__create_fn__"](x=2)(40) == 42


@pytest.mark.parametrize("content", [b"", b"garbage", _header() + b"\x00\x01",
                                     b"neutrino dataclass code 1 2.7.18 optimize=0\n" + marshal.dumps({SOURCE: b"x"}),
                                     _header() + marshal.dumps({SOURCE: b"not a code object"}),
                                     _header() + marshal.dumps([1, 2])])
def test_an_unusable_table_is_only_a_table_to_fill_again(tmp_path: pathlib.Path, content: bytes,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = tmp_path / "t.marshal"
    path.write_bytes(content)
    table = _Table(path)
    assert table.code(SOURCE) == compile(SOURCE, "<string>", "exec", dont_inherit=True)
    assert SOURCE in table.added
    table.save()
    assert _Table(path).code(SOURCE) is not None and _Table(path)._load().keys() == {SOURCE}


def test_nothing_is_written_without_bytecode(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    table = _Table(tmp_path / "t.marshal")
    table.code(SOURCE)
    table.save()
    assert not (tmp_path / "t.marshal").exists()


def test_exec_without_globals_runs_in_the_callers_globals(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: pathlib.Path) -> None:
    monkeypatch.setattr(dataclass_code, "_table", _Table(tmp_path / "t.marshal"))
    ours: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    dataclass_code._exec("out = READ_BY_EXEC + 1", None, ours)
    exec("out = READ_BY_EXEC + 1", None, theirs)  # noqa: S102
    assert ours == theirs == {"out": 21}


def _modules_after(argv: list[str], env: dict[str, str]) -> set[str]:
    script = ("import sys\nfrom neutrino.cli import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", script, *argv], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    return set(proc.stderr.split())


def test_the_command_line_installs_it_once_its_arguments_are_parsed(tmp_path: pathlib.Path) -> None:
    env = dict(os.environ, NEUTRINO_STATE=str(tmp_path / "state"), PYTHONDONTWRITEBYTECODE="1")
    assert "neutrino.dataclass_code" not in _modules_after(["--help"], env)  # --help makes no dataclass
    script = ("import dataclasses, sys\nfrom neutrino import dataclass_code\nfrom neutrino.cli import main\n"
              "main(['hosts'])\nprint(dataclasses.exec is dataclass_code._exec)\n")
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.split() == ["True"], proc.stderr


def test_a_table_grown_past_its_bound_keeps_what_the_process_used(tmp_path: pathlib.Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(dataclass_code, "_MAX_ENTRIES", 2)
    old = [f"x = {i}" for i in range(3)]
    path = tmp_path / "t.marshal"
    path.write_bytes(_header() + marshal.dumps({s: marshal.dumps(compile(s, "<string>", "exec")) for s in old}))
    table = _Table(path)
    table.code(old[0])  # kept: used, not compiled
    table.code(SOURCE)  # compiled
    assert list(table.added) == [SOURCE]
    table.save()
    assert _Table(path)._load().keys() == {old[0], SOURCE}
