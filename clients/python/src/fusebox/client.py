"""`Fusebox` (threads) and `AsyncFusebox` (asyncio): one per process, handing out guards."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Callable, Dict, Optional, Set, Tuple

from .breaker import SharedBreaker
from .classify import standard
from .config import FuseboxConfig
from .guard import Guard, _Components
from .metrics import default_metrics
from .session import Session
from .state import FleetState


class _Base:
    def __init__(self, config: FuseboxConfig):
        endpoints, ca, cert, key = config.checked()
        self._config = config
        self._state = FleetState(config, default_metrics(config.metrics))
        self._session = Session(self._state, endpoints, ca, cert, key)
        self._guards: Dict[Tuple[str, str, str], Guard] = {}
        self._fallbacks: Dict[str, Callable] = {}
        self._components: Dict[Tuple[str, str, str], _Components] = {}
        self._tasks: Set[asyncio.Future] = set()
        self._closed = False

    @property
    def client_id(self) -> str:
        return self._session.client_id

    @property
    def incarnation(self) -> int:
        """This run of the process: its start time in microseconds since 1970; it scopes the report sequence."""
        return self._session.incarnation

    @property
    def policy_source(self) -> str:
        """Where the startup policies came from: `server`, `cache` or `presets`."""
        return self._state.source

    @property
    def mode(self) -> str:
        """`fleet` (following fuseboxd) or `local` (fuseboxd out of reach beyond the staleness bound)."""
        return self._state.mode

    def guard(self, name: str, policy: str, registry: str = "default", classifier=standard, static_decoder=None) -> Guard:
        """The guard `name` (its breaker is shared with every process guarding that name) running policy `policy`."""
        key = (registry, name, policy)
        g = self._guards.get(key)
        if g is None or g.classifier is not classifier or g.static_decoder is not static_decoder:
            g = Guard(self, name, policy, registry, classifier, static_decoder)
            self._guards.setdefault(key, g)
        return g

    def _components_for(self, registry: str, name: str, policy: str) -> _Components:
        return self._components.setdefault((registry, name, policy), _Components())

    def register_fallback(self, name: str, handler: Callable) -> None:
        """The handler a policy's `fallback.action.handler: NAME` calls with a FallbackContext
        (a coroutine function for guards used with `run`)."""
        self._fallbacks[name] = handler

    def _keep(self, task: asyncio.Future) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Fusebox(_Base):
    """The SDK for threaded code. `Fusebox.start(config)` fetches the policies
    (fuseboxd, else the cache, else the presets; it never fails for want of
    the server) and runs the fleet session on a background thread."""

    def __init__(self, config: FuseboxConfig):
        super().__init__(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fusebox-session", daemon=True)
        self._running: Optional[concurrent.futures.Future] = None

    @classmethod
    def start(cls, config: FuseboxConfig) -> "Fusebox":
        fusebox = cls(config)
        fusebox._thread.start()
        try:
            fusebox._submit(fusebox._connect()).result()
        except BaseException:
            fusebox._stop_loop()
            raise
        fusebox._running = fusebox._submit(fusebox._session.run())
        return fusebox

    async def _connect(self) -> None:
        self._session.bind()
        await self._session.load_policies()

    def _submit(self, coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _acquire_permit_sync(self, sb: SharedBreaker, generation: int, wait: float):
        future = self._submit(self._session.acquire_permit(sb, generation, wait))
        try:
            return future.result(wait + 0.05)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return False, 0, None, f"fuseboxd did not answer the permit request within {wait * 1000:.0f} ms"

    async def _acquire_permit_async(self, sb: SharedBreaker, generation: int, wait: float):
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._submit(self._session.acquire_permit(sb, generation, wait))), wait + 0.05)
        except asyncio.TimeoutError:
            return False, 0, None, f"fuseboxd did not answer the permit request within {wait * 1000:.0f} ms"

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stops the session after a last report that says goodbye (within `timeout`
        seconds), and closes the connection."""
        if self._closed:
            return
        self._closed = True
        try:
            self._submit(self._session.shutdown(budget=max(0.5, timeout - 1.0))).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            self._state.log.warning("fusebox: shutdown did not finish within %.1f s", timeout)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> "Fusebox":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


class AsyncFusebox(_Base):
    """The SDK for asyncio code: the session runs as tasks of the loop that
    called `await AsyncFusebox.start(config)`; use its guards with `await
    guard.run(...)` or `async with guard:` on that loop."""

    def __init__(self, config: FuseboxConfig):
        super().__init__(config)
        self._run_task: Optional[asyncio.Task] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @classmethod
    async def start(cls, config: FuseboxConfig) -> "AsyncFusebox":
        fusebox = cls(config)
        fusebox._loop = asyncio.get_running_loop()
        fusebox._session.bind()
        await fusebox._session.load_policies()
        fusebox._run_task = asyncio.create_task(fusebox._session.run())
        return fusebox

    async def _acquire_permit_async(self, sb: SharedBreaker, generation: int, wait: float):
        coroutine = self._session.acquire_permit(sb, generation, wait)
        try:
            if asyncio.get_running_loop() is self._loop:
                return await asyncio.wait_for(coroutine, wait + 0.05)
            return await asyncio.wait_for(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop)), wait + 0.05)
        except asyncio.TimeoutError:
            return False, 0, None, f"fuseboxd did not answer the permit request within {wait * 1000:.0f} ms"

    def _acquire_permit_sync(self, sb: SharedBreaker, generation: int, wait: float):
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("a guard of an AsyncFusebox used with call() or `with` on its own event loop: use run() or `async with`")
        future = asyncio.run_coroutine_threadsafe(self._session.acquire_permit(sb, generation, wait), self._loop)
        try:
            return future.result(wait + 0.05)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return False, 0, None, f"fuseboxd did not answer the permit request within {wait * 1000:.0f} ms"

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._session.shutdown()
        if self._run_task is not None:
            await asyncio.gather(self._run_task, return_exceptions=True)

    async def __aenter__(self) -> "AsyncFusebox":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.shutdown()
