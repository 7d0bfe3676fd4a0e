import Foundation
import FuseboxAuthority
import FuseboxCore
import FuseboxEtcd
import FuseboxServer
import FuseboxTesting
import NIOConcurrencyHelpers
import XCTest

/// The etcd store on a real (one-member) etcd: optimistic policy writes
/// across two stores (two replicas), audit ids and order, and the fence on
/// breaker commits.
final class EtcdStoreTests: XCTestCase {
    func stored(_ name: String, generation: UInt64, state: BreakerState = .open) -> StoredBreaker {
        StoredBreaker(
            registry: "default", name: name, policy: "fleet",
            status: BreakerStatus(
                state: state, evaluatedState: state, generation: BreakerGeneration(generation), since: Timestamp(milliseconds: 1_000),
                until: nil, reason: "test"),
            override: nil, overrideUntilMs: nil)
    }

    func testExpectedVersionHoldsAcrossTwoReplicasStores() async throws {
        try await withCluster(size: 1) { _, client in
            let prefix = "/t-\(UUID().uuidString.prefix(8))"
            let a = EtcdStore(client: client, prefix: prefix, auditRetention: 1_000)
            let b = EtcdStore(client: client, prefix: prefix, auditRetention: 1_000)
            let first = try await a.putPolicy(
                registry: "default", policy: Policy(name: "p"), expectedVersion: 0, actor: "x", reason: "create", atMs: 1, audit: nil)
            XCTAssertEqual(first.version, 1)
            XCTAssertEqual(first.kind, .created)
            // Both read version 1; only one of two writes expecting it wins.
            async let one = try? a.putPolicy(registry: "default", policy: Policy(name: "p"), expectedVersion: 1, actor: "a", reason: "", atMs: 2, audit: nil)
            async let two = try? b.putPolicy(registry: "default", policy: Policy(name: "p"), expectedVersion: 1, actor: "b", reason: "", atMs: 2, audit: nil)
            let results = await [one, two]
            XCTAssertEqual(results.compactMap { $0 }.count, 1, "exactly one writer expecting version 1 wins")
            do {
                _ = try await b.putPolicy(registry: "default", policy: Policy(name: "p"), expectedVersion: 1, actor: "b", reason: "", atMs: 3, audit: nil)
                XCTFail("a stale expected version was accepted")
            } catch let error as StoreError {
                XCTAssertEqual(error.code, .versionConflict)
                XCTAssertEqual(error.currentVersion, 2)
            }
            let history = try await b.history(registry: "default", name: nil, afterVersion: 0, limit: 10)
            XCTAssertEqual(history.map(\.version), [1, 2])
            let registries = try await b.loadRegistries()
            XCTAssertEqual(registries.first?.policies["p"]?.version, 2)
            let deleted = try await a.deletePolicy(registry: "default", name: "p", expectedVersion: 2, actor: "x", reason: "", atMs: 4, audit: nil)
            XCTAssertEqual(deleted.kind, .deleted)
            let afterDelete = try await b.loadRegistries()
            XCTAssertNil(afterDelete.first?.policies["p"])
            XCTAssertEqual(afterDelete.first?.version, 3)
        }
    }

    func testAuditIdsIncreaseListNewestFirstAndOldOnesAreTrimmed() async throws {
        try await withCluster(size: 1) { _, client in
            let store = EtcdStore(client: client, prefix: "/t-\(UUID().uuidString.prefix(8))", auditRetention: 50)
            var ids: [UInt64] = []
            for i in 0..<123 {
                ids.append(try await store.appendAudit(AuditRecord(atMs: Int64(i), actor: nil, action: .forceOpen, reason: "\(i)", allowed: i % 2 == 0)))
            }
            XCTAssertEqual(ids, Array(1...123))
            var query = AuditQuery()
            query.limit = 3
            let newest = try await store.listAudit(query)
            XCTAssertEqual(newest.map(\.id), [123, 122, 121, 120], "newest first, limit + 1")
            query.beforeID = 121
            query.deniedOnly = true
            let denied = try await store.listAudit(query)
            XCTAssertEqual(denied.map(\.id), [120, 118, 116, 114], "even ids are the denied ones")
            // Retention 50, trimmed every 5 ids: at id 120 everything up to 70 went.
            query = AuditQuery()
            query.limit = 2_000
            let all = try await store.listAudit(query)
            XCTAssertEqual(all.last?.id, 71)
        }
    }

