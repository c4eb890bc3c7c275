"""iptables parsers and formatters against every iptables dump in the seeds and the reference doc.

Each case names the seed file and the excerpt it reads; "whitespace aside" comparisons use
``squash`` (the seeds carry trailing spaces and lost blank lines).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from neutrino.errors import ParseError
from neutrino.host.iptables import (
    CLASSIC,
    MODERN,
    V1_8_9,
    Chain,
    Counters,
    Ruleset,
    Table,
    TableName,
    dialect_for_version,
    diff,
    format_restore,
    format_rule,
    format_rules,
    format_save,
    new_table,
    parse_rule,
    parse_rules,
    parse_save,
    split_run_together,
)
from neutrino.host.iptables_listing import format_listing, format_num, format_row, parse_listing, parse_num
from seeds import between, excerpt, seed_path, squash
from tests.reference import REFERENCE  # noqa: E402


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------ iptables -S dumps

S_DUMPS = [
    # (id, seed, first marker, last marker, table)
    ("000-qrouter-nat", 0, "-P PREROUTING ACCEPT", "-A quantum-postrouting-bottom -j quantum-l3-agent-snat",
     TableName.NAT),
]


@pytest.mark.parametrize(("seed", "first", "last", "table"), [c[1:] for c in S_DUMPS], ids=[c[0] for c in S_DUMPS])
def test_full_S_dump_round_trips(seed: int, first: str, last: str, table: TableName) -> None:
    text = excerpt(seed, first, last)
    parsed = parse_rules(text, table=table, source=seed_path(seed).name)
    assert squash(format_rules(parsed)) == squash(text)
    assert _lines(format_rules(parsed)) == _lines(text)  # trailing spaces aside, line for line


SEED_004 = [
    # (id, occurrence of "-S-P", table): controller filter, controller nat, compute-1 filter
    ("004-controller-filter", 0, TableName.FILTER),
    ("004-controller-nat", 1, TableName.NAT),
    ("004-compute-filter-elided", 2, TableName.FILTER),
]


@pytest.mark.parametrize(("occurrence", "table"), [c[1:] for c in SEED_004], ids=[c[0] for c in SEED_004])
def test_seed_004_run_together_S_dump(occurrence: int, table: TableName) -> None:
    raw = between(4, "-S-P", "\n", occurrence=occurrence)[2:]  # drop the "-S" of the command
    text = split_run_together(raw)
    assert "\n-A " in text and "-A" not in text.split("\n")[0]
    reading = parse_rules(text, table=table, source=seed_path(4).name, partial=True)
    assert reading.problems == ()  # the elision line is skipped, not a problem
    readable = [line for line in _lines(text) if not line.startswith("...")]
    assert _lines(format_rules(reading.value)) == readable
    assert squash(format_rules(reading.value)) == squash(raw).replace("...(virbr0stuffomitted)...", "")


def test_seed_004_compute_chain_of_the_ping() -> None:
    """004's rule path of a ping to the VM (run-together -A lines of chains never declared)."""
    raw = between(4, "-A\u00a0FORWARD\u00a0-j\u00a0nova-filter-top-A\u00a0nova-filter-top", "\n")  # the page's non-breaking spaces
    text = split_run_together(raw)
    reading = parse_rules(text, partial=True, source=seed_path(4).name)
    assert reading.problems == ()
    assert [format_rule(r) for r in reading.value.rules] == _lines(text)
    assert [r.chain for r in reading.value.rules] == ["FORWARD", "nova-filter-top", "nova-compute-local",
                                                       "nova-compute-inst-9"]


def test_split_run_together_only_splits_after_non_space() -> None:
    assert split_run_together("-P INPUT ACCEPT-N x-A x -j DROP") == "-P INPUT ACCEPT\n-N x\n-A x -j DROP\n"
    assert split_run_together("-A x -m comment --comment a-N -j DROP") == "-A x -m comment --comment a\n-N -j DROP\n"


