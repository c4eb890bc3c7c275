"""Real output in the forms people paste it: each read as the tool printed it, the source cited."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.cli import main
from neutrino.errors import ParseError
from neutrino.host.state import HostState
from neutrino.ingest.captures import apply_capture, collecting_notes
from neutrino.ingest.commands import parse_command

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))


def read(cmd: str, text: str) -> tuple[HostState, list[str]]:
    with collecting_notes() as notes:
        st = apply_capture(HostState(name="h"), parse_command(cmd), text, source="cap")
    return st, notes


# A router namespace's ifconfig, net-tools 1.60, from the RDO "Neutron with OVS" walkthrough
# (2013, rdorouter 6e6f71df-...; public text in the code corpus, id 3700895651); the layout is
# net-tools' lib/interface.c ife_print_long.
CLASSIC = (HERE / "real_outputs" / "ifconfig_classic_rdo_qrouter.txt").read_text()


def test_classic_ifconfig_is_read_and_answered_in_the_current_form(tmp_path, capsys):
    """net-tools' classic form (RDO walkthrough, above): every field kept, answered back as
    net-tools 2.10 prints the same interface."""
    st, notes = read("ip netns exec qrouter-6e6f71df-cca2-4959-bdc5-ff97adf8fc8e ifconfig", CLASSIC)
    ns = st.namespace("qrouter-6e6f71df-cca2-4959-bdc5-ff97adf8fc8e")
    assert ns is not None and ns.ifconfig is not None
    lo, qg = ns.ifconfig
    assert (lo.name, lo.mtu, lo.hw_name, lo.flag_names) == ("lo", 16436, "loop", ("UP", "LOOPBACK", "RUNNING"))
    assert str(qg.inet) == "192.168.21.10" and str(qg.broadcast) == "192.168.21.255"
    assert qg.hwaddr == "fa:16:3e:56:bb:e8" and qg.txqueuelen == 1000
    assert qg.stats is not None and (qg.stats.rx_bytes, qg.stats.tx_packets) == (19872, 12)
    assert qg.inet6[0].scope_names == ("link",)
    assert any("classic" in n for n in notes)
    cap = tmp_path / "h"
    cap.mkdir()
    (cap / "ifconfig.txt").write_text(CLASSIC)
    assert main(["import", str(cap)]) == 0
    capsys.readouterr()
    assert main(["exec", "h", "--", "ifconfig", "qg-0f7a05c3-8c"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("qg-0f7a05c3-8c: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu 1500\n")
    assert "inet 192.168.21.10  netmask 255.255.255.0  broadcast 192.168.21.255" in out


def test_classic_ifconfig_garbage_is_a_located_error():
    with pytest.raises(ParseError, match=r"cap:3: expected a classic ifconfig line"):
        read("ifconfig", "eth0      Link encap:Ethernet  HWaddr 00:0c:29:3b:5a:1f\n  UP  MTU:1500\n  what is this\n")


# `ps aux | grep dnsmasq` as a terminal 80 columns wide wraps it, the grep line included; the
# process line is shaped like the one of a public Spanish neutron walkthrough (`ps aux |grep
# --color 60346ea0-...`, code corpus id 1282566236): neutron/agent/linux/dhcp.py's argument order.
PS_AUX_WRAPPED = """\
nobody    4321  0.0  0.0  15548   892 ?        S    Oct26   0:00 dnsmasq --no-hos
ts --no-resolv --strict-order --except-interface=lo --pid-file=/var/lib/neutron/
dhcp/88b1609c-68e0-49ca-a658-f1edff54a264/pid --dhcp-hostsfile=/var/lib/neutron/
dhcp/88b1609c-68e0-49ca-a658-f1edff54a264/host --bind-interfaces --interface=tap
5f5bd4a4-7f --dhcp-range=set:tag0,10.0.0.0,static,86400s --leasefile-ro
root      9999  0.0  0.0  12944   936 pts/0    S+   10:01   0:00 grep --color=auto dnsmasq
"""

# The same process from `ps ax`, its options pasted one per line by the writer.
PS_AX_ONE_PER_LINE = """\
  PID TTY      STAT   TIME COMMAND
 4321 ?        S      0:00 dnsmasq --no-hosts --no-resolv
    --strict-order
    --interface=tap5f5bd4a4-7f
    --dhcp-range=set:tag0,10.0.0.0,static,86400s
    --leasefile-ro
