"""Run OpenStack's own API tests (Tempest's ``tempest.api.network``, optionally neutron-tempest-plugin's
``neutron_tempest_plugin.api``) against a fresh ``neutrino server`` with dynamic credentials.

    make tempest                                   # tempest.api.network
    .venv/bin/python bench/tempest/run.py --plugin # and neutron_tempest_plugin.api
    .venv/bin/python bench/tempest/run.py --regex 'tempest.api.network.test_ports'
    .venv/bin/python bench/tempest/run.py --plugin --filter 'port_forwarding|rbac' --results /tmp/r

What it does, outside the default test command:
  1. makes its own virtualenv (``bench/tempest/.venv``, git-ignored) with the pinned ``tempest`` and
     ``neutron-tempest-plugin`` from PyPI, once;
  2. starts ``neutrino server --auth keystone`` on a free loopback port with a temporary state folder
     and a scenario of its own (one all-in-one host, an admin user), and creates the external network
     the floating IP tests use;
  3. writes tempest.conf for dynamic credentials (Tempest's admin creates a project, a user and their
     network per test class through neutrino's Keystone), the identity v3 endpoint, and the extensions
     the server lists;
  4. runs ``tempest run`` with a bound on the whole run (``--timeout``) and on each test;
  5. prints pass/fail/skip counts and the failing test ids, and keeps them in
     ``bench/tempest/results/<suite>.txt`` (small: counts and ids only; the full subunit stream and the
     server log stay in the temporary folder, kept with ``--keep``). Exit status 1 when a run gave no
     results or hit the time bound (``--strict``: also when a test failed).

The scenario serves Nova too (``service_available.nova``), so the port-binding tests that need a
compute host run; extensions are exactly those the server lists at ``/v2.0/extensions``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PINS = ["tempest==47.0.0", "neutron-tempest-plugin==3.3.0"]
NETWORK = r"^tempest\.api\.network\."
PLUGIN = r"^neutron_tempest_plugin\.api\."

SCENARIO = """\
name: tempest
deployment: {mechanism: ml2_ovs, tenant_network_types: [vxlan], vni_ranges: ["1:4000"], flat_networks: [public],
             network_vlan_ranges: ["physnet1:100:200"], firewall_driver: iptables_hybrid, generation: modern}
hosts:
  - {name: controller, roles: [controller, network, compute], management_ip: 10.0.0.1, tunnel_ip: 10.0.0.1,
     bridge_mappings: {public: br-ex, physnet1: br-vlan}}
identity:
  region: RegionOne
  projects: [admin]
  users:
    - {name: admin, password: secret, project: admin, roles: [admin, member, reader]}