GREPPED = [
    ("000-grep-tap", 0, "-A quantum-openvswi-FORWARD -m physdev --physdev-out tap7c7ae61e-05",
     "-A quantum-openvswi-sg-chain -m physdev --physdev-in tap7c7ae61e-05"),
    ("000-o-chain", 0, "-A quantum-openvswi-o7c7ae61e-0 -m mac ! --mac-source FA:16:3E:03:00:E7",
     "-A quantum-openvswi-o7c7ae61e-0 -j quantum-openvswi-sg-fallback"),
    ("000-i-chain", 0, "-A quantum-openvswi-i7c7ae61e-0 -m state --state INVALID -j DROP",
     "-A quantum-openvswi-i7c7ae61e-0 -j quantum-openvswi-sg-fallback"),
    ("000-nat-excerpt", 0, "-A quantum-l3-agent-OUTPUT -d 172.24.4.228/32 -j DNAT --to-destination 10.1.0.2",
     "-A quantum-l3-agent-float-snat -s 10.1.0.2/32 -j SNAT --to-source 172.24.4.228"),
]


@pytest.mark.parametrize(("seed", "first", "last"), [c[1:] for c in GREPPED], ids=[c[0] for c in GREPPED])
def test_grepped_S_lines_round_trip(seed: int, first: str, last: str) -> None:
    text = excerpt(seed, first, last, occurrence=1 if "nat-excerpt" in first else 0)
    reading = parse_rules(text, partial=True, source=seed_path(seed).name)
    assert reading.problems == ()
    assert [format_rule(r) for r in reading.value.rules] == _lines(text)


def test_seed_000_mac_source_keeps_the_classic_upper_case() -> None:
    rule = parse_rule("-A o -m mac ! --mac-source FA:16:3E:03:00:E7 -j DROP")
    assert format_rule(rule) == "-A o -m mac ! --mac-source FA:16:3E:03:00:E7 -j DROP"
    assert format_rule(rule, dialect=V1_8_9) == "-A o -m mac ! --mac-source fa:16:3e:03:00:e7 -j DROP"
    # the model holds one spelling (a planner's, lower case): the dialect only decides how it prints
    assert rule == parse_rule("-A o -m mac ! --mac-source fa:16:3e:03:00:e7 -j DROP")
    assert rule.matches[0].options[0].args == ("fa:16:3e:03:00:e7",)


SEED_002_DAMAGED = {
    "-A PREROUTING - i neutron-l3-agent-PREROUTING":
        "an option (-s, -d, -i, -o, -p, -m, -j, --name) where '-' stands",
    "-A POSTROUTING -i neutron-l3-agent-POSTROUTING": "an interface name of at most 15 characters after -i",
    "-A neutron-postrouting-bottom - i neutron-l3-agent-snat":
        "an option (-s, -d, -i, -o, -p, -m, -j, --name) where '-' stands",
}


def test_seed_002_ocr_damaged_dump_reads_partially() -> None:
    text = excerpt(2, "-P PREROUTING ACCEPT", "-A neutron-postrouting-bottom - i neutron-l3-agent-snat")
    with pytest.raises(ParseError):
        parse_rules(text, table=TableName.NAT)
    reading = parse_rules(text, table=TableName.NAT, partial=True, source=seed_path(2).name)
    assert {p.text.strip(): p.expected for p in reading.problems} == SEED_002_DAMAGED
    assert all(p.source == seed_path(2).name and p.line > 0 for p in reading.problems)
    undamaged = [line for line in _lines(text) if line not in SEED_002_DAMAGED]
    assert _lines(format_rules(reading.value)) == undamaged


# ---------------------------------------------------------------------- the reference doc (6.3, 7.2)


def _reference_section(title: str) -> str:
    text = REFERENCE.read_text()
    start = text.index(title)
    return text[start:text.index("\n### ", start + 1)]


def _reference_rules(title: str) -> list[str]:
    """The ``-A`` lines of a reference section's code block (7.2 joins some with ``" ; "``)."""
    out = []
    for line in _reference_section(title).splitlines():
        if line.startswith("-A "):
            out.extend(part.strip() for part in line.split(" ; "))
    return out


