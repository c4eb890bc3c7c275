"""IP address management: default pools and gateways, pool validation, address allocation.

Allocation is "lowest free address in the pools" (Neutron picks randomly; the lowest keeps runs
deterministic, which the seed scenarios rely on). Uniqueness is guaranteed twice: writes are
serialised, and (subnet_id, ip_address) is the allocation table's primary key.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from contextlib import suppress
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from neutrino.db import models
from neutrino.db.session import raw
from neutrino.errors import Conflict
from neutrino.services.core import Tx, conflict, invalid

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def usable_range(net: IPNet) -> tuple[int, int]:
    """First and last address a pool may use in ``net`` (as integers)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4:
        if net.prefixlen <= 30:
            return first + 1, last - 1
        return first, last
    return first + 1, last


def default_gateway(net: IPNet) -> str | None:
    if net.version == 6:
        return str(net.network_address)
    lo, hi = usable_range(net)
    return str(ipaddress.ip_address(lo)) if lo <= hi else None


def default_pools(net: IPNet, gateway: str | None) -> list[dict[str, str]]:
    lo, hi = usable_range(net)
    ranges = [(lo, hi)]
    if gateway is not None:
        g = int(ipaddress.ip_address(gateway))
        if lo <= g <= hi:
            ranges = [(lo, g - 1), (g + 1, hi)]
    cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return [{"start": str(cls(a)), "end": str(cls(b))} for a, b in ranges if a <= b]


def _fmt(pool: dict[str, str]) -> str:
    return f"{pool['start']}-{pool['end']}"


def validate_pools(net: IPNet, pools: list[dict[str, str]], gateway: str | None, subnet_id: str) -> None:
    spans: list[tuple[int, int, dict[str, str]]] = []
    for p in pools:
        s, e = ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"])
        if s.version != net.version or e.version != net.version or int(s) > int(e):
            raise invalid(f"The allocation pool {_fmt(p)} is not valid.", "InvalidAllocationPool")
        if s not in net or e not in net:
            raise invalid(f"The allocation pool {_fmt(p)} spans beyond the subnet cidr {net}.",
                          "OutOfBoundsAllocationPool")
        spans.append((int(s), int(e), p))
    spans.sort(key=lambda x: x[0])
    for (_a, b, p), (c, _d, q) in zip(spans, spans[1:], strict=False):
        if c <= b:
            raise conflict("OverlappingAllocationPools",
                           f"Found overlapping allocation pools: {_fmt(p)} and {_fmt(q)} for subnet {net}.")
    if gateway is not None:
        g = int(ipaddress.ip_address(gateway))
        for a, b, p in spans:
            if a <= g <= b:
                raise conflict("GatewayConflictWithAllocationPools",
                               f"Gateway ip {gateway} conflicts with allocation pool {_fmt(p)}.")


class Used:
    """The addresses taken in one subnet, as canonical strings: all of them (``taken``, read at once),
    or, for a subnet whose ``ipam_next`` row was read (``start``: every pool address before that
    position is taken), the ones asked about, looked up in the table when first asked (``probe``)."""

    __slots__ = ("taken", "start", "_tx", "_subnet_id", "_checked")

    def __init__(self, taken: set[str], *, start: tuple[int, str] | None = None, tx: Tx | None = None,
                 subnet_id: str = "", checked: Iterable[str] = ()) -> None:
        self.taken = taken
        self.start = start  # (pool index, address): where the scan for the lowest free address may start
        self._tx = tx  # set: only the addresses in ``_checked`` (and ``taken``) are known
        self._subnet_id = subnet_id
        self._checked = set(checked)

    def __contains__(self, ip: object) -> bool:
        if ip in self.taken:
            return True
        if self._tx is not None and isinstance(ip, str) and ip not in self._checked:
            self.probe([ip])
        return ip in self.taken

    def probe(self, ips: list[str]) -> None:
        """Look up which of ``ips`` (not known yet) the table holds."""
        if self._tx is None:
            return
        unknown = [ip for ip in ips if ip not in self._checked and ip not in self.taken]
        for lo in range(0, len(unknown), _PROBE):
            part = unknown[lo:lo + _PROBE]
            sql = _probe_sql(len(part))
            self.taken.update(r[0] for r in raw(self._tx.session).all(sql, [self._subnet_id, *part]))
            self._checked.update(part)

    def first_free(self, candidates: tuple[str, ...]) -> str | None:
        """The first of ``candidates`` not taken."""
        taken = self.taken
        if self._tx is None:
            for ip in candidates:
                if ip not in taken:
                    return ip
            return None
        checked = self._checked
        for i, ip in enumerate(candidates):
            if ip in taken:
                continue
            if ip not in checked:  # not known: look up the next ones at once
                self.probe(list(candidates[i:i + _PROBE]))
                if ip in taken:
                    continue
            return ip
        return None

    def add(self, ip: str) -> None:
        self.taken.add(ip)

    def discard(self, ip: str) -> None:
        self.taken.discard(ip)
        self._checked.add(ip)


