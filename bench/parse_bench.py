"""How fast the host-state languages parse and format (a benchmark, not a test).

    .venv/bin/python bench/parse_bench.py

Prints lines per second for OpenFlow dump lines, iptables-save rules and ip addr blocks.
"""

from __future__ import annotations

import time

from neutrino.host.iproute_link import format_ip_addr, parse_ip_addr
from neutrino.host.iptables import format_rule, parse_rule
from neutrino.host.openflow import format_flow, parse_flow

FLOW = (" cookie=0x0, duration=422.158s, table=0, n_packets=2, n_bytes=120, idle_age=55, "
        "priority=3,tun_id=0x2,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=mod_vlan_vid:1,output:1")
LEARN = ("table=10, priority=1 actions=learn(table=20,hard_timeout=300,priority=1,cookie=0x9,"
         "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
         "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1")
RULE = ("-A neutron-openvswi-o3f2a1b7c-d -s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 "
        "--dport 67 -m comment --comment \"Allow DHCP client traffic.\" -j RETURN")
ADDR = """66: qg-d48b49e0-aa: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP qlen 1000
    link/ether fa:16:3e:5c:a2:ac brd ff:ff:ff:ff:ff:ff
    inet 172.24.4.227/28 brd 172.24.4.239 scope global qg-d48b49e0-aa
    inet6 fe80::f816:3eff:fe5c:a2ac/64 scope link
       valid_lft forever preferred_lft forever
"""


def rate(label: str, fn, n: int) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = time.perf_counter() - start
    print(f"{label:<40} {n / elapsed:>10.0f} /s")


def main() -> None:
    flow = parse_flow(FLOW)
    learn = parse_flow(LEARN)
    rule = parse_rule(RULE)
    links = parse_ip_addr(ADDR)
    rate("parse dump-flows line", lambda: parse_flow(FLOW), 20000)
    rate("format dump-flows line", lambda: format_flow(flow), 20000)
    rate("parse learn flow", lambda: parse_flow(LEARN), 5000)
    rate("format learn flow", lambda: format_flow(learn), 5000)
    rate("parse iptables rule", lambda: parse_rule(RULE), 20000)
    rate("format iptables rule", lambda: format_rule(rule), 20000)
    rate("parse ip addr block", lambda: parse_ip_addr(ADDR), 10000)
    rate("format ip addr block", lambda: format_ip_addr(links), 10000)


if __name__ == "__main__":
    main()
