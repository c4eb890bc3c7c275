"""``neutrino agent --host NAME --server URL``: one host's agent as its own process, as it would run on
another machine, talking to the server over HTTP only (:mod:`neutrino.api.agentapi`), never to the
database.

It loops as Neutron's OVS agent's ``rpc_loop`` does: wait for the server to announce a change (a
long-poll, ``GET /neutrino/v1/changes``; no polling in between), fetch the whole cloud
(``GET /neutrino/v1/snapshot``, :mod:`neutrino.services.wire`), plan only its own host
(:func:`neutrino.plan.plan_host`), converge that host, then report the status of the ports bound to
it (``PUT /neutrino/v1/ports/{id}/status``: ACTIVE when wired and administratively up, DOWN
otherwise).

Converging is, by backend:

* ``sim`` (default): the host is kept in this process's ``$NEUTRINO_STATE`` when its plan changed
  (:func:`neutrino.store.save_host`), so ``neutrino exec HOST`` answers from it there.
* ``linux`` (root; the cloud brought up with ``neutrino up --backend linux`` in the same
  ``$NEUTRINO_STATE``): the host is kept as above, and when its plan changed (or after a failure) its
  real state is read back, diffed with the plan and only the difference applied, its new instances
  wired and booted (:func:`neutrino.linux.session.sync_host`). No other host is touched.

A pass that fails is logged and sets a resync flag: the next pass, after a short back-off that grows
to 30 seconds, fetches everything again and converges the host whether or not its plan changed. A
server that restarted (its generation went back) is resynced with too. SIGTERM and SIGINT end the
agent cleanly: a long-poll or back-off is cut short, a pass under way is finished first.

Credentials: the admin user of the clouds.yaml entry named by ``--os-cloud`` or ``$OS_CLOUD``, else
the ``OS_*`` variables (``OS_AUTH_URL``, ``OS_USERNAME``, ``OS_PASSWORD``, ``OS_PROJECT_NAME``, ...),
else the ``neutrino`` entry ``neutrino server`` writes. A token is asked for with a plain password
request to ``<auth_url>/v3/auth/tokens`` and asked for again when the server answers 401.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from neutrino import store
from neutrino.errors import InvalidInput, NeutrinoError, NotFound
from neutrino.host.state import HostState
from neutrino.services.snapshot import CloudSnapshot

log = logging.getLogger("neutrino.agent")

POLL = 30.0  # seconds a long-poll waits for a change before it is asked again
MAX_BACKOFF = 30.0
BACKENDS = ("sim", "linux")


class ServerError(NeutrinoError):
    """The server could not be reached, or refused a request."""


class UnknownHost(NotFound):
    """The host this agent was started for is not in the cloud's deployment."""


class Stopped(BaseException):  # noqa: N818 - not an error: the agent was told to end
    """SIGTERM or SIGINT arrived while the agent was waiting."""


# -- credentials --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """Whom the agent authenticates as; ``auth_url`` None: a server without authentication."""

    auth_url: str | None
    username: str = ""
    password: str = ""
    project_name: str = ""
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"


def clouds_yaml_paths(environ: Mapping[str, str]) -> list[Path]:
    """Where the openstack CLI looks for clouds.yaml, in its order."""
    paths = [Path(environ["OS_CLIENT_CONFIG_FILE"])] if environ.get("OS_CLIENT_CONFIG_FILE") else []
    return [*paths, Path("clouds.yaml"), Path.home() / ".config/openstack/clouds.yaml",
            Path("/etc/openstack/clouds.yaml")]


