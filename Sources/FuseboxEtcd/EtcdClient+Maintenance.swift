import FuseboxRPC
import FuseboxWire

/// One member's view of the cluster, for health checks.
public struct EtcdMemberStatus: Sendable, Hashable {
    /// The endpoint that answered.
    public var endpoint: EtcdEndpoint
    /// etcd's version, e.g. "3.4.23".
    public var version: String
    /// The answering member's ID.
    public var memberID: UInt64
    /// The leader's member ID; 0 when the member knows no leader.
    public var leader: UInt64
    /// The raft term.
    public var raftTerm: UInt64
    /// The store's revision.
    public var revision: Int64
    /// Alarms and errors the member reports.
    public var errors: [String]

    /// Healthy: a leader is known and no errors are reported.
    public var isHealthy: Bool { leader != 0 && errors.isEmpty }
}

extension EtcdClient {
    /// The status of the member at `endpoint` (one of the configured ones),
    /// asked once, without failover: this is how to check one member's health.
    ///
    /// - Throws: `EtcdError` (`.invalidArgument` for an endpoint not configured).
    public func status(of endpoint: EtcdEndpoint) async throws(EtcdError) -> EtcdMemberStatus {
        guard let member = members.first(where: { $0.endpoint == endpoint }) else {
            throw EtcdError(.invalidArgument, "\(endpoint) is not one of the configured endpoints \(configuration.endpoints)")
        }
        do {
            let response = try await member.rpc.unary(
                EtcdMethod.status.service, EtcdMethod.status.method, Etcdserverpb_StatusRequest(), as: Etcdserverpb_StatusResponse.self,
                options: RPCCallOptions(timeout: configuration.requestTimeout))
            return EtcdMemberStatus(
                endpoint: endpoint, version: response.version, memberID: response.header?.memberId ?? 0, leader: response.leader,
                raftTerm: response.raftTerm, revision: response.header?.revision ?? 0, errors: response.errors)
        } catch {
            throw EtcdError(error, endpoint: endpoint.description)
        }
    }
}
