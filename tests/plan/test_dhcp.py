"""plan_dhcp against seed 000 (Grizzly dnsmasq and its ns- device) and reference §8 (modern).
The clouds come from test_firewall's builders."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

from neutrino.host.dnsmasq import format_ps_line
from neutrino.host.iproute_link import format_ip_addr
from neutrino.host.iptables import TableName, format_save
from neutrino.host.state import HostState, NamespaceState
from neutrino.plan.dhcp import plan_dhcp
from neutrino.plan.generation import Generation
from neutrino.services.snapshot import HostRoute
from seeds import excerpt, squash
from tests.plan.test_firewall import (
    R_DHCP,
    R_NET,
    R_QR,
    R_SUBNET,
    REFERENCE,
    S0_DHCP,
    S0_NET,
    S0_SUBNET,
    planned_chain,
    port,
    reference,
    seed000,
)


def dhcp_ns(frag: HostState, network: str) -> NamespaceState:
    ns = frag.namespace(f"qdhcp-{network}")
    assert ns is not None
    return ns


def file_text(frag: HostState, path: str) -> str:
    f = frag.file(path)
    assert f is not None, path
    return f.text


# --- seed 000, Grizzly ---------------------------------------------------------------------------


def test_seed000_dnsmasq_command_line() -> None:
    """seed 000, ``ps -fe | grep 88b1609c-…``: dnsmasq's argv exactly (the nobody process)."""
    seed = excerpt(0, "nobody   23195     1")
    frag = plan_dhcp(seed000(), "network", Generation.GRIZZLY)
    (proc,) = frag.processes or ()
    assert proc.user == "nobody" and proc.pid == 0
    assert " ".join(proc.argv) == seed.split(" 00:00:00 ", 1)[1].strip()
    assert format_ps_line(proc).endswith(seed.split(" 00:00:00 ", 1)[1].strip())


def test_seed000_ns_device() -> None:
    """seed 000, ``ip netns exec qdhcp-… ip addr``: ns-f14c598d-98 with the DHCP port's MAC and IP
    (the kernel's index and the IPv6 link-local lines aside); its tap end stays in the root namespace."""
    seed = excerpt(0, "71: ns-f14c598d-98:", "inet 10.1.0.3/24 brd 10.1.0.255 scope global ns-f14c598d-98")
    frag = plan_dhcp(seed000(), "network", Generation.GRIZZLY)
    got = "".join(line + "\n" for line in format_ip_addr(dhcp_ns(frag, S0_NET).links or ()).splitlines()
                  if "valid_lft" not in line)
    assert squash(re.sub(r"^\d+: ", "", got)) == squash(re.sub(r"^\d+: ", "", seed))
    root = frag.namespace("")
    assert root is not None and [lk.name for lk in root.links or ()] == ["tapf14c598d-98"]


def test_seed000_files_and_no_iptables() -> None:
    frag = plan_dhcp(seed000(), "network", Generation.GRIZZLY)
    base = f"/var/lib/quantum/dhcp/{S0_NET}"
    assert file_text(frag, f"{base}/host") == (
        "fa:16:3e:03:00:e7,host-10-1-0-2.openstacklocal,10.1.0.2\n"
        "fa:16:3e:10:2f:03,host-10-1-0-3.openstacklocal,10.1.0.3\n"
        "fa:16:3e:ea:64:6e,host-10-1-0-1.openstacklocal,10.1.0.1\n")
    assert file_text(frag, f"{base}/opts") == "tag:tag0,option:router,10.1.0.1\n"
    assert frag.file(f"{base}/addn_hosts") is None
    assert dhcp_ns(frag, S0_NET).iptables is None
    assert plan_dhcp(seed000(), "compute", Generation.GRIZZLY).namespaces == ()


# --- reference §8, modern -------------------------------------------------------------------------


def test_reference_8_2_command_line() -> None:
    text = REFERENCE.read_text()
    block = text[text.index("```", text.index("### 8.2")) + 3:]
    block = block[:block.index("```")]
    expected = " ".join(block.split()).replace("<net>", R_NET)
    (proc,) = plan_dhcp(reference(), "network").processes or ()
    assert " ".join(proc.argv) == expected


