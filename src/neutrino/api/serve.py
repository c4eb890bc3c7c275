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
from neutrino.api.options import add_server_arguments
from neutrino.db.session import Database, default_url
from neutrino.scenarios.model import Scenario, default_scenario, load_scenario

log = logging.getLogger(__name__)


add_arguments = add_server_arguments


def cloud_entry(scenario: Scenario, base: str, auth: str) -> dict[str, Any]:
    region = scenario.identity.region
    if auth == "noauth":
        return {"auth_type": "none", "auth": {"endpoint": f"{base}/"}, "region_name": region,
                "network_endpoint_override": f"{base}/", "compute_endpoint_override": f"{base}/compute/v2.1",
                "image_endpoint_override": f"{base}/image", "identity_endpoint_override": f"{base}/identity/v3",
                "identity_api_version": 3, "block_storage_endpoint_override": f"{base}/volume/v3",
                "block_storage_api_version": "3"}
    admin = next((u for u in scenario.identity.users if "admin" in u.roles), scenario.identity.users[0])
    return {"auth": {"auth_url": f"{base}/identity", "username": admin.name, "password": admin.password,
                     "project_name": admin.project, "user_domain_name": "Default",
                     "project_domain_name": "Default"},
            "region_name": region, "identity_api_version": 3, "interface": "public"}


def http_protocol() -> Any:
    """uvicorn's HTTP/1.1 protocol, answering what its parser refuses (a request line past 64 KiB, a
    malformed header) in the shape of the service the path names instead of plain text."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn's own choice (h11)
        return "auto"

    from neutrino.api.common import MAX_URL, BadBody, UriTooLong, error_for, service_of

    class ShapedErrors(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            url = bytes(getattr(self, "url", b"") or b"")
            too_long = len(url) > MAX_URL
            error = UriTooLong(f"The request URI is longer than {MAX_URL} bytes.") if too_long else BadBody(msg)
            response = error_for(service_of(url[:64].decode("latin-1").split("?", 1)[0]), error)
            content = bytes(response.body)
            reason = b"Request-URI Too Long" if too_long else b"Bad Request"
            head = [b"HTTP/1.1 %d %s\r\n" % (response.status_code, reason)]
            for name, value in self.server_state.default_headers:
                head.append(name + b": " + value + b"\r\n")
            head += [b"content-type: %s\r\n" % (response.media_type or "text/plain").encode(),
                     b"content-length: %d\r\n" % len(content), b"connection: close\r\n", b"\r\n", content]
            self.transport.write(b"".join(head))
            self.transport.close()

    return ShapedErrors


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


def make_app(db_url: str | None, scenario_path: str | None, auth_mode: str, seed: str | None = None) -> Any:
    """The ASGI app and its scenario. ``seed``: ids and MACs from that seed instead of at random."""
    from neutrino.services.cloud import Cloud

    scenario = load_scenario(scenario_path) if scenario_path else default_scenario()
    cloud = Cloud(Database(db_url or default_url()), scenario, seed=seed)
    return build_app(cloud, Auth(auth_mode, scenario.identity)), scenario


def run(args: argparse.Namespace) -> int:
    import uvicorn

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db_url, scenario_path = state_cloud(args.db, args.scenario)
    app, scenario = make_app(db_url, scenario_path, args.auth, getattr(args, "deterministic", None))
    agents = None
    if not getattr(args, "no_agents", False):
        from neutrino.agent import Agents

        agents = Agents(app.state.cloud)
        agents.start()
        app.state.agents = agents
    base = f"http://{args.host}:{args.port}"
    if args.clouds_yaml != "none":
        path = Path(args.clouds_yaml) if args.clouds_yaml else Path.home() / ".config/openstack/clouds.yaml"
        write_clouds_yaml(path, args.cloud_name, cloud_entry(scenario, base, args.auth))
        log.warning("wrote cloud '%s' to %s", args.cloud_name, path)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                    timeout_graceful_shutdown=2, http=http_protocol())
    finally:
        if agents is not None:
            agents.stop()
    return 0


def state_cloud(db: str | None, scenario: str | None) -> tuple[str, str | None]:
    """The database and scenario to serve: the cloud the state folder holds (``neutrino up`` made it,
    or an earlier server), or a new one there, recorded so that every later command reads it."""
    import json

    from neutrino import store
    from neutrino.errors import Conflict

    state = store.state_dir()
    record = state / "cloud.json"
    if record.is_file():
        doc = json.loads(record.read_text())
        if db and db != doc["db"]:
            raise Conflict(f"{state} holds a cloud in {doc['db']}; set NEUTRINO_STATE to another folder "
                           f"to serve {db}")
        return doc["db"], scenario or doc.get("scenario") or None
    url = db or f"sqlite:///{(state / 'cloud.db').resolve()}"
    state.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"scenario": str(Path(scenario).resolve()) if scenario else "", "db": url}))
    return url, scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neutrino server", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
