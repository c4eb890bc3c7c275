"""A simulated world that lives between commands: booting costs the same per guest whatever the
cloud's size, a booted world is saved and loaded back tracing exactly as it did, and a change is
applied to it in place (World.refresh) tracing as a world built and booted from scratch.

The clouds are seed 000 (examples/seed000.yaml, brought up through the API once) and clouds
derived from it with dataclasses.replace: more instances cloned from ``cirros``, a server
deleted, a security-group rule deleted."""

from __future__ import annotations

import ipaddress
import pathlib
import pickle
from dataclasses import replace

import pytest
import yaml

from neutrino.errors import NeutrinoError
from neutrino.host.ovsdb import OvsdbShow
from neutrino.host.state import HostState
from neutrino.plan import plan_cloud
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim import keep
from neutrino.sim.cloud import refresh_world, world_of
from neutrino.sim.keep import WorldFileError, load_world, save_world
from neutrino.sim.trace import DropReason
from neutrino.sim.world import StaleWorld, World

SEED000 = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed000.yaml"
FIP = "172.24.4.228"


@pytest.fixture(scope="module")
def seed0(seed0_cloud: CloudSnapshot) -> CloudSnapshot:
    return seed0_cloud


# -- changed clouds, derived from a snapshot ------------------------------------------------------

def add_server(cloud: CloudSnapshot, name: str, i: int) -> CloudSnapshot:
    """``cloud`` with one more instance like ``cirros`` (same network, host and groups)."""
    base_srv = cloud.servers[0]
    base = cloud.port(base_srv.port_ids[0])
    pid, sid = f"{i:08x}-1111-4222-8333-{i:012x}", f"{i:08x}-5555-4666-8777-{i:012x}"
    ip = ipaddress.ip_address(int(base.fixed_ips[0].ip_address) + 10 + i)
    port = replace(base, id=pid, mac_address=f"fa:16:3e:00:{i >> 8:02x}:{i & 255:02x}", device_id=sid,
                   fixed_ips=(replace(base.fixed_ips[0], ip_address=ip),))
    server = replace(base_srv, id=sid, name=name, port_ids=(pid,))
    return replace(cloud, ports=(*cloud.ports, port), servers=(*cloud.servers, server), _index={})


def with_servers(cloud: CloudSnapshot, n: int) -> CloudSnapshot:
    for i in range(1, n + 1):
        cloud = add_server(cloud, f"vm{i}", i)
    return cloud


def delete_server(cloud: CloudSnapshot, name: str) -> CloudSnapshot:
    """``cloud`` without server ``name`` and its port (its floating IP disassociated)."""
    srv = next(s for s in cloud.servers if s.name == name)
    fips = tuple(replace(f, port_id=None, fixed_ip_address=None) if f.port_id in srv.port_ids else f
                 for f in cloud.floating_ips)
    return replace(cloud, servers=tuple(s for s in cloud.servers if s is not srv),
                   ports=tuple(p for p in cloud.ports if p.id not in srv.port_ids), floating_ips=fips, _index={})


def delete_rule(cloud: CloudSnapshot, protocol: str, port: int) -> CloudSnapshot:
    groups = tuple(replace(g, rules=tuple(r for r in g.rules if not (
        r.direction == "ingress" and r.protocol == protocol and r.port_range_min == port)))
        for g in cloud.security_groups)
    return replace(cloud, security_groups=groups, _index={})


# -- what a world knows and how it traces ---------------------------------------------------------

def booted(cloud: CloudSnapshot, *, pruning: bool = True) -> World:
    w = world_of(cloud, plan_cloud(cloud))
    w.flood_pruning = pruning
    w.boot()
    return w


def learned(w: World) -> dict[object, object]:
    """Everything the world learned (empty elements left out): leases, MAC tables, learned flows,
    Linux bridge FDBs, neighbours, conntrack entries (as a set: creation order is not traced)."""
    out: dict[object, object] = {("lease", n): (str(g.address), g.lease) for n, g in w.guests.items()}
    for key in list(w._ovs):
        sim = w._ovs[key]
        out[("fdb", key)] = sorted((v, m.value, p) for v, m, p in sim.mac_table) or None
        out[("flows", key)] = sorted(repr(f) for f in sim.learned_flows) or None
    for key in list(w._lbr):
        out[("lbr", key)] = w._lbr[key].fdb() or None
    for key in list(w._stacks):
        out[("neigh", key)] = w._stacks[key].neighbours() or None
    for key in list(w._nf):
        nf = w._nf[key]
        out[("ct", key)] = sorted(c.text() for c in nf.conntrack) or None if nf is not None else None
    return {k: v for k, v in out.items() if v is not None}


