"""``ip link`` / ``ip addr`` (and their ``-d`` and ``-o`` forms): one parser, one formatter.

The print order follows iproute2's ``print_linkinfo`` and ``print_addrinfo`` (``ip/ipaddress.c``):
``index: name[@link]: <flags> mtu M qdisc Q master B state S mode D group G qlen N``, then
``    link/TYPE mac brd BRD [link-netns X|link-netnsid N]`` (plus the ``-d`` details), ``alias``,
``altname`` lines, and for ``ip addr`` the ``inet``/``inet6`` lines with their lifetimes.

>>> text = '''2: v0@if5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
...     link/ether fa:16:3e:10:2f:03 brd ff:ff:ff:ff:ff:ff link-netnsid 0
...     inet 10.1.0.3/24 brd 10.1.0.255 scope global v0
...        valid_lft forever preferred_lft forever
... '''
>>> (link,) = parse_ip_addr(text)
>>> link.name, link.peer, str(link.addresses[0].interface)
('v0', 'if5', '10.1.0.3/24')
>>> format_ip_addr((link,)) == text
True
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, replace

from neutrino.errors import ParseError
from neutrino.host.iproute import IprouteStyle, Partial, Skipped, is_elision

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class LinkKind(enum.Enum):
    """What kind of device a link is (from ``ip -d link``'s details, or set by a planner)."""

    VETH = "veth"
    TUN = "tun"
    TAP = "tap"
    BRIDGE = "bridge"
    VLAN = "vlan"
    VXLAN = "vxlan"
    GRE = "gre"
    GRETAP = "gretap"
    OVS_INTERNAL = "openvswitch"
    LOOPBACK = "loopback"
    ETHER = "ether"
    DUMMY = "dummy"
    MACVLAN = "macvlan"
    OTHER = "other"


class OperState(enum.Enum):
    """RFC 2863 operational state, as ``ip`` prints it after ``state``."""

    UNKNOWN = "UNKNOWN"
    NOTPRESENT = "NOTPRESENT"
    DOWN = "DOWN"
    LOWERLAYERDOWN = "LOWERLAYERDOWN"
    TESTING = "TESTING"
    DORMANT = "DORMANT"
    UP = "UP"


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """``valid_lft``/``preferred_lft``; ``None`` means ``forever``, otherwise seconds."""

    valid: int | None = None
    preferred: int | None = None


FOREVER = Lifetimes()


@dataclass(frozen=True, slots=True)
class Address:
    """One ``inet``/``inet6`` line of ``ip addr`` (and its lifetimes line)."""

    interface: IPInterface
    scope: str = "global"
    brd: IPAddress | None = None
    peer: IPInterface | None = None
    flags: tuple[str, ...] = ()
    unknown_flags: int | None = None
    label: str | None = None
    metric: int | None = None
    lifetimes: Lifetimes | None = FOREVER

    @property
    def family(self) -> str:
        return "inet" if self.interface.version == 4 else "inet6"

    @property
    def secondary(self) -> bool:
        return "secondary" in self.flags

    @property
    def dynamic(self) -> bool:
        return "dynamic" in self.flags


@dataclass(frozen=True, slots=True)
class LinkDetails:
    """What ``ip -d link`` adds. Typed fields are read from ``text``, which is kept verbatim
    (the tail of the ``link/`` line, then each further detail line) so it renders back exactly."""

    promiscuity: int | None = None
    allmulti: int | None = None
    minmtu: int | None = None
    maxmtu: int | None = None
    kind: str | None = None
    slave_kind: str | None = None
    vlan_id: int | None = None
    vni: int | None = None
    remote: str | None = None
    local: str | None = None
    dev: str | None = None
    dstport: int | None = None
    key: str | None = None
    tun_type: str | None = None
    bridge_id: str | None = None
    stp_state: int | None = None
    port_state: str | None = None
    text: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Link:
    """One device as ``ip link``/``ip addr`` print it; ``addresses`` is empty for ``ip link``.

    ``flags`` is ``None`` when the capture lost them (seed 004 prints ``3: eth1:  mtu 1500``).
    ``peer`` is the text after ``@`` (``if5``, ``eth0``, ``NONE``). ``style`` follows ``group``
    (``LEGACY`` without it, as iproute2 before 3.x printed), whatever value is given.
    """

    index: int
    name: str
    peer: str | None = None
    flags: tuple[str, ...] | None = ()
    mtu: int | None = None
    qdisc: str | None = None
    master: str | None = None
    state: OperState | None = None
    mode: str | None = None
    group: str | None = None
    qlen: int | None = None
    link_type: str | None = None
    mac: str | None = None
    brd: str | None = None
    brd_is_peer: bool = False
    permaddr: str | None = None
    link_netns: str | None = None
    link_netnsid: int | None = None
    details: LinkDetails | None = None
    alias: str | None = None
    altnames: tuple[str, ...] = ()
    addresses: tuple[Address, ...] = ()
    kind: LinkKind | None = None
    style: IprouteStyle = IprouteStyle.MODERN

    def __post_init__(self) -> None:
        # Which iproute2 printed the header shows only in ``group`` (printed from iproute2 3.x on),
        # and nothing else of a link's text depends on it: the style is read from ``group``, so
        # that links that print the same are equal, however they were made.
        style = IprouteStyle.LEGACY if self.group is None else IprouteStyle.MODERN
        if self.style is not style:
            object.__setattr__(self, "style", style)

    @property
    def up(self) -> bool:
        return self.flags is not None and "UP" in self.flags

    @property
    def promisc(self) -> bool:
        return self.flags is not None and "PROMISC" in self.flags


@dataclass(frozen=True, slots=True)
class IfAddress:
    """One line of ``ip -o addr``: the device index and name, and the address."""

    index: int
    ifname: str
    address: Address


# --- parsing -------------------------------------------------------------------------------

# patterns are compiled where used (re keeps them): importing the module compiles none
_HEADER = r"^(\d+): ([^\s:@]+)(?:@([^\s:]+))?: (?:<([^>]*)>)?(.*)$"
_MAC = r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})*"
_KIND_MAP = {k.value: k for k in LinkKind}


