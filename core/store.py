"""The core's durable store: rooms, the update log and per-room snapshots.

Two backends share one async interface (``Store``): SQLite in a file, the
default, and PostgreSQL (``core.store_postgres``) for production. Every write
commits before the caller acknowledges anything, so an update the core reports
as stored survives a crash of the process or the machine. Updates are
deduplicated by the SHA-256 of their bytes: the same update that arrives by
two paths is stored once.

In the SQLite backend, SQLite calls run on one dedicated thread, which owns
the connection, and every write commits with ``synchronous=FULL`` in WAL mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    code TEXT NOT NULL UNIQUE,
    host_user TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    moderator_code TEXT
);
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    producer INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    source TEXT NOT NULL,
    stored_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_room ON updates (room, id);
CREATE TABLE IF NOT EXISTS snapshots (
    room TEXT PRIMARY KEY,
    last_update_id INTEGER NOT NULL,
    state BLOB NOT NULL,
    seqs TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class RoomRecord:
    room: str
    title: str
    code: str
    host_user: str
    created_at: int
    moderator_code: str | None = None


@dataclass(frozen=True)
class StoredUpdate:
    id: int
    producer: int
    seq: int
    data: bytes


@dataclass(frozen=True)
class Snapshot:
    last_update_id: int
    state: bytes
    seqs: dict[int, int]


@dataclass(frozen=True)
class NewUpdate:
    room: str
    producer: int
    seq: int
    data: bytes
    source: str

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.data).digest()


class StoreError(Exception):
    """Base class of the errors that the store raises on purpose."""


class DuplicateRoomError(StoreError):
    """A new room's id or join code is already taken by another room."""


