"""Issue #17, sixth round (replan6): l2population's shared flow tables carried from one snapshot to
the next (``ovs_tun._L2POP_SHARED``), and DVR's agent mode looked up by name from the snapshot's
index.

A network's table of remote hosts' l2population flows is carried to a fresh snapshot under its slot
(network, profile, external bridge, local VLAN, segment, cookie), and only the entries towards hosts
whose ports on the network (MACs, ids) did not change. Each kind of change is planned on top of a
plan of the snapshot before (everything kept) and must equal a cold plan of the snapshot after
(everything kept cleared, new objects throughout); the tables must really be carried (else that
proves nothing); and with a key part dropped (the contents check, the local VLAN, the cookie) some
re-plan must differ from the cold plan (else the tests could not see a stale table)."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterator

import pytest

from neutrino.host.state import HostState
from neutrino.plan import InputsMemo, dvr, ovs_tun, plan_host
from neutrino.plan.ovs import plan_ovs
from neutrino.services.snapshot import CloudSnapshot, FixedIP, Port
from tests.plan.benchmod import plan_bench
from tests.plan.test_replan_kept import forget_everything, fresh


@pytest.fixture(scope="module")
def cloud() -> CloudSnapshot:
    return plan_bench().build(12, 72, 7)  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _cleared() -> Iterator[None]:
    forget_everything()
    yield
    forget_everything()


def _instance_ports(cloud: CloudSnapshot) -> list[Port]:
    return [p for p in cloud.ports if p.device_owner == "compute:nova"]


def _added(cloud: CloudSnapshot) -> CloudSnapshot:
    """One more instance port: on network 2, on a host with no port there yet."""
    net = cloud.networks[2]
    on_net = {p.binding_host for p in cloud.ports if p.network_id == net.id}
    host = next(h.name for h in cloud.deployment.hosts[1:] if h.name not in on_net)
    like = next(p for p in _instance_ports(cloud) if p.network_id == net.id)
    sub = like.fixed_ips[0].subnet_id
    new = dataclasses.replace(like, id="0000aaaa-0000-4000-8000-00000000beef", mac_address="fa:16:3e:7e:00:01",
                              binding_host=host, fixed_ips=(FixedIP(sub, ipaddress.ip_address("10.0.47.250")),))
    return fresh(cloud, ports=(*cloud.ports, new))


def _mac_altered(cloud: CloudSnapshot) -> CloudSnapshot:
    victim = _instance_ports(cloud)[7]
    return fresh(cloud, ports=tuple(dataclasses.replace(p, mac_address="fa:16:3e:7e:00:02") if p is victim else p
                                    for p in cloud.ports))


def _removed(cloud: CloudSnapshot) -> CloudSnapshot:
    victim = _instance_ports(cloud)[3]
    return fresh(cloud, ports=tuple(p for p in cloud.ports if p is not victim))


def _moved(cloud: CloudSnapshot) -> CloudSnapshot:
    victim = _instance_ports(cloud)[5]
    to = next(h.name for h in cloud.deployment.hosts[1:] if h.name != victim.binding_host)
    return fresh(cloud, ports=tuple(dataclasses.replace(p, binding_host=to) if p is victim else p
                                    for p in cloud.ports))


def _first_removed(cloud: CloudSnapshot) -> CloudSnapshot:
    """The first instance port gone: its host loses the port's network (its only port there), so
    the host's other networks get other local VLANs."""
    victim = _instance_ports(cloud)[0]
    assert sum(p.binding_host == victim.binding_host and p.network_id == victim.network_id for p in cloud.ports) == 1
    return fresh(cloud, ports=tuple(p for p in cloud.ports if p is not victim))


def _unchanged(cloud: CloudSnapshot) -> CloudSnapshot:
    return fresh(cloud)


CHANGES: dict[str, Callable[[CloudSnapshot], CloudSnapshot]] = {
    "port added": _added, "MAC altered": _mac_altered, "port removed": _removed, "port moved": _moved,
    "a host's first port removed": _first_removed, "nothing (new objects)": _unchanged}

#: (options of the plan before, options of the plan after)
OPTIONS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "plain": ({}, {}), "cookie changed": ({}, {"cookie": 0x5}), "arp responder": ({"arp_responder": True}, {"arp_responder": True})}


def _plan_all(snapshot: CloudSnapshot, options: dict[str, object]) -> dict[str, HostState]:
    return {h.name: plan_ovs(snapshot, h.name, **options)  # type: ignore[arg-type]
            for h in snapshot.deployment.hosts}


def _replanned_and_cold(cloud: CloudSnapshot, change: Callable[[CloudSnapshot], CloudSnapshot],
                        before: dict[str, object], after: dict[str, object]
                        ) -> tuple[dict[str, HostState], dict[str, HostState]]:
    forget_everything()
    _plan_all(fresh(cloud), before)  # everything of the snapshot before planned and kept
    changed = change(cloud)
    replanned = _plan_all(fresh(changed), after)
    forget_everything()
    cold = _plan_all(fresh(changed), after)
    return replanned, cold


def _differing(replanned: dict[str, HostState], cold: dict[str, HostState]) -> list[str]:
    return [h for h in cold if replanned[h] != cold[h] or repr(replanned[h]) != repr(cold[h])]


