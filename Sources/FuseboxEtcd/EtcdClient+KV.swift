import FuseboxWire

extension EtcdClient {
    /// Reads `key`, or the keys in [key, rangeEnd).
    ///
    /// - Parameters:
    ///   - rangeEnd: exclusive end of the range; nil for the single key;
    ///     `EtcdKeys.prefixEnd(key)` for every key with the prefix `key`.
    ///   - limit: at most this many keys; 0 for all.
    ///   - revision: read the store as of this revision; 0 for the latest.
    ///   - serializable: answer from the connected member without a quorum
    ///     round: faster, possibly stale. false (linearizable) by default.
    /// - Throws: `EtcdError` (`.compacted` when `revision` was compacted away).
    ///   Retried on another endpoint on any transport failure (reads are idempotent).
    public func range(
        _ key: [UInt8], rangeEnd: [UInt8]? = nil, limit: Int64 = 0, revision: Int64 = 0, serializable: Bool = false
    ) async throws(EtcdError) -> EtcdRangeResult {
        let request = Etcdserverpb_RangeRequest(key: key, rangeEnd: rangeEnd, limit: limit, revision: revision, serializable: serializable)
        let response = try await unary(.range, request, as: Etcdserverpb_RangeResponse.self)
        return EtcdRangeResult(response)
    }

    /// Reads one key; nil when it does not exist.
    public func get(_ key: [UInt8], serializable: Bool = false) async throws(EtcdError) -> EtcdKeyValue? {
        try await range(key, serializable: serializable).kvs.first
    }

    /// Writes `key`, attached to `lease` (0: none).
    ///
    /// - Parameter previous: answer with the key as it was before.
    /// - Throws: `EtcdError` (`.leaseNotFound` for an unknown lease). Retried
    ///   on connection loss and leader changes: writing the same value again
    ///   leaves the same state (with a newer revision).
    public func put(_ key: [UInt8], _ value: [UInt8], lease: Int64 = 0, previous: Bool = false) async throws(EtcdError) -> EtcdPutResult {
        let request = Etcdserverpb_PutRequest(key: key, value: value, lease: lease, previous: previous)
        return EtcdPutResult(try await unary(.put, request, as: Etcdserverpb_PutResponse.self))
    }

    /// Deletes `key`, or the keys in [key, rangeEnd).
    ///
    /// - Parameter previous: answer with the deleted keys.
    /// - Throws: `EtcdError`. Retried as `put` is.
    public func deleteRange(_ key: [UInt8], rangeEnd: [UInt8]? = nil, previous: Bool = false) async throws(EtcdError) -> EtcdDeleteResult {
        let request = Etcdserverpb_DeleteRangeRequest(key: key, rangeEnd: rangeEnd, previous: previous)
        return EtcdDeleteResult(try await unary(.deleteRange, request, as: Etcdserverpb_DeleteRangeResponse.self))
    }

    /// A transaction: if every comparison holds, runs `success`, otherwise
    /// `failure`, atomically at one revision. A failed comparison is not an
    /// error: the result says `succeeded == false`.
    ///
    /// - Throws: `EtcdError`. Retried on connection loss and leader changes.
    ///   A compare-and-swap (`EtcdCompare.modRevision`) is safe to retry: if
    ///   the first attempt was applied after all, the retry's comparison fails
    ///   instead of writing twice, so treat a failed CAS after a retry as
    ///   "re-read and check".
    public func txn(
        _ compares: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []
    ) async throws(EtcdError) -> EtcdTxnResult {
        var request = Etcdserverpb_TxnRequest()
        request.compare = compares.map(Etcdserverpb_Compare.init)
        request.success = success.map(Etcdserverpb_RequestOp.init)
        request.failure = failure.map(Etcdserverpb_RequestOp.init)
        return EtcdTxnResult(try await unary(.txn, request, as: Etcdserverpb_TxnResponse.self))
    }

    /// Discards the history before `revision`: reads and watches from older
    /// revisions then fail with `.compacted`.
    ///
    /// - Parameter physical: wait until the space is reclaimed too.
    public func compact(revision: Int64, physical: Bool = false) async throws(EtcdError) -> Int64 {
        var request = Etcdserverpb_CompactionRequest()
        request.revision = revision
        request.physical = physical
        return try await unary(.compact, request, as: Etcdserverpb_CompactionResponse.self).header?.revision ?? 0
    }
}
