"""The edge's WebSocket endpoint ``/v1/ws``, served by the ``websockets`` library.

Measured on this project's 2-core machine, Starlette on Hypercorn spent about
26 KB per idle socket and reached 0.4x the broadcast rate of the
``websockets`` asyncio server (15 KB per socket), so sockets are served here
and Starlette on Hypercorn serves only the edge's HTTP side.

Connection lifecycle: AWAITING_HELLO -> JOINED -> CLOSED. Close codes
(RFC 6455 section 7.4.1 plus our own 4xxx):

* 1012 service restart: the edge is shutting down (SIGTERM); reconnect to
  the next edge.
* 1013 try again later: the edge is over its connection cap or admits
  connections faster than its rate; back off, then reconnect.
* 1003 unsupported data: a binary frame instead of ``hello``.
* 1007 invalid frame payload data: a text frame that is not UTF-8 (sent by
  the websockets library).
* 1008 policy violation: no ``hello`` in time, or a token that is invalid
  or expired.
* 1009 message too big: a frame over ``MAX_FRAME_BYTES`` (sent by the
  websockets library before the frame is read).
* 1011 internal error: the room could not be opened.
* 4001: the client fell too far behind; reconnect to resume.
* 4029: the client kept sending frames over its rate limit for 5 s; do not
  reconnect automatically.

Before the upgrade, the edge answers HTTP 403 to a browser whose ``Origin``
is not allowed, and HTTP 429 to a client address over its socket cap.

An edge that is shutting down answers new upgrade requests with HTTP 503.

``Keepalive`` pings every open socket once per ``PING_INTERVAL_S`` and
closes with 1011 a socket whose ping got no pong within that interval.
One loop serves all sockets because the library's keepalive task per socket
cost about 2 KiB of each idle socket's 17 KiB (``ama bench idle``).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ama.intents import MAX_FRAME_BYTES, FrameError, Hello, decode_frame
from ama.room import Actor
from ama.tokens import CLOCK_SKEW_S, TokenError
from edge.limits import MAX_SOCKETS_PER_ADDRESS, AddressCounter, Flood, IntentLimiter
from edge.node import EdgeNode
from edge.rooms import OPEN, Client, RoomUnavailable
from edge.views import encode

log = logging.getLogger("ama.edge.ws")

HELLO_TIMEOUT_S = 5.0
PING_INTERVAL_S = 20.0
# Slices of the sockets pinged one after another within each ping interval.
PING_SLICES = 20
# Open sockets per edge process; the machine's open-files limit (20,000 here)
# must stay above it with room for NATS, HTTP and log files.
MAX_CONNECTIONS = 15_000
# New sockets admitted per second, and the burst above that rate.
ADMIT_RATE_PER_S = 1_000.0
ADMIT_BURST = 1_000
CLOSE_POLICY = 1008
CLOSE_UNSUPPORTED = 1003
CLOSE_ERROR = 1011
CLOSE_PING_TIMEOUT = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_LATER = 1013
CLOSE_RATE_LIMITED = 4029
# Connections the kernel queues before the edge accepts them (capped by
# net.core.somaxconn). asyncio's default of 100 overflowed in a connect
# storm while the edge verified tokens, and each dropped SYN cost the
# client a 1 s retransmission.
LISTEN_BACKLOG = 1024
# The edge checks its own event loop every STALL_CHECK_S; a gap longer than
# STALL_S means the process was stopped or starved. It stays under the
# clients' 4 s ack timeout, so a client that moved away is always covered.
STALL_CHECK_S = 0.25
STALL_S = 2.0

_conn_ids = itertools.count(1)


class State(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    JOINED = "joined"
    CLOSED = "closed"


def error_frame(code: str, message: str, intent_id: str | None = None) -> bytes:
    frame = {"type": "error", "code": code, "message": message}
    if intent_id is not None:
        frame["id"] = intent_id
    return encode(frame)


class Admission:
    """Admission control: a cap on open sockets and a token bucket on new ones (pure; time passed in).

    A reconnect storm (every client of a dead edge arriving at once) is
    spread out: beyond the bucket's burst, new sockets get 1013 and clients
    back off with jitter, so the sockets already served are not starved.
    """

    def __init__(self, max_connections: int = MAX_CONNECTIONS, rate_per_s: float = ADMIT_RATE_PER_S, burst: int = ADMIT_BURST):
        self.max_connections = max_connections
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.updated_at: float | None = None

    def admit(self, now: float, open_connections: int) -> bool:
        if open_connections >= self.max_connections:
            return False
        if self.updated_at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.rate_per_s)
        self.updated_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class StallGuard:
    """Tells which frames may be stale because the edge itself stalled (pure; time passed in).

    While an edge process is stopped (SIGSTOP, a paused VM) the kernel keeps
    accepting its clients' frames. A client whose intent got no ack moves to
    another edge and resends its outbox there. Applying the frames it left
    behind would then replay its old intents after its newer ones. So every
    socket open across a stall is closed with 1012 and its frames are
    dropped unread, and each client resends its outbox wherever it reconnects.

    NOTE: an edge that is slow rather than stopped is not covered. If its
    loop never pauses for STALL_S while an intent waits longer than the
    clients' 4 s ack timeout, a client that moved on may still see an old
    vote applied after its newer one. Ordering each user's votes by a
    client sequence in the room model would close that gap.
    """

    def __init__(self, now: float):
        self.checked_at = now
        self.resumed_at = float("-inf")

    def check(self, now: float) -> bool:
        """Record one check of the event loop; return True when it follows a stall."""
        stalled = now - self.checked_at > STALL_S
        if stalled:
            self.resumed_at = now
        self.checked_at = now
        return stalled

    def stale(self, joined_at: float, now: float) -> bool:
        """Tell whether a frame read now on a socket joined at ``joined_at`` must be dropped.

        Frames read after a stall but before the next check are caught by
        the first test, those read after it by the second.
        """
        return now - self.checked_at > STALL_S or joined_at < self.resumed_at


class Keepalive:
    """Pings a set of open sockets from one loop (RFC 6455 section 5.5.2).

    Each socket gets a ping once per ``interval``. One whose ping got no
    pong within ``interval`` is closed with 1011 at its next turn after
    that, so within two intervals of the ping. The sockets are pinged in
    ``slices`` spread over the interval, so no flush waits behind thousands
    of pings at once.
    """

    def __init__(self, sockets: set[ServerConnection], interval: float = PING_INTERVAL_S, slices: int = PING_SLICES):
        self.sockets = sockets
        self.interval = interval
        self.slices = slices
        # Sockets that owe a pong: the future the library resolves on it, and
        # when the ping went out (loop time).
        self.unanswered: dict[ServerConnection, tuple[asyncio.Future, float]] = {}

    async def run(self) -> None:
        while True:
            sockets = list(self.sockets)
            for index in range(self.slices):
                await asyncio.sleep(self.interval / self.slices)
                await self.ping(sockets[index::self.slices])

    async def ping(self, sockets: list[ServerConnection]) -> None:
        """Close the sockets whose last ping got no pong within ``interval``, and ping the others that owe none."""
        loop = asyncio.get_running_loop()
        timed_out = []
        for websocket in sockets:
            if websocket.protocol.state is not OPEN:
                continue
            # A socket can fall in another slice when the set changes, so the
            # ping's own age decides, not the turn.
            if websocket in self.unanswered:
                if loop.time() - self.unanswered[websocket][1] >= self.interval:
                    timed_out.append(websocket)
                continue
            try:
                pong = await websocket.ping()
            except ConnectionClosed:
                continue
            # The entry goes when the pong arrives or the socket closes.
            self.unanswered[websocket] = (pong, loop.time())
            pong.add_done_callback(lambda _, websocket=websocket: self.unanswered.pop(websocket, None))
        if timed_out:
            log.warning("closing %d sockets with 1011: no pong within %g s of a ping", len(timed_out), self.interval)
            closing = [websocket.close(CLOSE_PING_TIMEOUT, "keepalive ping timeout") for websocket in timed_out]
            await asyncio.gather(*closing, return_exceptions=True)


class Endpoint:
    """Accepts sockets for one edge node."""

    def __init__(self, node: EdgeNode, admission: "Admission | None" = None):
        self.node = node
        self.connections: set[ServerConnection] = set()
        self.keepalive = Keepalive(self.connections)
        self.admission = admission or Admission()
        self.limiter = IntentLimiter.from_config(node.config)
        self.addresses = AddressCounter(node.config.get("max_sockets_per_address", MAX_SOCKETS_PER_ADDRESS))
        self.stalls = StallGuard(time.monotonic())
        self.joined_at: dict[ServerConnection, float] = {}

    async def watch_stalls(self) -> None:
        """Check the event loop; after a stall, close every socket that was open across it with 1012."""
        while True:
            before = self.stalls.checked_at
            await asyncio.sleep(STALL_CHECK_S)
            now = time.monotonic()
            if self.stalls.check(now):
                stale = [ws for ws, joined_at in self.joined_at.items() if joined_at < now]
                log.warning("edge stalled for %.1f s; closing %d sockets with 1012 so that their clients resend", now - before, len(stale))
                for websocket in stale:
                    asyncio.ensure_future(websocket.close(CLOSE_RESTART, "edge stalled: reconnect and resend"))

    def process_request(self, connection: ServerConnection, request):
        if request.path.split("?", 1)[0] != "/v1/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found: the WebSocket endpoint is /v1/ws.\n")
        if not self.node.accepting:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "This edge is shutting down; connect to the next edge.\n")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.node.allowed_origins:
            log.warning("rejected an upgrade from origin=%s", origin[:200])
            return connection.respond(HTTPStatus.FORBIDDEN, "This origin may not open sockets here; open the page from an AMA Mesh edge.\n")
        address = self.client_address(connection, request)
        if not self.addresses.has_room(address):
            log.warning("rejected an upgrade from client_ip=%s: over %d open sockets", address, self.addresses.limit)
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "Too many open connections from your address; close some and retry.\n")
        connection.client_ip = address
        return None

    def client_address(self, connection: ServerConnection, request) -> str:
        peer = connection.remote_address[0] if connection.remote_address else None
        return self.node.routing.client_ip(peer, request.headers.get_all("X-Forwarded-For")) or "unknown"

    async def handle(self, websocket: ServerConnection) -> None:
        conn_id = f"{self.node.name}-{next(_conn_ids)}"
        address = getattr(websocket, "client_ip", "unknown")
        # The slot is taken only once the handshake succeeded: a failed
        # handshake never reaches this handler, so it could not give it back.
        self.addresses.acquire(address)
        try:
            if not self.admission.admit(time.monotonic(), len(self.connections)):
                log.warning("conn=%s refused with 1013: connections=%d over the cap or admission rate", conn_id, len(self.connections))
                await websocket.close(CLOSE_TRY_LATER, "edge overloaded: back off and reconnect")
                return
            self.connections.add(websocket)
            await self._serve(websocket, conn_id)
        except ConnectionClosed:
            pass
        except BaseException as exc:
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            # pycrdt reports a Rust panic as a BaseException that is not an
            # Exception; one socket's failure must never end the edge.
            log.error("conn=%s client_ip=%s failed: %r", conn_id, address, exc)
            await websocket.close(CLOSE_ERROR, "internal error")
        finally:
            self.connections.discard(websocket)
            self.addresses.release(address)

    async def _serve(self, websocket: ServerConnection, conn_id: str) -> None:
        hello = await self._await_hello(websocket)
        if hello is None:
            return
        try:
            claims = await self.node.verify(hello.token)
        except TokenError as exc:
            await websocket.send(error_frame(exc.code, exc.message).decode())
            await websocket.close(CLOSE_POLICY, exc.code)
            return
        try:
            room = await self.node.open_room(claims.room)
        except (asyncio.TimeoutError, OSError, RoomUnavailable) as exc:
            log.error("conn=%s room=%s could not be opened: %s", conn_id, claims.room, exc or type(exc).__name__)
            await websocket.close(CLOSE_ERROR, "room unavailable, reconnect later")
            return

        actor = Actor(claims.user, claims.role, claims.name)
        client = Client(conn_id, actor, websocket)
        client.joined_at = self.joined_at[websocket] = time.monotonic()
        client.bucket = self.limiter.for_connection()
        client.write(encode({"type": "welcome", "room": claims.room, "user": claims.user, "role": claims.role, "edge": self.node.name, "region": self.node.current_region()}))
        room.attach(client, hello.last_seq)
        log.debug("conn=%s room=%s user=%s joined", conn_id, claims.room, claims.user)
        try:
            async for data in websocket:
                if not self._on_frame(client, room, data, claims.expires_at):
                    log.warning("conn=%s room=%s user=%s closed with 4029: kept sending over its rate", conn_id, claims.room, claims.user)
                    await websocket.close(CLOSE_RATE_LIMITED, "too many intents: slow down")
                    break
        finally:
            room.detach(client)
            self.joined_at.pop(websocket, None)

    async def _await_hello(self, websocket: ServerConnection) -> Hello | None:
        try:
            data = await asyncio.wait_for(websocket.recv(), HELLO_TIMEOUT_S)
        except asyncio.TimeoutError:
            await websocket.close(CLOSE_POLICY, "no hello within 5 s")
            return None
        if isinstance(data, bytes):
            await websocket.close(CLOSE_UNSUPPORTED, "binary frames are not supported")
            return None
        try:
            frame = decode_frame(data)
        except FrameError as exc:
            await websocket.send(error_frame(exc.code, exc.message).decode())
            await websocket.close(CLOSE_POLICY, "the first frame must be a valid hello")
            return None
        if not isinstance(frame, Hello):
            await websocket.send(error_frame("hello_required", "Send a hello frame with your token first.").decode())
            await websocket.close(CLOSE_POLICY, "the first frame must be hello")
            return None
        return frame

    def _on_frame(self, client: Client, room, data, expires_at: int) -> bool:
        """Handle one frame of a joined socket; return False when the socket must be closed for its rate."""
        now = time.monotonic()
        if self.stalls.stale(client.joined_at, now):
            return True
        if not self.limiter.allow(client.bucket, client.actor.user_id, now):
            if client.flood is None:
                client.flood = Flood()
            close, tell = client.flood.reject(now)
            if close:
                return False
            if tell:
                client.write(error_frame("rate_limited", "You are sending too fast; wait a second, then resend the intents that have no ack."), force=True)
            return True
        if isinstance(data, bytes):
            client.write(error_frame("binary_frame", "Binary frames are not supported; send JSON text frames."), force=True)
            return True
        try:
            frame = decode_frame(data)
            if isinstance(frame, Hello):
                raise FrameError("already_joined", "This socket has joined already; open a new socket to change rooms.")
            if time.time() >= expires_at + CLOCK_SKEW_S:
                raise FrameError("token_expired", "Your token has expired; refresh it or join the room again, then resend.", frame.id)
            room.submit(client, frame)
        except FrameError as exc:
            client.write(error_frame(exc.code, exc.message, exc.intent_id), force=True)
        return True

    async def shutdown(self) -> None:
        """Refuse new sockets and close open ones with 1012, bounded by the close timeout."""
        self.node.accepting = False
        closing = [ws.close(CLOSE_RESTART, "edge restarting: reconnect to the next edge") for ws in list(self.connections)]
        await asyncio.gather(*closing, return_exceptions=True)


def serve_sockets(endpoint: Endpoint, host: str, port: int, reuse_port: bool = False):
    """Listen for sockets; with ``reuse_port`` (SO_REUSEPORT) other edge processes may listen on the same port."""
    return serve(
        endpoint.handle,
        host,
        port,
        process_request=endpoint.process_request,
        max_size=MAX_FRAME_BYTES,
        compression=None,
        # Keepalive pings from one loop instead of a library task per socket.
        ping_interval=None,
        close_timeout=2,
        reuse_port=reuse_port,
        backlog=LISTEN_BACKLOG,
    )
