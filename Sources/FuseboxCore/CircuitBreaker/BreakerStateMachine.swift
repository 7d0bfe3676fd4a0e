/// One circuit breaker's logic, as a value: the fleet's breaker in the server
/// and the local breaker in a client are both this type.
///
/// It does no I/O and reads no clock. Events are `mutating` methods that take
/// the current time and return a `BreakerStep` with the transitions they
/// caused. Time-driven changes (OPEN → HALF_OPEN, permit expiry, an override
/// lifting) happen in `advance(to:)`, which every other event calls first and
/// whose transitions it returns; the owner schedules a timer for
/// `nextDeadline` and calls it then. Nothing transitions silently: every
/// transition is in the step of the event that caused it, and increments the
/// generation by one.
///
/// Probe permits belong to the generation they were granted under: every
/// transition voids the outstanding ones, and only results of permits granted
/// under the current generation count.
public struct BreakerStateMachine: Sendable {
    /// The rule-driven state, under any override.
    private enum Evaluated: Sendable, Hashable {
        case closed
        case open(until: Timestamp)
        case halfOpen
    }

    /// The policy in force.
    public private(set) var policy: CircuitBreakerPolicy
    /// The current status.
    public private(set) var status: BreakerStatus
    /// Trips since creation or reset.
    public private(set) var trips = 0
    /// Half-open permits of the current generation.
    public private(set) var permits: HalfOpenPermits

    private var evaluated: Evaluated = .closed
    private var override: (kind: BreakerOverride, until: Timestamp?)?
    private var window: SlidingWindow
    private var consecutiveFailures = 0
    private var reopenings = 0
    private var random: SplitMix64
    /// A transition restoring owes: published by `restoreStep()` or by the next event.
    private var pendingRestore: (reason: String, at: Timestamp)?
    /// Restored in HALF_OPEN: permits granted before the restore may still be
    /// out (their probes running) until this time, so none are granted before it.
    private var grantsFrom: Timestamp?

    /// The reason of the transition that restoring a HALF_OPEN breaker takes.
    public static let restartReason = "fuseboxd restarted; probe permits granted before the restart are void"

    /// A CLOSED breaker. `generation` continues a persisted count (0 for a new breaker).
    public init(
        policy: CircuitBreakerPolicy, generation: BreakerGeneration = BreakerGeneration(0),
        at now: Timestamp, random: SplitMix64 = SplitMix64()
    ) {
        self.policy = policy
        self.window = SlidingWindow(shape: policy.window)
        self.random = random
        self.permits = HalfOpenPermits(generation: generation)
        self.status = BreakerStatus(
            state: .closed, evaluatedState: .closed, generation: generation, since: now, reason: "created")
    }

    /// A breaker continuing from a persisted status (after a restart): same
    /// generation, same override. An OPEN breaker stays OPEN until its time.
    ///
    /// A HALF_OPEN breaker stays HALF_OPEN, but the permits granted before the
    /// restart are void: nobody knows which are outstanding, and a new permit
    /// must not reuse a pre-restart id. So restoring owes one transition to a
    /// new HALF_OPEN generation, with `restartReason` (not "open period
    /// ended", which would be untrue). The restoring init cannot return it, so
    /// it is pending: the owner takes it with `restoreStep()` right after init
    /// and stores and publishes it like any other step. If the owner does not,
    /// the next event (any method, including `advance(to:)`, which
    /// `nextDeadline` asks for at once) returns it first, so it is never silent.
    /// Under an override no permit can have been granted in the persisted
    /// generation, so nothing is owed.
    ///
    /// The void permits' probes may still be running: for `holdPermits`
    /// (default: the policy's `halfOpen.maxWaitMs`, the longest a permit is
    /// out) no new permit is granted, so the probes reaching the dependency
    /// never exceed `permittedCalls` across a restart or a failover.
    public init(
        policy: CircuitBreakerPolicy, restoring persisted: BreakerStatus, override: BreakerOverride?,
        overrideUntil: Timestamp?, at now: Timestamp, random: SplitMix64 = SplitMix64(),
        restartReason: String = BreakerStateMachine.restartReason, holdPermits: Int64? = nil
    ) {
        self.init(policy: policy, generation: persisted.generation, at: now, random: random)
        switch persisted.evaluatedState {
        case .open: evaluated = .open(until: persisted.until ?? now)
        case .halfOpen: evaluated = .halfOpen
        default: evaluated = .closed
        }
        self.override = override.map { ($0, overrideUntil) }
        status = persisted
        if persisted.state == .halfOpen {
            pendingRestore = (restartReason, now)
            let hold = holdPermits ?? policy.halfOpen.maxWaitMs
            if hold > 0 { grantsFrom = now.adding(milliseconds: hold) }
        }
    }

