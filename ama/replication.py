"""Replication of room documents: in-order delivery per producer and two-way state-vector sync.

Theory of operation
-------------------
Every replica that writes to a room (an edge's replica, or the core when it
creates a room) is a *producer*, named by its Yjs client id. It numbers its
updates 1, 2, 3, ... and publishes each as an ``UpdateMessage``.

pycrdt 0.14.13 can lose an overwritten map key for good when one producer's
updates are applied out of order, so a receiver applies producer P's update
``n`` only after ``1..n-1``. ``seqs[P] = n`` is the invariant "this replica's
document contains every update of P up to n". An update that arrives early is
held and the replica requests a state-vector sync; a repeat is dropped.

A sync is the Yjs sync protocol's step 1 and step 2 done both ways: the
requester sends its state vector and ``seqs``; the responder returns the diff
the requester lacks, its own state vector and ``seqs``; the requester applies
the diff, raises each ``seqs`` entry to the responder's (the invariant carries
over because it now contains everything the responder had), and sends back the
diff the responder lacks. After that, held updates that have become next in
line are applied and the rest are dropped as already contained.

Nothing here does I/O; callers move the messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from ama.room import Room

# Updates held per room while waiting for a sync. Beyond this the oldest are
# dropped: edges and region services get their content from the next sync,
# and the core (which does not sync) from a region service's repair.
MAX_HELD_UPDATES = 10_000


class UpdateMessage(msgspec.Struct, array_like=True):
    """One producer's update to one room, as published on an update subject."""

    room: str
    producer: int
    seq: int
    update: bytes


class SyncMessage(msgspec.Struct, array_like=True):
    """A step of the two-way sync: a state vector, the producers' seqs, and a diff (may be empty)."""

    room: str
    state_vector: bytes
    seqs: dict[int, int]
    update: bytes = b""


_update_encoder = msgspec.msgpack.Encoder()
_update_decoder = msgspec.msgpack.Decoder(UpdateMessage)
_sync_decoder = msgspec.msgpack.Decoder(SyncMessage)


def encode(message: UpdateMessage | SyncMessage) -> bytes:
    return _update_encoder.encode(message)


def decode_update(data: bytes) -> UpdateMessage:
    return _update_decoder.decode(data)


def decode_sync(data: bytes) -> SyncMessage:
    return _sync_decoder.decode(data)


@dataclass
class Delivery:
    """Per-producer in-order delivery for one replica.

    A producer is *blocked* while one of its updates waits inside pycrdt for
    an item from another producer: its later updates are held until the
    replica has nothing pending, and that update itself is not counted in
    ``seqs`` so no peer learns that this replica has it.
    """

    seqs: dict[int, int] = field(default_factory=dict)
    held: dict[tuple[int, int], bytes] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)

    def offer(self, producer: int, seq: int, update: bytes) -> list[tuple[int, bytes]]:
        """Take one received update; return (seq, update) pairs of ``producer`` to apply now, in order."""
        last = self.seqs.get(producer, 0)
        if seq <= last:
            return []
        if seq > last + 1 or producer in self.blocked:
            self._hold(producer, seq, update)
            return []
        self.seqs[producer] = seq
        return [(seq, update), *self._drain(producer)]

    @property
    def has_gap(self) -> bool:
        """Tell whether updates are held: a sync is needed to fill their gap or settle a block."""
        return bool(self.held)

    def block(self, producer: int, unapplied: list[tuple[int, bytes]]) -> None:
        """Hold ``unapplied`` again (its first update is pending inside pycrdt) and block the producer."""
        self.blocked.add(producer)
        self.seqs[producer] = unapplied[0][0] - 1
        for seq, update in unapplied:
            self.held[(producer, seq)] = update

    def release(self) -> list[tuple[int, list[tuple[int, bytes]]]]:
        """Unblock every producer; return each one's updates that are now next in line."""
        self.blocked.clear()
        return self._drain_all()

    def merge(self, seqs: dict[int, int]) -> list[tuple[int, list[tuple[int, bytes]]]]:
        """Raise seqs to a synced peer's; return held updates of unblocked producers now next in line."""
        for producer, seq in seqs.items():
            if seq > self.seqs.get(producer, 0):
                self.seqs[producer] = seq
        last = self.seqs
        self.held = {key: update for key, update in self.held.items() if key[1] > last.get(key[0], 0)}
        return self._drain_all()

    def _drain_all(self) -> list[tuple[int, list[tuple[int, bytes]]]]:
        ready = []
        for producer in sorted({producer for producer, _ in self.held} - self.blocked):
            chain = self._drain(producer)
            if chain:
                ready.append((producer, chain))
        return ready

    def _hold(self, producer: int, seq: int, update: bytes) -> None:
        if len(self.held) >= MAX_HELD_UPDATES:
            del self.held[next(iter(self.held))]
        self.held[(producer, seq)] = update

    def _drain(self, producer: int) -> list[tuple[int, bytes]]:
        ready = []
        while (producer, self.seqs.get(producer, 0) + 1) in self.held:
            seq = self.seqs.get(producer, 0) + 1
            ready.append((seq, self.held.pop((producer, seq))))
            self.seqs[producer] = seq
        return ready


