import Foundation
import FuseboxCore
import FuseboxAuthority
import FuseboxTesting
import FuseboxWire
import NIOConcurrencyHelpers
import XCTest

@testable import FuseboxServer

final class SQLiteStoreTests: XCTestCase {
    private var directory: String!

    override func setUp() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-store-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testPoliciesVersionsHistoryAndReopen() async throws {
        let store = try await SQLiteStore.open(directory: directory)
        let created = try await store.putPolicy(registry: "payments", policy: Presets.api, expectedVersion: 0, actor: "alice", reason: "initial", atMs: 1, audit: nil)
        XCTAssertEqual(created.kind, .created)
        XCTAssertEqual(created.version, 1)
        var changed = Presets.api
        changed.retry?.maxAttempts = 5
        let updated = try await store.putPolicy(registry: "payments", policy: changed, expectedVersion: 1, actor: "bob", reason: "more retries", atMs: 2, audit: nil)
        XCTAssertEqual(updated.kind, .updated)
        XCTAssertEqual(updated.before, Presets.api)
        do {
            _ = try await store.putPolicy(registry: "payments", policy: Presets.api, expectedVersion: 1, actor: "carol", reason: "", atMs: 3, audit: nil)
            XCTFail("stale expected version must fail")
        } catch {
            XCTAssertEqual(error.code, .versionConflict)
            XCTAssertEqual(error.currentVersion, 2)
        }
        _ = try await store.putPolicy(registry: "payments", policy: Presets.ai, expectedVersion: nil, actor: "bob", reason: "", atMs: 4, audit: nil)
        let deleted = try await store.deletePolicy(registry: "payments", name: "ai", expectedVersion: nil, actor: "bob", reason: "gone", atMs: 5, audit: nil)
        XCTAssertEqual(deleted.version, 4)
        await store.close()

        let reopened = try await SQLiteStore.open(directory: directory)
        let registries = try await reopened.loadRegistries()
        XCTAssertEqual(registries.map(\.name), ["payments"])
        XCTAssertEqual(registries.first?.version, 4)
        XCTAssertEqual(registries.first?.policies["api"]?.policy, changed)
        XCTAssertEqual(registries.first?.policies["api"]?.updatedBy, "bob")
        XCTAssertNil(registries.first?.policies["ai"])
        let history = try await reopened.history(registry: "payments", name: nil, afterVersion: 0, limit: 10)
        XCTAssertEqual(history.map(\.kind), [.created, .updated, .created, .deleted])
        XCTAssertEqual(history.map(\.actor), ["alice", "bob", "bob", "bob"])
        let resumed = try await reopened.history(registry: "payments", name: "api", afterVersion: 1, limit: 10)
        XCTAssertEqual(resumed.map(\.version), [2])
        await reopened.close()
    }

    /// Group commit: one transaction for several writes, a refused one undone
    /// alone (it takes no version), the rest durable together.
    func testAGroupOfPolicyWritesRefusesOneAloneAndKeepsTheRest() async throws {
        let store = try await SQLiteStore.open(directory: directory)
        var changed = Presets.api
        changed.retry?.maxAttempts = 7
        let audit = AuditRecord(atMs: 3, actor: AuditActor(commonName: "carol", roles: ["admin"]), action: .putPolicy, policy: "payments/api", reason: "group", allowed: true)
        let results = await store.writePolicies([
            .put(registry: "payments", policy: Presets.api, expectedVersion: 0, actor: "alice", reason: "first", atMs: 1, audit: nil),
            .put(registry: "payments", policy: Presets.ai, expectedVersion: 5, actor: "bob", reason: "stale", atMs: 2, audit: nil),
            .put(registry: "payments", policy: changed, expectedVersion: 1, actor: "carol", reason: "second", atMs: 3, audit: audit),
            .delete(registry: "payments", name: "missing", expectedVersion: nil, actor: "dave", reason: "", atMs: 4, audit: nil),
        ])
        XCTAssertEqual(results.count, 4)
        XCTAssertEqual(try results[0].get().version, 1)
        XCTAssertThrowsError(try results[1].get()) { XCTAssertEqual(($0 as? StoreError)?.code, .versionConflict) }
        // The refused write took no version: the next one is 2, not 3.
        XCTAssertEqual(try results[2].get().version, 2)
        XCTAssertEqual(try results[2].get().before, Presets.api)
        XCTAssertThrowsError(try results[3].get()) { XCTAssertEqual(($0 as? StoreError)?.code, .notFound) }
        await store.close()

        let reopened = try await SQLiteStore.open(directory: directory)
        let registry = try await reopened.loadRegistries().first
        XCTAssertEqual(registry?.version, 2)
        XCTAssertEqual(registry?.policies["api"]?.policy, changed)
        XCTAssertNil(registry?.policies["ai"])
        let history = try await reopened.history(registry: "payments", name: nil, afterVersion: 0, limit: 10)
        XCTAssertEqual(history.map(\.version), [1, 2])
        XCTAssertEqual(history.map(\.actor), ["alice", "carol"])
        var query = AuditQuery()
        query.limit = 10
        let audits = try await reopened.listAudit(query)
        XCTAssertEqual(audits.map(\.reason), ["group"])
        await reopened.close()
    }

