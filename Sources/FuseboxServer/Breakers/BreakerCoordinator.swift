import FuseboxAPI
public import FuseboxCore
public import FuseboxRPC
public import FuseboxWire
import Logging
import NIOConcurrencyHelpers

/// The fleet's circuit breakers. Reports from every client merge here; the
/// server's own timer moves OPEN breakers to HALF_OPEN; every transition is
/// stored (so generations never repeat) before it is published to watchers.
/// Mutations pass one at a time, so the store and the watchers see each
/// breaker's generations in order.
public final class BreakerCoordinator: Sendable {
    struct Key: Hashable, Comparable, Sendable {
        var registry: String
        var name: String
        static func < (a: Key, b: Key) -> Bool { (a.registry, a.name) < (b.registry, b.name) }

        init(registry: String, name: String) {
            self.registry = registry
            self.name = name
        }

        /// The breaker a request names; an empty registry means "default".
        init(_ ref: Fusebox_V1_BreakerRef) {
            self.init(registry: ref.registry.isEmpty ? "default" : ref.registry, name: ref.name)
        }
    }

    struct Entry: Sendable {
        var machine: BreakerStateMachine
        var policy: String
    }

    private struct Watcher {
        var registry: String
        var prefix: String
        /// Events are queued straight onto the watcher's stream, in gate order.
        var writer: RPCStreamWriter<Fusebox_V1_BreakerEvent>
        /// Finished at shutdown, which ends the watch.
        var done: AsyncStream<Void>.Continuation
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var watchers: [UInt64: Watcher] = [:]
        var nextWatcher: UInt64 = 0
        var lastSequence: [String: UInt64] = [:]
        var lastReport: [String: Timestamp] = [:]
    }

    private let store: any FuseboxStore
    private let registry: RegistryService
    private let clock: @Sendable () -> Timestamp
    private let gate = SerialGate()
    private let state = NIOLockedValueBox(State())
    private let logger = Logger(label: "fusebox.breakers")

    /// Restores every stored breaker and follows policy changes in `registry`.
    public init(store: any FuseboxStore, registry: RegistryService, clock: @escaping @Sendable () -> Timestamp) async throws(StoreError) {
        self.store = store
        self.registry = registry
        self.clock = clock
        let now = clock()
        for stored in try await store.loadBreakers() {
            let policy = registry.policy(registry: stored.registry, name: stored.policy)?.circuitBreaker ?? CircuitBreakerPolicy()
            let machine = BreakerStateMachine(
                policy: policy, restoring: stored.status, override: stored.override,
                overrideUntil: stored.overrideUntilMs.map(Timestamp.init(milliseconds:)), at: now)
            state.withLockedValue { $0.entries[Key(registry: stored.registry, name: stored.name)] = Entry(machine: machine, policy: stored.policy) }
        }
        registry.addListener { [weak self] change in await self?.policyChanged(change) }
    }

    // MARK: Mutations

    /// One breaker change of a batch: the breaker, the policy to create it
    /// with if it does not exist, and the change.
    struct Mutation<T: Sendable>: Sendable {
        var key: Key
        var createWith: String?
        var apply: @Sendable (inout BreakerStateMachine, Timestamp) -> (BreakerStep, T)
    }

    /// Applies `mutate` to one breaker (creating it with `policy` if needed),
    /// stores any transitions, then publishes them.
    private func mutate<T: Sendable>(
        _ key: Key, createWith policyName: String?, _ mutate: @escaping @Sendable (inout BreakerStateMachine, Timestamp) -> (BreakerStep, T)
    ) async throws(RPCError) -> (T, BreakerStatus, String) {
        let results = await mutateAll([Mutation(key: key, createWith: policyName, apply: mutate)])
        guard let first = results.first else { throw RPCError(.internal, "no result") }
        return try first.get()
    }

