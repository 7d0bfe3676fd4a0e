"""What guards (on any thread) and the session (on its event loop) share:
policies, breakers, the mode, and the announcing of state changes."""
from __future__ import annotations

import threading
from typing import Dict, List, Optional, Tuple

from .breaker import (OPEN, BreakerStateChange, BreakerStatus, LocalBreaker, SharedBreaker, now_ms)
from .config import FuseboxConfig
from .metrics import Metrics
from .policy import PRESETS, Policy


# The Swift SDK's label values (BreakerState's raw values), so a mixed fleet's series aggregate.
METRIC_STATE = {"CLOSED": "closed", "OPEN": "open", "HALF_OPEN": "halfOpen", "FORCED_OPEN": "forcedOpen",
                "FORCED_CLOSED": "forcedClosed", "DISABLED": "disabled", "SHADOW": "shadow"}


class GuardEvent:
    """What a guard did: `kind` is `state_changed` (detail: the BreakerStateChange),
    `retry` (attempt, delay, error), `rejected` (error), `timeout` (kind) or `call`
    (outcome, latency)."""

    __slots__ = ("registry", "guard", "kind", "detail")

    def __init__(self, registry: str, guard: str, kind: str, detail):
        self.registry, self.guard, self.kind, self.detail = registry, guard, kind, detail

    def __repr__(self):
        return f"GuardEvent({self.registry}/{self.guard} {self.kind} {self.detail!r})"


