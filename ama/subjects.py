"""NATS subject and stream names; every publisher and subscriber takes them from here.

Room ids and region names are restricted (see ``check_token``) so they can be
used as single subject tokens.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_token(value: str, what: str) -> str:
    """Return ``value`` when it is usable as one subject token, else raise ValueError naming ``what``."""
    if not _TOKEN.match(value):
        raise ValueError(f"invalid {what} {value!r}: use 1 to 64 letters, digits, '-' or '_'")
    return value


def update(region: str, room: str) -> str:
    """Updates produced by edges homed in ``region``; the region's stream stores them."""
    return f"ama.upd.{region}.{room}"


def updates_of_room(room: str) -> str:
    """Return the subject matching every region's updates to one room, for the replicas that serve it."""
    return f"ama.upd.*.{room}"


def updates_of_region(region: str) -> str:
    return f"ama.upd.{region}.*"


ALL_UPDATES = "ama.upd.*.*"


def sync(region: str, room: str) -> str:
    """Return the subject of two-way state-vector syncs that ``region``'s region services respond to."""
    return f"ama.sync.{region}.{room}"


def sync_of_region(region: str) -> str:
    return f"ama.sync.{region}.*"


def watermark(room: str) -> str:
    """Return the subject of the core's commit watermark (the state vector it has stored) for one room."""
    return f"ama.wm.{room}"


def core_load(room: str) -> str:
    """Requests to the core for a room's whole stored state."""
    return f"ama.core.load.{room}"


CORE_LOAD_ALL = "ama.core.load.*"


def core_watermark(room: str) -> str:
    """Requests to the core for one room's current commit watermark."""
    return f"ama.core.wm.{room}"


CORE_WATERMARK_ALL = "ama.core.wm.*"


def stream(region: str) -> str:
    """Return the name of the JetStream stream that stores the updates of edges homed in ``region``."""
    return "AMA_UPD_" + region.upper().replace("-", "_")


def core_consumer(region: str) -> str:
    return "core_" + region.replace("-", "_")


def health(kind: str, name: str) -> str:
    """Heartbeats of one node (``kind`` is ``region`` or ``edge``)."""
    return f"ama.health.{kind}.{name}"


HEALTH_ALL = "ama.health.>"
