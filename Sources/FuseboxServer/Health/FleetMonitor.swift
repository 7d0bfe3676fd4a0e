public import FuseboxAlerts
import FuseboxAuthority
import FuseboxCore
import Logging
import NIOConcurrencyHelpers

/// Watches the fleet's breakers and judges the fleet: the health report of
/// `FleetHealthService` and, where alert sinks are configured, the alert
/// rules. It follows the same watch hub as gRPC watchers, keeps what those
/// need beyond the current states (each breaker's recent trips, since when it
/// has not let calls through), looks again every second and at once on each
/// transition, and hands notifications to the dispatcher, which delivers them
/// off the event loops.
///
/// Replicated, every replica follows the breakers, but only the leader, which
/// holds the windows and the clients, evaluates alert rules and sends.
public final class FleetMonitor: Sendable {
    struct Sources: Sendable {
        var authority: any BreakerAuthority
        /// The coordinator deciding here (nil on a follower).
        var leading: @Sendable () -> BreakerCoordinator?
        var store: @Sendable () -> (available: Bool, problem: String)
        /// The cluster's replicas (asked every 5 s; etcd reads in replicated mode).
        var cluster: any ClusterStatusSource
        var clock: any FleetClock
        var answeredBy: String
    }

    private struct Tracked: Sendable {
        var state: BreakerState
        var notPassingSinceMs: Int64?
        var overrideUntilMs: Int64?
        var trips: [Int64] = []
        /// Trips since the monitor started.
        var tripCount = 0
    }

    private struct State: Sendable {
        var breakers: [BreakerKey: Tracked] = [:]
        var engine: AlertEngine
        var lastHealth: FleetHealthReport?
        var watchers: [UInt64: AsyncStream<FleetHealthReport>.Continuation] = [:]
        var nextWatcher: UInt64 = 0
        var replicas = (serving: 1, total: 1)
    }

    let sources: Sources
    public let dispatcher: AlertDispatcher?
    public let alerts: AlertsConfiguration
    private let state: NIOLockedValueBox<State>
    private let logger = Logger(label: "fusebox.health")
    /// How long trips are remembered: the longest flapping window of any rule, at least 10 minutes.
    private let tripMemoryMs: Int64

    init(sources: Sources, alerts: AlertsConfiguration) {
        self.sources = sources
        self.alerts = alerts
        self.dispatcher = alerts.enabled
            ? AlertDispatcher(sinks: alerts.sinks, server: sources.answeredBy, history: AlertHistory(capacity: alerts.historySize)) : nil
        let rules = alerts.enabled ? alerts.rules : []
        self.state = NIOLockedValueBox(State(engine: AlertEngine(rules: rules, sinks: alerts.sinks.map(\.name))))
        var memory = FleetHealthThresholds.flappingWindowMs
        for rule in rules { if case .flapping(_, let within) = rule.condition { memory = max(memory, within) } }
        self.tripMemoryMs = memory
    }