    /// Applies every mutation in one pass of the gate: all under one lock
    /// acquisition, then the breakers that were created or changed state are
    /// stored (only those: counting outcomes writes nothing to disk), then
    /// transitions are published, in order.
    private func mutateAll<T: Sendable>(_ mutations: [Mutation<T>]) async -> [Result<(T, BreakerStatus, String), RPCError>] {
        await gate.run {
            let now = clock()
            // `stored` is made only for breakers that were created or changed
            // state: a report that just counts outcomes builds no record.
            typealias Applied = (step: BreakerStep, value: T, key: Key, status: BreakerStatus, policy: String, stored: StoredBreaker?)
            let outcomes: [Result<Applied, RPCError>] = state.withLockedValue { s in
                mutations.map { m -> Result<Applied, RPCError> in
                    var entry: Entry
                    var created = false
                    // Taken out of the dictionary so the machine is mutated in place: a
                    // copy left behind would make every report copy the whole window.
                    if let existing = s.entries.removeValue(forKey: m.key) {
                        entry = existing
                    } else {
                        guard let name = m.createWith, !name.isEmpty else {
                            return .failure(RPCError(.notFound, "breaker \(m.key.registry)/\(m.key.name) does not exist; name a policy to create it with"))
                        }
                        guard let policy = registry.policy(registry: m.key.registry, name: name) else {
                            return .failure(RPCError(.notFound, "policy \"\(name)\" does not exist in registry \"\(m.key.registry)\""))
                        }
                        guard let cb = policy.circuitBreaker else {
                            return .failure(RPCError(.failedPrecondition, "policy \"\(name)\" has no circuitBreaker section"))
                        }
                        entry = Entry(machine: BreakerStateMachine(policy: cb, at: now), policy: name)
                        created = true
                    }
                    let (step, value) = m.apply(&entry.machine, now)
                    let status = entry.machine.status
                    var stored: StoredBreaker?
                    if created || !step.transitions.isEmpty {
                        let override = entry.machine.activeOverride
                        stored = StoredBreaker(
                            registry: m.key.registry, name: m.key.name, policy: entry.policy, status: status,
                            override: override?.kind, overrideUntilMs: override?.until?.milliseconds)
                    }
                    let policy = entry.policy
                    s.entries[m.key] = entry
                    return .success((step, value, m.key, status, policy, stored))
                }
            }
            var results: [Result<(T, BreakerStatus, String), RPCError>] = []
            for outcome in outcomes {
                switch outcome {
                case .failure(let error):
                    results.append(.failure(error))
                case .success(let applied):
                    if let stored = applied.stored {
                        do throws(StoreError) {
                            try await store.saveBreaker(stored)
                        } catch {
                            results.append(.failure(WireConversions.status(error)))
                            continue
                        }
                    }
                    publish(applied.step.transitions, key: applied.key, policy: applied.policy)
                    results.append(.success((applied.value, applied.status, applied.policy)))
                }
            }
            return results
        }
    }

    private func publish(_ transitions: [BreakerTransition], key: Key, policy: String) {
        guard !transitions.isEmpty else { return }
        let watchers = state.withLockedValue { s in
            s.watchers.values.filter { ($0.registry.isEmpty || $0.registry == key.registry) && key.name.hasPrefix($0.prefix) }.map(\.writer)
        }
        for transition in transitions {
            ServerMetrics.transition(registry: key.registry, breaker: key.name, to: transition.status.state)
            logger.info("breaker transition", metadata: [
                "registry": "\(key.registry)", "breaker": "\(key.name)", "policy": "\(policy)",
                "from": "\(transition.from.displayName)", "to": "\(transition.status.state.displayName)",
                "generation": "\(transition.status.generation.value)", "reason": "\(transition.status.reason)",
                "clients": "\(transition.contributingClients.joined(separator: ","))",
            ])
            var event = Fusebox_V1_BreakerEvent()
            event.event = .transition(Self.wire(transition, key: key, policy: policy))
            // Encoded and framed once; every watcher's stream shares the buffer.
            // Called under the gate, so each stream gets its events in order.
            guard let bytes = try? event.encode() else { continue }
            let frame = RPCFrame(bytes)
            for watcher in watchers { watcher.enqueue(frame) }
        }
    }

