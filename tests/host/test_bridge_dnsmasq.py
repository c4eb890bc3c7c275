"""``brctl show`` and dnsmasq (``ps`` lines, options, hosts-file and opts-file lines)."""

from __future__ import annotations

import ipaddress

import pytest

from neutrino.errors import ParseError
from neutrino.host.bridge import (
    BridgeInfo,
    format_brctl_show,
    parse_brctl_show,
    parse_brctl_show_partial,
    restore_brctl_breaks,
)
from neutrino.host.dnsmasq import (
    DhcpRange,
    format_dhcp_range,
    format_host_line,
    format_opt_line,
    format_ps_line,
    parse_dhcp_range,
    parse_host_line,
    parse_opt_line,
    parse_ps,
    parse_ps_line,
)
from seeds import between, excerpt, squash


def nb(s: str) -> str:
    return s.replace(" ", "\xa0")


# --- brctl show ----------------------------------------------------------------------------

def test_seed_001_brctl_grep_line_with_interfaces_run_together() -> None:
    text = excerpt(1, "qbrbfda8db6-7b\t\t8000.5e414374148d")
    (b,) = parse_brctl_show(text, source="001")
    assert b == BridgeInfo("qbrbfda8db6-7b", "8000.5e414374148d", False, ("qvbbfda8db6-7b", "tapbfda8db6-7b"))
    assert squash(format_brctl_show([b], header=False)) == squash(text)


def test_seed_004_brctl_show_restored() -> None:
    text = restore_brctl_breaks(between(4, nb("bridge name"), "\n"))
    (b,) = parse_brctl_show(text, source="004")
    assert (b.name, b.bridge_id, b.interfaces) == ("br100", "8000.0800278f87fa", ("eth2",))
    assert squash(format_brctl_show([b])) == squash(text)


BRCTL_REAL = "bridge name\tbridge id\t\tSTP enabled\tinterfaces\nbr0\t\t8000.66171c2320ac\tno\t\tv2\n\t\t\t\t\t\t\tv3\n" \
             "br1\t\t8000.000000000000\tyes\t\t\n"


def test_brctl_show_continuation_lines_byte_for_byte() -> None:
    bridges = parse_brctl_show(BRCTL_REAL)
    assert format_brctl_show(bridges) == BRCTL_REAL
    assert bridges[0].interfaces == ("v2", "v3") and bridges[1].stp and bridges[1].interfaces == ()


def test_brctl_partial_skips_elisions() -> None:
    p = parse_brctl_show_partial("... (only virbr0) ...\nbr100\t\t8000.0800278f87fa\tno\t\teth2\n")
    assert [b.name for b in p.items] == ["br100"] and p.skipped[0].line == 1


# --- dnsmasq ps lines ----------------------------------------------------------------------

SEED_PS = {
    "000-ps-fe-nobody": lambda: excerpt(0, "nobody   23195     1"),
    "000-ps-fe-root": lambda: excerpt(0, "root     23196 23195"),
    "004-ps-aux-nobody": lambda: between(4, nb("nobody    2729"), nb("root      2730")) + "\n",
    "004-ps-aux-root": lambda: between(4, nb("root      2730"), "\n") + "\n",
}


@pytest.mark.parametrize("name", sorted(SEED_PS))
def test_seed_dnsmasq_ps_lines_round_trip(name: str) -> None:
    text = SEED_PS[name]()
    (p,) = parse_ps(text, source=name)
    assert squash(format_ps_line(p)) == squash(text)


def test_seed_000_quantum_dnsmasq_options() -> None:
    p = parse_ps_line(SEED_PS["000-ps-fe-root"]())
    assert (p.user, p.pid, p.ppid, p.c, p.stime, p.tty, p.time, p.style) == (
        "root", 23196, 23195, 0, "Oct26", "?", "00:00:00", "fe")
    o = p.options
    assert o.interface == "ns-f14c598d-98" and o.except_interface == "lo" and o.leasefile_ro
    assert o.pid_file == "/var/lib/quantum/dhcp/88b1609c-68e0-49ca-a658-f1edff54a264/pid"
    assert o.hostsfile is not None and o.hostsfile.endswith("/host")
    assert o.optsfile is not None and o.optsfile.endswith("/opts")
    assert o.conf_file == "" and o.domain == "openstacklocal"
    assert o.dhcp_ranges == (DhcpRange(ipaddress.ip_address("10.1.0.0"), tag="tag0", mode="static", lease="120s"),)
    assert [x.name for x in o.items][:4] == ["no-hosts", "no-resolv", "strict-order", "bind-interfaces"]


def test_seed_004_nova_dnsmasq_options() -> None:
    p = parse_ps_line(SEED_PS["004-ps-aux-nobody"]())
    assert (p.style, p.user, p.pid, p.vsz, p.rss, p.stat, p.stime, p.time) == (
        "aux", "nobody", 2729, 27532, 996, "S", "23:12", "0:00")
    assert p.program == "/usr/sbin/dnsmasq"
    o = p.options
    assert o.listen_addresses == (ipaddress.ip_address("10.0.0.1"),) and o.dhcp_lease_max == 256
    assert o.dhcp_ranges[0].start == ipaddress.ip_address("10.0.0.2") and o.dhcp_ranges[0].tag is None
    assert o.hostsfile == "/var/lib/nova/networks/nova-br100.conf" and o.dhcp_script == "/usr/bin/nova-dhcpbridge"


@pytest.mark.parametrize("value", [
    "tag0,10.1.0.0,static,120s",
    "10.0.0.2,static,120s",
    "set:subnet-c0ffee00-1111-4222-8333-444455556666,10.0.0.0,static,255.255.255.0,86400s",
    "set:subnet-1,2001:db8::,static,64,infinite",
    "10.0.0.10,10.0.0.20,12h",
])
def test_dhcp_range_round_trips(value: str) -> None:
    assert format_dhcp_range(parse_dhcp_range(value)) == value


