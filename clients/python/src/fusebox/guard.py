"""Guards: each runs calls through the patterns of a named policy, outer to inner

    fallback -> cache -> total timeout -> retry (with budget) -> circuit breaker
    -> rate limiter -> bulkhead -> attempt timeout -> operation

and shares its circuit breaker with every process that guards the same name.
`call` runs a function in the calling thread (a timeout runs it in a helper
thread); `run` awaits a coroutine function under asyncio."""
from __future__ import annotations

import asyncio
import functools
import inspect
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from .breaker import (FAILURE, FORCED_OPEN, IGNORED, OPEN, PASSING, SLOW_FAILURE, SLOW_SUCCESS, SUCCESS,
                      BreakerStatus, SharedBreaker, now_ms)
from .classify import Classification, standard
from .errors import BulkheadFullError, CircuitOpenError, GuardError, GuardTimeoutError, RateLimitedError
from .patterns import Bulkhead, ResultCache, RetryBudget, TokenBucket, backoff_delay_ms
from .metrics import Metrics
from .policy import Policy
from .state import GuardEvent

_LOCAL_PERMIT = -1  # a probe the local breaker admitted
_OVERRIDES_PASSING = frozenset({"FORCED_CLOSED", "DISABLED", "SHADOW"})  # an operator's override beats a local open


@dataclass(frozen=True)
class StaticResponse:
    """A policy's static fallback response."""

    content_type: str
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        import json
        return json.loads(self.body)


@dataclass(frozen=True)
class FallbackContext:
    """What a fallback handler is told: the guard, the error, and the trigger
    (`failure`, `timeout`, `circuitOpen`, `bulkheadFull`, `rateLimited`)."""

    guard: str
    error: BaseException
    trigger: str


class _Components:
    """A guard's pattern state, kept across policy changes where the section stays the same."""

    def __init__(self):
        self.lock = threading.Lock()
        self.policy: Optional[Policy] = None
        self.budget: Optional[RetryBudget] = None
        self.bucket: Optional[TokenBucket] = None
        self.bulkhead: Optional[Bulkhead] = None
        self.cache: Optional[ResultCache] = None

    def follow(self, policy: Policy) -> None:
        old = self.policy
        if old is policy:
            return
        r = policy.retry
        if r is None or not r.budget_tokens:
            self.budget = None
        elif old is None or old.retry is None or (old.retry.budget_tokens, old.retry.budget_ratio) != (r.budget_tokens, r.budget_ratio):
            self.budget = RetryBudget(r.budget_tokens, r.budget_ratio)
        if policy.rate_limit is None:
            self.bucket = None
        elif self.bucket is None or self.bucket.settings != policy.rate_limit:
            self.bucket = TokenBucket(policy.rate_limit)
        if policy.bulkhead is None:
            self.bulkhead = None
        elif self.bulkhead is None or self.bulkhead.settings != policy.bulkhead:
            self.bulkhead = Bulkhead(policy.bulkhead)
        if policy.cache is None:
            self.cache = None
        elif self.cache is None:
            self.cache = ResultCache(policy.cache)
        else:
            self.cache.settings = policy.cache
        self.policy = policy


