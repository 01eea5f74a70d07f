"""The core's replication side: ingest every region's stream, store, publish commit watermarks.

Theory of operation
-------------------
Each region's JetStream stream holds the updates its edges produced. The core
keeps one durable pull consumer per region stream. A fetched batch is stored in
one SQLite transaction (deduplicated by update hash) and only then acked, so a
crash between the two re-delivers the batch and the hash makes that harmless.

Stored updates are also applied, in producer order, to the core's own replica
of each room. Its state vector is the commit watermark: everything it covers
is in the log. The core publishes the watermark of every room that changed,
on a short tick, and republishes recently active rooms' watermarks every
second so that an edge that missed one (core NATS is at-most-once) catches up.

Rooms are rebuilt from stored CRDT updates (a snapshot, then the log after
it), never from exported rows: a rebuilt document with new item ids would
duplicate every question when merged with the replicas.
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
from nats.aio.client import Client
from nats.js.errors import NotFoundError, ServiceUnavailableError

from ama import subjects
from ama.natsutil import guarded, is_fatal
from ama.replication import Replica, SyncMessage, UpdateMessage, decode_update, encode
from ama.room import Room
from core.store import NewUpdate, Snapshot, Store

log = logging.getLogger("ama.core.ingest")

FETCH_BATCH = 512
FETCH_TIMEOUT_S = 1.0
WATERMARK_TICK_S = 0.05
WATERMARK_REFRESH_S = 1.0
ACTIVE_ROOM_S = 120.0
# A room's replica unused this long is dropped; the store keeps the room.
EVICT_AFTER_S = 900.0
EVICT_CHECK_S = 10.0
SNAPSHOT_EVERY = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


class CoreReplicas:
    """The core's replica of each room, loaded from the store on first use."""

    def __init__(self, store: Store):
        self.store = store
        self.replicas: dict[str, Replica] = {}
        self.last_ids: dict[str, int] = {}
        self.since_snapshot: dict[str, int] = {}
        # Log ids stored but not yet applied to the replica, per room.
        self.unapplied: dict[str, set[int]] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        # Monotonic time each replica was last used.
        self.used_at: dict[str, float] = {}

    async def get(self, room_id: str) -> Replica:
        self.used_at[room_id] = time.monotonic()
        replica = self.replicas.get(room_id)
        if replica is not None:
            return replica
        lock = self._loading.setdefault(room_id, asyncio.Lock())
        async with lock:
            if room_id not in self.replicas:
                self.replicas[room_id] = await self._load(room_id)
        return self.replicas[room_id]

    async def _load(self, room_id: str) -> Replica:
        replica = Replica(Room(room_id))
        snapshot = await self.store.snapshot(room_id)
        last_id = 0
        if snapshot is not None:
            replica.take_sync(SyncMessage(room_id, b"", snapshot.seqs, snapshot.state))
            last_id = snapshot.last_update_id
        stored = await self.store.updates_after(room_id, last_id)
        for update in stored:
            self._apply(replica, update.producer, update.seq, update.data)
        if replica.delivery.has_gap:
            # NOTE: a gap in the stored log means a producer's earlier update
            # never reached the core (its content came in a region's repair
            # instead); apply what is held anyway, since losing stored content
            # is worse than the small risk of out-of-order loss.
            log.warning("room=%s rebuilt with %d updates out of producer order", room_id, len(replica.delivery.held))
            for update in list(replica.delivery.held.values()):
                replica.apply_unordered(update)
            replica.delivery.held.clear()
            replica.delivery.blocked.clear()
        self.last_ids[room_id] = stored[-1].id if stored else last_id
        self.since_snapshot[room_id] = len(stored)
        log.info("room=%s loaded from store updates=%d snapshot=%s", room_id, len(stored), snapshot is not None)
        return replica

    @staticmethod
    def _apply(replica: Replica, producer: int, seq: int, data: bytes) -> None:
        replica.receive(UpdateMessage(replica.room.room_id, producer, seq, data))

    async def add_stored(self, room_id: str, log_id: int, producer: int, seq: int, data: bytes) -> None:
        replica = await self.get(room_id)
        self._apply(replica, producer, seq, data)
        self.last_ids[room_id] = max(self.last_ids.get(room_id, 0), log_id)
        self.since_snapshot[room_id] = self.since_snapshot.get(room_id, 0) + 1
        if self.since_snapshot[room_id] >= SNAPSHOT_EVERY and not replica.delivery.has_gap and not replica.room.has_pending:
            await self.snapshot(room_id)

    async def evict_idle(self, now: float, idle_s: float) -> list[str]:
        """Drop the replicas unused for ``idle_s`` whose every stored update is applied; return their room ids.

        A snapshot is taken first unless one covers the replica already, so
        the next ``get`` loads the room quickly. A replica used while the
        snapshot is written stays.
        """
        evicted = []
        for room_id in [room for room, used in self.used_at.items() if now - used >= idle_s]:
            replica = self.replicas.get(room_id)
            if replica is not None and (self.unapplied.get(room_id) or replica.delivery.has_gap or replica.room.has_pending):
                continue
            used = self.used_at[room_id]
            if replica is not None and self.since_snapshot.get(room_id, 0) > 0:
                await self.snapshot(room_id)
            if self.used_at.get(room_id) != used or self.unapplied.get(room_id):
                continue
            for table in (self.replicas, self.last_ids, self.since_snapshot, self.unapplied, self._loading, self.used_at):
                table.pop(room_id, None)
            evicted.append(room_id)
        if evicted:
            log.info("evicted %d idle rooms; %d replicas left", len(evicted), len(self.replicas))
        return evicted

    async def snapshot(self, room_id: str) -> None:
        """Store the room's state, covering every log id below the first one not yet applied.

        Consumers of different regions interleave, so a later log id can be
        applied before an earlier one; the snapshot must not claim the earlier.
        """
        replica = self.replicas[room_id]
        waiting = self.unapplied.get(room_id)
        covered = min(waiting) - 1 if waiting else self.last_ids[room_id]
        snapshot = Snapshot(covered, replica.room.diff(), dict(replica.delivery.seqs))
        await self.store.save_snapshot(room_id, snapshot, now_ms())
        self.since_snapshot[room_id] = 0
        log.info("room=%s snapshot at update=%d", room_id, snapshot.last_update_id)


