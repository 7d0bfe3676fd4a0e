import FuseboxAPI
import FuseboxCore
public import FuseboxAuthority
public import FuseboxRPC
import FuseboxWire
import NIOConcurrencyHelpers

/// `fusebox.v1.BreakerService`: authorization, validation and the mapping
/// between messages and the authority's domain values. The decisions are the
/// authority's.
public struct BreakerService: Sendable {
    let authority: any BreakerAuthority
    let authorizer: Authorizer
    /// Transitions are encoded once for all watchers.
    let frames = FrameCache()
    /// Replicated mode: where decisions are made (nil: here).
    public var routing: (any DecisionRouting)?
    /// Replicated mode: gathers reports for the leader.
    public var forwarder: ReportForwarder?

    /// The service over `authority`.
    public init(authority: any BreakerAuthority, authorizer: Authorizer) {
        self.authority = authority
        self.authorizer = authorizer
    }

    /// Registers the service's methods on `router`.
    public func register(on router: inout RPCRouter) {
        let service = "fusebox.v1.BreakerService"
        router.unary(service, "ReportOutcomes") { (batch: Fusebox_V1_OutcomeBatch, context) in
            try authorizer.require(.reporter, context)
            let decoded = try Self.domain(batch)
            if let leader = try routing?.leader(), let forwarder {
                return try await forwarder.forward(batch, to: leader)
            }
            return try await Self.reportHere(decoded, authority: authority)
        }
        router.clientStreaming(service, "StreamOutcomes") { (batches: RPCMessageStream<Fusebox_V1_OutcomeBatch>, context) in
            try authorizer.require(.reporter, context)
            var total = Fusebox_V1_ReportOutcomesResponse()
            // States are read once, at the end, for every breaker the stream named.
            var touched = Set<BreakerKey>()
            var unavailable: RPCError?
            for try await batch in batches {
                let decoded = try Self.domain(batch)
                let response: Fusebox_V1_ReportOutcomesResponse
                if let leader = try routing?.leader(), let forwarder {
                    response = try await forwarder.forward(batch, to: leader)
                } else {
                    let result = await authority.report(decoded.report)
                    unavailable = unavailable ?? Self.unavailable(in: result, of: decoded)
                    response = Self.response(result, of: decoded, states: false)
                }
                total.accepted += response.accepted
                total.stale += response.stale
                total.rejected += response.rejected
                total.duplicate = total.duplicate || response.duplicate
                total.belowQuorum += response.belowQuorum
                for entry in decoded.report.breakers { touched.insert(entry.key) }
            }
            total.states = authority.views(of: touched).map(WireConversions.status)
            if let unavailable { throw unavailable }
            return total
        }
        if routing != nil {
            router.unary("fusebox.v1.ReplicaService", "ForwardReports") { (request: Fusebox_V1_ForwardedReports, context) in
                try authorizer.require(.replica, context)
                guard request.batches.count <= ReportForwarder.maximumBatches else {
                    throw WireConversions.invalid("batches", "\(request.batches.count) batches; at most \(ReportForwarder.maximumBatches) per call")
                }
                var result = Fusebox_V1_ForwardedReportsResult()
                for batch in request.batches {
                    var answer = Fusebox_V1_ForwardedReport()
                    do throws(RPCError) {
                        answer.response = try await Self.reportHere(try Self.domain(batch), authority: authority)
                    } catch {
                        answer.code = UInt32(error.code.rawValue)
                        answer.message = error.message
                    }
                    result.results.append(answer)
                }
                return result
            }
        }
        router.unary(service, "AcquirePermit") { (request: Fusebox_V1_AcquirePermitRequest, context) in
            try authorizer.require(.reporter, context)
            if let leader = try routing?.leader() {
                return try await Forwarding.unary(
                    leader, service, "AcquirePermit", request, as: Fusebox_V1_AcquirePermitResponse.self, caller: authorizer.caller(context))
            }
            return try await Self.acquirePermit(request, authority: authority)
        }
        router.serverStreaming(service, "WatchBreakers") {
            (request: Fusebox_V1_WatchBreakersRequest, writer: RPCStreamWriter<Fusebox_V1_BreakerEvent>, context) in
            try authorizer.require(.reader, context)
            try routing?.requireServing()
            if !request.registry.isEmpty { try WireConversions.checkRegistry(request.registry, field: "registry") }
            let sink = BreakerStreamSink(writer: writer, frames: frames)
            let id = authority.watch(BreakerSelector(registry: request.registry, prefix: request.namePrefix), sink: sink)
            defer { authority.unwatch(id) }
            await sink.waitUntilFinished()
        }
        router.unary(service, "GetBreaker") { (request: Fusebox_V1_GetBreakerRequest, context) in
            try authorizer.require(.reader, context)
            let key = try WireConversions.key(request.breaker, field: "breaker")
            // The window and contributions live with the leader's coordinator.
            if let leader = try routing?.leader() {
                return try await Forwarding.unary(
                    leader, service, "GetBreaker", request, as: Fusebox_V1_BreakerDetail.self, caller: authorizer.caller(context))
            }
            guard let detail = authority.detail(key) else { throw RPCError(.notFound, "breaker \(key) does not exist") }
            return WireConversions.detail(detail)
        }
        router.unary(service, "ListBreakers") { (request: Fusebox_V1_ListBreakersRequest, context) in
            try authorizer.require(.reader, context)
            var problems = ViolationCollector()
            if !request.registry.isEmpty { try problems.check { () throws(RPCError) in try WireConversions.checkRegistry(request.registry, field: "registry") } }
            let size = try problems.check { () throws(RPCError) in try WireConversions.pageSize(request.pageSize, field: "page_size") }
            // The token is the last key returned, "registry/name"; registry names
            // have no "/", so the first one splits it. Compared as keys, the
            // order the list is sorted in, never as strings.
            let slash = request.pageToken.firstIndex(of: "/")
            if !request.pageToken.isEmpty, slash == nil {
                problems.add("page_token", "(\"\(request.pageToken.prefix(300))\") is not a token this server gave")
            }
            let pageSize = try problems.result(size ?? 0)
            var all = authority.views(BreakerSelector(registry: request.registry, prefix: request.namePrefix))
            if let slash {
                let last = BreakerKey(registry: String(request.pageToken[..<slash]), name: String(request.pageToken[request.pageToken.index(after: slash)...]))
                all = Array(all.drop { $0.key <= last })
            }
            var response = Fusebox_V1_ListBreakersResponse()
            response.breakers = all.prefix(pageSize).map(WireConversions.status)
            if all.count > pageSize, let last = all.prefix(pageSize).last {
                response.nextPageToken = "\(last.key.registry)/\(last.key.name)"
            }
            return response
        }
    }

