"""Every seed's packet claims from the command line, on hosts saved by ``neutrino up`` and loaded
back by each later command (and on the world kept between commands), not on objects in memory.

Each claim is the command a user types, the exit status (0: the packet and its reply went through;
1: dropped) and words the answer must hold. The same claims are re-enacted with more detail on the
simulator's objects in test_sim_seed00N.py; here they must hold through the state folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from neutrino.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CLAIMS: dict[str, list[tuple[list[str], int, str]]] = {
    "seed000": [
        # the instance reaches the internet through the router's SNAT (A-D-F-G/H-I-N-K-L)
        (["ping", "cirros", "8.8.8.8"], 0, "reply"),
        (["trace", "cirros", "8.8.8.8", "--level", "minimal"], 0, "delivered"),
        # ssh in through the floating IP is let in by the rule opened for port 22; telnet is not
        (["trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22", "--level", "minimal"], 0,
         "delivered"),
        (["trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "23", "--level", "minimal"], 1,
         "dropped"),
        # the metadata request is redirected to the proxy on 9697 in the router namespace
        (["trace", "cirros", "169.254.169.254", "--proto", "http"], 0, "9697"),
        (["ping", "cirros", "10.1.0.1"], 0, "reply"),
    ],
    "seed001": [
        # the floating IP reaches compute over VXLAN, but the "bare" group lets nothing in
        (["trace", "outside", "192.168.100.41", "--proto", "tcp", "--dport", "22", "--level", "minimal"], 1,
         "dropped"),
        (["ping", "vm1", "8.8.8.8"], 1, "no reply"),
    ],
    "seed002": [
        # web and app on net1 (VLAN 1 on the physnet), across br-eth0 and br-int
        (["ping", "web", "app"], 0, "reply"),
    ],
    "seed003": [
        # Scenario 3: same tenant, same host; Scenario 4: same tenant across hosts over VLAN 100
        (["ping", "VM_1", "VM_2"], 0, "reply"),
        (["ping", "VM_1", "VM_5"], 0, "reply"),
        (["ping", "VM_4", "VM_1"], 0, "reply"),
    ],
    "seed004": [
        # the controller (nova-network, br100 10.0.0.1) pings the instance; a compute node cannot
        (["ping", "host:controller-1", "10.0.0.2"], 0, "reply"),
        (["ping", "host:compute-1", "10.0.0.2"], 1, "Operation not permitted"),
    ],
}

CASES = [(seed, argv, rc, text) for seed, claims in CLAIMS.items() for argv, rc, text in claims]


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each seed brought up once, by the command line, in its own state folder."""
    out = {}
    mp = pytest.MonkeyPatch()
    try:
        for seed in CLAIMS:
            folder = tmp_path_factory.mktemp(seed) / "state"
            mp.setenv("NEUTRINO_STATE", str(folder))
            assert main(["up", str(EXAMPLES / f"{seed}.yaml")]) == 0
            out[seed] = folder
    finally:
        mp.undo()
    return out


@pytest.mark.parametrize(("seed", "argv", "rc", "text"), CASES,
                         ids=[f"{c[0]}: {' '.join(c[1][:3])}" + (f" {c[1][4]}/{c[1][6]}" if "--dport" in c[1] else "")
                              for c in CASES])
def test_claim_from_the_command_line(states, seed, argv, rc, text, monkeypatch, capsys) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(states[seed]))
    capsys.readouterr()
    got = main(argv)
    out = capsys.readouterr()
    assert got == rc, out.out + out.err
    assert text in out.out, out.out


def test_the_world_is_kept_between_commands(states, monkeypatch, capsys) -> None:
    """After the first command the booted world is in the state folder and later commands use it."""
    monkeypatch.setenv("NEUTRINO_STATE", str(states["seed000"]))
    assert main(["ping", "cirros", "8.8.8.8"]) == 0
    assert (states["seed000"] / "world.pickle").is_file()
    capsys.readouterr()


@pytest.mark.parametrize("argv", [["trace", "cirros", "8.8.8.8", "--json"],
                                  ["trace", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "22"]])
def test_a_world_booted_again_names_what_the_kept_one_named(states, argv, monkeypatch, capsys) -> None:
    """Without its kept world (stale, deleted) a command boots the world again from the hosts in the
    state folder: its traces name the same OpenStack objects (an iptables rule's port, security group
    rule, floating IP), which iptables-save does not print and the store keeps beside the captures."""
    import json
    import shutil

    folder = states["seed000"].parent / "rebooted"
    shutil.copytree(states["seed000"], folder)
    monkeypatch.setenv("NEUTRINO_STATE", str(folder))
    capsys.readouterr()
    assert main(argv) == 0
    kept = capsys.readouterr().out
    assert (folder / "world.pickle").is_file()
    (folder / "world.pickle").unlink()
    assert main(argv) == 0
    assert capsys.readouterr().out == kept
    assert (folder / "world.pickle").is_file()
    if "--json" in argv:
        objs = [st["obj"] for hop in json.loads(kept)["hops"] for st in hop["steps"] if st["kind"] == "rule"]
        assert any("of instance 'cirros'" in o for o in objs), objs
        assert any("security group 'default'" in o for o in objs), objs
    else:
        assert "[floating IP 172.24.4.228" in kept
    shutil.rmtree(folder)
