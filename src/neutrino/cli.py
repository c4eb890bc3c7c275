"""The ``neutrino`` command: one line over the library for each subcommand.

Errors print as one line on stderr and exit with status 2 (bad input) or 1 (anything else
neutrino refused); a traceback is a bug.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from neutrino.errors import InvalidInput, NeutrinoError, NotFound

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _cmd_import(args: argparse.Namespace) -> int:
    import json

    from neutrino import store

    done = store.import_hosts(args.directory, args.host, replace=args.replace)
    summaries = []
    for state in done.hosts:
        flows = sum(len(b.flows.flows) for b in state.ovs.bridges if b.flows is not None)
        rules = sum(len(t.rules) for ns in state.namespaces if ns.iptables for t in ns.iptables.tables)
        summaries.append({"host": state.name, "namespaces": len(state.namespace_names()),
                          "bridges": len(state.ovs.bridges), "flows": flows, "iptables_rules": rules,
                          "partial": list(state.partial)})
    if args.json:
        doc: dict[str, object] = dict(summaries[0]) if len(summaries) == 1 else {
            "deployment": done.deployment, "hosts": summaries}
        doc["notes"] = list(done.notes)
        print(json.dumps(doc, indent=1))
        return 0
    for s in summaries:
        cut = f"; partial captures: {', '.join(s['partial'])}" if s["partial"] else ""  # type: ignore[arg-type]
        print(f"imported host {s['host']}: {s['namespaces']} namespaces, {s['bridges']} bridges with flows "
              f"({s['flows']} flows), {s['iptables_rules']} iptables rules{cut}")
    for note in done.notes:
        print(f"  note: {note}")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    script = pathlib.Path(__file__).resolve().parents[2] / "tools" / "neutrino-collect"
    if not script.is_file():
        raise NotFound(f"{script}: the collect script is not installed with this copy of neutrino")
    if args.print_script:
        sys.stdout.write(script.read_text())
    else:
        print(script)
    return 0


def _cmd_exec(args: argparse.Namespace) -> int:
    import io

    from neutrino import store
    from neutrino.ingest.commands import parse_command
    from neutrino.views.answer import answer

    words = list(args.command)
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise NotFound("no command given: neutrino exec HOST -- COMMAND")
    text = words[0] if len(words) == 1 else " ".join(_quote(w) for w in words)
    if args.real:
        from neutrino.linux import session

        err = io.StringIO()
        sys.stdout.write(session.exec_real(args.host, text, store.state_dir(), stderr=err))
        sys.stdout.flush()
        sys.stderr.write(err.getvalue())
        return 0
    err = io.StringIO()  # what the tool writes to stderr (tcpdump's and conntrack's counts) comes after its output
    out = answer(store.load_host(args.host), parse_command(text), stderr=err)
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err.getvalue())
    return 0


def _quote(word: str) -> str:
    import shlex

    return word if word == "|" else shlex.quote(word)


def _cmd_hosts(args: argparse.Namespace) -> int:
    import json

    from neutrino import store

    names = store.list_hosts()
    if args.json:
        print(json.dumps(names))
        return 0
    for name in names:
        print(name)
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from neutrino import store
    from neutrino.views.explain import explain, explain_json
    from neutrino.views.terminal import use_colour

    host = store.load_host(args.host)
    cloud = None
    if args.name == "routes" or args.ns is not None or host.namespace(args.name) is not None:
        from neutrino.deploy import holds_cloud, open_cloud

        if host.origins and holds_cloud(store.state_dir()):  # a planned host: its cloud names the objects
            snap = open_cloud(store.state_dir()).snapshot()
            cloud = snap if any(h.name == host.name for h in snap.deployment.hosts) else None
    if args.json:
        sys.stdout.write(explain_json(host, args.name, cloud, namespace=args.ns) + "\n")
    else:
        sys.stdout.write(explain(host, args.name, cloud, namespace=args.ns, colour=use_colour(sys.stdout)))
    return 0


def _cmd_easyovs(args: argparse.Namespace) -> int:
    from neutrino import store
    from neutrino.views.easyovs import run

    text, status = run(store.load_host(args.host), args.words, as_json=args.json, colour=sys.stdout.isatty())
    sys.stdout.write(text)
    return status


def _cmd_diagram(args: argparse.Namespace) -> int:
    from neutrino import store
    from neutrino.views.diagram import diagram_dot, render

    names = args.host or store.list_hosts()
    fmt = args.format or (pathlib.Path(args.output).suffix.lstrip(".") if args.output else "dot") or "dot"
    if fmt not in ("dot", "svg", "png"):
        raise InvalidInput(f"unknown diagram format {fmt!r}: dot, svg or png")
    traces = []
    for src, dst in args.trace or ():
        trace = _world(args).probe(src, dst, proto=args.proto, dport=args.dport)
        port = f" port {args.dport}" if args.proto in ("tcp", "udp", "http") else ""
        traces.append((f"{src} -> {dst} {args.proto}{port}", trace))
    dot = diagram_dot([store.load_host(n) for n in names], traces)
    data = dot.encode() if fmt == "dot" else render(dot, fmt)
    if args.output:
        pathlib.Path(args.output).write_bytes(data)
        drawn = f", {len(traces)} traces" if traces else ""
        print(f"wrote {args.output} ({fmt}, {len(names)} hosts{drawn})", file=sys.stderr)
    elif fmt == "png" and sys.stdout.isatty():
        raise InvalidInput("a PNG is not for a terminal: give -o FILE.png")
    else:
        sys.stdout.buffer.write(data)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Seed 000's story, told with the commands a user types: the cloud made, its plumbing, the
    instance's way out letter by letter, why the outside cannot reach it on tcp/23 (and the fix,
    checked), who reaches whom, and the seed author's own captures explained."""
    from neutrino import store
    from neutrino.views.explain import explain_flows

    def run(*argv: str, shown: str = "") -> int:
        print(f"\n$ neutrino {shown or ' '.join(argv)}", flush=True)
        rc = main(list(argv))
        sys.stdout.flush()
        return rc

    scenario = EXAMPLES / "seed000.yaml"
    print("== seed 000, 'Networking in too much detail': GRE, a network host and a compute host")
    # the main job runs again and again in one folder: --replace
    if run("up", "--replace", str(scenario), shown=f"up --replace {scenario.relative_to(EXAMPLES.parent)}"):
        raise NeutrinoError("the demo's cloud did not come up")
    compute = store.load_host("compute")
    tap = next(lk.name for ns in compute.namespaces for lk in ns.links or () if lk.name.startswith("tap"))
    print("\n== the plumbing the agents built, as the seed's author printed it")
    run("exec", "compute", "--", f"iptables -S | grep {tap}")
    run("explain", "compute", "br-tun")
    network = store.load_host("network")
    router = next(n for n in network.namespace_names() if n.startswith("qrouter-"))
    run("exec", "network", "--", f"ip netns exec {router} iptables -t nat -S | grep 172.24.4.228")
    print("\n== the instance's way out to the internet, letter by letter (the seed's diagram: A..P)")
    run("trace", "cirros", "8.8.8.8", "--level", "minimal")
    print("\n== the seed's group lets tcp/22 in but not tcp/23: why, and what would change it")
    run("diagnose", "outside", "172.24.4.228", "--proto", "tcp", "--dport", "23")
    print("\n== who reaches whom: every instance, router and the outside, per protocol")
    run("matrix", "--no-hosts")
    print("\n== the same seed's own captures, imported: what the author's hosts printed")
    state = store.import_host(EXAMPLES / "captures" / "seed000-network", "seed000-network")
    print("$ neutrino import examples/captures/seed000-network --host seed000-network")
    print("$ neutrino explain seed000-network br-tun")
    br = state.ovs.flows_of("br-tun")
    assert br is not None and br.flows is not None
    sys.stdout.write(explain_flows(br.flows, "br-tun", br.ports))
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    import json
    import os

    from neutrino import store
    from neutrino.deploy import bring_up, failed_builds, open_cloud
    from neutrino.views.terminal import Progress, instance_table, instances_of, use_colour

    if args.backend == "linux" and os.geteuid() != 0:
        raise InvalidInput("the Linux backend needs root (it builds namespaces, OVS and iptables)")
    progress = Progress("up")
    with progress.stage("cloud made through the API, hosts planned"):
        result = bring_up(args.scenario, replace=args.replace, db=args.db)
    leases: dict[str, str | None] = {}
    built = 0.0
    if args.backend == "linux":
        from neutrino.linux import session

        with progress.stage("built for real (namespaces, OVS, iptables, guests)"):
            guests = session.guests_for(result.cloud, result.hosts)
            realized = session.up(result.hosts, result.cloud.deployment, guests, store.state_dir())
            leases = dict(realized.leases())
        built = realized.timings.get("up", 0)
    hosts = []
    for h in result.hosts:
        flows = sum(len(b.flows.flows) for b in h.ovs.bridges if b.flows is not None)
        rules = sum(len(t.rules) for ns in h.namespaces if ns.iptables for t in ns.iptables.tables)
        hosts.append({"name": h.name, "namespaces": len(h.namespace_names()), "flows": flows, "iptables_rules": rules})
    instances = instances_of(open_cloud(store.state_dir()).snapshot())
    if args.json:
        doc: dict[str, object] = {"scenario": str(args.scenario), "backend": args.backend, "hosts": hosts,
                                  "instances": instances}
        if args.backend == "linux":
            doc["leases"] = leases
        print(json.dumps(doc, indent=1))
        return 0
    colour = use_colour(sys.stdout)
    if args.backend == "linux":
        print(f"built for real in {built:.1f} s: "
              + ", ".join(f"{k} {v or 'no lease'}" for k, v in sorted(leases.items())))
    for h in hosts:
        print(f"host {h['name']}: {h['namespaces']} namespaces, {h['flows']} flows, {h['iptables_rules']} iptables rules")
    print()
    sys.stdout.write(instance_table(instances, colour=colour))
    for name, message in failed_builds(store.state_dir()).items():
        print(f"{name}: ERROR, its build failed: {message}")
    print("\nask with: neutrino exec HOST -- COMMAND" + ("  (real tools: --real)" if args.backend == "linux" else ""))
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    from neutrino import store
    from neutrino.linux import session

    for line in session.sync(store.state_dir()):
        print(line)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from neutrino import store
    from neutrino.linux import session

    print("removed the Linux backend's cloud" if session.tear_down(store.state_dir()) else "nothing was up")
    return 0


