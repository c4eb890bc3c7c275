"""Extra DHCP options (issue 19, extension ``extra_dhcp_opt``): the API as Neutron's
``ExtraDhcpOptMixin`` and ``EXTRA_DHCP_OPT_KEY_SPECS`` have it (create, merge by name and IP
version on update, a null value deletes, blankable ``router``/``classless-static-route``, the
validator's wording), and the DHCP agent's files as ``neutron/agent/linux/dhcp.py`` writes them:
``tag:port-<id>,option:NAME,value`` lines after the subnets' in the opts file, ``set:port-<id>``
(and ``id:<client-id>``) in the hosts file."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from neutrino.host.dnsmasq import DhcpOpt, format_opt_line
from neutrino.plan.dhcp import format_option, plan_dhcp
from neutrino.plan.generation import Generation
from neutrino.plan.naming import DhcpFile, dhcp_conf_file
from neutrino.scenarios.model import Deployment, Host
from neutrino.services.snapshot import CloudSnapshot, FixedIP, Network, Port, Segment, Subnet
from neutrino.services.snapshot import DhcpOpt as ApiOpt
from tests.api.api_helpers import AppUser
from tests.cloud_setup import ADMIN_ONLY

SCENARIO = """\
name: edo
seed: 190
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:1000"],
             firewall_driver: iptables_hybrid, generation: modern}
hosts:
  - {name: controller, roles: [controller, network, compute], management_ip: 10.0.0.1, tunnel_ip: 10.0.0.1}
