"""plan_nova_network against seed 004 (FlatDHCP single-host: the controller's and compute-1's
``route -n``, ``brctl show``, dnsmasq ``ps`` line and hosts file, ``iptables -S`` filter and nat)
and seed 003 (VlanManager multi-host: per-host gateways, ``ip route`` lines, on-demand bridges,
routing_source_ip SNAT, floating IPs). The clouds are built here as the seeds describe them."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace

import pytest

from neutrino.host.bridge import format_brctl_show, restore_brctl_breaks
from neutrino.host.dnsmasq import format_ps_line, parse_hosts_file, parse_ps_line
from neutrino.host.iproute import restore_route_n_breaks
from neutrino.host.iproute_route import format_ip_route
from neutrino.host.iptables import TableName, format_rules, split_run_together
from neutrino.host.nettools import format_route_n
from neutrino.host.state import HostState, NamespaceState
from neutrino.plan.compose import merge
from neutrino.plan.nova_network import (
    HostFacts,
    NovaOptions,
    dhcp_servers,
    hostname,
    instance_numbers,
    plan_nova_network,
    tap_mac,
)
from neutrino.scenarios.model import Deployment, Host, Mechanism, NovaManager, NovaNetworkConfig
from neutrino.services.snapshot import (
    CloudSnapshot,
    FixedIP,
    FloatingIP,
    Network,
    Port,
    SecurityGroup,
    SecurityGroupRule,
    Segment,
    Server,
    Subnet,
)
from neutrino.views.derive import route_n_of
from seeds import between, excerpt, squash

V4 = ipaddress.IPv4Address
NB = "\u00a0"


def nb(s: str) -> str:
    """Seed 004's page carries non-breaking spaces inside its captures."""
    return s.replace(" ", NB)


# --- cloud builders ------------------------------------------------------------------------------------

def network(ident: str, name: str, vlan: int | None) -> Network:
    seg = Segment("vlan" if vlan else "flat", "physnet1", vlan)
    return Network(ident, name, "p-" + name, True, "ACTIVE", False, False, 1500, True, seg, (f"sub-{ident}",))


def subnet(net: str, cidr: str, gateway: str) -> Subnet:
    return Subnet(f"sub-{net}", f"sub-{net}", "p", net, 4, ipaddress.ip_network(cidr), ipaddress.ip_address(gateway),
                  (), (), (), True, None, None)


def server_and_port(name: str, net: str, mac: str, ip: str, host: str, *, sgs: tuple[str, ...] = ("sg",)
                    ) -> tuple[Server, Port]:
    sid, pid = f"srv-{name}", f"port-{name}"
    port = Port(pid, "", "p", net, mac, True, "ACTIVE", sid, "compute:nova",
                (FixedIP(f"sub-{net}", ipaddress.ip_address(ip)),), sgs, True, (), host, "bridge")
    return Server(sid, name, "p", host, "ACTIVE", "1", "cirros", (pid,)), port


NOVA_SG = SecurityGroup("sg", "default", "p", True, True, ())  # nova's default group: no rules


def cloud(deployment: Deployment, nets: tuple[tuple[Network, Subnet], ...],
          vms: tuple[tuple[Server, Port], ...], *, fips: tuple[FloatingIP, ...] = (),
          groups: tuple[SecurityGroup, ...] = (NOVA_SG,)) -> CloudSnapshot:
    return CloudSnapshot(deployment, networks=tuple(n for n, _ in nets), subnets=tuple(s for _, s in nets),
                         ports=tuple(p for _, p in vms), servers=tuple(s for s, _ in vms), floating_ips=fips,
                         security_groups=groups)