def _cmd_failover(args: argparse.Namespace) -> int:
    """Stop an HA router's master keepalived (or, --restore, start the stopped ones again) on the
    current backend, let VRRP elect, record the new master's ha_state and re-plan."""
    import ipaddress

    from neutrino import deploy, store, worldkeep
    from neutrino.errors import NotFound
    from neutrino.linux import session
    from neutrino.plan.l3_ha import master_of
    from neutrino.services import l3_ha
    from neutrino.sim import vrrp

    state = store.state_dir()
    if not deploy.holds_cloud(state):
        raise NotFound("no cloud here: run 'neutrino up SCENARIO' first")
    cloud = deploy.open_cloud(state)
    snap = cloud.snapshot()
    router = next((r for r in snap.routers if args.router in (r.id, r.name)), None)
    if router is None:
        raise NotFound(f"router {args.router} not found")
    if not router.ha:
        raise InvalidInput(f"router {router.name or router.id} is not an HA router (ha: false)")
    linux = session.is_up(state)
    stopped = vrrp.load_stopped(state)
    down = set(stopped.get(router.id, ()))
    current = master_of(router)
    if args.restore:
        if not down:
            raise InvalidInput(f"no keepalived of router {router.name or router.id} is stopped")
        changed, down = sorted(down), set()  # on the Linux backend, the sync below starts them
    else:
        if current is None or current in down:
            raise InvalidInput(f"router {router.name or router.id} has no master to stop")
        changed = [current]
        down.add(current)
        if linux:
            from neutrino.linux import keepalived
            keepalived.stop(state, router.id, current)
    ha_ports = {b.host: snap.port(b.ha_port_id or "") for b in router.bindings}
    worlds: list[object] = []

    def reaches(a: str, b: str) -> bool:
        """Whether host a's keepalived hears host b's: a's ha- device ARPs for b's address in the
        simulator and the answer comes back."""
        from neutrino.plan.naming import ha_device

        pa, pb = ha_ports[a], ha_ports[b]
        if not pa.fixed_ips or not pb.fixed_ips:
            return False
        if not worlds:
            worlds.append(worldkeep.booted_world(state))
        trace = worlds[0].probe(  # type: ignore[attr-defined]
            str(pa.fixed_ips[0].ip_address), str(pb.fixed_ips[0].ip_address), proto="arp",
            at=f"{a}:br-int:{ha_device(pa.id)}", src_mac=pa.mac_address)
        return bool(trace.answered)

    instances = []
    for b in router.bindings:
        port = ha_ports[b.host]
        addr = ipaddress.IPv4Address(str(port.fixed_ips[0].ip_address)) if port.fixed_ips else \
            ipaddress.IPv4Address(0)
        instances.append(vrrp.Instance(b.host, addr, running=b.host not in down))
    if linux:
        new = vrrp.elect(instances, None if current in down else current)
        if not args.restore and new is not None:  # the real election: wait for a backup's MASTER
            from neutrino.linux import keepalived
            new = keepalived.wait_master(state, router.id, [i.host for i in instances if i.running])
        holders = [new] if new else []
    else:  # the simulator: who hears whom over the HA network (an ARP between the ha- devices)
        holders = vrrp.masters(instances, None if current in down else current, reaches)
        new = holders[0] if holders else None
    stopped[router.id] = sorted(down)
    vrrp.save_stopped(state, stopped)
    with cloud.write(cloud.admin_context()) as tx:
        l3_ha.set_ha_states(tx, router.id, holders)
    if linux:
        session.sync(state)
    else:
        deploy.replan(state)
    worldkeep.invalidate(state)
    name = router.name or router.id
    verb = "started" if args.restore else "stopped"
    print(f"router {name}: keepalived {verb} on {', '.join(changed)}")
    print(f"router {name}: master {new}" if new else f"router {name}: no master (no keepalived runs)")
    if len(holders) > 1:
        verbs = ("hears", "holds") if len(holders) == 2 else ("hear", "hold")
        print(f"router {name}: split brain: {', '.join(holders[1:])} {verbs[0]} no master over the HA network "
              f"and {verbs[1]} the VIPs too")
    for b in router.bindings:
        state_of = "active" if b.host in holders else "standby"
        print(f"  {b.host}: {state_of}{' (keepalived stopped)' if b.host in down else ''}")
    return 0



