"""Subnet pools (Neutron's ``subnet_allocation`` and ``default-subnetpools``) and address scopes.

A pool holds compacted prefixes of one IP version and the bounds of the prefix lengths subnets may
take from it. A subnet made from a pool (``subnetpool_id``) gets the first free block of the asked
length (``prefixlen``, else the pool's ``default_prefixlen``) or, given a ``cidr``, one that lies in
the pool's free space. Neutron's allocator walks the free blocks smallest first and takes the first
subnet of the first block big enough; so does this one, so allocations are deterministic.

Address scopes are API objects only: within a scope the pools' prefixes must be unique, but the
routers' address-scope marks (the data-plane effect) are not planned.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from neutrino.db import models
from neutrino.errors import InvalidInput, NotAuthorized, NotFound
from neutrino.services.core import (
    Tx,
    bump,
    check_revision,
    conflict,
    owner_for_create,
    stamp_new,
    standard,
    visible,
)

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

BITS = {4: 32, 6: 128}
DEFAULT_MIN = {4: 8, 6: 64}
QUOTA_UNIT = {4: 32, 6: 64}  # a pool's quota counts /32s (IPv4) or /64s (IPv6)


def _bad(message: str, neutron_type: str) -> InvalidInput:
    return InvalidInput(message, neutron_type=neutron_type)


def _policy(rule: str) -> NotAuthorized:
    return NotAuthorized(f"(rule:{rule}) is disallowed by policy", neutron_type="PolicyNotAuthorized")


def pool_not_found(pool_id: str) -> NotFound:
    return NotFound(f"Subnet pool {pool_id} could not be found.", neutron_type="SubnetPoolNotFound")


def scope_not_found(scope_id: str) -> NotFound:
    return NotFound(f"Address scope {scope_id} could not be found.", neutron_type="AddressScopeNotFound")


# -- serialisation ------------------------------------------------------------------------------

def subnetpool_dict(p: models.SubnetPool) -> dict[str, Any]:
    d = standard(p)
    d.update({
        "name": p.name, "prefixes": list(p.prefixes), "ip_version": p.ip_version,
        # Neutron answers the prefix lengths as strings
        "default_prefixlen": str(p.default_prefixlen), "min_prefixlen": str(p.min_prefixlen),
        "max_prefixlen": str(p.max_prefixlen), "default_quota": p.default_quota, "shared": p.shared,
        "is_default": p.is_default, "address_scope_id": p.address_scope_id,
    })
    return d


def address_scope_dict(a: models.AddressScope) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "project_id": a.project_id, "tenant_id": a.project_id,
            "shared": a.shared, "ip_version": a.ip_version}


# -- prefix arithmetic ----------------------------------------------------------------------------

def compact(prefixes: Iterable[str]) -> list[IPNet]:
    """The prefixes merged: overlaps and adjacent halves collapsed, in address order."""
    nets = [ipaddress.ip_network(p) for p in prefixes]
    return list(ipaddress.collapse_addresses(nets))  # type: ignore[type-var]


def _covered(net: IPNet, blocks: list[IPNet]) -> bool:
    return any(net.version == b.version and net.subnet_of(b) for b in blocks)  # type: ignore[arg-type]


def _overlaps(a: list[IPNet], b: list[IPNet]) -> bool:
    return any(x.version == y.version and x.overlaps(y) for x in a for y in b)


def free_blocks(prefixes: list[IPNet], used: list[IPNet]) -> list[IPNet]:
    """The pool's space less ``used``, as maximal blocks, smallest first (then by address)."""
    free = list(prefixes)
    for u in used:
        nxt: list[IPNet] = []
        for f in free:
            if f.version != u.version or not f.overlaps(u):
                nxt.append(f)
            elif u.supernet_of(f):  # type: ignore[arg-type]
                continue
            else:
                nxt.extend(f.address_exclude(u))  # type: ignore[arg-type]
        free = nxt
    free = compact(str(f) for f in free)
    return sorted(free, key=lambda n: (-n.prefixlen, int(n.network_address)))


# -- lookups --------------------------------------------------------------------------------------

