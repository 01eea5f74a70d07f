"""Property tests: replicas that apply random intents and exchange updates badly still converge.

Each example builds 2 to 4 ``Replica(Room(...))`` objects, applies random
intents from random actors at random replicas, and delivers the published
updates late, twice, out of order or not at all. Two-way state-vector syncs
between every pair then run until nothing changes, and every replica must
hold the same document, the same views and vote totals equal to a recount.
"""

from __future__ import annotations

import os

import itertools
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from ama.intents import Ask, FrameError, Moderate, Settings, Vote
from ama.replication import Replica, UpdateMessage
from ama.room import Actor, Room, decode_state_vector

ROOM_ID = "room-1"
ACTORS = [
    Actor("user-ann", "audience", "Ann"),
    Actor("user-bob", "audience", "Bob"),
    Actor("user-cy", "audience", "Cy"),
    Actor("mod-1", "moderator", "Mo"),
    Actor("host-1", "host", "Hana"),
]
HOST = ACTORS[-1]
TEXTS = ["What ships next?", "Why?", "Cafe\u0301 hours?", "x" * 20]
ACTIONS = ["approve", "hide", "answer", "reopen", "pin", "unpin"]
SETTING_VALUES = [
    ("questions_open", True),
    ("questions_open", False),
    ("pre_moderation", True),
    ("pre_moderation", False),
    ("anonymous_allowed", False),
    ("anonymous_allowed", True),
    ("downvotes_allowed", False),
    ("downvotes_allowed", True),
    ("max_question_length", 10),
    ("max_question_length", 300),
    ("title", "Renamed"),
]
MAX_SYNC_ROUNDS = 10

