"""The L3 agent's HA routers on one host (keepalived VRRP; Neutron's ``agent/l3/ha_router.py``).

An HA router has a ``qrouter-<id>`` namespace on every host it is bound to (``Router.bindings``),
each with its own ``ha-`` device on the project's HA network (the host's HA port, its
169.254.192.0/18 address configured by the agent) and the same ``qr-``/``qg-`` devices (same MACs)
as a legacy router. keepalived runs in each namespace with the configuration
:func:`keepalived_conf` writes (``<state_path>/ha_confs/<router>/keepalived.conf``, the text of
``neutron/agent/linux/keepalived.py``): every instance starts ``BACKUP`` with ``nopreempt`` and
priority 50, and the one that wins the election (the binding whose ``ha_state`` is ``active``)
configures the VIPs: the primary VIP ``169.254.0.<vr_id>/24`` on ``ha-``, the ``qr-``/``qg-``
addresses and floating IPs (``virtual_ipaddress_excluded``) and the default and extra routes
(``virtual_routes``, ``proto static``). On the other hosts those devices have no addresses. The
agent's view of the state is the ``state`` file beside the configuration (``primary``/``backup``).
The iptables rules are the legacy router's, on every host, port forwardings included
(``plan/portforward.py``); a forwarded floating IP is one more VIP, on the master's ``qg-`` only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from neutrino.host.iproute_link import Address, Link
from neutrino.host.state import FileState, HostState, NamespaceState, Origin
from neutrino.host.sysctl import Sysctl
from neutrino.plan import naming
from neutrino.plan.generation import Profile, address, agent_link, assemble, connected_route, ordered_routes
from neutrino.plan.portforward import forwarded, plan_port_forwardings
from neutrino.services.snapshot import CloudSnapshot, L3Binding, Port, Router

BUILDER = "plan_l3_ha"
HA_DEFAULT_PRIORITY = 50
GARP_MASTER_DELAY = 60
ADVERT_INT = 2
EMAIL_FROM = "neutron@openstack.local"
KEEPALIVED_ROUTER_ID = "neutron"
PRIMARY_VIP_RANGE = ipaddress.ip_network("169.254.0.0/24")  # Neutron's get_free_range over 169.254.0.0/16
ACTIVE = "active"


def ha_routers_on(cloud: CloudSnapshot, host: str) -> tuple[tuple[Router, L3Binding], ...]:
    """The HA routers bound to ``host`` (admin-up ones: the agent removes the others) and the binding."""
    out = []
    for r in cloud.routers:
        if not (r.ha and r.admin_state_up):
            continue
        b = next((b for b in r.bindings if b.host == host), None)
        if b is not None and b.ha_port_id:
            out.append((r, b))
    return tuple(out)


def master_of(router: Router) -> str | None:
    """The host whose keepalived holds the VIPs, as the bindings' ``ha_state`` says."""
    return next((b.host for b in router.bindings if b.ha_state == ACTIVE), None)


def ha_confs_dir(router_id: str, state_path: str = naming.NEUTRON_STATE_PATH) -> str:
    return f"{state_path}/ha_confs/{router_id}"


def keepalived_conf_path(router_id: str, state_path: str = naming.NEUTRON_STATE_PATH) -> str:
    return f"{ha_confs_dir(router_id, state_path)}/keepalived.conf"


def state_file_path(router_id: str, state_path: str = naming.NEUTRON_STATE_PATH) -> str:
    return f"{ha_confs_dir(router_id, state_path)}/state"


def keepalived_pid_file(router_id: str, state_path: str = naming.NEUTRON_STATE_PATH) -> str:
    """Where the agent's process manager keeps keepalived's PID (``<ha_confs>/<router>.pid``)."""
    return f"{state_path}/ha_confs/{router_id}.pid"


def primary_vip(vr_id: int) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{PRIMARY_VIP_RANGE.network_address + vr_id}/{PRIMARY_VIP_RANGE.prefixlen}")


def _eui64_link_local(mac: str) -> str:
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    words = [(b[0] << 8) | b[1], (b[2] << 8) | 0xFF, 0xFE00 | b[3], (b[4] << 8) | b[5]]
    return str(ipaddress.IPv6Interface("fe80::" + ":".join(f"{w:x}" for w in words) + "/64"))


