"""`neutrino import` of a real deployment: one sub-folder per host, a sosreport, a .tar.gz of
either; imported hosts kept apart from planned ones (refused without --replace); a refused or
failed import keeps nothing."""

from __future__ import annotations

import json
import pathlib
import shutil
import tarfile

import pytest

from neutrino import store
from neutrino.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "examples" / "captures"


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    return tmp_path / "state"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def deployment(tmp_path: pathlib.Path) -> pathlib.Path:
    dep = tmp_path / "dep"
    if dep.exists():
        return dep
    shutil.copytree(CAPTURES / "seed000-network", dep / "network")
    shutil.copytree(CAPTURES / "seed000-compute", dep / "compute")
    return dep


def test_a_folder_per_host_imports_every_host_named_by_folder(capsys, tmp_path):
    rc, out, _ = run(capsys, "import", str(deployment(tmp_path)), "--json")
    assert rc == 0
    doc = json.loads(out)
    assert [h["host"] for h in doc["hosts"]] == ["compute", "network"]
    assert store.list_hosts() == ["compute", "network"]
    assert store.host_kind("network") == "imported"
    rc, out, _ = run(capsys, "exec", "network", "--", "ovs-ofctl", "dump-flows", "br-tun")
    assert rc == 0 and "NXST_FLOW" in out or "table=" in out


def test_importing_over_a_host_is_refused_without_replace_and_keeps_nothing(capsys, tmp_path):
    assert run(capsys, "import", str(CAPTURES / "seed000-network"), "--host", "network")[0] == 0
    before = (store.hosts_dir() / "network" / "source").read_text()
    rc, out, err = run(capsys, "import", str(deployment(tmp_path)))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "'network' (imported)" in err and "--replace" in err
    assert store.list_hosts() == ["network"]  # the refused import kept nothing: no 'compute'
    assert (store.hosts_dir() / "network" / "source").read_text() == before
    rc, out, _ = run(capsys, "import", str(deployment(tmp_path)), "--replace")
    assert rc == 0 and store.list_hosts() == ["compute", "network"]


def test_a_planned_host_is_not_silently_replaced(capsys, tmp_path):
    import dataclasses

    seed = store.import_host(CAPTURES / "seed000-compute", "seed")
    store.save_host(dataclasses.replace(seed, name="network"))  # as 'neutrino up' keeps a host it planned
    assert store.host_kind("network") == "planned"
    rc, _, err = run(capsys, "import", str(CAPTURES / "seed000-network"), "--host", "network")
    assert rc == 2 and "'network' (planned)" in err
    assert store.host_kind("network") == "planned"


def test_up_does_not_silently_replace_an_imported_host(capsys, tmp_path):
    """The other way round: a scenario that plans a host named as an imported one is refused
    before anything is made; --replace puts the planned host in its place."""
    assert run(capsys, "import", str(CAPTURES / "seed000-network"), "--host", "network")[0] == 0
    rc, _, err = run(capsys, "up", str(ROOT / "examples" / "seed000.yaml"))
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("neutrino: already kept: imported host network (") and "--replace" in err
    assert store.host_kind("network") == "imported" and not (store.state_dir() / "cloud.json").exists()
    rc, _, err = run(capsys, "up", "--replace", str(ROOT / "examples" / "seed000.yaml"))
    assert rc == 0, err
    assert store.host_kind("network") == "planned"


def test_a_tar_gz_of_a_deployment_and_of_one_host(capsys, tmp_path):
    dep = deployment(tmp_path)
    archive = tmp_path / "site.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(dep, arcname="site")
    rc, out, _ = run(capsys, "import", str(archive))
    assert rc == 0 and "imported host compute" in out and "imported host network" in out
    one = tmp_path / "compute-7.tar.gz"
    with tarfile.open(one, "w:gz") as tar:
        tar.add(CAPTURES / "seed000-compute", arcname="compute-7")
    rc, out, _ = run(capsys, "import", str(one))
    assert rc == 0 and "imported host compute-7" in out
    assert json.loads((store.hosts_dir() / "compute-7" / store.IMPORTED).read_text())["source"] == \
        f"{one}:compute-7"


def test_a_deployment_with_host_picks_one(capsys, tmp_path):
    rc, out, _ = run(capsys, "import", str(deployment(tmp_path)), "--host", "compute")
    assert rc == 0 and store.list_hosts() == ["compute"]
    rc, _, err = run(capsys, "import", str(deployment(tmp_path)), "--host", "nope")
    assert rc == 2 and "no host 'nope' (its hosts: compute, network)" in err


def test_a_sosreport_layout(capsys, tmp_path):
    """A sosreport names each file by its command (spaces as ``_``) under sos_commands/<plugin>/,
    as sos's networking and openvswitch plugins write them (``ovs-vsctl_-t_5_show``,
    ``ip_netns_exec_NS_ip_route``...); files neutrino does not read are counted, not errors."""
    sos = tmp_path / "sosreport-net1-2024-01-01-abcdef"
    net = sos / "sos_commands" / "networking"
    ovs = sos / "sos_commands" / "openvswitch"
    net.mkdir(parents=True)
    ovs.mkdir(parents=True)
    (sos / "hostname").write_text("net1.example.org\n")
    src = CAPTURES / "seed000-network"
    router = "qrouter-2d214fde-293c-4d64-8062-797f80ae2d8f"

    def output(name: str) -> str:  # the seed's capture without its '$ command' line, as sos keeps it
        text = (src / name).read_text()
        return text.split("\n", 1)[1] if text.startswith("$ ") else text

    (net / f"ip_netns_exec_{router}_ip_route").write_text(output(f"ip_netns_exec_{router}_ip_route.txt"))
    (ovs / "ovs-vsctl_-t_5_show").write_text(output("ovs-vsctl_show.txt"))
    (ovs / "ovs-ofctl_dump-flows_br-tun").write_text(output("ovs-ofctl_dump-flows_br-tun.txt"))
    (net / "ethtool_-k_eth0").write_text("Features for eth0:\n")
    (net / "netstat_-neopa").write_text("Active Internet connections\n")
    rc, out, _ = run(capsys, "import", str(sos))
    assert rc == 0 and "imported host net1" in out
    assert "sosreport: 3 command outputs read, 2 others not read" in out
    rc, out, _ = run(capsys, "exec", "net1", "--", "ip", "netns", "exec", router, "ip", "route")
    assert rc == 0 and out == output(f"ip_netns_exec_{router}_ip_route.txt")


