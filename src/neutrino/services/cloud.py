"""The in-process facade over the services: one object per running cloud.

    >>> from neutrino.db.session import Database
    >>> from neutrino.scenarios.model import default_scenario
    >>> cloud = Cloud(Database("sqlite://"), default_scenario())
    >>> admin = cloud.admin_context()
    >>> with cloud.write(admin) as tx:
    ...     net = networks.create_network(tx, prepare("network", {"name": "private"}))
    ...     sub = networks.create_subnet(tx, prepare("subnet", {"network_id": net["id"], "ip_version": 4,
    ...                                                         "cidr": "10.1.0.0/24"}))
    >>> sub["gateway_ip"], sub["allocation_pools"]
    ('10.1.0.1', [{'start': '10.1.0.2', 'end': '10.1.0.254'}])
    >>> [n.name for n in cloud.snapshot().networks]
    ['private']

Ids and MACs are random unless the cloud is given a ``seed``: then the same requests on a fresh
database give the same ids and MACs every time (see ``neutrino.services.ids``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from neutrino.db import models
from neutrino.db.session import Database
from neutrino.scenarios.model import Identity, Scenario, deployment_to_doc
from neutrino.services import agents, floatingips, networks, ports
from neutrino.services.attributes import RESOURCES, prepare_body
from neutrino.services.changes import ChangeFeed
from neutrino.services.core import Context, Tx
from neutrino.services.ids import IdGenerator
from neutrino.services.snapshot import CloudSnapshot, load


def prepare(resource: str, body: dict[str, Any], *, create: bool = True) -> dict[str, Any]:
    """Validate and default one resource body, as the API does before calling a service."""
    return prepare_body(RESOURCES[resource], body, create=create)


class Cloud:
    """The services over one database, for one deployment; ``seed`` makes its ids and MACs
    deterministic (default: random, as Neutron's)."""

    def __init__(self, db: Database, scenario: Scenario, *, seed: str | None = None) -> None:
        self.db = db
        self.ids = IdGenerator(seed)
        self.changes = ChangeFeed()
        self.scenario = scenario
        self.deployment = scenario.deployment
        with db.write() as s:
            row = s.get(models.Deployment, 1)
            doc = deployment_to_doc(self.deployment)
            if row is None:
                s.add(models.Deployment(id=1, document=doc))
            else:
                row.document = doc
            agents.sync_agents(s, self.deployment)

    def admin_context(self) -> Context:
        admin = next((u for u in self.scenario.identity.users if "admin" in u.roles), None)
        project = admin.project if admin else "admin"
        return Context(Identity.project_id(project), Identity.user_id(admin.name if admin else "admin"), True,
                       ("admin", "member", "reader"))

    @contextmanager
    def write(self, ctx: Context, *, announce: bool = True) -> Iterator[Tx]:
        """A write transaction; once it commits, the change feed tells the agents (``announce``:
        False for what the agents themselves report, such as a port's status)."""
        with self.db.write() as s:
            yield Tx(s, ctx, self.deployment, self.ids)
        if announce:
            self.changes.bump()

    @contextmanager
    def read(self, ctx: Context) -> Iterator[Tx]:
        with self.db.read() as s:
            yield Tx(s, ctx, self.deployment, self.ids)

    def snapshot(self) -> CloudSnapshot:
        """A consistent picture of the whole cloud (for the planners)."""
        with self.db.read() as s:
            return load(s)

    def set_port_status(self, port_id: str, status: str) -> dict[str, Any]:
        """Mark a port ACTIVE or DOWN (the realizers call this once plumbing exists or is gone)."""
        with self.write(self.admin_context(), announce=False) as tx:
            return ports.set_port_status(tx, port_id, status)

    def set_floatingip_status(self, fip_id: str, status: str) -> dict[str, Any]:
        with self.write(self.admin_context(), announce=False) as tx:
            return floatingips.set_fip_status(tx, fip_id, status)


__all__ = ["Cloud", "Context", "networks", "prepare"]
