import Foundation
import FuseboxAuthority
import FuseboxCore
import FuseboxEtcd

/// Where replicated fuseboxd keeps what in etcd, under one prefix
/// (docs/REPLICATION.md, "Keys in etcd").
struct EtcdLayout: Sendable {
    /// The prefix, without a trailing "/".
    let prefix: String

    init(prefix: String) {
        var p = prefix
        while p.hasSuffix("/") { p.removeLast() }
        self.prefix = p
    }

    private func key(_ parts: String...) -> [UInt8] { Array((prefix + "/" + parts.joined(separator: "/")).utf8) }

    var registries: [UInt8] { key("registries", "") }
    func registry(_ name: String) -> [UInt8] { key("registries", name) }
    var policies: [UInt8] { key("policies", "") }
    func policy(_ registry: String, _ name: String) -> [UInt8] { key("policies", registry, name) }
    var history: [UInt8] { key("history", "") }
    func history(_ registry: String) -> [UInt8] { key("history", registry, "") }
    func history(_ registry: String, _ version: UInt64) -> [UInt8] { key("history", registry, Self.digits(version)) }
    var breakers: [UInt8] { key("breakers", "") }
    func breaker(_ key: BreakerKey) -> [UInt8] { self.key("breakers", key.registry, key.name) }
    var generationFloor: [UInt8] { key("counters", "generation-floor") }
    var auditCounter: [UInt8] { key("counters", "audit") }
    var audits: [UInt8] { key("audit", "") }
    /// Audit keys count down, so that etcd's key order is newest first.
    func audit(_ id: UInt64) -> [UInt8] { key("audit", Self.digits(UInt64.max - id)) }
    var leader: [UInt8] { key("leader") }
    var replicas: [UInt8] { key("replicas", "") }
    func replica(_ id: String) -> [UInt8] { key("replicas", id) }
    /// Everything Fusebox keeps (for `migrate`'s "is it empty" check).
    var all: [UInt8] { key("") }

    /// An audit id from its key.
    func auditID(_ key: [UInt8]) -> UInt64? {
        guard let inverted = UInt64(String(decoding: key.dropFirst(audits.count), as: UTF8.self)) else { return nil }
        return UInt64.max - inverted
    }

    /// The breaker a key under `breakers` names (registry names hold no "/").
    func breakerKey(_ key: [UInt8]) -> BreakerKey? {
        let rest = String(decoding: key.dropFirst(breakers.count), as: UTF8.self)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        return BreakerKey(registry: String(rest[..<slash]), name: String(rest[rest.index(after: slash)...]))
    }

    /// 20 digits, zero-padded: keys sort as numbers.
    static func digits(_ n: UInt64) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 20 - s.count)) + s
    }
}

/// Values at rest in etcd. JSON, so that `etcdctl get` is readable; policies
/// and audit entries inside them are their `fusebox.v1` messages.
enum EtcdRecords {
    struct Registry: Codable {
        var version: UInt64
        var updatedAtMs: Int64
    }

    struct PolicyEntry: Codable {
        var version: UInt64
        var updatedAtMs: Int64
        var updatedBy: String
        var policy: Data
    }

    struct Change: Codable {
        var registry: String
        var version: UInt64
        var name: String
        var kind: Int
        var before: Data?
        var after: Data?
        var actor: String
        var atMs: Int64
        var reason: String
    }

    struct Breaker: Codable {
        var registry: String
        var name: String
        var policy: String
        var state: String
        var evaluatedState: String
        var generation: UInt64
        var sinceMs: Int64
        var untilMs: Int64?
        var reason: String
        var override: String?
        var overrideUntilMs: Int64?
        var rule: Data?
    }

    struct Leader: Codable {
        var id: String
        var address: String
        var sinceMs: Int64
    }

    struct Replica: Codable {
        var id: String
        var address: String
        var version: String
        var startedAtMs: Int64
        var appliedRevision: Int64
        var serving: Bool
        var heartbeatMs: Int64
    }

    static func encode<T: Encodable>(_ value: T) throws(StoreError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do { return Array(try encoder.encode(value)) } catch { throw StoreError(.internal, "cannot encode \(T.self): \(error)") }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], key: [UInt8]) throws(StoreError) -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(bytes)) } catch {
            throw StoreError(.corrupt, "etcd key \(String(decoding: key, as: UTF8.self)) does not hold a \(T.self) record: \(error)")
        }
    }

    // MARK: Domain conversions

    static func change(_ c: PolicyChangeRecord) throws(StoreError) -> Change {
        Change(
            registry: c.registry, version: c.version, name: c.name, kind: c.kind.rawValue,
            before: try c.before.map { p throws(StoreError) in Data(try StoredCoding.encodePolicy(p)) },
            after: try c.after.map { p throws(StoreError) in Data(try StoredCoding.encodePolicy(p)) },
            actor: c.actor, atMs: c.atMs, reason: c.reason)
    }

    static func change(_ c: Change) throws(StoreError) -> PolicyChangeRecord {
        guard let kind = PolicyChangeRecord.Kind(rawValue: c.kind) else {
            throw StoreError(.corrupt, "policy change \(c.registry)/\(c.name) v\(c.version) has an unknown kind \(c.kind)")
        }
        return PolicyChangeRecord(
            registry: c.registry, version: c.version, name: c.name, kind: kind,
            before: try c.before.map { d throws(StoreError) in try StoredCoding.decodePolicy(Array(d)) },
            after: try c.after.map { d throws(StoreError) in try StoredCoding.decodePolicy(Array(d)) },
            actor: c.actor, atMs: c.atMs, reason: c.reason)
    }

    static func breaker(_ b: StoredBreaker) throws(StoreError) -> Breaker {
        Breaker(
            registry: b.registry, name: b.name, policy: b.policy, state: b.status.state.rawValue,
            evaluatedState: b.status.evaluatedState.rawValue, generation: b.status.generation.value,
            sinceMs: b.status.since.milliseconds, untilMs: b.status.until?.milliseconds, reason: b.status.reason,
            override: b.override?.state.rawValue, overrideUntilMs: b.overrideUntilMs,
            rule: try b.rule.map { r throws(StoreError) in Data(try StoredCoding.encodeRule(r)) })
    }

    static func breaker(_ b: Breaker) throws(StoreError) -> StoredBreaker {
        guard let state = BreakerState(rawValue: b.state), let evaluated = BreakerState(rawValue: b.evaluatedState) else {
            throw StoreError(.corrupt, "breaker \(b.registry)/\(b.name) has an unknown state \"\(b.state)\"/\"\(b.evaluatedState)\"")
        }
        return StoredBreaker(
            registry: b.registry, name: b.name, policy: b.policy,
            status: BreakerStatus(
                state: state, evaluatedState: evaluated, generation: BreakerGeneration(b.generation),
                since: Timestamp(milliseconds: b.sinceMs), until: b.untilMs.map(Timestamp.init(milliseconds:)), reason: b.reason),
            override: StoredCoding.override(stateName: b.override), overrideUntilMs: b.overrideUntilMs,
            rule: try b.rule.flatMap { d throws(StoreError) in try StoredCoding.decodeRule(Array(d)) })
    }
}

extension StoreError {
    /// An etcd failure as the store's error: UNAVAILABLE to callers, naming etcd.
    init(etcd error: EtcdError) {
        self.init(.unavailable, "etcd: \(error.message)\(error.endpoint.map { " (\($0))" } ?? "")")
    }
}
