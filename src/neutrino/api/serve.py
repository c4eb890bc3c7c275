"""``neutrino server``: the control plane on one port, with a clouds.yaml entry for the openstack CLI.

    python -m neutrino.api.serve --port 9696 --scenario examples/seed000.yaml
    openstack --os-cloud neutrino network list
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from neutrino.api.app import build_app
from neutrino.api.identity import Auth
from neutrino.db.session import Database, default_url
from neutrino.scenarios.model import Scenario, default_scenario, load_scenario

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9696, help="port for every API (default 9696)")
    parser.add_argument("--db", default=None, help="database URL (default sqlite in $NEUTRINO_STATE or ./state)")
    parser.add_argument("--scenario", default=None, help="scenario YAML file (deployment, hosts, identity)")
    parser.add_argument("--auth", choices=("keystone", "noauth"), default="keystone")
    parser.add_argument("--clouds-yaml", default=None,
                        help="clouds.yaml to write the 'neutrino' entry into (default ~/.config/openstack/clouds.yaml;"
                             " 'none' to skip)")
    parser.add_argument("--cloud-name", default="neutrino", help="name of the clouds.yaml entry")
    parser.add_argument("--log-level", default="warning")


def cloud_entry(scenario: Scenario, base: str, auth: str) -> dict[str, Any]:
    region = scenario.identity.region
    if auth == "noauth":
        return {"auth_type": "none", "auth": {"endpoint": f"{base}/"}, "region_name": region,
                "network_endpoint_override": f"{base}/", "compute_endpoint_override": f"{base}/compute/v2.1",
                "image_endpoint_override": f"{base}/image"}
    admin = next((u for u in scenario.identity.users if "admin" in u.roles), scenario.identity.users[0])
    return {"auth": {"auth_url": f"{base}/identity", "username": admin.name, "password": admin.password,
                     "project_name": admin.project, "user_domain_name": "Default",
                     "project_domain_name": "Default"},
            "region_name": region, "identity_api_version": 3, "interface": "public"}


def write_clouds_yaml(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Add or replace one entry, keeping the file's other clouds."""
    doc: dict[str, Any] = {}
    if path.exists():
        doc = yaml.safe_load(path.read_text()) or {}
    doc.setdefault("clouds", {})[name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)


def make_app(db_url: str | None, scenario_path: str | None, auth_mode: str) -> Any:
    from neutrino.services.cloud import Cloud

    scenario = load_scenario(scenario_path) if scenario_path else default_scenario()
    cloud = Cloud(Database(db_url or default_url()), scenario)
    return build_app(cloud, Auth(auth_mode, scenario.identity)), scenario


def run(args: argparse.Namespace) -> int:
    import uvicorn

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, scenario = make_app(args.db, args.scenario, args.auth)
    base = f"http://{args.host}:{args.port}"
    if args.clouds_yaml != "none":
        path = Path(args.clouds_yaml) if args.clouds_yaml else Path.home() / ".config/openstack/clouds.yaml"
        write_clouds_yaml(path, args.cloud_name, cloud_entry(scenario, base, args.auth))
        log.warning("wrote cloud '%s' to %s", args.cloud_name, path)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                timeout_graceful_shutdown=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neutrino server", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
