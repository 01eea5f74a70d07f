"""The topology plan: regions, their NATS servers, region services, edges and ports.

A plan is plain JSON so that ``ama up`` and Terraform's topology module can
produce the same format. ``default_plan`` builds the three-region plan that
``ama up`` runs on one machine; three regions keep JetStream's meta quorum
when any one of them is lost.
"""

from __future__ import annotations

import json
import math
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ama.subjects import check_token, stream

PLAN_VERSION = 1

# Name, (latitude, longitude) in degrees: Ashburn, Frankfurt and Singapore.
DEFAULT_REGIONS: list[tuple[str, tuple[float, float]]] = [
    ("us-east", (39.04, -77.49)),
    ("eu-central", (50.11, 8.68)),
    ("ap-southeast", (1.35, 103.82)),
]
DEFAULT_CORE_REGION = "us-east"
# Three replicas keep a stream writable when any one of its servers is lost.
MAX_STREAM_REPLICAS = 3
# Region services and the core drop a room's replica after this many idle
# seconds (plan key ``evict_idle_rooms_after_s``); the core's store keeps it.
DEFAULT_EVICT_AFTER_S = 900.0


class PlanError(ValueError):
    """A plan that cannot be started, with the field at fault named."""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ask the OS for ``count`` distinct free TCP ports on ``host``."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Return the haversine distance between two (latitude, longitude) points, in km."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def home_order(location: tuple[float, float], regions: list[dict]) -> list[str]:
    """Return region names ordered by distance from ``location``, nearest first."""
    return [region["name"] for region in sorted(regions, key=lambda r: (great_circle_km(location, tuple(r["location"])), r["name"]))]


def default_plan(edges_per_region: int = 1, host: str = "127.0.0.1", nats_per_region: int = 1, processes_per_edge: int = 1) -> dict:
    """Build the local three-region plan with ports taken free from the OS.

    With ``nats_per_region`` of 3 or more, each region's stream keeps three
    replicas and survives the loss of its leader. With ``processes_per_edge``
    above 1, each edge is that many edge nodes (processes) named
    ``...-edge-N-pK`` that share one WebSocket port with SO_REUSEPORT, so the
    kernel spreads new sockets over them, one core each.
    """
    per_region = 4 * nats_per_region + 1 + (1 + processes_per_edge) * edges_per_region
    ports = iter(free_ports(1 + per_region * len(DEFAULT_REGIONS), host))
    regions = []
    for name, location in DEFAULT_REGIONS:
        regions.append({
            "name": name,
            "location": list(location),
            "nats": [
                {
                    "name": f"{name}-nats-{i + 1}",
                    "client_port": next(ports),
                    "cluster_port": next(ports),
                    "gateway_port": next(ports),
                    "monitor_port": next(ports),
                }
                for i in range(nats_per_region)
            ],
            "region_services": [{"name": f"{name}-region-1", "http_port": next(ports)}],
            "edges": [edge for i in range(edges_per_region) for edge in edge_processes(f"{name}-edge-{i + 1}", location, processes_per_edge, ports)],
        })
    for region in regions:
        for edge in region["edges"]:
            edge["home_regions"] = home_order(tuple(edge["location"]), regions)
    plan = {"version": PLAN_VERSION, "host": host, "core_region": DEFAULT_CORE_REGION, "core": {"name": "core-1", "http_port": next(ports)}, "regions": regions}
    validate(plan)
    return plan


def edge_processes(name: str, location: tuple[float, float], processes: int, ports) -> list[dict]:
    """Return the plan entries of one edge run as ``processes`` edge nodes on one shared WebSocket port."""
    ws_port = next(ports)
    if processes == 1:
        return [{"name": name, "http_port": next(ports), "ws_port": ws_port, "location": list(location)}]
    return [
        {"name": f"{name}-p{k + 1}", "http_port": next(ports), "ws_port": ws_port, "reuse_port": True, "location": list(location)}
        for k in range(processes)
    ]


def validate_shared_ports(plan: dict) -> None:
    """Raise PlanError unless every edge that shares a WebSocket port with another sets ``reuse_port``."""
    sharing: dict[tuple[str, int], list[dict]] = {}
    for region in plan["regions"]:
        for edge in region["edges"]:
            host = edge.get("host", plan.get("host", "127.0.0.1"))
            sharing.setdefault((host, edge.get("ws_port")), []).append(edge)
    for (host, port), edges in sharing.items():
        if len(edges) > 1 and not all(edge.get("reuse_port") is True for edge in edges):
            names = [edge.get("name") for edge in edges]
            raise PlanError(f"plan: edges {names} share ws_port {port} on {host}; set \"reuse_port\": true on each of them, or give each its own port")