def _int(tok: str, what: str, line: str, n: int, source: str) -> int:
    try:
        return int(tok, 0)
    except ValueError:
        raise ParseError(what, text=line, line=n, source=source) from None


def _parse_header(line: str, n: int, source: str) -> Link:
    m = re.compile(_HEADER).match(line)
    if not m:
        raise ParseError("a link header 'N: name: <FLAGS> mtu ...'", text=line, line=n, source=source)
    index, name, peer, flags_text, rest = m.groups()
    flags: tuple[str, ...] | None = None
    if flags_text is not None:
        flags = tuple(f for f in flags_text.split(",") if f)
    kw: dict[str, object] = {}
    toks = rest.split()
    i = 0
    while i < len(toks):
        key = toks[i]
        if i + 1 >= len(toks):
            raise ParseError(f"a value after {key!r}", text=line, line=n, source=source)
        val = toks[i + 1]
        if key in ("mtu", "qlen"):
            kw[key] = _int(val, f"a number after {key!r}", line, n, source)
        elif key == "state":
            try:
                kw["state"] = OperState(val)
            except ValueError:
                raise ParseError("an operational state (UP, DOWN, UNKNOWN, ...)", text=line, line=n,
                                 source=source) from None
        elif key in ("qdisc", "master", "mode", "group"):
            kw[key] = val
        else:
            raise ParseError(f"a link attribute (mtu, qdisc, master, state, mode, group, qlen), not {key!r}",
                             text=line, line=n, source=source)
        i += 2
    return Link(index=int(index), name=name, peer=peer, flags=flags, **kw)  # type: ignore[arg-type]


_DETAIL_INT = {"promiscuity", "allmulti", "minmtu", "maxmtu"}


