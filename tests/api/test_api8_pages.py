"""SQLite databases made from now on have 2 KiB pages (``db/session.py`` ``SQLITE_PAGE_SIZE``: a commit
writes every page it changed, whole, to the WAL, so a port's create writes less); a database made
before keeps its 4 KiB pages (SQLite changes them only by rewriting the file) and works as it did.
Either page size gives the same answers, byte for byte but for the timestamps (the plain path: 4 KiB
pages, as every database had before)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from neutrino.db import session as dbsession
from neutrino.db.session import SQLITE_PAGE_SIZE, Database
from neutrino.scenarios.model import default_scenario
from neutrino.services import networks, ports
from neutrino.services.cloud import Cloud, prepare
from tests.api.api_helpers import app_headers


def _page_size(path: Path) -> int:
    with sqlite3.connect(path) as c:
        return int(c.execute("PRAGMA page_size").fetchone()[0])


def test_a_new_database_has_the_small_pages_and_wal(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/new.db")
    try:
        with db.read() as s:
            assert s.execute(text("PRAGMA page_size")).scalar() == SQLITE_PAGE_SIZE == 2048
            assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        db.dispose()
    assert _page_size(tmp_path / "new.db") == 2048


_TIMESTAMP = re.compile(rb'"(created_at|updated_at)":"[0-9TZ:-]+"')


def _script(tmp: Path, name: str) -> tuple[list[tuple[int, bytes]], Path]:
    """The same requests (seeded ids and MACs) to an in-process app on a database of its own: each
    answer's status and body (timestamps blanked), and the database's path."""
    from starlette.testclient import TestClient

    from neutrino.api.serve import make_app

    path = tmp / f"{name}.db"
    application, _ = make_app(f"sqlite:///{path}", None, "keystone", "api8-pages")
    out: list[tuple[int, bytes]] = []
    with TestClient(application) as c:
        headers = app_headers(c)
        project = c.get("/identity/v3/auth/tokens", headers={**headers, "X-Subject-Token": headers["X-Auth-Token"]}
                        ).json()["token"]["project"]["id"]

        def call(method: str, url: str, body: Any = None) -> Any:
            r = c.request(method, "/v2.0" + url, json=body, headers=headers)
            out.append((r.status_code, _TIMESTAMP.sub(rb'"\1":"-"', r.content).replace(project.encode(), b"P")))
            return r.json() if r.content else None

        call("PUT", f"/quotas/{project}", {"quota": {"port": 40}})
        net = call("POST", "/networks", {"network": {"name": "pages"}})["network"]["id"]
        sub = call("POST", "/subnets", {"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.8.0.0/24"}}
                   )["subnet"]["id"]
        made = [call("POST", "/ports", {"port": {"network_id": net, "name": f"p{i}" * (i + 1)}})["port"]["id"]
                for i in range(25)]
        call("POST", "/ports", {"port": {"network_id": net, "fixed_ips": [{"subnet_id": sub, "ip_address": "10.8.0.200"}],
                                         "mac_address": "fa:16:3e:00:00:01", "description": "x" * 900}})
        call("POST", "/ports", {"port": {"network_id": net, "mac_address": "fa:16:3e:00:00:01"}})  # 409: taken
        call("PUT", f"/ports/{made[3]}", {"port": {"name": "renamed", "binding:profile": {"k": "v" * 3000}}})
        for pid in made[5:12]:
            call("DELETE", f"/ports/{pid}")
        call("POST", "/ports", {"port": {"network_id": net}})  # the lowest free address again
        call("GET", "/ports")
        call("GET", "/ports?limit=4")
        call("GET", f"/ports?network_id={net}&device_owner=network:dhcp")
        call("GET", f"/ports/{made[3]}")
        call("GET", f"/quotas/{project}/details")
    return out, path


def test_answers_are_the_same_on_pages_of_either_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbsession, "SQLITE_PAGE_SIZE", 4096)  # the plain path: every database before
    plain, plain_path = _script(tmp_path, "plain")
    monkeypatch.undo()
    small, small_path = _script(tmp_path, "small")
    assert (_page_size(plain_path), _page_size(small_path)) == (4096, 2048)
    assert [s for s, _ in small] == [s for s, _ in plain]
    assert small == plain
    assert sum(1 for s, _ in small if s == 201) == 29  # network, subnet, 27 ports (the 409 refused)
    listing = json.loads(next(b for s, b in small if b.startswith(b'{"ports":[') and b.count(b'"id"') > 10))
    assert len(listing["ports"]) == 28 - 7  # 27 made, the DHCP port, 7 deleted


def test_a_database_made_with_4k_pages_keeps_them_and_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    monkeypatch.setattr(dbsession, "SQLITE_PAGE_SIZE", 4096)
    cloud = Cloud(Database(url), default_scenario())
    admin = cloud.admin_context()
    with cloud.write(admin) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "old"}))["id"]
        networks.create_subnet(tx, prepare("subnet", {"network_id": net, "ip_version": 4, "cidr": "10.7.0.0/24"}))
    for i in range(5):
        with cloud.write(admin) as tx:
            ports.create_port(tx, prepare("port", {"network_id": net, "name": f"before{i}"}))
    cloud.db.dispose()
    monkeypatch.undo()
    assert dbsession.SQLITE_PAGE_SIZE == 2048
    db = Database(url)  # opened with the new setting: the file keeps its pages
    try:
        cloud = Cloud(db, default_scenario())
        for i in range(40):
            with cloud.write(admin) as tx:
                ports.create_port(tx, prepare("port", {"network_id": net, "name": f"after{i}"}))
        with cloud.read(admin) as tx:
            listed = ports.list_ports(tx, {})
        assert [p["name"] for p in listed if p["device_owner"] == ""] == \
            [f"before{i}" for i in range(5)] + [f"after{i}" for i in range(40)]
        assert sorted(a["ip_address"] for p in listed for a in p["fixed_ips"]) == \
            sorted(f"10.7.0.{n}" for n in range(2, 48))  # the DHCP port's and 45 more, lowest first
        with db.engine.connect() as c:
            assert c.execute(text("PRAGMA page_size")).scalar() == 4096
            assert c.execute(text("SELECT ports FROM port_usage WHERE project_id = :p"),
                             {"p": admin.project_id}).scalar() == \
                c.execute(text("SELECT count(*) FROM ports WHERE project_id = :p"), {"p": admin.project_id}).scalar()
    finally:
        db.dispose()
    assert _page_size(tmp_path / "old.db") == 4096