    /// Merges one batch of outcomes. With `states` false the response leaves
    /// out the breakers' states (a stream of batches answers with them once,
    /// at its end, from `statuses(of:)`).
    public func report(_ batch: Fusebox_V1_OutcomeBatch, states: Bool = true) async -> Fusebox_V1_ReportOutcomesResponse {
        var response = Fusebox_V1_ReportOutcomesResponse()
        let reportedAt = clock()
        let duplicate = state.withLockedValue { s -> Bool in
            if !batch.clientId.isEmpty { s.lastReport[batch.clientId] = reportedAt }
            guard batch.sequence > 0 else { return false }
            if let last = s.lastSequence[batch.clientId], last >= batch.sequence { return true }
            s.lastSequence[batch.clientId] = batch.sequence
            return false
        }
        var mutations: [Mutation<Bool>] = []
        var indices: [Int] = []
        for (i, entry) in batch.breakers.enumerated() {
            guard let ref = entry.breaker, !ref.name.isEmpty else {
                response.rejected.append(Self.violation("breakers[\(i)].breaker", "required"))
                continue
            }
            let key = Key(ref)
            ServerMetrics.report(BreakerMapping.counts(entry.counts))
            let report = OutcomeReport(
                client: batch.clientId.isEmpty ? nil : batch.clientId, generation: BreakerGeneration(entry.generation),
                counts: duplicate ? OutcomeCounts() : BreakerMapping.counts(entry.counts),
                trailingConsecutiveFailures: Int(entry.trailingConsecutiveFailures),
                probes: duplicate ? [] : entry.probes.map { ProbeResult(permitID: $0.permitId, outcome: BreakerMapping.outcome($0.outcome)) })
            mutations.append(Mutation(key: key, createWith: entry.policy.isEmpty ? nil : entry.policy) { machine, now in
                let step = machine.report(report, at: now)
                return (step, step.stale)
            })
            indices.append(i)
        }
        for (i, result) in zip(indices, await mutateAll(mutations)) {
            switch result {
            case .success(let (stale, status, policy)):
                if stale { response.stale += 1 } else { response.accepted += 1 }
                guard states, let ref = batch.breakers[i].breaker else { continue }
                response.states.append(Self.wire(status, key: Key(ref), policy: policy))
            case .failure(let error):
                response.rejected.append(Self.violation("breakers[\(i)]", error.message))
            }
        }
        if response.stale + UInt32(response.rejected.count) > 0 {
            ServerMetrics.rejected(Int(response.stale) + response.rejected.count)
        }
        return response
    }

    /// Reporters heard from in the last 10 minutes but not in the last
    /// minute: clients that have probably lost the server and run their local
    /// breakers (fail-static). Forgotten after 10 minutes.
    public func silentReporters() -> Int {
        let now = clock()
        return state.withLockedValue { s in
            s.lastReport = s.lastReport.filter { now.milliseconds(since: $0.value) < 600_000 }
            return s.lastReport.values.filter { now.milliseconds(since: $0) > 60_000 }.count
        }
    }

    /// Grants or denies a half-open probe permit.
    public func acquirePermit(_ request: Fusebox_V1_AcquirePermitRequest) async throws(RPCError) -> Fusebox_V1_AcquirePermitResponse {
        guard let ref = request.breaker else { throw RPCError(.invalidArgument, "breaker: required") }
        let key = Key(ref)
        let (decision, status, _) = try await mutate(key, createWith: nil) { machine, now in
            let decision = machine.acquirePermit(at: now)
            return (BreakerStep(), decision)
        }
        var response = Fusebox_V1_AcquirePermitResponse()
        response.generation = status.generation.value
        response.state = WireConversions.state(status.state)
        switch decision {
        case .granted(let grant):
            response.granted = true
            response.permitId = grant.id
            response.expiresInMs = UInt32(clamping: max(0, grant.expiresAt.milliseconds(since: clock())))
        case .denied(let denial):
            response.retryAfterMs = UInt32(clamping: denial.retryAfterMs ?? 0)
            response.reason = denial.reason
        }
        return response
    }

