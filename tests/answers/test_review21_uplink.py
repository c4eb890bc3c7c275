"""review21: the diagnosis of a provider network whose physnet bridge holds no NIC (``_uplink_fix``),
on seed 002 (VLAN physnet1 in ``br-eth0``, the legacy ``br-ex`` on the network host) with the hosts'
bridges and NICs changed.

Two wrong answers (fixed after the review; the tests now pass): a compute host that maps a second physnet (its bridge wired, with
its NIC) has its instance's failed DHCP blamed on that other bridge's drop of foreign VLANs, with no
fix; and the NIC offered for the bare bridge is taken from the other hosts without looking at what
the host itself already does with that name (another bridge's uplink, where ``ovs-vsctl add-port``
refuses it; the host's management address), while the fix is reported as working on the copy.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from neutrino.answers.diagnose import diagnose
from tests.answers.test_uplink_diagnose import seed002_variant


def _seed002(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, hosts: dict[str, dict[str, Any]]
             ) -> pathlib.Path:
    """Seed 002 with each named host's fields replaced by ``hosts[name]``, brought up; its state."""
    return seed002_variant(tmp_path, monkeypatch, hosts)[0]


def test_a_second_physnet_bridge_does_not_hide_the_missing_nic(tmp_path: pathlib.Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The OVS agent joins every mapped bridge to br-int, so br-int floods the DISCOVER into br-eth2
    too, whose flows drop a VLAN they do not translate (priority 2, ``in_port=phy-br-eth2``): that is
    how it should be, and not why web has no address. br-eth0 on compute has no NIC: that is."""
    state = _seed002(tmp_path, monkeypatch, {
        "network": {"uplinks": {"br-eth0": "eth0", "br-ex": "eth1"}},
        "compute": {"bridge_mappings": {"physnet1": "br-eth0", "physnet2": "br-eth2"}, "uplinks": {"br-eth2": "eth5"}}})
    d = diagnose(state, "web", "app")
    assert d.where == "compute br-eth0"
    assert [f.command for f in d.fixes] == ["on compute: ovs-vsctl add-port br-eth0 eth0"]


def test_the_same_without_the_second_bridge(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard beside it: without br-eth2 the same host is diagnosed right (the answer the test
    above asks for)."""
    state = _seed002(tmp_path, monkeypatch, {"network": {"uplinks": {"br-eth0": "eth0", "br-ex": "eth1"}},
                                             "compute": {"uplinks": {}}})
    d = diagnose(state, "web", "app")
    assert d.where == "compute br-eth0"
    assert [f.command for f in d.fixes] == ["on compute: ovs-vsctl add-port br-eth0 eth0"]
    assert d.fixes[0].works is True


@pytest.mark.parametrize("case", ["nic-in-br-ex", "management-nic"])
def test_the_nic_offered_is_free_on_that_host(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                              case: str) -> None:
    if case == "nic-in-br-ex":  # the network host's eth1 is br-ex's uplink; compute wires br-eth0 with eth1
        hosts: dict[str, dict[str, Any]] = {"network": {"uplinks": {"br-ex": "eth1"}},
                                            "compute": {"uplinks": {"br-eth0": "eth1"}}}
        bare = "network"
    else:  # compute's eth0 carries its management address; the network host wires br-eth0 with eth0
        hosts = {"network": {"uplinks": {"br-eth0": "eth0", "br-ex": "eth1"}},
                 "compute": {"uplinks": {}, "interfaces": {"eth0": "10.0.1.11/24"}}}
        bare = "compute"
    state = _seed002(tmp_path, monkeypatch, hosts)
    d = diagnose(state, "web", "app")
    assert d.where == f"{bare} br-eth0" and len(d.fixes) == 1
    prefix = f"on {bare}: ovs-vsctl add-port br-eth0 "
    assert d.fixes[0].command.startswith(prefix)
    nic = d.fixes[0].command.removeprefix(prefix)
    in_use = {*hosts[bare].get("uplinks", {}).values(), *hosts[bare].get("interfaces", {})}
    assert nic not in in_use, (nic, in_use)