def validate(plan: dict) -> None:
    """Check a plan's structure; raise PlanError naming the first field at fault."""
    if plan.get("version") != PLAN_VERSION:
        raise PlanError(f"plan.version must be {PLAN_VERSION}, not {plan.get('version')!r}")
    regions = plan.get("regions")
    if not isinstance(regions, list) or not regions:
        raise PlanError("plan.regions must be a non-empty list")
    names = [region.get("name") for region in regions]
    for name in names:
        try:
            check_token(str(name), "region name")
        except ValueError as exc:
            raise PlanError(f"plan.regions[].name: {exc}") from None
    if len(set(names)) != len(names):
        raise PlanError(f"plan.regions[].name must be unique, got {names}")
    streams = [stream(name) for name in names]
    if len(set(streams)) != len(streams):
        raise PlanError(f"plan.regions[].name must stay unique with '-' read as '_' (they name JetStream streams), got {names}")
    evict = plan.get("evict_idle_rooms_after_s", DEFAULT_EVICT_AFTER_S)
    if not isinstance(evict, (int, float)) or isinstance(evict, bool) or evict <= 0:
        raise PlanError(f"plan.evict_idle_rooms_after_s must be a positive number of seconds, not {evict!r}")
    if plan.get("core_region") not in names:
        raise PlanError(f"plan.core_region {plan.get('core_region')!r} is not one of the regions {names}")
    for region in regions:
        lat, lon = region.get("location", (None, None))
        if not (isinstance(lat, (int, float)) and -90 <= lat <= 90 and isinstance(lon, (int, float)) and -180 <= lon <= 180):
            raise PlanError(f"plan.regions[{region['name']}].location must be [latitude -90..90, longitude -180..180]")
        for kind in ("nats", "region_services", "edges"):
            if not region.get(kind):
                raise PlanError(f"plan.regions[{region['name']}].{kind} must list at least one node")
        for edge in region["edges"]:
            unknown = set(edge.get("home_regions", [])) - set(names)
            if unknown or not edge.get("home_regions"):
                raise PlanError(f"plan.regions[{region['name']}].edges[{edge.get('name')}].home_regions must name known regions")
    validate_shared_ports(plan)


def stream_replicas(region: dict) -> int:
    """Return how many replicas a region's stream keeps: one per nats-server of the region, at most three."""
    return min(MAX_STREAM_REPLICAS, len(region["nats"]))


def load(path: Path) -> dict:
    try:
        plan = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanError(f"cannot read plan {path}: {exc}") from exc
    validate(plan)
    return plan


def url_host(host: str) -> str:
    """Return a host as it appears in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class View:
    """Read-only accessors over a plan."""

    plan: dict

    @property
    def host(self) -> str:
        return self.plan.get("host", "127.0.0.1")

    def node_host(self, node: dict) -> str:
        """Return the address other nodes reach ``node`` at: its own ``host``, else the plan's."""
        return node.get("host", self.host)

    def bind_host(self, node: dict) -> str:
        """Return the address ``node`` listens on: the plan's ``bind`` (such as 0.0.0.0), else its own host."""
        return self.plan.get("bind") or self.node_host(node)

    def evict_after_s(self) -> float:
        return float(self.plan.get("evict_idle_rooms_after_s", DEFAULT_EVICT_AFTER_S))

    def region(self, name: str) -> dict:
        for region in self.plan["regions"]:
            if region["name"] == name:
                return region
        raise PlanError(f"no region named {name!r} in the plan")

    def region_names(self) -> list[str]:
        return [region["name"] for region in self.plan["regions"]]

    def nats_urls(self, region: str) -> list[str]:
        return [f"nats://{url_host(self.node_host(server))}:{server['client_port']}" for server in self.region(region)["nats"]]

    def nats_urls_in_order(self, regions: list[str]) -> list[str]:
        return [url for name in regions for url in self.nats_urls(name)]

    def region_of_url(self, url: str) -> str | None:
        for name in self.region_names():
            if url in self.nats_urls(name):
                return name
        return None

    def edge(self, name: str) -> tuple[dict, dict]:
        for region in self.plan["regions"]:
            for edge in region["edges"]:
                if edge["name"] == name:
                    return region, edge
        raise PlanError(f"no edge named {name!r} in the plan")

    def edge_ws_url(self, edge: dict) -> str:
        """Return the WebSocket URL browsers use for ``edge``: its ``public_ws_url``, else ws://HOST:WS_PORT/v1/ws."""
        if edge.get("public_ws_url"):
            return edge["public_ws_url"]
        return f"ws://{url_host(self.node_host(edge))}:{edge['ws_port']}/v1/ws"

    def edge_http_url(self, edge: dict) -> str:
        """Return the URL browsers open ``edge``'s page at: its ``public_http_url``, else http://HOST:HTTP_PORT."""
        if edge.get("public_http_url"):
            return edge["public_http_url"]
        return f"http://{url_host(self.node_host(edge))}:{edge['http_port']}"

    def edge_ws_urls(self, region: str | None = None) -> list[str]:
        regions = self.plan["regions"] if region is None else [self.region(region)]
        return [self.edge_ws_url(edge) for r in regions for edge in r["edges"]]

    def core_url(self) -> str:
        return f"http://{url_host(self.node_host(self.plan['core']))}:{self.plan['core']['http_port']}"

    def region_service_url(self, service: dict) -> str:
        return f"http://{url_host(self.node_host(service))}:{service['http_port']}"

    def monitor_url(self, server: dict) -> str:
        return f"http://{url_host(self.node_host(server))}:{server['monitor_port']}"

    def all_ports(self, host: str | None = None) -> list[int]:
        """Return every port of the plan, or with ``host`` only those of the nodes reached at that host."""
        def on_host(node: dict) -> bool:
            return host is None or self.node_host(node) == host

        ports: list[Any] = [self.plan["core"]["http_port"]] if on_host(self.plan["core"]) else []
        for region in self.plan["regions"]:
            for server in filter(on_host, region["nats"]):
                ports += [server["client_port"], server["cluster_port"], server["gateway_port"], server["monitor_port"]]
            ports += [service["http_port"] for service in filter(on_host, region["region_services"])]
            ports += [port for edge in filter(on_host, region["edges"]) for port in (edge["http_port"], edge["ws_port"])]
        return ports
