"""Address scopes in a legacy router (neutron/agent/l3/router_info.py).

The L3 agent marks each packet, as it enters the router, with the address scope of the interface
it arrives on (mangle chain ``scope``: ``-i <dev> -j MARK --set-xmark <mark>/0xffff0000``), and
drops a packet leaving by an internal interface whose scope differs from the packet's (filter
chain ``scope``: ``-o <dev> -m mark ! --mark <mark> -j DROP``; the gateway too when SNAT is off).
A scope's mark is ``mark_id << 16`` with ids handed out from 1024 (``ADDRESS_SCOPE_MARK_ID_MIN``)
in the order the agent meets scopes: "no scope" first (1024, ``0x4000000``), then the external
network's scope (when SNAT is on), the internal ports' in interface order, the gateway's.

When the gateway's network has an IPv4 scope (and SNAT is on), traffic from that same scope is not
SNATed: ``-o <qg> -m connmark --mark <scope mark> -j ACCEPT`` heads the ``snat`` chain. A floating
IP whose fixed address is in another scope than the external network gets the mangle rules that
carry its traffic across (``floatingip``: ``-d <fip>/32 -j MARK --set-xmark <fixed scope mark>``;
``FORWARD``: ``-s <fixed>/32 -j float-snat``; ``float-snat``: ``-o <dev> -j MARK --set-xmark
<external mark>`` for each device in the external scope).

A port's scope for IPv4 is that of the subnet pool its IPv4 subnet came from
(``Subnet.address_scope_id``); with no scope anywhere the plan is the default-mark one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Protocol

from neutrino.host.iptables import TableName
from neutrino.plan import naming
from neutrino.plan.generation import PlannedRule, Profile, rule
from neutrino.services.snapshot import CloudSnapshot, FloatingIP, Port, Router

MARK_MASK = "0xffff0000"
MARK_ID_MIN = 1024
MARK_ID_MAX = 2048
NO_SCOPE = ""  # the agent's "noscope"
ORIGIN = "address scope of "  # how the l3 planner stamps the scope rules (one per device)


class RouterParts(Protocol):
    """What plan/l3.py looked up for one router (its ``_Router``)."""

    @property
    def router(self) -> Router: ...
    @property
    def internal(self) -> tuple[Port, ...]: ...
    @property
    def gateway(self) -> Port | None: ...
    @property
    def floating(self) -> tuple[FloatingIP, ...]: ...


def port_scope(cloud: CloudSnapshot, port: Port) -> str:
    """The address scope of ``port``'s IPv4 addresses (``NO_SCOPE`` when none)."""
    for f in port.fixed_ips:
        if f.ip_address.version == 4:
            try:
                return cloud.subnet(f.subnet_id).address_scope_id or NO_SCOPE
            except KeyError:
                return NO_SCOPE
    return NO_SCOPE


def scope_mark(mark_id: int) -> str:
    return f"{hex(mark_id << 16)}/{MARK_MASK}"


