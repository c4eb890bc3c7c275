"""EasyOVS's screens (``list``, ``show BR``, ``dump BR``, ``ipt IP``) computed from a host state.

Seed 002 teaches with the screens of EasyOVS 0.2 (April 2014), a CLI over ``ovs-vsctl show``,
``ovs-ofctl show``/``dump-flows``, ``iptables -nvL`` and ``neutron port-list``. These views print what
it printed for the same host, in its layouts (its ``printf`` formats, which its published README shows):

* ``list``: each bridge (sorted by name), then `` Port:`` and its ports (``ovs-vsctl show`` order),
  `` Controller:`` and `` Fail_Mode:`` when the bridge has them;
* ``show BR``: ``Intf Port Vlan Type`` (``%-20s%-12s%-8s%-12s``) for each OpenFlow port, and
  ``vmIP vmMAC`` (``%-16s%-24s``) when any port belongs to a Neutron port. EasyOVS asked Neutron; a
  host state knows a port's address from the device itself (a ``qr-``/``qg-``/DHCP ``tap`` inside its
  namespace), the port's anti-spoofing rules (``--mac-source``, ``-s IP``), the DHCP hosts files and
  the ARP/MAC-spoofing flows. Rows are sorted by name, then by type (so internal ports come last);
* ``dump BR``: ``ID TAB PKT PRI MATCH ACT`` (``%-3u%-4s%-10s%-6s%-60s%-20s``), the match shortened
  as EasyOVS did (``in_port`` -> ``in``, ``dl_vlan``/``vlan_tci`` -> ``vlan``), flows ordered by
  table, then priority (highest first), then the longer match first;
* ``ipt IP``: ``## IP = IP, port = qvoXXXXXXXXXX ##`` then the RETURN rules (what the group lets
  through) of the port's ingress (``#IN:``), egress (``#OUT:``) and source-filter (``#SRC_FILTER:``)
  chains as ``PKTS SOURCE DESTINATION PROT OTHER`` (``%8s\\t%-16s%-16s%-6s%-20s``) read from
  ``iptables -nvL``; for a router's ``qr-``/``qg-`` address, the router's NAT chains.

Each view also has a plain-data form (:func:`list_data` ...) for ``--json``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

from neutrino.errors import NotFound
from neutrino.host import iptables as ipt
from neutrino.host.dnsmasq import parse_hosts_file
from neutrino.host.iptables_listing import format_row
from neutrino.host.openflow import FlowStats, format_flow
from neutrino.host.openflow_fields import ReservedPort
from neutrino.host.openflow_match import EthMatch, InPort, IPv4Match
from neutrino.host.ovsdb import Bridge, OvsdbShow
from neutrino.host.state import ROOT, HostState, NamespaceState

#: a device named after a Neutron port: 3-character prefix + the port id's first 11 characters
_PORT_DEVICE = re.compile(r"^(qvo|qvb|tap|qr-|qg-|ns-|ha-|sg-|fg-)([0-9a-f]{8}-[0-9a-f]{2})$")
#: a security-group chain of one port: ``neutron-openvswi-i7c7ae61e-0`` (first 10 characters of the id)
_PORT_CHAIN = re.compile(r"^(?:neutron|quantum)-openvswi-([ios])([0-9a-f]{8}-[0-9a-f])$")
_BLUE, _GREEN, _RESET = "\x1b[1;34m", "\x1b[1;32m", "\x1b[0m"


def _paint(text: str, colour: str, on: bool) -> str:
    return f"{colour}{text}{_RESET}" if on else text


def bridges_of(host: HostState) -> tuple[Bridge, ...]:
    """The bridges ``ovs-vsctl show`` knows, in its order."""
    show = host.ovs.show
    if show is None:
        raise NotFound(f"host {host.name}: its Open vSwitch ('ovs-vsctl show') is not known")
    return show.bridges if isinstance(show, OvsdbShow) else show.bridges()


def _bridge(host: HostState, name: str) -> Bridge:
    br = next((b for b in bridges_of(host) if b.name == name), None)
    if br is None:
        raise NotFound(f"The bridge {name} does not exist. Please check available bridges using list")
    return br


# ----------------------------------------------------------------------------------------- list


@dataclass(frozen=True, slots=True)
class ListedBridge:
    name: str
    ports: tuple[str, ...]
    controllers: tuple[str, ...]
    fail_mode: str


def list_data(host: HostState) -> tuple[ListedBridge, ...]:
    return tuple(ListedBridge(b.name, tuple(p.name for p in b.ports), tuple(c.target for c in b.controllers),
                              b.fail_mode or "")
                 for b in sorted(bridges_of(host), key=lambda b: b.name))


def format_list(bridges: tuple[ListedBridge, ...]) -> str:
    """EasyOVS's ``list``."""
    if not bridges:
        return "None bridge exists.\n"
    out = ""
    for b in bridges:
        out += f"{b.name}\n"
        if b.ports:
            out += " Port:\t\t" + " ".join(b.ports) + "\n"
        if b.controllers:
            out += " Controller:\t" + " ".join(b.controllers) + "\n"
        if b.fail_mode:
            out += f" Fail_Mode:\t{b.fail_mode}\n"
    return out


