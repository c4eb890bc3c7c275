"""SQLAlchemy models: the cloud's persistent state.

One table per Neutron resource plus the association tables Neutron itself keeps (IP allocations,
port/security-group bindings). List-valued attributes that are never queried by element
(allocation pools, host routes, routes, tags...) live in JSON columns. Nothing here is seen outside
``neutrino.services``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 9


class Base(DeclarativeBase):
    pass


class StandardAttrs:
    """Neutron's standard attributes (description, timestamps, revision, tags) and ownership.

    ``created_seq`` is the creation order: a number from the database-wide ``created_seq`` counter
    (see ``Counter``), so rows made within the same second of ``created_at`` still sort in the order
    they were made. Listings "in creation order" and the snapshot the planners number from use it.
    """

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_seq: Mapped[int] = mapped_column(Integer, default=0)
    project_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[str] = mapped_column(String(20))
    updated_at: Mapped[str] = mapped_column(String(20))
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)


class SchemaVersion(Base):
    __tablename__ = "neutrino_schema"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[str] = mapped_column(String(20))


class Counter(Base):
    """Monotonic counters, bumped inside the serialised write transactions: ``created_seq`` (the
    creation order) and, for a cloud whose ids are seeded, the positions in its id and MAC streams
    (``id:<table>``, ``mac``). Kept in the database so a restarted server, or a second server on the
    same database, continues them instead of repeating them."""

    __tablename__ = "neutrino_counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Deployment(Base):
    """The deployment (mechanism and hosts) the server was started with; one row, id 1."""

    __tablename__ = "deployment"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)


class Network(StandardAttrs, Base):
    __tablename__ = "networks"
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    mtu: Mapped[int] = mapped_column(Integer, default=1500)
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    network_type: Mapped[str] = mapped_column(String(16), default="local")
    physical_network: Mapped[str | None] = mapped_column(String(64), nullable=True)
    segmentation_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    availability_zone_hints: Mapped[list[str]] = mapped_column(JSON, default=list)

    subnets: Mapped[list[Subnet]] = relationship(back_populates="network", order_by="Subnet.created_seq")

    __table_args__ = (UniqueConstraint("network_type", "physical_network", "segmentation_id",
                                       name="uq_network_segment"),)


class Subnet(StandardAttrs, Base):
    __tablename__ = "subnets"
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"), index=True)
    ip_version: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    dns_nameservers: Mapped[list[str]] = mapped_column(JSON, default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    ipv6_ra_mode: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ipv6_address_mode: Mapped[str | None] = mapped_column(String(32), nullable=True)
    subnetpool_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)  # migration 4

    network: Mapped[Network] = relationship(back_populates="subnets")


# -- subnet pools and address scopes (migration 4) ------------------------------------------------

class AddressScope(StandardAttrs, Base):
    __tablename__ = "address_scopes"
    ip_version: Mapped[int] = mapped_column(Integer)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)


class SubnetPool(StandardAttrs, Base):
    """A pool of prefixes subnets are allocated from; ``prefixes`` are kept compacted (CIDR strings)."""

    __tablename__ = "subnetpools"
    ip_version: Mapped[int] = mapped_column(Integer)
    prefixes: Mapped[list[str]] = mapped_column(JSON, default=list)
    default_prefixlen: Mapped[int] = mapped_column(Integer)
    min_prefixlen: Mapped[int] = mapped_column(Integer)
    max_prefixlen: Mapped[int] = mapped_column(Integer)
    default_quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    address_scope_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)


class Port(StandardAttrs, Base):
    __tablename__ = "ports"
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"))  # indexes: ``__table_args__``
    mac_address: Mapped[str] = mapped_column(String(32))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    device_owner: Mapped[str] = mapped_column(String(255), default="")
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    allowed_address_pairs: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    extra_dhcp_opts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    binding_host_id: Mapped[str] = mapped_column(String(255), default="")
    binding_profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    binding_vnic_type: Mapped[str] = mapped_column(String(32), default="normal")
    binding_vif_type: Mapped[str] = mapped_column(String(32), default="unbound")
    binding_vif_details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    fixed_ips: Mapped[list[IPAllocation]] = relationship(
        back_populates="port", cascade="all, delete-orphan", order_by="IPAllocation.seq")
    sg_bindings: Mapped[list[PortSecurityGroup]] = relationship(
        cascade="all, delete-orphan", order_by="PortSecurityGroup.seq")

    # PostgreSQL (since version 8) has no index on ``network_id`` alone but one on the DHCP-port lookup's
    # (``device_owner``, ``network_id``): on tables never analysed (a new database) its planner saw the
    # two indexes leading with ``network_id`` as equally good for the create's MAC check and scanned the
    # network's ports in the plain one; now only ``uq_port_mac`` serves it (and ``network_id`` alone).
    # SQLite keeps the plain one: its planner picks the unique index for the MAC check, and a lookup
    # by network there reads in the plain index's order (the order some answers list ports in).
    __table_args__ = (UniqueConstraint("network_id", "mac_address", name="uq_port_mac"),
                      Index("ix_ports_network_id", "network_id").ddl_if(dialect="sqlite"),
                      Index("ix_ports_device_owner_network_id", "device_owner", "network_id").ddl_if(
                          dialect="postgresql"))


class IPAllocation(Base):
    """One fixed IP of one port; the primary key makes double allocation impossible."""

    __tablename__ = "ipallocations"
    subnet_id: Mapped[str] = mapped_column(ForeignKey("subnets.id"), primary_key=True)
    ip_address: Mapped[str] = mapped_column(String(64), primary_key=True)
    port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"), index=True)
    network_id: Mapped[str] = mapped_column(String(36))  # no index since version 7: no query looks it up
    seq: Mapped[int] = mapped_column(Integer, default=0)

    port: Mapped[Port] = relationship(back_populates="fixed_ips")


class PortSecurityGroup(Base):
    __tablename__ = "port_security_groups"
    port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(ForeignKey("security_groups.id"), primary_key=True,
                                                   index=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)


class SecurityGroup(StandardAttrs, Base):
    __tablename__ = "security_groups"
    stateful: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)

    rules: Mapped[list[SecurityGroupRule]] = relationship(
        back_populates="group", cascade="all, delete-orphan", order_by="SecurityGroupRule.seq",
        foreign_keys="SecurityGroupRule.security_group_id")


class SecurityGroupRule(StandardAttrs, Base):
    __tablename__ = "security_group_rules"
    seq: Mapped[int] = mapped_column(Integer, default=0)
    security_group_id: Mapped[str] = mapped_column(ForeignKey("security_groups.id", ondelete="CASCADE"),
                                                   index=True)
    direction: Mapped[str] = mapped_column(String(8))
    ethertype: Mapped[str] = mapped_column(String(8))
    protocol: Mapped[str | None] = mapped_column(String(40), nullable=True)
    port_range_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    port_range_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    remote_ip_prefix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    remote_group_id: Mapped[str | None] = mapped_column(String(36), nullable=True)

    group: Mapped[SecurityGroup] = relationship(back_populates="rules", foreign_keys=[security_group_id])


class Router(StandardAttrs, Base):
    __tablename__ = "routers"
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    gw_port_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    gw_network_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    enable_snat: Mapped[bool] = mapped_column(Boolean, default=True)
    routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    host: Mapped[str] = mapped_column(String(255), default="")
    availability_zone_hints: Mapped[list[str]] = mapped_column(JSON, default=list)
    distributed: Mapped[bool] = mapped_column(Boolean, default=False)  # migration 5
    ha: Mapped[bool] = mapped_column(Boolean, default=False)  # migration 5
    ha_vr_id: Mapped[int] = mapped_column(Integer, default=0)  # migration 5: the VRRP router id


class FloatingIP(StandardAttrs, Base):
    __tablename__ = "floatingips"
    floating_network_id: Mapped[str] = mapped_column(String(36), index=True)
    floating_ip_address: Mapped[str] = mapped_column(String(64))
    floating_port_id: Mapped[str] = mapped_column(String(36))
    port_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    fixed_ip_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    router_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")


class Server(StandardAttrs, Base):
    __tablename__ = "servers"
    user_id: Mapped[str] = mapped_column(String(64), default="")
    flavor_id: Mapped[str] = mapped_column(String(36))
    image_id: Mapped[str] = mapped_column(String(36))
    host: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    created_port_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    security_group_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    key_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # migration 9: Nova's latest instance fault ({"code", "message", "details", "created"}), or None
    fault: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_type: Mapped[str] = mapped_column(String(64))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    configurations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[str] = mapped_column(String(20))
    heartbeat_timestamp: Mapped[str] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (UniqueConstraint("agent_type", "host", name="uq_agent_type_host"),)


class Quota(Base):
    __tablename__ = "quotas"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    limit: Mapped[int] = mapped_column(Integer)


# -- kept by the database's own triggers (migration 6): see db/session.py ``_migration_6`` -------------

class PortUsage(Base):
    """How many ports each project has: ``count(*)`` of its ports, kept by triggers on ``ports`` in
    the transaction that inserts, deletes or moves a port (whatever writes it: the ORM, the hot paths'
    SQL, a cascade), so the quota check reads one row instead of counting."""

    __tablename__ = "port_usage"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ports: Mapped[int] = mapped_column(Integer, default=0)


class IpamNext(Base):
    """Where IPAM's "lowest free address" scan of a subnet may start: every address of the pools
    (``pools``: the subnet's ``allocation_pools`` text it was written for) before ``ip_address`` of
    pool ``pool_index`` is taken. Written by a port create that took an address before it. Inserts
    into ``ipallocations`` keep it true; a delete or change of one of the subnet's allocations may
    not, so a trigger deletes it then; and it is ignored once the pools' text differs."""

    __tablename__ = "ipam_next"
    subnet_id: Mapped[str] = mapped_column(ForeignKey("subnets.id", ondelete="CASCADE"), primary_key=True)
    pools: Mapped[str] = mapped_column(Text)
    pool_index: Mapped[int] = mapped_column(Integer)
    ip_address: Mapped[str] = mapped_column(String(64))  # empty: past the last pool (none free)
    ahead: Mapped[str] = mapped_column(Text)  # the scan's next addresses from there (a JSON list), looked up


class ChangeMarker(Base):
    """A number bumped by triggers in every transaction that changes what it watches (``ports_view``:
    the ports, their addresses and groups, the networks' owners); it starts at a random value, so a
    re-made database does not repeat an old one's numbers. Bumped on SQLite only: on PostgreSQL a
    listing is keyed by its transaction's snapshot instead (``ports.list_ports_json``)."""

    __tablename__ = "neutrino_markers"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


# -- Keystone (migration 3): domains, projects, users, roles and role assignments ----------------

class KeystoneDomain(Base):
    __tablename__ = "keystone_domains"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)


