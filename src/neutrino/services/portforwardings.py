"""Floating-IP port forwarding (Neutron's ``floating-ip-port-forwarding`` service plugin,
``neutron/services/portforwarding/pf_plugin.py``): a free floating IP's ``protocol``
``external_port`` (or range) forwarded to ``internal_ip_address``:``internal_port`` (or range) of
``internal_port_id``.

Neutron's rules, as its plugin applies them:

- the floating IP must be free (no ``port_id``): else ``FloatingIPPortAlreadyAssociated`` (409);
  a floating IP with forwardings cannot be associated, nor deleted (``FipInUseByPortForwarding``);
- the internal port must have no floating IP of its own (``PortHasBindingFloatingIP``, 409);
- ``internal_ip_address`` must be an IPv4 fixed IP of the internal port (default: its first one), and
  its subnet reachable from the floating IP's external network through a router: the floating IP's
  ``router_id`` becomes that router while it has forwardings (and None again with the last one);
- the external range of (floating IP, protocol) and the internal range of (internal port, address,
  protocol) may not overlap another forwarding's; an internal range must be as long as the
  external one (N-N), or a single port (1-N);
- deleting the internal port deletes its forwardings (``on_port_deleted``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import select

from neutrino.db import models
from neutrino.errors import Conflict
from neutrino.services.core import Tx, bad_request, new_id, not_found
from neutrino.services.ids import next_seq

RESOURCE = "port_forwarding"
PROTOCOLS = ("dccp", "icmp", "ipv6-icmp", "sctp", "tcp", "udp")


def _range(start: int, end: int) -> str:
    return f"{start}:{end}"


def pf_dict(pf: models.PortForwarding) -> dict[str, Any]:
    """The API's view (``floatingip_id`` and ``project_id`` are not shown, as in Neutron)."""
    single_ext = pf.external_port_start == pf.external_port_end
    single_int = pf.internal_port_start == pf.internal_port_end
    return {"id": pf.id, "external_port": pf.external_port_start if single_ext else None,
            "internal_port": pf.internal_port_start if single_int else None,
            "internal_ip_address": pf.internal_ip_address, "protocol": pf.protocol,
            "internal_port_id": pf.internal_port_id, "description": pf.description,
            "external_port_range": _range(pf.external_port_start, pf.external_port_end),
            "internal_port_range": _range(pf.internal_port_start, pf.internal_port_end)}


def fip_field(pf: models.PortForwarding) -> dict[str, Any]:
    """One entry of a floating IP's ``port_forwardings`` (``expose-port-forwarding-in-fip``)."""
    d: dict[str, Any] = {"id": pf.id, "internal_ip_address": pf.internal_ip_address, "protocol": pf.protocol,
         "internal_port_id": pf.internal_port_id}
    if pf.internal_port_start == pf.internal_port_end:
        d["internal_port"] = pf.internal_port_start
    if pf.external_port_start == pf.external_port_end:
        d["external_port"] = pf.external_port_start
    return d


def of_fips(tx: Tx, fip_ids: list[str]) -> dict[str, list[models.PortForwarding]]:
    """The forwardings of each floating IP (in creation order)."""
    out: dict[str, list[models.PortForwarding]] = {}
    if not fip_ids:
        return out
    for pf in tx.session.scalars(select(models.PortForwarding).where(
            models.PortForwarding.floatingip_id.in_(fip_ids)).order_by(models.PortForwarding.created_seq)):
        out.setdefault(pf.floatingip_id, []).append(pf)
    return out


def fip_has_forwardings(tx: Tx, fip_id: str) -> bool:
    return tx.session.scalar(select(models.PortForwarding.id).where(
        models.PortForwarding.floatingip_id == fip_id).limit(1)) is not None


def in_use(fip_id: str) -> Conflict:
    return Conflict(f"Floating IP {fip_id} in use by Port Forwarding resources.",
                    neutron_type="FipInUseByPortForwarding")


def _parent(tx: Tx, fip_id: str) -> models.FloatingIP:
    from neutrino.services.floatingips import get_fip_row
    return get_fip_row(tx, fip_id)


def _row(tx: Tx, fip: models.FloatingIP, pf_id: str) -> models.PortForwarding:
    pf = tx.session.get(models.PortForwarding, pf_id)
    if pf is None or pf.floatingip_id != fip.id:
        raise not_found(RESOURCE, pf_id)
    return pf


def _parse_range(v: str | None) -> tuple[int, int] | None:
    if v is None:
        return None
    a, _, b = v.partition(":")
    return int(a), int(b or a)


