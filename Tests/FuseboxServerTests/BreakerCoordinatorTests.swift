import Foundation
import FuseboxAuthority
import FuseboxCore
import FuseboxServer
import FuseboxTesting
import NIOConcurrencyHelpers
import XCTest

/// The domain coordinator on a manual clock and the real SQLite file: what
/// time does, what is stored before it is seen, and what a failing store does.
final class BreakerCoordinatorTests: XCTestCase {
    private var authority: Authority!

    override func setUp() async throws {
        authority = try await Authority()
        authority.policy()
        try await authority.start()
    }

    override func tearDown() async throws {
        await authority.stop()
        try? FileManager.default.removeItem(atPath: authority.directory)
    }

    /// OPEN → HALF_OPEN at the breaker's own deadline, on the manual clock.
    func testTheTimerHalfOpensAtTheDeadlineAndNotBefore() async throws {
        let a = authority!
        let sink = CollectingSink()
        _ = a.coordinator.watch(BreakerSelector(), sink: sink)
        await a.report("db", success: 5)
        await a.report("db", failure: 10)
        XCTAssertEqual(a.status("db")?.state, .open)
        await a.advance(999)
        XCTAssertEqual(a.status("db")?.state, .open, "not before its deadline")
        await a.advance(1)
        await waitUntil("half-open, streamed") { sink.transitions.count == 2 }
        XCTAssertEqual(sink.transitions, ["default/db OPEN 1", "default/db HALF_OPEN 2"])
        XCTAssertEqual(a.status("db")?.reason.contains("open period ended"), true)
    }

    /// The report that trips a breaker is answered before its transition is
    /// offered to the watchers: a watcher whose transport is slow to take the
    /// event (here: one that holds the publisher for up to 5 s) does not hold
    /// the reporter's reply. The transition is stored and visible by then.
    func testTheTrippingReporterIsAnsweredBeforeTheFanOut() async throws {
        let a = authority!
        let sink = HoldingSink()
        _ = a.coordinator.watch(BreakerSelector(), sink: sink)
        await a.report("db", success: 5)
        sink.hold.withLockedValue { $0 = true }
        let started = ContinuousClock.now
        let result = await a.report("db", failure: 10)
        let waited = ContinuousClock.now - started
        XCTAssertLessThan(waited, .seconds(4), "answered while the watcher still held the event, not after it")
        XCTAssertEqual(result.views[0]?.status.state, .open)
        XCTAssertEqual(a.status("db")?.state, .open, "visible before the fan-out ended")
        XCTAssertEqual(sink.transitions, [], "the watcher was still being offered the event")
        sink.hold.withLockedValue { $0 = false }
        await waitUntil("the watcher was offered the OPEN", timeout: 10) { sink.transitions == ["OPEN"] }
    }

    /// A permit request at a moment when time has moved the breaker on is the
    /// step that publishes it: stored, streamed and answered with it.
    func testATimeDrivenStepTakenByAcquirePermitIsStoredAndStreamed() async throws {
        let a = authority!
        // No timer: only the permit request moves time here.
        let committer = await a.committerOnly()
        defer { committer.cancel() }
        let c = a.coordinator!
        let sink = CollectingSink()
        _ = c.watch(BreakerSelector(), sink: sink)
        await a.report("db", success: 5)
        await a.report("db", failure: 10)
        a.clock.advance(by: 1_000)
        let answer = try await c.acquirePermit(a.key("db"))
        guard case .granted(let grant) = answer.decision else { return XCTFail("expected a permit: \(answer)") }
        XCTAssertEqual(answer.status.state, .halfOpen)
        XCTAssertEqual(grant.generation, answer.status.generation)
        // The caller is answered first, the watchers right after (the same commit).
        await waitUntil("the HALF_OPEN the permit saw is streamed", timeout: 5) { sink.transitions.count >= 2 }
        XCTAssertEqual(sink.transitions, ["default/db OPEN 1", "default/db HALF_OPEN 2"], "the HALF_OPEN the permit saw is streamed")
        let reloaded = try await a.sqlite.loadBreakers()
        XCTAssertEqual(reloaded.first?.status.generation.value, 2, "and stored")
    }

