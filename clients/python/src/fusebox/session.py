"""The fleet session: the connection to fuseboxd (failing over between
endpoints), the startup fetch, the breaker and registry watches, the outcome
reporter, probe permits and local mode. Everything here runs on one asyncio
event loop with grpc.aio; guards reach it from any thread."""
from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

import grpc

from .breaker import OUTCOME_PB, STATE_NAMES, BreakerStatus, SharedBreaker
from .policy import Policy
from .state import FleetState
from .v1 import breaker_pb2 as bpb
from .v1 import breaker_pb2_grpc as bgrpc
from .v1 import common_pb2 as cpb
from .v1 import policy_pb2 as ppb
from .v1 import registry_pb2 as rpb
from .v1 import registry_pb2_grpc as rgrpc

ROTATE_BATCHES = 1_000
ROTATE_SECONDS = 5.0


class Session:
    def __init__(self, state: FleetState, endpoints: List[Tuple[str, int]], ca: bytes, cert: bytes, key: bytes):
        self.state = state
        self.config = state.config
        self.log = state.log
        self.client_id = self.config.effective_client_id()
        self.incarnation = time.time_ns() // 1_000
        self.sequence = 0
        self.endpoints = endpoints
        self.current = 0
        self.credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        self.channels: Dict[int, grpc.aio.Channel] = {}
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.stopping: Optional[asyncio.Event] = None
        self.wake: Optional[asyncio.Event] = None
        self.open_watches = 0
        self.unconfirmed_since: Optional[float] = time.monotonic()  # None while a breaker watch is open
        self.tasks: List[asyncio.Task] = []
        self.stream: Optional[_OutcomeStream] = None
        self.last_local_batch = 0.0
        self.stream_failures = 0
        self.pending: Deque[Tuple[bpb.OutcomeBatch, bool]] = deque()  # numbered batches waiting for a stream
        self.say_fleet = False
        self.side_tasks: set = set()

    # MARK: connection

    def bind(self) -> None:
        """Binds the session to the running loop (call on it)."""
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        loop = self.loop

        def wake_reporter():
            try:
                loop.call_soon_threadsafe(self.wake.set)
            except RuntimeError:
                pass

        self.state.wake_reporter = wake_reporter

    def channel(self) -> grpc.aio.Channel:
        index = self.current
        ch = self.channels.get(index)
        if ch is None:
            host, port = self.endpoints[index]
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            options = [
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2_000),
                ("grpc.enable_retries", 0),
            ]
            if self.config.keepalive_interval:
                options += [
                    ("grpc.keepalive_time_ms", int(self.config.keepalive_interval * 1000)),
                    ("grpc.keepalive_timeout_ms", int(self.config.keepalive_timeout * 1000)),
                    ("grpc.keepalive_permit_without_calls", 0),
                    ("grpc.http2.max_pings_without_data", 0),
                ]
            if self.config.server_name:
                options.append(("grpc.ssl_target_name_override", self.config.server_name))
            ch = self.channels[index] = grpc.aio.secure_channel(target, self.credentials, options=options)
        return ch

    def endpoint_name(self) -> str:
        host, port = self.endpoints[self.current]
        return f"{host}:{port}"

    def failed(self, error: BaseException, index: int, force: bool = False) -> None:
        """A call to endpoint `index` failed: after UNAVAILABLE (or, with `force`, any
        failure) the next call goes to the next endpoint. Only once per failure of the
        current endpoint: the watches and the reporter failing together move it once."""
        if not isinstance(error, grpc.aio.AioRpcError) or len(self.endpoints) < 2 or index != self.current:
            return
        if force or error.code() == grpc.StatusCode.UNAVAILABLE:
            failed = self.endpoint_name()
            self.current = (self.current + 1) % len(self.endpoints)
            self.log.info("fuseboxd %s failed (%s); next calls go to %s", failed, error.code().name, self.endpoint_name())

    def breakers_stub(self) -> bgrpc.BreakerServiceStub:
        return bgrpc.BreakerServiceStub(self.channel())

    def registry_stub(self) -> rgrpc.RegistryServiceStub:
        return rgrpc.RegistryServiceStub(self.channel())

    # MARK: startup: server, cache, presets

    async def load_policies(self) -> str:
        deadline = time.monotonic() + self.config.startup_timeout
        snapshots: List[Tuple[str, ppb.RegistrySnapshot]] = []
        error: Optional[BaseException] = None
        # Each endpoint gets a share of the time, so one that neither answers nor refuses leaves time for the others.
        share = max(0.5, min(self.config.startup_timeout, 5.0) / len(self.endpoints))
        for name in self.config.registries:
            got = None
            for _ in range(len(self.endpoints)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                index = self.current
                try:
                    call = self.registry_stub().GetRegistry(rpb.GetRegistryRequest(registry=name),
                                                          timeout=min(remaining, share), wait_for_ready=True)
                    got = await call
                    error = None
                    break
                except grpc.aio.AioRpcError as e:
                    if e.code() == grpc.StatusCode.NOT_FOUND:  # a registry nobody wrote to yet: empty
                        got, error = ppb.RegistrySnapshot(name=name), None
                        break
                    error = e
                    self.failed(e, index, force=True)
                    if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        break
            if got is None:
                break
            snapshots.append((name, got))
        if error is None and len(snapshots) == len(self.config.registries):
            for name, snap in snapshots:
                self.state.set_registry(name, [Policy.from_proto(r.policy) for r in snap.policies], snap.version)
                await self.save_cache(name)
            return self.settle("server")
        self.log.warning("fuseboxd not reachable at startup (%s); trying the cache", _describe(error))
        cached = self.read_cache()
        if cached is not None:
            for name, snap in cached:
                self.state.set_registry(name, [Policy.from_proto(r.policy) for r in snap.policies], snap.version)
            return self.settle("cache")
        return self.settle("presets")

    def settle(self, source: str) -> str:
        self.state.source = source
        self.state.metrics.policy_source(source)
        self.state.metrics.mode("fleet")
        self.log.info("policies loaded source=%s", source)
        return source

    def cache_file(self, registry: str) -> str:
        return os.path.join(self.config.cache_dir, f"{registry}.registry.pb")

    async def save_cache(self, registry: str) -> None:
        """Writes what this client holds of `registry` to its cache file (off the loop: it fsyncs)."""
        snapshot = self.state.registry_snapshot(registry)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.write_cache, registry, snapshot)
        except OSError as e:
            self.log.warning("cannot write the policy cache for %s: %s", registry, e)

    def write_cache(self, registry: str, snapshot: ppb.RegistrySnapshot) -> None:
        os.makedirs(self.config.cache_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.config.cache_dir, prefix=".registry-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(snapshot.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.cache_file(registry))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def read_cache(self) -> Optional[List[Tuple[str, ppb.RegistrySnapshot]]]:
        out = []
        for name in self.config.registries:
            try:
                with open(self.cache_file(name), "rb") as f:
                    snap = ppb.RegistrySnapshot.FromString(f.read())
            except (OSError, Exception) as e:  # noqa: BLE001 - a missing or corrupt cache means: presets
                self.log.warning("policy cache for %s unusable: %s", name, e)
                return None
            out.append((name, snap))  # the file's own name field may be empty (the Swift SDK's): the file name decides
        return out

    # MARK: running

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.watch_breakers(r)) for r in self.config.registries]
        tasks += [asyncio.create_task(self.watch_registry(r)) for r in self.config.registries]
        tasks += [asyncio.create_task(self.report_loop()), asyncio.create_task(self.tick_loop())]
        self.tasks = tasks
        await self.stopping.wait()

    async def backoff(self, failures: int) -> bool:
        """Waits the reconnect delay (full jitter); False when the session stops meanwhile."""
        cap = min(self.config.reconnect_backoff_max, self.config.reconnect_backoff_base * 2 ** min(failures, 30))
        try:
            await asyncio.wait_for(self.stopping.wait(), random.uniform(0, cap))
            return False
        except asyncio.TimeoutError:
            return True

    async def watch_breakers(self, registry: str) -> None:
        failures = 0
        while not self.stopping.is_set():
            opened = False
            index = self.current
            try:
                call = self.breakers_stub().WatchBreakers(bpb.WatchBreakersRequest(registry=registry))
                async for event in call:
                    if event.HasField("snapshot"):
                        if not opened:
                            opened = True
                            self.open_watches += 1
                            self.unconfirmed_since = None
                            self.state.metrics.staleness(0)
                        failures = 0
                        self.apply_snapshot(registry, event.snapshot)
                    elif event.HasField("transition"):
                        t = event.transition
                        self.state.apply(t.status.breaker.registry or registry, t.status.breaker.name,
                                         BreakerStatus.from_proto(t.status), from_state=STATE_NAMES.get(t.from_state, "CLOSED"),
                                         reason=t.reason, clients=tuple(t.contributing_clients))
                self.log.info("breaker watch on %s ended", self.endpoint_name())
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as e:
                self.log.info("breaker watch on %s failed: %s", self.endpoint_name(), _describe(e))
                self.failed(e, index)
            except Exception:  # noqa: BLE001 - a bug or a broken handler must not end the watch for good
                self.log.exception("breaker watch failed; reconnecting")
            finally:
                if opened:
                    self.open_watches -= 1
                    if self.open_watches == 0:
                        self.unconfirmed_since = time.monotonic()
            failures += 1
            if not await self.backoff(failures):
                return

    def apply_snapshot(self, registry: str, snapshot: bpb.BreakerSnapshot) -> None:
        held = {s.breaker.name: s for s in snapshot.breakers if (s.breaker.registry or registry) == registry}
        if self.state.mode == "local":
            self.say_fleet = True  # the next report says FLEET, outcomes or not, so fuseboxd stops counting this client local
        self.state.go_fleet()
        for (reg, name), sb in list(self.state.breakers.items()):
            if reg != registry:
                continue
            status = held.get(name)
            self.state.apply(reg, name, BreakerStatus.from_proto(status) if status is not None else BreakerStatus(),
                             snapshot=True)

    async def watch_registry(self, registry: str) -> None:
        failures = 0
        seen: Optional[int] = None  # the first watch of a run asks for a snapshot
        while not self.stopping.is_set():
            index = self.current
            try:
                call = self.registry_stub().WatchRegistry(rpb.WatchRegistryRequest(registry=registry, from_version=seen or 0))
                async for event in call:
                    failures = 0
                    if event.HasField("snapshot"):
                        snap = event.snapshot
                        self.state.set_registry(registry, [Policy.from_proto(r.policy) for r in snap.policies], snap.version)
                        seen = snap.version
                        await self.save_cache(registry)
                    elif event.HasField("change"):
                        c = event.change
                        policy = Policy.from_proto(c.after) if c.HasField("after") else None
                        self.state.set_policy(registry, c.policy_name, policy, c.version)
                        seen = c.version
                        await self.save_cache(registry)
                        self.log.info("policy %s/%s %s at version %d", registry, c.policy_name,
                                      "deleted" if policy is None else "updated", c.version)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as e:
                self.log.debug("registry watch failed: %s", _describe(e))
                self.failed(e, index)
            except Exception:  # noqa: BLE001
                self.log.exception("registry watch failed; reconnecting")
            failures += 1
            if not await self.backoff(failures):
                return

    async def tick_loop(self) -> None:
        interval = self.config.report_interval
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), interval)
                return
            except asyncio.TimeoutError:
                pass
            try:
                since = self.unconfirmed_since
                stale = 0.0 if since is None else time.monotonic() - since
                self.state.metrics.staleness(stale)
                if since is not None and stale >= self.config.staleness_bound:
                    self.state.go_local(f"no breaker watch open for {stale:.1f} s")
                self.state.tick_local()
                self.state.end_local_opens()
            except Exception:  # noqa: BLE001 - the next tick tries again
                self.log.exception("local-mode tick failed")

    # MARK: reporting

    def drain(self) -> List[bpb.BreakerOutcomes]:
        entries = []
        for sb in list(self.state.breakers.values()):
            with sb.lock:
                if sb.local is not None or sb.tally.empty():
                    continue
                generation, counts, trailing, probes = sb.tally.drain()
            entry = bpb.BreakerOutcomes(
                breaker=cpb.BreakerRef(registry=sb.registry, name=sb.name), policy=sb.policy, generation=generation,
                counts=bpb.OutcomeCounts(**counts), trailing_consecutive_failures=min(trailing, 2**32 - 1))
            for permit, outcome in probes:
                entry.probes.add(permit_id=permit, outcome=OUTCOME_PB[outcome])
            entries.append(entry)
        return entries

    def batch(self, entries, final: bool = False) -> bpb.OutcomeBatch:
        self.sequence += 1
        mode = bpb.CLIENT_MODE_LOCAL if self.state.mode == "local" else bpb.CLIENT_MODE_FLEET
        return bpb.OutcomeBatch(client_id=self.client_id, sequence=self.sequence, incarnation=self.incarnation,
                                breakers=entries, final=final, mode=mode)

    async def report_loop(self) -> None:
        interval = self.config.report_interval
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.wake.wait(), interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            if self.stopping.is_set():
                return
            try:
                self.report_once()
            except Exception:  # noqa: BLE001 - the next interval tries again
                self.log.exception("reporting failed")

    def report_once(self) -> None:
        """Moves the tallies into a numbered batch and the batches onto the one
        StreamOutcomes call; opens the next call only once the last has answered."""
        now = time.monotonic()
        if self.state.mode == "local":
            if self.stream is not None:
                self.stream.end()
            if now - self.last_local_batch >= 1.0:  # say LOCAL, once a second, when fuseboxd can be reached at all
                self.last_local_batch = now
                self.keep(asyncio.ensure_future(self.unary_report(self.batch([]), timeout=0.5, quiet=True)))
            return
        entries = self.drain()
        if entries or self.say_fleet:
            self.say_fleet = False
            failures = any(
                e.counts.failure or e.counts.slow_failure
                or any(p.outcome in (bpb.OUTCOME_FAILURE, bpb.OUTCOME_SLOW_FAILURE) for p in e.probes)
                for e in entries)
            self.pending.append((self.batch(entries), failures))
        stream = self.stream
        if stream is not None and stream.finished_all:
            stream = self.stream = None
        if stream is None and self.pending:
            stream = self.stream = _OutcomeStream(self)
        if stream is not None and stream.accepting:
            while self.pending:
                batch, failures = self.pending.popleft()
                stream.send(batch, failures)
            if stream.due(now):
                stream.end()

    def requeue(self, batches: List[bpb.OutcomeBatch]) -> None:
        """A failed call's batches go back to the head of the queue, with their sequence
        numbers (a server that counted one answers its repeat as a duplicate); at most 64."""
        for batch in reversed(batches):
            self.pending.appendleft((batch, True))
        while len(self.pending) > 64:
            dropped, _ = self.pending.pop()
            self.log.warning("outcome batch %d dropped: 64 batches wait for fuseboxd", dropped.sequence)

    def keep(self, task: asyncio.Future) -> None:
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    def answered(self, response: bpb.ReportOutcomesResponse) -> None:
        registry = self.config.registries[0]
        for s in response.states:
            self.state.apply(s.breaker.registry or registry, s.breaker.name, BreakerStatus.from_proto(s))
        for trip in response.below_quorum:
            self.state.open_below_quorum(trip.breaker.registry or registry, trip.breaker.name, trip.reason, trip.open_ms)
        for v in response.rejected:
            self.log.warning("fuseboxd rejected a reported entry: %s: %s", v.field, v.description)
        if response.duplicate:
            self.log.debug("fuseboxd answered a report as a duplicate")

    async def unary_report(self, batch: bpb.OutcomeBatch, timeout: float, quiet: bool = False) -> bool:
        for _ in range(len(self.endpoints)):
            index = self.current
            try:
                response = await self.breakers_stub().ReportOutcomes(batch, timeout=timeout)
                self.answered(response)
                return True
            except grpc.aio.AioRpcError as e:
                self.failed(e, index)
                (self.log.debug if quiet else self.log.warning)("report failed: %s", _describe(e))
                # A repeat carries the same client, incarnation and sequence: a server that counted it answers duplicate.
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    return False
        return False

    # MARK: permits

    async def acquire_permit(self, sb: SharedBreaker, generation: int, wait: float) -> Tuple[bool, int, Optional[float], str]:
        """(granted, permit id, retry after seconds, reason), asked with the guard's own wait as
        the call's deadline (a grant nobody waits for would hold a permit until it expires).
        Never repeated on another endpoint: the server may have granted it."""
        request = bpb.AcquirePermitRequest(breaker=cpb.BreakerRef(registry=sb.registry, name=sb.name),
                                           client_id=self.client_id, generation=generation)
        index = self.current
        try:
            r = await self.breakers_stub().AcquirePermit(request, timeout=wait)
        except grpc.aio.AioRpcError as e:
            self.failed(e, index)
            return False, 0, None, f"fuseboxd could not be asked for a probe permit: {_describe(e)}"
        if r.granted:
            return True, r.permit_id, None, ""
        if r.generation > generation:  # the breaker moved on: take its newer state now
            self.state.apply(sb.registry, sb.name, BreakerStatus(STATE_NAMES.get(r.state, "CLOSED"), r.generation,
                                                                   reason=r.reason))
        return False, 0, (r.retry_after_ms / 1000 if r.retry_after_ms else None), r.reason

    # MARK: shutdown

    async def shutdown(self, budget: float = 8.0) -> None:
        """Stops the loops, then says goodbye within `budget` seconds: what the stream did
        not carry and what was counted since go as unary reports, in order, the last `final`."""
        if self.stopping is None or self.stopping.is_set():
            return
        deadline = time.monotonic() + budget
        self.stopping.set()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.stream is not None:
            self.stream.end()
            await self.stream.finished(timeout=max(0.1, min(2.0, (deadline - time.monotonic()) / 2)))
            self.stream = None
        if self.state.mode == "fleet":
            batches = [b for b, _ in self.pending]
            self.pending.clear()
            entries = self.drain()
            batches.append(self.batch(entries, final=True))
            for batch in batches:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.log.warning("goodbye cut short: %d batches not sent", len(batches))
                    break
                await self.unary_report(batch, timeout=min(2.0, remaining), quiet=True)
        for t in list(self.side_tasks):
            t.cancel()
        for ch in self.channels.values():
            await ch.close()
        self.channels.clear()


