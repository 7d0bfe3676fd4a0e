import FuseboxCore
public import FuseboxRPC
import FuseboxWire

/// `fusebox.v1.BreakerService` over the coordinator.
public struct BreakerService: Sendable {
    let coordinator: BreakerCoordinator
    let authorizer: Authorizer

    /// Registers the service's methods on `router`.
    public func register(on router: inout RPCRouter) {
        let service = "fusebox.v1.BreakerService"
        router.unary(service, "ReportOutcomes") { (batch: Fusebox_V1_OutcomeBatch, context) in
            try authorizer.require(.reporter, context)
            try Self.checkBatch(batch)
            return await coordinator.report(batch)
        }
        router.clientStreaming(service, "StreamOutcomes") { (batches: RPCMessageStream<Fusebox_V1_OutcomeBatch>, context) in
            try authorizer.require(.reporter, context)
            var total = Fusebox_V1_ReportOutcomesResponse()
            // States are read once, at the end, for every breaker the stream named.
            var touched = Set<BreakerCoordinator.Key>()
            for try await batch in batches {
                try Self.checkBatch(batch)
                let response = await coordinator.report(batch, states: false)
                total.accepted += response.accepted
                total.stale += response.stale
                total.rejected += response.rejected
                for entry in batch.breakers {
                    guard let ref = entry.breaker, !ref.name.isEmpty else { continue }
                    touched.insert(BreakerCoordinator.Key(ref))
                }
            }
            total.states = coordinator.statuses(of: touched)
            return total
        }
        router.unary(service, "AcquirePermit") { (request: Fusebox_V1_AcquirePermitRequest, context) in
            try authorizer.require(.reporter, context)
            return try await coordinator.acquirePermit(request)
        }
        router.serverStreaming(service, "WatchBreakers") {
            (request: Fusebox_V1_WatchBreakersRequest, writer: RPCStreamWriter<Fusebox_V1_BreakerEvent>, context) in
            try authorizer.require(.reader, context)
            try await coordinator.watch(registry: request.registry, prefix: request.namePrefix, writer: writer)
        }
        router.unary(service, "GetBreaker") { (request: Fusebox_V1_GetBreakerRequest, context) in
            try authorizer.require(.reader, context)
            guard let ref = request.breaker, let detail = coordinator.detail(ref.registry, ref.name) else {
                throw RPCError(.notFound, "breaker \(request.breaker?.registry ?? "")/\(request.breaker?.name ?? "") does not exist")
            }
            return detail
        }
        router.unary(service, "ListBreakers") { (request: Fusebox_V1_ListBreakersRequest, context) in
            try authorizer.require(.reader, context)
            let all = coordinator.statuses(registry: request.registry, prefix: request.namePrefix)
            let size = request.pageSize == 0 ? 100 : min(Int(request.pageSize), 1_000)
            let start = request.pageToken.isEmpty ? all.startIndex
                : (all.firstIndex { "\($0.breaker?.registry ?? "")/\($0.breaker?.name ?? "")" > request.pageToken } ?? all.endIndex)
            var response = Fusebox_V1_ListBreakersResponse()
            response.breakers = Array(all[start..<min(start + size, all.endIndex)])
            if start + size < all.endIndex, let last = response.breakers.last {
                response.nextPageToken = "\(last.breaker?.registry ?? "")/\(last.breaker?.name ?? "")"
            }
            return response
        }
    }

    static func checkBatch(_ batch: Fusebox_V1_OutcomeBatch) throws(RPCError) {
        guard (1...253).contains(batch.clientId.utf8.count) else {
            throw RPCError(.invalidArgument, "client_id: required, 1-253 bytes")
        }
        guard batch.breakers.count <= 10_000 else {
            throw RPCError(.invalidArgument, "breakers: \(batch.breakers.count) entries; at most 10000 per batch")
        }
    }
}
