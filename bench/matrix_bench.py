"""``neutrino matrix`` on the 100-instance cloud of ``sim_bench.big_scenario`` (a benchmark, not a test).

    .venv/bin/python bench/matrix_bench.py

Brings the cloud up in a temporary state folder, boots its world, then times the matrix (icmp,
tcp/22, tcp/80; the instances, the outside, the hosts as sources and the router's addresses as
destinations) with one traced pair per class of endpoints the plumbing treats alike (the
default), and, for comparison, a sample of the exhaustive one. Target: under 2 s.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from sim_bench import big_scenario  # noqa: E402


def main() -> None:
    from neutrino.answers.matrix import endpoints, matrix
    from neutrino.deploy import bring_up
    from neutrino.sim.cloud import world_of

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = pathlib.Path(tmpdir)
        os.environ["NEUTRINO_STATE"] = tmpdir
        path = tmp / "big100.yaml"
        big_scenario(path, n_servers=100)
        result = bring_up(path, state=tmp / "up100", keep=False)
        world = world_of(result.cloud, result.hosts)
        world.boot()
        start, cpu = time.perf_counter(), time.process_time()
        cells = matrix(world, result.cloud)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        ok = sum(c.ok for c in cells)
        srcs, dsts = endpoints(world, result.cloud)
        hosts = sum(e.kind == "host" for e in srcs)
        routers = sum(e.kind == "router" for e in dsts)
        print(f"100 instances, the outside, {hosts} hosts, {routers} router addresses, 3 protocols: "
              f"{len(cells)} cells ({ok} reachable) in {took:.2f} s ({cpu:.2f} s of CPU)")
        small = dataclasses.replace(result.cloud, servers=result.cloud.servers[:10], _index={})
        start = time.perf_counter()
        full = matrix(world, small, exhaustive=True)
        took_full = time.perf_counter() - start
        per = took_full / max(1, len(full))
        print(f"exhaustive on 10 of them: {len(full)} cells in {took_full:.2f} s "
              f"({per * 1000:.1f} ms a cell; "
              f"the whole 100-instance matrix would take about {per * len(cells):.0f} s)")
        by_pair = {(c.source, c.destination, c.proto): c.ok for c in cells}
        wrong = [c for c in full if by_pair.get((c.source, c.destination, c.proto)) != c.ok]
        print(f"class answers that differ from the exhaustive ones on the sample: {len(wrong)}")


if __name__ == "__main__":
    main()
