"""Captures with bytes no tool prints (NUL and other control characters, text that is not UTF-8)
are refused with the file and line, and nothing of the import is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from neutrino.cli import main

GOOD = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"


@pytest.mark.parametrize(("content", "where"), [
    (GOOD.encode() + b"-A INPUT -j ACC\x00EPT\n", ":4: control character U+0000 at column 16"),
    (GOOD.encode() + b"-N evil\x1b[31m\n", ":4: control character U+001B at column 8"),
    (b"-P INPUT ACCEPT\n-P FORWARD \xff\xfeACCEPT\n", ":2: not UTF-8 text (byte 0xff at column 12)"),
], ids=["nul", "escape", "not-utf8"])
def test_refused_with_file_and_line_and_nothing_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                     content: bytes, where: str) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    captures = tmp_path / "host1"
    captures.mkdir()
    (captures / "iptables_-S.txt").write_bytes(content)
    assert main(["import", str(captures)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{captures / 'iptables_-S.txt'}{where}" in err, err
    assert main(["hosts"]) == 0
    assert capsys.readouterr().out == ""


def test_tabs_and_crlf_line_ends_are_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("NEUTRINO_STATE", str(tmp_path / "state"))
    captures = tmp_path / "host2"
    captures.mkdir()
    (captures / "iptables_-S.txt").write_bytes(GOOD.replace("\n", "\r\n").encode())
    assert main(["import", str(captures)]) == 0, capsys.readouterr().err