REFERENCE_SECTIONS = [("6.3-sg-ruleset", "### 6.3 Full ruleset for P"),
                      ("7.2-router-ruleset", "### 7.2 The complete iptables state for R")]


@pytest.mark.parametrize("title", [c[1] for c in REFERENCE_SECTIONS], ids=[c[0] for c in REFERENCE_SECTIONS])
def test_reference_rules_round_trip(title: str) -> None:
    lines = _reference_rules(title)
    assert len(lines) > 12
    for line in lines:
        assert squash(format_rule(parse_rule(line))) == squash(line), line


def test_reference_6_3_ruleset_builds_and_saves() -> None:
    """6.3's filter rules as one table: jump counts and a restore input that reads back."""
    lines = [line for line in _reference_rules("### 6.3 Full ruleset for P") if "neutron-openvswi-PREROUTING"
             not in line and not line.startswith("-A PREROUTING") and not line.startswith("-A OUTPUT -j neutron-openvswi-OUTPUT")]
    table = parse_rules("\n".join(lines), partial=True).value
    assert table.references("neutron-openvswi-sg-chain") == 2
    assert table.references("neutron-openvswi-o3f2a1b7c-d") == 2
    assert table.references("neutron-openvswi-sg-fallback") == 2
    saved = format_save(Ruleset((table,)))
    assert format_save(parse_save(saved)) == saved
    assert parse_save(saved).table("filter").rules == table.rules


# ------------------------------------------------------------------------------- -L listings (001)

LISTINGS = [
    ("001-qrouter-nat-nvL", 1, "Chain PREROUTING (policy ACCEPT 53108 packets, 6285K bytes)",
     "/* Perform source NAT on outgoing traffic. */", TableName.NAT),
    ("001-o-chain-nvL", 1, "Chain neutron-openvswi-o0db0e25b-0 (2 references)",
     "/* Send unmatched traffic to the fallback chain. */", TableName.FILTER),
    ("001-i-chain-nvL", 1, "Chain neutron-openvswi-i0db0e25b-0 (1 references)",
     "0     0 DROP       all", TableName.FILTER),
]


@pytest.mark.parametrize(("seed", "first", "last", "table"), [c[1:] for c in LISTINGS], ids=[c[0] for c in LISTINGS])
def test_listing_round_trips(seed: int, first: str, last: str, table: TableName) -> None:
    text = excerpt(seed, first, last)
    parsed = parse_listing(text, table=table, source=seed_path(seed).name)
    assert squash(format_listing(parsed)) == squash(text)
    # line for line too (the real tool puts a blank line between chains; the seed lost them)
    assert _lines(format_listing(parsed)) == [line.strip() for line in text.splitlines() if line.strip()]


def test_listing_rows_are_byte_exact() -> None:
    """Column widths: rows of 001 (trailing spaces included) come out identical."""
    text = excerpt(1, "Chain neutron-l3-agent-snat (1 references)", "mark match ! 0x2/0xffff ctstate DNAT")
    table = parse_listing(text, table=TableName.NAT)
    assert format_listing(table) == text


def test_listing_of_seed_001_nat_reads_the_rules_it_shows() -> None:
    table = parse_listing(excerpt(1, "Chain PREROUTING (policy ACCEPT 53108", "/* Perform source NAT"),
                          table=TableName.NAT)
    assert table.chain("PREROUTING").counters == Counters(53108, 6285000)
    assert table.chain("neutron-l3-agent-OUTPUT").references == 1
    assert format_rules(table, "neutron-l3-agent-snat").splitlines() == [
        "-N neutron-l3-agent-snat",
        "-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat",
        "-A neutron-l3-agent-snat -o qg-77688753-4e -j SNAT --to-source 192.168.100.18",
        "-A neutron-l3-agent-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT "
        "-j SNAT --to-source 192.168.100.18",
    ]
    assert format_rules(table, "neutron-l3-agent-PREROUTING").splitlines()[1] == (
        "-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 "
        "-j REDIRECT --to-ports 9697")


