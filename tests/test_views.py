"""Exact tests of the per-class views, patches and personal frames (edge/views.py)."""

from __future__ import annotations

import json
import uuid

import pytest

from ama.intents import Ask, Moderate, Settings, Vote
from ama.room import Actor, Changes, Room
from edge.views import AUDIENCE, HISTORY, STAFF, ClassView, class_of, personal_frame, personal_refresh

HOST = Actor("host-1", "host", "Hana")
MODERATOR = Actor("mod-1", "moderator", "Mo")
ANN = Actor("user-ann", "audience", "Ann")
BOB = Actor("user-bob", "audience", "Bob")


def new_id() -> str:
    return str(uuid.uuid4())


def new_room(**settings) -> Room:
    room = Room("room-1", client_id=1)
    room.create("Town hall", 1_000)
    if settings:
        room.apply_intent(Settings(new_id(), settings), HOST, 1_000)
    room.take_changes()
    return room


def ask(room: Room, actor: Actor, text: str = "What ships next?", now_ms: int = 2_000) -> str:
    question_id = new_id()
    room.apply_intent(Ask(question_id, text), actor, now_ms)
    return question_id


def vote(room: Room, actor: Actor, question_id: str, value: int) -> None:
    room.apply_intent(Vote(new_id(), question_id, value), actor, 3_000)


def moderate(room: Room, question_id: str, action: str) -> None:
    room.apply_intent(Moderate(new_id(), question_id, action), MODERATOR, 3_000)


def primed(room: Room, audience_class: str) -> ClassView:
    view = ClassView(audience_class)
    view.prime(room)
    return view


def decoded(data: bytes | None):
    assert data is not None, "expected a frame, got None"
    return json.loads(data)


# -- classes and priming -------------------------------------------------------------


@pytest.mark.parametrize(("role", "audience_class"), [("audience", AUDIENCE), ("moderator", STAFF), ("host", STAFF)])
def test_class_of_role(role, audience_class):
    assert class_of(role) == audience_class


def test_prime_seq_in_random_range():
    view = primed(new_room(), AUDIENCE)

    assert 2**40 <= view.seq < 2**41


def test_prime_starts_new_sequence():
    view = ClassView(AUDIENCE)
    view.prime(new_room())
    seqs = {view.seq}
    for _ in range(5):
        view.prime(new_room())
        seqs.add(view.seq)

    assert len(seqs) == 6


def test_prime_clears_history():
    room = new_room()
    view = primed(room, AUDIENCE)
    ask(room, ANN)
    view.patch(room, room.take_changes())

    view.prime(room)

    assert list(view.history) == []
    assert view.primed is True


def test_prime_audience_takes_published_questions():
    room = new_room(pre_moderation=True)
    pending = ask(room, ANN)
    live = ask(room, BOB)
    moderate(room, live, "approve")
    answered = ask(room, BOB)
    moderate(room, answered, "answer")
    hidden = ask(room, BOB)
    moderate(room, hidden, "hide")

    view = primed(room, AUDIENCE)

    assert view.views == {live: room.question_view(live), answered: room.question_view(answered)}
    assert pending not in view.views


def test_prime_staff_takes_every_question():
    room = new_room(pre_moderation=True)
    pending = ask(room, ANN)
    hidden = ask(room, BOB)
    moderate(room, hidden, "hide")

    view = primed(room, STAFF)

    assert set(view.views) == {pending, hidden}


def test_prime_takes_room_view():
    room = new_room()

    view = primed(room, AUDIENCE)

    assert view.room == room.room_view()


# -- patches ----------------------------------------------------------------------


def test_patch_new_live_question():
    room = new_room()
    view = primed(room, AUDIENCE)
    start = view.seq
    question_id = ask(room, ANN)

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch == {"type": "patch", "seq": start + 1, "questions": [room.question_view(question_id)], "removed": []}
    assert view.seq == start + 1


def test_patch_question_view_content():
    room = new_room()
    view = primed(room, AUDIENCE)
    question_id = ask(room, ANN, "Will it scale?", now_ms=2_500)

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch["questions"] == [{
        "id": question_id,
        "text": "Will it scale?",
        "author": "Ann",
        "created_at": 2_500,
        "status": "live",
        "up": 0,
        "down": 0,
        "score": 0,
        "pinned": False,
    }]


def test_patch_vote_updates_totals():
    room = new_room()
    question_id = ask(room, ANN)
    view = primed(room, AUDIENCE)
    vote(room, BOB, question_id, 1)

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch["questions"] == [room.question_view(question_id)]
    assert patch["questions"][0]["up"] == 1