class _OutcomeStream:
    """One StreamOutcomes call: batches go out as they come; it ends after
    1,000 batches or 5 s, or 2 report intervals (at least 250 ms) after a batch
    that carried failures, so a trip below quorum comes back soon. If the call
    fails, the batches it carried go back to the session's queue."""

    def __init__(self, session: Session):
        self.session = session
        self.queue: asyncio.Queue = asyncio.Queue()
        self.started = time.monotonic()
        self.carried: List[bpb.OutcomeBatch] = []
        self.end_by: Optional[float] = None
        self.accepting = True
        self.finished_all = False
        self.index = session.current
        self.task = asyncio.ensure_future(self._run())

    async def _requests(self):
        while True:
            batch = await self.queue.get()
            if batch is None:
                return
            yield batch

    async def _run(self) -> None:
        s = self.session
        try:
            response = await s.breakers_stub().StreamOutcomes(self._requests())
            s.stream_failures = 0
            s.answered(response)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as e:
            s.failed(e, self.index)
            s.stream_failures += 1
            s.requeue(self.carried)
            # While fuseboxd is down every report interval tries again: say it once, then quietly.
            (s.log.warning if s.stream_failures == 1 else s.log.debug)(
                "outcome stream to %s failed (%d in a row; its %d batches wait to be sent again): %s",
                s.endpoint_name(), s.stream_failures, len(self.carried), _describe(e))
        except Exception:  # noqa: BLE001
            s.requeue(self.carried)
            s.log.exception("outcome stream failed")
        finally:
            self.accepting = False
            self.finished_all = True
            s.wake.set()  # what waits in the queue goes on the next call at once

    def send(self, batch: bpb.OutcomeBatch, failures: bool) -> None:
        self.carried.append(batch)
        self.queue.put_nowait(batch)
        if failures and self.end_by is None:
            self.end_by = time.monotonic() + max(2 * self.session.config.report_interval, 0.25)

    def due(self, now: float) -> bool:
        return (len(self.carried) >= ROTATE_BATCHES or now - self.started >= ROTATE_SECONDS
                or (self.end_by is not None and now >= self.end_by))

    def end(self) -> None:
        if self.accepting:
            self.accepting = False
            self.queue.put_nowait(None)

    async def finished(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self.task.cancel()
        except Exception:  # noqa: BLE001 - the stream's own failure was logged
            pass


def _describe(error: Optional[BaseException]) -> str:
    if error is None:
        return "no answer"
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error)
