"""The ``learn`` action: a flow that adds flows. Its specs stay parsed so the simulator can interpret them.

Printing follows ``learn_format`` in Open vSwitch's ``lib/learn.c``.
"""

from __future__ import annotations

from dataclasses import dataclass

from neutrino.host.openflow_fields import (
    Subfield,
    field_info,
    format_subfield,
    format_value,
    parse_int,
    parse_subfield,
    split_top,
    value_to_int,
)

__all__ = ["Learn", "LearnLoad", "LearnMatch", "LearnOutput", "LearnSpec", "format_learn", "parse_learn"]


@dataclass(frozen=True, slots=True)
class LearnMatch:
    """A match in a learned flow: ``dst`` gets ``src``'s bits from the packet, or the immediate ``value``.

    ``NXM_OF_VLAN_TCI[0..11]`` (src = dst), ``NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]``, ``dl_type=0x800``.
    """

    dst: Subfield
    src: Subfield | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class LearnLoad:
    """``load:SRC->DST`` in a learned flow's actions: SRC is a field of this packet or an immediate."""

    dst: Subfield
    src: Subfield | None = None
    value: int | None = None


@dataclass(frozen=True, slots=True)
class LearnOutput:
    """``output:FIELD[]`` in a learned flow: output to the port held in that field."""

    src: Subfield


LearnSpec = LearnMatch | LearnLoad | LearnOutput


@dataclass(frozen=True, slots=True)
class Learn:
    """``learn(table=…,idle_timeout=…,hard_timeout=…,priority=…,cookie=…,SPEC…)``."""

    table: int = 1
    specs: tuple[LearnSpec, ...] = ()
    idle_timeout: int | None = None
    hard_timeout: int | None = None
    fin_idle_timeout: int | None = None
    fin_hard_timeout: int | None = None
    priority: int | None = None
    cookie: int | None = None
    send_flow_rem: bool = False
    delete_learned: bool = False
    limit: int | None = None
    result_dst: Subfield | None = None


def _hex0(value: int) -> str:
    return f"{value:#x}" if value else "0"


def parse_learn(args: str) -> Learn:
    """Parse the text inside ``learn(…)``. Raises ValueError."""
    kw: dict[str, int | None] = {}
    specs: list[LearnSpec] = []
    flags = {"send_flow_rem": False, "delete_learned": False}
    result_dst = None
    table = 1
    for raw in split_top(args):
        item = raw.strip()
        if not item:
            continue
        if item in flags:
            flags[item] = True
            continue
        name, eq, value = item.partition("=")
        if eq and name in ("table", "idle_timeout", "hard_timeout", "fin_idle_timeout", "fin_hard_timeout",
                           "priority", "cookie", "limit"):
            if name == "table":
                table = parse_int(value)
            else:
                kw[name] = parse_int(value)
            continue
        if eq and name == "result_dst":
            result_dst = parse_subfield(value)
            continue
        if item.startswith("load:"):
            src, arrow, dst = item[5:].partition("->")
            if not arrow:
                raise ValueError(f"learn load needs SRC->DST: {item!r}")
            if "[" in src:
                specs.append(LearnLoad(parse_subfield(dst), src=parse_subfield(src)))
            else:
                specs.append(LearnLoad(parse_subfield(dst), value=value_to_int(src)))
            continue
        if item.startswith("output:"):
            specs.append(LearnOutput(parse_subfield(item[7:])))
            continue
        if eq:
            target = parse_subfield(name) if "[" in name else Subfield(name)
            if "[" not in name and field_info(name) is None:
                raise ValueError(f"unknown field {name!r} in learn")
            if "[" in value:
                specs.append(LearnMatch(target, src=parse_subfield(value)))
            else:
                specs.append(LearnMatch(target, value=value))
            continue
        if "[" in item:
            specs.append(LearnMatch(parse_subfield(item)))
            continue
        if field_info(item) is None:
            raise ValueError(f"unknown learn argument {item!r}")
        specs.append(LearnMatch(Subfield(item)))
    return Learn(table=table, specs=tuple(specs), idle_timeout=kw.get("idle_timeout"),
                 hard_timeout=kw.get("hard_timeout"), fin_idle_timeout=kw.get("fin_idle_timeout"),
                 fin_hard_timeout=kw.get("fin_hard_timeout"), priority=kw.get("priority"),
                 cookie=kw.get("cookie"), send_flow_rem=flags["send_flow_rem"],
                 delete_learned=flags["delete_learned"], limit=kw.get("limit"), result_dst=result_dst)


def _fmt_learn_spec(spec: LearnSpec) -> str:
    if isinstance(spec, LearnOutput):
        return f"output:{format_subfield(spec.src)}"
    if isinstance(spec, LearnLoad):
        src = format_subfield(spec.src) if spec.src is not None else _hex0(spec.value or 0)
        return f"load:{src}->{format_subfield(spec.dst)}"
    dst = spec.dst
    if spec.value is not None:
        info = dst.info
        whole = dst.start is None or (info is not None and dst.start == 0 and dst.end == info.n_bits - 1)
        if whole and info is not None:
            try:
                value = format_value(info, value_to_int(spec.value))
            except ValueError:
                value = spec.value
            return f"{info.name}={value}"
        try:
            value = _hex0(value_to_int(spec.value))
        except ValueError:
            value = spec.value
        return f"{format_subfield(dst)}={value}"
    if spec.src is None:
        return format_subfield(dst)
    same = (spec.src.info or spec.src.field) == (dst.info or dst.field) and spec.src.start == dst.start
    return format_subfield(dst) if same else f"{format_subfield(dst)}={format_subfield(spec.src)}"


def format_learn(a: Learn) -> str:
    """``learn(…)`` as OVS prints it."""
    parts = [f"table={a.table}"]
    for name in ("idle_timeout", "hard_timeout", "fin_idle_timeout", "fin_hard_timeout", "priority"):
        v = getattr(a, name)
        if v is not None and not (name == "priority" and v == 32768):
            parts.append(f"{name}={v}")
    if a.send_flow_rem:
        parts.append("send_flow_rem")
    if a.delete_learned:
        parts.append("delete_learned")
    if a.cookie:
        parts.append(f"cookie={a.cookie:#x}")
    if a.limit:
        parts.append(f"limit={a.limit}")
    if a.result_dst is not None:
        parts.append(f"result_dst={format_subfield(a.result_dst)}")
    parts.extend(_fmt_learn_spec(s) for s in a.specs)
    return f"learn({','.join(parts)})"
