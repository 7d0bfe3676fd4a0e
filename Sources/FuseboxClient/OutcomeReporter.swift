import CoreMetrics
import Atomics
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxWire
import Logging
import NIOConcurrencyHelpers

/// Sends what this client's breakers counted to fuseboxd in batches, every
/// report interval or as soon as one breaker has a batch's worth, on one
/// StreamOutcomes call; applies the states, trips below quorum and
/// duplicates its responses carry. It is also the session's clock: each
/// tick checks the staleness bound (local mode) and ends local opens.
final class OutcomeReporter: Sendable {
    let state: SessionState
    let client: RPCFailoverClient
    let localMode: LocalMode
    /// This run of the process, sent with every batch: it scopes `sequence`,
    /// so fuseboxd counts a restarted process's batches from sequence 1 again.
    let incarnation: UInt64
    /// `configuration.reportBatchSize`, read on every call without copying the configuration.
    let batchSize: UInt64

    private let sequence = NIOLockedValueBox<UInt64>(0)
    /// The mode the last batch said, and when a batch last said LOCAL.
    private let said = NIOLockedValueBox<(mode: ClientMode, localAt: ContinuousClock.Instant?)>((.fleet, nil))
    private let flush: AsyncStream<Void>.Continuation
    private let flushes: AsyncStream<Void>
    /// Encoded batches waiting for the StreamOutcomes call.
    private let outbox = ReportOutbox()

