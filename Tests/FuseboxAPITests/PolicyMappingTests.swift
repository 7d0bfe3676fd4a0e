import FuseboxCore
import FuseboxWire
import Testing

@testable import FuseboxAPI

@Suite struct PolicyMappingTests {
    @Test func presetsRoundTripThroughTheWire() throws {
        for preset in Presets.all {
            let wire = PolicyMapping.wire(preset)
            let bytes = try wire.encode()
            let back = try PolicyMapping.policy(from: Fusebox_V1_Policy(decoding: bytes)).get()
            #expect(back == preset, "\(preset.name)")
        }
    }

    @Test func zeroFieldsTakeTheDocumentedDefaults() throws {
        var wire = Fusebox_V1_Policy()
        wire.name = "p"
        var cb = Fusebox_V1_CircuitBreakerPolicy()
        cb.consecutiveFailuresThreshold = 5
        cb.halfOpen = Fusebox_V1_HalfOpenPolicy()
        cb.halfOpen?.permittedCalls = 3
        wire.circuitBreaker = cb
        wire.retry = Fusebox_V1_RetryPolicy()
        let policy = try PolicyMapping.validatedPolicy(from: wire).get()
        let breaker = try #require(policy.circuitBreaker)
        #expect(breaker.window == WindowShape(kind: .count, size: 100))
        #expect(breaker.minimumCalls == 10 && breaker.minimumClients == 1)
        #expect(breaker.slowCallDurationThresholdMs == 60_000)
        #expect(breaker.openDuration.baseMs == 60_000 && breaker.openDuration.multiplier == 1)
        #expect(breaker.halfOpen.successThreshold == 3, "defaults to permittedCalls")
        #expect(breaker.halfOpen.maxWaitMs == 30_000)
        let retry = try #require(policy.retry)
        #expect(retry.maxAttempts == 3 && retry.backoff.initialMs == 100 && retry.backoff.maxMs == 10_000)
        #expect(retry.jitter == .full && retry.retryOn == [.networkError, .timeout, .serverError])
    }

    @Test func unknownEnumsAndMissingActionsAreViolationsWithPaths() {
        var wire = Fusebox_V1_Policy()
        wire.name = "p"
        var retry = Fusebox_V1_RetryPolicy()
        retry.retryOn = [.networkError, .unrecognized(42)]
        retry.jitter = .unrecognized(9)
        wire.retry = retry
        wire.fallback = Fusebox_V1_FallbackPolicy()
        guard case .failure(let error) = PolicyMapping.validatedPolicy(from: wire) else {
            Issue.record("expected violations")
            return
        }
        #expect(error.violations.map(\.field) == ["retry.jitter", "retry.retryOn[1]", "fallback"])
    }

    @Test func validationProblemsComeWithTheConvertedPolicy() {
        var wire = PolicyMapping.wire(Presets.api)
        wire.retry?.backoff?.initialMs = 500
        wire.retry?.backoff?.maxMs = 100
        guard case .failure(let error) = PolicyMapping.validatedPolicy(from: wire) else {
            Issue.record("expected a violation")
            return
        }
        #expect(error.violations.map(\.description) == ["retry.backoff.maxMs: (100) must be ≥ retry.backoff.initialMs (500)"])
    }
}