# ----------------------------------------------------------------------------------------- show


@dataclass(frozen=True, slots=True)
class PortRow:
    intf: str
    port: str  # the OpenFlow port number, LOCAL, or "" when ``ovs-ofctl show`` is not known
    vlan: str
    type: str
    vm_ip: str
    vm_mac: str


@dataclass(frozen=True, slots=True)
class _Addr:
    ip: str = ""
    mac: str = ""


def _merge(known: dict[str, _Addr], key: str, ip: str = "", mac: str = "") -> None:
    old = known.get(key, _Addr())
    known[key] = _Addr(old.ip or ip, old.mac or mac.lower())


def _first_ipv4(ns_links: NamespaceState, name: str) -> str:
    lk = ns_links.link(name)
    if lk is None:
        return ""
    return next((str(a.interface.ip) for a in lk.addresses
                 if a.interface.version == 4 and a.scope == "global"), "")


def _chain_ports(host: HostState) -> Iterator[tuple[str, str, ipt.Chain]]:
    """(kind i/o/s, first 10 characters of the port id, chain) for each port chain of the root namespace."""
    root = host.namespace(ROOT)
    table = root.iptables.find("filter") if root is not None and root.iptables is not None else None
    for c in table.chains if table is not None else ():
        m = _PORT_CHAIN.match(c.name)
        if m:
            yield m.group(1), m.group(2), c


def _spoof_addresses(chain: ipt.Chain) -> _Addr:
    """The port's own address and MAC, read from its anti-spoofing rules: ``-s IP/32 -m mac --mac-source
    MAC -j RETURN`` (source filter), ``! -s IP/32 -j DROP`` and ``-m mac ! --mac-source MAC -j DROP``."""
    ip = mac = ""
    for r in chain.rules:
        m = r.match("mac")
        opt = m.option("mac-source") if m is not None else None
        if opt is not None and not mac:
            mac = opt.value
        src = r.source
        if src is not None and src.network.prefixlen == src.network.max_prefixlen and not ip:
            own = (src.negated and r.jump == "DROP") or (not src.negated and r.jump == "RETURN" and m is not None)
            if own:
                ip = str(src.network.network_address)
    return _Addr(ip, mac.lower())


def port_addresses(host: HostState) -> dict[str, tuple[str, str]]:
    """For each Neutron port id prefix (11 characters) a device on this host names, its (IP, MAC)."""
    known: dict[str, _Addr] = {}
    devices: set[str] = set()
    for ns in host.namespaces:
        for lk in ns.links or ():
            m = _PORT_DEVICE.match(lk.name)
            if not m:
                continue
            devices.add(m.group(2))
            if ns.name != ROOT:  # a router or DHCP port: the device holds the port's own address and MAC
                _merge(known, m.group(2), _first_ipv4(ns, lk.name), lk.mac or "")
    for b in _all_bridges(host):
        for p in b.ports:
            m = _PORT_DEVICE.match(p.name)
            if m:
                devices.add(m.group(2))
    for _kind, id10, chain in _chain_ports(host):
        ids = [d for d in devices if d.startswith(id10)]
        if len(ids) == 1:
            a = _spoof_addresses(chain)
            _merge(known, ids[0], a.ip, a.mac)
    _flow_addresses(host, known)
    by_mac = _dhcp_hosts(host)
    root = host.namespace(ROOT)
    for dev in devices:
        a = known.get(dev, _Addr())
        if not a.mac and root is not None:  # nova gives the tap the instance's MAC with fe: first
            tap = root.link("tap" + dev)
            if tap is not None and tap.mac and tap.mac.lower().startswith("fe:16:3e:"):
                _merge(known, dev, mac="fa" + tap.mac.lower()[2:])
        a = known.get(dev, _Addr())
        if a.mac and not a.ip and a.mac in by_mac:
            _merge(known, dev, ip=by_mac[a.mac])
    return {k: (v.ip, v.mac) for k, v in known.items() if v.ip or v.mac}


