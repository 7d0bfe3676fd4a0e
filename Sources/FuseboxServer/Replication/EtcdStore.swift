import Foundation
import NIOConcurrencyHelpers
public import FuseboxAuthority
import FuseboxCore
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
    let known = NIOLockedValueBox<(values: [[UInt8]: EtcdKeyValue?], bytes: Int)>(([:], 0))

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

    /// etcd allows 128 operations per transaction by default: 120 writes
    /// (breakers and their audit entries), the counters and the fence fit.
    public var commitLimits: CommitLimits { CommitLimits(maxChanges: 60, distinctBreakers: true, maxWrites: 120) }

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
