"""In-process scenarios of the room model and the core's store: ``ingest`` and ``crdt``.

* ``ingest``: vote updates made by a producing replica (not timed) are
  stored the way the core stores a fetched batch (``SQLiteStore.append``,
  one transaction with ``synchronous=FULL``) and applied to the core's
  replica (``CoreReplicas.add_stored``). Durable updates per second, for
  the core's fetch batch size and for one update per transaction.
* ``crdt``: memory per vote per replica, from the slope of VmRSS while
  votes are applied, in fresh processes: one producing replica
  (``Room.apply_intent``) and one receiving replica (``Room.apply_update``).

Both use a temporary directory and no network.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import tempfile
import time
import uuid
from pathlib import Path

from ama.bench import procfs
from ama.bench.pool import WorkerError
from ama.bench.stats import fit_line
from ama.intents import Ask, Vote
from ama.room import Actor, Room

QUESTIONS = 10
HOST = Actor("host", "host", "Host")


def vote_intents(votes: int, questions: list[str]):
    """Yield (actor, intent) pairs: users vote +1 on every question in turn, so votes / len(questions) users."""
    for index in range(votes):
        question = questions[index % len(questions)]
        user = f"u{index // len(questions)}"
        yield Actor(user, "audience", user), Vote(str(uuid.uuid4()), question, 1)


def new_room(now_ms: int = 1_700_000_000_000) -> tuple[Room, list[str], list[bytes]]:
    """Return a room with a title and ``QUESTIONS`` live questions, and the updates that made it."""
    room = Room("bench" + uuid.uuid4().hex[:8])
    updates = [room.create("Benchmark room", now_ms)]
    questions = []
    for number in range(QUESTIONS):
        applied = room.apply_intent(Ask(str(uuid.uuid4()), f"Benchmark question {number + 1}"), HOST, now_ms)
        questions.append(applied.intent_id)
        updates.append(applied.update)
    return room, questions, updates


# -- ingest ----------------------------------------------------------------------------


async def ingest(updates: int, batch: int, folder: Path) -> dict:
    """Store and apply ``updates`` vote updates in batches of ``batch``; return durable updates per second."""
    from ama.replication import Replica
    from core.service import CoreReplicas
    from core.store import NewUpdate, RoomRecord, SQLiteStore

    store = SQLiteStore(folder / f"core-{batch}.sqlite3")
    await store.open()
    try:
        producer = Replica(Room("bench" + uuid.uuid4().hex[:8]))
        room_id = producer.room.room_id
        genesis = producer.publishable(producer.room.create("Benchmark room", 0))
        await store.create_room(RoomRecord(room_id, "Benchmark room", uuid.uuid4().hex[:8], "host", 0),
                                NewUpdate(room_id, genesis.producer, genesis.seq, genesis.update, "bench"), 0)
        messages = []
        question = producer.room.apply_intent(Ask(str(uuid.uuid4()), "Benchmark question"), HOST, 0)
        messages.append(producer.publishable(question.update))
        for actor, intent in vote_intents(updates - 1, [question.intent_id]):
            messages.append(producer.publishable(producer.room.apply_intent(intent, actor, 0).update))

        replicas = CoreReplicas(store)
        await replicas.get(room_id)
        began = time.perf_counter()
        for start in range(0, len(messages), batch):
            chunk = messages[start : start + batch]
            log_ids = await store.append([NewUpdate(room_id, m.producer, m.seq, m.update, "bench") for m in chunk], 0)
            for message, log_id in zip(chunk, log_ids):
                if log_id is not None:
                    await replicas.add_stored(room_id, log_id, message.producer, message.seq, message.update)
        elapsed = time.perf_counter() - began
        core_up = replicas.replicas[room_id].room.totals.get(question.intent_id, [0, 0])[0]
    finally:
        await store.close()
    return {"updates": len(messages), "batch": batch, "elapsed_s": round(elapsed, 3), "updates_per_second": round(len(messages) / elapsed),
            "core_replica_votes": core_up}


def run_ingest(updates: int, progress) -> dict:
    """Measure the core's durable updates per second with its fetch batch (512) and with one update per transaction."""
    from core.service import FETCH_BATCH

    # The core's INFO lines (snapshots, loads) would interleave with the
    # bench's progress lines; warnings still show.
    core_log = logging.getLogger("ama")
    level = core_log.level
    core_log.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="ama-bench-ingest-") as folder:
            batched = asyncio.run(ingest(updates, FETCH_BATCH, Path(folder)))
            progress(f"ama: {batched['updates_per_second']} durable updates/s in batches of {FETCH_BATCH}")
            single = asyncio.run(ingest(max(100, updates // 10), 1, Path(folder)))
            progress(f"ama: {single['updates_per_second']} durable updates/s one per transaction")
    finally:
        core_log.setLevel(level)
    return {
        "updates_per_second": batched["updates_per_second"],
        "updates_per_second_one_per_transaction": single["updates_per_second"],
        "updates": batched["updates"],
        "batch": batched["batch"],
        "elapsed_s": batched["elapsed_s"],
        "votes_in_core_replica": batched["core_replica_votes"],
    }


# -- crdt ------------------------------------------------------------------------------


def _produce(votes: int, steps: int, update_file: str, reply) -> None:
    room, questions, updates = new_room()
    with open(update_file, "wb") as out:
        for update in updates:
            out.write(len(update).to_bytes(4, "big") + update)
        points = [(0, procfs.rss_bytes(os.getpid()))]
        began = time.perf_counter()
        step = max(1, votes // steps)
        for index, (actor, intent) in enumerate(vote_intents(votes, questions), 1):
            update = room.apply_intent(intent, actor, 0).update
            out.write(len(update).to_bytes(4, "big") + update)
            if index % step == 0:
                points.append((index, procfs.rss_bytes(os.getpid())))
        elapsed = time.perf_counter() - began
    reply.send({"points": points, "elapsed_s": elapsed, "state_bytes": len(room.diff()), "up": sum(up for up, _ in room.totals.values())})


def _receive(votes: int, steps: int, update_file: str, reply) -> None:
    room = Room("receiver")
    with open(update_file, "rb") as source:
        for _ in range(1 + QUESTIONS):
            room.apply_update(source.read(int.from_bytes(source.read(4), "big")))
        points = [(0, procfs.rss_bytes(os.getpid()))]
        began = time.perf_counter()
        step = max(1, votes // steps)
        for index in range(1, votes + 1):
            room.apply_update(source.read(int.from_bytes(source.read(4), "big")))
            if index % step == 0:
                points.append((index, procfs.rss_bytes(os.getpid())))
        elapsed = time.perf_counter() - began
    reply.send({"points": points, "elapsed_s": elapsed, "state_bytes": len(room.diff()), "up": sum(up for up, _ in room.totals.values())})


def _in_process(target, votes: int, steps: int, update_file: str, timeout_s: float) -> dict:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=target, args=(votes, steps, update_file, theirs), daemon=True)
    process.start()
    theirs.close()
    try:
        if not ours.poll(timeout_s):
            raise TimeoutError(f"crdt measurement did not finish within {timeout_s:.0f} s")
        try:
            return ours.recv()
        except EOFError:
            process.join(5)
            raise WorkerError(f"crdt measurement process {process.pid} exited with code {process.exitcode} before it replied") from None
    finally:
        process.join(5)
        if process.is_alive():
            procfs.stop_pid(process.pid, timeout_s=2)


def _per_vote(result: dict, votes: int) -> dict:
    points = result["points"][1:]
    fit = fit_line([n for n, _ in points], [rss for _, rss in points])
    return {
        "bytes_per_vote": round(fit.slope),
        "fit_r_squared": round(fit.r_squared, 4),
        "votes_per_second": round(votes / result["elapsed_s"]),
        "state_bytes_per_vote": round(result["state_bytes"] / votes, 1),
        "up_total": result["up"],
    }


def run_crdt(votes: int, progress, timeout_s: float = 600.0) -> dict:
    """Measure memory per vote of a producing and a receiving replica, each in a fresh process."""
    steps = 5
    with tempfile.TemporaryDirectory(prefix="ama-bench-crdt-") as folder:
        update_file = str(Path(folder) / "updates.bin")
        produced = _per_vote(_in_process(_produce, votes, steps, update_file, timeout_s), votes)
        progress(f"ama: producing replica {produced['bytes_per_vote']} bytes per vote")
        received = _per_vote(_in_process(_receive, votes, steps, update_file, timeout_s), votes)
        progress(f"ama: receiving replica {received['bytes_per_vote']} bytes per vote")
    return {
        "votes": votes,
        "questions": QUESTIONS,
        "bytes_per_vote": received["bytes_per_vote"],
        "bytes_per_vote_producer": produced["bytes_per_vote"],
        "state_bytes_per_vote": received["state_bytes_per_vote"],
        "votes_applied_per_second": received["votes_per_second"],
        "intents_applied_per_second": produced["votes_per_second"],
        "fit_r_squared": min(received["fit_r_squared"], produced["fit_r_squared"]),
        "up_total": received["up_total"],
    }