# seed 004: FlatDHCP, single-host, controller-1 + compute-1 + compute-2, eth1 management, eth2 VM network
S4_DEPLOYMENT = Deployment(
    Mechanism.NOVA_NETWORK,
    nova_network=NovaNetworkConfig(NovaManager.FLAT_DHCP, False, flat_interface="eth2", public_interface="eth1"),
    hosts=(Host("controller-1", frozenset({"controller"}), V4("192.168.56.200"),
                interfaces=(("eth1", "192.168.56.200/24"),)),
           Host("compute-1", frozenset({"compute"}), V4("192.168.56.202"), interfaces=(("eth1", "192.168.56.202/24"),)),
           Host("compute-2", frozenset({"compute"}), V4("192.168.56.203"), interfaces=(("eth1", "192.168.56.203/24"),))))
S4_NET = (network("novanetwork", "novanetwork", None), subnet("novanetwork", "10.0.0.0/24", "10.0.0.1"))
S4_CIRROS = server_and_port("cirros", "novanetwork", "fa:16:3e:2c:e8:ec", "10.0.0.2", "compute-1")
GW = V4("192.168.56.101")
S4_OPTIONS = NovaOptions(instance_offset=8, hosts=(  # instance-00000009; the NICs' MACs from seed 004's ip a
    HostFacts("controller-1", (("eth1", "08:00:27:9d:c4:b0"), ("eth2", "08:00:27:8f:87:fa")), GW),
    HostFacts("compute-1", (("eth1", "08:00:27:ee:49:bd"), ("eth2", "08:00:27:15:85:17")), GW),
    HostFacts("compute-2", (), GW)))


def seed004(*, with_vm: bool = True) -> CloudSnapshot:
    return cloud(S4_DEPLOYMENT, (S4_NET,), (S4_CIRROS,) if with_vm else ())


def plan4(host: str, *, with_vm: bool = True) -> HostState:
    return plan_nova_network(seed004(with_vm=with_vm), host, options=S4_OPTIONS)


def root(state: HostState) -> NamespaceState:
    ns = state.namespace("")
    assert ns is not None
    return ns


def s_dump(state: HostState, table: TableName) -> str:
    ruleset = root(state).iptables
    assert ruleset is not None
    return format_rules(ruleset.table(table))


# --- seed 004 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("with_vm", [False, True], ids=["no-vms", "vm-created"])
def test_004_controller_route_n(with_vm: bool) -> None:
    """004 "Routes: openstack@controller-1:~$ route -n" (the VM changes nothing on the controller)."""
    seed = restore_route_n_breaks(between(4, nb("Kernel IP routing table"), "\n"))
    planned = format_route_n(route_n_of(root(plan4("controller-1", with_vm=with_vm)).routes or ()))
    assert squash(planned) == squash(seed)


def test_004_compute_route_n_before_vms() -> None:
    """004 "Compute node, no VMs" route -n, without the virbr0 row (libvirt's, not OpenStack's)."""
    seed = restore_route_n_breaks(between(4, nb("Kernel IP routing table"), "\n", occurrence=1))
    seed = "\n".join(ln for ln in seed.splitlines() if not ln.endswith("virbr0"))
    planned = format_route_n(route_n_of(root(plan4("compute-1", with_vm=False)).routes or ()))
    assert squash(planned) == squash(seed)


def test_004_controller_brctl_show() -> None:
    """004: ``br100 8000.0800278f87fa no eth2`` (the bridge id is eth2's MAC)."""
    seed = restore_brctl_breaks(between(4, nb("bridge name"), "\n"))
    assert squash(format_brctl_show(plan4("controller-1").linux_bridges or ())) == squash(seed)


def test_004_controller_dnsmasq_command() -> None:
    """004 "Dnsmasq running": the ``ps aux`` line's command."""
    seed = parse_ps_line(between(4, nb("nobody    2729"), nb("root      2730")))
    (proc,) = plan4("controller-1").processes or ()
    assert proc.argv == seed.argv and proc.user == seed.user == "nobody"
    assert format_ps_line(proc).endswith(" " + " ".join(seed.argv))


