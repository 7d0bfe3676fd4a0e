import FuseboxAPI
public import FuseboxCore
public import FuseboxAuthority
import FuseboxWire
import NIOConcurrencyHelpers
import NIOPosix

/// The embedded store: one SQLite file in WAL mode with synchronous=FULL, so
/// every acknowledged write has been fsynced. All database work runs on one
/// dedicated thread. Opening refuses a damaged database or one with a newer
/// schema, with a message that says what to do; it never resets data.
public final class SQLiteStore: FuseboxStore, @unchecked Sendable {
    /// The schema version this build writes. Migrations bring older files up to it.
    public static let schemaVersion: Int64 = 3

    /// Migrations by the version they produce.
    static let migrations: [(version: Int64, sql: String)] = [
        (1, """
            CREATE TABLE registries (name TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);
            CREATE TABLE policies (
                registry TEXT NOT NULL, name TEXT NOT NULL, body BLOB NOT NULL, version INTEGER NOT NULL,
                updated_at_ms INTEGER NOT NULL, updated_by TEXT NOT NULL, PRIMARY KEY (registry, name));
            CREATE TABLE policy_history (
                registry TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, kind INTEGER NOT NULL,
                before BLOB, after BLOB, actor TEXT NOT NULL, at_ms INTEGER NOT NULL, reason TEXT NOT NULL,
                PRIMARY KEY (registry, version));
            CREATE TABLE breakers (
                registry TEXT NOT NULL, name TEXT NOT NULL, policy TEXT NOT NULL, generation INTEGER NOT NULL,
                state TEXT NOT NULL, evaluated_state TEXT NOT NULL, since_ms INTEGER NOT NULL, until_ms INTEGER,
                reason TEXT NOT NULL, override TEXT, override_until_ms INTEGER, PRIMARY KEY (registry, name));
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, action INTEGER NOT NULL,
                registry TEXT NOT NULL, breaker TEXT NOT NULL, allowed INTEGER NOT NULL, body BLOB NOT NULL);
            CREATE INDEX audit_at ON audit (at_ms);
            """),
        // The breaker rule each breaker last ran with, so a breaker whose
        // policy is deleted keeps tripping by it after a restart.
        (2, "ALTER TABLE breakers ADD COLUMN rule BLOB;"),
        // The highest generation of an evicted breaker: a breaker created again
        // under an evicted one's name starts above it.
        (3, "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"),
    ]

    private let database: SQLiteDatabase
    private let thread: NIOThreadPool

    /// Opens (creating if needed) `directory/fusebox.db`.
    public static func open(directory: String) async throws(StoreError) -> SQLiteStore {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        let path = directory.hasSuffix("/") ? directory + "fusebox.db" : directory + "/fusebox.db"
        let result: Result<SQLiteDatabase, StoreError>
        do {
            result = try await thread.runIfActive { Result { () throws(StoreError) in try Self.prepare(path: path) } }
        } catch {
            result = .failure(StoreError(.unavailable, "the store thread stopped: \(error)"))
        }
        switch result {
        case .success(let database): return SQLiteStore(database: database, thread: thread)
        case .failure(let error):
            try? await thread.shutdownGracefully()
            throw error
        }
    }

    private init(database: SQLiteDatabase, thread: NIOThreadPool) {
        self.database = database
        self.thread = thread
    }

    /// Opens the file, checks it, and migrates it.
    private static func prepare(path: String) throws(StoreError) -> SQLiteDatabase {
        let db = try SQLiteDatabase(path: path)
        let check: String
        do throws(StoreError) {
            check = try db.query("PRAGMA quick_check").first?.first?.string ?? "no answer"
        } catch {
            check = error.message
        }
        guard check == "ok" else {
            throw StoreError(
                .corrupt,
                "\(path) is damaged or not a Fusebox database (\(check)). fuseboxd will not reset it: restore it from a backup, or move it away to start empty.")
        }
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=FULL")
        try db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        let current = try db.query("SELECT MAX(version) FROM schema_version").first?.first?.int ?? 0
        guard current <= schemaVersion else {
            throw StoreError(
                .newerSchema,
                "\(path) has schema version \(current), but this fuseboxd knows only up to \(schemaVersion); run the newer fuseboxd that wrote it, or restore a backup")
        }
        for migration in migrations where migration.version > current {
            try db.transaction { () throws(StoreError) in
                try db.execute(migration.sql)
                try db.query("INSERT INTO schema_version (version) VALUES (?)", [.integer(migration.version)])
            }
        }
        return db
    }

