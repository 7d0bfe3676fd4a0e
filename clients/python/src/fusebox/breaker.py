"""A guard's view of its shared breaker: the state fuseboxd pushed (applied
only when its generation is newer), this client's local open below quorum,
and, in local mode, a local breaker with the same policy. Plus the tally of
outcomes waiting to be reported."""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from .policy import BreakerSettings
from .v1 import breaker_pb2 as bpb

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"
FORCED_OPEN, FORCED_CLOSED, DISABLED, SHADOW = "FORCED_OPEN", "FORCED_CLOSED", "DISABLED", "SHADOW"
STATE_NAMES = {
    bpb.BREAKER_STATE_CLOSED: CLOSED, bpb.BREAKER_STATE_OPEN: OPEN, bpb.BREAKER_STATE_HALF_OPEN: HALF_OPEN,
    bpb.BREAKER_STATE_FORCED_OPEN: FORCED_OPEN, bpb.BREAKER_STATE_FORCED_CLOSED: FORCED_CLOSED,
    bpb.BREAKER_STATE_DISABLED: DISABLED, bpb.BREAKER_STATE_SHADOW: SHADOW,
}
PASSING = {CLOSED, FORCED_CLOSED, DISABLED, SHADOW}
OVERRIDES = {FORCED_OPEN, FORCED_CLOSED, DISABLED, SHADOW}

SUCCESS, FAILURE, SLOW_SUCCESS, SLOW_FAILURE, IGNORED = "success", "failure", "slow_success", "slow_failure", "ignored"
OUTCOME_PB = {
    SUCCESS: bpb.OUTCOME_SUCCESS, FAILURE: bpb.OUTCOME_FAILURE, SLOW_SUCCESS: bpb.OUTCOME_SLOW_SUCCESS,
    SLOW_FAILURE: bpb.OUTCOME_SLOW_FAILURE, IGNORED: bpb.OUTCOME_IGNORED,
}


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class BreakerStatus:
    """The state clients enforce, as fuseboxd (or, in local mode, the local breaker) decided it."""

    state: str = CLOSED
    generation: int = 0
    until_ms: int = 0
    reason: str = ""

    @staticmethod
    def from_proto(s: bpb.BreakerStatus) -> "BreakerStatus":
        return BreakerStatus(STATE_NAMES.get(s.state, CLOSED), s.generation, s.until_ms, s.reason)


@dataclass(frozen=True)
class BreakerStateChange:
    """A change of a breaker's state this client applied. `client_only`: this
    client's breaker alone (a local open below quorum, or its end)."""

    registry: str
    breaker: str
    from_state: str
    to_state: str
    generation: int
    reason: str
    client_only: bool = False
    contributing_clients: Tuple[str, ...] = ()


