"""The room model: one pycrdt document per room, intents applied to it, views read from it.

Theory of operation
-------------------
Every replica of a room (edges, region services, the core) holds the same
document layout:

* ``meta``: ``title``, ``created_at``, ``pinned`` (a question id or ``""``) and
  one key per setting (absent means the default in ``DEFAULT_SETTINGS``).
* ``questions``: question id -> a plain dict (text, author_id, author_name,
  created_at), written once and never changed.
* ``statuses``: question id -> pending | live | answered | hidden.
* ``votes``: "question id/user id" -> 1, 0 or -1.
* ``intents``: intent id -> [user id, client id, first clock]. It makes every
  intent idempotent at every replica that has seen it.
* ``bans``: user id -> true while the user is banned from writing.

Every map is flat: no replica ever creates a nested Map. When two replicas
create the same nested Map concurrently (say a client resends its ``ask`` to
a second edge before the first edge's update arrived), only one of them
survives the merge, and whatever was written into the other is lost. Flat
keys make such a duplicate harmless: both replicas write equal values.

Facts about pycrdt 0.14.13 this module relies on:

* Map keys are never deleted. A deletion produces no new item, so the writer's
  clock does not advance and a state vector cannot tell whether the core has
  stored it. A vote of 0 is stored as 0 and an unpin as ``""``.
* Integers come back as floats; readers convert them back.
* Nothing writes to the document, applies to it or encodes it inside its
  observer callbacks; the callbacks only record what changed, and
  ``_settle`` acts on it after the transaction.
* Recounting votes is O(votes), which takes over a second at a million
  votes, so totals (and each user's votes) are kept incrementally from map
  events.
* An update whose items depend on an item this replica lacks is kept
  pending inside pycrdt: the state vector does not cover it, and map events
  for it and for some updates applied after it were seen to go missing.
  ``has_pending`` tells the replication layer to hold further updates of
  that producer and sync; once nothing is pending, ``reconcile`` recounts
  and reports every question as changed.

The model does no I/O and reads no clock: ``now_ms`` is passed in.
"""

from __future__ import annotations

import hashlib
import json

from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map, get_state, merge_updates

from ama.intents import (
    MAX_TITLE_LENGTH,
    QUESTION_LENGTH_RANGE,
    Ask,
    Ban,
    FrameError,
    Intent,
    Moderate,
    Settings,
    Vote,
    normalize_text,
)

ROLES = ("audience", "moderator", "host")
STAFF_ROLES = ("moderator", "host")
STATUSES = ("pending", "live", "answered", "hidden")
AUDIENCE_STATUSES = ("live", "answered")

DEFAULT_SETTINGS: dict[str, bool | int] = {
    "questions_open": True,
    "pre_moderation": False,
    "anonymous_allowed": True,
    "downvotes_allowed": True,
    "max_question_length": 300,
}

# Moderation action -> (statuses it may start from, status it sets).
STATUS_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "approve": (("pending", "hidden", "live"), "live"),
    "hide": (("pending", "live", "answered", "hidden"), "hidden"),
    "answer": (("pending", "live", "answered"), "answered"),
    "reopen": (("answered", "live"), "live"),
}


@dataclass(frozen=True)
class Actor:
    """The sender of an intent, as its verified token states."""

    user_id: str
    role: str
    name: str

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


@dataclass(frozen=True)
class Applied:
    """The result of applying an intent to a replica.

    ``update`` is the CRDT update to publish, or None when the intent was a
    repeat of one applied before. The intent is stored durably once a commit
    watermark's clock for ``client_id`` reaches ``commit_clock``.
    """

    intent_id: str
    update: bytes | None
    client_id: int
    commit_clock: int


@dataclass
class Changes:
    """The changes in a room since the last call to ``take_changes``."""

    questions: set[str] = field(default_factory=set)
    meta: bool = False
    # (user id, question id) pairs whose vote changed.
    votes: set[tuple[str, str]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.questions or self.meta or self.votes)


