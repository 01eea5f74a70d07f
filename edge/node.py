"""An edge node: its NATS connection, its home region, its open rooms and the core's keys."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request

import nats.errors

from ama import plan as plans
from ama.health import follow_heartbeats
from ama.natsutil import connect, connected_url
from ama.routing import Routing
from ama.tokens import Claims, TokenError, Verifier
from edge.rooms import EdgeRoom

log = logging.getLogger("ama.edge")

ROOM_IDLE_S = 60.0
ROOM_OPEN_TIMEOUT_S = 5.0
JWKS_REFRESH_MIN_S = 1.0
RETURN_HOME_CHECK_S = 1.0
RETURN_HOME_AFTER_S = 10.0


class EdgeNode:
    def __init__(self, view: plans.View, name: str, geoip=None, trusted_proxies: list[str] | None = None):
        self.view = view
        self.name = name
        region, edge = view.edge(name)
        self.region = region["name"]
        self.config = edge
        self.home_regions: list[str] = edge["home_regions"]
        self.routing = Routing(view, self.home_regions, geoip, trusted_proxies or [])
        # Browsers may open sockets from any edge's page (a page fails over
        # to other edges), plus the origins the plan adds.
        self.allowed_origins = {origin for region in view.plan["regions"] for other in region["edges"] for origin in edge_origins(view, other)}
        self.allowed_origins.update(edge.get("allowed_origins", []))
        self.nc = None
        self.js = None
        self.rooms: dict[str, EdgeRoom] = {}
        self._opening: dict[str, asyncio.Task] = {}
        self.verifier = Verifier()
        # Set and replaced on every NATS reconnect, so waiters learn of a re-home at once.
        self.reconnected = asyncio.Event()
        self._jwks_fetched_at = 0.0
        self.accepting = True

    # -- NATS ----------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh_keys(force=True)
        servers = self.view.nats_urls_in_order(self.home_regions)
        self.nc = await connect(servers, name=self.name, on_reconnected=self._on_reconnected)
        self.js = self.nc.jetstream(timeout=5)
        await follow_heartbeats(self.nc, self.routing.board)
        log.info("edge connected home_region=%s", self.current_region())

    def current_region(self) -> str:
        """Return the region of the NATS server this edge is connected to: its home region now."""
        url = connected_url(self.nc) if self.nc is not None else None
        return (url and self.view.region_of_url(url)) or self.home_regions[0]

    async def _on_reconnected(self) -> None:
        self.reconnected.set()
        self.reconnected = asyncio.Event()
        log.info("edge re-synced rooms=%d after reconnect home_region=%s", len(self.rooms), self.current_region())
        for room in list(self.rooms.values()):
            room.sync_needed.set()

    async def return_home(self) -> None:
        """Move back to the first home region once it has been healthy for ``RETURN_HOME_AFTER_S``.

        A new connection to the home region is opened and every room
        subscribes on it before the old connection is drained, so clients
        see no pause; duplicate updates during the overlap are dropped by
        producer seq.
        """
        healthy_since = None
        while True:
            await asyncio.sleep(RETURN_HOME_CHECK_S)
            preferred = self.home_regions[0]
            now = time.monotonic()
            if self.current_region() == preferred or preferred in self.routing.board.unhealthy_regions([preferred], now):
                healthy_since = None
                continue
            healthy_since = healthy_since or now
            if now - healthy_since >= RETURN_HOME_AFTER_S:
                await self._move_home()
                healthy_since = None

    async def _move_home(self) -> None:
        servers = self.view.nats_urls_in_order(self.home_regions)
        try:
            new = await connect(servers, name=self.name, on_reconnected=self._on_reconnected)
        except (OSError, nats.errors.Error, asyncio.TimeoutError) as exc:
            log.warning("moving home failed, staying in region=%s: %s", self.current_region(), exc or type(exc).__name__)
            return
        old, self.nc, self.js = self.nc, new, new.jetstream(timeout=5)
        await follow_heartbeats(new, self.routing.board)
        for room in list(self.rooms.values()):
            await room.move_to(new)
        self.reconnected.set()
        self.reconnected = asyncio.Event()
        log.info("edge moved home to region=%s", self.current_region())
        try:
            await old.drain()
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            log.warning("draining the old NATS connection failed: %s", exc or type(exc).__name__)

    async def stop(self) -> None:
        for room in list(self.rooms.values()):
            await room.close()
        if self.nc is not None:
            await self.nc.close()

    # -- keys ----------------------------------------------------------------

    async def refresh_keys(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._jwks_fetched_at < JWKS_REFRESH_MIN_S:
            return
        self._jwks_fetched_at = now
        url = self.view.core_url() + "/.well-known/jwks.json"
        try:
            jwks = await asyncio.to_thread(_fetch_json, url)
        except OSError as exc:
            log.warning("fetching keys from %s failed: %s", url, exc)
            return
        self.verifier.load(jwks)

    async def verify(self, token: str) -> Claims:
        if not self.verifier.knows(token):
            await self.refresh_keys()
        return self.verifier.verify(token)

    # -- rooms ---------------------------------------------------------------

    async def open_room(self, room_id: str) -> EdgeRoom:
        room = self.rooms.get(room_id)
        if room is not None and room.ready.is_set():
            return room
        task = self._opening.get(room_id)
        if task is None:
            task = self._opening[room_id] = asyncio.create_task(self._open(room_id))
        return await asyncio.wait_for(asyncio.shield(task), ROOM_OPEN_TIMEOUT_S)

    async def _open(self, room_id: str) -> EdgeRoom:
        try:
            room = EdgeRoom(room_id, self)
            await room.open()
            self.rooms[room_id] = room
            return room
        finally:
            self._opening.pop(room_id, None)

    async def close_idle_rooms(self) -> None:
        """Close rooms without sockets for ``room_idle_s`` (plan key of the edge, default ROOM_IDLE_S)."""
        idle_s = float(self.config.get("room_idle_s", ROOM_IDLE_S))
        while True:
            await asyncio.sleep(idle_s / 4)
            now = time.monotonic()
            for room_id, room in list(self.rooms.items()):
                idle = room.idle_since is not None and now - room.idle_since > idle_s
                if idle and room.outbox.empty() and not room.commits:
                    del self.rooms[room_id]
                    await room.close()


def edge_origins(view: plans.View, edge: dict) -> list[str]:
    """Return the origins an edge's page has.

    These are http://HOST:HTTP_PORT, which on loopback is every name of this
    machine, plus the origin of the edge's ``public_http_url`` when the plan
    sets one. That origin is written as browsers send it in the Origin
    header: lowercase scheme and host, no path, and no port when the port is
    the scheme's default.
    """
    from urllib.parse import urlsplit

    if view.node_host(edge) in ("127.0.0.1", "localhost", "::1"):
        hosts = ["127.0.0.1", "localhost", "[::1]"]
    else:
        hosts = [plans.url_host(view.node_host(edge))]
    origins = [f"http://{host}:{edge['http_port']}" for host in hosts]

    public_url = edge.get("public_http_url")
    if public_url:
        parts = urlsplit(public_url)
        scheme = parts.scheme.lower()
        host = plans.url_host(parts.hostname or "")
        default_port = {"http": 80, "https": 443}.get(scheme)
        if parts.port is None or parts.port == default_port:
            origins.append(f"{scheme}://{host}")
        else:
            origins.append(f"{scheme}://{host}:{parts.port}")
    return origins


def _fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=3) as response:
        return json.load(response)


__all__ = ["EdgeNode", "TokenError"]