@pytest.mark.parametrize("with_vm", [False, True], ids=["empty", "cirros"])
def test_004_hosts_file(with_vm: bool) -> None:
    """004: ``cat /var/lib/nova/networks/nova-br100.conf`` is empty, then holds the cirros lease."""
    f = plan4("controller-1", with_vm=with_vm).file("/var/lib/nova/networks/nova-br100.conf")
    assert f is not None
    if not with_vm:
        assert f.text == ""
        return
    seed = between(4, "fa:16:3e:2c:e8:ec,cirros", "\n")
    assert f.text.strip() == seed.strip() == "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2"
    assert parse_hosts_file(f.text)[0].hostname == "cirros.novalocal"


@pytest.mark.parametrize(("occurrence", "table"), [(0, TableName.FILTER), (1, TableName.NAT)], ids=["filter", "nat"])
def test_004_controller_iptables(occurrence: int, table: TableName) -> None:
    """004 ``iptables -t filter -S`` and ``iptables -t nat -S`` on the controller, exactly."""
    seed = split_run_together(between(4, "-S-P", "\n", occurrence=occurrence)[2:])
    for with_vm in (False, True):  # "All other things didn't change (iptables, routes etc.)"
        assert s_dump(plan4("controller-1", with_vm=with_vm), table).splitlines() == seed.splitlines()


def test_004_compute_iptables() -> None:
    """004 "Some more changes happened to iptables" on compute-1, virbr0's lines aside."""
    seed = split_run_together(between(4, "-S-P", "\n", occurrence=2)[2:])
    lines = [ln for ln in seed.splitlines() if not ln.startswith("...")]
    assert s_dump(plan4("compute-1"), TableName.FILTER).splitlines() == lines


def test_004_compute_ping_path() -> None:
    """004 "Ping VM from controller": the rules the echo request passes on compute-1."""
    seed = split_run_together(between(4, nb("-A FORWARD -j nova-filter-top-A nova-filter-top"), "\n"))
    planned = s_dump(plan4("compute-1"), TableName.FILTER).splitlines()
    assert all(line in planned for line in seed.splitlines())


def test_004_compute_devices() -> None:
    """004 "Compute node, VM created": vnet0 (fe:16:3e:2c:e8:ec) and eth2 in br100, no address on it."""
    ns = root(plan4("compute-1"))
    vnet0, br100, eth2 = ns.link("vnet0"), ns.link("br100"), ns.link("eth2")
    assert vnet0 is not None and br100 is not None and eth2 is not None
    assert (vnet0.mac, vnet0.master, vnet0.qlen) == ("fe:16:3e:2c:e8:ec", "br100", 500)
    assert br100.addresses == () and eth2.master == "br100" and eth2.promisc
    (bridge,) = plan4("compute-1").linux_bridges or ()
    assert (bridge.bridge_id, bridge.interfaces) == ("8000.080027158517", ("eth2", "vnet0"))
    assert plan4("compute-1").processes is None and ns.sysctls is None  # no nova-network here
    assert "10.0.0.0/24" not in format_ip_route(ns.routes or ())


def test_004_controller_devices() -> None:
    ns = root(plan4("controller-1"))
    br100, eth2, eth1 = ns.link("br100"), ns.link("eth2"), ns.link("eth1")
    assert br100 is not None and eth2 is not None and eth1 is not None
    assert [str(a.interface) for a in br100.addresses] == ["10.0.0.1/24"]
    assert str(br100.addresses[0].brd) == "10.0.0.255" and br100.mac == "08:00:27:8f:87:fa"
    assert eth2.master == "br100" and eth2.promisc and eth2.addresses == ()
    assert [str(a.interface) for a in eth1.addresses] == ["192.168.56.200/24"]
    assert [(s.key, s.value) for s in ns.sysctls or ()] == [("net.ipv4.ip_forward", "1")]


