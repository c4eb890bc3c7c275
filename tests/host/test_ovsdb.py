"""``ovs-vsctl show``: seed captures (whole and cut) round-trip, quoting follows OVS old and new, and
malformed text fails with a one-line error naming the line."""

from __future__ import annotations

import uuid

import pytest

from neutrino.errors import ParseError
from neutrino.host.ovsdb import (
    Bridge,
    Column,
    Controller,
    Elided,
    Interface,
    Manager,
    OvsdbShow,
    Port,
    QuoteStyle,
    VsctlShowExcerpt,
    format_vsctl_show,
    needs_quotes,
    parse_vsctl_show,
)
from seeds import between, excerpt


def lines(text: str) -> list[str]:
    return [ln.rstrip() for ln in text.splitlines() if ln.strip()]


def after_prompt(text: str) -> str:
    """Drop the ``[root@host ~]# command`` line an excerpt starts with."""
    return text.split("\n", 1)[1]


# --- whole outputs (seed 001, old OVS: names with digits quoted) ------------------------------------

def test_seed1_compute_show_round_trips() -> None:
    text = excerpt(1, "6febea71-608a-4161-af6b-7bfb24fea765", 'remote_ip="10.168.7.16"}')
    show = parse_vsctl_show(text, source="seed 001")
    assert show.uuid == uuid.UUID("6febea71-608a-4161-af6b-7bfb24fea765")
    assert show.style is QuoteStyle.LEGACY
    assert show.managers == (Manager("ptcp:6640:127.0.0.1", True, quoted=True),)
    br = show.bridge("br-tun")
    assert br is not None and br.fail_mode == "secure" and br.datapath_type == "system"
    assert br.controllers == (Controller("tcp:127.0.0.1:6633", True, quoted=True),)
    vx = br.port("vxlan-0aa80711")
    assert vx is not None and vx.interfaces[0].type == "vxlan"
    assert vx.interfaces[0].options == (("df_default", "true"), ("egress_pkt_mark", "0"), ("in_key", "flow"),
                                        ("local_ip", "10.168.7.132"), ("out_key", "flow"),
                                        ("remote_ip", "10.168.7.17"))
    assert format_vsctl_show(show, "as_parsed") == text
    assert format_vsctl_show(show, "legacy") == text
    modern = format_vsctl_show(show)
    assert '    Port vxlan-0aa80711' in modern and 'local_ip="10.168.7.132"' in modern


def test_seed1_controller_show_round_trips() -> None:
    text = excerpt(1, "c46120c7-9020-477f-93c6-33dda84ba833", "options: {peer=int-br-ex}")
    show = parse_vsctl_show(text, source="seed 001")
    assert [m.target for m in show.managers] == ["ptcp:6640:127.0.0.1", "tcp:127.0.0.1:6640"]
    assert [p.name for p in show.bridges[0].ports] == ["br-ex", "em4", "phy-br-ex"]
    assert format_vsctl_show(show, "as_parsed") == text


# --- cut captures ------------------------------------------------------------------------------------

PARTIAL = {
    # seed 000: the author's de-indented bridges, with "." elision lines
    "seed0-compute-br-int": (0, "Bridge br-int", "type: internal", 0, False),
    "seed0-network-br-int-elided": (0, "# ovs-vsctl show\n.", '    Interface "tapc2d7dd02-56"\n.\n.\n.', 0, True),
    "seed0-br-ex": (0, "Bridge br-ex", "type: internal", 0, False),
    "seed0-port-fragment": (0, '    Port "tapf14c598d-98"', '        Interface "tapf14c598d-98"', 1, False),
    # seed 001: `ovs-vsctl show | grep …` output
    "seed1-grep-bfda": (1, "ovs-vsctl show|grep bfda", '            Interface "qvobfda8db6-7b"', 0, True),
    "seed1-grep-patch-tun": (1, "ovs-vsctl show|grep patch-tun", "            Interface patch-tun", 0, True),
    "seed1-grep-patch-in": (1, "ovs-vsctl show|grep patch-in", "                options: {peer=patch-int}", 0, True),
    "seed1-grep-C10": (1, "ovs-vsctl show|grep -C10 46db", 'Port "tapc39b592a-14"', 0, True),
}


