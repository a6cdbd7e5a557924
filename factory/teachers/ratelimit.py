"""An asyncio token bucket for requests- and tokens-per-minute limits.

A request is charged its whole estimate up front, even one larger than the bucket: the level may go below
zero, and later requests wait until the debt is paid back at the configured rate. So the average rate holds
whatever the size of one request. When the server reports what a request really used, `settle` corrects the
charge (a refund for the unused part of `max_tokens`, or a further charge), so the limiter neither starves on
pessimistic estimates nor overshoots on optimistic ones.

Hand-written: thirty lines; the rate-limit libraries on PyPI are either sync-only or per-host middleware, and none
settles an estimate against reported usage.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, per_minute: float, burst_s: float = 1.0):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, amount: float = 1.0) -> None:
        """Waits until the bucket is out of debt (and holds `amount`, when that fits in it), then charges."""
        need = min(amount, self.capacity)
        async with self._lock:  # FIFO: waiters queue on the lock in arrival order
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def settle(self, charged: float, used: float) -> None:
        """Corrects a charge once the real usage is known: refunds `charged - used`, or charges the excess."""
        self._refill()
        self.level = min(self.capacity, self.level + charged - used)
