"""Connecting to NATS with timeouts tuned to notice a dead or hung server in seconds."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
from nats.aio.client import Client

log = logging.getLogger("ama.nats")

# nats-py pings every 120 s by default, so a hung server goes unnoticed for
# minutes. With a 1 s interval, two outstanding pings and a 1 s connect
# timeout, a hung server was detected in about 2.5 s (nats-server 2.15.1,
# nats-py 2.16, loopback).
PING_INTERVAL_S = 1
MAX_OUTSTANDING_PINGS = 2
CONNECT_TIMEOUT_S = 1
RECONNECT_WAIT_S = 0.25


async def connect(
    servers: list[str],
    name: str,
    on_reconnected: Callable[[], Awaitable[None]] | None = None,
    on_disconnected: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect to the first reachable server of ``servers``, keeping their order on reconnects.

    The list must name servers of every region the caller may fail over to:
    a client learns only its own region's servers from the server.
    """

    async def error_cb(exc: Exception) -> None:
        log.debug("nats client=%s error: %s", name, exc)

    async def reconnected_cb() -> None:
        log.info("nats client=%s reconnected to %s", name, client.connected_url.geturl() if client.connected_url else "?")
        if on_reconnected is not None:
            await on_reconnected()

    async def disconnected_cb() -> None:
        log.warning("nats client=%s disconnected", name)
        if on_disconnected is not None:
            await on_disconnected()

    user, password = credentials()
    client = await nats.connect(
        servers=servers,
        name=name,
        user=user,
        password=password,
        dont_randomize=True,
        ping_interval=PING_INTERVAL_S,
        max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        connect_timeout=CONNECT_TIMEOUT_S,
        reconnect_time_wait=RECONNECT_WAIT_S,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        error_cb=error_cb,
        reconnected_cb=reconnected_cb,
        disconnected_cb=disconnected_cb,
    )
    return client


CREDENTIALS_ENV = "AMA_NATS_CREDENTIALS"


def is_fatal(exc: BaseException) -> bool:
    """Tell whether an exception must propagate: cancellation and interpreter exits."""
    return isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit))


def guarded(callback):
    """Wrap a NATS message callback so one bad message cannot end the subscription.

    pycrdt reports a Rust panic as a BaseException that is not an Exception,
    so ``except Exception`` would let it through.
    """

    @functools.wraps(callback)
    async def wrapper(message):
        try:
            await callback(message)
        except BaseException as exc:
            if is_fatal(exc):
                raise
            log.error("message on subject=%s failed: %r", message.subject, exc)

    return wrapper


def credentials() -> tuple[str | None, str | None]:
    """Return the NATS user and password from the file ``AMA_NATS_CREDENTIALS`` names, if set."""
    path = os.environ.get(CREDENTIALS_ENV)
    if not path:
        return None, None
    stored = json.loads(Path(path).read_text())
    return stored["user"], stored["password"]


def connected_url(client: Client) -> str | None:
    url = client.connected_url
    if url is None:
        return None
    return f"nats://{url.hostname}:{url.port}"