@pytest.mark.parametrize("host", ["compute-1", "compute-2"])
def test_004_compute_without_vms_has_no_br100(host: str) -> None:
    """004: "It doesn't have a bridge interface yet ... no VMs have been started" (compute-2 never has one)."""
    for with_vm in (False, True):
        state = plan4(host, with_vm=with_vm)
        if host == "compute-1" and with_vm:
            continue
        ns = root(state)
        assert ns.link("br100") is None and not state.linux_bridges and ns.iptables is None
        assert [lk.name for lk in ns.links or ()] == ["eth1", "eth2"]


def test_004_instance_numbering() -> None:
    assert instance_numbers(seed004(), 8) == {"srv-cirros": 9}
    assert tap_mac("FA:16:3E:2C:E8:EC") == "fe:16:3e:2c:e8:ec"
    assert hostname(replace(S4_CIRROS[0], name="My VM_1")) == "my-vm-1"


def test_004_allow_same_net_traffic_off() -> None:
    """004 NOTE: with allow_same_net_traffic=false only the DHCP server's traffic is let in."""
    state = plan_nova_network(seed004(), "compute-1", options=replace(S4_OPTIONS, allow_same_net_traffic=False))
    dump = s_dump(state, TableName.FILTER)
    assert "-A nova-compute-inst-9 -s 10.0.0.0/24 -j ACCEPT" not in dump
    assert "-A nova-compute-inst-9 -s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT" in dump


# --- seed 003 -------------------------------------------------------------------------------------------

T1, T2 = "tenant1-net", "tenant2-net"
S3_DEPLOYMENT = Deployment(
    Mechanism.NOVA_NETWORK,
    nova_network=NovaNetworkConfig(NovaManager.VLAN, True, vlan_start=100, vlan_interface="eth0",
                                   public_interface="eth1"),
    hosts=(Host("compute-1", frozenset({"compute"}), V4("91.207.15.105"),
                interfaces=(("eth1", "91.207.15.105/24"),)),
           Host("compute-2", frozenset({"compute"}), V4("91.207.15.106"),
                interfaces=(("eth1", "91.207.15.106/24"),))))  # the seed gives only the left one's
S3_NETS = ((network(T1, "tenant1", 100), subnet(T1, "10.0.0.0/24", "10.0.0.1")),
           (network(T2, "tenant2", 102), subnet(T2, "10.1.0.0/24", "10.1.0.1")))
# the seed's diagram: VM_1..VM_3 on the left compute, VM_4..VM_6 on the right; VM_1 10.0.0.3,
# VM_4 10.0.0.6, VM_6 10.1.0.4 as the seed gives them, the others the next free addresses
S3_VMS = (
    server_and_port("VM_1", T1, "fa:16:3e:00:00:01", "10.0.0.3", "compute-1"),
    server_and_port("VM_2", T1, "fa:16:3e:00:00:02", "10.0.0.4", "compute-1"),
    server_and_port("VM_3", T2, "fa:16:3e:00:00:03", "10.1.0.3", "compute-1"),
    server_and_port("VM_4", T1, "fa:16:3e:00:00:04", "10.0.0.6", "compute-2"),
    server_and_port("VM_5", T1, "fa:16:3e:00:00:05", "10.0.0.7", "compute-2"),
    server_and_port("VM_6", T2, "fa:16:3e:00:00:06", "10.1.0.4", "compute-2"),
)


def fip(ident: str, address: str, vm: str, fixed: str) -> FloatingIP:
    return FloatingIP(ident, "p", ipaddress.ip_address(address), "public", f"fport-{ident}", f"port-{vm}",
                      ipaddress.ip_address(fixed), None, "ACTIVE")


S3_FIPS = (fip("f1", "91.208.23.11", "VM_1", "10.0.0.3"), fip("f6", "91.208.23.16", "VM_6", "10.1.0.4"))


