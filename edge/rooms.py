"""An edge's replica of one room: local intents out, everyone else's updates in, views to sockets.

Theory of operation
-------------------
* Opening a room subscribes to its updates and watermark, then runs a
  two-way state-vector sync with the home region before any client gets a
  snapshot. A sync runs again after every NATS reconnect, on a detected gap,
  and every ``SYNC_EVERY_S`` as anti-entropy.
* A local intent is applied to the replica at once. Its update goes into an
  ordered outbox; one publisher sends each update to the home region's stream
  and waits for the stream's acknowledgement before the next, so a producer's
  updates are stored in order; intents queued while one publish is in
  flight go out merged into the next. Only then is an intent acked ``accepted``;
  it is acked ``committed`` once the core's watermark covers its clock.
* Views go out at most once per tick: one patch per audience class, written as the
  same bytes to every socket of that class. A socket whose send buffer is
  over ``STALE_BYTES`` skips patches and gets a fresh snapshot once it drains;
  one that stays stuck for ``STUCK_S`` is closed with 4001.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

import nats.errors
from pycrdt import merge_updates
from websockets.protocol import State

from ama import subjects
from ama.natsutil import guarded, is_fatal
from ama.replication import Replica, decode_sync, decode_update, encode as encode_message
from ama.room import Actor, Room, covers, decode_state_vector
from edge.views import AUDIENCE, STAFF, ClassView, class_of, encode, personal_frame, personal_refresh

log = logging.getLogger("ama.edge.room")

OPEN = State.OPEN
TICK_S = 0.02
SYNC_EVERY_S = 5.0
SYNC_TIMEOUT_S = 1.0
PUBLISH_TIMEOUT_S = 2.0
STALE_BYTES = 256 * 1024
STUCK_S = 10.0
CLOSE_SLOW = 4001
STEP_HEADER = "Ama-Step"
WATERMARK_POLL_S = 1.0
# How long a room may take to complete its first sync before opening fails.
OPEN_SYNC_S = 4.0
# Intents merged into one published update at most.
MAX_BATCH = 256


def text_frame(payload: bytes) -> bytes:
    """Frame a text message as a server does (RFC 6455 section 5.2: FIN set, opcode 1, unmasked)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 1 << 16:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


@dataclass(eq=False, slots=True)
class Client:
    """One joined socket."""

    conn_id: str
    actor: Actor
    websocket: object
    audience_class: str = AUDIENCE
    stale_since: float | None = None
    bucket: object = None
    flood: object = None
    joined_at: float = 0.0

    def write(self, data: bytes, force: bool = False) -> bool:
        """Queue one text frame without waiting; return False when the socket is too far behind.

        ``force`` writes even then: acks and errors are small and must not be skipped.
        """
        websocket = self.websocket
        if websocket.protocol.state is not OPEN:
            return True
        if not force and not self.writable():
            return False
        websocket.protocol.send_text(data)
        websocket.send_data()
        return True


    def writable(self) -> bool:
        return self.websocket.transport.get_write_buffer_size() <= STALE_BYTES


class RoomUnavailable(Exception):
    """A room could not be opened because no region responded to its first sync."""


@dataclass
class PendingCommit:
    client: Client
    intent_id: str
    client_id: int
    clock: int


@dataclass
class OutboxItem:
    client: Client
    intent_id: str
    client_id: int
    clock: int
    update: bytes | None = None


