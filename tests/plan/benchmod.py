"""bench/plan_bench.py as a module (its cloud builder is what the planner tests at scale use)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType


@functools.cache
def plan_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "plan_bench.py"
    spec = importlib.util.spec_from_file_location("plan_bench", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
