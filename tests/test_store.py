"""Behaviour tests of the core's store, run against both backends.

The PostgreSQL cases need a server at ``POSTGRES_URL`` with trust
authentication and a database named ``test``. Each test uses its own schema,
dropped afterwards. These cases fail, rather than skip, when the server is
unreachable, because the server is expected to run wherever this suite runs.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from core.store import (
    DuplicateRoomError,
    NewUpdate,
    RoomRecord,
    Snapshot,
    SQLiteStore,
    open_store,
    redact_url,
)
from core.store_postgres import PostgresStore

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
NOW_MS = 1_700_000_000_000


class StoreOpener:
    """Open stores on one location, reopenable, and close them all at teardown."""

    def __init__(self, target, schema: str = "public"):
        self.target = target
        self.schema = schema
        self.opened = []

    async def open(self):
        store = await open_store(self.target, schema=self.schema)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()
        self.opened.clear()


async def connect_to_postgres() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc!r}. Start a server on 127.0.0.1:5432 "
            "that trusts the user postgres and has a database named test.",
            pytrace=False,
        )


@pytest.fixture(params=["sqlite", "postgres"])
async def opener(request, tmp_path):
    if request.param == "sqlite":
        opener = StoreOpener(tmp_path / "core.sqlite3")
        yield opener
        await opener.close_all()
        return

    schema = "test_" + uuid.uuid4().hex
    admin = await connect_to_postgres()
    opener = StoreOpener(POSTGRES_URL, schema)
    try:
        yield opener
    finally:
        await opener.close_all()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def room_record(room: str = "r1", code: str = "CODE1", created_at: int = NOW_MS) -> RoomRecord:
    return RoomRecord(room, f"Title of {room}", code, "user-1", created_at)


def update(room: str, data: bytes, producer: int = 7, seq: int = 1) -> NewUpdate:
    return NewUpdate(room, producer, seq, data, "region-a")


# -- factory -------------------------------------------------------------------


async def test_open_store_picks_backend(tmp_path):
    sqlite = await open_store(tmp_path / "a.sqlite3")
    await sqlite.close()
    assert isinstance(sqlite, SQLiteStore)

    for url in (POSTGRES_URL, POSTGRES_URL.replace("postgresql://", "postgres://")):
        schema = "test_" + uuid.uuid4().hex
        admin = await connect_to_postgres()
        try:
            store = await open_store(url, schema=schema)
            await store.close()
            assert isinstance(store, PostgresStore)
        finally:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()


def test_redact_url_hides_password():
    assert redact_url("postgresql://ama:s3cret@db.example:5432/ama") == "postgresql://ama:***@db.example:5432/ama"
    assert redact_url("postgres://ama@db.example/ama") == "postgres://ama@db.example/ama"
    assert redact_url("/var/lib/ama/core.sqlite3") == "/var/lib/ama/core.sqlite3"


def test_postgres_store_rejects_invalid_schema():
    with pytest.raises(ValueError, match="invalid PostgreSQL schema name"):
        PostgresStore(POSTGRES_URL, schema='x"; DROP TABLE rooms; --')


# -- rooms ---------------------------------------------------------------------


async def test_room_round_trip(opener):
    store = await opener.open()
    record = room_record()
    await store.create_room(record, update("r1", b"genesis"), NOW_MS)

    assert await store.room("r1") == record
    assert (await store.room("r1")).moderator_code is None
    assert await store.room("missing") is None

    await store.set_moderator_code("r1", "MOD1")
    stored = await store.room("r1")
    assert stored.moderator_code == "MOD1"
    assert stored.title == "Title of r1"


async def test_room_stores_genesis_update(opener):
    store = await opener.open()
    await store.create_room(room_record(), update("r1", b"genesis"), NOW_MS)

    updates = await store.updates_after("r1", 0)
    assert [u.data for u in updates] == [b"genesis"]
    assert await store.update_count("r1") == 1


async def test_room_ids_in_creation_order(opener):
    store = await opener.open()
    await store.create_room(room_record("later", "C2", NOW_MS + 5), update("later", b"g2"), NOW_MS)
    await store.create_room(room_record("first", "C1", NOW_MS), update("first", b"g1"), NOW_MS)

    assert await store.room_ids() == ["first", "later"]


@pytest.mark.parametrize("collision", ["room", "code"])
async def test_duplicate_room_raises(opener, collision):
    store = await opener.open()
    await store.create_room(room_record("r1", "CODE1"), update("r1", b"genesis-1"), NOW_MS)
    duplicate = room_record("r1", "CODE2") if collision == "room" else room_record("r2", "CODE1")

    with pytest.raises(DuplicateRoomError):
        await store.create_room(duplicate, update(duplicate.room, b"genesis-2"), NOW_MS)

    # The failed creation rolled back, genesis update included.
    assert await store.room_ids() == ["r1"]
    assert await store.update_count() == 1


# -- updates -------------------------------------------------------------------


async def test_append_returns_none_for_duplicate(opener):
    store = await opener.open()
    first = await store.append([update("r1", b"a", seq=1), update("r1", b"b", seq=2)], NOW_MS)
    assert all(isinstance(log_id, int) for log_id in first)
    assert first[0] < first[1]

    second = await store.append([update("r1", b"c", seq=3), update("r1", b"a", seq=1), update("r1", b"d", seq=4)], NOW_MS)
    assert second[1] is None
    assert second[0] > first[1]
    assert second[2] > second[0]


async def test_append_duplicate_within_batch(opener):
    store = await opener.open()
    ids = await store.append([update("r1", b"same"), update("r1", b"same")], NOW_MS)

    assert isinstance(ids[0], int)
    assert ids[1] is None
    assert await store.update_count() == 1


async def test_append_empty_batch(opener):
    store = await opener.open()
    assert await store.append([], NOW_MS) == []


async def test_updates_after_order_and_filter(opener):
    store = await opener.open()
    ids = await store.append(
        [
            update("r1", b"r1-a", producer=1, seq=1),
            update("r2", b"r2-a", producer=2, seq=1),
            update("r1", b"r1-b", producer=1, seq=2),
            update("r1", b"r1-c", producer=3, seq=1),
        ],
        NOW_MS,
    )

    all_r1 = await store.updates_after("r1", 0)
    assert [u.id for u in all_r1] == [ids[0], ids[2], ids[3]]
    assert [u.data for u in all_r1] == [b"r1-a", b"r1-b", b"r1-c"]
    assert [(u.producer, u.seq) for u in all_r1] == [(1, 1), (1, 2), (3, 1)]
    assert all(type(u.data) is bytes for u in all_r1)

    after_first = await store.updates_after("r1", ids[0])
    assert [u.data for u in after_first] == [b"r1-b", b"r1-c"]
    assert await store.updates_after("r1", ids[3]) == []
    assert [u.data for u in await store.updates_after("r2", 0)] == [b"r2-a"]
    assert await store.updates_after("missing", 0) == []


async def test_update_count_total_and_per_room(opener):
    store = await opener.open()
    assert await store.update_count() == 0

    await store.append([update("r1", b"1"), update("r1", b"2"), update("r2", b"3"), update("r1", b"1")], NOW_MS)

    assert await store.update_count() == 3
    assert await store.update_count("r1") == 2
    assert await store.update_count("r2") == 1
    assert await store.update_count("missing") == 0


async def test_large_producer_id_round_trip(opener):
    store = await opener.open()
    producer = 2**53 - 1
    await store.append([update("r1", b"x", producer=producer, seq=2**40)], NOW_MS)

    [stored] = await store.updates_after("r1", 0)
    assert stored.producer == producer
    assert stored.seq == 2**40


# -- snapshots -----------------------------------------------------------------


async def test_snapshot_save_overwrite_load(opener):
    store = await opener.open()
    assert await store.snapshot("r1") is None

    first = Snapshot(3, b"state-1", {1: 2, 2**40: 5})
    await store.save_snapshot("r1", first, NOW_MS)
    assert await store.snapshot("r1") == first

    second = Snapshot(9, b"state-2", {1: 4})
    await store.save_snapshot("r1", second, NOW_MS + 1)
    loaded = await store.snapshot("r1")
    assert loaded == second
    assert loaded.seqs == {1: 4}
    assert type(loaded.state) is bytes
    assert await store.snapshot("r2") is None


# -- durability ----------------------------------------------------------------


async def test_data_survives_close_and_reopen(opener):
    store = await opener.open()
    record = room_record()
    await store.create_room(record, update("r1", b"genesis"), NOW_MS)
    await store.set_moderator_code("r1", "MOD1")
    ids = await store.append([update("r1", b"a", seq=2), update("r1", b"b", seq=3)], NOW_MS)
    await store.save_snapshot("r1", Snapshot(ids[0], b"state", {7: 2}), NOW_MS)
    await opener.close_all()

    reopened = await opener.open()
    assert (await reopened.room("r1")).moderator_code == "MOD1"
    assert await reopened.room_ids() == ["r1"]
    assert [u.data for u in await reopened.updates_after("r1", 0)] == [b"genesis", b"a", b"b"]
    assert await reopened.snapshot("r1") == Snapshot(ids[0], b"state", {7: 2})

    # Deduplication still applies after a reopen, and new ids continue past old ones.
    more = await reopened.append([update("r1", b"a", seq=2), update("r1", b"c", seq=4)], NOW_MS)
    assert more[0] is None
    assert more[1] > ids[1]