def probes(w: World, cloud: CloudSnapshot) -> list[object]:
    """The same sequence of probes (each leaves state, as on real hosts): every instance to the
    internet, to each other, to the metadata service; the outside to each floating IP."""
    names = [s.name for s in cloud.servers]
    todo: list[tuple[str, str, str, int]] = []
    for n in names:
        todo += [(n, "8.8.8.8", "icmp", 22), (n, "169.254.169.254", "http", 80)]
        todo += [(n, m, "tcp", 22) for m in names if m != n]
    for f in cloud.floating_ips:
        todo += [("outside", str(f.floating_ip_address), "tcp", 22), ("outside", str(f.floating_ip_address), "tcp", 23)]
    if names:
        todo.append(("host:compute", names[0], "icmp", 0))
    out: list[object] = []
    for src, dst, proto, port in todo:
        try:
            out.append(w.probe(src, dst, proto=proto, dport=port))
        except NeutrinoError as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return out


# -- booting ----------------------------------------------------------------------------------------

def test_booting_a_guest_costs_the_same_whatever_the_number_of_guests(seed0: CloudSnapshot) -> None:
    small, big = with_servers(seed0, 3), with_servers(seed0, 12)
    hops = {}
    for label, cloud in (("small", small), ("big", big)):
        for pruning in (True, False):
            w = booted(cloud, pruning=pruning)
            assert all(w.boot().values())
            hops[(label, pruning)] = len(w.boot_hops["vm3"])
    # every guest's broadcasts used to visit every other guest's port: the exchange grew with them
    assert hops[("big", False)] > hops[("small", False)]
    assert hops[("big", True)] == hops[("small", True)] < hops[("small", False)]


def test_a_pruned_boot_learns_and_traces_what_a_full_flood_does(seed0: CloudSnapshot) -> None:
    cloud = with_servers(seed0, 6)
    pruned, full = booted(cloud), booted(cloud, pruning=False)
    assert learned(pruned) == learned(full)
    assert any(k[0] == "ct" for k in learned(full)) and any(k[0] == "fdb" for k in learned(full))
    traces = probes(pruned, cloud)
    assert traces == probes(full, cloud)
    assert sum(1 for t in traces if not isinstance(t, str) and t.delivered) >= 10


# -- saving and loading -----------------------------------------------------------------------------

def test_a_loaded_world_traces_exactly_like_the_saved_one(seed0: CloudSnapshot, tmp_path: pathlib.Path) -> None:
    cloud = with_servers(seed0, 2)
    world = booted(cloud)
    size = save_world(world, tmp_path / "world", tag="t1")
    assert size == (tmp_path / "world").stat().st_size
    loaded = load_world(tmp_path / "world", tag="t1")
    assert loaded.boot_hops.keys() == world.boot_hops.keys()
    assert loaded.boot_hops["vm1"] == world.boot_hops["vm1"]
    assert learned(loaded) == learned(world)
    assert probes(loaded, cloud) == probes(world, cloud)
    assert learned(loaded) == learned(world)  # and learns the same from them


def test_the_world_pickles_as_an_object_too(seed0: CloudSnapshot) -> None:
    world = booted(seed0)
    copy = pickle.loads(pickle.dumps({"world": world}))["world"]
    assert copy.probe("cirros", "8.8.8.8") == world.probe("cirros", "8.8.8.8")