@pytest.mark.parametrize("options", list(OPTIONS), ids=str)
@pytest.mark.parametrize("change", list(CHANGES), ids=str)
def test_a_replan_equals_a_cold_plan(cloud: CloudSnapshot, change: str, options: str) -> None:
    replanned, cold = _replanned_and_cold(cloud, CHANGES[change], *OPTIONS[options])
    assert _differing(replanned, cold) == []


def test_the_plans_change(cloud: CloudSnapshot) -> None:
    """(The changes do change some host's br-tun: else the checks above could pass on stale tables.)"""
    for name in ("port added", "MAC altered", "port removed", "port moved", "a host's first port removed"):
        forget_everything()
        was = _plan_all(fresh(cloud), {})
        forget_everything()
        now = _plan_all(CHANGES[name](cloud), {})
        assert any(was[h].ovs.flows_of("br-tun") != now[h].ovs.flows_of("br-tun") for h in now), name


def test_the_tables_are_carried(cloud: CloudSnapshot) -> None:
    """After a MAC change the fresh snapshot's tables hold the very flows of the snapshot before
    towards the hosts whose ports did not change, and new ones towards the changed port's host."""
    first = fresh(cloud)
    _plan_all(first, {})
    old = {slot: dict(table) for slot, (_contents, table) in ovs_tun._L2POP_SHARED.kept.items()}
    changed = _mac_altered(cloud)
    victim_host = next(p.binding_host for p in changed.ports if p.mac_address == "fa:16:3e:7e:00:02")
    _plan_all(changed, {})
    same = remade = 0
    for slot, (_contents, table) in ovs_tun._L2POP_SHARED.kept.items():
        for remote, value in table.items():
            was = old.get(slot, {}).get(remote)
            if was is value:
                same += 1
                assert remote[1] != victim_host or slot[0] != next(
                    p.network_id for p in changed.ports if p.mac_address == "fa:16:3e:7e:00:02")
            elif was is not None:
                remade += 1
    assert same > 100 and remade > 0


def test_the_responder_tables_are_not_carried(cloud: CloudSnapshot) -> None:
    _plan_all(fresh(cloud), {"arp_responder": True})
    assert not ovs_tun._L2POP_SHARED.kept
    _plan_all(fresh(cloud), {})
    assert ovs_tun._L2POP_SHARED.kept


class _BlindMemo(InputsMemo[dict[str, int], ovs_tun._Shared]):
    """The table of a slot reused whatever the network's contents (the contents dropped from the key)."""

    def get(self, name: object, inputs: dict[str, int], compute: Callable[[dict[str, int]], ovs_tun._Shared]
            ) -> ovs_tun._Shared:
        kept = self.kept.get(name)
        if kept is None:
            kept = self.kept[name] = (inputs, compute(inputs))
        return kept[1]


@pytest.mark.parametrize(("dropped", "change", "options"), [
    ("contents", "MAC altered", "plain"), ("local VLAN", "a host's first port removed", "plain"),
    ("cookie", "nothing (new objects)", "cookie changed")], ids=lambda x: str(x))
def test_a_dropped_key_part_is_seen(cloud: CloudSnapshot, dropped: str, change: str, options: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With a part of the key dropped a stale table is reused and the re-plan after a change that
    the part sees differs from the cold plan: the checks above would catch it."""
    if dropped == "contents":
        monkeypatch.setattr(ovs_tun, "_L2POP_SHARED", _BlindMemo())
    else:
        part = 3 if dropped == "local VLAN" else 5
        real = ovs_tun._l2pop_slot

        def slot(ctx: object, network_id: str, lvid: int, key: int) -> tuple[object, ...]:
            got = real(ctx, network_id, lvid, key)  # type: ignore[arg-type]
            return got[:part] + got[part + 1:]
        monkeypatch.setattr(ovs_tun, "_l2pop_slot", slot)
    replanned, cold = _replanned_and_cold(cloud, CHANGES[change], *OPTIONS[options])
    assert _differing(replanned, cold)


def test_dvr_agent_mode_by_name(cloud: CloudSnapshot) -> None:
    """``agent_mode`` reads the snapshot's index of hosts by name: the first host of a name, as
    ``Deployment.host`` finds it, and legacy for a host not in the deployment."""
    hosts = cloud.deployment.hosts
    twin = dataclasses.replace(hosts[3], l3_agent_mode="dvr")
    dep = dataclasses.replace(cloud.deployment, hosts=(*hosts[:3], dataclasses.replace(hosts[3], l3_agent_mode="dvr_snat"),
                                                       *hosts[4:], twin))
    snap = fresh(cloud, deployment=dep)
    for h in (*dep.hosts, ):
        found = dep.host(h.name)
        assert found is not None and dvr.agent_mode(snap, h.name) == found.l3_agent_mode
    assert dvr.agent_mode(snap, hosts[3].name) == "dvr_snat"
    assert dvr.agent_mode(snap, "nowhere") == "legacy"
    assert dvr.agent_mode(snap, None) == "legacy"  # type: ignore[arg-type]  # (a router on no host)
    assert plan_host(snap, hosts[3].name).name == hosts[3].name
