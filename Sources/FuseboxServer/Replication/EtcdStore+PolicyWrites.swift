import Foundation
public import FuseboxAuthority
public import FuseboxCore
import FuseboxEtcd
import NIOConcurrencyHelpers

/// Policy writes on etcd: group commit, one Txn per group of writes.
extension EtcdStore {
    public func putPolicy(
        registry: String, policy: Policy, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64, audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord {
        try await single(.put(registry: registry, policy: policy, expectedVersion: expectedVersion, actor: actor, reason: reason, atMs: atMs, audit: audit))
    }

    public func deletePolicy(
        registry: String, name: String, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64, audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord {
        try await single(.delete(registry: registry, name: name, expectedVersion: expectedVersion, actor: actor, reason: reason, atMs: atMs, audit: audit))
    }

    func single(_ write: PolicyWrite) async throws(StoreError) -> PolicyChangeRecord {
        guard let result = await writePolicies([write]).first else { throw StoreError(.internal, "a policy write was not answered") }
        return try result.get()
    }

    /// Writes in one etcd transaction at most (each a registry version, a
    /// history entry and an audit entry): etcd allows 128 operations in one.
    public static let groupLimit = 24
    /// Bytes of values in one transaction: no write joins a group once it
    /// holds this many (so a group ends at most one write past it; etcd
    /// refuses requests over 1.5 MiB by default).
    static let groupBytes = 512 * 1024

    /// Group commit: the writes, in order, in as few transactions as etcd's
    /// limits allow (one, for a replica's usual group), each compared on
    /// everything it read and sent again, read afresh, when another replica
    /// wrote in between. A refused write (version conflict, not found) is
    /// answered alone and takes no version; the others still go.
    public func writePolicies(_ writes: [PolicyWrite]) async -> [Result<PolicyChangeRecord, StoreError>] {
        var results: [Result<PolicyChangeRecord, StoreError>] = []
        var rest = writes[...]
        while !rest.isEmpty {
            do throws(StoreError) {
                let done = try await writeGroup(rest.prefix(groupSize))
                results += done
                rest = rest.dropFirst(done.count)
            } catch {
                // The store itself failed: no later write of the group went either.
                results += rest.map { _ in .failure(error) }
                rest = []
            }
        }
        return results
    }

    /// One write's place in a group's transaction.
    struct GroupedWrite {
        var change: PolicyChangeRecord
        var historyKey: [UInt8]
        var historyValue: [UInt8]
        var auditBody: [UInt8]?
    }

    /// A group's view of what it read, changed write by write as the group goes.
    struct GroupState {
        var registries: [String: (version: UInt64, atMs: Int64, touched: Bool)] = [:]
        var policies: [[UInt8]: (entry: EtcdRecords.PolicyEntry?, touched: Bool)] = [:]
    }

    /// Stores a prefix of `writes` (at least one) as one transaction; returns
    /// the prefix's results. Throws only when etcd itself failed.
    ///
    /// It starts from what this store last read or wrote of the keys (one
    /// round trip per group while this replica is their only writer) and
    /// compares on all of it; when another writer came between, the
    /// transaction's failure branch reads the keys afresh, and the group is
    /// decided again on them.
    func writeGroup(_ writes: ArraySlice<PolicyWrite>) async throws(StoreError) -> [Result<PolicyChangeRecord, StoreError>] {
        let registryNames = Array(Set(writes.map(\.registry))).sorted()
        let policyKeys = Array(Set(writes.map { layout.policy($0.registry, $0.name) })).sorted { $0.lexicographicallyPrecedes($1) }
        let keys = registryNames.map(layout.registry) + policyKeys + [layout.auditCounter]
        let cached = known.withLockedValue { known in keys.compactMap { known.values[$0] } }
        var current: [EtcdKeyValue?]
        var fromCache = cached.count == keys.count
        if fromCache {
            current = cached
        } else {
            current = try await read(keys)
            remember(keys, current)
        }
        for _ in 0..<Self.attempts {
            var state = GroupState()
            for (i, name) in registryNames.enumerated() {
                let kv = current[i]
                let record = try kv.map { kv throws(StoreError) in try EtcdRecords.decode(EtcdRecords.Registry.self, kv.value, key: kv.key) }
                state.registries[name] = (record?.version ?? 0, record?.updatedAtMs ?? 0, false)
            }
            for (i, key) in policyKeys.enumerated() {
                let kv = current[registryNames.count + i]
                state.policies[key] = (try kv.map { kv throws(StoreError) in try EtcdRecords.decode(EtcdRecords.PolicyEntry.self, kv.value, key: kv.key) }, false)
            }
            let counterKV = current[keys.count - 1]

            var results: [Result<PolicyChangeRecord, StoreError>] = []
            var stored: [GroupedWrite] = []
            var bytes = 0
            for write in writes {
                if !results.isEmpty, bytes >= Self.groupBytes { break }
                do throws(StoreError) {
                    let grouped = try apply(write, to: &state)
                    stored.append(grouped)
                    bytes += grouped.historyValue.count + (grouped.auditBody?.count ?? 0) + (state.policies[layout.policy(write.registry, write.name)]?.entry?.policy.count ?? 0)
                    results.append(.success(grouped.change))
                } catch {
                    results.append(.failure(error))
                }
            }
            // Refusals decided on what was just read stand as they are.
            if stored.isEmpty, !fromCache { return results }

            // Every registry and policy the group read, refused writes' too
            // (a refusal must rest on the current version), and the audit
            // counter when entries are appended.
            var compares = registryNames.enumerated().map { i, name in EtcdCompare.modRevision(layout.registry(name), is: current[i]?.modRevision ?? 0) }
            compares += policyKeys.enumerated().map { i, key in EtcdCompare.modRevision(key, is: current[registryNames.count + i]?.modRevision ?? 0) }
            var ops: [EtcdOperation] = []
            for name in registryNames {
                guard let r = state.registries[name], r.touched else { continue }
                ops.append(.put(key: layout.registry(name), value: try EtcdRecords.encode(EtcdRecords.Registry(version: r.version, updatedAtMs: r.atMs))))
            }
            for key in policyKeys {
                guard let p = state.policies[key], p.touched else { continue }
                ops.append(try p.entry.map { e throws(StoreError) in .put(key: key, value: try EtcdRecords.encode(e)) } ?? .delete(key: key))
            }
            ops += stored.map { .put(key: $0.historyKey, value: $0.historyValue) }
            let audits = stored.compactMap(\.auditBody)
            var firstAuditID: UInt64?
            if !audits.isEmpty {
                let (id, counterOps, counterCompare) = try auditSlots(audits.count, counter: counterKV)
                firstAuditID = id
                ops += counterOps
                ops += audits.enumerated().map { i, body in .put(key: layout.audit(id + UInt64(i)), value: body) }
                compares.append(counterCompare)
            }
            // If the compares fail: the keys as they are now, and the group's
            // first history entry, which holds this group's change, to the
            // byte, if an attempt the etcd client sent again was applied
            // (e.g. across a leader change): done, not a second version.
            var failure = keys.map { EtcdOperation.range(key: $0) }
            if let first = stored.first { failure.append(.range(key: first.historyKey)) }
            let result = try await txn(compares, ops, failure: failure)
            if result.succeeded {
                remember(ops, at: result.revision)
                if let firstAuditID { await trimAudit(after: firstAuditID, count: audits.count) }
                return results
            }
            let fresh = result.results.map { r -> EtcdKeyValue? in
                if case .range(let range) = r { return range.kvs.first }
                return nil
            }
            if let first = stored.first, fresh.count == keys.count + 1, fresh[keys.count]?.value == first.historyValue {
                forget(keys)
                return results
            }
            current = Array(fresh.prefix(keys.count))
            guard current.count == keys.count else { throw StoreError(.internal, "etcd answered a failed policy transaction with \(fresh.count) reads, not \(keys.count + 1)") }
            remember(keys, current)
            fromCache = false
        }
        throw StoreError(.unavailable, "etcd: policy writes kept losing to concurrent writes (\(Self.attempts) attempts)")
    }

    /// Keys and bytes of values this store keeps the last known state of, at
    /// most (then it starts afresh: the next group reads first).
    static let knownLimit = (keys: 10_000, bytes: 8 * 1024 * 1024)

    func remember(_ keys: [[UInt8]], _ values: [EtcdKeyValue?]) {
        known.withLockedValue { known in
            let adding = values.reduce(0) { $0 + ($1?.value.count ?? 0) }
            if known.values.count + keys.count > Self.knownLimit.keys || known.bytes + adding > Self.knownLimit.bytes {
                known = ([:], 0)
            }
            for (key, value) in zip(keys, values) {
                if let old = known.values[key] { known.bytes -= old?.value.count ?? 0 }
                known.values[key] = .some(value)
                known.bytes += value?.value.count ?? 0
            }
        }
    }

    /// The registry, policy and counter keys a successful transaction wrote, as they now are.
    func remember(_ ops: [EtcdOperation], at revision: Int64) {
        var keys: [[UInt8]] = []
        var values: [EtcdKeyValue?] = []
        for op in ops {
            switch op {
            case .put(let key, let value, _, _) where isGroupKey(key):
                keys.append(key)
                values.append(EtcdKeyValue(key: key, value: value, modRevision: revision))
            case .delete(let key, nil, _) where isGroupKey(key):
                keys.append(key)
                values.append(nil)
            default:
                continue
            }
        }
        remember(keys, values)
    }

    func isGroupKey(_ key: [UInt8]) -> Bool {
        key == layout.auditCounter || key.starts(with: layout.registries) || key.starts(with: layout.policies)
    }

    func forget(_ keys: [[UInt8]]) {
        known.withLockedValue { known in
            for key in keys {
                if let old = known.values.removeValue(forKey: key) { known.bytes -= old?.value.count ?? 0 }
            }
        }
    }

    /// One write against the group's view: checks its expected version, takes
    /// the registry's next version and updates the view. Throws the write's refusal.
    func apply(_ write: PolicyWrite, to state: inout GroupState) throws(StoreError) -> GroupedWrite {
        let (registry, name) = (write.registry, write.name)
        let policyKey = layout.policy(registry, name)
        let entry = state.policies[policyKey]?.entry
        let currentVersion = entry?.version ?? 0
        let before = try entry.map { e throws(StoreError) in try StoredCoding.decodePolicy(Array(e.policy)) }
        let version = (state.registries[registry]?.version ?? 0) + 1
        let expectedVersion: UInt64?
        switch write {
        case .put(_, _, let expected, _, _, _, _), .delete(_, _, let expected, _, _, _, _): expectedVersion = expected
        }
        if let expectedVersion, expectedVersion != currentVersion {
            throw StoreError.staleVersion(registry: registry, name: name, expected: expectedVersion, current: currentVersion, exists: entry != nil)
        }
        let change: PolicyChangeRecord
        let newEntry: EtcdRecords.PolicyEntry?
        let audit: AuditRecord?
        switch write {
        case let .put(_, policy, _, actor, reason, atMs, a):
            change = PolicyChangeRecord(
                registry: registry, version: version, name: name, kind: entry == nil ? .created : .updated,
                before: before, after: policy, actor: actor, atMs: atMs, reason: reason)
            newEntry = EtcdRecords.PolicyEntry(version: version, updatedAtMs: atMs, updatedBy: actor, policy: Data(try StoredCoding.encodePolicy(policy)))
            audit = a
        case let .delete(_, _, _, actor, reason, atMs, a):
            guard let before else { throw StoreError(.notFound, "policy \(registry)/\(name) does not exist") }
            change = PolicyChangeRecord(
                registry: registry, version: version, name: name, kind: .deleted, before: before, after: nil,
                actor: actor, atMs: atMs, reason: reason)
            newEntry = nil
            audit = a
        }
        let auditBody = try audit.map { a throws(StoreError) in try StoredCoding.encodeAudit(a) }
        state.registries[registry, default: (0, 0, false)].version = version
        state.registries[registry, default: (0, 0, false)].atMs = change.atMs
        state.registries[registry, default: (0, 0, false)].touched = true
        state.policies[policyKey, default: (nil, false)].entry = newEntry
        state.policies[policyKey, default: (nil, false)].touched = true
        return GroupedWrite(
            change: change, historyKey: layout.history(registry, version),
            historyValue: try EtcdRecords.encode(try EtcdRecords.change(change)), auditBody: auditBody)
    }
}
