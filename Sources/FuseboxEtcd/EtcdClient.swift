import FuseboxRPC
import FuseboxTLS
import FuseboxWire
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix

/// A client of an etcd v3 cluster over gRPC (`FuseboxRPC`, HTTP/2 with or
/// without TLS): keys, transactions, watches and leases.
///
/// It talks to one endpoint at a time. When that endpoint is unreachable,
/// drops the connection or answers that it has no leader, the request moves
/// to the next endpoint after a jittered backoff; a request gives up after
/// `EtcdConfiguration.retryTimeout`. Which requests are retried, and why that
/// is safe, is in docs/ETCD.md. Keys are used as given: a key prefix
/// (namespace) is the caller's business.
public final class EtcdClient: Sendable {
    /// One endpoint with its connection.
    struct Member: Sendable {
        let index: Int
        let endpoint: EtcdEndpoint
        let rpc: RPCClient
    }

    /// The configuration.
    public let configuration: EtcdConfiguration
    let members: [Member]
    /// Which member requests go to, and the delays between attempts: the same
    /// rotation as fuseboxd's clients (`FuseboxRPC.RPCEndpointRotation`).
    private let rotation: NIOLockedValueBox<RPCEndpointRotation>

    /// gRPC metadata etcd's own client sends so that a member without a
    /// leader refuses a stream instead of leaving it silent.
    static let requireLeader: RPCMetadata = {
        var metadata = RPCMetadata()
        metadata.add("hasleader", "true")
        return metadata
    }()

    /// A client; nothing connects until the first request.
    ///
    /// - Throws: `EtcdError.Code.invalidArgument` when the TLS files cannot be loaded.
    public init(configuration: EtcdConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws(EtcdError) {
        self.configuration = configuration
        var members: [Member] = []
        for (index, endpoint) in configuration.endpoints.enumerated() {
            var rpc: RPCClientConfiguration
            if let tls = configuration.tls {
                rpc = RPCClientConfiguration(host: endpoint.host, port: endpoint.port, tls: tls, serverName: configuration.serverName)
            } else {
                rpc = .plaintext(host: endpoint.host, port: endpoint.port)
            }
            rpc.connectTimeout = configuration.connectTimeout
            // The client moves to another endpoint at once; a failed one is
            // tried again soon, since members come back after restarts.
            rpc.backoffInitial = .milliseconds(500)
            rpc.backoffMaximum = .seconds(5)
            rpc.keepaliveInterval = configuration.keepaliveInterval
            rpc.keepaliveTimeout = configuration.keepaliveTimeout
            do {
                members.append(Member(index: index, endpoint: endpoint, rpc: try RPCClient(configuration: rpc, group: group)))
            } catch {
                throw EtcdError(.invalidArgument, "TLS configuration for etcd is unusable: \(error.message)", endpoint: endpoint.description)
            }
        }
        self.members = members
        self.rotation = NIOLockedValueBox(
            RPCEndpointRotation(
                count: members.count,
                backoff: RPCBackoff(initial: configuration.backoffInitial, maximum: configuration.backoffMaximum)))
    }

    /// Closes every connection; later requests fail with `unavailable`.
    public func close() async {
        for member in members { await member.rpc.close() }
    }

    /// The endpoint requests go to now.
    public var currentEndpoint: EtcdEndpoint { currentMember().endpoint }

    func currentMember() -> Member { members[rotation.withLockedValue { $0.current }] }

    /// Moves on from `member` to the next endpoint, unless another request already did.
    func abandon(_ member: Member) {
        var random = JitterSource()
        _ = rotation.withLockedValue { $0.failed(member.index, using: &random) }
    }

    /// The delay before retry `attempt` of one request or stream.
    func backoff(attempt: Int) -> Duration {
        var random = JitterSource()
        return configuration.backoff(attempt: attempt, using: &random)
    }

    /// Whether `error` is worth another attempt, and on another endpoint.
    /// Every request FuseboxEtcd sends is safe to repeat (docs/ETCD.md says
    /// why for each), so the rule is the same for reads and writes. Our own
    /// timeout counts: a write forwarded to a leader that just died waits in
    /// etcd until etcd's own, longer, timeout.
    static func retry(_ error: EtcdError) -> (retry: Bool, moveOn: Bool) {
        switch error.code {
        case .unavailable, .noLeader, .deadlineExceeded: return (true, true)
        case .leaderChanged: return (true, false)
        default: return (false, false)
        }
    }

    /// Runs `attempt` on the current endpoint, and again (on the next endpoint
    /// when the failure is the endpoint's) while the failure is retryable and
    /// `retryTimeout` has not passed.
    func withFailover<T: Sendable>(_ attempt: (Member, Duration) async throws(RPCError) -> T) async throws(EtcdError) -> T {
        let deadline = ContinuousClock.now + configuration.retryTimeout
        var attempts = 0
        while true {
            let member = currentMember()
            let remaining = deadline - ContinuousClock.now
            do {
                return try await attempt(member, min(configuration.requestTimeout, max(remaining, .milliseconds(1))))
            } catch {
                var failure = EtcdError(error, endpoint: member.endpoint.description)
                attempts += 1
                let (retry, moveOn) = Self.retry(failure)
                if moveOn { abandon(member) }
                let delay = backoff(attempt: attempts)
                guard retry, !Task.isCancelled, ContinuousClock.now + delay < deadline else {
                    if retry { failure.message += " (gave up after \(attempts) attempts within \(configuration.retryTimeout))" }
                    throw failure
                }
                do { try await Task.sleep(for: delay) } catch { throw EtcdError(.cancelled, "cancelled while waiting to retry") }
            }
        }
    }

    /// A unary request with failover.
    func unary<Request: WireMessage & Sendable, Response: WireMessage & Sendable>(
        _ method: EtcdMethod, _ request: Request, as: Response.Type = Response.self
    ) async throws(EtcdError) -> Response {
        try await withFailover { member, timeout throws(RPCError) in
            try await member.rpc.unary(
                method.service, method.method, request, as: Response.self, options: RPCCallOptions(timeout: timeout, metadata: Self.requireLeader))
        }
    }
}