    /// An override that runs out is lifted by the timer: streamed, stored,
    /// and audited as OVERRIDE_EXPIRED in the same transaction.
    func testAnExpiringOverrideIsStreamedAndAudited() async throws {
        let a = authority!
        let sink = CollectingSink()
        _ = a.coordinator.watch(BreakerSelector(), sink: sink)
        let audit = AuditRecord(atMs: 0, actor: AuditActor(commonName: "ops"), action: .forceOpen, reason: "incident", allowed: true)
        let outcome = try await a.coordinator.setOverride(a.key("pay"), .forcedOpen, durationMs: 500, reason: "incident", policy: "p", audit: audit)
        XCTAssertEqual(outcome.after.status.state, .forcedOpen)
        XCTAssertNil(outcome.before)
        XCTAssertGreaterThan(outcome.auditID, 0)
        await a.advance(500)
        await waitUntil("override lifted, streamed") { sink.transitions.count == 2 }
        XCTAssertEqual(a.status("pay")?.state, .closed)
        XCTAssertEqual(sink.transitions, ["default/pay FORCED_OPEN 1", "default/pay CLOSED 2"])
        let entries = try await a.sqlite.listAudit(AuditQuery())
        XCTAssertEqual(entries.map(\.action), [.overrideExpired, .forceOpen])
        XCTAssertEqual(entries.first?.stateBefore, .forcedOpen)
        XCTAssertEqual(entries.first?.stateAfter, .closed)
        XCTAssertNil(entries.first?.actor, "the server's own action")
    }

    /// An operator acting after an override's end, before the timer has
    /// lifted it: the expiry is still audited, first, and the operator's
    /// entry starts from the state the expiry left.
    func testAnOverrideThatRanOutBeforeAnOperatorActedIsAudited() async throws {
        let a = authority!
        // No timer: only the operator's action finds the override due.
        let committer = await a.committerOnly()
        defer { committer.cancel() }
        let c = a.coordinator!
        let open = AuditRecord(atMs: 0, actor: AuditActor(commonName: "ops"), action: .forceOpen, reason: "incident", allowed: true)
        _ = try await c.setOverride(a.key("pay"), .forcedOpen, durationMs: 500, reason: "incident", policy: "p", audit: open)
        a.clock.advance(by: 600)
        let close = AuditRecord(atMs: 0, actor: AuditActor(commonName: "ops"), action: .forceClose, reason: "all clear", allowed: true)
        let outcome = try await c.setOverride(a.key("pay"), .forcedClosed, durationMs: 0, reason: "all clear", policy: nil, audit: close)
        XCTAssertEqual(outcome.after.status.state, .forcedClosed)
        XCTAssertEqual(outcome.before?.status.state, .closed, "the answer's before is what the expiry left, as in the entry")
        XCTAssertEqual(outcome.before?.status.generation.value, 2)
        let entries = try await a.sqlite.listAudit(AuditQuery())
        XCTAssertEqual(entries.map(\.action), [.forceClose, .overrideExpired, .forceOpen], "newest first")
        XCTAssertEqual(entries.first?.id, outcome.auditID, "the answer names the operator's entry")
        XCTAssertEqual(entries.first?.stateBefore, .closed, "the operator acted on what the expiry left")
        XCTAssertEqual(entries.first?.stateAfter, .forcedClosed)
        XCTAssertEqual(entries.dropFirst().first?.stateBefore, .forcedOpen)
        XCTAssertEqual(entries.dropFirst().first?.stateAfter, .closed)
        XCTAssertNil(entries.dropFirst().first?.actor, "the server's own action")

        // A reset after a later override's end: the same.
        let shadow = AuditRecord(atMs: 0, actor: AuditActor(commonName: "ops"), action: .shadow, reason: "try", allowed: true)
        _ = try await c.setOverride(a.key("pay"), .shadow, durationMs: 100, reason: "try", policy: nil, audit: shadow)
        a.clock.advance(by: 200)
        let reset = AuditRecord(atMs: 0, actor: AuditActor(commonName: "ops"), action: .reset, reason: "clean", allowed: true)
        let afterReset = try await c.reset(a.key("pay"), reason: "clean", audit: reset)
        XCTAssertEqual(afterReset.before?.status.state, .closed)
        let latest = try await a.sqlite.listAudit(AuditQuery())
        XCTAssertEqual(latest.prefix(3).map(\.action), [.reset, .overrideExpired, .shadow])
        XCTAssertEqual(latest.dropFirst().first?.stateBefore, .shadow)
        XCTAssertEqual(latest.first?.stateBefore, .closed)
    }