@pytest.mark.parametrize("make, expected", [
    (lambda p: p, "no such file or directory"),
    (lambda p: (p.mkdir(), p)[1], "no capture files in it"),
    (lambda p: (p.write_text("x"), p)[1], "not a directory of captures nor a .tar.gz"),
    (lambda p: (p.with_suffix(".tar.gz").write_bytes(b"\x1f\x8bnot gzip"), p.with_suffix(".tar.gz"))[1],
     "not a readable tar archive"),
])
def test_bad_paths_are_one_line_errors(capsys, tmp_path, make, expected):
    path = make(tmp_path / "thing")
    rc, out, err = run(capsys, "import", str(path))
    assert rc == 2 and expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert store.list_hosts() == []


def test_one_unreadable_host_keeps_no_host(capsys, tmp_path):
    dep = deployment(tmp_path)
    (dep / "network" / "ip_rule.txt").write_text("this is not ip rule output\n")
    rc, _, err = run(capsys, "import", str(dep))
    assert rc == 2 and "ip_rule.txt:1" in err and err.count("\n") == 1
    assert store.list_hosts() == []


def test_collect_prints_its_script(capsys):
    rc, out, _ = run(capsys, "collect", "--print-script")
    assert rc == 0 and out.startswith("#!/bin/sh") and "ip netns exec" in out and "tar czf" in out


def test_a_malformed_sosreport_file_is_named_with_its_own_line(capsys, tmp_path):
    """An error in a sosreport's file names that file (not the staged copy) and its own line."""
    sos = tmp_path / "sosreport-x"
    net = sos / "sos_commands" / "networking"
    net.mkdir(parents=True)
    (net / "ip_-4_rule_list").write_text("0:\tfrom all lookup local\nthis is no rule\n")
    rc, out, err = run(capsys, "import", str(sos))
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"neutrino: {net / 'ip_-4_rule_list'}:2: expected")
    assert store.list_hosts() == []


def test_a_sosreport_with_nothing_neutrino_reads(capsys, tmp_path):
    sos = tmp_path / "sosreport-y"
    (sos / "sos_commands" / "networking").mkdir(parents=True)
    (sos / "sos_commands" / "networking" / "netstat_-W_-neopa").write_text("Active Internet connections\n")
    rc, _, err = run(capsys, "import", str(sos))
    assert rc == 2 and "none of its sos_commands files is one neutrino reads" in err


def test_loose_files_beside_the_host_folders_are_reported_not_read(capsys, tmp_path):
    dep = deployment(tmp_path)
    (dep / "NOTES.txt").write_text("captured on Tuesday\n")
    rc, out, _ = run(capsys, "import", str(dep))
    assert rc == 0 and store.list_hosts() == ["compute", "network"]
    assert "not read: NOTES.txt (a deployment holds one folder or .tar.gz per host)" in out


def test_a_folder_of_host_archives(capsys, tmp_path):
    """What `neutrino collect` leaves on each host, gathered in one folder: HOST.tar.gz each."""
    site = tmp_path / "site"
    site.mkdir()
    for name, src in (("net-1", "seed000-network"), ("cmp-1", "seed000-compute")):
        with tarfile.open(site / f"{name}.tar.gz", "w:gz") as tar:
            tar.add(CAPTURES / src, arcname=name)
    rc, out, _ = run(capsys, "import", str(site), "--json")
    assert rc == 0 and [h["host"] for h in json.loads(out)["hosts"]] == ["cmp-1", "net-1"]
    assert json.loads((store.hosts_dir() / "net-1" / store.IMPORTED).read_text())["source"] == str(site / "net-1.tar.gz")


def test_an_archive_reaching_outside_is_refused(capsys, tmp_path):
    import io

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"$ ip rule\n0:\tfrom all lookup local\n"
        info = tarfile.TarInfo("../escaped/ip_rule.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    rc, _, err = run(capsys, "import", str(archive))
    assert rc == 2 and "refused" in err and "outside" in err and err.count("\n") == 1
    assert not (tmp_path.parent / "escaped").exists() and store.list_hosts() == []


def test_one_hosts_archive_named_by_host(capsys, tmp_path):
    """`neutrino collect` packs HOST/ into HOST.tar.gz; `--host` names it otherwise."""
    one = tmp_path / "node-17.tar.gz"
    with tarfile.open(one, "w:gz") as tar:
        tar.add(CAPTURES / "seed000-network", arcname="node-17")
    rc, out, _ = run(capsys, "import", str(one), "--host", "network")
    assert rc == 0 and "imported host network" in out and store.list_hosts() == ["network"]
