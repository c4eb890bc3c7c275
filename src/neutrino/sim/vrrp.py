"""VRRP among an HA router's keepalived instances (RFC 5798 as keepalived runs it for Neutron).

Every instance starts ``BACKUP`` with priority 50 and ``nopreempt``. While the master runs it keeps
the VIPs: a backup never preempts it, whatever its priority or address. When the master stops, the
backups' Master_Down_Timer expires and the running instance with the highest priority, then the
highest primary address on its ``ha-`` interface, becomes master. An instance started again
comes up as a backup of the running master. With no instance running, no host holds the VIPs.
Adverts are heard only over the HA network: an instance that cannot reach the master (``neutrino
failover`` asks the simulator whether an ARP from its ``ha-`` device gets the master's answer) elects
a master of its own, and both hold the VIPs (:func:`masters`: a split brain).

Which keepalived instances the user stopped (``neutrino failover``) is kept in the state folder
(``ha-keepalived.json``: router id -> stopped hosts) so that later runs elect the same way.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOPPED_FILE = "ha-keepalived.json"


@dataclass(frozen=True, slots=True)
class Instance:
    """One host's keepalived for a router: its ``ha-`` address and priority, running or not."""

    host: str
    address: ipaddress.IPv4Address
    priority: int = 50
    running: bool = True


def elect(instances: Sequence[Instance], current: str | None) -> str | None:
    """The master after the change: the running current master (nopreempt), else the running
    instance with the highest (priority, address); None when none runs."""
    running = [i for i in instances if i.running]
    if current is not None and any(i.host == current for i in running):
        return current
    if not running:
        return None
    return max(running, key=lambda i: (i.priority, int(i.address))).host


def masters(instances: Sequence[Instance], current: str | None,
            reaches: Callable[[str, str], bool] | None = None) -> list[str]:
    """Every instance that holds the VIPs after the change, the elected one first: the running
    instances that reach the master over the HA network hear its adverts and stay BACKUP; those that
    do not (a partition) elect among themselves and hold the VIPs too (split brain)."""
    first = elect(instances, current)
    if first is None:
        return []
    out = [first]
    if reaches is None:
        return out
    left = [i for i in instances if i.running and i.host != first]
    while left:
        deaf = [i for i in left if not any(reaches(i.host, m) for m in out)]
        if not deaf:
            break
        nxt = elect(deaf, None)
        assert nxt is not None
        out.append(nxt)
        left = [i for i in deaf if i.host != nxt]
    return out


def load_stopped(state: Path) -> dict[str, list[str]]:
    path = state / STOPPED_FILE
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    return {str(k): [str(h) for h in v] for k, v in doc.items()}


def save_stopped(state: Path, stopped: Mapping[str, Sequence[str]]) -> None:
    path = state / STOPPED_FILE
    doc = {k: sorted(set(v)) for k, v in stopped.items() if v}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