    init(state: SessionState, client: RPCFailoverClient, localMode: LocalMode, incarnation: UInt64) {
        self.state = state
        self.client = client
        self.localMode = localMode
        self.incarnation = incarnation
        self.batchSize = UInt64(max(state.configuration.reportBatchSize, 1))
        (flushes, flush) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks for a report now (a breaker has a batch's worth, or a probe ended).
    func requestFlush() { flush.yield() }

    // MARK: The session's children

    /// Reports on every flush request until cancelled.
    func reportLoop() async {
        for await _ in flushes {
            if Task.isCancelled { return }
            await reportOnce()
            localMode.endLocalOpens(now: wallNow())
            // Lets the StreamOutcomes call check its rotation time even when no batch came.
            outbox.tick()
        }
    }

    /// Asks for a report every report interval until cancelled.
    func tickLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: state.configuration.reportInterval)
            flush.yield()
        }
    }

    /// Keeps a StreamOutcomes call open (reopened with backoff) until
    /// cancelled, or until `endStream()` and the call open then has its response.
    func streamLoop() async {
        let outbox = self.outbox
        await Reconnecting(what: "StreamOutcomes", state: state, until: { outbox.isClosed }).run { try await streamReports() }
    }

    /// No more batches for the stream: the open call finishes sending and
    /// ends with its response; what is queued then goes out in `finish()`.
    func endStream() {
        outbox.close()
    }

    /// After the loops ended: batches the stream did not send (or sent on a
    /// call that failed), and what was counted since, go out as unary calls,
    /// in order; the last one says goodbye (`final`), so fuseboxd forgets
    /// this client at once.
    func finish() async {
        flush.finish()
        outbox.close()
        for queued in outbox.drain() {
            guard let batch = try? Fusebox_V1_OutcomeBatch(decoding: queued.bytes) else { continue }
            await sendUnary(batch)
        }
        await reportOnce(unary: true, final: true)
    }

    // MARK: Reporting

    /// Sends what the breakers counted since the last report: onto the
    /// StreamOutcomes call, or with `unary` as one ReportOutcomes call.
    /// `final` (at shutdown, unary): the batch says goodbye, and is sent even
    /// without outcomes, unless fuseboxd is out of reach (local mode).
    func reportOnce(unary: Bool = false, final: Bool = false) async {
        for g in state.guards {
            if let breaker = g.runtime.load(ordering: .relaxed).breaker { g.metrics.flush(breaker.calls) }
        }
        state.gauges.staleness.record(Double(state.staleness.milliseconds) / 1000)
        if state.fleetIsStale {
            localMode.enter()
            return
        }
        if state.mode == .local {
            localMode.tick(now: wallNow())
            sayLocal()
            return
        }
        var batch = Fusebox_V1_OutcomeBatch()
        batch.clientId = state.configuration.clientID
        batch.incarnation = incarnation
        batch.final = final
        batch.mode = .fleet
        // Back from local mode: say so, even without outcomes, so fuseboxd stops counting this client as local.
        let announce = said.withLockedValue { s in
            defer { s.mode = .fleet }
            return s.mode == .local
        }
        var failures = false
        for breaker in state.breakers {
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
        guard !batch.breakers.isEmpty || final || announce else { return }
        batch.sequence = nextSequence()
        guard unary else {
            // The normal path: onto the open StreamOutcomes call (one per client).
            guard let bytes = try? batch.encode() else { return }
            outbox.push(ReportOutbox.QueuedBatch(bytes: bytes, carriesFailures: failures))
            return
        }
        await sendUnary(batch)
    }

    /// One ReportOutcomes call, tried up to 3 times while fuseboxd answers
    /// with a status worth retrying (a replica failing over, a store that
    /// could not take a breaker's change): the batch keeps its sequence, so
    /// one fuseboxd already counted is answered `duplicate` and not counted twice.
    private func nextSequence() -> UInt64 {
        sequence.withLockedValue { s in
            s += 1
            return s
        }
    }

    /// In local mode, at most once a second: a batch without outcomes (they
    /// belong to the local breakers) that tells fuseboxd this client runs
    /// locally, queued for the StreamOutcomes call, which delivers it if and
    /// when it reaches a server.
    private func sayLocal() {
        let due = said.withLockedValue { s -> Bool in
            s.mode = .local
            guard s.localAt.map({ ContinuousClock.now - $0 >= .seconds(1) }) ?? true else { return false }
            s.localAt = .now
            return true
        }
        guard due else { return }
        var batch = Fusebox_V1_OutcomeBatch()
        batch.clientId = state.configuration.clientID
        batch.incarnation = incarnation
        batch.mode = .local
        batch.sequence = nextSequence()
        guard let bytes = try? batch.encode() else { return }
        outbox.push(ReportOutbox.QueuedBatch(bytes: bytes, carriesFailures: false))
    }

    private func sendUnary(_ batch: Fusebox_V1_OutcomeBatch) async {
        var delay = Duration.milliseconds(100)
        for attempt in 1...3 {
            do {
                let response = try await client.unary(
                    "fusebox.v1.BreakerService", "ReportOutcomes", batch, as: Fusebox_V1_ReportOutcomesResponse.self,
                    options: RPCCallOptions(timeout: state.configuration.reportTimeout))
                state.contact()
                apply(response)
                return
            } catch {
                guard attempt < 3, Self.worthResending(error), !Task.isCancelled else {
                    // By the time fuseboxd is back these outcomes describe the past,
                    // and local mode takes over if it stays away.
                    state.logger.debug("outcome report failed", metadata: ["error": "\(error)", "attempts": "\(attempt)"])
                    return
                }
                try? await Task.sleep(for: delay)
                delay *= 2
            }
        }
    }

    /// Whether a report that failed with `error` may be counted if sent again:
    /// not when fuseboxd refused the batch itself (bad input, no permission).
    static func worthResending(_ error: any Error) -> Bool {
        guard let error = error as? RPCError else { return true }
        switch error.code {
        case .invalidArgument, .permissionDenied, .unauthenticated, .unimplemented, .failedPrecondition, .outOfRange, .notFound,
            .alreadyExists:
            return false
        default:
            return true
        }
    }

    /// States, rejections, duplicates and trips below quorum of a report's response.
    func apply(_ response: Fusebox_V1_ReportOutcomesResponse, now: Timestamp = wallNow()) {
        for status in response.states {
            guard let ref = status.breaker, let breaker = state.breaker(ref.registry, ref.name) else { continue }
            if let change = breaker.applyFleet(BreakerMapping.status(status)) {
                state.transitioned(breaker, change, generation: status.generation, reason: status.reason)
            }
        }
        for rejected in response.rejected {
            state.logger.warning("fuseboxd rejected outcomes", metadata: ["field": "\(rejected.field)", "reason": "\(rejected.description)"])
        }
        if response.duplicate {
            // A retransmission, or batches of a replaced incarnation: the server
            // counted them once already (or never will). Nothing to send again.
            state.logger.debug(
                "fuseboxd had counted a batch already or holds a newer incarnation of this client; not counted again",
                metadata: ["client": "\(state.configuration.clientID)", "incarnation": "\(incarnation)"])
        }
        for trip in response.belowQuorum {
            localMode.openBelowQuorum(trip, now: now)
        }
    }

    // MARK: The StreamOutcomes call

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
    var failureRotation: Duration { max(state.configuration.reportInterval * 2, .milliseconds(250)) }

    /// Sends queued batches on one StreamOutcomes call: no stream set-up,
    /// headers or server task per report (5x the reports of unary calls in
    /// docs/BENCHMARKS.md). The call is ended after `rotationBatches` batches
    /// or `rotationPeriod`, or `failureRotation` after a batch with failures,
    /// so its response comes back, then reopened. The reporter's tick wakes
    /// the loop every report interval, so the time is checked even when no
    /// batch comes. When the call fails (the connection or the replica went
    /// away, fuseboxd could not store a breaker's change), the batches it
    /// carried go back to the head of the queue for the next call, unless
    /// fuseboxd refused them for what they are; each keeps its sequence, so
    /// what a server already counted is answered as a duplicate.
    private func streamReports() async throws {
        let opened = ContinuousClock.now
        let outbox = self.outbox
        let failureRotation = self.failureRotation
        let carried = NIOLockedValueBox<[ReportOutbox.QueuedBatch]>([])
        do {
            let response: Fusebox_V1_ReportOutcomesResponse = try await client.call(
                path: "/fusebox.v1.BreakerService/StreamOutcomes"
            ) { call in
                var sent = 0
                var rotateAt = opened + Self.rotationPeriod
                while let delivery = await outbox.next() {
                    if case .batch(let queued) = delivery {
                        carried.withLockedValue { $0.append(queued) }
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
            state.contact()
            apply(response)
        } catch {
            let unanswered = carried.withLockedValue { $0 }
            if Self.worthResending(error) {
                outbox.requeue(unanswered)
            } else if !unanswered.isEmpty {
                state.logger.warning(
                    "fuseboxd refused a stream of outcome batches; not sent again",
                    metadata: ["batches": "\(unanswered.count)", "error": "\(error)"])
            }
            state.logger.debug("outcome stream ended", metadata: ["error": "\(error)", "batches": "\(unanswered.count)"])
            throw error
        }
    }
}
