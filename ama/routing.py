"""Geo routing as the core and the edges serve it: ``GET /v1/locate`` and the join response's edge order."""

from __future__ import annotations

import time
from pathlib import Path

from ama.addresses import Network, client_address, parse_networks
from ama.geo import GeoDatabase, Resolver
from ama.health import HealthBoard
from ama.plan import View


class Routing:
    def __init__(self, view: View, default_order: list[str], geoip: Path | None, trusted_proxies: list[str]):
        self.view = view
        self.trusted: list[Network] = parse_networks(trusted_proxies)
        database = GeoDatabase(geoip) if geoip is not None else None
        self.resolver = Resolver(view.plan["regions"], view.plan.get("default_region_order") or default_order, database)
        self.board = HealthBoard(time.monotonic())
        # Edge processes that share a port (SO_REUSEPORT) share one URL, listed once.
        self.edge_urls = {name: list(dict.fromkeys(view.edge_ws_urls(name))) for name in view.region_names()}
        self.edge_url_of = {edge["name"]: view.edge_ws_url(edge) for region in view.plan["regions"] for edge in region["edges"]}

    def client_ip(self, peer: str | None, forwarded_for: list[str]) -> str | None:
        return client_address(peer, forwarded_for, self.trusted)

    def locate(self, client_ip: str | None) -> dict:
        now = time.monotonic()
        unhealthy = self.board.unhealthy_regions(self.view.region_names(), now)
        # A shared URL is unhealthy only when every process behind it is: the
        # kernel hands new sockets only to processes still listening.
        unhealthy_names = set(self.board.unhealthy_edges(list(self.edge_url_of), now))
        healthy_urls = {url for name, url in self.edge_url_of.items() if name not in unhealthy_names}
        unhealthy_edges = {self.edge_url_of[name] for name in unhealthy_names} - healthy_urls
        return self.resolver.locate(client_ip, self.edge_urls, unhealthy, unhealthy_edges)

    def locate_request(self, request) -> dict:
        """Locate a Starlette request's client."""
        peer = request.client.host if request.client else None
        return self.locate(self.client_ip(peer, request.headers.getlist("x-forwarded-for")))


def add_routing_arguments(parser) -> None:
    """Add the geo routing options shared by ``ama up``, the core and the edges."""
    parser.add_argument("--geoip", type=Path, default=None, help="MaxMind City or Country database (.mmdb) for geo routing; without it every client gets the default order")
    parser.add_argument(
        "--trusted-proxy", action="append", default=[], metavar="CIDR",
        help="network whose X-Forwarded-For headers are trusted, such as 10.0.0.0/8 (repeatable; default: none)",
    )
