"""Exact unit tests of the room model (ama/room.py) and client frame decoding (ama/intents.py)."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest
from pycrdt import Map

from ama.intents import (
    MAX_FRAME_BYTES,
    Ask,
    FrameError,
    Hello,
    Moderate,
    Settings,
    Vote,
    decode_frame,
    normalize_text,
)
from ama.room import Actor, Changes, Room, covers, decode_state_vector, order_key

HOST = Actor("host-1", "host", "Hana")
MODERATOR = Actor("mod-1", "moderator", "Mo")
ANN = Actor("user-ann", "audience", "Ann")
BOB = Actor("user-bob", "audience", "Bob")

CREATED_MS = 1_000
ASKED_MS = 2_000


def new_id() -> str:
    return str(uuid.uuid4())


def new_room(**settings) -> Room:
    """Create a room on client id 1, apply ``settings`` as the host, and clear its changes."""
    room = Room("room-1", client_id=1)
    room.create("Town hall", CREATED_MS)
    if settings:
        room.apply_intent(Settings(new_id(), settings), HOST, CREATED_MS)
    room.take_changes()
    return room


def ask(room: Room, actor: Actor, text: str = "What ships next?", now_ms: int = ASKED_MS, anonymous: bool = False, question_id: str | None = None) -> str:
    question_id = question_id or new_id()
    room.apply_intent(Ask(question_id, text, anonymous), actor, now_ms)
    return question_id


def vote(room: Room, actor: Actor, question_id: str, value: int):
    return room.apply_intent(Vote(new_id(), question_id, value), actor, ASKED_MS + 1)


def moderate(room: Room, actor: Actor, question_id: str, action: str):
    return room.apply_intent(Moderate(new_id(), question_id, action), actor, ASKED_MS + 1)


def question_in(room: Room, status: str, now_ms: int = ASKED_MS) -> str:
    """Ask a question as Ann in a pre-moderated room and bring it to ``status``."""
    question_id = ask(room, ANN, now_ms=now_ms)
    assert room.question_view(question_id)["status"] == "pending"
    steps = {"pending": [], "live": ["approve"], "answered": ["answer"], "hidden": ["hide"]}
    for action in steps[status]:
        moderate(room, MODERATOR, question_id, action)
    return question_id


def frame_error(function, *args) -> FrameError:
    with pytest.raises(FrameError) as info:
        function(*args)
    return info.value


# -- creating a room -----------------------------------------------------------


def test_create_sets_room_view():
    room = Room("room-1", client_id=1)
    room.create("  Town hall  ", CREATED_MS)

    assert room.room_view() == {
        "questions_open": True,
        "pre_moderation": False,
        "anonymous_allowed": True,
        "downvotes_allowed": True,
        "max_question_length": 300,
        "title": "Town hall",
        "created_at": CREATED_MS,
        "pinned": None,
        "id": "room-1",
    }


def test_create_returns_update_for_fresh_replica():
    room = Room("room-1", client_id=1)
    update = room.create("Town hall", CREATED_MS)
    replica = Room("room-1", client_id=2)

    replica.apply_update(update)

    assert replica.room_view() == room.room_view()


def test_create_rejects_empty_title():
    room = Room("room-1", client_id=1)

    error = frame_error(room.create, "   ", CREATED_MS)

    assert error.code == "empty_text"


def test_create_rejects_long_title():
    room = Room("room-1", client_id=1)

    error = frame_error(room.create, "t" * 201, CREATED_MS)

    assert error.code == "text_too_long"


def test_room_client_id_is_doc_client_id():
    room = Room("room-1", client_id=77)

    assert room.client_id == 77


# -- ask -----------------------------------------------------------------------


def test_ask_creates_live_question():
    room = new_room()

    question_id = ask(room, ANN, "What ships next?")

    assert room.question_view(question_id) == {
        "id": question_id,
        "text": "What ships next?",
        "author": "Ann",
        "created_at": ASKED_MS,
        "status": "live",
        "up": 0,
        "down": 0,
        "score": 0,
        "pinned": False,
    }


def test_ask_records_author_id():
    room = new_room()

    question_id = ask(room, ANN)

    assert room.author_of(question_id) == "user-ann"


def test_ask_returns_applied_with_update_and_clock():
    room = new_room()
    question_id = new_id()
    clock_before = decode_state_vector(room.state_vector())[1]

    applied = room.apply_intent(Ask(question_id, "What ships next?"), ANN, ASKED_MS)

    assert applied.intent_id == question_id
    assert isinstance(applied.update, bytes)
    assert applied.client_id == 1
    assert applied.commit_clock == decode_state_vector(room.state_vector())[1]
    assert applied.commit_clock > clock_before


def test_ask_update_recreates_question_elsewhere():
    room = new_room()
    replica = Room("room-1", client_id=2)
    replica.apply_update(room.diff())
    question_id = new_id()

    applied = room.apply_intent(Ask(question_id, "What ships next?"), ANN, ASKED_MS)
    replica.apply_update(applied.update)

    assert replica.question_view(question_id) == room.question_view(question_id)


def test_ask_is_pending_under_pre_moderation():
    room = new_room(pre_moderation=True)

    question_id = ask(room, ANN)

    assert room.question_view(question_id)["status"] == "pending"


@pytest.mark.parametrize("actor", [MODERATOR, HOST], ids=["moderator", "host"])
def test_ask_staff_bypasses_pre_moderation(actor):
    room = new_room(pre_moderation=True)

    question_id = ask(room, actor)

    assert room.question_view(question_id)["status"] == "live"


def test_ask_rejected_when_questions_closed():
    room = new_room(questions_open=False)
    question_id = new_id()

    error = frame_error(room.apply_intent, Ask(question_id, "What ships next?"), ANN, ASKED_MS)

    assert error.code == "questions_closed"
    assert error.intent_id == question_id
    assert room.question_view(question_id) is None


@pytest.mark.parametrize("actor", [MODERATOR, HOST], ids=["moderator", "host"])
def test_ask_staff_allowed_when_questions_closed(actor):
    room = new_room(questions_open=False)

    question_id = ask(room, actor)

    assert room.question_view(question_id)["status"] == "live"


def test_ask_anonymous_hides_author_name():
    room = new_room()

    question_id = ask(room, ANN, anonymous=True)

    assert room.question_view(question_id)["author"] is None
    assert room.author_of(question_id) == "user-ann"


def test_ask_anonymous_rejected_when_not_allowed():
    room = new_room(anonymous_allowed=False)

    error = frame_error(room.apply_intent, Ask(new_id(), "What ships next?", True), ANN, ASKED_MS)

    assert error.code == "anonymous_not_allowed"


def test_ask_named_allowed_when_anonymous_not_allowed():
    room = new_room(anonymous_allowed=False)

    question_id = ask(room, ANN, anonymous=False)

    assert room.question_view(question_id)["author"] == "Ann"


def test_ask_accepts_text_at_max_length():
    room = new_room()

    question_id = ask(room, ANN, "q" * 300)

    assert room.question_view(question_id)["text"] == "q" * 300


def test_ask_rejects_text_over_max_length():
    room = new_room()

    error = frame_error(room.apply_intent, Ask(new_id(), "q" * 301), ANN, ASKED_MS)

    assert error.code == "text_too_long"
    assert error.message == "Field 'text' has 301 characters; the maximum here is 300."


def test_ask_uses_room_max_question_length():
    room = new_room(max_question_length=10)

    error = frame_error(room.apply_intent, Ask(new_id(), "q" * 11), ANN, ASKED_MS)

    assert error.code == "text_too_long"


def test_ask_rejects_empty_text():
    room = new_room()

    error = frame_error(room.apply_intent, Ask(new_id(), ""), ANN, ASKED_MS)

    assert error.code == "empty_text"


def test_ask_rejects_whitespace_only_text():
    room = new_room()

    error = frame_error(room.apply_intent, Ask(new_id(), " \n\t "), ANN, ASKED_MS)

    assert error.code == "empty_text"


def test_ask_rejects_control_character():
    room = new_room()

    error = frame_error(room.apply_intent, Ask(new_id(), "ring the \x07 bell"), ANN, ASKED_MS)

    assert error.code == "invalid_text"
    assert error.message == "Field 'text' contains the control character U+0007; remove it."


def test_ask_rejects_lone_surrogate():
    room = new_room()

    error = frame_error(room.apply_intent, Ask(new_id(), "half \ud800 pair"), ANN, ASKED_MS)

    assert error.code == "invalid_text"


def test_ask_keeps_newline_and_tab():
    room = new_room()

    question_id = ask(room, ANN, "line one\nline\ttwo")

    assert room.question_view(question_id)["text"] == "line one\nline\ttwo"


def test_ask_normalizes_text_to_nfc():
    room = new_room()

    question_id = ask(room, ANN, "  Cafe\u0301 opens?  ")

    assert room.question_view(question_id)["text"] == "Caf\u00e9 opens?"


def test_ask_counts_length_after_nfc():
    room = new_room(max_question_length=10)

    # Ten decomposed "e" + combining acute pairs are 20 code points, 10 after NFC.
    question_id = ask(room, ANN, "e\u0301" * 10)

    assert room.question_view(question_id)["text"] == "\u00e9" * 10


def test_ask_rejects_question_id_taken_without_intent_record():
    room = new_room()
    question_id = new_id()
    # A question written straight into the document, so no intent record exists.
    room.questions[question_id] = Map({"text": "x", "author_id": "user-bob", "author_name": "Bob", "created_at": 1, "status": "live"})

    error = frame_error(room.apply_intent, Ask(question_id, "What ships next?"), ANN, ASKED_MS)

    assert error.code == "id_conflict"


def test_ask_id_reused_by_other_user_conflicts():
    room = new_room()
    question_id = ask(room, ANN, "First question")

    error = frame_error(room.apply_intent, Ask(question_id, "Second question"), BOB, ASKED_MS)

    assert error.code == "id_conflict"
    assert room.question_view(question_id)["text"] == "First question"


def test_ask_resend_returns_no_update():
    room = new_room()
    question_id = ask(room, ANN, "First question")

    applied = room.apply_intent(Ask(question_id, "First question"), ANN, ASKED_MS + 5)

    assert applied.update is None
    assert room.question_view(question_id)["created_at"] == ASKED_MS


# -- vote ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "totals"), [(1, [1, 0]), (-1, [0, 1]), (0, [0, 0])])
def test_vote_sets_totals(value, totals):
    room = new_room()
    question_id = ask(room, ANN)

    vote(room, BOB, question_id, value)

    assert room.totals[question_id] == totals


@pytest.mark.parametrize("value", [1, -1, 0])
def test_vote_stores_value(value):
    room = new_room()
    question_id = ask(room, ANN)

    vote(room, BOB, question_id, value)

    assert room.vote_of("user-bob", question_id) == value


def test_vote_view_has_score():
    room = new_room()
    question_id = ask(room, ANN)

    vote(room, ANN, question_id, 1)
    vote(room, BOB, question_id, 1)
    vote(room, HOST, question_id, -1)

    view = room.question_view(question_id)
    assert view["up"] == 2
    assert view["down"] == 1
    assert view["score"] == 1


def test_vote_change_moves_totals():
    room = new_room()
    question_id = ask(room, ANN)
    vote(room, BOB, question_id, 1)

    vote(room, BOB, question_id, -1)

    assert room.totals[question_id] == [0, 1]


def test_vote_zero_withdraws_vote():
    room = new_room()
    question_id = ask(room, ANN)
    vote(room, BOB, question_id, -1)

    vote(room, BOB, question_id, 0)

    assert room.totals[question_id] == [0, 0]
    assert room.my_votes("user-bob") == {}


def test_vote_repeated_value_counts_once():
    room = new_room()
    question_id = ask(room, ANN)

    vote(room, BOB, question_id, 1)
    vote(room, BOB, question_id, 1)

    assert room.totals[question_id] == [1, 0]


def test_vote_totals_match_recount():
    room = new_room()
    question_ids = [ask(room, ANN), ask(room, BOB)]
    voters = [Actor(f"user-{n}", "audience", f"User {n}") for n in range(12)]
    for n, voter in enumerate(voters):
        vote(room, voter, question_ids[n % 2], (1, -1, 0)[n % 3])
        vote(room, voter, question_ids[(n + 1) % 2], (-1, 1)[n % 2])
    for voter in voters[::3]:
        vote(room, voter, question_ids[0], 0)

    for question_id in question_ids:
        assert tuple(room.totals[question_id]) == room.count_votes(question_id), question_id


def test_vote_totals_incremental_on_replica():
    room = new_room()
    replica = Room("room-1", client_id=2)
    replica.apply_update(room.diff())
    question_id = new_id()
    replica.apply_update(room.apply_intent(Ask(question_id, "What ships next?"), ANN, ASKED_MS).update)

    replica.apply_update(vote(room, ANN, question_id, 1).update)
    replica.apply_update(vote(room, BOB, question_id, -1).update)
    replica.apply_update(vote(room, BOB, question_id, 1).update)

    assert replica.totals[question_id] == [2, 0]


def test_vote_totals_recounted_from_full_state():
    room = new_room()
    question_id = ask(room, ANN)
    vote(room, ANN, question_id, 1)
    vote(room, BOB, question_id, -1)
    replica = Room("room-1", client_id=2)

    replica.apply_update(room.diff())

    assert replica.totals[question_id] == [1, 1]


def test_my_votes_lists_nonzero_votes():
    room = new_room()
    first, second, third = ask(room, ANN), ask(room, ANN), ask(room, ANN)
    vote(room, BOB, first, 1)
    vote(room, BOB, second, -1)
    vote(room, BOB, third, 0)
    vote(room, ANN, third, 1)

    assert room.my_votes("user-bob") == {first: 1, second: -1}


def test_vote_rejects_downvote_when_disabled():
    room = new_room(downvotes_allowed=False)
    question_id = ask(room, ANN)

    error = frame_error(vote, room, BOB, question_id, -1)

    assert error.code == "downvotes_disabled"
    assert room.vote_of("user-bob", question_id) == 0


@pytest.mark.parametrize("value", [1, 0])
def test_vote_accepts_up_and_zero_when_downvotes_disabled(value):
    room = new_room(downvotes_allowed=False)
    question_id = ask(room, ANN)

    vote(room, BOB, question_id, value)

    assert room.vote_of("user-bob", question_id) == value


def test_vote_on_answered_question_allowed():
    room = new_room(pre_moderation=True)
    question_id = question_in(room, "answered")

    vote(room, BOB, question_id, 1)

    assert room.totals[question_id] == [1, 0]


def test_vote_on_own_pending_question_not_votable():
    room = new_room(pre_moderation=True)
    question_id = question_in(room, "pending")

    error = frame_error(vote, room, ANN, question_id, 1)

    assert error.code == "not_votable"
    assert error.message == "Questions that are pending take no votes."


def test_vote_on_others_pending_question_unknown():
    room = new_room(pre_moderation=True)
    question_id = question_in(room, "pending")

    error = frame_error(vote, room, BOB, question_id, 1)

    assert error.code == "unknown_question"


def test_vote_by_staff_on_pending_question_not_votable():
    room = new_room(pre_moderation=True)
    question_id = question_in(room, "pending")

    error = frame_error(vote, room, MODERATOR, question_id, 1)

    assert error.code == "not_votable"


@pytest.mark.parametrize("actor", [ANN, BOB], ids=["author", "other"])
def test_vote_by_audience_on_hidden_question_unknown(actor):
    room = new_room(pre_moderation=True)
    question_id = question_in(room, "hidden")

    error = frame_error(vote, room, actor, question_id, 1)

    assert error.code == "unknown_question"


def test_vote_by_staff_on_hidden_question_not_votable():
    room = new_room(pre_moderation=True)
    question_id = question_in(room, "hidden")

    error = frame_error(vote, room, HOST, question_id, 1)

    assert error.code == "not_votable"
    assert error.message == "Questions that are hidden take no votes."


def test_vote_on_unknown_question_rejected():
    room = new_room()
    intent_id = new_id()

    error = frame_error(room.apply_intent, Vote(intent_id, new_id(), 1), BOB, ASKED_MS)

    assert error.code == "unknown_question"
    assert error.intent_id == intent_id


def test_vote_resend_returns_no_update():
    room = new_room()
    question_id = ask(room, ANN)
    intent = Vote(new_id(), question_id, 1)
    room.apply_intent(intent, BOB, ASKED_MS)

    applied = room.apply_intent(intent, BOB, ASKED_MS + 10)

    assert applied.update is None
    assert applied.intent_id == intent.id


def test_vote_resend_keeps_totals():
    room = new_room()
    question_id = ask(room, ANN)
    intent = Vote(new_id(), question_id, 1)
    room.apply_intent(intent, BOB, ASKED_MS)
    room.take_changes()

    room.apply_intent(intent, BOB, ASKED_MS + 10)

    assert room.totals[question_id] == [1, 0]
    assert not room.take_changes()


def test_vote_resend_after_change_keeps_later_vote():
    room = new_room()
    question_id = ask(room, ANN)
    first = Vote(new_id(), question_id, 1)
    room.apply_intent(first, BOB, ASKED_MS)
    vote(room, BOB, question_id, -1)

    room.apply_intent(first, BOB, ASKED_MS + 10)

    assert room.vote_of("user-bob", question_id) == -1


def test_vote_resend_commit_clock_covers_first_item():
    room = new_room()
    question_id = ask(room, ANN)
    intent = Vote(new_id(), question_id, 1)
    clock_before = decode_state_vector(room.state_vector())[1]
    first = room.apply_intent(intent, BOB, ASKED_MS)

    repeat = room.apply_intent(intent, BOB, ASKED_MS + 10)

    assert repeat.client_id == first.client_id
    # The repeat names the first item the intent wrote. Stores apply updates
    # whole, so a watermark that contains that item contains the whole update.
    assert repeat.commit_clock == clock_before + 1
    assert repeat.commit_clock <= first.commit_clock


def test_vote_resend_to_other_replica_returns_no_update():
    room = new_room()
    replica = Room("room-1", client_id=2)
    replica.apply_update(room.diff())
    question_id = ask(room, ANN)
    intent = Vote(new_id(), question_id, 1)
    first = room.apply_intent(intent, BOB, ASKED_MS)
    replica.apply_update(room.diff(replica.state_vector()))

    applied = replica.apply_intent(intent, BOB, ASKED_MS + 10)

    assert applied.update is None
    assert applied.client_id == first.client_id
    assert replica.totals[question_id] == [1, 0]


def test_vote_intent_id_reused_by_other_user_conflicts():
    room = new_room()
    question_id = ask(room, ANN)
    intent = Vote(new_id(), question_id, 1)
    room.apply_intent(intent, BOB, ASKED_MS)

    error = frame_error(room.apply_intent, intent, ANN, ASKED_MS)

    assert error.code == "id_conflict"
    assert error.intent_id == intent.id
    assert room.vote_of("user-ann", question_id) == 0


# -- moderate ------------------------------------------------------------------

# (action, status before, status after or None when the transition is invalid)
TRANSITIONS = [
    ("approve", "pending", "live"),
    ("approve", "live", "live"),
    ("approve", "hidden", "live"),
    ("approve", "answered", None),
    ("hide", "pending", "hidden"),
    ("hide", "live", "hidden"),
    ("hide", "answered", "hidden"),
    ("hide", "hidden", "hidden"),
    ("answer", "pending", "answered"),
    ("answer", "live", "answered"),
    ("answer", "answered", "answered"),
    ("answer", "hidden", None),
    ("reopen", "answered", "live"),
    ("reopen", "hidden", None),
    ("reopen", "live", "live"),
    ("reopen", "pending", None),
]


@pytest.mark.parametrize(("action", "before", "after"), [t for t in TRANSITIONS if t[2]])
def test_moderate_allowed_transition(action, before, after):
    room = new_room(pre_moderation=True)
    question_id = question_in(room, before)

    moderate(room, MODERATOR, question_id, action)

    assert room.question_view(question_id)["status"] == after


@pytest.mark.parametrize(("action", "before", "after"), [t for t in TRANSITIONS if not t[2]])
def test_moderate_invalid_transition(action, before, after):
    room = new_room(pre_moderation=True)
    question_id = question_in(room, before)

    error = frame_error(moderate, room, MODERATOR, question_id, action)

    assert error.code == "invalid_transition"
    assert error.message == f"Cannot {action} a question that is {before}."
    assert room.question_view(question_id)["status"] == before


def test_moderate_host_allowed():
    room = new_room()
    question_id = ask(room, ANN)

    moderate(room, HOST, question_id, "answer")

    assert room.question_view(question_id)["status"] == "answered"


@pytest.mark.parametrize("action", ["approve", "hide", "answer", "reopen", "pin", "unpin"])
def test_moderate_forbidden_for_audience(action):
    room = new_room()
    question_id = ask(room, ANN)

    error = frame_error(moderate, room, ANN, question_id, action)

    assert error.code == "forbidden"
    assert room.question_view(question_id)["status"] == "live"


def test_moderate_unknown_question():
    room = new_room()

    error = frame_error(moderate, room, MODERATOR, new_id(), "hide")

    assert error.code == "unknown_question"


@pytest.mark.parametrize("status", ["live", "answered"])
def test_pin_sets_pinned(status):
    room = new_room(pre_moderation=True)
    question_id = question_in(room, status)

    moderate(room, MODERATOR, question_id, "pin")

    assert room.question_view(question_id)["pinned"] is True
    assert room.room_view()["pinned"] == question_id


@pytest.mark.parametrize("status", ["pending", "hidden"])
def test_pin_rejects_unpublished_question(status):
    room = new_room(pre_moderation=True)
    question_id = question_in(room, status)

    error = frame_error(moderate, room, MODERATOR, question_id, "pin")

    assert error.code == "invalid_transition"
    assert error.message == f"Only live or answered questions can be pinned, not {status} ones."
    assert room.room_view()["pinned"] is None


def test_pin_replaces_previous_pin():
    room = new_room()
    first, second = ask(room, ANN), ask(room, BOB)
    moderate(room, MODERATOR, first, "pin")

    moderate(room, MODERATOR, second, "pin")

    assert room.question_view(first)["pinned"] is False
    assert room.question_view(second)["pinned"] is True


def test_unpin_clears_pinned():
    room = new_room()
    question_id = ask(room, ANN)
    moderate(room, MODERATOR, question_id, "pin")

    moderate(room, MODERATOR, question_id, "unpin")

    assert room.question_view(question_id)["pinned"] is False
    assert room.room_view()["pinned"] is None
    assert room.meta.get("pinned") == ""


def test_unpin_other_question_keeps_pin():
    room = new_room()
    pinned, other = ask(room, ANN), ask(room, BOB)
    moderate(room, MODERATOR, pinned, "pin")

    moderate(room, MODERATOR, other, "unpin")

    assert room.room_view()["pinned"] == pinned


def test_pin_keeps_status():
    room = new_room()
    question_id = ask(room, ANN)

    moderate(room, HOST, question_id, "pin")

    assert room.question_view(question_id)["status"] == "live"


# -- settings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("questions_open", False),
        ("pre_moderation", True),
        ("anonymous_allowed", False),
        ("downvotes_allowed", False),
        ("max_question_length", 10),
        ("max_question_length", 2000),
    ],
)
def test_settings_sets_value(key, value):
    room = new_room()

    room.apply_intent(Settings(new_id(), {key: value}), HOST, ASKED_MS)

    assert room.room_view()[key] == value


def test_settings_max_question_length_stays_int():
    room = new_room(max_question_length=500)

    assert type(room.setting("max_question_length")) is int


def test_settings_sets_title_normalized():
    room = new_room()

    room.apply_intent(Settings(new_id(), {"title": "  Cafe\u0301 AMA "}), HOST, ASKED_MS)

    assert room.room_view()["title"] == "Caf\u00e9 AMA"


def test_settings_sets_several_keys():
    room = new_room()

    room.apply_intent(Settings(new_id(), {"questions_open": False, "max_question_length": 50}), HOST, ASKED_MS)

    view = room.room_view()
    assert view["questions_open"] is False
    assert view["max_question_length"] == 50


@pytest.mark.parametrize("actor", [MODERATOR, ANN], ids=["moderator", "audience"])
def test_settings_forbidden_for_non_host(actor):
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {"questions_open": False}), actor, ASKED_MS)

    assert error.code == "forbidden"
    assert room.room_view()["questions_open"] is True


def test_settings_rejects_empty_changes():
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {}), HOST, ASKED_MS)

    assert error.code == "invalid_settings"


def test_settings_rejects_unknown_key():
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {"colour": "blue"}), HOST, ASKED_MS)

    assert error.code == "invalid_settings"
    assert error.message.startswith("Unknown setting 'colour'")


def test_settings_rejects_whole_intent_on_one_bad_key():
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {"questions_open": False, "colour": "blue"}), HOST, ASKED_MS)

    assert error.code == "invalid_settings"
    assert room.room_view()["questions_open"] is True


@pytest.mark.parametrize("key", ["questions_open", "pre_moderation", "anonymous_allowed", "downvotes_allowed"])
@pytest.mark.parametrize("value", [1, 0, "true"])
def test_settings_rejects_non_bool_flag(key, value):
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {key: value}), HOST, ASKED_MS)

    assert error.code == "invalid_settings"
    assert error.message == f"Setting {key!r} must be a bool."


@pytest.mark.parametrize("value", [True, "100"])
def test_settings_rejects_non_int_max_question_length(value):
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {"max_question_length": value}), HOST, ASKED_MS)

    assert error.code == "invalid_settings"
    assert error.message == "Setting 'max_question_length' must be a int."


@pytest.mark.parametrize("value", [9, 2001, 0, -5])
def test_settings_rejects_max_question_length_out_of_range(value):
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {"max_question_length": value}), HOST, ASKED_MS)

    assert error.code == "invalid_settings"
    assert error.message == "Setting 'max_question_length' must be from 10 to 2000."


@pytest.mark.parametrize("value", [True, 5])
def test_settings_rejects_non_string_title(value):
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {"title": value}), HOST, ASKED_MS)

    assert error.code == "invalid_settings"


def test_settings_rejects_empty_title():
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {"title": "  "}), HOST, ASKED_MS)

    assert error.code == "empty_text"


def test_settings_rejects_title_over_200():
    room = new_room()

    error = frame_error(room.apply_intent, Settings(new_id(), {"title": "t" * 201}), HOST, ASKED_MS)

    assert error.code == "text_too_long"


# -- visibility and order --------------------------------------------------------


def visibility_room() -> tuple[Room, dict[str, str]]:
    """Build a pre-moderated room with one question by Ann in each status, then one pending by Bob, asked 1 ms apart."""
    room = new_room(pre_moderation=True)
    statuses = ("pending", "live", "answered", "hidden")
    ids = {status: question_in(room, status, now_ms=ASKED_MS + n) for n, status in enumerate(statuses)}
    ids["bob_pending"] = ask(room, BOB, now_ms=ASKED_MS + len(statuses))
    return room, ids


def test_audience_sees_live_answered_and_own_pending():
    room, ids = visibility_room()

    seen = {view["id"] for view in room.visible_views(ANN)}

    assert seen == {ids["pending"], ids["live"], ids["answered"]}


def test_audience_misses_others_pending():
    room, ids = visibility_room()

    seen = {view["id"] for view in room.visible_views(BOB)}

    assert seen == {ids["live"], ids["answered"], ids["bob_pending"]}


@pytest.mark.parametrize("actor", [MODERATOR, HOST], ids=["moderator", "host"])
def test_staff_see_every_question(actor):
    room, ids = visibility_room()

    seen = {view["id"] for view in room.visible_views(actor)}

    assert seen == set(ids.values())


def test_is_visible_matches_visible_views():
    room, ids = visibility_room()

    for question_id in ids.values():
        view = room.question_view(question_id)
        for actor in (ANN, BOB, MODERATOR):
            expected = view["id"] in {seen["id"] for seen in room.visible_views(actor)}
            assert room.is_visible(view, actor) is expected, (question_id, actor.user_id)


def test_visible_views_order():
    room = new_room()
    late_low = "00000000-0000-4000-8000-000000000001"
    early_b = "00000000-0000-4000-8000-00000000000b"
    early_a = "00000000-0000-4000-8000-00000000000a"
    top = "00000000-0000-4000-8000-000000000000"
    ask(room, ANN, "late", now_ms=5_000, question_id=late_low)
    ask(room, ANN, "early b", now_ms=3_000, question_id=early_b)
    ask(room, ANN, "early a", now_ms=3_000, question_id=early_a)
    ask(room, ANN, "top", now_ms=9_000, question_id=top)
    vote(room, BOB, top, 1)

    order = [view["id"] for view in room.visible_views(HOST)]

    assert order == [top, early_a, early_b, late_low]


def test_visible_views_negative_score_last():
    room = new_room()
    down = ask(room, ANN, "down", now_ms=1)
    plain = ask(room, ANN, "plain", now_ms=2)
    vote(room, BOB, down, -1)

    order = [view["id"] for view in room.visible_views(HOST)]

    assert order == [plain, down]


def test_order_key_value():
    view = {"id": "q", "score": 3, "created_at": 7}

    assert order_key(view) == (-3, 7, "q")


# -- export and changes ------------------------------------------------------------


def test_export_lists_every_question_in_order():
    room, ids = visibility_room()
    vote(room, BOB, ids["live"], 1)

    exported = room.export()

    assert exported["room"] == room.room_view()
    assert [view["id"] for view in exported["questions"]] == [ids["live"], ids["pending"], ids["answered"], ids["hidden"], ids["bob_pending"]]
    assert exported["questions"][0] == room.question_view(ids["live"])


def test_export_empty_room():
    room = new_room()

    assert room.export() == {"room": room.room_view(), "questions": []}


def test_take_changes_after_create():
    room = Room("room-1", client_id=1)
    room.create("Town hall", CREATED_MS)

    assert room.take_changes() == Changes(questions=set(), meta=True, votes=set())


def test_take_changes_after_ask():
    room = new_room()

    question_id = ask(room, ANN)

    assert room.take_changes() == Changes(questions={question_id}, meta=False, votes=set())


def test_take_changes_after_vote():
    room = new_room()
    question_id = ask(room, ANN)
    room.take_changes()

    vote(room, BOB, question_id, 1)

    assert room.take_changes() == Changes(questions={question_id}, meta=False, votes={("user-bob", question_id)})


def test_take_changes_after_status_change():
    room = new_room()
    question_id = ask(room, ANN)
    room.take_changes()

    moderate(room, MODERATOR, question_id, "hide")

    assert room.take_changes() == Changes(questions={question_id}, meta=False, votes=set())


def test_take_changes_after_pin_moves():
    room = new_room()
    first, second = ask(room, ANN), ask(room, BOB)
    moderate(room, MODERATOR, first, "pin")
    room.take_changes()

    moderate(room, MODERATOR, second, "pin")

    assert room.take_changes() == Changes(questions={first, second}, meta=True, votes=set())


def test_take_changes_after_settings():
    room = new_room()

    room.apply_intent(Settings(new_id(), {"downvotes_allowed": False}), HOST, ASKED_MS)

    assert room.take_changes() == Changes(questions=set(), meta=True, votes=set())


def test_take_changes_empties_changes():
    room = new_room()
    ask(room, ANN)
    room.take_changes()

    changes = room.take_changes()

    assert changes == Changes()
    assert not changes


def test_take_changes_from_full_state_lists_votes():
    room = new_room()
    question_id = ask(room, ANN)
    vote(room, ANN, question_id, 1)
    vote(room, BOB, question_id, -1)
    replica = Room("room-1", client_id=2)

    replica.apply_update(room.diff())

    changes = replica.take_changes()
    assert changes.questions == {question_id}
    assert changes.meta is True
    assert changes.votes == {("user-ann", question_id), ("user-bob", question_id)}


# -- state vectors -----------------------------------------------------------------


def test_decode_state_vector_empty_doc():
    room = Room("room-1", client_id=1)

    assert decode_state_vector(room.state_vector()) == {}


def test_decode_state_vector_multibyte_values():
    # Count 1, client 300 (0xAC 0x02), clock 128 (0x80 0x01).
    assert decode_state_vector(bytes([1, 0xAC, 0x02, 0x80, 0x01])) == {300: 128}


def test_decode_state_vector_two_clients():
    room = new_room()
    replica = Room("room-1", client_id=1_000_000)
    replica.apply_update(room.diff())
    ask(replica, ANN)
    room.apply_update(replica.diff(room.state_vector()))

    decoded = decode_state_vector(room.state_vector())

    assert set(decoded) == {1, 1_000_000}
    assert decoded[1_000_000] == decode_state_vector(replica.state_vector())[1_000_000]


@pytest.mark.parametrize("data", [b"", b"\x02\x01\x05", b"\x01\x01"], ids=["empty", "short", "odd"])
def test_decode_state_vector_rejects_malformed(data):
    with pytest.raises(ValueError):
        decode_state_vector(data)


def test_covers_reached_clock():
    assert covers({1: 10}, 1, 10) is True


def test_covers_below_clock():
    assert covers({1: 9}, 1, 10) is False


def test_covers_missing_client():
    assert covers({1: 9}, 2, 1) is False


def test_covers_zero_clock_for_missing_client():
    assert covers({}, 2, 0) is True


# -- decode_frame and normalize_text ---------------------------------------------

ID = "1b4e28ba-2fa1-41d2-883f-b9a761bde3fb"
QUESTION = "6fa459ea-ee8a-4ca4-894e-db77e160355e"


def frame(**fields) -> str:
    return json.dumps(fields)


def test_decode_ask():
    decoded = decode_frame(frame(type="ask", id=ID, text="Hi there"))

    assert decoded == Ask(ID, "Hi there", False)


def test_decode_ask_anonymous():
    decoded = decode_frame(frame(type="ask", id=ID, text="Hi there", anonymous=True))

    assert decoded == Ask(ID, "Hi there", True)


@pytest.mark.parametrize("value", [1, 0, -1])
def test_decode_vote(value):
    decoded = decode_frame(frame(type="vote", id=ID, question=QUESTION, value=value))

    assert decoded == Vote(ID, QUESTION, value)


def test_decode_moderate():
    decoded = decode_frame(frame(type="moderate", id=ID, question=QUESTION, action="pin"))

    assert decoded == Moderate(ID, QUESTION, "pin")


def test_decode_settings():
    decoded = decode_frame(frame(type="settings", id=ID, changes={"title": "New", "questions_open": False, "max_question_length": 40}))

    assert decoded == Settings(ID, {"title": "New", "questions_open": False, "max_question_length": 40})


def test_decode_hello():
    decoded = decode_frame(frame(type="hello", token="abc", last_seq=5))

    assert decoded == Hello("abc", 5)


def test_decode_bytes_frame():
    decoded = decode_frame(frame(type="ask", id=ID, text="Hi there").encode())

    assert decoded == Ask(ID, "Hi there", False)


def test_decode_keeps_ids_as_sent():
    decoded = decode_frame(frame(type="vote", id=ID.upper(), question=QUESTION.upper(), value=1))

    assert decoded.id == ID.upper()
    assert decoded.question == QUESTION.upper()


@pytest.mark.parametrize(
    "bad_id",
    [ID.replace("-", ""), "{" + ID + "}", "urn:uuid:" + ID],
    ids=["no-hyphens", "braces", "urn"],
)
def test_decode_rejects_other_uuid_forms(bad_id):
    error = frame_error(decode_frame, frame(type="ask", id=bad_id, text="x"))

    assert error.code == "invalid_id"


def test_decode_rejects_misplaced_hyphens():
    misplaced = "----" + ID.replace("-", "")

    error = frame_error(decode_frame, frame(type="ask", id=misplaced, text="x"))

    assert error.code == "invalid_id"


def test_decode_invalid_frame_carries_claimed_id():
    error = frame_error(decode_frame, frame(type="ask", id=ID, text=5))

    assert error.code == "invalid_frame"
    assert error.intent_id == ID


def test_decode_invalid_frame_without_uuid_id():
    error = frame_error(decode_frame, frame(type="ask", id="abc", text=5))

    assert error.intent_id is None


@pytest.mark.parametrize("data", ["{", "not json", "", '{"type": "ask",}', b"\xff\xfe"], ids=["open", "word", "empty", "trailing-comma", "bad-utf8"])
def test_decode_invalid_json(data):
    error = frame_error(decode_frame, data)

    assert error.code == "invalid_json"


def test_decode_rejects_json_lone_surrogate_escape():
    error = frame_error(decode_frame, '{"type": "ask", "id": "%s", "text": "\\ud800"}' % ID)

    assert error.code == "invalid_json"


@pytest.mark.parametrize(
    "data",
    [
        "[]",
        '"ask"',
        frame(type="poll", id=ID),
        frame(id=ID, text="no type"),
        frame(type="ask", id=ID),
        frame(type="ask", id=ID, text="x", extra=1),
        frame(type="ask", id=5, text="x"),
        frame(type="ask", id=ID, text=["x"]),
        frame(type="ask", id=ID, text="x", anonymous="yes"),
        frame(type="vote", id=ID, question=QUESTION, value=2),
        frame(type="vote", id=ID, question=QUESTION, value=1.0),
        frame(type="vote", id=ID, question=QUESTION, value=True),
        frame(type="vote", id=ID, question=QUESTION),
        frame(type="moderate", id=ID, question=QUESTION, action="delete"),
        frame(type="settings", id=ID, changes=[]),
        frame(type="settings", id=ID, changes={"x": 1.5}),
        frame(type="settings", id=ID, changes={"x": None}),
        frame(type="hello"),
        frame(type="hello", token="t", last_seq="5"),
    ],
    ids=[
        "array", "string", "unknown-type", "missing-type", "missing-text", "unknown-field", "int-id",
        "list-text", "str-anonymous", "vote-2", "vote-float", "vote-bool", "vote-missing-value",
        "unknown-action", "list-changes", "float-setting", "null-setting", "hello-missing-token", "str-last-seq",
    ],
)
def test_decode_invalid_frame(data):
    error = frame_error(decode_frame, data)

    assert error.code == "invalid_frame"


def test_decode_invalid_frame_names_field():
    error = frame_error(decode_frame, frame(type="ask", id=ID, text="x", extra=1))

    assert "extra" in error.message


@pytest.mark.parametrize("bad_id", ["abc", "", "1b4e28ba-2fa1-41d2-883f"])
def test_decode_rejects_invalid_intent_id(bad_id):
    error = frame_error(decode_frame, frame(type="ask", id=bad_id, text="x"))

    assert error.code == "invalid_id"
    assert error.message == "Field 'id' must be a UUID such as 1b4e28ba-2fa1-11d2-883f-b9a761bde3fb."
    assert error.intent_id is None


@pytest.mark.parametrize("kind", ["vote", "moderate"])
def test_decode_rejects_invalid_question_id(kind):
    extra = {"value": 1} if kind == "vote" else {"action": "hide"}

    error = frame_error(decode_frame, frame(type=kind, id=ID, question="q-1", **extra))

    assert error.code == "invalid_id"
    assert error.message.startswith("Field 'question'")
    assert error.intent_id == ID


def test_decode_rejects_frame_too_large():
    data = frame(type="ask", id=ID, text="x" * MAX_FRAME_BYTES)

    error = frame_error(decode_frame, data)

    assert error.code == "frame_too_large"


def test_decode_accepts_frame_at_limit():
    envelope = len(frame(type="ask", id=ID, text=""))
    data = frame(type="ask", id=ID, text="x" * (MAX_FRAME_BYTES - envelope))

    assert len(data.encode()) == MAX_FRAME_BYTES
    assert decode_frame(data).text == "x" * (MAX_FRAME_BYTES - envelope)


def test_decode_frame_limit_counts_utf8_bytes():
    # 16,384 four-byte characters: under the limit in code points, over it in bytes.
    data = frame(type="ask", id=ID, text="\U0001F600" * (MAX_FRAME_BYTES // 4)).replace("\\ud83d\\ude00", "\U0001F600")

    error = frame_error(decode_frame, data)

    assert error.code == "frame_too_large"


def test_normalize_text_returns_nfc_stripped():
    assert normalize_text("  A\u030a  ", "text", 10) == "\u00c5"


def test_normalize_text_error_carries_intent_id():
    error = frame_error(normalize_text, "", "text", 10, ID)

    assert error.intent_id == ID
    assert error.message == "Field 'text' is empty; write some text."


def test_normalize_text_rejects_carriage_return():
    error = frame_error(normalize_text, "one\r\ntwo", "text", 100)

    assert error.code == "invalid_text"


def test_normalize_text_rejects_delete_character():
    error = frame_error(normalize_text, "one\x7ftwo", "text", 100)

    assert error.code == "invalid_text"


def test_normalize_text_rejects_lone_low_surrogate():
    error = frame_error(normalize_text, "\udc00", "title", 100)

    assert error.code == "invalid_text"
    assert error.message == "Field 'title' contains a lone surrogate; send valid UTF-16 or UTF-8 text."


def test_totals_follow_a_vote_deleted_without_an_event():
    recorded = json.loads((Path(__file__).parent / "data" / "unreported-vote-delete.json").read_text())
    room = Room("recorded")
    for update in recorded["updates"]:
        room.apply_update(base64.b64decode(update))
    room.check_vote_keys()
    totals = {question: list(counts) for question, counts in room.totals.items()}
    room.reconcile()
    assert totals == {question: list(counts) for question, counts in room.totals.items()}
