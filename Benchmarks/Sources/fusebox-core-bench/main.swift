import FuseboxClient
import FuseboxCore
import Synchronization
import MallocInterposerSwift

/// Hot-path benchmarks of FuseboxCore: nanoseconds and heap allocations per
/// operation for what a client does on every guarded call in CLOSED.
/// Not a test: it reports figures, it asserts nothing.

@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

struct Measurement {
    var name: String
    var nanosecondsPerOp: Double
    var allocationsPerOp: Double
}

func measure(_ name: String, iterations: Int, _ body: (Int) -> Void) -> Measurement {
    for i in 0..<min(iterations, 10_000) { body(i) }  // warm up
    MallocInterposerSwift.reset()
    MallocInterposerSwift.hook()
    let clock = ContinuousClock()
    let start = clock.now
    for i in 0..<iterations { body(i) }
    let elapsed = clock.now - start
    MallocInterposerSwift.unhook()
    let stats = MallocInterposerSwift.getStatistics()
    let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    return Measurement(
        name: name, nanosecondsPerOp: ns / Double(iterations),
        allocationsPerOp: Double(stats.mallocCount) / Double(iterations))
}

MallocInterposerSwift.initialize()
let iterations = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 5_000_000
var policy = CircuitBreakerPolicy()
policy.failureRateThreshold = 50
policy.consecutiveFailuresThreshold = 1_000_000
var breaker = BreakerStateMachine(policy: policy, at: Timestamp(milliseconds: 0), random: SplitMix64(seed: 1))
let generation = breaker.status.generation
var results: [Measurement] = []

// Several breakers, read by index, so the compiler cannot hoist the check out of the loop.
let breakers = (0..<8).map { BreakerStateMachine(policy: policy, at: Timestamp(milliseconds: Int64($0)), random: SplitMix64(seed: UInt64($0))) }
results.append(measure("CLOSED allow-check (local breaker)", iterations: iterations) { i in
    blackHole(breakers[i & 7].status.state.allowsCallsWithoutPermit)
})

var success = OutcomeCounts()
success.add(.success)
var failure = OutcomeCounts()
failure.add(.failure)
results.append(measure("record one outcome (local breaker, 100-call window)", iterations: iterations) { i in
    let report = OutcomeReport(generation: generation, counts: i % 10 == 0 ? failure : success)
    blackHole(breaker.report(report, at: Timestamp(milliseconds: Int64(i / 1000))))
})

var fleet = BreakerStateMachine(policy: policy, at: Timestamp(milliseconds: 0), random: SplitMix64(seed: 2))
let clients = (0..<16).map { "client-\($0)" }
var batch = OutcomeCounts()
batch.success = 90
batch.failure = 10
results.append(measure("merge one client batch (fleet breaker, 100 outcomes)", iterations: iterations / 10) { i in
    let report = OutcomeReport(client: clients[i % clients.count], generation: fleet.status.generation, counts: batch)
    blackHole(fleet.report(report, at: Timestamp(milliseconds: Int64(i / 100))))
})

var window = SlidingWindow(shape: WindowShape(kind: .time, size: 60))
results.append(measure("record one outcome (60 s time window)", iterations: iterations) { i in
    window.record(i % 10 == 0 ? .failure : .success, at: Timestamp(milliseconds: Int64(i / 1000)))
})
results.append(measure("window snapshot (60 s time window)", iterations: iterations) { i in
    blackHole(window.snapshot(at: Timestamp(milliseconds: Int64(iterations / 1000))))
})

// The SDK's hot path in CLOSED: one atomic load to admit, atomic increments to record.
let gate = BreakerGate()
let tally = OutcomeTally()
results.append(measure("SDK guard in CLOSED: admit + record (BreakerGate, OutcomeTally)", iterations: iterations) { i in
    if case .pass(let g) = gate.admit() {
        tally.record(i % 10 == 0 ? .failure : .success, generation: g)
    }
})
// The peer of issue 8's scenario 4: a bare atomic increment, same run.
let counter = Atomic<UInt64>(0)
results.append(measure("peer: bare atomic increment", iterations: iterations) { _ in
    counter.add(1, ordering: .relaxed)
})