def _all_bridges(host: HostState) -> tuple[Bridge, ...]:
    try:
        return bridges_of(host)
    except NotFound:
        return ()


def _flow_addresses(host: HostState, known: dict[str, _Addr]) -> None:
    """The ARP- and MAC-spoofing flows of br-int (tables 24 and 25): ``in_port=N,arp_spa=IP`` and
    ``in_port=N,dl_src=MAC``."""
    for bf in host.ovs.bridges:
        if bf.flows is None or bf.ports is None:
            continue
        names = {p.number: p.name for p in bf.ports.ports}
        for f in bf.flows.flows:
            if f.table not in (24, 25):
                continue
            port = next((m.port for m in f.match if isinstance(m, InPort)), None)
            name = names.get(port) if isinstance(port, int) else None
            dev = _PORT_DEVICE.match(name or "")
            if dev is None:
                continue
            for m in f.match:
                if isinstance(m, IPv4Match) and m.field == "arp_spa" and m.mask is None:
                    _merge(known, dev.group(2), ip=str(m.address))
                elif isinstance(m, EthMatch) and m.field == "dl_src" and m.mask is None:
                    _merge(known, dev.group(2), mac=str(m.mac))


def _dhcp_hosts(host: HostState) -> dict[str, str]:
    """MAC -> IPv4 address from the DHCP hosts files (``.../host``) the host keeps."""
    out: dict[str, str] = {}
    for f in host.files:
        if not f.path.endswith("/host"):
            continue
        try:
            entries = parse_hosts_file(f.text, source=f.path)
        except ValueError:
            continue
        for h in entries:
            if h.ip.version == 4:
                out.setdefault(h.mac.lower(), str(h.ip))
    return out


def show_data(host: HostState, bridge: str) -> tuple[PortRow, ...]:
    br = _bridge(host, bridge)
    flows = host.ovs.flows_of(bridge)
    if flows is not None and flows.ports is not None:
        numbered = [(str(p.number.value if isinstance(p.number, ReservedPort) else p.number), p.name)
                    for p in flows.ports.ports]
    else:
        numbered = [("", p.name) for p in br.ports]
    addrs = port_addresses(host)
    rows: list[PortRow] = []
    for number, name in numbered:
        port = br.port(name)
        tag = str(port.tag) if port is not None and port.tag is not None else ""
        iface = next((i for i in port.interfaces if i.name == name), None) if port is not None else None
        kind = iface.type or "" if iface is not None else ""
        m = _PORT_DEVICE.match(name)
        ip, mac = addrs.get(m.group(2), ("", "")) if m else ("", "")
        rows.append(PortRow(name, number, tag, kind, ip, mac))
    rows.sort(key=lambda r: r.intf)
    rows.sort(key=lambda r: r.type)
    return tuple(rows)


def format_show(rows: tuple[PortRow, ...], *, colour: bool = False) -> str:
    """EasyOVS's ``show BR``."""
    with_vm = any(r.vm_ip or r.vm_mac for r in rows)
    head = f"{'Intf':<20}{'Port':<12}{'Vlan':<8}{'Type':<12}"
    head += f"{'vmIP':<16}{'vmMAC':<24}" if with_vm else ""
    out = _paint(head, _BLUE, colour) + "\n"
    for r in rows:
        line = f"{r.intf:<20}{r.port:<12}{r.vlan:<8}{r.type:<12}"
        line += f"{r.vm_ip:<16}{r.vm_mac:<24}" if with_vm else ""
        out += line + "\n"
    return out


# ----------------------------------------------------------------------------------------- dump


@dataclass(frozen=True, slots=True)
class DumpRow:
    id: int
    table: int
    packets: int
    priority: str
    match: str
    actions: str


_ZERO = FlowStats(0, 0, 0, 0, idle_age=0)


def _easy_flow(line: str) -> tuple[str, str, str]:
    """(priority, match, actions) as EasyOVS read them from one ``dump-flows`` line: the word that starts
    with ``priority=`` holds the priority and the match, ``*`` when there is none."""
    priority = match = actions = ""
    words = line.split()
    for w in words:
        if w.startswith("priority="):
            m = re.match(r"priority=(\d+)", w)
            priority = m.group(1) if m else ""
            match = w[len(f"priority={priority}"):].lstrip(",").strip() or "*"
        elif w.startswith("actions="):
            actions = w[len("actions="):]
    if not priority and len(words) >= 2:  # the default priority is not printed
        match = words[-2]
    return priority, match, actions