class FleetState:
    def __init__(self, config: FuseboxConfig, metrics: Metrics):
        self.config = config
        self.metrics = metrics
        self.log = config.logger
        self.lock = threading.RLock()
        self.policies: Dict[Tuple[str, str], Policy] = {}
        self.versions: Dict[str, int] = {}
        self.source = "presets"
        self.breakers: Dict[Tuple[str, str], SharedBreaker] = {}
        self.mode = "fleet"
        self.wake_reporter = lambda: None  # set by the session

    # MARK: policies

    def set_registry(self, registry: str, policies: List[Policy], version: int) -> None:
        with self.lock:
            # One assignment: a guard reading meanwhile sees the old set or the new, never none.
            fresh = {k: v for k, v in self.policies.items() if k[0] != registry}
            fresh.update({(registry, p.name): p for p in policies})
            self.policies = fresh
            self.versions[registry] = version
        self._rebind(registry)

    def set_policy(self, registry: str, name: str, policy: Optional[Policy], version: int) -> None:
        with self.lock:
            fresh = dict(self.policies)
            if policy is None:
                fresh.pop((registry, name), None)
            else:
                fresh[(registry, name)] = policy
            self.policies = fresh
            self.versions[registry] = version
        self._rebind(registry)

    def registry_snapshot(self, registry: str):
        """What this client holds of `registry`, as the cache file stores it (a RegistrySnapshot)."""
        from .v1 import policy_pb2 as ppb
        with self.lock:
            policies = sorted((p for (reg, _), p in self.policies.items() if reg == registry), key=lambda p: p.name)
            version = self.versions.get(registry, 0)
        return ppb.RegistrySnapshot(name=registry, version=version,
                                    policies=[ppb.PolicyRecord(policy=p.proto) for p in policies])

    def policy(self, registry: str, name: str) -> Optional[Policy]:
        p = self.policies.get((registry, name))
        if p is None and name in PRESETS:
            p = self._preset(name)
        return p

    _presets: Dict[str, Policy] = {}

    def _preset(self, name: str) -> Policy:
        p = FleetState._presets.get(name)
        if p is None:
            p = FleetState._presets[name] = Policy.from_proto(PRESETS[name])
        return p

    def _rebind(self, registry: str) -> None:
        """Breakers follow their policy's breaker section as it changes."""
        with self.lock:
            for (reg, _), sb in self.breakers.items():
                if reg != registry:
                    continue
                p = self.policy(reg, sb.policy)
                settings = p.breaker if p else None
                if settings != sb.settings:
                    with sb.lock:
                        sb.settings = settings
                        if sb.local is not None and settings is not None:
                            sb.local.settings = settings

    # MARK: breakers

    def breaker(self, registry: str, name: str, policy: str) -> SharedBreaker:
        key = (registry, name)
        sb = self.breakers.get(key)
        if sb is not None:
            return sb
        with self.lock:
            sb = self.breakers.get(key)
            if sb is None:
                p = self.policy(registry, policy)
                sb = SharedBreaker(registry, name, policy, p.breaker if p else None)
                if self.mode == "local" and sb.settings is not None:
                    sb.local = LocalBreaker(sb.settings, sb.fleet, now_ms())
                self.breakers[key] = sb
            return sb

    def apply(self, registry: str, name: str, status: BreakerStatus, *, from_state: Optional[str] = None,
              reason: Optional[str] = None, clients=(), snapshot: bool = False) -> None:
        """Applies a state fuseboxd pushed: a transition only when its generation is
        newer than the one held; a snapshot always (it replaces a local breaker)."""
        sb = self.breakers.get((registry, name))
        if sb is None:
            return
        with sb.lock:
            if not snapshot and status.generation <= sb.fleet.generation:
                return
            before = sb.status().state
            sb.fleet = status
            if snapshot:
                sb.local = None
            if sb.tally.generation != status.generation:
                sb.tally.reset(status.generation)
            after = sb.status().state
        if from_state is not None or before != after:
            self.transitioned(sb, before if from_state is None else from_state, after, status.generation,
                              reason if reason is not None else status.reason, clients=clients)

    def open_below_quorum(self, registry: str, name: str, reason: str, open_ms: int) -> None:
        sb = self.breakers.get((registry, name))
        if sb is None or open_ms <= 0:
            return
        until = now_ms() + open_ms
        with sb.lock:
            was_open = sb.local_open_until_ms > now_ms()
            sb.local_open_until_ms = max(sb.local_open_until_ms, until) if was_open else until
            fleet = sb.fleet
        if not was_open:
            self.transitioned(sb, fleet.state, OPEN, fleet.generation, f"local open below quorum: {reason}", client_only=True)

    def end_local_opens(self) -> None:
        now = now_ms()
        for sb in list(self.breakers.values()):
            with sb.lock:
                if not sb.local_open_until_ms or sb.local_open_until_ms > now:
                    continue
                sb.local_open_until_ms = 0
                fleet = sb.fleet
            self.transitioned(sb, OPEN, fleet.state, fleet.generation, "local open below quorum ended; following the fleet",
                              client_only=True)

    def go_local(self, why: str) -> None:
        with self.lock:
            if self.mode == "local":
                return
            self.mode = "local"
            now = now_ms()
            for sb in self.breakers.values():
                with sb.lock:
                    if sb.settings is not None:
                        sb.local = LocalBreaker(sb.settings, sb.fleet, now)
        self.metrics.mode("local")
        self.log.warning("fuseboxd out of reach beyond the staleness bound: breakers run locally (%s)", why)

    def go_fleet(self) -> None:
        with self.lock:
            if self.mode == "fleet":
                return
            self.mode = "fleet"
        self.metrics.mode("fleet")
        self.log.info("fuseboxd reachable again: breakers follow the fleet")

    def tick_local(self) -> None:
        now = now_ms()
        for sb in list(self.breakers.values()):
            with sb.lock:
                change = sb.local.tick(now) if sb.local is not None else None
                generation = sb.local.generation if sb.local is not None else 0
            if change:
                self.transitioned(sb, change[0], change[1], generation, change[2])

    def record(self, sb: SharedBreaker, outcome: str, generation: int, permit: Optional[int], local: bool = False) -> None:
        """Counts an outcome: in local mode on the local breaker, else in the tally
        reported to fuseboxd. `local`: the call was admitted by the local breaker;
        if the fleet is back by now its outcome is dropped (its generation is the
        local breaker's, which fuseboxd never issued)."""
        change = None
        wake = False
        with sb.lock:
            if sb.local is not None:
                change = sb.local.record(outcome, permit is not None and local, now_ms())
                generation = sb.local.generation
            elif local:
                sb.tally.dropped += 1
            elif permit is not None and permit > 0:
                sb.tally.probes.append((permit, outcome))
                wake = True
            else:
                sb.tally.record(outcome, generation)
                # Wake the reporter once, when the tally reaches a batch; it drains everything then.
                wake = sb.tally.total == self.config.report_batch_size
        if change:
            self.transitioned(sb, change[0], change[1], generation, change[2])
        elif wake:
            self.wake_reporter()

    # MARK: announcing

    def transitioned(self, sb: SharedBreaker, from_state: str, to_state: str, generation: int, reason: str,
                     client_only: bool = False, clients=()) -> None:
        self.metrics.state_changed(sb.registry, sb.name, METRIC_STATE.get(from_state, from_state), METRIC_STATE.get(to_state, to_state))
        if client_only:
            self.log.info("%s (breaker=%s registry=%s generation=%d)", reason, sb.name, sb.registry, generation)
        else:
            self.log.info("breaker state changed: %s/%s %s -> %s generation=%d reason=%s", sb.registry, sb.name,
                          from_state, to_state, generation, reason)
        config = self.config
        if config.on_state_change is None and config.on_event is None:
            return
        change = BreakerStateChange(sb.registry, sb.name, from_state, to_state, generation, reason, client_only, tuple(clients))
        for handler, argument in ((config.on_state_change, change),
                                  (config.on_event, GuardEvent(sb.registry, sb.name, "state_changed", change))):
            if handler is None:
                continue
            try:
                handler(argument)
            except Exception:  # noqa: BLE001 - a broken handler must not stop the SDK
                self.log.exception("on_state_change/on_event handler raised")
