"""Rate limits and caps that keep one client from harming the others (pure: time passed in)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ama.addresses import parse_address
from ama.ratelimit import TokenBucket

# Intents per second a socket may send, and the burst above that rate.
CONNECTION_RATE_PER_S = 10.0
CONNECTION_BURST = 30
# Intents per second one user may send over all its sockets on one edge.
USER_RATE_PER_S = 20.0
USER_BURST = 60
# A socket is closed (4029) once it has been rejected for its rate this many
# times in one flood lasting at least FLOOD_CLOSE_S; a flood ends after
# FLOOD_QUIET_S without a rejection. The time matters: after an edge stalls
# (a pause, a hung host), an honest client's frames queued in the kernel
# arrive all at once, and that burst must not cost it its socket.
MAX_REJECTED_IN_A_FLOOD = 100
FLOOD_CLOSE_S = 5.0
FLOOD_QUIET_S = 1.0
# At most one rate_limited error per socket in this interval: a flood gets
# its frames dropped, not one error frame written back for each.
RATE_ERROR_INTERVAL_S = 1.0
# Users whose buckets are kept before idle ones are dropped.
MAX_TRACKED_USERS = 100_000
# Open sockets per client address on one edge.
MAX_SOCKETS_PER_ADDRESS = 64


@dataclass
class IntentLimiter:
    """Per-socket and per-user buckets for intents on one edge."""

    users: dict[str, TokenBucket] = field(default_factory=dict)
    connection_rate_per_s: float = CONNECTION_RATE_PER_S
    connection_burst: float = CONNECTION_BURST
    user_rate_per_s: float = USER_RATE_PER_S
    user_burst: float = USER_BURST

    @classmethod
    def from_config(cls, config: dict) -> "IntentLimiter":
        """Build the limiter from an edge's plan entry; absent keys keep the defaults."""
        return cls(
            connection_rate_per_s=config.get("intent_rate_per_s", CONNECTION_RATE_PER_S),
            connection_burst=config.get("intent_burst", CONNECTION_BURST),
            user_rate_per_s=config.get("user_intent_rate_per_s", USER_RATE_PER_S),
            user_burst=config.get("user_intent_burst", USER_BURST),
        )

    def for_connection(self) -> TokenBucket:
        return TokenBucket(self.connection_rate_per_s, self.connection_burst)

    def allow(self, connection: TokenBucket, user_id: str, now: float) -> bool:
        """Take one token from the socket's bucket and the user's; both must allow the intent."""
        user = self.users.get(user_id)
        if user is None:
            if len(self.users) > MAX_TRACKED_USERS:
                self.forget_idle(now)
            user = self.users[user_id] = TokenBucket(self.user_rate_per_s, self.user_burst)
        if not connection.take(now):
            return False
        return user.take(now)

    def forget_idle(self, now: float, idle_s: float = 300.0) -> None:
        self.users = {user: bucket for user, bucket in self.users.items() if bucket.updated_at is not None and now - bucket.updated_at < idle_s}


@dataclass
class AddressCounter:
    """Open sockets per client address.

    Loopback addresses are not capped: they are this machine's own tools
    (load generators, tests); clients behind a trusted proxy on this machine
    are counted by the address their X-Forwarded-For names.
    """

    limit: int = MAX_SOCKETS_PER_ADDRESS
    open: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def has_room(self, address: str) -> bool:
        """Tell whether one more socket from ``address`` stays within the cap."""
        parsed = parse_address(address)
        return self.open.get(address, 0) < self.limit or (parsed is not None and parsed.is_loopback)

    def acquire(self, address: str) -> None:
        self.open[address] += 1

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


@dataclass
class Flood:
    """The rate rejections of one socket, to tell a sustained flood from a burst (pure: time passed in)."""

    rejected: int = 0
    since: float = 0.0
    last_at: float = float("-inf")
    error_at: float = float("-inf")

    def reject(self, now: float) -> tuple[bool, bool]:
        """Count one rejected frame; return (close the socket, send a rate_limited error)."""
        if now - self.last_at > FLOOD_QUIET_S:
            self.rejected = 0
            self.since = now
        self.rejected += 1
        self.last_at = now
        close = self.rejected >= MAX_REJECTED_IN_A_FLOOD and now - self.since >= FLOOD_CLOSE_S
        tell = now - self.error_at >= RATE_ERROR_INTERVAL_S
        if tell:
            self.error_at = now
        return close, tell