    /// Asks the authority for a probe permit and answers with its decision.
    ///
    /// A function of its own, not the body of the registered closure: with
    /// that body inline in the closure, Swift 6.3.1's optimised build
    /// corrupted the answer (a `String` with garbage bits in `reason`, or a
    /// damaged task allocation) when 100 breakers half-opened under permit
    /// requests (`scripts/bench --only 7 --quick --cycle-probes`, 5 of 5
    /// runs). The same code built without optimisation for this module, or
    /// moved here, runs clean (5 of 5); see docs/BENCHMARKS.md.
    static func acquirePermit(_ request: Fusebox_V1_AcquirePermitRequest, authority: any BreakerAuthority) async throws(RPCError) -> Fusebox_V1_AcquirePermitResponse {
        let key = try WireConversions.key(request.breaker, field: "breaker")
        let answer: PermitAnswer
        switch await authority.permit(key) {
        case .success(let a): answer = a
        case .failure(let error): throw WireConversions.status(error)
        }
        var response = Fusebox_V1_AcquirePermitResponse()
        response.generation = answer.status.generation.value
        response.state = WireConversions.state(answer.status.state)
        switch answer.decision {
        case .granted(let grant):
            response.granted = true
            response.permitId = grant.id
            response.expiresInMs = UInt32(clamping: max(0, grant.expiresAt.milliseconds(since: answer.at)))
        case .denied(let denial):
            response.retryAfterMs = UInt32(clamping: max(0, denial.retryAfterMs ?? 0))
            response.reason = denial.reason
        }
        return response
    }

    /// A request's batch in domain terms, with the entries refused on their
    /// own: `report.breakers[i]` is the request's `breakers[wireIndex[i]]`, so
    /// problems found later name the entry as sent.
    struct DecodedBatch {
        var report: OutcomeBatchReport
        /// The refused entries' violations, with each entry's index in the request.
        var rejected: [(index: Int, violation: Fusebox_V1_FieldViolation)]
        var wireIndex: [Int]
    }

    /// The domain batch of a request, and the entries refused on their own.
    static func domain(_ batch: Fusebox_V1_OutcomeBatch) throws(RPCError) -> DecodedBatch {
        var problems = ViolationCollector()
        if !(1...253).contains(batch.clientId.utf8.count) { problems.add("client_id", "required: 1-253 bytes") }
        if batch.breakers.count > 10_000 { problems.add("breakers", "\(batch.breakers.count) entries; at most 10000 per batch") }
        try problems.throwIfAny()
        var entries: [ReportedBreaker] = []
        var rejected: [(index: Int, violation: Fusebox_V1_FieldViolation)] = []
        var wireIndex: [Int] = []
        for (i, entry) in batch.breakers.enumerated() {
            let key: BreakerKey
            do throws(RPCError) {
                key = try WireConversions.key(entry.breaker, field: "breakers[\(i)].breaker")
            } catch {
                rejected.append(contentsOf: WireConversions.violations(of: error).map { (i, $0) })
                continue
            }
            wireIndex.append(i)
            let report = OutcomeReport(
                client: batch.clientId, generation: BreakerGeneration(entry.generation), counts: BreakerMapping.counts(entry.counts),
                trailingConsecutiveFailures: Int(entry.trailingConsecutiveFailures),
                probes: entry.probes.map { ProbeResult(permitID: $0.permitId, outcome: BreakerMapping.outcome($0.outcome)) })
            entries.append(ReportedBreaker(key: key, policy: entry.policy.isEmpty ? nil : entry.policy, report: report))
        }
        var report = OutcomeBatchReport(
            client: batch.clientId, incarnation: batch.incarnation, sequence: batch.sequence, final: batch.final, breakers: entries)
        report.local = batch.mode == .local
        return DecodedBatch(report: report, rejected: rejected, wireIndex: wireIndex)
    }