@pytest.mark.parametrize("seed,first,last,occ,prompt", PARTIAL.values(), ids=PARTIAL.keys())
def test_partial_capture_round_trips(seed: int, first: str, last: str, occ: int, prompt: bool) -> None:
    text = excerpt(seed, first, last, occurrence=occ)
    if prompt:
        text = after_prompt(text)
    part = parse_vsctl_show(text, source=f"seed {seed:03d}", partial=True)
    assert isinstance(part, VsctlShowExcerpt)
    assert lines(format_vsctl_show(part, "as_parsed")) == lines(text)


def test_partial_pieces_are_typed() -> None:
    text = after_prompt(excerpt(1, "ovs-vsctl show|grep -C10 46db", 'Port "tapc39b592a-14"'))
    part = parse_vsctl_show(text, partial=True)
    assert [type(p.item) for p in part.pieces] == [Column, Column, Bridge]
    assert [p.level for p in part.pieces] == [4, 4, 1]
    assert [(p.name, p.tag) for p in part.ports()][:2] == [("tap645ced8c-52", 14), ("tap46db5863-b8", 19)]
    assert part.ports()[-1].interfaces == ()
    text0 = between(0, ".\n.\n.\nBridge br-int", "\n\nIt connects") + "\n"
    assert lines(format_vsctl_show(parse_vsctl_show(text0, partial=True), "as_parsed")) == lines(text0)
    part0 = parse_vsctl_show(text0, partial=True)
    assert isinstance(part0.pieces[0].item, Elided) and isinstance(part0.pieces[-1].item, Elided)
    assert [b.name for b in part0.bridges()] == ["br-int"]


def test_modern_style_drops_quotes_of_names_with_digits() -> None:
    text = excerpt(0, "Bridge br-int", "type: internal")
    part = parse_vsctl_show(text, partial=True)
    assert format_vsctl_show(part).splitlines()[1] == "    Port qvo7c7ae61e-05"
    assert format_vsctl_show(part, "legacy") == text


# --- quoting rule (lib/ovsdb-data.c string_needs_quotes) ---------------------------------------------

QUOTING = {
    "identifier": ("patch-tun", False, False),
    "digits": ("qvo7c7ae61e-05", False, True),
    "leading-digit": ("10.168.7.132", True, True),
    "true": ("true", True, True),
    "colon": ("tcp:127.0.0.1:6633", True, True),
    "uuid": ("6febea71-608a-4161-af6b-7bfb24fea765", True, True),
    "empty": ("", True, True),
    "underscore": ("_x.y", False, False),
}


@pytest.mark.parametrize("s,modern,legacy", QUOTING.values(), ids=QUOTING.keys())
def test_quoting_rule(s: str, modern: bool, legacy: bool) -> None:
    assert needs_quotes(s, QuoteStyle.MODERN) is modern
    assert needs_quotes(s, QuoteStyle.LEGACY) is legacy


# --- build then parse ---------------------------------------------------------------------------------

def test_build_format_parse() -> None:
    show = OvsdbShow(
        uuid=uuid.UUID("8b7829b7-8742-4d37-8db1-f89694eaf68c"),
        managers=(Manager("ptcp:6640:127.0.0.1"),),
        bridges=(Bridge("br-tun", fail_mode="secure", datapath_type="netdev",
                        controllers=(Controller("tcp:127.0.0.1:6633"),),
                        ports=(Port("vxlan-c0a80002", (Interface("vxlan-c0a80002", "vxlan", (
                            ("df_default", "true"), ("egress_pkt_mark", "0"), ("in_key", "flow"),
                            ("local_ip", "192.168.0.1"), ("out_key", "flow"), ("remote_ip", "192.168.0.2"))),)),
                               Port("qvo3f2a1b7c-d4", (Interface("qvo3f2a1b7c-d4", "internal"),), tag=1),
                               Port("trunk", (Interface("trunk", error='could not open "trunk"'),),
                                    trunks=(1, 2, 3)))),),
        ovs_version="3.1.0")
    text = format_vsctl_show(show)
    assert text.splitlines()[-1] == '    ovs_version: "3.1.0"'
    assert '                options: {df_default="true", egress_pkt_mark="0", in_key=flow, ' \
           'local_ip="192.168.0.1", out_key=flow, remote_ip="192.168.0.2"}' in text
    assert "            trunks: [1, 2, 3]" in text
    assert '                error: "could not open \\"trunk\\""' in text
    back = parse_vsctl_show(text)
    assert back == show
    assert format_vsctl_show(back) == text


