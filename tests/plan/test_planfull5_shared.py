"""Issue #17, round five (planfull5): br-tun's flows shared between the hosts of one snapshot.

l2population's flows towards a remote host are made once per snapshot for each (network, local
VLAN, segment, cookie, ARP responder, tunnel port number, remote host) and shared by every host
that agrees on those; a tunnel's in-flow origin once per (port number, table, cookie, remote).
These tests check that a host planned after all the others (finding the shared pieces) gets
exactly the plan it gets when planned alone first, on a fresh snapshot with nothing kept; that
the pieces are really shared (else the first check proves nothing); and the helpers made faster
(``device_macs``, ``Mac.__str__``, the tunnel ports' interfaces) against their plain forms."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections import Counter

import pytest

from neutrino.host.openflow import DlVlan, Output, format_add_flow, parse_flow
from neutrino.host.openflow_fields import Mac
from neutrino.plan import ovs_tun
from neutrino.plan.generation import PROFILES, device_mac, device_macs
from neutrino.plan.ovs import plan_ovs
from neutrino.services.snapshot import CloudSnapshot
from tests.plan.benchmod import plan_bench
from tests.plan.test_replan_kept import forget_everything, fresh

VARIANTS = [{}, {"cookie": 0xABC}, {"arp_responder": True}, {"arp_responder": True, "cookie": 0x5}]


@pytest.fixture(scope="module")
def cloud() -> CloudSnapshot:
    return plan_bench().build(24, 240, 6)  # type: ignore[no-any-return]


def _l2pop(state: object) -> list[tuple[object, object]]:
    """The host's l2population flows (br-tun tables 20 and 21 at their priorities), each with its
    origin (the dump orders them by table, the origins are in planned order: paired by text)."""
    origins = {o.item: o for o in state.origins if o.builder == ovs_tun.BUILDER_L2POP}  # type: ignore[attr-defined]
    br = state.ovs.flows_of("br-tun")  # type: ignore[attr-defined]
    flows = [f for f in br.flows.flows if (f.table, f.priority) in ((20, 2), (21, 1))]
    assert len(flows) == len(origins)
    return [(f, origins[format_add_flow(f)]) for f in flows]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_a_host_planned_last_is_planned_as_if_alone(cloud: CloudSnapshot, options: dict[str, object]) -> None:
    hosts = [h.name for h in cloud.deployment.hosts]
    forget_everything()
    snapshot = fresh(cloud)
    planned = {h: plan_ovs(snapshot, h, **options) for h in hosts}  # type: ignore[arg-type]
    # the objects are shared: the same flow object on several hosts (else nothing here is tested)
    owners: Counter[int] = Counter()
    for state in planned.values():
        owners.update({id(f) for f, _o in _l2pop(state)})
    assert max(owners.values()) > 1
    for last in (hosts[-1], hosts[len(hosts) // 2], hosts[1]):
        forget_everything()
        alone = plan_ovs(fresh(cloud), last, **options)  # type: ignore[arg-type]
        assert alone == planned[last] and repr(alone) == repr(planned[last])
    # and every shared flow is the one its origin's text says (the host's VLAN, its port number):
    # paired by text in _l2pop; parsed back for a sample
    for state in planned.values():
        pairs = _l2pop(state)
        assert pairs
        for flow, origin in pairs[::9]:
            assert origin.kind == "flow"  # type: ignore[attr-defined]
            assert dataclasses.replace(parse_flow(origin.item), cookie=flow.cookie) == flow  # type: ignore[attr-defined]


def test_different_vlans_and_port_numbers_are_not_shared(cloud: CloudSnapshot) -> None:
    """Two hosts that give a network different local VLANs, or a remote host different tunnel port
    numbers, get different flows towards it: the sharing is keyed by both."""
    forget_everything()
    snapshot = fresh(cloud)
    seen: dict[tuple[str, str], set[tuple[int, int]]] = {}
    for h in snapshot.deployment.hosts:
        state = plan_ovs(snapshot, h.name)
        for flow, origin in _l2pop(state):
            vlan = next(m for m in flow.match if isinstance(m, DlVlan))  # type: ignore[attr-defined]
            out = flow.actions[-1]  # type: ignore[attr-defined]
            assert isinstance(out, Output) and isinstance(out.port, int)
            assert f"dl_vlan={vlan.vid}," in origin.item and origin.item.endswith(f"output:{out.port}")  # type: ignore[attr-defined]
            seen.setdefault((origin.obj, repr(flow.match[-1])), set()).add((vlan.vid, out.port))  # type: ignore[attr-defined]
    assert any(len(v) > 1 for v in seen.values())  # one remote port, flows differing by host


def test_tunnel_in_origins_are_shared_and_right(cloud: CloudSnapshot) -> None:
    forget_everything()
    snapshot = fresh(cloud)
    states = [plan_ovs(snapshot, h.name) for h in snapshot.deployment.hosts]
    ids: Counter[int] = Counter()
    for state in states:
        tunnel_in = [o for o in state.origins if o.builder == ovs_tun.BUILDER_FLOWS and o.obj.startswith("tunnel to ")]
        assert tunnel_in
        for o in tunnel_in:
            flow = parse_flow(o.item)
            assert (flow.table, flow.priority) == (0, 1) and o.item.startswith(f"priority=1,in_port={flow.match[0].port} ")  # type: ignore[union-attr]
        ids.update(map(id, tunnel_in))
    assert max(ids.values()) > 1


def _device_mac_plain(*parts: str) -> Mac:
    raw = int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:6], "big")
    first = (raw >> 40) & 0xFC | 0x02
    return Mac((first << 40) | (raw & 0xFFFFFFFFFF))


def test_device_macs_are_device_mac() -> None:
    names = [f"vxlan-{i:08x}" for i in range(300)] + ["gre-ü", "patch-int", ""]
    got = device_macs(("compute0001", "br-tun"), names)
    assert got == [device_mac("compute0001", "br-tun", n) for n in names]
    assert got == [_device_mac_plain("compute0001", "br-tun", n) for n in names]
    assert all(type(m) is Mac and hash(m) == hash(Mac(m.value)) for m in got)
    assert device_mac("h", "qvb1") == _device_mac_plain("h", "qvb1")


@pytest.mark.parametrize("value", [0, 1, 0x0A1B2C3D4E5F, (1 << 48) - 1, 1 << 48, (1 << 52) + 7, -1])
def test_mac_prints_as_before(value: int) -> None:
    h = f"{value:012x}"
    assert str(Mac(value)) == ":".join(h[i:i + 2] for i in range(0, 12, 2))


@pytest.mark.parametrize("tunnel_ip", ["10.201.0.9", "2001:db8::9"])
@pytest.mark.parametrize("types", [("vxlan",), ("gre",), ("gre", "vxlan")])
@pytest.mark.parametrize("generation", ["modern", "grizzly"])
def test_tunnel_ports_are_their_interfaces(cloud: CloudSnapshot, tunnel_ip: str, types: tuple[str, ...],
                                           generation: str) -> None:
    """Each tunnel port's Interface row is :func:`ovs_tun._tunnel_interface`'s (made with the host's
    options once, the remote IP per port), IPv6 GRE as ``ip6gre``; its MAC is ``device_mac``'s."""
    me = cloud.deployment.hosts[3]
    ip = ipaddress.ip_address(tunnel_ip)
    hosts = tuple(dataclasses.replace(h, tunnel_ip=ip) if h.name == me.name else h for h in cloud.deployment.hosts)
    networks = tuple(dataclasses.replace(n, segment=dataclasses.replace(n.segment, network_type=types[i % len(types)]))
                     for i, n in enumerate(cloud.networks))
    snapshot = fresh(cloud, networks=networks, deployment=dataclasses.replace(
        cloud.deployment, hosts=hosts, tenant_network_types=types, generation=generation))
    forget_everything()
    state = plan_ovs(snapshot, me.name, generation=PROFILES[generation])
    show = state.ovs.show
    tun = next(b for b in show.bridges if b.name == "br-tun")  # type: ignore[union-attr]
    ofctl = state.ovs.flows_of("br-tun").ports  # type: ignore[union-attr]
    macs = {p.name: p.addr for p in ofctl.ports}  # type: ignore[union-attr]
    tunnels = [p for p in tun.ports if p.interfaces[0].type not in ("patch", "internal")]
    assert len(tunnels) >= len(types)
    for port in tunnels:
        iface = port.interfaces[0]
        remote = iface.option("remote_ip")
        assert remote is not None
        kind = port.name.split("-")[0]
        assert iface == ovs_tun._tunnel_interface(generation == "modern", ip.version == 6, kind, port.name,
                                                  tunnel_ip, remote)
        if generation == "modern" and kind == "gre":
            assert iface.type == ("ip6gre" if ip.version == 6 else "gre")
        assert macs[port.name] == _device_mac_plain(me.name, "br-tun", port.name)


def test_options_mixed_on_one_snapshot(cloud: CloudSnapshot) -> None:
    """The agent's options are in the key: a host planned with the ARP responder or another cookie
    on a snapshot whose hosts were all planned without (and the reverse) gets its own flows."""
    hosts = [h.name for h in cloud.deployment.hosts]
    for first, then in (({}, {"arp_responder": True}), ({"arp_responder": True}, {}), ({}, {"cookie": 0x77})):
        forget_everything()
        snapshot = fresh(cloud)
        for h in hosts:
            plan_ovs(snapshot, h, **first)  # type: ignore[arg-type]
        got = plan_ovs(snapshot, hosts[5], **then)  # type: ignore[arg-type]
        forget_everything()
        assert got == plan_ovs(fresh(cloud), hosts[5], **then)  # type: ignore[arg-type]