def get_pool_row(tx: Tx, pool_id: str) -> models.SubnetPool:
    p = tx.session.get(models.SubnetPool, pool_id)
    if p is None or not visible(tx, p, public=p.shared):
        raise pool_not_found(pool_id)
    return p


def _owned_pool(tx: Tx, pool_id: str, action: str) -> models.SubnetPool:
    p = get_pool_row(tx, pool_id)
    if not tx.ctx.is_admin and p.project_id != tx.ctx.project_id:
        raise _policy(f"{action}_subnetpool")
    return p


def get_scope_row(tx: Tx, scope_id: str) -> models.AddressScope:
    a = tx.session.get(models.AddressScope, scope_id)
    if a is None or not visible(tx, a, public=a.shared):
        raise scope_not_found(scope_id)
    return a


def allocated_cidrs(tx: Tx, pool_id: str, project_id: str | None = None) -> list[IPNet]:
    q = select(models.Subnet.cidr).where(models.Subnet.subnetpool_id == pool_id)
    if project_id is not None:
        q = q.where(models.Subnet.project_id == project_id)
    return [ipaddress.ip_network(c) for c in tx.session.scalars(q).all()]


def default_pool(tx: Tx, version: int) -> models.SubnetPool | None:
    return tx.session.scalars(select(models.SubnetPool).where(
        models.SubnetPool.is_default.is_(True), models.SubnetPool.ip_version == version)).first()


# -- validation -----------------------------------------------------------------------------------

def _read_prefixes(prefixes: list[str]) -> tuple[int, list[IPNet]]:
    if not prefixes:
        raise _bad("Empty subnet pool prefix list.", "EmptySubnetPoolPrefixList")
    versions = {ipaddress.ip_network(p).version for p in prefixes}
    if len(versions) > 1:
        raise _bad("Cannot mix IPv4 and IPv6 prefixes in a subnet pool.", "PrefixVersionMismatch")
    return versions.pop(), compact(prefixes)


def _bounds_error(kind: str, n: int, base_kind: str, base: int) -> InvalidInput:
    return _bad(f"Illegal prefix bounds: {kind}={n}, {base_kind}={base}.", "IllegalSubnetPoolPrefixBounds")


def _check_bounds(version: int, lo: int, hi: int, default: int) -> None:
    if lo > hi:
        raise _bounds_error("min_prefixlen", lo, "max_prefixlen", hi)
    if hi > BITS[version]:
        raise _bounds_error("max_prefixlen", hi, "ip_version_max", BITS[version])
    if default < lo:
        raise _bounds_error("default_prefixlen", default, "min_prefixlen", lo)
    if default > hi:
        raise _bounds_error("default_prefixlen", default, "max_prefixlen", hi)


def _check_scope(tx: Tx, pool_id: str | None, scope_id: str, version: int, prefixes: list[IPNet],
                 owner: str) -> None:
    """Neutron's rules for a pool in an address scope: the scope exists (for the caller), is of the
    pool's IP version, belongs to the pool's owner (unless admin), and no other pool of the scope
    shares any of the prefixes."""
    scope = get_scope_row(tx, scope_id)
    if scope.ip_version != version:
        raise _bad(f"Illegal subnetpool association: subnetpool {pool_id} cannot associate with address "
                   f"scope {scope_id} because subnetpool ip_version is not {scope.ip_version}.",
                   "IllegalSubnetPoolIpVersionAssociationToAddressScope")
    if not tx.ctx.is_admin and scope.project_id != owner:
        raise _bad(f"Illegal subnetpool association: subnetpool {pool_id} cannot be associated with address "
                   f"scope {scope_id}.", "IllegalSubnetPoolAssociationToAddressScope")
    others = tx.session.scalars(select(models.SubnetPool).where(
        models.SubnetPool.address_scope_id == scope_id, models.SubnetPool.id != (pool_id or ""))).all()
    for other in others:
        if _overlaps(prefixes, compact(other.prefixes)):
            raise conflict("AddressScopePrefixConflict", "Failed to associate address scope: subnetpools within "
                                                         "an address scope must have unique prefixes.")


def _check_default(tx: Tx, version: int, pool_id: str | None) -> None:
    other = default_pool(tx, version)
    if other is not None and other.id != pool_id:
        raise _bad("Invalid input for operation: A default subnetpool for this IP family has already been "
                   "set. Only one default may exist per IP family.", "InvalidInput")