def test_listing_computed_from_S_rules_equals_seed_001_o_chain() -> None:
    """6.3's egress chain (the same Neutron code) for port 0db0e25b-0, minus the SG's own
    ``-j RETURN`` rule that 001's port lacks, gives 001's ``iptables -nvL`` of that chain."""
    seed = excerpt(1, "Chain neutron-openvswi-o0db0e25b-0 (2 references)", "/* Send unmatched traffic")
    counters = [r.counters for r in parse_listing(seed).chain("neutron-openvswi-o0db0e25b-0").rules]
    lines = [line.replace("3f2a1b7c-d", "0db0e25b-0") for line in _reference_rules("### 6.3 Full ruleset for P")
             if line.startswith("-A neutron-openvswi-o3f2a1b7c-d") and line != "-A neutron-openvswi-o3f2a1b7c-d -j RETURN"]
    rules = tuple(replace(parse_rule(line), counters=c) for line, c in zip(lines, counters, strict=True))
    chain = Chain("neutron-openvswi-o0db0e25b-0", rules=rules, references=2)
    assert format_listing(Table(TableName.FILTER, (chain,))) == seed


def test_listing_computed_from_reference_metadata_rule_equals_seed_001_row() -> None:
    row = excerpt(1, "241 14460 REDIRECT").rstrip("\n")
    rule = parse_rule("-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 "
                      "-j REDIRECT --to-ports 9697")  # reference 7.2 and seed 000, same rule
    assert format_row(replace(rule, counters=Counters(241, 14460))) == row


def test_listing_from_S_of_seed_000_nat() -> None:
    table = parse_rules(excerpt(0, "-P PREROUTING ACCEPT", "-A quantum-postrouting-bottom"), table=TableName.NAT)
    listing = format_listing(table, verbose=False)
    assert "Chain quantum-l3-agent-snat (1 references)" in listing
    assert ("DNAT       all  --  0.0.0.0/0            172.24.4.228         to:10.1.0.2\n") in listing
    assert ("ACCEPT     all  --  0.0.0.0/0            0.0.0.0/0            ! ctstate DNAT\n") in listing
    back = parse_listing(format_listing(table), table=TableName.NAT)
    assert [format_rule(r) for r in back.rules] == [format_rule(r) for r in table.rules]


@pytest.mark.parametrize(("number", "exact", "text"), [
    (0, False, "    0 "), (99999, False, "99999 "), (100000, False, " 100K "), (3148499, False, "3148K "),
    (9999499, False, "9999K "), (9999500, False, "  10M "), (438 * 10**6, False, " 438M "),
    (12 * 10**12, False, "  12T "), (10, True, "      10 "), (123456789, True, "123456789 "),
])
def test_format_num_follows_xtables_print_num(number: int, exact: bool, text: str) -> None:
    assert format_num(number, exact=exact) == text


def test_parse_num_keeps_what_the_listing_shows() -> None:
    assert parse_num("6285K") == 6285000 and parse_num("36M") == 36 * 10**6 and parse_num("34260") == 34260


# ---------------------------------------------------------------------------- canonical formatting


