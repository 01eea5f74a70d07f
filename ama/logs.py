"""One logging setup for every process: each line names its node and region.

The policy (written out in docs/logging.md): INFO for lifecycle (start, ready,
stop, a room opened or closed, a re-home), WARNING for trouble that was
handled (a timed-out sync, a retried publish), ERROR for bugs and lost
guarantees. Ids go into the message as ``key=value``. Tokens, join codes and
the admin token are never logged.
"""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s node=%(node)s region=%(region)s %(name)s: %(message)s"


class _NodeFilter(logging.Filter):
    def __init__(self, node: str, region: str):
        super().__init__()
        self.node = node
        self.region = region

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        record.region = self.region
        return True


def setup(node: str, region: str, level: str | None = None) -> None:
    """Send this process's logs to stderr with its node and region on every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_NodeFilter(node, region))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    name = (level or os.environ.get("AMA_LOG_LEVEL") or "INFO").upper()
    if name not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        sys.stderr.write(f"AMA_LOG_LEVEL={name!r} is not a log level; using INFO\n")
        name = "INFO"
    root.setLevel(name)
    for noisy in ("nats", "websockets", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
