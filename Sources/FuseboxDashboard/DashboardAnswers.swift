import FuseboxAuthority

/// The API's answers (docs/DASHBOARD.md), as encoded.
struct SessionJSON: Encodable {
    var name: String
    var role: String
    var csrf: String
    var expiresAtMs: Int64
}

struct BreakersJSON: Encodable {
    var breakers: [DashboardJSON.Breaker]
    var registries: [String]
    var atMs: Int64
    var truncated: Bool
}

struct ContributionJSON: Encodable {
    var client: String
    var calls: UInt64
    var failures: UInt64
    var slow: UInt64
    var lastReportAtMs: Int64?
}

struct BreakerDetailJSON: Encodable {
    var breaker: DashboardJSON.Breaker
    var window: DashboardJSON.Window
    var consecutiveFailures: Int
    var outstandingPermits: Int
    var trips: Int
    var contributions: [ContributionJSON]
    var transitions: [BreakerActivity.Transition]
}

struct ActionJSON: Encodable {
    var before: DashboardJSON.Breaker?
    var after: DashboardJSON.Breaker
    var auditId: UInt64
}

struct PolicyJSON: Encodable {
    var name: String
    var version: UInt64
    var updatedAtMs: Int64
    var updatedBy: String
}

struct RegistryJSON: Encodable {
    var name: String
    var version: UInt64
    var policies: [PolicyJSON]
}

struct VersionJSON: Encodable {
    var registryVersion: UInt64
    var kind: String
    var atMs: Int64
    var actor: String
    var reason: String
    var yaml: String
}

struct DiffJSON: Encodable {
    var from: UInt64
    var to: UInt64
    var lines: [PolicyDiff.Line]
}

struct AuditJSON: Encodable {
    var entries: [DashboardJSON.AuditEntry]
    var truncated: Bool
}

struct ClientJSON: Encodable {
    var client: String
    var mode: String
    var lastReportAtMs: Int64
}

struct ClientsJSON: Encodable {
    var clients: [ClientJSON]
    var answeredBy: String
    var complete: Bool
}

struct TransitionJSON: Encodable {
    var breaker: DashboardJSON.Breaker
    var from: String
    var clients: [String]
}

struct RatesJSON: Encodable {
    var atMs: Int64
    var rates: [String: [Double]]
}
