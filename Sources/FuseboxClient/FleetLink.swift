import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Atomics
import CoreMetrics

/// The client's side of the fleet: the watches that push breaker states and
/// policies, the reporter that sends outcomes in batches, probe permits, and
/// the switch to local breakers when fuseboxd has been out of reach longer
/// than the staleness bound.
final class FleetLink: Sendable {
    let configuration: FuseboxConfiguration
    /// `configuration.reportBatchSize`, read on every call without copying the configuration.
    let reportBatchSize: UInt64
    /// Where timeouts' timers run.
    let eventLoop: any EventLoop
    /// Attempt and total timeouts of every guard, on `eventLoop`.
    let deadlines: DeadlineTimer
    let client: RPCFailoverClient
    let logger: Logger
    let gauges = ClientGauges()
    let fallbackHandlers = FallbackHandlers()
    /// This run of the process, sent with every batch: it scopes `sequence`,
    /// so fuseboxd counts a restarted process's batches from sequence 1 again.
    let incarnation: UInt64

    private struct State: Sendable {
        var breakers: [BreakerKey: SharedBreaker] = [:]
        var guards: [BreakerKey: Guard] = [:]
        var policies: PolicySnapshot
        var mode: ClientMode = .fleet
        /// Watch streams open now.
        var liveStreams = 0
        /// The last time fuseboxd answered (a watch event, a report).
        var lastContact: ContinuousClock.Instant = .now
        var sequence: UInt64 = 0
        /// Per registry, the version the WatchRegistry stream last brought in
        /// this run: a reopened watch (on this or another endpoint) resumes
        /// after it. None before the first watch event: the first watch asks
        /// for a snapshot, since a cached version may come from another server's history.
        var watchedVersions: [String: UInt64] = [:]
    }

    struct BreakerKey: Hashable, Sendable {
        var registry: String
        var name: String
    }

    private let state: NIOLockedValueBox<State>
    private let flush: AsyncStream<Void>.Continuation
    private let flushes: AsyncStream<Void>
    private let tasks = NIOLockedValueBox<[Task<Void, Never>]>([])
    /// Sessions whose link is still in memory, in this process: back to what
    /// it was once stopped sessions are released (a task still holding one
    /// would keep it).
    static var inMemory: Int { live.load(ordering: .relaxed) }
    private static let live = ManagedAtomic<Int>(0)
    /// Encoded batches waiting for the StreamOutcomes call.
    private let outbox = ReportOutbox()

    init(
        configuration: FuseboxConfiguration, client: RPCFailoverClient, eventLoop: any EventLoop, policies: PolicySnapshot, logger: Logger,
        incarnation: UInt64 = FleetLink.startIncarnation()
    ) {
        self.configuration = configuration
        self.incarnation = incarnation
        self.reportBatchSize = UInt64(max(configuration.reportBatchSize, 1))
        self.eventLoop = eventLoop
        self.deadlines = DeadlineTimer(eventLoop: eventLoop)
        self.client = client
        self.logger = logger
        Self.live.wrappingIncrement(ordering: .relaxed)
        self.state = NIOLockedValueBox(State(policies: policies))
        (flushes, flush) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        gauges.mode(.fleet)
        gauges.policySource(policies.source)
    }

    /// The incarnation of a process starting now: the time in microseconds
    /// since 1970. A restart takes far longer than a microsecond, so a
    /// restarted process picks a larger one, unless the wall clock was set
    /// back by more than the time the restart took; fuseboxd would then answer
    /// its batches as duplicates until the clock passes the old start time.
    static func startIncarnation(now: Date = Date()) -> UInt64 {
        UInt64(max(1, (now.timeIntervalSince1970 * 1_000_000).rounded()))
    }

    deinit {
        Self.live.wrappingDecrement(ordering: .relaxed)
    }

