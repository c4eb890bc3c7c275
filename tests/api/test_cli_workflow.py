"""Seed 000's workflow in today's spelling, with the real openstack CLI against a real server.

A dedicated server per database, so ``server create`` without ``--network`` sees exactly one
private network (as ``nova boot --image cirros --flavor 1 cirros`` did in the seed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.api_helpers import Server, start_server, stop_server


@pytest.fixture(scope="module")
def cli_server(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if db_url.startswith("postgresql"):
        import sqlalchemy
        eng = sqlalchemy.create_engine(db_url)
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("DROP DATABASE IF EXISTS cli")
            c.exec_driver_sql("CREATE DATABASE cli")
        eng.dispose()
        url = db_url.rsplit("/", 1)[0] + "/cli"
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('cli')}/cli.db"
    s = start_server(tmp_path_factory.mktemp("cli-server"), url,
                     scenario=Path(__file__).resolve().parents[2] / "examples" / "seed000.yaml")
    try:
        yield s
    finally:
        stop_server(s)


def test_seed000_workflow_with_openstack_cli(cli_server: Server) -> None:
    osc = cli_server.osc
    ext = osc("network", "create", "--external", "public", "-f", "json")
    assert ext["router:external"] is True
    sub = osc("subnet", "create", "--network", "public", "--subnet-range", "172.24.4.224/28", "--no-dhcp",
              "--gateway", "172.24.4.225", "public-subnet", "-f", "json")
    assert sub["allocation_pools"] == [{"start": "172.24.4.226", "end": "172.24.4.238"}]
    net = osc("network", "create", "private", "-f", "json")
    assert net["provider:network_type"] == "gre" and net["mtu"] == 1458
    priv = osc("subnet", "create", "--network", "private", "--subnet-range", "10.1.0.0/24", "private-subnet",
               "-f", "json")
    assert priv["gateway_ip"] == "10.1.0.1"
    osc("router", "create", "router1", "-f", "json")
    osc("router", "set", "--external-gateway", "public", "router1")
    osc("router", "add", "subnet", "router1", "private-subnet")
    router = osc("router", "show", "router1", "-f", "json")
    assert router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] == "172.24.4.226"
    assert [i["ip_address"] for i in router["interfaces_info"]] == ["10.1.0.1"]
    rule = osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", "--ingress",
               "default", "-f", "json")
    assert (rule["port_range_min"], rule["port_range_max"], rule["protocol"]) == (22, 22, "tcp")
    server = osc("server", "create", "--image", "cirros", "--flavor", "1", "cirros", "-f", "json")
    assert server["status"] == "ACTIVE"
    servers = osc("server", "list", "-f", "json")
    assert [(s["Name"], s["Networks"]) for s in servers] == [("cirros", {"private": ["10.1.0.2"]})]
    ports = osc("port", "list", "--device-owner", "compute:nova", "--long", "-f", "json")
    assert len(ports) == 1
    fip = osc("floating", "ip", "create", "--floating-ip-address", "172.24.4.228", "public", "-f", "json")
    osc("floating", "ip", "set", "--port", ports[0]["ID"], "172.24.4.228")
    shown = osc("floating", "ip", "show", "172.24.4.228", "-f", "json")
    assert (shown["fixed_ip_address"], shown["router_id"]) == ("10.1.0.2", router["id"])
    port = osc("port", "show", ports[0]["ID"], "-f", "json")
    assert port["binding_host_id"] == "compute" and port["device_owner"] == "compute:nova"

    # the refusals: a subnet with ports, a router with interfaces, a network in use
    for args, text in ((("subnet", "delete", "private-subnet"), "One or more ports have an IP allocation"),
                       (("router", "delete", "router1"), "has ports still attached"),
                       (("network", "delete", "private"), "There are one or more ports still in use")):
        p = osc(*args, check=False)
        assert p.returncode != 0 and text in p.stderr, p.stderr

    osc("floating", "ip", "delete", fip["id"])
    osc("server", "delete", "cirros")
    osc("router", "remove", "subnet", "router1", "private-subnet")
    osc("router", "unset", "--external-gateway", "router1")
    osc("router", "delete", "router1")
    osc("subnet", "delete", "private-subnet")
    osc("network", "delete", "private", "public")
    assert osc("network", "list", "-f", "json") == []
    assert osc("port", "list", "-f", "json") == []