_PROBE = 64


@lru_cache(maxsize=_PROBE)
def _probe_sql(n: int) -> str:
    return f"SELECT ip_address FROM ipallocations WHERE subnet_id = ? AND ip_address IN ({', '.join('?' * n)})"


def allocated(tx: Tx, subnet_id: str) -> Used:
    """The subnet's taken addresses. One aggregated string rather than one row per address: the
    query's cost is then dominated by the database, not by building thousands of result rows."""
    db = raw(tx.session)
    joined = db.scalar(_ALLOCATED_PG if db.postgres else _ALLOCATED_SQLITE, (subnet_id,))
    return Used(set(joined.split(",")) if joined else set())


_ALLOCATED_SQLITE = "SELECT group_concat(ip_address, ',') FROM ipallocations WHERE subnet_id = ?"
_ALLOCATED_PG = "SELECT string_agg(ip_address, ',') FROM ipallocations WHERE subnet_id = ?"


_CHUNK = 256


@lru_cache(maxsize=256)
def _chunk(version: int, first: int, last: int) -> tuple[str, ...]:
    """The canonical strings of the addresses ``first..last`` (a pure function, so cached: a pool
    scan then costs one set lookup per address instead of one formatting)."""
    if version == 4:
        return tuple(socket.inet_ntoa(n.to_bytes(4, "big")) for n in range(first, last + 1))
    return tuple(str(ipaddress.IPv6Address(n)) for n in range(first, last + 1))


def _pool_bounds(subnet: Any) -> tuple[tuple[int, int], ...]:
    return _bounds(tuple((p["start"], p["end"]) for p in subnet.allocation_pools))


@lru_cache(maxsize=1024)
def _bounds(pools: tuple[tuple[str, str], ...]) -> tuple[tuple[int, int], ...]:
    """The pools' first and last addresses as integers (a pure function of their text, so cached)."""
    return tuple((_int(a), _int(b)) for a, b in pools)


def _int(ip: str) -> int:
    """``int(ipaddress.ip_address(ip))``; an IPv4 address in its canonical text through the socket
    module (several times faster; any other text, which it may read otherwise, goes to ipaddress)."""
    if ":" not in ip:
        with suppress(OSError):
            packed = socket.inet_aton(ip)
            if socket.inet_ntoa(packed) == ip:
                return int.from_bytes(packed, "big")
    return int(ipaddress.ip_address(ip))


def _scan_blocks(subnet: Any, start: tuple[int, str] | None) -> Iterator[tuple[str, ...]]:
    """The pools' addresses (in the pools' order) from ``start`` on (pool index, address; past the last
    pool: none), in pieces of at most ``_CHUNK``. Addresses are formatted in
    blocks aligned on the address space (cached)."""
    start_pool, start_at = 0, None
    if start is not None:
        start_pool, ip = start
        start_at = _int(ip) if ip else None
    for index, (a, b) in enumerate(_pool_bounds(subnet)):
        if index < start_pool:
            continue
        if index == start_pool and start_at is not None:
            a = max(a, start_at)
        lo = a
        while lo <= b:
            block = lo - lo % _CHUNK
            hi = min(block + _CHUNK - 1, b)
            yield _chunk(subnet.ip_version, block, block + _CHUNK - 1)[lo - block:hi - block + 1]
            lo = hi + 1


def next_free(subnet: Any, used: Used) -> str | None:
    """The lowest address of the pools (in their order) that ``used`` does not hold, the scan starting
    at ``used.start`` when known (every address before it is taken)."""
    for names in _scan_blocks(subnet, used.start):
        found = used.first_free(names)
        if found is not None:
            return found
    return None


def scan_from(subnet: Any, start: tuple[int, str], count: int) -> list[str]:
    """The first ``count`` addresses of the pools' scan from ``start``."""
    out: list[str] = []
    for names in _scan_blocks(subnet, start):
        out.extend(names[:count - len(out)])
        if len(out) >= count:
            break
    return out


def next_after(subnet: Any, ip: str) -> tuple[int, str]:
    """The scan position after ``ip`` (an address of the subnet's pools): (pool index, address);
    after the last pool's last address, (the number of pools, "")."""
    n = _int(ip)
    bounds = _pool_bounds(subnet)
    for index, (a, b) in enumerate(bounds):
        if a <= n <= b:
            if n < b:
                return index, str(ipaddress.ip_address(n + 1))
            if index + 1 < len(bounds):
                return index + 1, str(ipaddress.ip_address(bounds[index + 1][0]))
            return index + 1, ""
    raise ValueError(f"{ip} is in no pool of subnet {subnet.id}")


def is_slaac(subnet: models.Subnet) -> bool:
    return subnet.ip_version == 6 and subnet.ipv6_address_mode in ("slaac", "dhcpv6-stateless")


