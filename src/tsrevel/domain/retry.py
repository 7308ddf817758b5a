"""The retry schedule: full-jitter backoff that never undercuts a Retry-After; pure arithmetic."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how long to retry a transient failure (TSREVEL_MAX_ATTEMPTS, TSREVEL_RETRY_*)."""

    max_attempts: int = 8
    base_s: float = 2.0
    cap_s: float = 900.0
    retry_after_cap_s: float = 3600.0

    def envelope_s(self, attempt: int) -> float:
        """The upper bound of the jittered delay after the attempt-th failure (1-based)."""
        exponent = min(max(attempt - 1, 0), 60)  # 2**60 already dwarfs any cap
        return min(self.cap_s, self.base_s * (2**exponent))

    def delay_s(self, attempt: int, *, unit_random: float) -> float:
        """Full jitter: a uniform draw in [0, envelope) given unit_random in [0, 1)."""
        return max(0.0, min(unit_random, 1.0)) * self.envelope_s(attempt)

    def next_attempt_at(
        self, attempt: int, *, now: datetime, unit_random: float, retry_after: datetime | None = None
    ) -> datetime:
        """When to try again: the jittered delay, but never before the far side's Retry-After (capped)."""
        at = now + timedelta(seconds=self.delay_s(attempt, unit_random=unit_random))
        if retry_after is not None:
            honoured = min(retry_after, now + timedelta(seconds=self.retry_after_cap_s))
            at = max(at, honoured)
        return at

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
