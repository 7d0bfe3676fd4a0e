"""The SDK's exceptions: every rejection a guard makes is a `GuardError`."""
from __future__ import annotations

from typing import Optional


class FuseboxError(Exception):
    """Base class of the SDK's own exceptions."""


class FuseboxConfigurationError(FuseboxError):
    """The configuration cannot be used; `field` names the setting."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class GuardError(FuseboxError):
    """A guard refused or cut short a call. `guard` is the guard's (breaker's)
    name, `generation` the breaker generation the decision was made under,
    `trigger` the fallback trigger it counts as (`circuitOpen`,
    `bulkheadFull`, `rateLimited`, `timeout`)."""

    trigger = "failure"

    def __init__(self, message: str, guard: str = "", generation: int = 0):
        super().__init__(message)
        self.guard = guard
        self.generation = generation


class CircuitOpenError(GuardError):
    """The breaker is OPEN or FORCED_OPEN, open locally below quorum, or
    HALF_OPEN without a probe permit. `retry_after` (seconds) is when it may
    half-open, if known."""

    trigger = "circuitOpen"

    def __init__(self, message: str, guard: str = "", generation: int = 0, retry_after: Optional[float] = None):
        super().__init__(message, guard, generation)
        self.retry_after = retry_after


class BulkheadFullError(GuardError):
    """No bulkhead slot: the queue was full, or the call waited longer than `maxWaitMs`."""

    trigger = "bulkheadFull"


class RateLimitedError(GuardError):
    """No rate-limit token within `maxWaitMs`; `retry_after` (seconds) is when one will be there."""

    trigger = "rateLimited"

    def __init__(self, message: str, guard: str = "", generation: int = 0, retry_after: Optional[float] = None):
        super().__init__(message, guard, generation)
        self.retry_after = retry_after


class GuardTimeoutError(GuardError, TimeoutError):
    """The attempt timeout (`kind == "attempt"`) or the total timeout (`"total"`) expired."""

    trigger = "timeout"

    def __init__(self, message: str, guard: str = "", generation: int = 0, kind: str = "attempt"):
        super().__init__(message, guard, generation)
        self.kind = kind