def _cmd_console(args: argparse.Namespace) -> int:
    import os

    from neutrino import store
    from neutrino.linux import session

    argv = session.console_argv(args.server, store.state_dir())
    os.execvp(argv[0], argv)
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    import tempfile

    from neutrino.deploy import bring_up
    from neutrino.views.export import captures_of

    with tempfile.TemporaryDirectory(prefix="neutrino-plan-") as tmp:
        result = bring_up(args.scenario, state=pathlib.Path(tmp), keep=False)
    if args.host and all(h.name != args.host for h in result.hosts):
        raise NotFound(f"no host {args.host!r} in {args.scenario} (hosts: "
                       f"{', '.join(h.name for h in result.hosts)})")
    if args.json:
        import json

        print(json.dumps({h.name: dict(captures_of(h)) for h in result.hosts
                          if not args.host or h.name == args.host}, indent=1))
        return 0
    for h in result.hosts:
        if args.host and h.name != args.host:
            continue
        print(f"==================== host {h.name}")
        for command, text in captures_of(h):
            print(f"# {command}")
            sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def _world(args: argparse.Namespace | None = None):  # type: ignore[no-untyped-def]
    """The world the command traces in: the cloud's, or the imported hosts' (read from their
    captures alone) when asked (``--imported``) or when the state folder holds imported hosts and
    no cloud. ``--assume`` is what a trace may take for state that was not captured."""
    from neutrino import store, worldkeep

    assume = list(getattr(args, "assume", None) or ())
    if worldkeep.uses_imported(store.state_dir(), bool(getattr(args, "imported", False))):
        return worldkeep.imported_world(store.state_dir(), assume)
    if assume:
        raise InvalidInput("--assume is for an imported deployment (neutrino import): a planned cloud "
                           "has every piece of its hosts")
    return worldkeep.booted_world(store.state_dir())


