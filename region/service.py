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
* It repairs the core's log: when the core's watermark keeps arriving but
  misses content this replica holds for ``REPAIR_AFTER_S``, the service
  publishes the missing diff into its own region's stream. That covers an
  update whose edge died after the update fanned out but before its stream
  stored it, and a region whose stream the core cannot read.
* It drops the replica of a room idle for ``EVICT_AFTER_S`` once the core's
  watermark covers it, so memory follows the rooms in use, not every room
  ever seen. The next update or sync of the room loads it from the core
  again.
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, Placement, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from ama import subjects
from ama.natsutil import guarded
from ama.replication import Replica, UpdateMessage, decode_sync, decode_update, encode
from ama.room import Room, covers_state, decode_state_vector

log = logging.getLogger("ama.region")

ANTI_ENTROPY_S = 1.0
ACTIVE_ROOM_S = 600.0
SYNC_TIMEOUT_S = 1.0
LOAD_TIMEOUT_S = 2.0
STREAM_MAX_AGE_S = 7 * 24 * 3600
STEP_HEADER = "Ama-Step"
# Set on syncs between region services. They do not count as activity:
# otherwise two regions' anti-entropy would keep each other's rooms active
# forever, and no room would ever go idle.
FROM_HEADER = "Ama-From"
REPAIR_CHECK_S = 1.0
REPAIR_AFTER_S = 5.0
WATERMARK_FRESH_S = 3.0
PUBLISH_TIMEOUT_S = 2.0
EVICT_AFTER_S = 900.0
EVICT_CHECK_S = 10.0


def evictable(idle_s: float, evict_after_s: float, state_vector: dict[int, int], watermark: dict[int, int] | None) -> bool:
    """Tell whether a replica may be dropped: idle long enough, and the core has stored all of it.

    Without a watermark the core may lack content only this replica holds,
    so the replica stays.
    """
    if idle_s < evict_after_s or watermark is None:
        return False
    return covers_state(watermark, state_vector)


