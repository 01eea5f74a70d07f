"""A lean WebSocket client (RFC 6455) on an asyncio Protocol, for driving thousands of sockets.

The ``websockets`` library spends tens of microseconds per received frame;
a load generator on one core needs a few. This client does only what the
bench needs: the opening handshake (section 4.1), masked client frames
(section 5.3), unmasked server frames with fragments (section 5.4), pong
replies to pings (section 5.5.2) and the closing handshake (section 5.5.1).
No extensions are negotiated, so permessage-deflate stays off.

Received messages go to ``handler.on_message(opcode, payload, now)`` with
``now`` read once per chunk from ``time.monotonic()``, which on Linux is the
same clock in every process, so the coordinator can compare it with the
send times of other processes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import time
from urllib.parse import urlsplit

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HANDSHAKE_BYTES = 16 * 1024


class HandshakeError(ConnectionError):
    """The opening handshake failed: no valid 101 response. ``status`` is the response's HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ClosedBeforeReady(ConnectionError):
    """The server closed the socket before the client was ready; ``code`` is the close code (1005 when none)."""

    def __init__(self, code: int | None):
        super().__init__(f"closed before ready, close code {code}")
        self.code = code


def accept_key(key: bytes) -> bytes:
    """Return the Sec-WebSocket-Accept value for a request key (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``key`` (RFC 6455 section 5.3)."""
    if not payload:
        return payload
    length = len(payload)
    repeated = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")


def encode_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """Encode one final, masked client frame."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + key + mask(payload, key)


class FrameParser:
    """Splits a server's byte stream into messages; fragments are joined."""

    def __init__(self):
        self.buffer = bytearray()
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Return every complete (opcode, payload) in the bytes seen so far."""
        buffer = self.buffer
        buffer += data
        messages = []
        offset = 0
        end = len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if end - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                header = 4
            elif length == 127:
                if end - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                header = 10
            masked = second & 0x80
            if masked:
                header += 4
            if end - offset < header + length:
                break
            payload = bytes(buffer[offset + header : offset + header + length])
            if masked:
                payload = mask(payload, bytes(buffer[offset + header - 4 : offset + header]))
            offset += header + length
            self._collect(first, payload, messages)
        del buffer[:offset]
        return messages

    def _collect(self, first: int, payload: bytes, messages: list) -> None:
        opcode = first & 0x0F
        final = first & 0x80
        if opcode >= OP_CLOSE:
            messages.append((opcode, payload))
        elif opcode == OP_CONTINUATION:
            self.fragments.append(payload)
            if final:
                messages.append((self.fragment_opcode, b"".join(self.fragments)))
                self.fragments = []
        elif final:
            messages.append((opcode, payload))
        else:
            self.fragment_opcode = opcode
            self.fragments = [payload]


class WsClient(asyncio.Protocol):
    """One client socket. ``handler`` gets ``on_open(client, now)``, ``on_message(client, opcode, payload, now)`` and ``on_close(client)``."""

    def __init__(self, url: str, handler):
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "wss" else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.key = base64.b64encode(os.urandom(16))
        self.mask_key = os.urandom(4)
        self.opened = False
        self.closed = False
        self.close_code: int | None = None
        self.handshake = bytearray()
        self.parser = FrameParser()
        self.opened_future: asyncio.Future = asyncio.get_running_loop().create_future()
        # Fields the handler may use for its own state.
        self.state: object = None

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        request = (
            f"GET {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.opened:
            data = self._read_handshake(data, now)
            if not data:
                return
        for opcode, payload in self.parser.feed(data):
            if opcode == OP_PING:
                self._write(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self._on_close_frame(payload)
                return
            elif opcode != OP_PONG:
                self.handler.on_message(self, opcode, payload, now)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.opened_future.done():
            self.opened_future.set_exception(exc or ConnectionError("connection closed during the handshake"))
        self.handler.on_close(self)

    # -- handshake and frames --------------------------------------------------------

    def _read_handshake(self, data: bytes, now: float) -> bytes:
        self.handshake += data
        end = self.handshake.find(b"\r\n\r\n")
        if end < 0:
            if len(self.handshake) > MAX_HANDSHAKE_BYTES:
                self._fail(HandshakeError("handshake response too long"))
            return b""
        head = bytes(self.handshake[:end]).decode("latin-1")
        rest = bytes(self.handshake[end + 4 :])
        self.handshake = bytearray()
        status_line, *header_lines = head.split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = status_line.split(" ", 2)[1:2]
        if status != ["101"]:
            code = int(status[0]) if status and status[0].isdigit() else None
            self._fail(HandshakeError(f"expected HTTP 101, got {status_line!r}", code))
            return b""
        if headers.get("sec-websocket-accept", "").encode() != accept_key(self.key):
            self._fail(HandshakeError("wrong Sec-WebSocket-Accept"))
            return b""
        self.opened = True
        self.opened_future.set_result(now)
        self.handler.on_open(self, now)
        return rest

    def _fail(self, exc: Exception) -> None:
        if not self.opened_future.done():
            self.opened_future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _on_close_frame(self, payload: bytes) -> None:
        self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        if not self.closed:
            self._write(OP_CLOSE, payload[:2])
            self.closed = True
            self.transport.close()

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(opcode, payload, self.mask_key))

    # -- public ------------------------------------------------------------------------

    def send_text(self, text: str | bytes) -> None:
        self._write(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_binary(self, payload: bytes) -> None:
        self._write(OP_BINARY, payload)

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake; the transport closes when the server echoes it, or on abort."""
        if self.closed or self.transport is None:
            return
        self._write(OP_CLOSE, code.to_bytes(2, "big"))
        self.closed = True
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_client(url: str, handler, timeout_s: float) -> WsClient:
    """Connect and finish the opening handshake within ``timeout_s``; raise on failure."""
    loop = asyncio.get_running_loop()
    client = WsClient(url, handler)
    try:
        async with asyncio.timeout(timeout_s):
            await loop.create_connection(lambda: client, client.host, client.port)
            await client.opened_future
    except BaseException:
        client.abort()
        raise
    return client