def _cidrs(cloud: CloudSnapshot, port: Port) -> list[str]:
    return [f"{f.ip_address}/{cloud.subnet(f.subnet_id).cidr.prefixlen}" for f in port.fixed_ips]


def keepalived_conf(cloud: CloudSnapshot, router: Router, ha_dev: str) -> str:
    """keepalived.conf as Neutron writes it for ``router`` on the host whose HA device is ``ha_dev``
    (no trailing newline, as ``'\\n'.join`` leaves it)."""
    from neutrino.plan.l3 import _lookup
    r = _lookup(cloud, router)
    vr = router.ha_vr_id
    vips: list[str] = []
    routes: list[str] = []
    ports = [(naming.router_internal_device(p.id), p) for p in r.internal]
    if r.gateway is not None and r.qg is not None:
        ports.append((r.qg, r.gateway))
    for dev, port in ports:
        vips += [f"{c} dev {dev} no_track" for c in _cidrs(cloud, port)]
        vips.append(f"{_eui64_link_local(port.mac_address)} dev {dev} scope link no_track")
    if r.gateway is not None and r.qg is not None:
        vips += [f"{f.floating_ip_address}/32 dev {r.qg} no_track" for f in r.floating]
        # the port forwardings' floating IPs (the extension's add_floating_ip: one more VIP)
        vips += [f"{f.floating_ip_address}/32 dev {r.qg} no_track" for f, _ in forwarded(cloud, router)]
        for f in r.gateway.fixed_ips:
            subnet = cloud.subnet(f.subnet_id)
            if subnet.gateway_ip is not None and subnet.gateway_ip not in subnet.cidr:
                routes.append(f"{subnet.gateway_ip} dev {r.qg} scope link no_track protocol static")
        for f in r.gateway.fixed_ips:
            gw = cloud.subnet(f.subnet_id).gateway_ip
            if gw is not None:
                anywhere = "0.0.0.0/0" if gw.version == 4 else "::/0"
                routes.append(f"{anywhere} via {gw} dev {r.qg} no_track protocol static")
    routes += [f"{x.destination} via {x.nexthop} no_track protocol static" for x in router.routes]
    lines = ["global_defs {", f"    notification_email_from {EMAIL_FROM}", f"    router_id {KEEPALIVED_ROUTER_ID}",
             "}",
             f"vrrp_instance VR_{vr} {{", "    state BACKUP", f"    interface {ha_dev}", f"    virtual_router_id {vr}",
             f"    priority {HA_DEFAULT_PRIORITY}", f"    garp_master_delay {GARP_MASTER_DELAY}", "    nopreempt",
             f"    advert_int {ADVERT_INT}", "    track_interface {", f"        {ha_dev}", "    }",
             "    virtual_ipaddress {", f"        {primary_vip(vr)} dev {ha_dev}", "    }"]
    unique = list(dict.fromkeys(vips))
    if unique:
        lines += ["    virtual_ipaddress_excluded {",
                  *(f"        {v}" for v in sorted(unique, key=lambda v: v.split(" ", 1)[0])), "    }"]
    if routes:
        lines += ["    virtual_routes {", *(f"        {x}" for x in routes), "    }"]
    lines.append("}")
    return "\n".join(lines)


def _vip(iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface, dev: str) -> Address:
    """An address keepalived adds (no broadcast)."""
    return Address(iface, "global", label=dev if iface.version == 4 else None)