class KeystoneProject(Base):
    __tablename__ = "keystone_projects"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    domain_id: Mapped[str] = mapped_column(String(64), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    seq: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_keystone_project_name"),)


class KeystoneUser(Base):
    __tablename__ = "keystone_users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    domain_id: Mapped[str] = mapped_column(String(64), index=True)
    password: Mapped[str | None] = mapped_column(String(255), nullable=True)  # salted PBKDF2, never the text
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    default_project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. email, as Keystone keeps it
    seq: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_keystone_user_name"),)


class KeystoneRole(Base):
    __tablename__ = "keystone_roles"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)


class KeystoneAssignment(Base):
    """A role of a user on a project (Keystone's ``UserProject`` assignment)."""

    __tablename__ = "keystone_assignments"
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    role_id: Mapped[str] = mapped_column(String(64), primary_key=True)


# -- migration 5: RBAC policies, port forwardings, agent scheduling ------------------------------

class RbacPolicy(Base):
    """One RBAC policy: ``object_type`` (network, security_group, address_scope, subnetpool) and
    ``object_id`` shared with ``target_tenant`` (``*`` for every project) for ``action``
    (access_as_shared, access_as_external)."""

    __tablename__ = "rbac_policies"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_seq: Mapped[int] = mapped_column(Integer, default=0)
    project_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    object_type: Mapped[str] = mapped_column(String(32), index=True)
    object_id: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(32))
    target_tenant: Mapped[str] = mapped_column(String(255), index=True)
    # on a network's wildcard access_as_external policy: the network is the default external network
    # (Neutron's externalnetworks.is_default), which must stay shared with everyone
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("object_type", "object_id", "action", "target_tenant",
                                       name="uq_rbac_target"),)