class Room:
    """One replica of a room's document, with incremental vote totals."""

    def __init__(self, room_id: str, client_id: int | None = None):
        self.room_id = room_id
        self.doc = Doc(client_id=client_id)
        self.meta = self.doc.get("meta", type=Map)
        self.questions = self.doc.get("questions", type=Map)
        self.statuses = self.doc.get("statuses", type=Map)
        self.votes = self.doc.get("votes", type=Map)
        self.intents = self.doc.get("intents", type=Map)
        self.bans = self.doc.get("bans", type=Map)
        # question id -> [up, down], and user id -> {question id: value}.
        self.totals: dict[str, list[int]] = {}
        self.user_votes: dict[str, dict[str, int]] = {}
        self._changes = Changes()
        # Vote keys changed by the current transaction, folded in by _settle,
        # and the number of vote keys that the events reported so far.
        self._vote_keys: set[str] = set()
        self._vote_key_count = 0
        # Vote changes found by check_vote_keys that no event reported.
        self.unreported_vote_changes = 0
        self._local_updates: list[bytes] = []
        # Clocks that applied updates promised and the state vector does not cover yet.
        self._expected: dict[int, int] = {}
        self._subscriptions = [
            self.questions.observe(self._on_questions),
            self.statuses.observe(self._on_questions),
            self.votes.observe(self._on_votes),
            self.meta.observe(self._on_meta),
            self.doc.observe(self._on_transaction),
        ]

    @property
    def client_id(self) -> int:
        return self.doc.client_id

    # -- replication -------------------------------------------------------

    def apply_update(self, update: bytes) -> None:
        """Apply an update produced by another replica."""
        was_pending = self.has_pending
        for client, clock in decode_state_vector(get_state(update)).items():
            if clock > self._expected.get(client, 0):
                self._expected[client] = clock
        self.doc.apply_update(update)
        self._local_updates.clear()
        self._settle()
        self._forget_covered()
        if was_pending and not self.has_pending:
            self.reconcile()

    def check_vote_keys(self) -> bool:
        """Recount the totals when the document contains another number of vote keys than its events reported.

        pycrdt 0.14.13 can delete a vote key through an update's delete set
        without a map event for that key (reproduced with recorded updates in
        the tests), so the incremental totals miss it. Counting the keys is
        O(votes), so callers run this check periodically and before a digest,
        not on every update. Return True when it recounted.

        NOTE: an unreported change that keeps the number of keys (one key
        deleted, another added, both silently) stays uncounted until that key
        changes again or the room is reloaded.
        """
        if len(self.votes) == self._vote_key_count:
            return False
        self.unreported_vote_changes += 1
        self.reconcile()
        return True

    @property
    def has_pending(self) -> bool:
        """Tell whether pycrdt keeps items of an applied update that wait for a missing item."""
        return bool(self._expected)

    def _forget_covered(self) -> None:
        if not self._expected:
            return
        state = decode_state_vector(self.doc.get_state())
        self._expected = {client: clock for client, clock in self._expected.items() if state.get(client, 0) < clock}

    def reconcile(self) -> None:
        """Recount every total from the document and report every question as changed: O(votes)."""
        totals: dict[str, list[int]] = {}
        user_votes: dict[str, dict[str, int]] = {}
        for key, value in self.votes.items():
            question_id, user_id = split_vote_key(key)
            value = int(value)
            counts = totals.setdefault(question_id, [0, 0])
            counts[0] += value == 1
            counts[1] += value == -1
            if value:
                user_votes.setdefault(user_id, {})[question_id] = value
            self._changes.votes.add((user_id, question_id))
        self.totals, self.user_votes = totals, user_votes
        self._vote_key_count = len(self.votes)
        self._changes.questions.update(str(key) for key in self.questions.keys())
        self._changes.meta = True

    def state_vector(self) -> bytes:
        return self.doc.get_state()

    def diff(self, state_vector: bytes | None = None) -> bytes:
        """Return the update that brings a replica at ``state_vector`` up to this one."""
        if state_vector is None:
            return self.doc.get_update()
        return self.doc.get_update(state_vector)

    # -- creating a room ---------------------------------------------------

    def create(self, title: str, now_ms: int, host_user: str | None = None) -> bytes:
        """Write the room's first state (title, creation time, host) and return the update."""
        title = normalize_text(title, "title", MAX_TITLE_LENGTH)
        with self.doc.transaction():
            self.meta["title"] = title
            self.meta["created_at"] = now_ms
            self.meta["pinned"] = ""
            if host_user is not None:
                self.meta["host"] = host_user
        return self._take_local_update()

    # -- intents -----------------------------------------------------------

    def apply_intent(self, intent: Intent, actor: Actor, now_ms: int) -> Applied:
        """Apply one intent for ``actor``; raise FrameError when it is not allowed."""
        seen = self.intents.get(intent.id)
        if seen is not None:
            return self._repeat(intent, actor, seen)
        if self.is_banned(actor.user_id):
            raise FrameError("banned", "A moderator has banned you from writing in this room; you can still read it.", intent.id)
        check = {Ask: self._check_ask, Vote: self._check_vote, Moderate: self._check_moderate, Settings: self._check_settings, Ban: self._check_ban}
        write = check[type(intent)](intent, actor)

        first_clock = self._own_clock()
        with self.doc.transaction():
            write(now_ms)
            self.intents[intent.id] = [actor.user_id, self.client_id, first_clock]
        update = self._take_local_update()
        return Applied(intent.id, update, self.client_id, self._own_clock())

    def _repeat(self, intent: Intent, actor: Actor, seen: Any) -> Applied:
        user_id, client_id, clock = str(seen[0]), int(seen[1]), int(seen[2])
        if user_id != actor.user_id:
            raise FrameError("id_conflict", "Another user already sent an intent with this id; choose a new UUID.", intent.id)
        return Applied(intent.id, None, client_id, clock + 1)

    def _check_ask(self, intent: Ask, actor: Actor):
        if intent.id in self.questions:
            existing = self.questions[intent.id]
            if existing.get("author_id") != actor.user_id:
                raise FrameError("id_conflict", "A question with this id exists already; choose a new UUID.", intent.id)
        if not self.setting("questions_open") and not actor.is_staff:
            raise FrameError("questions_closed", "The host has closed questions in this room; you can still vote.", intent.id)
        if intent.anonymous and not self.setting("anonymous_allowed"):
            raise FrameError("anonymous_not_allowed", "This room does not allow anonymous questions; ask under your name.", intent.id)
        text = normalize_text(intent.text, "text", int(self.setting("max_question_length")), intent.id)
        status = "pending" if self.setting("pre_moderation") and not actor.is_staff else "live"
        record = {"text": text, "author_id": actor.user_id, "author_name": None if intent.anonymous else actor.name}

        def write(now_ms: int) -> None:
            if intent.id not in self.questions:
                self.questions[intent.id] = {**record, "created_at": now_ms}
                self.statuses[intent.id] = status

        return write

    def _check_vote(self, intent: Vote, actor: Actor):
        view = self._visible_question(intent.question, actor, intent.id)
        if view["status"] not in AUDIENCE_STATUSES:
            raise FrameError("not_votable", f"Questions that are {view['status']} take no votes.", intent.id)
        if intent.value == -1 and not self.setting("downvotes_allowed"):
            raise FrameError("downvotes_disabled", "This room does not allow downvotes; vote 1 or 0.", intent.id)

        def write(now_ms: int) -> None:
            self.votes[vote_key(intent.question, actor.user_id)] = intent.value

        return write

    def _check_moderate(self, intent: Moderate, actor: Actor):
        if not actor.is_staff:
            raise FrameError("forbidden", "Only moderators and hosts can moderate questions.", intent.id)
        view = self._visible_question(intent.question, actor, intent.id)
        if intent.action in ("pin", "unpin"):
            return self._pin_writer(intent, view["status"])
        allowed_from, target = STATUS_TRANSITIONS[intent.action]
        if view["status"] not in allowed_from:
            raise FrameError("invalid_transition", f"Cannot {intent.action} a question that is {view['status']}.", intent.id)

        def write(now_ms: int) -> None:
            self.statuses[intent.question] = target

        return write

    def _pin_writer(self, intent: Moderate, status: str):
        if intent.action == "pin" and status not in AUDIENCE_STATUSES:
            raise FrameError("invalid_transition", f"Only live or answered questions can be pinned, not {status} ones.", intent.id)
        pinned = intent.question if intent.action == "pin" else ""
        if intent.action == "unpin" and self.meta.get("pinned", "") != intent.question:
            pinned = self.meta.get("pinned", "")

        def write(now_ms: int) -> None:
            self.meta["pinned"] = pinned

        return write

    def _check_settings(self, intent: Settings, actor: Actor):
        if actor.role != "host":
            raise FrameError("forbidden", "Only the host can change room settings.", intent.id)
        if not intent.changes:
            raise FrameError("invalid_settings", "Field 'changes' is empty; name at least one setting.", intent.id)
        changes = {key: self._checked_setting(key, value, intent.id) for key, value in intent.changes.items()}

        def write(now_ms: int) -> None:
            for key, value in changes.items():
                self.meta[key] = value

        return write

    def _check_ban(self, intent: Ban, actor: Actor):
        if not actor.is_staff:
            raise FrameError("forbidden", "Only moderators and hosts can ban users.", intent.id)
        if intent.user == actor.user_id:
            raise FrameError("invalid_ban", "You cannot ban yourself.", intent.id)
        if intent.user == self.meta.get("host"):
            raise FrameError("invalid_ban", "The room's host cannot be banned.", intent.id)

        def write(now_ms: int) -> None:
            self.bans[intent.user] = intent.banned

        return write

    def is_banned(self, user_id: str) -> bool:
        return bool(self.bans.get(user_id, False))

    @staticmethod
    def _checked_setting(key: str, value: Any, intent_id: str) -> Any:
        if key == "title":
            if not isinstance(value, str):
                raise FrameError("invalid_settings", "Setting 'title' must be a string.", intent_id)
            return normalize_text(value, "title", MAX_TITLE_LENGTH, intent_id)
        if key not in DEFAULT_SETTINGS:
            known = ", ".join(["title", *DEFAULT_SETTINGS])
            raise FrameError("invalid_settings", f"Unknown setting {key!r}; known settings are {known}.", intent_id)
        expected = type(DEFAULT_SETTINGS[key])
        if type(value) is not expected:
            raise FrameError("invalid_settings", f"Setting {key!r} must be a {expected.__name__}.", intent_id)
        if key == "max_question_length":
            low, high = QUESTION_LENGTH_RANGE
            if not low <= value <= high:
                raise FrameError("invalid_settings", f"Setting 'max_question_length' must be from {low} to {high}.", intent_id)
        return value

    def _visible_question(self, question_id: str, actor: Actor, intent_id: str) -> dict:
        view = self.question_view(question_id)
        if view is None or not self.is_visible(view, actor):
            raise FrameError("unknown_question", "There is no such question in this room; refresh your view.", intent_id)
        return view

    # -- reading -------------------------------------------------------------

    def setting(self, key: str) -> bool | int:
        value = self.meta.get(key, DEFAULT_SETTINGS[key])
        return int(value) if key == "max_question_length" else value

    def room_view(self) -> dict:
        """Return the room's title, settings and pinned question, as every client sees them."""
        view = {key: self.setting(key) for key in DEFAULT_SETTINGS}
        view["title"] = self.meta.get("title", "")
        view["created_at"] = int(self.meta.get("created_at", 0))
        view["pinned"] = self.meta.get("pinned", "") or None
        view["id"] = self.room_id
        return view

    def staff_view(self, question_id: str) -> dict | None:
        """Return the question view staff see: the audience view plus the author's user id, for bans."""
        view = self.question_view(question_id)
        if view is not None:
            view["author_id"] = self.author_of(question_id)
        return view

    def question_view(self, question_id: str) -> dict | None:
        record = self.questions.get(question_id)
        if record is None:
            return None
        up, down = self.totals.get(question_id, (0, 0))
        return {
            "id": question_id,
            "text": record.get("text", ""),
            "author": record.get("author_name"),
            "created_at": int(record.get("created_at", 0)),
            "status": self.statuses.get(question_id, "pending"),
            "up": up,
            "down": down,
            "score": up - down,
            "pinned": self.meta.get("pinned", "") == question_id,
        }

    def author_of(self, question_id: str) -> str | None:
        record = self.questions.get(question_id)
        return None if record is None else record.get("author_id")

    def visible_views(self, actor: Actor) -> list[dict]:
        """Return every question view ``actor`` may see, in the room's order."""
        read = self.staff_view if actor.is_staff else self.question_view
        views = [read(question_id) for question_id in self.questions.keys()]
        views = [view for view in views if self.is_visible(view, actor)]
        views.sort(key=order_key)
        return views

    def my_votes(self, user_id: str) -> dict[str, int]:
        return dict(self.user_votes.get(user_id, {}))

    def vote_of(self, user_id: str, question_id: str) -> int:
        return self.user_votes.get(user_id, {}).get(question_id, 0)

    def is_visible(self, view: dict, actor: Actor) -> bool:
        if actor.is_staff or view["status"] in AUDIENCE_STATUSES:
            return True
        return view["status"] == "pending" and self.author_of(view["id"]) == actor.user_id

    def export(self) -> dict:
        """Return every question with its totals and status, for the host's export."""
        views = [self.question_view(question_id) for question_id in self.questions.keys()]
        views.sort(key=order_key)
        return {"room": self.room_view(), "questions": views}

    def count_votes(self, question_id: str) -> tuple[int, int]:
        """Count a question's votes from the document: O(all votes), for checks."""
        prefix = question_id + VOTE_KEY_SEPARATOR
        values = [int(value) for key, value in self.votes.items() if key.startswith(prefix)]
        return values.count(1), values.count(-1)

    # -- change tracking -----------------------------------------------------

    def take_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        return changes

    def _own_clock(self) -> int:
        return decode_state_vector(self.doc.get_state()).get(self.client_id, 0)

    def _take_local_update(self) -> bytes:
        updates, self._local_updates = self._local_updates, []
        self._settle()
        return updates[0] if len(updates) == 1 else merge_updates(*updates)

    def _on_transaction(self, event) -> None:
        self._local_updates.append(event.update)

    def _on_questions(self, event) -> None:
        self._changes.questions.update(str(key) for key in event.keys)

    def _on_votes(self, event) -> None:
        for key, change in event.keys.items():
            self._vote_keys.add(str(key))
            action = change.get("action")
            self._vote_key_count += (action == "add") - (action == "delete")

    def _on_meta(self, event) -> None:
        self._changes.meta = True
        change = event.keys.get("pinned")
        if change is not None:
            for question_id in (change.get("oldValue"), change.get("newValue")):
                if question_id:
                    self._changes.questions.add(str(question_id))

    def _settle(self) -> None:
        """Fold the votes changed by the last transaction into the totals and users' votes.

        The old value is the one these totals last counted and the new one is
        read from the document. The event's own old and new values are not
        used: for a concurrent write of a key, pycrdt can report an old value
        that differs from the one counted (seen as a vote counted twice after
        a replica applied two edges' writes of one user's vote).
        """
        keys, self._vote_keys = self._vote_keys, set()
        for key in keys:
            question_id, user_id = split_vote_key(key)
            old = self.user_votes.get(user_id, {}).get(question_id, 0)
            new = int(self.votes.get(key) or 0)
            totals = self.totals.setdefault(question_id, [0, 0])
            if old != new:
                totals[0] += (new == 1) - (old == 1)
                totals[1] += (new == -1) - (old == -1)
                mine = self.user_votes.setdefault(user_id, {})
                if new:
                    mine[question_id] = new
                else:
                    mine.pop(question_id, None)
            self._changes.votes.add((user_id, question_id))
            self._changes.questions.add(question_id)


