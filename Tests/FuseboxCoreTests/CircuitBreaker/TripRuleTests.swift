import Testing

@testable import FuseboxCore

@Suite struct TripRuleTests {
    private func snapshot(_ c: OutcomeCounts, clients: Int = 0, failing: Int = 0) -> WindowSnapshot {
        WindowSnapshot(counts: c, failingClients: failing, clients: clients)
    }

    @Test func failureRateTripsWithAReadableReason() throws {
        let policy = CircuitBreakerPolicy.testing()
        let verdict = try #require(
            TripRule.evaluate(snapshot(counts(success: 15, failure: 25), clients: 7, failing: 7), consecutiveFailures: 0, policy: policy))
        #expect(verdict.reason == "failure rate 62.5% ≥ 50% over 40 calls from 7 clients")
        #expect(verdict.quorumMet)
    }

    @Test func belowMinimumCallsNothingTrips() {
        let policy = CircuitBreakerPolicy.testing(minimumCalls: 10)
        #expect(TripRule.evaluate(snapshot(counts(failure: 9)), consecutiveFailures: 0, policy: policy) == nil)
        #expect(TripRule.evaluate(snapshot(counts(failure: 10)), consecutiveFailures: 0, policy: policy) != nil)
    }

    @Test func slowCallQuorumCountsClientsWithSlowCalls() throws {
        var policy = CircuitBreakerPolicy.testing(failureRate: 0, minimumCalls: 4, minimumClients: 2)
        policy.slowCallRateThreshold = 50
        let one = WindowSnapshot(counts: counts(success: 2, slow: 2), failingClients: 0, slowClients: 1, clients: 2)
        #expect(TripRule.evaluate(one, consecutiveFailures: 0, policy: policy)?.quorumMet == false)
        let two = WindowSnapshot(counts: counts(success: 2, slow: 2), failingClients: 0, slowClients: 2, clients: 2)
        #expect(TripRule.evaluate(two, consecutiveFailures: 0, policy: policy)?.quorumMet == true)
    }

    @Test func thresholdIsInclusiveAndIgnoredDoesNotCount() {
        let policy = CircuitBreakerPolicy.testing(minimumCalls: 4)
        #expect(TripRule.evaluate(snapshot(counts(success: 2, failure: 2, ignored: 50)), consecutiveFailures: 0, policy: policy) != nil)
        #expect(TripRule.evaluate(snapshot(counts(success: 3, failure: 2)), consecutiveFailures: 0, policy: policy) == nil)
    }

    @Test func slowCallRateTrips() throws {
        var policy = CircuitBreakerPolicy.testing(failureRate: 0, minimumCalls: 4)
        policy.slowCallRateThreshold = 50
        let verdict = try #require(TripRule.evaluate(snapshot(counts(success: 2, slow: 2)), consecutiveFailures: 0, policy: policy))
        #expect(verdict.reason == "slow-call rate 50% ≥ 50% over 4 calls")
    }

    @Test func consecutiveFailuresTripRegardlessOfMinimumCalls() throws {
        let policy = CircuitBreakerPolicy.testing(failureRate: 0, minimumCalls: 100, consecutive: 5)
        #expect(TripRule.evaluate(snapshot(counts(failure: 4)), consecutiveFailures: 4, policy: policy) == nil)
        let verdict = try #require(TripRule.evaluate(snapshot(counts(failure: 5)), consecutiveFailures: 5, policy: policy))
        #expect(verdict.reason == "5 consecutive failures ≥ 5")
    }

    @Test func quorumNeedsDistinctFailingClients() throws {
        let policy = CircuitBreakerPolicy.testing(minimumClients: 2)
        let one = try #require(TripRule.evaluate(snapshot(counts(failure: 20), clients: 1, failing: 1), consecutiveFailures: 0, policy: policy))
        #expect(!one.quorumMet)
        #expect(one.reason.contains("only 1 of 2 required clients failing"))
        let two = try #require(TripRule.evaluate(snapshot(counts(failure: 20), clients: 2, failing: 2), consecutiveFailures: 0, policy: policy))
        #expect(two.quorumMet)
    }
}