# -- subnet pools ---------------------------------------------------------------------------------

def create_subnetpool(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    if attrs.get("shared") and not tx.ctx.is_admin:
        raise _policy("create_subnetpool:shared")
    if attrs.get("is_default") and not tx.ctx.is_admin:
        raise _policy("create_subnetpool:is_default")
    version, prefixes = _read_prefixes(attrs["prefixes"])
    lo = attrs.get("min_prefixlen", DEFAULT_MIN[version])
    hi = attrs.get("max_prefixlen", BITS[version])
    default = attrs.get("default_prefixlen", lo)
    _check_bounds(version, lo, hi, default)
    if attrs.get("address_scope_id"):
        _check_scope(tx, None, attrs["address_scope_id"], version, prefixes, project)
    if attrs.get("is_default"):
        _check_default(tx, version, None)
    p = models.SubnetPool(
        name=attrs["name"], description=attrs.get("description", ""), ip_version=version,
        prefixes=[str(n) for n in prefixes], default_prefixlen=default, min_prefixlen=lo, max_prefixlen=hi,
        default_quota=attrs.get("default_quota"), shared=bool(attrs.get("shared")),
        is_default=bool(attrs.get("is_default")), address_scope_id=attrs.get("address_scope_id"))
    stamp_new(tx, p, project, revision=0)
    tx.session.add(p)
    return subnetpool_dict(p)


def list_subnetpools(tx: Tx, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    q = select(models.SubnetPool).order_by(models.SubnetPool.created_seq)
    if "id" in filters:
        q = q.where(models.SubnetPool.id.in_(filters["id"]))
    return [subnetpool_dict(p) for p in tx.session.scalars(q).all() if visible(tx, p, public=p.shared)]


def get_subnetpool(tx: Tx, pool_id: str) -> dict[str, Any]:
    return subnetpool_dict(get_pool_row(tx, pool_id))


def update_subnetpool(tx: Tx, pool_id: str, attrs: dict[str, Any], revision: int | None = None
                      ) -> dict[str, Any]:
    p = _owned_pool(tx, pool_id, "update")
    check_revision(p, revision)
    if "is_default" in attrs and not tx.ctx.is_admin:  # the policy checks it whatever its value
        raise _policy("update_subnetpool:is_default")
    prefixes = compact(p.prefixes)
    if "prefixes" in attrs:
        version, new = _read_prefixes(attrs["prefixes"])
        if version != p.ip_version:
            raise _bad("Cannot mix IPv4 and IPv6 prefixes in a subnet pool.", "PrefixVersionMismatch")
        if not all(_covered(old, new) for old in prefixes):
            raise _bad("Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes.",
                       "IllegalSubnetPoolPrefixUpdate")
        if new != prefixes and p.address_scope_id and not tx.ctx.is_admin:
            scope = tx.session.get(models.AddressScope, p.address_scope_id)
            if scope is not None and scope.project_id != tx.ctx.project_id:
                raise _bad(f"Illegal subnetpool update : subnetpool {p.id} cannot update prefixes when "
                           f"associated with address scope {scope.id} of another project.",
                           "IllegalSubnetPoolUpdate")
        prefixes = new
    lo = attrs.get("min_prefixlen", p.min_prefixlen)
    hi = attrs.get("max_prefixlen", p.max_prefixlen)
    default = attrs.get("default_prefixlen", p.default_prefixlen)
    _check_bounds(p.ip_version, lo, hi, default)
    scope_id = attrs.get("address_scope_id", p.address_scope_id)
    if scope_id and (scope_id != p.address_scope_id or "prefixes" in attrs):
        _check_scope(tx, p.id, scope_id, p.ip_version, prefixes, p.project_id)
    if attrs.get("is_default") and not p.is_default:
        _check_default(tx, p.ip_version, p.id)
    for k, v in attrs.items():
        if k != "prefixes":
            setattr(p, k, v)
    p.prefixes = [str(n) for n in prefixes]
    p.min_prefixlen, p.max_prefixlen, p.default_prefixlen = lo, hi, default
    bump(p)
    return subnetpool_dict(p)


def delete_subnetpool(tx: Tx, pool_id: str, revision: int | None = None) -> None:
    p = _owned_pool(tx, pool_id, "delete")
    check_revision(p, revision)
    used = tx.session.scalar(select(func.count()).select_from(models.Subnet).where(
        models.Subnet.subnetpool_id == p.id))
    if used:
        raise conflict("SubnetPoolInUse", f"Subnet pool {p.id} cannot be deleted: Subnet pool has existing "
                                          "allocations.")
    tx.session.delete(p)


def change_prefixes(tx: Tx, pool_id: str, body: Any, *, add: bool) -> dict[str, Any]:
    """``add_prefixes`` / ``remove_prefixes`` (extension ``subnetpool-prefix-ops``)."""
    from neutrino.services.attributes import list_of, to_cidr

    if not isinstance(body, dict) or "prefixes" not in body:
        raise _bad("Unable to find 'prefixes' in request body", "HTTPBadRequest")
    try:
        asked: list[str] = list_of(to_cidr)(body["prefixes"])
    except ValueError as e:
        raise _bad(f"Invalid input for prefixes. Reason: {e}.", "HTTPBadRequest") from None
    p = _owned_pool(tx, pool_id, "add_prefixes" if add else "remove_prefixes")
    if not asked:
        return {"prefixes": list(p.prefixes)}
    if {ipaddress.ip_network(a).version for a in asked} != {p.ip_version}:
        raise _bad("Cannot mix IPv4 and IPv6 prefixes in a subnet pool.", "PrefixVersionMismatch")
    if add:
        new = compact([*p.prefixes, *asked])
        if p.address_scope_id:
            _check_scope(tx, p.id, p.address_scope_id, p.ip_version, new, p.project_id)
    else:
        remove = compact(asked)
        for cidr in allocated_cidrs(tx, p.id):
            if any(cidr.overlaps(r) for r in remove):
                raise _bad(f"Illegal update to prefixes: Unable to remove prefixes {', '.join(asked)}: one or "
                           "more subnets are allocated from them.", "IllegalSubnetPoolPrefixUpdate")
        new = free_blocks(compact(p.prefixes), remove)
        new = compact(str(n) for n in new)
    p.prefixes = [str(n) for n in new]
    bump(p)
    return {"prefixes": list(p.prefixes)}


# -- subnet allocation ------------------------------------------------------------------------------

def allocate(tx: Tx, attrs: dict[str, Any], version: int, network: models.Network, project: str
             ) -> tuple[str | None, str | None]:
    """The pool (if any) a new subnet comes from and its CIDR: the one asked for, checked against the
    pool, or the first free block of the asked length. ``(None, None)``: no pool and no cidr."""
    pool_id = attrs.get("subnetpool_id")
    use_default = attrs.get("use_default_subnetpool")
    if pool_id and use_default:
        raise _bad("Bad subnet request: subnetpool_id and use_default_subnetpool cannot both be specified.",
                   "BadRequest")
    pool: models.SubnetPool | None = None
    if pool_id:
        pool = get_pool_row(tx, pool_id)
    elif use_default:
        pool = default_pool(tx, version)
        if pool is None:
            raise _bad(f"Bad subnet request: No default subnetpool found for IPv{version}.", "BadRequest")
        if not visible(tx, pool, public=pool.shared):
            raise pool_not_found(pool.id)
    cidr: str | None = attrs.get("cidr")
    if "prefixlen" in attrs and cidr is not None:
        raise _bad("Bad subnet request: cidr and prefixlen must not be supplied together.", "BadRequest")
    # Neutron: all the network's subnets of one IP version come from one pool (or none)
    for s in network.subnets:
        if s.ip_version == version and s.subnetpool_id != (pool.id if pool else None):
            raise _bad("Subnets hosted on the same network must be allocated from the same subnet pool.",
                       "NetworkSubnetPoolAffinityError")
    if pool is None:
        return None, cidr
    if pool.ip_version != version:
        raise _bad(f"Cannot allocate IPv{version} subnet from IPv{pool.ip_version} subnet pool",
                   "IpVersionMismatch")
    prefixlen = ipaddress.ip_network(cidr).prefixlen if cidr else attrs.get("prefixlen", pool.default_prefixlen)
    if prefixlen > pool.max_prefixlen:
        raise _bad(f"Unable to allocate subnet with prefix length {prefixlen}, maximum allowed prefix is "
                   f"{pool.max_prefixlen}.", "MaxPrefixSubnetAllocationError")
    if prefixlen < pool.min_prefixlen:
        raise _bad(f"Unable to allocate subnet with prefix length {prefixlen}, minimum allowed prefix is "
                   f"{pool.min_prefixlen}.", "MinPrefixSubnetAllocationError")
    if pool.default_quota:
        unit = QUOTA_UNIT[pool.ip_version]
        used = sum(2 ** (unit - n.prefixlen) for n in allocated_cidrs(tx, pool.id, project))
        if used + 2 ** (unit - prefixlen) > pool.default_quota:
            raise conflict("SubnetPoolQuotaExceeded", "Per-tenant subnet pool prefix quota exceeded.")
    free = free_blocks(compact(pool.prefixes), allocated_cidrs(tx, pool.id))
    if cidr is not None:
        want = ipaddress.ip_network(cidr)
        if not _covered(want, free):
            raise conflict("SubnetAllocationError", "Failed to allocate subnet: Cannot allocate requested subnet "
                                                    "from the available set of prefixes.")
        return pool.id, cidr
    for block in free:
        if prefixlen >= block.prefixlen:
            return pool.id, str(next(block.subnets(new_prefix=prefixlen)))
    raise conflict("SubnetAllocationError", f"Failed to allocate subnet: Insufficient prefix space to allocate "
                                            f"subnet size /{prefixlen}.")


# -- address scopes ---------------------------------------------------------------------------------

def create_scope(tx: Tx, attrs: dict[str, Any]) -> dict[str, Any]:
    project = owner_for_create(tx, attrs)
    if attrs.get("shared") and not tx.ctx.is_admin:
        raise _policy("create_address_scope:shared")
    a = models.AddressScope(name=attrs["name"], ip_version=attrs["ip_version"], shared=bool(attrs.get("shared")),
                            description="")
    stamp_new(tx, a, project, revision=0)
    tx.session.add(a)
    return address_scope_dict(a)


def list_scopes(tx: Tx, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    q = select(models.AddressScope).order_by(models.AddressScope.created_seq)
    return [address_scope_dict(a) for a in tx.session.scalars(q).all() if visible(tx, a, public=a.shared)]


def get_scope(tx: Tx, scope_id: str) -> dict[str, Any]:
    return address_scope_dict(get_scope_row(tx, scope_id))


def _owned_scope(tx: Tx, scope_id: str, action: str) -> models.AddressScope:
    a = get_scope_row(tx, scope_id)
    if not tx.ctx.is_admin and a.project_id != tx.ctx.project_id:
        raise _policy(f"{action}_address_scope")
    return a


def update_scope(tx: Tx, scope_id: str, attrs: dict[str, Any], revision: int | None = None) -> dict[str, Any]:
    a = _owned_scope(tx, scope_id, "update")
    check_revision(a, revision)
    # Neutron's policy checks an attribute given in an update whatever its value
    if "shared" in attrs and not tx.ctx.is_admin:
        raise _policy("update_address_scope:shared")
    if "shared" in attrs and a.shared and not attrs["shared"]:
        raise _bad("Unable to complete operation on address scope "
                   f"{a.id}. Shared address scope can't be unshared.", "AddressScopeUpdateError")
    for k, v in attrs.items():
        setattr(a, k, v)
    bump(a)
    return address_scope_dict(a)


def delete_scope(tx: Tx, scope_id: str, revision: int | None = None) -> None:
    a = _owned_scope(tx, scope_id, "delete")
    check_revision(a, revision)
    used = tx.session.scalar(select(func.count()).select_from(models.SubnetPool).where(
        models.SubnetPool.address_scope_id == a.id))
    if used:
        raise conflict("AddressScopeInUse", f"Unable to complete operation on address scope {a.id}. There are "
                                            "one or more subnet pools in use on the address scope.")
    tx.session.delete(a)
