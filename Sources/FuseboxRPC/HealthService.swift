public import FuseboxWire
import NIOConcurrencyHelpers

/// The standard `grpc.health.v1.Health` service: `Check` answers with a
/// service's status (NOT_FOUND for an unknown name); `Watch` streams it, then
/// every change, and says SERVICE_UNKNOWN for an unknown name.
public final class HealthService: Sendable {
    /// A serving status.
    public typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

    private struct State {
        var statuses: [String: Status] = ["": .serving]
        var watchers: [UInt64: (service: String, continuation: AsyncStream<Status>.Continuation)] = [:]
        var nextID: UInt64 = 0
    }

    private let state = NIOLockedValueBox(State())

    /// The server as a whole (service "") is SERVING.
    public init() {}

    /// Sets the status of `service` ("" for the whole server) and tells its watchers.
    public func setStatus(_ status: Status, for service: String = "") {
        let watchers = state.withLockedValue { s in
            s.statuses[service] = status
            return s.watchers.values.filter { $0.service == service }.map(\.continuation)
        }
        for watcher in watchers { watcher.yield(status) }
    }

    /// The status of `service` ("" for the whole server), nil for an unknown name.
    public func status(of service: String = "") -> Status? {
        state.withLockedValue { $0.statuses[service] }
    }

    /// Marks everything NOT_SERVING and ends every watch (server shutdown).
    public func shutdown() {
        let watchers = state.withLockedValue { s in
            for key in s.statuses.keys { s.statuses[key] = .notServing }
            defer { s.watchers = [:] }
            return s.watchers.values.map(\.continuation)
        }
        for watcher in watchers {
            watcher.yield(.notServing)
            watcher.finish()
        }
    }

    /// Registers `Check` and `Watch` on `router`.
    public func register(on router: inout RPCRouter) {
        router.unary("grpc.health.v1.Health", "Check") { [self] (request: Grpc_Health_V1_HealthCheckRequest, _) in
            guard let status = state.withLockedValue({ $0.statuses[request.service] }) else {
                throw RPCError(.notFound, "unknown service \"\(request.service)\"")
            }
            var response = Grpc_Health_V1_HealthCheckResponse()
            response.status = status
            return response
        }
        router.serverStreaming("grpc.health.v1.Health", "Watch") {
            [self] (request: Grpc_Health_V1_HealthCheckRequest, writer: RPCStreamWriter<Grpc_Health_V1_HealthCheckResponse>, _) in
            let (stream, continuation) = AsyncStream<Status>.makeStream(bufferingPolicy: .bufferingNewest(8))
            let id = state.withLockedValue { s -> UInt64 in
                s.nextID += 1
                s.watchers[s.nextID] = (request.service, continuation)
                continuation.yield(s.statuses[request.service] ?? .serviceUnknown)
                return s.nextID
            }
            defer { _ = state.withLockedValue { $0.watchers.removeValue(forKey: id) } }
            for await status in stream {
                var response = Grpc_Health_V1_HealthCheckResponse()
                response.status = status
                try await writer.send(response)
            }
        }
    }
}
