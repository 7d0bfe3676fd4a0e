import Benchmark
import FuseboxAPI
import FuseboxAuthority
import FuseboxClient
import FuseboxCore
import FuseboxWire
import Synchronization

// Microbenchmarks on ordo-one/benchmark (`scripts/bench-micro`, or
// `swift package benchmark` in Benchmarks/): wall-clock time and heap
// allocations per operation, with its statistics (percentiles over many
// samples) and baselines (`swift package benchmark baseline update/compare`).
// What needs a running fuseboxd (the guard pipeline) stays in fusebox-bench,
// scenario 4.

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .cpuTotal, .mallocCountTotal, .throughput]
    // Each sample runs the body 1,000 times (`scaledIterations`); figures are per operation.
    Benchmark.defaultConfiguration = .init(
        metrics: metrics, timeUnits: .nanoseconds, scalingFactor: .kilo, maxDuration: .seconds(3), maxIterations: 100_000)

    // The SDK's hot path in CLOSED, what every guarded call pays: the fleet
    // gate's admit and the outcome tally's record. Goal: ≤ 50 ns, 0 allocations.
    Benchmark("hot path: BreakerGate admit + OutcomeTally record (CLOSED)") { benchmark in
        let gate = BreakerGate()
        let tally = OutcomeTally()
        for i in benchmark.scaledIterations {
            if case .pass(let g) = gate.admit() { tally.record(i % 10 == 0 ? .failure : .success, generation: g) }
        }
    }

    // A local breaker (fail-static mode): one outcome into a 100-call window.
    Benchmark("local breaker: record one outcome (100-call count window)") { benchmark in
        var policy = CircuitBreakerPolicy()
        policy.failureRateThreshold = 50
        policy.consecutiveFailuresThreshold = 1_000_000
        var breaker = BreakerStateMachine(policy: policy, at: Timestamp(milliseconds: 0), random: SplitMix64(seed: 1))
        let generation = breaker.status.generation
        var success = OutcomeCounts()
        success.add(.success)
        var failure = OutcomeCounts()
        failure.add(.failure)
        for i in benchmark.scaledIterations {
            let report = OutcomeReport(generation: generation, counts: i % 10 == 0 ? failure : success)
            blackHole(breaker.report(report, at: Timestamp(milliseconds: Int64(i / 1000))))
        }
    }

    // The authority's permit decision, in process: the request's bytes
    // decoded, the coordinator's decision for a breaker held HALF_OPEN (its
    // permits taken, so each call is a denial that reads, and changes,
    // nothing durable), the response built and encoded. What the server adds
    // around it is HTTP/2, TLS and a task per call (scenario 14).
    // Goal (issue 21): p99 ≤ 20 µs.
    // One decision per sample (no scaling), so the percentiles are per call.
    Benchmark(
        "permit decision in process: AcquirePermit decoded → BreakerCoordinator.permit → response encoded",
        configuration: .init(
            scalingFactor: .one, maxDuration: .seconds(3), maxIterations: 300_000,
            setup: { permitSetup.withLock { $0 = nil }; let made = await PermitDecisionSetup.make(); permitSetup.withLock { $0 = made } },
            teardown: { permitSetup.withLock { $0?.stop(); $0 = nil } })
    ) { _ in
        guard let setup = permitSetup.withLock({ $0 }) else { return }
        blackHole(await setup.decide())
    }
}

/// The permit benchmark's coordinator, made once by its setup hook.
let permitSetup = Mutex<PermitDecisionSetup?>(nil)

/// A coordinator with one breaker held HALF_OPEN whose permits are taken.
struct PermitDecisionSetup: Sendable {
    let coordinator: BreakerCoordinator
    let runner: Task<Void, Never>
    let request: [UInt8]

    static func make() async -> PermitDecisionSetup {
        var policy = Policy(name: "probe")
        var rule = CircuitBreakerPolicy()
        rule.consecutiveFailuresThreshold = 1
        rule.minimumCalls = 1
        rule.openDuration.baseMs = 1
        rule.halfOpen.permittedCalls = 1
        rule.halfOpen.maxWaitMs = 3_600_000
        policy.circuitBreaker = rule
        let known = policy
        let coordinator: BreakerCoordinator
        do {
            coordinator = try await BreakerCoordinator(store: MemoryBreakerStore(), clock: SystemFleetClock()) { _, name in
                name == known.name ? known : nil
            }
        } catch {
            preconditionFailure("an in-memory store cannot fail: \(error)")  // benchmark setup, not reachable by input
        }
        let runner = Task { await coordinator.run() }
        let key = BreakerKey(registry: "default", name: "probe")
        // Trip it, let the 1 ms open period pass, take the one permit.
        _ = await coordinator.report(OutcomeBatchReport(client: "bench", breakers: [
            ReportedBreaker(key: key, policy: "probe", report: OutcomeReport(
                client: "bench", generation: BreakerGeneration(0), counts: OutcomeCounts(success: 0, failure: 1), trailingConsecutiveFailures: 1)),
        ]))
        try? await Task.sleep(for: .milliseconds(20))
        _ = await coordinator.permit(key)
        var request = Fusebox_V1_AcquirePermitRequest()
        request.breaker = BreakerMapping.ref("default", "probe")
        request.clientId = "bench"
        return PermitDecisionSetup(coordinator: coordinator, runner: runner, request: (try? request.encode()) ?? [])
    }

    /// One decision, from request bytes to response bytes.
    func decide() async -> [UInt8] {
        guard let request = try? Fusebox_V1_AcquirePermitRequest(decoding: self.request) else { return [] }
        let key = BreakerKey(registry: request.breaker?.registry ?? "", name: request.breaker?.name ?? "")
        var response = Fusebox_V1_AcquirePermitResponse()
        switch await coordinator.permit(key) {
        case .success(let answer):
            response.generation = answer.status.generation.value
            response.state = BreakerMapping.wire(answer.status.state)
            switch answer.decision {
            case .granted(let grant):
                response.granted = true
                response.permitId = grant.id
            case .denied(let denial):
                response.retryAfterMs = UInt32(clamping: max(0, denial.retryAfterMs ?? 0))
                response.reason = denial.reason
            }
        case .failure(let error):
            response.reason = error.message
        }
        return (try? response.encode()) ?? []
    }

    func stop() {
        coordinator.shutdown()
        runner.cancel()
    }
}

/// Breaker state kept in memory: the decision path above never writes.
final class MemoryBreakerStore: BreakerStateStore, Sendable {
    private let nextAudit = Atomic<UInt64>(0)
    func loadBreakers() async throws(StoreError) -> [StoredBreaker] { [] }
    func loadGenerationFloor() async throws(StoreError) -> UInt64 { 0 }
    func commit(_ commits: [BreakerCommit]) async throws(StoreError) -> [UInt64] {
        commits.flatMap(\.audits).map { _ in nextAudit.add(1, ordering: .relaxed).newValue }
    }
}
