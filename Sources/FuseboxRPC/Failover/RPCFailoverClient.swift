public import FuseboxTLS
public import FuseboxWire
import NIOConcurrencyHelpers
public import NIOCore

/// A gRPC client of a service with several endpoints (replicas), with the
/// call API of `RPCClient`. It keeps one `RPCClient` per endpoint, sends
/// every call to the current endpoint (`RPCEndpointRotation`), and moves to
/// the next one when a call fails there with UNAVAILABLE: the endpoint is
/// unreachable, the connection was lost or closed (GOAWAY, keepalive), or
/// the server answered UNAVAILABLE.
///
/// A call is retried on the next endpoint, after a jittered backoff
/// (`RPCBackoff`), only when no server processed it
/// (`RPCCallProgress.reachedNoServer`):
/// - the connection or the TLS handshake failed, or the connection was going
///   away, so no stream was opened;
/// - the server refused the stream (RST_STREAM REFUSED_STREAM, or a GOAWAY
///   whose last stream id is below the stream's);
/// - the server answered UNAVAILABLE before any response (trailers-only), by
///   gRPC's convention a call it did not run.
///
/// A call whose stream was open when the connection broke is not retried,
/// whatever its kind: the server may have run it. It fails with UNAVAILABLE,
/// and the next call goes to the next endpoint. Long-lived streams (watches)
/// are reopened by their owner, which knows where to resume.
///
/// Each call tries each endpoint at most once, so a call fails after one
/// round when every endpoint is down; with `RPCCallOptions.waitForReady` it
/// keeps going round, with backoff, until its timeout. With one endpoint it
/// behaves exactly as that endpoint's `RPCClient`.
public final class RPCFailoverClient: Sendable {
    /// The endpoints, in order of preference.
    public let endpoints: RPCEndpoints
    let members: [RPCClient]
    private let rotation: NIOLockedValueBox<RPCEndpointRotation>

    /// The default delays between attempts on different endpoints: 50 ms
    /// doubling to 2 s, drawn from the upper half of each step.
    public static let defaultBackoff = RPCBackoff(initial: .milliseconds(50), maximum: .seconds(2))

    /// A client of `endpoints`, each reached with `configuration` (its host
    /// and port replaced; `serverName`, when nil, is each endpoint's host).
    /// Nothing connects until the first call.
    public init(
        configuration: RPCClientConfiguration, endpoints: RPCEndpoints,
        backoff: RPCBackoff = RPCFailoverClient.defaultBackoff,
        group: any EventLoopGroup
    ) throws(TLSError) {
        var members: [RPCClient] = []
        for endpoint in endpoints.all {
            var c = configuration
            c.host = endpoint.host
            c.port = endpoint.port
            members.append(try RPCClient(configuration: c, group: group))
        }
        self.endpoints = endpoints
        self.members = members
        self.rotation = NIOLockedValueBox(RPCEndpointRotation(count: members.count, backoff: backoff))
    }

    /// A client of the one endpoint `client` talks to (no failover).
    public init(_ client: RPCClient) {
        self.endpoints = RPCEndpoints(RPCEndpoint(host: client.configuration.host, port: client.configuration.port))
        self.members = [client]
        self.rotation = NIOLockedValueBox(RPCEndpointRotation(count: 1, backoff: Self.defaultBackoff))
    }

    /// The endpoint calls go to now.
    public var currentEndpoint: RPCEndpoint { endpoints.all[rotation.withLockedValue { $0.current }] }

    /// Closes every connection; later calls fail with UNAVAILABLE.
    public func close() async {
        for member in members { await member.close() }
    }