    func testADeposedLeadersCommitIsFenced() async throws {
        try await withCluster(size: 1) { _, client in
            let prefix = "/t-\(UUID().uuidString.prefix(8))"
            let store = EtcdStore(client: client, prefix: prefix, auditRetention: 1_000)
            let leaderKey = Array("\(prefix)/leader".utf8)
            let first = try await client.put(leaderKey, Array("a".utf8))
            let fencedCalls = NIOLockedValueBox(0)
            let a = store.breakerStore(leaderRevision: first.revision) { fencedCalls.withLockedValue { $0 += 1 } }
            _ = try await a.commit([BreakerCommit(breaker: stored("db", generation: 5))])
            let loaded = try await a.loadBreakers()
            XCTAssertEqual(loaded.first?.status.generation.value, 5)

            // Another replica is elected: the key is created anew.
            _ = try await client.deleteRange(leaderKey)
            let second = try await client.put(leaderKey, Array("b".utf8))
            let b = store.breakerStore(leaderRevision: second.revision) {}
            do {
                _ = try await a.commit([
                    BreakerCommit(breaker: stored("db", generation: 6, state: .halfOpen),
                                  audits: [AuditRecord(atMs: 1, actor: nil, action: .forceOpen, allowed: true)]),
                ])
                XCTFail("the deposed leader's commit was stored")
            } catch let error as StoreError {
                XCTAssertEqual(error.code, .fenced)
            }
            XCTAssertEqual(fencedCalls.withLockedValue { $0 }, 1)
            let kept = try await b.loadBreakers()
            XCTAssertEqual(kept.first?.status.generation.value, 5, "nothing of the fenced commit is stored")
            let audits = try await store.listAudit(AuditQuery())
            XCTAssertEqual(audits.count, 0, "nor its audit entry")
            _ = try await b.commit([BreakerCommit(breaker: stored("db", generation: 6, state: .halfOpen))])
            let after = try await b.loadBreakers()
            XCTAssertEqual(after.first?.status.state, .halfOpen)
            XCTAssertEqual(b.commitLimits, CommitLimits(maxChanges: 60, distinctBreakers: true, maxWrites: 120))
        }
    }
}

extension EtcdStoreTests {
    /// The store's current revision: each applied transaction advances it by one.
    func revision(_ client: EtcdClient) async throws -> Int64 {
        try await client.range(Array("/".utf8), limit: 1).revision
    }