def seed003(*, without: tuple[str, ...] = (), fips: bool = True,
            groups: tuple[SecurityGroup, ...] = (NOVA_SG,)) -> CloudSnapshot:
    vms = tuple(vm for vm in S3_VMS if vm[0].name not in without)
    live = {p.id for _, p in vms}
    return cloud(S3_DEPLOYMENT, S3_NETS, vms, fips=tuple(f for f in S3_FIPS if f.port_id in live) if fips else (),
                 groups=groups)


def bridge_addresses(state: HostState, bridge: str) -> list[str]:
    link = root(state).link(bridge)
    assert link is not None
    return [str(a.interface) for a in link.addresses]


def test_003_per_host_gateways() -> None:
    """003 Scenario 1: dnsmasq listens on 10.0.0.1 (left) and 10.0.0.5 (right); Scenario 6's
    default gateways of tenant2: 10.1.0.1 (br102, left) and 10.1.0.5 (right)."""
    assert dhcp_servers(seed003()) == {
        (T1, "compute-1"): V4("10.0.0.1"), (T1, "compute-2"): V4("10.0.0.5"),
        (T2, "compute-1"): V4("10.1.0.1"), (T2, "compute-2"): V4("10.1.0.5")}
    c1, c2 = plan_nova_network(seed003(), "compute-1"), plan_nova_network(seed003(), "compute-2")
    assert bridge_addresses(c1, "br100") == ["10.0.0.1/24"] and bridge_addresses(c2, "br100") == ["10.0.0.5/24"]
    assert bridge_addresses(c1, "br102") == ["10.1.0.1/24"] and bridge_addresses(c2, "br102") == ["10.1.0.5/24"]


@pytest.mark.parametrize(("host", "listen", "lease"), [
    ("compute-1", "10.0.0.1", "fa:16:3e:00:00:01,vm-1.novalocal,10.0.0.3"),
    ("compute-2", "10.0.0.5", "fa:16:3e:00:00:04,vm-4.novalocal,10.0.0.6")])
def test_003_dnsmasq_per_host(host: str, listen: str, lease: str) -> None:
    """003 Scenario 1: "The dnsmasq server listens on the address of br100 ("–listen-address 10.0.0.1").
    It also has a static lease configured for VM_1" (and 10.0.0.5 / VM_4 on the other host)."""
    assert f"listen-address {listen}" in excerpt(3, f"listen-address {listen}").replace("\u2013", "")
    state = plan_nova_network(seed003(), host)
    procs = {p.options.pid_file: p for p in state.processes or ()}
    br100 = procs["/var/lib/nova/networks/nova-br100.pid"]
    assert br100.options.listen_addresses == (ipaddress.ip_address(listen),)
    assert str(br100.options.dhcp_ranges[0].start) in ("10.0.0.3",)  # VlanManager: after the cloudpipe address
    f = state.file("/var/lib/nova/networks/nova-br100.conf")
    assert f is not None and lease in f.text.splitlines()
    others = {"compute-1": "vm-4", "compute-2": "vm-1"}[host]
    assert others not in f.text  # multi-host: only this host's instances


def test_003_routes() -> None:
    """003 Scenario 5 NOTE: "10.0.0.0/24 dev br100  proto kernel  scope link" and the br102 line."""
    text = format_ip_route(root(plan_nova_network(seed003(), "compute-1")).routes or ())
    lines = [ln.rstrip() for ln in text.splitlines()]
    for seed_line in (excerpt(3, "10.0.0.0/24 dev br100"), excerpt(3, "10.1.0.0/24 dev br102")):
        seed_line = seed_line.replace(NB, " ").strip()  # the page's spacing: two spaces, one non-breaking
        assert any(line.startswith(seed_line) for line in lines), seed_line
    assert "10.0.0.0/24 dev br100  proto kernel  scope link  src 10.0.0.1" in lines
    assert "10.1.0.0/24 dev br102  proto kernel  scope link  src 10.1.0.1" in lines


