import Foundation
public import FuseboxAuthority
public import FuseboxCore
public import FuseboxRPC
public import FuseboxTLS
import FuseboxWire

/// Where a breaker decision is made: here (nil), or by the leader this
/// client reaches. Replicated fuseboxd answers with its `ReplicaNode`; the
/// single server decides everything itself and has none.
public protocol DecisionRouting: Sendable {
    /// nil when this process decides; the leader's client otherwise.
    /// Throws UNAVAILABLE when no leader is known.
    func leader() throws(RPCError) -> RPCClient?
    /// Throws UNAVAILABLE while this replica cannot serve watches (it lost
    /// etcd): clients must not follow a copy that no longer follows etcd.
    func requireServing() throws(RPCError)
}

extension ReplicaNode: DecisionRouting {
    public func leader() throws(RPCError) -> RPCClient? {
        switch role {
        case .leader:
            return nil
        case .follower(let id, let address):
            guard id != settings.replicaId else {
                throw RPCError(.unavailable, "this replica's previous term as leader has not ended yet; retry (another replica may serve now)")
            }
            return try forwarder(to: address)
        case .none(let reason):
            throw RPCError(.unavailable, "no replica leads the breaker decisions right now (\(reason)); retry in a moment")
        }
    }

    public func requireServing() throws(RPCError) {
        guard isServing else {
            throw RPCError(.unavailable, "replica \(settings.replicaId) has lost etcd (NOT_SERVING); its copy may be stale: use another replica")
        }
    }
}

/// Calls a follower forwards to the leader, carrying the original caller.
enum Forwarding {
    /// The original caller of a forwarded call: base64 of its identity as
    /// JSON. Believed only from a caller with the `replica` role.
    static let callerHeader = "fusebox-forwarded-caller"
    /// Time a forwarded call may take.
    static let timeout: Duration = .seconds(10)

    private struct Caller: Codable {
        var commonName: String?
        var dnsNames: [String]
        var uris: [String]
        var ipAddresses: [String]
        var fingerprintSHA256: String
    }

    /// Forwards a unary call to `leader` on behalf of `caller`.
    static func unary<Request: WireMessage, Response: WireMessage>(
        _ leader: RPCClient, _ service: String, _ method: String, _ request: Request, as: Response.Type, caller: TLSPeerIdentity?
    ) async throws(RPCError) -> Response {
        var options = RPCCallOptions(timeout: timeout)
        if let caller, let json = try? JSONEncoder().encode(Caller(
            commonName: caller.commonName, dnsNames: caller.dnsNames, uris: caller.uris, ipAddresses: caller.ipAddresses,
            fingerprintSHA256: caller.fingerprintSHA256))
        {
            options.metadata.add(callerHeader, json.base64EncodedString())
        }
        return try await leader.unary(service, method, request, as: Response.self, options: options)
    }

    /// The identity a forwarded call carries, if any.
    static func caller(in metadata: RPCMetadata) -> TLSPeerIdentity? {
        guard let text = metadata.first(callerHeader), let data = Data(base64Encoded: text),
              let c = try? JSONDecoder().decode(Caller.self, from: data) else { return nil }
        return TLSPeerIdentity(
            commonName: c.commonName, dnsNames: c.dnsNames, uris: c.uris, ipAddresses: c.ipAddresses, fingerprintSHA256: c.fingerprintSHA256)
    }
}

extension Authorizer {
    /// Who a call acts for: its TLS peer, or, when that peer is a replica
    /// forwarding the call, the caller it forwards for.
    public func caller(_ context: RPCServerContext) -> TLSPeerIdentity? {
        guard role(of: context.peer) == .replica, let forwarded = Forwarding.caller(in: context.metadata) else { return context.peer }
        return forwarded
    }
}

/// The breaker authority of a replica: decisions by this replica's
/// coordinator while it leads (callers forward to the leader otherwise, see
/// `DecisionRouting`), reads and watches from its copy of etcd.
public struct ReplicatedAuthority: BreakerAuthority {
    let node: ReplicaNode

    /// The authority of `node`.
    public init(node: ReplicaNode) { self.node = node }

    private var coordinator: BreakerCoordinator? {
        if case .leader(let c) = node.role { return c }
        return nil
    }

    private static let notLeading = CoordinatorError(.unavailable, "this replica does not lead the breaker decisions (any more); retry")

    public func report(_ batch: OutcomeBatchReport) async -> ReportResult {
        if let coordinator { return await coordinator.report(batch) }
        var result = ReportResult()
        result.rejected = batch.breakers.indices.map { ($0, Self.notLeading) }
        return result
    }

    public func permit(_ key: BreakerKey) async -> Result<PermitAnswer, CoordinatorError> {
        guard let coordinator else { return .failure(Self.notLeading) }
        return await coordinator.permit(key)
    }

    public func setOverride(
        _ key: BreakerKey, _ kind: BreakerOverride?, durationMs: UInt32, reason: String, policy: String?, audit: AuditRecord
    ) async throws(CoordinatorError) -> AdminOutcome {
        guard let coordinator else { throw Self.notLeading }
        return try await coordinator.setOverride(key, kind, durationMs: durationMs, reason: reason, policy: policy, audit: audit)
    }

    public func reset(_ key: BreakerKey, reason: String, audit: AuditRecord) async throws(CoordinatorError) -> AdminOutcome {
        guard let coordinator else { throw Self.notLeading }
        return try await coordinator.reset(key, reason: reason, audit: audit)
    }

    public func views(_ selector: BreakerSelector) -> [BreakerView] { node.mirror.views(selector) }

    public func views(of keys: Set<BreakerKey>) -> [BreakerView] { node.mirror.views(of: keys) }

    public func detail(_ key: BreakerKey) -> BreakerDetailView? { coordinator?.detail(key) }

    public func watch(_ selector: BreakerSelector, sink: any WatchSink<BreakerWatchEvent>) -> UInt64 { node.mirror.watch(selector, sink: sink) }

    public func unwatch(_ id: UInt64) { node.mirror.unwatch(id) }

    public var watcherCount: Int { node.mirror.hub.count }
}
