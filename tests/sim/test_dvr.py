"""Distributed routers simulated (issue 18) on examples/dvr.yaml: east-west traffic routed by the
source compute's own copy of the router (br-tun swapping the qr- MAC for the host's DVR MAC, the
far br-int swapping it back), a floating IP reached from outside through the compute's fip-
namespace (proxy ARP on fg-, fpr-/rfp-, DNAT in qrouter-), and SNAT for the instance without one
through the network node's snat- namespace."""

from __future__ import annotations

import pytest

from neutrino.plan import dvr
from neutrino.sim.cloud import world_of
from neutrino.sim.ipstack import Action, IpStack
from neutrino.sim.packets import arp_request, ip, mac
from neutrino.sim.trace import StepKind
from neutrino.sim.world import World
from tests.plan.test_dvr import SCENARIO


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from neutrino.deploy import bring_up

    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(tmp_path_factory.mktemp("simdvr")))
    try:
        result = bring_up(SCENARIO)
    finally:
        mp.undo()
    w = world_of(result.cloud, result.hosts)
    w.leases = w.boot()  # type: ignore[attr-defined]
    return w


def _where(trace) -> list[str]:  # noqa: ANN001
    return [f"{h.host} {h.element}" for h in trace.hops]


def _flows(trace, host: str, element: str) -> list[str]:  # noqa: ANN001
    return [s.text for h in trace.hops if h.host == host and h.element == element
            for s in h.steps if s.kind is StepKind.FLOW]


def _text(trace) -> str:  # noqa: ANN001
    return "\n".join(f"{s.text} {s.detail}" for h in trace.hops for s in h.steps)


def test_instances_get_their_leases(world: World) -> None:
    assert world.leases == {"app1": "10.0.1.11/24", "db1": "10.0.2.12/24"}  # type: ignore[attr-defined]


def test_east_west_is_routed_on_the_source_compute(world: World) -> None:
    t = world.probe("app1", "10.0.2.12", proto="icmp")
    assert t.delivered, t.verdict
    where = _where(t)
    qrouters = [w for w in where if " qrouter-" in w]
    assert qrouters and all(w.startswith("compute01 ") for w in qrouters)  # not the network node
    assert not any(w.startswith("network ") for w in where)
    me, c1 = dvr.dvr_mac("compute01"), dvr.dvr_mac("compute01")
    # compute01's br-tun gives the routed frame compute01's DVR MAC ...
    assert any(f.startswith("table=1,priority=1,") and f"mod_dl_src:{me}" in f
               for f in _flows(t, "compute01", "br-tun"))
    # ... compute02's br-tun does not learn it, and its br-int puts the qr- MAC back
    assert any(f.startswith(f"table=9,priority=1,dl_src={c1}") for f in _flows(t, "compute02", "br-tun"))
    assert any(f.startswith("table=1,priority=20,") and "mod_dl_src:fa:16:3e:" in f
               for f in _flows(t, "compute02", "br-int"))
    # and the reply is routed on compute02, its own source
    assert t.reply is not None and t.reply.delivered
    back = [w for w in _where(t.reply) if " qrouter-" in w]
    assert back and all(w.startswith("compute02 ") for w in back)


def test_floating_ip_reaches_the_instance_through_the_computes_fip_namespace(world: World) -> None:
    t = world.probe("outside", "172.24.4.50", proto="icmp")
    assert t.delivered, t.verdict
    where = _where(t)
    assert any(w.startswith("compute01 fip-") for w in where)
    assert any(w.startswith("compute01 qrouter-") for w in where)
    assert not any(w.startswith("network ") for w in where)  # no central router on the way
    text = _text(t)
    assert "DNAT 172.24.4.50 -> 10.0.1.11" in text
    assert "who-has 169.254." not in text  # the rfp-/fpr- pair's permanent ARP entries
    fip_hop = next(h for h in t.hops if h.element.startswith("fip-"))
    assert fip_hop.device.startswith("fg-")
    assert t.reply is not None and t.reply.delivered
    assert any(h.element.startswith("fip-") and h.device.startswith("fpr-") for h in t.reply.hops)


def test_fg_answers_arp_for_the_floating_ip_by_proxy(world: World) -> None:
    host = world.topo.hosts["compute01"]
    fip_ns = next(ns for ns in host.namespaces if ns.name.startswith("fip-"))
    stack = IpStack(fip_ns)
    fg = next(lk.name for lk in fip_ns.links or () if lk.name.startswith("fg-"))
    asker = mac("02:00:5e:00:00:01")
    d = stack.ingress(fg, arp_request(asker, ip("172.24.4.1"), ip("172.24.4.50")))
    assert d.action is Action.ARP_REPLY and "proxy_arp on fg-" in d.steps[-1].detail
    # an address the namespace does not route elsewhere gets no answer
    assert stack.ingress(fg, arp_request(asker, ip("172.24.4.1"), ip("172.24.4.99"))).action is not Action.ARP_REPLY


def test_the_instance_with_a_floating_ip_leaves_from_its_compute(world: World) -> None:
    t = world.probe("app1", "8.8.8.8", proto="icmp")
    assert t.delivered, t.verdict
    assert "SNAT 10.0.1.11 -> 172.24.4.50" in _text(t)
    assert "lookup 16" in _text(t)
    assert not any(w.startswith("network ") for w in _where(t))


def test_the_instance_without_a_floating_ip_is_snated_on_the_network_node(world: World) -> None:
    t = world.probe("db1", "8.8.8.8", proto="icmp")
    assert t.delivered, t.verdict
    where = _where(t)
    assert any(w.startswith("compute02 qrouter-") for w in where)
    snat = [h for h in t.hops if h.host == "network" and h.element.startswith("snat-")]
    assert snat and snat[0].device.startswith("sg-")
    text = _text(t)
    assert "SNAT 10.0.2.12 -> 172.24.4.10" in text
    assert f"table=9,priority=1,dl_src={dvr.dvr_mac('compute02')}" in text
    assert t.reply is not None and t.reply.delivered