# --- malformed -------------------------------------------------------------------------------------

GOOD = """\
8b7829b7-8742-4d37-8db1-f89694eaf68c
    Bridge br-int
        Port br-int
            tag: 1
            Interface br-int
                type: internal
"""

MALFORMED = {
    "no-uuid": ("    Bridge br-int\n", 1, "UUID"),
    "odd-indent": (GOOD.replace("        Port br-int", "       Port br-int"), 3, "steps of 4"),
    "garbage": (GOOD.replace("            tag: 1", "            tag 1"), 4, "column: value"),
    "bad-tag": (GOOD.replace("tag: 1", "tag: one"), 4, "integer"),
    "too-deep": (GOOD.replace("            Interface br-int", "                Interface br-int"), 5,
                 "one level under"),
    "port-under-root": ("8b7829b7-8742-4d37-8db1-f89694eaf68c\n    Port p\n", 2, "Manager or Bridge under uuid"),
    "bad-map": (GOOD.replace("type: internal", "type: internal\n                options: {peer}"), 7,
                "'=' in a map entry"),
    "bad-bool": (GOOD.replace("    Bridge br-int\n", "    Manager m\n        is_connected: yes\n    Bridge br-int\n"),
                 3, "true or false"),
    "bad-name": (GOOD.replace("Bridge br-int", 'Bridge "br-int'), 2, "Bridge name"),
    "second-root": (GOOD + "8b7829b7-8742-4d37-8db1-f89694eaf68d\n", 7, "one Open_vSwitch record"),
}


@pytest.mark.parametrize("text,line,expected", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_show(text: str, line: int, expected: str) -> None:
    with pytest.raises(ParseError) as ei:
        parse_vsctl_show(text, source="show.txt")
    msg = str(ei.value)
    assert msg.startswith(f"show.txt:{line}: expected ") and expected in msg and "\n" not in msg


def test_vsctl_list_keeps_what_show_does_not_print() -> None:
    from neutrino.host.ovsdb import (
        bridge_list_record,
        format_vsctl_list,
        parse_list_optional,
        parse_list_set,
        parse_vsctl_list,
    )

    bridges = [Bridge("br-int", protocols=("OpenFlow10", "OpenFlow13")),
               Bridge("br-ex", datapath_id="0000aa")]
    text = format_vsctl_list([bridge_list_record(b) for b in bridges])
    assert text == ("name                : br-int\ndatapath_id         : []\n"
                    "protocols           : [OpenFlow10, OpenFlow13]\n\n"
                    'name                : br-ex\ndatapath_id         : "0000aa"\nprotocols           : []\n')
    records = parse_vsctl_list(text)
    assert [dict(r)["name"] for r in records] == ["br-int", "br-ex"]
    assert parse_list_set(dict(records[0])["protocols"]) == ("OpenFlow10", "OpenFlow13")
    assert parse_list_optional(dict(records[1])["datapath_id"]) == "0000aa"
    assert parse_list_set('["OpenFlow10", "OpenFlow13"]') == ("OpenFlow10", "OpenFlow13")  # OVS before 2.6
    assert parse_list_optional("[]") is None
    with pytest.raises(ParseError):
        parse_vsctl_list("name br-int\n")
