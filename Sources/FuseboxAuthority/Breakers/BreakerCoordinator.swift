public import FuseboxCore
import Logging
import NIOConcurrencyHelpers

/// The fleet's circuit breakers, as a domain service: reports from every
/// client merge here, the server's timer moves breakers on at each one's next
/// deadline, and every transition is stored before anyone sees it.
///
/// - **Durable before visible.** Each breaker has a working state machine and
///   a visible status. Readers (views, details, permit answers, report
///   responses, watchers) see only the visible status, which changes when the
///   store has the transition.
/// - **Order per breaker.** Transitions queue in the order they happen and are
///   stored and published in that order; a breaker's generations reach the
///   store and the watchers in order.
/// - **Group commit.** One committer stores everything queued in one
///   transaction, so transitions that are ready together share one fsync.
///   Counting outcomes writes nothing and never waits for a commit.
/// - **Failures.** A commit the store refuses leaves the previous status
///   visible and its callers get `unavailable`. Operator actions are undone
///   (their audit entry is in the same transaction: neither is applied); the
///   rules' own transitions (trips, half-opening) stay decided and are stored
///   when the store takes writes again.
/// - **Time** comes from the injected `FleetClock`; no breaker is polled.
public final class BreakerCoordinator: BreakerAuthority, Sendable {
    struct Entry {
        var machine: BreakerStateMachine
        var policy: String
        var visible: BreakerStatus
        /// False until the breaker's creation is stored.
        var exists = false
        /// Queued commits not yet stored.
        var pending = 0
        /// The ticket of the newest queued commit.
        var lastTicket: UInt64 = 0
        /// The deadline the timer holds for it.
        var scheduled: Timestamp?
        /// The last report, permit request or action on it.
        var lastActivity: Timestamp
    }

    /// A commit waiting for the store.
    struct Pending {
        var ticket: UInt64
        var key: BreakerKey
        var policy: String
        var stored: StoredBreaker
        var transitions: [BreakerTransition]
        var audits: [AuditRecord]
        /// For operator actions: the machine to go back to if storing fails
        /// (nil in `created` means the breaker did not exist).
        var undo: BreakerStateMachine?
        var undoRemoves = false
        /// The commit creates the breaker.
        var created = false
        /// The commit deletes an idle breaker.
        var evicted = false
        var resolved = false
    }

    struct State {
        var entries: [BreakerKey: Entry] = [:]
        var queue: [Pending] = []
        var nextTicket: UInt64 = 0
        var resolvedThrough: UInt64 = 0
        /// `shutdown()` was called: nothing more is stored; changes not stored
        /// by then, and any asked about later, fail.
        var closed = false
        var failures: [UInt64: StoreError] = [:]
        var auditIDs: [UInt64: [UInt64]] = [:]
        var waiters: [UInt64: [CheckedContinuation<Result<[UInt64], StoreError>, Never>]] = [:]
        var timers = DeadlineHeap<BreakerKey>()
        var ledger = ReporterLedger()
        var published: UInt64 = 0
        /// After a failed commit, timers wait until this before retrying.
        var retryAt: Timestamp?
        var commits: UInt64 = 0
        /// Why the last commit failed; nil once one succeeds.
        var storeProblem: String?
        /// New breakers start at this generation: the highest of any evicted one.
        var floor: UInt64 = 0
        /// Breakers per registry, for the limit.
        var perRegistry: [String: Int] = [:]
        var evictions: UInt64 = 0
        /// Commits taken by the committer and not yet stored or refused.
        var inFlight = 0
    }

    let store: any BreakerStateStore
    let policies: @Sendable (String, String) -> Policy?
    let clock: any FleetClock
    /// Breaker watches.
    public let hub = WatchHub<BreakerWatchEvent>()
    let state = AdaptiveLockedValueBox(State())
    let commitBell = Doorbell()
    let timerBell = Doorbell()
    let logger = Logger(label: "fusebox.breakers")
    /// Bounds on what clients can make the authority hold.
    public let limits: AuthorityLimits