REPLICA_RUNS = settings(max_examples=int(os.environ.get("AMA_PROPERTY_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Network:
    """Replicas plus, per replica, the published messages not yet delivered to it."""

    def __init__(self, count: int):
        self.replicas = [Replica(Room(ROOM_ID, client_id=n + 1)) for n in range(count)]
        self.inboxes: list[list[UpdateMessage]] = [[] for _ in range(count)]
        self.question_ids: list[str] = []
        # (intent, actor) pairs applied so far, for resends.
        self.sent: list[tuple[object, Actor]] = []

        creator = self.replicas[0]
        created = creator.publishable(creator.room.create("Town hall", 1_000))
        for replica in self.replicas[1:]:
            replica.receive(created)

    def publish(self, origin: int, message: UpdateMessage) -> None:
        for index in range(len(self.replicas)):
            if index != origin:
                self.inboxes[index].append(message)

    def sync(self, requester: Replica, responder: Replica) -> None:
        reply = requester.complete_sync(responder.answer_sync(requester.sync_request()))
        if reply is not None:
            responder.take_sync(reply)


def fingerprint(replica: Replica) -> tuple:
    return decode_state_vector(replica.room.state_vector()), dict(replica.delivery.seqs)


def run_anti_entropy(network: Network) -> int:
    """Sync every ordered pair both ways until a whole round changes nothing; return the rounds run."""
    for round_number in range(1, MAX_SYNC_ROUNDS + 1):
        before = [fingerprint(replica) for replica in network.replicas]
        for requester, responder in itertools.permutations(network.replicas, 2):
            network.sync(requester, responder)
        if [fingerprint(replica) for replica in network.replicas] == before:
            return round_number
    raise AssertionError(f"anti-entropy did not settle in {MAX_SYNC_ROUNDS} rounds")


def draw_intent(data, network: Network):
    kind = data.draw(st.sampled_from(["ask", "ask", "vote", "vote", "vote", "moderate", "settings", "resend"]), label="kind")
    actor = data.draw(st.sampled_from(ACTORS), label="actor")
    if kind == "resend" and network.sent:
        intent, original = data.draw(st.sampled_from(network.sent), label="resent")
        same_actor = data.draw(st.booleans(), label="same actor")
        return intent, (original if same_actor else actor)
    if kind in ("vote", "moderate") and network.question_ids:
        question_id = data.draw(st.sampled_from(network.question_ids), label="question")
        if kind == "vote":
            return Vote(str(uuid.uuid4()), question_id, data.draw(st.sampled_from([1, 1, -1, 0]), label="value")), actor
        return Moderate(str(uuid.uuid4()), question_id, data.draw(st.sampled_from(ACTIONS), label="action")), actor
    if kind == "settings":
        key, value = data.draw(st.sampled_from(SETTING_VALUES), label="setting")
        return Settings(str(uuid.uuid4()), {key: value}), HOST
    text = data.draw(st.sampled_from(TEXTS), label="text")
    return Ask(str(uuid.uuid4()), text, data.draw(st.booleans(), label="anonymous")), actor


def apply_random_intent(data, network: Network) -> None:
    origin = data.draw(st.integers(0, len(network.replicas) - 1), label="origin")
    replica = network.replicas[origin]
    intent, actor = draw_intent(data, network)
    try:
        applied = replica.room.apply_intent(intent, actor, 2_000 + len(network.sent))
    except FrameError:
        return
    network.sent.append((intent, actor))
    if isinstance(intent, Ask) and intent.id not in network.question_ids:
        network.question_ids.append(intent.id)
    if applied.update is not None:
        network.publish(origin, replica.publishable(applied.update))


def deliver_random_message(data, network: Network) -> None:
    """Deliver, duplicate or drop one undelivered message; sync with a random peer when a gap shows."""
    waiting = [index for index, inbox in enumerate(network.inboxes) if inbox]
    if not waiting:
        return
    target = data.draw(st.sampled_from(waiting), label="target")
    inbox = network.inboxes[target]
    position = data.draw(st.integers(0, len(inbox) - 1), label="position")
    fate = data.draw(st.sampled_from(["deliver", "deliver", "deliver", "duplicate", "drop"]), label="fate")
    message = inbox[position] if fate == "duplicate" else inbox.pop(position)
    if fate == "drop":
        return
    needs_sync = network.replicas[target].receive(message)
    if needs_sync and data.draw(st.booleans(), label="sync on gap"):
        peer = data.draw(st.integers(0, len(network.replicas) - 1), label="peer")
        if peer != target:
            network.sync(network.replicas[target], network.replicas[peer])


def drain_inboxes(data, network: Network) -> None:
    """Deliver what is left in a random order, dropping some messages."""
    for target, inbox in enumerate(network.inboxes):
        order = data.draw(st.permutations(range(len(inbox))), label="drain order")
        for position in order:
            # One message in four is dropped.
            if data.draw(st.integers(0, 3), label="drop at drain") == 0:
                continue
            network.replicas[target].receive(inbox[position])
        inbox.clear()


def document_contents(room: Room) -> dict:
    return {
        "meta": room.meta.to_py(),
        "questions": room.questions.to_py(),
        "votes": room.votes.to_py(),
        "intents": room.intents.to_py(),
    }


@REPLICA_RUNS
@given(data=st.data(), replica_count=st.integers(2, 4), step_count=st.integers(1, 40))
def test_replicas_converge_after_anti_entropy(data, replica_count, step_count):
    network = Network(replica_count)
    for _ in range(step_count):
        if data.draw(st.booleans(), label="produce"):
            apply_random_intent(data, network)
        else:
            deliver_random_message(data, network)
    drain_inboxes(data, network)

    run_anti_entropy(network)

    first = network.replicas[0].room
    for replica in network.replicas[1:]:
        room = replica.room
        assert document_contents(room) == document_contents(first), f"client {room.client_id}"
        assert decode_state_vector(room.state_vector()) == decode_state_vector(first.state_vector()), f"client {room.client_id}"
        assert room.export() == first.export(), f"client {room.client_id}"
        assert room.visible_views(HOST) == first.visible_views(HOST), f"client {room.client_id}"
        for actor in ACTORS:
            assert room.visible_views(actor) == first.visible_views(actor), f"client {room.client_id}, {actor.user_id}"
            assert room.my_votes(actor.user_id) == first.my_votes(actor.user_id), f"client {room.client_id}, {actor.user_id}"


@REPLICA_RUNS
@given(data=st.data(), replica_count=st.integers(2, 4), step_count=st.integers(1, 40))
def test_totals_match_recount_everywhere(data, replica_count, step_count):
    network = Network(replica_count)
    for _ in range(step_count):
        if data.draw(st.booleans(), label="produce"):
            apply_random_intent(data, network)
        else:
            deliver_random_message(data, network)

    # Totals are kept incrementally at every step, so they must match a
    # recount before anti-entropy as well as after it.
    for replica in network.replicas:
        for question_id in replica.room.questions.keys():
            assert tuple(replica.room.totals.get(question_id, (0, 0))) == replica.room.count_votes(question_id), (replica.room.client_id, question_id)

    drain_inboxes(data, network)
    run_anti_entropy(network)

    expected = {question_id: network.replicas[0].room.count_votes(question_id) for question_id in network.replicas[0].room.questions.keys()}
    for replica in network.replicas:
        room = replica.room
        totals = {question_id: tuple(room.totals.get(question_id, (0, 0))) for question_id in room.questions.keys()}
        assert totals == expected, f"client {room.client_id}"


@settings(REPLICA_RUNS, max_examples=80)
@given(data=st.data(), replica_count=st.integers(2, 4), step_count=st.integers(1, 30))
def test_anti_entropy_completes_delivery(data, replica_count, step_count):
    network = Network(replica_count)
    for _ in range(step_count):
        if data.draw(st.booleans(), label="produce"):
            apply_random_intent(data, network)
        else:
            deliver_random_message(data, network)
    drain_inboxes(data, network)

    rounds = run_anti_entropy(network)

    produced = {replica.producer: replica.produced for replica in network.replicas if replica.produced}
    for replica in network.replicas:
        assert replica.delivery.held == {}, f"client {replica.producer}"
        assert replica.delivery.seqs == produced, f"client {replica.producer}"
    # One round brings every pair level; the second only confirms it.
    assert rounds <= 2


@settings(REPLICA_RUNS, max_examples=200)
@given(data=st.data(), step_count=st.integers(1, 12))
def test_receive_in_any_order_matches_producer(data, step_count):
    producer = Replica(Room(ROOM_ID, client_id=1))
    messages = [producer.publishable(producer.room.create("Town hall", 1_000))]
    question_ids: list[str] = []
    for step in range(step_count):
        if question_ids and data.draw(st.booleans(), label="vote"):
            question_id = data.draw(st.sampled_from(question_ids), label="question")
            intent = Vote(str(uuid.uuid4()), question_id, data.draw(st.sampled_from([1, -1, 0]), label="value"))
            actor = data.draw(st.sampled_from(ACTORS[:2]), label="voter")
        elif data.draw(st.booleans(), label="title"):
            intent, actor = Settings(str(uuid.uuid4()), {"title": f"Title {step}"}), HOST
        else:
            intent, actor = Ask(str(uuid.uuid4()), "What ships next?"), ACTORS[0]
            question_ids.append(intent.id)
        messages.append(producer.publishable(producer.room.apply_intent(intent, actor, 2_000 + step).update))
    duplicates = data.draw(st.lists(st.sampled_from(messages), max_size=4), label="duplicates")
    deliveries = data.draw(st.permutations(messages + duplicates), label="order")
    receiver = Replica(Room(ROOM_ID, client_id=2))

    for message in deliveries:
        receiver.receive(message)

    assert document_contents(receiver.room) == document_contents(producer.room)
    assert receiver.room.totals == producer.room.totals
    assert receiver.delivery.has_gap is False


# -- pycrdt 0.14.13: out-of-order updates from one producer ---------------------


def produce_map_updates(writes: list[tuple[str, int]]) -> tuple[Doc, list[bytes]]:
    """Write each (key, value) to map ``m`` of a doc on client id 1, one transaction each; return the doc and its updates."""
    producer = Doc(client_id=1)
    root = producer.get("m", type=Map)
    updates: list[bytes] = []
    producer.observe(lambda event: updates.append(event.update))
    for key, value in writes:
        with producer.transaction():
            root[key] = value
    return producer, updates


def test_raw_doc_out_of_order_loses_overwritten_key():
    # u1 sets a=1, u2 overwrites a=2, u3 sets b=3; applied as u2, u3, u1.
    _, (u1, u2, u3) = produce_map_updates([("a", 1), ("a", 2), ("b", 3)])
    receiver = Doc(client_id=9)
    root = receiver.get("m", type=Map)

    for update in (u2, u3, u1):
        receiver.apply_update(update)

    assert root.get("a") is None
    assert root.get("b") == 3
    # The state vector owns up to clock 1 of the producer's 3 items, so a sync sends the rest.
    assert decode_state_vector(receiver.get_state()) == {1: 1}


def test_raw_doc_in_order_keeps_overwritten_key():
    _, updates = produce_map_updates([("a", 1), ("a", 2), ("b", 3)])
    receiver = Doc(client_id=9)
    root = receiver.get("m", type=Map)

    for update in updates:
        receiver.apply_update(update)

    assert root.to_py() == {"a": 2, "b": 3}


def test_raw_doc_reversed_pair_keeps_key():
    # Two updates alone do not show the loss: the third, on another key, is needed.
    _, (u1, u2) = produce_map_updates([("a", 1), ("a", 2)])
    receiver = Doc(client_id=9)
    root = receiver.get("m", type=Map)

    receiver.apply_update(u2)
    receiver.apply_update(u1)

    assert root.to_py() == {"a": 2}


def test_raw_doc_loss_healed_by_sync():
    producer, (u1, u2, u3) = produce_map_updates([("a", 1), ("a", 2), ("b", 3)])
    receiver = Doc(client_id=9)
    root = receiver.get("m", type=Map)
    for update in (u2, u3, u1):
        receiver.apply_update(update)

    receiver.apply_update(producer.get_update(receiver.get_state()))

    assert root.to_py() == {"a": 2, "b": 3}
    assert decode_state_vector(receiver.get_state()) == {1: 3}


def title_messages() -> tuple[Replica, list[UpdateMessage]]:
    """Produce create, title "A", title "B" and a pre-moderation change on one replica."""
    producer = Replica(Room(ROOM_ID, client_id=1))
    messages = [producer.publishable(producer.room.create("Town hall", 1_000))]
    for changes in ({"title": "A"}, {"title": "B"}, {"pre_moderation": True}):
        applied = producer.room.apply_intent(Settings(str(uuid.uuid4()), changes), HOST, 2_000)
        messages.append(producer.publishable(applied.update))
    return producer, messages


def test_room_out_of_order_loses_title():
    producer, messages = title_messages()
    created, title_a, title_b, moderated = messages
    room = Room(ROOM_ID, client_id=2)

    for message in (created, title_b, moderated, title_a):
        room.apply_update(message.update)

    assert producer.room.room_view()["title"] == "B"
    assert room.meta.get("title") is None
    assert room.room_view()["title"] == ""


def test_replica_receive_out_of_order_keeps_title():
    producer, messages = title_messages()
    created, title_a, title_b, moderated = messages
    replica = Replica(Room(ROOM_ID, client_id=2))

    for message in (created, title_b, moderated, title_a):
        replica.receive(message)

    assert replica.room.room_view() == producer.room.room_view()
    assert replica.room.room_view()["title"] == "B"


def test_room_title_loss_healed_by_sync():
    producer, messages = title_messages()
    created, title_a, title_b, moderated = messages
    lossy = Replica(Room(ROOM_ID, client_id=2))
    for message in (created, title_b, moderated, title_a):
        lossy.apply_unordered(message.update)

    reply = lossy.complete_sync(producer.answer_sync(lossy.sync_request()))

    assert lossy.room.room_view()["title"] == "B"
    assert document_contents(lossy.room) == document_contents(producer.room)
    assert reply is None