class Guard:
    """Use as `guard.call(fn, *args)`, `await guard.run(coro_fn, *args)`,
    `@guard` on a function or coroutine function, or `with guard:` /
    `async with guard:` around a block (breaker, rate limiter and bulkhead
    only: a block cannot be retried, timed out or replaced by a fallback)."""

    def __init__(self, client, name: str, policy: str, registry: str = "default",
                 classifier: Callable[[BaseException], Classification] = standard,
                 static_decoder: Optional[Callable[[StaticResponse], Any]] = None):
        self._client = client
        self._state = client._state
        self.name = name
        self.policy_name = policy
        self.registry = registry
        self.classifier = classifier
        self.static_decoder = static_decoder
        self._breaker: SharedBreaker = self._state.breaker(registry, name, policy)
        # Guards of one (registry, name, policy) share the pattern state, whatever their classifier.
        self._components: _Components = client._components_for(registry, name, policy)
        self._lock = self._components.lock
        self._blocks = threading.local()
        self._metrics = self._state.metrics
        self._gauges = type(self._metrics) is not Metrics  # the no-op metrics need no calls or gauge readings
        self._events = client._config.on_event

    # MARK: what the guard holds

    @property
    def policy(self) -> Optional[Policy]:
        """The policy in force (fuseboxd's, the cache's or a preset); None: calls run unguarded."""
        return self._state.policy(self.registry, self.policy_name)

    @property
    def breaker_state(self) -> BreakerStatus:
        """The breaker's state as this client enforces it (the fleet's, or in local mode the local breaker's)."""
        return self._breaker.status()

    @property
    def local_open_until(self) -> Optional[float]:
        """Wall-clock seconds when this client's local open below quorum ends; None when not open locally."""
        until = self._breaker.local_open_until_ms
        return until / 1000 if until > now_ms() else None

    def invalidate_cache(self, key) -> None:
        if self._components.cache is not None:
            self._components.cache.invalidate(key)

    def clear_cache(self) -> None:
        if self._components.cache is not None:
            self._components.cache.clear()

    def _resolve(self) -> Tuple[Optional[Policy], _Components]:
        policy = self.policy
        if policy is None:
            if not getattr(self, "_warned_missing", False):
                self._warned_missing = True
                self._state.log.error("guard %s: policy %s not found in registry %s and no preset of that name; calls run unguarded",
                                      self.name, self.policy_name, self.registry)
            return None, self._components
        c = self._components
        if c.policy is not policy:
            with self._lock:
                c.follow(policy)
        return policy, c

    def _event(self, kind: str, detail) -> None:
        if self._events is not None:
            try:
                self._events(GuardEvent(self.registry, self.name, kind, detail))
            except Exception:  # noqa: BLE001
                self._state.log.exception("on_event handler raised")

    # MARK: decisions shared by both paths

    def _admit(self, policy: Policy) -> Tuple[str, "_Ticket", Optional[GuardError]]:
        """('pass' | 'permit' | 'reject', ticket, error): what the breaker decides without fuseboxd."""
        if policy.breaker is None:
            return "pass", _Ticket(0), None
        sb = self._breaker
        now = now_ms()
        with sb.lock:
            local = sb.local
            if local is not None:
                allowed, probe, retry_after, change = local.admit(now)
                ticket = _Ticket(local.generation, _LOCAL_PERMIT if probe else None, local=True)
                effective = local.effective
            else:
                status = sb.fleet
                local_until = sb.local_open_until_ms
        if local is not None:
            if change:
                self._state.transitioned(sb, change[0], change[1], ticket.generation, change[2])
            if allowed:
                return "pass", ticket, None
            return "reject", ticket, CircuitOpenError(
                f"circuit {self.name} is {effective} (local breaker)", self.name, ticket.generation, retry_after)
        state, ticket = status.state, _Ticket(status.generation)
        if local_until > now and state not in _OVERRIDES_PASSING:
            return "reject", ticket, CircuitOpenError(
                f"circuit {self.name} is open for this client (below the fleet's quorum)", self.name, status.generation,
                (local_until - now) / 1000)
        if state in PASSING:
            return "pass", ticket, None
        if state in (OPEN, FORCED_OPEN):
            retry = max(0.0, (status.until_ms - now) / 1000) if status.until_ms else None
            return "reject", ticket, CircuitOpenError(f"circuit {self.name} is {state}", self.name, status.generation, retry)
        return "permit", ticket, None

    def _permit_wait(self, policy: Policy) -> float:
        """How long a call may wait for a probe permit: `permit_timeout`, at most half the attempt timeout."""
        wait = self._state.config.permit_timeout
        attempt_ms = policy.timeout.attempt_ms if policy.timeout else 0
        return min(wait, attempt_ms / 2000) if attempt_ms else wait

    def _permitted(self, ticket: "_Ticket", answer, started: float) -> None:
        """Takes fuseboxd's answer to a permit request into the ticket, or raises the rejection."""
        granted, permit, retry_after, reason = answer
        ticket.permit_spent = time.monotonic() - started
        if not granted:
            raise self._rejected(CircuitOpenError(
                f"circuit {self.name} is HALF_OPEN and no probe permit was granted: {reason}", self.name, ticket.generation,
                retry_after))
        ticket.permit = permit

    def _token(self, components: _Components, ticket: "_Ticket") -> float:
        """Takes a rate-limit token: the seconds to wait for it, or raises the rejection."""
        if components.bucket is None:
            return 0.0
        ok, wait_s = components.bucket.reserve()
        if not ok:
            self._release(ticket)
            raise self._rejected(RateLimitedError(f"rate limit of {self.name} reached", self.name, ticket.generation, wait_s))
        return wait_s

    def _admitted_by_bulkhead(self, bulkhead: Bulkhead, ok: bool, ticket: "_Ticket") -> None:
        self._metrics.bulkhead(self.registry, self.name, ok)
        if self._gauges:
            self._metrics.bulkhead_gauges(self.registry, self.name, bulkhead.active, bulkhead.queued)
        if not ok:
            self._release(ticket)
            raise self._rejected(BulkheadFullError(f"bulkhead of {self.name} is full", self.name, ticket.generation))
        ticket.bulkhead = bulkhead

    def _leave(self, ticket: "_Ticket") -> None:
        bulkhead, ticket.bulkhead = ticket.bulkhead, None
        if bulkhead is not None:
            bulkhead.release()
            if self._gauges:
                self._metrics.bulkhead_gauges(self.registry, self.name, bulkhead.active, bulkhead.queued)

    def _limit(self, policy: Policy, ticket: "_Ticket", deadline: Optional[float]) -> Tuple[Optional[float], str]:
        """Seconds the operation may take, and which timeout that is. The attempt is
        timed from the moment it passes the bulkhead, less what a permit's wait took.
        Time already up: the call never starts (a timeout, not an outcome)."""
        attempt_ms = policy.timeout.attempt_ms if policy.timeout else 0
        limit, kind = None, "attempt"
        if attempt_ms:
            limit = attempt_ms / 1000 - ticket.permit_spent
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if limit is None or remaining < limit:
                limit, kind = remaining, "total"
        if limit is not None and limit <= 0:
            self._release(ticket)
            raise self._timed_out(GuardTimeoutError(f"{kind} timeout of {self.name} expired before the call started",
                                                    self.name, ticket.generation, kind))
        return limit, kind

    def _timed_out(self, error: GuardTimeoutError) -> GuardTimeoutError:
        self._metrics.timeout(self.registry, self.name, error.kind)
        self._event("timeout", error.kind)
        return error

    def _release(self, ticket: "_Ticket") -> None:
        """A probe that never reached the dependency: ignored, which frees a local permit."""
        if ticket.permit is not None:
            self._state.record(self._breaker, IGNORED, ticket.generation, ticket.permit, ticket.local)
            ticket.permit = None

    def _rejected(self, error: GuardError) -> GuardError:
        if isinstance(error, CircuitOpenError):
            self._metrics.not_permitted(self.registry, self.name)
        self._event("rejected", error)
        return error

    def _classify(self, error: BaseException) -> Classification:
        return self.classifier(error) or standard(error)

    def _finish(self, policy: Policy, ticket: "_Ticket", error: Optional[BaseException], seconds: float) -> None:
        """Records what an attempt that reached the dependency did."""
        breaker = policy.breaker
        slow = breaker is not None and seconds * 1000 > breaker.slow_ms
        if error is None:
            outcome = SLOW_SUCCESS if slow else SUCCESS
        else:
            if isinstance(error, GuardTimeoutError):
                self._timed_out(error)
            c = self._classify(error)
            try:
                error._fusebox_classification = c
            except AttributeError:
                pass
            ignored = c.code == "cancelled" or (breaker is not None and c.code in breaker.ignored_errors)
            outcome = IGNORED if ignored else (SLOW_FAILURE if slow else FAILURE)
        if breaker is not None:
            self._state.record(self._breaker, outcome, ticket.generation, ticket.permit, ticket.local)
        if self._gauges:
            if outcome == IGNORED:
                self._metrics.ignored(self.registry, self.name)
            else:
                result = "failure" if outcome in (FAILURE, SLOW_FAILURE) else "success"
                self._metrics.call(self.registry, self.name, result, outcome in (SLOW_SUCCESS, SLOW_FAILURE), seconds)
        if self._events is not None:
            self._event("call", (outcome, seconds))

    def _next_delay(self, policy: Policy, components: _Components, attempt: int, previous: float, error: Exception,
                    deadline: Optional[float]) -> float:
        """After a failed attempt: the milliseconds to wait before the next one, or
        raises `error` (a rejection, a total timeout, no retry left, or no time left)."""
        if isinstance(error, GuardError) and (not isinstance(error, GuardTimeoutError) or error.kind == "total"):
            raise error
        if components.budget is not None:
            components.budget.record(False)
        classification = getattr(error, "_fusebox_classification", None)
        delay = self._retry_delay(policy, attempt, previous, error, classification, components.budget)
        if delay is None or (deadline is not None and time.monotonic() + delay / 1000 >= deadline):
            raise error
        self._metrics.retry(self.registry, self.name)
        self._event("retry", (attempt, delay / 1000, error))
        return delay

    def _retry_delay(self, policy: Policy, attempt: int, previous_ms: float, error: BaseException,
                     c: Optional[Classification], budget: Optional[RetryBudget]) -> Optional[float]:
        """Milliseconds before the next attempt, or None: no retry."""
        r = policy.retry
        if r is None or attempt >= r.max_attempts or isinstance(error, GuardError) and not isinstance(error, GuardTimeoutError):
            return None
        if c is None:
            c = self._classify(error)
        if c.code in r.non_retryable_errors:
            return None
        if not (c.code in r.retryable_errors or "anyFailure" in r.retry_on or (c.condition is not None and c.condition in r.retry_on)):
            return None
        if c.pushback_ms is not None and c.pushback_ms < 0:
            return None
        if budget is not None and not budget.allows_retry():
            return None
        delay = backoff_delay_ms(r, attempt, previous_ms)
        if r.honor_pushback and c.pushback_ms is not None and c.pushback_ms > delay:
            delay = float(c.pushback_ms)
        return delay

    def _fallback_value(self, policy: Optional[Policy], error: BaseException, cache_key, fallback):
        """(found, value) for a failed call."""
        trigger = error.trigger if isinstance(error, GuardError) else "failure"
        section = policy.fallback if policy is not None else None
        if section is not None and section.action and section.answers(trigger):
            found, value = False, None
            if section.action == "static":
                response = StaticResponse(section.content_type, section.body)
                found, value = True, (self.static_decoder(response) if self.static_decoder else response)
            elif section.action == "staleCache":
                cache = self._components.cache
                if cache is not None and cache_key is not None:
                    found, value = cache.stale(cache_key)
            elif section.action == "handler":
                handler = self._client._fallbacks.get(section.handler)
                if handler is not None:
                    found, value = True, _HandlerCall(handler, FallbackContext(self.name, error, trigger))
            if found:
                self._metrics.fallback(self.registry, self.name)
                return True, value
            self._state.log.warning("guard %s: policy %s's fallback (%s) gave no value; the call fails", self.name,
                                    policy.name, section.action)
        if fallback is not None:
            return True, _HandlerCall(fallback, FallbackContext(self.name, error, trigger))
        return False, None

    # MARK: the thread path

    def call(self, fn: Callable, *args, cache_key=None, priority: int = 0, fallback: Optional[Callable] = None, **kwargs):
        """Runs `fn(*args, **kwargs)` through the policy, in the calling thread."""
        policy, components = self._resolve()
        if policy is None:
            return fn(*args, **kwargs)
        try:
            if cache_key is not None and components.cache is not None:
                return self._cached_sync(policy, components, fn, args, kwargs, cache_key, priority)
            if policy.retry is None and not (policy.timeout and policy.timeout.total_ms):
                return self._attempt_sync(policy, components, fn, args, kwargs, priority, None)  # one attempt, no deadline
            return self._timed_sync(policy, components, fn, args, kwargs, priority)
        except Exception as error:
            found, value = self._fallback_value(policy, error, cache_key, fallback)
            if not found:
                raise
            if isinstance(value, _HandlerCall):
                return value.handler(value.context)
            return value

    def _cached_sync(self, policy, components, fn, args, kwargs, cache_key, priority):
        cache = components.cache
        if cache is None or cache_key is None:
            return self._timed_sync(policy, components, fn, args, kwargs, priority)
        kind, value = cache.lookup(cache_key)
        if kind == "fresh":
            return value
        if kind == "stale":
            with self._lock:
                start = cache_key not in cache.refreshing
                cache.refreshing.add(cache_key)
            if start:
                def refresh():
                    try:
                        cache.store(cache_key, self._timed_sync(policy, components, fn, args, kwargs, priority))
                    except Exception:  # noqa: BLE001 - the stale value keeps being served until it expires
                        pass
                    finally:
                        cache.refreshing.discard(cache_key)
                threading.Thread(target=refresh, name=f"fusebox-refresh-{self.name}", daemon=True).start()
            return value
        with self._lock:
            loading = cache.loading.get(cache_key)
            leader = loading is None
            if leader:
                loading = cache.loading[cache_key] = _Shared()
        if not leader:
            return loading.wait()
        try:
            result = self._timed_sync(policy, components, fn, args, kwargs, priority)
            cache.store(cache_key, result)
            loading.set(result, None)
            return result
        except BaseException as e:
            loading.set(None, e)
            raise
        finally:
            with self._lock:
                cache.loading.pop(cache_key, None)

    def _timed_sync(self, policy, components, fn, args, kwargs, priority):
        total = policy.timeout.total_ms if policy.timeout else 0
        deadline = time.monotonic() + total / 1000 if total else None
        attempt, previous = 0, 0.0
        while True:
            attempt += 1
            try:
                result = self._attempt_sync(policy, components, fn, args, kwargs, priority, deadline)
                if components.budget is not None:
                    components.budget.record(True)
                return result
            except Exception as e:  # noqa: BLE001 - a guard's own rejections are re-raised by _next_delay
                error = e
            delay = self._next_delay(policy, components, attempt, previous, error, deadline)
            previous = delay
            time.sleep(delay / 1000)

    def _enter_sync(self, policy: Policy, components: _Components, priority: int) -> "_Ticket":
        """Admission in the patterns' order: breaker (and a probe permit), rate limiter,
        bulkhead; waits block the thread. Raises the rejection."""
        decision, ticket, rejection = self._admit(policy)
        if decision == "reject":
            raise self._rejected(rejection)
        if decision == "permit":
            started = time.monotonic()
            answer = self._client._acquire_permit_sync(self._breaker, ticket.generation, self._permit_wait(policy))
            self._permitted(ticket, answer, started)
        wait_s = self._token(components, ticket)
        if wait_s:
            time.sleep(wait_s)
        if components.bulkhead is not None:
            self._admitted_by_bulkhead(components.bulkhead, components.bulkhead.acquire(priority)[0], ticket)
        return ticket

    async def _enter_async(self, policy: Policy, components: _Components, priority: int) -> "_Ticket":
        """`_enter_sync` for asyncio: the same steps, awaiting instead of blocking."""
        decision, ticket, rejection = self._admit(policy)
        if decision == "reject":
            raise self._rejected(rejection)
        if decision == "permit":
            started = time.monotonic()
            answer = await self._client._acquire_permit_async(self._breaker, ticket.generation, self._permit_wait(policy))
            self._permitted(ticket, answer, started)
        wait_s = self._token(components, ticket)
        if wait_s:
            await asyncio.sleep(wait_s)
        if components.bulkhead is not None:
            self._admitted_by_bulkhead(components.bulkhead, (await components.bulkhead.acquire_async(priority))[0], ticket)
        return ticket

    def _attempt_sync(self, policy, components, fn, args, kwargs, priority, deadline):
        ticket = self._enter_sync(policy, components, priority)
        try:
            limit, kind = self._limit(policy, ticket, deadline)
            begun, error = time.monotonic(), None
            try:
                return _run_with_limit(fn, args, kwargs, limit, kind, self.name, ticket, self._leave)
            except BaseException as e:
                error = e
                raise
            finally:
                self._finish(policy, ticket, error, time.monotonic() - begun)
        finally:
            self._leave(ticket)

    # MARK: the asyncio path

    async def run(self, fn: Callable, *args, cache_key=None, priority: int = 0, fallback: Optional[Callable] = None, **kwargs):
        """Awaits `fn(*args, **kwargs)` (a coroutine function) through the policy."""
        policy, components = self._resolve()
        if policy is None:
            return await fn(*args, **kwargs)
        try:
            if cache_key is not None and components.cache is not None:
                return await self._cached_async(policy, components, fn, args, kwargs, cache_key, priority)
            if policy.retry is None and not (policy.timeout and policy.timeout.total_ms):
                return await self._attempt_async(policy, components, fn, args, kwargs, priority, None)
            return await self._timed_async(policy, components, fn, args, kwargs, priority)
        except Exception as error:
            found, value = self._fallback_value(policy, error, cache_key, fallback)
            if not found:
                raise
            if isinstance(value, _HandlerCall):
                answer = value.handler(value.context)
                return await answer if inspect.isawaitable(answer) else answer
            return value

    async def _cached_async(self, policy, components, fn, args, kwargs, cache_key, priority):
        cache = components.cache
        if cache is None or cache_key is None:
            return await self._timed_async(policy, components, fn, args, kwargs, priority)
        kind, value = cache.lookup(cache_key)
        if kind == "fresh":
            return value
        if kind == "stale":
            if cache_key not in cache.refreshing:
                cache.refreshing.add(cache_key)

                async def refresh():
                    try:
                        cache.store(cache_key, await self._timed_async(policy, components, fn, args, kwargs, priority))
                    except Exception:  # noqa: BLE001
                        pass
                    finally:
                        cache.refreshing.discard(cache_key)
                task = asyncio.ensure_future(refresh())
                self._client._keep(task)
            return value
        loading = cache.loading.get(cache_key)
        if isinstance(loading, asyncio.Future) and loading.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(loading)
        future = asyncio.get_running_loop().create_future()
        cache.loading[cache_key] = future
        try:
            result = await self._timed_async(policy, components, fn, args, kwargs, priority)
            cache.store(cache_key, result)
            future.set_result(result)
            return result
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: waiters re-raise it, nobody else must be told
            raise
        finally:
            cache.loading.pop(cache_key, None)

    async def _timed_async(self, policy, components, fn, args, kwargs, priority):
        total = policy.timeout.total_ms if policy.timeout else 0
        deadline = time.monotonic() + total / 1000 if total else None
        attempt, previous = 0, 0.0
        while True:
            attempt += 1
            try:
                result = await self._attempt_async(policy, components, fn, args, kwargs, priority, deadline)
                if components.budget is not None:
                    components.budget.record(True)
                return result
            except Exception as e:  # noqa: BLE001 - a guard's own rejections are re-raised by _next_delay
                error = e
            delay = self._next_delay(policy, components, attempt, previous, error, deadline)
            previous = delay
            await asyncio.sleep(delay / 1000)

    async def _attempt_async(self, policy, components, fn, args, kwargs, priority, deadline):
        ticket = await self._enter_async(policy, components, priority)
        try:
            limit, kind = self._limit(policy, ticket, deadline)
            begun, error = time.monotonic(), None
            try:
                if limit is None:
                    return await fn(*args, **kwargs)
                try:
                    return await asyncio.wait_for(fn(*args, **kwargs), limit)
                except asyncio.TimeoutError:
                    if time.monotonic() - begun < limit:
                        raise  # the operation's own TimeoutError, before the limit: its failure, not the guard's timeout
                    raise GuardTimeoutError(f"{kind} timeout of {self.name} expired after {limit * 1000:.0f} ms",
                                            self.name, ticket.generation, kind) from None
            except BaseException as e:
                error = e
                raise
            finally:
                self._finish(policy, ticket, error, time.monotonic() - begun)
        finally:
            self._leave(ticket)

    # MARK: decorator and context managers

    def __call__(self, fn: Callable) -> Callable:
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def guarded_async(*args, **kwargs):
                return await self.run(fn, *args, **kwargs)
            return guarded_async

        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            return self.call(fn, *args, **kwargs)
        return guarded

    def __enter__(self):
        policy, components = self._resolve()
        stack = self._blocks.__dict__.setdefault("stack", [])
        if policy is None:
            stack.append(None)
            return self
        ticket = self._enter_sync(policy, components, 0)
        stack.append((policy, ticket, time.monotonic()))
        return self

    def __exit__(self, exc_type, exc, tb):
        entry = self._blocks.stack.pop()
        if entry is not None:
            self._leave_block(entry, exc)
        return False

    async def __aenter__(self):
        policy, components = self._resolve()
        stack = _async_blocks(self)
        if policy is None:
            stack.append(None)
            return self
        ticket = await self._enter_async(policy, components, 0)
        stack.append((policy, ticket, time.monotonic()))
        return self

    async def __aexit__(self, exc_type, exc, tb):
        entry = _async_blocks(self).pop()
        if entry is not None:
            self._leave_block(entry, exc)
        return False

    def _leave_block(self, entry, exc) -> None:
        """A block ended: its bulkhead slot (the one it took, whatever the policy says now) and its outcome."""
        policy, ticket, begun = entry
        self._leave(ticket)
        self._finish(policy, ticket, exc, time.monotonic() - begun)


