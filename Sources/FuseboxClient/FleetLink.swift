import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxWire
import Logging
import Synchronization
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
    let client: RPCClient
    let logger: Logger
    let gauges = ClientGauges()

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
    }

    struct BreakerKey: Hashable, Sendable {
        var registry: String
        var name: String
    }

    private let state: Mutex<State>
    private let flush: AsyncStream<Void>.Continuation
    private let flushes: AsyncStream<Void>
    private let tasks = Mutex<[Task<Void, Never>]>([])
    /// Encoded batches waiting for the StreamOutcomes call.
    private let outbox = ReportOutbox()

    init(configuration: FuseboxConfiguration, client: RPCClient, eventLoop: any EventLoop, policies: PolicySnapshot, logger: Logger) {
        self.configuration = configuration
        self.reportBatchSize = UInt64(max(configuration.reportBatchSize, 1))
        self.eventLoop = eventLoop
        self.deadlines = DeadlineTimer(eventLoop: eventLoop)
        self.client = client
        self.logger = logger
        self.state = Mutex(State(policies: policies))
        (flushes, flush) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        gauges.mode(.fleet)
        gauges.policySource(policies.source)
    }

    func start() {
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
        tasks.withLock { $0 = started }
    }

    func stop() async {
        let running = tasks.withLock { t in
            defer { t = [] }
            return t
        }
        for task in running { task.cancel() }
        flush.finish()
        outbox.close()
        for task in running { await task.value }
        // Batches the stream did not send, and what was counted since, go out as unary calls.
        for bytes in outbox.drain() {
            guard let batch = try? Fusebox_V1_OutcomeBatch(decoding: bytes) else { continue }
            await sendUnary(batch)
        }
        await reportOnce(unary: true)
    }

    func requestFlush() { flush.yield() }

    // MARK: Guards

    var policies: PolicySnapshot { state.withLock { $0.policies } }
    var mode: ClientMode { state.withLock { $0.mode } }

    /// How long the client's view of the fleet has not been confirmed by fuseboxd.
    var staleness: Duration {
        state.withLock { s in s.liveStreams > 0 ? .zero : ContinuousClock.now - s.lastContact }
    }

    func makeGuard(_ name: String, policy policyName: String, registry: String) -> Guard {
        let key = BreakerKey(registry: registry, name: name)
        return state.withLock { s in
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
                name: name, registry: registry, policyName: policyName,
                runtime: GuardRuntime(policy: policy, breaker: breaker, previous: nil, now: wallNow()), link: self)
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
        let (guards, snapshot) = state.withLock { s in (s.guards.filter { $0.key.registry == registry }.map(\.value), s.policies) }
        for g in guards {
            let policy = resolve(g.policyName, registry: registry, in: snapshot)
            let old = g.runtime.load(ordering: .acquiring)
            guard old.policy != policy else { continue }
            let breaker = state.withLock { $0.breakers[BreakerKey(registry: registry, name: g.name)] }
            if let breaker, let cb = policy.circuitBreaker { breaker.updateLocalPolicy(cb, now: wallNow()) }
            g.runtime.store(GuardRuntime(policy: policy, breaker: breaker, previous: old, now: wallNow()), ordering: .releasing)
            logger.info("policy updated", metadata: ["guard": "\(g.name)", "policy": "\(policy.name)"])
        }
    }

    private func breaker(_ registry: String, _ name: String) -> SharedBreaker? {
        state.withLock { $0.breakers[BreakerKey(registry: registry, name: name)] }
    }

    private func guardFor(_ breaker: SharedBreaker) -> Guard? {
        state.withLock { $0.guards[BreakerKey(registry: breaker.registry, name: breaker.name)] }
    }

    // MARK: Connectivity

    private func contact() {
        state.withLock { s in
            s.lastContact = .now
        }
    }

    /// Runs `body` again and again: exponential backoff with full jitter
    /// between failures, reset once a stream was established.
    private func reconnecting(_ what: String, _ body: @Sendable () async throws -> Void) async {
        var failures = 0
        while !Task.isCancelled {
            let opened = state.withLock { $0.lastContact }
            do {
                try await body()
            } catch {
                logger.debug("stream ended", metadata: ["stream": "\(what)", "error": "\(error)"])
            }
            if Task.isCancelled { return }
            if state.withLock({ $0.lastContact }) > opened { failures = 0 }
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
        state.withLock { s in
            s.liveStreams += 1
            s.lastContact = .now
        }
    }

    private func streamClosed() {
        state.withLock { $0.liveStreams -= 1 }
    }

    // MARK: Watches

    private func watchBreakers(_ registry: String) async throws {
        var request = Fusebox_V1_WatchBreakersRequest()
        request.registry = registry
        let opened = Mutex(false)
        defer { if opened.withLock({ $0 }) { streamClosed() } }
        try await client.serverStreaming(
            "fusebox.v1.BreakerService", "WatchBreakers", request, as: Fusebox_V1_BreakerEvent.self
        ) { event in
            if !opened.withLock({ o in defer { o = true }; return o }) { self.streamOpened() }
            self.contact()
            switch event.event {
            case .snapshot(let snapshot):
                self.resync(registry: registry, snapshot.breakers)
            case .transition(let transition):
                guard let status = transition.status, let ref = status.breaker,
                    let breaker = self.breaker(ref.registry, ref.name)
                else { return }
                if let change = breaker.applyFleet(BreakerMapping.status(status)) {
                    self.transitioned(breaker, change, generation: status.generation, reason: transition.reason)
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
        let (breakers, wasLocal) = state.withLock { s in
            (s.breakers.values.filter { $0.registry == registry }, s.mode == .local)
        }
        for breaker in breakers {
            let status = byName[breaker.name].map(BreakerMapping.status)
            if let change = breaker.resync(status) {
                transitioned(breaker, change, generation: status?.generation.value ?? 0, reason: "resynchronised with fuseboxd")
            }
        }
        if wasLocal {
            state.withLock { $0.mode = .fleet }
            gauges.mode(.fleet)
            logger.notice("fuseboxd reachable again; breakers follow the fleet", metadata: ["registry": "\(registry)"])
        }
    }

    private func transitioned(_ breaker: SharedBreaker, _ change: (from: BreakerState, to: BreakerState), generation: UInt64, reason: String) {
        guardFor(breaker)?.metrics.stateChanged(from: change.from, to: change.to)
        logger.info(
            "breaker state changed",
            metadata: [
                "breaker": "\(breaker.name)", "registry": "\(breaker.registry)", "from": "\(change.from.displayName)",
                "to": "\(change.to.displayName)", "generation": "\(generation)", "reason": "\(reason)",
            ])
        configuration.onStateChange?(BreakerStateChange(
            registry: breaker.registry, breaker: breaker.name, from: change.from, to: change.to, generation: generation))
    }

    private func watchRegistry(_ registry: String) async throws {
        var request = Fusebox_V1_WatchRegistryRequest()
        request.registry = registry
        try await client.serverStreaming(
            "fusebox.v1.RegistryService", "WatchRegistry", request, as: Fusebox_V1_RegistryEvent.self
        ) { event in
            self.contact()
            switch event.event {
            case .snapshot(let snapshot):
                self.replaceRegistry(registry, snapshot)
            case .change(let change):
                self.applyChange(registry, change)
            case nil:
                break
            }
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
        let changed = state.withLock { s -> Bool in
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
        let snapshot = state.withLock { s -> Fusebox_V1_RegistrySnapshot in
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
    /// from fuseboxd. Unreachable server: denied (the call is rejected as if OPEN).
    func acquirePermit(_ breaker: SharedBreaker, generation: BreakerGeneration) async -> PermitAnswer {
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
                options: RPCCallOptions(timeout: configuration.permitTimeout))
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
        }
    }

    private func reportOnce(unary: Bool = false) async {
        let (breakers, guards, mode, stale) = state.withLock { s in
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
            entry.probes = probes.map { p in
                var w = Fusebox_V1_ProbeResult()
                w.permitId = p.permitID
                w.outcome = BreakerMapping.wire(p.outcome)
                return w
            }
            batch.breakers.append(entry)
        }
        guard !batch.breakers.isEmpty else { return }
        batch.sequence = state.withLock { s in
            s.sequence += 1
            return s.sequence
        }
        guard unary else {
            // The normal path: onto the open StreamOutcomes call (one per client).
            guard let bytes = try? batch.encode() else { return }
            outbox.push(bytes)
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

    /// States and rejections of a report's response.
    private func apply(_ response: Fusebox_V1_ReportOutcomesResponse) {
        for status in response.states {
            guard let ref = status.breaker, let breaker = breaker(ref.registry, ref.name) else { continue }
            if let change = breaker.applyFleet(BreakerMapping.status(status)) {
                transitioned(breaker, change, generation: status.generation, reason: status.reason)
            }
        }
        for rejected in response.rejected {
            logger.warning("fuseboxd rejected outcomes", metadata: ["field": "\(rejected.field)", "reason": "\(rejected.description)"])
        }
    }

    /// Sends queued batches on one StreamOutcomes call: no stream set-up,
    /// headers or server task per report (5x the reports of unary calls in
    /// docs/BENCHMARKS.md). The call is ended every `streamRotation` batches or
    /// seconds so its response (states, rejections) comes back, then reopened.
    private func streamReports() async throws {
        let opened = ContinuousClock.now
        let outbox = self.outbox
        do {
            let response: Fusebox_V1_ReportOutcomesResponse = try await client.call(
                path: "/fusebox.v1.BreakerService/StreamOutcomes"
            ) { call in
                var sent = 0
                while let bytes = await outbox.next() {
                    try await call.send(bytes)
                    sent += 1
                    if sent >= 1_000 || ContinuousClock.now - opened > .seconds(5) { break }
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
        state.withLock { $0.mode = .local }
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
    private struct State {
        var items: [[UInt8]] = []
        var waiter: CheckedContinuation<[UInt8]?, Never>?
        var closed = false
    }

    private let state = Mutex(State())
    static let capacity = 64

    func push(_ bytes: [UInt8]) {
        let waiter = state.withLock { s -> CheckedContinuation<[UInt8]?, Never>? in
            guard !s.closed else { return nil }
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            if s.items.count >= Self.capacity { s.items.removeFirst() }
            s.items.append(bytes)
            return nil
        }
        waiter?.resume(returning: bytes)
    }

    /// The next batch; nil once closed or when the waiting task is cancelled.
    func next() async -> [UInt8]? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[UInt8]?, Never>) in
                let ready = state.withLock { s -> [UInt8]?? in
                    if !s.items.isEmpty { return .some(s.items.removeFirst()) }
                    if s.closed || Task.isCancelled { return .some(nil) }
                    s.waiter = continuation
                    return .none
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<[UInt8]?, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Removes and returns every queued batch.
    func drain() -> [[UInt8]] {
        state.withLock { s in
            defer { s.items = [] }
            return s.items
        }
    }

    /// Wakes a waiting `next()` with nil; later pushes are dropped.
    func close() {
        let waiter = state.withLock { s -> CheckedContinuation<[UInt8]?, Never>? in
            s.closed = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }
}
