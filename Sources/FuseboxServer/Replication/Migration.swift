import Foundation
public import FuseboxAuthority
import FuseboxCore
public import FuseboxEtcd

/// `fuseboxd migrate`: copies an embedded server's SQLite data directory
/// into an empty etcd prefix, for the move to replicated mode. Run it with
/// the single server stopped.
public enum Migration {
    /// What was copied.
    public struct Summary: Sendable, Equatable, CustomStringConvertible {
        public var registries = 0
        public var policies = 0
        public var historyEntries = 0
        public var breakers = 0
        public var auditEntries = 0
        public var generationFloor: UInt64 = 0

        public var description: String {
            "\(registries) registries, \(policies) policies, \(historyEntries) history entries, \(breakers) breakers, "
                + "\(auditEntries) audit entries, generation floor \(generationFloor)"
        }
    }

    /// Operations per etcd transaction (etcd's default limit is 128).
    static let batch = 100

    /// Copies `dataDirectory`'s database into `prefix` of the etcd `client` reaches.
    /// Throws, writing nothing, when the prefix already holds data.
    public static func sqliteToEtcd(dataDirectory: String, client: EtcdClient, prefix: String) async throws(StoreError) -> Summary {
        let layout = EtcdLayout(prefix: prefix)
        let existing: EtcdRangeResult
        do { existing = try await client.range(layout.all, rangeEnd: EtcdKeys.prefixEnd(layout.all), limit: 1) } catch {
            throw StoreError(etcd: error)
        }
        if let first = existing.kvs.first {
            throw StoreError(
                .versionConflict,
                "etcd prefix \(layout.prefix) already holds data (\(first.keyString)); migrate only into an empty prefix, or pick another with --etcd-prefix")
        }
        let source = try await SQLiteStore.open(directory: dataDirectory)
        var summary = Summary()
        var ops: [EtcdOperation] = []
        func flush(_ force: Bool = false) async throws(StoreError) {
            guard ops.count >= batch || (force && !ops.isEmpty) else { return }
            do { _ = try await client.txn([], success: ops) } catch { throw StoreError(etcd: error) }
            ops = []
        }
        do {
            for registry in try await source.loadRegistries() {
                summary.registries += 1
                ops.append(.put(key: layout.registry(registry.name), value: try EtcdRecords.encode(
                    EtcdRecords.Registry(version: registry.version, updatedAtMs: registry.updatedAtMs))))
                for (name, p) in registry.policies.sorted(by: { $0.key < $1.key }) {
                    summary.policies += 1
                    ops.append(.put(key: layout.policy(registry.name, name), value: try EtcdRecords.encode(EtcdRecords.PolicyEntry(
                        version: p.version, updatedAtMs: p.updatedAtMs, updatedBy: p.updatedBy, policy: Data(try StoredCoding.encodePolicy(p.policy))))))
                    try await flush()
                }
                var after: UInt64 = 0
                while true {
                    let page = try await source.history(registry: registry.name, name: nil, afterVersion: after, limit: 500)
                    for change in page {
                        summary.historyEntries += 1
                        ops.append(.put(key: layout.history(registry.name, change.version), value: try EtcdRecords.encode(try EtcdRecords.change(change))))
                        try await flush()
                    }
                    guard let last = page.last, page.count == 500 else { break }
                    after = last.version
                }
            }
            for b in try await source.loadBreakers() {
                summary.breakers += 1
                ops.append(.put(key: layout.breaker(BreakerKey(registry: b.registry, name: b.name)), value: try EtcdRecords.encode(try EtcdRecords.breaker(b))))
                try await flush()
            }
            summary.generationFloor = try await source.loadGenerationFloor()
            ops.append(.put(key: layout.generationFloor, value: Array(String(summary.generationFloor).utf8)))
            var query = AuditQuery()
            query.limit = 1_000
            var highest: UInt64 = 0
            while true {
                let page = try await source.listAudit(query).prefix(query.limit)
                for entry in page {
                    summary.auditEntries += 1
                    highest = max(highest, entry.id)
                    ops.append(.put(key: layout.audit(entry.id), value: try StoredCoding.encodeAudit(entry)))
                    try await flush()
                }
                guard let last = page.last, page.count == query.limit else { break }
                query.beforeID = last.id
            }
            ops.append(.put(key: layout.auditCounter, value: Array(String(highest).utf8)))
            try await flush(true)
        } catch {
            await source.close()
            throw error
        }
        await source.close()
        return summary
    }
}