@dataclass
class _Ticket:
    """One attempt's admission: the generation it runs under, its probe permit
    (fuseboxd's id, or _LOCAL_PERMIT), whether the local breaker admitted it, the
    time a permit's wait took, and the bulkhead it holds a slot of."""

    generation: int
    permit: Optional[int] = None
    local: bool = False
    permit_spent: float = 0.0
    bulkhead: Optional[Bulkhead] = None


class _HandlerCall:
    """A fallback answered by a handler (registered, or passed as `fallback=`), still to be called."""

    __slots__ = ("handler", "context")

    def __init__(self, handler, context):
        self.handler, self.context = handler, context


class _Shared:
    """The result of one cache load, for the threads that asked for the same key meanwhile."""

    def __init__(self):
        self._done = threading.Event()
        self._value = None
        self._error: Optional[BaseException] = None

    def set(self, value, error) -> None:
        self._value, self._error = value, error
        self._done.set()

    def wait(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


_ASYNC_BLOCKS: "Dict[Tuple[int, int], list]" = {}


def _async_blocks(guard: Guard) -> list:
    task = asyncio.current_task()
    key = (id(guard), id(task))
    stack = _ASYNC_BLOCKS.get(key)
    if stack is None:
        stack = _ASYNC_BLOCKS[key] = []
        if task is not None:
            task.add_done_callback(lambda _: _ASYNC_BLOCKS.pop(key, None))
    return stack


class _AttemptThreads:
    """Threads that run timed attempts of `call`, reused: an idle one takes the
    next attempt, else a new one starts (so an attempt never waits behind
    abandoned, still-running ones). At most 32 stay idle, each for 60 s."""

    IDLE_MAX = 32
    IDLE_SECONDS = 60.0

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: list = []

    def run(self, job) -> None:
        with self._lock:
            jobs = self._idle.pop() if self._idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(jobs,), name="fusebox-attempt", daemon=True).start()
        jobs.put(job)

    def _serve(self, jobs: "queue.SimpleQueue") -> None:
        while True:
            try:
                job = jobs.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if jobs in self._idle:  # nobody picked this thread meanwhile: it ends
                        self._idle.remove(jobs)
                        return
                continue  # picked just now: its job is on the way
            job()
            with self._lock:
                if len(self._idle) >= self.IDLE_MAX:
                    return
                self._idle.append(jobs)


