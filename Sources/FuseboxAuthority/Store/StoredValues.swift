public import FuseboxCore

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

    /// A stored policy.
    public init(policy: Policy, version: UInt64, updatedAtMs: Int64, updatedBy: String) {
        self.policy = policy
        self.version = version
        self.updatedAtMs = updatedAtMs
        self.updatedBy = updatedBy
    }
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

    /// A stored registry.
    public init(name: String, version: UInt64, updatedAtMs: Int64, policies: [String: StoredPolicy]) {
        self.name = name
        self.version = version
        self.updatedAtMs = updatedAtMs
        self.policies = policies
    }
}

/// One write to a registry.
public struct PolicyChangeRecord: Sendable, Equatable {
    /// Created, updated or deleted.
    public enum Kind: Int, Sendable {
        case created = 1, updated = 2, deleted = 3
    }

    /// The registry written to.
    public var registry: String
    /// The registry version the write created.
    public var version: UInt64
    /// The policy written.
    public var name: String
    /// Created, updated or deleted.
    public var kind: Kind
    /// The policy before (nil when created).
    public var before: Policy?
    /// The policy after (nil when deleted).
    public var after: Policy?
    /// Who wrote it.
    public var actor: String
    /// When (Unix ms).
    public var atMs: Int64
    /// The writer's reason.
    public var reason: String

    /// A change.
    public init(
        registry: String, version: UInt64, name: String, kind: Kind, before: Policy?, after: Policy?,
        actor: String, atMs: Int64, reason: String
    ) {
        self.registry = registry
        self.version = version
        self.name = name
        self.kind = kind
        self.before = before
        self.after = after
        self.actor = actor
        self.atMs = atMs
        self.reason = reason
    }
}

/// A breaker's persisted state: enough to continue its generations,
/// overrides and rule after a restart.
public struct StoredBreaker: Sendable, Equatable {
    /// Its registry.
    public var registry: String
    /// Its name.
    public var name: String
    /// The policy it is bound to.
    public var policy: String
    /// Its status as last published.
    public var status: BreakerStatus
    /// The override in force.
    public var override: BreakerOverride?
    /// When the override lifts (Unix ms).
    public var overrideUntilMs: Int64?
    /// The breaker rule it last ran with, so it keeps tripping by that rule
    /// if its policy is deleted (nil in databases written before it was kept).
    public var rule: CircuitBreakerPolicy?

    /// A stored breaker.
    public init(
        registry: String, name: String, policy: String, status: BreakerStatus, override: BreakerOverride?,
        overrideUntilMs: Int64?, rule: CircuitBreakerPolicy? = nil
    ) {
        self.registry = registry
        self.name = name
        self.policy = policy
        self.status = status
        self.override = override
        self.overrideUntilMs = overrideUntilMs
        self.rule = rule
    }
}

/// Who did something, as the audit log records it.
public struct AuditActor: Sendable, Hashable {
    /// Certificate subject CN.
    public var commonName: String
    /// DNS subject alternative names.
    public var dnsNames: [String]
    /// URI subject alternative names.
    public var uris: [String]
    /// SHA-256 of the certificate, lowercase hex.
    public var fingerprintSHA256: String
    /// Roles the server mapped the identity to.
    public var roles: [String]

    /// An actor.
    public init(commonName: String = "", dnsNames: [String] = [], uris: [String] = [], fingerprintSHA256: String = "", roles: [String] = []) {
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.uris = uris
        self.fingerprintSHA256 = fingerprintSHA256
        self.roles = roles
    }
}

/// What an audit entry records.
public enum AuditAction: Int, Sendable, Hashable, CaseIterable {
    case forceOpen = 1, forceClose, disable, shadow, reset, overrideExpired, putPolicy, deletePolicy, connectionRefused, listAudit,
        getClusterStatus
}

/// One entry of the audit log, in domain terms.
public struct AuditRecord: Sendable, Hashable {
    /// Filled in by the store.
    public var id: UInt64 = 0
    /// When the action was attempted (Unix ms).
    public var atMs: Int64
    /// Who; nil for the server's own actions.
    public var actor: AuditActor?
    /// What.
    public var action: AuditAction
    /// The breaker acted on.
    public var breaker: BreakerKey?
    /// "registry/policy" acted on.
    public var policy: String = ""
    /// The reason given.
    public var reason: String = ""
    /// False when denied or invalid.
    public var allowed: Bool
    /// Why it was denied or refused.
    public var deniedReason: String = ""
    /// State before (allowed breaker actions).
    public var stateBefore: BreakerState?
    /// State after.
    public var stateAfter: BreakerState?
    /// Override duration, when one was given.
    public var durationMs: UInt32 = 0

    /// An entry.
    public init(
        atMs: Int64, actor: AuditActor?, action: AuditAction, breaker: BreakerKey? = nil, policy: String = "",
        reason: String = "", allowed: Bool, deniedReason: String = "", stateBefore: BreakerState? = nil,
        stateAfter: BreakerState? = nil, durationMs: UInt32 = 0
    ) {
        self.atMs = atMs
        self.actor = actor
        self.action = action
        self.breaker = breaker
        self.policy = policy
        self.reason = reason
        self.allowed = allowed
        self.deniedReason = deniedReason
        self.stateBefore = stateBefore
        self.stateAfter = stateAfter
        self.durationMs = durationMs
    }
}

/// Which audit entries to list. Filters combine with AND.
public struct AuditQuery: Sendable, Hashable {
    public var sinceMs: Int64 = 0
    public var untilMs: Int64 = 0
    public var registry: String = ""
    public var breakerPrefix: String = ""
    public var actions: [AuditAction] = []
    public var deniedOnly = false
    /// At most this many (the store returns one more to tell truncation).
    public var limit = 100
    public var beforeID: UInt64 = 0

    /// Every entry, newest first, 100 at a time.
    public init() {}
}

/// One breaker's change that must be durable before anyone sees it, with
/// the audit entries that must be written in the same transaction.
public struct BreakerCommit: Sendable {
    /// The breaker's state after the change.
    public var breaker: StoredBreaker
    /// Audit entries of the action that caused it (overrides, resets, expiry).
    public var audits: [AuditRecord]
    /// The breaker was evicted (idle): delete it, and raise the generation
    /// floor to its generation, so that a breaker created again under the
    /// same name never reuses a generation.
    public var evicted: Bool

    /// A commit.
    public init(breaker: StoredBreaker, audits: [AuditRecord] = [], evicted: Bool = false) {
        self.breaker = breaker
        self.audits = audits
        self.evicted = evicted
    }
}