    // MARK: Queries

    /// The override in force and when it lifts, if any.
    public var activeOverride: (kind: BreakerOverride, until: Timestamp?)? { override }

    /// The run of consecutive failures counted so far.
    public var currentConsecutiveFailures: Int { consecutiveFailures }

    /// The window's totals at `now`.
    public mutating func windowSnapshot(at now: Timestamp) -> WindowSnapshot {
        window.snapshot(at: now)
    }

    /// Each client's outcomes in the window.
    public var contributions: [String: OutcomeCounts] { window.contributions }

    /// When the owner must call `advance(to:)` next, if ever. Advancing to an
    /// earlier time changes nothing; advancing to it takes at least one transition.
    public var nextDeadline: Timestamp? {
        var deadlines: [Timestamp] = []
        if let pending = pendingRestore { deadlines.append(pending.at) }
        if case .open(let until) = evaluated { deadlines.append(until) }
        if case .halfOpen = evaluated, let expiry = permits.nextExpiry { deadlines.append(expiry) }
        if let until = override?.until { deadlines.append(until) }
        return deadlines.min()
    }

    // MARK: Events

    /// Counts a report. Stale reports (older generation) are not counted, and
    /// neither are their probes. Outcomes count while CLOSED (and, under
    /// `.shadow`, as probes while HALF_OPEN); under `.forcedOpen` nothing counts,
    /// under `.forcedClosed` and `.disabled` outcomes are measured but never trip.
    public mutating func report(_ report: OutcomeReport, at now: Timestamp) -> BreakerStep {
        var step = advance(to: now)
        guard report.generation >= status.generation else {
            step.stale = true
            return step
        }
        for probe in report.probes where permits.complete(probe.permitID) {
            if case .halfOpen = evaluated {
                completeProbe(probe.outcome, client: report.client, at: now, into: &step)
            }
        }
        guard !report.counts.isEmpty, override?.kind != .forcedOpen else { return step }
        switch evaluated {
        case .closed:
            window.record(report.counts, client: report.client, at: now)
            updateConsecutive(with: report)
            evaluateTrip(at: now, into: &step)
        case .halfOpen where override?.kind == .shadow:
            // In shadow mode nobody asks for permits; ordinary calls stand in for probes.
            if report.counts.failures > 0 {
                completeProbe(.failure, client: report.client, at: now, into: &step)
            } else if report.counts.success + report.counts.slowSuccess > 0 {
                permits.recordSuccess(Int(clamping: report.counts.success + report.counts.slowSuccess))
                closeIfEnoughProbes(at: now, into: &step)
            }
        case .open, .halfOpen:
            break
        }
        return step
    }

