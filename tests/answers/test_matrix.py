"""Issue 13, part 4: ``neutrino matrix``: instances, routers, hosts and the outside; cells that agree
with individual traces on every seed; ``--save``/``--diff``; ``--expect POLICY``."""

from __future__ import annotations

import csv
import io
import json
import pathlib

import pytest

from neutrino.answers import matrix as mx
from neutrino.cli import main
from neutrino.deploy import open_cloud
from neutrino.errors import InvalidInput
from neutrino.sim.world import OUTSIDE
from neutrino.worldkeep import booted_world
from tests.answers.conftest import ROOT, Cli

SEEDS = ("seed000", "seed001", "seed002", "seed003", "seed004")


def _policy(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------- every seed, against traces


@pytest.mark.parametrize("seed", SEEDS)
def test_every_cell_agrees_with_its_own_trace(seed: str, request: pytest.FixtureRequest,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The matrix from the command line (classes of alike instances), then each cell traced on its
    own with World.probe on a world loaded afresh: the same verdict, cell by cell."""
    state = request.getfixturevalue(seed)
    monkeypatch.setenv("NEUTRINO_STATE", str(state))
    rc, out, _ = Cli(capsys)("matrix", "--json")
    assert rc == 0
    cells = [mx.Cell(**c) for c in json.loads(out)]
    cloud = open_cloud(state).snapshot()
    world = booted_world(state)
    fip = {s.name: str(f.floating_ip_address) for s in cloud.servers for f in cloud.floating_ips
           if f.port_id in s.port_ids}
    servers = {s.name for s in cloud.servers}
    kinds = set()
    wrong = []
    for c in cells:
        if c.destination in servers:
            to = fip.get(c.destination, "") if c.source == OUTSIDE else c.destination
        elif c.destination == OUTSIDE:
            to = "203.0.113.1"
        else:  # a router's address: ROUTER:ADDRESS or gateway:ADDRESS
            to = c.destination.rsplit(":", 1)[1]
        kinds.add((c.source.split(":")[0] if c.source.startswith("host:") else
                   "instance" if c.source in servers else c.source,
                   "instance" if c.destination in servers else
                   OUTSIDE if c.destination == OUTSIDE else "router"))
        name, _, port = c.proto.partition("/")
        if not to:
            ok, why = False, "no floating IP"
        else:
            try:
                trace = world.probe(c.source, to, proto=name, dport=int(port or 22))
                ok, why = trace.succeeded, ""
            except InvalidInput as exc:
                ok, why = False, str(exc)
        if ok != c.ok or (why and not c.why.startswith(why)):
            wrong.append(f"{c.source} -> {c.destination} {c.proto}: matrix {c.ok} ({c.why}), trace {ok} {why}")
    assert not wrong, "\n".join(wrong)
    assert ("instance", "router") in kinds and ("host", "instance") in kinds and \
        ("instance", OUTSIDE) in kinds  # every seed has routers (or gateways) and hosts
    assert len(cells) == len({(c.source, c.destination, c.proto) for c in cells})


# ---------------------------------------------------------------------------- output and endpoints


def test_seed000_matrix_table_json_csv(cli000: Cli) -> None:
    rc, out, _ = cli000("matrix")
    assert rc == 0
    assert [ln.rstrip() for ln in out.splitlines()[:6]] == [
        "icmp:",
        "  from \\ to    cirros outside router1:10.1.0.1 router1:172.24.4.227",
        "  cirros       .      ok      ok               ok",
        "  outside      ok     .       --               ok",
        "  host:network --     --      --               --",
        "  host:compute --     --      --               --"]
    rc, out, _ = cli000("matrix", "--no-hosts", "--no-routers")
    assert [ln.rstrip() for ln in out.splitlines()[:4]] == [
        "icmp:", "  from \\ to cirros outside", "  cirros    .      ok", "  outside   ok     ."]
    rc, out, _ = cli000("matrix", "--proto", "tcp/23", "--json")
    cells = json.loads(out)
    into = next(c for c in cells if c["source"] == "outside" and c["destination"] == "cirros")
    assert into["ok"] is False and into["proto"] == "tcp/23"
    assert into["why"].startswith("security group at compute qbr") and "no rule of security group 'default'" \
        in into["why"]
    rc, out, _ = cli000("matrix", "--proto", "tcp/22", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    out_in = next(r for r in rows if r["source"] == "outside" and r["destination"] == "cirros")
    assert out_in["ok"] == "yes" and "ingress IPv4 tcp 22 from any address" in out_in["why"]
    gw = next(r for r in rows if r["source"] == "cirros" and r["destination"] == "router1:10.1.0.1")
    assert gw["ok"] == "no" and "ARP" not in gw["why"]  # nothing listens on the router's tcp/22


def test_udp_is_traced_from_instances_only(cli000: Cli) -> None:
    rc, out, _ = cli000("matrix", "--proto", "udp/53,icmp", "--json")
    cells = json.loads(out)
    assert {c["source"] for c in cells if c["proto"] == "udp/53"} == {"cirros"}
    assert {c["source"] for c in cells if c["proto"] == "icmp"} == {"cirros", "outside", "host:network",
                                                                    "host:compute"}


def test_seed004_hosts_and_the_gateway(cli004: Cli) -> None:
    """Seed 004: the controller (nova-network, br100 holds 10.0.0.1) pings the instance; compute-1,
    where it runs, cannot (nova's instance chain drops what its own root namespace sends)."""
    rc, out, _ = cli004("matrix", "--proto", "icmp", "--format", "csv")
    rows = {(r["source"], r["destination"]): r for r in csv.DictReader(io.StringIO(out))}
    assert rows[("host:controller-1", "cirros")]["ok"] == "yes"
    blocked = rows[("host:compute-1", "cirros")]
    assert blocked["ok"] == "no" and "nova-compute-inst-9" in blocked["why"]
    assert rows[("cirros", "gateway:10.0.0.1")]["ok"] == "yes"
    rc, out, _ = cli004("matrix", "--proto", "icmp", "--no-hosts", "--format", "csv")
    assert "host:" not in out and "gateway:10.0.0.1" in out


def test_seed003_router_addresses(cli003: Cli) -> None:
    rc, cells = cli003.json("matrix", "--proto", "icmp", "--no-hosts")
    assert isinstance(cells, list)
    at = {(c["source"], c["destination"]): c for c in cells}
    assert at[("VM_3", "fip-reachability:10.1.0.1")]["ok"] is True  # tenant2's gateway, from tenant2
    assert at[("VM_1", "fip-reachability:10.0.0.1")]["ok"] is True
    assert not any(c["source"].startswith("host:") for c in cells)


def test_bad_protocol_is_one_line(cli000: Cli) -> None:
    rc, out, err = cli000("matrix", "--proto", "tcp/99999")
    assert rc == 2 and err == "neutrino: 'tcp/99999': a protocol is icmp, tcp/PORT or udp/PORT\n"


def test_diff_against_a_file_that_is_no_saved_matrix(cli000: Cli, tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text("not json\n")
    rc, out, err = cli000("matrix", "--diff", str(bad))
    assert (rc, out) == (2, "") and err.startswith(f"neutrino: {bad}: not a matrix saved with --save (")
    assert err.count("\n") == 1


# ---------------------------------------------------------------------------- --expect POLICY


def test_policy_holds(cli003: Cli, tmp_path: pathlib.Path) -> None:
    """Seed 003: the tenants ping only their own; their groups let the other tenant in on tcp."""
    policy = _policy(tmp_path, """\
isolate:
  - {from: {network: tenant1}, to: {network: tenant2}, proto: icmp}
allow:
  - {from: VM_1, to: VM_6, proto: tcp/22}
  - {from: [VM_1, VM_2], to: "fip-reachability:10.0.0.1", proto: icmp}
  - {from: host:compute-2, to: {network: tenant2}, proto: icmp}
deny:
  - {from: VM_7, to: router:fip-reachability, proto: [tcp/23]}
""")
    rc, out, err = cli003("matrix", "--expect", policy)
    # icmp both ways between 5 tenant1 and 2 tenant2 instances; 1 + 2 + 2 + 3 cells more
    assert (rc, out, err) == (0, "policy holds (28 cells checked)\n", "")


def test_policy_violation_names_the_cell_and_its_rule(cli003: Cli, tmp_path: pathlib.Path) -> None:
    policy = _policy(tmp_path, """\
# tenants must not talk at all
isolate:
  - from: {network: tenant1}
    to: {network: tenant2}
allow:
  - {from: VM_1, to: VM_3, proto: icmp}
""")
    rc, out, _ = cli003("matrix", "--expect", policy)
    lines = out.splitlines()
    assert rc == 1
    assert lines[-1] == "policy violated: 33 of 60 cells checked" and len(lines) == 34
    tcp = [ln for ln in lines if " tcp/22 is reachable" in ln]  # no proto: every protocol of the matrix
    assert tcp and tcp[0].startswith(f"{policy}:3: isolate {{network: tenant1}} -> {{network: tenant2}} "
                                     "violated: VM_1 -> VM_3 tcp/22 is reachable (")
    assert tcp[0].endswith("(allowed by '-A nova-compute-inst-3 -s 10.0.0.0/24 -p tcp -j ACCEPT' "
                           "(its security groups' chain) at compute-1 root)")  # the deciding rule
    blocked = [ln for ln in lines if ln.startswith(f"{policy}:6: allow")]
    assert blocked == [f"{policy}:6: allow VM_1 -> VM_3 violated: VM_1 -> VM_3 icmp is blocked "
                       + blocked[0].split(" is blocked ", 1)[1]]
    assert "no rule of security group 'tenant2-default'" in blocked[0]  # the drop point
    assert not any(" icmp is reachable" in ln for ln in lines)  # the tenants do not ping each other


def test_router_addresses_by_network(cli003: Cli, tmp_path: pathlib.Path) -> None:
    """Multi-host nova-network: every compute with tenant2's bridge holds tenant2's gateway, and
    answers it from tenant1 too (nothing filters what is addressed to the host itself)."""
    policy = _policy(tmp_path, "deny:\n  - {from: VM_4, to: {router: '*', network: tenant2}, proto: icmp}\n")
    rc, out, _ = cli003("matrix", "--expect", policy)
    assert rc == 1 and out.splitlines() == [
        f"{policy}:2: deny VM_4 -> {{router: *, network: tenant2}} violated: VM_4 -> fip-reachability:10.1.0.1 "
        "icmp is reachable (no rule in the way)", "policy violated: 1 of 1 cells checked"]


def test_policy_with_projects_and_the_outside(cli000: Cli, tmp_path: pathlib.Path) -> None:
    policy = _policy(tmp_path, "deny:\n  - {from: outside, to: {project: demo}, proto: tcp/22}\n")
    rc, out, err = cli000("matrix", "--expect", policy)  # seed 000's instance is the admin project's
    assert rc == 2 and err.startswith(f"neutrino: {policy}:2: {{project: demo}} matches nothing in the matrix")
    policy = _policy(tmp_path, "deny:\n  - {from: outside, to: {project: admin}, proto: tcp/22}\n")
    rc, out, _ = cli000("matrix", "--expect", policy)
    assert rc == 1 and out.splitlines() == [
        f"{policy}:2: deny outside -> {{project: admin}} violated: outside -> cirros tcp/22 is reachable "
        + out.splitlines()[0].split(" is reachable ", 1)[1],
        "policy violated: 1 of 1 cells checked"]
    assert "ingress IPv4 tcp 22 from any address" in out


@pytest.mark.parametrize("text,message", [
    ("isolate: [{from: VM_1, to: VM_3\n", ":2: not YAML: expected ',' or '}'"),
    ("deny:\n  - {from: VM_1}\n", ":2: a rule of deny needs 'to'"),
    ("allow:\n  - {from: VM_1, to: VM_9}\n", ":2: VM_9 matches nothing in the matrix (its endpoints: VM_1, "),
    ("allow:\n  - {from: VM_1, to: VM_3, proto: tcp/0}\n", ":2: 'tcp/0': a protocol is icmp, tcp/PORT or udp/PORT"),
    ("permit:\n  - {from: VM_1, to: VM_3}\n", ":1: unknown key 'permit' (a policy has isolate, deny, allow)"),
    ("deny:\n  - {from: {tenant: x}, to: VM_3}\n", ":2: unknown selector key 'tenant' (keys: instance, project"),
    ("deny:\n  - {from: VM_1, to: VM_1}\n", ":2: the rule checks no cell of the matrix"),
    ("deny:\n  - {from: host:compute-1, to: VM_3, proto: udp/53}\n", ":2: the rule checks no cell"),
    ("", ":1: a policy is a mapping of isolate, deny, allow"),
])
def test_malformed_policy_is_one_line(cli003: Cli, tmp_path: pathlib.Path, text: str, message: str) -> None:
    policy = _policy(tmp_path, text)
    rc, out, err = cli003("matrix", "--expect", policy, "--proto", "icmp")
    assert rc == 2 and out == ""
    assert err.startswith(f"neutrino: {policy}{message}") and err.count("\n") == 1, err


def test_policy_file_missing(cli003: Cli, tmp_path: pathlib.Path) -> None:
    rc, _, err = cli003("matrix", "--expect", str(tmp_path / "nope.yaml"))
    assert rc == 2 and err == f"neutrino: {tmp_path / 'nope.yaml'}: No such file or directory\n"


def test_no_hosts_and_a_host_selector(cli004: Cli, tmp_path: pathlib.Path) -> None:
    policy = _policy(tmp_path, "allow:\n  - {from: {host: controller-1}, to: cirros, proto: icmp}\n")
    assert cli004("matrix", "--expect", policy) == (0, "policy holds (1 cells checked)\n", "")
    rc, _, err = cli004("matrix", "--expect", policy, "--no-hosts")
    assert rc == 2 and "{host: controller-1} matches nothing in the matrix" in err


# ---------------------------------------------------------------------------- --save / --diff, classes


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
    # ten instances and the outside as sources and destinations, no diagonal; three hosts to
    # those; everything but the outside to the router's four addresses and two unrouted gateways
    assert len(classes) == 11 * 10 + 3 * 11 + 14 * 6
    assert any("[traced as " in c.why for c in classes)
    assert not any("[traced as " in c.why for c in every)
