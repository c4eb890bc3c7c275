"""Issue 13, part 2: every verdict and step names the OpenStack objects, never a planner's function."""

from __future__ import annotations

from neutrino.answers.objects import Names, describe_rule
from neutrino.deploy import open_cloud
from tests.answers.conftest import Cli


def _ids(state_cloud: Names) -> dict[str, str]:
    snap = state_cloud.cloud
    return {"sg": snap.security_groups[0].id, "server": snap.servers[0].id,
            "router": snap.routers[0].id, "port": snap.port(snap.servers[0].port_ids[0]).id}


def test_a_security_group_drop_names_the_group_the_port_and_the_instance(cli000: Cli, seed000) -> None:
    names = Names(open_cloud(seed000).snapshot())
    ids = _ids(names)
    rc, out, _ = cli000("trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "23")
    assert rc == 1
    verdict = out.rstrip().splitlines()[-1]
    assert "via plan_" not in out and "plan_firewall" not in out
    want = f"no rule of security group 'default' ({ids['sg']}) allows ingress to port {ids['port']}"
    assert want in verdict
    assert f"of instance 'cirros' ({ids['server']}) on network 'private'" in verdict
    rc, data = cli000.json("trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "23")
    assert data["verdict"]["obj"].startswith("no rule of security group 'default'")
    router_hop = next(h for h in data["hops"] if h["element"].startswith("qrouter-"))
    assert router_hop["obj"] == f"router 'router1' ({ids['router']})"


def test_the_rule_that_allowed_the_packet_is_named(cli000: Cli, seed000) -> None:
    names = Names(open_cloud(seed000).snapshot())
    rule22 = next(r for g in names.cloud.security_groups for r in g.rules if r.port_range_min == 22)
    rc, data = cli000.json("trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22")
    assert rc == 0
    objs = [st["obj"] for h in data["hops"] for st in h["steps"] if st["obj"]]
    assert f"allowed by security group 'default' ({rule22.security_group_id}) rule {rule22.id}: " \
           f"ingress IPv4 tcp 22 from any address" in objs
    rc, out, _ = cli000("trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22")
    assert f"rule {rule22.id}: ingress IPv4 tcp 22 from any address" in out  # in the summary too


def test_egress_is_named_by_the_default_egress_rule(cli000: Cli) -> None:
    rc, out, _ = cli000("trace", "cirros", "8.8.8.8")
    assert rc == 0
    first = out.splitlines()[0]
    assert "{port " in first and "of instance 'cirros'" in first
    assert "egress IPv4 any protocol to any address" in first


def test_seed001_floating_ip_blocked_by_its_group(cli001: Cli) -> None:
    rc, out, _ = cli001("trace", "outside", "192.168.100.41")
    assert rc == 1
    assert "no rule of security group 'bare'" in out and "of instance 'vm1'" in out
    assert "sg-fallback via" not in out


def test_origin_strings_become_names(seed000) -> None:
    names = Names(open_cloud(seed000).snapshot())
    snap = names.cloud
    fip = snap.floating_ips[0]
    assert names.describe(f"floatingip {fip.id} via plan_l3") == \
        f"floating IP 172.24.4.228 -> 10.1.0.2 ({fip.id})"
    net = next(n for n in snap.networks if n.name == "private")
    assert names.describe(f"dhcp checksum for network {net.id} via plan_dhcp").startswith(
        f"dhcp checksum for network 'private' ({net.id}) subnet 'private-subnet' 10.1.0.0/24")
    assert names.describe("sg-fallback via plan_firewall") == \
        "no security-group rule matched (the fallback drop)"
    icmp = next(r for g in snap.security_groups for r in g.rules if r.protocol == "icmp")
    assert describe_rule(icmp) == "ingress IPv4 icmp from any address"


def test_flows_name_their_network(cli000: Cli, seed000) -> None:
    net = next(n for n in open_cloud(seed000).snapshot().networks if n.name == "private")
    rc, data = cli000.json("trace", "cirros", "8.8.8.8")
    assert rc == 0
    flow = next(st for h in data["hops"] if h["host"] == "compute" and h["element"] == "br-tun"
                for st in h["steps"] if st["kind"] == "flow")
    assert flow["text"] == "priority=4,in_port=1,dl_vlan=1 actions=set_tunnel:0x2,NORMAL"
    assert flow["obj"].startswith(f"network 'private' ({net.id}) subnet 'private-subnet' 10.1.0.0/24")
    base = next(st for h in data["hops"] if h["element"] == "br-int"
                for st in h["steps"] if st["kind"] == "flow")
    assert base["obj"].startswith("the agent's own plumbing")
