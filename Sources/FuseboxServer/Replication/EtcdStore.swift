import Foundation
import NIOConcurrencyHelpers
public import FuseboxAuthority
public import FuseboxCore
public import FuseboxEtcd

/// Policies, their history and the audit log in etcd, shared by every
/// replica. Writes are etcd transactions compared on the versions they read,
/// retried when another replica wrote in between, so `expected_version`
/// holds across replicas. Breakers are written only through a
/// `FencedBreakerStore` the elected leader holds.
public final class EtcdStore: PolicyStore, AuditStore, Sendable {
    let client: EtcdClient
    let layout: EtcdLayout
    /// Audit entries kept; older ones are deleted as new ones are appended.
    public let auditRetention: UInt64
    /// What this store last read or wrote of the registry, policy and audit
    /// counter keys its policy writes use (`.some(nil)`: absent), with the
    /// bytes it holds, so a group needs no read first; compares catch what
    /// is stale.
    private let known = NIOLockedValueBox<(values: [[UInt8]: EtcdKeyValue?], bytes: Int)>(([:], 0))

    /// Writes in one group at most, so that reading the group's policies
    /// stays well within a response the client accepts (4 MiB) however large
    /// `limits.maxPolicyBytes` allows a policy to be.
    let groupSize: Int

    /// A store on `client` under `prefix`; `maxPolicyBytes` is the largest
    /// policy accepted (`limits.maxPolicyBytes`), which bounds its groups.
    public init(client: EtcdClient, prefix: String, auditRetention: Int, maxPolicyBytes: Int = AuthorityLimits().maxPolicyBytes) {
        self.client = client
        self.layout = EtcdLayout(prefix: prefix)
        self.auditRetention = UInt64(max(1, auditRetention))
        // A stored policy is JSON with the body in base64 (4/3): 2 MiB of them at most per read.
        groupSize = max(1, min(Self.groupLimit, 2 * 1024 * 1024 / max(1, maxPolicyBytes * 4 / 3)))
    }

    /// Attempts of an optimistic write before giving up (each lost only to another replica's write).
    static let attempts = 64

    // MARK: Reading

    /// Every key of a prefix, page by page at one revision. Returns the revision read at.
    @discardableResult
    func scan(
        _ prefix: [UInt8], from start: [UInt8]? = nil, revision: Int64 = 0,
        _ each: (EtcdKeyValue) throws(StoreError) -> Bool
    ) async throws(StoreError) -> Int64 {
        var key = start ?? prefix
        let end = EtcdKeys.prefixEnd(prefix)
        var at = revision
        while true {
            let page: EtcdRangeResult
            do { page = try await client.range(key, rangeEnd: end, limit: 500, revision: at) } catch { throw StoreError(etcd: error) }
            if at == 0 { at = page.revision }
            for kv in page.kvs { guard try each(kv) else { return at } }
            guard page.more, let last = page.kvs.last else { return at }
            key = last.key + [0]
        }
    }

    func txn(_ compares: [EtcdCompare], _ success: [EtcdOperation], failure: [EtcdOperation] = []) async throws(StoreError) -> EtcdTxnResult {
        do { return try await client.txn(compares, success: success, failure: failure) } catch { throw StoreError(etcd: error) }
    }

    /// Whether `key` holds exactly `value`: after a transaction that did not
    /// succeed, whether it had in fact been applied before. (The etcd client
    /// sends a transaction again when etcd did not answer, e.g. a leader
    /// change; if the first one was applied, the second fails its compares.)
    func holds(_ key: [UInt8], _ value: [UInt8]) async -> Bool {
        guard let kv = try? await read([key])[0] else { return false }
        return kv.value == value
    }

    /// One read of several keys at one revision.
    func read(_ keys: [[UInt8]]) async throws(StoreError) -> [EtcdKeyValue?] {
        let result = try await txn([], keys.map { .range(key: $0) })
        return result.results.map { r in
            if case .range(let range) = r { return range.kvs.first }
            return nil
        }
    }

    // MARK: Policies