def _unbuilt(error: InvalidInput, *names: str) -> InvalidInput:
    """``error`` (a probe refused a name), or, when the name it refused (quoted in its message) is a
    server whose build failed, why it has nothing to trace: it is ERROR and has no port (looked up only
    when a probe fails)."""
    from neutrino import store
    from neutrino.deploy import failed_builds

    refused = [n for n in names if f"'{n}'" in str(error)]
    failed = failed_builds(store.state_dir()) if refused else {}
    name = next((n for n in refused if n in failed), None)
    if name is None:
        return error
    because = f": {failed[name]}" if failed[name] else ""
    return InvalidInput(f"{name} is in ERROR, with no port (its build failed{because})")


def _probe(world, source: str, destination: str, **given):  # type: ignore[no-untyped-def]
    """``world.probe``, its refusal of a server whose build failed said as such (:func:`_unbuilt`)."""
    try:
        return world.probe(source, destination, **given)
    except InvalidInput as exc:
        raise _unbuilt(exc, source, destination) from None


def _named(trace):  # type: ignore[no-untyped-def]
    """The trace with its OpenStack objects named from the cloud's snapshot (an imported
    deployment's, which has none, by device and chain)."""
    from neutrino import store, worldkeep
    from neutrino.answers.objects import ImportedNames, Names, annotate, flow_origins

    crossed = {h.host for t in (trace, trace.reply) if t is not None for h in t.hops}
    kept = store.list_hosts()
    if any(store.host_kind(h) == "imported" for h in crossed if h in kept):
        return annotate(trace, ImportedNames.of_hosts(store.load_host(h) for h in kept
                                                      if store.host_kind(h) == "imported"))
    cloud = worldkeep.kept_cloud(store.state_dir())
    if cloud is None:  # no kept world, or it no longer stands for the hosts: the database
        from neutrino.deploy import open_cloud

        cloud = open_cloud(store.state_dir()).snapshot()
    flows = flow_origins(store.hosts_dir(), (h.name for h in cloud.deployment.hosts))
    return annotate(trace, Names(cloud, flows))


def _cmd_trace(args: argparse.Namespace) -> int:
    import json

    from neutrino import store
    from neutrino.sim.trace import frames, render, to_json
    from neutrino.views.tcpdump import keep_trace

    def number(option: str, text: str | None, what: str, low: int, high: int) -> int | None:
        if text is None:
            return None
        try:
            value = int(text, 10)
        except ValueError:
            value = -1
        if not low <= value <= high:
            raise InvalidInput(f"{option} {text}: {what} is a number from {low} to {high}")
        return value

    dport = number("--dport", args.dport, "a port", 1, 65535)
    assert dport is not None
    dumps = [_tcpdump_spec(spec) for spec in args.tcpdump or ()]  # bad input refused before any work
    world = _world(args)
    trace = _named(_probe(
        world, args.source, args.destination, proto=args.proto, dport=dport, src_ip=args.src_ip, src_mac=args.src_mac,
        dst_mac=args.dst_mac, sport=number("--sport", args.sport, "a port", 1, 65535), tcp_flags=args.tcp_flags,
        at=args.at, vlan=number("--vlan", args.vlan, "a VLAN id", 0, 4095),
        size=number("--size", args.size, "a payload size in bytes", 0, 65535)))
    keep_trace(store.state_dir(), trace, world)  # what 'exec HOST -- tcpdump -i DEV' and 'conntrack -L' answer from
    if args.pcap:
        from neutrino.sim.pcap import save_pcap, timestamps

        stamps = timestamps(0.0, 0.001)
        count = save_pcap(args.pcap, [(next(stamps), f) for f in frames(trace)])  # type: ignore[misc]
        print(f"wrote {count} packets to {args.pcap}", file=sys.stderr)
    seen = [(host, ns, dev, _tcpdump_of(host, ns, dev, world)) for host, ns, dev in dumps]
    if args.json:
        doc = json.loads(to_json(trace))
        if seen:
            doc["tcpdump"] = [{"host": host, "namespace": ns, "device": dev, "lines": text.splitlines()}
                              for host, ns, dev, text in seen]
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        sys.stdout.write(render(trace, args.level))
        for host, ns, dev, text in seen:
            where = f"{host}, namespace {ns}" if ns else host
            count = len(text.splitlines())
            print(f"\n--- tcpdump -n -e -i {dev} on {where}: {count} packet{'s' if count != 1 else ''}")
            sys.stdout.write(text)
    return 0 if trace.succeeded else 1


