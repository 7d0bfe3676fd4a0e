public import FuseboxCore
import NIOConcurrencyHelpers

extension BreakerCoordinator {
    // MARK: Reports

    public func report(_ batch: OutcomeBatchReport) async -> ReportResult {
        let now = clock.now()
        var result = ReportResult()
        var waits: [(index: Int, ticket: UInt64)] = []
        state.withLockedValue { s in
            let admission = s.ledger.admit(
                client: batch.client, incarnation: batch.incarnation, sequence: batch.sequence, local: batch.local, at: now)
            if batch.final { s.ledger.farewell(client: batch.client, incarnation: batch.incarnation) }
            guard admission == .fresh else {
                result.duplicate = true
                for (i, b) in batch.breakers.enumerated() {
                    if let entry = s.entries[b.key], entry.exists { result.views[i] = view(b.key, entry) }
                }
                return
            }
            for (i, b) in batch.breakers.enumerated() {
                var report = b.report
                report.client = batch.client
                // A report may create its breaker: without a policy it is told to name one.
                switch apply(&s, b.key, createWith: b.policy ?? "", at: now, { machine in
                    let step = machine.report(report, at: now)
                    return (step, ())
                }) {
                case .failure(let error):
                    result.rejected.append((i, error))
                case .success(let applied):
                    if applied.step.stale { result.stale += 1 } else { result.accepted += 1 }
                    if let reason = applied.step.belowQuorum, let entry = s.entries[b.key] {
                        result.belowQuorum.append(BelowQuorumTrip(
                            key: b.key, reason: reason, openMs: entry.machine.policy.openDuration.baseMs,
                            generation: entry.visible.generation))
                    }
                    if let ticket = applied.ticket { waits.append((i, ticket)) }
                }
            }
        }
        // A transition (or the breaker's creation) is answered once it is stored.
        var failed: Set<Int> = []
        for (i, ticket) in waits {
            if case .failure(let error) = await outcome(of: ticket) {
                failed.insert(i)
                result.rejected.append((i, CoordinatorError(
                    .unavailable,
                    "the outcomes were counted, but the breaker's change could not be stored (\(error.message)); its previous state stays in force")))
            }
        }
        guard !result.duplicate else { return result }
        state.withLockedValue { s in
            for (i, b) in batch.breakers.enumerated() where !failed.contains(i) {
                if let entry = s.entries[b.key], entry.exists { result.views[i] = view(b.key, entry) }
            }
        }
        result.rejected.sort { $0.index < $1.index }
        return result
    }

    /// Reporters whose last batch said they run their breakers locally.
    public func localModeClients() -> Int {
        state.withLockedValue { $0.ledger.localModeClients }
    }

    /// The clients that report outcomes, most recently heard first (at most `limit`).
    public func clients(limit: Int = 10_000) -> [ReporterLedger.ClientView] {
        state.withLockedValue { $0.ledger.clients(limit: limit) }
    }

    /// Reporters heard from in the last 10 minutes but not in the last
    /// minute, and that did not say goodbye: clients that have probably lost
    /// the server and run their local breakers.
    public func silentReporters() -> Int {
        let now = clock.now()
        return state.withLockedValue { $0.ledger.silentReporters(at: now) }
    }

    // MARK: Permits

    /// Grants or denies a half-open probe permit (see `permit(_:)`).
    public func acquirePermit(_ key: BreakerKey) async throws(CoordinatorError) -> PermitAnswer {
        try await permit(key).get()
    }