def dump_data(host: HostState, bridge: str) -> tuple[DumpRow, ...]:
    bf = host.ovs.flows_of(bridge)
    if bf is None or bf.flows is None:
        _bridge(host, bridge)
        raise NotFound(f"host {host.name}: the flows of {bridge} are not known")
    rows = []
    for f in bf.flows.flows:
        stats = f.stats or _ZERO
        priority, match, actions = _easy_flow(format_flow(f if f.stats else replace(f, stats=_ZERO)))
        rows.append((f.table, -int(priority or 32768), -len(match),
                     DumpRow(0, f.table, stats.n_packets or 0, priority, match, actions)))
    ordered = [r for *_, r in sorted(rows, key=lambda t: t[:3])]
    return tuple(DumpRow(i, r.table, r.packets, r.priority, r.match, r.actions) for i, r in enumerate(ordered))


def _short_match(match: str) -> str:
    return match.replace("_port", "").replace("_tci", "").replace("dl_vlan", "vlan")


def format_dump(rows: tuple[DumpRow, ...], *, colour: bool = False) -> str:
    """EasyOVS's ``dump BR`` (nothing at all for a bridge without flows, as EasyOVS printed)."""
    if not rows:
        return ""
    out = _paint(f"{'ID':<3}{'TAB':<4}{'PKT':<10}{'PRI':<6}{'MATCH':<60}{'ACT':<20}", _BLUE, colour) + "\n"
    for r in rows:
        line = f"{r.id:<3}{r.table:<4}{r.packets:<10}{r.priority:<6}{_short_match(r.match):<60}{r.actions:<20}"
        out += _paint(line, _GREEN, colour and r.packets > 0) + "\n"
    return out


# ------------------------------------------------------------------------------------------ ipt


@dataclass(frozen=True, slots=True)
class IptRow:
    pkts: str
    source: str
    destination: str
    prot: str
    other: str


@dataclass(frozen=True, slots=True)
class IptView:
    ip: str
    port: str
    sections: tuple[tuple[str, tuple[IptRow, ...]], ...]


_KEYS = ("pkts", "bytes", "target", "prot", "opt", "in", "out", "source", "destination")


def _rows(ns: NamespaceState, chain: ipt.Chain, *, only_return: bool) -> tuple[IptRow, ...]:
    """Each rule as ``iptables -nvL`` prints it, cut into its columns the way EasyOVS split them."""
    dialect = {d.name: d for d in (ipt.CLASSIC, ipt.V1_8_9, ipt.MODERN)}.get(ns.iptables_dialect or "", ipt.CLASSIC)
    out: list[IptRow] = []
    for rule in chain.rules:
        words = format_row(rule, verbose=True, numeric=True, dialect=dialect).split()
        if not rule.target or rule.target.name == "" or len(words) < len(_KEYS):
            continue
        d = dict(zip(_KEYS, words, strict=False))
        if only_return and d["target"] != "RETURN":
            continue
        other = " ".join(words[len(_KEYS):])
        src = "all" if d["source"] == "0.0.0.0/0" else d["source"]
        dst = "all" if d["destination"] == "0.0.0.0/0" else d["destination"]
        out.append(IptRow(d["pkts"], src, dst, d["prot"], other))
    return tuple(out)


def _vm_port(host: HostState, ip: str) -> str | None:
    """The ``qvo`` (or ``tap``) device of the instance port with address ``ip`` on this host."""
    addrs = port_addresses(host)
    ids = sorted(k for k, v in addrs.items() if v[0] == ip)
    devices = {m.group(2): m.group(1) for b in _all_bridges(host) for p in b.ports
               if (m := _PORT_DEVICE.match(p.name))}
    for ns in host.namespaces:
        if ns.name == ROOT:
            for lk in ns.links or ():
                if (m := _PORT_DEVICE.match(lk.name)) and m.group(1) in ("qvo", "tap"):
                    devices.setdefault(m.group(2), m.group(1))
    for k in ids:
        if devices.get(k) in ("qvo", "tap"):
            return k
    return None


