import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTesting
import FuseboxTLS
import FuseboxWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Three fuseboxd processes (`--store etcd`) on a real three-member etcd
/// cluster on loopback: failures of whole processes.
final class ReplicatedProcessTests: XCTestCase {
    let group = MultiThreadedEventLoopGroup.singleton
    /// The leader lease's TTL these tests run with.
    static let lease = 2

    /// Replicas a, b and c on `cluster`, and a reader client of each.
    func startThree(_ cluster: EtcdTestCluster) throws -> (FuseboxdReplicas, [String: RPCClient]) {
        let replicas = try FuseboxdReplicas(cluster: cluster, leaseSeconds: Self.lease)
        do {
            for id in ["a", "b", "c"] { try replicas.start(id) }
            var readers: [String: RPCClient] = [:]
            for id in replicas.ids { readers[id] = try replicas.client(id, "reader", group: group) }
            return (replicas, readers)
        } catch {
            replicas.stopAll()
            throw error
        }
    }

    /// The leader's id as `client`'s replica reports it ("" if none).
    func leader(via client: RPCClient) async -> String {
        let status = try? await client.unary(
            "fusebox.v1.AdminService", "GetClusterStatus", Fusebox_V1_GetClusterStatusRequest(), as: Fusebox_V1_ClusterStatus.self,
            options: RPCCallOptions(timeout: .seconds(2)))
        return status?.leaderId ?? ""
    }