    /// An operator acting on an OPEN breaker whose open period has ended,
    /// before the timer has half-opened it: the answer's `before` and the
    /// entry's state_before are the HALF_OPEN that time left, published in
    /// the same commit, not the OPEN nobody holds any more.
    func testAnOperatorActsOnWhatTimeLeft() async throws {
        let a = authority!
        let committer = await a.committerOnly()
        defer { committer.cancel() }
        let c = a.coordinator!
        await a.report("db", success: 5)
        await a.report("db", failure: 10)
        await waitUntil("the trip is stored") { a.status("db")?.state == .open }
        a.clock.advance(by: 1_000)
        let close = AuditRecord(atMs: 0, actor: AuditActor(commonName: "ops"), action: .forceClose, reason: "fixed", allowed: true)
        let outcome = try await c.setOverride(a.key("db"), .forcedClosed, durationMs: 0, reason: "fixed", policy: nil, audit: close)
        XCTAssertEqual(outcome.before?.status.state, .halfOpen)
        XCTAssertEqual(outcome.before?.status.generation.value, 2)
        XCTAssertEqual(outcome.after.status.generation.value, 3)
        let entry = try await a.sqlite.listAudit(AuditQuery()).first
        XCTAssertEqual(entry?.action, .forceClose)
        XCTAssertEqual(entry?.stateBefore, .halfOpen)
        XCTAssertEqual(entry?.id, outcome.auditID)
    }

    /// A permit granted before an override does not survive it: its late
    /// failure does not reopen the breaker once the override is lifted.
    func testAPermitBelongsToItsGeneration() async throws {
        let a = authority!
        await a.report("db", success: 5)
        await a.report("db", failure: 10)
        await a.advance(1_000)
        await waitUntil("half-open") { a.status("db")?.state == .halfOpen }
        let answer = try await a.coordinator.acquirePermit(a.key("db"))
        guard case .granted(let old) = answer.decision else { return XCTFail("expected a permit") }
        let record = AuditRecord(atMs: 0, actor: nil, action: .forceOpen, reason: "x", allowed: true)
        _ = try await a.coordinator.setOverride(a.key("db"), .forcedOpen, durationMs: 0, reason: "x", policy: nil, audit: record)
        _ = try await a.coordinator.setOverride(a.key("db"), nil, durationMs: 0, reason: "lifted", policy: nil, audit: record)
        XCTAssertEqual(a.status("db")?.state, .halfOpen)
        let g = a.status("db")?.generation.value ?? 0
        await a.report("db", generation: g, probes: [(old.id, .failure)])
        XCTAssertEqual(a.status("db")?.state, .halfOpen, "the old permit's failure does not count")
        await a.advance(600)
        XCTAssertEqual(a.status("db")?.state, .halfOpen, "nor does its expiry")
    }

    /// Counting outcomes for one breaker never waits for another breaker's
    /// transition to be stored; transitions that are ready together share
    /// one transaction.
    func testCountingDoesNotWaitAndTransitionsShareOneCommit() async throws {
        let a = authority!
        for i in 0..<50 { await a.report("b\(i)", success: 5) }
        await a.report("counting", success: 5)
        let before = a.store.commits.withLockedValue { $0.count }
        a.store.close()
        // 50 breakers trip while the store holds its commits.
        let trips = Task {
            await withTaskGroup(of: Void.self) { group in
                for i in 0..<50 { group.addTask { await a.report("b\(i)", failure: 10) } }
            }
        }
        await waitUntil("a commit is held") { a.store.waiting >= 1 }
        let counted = Task { await a.report("counting", success: 3) }
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask { _ = await counted.value; return true }
            group.addTask { try? await Task.sleep(for: .seconds(5)); return false }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        XCTAssertTrue(finished, "a counting report waited for another breaker's commit")
        XCTAssertEqual(a.status("b0")?.state, .closed, "nothing is visible before it is stored")
        a.store.open()
        await trips.value
        for i in 0..<50 { XCTAssertEqual(a.status("b\(i)")?.state, .open) }
        let commits = a.store.commits.withLockedValue { Array($0.dropFirst(before)) }
        XCTAssertEqual(commits.reduce(0, +), 50)
        XCTAssertLessThanOrEqual(commits.count, 3, "50 transitions ready together took \(commits) commits")
    }