    /// Asks for a half-open probe permit. The step holds what time changed
    /// first (see `advance(to:)`), which the owner must publish like any other.
    public mutating func acquirePermit(at now: Timestamp) -> (decision: PermitDecision, step: BreakerStep) {
        var step = advance(to: now)
        guard case .halfOpen = evaluated, status.state == .halfOpen else {
            let retry = status.until.map { max(0, $0.milliseconds(since: now)) }
            let denial = PermitDenial(
                state: status.state, generation: status.generation, retryAfterMs: retry,
                reason: "breaker is \(status.state.displayName), not HALF_OPEN")
            return (.denied(denial), step)
        }
        if permits.isExhausted {
            // Ids must never repeat; a new generation gives a fresh id space.
            publish(
                reason: "all probe permit ids of \(status.generation) used; probing continues under a new generation",
                at: now, into: &step)
        }
        if let from = grantsFrom {
            if now < from {
                let denial = PermitDenial(
                    state: status.state, generation: status.generation, retryAfterMs: from.milliseconds(since: now),
                    reason: "probe permits granted before fuseboxd restarted (or its leader changed) may still be out until \(from)")
                return (.denied(denial), step)
            }
            grantsFrom = nil
        }
        let half = policy.halfOpen
        if let grant = permits.grant(limit: half.permittedCalls, maxWaitMs: half.maxWaitMs, at: now) {
            return (.granted(grant), step)
        }
        let retry = permits.nextExpiry.map { max(0, $0.milliseconds(since: now)) }
        let denial = PermitDenial(
            state: status.state, generation: status.generation, retryAfterMs: retry,
            reason: "\(permits.outstanding.count) of \(half.permittedCalls) permits outstanding")
        return (.denied(denial), step)
    }

    /// Publishes the transition restoring a HALF_OPEN breaker owes (see the
    /// restoring init); empty when nothing is owed or it was already published.
    public mutating func restoreStep() -> BreakerStep {
        var step = BreakerStep()
        publishPendingRestore(into: &step)
        return step
    }

    /// Applies what time alone changes: an override lifting, OPEN ending,
    /// permits expiring (each counts as a failed probe).
    public mutating func advance(to now: Timestamp) -> BreakerStep {
        var step = BreakerStep()
        publishPendingRestore(into: &step)
        liftExpiredOverride(at: now, into: &step)
        if case .open(let until) = evaluated, until <= now {
            evaluated = .halfOpen
            publish(reason: "open period ended; probing with up to \(policy.halfOpen.permittedCalls) calls", at: now, into: &step)
        }
        if case .halfOpen = evaluated, !permits.expire(at: now).isEmpty {
            reopen(
                reason: "probe permit expired after \(policy.halfOpen.maxWaitMs) ms without a result",
                clients: [], at: now, into: &step)
        }
        return step
    }

    /// Sets (or, with nil, lifts) an operator override, optionally until a time.
    public mutating func setOverride(
        _ kind: BreakerOverride?, until: Timestamp? = nil, reason: String, at now: Timestamp
    ) -> BreakerStep {
        var step = advance(to: now)
        override = kind.map { ($0, until) }
        publish(reason: reason, at: now, into: &step)
        return step
    }

    /// Publishes the lifting of an override whose end has come, marked in
    /// `step` as the expiry (audited as the server's own action).
    private mutating func liftExpiredOverride(at now: Timestamp, into step: inout BreakerStep) {
        guard let until = override?.until, until <= now, let kind = override?.kind else { return }
        override = nil
        publish(reason: "\(kind.state.displayName) override expired", at: now, into: &step)
        step.overrideExpiry = step.transitions.count - 1
    }

    /// Lifts any override, clears the window and the trip history, and
    /// closes. An override whose end had come is published as expired first.
    public mutating func reset(reason: String, at now: Timestamp) -> BreakerStep {
        var step = BreakerStep()
        publishPendingRestore(into: &step)
        liftExpiredOverride(at: now, into: &step)
        override = nil
        evaluated = .closed
        window.reset()
        consecutiveFailures = 0
        reopenings = 0
        trips = 0
        publish(reason: reason, at: now, into: &step)
        return step
    }

    /// Adopts a changed policy. The state stays; a new window shape starts an
    /// empty window; new permit limits apply to later grants.
    public mutating func updatePolicy(_ newPolicy: CircuitBreakerPolicy, at now: Timestamp) -> BreakerStep {
        let step = advance(to: now)
        if newPolicy.window != policy.window {
            window = SlidingWindow(shape: newPolicy.window)
        }
        policy = newPolicy
        return step
    }

