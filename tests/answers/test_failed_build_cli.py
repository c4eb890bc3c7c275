"""A server whose build failed (no compute's OVS agent can bind its port: Nova reschedules, runs out of
hosts, puts it in ERROR and gives its ports back) seen from the command line: ``up`` lists it with the
server's status and says what Nova's fault says; ``ping``, ``trace`` and ``diagnose`` from or to it
answer in one line that it is in ERROR with no port, and why, instead of "no instance named"."""

from __future__ import annotations

import pathlib

import pytest

from neutrino.deploy import failed_builds
from tests.answers.conftest import Cli
from tests.scenarios.test_novafail_up import SCENARIO

EXHAUSTED = "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance "


def cli_up(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           scenario: str) -> tuple[Cli, str]:
    """``neutrino up`` of the ``scenario`` text in a state folder of its own: the CLI and what up printed."""
    path = tmp_path / "scenario.yaml"
    path.write_text(scenario)
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    cli = Cli(capsys)
    rc, out, err = cli("up", str(path))
    assert rc == 0, err
    return cli, out


@pytest.fixture
def up(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[Cli, str]:
    return cli_up(tmp_path, monkeypatch, capsys, SCENARIO)


def test_up_lists_the_failed_server_and_its_fault(up: tuple[Cli, str]) -> None:
    _, out = up
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("vm-")}
    assert rows["vm-ok"][-1] == "ACTIVE"
    assert rows["vm-bad"][1:] == ["-", "-", "-", "-", "server", "ERROR"]
    (said,) = [line for line in out.splitlines() if line.startswith("vm-bad: ")]
    assert said.startswith(f"vm-bad: ERROR, its build failed: {EXHAUSTED}")
    faults = failed_builds()
    assert list(faults) == ["vm-bad"] and said.endswith(faults["vm-bad"])


@pytest.mark.parametrize("argv", [("ping", "vm-bad", "vm-ok"), ("trace", "vm-ok", "vm-bad"),
                                  ("diagnose", "vm-bad", "vm-ok"), ("diagnose", "vm-ok", "vm-bad")],
                         ids=["ping-from", "trace-to", "diagnose-from", "diagnose-to"])
def test_probes_name_the_error_state(up: tuple[Cli, str], argv: tuple[str, ...]) -> None:
    cli, _ = up
    rc, out, err = cli(*argv)
    assert rc == 2 and out == ""
    assert err.startswith(f"neutrino: vm-bad is in ERROR, with no port (its build failed: {EXHAUSTED}")
    assert err.count("\n") == 1


def test_an_unknown_name_is_still_unknown(up: tuple[Cli, str]) -> None:
    cli, _ = up
    rc, _, err = cli("ping", "vm-nope", "vm-ok")
    assert rc == 2 and err == "neutrino: no instance named 'vm-nope'\n"
    rc, out, _ = cli("ping", "vm-ok", "10.1.0.1")  # no router: the gateway address is nobody's
    assert rc == 1 and out.startswith("vm-ok -> 10.1.0.1: no reply: ARP unanswered") and "ERROR" not in out


def test_the_matrix_says_what_it_leaves_out(up: tuple[Cli, str]) -> None:
    cli, _ = up
    rc, out, _ = cli("matrix", "--proto", "icmp")
    assert rc == 0 and "vm-bad" not in out.split("not in the matrix:")[0]
    assert out.splitlines()[-1].startswith(f"not in the matrix: vm-bad, in ERROR with no port (its build failed: "
                                           f"{EXHAUSTED}")
    rc, out, _ = cli("matrix", "--proto", "icmp", "--format", "csv")  # machine formats stay cells only
    assert rc == 0 and "not in the matrix" not in out
