"""A :class:`~neutrino.sim.world.World` for a planned cloud: its hosts' states, and from the cloud
snapshot the guests (each server's port, tap or vnet device, MAC and fixed IP), the hosts' tunnel
addresses and the outside world: behind each router's external gateway (Neutron), or on the
hosts' public network as the upstream gateway of their default route (nova-network).

:func:`refresh_world` applies a change to a world already booted (see :meth:`World.refresh`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from neutrino.host.state import ROOT, HostState
from neutrino.plan import naming
from neutrino.scenarios.model import Mechanism
from neutrino.services.snapshot import CloudSnapshot
from neutrino.sim.world import OUTSIDE, ExternalNet, GuestSpec, Refreshed, Uplink, World


def _device_for(host: HostState | None, port_id: str, mac: str) -> str | None:
    if host is None:
        return None
    tap = naming.tap_device(port_id)
    vnet_mac = "fe" + mac[2:]
    for ns in host.namespaces:
        for lk in ns.links or ():
            if lk.name == tap or (lk.name.startswith("vnet") and (lk.mac or "").lower() == vnet_mac.lower()):
                return lk.name
    return None


def guests_of(cloud: CloudSnapshot, hosts: Mapping[str, HostState],
              known: Mapping[str, GuestSpec] | None = None) -> tuple[GuestSpec, ...]:
    """Each server's first port as a guest. ``known``: guests as a world has them, whose device is
    taken as it is when their host is not in ``hosts`` (a refresh passes only the changed hosts)."""
    out = []
    for n, server in enumerate(cloud.servers, 1):
        for pid in server.port_ids[:1]:
            port = cloud.port(pid)
            had = (known or {}).get(server.name)
            if server.host not in hosts and had is not None and had.host == server.host \
                    and had.mac == port.mac_address:
                dev: str | None = had.device
            else:
                dev = _device_for(hosts.get(server.host), port.id, port.mac_address)
            if dev is None:
                continue
            ip = next((f.ip_address for f in port.fixed_ips if isinstance(f.ip_address, IPv4Address)), None)
            out.append(GuestSpec(server.name, server.host, dev, port.mac_address, ip,
                                 cloud.deployment.nova_network.instance_offset + n))
    return tuple(out)


def externals_of(cloud: CloudSnapshot, hosts: Collection[str]) -> tuple[ExternalNet, ...]:
    """The external gateways behind the routers on ``hosts`` (host names, or states by name)."""
    out: list[ExternalNet] = []
    if cloud.deployment.mechanism is Mechanism.NOVA_NETWORK:
        return ()
    for router in cloud.routers:
        gw = router.gateway
        if gw is None or router.host not in hosts:
            continue
        sub = next((s for s in cloud.subnets_of(gw.network_id) if s.ip_version == 4 and s.gateway_ip), None)
        if sub is None:
            continue
        iface = IPv4Interface(f"{sub.gateway_ip}/{sub.cidr.prefixlen}")
        if any(e.gateway == iface and e.host == router.host for e in out):
            continue
        out.append(ExternalNet(router.host, "br-ex", iface))
    for router in cloud.routers:  # DVR: every host with a floating-IP gateway (fg-) on the external network
        gw = router.gateway
        sub = None if gw is None or not router.distributed else next(
            (s for s in cloud.subnets_of(gw.network_id) if s.ip_version == 4 and s.gateway_ip), None)
        if gw is None or sub is None:
            continue
        iface = IPv4Interface(f"{sub.gateway_ip}/{sub.cidr.prefixlen}")
        for p in cloud.ports_on_network(gw.network_id):
            if p.device_owner == "network:floatingip_agent_gateway" and p.binding_host in hosts \
                    and not any(e.gateway == iface and e.host == p.binding_host for e in out):
                out.append(ExternalNet(p.binding_host, "br-ex", iface))
    return tuple(out)


def uplinks_of(cloud: CloudSnapshot, hosts: tuple[HostState, ...]) -> tuple[Uplink, ...]:
    """nova-network: the upstream gateway each host's default route names, on the segment of the
    route's device (the public interface), in the subnet of the host's address there. The
    internet lies behind it only when the gateway's address is globally routable; the floating
    pools (the external networks' subnets) are on the same wire, held as /32s by the hosts."""
    if cloud.deployment.mechanism is not Mechanism.NOVA_NETWORK:
        return ()
    pools = tuple(s.cidr for n in cloud.networks if n.external for s in cloud.subnets_of(n.id)
                  if isinstance(s.cidr, IPv4Network))
    out: list[Uplink] = []
    for host in hosts:
        root = host.namespace(ROOT)
        if root is None:
            continue
        for r in root.routes or ():
            if (r.dst is not None and r.dst.prefixlen) or not isinstance(r.via, IPv4Address) or r.dev is None:
                continue
            lk = root.link(r.dev)
            net = next((a.interface.network for a in lk.addresses if isinstance(a.interface, IPv4Interface)
                        and r.via in a.interface.network), None) if lk is not None else None
            if net is None:
                continue
            gw = IPv4Interface(f"{r.via}/{net.prefixlen}")
            if not any(u.segment == r.dev and u.gateway == gw for u in out):
                out.append(Uplink(r.dev, gw, internet=gw.ip.is_global, on_link=pools))
    return tuple(out)


def refresh_world(world: World, cloud: CloudSnapshot, changed: Iterable[HostState], *,
                  gone: Iterable[str] = ()) -> Refreshed:
    """Bring ``world`` (booted, kept or loaded) to ``cloud`` as it is now: ``changed`` are the
    hosts whose planned state changed, ``gone`` the hosts no longer planned. See
    :meth:`World.refresh` (it raises :class:`~neutrino.sim.world.StaleWorld` when the world must
    be built anew)."""
    changed = tuple(changed)
    by_name = {h.name: h for h in changed}
    gone = tuple(gone)
    names = (set(world.hosts) - {OUTSIDE} - set(gone)) | set(by_name)
    uplinks: tuple[Uplink, ...] = ()
    if cloud.deployment.mechanism is Mechanism.NOVA_NETWORK:
        roots = tuple(by_name.get(n) or HostState(n, namespaces=(world.stack(n, ROOT).ns,)) for n in sorted(names))
        uplinks = uplinks_of(cloud, roots)
    return world.refresh(changed, guests=guests_of(cloud, by_name, world.specs), externals=externals_of(cloud, names),
                         uplinks=uplinks, tunnel_ips=_tunnel_ips(cloud), network_hosts=_network_hosts(cloud),
                         gone=gone)


def _tunnel_ips(cloud: CloudSnapshot) -> dict[str, IPv4Address]:
    return {h.name: h.tunnel_ip for h in cloud.deployment.hosts if isinstance(h.tunnel_ip, ipaddress.IPv4Address)}


def _network_hosts(cloud: CloudSnapshot) -> frozenset[str]:
    return frozenset(h.name for h in cloud.deployment.hosts if h.has("network"))


def world_of(cloud: CloudSnapshot, hosts: tuple[HostState, ...]) -> World:
    by_name = {h.name: h for h in hosts}
    return World(hosts, tunnel_ips=_tunnel_ips(cloud), guests=guests_of(cloud, by_name),
                 externals=externals_of(cloud, by_name), network_hosts=_network_hosts(cloud),
                 uplinks=uplinks_of(cloud, hosts), underlay_mtu=cloud.deployment.physical_mtu)
