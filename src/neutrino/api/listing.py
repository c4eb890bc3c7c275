"""Neutron's list query language: filters, tags filters, fields, sorting, limit/marker pagination."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from neutrino.errors import InvalidInput, NotFound
from neutrino.services.attributes import to_bool

MAX_LIMIT = 2**31 - 1  # what SQL's LIMIT takes on every database

RESERVED = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse", "tags", "tags-any", "not-tags",
            "not-tags-any", "verbose"}


def _bad(msg: str) -> InvalidInput:
    return InvalidInput(msg, neutron_type="HTTPBadRequest")


@dataclass
class ListQuery:
    filters: dict[str, list[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (key, ascending)
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False
    tags: dict[str, list[str]] = field(default_factory=dict)
    raw: list[tuple[str, str]] = field(default_factory=list)


def parse(items: list[tuple[str, str]], known: frozenset[str] | set[str], *, validate: bool = True) -> ListQuery:
    q = ListQuery(raw=items)
    keys, dirs = [], []
    for k, v in items:
        if k == "fields":
            q.fields.extend(x for x in v.split(",") if x)
        elif k == "sort_key":
            keys.append(v)
        elif k == "sort_dir":
            dirs.append(v)
        elif k == "limit":
            try:
                n = int(v)
            except ValueError:
                n = -1
            if n < 0:
                raise _bad(f"Limit must be an integer 0 or greater and not '{v}'")
            q.limit = min(n, MAX_LIMIT) or None
        elif k == "marker":
            q.marker = v
        elif k == "page_reverse":
            try:
                q.page_reverse = to_bool(v)
            except ValueError as e:
                raise _bad(f"Invalid input for page_reverse. Reason: {e}.") from None
        elif k in ("tags", "tags-any", "not-tags", "not-tags-any"):
            q.tags.setdefault(k, []).extend(x for x in v.split(",") if x)
        elif k == "verbose":
            continue
        else:
            q.filters.setdefault(k, []).append(v)
    if validate:
        bad = [k for k in q.filters if k not in known and k not in ("fixed_ips", "ip_address", "subnet_id")]
        if bad:
            raise _bad(f"{bad} is invalid attribute for filtering")
    if dirs and len(dirs) != len(keys):
        raise _bad("The number of sort_keys and sort_dirs must be same")
    for i, k in enumerate(keys):
        if k not in known:
            raise _bad(f"{k} is invalid attribute for sort_keys")
        d = dirs[i] if dirs else "asc"
        if d not in ("asc", "desc"):
            raise _bad(f"{d} is invalid value for sort_dirs, valid values are 'asc' and 'desc'")
        q.sort.append((k, d == "asc"))
    return q


def _match_value(value: Any, wanted: list[str], attr: str) -> bool:
    if isinstance(value, bool):
        try:
            return any(to_bool(w) == value for w in wanted)
        except ValueError as e:
            raise _bad(f"Invalid input for {attr}. Reason: {e}.") from None
    if isinstance(value, list):
        return any(w in [str(x) for x in value] for w in wanted)
    if value is None:
        return any(w in ("", "None", "null") for w in wanted)
    if isinstance(value, dict):
        return False
    return str(value) in wanted


def _match_fixed_ips(value: list[dict[str, str]], wanted: list[str]) -> bool:
    for w in wanted:
        k, _, v = w.partition("=")
        ok = False
        for ip in value:
            if (k == "ip_address" and ip["ip_address"] == v) or (k == "subnet_id" and ip["subnet_id"] == v) or \
                    (k == "ip_address_substr" and v in ip["ip_address"]):
                ok = True
        if not ok:
            return False
    return True


def apply(items: list[dict[str, Any]], q: ListQuery, *, kind: str) -> tuple[list[dict[str, Any]], bool]:
    """Filter, sort and paginate; returns the page and whether more items follow it."""
    out = items
    for attr, wanted in q.filters.items():
        if attr == "fixed_ips":
            out = [i for i in out if _match_fixed_ips(i.get("fixed_ips", []), wanted)]
        elif attr in ("ip_address", "subnet_id") and "fixed_ips" in (items[0] if items else {}):
            out = [i for i in out if any(ip[attr] in wanted for ip in i.get("fixed_ips", []))]
        else:
            out = [i for i in out if attr in i and _match_value(i[attr], wanted, attr)]
    for mode, tags in q.tags.items():
        t = set(tags)
        if mode == "tags":
            out = [i for i in out if t <= set(i.get("tags", []))]
        elif mode == "tags-any":
            out = [i for i in out if t & set(i.get("tags", []))]
        elif mode == "not-tags":
            out = [i for i in out if not t <= set(i.get("tags", []))]
        else:
            out = [i for i in out if not t & set(i.get("tags", []))]
    sort = list(q.sort)
    if (q.limit is not None or q.marker) and not any(k == "id" for k, _ in sort):
        sort.append(("id", True))
    for key, asc in reversed(sort):
        out = sorted(out, key=lambda i: (i.get(key) is not None, _sortable(i.get(key))), reverse=not asc)
    if q.page_reverse:
        out = list(reversed(out))
    if q.marker:
        idx = next((n for n, i in enumerate(out) if i.get("id") == q.marker), None)
        if idx is None:
            if not any(i.get("id") == q.marker for i in items):
                raise NotFound(f"{kind.capitalize()} {q.marker} could not be found.",
                               neutron_type=f"{kind.title().replace('_', '')}NotFound")
            out = []
        else:
            out = out[idx + 1:]
    more = False
    if q.limit is not None:
        more = len(out) > q.limit
        out = out[:q.limit]
    if q.page_reverse:
        out = list(reversed(out))
    return out, more


def _sortable(v: Any) -> Any:
    if isinstance(v, (list, dict)):
        return str(v)
    return v if v is not None else ""


def project(item: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    if not fields:
        return item
    return {k: item[k] for k in fields if k in item}


def links(base: str, collection: str, q: ListQuery, page: list[dict[str, Any]], more: bool) -> list[dict[str, str]]:
    """Neutron's pagination links (api_common.get_pagination_links): with a limit, ``next`` unless a
    forward page came back short, ``previous`` unless a reverse page came back short; ``next`` points
    after the page's last item, ``previous`` before its first, in reverse. ``more`` (whether items
    follow) does not enter: Neutron does not know it either."""
    if q.limit is None:
        return []
    keep = [(k, v) for k, v in q.raw if k not in ("marker", "page_reverse")]
    short = len(page) < q.limit
    out = []
    if not (short and not q.page_reverse):
        marker = [("marker", page[-1]["id"])] if page and "id" in page[-1] else []
        out.append({"rel": "next", "href": f"{base}/v2.0/{collection}?" + urlencode([*keep, *marker])})
    if not (short and q.page_reverse):
        marker = [("marker", page[0]["id"])] if page and "id" in page[0] else []
        out.append({"rel": "previous", "href": f"{base}/v2.0/{collection}?" +
                    urlencode([*keep, *marker, ("page_reverse", "True")])})
    return out