    /// Runs one call (see `RPCClient.call`) on the current endpoint, and on
    /// the next ones while it failed without reaching a server (see the type's
    /// documentation). The timeout covers every attempt and the waits between them.
    public func call<Result: Sendable>(
        path: String, options: RPCCallOptions = RPCCallOptions(),
        _ body: @escaping @Sendable (RPCClientCall) async throws -> Result
    ) async throws(RPCError) -> Result {
        let deadline = options.timeout.map { ContinuousClock.now + $0 }
        // One endpoint: its client does what it always did, waitForReady included.
        let budget = members.count == 1 ? 1 : (options.waitForReady ? Int.max : members.count)
        var attempts = 0
        var tried: [String] = []
        while true {
            var index = rotation.withLockedValue { $0.current }
            if members.count > 1, attempts == 0, members[index].connectionGoingAway {
                // The current endpoint sent GOAWAY: it is shutting down, so
                // move on before starting (its open calls may still finish there).
                var random = JitterSource()
                index = rotation.withLockedValue { r in
                    _ = r.failed(index, using: &random)
                    return r.current
                }
            }
            var attempt = options
            if let deadline { attempt.timeout = deadline - ContinuousClock.now }
            // Several endpoints: waiting happens here, across them, not on one.
            if members.count > 1 { attempt.waitForReady = false }
            let progress = RPCCallProgress()
            do {
                let result = try await members[index].call(path: path, options: attempt, progress: progress, body)
                rotation.withLockedValue { $0.succeeded(index) }
                return result
            } catch {
                attempts += 1
                tried.append(endpoints.all[index].description)
                guard error.code == .unavailable else {
                    // The server answered (or the deadline passed): not the endpoint's fault.
                    if error.code != .deadlineExceeded, error.code != .cancelled {
                        rotation.withLockedValue { $0.succeeded(index) }
                    }
                    throw error
                }
                var random = JitterSource()
                let delay = rotation.withLockedValue { $0.failed(index, using: &random) }
                guard progress.reachedNoServer, attempts < budget, !Task.isCancelled else {
                    throw Self.annotated(error, tried: tried, of: members.count)
                }
                if let deadline, ContinuousClock.now + delay >= deadline {
                    throw Self.annotated(error, tried: tried, of: members.count)
                }
                do { try await Task.sleep(for: delay) } catch {
                    throw RPCError(.cancelled, "cancelled while waiting to try the next endpoint")
                }
            }
        }
    }

    /// With several endpoints, the last error with the endpoints tried.
    static func annotated(_ error: RPCError, tried: [String], of count: Int) -> RPCError {
        guard count > 1 else { return error }
        var e = error
        let unique = tried.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        e.message += " (tried \(unique.count) of \(count) endpoints: \(unique.joined(separator: ", ")))"
        return e
    }

    /// A unary call with typed messages, with failover.
    public func unary<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String, _ request: Request, as: Response.Type = Response.self,
        options: RPCCallOptions = RPCCallOptions()
    ) async throws(RPCError) -> Response {
        let bytes = try encodeRequest(request)
        let limits = WireLimits(maxMessageBytes: members[0].configuration.maximumReceiveMessageBytes)
        return try await call(path: "/\(service)/\(method)", options: options) { call in
            try await call.send(bytes, end: true)
            guard let reply = try await call.next() else {
                throw RPCError(.internal, "the server sent no response message")
            }
            guard try await call.next() == nil else {
                throw RPCError(.internal, "the server sent more than one response message")
            }
            return try decodeResponse(Response.self, reply, limits: limits)
        }
    }

    /// A server-streaming call: `onMessage` sees each response. Opening the
    /// stream fails over; a stream that broke after it opened is not reopened
    /// (the caller resumes it, from where it knows).
    public func serverStreaming<Request: WireMessage, Response: WireMessage>(
        _ service: String, _ method: String, _ request: Request, as: Response.Type = Response.self,
        options: RPCCallOptions = RPCCallOptions(), onMessage: @escaping @Sendable (Response) async throws -> Void
    ) async throws(RPCError) {
        let bytes = try encodeRequest(request)
        let limits = WireLimits(maxMessageBytes: members[0].configuration.maximumReceiveMessageBytes)
        try await call(path: "/\(service)/\(method)", options: options) { call in
            try await call.send(bytes, end: true)
            while let reply = try await call.next() {
                try await onMessage(try decodeResponse(Response.self, reply, limits: limits))
            }
        }
    }
}
