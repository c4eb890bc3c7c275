"""Issue 13, part 4: ``neutrino matrix``."""

from __future__ import annotations

import csv
import io
import json
import pathlib

import pytest

from neutrino.answers import matrix as mx
from neutrino.cli import main
from neutrino.deploy import open_cloud
from neutrino.worldkeep import booted_world
from tests.answers.conftest import ROOT, Cli


def test_seed000_matrix_table_json_csv(cli000: Cli) -> None:
    rc, out, _ = cli000("matrix")
    assert rc == 0
    assert [ln.rstrip() for ln in out.splitlines()[:4]] == [
        "icmp:", "  from \\ to cirros outside", "  cirros    .      ok", "  outside   ok     ."]
    rc, out, _ = cli000("matrix", "--proto", "tcp/23", "--json")
    cells = json.loads(out)
    into = next(c for c in cells if c["source"] == "outside")
    assert into["ok"] is False and into["destination"] == "cirros" and into["proto"] == "tcp/23"
    assert into["why"].startswith("security group at compute qbr") and "no rule of security group 'default'" \
        in into["why"]
    rc, out, _ = cli000("matrix", "--proto", "tcp/22", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    out_in = next(r for r in rows if r["source"] == "outside")
    assert out_in["ok"] == "yes" and "ingress IPv4 tcp 22 from any address" in out_in["why"]


def test_bad_protocol_is_one_line(cli000: Cli) -> None:
    rc, out, err = cli000("matrix", "--proto", "tcp/99999")
    assert rc == 2 and err == "neutrino: 'tcp/99999': a protocol is icmp, tcp/PORT or udp/PORT\n"


def test_save_then_diff_after_a_rule_change(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from neutrino import worldkeep
    from neutrino.deploy import replan
    from neutrino.services import securitygroups

    state = tmp_path / "state"
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    assert main(["up", str(ROOT / "examples" / "seed000.yaml")]) == 0
    cli = Cli(capsys)
    saved = tmp_path / "before.json"
    assert cli("matrix", "--proto", "tcp/22", "--save", str(saved))[0] == 0
    assert cli("matrix", "--proto", "tcp/22", "--diff", str(saved)) == (0, "no change\n", "")
    cloud = open_cloud(state)
    with cloud.write(cloud.admin_context()) as tx:
        rule = next(r for r in securitygroups.list_rules(tx, {}) if r["port_range_min"] == 22)
        securitygroups.delete_rule(tx, rule["id"])
    replan(state)
    worldkeep.invalidate(state)
    rc, out, _ = cli("matrix", "--proto", "tcp/22", "--diff", str(saved))
    assert rc == 1
    assert out.startswith("- outside -> cirros tcp/22: now blocked (security group at compute qbr")


def test_classes_answer_like_the_exhaustive_matrix(seed001: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(seed001))
    cloud = open_cloud(seed001).snapshot()
    classes = mx.matrix(booted_world(seed001), cloud, ("icmp",))
    every = mx.matrix(booted_world(seed001), cloud, ("icmp",), exhaustive=True)
    assert [(c.source, c.destination, c.ok) for c in classes] == \
        [(c.source, c.destination, c.ok) for c in every]
    assert len(classes) == 11 * 10  # ten instances and the outside, no diagonal
    assert any("[traced as " in c.why for c in classes)
    assert not any("[traced as " in c.why for c in every)
