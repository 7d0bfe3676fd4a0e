public import FuseboxCore
public import FuseboxWire

/// A policy as stored.
public struct StoredPolicy: Sendable, Equatable {
    /// The policy.
    public var policy: Policy
    /// Registry version of the write that last changed it.
    public var version: UInt64
    /// When that write happened (Unix ms).
    public var updatedAtMs: Int64
    /// Who made it.
    public var updatedBy: String
}

/// A registry as stored.
public struct StoredRegistry: Sendable, Equatable {
    /// Its name.
    public var name: String
    /// Its version: the number of writes so far.
    public var version: UInt64
    /// Time of the last write (Unix ms).
    public var updatedAtMs: Int64
    /// Its policies by name.
    public var policies: [String: StoredPolicy]
}

/// One write to a registry.
public struct PolicyChangeRecord: Sendable, Equatable {
    /// Created, updated or deleted.
    public enum Kind: Int, Sendable {
        case created = 1, updated = 2, deleted = 3
    }

    public var registry: String
    public var version: UInt64
    public var name: String
    public var kind: Kind
    public var before: Policy?
    public var after: Policy?
    public var actor: String
    public var atMs: Int64
    public var reason: String
}

/// A breaker's persisted state: enough to continue its generations and
/// overrides after a restart.
public struct StoredBreaker: Sendable, Equatable {
    public var registry: String
    public var name: String
    public var policy: String
    public var status: BreakerStatus
    public var override: BreakerOverride?
    public var overrideUntilMs: Int64?
}

/// Where fuseboxd keeps what must survive a restart. SQLite is the embedded
/// implementation; an etcd-backed one can follow without changing callers.
/// Every write returns only once it is durable.
public protocol FuseboxStore: Sendable {
    /// Every registry with its policies.
    func loadRegistries() async throws(StoreError) -> [StoredRegistry]
    /// Creates or replaces a policy. `expectedVersion` (if given) must equal
    /// the policy's current version, 0 meaning "must not exist".
    func putPolicy(
        registry: String, policy: Policy, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64
    ) async throws(StoreError) -> PolicyChangeRecord
    /// Deletes a policy (same concurrency rule).
    func deletePolicy(
        registry: String, name: String, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64
    ) async throws(StoreError) -> PolicyChangeRecord
    /// Changes after `afterVersion`, oldest first, at most `limit` (+1 to tell truncation).
    func history(registry: String, name: String?, afterVersion: UInt64, limit: Int) async throws(StoreError) -> [PolicyChangeRecord]
    /// Saves a breaker's state.
    func saveBreaker(_ breaker: StoredBreaker) async throws(StoreError)
    /// Every saved breaker.
    func loadBreakers() async throws(StoreError) -> [StoredBreaker]
    /// Appends an audit entry; returns its id.
    func appendAudit(_ entry: Fusebox_V1_AuditEntry) async throws(StoreError) -> UInt64
    /// Audit entries matching `filter`, newest first.
    func listAudit(_ filter: Fusebox_V1_ListAuditRequest) async throws(StoreError) -> [Fusebox_V1_AuditEntry]
}