def _ranges(attrs: dict[str, Any], current: models.PortForwarding | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """The external and internal (start, end) of a create or an update, Neutron's way: a single
    port or a ``a:b`` range for each; both forms at once refused."""
    out: list[tuple[int, int]] = []
    for side in ("external", "internal"):
        single, rng = attrs.get(f"{side}_port"), attrs.get(f"{side}_port_range")
        if single is not None and rng is not None:
            raise bad_request(RESOURCE, f"You must specify either {side}_port or {side}_port_range, not both")
        if single is not None:
            out.append((single, single))
        elif rng is not None:
            r = _parse_range(rng)
            assert r is not None
            out.append(r)
        elif current is not None:
            out.append((getattr(current, f"{side}_port_start"), getattr(current, f"{side}_port_end")))
        else:
            raise bad_request(RESOURCE, f"{side}_port or {side}_port_range must be specified")
    ext, internal = out
    if internal[1] - internal[0] > 0 and internal[1] - internal[0] != ext[1] - ext[0]:
        raise bad_request(RESOURCE, "Invalid ranges of internal and/or external ports. The relation between "
                                    "internal and external ports must be N-N or 1-N")
    return ext, internal


def _collides(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return max(a[0], b[0]) <= min(a[1], b[1])


def _check_collisions(tx: Tx, fip_id: str, pf_id: str | None, protocol: str, internal_port_id: str,
                      internal_ip: str, ext: tuple[int, int], internal: tuple[int, int]) -> None:
    m = models.PortForwarding
    sides = (
        ("internal", internal, (m.internal_port_id == internal_port_id, m.protocol == protocol,
                                m.internal_ip_address == internal_ip)),
        ("external", ext, (m.floatingip_id == fip_id, m.protocol == protocol)),
    )
    for side, mine, where in sides:
        for other in tx.session.scalars(select(m).where(*where).order_by(m.created_seq)).all():
            theirs = ((other.internal_port_start, other.internal_port_end) if side == "internal"
                      else (other.external_port_start, other.external_port_end))
            if other.id != pf_id and _collides(theirs, mine):
                raise bad_request(RESOURCE, f"There is a port collision with the {side}_port_range. The following "
                                            f"ranges collide: {_range(*theirs)} and {_range(*mine)}")


def _check_no_floating_ip(tx: Tx, port_id: str, fixed_ip: str | None) -> None:
    f = tx.session.scalar(select(models.FloatingIP).where(models.FloatingIP.port_id == port_id)
                          .order_by(models.FloatingIP.created_seq).limit(1))
    if f is not None:
        raise Conflict(f"Cannot create port forwarding to floating IP {f.floating_ip_address} ({f.id}) with port "
                       f"{port_id} using fixed IP {fixed_ip}, as that port already has a binding floating IP.",
                       neutron_type="PortHasBindingFloatingIP")


def _internal_target(tx: Tx, fip: models.FloatingIP, port_id: str, ip: str | None, pf_id: str | None
                     ) -> tuple[str, str]:
    """(internal IP address, router id): the address checked against the port's IPv4 fixed IPs
    (default: the first), the router found as for a floating IP (Neutron's
    ``_find_a_router_for_fip_port_forwarding``)."""
    from neutrino.services.floatingips import find_router
    from neutrino.services.ports import get_port_row
    port = get_port_row(tx, port_id)
    v4 = [a for a in port.fixed_ips if ipaddress.ip_address(a.ip_address).version == 4]
    if not v4:
        raise bad_request(RESOURCE, f"Requested internal port {port_id} must allocate an IPv4 address at least")
    if ip is None:
        chosen = v4[0]
    else:
        found = next((a for a in v4 if ipaddress.ip_address(a.ip_address) == ipaddress.ip_address(ip)), None)
        if found is None:
            shown = [{"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in v4]
            raise bad_request(RESOURCE, f"Requested internal IP address {ip} is not suitable for internal neutron "
                                        f"port {port_id}, as its fixed_ips are {shown}")
        chosen = found
    subnet = tx.session.get(models.Subnet, chosen.subnet_id)
    assert subnet is not None
    try:
        router_id = find_router(tx, fip.floating_network_id, subnet, port_id)
    except Exception as e:
        if getattr(e, "neutron_type", "") != "ExternalGatewayForFloatingIPNotFound":
            raise
        raise bad_request(RESOURCE, f"External network {fip.floating_network_id} is not reachable from subnet "
                                    f"{subnet.id}. Cannot set Port forwarding for port {port_id} with Floating IP "
                                    f"{fip.id}") from None
    if fip.router_id and fip.router_id != router_id:
        raise bad_request(RESOURCE, f"The Floating IP {fip.id} had been set on router {fip.router_id}, the "
                                    f"internal Neutron port {port_id} can not reach it")
    return chosen.ip_address, router_id


def create_pf(tx: Tx, fip_id: str, attrs: dict[str, Any]) -> dict[str, Any]:
    fip = _parent(tx, fip_id)
    attrs.pop("project_id", None)
    for k in ("internal_port_id", "protocol"):
        if attrs.get(k) is None:
            raise bad_request(RESOURCE, f"Failed to parse request. Required attribute '{k}' not specified")
    ext, internal = _ranges(attrs, None)
    port_id = attrs["internal_port_id"]
    _check_no_floating_ip(tx, port_id, attrs.get("internal_ip_address"))
    if fip.port_id:
        raise Conflict(f"Cannot associate floating IP {fip.floating_ip_address} ({fip.id}) with port {port_id} "
                       f"using fixed IP {attrs.get('internal_ip_address')}, as that fixed IP already has a floating "
                       f"IP on external network {fip.floating_network_id}.",
                       neutron_type="FloatingIPPortAlreadyAssociated")
    ip, router_id = _internal_target(tx, fip, port_id, attrs.get("internal_ip_address"), None)
    _check_collisions(tx, fip.id, None, attrs["protocol"], port_id, ip, ext, internal)
    if not fip.router_id:
        fip.router_id = router_id
    pf = models.PortForwarding(
        id=new_id(tx, models.PortForwarding), created_seq=next_seq(tx.session), floatingip_id=fip.id,
        internal_port_id=port_id, internal_ip_address=ip, internal_port_start=internal[0],
        internal_port_end=internal[1], external_port_start=ext[0], external_port_end=ext[1],
        protocol=attrs["protocol"], description=attrs.get("description") or "")
    tx.session.add(pf)
    tx.session.flush()
    return pf_dict(pf)


def list_pfs(tx: Tx, fip_id: str, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    fip = _parent(tx, fip_id)
    return [pf_dict(pf) for pf in of_fips(tx, [fip.id]).get(fip.id, [])]


def get_pf(tx: Tx, fip_id: str, pf_id: str) -> dict[str, Any]:
    return pf_dict(_row(tx, _parent(tx, fip_id), pf_id))


def update_pf(tx: Tx, fip_id: str, pf_id: str, attrs: dict[str, Any]) -> dict[str, Any]:
    fip = _parent(tx, fip_id)
    pf = _row(tx, fip, pf_id)
    port_id = attrs.get("internal_port_id") or pf.internal_port_id
    if attrs.get("internal_port_id"):
        _check_no_floating_ip(tx, port_id, attrs.get("internal_ip_address"))
    ip = attrs.get("internal_ip_address") or pf.internal_ip_address
    if port_id != pf.internal_port_id or attrs.get("internal_ip_address"):
        ip, _router = _internal_target(tx, fip, port_id, ip, pf.id)
    ext, internal = _ranges(attrs, pf)
    protocol = attrs.get("protocol") or pf.protocol
    _check_collisions(tx, fip.id, pf.id, protocol, port_id, ip, ext, internal)
    pf.internal_port_id, pf.internal_ip_address, pf.protocol = port_id, ip, protocol
    pf.external_port_start, pf.external_port_end = ext
    pf.internal_port_start, pf.internal_port_end = internal
    if "description" in attrs:
        pf.description = attrs["description"] or ""
    tx.session.flush()
    return pf_dict(pf)


def _delete(tx: Tx, pf: models.PortForwarding) -> None:
    """Delete one forwarding; the floating IP's last one frees it from its router."""
    rest = tx.session.scalar(select(models.PortForwarding.id).where(
        models.PortForwarding.floatingip_id == pf.floatingip_id, models.PortForwarding.id != pf.id).limit(1))
    if rest is None:
        fip = tx.session.get(models.FloatingIP, pf.floatingip_id)
        if fip is not None and fip.port_id is None:
            fip.router_id = None
    tx.session.delete(pf)
    tx.session.flush()


def delete_pf(tx: Tx, fip_id: str, pf_id: str) -> None:
    _delete(tx, _row(tx, _parent(tx, fip_id), pf_id))


def on_port_deleted(tx: Tx, port_id: str) -> None:
    """The internal port is going: its forwardings go with it (Neutron's PRECOMMIT_DELETE handler)."""
    for pf in tx.session.scalars(select(models.PortForwarding).where(
            models.PortForwarding.internal_port_id == port_id)).all():
        _delete(tx, pf)
