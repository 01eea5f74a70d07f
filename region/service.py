"""The region service: a replica of every active room, sync answers, anti-entropy, the region stream.

Theory of operation
-------------------
* It subscribes to every region's updates, so that it holds a replica of
  every room with activity anywhere, and applies them in producer order.
* A replica for a room it has not seen is first loaded from the core (the
  room's whole stored state), so that after a restart of the whole cluster no
  edge syncs against an empty region.
* Edges and other regions send state-vector syncs to ``ama.sync.REGION.ROOM``;
  the service answers step 1 with the diff and takes step 2 diffs.
* Every ``ANTI_ENTROPY_S`` it runs a two-way sync of each active room with
  every other region, so a partition or a lost message heals by itself.
* It creates its region's JetStream stream, which stores what the region's
  edges publish until the core has consumed it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, Placement, RetentionPolicy, StorageType, StreamConfig

from ama import subjects
from ama.replication import Replica, decode_sync, decode_update, encode
from ama.room import Room

log = logging.getLogger("ama.region")

ANTI_ENTROPY_S = 1.0
ACTIVE_ROOM_S = 600.0
SYNC_TIMEOUT_S = 1.0
LOAD_TIMEOUT_S = 2.0
STREAM_MAX_AGE_S = 7 * 24 * 3600
STEP_HEADER = "Ama-Step"


class RegionService:
    def __init__(self, nc: Client, region: str, regions: list[str]):
        self.nc = nc
        self.region = region
        self.others = [name for name in regions if name != region]
        self.replicas: dict[str, Replica] = {}
        self.active: dict[str, float] = {}
        self.loaded: set[str] = set()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        await self._ensure_stream()
        await self.nc.subscribe(subjects.ALL_UPDATES, cb=self._on_update)
        await self.nc.subscribe(subjects.sync_of_region(self.region), queue=f"region-{self.region}", cb=self._on_sync)
        self.ready.set()
        log.info("region service ready")
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._anti_entropy())
            tasks.create_task(self._load_missing())

    async def _ensure_stream(self) -> None:
        js = self.nc.jetstream(timeout=5)
        config = StreamConfig(
            name=subjects.stream(self.region),
            subjects=[subjects.updates_of_region(self.region)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=STREAM_MAX_AGE_S,
            duplicate_window=120,
            num_replicas=1,
            placement=Placement(cluster=self.region),
        )
        while True:
            try:
                await js.add_stream(config)
                log.info("stream=%s ready", config.name)
                return
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.info("stream=%s not created yet, retrying: %s", config.name, exc or type(exc).__name__)
                await asyncio.sleep(1)

    def replica(self, room_id: str) -> Replica:
        replica = self.replicas.get(room_id)
        if replica is None:
            replica = self.replicas[room_id] = Replica(Room(room_id))
            log.info("room=%s replica opened", room_id)
        self.active[room_id] = time.monotonic()
        return replica

    async def _on_update(self, message) -> None:
        try:
            envelope = decode_update(message.data)
            subjects.check_token(envelope.room, "room id")
        except ValueError as exc:
            log.warning("dropped an undecodable update on %s: %s", message.subject, exc)
            return
        replica = self.replica(envelope.room)
        if replica.receive(envelope) and envelope.room in self.loaded:
            asyncio.create_task(self._heal(envelope.room))

    async def _on_sync(self, message) -> None:
        room_id = message.subject.rsplit(".", 1)[-1]
        try:
            request = decode_sync(message.data)
        except ValueError as exc:
            log.warning("room=%s dropped an undecodable sync: %s", room_id, exc)
            return
        replica = self.replica(room_id)
        if room_id not in self.loaded:
            await self._load(room_id)
        step = (message.headers or {}).get(STEP_HEADER, "1")
        if step == "2":
            replica.take_sync(request)
            if message.reply:
                await self.nc.publish(message.reply, b"")
            return
        if message.reply:
            await self.nc.publish(message.reply, encode(replica.answer_sync(request)))

    async def _load(self, room_id: str) -> bool:
        """Load the room's stored state from the core; return False when the core did not answer."""
        try:
            reply = await self.nc.request(subjects.core_load(room_id), b"", timeout=LOAD_TIMEOUT_S)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            log.warning("room=%s load from core failed, will retry: %s", room_id, exc or type(exc).__name__)
            return False
        if (reply.headers or {}).get("Ama-Error") == "unknown_room":
            log.warning("room=%s is unknown to the core", room_id)
        else:
            self.replica(room_id).take_sync(decode_sync(reply.data))
        self.loaded.add(room_id)
        return True

    async def _load_missing(self) -> None:
        while True:
            for room_id in [room for room in self.replicas if room not in self.loaded]:
                await self._load(room_id)
            await asyncio.sleep(0.5)

    async def _anti_entropy(self) -> None:
        while True:
            await asyncio.sleep(ANTI_ENTROPY_S)
            now = time.monotonic()
            for room_id in [room for room, seen in self.active.items() if now - seen < ACTIVE_ROOM_S]:
                await self._heal(room_id)

    async def _heal(self, room_id: str) -> None:
        for other in self.others:
            await self.sync_with(other, room_id)

    async def sync_with(self, region: str, room_id: str) -> bool:
        """Run a two-way state-vector sync of one room with another region."""
        replica = self.replicas[room_id]
        try:
            reply = await self.nc.request(subjects.sync(region, room_id), encode(replica.sync_request()), timeout=SYNC_TIMEOUT_S)
            step2 = replica.complete_sync(decode_sync(reply.data))
            if step2 is not None:
                await self.nc.publish(subjects.sync(region, room_id), encode(step2), headers={STEP_HEADER: "2"})
            return True
        except (nats.errors.Error, asyncio.TimeoutError, ValueError) as exc:
            log.debug("room=%s sync with region=%s failed: %s", room_id, region, exc or type(exc).__name__)
            return False
