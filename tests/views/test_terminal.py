"""Issue 14's terminal: ``up`` ends with a table of the instances (plain aligned text when piped, rich's
table and colour on a terminal), ``--json`` on ``up``, ``hosts``, ``import`` and ``explain``, and no
escape code ever written to a pipe."""

from __future__ import annotations

import io
import json
import pathlib

import pytest

from neutrino.cli import main
from neutrino.views.terminal import Cell, Progress, instance_table, paint, table, use_colour

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED000 = ROOT / "examples" / "seed000.yaml"
ESC = "\x1b["


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    return tmp_path / "state"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_up_ends_with_the_instances(state, capsys):
    rc, out, err = run(capsys, "up", str(SEED000))
    assert rc == 0 and ESC not in out and ESC not in err
    lines = out.splitlines()
    assert "host compute: 0 namespaces, 5 flows, 28 iptables rules" in lines
    head = lines.index(next(ln for ln in lines if ln.startswith("instance ")))
    assert lines[head].split() == ["instance", "host", "IP", "MAC", "floating", "IP", "port", "status"]
    assert set(lines[head + 1]) == {"-", " "}
    row = lines[head + 2].split()
    assert row[:3] == ["cirros", "compute", "10.1.0.2/24"] and row[3].startswith("fa:16:3e:")
    assert row[4:] == ["172.24.4.228", "ACTIVE"]
    assert lines[head + 2].index("172.24.4.228") == lines[head].index("floating IP")  # aligned
    assert lines[-1] == "ask with: neutrino exec HOST -- COMMAND"
    # progress, plain on a pipe: one line per finished stage on stderr
    assert err.startswith("up: cloud made through the API, hosts planned (") and err.endswith(" s)\n")


def test_up_json(state, capsys):
    rc, out, _ = run(capsys, "up", str(SEED000), "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["backend"] == "sim" and {h["name"] for h in doc["hosts"]} == {"network", "compute"}
    assert [h for h in doc["hosts"] if h["name"] == "network"][0]["namespaces"] == 2
    (vm,) = doc["instances"]
    assert vm["name"] == "cirros" and vm["host"] == "compute" and vm["ip"] == "10.1.0.2/24"
    assert vm["floating_ip"] == "172.24.4.228" and vm["port_status"] == "ACTIVE" and vm["mac"].startswith("fa:16:3e:")


def test_hosts_import_explain_json(state, capsys):
    rc, out, _ = run(capsys, "import", str(ROOT / "examples" / "captures" / "seed000-network"), "--host", "s0",
                     "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["host"] == "s0" and doc["namespaces"] == 2 and doc["flows"] > 0
    assert doc["partial"] == ["ovs-vsctl show"]
    assert json.loads(run(capsys, "hosts", "--json")[1]) == ["s0"]
    rc, out, _ = run(capsys, "explain", "s0", "br-tun", "--json")
    (section,) = json.loads(out)
    assert rc == 0 and section["kind"] == "flows" and section["name"] == "br-tun"
    assert all(e["line"].startswith(" cookie=") and e["explanation"].startswith("table ")
               for e in section["entries"])
    text = run(capsys, "explain", "s0", "br-tun")[1]
    assert text.count("     -> ") == len(section["entries"])


def test_tables_plain_and_coloured():
    rows = [("cirros", Cell("ACTIVE", "ok")), ("vm2", Cell("DOWN", "bad")), ("vm3", "")]
    plain = table(("name", "status"), rows, colour=False)
    assert plain == "name    status\n------  ------\ncirros  ACTIVE\nvm2     DOWN\nvm3     -\n"
    coloured = table(("name", "status"), rows, colour=True)
    assert "\x1b[32mACTIVE" in coloured and "\x1b[1;31mDOWN" in coloured and "┃" in coloured
    assert paint("x", "bad", colour=False) == "x" and paint("x", "bad", colour=True) == "\x1b[1;31mx\x1b[0m"
    assert instance_table([], colour=False) == "(no instances)\n"


def test_colour_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_colour(_Tty()) and not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(_Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not use_colour(_Tty())


def test_progress_plain_and_live(monkeypatch):
    plain = io.StringIO()
    p = Progress("up", plain)
    with p.stage("planned"):
        pass
    with pytest.raises(RuntimeError), p.stage("failed"):
        raise RuntimeError("boom")
    assert plain.getvalue().startswith("up: planned (") and "failed" not in plain.getvalue()
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = _Tty()
    with Progress("up", tty).stage("built"):
        pass
    assert "built" in tty.getvalue() and "✓" in tty.getvalue()


def test_up_and_explain_in_colour_on_a_terminal(state, capsys, monkeypatch):
    """On a terminal (stdout's isatty), up's table is rich's and explain colours its lines."""
    assert main(["up", str(SEED000)]) == 0
    capsys.readouterr()
    tty = _Tty()
    monkeypatch.setattr("sys.stdout", tty)
    assert main(["explain", "compute", "FORWARD"]) == 0
    out = tty.getvalue()
    assert ESC in out and "-P FORWARD ACCEPT" in out and "the policy: packets" in out
    tty2 = _Tty()
    monkeypatch.setattr("sys.stdout", tty2)
    assert main(["up", "--replace", str(SEED000)]) == 0
    assert "\x1b[32mACTIVE" in tty2.getvalue() and "┃" in tty2.getvalue()
