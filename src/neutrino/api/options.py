"""The options of ``neutrino server``, kept apart from the server so that building the command
line's parser imports nothing heavy (no ORM, no ASGI stack) for the other subcommands."""

from __future__ import annotations

import argparse


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9696, help="port for every API (default 9696)")
    parser.add_argument("--db", default=None, help="database URL (default sqlite in $NEUTRINO_STATE or ./state)")
    parser.add_argument("--scenario", default=None, help="scenario YAML file (deployment, hosts, identity)")
    parser.add_argument("--auth", choices=("keystone", "noauth"), default="keystone")
    parser.add_argument("--clouds-yaml", default=None,
                        help="clouds.yaml to write the 'neutrino' entry into (default ~/.config/openstack/clouds.yaml;"
                             " 'none' to skip)")
    parser.add_argument("--cloud-name", default="neutrino", help="name of the clouds.yaml entry")
    parser.add_argument("--deterministic", metavar="SEED", default=None,
                        help="make ids and MAC addresses from SEED: the same requests on a fresh database give "
                             "the same ids, MACs and plans (default: random, as Neutron)")
    parser.add_argument("--no-agents", action="store_true",
                        help="do not run the in-process agents (hosts are not re-planned after API changes)")
    parser.add_argument("--log-level", default="warning")