class PortForwarding(Base):
    """A floating IP's port forwarding: ``external_port`` (or range) of the floating IP to
    ``internal_ip_address``:``internal_port`` of ``internal_port_id``."""

    __tablename__ = "portforwardings"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_seq: Mapped[int] = mapped_column(Integer, default=0)
    floatingip_id: Mapped[str] = mapped_column(ForeignKey("floatingips.id", ondelete="CASCADE"), index=True)
    internal_port_id: Mapped[str] = mapped_column(String(36), index=True)
    internal_ip_address: Mapped[str] = mapped_column(String(64))
    internal_port_start: Mapped[int] = mapped_column(Integer)
    internal_port_end: Mapped[int] = mapped_column(Integer)
    external_port_start: Mapped[int] = mapped_column(Integer)
    external_port_end: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(String(255), default="")


class RouterL3Binding(Base):
    """Which L3 agent (by host) serves a router (Neutron's ``routerl3agentbindings``); an HA router
    has one row per host, with its VRRP state and its ``ha-`` port."""

    __tablename__ = "router_l3_bindings"
    router_id: Mapped[str] = mapped_column(ForeignKey("routers.id", ondelete="CASCADE"), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    binding_index: Mapped[int] = mapped_column(Integer, default=1)
    ha_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    ha_port_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class NetworkDhcpBinding(Base):
    """Which DHCP agent (by host) serves a network (Neutron's ``networkdhcpagentbindings``)."""

    __tablename__ = "network_dhcp_bindings"
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    binding_index: Mapped[int] = mapped_column(Integer, default=1)