    public func permit(_ key: BreakerKey) async -> Result<PermitAnswer, CoordinatorError> {
        let now = clock.now()
        let decided = state.withLockedValue { s -> Result<(PermitDecision, UInt64?), CoordinatorError> in
            guard let entry = s.entries[key], entry.exists else {
                return .failure(CoordinatorError(.notFound, "breaker \(key) does not exist"))
            }
            let applied = apply(&s, key, createWith: nil, at: now) { machine in
                let (decision, step) = machine.acquirePermit(at: now)
                return (step, decision)
            }
            switch applied {
            case .failure(let error):
                return .failure(error)
            case .success(let a):
                // Answer only from a stored generation: wait for what is queued for this breaker.
                var pending: UInt64?
                if let e = s.entries[key], e.pending > 0 { pending = e.lastTicket }
                return .success((a.value, pending))
            }
        }
        let decision: PermitDecision
        let ticket: UInt64?
        switch decided {
        case .failure(let error): return .failure(error)
        case .success(let value): (decision, ticket) = value
        }
        if let ticket, case .failure(let error) = await outcome(of: ticket) {
            return .failure(CoordinatorError.store(error))
        }
        let status = state.withLockedValue { $0.entries[key]?.visible }
        guard let status else { return .failure(CoordinatorError(.notFound, "breaker \(key) does not exist")) }
        // A grant under a generation that is not (or no longer) the visible one is void.
        if case .granted(let grant) = decision, grant.generation != status.generation {
            return .success(PermitAnswer(decision: .denied(PermitDenial(
                state: status.state, generation: status.generation, retryAfterMs: nil,
                reason: "the breaker changed while the permit was being granted")), status: status, at: clock.now()))
        }
        return .success(PermitAnswer(decision: decision, status: status, at: clock.now()))
    }

    // MARK: Operator actions

    public func setOverride(
        _ key: BreakerKey, _ kind: BreakerOverride?, durationMs: UInt32, reason: String, policy: String?, audit: AuditRecord
    ) async throws(CoordinatorError) -> AdminOutcome {
        try await operatorAction(key, createWith: policy ?? key.name, audit: audit) { machine, now in
            let until = durationMs > 0 ? now.adding(milliseconds: Int64(durationMs)) : nil
            return machine.setOverride(kind, until: until, reason: reason, at: now)
        }
    }

    public func reset(_ key: BreakerKey, reason: String, audit: AuditRecord) async throws(CoordinatorError) -> AdminOutcome {
        try await operatorAction(key, createWith: nil, audit: audit) { machine, now in machine.reset(reason: reason, at: now) }
    }

    /// Applies an operator's change once the breaker's queued changes are
    /// stored, stores it with its audit entry, and answers with both states.
    private func operatorAction(
        _ key: BreakerKey, createWith: String?, audit: AuditRecord,
        _ change: @escaping (inout BreakerStateMachine, Timestamp) -> BreakerStep
    ) async throws(CoordinatorError) -> AdminOutcome {
        // Undoing an action must not undo what was decided before it.
        for _ in 0..<100 {
            guard let ticket = state.withLockedValue({ s in s.entries[key].flatMap { $0.pending > 0 ? $0.lastTicket : nil } }) else { break }
            _ = await outcome(of: ticket)
        }
        let now = clock.now()
        let applied = state.withLockedValue { s -> Result<(BreakerView?, UInt64), CoordinatorError> in
            let policy = s.entries[key].flatMap { $0.exists ? $0.policy : nil }
            return apply(&s, key, createWith: createWith, at: now, purpose: .operatorAction([audit])) { machine in
                (change(&machine, now), ())
            }.flatMap { applied in
                guard let ticket = applied.ticket else {
                    return .failure(CoordinatorError(.failedPrecondition, "the action changed nothing"))
                }
                // "before" is the status the action acted on, as in its audit
                // entry: after what time changed first in the same step.
                guard let policy, let status = applied.actedOn else { return .success((nil, ticket)) }
                return .success((BreakerView(key: key, policy: policy, status: status), ticket))
            }
        }
        let (before, ticket) = try applied.get()
        let ids: [UInt64]
        switch await outcome(of: ticket) {
        case .success(let stored): ids = stored
        case .failure(let error): throw CoordinatorError.store(error)
        }
        let after = state.withLockedValue { s in s.entries[key].map { view(key, $0) } }
        guard let after else { throw CoordinatorError(.notFound, "breaker \(key) does not exist") }
        // The operator's entry is the last: an override that expired in the same step comes first.
        return AdminOutcome(before: before, after: after, auditID: ids.last ?? 0)
    }

    // MARK: Policies

    /// Follows a policy change: breakers bound to it adopt its breaker rule,
    /// and store it, so that they keep it if the policy is deleted later.
    /// A deleted policy, or one without a breaker section, leaves them on
    /// their last rule.
    public func policyChanged(registry: String, name: String, policy: Policy?) {
        guard let rule = policy?.circuitBreaker else { return }
        let now = clock.now()
        state.withLockedValue { s in
            let keys = s.entries.filter { $0.key.registry == registry && $0.value.policy == name && $0.value.machine.policy != rule }.map(\.key)
            for key in keys.sorted() {
                _ = apply(&s, key, createWith: nil, at: now, purpose: .storeRule) { machine in (machine.updatePolicy(rule, at: now), ()) }
            }
        }
    }

