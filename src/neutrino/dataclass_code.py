"""The methods :mod:`dataclasses` generates, compiled once and kept like bytecode.

For every class decorated with ``@dataclass``, the standard library writes the source of
``__init__``, ``__repr__``, ``__eq__``, ``__setattr__`` ... as text and ``exec``\\ s it: Python
compiles that text anew in every process. The simulator and the host model import some 200
dataclasses, and compiling their ~1,000 methods is about half of what importing them costs
(about 0.1 s of each ``neutrino trace``).

The command line (:func:`neutrino.cli.main`, once its arguments are parsed) calls
:func:`install`, which gives the :mod:`dataclasses` module an ``exec`` of its own (a module global
shadows the builtin) that looks the text up in a table of code objects before compiling it,
and keeps the table in the package's ``__pycache__`` beside the ``.pyc`` files (not when
``sys.dont_write_bytecode``, as for them). It cannot run stale code: a code object depends
only on its source text (the key, whole), the file name ``<string>`` and the compiler flags
(none: ``dataclasses`` has no ``__future__`` import) of the interpreter that compiled it, and
the file is headed by the Python version and optimisation level it was made with (a file made
by another is not read). What runs is what ``exec`` would have compiled from the same text, in
the globals and namespace ``dataclasses`` passes; a missing, unreadable or foreign file is
only a table to fill again.
"""

from __future__ import annotations

import atexit
import builtins
import dataclasses
import marshal
import os
import sys
import types
from pathlib import Path
from typing import Any

_MAX_ENTRIES = 4_000  # the whole code base makes ~1,700; past this (code changed often) keep what is used


def _header() -> bytes:
    return f"neutrino dataclass code 1 {sys.version} optimize={sys.flags.optimize}\n".encode()


def _path() -> Path | None:
    """Where the table is kept: the package's ``__pycache__`` (or its place under ``sys.pycache_prefix``)."""
    tag = sys.implementation.cache_tag
    if tag is None:  # this interpreter keeps no bytecode
        return None
    name = f"_dataclass_code.{tag}.marshal"
    package = Path(__file__).absolute().parent
    if sys.pycache_prefix:
        return Path(sys.pycache_prefix, *package.parts[1:], name)
    return package / "__pycache__" / name


class _Table:
    """The kept code, each entry marshalled on its own (a process unmarshals only what it uses)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.kept: dict[str, bytes] | None = None
        self.added: dict[str, bytes] = {}
        self.used: set[str] = set()

    def _load(self) -> dict[str, bytes]:
        kept: dict[str, bytes] = {}
        if self.path is not None:
            try:
                data = self.path.read_bytes()
                header = _header()
                if data.startswith(header):
                    table = marshal.loads(memoryview(data)[len(header):])
                    if isinstance(table, dict):
                        kept = {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, bytes)}
            except (OSError, EOFError, ValueError, TypeError):
                kept = {}
        return kept

    def code(self, source: str) -> types.CodeType:
        if self.kept is None:
            self.kept = self._load()
        self.used.add(source)
        data = self.kept.get(source)
        if data is not None:
            try:
                code = marshal.loads(data)
            except (EOFError, ValueError, TypeError):
                code = None
            if isinstance(code, types.CodeType):
                return code
        code = compile(source, "<string>", "exec", dont_inherit=True)
        self.kept[source] = marshal.dumps(code)
        if not self.added:
            atexit.register(self.save)
        self.added[source] = self.kept[source]
        return code

    def save(self) -> None:
        """Add what this process compiled to the file (written atomically: a reader sees the old
        table or the new one); a table that cannot be written is only compiled again next time.
        Nothing is written when ``sys.dont_write_bytecode`` (``PYTHONDONTWRITEBYTECODE``, ``-B``)."""
        if not self.added or self.path is None or sys.dont_write_bytecode:
            return
        table = self._load()
        table.update(self.added)
        if len(table) > _MAX_ENTRIES:  # grown with code that changed: only what this process used
            table = {k: v for k, v in table.items() if k in self.used}
        self.added = {}
        import tempfile

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                os.fchmod(fd, 0o644)  # as the .pyc files beside it
                with os.fdopen(fd, "wb") as f:
                    f.write(_header() + marshal.dumps(table))
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass


_table: _Table | None = None


def _exec(source: Any, globals: dict[str, Any] | None = None, locals: Any = None) -> None:
    """``exec`` as :mod:`dataclasses` calls it, with the compiled text looked up first."""
    if _table is not None and isinstance(source, str):
        source = _table.code(source)
    if globals is None:  # as the builtin: the caller's globals (and namespace)
        caller = sys._getframe(1)
        globals = caller.f_globals
        if locals is None:
            locals = caller.f_locals
    builtins.exec(source, globals, locals)


def install() -> None:
    """Make the dataclasses created from now on in this process use (and fill) the kept table."""
    global _table
    if _table is None:
        _table = _Table(_path())
        dataclasses.exec = _exec  # type: ignore[attr-defined]