class Marks:
    """The agent's scope -> mark table, filled in the order scopes are met."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {NO_SCOPE: MARK_ID_MIN}

    def of(self, scope: str | None) -> str:
        key = scope or NO_SCOPE
        if key not in self._ids:
            self._ids[key] = MARK_ID_MIN + len(self._ids)
        return scope_mark(self._ids[key])


def _snat(r: RouterParts) -> bool:
    return r.gateway is not None and (r.router.gateway is None or r.router.gateway.enable_snat)


def device_marks(cloud: CloudSnapshot, r: RouterParts) -> tuple[dict[str, str], str | None, Marks]:
    """Each router device's IPv4 scope mark, the external scope (None without a gateway), and the
    mark table (in the agent's order of meeting the scopes)."""
    marks = Marks()
    ext_scope = port_scope(cloud, r.gateway) if r.gateway is not None else None
    if _snat(r) and ext_scope:
        marks.of(ext_scope)  # _add_snat_rules runs before process_address_scope
    out: dict[str, str] = {}
    for p in r.internal:
        if any(f.ip_address.version == 4 for f in p.fixed_ips):
            out[naming.router_internal_device(p.id)] = marks.of(port_scope(cloud, p))
    if r.gateway is not None:
        out[naming.router_gateway_device(r.gateway.id)] = marks.of(ext_scope)
    return out, ext_scope, marks


def with_scope_marks(cloud: CloudSnapshot, r: RouterParts, prof: Profile, rules: Sequence[PlannedRule]
                     ) -> list[PlannedRule]:
    """``rules`` (a modern router's, as plan/l3.py made them with the default mark) with each
    device's own scope mark, the same-scope SNAT exemption and the floating IPs' cross-scope rules."""
    out = list(rules)
    if not prof.modern:
        return out
    devs, ext_scope, marks = device_marks(cloud, r)
    b = prof.l3_agent_binary

    def w(chain: str) -> str:
        return naming.wrapped_chain(b, chain)

    qg = naming.router_gateway_device(r.gateway.id) if r.gateway is not None else None
    snat = _snat(r)
    builder = "plan_l3"
    for i, pr in enumerate(out):
        origin = pr.rule.origin
        if not origin.startswith(ORIGIN):
            continue
        dev = origin[len(ORIGIN):].split(" ", 1)[0]
        mark = devs.get(dev)
        if mark is None:
            continue
        if pr.table == TableName.MANGLE:
            text = f"-A {w('scope')} -i {dev} -j MARK --set-xmark {mark}"
        else:
            text = f"-A {w('scope')} -o {dev} -m mark ! --mark {mark} -j DROP"
        out[i] = PlannedRule(pr.table, rule(text, origin))
    if qg is not None and not snat and qg in devs:  # nothing to SNAT: the gateway is guarded too
        out.append(PlannedRule(TableName.FILTER, rule(f"-A {w('scope')} -o {qg} -m mark ! --mark {devs[qg]} -j DROP",
                                                      f"{ORIGIN}{qg} via {builder}")))
    if qg is not None and snat and ext_scope:
        at = next((i for i, pr in enumerate(out) if pr.table == TableName.NAT  # before the gateway's SNAT
                   and pr.rule.chain == w(naming.SNAT_CHAIN) and pr.rule.origin.startswith("gateway of router")),
                  len(out))
        out.insert(at, PlannedRule(TableName.NAT, rule(
            f"-A {w(naming.SNAT_CHAIN)} -o {qg} -m connmark --mark {marks.of(ext_scope)} -j ACCEPT",
            f"same address scope as the gateway of router {r.router.id} via {builder}")))
    crossing = [f for f in r.floating if _fixed_scope(cloud, f) != (ext_scope or NO_SCOPE)]
    if crossing:
        ext_mark = marks.of(ext_scope)
        for dev, mark in devs.items():
            if mark == ext_mark:
                out.append(PlannedRule(TableName.MANGLE, rule(
                    f"-A {w(naming.FLOAT_SNAT_CHAIN)} -o {dev} -j MARK --set-xmark {ext_mark}",
                    f"floating IPs across address scopes of router {r.router.id} via {builder}")))
    for f in crossing:
        why = f"floatingip {f.id} via {builder}"
        out.append(PlannedRule(TableName.MANGLE, rule(
            f"-A {w('floatingip')} -d {f.floating_ip_address}/32 -j MARK --set-xmark "
            f"{marks.of(_fixed_scope(cloud, f))}", why)))
        out.append(PlannedRule(TableName.MANGLE, rule(
            f"-A {w('FORWARD')} -s {f.fixed_ip_address}/32 -j {w(naming.FLOAT_SNAT_CHAIN)}", why)))
    return out


def _fixed_scope(cloud: CloudSnapshot, f: FloatingIP) -> str:
    """The scope of a floating IP's fixed address (its port's subnet with that address)."""
    if f.port_id is None or f.fixed_ip_address is None:
        return NO_SCOPE
    try:
        port = cloud.port(f.port_id)
    except KeyError:
        return NO_SCOPE
    for ip in port.fixed_ips:
        if ip.ip_address == ipaddress.ip_address(f.fixed_ip_address):
            try:
                return cloud.subnet(ip.subnet_id).address_scope_id or NO_SCOPE
            except KeyError:
                return NO_SCOPE
    return NO_SCOPE