def test_reference_8_2_neutron_dnsmasq_command_line() -> None:
    cmd = ("dnsmasq --no-hosts --no-resolv --pid-file=/var/lib/neutron/dhcp/N/pid "
           "--dhcp-hostsfile=/var/lib/neutron/dhcp/N/host --addn-hosts=/var/lib/neutron/dhcp/N/addn_hosts "
           "--dhcp-optsfile=/var/lib/neutron/dhcp/N/opts --dhcp-leasefile=/var/lib/neutron/dhcp/N/leases "
           "--dhcp-match=set:ipxe,175 --dhcp-userclass=set:ipxe6,iPXE --local-service --bind-dynamic "
           "--dhcp-range=set:subnet-c0ffee00-1111-4222-8333-444455556666,10.0.0.0,static,255.255.255.0,86400s "
           "--dhcp-option-force=option:mtu,1450 --dhcp-lease-max=256 --conf-file=/dev/null --domain=openstacklocal")
    line = f"nobody    4242     1  0 10:00 ?        00:00:00 {cmd}"
    p = parse_ps_line(line)
    assert format_ps_line(p) == line
    assert p.options.dhcp_ranges[0].netmask == "255.255.255.0" and p.options.get("bind-dynamic") == ""


# --- hosts-file and opts-file lines ----------------------------------------------------------

HOST_LINES = {
    "004-nova": lambda: between(4, "fa:16:3e:2c:e8:ec,cirros", "\n"),
    "ref-8.3-neutron": lambda: "fa:16:3e:11:22:33,host-10-0-0-5.openstacklocal.,10.0.0.5",
    "neutron-v6-with-tags": lambda: "fa:16:3e:11:22:33,tag:dhcpv6,id:00:01,host-2001-db8--5.openstacklocal.,"
                                    "[2001:db8::5],set:port-3f2a1b7c",
}


@pytest.mark.parametrize("name", sorted(HOST_LINES))
def test_hosts_file_lines_round_trip(name: str) -> None:
    line = HOST_LINES[name]()
    assert format_host_line(parse_host_line(line)) == line


def test_neutron_v6_host_line_fields() -> None:
    h = parse_host_line(HOST_LINES["neutron-v6-with-tags"]())
    assert h.ip == ipaddress.ip_address("2001:db8::5") and h.tags == ("tag:dhcpv6",)
    assert h.client_id == "00:01" and h.sets == ("set:port-3f2a1b7c",)


@pytest.mark.parametrize("line", [
    "tag:subnet-c0ffee00-1111-4222-8333-444455556666,option:classless-static-route,169.254.169.254/32,10.0.0.1,"
    "0.0.0.0/0,10.0.0.1",
    "tag:subnet-c0ffee00-1111-4222-8333-444455556666,249,169.254.169.254/32,10.0.0.1,0.0.0.0/0,10.0.0.1",
    "tag:subnet-c0ffee00-1111-4222-8333-444455556666,option:router,10.0.0.1",
    "tag:subnet-x,option:router",
    "tag:subnet-y,option6:domain-search,openstacklocal",
])
def test_reference_8_3_opts_lines_round_trip(line: str) -> None:
    opt = parse_opt_line(line)
    assert format_opt_line(opt) == line and opt.tags[0].startswith("tag:")


MALFORMED = {
    "ps-not-a-ps-line": (parse_ps, "dnsmasq --interface=eth0\n", "a 'ps -fe'"),
    "ps-not-dnsmasq": (parse_ps, "root      1     0  0 10:00 ?        00:00:00 /sbin/init\n", "a dnsmasq command"),
    "ps-short-option": (parse_ps, "root      9     1  0 10:00 ?        00:00:00 dnsmasq -k\n",
                        "dnsmasq '--long-option[=value]' arguments"),
    "host-no-mac": (lambda t, source: parse_host_line(t, source=source), "cirros,10.0.0.2,x", "'MAC,HOSTNAME,IP'"),
    "host-bad-ip": (lambda t, source: parse_host_line(t, source=source), "fa:16:3e:2c:e8:ec,cirros,10.0.0",
                    "'HOSTNAME,IP' after the MAC"),
    "opt-no-option": (lambda t, source: parse_opt_line(t, source=source), "tag:subnet-x,router,10.0.0.1",
                      "'[tag:X,]option:NAME|NUMBER[,values]'"),
    "brctl-bad-id": (parse_brctl_show, "br0\t\tnot-an-id\tno\t\teth0\n", "BRIDGE-ID"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_names_line_and_expectation(name: str) -> None:
    parse, text, expected = MALFORMED[name]
    with pytest.raises(ParseError) as info:
        parse(text, source="case")
    assert expected in str(info.value) and str(info.value).startswith("case:1: expected ")


def test_a_planned_process_has_what_ps_shows_of_a_fresh_one() -> None:
    from neutrino.host.dnsmasq import DnsmasqProcess

    fe = DnsmasqProcess("nobody", 0, ("dnsmasq", "--no-hosts"), ppid=1)
    assert (fe.c, fe.stime, fe.cpu, fe.vsz) == (0, "00:00", None, None)  # only the columns ps -fe prints
    aux = DnsmasqProcess("nobody", 0, ("dnsmasq", "--no-hosts"), "aux")
    columns = (aux.cpu, aux.mem, aux.vsz, aux.rss, aux.stat, aux.stime, aux.ppid)
    assert columns == ("0.0", "0.0", 0, 0, "S", "00:00", None)
    for p in (fe, aux):
        assert parse_ps_line(format_ps_line(p)) == p
