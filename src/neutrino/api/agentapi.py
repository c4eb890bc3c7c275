"""What agent processes ask the server (``neutrino agent``), as Neutron's agents ask over RPC: the
whole cloud to plan from, a long-poll for changes, and a port's status once its plumbing is wired.

Admin only (Neutron's RPC is the agents' and the server's alone): the caller's token is checked as
for the Neutron routes (401 without one, 403 for a non-admin), and errors carry Neutron's
``NeutronError`` body.

    GET /neutrino/v1/snapshot                    -> {"generation": N, "snapshot": {...}}
    GET /neutrino/v1/changes?after=N&timeout=S   -> {"generation": M}, as soon as M > N (or M < N:
                                                    the server started again), else after S seconds
                                                    (at most 60; default 30)
    PUT /neutrino/v1/ports/{id}/status  {"status": "ACTIVE"|"DOWN"}  -> {"port": {...}}

The generation is read before the snapshot, so a change committed while the snapshot is read is
announced again by the next long-poll, never lost. Setting a port's status announces no change (it
is what the agents themselves report). The long-poll waits in a worker thread of its own pool, never
on the event loop, in slices of at most a second; it ends early when its client goes away (an agent
that stopped) or its request is cancelled (a server shutting down), so no thread outlives it long.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from neutrino.api.common import json_response, neutron_error, read_json
from neutrino.errors import InvalidInput
from neutrino.services.cloud import Cloud
from neutrino.services.core import Context
from neutrino.services.wire import snapshot_to_json

MAX_WAIT = 60.0
DEFAULT_WAIT = 30.0
STATUSES = ("ACTIVE", "DOWN")
_SLICE = 1.0


class AgentAPI:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        # long-polls hold a thread each: their own pool, so they never starve anything else's
        self._waiters = anyio.CapacityLimiter(256)

    async def handle(self, request: Request, parts: list[str], ctx: Context) -> Response:
        """``parts`` are the path segments after ``/neutrino``."""
        if parts[:1] != ["v1"] or len(parts) < 2:
            return neutron_error(404, "The resource could not be found.")
        if not ctx.is_admin:
            return neutron_error(403, "rule:context_is_admin is disallowed by policy", "PolicyNotAuthorized")
        rest = parts[1:]
        method = request.method
        if rest == ["snapshot"]:
            if method != "GET":
                return neutron_error(405, "Method not allowed")
            return json_response(await anyio.to_thread.run_sync(self._snapshot))
        if rest == ["changes"]:
            if method != "GET":
                return neutron_error(405, "Method not allowed")
            after, timeout = _wait_args(request)
            return json_response({"generation": await self._long_poll(request, after, timeout)})
        if len(rest) == 3 and rest[0] == "ports" and rest[2] == "status":
            if method != "PUT":
                return neutron_error(405, "Method not allowed")
            body = await read_json(request)
            status = body.get("status") if isinstance(body, dict) else None
            if status not in STATUSES:
                raise InvalidInput(f"Invalid port status {status!r}: expected one of {', '.join(STATUSES)}",
                                   neutron_type="HTTPBadRequest")
            port = await anyio.to_thread.run_sync(self.cloud.set_port_status, rest[1], status)
            return json_response({"port": port})
        return neutron_error(404, "The resource could not be found.")

    def _snapshot(self) -> dict[str, Any]:
        generation = self.cloud.changes.generation  # first: a change made meanwhile is announced again
        return {"generation": generation, "snapshot": snapshot_to_json(self.cloud.snapshot())}

    async def _long_poll(self, request: Request, after: int, timeout: float) -> int:
        """:meth:`_wait` in a worker thread, ended early when the client goes away (an agent that
        stopped) or the request is cancelled (the server stopping)."""
        done = threading.Event()
        out: list[int] = []
        async with anyio.create_task_group() as tg:
            async def wait() -> None:
                try:
                    out.append(await anyio.to_thread.run_sync(self._wait, after, timeout, done,
                                                              abandon_on_cancel=True, limiter=self._waiters))
                finally:
                    done.set()
                tg.cancel_scope.cancel()

            async def watch() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                done.set()
                tg.cancel_scope.cancel()

            tg.start_soon(wait)
            tg.start_soon(watch)
        return out[0] if out else self.cloud.changes.generation

    def _wait(self, after: int, timeout: float, cancelled: threading.Event) -> int:
        feed = self.cloud.changes
        deadline = time.monotonic() + timeout
        while True:
            generation = feed.generation
            left = deadline - time.monotonic()
            if generation != after or left <= 0 or cancelled.is_set():
                return generation
            feed.wait(after, min(left, _SLICE))


def _wait_args(request: Request) -> tuple[int, float]:
    q = request.query_params
    try:
        after = int(q["after"]) if "after" in q else None
    except ValueError:
        raise InvalidInput(f"Invalid value for after: {q['after']!r} is not an integer",
                           neutron_type="HTTPBadRequest") from None
    try:
        timeout = float(q.get("timeout", DEFAULT_WAIT))
    except ValueError:
        raise InvalidInput(f"Invalid value for timeout: {q['timeout']!r} is not a number",
                           neutron_type="HTTPBadRequest") from None
    if not math.isfinite(timeout) or timeout < 0:
        raise InvalidInput(f"Invalid value for timeout: {q['timeout']!r}", neutron_type="HTTPBadRequest")
    if after is None:
        raise InvalidInput("Missing query parameter: after (the last generation seen)",
                           neutron_type="HTTPBadRequest")
    return after, min(timeout, MAX_WAIT)