def ipt_data(host: HostState, ip: str) -> IptView:
    """The security rules (or, for a router's address, the NAT rules) of the port that has ``ip``."""
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise NotFound(f"{ip!r} is not an IP address") from None
    port = _vm_port(host, ip)
    root = host.namespace(ROOT)
    if port is not None and root is not None and root.iptables is not None:
        chains = {kind: c for kind, id10, c in _chain_ports(host) if port.startswith(id10)}
        sections = tuple((title, rows) for kind, title in (("i", "IN"), ("o", "OUT"), ("s", "SRC_FILTER"))
                         if kind in chains and (rows := _rows(root, chains[kind], only_return=True)))
        return IptView(ip, "qvo" + port[:10], sections)
    for ns in host.namespaces:
        if ns.name == ROOT or ns.iptables is None:
            continue
        for lk in ns.links or ():
            if lk.name.startswith(("qr-", "qg-")) and any(str(a.interface.ip) == ip for a in lk.addresses):
                nat = ns.iptables.find("nat")
                if nat is None:
                    continue
                nat_sections: list[tuple[str, tuple[IptRow, ...]]] = []
                for suffix, title in (("PREROUTING", "PRE"), ("OUTPUT", "OUT"), ("float-snat", "FLOAT"),
                                      ("snat", "SNAT")):
                    c = next((c for c in nat.chains if c.name.endswith(f"-l3-agent-{suffix}")), None)
                    if c is not None and (rows := _rows(ns, c, only_return=False)):
                        nat_sections.append((title, rows))
                return IptView(ip, lk.name, tuple(nat_sections))
    raise NotFound(f"No instance with ip {ip} exists.")


def format_ipt(view: IptView, *, colour: bool = False) -> str:
    """EasyOVS's ``ipt IP``."""
    def row(pkts: str, source: str, destination: str, prot: str, other: str) -> str:
        return f"{pkts:>8}\t{source:<16}{destination:<16}{prot:<6}{other:<20}"

    out = f"## IP = {view.ip}, port = {view.port} ##\n"
    out += _paint(row("PKTS", "SOURCE", "DESTINATION", "PROT", "OTHER"), _BLUE, colour) + "\n"
    for title, rows in view.sections:
        out += f"#{title}:\n"
        out += "".join(row(r.pkts, r.source, r.destination, r.prot, r.other) + "\n" for r in rows)
    return out


def as_json_data(value: tuple[ListedBridge, ...] | tuple[PortRow, ...] | tuple[DumpRow, ...] | IptView) -> object:
    """Plain data for ``--json``."""
    if isinstance(value, IptView):
        return {"ip": value.ip, "port": value.port,
                "sections": {title: [asdict(r) for r in rows] for title, rows in value.sections}}
    return [asdict(v) for v in value]


_USAGE = "easyovs HOST list | show BRIDGE | dump BRIDGE | ipt IP [IP...]"


def run(host: HostState, words: list[str], *, as_json: bool = False, colour: bool = False) -> tuple[str, int]:
    """``neutrino easyovs HOST WORDS...``: the screen (or its JSON) and the exit status (1 when
    ``ipt`` found none of the addresses)."""
    import json

    if not words:
        raise NotFound(f"usage: {_USAGE}")
    verb, args = words[0], words[1:]
    colour = colour and not as_json
    if verb == "list" and not args:
        listed = list_data(host)
        return (json.dumps(as_json_data(listed), indent=2) + "\n" if as_json else format_list(listed)), 0
    if verb in ("show", "dump") and len(args) == 1:
        if verb == "show":
            rows = show_data(host, args[0])
            return (json.dumps(as_json_data(rows), indent=2) + "\n" if as_json else format_show(rows, colour=colour)), 0
        flows = dump_data(host, args[0])
        return (json.dumps(as_json_data(flows), indent=2) + "\n" if as_json else format_dump(flows, colour=colour)), 0
    if verb == "ipt" and args:
        ips = [ip for a in args for ip in a.replace(",", " ").split()]
        if ips[:1] == ["vm"]:  # EasyOVS 0.5 spells it "ipt vm IP"
            ips = ips[1:]
        views: list[IptView] = []
        text = ""
        for ip in ips:
            try:
                view = ipt_data(host, ip)
            except NotFound as exc:
                text += f"{exc}\n" if str(exc).startswith("No instance") else ""
                if not str(exc).startswith("No instance"):
                    raise
                continue
            views.append(view)
            text += format_ipt(view, colour=colour)
        if as_json:
            text = json.dumps([as_json_data(v) for v in views], indent=2) + "\n"
        return text, 0 if views else 1
    raise NotFound(f"usage: {_USAGE}")