def test_patch_audience_skips_pending_question():
    room = new_room(pre_moderation=True)
    view = primed(room, AUDIENCE)
    start = view.seq
    ask(room, ANN)

    patch = view.patch(room, room.take_changes())

    assert patch is None
    assert view.seq == start


def test_patch_staff_gets_pending_question():
    room = new_room(pre_moderation=True)
    view = primed(room, STAFF)
    question_id = ask(room, ANN)

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch["questions"] == [room.staff_view(question_id)]
    assert patch["questions"][0]["status"] == "pending"


def test_patch_audience_gets_approved_question():
    room = new_room(pre_moderation=True)
    question_id = ask(room, ANN)
    view = primed(room, AUDIENCE)
    room.take_changes()
    moderate(room, question_id, "approve")

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch["questions"] == [room.question_view(question_id)]
    assert patch["removed"] == []


def test_patch_audience_removes_hidden_question():
    room = new_room()
    question_id = ask(room, ANN)
    view = primed(room, AUDIENCE)
    start = view.seq
    moderate(room, question_id, "hide")

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch == {"type": "patch", "seq": start + 1, "questions": [], "removed": [question_id]}
    assert question_id not in view.views


def test_patch_staff_keeps_hidden_question():
    room = new_room()
    question_id = ask(room, ANN)
    view = primed(room, STAFF)
    moderate(room, question_id, "hide")

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch["removed"] == []
    assert patch["questions"] == [room.staff_view(question_id)]
    assert patch["questions"][0]["status"] == "hidden"


def test_patch_audience_ignores_pending_hidden():
    room = new_room(pre_moderation=True)
    question_id = ask(room, ANN)
    view = primed(room, AUDIENCE)
    moderate(room, question_id, "hide")

    patch = view.patch(room, room.take_changes())

    assert patch is None


def test_patch_lists_changes_in_id_order():
    room = new_room()
    view = primed(room, STAFF)
    question_ids = [ask(room, ANN) for _ in range(4)]

    patch = decoded(view.patch(room, room.take_changes()))

    assert [question["id"] for question in patch["questions"]] == sorted(question_ids)


def test_patch_none_when_view_unchanged():
    room = new_room()
    question_id = ask(room, ANN)
    view = primed(room, AUDIENCE)

    patch = view.patch(room, Changes(questions={question_id}))

    assert patch is None


def test_patch_none_for_unknown_question():
    room = new_room()
    view = primed(room, AUDIENCE)

    patch = view.patch(room, Changes(questions={new_id()}))

    assert patch is None


def test_patch_none_for_empty_changes():
    room = new_room()
    view = primed(room, STAFF)

    assert view.patch(room, Changes()) is None


def test_patch_none_when_meta_unchanged():
    room = new_room()
    view = primed(room, AUDIENCE)

    patch = view.patch(room, Changes(meta=True))

    assert patch is None


def test_patch_carries_room_on_settings_change():
    room = new_room()
    view = primed(room, AUDIENCE)
    start = view.seq
    room.apply_intent(Settings(new_id(), {"downvotes_allowed": False}), HOST, 3_000)

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch == {"type": "patch", "seq": start + 1, "questions": [], "removed": [], "room": room.room_view()}
    assert patch["room"]["downvotes_allowed"] is False


def test_patch_pin_updates_both_questions():
    room = new_room()
    first, second = ask(room, ANN), ask(room, BOB)
    moderate(room, first, "pin")
    view = primed(room, AUDIENCE)
    room.take_changes()
    moderate(room, second, "pin")

    patch = decoded(view.patch(room, room.take_changes()))

    pinned = {question["id"]: question["pinned"] for question in patch["questions"]}
    assert pinned == {first: False, second: True}
    assert patch["room"]["pinned"] == second


def test_patch_audience_unnames_hidden_pin():
    room = new_room()
    question_id = ask(room, ANN)
    moderate(room, question_id, "pin")
    view = primed(room, AUDIENCE)
    start = view.seq
    room.take_changes()
    moderate(room, question_id, "hide")

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch == {"type": "patch", "seq": start + 1, "questions": [], "removed": [question_id], "room": {**room.room_view(), "pinned": None}}


def test_patch_staff_keeps_hidden_pin():
    room = new_room()
    question_id = ask(room, ANN)
    moderate(room, question_id, "pin")
    view = primed(room, STAFF)
    room.take_changes()
    moderate(room, question_id, "hide")

    patch = decoded(view.patch(room, room.take_changes()))

    assert "room" not in patch
    assert view.room["pinned"] == question_id


