"""Floating-IP port forwarding in a router (the L3 agent's ``port_forwarding`` extension,
``neutron/agent/l3/extensions/port_forwarding.py``): a legacy router's qrouter- namespace, an HA
router's on every host it is bound to (plan/l3_ha.py: the floating IP is a keepalived VIP, on the
master's ``qg-`` only), a distributed router's snat- namespace on its SNAT host (plan/dvr.py: the
extension serves only the centralized part, the ``dvr`` agents skip forwardings).

For each floating IP of the router that has forwardings (such a floating IP is never associated to a
port), the agent puts the floating IP on the ``qg-`` device as a /32, as for any floating IP, and
writes in the router's nat table:

- the chain ``<binary>-fip-pf``, jumped to from ``<binary>-PREROUTING`` (appended after the rules
  the router already has: the metadata REDIRECT and the floating-IP DNATs);
- per forwarding, the chain ``<binary>-pf-<id>`` (``pf-`` and the id, cut to 11 characters, so the
  id's first 8), jumped to from ``fip-pf`` in the forwardings' order, holding one rule:
  ``-d FIP/32 -p PROTO -m PROTO --dport EXT -j DNAT --to-destination IP:INT``, where a range of
  external ports is ``a:b`` and a range of internal ports ``c-d/a`` (the kernel's shifted port
  mapping: external port ``a+k`` goes to ``c+k``); an external range to a single internal port is
  ``IP:c``.

Protocols without ports (icmp, ipv6-icmp), which Neutron's API accepts, get no rule here: the agent's
``--dport`` on them would make iptables-restore refuse the router's whole table. The agent deletes
the conntrack entries of a forwarding it changes or removes (``conntrack -D -d FIP -p PROTO
--dport EXT``); a plan has no conntrack state, the simulator's is rebuilt with the world.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from neutrino.host.iproute_link import Link
from neutrino.host.iptables import TableName
from neutrino.plan import naming
from neutrino.plan.generation import PlannedChain, PlannedRule, Profile, address, rule
from neutrino.services.snapshot import CloudSnapshot, FloatingIP, PortForwarding, Router

BUILDER = "plan_l3"
DEFAULT_CHAIN = "fip-pf"
CHAIN_PREFIX = "pf-"
PORTED = ("tcp", "udp", "sctp", "dccp")


def pf_chain(pf_id: str) -> str:
    """The forwarding's own chain, unwrapped (``pf-`` and the id, cut to 11 characters)."""
    return naming.chain_name(CHAIN_PREFIX + pf_id)


def ports_text(pf: PortForwarding) -> tuple[str, str]:
    """(``--dport`` value, port part of ``--to-destination``), as the agent's ``extract_ports``."""
    ext_single = pf.external_port_start == pf.external_port_end
    int_single = pf.internal_port_start == pf.internal_port_end
    external = str(pf.external_port_start) if ext_single else f"{pf.external_port_start}:{pf.external_port_end}"
    if int_single:
        internal = str(pf.internal_port_start)
    else:
        internal = f"{pf.internal_port_start}-{pf.internal_port_end}"
        if not ext_single:
            internal += f"/{pf.external_port_start}"
    return external, internal


def dnat_spec(fip: FloatingIP, pf: PortForwarding) -> str:
    """The DNAT rule's text after ``-A CHAIN``."""
    external, internal = ports_text(pf)
    return (f"-d {fip.floating_ip_address}/32 -p {pf.protocol} -m {pf.protocol} --dport {external} "
            f"-j DNAT --to-destination {pf.internal_ip_address}:{internal}")


def forwarded(cloud: CloudSnapshot, router: Router) -> list[tuple[FloatingIP, tuple[PortForwarding, ...]]]:
    """The router's free IPv4 floating IPs that have forwardings, each with them (creation order)."""
    out = []
    for f in cloud.floating_ips_of_router(router.id):
        if f.port_id is not None or not isinstance(f.floating_ip_address, ipaddress.IPv4Address):
            continue
        pfs = cloud.port_forwardings_of(f.id)
        if pfs:
            out.append((f, pfs))
    return out


def plan_port_forwardings(cloud: CloudSnapshot, router: Router, prof: Profile, links: list[Link],
                          chains: list[PlannedChain], rules: list[PlannedRule]
                          ) -> tuple[list[Link], list[PlannedChain], list[PlannedRule]]:
    """The router's links, chains and rules with its port forwardings added (unchanged without any,
    or without a gateway: the agent needs the gateway port)."""
    gw = router.gateway
    if gw is None or not gw.port_id:
        return links, chains, rules
    todo = forwarded(cloud, router)
    if not todo:
        return links, chains, rules
    qg = naming.router_gateway_device(gw.port_id)
    b = prof.l3_agent_binary

    def w(chain: str) -> str:
        return naming.wrapped_chain(b, chain)

    nat = TableName.NAT
    new_chains = [*chains, PlannedChain(nat, w(DEFAULT_CHAIN), f"router {router.id}")]
    new_rules = [*rules, PlannedRule(nat, rule(f"-A {w('PREROUTING')} -j {w(DEFAULT_CHAIN)}",
                                               f"port forwardings of router {router.id} via {BUILDER}"))]
    extra = []
    for fip, pfs in todo:
        extra.append(address(fip.floating_ip_address, 32, qg))
        for pf in pfs:
            if pf.protocol not in PORTED:
                continue
            why = f"port forwarding {pf.id} of floatingip {fip.id} via {BUILDER}"
            chain = w(pf_chain(pf.id))
            new_chains.append(PlannedChain(nat, chain, f"port_forwarding {pf.id}"))
            new_rules.append(PlannedRule(nat, rule(f"-A {w(DEFAULT_CHAIN)} -j {chain}", why)))
            new_rules.append(PlannedRule(nat, rule(f"-A {chain} {dnat_spec(fip, pf)}", why)))
    new_links = []
    for lk in links:
        if lk.name == qg:
            have = {a.interface for a in lk.addresses}
            lk = replace(lk, addresses=(*lk.addresses, *(a for a in extra if a.interface not in have)))
        new_links.append(lk)
    return new_links, new_chains, new_rules