"""


def test_ps_aux_wrapped_by_the_terminal_is_joined_back():
    st, notes = read("ps aux", PS_AUX_WRAPPED)
    (p,) = st.processes or ()
    assert p.pid == 4321 and p.options.interface == "tap5f5bd4a4-7f"
    assert "--dhcp-hostsfile=/var/lib/neutron/dhcp/88b1609c-68e0-49ca-a658-f1edff54a264/host" in p.argv
    assert any("4 wrapped line(s) joined" in n for n in notes)
    assert any("1 process(es) other than dnsmasq skipped" in n for n in notes)


def test_ps_ax_with_options_one_per_line():
    st, _ = read("ps ax", PS_AX_ONE_PER_LINE)
    (p,) = st.processes or ()
    assert (p.pid, p.tty, p.time) == (4321, "?", "0:00")
    assert p.argv == ("dnsmasq", "--no-hosts", "--no-resolv", "--strict-order", "--interface=tap5f5bd4a4-7f",
                      "--dhcp-range=set:tag0,10.0.0.0,static,86400s", "--leasefile-ro")


def test_ip_route_per_table_and_family_are_kept_apart():
    """iproute2 6.1 (this machine): `ip route show table 100` prints that table without naming it;
    `ip route list table 200` the same; `ip route` the main table's IPv4 routes, `ip -6 route`
    the IPv6 ones. Each capture replaces only what it printed."""
    st, _ = read("ip route show table 100", "default via 10.0.0.1 dev v0 \n")
    ns = st.namespace("")
    st = apply_capture(st, parse_command("ip route list table 200"), "10.1.0.0/16 via 10.0.0.1 dev v0 \n")
    st = apply_capture(st, parse_command("ip route"), "10.0.0.0/24 dev v0 proto kernel scope link src 10.0.0.5 \n")
    st = apply_capture(st, parse_command("ip -6 route"), "fe80::/64 dev v0 proto kernel metric 256 pref medium\n")
    ns = st.namespace("")
    assert ns is not None and ns.routes is not None
    by_table = sorted((r.table or "main", str(r.dst or "default")) for r in ns.routes)
    assert by_table == [("100", "default"), ("200", "10.1.0.0/16"), ("main", "10.0.0.0/24"), ("main", "fe80::/64")]


def test_ip_6_rule_does_not_replace_the_ipv4_rules():
    """`ip -6 rule` (iproute2 6.1 prints `0: from all lookup local` for both families): kept
    apart from the IPv4 rules, with a note, instead of replacing them."""
    st, _ = read("ip rule", "0:\tfrom all lookup local\n100:\tfrom 10.0.0.5 lookup 100\n32766:\tfrom all lookup main\n")
    with collecting_notes() as notes:
        st = apply_capture(st, parse_command("ip -6 rule"), "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n")
    ns = st.namespace("")
    assert ns is not None and [r.priority for r in ns.rules or ()] == [0, 100, 32766]
    assert any("IPv6 rules" in n for n in notes)


# iptables v1.8.9 (nf_tables) on this machine: `iptables -L -n` without -v prints protocol numbers.
IPT_L_N = (HERE / "real_outputs" / "iptables_L_n_nft_1.8.9.txt").read_text()


def test_iptables_list_without_counters_under_nft_is_read_as_nft():
    st, _ = read("iptables -L -n", IPT_L_N)
    ns = st.namespace("")
    assert ns is not None and ns.iptables is not None and ns.iptables_dialect == "1.8.9"
    assert len(ns.iptables.tables[0].rules) == 2


# iptables-save v1.8.9 (this machine), pasted up to its last rule, then with a rule elided as
# `(...)` by the writer.
SAVE = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Sun Dec  6 18:20:58 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p vrrp -j ACCEPT
-A INPUT -s 10.0.0.0/8 -p udp -m udp --dport 53 -j DROP
"""


def test_iptables_save_that_stops_before_commit_is_a_cut():
    st, notes = read("iptables-save", SAVE)
    ns = st.namespace("")
    assert ns is not None and ns.iptables is not None and len(ns.iptables.tables[0].rules) == 3
    assert st.partial == ("iptables-save",)
    assert any("before COMMIT" in n for n in notes)


def test_written_elisions_are_cuts():
    text = SAVE.replace("-A INPUT -p vrrp -j ACCEPT", "(...)") + "COMMIT\n"
    st, notes = read("iptables-save", text)
    ns = st.namespace("")
    assert ns is not None and ns.iptables is not None and len(ns.iptables.tables[0].rules) == 2
    assert st.partial == ("iptables-save",)
    assert any("'(...)'" in n for n in notes)


