"""A bench worker process: many client sockets on one asyncio loop, driven by the coordinator over a pipe.

The coordinator sends one command dict at a time and waits for the reply
dict. Between commands the loop keeps reading every socket, so watchers
see votes while the voter worker is busy with a ``vote`` command.

Every worker bounds itself: ``signal.alarm`` ends it after its lifetime,
each command has a timeout, and the coordinator stops it by process id.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import traceback
from collections import Counter

from ama.bench.dialects import ClientState, make_dialect
from ama.bench.stats import LatencyHistogram
from ama.bench.wsclient import ClosedBeforeReady, HandshakeError, WsClient


# A socket rejected with "try again later" (close 1013, HTTP 429 or 503) is retried this often, with exponential backoff.
MAX_ATTEMPTS = 12
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
RETRY_CLOSE_CODES = {1013: "close 1013 try again later"}
RETRY_HTTP_STATUSES = {429: "HTTP 429 too many requests", 503: "HTTP 503 unavailable"}


def retry_reason(exc: BaseException) -> str | None:
    """Return why a failed open may be retried, or None when it may not."""
    if isinstance(exc, ClosedBeforeReady):
        return RETRY_CLOSE_CODES.get(exc.code)
    if isinstance(exc, HandshakeError):
        return RETRY_HTTP_STATUSES.get(exc.status)
    return None


class Role:
    """A group of sockets with one job (watcher, voter or idle) and a frame counter."""

    def __init__(self, name: str, dialect, watch: bool):
        self.name = name
        self.dialect = dialect
        self.watch = watch
        self.clients: list[WsClient] = []
        self.frames = 0
        self.closed = 0
        # Sockets waiting to be ready (joined and synced), each with the future its opener awaits.
        self.waiters: dict[WsClient, asyncio.Future] = {}

    def on_open(self, client: WsClient, now: float) -> None:
        client.state.opened_at = now

    def on_message(self, client: WsClient, opcode: int, payload: bytes, now: float) -> None:
        self.frames += 1
        self.dialect.read(client, opcode, payload, now, self.watch)
        if client.state.ready_at is not None and client in self.waiters:
            waiter = self.waiters.pop(client)
            if not waiter.done():
                waiter.set_result(None)

    def on_close(self, client: WsClient) -> None:
        self.closed += 1
        waiter = self.waiters.pop(client, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(ClosedBeforeReady(client.close_code))


class Worker:
    def __init__(self, connection):
        self.connection = connection
        self.roles: dict[str, Role] = {}
        self.commands: asyncio.Queue = asyncio.Queue()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.connection.fileno(), self._read_command)
        while True:
            command = await self.commands.get()
            if command is None or command["op"] == "exit":
                break
            try:
                reply = await getattr(self, "op_" + command["op"])(**command.get("args", {}))
            except Exception as exc:  # reported to the coordinator, which raises it there
                reply = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            self.connection.send(reply)
        for role in self.roles.values():
            for client in role.clients:
                client.abort()

    def _read_command(self) -> None:
        try:
            self.commands.put_nowait(self.connection.recv())
        except EOFError:
            asyncio.get_running_loop().remove_reader(self.connection.fileno())
            self.commands.put_nowait(None)

    # -- commands --------------------------------------------------------------------

    async def op_open(self, role: str, dialect: dict, urls: list[str], tokens: list[str], count: int, concurrency: int, timeout_s: float, watch: bool = False) -> dict:
        """Open ``count`` sockets, at most ``concurrency`` at a time, each until it is ready (joined and synced)."""
        group = self.roles.get(role)
        if group is None:
            group = self.roles[role] = Role(role, make_dialect(dialect), watch)
        start = time.monotonic()
        deadline = start + timeout_s
        gate = asyncio.Semaphore(max(1, concurrency))
        errors: Counter = Counter()
        connect_ms = LatencyHistogram()
        first = len(group.clients)

        retries = Counter()

        async def open_one(index: int) -> None:
            for attempt in range(MAX_ATTEMPTS):
                async with gate:
                    began = time.monotonic()
                    remaining = deadline - began
                    if remaining <= 0:
                        errors["timed out before starting"] += 1
                        return
                    try:
                        client = await self._open_ready(group, urls[index % len(urls)], tokens[index % len(tokens)], remaining)
                    except (OSError, asyncio.TimeoutError, ConnectionError, ValueError) as exc:
                        reason = retry_reason(exc)
                        if reason is None or attempt == MAX_ATTEMPTS - 1:
                            errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                            return
                        retries[reason] += 1
                    else:
                        connect_ms.add((client.state.ready_at - began) * 1000)
                        group.clients.append(client)
                        return
                # Back off outside the gate, with jitter, as a real client does after a "try again later".
                await asyncio.sleep(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt) * random.uniform(0.5, 1.5))

        # The first socket of a room opens it alone: pycrdt-websocket 0.16.5 left all but one of
        # several sockets that joined a new room at once waiting forever.
        if first == 0 and count > 0:
            await open_one(0)
            await asyncio.gather(*(open_one(i) for i in range(1, count)))
        else:
            await asyncio.gather(*(open_one(first + i) for i in range(count)))
        return {
            "opened": connect_ms.count,
            "failed": count - connect_ms.count,
            "errors": dict(errors.most_common(5)),
            "retries": dict(retries),
            "elapsed_s": time.monotonic() - start,
            "connect_ms": connect_ms.to_dict(),
        }

    async def _open_ready(self, group: Role, url: str, token: str, timeout_s: float) -> WsClient:
        loop = asyncio.get_running_loop()
        client = WsClient(url, group)
        client.state = ClientState()
        waiter = group.waiters[client] = loop.create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await loop.create_connection(lambda: client, client.host, client.port)
                await client.opened_future
                group.dialect.hello(client, token)
                await waiter
        except BaseException:
            group.waiters.pop(client, None)
            client.abort()
            raise
        return client

    async def op_count(self) -> dict:
        """Return each role's sockets, closed sockets and frames received so far."""
        return {name: {"sockets": len(role.clients), "closed": role.closed, "frames": role.frames} for name, role in self.roles.items()}

    async def op_vote(self, role: str, questions: list[str], rate: float, count: int, start_at: float, timeout_s: float) -> dict:
        """Send ``count`` votes at ``rate`` per second from ``start_at`` (monotonic seconds).

        Vote i comes from voter ``i % voters`` on question ``i // voters``, so
        each voter votes once per question. Returns each question's send
        times in order.
        """
        group = self.roles[role]
        voters = len(group.clients)
        if voters == 0:
            raise ValueError("no voter sockets are open")
        if group.dialect.name != "json":
            import pycrdt  # noqa: F401 - imported before the schedule starts, not inside it
        plan = []
        for i in range(count):
            question = questions[min(i // voters, len(questions) - 1)]
            client = group.clients[i % voters]
            plan.append((question, client, group.dialect.vote_frame(client, question, i % voters)))
        # Building the plan may take longer than the coordinator's lead time: start late rather than burst.
        start_at = max(start_at, time.monotonic() + 0.05)
        sent: dict[str, list[float]] = {question: [] for question in questions}
        deadline = time.monotonic() + timeout_s
        late = 0
        for i, (question, client, frame) in enumerate(plan):
            due = start_at + i / rate
            now = time.monotonic()
            if now > deadline:
                break
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.01:
                late += 1
            sent[question].append(time.monotonic())
            group.dialect.send(client, frame)
        return {"sent": sent, "late": late}

    async def op_wait_counts(self, role: str, targets: dict[str, int], timeout_s: float) -> dict:
        """Wait until every socket of the role shows each question's target count, or the timeout."""
        group = self.roles.get(role)
        if group is None:
            return {"lagging": 0, "sockets": 0}
        deadline = time.monotonic() + timeout_s

        def behind() -> int:
            missing = 0
            for client in group.clients:
                seen = client.state.seen
                for question, target in targets.items():
                    have = seen.get(question)
                    if have is None or len(have) < target:
                        missing += 1
                        break
            return missing

        lagging = behind()
        while lagging and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            lagging = behind()
        return {"lagging": lagging, "sockets": len(group.clients)}

    async def op_latency(self, role: str, sent: dict[str, list[float]]) -> dict:
        """Return the vote-to-screen latency histogram over every socket of the role, and the votes never shown."""
        histogram = LatencyHistogram()
        missing = 0
        group = self.roles.get(role)
        for client in group.clients if group else ():
            seen_by_question = client.state.seen
            for question, send_times in sent.items():
                seen = seen_by_question.get(question, ())
                shown = min(len(seen), len(send_times))
                for n in range(shown):
                    histogram.add((seen[n] - send_times[n]) * 1000.0)
                missing += len(send_times) - shown
        return {"histogram": histogram.to_dict(), "missing": missing}

    async def op_close(self, role: str | None = None, timeout_s: float = 5.0) -> dict:
        """Close the role's sockets (every role when None) and wait for the transports to close."""
        if role is None:
            names = list(self.roles)
        elif role in self.roles:
            names = [role]
        else:
            names = []
        clients = [client for name in names for client in self.roles[name].clients]
        for client in clients:
            client.close()
        deadline = time.monotonic() + timeout_s
        while any(not client.closed for client in clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for client in clients:
            if not client.closed:
                client.abort()
        for name in names:
            del self.roles[name]
        return {"closed": len(clients)}


def worker_main(connection, cpus: list[int] | None, lifetime_s: float) -> None:
    """Run a worker process: pin it, bound its lifetime, serve commands until the "exit" command or EOF."""
    if cpus:
        os.sched_setaffinity(0, set(cpus))
    signal.alarm(max(1, int(lifetime_s)))
    asyncio.run(Worker(connection).run())
