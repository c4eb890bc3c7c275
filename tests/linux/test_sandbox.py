"""The private Open vSwitch runs inside its namespace and leaves nothing behind."""

from __future__ import annotations

import pytest

from neutrino.linux.runner import run

pytestmark = pytest.mark.root


def test_private_ovs_lives_in_its_namespace(ovs):
    ovs.vsctl("add-br", "br-x", "--", "set", "bridge", "br-x", "datapath_type=netdev")
    ovs.ofctl("add-flow", "br-x", "table=3,priority=5,ip,nw_dst=10.0.0.0/8 actions=drop")
    flows = ovs.ofctl("dump-flows", "br-x").stdout
    assert "table=3" in flows and "nw_dst=10.0.0.0/8" in flows
    links_in_ns = run(["ip", "-o", "link"], netns=ovs.netns).stdout
    assert "br-x" in links_in_ns
    assert "br-x" not in run(["ip", "-o", "link"]).stdout