    /// Writers arriving together share commits, and every one of them is
    /// answered with its own change, in one version order that the registry's
    /// watchers see too.
    func testConcurrentPolicyWritesShareCommitsAndKeepOneOrder() async throws {
        let store = GroupCountingStore(try await SQLiteStore.open(directory: directory))
        let registry = try await PolicyRegistry(store: store, clock: ManualFleetClock())
        let sink = RegistryEventSink()
        _ = registry.hub.subscribe(sink, accepts: { _ in true }, snapshot: { .snapshot(StoredRegistry(name: "payments", version: 0, updatedAtMs: 0, policies: [:])) })
        let writers = 16, each = 8
        let versions = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for w in 0..<writers {
                group.addTask {
                    var mine: [UInt64] = []
                    for k in 0..<each {
                        var p = Presets.api
                        p.name = "writer-\(w)"
                        p.retry?.maxAttempts = 1 + k % 5
                        let change = try await registry.put(registry: "payments", policy: p, expectedVersion: nil, actor: "w\(w)", reason: "\(k)", audit: nil)
                        XCTAssertEqual(change.name, "writer-\(w)")
                        mine.append(change.version)
                    }
                    return mine
                }
            }
            var all: [UInt64] = []
            for try await v in group { all += v }
            return all
        }
        XCTAssertEqual(versions.sorted(), Array(1...UInt64(writers * each)), "every write answered with a version of its own, none lost")
        XCTAssertEqual(registry.registryVersion("payments"), UInt64(writers * each))
        let groups = store.groups
        XCTAssertEqual(groups.reduce(0, +), writers * each)
        XCTAssertLessThan(groups.count, writers * each, "writers that arrived together should have shared a commit: \(groups)")
        let seen = sink.events.withLockedValue { $0 }.flatMap { event -> [UInt64] in
            if case .changes(let changes) = event { return changes.map(\.version) }
            return []
        }
        XCTAssertEqual(seen, Array(1...UInt64(writers * each)), "watchers see every version once, in order")
        await store.base.close()
    }

    func testBreakersAndAuditPersist() async throws {
        let store = try await SQLiteStore.open(directory: directory)
        let status = BreakerStatus(state: .forcedOpen, evaluatedState: .closed, generation: BreakerGeneration(7), since: Timestamp(milliseconds: 10), until: Timestamp(milliseconds: 99), reason: "incident")
        var rule = CircuitBreakerPolicy()
        rule.consecutiveFailuresThreshold = 3
        let key = BreakerKey(registry: "default", name: "stripe")
        let allowed = AuditRecord(atMs: 4, actor: AuditActor(commonName: "alice", roles: ["reader", "reporter", "admin"]), action: .forceOpen, breaker: key, reason: "incident", allowed: true)
        let ids = try await store.commit([BreakerCommit(
            breaker: StoredBreaker(registry: "default", name: "stripe", policy: "api", status: status, override: .forcedOpen, overrideUntilMs: 99, rule: rule),
            audits: [allowed])])
        XCTAssertEqual(ids.count, 1)
        let denied = AuditRecord(atMs: 5, actor: nil, action: .forceOpen, breaker: key, allowed: false, deniedReason: "missing role admin")
        let id = try await store.appendAudit(denied)
        await store.close()
        let reopened = try await SQLiteStore.open(directory: directory)
        let breakers = try await reopened.loadBreakers()
        XCTAssertEqual(breakers.first?.status, status)
        XCTAssertEqual(breakers.first?.override, .forcedOpen)
        XCTAssertEqual(breakers.first?.rule, rule, "the rule is kept for a breaker whose policy goes away")
        var filter = AuditQuery()
        filter.deniedOnly = true
        filter.breakerPrefix = "str"
        let audit = try await reopened.listAudit(filter)
        XCTAssertEqual(audit.map(\.id), [id])
        XCTAssertEqual(audit.first?.deniedReason, "missing role admin")
        let all = try await reopened.listAudit(AuditQuery())
        XCTAssertEqual(all.last?.actor?.roles, ["reader", "reporter", "admin"], "the actor's roles are kept")
        await reopened.close()
    }

    /// A commit is one transaction: when it fails, none of its breakers or
    /// audit entries is stored.
    func testACommitIsAllOrNothing() async throws {
        let store = try await SQLiteStore.open(directory: directory)
        let status = BreakerStatus(state: .open, evaluatedState: .open, generation: BreakerGeneration(1), since: Timestamp(milliseconds: 1), reason: "trip")
        _ = try await store.commit([BreakerCommit(breaker: StoredBreaker(registry: "default", name: "a", policy: "api", status: status, override: nil, overrideUntilMs: nil))])
        await store.close()
        // A trigger makes the second row of the next commit fail.
        XCTAssertEqual(try runSQLite(directory + "/fusebox.db", "CREATE TRIGGER refuse BEFORE INSERT ON breakers WHEN NEW.name = 'c' BEGIN SELECT RAISE(FAIL, 'refused'); END;"), 0)
        let reopened = try await SQLiteStore.open(directory: directory)
        var later = status
        later.generation = BreakerGeneration(2)
        let audit = AuditRecord(atMs: 2, actor: nil, action: .reset, breaker: BreakerKey(registry: "default", name: "b"), allowed: true)
        do {
            _ = try await reopened.commit([
                BreakerCommit(breaker: StoredBreaker(registry: "default", name: "a", policy: "api", status: later, override: nil, overrideUntilMs: nil)),
                BreakerCommit(breaker: StoredBreaker(registry: "default", name: "b", policy: "api", status: status, override: nil, overrideUntilMs: nil), audits: [audit]),
                BreakerCommit(breaker: StoredBreaker(registry: "default", name: "c", policy: "api", status: status, override: nil, overrideUntilMs: nil)),
            ])
            XCTFail("the trigger must refuse the commit")
        } catch {
            XCTAssertTrue(error.message.contains("refused"), error.message)
        }
        let breakers = try await reopened.loadBreakers()
        XCTAssertEqual(breakers.map(\.name), ["a"])
        XCTAssertEqual(breakers.first?.status.generation, BreakerGeneration(1))
        let entries = try await reopened.listAudit(AuditQuery())
        XCTAssertTrue(entries.isEmpty, "the audit entry went with the refused transaction")
        await reopened.close()
    }

    /// A writer whose task is cancelled (its client left, its deadline
    /// passed) while its task stores a group must not fail the other writes
    /// of the group. The store here fails a cancelled caller, as the etcd
    /// client does (the call is abandoned, maybe after etcd applied it).
    func testACancelledWriterDoesNotFailTheOthersInItsGroup() async throws {
        let store = GroupCountingStore(try await SQLiteStore.open(directory: directory), holdFirstGroup: true, failWhenCancelled: true)
        let registry = try await PolicyRegistry(store: store, clock: ManualFleetClock())
        func put(_ name: String) async throws -> PolicyChangeRecord {
            try await registry.put(registry: "payments", policy: Policy(name: name), expectedVersion: nil, actor: "t", reason: "", audit: nil)
        }
        // The first writer's group is held in the store while three more queue up.
        let first = Task { try await put("first") }
        await waitUntil("the first group in the store") { store.groups.count == 1 }
        let leader = Task { try await put("leader") }
        try await Task.sleep(for: .milliseconds(50))
        let others = (0..<2).map { i in Task { try await put("other-\(i)") } }
        try await Task.sleep(for: .milliseconds(50))
        // The leader's task (the next to take the gate) is cancelled before its group is stored.
        leader.cancel()
        store.release()
        _ = try await first.value
        for other in others {
            do {
                _ = try await other.value
            } catch {
                XCTFail("a write failed because another writer of its group was cancelled: \(error)")
            }
        }
        XCTAssertEqual(store.groups, [1, 3], "the leader stored the three queued writes as one group")
        let leaderResult = await leader.result
        XCTAssertNotNil(try? leaderResult.get(), "the group was stored for the cancelled writer too")
        await store.base.close()
    }

    /// With a shared store (replicas on etcd), a writer is answered once its
    /// own change has come back through the feed, not when another's has.
    func testASharedStoreWriterWaitsForItsOwnChange() async throws {
        let store = GroupCountingStore(try await SQLiteStore.open(directory: directory))
        let registry = try await PolicyRegistry(store: store, clock: ManualFleetClock(), shared: true)
        let answered = NIOLockedValueBox<[String]>([])
        let writers = ["x", "y"].map { name in
            Task {
                let change = try await registry.put(registry: name, policy: Policy(name: "p"), expectedVersion: nil, actor: "t", reason: "", audit: nil)
                answered.withLockedValue { $0.append(name) }
                return change
            }
        }
        await waitUntil("both writes stored") { store.changes.count == 2 }
        let changes = store.changes
        let x = try XCTUnwrap(changes.first { $0.registry == "x" })
        let y = try XCTUnwrap(changes.first { $0.registry == "y" })
        // The feed brings back x's change only.
        await registry.applyFromStore(x)
        await waitUntil("x answered") { answered.withLockedValue { $0 } == ["x"] }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(answered.withLockedValue { $0 }, ["x"], "y was answered before its change reached memory")
        XCTAssertEqual(registry.registryVersion("y"), 0)
        await registry.applyFromStore(y)
        for w in writers { _ = try await w.value }
        XCTAssertEqual(answered.withLockedValue { $0 }.sorted(), ["x", "y"])
        XCTAssertEqual(registry.registryVersion("y"), 1)
        await store.base.close()
    }

    func testRefusesACorruptDatabase() async throws {
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: directory + "/fusebox.db"))
        do {
            _ = try await SQLiteStore.open(directory: directory)
            XCTFail("a corrupt database must be refused")
        } catch {
            XCTAssertEqual(error.code, .corrupt)
            XCTAssertTrue(error.message.contains("will not reset it"), error.message)
        }
        let stillThere = try Data(contentsOf: URL(fileURLWithPath: directory + "/fusebox.db"))
        XCTAssertEqual(stillThere, Data(repeating: 0x42, count: 8192), "the file is left as it was")
    }

    func testRefusesANewerSchema() async throws {
        let store = try await SQLiteStore.open(directory: directory)
        await store.close()
        let result = try runSQLite(directory + "/fusebox.db", "INSERT INTO schema_version (version) VALUES (99);")
        XCTAssertEqual(result, 0)
        do {
            _ = try await SQLiteStore.open(directory: directory)
            XCTFail("a newer schema must be refused")
        } catch {
            XCTAssertEqual(error.code, .newerSchema)
            XCTAssertTrue(error.message.contains("schema version 99"), error.message)
        }
    }

    private func runSQLite(_ path: String, _ sql: String) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["sqlite3", path, sql]
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }
}

