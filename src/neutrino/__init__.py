"""neutrino: OpenStack tenant networking, rebuilt in Python.

The spine is the host state, kept in the real tools' own languages. Read a capture, ask it what
the real tool would print:

>>> from neutrino.ingest.commands import parse_command
>>> from neutrino.ingest.captures import apply_capture
>>> from neutrino.host.state import HostState
>>> from neutrino.views.answer import answer
>>> dump = " cookie=0x0, duration=1.5s, table=0, n_packets=0, n_bytes=0, priority=1 actions=drop\\n"
>>> host = apply_capture(HostState("compute"), parse_command("ovs-ofctl dump-flows br-tun"), dump)
>>> print(answer(host, parse_command("ovs-ofctl dump-flows br-tun --no-stats")), end="")
 priority=1 actions=drop
"""

__version__ = "0.1.0"