// The attempt deadline (issue 16: the SDK's one unstructured task). The same
// operation (no work, a deadline that does not pass) run three ways:
// - as the SDK runs it: a child task started on the caller's thread
//   (Task.immediate) that a deadline timer can cancel on its own;
// - structured: a task group holding the operation and a second child that
//   waits for the deadline timer (a continuation it resumes), the smallest
//   structured shape in which the timer can end the operation without
//   cancelling the caller;
// - a task group with the operation alone, which cannot be timed out: the
//   floor of any structured shape.
final class DeadlineWaiter: Sendable {
    private let state = Mutex<(CheckedContinuation<Void, Never>?, Bool)>((nil, false))
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { s -> Bool in
                    if s.1 { return true }
                    s.0 = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: { fire() }
    }
    func fire() {
        let waiting = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.1 = true
            defer { s.0 = nil }
            return s.0
        }
        waiting?.resume()
    }
}

@inline(never)
func immediateChild(_ i: Int) async -> Int {
    let child = Task.immediate { i &+ 1 }
    return await withTaskCancellationHandler { await child.value } onCancel: { child.cancel() }
}

@inline(never)
func structuredRace(_ i: Int) async -> Int {
    let deadline = DeadlineWaiter()
    return await withTaskGroup(of: Int?.self) { group in
        group.addTask { i &+ 1 }
        group.addTask {
            await deadline.wait()
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first ?? -1
    }
}

@inline(never)
func structuredImmediateRace(_ i: Int) async -> Int {
    let deadline = DeadlineWaiter()
    return await withTaskGroup(of: Int?.self) { group in
        group.addImmediateTask { i &+ 1 }
        group.addTask {
            await deadline.wait()
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first ?? -1
    }
}

@inline(never)
func structuredAlone(_ i: Int) async -> Int {
    await withTaskGroup(of: Int.self) { group in
        group.addTask { i &+ 1 }
        return await group.next() ?? -1
    }
}

func measureAsync(_ name: String, iterations: Int, _ body: (Int) async -> Int) async -> Measurement {
    var sink = 0
    for i in 0..<min(iterations, 10_000) { sink &+= await body(i) }  // warm up
    MallocInterposerSwift.reset()
    MallocInterposerSwift.hook()
    let clock = ContinuousClock()
    let start = clock.now
    for i in 0..<iterations { sink &+= await body(i) }
    let elapsed = clock.now - start
    MallocInterposerSwift.unhook()
    blackHole(sink)
    let stats = MallocInterposerSwift.getStatistics()
    let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    return Measurement(name: name, nanosecondsPerOp: ns / Double(iterations), allocationsPerOp: Double(stats.mallocCount) / Double(iterations))
}

let deadlineIterations = max(1, iterations / 10)
results.append(await measureAsync("attempt deadline: unstructured child on the caller's thread (the SDK)", iterations: deadlineIterations, immediateChild))
results.append(await measureAsync("attempt deadline: task group, operation + deadline child (structured)", iterations: deadlineIterations, structuredRace))
results.append(await measureAsync("attempt deadline: task group, operation started immediately + deadline child (structured)", iterations: deadlineIterations, structuredImmediateRace))
results.append(await measureAsync("attempt deadline floor: task group, operation alone (no deadline possible)", iterations: deadlineIterations, structuredAlone))

print("| operation | ns/op | allocations/op |")
print("|---|---:|---:|")
for r in results {
    let ns = (r.nanosecondsPerOp * 100).rounded() / 100
    let allocs = (r.allocationsPerOp * 1000).rounded() / 1000
    print("| \(r.name) | \(ns) | \(allocs) |")
}