def test_dump_flows_of_ovs_3_1_with_names_ct_fields_and_conjunctions():
    """`ovs-ofctl --names dump-flows` and `ovs-ofctl show` of Open vSwitch 3.1.0 on this machine (a
    private userspace bridge holding a patch port `patch-int` and `vxlan0`, with the OVS agent's
    and the firewall driver's kinds of flows): `"patch-int"` quoted, `vxlan0` bare (lib/ofp-port.c
    namemap_put_name), ct_state/ct_zone/ct_mark/ct_label matches, ct(commit,exec(...)),
    conjunction, learn(), all read."""
    st, _ = read("ovs-ofctl dump-flows nbr0", (HERE / "real_outputs" / "ovs-ofctl-3.1.0_--names_dump-flows.txt").read_text())
    st = apply_capture(st, parse_command("ovs-ofctl show nbr0"),
                       (HERE / "real_outputs" / "ovs-ofctl-3.1.0_show.txt").read_text())
    br = st.ovs.flows_of("nbr0")
    assert br is not None and br.flows is not None and br.ports is not None
    flows = br.flows.flows
    assert len(flows) == 16
    text = " ".join(repr(f.match) for f in flows)
    assert "PortName(name='patch-int')" in text and "PortName(name='vxlan0')" in text
    assert "field='ct_label', value=1, mask=1" in text and "field='ct_mark', value=1" in text
    assert sorted({f.table for f in flows}) == [0, 4, 10, 60, 71, 72, 73, 82, 94]


def test_dump_flows_with_port_names_quoted_as_ovs_quotes_them():
    """OVS quotes a port name unless it is a letter followed by letters and digits
    (lib/ofp-port.c namemap_put_name / name_needs_quotes), so `patch-int` prints quoted and
    `vxlan0` bare; older OVS prints durations with fewer decimals."""
    text = (' cookie=0x5c2b, duration=1234.5s, table=0, n_packets=10, n_bytes=840, idle_age=5, '
            'priority=1,in_port="patch-int" actions=resubmit(,2)\n'
            ' cookie=0x5c2b, duration=12s, table=0, n_packets=0, n_bytes=0, priority=1,in_port=vxlan0 '
            'actions=output:"patch-int"\n')
    st, _ = read("ovs-ofctl dump-flows br-tun", text)
    flows = st.ovs.flows_of("br-tun")
    assert flows is not None and flows.flows is not None and len(flows.flows.flows) == 2


# A dump-flows pasted into a mail archive or a wiki page: lines broken at the page's width (inside
# a word, or before `actions=`), and a note the writer added after a flow. Flows from neutrino's
# br-tun (the OVS agent's tables 0/2/4); the wrapping is what ovs-discuss archives do to long lines.
WRAPPED_FLOWS = """\
NXST_FLOW reply (xid=0x4):
 cookie=0x5c2b6a1e3f4d2a11, duration=1234.567s, table=0, n_packets=10, n_bytes=84
0, idle_age=5, priority=1,in_port="patch-int"
 actions=resubmit(,2)
 cookie=0x5c2b6a1e3f4d2a11, duration=1234.5s, table=0, n_packets=0, n_bytes=0, priority=1,in_port=vxlan0 actions=resubmit(,4)   <-- tunnel traffic
 cookie=0x5c2b6a1e3f4d2a11, duration=12.56s, table=4, n_packets=0, n_bytes=0, priority=1,tun_id=0x1 actions=mod_vlan_vid:1,r
esubmit(,10)
"""


def test_wrapped_and_annotated_flows_are_joined_and_reported():
    st, notes = read("ovs-ofctl dump-flows br-tun", WRAPPED_FLOWS)
    dump = st.ovs.flows_of("br-tun")
    assert dump is not None and dump.flows is not None
    flows = dump.flows.flows
    assert len(flows) == 3
    assert flows[0].stats is not None and flows[0].stats.n_bytes == 840
    assert [f.table for f in flows] == [0, 0, 4] and len(flows[2].actions) == 2
    assert any("3 wrapped line(s) joined" in n for n in notes)
    assert any("1 note(s) written after a line" in n for n in notes)


def test_a_broken_flow_still_names_its_line():
    text = WRAPPED_FLOWS + " cookie=0x0, duration=1.0s, table=0, n_packets=0, n_bytes=0, priority=1,bogus=7 actions=drop\n"
    with pytest.raises(ParseError, match=r"^cap:8: expected"):
        read("ovs-ofctl dump-flows br-tun", text)


