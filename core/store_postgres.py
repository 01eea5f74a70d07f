"""The PostgreSQL backend of the core's store, on an asyncpg connection pool.

It implements the same interface as ``core.store.SQLiteStore``. Each write runs
in one transaction that commits before the method returns. With the server's
default ``synchronous_commit=on``, a commit is flushed to the WAL on disk first.

Writers that insert updates take one transaction-level advisory lock, so log
ids are committed in increasing order. A reader that has seen id N therefore
never sees a smaller id committed later, and ``updates_after`` can safely
resume from the last id it returned. BIGSERIAL ids can still have gaps,
because a conflicting insert also draws a value from the sequence.
"""

from __future__ import annotations

import json
import re

import asyncpg

from core.store import DuplicateRoomError, NewUpdate, RoomRecord, Snapshot, StoredUpdate

# Key of the advisory lock that serializes update inserts and schema creation.
# The value is arbitrary but fixed, so every core process sharing a database uses the same key.
WRITE_LOCK_KEY = 0x414D41_0001

SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

TABLES = """
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    code TEXT NOT NULL UNIQUE,
    host_user TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    moderator_code TEXT
);
CREATE TABLE IF NOT EXISTS updates (
    id BIGSERIAL PRIMARY KEY,
    room TEXT NOT NULL,
    hash BYTEA NOT NULL UNIQUE,
    producer BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    data BYTEA NOT NULL,
    source TEXT NOT NULL,
    stored_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_room ON updates (room, id);
CREATE TABLE IF NOT EXISTS snapshots (
    room TEXT PRIMARY KEY,
    last_update_id BIGINT NOT NULL,
    state BYTEA NOT NULL,
    seqs TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
"""

INSERT_UPDATE = (
    "INSERT INTO updates (room, hash, producer, seq, data, source, stored_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "ON CONFLICT (hash) DO NOTHING RETURNING id"
)


class PostgresStore:
    """The PostgreSQL backend of the core's store.

    ``url`` is a libpq-style ``postgresql://`` URL. A password can also come
    from ``PGPASSWORD`` or ``~/.pgpass``, as in libpq. The store creates
    ``schema`` if it is missing and sets it as every pooled connection's
    ``search_path``.
    """

    def __init__(self, url: str, schema: str = "public", max_connections: int = 10, connect_timeout: float = 10.0):
        if not SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"invalid PostgreSQL schema name {schema!r}: use letters, digits and underscores, at most 63")
        self.url = url
        self.schema = schema
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        await self._create_schema()
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=self.max_connections,
            timeout=self.connect_timeout,
            server_settings={"search_path": self.schema},
        )

    async def _create_schema(self) -> None:
        connection = await asyncpg.connect(self.url, timeout=self.connect_timeout)
        try:
            async with connection.transaction():
                # Two processes creating the same tables at once can fail with a
                # unique violation in the catalog, so creation is serialized.
                await connection.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
                await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await connection.execute(f'SET LOCAL search_path TO "{self.schema}"')
                await connection.execute(TABLES)
        finally:
            await connection.close()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- rooms -----------------------------------------------------------------

    async def create_room(self, record: RoomRecord, genesis: NewUpdate, now_ms: int) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
            try:
                await connection.execute(
                    "INSERT INTO rooms (room, title, code, host_user, created_at) VALUES ($1, $2, $3, $4, $5)",
                    record.room, record.title, record.code, record.host_user, record.created_at,
                )
            except asyncpg.UniqueViolationError as exc:
                raise DuplicateRoomError(f"room {record.room!r} or its code is already taken") from exc
            await self._insert_update(connection, genesis, now_ms)

    async def room(self, room: str) -> RoomRecord | None:
        row = await self._pool.fetchrow(
            "SELECT room, title, code, host_user, created_at, moderator_code FROM rooms WHERE room = $1", room
        )
        return None if row is None else RoomRecord(*row)

    async def set_moderator_code(self, room: str, code: str) -> None:
        await self._pool.execute("UPDATE rooms SET moderator_code = $1 WHERE room = $2", code, room)

    async def room_ids(self) -> list[str]:
        rows = await self._pool.fetch("SELECT room FROM rooms ORDER BY created_at")
        return [row[0] for row in rows]

    # -- updates ---------------------------------------------------------------

    async def append(self, updates: list[NewUpdate], now_ms: int) -> list[int | None]:
        """Store updates in one transaction; return each one's log id, or None for a duplicate."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
            return [await self._insert_update(connection, update, now_ms) for update in updates]

    @staticmethod
    async def _insert_update(connection: asyncpg.Connection, update: NewUpdate, now_ms: int) -> int | None:
        # RETURNING yields no row when the hash conflicts, so fetchval returns None.
        return await connection.fetchval(
            INSERT_UPDATE, update.room, update.hash, update.producer, update.seq, update.data, update.source, now_ms
        )

    async def updates_after(self, room: str, after_id: int) -> list[StoredUpdate]:
        rows = await self._pool.fetch(
            "SELECT id, producer, seq, data FROM updates WHERE room = $1 AND id > $2 ORDER BY id", room, after_id
        )
        return [StoredUpdate(*row) for row in rows]

    async def update_count(self, room: str | None = None) -> int:
        if room is None:
            return await self._pool.fetchval("SELECT COUNT(*) FROM updates")
        return await self._pool.fetchval("SELECT COUNT(*) FROM updates WHERE room = $1", room)

    # -- snapshots -------------------------------------------------------------

    async def snapshot(self, room: str) -> Snapshot | None:
        row = await self._pool.fetchrow("SELECT last_update_id, state, seqs FROM snapshots WHERE room = $1", room)
        if row is None:
            return None
        seqs = {int(producer): seq for producer, seq in json.loads(row["seqs"]).items()}
        return Snapshot(row["last_update_id"], row["state"], seqs)

    async def save_snapshot(self, room: str, snapshot: Snapshot, now_ms: int) -> None:
        seqs = json.dumps({str(producer): seq for producer, seq in snapshot.seqs.items()})
        await self._pool.execute(
            "INSERT INTO snapshots (room, last_update_id, state, seqs, created_at) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (room) DO UPDATE SET last_update_id = excluded.last_update_id, state = excluded.state, "
            "seqs = excluded.seqs, created_at = excluded.created_at",
            room, snapshot.last_update_id, snapshot.state, seqs, now_ms,
        )
