import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxWire
import NIOCore
import NIOPosix
import Synchronization

// MARK: - Metrics from fuseboxd's observability port

extension Fuseboxd {
    /// The observability port fuseboxd printed at start.
    var metricsPort: Int {
        get throws {
            let marker = "observability on http://127.0.0.1:"
            let out = child.output
            guard let r = out.range(of: marker), let p = Int(out[r.upperBound...].prefix { $0.isNumber }) else {
                throw BenchError("fuseboxd printed no observability port")
            }
            return p
        }
    }

    /// One scrape of `GET /metrics` (Prometheus text), over HTTP/1.0: the server closes when done.
    func metrics(group: any EventLoopGroup) async throws -> Metrics {
        let text = Mutex("")
        let conn = try await RawConnection(port: try metricsPort, group: group) { chunk in text.withLock { $0 += chunk } }
        try await conn.send("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        try await conn.channel.closeFuture.get()
        return Metrics(text: text.withLock { $0 })
    }
}

/// Prometheus text, summed by metric name and an optional label filter.
struct Metrics {
    var text: String

    /// The sum of every series of `name` whose labels contain `labelContains` (all series if nil).
    func sum(_ name: String, labelContains: String? = nil) -> Double {
        sum(name, labelsContaining: labelContains.map { [$0] } ?? [])
    }

    /// The sum of every series of `name` whose labels contain all of `labelsContaining`.
    func sum(_ name: String, labelsContaining filters: [String]) -> Double {
        var total = 0.0
        for line in text.split(separator: "\n") where line.hasPrefix(name) && !line.hasPrefix("#") {
            let rest = line.dropFirst(name.count)
            guard rest.first == " " || rest.first == "{" else { continue }  // not a longer name
            guard filters.allSatisfy({ rest.contains($0) }) else { continue }
            if let value = line.split(separator: " ").last.flatMap({ Double($0) }) { total += value }
        }
        return total
    }

    /// Groups of breaker changes stored (one SQLite transaction, one fsync each).
    var commits: Double { sum("fusebox_breaker_commits_total") }

    /// Total seconds and count of the store's commits (`fusebox_store_duration_seconds{operation="commit"}`).
    var commitSeconds: (sum: Double, count: Double) {
        (sum("fusebox_store_duration_seconds_sum", labelContains: "operation=\"commit\""),
         sum("fusebox_store_duration_seconds_count", labelContains: "operation=\"commit\""))
    }
}

// MARK: - 7. Counting under transitions

struct CountingResult {
    var aloneReportsPerSecond: Double
    var loadedReportsPerSecond: Double
    var transitionsPerSecond: Double
    /// How long the loaded run lasted (until every stream was answered).
    var loadedSeconds: Double
    /// Seen by the drivers during the loaded counting run.
    var transitions: Double
    /// The server's transitions counter and commits counter between the two scrapes.
    var serverTransitions: Double
    var commits: Double
    /// Mean time of the store's commit operation in that span.
    var commitMs: Double
    var cycles: Int
    var errors: Int
    /// GetBreaker round trips on a set-B breaker, one every 20 ms on a
    /// connection of its own, during the loaded run (ms, sorted).
    var readMs: [Double]
    /// The same during the run without transitions.
    var aloneReadMs: [Double]
}

/// Counting-only reports/s for breaker set A (`connections` reporters, one
/// `StreamOutcomes` call each, batches of 10 breakers × 10 successes) for
/// `seconds`: once with nothing else, then while 100 other breakers (set B)
/// cycle trip → OPEN (100 ms) → HALF_OPEN → probe → CLOSED, each transition
/// stored before it is visible. Same server, same build.
/// `probes` false: the cycle is operator actions instead, `AdminService`
/// ForceOpen then Reset (two transitions, each stored with its audit entry).
func countingUnderTransitions(
    _ env: Environment, connections: Int, seconds: Double, cycling: Int, probes: Bool, group: any EventLoopGroup
) async throws -> CountingResult {
    let server = try Fuseboxd(env, name: "counting-transitions")
    defer { server.stop() }
    let admin = try server.client("admin", group: group)
    var counting = tripPolicy("counting")
    counting.circuitBreaker?.consecutiveFailuresThreshold = 0
    counting.circuitBreaker?.failureRateThreshold = 99
    counting.circuitBreaker?.minimumCalls = 1_000_000
    try await putPolicy(counting, admin)
    try await putPolicy(tripPolicy("cycling", openMs: 100, permits: 1), admin)
    await admin.close()

    // Set A: 100 breakers, every batch 10 of them × 10 successes.
    let reporters = try (0..<connections).map { _ in try server.client("reporter", group: group) }
    let names = (0..<100).map { "a-\($0)" }
    func breakersA(_ i: Int) -> [(String, UInt64)] { (0..<10).map { (names[(i * 10 + $0) % names.count], 0) } }
    for (i, c) in reporters.enumerated() {
        let b = outcomeBatch(client: "a\(i)", sequence: 0, breakers: breakersA(i), policy: "counting", success: 1, failure: 0)
        _ = try await c.unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self)
    }
    let batches = try (0..<connections).map {
        try outcomeBatch(client: "s\($0)", sequence: 0, breakers: breakersA($0), policy: "counting", success: 10, failure: 0).encode()
    }