def _parse_details(text: tuple[str, ...]) -> LinkDetails:
    head = text[0].split() if text else []
    kw: dict[str, object] = {}
    for i, tok in enumerate(head[:-1]):
        if tok in _DETAIL_INT:
            kw[tok] = int(head[i + 1])
    for line in text[1:]:
        toks = line.split()
        if not toks:
            continue
        first = toks[0]
        pairs = {toks[i]: toks[i + 1] for i in range(len(toks) - 1)}
        if first.endswith("_slave"):
            kw["slave_kind"] = first
            if first == "bridge_slave" and "state" in pairs:
                kw["port_state"] = pairs["state"]
        elif first in ("addrgenmode", "alias"):
            continue
        elif "kind" not in kw:
            kw["kind"] = first
            if first == "vlan" and "id" in pairs:
                kw["vlan_id"] = int(pairs["id"])
            if first == "vxlan" and "id" in pairs:
                kw["vni"] = int(pairs["id"])
            if first in ("vxlan", "gre", "gretap", "ip6gre", "geneve"):
                for k in ("remote", "local", "dev"):
                    if k in pairs:
                        kw[k] = pairs[k]
                if "dstport" in pairs:
                    kw["dstport"] = int(pairs["dstport"])
                if "key" in pairs:
                    kw["key"] = pairs["key"]
            if first == "tun" and "type" in pairs:
                kw["tun_type"] = pairs["type"]
            if first == "bridge":
                if "bridge_id" in pairs:
                    kw["bridge_id"] = pairs["bridge_id"]
                if "stp_state" in pairs:
                    kw["stp_state"] = int(pairs["stp_state"])
    return LinkDetails(text=text, **kw)  # type: ignore[arg-type]


#: The line ``ip -d link`` prints under a device of each kind when nothing more is known of it (what
#: iproute2 before 3.x printed; later ones add attributes). A NIC and loopback print no such line.
KIND_LINES: dict[LinkKind, str] = {
    LinkKind.VETH: "veth", LinkKind.TUN: "tun type tun", LinkKind.TAP: "tun type tap",
    LinkKind.BRIDGE: "bridge", LinkKind.VLAN: "vlan", LinkKind.VXLAN: "vxlan", LinkKind.GRE: "gre",
    LinkKind.GRETAP: "gretap", LinkKind.OVS_INTERNAL: "openvswitch", LinkKind.DUMMY: "dummy",
    LinkKind.MACVLAN: "macvlan",
}
#: What a device ``ip -d link`` shows no details for is, by its ``link/`` type.
_BARE_KINDS = {"ether": LinkKind.ETHER, "loopback": LinkKind.LOOPBACK}


def _kind_of(link_type: str | None, details: LinkDetails | None) -> LinkKind | None:
    if details is not None and details.kind is not None:
        if details.kind == "tun":
            return LinkKind.TAP if details.tun_type == "tap" else LinkKind.TUN
        return _KIND_MAP.get(details.kind, LinkKind.OTHER)
    if link_type == "loopback":
        return LinkKind.LOOPBACK
    if details is not None and link_type == "ether":
        return LinkKind.ETHER  # -d shows no kind line for a physical NIC
    return None


def _parse_link_line(link: Link, body: str, line: str, n: int, source: str) -> tuple[Link, str]:
    """Parse ``link/TYPE [mac] [brd X|peer X] [permaddr X] [link-netns...]``; return the rest."""
    m = re.match(rf"link/(\S+)(?: ({_MAC}))?(?: (brd|peer) ({_MAC}))?", body)
    if not m:
        raise ParseError("'link/TYPE MAC brd MAC'", text=line, line=n, source=source)
    ltype, mac, brdkw, brd = m.groups()
    rest = body[m.end():]
    kw: dict[str, object] = {"link_type": ltype, "mac": mac, "brd": brd, "brd_is_peer": brdkw == "peer"}
    while True:
        pm = re.match(r" (permaddr|link-netns|link-netnsid) (\S+)", rest)
        if not pm:
            break
        key, val = pm.groups()
        if key == "permaddr":
            kw["permaddr"] = val
        elif key == "link-netns":
            kw["link_netns"] = val
        else:
            kw["link_netnsid"] = _int(val, "a number after 'link-netnsid'", line, n, source)
        rest = rest[pm.end():]
    return replace(link, **kw), rest  # type: ignore[arg-type]


_ADDR = r"^(inet6?) (\S+?)(?: peer (\S+))?/(\d+) ?(.*)$"
_ADDR_FLAGS = ("secondary", "temporary", "nodad", "optimistic", "dadfailed", "home", "deprecated",
               "tentative", "permanent", "mngtmpaddr", "noprefixroute", "autojoin", "stable-privacy",
               "dynamic")