"""


def log(msg: str) -> None:
    print(f"[tempest-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_venv(venv: Path) -> None:
    """The Tempest virtualenv, made once (a stamp file records the pins it holds)."""
    stamp = venv / ".tempest-pins"
    if stamp.is_file() and stamp.read_text().split() == PINS:
        return
    log(f"making {venv} with {' '.join(PINS)} (a few minutes, once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *PINS], check=True)
    stamp.write_text("\n".join(PINS) + "\n")


def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Neutrino:
    """A ``neutrino server`` in a state folder of its own."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        scenario = tmp / "tempest.yaml"
        scenario.write_text(SCENARIO)
        self.log = tmp / "server.log"
        cmd = [sys.executable, "-m", "neutrino.api.serve", "--port", str(self.port), "--auth", "keystone",
               "--scenario", str(scenario), "--clouds-yaml", str(tmp / "clouds.yaml"), "--log-level", "warning"]
        env = dict(os.environ, NEUTRINO_STATE=str(tmp / "state"))
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"neutrino server exited early:\n{self.log.read_text()}")
            try:
                return httpx.get(self.base + "/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, 60, "neutrino server to answer")

    def token(self) -> str:
        r = httpx.post(f"{self.base}/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": "secret"}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
        r.raise_for_status()
        return r.headers["X-Subject-Token"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def public_network(srv: Neutrino, token: str) -> tuple[str, list[str]]:
    """The external network floating IPs come from, and the extension aliases the server lists."""
    with httpx.Client(base_url=f"{srv.base}/v2.0", headers={"X-Auth-Token": token}, timeout=30) as c:
        r = c.post("/networks", json={"network": {"name": "public", "router:external": True, "shared": False,
                                                  "provider:network_type": "flat",
                                                  "provider:physical_network": "public"}})
        r.raise_for_status()
        net = r.json()["network"]["id"]
        r = c.post("/subnets", json={"subnet": {"name": "public-subnet", "network_id": net, "ip_version": 4,
                                                "cidr": "172.24.4.0/22", "gateway_ip": "172.24.4.1",
                                                "enable_dhcp": False}})
        r.raise_for_status()
        aliases = [e["alias"] for e in c.get("/extensions").json()["extensions"]]
    return net, aliases


def tempest_conf(srv: Neutrino, public_net: str, aliases: list[str], lock_dir: Path) -> str:
    exts = ",".join(aliases)
    return f"""\
[DEFAULT]
log_file = tempest.log
use_stderr = false

[oslo_concurrency]
lock_path = {lock_dir}

[auth]
use_dynamic_credentials = true
create_isolated_networks = true
admin_username = admin
admin_password = secret
admin_project_name = admin
admin_domain_name = Default
default_credentials_domain_name = Default
tempest_roles = member

[identity]
uri_v3 = {srv.base}/identity/v3
auth_version = v3
region = RegionOne
v3_endpoint_type = public
admin_domain_scope = false
disable_ssl_certificate_validation = true

[identity-feature-enabled]
api_v2 = false
api_v3 = true
domain_specific_drivers = false
security_compliance = false
project_tags = false
application_credentials = false
access_rules = false

[service_available]
neutron = true
nova = true
glance = false
cinder = false
swift = false
horizon = false

[network]
catalog_type = network
region = RegionOne
endpoint_type = publicURL
public_network_id = {public_net}
floating_network_name = public
project_network_cidr = 10.100.0.0/16
project_network_mask_bits = 28
project_network_v6_cidr = 2001:db8::/48
project_network_v6_mask_bits = 64
project_networks_reachable = false
shared_physical_network = false
build_timeout = 60
build_interval = 1

[network-feature-enabled]
api_extensions = {exts}
ipv6 = true
ipv6_subnet_attributes = true
port_security = true
floating_ips = true

[neutron_plugin_options]
available_type_drivers = flat,vlan,vxlan
provider_vlans = physnet1
create_shared_resources = false
agent_availability_zone = nova
is_igmp_snooping_enabled = false

[compute-feature-enabled]
api_extensions =

[validation]
run_validation = false

[debug]
trace_requests =
"""


def counts_of(rows: list[tuple[str, str]]) -> dict[str, int]:
    out = {"passed": 0, "failed": 0, "skipped": 0}
    for _, status in rows:
        key = {"success": "passed", "skip": "skipped", "xfail": "passed"}.get(status, "failed")
        out[key] += 1
    return out


def results(venv: Path, work: Path) -> list[tuple[str, str]]:
    """(test id, status) from the last stestr run, class-level fixture errors included."""
    stream = subprocess.run([str(venv / "bin" / "stestr"), "last", "--subunit"], cwd=work, capture_output=True,
                            check=False).stdout
    table = subprocess.run([str(venv / "bin" / "subunit2csv")], input=stream, capture_output=True,
                           check=False).stdout.decode()
    rows: dict[str, str] = {}
    for rec in csv.DictReader(io.StringIO(table)):
        test = rec["test"].split("[", 1)[0]
        if rec["status"] in ("exists", "inprogress", ""):
            continue
        rows[test] = rec["status"]
    return sorted(rows.items())


def run_suite(venv: Path, work: Path, regex: str, concurrency: int, timeout: float, test_timeout: int) -> bool:
    """``tempest run`` in ``work``; False when it was cut at ``timeout``."""
    env = dict(os.environ, OS_TEST_TIMEOUT=str(test_timeout), TEMPEST_CONFIG_DIR=str(work / "etc"),
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(venv / "bin" / "tempest"), "run", "--regex", regex, "--concurrency", str(concurrency)]
    log(f"{' '.join(cmd)} (bound {timeout:.0f}s, {test_timeout}s a test)")
    out = (work / "tempest-run.out").open("wb")
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        log("time bound reached: stopping the run (counts are of the tests that finished)")
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return False


def report(name: str, rows: list[tuple[str, str]], finished: bool, seconds: float, out: Path) -> str:
    c = counts_of(rows)
    total = sum(c.values())
    lines = [f"# {name}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped of {total} "
             f"in {seconds:.0f}s" + ("" if finished else " (cut at the time bound)")]
    lines += ["", "## failed"] + [t for t, s in rows if s not in ("success", "skip", "xfail")]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def filtered(suite: str, extra: str) -> str:
    """A regex selecting the tests of ``suite`` whose id also matches ``extra`` somewhere (stestr
    searches each id; both are lookaheads from the start, so a ``^`` in either still anchors)."""
    return f"^(?=.*(?:{suite}))(?=.*(?:{extra}))"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()) if __doc__ else None)
    p.add_argument("--regex", help=f"tests to run (default {NETWORK})")
    p.add_argument("--plugin", action="store_true", help=f"also run {PLUGIN} (a second, separate run)")
    p.add_argument("--filter", metavar="REGEX",
                   help="run only the tests of each selected suite whose id matches REGEX anywhere (e.g. "
                        "'test_port_forwarding|rbac'); the results are kept as <suite>-filtered.txt")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--timeout", type=float, default=2400, help="bound on each suite's run, seconds")
    p.add_argument("--test-timeout", type=int, default=180, help="bound on one test, seconds")
    p.add_argument("--venv", type=Path, default=Path(os.environ.get("TEMPEST_VENV", HERE / ".venv")))
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, subunit)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a test failed (default: only when a run "
                                                         "gave no results or was cut at the time bound)")
    args = p.parse_args(argv)
    for opt in ("regex", "filter"):
        try:
            re.compile(getattr(args, opt) or "")
        except re.error as e:
            p.error(f"--{opt}: not a regular expression: {e}")

    ensure_venv(args.venv)
    suites = [("custom" if args.regex else "tempest.api.network", args.regex or NETWORK)]
    if args.plugin:
        suites.append(("neutron_tempest_plugin.api", PLUGIN))
    if args.filter:
        suites = [(f"{name}-filtered", filtered(regex, args.filter)) for name, regex in suites]
    tmp = Path(tempfile.mkdtemp(prefix="neutrino-tempest-"))
    log(f"working in {tmp}")
    failed_any = False
    try:
        for name, regex in suites:
            # a fresh server and workspace per suite: one suite's leftovers do not count against the next
            base = tmp / name
            base.mkdir()
            srv = Neutrino(base)
            try:
                net, aliases = public_network(srv, srv.token())
                work = base / "workspace"
                subprocess.run([str(args.venv / "bin" / "tempest"), "init", "--name", f"{tmp.name}-{name}",
                                "--workspace-path", str(base / "workspaces.yaml"), str(work)], check=True,
                               capture_output=True)
                (work / "etc" / "tempest.conf").write_text(tempest_conf(srv, net, aliases, base / "locks"))
                start = time.monotonic()
                finished = run_suite(args.venv, work, regex, args.concurrency, args.timeout, args.test_timeout)
                rows = results(args.venv, work)
                text = report(name, rows, finished, time.monotonic() - start, args.results / f"{name}.txt")
                print(text, flush=True)
                failed_any |= not rows or not finished or (
                    args.strict and any(s not in ("success", "skip", "xfail") for _, s in rows))
            finally:
                srv.stop()
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main())
