"""The state of the patterns a guard keeps between calls: retry budget,
token bucket, bulkhead and result cache. Each is safe to use from several
threads; the bulkhead has a thread and an asyncio side."""
from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

from .policy import BulkheadSettings, CacheSettings, RateLimitSettings, RetrySettings


def backoff_delay_ms(retry: RetrySettings, retry_number: int, previous_ms: float) -> float:
    """The delay before retry `retry_number` (1 for the first retry)."""
    if retry.fixed:
        base = float(retry.initial_ms)
    else:
        base = min(float(retry.max_ms), retry.initial_ms * retry.multiplier ** (retry_number - 1))
    jitter = retry.jitter
    if jitter == "none":
        return base
    if jitter == "equal":
        return base / 2 + random.uniform(0, base / 2)
    if jitter == "decorrelated":
        high = max(float(retry.initial_ms), (previous_ms or retry.initial_ms) * 3)
        return min(float(retry.max_ms), random.uniform(retry.initial_ms, high))
    if jitter == "proportional":
        p = retry.jitter_percent / 100
        return min(float(retry.max_ms), base * (1 + random.uniform(-p, p)))
    return random.uniform(0, base)  # full


class RetryBudget:
    """gRPC's retryThrottling: a failure takes a token, a success gives back
    `ratio`; retries are allowed while more than half the tokens remain."""

    def __init__(self, max_tokens: int, ratio: float):
        self.max_tokens = float(max_tokens)
        self.ratio = ratio
        self.tokens = float(max_tokens)
        self._lock = threading.Lock()

    def record(self, success: bool) -> None:
        with self._lock:
            if success:
                self.tokens = min(self.max_tokens, self.tokens + self.ratio)
            else:
                self.tokens = max(0.0, self.tokens - 1)

    def allows_retry(self) -> bool:
        with self._lock:
            return self.tokens > self.max_tokens / 2


class TokenBucket:
    """A token bucket: `limit_per_period` tokens per `period_ms`, holding at
    most `burst`. `reserve` takes a token now or reserves the next one if it
    comes within `max_wait_ms`."""

    def __init__(self, settings: RateLimitSettings, now: Optional[float] = None):
        self.settings = settings
        self.tokens = float(settings.burst)
        self.updated = time.monotonic() if now is None else now
        self._lock = threading.Lock()

    def reserve(self, now: Optional[float] = None) -> Tuple[bool, float]:
        """(granted, seconds): granted after waiting `seconds`, or refused with
        `seconds` until a token would be there."""
        s = self.settings
        rate = s.limit_per_period / (s.period_ms / 1000)  # tokens per second
        with self._lock:
            now = time.monotonic() if now is None else now
            self.tokens = min(float(s.burst), self.tokens + (now - self.updated) * rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True, 0.0
            wait = (1 - self.tokens) / rate
            if wait * 1000 <= s.max_wait_ms:
                self.tokens -= 1  # the next token is this call's
                return True, wait
            return False, wait


class Bulkhead:
    """At most `max_concurrent` calls at once; up to `max_queued` wait at most
    `max_wait_ms` for a slot, higher `priority` first, then first come first
    served. Threads and asyncio tasks share the same slots."""

    def __init__(self, settings: BulkheadSettings):
        self.settings = settings
        self.active = 0
        self._lock = threading.Lock()
        self._queue: list = []  # heap of (-priority, order, waiter); waiters that gave up stay until popped
        self._waiting = 0  # waiters in the heap still waiting
        self._order = itertools.count()

    @property
    def queued(self) -> int:
        return self._waiting

    def _try_enter(self, priority: int, waiter_factory):
        """(entered, waiter or None, position): a slot at once, a queued waiter, or a refusal."""
        with self._lock:
            if self.active < self.settings.max_concurrent and self._waiting == 0:
                self.active += 1
                return True, None, 0
            if self._waiting >= self.settings.max_queued:
                return False, None, 0
            waiter = waiter_factory()
            heapq.heappush(self._queue, (-priority, next(self._order), waiter))
            self._waiting += 1
            position = sum(1 for p, _, w in self._queue if not w.done and p <= -priority)
            return False, waiter, position

    def _hand_over(self) -> None:
        """Called with the lock held when a slot frees: the best waiter gets it."""
        while self._queue:
            _, _, waiter = heapq.heappop(self._queue)
            if waiter.done:
                continue
            waiter.done = True
            waiter.granted = True
            self._waiting -= 1
            waiter.wake()
            return
        self.active -= 1

    def release(self) -> None:
        with self._lock:
            self._hand_over()

    def _give_up(self, waiter) -> bool:
        """A waiter whose time ran out leaves; True if it had been granted meanwhile (then it holds a slot)."""
        with self._lock:
            if waiter.granted:
                return True
            if not waiter.done:
                waiter.done = True
                self._waiting -= 1
            return False

    def acquire(self, priority: int = 0) -> Tuple[bool, int]:
        """Blocks the thread for a slot: (acquired, queue position, 1-based; 0 if a slot was free)."""
        entered, waiter, position = self._try_enter(priority, _ThreadWaiter)
        if entered:
            return True, 0
        if waiter is None:
            return False, 0
        waiter.event.wait(self.settings.max_wait_ms / 1000)
        return self._give_up(waiter) or waiter.granted, position

    async def acquire_async(self, priority: int = 0) -> Tuple[bool, int]:
        loop = asyncio.get_running_loop()
        entered, waiter, position = self._try_enter(priority, lambda: _AsyncWaiter(loop))
        if entered:
            return True, 0
        if waiter is None:
            return False, 0
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.settings.max_wait_ms / 1000)
        except asyncio.TimeoutError:
            pass
        except asyncio.CancelledError:
            if self._give_up(waiter):
                self.release()
            raise
        return self._give_up(waiter) or waiter.granted, position


class _ThreadWaiter:
    def __init__(self):
        self.event = threading.Event()
        self.done = False
        self.granted = False

    def wake(self):
        self.event.set()


class _AsyncWaiter:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.future = loop.create_future()
        self.done = False
        self.granted = False

    def wake(self):
        def resolve():
            if not self.future.done():
                self.future.set_result(True)
        try:
            self.loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


class ResultCache:
    """Successful results by key for `ttl_ms`, at most `max_entries` (least
    recently used evicted); served stale for `stale_while_revalidate_ms` more
    while one refresh runs. `stale(key)` is the last value, expired or not."""

    def __init__(self, settings: CacheSettings):
        self.settings = settings
        self._entries: "OrderedDict[Any, Tuple[Any, float]]" = OrderedDict()
        self._lock = threading.Lock()
        self.refreshing: set = set()
        self.loading: Dict[Any, Any] = {}  # key -> future of the one load running

    def lookup(self, key, now: Optional[float] = None):
        """("fresh" | "stale" | "miss", value)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return "miss", None
            value, stored = entry
            age_ms = (now - stored) * 1000
            self._entries.move_to_end(key)
            if age_ms <= self.settings.ttl_ms:
                return "fresh", value
            if age_ms <= self.settings.ttl_ms + self.settings.stale_while_revalidate_ms:
                return "stale", value
            return "miss", None

    def store(self, key, value, now: Optional[float] = None) -> None:
        with self._lock:
            self._entries[key] = (value, time.monotonic() if now is None else now)
            self._entries.move_to_end(key)
            while len(self._entries) > self.settings.max_entries:
                self._entries.popitem(last=False)

    def stale(self, key):
        """(found, value): the last value stored under `key`, however old."""
        with self._lock:
            entry = self._entries.get(key)
            return (True, entry[0]) if entry is not None else (False, None)

    def invalidate(self, key) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
