"""Liveness of regions and edges, from the heartbeats every service publishes on NATS.

Region services and edges publish a heartbeat every ``HEARTBEAT_S``. A
region counts as unhealthy when none of its region services was heard from
for ``TIMEOUT_S``; an edge likewise. Until ``TIMEOUT_S`` has passed since
the board started, nothing counts as unhealthy, so a fresh process does not
route everyone away from the regions it has not heard from yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import nats.errors

from ama import subjects

log = logging.getLogger("ama.health")

HEARTBEAT_S = 1.0
TIMEOUT_S = 3.5


class HealthBoard:
    """The last heartbeat seen from each node (pure: the caller passes the time)."""

    def __init__(self, started_at: float):
        self.started_at = started_at
        self.last_seen: dict[tuple[str, str], float] = {}
        self.region_of: dict[tuple[str, str], str] = {}

    def record(self, kind: str, name: str, region: str, now: float) -> None:
        self.last_seen[(kind, name)] = now
        self.region_of[(kind, name)] = region

    def _live(self, kind: str, now: float) -> set[str]:
        return {name for (seen_kind, name), seen in self.last_seen.items() if seen_kind == kind and now - seen < TIMEOUT_S}

    def unhealthy_regions(self, regions: list[str], now: float) -> set[str]:
        if now - self.started_at < TIMEOUT_S:
            return set()
        live = {self.region_of[("region", name)] for name in self._live("region", now)}
        return {region for region in regions if region not in live}

    def unhealthy_edges(self, edges: list[str], now: float) -> set[str]:
        if now - self.started_at < TIMEOUT_S:
            return set()
        live = self._live("edge", now)
        return {edge for edge in edges if edge not in live}


async def publish_heartbeats(connection, kind: str, name: str, region) -> None:
    """Publish this node's heartbeat forever.

    ``connection`` and ``region`` are callables returning the current NATS
    connection and region, which change when an edge moves home.
    """
    while True:
        try:
            payload = json.dumps({"kind": kind, "name": name, "region": region()}).encode()
            await connection().publish(subjects.health(kind, name), payload)
        except nats.errors.Error as exc:
            log.debug("heartbeat publish failed: %s", exc)
        await asyncio.sleep(HEARTBEAT_S)


async def follow_heartbeats(nc, board: HealthBoard) -> None:
    async def on_heartbeat(message) -> None:
        try:
            beat = json.loads(message.data)
            board.record(str(beat["kind"]), str(beat["name"]), str(beat["region"]), time.monotonic())
        except (ValueError, KeyError, TypeError):
            log.debug("dropped a malformed heartbeat on %s", message.subject)

    await nc.subscribe(subjects.HEALTH_ALL, cb=on_heartbeat)