    func waitForLeader(_ clients: [String: RPCClient], not excluded: String? = nil, timeout: Duration) async -> String? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for (_, c) in clients {
                let id = await leader(via: c)
                if !id.isEmpty, id != excluded { return id }
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    /// Every transition a watcher saw, per breaker: generation → state.
    /// Fails when a breaker's generation went backwards or one generation
    /// came with two states (across every watcher given).
    func checkHistories(_ watches: [String: BreakerWatch], file: StaticString = #filePath, line: UInt = #line) {
        var stateOf: [String: [UInt64: Fusebox_V1_BreakerState]] = [:]
        for (replica, watch) in watches {
            var last: [String: UInt64] = [:]
            for event in watch.events.withLockedValue({ $0 }) {
                guard case .transition(let t)? = event.event, let s = t.status, let name = s.breaker?.name else { continue }
                if let before = last[name] {
                    XCTAssertGreaterThan(s.generation, before, "\(replica)'s watcher saw \(name)'s generation go from \(before) to \(s.generation)", file: file, line: line)
                }
                last[name] = s.generation
                if let known = stateOf[name]?[s.generation] {
                    XCTAssertEqual(known, s.state, "\(name) generation \(s.generation) came with two states", file: file, line: line)
                }
                stateOf[name, default: [:]][s.generation] = s.state
            }
        }
    }

    /// kill -9 of the leader in the middle of a trip storm: a new leader
    /// within the lease TTL + 1 s; every watcher's history stays monotonic
    /// and single-valued; every report is counted or refused with UNAVAILABLE
    /// (which the SDK retries), and retried reports trip every breaker.
    func testLeaderKilledDuringATripStorm() async throws {
        try await withCluster { cluster, _ in
            let (replicas, readers) = try startThree(cluster)
            defer { replicas.stopAll() }
            guard let first = await waitForLeader(readers, timeout: .seconds(20)) else {
                XCTFail("no leader\n\(replicas.logs)")
                return
            }
            let followers = replicas.ids.filter { $0 != first }
            let admin = try replicas.client(followers[0], "admin", group: group)
            try await putFleetPolicy(admin, minimumClients: 1, permits: 1, openMs: 600_000)
            var watches: [String: BreakerWatch] = [:]
            for id in replicas.ids { watches[id] = BreakerWatch(client: try replicas.client(id, "reader", group: group), prefix: "storm-") }
            await waitUntil("every watch subscribed") { watches.values.allSatisfy(\.subscribed) }

            // 300 breakers, a batch of 10 per call, sent to every replica in turn.
            let breakers = 300
            let calls = breakers / 10
            let reporters = try Dictionary(uniqueKeysWithValues: replicas.ids.map { ($0, try replicas.client($0, "reporter", group: self.group)) })
            let outcomes = NIOLockedValueBox<(ok: Int, unavailable: Int, other: [String])>((0, 0, []))
            func send(_ call: Int, to id: String) async -> Bool {
                var b = Fusebox_V1_OutcomeBatch()
                b.clientId = "storm"
                b.incarnation = 1
                b.sequence = 0
                for i in 0..<10 {
                    var entry = batch(client: "storm", breaker: "storm-\(call * 10 + i)", generation: 0, failure: 20).breakers[0]
                    entry.policy = "fleet"
                    b.breakers.append(entry)
                }
                do {
                    guard let client = reporters[id] else { return false }
                    _ = try await client.unary(
                        "fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self,
                        options: RPCCallOptions(timeout: .seconds(10)))
                    outcomes.withLockedValue { $0.ok += 1 }
                    return true
                } catch where error.code == .unavailable {
                    outcomes.withLockedValue { $0.unavailable += 1 }
                } catch {
                    outcomes.withLockedValue { $0.other.append("\(error)") }
                }
                return false
            }
            let killedAt = NIOLockedValueBox<ContinuousClock.Instant?>(nil)
            await withTaskGroup(of: Void.self) { tasks in
                for call in 0..<calls {
                    tasks.addTask {
                        try? await Task.sleep(for: .milliseconds(call * 20))
                        if call == calls / 3 {
                            replicas.process(first)?.stop(SIGKILL, timeout: 5)
                            killedAt.withLockedValue { $0 = .now }
                        }
                        // As the SDK does (a refused batch goes out again on its next call, to whichever
                        // replica answers): UNAVAILABLE is retried on the next replica, here at most 30 times.
                        let order = followers + [first]
                        for attempt in 0..<30 {
                            if await send(call, to: order[(call + attempt) % order.count]) { return }
                            try? await Task.sleep(for: .milliseconds(100))
                        }
                    }
                }
            }
            let survivors = readers.filter { $0.key != first }
            let newLeader = await waitForLeader(survivors, not: first, timeout: .seconds(20))
            let elected = ContinuousClock.now
            XCTAssertNotNil(newLeader, "no new leader\n\(replicas.logs)")
            if let killed = killedAt.withLockedValue({ $0 }) {
                let took = elected - killed
                print("ReplicatedProcessTests: new leader \(newLeader ?? "-") \(took) after kill -9 of \(first) (lease TTL \(Self.lease) s)")
                XCTAssertLessThanOrEqual(took, .seconds(Self.lease + 1), "failover took longer than the lease TTL + 1 s")
            }
            let result = outcomes.withLockedValue { $0 }
            XCTAssertEqual(result.other, [], "report calls failed with something other than UNAVAILABLE")
            XCTAssertEqual(result.ok, calls, "every report call was counted in the end (\(result.unavailable) UNAVAILABLE answers were retried)")
            await waitUntil("every breaker OPEN at every surviving watcher", timeout: 20) {
                survivors.keys.allSatisfy { id in
                    Set((watches[id]?.transitions ?? []).filter { $0.0 == .open }.count > 0 ? (watches[id]?.events.withLockedValue { events in
                        events.compactMap { e -> String? in
                            guard case .transition(let t)? = e.event, t.status?.state == .open else { return nil }
                            return t.status?.breaker?.name
                        }
                    } ?? []) : []).count == breakers
                }
            }
            checkHistories(watches)
            for w in watches.values { w.task.cancel() }
            for c in Array(readers.values) + Array(reporters.values) + [admin] { await c.close() }
        }
    }

    /// A leader paused (SIGSTOP) for longer than its lease: another replica
    /// takes over; when it resumes, its timer's transition fails the fence,
    /// it steps down, and no watcher sees that stale transition.
    func testZombieLeaderIsFenced() async throws {
        try await withCluster { cluster, _ in
            let (replicas, readers) = try startThree(cluster)
            defer { replicas.stopAll() }
            guard let zombie = await waitForLeader(readers, timeout: .seconds(20)), let process = replicas.process(zombie) else {
                XCTFail("no leader\n\(replicas.logs)")
                return
            }
            let other = replicas.ids.first { $0 != zombie } ?? ""
            let admin = try replicas.client(other, "admin", group: group)
            try await putFleetPolicy(admin, minimumClients: 1, permits: 1, openMs: 3_000)
            var watches: [String: BreakerWatch] = [:]
            for id in replicas.ids { watches[id] = BreakerWatch(client: try replicas.client(id, "reader", group: group), prefix: "z") }
            // A watch that subscribes after the trip sees OPEN in its snapshot, not as a transition.
            await waitUntil("every watch subscribed") { watches.values.allSatisfy(\.subscribed) }
            let reporter = try replicas.client(other, "reporter", group: group)
            _ = try await reporter.unary(
                "fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "z", breaker: "z", generation: 0, failure: 20),
                as: Fusebox_V1_ReportOutcomesResponse.self)
            await waitUntil("OPEN everywhere") { watches.values.allSatisfy { $0.transitions.contains { $0.0 == .open } } }
            // A connection to the leader, open before the pause.
            let zombieAdmin = try replicas.client(zombie, "admin", group: group)
            let beforePause = await leader(via: zombieAdmin)
            XCTAssertEqual(beforePause, zombie)

            // Paused well past its lease and past the breaker's open period.
            kill(process.process.processIdentifier, SIGSTOP)
            let survivors = readers.filter { $0.key != zombie }
            let successor = await waitForLeader(survivors, not: zombie, timeout: .seconds(15))
            XCTAssertNotNil(successor, "nobody took over from the paused leader\n\(replicas.logs)")
            await waitUntil("the successor half-opened the breaker", timeout: 10) {
                survivors.keys.allSatisfy { id in watches[id]?.transitions.contains { $0.0 == .halfOpen } ?? false }
            }
            // A write waiting in the paused leader's socket: it is read the moment the
            // process resumes, while it still believes it leads. Its commit must fail the
            // fence (UNAVAILABLE) or, once it has stepped down, go to the successor.
            var force = Fusebox_V1_OverrideRequest()
            force.breaker = ref("z")
            force.reason = "written through the zombie"
            let zombieWrite = Task { () -> Result<Fusebox_V1_AdminActionResponse, RPCError> in
                do {
                    return .success(try await zombieAdmin.unary(
                        "fusebox.v1.AdminService", "ForceOpen", force, as: Fusebox_V1_AdminActionResponse.self,
                        options: RPCCallOptions(timeout: .seconds(20))))
                } catch let error as RPCError {
                    return .failure(error)
                } catch {
                    return .failure(RPCError(.unknown, "\(error)"))
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            kill(process.process.processIdentifier, SIGCONT)
            switch await zombieWrite.value {
            case .failure(let error):
                print("ReplicatedProcessTests: the zombie's write was refused: \(error)")
                if error.code != .unavailable { print(process.launched.stderrTail(20_000)) }
                XCTAssertEqual(error.code, .unavailable, "\(error)")
                try await Task.sleep(for: .seconds(1))
                XCTAssertFalse(
                    watches.values.contains { $0.transitions.contains { $0.0 == .forcedOpen } },
                    "a refused write of the zombie reached a watcher")
            case .success(let response):
                print("ReplicatedProcessTests: the zombie's write went to the successor: generation \(response.after?.generation ?? 0)")
                let generation = response.after?.generation ?? 0
                await waitUntil("the forwarded write everywhere") {
                    watches.values.allSatisfy { $0.transitions.contains { $0.0 == .forcedOpen && $0.1 == generation } }
                }
            }
            await waitUntil("the resumed zombie steps down", timeout: 15) { process.launched.stderrTail(100_000).contains("stopped leading") }
            let log = process.launched.stderrTail(100_000)
            XCTAssertTrue(log.contains("stopped leading"), process.launched.stderrTail())
            for line in log.split(separator: "\n") where line.contains("stopped leading") || line.contains("fenced") {
                print("ReplicatedProcessTests: zombie \(zombie): \(line)")
            }
            try await Task.sleep(for: .seconds(1))
            let seenByZombie = await leader(via: readers[zombie] ?? admin)
            XCTAssertEqual(seenByZombie, successor, "the zombie sees the successor as leader")
            checkHistories(watches)
            for w in watches.values { w.task.cancel() }
            for c in Array(readers.values) + [admin, reporter, zombieAdmin] { await c.close() }
        }
    }

    /// 500 policy writes spread over the replicas, three at a time (one
    /// writer per replica), while random replicas are kill -9'ed and
    /// restarted under them, so kills land on writes in flight: every
    /// acknowledged write is there, with its version and reason, in every
    /// replica's history, and each policy's latest acknowledged version is
    /// what every replica serves.
    func testAcknowledgedPolicyWritesSurviveKilledReplicas() async throws {
        try await withCluster { cluster, _ in
            let replicas = try FuseboxdReplicas(cluster: cluster, leaseSeconds: Self.lease)
            defer { replicas.stopAll() }
            for id in ["a", "b", "c"] { try replicas.start(id) }
            struct Ack: Sendable { var name: String; var version: UInt64; var reason: String }
            let acknowledged = NIOLockedValueBox<[Ack]>([])
            let refused = NIOLockedValueBox(0)
            let writing = NIOLockedValueBox(true)
            let group = self.group
            let kills = try await withThrowingTaskGroup(of: Int.self) { tasks -> Int in
                for (w, id) in replicas.ids.enumerated() {
                    tasks.addTask {
                        var client: RPCClient?
                        for i in stride(from: w, to: 500, by: 3) {
                            if client == nil { client = try? replicas.client(id, "admin", group: group) }
                            guard let admin = client else {
                                refused.withLockedValue { $0 += 1 }
                                try await Task.sleep(for: .milliseconds(100))
                                continue
                            }
                            var request = Fusebox_V1_PutPolicyRequest()
                            request.registry = "durable"
                            request.policy = PolicyMapping.wire(fleetPolicy("p\(i % 50)"))
                            request.reason = "write \(i)"
                            do {
                                let response = try await admin.unary(
                                    "fusebox.v1.RegistryService", "PutPolicy", request, as: Fusebox_V1_PutPolicyResponse.self,
                                    options: RPCCallOptions(timeout: .seconds(10)))
                                acknowledged.withLockedValue { $0.append(Ack(name: "p\(i % 50)", version: response.registryVersion, reason: request.reason)) }
                            } catch {
                                refused.withLockedValue { $0 += 1 }
                                // The replica may have been restarted on another port.
                                await admin.close()
                                client = nil
                            }
                        }
                        return 0
                    }
                }
                tasks.addTask {
                    // Every 1.5 s while the writers run (at most 12 times), kill -9 a replica and restart it.
                    var rng = SystemRandomNumberGenerator()
                    var kills = 0
                    while writing.withLockedValue({ $0 }), kills < 12 {
                        try await Task.sleep(for: .milliseconds(1_500))
                        guard writing.withLockedValue({ $0 }) else { break }
                        let victim = replicas.ids.randomElement(using: &rng) ?? "a"
                        replicas.process(victim)?.stop(SIGKILL, timeout: 5)
                        try replicas.start(victim)
                        kills += 1
                    }
                    return kills
                }
                var writersLeft = replicas.ids.count
                var kills = 0
                while let result = try await tasks.next() {
                    if result == 0 {
                        writersLeft -= 1
                        if writersLeft == 0 { writing.withLockedValue { $0 = false } }
                    } else {
                        kills = result
                    }
                }
                return kills
            }
            let acks = acknowledged.withLockedValue { $0 }
            print("ReplicatedProcessTests: \(acks.count) writes acknowledged, \(refused.withLockedValue { $0 }) refused, \(kills) replicas killed while writing")
            XCTAssertGreaterThan(kills, 0, "no replica was killed during the writes")
            XCTAssertGreaterThan(acks.count, 250)
            XCTAssertEqual(Set(acks.map(\.version)).count, acks.count, "two acknowledged writes got the same version")
            var latest: [String: UInt64] = [:]
            for a in acks { latest[a.name] = max(latest[a.name] ?? 0, a.version) }
            for id in replicas.ids {
                let reader = try replicas.client(id, "reader", group: group)
                // The registry's whole history, as this replica serves it (read again
                // while the replica, perhaps just restarted, catches up).
                var missing = acks
                var lastError = ""
                for _ in 0..<50 where !missing.isEmpty {
                    var history: [UInt64: Fusebox_V1_PolicyChange] = [:]
                    var after: UInt64 = 0
                    var complete = false
                    do {
                        while true {
                            var request = Fusebox_V1_PolicyHistoryRequest()
                            request.registry = "durable"
                            request.afterVersion = after
                            request.limit = 1_000
                            let page = try await reader.unary(
                                "fusebox.v1.RegistryService", "PolicyHistory", request, as: Fusebox_V1_PolicyHistoryResponse.self)
                            for change in page.changes { history[change.version] = change }
                            after = page.changes.last?.version ?? after
                            if !page.truncated || page.changes.isEmpty { break }
                        }
                        complete = true
                    } catch {
                        lastError = "\(error)"
                    }
                    if complete {
                        missing = acks.filter { a in history[a.version].map { $0.policyName != a.name || $0.reason != a.reason } ?? true }
                    }
                    if !missing.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
                }
                XCTAssertTrue(
                    missing.isEmpty,
                    "replica \(id)'s history lacks \(missing.count) acknowledged writes, e.g. \(missing.prefix(3).map { "\($0.name)@\($0.version)" }) \(lastError)")
                for (name, version) in latest {
                    var get = Fusebox_V1_GetPolicyRequest()
                    get.registry = "durable"
                    get.name = name
                    var record: Fusebox_V1_PolicyRecord?
                    for _ in 0..<50 {
                        record = try? await reader.unary("fusebox.v1.RegistryService", "GetPolicy", get, as: Fusebox_V1_PolicyRecord.self)
                        if (record?.version ?? 0) >= version { break }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    XCTAssertGreaterThanOrEqual(record?.version ?? 0, version, "replica \(id) holds \(name) at \(record?.version ?? 0), acknowledged \(version)")
                }
                await reader.close()
            }
        }
    }

    /// `fuseboxd migrate` moves a single server's SQLite data into etcd:
    /// policies with their versions, breakers with their generations, the
    /// audit log with its ids; a second run refuses the prefix that now holds data.
    func testMigrateFromSQLiteToEtcd() async throws {
        try await withCluster(size: 1) { cluster, _ in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-migrate-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let single = try FuseboxdProcess(dataDirectory: directory.appendingPathComponent("single").path)
            let admin = try testClient(port: single.port, identity: "admin", group: group)
            try await putFleetPolicy(admin, minimumClients: 1, permits: 1, openMs: 600_000)
            try await putFleetPolicy(admin, minimumClients: 1, permits: 2, openMs: 600_000)
            _ = try await admin.unary(
                "fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "m", breaker: "db", generation: 0, failure: 20),
                as: Fusebox_V1_ReportOutcomesResponse.self)
            var force = Fusebox_V1_OverrideRequest()
            force.breaker = ref("db")
            force.reason = "before the move"
            let forced = try await admin.unary("fusebox.v1.AdminService", "ForceOpen", force, as: Fusebox_V1_AdminActionResponse.self)
            let generation = try XCTUnwrap(forced.after?.generation)
            var list = Fusebox_V1_ListAuditRequest()
            list.limit = 100
            let before = try await admin.unary("fusebox.v1.AdminService", "ListAudit", list, as: Fusebox_V1_ListAuditResponse.self)
            await admin.close()
            single.stop(SIGTERM)

            let prefix = "/moved-\(UUID().uuidString.prefix(6))"
            let arguments = [
                builtProduct("fuseboxd").path, "migrate", "--data-dir", single.dataDirectory,
                "--etcd-endpoints", cluster.endpoints.map { "http://\($0)" }.joined(separator: ","), "--etcd-prefix", prefix,
            ]
            let migrated = try runProcess(arguments, timeout: 60)
            XCTAssertEqual(migrated.status, 0, migrated.output)
            XCTAssertTrue(migrated.output.contains("1 registries"), migrated.output)
            let again = try runProcess(arguments, timeout: 60)
            XCTAssertNotEqual(again.status, 0, "a second migration into the same prefix was accepted")
            XCTAssertTrue(again.output.contains("already holds data"), again.output)

            let replicas = try FuseboxdReplicas(cluster: cluster, leaseSeconds: Self.lease)
            defer { replicas.stopAll() }
            let replica = try replicas.start(prefix: prefix, "a")
            let reader = try testClient(port: replica.port, identity: "admin", group: group)
            await waitUntil("the replica leads", timeout: 20) { replica.launched.stderrTail(100_000).contains("this replica leads") }
            var get = Fusebox_V1_GetPolicyRequest()
            get.registry = "default"
            get.name = "fleet"
            let policy = try await reader.unary("fusebox.v1.RegistryService", "GetPolicy", get, as: Fusebox_V1_PolicyRecord.self)
            XCTAssertGreaterThan(policy.version, 1, "the policy kept its version")
            var breakers = Fusebox_V1_ListBreakersRequest()
            breakers.registry = "default"
            let listed = try await reader.unary("fusebox.v1.BreakerService", "ListBreakers", breakers, as: Fusebox_V1_ListBreakersResponse.self)
            let db = try XCTUnwrap(listed.breakers.first { $0.breaker?.name == "db" })
            XCTAssertEqual(db.state, .forcedOpen)
            XCTAssertGreaterThanOrEqual(db.generation, generation, "generations continue from the migrated ones")
            let after = try await reader.unary("fusebox.v1.AdminService", "ListAudit", list, as: Fusebox_V1_ListAuditResponse.self)
            let moved = Set(after.entries.map(\.id))
            XCTAssertTrue(Set(before.entries.map(\.id)).isSubset(of: moved), "every audit entry kept its id")
            await reader.close()
        }
    }

    /// A HALF_OPEN breaker's probe budget across kill -9 of the leader: the
    /// old leader's grants belong to its generation; the new leader starts a
    /// new one and grants at most the budget under it, asked on every replica.
    func testPermitBudgetHoldsAcrossFailover() async throws {
        try await withCluster { cluster, _ in
            let (replicas, readers) = try startThree(cluster)
            defer { replicas.stopAll() }
            guard let first = await waitForLeader(readers, timeout: .seconds(20)) else {
                XCTFail("no leader\n\(replicas.logs)")
                return
            }
            let survivors = replicas.ids.filter { $0 != first }
            let admin = try replicas.client(survivors[0], "admin", group: group)
            try await putFleetPolicy(admin, minimumClients: 1, permits: 2, openMs: 300, maxWaitMs: 2_000)
            let reporters = try Dictionary(uniqueKeysWithValues: replicas.ids.map { ($0, try replicas.client($0, "reporter", group: self.group)) })
            let tripped = try await reporters[survivors[0]]?.unary(
                "fusebox.v1.BreakerService", "ReportOutcomes", batch(client: "p", breaker: "probe", generation: 0, failure: 20),
                as: Fusebox_V1_ReportOutcomesResponse.self)
            XCTAssertEqual(tripped?.states.first?.state, .open)
            try await Task.sleep(for: .milliseconds(600))
            func ask(_ ids: [String], count: Int) async -> [Fusebox_V1_AcquirePermitResponse] {
                await withTaskGroup(of: Fusebox_V1_AcquirePermitResponse?.self) { tasks in
                    for i in 0..<count {
                        let id = ids[i % ids.count]
                        tasks.addTask {
                            guard let c = reporters[id] else { return nil }
                            return try? await acquire(c, "probe", generation: 0, as: "p\(i)")
                        }
                    }
                    var all: [Fusebox_V1_AcquirePermitResponse] = []
                    for await r in tasks { if let r { all.append(r) } }
                    return all
                }
            }
            let before = await ask(replicas.ids, count: 60)
            let grantedBefore = before.filter(\.granted)
            XCTAssertEqual(grantedBefore.count, 2, "the budget before the failover")
            replicas.process(first)?.stop(SIGKILL, timeout: 5)
            let killedAt = ContinuousClock.now
            let survivorReaders = readers.filter { $0.key != first }
            let next = await waitForLeader(survivorReaders, not: first, timeout: .seconds(15))
            XCTAssertNotNil(next)
            // Ask again and again through the survivors; count every grant of every round.
            var grantedAfter: [Fusebox_V1_AcquirePermitResponse] = []
            var firstGrantAt: ContinuousClock.Instant?
            let giveUp = ContinuousClock.now + .seconds(15)
            while grantedAfter.count < 2, ContinuousClock.now < giveUp {
                let granted = await ask(survivors, count: 30).filter(\.granted)
                if !granted.isEmpty, firstGrantAt == nil { firstGrantAt = .now }
                grantedAfter += granted
                try await Task.sleep(for: .milliseconds(50))
            }
            XCTAssertEqual(grantedAfter.count, 2, "the budget under the new leader, counted over every round")
            XCTAssertTrue(grantedAfter.allSatisfy { $0.generation > (grantedBefore.first?.generation ?? 0) }, "new grants belong to a new generation")
            // The old leader's permits may be out (their probes running) until they expire
            // (maxWaitMs, 2 s): the new leader grants none before, so the dependency never
            // sees more than 2 probes at once.
            let wait = (firstGrantAt ?? killedAt) - killedAt
            XCTAssertGreaterThanOrEqual(wait, .milliseconds(2_000), "a permit was granted while the old leader's could still be out")
            print("ReplicatedProcessTests: permits granted before the failover \(grantedBefore.count) (generation \(grantedBefore.first?.generation ?? 0)), after \(grantedAfter.count) (generation \(grantedAfter.first?.generation ?? 0)), the first \(wait) after the kill")
            for c in Array(readers.values) + Array(reporters.values) + [admin] { await c.close() }
        }
    }
}
