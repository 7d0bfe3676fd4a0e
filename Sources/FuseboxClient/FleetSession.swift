import Atomics
import Foundation
import FuseboxCore
import FuseboxRPC
import Logging
import NIOConcurrencyHelpers
import NIOCore
public import ServiceLifecycle
import Tracing

/// The client's side of the fleet, as a swift-service-lifecycle `Service`:
/// the watches that push breaker states and policies (`BreakerWatch`,
/// `RegistryWatch`), the reporter that sends outcomes in batches
/// (`OutcomeReporter`), probe permits (`PermitRequester`), and the switch to
/// local breakers when fuseboxd has been out of reach longer than the
/// staleness bound (`LocalMode`).
///
/// Every background task of the SDK is a child of `run()`: the loops above,
/// and work a guard hands over that must outlive its call (a
/// stale-while-revalidate refresh). `run()` returns on graceful shutdown (or
/// `Fusebox.shutdown()`) after the last report, which says goodbye, and with
/// the connection closed.
///
/// ```swift
/// let fusebox = try await Fusebox.connect(configuration)
/// let group = ServiceGroup(services: [fusebox.session, myServer], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// Apps without a ServiceGroup call `Fusebox.start`, which runs the session
/// until `Fusebox.shutdown()`.
public final class FleetSession: Service, Sendable {
    let state: SessionState
    let client: RPCFailoverClient
    let reporter: OutcomeReporter
    let permits: PermitRequester
    let localMode: LocalMode
    /// Attempt and total timeouts and bulkhead queue limits of every guard, on one event loop.
    let deadlines: DeadlineTimer
    let fallbackHandlers = FallbackHandlers()
    let logger: Logger
    /// Where guards' spans go; nil when nothing records them.
    let tracer: (any Tracer)?

    private enum Lifecycle {
        case idle
        case running
        case ended
    }

    private struct Control {
        var lifecycle: Lifecycle = .idle
        var endWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let control = NIOLockedValueBox(Control())
    /// Work handed to `run()` to run as its children; finished to stop it.
    private let work: AsyncStream<@Sendable () async -> Void>
    private let workQueue: AsyncStream<@Sendable () async -> Void>.Continuation

    init(
        configuration: FuseboxConfiguration, client: RPCFailoverClient, eventLoop: any EventLoop, policies: PolicySnapshot, logger: Logger,
        incarnation: UInt64 = FleetSession.startIncarnation()
    ) {
        let state = SessionState(configuration: configuration, policies: policies, logger: logger, gauges: ClientGauges())
        self.state = state
        self.client = client
        self.logger = logger
        self.localMode = LocalMode(state: state)
        self.permits = PermitRequester(state: state, client: client)
        self.reporter = OutcomeReporter(state: state, client: client, localMode: localMode, incarnation: incarnation)
        self.deadlines = DeadlineTimer(eventLoop: eventLoop)
        let bootstrapped = InstrumentationSystem.tracer
        self.tracer = configuration.tracer ?? (bootstrapped is NoOpTracer ? nil : bootstrapped)
        (work, workQueue) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
        Self.live.wrappingIncrement(ordering: .relaxed)
    }

    deinit {
        Self.live.wrappingDecrement(ordering: .relaxed)
    }

    /// The incarnation of a process starting now: the time in microseconds
    /// since 1970. A restart takes far longer than a microsecond, so a
    /// restarted process picks a larger one, unless the wall clock was set
    /// back by more than the time the restart took; fuseboxd would then answer
    /// its batches as duplicates until the clock passes the old start time.
    static func startIncarnation(now: Date = Date()) -> UInt64 {
        UInt64(max(1, (now.timeIntervalSince1970 * 1_000_000).rounded()))
    }

    /// Sessions in memory in this process: back to what it was once ended
    /// sessions are released (a task still holding one would keep it).
    static var inMemory: Int { live.load(ordering: .relaxed) }
    private static let live = ManagedAtomic<Int>(0)
    /// Children of sessions' `run()` running now, in this process.
    static var tasksRunning: Int { children.load(ordering: .relaxed) }
    private static let children = ManagedAtomic<Int>(0)

    // MARK: Service

