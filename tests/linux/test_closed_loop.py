"""The closed loop: every seed brought up on the Linux backend, each host collected with the real
``tools/neutrino-collect`` (run inside the host's namespace, its planned namespaces named as the
host's own, its private Open vSwitch through ``OVS_RUNDIR``), the captures imported as a deployment
into a fresh state folder, and the world built from those captures alone must give every probe of
the differential set (tests/linux/test_differential_seeds.py) the planned cloud's verdict."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from neutrino import store
from neutrino.errors import InvalidInput
from neutrino.linux import netns as netns_lib
from neutrino.linux.realize import Realized, down
from neutrino.sim.imported import guest_for_device
from neutrino.sim.trace import render
from neutrino.sim.world import OUTSIDE, World
from neutrino.worldkeep import imported_world
from tests.linux.test_differential_seeds import PREFIX, SEEDS, _build, probes

pytestmark = pytest.mark.root
COLLECT = pathlib.Path(__file__).resolve().parents[2] / "tools" / "neutrino-collect"


def _collect(realized: Realized, host: str, out: pathlib.Path) -> pathlib.Path:
    """``neutrino-collect HOST OUT`` inside ``host``'s namespace; returns the archive."""
    view = realized.view(host)
    mapping = " ".join(f"{real}={planned}" for planned, real in view.namespaces
                       if planned and netns_lib.exists(real))
    pids = [p for _, real in view.namespaces if netns_lib.exists(real) for p in netns_lib.pids(real)
            if _comm(p) == "dnsmasq"]
    env = {**os.environ, "NEUTRINO_COLLECT_NAMESPACES": mapping or " ",
           "NEUTRINO_COLLECT_PIDS": " ".join(map(str, pids)) or "0"}
    if view.ovs is not None:
        env["OVS_RUNDIR"] = view.ovs.rundir
    res = subprocess.run(["ip", "netns", "exec", view.netns, "sh", str(COLLECT), host, str(out)], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    archive = out / f"{host}.tar.gz"
    assert archive.is_file(), res.stdout + res.stderr
    return archive


def _comm(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
def test_collected_hosts_trace_as_planned(seed: str, tmp_path: pathlib.Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    try:
        result, realized, floating, planned = _build(seed, state)
        assert isinstance(planned, World)
        archives = tmp_path / "archives"
        archives.mkdir()
        for h in realized.hosts:
            _collect(realized, h, archives)
        fresh = tmp_path / "imported"
        monkeypatch.setenv("NEUTRINO_STATE", str(fresh))
        done = store.import_hosts(archives)
        assert sorted(h.name for h in done.hosts) == sorted(realized.hosts)
        world = imported_world(fresh)
        booted = planned.boot()
        names = {}
        for g in planned.specs.values():
            found = guest_for_device(world, g.host, g.device)
            assert found is not None, f"{g.name}: no guest behind {g.device} on {g.host} in the captures"
            names[g.name] = found
        wrong: list[str] = []
        todo = probes(realized, floating)
        for p in todo:
            verdicts = []
            for w, src in ((planned, p.source), (world, names.get(p.source, p.source))):
                try:
                    trace = w.probe(src, p.dst, proto=p.proto, dport=p.port or 22)
                except InvalidInput as exc:
                    verdicts.append((None, str(exc)))
                else:
                    verdicts.append((trace.answered, render(trace, "summary")))
            if verdicts[0][0] != verdicts[1][0]:
                wrong.append(f"--- {p}: planned {verdicts[0][0]}, imported {verdicts[1][0]}\n{verdicts[1][1]}")
        assert booted, "no guest booted"
        assert not wrong, f"{len(wrong)} of {len(todo)} probes disagree\n" + "\n".join(wrong)
        assert OUTSIDE not in names
    finally:
        down(PREFIX, state)