class LocalBreaker:
    """The breaker a client runs itself while fuseboxd is out of reach: the
    fleet's trip rules over this client's outcomes, its own probe permits."""

    def __init__(self, settings: BreakerSettings, status: BreakerStatus, at_ms: int):
        self.settings = settings
        self.override = status.state if status.state in OVERRIDES else None
        self.state = status.state if status.state in (CLOSED, OPEN, HALF_OPEN) else CLOSED
        self.until_ms = status.until_ms if status.state == OPEN else 0
        if self.state == OPEN and self.until_ms == 0:
            self.until_ms = at_ms + settings.open_base_ms
        self.generation = status.generation
        self.window: deque = deque()  # count: (failure, slow); time: [second, calls, failures, slow]
        self.window_failures = 0  # count window: failures and slow calls among its entries
        self.window_slow = 0
        self.consecutive = 0
        self.reopenings = 0
        self.probes_out = 0
        self.probe_successes = 0

    @property
    def effective(self) -> str:
        return self.override or self.state

    def status(self, reason: str = "") -> BreakerStatus:
        return BreakerStatus(self.effective, self.generation, self.until_ms if self.state == OPEN else 0, reason)

    def _counts(self, at_ms: int) -> Tuple[int, int, int]:
        if not self.settings.window_time:
            return len(self.window), self.window_failures, self.window_slow
        horizon = at_ms // 1000 - self.settings.window_size
        while self.window and self.window[0][0] <= horizon:
            self.window.popleft()
        return (sum(b[1] for b in self.window), sum(b[2] for b in self.window), sum(b[3] for b in self.window))

    def _record_window(self, failure: bool, slow: bool, at_ms: int) -> None:
        if not self.settings.window_time:
            self.window.append((failure, slow))
            self.window_failures += failure
            self.window_slow += slow
            while len(self.window) > self.settings.window_size:
                gone_failure, gone_slow = self.window.popleft()
                self.window_failures -= gone_failure
                self.window_slow -= gone_slow
            return
        second = at_ms // 1000
        if not self.window or self.window[-1][0] != second:
            self.window.append([second, 0, 0, 0])
        bucket = self.window[-1]
        bucket[1] += 1
        bucket[2] += int(failure)
        bucket[3] += int(slow)

    def admit(self, at_ms: int) -> Tuple[bool, bool, Optional[float], Optional[Tuple[str, str, str]]]:
        """(allowed, is_probe, retry_after seconds, change): `change` when the call
        found the open period over and half-opened the breaker (to be announced)."""
        change = self.tick(at_ms)
        if self.override in (FORCED_CLOSED, DISABLED, SHADOW):
            return True, False, None, change
        if self.override == FORCED_OPEN:
            return False, False, None, change
        if self.state == CLOSED:
            return True, False, None, change
        if self.state == OPEN:
            return False, False, max(0, self.until_ms - at_ms) / 1000, change
        if self.probes_out < self.settings.permitted_calls:
            self.probes_out += 1
            return True, True, None, change
        return False, False, None, change

    def record(self, outcome: str, probe: bool, at_ms: int) -> Optional[Tuple[str, str, str]]:
        """Counts an outcome; returns (from, to, reason) when the state changes."""
        if outcome == IGNORED:
            if probe:
                self.probes_out = max(0, self.probes_out - 1)
            return None
        failure = outcome in (FAILURE, SLOW_FAILURE)
        if probe or self.state == HALF_OPEN:
            if self.state != HALF_OPEN:
                return None
            self.probes_out = max(0, self.probes_out - 1)
            if failure:
                self.reopenings += 1
                return self._open("probe failed", at_ms)
            self.probe_successes += 1
            if self.probe_successes >= max(self.settings.success_threshold, 1):
                return self._move(CLOSED, f"{self.settings.success_threshold} successful probes", at_ms)
            return None
        if self.state != CLOSED or self.override in (FORCED_OPEN,):
            return None
        self._record_window(failure, outcome in (SLOW_SUCCESS, SLOW_FAILURE), at_ms)
        self.consecutive = self.consecutive + 1 if failure else 0
        if self.override in (FORCED_CLOSED, DISABLED):
            return None
        s = self.settings
        reason = None
        if s.consecutive_failures and self.consecutive >= s.consecutive_failures:
            reason = f"{self.consecutive} consecutive failures ≥ {s.consecutive_failures}"
        else:
            calls, failures, slow = self._counts(at_ms)
            if calls >= max(s.minimum_calls, 1):
                if s.failure_rate > 0 and failures * 100 / calls >= s.failure_rate:
                    reason = f"failure rate {failures * 100 / calls:.1f}% ≥ {s.failure_rate:g}% over {calls} calls"
                elif s.slow_rate > 0 and slow * 100 / calls >= s.slow_rate:
                    reason = f"slow-call rate {slow * 100 / calls:.1f}% ≥ {s.slow_rate:g}% over {calls} calls"
        return self._open(reason, at_ms) if reason else None

    def tick(self, at_ms: int) -> Optional[Tuple[str, str, str]]:
        if self.state == OPEN and at_ms >= self.until_ms:
            return self._move(HALF_OPEN, f"open period ended; probing with up to {self.settings.permitted_calls} calls", at_ms)
        return None

    def _open(self, reason: str, at_ms: int):
        s = self.settings
        duration = min(s.open_base_ms * s.open_multiplier ** self.reopenings, s.open_max_ms)
        if s.open_jitter_percent:
            duration *= 1 + random.uniform(0, s.open_jitter_percent / 100)
        self.until_ms = at_ms + int(duration)
        return self._move(OPEN, "local breaker: " + reason, at_ms)

    def _move(self, to: str, reason: str, at_ms: int):
        before = self.effective
        self.state = to
        self.generation += 1
        self.probes_out = 0
        self.probe_successes = 0
        if to == CLOSED:
            self.window.clear()
            self.window_failures = self.window_slow = 0
            self.consecutive = 0
            self.reopenings = 0
        return before, self.effective, reason


class Tally:
    """Outcomes of one breaker since the last report, under one generation."""

    def __init__(self, generation: int = 0):
        self.generation = generation
        self.counts = {SUCCESS: 0, FAILURE: 0, SLOW_SUCCESS: 0, SLOW_FAILURE: 0, IGNORED: 0}
        self.trailing = 0
        self.probes: List[Tuple[int, str]] = []
        self.dropped = 0
        self.total = 0  # outcomes counted since the last drain

    def empty(self) -> bool:
        return not self.probes and not any(self.counts.values())

    def record(self, outcome: str, generation: int) -> None:
        if generation != self.generation:
            if generation < self.generation:
                self.dropped += 1
                return
            self.reset(generation)
        self.counts[outcome] += 1
        self.total += 1
        if outcome in (SUCCESS, SLOW_SUCCESS):
            self.trailing = 0
        elif outcome in (FAILURE, SLOW_FAILURE):
            self.trailing += 1

    def reset(self, generation: int) -> None:
        self.generation = generation
        for k in self.counts:
            self.counts[k] = 0
        self.total = 0
        self.trailing = 0

    def drain(self):
        """(generation, counts, trailing, probes) and empties the counts; the trailing run continues."""
        out = (self.generation, dict(self.counts), self.trailing, list(self.probes))
        for k in self.counts:
            self.counts[k] = 0
        self.total = 0
        self.probes.clear()
        return out


@dataclass
class SharedBreaker:
    """Everything the client holds for one breaker (registry, name)."""

    registry: str
    name: str
    policy: str
    settings: Optional[BreakerSettings]
    fleet: BreakerStatus = field(default_factory=BreakerStatus)
    local_open_until_ms: int = 0
    local: Optional[LocalBreaker] = None
    tally: Tally = field(default_factory=Tally)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self) -> BreakerStatus:
        return self.local.status() if self.local is not None else self.fleet