    /// Runs the watches, the reporter and handed-over work until graceful
    /// shutdown, cancellation or `Fusebox.shutdown()`; then sends the last
    /// report and closes the connection. A session runs once: a second call
    /// returns at once.
    public func run() async {
        let first = control.withLockedValue { c in
            defer { if c.lifecycle == .idle { c.lifecycle = .running } }
            return c.lifecycle == .idle
        }
        guard first else {
            logger.warning("FleetSession.run() called on a session that already ran; a session runs once")
            return
        }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Bool.self) { streaming in
                streaming.addTask { await Self.counted { await self.reporter.streamLoop() }; return true }
                await withDiscardingTaskGroup { group in
                    func child(_ body: @escaping @Sendable () async -> Void) {
                        group.addTask { await Self.counted(body) }
                    }
                    child { await self.reporter.reportLoop() }
                    child { await self.reporter.tickLoop() }
                    for registry in state.configuration.registries {
                        child { await BreakerWatch(registry: registry, state: self.state, client: self.client).run() }
                        child { await RegistryWatch(registry: registry, state: self.state, client: self.client).run() }
                    }
                    // Until stopped (the queue finished) or cancelled: run what guards hand over.
                    for await job in work { child(job) }
                    group.cancelAll()
                }
                // The open StreamOutcomes call ends with its response, so fuseboxd
                // acknowledges what it carried, within the report timeout.
                reporter.endStream()
                let timeout = state.configuration.reportTimeout
                streaming.addTask { await Self.counted { try? await Task.sleep(for: timeout) }; return false }
                _ = await streaming.next()
                streaming.cancelAll()
            }
        } onGracefulShutdown: {
            self.requestStop()
        }
        await end()
    }

    /// Runs `body`, counted in `tasksRunning`.
    private static func counted(_ body: @Sendable () async -> Void) async {
        children.wrappingIncrement(ordering: .relaxed)
        defer { children.wrappingDecrement(ordering: .relaxed) }
        await body()
    }

    /// Hands `job` to `run()` to run as its child; false (and not run) when
    /// the session is not running.
    func submit(_ job: @escaping @Sendable () async -> Void) -> Bool {
        guard control.withLockedValue({ $0.lifecycle == .running }) else { return false }
        if case .terminated = workQueue.yield(job) { return false }
        return true
    }

    /// Ends `run()` (its children are cancelled, then the last report goes out).
    func requestStop() {
        workQueue.finish()
    }

    /// Stops the session and waits until it has ended: the last report sent
    /// and the connection closed. A session that never ran ends here.
    func shutdown() async {
        requestStop()
        let neverRan = control.withLockedValue { c in
            defer { if c.lifecycle == .idle { c.lifecycle = .running } }
            return c.lifecycle == .idle
        }
        if neverRan {
            await end()
            return
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ended = control.withLockedValue { c in
                if c.lifecycle != .ended { c.endWaiters.append(continuation) }
                return c.lifecycle == .ended
            }
            if ended { continuation.resume() }
        }
    }

    private func end() async {
        await reporter.finish()
        state.releaseGuards()
        await client.close()
        let waiters = control.withLockedValue { c in
            c.lifecycle = .ended
            defer { c.endWaiters = [] }
            return c.endWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Guards

    func makeGuard(_ name: String, policy policyName: String, registry: String, classifier: ErrorClassifier = .standard) -> Guard {
        state.guardNamed(name, policy: policyName, registry: registry) { policy, breaker, mode in
            if mode == .local, let cb = policy.circuitBreaker { breaker.enterLocal(policy: cb, now: wallNow()) }
            return Guard(
                name: name, registry: registry, policyName: policyName, classifier: classifier,
                runtime: GuardRuntime(
                    policy: policy, registry: registry, name: name, breaker: breaker, previous: nil, now: wallNow(), timer: deadlines),
                session: self)
        }
    }

    var configuration: FuseboxConfiguration { state.configuration }
    var policies: PolicySnapshot { state.policies }
    var mode: ClientMode { state.mode }
    var incarnation: UInt64 { reporter.incarnation }
    /// How long the client's view of the fleet has not been confirmed by fuseboxd.
    var staleness: Duration { state.staleness }
}
