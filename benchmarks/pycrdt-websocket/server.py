"""pycrdt-websocket's WebsocketServer on the websockets library: the peer "pycrdt-websocket" of ``ama bench``.

Each URL path is a room (one shared Yjs document). No store is attached,
so updates live in memory only. Prints {"listening": PORT} on stdout once it
accepts sockets.

Usage: python server.py [--host 127.0.0.1] [--port 0]
"""

import argparse
import asyncio
import json
import signal
import sys

from pycrdt.websocket import WebsocketServer
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


class Channel:
    """Adapts a websockets connection to the channel interface WebsocketServer serves."""

    def __init__(self, websocket):
        self.websocket = websocket

    @property
    def path(self) -> str:
        return self.websocket.request.path

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.websocket.recv()
        except ConnectionClosed:
            raise StopAsyncIteration() from None

    async def send(self, message: bytes) -> None:
        try:
            await self.websocket.send(message)
        except ConnectionClosed:
            pass

    async def recv(self) -> bytes:
        return await self.websocket.recv()


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    async with WebsocketServer(rooms_ready=True, auto_clean_rooms=False) as rooms:
        async def handle(websocket) -> None:
            await rooms.serve(Channel(websocket))

        async with serve(handle, host, port, compression=None, max_size=65536) as server:
            listening = server.sockets[0].getsockname()[1]
            sys.stdout.write(json.dumps({"listening": listening}) + "\n")
            sys.stdout.flush()
            await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.host, arguments.port))
