"""The real iptables, inside a throwaway namespace: what it prints, we parse and print back byte for
byte; what we format, it loads. Never touches the root namespace's tables.

Both backends are exercised when present (``iptables`` is nf_tables here, ``iptables-legacy`` the
old one), each in its own namespace.
"""

from __future__ import annotations

import shutil

import pytest

from neutrino.host.iptables import (
    Dialect,
    TableName,
    dialect_for_version,
    diff,
    format_restore,
    format_rules,
    format_save,
    parse_rules,
    parse_save,
)
from neutrino.host.iptables_listing import format_listing, parse_listing
from neutrino.linux.runner import Result, run

pytestmark = pytest.mark.root

BACKENDS = [b for b in ("iptables", "iptables-legacy") if shutil.which(b)]
TABLES = (TableName.FILTER, TableName.NAT, TableName.MANGLE, TableName.RAW)

# every match and target neutrino's planners use, plus a few more the view knows
RULESET = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-openvswi-OUTPUT - [0:0]
:neutron-openvswi-PREROUTING - [0:0]
-A PREROUTING -j neutron-openvswi-PREROUTING
-A OUTPUT -j neutron-openvswi-OUTPUT
-A neutron-openvswi-PREROUTING -m physdev --physdev-in qvb3f2a1b7c-d4 -m comment --comment "Set zone for 3f2a1b7c-d4e5-4f60-8a9b-0c1d2e3f4a5b" -j CT --zone 4097
-A neutron-openvswi-PREROUTING -i qvb3f2a1b7c-d4 -m comment --comment "Set zone for 3f2a1b7c-d4e5-4f60-8a9b-0c1d2e3f4a5b" -j CT --zone 4097
-A neutron-openvswi-PREROUTING -m comment --comment "Make a1b2 stateless" -j CT --notrack
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:neutron-l3-agent-PREROUTING - [0:0]
:neutron-l3-agent-mark - [0:0]
-A PREROUTING -j neutron-l3-agent-PREROUTING
-A neutron-l3-agent-PREROUTING -j neutron-l3-agent-mark
-A neutron-l3-agent-PREROUTING -m connmark ! --mark 0x0/0xffff0000 -j CONNMARK --restore-mark --nfmask 0xffff0000 --ctmask 0xffff0000
-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffff
-A neutron-l3-agent-mark -i qg-ee11dd22-cc -j MARK --set-xmark 0x2/0xffff
-A POSTROUTING -o qg-ee11dd22-cc -m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark --nfmask 0xffff0000 --ctmask 0xffff0000
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:neutron-l3-agent-OUTPUT - [0:0]
:neutron-l3-agent-POSTROUTING - [0:0]
:neutron-l3-agent-PREROUTING - [0:0]
:neutron-l3-agent-float-snat - [0:0]
:neutron-l3-agent-snat - [0:0]
:neutron-postrouting-bottom - [0:0]
-A PREROUTING -j neutron-l3-agent-PREROUTING
-A OUTPUT -j neutron-l3-agent-OUTPUT
-A POSTROUTING -j neutron-l3-agent-POSTROUTING
-A POSTROUTING -j neutron-postrouting-bottom
-A neutron-postrouting-bottom -m comment --comment "Perform source NAT on outgoing traffic." -j neutron-l3-agent-snat
-A neutron-l3-agent-PREROUTING -d 203.0.113.20/32 -j DNAT --to-destination 10.0.0.5
-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697
-A neutron-l3-agent-OUTPUT -d 203.0.113.20/32 -j DNAT --to-destination 10.0.0.5
-A neutron-l3-agent-POSTROUTING ! -o qg-ee11dd22-cc -m conntrack ! --ctstate DNAT -j ACCEPT
-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat
-A neutron-l3-agent-snat -o qg-ee11dd22-cc -j SNAT --to-source 203.0.113.10 --random-fully
-A neutron-l3-agent-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source 203.0.113.10 --random-fully
-A neutron-l3-agent-float-snat -s 10.0.0.5/32 -j SNAT --to-source 203.0.113.20 --random-fully
-A neutron-l3-agent-OUTPUT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80-90 --random
-A neutron-l3-agent-snat -s 10.1.0.0/24 -o qg-ee11dd22-cc -j MASQUERADE
-A neutron-l3-agent-snat -s 10.2.0.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535 --random-fully
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-filter-top - [0:0]
:neutron-openvswi-FORWARD - [0:0]
:neutron-openvswi-i3f2a1b7c-d - [0:0]
:neutron-openvswi-o3f2a1b7c-d - [0:0]
:neutron-openvswi-s3f2a1b7c-d - [0:0]
:neutron-openvswi-sg-chain - [0:0]
:neutron-openvswi-sg-fallback - [0:0]
-A FORWARD -j neutron-filter-top
-A FORWARD -j neutron-openvswi-FORWARD
-A neutron-openvswi-FORWARD -m physdev --physdev-out tap3f2a1b7c-d4 --physdev-is-bridged -m comment --comment "Direct traffic from the VM interface to the security group chain." -j neutron-openvswi-sg-chain
-A neutron-openvswi-FORWARD -m physdev --physdev-in tap3f2a1b7c-d4 --physdev-is-bridged -m comment --comment "Direct traffic from the VM interface to the security group chain." -j neutron-openvswi-sg-chain
-A neutron-openvswi-i3f2a1b7c-d -m state --state RELATED,ESTABLISHED -m comment --comment "Direct packets associated with a known session to the RETURN chain." -j RETURN
-A neutron-openvswi-i3f2a1b7c-d -d 10.0.0.5/32 -p udp -m udp --sport 67 --dport 68 -j RETURN
-A neutron-openvswi-i3f2a1b7c-d -p tcp -m tcp --dport 22 -j RETURN
-A neutron-openvswi-i3f2a1b7c-d -p tcp -m tcp -m multiport --dports 1000:2000 -j RETURN
-A neutron-openvswi-i3f2a1b7c-d -p udp -m multiport --dports 53,67:68,123 -j RETURN
-A neutron-openvswi-i3f2a1b7c-d -p icmp -m icmp --icmp-type 8/0 -j RETURN
-A neutron-openvswi-i3f2a1b7c-d -p icmp -m icmp --icmp-type 3 -j RETURN
-A neutron-openvswi-i3f2a1b7c-d -p icmp -j RETURN
-A neutron-openvswi-i3f2a1b7c-d -m state --state INVALID -m comment --comment "Drop packets that appear related to an existing connection (e.g. TCP ACK/FIN) but do not have an entry in conntrack." -j DROP
-A neutron-openvswi-i3f2a1b7c-d -m comment --comment "Send unmatched traffic to the fallback chain." -j neutron-openvswi-sg-fallback
-A neutron-openvswi-o3f2a1b7c-d -s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -m comment --comment "Allow DHCP client traffic." -j RETURN
-A neutron-openvswi-o3f2a1b7c-d -j neutron-openvswi-s3f2a1b7c-d
-A neutron-openvswi-o3f2a1b7c-d -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
-A neutron-openvswi-o3f2a1b7c-d -p tcp -m tcp ! --sport 22 ! --dport 1000:2000 -j RETURN
-A neutron-openvswi-o3f2a1b7c-d -p tcp -m tcp --tcp-flags SYN,RST,ACK SYN -j RETURN
-A neutron-openvswi-o3f2a1b7c-d ! -s 10.0.0.0/8 ! -i eth+ ! -p udp -j RETURN
-A neutron-openvswi-o3f2a1b7c-d -f -j DROP
-A neutron-openvswi-o3f2a1b7c-d -g neutron-openvswi-sg-fallback
-A neutron-openvswi-s3f2a1b7c-d -s 10.0.0.5/32 -m mac --mac-source FA:16:3E:11:22:33 -m comment --comment "Allow traffic from defined IP/MAC pairs." -j RETURN
-A neutron-openvswi-s3f2a1b7c-d -m mac ! --mac-source FA:16:3E:11:22:34 -j DROP
-A neutron-openvswi-s3f2a1b7c-d -m comment --comment "it's a \\"quoted\\" comment" -j DROP
-A neutron-openvswi-sg-chain -m physdev --physdev-out tap3f2a1b7c-d4 --physdev-is-bridged -m comment --comment "Jump to the VM specific chain." -j neutron-openvswi-i3f2a1b7c-d
-A neutron-openvswi-sg-chain -m physdev --physdev-in tap3f2a1b7c-d4 --physdev-is-bridged -m comment --comment "Jump to the VM specific chain." -j neutron-openvswi-o3f2a1b7c-d
-A neutron-openvswi-sg-chain -j ACCEPT
-A neutron-openvswi-sg-fallback -m comment --comment "Default drop rule for unmatched traffic." -j DROP
-A INPUT -m mark --mark 0x1/0xffff -j ACCEPT
-A INPUT -p tcp -m tcp --dport 9697 -j DROP
-A INPUT -p tcp -j REJECT --reject-with tcp-reset
-A INPUT -j LOG --log-prefix "neutron DROP: "
COMMIT
"""

CHECKSUM_PROBE = "*mangle\n-A POSTROUTING -o qr-+ -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill\nCOMMIT\n"
SET_PROBE = "*filter\n-A FORWARD -m set --match-set NIPv4a1b2c3d4-1111-2222-3333- src -j RETURN\nCOMMIT\n"


class Tool:
    """One backend's commands, run inside one namespace."""

    def __init__(self, backend: str, netns: str) -> None:
        self.backend = backend
        self.netns = netns
        self.dialect: Dialect = dialect_for_version(self.run("--version").stdout)

    def _argv(self, tool: str, args: tuple[str, ...]) -> list[str]:
        suffix = tool.removeprefix("iptables")
        return [self.backend + suffix, *args]

    def run(self, *args: str) -> Result:
        return run(self._argv("iptables", args), netns=self.netns)

    def save(self, *args: str) -> str:
        return run(self._argv("iptables-save", args), netns=self.netns).stdout

    def restore(self, text: str, *args: str, check: bool = True) -> Result:
        return run(self._argv("iptables-restore", args), netns=self.netns, input=text, check=check)


