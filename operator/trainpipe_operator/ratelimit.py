"""A token bucket for the operator's API requests (`--api-qps`, `--api-burst`), as client-go's clients have.

The official Python client has no limiter: at large fan-out an operator would otherwise send every
create and list as fast as threads allow and be throttled (429) by the API server's priority and
fairness. Thread-safe; time is injected so tests need no sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"--api-qps must be > 0 and --api-burst ≥ 1 (got {qps}, {burst})")
        self.qps, self.burst = qps, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; returns how long the caller must wait before using it (0 when one was there)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.qps)
            self._at = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
