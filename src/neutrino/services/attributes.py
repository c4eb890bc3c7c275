"""Request-body validation the way neutron-lib does it.

Each resource declares its attributes (settable on POST/PUT, required, default, converter). The
converters raise ``ValueError(reason)``; ``prepare_body`` turns that into Neutron's
``Invalid input for <attr>. Reason: <reason>.`` and also reports unknown and read-only attributes
with Neutron's own wording.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from neutrino.errors import InvalidInput

Converter = Callable[[Any], Any]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def bad_request(message: str) -> InvalidInput:
    return InvalidInput(message, neutron_type="HTTPBadRequest")


# -- converters (raise ValueError with neutron-lib's reason text) --------------------------------

_TRUE = {"true", "1", "t", "yes", "y", "on"}
_FALSE = {"false", "0", "f", "no", "n", "off"}


def to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        low = v.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ValueError(f"'{v}' cannot be converted to boolean")


def to_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"'{v}' is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
        return int(v)
    raise ValueError(f"'{v}' is not an integer")


def to_int_or_none(v: Any) -> int | None:
    return None if v is None else to_int(v)


def string(max_len: int = 255) -> Converter:
    def conv(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(f"'{v}' is not a valid string")
        if len(v) > max_len:
            raise ValueError(f"'{v}' exceeds maximum length of {max_len}")
        return v
    return conv


def string_or_none(max_len: int = 255) -> Converter:
    inner = string(max_len)
    return lambda v: None if v is None else inner(v)


def is_uuid(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return True


def to_uuid(v: Any) -> str:
    if not is_uuid(v):
        raise ValueError(f"'{v}' is not a valid UUID")
    return str(v)


def to_uuid_or_none(v: Any) -> str | None:
    return None if v is None else to_uuid(v)


def to_ip(v: Any) -> str:
    try:
        if not isinstance(v, str) or "/" in v:
            raise ValueError
        return str(ipaddress.ip_address(v.strip()))
    except ValueError:
        raise ValueError(f"'{v}' is not a valid IP address") from None


def to_ip_or_none(v: Any) -> str | None:
    return None if v is None else to_ip(v)


def to_cidr(v: Any) -> str:
    """A subnet, canonicalised (host bits cleared)."""
    try:
        if not isinstance(v, str):
            raise ValueError
        return str(ipaddress.ip_network(v.strip(), strict=False))
    except ValueError:
        raise ValueError(f"'{v}' is not a valid IP subnet") from None


def to_cidr_or_none(v: Any) -> str | None:
    return None if v is None else to_cidr(v)


_MAC = re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")


def to_mac(v: Any) -> str:
    if not isinstance(v, str) or not _MAC.match(v):
        raise ValueError(f"'{v}' is not a valid MAC address")
    mac = v.lower().replace("-", ":")
    if mac in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
        raise ValueError(f"'{v}' is not a valid MAC address")
    return mac


def to_dict(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"'{v}' is not a dictionary")
    return v


def to_dict_or_none(v: Any) -> dict[str, Any] | None:
    return None if v is None else to_dict(v)


def list_of(item: Converter, *, unique: bool = False, max_len: int | None = None) -> Converter:
    def conv(v: Any) -> list[Any]:
        if not isinstance(v, list):
            raise ValueError(f"'{v}' is not a list")
        if max_len is not None and len(v) > max_len:
            raise ValueError(f"'{v}' exceeds maximum list length of {max_len}")
        out = [item(x) for x in v]
        if unique:
            seen: list[Any] = []
            for x in out:
                if x in seen:
                    raise ValueError(f"Duplicate items in the list: '{x}'")
                seen.append(x)
        return out
    return conv


def list_or_none(item: Converter) -> Converter:
    inner = list_of(item)
    return lambda v: [] if v is None else inner(v)


def one_of(*values: Any) -> Converter:
    def conv(v: Any) -> Any:
        if v not in values:
            raise ValueError(f"{v} is not in {list(values)}")
        return v
    return conv


def one_of_or_none(*values: Any) -> Converter:
    inner = one_of(*values)
    return lambda v: None if v is None else inner(v)


def dict_items(required: dict[str, Converter], optional: dict[str, Converter]) -> Converter:
    """A dict with exactly these keys (unknown keys are an error, as neutron-lib's validators say)."""
    def conv(v: Any) -> dict[str, Any]:
        d = to_dict(v)
        for k in d:
            if k not in required and k not in optional:
                raise ValueError(f"Unexpected keys supplied: {k}")
        out: dict[str, Any] = {}
        for k, c in required.items():
            if k not in d:
                raise ValueError(f"Validation of dictionary's keys failed. Expected keys: {set(required)} "
                                 f"Provided keys: {set(d)}")
            out[k] = c(d[k])
        for k, c in optional.items():
            if k in d:
                out[k] = c(d[k])
        return out
    return conv


def pool(v: Any) -> dict[str, str]:
    return dict_items({"start": to_ip, "end": to_ip}, {})(v)


def host_route(v: Any) -> dict[str, str]:
    return dict_items({"destination": to_cidr, "nexthop": to_ip}, {})(v)


def fixed_ip(v: Any) -> dict[str, Any]:
    return dict_items({}, {"subnet_id": to_uuid, "ip_address": to_ip})(v)


def address_pair(v: Any) -> dict[str, Any]:
    def ip_or_cidr(x: Any) -> str:
        if isinstance(x, str) and "/" in x:
            try:
                return str(ipaddress.ip_network(x, strict=False))
            except ValueError:
                raise ValueError(f"'{x}' is not a valid IP address") from None
        return to_ip(x)
    return dict_items({"ip_address": ip_or_cidr}, {"mac_address": to_mac})(v)


def fixed_ips_list(v: Any) -> list[dict[str, Any]]:
    if not isinstance(v, list):
        raise ValueError(f"Invalid data format for fixed IP: '{v}'")
    out = []
    for item in v:
        if not isinstance(item, dict):
            raise ValueError(f"Invalid data format for fixed IP: '{item}'")
        out.append(fixed_ip(item))
    return out


# -- attribute specs ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Attr:
    post: bool = True
    put: bool = True
    required: bool = False
    default: Any = MISSING
    convert: Converter | None = None
    kind: str = "str"  # for filters: str | bool | int | list


@dataclass(frozen=True, slots=True)
class Resource:
    singular: str
    plural: str
    attrs: dict[str, Attr] = field(default_factory=dict)
    readonly: frozenset[str] = frozenset()

    def known(self) -> frozenset[str]:
        return frozenset(self.attrs) | self.readonly | _STD_READONLY | {"project_id", "tenant_id"}


_STD_READONLY = frozenset({"id", "created_at", "updated_at", "revision_number", "tags"})

NAME = Attr(default="", convert=string(255))
DESCRIPTION = Attr(default="", convert=string(255))
ADMIN = Attr(default=True, convert=to_bool, kind="bool")

NETWORK = Resource("network", "networks", {
    "name": NAME, "description": DESCRIPTION, "admin_state_up": ADMIN,
    "shared": Attr(default=False, convert=to_bool, kind="bool"),
    "router:external": Attr(default=False, convert=to_bool, kind="bool"),
    "port_security_enabled": Attr(default=True, convert=to_bool, kind="bool"),
    "mtu": Attr(default=MISSING, convert=to_int, kind="int"),
    "provider:network_type": Attr(put=False, convert=string(32)),
    "provider:physical_network": Attr(put=False, convert=string_or_none(64)),
    "provider:segmentation_id": Attr(put=False, convert=to_int_or_none, kind="int"),
    "availability_zone_hints": Attr(put=False, default=[], convert=list_of(string(255)), kind="list"),
    "dns_domain": Attr(convert=string(255)),
    "is_default": Attr(convert=to_bool, kind="bool"),
    "qos_policy_id": Attr(convert=to_uuid_or_none),
}, frozenset({"status", "subnets", "availability_zones", "ipv4_address_scope", "ipv6_address_scope"}))

SUBNET = Resource("subnet", "subnets", {
    "name": NAME, "description": DESCRIPTION,
    "network_id": Attr(put=False, required=True, convert=to_uuid),
    "ip_version": Attr(put=False, required=True, convert=lambda v: one_of(4, 6)(to_int(v)), kind="int"),
    "cidr": Attr(put=False, default=MISSING, convert=to_cidr),
    "gateway_ip": Attr(default=MISSING, convert=to_ip_or_none),
    "allocation_pools": Attr(default=MISSING, convert=list_of(pool)),
    "dns_nameservers": Attr(default=[], convert=list_or_none(to_ip), kind="list"),
    "host_routes": Attr(default=[], convert=list_or_none(host_route), kind="list"),
    "enable_dhcp": Attr(default=True, convert=to_bool, kind="bool"),
    "ipv6_ra_mode": Attr(put=False, default=None,
                         convert=one_of_or_none("dhcpv6-stateful", "dhcpv6-stateless", "slaac")),
    "ipv6_address_mode": Attr(put=False, default=None,
                              convert=one_of_or_none("dhcpv6-stateful", "dhcpv6-stateless", "slaac")),
    "subnetpool_id": Attr(put=False, default=None, convert=to_uuid_or_none),
    "prefixlen": Attr(put=False, convert=to_int),
    "use_default_subnetpool": Attr(put=False, convert=to_bool),
    "service_types": Attr(default=[], convert=list_of(string(255)), kind="list"),
    "segment_id": Attr(default=None, convert=to_uuid_or_none),
}, frozenset({"router:external", "shared"}))

PORT = Resource("port", "ports", {
    "name": NAME, "description": DESCRIPTION, "admin_state_up": ADMIN,
    "network_id": Attr(put=False, required=True, convert=to_uuid),
    "mac_address": Attr(default=MISSING, convert=to_mac),
    "fixed_ips": Attr(default=MISSING, convert=fixed_ips_list, kind="list"),
    "device_id": Attr(default="", convert=string(255)),
    "device_owner": Attr(default="", convert=string(255)),
    "security_groups": Attr(default=MISSING, convert=list_or_none(to_uuid), kind="list"),
    "port_security_enabled": Attr(default=MISSING, convert=to_bool, kind="bool"),
    "allowed_address_pairs": Attr(default=[], convert=list_or_none(address_pair), kind="list"),
    "extra_dhcp_opts": Attr(default=[], convert=list_or_none(to_dict), kind="list"),
    "binding:host_id": Attr(default="", convert=lambda v: "" if v is None else string(255)(v)),
    "binding:profile": Attr(default={}, convert=lambda v: {} if v is None else to_dict(v)),
    "binding:vnic_type": Attr(default="normal", convert=one_of(
        "normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder", "smart-nic",
        "vdpa", "accelerator-direct", "accelerator-direct-physical", "remote-managed")),
    "dns_name": Attr(convert=string(255)),
    "qos_policy_id": Attr(convert=to_uuid_or_none),
    "propagate_uplink_status": Attr(convert=to_bool, kind="bool"),
}, frozenset({"status", "binding:vif_type", "binding:vif_details", "ip_allocation", "dns_assignment",
              "resource_request"}))


def _gateway_info(v: Any) -> dict[str, Any] | None:
    if v is None or v == {}:
        return None
    return dict_items({"network_id": to_uuid}, {
        "enable_snat": to_bool, "external_fixed_ips": list_of(fixed_ip), "qos_policy_id": to_uuid_or_none,
    })(v)


ROUTER = Resource("router", "routers", {
    "name": NAME, "description": DESCRIPTION, "admin_state_up": ADMIN,
    "external_gateway_info": Attr(default=None, convert=_gateway_info),
    "routes": Attr(default=[], convert=list_or_none(host_route), kind="list"),
    "availability_zone_hints": Attr(put=False, default=[], convert=list_of(string(255)), kind="list"),
    "distributed": Attr(convert=to_bool, kind="bool"),
    "ha": Attr(convert=to_bool, kind="bool"),
    "flavor_id": Attr(put=False, convert=to_uuid_or_none),
}, frozenset({"status", "availability_zones"}))

FLOATINGIP = Resource("floatingip", "floatingips", {
    "description": DESCRIPTION,
    "floating_network_id": Attr(put=False, required=True, convert=to_uuid),
    "floating_ip_address": Attr(put=False, default=None, convert=to_ip_or_none),
    "subnet_id": Attr(put=False, default=None, convert=to_uuid_or_none),
    "port_id": Attr(default=None, convert=to_uuid_or_none),
    "fixed_ip_address": Attr(default=None, convert=to_ip_or_none),
    "dns_name": Attr(put=False, convert=string(255)),
    "dns_domain": Attr(put=False, convert=string(255)),
    "qos_policy_id": Attr(convert=to_uuid_or_none),
}, frozenset({"status", "router_id", "port_details", "port_forwardings", "name"}))

SECURITY_GROUP = Resource("security_group", "security_groups", {
    "name": NAME, "description": DESCRIPTION,
    "stateful": Attr(default=True, convert=to_bool, kind="bool"),
}, frozenset({"security_group_rules", "shared"}))


def _protocol(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError(f"Security group rule protocol {v} not supported. Only protocol values "
                         f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported.")
    if isinstance(v, int):
        v = str(v)
    if not isinstance(v, str):
        raise ValueError(f"Security group rule protocol {v} not supported.")
    low = v.lower()
    if low in ("any", ""):
        return None
    if low in PROTOCOLS:
        return low
    if low.isdigit() and 0 <= int(low) <= 255:
        return str(int(low))
    raise ValueError(f"Security group rule protocol {v} not supported. Only protocol values "
                     f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported.")


PROTOCOLS = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2, "ip": 0,
    "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6,
    "udp": 17, "udplite": 136, "vrrp": 112,
}


def _port_bound(v: Any) -> int | None:
    if v is None:
        return None
    try:
        n = to_int(v)
    except ValueError:
        raise ValueError(f"'{v}' is not an integer") from None
    return n


def _ethertype(v: Any) -> str:
    if isinstance(v, str) and v.lower() in ("ipv4", "ipv6"):
        return "IPv4" if v.lower() == "ipv4" else "IPv6"
    raise ValueError(f"{v} is not in ['IPv4', 'IPv6']")


SECURITY_GROUP_RULE = Resource("security_group_rule", "security_group_rules", {
    "description": Attr(default="", convert=string(255)),
    "security_group_id": Attr(put=False, required=True, convert=to_uuid),
    "direction": Attr(put=False, required=True, convert=one_of("ingress", "egress")),
    "ethertype": Attr(put=False, default="IPv4", convert=_ethertype),
    "protocol": Attr(put=False, default=None, convert=_protocol),
    "port_range_min": Attr(put=False, default=None, convert=_port_bound, kind="int"),
    "port_range_max": Attr(put=False, default=None, convert=_port_bound, kind="int"),
    "remote_ip_prefix": Attr(put=False, default=None, convert=to_cidr_or_none),
    "remote_group_id": Attr(put=False, default=None, convert=to_uuid_or_none),
    "remote_address_group_id": Attr(put=False, default=None, convert=to_uuid_or_none),
}, frozenset({"normalized_cidr", "belongs_to_default_sg"}))

RESOURCES = {r.singular: r for r in (NETWORK, SUBNET, PORT, ROUTER, FLOATINGIP, SECURITY_GROUP,
                                     SECURITY_GROUP_RULE)}


def prepare_body(res: Resource, body: Any, *, create: bool, fill_defaults: bool = True) -> dict[str, Any]:
    """Validate one resource's attributes for POST (``create``) or PUT; convert values.

    Returns converted attributes; on POST missing attributes get their defaults (when declared).
    ``project_id``/``tenant_id`` are passed through (merged into ``project_id``).
    """
    if not isinstance(body, dict):
        raise bad_request(f"Unable to find '{res.singular}' in request body")
    unknown = [k for k in body if k not in res.known()]
    if unknown:
        raise bad_request(f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'")
    out: dict[str, Any] = {}
    for k, v in body.items():
        if k in ("project_id", "tenant_id"):
            if not create:
                raise bad_request(f"Cannot update read-only attribute {k}")
            if not isinstance(v, str) or len(v) > 255:
                raise bad_request(f"Invalid input for {k}. Reason: '{v}' is not a valid string.")
            if "project_id" in out and out["project_id"] != v:
                raise bad_request("'project_id' and 'tenant_id' do not match")
            out["project_id"] = v
            continue
        spec = res.attrs.get(k)
        if spec is None:  # read-only attribute
            if create:
                raise bad_request(f"Attribute '{k}' not allowed in POST")
            raise bad_request(f"Cannot update read-only attribute {k}")
        if create and not spec.post:
            raise bad_request(f"Attribute '{k}' not allowed in POST")
        if not create and not spec.put:
            raise bad_request(f"Cannot update read-only attribute {k}")
        if spec.convert is not None:
            try:
                v = spec.convert(v)
            except ValueError as e:
                raise bad_request(f"Invalid input for {k}. Reason: {e}.") from None
        out[k] = v
    if create:
        for k, spec in res.attrs.items():
            if k in out:
                continue
            if spec.required:
                raise bad_request(f"Failed to parse request. Required attribute '{k}' not specified")
            if fill_defaults and spec.default is not MISSING:
                d = spec.default
                out[k] = list(d) if isinstance(d, list) else dict(d) if isinstance(d, dict) else d
    return out
