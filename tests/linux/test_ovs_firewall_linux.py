"""examples/ovsfw.yaml (Neutron's native OVS firewall) held to the kernel's word: planned, built for
real on the Linux backend (each host's private Open vSwitch, userspace datapath, whose conntrack
runs the ``ct()`` flows), read back with an empty diff, and a probe set (every ordered instance
pair over icmp, tcp/22 and tcp/80, each instance to its DHCP server and router) gets the same
verdict from the kernel and the simulator: the remote-group conjunction lets group members in on
tcp/22, the CIDR rule lets the subnet ping, the rest is dropped."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.linux.realize import down
from tests.linux.probes import instance_probes, kernel_and_simulator_agree

pytestmark = pytest.mark.root
SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "ovsfw.yaml"
PREFIX = "ntfw"
PROTOS = (("icmp", 0), ("tcp", 22), ("tcp", 80))


def test_ovs_firewall_simulator_and_kernel_agree(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "state"
    try:
        leases, kernel = kernel_and_simulator_agree(SCENARIO, PREFIX, state,
                                                    lambda realized: instance_probes(realized, PROTOS))
        # the rules as written: members in on ssh, the subnet pings, nothing reaches plain1
        assert kernel[("web2", str(leases["web1"].ip), "tcp", 22)]  # type: ignore[union-attr]
        assert not kernel[("plain1", str(leases["web1"].ip), "tcp", 22)]  # type: ignore[union-attr]
        assert kernel[("plain1", str(leases["web1"].ip), "icmp", 0)]  # type: ignore[union-attr]
        assert not kernel[("web1", str(leases["plain1"].ip), "icmp", 0)]  # type: ignore[union-attr]
        # the router (a trusted port) answers, its reply let in as established
        assert kernel[("plain1", "10.0.0.1", "icmp", 0)]
    finally:
        down(PREFIX, state)
