"""Schema migrations: a version-1 database (no creation sequence) is brought to version 2 with its
rows numbered in the order they listed before, and new rows continue the sequence; a version-2
database gets Keystone's tables (version 3), filled from the scenario's identity section."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, select, text

from neutrino.db import models
from neutrino.db.session import KEYSTONE_TABLES, SEQUENCED_TABLES, Database, _migration_1, now
from neutrino.scenarios.model import default_scenario
from neutrino.services.cloud import Cloud, networks, prepare

SAME_SECOND = "2020-01-01T00:00:00Z"
# made in this order, all within one second; by id they sort c, a, b
NETWORKS = [("bbbbbbbb-0000-4000-8000-000000000000", "first"),
            ("cccccccc-0000-4000-8000-000000000000", "second"),
            ("aaaaaaaa-0000-4000-8000-000000000000", "third")]
SUBNETS = [("ffffffff-0000-4000-8000-000000000000", "s1", 1),
           ("dddddddd-0000-4000-8000-000000000000", "s2", 2)]


def _version_1_database(path: Path) -> str:
    """A database as version 1 left it: no created_seq (but on subnets), no counters table."""
    url = f"sqlite:///{path}"
    db = Database(url, migrate=False)
    with db.write() as s:
        conn = s.connection()
        models.SchemaVersion.__table__.create(conn)  # type: ignore[attr-defined]
        _migration_1(conn)
        s.add(models.SchemaVersion(version=1, applied_at=now()))
        for nid, name in NETWORKS:
            s.add(models.Network(id=nid, name=name, project_id="p", created_at=SAME_SECOND,
                                 updated_at=SAME_SECOND, tags=[]))
        s.flush()
        for sid, name, seq in SUBNETS:
            s.add(models.Subnet(id=sid, name=name, project_id="p", network_id=NETWORKS[0][0], ip_version=4,
                                cidr=f"10.{seq}.0.0/24", created_seq=seq, created_at=SAME_SECOND,
                                updated_at=SAME_SECOND, tags=[]))
        s.flush()
        for table in SEQUENCED_TABLES:
            if table != "subnets":
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN created_seq"))
        conn.execute(text("DROP TABLE neutrino_counters"))
    db.dispose()
    return url


def test_version_1_database_gets_a_creation_sequence(tmp_path):
    url = _version_1_database(tmp_path / "v1.db")
    old = inspect(Database(url, migrate=False).engine)
    assert "created_seq" not in {c["name"] for c in old.get_columns("networks")}
    assert not old.has_table("neutrino_counters")
    db = Database(url)
    assert db.schema_version() == models.SCHEMA_VERSION
    insp = inspect(db.engine)
    for table in SEQUENCED_TABLES:
        assert "created_seq" in {c["name"] for c in insp.get_columns(table)}
    with db.read() as s:
        nets = s.execute(select(models.Network.name, models.Network.created_seq)
                         .order_by(models.Network.created_seq)).all()
        subs = s.execute(select(models.Subnet.name, models.Subnet.created_seq)
                         .order_by(models.Subnet.created_seq)).all()
        counter = s.scalar(select(models.Counter.value).where(models.Counter.name == "created_seq"))
    # the order they listed in before: created_at, then id (networks) or the subnets' own sequence
    assert [n for n, _ in nets] == ["third", "first", "second"]
    assert [n for n, _ in subs] == ["s1", "s2"]
    numbers = sorted(seq for _, seq in nets + subs)
    assert numbers == list(range(1, len(NETWORKS) + len(SUBNETS) + 1)) and counter == numbers[-1]

    cloud = Cloud(db, default_scenario())
    with cloud.write(cloud.admin_context()) as tx:
        networks.create_network(tx, prepare("network", {"name": "after"}))
    with cloud.read(cloud.admin_context()) as tx:
        listed = [n["name"] for n in networks.list_networks(tx, {})]
    assert listed == ["third", "first", "second", "after"]
    assert Database(url).schema_version() == models.SCHEMA_VERSION  # migrating again changes nothing


def test_a_fresh_database_starts_the_sequence_at_one(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    cloud = Cloud(db, default_scenario())
    with cloud.write(cloud.admin_context()) as tx:
        networks.create_network(tx, prepare("network", {"name": "one"}))
    with db.read() as s:
        seqs = sorted(s.scalars(select(models.Network.created_seq)).all())
    assert seqs[0] == 1


def test_version_2_database_gets_keystone_tables(tmp_path):
    from neutrino.api.identity import Auth
    from neutrino.scenarios.model import Identity
    from neutrino.services import keystone

    url = f"sqlite:///{tmp_path / 'v2.db'}"
    db = Database(url)
    with db.write() as s:
        conn = s.connection()
        for table in KEYSTONE_TABLES:
            conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text("DELETE FROM neutrino_schema WHERE version >= 3"))
    db.dispose()
    old = Database(url, migrate=False)
    assert old.schema_version() == 2 and not inspect(old.engine).has_table("keystone_projects")
    old.dispose()
    db = Database(url)
    assert db.schema_version() == models.SCHEMA_VERSION
    assert all(inspect(db.engine).has_table(t) for t in KEYSTONE_TABLES)
    auth = Auth("keystone", default_scenario().identity)
    auth.attach(db)
    with db.read() as s:
        names = sorted(s.scalars(select(models.KeystoneProject.name)).all())
        admin = s.get(models.KeystoneUser, Identity.user_id("admin"))
        roles = [r.name for r in keystone.roles_on(s, Identity.user_id("admin"), Identity.project_id("admin"))]
    assert names == ["admin", "demo"]
    assert admin is not None and admin.password != "secret" and keystone.check_password(admin.password, "secret")
    assert roles == ["admin", "member", "reader"]


def test_version_4_database_gets_rbac_forwardings_bindings_and_router_modes(tmp_path):
    from neutrino.db.session import MIGRATION_5_TABLES

    url = f"sqlite:///{tmp_path / 'v4.db'}"
    db = Database(url)
    with db.write() as s:
        conn = s.connection()
        for table in MIGRATION_5_TABLES:
            conn.execute(text(f"DROP TABLE {table}"))
        for column in ("distributed", "ha", "ha_vr_id"):
            conn.execute(text(f"ALTER TABLE routers DROP COLUMN {column}"))
        conn.execute(text("INSERT INTO routers (id, created_seq, project_id, name, description, created_at, "
                          "updated_at, revision_number, tags, admin_state_up, status, enable_snat, routes, host, "
                          "availability_zone_hints) VALUES ('r1', 1, 'p', 'old', '', :t, :t, 0, '[]', 1, "
                          "'ACTIVE', 1, '[]', '', '[]')"), {"t": SAME_SECOND})
        for nid, shared, external in (("n-shared", 1, 0), ("n-external", 0, 1), ("n-private", 0, 0)):
            conn.execute(text("INSERT INTO networks (id, created_seq, project_id, name, description, created_at, "
                              "updated_at, revision_number, tags, admin_state_up, status, shared, external, mtu, "
                              "port_security_enabled, network_type, availability_zone_hints) VALUES (:id, 1, 'p', "
                              "'', '', :t, :t, 0, '[]', 1, 'ACTIVE', :s, :e, 1500, 1, 'local', '[]')"),
                         {"id": nid, "t": SAME_SECOND, "s": shared, "e": external})
        conn.execute(text("DELETE FROM neutrino_schema WHERE version >= 5"))
    db.dispose()
    old = Database(url, migrate=False)
    assert old.schema_version() == 4 and not inspect(old.engine).has_table("rbac_policies")
    old.dispose()
    db = Database(url)
    assert db.schema_version() == models.SCHEMA_VERSION
    assert all(inspect(db.engine).has_table(t) for t in MIGRATION_5_TABLES)
    with db.read() as s:
        router = s.get(models.Router, "r1")
        policies = sorted((p.object_id, p.action, p.target_tenant, p.project_id)
                          for p in s.scalars(select(models.RbacPolicy)))
    assert router is not None and (router.distributed, router.ha, router.ha_vr_id) == (False, False, 0)
    # shared and external networks made before RBAC get the wildcard policies Neutron keeps for them
    assert policies == [("n-external", "access_as_external", "*", "p"), ("n-shared", "access_as_shared", "*", "p")]