    // MARK: Reads

    public func views(_ selector: BreakerSelector) -> [BreakerView] {
        state.withLockedValue { s in
            s.entries.filter { $0.value.exists && selector.selects($0.key) }.sorted { $0.key < $1.key }.map { view($0.key, $0.value) }
        }
    }

    public func views(of keys: Set<BreakerKey>) -> [BreakerView] {
        state.withLockedValue { s in
            keys.sorted().compactMap { key in s.entries[key].flatMap { $0.exists ? view(key, $0) : nil } }
        }
    }

    public func detail(_ key: BreakerKey) -> BreakerDetailView? {
        let now = clock.now()
        return state.withLockedValue { s in
            guard var entry = s.entries.removeValue(forKey: key) else { return nil }
            defer { s.entries[key] = entry }
            guard entry.exists else { return nil }
            let window = entry.machine.windowSnapshot(at: now)
            let contributions = entry.machine.contributions.sorted { $0.key < $1.key }.map { client, counts in
                BreakerDetailView.Contribution(client: client, counts: counts, lastReportAt: s.ledger.lastReport(of: client))
            }
            return BreakerDetailView(
                view: view(key, entry), window: window, consecutiveFailures: entry.machine.currentConsecutiveFailures,
                contributions: contributions, outstandingPermits: entry.machine.permits.outstanding.count, trips: entry.machine.trips)
        }
    }

    /// Every stored breaker's window counts, in one pass under the lock: what
    /// the fleet monitor looks at every second (cheaper than `detail` per breaker).
    public func windowCounts() -> [BreakerKey: OutcomeCounts] {
        let now = clock.now()
        return state.withLockedValue { s in
            var counts: [BreakerKey: OutcomeCounts] = [:]
            counts.reserveCapacity(s.entries.count)
            for key in Array(s.entries.keys) where s.entries[key]?.exists == true {
                if let window = s.entries[key]?.machine.windowSnapshot(at: now) { counts[key] = window.counts }
            }
            return counts
        }
    }

    /// Breakers known (stored).
    public var breakerCount: Int { state.withLockedValue { s in s.entries.values.filter(\.exists).count } }

    /// Changes queued or being stored, not yet visible.
    public var pendingCommits: Int { state.withLockedValue { s in s.entries.values.reduce(0) { $0 + $1.pending } } }

    /// Whether a breaker's deadline has come and the timer has not acted on it yet.
    public var hasDueBreakers: Bool {
        let now = clock.now()
        return state.withLockedValue { s in s.timers.earliest.map { $0 <= now } ?? false }
    }

    /// True when no breaker is due and nothing waits to be stored: what a
    /// test that moves time by hand waits for. (One look under the lock: two
    /// separate ones could miss a step taken between them.)
    public var isSettled: Bool {
        let now = clock.now()
        return state.withLockedValue { s in
            (s.timers.earliest.map { $0 > now } ?? true) && s.queue.isEmpty && s.inFlight == 0
                && !s.entries.values.contains { $0.pending > 0 }
        }
    }

    /// Store transactions that made breaker changes durable, since start.
    public var commitCount: UInt64 { state.withLockedValue { $0.commits } }

    /// Why the store refused the last commit; nil when the last one succeeded
    /// (or none failed). The fleet health report and the store alert read it.
    public var storeProblem: String? { state.withLockedValue { $0.storeProblem } }

    // MARK: Watches

    public func watch(_ selector: BreakerSelector, sink: any WatchSink<BreakerWatchEvent>) -> UInt64 {
        hub.subscribe(sink, accepts: { event in
            if case .transition(let t) = event { return selector.selects(t.key) }
            return false
        }, snapshot: { [self] in .snapshot(views(selector)) })
    }

    public func unwatch(_ id: UInt64) {
        hub.unsubscribe(id)
    }

    /// Open watches.
    public var watcherCount: Int { hub.count }
}
