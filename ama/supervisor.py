"""``ama up``: start a whole cluster on this machine from a topology plan and watch it.

Start order: every nats-server, then the core, then the region services, then
the edges. Each kind waits until the previous one passes its health check.
``cluster.json`` is written (atomically) only once every process is ready.
A child that exits is logged and left stopped; Ctrl-C or SIGTERM stops every
child, edges first, with SIGTERM and then SIGKILL after ``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ama import natsconf, netns, plan as plans
from ama.addresses import parse_networks
from ama.geo import GeoDatabase
from ama.natsutil import CREDENTIALS_ENV

log = logging.getLogger("ama.up")

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.2
PR_SET_PDEATHSIG = 1


class UpError(Exception):
    """``ama up`` cannot go on. The message states what to do."""


@dataclass
class Child:
    name: str
    kind: str
    region: str
    argv: list[str]
    health_url: str
    log_path: Path
    credentials: Path | None = None
    process: subprocess.Popen | None = None
    reported_exit: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Cluster:
    data_dir: Path
    view: plans.View
    children: list[Child] = field(default_factory=list)

    def of_kind(self, kind: str, region: str | None = None) -> list[Child]:
        return [child for child in self.children if child.kind == kind and (region is None or child.region == region)]


def prepare_plan(data_dir: Path, plan_file: Path | None, use_netns: bool = False) -> plans.View:
    """Return the plan kept in ``data_dir``, creating it on the first run.

    ``use_netns`` puts each region of a new default plan in a network
    namespace of its own; a kept plan says for itself whether it has them.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    kept = data_dir / "plan.json"
    if use_netns:
        if plan_file is not None:
            raise UpError("--netns applies to the default plan only; leave out --plan, or leave out --netns")
        try:
            netns.check_available()
        except netns.NetnsError as exc:
            raise UpError(str(exc)) from None
        if kept.exists() and "netns" not in plans.load(kept):
            raise UpError(f"{kept} was made without --netns; use a new --data-dir for a cluster with namespaces")
    if plan_file is not None:
        plan = plans.load(plan_file)
        if kept.exists() and plans.load(kept) != plan:
            raise UpError(f"{kept} contains a different plan from {plan_file}; use a new --data-dir or remove {kept}")
        _write_json(kept, plan)
    elif not kept.exists():
        plan = plans.default_plan()
        if use_netns:
            plan = netns.isolate(plan, netns.new_cluster_id(), netns.choose_subnet(netns.used_networks()))
        _write_json(kept, plan)
    view = plans.View(plans.load(kept))
    # Nodes in a region's namespace listen on addresses the host does not
    # have; their ports are free there by construction.
    busy = [port for port in view.all_ports(host=view.host) if _port_in_use(view.host, port)]
    if busy:
        raise UpError(
            f"ports {busy} of the plan in {kept} are in use (is another 'ama up' running on this data dir?); "
            f"stop the process that holds them, or remove {kept} to pick new free ports"
        )
    return view


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _write_json(path: Path, value: dict) -> None:
    """Write JSON by rename, so a reader never sees a half-written file.

    The mode is 0600, because cluster.json contains the admin token and
    demo-room.json the join code.
    """
    temporary = path.with_suffix(path.suffix + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(json.dumps(value, indent=2) + "\n")
    os.replace(temporary, path)


def plan_children(data_dir: Path, view: plans.View, routing_args: list[str] | None = None, database_url: str | None = None) -> list[Child]:
    """List every process of the cluster, in start order, and write the NATS configurations.

    ``database_url`` makes the core store its data in that PostgreSQL database
    instead of the SQLite file in its data dir.
    """
    routing_args = routing_args or []
    database_args = ["--database-url", database_url] if database_url else []
    nats_binary = natsconf.find_binary()
    credentials = natsconf.create_credentials(data_dir / "credentials")
    python = sys.executable
    plan_path = str(data_dir / "plan.json")
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    net = netns.layout(view.plan)

    def in_region(region: str, argv: list[str]) -> list[str]:
        return argv if net is None else netns.wrap(net, region, argv)

    children = []
    for region in view.plan["regions"]:
        for server in region["nats"]:
            config_path = data_dir / "nats" / f"{server['name']}.conf"
            config_path.parent.mkdir(exist_ok=True)
            config_path.write_text(natsconf.render(view, region["name"], server, data_dir / "nats" / server["name"], credentials))
            os.chmod(config_path, 0o600)
            health = view.monitor_url(server) + "/healthz"
            argv = in_region(region["name"], [nats_binary, "-c", str(config_path)])
            children.append(Child(server["name"], "nats", region["name"], argv, health, logs / f"{server['name']}.log"))
    core = view.plan["core"]
    children.append(Child(
        core["name"], "core", view.plan["core_region"],
        [python, "-m", "core.main", "--plan", plan_path, "--data-dir", str(data_dir / "core"), *database_args, *routing_args],
        view.core_url() + "/healthz", logs / f"{core['name']}.log", credentials["core"],
    ))
    for kind, key, module, extra in (("region", "region_services", "region.main", []), ("edge", "edges", "edge.main", routing_args)):
        for region in view.plan["regions"]:
            for node in region[key]:
                health = view.region_service_url(node) + "/healthz"
                argv = [python, "-m", module, "--plan", plan_path, "--name", node["name"], *extra]
                if kind == "region":
                    argv = in_region(region["name"], argv)
                children.append(Child(node["name"], kind, region["name"], argv, health, logs / f"{node['name']}.log", credentials[kind]))
    return children


def _detach_from_terminal() -> None:
    """Run in each child before exec: own process group, and SIGTERM when ``ama up`` dies.

    A separate process group keeps the terminal's Ctrl-C away from the
    children, so ``ama up`` stops them in order; PR_SET_PDEATHSIG (Linux)
    stops a child even when ``ama up`` itself is killed with SIGKILL.
    """
    os.setpgid(0, 0)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(child: Child) -> None:
    log_file = open(child.log_path, "ab")
    try:
        environment = dict(os.environ)
        if child.credentials is not None:
            environment[CREDENTIALS_ENV] = str(child.credentials)
        child.process = subprocess.Popen(
            child.argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_detach_from_terminal, env=environment
        )
    finally:
        log_file.close()
    child.reported_exit = False
    log.info("started %s %s pid=%d log=%s", child.kind, child.name, child.pid, child.log_path)


def wait_ready(children: list[Child], deadline: float) -> None:
    waiting = list(children)
    while waiting:
        for child in list(waiting):
            if child.process.poll() is not None:
                raise UpError(f"{child.kind} {child.name} exited with code {child.process.returncode} while starting; see {child.log_path}")
            if _healthy(child.health_url):
                waiting.remove(child)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(child.name for child in waiting)
            raise UpError(f"{names} did not become ready within {READY_TIMEOUT_S:.0f} s; see their logs in {waiting[0].log_path.parent}")
        if waiting:
            time.sleep(POLL_S)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def cluster_info(cluster: Cluster, admin_token: str) -> dict:
    """Build ``cluster.json``: addresses and process ids, in the plan's order."""
    view = cluster.view
    regions = {}
    for region in view.plan["regions"]:
        name = region["name"]
        regions[name] = {
            "location": region["location"],
            "nats": view.nats_urls(name),
            "edges": view.edge_ws_urls(name),
            "edge_http": [view.edge_http_url(edge) for edge in region["edges"]],
            "region_http": [view.region_service_url(service) for service in region["region_services"]],
            "pids": {
                "nats": [child.pid for child in cluster.of_kind("nats", name)],
                "region": [child.pid for child in cluster.of_kind("region", name)],
                "edges": [child.pid for child in cluster.of_kind("edge", name)],
            },
        }
    return {
        "core": view.core_url(),
        "admin_token": admin_token,
        "core_region": view.plan["core_region"],
        "core_pid": cluster.of_kind("core")[0].pid,
        "supervisor_pid": os.getpid(),
        "regions": regions,
        "netns": _netns_info(view),
    }


def _netns_info(view: plans.View) -> dict | None:
    """Describe each region's namespace for ``ama drill partition-region``; None without namespaces."""
    net = netns.layout(view.plan)
    if net is None:
        return None
    return {
        "subnet": net.subnet,
        "bridge": net.bridge,
        "regions": {region.region: {"namespace": region.namespace, "address": region.address} for region in net.regions},
    }


def stop_all(cluster: Cluster) -> None:
    """Stop every child: edges, region services, the core, then NATS."""
    for kind in ("edge", "region", "core", "nats"):
        group = [child for child in cluster.of_kind(kind) if child.process is not None and child.process.poll() is None]
        for child in group:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in group:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s %s pid=%d did not stop within %.0f s; killing it", child.kind, child.name, child.pid, STOP_TIMEOUT_S)
                child.process.kill()
                child.process.wait()
        if group:
            log.info("stopped %d %s process(es)", len(group), kind)


def report_exits(cluster: Cluster) -> None:
    for child in cluster.children:
        if child.process is not None and not child.reported_exit and child.process.poll() is not None:
            child.reported_exit = True
            if child.kind == "core":
                target = "core"
            elif child.kind == "edge":
                target = child.region + " --with-edges"
            else:
                target = child.region
            log.warning(
                "%s %s pid=%d exited with code %d; ama up does not restart it by itself, run 'ama restart %s' (see %s)",
                child.kind, child.name, child.pid, child.process.returncode, target, child.log_path,
            )


def request_json(method: str, url: str, body: dict | None, token: str) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def demo_room(cluster: Cluster, admin_token: str) -> dict:
    """Return the demo room, creating it on the first run; its host token is issued anew each run."""
    path = cluster.data_dir / "demo-room.json"
    core = cluster.view.core_url()
    if path.exists():
        room = json.loads(path.read_text())
    else:
        created = request_json("POST", core + "/v1/rooms", {"title": "Demo AMA"}, admin_token)
        room = {"room": created["room"], "code": created["code"]}
        _write_json(path, room)
    issued = request_json("POST", f"{core}/v1/rooms/{room['room']}/host-token", {}, admin_token)
    return {**room, "host_token": issued["token"]}


class _Stop(Exception):
    pass


def routing_arguments(geoip: Path | None, trusted_proxies: list[str]) -> list[str]:
    """Check the geo routing options and return them as the core's and edges' arguments."""
    try:
        parse_networks(trusted_proxies)
    except ValueError as exc:
        raise UpError(str(exc)) from None
    args = [arg for network in trusted_proxies for arg in ("--trusted-proxy", network)]
    if geoip is not None:
        try:
            GeoDatabase(geoip).reader.close()
        except (OSError, ValueError) as exc:
            raise UpError(f"cannot open the geoip database {geoip}: {exc}; pass a MaxMind City or Country .mmdb file") from None
        args += ["--geoip", str(geoip.resolve())]
    return args


def run(
    data_dir: Path,
    plan_file: Path | None = None,
    geoip: Path | None = None,
    trusted_proxies: list[str] | None = None,
    database_url: str | None = None,
    use_netns: bool = False,
) -> int:
    """Run ``ama up`` in the foreground until Ctrl-C or SIGTERM; return the exit status."""
    data_dir = data_dir.resolve()
    routing_args = routing_arguments(geoip, trusted_proxies or [])
    view = prepare_plan(data_dir, plan_file, use_netns)
    cluster = Cluster(data_dir, view, plan_children(data_dir, view, routing_args, database_url))
    net = netns.layout(view.plan)

    def on_signal(signum, frame):
        raise _Stop()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    (data_dir / "cluster.json").unlink(missing_ok=True)
    try:
        if net is not None:
            try:
                netns.check_available()
                netns.create(net)
            except netns.NetnsError as exc:
                raise UpError(str(exc)) from None
            log.info("built network namespaces for %d regions on %s (bridge %s)", len(net.regions), net.subnet, net.bridge)
        for kind in ("nats", "core", "region", "edge"):
            group = cluster.of_kind(kind)
            for child in group:
                start(child)
            wait_ready(group, time.monotonic() + READY_TIMEOUT_S)
            log.info("all %s processes ready", kind)
        admin_token = (data_dir / "core" / "admin-token").read_text().strip()
        room = demo_room(cluster, admin_token)
        _write_json(data_dir / "cluster.json", cluster_info(cluster, admin_token))
        print_welcome(cluster, room)
        with _control_socket(data_dir) as control:
            while True:
                report_exits(cluster)
                _serve_control(control, cluster, admin_token)
    except _Stop:
        log.info("stopping the cluster")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(cluster)
        if net is not None:
            netns.destroy(net)
            log.info("removed the network namespaces and bridge %s", net.bridge)
        (data_dir / "cluster.json").unlink(missing_ok=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def control_path(data_dir: Path) -> Path:
    return data_dir / "control.sock"


@contextlib.contextmanager
def _control_socket(data_dir: Path):
    """Listen on DIR/control.sock (mode 0600) for ``ama restart``."""
    path = control_path(data_dir)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        os.chmod(path, 0o600)
        server.listen(4)
        server.settimeout(0.5)
        yield server
    finally:
        server.close()
        path.unlink(missing_ok=True)


def _serve_control(server: socket.socket, cluster: Cluster, admin_token: str) -> None:
    """Handle one control request, if one arrives within the socket's timeout."""
    try:
        connection, _ = server.accept()
    except TimeoutError:
        return
    with connection:
        connection.settimeout(5)
        try:
            request = json.loads(connection.makefile("rb").readline())
            reply = handle_control(request, cluster, admin_token)
        except (ValueError, OSError, UpError) as exc:
            reply = {"ok": False, "error": str(exc)}
        try:
            connection.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass


def handle_control(request: dict, cluster: Cluster, admin_token: str) -> dict:
    """Restart the stopped processes a request names, then rewrite cluster.json."""
    if request.get("command") != "restart":
        raise UpError(f"unknown command {request.get('command')!r}; the supervisor takes 'restart'")
    target = request.get("target")
    kinds = ["core"] if target == "core" else ["nats", "region"] + (["edge"] if request.get("with_edges") else [])
    region = None if target == "core" else target
    if region is not None and region not in cluster.view.region_names():
        raise UpError(f"unknown region {region!r}; regions are {cluster.view.region_names()}")
    restarted = []
    for kind in kinds:
        stopped = [child for child in cluster.of_kind(kind, region) if child.process.poll() is not None]
        for child in stopped:
            start(child)
        wait_ready(stopped, time.monotonic() + READY_TIMEOUT_S)
        restarted += [child.name for child in stopped]
    _write_json(cluster.data_dir / "cluster.json", cluster_info(cluster, admin_token))
    log.info("restarted %s", ", ".join(restarted) or "nothing: every process was running")
    left = [child.name for child in cluster.children if child.process.poll() is not None and (region is None or child.region == region)]
    return {"ok": True, "restarted": restarted, "still_stopped": left}


def request_restart(data_dir: Path, target: str, with_edges: bool, timeout_s: float = READY_TIMEOUT_S + 10) -> dict:
    """Ask a running ``ama up`` to restart stopped processes; used by ``ama restart`` and drills."""
    path = control_path(data_dir.resolve())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        try:
            client.connect(str(path))
        except OSError as exc:
            raise UpError(f"no 'ama up' is running on {data_dir} ({path}: {exc.strerror}); start it first") from None
        client.sendall(json.dumps({"command": "restart", "target": target, "with_edges": with_edges}).encode() + b"\n")
        reply = json.loads(client.makefile("rb").readline() or b"{}")
    if not reply.get("ok"):
        raise UpError(reply.get("error", "the supervisor sent no response"))
    return reply


def print_welcome(cluster: Cluster, room: dict) -> None:
    view = cluster.view
    lines = ["", f"AMA Mesh is up: {len(view.plan['regions'])} regions, core in {view.plan['core_region']}.", ""]
    for region in view.plan["regions"]:
        for edge in region["edges"]:
            lines.append(f"  {region['name']:<14} edge {view.edge_http_url(edge)}")
    first_edge = view.edge_http_url(view.plan["regions"][0]["edges"][0])
    last_edge = view.edge_http_url(view.plan["regions"][-1]["edges"][0])
    lines += [
        "",
        f"Demo room {room['room']}, join code {room['code']}:",
        f"  audience: {last_edge}/?room={room['room']}&code={room['code']}",
        f"  host:     {first_edge}/?room={room['room']}#token={room['host_token']}",
        "",
        f"core: {view.core_url()}    cluster.json: {cluster.data_dir / 'cluster.json'}    logs: {cluster.data_dir / 'logs'}",
        f"More rooms: ama room create TITLE --data-dir {cluster.data_dir}",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)