    /// Follows the breakers and evaluates until cancelled.
    func run() async {
        let transitions = Doorbell()
        await withTaskGroup(of: Void.self) { group in
            // The breakers' watch; followed again if the hub ends it (a replica
            // that lost etcd lets its watchers go), each time from a snapshot.
            group.addTask {
                while !Task.isCancelled {
                    let (events, continuation) = AsyncStream<BreakerWatchEvent>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
                    let id = self.sources.authority.watch(BreakerSelector(), sink: MonitorSink(continuation: continuation))
                    for await event in events {
                        self.apply(event)
                        if case .transition = event { transitions.ring() }
                    }
                    self.sources.authority.unwatch(id)
                    continuation.finish()
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            // Transitions ring for a look; a burst of them is looked at once,
            // at most every 50 ms, so a storm of trips costs a few looks, not one each.
            group.addTask {
                while await transitions.wait() {
                    self.evaluate()
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            group.addTask {
                var tick = 0
                while !Task.isCancelled {
                    if tick % 5 == 0 {
                        let report = await self.sources.cluster.clusterStatus()
                        let counts = (serving: report.replicas.filter(\.serving).count, total: max(report.replicas.count, 1))
                        self.state.withLockedValue { $0.replicas = counts }
                    }
                    tick += 1
                    try? await Task.sleep(for: .seconds(1))
                    self.evaluate()
                }
                transitions.close()
            }
            await group.waitForAll()
        }
        finishWatchers()
    }

    private func apply(_ event: BreakerWatchEvent) {
        let now = sources.clock.now().milliseconds
        state.withLockedValue { s in
            switch event {
            case .snapshot(let views):
                var next: [BreakerKey: Tracked] = [:]
                for v in views {
                    var t = s.breakers[v.key] ?? Tracked(state: v.status.state)
                    t.state = v.status.state
                    if Self.notPassing(v.status.state) {
                        t.notPassingSinceMs = t.notPassingSinceMs ?? v.status.since.milliseconds
                    } else {
                        t.notPassingSinceMs = nil
                    }
                    t.overrideUntilMs = Self.overrideUntil(v.status)
                    next[v.key] = t
                }
                s.breakers = next
            case .transition(let e):
                var t = s.breakers[e.key] ?? Tracked(state: e.transition.from)
                let to = e.transition.status.state
                if to == .open, e.transition.from != .open {
                    t.trips.append(e.transition.status.since.milliseconds)
                    t.tripCount += 1
                }
                if Self.notPassing(to) {
                    if !Self.notPassing(t.state) || t.notPassingSinceMs == nil { t.notPassingSinceMs = e.transition.status.since.milliseconds }
                } else {
                    t.notPassingSinceMs = nil
                }
                t.state = to
                t.overrideUntilMs = Self.overrideUntil(e.transition.status)
                t.trips.removeAll { now - $0 > tripMemoryMs }
                s.breakers[e.key] = t
            }
        }
    }

    private static func notPassing(_ state: BreakerState) -> Bool { state == .open || state == .halfOpen || state == .forcedOpen }

    private static func overrideUntil(_ status: BreakerStatus) -> Int64? {
        switch status.state {
        case .forcedOpen, .forcedClosed, .disabled, .shadow: return status.until?.milliseconds
        default: return nil
        }
    }

    /// What the monitor sees now, with the windows where this replica holds them.
    func observe() -> FleetObservation {
        let now = sources.clock.now().milliseconds
        let leading = sources.leading()
        let store = sources.store()
        let tracked = state.withLockedValue { s in
            for key in Array(s.breakers.keys) { s.breakers[key]?.trips.removeAll { now - $0 > tripMemoryMs } }
            return s.breakers
        }
        let windows = leading?.windowCounts() ?? [:]
        var breakers: [FleetObservation.Breaker] = []
        breakers.reserveCapacity(tracked.count)
        for (key, t) in tracked {
            var b = FleetObservation.Breaker(
                registry: key.registry, name: key.name, state: t.state, notPassingSinceMs: t.notPassingSinceMs, overrideUntilMs: t.overrideUntilMs,
                tripsAtMs: t.trips, tripCount: t.tripCount)
            if let counts = windows[key] {
                b.calls = Int(clamping: counts.calls)
                b.failures = Int(clamping: counts.failures)
            }
            breakers.append(b)
        }
        breakers.sort { ($0.registry, $0.name) < ($1.registry, $1.name) }
        return FleetObservation(
            atMs: now, breakers: breakers, localModeClients: leading?.localModeClients() ?? 0, storeAvailable: store.available,
            storeProblem: store.problem)
    }

    /// The health now, for `registry` ("" for all).
    func health(registry: String = "") -> FleetHealthReport {
        let replicas = state.withLockedValue { $0.replicas }
        return FleetHealthReport.evaluate(
            observe(), registry: registry, replicasServing: replicas.serving, replicas: replicas.total, answeredBy: sources.answeredBy)
    }

    /// Looks at the fleet: sends the alerts that fire or resolve, and tells
    /// health watchers when the health changed.
    ///
    /// One look at a time (the tick and the transitions both ask), so the
    /// engine sees observations in time order and notifications leave in the
    /// order it made them. Skipped when nobody would hear of it (no sinks, no
    /// health watchers). The leader evaluates every rule; another replica
    /// evaluates only `storeUnavailable` rules, about its own reach of etcd:
    /// when the quorum is lost no replica leads, and each one that lost it
    /// alerts (and resolves once it is back).
    func evaluate() {
        evaluation.withLock {
            let watching = state.withLockedValue { !$0.watchers.isEmpty }
            guard dispatcher != nil || watching else { return }
            let fleet = observe()
            let replicas = state.withLockedValue { $0.replicas }
            let report = FleetHealthReport.evaluate(
                fleet, registry: "", replicasServing: replicas.serving, replicas: replicas.total, answeredBy: sources.answeredBy)
            let leading = sources.leading() != nil
            let (notifications, watchers): ([AlertNotification], [AsyncStream<FleetHealthReport>.Continuation]) = state.withLockedValue { s in
                var n: [AlertNotification] = []
                if dispatcher != nil {
                    n = leading ? s.engine.observe(fleet) : s.engine.observe(fleet) { rule in
                        if case .storeUnavailable = rule.condition { return true } else { return false }
                    }
                }
                let changed = s.lastHealth.map { !$0.sameAs(report) } ?? true
                s.lastHealth = report
                return (n, changed ? Array(s.watchers.values) : [])
            }
            for n in notifications { dispatcher?.send(n) }
            for w in watchers { w.yield(report) }
        }
    }

    private let evaluation = NIOLock()

    /// The health now, then each time it changes, until the caller stops
    /// iterating. A slow reader gets the latest, not every one.
    func updates() -> AsyncStream<FleetHealthReport> {
        let (stream, continuation) = AsyncStream<FleetHealthReport>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = state.withLockedValue { s in
            s.nextWatcher += 1
            s.watchers[s.nextWatcher] = continuation
            return s.nextWatcher
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLockedValue { $0.watchers.removeValue(forKey: id) }
        }
        continuation.yield(health())
        return stream
    }

    /// Health watchers open.
    var watcherCount: Int { state.withLockedValue { $0.watchers.count } }

    private func finishWatchers() {
        let all = state.withLockedValue { s in
            defer { s.watchers = [:] }
            return Array(s.watchers.values)
        }
        for w in all { w.finish() }
    }

    /// Ends health watches and lets queued alerts go out (within `grace`).
    func shutdown(grace: Duration = .seconds(3)) async {
        finishWatchers()
        await dispatcher?.shutdown(grace: grace)
    }
}

/// The monitor's breaker watch: events go into its stream; it never falls behind
/// (the stream keeps the newest 10,000).
private final class MonitorSink: WatchSink, Sendable {
    let continuation: AsyncStream<BreakerWatchEvent>.Continuation

    init(continuation: AsyncStream<BreakerWatchEvent>.Continuation) { self.continuation = continuation }

    /// False when the buffer was full and `event` was dropped: the hub then
    /// sends a fresh snapshot once the monitor has caught up.
    func offer(_ event: BreakerWatchEvent) -> Bool {
        if case .dropped = continuation.yield(event) { return false }
        return true
    }

    var canAccept: Bool { true }

    /// The server's own: not a client's watch in `watcherCount` or `fusebox_watchers`.
    var countsAsWatcher: Bool { false }

    func finish() { continuation.finish() }
}