def _namespace(cloud: CloudSnapshot, router: Router, binding: L3Binding, prof: Profile, *, master: bool,
               random_fully: bool, metadata: bool) -> tuple[NamespaceState, list[Origin]]:
    from neutrino.plan.l3 import _devices, _iptables, _lookup, _sysctls
    r = _lookup(cloud, router)
    ns_name = naming.router_namespace(router.id)
    obj = f"router {router.id}"
    links, _root, routes = _devices(cloud, r, prof)
    chains, rules = _iptables(cloud, r, prof, random_fully=random_fully, first_pass=False, metadata=metadata)
    # port forwardings: the rules on every bound host, the floating IP a keepalived VIP (on qg-)
    links, chains, rules = plan_port_forwardings(cloud, router, prof, links, chains, rules)
    if not master:  # keepalived's VIPs (the devices' addresses) and virtual routes are on the master only
        links = [replace(lk, addresses=()) for lk in links]
        routes = []
    else:  # keepalived adds its virtual routes with "protocol static"; its addresses have no broadcast
        links = [replace(lk, addresses=tuple(_vip(a.interface, lk.name) for a in lk.addresses)) for lk in links]
        routes = [rt if rt.proto == "kernel" else replace(rt, proto="static") for rt in routes]
    ha_port = cloud.port(binding.ha_port_id or "")
    ha_dev = naming.ha_device(ha_port.id)
    ha_addrs = [address(f.ip_address, cloud.subnet(f.subnet_id).cidr.prefixlen, ha_dev) for f in ha_port.fixed_ips]
    if master:
        ha_addrs.append(_vip(primary_vip(router.ha_vr_id), ha_dev))
    ha_link: Link = agent_link(prof, ha_dev, ha_port.mac_address, cloud.network(ha_port.network_id).mtu,
                               tuple(ha_addrs))
    routes += [rt for a in ha_addrs if (rt := connected_route(prof, a, ha_dev)) is not None]
    ruleset, chain_origins = assemble(prof, chains, rules, BUILDER)
    # Neutron's HaRouterNamespace.create: non-local binds, and no kernel-made IPv6 link-local addresses
    # (keepalived adds them on the master): a backup's devices, which share the master's MACs, must not
    # send DAD or MLD from those MACs, or the switches learn them at the backup and floating IPs break
    sysctls = (*_sysctls(prof), Sysctl("net.ipv4.ip_nonlocal_bind", "1"),
               Sysctl("net.ipv6.conf.all.addr_gen_mode", "1"))
    ns = NamespaceState(ns_name, links=(ha_link, *links), routes=tuple(ordered_routes(prof, routes)),
                        iptables=ruleset, sysctls=sysctls)
    origins = [Origin("namespace", ns_name, obj, BUILDER), Origin("link", ha_dev, f"port {ha_port.id}", BUILDER)]
    origins += [Origin("link", lk.name, obj, BUILDER) for lk in links]
    origins += [Origin(o.kind, f"{ns_name}:{o.item}", o.obj, o.builder) for o in chain_origins]
    return ns, origins


def plan_l3_ha(cloud: CloudSnapshot, host: str, prof: Profile, out: HostState, *, random_fully: bool = True,
               metadata: bool = True) -> HostState:
    """``out`` (the legacy routers' fragment for ``host``) with the HA routers bound to ``host``."""
    files = list(out.files)
    origins = list(out.origins)
    for router, binding in ha_routers_on(cloud, host):
        master = binding.ha_state == ACTIVE  # the elected master, or one side of a split brain
        ns, ns_origins = _namespace(cloud, router, binding, prof, master=master, random_fully=random_fully,
                                    metadata=metadata)
        out = out.with_namespace(ns)
        origins += ns_origins
        obj = f"router {router.id}"
        ha_dev = naming.ha_device(binding.ha_port_id or "")
        conf = keepalived_conf_path(router.id, prof.state_path)
        state = state_file_path(router.id, prof.state_path)
        files.append(FileState(conf, keepalived_conf(cloud, router, ha_dev)))  # no newline at the end, as
        files.append(FileState(state, "primary" if master else "backup"))  # Neutron writes both
        origins += [Origin("file", conf, obj, BUILDER), Origin("file", state, obj, BUILDER)]
        if prof.modern and metadata:
            from neutrino.plan.l3 import metadata_proxy_config, metadata_proxy_path
            path = metadata_proxy_path(router.id, prof.state_path)
            files.append(FileState(path, metadata_proxy_config(router.id, prof.state_path)))
            origins.append(Origin("file", path, obj, BUILDER))
    return replace(out, files=tuple(files), origins=tuple(origins))


def ports_plugged_on(cloud: CloudSnapshot, host: str) -> tuple[Port, ...]:
    """The ports whose devices the agents plug on ``host``: those bound to it and, for every HA
    router bound to it, the router's interfaces and gateway (bound to the active host only), in the
    snapshot's order."""
    extra: set[str] = set()
    for r in cloud.routers:
        if r.ha and r.admin_state_up and any(b.host == host for b in r.bindings):
            extra.update(r.interface_port_ids)
            if r.gateway is not None and r.gateway.port_id:
                extra.add(r.gateway.port_id)
    if not extra:
        return cloud.ports_on_host(host)
    return tuple(p for p in cloud.ports if p.binding_host == host or p.id in extra)