class Store(Protocol):
    """The interface that every backend of the core's store implements."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_room(self, record: RoomRecord, genesis: NewUpdate, now_ms: int) -> None: ...

    async def room(self, room: str) -> RoomRecord | None: ...

    async def set_moderator_code(self, room: str, code: str) -> None: ...

    async def room_ids(self) -> list[str]: ...

    async def append(self, updates: list[NewUpdate], now_ms: int) -> list[int | None]: ...

    async def updates_after(self, room: str, after_id: int) -> list[StoredUpdate]: ...

    async def update_count(self, room: str | None = None) -> int: ...

    async def snapshot(self, room: str) -> Snapshot | None: ...

    async def save_snapshot(self, room: str, snapshot: Snapshot, now_ms: int) -> None: ...


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and urlsplit(target).scheme in POSTGRES_SCHEMES


def redact_url(target: str | Path) -> str:
    """Return the database URL or path with any password replaced by ``***``, for logs."""
    if not is_postgres_url(target):
        return str(target)
    parts = urlsplit(target)
    if parts.password is None:
        return target
    user, _, host = parts.netloc.rpartition("@")
    user_name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user_name}:***@{host}"))


async def open_store(target: str | Path, schema: str = "public") -> Store:
    """Open the store at ``target``: PostgreSQL for a ``postgresql://`` or ``postgres://`` URL, else an SQLite file.

    ``schema`` applies to PostgreSQL only.
    """
    if is_postgres_url(target):
        from core.store_postgres import PostgresStore

        store: Store = PostgresStore(target, schema=schema)
    else:
        store = SQLiteStore(Path(target))
    await store.open()
    return store


class SQLiteStore:
    """The SQLite backend of the core's store."""

    def __init__(self, path: Path):
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(rooms)")}
        if "moderator_code" not in columns:
            # Data dirs created before moderator invites existed lack the column.
            self._db.execute("ALTER TABLE rooms ADD COLUMN moderator_code TEXT")

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
        self._executor.shutdown(wait=True)

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # -- rooms -----------------------------------------------------------------

    async def create_room(self, record: RoomRecord, genesis: NewUpdate, now_ms: int) -> None:
        await self._run(self._create_room, record, genesis, now_ms)

    def _create_room(self, record: RoomRecord, genesis: NewUpdate, now_ms: int) -> None:
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO rooms (room, title, code, host_user, created_at) VALUES (?, ?, ?, ?, ?)",
                    (record.room, record.title, record.code, record.host_user, record.created_at),
                )
                self._insert_update(db, genesis, now_ms)
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY):
                raise DuplicateRoomError(f"room {record.room!r} or its code is already taken") from exc
            raise

    async def room(self, room: str) -> RoomRecord | None:
        row = await self._run(self._query_one, "SELECT room, title, code, host_user, created_at, moderator_code FROM rooms WHERE room = ?", (room,))
        return None if row is None else RoomRecord(*row)

    async def set_moderator_code(self, room: str, code: str) -> None:
        await self._run(self._execute, "UPDATE rooms SET moderator_code = ? WHERE room = ?", (code, room))

    async def room_ids(self) -> list[str]:
        rows = await self._run(self._query_all, "SELECT room FROM rooms ORDER BY created_at", ())
        return [row[0] for row in rows]

    # -- updates ---------------------------------------------------------------

    async def append(self, updates: list[NewUpdate], now_ms: int) -> list[int | None]:
        """Store updates in one transaction; return each one's log id, or None for a duplicate."""
        return await self._run(self._append, updates, now_ms)

    def _append(self, updates: list[NewUpdate], now_ms: int) -> list[int | None]:
        with self._transaction() as db:
            return [self._insert_update(db, update, now_ms) for update in updates]

    @staticmethod
    def _insert_update(db: sqlite3.Connection, update: NewUpdate, now_ms: int) -> int | None:
        cursor = db.execute(
            "INSERT OR IGNORE INTO updates (room, hash, producer, seq, data, source, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (update.room, update.hash, update.producer, update.seq, update.data, update.source, now_ms),
        )
        return cursor.lastrowid if cursor.rowcount == 1 else None

    async def updates_after(self, room: str, after_id: int) -> list[StoredUpdate]:
        rows = await self._run(
            self._query_all, "SELECT id, producer, seq, data FROM updates WHERE room = ? AND id > ? ORDER BY id", (room, after_id)
        )
        return [StoredUpdate(*row) for row in rows]

    async def update_count(self, room: str | None = None) -> int:
        if room is None:
            row = await self._run(self._query_one, "SELECT COUNT(*) FROM updates", ())
        else:
            row = await self._run(self._query_one, "SELECT COUNT(*) FROM updates WHERE room = ?", (room,))
        return row[0]

    # -- snapshots -------------------------------------------------------------

    async def snapshot(self, room: str) -> Snapshot | None:
        row = await self._run(self._query_one, "SELECT last_update_id, state, seqs FROM snapshots WHERE room = ?", (room,))
        if row is None:
            return None
        seqs = {int(producer): seq for producer, seq in json.loads(row[2]).items()}
        return Snapshot(row[0], row[1], seqs)

    async def save_snapshot(self, room: str, snapshot: Snapshot, now_ms: int) -> None:
        seqs = json.dumps({str(producer): seq for producer, seq in snapshot.seqs.items()})
        await self._run(
            self._execute,
            "INSERT INTO snapshots (room, last_update_id, state, seqs, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (room) DO UPDATE SET last_update_id = excluded.last_update_id, state = excluded.state, "
            "seqs = excluded.seqs, created_at = excluded.created_at",
            (room, snapshot.last_update_id, snapshot.state, seqs, now_ms),
        )

    # -- helpers ---------------------------------------------------------------

    def _transaction(self):
        db = self._db

        class _Transaction:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")
                return db

            def __exit__(self, kind, value, traceback):
                db.execute("COMMIT" if kind is None else "ROLLBACK")
                return False

        return _Transaction()

    def _query_one(self, sql: str, parameters: tuple):
        return self._db.execute(sql, parameters).fetchone()

    def _query_all(self, sql: str, parameters: tuple):
        return self._db.execute(sql, parameters).fetchall()

    def _execute(self, sql: str, parameters: tuple) -> None:
        with self._transaction() as db:
            db.execute(sql, parameters)