def test_reference_8_3_files() -> None:
    """§8.3's examples: the host and addn_hosts lines of P, and the whole opts file (not isolated:
    the router port holds the gateway, so the metadata route goes via 10.0.0.1)."""
    frag = plan_dhcp(reference(), "network")
    base = f"/var/lib/neutron/dhcp/{R_NET}"
    assert "fa:16:3e:11:22:33,host-10-0-0-5.openstacklocal.,10.0.0.5\n" in file_text(frag, f"{base}/host")
    assert "10.0.0.5\thost-10-0-0-5.openstacklocal. host-10-0-0-5\n" in file_text(frag, f"{base}/addn_hosts")
    host = file_text(frag, f"{base}/host")
    assert "10.0.0.2" not in host and "10.0.0.1\n" in host  # DHCP port left out, router port in
    text = REFERENCE.read_text()
    start = text.index("```", text.index("**The opts file for the example**")) + 3
    expected = text[start:text.index("```", start)].strip() + "\n"
    assert file_text(frag, f"{base}/opts") == expected


def test_reference_8_3_isolated_example() -> None:
    """§8.3 "Isolated example": isolated metadata on, no router port, host route 192.168.50.0/24."""
    cloud = reference()
    cloud = replace(cloud, ports=tuple(p for p in cloud.ports if p.id != R_QR), subnets=tuple(
        replace(s, host_routes=(HostRoute(ipaddress.ip_network("192.168.50.0/24"),
                                          ipaddress.ip_address("10.0.0.254")),)) if s.id == R_SUBNET else s
        for s in cloud.subnets))
    frag = plan_dhcp(cloud, "network", isolated_metadata=True)
    opts = file_text(frag, f"/var/lib/neutron/dhcp/{R_NET}/opts")
    assert (f"tag:subnet-{R_SUBNET},option:classless-static-route,192.168.50.0/24,10.0.0.254,"
            "169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1\n") in opts
    tap = dhcp_ns(frag, R_NET).links[0]  # type: ignore[index]
    assert [str(a.interface) for a in tap.addresses] == ["10.0.0.2/24", "169.254.169.254/32"]


def test_reference_8_1_namespace() -> None:
    frag = plan_dhcp(reference(), "network")
    ns = dhcp_ns(frag, R_NET)
    (tap,) = ns.links or ()
    assert (tap.name, tap.mac, tap.mtu) == ("tapd1c2b3a4-00", "fa:16:3e:00:00:02", 1450)
    assert [str(a.interface) for a in tap.addresses] == ["10.0.0.2/24"]
    assert [str(r.via) for r in ns.routes or () if r.dst is None] == ["10.0.0.1"]
    assert ns.iptables is not None
    assert planned_chain(ns.iptables.table(TableName.MANGLE), "neutron-dhcp-age-POSTROUTING") == [
        "-A neutron-dhcp-age-POSTROUTING -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill"]
    assert [(s.key, s.value) for s in ns.sysctls or ()] == [("net.ipv4.ip_nonlocal_bind", "1")]
    assert frag.namespace("") is None  # OVS internal port: nothing left in the root namespace


# --- changes and determinism ------------------------------------------------------------------------


def test_deleting_a_port_changes_only_the_host_files() -> None:
    extra = port("99999999-0000-4000-8000-000000000009", S0_NET, "fa:16:3e:99:99:99", ((S0_SUBNET, "10.1.0.9"),),
                 "compute:nova", "compute")
    for gen in Generation:
        with_port = plan_dhcp(seed000(ports=(extra,)), "network", gen)
        without = plan_dhcp(seed000(), "network", gen)
        assert with_port.namespaces == without.namespaces and with_port.processes == without.processes
        changed = {f.path for f in with_port.files} ^ {f.path for f in without.files} | {
            a.path for a, b in zip(with_port.files, without.files, strict=True) if a != b}
        assert all(p.endswith(("/host", "/addn_hosts")) for p in changed) and changed
        assert plan_dhcp(seed000(), "network", gen) == without


def test_deterministic_and_origins() -> None:
    for gen in Generation:
        assert plan_dhcp(reference(), "network", gen) == plan_dhcp(reference(), "network", gen)
    frag = plan_dhcp(reference(), "network")
    ns = dhcp_ns(frag, R_NET)
    assert ns.iptables is not None
    assert "CHECKSUM" in format_save(ns.iptables)
    kinds = {o.kind for o in frag.origins}
    assert {"namespace", "link", "process", "file", "chain"} <= kinds
    assert any(R_DHCP in o.obj for o in frag.origins) and S0_DHCP