    /// Sets or lifts an override; returns the status before and after.
    public func setOverride(
        _ key: (registry: String, name: String), _ kind: BreakerOverride?, durationMs: UInt32, reason: String, policy: String?
    ) async throws(RPCError) -> (before: BreakerStatus?, after: BreakerStatus) {
        let k = Key(registry: key.registry, name: key.name)
        let before = state.withLockedValue { $0.entries[k]?.machine.status }
        let (_, after, _) = try await mutate(k, createWith: policy ?? key.name) { machine, now in
            let until = durationMs > 0 ? now.adding(milliseconds: Int64(durationMs)) : nil
            return (machine.setOverride(kind, until: until, reason: reason, at: now), ())
        }
        return (before, after)
    }

    /// Lifts overrides, clears the window, closes.
    public func reset(_ key: (registry: String, name: String), reason: String) async throws(RPCError) -> (before: BreakerStatus?, after: BreakerStatus) {
        let k = Key(registry: key.registry, name: key.name)
        let before = state.withLockedValue { $0.entries[k]?.machine.status }
        let (_, after, _) = try await mutate(k, createWith: nil) { machine, now in (machine.reset(reason: reason, at: now), ()) }
        return (before, after)
    }

    /// Applies what time changes (OPEN → HALF_OPEN, permit expiry, override
    /// expiry) to every breaker that is due.
    public func advanceTimers() async {
        let now = clock()
        let due = state.withLockedValue { s in s.entries.filter { ($0.value.machine.nextDeadline ?? .init(milliseconds: .max)) <= now }.map(\.key) }
        for key in due.sorted() {
            _ = try? await mutate(key, createWith: nil) { machine, now in (machine.advance(to: now), ()) }
        }
    }