""" + ADMIN_ONLY


class Api(AppUser):
    def __init__(self, c: TestClient) -> None:
        super().__init__(c, "admin", "admin")

    def call(self, method: str, path: str, body: Any = None, status: int | None = 200) -> Any:
        return super().call(method, path, body, status)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str, Any]]:
    from neutrino.api.serve import make_app
    from neutrino.db.session import Database
    from neutrino.services.cloud import Cloud

    tmp = tmp_path_factory.mktemp("edo")
    (tmp / "edo.yaml").write_text(SCENARIO)
    url = f"sqlite:///{tmp}/edo.db"
    application, scenario = make_app(url, str(tmp / "edo.yaml"), "keystone", "edo")
    with TestClient(application) as c:
        api = Api(c)
        net = api.call("POST", "/networks", {"network": {"name": "private"}}, 201)["network"]["id"]
        api.call("POST", "/subnets", {"subnet": {"network_id": net, "cidr": "10.0.0.0/24", "ip_version": 4,
                                                 "name": "private-subnet"}}, 201)
        yield api, net, lambda: Cloud(Database(url), scenario).snapshot()


def _port(api: Api, net: str, opts: Any, status: int = 201) -> Any:
    body = {"port": {"network_id": net, "device_owner": "compute:nova", "binding:host_id": "controller",
                     "extra_dhcp_opts": opts}}
    return api.call("POST", "/ports", body, status)


def _opts(port: dict[str, Any]) -> list[tuple[str, str, int]]:
    return sorted((o["opt_name"], o["opt_value"], o["ip_version"]) for o in port["extra_dhcp_opts"])


def test_extension_listed(env: tuple[Api, str, Any]) -> None:
    api, _, _ = env
    assert api.call("GET", "/extensions/extra_dhcp_opt")["extension"]["name"] == "Neutron Extra DHCP options"


def test_create_keeps_what_neutron_keeps(env: tuple[Api, str, Any]) -> None:
    api, net, _ = env
    p = _port(api, net, [{"opt_name": "mtu", "opt_value": "1400"}, {"opt_name": "router", "opt_value": ""},
                         {"opt_name": "tftp-server", "opt_value": None},
                         {"opt_name": "dns-server", "opt_value": "10.0.0.53", "ip_version": "4"}])["port"]
    assert _opts(p) == [("dns-server", "10.0.0.53", 4), ("mtu", "1400", 4), ("router", "", 4)]
    assert _opts(api.call("GET", f"/ports/{p['id']}")["port"]) == _opts(p)


def test_update_merges_by_name_and_version(env: tuple[Api, str, Any]) -> None:
    api, net, _ = env
    p = _port(api, net, [{"opt_name": "mtu", "opt_value": "1400"}, {"opt_name": "bootfile-name",
                                                                     "opt_value": "a.efi", "ip_version": 6}])["port"]
    upd = [{"opt_name": "mtu", "opt_value": "1300"},  # replaced
           {"opt_name": "bootfile-name", "opt_value": None, "ip_version": 6},  # deleted
           {"opt_name": "bootfile-name", "opt_value": "b.efi"},  # a new IPv4 one
           {"opt_name": "tftp-server", "opt_value": None}]  # nothing to delete: ignored
    q = api.call("PUT", f"/ports/{p['id']}", {"port": {"extra_dhcp_opts": upd}})["port"]
    assert _opts(q) == [("bootfile-name", "b.efi", 4), ("mtu", "1300", 4)]
    # an empty list changes nothing
    assert _opts(api.call("PUT", f"/ports/{p['id']}", {"port": {"extra_dhcp_opts": []}})["port"]) == _opts(q)


@pytest.mark.parametrize(("opts", "message"), [
    ([{"opt_name": "mtu", "opt_value": ""}],
     "Invalid input for operation: No valid key specs matched for: {'opt_name': 'mtu', 'opt_value': ''}."),
    ([{"opt_name": "mtu", "opt_value": "1400", "ip_version": 5}],
     "No valid key specs matched for: {'opt_name': 'mtu', 'opt_value': '1400', 'ip_version': 5}."),
    ([{"opt_name": "mtu", "opt_value": "1400", "ip_version": "four"}],
     "Invalid input for operation: 'four' is not an integer."),
    ([{"opt_name": "mtu"}], "No valid key specs matched for: {'opt_name': 'mtu'}."),
    ([{"opt_name": "mtu", "opt_value": "1", "color": "red"}], "No valid key specs matched for"),
    ([{"opt_name": "x" * 65, "opt_value": "1"}], "No valid key specs matched for"),
    ([{"opt_name": "mtu", "opt_value": "a\nb"}], "No valid key specs matched for"),
    ([{"opt_name": "mtu", "opt_value": "1"}, {"opt_name": "mtu", "opt_value": "1"}],
     "Invalid input for operation: Duplicate items in the list: "
     "'{'opt_name': 'mtu', 'opt_value': '1'}'."),
    ("mtu", "Invalid input for operation: 'mtu' is not a list."),
])
def test_validation_wording(env: tuple[Api, str, Any], opts: Any, message: str) -> None:
    api, net, _ = env
    err = _port(api, net, opts, 400)["NeutronError"]
    assert err["type"] == "InvalidInput" and message in err["message"], err


def test_format_option_as_the_agent() -> None:
    assert format_opt_line(format_option(4, "port-P", "router", "10.0.0.254")) == "tag:port-P,option:router,10.0.0.254"
    assert format_opt_line(format_option(4, "port-P", "66", "10.0.0.7")) == "tag:port-P,66,10.0.0.7"
    assert format_opt_line(format_option(6, "port-P", "bootfile-url", "http://x/")) == \
        "tag:port-P,option6:bootfile-url,http://x/"
    assert format_option(4, "port-P", "tag:ipxe,bootfile-name", "boot.ipxe") == DhcpOpt(
        "option:bootfile-name", ("boot.ipxe",), ("tag:port-P", "tag:ipxe"))
    assert format_opt_line(format_option(4, "port-P", "router", "")) == "tag:port-P,option:router,"


def test_the_agents_files(env: tuple[Api, str, Any]) -> None:
    """The opts file gets the port's lines after the subnet's (IPv6 and client-id ones left out),
    the hosts file the port's ``set:`` tag; a port whose only option is its client id gets
    ``id:`` and no tag."""
    api, net, snapshot = env
    p = _port(api, net, [{"opt_name": "router", "opt_value": "10.0.0.254"},
                         {"opt_name": "tag:ipxe,bootfile-name", "opt_value": "boot.ipxe"},
                         {"opt_name": "client-id", "opt_value": "cid-1"},
                         {"opt_name": "bootfile-url", "opt_value": "http://x/", "ip_version": 6}])["port"]
    q = _port(api, net, [{"opt_name": "61", "opt_value": "cid-2"}])["port"]
    host = plan_dhcp(snapshot(), "controller")
    files = {f.path: f.text for f in host.files or ()}
    opts = files[dhcp_conf_file(net, DhcpFile.OPTS)].splitlines()
    mine = [line for line in opts if line.startswith(f"tag:port-{p['id']},")]
    assert mine == [f"tag:port-{p['id']},option:router,10.0.0.254",
                    f"tag:port-{p['id']},tag:ipxe,option:bootfile-name,boot.ipxe"]
    assert opts.index(mine[0]) > max(i for i, line in enumerate(opts) if line.startswith("tag:subnet-"))
    assert not any(q["id"] in line for line in opts)
    hosts = files[dhcp_conf_file(net, DhcpFile.HOST)].splitlines()
    pip, qip = p["fixed_ips"][0]["ip_address"], q["fixed_ips"][0]["ip_address"]
    assert f"{p['mac_address']},id:cid-1,host-{pip.replace('.', '-')}.openstacklocal.,{pip},set:port-{p['id']}" \
        in hosts
    assert f"{q['mac_address']},id:cid-2,host-{qip.replace('.', '-')}.openstacklocal.,{qip}" in hosts


def test_grizzly_files_have_no_port_options() -> None:
    """Extra DHCP options came with Havana: the Grizzly profile's files stay as seed 000 has them."""
    dep = Deployment(hosts=(Host("net", roles=frozenset({"network"})),))
    sub = Subnet("s", "s", "p", "n", 4, ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_address("10.0.0.1"), (),
                 (), (), True, None, None)
    net = Network("n", "n", "p", True, "ACTIVE", False, False, 1500, True, Segment("vxlan", None, 5), ("s",))
    base = Port("d", "", "p", "n", "fa:16:3e:00:00:01", True, "ACTIVE", "dhcp", "network:dhcp",
                (FixedIP("s", ipaddress.ip_address("10.0.0.2")),), (), False, (), "net", "ovs")
    vm = replace(base, id="v", device_owner="compute:nova", mac_address="fa:16:3e:00:00:02",
                 fixed_ips=(FixedIP("s", ipaddress.ip_address("10.0.0.3")),),
                 extra_dhcp_opts=(ApiOpt("router", "10.0.0.254"),))
    cloud = CloudSnapshot(dep, networks=(net,), subnets=(sub,), ports=(base, vm))
    modern = {f.path.rsplit("/", 1)[-1]: f.text for f in plan_dhcp(cloud, "net").files or ()}
    assert "tag:port-v,option:router,10.0.0.254\n" in modern["opts"] and ",set:port-v\n" in modern["host"]
    old = {f.path.rsplit("/", 1)[-1]: f.text for f in plan_dhcp(cloud, "net", Generation.GRIZZLY).files or ()}
    assert "port-v" not in old["opts"] and "port-v" not in old["host"]
