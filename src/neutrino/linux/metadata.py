"""A stand-in for the metadata service on the Linux backend: neutron's proxy behind the router's
REDIRECT to 9697, or nova-api behind the DNAT to port 8775. It answers the EC2 paths a CirrOS guest
asks for, keyed by the caller's address, as :class:`neutrino.sim.services.MetadataEndpoint` does.

Run inside a namespace: ``python -m neutrino.linux.metadata PORT INSTANCES.json`` where the JSON maps
each fixed IP to its instance number.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from neutrino.sim.services import MetadataEndpoint, MetadataInstance


def serve(port: int, instances: dict[str, int]) -> None:
    endpoint = MetadataEndpoint(MetadataInstance(ipaddress.IPv4Address(ip), n, f"instance-{n}")
                                for ip, n in instances.items())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            resp = endpoint.get(ipaddress.IPv4Address(self.client_address[0]), self.path)
            self.send_response(resp.status)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    with open(sys.argv[2]) as fh:
        table = json.load(fh)
    serve(int(sys.argv[1]), table)
