"""What ``World.refresh`` says of a host new to a network (review19): the refreshed world keeps what
its hosts learned as they learned it, so a host that joins a network after its guests booted has not
learned their MACs (their DHCP broadcasts never reached it), while a world built and booted anew on
the same plans boots them with that host already there. Every guest's address is the same either
way; only the MAC learning of that host's br-int on that network differs."""

from __future__ import annotations

from neutrino.plan import plan_hosts
from neutrino.plan.ovs import ovs_context
from neutrino.plan.ovs_int import local_vlans
from neutrino.sim.cloud import refresh_world, world_of
from tests.plan.test_replan8_previous import _cold, _names
from tests.plan.test_replan_kept import fresh
from tests.plan.test_review19_renumbered import CHANGES, _cloud, _with_servers


def _macs_on(world: object, host: str, lvid: int) -> set[int]:
    table = world._ovs[(host, "br-int")].mac_table  # type: ignore[attr-defined]
    return {mac.value for vlan, mac, _port in table if vlan == lvid}


def test_a_host_new_to_a_network_has_not_learned_the_guests_booted_before_it_joined() -> None:
    base = _cloud(firewall="iptables_hybrid")
    cloud, after = _with_servers(base), _with_servers(CHANGES["one tunnel gained"](base))
    before = fresh(cloud)
    joined = [v for v in local_vlans(ovs_context(fresh(after), "compute4"))
              if v not in local_vlans(ovs_context(before, "compute4"))]
    assert len(joined) == 1  # compute4 joins net-0 (its new local VLAN)
    lvid = joined[0].lvid
    plans = dict(plan_hosts(before, _names(before)))
    world = world_of(before, tuple(plans.values()))
    world.boot()
    cold = _cold(after)
    refresh_world(world, fresh(after), [cold[n] for n in _names(after) if cold[n] != plans[n]])
    anew = world_of(fresh(after), tuple(cold[n] for n in _names(after)))
    anew.boot()
    assert {n: g.address for n, g in world.guests.items()} == {n: g.address for n, g in anew.guests.items()}
    earlier = {g.mac.value for n, g in world.guests.items()
               if n in {s.name for s in cloud.servers} and world.specs[n].host != "compute4"}
    on_net0 = {g.mac.value for n, g in anew.guests.items()} & _macs_on(anew, "compute4", lvid)
    assert on_net0 & earlier, "the world built anew learned the earlier guests' MACs on compute4"
    assert not (_macs_on(world, "compute4", lvid) & earlier), "the refreshed world learned them before it joined"