    /// Restores every stored breaker. `policies(registry, name)` gives the
    /// policy a breaker is bound to, if it exists.
    public init(
        store: any BreakerStateStore, clock: any FleetClock, limits: AuthorityLimits = AuthorityLimits(),
        policies: @escaping @Sendable (String, String) -> Policy?
    ) async throws(StoreError) {
        self.store = store
        self.clock = clock
        self.policies = policies
        self.limits = limits
        let now = clock.now()
        let stored = try await store.loadBreakers()
        let floor = try await store.loadGenerationFloor()
        state.withLockedValue { s in
            s.floor = floor
            for b in stored {
                let key = BreakerKey(registry: b.registry, name: b.name)
                let rule: CircuitBreakerPolicy
                if let current = policies(b.registry, b.policy)?.circuitBreaker {
                    rule = current
                } else if let last = b.rule {
                    rule = last
                    logger.warning("breaker's policy is gone; it keeps its last rule", metadata: ["breaker": "\(key)", "policy": "\(b.policy)"])
                } else {
                    rule = CircuitBreakerPolicy()
                    logger.warning("breaker's policy is gone and no rule was stored; it runs with the defaults", metadata: ["breaker": "\(key)", "policy": "\(b.policy)"])
                }
                let machine = BreakerStateMachine(
                    policy: rule, restoring: b.status, override: b.override,
                    overrideUntil: b.overrideUntilMs.map(Timestamp.init(milliseconds:)), at: now)
                var entry = Entry(machine: machine, policy: b.policy, visible: b.status, lastActivity: now)
                entry.exists = true
                s.entries[key] = entry
                s.perRegistry[key.registry, default: 0] += 1
                AuthorityMetrics.state(key, b.status)
                // A HALF_OPEN breaker's permits died with the previous process: it
                // moves to a new generation, stored and published like any step.
                _ = apply(&s, key, createWith: nil, at: now) { machine in (machine.restoreStep(), ()) }
            }
        }
    }

    // MARK: Running