class RegionService:
    def __init__(self, nc: Client, region: str, regions: list[str], stream_replicas: int = 1, evict_after_s: float = EVICT_AFTER_S):
        self.nc = nc
        self.region = region
        self.evict_after_s = evict_after_s
        # One per nats-server of the region, at most three: with three, the
        # stream keeps every acked update when its leader's server dies.
        self.stream_replicas = stream_replicas
        self.others = [name for name in regions if name != region]
        self.replicas: dict[str, Replica] = {}
        self.active: dict[str, float] = {}
        self.loaded: set[str] = set()
        self.loading: set[str] = set()
        self.healing: set[str] = set()
        self.ready = asyncio.Event()
        # room -> (watermark bytes, decoded, monotonic time received)
        self.watermarks: dict[str, tuple[bytes, dict[int, int], float]] = {}
        # room -> monotonic time since when the core has been missing content
        self.missing_since: dict[str, float] = {}
        self.pending_repairs: dict[str, UpdateMessage] = {}

    async def run(self) -> None:
        await self._ensure_stream()
        await self.nc.subscribe(subjects.ALL_UPDATES, cb=guarded(self._on_update))
        await self.nc.subscribe(subjects.sync_of_region(self.region), queue=f"region-{self.region}", cb=guarded(self._on_sync))
        await self.nc.subscribe(subjects.watermark("*"), cb=guarded(self._on_watermark))
        self.ready.set()
        log.info("region service ready")
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._anti_entropy())
            tasks.create_task(self._load_missing())
            tasks.create_task(self._repair_core())
            tasks.create_task(self._evict_idle())

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
            num_replicas=self.stream_replicas,
            placement=Placement(cluster=self.region),
        )
        while True:
            try:
                try:
                    await js.add_stream(config)
                except BadRequestError:
                    # The stream exists with another configuration, such as
                    # fewer replicas before servers were added to the region.
                    await js.update_stream(config)
                log.info("stream=%s ready replicas=%d", config.name, self.stream_replicas)
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
        if replica.receive(envelope) and envelope.room in self.loaded and envelope.room not in self.healing:
            self.healing.add(envelope.room)
            asyncio.create_task(self._heal_once(envelope.room))

    async def _on_watermark(self, message) -> None:
        room_id = message.subject.rsplit(".", 1)[-1]
        try:
            decoded = decode_state_vector(message.data)
        except ValueError:
            log.warning("room=%s dropped a malformed watermark", room_id)
            return
        self.watermarks[room_id] = (message.data, decoded, time.monotonic())

    async def _repair_core(self) -> None:
        js = self.nc.jetstream(timeout=5)
        while True:
            await asyncio.sleep(REPAIR_CHECK_S)
            now = time.monotonic()
            for room_id in [room for room in self.replicas if room in self.loaded]:
                if self._core_misses(room_id, now) and now - self.missing_since[room_id] >= REPAIR_AFTER_S:
                    await self._repair(js, room_id)
                    self.missing_since[room_id] = time.monotonic()

    def _core_misses(self, room_id: str, now: float) -> bool:
        """Tell whether the core, while alive, lacks items this replica holds; track since when."""
        watermark = self.watermarks.get(room_id)
        if watermark is None or now - watermark[2] > WATERMARK_FRESH_S:
            self.missing_since.pop(room_id, None)
            return False
        ours = decode_state_vector(self.replicas[room_id].room.state_vector())
        if covers_state(watermark[1], ours):
            self.missing_since.pop(room_id, None)
            return False
        self.missing_since.setdefault(room_id, now)
        return True

    async def _repair(self, js, room_id: str) -> None:
        """Publish the diff the core lacks; a failed publish is retried with the same message.

        The core applies each producer's updates in order, so a numbered
        repair that never reached the stream would hold back every later one.
        """
        replica = self.replicas[room_id]
        message = self.pending_repairs.get(room_id)
        if message is None:
            message = self.pending_repairs[room_id] = replica.publishable(replica.room.diff(self.watermarks[room_id][0]))
        headers = {"Nats-Msg-Id": f"{message.producer}-{message.seq}"}
        try:
            await js.publish(subjects.update(self.region, room_id), encode(message), timeout=PUBLISH_TIMEOUT_S, headers=headers)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            log.warning("room=%s repair publish seq=%d failed, will retry: %s", room_id, message.seq, exc or type(exc).__name__)
            return
        del self.pending_repairs[room_id]
        log.warning("room=%s repaired the core's log with seq=%d bytes=%d", room_id, message.seq, len(message.update))

    async def _evict_idle(self) -> None:
        while True:
            await asyncio.sleep(min(EVICT_CHECK_S, self.evict_after_s))
            self.evict_idle(time.monotonic())

    def evict_idle(self, now: float) -> list[str]:
        """Drop the replicas that ``evictable`` allows and no task is using; return their room ids."""
        busy = self.loading | self.healing | set(self.missing_since) | set(self.pending_repairs)
        evicted = []
        for room_id in [room for room in self.replicas if room in self.loaded and room not in busy]:
            watermark = self.watermarks.get(room_id)
            state = decode_state_vector(self.replicas[room_id].room.state_vector())
            if evictable(now - self.active.get(room_id, now), self.evict_after_s, state, None if watermark is None else watermark[1]):
                for table in (self.replicas, self.active, self.watermarks):
                    table.pop(room_id, None)
                self.loaded.discard(room_id)
                evicted.append(room_id)
        if evicted:
            log.info("evicted %d idle rooms the core has stored; %d replicas left", len(evicted), len(self.replicas))
        return evicted

    async def _on_sync(self, message) -> None:
        room_id = message.subject.rsplit(".", 1)[-1]
        try:
            request = decode_sync(message.data)
        except ValueError as exc:
            log.warning("room=%s dropped an undecodable sync: %s", room_id, exc)
            return
        from_region = (message.headers or {}).get(FROM_HEADER) == "region"
        if from_region and room_id not in self.replicas:
            # A room this region does not hold (never seen, or evicted):
            # the other region's content reaches the core by its own repair.
            if message.reply:
                await self.nc.publish(message.reply, b"", headers={"Ama-Error": "not_open"})
            return
        replica = self.replicas[room_id] if from_region else self.replica(room_id)
        if room_id not in self.loaded:
            # Never wait for the core here: one subscription serves every
            # room's syncs in turn. The requester retries until the room is loaded.
            self._start_load(room_id)
            if message.reply:
                await self.nc.publish(message.reply, b"", headers={"Ama-Error": "loading"})
            return
        step = (message.headers or {}).get(STEP_HEADER, "1")
        if step == "2":
            replica.take_sync(request)
            if message.reply:
                await self.nc.publish(message.reply, b"")
            return
        if message.reply:
            await self.nc.publish(message.reply, encode(replica.answer_sync(request)))

    async def _load(self, room_id: str) -> bool:
        """Load the room's stored state from the core; return False when the core did not respond."""
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

    def _start_load(self, room_id: str) -> None:
        if room_id in self.loading:
            return
        self.loading.add(room_id)

        async def load() -> None:
            try:
                await self._load(room_id)
            finally:
                self.loading.discard(room_id)

        asyncio.create_task(load())

    async def _load_missing(self) -> None:
        while True:
            for room_id in [room for room in self.replicas if room not in self.loaded]:
                self._start_load(room_id)
            await asyncio.sleep(0.5)

    async def _anti_entropy(self) -> None:
        while True:
            await asyncio.sleep(ANTI_ENTROPY_S)
            now = time.monotonic()
            for room_id in [room for room, seen in self.active.items() if now - seen < ACTIVE_ROOM_S]:
                await self._heal(room_id)
                replica = self.replicas.get(room_id)
                if replica is not None:
                    replica.room.check_vote_keys()

    async def _heal_once(self, room_id: str) -> None:
        """Heal a gap with one sync round; later gaps of the room wait until it ends."""
        try:
            await self._heal(room_id)
        finally:
            self.healing.discard(room_id)

    async def _heal(self, room_id: str) -> None:
        for other in self.others:
            await self.sync_with(other, room_id)

    async def sync_with(self, region: str, room_id: str) -> bool:
        """Run a two-way state-vector sync of one room with another region."""
        replica = self.replicas[room_id]
        try:
            reply = await self.nc.request(
                subjects.sync(region, room_id), encode(replica.sync_request()), timeout=SYNC_TIMEOUT_S, headers={FROM_HEADER: "region"},
            )
            if (reply.headers or {}).get("Ama-Error"):
                return False
            step2 = replica.complete_sync(decode_sync(reply.data))
            if step2 is not None:
                await self.nc.publish(subjects.sync(region, room_id), encode(step2), headers={STEP_HEADER: "2", FROM_HEADER: "region"})
            return True
        except (nats.errors.Error, asyncio.TimeoutError, ValueError) as exc:
            log.debug("room=%s sync with region=%s failed: %s", room_id, region, exc or type(exc).__name__)
            return False
