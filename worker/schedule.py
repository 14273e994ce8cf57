"""When a job's next step is due: the check schedule and the retry backoff, as pure functions."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class CheckSchedule:
    """The SDK's `create_and_poll` cadence: fixed interval at first, then exponential backoff to a cap."""

    fast_interval_s: float = 1.0
    fast_duration_s: float = 30.0
    backoff: float = 1.15
    max_interval_s: float = 30.0
    jitter: float = 0.25
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def delay_s(self, elapsed_s: float) -> float:
        """Seconds until the next check, `elapsed_s` after the run was submitted."""
        return self._jittered(self.base_delay_s(elapsed_s))

    def base_delay_s(self, elapsed_s: float) -> float:
        """The delay before jitter, as `create_and_poll` computes it."""
        if elapsed_s < self.fast_duration_s:
            return self.fast_interval_s
        if self.backoff == 1:
            return min(self.fast_interval_s, self.max_interval_s)
        since = elapsed_s - self.fast_duration_s
        attempt = math.floor(math.log(since * (self.backoff - 1) / self.fast_interval_s + 1) / math.log(self.backoff))
        return min(self.fast_interval_s * self.backoff**attempt, self.max_interval_s)

    def _jittered(self, delay_s: float) -> float:
        return max(0.0, delay_s * (1 + self.jitter * (2 * self.rand() - 1)))


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How transient failures are retried: exponential backoff with full jitter, `Retry-After` honoured."""

    budget: int = 10
    backoff_s: float = 1.0
    backoff_max_s: float = 120.0
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def exhausted(self, attempts: int) -> bool:
        """True once `attempts` transient failures have used up the budget."""
        return attempts > self.budget

    def delay_s(self, attempts: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after the `attempts`-th consecutive transient failure (1-based)."""
        ceiling = min(self.backoff_s * 2.0 ** max(attempts - 1, 0), self.backoff_max_s)
        delay = ceiling / 2 + self.rand() * ceiling / 2
        if retry_after_s is not None:
            # Never earlier than the server asked; a little spread so a paused pool does not stampede.
            delay = max(delay, retry_after_s + self.rand() * 0.25 * max(retry_after_s, 1.0))
        return delay
