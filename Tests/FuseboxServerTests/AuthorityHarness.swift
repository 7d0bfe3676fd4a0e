import Foundation
import FuseboxAuthority
import FuseboxCore
import FuseboxServer
import FuseboxTesting
import NIOConcurrencyHelpers
import XCTest

/// A watch sink that keeps what it is offered, and can be told to refuse
/// (a transport whose buffer is full).
final class CollectingSink: WatchSink, Sendable {
    let events = NIOLockedValueBox<[BreakerWatchEvent]>([])
    let accepting = NIOLockedValueBox(true)
    let finished = NIOLockedValueBox(false)

    func offer(_ event: BreakerWatchEvent) -> Bool {
        guard accepting.withLockedValue({ $0 }) else { return false }
        events.withLockedValue { $0.append(event) }
        return true
    }

    var canAccept: Bool { accepting.withLockedValue { $0 } }
    func finish() { finished.withLockedValue { $0 = true } }

    /// "registry/name state generation" of every transition, in order.
    var transitions: [String] {
        events.withLockedValue { all in
            all.compactMap { e in
                guard case .transition(let t) = e else { return nil }
                return "\(t.key) \(t.transition.status.state.displayName) \(t.transition.status.generation.value)"
            }
        }
    }

    var snapshots: Int {
        events.withLockedValue { $0.filter { if case .snapshot = $0 { true } else { false } }.count }
    }
}

/// A store that passes everything to the real SQLite store, but can hold
/// commits back until the test lets them go, and counts them.
final class GatedStore: BreakerStateStore, Sendable {
    let inner: SQLiteStore
    let held = NIOLockedValueBox<[CheckedContinuation<Void, Never>]>([])
    let closed = NIOLockedValueBox(false)
    let commits = NIOLockedValueBox<[Int]>([])

    init(_ inner: SQLiteStore) { self.inner = inner }

    func loadBreakers() async throws(StoreError) -> [StoredBreaker] { try await inner.loadBreakers() }
    func loadGenerationFloor() async throws(StoreError) -> UInt64 { try await inner.loadGenerationFloor() }

    func commit(_ changes: [BreakerCommit]) async throws(StoreError) -> [UInt64] {
        if closed.withLockedValue({ $0 }) {
            await withCheckedContinuation { c in held.withLockedValue { $0.append(c) } }
        }
        commits.withLockedValue { $0.append(changes.count) }
        return try await inner.commit(changes)
    }

    /// Holds commits from now on.
    func close() { closed.withLockedValue { $0 = true } }

    /// Lets held commits (and later ones) through.
    func open() {
        closed.withLockedValue { $0 = false }
        for c in held.withLockedValue({ h in defer { h = [] }; return h }) { c.resume() }
    }

    var waiting: Int { held.withLockedValue { $0.count } }
}

/// A coordinator on a real SQLite file and a manual clock, running.
final class Authority: @unchecked Sendable {
    let directory: String
    let clock = ManualFleetClock()
    let sqlite: SQLiteStore
    let store: GatedStore
    let policies = NIOLockedValueBox<[String: Policy]>([:])
    var coordinator: BreakerCoordinator!
    var task: Task<Void, Never>?

    init(directory: String? = nil) async throws {
        self.directory = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-authority-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        sqlite = try await SQLiteStore.open(directory: self.directory)
        store = GatedStore(sqlite)
    }

    /// `beforeRun` sees the coordinator with its stored breakers loaded and
    /// no step taken yet: a watch placed there misses nothing `run()` does.
    func start(limits: AuthorityLimits = AuthorityLimits(), beforeRun: (BreakerCoordinator) -> Void = { _ in }) async throws {
        let policies = self.policies
        let c = try await BreakerCoordinator(store: store, clock: clock, limits: limits) { registry, name in
            policies.withLockedValue { $0["\(registry)/\(name)"] }
        }
        coordinator = c
        beforeRun(c)
        task = Task { await c.run() }
    }

    /// Stops `run()` (its timer and committer) and runs only the committer,
    /// in a task of its own that the caller cancels: then only requests move
    /// the breakers in time.
    func committerOnly() async -> Task<Void, Never> {
        task?.cancel()
        await task?.value
        let c: BreakerCoordinator = coordinator
        return Task { await c.runCommitterForTests() }
    }

    func stop() async {
        task?.cancel()
        await task?.value
        await sqlite.close()
    }

    /// A policy `name` in registry `default` tripping at 50% of at least 10
    /// calls, open `openMs`, `permits` probes.
    func policy(_ name: String = "p", openMs: Int64 = 1_000, permits: Int = 1, maxWaitMs: Int64 = 500, minimumClients: Int = 1) {
        let p = fleetPolicy(name, minimumClients: minimumClients, permits: permits, openMs: openMs, maxWaitMs: maxWaitMs)
        policies.withLockedValue { $0["default/\(name)"] = p }
    }

    func key(_ name: String) -> BreakerKey { BreakerKey(registry: "default", name: name) }

    func status(_ name: String) -> BreakerStatus? { coordinator.views(of: [key(name)]).first?.status }

    @discardableResult
    func report(
        _ name: String, client: String = "c1", generation: UInt64? = nil, success: UInt64 = 0, failure: UInt64 = 0,
        probes: [(UInt64, Outcome)] = [], incarnation: UInt64 = 0, sequence: UInt64 = 0, policy: String = "p"
    ) async -> ReportResult {
        let g = generation ?? status(name)?.generation.value ?? 0
        let report = OutcomeReport(
            client: client, generation: BreakerGeneration(g), counts: OutcomeCounts(success: success, failure: failure),
            trailingConsecutiveFailures: success == 0 ? Int(failure) : 0,
            probes: probes.map { ProbeResult(permitID: $0.0, outcome: $0.1) })
        return await coordinator.report(OutcomeBatchReport(
            client: client, incarnation: incarnation, sequence: sequence, breakers: [ReportedBreaker(key: key(name), policy: policy, report: report)]))
    }

    /// Moves the clock and lets the timer act.
    func advance(_ ms: Int64) async {
        clock.advance(by: ms)
        // The timer task wakes on its own; give it the chance to act and commit.
        for _ in 0..<200 {
            await Task.yield()
            if coordinator.isSettled { break }
            try? await Task.sleep(for: .milliseconds(1))
        }
    }
}