def test_stale_and_corrupt_files_raise_an_error_the_caller_can_catch(seed0: CloudSnapshot, tmp_path: pathlib.Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "world"
    save_world(booted(seed0), path, tag="stamp-1")
    data = path.read_bytes()
    head, _, payload = data.partition(b"\n")

    def fails(blob: bytes | None, match: str, **kw: str) -> None:
        if blob is not None:
            path.write_bytes(blob)
        with pytest.raises(WorldFileError, match=match) as err:
            load_world(path, **kw)
        assert isinstance(err.value, StaleWorld) and isinstance(err.value, NeutrinoError)

    fails(None, "kept for 'stamp-1', not 'stamp-2'", tag="stamp-2")
    fails(data[:-100], "truncated or corrupt")
    fails(head + b"\n" + payload[:50] + bytes([payload[50] ^ 0xFF]) + payload[51:], "truncated or corrupt")
    fails(head.replace(b'"format": 1', b'"format": 0') + b"\n" + payload, "format 0, this code reads format 1")
    fails(b"something else\n", "not a kept world")
    fails(keep.MAGIC + b"{not json\n" + payload, "header is unreadable")
    path.write_bytes(data)
    monkeypatch.setattr(keep, "_FINGERPRINT", "another-version")
    fails(None, "another version of the simulator")
    monkeypatch.undo()
    path.unlink()
    fails(None, "cannot read")
    path.write_bytes(data)
    assert load_world(path).guests["cirros"].address is not None


# -- refreshing -------------------------------------------------------------------------------------

def refreshed(before: CloudSnapshot, after: CloudSnapshot, world: World) -> World:
    """``world`` (booted on ``before``) after the hosts whose plan changed were given to it."""
    old = {h.name: h for h in plan_cloud(before)}
    changed = [h for h in plan_cloud(after) if old.get(h.name) != h]
    refresh_world(world, after, changed)
    return world


@pytest.mark.parametrize("loaded", [False, True], ids=["in-memory", "loaded"])
@pytest.mark.parametrize("change", ["add a server", "delete a server", "delete a rule"])
def test_a_refreshed_world_traces_as_one_built_from_scratch(seed0: CloudSnapshot, tmp_path: pathlib.Path,
                                                            change: str, loaded: bool) -> None:
    before = with_servers(seed0, 1)
    after = {"add a server": lambda c: add_server(c, "vm9", 9),
             "delete a server": lambda c: delete_server(c, "cirros"),
             "delete a rule": lambda c: delete_rule(c, "tcp", 22)}[change](before)
    world = booted(before)
    if loaded:
        save_world(world, tmp_path / "world")
        world = load_world(tmp_path / "world")
    fresh = booted(after)
    refreshed(before, after, world)
    assert {n: str(g.address) for n, g in world.guests.items()} == {n: str(g.address) for n, g in fresh.guests.items()}
    assert list(world.guests) == [s.name for s in after.servers]
    assert learned(world) == learned(fresh)
    assert probes(world, after) == probes(fresh, after)


def test_refresh_boots_new_guests_and_drops_removed_ones(seed0: CloudSnapshot) -> None:
    before = with_servers(seed0, 1)
    world = booted(before)
    cirros_mac = world.guests["cirros"].mac
    old = {h.name: h for h in plan_cloud(before)}
    after = delete_server(add_server(before, "vm9", 9), "cirros")
    changed = [h for h in plan_cloud(after) if old[h.name] != h]
    done = refresh_world(world, after, changed)
    assert dict(done.booted) == {"vm9": "10.1.0.21/24"} and done.dropped == ("cirros",)
    assert set(done.hosts) == {"compute", "network"}
    assert "cirros" not in world.guests and "cirros" not in world.boot_hops
    assert all(mac != cirros_mac for sim in world._ovs.loaded().values() for _, mac, _ in sim.mac_table)
    assert world.probe("vm9", "vm1").delivered


def test_refresh_leaves_unchanged_hosts_untouched(seed0: CloudSnapshot) -> None:
    before = with_servers(seed0, 1)
    after = delete_rule(before, "tcp", 22)
    assert booted(before).probe("outside", FIP, proto="tcp", dport=22).delivered
    world = booted(before)
    network = {k: v for k, v in world._ovs.loaded().items() if k[0] == "network"}
    stacks = {k: v for k, v in world._stacks.loaded().items() if k[0] == "network"}
    compute_nf = world.netfilter("compute", "")
    assert compute_nf is not None
    refreshed(before, after, world)
    assert all(world._ovs[k] is v for k, v in network.items()) and network
    assert all(world._stacks[k] is v for k, v in stacks.items()) and stacks
    now = world.netfilter("compute", "")
    assert now is not compute_nf and now is not None and now.conntrack is compute_nf.conntrack  # conntrack kept
    t = world.probe("outside", FIP, proto="tcp", dport=22)
    assert not t.delivered and t.verdict.reason is DropReason.SECURITY_GROUP


def retagged(host: HostState, tags: dict[str, int]) -> HostState:
    """``host`` with some br-int ports moved to other local VLANs (by port name prefix)."""
    show = host.ovs.show
    assert isinstance(show, OvsdbShow)
    br_int = next(b for b in show.bridges if b.name == "br-int")
    ports = tuple(next((replace(p, tag=t) for pre, t in tags.items() if p.name.startswith(pre)), p)
                  for p in br_int.ports)
    bridges = tuple(replace(b, ports=ports) if b is br_int else b for b in show.bridges)
    return replace(host, ovs=replace(host.ovs, show=replace(show, bridges=bridges)))


def test_learned_state_follows_renumbered_local_vlans(seed0: CloudSnapshot) -> None:
    world = booted(seed0)
    cirros = world.guests["cirros"].mac
    assert (1, cirros) in {(v, m) for v, m, _ in world.bridge("compute", "br-int").mac_table}
    compute = next(h for h in plan_cloud(seed0) if h.name == "compute")
    done = world.refresh([retagged(compute, {"qvo": 7})])
    assert done.hosts == ("compute",) and not done.booted
    assert (7, cirros) in {(v, m) for v, m, _ in world.bridge("compute", "br-int").mac_table}
    assert not any(v == 1 for v, _, _ in world.bridge("compute", "br-int").mac_table)


def test_refresh_refuses_what_it_cannot_apply_in_place(seed0: CloudSnapshot, tmp_path: pathlib.Path) -> None:
    world = booted(seed0)
    network = next(h for h in plan_cloud(seed0) if h.name == "network")
    taps = [p.name for p in world.bridge("network", "br-int").bridge.ports if p.tag == 1]
    assert len(taps) == 2  # the DHCP port and the router's
    with pytest.raises(StaleWorld, match="the ports of VLAN 1 now have VLANs"):
        world.refresh([retagged(network, {taps[0]: 7, taps[1]: 8})])  # one network split in two
    save_world(booted(seed0), tmp_path / "world")
    loaded = load_world(tmp_path / "world")
    with pytest.raises(StaleWorld, match="does not hold host compute's state"):
        loaded.refresh(guests=())  # the guest's host changed, and the loaded world has no state for it


MODERN = {
    "deployment": {"mechanism": "ml2_ovs", "tenant_network_types": ["vxlan"]},
    "hosts": [{"name": "network", "roles": ["controller", "network"], "management_ip": "192.168.50.10",
               "tunnel_ip": "192.168.50.10"},
              *({"name": f"compute{i}", "role": "compute", "management_ip": f"192.168.50.{20 + i}",
                 "tunnel_ip": f"192.168.50.{20 + i}"} for i in range(2))],
    "resources": {
        "networks": [{"name": "public", "external": True, "subnets": [
                         {"name": "public-subnet", "cidr": "203.0.113.0/24", "gateway": "203.0.113.1",
                          "enable_dhcp": False}]},
                     *({"name": f"net{k}", "subnets": [{"name": f"subnet{k}", "cidr": f"10.{k}.0.0/24"}]}
                       for k in range(2))],
        "routers": [{"name": "r1", "gateway": {"network": "public"}, "interfaces": ["subnet0", "subnet1"]}],
        "security_group_rules": [{"group": "default", "direction": "ingress", "protocol": "icmp"}],
        "servers": [{"name": name, "image": "cirros", "flavor": "1", "networks": [net], "host": host}
                    for name, net, host in (("a0", "net0", "compute0"), ("a1", "net1", "compute0"),
                                            ("b0", "net0", "compute1"), ("b1", "net1", "compute1"))],
        "floating_ips": [{"network": "public", "server": "a1"}],
    },
}


def test_refresh_follows_a_modern_cloud_renumbering_vlans_and_zones(tmp_path: pathlib.Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleting a0 takes net0 off compute0: a1's network moves to local VLAN 1 and its port to
    the first conntrack zone; what was learned moves with them."""
    from neutrino.deploy import bring_up

    scenario = tmp_path / "modern.yaml"
    scenario.write_text(yaml.safe_dump(MODERN))
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path))
    before = bring_up(scenario, state=tmp_path / "state", keep=False).cloud
    after = delete_server(before, "a0")
    world = booted(before)
    root = world.netfilter("compute0", "")
    assert root is not None and 4097 in {c.zone for c in root.conntrack}
    zones = dict(root.zones())
    tags = {p.name: p.tag for p in world.bridge("compute0", "br-int").bridge.ports}
    refreshed(before, after, world)
    now = world.netfilter("compute0", "")
    assert now is not None and now.zones() != zones
    assert {p.name: p.tag for p in world.bridge("compute0", "br-int").bridge.ports} != tags
    fresh = booted(after)
    assert learned(world) == learned(fresh)
    assert probes(world, after) == probes(fresh, after)


def test_a_world_kept_refreshed_and_kept_again_loads_as_it_was(seed0: CloudSnapshot, tmp_path: pathlib.Path) -> None:
    """What an agent does: keep the booted world, apply each change to it and keep it again (the
    chains and rules that did not change are not pickled again); a command loads it."""
    before = with_servers(seed0, 1)
    after = delete_rule(add_server(before, "vm9", 9), "tcp", 80)
    world = booted(before)
    save_world(world, tmp_path / "world", tag="1")
    refreshed(before, after, world)
    save_world(world, tmp_path / "world", tag="2")
    loaded = load_world(tmp_path / "world", tag="2")
    fresh = booted(after)
    assert learned(loaded) == learned(fresh)
    assert probes(loaded, after) == probes(fresh, after)
    t = loaded.probe("outside", FIP, proto="tcp", dport=80)
    assert not t.delivered and t.verdict.reason is DropReason.SECURITY_GROUP