def test_003_vlan_devices() -> None:
    """003 Scenario 4: br100 holds vlan100 on eth0 (802.1Q tag 100), the VMs' vnets."""
    state = plan_nova_network(seed003(), "compute-1")
    ns = root(state)
    vlan100 = ns.link("vlan100")
    assert vlan100 is not None and (vlan100.peer, vlan100.master) == ("eth0", "br100")
    bridges = {b.name: b.interfaces for b in state.linux_bridges or ()}
    assert bridges == {"br100": ("vlan100", "vnet0", "vnet1"), "br102": ("vlan102", "vnet2")}
    assert [(s.key, s.value) for s in ns.sysctls or ()] == [("net.ipv4.ip_forward", "1")]


def test_003_snat_and_floating_ips() -> None:
    """003 Scenario 2's routing_source_ip SNAT and Scenario 7's floating IPs (secondary /32 on eth1)."""
    seed_snat = between(3, "nova-network-snat -s 10.0.0.0/24", " The setting")
    c1 = plan_nova_network(seed003(), "compute-1")
    nat = s_dump(c1, TableName.NAT).splitlines()
    assert "-A " + seed_snat in nat
    assert "-A nova-network-PREROUTING -d 91.208.23.11/32 -j DNAT --to-destination 10.0.0.3" in nat
    assert "-A nova-network-OUTPUT -d 91.208.23.11/32 -j DNAT --to-destination 10.0.0.3" in nat
    assert "-A nova-network-float-snat -s 10.0.0.3/32 -j SNAT --to-source 91.208.23.11" in nat
    eth1 = root(c1).link("eth1")
    assert eth1 is not None and [str(a.interface) for a in eth1.addresses] == ["91.207.15.105/24", "91.208.23.11/32"]
    c2nat = s_dump(plan_nova_network(seed003(), "compute-2"), TableName.NAT)
    assert "-A nova-network-PREROUTING -d 91.208.23.16/32 -j DNAT --to-destination 10.1.0.4" in c2nat
    assert "-A nova-network-snat -s 10.1.0.0/24 -j SNAT --to-source 91.207.15.106" in c2nat
    assert "91.208.23.11" not in c2nat


def test_003_networks_on_demand() -> None:
    """003 "But what about this one?": with no tenant2 instance on the left compute there is no
    br102 and no vlan102 there, and no route to 10.1.0.0/24."""
    state = plan_nova_network(seed003(without=("VM_3",)), "compute-1")
    ns = root(state)
    assert ns.link("br102") is None and ns.link("vlan102") is None
    assert "10.1.0.0/24" not in format_ip_route(ns.routes or ())
    assert [b.name for b in state.linux_bridges or ()] == ["br100"]
    assert "10.1.0.0/24" not in s_dump(state, TableName.NAT)


def test_003_security_group_rules() -> None:
    """003: ``nova secgroup-add-rule default tcp 1 65535 10.1.0.0/24`` lets tenant2's net in."""
    rule = SecurityGroupRule("r1", "sg", "ingress", "IPv4", "tcp", 1, 65535, ipaddress.ip_network("10.1.0.0/24"), None)
    icmp = SecurityGroupRule("r2", "sg", "ingress", "IPv4", "icmp", None, None, None, None)
    group = replace(NOVA_SG, rules=(rule, icmp))
    dump = s_dump(plan_nova_network(seed003(groups=(group,)), "compute-1"), TableName.FILTER).splitlines()
    chain = [ln for ln in dump if ln.startswith("-A nova-compute-inst-1 ")]
    assert chain[-3:] == ["-A nova-compute-inst-1 -s 10.1.0.0/24 -p tcp -m multiport --dports 1:65535 -j ACCEPT",
                          "-A nova-compute-inst-1 -p icmp -j ACCEPT",
                          "-A nova-compute-inst-1 -j nova-compute-sg-fallback"]


# --- properties ------------------------------------------------------------------------------------------