def _tcpdump_spec(spec: str) -> tuple[str, str, str]:
    """``--tcpdump HOST:[NAMESPACE:]DEVICE`` as (host, namespace, device)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidInput(f"--tcpdump {spec}: give HOST:DEVICE or HOST:NAMESPACE:DEVICE (e.g. compute:qvo61e31514-15)")
    return (parts[0], parts[1] if len(parts) == 3 else "", parts[-1])


def _tcpdump_of(host: str, ns: str, device: str, world):  # type: ignore[no-untyped-def]
    """What ``tcpdump -n -e -i DEVICE`` on ``host`` (in namespace ``ns``) printed while the kept trace went by."""
    import io

    from neutrino import store
    from neutrino.ingest.commands import parse_command
    from neutrino.views.answer import answer

    words = (["ip", "netns", "exec", ns] if ns else []) + ["tcpdump", "-n", "-e", "-i", device]
    return answer(store.load_host(host), parse_command(" ".join(_quote(w) for w in words)), world=world,
                  state=store.state_dir(), stderr=io.StringIO())


def _size(text: str | None) -> int | None:
    """``--size N``: bytes of data, 0 to 65535 (the simulator checks what fits the protocol)."""
    if text is None:
        return None
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise InvalidInput(f"--size {text}: a payload size in bytes is a number from 0 to 65535")
    return int(text)


def _cmd_diagnose(args: argparse.Namespace) -> int:
    import json

    from neutrino import store
    from neutrino.answers.diagnose import check_args, diagnose

    dport = check_args(args.proto, args.dport)
    try:
        d = diagnose(store.state_dir(), args.source, args.destination, proto=args.proto, dport=dport,
                     src_ip=args.src_ip, src_mac=args.src_mac, size=_size(args.size), world=_world(args))
    except InvalidInput as exc:
        raise _unbuilt(exc, args.source, args.destination) from None
    sys.stdout.write(json.dumps(d.plain(), indent=1) + "\n" if args.json else d.text())
    return 0 if d.reachable else 1


def _progress(name: str):  # type: ignore[no-untyped-def]
    """``Progress(name).stage`` when stderr is a terminal, else a stage that prints nothing."""
    import contextlib

    from neutrino.views.terminal import Progress

    if sys.stderr.isatty():
        return Progress(name).stage
    return lambda what: contextlib.nullcontext()


def _cmd_matrix(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neutrino import store
    from neutrino.answers import matrix as mx
    from neutrino.deploy import open_cloud

    policy = mx.load_policy(args.expect) if args.expect else None
    protocols = mx.parse_protocols(args.proto) if args.proto else mx.DEFAULT_PROTOCOLS
    if policy is not None:
        protocols += tuple(p for p in policy.protocols() if p not in protocols)
    stage = _progress("matrix")
    with stage("the cloud's world loaded (booted if none was kept)"):
        world = _world(args)
        cloud = mx.empty_cloud() if getattr(world, "imported", False) else open_cloud(store.state_dir()).snapshot()
        ends = mx.endpoints(world, cloud, outside=not args.no_outside, hosts=not args.no_hosts,
                            routers=not args.no_routers)
    with stage(f"traced {'every pair' if args.exhaustive else 'one pair per class'} of {len(ends[0])} sources "
               f"and {len(ends[1])} destinations, {len(protocols)} protocols"):
        cells = mx.matrix(world, cloud, protocols, exhaustive=args.exhaustive, ends=ends)
    if args.save:
        Path(args.save).write_text(mx.to_json(cells) + "\n")
    rc = 0
    if args.diff:
        changed = mx.diff(mx.load(Path(args.diff).read_text(errors="replace"), args.diff), cells)
        sys.stdout.write("".join(ln + "\n" for ln in changed) if changed else "no change\n")
        rc = 1 if changed else 0
    if policy is not None:
        violations, checked = mx.check_policy(policy, cells, ends, cloud)
        sys.stdout.write("".join(ln + "\n" for ln in violations))
        print(f"policy violated: {len(violations)} of {checked} cells checked" if violations
              else f"policy holds ({checked} cells checked)")
        rc = 1 if violations else rc
    if args.diff or policy is not None:
        return rc
    fmt = "json" if args.json else args.format
    sys.stdout.write(mx.to_json(cells) + "\n" if fmt == "json" else mx.to_csv(cells) if fmt == "csv"
                     else mx.to_table(cells))
    if fmt == "table":  # servers the matrix cannot hold: no port to send from or to
        from neutrino.deploy import failed_builds

        for name, message in failed_builds(store.state_dir()).items():
            print(f"not in the matrix: {name}, in ERROR with no port (its build failed: {message})")
    return 0


def _cmd_ping(args: argparse.Namespace) -> int:
    trace = _probe(_world(args), args.source, args.destination, proto="icmp")
    if not trace.succeeded:  # the objects are named only where a failure is explained
        trace = _named(trace)
    if args.json:
        import json

        ok = trace.succeeded and trace.reply is not None
        v = trace.failure or trace.verdict
        doc: dict[str, object] = {
            "source": args.source, "destination": args.destination, "reply": ok,
            "hops": len(trace.hops), "reply_hops": len(trace.reply.hops) if trace.reply is not None else 0,
            "reason": None if ok else (v.reason.value if v.reason else "no reply"),
            "where": None if ok else (v.where or None), "object": None if ok else (v.obj or None),
            "detail": None if ok else (v.detail or None)}
        print(json.dumps(doc, indent=1))
        return 0 if ok else 1
    if trace.succeeded and trace.reply is not None:
        print(f"{args.source} -> {args.destination}: reply (via {len(trace.hops)} hops, "
              f"back via {len(trace.reply.hops)})")
        return 0
    v = trace.failure or trace.verdict
    if v.detail.startswith("ping: "):  # from a host (host:NAME): the system call failed, as ping says
        print(v.detail.split(" (", 1)[0])
    reason = v.reason.value if v.reason else "no reply"
    print(f"{args.source} -> {args.destination}: no reply: {reason}" + (f" at {v.where}" if v.where else "")
          + (f" ({v.detail})" if v.detail else ""))
    return 1


def _cmd_server(args: argparse.Namespace) -> int:
    from neutrino.api import serve

    return serve.run(args)


def _cmd_agent(args: argparse.Namespace) -> int:
    from neutrino import remote_agent

    return remote_agent.main(args.host, args.server, backend=args.backend, once=args.once,
                             os_cloud=args.os_cloud, poll=args.poll, log_level=args.log_level)


def _imported_options(s: argparse.ArgumentParser) -> None:
    """``--imported`` and ``--assume``: the commands that trace (trace, ping, diagnose, matrix)."""
    s.add_argument("--imported", action="store_true",
                   help="trace in the imported hosts (neutrino import), read from their captures alone (the "
                        "default when the state folder holds imported hosts and no cloud)")
    s.add_argument("--assume", action="append", metavar="WHAT",
                   help="imported hosts: what to take for state that was not captured (iptables-accept, "
                        "flows-normal); without it a trace through such state stops and names what is missing")


class _Unbuilt:
    """Stands for a subcommand's parser when another subcommand was named: its arguments are not
    built (argparse uses only the named subcommand's parser; the listing in ``--help`` and the
    choices in an error come from the names and help strings, which are all given)."""

    def __init__(self, **kwargs: object) -> None:
        pass

    def add_argument(self, *args: object, **kwargs: object) -> None:
        pass

    def set_defaults(self, **kwargs: object) -> None:
        pass


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``only``, the first word of the command line, the parsers of
    the other subcommands are left unbuilt (what 'neutrino trace ...' parses is the same)."""
    p = argparse.ArgumentParser(prog="neutrino", description="OpenStack tenant networking, rebuilt in Python.")
    if only is None:
        sub = p.add_subparsers(dest="subcommand", required=True)
    else:
        def parser_class(**kwargs: object) -> argparse.ArgumentParser:  # kwargs["prog"]: "neutrino NAME"
            chosen = str(kwargs.get("prog", "")).rsplit(" ", 1)[-1] == only
            return argparse.ArgumentParser(**kwargs) if chosen else _Unbuilt()  # type: ignore[arg-type,return-value]

        sub = p.add_subparsers(dest="subcommand", required=True, parser_class=parser_class)  # type: ignore[call-overload]

    s = sub.add_parser("import", help="read a real deployment's captures: one host's folder, a sosreport, a "
                                      "folder of one sub-folder per host, or a .tar.gz of any of these")
    s.add_argument("directory", metavar="PATH")
    s.add_argument("--host", help="the host's name (default: the folder's name); of a deployment, import only "
                                  "this host")
    s.add_argument("--replace", action="store_true",
                   help="overwrite a kept host (planned or imported) of the same name (default: refuse)")
    s.add_argument("--json", action="store_true", help="what was imported, as JSON")
    s.set_defaults(func=_cmd_import)

    s = sub.add_parser("collect", help="the script that captures a real host for 'neutrino import' (run it as "
                                       "root there): its path, or the script itself with --print-script")
    s.add_argument("--print-script", action="store_true", help="print the script (POSIX sh) rather than its path")
    s.set_defaults(func=_cmd_collect)

    s = sub.add_parser("exec", help="answer a command (ovs-ofctl, iptables, ip, ...) for a host")
    s.add_argument("host")
    s.add_argument("--real", action="store_true", help="run it for real in the Linux backend's namespaces")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS] [| grep PATTERN]")
    s.set_defaults(func=_cmd_exec)

    s = sub.add_parser("hosts", help="list the hosts neutrino knows")
    s.add_argument("--json", action="store_true", help="the same, as a JSON list")
    s.set_defaults(func=_cmd_hosts)

    s = sub.add_parser("explain", help="a bridge's flows, an iptables chain's rules or a namespace's routes, each "
                                       "with a line saying what it does")
    s.add_argument("host")
    s.add_argument("name", metavar="BRIDGE|CHAIN|routes|NAMESPACE",
                   help="a bridge (its flows), an iptables chain (its rules), 'routes' (every namespace's routing "
                        "rules and routes, with the OpenStack object behind each) or a namespace (its routes)")
    s.add_argument("--ns", metavar="NAMESPACE",
                   help="only this namespace (its name, the start of it such as 'qrouter', or 'root')")
    s.add_argument("--json", action="store_true", help="the same, as JSON (sections of lines and explanations)")
    s.set_defaults(func=_cmd_explain)

    s = sub.add_parser("easyovs", help="EasyOVS's screens for a host: list, show BR, dump BR, ipt IP...")
    s.add_argument("host")
    s.add_argument("words", nargs="+", metavar="list|show BR|dump BR|ipt IP [IP...]")
    s.add_argument("--json", action="store_true", help="the same, as JSON")
    s.set_defaults(func=_cmd_easyovs)

    s = sub.add_parser("diagram", help="draw the kept hosts: namespaces, bridges, devices, tunnels (Graphviz)")
    s.add_argument("--host", action="append", help="only this host (repeat for more; default: every kept host)")
    s.add_argument("--format", choices=("dot", "svg", "png"), default=None,
                   help="dot (the graph's text; default), svg or png (these need Graphviz's dot program)")
    s.add_argument("-o", "--output", help="write to this file (its suffix gives the format when --format is not given)")
    s.add_argument("--trace", nargs=2, action="append", metavar=("SOURCE", "DESTINATION"),
                   help="also trace a packet (as 'neutrino trace' does) and draw its path over the hosts: the "
                        "forward path and the reply in two colours, the drop point marked (repeat for more)")
    s.add_argument("--proto", choices=("icmp", "tcp", "udp", "http"), default="icmp", help="the traces' protocol")
    s.add_argument("--dport", type=int, default=22, help="the traces' destination port (tcp, udp)")
    s.set_defaults(func=_cmd_diagram)

    s = sub.add_parser("up", help="create a scenario's cloud through the API and plan every host")
    s.add_argument("scenario", help="a scenario YAML file (see examples/)")
    s.add_argument("--backend", choices=("sim", "linux"), default="sim",
                   help="sim (default): plan it for the simulator; linux: also build it for real (root)")
    s.add_argument("--replace", action="store_true",
                   help="tear down the cloud this state folder holds first (default: refuse)")
    s.add_argument("--db", default=None,
                   help="the cloud's database URL, e.g. an empty postgresql://... a server shares "
                        "(default: cloud.db in the state folder)")
    s.add_argument("--json", action="store_true", help="the hosts and the instances table as JSON")
    s.set_defaults(func=_cmd_up)

    s = sub.add_parser("sync", help="re-plan from the API's database and make the Linux backend match")
    s.set_defaults(func=_cmd_sync)

    s = sub.add_parser("down", help="remove everything the Linux backend built")
    s.set_defaults(func=_cmd_down)

    s = sub.add_parser("failover", help="stop an HA router's master keepalived; the backup takes the VIPs")
    s.add_argument("router", help="the router's name or id")
    s.add_argument("--restore", action="store_true", help="start the stopped keepalived again (nopreempt: "
                                                          "it comes back as a backup)")
    s.set_defaults(func=_cmd_failover)

    s = sub.add_parser("console", help="a shell inside an instance (Linux backend)")
    s.add_argument("server")
    s.set_defaults(func=_cmd_console)

    s = sub.add_parser("plan", help="print each host's planned plumbing for a scenario")
    s.add_argument("scenario")
    s.add_argument("--host", help="only this host")
    s.add_argument("--json", action="store_true",
                   help="as JSON: for each host, each capture's command and the text it prints")
    s.set_defaults(func=_cmd_plan)

    s = sub.add_parser("trace", help="trace a packet through the cloud 'neutrino up' made, hop by hop")
    s.add_argument("source", help="an instance's name, 'outside', or host:NAME (a host's own namespace)")
    s.add_argument("destination", help="an instance's name or an IP address (--proto dhcp: not used)")
    s.add_argument("--proto", default="icmp", metavar="{icmp,tcp,udp,http,arp,dhcp}",
                   help="icmp (default), tcp (a SYN unless --tcp-flags), udp, http (GET to the metadata "
                        "address), arp (the ARP request for DESTINATION and its reply) or dhcp (DISCOVER, OFFER)")
    s.add_argument("--dport", default="22", metavar="N", help="destination port (tcp, udp; default 22)")
    s.add_argument("--sport", metavar="N", help="source port (tcp, udp, http; default 41000)")
    s.add_argument("--tcp-flags", metavar="FLAGS",
                   help="tcpdump's letters: S, SA or S., A or ., R, F, PA ... (default S): a segment without "
                        "SYN meets conntrack and the peer as it is (a lone ACK gets a reset)")
    s.add_argument("--src-ip", metavar="IP", help="the packet's source address (spoofed from an instance)")
    s.add_argument("--src-mac", metavar="MAC", help="the frame's source MAC (spoofed from an instance)")
    s.add_argument("--dst-mac", metavar="MAC", help="the frame's destination MAC (no ARP for the next hop)")
    s.add_argument("--at", metavar="HOST:[ELEMENT:]DEVICE",
                   help="inject the frame where it enters through DEVICE of HOST (a bridge port, as "
                        "ofproto/trace's in_port, e.g. network:patch-int; or a namespace's device); SOURCE "
                        "is then an instance or an address")
    s.add_argument("--vlan", metavar="VID", help="802.1Q tag on the frame injected with --at (0-4095)")
    s.add_argument("--size", metavar="N",
                   help="the payload's length in bytes (icmp: as ping -s N; tcp, udp), sent with DF set: every "
                        "device checks it against its MTU (default: no size, no MTU checked)")
    s.add_argument("--level", choices=("detailed", "summary", "minimal"), default="summary")
    s.add_argument("--json", action="store_true")
    s.add_argument("--pcap", help="also write the packet at every hop to this pcap file")
    s.add_argument("--tcpdump", action="append", metavar="HOST:[NAMESPACE:]DEVICE",
                   help="after the trace, what 'tcpdump -n -e -i DEVICE' on HOST (in NAMESPACE) saw of it "
                        "(repeat for more; the trace is kept either way, for 'neutrino exec HOST -- tcpdump "
                        "-i DEVICE' and 'conntrack -L')")
    _imported_options(s)
    s.set_defaults(func=_cmd_trace)

    s = sub.add_parser("diagnose", help="why SOURCE does not reach DESTINATION, and a fix, checked first")
    s.add_argument("source", help="an instance's name, 'outside', or host:NAME")
    s.add_argument("destination", help="an instance's name or an IP address (--proto dhcp: not used, give -)")
    s.add_argument("--proto", default="icmp", metavar="{icmp,tcp,udp,http,arp,dhcp}",
                   help="as trace's: icmp (default), tcp, udp, http (GET to the metadata address), arp, dhcp")
    s.add_argument("--dport", metavar="N", help="destination port (tcp, udp only; default 22)")
    s.add_argument("--src-ip", metavar="IP", help="the packet's source address (spoofed from an instance)")
    s.add_argument("--src-mac", metavar="MAC", help="the frame's source MAC (spoofed from an instance)")
    s.add_argument("--size", metavar="N",
                   help="bytes of data (as ping -s), sent with DF set (as ping -M do): where is the MTU too small?")
    s.add_argument("--json", action="store_true")
    _imported_options(s)
    s.set_defaults(func=_cmd_diagnose)

    s = sub.add_parser("matrix", help="who reaches whom among the instances, routers, hosts and the outside, "
                                      "per protocol")
    s.add_argument("--proto", action="append", metavar="P",
                   help="icmp, tcp/PORT or udp/PORT (repeat or comma-separate; default icmp,tcp/22,tcp/80)")
    s.add_argument("--format", choices=("table", "json", "csv"), default="table")
    s.add_argument("--json", action="store_true", help="the same as --format json")
    s.add_argument("--save", metavar="FILE", help="also keep the matrix (JSON) in FILE")
    s.add_argument("--diff", metavar="FILE", help="print only the cells changed since FILE (exit 1 if any)")
    s.add_argument("--no-outside", action="store_true", help="leave the outside out")
    s.add_argument("--no-hosts", action="store_true", help="leave the hosts (host:NAME sources) out")
    s.add_argument("--no-routers", action="store_true",
                   help="leave the routers' addresses (ROUTER:ADDRESS, gateway:ADDRESS destinations) out")
    s.add_argument("--expect", metavar="POLICY",
                   help="check the matrix against POLICY (YAML: isolate, deny, allow) and print only the "
                        "violations; exit 1 on any")
    s.add_argument("--exhaustive", action="store_true",
                   help="trace every pair (default: one pair per class of endpoints treated alike)")
    _imported_options(s)
    s.set_defaults(func=_cmd_matrix)

    s = sub.add_parser("ping", help="the short answer: does a ping from SOURCE to DESTINATION come back")
    s.add_argument("source")
    s.add_argument("destination")
    s.add_argument("--json", action="store_true",
                   help="the verdict as JSON: reply (true/false), hops, reply_hops, reason, where, object, detail")
    _imported_options(s)
    s.set_defaults(func=_cmd_ping)

    s = sub.add_parser("demo", help="the main job: a seed scenario, shown")
    s.set_defaults(func=_cmd_demo)

    from neutrino.api.options import add_server_arguments

    s = sub.add_parser("server", help="serve the Neutron, Identity and Compute APIs")
    add_server_arguments(s)
    s.set_defaults(func=_cmd_server)

    s = sub.add_parser("agent", help="one host's agent as its own process, fed by a server over HTTP")
    s.add_argument("--host", required=True, help="the host this agent plans and converges")
    s.add_argument("--server", required=True, help="the server's URL, e.g. http://192.0.2.1:9696")
    s.add_argument("--backend", choices=("sim", "linux"), default="sim",
                   help="sim (default): keep the host in $NEUTRINO_STATE; linux: also make the real host "
                        "match (root; the cloud brought up with 'neutrino up --backend linux' there)")
    s.add_argument("--once", action="store_true", help="one pass, then exit (1 if it failed)")
    s.add_argument("--os-cloud", default=None,
                   help="clouds.yaml entry with the admin credentials (default $OS_CLOUD, else OS_* "
                        "variables, else 'neutrino')")
    s.add_argument("--poll", type=float, default=30.0,
                   help="seconds each long-poll for changes waits (at most 60; default 30)")
    s.add_argument("--log-level", default="info")
    s.set_defaults(func=_cmd_agent)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    # Only the named subcommand's arguments are built: its name is the first word that is not an
    # option (the command's own options have no values; a word argparse would take instead, such
    # as '-1', names no subcommand and is refused before any subcommand's parser is used).
    named = next((w for w in words if not w.startswith("-")), "")
    if argv is None and named in _SHORT_READS:
        _short_read()
    args = build_parser(only=named).parse_args(words)
    from neutrino import dataclass_code

    dataclass_code.install()  # the dataclasses' methods compiled once, not in every command (not for --help)
    try:
        return int(args.func(args))
    except NeutrinoError as exc:
        print(f"neutrino: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file named on the command line that cannot be read
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"neutrino: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


_SHORT_READS = ("trace", "ping", "exec", "hosts", "explain")


def _short_read() -> None:
    """The process is the ``neutrino`` command's (``main()`` called with no arguments) and runs a
    short read (:data:`_SHORT_READS`): its objects live until it ends and it makes little cyclic
    garbage (the same peak memory with the collector and without, for a trace that boots the world
    anew and an ``exec`` that reads a host's captures). So the collector does not run (its passes
    over what the imports make were ~4% of a trace's instructions) and at exit the objects are not
    searched for cycles (the interpreter's last collection was ~6%). Not for ``main([...])`` called
    from a longer process (the tests)."""
    import atexit
    import gc

    gc.disable()
    atexit.register(gc.freeze)


if __name__ == "__main__":
    sys.exit(main())