    /// When the store refuses a transition, the previous state stays
    /// visible and the caller hears `unavailable`; the rules' decision is
    /// stored and published once the store takes writes again.
    func testAFailedStoreLeavesThePreviousStateVisible() async throws {
        let a = authority!
        let sink = CollectingSink()
        _ = a.coordinator.watch(BreakerSelector(), sink: sink)
        await a.report("db", success: 5)
        try refuseBreakerWrites(true)
        let result = await a.report("db", failure: 10)
        XCTAssertEqual(result.rejected.first?.error.code, .unavailable)
        XCTAssertEqual(a.status("db")?.state, .closed)
        XCTAssertEqual(sink.transitions, [])
        try refuseBreakerWrites(false)
        await waitUntil("stored on retry and streamed") { sink.transitions.count == 1 }
        XCTAssertEqual(a.status("db")?.state, .open)
        XCTAssertEqual(sink.transitions, ["default/db OPEN 1"])
    }

    /// An operator action the store refuses is not applied, and neither is
    /// its audit entry.
    func testARefusedOperatorActionIsUndone() async throws {
        let a = authority!
        await a.report("db", success: 5)
        try refuseBreakerWrites(true)
        let record = AuditRecord(atMs: 0, actor: AuditActor(commonName: "ops"), action: .forceOpen, reason: "x", allowed: true)
        do {
            _ = try await a.coordinator.setOverride(a.key("db"), .forcedOpen, durationMs: 0, reason: "x", policy: nil, audit: record)
            XCTFail("the store refuses")
        } catch {
            XCTAssertEqual(error.code, .unavailable)
        }
        try refuseBreakerWrites(false)
        await a.report("db", success: 1)
        XCTAssertEqual(a.status("db")?.state, .closed)
        let entries = try await a.sqlite.listAudit(AuditQuery())
        XCTAssertTrue(entries.isEmpty)
        // The machine went back too: the next trip is generation 1, from CLOSED.
        await a.report("db", failure: 20)
        XCTAssertEqual(a.status("db")?.state, .open)
        XCTAssertEqual(a.status("db")?.generation.value, 1)
    }

    /// A watcher that cannot take an event is not reset and not skipped
    /// silently: once it can take one it gets a fresh snapshot, then the rest.
    func testAWatcherThatFallsBehindGetsAFreshSnapshot() async throws {
        let a = authority!
        let sink = CollectingSink()
        _ = a.coordinator.watch(BreakerSelector(), sink: sink)
        XCTAssertEqual(sink.snapshots, 1)
        sink.accepting.withLockedValue { $0 = false }
        await a.report("db", success: 5)
        await a.report("db", failure: 10)
        XCTAssertEqual(a.coordinator.hub.behindCount, 1)
        sink.accepting.withLockedValue { $0 = true }
        await waitUntil("resynchronised") { sink.snapshots == 2 }
        guard case .snapshot(let views)? = sink.events.withLockedValue({ $0.last }) else { return XCTFail("snapshot expected") }
        XCTAssertEqual(views.first?.status.state, .open)
        await a.advance(1_000)
        await waitUntil("next transition") { sink.transitions.last == "default/db HALF_OPEN 2" }
    }

    /// A breaker whose policy was deleted keeps tripping by the rule it last
    /// ran with, after a restart too.
    func testARestoredBreakerKeepsItsLastRuleWhenItsPolicyIsGone() async throws {
        let a = authority!
        await a.report("db", success: 5)
        await a.stop()
        let restarted = try await Authority(directory: a.directory)
        try await restarted.start()  // no policies at all now
        authority = restarted
        await restarted.report("db", success: 5, policy: "")
        await restarted.report("db", failure: 10, policy: "")
        XCTAssertEqual(restarted.status("db")?.state, .open)
    }

    /// A client restarted with the same id starts its sequence at 1 again;
    /// with a new incarnation its reports count. A retransmission, or a batch
    /// of the replaced process, is answered as a duplicate.
    func testARestartedClientsReportsCount() async throws {
        let a = authority!
        var r = await a.report("db", success: 5, incarnation: 100, sequence: 1)
        XCTAssertFalse(r.duplicate)
        r = await a.report("db", success: 5, incarnation: 100, sequence: 1)
        XCTAssertTrue(r.duplicate)
        r = await a.report("db", failure: 10, incarnation: 200, sequence: 1)
        XCTAssertFalse(r.duplicate)
        XCTAssertEqual(a.status("db")?.state, .open, "the restarted client's failures count")
        r = await a.report("db", success: 1, incarnation: 100, sequence: 2)
        XCTAssertTrue(r.duplicate, "the replaced process's batch")
    }

