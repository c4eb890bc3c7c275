"""Review16 of api17: a non-admin's port delete now checks the policy on the port's head inside the
delete's own transaction (``neutron._port_delete_check``, ``ports.delete_port(..., check=...)``)
instead of ``_check_change``'s read transaction before it. The cases api17's sequence leaves out,
with the answers the tree before api17 gives (this file passes there too, unchanged):

- a reader with a wrong revision (If-Match) on a port it sees: 403, the policy before the revision;
- a reader with a wrong revision on a port it does not see: 404;
- a member's own port on the admin's shared network (no network owner read): a wrong revision 412,
  then deleted;
- another project's port on the admin's shared network: 404 (the member sees neither it nor, as
  owner, its network), with or without a revision;
- another project's port on the member's own network with a wrong revision: 412 (the network owner
  may delete it: the policy passes, then the revision is looked at), then deleted;
- a port the member owns (made by the admin for it) on the admin's network that is not shared: a
  reader 403, the member deletes it (no network owner read: it owns the port), then 404;
- what is left afterwards, and the writer lock free on PostgreSQL after each answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.api_helpers import app_auth, app_headers
from tests.api.test_api14_folds import _lock_free, namer
from tests.api.test_api17_delete import _app, _post


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/review16.db"
    from tests.api.test_api14_folds import _url

    return _url(request.getfixturevalue("pg_cluster"), tmp_path)


def _sequence(c: Any, url: str) -> list[Any]:  # noqa: ANN401
    """The deletes above, each answer's status and the error's type; the ports left on both networks."""
    admin = app_headers(c)
    demo, peek = app_headers(c, "demo", "demo"), app_headers(c, "peek", "demo")
    demo_project = app_auth(c, "demo", "demo").json()["token"]["project"]["id"]
    out: list[Any] = []

    def step(h: dict[str, str], pid: str, revision: int | None = None) -> None:
        headers = {**h, **({} if revision is None else {"If-Match": f"revision_number={revision}"})}
        r = c.request("DELETE", f"/v2.0/ports/{pid}", headers=headers)
        out.append((r.status_code, r.json()["NeutronError"]["type"] if r.content else None))
        if url.startswith("postgresql"):
            assert _lock_free(url)

    shared = _post(c, admin, "networks", {"network": {"name": "shared", "shared": True}})["network"]["id"]
    _post(c, admin, "subnets", {"subnet": {"network_id": shared, "ip_version": 4, "cidr": "10.16.1.0/24"}})
    private = _post(c, admin, "networks", {"network": {"name": "admin's"}})["network"]["id"]
    _post(c, admin, "subnets", {"subnet": {"network_id": private, "ip_version": 4, "cidr": "10.16.2.0/24"}})
    own = _post(c, demo, "networks", {"network": {"name": "demo's"}})["network"]["id"]
    _post(c, demo, "subnets", {"subnet": {"network_id": own, "ip_version": 4, "cidr": "10.16.0.0/24"}})
    mine_on_shared = _post(c, demo, "ports", {"port": {"network_id": shared, "name": "mine"}})["port"]
    seen = _post(c, demo, "ports", {"port": {"network_id": own, "name": "seen"}})["port"]
    other_on_shared = _post(c, admin, "ports", {"port": {"network_id": shared, "project_id": "other"}})["port"]
    other_on_own = _post(c, admin, "ports", {"port": {"network_id": own, "project_id": "other"}})["port"]
    mine_on_private = _post(c, admin, "ports", {"port": {"network_id": private, "project_id": demo_project}})["port"]

    step(peek, seen["id"], revision=99)  # 403: the policy first
    step(peek, other_on_shared["id"], revision=99)  # 404: not visible
    step(demo, mine_on_shared["id"], revision=99)  # 412
    step(demo, mine_on_shared["id"], revision=mine_on_shared["revision_number"])  # 204
    step(demo, other_on_shared["id"])  # 404
    step(demo, other_on_shared["id"], revision=99)  # 404
    step(demo, other_on_own["id"], revision=99)  # 412: the network's owner may, the revision is wrong
    step(demo, other_on_own["id"])  # 204
    step(peek, mine_on_private["id"])  # 403: a reader
    step(demo, mine_on_private["id"])  # 204: its owner, on a network it cannot see
    step(demo, mine_on_private["id"])  # 404: gone
    step(demo, seen["id"], revision=seen["revision_number"])  # 204
    left = [p for net in (shared, own, private)
            for p in c.get(f"/v2.0/ports?network_id={net}", headers=admin).json()["ports"]]
    named = namer()
    out.append(sorted((named(p["network_id"]), p["device_owner"], p["project_id"] == "other") for p in left))
    return out


def test_the_cases_answer_as_before(url: str, tmp_path: Path) -> None:
    got = next(iter(_sequence(c, url) for c, _db in _app(url, tmp_path)))
    assert got[:-1] == [(403, "PolicyNotAuthorized"), (404, "PortNotFound"), (412, "RevisionNumberConstraintFailed"),
                        (204, None), (404, "PortNotFound"), (404, "PortNotFound"),
                        (412, "RevisionNumberConstraintFailed"), (204, None), (403, "PolicyNotAuthorized"),
                        (204, None), (404, "PortNotFound"), (204, None)], got
    # left: the DHCP ports and the other project's port on the shared network
    assert sorted((owner, other) for _net, owner, other in got[-1]) == [("", True)] + [("network:dhcp", False)] * 3
