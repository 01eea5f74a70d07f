"""A Python client of the ``/v1/ws`` protocol, for tests, drills and scripts.

It keeps the view the edge sends (snapshot, patches, personal frames), an
outbox of intents not yet committed, and every ack and error it received.
``AmaClient`` does not reconnect by itself; ``ReconnectingClient`` does,
along a list of edges, with exponential backoff and full jitter.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import ClientConnection

# After a rate_limited error, wait this long, then resend unacked intents at
# most RESEND_PER_S per second, well under the edge's 10 per second.
RATE_LIMITED_WAIT_S = 1.0
RESEND_PER_S = 5
# A ReconnectingClient that gets no ack for an intent within this time takes
# the edge as hung (a stopped process's sockets are still acknowledged by the
# kernel) and moves on to the next edge. Acks arrive within milliseconds, or
# within about 3 s while an edge moves to another region.
ACK_TIMEOUT_S = 4.0


@dataclass
class ClientState:
    welcome: dict | None = None
    room: dict = field(default_factory=dict)
    questions: dict[str, dict] = field(default_factory=dict)
    mine: dict[str, int] = field(default_factory=dict)
    seq: int | None = None
    acks: dict[str, set[str]] = field(default_factory=dict)
    # Monotonic arrival time of each (intent id, status) ack.
    ack_times: dict[tuple[str, str], float] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    snapshots: int = 0
    patches: int = 0
    # Monotonic time at which each question first showed each score, for latency measurements.
    seen_scores: dict[tuple[str, int], float] = field(default_factory=dict)


class AmaClient:
    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token
        self.state = ClientState()
        self.outbox: dict[str, dict] = {}
        self.websocket: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self._rate_resend: asyncio.Task | None = None
        # Intent id -> monotonic time it was last sent on the current socket, until its first ack.
        self.sent_at: dict[str, float] = {}
        self._in_sync = False
        self.close_code: int | None = None

    async def connect(self, resume: bool = False) -> None:
        """Open a socket, send hello, and wait for the welcome and a full view (snapshot or resume)."""
        self.websocket = await websockets.connect(self.url, max_size=None, compression=None, open_timeout=5)
        self.close_code = None
        self.state.welcome = None
        self._in_sync = False
        hello = {"type": "hello", "token": self.token}
        if resume and self.state.seq is not None:
            hello["last_seq"] = self.state.seq
        await self.websocket.send(json.dumps(hello))
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda state: (state.welcome is not None and self._in_sync) or self.close_code is not None, 10)
        if self.close_code is not None:
            raise websockets.ConnectionClosed(None, None)

    async def close(self) -> None:
        if self._rate_resend is not None:
            self._rate_resend.cancel()
        if self.websocket is not None:
            await self.websocket.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for data in self.websocket:
                self.handle(json.loads(data))
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.websocket.close_code
            self._changed.set()

    def handle(self, frame: dict) -> None:
        kind = frame["type"]
        state = self.state
        if kind == "welcome":
            state.welcome = frame
        elif kind == "snapshot":
            self._in_sync = True
            state.snapshots += 1
            state.room = frame["room"]
            state.questions = {view["id"]: view for view in frame["questions"]}
            state.mine = dict(frame["mine"])
            state.seq = frame["seq"]
            self._note_scores(frame["questions"])
        elif kind == "patch":
            state.patches += 1
            state.seq = frame["seq"]
            if "room" in frame:
                state.room = frame["room"]
            for view in frame["questions"]:
                state.questions[view["id"]] = view
            for question_id in frame["removed"]:
                state.questions.pop(question_id, None)
            self._note_scores(frame["questions"])
        elif kind == "mine":
            if frame.get("replace"):
                self._in_sync = True
                state.mine = {}
            for question_id, value in frame["votes"].items():
                if value:
                    state.mine[question_id] = value
                else:
                    state.mine.pop(question_id, None)
            for view in frame["questions"]:
                state.questions[view["id"]] = view
            for question_id in frame["removed"]:
                state.questions.pop(question_id, None)
        elif kind == "ack":
            self.sent_at.pop(frame["id"], None)
            state.acks.setdefault(frame["id"], set()).add(frame["status"])
            state.ack_times.setdefault((frame["id"], frame["status"]), time.monotonic())
            if frame["status"] == "committed":
                self.outbox.pop(frame["id"], None)
        elif kind == "error":
            state.errors.append(frame)
            if "id" in frame:
                self.outbox.pop(frame["id"], None)
                self.sent_at.pop(frame["id"], None)
            elif frame.get("code") == "rate_limited":
                # The edge dropped frames without saying which. Their ack
                # clocks restart when they are sent again.
                self.sent_at.clear()
                if self._rate_resend is None or self._rate_resend.done():
                    self._rate_resend = asyncio.create_task(self._resend_unacked())

    def _note_scores(self, views: list[dict]) -> None:
        now = time.monotonic()
        for view in views:
            self.state.seen_scores.setdefault((view["id"], view["up"]), now)

    async def send_intent(self, frame: dict) -> str:
        frame.setdefault("id", str(uuid.uuid4()))
        self.outbox[frame["id"]] = frame
        await self.send_frame(frame)
        return frame["id"]

    async def send_frame(self, frame: dict) -> None:
        """Send an intent and start its ack clock."""
        self.sent_at[frame["id"]] = time.monotonic()
        await self.websocket.send(json.dumps(frame))

    async def ask(self, text: str, anonymous: bool = False) -> str:
        return await self.send_intent({"type": "ask", "text": text, "anonymous": anonymous})

    async def vote(self, question: str, value: int) -> str:
        return await self.send_intent({"type": "vote", "question": question, "value": value})

    async def moderate(self, question: str, action: str) -> str:
        return await self.send_intent({"type": "moderate", "question": question, "action": action})

    async def settings(self, changes: dict) -> str:
        return await self.send_intent({"type": "settings", "changes": changes})

    async def _resend_unacked(self) -> None:
        """After a pause, resend the outbox intents with no ack, paced; a reconnect's resend takes over if the socket closes."""
        await asyncio.sleep(RATE_LIMITED_WAIT_S)
        frames = [frame for frame in self.outbox.values() if not self.state.acks.get(frame["id"])]
        try:
            for start in range(0, len(frames), RESEND_PER_S):
                for frame in frames[start:start + RESEND_PER_S]:
                    if frame["id"] in self.outbox and not self.state.acks.get(frame["id"]):
                        await self.send_frame(frame)
                await asyncio.sleep(1.0)
        except websockets.ConnectionClosed:
            pass

    async def resend(self) -> None:
        self.sent_at.clear()
        for frame in list(self.outbox.values()):
            await self.send_frame(frame)

    async def send_raw(self, data: str | bytes) -> None:
        await self.websocket.send(data)

    async def wait_for(self, predicate: Callable[[ClientState], bool], timeout: float) -> None:
        """Wait until ``predicate(state)`` holds; raise TimeoutError naming the wait otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate(self.state):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"client of {self.url} waited {timeout} s; state: {self.describe()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def acked(self, intent_id: str, status: str = "committed") -> bool:
        return status in self.state.acks.get(intent_id, set())

    def describe(self) -> str:
        state = self.state
        return f"questions={len(state.questions)} seq={state.seq} acks={len(state.acks)} errors={state.errors[-3:]} close={self.close_code}"


# Close codes after which reconnecting cannot help: policy (bad token) and
# our own 4xxx codes except 4001 (too slow: reconnect to resume).
FATAL_CLOSE_CODES = {1008} | set(range(4002, 4100))


class ReconnectingClient(AmaClient):
    """A client that keeps a socket to the first edge of ``urls`` that answers.

    After every reconnect it resumes from the last patch seen and resends
    every intent not yet committed, as a browser client does.
    """

    def __init__(self, urls: list[str], token: str, backoff_base_s: float = 0.25, backoff_cap_s: float = 10.0):
        super().__init__(urls[0], token)
        self.urls = list(urls)
        self.index = 0
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.reconnects = 0
        self.refused_try_later = 0
        # Sockets dropped because an intent got no ack within ACK_TIMEOUT_S.
        self.ack_timeouts = 0
        # Monotonic time of each lost socket or failed connect.
        self.dropped_at: list[float] = []
        self.user: str | None = None
        self.connected = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self._stopping = False

    async def queue_intent(self, frame: dict) -> None:
        """Put an intent in the outbox and send it now if connected; otherwise it goes after the reconnect."""
        self.outbox[frame["id"]] = frame
        if not self.connected.is_set():
            return
        try:
            await self.send_frame(frame)
        except websockets.ConnectionClosed:
            pass

    async def start(self) -> None:
        """Connect to the first reachable edge, then keep reconnecting in the background."""
        self._runner = asyncio.create_task(self._run())
        await self.connected.wait()

    async def stop(self) -> None:
        self._stopping = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        await self.close()

    async def _watch_acks(self) -> None:
        """Wait for the socket to end; drop it when an intent waits longer than ACK_TIMEOUT_S for its first ack."""
        while not self._reader.done():
            await asyncio.wait({self._reader}, timeout=0.25)
            oldest = min(self.sent_at.values(), default=None)
            if oldest is not None and time.monotonic() - oldest > ACK_TIMEOUT_S and not self._reader.done():
                self.ack_timeouts += 1
                self.sent_at.clear()
                self.websocket.transport.abort()
                await asyncio.wait({self._reader}, timeout=5)
                break
        if self._reader.done():
            self._reader.result()

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            self.url = self.urls[self.index % len(self.urls)]
            try:
                await self.connect(resume=True)
                await self.resend()
                self.connected.set()
                attempt = 0
                await self._watch_acks()
            except (OSError, TimeoutError, asyncio.TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed):
                pass
            self.connected.clear()
            if self.close_code in FATAL_CLOSE_CODES or self._stopping:
                return
            if self.close_code == 1013:
                self.refused_try_later += 1
            self.dropped_at.append(time.monotonic())
            self.reconnects += 1
            self.index += 1
            delay = random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(attempt, 16)))
            attempt += 1
            await asyncio.sleep(delay)