def _parse_address(body: str, line: str, n: int, source: str) -> Address:
    m = re.compile(_ADDR).match(body)
    if not m:
        raise ParseError("'inet ADDRESS/PREFIX ...' or 'inet6 ADDRESS/PREFIX ...'", text=line, line=n,
                         source=source)
    fam, local, peer, plen, rest = m.groups()
    try:
        iface = ipaddress.ip_interface(f"{local}/{plen}")
        peer_if = ipaddress.ip_interface(peer) if peer else None
    except ValueError:
        raise ParseError("an IP address with a prefix length", text=line, line=n, source=source) from None
    if (iface.version == 4) != (fam == "inet"):
        raise ParseError(f"an {fam} address", text=line, line=n, source=source)
    toks = rest.split()
    kw: dict[str, object] = {}
    flags: list[str] = []
    i = 0
    scope_seen = False
    while i < len(toks):
        t = toks[i]
        if t in ("brd", "scope", "metric", "flags", "any") and i + 1 < len(toks):
            v = toks[i + 1]
            if t == "brd":
                try:
                    kw["brd"] = ipaddress.ip_address(v)
                except ValueError:
                    raise ParseError("a broadcast address after 'brd'", text=line, line=n,
                                     source=source) from None
            elif t == "scope":
                kw["scope"] = v
                scope_seen = True
            elif t == "metric":
                kw["metric"] = _int(v, "a number after 'metric'", line, n, source)
            elif t == "flags":
                kw["unknown_flags"] = _int("0x" + v, "hex after 'flags'", line, n, source)
            i += 2
            continue
        if t in _ADDR_FLAGS:
            flags.append(t)
        elif scope_seen and i == len(toks) - 1:
            kw["label"] = t
        else:
            raise ParseError(f"an address attribute, not {t!r}", text=line, line=n, source=source)
        i += 1
    if not scope_seen:
        raise ParseError("'scope' in the address line", text=line, line=n, source=source)
    return Address(interface=iface, peer=peer_if, flags=tuple(flags), lifetimes=None,
                   **kw)  # type: ignore[arg-type]


def _parse_lifetimes(body: str, line: str, n: int, source: str) -> Lifetimes:
    m = re.match(r"valid_lft (forever|\d+sec) preferred_lft (forever|-?\d+sec)\s*$", body)
    if not m:
        raise ParseError("'valid_lft X preferred_lft Y'", text=line, line=n, source=source)

    def one(v: str) -> int | None:
        return None if v == "forever" else int(v[:-3])

    return Lifetimes(one(m.group(1)), one(m.group(2)))


def _details_and_kind(link: Link, block: list[str],
                      detailed: bool) -> tuple[LinkDetails | None, LinkKind | None]:
    """What the text after ``link/`` (``block``: the rest of that line, then each detail line) says.

    In ``ip -d`` output (``detailed``) a device with nothing after ``link/`` is a NIC (``ether``) or
    loopback, and one with only its kind's line (:data:`KIND_LINES`) is known by its kind alone, as
    planned devices are: both keep ``details`` ``None`` so that they print back the same way.
    Details that are exactly what the formatter makes of their typed fields (a planner's
    ``LinkDetails(kind="vlan", vlan_id=100)``) keep no ``text`` either."""
    if not any(t.strip() for t in block):
        return None, (_BARE_KINDS.get(link.link_type or "") if detailed else _kind_of(link.link_type, None))
    details = _parse_details(tuple(block))
    kind = _kind_of(link.link_type, details)
    bare = replace(details, text=())
    if tuple(block) == _format_details_synth(bare):
        return bare, kind
    if detailed and kind in KIND_LINES and block == ["", KIND_LINES[kind]]:
        return None, kind
    return details, kind