_ATTEMPTS = _AttemptThreads()


def _run_with_limit(fn, args, kwargs, limit: Optional[float], kind: str, name: str, ticket: _Ticket, leave):
    """Runs `fn` in this thread, or, with a limit, in a helper thread that is
    abandoned (left to finish on its own) when the limit passes: Python cannot
    interrupt a thread, so the guard stops waiting instead. An abandoned thread
    keeps the ticket's bulkhead slot until it ends (`leave`), so a hung
    dependency cannot get more concurrent calls than the bulkhead allows."""
    if limit is None:
        return fn(*args, **kwargs)
    box: Dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e
        finally:
            with lock:
                done.set()
                abandoned = box.get("abandoned")
            if abandoned is not None:
                leave(abandoned)

    _ATTEMPTS.run(target)
    if not done.wait(limit):
        with lock:
            if not done.is_set():
                # The slot goes with the thread: the caller's own release finds none.
                box["abandoned"] = _Ticket(ticket.generation, bulkhead=ticket.bulkhead)
                ticket.bulkhead = None
        if "abandoned" in box:
            raise GuardTimeoutError(f"{kind} timeout of {name} expired after {limit * 1000:.0f} ms", name, ticket.generation, kind)
    if "error" in box:
        raise box["error"]
    return box["value"]