class EdgeRoom:
    def __init__(self, room_id: str, node):
        self.room_id = room_id
        self.node = node
        self.replica = Replica(Room(room_id))
        self.classes = {AUDIENCE: ClassView(AUDIENCE), STAFF: ClassView(STAFF)}
        self.clients: set[Client] = set()
        # The joined sockets of each class, as tuples rebuilt on join and leave, for the broadcast loop.
        self.members: dict[str, tuple[Client, ...]] = {AUDIENCE: (), STAFF: ()}
        self.by_user: dict[str, set[Client]] = defaultdict(set)
        # The joined sockets skipping patches until they drain (``stale_since`` set).
        self.behind: set[Client] = set()
        self.outbox: asyncio.Queue[OutboxItem] = asyncio.Queue()
        self.commits: list[PendingCommit] = []
        self.watermark: dict[int, int] = {}
        self.watermark_at = 0.0
        self.ready = asyncio.Event()
        self.dirty = asyncio.Event()
        self.sync_needed = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.subscriptions = []
        # A room with no sockets counts as idle from the start, so one whose
        # opening outlasted its client's wait still gets closed.
        self.idle_since: float | None = time.monotonic()

    @property
    def room(self) -> Room:
        return self.replica.room

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        nc = self.node.nc
        self.subscriptions = [
            await nc.subscribe(subjects.updates_of_room(self.room_id), cb=guarded(self._on_update)),
            await nc.subscribe(subjects.watermark(self.room_id), cb=guarded(self._on_watermark)),
        ]
        if not await self._first_sync():
            await self.close()
            raise RoomUnavailable(f"room {self.room_id} could not be synced with any region within {OPEN_SYNC_S:.0f} s")
        self.room.take_changes()
        for view in self.classes.values():
            view.prime(self.room)
        self.tasks = [
            asyncio.create_task(self._keep_running(self._publish), name=f"publish-{self.room_id}"),
            asyncio.create_task(self._keep_running(self._tick), name=f"tick-{self.room_id}"),
            asyncio.create_task(self._keep_running(self._keep_synced), name=f"sync-{self.room_id}"),
            asyncio.create_task(self._keep_running(self._poll_watermark), name=f"watermark-{self.room_id}"),
        ]
        self.ready.set()
        log.info("room=%s opened producer=%s", self.room_id, self.replica.producer)

    async def _first_sync(self) -> bool:
        """Sync until the home region responds, for up to ``OPEN_SYNC_S``.

        A replica that never synced knows none of the room's settings or bans,
        so intents checked against it could slip past pre-moderation or a ban:
        the room does not open without one successful sync.
        """
        deadline = time.monotonic() + OPEN_SYNC_S
        while time.monotonic() < deadline:
            if await self.sync():
                return True
            await asyncio.sleep(0.2)
        return False

    async def _keep_running(self, loop) -> None:
        """Run one of the room's loops, logging and restarting it if it fails, so the room never goes silent."""
        while True:
            try:
                await loop()
                return
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                log.error("room=%s loop %s failed, restarting it: %r", self.room_id, loop.__name__, exc)
                await asyncio.sleep(1.0)

    async def move_to(self, nc) -> None:
        """Subscribe on a new NATS connection, drop the old subscriptions, then sync with the new home."""
        old = self.subscriptions
        self.subscriptions = [
            await nc.subscribe(subjects.updates_of_room(self.room_id), cb=guarded(self._on_update)),
            await nc.subscribe(subjects.watermark(self.room_id), cb=guarded(self._on_watermark)),
        ]
        for subscription in old:
            try:
                await subscription.unsubscribe()
            except nats.errors.Error:
                pass
        self.sync_needed.set()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for subscription in self.subscriptions:
            try:
                await subscription.unsubscribe()
            except nats.errors.Error:
                pass
        log.info("room=%s closed", self.room_id)

    # -- clients ---------------------------------------------------------------

    def attach(self, client: Client, last_seq: int | None) -> None:
        client.audience_class = class_of(client.actor.role)
        view = self.classes[client.audience_class]
        self.clients.add(client)
        self.members[client.audience_class] += (client,)
        self.by_user[client.actor.user_id].add(client)
        self.idle_since = None
        replay = None if last_seq is None else view.since(last_seq)
        if replay is None:
            self._send(client, view.snapshot(self.room, client.actor))
            return
        for data in replay:
            self._send(client, data)
        self._send(client, personal_refresh(self.room, client.actor))

    def _send(self, client: Client, data: bytes) -> None:
        """Write a view frame; a socket that cannot take it is marked behind and gets a snapshot later."""
        if client.stale_since is None and client.write(data):
            return
        if client.stale_since is None:
            client.stale_since = time.monotonic()
            self.behind.add(client)
        self.dirty.set()

    def detach(self, client: Client) -> None:
        if client in self.clients:
            self.members[client.audience_class] = tuple(member for member in self.members[client.audience_class] if member is not client)
        self.clients.discard(client)
        self.behind.discard(client)
        users = self.by_user.get(client.actor.user_id)
        if users is not None:
            users.discard(client)
            if not users:
                del self.by_user[client.actor.user_id]
        if not self.clients:
            self.idle_since = time.monotonic()

    def submit(self, client: Client, intent) -> None:
        """Apply an intent from a joined client; raises FrameError when it is rejected."""
        applied = self.room.apply_intent(intent, client.actor, int(time.time() * 1000))
        self.outbox.put_nowait(OutboxItem(client, applied.intent_id, applied.client_id, applied.commit_clock, applied.update))
        if applied.update is not None:
            self.dirty.set()

    # -- replication -----------------------------------------------------------

    async def _on_update(self, message) -> None:
        try:
            envelope = decode_update(message.data)
        except ValueError as exc:
            log.warning("room=%s dropped an undecodable update: %s", self.room_id, exc)
            return
        if envelope.room != self.room_id:
            return
        if self.replica.receive(envelope):
            self.sync_needed.set()
        self.dirty.set()

    async def _on_watermark(self, message) -> None:
        try:
            self.watermark = decode_state_vector(message.data)
        except ValueError:
            log.warning("room=%s dropped a malformed watermark", self.room_id)
            return
        self.watermark_at = time.monotonic()
        self._ack_commits()

    async def _poll_watermark(self) -> None:
        """Ask the core for the watermark while commits wait and none arrived lately.

        The core publishes watermarks only for rooms with recent activity, and
        core NATS may drop one, so an edge with unacked commits requests it.
        """
        while True:
            await asyncio.sleep(WATERMARK_POLL_S)
            if not self.commits or time.monotonic() - self.watermark_at < WATERMARK_POLL_S:
                continue
            try:
                reply = await self.node.nc.request(subjects.core_watermark(self.room_id), b"", timeout=SYNC_TIMEOUT_S)
                self.watermark = decode_state_vector(reply.data)
            except (nats.errors.Error, asyncio.TimeoutError, ValueError) as exc:
                log.debug("room=%s watermark request failed: %s", self.room_id, exc or type(exc).__name__)
                continue
            self.watermark_at = time.monotonic()
            self._ack_commits()

    def _ack_commits(self) -> None:
        waiting = []
        for commit in self.commits:
            if covers(self.watermark, commit.client_id, commit.clock):
                commit.client.write(encode({"type": "ack", "id": commit.intent_id, "status": "committed"}), force=True)
            else:
                waiting.append(commit)
        self.commits = waiting

    async def sync(self) -> bool:
        """Run a two-way state-vector sync with the home region; return False on failure."""
        region = self.node.current_region()
        nc = self.node.nc
        try:
            reply = await nc.request(subjects.sync(region, self.room_id), encode_message(self.replica.sync_request()), timeout=SYNC_TIMEOUT_S)
            if (reply.headers or {}).get("Ama-Error"):
                log.info("room=%s sync with region=%s not ready: %s", self.room_id, region, reply.headers["Ama-Error"])
                return False
            step2 = self.replica.complete_sync(decode_sync(reply.data))
            if step2 is not None:
                await nc.publish(subjects.sync(region, self.room_id), encode_message(step2), headers={STEP_HEADER: "2"})
        except (nats.errors.Error, asyncio.TimeoutError, ValueError) as exc:
            log.warning("room=%s sync with region=%s failed: %s", self.room_id, region, exc or type(exc).__name__)
            return False
        self.dirty.set()
        return True

    async def _keep_synced(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.sync_needed.wait(), SYNC_EVERY_S)
            except asyncio.TimeoutError:
                pass
            self.sync_needed.clear()
            await self.sync()
            if self.replica.room.check_vote_keys():
                self.dirty.set()

    async def _publish(self) -> None:
        """Publish the outbox in order, one message per batch of the intents queued meanwhile.

        Updates are numbered when published, not when applied, so a batch of
        local updates merged into one message takes one seq and one stream
        acknowledgement instead of one round trip each.
        """
        while True:
            batch = [await self.outbox.get()]
            while not self.outbox.empty() and len(batch) < MAX_BATCH:
                batch.append(self.outbox.get_nowait())
            updates = [item.update for item in batch if item.update is not None]
            if updates:
                merged = updates[0] if len(updates) == 1 else merge_updates(*updates)
                await self._publish_one(self.replica.publishable(merged))
            for item in batch:
                item.client.write(encode({"type": "ack", "id": item.intent_id, "status": "accepted"}), force=True)
                self.commits.append(PendingCommit(item.client, item.intent_id, item.client_id, item.clock))
            self._ack_commits()

    async def _publish_one(self, message) -> None:
        """Publish until the home region's stream has stored the update; a retry keeps the message id."""
        data = encode_message(message)
        headers = {"Nats-Msg-Id": f"{message.producer}-{message.seq}"}
        delay = 0.05
        while True:
            region = self.node.current_region()
            reconnected = self.node.reconnected
            publish = asyncio.ensure_future(self.node.js.publish(subjects.update(region, self.room_id), data, timeout=PUBLISH_TIMEOUT_S, headers=headers))
            rehomed = asyncio.ensure_future(reconnected.wait())
            # A reconnect means a new home region: the request to the old one
            # will never get a response, so send again at once instead of
            # waiting out its timeout.
            await asyncio.wait({publish, rehomed}, return_when=asyncio.FIRST_COMPLETED)
            rehomed.cancel()
            if not publish.done():
                publish.cancel()
                log.info("room=%s publish seq=%d resent after re-home to region=%s", self.room_id, message.seq, self.node.current_region())
                continue
            try:
                publish.result()
                return
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                log.warning("room=%s publish seq=%d to region=%s failed, retrying: %s", self.room_id, message.seq, region, exc or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- views -----------------------------------------------------------------

    async def _tick(self) -> None:
        """Flush on the first change after a quiet tick, then at most once per ``TICK_S``.

        An idle room's first change goes out at once; under load changes are
        batched into one patch per tick. A tick counts from the start of a
        flush, so a flush to many sockets that outlasts a tick is followed by
        the next one at once. A change applied during a flush then goes out
        in the next flush, with no tick of waiting between them.
        """
        started = -TICK_S
        while True:
            await self.dirty.wait()
            await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - started)))
            self.dirty.clear()
            started = time.monotonic()
            self.flush()

    def flush(self) -> None:
        """Send this tick's patches and personal frames."""
        changes = self.room.take_changes()
        now = time.monotonic()
        for name, view in self.classes.items():
            patch = view.patch(self.room, changes)
            if patch is not None:
                self._broadcast(text_frame(patch), self.members[name], now)
        for client in list(self.behind):
            self._catch_up(client, now)
        for user_id in self._users_touched(changes):
            for client in list(self.by_user.get(user_id, ())):
                personal = personal_frame(self.room, client.actor, changes)
                if personal is not None:
                    self._send(client, personal)

    def _users_touched(self, changes) -> set[str]:
        """Return the local users whose personal facts (votes, own questions) changed."""
        users = {user_id for user_id, _ in changes.votes}
        users.update(self.room.author_of(question_id) for question_id in changes.questions)
        return users & self.by_user.keys()

    def _broadcast(self, frame: bytes, members: tuple[Client, ...], now: float) -> None:
        """Write one framed patch to every up-to-date socket of a class: the edge's hottest loop.

        It reads the protocol's state attribute directly (websockets 17):
        the public property costs a Python call per socket.
        """
        for client in members:
            if client.stale_since is not None:
                continue
            websocket = client.websocket
            if websocket.protocol._state is not OPEN:
                continue
            transport = websocket.transport
            if transport.get_write_buffer_size() > STALE_BYTES:
                client.stale_since = now
                self.behind.add(client)
                self.dirty.set()
            else:
                transport.write(frame)

    def _catch_up(self, client: Client, now: float) -> None:
        """Send a socket that fell behind a fresh snapshot once it drains; close it if it stays stuck."""
        if client.writable():
            # A snapshot replaces every patch and personal frame it skipped.
            client.write(self.classes[client.audience_class].snapshot(self.room, client.actor))
            client.stale_since = None
            self.behind.discard(client)
        elif now - client.stale_since > STUCK_S:
            log.warning("room=%s conn=%s closed: stuck for %.0f s", self.room_id, client.conn_id, now - client.stale_since)
            asyncio.create_task(client.websocket.close(CLOSE_SLOW, "too slow: reconnect to resume"))
            self.detach(client)
        else:
            self.dirty.set()