def _cloud_entry(name: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    for path in clouds_yaml_paths(environ):
        if not path.is_file():
            continue
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise InvalidInput(f"{path}: not valid YAML: {e}") from None
        entry = (doc.get("clouds") or {}).get(name) if isinstance(doc, dict) else None
        if isinstance(entry, dict):
            return entry
    return None


def credentials(server: str, cloud: str | None = None,
                environ: Mapping[str, str] | None = None) -> Credentials:
    """The agent's credentials (see the module's docstring for where they are looked for)."""
    env = os.environ if environ is None else environ
    default_auth = f"{server.rstrip('/')}/identity"
    name = cloud or env.get("OS_CLOUD")
    if name is None and (env.get("OS_USERNAME") or env.get("OS_AUTH_TYPE") in ("none", "noauth")):
        if env.get("OS_AUTH_TYPE") in ("none", "noauth"):
            return Credentials(None)
        return Credentials(env.get("OS_AUTH_URL") or default_auth, env["OS_USERNAME"],
                           env.get("OS_PASSWORD", ""),
                           env.get("OS_PROJECT_NAME") or env.get("OS_TENANT_NAME") or "",
                           env.get("OS_USER_DOMAIN_NAME") or "Default",
                           env.get("OS_PROJECT_DOMAIN_NAME") or "Default")
    entry = _cloud_entry(name or "neutrino", env)
    if entry is None:
        where = ", ".join(str(p) for p in clouds_yaml_paths(env))
        raise NotFound(f"no cloud {name or 'neutrino'!r} in clouds.yaml ({where}) and no OS_* credentials: "
                       "give --os-cloud NAME, or OS_AUTH_URL, OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME")
    if str(entry.get("auth_type", "password")) in ("none", "noauth"):
        return Credentials(None)
    auth = entry.get("auth") or {}
    if not auth.get("username"):
        raise InvalidInput(f"cloud {name or 'neutrino'!r}: only password authentication (auth.username, "
                           "auth.password) is understood")
    return Credentials(str(auth.get("auth_url") or default_auth), str(auth["username"]),
                       str(auth.get("password", "")),
                       str(auth.get("project_name") or auth.get("tenant_name") or ""),
                       str(auth.get("user_domain_name") or "Default"),
                       str(auth.get("project_domain_name") or "Default"))


# -- the server, over HTTP ----------------------------------------------------------------------


class Server:
    """The server's agents' API, over HTTP (the standard library's client)."""

    def __init__(self, url: str, creds: Credentials, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.creds = creds
        self.timeout = timeout
        self._token: str | None = None

    def snapshot(self) -> tuple[int, CloudSnapshot]:
        """The generation the server is at, and the cloud as it is (at least that new)."""
        from neutrino.services.wire import snapshot_from_json

        doc = self._call("GET", "/neutrino/v1/snapshot")
        return int(doc["generation"]), snapshot_from_json(doc["snapshot"])

    def changes(self, after: int, timeout: float) -> int:
        """The server's generation once it differs from ``after``, or after ``timeout`` seconds."""
        doc = self._call("GET", f"/neutrino/v1/changes?after={after}&timeout={timeout:g}",
                         timeout=timeout + 15)
        return int(doc["generation"])

    def set_port_status(self, port_id: str, status: str) -> None:
        """Report a port's status; a port deleted meanwhile is left alone (as ML2's
        ``update_port_status`` does: the next pass works from a newer snapshot)."""
        with contextlib.suppress(_Gone):
            self._call("PUT", f"/neutrino/v1/ports/{port_id}/status", {"status": status})

    # -- plumbing --

    def token(self) -> str | None:
        c = self.creds
        if c.auth_url is None:
            return None
        if self._token is None:
            base = c.auth_url.rstrip("/")
            url = f"{base}/auth/tokens" if base.endswith("/v3") else f"{base}/v3/auth/tokens"
            body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain_name}, "password": c.password}}},
                "scope": {"project": {"name": c.project_name, "domain": {"name": c.project_domain_name}}}}}
            _, headers = self._send("POST", url, body, None, self.timeout)
            token = headers.get("X-Subject-Token")
            if not token:
                raise ServerError(f"POST {url}: no X-Subject-Token in the answer")
            self._token = token
        return self._token

    def _call(self, method: str, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        for attempt in (1, 2):
            try:
                raw, _ = self._send(method, self.url + path, body, self.token(), timeout or self.timeout)
            except _Unauthorized:
                if attempt == 2 or self.creds.auth_url is None:
                    raise ServerError(f"{method} {path}: 401: the server refused this agent's token"
                                      ) from None
                self._token = None  # expired, or the server started again (its tokens live in memory)
                continue
            return json.loads(raw) if raw else None
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, body: Any, token: str | None, timeout: float
              ) -> tuple[bytes, Mapping[str, str]]:
        headers = {"Accept": "application/json", "User-Agent": "neutrino-agent"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["X-Auth-Token"] = token
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            if e.code == 401 and token is not None:
                raise _Unauthorized from None
            if e.code == 404:
                raise _Gone(f"{method} {url}: 404 {_message(e.read())}") from None
            raise ServerError(f"{method} {url}: {e.code} {_message(e.read())}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise ServerError(f"{method} {url}: {reason}") from None


class _Unauthorized(Exception):
    pass


class _Gone(ServerError):
    """The server has no such object (a 404)."""


def _message(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:300]
    for key in ("NeutronError", "error"):
        if isinstance(doc, dict) and isinstance(doc.get(key), dict):
            return str(doc[key].get("message", doc[key]))
    return str(doc)[:300]


# -- the agent ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pass:
    """What one pass did."""

    generation: int
    replanned: bool  # the host's plan changed (kept again)
    linux: tuple[str, ...]  # what the Linux backend changed, one line each
    ports: int  # ports whose status was reported changed
    seconds: float


class HostAgent:
    """One host's agents (L2, firewall, L3, DHCP, as its plan has them), fed by the server over HTTP."""

    def __init__(self, server: Server, host: str, *, backend: str = "sim", state: Path | None = None,
                 poll: float = POLL) -> None:
        if backend not in BACKENDS:
            raise InvalidInput(f"unknown backend {backend!r}: {' or '.join(BACKENDS)}")
        self.server = server
        self.host = host
        self.backend = backend
        self.state = state or store.state_dir()
        self.poll = poll
        self.stop = threading.Event()
        self.resync = True
        self.generation = -1  # the last generation converged (-1: none yet)
        self.last: Pass | None = None
        self.failures = 0
        self._kept: HostState | None = None
        self._interruptible = False

    # -- stopping --

    def interrupt(self) -> None:
        """End the agent (from a signal handler): a wait is cut short, a pass is let finish."""
        self.stop.set()
        if self._interruptible:
            raise Stopped

    def _waiting(self, fn: Any, *args: Any) -> Any:
        self._interruptible = True
        try:
            if self.stop.is_set():
                raise Stopped
            return fn(*args)
        finally:
            self._interruptible = False

    # -- the loop --

    def run(self, *, once: bool = False) -> int:
        """Converge until stopped (0); with ``once``, one pass: 0 when it converged, 1 when it failed."""
        backoff = 1.0
        try:
            while not self.stop.is_set():
                try:
                    if not self.resync and self.generation >= 0 and not self._changed():
                        continue
                    p = self.run_once()
                except (Stopped, UnknownHost):
                    raise
                except Exception as exc:  # noqa: BLE001 - an agent survives a failed pass and resyncs
                    self.resync = True
                    self.failures += 1
                    log.error("%s: pass failed, resyncing on the next one: %s: %s", self.host,
                              type(exc).__name__, exc)
                    log.debug("the failure", exc_info=True)
                    if once:
                        return 1
                    self._waiting(self.stop.wait, backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                backoff = 1.0
                log.info("%s: converged generation %d in %.2f s%s%s%s", self.host, p.generation, p.seconds,
                         "; plan changed" if p.replanned else "",
                         f"; {len(p.linux)} change(s) applied" if p.linux else "",
                         f"; {p.ports} port status(es) reported" if p.ports else "")
                for line in p.linux:  # already "host: command" or "instance NAME: ..."
                    log.info("  %s", line)
                if once:
                    return 0
        except Stopped:
            pass
        log.info("%s: stopped", self.host)
        return 0

    def _changed(self) -> bool:
        """Wait for the server to announce a change; whether there is one to converge."""
        generation = self._waiting(self.server.changes, self.generation, self.poll)
        if generation < self.generation:
            log.warning("%s: the server's generation went back (%d < %d): it started again; resyncing",
                        self.host, generation, self.generation)
            self.resync = True
        return bool(generation != self.generation)

    def run_once(self) -> Pass:
        """Fetch the cloud and converge this host to it."""
        generation, snap = self.server.snapshot()
        return self.converge(generation, snap)

    # -- one pass --

    def converge(self, generation: int, snap: CloudSnapshot) -> Pass:
        from neutrino.agent import wired_status
        from neutrino.plan import plan_host

        started = time.perf_counter()
        if snap.deployment.host(self.host) is None:
            names = ", ".join(h.name for h in snap.deployment.hosts)
            raise UnknownHost(f"host {self.host!r} is not in the cloud's deployment (its hosts: {names})")
        planned = plan_host(snap, self.host)
        kept = self._kept if self._kept is not None and not self.resync else self._load_kept()
        replanned = kept != planned
        if replanned:
            store.save_host(planned)
            from neutrino import worldkeep

            worldkeep.invalidate(self.state)
        self._kept = planned
        linux: tuple[str, ...] = ()
        if self.backend == "linux" and (replanned or self.resync):
            from neutrino.linux import session

            linux = tuple(session.sync_host(self.state, snap, planned))
        mine = {p.id for p in snap.ports_on_host(self.host)}
        by_id = {p.id: p for p in snap.ports}
        reported = 0
        for pid, want in wired_status(snap, (planned,)).items():
            if pid in mine and by_id[pid].status != want:
                self.server.set_port_status(pid, want)
                reported += 1
        self.resync = False
        self.generation = generation
        self.last = Pass(generation, replanned, linux, reported, time.perf_counter() - started)
        return self.last

    def _load_kept(self) -> HostState | None:
        try:
            return store.load_host(self.host)
        except (NeutrinoError, OSError):
            return None  # not kept yet, or unreadable: kept again


# -- the command --------------------------------------------------------------------------------


def main(host: str, server: str, *, backend: str = "sim", once: bool = False, os_cloud: str | None = None,
         poll: float = POLL, log_level: str = "info") -> int:
    """``neutrino agent``: run one host's agent until SIGTERM or SIGINT (or one pass with ``once``)."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not server.startswith(("http://", "https://")):
        raise InvalidInput(f"--server {server!r}: expected a URL such as http://192.0.2.1:9696")
    if not 0 < poll <= 60:
        raise InvalidInput("--poll must be more than 0 and at most 60 seconds")
    state = store.state_dir()
    if backend == "linux":
        from neutrino.linux import session

        if os.geteuid() != 0:
            raise InvalidInput("the Linux backend needs root (it builds namespaces, OVS and iptables)")
        if not session.is_up(state):
            raise NotFound(f"no cloud is up on the Linux backend in {state} (neutrino up --backend linux "
                           "with this NEUTRINO_STATE)")
    agent = HostAgent(Server(server, credentials(server, os_cloud)), host, backend=backend, state=state,
                      poll=poll)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.interrupt()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("%s: agent started (backend %s, server %s, state %s)", host, backend, server, state)
        return agent.run(once=once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