@pytest.fixture(params=BACKENDS)
def tool(request: pytest.FixtureRequest, netns: str) -> Tool:
    return Tool(str(request.param), netns)


def _load_with_probes(tool: Tool) -> None:
    tool.restore(RULESET)
    res = tool.restore(CHECKSUM_PROBE, "-n", check=False)
    if res.returncode != 0:  # not every kernel has xt_CHECKSUM: then say so and go on
        assert "CHECKSUM" in res.stderr
    if shutil.which("ipset"):
        run(["ipset", "create", "NIPv4a1b2c3d4-1111-2222-3333-", "hash:net", "family", "inet"], netns=tool.netns)
        tool.restore(SET_PROBE, "-n")
    else:  # without the ipset tool no set can be made, and iptables refuses a rule naming one
        res = tool.restore(SET_PROBE, "-n", check=False)
        assert res.returncode != 0 and "doesn't exist" in res.stderr
    # some traffic, so that counters are not all zero
    run(["ping", "-c", "2", "-i", "0.2", "-W", "1", "127.0.0.1"], netns=tool.netns, check=False)


def test_save_round_trips_byte_for_byte(tool: Tool) -> None:
    _load_with_probes(tool)
    for args in ((), ("-c",)):
        text = tool.save(*args)
        assert "*filter" in text and "*nat" in text and "*mangle" in text and "*raw" in text
        assert format_save(parse_save(text), counters=bool(args), dialect=tool.dialect) == text


