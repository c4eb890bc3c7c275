"""Set-ups the end-to-end tests share: an example scenario edited and written out (seed 000 in modern
Neutron most often), the state folder named in ``NEUTRINO_STATE`` for a module-scoped fixture (which
cannot use the ``monkeypatch`` fixture), and a free floating IP with port forwardings made through
the services."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]

# tcp 2222 -> 22 and tcp 8080:8081 -> 80:81 (the shifted range)
SSH_AND_WEB: tuple[dict[str, Any], ...] = (
    {"internal_port": 22, "external_port": 2222},
    {"internal_port_range": "80:81", "external_port_range": "8080:8081"},
)

# the ``identity`` of a scenario with the admin alone
ADMIN_ONLY = """\
identity:
  projects: [admin]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
"""

# the ``identity`` of a scenario with the admin and a member demo of its own project demo
ADMIN_AND_DEMO = """\
identity:
  region: RegionOne
  projects: [admin, demo]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
    - {name: demo, password: secret, project: demo, roles: [member, reader]}
"""

# the ``resources`` of a scenario: an external flat network public, a private network with its
# router to public (gateway 172.24.4.10), and an instance web1 on compute1
RESOURCES = """\
resources:
  networks:
    - name: public
      external: true
      provider: {network_type: flat, physical_network: public}
      subnets:
        - {name: public-subnet, cidr: 172.24.4.0/24, gateway: 172.24.4.1, enable_dhcp: false}
    - name: private
      subnets: [{name: private-subnet, cidr: 10.0.0.0/24, gateway: 10.0.0.1}]
  security_group_rules:
    - {group: default, direction: ingress, protocol: icmp}
  routers:
    - name: router1
      gateway:
        network: public
        fixed_ips: [{subnet: public-subnet, ip_address: 172.24.4.10}]
      interfaces: [private-subnet]
  servers:
    - {name: web1, image: cirros, flavor: "1", networks: [private], host: compute1}
"""


def edited_example(tmp: pathlib.Path, example: str, edit: Callable[[dict[str, Any]], None],
                   name: str | None = None) -> pathlib.Path:
    """examples/``example`` as ``edit`` changes it, written to ``tmp``/``name`` (the example's name)."""
    doc = yaml.safe_load((ROOT / "examples" / example).read_text())
    edit(doc)
    scenario = tmp / (name or example)
    scenario.write_text(yaml.safe_dump(doc))
    return scenario


def modern_seed000(tmp: pathlib.Path, name: str,
                   edit: Callable[[dict[str, Any]], None] | None = None) -> pathlib.Path:
    """examples/seed000.yaml in modern Neutron (then as ``edit`` changes it), written to ``tmp``/``name``."""
    def modern(doc: dict[str, Any]) -> None:
        doc["deployment"]["generation"] = "modern"
        if edit is not None:
            edit(doc)

    return edited_example(tmp, "seed000.yaml", modern, name)


@contextmanager
def state_env(state: pathlib.Path) -> Iterator[pathlib.Path]:
    """``NEUTRINO_STATE`` set to ``state`` for the block (for module-scoped fixtures)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUTRINO_STATE", str(state))
    try:
        yield state
    finally:
        mp.undo()


def forward(c: Any, port_id: str, fip_address: str,
            *bodies: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Through the services, as the admin: a floating IP ``fip_address`` on the network ``public``,
    and on it a tcp port forwarding to ``port_id`` for each of ``bodies`` (the ports or ranges)."""
    from neutrino.services import floatingips, portforwardings
    from neutrino.services.attributes import PORT_FORWARDING, prepare_body
    from neutrino.services.cloud import prepare

    public = next(n for n in c.snapshot().networks if n.name == "public")
    with c.write(c.admin_context()) as tx:
        f = floatingips.create_fip(tx, prepare("floatingip", {"floating_network_id": public.id,
                                                              "floating_ip_address": fip_address}))
        pfs = [portforwardings.create_pf(tx, f["id"], prepare_body(PORT_FORWARDING, {
            "internal_port_id": port_id, "protocol": "tcp", **body}, create=True)) for body in bodies]
    return f, pfs