VOTE_KEY_SEPARATOR = "/"


def vote_key(question_id: str, user_id: str) -> str:
    return question_id + VOTE_KEY_SEPARATOR + user_id


def split_vote_key(key: str) -> tuple[str, str]:
    question_id, _, user_id = key.partition(VOTE_KEY_SEPARATOR)
    return question_id, user_id


def digest(room: Room) -> dict:
    """Summarize a replica for convergence checks: equal digests mean equal views of the room."""
    room.check_vote_keys()
    exported = room.export()
    body = json.dumps(exported, sort_keys=True, separators=(",", ":")).encode()
    return {
        "room": room.room_id,
        "questions": len(exported["questions"]),
        "up": sum(view["up"] for view in exported["questions"]),
        "down": sum(view["down"] for view in exported["questions"]),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def order_key(view: dict) -> tuple:
    """Sort key of the room's question order: score (highest first), then creation time, then id."""
    return (-view["score"], view["created_at"], view["id"])


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """Decode a Yjs state vector (lib0 var-uints: count, then client and clock pairs)."""
    values = []
    number = shift = 0
    for byte in state_vector:
        number |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            values.append(number)
            number = shift = 0
    if not values or len(values) != 1 + 2 * values[0]:
        raise ValueError("malformed state vector")
    pairs = values[1:]
    return {pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)}


def covers_state(state_vector: dict[int, int], other: dict[int, int]) -> bool:
    """Tell whether a decoded state vector covers every item of the decoded state vector ``other``."""
    return all(covers(state_vector, client_id, clock) for client_id, clock in other.items())


def covers(state_vector: dict[int, int], client_id: int, clock: int) -> bool:
    """Tell whether a decoded state vector covers every item of ``client_id`` below ``clock``."""
    return state_vector.get(client_id, 0) >= clock