    /// Runs the server's breaker timer until cancelled. Ticks every 20 ms.
    public func runTimers() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
            await advanceTimers()
        }
    }

    private func policyChanged(_ change: PolicyChangeRecord) async {
        guard let cb = change.after?.circuitBreaker else { return }
        let keys = state.withLockedValue { s in s.entries.filter { $0.key.registry == change.registry && $0.value.policy == change.name }.map(\.key) }
        for key in keys {
            _ = try? await mutate(key, createWith: nil) { machine, now in (machine.updatePolicy(cb, at: now), ()) }
        }
    }

    // MARK: Reads

    /// A breaker's full detail.
    public func detail(_ registry: String, _ name: String) -> Fusebox_V1_BreakerDetail? {
        let now = clock()
        return state.withLockedValue { s in
            let key = Key(registry: registry, name: name)
            guard var entry = s.entries.removeValue(forKey: key) else { return nil }
            let snapshot = entry.machine.windowSnapshot(at: now)
            s.entries[key] = entry
            var detail = Fusebox_V1_BreakerDetail()
            detail.status = Self.wire(entry.machine.status, key: key, policy: entry.policy)
            var window = Fusebox_V1_WindowStats()
            window.counts = BreakerMapping.wire(snapshot.counts)
            window.calls = snapshot.counts.calls
            window.failureRatePercent = snapshot.failureRate
            window.slowCallRatePercent = snapshot.slowCallRate
            window.consecutiveFailures = UInt32(clamping: entry.machine.currentConsecutiveFailures)
            window.failingClients = UInt32(clamping: snapshot.failingClients)
            detail.window = window
            detail.contributions = entry.machine.contributions.sorted { $0.key < $1.key }.map { client, counts in
                var c = Fusebox_V1_ClientContribution()
                c.clientId = client
                c.counts = BreakerMapping.wire(counts)
                return c
            }
            detail.outstandingPermits = UInt32(entry.machine.permits.outstanding.count)
            detail.trips = UInt32(clamping: entry.machine.trips)
            return detail
        }
    }

    /// Statuses of the selected breakers, sorted by registry then name.
    public func statuses(registry: String, prefix: String) -> [Fusebox_V1_BreakerStatus] {
        state.withLockedValue { s in
            s.entries.filter { (registry.isEmpty || $0.key.registry == registry) && $0.key.name.hasPrefix(prefix) }
                .sorted { $0.key < $1.key }
                .map { Self.wire($0.value.machine.status, key: $0.key, policy: $0.value.policy) }
        }
    }

    /// Statuses of the named breakers that exist, sorted by registry then name.
    func statuses(of keys: Set<Key>) -> [Fusebox_V1_BreakerStatus] {
        state.withLockedValue { s in
            keys.sorted().compactMap { key in s.entries[key].map { Self.wire($0.machine.status, key: key, policy: $0.policy) } }
        }
    }

    /// Streams a snapshot of the selected breakers, then every transition.
    ///
    /// No task runs per watcher while it waits: transitions are queued onto its
    /// stream by whoever publishes them. The watch ends when the stream closes
    /// (the call is cancelled) or at shutdown.
    public func watch(registry: String, prefix: String, writer: RPCStreamWriter<Fusebox_V1_BreakerEvent>) async throws {
        let (done, finish) = AsyncStream<Void>.makeStream()
        // Registered under the gate, so no transition falls between the snapshot and the stream.
        let id: UInt64 = await gate.run {
            state.withLockedValue { s in
                s.nextWatcher += 1
                s.watchers[s.nextWatcher] = Watcher(registry: registry, prefix: prefix, writer: writer, done: finish)
                var snapshot = Fusebox_V1_BreakerSnapshot()
                snapshot.breakers = s.entries.filter { (registry.isEmpty || $0.key.registry == registry) && $0.key.name.hasPrefix(prefix) }
                    .sorted { $0.key < $1.key }.map { Self.wire($0.value.machine.status, key: $0.key, policy: $0.value.policy) }
                var event = Fusebox_V1_BreakerEvent()
                event.event = .snapshot(snapshot)
                if let bytes = try? event.encode() { writer.enqueue(RPCFrame(bytes)) }
                return s.nextWatcher
            }
        }
        defer { _ = state.withLockedValue { $0.watchers.removeValue(forKey: id) } }
        for await _ in done {}
    }

    /// Number of open watch streams.
    public var watcherCount: Int { state.withLockedValue { $0.watchers.count } }

    /// Ends every watch (server shutdown).
    public func shutdown() {
        let watchers = state.withLockedValue { s in
            defer { s.watchers = [:] }
            return s.watchers.values.map(\.done)
        }
        for watcher in watchers { watcher.finish() }
    }

    // MARK: Wire

    static func wire(_ status: BreakerStatus, key: Key, policy: String) -> Fusebox_V1_BreakerStatus {
        var w = Fusebox_V1_BreakerStatus()
        w.breaker = WireConversions.ref(key.registry, key.name)
        w.policy = policy
        w.state = WireConversions.state(status.state)
        w.evaluatedState = WireConversions.state(status.evaluatedState)
        w.generation = status.generation.value
        w.sinceMs = status.since.milliseconds
        w.untilMs = status.until?.milliseconds ?? 0
        w.reason = status.reason
        return w
    }

    static func wire(_ t: BreakerTransition, key: Key, policy: String) -> Fusebox_V1_BreakerTransition {
        var w = Fusebox_V1_BreakerTransition()
        w.status = wire(t.status, key: key, policy: policy)
        w.fromState = WireConversions.state(t.from)
        w.reason = t.status.reason
        w.contributingClients = t.contributingClients
        w.atMs = t.status.since.milliseconds
        return w
    }

    static func violation(_ field: String, _ message: String) -> Fusebox_V1_FieldViolation {
        var v = Fusebox_V1_FieldViolation()
        v.field = field
        v.description = message
        return v
    }
}
