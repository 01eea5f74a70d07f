"""Views of a room per audience class, and the patches and personal frames that keep clients current.

Clients never see the CRDT. Each room has one ``ClassView`` per audience
class (audience, staff): the question views that class was last sent. On each
tick the room's changes are diffed against it into one patch, encoded once and
sent as the same bytes to every socket of the class. Facts that belong to one
user (their votes, their own pending or hidden questions) go in a separate
``mine`` frame to that user's sockets only.

Pure code: no sockets, no clock.
"""

from __future__ import annotations

import secrets
from collections import deque

import msgspec

from ama.room import AUDIENCE_STATUSES, STAFF_ROLES, Actor, Changes, Room

AUDIENCE = "audience"
STAFF = "staff"
HISTORY = 256

_json = msgspec.json.Encoder()


def class_of(role: str) -> str:
    return STAFF if role in STAFF_ROLES else AUDIENCE


def encode(frame: dict) -> bytes:
    return _json.encode(frame)


def first_seq() -> int:
    """Return a random start for a class's patch numbers.

    A client that resumes with ``last_seq`` on another edge (or after this one
    restarted) must not match a number from another sequence by chance: a
    random start in [2**40, 2**41) makes that practically impossible while
    staying far below 2**53, the largest integer JavaScript holds exactly.
    """
    return 2**40 + secrets.randbelow(2**40)


class ClassView:
    """The last question views sent to one class of a room, and its recent patches."""

    def __init__(self, audience_class: str):
        self.audience_class = audience_class
        self.seq = first_seq()
        self.views: dict[str, dict] = {}
        self.room: dict = {}
        self.history: deque[tuple[int, bytes]] = deque(maxlen=HISTORY)
        self.primed = False

    def view_of(self, room: Room, question_id: str) -> dict | None:
        """Return a question's view for this class: staff also see the author's user id."""
        return room.staff_view(question_id) if self.audience_class == STAFF else room.question_view(question_id)

    def shows(self, view: dict) -> bool:
        return self.audience_class == STAFF or view["status"] in AUDIENCE_STATUSES

    def prime(self, room: Room) -> None:
        """Take the room's whole current state as sent, starting a new patch sequence."""
        self.views = {}
        for question_id in room.questions.keys():
            view = self.view_of(room, question_id)
            if self.shows(view):
                self.views[question_id] = view
        self.room = self.room_view(room)
        self.seq = first_seq()
        self.history.clear()
        self.primed = True

    def patch(self, room: Room, changes: Changes) -> bytes | None:
        """Diff the changed questions against what was sent; return the encoded patch, or None."""
        changed, removed = [], []
        for question_id in sorted(changes.questions):
            view = self.view_of(room, question_id)
            if view is not None and self.shows(view):
                if self.views.get(question_id) != view:
                    self.views[question_id] = view
                    changed.append(view)
            elif question_id in self.views:
                del self.views[question_id]
                removed.append(question_id)
        frame: dict = {"type": "patch", "seq": self.seq + 1, "questions": changed, "removed": removed}
        if changes.meta or changes.questions:
            room_view = self.room_view(room)
            if room_view != self.room:
                self.room = room_view
                frame["room"] = room_view
        if not changed and not removed and "room" not in frame:
            return None
        self.seq += 1
        data = encode(frame)
        self.history.append((self.seq, data))
        return data

    def room_view(self, room: Room) -> dict:
        """Return the room view for this class: a pinned question the class cannot see is not named."""
        view = room.room_view()
        pinned = view["pinned"] and room.question_view(view["pinned"])
        if pinned and not self.shows(pinned):
            view["pinned"] = None
        return view

    def since(self, last_seq: int) -> list[bytes] | None:
        """Return the patches after ``last_seq``, or None when they are no longer all kept."""
        if last_seq == self.seq:
            return []
        if not self.history or not self.history[0][0] <= last_seq + 1 <= self.seq:
            return None
        return [data for seq, data in self.history if seq > last_seq]

    def snapshot(self, room: Room, actor: Actor) -> bytes:
        """Encode the whole view ``actor`` may see, at this class's current seq."""
        return encode({
            "type": "snapshot",
            "seq": self.seq,
            "room": self.room,
            "questions": room.visible_views(actor),
            "mine": room.my_votes(actor.user_id),
        })


def personal_frame(room: Room, actor: Actor, changes: Changes) -> bytes | None:
    """Encode the changes that only ``actor`` sees: their votes and their own unpublished questions."""
    votes = {question_id: room.vote_of(actor.user_id, question_id) for user_id, question_id in changes.votes if user_id == actor.user_id}
    questions, removed = [], []
    if not actor.is_staff:
        for question_id in changes.questions:
            if room.author_of(question_id) != actor.user_id:
                continue
            view = room.question_view(question_id)
            if view["status"] == "pending":
                questions.append(view)
            elif view["status"] not in AUDIENCE_STATUSES:
                removed.append(question_id)
    if not votes and not questions and not removed:
        return None
    return encode({"type": "mine", "votes": votes, "questions": questions, "removed": removed})


def personal_refresh(room: Room, actor: Actor) -> bytes:
    """Encode all of ``actor``'s personal facts, sent after a resumed connection.

    ``replace`` tells the client to replace its votes instead of merging, so
    a vote cleared while it was away does not linger; ``removed`` names its
    own questions that are hidden now.
    """
    own_pending, own_hidden = [], []
    if not actor.is_staff:
        for question_id in room.questions.keys():
            if room.author_of(question_id) != actor.user_id:
                continue
            view = room.question_view(question_id)
            if view["status"] == "pending":
                own_pending.append(view)
            elif view["status"] == "hidden":
                own_hidden.append(question_id)
    return encode({"type": "mine", "replace": True, "votes": room.my_votes(actor.user_id), "questions": own_pending, "removed": own_hidden})