    /// Below the quorum, the reporting client is told to open its local breaker.
    func testBelowQuorumIsToldToTheReporter() async throws {
        let a = authority!
        a.policy("q", minimumClients: 2)
        let r = await a.report("search", client: "sick", failure: 20, policy: "q")
        XCTAssertEqual(a.status("search")?.state, .closed)
        XCTAssertEqual(r.belowQuorum.first?.key, a.key("search"))
        XCTAssertEqual(r.belowQuorum.first?.openMs, 1_000)
        XCTAssertTrue(r.belowQuorum.first?.reason.contains("only 1 of 2") == true, "\(r.belowQuorum)")
    }

    private func refuseBreakerWrites(_ refuse: Bool) throws {
        let sql = refuse
            ? "CREATE TRIGGER refuse_breakers BEFORE INSERT ON breakers BEGIN SELECT RAISE(FAIL, 'disk says no'); END;"
            : "DROP TRIGGER refuse_breakers;"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["sqlite3", authority.directory + "/fusebox.db", sql]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
    }
}

extension BreakerCoordinatorTests {
    /// A breaker stored HALF_OPEN comes back in a new generation whose reason
    /// says what happened, stored and published; not "open period ended".
    func testARestartWithAHalfOpenBreakerAnnouncesWhatHappened() async throws {
        let a = authority!
        await a.report("db", success: 5)
        await a.report("db", failure: 10)
        await a.advance(1_000)
        await waitUntil("half-open") { a.status("db")?.state == .halfOpen }
        await a.stop()
        let restarted = try await Authority(directory: a.directory)
        restarted.policy()
        let sink = CollectingSink()
        // Watching before `run()` starts: the step may be taken at once, and a
        // watch placed after it would see it only in its snapshot.
        try await restarted.start { _ = $0.watch(BreakerSelector(), sink: sink) }
        authority = restarted
        await waitUntil("the restart's step is stored and streamed") { sink.transitions.last == "default/db HALF_OPEN 3" }
        XCTAssertEqual(restarted.status("db")?.state, .halfOpen)
        XCTAssertEqual(restarted.status("db")?.reason, BreakerStateMachine.restartReason)
        XCTAssertEqual(sink.transitions.last, "default/db HALF_OPEN 3")
    }
}

/// What a client can make the authority hold: a bounded number of breakers
/// per registry, and idle ones are forgotten.
final class AuthorityLimitsTests: XCTestCase {
    private var authority: Authority!

    override func tearDown() async throws {
        await authority?.stop()
        if let a = authority { try? FileManager.default.removeItem(atPath: a.directory) }
    }

    private func start(maxBreakers: Int = 10_000, idleMs: Int64 = 0, directory: String? = nil) async throws -> Authority {
        let a = try await Authority(directory: directory)
        a.policy()
        var limits = AuthorityLimits()
        limits.maxBreakersPerRegistry = maxBreakers
        limits.idleEvictionMs = idleMs
        try await a.start(limits: limits)
        authority = a
        return a
    }