@pytest.mark.parametrize(("given", "canonical"), [
    ("-A x -p tcp --dport 22 -j ACCEPT", "-A x -p tcp -m tcp --dport 22 -j ACCEPT"),
    ("-A x -p tcp -m tcp --dport 22 --sport 1 -j ACCEPT", "-A x -p tcp -m tcp --sport 1 --dport 22 -j ACCEPT"),
    ("-A x -j ACCEPT -s 10.0.0.5 -p udp -i eth0 -d 10.0.0.0/255.255.255.0",
     "-A x -s 10.0.0.5/32 -d 10.0.0.0/24 -i eth0 -p udp -j ACCEPT"),
    ("-A x -m state --state ESTABLISHED,RELATED -j RETURN", "-A x -m state --state RELATED,ESTABLISHED -j RETURN"),
    ("-A x -m comment --comment 'a b' -j DROP", '-A x -m comment --comment "a b" -j DROP'),
    ("-A x -m comment --comment plain-word_1 -j DROP", "-A x -m comment --comment plain-word_1 -j DROP"),
    ('-A x -m comment --comment "it\'s \\"q\\"" -j DROP', '-A x -m comment --comment "it\\\'s \\"q\\"" -j DROP'),
    ("-A x -m mac --mac-source ! fa:16:3e:00:00:01 -j DROP", "-A x -m mac ! --mac-source FA:16:3E:00:00:01 -j DROP"),
    ("-A x -m physdev --physdev-is-bridged --physdev-out tap1 -j y", "-A x -m physdev --physdev-out tap1 --physdev-is-bridged -j y"),
    ("-A x -o qg-1 -j SNAT --random-fully --to-source 1.2.3.4", "-A x -o qg-1 -j SNAT --to-source 1.2.3.4 --random-fully"),
    ("-A x -i + -j ACCEPT", "-A x -j ACCEPT"),
    ("-A x ! -f -g y", "-A x ! -f -g y"),
    ("[3:180] -A x -j CT --zone 4097", "-A x -j CT --zone 4097"),
])
def test_format_rule_is_canonical(given: str, canonical: str) -> None:
    assert format_rule(parse_rule(given)) == canonical
    assert format_rule(parse_rule(canonical)) == canonical


def test_counters_are_kept_in_save_form() -> None:
    rule = parse_rule("[3:180] -A x -j CT --zone 4097")
    assert rule.counters == Counters(3, 180)
    assert format_rule(rule, counters=True) == "[3:180] -A x -j CT --zone 4097"
    assert parse_rule("-A x -c 5 6 -j DROP").counters == Counters(5, 6)


def test_save_with_counters_and_comments_round_trips() -> None:
    text = ("# Generated by iptables-save v1.4.21 on Tue Oct  1 10:00:00 2013\n*filter\n"
            ":INPUT ACCEPT [10:600]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [3:200]\n:y - [0:0]\n"
            "[4:240] -A INPUT -p icmp -j y\n[0:0] -A y -j RETURN\nCOMMIT\n# Completed on Tue Oct  1 10:00:00 2013\n")
    rs = parse_save(text)
    assert format_save(rs, counters=True) == text
    assert rs.chain("filter", "INPUT").counters == Counters(10, 600)
    assert rs.references("filter", "y") == 1
    assert "# Generated" not in format_save(rs, comments=False)


def test_origin_is_never_printed_nor_compared() -> None:
    a = parse_rule("-A x -j DROP")
    b = replace(a, origin="plan.firewall: port 3f2a")
    assert a == b and format_rule(b) == "-A x -j DROP"


def test_dialect_for_version() -> None:
    assert dialect_for_version("iptables v1.8.9 (nf_tables)") is V1_8_9
    assert dialect_for_version("iptables v1.8.10 (legacy)") is MODERN
    assert dialect_for_version("iptables v1.4.21") is CLASSIC


def test_S_of_one_chain_and_canonical_chain_order() -> None:
    table = parse_rules("-P INPUT DROP\n-N b\n-N a\n-A INPUT -j a\n-A b -j DROP\n")
    assert format_rules(table, "b") == "-N b\n-A b -j DROP\n"
    assert format_rules(table, "INPUT") == "-P INPUT DROP\n-A INPUT -j a\n"
    assert [c.name for c in replace(table, chains=table.chains[::-1]).canonical().chains] == ["INPUT", "a", "b"]


# ---------------------------------------------------------------------------------------- diff


def _ruleset(text: str) -> Ruleset:
    return parse_save(text)