    // MARK: Rules

    private mutating func updateConsecutive(with report: OutcomeReport) {
        let counts = report.counts
        if counts.success + counts.slowSuccess > 0 {
            // A success in the batch ends the run; only the failures after it remain.
            consecutiveFailures = min(report.trailingConsecutiveFailures, Int(clamping: counts.failures))
        } else {
            consecutiveFailures += Int(clamping: counts.failures)
        }
    }

    private mutating func evaluateTrip(at now: Timestamp, into step: inout BreakerStep) {
        guard override?.kind != .forcedClosed, override?.kind != .disabled else { return }
        let snapshot = window.snapshot(at: now)
        guard let verdict = TripRule.evaluate(snapshot, consecutiveFailures: consecutiveFailures, policy: policy) else {
            return
        }
        guard verdict.quorumMet else {
            step.belowQuorum = verdict.reason
            return
        }
        trips += 1
        let clients = window.contributions.filter { $0.value.failures > 0 }.map(\.key).sorted()
        open(reason: verdict.reason, clients: clients, at: now, into: &step)
    }

    private mutating func completeProbe(_ outcome: Outcome, client: String?, at now: Timestamp, into step: inout BreakerStep) {
        if outcome.isFailure {
            reopen(reason: "probe failed", clients: client.map { [$0] } ?? [], at: now, into: &step)
        } else if outcome.isSuccess {
            permits.recordSuccess()
            closeIfEnoughProbes(at: now, into: &step)
        }
    }

    private mutating func closeIfEnoughProbes(at now: Timestamp, into step: inout BreakerStep) {
        let needed = max(policy.halfOpen.successThreshold, 1)
        guard permits.successes >= needed else { return }
        evaluated = .closed
        window.reset()
        consecutiveFailures = 0
        reopenings = 0
        publish(reason: "\(needed) successful probe\(needed == 1 ? "" : "s")", at: now, into: &step)
    }

    private mutating func reopen(reason: String, clients: [String], at now: Timestamp, into step: inout BreakerStep) {
        reopenings += 1
        open(reason: reason, clients: clients, at: now, into: &step)
    }

    private mutating func open(reason: String, clients: [String], at now: Timestamp, into step: inout BreakerStep) {
        let duration = policy.openDuration.duration(reopenings: reopenings, using: &random)
        evaluated = .open(until: now.adding(milliseconds: duration))
        window.reset()
        consecutiveFailures = 0
        publish(reason: reason, clients: clients, at: now, into: &step)
    }

    private mutating func publishPendingRestore(into step: inout BreakerStep) {
        guard let pending = pendingRestore else { return }
        pendingRestore = nil
        publish(reason: pending.reason, at: pending.at, into: &step)
    }

    /// Records a new status with the next generation, and voids the permits
    /// of the old one: they no longer count, expire or match a result.
    private mutating func publish(reason: String, clients: [String] = [], at now: Timestamp, into step: inout BreakerStep) {
        let evaluatedState: BreakerState
        var until: Timestamp?
        switch evaluated {
        case .closed: evaluatedState = .closed
        case .open(let openUntil):
            evaluatedState = .open
            until = openUntil
        case .halfOpen: evaluatedState = .halfOpen
        }
        let state = override?.kind.state ?? evaluatedState
        if let override { until = override.until ?? (override.kind == .shadow ? until : nil) }
        let next = BreakerStatus(
            state: state, evaluatedState: evaluatedState, generation: status.generation.next,
            since: now, until: until, reason: reason)
        let from = status.state
        status = next
        permits = HalfOpenPermits(generation: next.generation)
        // The hold after a restore ends with HALF_OPEN: a later HALF_OPEN follows an
        // OPEN period decided here, whose permits were voided with their generation.
        if next.state != .halfOpen { grantsFrom = nil }
        step.transitions.append(BreakerTransition(from: from, status: next, contributingClients: clients))
    }
}