def _links(text: str, source: str, skipped: list[Skipped] | None,
           detailed: bool = False) -> tuple[Link, ...]:
    links: list[Link] = []
    cur: Link | None = None
    addrs: list[Address] = []
    details_text: list[str] = []
    in_details = False

    def finish() -> None:
        nonlocal cur, addrs, details_text
        if cur is not None:
            details, kind = _details_and_kind(cur, details_text, detailed)
            links.append(replace(cur, details=details, addresses=tuple(addrs), kind=kind))
        cur, addrs, details_text = None, [], []

    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        if skipped is not None and is_elision(line):
            skipped.append(Skipped(n, line))
            continue
        body = line.strip()
        try:
            if not line[0].isspace():
                finish()
                in_details = False
                cur = _parse_header(line.rstrip(), n, source)
                continue
            if cur is None:
                raise ParseError("a link header 'N: name: <FLAGS> mtu ...' first", text=line, line=n,
                                 source=source)
            if body.startswith("link/"):
                cur, rest = _parse_link_line(cur, line.lstrip(), line, n, source)
                details_text = [rest]  # the details (ip -d) go on after link/ and on the lines below
                in_details = True
            elif body.startswith("inet"):
                in_details = False
                addrs.append(_parse_address(body, line, n, source))
            elif body.startswith("valid_lft"):
                if not addrs:
                    raise ParseError("an inet/inet6 line before 'valid_lft'", text=line, line=n, source=source)
                addrs[-1] = replace(addrs[-1], lifetimes=_parse_lifetimes(body, line, n, source))
            elif body.startswith("altname "):
                in_details = False
                cur = replace(cur, altnames=cur.altnames + (body[len("altname "):],))
            elif body.startswith("alias "):
                in_details = False
                cur = replace(cur, alias=line.lstrip()[len("alias "):])
            elif in_details:
                details_text.append(line[4:] if line.startswith("    ") else line.lstrip())
            else:
                raise ParseError("a 'link/', 'inet', 'inet6', 'valid_lft' or 'altname' line", text=line,
                                 line=n, source=source)
        except ParseError:
            if skipped is None:
                raise
            skipped.append(Skipped(n, line))
    finish()
    return tuple(links)


def parse_ip_link(text: str, *, source: str = "<string>", detailed: bool = False) -> tuple[Link, ...]:
    """Parse ``ip link``/``ip -d link``/``ip addr`` output (``ip addr`` is ``ip link`` plus addresses).

    ``detailed``: the output of ``ip -d`` (see :func:`_details_and_kind` for what that tells)."""
    return _links(_unfold_oneline(text), source, None, detailed)


def parse_ip_addr(text: str, *, source: str = "<string>", detailed: bool = False) -> tuple[Link, ...]:
    """Parse ``ip addr``/``ip a``/``ip addr show dev X`` (``detailed``: ``ip -d addr``) output."""
    return _links(text, source, None, detailed)


def parse_ip_addr_partial(text: str, *, source: str = "<string>",
                          detailed: bool = False) -> Partial[Link]:
    """Like :func:`parse_ip_addr`, but skip elisions and unreadable lines and report them."""
    skipped: list[Skipped] = []
    links = _links(text, source, skipped, detailed)
    return Partial(links, tuple(skipped))


parse_ip_link_partial = parse_ip_addr_partial


def _unfold_oneline(text: str) -> str:
    """``ip -o link`` joins a link's lines with a backslash; split them again."""
    if "\\" not in text:
        return text
    return "\n".join(seg for line in text.splitlines() for seg in line.split("\\"))


def parse_ip_link_oneline(text: str, *, source: str = "<string>",
                          detailed: bool = False) -> tuple[Link, ...]:
    """Parse ``ip -o link`` output (each link on one line, ``\\`` between its lines)."""
    return _links(_unfold_oneline(text), source, None, detailed)


_ONELINE_ADDR = r"^(\d+): (\S+)\s+(inet6? .*?)\\\s+(valid_lft .*)$"


def parse_ip_addr_oneline(text: str, *, source: str = "<string>") -> tuple[IfAddress, ...]:
    """Parse ``ip -o addr`` output: ``N: dev    inet A/P ... \\       valid_lft ...`` per line."""
    out: list[IfAddress] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = re.compile(_ONELINE_ADDR).match(line.rstrip())
        if not m:
            raise ParseError("'N: dev    inet ADDRESS/PREFIX ... \\ valid_lft ...'", text=line, line=n,
                             source=source)
        idx, dev, addr, lft = m.groups()
        a = _parse_address(addr.rstrip(), line, n, source)
        a = replace(a, lifetimes=_parse_lifetimes(lft, line, n, source))
        out.append(IfAddress(int(idx), dev, a))
    return tuple(out)