    /// Policy writes cannot create registries without bound: past the limit a
    /// new registry is refused, naming the limit; existing ones still take writes.
    func testRegistriesStopAtTheirLimit() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-registries-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteStore.open(directory: directory)
        var limits = AuthorityLimits()
        limits.maxRegistries = 2
        let registry = try await PolicyRegistry(store: store, clock: ManualFleetClock(), limits: limits)
        for name in ["a", "b"] {
            _ = try await registry.put(registry: name, policy: Policy(name: "p"), expectedVersion: nil, actor: "t", reason: "", audit: nil)
        }
        do {
            _ = try await registry.put(registry: "c", policy: Policy(name: "p"), expectedVersion: nil, actor: "t", reason: "", audit: nil)
            XCTFail("a third registry was created past the limit of 2")
        } catch {
            XCTAssertEqual(error.code, .resourceExhausted)
            XCTAssertTrue(error.message.contains("limits.maxRegistries"), error.message)
        }
        let again = try await registry.put(registry: "a", policy: Policy(name: "q"), expectedVersion: nil, actor: "t", reason: "", audit: nil)
        XCTAssertEqual(again.version, 2)
        XCTAssertNil(registry.registry("c"))
        await store.close()
    }

    /// One reporter naming 3,000 random breakers cannot make a registry hold
    /// more than its limit; the refusal names the limit.
    func testRandomBreakerNamesCannotGrowARegistryPastItsLimit() async throws {
        let a = try await start(maxBreakers: 500)
        var refused = 0
        var message = ""
        var random = SplitMix64(seed: 7)
        for _ in 0..<30 {
            let breakers = (0..<100).map { _ in
                ReportedBreaker(
                    key: a.key("random-\(random.next())"), policy: "p",
                    report: OutcomeReport(client: "greedy", generation: BreakerGeneration(0), counts: OutcomeCounts(success: 1)))
            }
            let result = await a.coordinator.report(OutcomeBatchReport(client: "greedy", breakers: breakers))
            refused += result.rejected.count
            if let first = result.rejected.first { message = first.error.message }
            XCTAssertTrue(result.rejected.allSatisfy { $0.error.code == .resourceExhausted })
        }
        XCTAssertEqual(a.coordinator.breakerCount, 500)
        XCTAssertEqual(refused, 2_500)
        XCTAssertTrue(message.contains("limits.maxBreakersPerRegistry"), message)
        // The breakers that exist keep working.
        await a.report("random-known", success: 1)
        XCTAssertNil(a.status("random-known"), "a new one is still refused")
    }

    /// A breaker idle for the eviction period is forgotten, in memory and in
    /// the store; reported again, it starts above the generation it had, also
    /// after a restart.
    func testIdleBreakersAreEvictedAndNeverReuseAGeneration() async throws {
        let a = try await start(idleMs: 10_000)
        await a.report("db", success: 5)
        await a.report("db", failure: 10)
        await a.advance(1_000)
        await waitUntil("half-open") { a.status("db")?.state == .halfOpen }
        let permit = try await a.coordinator.acquirePermit(a.key("db"))
        guard case .granted(let grant) = permit.decision else { return XCTFail("permit") }
        await a.report("db", probes: [(grant.id, .success)])
        XCTAssertEqual(a.status("db")?.state, .closed)
        XCTAssertEqual(a.status("db")?.generation.value, 3)
        await a.report("busy", success: 1)
        a.clock.advance(by: 9_000)
        await a.report("busy", success: 1)
        a.clock.advance(by: 1_000)
        // The coordinator's own eviction loop wakes with the clock and may take
        // db first (it did under ThreadSanitizer): either way db, and only db,
        // goes. Nothing still being stored is evicted, so that is awaited first.
        await waitUntil("every change stored") { a.coordinator.isSettled }
        let evictedHere = a.coordinator.evictIdleBreakers()
        XCTAssertLessThanOrEqual(evictedHere, 1, "only db was idle for 10 s")
        await waitUntil("db evicted") { a.status("db") == nil }
        XCTAssertNil(a.status("db"))
        XCTAssertNotNil(a.status("busy"))
        await waitUntil("deleted from the store") { a.coordinator.isSettled }
        let stored = try await a.sqlite.loadBreakers()
        XCTAssertEqual(stored.map(\.name), ["busy"])
        await a.report("db", generation: 0, success: 1)
        XCTAssertEqual(a.status("db")?.generation.value, 3, "created again at the floor, not at 0")
        await a.report("db", failure: 20)
        XCTAssertEqual(a.status("db")?.generation.value, 4)
        // A breaker that is not plainly CLOSED is not idle, however long nobody reports.
        // Again the coordinator's own loop may evict busy before this call does.
        await waitUntil("every change stored") { a.coordinator.isSettled }
        a.clock.advance(by: 20_000)
        XCTAssertLessThanOrEqual(a.coordinator.evictIdleBreakers(), 1, "only busy went idle; db is not CLOSED")
        await waitUntil("busy evicted") { a.status("busy") == nil }
        await waitUntil("stored") { a.coordinator.isSettled }
        XCTAssertNil(a.status("busy"))
        XCTAssertNotNil(a.status("db"), "db is not CLOSED, so not idle")
        // The floor survives a restart.
        await a.stop()
        let restarted = try await start(idleMs: 10_000, directory: a.directory)
        await restarted.report("fresh", success: 1)
        XCTAssertEqual(restarted.status("fresh")?.generation.value, 3)
    }
}