    func start() {
        // Unstructured on purpose, for now: `Fusebox.start` must work without a
        // ServiceGroup, so these loops have no `run()` to be children of. Each is
        // kept in `tasks` and cancelled and awaited by `stop()`. Turning FleetLink
        // into a FleetSession Service whose run() owns them is issue 16.
        var started: [Task<Void, Never>] = []
        started.append(Task { await self.reportLoop() })
        started.append(Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: self.configuration.reportInterval)
                self.flush.yield()
            }
        })
        started.append(Task { await self.reconnecting("StreamOutcomes") { try await self.streamReports() } })
        for registry in configuration.registries {
            started.append(Task { await self.reconnecting("WatchBreakers(\(registry))") { try await self.watchBreakers(registry) } })
            started.append(Task { await self.reconnecting("WatchRegistry(\(registry))") { try await self.watchRegistry(registry) } })
        }
        tasks.withLockedValue { $0 = started }
    }

    func stop() async {
        let running = tasks.withLockedValue { t in
            defer { t = [] }
            return t
        }
        for task in running { task.cancel() }
        flush.finish()
        outbox.close()
        for task in running { await task.value }
        // Batches the stream did not send, and what was counted since, go out as
        // unary calls, in order; the last one says goodbye (`final`).
        for queued in outbox.drain() {
            guard let batch = try? Fusebox_V1_OutcomeBatch(decoding: queued.bytes) else { continue }
            await sendUnary(batch)
        }
        await reportOnce(unary: true, final: true)
        // Guards hold the link and the link held its guards: let go of them,
        // or every stopped session stayed in memory (guards still in the
        // service's hands keep working against what they hold).
        state.withLockedValue { $0.guards = [:] }
    }

    func requestFlush() { flush.yield() }

    // MARK: Guards

    var policies: PolicySnapshot { state.withLockedValue { $0.policies } }
    var mode: ClientMode { state.withLockedValue { $0.mode } }

    /// How long the client's view of the fleet has not been confirmed by fuseboxd.
    var staleness: Duration {
        state.withLockedValue { s in s.liveStreams > 0 ? .zero : ContinuousClock.now - s.lastContact }
    }

    func makeGuard(_ name: String, policy policyName: String, registry: String, classifier: ErrorClassifier = .standard) -> Guard {
        let key = BreakerKey(registry: registry, name: name)
        return state.withLockedValue { s in
            if let existing = s.guards[key] {
                if existing.policyName != policyName {
                    logger.warning(
                        "guard already exists with another policy; keeping the first",
                        metadata: ["guard": "\(name)", "policy": "\(existing.policyName)", "requested": "\(policyName)"])
                }
                return existing
            }
            let breaker = s.breakers[key] ?? SharedBreaker(registry: registry, name: name, policyName: policyName)
            s.breakers[key] = breaker
            let policy = resolve(policyName, registry: registry, in: s.policies)
            if s.mode == .local, let cb = policy.circuitBreaker { breaker.enterLocal(policy: cb, now: wallNow()) }
            let g = Guard(
                name: name, registry: registry, policyName: policyName, classifier: classifier,
                runtime: GuardRuntime(policy: policy, registry: registry, name: name, breaker: breaker, previous: nil, now: wallNow()), link: self)
            s.guards[key] = g
            return g
        }
    }

    /// The policy a guard runs with: the registry's, else the preset of that
    /// name, else one with no patterns (the call just runs).
    private func resolve(_ name: String, registry: String, in policies: PolicySnapshot) -> Policy {
        if let p = policies.policy(name, registry: registry) { return p }
        if let preset = Presets.named(name) {
            logger.warning("policy not in registry; using the preset of that name", metadata: ["policy": "\(name)", "registry": "\(registry)"])
            return preset
        }
        logger.error("policy not found; calls run unguarded until it is created", metadata: ["policy": "\(name)", "registry": "\(registry)"])
        return Policy(name: name)
    }

    /// Swaps in changed policies for the guards of `registry`.
    private func policiesChanged(registry: String) {
        let (guards, snapshot) = state.withLockedValue { s in (s.guards.filter { $0.key.registry == registry }.map(\.value), s.policies) }
        for g in guards {
            let policy = resolve(g.policyName, registry: registry, in: snapshot)
            let old = g.runtime.load(ordering: .acquiring)
            guard old.policy != policy else { continue }
            let breaker = state.withLockedValue { $0.breakers[BreakerKey(registry: registry, name: g.name)] }
            if let breaker, let cb = policy.circuitBreaker { breaker.updateLocalPolicy(cb, now: wallNow()) }
            g.runtime.store(
                GuardRuntime(policy: policy, registry: g.registry, name: g.name, breaker: breaker, previous: old, now: wallNow()),
                ordering: .releasing)
            logger.info("policy updated", metadata: ["guard": "\(g.name)", "policy": "\(policy.name)"])
        }
    }

    private func breaker(_ registry: String, _ name: String) -> SharedBreaker? {
        state.withLockedValue { $0.breakers[BreakerKey(registry: registry, name: name)] }
    }

    private func guardFor(_ breaker: SharedBreaker) -> Guard? {
        state.withLockedValue { $0.guards[BreakerKey(registry: breaker.registry, name: breaker.name)] }
    }

    // MARK: Connectivity

    private func contact() {
        state.withLockedValue { s in
            s.lastContact = .now
        }
    }

    /// Runs `body` again and again: exponential backoff with full jitter
    /// between failures, reset once a stream was established.
    private func reconnecting(_ what: String, _ body: @Sendable () async throws -> Void) async {
        var failures = 0
        while !Task.isCancelled {
            let opened = state.withLockedValue { $0.lastContact }
            do {
                try await body()
            } catch {
                logger.debug("stream ended", metadata: ["stream": "\(what)", "error": "\(error)"])
            }
            if Task.isCancelled { return }
            if state.withLockedValue({ $0.lastContact }) > opened { failures = 0 }
            failures += 1
            var random = SystemRandomNumberGenerator()
            let delay = Self.reconnectDelay(
                failures: failures, base: configuration.reconnectBackoffBase, cap: configuration.reconnectBackoffMaximum, using: &random)
            try? await Task.sleep(for: delay)
        }
    }

    /// Exponential backoff with full jitter: uniform in
    /// [0, min(cap, base × 2^(failures-1))], so a fleet that lost its server
    /// together does not come back in lockstep.
    static func reconnectDelay(failures: Int, base: Duration, cap: Duration, using random: inout some RandomNumberGenerator) -> Duration {
        let ceiling = min(Double(cap.milliseconds), Double(base.milliseconds) * pow(2, Double(min(max(failures, 1) - 1, 30))))
        return .milliseconds(Int64(Double.random(in: 0...max(ceiling, 1), using: &random)))
    }

    private func streamOpened() {
        state.withLockedValue { s in
            s.liveStreams += 1
            s.lastContact = .now
        }
    }

    private func streamClosed() {
        state.withLockedValue { $0.liveStreams -= 1 }
    }

    // MARK: Watches

    /// Watches `registry`'s breakers. Every (re)opened watch, on whichever
    /// endpoint is current, starts with a snapshot, which replaces what this
    /// client holds (`resync`); transitions after it apply only when newer.
    private func watchBreakers(_ registry: String) async throws {
        var request = Fusebox_V1_WatchBreakersRequest()
        request.registry = registry
        let opened = NIOLockedValueBox(false)
        defer { if opened.withLockedValue({ $0 }) { streamClosed() } }
        try await client.serverStreaming(
            "fusebox.v1.BreakerService", "WatchBreakers", request, as: Fusebox_V1_BreakerEvent.self
        ) { event in
            if !opened.withLockedValue({ o in defer { o = true }; return o }) { self.streamOpened() }
            self.contact()
            switch event.event {
            case .snapshot(let snapshot):
                self.resync(registry: registry, snapshot.breakers)
            case .transition(let transition):
                guard let status = transition.status, let ref = status.breaker,
                    let breaker = self.breaker(ref.registry, ref.name)
                else { return }
                if let change = breaker.applyFleet(BreakerMapping.status(status)) {
                    self.transitioned(
                        breaker, change, generation: status.generation, reason: transition.reason, clients: transition.contributingClients)
                }
            case nil:
                break
            }
        }
    }

    /// Applies the server's snapshot of `registry`: its state wins over
    /// anything held, local breakers included.
    private func resync(registry: String, _ statuses: [Fusebox_V1_BreakerStatus]) {
        var byName: [String: Fusebox_V1_BreakerStatus] = [:]
        for s in statuses { if let ref = s.breaker { byName[ref.name] = s } }
        let (breakers, wasLocal) = state.withLockedValue { s in
            (s.breakers.values.filter { $0.registry == registry }, s.mode == .local)
        }
        for breaker in breakers {
            let status = byName[breaker.name].map(BreakerMapping.status)
            if let change = breaker.resync(status) {
                transitioned(breaker, change, generation: status?.generation.value ?? 0, reason: "resynchronised with fuseboxd")
            }
        }
        if wasLocal {
            state.withLockedValue { $0.mode = .fleet }
            gauges.mode(.fleet)
            logger.notice("fuseboxd reachable again; breakers follow the fleet", metadata: ["registry": "\(registry)"])
        }
    }

    /// Counts, logs and announces (`onStateChange`) a change of a breaker's
    /// state. `clientOnly`: this client's breaker alone changed (a local open
    /// below quorum or its end); it is logged with its reason as the message.
    private func transitioned(
        _ breaker: SharedBreaker, _ change: (from: BreakerState, to: BreakerState), generation: UInt64, reason: String,
        clientOnly: Bool = false, clients: [String] = []
    ) {
        guardFor(breaker)?.metrics.stateChanged(from: change.from, to: change.to)
        let metadata: Logger.Metadata = [
            "breaker": "\(breaker.name)", "registry": "\(breaker.registry)", "from": "\(change.from.displayName)",
            "to": "\(change.to.displayName)", "generation": "\(generation)", "reason": "\(reason)",
        ]
        if clientOnly {
            logger.notice("\(reason)", metadata: metadata)
        } else {
            logger.info("breaker state changed", metadata: metadata)
        }
        guard configuration.onStateChange != nil || configuration.onEvent != nil else { return }
        let announced = BreakerStateChange(
            registry: breaker.registry, breaker: breaker.name, from: change.from, to: change.to, generation: generation,
            reason: reason, clientOnly: clientOnly, contributingClients: clients)
        configuration.onStateChange?(announced)
        configuration.onEvent?(GuardEvent(registry: breaker.registry, guardName: breaker.name, kind: .stateChanged(announced)))
    }

    /// Watches `registry`'s policies. The first watch starts from a snapshot;
    /// a reopened one (after a lost connection, on whichever endpoint is
    /// current) asks for the changes after the last version it saw
    /// (`from_version`), and the server answers with those changes, or a
    /// snapshot when its history no longer reaches back that far.
    private func watchRegistry(_ registry: String) async throws {
        var request = Fusebox_V1_WatchRegistryRequest()
        request.registry = registry
        request.fromVersion = state.withLockedValue { $0.watchedVersions[registry] } ?? 0
        try await client.serverStreaming(
            "fusebox.v1.RegistryService", "WatchRegistry", request, as: Fusebox_V1_RegistryEvent.self
        ) { event in
            self.contact()
            let version: UInt64
            switch event.event {
            case .snapshot(let snapshot):
                self.replaceRegistry(registry, snapshot)
                version = snapshot.version
            case .change(let change):
                self.applyChange(registry, change)
                version = change.version
            case nil:
                return
            }
            self.state.withLockedValue { $0.watchedVersions[registry] = version }
        }
    }

    private func replaceRegistry(_ registry: String, _ snapshot: Fusebox_V1_RegistrySnapshot) {
        var policies: [String: Policy] = [:]
        for record in snapshot.policies {
            guard let wire = record.policy else { continue }
            switch PolicyMapping.policy(from: wire) {
            case .success(let p): policies[p.name] = p
            case .failure(let e): logger.error("ignoring a policy this SDK cannot read", metadata: ["error": "\(e)"])
            }
        }
        let changed = state.withLockedValue { s -> Bool in
            let before = s.policies.registries[registry]
            s.policies.registries[registry] = policies
            s.policies.versions[registry] = snapshot.version
            return before != policies
        }
        try? PolicySnapshot.writeCache(snapshot, registry: registry, cacheDirectory: configuration.cacheDirectory)
        if changed { policiesChanged(registry: registry) }
    }

    private func applyChange(_ registry: String, _ change: Fusebox_V1_PolicyChange) {
        let policy = change.after.flatMap { try? PolicyMapping.policy(from: $0).get() }
        let snapshot = state.withLockedValue { s -> Fusebox_V1_RegistrySnapshot in
            if let policy {
                s.policies.registries[registry, default: [:]][policy.name] = policy
            } else {
                s.policies.registries[registry]?[change.policyName] = nil
            }
            s.policies.versions[registry] = change.version
            var w = Fusebox_V1_RegistrySnapshot()
            w.version = change.version
            w.policies = (s.policies.registries[registry] ?? [:]).values.sorted { $0.name < $1.name }.map { p in
                var r = Fusebox_V1_PolicyRecord()
                r.policy = PolicyMapping.wire(p)
                return r
            }
            return w
        }
        try? PolicySnapshot.writeCache(snapshot, registry: registry, cacheDirectory: configuration.cacheDirectory)
        policiesChanged(registry: registry)
    }

    // MARK: Permits

    enum PermitAnswer {
        case granted(UInt64, local: Bool, generation: BreakerGeneration)
        case denied(retryAfter: Duration?, generation: BreakerGeneration)
    }

    /// A half-open probe permit: from the local breaker in local mode, else
    /// from fuseboxd. Unreachable server, or no answer within `timeout`:
    /// denied (the call is rejected as if OPEN).
    func acquirePermit(_ breaker: SharedBreaker, generation: BreakerGeneration, timeout: Duration) async -> PermitAnswer {
        if let decision = breaker.acquireLocalPermit(now: wallNow()) {
            switch decision {
            case .granted(let grant): return .granted(grant.id, local: true, generation: grant.generation)
            case .denied(let d): return .denied(retryAfter: d.retryAfterMs.map { .milliseconds($0) }, generation: d.generation)
            }
        }
        var request = Fusebox_V1_AcquirePermitRequest()
        request.breaker = BreakerMapping.ref(breaker.registry, breaker.name)
        request.clientId = configuration.clientID
        request.generation = generation.value
        do {
            let response = try await client.unary(
                "fusebox.v1.BreakerService", "AcquirePermit", request, as: Fusebox_V1_AcquirePermitResponse.self,
                options: RPCCallOptions(timeout: timeout))
            contact()
            let current = BreakerGeneration(response.generation)
            if response.granted { return .granted(response.permitId, local: false, generation: current) }
            if let state = BreakerMapping.state(response.state), current > generation {
                var status = BreakerStatus(state: state, evaluatedState: state, generation: current, since: wallNow(), reason: response.reason)
                status.until = response.retryAfterMs > 0 ? wallNow().adding(milliseconds: Int64(response.retryAfterMs)) : nil
                if let change = breaker.applyFleet(status) {
                    transitioned(breaker, change, generation: current.value, reason: response.reason)
                }
            }
            return .denied(retryAfter: response.retryAfterMs > 0 ? .milliseconds(Int64(response.retryAfterMs)) : nil, generation: current)
        } catch {
            return .denied(retryAfter: nil, generation: generation)
        }
    }

    // MARK: Reporting

    private func reportLoop() async {
        for await _ in flushes {
            await reportOnce()
            endLocalOpens(now: wallNow())
            // Lets the StreamOutcomes call check its rotation time even when no batch came.
            outbox.tick()
        }
    }

    /// Ends the local opens below quorum whose time has come and announces
    /// that those breakers follow the fleet again. (Calls already pass from
    /// the moment the time has come; this records and announces it, within a
    /// report interval.)
    func endLocalOpens(now: Timestamp) {
        let breakers = state.withLockedValue { Array($0.breakers.values) }
        for breaker in breakers {
            guard let change = breaker.endBelowQuorumOpen(now: now) else { continue }
            transitioned(
                breaker, change, generation: breaker.gate.snapshot.generation.value,
                reason: "local open below quorum ended; following the fleet", clientOnly: true)
        }
    }

    /// Sends what the breakers counted since the last report: onto the
    /// StreamOutcomes call, or with `unary` as one ReportOutcomes call.
    /// `final` (at shutdown, unary): the batch says goodbye, and is sent even
    /// without outcomes, unless fuseboxd is out of reach (local mode).
    private func reportOnce(unary: Bool = false, final: Bool = false) async {
        let (breakers, guards, mode, stale) = state.withLockedValue { s in
            (Array(s.breakers.values), Array(s.guards.values), s.mode,
             // Only a client whose watch streams are down goes local: the
             // snapshot a reconnecting watch receives is what brings it back.
             s.liveStreams == 0 && ContinuousClock.now - s.lastContact > configuration.stalenessBound)
        }
        for g in guards {
            if let breaker = g.runtime.load(ordering: .relaxed).breaker { g.metrics.flush(breaker.calls) }
        }
        gauges.staleness.record(Double(staleness.milliseconds) / 1000)
        if mode == .fleet, stale {
            enterLocalMode(guards)
            return
        }
        if mode == .local {
            let now = wallNow()
            for breaker in breakers {
                for t in breaker.tickLocal(now: now) {
                    transitioned(breaker, (t.from, t.status.state), generation: t.status.generation.value, reason: "local breaker: \(t.status.reason)")
                }
            }
            return
        }
        var batch = Fusebox_V1_OutcomeBatch()
        batch.clientId = configuration.clientID
        batch.incarnation = incarnation
        batch.final = final
        var failures = false
        for breaker in breakers {
            let drained = breaker.tally.drain()
            let probes = breaker.takeProbes()
            guard !drained.counts.isEmpty || !probes.isEmpty else { continue }
            var entry = Fusebox_V1_BreakerOutcomes()
            entry.breaker = BreakerMapping.ref(breaker.registry, breaker.name)
            entry.policy = breaker.policyName
            entry.generation = drained.generation.value
            entry.counts = BreakerMapping.wire(drained.counts)
            entry.trailingConsecutiveFailures = UInt32(clamping: drained.trailingConsecutiveFailures)
            failures = failures || drained.counts.failures > 0 || probes.contains { $0.outcome.isFailure }
            entry.probes = probes.map { p in
                var w = Fusebox_V1_ProbeResult()
                w.permitId = p.permitID
                w.outcome = BreakerMapping.wire(p.outcome)
                return w
            }
            batch.breakers.append(entry)
        }
        guard !batch.breakers.isEmpty || final else { return }
        batch.sequence = state.withLockedValue { s in
            s.sequence += 1
            return s.sequence
        }
        guard unary else {
            // The normal path: onto the open StreamOutcomes call (one per client).
            guard let bytes = try? batch.encode() else { return }
            outbox.push(ReportOutbox.QueuedBatch(bytes: bytes, carriesFailures: failures))
            return
        }
        await sendUnary(batch)
    }

    private func sendUnary(_ batch: Fusebox_V1_OutcomeBatch) async {
        do {
            let response = try await client.unary(
                "fusebox.v1.BreakerService", "ReportOutcomes", batch, as: Fusebox_V1_ReportOutcomesResponse.self,
                options: RPCCallOptions(timeout: configuration.reportTimeout))
            contact()
            apply(response)
        } catch {
            // Outcomes of a failed report are dropped: by the time the server
            // is back they describe the past, and local mode takes over if it stays away.
            logger.debug("outcome report failed", metadata: ["error": "\(error)"])
        }
    }

    /// States, rejections, duplicates and trips below quorum of a report's response.
    func apply(_ response: Fusebox_V1_ReportOutcomesResponse, now: Timestamp = wallNow()) {
        for status in response.states {
            guard let ref = status.breaker, let breaker = breaker(ref.registry, ref.name) else { continue }
            if let change = breaker.applyFleet(BreakerMapping.status(status)) {
                transitioned(breaker, change, generation: status.generation, reason: status.reason)
            }
        }
        for rejected in response.rejected {
            logger.warning("fuseboxd rejected outcomes", metadata: ["field": "\(rejected.field)", "reason": "\(rejected.description)"])
        }
        if response.duplicate {
            // A retransmission, or batches of a replaced incarnation: the server
            // counted them once already (or never will). Nothing to send again.
            logger.debug(
                "fuseboxd had counted a batch already or holds a newer incarnation of this client; not counted again",
                metadata: ["client": "\(configuration.clientID)", "incarnation": "\(incarnation)"])
        }
        for trip in response.belowQuorum {
            openBelowQuorum(trip, now: now)
        }
    }

    /// A trip rule fired on this client's failures below the policy's quorum:
    /// this client's breaker opens for `open_ms`; the fleet's stays as it is.
    private func openBelowQuorum(_ trip: Fusebox_V1_BelowQuorumTrip, now: Timestamp) {
        guard let ref = trip.breaker, let breaker = breaker(ref.registry.isEmpty ? "default" : ref.registry, ref.name) else { return }
        guard trip.openMs > 0 else {
            logger.debug("trip below quorum without an open period; ignored", metadata: ["breaker": "\(ref.name)", "reason": "\(trip.reason)"])
            return
        }
        let until = now.adding(milliseconds: Int64(trip.openMs))
        if let change = breaker.openBelowQuorum(until: until) {
            transitioned(
                breaker, change, generation: breaker.gate.snapshot.generation.value, reason: "local open below quorum: \(trip.reason)",
                clientOnly: true)
        } else {
            logger.debug(
                "local open below quorum extended",
                metadata: ["breaker": "\(breaker.name)", "registry": "\(breaker.registry)", "until": "\(until)", "reason": "\(trip.reason)"])
        }
    }

    /// A StreamOutcomes call ends after this many batches…
    static let rotationBatches = 1_000
    /// …or this long after it opened, so its response (states, rejections)
    /// comes back; then it is reopened.
    static let rotationPeriod: Duration = .seconds(5)

    /// How soon a StreamOutcomes call ends after it carried a batch with
    /// failures: the response is the only way a trip below quorum reaches
    /// this client, and for as long as it has not, a client failing alone
    /// keeps calling a dependency that fails for it. 2 report intervals (at
    /// least 250 ms) keep a few batches per call: while failures last, about
    /// 3 calls a second instead of 10 unary ones; without failures, nothing changes.
    var failureRotation: Duration { max(configuration.reportInterval * 2, .milliseconds(250)) }

    /// Sends queued batches on one StreamOutcomes call: no stream set-up,
    /// headers or server task per report (5x the reports of unary calls in
    /// docs/BENCHMARKS.md). The call is ended after `rotationBatches` batches
    /// or `rotationPeriod`, or `failureRotation` after a batch with failures,
    /// so its response comes back, then reopened. The reporter's tick wakes
    /// the loop every report interval, so the time is checked even when no
    /// batch comes.
    private func streamReports() async throws {
        let opened = ContinuousClock.now
        let outbox = self.outbox
        let failureRotation = self.failureRotation
        do {
            let response: Fusebox_V1_ReportOutcomesResponse = try await client.call(
                path: "/fusebox.v1.BreakerService/StreamOutcomes"
            ) { call in
                var sent = 0
                var rotateAt = opened + Self.rotationPeriod
                while let delivery = await outbox.next() {
                    if case .batch(let queued) = delivery {
                        try await call.send(queued.bytes)
                        sent += 1
                        if queued.carriesFailures { rotateAt = min(rotateAt, .now + failureRotation) }
                    }
                    if sent >= Self.rotationBatches || (sent > 0 && ContinuousClock.now >= rotateAt) { break }
                    // fuseboxd is shutting down: end here, so the next call goes to another endpoint.
                    if call.serverGoingAway { break }
                }
                try await call.finishSending()
                guard let reply = try await call.next() else { throw RPCError(.internal, "no response to StreamOutcomes") }
                return try Fusebox_V1_ReportOutcomesResponse(decoding: reply)
            }
            contact()
            apply(response)
        } catch {
            logger.debug("outcome stream ended", metadata: ["error": "\(error)"])
            throw error
        }
    }

    private func enterLocalMode(_ guards: [Guard]) {
        state.withLockedValue { $0.mode = .local }
        gauges.mode(.local)
        logger.warning(
            "fuseboxd unreachable beyond the staleness bound; breakers run locally",
            metadata: ["bound": "\(configuration.stalenessBound)"])
        let now = wallNow()
        for g in guards {
            let rt = g.runtime.load(ordering: .acquiring)
            if let breaker = rt.breaker, let cb = rt.policy.circuitBreaker { breaker.enterLocal(policy: cb, now: now) }
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

/// A bounded queue of encoded outcome batches between the reporter and the
/// StreamOutcomes call. When full, the oldest batch is dropped: newer counts
/// matter more, and the server ignores stale generations anyway.
final class ReportOutbox: Sendable {
    /// One encoded batch.
    struct QueuedBatch: Sendable {
        var bytes: [UInt8]
        /// The batch counts failures (or failed probes): the call carrying it
        /// should end soon, so a trip below quorum in its response comes back.
        var carriesFailures: Bool
    }

    /// What `next()` hands the StreamOutcomes call.
    enum Delivery: Sendable {
        /// A batch to send.
        case batch(QueuedBatch)
        /// No batch, but time passed: check whether to end the call.
        case tick
    }

    private struct State {
        var items: [QueuedBatch] = []
        var waiter: CheckedContinuation<Delivery?, Never>?
        var closed = false
    }

    private let state = NIOLockedValueBox(State())
    static let capacity = 64

    func push(_ batch: QueuedBatch) {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Delivery?, Never>? in
            guard !s.closed else { return nil }
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            if s.items.count >= Self.capacity { s.items.removeFirst() }
            s.items.append(batch)
            return nil
        }
        waiter?.resume(returning: .batch(batch))
    }

    /// Wakes a waiting `next()` with `.tick`; nothing if none is waiting.
    func tick() {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Delivery?, Never>? in
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: .tick)
    }

    /// The next batch, or a tick; nil once closed or when the waiting task is cancelled.
    func next() async -> Delivery? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Delivery?, Never>) in
                let ready = state.withLockedValue { s -> Delivery?? in
                    if !s.items.isEmpty { return .some(.batch(s.items.removeFirst())) }
                    if s.closed || Task.isCancelled { return .some(nil) }
                    s.waiter = continuation
                    return .none
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLockedValue { s -> CheckedContinuation<Delivery?, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Removes and returns every queued batch.
    func drain() -> [QueuedBatch] {
        state.withLockedValue { s in
            defer { s.items = [] }
            return s.items
        }
    }

    /// Wakes a waiting `next()` with nil; later pushes are dropped.
    func close() {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Delivery?, Never>? in
            s.closed = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }
}