def test_patch_audience_renames_reopened_pin():
    room = new_room()
    question_id = ask(room, ANN)
    moderate(room, question_id, "pin")
    moderate(room, question_id, "hide")
    view = primed(room, AUDIENCE)
    assert view.room["pinned"] is None
    room.take_changes()
    moderate(room, question_id, "approve")

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch["room"]["pinned"] == question_id
    assert patch["questions"] == [room.question_view(question_id)]


def test_prime_audience_unnames_hidden_pin():
    room = new_room()
    question_id = ask(room, ANN)
    moderate(room, question_id, "pin")
    moderate(room, question_id, "hide")

    view = primed(room, AUDIENCE)

    assert view.room["pinned"] is None


def test_patch_seq_increases_by_one():
    room = new_room()
    view = primed(room, AUDIENCE)
    start = view.seq
    seqs = []
    for _ in range(3):
        ask(room, ANN)
        seqs.append(decoded(view.patch(room, room.take_changes()))["seq"])

    assert seqs == [start + 1, start + 2, start + 3]


def test_patch_none_keeps_seq():
    room = new_room(pre_moderation=True)
    view = primed(room, AUDIENCE)
    start = view.seq
    ask(room, ANN)
    assert view.patch(room, room.take_changes()) is None
    question_id = ask(room, MODERATOR)

    patch = decoded(view.patch(room, room.take_changes()))

    assert patch["seq"] == start + 1
    assert patch["questions"] == [room.question_view(question_id)]


def test_patch_same_bytes_for_every_socket():
    room = new_room()
    view = primed(room, AUDIENCE)
    ask(room, ANN)

    data = view.patch(room, room.take_changes())

    assert list(view.history) == [(view.seq, data)]


# -- since ------------------------------------------------------------------------


def patched_view(count: int) -> tuple[Room, ClassView, int, list[bytes]]:
    """Prime an audience view and produce ``count`` patches; return the start seq and the patches."""
    room = new_room()
    view = primed(room, AUDIENCE)
    start = view.seq
    patches = []
    for _ in range(count):
        ask(room, ANN)
        patches.append(view.patch(room, room.take_changes()))
    return room, view, start, patches


def test_since_current_seq_is_empty():
    _, view, start, _ = patched_view(2)

    assert view.since(start + 2) == []


def test_since_replays_all_patches():
    _, view, start, patches = patched_view(3)

    assert view.since(start) == patches


def test_since_replays_later_patches():
    _, view, start, patches = patched_view(3)

    assert view.since(start + 1) == patches[1:]


def test_since_before_history_is_none():
    _, view, start, _ = patched_view(2)

    assert view.since(start - 1) is None


def test_since_future_seq_is_none():
    _, view, start, _ = patched_view(2)

    assert view.since(start + 3) is None


def test_since_other_sequence_is_none():
    _, view, _, _ = patched_view(2)

    assert view.since(12345) is None


def test_since_primed_without_patches():
    room = new_room()
    view = primed(room, AUDIENCE)

    assert view.since(view.seq) == []
    assert view.since(view.seq - 1) is None


def test_since_drops_patches_beyond_history():
    _, view, start, patches = patched_view(HISTORY + 1)

    assert view.since(start) is None
    assert view.since(start + 1) == patches[1:]
    assert len(view.since(start + 1)) == HISTORY


# -- snapshot -----------------------------------------------------------------------


def test_snapshot_audience_content():
    room = new_room(pre_moderation=True)
    own_pending = ask(room, ANN, now_ms=2_000)
    others_pending = ask(room, BOB, now_ms=2_001)
    live = ask(room, MODERATOR, now_ms=2_002)
    vote(room, ANN, live, 1)
    view = primed(room, AUDIENCE)

    snapshot = decoded(view.snapshot(room, ANN))

    assert snapshot == {
        "type": "snapshot",
        "seq": view.seq,
        "room": room.room_view(),
        "questions": [room.question_view(live), room.question_view(own_pending)],
        "mine": {live: 1},
    }
    assert others_pending not in [question["id"] for question in snapshot["questions"]]


def test_snapshot_staff_sees_everything():
    room = new_room(pre_moderation=True)
    pending = ask(room, ANN)
    hidden = ask(room, BOB)
    moderate(room, hidden, "hide")
    view = primed(room, STAFF)

    snapshot = decoded(view.snapshot(room, MODERATOR))

    assert {question["id"] for question in snapshot["questions"]} == {pending, hidden}
    assert snapshot["mine"] == {}