class Ingest:
    """Consumes every region's update stream into the store and publishes watermarks."""

    def __init__(self, nc: Client, replicas: CoreReplicas, regions: list[str], evict_after_s: float = EVICT_AFTER_S):
        self.nc = nc
        self.evict_after_s = evict_after_s
        self.js = nc.jetstream(timeout=5)
        self.replicas = replicas
        self.regions = regions
        self.dirty: set[str] = set()
        self.active: dict[str, float] = {}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for region in self.regions:
                tasks.create_task(self._consume(region))
            tasks.create_task(self._publish_watermarks())
            tasks.create_task(self._serve_loads())
            tasks.create_task(self._evict_idle())

    async def _evict_idle(self) -> None:
        while True:
            await asyncio.sleep(min(EVICT_CHECK_S, self.evict_after_s))
            await self.replicas.evict_idle(time.monotonic(), self.evict_after_s)

    async def _consume(self, region: str) -> None:
        subscription = None
        while subscription is None:
            try:
                subscription = await self.js.pull_subscribe(
                    subjects.updates_of_region(region), durable=subjects.core_consumer(region), stream=subjects.stream(region)
                )
            except (NotFoundError, nats.errors.Error, asyncio.TimeoutError) as exc:
                log.info("stream=%s not ready, retrying: %s", subjects.stream(region), exc or type(exc).__name__)
                await asyncio.sleep(1)
        log.info("consuming stream=%s", subjects.stream(region))
        while True:
            try:
                messages = await subscription.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S)
            except asyncio.TimeoutError:
                continue
            except nats.errors.Error as exc:
                # ServiceUnavailableError carries no description: it means the
                # stream's region cannot be reached over the gateways now.
                reason = "the stream's region is unreachable (no JetStream responders)" if isinstance(exc, ServiceUnavailableError) else str(exc)
                log.warning("fetch from stream=%s failed, retrying every 0.5 s: %s", subjects.stream(region), reason)
                await asyncio.sleep(0.5)
                continue
            await self._store_batch(region, messages)

    async def _store_batch(self, region: str, messages: list) -> None:
        updates = []
        for message in messages:
            try:
                envelope = decode_update(message.data)
                subjects.check_token(envelope.room, "room id")
            except ValueError as exc:
                log.error("stream=%s dropped an undecodable message seq=%s: %s", subjects.stream(region), message.metadata.sequence.stream, exc)
                updates.append(None)
                continue
            updates.append(NewUpdate(envelope.room, envelope.producer, envelope.seq, envelope.update, region))
        stored = await self.replicas.store.append([u for u in updates if u is not None], now_ms())
        for update, log_id in zip([u for u in updates if u is not None], stored):
            if log_id is not None:
                self.replicas.unapplied.setdefault(update.room, set()).add(log_id)
        log_ids = iter(stored)
        for update in updates:
            if update is None:
                continue
            log_id = next(log_ids)
            if log_id is not None:
                try:
                    await self.replicas.add_stored(update.room, log_id, update.producer, update.seq, update.data)
                except BaseException as exc:
                    if is_fatal(exc):
                        raise
                    # The update is in the log already; it stays unapplied, so
                    # no snapshot covers it and a restart replays it.
                    log.error("room=%s stored update=%d could not be applied: %r", update.room, log_id, exc)
                else:
                    self.replicas.unapplied[update.room].discard(log_id)
            self._touch(update.room)
        for message in messages:
            await message.ack()

    def _touch(self, room_id: str) -> None:
        self.dirty.add(room_id)
        self.active[room_id] = time.monotonic()

    async def _publish_watermarks(self) -> None:
        last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(WATERMARK_TICK_S)
            rooms, self.dirty = self.dirty, set()
            now = time.monotonic()
            refresh = now - last_refresh >= WATERMARK_REFRESH_S
            if refresh:
                last_refresh = now
                self.active = {room: seen for room, seen in self.active.items() if now - seen < ACTIVE_ROOM_S}
                rooms |= set(self.active)
            for room_id in rooms:
                replica = self.replicas.replicas.get(room_id)
                if replica is None:
                    continue
                if refresh:
                    # O(votes), so on the refresh cadence, not on every tick.
                    replica.room.check_vote_keys()
                try:
                    await self.nc.publish(subjects.watermark(room_id), replica.room.state_vector())
                except nats.errors.Error as exc:
                    log.warning("room=%s watermark publish failed: %s", room_id, exc)

    async def _serve_loads(self) -> None:
        async def answer(message) -> None:
            room_id = message.subject.rsplit(".", 1)[-1]
            if await self.replicas.store.room(room_id) is None:
                await self.nc.publish(message.reply, b"", headers={"Ama-Error": "unknown_room"})
                return
            replica = await self.replicas.get(room_id)
            self.active[room_id] = time.monotonic()
            answer = SyncMessage(room_id, replica.room.state_vector(), dict(replica.delivery.seqs), replica.room.diff())
            await message.respond(encode(answer))

        async def answer_watermark(message) -> None:
            room_id = message.subject.rsplit(".", 1)[-1]
            if await self.replicas.store.room(room_id) is None:
                await self.nc.publish(message.reply, b"", headers={"Ama-Error": "unknown_room"})
                return
            replica = await self.replicas.get(room_id)
            await message.respond(replica.room.state_vector())

        await self.nc.subscribe(subjects.CORE_LOAD_ALL, queue="core", cb=guarded(answer))
        await self.nc.subscribe(subjects.CORE_WATERMARK_ALL, queue="core", cb=guarded(answer_watermark))
