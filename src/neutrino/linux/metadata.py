"""A stand-in for the metadata service on the Linux backend: neutron's proxy behind the router's
REDIRECT to 9697, or nova-api behind the DNAT to port 8775. It answers the EC2 paths a CirrOS guest
asks for, keyed by the caller's address, as :class:`neutrino.sim.services.MetadataEndpoint` does.

Run inside a namespace: ``python -m neutrino.linux.metadata PORT INSTANCES.json`` where the JSON maps
each fixed IP to its instance number. The port listens first, before the answering code is imported:
whoever waits for the service to listen (:func:`neutrino.linux.realize.start_metadata`) goes on a
tenth of a second sooner, and a request that comes meanwhile waits in the listen queue.
"""

from __future__ import annotations

import json
import socket
import sys


def listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(64)
    return sock


def serve(sock: socket.socket, instances: dict[str, int]) -> None:
    import ipaddress
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from neutrino.sim.services import MetadataEndpoint, MetadataInstance

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

    server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock  # the socket already listening
    server.serve_forever()


if __name__ == "__main__":
    listening = listen(int(sys.argv[1]))
    with open(sys.argv[2]) as fh:
        table = json.load(fh)
    serve(listening, table)