    // Set B: `cycling` breakers, created CLOSED; each driver has a connection of its own.
    let drivers = try (0..<cycling).map { _ in try server.client(probes ? "reporter" : "admin", group: group) }
    var generations: [UInt64] = []
    for i in 0..<cycling {
        let b = outcomeBatch(client: "b\(i)", sequence: 0, breakers: [("b-\(i)", 0)], policy: "cycling", success: 1, failure: 0)
        let r = try await drivers[i % drivers.count].unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self)
        generations.append(r.states.first?.generation ?? 0)
    }

    /// Every reporter streams its batch until `end`; returns reports counted
    /// per second and the run's duration. `window` is 1 while it runs.
    let window = SharedCounter()
    let perCall = 100
    func countingRun() async throws -> (rate: Double, seconds: Double) {
        let counted = Atomic(0)
        window.value.store(1, ordering: .relaxed)
        defer { window.value.store(0, ordering: .relaxed) }
        let start = ContinuousClock.now
        let end = start + .milliseconds(Int64(seconds * 1000))
        try await concurrently(connections, width: connections) { i in
            // Calls of `perCall` batches, one after another: the client's
            // sends do not wait for the server, so one endless call would
            // only queue batches; the answer to each call bounds what is queued.
            while ContinuousClock.now < end {
                let response: Fusebox_V1_ReportOutcomesResponse = try await reporters[i].call(path: "/fusebox.v1.BreakerService/StreamOutcomes") { call in
                    for _ in 0..<perCall { try await call.send(batches[i]) }
                    try await call.finishSending()
                    guard let reply = try await call.next() else { throw BenchError("no StreamOutcomes response") }
                    return try Fusebox_V1_ReportOutcomesResponse(decoding: reply)
                }
                counted.add(Int(response.accepted) / 10, ordering: .relaxed)
            }
        }
        let elapsed = ms(ContinuousClock.now - start) / 1000
        log("7: \(counted.load(ordering: .relaxed)) reports counted in \(fmt(elapsed, 2)) s (calls of \(perCall) batches; none starts after \(fmt(seconds, 1)) s)")
        return (Double(counted.load(ordering: .relaxed)) / elapsed, elapsed)
    }

    // A reader on its own connection: does a read ever wait behind the
    // store's commits (the one-second stalls of the previous design), or
    // only behind the CPU the counting load takes?
    let reader = try server.client("reader", group: group)
    defer { Task { await reader.close() } }
    func readDuringWindow() -> Task<[Double], Never> {
        Task {
            var times: [Double] = []
            var k = 0
            while window.value.load(ordering: .relaxed) == 0, k < 500 { k += 1; try? await Task.sleep(for: .milliseconds(5)) }
            k = 0
            while window.value.load(ordering: .relaxed) == 1, k < 5_000 {
                var request = Fusebox_V1_GetBreakerRequest()
                request.breaker = BreakerMapping.ref("default", "b-\(k % cycling)")
                k += 1
                let t0 = ContinuousClock.now
                if (try? await reader.unary("fusebox.v1.BreakerService", "GetBreaker", request, as: Fusebox_V1_BreakerDetail.self)) != nil {
                    times.append(ms(ContinuousClock.now - t0))
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return times.sorted()
        }
    }

    log("7: counting alone, \(connections) connections, \(seconds) s")
    let aloneReads = readDuringWindow()
    let alone = try await countingRun()
    let aloneReadMs = await aloneReads.value

    // The cycle of one set-B breaker, until `stop`: trip it, wait out OPEN,
    // take the one permit, report the probe's success (CLOSED).
    // Boxed: the cycles run in tasks of their own.
    let stop = SharedCounter()
    let cycles = SharedCounter()
    let errors = SharedCounter()
    // Transitions the drivers saw (generation steps) while the counting run ran.
    let seenInWindow = SharedCounter()
    @Sendable func cycle(_ i: Int, generation: UInt64) async {
        let c = drivers[i % drivers.count]
        let name = "b-\(i)"
        var known = generation
        var generation = generation {
            didSet {
                if generation > known, window.value.load(ordering: .relaxed) == 1 {
                    seenInWindow.value.add(Int(generation - known), ordering: .relaxed)
                }
                known = max(known, generation)
            }
        }
        var state = Fusebox_V1_BreakerState.closed
        var attempts = 0
        while stop.value.load(ordering: .relaxed) == 0, attempts < 1_000_000 {
            attempts += 1
            do {
                if !probes {
                    var force = Fusebox_V1_OverrideRequest()
                    force.breaker = BreakerMapping.ref("default", name)
                    force.reason = "bench"
                    force.policy = "cycling"
                    let f = try await c.unary("fusebox.v1.AdminService", "ForceOpen", force, as: Fusebox_V1_AdminActionResponse.self)
                    generation = f.after?.generation ?? generation
                    var reset = Fusebox_V1_ResetRequest()
                    reset.breaker = BreakerMapping.ref("default", name)
                    reset.reason = "bench"
                    let r = try await c.unary("fusebox.v1.AdminService", "Reset", reset, as: Fusebox_V1_AdminActionResponse.self)
                    generation = r.after?.generation ?? generation
                    if r.after?.state == .closed { cycles.value.add(1, ordering: .relaxed) }
                    continue
                }
                switch state {
                case .closed:
                    let b = outcomeBatch(client: "b\(i)", sequence: 0, breakers: [(name, generation)], policy: "cycling", success: 0, failure: 1)
                    let r = try await c.unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self)
                    guard let s = r.states.first else { throw BenchError("no state for \(name)") }
                    (state, generation) = (s.state, s.generation)
                    if state == .open { try await Task.sleep(for: .milliseconds(100)) }
                default:
                    var request = Fusebox_V1_AcquirePermitRequest()
                    request.breaker = BreakerMapping.ref("default", name)
                    request.clientId = "b\(i)"
                    request.generation = generation
                    let p = try await c.unary("fusebox.v1.BreakerService", "AcquirePermit", request, as: Fusebox_V1_AcquirePermitResponse.self)
                    (state, generation) = (p.state, p.generation)
                    if p.granted {
                        var b = outcomeBatch(client: "b\(i)", sequence: 0, breakers: [(name, generation)], policy: "cycling", success: 0, failure: 0)
                        var probe = Fusebox_V1_ProbeResult()
                        probe.permitId = p.permitId
                        probe.outcome = .success
                        b.breakers[0].probes = [probe]
                        let r = try await c.unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self)
                        guard let s = r.states.first else { throw BenchError("no state for \(name)") }
                        (state, generation) = (s.state, s.generation)
                        if state == .closed { cycles.value.add(1, ordering: .relaxed) }
                    } else if state != .closed {
                        // OPEN: until the period ends; HALF_OPEN with the permit out (not expected): a moment.
                        try await Task.sleep(for: .milliseconds(min(max(2, Int64(p.retryAfterMs)), 50)))
                    }
                }
            } catch {
                errors.value.add(1, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }
    let initial = generations
    let cyclers = Task {
        await withTaskGroup(of: Void.self) { g in
            for i in 0..<cycling {
                let generation = initial[i]
                g.addTask { await cycle(i, generation: generation) }
            }
        }
    }
    // Let the cycles get going before the window opens.
    try await Task.sleep(for: .milliseconds(500))
    log("7: counting while \(cycling) breakers cycle, \(seconds) s")
    let scrape0 = ContinuousClock.now
    let before = try await server.metrics(group: group)
    let scrape1 = ContinuousClock.now
    let reads = readDuringWindow()
    let loaded = try await countingRun()
    let readMs = await reads.value
    let scrape2 = ContinuousClock.now
    let after = try await server.metrics(group: group)
    log("7: /metrics scrapes took \(fmt(ms(scrape1 - scrape0), 0)) and \(fmt(ms(ContinuousClock.now - scrape2), 0)) ms")
    stop.value.store(1, ordering: .relaxed)
    await cyclers.value
    let cycled = cycles.value.load(ordering: .relaxed)
    for c in reporters + drivers { await c.close() }

    // The server's counters span both scrapes (a scrape can be slow under
    // this load); their ratio is transitions per commit over that span.
    let transitions = after.sum("fusebox_breaker_transitions_total", labelContains: "breaker=\"b-")
        - before.sum("fusebox_breaker_transitions_total", labelContains: "breaker=\"b-")
    let inWindow = Double(seenInWindow.value.load(ordering: .relaxed))
    let (c0, c1) = (before.commitSeconds, after.commitSeconds)
    return CountingResult(
        aloneReportsPerSecond: alone.rate, loadedReportsPerSecond: loaded.rate, transitionsPerSecond: inWindow / loaded.seconds, loadedSeconds: loaded.seconds,
        transitions: inWindow, serverTransitions: transitions, commits: after.commits - before.commits,
        commitMs: (c1.sum - c0.sum) * 1000 / max(c1.count - c0.count, 1), cycles: cycled,
        errors: errors.value.load(ordering: .relaxed), readMs: readMs, aloneReadMs: aloneReadMs)
}

// MARK: - 8. Trip storm

struct StormRound {
    var ms: Double
    var answeredMs: Double
    var commits: Double
    /// Report calls the server reset (RST_STREAM CANCEL).
    var resets: Int
    var transitions: Double
}

/// `breakers` breakers trip at once: failures for all of them, in batches of
/// 100 (one `ReportOutcomes` call each, all sent together over 2
/// connections), while `watchers` watch the whole registry. Measured: from
/// the first report sent until every watcher has seen every breaker OPEN, and
/// the commits (fsyncs) the server made for it. `rounds` storms, each on
/// breakers of its own.
///
/// Each round runs on a fresh fuseboxd with breakers of its own, so rounds
/// do not share a registry, a database or connections. In most runs the
/// server resets a few of the report calls (RST_STREAM CANCEL) although it
/// stored their trips; they are counted and reported (docs/BENCHMARKS.md).
func tripStorm(_ env: Environment, breakers: Int, watchers: Int, rounds: Int, group: any EventLoopGroup) async throws -> [StormRound] {
    var results: [StormRound] = []
    for r in 0..<rounds {
        results += try await tripStorm(env, name: "trip-storm-\(r)", breakers: breakers, watchers: watchers, rounds: 1, group: group)
    }
    return results
}

func tripStorm(_ env: Environment, name: String, breakers: Int, watchers: Int, rounds: Int, group: any EventLoopGroup) async throws -> [StormRound] {
    let server = try Fuseboxd(env, name: name)
    defer { server.stop() }
    let admin = try server.client("admin", group: group)
    try await putPolicy(tripPolicy("storm"), admin)
    await admin.close()
    let reporters = try (0..<2).map { _ in try server.client("reporter", group: group) }
    let perBatch = 100

    // Every breaker exists (CLOSED) before the watchers connect, as in a running fleet.
    var generations: [String: UInt64] = [:]
    let roundNames = (0..<rounds).map { r in (0..<breakers).map { "storm-\(r)-\(String(format: "%04d", $0))" } }
    for names in roundNames {
        for (k, chunk) in stride(from: 0, to: names.count, by: perBatch).map({ Array(names[$0..<min($0 + perBatch, names.count)]) }).enumerated() {
            let b = outcomeBatch(client: "setup", sequence: 0, breakers: chunk.map { ($0, 0) }, policy: "storm", success: 1, failure: 0)
            let r = try await reporters[k % 2].unary("fusebox.v1.BreakerService", "ReportOutcomes", b, as: Fusebox_V1_ReportOutcomesResponse.self)
            for s in r.states { generations[s.breaker?.name ?? ""] = s.generation }
        }
    }
    guard generations.count == rounds * breakers else { throw BenchError("created \(generations.count) of \(rounds * breakers) breakers") }

    // Per watcher: the breakers it has seen OPEN (from transitions, or from a
    // snapshot if it was resynchronised), and when it saw the last of a round.
    final class Seen: Sendable {
        let state = Mutex<(snapshots: Int, open: [Set<String>], done: [Int: ContinuousClock.Instant])>((0, [], [:]))
    }
    let seen = (0..<watchers).map { _ in Seen() }
    let target = Mutex(Set<String>())
    let round = Atomic(0)
    @Sendable func record(_ event: Fusebox_V1_BreakerEvent, watcher w: Int) {
        var statuses: [Fusebox_V1_BreakerStatus] = []
        var snapshot = false
        switch event.event {
        case .snapshot(let s): statuses = s.breakers; snapshot = true
        case .transition(let t): if let s = t.status { statuses = [s] }
        case nil: return
        }
        let now = ContinuousClock.now
        let r = round.load(ordering: .relaxed)
        let names = target.withLock { $0 }
        seen[w].state.withLock { s in
            if snapshot { s.snapshots += 1 }
            while s.open.count <= r { s.open.append([]) }
            for status in statuses where status.state == .open && names.contains(status.breaker?.name ?? "") {
                s.open[r].insert(status.breaker?.name ?? "")
            }
            if s.done[r] == nil, !names.isEmpty, s.open[r].count == names.count { s.done[r] = now }
        }
    }
    var request = Fusebox_V1_WatchBreakersRequest()
    request.registry = "default"
    let tls = try TLSContext(configuration: server.clientTLS("reader"))
    var channels: [any Channel] = []
    for w in 0..<watchers {
        channels.append(try await EventLoopWatcher.open(port: server.port, tls: tls, group: group, request: request) { record($0, watcher: w) })
    }
    defer { for c in channels { c.close(promise: nil) } }
    guard await waitUntil(.seconds(60), { seen.allSatisfy { $0.state.withLock { $0.snapshots } > 0 } }) else {
        throw BenchError("not every watcher got its snapshot")
    }

    var results: [StormRound] = []
    for (r, names) in roundNames.enumerated() {
        round.store(r, ordering: .relaxed)
        target.withLock { $0 = Set(names) }
        try await Task.sleep(for: .milliseconds(300))  // nothing else queued
        let before = try await server.metrics(group: group)
        let chunks = stride(from: 0, to: names.count, by: perBatch).map { Array(names[$0..<min($0 + perBatch, names.count)]) }
        let batches = chunks.map { chunk in
            outcomeBatch(client: "storm", sequence: 0, breakers: chunk.map { ($0, generations[$0] ?? 0) }, policy: "storm", success: 0, failure: 1)
        }
        let start = ContinuousClock.now
        final class Latest: Sendable {
            let value: Mutex<ContinuousClock.Instant>
            init(_ t: ContinuousClock.Instant) { value = Mutex(t) }
        }
        let answered = Latest(start)
        let resets = SharedCounter()
        try await withThrowingTaskGroup(of: Void.self) { g in
            for (k, batch) in batches.enumerated() {
                g.addTask {
                    let response: Fusebox_V1_ReportOutcomesResponse
                    do {
                        response = try await reporters[k % 2].unary("fusebox.v1.BreakerService", "ReportOutcomes", batch, as: Fusebox_V1_ReportOutcomesResponse.self)
                    } catch {
                        // Seen in most full runs: the server resets some report calls
                        // (RST_STREAM CANCEL) though it stored their trips. The
                        // watchers decide whether every breaker tripped.
                        log("8: \(name), batch \(k) failed after \(fmt(ms(ContinuousClock.now - start), 1)) ms: \(error)")
                        resets.value.add(1, ordering: .relaxed)
                        return
                    }
                    let now = ContinuousClock.now
                    answered.value.withLock { $0 = max($0, now) }
                    guard response.states.allSatisfy({ $0.state == .open }) else { throw BenchError("a stormed breaker is not OPEN in the response") }
                }
            }
            try await g.waitForAll()
        }
        guard await waitUntil(.seconds(60), { seen.allSatisfy { $0.state.withLock { $0.done[r] != nil } } }) else {
            let counts = seen.map { $0.state.withLock { $0.open.count > r ? $0.open[r].count : 0 } }
            throw BenchError("storm \(r): watchers saw \(counts) of \(names.count) OPEN")
        }
        let last = seen.compactMap { $0.state.withLock { $0.done[r] } }.max() ?? start
        try await Task.sleep(for: .milliseconds(200))
        let after = try await server.metrics(group: group)
        results.append(StormRound(
            ms: ms(last - start), answeredMs: ms(answered.value.withLock { $0 } - start), commits: after.commits - before.commits,
            resets: resets.value.load(ordering: .relaxed),
            transitions: after.sum("fusebox_breaker_transitions_total", labelContains: "breaker=\"storm-\(r)-")
                - before.sum("fusebox_breaker_transitions_total", labelContains: "breaker=\"storm-\(r)-")))
        log("8: \(name) storm \(r): \(fmt(results.last!.ms, 1)) ms, \(results.last!.commits) commits, \(results.last!.transitions) transitions")
    }
    for c in reporters { await c.close() }
    return results
}