    public func loadRegistries() async throws(StoreError) -> [StoredRegistry] {
        try await loadRegistriesAndRevision().registries
    }

    /// Every registry, and the revision it was read at (the policy feed starts after it).
    func loadRegistriesAndRevision() async throws(StoreError) -> (registries: [StoredRegistry], revision: Int64) {
        var registries: [String: StoredRegistry] = [:]
        let revision = try await scan(layout.registries) { kv throws(StoreError) in
            let r = try EtcdRecords.decode(EtcdRecords.Registry.self, kv.value, key: kv.key)
            let name = String(decoding: kv.key.dropFirst(layout.registries.count), as: UTF8.self)
            registries[name] = StoredRegistry(name: name, version: r.version, updatedAtMs: r.updatedAtMs, policies: [:])
            return true
        }
        try await scan(layout.policies, revision: revision) { kv throws(StoreError) in
            let p = try EtcdRecords.decode(EtcdRecords.PolicyEntry.self, kv.value, key: kv.key)
            let rest = String(decoding: kv.key.dropFirst(layout.policies.count), as: UTF8.self)
            guard let slash = rest.firstIndex(of: "/") else { return true }
            let registry = String(rest[..<slash])
            let policy = try StoredCoding.decodePolicy(Array(p.policy))
            registries[registry, default: StoredRegistry(name: registry, version: p.version, updatedAtMs: p.updatedAtMs, policies: [:])]
                .policies[policy.name] = StoredPolicy(policy: policy, version: p.version, updatedAtMs: p.updatedAtMs, updatedBy: p.updatedBy)
            return true
        }
        return (registries.values.sorted { $0.name < $1.name }, revision)
    }

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