def test_S_round_trips_byte_for_byte(tool: Tool) -> None:
    _load_with_probes(tool)
    for table in TABLES:
        text = tool.run("-t", str(table), "-S").stdout
        assert format_rules(parse_rules(text, table=table), dialect=tool.dialect) == text
    text = tool.run("-S").stdout
    assert format_rules(parse_rules(text), dialect=tool.dialect) == text
    text = tool.run("-t", "nat", "-S").stdout
    assert format_rules(parse_rules(text, table=TableName.NAT), dialect=tool.dialect) == text
    for chain in ("neutron-openvswi-o3f2a1b7c-d", "INPUT"):
        text = tool.run("-S", chain).stdout
        assert format_rules(parse_rules(text), dialect=tool.dialect) == text


LISTINGS = [
    ("nvL", ("-nvL",), {}),
    ("nvL-x", ("-nvL", "-x"), {"exact": True}),
    ("L-n", ("-L", "-n"), {"verbose": False}),
]


@pytest.mark.parametrize(("args", "options"), [c[1:] for c in LISTINGS], ids=[c[0] for c in LISTINGS])
def test_listing_round_trips_byte_for_byte(tool: Tool, args: tuple[str, ...], options: dict[str, bool]) -> None:
    _load_with_probes(tool)
    saved = parse_save(tool.save("-c"))
    for table in TABLES:
        text = tool.run("-t", str(table), *args).stdout
        parsed = parse_listing(text, table=table)
        assert format_listing(parsed, dialect=tool.dialect, **options) == text  # listing -> listing
        # the same view computed from iptables-save -c (no traffic flows between the two captures)
        assert format_listing(saved.table(table), dialect=tool.dialect, **options) == text
    text = tool.run("-nvL", "neutron-openvswi-o3f2a1b7c-d").stdout
    assert format_listing(parse_listing(text), dialect=tool.dialect) == text
    assert format_listing(saved.table("filter"), "neutron-openvswi-o3f2a1b7c-d", dialect=tool.dialect) == text


