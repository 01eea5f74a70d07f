"""Process glue shared by the services: signals, the HTTP server and the ready line."""

from __future__ import annotations

import asyncio
import logging
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config

log = logging.getLogger("ama.runtime")


def stop_on_signals() -> asyncio.Event:
    """Return an event that SIGTERM or SIGINT sets."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def serve_http(app, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve an ASGI app with Hypercorn until ``stop`` is set."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2
    await serve(app, config, shutdown_trigger=stop.wait)
