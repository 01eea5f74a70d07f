"""A token bucket (pure: the caller passes the time)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float = -1.0
    updated_at: float | None = None

    def take(self, now: float) -> bool:
        """Take one token; return False when the bucket is empty."""
        if self.tokens < 0:
            self.tokens = self.burst
        if self.updated_at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.rate_per_s)
        self.updated_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def seconds_until_token(self) -> float:
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate_per_s