/// Registry watches share the hub's promise: a watcher that cannot take a
/// change gets a fresh snapshot when it can, then the changes after it.
final class RegistryWatchTests: XCTestCase {
    final class RegistrySink: WatchSink, Sendable {
        let events = NIOLockedValueBox<[String]>([])
        let accepting = NIOLockedValueBox(true)

        func offer(_ event: RegistryWatchEvent) -> Bool {
            guard accepting.withLockedValue({ $0 }) else { return false }
            switch event {
            case .snapshot(let r): events.withLockedValue { $0.append("snapshot \(r.version)") }
            case .changes(let changes): events.withLockedValue { e in e += changes.map { "change \($0.version)" } }
            }
            return true
        }

        var canAccept: Bool { accepting.withLockedValue { $0 } }
        func finish() {}
    }

    func testAWatcherThatFallsBehindGetsAFreshSnapshotNotASkip() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-registry-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteStore.open(directory: directory)
        let registry = try await PolicyRegistry(store: store, clock: ManualFleetClock())
        let sink = RegistrySink()
        let id = try await registry.watch(registry: "payments", fromVersion: 0, sink: sink)
        _ = try await registry.put(registry: "payments", policy: Presets.api, expectedVersion: nil, actor: "t", reason: "", audit: nil)
        sink.accepting.withLockedValue { $0 = false }
        for _ in 0..<5 { _ = try await registry.put(registry: "payments", policy: Presets.ai, expectedVersion: nil, actor: "t", reason: "", audit: nil) }
        XCTAssertEqual(registry.hub.behindCount, 1)
        sink.accepting.withLockedValue { $0 = true }
        XCTAssertEqual(registry.hub.resync(), 0)
        _ = try await registry.put(registry: "payments", policy: Presets.database, expectedVersion: nil, actor: "t", reason: "", audit: nil)
        XCTAssertEqual(sink.events.withLockedValue { $0 }, ["snapshot 0", "change 1", "snapshot 6", "change 7"])
        // Resuming from a version replays the changes after it, in order.
        let resumed = RegistrySink()
        _ = try await registry.watch(registry: "payments", fromVersion: 4, sink: resumed)
        XCTAssertEqual(resumed.events.withLockedValue { $0 }, ["change 5", "change 6", "change 7"])
        registry.unwatch(id)
        await store.close()
    }

    /// The hub's own loop (what fuseboxd runs for registry watches and a
    /// replica's breaker watches) sends the snapshot; nobody calls resync by hand.
    func testTheResyncLoopCatchesABehindWatcherUp() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-registry-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteStore.open(directory: directory)
        let registry = try await PolicyRegistry(store: store, clock: ManualFleetClock())
        let loop = Task { await registry.hub.runResync(every: .milliseconds(20)) }
        let sink = RegistrySink()
        _ = try await registry.watch(registry: "payments", fromVersion: 0, sink: sink)
        sink.accepting.withLockedValue { $0 = false }
        for _ in 0..<3 { _ = try await registry.put(registry: "payments", policy: Presets.ai, expectedVersion: nil, actor: "t", reason: "", audit: nil) }
        XCTAssertEqual(registry.hub.behindCount, 1)
        sink.accepting.withLockedValue { $0 = true }
        await waitUntil("the loop sent a fresh snapshot") { registry.hub.behindCount == 0 }
        XCTAssertEqual(sink.events.withLockedValue { $0 }.last, "snapshot 3")
        loop.cancel()
        await store.close()
    }
}

/// A watch sink whose `offer` of a transition, while `hold` is set, keeps the
/// publisher for up to 5 s (bounded), as a watcher's transport that is slow to
/// take an event would, if offers could block.
private final class HoldingSink: WatchSink, Sendable {
    let hold = NIOLockedValueBox(false)
    private let seen = NIOLockedValueBox<[String]>([])
    var transitions: [String] { seen.withLockedValue { $0 } }

    func offer(_ event: BreakerWatchEvent) -> Bool {
        guard case .transition(let t) = event else { return true }
        if hold.withLockedValue({ $0 }) {
            let deadline = ContinuousClock.now + .seconds(5)
            while hold.withLockedValue({ $0 }), ContinuousClock.now < deadline { usleep(1_000) }
        }
        seen.withLockedValue { $0.append(t.transition.status.state.displayName) }
        return true
    }

    var canAccept: Bool { true }
    func finish() {}
}