BASE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-openvswi-sg-chain - [0:0]
:neutron-openvswi-old - [0:0]
-A FORWARD -j neutron-openvswi-sg-chain
-A FORWARD -j neutron-openvswi-old
-A neutron-openvswi-sg-chain -m physdev --physdev-out tap1 --physdev-is-bridged -j ACCEPT
-A neutron-openvswi-sg-chain -j ACCEPT
COMMIT
"""
WANT = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-openvswi-sg-chain - [0:0]
:neutron-openvswi-new - [0:0]
-A FORWARD -j neutron-openvswi-sg-chain
-A FORWARD -j neutron-openvswi-new
-A neutron-openvswi-sg-chain -m physdev --physdev-in tap2 --physdev-is-bridged -j ACCEPT
-A neutron-openvswi-sg-chain -m physdev --physdev-out tap1 --physdev-is-bridged -j ACCEPT
-A neutron-openvswi-sg-chain -j ACCEPT
-A neutron-openvswi-new -j DROP
COMMIT
"""


def test_diff_names_the_changes_and_renders_restore_input() -> None:
    change = diff(_ruleset(WANT), _ruleset(BASE))
    assert format_restore(change) == (
        "*filter\n"
        ":neutron-openvswi-new - [0:0]\n"
        ":FORWARD DROP [0:0]\n"
        "-D FORWARD 2\n"
        "-I FORWARD 2 -j neutron-openvswi-new\n"
        "-I neutron-openvswi-sg-chain 1 -m physdev --physdev-in tap2 --physdev-is-bridged -j ACCEPT\n"
        "-I neutron-openvswi-new 1 -j DROP\n"
        "-X neutron-openvswi-old\n"
        "COMMIT\n")
    assert diff(_ruleset(WANT), _ruleset(WANT)).empty


def test_diff_leaves_chains_it_does_not_own() -> None:
    change = diff(_ruleset(WANT), _ruleset(BASE), owned=lambda name: name.endswith("-new"))
    assert all(not c.remove for c in change.chains)


def test_diff_against_nothing_creates_everything() -> None:
    want = Ruleset((new_table(TableName.RAW),))
    assert format_restore(diff(want, Ruleset())) == "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    assert format_restore(diff(_ruleset(WANT), Ruleset())).count("-I ") == 6


# ------------------------------------------------------------------------------- malformed input

MALFORMED_RULES = [
    ("no-chain", "-A", "<string>:1: expected a chain name after -A: '-A'"),
    ("not-a-rule", "-X foo", "<string>:1: expected a rule starting with -A CHAIN: '-X foo'"),
    ("bad-address", "-A INPUT -s 10.0.0.300 -j ACCEPT",
     "<string>:1: expected an address or network such as 10.0.0.0/24: '-A INPUT -s 10.0.0.300 -j ACCEPT'"),
    ("missing-protocol", "-A INPUT -p", "<string>:1: expected a protocol after -p: '-A INPUT -p'"),
    ("option-without-module", "-A INPUT --dport 22 -j ACCEPT",
     "<string>:1: expected -m MODULE before --dport: '-A INPUT --dport 22 -j ACCEPT'"),
    ("double-bang", "-A INPUT ! ! -s 1.2.3.4", "<string>:1: expected one ! before an option: '-A INPUT ! ! -s 1.2.3.4'"),
    ("two-targets", "-A INPUT -j ACCEPT -j DROP",
     "<string>:1: expected one -j or -g per rule: '-A INPUT -j ACCEPT -j DROP'"),
    ("unterminated-quote", '-A INPUT -m comment --comment "open',
     "<string>:1: expected a closing \": '-A INPUT -m comment --comment \"open'"),
    ("long-interface", "-A INPUT -i averyveryverylongname0 -j ACCEPT",
     "<string>:1: expected an interface name of at most 15 characters after -i: "
     "'-A INPUT -i averyveryverylongname0 -j ACCEPT'"),
    ("ocr-dash-space", "-A PREROUTING - i neutron-l3-agent-PREROUTING",
     "<string>:1: expected an option (-s, -d, -i, -o, -p, -m, -j, --name) where '-' stands: "
     "'-A PREROUTING - i neutron-l3-agent-PREROUTING'"),
    ("missing-port", "-A INPUT -p tcp -m tcp --dport",
     "<string>:1: expected 1 argument(s) after --dport: '-A INPUT -p tcp -m tcp --dport'"),
    ("bad-counters", "-A INPUT -c 1 x -j ACCEPT", "<string>:1: expected two numbers after -c: '-A INPUT -c 1 x -j ACCEPT'"),
    ("dangling-bang", "-A INPUT -j ACCEPT !", "<string>:1: expected an option after !: '-A INPUT -j ACCEPT !'"),
]


