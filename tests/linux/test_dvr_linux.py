"""examples/dvr.yaml (distributed routers) held to the kernel's word: planned, built for real on the
Linux backend (qrouter- on every host of the router with its policy rules, fip- with the rfp-/fpr-
pair and proxy ARP on fg-, snat- on the network node, the DVR flows in each private Open vSwitch),
read back with an empty diff, and a probe set gets the same verdict from the kernel and the
simulator: east-west between the computes, each instance to its router and DHCP server and to the
stand-in internet (app1 through its floating IP on compute01, db1 through SNAT on the network
node), and the outside to the floating IP."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.linux.realize import Realized, down
from tests.linux.probes import Probe, instance_probes, kernel_and_simulator_agree

pytestmark = pytest.mark.root
SCENARIO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "dvr.yaml"
PREFIX = "ntdvr"
INTERNET = "203.0.113.1"  # the fabric's stand-in internet behind the external gateway
FLOATING = "172.24.4.50"


def _probes(realized: Realized) -> list[Probe]:
    out = instance_probes(realized, (("icmp", 0), ("tcp", 22)), extra=(INTERNET,))
    out += [("outside", FLOATING, "icmp", 0), ("outside", FLOATING, "tcp", 22), ("outside", FLOATING, "tcp", 80)]
    return out


def test_dvr_simulator_and_kernel_agree(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "state"
    try:
        leases, kernel = kernel_and_simulator_agree(SCENARIO, PREFIX, state, _probes)
        # east-west, the floating IP both ways and SNAT all work for real
        assert kernel[("app1", str(leases["db1"].ip), "icmp", 0)]  # type: ignore[union-attr]
        assert kernel[("outside", FLOATING, "icmp", 0)]
        assert kernel[("app1", INTERNET, "icmp", 0)] and kernel[("db1", INTERNET, "icmp", 0)]
    finally:
        down(PREFIX, state)