def test_our_restore_input_loads_and_saves_back(tool: Tool) -> None:
    model = parse_save(RULESET)
    tool.restore(format_save(model, dialect=tool.dialect))
    back = parse_save(tool.save())
    for table in model.tables:
        want = table.canonical()
        have = back.table(table.name)
        assert [c.name for c in have.chains] == [c.name for c in want.chains]
        assert format_rules(have, dialect=tool.dialect) == format_rules(want, dialect=tool.dialect)


def test_diff_applies_with_restore_n_and_then_is_empty(tool: Tool) -> None:
    tool.restore(RULESET)
    desired = parse_rules(
        "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-N neutron-filter-top\n-N neutron-openvswi-new\n"
        "-A FORWARD -j neutron-filter-top\n-A FORWARD -j neutron-openvswi-new\n"
        "-A neutron-openvswi-new -p tcp -m tcp --dport 443 -m comment --comment \"new rule\" -j ACCEPT\n"
        "-A INPUT -p tcp -m tcp --dport 9697 -j DROP\n-A INPUT -m mark --mark 0x1/0xffff -j ACCEPT\n")
    wanted = parse_save(format_save(parse_save(RULESET).with_table(desired)))
    change = diff(wanted, parse_save(tool.save()), owned=lambda name: name.startswith("neutron-"))
    assert not change.empty
    tool.restore(format_restore(change, dialect=tool.dialect), "-n")
    actual = parse_save(tool.save())
    assert diff(wanted, actual, owned=lambda name: name.startswith("neutron-")).empty
    assert format_rules(actual.table("filter"), "INPUT", dialect=tool.dialect) == (
        "-P INPUT ACCEPT\n-A INPUT -p tcp -m tcp --dport 9697 -j DROP\n-A INPUT -m mark --mark 0x1/0xffff -j ACCEPT\n")
    assert actual.table("filter").find("neutron-openvswi-sg-chain") is None