def test_snapshot_seq_follows_patches():
    room, view, start, _ = patched_view(2)

    snapshot = decoded(view.snapshot(room, BOB))

    assert snapshot["seq"] == start + 2


# -- personal frames ------------------------------------------------------------------


def test_personal_frame_own_vote():
    room = new_room()
    question_id = ask(room, BOB)
    room.take_changes()
    vote(room, ANN, question_id, 1)

    frame = decoded(personal_frame(room, ANN, room.take_changes()))

    assert frame == {"type": "mine", "votes": {question_id: 1}, "questions": [], "removed": []}


def test_personal_frame_withdrawn_vote_is_zero():
    room = new_room()
    question_id = ask(room, BOB)
    vote(room, ANN, question_id, -1)
    room.take_changes()
    vote(room, ANN, question_id, 0)

    frame = decoded(personal_frame(room, ANN, room.take_changes()))

    assert frame["votes"] == {question_id: 0}


def test_personal_frame_none_for_others_vote():
    room = new_room()
    question_id = ask(room, BOB)
    room.take_changes()
    vote(room, BOB, question_id, 1)

    frame = personal_frame(room, ANN, room.take_changes())

    assert frame is None


def test_personal_frame_only_own_votes():
    room = new_room()
    question_id = ask(room, BOB)
    room.take_changes()
    vote(room, BOB, question_id, 1)
    vote(room, ANN, question_id, -1)

    frame = decoded(personal_frame(room, BOB, room.take_changes()))

    assert frame["votes"] == {question_id: 1}


def test_personal_frame_own_pending_question():
    room = new_room(pre_moderation=True)
    question_id = ask(room, ANN)

    frame = decoded(personal_frame(room, ANN, room.take_changes()))

    assert frame == {"type": "mine", "votes": {}, "questions": [room.question_view(question_id)], "removed": []}


def test_personal_frame_none_for_others_pending():
    room = new_room(pre_moderation=True)
    ask(room, BOB)

    frame = personal_frame(room, ANN, room.take_changes())

    assert frame is None


def test_personal_frame_own_live_question_not_personal():
    room = new_room()
    ask(room, ANN)

    frame = personal_frame(room, ANN, room.take_changes())

    assert frame is None


def test_personal_frame_own_hidden_question_removed():
    room = new_room(pre_moderation=True)
    question_id = ask(room, ANN)
    room.take_changes()
    moderate(room, question_id, "hide")

    frame = decoded(personal_frame(room, ANN, room.take_changes()))

    assert frame == {"type": "mine", "votes": {}, "questions": [], "removed": [question_id]}


def test_personal_frame_staff_gets_no_questions():
    room = new_room(pre_moderation=True)
    question_id = ask(room, MODERATOR)
    room.take_changes()
    moderate(room, question_id, "hide")

    frame = personal_frame(room, MODERATOR, room.take_changes())

    assert frame is None


def test_personal_refresh_votes_and_own_pending():
    room = new_room(pre_moderation=True)
    own_pending = ask(room, ANN)
    ask(room, BOB)
    live = ask(room, MODERATOR)
    vote(room, ANN, live, -1)

    frame = decoded(personal_refresh(room, ANN))

    assert frame == {"type": "mine", "replace": True, "votes": {live: -1}, "questions": [room.question_view(own_pending)], "removed": []}


def test_personal_refresh_names_own_hidden():
    room = new_room(pre_moderation=True)
    own_hidden = ask(room, ANN)
    moderate(room, own_hidden, "hide")
    others_hidden = ask(room, BOB)
    moderate(room, others_hidden, "hide")

    frame = decoded(personal_refresh(room, ANN))

    assert frame["removed"] == [own_hidden]
    assert frame["questions"] == []


def test_personal_refresh_lists_every_own_pending():
    room = new_room(pre_moderation=True)
    own = {ask(room, ANN, now_ms=2_000 + n) for n in range(3)}

    frame = decoded(personal_refresh(room, ANN))

    assert {question["id"] for question in frame["questions"]} == own


def test_personal_refresh_staff_has_no_questions():
    room = new_room(pre_moderation=True)
    ask(room, ANN)
    live = ask(room, HOST)
    vote(room, HOST, live, 1)

    frame = decoded(personal_refresh(room, HOST))

    assert frame == {"type": "mine", "replace": True, "votes": {live: 1}, "questions": [], "removed": []}


def test_personal_refresh_empty():
    room = new_room()

    frame = decoded(personal_refresh(room, BOB))

    assert frame == {"type": "mine", "replace": True, "votes": {}, "questions": [], "removed": []}