    /// The response to `decoded`, counted as `result`; violations in the
    /// order of the request's entries.
    static func response(_ result: ReportResult, of decoded: DecodedBatch, states: Bool) -> Fusebox_V1_ReportOutcomesResponse {
        let batch = decoded.report
        var response = Fusebox_V1_ReportOutcomesResponse()
        response.duplicate = result.duplicate
        response.accepted = UInt32(clamping: result.accepted)
        response.stale = UInt32(clamping: result.stale)
        var rejected = decoded.rejected
        for (index, error) in result.rejected {
            let wire = decoded.wireIndex[index]
            let field = "breakers[\(wire)]" + (error.field.isEmpty ? "" : ".\(error.field)")
            rejected.append((wire, WireConversions.violation(field, error.message)))
        }
        // Stable: an entry's own violations keep their order.
        response.rejected = rejected.enumerated().sorted { ($0.element.index, $0.offset) < ($1.element.index, $1.offset) }.map(\.element.violation)
        response.belowQuorum = result.belowQuorum.map { trip in
            var w = Fusebox_V1_BelowQuorumTrip()
            w.breaker = WireConversions.ref(trip.key)
            w.reason = trip.reason
            w.openMs = UInt32(clamping: trip.openMs)
            w.generation = trip.generation.value
            return w
        }
        if states {
            response.states = batch.breakers.indices.compactMap { result.views[$0].map(WireConversions.status) }
        }
        if result.stale + response.rejected.count > 0 { ServerMetrics.rejected(result.stale + response.rejected.count) }
        if !result.duplicate {
            for entry in batch.breakers { ServerMetrics.report(entry.report.counts) }
        }
        return response
    }

    /// A report whose breaker change could not be stored answers UNAVAILABLE.
    /// UNAVAILABLE when a breaker's change could not be stored, or this
    /// replica does not decide (any more): the client must retry the batch.
    static func unavailable(in result: ReportResult, of decoded: DecodedBatch) -> RPCError? {
        guard let (index, error) = result.rejected.first(where: { $0.1.code == .unavailable }) else { return nil }
        return RPCError(.unavailable, "breakers[\(decoded.wireIndex[index])]: \(error.message)")
    }

    /// One batch counted by this process's authority, as `ReportOutcomes` answers it.
    static func reportHere(_ decoded: DecodedBatch, authority: any BreakerAuthority) async throws(RPCError) -> Fusebox_V1_ReportOutcomesResponse {
        let result = await authority.report(decoded.report)
        if let error = unavailable(in: result, of: decoded) { throw error }
        return Self.response(result, of: decoded, states: true)
    }
}

/// The last transitions' frames, by the coordinator's publish sequence: the
/// first watcher's sink encodes an event, the others reuse the bytes.
final class FrameCache: Sendable {
    private let frames = NIOLockedValueBox<[(UInt64, RPCFrame)]>([])

    func frame(_ event: BreakerTransitionEvent) -> RPCFrame? {
        if let hit = frames.withLockedValue({ $0.first { $0.0 == event.sequence }?.1 }) { return hit }
        var wire = Fusebox_V1_BreakerEvent()
        wire.event = .transition(WireConversions.transition(event))
        guard let bytes = try? wire.encode() else { return nil }
        let frame = RPCFrame(bytes)
        frames.withLockedValue { f in
            if f.count >= 64 { f.removeFirst(f.count - 63) }
            f.append((event.sequence, frame))
        }
        return frame
    }
}

/// A WatchBreakers stream as a watch sink: events are queued on the stream
/// without waiting; a stream that cannot take more refuses them, and the hub
/// sends it a fresh snapshot once it can.
final class BreakerStreamSink: WatchSink, Sendable {
    private let writer: RPCStreamWriter<Fusebox_V1_BreakerEvent>
    private let frames: FrameCache
    private let done = Doorbell()

    init(writer: RPCStreamWriter<Fusebox_V1_BreakerEvent>, frames: FrameCache) {
        self.writer = writer
        self.frames = frames
    }

    func offer(_ event: BreakerWatchEvent) -> Bool {
        let frame: RPCFrame?
        switch event {
        case .snapshot(let views):
            var snapshot = Fusebox_V1_BreakerSnapshot()
            snapshot.breakers = views.map(WireConversions.status)
            var wire = Fusebox_V1_BreakerEvent()
            wire.event = .snapshot(snapshot)
            frame = (try? wire.encode()).map(RPCFrame.init)
        case .transition(let t):
            frame = frames.frame(t)
        }
        guard let frame else { return true }
        return writer.offer(frame)
    }

    var canAccept: Bool { writer.canAccept }

    func finish() { done.close() }

    /// Returns at shutdown or when the call's task is cancelled (the client went away).
    func waitUntilFinished() async {
        while await done.wait() {}
    }
}