CASES = [("004", seed004, "controller-1"), ("004", seed004, "compute-1"), ("003", seed003, "compute-1"),
         ("003", seed003, "compute-2")]


@pytest.mark.parametrize(("seed", "make", "host"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_deterministic(seed: str, make: Callable[[], CloudSnapshot], host: str) -> None:
    opts = S4_OPTIONS if seed == "004" else NovaOptions()
    assert plan_nova_network(make(), host, options=opts) == plan_nova_network(make(), host, options=opts)


def test_004_deleting_the_server_equals_never_having_it() -> None:
    for host in ("controller-1", "compute-1", "compute-2"):
        deleted = cloud(S4_DEPLOYMENT, (S4_NET,), ())
        assert plan_nova_network(deleted, host, options=S4_OPTIONS) == plan4(host, with_vm=False)
    before, after = plan4("compute-1"), plan4("compute-1", with_vm=False)
    assert root(before).link("vnet0") is not None and root(after).link("vnet0") is None


def test_003_deleting_a_server_removes_vnet_chain_and_lease() -> None:
    """Deleting VM_2 drops a vnet (taps are renumbered per host), an inst chain and VM_2's lease, and
    the plan equals that of a cloud that never had VM_2. Instance numbers follow the snapshot's
    creation order, so VM_3 becomes ``inst-2`` (nova's ids never move: pass them in when that matters)."""
    full = seed003()
    vm2 = next(s for s in full.servers if s.name == "VM_2")
    assert instance_numbers(full)[vm2.id] == 2
    gone = replace(full, servers=tuple(s for s in full.servers if s.id != vm2.id),
                   ports=tuple(p for p in full.ports if p.device_id != vm2.id))
    before, after = plan_nova_network(full, "compute-1"), plan_nova_network(gone, "compute-1")
    assert root(before).link("vnet2") is not None and root(after).link("vnet2") is None
    f_before, f_after = before.file("/var/lib/nova/networks/nova-br100.conf"), after.file(
        "/var/lib/nova/networks/nova-br100.conf")
    assert f_before is not None and "vm-2" in f_before.text
    assert f_after is not None and "vm-2" not in f_after.text
    dump_after = s_dump(after, TableName.FILTER)
    assert "-d 10.0.0.4/32" not in dump_after and dump_after.count("-N nova-compute-inst-") == 2
    never = cloud(S3_DEPLOYMENT, S3_NETS, tuple(vm for vm in S3_VMS if vm[0].name != "VM_2"), fips=S3_FIPS)
    assert plan_nova_network(never, "compute-1") == after


def test_origins_and_merge() -> None:
    state = plan4("compute-1")
    kinds = {(o.kind, o.item) for o in state.origins}
    assert ("link", "vnet0") in kinds and ("chain", "filter/nova-compute-inst-9") in kinds
    assert ("bridge", "br100") in kinds
    assert merge([state]) == state


def test_flat_manager_has_no_dnsmasq() -> None:
    """FlatManager: bridges and taps, the address injected into the image, so no dnsmasq, no DHCP rules."""
    dep = replace(S4_DEPLOYMENT, nova_network=replace(S4_DEPLOYMENT.nova_network, manager=NovaManager.FLAT))
    snap = replace(seed004(), deployment=dep)
    controller = plan_nova_network(snap, "controller-1", options=S4_OPTIONS)
    compute = plan_nova_network(snap, "compute-1", options=S4_OPTIONS)
    assert controller.processes is None and controller.files == ()
    assert "--dport 67" not in s_dump(controller, TableName.FILTER)
    assert "--sport 67" not in s_dump(compute, TableName.FILTER)
    assert root(controller).link("br100") is None  # no instance there, nothing plugged
    br100 = root(compute).link("br100")
    assert br100 is not None and br100.addresses == ()
    assert "-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200" in s_dump(controller,
                                                                                              TableName.NAT)
