public import FuseboxCore

/// What the breaker coordinator needs from storage. The embedded SQLite
/// store implements it; a replicated store implements it with writes fenced
/// on the decider's leadership, so a deposed decider's commits fail.
public protocol BreakerStateStore: Sendable {
    /// Every saved breaker.
    func loadBreakers() async throws(StoreError) -> [StoredBreaker]
    /// The highest generation of any evicted breaker (0 if none): new
    /// breakers start above it.
    func loadGenerationFloor() async throws(StoreError) -> UInt64
    /// Stores every change of `commits` and their audit entries in one
    /// transaction (one fsync for all: group commit), or none of them.
    /// Returns the ids the audit entries got, in order.
    func commit(_ commits: [BreakerCommit]) async throws(StoreError) -> [UInt64]
    /// How many changes one `commit` may take, and whether it may hold two
    /// changes of one breaker. Default: 4,096, and it may.
    var commitLimits: CommitLimits { get }
}

/// What one `BreakerStateStore.commit` can take.
public struct CommitLimits: Sendable, Hashable {
    /// Most changes per commit.
    public var maxChanges: Int
    /// Every change of a commit is for a different breaker (etcd refuses a
    /// transaction that writes one key twice).
    public var distinctBreakers: Bool
    /// Most writes per commit: each change and each of its audit entries (an
    /// operator's action that found an override expired carries two).
    public var maxWrites: Int

    /// Limits.
    public init(maxChanges: Int, distinctBreakers: Bool, maxWrites: Int = .max) {
        self.maxChanges = max(1, maxChanges)
        self.distinctBreakers = distinctBreakers
        self.maxWrites = max(1, maxWrites)
    }

    /// How many of the first changes of `queue` (each a breaker and its
    /// number of audit entries) one commit takes, in order. At least one:
    /// a change whose writes alone pass `maxWrites` goes on its own.
    public func taking(_ queue: some Sequence<(key: BreakerKey, audits: Int)>) -> Int {
        var count = 0
        var writes = 0
        var seen = Set<BreakerKey>()
        for change in queue {
            guard count < maxChanges else { break }
            if distinctBreakers, !seen.insert(change.key).inserted { break }
            if count > 0, writes + 1 + change.audits > maxWrites { break }
            count += 1
            writes += 1 + change.audits
        }
        return count
    }
}

extension BreakerStateStore {
    /// 4,096 changes per commit, several of one breaker allowed.
    public var commitLimits: CommitLimits { CommitLimits(maxChanges: 4_096, distinctBreakers: false) }
}

/// What the policy registry needs from storage. Every write returns only
/// once it is durable, with its audit entry written in the same transaction.
public protocol PolicyStore: Sendable {
    /// Every registry with its policies.
    func loadRegistries() async throws(StoreError) -> [StoredRegistry]
    /// Creates or replaces a policy. `expectedVersion` (if given) must equal
    /// the policy's current version, 0 meaning "must not exist".
    func putPolicy(
        registry: String, policy: Policy, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64,
        audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord
    /// Deletes a policy (same concurrency rule).
    func deletePolicy(
        registry: String, name: String, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64,
        audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord
    /// Changes after `afterVersion`, oldest first, at most `limit`.
    func history(registry: String, name: String?, afterVersion: UInt64, limit: Int) async throws(StoreError) -> [PolicyChangeRecord]
    /// Applies `writes` in order, as if one after another, and makes them
    /// durable together (group commit: one transaction, one sync, for writes
    /// that arrived while the previous group was being stored). Each succeeds
    /// or is refused on its own; a refused one changes nothing. If the group
    /// cannot be stored, every write in it fails with that error.
    func writePolicies(_ writes: [PolicyWrite]) async -> [Result<PolicyChangeRecord, StoreError>]
}

/// One policy write, as the store's put and delete take it.
public enum PolicyWrite: Sendable {
    case put(registry: String, policy: Policy, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64, audit: AuditRecord?)
    case delete(registry: String, name: String, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64, audit: AuditRecord?)

    /// The registry written.
    public var registry: String {
        switch self {
        case .put(let registry, _, _, _, _, _, _), .delete(let registry, _, _, _, _, _, _): registry
        }
    }

    /// The policy written.
    public var name: String {
        switch self {
        case .put(_, let policy, _, _, _, _, _): policy.name
        case .delete(_, let name, _, _, _, _, _): name
        }
    }
}

extension PolicyStore {
    /// One write after another, each durable on its own (a store without group commit).
    public func writePolicies(_ writes: [PolicyWrite]) async -> [Result<PolicyChangeRecord, StoreError>] {
        var results: [Result<PolicyChangeRecord, StoreError>] = []
        for write in writes {
            do throws(StoreError) {
                results.append(.success(try await self.write(write)))
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }

    /// One write on its own.
    public func write(_ write: PolicyWrite) async throws(StoreError) -> PolicyChangeRecord {
        switch write {
        case let .put(registry, policy, expectedVersion, actor, reason, atMs, audit):
            try await putPolicy(registry: registry, policy: policy, expectedVersion: expectedVersion, actor: actor, reason: reason, atMs: atMs, audit: audit)
        case let .delete(registry, name, expectedVersion, actor, reason, atMs, audit):
            try await deletePolicy(registry: registry, name: name, expectedVersion: expectedVersion, actor: actor, reason: reason, atMs: atMs, audit: audit)
        }
    }
}

/// The audit log's storage.
public protocol AuditStore: Sendable {
    /// Appends an entry on its own; returns its id.
    func appendAudit(_ entry: AuditRecord) async throws(StoreError) -> UInt64
    /// Entries matching `query`, newest first, at most `query.limit + 1`.
    func listAudit(_ query: AuditQuery) async throws(StoreError) -> [AuditRecord]
}

/// Everything fuseboxd keeps.
public typealias FuseboxStore = BreakerStateStore & PolicyStore & AuditStore
