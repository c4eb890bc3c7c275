"""Review 15 (issue #17): the re-plan's splice of br-tun's flows (replan13 ``ovs._spliced``,
``ovs_tun.spliced_network``; replan14 the chained cases) against cold plans.

Random walks planned the agents' way (only the hosts ``hosts_affected_by_change`` names, the
others' plans kept; statuses reported between passes): on the bench cloud (l2population on) with
half its networks made GRE beside VXLAN, several changes at once per step (ports added, removed,
moved, readdressed, MAC changed, admin state, a router's port moved, a port unbound, two ports
swapping hosts, a host's every port on a network moved away), l2population toggled. Every host's
plan at every step equals its cold plan.

(In the review, beside these: 55 walks of 20 steps on the bench cloud so (1-3 changes a step;
~900 hosts spliced), 15 with l2population toggled (~180 spliced), 45 on the HA, OVS firewall and
seed 001 examples with l2population on and 30 on the last two with GRE beside VXLAN (~170
spliced), 20 of review 14's walk (a second agent a step behind, restarts, another cloud in
between) with these changes mixed in: no difference.)
"""

from __future__ import annotations

import dataclasses
import random

from neutrino.services.snapshot import CloudSnapshot, Segment
from tests.plan import replan_kit
from tests.plan.test_replan13_splice import spliced as _spliced_hosts
from tests.plan.test_replan_kept import fresh
from tests.plan.test_review14_chain import _Agent, _change

_cleared = replan_kit._cleared  # (the shared fixtures, this module's by these names)
cloud = replan_kit.cloud
patched = replan_kit.patched
spliced = _spliced_hosts  # (the hosts ``ovs._spliced`` answered for: replan13's fixture)


def _gre_and_vxlan(c: CloudSnapshot) -> CloudSnapshot:
    """Every other tenant network of a tunnel type made GRE (ids from the GRE range), the deployment
    tunnelling both."""
    nets = []
    i = 0
    for n in c.networks:
        if n.segment.network_type == "vxlan" and not n.external:
            if i % 2:
                n = dataclasses.replace(n, segment=Segment("gre", None, 500 + i))
            i += 1
        nets.append(n)
    dep = dataclasses.replace(c.deployment, tenant_network_types=("vxlan", "gre"), l2population=True)
    return dataclasses.replace(c, networks=tuple(nets), deployment=dep, _index={})


def _more(rng: random.Random, cloud: CloudSnapshot, n: int) -> tuple[str, CloudSnapshot]:
    """Changes beside review 14's: a router's port moved to another host, a port unbound, two
    instance ports on one network swapping hosts, every port of one host on a network moved away."""
    hosts = [h.name for h in cloud.deployment.hosts]
    kind = rng.choice(["router port moved", "unbound", "swapped", "host emptied"])
    ports = list(cloud.ports)
    if kind == "router port moved":
        cands = [i for i, p in enumerate(ports) if p.device_owner == "network:router_interface"]
        if not cands:
            return "nothing", cloud
        i = rng.choice(cands)
        ports[i] = dataclasses.replace(ports[i], binding_host=rng.choice(hosts))
    elif kind == "unbound":
        cands = [i for i, p in enumerate(ports) if p.is_instance_port and p.binding_host]
        if not cands:
            return "nothing", cloud
        i = rng.choice(cands)
        ports[i] = dataclasses.replace(ports[i], binding_host="")
    elif kind == "swapped":
        inst = [i for i, p in enumerate(ports) if p.is_instance_port and p.binding_host]
        pairs = [(a, b) for a in inst for b in inst if a < b and ports[a].network_id == ports[b].network_id
                 and ports[a].binding_host != ports[b].binding_host]
        if not pairs:
            return "nothing", cloud
        a, b = rng.choice(pairs)
        ha, hb = ports[a].binding_host, ports[b].binding_host
        ports[a], ports[b] = dataclasses.replace(ports[a], binding_host=hb), dataclasses.replace(ports[b], binding_host=ha)
    else:
        inst = [p for p in ports if p.is_instance_port and p.binding_host]
        if not inst:
            return "nothing", cloud
        v = rng.choice(inst)
        to = rng.choice(hosts)
        ports = [dataclasses.replace(p, binding_host=to) if p.is_instance_port and p.network_id == v.network_id
                 and p.binding_host == v.binding_host else p for p in ports]
    return kind, dataclasses.replace(cloud, ports=tuple(ports))


def _walk(start: CloudSnapshot, seed: int, steps: int, *, many: int = 3, toggle: bool = False) -> list[str]:
    rng = random.Random(seed)
    agent = _Agent()
    current = start
    done = []
    for step in range(steps):
        kinds = []
        for j in range(rng.randint(1, many)):
            change = _more if rng.random() < 0.3 else _change
            kind, current = change(rng, current, 100000 + 1000 * seed + 10 * step + j)
            kinds.append(kind)
        if toggle and rng.random() < 0.1:
            current = dataclasses.replace(current, deployment=dataclasses.replace(
                current.deployment, l2population=not current.deployment.l2population))
            kinds.append("l2pop toggled")
        snap = fresh(current)
        done.append((f"seed {seed} step {step}: {'+'.join(kinds)}", current, agent.converge(snap)))
        if rng.random() < 0.5 and (reported := replan_kit.statuses_reported(rng, snap)) is not None:
            agent.before = reported
            current = dataclasses.replace(current, ports=reported.ports)
    return replan_kit.cold_differences(done)


def test_walks_on_gre_and_vxlan_with_several_changes_a_step(cloud: CloudSnapshot, patched: list[str],
                                                            spliced: list[str]) -> None:
    mixed = _gre_and_vxlan(cloud)
    assert {n.segment.network_type for n in mixed.networks} >= {"gre", "vxlan"}
    assert _walk(mixed, 1, 7) == []
    assert patched and spliced  # (hosts were patched, and br-tun's flows spliced)


def test_walks_with_l2population_toggled(cloud: CloudSnapshot, spliced: list[str]) -> None:
    assert _walk(_gre_and_vxlan(cloud), 50, 5, many=2, toggle=True) == []
    assert spliced
