import Foundation
import FuseboxAuthority
import FuseboxCore
import FuseboxServer
import FuseboxTesting
import NIOConcurrencyHelpers
import XCTest

/// The whole authority under random load: many breakers, several clients,
/// random reports, probe permits and their results, overrides, resets and
/// time, with several watchers. Every watcher must see the same sequence,
/// each breaker's generations without a gap, and every generation any call
/// answered with must have been streamed with the same state.
///
/// Runs seeds 1...12; on a failure the message names the seed. Replay one
/// with `FUSEBOX_PROPERTY_SEED=<n> swift test --filter FleetAuthorityPropertyTests`.
final class FleetAuthorityPropertyTests: XCTestCase {
    func testWatchersSeeEveryTransitionOfEveryCauseInOrder() async throws {
        let seeds: [UInt64] = ProcessInfo.processInfo.environment["FUSEBOX_PROPERTY_SEED"].flatMap(UInt64.init).map { [$0] } ?? Array(1...12)
        for seed in seeds {
            try await run(seed: seed)
        }
    }

    private func run(seed: UInt64) async throws {
        var random = SplitMix64(seed: seed)
        let a = try await Authority()
        a.policy("p", openMs: 400, permits: 2, maxWaitMs: 300)
        try await a.start()
        // Odd seeds run without the timer: time then moves breakers only when
        // a report or a permit request touches them, the path that once
        // changed state without publishing it.
        let timerless = seed % 2 == 1
        var committer: Task<Void, Never>?
        if timerless {
            a.task?.cancel()
            await a.task?.value
            let c = a.coordinator!
            committer = Task { await c.runCommitterForTests() }
        }
        defer { try? FileManager.default.removeItem(atPath: a.directory) }
        let everything = [CollectingSink(), CollectingSink(), CollectingSink()]
        for sink in everything { _ = a.coordinator.watch(BreakerSelector(), sink: sink) }
        let some = CollectingSink()
        _ = a.coordinator.watch(BreakerSelector(registry: "default", prefix: "b1"), sink: some)
        let names = (0..<6).map { "b\($0)" }
        let clients = ["c0", "c1", "c2", "c3"]
        var answered: [String: BreakerState] = [:]  // "registry/name generation" → state, from calls
        var permits: [(String, UInt64)] = []
        func note(_ name: String, _ status: BreakerStatus?) {
            guard let status, status.generation.value > 0 else { return }
            answered["default/\(name) \(status.generation.value)"] = status.state
        }
        for _ in 0..<250 {
            let name = names[Int(random.next() % UInt64(names.count))]
            switch random.next() % 10 {
            case 0, 1, 2, 3:
                let failures = random.next() % 8
                let successes = random.next() % 8
                let stale = random.next() % 6 == 0
                let g = (a.status(name)?.generation.value ?? 0)
                let r = await a.report(
                    name, client: clients[Int(random.next() % 4)], generation: stale && g > 0 ? g - 1 : g,
                    success: successes, failure: failures)
                note(name, r.views[0]?.status)
            case 4:
                if let answer = try? await a.coordinator.acquirePermit(a.key(name)) {
                    note(name, answer.status)
                    if case .granted(let grant) = answer.decision { permits.append((name, grant.id)) }
                }
            case 5:
                guard !permits.isEmpty else { continue }
                let (permitted, id) = permits.remove(at: Int(random.next() % UInt64(permits.count)))
                let r = await a.report(permitted, probes: [(id, random.next() % 2 == 0 ? .success : .failure)])
                note(permitted, r.views[0]?.status)
            case 6:
                let kinds: [BreakerOverride?] = [.forcedOpen, .forcedClosed, .disabled, .shadow, nil]
                let kind = kinds[Int(random.next() % UInt64(kinds.count))]
                let record = AuditRecord(atMs: 0, actor: nil, action: .forceOpen, reason: "property", allowed: true)
                if let outcome = try? await a.coordinator.setOverride(
                    a.key(name), kind, durationMs: UInt32(random.next() % 3) * 250, reason: "property", policy: "p", audit: record) {
                    note(name, outcome.after.status)
                }
            case 7:
                let record = AuditRecord(atMs: 0, actor: nil, action: .reset, reason: "property", allowed: true)
                if let outcome = try? await a.coordinator.reset(a.key(name), reason: "property", audit: record) {
                    note(name, outcome.after.status)
                }
            default:
                let ms = Int64(random.next() % 500)
                if timerless { a.clock.advance(by: ms) } else { await a.advance(ms) }
            }
        }
        if timerless {
            a.clock.advance(by: 2_000)
            a.coordinator.advanceDueBreakers()
        } else {
            await a.advance(2_000)
        }
        await waitUntil("everything stored (seed \(seed))") { a.coordinator.isSettled }
        // A committed step is visible a moment before the hub has offered it to
        // every watcher: wait for the last one to arrive.
        await waitUntil("watchers caught up (seed \(seed))") {
            a.coordinator.views(BreakerSelector()).allSatisfy { view in
                view.status.generation.value == 0
                    || everything.allSatisfy { $0.transitions.last { $0.hasPrefix("\(view.key) ") }?.hasSuffix(" \(view.status.generation.value)") == true }
            }
        }
        let reference = everything[0].transitions
        for sink in everything.dropFirst() {
            XCTAssertEqual(sink.transitions, reference, "seed \(seed): two watchers saw different sequences")
        }
        XCTAssertEqual(some.transitions, reference.filter { $0.hasPrefix("default/b1 ") }, "seed \(seed): a selecting watcher")
        // Each breaker's generations arrive 1, 2, 3, … with no gap.
        var last: [String: UInt64] = [:]
        var streamed: [String: String] = [:]
        for line in reference {
            let parts = line.split(separator: " ")
            let key = String(parts[0])
            let generation = UInt64(parts[2]) ?? 0
            XCTAssertEqual(generation, (last[key] ?? 0) + 1, "seed \(seed): \(key) jumped to \(generation)")
            last[key] = generation
            streamed["\(key) \(generation)"] = String(parts[1])
        }
        for (generation, state) in answered {
            XCTAssertEqual(streamed[generation], state.displayName, "seed \(seed): \(generation) was answered as \(state.displayName) but streamed as \(streamed[generation] ?? "nothing")")
        }
        let stored = try await a.sqlite.loadBreakers()
        for b in stored {
            XCTAssertEqual(b.status.generation.value, last["default/\(b.name)"] ?? 0, "seed \(seed): \(b.name) stored ≠ streamed")
            XCTAssertEqual(a.status(b.name)?.generation, b.status.generation, "seed \(seed): \(b.name) visible ≠ stored")
        }
        XCTAssertFalse(reference.isEmpty, "seed \(seed): the load made no transition at all")
        committer?.cancel()
        await committer?.value
        await a.stop()
    }
}