    private func single(_ write: PolicyWrite) async throws(StoreError) -> PolicyChangeRecord {
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
    private struct GroupedWrite {
        var change: PolicyChangeRecord
        var historyKey: [UInt8]
        var historyValue: [UInt8]
        var auditBody: [UInt8]?
    }

    /// A group's view of what it read, changed write by write as the group goes.
    private struct GroupState {
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
    private func writeGroup(_ writes: ArraySlice<PolicyWrite>) async throws(StoreError) -> [Result<PolicyChangeRecord, StoreError>] {
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

    private func remember(_ keys: [[UInt8]], _ values: [EtcdKeyValue?]) {
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
    private func remember(_ ops: [EtcdOperation], at revision: Int64) {
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

    private func isGroupKey(_ key: [UInt8]) -> Bool {
        key == layout.auditCounter || key.starts(with: layout.registries) || key.starts(with: layout.policies)
    }

    private func forget(_ keys: [[UInt8]]) {
        known.withLockedValue { known in
            for key in keys {
                if let old = known.values.removeValue(forKey: key) { known.bytes -= old?.value.count ?? 0 }
            }
        }
    }

    /// One write against the group's view: checks its expected version, takes
    /// the registry's next version and updates the view. Throws the write's refusal.
    private func apply(_ write: PolicyWrite, to state: inout GroupState) throws(StoreError) -> GroupedWrite {
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
            throw StoreError(
                .versionConflict,
                entry == nil
                    ? "policy \(registry)/\(name) does not exist (expected version \(expectedVersion))"
                    : "policy \(registry)/\(name) is at version \(currentVersion), not \(expectedVersion); read it again and retry",
                currentVersion: currentVersion)
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

    public func history(registry: String, name: String?, afterVersion: UInt64, limit: Int) async throws(StoreError) -> [PolicyChangeRecord] {
        var changes: [PolicyChangeRecord] = []
        guard limit > 0 else { return [] }
        try await scan(layout.history(registry), from: layout.history(registry, afterVersion + 1)) { kv throws(StoreError) in
            let change = try EtcdRecords.change(try EtcdRecords.decode(EtcdRecords.Change.self, kv.value, key: kv.key))
            if name == nil || change.name == name { changes.append(change) }
            return changes.count < limit
        }
        return changes
    }

    // MARK: Audit

    /// Ids for `count` new entries after the counter `counter` holds, the
    /// operations that advance it, and the comparison that makes the
    /// transaction fail if another writer advanced it first.
    func auditSlots(_ count: Int, counter: EtcdKeyValue?) throws(StoreError) -> (first: UInt64, ops: [EtcdOperation], compare: EtcdCompare) {
        let last = counter.flatMap { UInt64(String(decoding: $0.value, as: UTF8.self)) } ?? 0
        return (
            last + 1,
            [.put(key: layout.auditCounter, value: Array(String(last + UInt64(count)).utf8))],
            .modRevision(layout.auditCounter, is: counter?.modRevision ?? 0)
        )
    }

    /// Deletes entries older than the retention, each time the ids pass a
    /// multiple of a tenth of it (at most every 1,000 ids).
    func trimAudit(after first: UInt64, count: Int) async {
        let last = first + UInt64(count) - 1
        let every = max(1, min(1_000, auditRetention / 10))
        guard last / every != (first - 1) / every, last > auditRetention else { return }
        // Keys count down: ids <= last - retention are the keys from audit(last - retention) to the end.
        _ = try? await client.deleteRange(layout.audit(last - auditRetention), rangeEnd: EtcdKeys.prefixEnd(layout.audits))
    }

    public func appendAudit(_ entry: AuditRecord) async throws(StoreError) -> UInt64 {
        let body = try StoredCoding.encodeAudit(entry)
        for _ in 0..<Self.attempts {
            let counter = try await read([layout.auditCounter])[0]
            let (id, ops, compare) = try auditSlots(1, counter: counter)
            if try await txn([compare], ops + [.put(key: layout.audit(id), value: body)]).succeeded {
                await trimAudit(after: id, count: 1)
                return id
            }
        }
        throw StoreError(.unavailable, "etcd: an audit entry kept losing its id to concurrent writes (\(Self.attempts) attempts)")
    }

    public func listAudit(_ f: AuditQuery) async throws(StoreError) -> [AuditRecord] {
        var found: [AuditRecord] = []
        let want = max(f.limit, 1) + 1
        let start = f.beforeID > 0 ? layout.audit(f.beforeID - 1) : nil
        try await scan(layout.audits, from: start) { kv throws(StoreError) in
            guard let id = layout.auditID(kv.key) else { return true }
            let entry = try StoredCoding.decodeAudit(kv.value, id: id)
            // Newest first: entries before `since` (by more than any clock skew) end the scan.
            if f.sinceMs > 0, entry.atMs < f.sinceMs - 600_000 { return false }
            if f.matches(entry) { found.append(entry) }
            return found.count < want
        }
        return found
    }

    // MARK: Breakers (reads)

    /// Every stored breaker, and the revision it was read at.
    func loadBreakersAndRevision() async throws(StoreError) -> (breakers: [StoredBreaker], revision: Int64) {
        var breakers: [StoredBreaker] = []
        let revision = try await scan(layout.breakers) { kv throws(StoreError) in
            breakers.append(try EtcdRecords.breaker(try EtcdRecords.decode(EtcdRecords.Breaker.self, kv.value, key: kv.key)))
            return true
        }
        return (breakers, revision)
    }

    /// The breaker store of a leader whose election created `P/leader` at `leaderRevision`.
    public func breakerStore(leaderRevision: Int64, onFenced: @escaping @Sendable () -> Void) -> FencedBreakerStore {
        FencedBreakerStore(store: self, fence: EtcdCompare(key: layout.leader, .equal, .createRevision(leaderRevision)), onFenced: onFenced)
    }
}

extension AuditQuery {
    /// Whether `entry` passes the query's filters (not its paging).
    func matches(_ entry: AuditRecord) -> Bool {
        if sinceMs > 0, entry.atMs < sinceMs { return false }
        if untilMs > 0, entry.atMs >= untilMs { return false }
        if !registry.isEmpty, entry.breaker?.registry != registry { return false }
        if !breakerPrefix.isEmpty, !(entry.breaker?.name.hasPrefix(breakerPrefix) ?? false) { return false }
        if deniedOnly, entry.allowed { return false }
        if !actions.isEmpty, !actions.contains(entry.action) { return false }
        return true
    }
}

/// The breaker store of the elected leader: every commit is one etcd
/// transaction that holds only while `P/leader` is still the key its election
/// created. When it no longer is, the commit fails with `.fenced` and
/// `onFenced` is called, once per refused commit: the replica steps down.
public struct FencedBreakerStore: BreakerStateStore {
    let store: EtcdStore
    let fence: EtcdCompare
    let onFenced: @Sendable () -> Void

    /// etcd allows 128 operations per transaction by default: 60 breakers and
    /// their audit entries, the counters and the fence fit.
    public var commitLimits: CommitLimits { CommitLimits(maxChanges: 60, distinctBreakers: true) }

    public func loadBreakers() async throws(StoreError) -> [StoredBreaker] {
        try await store.loadBreakersAndRevision().breakers
    }

    public func loadGenerationFloor() async throws(StoreError) -> UInt64 {
        let kv = try await store.read([store.layout.generationFloor])[0]
        return kv.flatMap { UInt64(String(decoding: $0.value, as: UTF8.self)) } ?? 0
    }

    public func commit(_ commits: [BreakerCommit]) async throws(StoreError) -> [UInt64] {
        let layout = store.layout
        let auditCount = commits.reduce(0) { $0 + $1.audits.count }
        let evictedFloor = commits.filter(\.evicted).map(\.breaker.status.generation.value).max()
        for _ in 0..<EtcdStore.attempts {
            var compares = [fence]
            var ops: [EtcdOperation] = []
            var ids: [UInt64] = []
            if auditCount > 0 || evictedFloor != nil {
                let read = try await store.read([layout.auditCounter, layout.generationFloor])
                if auditCount > 0 {
                    let (first, counterOps, compare) = try store.auditSlots(auditCount, counter: read[0])
                    ids = (0..<UInt64(auditCount)).map { first + $0 }
                    ops += counterOps
                    compares.append(compare)
                }
                if let evictedFloor {
                    let floor = read[1].flatMap { UInt64(String(decoding: $0.value, as: UTF8.self)) } ?? 0
                    ops.append(.put(key: layout.generationFloor, value: Array(String(max(floor, evictedFloor)).utf8)))
                    compares.append(.modRevision(layout.generationFloor, is: read[1]?.modRevision ?? 0))
                }
            }
            var next = ids.makeIterator()
            for c in commits {
                let key = layout.breaker(BreakerKey(registry: c.breaker.registry, name: c.breaker.name))
                if c.evicted {
                    ops.append(.delete(key: key))
                } else {
                    ops.append(.put(key: key, value: try EtcdRecords.encode(try EtcdRecords.breaker(c.breaker))))
                }
                for audit in c.audits {
                    guard let id = next.next() else { break }
                    ops.append(.put(key: layout.audit(id), value: try StoredCoding.encodeAudit(audit)))
                }
            }
            let result = try await store.txn(compares, ops, failure: [.range(key: layout.leader)])
            if result.succeeded {
                if let first = ids.first { await store.trimAudit(after: first, count: ids.count) }
                return ids
            }
            // Applied already by an attempt the etcd client sent again? A breaker's
            // record names its generation, which is never written twice.
            if let first = commits.first, !first.evicted,
                await store.holds(
                    layout.breaker(BreakerKey(registry: first.breaker.registry, name: first.breaker.name)),
                    try EtcdRecords.encode(try EtcdRecords.breaker(first.breaker)))
            {
                if let first = ids.first { await store.trimAudit(after: first, count: ids.count) }
                return ids
            }
            // Lost the fence, or only a counter race with another replica's audit write?
            var leader: EtcdKeyValue?
            if case .range(let range)? = result.results.first { leader = range.kvs.first }
            if case .createRevision(let mine) = fence.target, leader?.createRevision != mine {
                onFenced()
                throw StoreError(.fenced, "this replica no longer leads (another replica was elected); its undecided changes are dropped")
            }
        }
        throw StoreError(.unavailable, "etcd: breaker changes kept losing the audit counter to concurrent writes (\(EtcdStore.attempts) attempts)")
    }
}
