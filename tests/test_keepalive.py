"""The edge's keepalive loop over real sockets: a client that responds to pings stays open, one that does not is closed with 1011."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import websockets
from websockets.asyncio.server import serve

from edge.server import CLOSE_PING_TIMEOUT, Keepalive

INTERVAL_S = 0.2


def tracking(sockets: set):
    """Return a connection handler that keeps each open socket in ``sockets``, as ``Endpoint`` does."""

    async def handler(websocket):
        sockets.add(websocket)
        try:
            await websocket.wait_closed()
        finally:
            sockets.discard(websocket)

    return handler


async def silent_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket by hand and never respond to a frame, as a dead peer would."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def read_close_code(reader: asyncio.StreamReader) -> int:
    """Skip server frames (RFC 6455 section 5.2, unmasked) until a close frame; return its status code."""
    while True:
        first, second = await reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(length)
        if first & 0x0F == 0x8:
            return struct.unpack("!H", payload[:2])[0]


async def answering_only(sockets: set) -> None:
    while len(sockets) > 1:
        await asyncio.sleep(0.01)


async def test_keepalive_closes_silent_socket():
    sockets = set()
    keepalive = Keepalive(sockets, interval=INTERVAL_S, slices=2)

    async with serve(tracking(sockets), "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        answering = await websockets.connect(f"ws://127.0.0.1:{port}/", ping_interval=None)
        reader, writer = await silent_client(port)
        while len(sockets) < 2:
            await asyncio.sleep(0.01)
        loop = asyncio.create_task(keepalive.run())
        try:
            code = await asyncio.wait_for(read_close_code(reader), INTERVAL_S * 10)
            assert code == CLOSE_PING_TIMEOUT
            await asyncio.sleep(INTERVAL_S * 2)
            assert answering.state is websockets.State.OPEN, "a client that responds to pings was closed"
            writer.close()
            await asyncio.wait_for(answering_only(sockets), INTERVAL_S * 10)
            assert list(keepalive.unanswered) in ([], list(sockets)), "a closed socket is still held"
        finally:
            loop.cancel()
            writer.close()
            await answering.close()


async def test_keepalive_waits_out_the_interval():
    """A socket met again before its ping is ``interval`` old (the set changed, so the slices moved) stays open."""
    sockets = set()
    keepalive = Keepalive(sockets, interval=0.5, slices=1)

    async with serve(tracking(sockets), "127.0.0.1", 0, ping_interval=None, close_timeout=0.1) as server:
        reader, writer = await silent_client(server.sockets[0].getsockname()[1])
        try:
            while not sockets:
                await asyncio.sleep(0.01)
            (websocket,) = sockets
            await keepalive.ping([websocket])
            await keepalive.ping([websocket])
            assert websocket.state is websockets.State.OPEN
            assert websocket in keepalive.unanswered

            await asyncio.sleep(0.5)
            await keepalive.ping([websocket])
            assert await asyncio.wait_for(read_close_code(reader), 2) == CLOSE_PING_TIMEOUT
        finally:
            writer.close()
