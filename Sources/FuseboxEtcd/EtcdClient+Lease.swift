import FuseboxWire

/// A lease etcd granted.
public struct EtcdLease: Sendable, Hashable {
    /// The lease ID, to attach keys with `put(_:_:lease:)`.
    public var id: Int64
    /// The time to live granted, in seconds.
    public var ttl: Int64
    /// The store's revision when it was granted.
    public var revision: Int64

    /// A lease known by its ID (say, granted by an earlier run), with its TTL in seconds.
    public init(id: Int64, ttl: Int64, revision: Int64 = 0) {
        self.id = id
        self.ttl = ttl
        self.revision = revision
    }
}

extension EtcdClient {
    /// Grants a lease that expires `ttl` seconds after its last renewal.
    ///
    /// - Throws: `EtcdError`. Retried on connection loss and leader changes;
    ///   a retry after an attempt that was applied after all leaves an unused
    ///   lease behind, which expires after `ttl`.
    public func grantLease(ttl: Int64) async throws(EtcdError) -> EtcdLease {
        guard ttl > 0 else { throw EtcdError(.invalidArgument, "lease ttl \(ttl) must be at least 1 second") }
        var request = Etcdserverpb_LeaseGrantRequest()
        request.ttl = ttl
        let response = try await unary(.leaseGrant, request, as: Etcdserverpb_LeaseGrantResponse.self)
        guard response.error.isEmpty else { throw EtcdError(.other, "etcd refused the lease: \(response.error)") }
        return EtcdLease(id: response.id, ttl: response.ttl, revision: response.header?.revision ?? 0)
    }

    /// Revokes a lease now, deleting every key attached to it.
    ///
    /// - Throws: `EtcdError` (`.leaseNotFound` when it had already expired).
    ///   Retried on connection loss and leader changes.
    public func revokeLease(_ id: Int64) async throws(EtcdError) {
        var request = Etcdserverpb_LeaseRevokeRequest()
        request.id = id
        _ = try await unary(.leaseRevoke, request, as: Etcdserverpb_LeaseRevokeResponse.self)
    }

    /// A keepalive for `lease`: renews it every third of its TTL on a
    /// long-lived stream while the returned value's `run()` runs, and
    /// reports renewals and loss through its `events`.
    public func keepAlive(_ lease: EtcdLease) -> EtcdLeaseKeepAlive {
        EtcdLeaseKeepAlive(client: self, lease: lease)
    }
}