    /// Writes a consistent copy of `directory/fusebox.db` to `destination`
    /// (SQLite's VACUUM INTO, through a separate connection), safe while the
    /// server runs and writes: the copy is one transaction's view.
    public static func backup(directory: String, to destination: String) throws(StoreError) {
        let path = directory.hasSuffix("/") ? directory + "fusebox.db" : directory + "/fusebox.db"
        let db = try SQLiteDatabase(path: path)
        let version = try db.query("SELECT MAX(version) FROM schema_version").first?.first?.int ?? 0
        guard version > 0 else { throw StoreError(.notFound, "\(path) holds no Fusebox data") }
        try db.query("VACUUM INTO ?", [.text(destination)])
    }

    /// Finishes pending work and closes the file.
    public func close() async {
        try? await thread.shutdownGracefully()
    }

    private func run<T: Sendable>(
        _ operation: String = #function, _ body: @escaping @Sendable (SQLiteDatabase) throws(StoreError) -> T
    ) async throws(StoreError) -> T {
        let started = ContinuousClock.now
        defer {
            let elapsed = ContinuousClock.now - started
            ServerMetrics.store(
                String(operation.prefix { $0 != "(" }),
                nanoseconds: elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        let database = self.database
        let result: Result<T, StoreError>
        do {
            result = try await thread.runIfActive { Result { () throws(StoreError) in try body(database) } }
        } catch {
            throw StoreError(.unavailable, "the store is closed")
        }
        return try result.get()
    }

    // MARK: Registries

    public func loadRegistries() async throws(StoreError) -> [StoredRegistry] {
        try await run { db throws(StoreError) in
            var registries: [String: StoredRegistry] = [:]
            for row in try db.query("SELECT name, version, updated_at_ms FROM registries") {
                let name = row[0].string ?? ""
                registries[name] = StoredRegistry(name: name, version: UInt64(row[1].int ?? 0), updatedAtMs: row[2].int ?? 0, policies: [:])
            }
            for row in try db.query("SELECT registry, name, body, version, updated_at_ms, updated_by FROM policies") {
                let policy = try StoredCoding.decodePolicy(row[2].bytes ?? [])
                registries[row[0].string ?? ""]?.policies[row[1].string ?? ""] = StoredPolicy(
                    policy: policy, version: UInt64(row[3].int ?? 0), updatedAtMs: row[4].int ?? 0, updatedBy: row[5].string ?? "")
            }
            return registries.values.sorted { $0.name < $1.name }
        }
    }

    public func putPolicy(
        registry: String, policy: Policy, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64,
        audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord {
        let write = try Self.encoded(.put(registry: registry, policy: policy, expectedVersion: expectedVersion, actor: actor, reason: reason, atMs: atMs, audit: audit))
        return try await run { db throws(StoreError) in try db.transaction { () throws(StoreError) in try Self.apply(write, db) } }
    }

    public func deletePolicy(
        registry: String, name: String, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64,
        audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord {
        let write = try Self.encoded(.delete(registry: registry, name: name, expectedVersion: expectedVersion, actor: actor, reason: reason, atMs: atMs, audit: audit))
        return try await run { db throws(StoreError) in try db.transaction { () throws(StoreError) in try Self.apply(write, db) } }
    }

    /// Group commit: the writes in one transaction, each in a savepoint of its
    /// own (a refused write is undone alone), and one COMMIT, so one WAL sync
    /// for the group instead of one per write.
    public func writePolicies(_ writes: [PolicyWrite]) async -> [Result<PolicyChangeRecord, StoreError>] {
        let prepared = writes.map { w in Result { () throws(StoreError) in try Self.encoded(w) } }
        do throws(StoreError) {
            return try await run { db throws(StoreError) in
                try db.transaction { () throws(StoreError) in
                    prepared.map { p in
                        p.flatMap { w in Result { () throws(StoreError) in try db.savepoint { () throws(StoreError) in try Self.apply(w, db) } } }
                    }
                }
            }
        } catch {
            return writes.map { _ in .failure(error) }
        }
    }

    /// A write with its bodies encoded (off the store's thread).
    private struct PreparedWrite: Sendable {
        var write: PolicyWrite
        var body: [UInt8]?
        var auditBody: [UInt8]?
    }

    private static func encoded(_ write: PolicyWrite) throws(StoreError) -> PreparedWrite {
        switch write {
        case .put(_, let policy, _, _, _, _, let audit):
            return PreparedWrite(write: write, body: try StoredCoding.encodePolicy(policy), auditBody: try audit.map { a throws(StoreError) in try StoredCoding.encodeAudit(a) })
        case .delete(_, _, _, _, _, _, let audit):
            return PreparedWrite(write: write, body: nil, auditBody: try audit.map { a throws(StoreError) in try StoredCoding.encodeAudit(a) })
        }
    }

    /// Applies one write inside an open transaction.
    private static func apply(_ prepared: PreparedWrite, _ db: SQLiteDatabase) throws(StoreError) -> PolicyChangeRecord {
        switch prepared.write {
        case let .put(registry, policy, expectedVersion, actor, reason, atMs, audit):
            let body = prepared.body ?? []
            let existing = try db.query("SELECT body, version FROM policies WHERE registry = ? AND name = ?", [.text(registry), .text(policy.name)]).first
            let currentVersion = UInt64(existing?[1].int ?? 0)
            if let expectedVersion, expectedVersion != currentVersion {
                throw StoreError.staleVersion(
                    registry: registry, name: policy.name, expected: expectedVersion, current: currentVersion, exists: existing != nil)
            }
            let version = try Self.bumpRegistry(db, registry, atMs)
            try db.query(
                "INSERT OR REPLACE INTO policies (registry, name, body, version, updated_at_ms, updated_by) VALUES (?, ?, ?, ?, ?, ?)",
                [.text(registry), .text(policy.name), .blob(body), .integer(Int64(version)), .integer(atMs), .text(actor)])
            let before = try existing.map { row throws(StoreError) in try StoredCoding.decodePolicy(row[0].bytes ?? []) }
            let change = PolicyChangeRecord(
                registry: registry, version: version, name: policy.name, kind: before == nil ? .created : .updated,
                before: before, after: policy, actor: actor, atMs: atMs, reason: reason)
            try Self.insertHistory(db, change, before: existing?[0].bytes, after: body)
            if let audit, let auditBody = prepared.auditBody { _ = try Self.insertAudit(db, audit, body: auditBody) }
            return change
        case let .delete(registry, name, expectedVersion, actor, reason, atMs, audit):
            guard let existing = try db.query("SELECT body, version FROM policies WHERE registry = ? AND name = ?", [.text(registry), .text(name)]).first else {
                throw StoreError(.notFound, "policy \(registry)/\(name) does not exist")
            }
            let currentVersion = UInt64(existing[1].int ?? 0)
            if let expectedVersion, expectedVersion != currentVersion {
                throw StoreError(.versionConflict, "policy \(registry)/\(name) is at version \(currentVersion), not \(expectedVersion)", currentVersion: currentVersion)
            }
            let version = try Self.bumpRegistry(db, registry, atMs)
            try db.query("DELETE FROM policies WHERE registry = ? AND name = ?", [.text(registry), .text(name)])
            let change = PolicyChangeRecord(
                registry: registry, version: version, name: name, kind: .deleted,
                before: try StoredCoding.decodePolicy(existing[0].bytes ?? []), after: nil, actor: actor, atMs: atMs, reason: reason)
            try Self.insertHistory(db, change, before: existing[0].bytes, after: nil)
            if let audit, let auditBody = prepared.auditBody { _ = try Self.insertAudit(db, audit, body: auditBody) }
            return change
        }
    }

    public func history(registry: String, name: String?, afterVersion: UInt64, limit: Int) async throws(StoreError) -> [PolicyChangeRecord] {
        try await run { db throws(StoreError) in
            var sql = "SELECT version, name, kind, before, after, actor, at_ms, reason FROM policy_history WHERE registry = ? AND version > ?"
            var parameters: [SQLiteDatabase.Value] = [.text(registry), .integer(Int64(afterVersion))]
            if let name {
                sql += " AND name = ?"
                parameters.append(.text(name))
            }
            sql += " ORDER BY version LIMIT ?"
            parameters.append(.integer(Int64(limit)))
            var changes: [PolicyChangeRecord] = []
            for row in try db.query(sql, parameters) {
                changes.append(PolicyChangeRecord(
                    registry: registry, version: UInt64(row[0].int ?? 0), name: row[1].string ?? "",
                    kind: PolicyChangeRecord.Kind(rawValue: Int(row[2].int ?? 2)) ?? .updated,
                    before: try row[3].bytes.map { b throws(StoreError) in try StoredCoding.decodePolicy(b) },
                    after: try row[4].bytes.map { b throws(StoreError) in try StoredCoding.decodePolicy(b) },
                    actor: row[5].string ?? "", atMs: row[6].int ?? 0, reason: row[7].string ?? ""))
            }
            return changes
        }
    }

    private static func bumpRegistry(_ db: SQLiteDatabase, _ registry: String, _ atMs: Int64) throws(StoreError) -> UInt64 {
        try db.query(
            "INSERT INTO registries (name, version, updated_at_ms) VALUES (?, 1, ?) ON CONFLICT(name) DO UPDATE SET version = version + 1, updated_at_ms = excluded.updated_at_ms",
            [.text(registry), .integer(atMs)])
        return UInt64(try db.query("SELECT version FROM registries WHERE name = ?", [.text(registry)]).first?.first?.int ?? 1)
    }

    private static func insertHistory(_ db: SQLiteDatabase, _ change: PolicyChangeRecord, before: [UInt8]?, after: [UInt8]?) throws(StoreError) {
        try db.query(
            "INSERT INTO policy_history (registry, version, name, kind, before, after, actor, at_ms, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [.text(change.registry), .integer(Int64(change.version)), .text(change.name), .integer(Int64(change.kind.rawValue)),
             before.map { .blob($0) } ?? .null, after.map { .blob($0) } ?? .null, .text(change.actor), .integer(change.atMs), .text(change.reason)])
    }

    // MARK: Breakers

    public func commit(_ commits: [BreakerCommit]) async throws(StoreError) -> [UInt64] {
        var rows: [(StoredBreaker, [UInt8]?, [(AuditRecord, [UInt8])], Bool)] = []
        for c in commits {
            let rule = try c.breaker.rule.map { r throws(StoreError) in try StoredCoding.encodeRule(r) }
            var audits: [(AuditRecord, [UInt8])] = []
            for a in c.audits { audits.append((a, try StoredCoding.encodeAudit(a))) }
            rows.append((c.breaker, rule, audits, c.evicted))
        }
        let prepared = rows
        return try await run { db throws(StoreError) in
            try db.transaction { () throws(StoreError) -> [UInt64] in
                var ids: [UInt64] = []
                for (b, rule, audits, evicted) in prepared {
                    if evicted {
                        try db.query("DELETE FROM breakers WHERE registry = ? AND name = ?", [.text(b.registry), .text(b.name)])
                        try db.query(
                            "INSERT INTO counters (name, value) VALUES ('generation_floor', ?) ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                            [.integer(Int64(b.status.generation.value))])
                        for (audit, body) in audits { ids.append(try Self.insertAudit(db, audit, body: body)) }
                        continue
                    }
                    try db.query(
                        """
                        INSERT OR REPLACE INTO breakers (registry, name, policy, generation, state, evaluated_state, since_ms, until_ms,
                            reason, override, override_until_ms, rule) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        [.text(b.registry), .text(b.name), .text(b.policy), .integer(Int64(b.status.generation.value)),
                         .text(b.status.state.rawValue), .text(b.status.evaluatedState.rawValue), .integer(b.status.since.milliseconds),
                         b.status.until.map { .integer($0.milliseconds) } ?? .null, .text(b.status.reason),
                         b.override.map { .text($0.state.rawValue) } ?? .null, b.overrideUntilMs.map { .integer($0) } ?? .null,
                         rule.map { .blob($0) } ?? .null])
                    for (audit, body) in audits { ids.append(try Self.insertAudit(db, audit, body: body)) }
                }
                return ids
            }
        }
    }

    public func loadBreakers() async throws(StoreError) -> [StoredBreaker] {
        try await run { db throws(StoreError) in
            try db.query("SELECT registry, name, policy, generation, state, evaluated_state, since_ms, until_ms, reason, override, override_until_ms, rule FROM breakers ORDER BY registry, name").map { row throws(StoreError) in
                let override = StoredCoding.override(stateName: row[9].string)
                return StoredBreaker(
                    registry: row[0].string ?? "", name: row[1].string ?? "", policy: row[2].string ?? "",
                    status: BreakerStatus(
                        state: BreakerState(rawValue: row[4].string ?? "") ?? .closed,
                        evaluatedState: BreakerState(rawValue: row[5].string ?? "") ?? .closed,
                        generation: BreakerGeneration(UInt64(row[3].int ?? 0)), since: Timestamp(milliseconds: row[6].int ?? 0),
                        until: row[7].int.map(Timestamp.init(milliseconds:)), reason: row[8].string ?? ""),
                    override: override, overrideUntilMs: row[10].int,
                    rule: try row[11].bytes.flatMap { b throws(StoreError) in try StoredCoding.decodeRule(b) })
            }
        }
    }

    public func loadGenerationFloor() async throws(StoreError) -> UInt64 {
        try await run { db throws(StoreError) in
            UInt64(try db.query("SELECT value FROM counters WHERE name = 'generation_floor'").first?.first?.int ?? 0)
        }
    }

    // MARK: Audit

    public func appendAudit(_ entry: AuditRecord) async throws(StoreError) -> UInt64 {
        let body = try StoredCoding.encodeAudit(entry)
        return try await run { db throws(StoreError) in
            try db.transaction { () throws(StoreError) in try Self.insertAudit(db, entry, body: body) }
        }
    }

    private static func insertAudit(_ db: SQLiteDatabase, _ entry: AuditRecord, body: [UInt8]) throws(StoreError) -> UInt64 {
        try db.query(
            "INSERT INTO audit (at_ms, action, registry, breaker, allowed, body) VALUES (?, ?, ?, ?, ?, ?)",
            [.integer(entry.atMs), .integer(Int64(entry.action.rawValue)), .text(entry.breaker?.registry ?? ""),
             .text(entry.breaker?.name ?? ""), .integer(entry.allowed ? 1 : 0), .blob(body)])
        return UInt64(db.lastInsertID)
    }

    public func listAudit(_ f: AuditQuery) async throws(StoreError) -> [AuditRecord] {
        try await run { db throws(StoreError) in
            var sql = "SELECT id, body FROM audit WHERE 1 = 1"
            var p: [SQLiteDatabase.Value] = []
            if f.sinceMs > 0 { sql += " AND at_ms >= ?"; p.append(.integer(f.sinceMs)) }
            if f.untilMs > 0 { sql += " AND at_ms < ?"; p.append(.integer(f.untilMs)) }
            if !f.registry.isEmpty { sql += " AND registry = ?"; p.append(.text(f.registry)) }
            if !f.breakerPrefix.isEmpty { sql += " AND substr(breaker, 1, ?) = ?"; p.append(.integer(Int64(f.breakerPrefix.utf8.count))); p.append(.text(f.breakerPrefix)) }
            if f.deniedOnly { sql += " AND allowed = 0" }
            if f.beforeID > 0 { sql += " AND id < ?"; p.append(.integer(Int64(f.beforeID))) }
            if !f.actions.isEmpty { sql += " AND action IN (\(f.actions.map { "\($0.rawValue)" }.joined(separator: ",")))" }
            sql += " ORDER BY id DESC LIMIT ?"
            p.append(.integer(Int64(max(f.limit, 1) + 1)))
            return try db.query(sql, p).map { row throws(StoreError) in
                try StoredCoding.decodeAudit(row[1].bytes ?? [], id: UInt64(row[0].int ?? 0))
            }
        }
    }
}