class Replica:
    """A room replica that produces, receives and syncs updates (no I/O)."""

    def __init__(self, room: Room):
        self.room = room
        self.delivery = Delivery()
        self.produced = 0

    @property
    def producer(self) -> int:
        return self.room.client_id

    def publishable(self, update: bytes) -> UpdateMessage:
        """Number a local update for publishing."""
        self.produced += 1
        self.delivery.seqs[self.producer] = self.produced
        return UpdateMessage(self.room.room_id, self.producer, self.produced, update)

    def receive(self, message: UpdateMessage) -> bool:
        """Apply a received update in producer order; return True when a sync is needed."""
        if message.producer == self.producer:
            return False
        self._apply_chain(message.producer, self.delivery.offer(message.producer, message.seq, message.update))
        self._release_if_settled()
        return self.delivery.has_gap

    def _apply_chain(self, producer: int, chain: list[tuple[int, bytes]]) -> None:
        for index, (_, update) in enumerate(chain):
            self.room.apply_update(update)
            if self.room.has_pending:
                self.delivery.block(producer, chain[index:])
                return

    def _release_if_settled(self) -> None:
        while self.delivery.blocked and not self.room.has_pending:
            for producer, chain in self.delivery.release():
                self._apply_chain(producer, chain)

    def apply_unordered(self, update: bytes) -> None:
        """Apply a whole diff from a sync or from storage, which needs no producer order."""
        self.room.apply_update(update)
        self._release_if_settled()

    def sync_request(self) -> SyncMessage:
        """Step 1: what this replica has."""
        return SyncMessage(self.room.room_id, self.room.state_vector(), dict(self.delivery.seqs))

    def answer_sync(self, request: SyncMessage) -> SyncMessage:
        """Respond to a peer's step 1 with the diff it lacks, this replica's state vector and seqs."""
        diff = self.room.diff(request.state_vector)
        return SyncMessage(self.room.room_id, self.room.state_vector(), dict(self.delivery.seqs), diff)

    def complete_sync(self, reply: SyncMessage) -> SyncMessage | None:
        """Apply a peer's response and return the step 2 diff the peer lacks, or None when it lacks nothing."""
        self.take_sync(reply)
        diff = self.room.diff(reply.state_vector)
        if diff == self.room.diff(self.room.state_vector()):
            return None
        return SyncMessage(self.room.room_id, self.room.state_vector(), dict(self.delivery.seqs), diff)

    def take_sync(self, message: SyncMessage) -> None:
        """Apply a peer's diff and raise seqs to the peer's."""
        if message.update:
            self.room.apply_update(message.update)
        for producer, chain in self.delivery.merge(message.seqs):
            self._apply_chain(producer, chain)
        self._release_if_settled()
