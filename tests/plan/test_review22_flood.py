"""Review of replan19 (issue #17): ``ovs_tun._flood_edited`` puts a joining host's tunnel port into
a spliced host's last flood flow (and takes a leaving one's out) instead of making the flow again.

replan19's own tests change one host at a time. Here the random walks also change several hosts of
one network at once: ports on two or three hosts new to a network added together, every port of
two hosts removed together, a host's ports moved wholesale to a host new to the network (one host
leaving, one joining, in one change), and both at once, on VXLAN, GRE and VXLAN+GRE clouds, with
l2population (the edit's case) and DVR on and off (DVR: the edit refused). Every step equals its
cold plan, and the edits with several ports joining or leaving, and with ports both joining and
leaving, are counted (else the walk proves nothing)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from neutrino.services.snapshot import CloudSnapshot
from tests.plan import replan_kit, test_replan19_flood
from tests.plan.test_review11_patch import _Maker, _walk

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
edited = test_replan19_flood.edited  # replan19's count of the flood flows edited


class _Crowds(_Maker):
    """:class:`_Maker`'s changes, and now and then several hosts joining or leaving one network at once."""

    def port_change(self, cloud: CloudSnapshot) -> tuple[str, CloudSnapshot]:
        rng = self.rng
        if rng.random() < 0.45:
            return self.crowd_change(cloud)
        return super().port_change(cloud)

    def crowd_change(self, cloud: CloudSnapshot) -> tuple[str, CloudSnapshot]:
        rng = self.rng
        net = rng.choice(self.networks(cloud))
        computes = self.computes(cloud)
        on = sorted({p.binding_host for p in cloud.ports if p.network_id == net.id and p.is_instance_port
                     and p.binding_host in computes})
        off = [h for h in computes if h not in on]
        kind = rng.choice(["join", "leave", "swap", "join+leave"])
        ports: Any = list(cloud.ports)
        leaving: list[str] = []
        joining: list[str] = []
        if kind in ("leave", "join+leave", "swap") and on:
            leaving = rng.sample(on, min(len(on), 1 if kind == "swap" else rng.randint(1, 3)))
        if kind in ("join", "join+leave", "swap") and off:
            joining = rng.sample(off, min(len(off), 1 if kind == "swap" else rng.randint(2, 3)))
        if kind == "swap" and leaving and joining:
            ports = [dataclasses.replace(p, binding_host=joining[0])
                     if p.network_id == net.id and p.is_instance_port and p.binding_host == leaving[0] else p
                     for p in ports]
            return f"crowd swap {leaving[0]} -> {joining[0]} on {net.id}", dataclasses.replace(cloud,
                                                                                               ports=tuple(ports))
        ports = [p for p in ports if not (p.network_id == net.id and p.is_instance_port
                                          and p.binding_host in leaving)]
        out = dataclasses.replace(cloud, ports=tuple(ports))
        for h in joining:
            out = self.add_port(out)
            new = out.ports[-1] if out.ports[-1].id == f"port-{self.n:04d}" else \
                next(p for p in out.ports if p.id == f"port-{self.n:04d}")
            moved = dataclasses.replace(new, binding_host=h, network_id=net.id,
                                        fixed_ips=(self._address(out, net),), admin_state_up=True)
            out = dataclasses.replace(out, ports=tuple(moved if p is new else p for p in out.ports))
        return f"crowd {kind}: -{leaving} +{joining} on {net.id}", out


@pytest.mark.parametrize(("types", "seed"), [(("vxlan",), 3), (("gre",), 2), (("vxlan", "gre"), 10),
                                             (("vxlan", "gre"), 8)],
                         ids=["vxlan", "gre", "vxlan+gre-a", "vxlan+gre-b"])
def test_crowds_joining_and_leaving_equal_cold_plans(types: tuple[str, ...], seed: int,
                                                     edited: list[tuple[int, int]]) -> None:
    maker = _Crowds(seed, l2population=True, tenant_network_types=types, router_distributed=False,
                    generation="modern")
    assert _walk(maker, 40, agents=True, others=0.04) == []
    assert len(edited) >= 4, "the edit was hardly taken: the walk proves little"
    assert any(j + lf >= 2 for j, lf in edited), f"no edit with several ports at once: {edited}"


def test_a_host_leaving_while_another_joins_is_edited_right(edited: list[tuple[int, int]]) -> None:
    """Swaps (one host's ports moved to a host new to the network) and joins with leaves in one
    change, on VXLAN+GRE: edits with ports both joining and leaving are taken and equal cold plans."""
    maker = _Crowds(3, l2population=True, tenant_network_types=("vxlan", "gre"), router_distributed=False,
                    generation="modern")
    assert _walk(maker, 40, agents=True, others=0.0) == []
    assert any(j and lf for j, lf in edited), f"no edit with a port joining and one leaving: {edited}"


@pytest.mark.parametrize("seed", [5, 9], ids=lambda s: f"seed{s}")
def test_dvr_and_no_l2population_walks_equal_cold_plans(seed: int, edited: list[tuple[int, int]]) -> None:
    """DVR clouds (the splice refused for a DVR host) and l2population switched on and off in the
    walk: every step equals its cold plan."""
    maker = _Crowds(seed, tenant_network_types=("vxlan", "gre"), router_distributed=True, generation="modern")
    assert _walk(maker, 30, agents=True, others=0.1) == []