/// A registry watch sink that keeps every event.
private final class RegistryEventSink: WatchSink, Sendable {
    let events = NIOLockedValueBox<[RegistryWatchEvent]>([])
    func offer(_ event: RegistryWatchEvent) -> Bool {
        events.withLockedValue { $0.append(event) }
        return true
    }
    var canAccept: Bool { true }
    func finish() {}
}

/// A store that counts the writes of each group it is given and keeps the
/// changes it stored. Optionally it holds the first group until `release()`,
/// and fails the writes of a caller whose task is cancelled, as the etcd
/// client does.
private final class GroupCountingStore: PolicyStore, @unchecked Sendable {
    let base: SQLiteStore
    private let lock = NSLock()
    private var sizes: [Int] = []
    private var stored: [PolicyChangeRecord] = []
    private var released: Bool
    private let failWhenCancelled: Bool
    init(_ base: SQLiteStore, holdFirstGroup: Bool = false, failWhenCancelled: Bool = false) {
        self.base = base
        self.released = !holdFirstGroup
        self.failWhenCancelled = failWhenCancelled
    }
    var groups: [Int] { lock.withLock { sizes } }
    var changes: [PolicyChangeRecord] { lock.withLock { stored } }
    func release() { lock.withLock { released = true } }
    func loadRegistries() async throws(StoreError) -> [StoredRegistry] { try await base.loadRegistries() }
    func putPolicy(
        registry: String, policy: Policy, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64, audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord {
        try await base.putPolicy(registry: registry, policy: policy, expectedVersion: expectedVersion, actor: actor, reason: reason, atMs: atMs, audit: audit)
    }
    func deletePolicy(
        registry: String, name: String, expectedVersion: UInt64?, actor: String, reason: String, atMs: Int64, audit: AuditRecord?
    ) async throws(StoreError) -> PolicyChangeRecord {
        try await base.deletePolicy(registry: registry, name: name, expectedVersion: expectedVersion, actor: actor, reason: reason, atMs: atMs, audit: audit)
    }
    func history(registry: String, name: String?, afterVersion: UInt64, limit: Int) async throws(StoreError) -> [PolicyChangeRecord] {
        try await base.history(registry: registry, name: name, afterVersion: afterVersion, limit: limit)
    }
    func writePolicies(_ writes: [PolicyWrite]) async -> [Result<PolicyChangeRecord, StoreError>] {
        lock.withLock { sizes.append(writes.count) }
        // Bounded: a test releases within seconds.
        for _ in 0..<1_000 where !lock.withLock({ released }) {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if failWhenCancelled, Task.isCancelled {
            return writes.map { _ in .failure(StoreError(.unavailable, "the call was cancelled")) }
        }
        let results = await base.writePolicies(writes)
        lock.withLock { stored += results.compactMap { try? $0.get() } }
        return results
    }
}