@pytest.mark.parametrize(("line", "message"), [c[1:] for c in MALFORMED_RULES], ids=[c[0] for c in MALFORMED_RULES])
def test_malformed_rule(line: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_rule(line, lineno=1)
    assert str(err.value) == message


MALFORMED_DOCS = [
    ("save-bad-policy", "save", "*filter\n:INPUT MAYBE [0:0]\nCOMMIT\n",
     "dump.txt:2: expected a policy ACCEPT, DROP or -: ':INPUT MAYBE [0:0]'"),
    ("save-bad-table", "save", "*nosuch\nCOMMIT\n",
     "dump.txt:1: expected a table name (filter, nat, mangle, raw, security) after *: '*nosuch'"),
    ("save-no-commit", "save", "*filter\n:INPUT ACCEPT [0:0]\n", "dump.txt:2: expected COMMIT at the end of table filter"),
    ("save-rule-before-table", "save", "-A INPUT -j DROP\n",
     "dump.txt:1: expected *table before chains and rules: '-A INPUT -j DROP'"),
    ("save-undeclared-chain", "save", "*filter\n-A x -j DROP\nCOMMIT\n",
     "dump.txt:2: expected :x declared before its rules: '-A x -j DROP'"),
    ("S-undeclared-chain", "S", "-A x -j DROP\n", "dump.txt:1: expected -N x (or -P) before its rules: '-A x -j DROP'"),
    ("S-bad-policy", "S", "-P INPUT MAYBE\n", "dump.txt:1: expected a policy ACCEPT or DROP: '-P INPUT MAYBE'"),
    ("listing-bad-header", "L", "Chain INPUT (policy ACCEPT\n",
     "dump.txt:1: expected Chain NAME (policy P [n packets, m bytes]) or Chain NAME (n references): "
     "'Chain INPUT (policy ACCEPT'"),
    ("listing-no-titles", "L", "Chain x (0 references)\n    0     0 DROP       all  --  *  *  0.0.0.0/0  0.0.0.0/0\n",
     "dump.txt:2: expected the column titles (pkts bytes target ... or target prot opt ...): "
     "'0     0 DROP       all  --  *  *  0.0.0.0/0  0.0.0.0/0'"),
    ("listing-unknown-extra", "L",
     "Chain x (0 references)\ntarget     prot opt source               destination\n"
     "DROP       all  --  0.0.0.0/0            0.0.0.0/0            frobnicate 7\n",
     "dump.txt:3: expected a match or target this view knows where 'frobnicate 7' stands: "
     "'DROP       all  --  0.0.0.0/0            0.0.0.0/0            frobnicate 7'"),
]


@pytest.mark.parametrize(("kind", "text", "message"), [c[1:] for c in MALFORMED_DOCS], ids=[c[0] for c in MALFORMED_DOCS])
def test_malformed_document(kind: str, text: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        if kind == "save":
            parse_save(text, source="dump.txt")
        elif kind == "S":
            parse_rules(text, source="dump.txt")
        else:
            parse_listing(text, source="dump.txt")
    assert str(err.value) == message


def test_partial_save_reports_instead_of_failing() -> None:
    reading = parse_save("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s nowhere -j DROP\n-A INPUT -j ACCEPT\n",
                         partial=True)
    assert [p.line for p in reading.problems] == [3, 4]  # the bad address, then the missing COMMIT
    assert format_rules(reading.value.table("filter")) == "-P INPUT ACCEPT\n-A INPUT -j ACCEPT\n"