    /// Stores queued transitions, runs the timers and resynchronises watchers
    /// that fell behind, until cancelled; then stores what is still queued.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.runCommitter() }
            group.addTask { await self.runTimers() }
            group.addTask { await self.runResync() }
            group.addTask { await self.runEviction() }
            // Each runs until the task running `run()` is cancelled.
        }
    }

    /// Ends every watch, and fails every change not stored yet: this process
    /// no longer decides (server shutdown, or a replica that stopped leading,
    /// after `run()` returned). Their callers get UNAVAILABLE at once instead
    /// of waiting for a commit that will never come.
    public func shutdown() {
        let error = Self.notDecidingHere
        let waiters = state.withLockedValue { s -> [CheckedContinuation<Result<[UInt64], StoreError>, Never>] in
            s.closed = true
            for p in s.queue where !p.resolved { s.failures[p.ticket] = error }
            s.queue = []
            var resumed: [CheckedContinuation<Result<[UInt64], StoreError>, Never>] = []
            for (ticket, waiting) in s.waiters {
                resumed += waiting
                if s.failures[ticket] == nil { s.failures[ticket] = error }
            }
            s.waiters = [:]
            return resumed
        }
        for w in waiters { w.resume(returning: .failure(error)) }
        hub.finishAll()
    }

    /// Why a change was not stored once this process stopped deciding.
    static let notDecidingHere = StoreError(
        .unavailable, "this fuseboxd stopped deciding breaker changes (it stopped leading, or is shutting down) before the change was stored; try again")

    // MARK: Mutations (under the lock)

    /// What one change did.
    struct Applied<T> {
        var value: T
        var step: BreakerStep
        var ticket: UInt64?
        /// An operator's action only: the status its transition (the step's
        /// last) started from (nil when the action created the breaker).
        var actedOn: BreakerStatus?
    }

    enum Purpose {
        /// A client's report, a permit request or time: decided by the rules.
        case rules
        /// An operator's action: undone if it cannot be stored.
        case operatorAction([AuditRecord])
        /// Store the breaker even without a transition (its rule changed).
        case storeRule
    }

    /// Applies `body` to a breaker (creating it bound to `createWith` if it
    /// does not exist yet) and queues a commit when it was created, changed
    /// state or must be stored. Runs under the lock; never touches the hub.
    func apply<T>(
        _ s: inout State, _ key: BreakerKey, createWith: String?, at now: Timestamp, purpose: Purpose = .rules,
        _ body: (inout BreakerStateMachine) -> (BreakerStep, T)
    ) -> Result<Applied<T>, CoordinatorError> {
        var entry: Entry
        var created = false
        if let existing = s.entries.removeValue(forKey: key) {
            // Taken out so the machine is mutated in place: a copy left behind
            // would make every report copy the whole window.
            entry = existing
        } else {
            guard let name = createWith, !name.isEmpty else {
                // nil: the request cannot create a breaker; "": it could, had it named a policy.
                guard createWith != nil else { return .failure(CoordinatorError(.notFound, "breaker \(key) does not exist")) }
                return .failure(CoordinatorError(.notFound, "breaker \(key) does not exist; name a policy to create it with", field: "policy"))
            }
            guard let policy = policies(key.registry, name) else {
                return .failure(CoordinatorError(.notFound, "policy \"\(name)\" does not exist in registry \"\(key.registry)\"", field: "policy"))
            }
            guard let rule = policy.circuitBreaker else {
                return .failure(CoordinatorError(.failedPrecondition, "policy \"\(name)\" of registry \"\(key.registry)\" has no circuit_breaker section", field: "policy"))
            }
            guard s.perRegistry[key.registry, default: 0] < limits.maxBreakersPerRegistry else {
                AuthorityMetrics.limitReached("breakers_per_registry")
                return .failure(CoordinatorError(
                    .resourceExhausted,
                    "registry \"\(key.registry)\" holds \(limits.maxBreakersPerRegistry) breakers, its limit (limits.maxBreakersPerRegistry); breaker \(key) was not created. Idle breakers are evicted after \(limits.idleEvictionMs / 1000) s"))
            }
            // Above every evicted breaker's generation: a name used before never sees a generation again.
            let machine = BreakerStateMachine(policy: rule, generation: BreakerGeneration(s.floor), at: now)
            entry = Entry(machine: machine, policy: name, visible: machine.status, lastActivity: now)
            created = true
            s.perRegistry[key.registry, default: 0] += 1
        }
        entry.lastActivity = now
        var undo: BreakerStateMachine?
        var audits: [AuditRecord] = []
        if case .operatorAction(let records) = purpose {
            undo = entry.machine
            audits = records
        }
        let (step, value) = body(&entry.machine)
        let expiry = step.overrideExpiry.flatMap { step.transitions.indices.contains($0) ? step.transitions[$0] : nil }
        // The operator's transition is the step's last; one before it (time
        // acted first: an override expired, OPEN ended, a permit expired) left
        // the status it acted on. `undo` is the machine before the action.
        let actedOn = created ? nil : undo.map { step.transitions.dropLast().last?.status ?? $0.status }
        for i in audits.indices {
            audits[i].breaker = key
            audits[i].atMs = now.milliseconds
            audits[i].stateBefore = actedOn?.state
            audits[i].stateAfter = entry.machine.status.state
        }
        if let expiry {
            // Time lifted an override: the server's own audited action, stored
            // before an operator's action that found it due (the timer had not
            // acted yet), so every published expiry has its entry.
            audits.insert(AuditRecord(
                atMs: now.milliseconds, actor: nil, action: .overrideExpired, breaker: key, reason: expiry.status.reason, allowed: true,
                stateBefore: expiry.from, stateAfter: expiry.status.state), at: 0)
        }
        var ticket: UInt64?
        var mustStore = created || !step.transitions.isEmpty
        if case .storeRule = purpose { mustStore = true }
        if mustStore {
            s.nextTicket += 1
            let override = entry.machine.activeOverride
            let stored = StoredBreaker(
                registry: key.registry, name: key.name, policy: entry.policy, status: entry.machine.status,
                override: override?.kind, overrideUntilMs: override?.until?.milliseconds, rule: entry.machine.policy)
            s.queue.append(Pending(
                ticket: s.nextTicket, key: key, policy: entry.policy, stored: stored, transitions: step.transitions,
                audits: audits, undo: undo, undoRemoves: created && undo != nil, created: created))
            entry.pending += 1
            entry.lastTicket = s.nextTicket
            ticket = s.nextTicket
        }
        s.entries[key] = entry
        schedule(&s, key)
        if ticket != nil { commitBell.ring() }
        return .success(Applied(value: value, step: step, ticket: ticket, actedOn: actedOn))
    }

    /// Makes the timer hold the breaker's next deadline.
    func schedule(_ s: inout State, _ key: BreakerKey) {
        guard var entry = s.entries[key] else { return }
        var deadline = entry.machine.nextDeadline
        if let d = deadline, let retry = s.retryAt, d < retry { deadline = retry }
        guard deadline != entry.scheduled else { return }
        entry.scheduled = deadline
        s.entries[key] = entry
        guard let deadline else { return }
        let earliest = s.timers.earliest
        s.timers.push(deadline, key)
        if earliest.map({ deadline < $0 }) ?? true { timerBell.ring() }
    }

    // MARK: Waiting for the store

    /// Waits until `ticket`'s commit is stored or refused.
    func outcome(of ticket: UInt64) async -> Result<[UInt64], StoreError> {
        await withCheckedContinuation { continuation in
            let ready = state.withLockedValue { s -> Result<[UInt64], StoreError>? in
                if s.closed, ticket > s.resolvedThrough || s.failures[ticket] != nil {
                    return .failure(s.failures[ticket] ?? Self.notDecidingHere)
                }
                if ticket <= s.resolvedThrough {
                    if let failure = s.failures[ticket] { return .failure(failure) }
                    return .success(s.auditIDs.removeValue(forKey: ticket) ?? [])
                }
                s.waiters[ticket, default: []].append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    // MARK: Helpers

    func view(_ key: BreakerKey, _ entry: Entry) -> BreakerView {
        BreakerView(key: key, policy: entry.policy, status: entry.visible)
    }
}
