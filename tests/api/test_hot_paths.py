"""The API's hot paths (port create, list, delete) run as Core statements: the same views the ORM
path gives, in few statements, on SQLite and PostgreSQL.

- A listed port is exactly what reading it alone (the ORM path) gives, for ports using every
  attribute the view shows (address pairs, DHCP options, binding, tags, several addresses and groups),
  and a created port is exactly what reading it back gives.
- A create runs at most four statements and a listing three, whatever the number of ports.
- A delete takes the port's addresses and group bindings with it (the address is free again) and
  keeps Neutron's checks: another project's port is not found, a stale revision fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select

from neutrino.db import models
from neutrino.errors import NotFound, PreconditionFailed
from neutrino.services import networks, ports, securitygroups, tags
from neutrino.services.cloud import Cloud, prepare
from neutrino.services.core import Context
from tests.api.api_helpers import cloud_on_fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Cloud]:
    """A cloud on its own database: a SQLite file, or a database of its own in the session's cluster."""
    yield from cloud_on_fresh_database(request, tmp_path, "hot")


def _network(cloud: Cloud, ctx: Context, *, v6: bool = False) -> tuple[str, str]:
    with cloud.write(ctx) as tx:
        net = networks.create_network(tx, prepare("network", {"name": "hot"}))
        sub = networks.create_subnet(tx, prepare("subnet", {"network_id": net["id"], "ip_version": 4,
                                                            "cidr": "10.9.0.0/24"}))
        if v6:
            networks.create_subnet(tx, prepare("subnet", {"network_id": net["id"], "ip_version": 6,
                                                          "cidr": "fd00:9::/64"}))
    return net["id"], sub["id"]


def _create(cloud: Cloud, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    with cloud.write(ctx) as tx:
        return ports.create_port(tx, prepare("port", body))


def test_listed_and_created_ports_are_what_reading_them_gives(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, sub = _network(cloud, admin, v6=True)
    with cloud.write(admin) as tx:
        extra = securitygroups.create_group(tx, prepare("security_group", {"name": "extra"}))["id"]
    host = cloud.deployment.hosts[0].name
    bodies: list[dict[str, Any]] = [
        {"network_id": net},
        {"network_id": net, "name": "vm", "description": "a port", "device_owner": "compute:nova",
         "device_id": str(uuid.uuid4()), "binding:host_id": host, "binding:profile": {"k": "v"},
         "allowed_address_pairs": [{"ip_address": "10.9.0.200"}, {"ip_address": "10.9.0.0/28",
                                                                  "mac_address": "fa:16:3e:00:00:01"}],
         "extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400"}]},
        {"network_id": net, "fixed_ips": [{"subnet_id": sub, "ip_address": "10.9.0.77"}, {"subnet_id": sub}],
         "security_groups": [extra]},
        {"network_id": net, "port_security_enabled": False, "admin_state_up": False, "mac_address":
         "fa:16:3e:aa:bb:cc", "binding:host_id": "no-such-host"},
    ]
    created = [_create(cloud, admin, b) for b in bodies]
    with cloud.write(admin) as tx:
        tags.replace(tx, "ports", created[0]["id"], {"tags": ["red", "blue"]})
    with cloud.read(admin) as tx:
        listed = ports.list_ports(tx, {})
        for c in created[1:]:
            assert c == ports.get_port(tx, c["id"])  # what create answered is what reading gives
        one_by_one = [ports.get_port(tx, p["id"]) for p in listed]
        on_network = ports.list_ports(tx, {"network_id": [net], "device_owner": ["compute:nova"]})
    assert listed == one_by_one
    assert [p["id"] for p in listed if p["device_owner"] != "network:dhcp"] == [c["id"] for c in created]
    vm = next(p for p in listed if p["name"] == "vm")
    assert vm["binding:vif_type"] == "ovs" and vm["binding:profile"] == {"k": "v"}
    assert [len(p["fixed_ips"]) for p in listed if p["id"] in (created[0]["id"], created[2]["id"])] == [2, 2]
    assert sorted(next(p for p in listed if p["id"] == created[0]["id"])["tags"]) == ["blue", "red"]
    assert on_network == [vm]


def test_a_project_lists_its_ports_and_those_on_its_networks(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    alice = Context("alice-project", "alice", False, ("member", "reader"))
    net, _ = _network(cloud, alice)
    mine = _create(cloud, alice, {"network_id": net})
    theirs = _create(cloud, admin, {"network_id": net, "project_id": "bob-project"})
    other_net, _ = _network(cloud, admin)
    _create(cloud, admin, {"network_id": other_net, "project_id": "bob-project"})
    with cloud.read(alice) as tx:
        seen = ports.list_ports(tx, {})
        assert [p["id"] for p in seen if p["device_owner"] != "network:dhcp"] == [mine["id"], theirs["id"]]
        assert seen == [ports.get_port(tx, p["id"]) for p in seen]


def _statements(cloud: Cloud) -> list[str]:
    seen: list[str] = []

    @event.listens_for(cloud.db.engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.split(None, 1)[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE") and \
                "pg_advisory" not in statement:  # the writer lock is the transaction's, not the request's
            seen.append(statement)

    return seen


def test_create_and_list_run_few_statements(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin)
    _create(cloud, admin, {"network_id": net})  # the first makes the DHCP port and the default group
    seen = _statements(cloud)
    _create(cloud, admin, {"network_id": net})
    # the network, subnets, addresses taken, DHCP port, group and MAC in one; the three inserts (the
    # creation sequence numbered in the port's)
    assert len(seen) <= 4, seen
    for _ in range(20):
        _create(cloud, admin, {"network_id": net})
    seen.clear()
    with cloud.read(admin) as tx:
        assert len(ports.list_ports(tx, {})) == 23
    assert len(seen) == 3, seen


def test_delete_takes_addresses_and_groups_and_keeps_the_checks(cloud: Cloud) -> None:
    admin = cloud.admin_context()
    net, _ = _network(cloud, admin)
    first = _create(cloud, admin, {"network_id": net, "device_owner": "compute:nova"})
    address = first["fixed_ips"][0]["ip_address"]
    stranger = Context("stranger", "s", False, ("member", "reader"))
    with pytest.raises(NotFound, match=f"Port {first['id']} could not be found"), cloud.write(stranger) as tx:
        ports.delete_port(tx, first["id"])
    with pytest.raises(PreconditionFailed), cloud.write(admin) as tx:
        ports.delete_port(tx, first["id"], revision=first["revision_number"] + 5)
    with cloud.write(admin) as tx:
        ports.delete_port(tx, first["id"])
    with cloud.read(admin) as tx:
        s = tx.session
        assert s.scalar(select(func.count()).select_from(models.IPAllocation)
                        .where(models.IPAllocation.port_id == first["id"])) == 0
        assert s.scalar(select(func.count()).select_from(models.PortSecurityGroup)
                        .where(models.PortSecurityGroup.port_id == first["id"])) == 0
        with pytest.raises(NotFound):
            ports.get_port(tx, first["id"])
    again = _create(cloud, admin, {"network_id": net})
    assert again["fixed_ips"][0]["ip_address"] == address  # the lowest free address: the one given back