def eui64(net: IPNet, mac: str) -> str:
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    iid = octets[:3] + [0xFF, 0xFE] + octets[3:]
    value = int(net.network_address) | int.from_bytes(bytes(iid), "big")
    return str(ipaddress.IPv6Address(value))


def allocate_for_port(tx: Tx, network: models.Network, subnets: list[models.Subnet],
                      requested: list[dict[str, Any]] | None, mac: str, *, router_port: bool = False,
                      ignore_port: str | None = None, joined: dict[str, Used] | None = None,
                      scanned: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Choose the (subnet_id, ip_address) pairs for a port.

    ``requested`` is the port's ``fixed_ips`` (``None``: automatic). Raises Neutron's errors for
    unknown subnets, addresses outside the network, taken addresses and exhausted pools.
    ``ignore_port`` lets a port keep addresses it already holds (PUT fixed_ips). ``joined``: the
    taken addresses of some subnets as read already in this transaction (``Used``). ``scanned``
    (filled when given): per subnet, the last address chosen as the lowest free one.
    """
    by_id = {s.id: s for s in subnets}
    result: list[tuple[str, str]] = []
    used_cache: dict[str, Used] = {}

    def used(sid: str) -> Used:
        if sid not in used_cache:
            taken = joined[sid] if joined is not None and sid in joined else allocated(tx, sid)
            if ignore_port is not None:
                mine = tx.session.scalars(select(models.IPAllocation.ip_address).where(
                    models.IPAllocation.subnet_id == sid, models.IPAllocation.port_id == ignore_port)).all()
                for m in mine:
                    taken.discard(m)
            used_cache[sid] = taken
        return used_cache[sid]

    def take(sid: str, ip: str, *, scan: bool = False) -> None:
        used(sid).add(ip)
        result.append((sid, ip))
        if scan and scanned is not None:
            scanned[sid] = ip

    if requested is None:
        v4 = [s for s in subnets if s.ip_version == 4]
        if v4:
            for s in v4:
                ip = next_free(s, used(s.id))
                if ip is not None:
                    take(s.id, ip, scan=True)
                    break
            else:
                raise conflict("IpAddressGenerationFailure",
                               f"No more IP addresses available on network {network.id}.")
        stateful6 = [s for s in subnets if s.ip_version == 6 and not is_slaac(s)]
        for s in stateful6:
            ip = next_free(s, used(s.id))
            if ip is not None:
                take(s.id, ip, scan=True)
                break
        else:
            if stateful6:
                raise conflict("IpAddressGenerationFailure",
                               f"No more IP addresses available on network {network.id}.")
        if not router_port:
            for s in subnets:
                if is_slaac(s):
                    take(s.id, eui64(ipaddress.ip_network(s.cidr), mac))
        return result

    for item in requested:
        sid, ip = item.get("subnet_id"), item.get("ip_address")
        if sid is not None:
            s = by_id.get(sid)
            if s is None:
                exists = tx.session.get(models.Subnet, sid)
                if exists is None:
                    from neutrino.services.core import not_found
                    raise not_found("subnet", sid)
                raise invalid(f"Failed to create port on network {network.id}, because fixed_ips included "
                              f"invalid subnet {sid}.")
        elif ip is not None:
            addr = ipaddress.ip_address(ip)
            s = next((x for x in subnets if addr in ipaddress.ip_network(x.cidr)), None)
            if s is None:
                raise invalid(f"IP address {ip} is not a valid IP for any of the subnets on the specified "
                              "network.", "InvalidIpForNetwork")
        else:
            raise invalid("IP allocation requires subnet_id or ip_address")
        net = ipaddress.ip_network(s.cidr)
        if ip is None:
            if is_slaac(s):
                take(s.id, eui64(net, mac))
                continue
            found = next_free(s, used(s.id))
            if found is None:
                raise conflict("IpAddressGenerationFailure", f"No more IP addresses available for subnet {s.id}.")
            take(s.id, found, scan=True)
            continue
        addr = ipaddress.ip_address(ip)
        if addr not in net or (net.version == 4 and net.prefixlen <= 30 and
                               addr in (net.network_address, net.broadcast_address)):
            raise invalid(f"IP address {ip} is not a valid IP for the specified subnet.", "InvalidIpForSubnet")
        if str(addr) in used(s.id):
            raise conflict("IpAddressAlreadyAllocated", f"IP address {ip} already allocated in subnet {s.id}")
        take(s.id, str(addr))
    return result


def check_overlap(cidr: str, others: Iterable[models.Subnet], network_id: str) -> None:
    net = ipaddress.ip_network(cidr)
    for o in others:
        if net.overlaps(ipaddress.ip_network(o.cidr)):
            raise invalid(f"Requested subnet with cidr: {cidr} for network: {network_id} overlaps with "
                          "another subnet.")


def exhausted_error(subnet_id: str) -> Conflict:
    return conflict("IpAddressGenerationFailure", f"No more IP addresses available for subnet {subnet_id}.")