    func testAGroupOfPolicyWritesIsOneTransactionAndRefusesOneAlone() async throws {
        try await withCluster(size: 1) { _, client in
            let store = EtcdStore(client: client, prefix: "/t-\(UUID().uuidString.prefix(8))", auditRetention: 1_000)
            func audit(_ reason: String) -> AuditRecord { AuditRecord(atMs: 1, actor: nil, action: .putPolicy, reason: reason, allowed: true) }
            _ = try await store.putPolicy(registry: "default", policy: Policy(name: "a"), expectedVersion: 0, actor: "x", reason: "", atMs: 1, audit: audit("a"))
            let before = try await revision(client)
            let results = await store.writePolicies([
                .put(registry: "default", policy: Policy(name: "a"), expectedVersion: 1, actor: "x", reason: "", atMs: 2, audit: audit("a2")),
                // Stale by the group's own first write: refused, takes no version.
                .put(registry: "default", policy: Policy(name: "a"), expectedVersion: 1, actor: "x", reason: "", atMs: 2, audit: audit("stale")),
                .put(registry: "default", policy: Policy(name: "b"), expectedVersion: 0, actor: "x", reason: "", atMs: 2, audit: audit("b")),
                .delete(registry: "default", name: "nope", expectedVersion: nil, actor: "x", reason: "", atMs: 2, audit: audit("nope")),
                .put(registry: "other", policy: Policy(name: "c"), expectedVersion: nil, actor: "x", reason: "", atMs: 2, audit: audit("c")),
                .delete(registry: "default", name: "a", expectedVersion: 2, actor: "x", reason: "", atMs: 3, audit: audit("a-gone")),
            ])
            let afterGroup = try await revision(client)
            XCTAssertEqual(afterGroup, before + 1, "six writes, one transaction")
            XCTAssertEqual(results.map { (try? $0.get())?.version }, [2, nil, 3, nil, 1, 4])
            XCTAssertEqual(results.map { (try? $0.get())?.kind }, [.updated, nil, .created, nil, .created, .deleted])
            if case .failure(let e) = results[1] { XCTAssertEqual(e.code, .versionConflict); XCTAssertEqual(e.currentVersion, 2) }
            if case .failure(let e) = results[3] { XCTAssertEqual(e.code, .notFound) }

            let registries = try await store.loadRegistries()
            XCTAssertEqual(registries.map(\.name), ["default", "other"])
            XCTAssertEqual(registries[0].version, 4)
            XCTAssertEqual(registries[0].policies.keys.sorted(), ["b"])
            XCTAssertEqual(registries[1].policies["c"]?.version, 1)
            let history = try await store.history(registry: "default", name: nil, afterVersion: 0, limit: 10)
            XCTAssertEqual(history.map(\.version), [1, 2, 3, 4])
            XCTAssertEqual(history.map(\.name), ["a", "a", "b", "a"])
            var query = AuditQuery()
            query.limit = 10
            let audits = try await store.listAudit(query)
            XCTAssertEqual(audits.map(\.reason), ["a-gone", "c", "b", "a2", "a"], "the refused writes' entries are not stored")
            XCTAssertEqual(audits.map(\.id), [5, 4, 3, 2, 1])

            // More writes than one transaction holds: in order, in more than one.
            let many = await store.writePolicies((0..<30).map { i in
                .put(registry: "many", policy: Policy(name: "p\(i % 7)"), expectedVersion: nil, actor: "x", reason: "\(i)", atMs: 4, audit: audit("m\(i)"))
            })
            XCTAssertEqual(many.map { (try? $0.get())?.version }, (1...30).map { Optional(UInt64($0)) })
            let afterMany = try await revision(client)
            XCTAssertEqual(afterMany, before + 1 + 2, "30 writes in two transactions of at most \(EtcdStore.groupLimit)")
            let newest = try await store.listAudit(query)
            XCTAssertEqual(newest.first?.id, 35)
        }
    }

    /// A store starts a group from what it last wrote; another replica's
    /// write in between must neither be overwritten nor make a valid
    /// expected version look stale.
    func testAGroupStartingFromAStaleViewDecidesOnTheCurrentOne() async throws {
        try await withCluster(size: 1) { _, client in
            let prefix = "/t-\(UUID().uuidString.prefix(8))"
            let a = EtcdStore(client: client, prefix: prefix, auditRetention: 1_000)
            let b = EtcdStore(client: client, prefix: prefix, auditRetention: 1_000)
            _ = try await a.putPolicy(registry: "default", policy: Policy(name: "p"), expectedVersion: 0, actor: "a", reason: "", atMs: 1, audit: nil)
            _ = try await b.putPolicy(registry: "default", policy: Policy(name: "p"), expectedVersion: 1, actor: "b", reason: "", atMs: 2, audit: nil)
            // a last saw version 1; the policy is at 2.
            let results = await a.writePolicies([
                .put(registry: "default", policy: Policy(name: "p"), expectedVersion: 1, actor: "a", reason: "stale", atMs: 3, audit: nil),
                .put(registry: "default", policy: Policy(name: "p"), expectedVersion: 2, actor: "a", reason: "current", atMs: 3, audit: nil),
            ])
            XCTAssertEqual((try? results[1].get())?.version, 3, "the write expecting the current version went")
            guard case .failure(let refused) = results[0] else { return XCTFail("a write expecting version 1 of 2 was stored") }
            XCTAssertEqual(refused.code, .versionConflict)
            XCTAssertEqual(refused.currentVersion, 2)
            // b last saw version 2: a refusal it would decide on that alone is checked too.
            do {
                _ = try await b.putPolicy(registry: "default", policy: Policy(name: "p"), expectedVersion: 3, actor: "b", reason: "", atMs: 4, audit: nil)
            } catch {
                XCTFail("a write expecting the current version 3 was refused: \(error)")
            }
            let history = try await a.history(registry: "default", name: nil, afterVersion: 0, limit: 10)
            XCTAssertEqual(history.map(\.actor), ["a", "b", "a", "b"])
            XCTAssertEqual(history.map(\.version), [1, 2, 3, 4])
        }
    }
}