# --- formatting ----------------------------------------------------------------------------

def _format_header(link: Link, *, with_mode: bool) -> str:
    s = f"{link.index}: {link.name}"
    if link.peer:
        s += f"@{link.peer}"
    s += ": "
    if link.flags is not None:
        s += "<" + ",".join(link.flags) + "> "
    else:
        s += " "
    if link.mtu is not None:
        s += f"mtu {link.mtu} "
    if link.qdisc is not None:
        s += f"qdisc {link.qdisc} "
    if link.master is not None:
        s += f"master {link.master} "
    if link.state is not None:
        s += f"state {link.state.value} "
    if with_mode and link.mode is not None:
        s += f"mode {link.mode} "
    if link.group is not None:
        s += f"group {link.group} "
    if link.qlen is not None:
        s += f"qlen {link.qlen}"
    return s


def _format_details_synth(d: LinkDetails) -> tuple[str, ...]:
    head = ""
    if d.promiscuity is not None:
        head += f" promiscuity {d.promiscuity} "
    if d.allmulti is not None:
        head += f" allmulti {d.allmulti} "
    if d.minmtu is not None:
        head += f"minmtu {d.minmtu} "
    if d.maxmtu is not None:
        head += f"maxmtu {d.maxmtu} "
    lines = [head]
    if d.kind:
        kind = d.kind + " "
        if d.kind == "vxlan" and d.vni is not None:
            kind += f"id {d.vni} "
        if d.kind == "vlan" and d.vlan_id is not None:
            kind += f"protocol 802.1Q id {d.vlan_id} "
        for k in ("remote", "local", "dev"):
            v = getattr(d, k)
            if v is not None:
                kind += f"{k} {v} "
        if d.dstport is not None:
            kind += f"dstport {d.dstport} "
        lines.append(kind)
    return tuple(lines)


def _format_link_lines(link: Link, *, with_mode: bool, detailed: bool = False) -> list[str]:
    lines = [_format_header(link, with_mode=with_mode)]
    if link.link_type is not None:
        s = f"    link/{link.link_type} "
        if link.mac is not None:
            s += link.mac
        if link.brd is not None:
            s += (" peer " if link.brd_is_peer else " brd ") + link.brd
        if link.permaddr is not None:
            s += f" permaddr {link.permaddr}"
        if link.link_netns is not None:
            s += f" link-netns {link.link_netns}"
        elif link.link_netnsid is not None:
            s += f" link-netnsid {link.link_netnsid}"
        if link.details is not None:
            text = link.details.text or _format_details_synth(link.details)
            s += text[0]
            lines.append(s)
            lines.extend("    " + t for t in text[1:])
        else:
            lines.append(s)
            if detailed and link.kind in KIND_LINES:
                lines.append("    " + KIND_LINES[link.kind])
    if link.alias is not None and (with_mode or link.details is not None):
        lines.append(f"    alias {link.alias}")
    lines.extend(f"    altname {a}" for a in link.altnames)
    return lines


def format_address(addr: Address) -> str:
    """The ``inet``/``inet6`` line of ``addr`` (without indentation or lifetimes)."""
    s = f"{addr.family} {addr.interface.ip}"
    if addr.peer is not None:
        s += f" peer {addr.peer.ip}"
    s += f"/{addr.interface.network.prefixlen} "
    if addr.metric is not None:
        s += f"metric {addr.metric} "
    if addr.brd is not None:
        s += f"brd {addr.brd} "
    s += f"scope {addr.scope} "
    for f in addr.flags:
        s += f"{f} "
    if addr.unknown_flags is not None:
        s += f"flags {addr.unknown_flags:02x} "
    if addr.label is not None:
        s += addr.label
    return s


def format_lifetimes(lft: Lifetimes) -> str:
    def one(v: int | None) -> str:
        return "forever" if v is None else f"{v}sec"

    return f"valid_lft {one(lft.valid)} preferred_lft {one(lft.preferred)}"


def _address_lines(addr: Address) -> list[str]:
    out = ["    " + format_address(addr)]
    if addr.lifetimes is not None:
        out.append("       " + format_lifetimes(addr.lifetimes))
    return out


