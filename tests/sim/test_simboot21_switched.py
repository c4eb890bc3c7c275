"""Round twenty-one (issue #17): a switched header-memory entry replayed without rebuilding frames.

``_L2Seen.again`` runs NORMAL again on a remembered run that ended in NORMAL. When NORMAL saw the
frame as it came in and nothing was sent before it (a remote br-int pass of a broadcast), there
is no old frame to rebuild around the new one: NORMAL runs on the new frame at once. On tables
where NORMAL comes first, after an output, and after a VLAN rewrite (and both), random frames,
ports, tunnel keys and pruning rules give, frame by frame, what a bridge interpreting every frame
gives (results, output frames, learned flows, flow order, MAC table). The shortcut is taken on
every replay of the first table; the other tables replay both ways. Its guard without the output
test fails the second table, without the frame test the third.
"""

from __future__ import annotations

from typing import Any

import pytest

from neutrino.sim import ovs
from tests.sim.test_review14_learns import _NEUTRON_LEARN, _bridge, _count, _drive, _Plain  # noqa: F401 - _count: a fixture

TABLES: dict[str, str] = {
    # br-int as a boot meets it: NORMAL on the frame as it came in
    "normal": "table=0, priority=0 actions=NORMAL\n",
    # a copy sent before NORMAL (from the tunnels), NORMAL alone from elsewhere
    "output-then-normal": "table=0, priority=2,in_port=vx1 actions=output:patch,NORMAL\n"
                          "table=0, priority=0 actions=NORMAL\n",
    # the frame rewritten before NORMAL (from the patch port), NORMAL alone from elsewhere
    "mod-then-normal": "table=0, priority=2,in_port=patch actions=mod_vlan_vid:2,NORMAL\n"
                       "table=0, priority=0 actions=NORMAL\n",
    # both, and a learn of the source before NORMAL
    "both": "table=0, priority=2,in_port=vx2 actions=output:tap1,mod_vlan_vid:1,NORMAL\n"
            f"table=0, priority=1,in_port=vx1 actions={_NEUTRON_LEARN},NORMAL\n"
            "table=0, priority=0 actions=NORMAL\n",
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_switched_replays_give_what_interpreting_gives(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    switched = ovs._L2Seen._switched
    taken: list[bool] = []

    def counting(self: ovs._L2Seen, *args: Any) -> ovs.Result:  # noqa: ANN401
        at = self.normal
        assert at is not None
        taken.append(not at.outputs and at.frame is self.nodes[0])
        return switched(self, *args)

    monkeypatch.setattr(ovs._L2Seen, "_switched", counting)
    for seed in range(4):
        _drive(_bridge(ovs.OvsBridgeSim, TABLES[name]), _bridge(_Plain, TABLES[name]), seed, n=200)
    assert taken.count(True) > 20, taken.count(True)
    if name != "normal":
        assert taken.count(False) > 5, taken.count(False)
    else:
        assert all(taken)