def test_ip_4_and_6_addr_each_replace_only_their_family():
    """`ip addr`, `ip -4 addr`, `ip -6 addr` of one namespace (iproute2 6.1 on this machine, a veth
    pair with 10.0.0.5/24): `-4`/`-6` print one family and no link layer, so each keeps what the
    others said; read in any order they give back the full `ip addr` exactly."""
    from neutrino.host.iproute_link import format_ip_addr

    full = (HERE / "real_outputs" / "ip_addr_iproute2-6.1.txt").read_text()
    v4 = (HERE / "real_outputs" / "ip_-4_addr_iproute2-6.1.txt").read_text()
    v6 = (HERE / "real_outputs" / "ip_-6_addr_iproute2-6.1.txt").read_text()
    st, _ = read("ip addr", full)
    st = apply_capture(st, parse_command("ip -6 addr"), v6)
    st = apply_capture(st, parse_command("ip -4 addr"), v4)
    ns = st.namespace("")
    assert ns is not None and ns.links is not None and format_ip_addr(ns.links) == full
    st, _ = read("ip -4 addr", v4)
    st = apply_capture(st, parse_command("ip -6 addr"), v6)
    ns = st.namespace("")
    assert ns is not None and ns.link("v0") is not None
    assert [str(a.interface) for a in ns.link("v0").addresses][0] == "10.0.0.5/24"
    assert len(ns.link("v0").addresses) == 2


# `ps ww $(pgrep dnsmasq)` on a devstack network node, from a public neutron walkthrough (code
# corpus id 8516528184): the `ps ax` columns, no user.
PS_WW_DEVSTACK = """\
  PID TTY      STAT   TIME COMMAND
 1585 ?        S      0:00 dnsmasq --no-hosts --no-resolv --strict-order --bind-interfaces --interface=tap1b197b45-16 --except-interface=lo --pid-file=/opt/stack/data/neutron/dhcp/4b523b2a-5921-4e8b-9e64-7b668c4aab85/pid --dhcp-hostsfile=/opt/stack/data/neutron/dhcp/4b523b2a-5921-4e8b-9e64-7b668c4aab85/host --dhcp-optsfile=/opt/stack/data/neutron/dhcp/4b523b2a-5921-4e8b-9e64-7b668c4aab85/opts --leasefile-ro --dhcp-range=set:tag0,10.0.0.0,static,86400s --dhcp-lease-max=256 --conf-file= --domain=openstacklocal
"""  # noqa: E501


@pytest.mark.parametrize("width", [None, 80, 79, 100, 132])
def test_ps_ww_of_a_devstack_dnsmasq_read_whole_or_folded_by_a_terminal(width):
    """The devstack line above, as printed and as a terminal `width` columns wide folds it when
    pasted (trailing spaces lost on copy): the same process either way."""
    text = PS_WW_DEVSTACK
    if width:
        text = "".join("\n".join(line[i:i + width].rstrip() for i in range(0, len(line), width)) + "\n"
                       for line in PS_WW_DEVSTACK.splitlines())
    st, _ = read("ps ax", text)
    (p,) = st.processes or ()
    assert p.pid == 1585 and p.time == "0:00"
    assert p.argv == tuple(PS_WW_DEVSTACK.splitlines()[1].split()[4:])
    assert p.options.interface == "tap1b197b45-16"


def test_ps_aux_piped_to_grep_shows_the_grep_too():
    """`ps aux |grep --color 60346ea0-...` of a public Spanish neutron walkthrough (code corpus id
    1282566236) printed the dnsmasq line; a `ps aux | grep dnsmasq` also prints the grep itself,
    which mentions dnsmasq: skipped, not an error."""
    text = ("nobody    1142  0.0  0.0  12888   640 ?        S    13:26   0:00 dnsmasq --no-hosts --no-resolv "
            "--strict-order --bind-interfaces --interface=tap319ca3b4-5f --except-interface=lo "
            "--leasefile-ro --dhcp-range=tag0,10.0.0.0,static,86400s --dhcp-lease-max=256 --conf-file= "
            "--domain=openstacklocal\n"
            "root      9999  0.0  0.0  12944   936 pts/0    S+   10:01   0:00 grep --color=auto dnsmasq\n")
    st, notes = read("ps aux | grep dnsmasq", text)
    (p,) = st.processes or ()
    assert (p.user, p.pid, p.options.interface) == ("nobody", 1142, "tap319ca3b4-5f")
    assert any("1 process(es) other than dnsmasq skipped" in n for n in notes)


def test_dump_flows_with_port_names_print_back_as_ovs_printed_them():
    """The real OVS 3.1 `--names dump-flows` capture (see above) prints back line for line: port
    names quoted exactly where OVS quotes them (lib/namemap.c name_needs_quotes: not a letter then
    letters and digits)."""
    from neutrino.host.openflow import format_dump_flows, parse_dump_flows
    from neutrino.host.openflow_fields import port_name_text

    text = (HERE / "real_outputs" / "ovs-ofctl-3.1.0_--names_dump-flows.txt").read_text()
    assert format_dump_flows(parse_dump_flows(text)) == text
    assert [port_name_text(n) for n in ("vxlan0", "patch-int", "tap_1", "9p", "br0")] == \
        ["vxlan0", '"patch-int"', '"tap_1"', '"9p"', "br0"]