def format_ip_addr(links: tuple[Link, ...] | list[Link], *, detailed: bool = False) -> str:
    """Render links and their addresses as ``ip addr`` prints them (``detailed``: ``ip -d addr``,
    which also names the kind of a device known by its kind alone)."""
    out: list[str] = []
    for link in links:
        out.extend(_format_link_lines(link, with_mode=False, detailed=detailed))
        for a in link.addresses:
            out.extend(_address_lines(a))
    return "".join(line + "\n" for line in out)


def format_ip_link(links: tuple[Link, ...] | list[Link], *, detailed: bool = False, stats: bool = False) -> str:
    """Render links as ``ip link`` (or ``ip -d link`` when they carry details) prints them.

    ``detailed``: as ``ip -d link``, which also names the kind of a device known by its kind alone
    (a planned one: ``vlan``, ``veth``); :func:`parse_ip_link` with ``detailed`` reads that back.
    ``stats``: as ``ip -s link``, with zero counters (the model keeps none: a planned device has
    not counted anything yet), in the layout of the links' iproute2 (:data:`_STATS`)."""
    out: list[str] = []
    for link in links:
        out.extend(_format_link_lines(link, with_mode=True, detailed=detailed))
        if stats:
            out.extend(_STATS[link.style])
    return "".join(line + "\n" for line in out)


#: ``ip -s link``'s counter lines for a device that has counted nothing: iproute2 6.1 (``print_link_stats``
#: sizes each column to its widest number) and the iproute2 3.x layout of the seeds' hosts.
_STATS = {
    IprouteStyle.MODERN: (
        "    RX:  bytes packets errors dropped  missed   mcast           ",
        "             0       0      0       0       0       0 ",
        "    TX:  bytes packets errors dropped carrier collsns           ",
        "             0       0      0       0       0       0 "),
    IprouteStyle.LEGACY: (
        "    RX: bytes  packets  errors  dropped overrun mcast   ",
        "    0          0        0       0       0       0      ",
        "    TX: bytes  packets  errors  dropped carrier collsns ",
        "    0          0        0       0       0       0      "),
}


def _brief_name(link: Link) -> str:
    return f"{link.name}@{link.peer}" if link.peer else link.name


def _brief_state(link: Link) -> str:
    return link.state.value if link.state is not None else "UNKNOWN"


def format_ip_addr_brief(links: tuple[Link, ...] | list[Link]) -> str:
    """``ip -br addr``: name (``@peer``), operational state, then each address as ``ADDR/PREFIX``
    (iproute2's ``print_linkinfo_brief`` and ``print_addrinfo`` in brief mode)."""
    out = []
    for link in links:
        line = f"{_brief_name(link):<16} {_brief_state(link):<14} "
        line += "".join(f"{a.interface.ip}/{a.interface.network.prefixlen} " for a in link.addresses)
        out.append(line + "\n")
    return "".join(out)


def format_ip_link_brief(links: tuple[Link, ...] | list[Link]) -> str:
    """``ip -br link``: name (``@peer``), operational state, link-layer address and ``<FLAGS>``."""
    out = []
    for link in links:
        line = f"{_brief_name(link):<16} {_brief_state(link):<14} "
        if link.mac is not None:
            line += f"{link.mac} "
        line += "<" + ",".join(link.flags or ()) + "> "
        out.append(line + "\n")
    return "".join(out)


def format_ip_link_oneline(links: tuple[Link, ...] | list[Link]) -> str:
    """Render links as ``ip -o link`` prints them."""
    return "".join("\\".join(_format_link_lines(link, with_mode=True)) + "\n" for link in links)


def format_ip_addr_oneline(entries: tuple[IfAddress, ...] | list[IfAddress]) -> str:
    """Render ``ip -o addr`` lines."""
    out = []
    for e in entries:
        lines = _address_lines(e.address)
        out.append(f"{e.index}: {e.ifname}" + "\\".join(lines) + "\n")
    return "".join(out)


def oneline_addresses(links: tuple[Link, ...] | list[Link]) -> tuple[IfAddress, ...]:
    """The ``ip -o addr`` view of links read from ``ip addr``."""
    return tuple(IfAddress(link.index, link.name, a) for link in links for a in link.addresses)
